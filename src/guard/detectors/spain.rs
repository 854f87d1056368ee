//! Spain: the DNI (eight digits and a control letter), the NIE of foreign residents (X, Y or Z,
//! seven digits and the same control letter) and the CIF of companies (a letter for the kind
//! of entity, seven digits and a control digit or letter).

use super::numbers::{digit_value, find_shaped};
use super::text::Text;
use super::{Finding, Kind};

/// The control letters of the DNI and NIE, indexed by the number modulo 23.
const CONTROL_LETTERS: &[u8; 23] = b"TRWAGMYFPDXBNJZSQVHLCKE";

/// DNI: `12345678Z`, `12345678-Z`, `12.345.678-Z`, `12.345.678Z`, the letter in either case.
/// No space before the letter: "pedido 12345678 y …" would pass the check one time in 23.
pub(super) fn find_dnis(text: &Text, found: &mut Vec<Finding>) {
    let shapes = ["ddddddddL", "dddddddd-L", "dd.ddd.ddd-L", "dd.ddd.dddL"];
    find_shaped(text, Kind::DniEs, &shapes, found, |_, _, chars| {
        dni_is_valid(chars)
    });
}

/// NIE: `X1234567L`, `X-1234567-L`, `X1234567-L`, in either case.
pub(super) fn find_nies(text: &Text, found: &mut Vec<Finding>) {
    let shapes = ["LdddddddL", "L-ddddddd-L", "Lddddddd-L"];
    find_shaped(text, Kind::NieEs, &shapes, found, |_, _, chars| {
        nie_is_valid(chars)
    });
}

/// CIF: `A28015865`, `A-28015865`, `A-28.015.865`, `Q2826000H`; the entity letter in upper
/// case, as the tax agency writes it.
pub(super) fn find_cifs(text: &Text, found: &mut Vec<Finding>) {
    let shapes = ["Ldddddddx", "L-dddddddx", "L-dd.ddd.ddx"];
    find_shaped(text, Kind::CifEs, &shapes, found, |start, _, chars| {
        text.at(start).is_some_and(|c| c.is_ascii_uppercase()) && cif_is_valid(chars)
    });
}

/// The control letter of a DNI number (or of a NIE with its prefix read as a digit).
fn control_letter(number: u32) -> char {
    char::from(CONTROL_LETTERS[(number % 23) as usize])
}

/// Eight digits and their control letter.
pub(super) fn dni_is_valid(chars: &[char]) -> bool {
    let number = chars[..8]
        .iter()
        .fold(0u32, |n, &c| n * 10 + u32::from(digit_value(c)));
    control_letter(number) == chars[8]
}

/// X, Y or Z (read as 0, 1, 2 in front of the digits), seven digits and the control letter.
pub(super) fn nie_is_valid(chars: &[char]) -> bool {
    let Some(prefix) = "XYZ".find(chars[0]) else {
        return false;
    };
    let number = chars[1..8]
        .iter()
        .fold(prefix as u32, |n, &c| n * 10 + u32::from(digit_value(c)));
    control_letter(number) == chars[8]
}

/// The entity letter, seven digits and the control char: the digit
/// `(10 - (even-place digits + digit sums of twice the odd-place digits) % 10) % 10`, or the
/// letter at that place in `JABCDEFGHI`. Companies (A, B, E, H) use the digit; public bodies,
/// churches and branches of foreign companies (P, Q, R, S, W) and numbers starting `00`
/// (non-residents) use the letter; the others may use either.
pub(super) fn cif_is_valid(chars: &[char]) -> bool {
    const ENTITIES: &str = "ABCDEFGHJNPQRSUVW";
    let entity = chars[0];
    if !ENTITIES.contains(entity) {
        return false;
    }
    let digits: Vec<u8> = chars[1..8].iter().map(|&c| digit_value(c)).collect();
    let control = cif_control_digit(&digits);
    let as_digit = char::from(b'0' + control);
    let as_letter = char::from(b"JABCDEFGHI"[usize::from(control)]);
    let letter_only = "PQRSW".contains(entity) || digits[..2] == [0, 0];
    let digit_only = "ABEH".contains(entity);
    (chars[8] == as_digit && !letter_only) || (chars[8] == as_letter && !digit_only)
}

