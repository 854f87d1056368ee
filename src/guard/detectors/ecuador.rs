//! Ecuador: the cédula of people (ten digits: province, a third digit below 7 and a mod-10
//! check digit) and the RUC of taxpayers (thirteen digits: a person's cédula, or a company's
//! or public body's own mod-11 number, then the establishment 001).

use super::colombia::CEDULA_KEYWORDS;
use super::keywords::{announced_numbers, Keywords};
use super::numbers::{digit_value, find_shaped};
use super::phone::{PHONE_KEYWORDS, PHONE_KEYWORD_GAP};
use super::text::Text;
use super::{Finding, Kind};

/// Words that announce a cédula of identity ("C.I."), besides those of a Colombian cédula.
const CI_KEYWORDS: [&str; 4] = ["cedula de identidad", "c.i.", "c.i", "ci"];

/// Cédula: `1710034065` or `171003406-5`. Province 30 and 50 (people registered abroad and
/// foreigners) only when announced as a cédula: Colombian mobiles also start with 30. A valid
/// number right after a phone keyword, and not announced as a cédula, is left to the phone
/// detector.
pub(super) fn find_cedulas(text: &Text, found: &mut Vec<Finding>) {
    let mut announced = announced_numbers(text, &CEDULA_KEYWORDS);
    announced.extend(announced_numbers(text, &CI_KEYWORDS));
    announced.sort_unstable();
    let phones = Keywords::find(text, &PHONE_KEYWORDS, PHONE_KEYWORD_GAP);
    let shapes = ["dddddddddd", "ddddddddd-d"];
    find_shaped(text, Kind::CedulaEc, &shapes, found, |start, _, chars| {
        let digits: Vec<u8> = chars.iter().map(|&c| digit_value(c)).collect();
        let is_announced = announced.binary_search(&start).is_ok();
        let abroad = matches!(province(&digits), 30 | 50);
        cedula_is_valid(&digits) && (is_announced || !abroad && !phones.precede(start))
    });
}

/// RUC: `1710034065001`, `1790016919001`, `1760013210001`, also `1790016919-001`.
pub(super) fn find_rucs(text: &Text, found: &mut Vec<Finding>) {
    let shapes = ["ddddddddddddd", "dddddddddd-ddd"];
    find_shaped(text, Kind::RucEc, &shapes, found, |_, _, chars| {
        let digits: Vec<u8> = chars.iter().map(|&c| digit_value(c)).collect();
        ruc_is_valid(&digits)
    });
}

fn province(digits: &[u8]) -> u8 {
    digits[0] * 10 + digits[1]
}

/// Provinces 01–24, 30 (Ecuadorians abroad) and 50 (foreigners).
fn province_is_known(digits: &[u8]) -> bool {
    matches!(province(digits), 1..=24 | 30 | 50)
}

/// A known province, a third digit of 0–6 (6 for some foreigners), and the check digit: the
/// first nine digits weighted 2, 1, 2, 1…, each product over 9 less 9, and the sum's
/// complement to the next ten.
pub(super) fn cedula_is_valid(digits: &[u8]) -> bool {
    if !province_is_known(digits) || digits[2] > 6 {
        return false;
    }
    let sum: u32 = digits[..9]
        .iter()
        .zip([2, 1].into_iter().cycle())
        .map(|(&digit, weight)| {
            let product = u32::from(digit) * weight;
            if product > 9 {
                product - 9
            } else {
                product
            }
        })
        .sum();
    u32::from(digits[9]) == (10 - sum % 10) % 10
}

/// The third digit says who holds the RUC: below 6 a person (their cédula, then 001), 9 a
/// private company (mod-11 check digit tenth, then 001), 6 a public body (mod-11 check digit
/// ninth, then 0001) or a person whose cédula has a 6 there.
pub(super) fn ruc_is_valid(digits: &[u8]) -> bool {
    if !province_is_known(digits) {
        return false;
    }
    let person = || digits[2] <= 6 && digits[10..] == [0, 0, 1] && cedula_is_valid(&digits[..10]);
    match digits[2] {
        0..=5 => person(),
        6 => {
            let public = digits[9..] == [0, 0, 0, 1]
                && mod11_check_digit(&digits[..8], &[3, 2, 7, 6, 5, 4, 3, 2]) == Some(digits[8]);
            public || person()
        }
        9 => {
            digits[10..] == [0, 0, 1]
                && mod11_check_digit(&digits[..9], &[4, 3, 2, 7, 6, 5, 4, 3, 2]) == Some(digits[9])
        }
        _ => false,
    }
}

