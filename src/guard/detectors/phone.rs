//! Phone numbers: runs of digit groups with the length and layout of a phone, not of a date,
//! an amount or an identifier. Spanish numbers have only nine digits, as many as an order
//! number, so they are taken in a phone layout (`612 345 678`, `91 234 56 78`) or after a
//! phone keyword.

use std::ops::Range;

use super::keywords::{match_folded, Keywords};
use super::text::Text;
use super::{Finding, Kind};

/// Words that announce a phone number, folded (lower case, no accents).
pub(super) const PHONE_KEYWORDS: [&str; 13] = [
    "telefono",
    "telefonos",
    "telf",
    "tel",
    "tlf",
    "tfno",
    "movil",
    "celular",
    "cel",
    "whatsapp",
    "phone",
    "telephone",
    "mobile",
];
/// At most this many chars between a phone keyword and the number it announces.
pub(super) const PHONE_KEYWORD_GAP: usize = 20;

/// Currency words that make a number right before them an amount, folded.
const CURRENCY_WORDS: [&str; 7] = ["eur", "euros", "usd", "dolares", "pesos", "soles", "mxn"];

/// What the text around a run of digit groups says about it.
#[derive(Clone, Copy)]
struct Context {
    /// A phone keyword (tel, móvil, WhatsApp…) ends shortly before the run.
    announced: bool,
    /// A currency sign or word right before or after the run: an amount.
    priced: bool,
}

/// One group of digits in a run that may be a phone number.
struct DigitGroup {
    /// First char of the group, its `(` included.
    start: usize,
    /// Just past the group, its `)` included.
    end: usize,
    digits: usize,
    /// The value of its first digit.
    first_digit: u8,
    /// How many of its digits are leading zeros.
    leading_zeros: usize,
    /// The `-` or `.` between this group and the previous one, if any.
    joined_by: Option<char>,
    /// Only spaces (or nothing, after a `)`) between this group and the previous one.
    after_space: bool,
}

