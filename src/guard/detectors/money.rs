//! Money identifiers: payment cards (network prefix and Luhn) and IBANs (country length and
//! ISO 13616 mod-97).

use super::text::Text;
use super::{Finding, Kind};

// ---------------------------------------------------------------------------------------------
// Payment card

/// Cards: 13–19 digits, plain or in groups (4-4-4-4…, Amex 4-6-5, Diners 4-6-4) joined by one
/// kind of separator (space, `-` or `.`), with a known IIN prefix and a valid Luhn check digit.
pub(super) fn find_cards(text: &Text, found: &mut Vec<Finding>) {
    for index in 0..text.len() {
        if !text.is_digit(index)
            || !text.number_starts(index)
            || text.is(index.wrapping_sub(1), '+')
        {
            continue;
        }
        if text.is(index.wrapping_sub(1), ' ') && text.is_digit(index.wrapping_sub(2)) {
            continue;
        }
        let mut groups = vec![(index, text.digits_end(index))];
        if let Some(separator @ (' ' | '-' | '.')) = text.at(groups[0].1) {
            while groups.len() < 6 {
                let after = groups[groups.len() - 1].1;
                if !(text.is(after, separator) && text.is_digit(after + 1)) {
                    break;
                }
                groups.push((after + 1, text.digits_end(after + 1)));
            }
        }
        for taken in (1..=groups.len()).rev() {
            let lengths: Vec<usize> = groups[..taken]
                .iter()
                .map(|(start, end)| end - start)
                .collect();
            let end = groups[taken - 1].1;
            if !is_card_grouping(&lengths) || !text.number_ends(end) {
                continue;
            }
            let digits: Vec<u8> = groups[..taken]
                .iter()
                .flat_map(|&(start, end)| (start..end).map(|i| text.digit(i)))
                .collect();
            if card_is_valid(&digits) {
                found.push(text.finding(Kind::PaymentCard, index, end));
                break;
            }
        }
    }
}

fn is_card_grouping(lengths: &[usize]) -> bool {
    let total: usize = lengths.iter().sum();
    if !(13..=19).contains(&total) {
        return false;
    }
    match lengths {
        [_] | [4, 6, 5] | [4, 6, 4] => true,
        [body @ .., last] => body.iter().all(|&length| length == 4) && (1..=4).contains(last),
        [] => false,
    }
}

/// Luhn-valid, with the prefix and length of a card network we know.
pub(super) fn card_is_valid(digits: &[u8]) -> bool {
    let prefix = |count: usize| {
        digits[..count]
            .iter()
            .fold(0u32, |acc, &d| acc * 10 + u32::from(d))
    };
    let length = digits.len();
    let network_known = match digits[0] {
        4 => true,                                               // Visa
        5 => (51..=55).contains(&prefix(2)) && length == 16,     // Mastercard
        2 => (2221..=2720).contains(&prefix(4)) && length == 16, // Mastercard 2-series
        3 if matches!(prefix(2), 34 | 37) => length == 15,       // Amex
        3 => matches!(prefix(2), 36 | 38) || (300..=305).contains(&prefix(3)) && length >= 14, // Diners
        6 => (prefix(4) == 6011 || prefix(2) == 65) && length >= 16, // Discover
        _ => false,
    };
    network_known && luhn_is_valid(digits)
}

fn luhn_is_valid(digits: &[u8]) -> bool {
    let sum: u32 = digits
        .iter()
        .rev()
        .enumerate()
        .map(|(position, &digit)| {
            let digit = u32::from(digit);
            if position % 2 == 1 {
                let doubled = digit * 2;
                if doubled > 9 {
                    doubled - 9
                } else {
                    doubled
                }
            } else {
                digit
            }
        })
        .sum();
    sum.is_multiple_of(10)
}

// ---------------------------------------------------------------------------------------------
// IBAN

