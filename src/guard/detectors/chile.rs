//! Chile: the RUT (companies) and RUN (people), one number in one format: 7 or 8 digits and a
//! mod-11 check digit, 0–9 or K. Without the `-` before the check digit it reads as any
//! number, so that layout is only taken after a RUT or RUN keyword.

use super::keywords::Keywords;
use super::numbers::{digit_value, find_shaped};
use super::text::Text;
use super::{Finding, Kind};

/// Words that announce a RUT, folded (lower case, no accents).
const RUT_KEYWORDS: [&str; 8] = [
    "rol unico tributario",
    "rol unico nacional",
    "r.u.t.",
    "r.u.t",
    "rut",
    "r.u.n.",
    "r.u.n",
    "run",
];
/// At most this many chars between the keyword and the number.
const RUT_KEYWORD_GAP: usize = 20;

/// `12.345.678-5`, `12345678-5`, `7.654.321-6`, `1234567-4`, `76.014.309-K`; after a keyword
/// also `123456785` and `12345678K`. The K in either case.
pub(super) fn find_ruts(text: &Text, found: &mut Vec<Finding>) {
    const SHAPES: [&str; 6] = [
        "dd.ddd.ddd-x",
        "d.ddd.ddd-x",
        "dddddddd-x",
        "ddddddd-x",
        "ddddddddx",
        "dddddddx",
    ];
    let keywords = Keywords::find(text, &RUT_KEYWORDS, RUT_KEYWORD_GAP);
    find_shaped(text, Kind::RutCl, &SHAPES, found, |start, end, chars| {
        let dashed = text.is(end - 2, '-');
        (dashed || keywords.precede(start)) && rut_is_valid(chars)
    });
}

/// The body's digits, weighted 2, 3, 4, 5, 6, 7, 2, 3… from the right; the check digit is
/// 11 minus the sum modulo 11, written 0 for 11 and K for 10.
pub(super) fn rut_is_valid(chars: &[char]) -> bool {
    let (body, check) = chars.split_at(chars.len() - 1);
    if !body.iter().all(char::is_ascii_digit) {
        return false;
    }
    let sum: u32 = body
        .iter()
        .rev()
        .zip([2, 3, 4, 5, 6, 7].into_iter().cycle())
        .map(|(&c, weight)| u32::from(digit_value(c)) * weight)
        .sum();
    let expected = match 11 - sum % 11 {
        11 => '0',
        10 => 'K',
        digit => char::from(b'0' + digit as u8),
    };
    check[0] == expected
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::guard::detectors::testing::*;

    fn chars(s: &str) -> Vec<char> {
        s.chars()
            .filter(char::is_ascii_alphanumeric)
            .map(|c| c.to_ascii_uppercase())
            .collect()
    }

    #[test]
    fn check_digit_matches_published_ruts() {
        // From the SII list of electronic invoice issuers, via python-stdnum's tests, and the
        // SII's own RUT (60.803.000-K).
        for rut in [
            "10075381-2",
            "10626628-K",
            "12392004-K",
            "3528355-2",
            "7741928-4",
            "9334748-K",
            "76014309-K",
            "96919970-K",
            "99595090-1",
            "60803000-K",
            "97030000-7",
            "12345678-5",
        ] {
            assert!(rut_is_valid(&chars(rut)), "{rut}");
        }
        assert!(!rut_is_valid(&chars("10075381-3")));
        assert!(!rut_is_valid(&chars("7654321-K")), "its check digit is 6");
    }

    #[test]
    fn finds_dashed_ruts() {
        for rut in [
            "12.345.678-5",
            "12345678-5",
            "7.654.321-6",
            "7654321-6",
            "76.014.309-K",
            "76.014.309-k",
            "60.803.000-K",
            "１２.３４５.６７８-５",
        ] {
            let text = format!("Cliente {rut}, Santiago");
            assert_eq!(found(&text), vec![(Kind::RutCl, rut)], "{text}");
        }
    }

    #[test]
    fn finds_undashed_ruts_only_after_a_keyword() {
        assert_eq!(found("RUT: 123456785"), vec![(Kind::RutCl, "123456785")]);
        assert_eq!(found("R.U.N. 76014309K"), vec![(Kind::RutCl, "76014309K")]);
        assert_eq!(
            found("Rol Único Tributario de la empresa 76.014.309-K"),
            vec![(Kind::RutCl, "76.014.309-K")]
        );
        assert!(found("Pedido 123456785").is_empty());
        assert!(found("Código 76014309K").is_empty());
    }

    #[test]
    fn leaves_ruts_with_a_wrong_check_digit() {
        for text in [
            "Cliente 12.345.678-4",
            "Cliente 7.654.321-K",
            "RUT 123456784",
            "Cliente 76.014.309-0",
            "Cliente 76.014.309-X",
            "Cliente 112.345.678-5",
        ] {
            assert!(found(text).is_empty(), "{text}: {:?}", found(text));
        }
    }
}
