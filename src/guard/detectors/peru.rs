//! Peru: the RUC of taxpayers (eleven digits, a type prefix and a mod-11 check digit) and the
//! DNI of people (eight digits with no check digit in common use, so only taken when
//! announced as a DNI).

use super::keywords::{announced_numbers, Keywords};
use super::numbers::{digit_value, find_shaped, match_any_shape};
use super::text::Text;
use super::{Finding, Kind};

/// Words that announce a RUC, folded (lower case, no accents).
const RUC_KEYWORDS: [&str; 4] = ["registro unico de contribuyentes", "r.u.c.", "r.u.c", "ruc"];
/// At most this many chars between the keyword and the number.
const RUC_KEYWORD_GAP: usize = 20;

/// Words that announce a DNI, folded, longest first.
const DNI_KEYWORDS: [&str; 4] = ["documento nacional de identidad", "d.n.i.", "d.n.i", "dni"];

/// RUC: `20131312955`. The prefix says who holds it: 10 a person (followed by their DNI),
/// 15, 16 and 17 other people, 20 a company. A 20 is only taken after a RUC keyword: the
/// Argentine CUIT uses the same prefix and the same weights, so without one every CUIT of a
/// person would read as a Peruvian company.
pub(super) fn find_rucs(text: &Text, found: &mut Vec<Finding>) {
    let keywords = Keywords::find(text, &RUC_KEYWORDS, RUC_KEYWORD_GAP);
    find_shaped(
        text,
        Kind::RucPe,
        &["ddddddddddd"],
        found,
        |start, _, chars| {
            let digits: Vec<u8> = chars.iter().map(|&c| digit_value(c)).collect();
            ruc_is_valid(&digits) && (digits[..2] != [2, 0] || keywords.precede(start))
        },
    );
}

/// A known type prefix, then the check digit: 11 minus the weighted sum (5, 4, 3, 2, 7, 6, 5,
/// 4, 3, 2) modulo 11, written 0 for 10 and 1 for 11.
pub(super) fn ruc_is_valid(digits: &[u8]) -> bool {
    const WEIGHTS: [u32; 10] = [5, 4, 3, 2, 7, 6, 5, 4, 3, 2];
    let prefix = digits[0] * 10 + digits[1];
    if ![10, 15, 16, 17, 20].contains(&prefix) {
        return false;
    }
    let sum: u32 = digits[..10]
        .iter()
        .zip(WEIGHTS)
        .map(|(&digit, weight)| u32::from(digit) * weight)
        .sum();
    u32::from(digits[10]) == (11 - sum % 11) % 10
}

/// DNI: eight digits announced as one ("DNI", "D.N.I.", "documento nacional de identidad"),
/// plain, with the verification digit printed on the card (`12345678-9`), or with thousands
/// dots. A number followed by a control letter is a Spanish DNI, not this.
pub(super) fn find_dnis(text: &Text, found: &mut Vec<Finding>) {
    for start in announced_numbers(text, &DNI_KEYWORDS) {
        let shapes = ["dddddddd-d", "dddddddd", "dd.ddd.ddd"];
        if let Some(end) = match_any_shape(text, start, &shapes) {
            if !control_letter_follows(text, end) {
                found.push(text.finding(Kind::DniPe, start, end));
            }
        }
    }
}

/// `-Z` or ` Z` right after a number, as a Spanish DNI ends.
fn control_letter_follows(text: &Text, end: usize) -> bool {
    let letter = match text.at(end) {
        Some('-') => text.at(end + 1).is_some_and(|c| c.is_ascii_alphabetic()),
        Some(' ') => text.at(end + 1).is_some_and(|c| c.is_ascii_uppercase()),
        _ => false,
    };
    letter && text.word_ends(end + 2)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::guard::detectors::testing::*;

    #[test]
    fn check_digit_matches_published_rucs() {
        // From python-stdnum's tests (found online) and SUNAT's own RUC.
        for ruc in [
            "20131312955",
            "20512333797",
            "10054148289",
            "10452880437",
            "15484032987",
            "17155542071",
            "20100047218",
            "20552756453",
        ] {
            assert!(ruc_is_valid(&digits(ruc)), "{ruc}");
        }
        assert!(!ruc_is_valid(&digits("20131312954")));
        assert!(!ruc_is_valid(&digits("99512333792")), "99 is no RUC type");
    }

    #[test]
    fn finds_rucs() {
        assert_eq!(
            found("Emisor RUC 20131312955 (SUNAT)"),
            vec![(Kind::RucPe, "20131312955")]
        );
        assert_eq!(
            found("R.U.C. N° 20512333797"),
            vec![(Kind::RucPe, "20512333797")]
        );
        // People's RUCs (10, 15, 17) need no keyword: no CUIT starts so.
        assert_eq!(
            found("Proveedor 10054148289"),
            vec![(Kind::RucPe, "10054148289")]
        );
        assert_eq!(found("id 17155542071"), vec![(Kind::RucPe, "17155542071")]);
    }

    #[test]
    fn leaves_rucs_with_a_wrong_check_digit_or_prefix() {
        for text in [
            "RUC 20131312954",
            "RUC 10054148288",
            "RUC 30131312955",
            "RUC 201313129551",
        ] {
            assert!(
                found_only(text, Kind::RucPe).is_empty(),
                "{text}: {:?}",
                found(text)
            );
        }
    }

    #[test]
    fn finds_dnis_announced_as_such() {
        for (text, dni) in [
            ("DNI 45678912", "45678912"),
            ("D.N.I. Nº 07654321", "07654321"),
            ("con documento nacional de identidad 45678912.", "45678912"),
            ("dni: 45678912-3", "45678912-3"),
            ("DNI N° 45.678.912", "45.678.912"),
        ] {
            assert_eq!(found(text), vec![(Kind::DniPe, dni)], "{text}");
        }
    }

    #[test]
    fn leaves_numbers_not_announced_as_a_dni() {
        for text in [
            "Pedido 45678912",
            "DNI del titular en la ficha 45678912",
            "DNI 4567891",
            "DNI 456789123",
            "xDNI 45678912",
        ] {
            assert!(found(text).is_empty(), "{text}: {:?}", found(text));
        }
    }

    #[test]
    fn a_spanish_dni_is_no_peruvian_one() {
        assert_eq!(found("DNI 12345678Z"), vec![(Kind::DniEs, "12345678Z")]);
        assert_eq!(found("DNI 12345678-Z"), vec![(Kind::DniEs, "12345678-Z")]);
        assert_eq!(
            found("DNI 12.345.678-Z"),
            vec![(Kind::DniEs, "12.345.678-Z")]
        );
        // With a wrong control letter it is neither.
        assert!(found("DNI 12345678-A").is_empty());
        assert!(found("DNI 12345678 A").is_empty());
        // A lower-case word after the number is no control letter.
        assert_eq!(
            found("DNI 45678912 y pasaporte"),
            vec![(Kind::DniPe, "45678912")]
        );
    }
}