/// IBANs: country, check digits, then the account, compact or in groups of four (joined by
/// spaces, dots or dashes); the length must fit the country and the ISO 13616 mod-97 check
/// must give 1. Lower case is read as upper case, for the countries whose length we know.
pub(super) fn find_ibans(text: &Text, found: &mut Vec<Finding>) {
    let is_letter = |i: usize| text.at(i).is_some_and(|c| c.is_ascii_alphabetic());
    let is_alnum = |i: usize| text.at(i).is_some_and(|c| c.is_ascii_alphanumeric());
    for index in 0..text.len() {
        let looks_like_start = is_letter(index)
            && is_letter(index + 1)
            && text.is_digit(index + 2)
            && text.is_digit(index + 3)
            && text.word_starts(index);
        if !looks_like_start {
            continue;
        }
        let separator = text.at(index + 4).filter(|c| matches!(c, ' ' | '.' | '-'));
        let mut chars: Vec<u8> = Vec::with_capacity(34);
        let mut ends: Vec<usize> = Vec::with_capacity(34); // char index just past each IBAN char
        let mut next = index;
        while chars.len() < 34 {
            if separator.is_some()
                && chars.len() >= 4
                && chars.len().is_multiple_of(4)
                && text.at(next) == separator
                && is_alnum(next + 1)
            {
                next += 1;
            }
            if chars.len() >= 4 && !is_alnum(next) {
                break;
            }
            chars.push(text.at(next).map_or(0, |c| c.to_ascii_uppercase() as u8));
            next += 1;
            ends.push(next);
        }
        let lower_case = text.at(index).is_some_and(|c| c.is_ascii_lowercase())
            || text.at(index + 1).is_some_and(|c| c.is_ascii_lowercase());
        // The longest run that is an IBAN: one of a registered country, of its length and
        // layout, or (upper case only) a well-formed one of a country not in the registry.
        let longest = (15..=chars.len()).rev().find(|&length| {
            text.word_ends(ends[length - 1]) && iban_kind(&chars[..length], lower_case)
        });
        if let Some(length) = longest {
            found.push(text.finding(Kind::Iban, index, ends[length - 1]));
        }
    }
}

