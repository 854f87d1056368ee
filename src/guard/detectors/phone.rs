//! Phone numbers: runs of digit groups with the length and layout of a phone, not of a date,
//! an amount or an identifier.

use std::ops::Range;

use super::text::Text;
use super::{Finding, Kind};

/// One group of digits in a run that may be a phone number.
struct DigitGroup {
    /// First char of the group, its `(` included.
    start: usize,
    /// Just past the group, its `)` included.
    end: usize,
    digits: usize,
    /// The `-` or `.` between this group and the previous one, if any.
    joined_by: Option<char>,
    /// Only spaces (or nothing, after a `)`) between this group and the previous one.
    after_space: bool,
}

/// Phone numbers: a run of digit groups (optional leading `+`, groups joined by a space, `-`,
/// `.` or parentheses) with 8–15 digits, and either a `+` or 10–13 digits. A run that is not
/// one phone may be several joined by spaces ("301 234 5678 320 987 6543"); a space after a
/// group of 7+ digits always ends a phone ("3012345678 2 veces").
pub(super) fn find_phones(text: &Text, found: &mut Vec<Finding>) {
    let mut index = 0;
    while index < text.len() {
        let starts_run = match text.at(index) {
            Some('+') => {
                text.word_starts(index) && (text.is_digit(index + 1) || text.is(index + 1, '('))
            }
            Some('(') => text.number_starts(index),
            Some(c) if c.is_ascii_digit() => {
                // Not the tail of a code either: FE-2026-000123, 301 234 (a run starts earlier).
                let joined_to_word = matches!(text.before(index), Some('.' | '-' | '/'))
                    && index
                        .checked_sub(2)
                        .and_then(|i| text.at(i))
                        .is_some_and(char::is_alphanumeric);
                let continues_run =
                    text.is(index.wrapping_sub(1), ' ') && text.is_digit(index.wrapping_sub(2));
                text.number_starts(index)
                    && !joined_to_word
                    && !continues_run
                    && !matches!(text.before(index), Some('+' | '('))
            }
            _ => false,
        };
        if !starts_run {
            index += 1;
            continue;
        }
        let has_plus = text.is(index, '+');
        let groups = read_digit_groups(text, if has_plus { index + 1 } else { index });
        let Some(last) = groups.last() else {
            index += 1;
            continue;
        };
        let run_end = last.end;
        let time_follows = text.is(run_end, ':') && text.is_digit(run_end + 1);
        let mut piece_start = 0;
        for (position, group) in groups.iter().enumerate() {
            let is_last = position + 1 == groups.len();
            let cut_after = !is_last && group.digits >= 7 && groups[position + 1].after_space;
            if !(is_last || cut_after) {
                continue;
            }
            let piece = &groups[piece_start..=position];
            let plus = has_plus && piece_start == 0;
            let ends_cleanly = !is_last || text.number_ends(run_end) && !time_follows;
            if ends_cleanly {
                for phone in split_into_phones(piece, plus) {
                    let first = if plus && phone.start == 0 {
                        index
                    } else {
                        piece[phone.start].start
                    };
                    found.push(text.finding(Kind::Phone, first, piece[phone.end - 1].end));
                }
            }
            piece_start = position + 1;
        }
        index = run_end.max(index + 1);
    }
}

/// The fewest phones that together make up all of `groups`, split only where groups are
/// joined by spaces; none if there is no such split. Only the first may carry the `+`.
fn split_into_phones(groups: &[DigitGroup], has_plus: bool) -> Vec<Range<usize>> {
    /// A phone has at most 15 digits, so at most 15 groups.
    const MOST_GROUPS: usize = 15;
    // fewest[j]: the fewest phones making up groups[..j], and where the last one starts.
    let mut fewest: Vec<Option<(usize, usize)>> = vec![None; groups.len() + 1];
    fewest[0] = Some((0, 0));
    for end in 1..=groups.len() {
        for start in end.saturating_sub(MOST_GROUPS)..end {
            let Some((count, _)) = fewest[start] else {
                continue;
            };
            let may_split_here = start == 0 || groups[start].after_space;
            let better = fewest[end].is_none_or(|(best, _)| count + 1 < best);
            if may_split_here && better && is_phone(&groups[start..end], has_plus && start == 0) {
                fewest[end] = Some((count + 1, start));
            }
        }
    }
    let mut phones = Vec::new();
    let mut end = groups.len();
    while end > 0 {
        let Some((_, start)) = fewest[end] else {
            return Vec::new();
        };
        phones.push(start..end);
        end = start;
    }
    phones.reverse();
    phones
}

