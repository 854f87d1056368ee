//! Numbers laid out in a fixed shape (`ddd.ddd.ddd-d`, `dd.ddd.ddd-L`) whose chars pass a
//! check: the machinery the national-number detectors share.

use super::text::Text;
use super::{Finding, Kind};

/// Finds numbers laid out as one of `shapes` (see `find_shaped`) whose digits pass `is_valid`.
pub(super) fn find_numbers(
    text: &Text,
    kind: Kind,
    shapes: &[&str],
    is_valid: fn(&[u8]) -> bool,
    found: &mut Vec<Finding>,
) {
    find_shaped(text, kind, shapes, found, |_, _, chars| {
        is_valid(&chars.iter().map(|&c| digit_value(c)).collect::<Vec<u8>>())
    });
}

/// Finds numbers laid out as one of `shapes`, bounded on both sides (not part of a longer
/// number or word), for which `accept` says yes when given where the number starts and ends
/// and its significant chars (letters in upper case). In a shape `d` is a digit, `L` an ASCII letter,
/// `x` either; other chars stand for themselves. The first accepted shape wins.
pub(super) fn find_shaped(
    text: &Text,
    kind: Kind,
    shapes: &[&str],
    found: &mut Vec<Finding>,
    mut accept: impl FnMut(usize, usize, &[char]) -> bool,
) {
    let mut chars = Vec::with_capacity(20);
    for index in 0..text.len() {
        let may_start = text.at(index).is_some_and(|c| c.is_ascii_alphanumeric());
        if !may_start || !text.number_starts(index) {
            continue;
        }
        for shape in shapes {
            chars.clear();
            if let Some(end) = match_shape(text, index, shape, &mut chars) {
                if text.number_ends(end) && accept(index, end, &chars) {
                    found.push(text.finding(kind, index, end));
                    break;
                }
            }
        }
    }
}

/// The end of the first of `shapes` laid out at `start` that ends where a number may end.
pub(super) fn match_any_shape(text: &Text, start: usize, shapes: &[&str]) -> Option<usize> {
    let mut chars = Vec::with_capacity(20);
    shapes.iter().find_map(|shape| {
        chars.clear();
        match_shape(text, start, shape, &mut chars).filter(|&end| text.number_ends(end))
    })
}

/// The end of `shape` if the text at `start` is laid out as it; its significant chars go to
/// `chars`.
fn match_shape(text: &Text, start: usize, shape: &str, chars: &mut Vec<char>) -> Option<usize> {
    let mut index = start;
    for wanted in shape.chars() {
        let c = text.at(index)?;
        match wanted {
            'd' if c.is_ascii_digit() => chars.push(c),
            'L' if c.is_ascii_alphabetic() => chars.push(c.to_ascii_uppercase()),
            'x' if c.is_ascii_alphanumeric() => chars.push(c.to_ascii_uppercase()),
            'd' | 'L' | 'x' => return None,
            literal if c == literal => {}
            _ => return None,
        }
        index += 1;
    }
    Some(index)
}

/// The value of an ASCII digit.
pub(super) fn digit_value(c: char) -> u8 {
    c as u8 - b'0'
}

pub(super) fn all_same(digits: &[u8]) -> bool {
    digits.iter().all(|&digit| digit == digits[0])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shaped(source: &str, shapes: &[&str]) -> Vec<(String, String)> {
        let text = Text::new(source);
        let mut seen = Vec::new();
        let mut found = Vec::new();
        find_shaped(&text, Kind::DniEs, shapes, &mut found, |_, _, chars| {
            seen.push(chars.iter().collect::<String>());
            true
        });
        found
            .iter()
            .zip(seen)
            .map(|(f, chars)| (source[f.start..f.end].to_string(), chars))
            .collect()
    }

    #[test]
    fn shapes_match_digits_letters_and_literals_within_bounds() {
        assert_eq!(
            shaped(
                "a 12.345.678-z, x-1234567-L.",
                &["dd.ddd.ddd-L", "L-ddddddd-x"]
            ),
            vec![
                ("12.345.678-z".into(), "12345678Z".into()),
                ("x-1234567-L".into(), "X1234567L".into())
            ]
        );
        assert!(shaped("112.345.678-Z 12.345.678-ZZ", &["dd.ddd.ddd-L"]).is_empty());
        assert!(shaped("A12.345.678-Z", &["dd.ddd.ddd-L"]).is_empty());
    }
}