/// Phone numbers: a run of digit groups (optional leading `+`, groups joined by a space, `-`,
/// `.` or parentheses) with 8–15 digits, and either a `+`, 10–13 digits or the nine digits of a
/// Spanish number (see `is_spanish`). A run that is not
/// one phone may be several joined by spaces ("301 234 5678 320 987 6543"); a space after a
/// group of 7+ digits always ends a phone ("3012345678 2 veces").
pub(super) fn find_phones(text: &Text, found: &mut Vec<Finding>) {
    let keywords = Keywords::find(text, &PHONE_KEYWORDS, PHONE_KEYWORD_GAP);
    let mut index = 0;
    while index < text.len() {
        let starts_run = match text.at(index) {
            Some('+') => {
                text.word_starts(index) && (text.is_digit(index + 1) || text.is(index + 1, '('))
            }
            Some('(') => text.number_starts(index),
            Some(c) if c.is_ascii_digit() => {
                // Not the tail of a code either: FE-2026-000123, 301 234 (a run starts earlier);
                // but "Tel.612345678" is a phone after its keyword.
                let joined_to_word = matches!(text.before(index), Some('.' | '-' | '/'))
                    && index
                        .checked_sub(2)
                        .and_then(|i| text.at(i))
                        .is_some_and(char::is_alphanumeric)
                    && !keywords.end_at(index - 1);
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
        let context = Context {
            announced: keywords.precede(index),
            priced: is_priced(text, index, run_end),
        };
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
                for phone in split_into_phones(piece, plus, context) {
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
fn split_into_phones(groups: &[DigitGroup], has_plus: bool, context: Context) -> Vec<Range<usize>> {
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
            if may_split_here
                && better
                && is_phone(&groups[start..end], has_plus && start == 0, context)
            {
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
        let first = index - digits - usize::from(opened);
        groups.push(DigitGroup {
            start,
            end: index,
            digits,
            first_digit: text.digit(first),
            leading_zeros: (first..first + digits)
                .take_while(|&i| text.digit(i) == 0)
                .count(),
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

/// A currency sign right before the run (`$ 612 345 678`), or a sign or currency word right
/// after it (`612 345 678 €`, `612 345 678 euros`).
fn is_priced(text: &Text, start: usize, end: usize) -> bool {
    let before = start - usize::from(text.is(start.wrapping_sub(1), ' '));
    let after = end + usize::from(text.is(end, ' '));
    let is_sign = |c: char| matches!(c, '$' | '€' | '£');
    text.before(before).is_some_and(is_sign)
        || text.at(after).is_some_and(is_sign)
        || CURRENCY_WORDS
            .iter()
            .any(|word| match_folded(text, after, word).is_some_and(|end| text.word_ends(end)))
}

/// A Spanish number without its `+34`: nine digits starting with 6–9 (mobiles 6/7, landlines
/// 8/9), grouped as phones are (`612 345 678`, `612 34 56 78`, `91 234 56 78`, spaces or
/// dashes throughout), or written as one run after a phone keyword. Never next to a currency.
fn is_spanish(groups: &[DigitGroup], lengths: &[usize], context: Context) -> bool {
    let digits: usize = lengths.iter().sum();
    let spaced = groups[1..].iter().all(|group| group.after_space);
    let dashed = groups[1..].iter().all(|group| group.joined_by == Some('-'));
    let layout = match lengths {
        [9] => context.announced,
        [3, 3, 3] | [3, 2, 2, 2] | [2, 3, 2, 2] => spaced || dashed,
        _ => false,
    };
    digits == 9 && (6..=9).contains(&groups[0].first_digit) && layout && !context.priced
}

fn is_phone(groups: &[DigitGroup], has_plus: bool, context: Context) -> bool {
    let digits: usize = groups.iter().map(|group| group.digits).sum();
    let lengths: Vec<usize> = groups.iter().map(|group| group.digits).collect();
    let joiners: Vec<char> = groups.iter().filter_map(|group| group.joined_by).collect();
    let dotted = joiners.contains(&'.');
    let dashed = joiners.contains(&'-');
    let enough_digits = if has_plus {
        (8..=15).contains(&digits)
    } else {
        (10..=13).contains(&digits) || is_spanish(groups, &lengths, context)
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
    // 529.982.247-25, 900.123.456-7, 20-12345678-7: identifier layouts with a bad check digit;
    // 20240115-0042, 1234567-890: a code, with a long group joined to the next.
    let identifier_layout = (dotted && dashed)
        || lengths.last().is_some_and(|&length| length < 2)
        || groups
            .windows(2)
            .any(|pair| pair[0].digits >= 6 && pair[1].joined_by.is_some());
    // 2026-000123, 4500-001234: no numbering plan starts a number's later part with "00" (the
    // international prefix); an order or file number does.
    let zero_padded = groups[1..].iter().any(|group| group.leading_zeros >= 2);
    // 7701234567890: twelve or more bare digits are a barcode or account unless they open with
    // a country code of Spain (34) or Latin America (5x): 573012345678, 5491123456789.
    let bare_long =
        !has_plus && groups.len() == 1 && digits >= 12 && !matches!(groups[0].first_digit, 3 | 5);
    enough_digits
        && !thousands
        && !decimal
        && !date
        && !identifier_layout
        && !zero_padded
        && !bare_long
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
    fn finds_spanish_phones() {
        for phone in [
            "+34 612 345 678",
            "+34612345678",
            "+34 91 234 56 78",
            "612 345 678",
            "612 34 56 78",
            "912 345 678",
            "91 234 56 78",
            "712-345-678",
            "６１２ ３４５ ６７８",
            "612\u{a0}345\u{a0}678",
        ] {
            let text = format!("Llámame al {phone}, gracias.");
            assert_eq!(found(&text), vec![(Kind::Phone, phone)], "{text}");
        }
        assert_eq!(
            found("Tel. 612 345 678 / 698 765 432"),
            vec![(Kind::Phone, "612 345 678"), (Kind::Phone, "698 765 432")]
        );
    }

    #[test]
    fn finds_nine_bare_digits_only_after_a_phone_keyword() {
        for text in [
            "Tel: 612345678",
            "Teléfono de contacto: 912345678",
            "móvil 698765432",
            "Celular: 712345678",
            "WhatsApp +34 612345678 o 698765432",
            "phone 812345678",
        ] {
            let phones = found_only(text, Kind::Phone);
            assert!(!phones.is_empty(), "{text}");
            assert!(phones
                .iter()
                .all(|phone| phone.ends_with('8') || phone.ends_with('2')));
        }
        assert_eq!(found("Tlf.612345678"), vec![(Kind::Phone, "612345678")]);
        for text in [
            "Pedido 612345678",
            "Factura 912345678 del 20/01/2026",
            "Tel: 512345678",
            "Tel: 61234567",
            "Teléfono: ver la ficha del cliente, pedido 612345678",
            "Hotel 612345678",
        ] {
            assert!(found(text).is_empty(), "{text}: {:?}", found(text));
        }
    }

    #[test]
    fn leaves_nine_digit_amounts_and_codes() {
        for text in [
            "Importe: 612 345 678 €",
            "Importe: 612 345 678 euros",
            "Total $ 912 345 678",
            "Total 712.345.678",
            "Código 512 345 678",
            "Lote 612 345 67",
            "Serie 612-34-5678",
            "Versión 612 345 678 9",
        ] {
            assert!(found(text).is_empty(), "{text}: {:?}", found(text));
        }
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
            "Pedido 20240115-0042",
            "Ref 1234567-890",
        ] {
            assert!(found(text).is_empty(), "{text}: {:?}", found(text));
        }
    }
}