fn cif_control_digit(digits: &[u8]) -> u8 {
    let sum: u32 = digits
        .iter()
        .enumerate()
        .map(|(position, &digit)| {
            let digit = u32::from(digit);
            if position % 2 == 0 {
                // Odd places (1st, 3rd…): twice the digit, its two digits added.
                (digit * 2) / 10 + (digit * 2) % 10
            } else {
                digit
            }
        })
        .sum();
    ((10 - sum % 10) % 10) as u8
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::guard::detectors::testing::*;

    fn chars(s: &str) -> Vec<char> {
        s.chars().filter(char::is_ascii_alphanumeric).collect()
    }

    #[test]
    fn control_chars_match_published_numbers() {
        // python-stdnum's test numbers and the tax agency's own examples.
        assert!(dni_is_valid(&chars("12345678Z")));
        assert!(dni_is_valid(&chars("11111111H")));
        assert!(!dni_is_valid(&chars("11111111T")));
        assert!(nie_is_valid(&chars("X1111111G")));
        assert!(nie_is_valid(&chars("X1234567L")));
        assert!(!nie_is_valid(&chars("X1111111A")));
        for cif in [
            "A11111119", // python-stdnum
            "A28015865", // Telefónica
            "A39000013", // Banco Santander
            "A15075062", // Inditex
            "A46103834", // Mercadona
        ] {
            assert!(cif_is_valid(&chars(cif)), "{cif}");
        }
        assert!(!cif_is_valid(&chars("A11111118")));
    }

    #[test]
    fn finds_dnis() {
        for dni in [
            "12345678Z",
            "12.345.678-Z",
            "12345678-z",
            "12.345.678Z",
            "11111111H",
        ] {
            let text = format!("Titular con DNI {dni}, vecino de Madrid.");
            assert_eq!(found(&text), vec![(Kind::DniEs, dni)], "{text}");
        }
        assert_eq!(found("NIF: 12345678Z."), vec![(Kind::DniEs, "12345678Z")]);
    }

    #[test]
    fn leaves_dnis_with_a_wrong_letter_or_layout() {
        for text in [
            "DNI 12345678A",
            "DNI 12.345.678-T",
            "pedido 12345678 Z",
            "ref 112345678Z",
            "lote 12345678ZA",
            "lote A12345678Z",
        ] {
            assert!(found(text).is_empty(), "{text}: {:?}", found(text));
        }
    }

    #[test]
    fn finds_nies() {
        for nie in [
            "X1234567L",
            "X-1234567-L",
            "x1234567l",
            "X1111111G",
            "Y1234567X",
        ] {
            let text = format!("NIE {nie} (residente)");
            assert_eq!(found(&text), vec![(Kind::NieEs, nie)], "{text}");
        }
    }

    #[test]
    fn leaves_nies_with_a_wrong_letter_or_prefix() {
        for text in [
            "NIE X1234567M",
            "NIE X1111111A",
            "NIE W1234567L",
            "NIE X12345678L",
        ] {
            assert!(found(text).is_empty(), "{text}: {:?}", found(text));
        }
    }

    #[test]
    fn finds_cifs() {
        for cif in [
            "A28015865",
            "A-28015865",
            "A-28.015.865",
            "B12345674",
            "Q2826000H",
        ] {
            let text = format!("Proveedor {cif}, Madrid");
            assert_eq!(found(&text), vec![(Kind::CifEs, cif)], "{text}");
        }
        // C, D, F, G, J, N, U, V may end in the digit or the letter.
        assert_eq!(found("CIF G12345674"), vec![(Kind::CifEs, "G12345674")]);
        assert_eq!(found("CIF G1234567D"), vec![(Kind::CifEs, "G1234567D")]);
    }

    #[test]
    fn leaves_cifs_with_a_wrong_control_or_entity() {
        for text in [
            "CIF A28015866",
            "CIF A2801586E",  // a company: the control is the digit 5, not its letter
            "CIF Q28260008",  // a public body: the control is the letter H, not the digit
            "CIF I28015865",  // I is no entity letter
            "CIF a28015865",  // lower case
            "CIF A280158650", // too long
        ] {
            assert!(found(text).is_empty(), "{text}: {:?}", found(text));
        }
    }
}