/// 11 minus the weighted sum modulo 11, 0 for 11; `None` where that is 10 (no such number is
/// issued).
fn mod11_check_digit(digits: &[u8], weights: &[u32]) -> Option<u8> {
    let sum: u32 = digits
        .iter()
        .zip(weights)
        .map(|(&digit, &weight)| u32::from(digit) * weight)
        .sum();
    match 11 - sum % 11 {
        11 => Some(0),
        10 => None,
        check => Some(check as u8),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::guard::detectors::testing::*;

    #[test]
    fn check_digits_match_published_numbers() {
        // python-stdnum's test numbers, which it collected from public sources.
        for cedula in [
            "1714307103",
            "0602910945",
            "0926687856",
            "0910005917",
            "1710034065",
            "0962467429",
        ] {
            assert!(cedula_is_valid(&digits(cedula)), "{cedula}");
        }
        for ruc in [
            "1710034065001", // a person
            "0962467429001", // a person whose cédula has a 6 third
            "1790016919001", // a company
            "0990138850001",
            "1792060346001",
            "1760013210001", // a public body (the SRI)
            "0160000510001",
            "2160011760001",
        ] {
            assert!(ruc_is_valid(&digits(ruc)), "{ruc}");
        }
        for (bad, why) in [
            ("1714307104", "check digit"),
            ("1784307108", "third digit"),
            ("8814307107", "province"),
        ] {
            assert!(!cedula_is_valid(&digits(bad)), "{bad}: {why}");
        }
        for bad in [
            "1763154690001", // check digit of a person
            "0160000610001", // check digit of a public body
            "0190115799001", // check digit of a company
            "0170000610001", // third digit
            "8810034069001", // province
            "0926687856000", // establishment
            "1790016919002", // establishment
        ] {
            assert!(!ruc_is_valid(&digits(bad)), "{bad}");
        }
    }

    #[test]
    fn finds_cedulas() {
        for cedula in ["1710034065", "171003406-5", "0926687856", "0962467429"] {
            let text = format!("Cliente con cédula {cedula}, Quito");
            assert_eq!(found(&text), vec![(Kind::CedulaEc, cedula)], "{text}");
            let text = format!("Cliente {cedula}, Quito");
            assert_eq!(found(&text), vec![(Kind::CedulaEc, cedula)], "{text}");
        }
        // 3012345678 is a valid cédula of province 30 and a Colombian mobile: only announced.
        assert!(cedula_is_valid(&digits("3012345678")));
        assert_eq!(
            found("C.I. 3012345678"),
            vec![(Kind::CedulaEc, "3012345678")]
        );
        assert_eq!(
            found("Llamar al 3012345678"),
            vec![(Kind::Phone, "3012345678")]
        );
    }

    #[test]
    fn leaves_cedula_look_alikes() {
        for text in [
            "Cliente 1710034064",
            "Cliente 1780034065",
            "Cliente 9910034065",
            "Pedido 17100340651",
        ] {
            assert!(
                found_only(text, Kind::CedulaEc).is_empty(),
                "{text}: {:?}",
                found(text)
            );
        }
    }

    #[test]
    fn a_cedula_after_a_phone_keyword_is_a_phone() {
        assert_eq!(
            found("Celular: 0962467429"),
            vec![(Kind::Phone, "0962467429")]
        );
        assert_eq!(
            found("Celular: 0991234567, cédula 0962467429"),
            vec![(Kind::Phone, "0991234567"), (Kind::CedulaEc, "0962467429")]
        );
    }

    #[test]
    fn finds_rucs() {
        for ruc in [
            "1710034065001",
            "1790016919001",
            "1760013210001",
            "1790016919-001",
        ] {
            let text = format!("RUC {ruc} (SRI)");
            assert_eq!(found(&text), vec![(Kind::RucEc, ruc)], "{text}");
        }
    }

    #[test]
    fn leaves_rucs_with_a_wrong_check_digit_or_establishment() {
        for text in [
            "RUC 1790016918001",
            "RUC 1710034065000",
            "RUC 1760013220001",
        ] {
            assert!(
                found_only(text, Kind::RucEc).is_empty(),
                "{text}: {:?}",
                found(text)
            );
        }
    }
}
