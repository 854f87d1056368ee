//! Numbers laid out in a fixed shape (`ddd.ddd.ddd-d`) whose digits pass a check: the
//! machinery the national-number detectors share.

use super::text::Text;
use super::{Finding, Kind};

/// Finds numbers laid out as one of `shapes` (`d` is any digit, other chars stand for
/// themselves), bounded on both sides, whose digits pass `is_valid`.
pub(super) fn find_numbers(
    text: &Text,
    kind: Kind,
    shapes: &[&str],
    is_valid: fn(&[u8]) -> bool,
    found: &mut Vec<Finding>,
) {
    for index in 0..text.len() {
        if !text.is_digit(index) || !text.number_starts(index) {
            continue;
        }
        for shape in shapes {
            if let Some((end, digits)) = match_shape(text, index, shape) {
                if text.number_ends(end) && is_valid(&digits) {
                    found.push(text.finding(kind, index, end));
                    break;
                }
            }
        }
    }
}

fn match_shape(text: &Text, start: usize, shape: &str) -> Option<(usize, Vec<u8>)> {
    let mut digits = Vec::with_capacity(shape.len());
    let mut index = start;
    for wanted in shape.chars() {
        match wanted {
            'd' if text.is_digit(index) => digits.push(text.digit(index)),
            'd' => return None,
            literal if text.is(index, literal) => {}
            _ => return None,
        }
        index += 1;
    }
    Some((index, digits))
}

pub(super) fn all_same(digits: &[u8]) -> bool {
    digits.iter().all(|&digit| digit == digits[0])
}