/// Reads digit groups from `index`: `301`, `(601)`, joined by a space, `-` or `.` (spaces
/// allowed around the `-` or `.`), or nothing after a `)`.
fn read_digit_groups(text: &Text, mut index: usize) -> Vec<DigitGroup> {
    let mut groups: Vec<DigitGroup> = Vec::new();
    let mut joined_by = None;
    let mut after_space = false;
    loop {
        let start = index;
        let opened = text.is(index, '(');
        if opened {
            index += 1;
        }
        if !text.is_digit(index) {
            break;
        }
        index = text.digits_end(index);
        let digits = index - start - usize::from(opened);
        if opened {
            if !text.is(index, ')') {
                break;
            }
            index += 1;
        }
        groups.push(DigitGroup {
            start,
            end: index,
            digits,
            joined_by,
            after_space,
        });

        // The separator to the next group, if there is one.
        let mut next = index;
        let mut spaces_only = true;
        joined_by = None;
        if text.is(next, ' ') {
            next += 1;
        }
        if let Some(c @ ('-' | '.')) = text.at(next) {
            joined_by = Some(c);
            spaces_only = false;
            next += 1;
            if text.is(next, ' ') {
                next += 1;
            }
        }
        let has_separator = next > index || opened;
        if !has_separator || !(text.is_digit(next) || text.is(next, '(')) {
            break;
        }
        after_space = spaces_only;
        index = next;
    }
    // A `(` that was never closed leaves its group out; the run ends before it.
    groups
}

fn is_phone(groups: &[DigitGroup], has_plus: bool) -> bool {
    let digits: usize = groups.iter().map(|group| group.digits).sum();
    let lengths: Vec<usize> = groups.iter().map(|group| group.digits).collect();
    let joiners: Vec<char> = groups.iter().filter_map(|group| group.joined_by).collect();
    let dotted = joiners.contains(&'.');
    let dashed = joiners.contains(&'-');
    let enough_digits = if has_plus {
        (8..=15).contains(&digits)
    } else {
        (10..=13).contains(&digits)
    };
    // 8.500.000 and 192.168.100.200: thousands separators or an address, not a phone.
    let thousands = lengths.len() >= 2
        && lengths[1..].iter().all(|&length| length == 3)
        && groups[1..].iter().all(|group| group.joined_by == Some('.'));
    // 3.1415926535: a decimal.
    let decimal = lengths.len() == 2 && joiners == ['.'];
    // 2026-01-20 10, 20-01-2026: a date (joined by `-` or `.`, not spaces as in +52 55 1234…).
    let date = lengths.len() >= 3
        && matches!(lengths[..3], [4, 2, 2] | [2, 2, 4])
        && groups[1].joined_by.is_some()
        && groups[2].joined_by.is_some();
    // 529.982.247-25, 900.123.456-7, 20-12345678-7: identifier layouts with a bad check digit.
    let identifier_layout = (dotted && dashed) || lengths.last().is_some_and(|&length| length < 2);
    enough_digits && !thousands && !decimal && !date && !identifier_layout
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::guard::detectors::testing::*;

    // --- Phone --------------------------------------------------------------------------

    #[test]
    fn finds_latam_phones() {
        for phone in [
            "+57 301 234 5678",
            "+52 55 1234 5678",
            "(601) 234 5678",
            "+54 9 11 2345-6789",
            "+55 11 91234-5678",
            "301-234-5678",
            "3012345678",
        ] {
            let text = format!("Llamar al {phone}, gracias.");
            assert_eq!(found(&text), vec![(Kind::Phone, phone)], "{text}");
        }
    }

    #[test]
    fn splits_phones_listed_with_spaces() {
        assert_eq!(
            found("Tel 301 234 5678 320 987 6543"),
            vec![(Kind::Phone, "301 234 5678"), (Kind::Phone, "320 987 6543")]
        );
        assert_eq!(
            found("llamar al 3012345678 2 veces"),
            vec![(Kind::Phone, "3012345678")]
        );
        assert_eq!(
            found("Tel: 3012345678 3209876543"),
            vec![(Kind::Phone, "3012345678"), (Kind::Phone, "3209876543")]
        );
    }

    #[test]
    fn leaves_dates_amounts_and_short_numbers() {
        for text in [
            "Fecha: 2026-01-20",
            "Fecha: 2026-01-20 10:30",
            "Valor: $8.500.000",
            "Valor: $1.250.000.000",
            "Servidor 192.168.100.200",
            "pi = 3.1415926535",
            "Radicado 2345-6789",
            "Pedido 12345678",
            "Factura FE-2026-000123",
            "Ref 2345 6789 0123 4567 8901",
        ] {
            assert!(found(text).is_empty(), "{text}: {:?}", found(text));
        }
    }
}
