//! Argentina: the CUIT/CUIL, a type prefix and the AFIP mod-11 check digit.

use super::numbers::find_numbers;
use super::text::Text;
use super::{Finding, Kind};

pub(super) fn find_cuits(text: &Text, found: &mut Vec<Finding>) {
    find_numbers(
        text,
        Kind::CuitAr,
        &["dd-dddddddd-d", "ddddddddddd"],
        cuit_is_valid,
        found,
    );
}

/// Argentine CUIT/CUIL: a known type prefix and the AFIP mod-11 check digit.
pub(super) fn cuit_is_valid(digits: &[u8]) -> bool {
    const WEIGHTS: [u32; 10] = [5, 4, 3, 2, 7, 6, 5, 4, 3, 2];
    let prefix = digits[0] * 10 + digits[1];
    if ![20, 23, 24, 27, 30, 33, 34].contains(&prefix) {
        return false;
    }
    let sum: u32 = digits[..10]
        .iter()
        .zip(WEIGHTS)
        .map(|(&digit, weight)| u32::from(digit) * weight)
        .sum();
    match 11 - sum % 11 {
        11 => digits[10] == 0,
        10 => false,
        check => u32::from(digits[10]) == check,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::guard::detectors::testing::*;

    // --- Argentine CUIT / CUIL ----------------------------------------------------------

    #[test]
    fn finds_cuits() {
        assert_eq!(
            found("CUIT 33-69345023-9 (AFIP)"),
            vec![(Kind::CuitAr, "33-69345023-9")]
        );
        assert_eq!(
            found("CUIT: 30-50001091-2"),
            vec![(Kind::CuitAr, "30-50001091-2")]
        );
        assert_eq!(
            found("CUIL 20-12345678-6"),
            vec![(Kind::CuitAr, "20-12345678-6")]
        );
        assert_eq!(
            found("CUIL 20123456786"),
            vec![(Kind::CuitAr, "20123456786")]
        );
    }

    #[test]
    fn leaves_cuits_with_a_wrong_check_digit_or_prefix() {
        assert!(found("CUIT 33-69345023-8").is_empty());
        assert!(found("CUIL 20-12345678-7").is_empty());
        assert!(
            found_only("21-12345678-6", Kind::CuitAr).is_empty(),
            "21 is no CUIT type"
        );
        assert!(!has_kind("CUIL 20123456787", Kind::CuitAr));
    }
}
