//! Brazil: the CPF (people) and the CNPJ (companies), each with two mod-11 check digits.

use super::numbers::{all_same, find_numbers};
use super::text::Text;
use super::{Finding, Kind};

pub(super) fn find_cpfs(text: &Text, found: &mut Vec<Finding>) {
    let shapes = ["ddd.ddd.ddd-dd", "ddddddddd-dd", "ddddddddddd"];
    find_numbers(text, Kind::CpfBr, &shapes, cpf_is_valid, found);
}

pub(super) fn find_cnpjs(text: &Text, found: &mut Vec<Finding>) {
    let shapes = ["dd.ddd.ddd/dddd-dd", "dddddddddddddd"];
    find_numbers(text, Kind::CnpjBr, &shapes, cnpj_is_valid, found);
}

/// One Brazilian mod-11 check digit over `digits` with `weights`.
fn brazil_check_digit(digits: &[u8], weights: &[u32]) -> u8 {
    let sum: u32 = digits
        .iter()
        .zip(weights)
        .map(|(&digit, &weight)| u32::from(digit) * weight)
        .sum();
    let remainder = sum % 11;
    if remainder < 2 {
        0
    } else {
        (11 - remainder) as u8
    }
}

pub(super) fn cpf_is_valid(digits: &[u8]) -> bool {
    !all_same(digits)
        && brazil_check_digit(&digits[..9], &[10, 9, 8, 7, 6, 5, 4, 3, 2]) == digits[9]
        && brazil_check_digit(&digits[..10], &[11, 10, 9, 8, 7, 6, 5, 4, 3, 2]) == digits[10]
}

fn cnpj_is_valid(digits: &[u8]) -> bool {
    !all_same(digits)
        && brazil_check_digit(&digits[..12], &[5, 4, 3, 2, 9, 8, 7, 6, 5, 4, 3, 2]) == digits[12]
        && brazil_check_digit(&digits[..13], &[6, 5, 4, 3, 2, 9, 8, 7, 6, 5, 4, 3, 2]) == digits[13]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::guard::detectors::testing::*;

    // --- Brazilian CPF and CNPJ ---------------------------------------------------------

    #[test]
    fn finds_cpfs() {
        assert_eq!(
            found("CPF 529.982.247-25"),
            vec![(Kind::CpfBr, "529.982.247-25")]
        );
        assert_eq!(
            found("CPF: 52998224725;"),
            vec![(Kind::CpfBr, "52998224725")]
        );
        assert_eq!(
            found("CPF 529982247-25"),
            vec![(Kind::CpfBr, "529982247-25")]
        );
        // Check digits computed by our own helper from a fresh base.
        let base = digits("123456789");
        let first = brazil_check_digit(&base, &[10, 9, 8, 7, 6, 5, 4, 3, 2]);
        let with_first: Vec<u8> = base.iter().copied().chain([first]).collect();
        let second = brazil_check_digit(&with_first, &[11, 10, 9, 8, 7, 6, 5, 4, 3, 2]);
        assert_eq!((first, second), (0, 9));
        assert_eq!(
            found("CPF 123.456.789-09"),
            vec![(Kind::CpfBr, "123.456.789-09")]
        );
    }

    #[test]
    fn leaves_cpfs_with_wrong_check_digits() {
        assert!(found("CPF 529.982.247-26").is_empty());
        assert!(found("CPF 529.982.247-35").is_empty());
        assert!(
            found("CPF 111.111.111-11").is_empty(),
            "repeated digits pass the check but are not issued"
        );
        assert!(!has_kind("CPF 52998224726", Kind::CpfBr));
        assert!(
            found_only("152998224725", Kind::CpfBr).is_empty(),
            "slice of a longer number"
        );
        assert!(
            found_only("1.529.982.247-25", Kind::CpfBr).is_empty(),
            "slice of a longer number"
        );
    }

    #[test]
    fn finds_cnpjs() {
        assert_eq!(
            found("CNPJ 11.222.333/0001-81"),
            vec![(Kind::CnpjBr, "11.222.333/0001-81")]
        );
        assert_eq!(
            found("CNPJ: 11222333000181"),
            vec![(Kind::CnpjBr, "11222333000181")]
        );
        assert!(cnpj_is_valid(&digits("33.000.167/0001-01"))); // Petrobras
        assert_eq!(
            found("Petrobras 33.000.167/0001-01"),
            vec![(Kind::CnpjBr, "33.000.167/0001-01")]
        );
    }

    #[test]
    fn leaves_cnpjs_with_wrong_check_digits() {
        assert!(found("CNPJ 11.222.333/0001-82").is_empty());
        assert!(found("CNPJ 11.222.333/0001-91").is_empty());
        assert!(found("CNPJ 00.000.000/0000-00").is_empty());
        assert!(!has_kind("CNPJ 11222333000182", Kind::CnpjBr));
    }
}