/// Whether `chars` (upper case, no spaces) are an IBAN, by the `iban_validate` registry
/// (country, length, BBAN layout, ISO 13616 check digits). An unregistered country code
/// with valid check digits counts too unless the text wrote it in lower case, where words
/// like "es12 ..." are more likely than an IBAN from a country that joined yesterday.
pub(super) fn iban_kind(chars: &[u8], lower_case: bool) -> bool {
    let Ok(candidate) = std::str::from_utf8(chars) else {
        return false;
    };
    match candidate.parse::<iban::Iban>() {
        Ok(_) => true,
        Err(iban::ParseIbanError::UnknownCountry(_)) => !lower_case,
        Err(_) => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::guard::detectors::testing::*;

    // --- Payment card -------------------------------------------------------------------

    #[test]
    fn finds_cards() {
        for card in [
            "4111 1111 1111 1111",
            "4111-1111-1111-1111",
            "5555555555554444",
            "2223 0031 2200 3222",
            "3782 822463 10005",
            "6011 1111 1111 1117",
            "3056 9309 0259 04",
            "4222222222222",
        ] {
            let text = format!("Tarjeta {card} vence 12/28");
            assert_eq!(found(&text), vec![(Kind::PaymentCard, card)], "{text}");
        }
    }

    #[test]
    fn finds_cards_however_they_are_spaced_or_typed() {
        for card in [
            "4111.1111.1111.1111",
            "4111  1111  1111  1111",
            "4111\u{a0}1111\u{a0}1111\u{a0}1111",
            "4111 \t1111\u{202f}1111\u{2007}1111",
            "４１１１ １１１１ １１１１ １１１１",
            "４１１１１１１１１１１１１１１１",
            "4111\u{200b}1111\u{200b}1111\u{200b}1111",
            "3782.822463.10005",
        ] {
            let text = format!("Tarjeta {card} vence 12/28");
            assert_eq!(found(&text), vec![(Kind::PaymentCard, card)], "{text:?}");
        }
    }

    #[test]
    fn leaves_dotted_numbers_that_are_not_cards() {
        assert!(found("Ref 4111.1111.1111.1112").is_empty());
        assert!(found("Total 4.111.111.111.111.111").is_empty());
        assert!(found("v4111.1111.1111.1111").is_empty());
    }

    #[test]
    fn leaves_cards_with_bad_luhn_or_unknown_prefix() {
        assert!(found("Tarjeta 4111 1111 1111 1112").is_empty());
        assert!(found("Tarjeta 3782 822463 10006").is_empty());
        assert!(!has_kind("Tarjeta 5555555555554445", Kind::PaymentCard));
        // Luhn-valid, but 9 is no card network's prefix.
        assert!(luhn_is_valid(&digits("9000000000000001")));
        assert!(found_only("Ref 9000000000000001", Kind::PaymentCard).is_empty());
        assert!(
            found_only("41111111111111111111", Kind::PaymentCard).is_empty(),
            "slice of a longer number"
        );
    }

    // --- IBAN ---------------------------------------------------------------------------

    #[test]
    fn finds_ibans() {
        for iban in [
            "DE89 3704 0044 0532 0130 00",
            "GB82 WEST 1234 5698 7654 32",
            "GB82WEST12345698765432",
            "ES91 2100 0418 4502 0005 1332",
            "FR14 2004 1010 0505 0001 3M02 606",
            "NL91 ABNA 0417 1643 00",
            "CH93 0076 2011 6238 5295 7",
            "IT60 X054 2811 1010 0000 0123 456",
            "PT50 0002 0123 1234 5678 9015 4",
            "BR18 0036 0305 0000 1000 9795 493C 1",
        ] {
            let text = format!("IBAN: {iban} (EUR)");
            assert_eq!(found(&text), vec![(Kind::Iban, iban)], "{text}");
        }
        // Grouped IBAN followed by more text on the same line.
        assert_eq!(
            found_only("ES91 2100 0418 4502 0005 1332 EUR", Kind::Iban),
            vec!["ES91 2100 0418 4502 0005 1332"]
        );
    }

    #[test]
    fn finds_ibans_however_they_are_cased_spaced_or_typed() {
        for iban in [
            "es91 2100 0418 4502 0005 1332",
            "es9121000418450200051332",
            "ES91.2100.0418.4502.0005.1332",
            "ES91-2100-0418-4502-0005-1332",
            "ES91  2100  0418  4502  0005  1332",
            "ES91\u{a0}2100\u{a0}0418\u{a0}4502\u{a0}0005\u{a0}1332",
            "ＥＳ９１ ２１００ ０４１８ ４５０２ ０００５ １３３２",
            "gb82 west 1234 5698 7654 32",
            "De89 3704 0044 0532 0130 00",
        ] {
            let text = format!("Cuenta: {iban}. Gracias");
            assert_eq!(found(&text), vec![(Kind::Iban, iban)], "{text:?}");
        }
    }

    #[test]
    fn leaves_lower_case_look_alikes_of_ibans() {
        assert!(found("es91 2100 0418 4502 0005 1333").is_empty());
        // A valid mod-97 check for a country whose length we do not know: taken in upper case
        // as written by a bank, left in lower case where it reads as any other word.
        assert_eq!(
            found_only("XQ38 BANK 1234 5678 9012", Kind::Iban),
            vec!["XQ38 BANK 1234 5678 9012"]
        );
        assert!(found_only("xq38 bank 1234 5678 9012", Kind::Iban).is_empty());
        assert!(found("versión es12 del documento, sección ab34").is_empty());
    }

    #[test]
    fn leaves_ibans_with_bad_checks_or_lengths() {
        assert!(found_only("DE88 3704 0044 0532 0130 00", Kind::Iban).is_empty());
        assert!(found_only("GB82 WEST 1234 5698 7654 33", Kind::Iban).is_empty());
        // Valid mod-97 for a 22-char German IBAN, but cut short.
        assert!(found_only("DE89 3704 0044 0532 0130", Kind::Iban).is_empty());
        assert!(found_only("XDE89370400440532013000", Kind::Iban).is_empty());
    }
}
