//! Colombia: the NIT (DIAN check digit) and the cédula de ciudadanía, which has no check digit
//! and is only taken when announced as one.

use super::keywords::announced_numbers;
use super::numbers::{all_same, find_numbers};
use super::text::Text;
use super::{Finding, Kind};

pub(super) fn find_nits(text: &Text, found: &mut Vec<Finding>) {
    find_numbers(
        text,
        Kind::NitCo,
        &["ddd.ddd.ddd-d", "ddddddddd-d"],
        nit_is_valid,
        found,
    );
}

/// Colombian NIT, nine digits then the DIAN check digit.
pub(super) fn nit_is_valid(digits: &[u8]) -> bool {
    let (body, check) = digits.split_at(digits.len() - 1);
    !all_same(body) && nit_check_digit(body) == check[0]
}

/// DIAN's mod-11 check digit, weights applied from the rightmost digit.
fn nit_check_digit(body: &[u8]) -> u8 {
    const WEIGHTS: [u32; 15] = [3, 7, 13, 17, 19, 23, 29, 37, 41, 43, 47, 53, 59, 67, 71];
    let sum: u32 = body
        .iter()
        .rev()
        .zip(WEIGHTS)
        .map(|(&digit, weight)| u32::from(digit) * weight)
        .sum();
    let remainder = sum % 11;
    if remainder > 1 {
        (11 - remainder) as u8
    } else {
        remainder as u8
    }
}

// ---------------------------------------------------------------------------------------------
// Colombian cédula: no check digit, so only a number announced as one.

/// Keywords, folded (lower case, no accents), longest first.
pub(super) const CEDULA_KEYWORDS: [&str; 5] =
    ["cedula de ciudadania", "cedula", "c.c.", "c.c", "cc"];

pub(super) fn find_cedulas(text: &Text, found: &mut Vec<Finding>) {
    for number_start in announced_numbers(text, &CEDULA_KEYWORDS) {
        if let Some(number_end) = match_cedula_number(text, number_start) {
            found.push(text.finding(Kind::CedulaCo, number_start, number_end));
        }
    }
}

/// 6–10 digits, plain (`1020345678`) or with thousands dots (`1.020.345.678`).
fn match_cedula_number(text: &Text, start: usize) -> Option<usize> {
    let mut end = text.digits_end(start);
    let mut digits = end - start;
    if digits <= 3 {
        while text.is(end, '.')
            && (1..=3).all(|offset| text.is_digit(end + offset))
            && !text.is_digit(end + 4)
        {
            end += 4;
            digits += 3;
        }
    }
    ((6..=10).contains(&digits) && text.number_ends(end)).then_some(end)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::guard::detectors::testing::*;

    // --- Colombian NIT ------------------------------------------------------------------

    #[test]
    fn nit_check_digit_matches_known_nits() {
        assert_eq!(nit_check_digit(&digits("800197268")), 4); // DIAN
        assert_eq!(nit_check_digit(&digits("899999068")), 1); // Ecopetrol
        assert_eq!(nit_check_digit(&digits("900123456")), 8);
    }

    #[test]
    fn finds_nits() {
        assert_eq!(
            found("NIT 800.197.268-4 (DIAN)"),
            vec![(Kind::NitCo, "800.197.268-4")]
        );
        assert_eq!(
            found("NIT: 899999068-1."),
            vec![(Kind::NitCo, "899999068-1")]
        );
        assert_eq!(
            found("Proveedor 900.123.456-8"),
            vec![(Kind::NitCo, "900.123.456-8")]
        );
    }

    #[test]
    fn leaves_nits_with_a_wrong_check_digit() {
        assert!(found("NIT 800.197.268-5").is_empty());
        assert!(found("Proveedor 900.123.456-7").is_empty());
        assert!(found("NIT 899999068-2").is_empty());
    }

    // --- Colombian cédula ---------------------------------------------------------------

    #[test]
    fn finds_cedulas_announced_as_such() {
        assert_eq!(
            found("identificado con C.C. No. 1.020.345.678 de Bogotá"),
            vec![(Kind::CedulaCo, "1.020.345.678")]
        );
        assert_eq!(found("CC 79123456"), vec![(Kind::CedulaCo, "79123456")]);
        assert_eq!(
            found("con cédula de ciudadanía número 52.345.678 expedida"),
            vec![(Kind::CedulaCo, "52.345.678")]
        );
        assert_eq!(
            found("CÉDULA: 1020345678"),
            vec![(Kind::CedulaCo, "1020345678")]
        );
        assert_eq!(
            found("c.c 43.210.987"),
            vec![(Kind::CedulaCo, "43.210.987")]
        );
    }

    #[test]
    fn leaves_numbers_without_cedula_context() {
        assert!(found("Factura 79123456").is_empty());
        assert!(found_only("cuenta 52.345.678", Kind::CedulaCo).is_empty());
        assert!(
            found_only("CC 12345", Kind::CedulaCo).is_empty(),
            "too short"
        );
        assert!(
            found_only("CC 123456789012", Kind::CedulaCo).is_empty(),
            "too long"
        );
        assert!(
            found_only("ACC 79123456", Kind::CedulaCo).is_empty(),
            "inside a word"
        );
    }
}
