//! Brazil: the CPF (people) and the CNPJ (companies), each with two mod-11 check digits.
//!
//! From July 2026 the Receita Federal also issues alphanumeric CNPJs: twelve characters from
//! `0-9A-Z`, then two check digits, computed as before with each character worth its ASCII
//! code minus 48 (`A` is 17). The punctuated layout (`12.ABC.345/01DE-35`) is taken anywhere;
//! fourteen bare characters with letters in them only after a `CNPJ` keyword, since product
//! codes and references look the same.

use super::keywords::Keywords;
use super::numbers::{all_same, find_numbers, find_shaped};
use super::text::Text;
use super::{Finding, Kind};

/// At most this many chars between `CNPJ` and a bare alphanumeric CNPJ.
const CNPJ_KEYWORD_GAP: usize = 12;

pub(super) fn find_cpfs(text: &Text, found: &mut Vec<Finding>) {
    let shapes = ["ddd.ddd.ddd-dd", "ddddddddd-dd", "ddddddddddd"];
    find_numbers(text, Kind::CpfBr, &shapes, cpf_is_valid, found);
}

pub(super) fn find_cnpjs(text: &Text, found: &mut Vec<Finding>) {
    let shapes = ["xx.xxx.xxx/xxxx-dd", "xxxxxxxxxxxxdd"];
    let keywords = Keywords::find(text, &["cnpj"], CNPJ_KEYWORD_GAP);
    find_shaped(text, Kind::CnpjBr, &shapes, found, |start, end, chars| {
        let punctuated = end - start == shapes[0].len();
        let numeric = chars.iter().all(char::is_ascii_digit);
        (numeric || punctuated || keywords.precede(start)) && cnpj_chars_are_valid(chars)
    });
}

/// A CNPJ's value of one of its characters: `0-9` are 0-9, `A-Z` are 17-42.
fn cnpj_value(c: char) -> u8 {
    c as u8 - b'0'
}

pub(super) fn cnpj_chars_are_valid(chars: &[char]) -> bool {
    let values: Vec<u8> = chars.iter().map(|&c| cnpj_value(c)).collect();
    cnpj_is_valid(&values)
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

/// `values` are the fourteen characters' values (digits for a numeric CNPJ); the last two are
/// the check digits.
fn cnpj_is_valid(values: &[u8]) -> bool {
    !all_same(values)
        && values[12] < 10
        && values[13] < 10
        && brazil_check_digit(&values[..12], &[5, 4, 3, 2, 9, 8, 7, 6, 5, 4, 3, 2]) == values[12]
        && brazil_check_digit(&values[..13], &[6, 5, 4, 3, 2, 9, 8, 7, 6, 5, 4, 3, 2]) == values[13]
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
    fn finds_alphanumeric_cnpjs() {
        // The Receita Federal's own example: 12.ABC.345/01DE-35.
        assert!(cnpj_chars_are_valid(
            &"12ABC34501DE35".chars().collect::<Vec<_>>()
        ));
        assert_eq!(
            found("CNPJ 12.ABC.345/01DE-35"),
            vec![(Kind::CnpjBr, "12.ABC.345/01DE-35")]
        );
        assert_eq!(
            found("fornecedor 12.abc.345/01de-35 ativo"),
            vec![(Kind::CnpjBr, "12.abc.345/01de-35")]
        );
        assert_eq!(
            found("CNPJ: 12ABC34501DE35"),
            vec![(Kind::CnpjBr, "12ABC34501DE35")]
        );
        // Bare, with letters, and no keyword: a product code as far as anyone can tell.
        assert!(!has_kind("ref 12ABC34501DE35", Kind::CnpjBr));
        // A wrong check digit, or a letter where the check digits go.
        assert!(found("CNPJ 12.ABC.345/01DE-36").is_empty());
        assert!(found("CNPJ 12.ABC.345/01DE-3A").is_empty());
    }

    #[test]
    fn leaves_cnpjs_with_wrong_check_digits() {
        assert!(found("CNPJ 11.222.333/0001-82").is_empty());
        assert!(found("CNPJ 11.222.333/0001-91").is_empty());
        assert!(found("CNPJ 00.000.000/0000-00").is_empty());
        assert!(!has_kind("CNPJ 11222333000182", Kind::CnpjBr));
    }
}
