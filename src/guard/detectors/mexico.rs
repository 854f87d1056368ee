//! Mexico: the RFC (SAT check char) and the CURP (RENAPO check digit).

use super::text::{upper, Text};
use super::{Finding, Kind};

/// A valid YYMMDD: month 01–12, day 01–31.
fn is_valid_yymmdd(digits: &[u8]) -> bool {
    let month = digits[2] * 10 + digits[3];
    let day = digits[4] * 10 + digits[5];
    (1..=12).contains(&month) && (1..=31).contains(&day)
}

/// RFC: 3 letters (persona moral) or 4 (persona física), a YYMMDD date, and a 3-char
/// homoclave whose last char is the SAT check digit. `-` may separate the three parts.
pub(super) fn find_rfcs(text: &Text, found: &mut Vec<Finding>) {
    let is_rfc_letter = |c: char| c.is_ascii_uppercase() || c == 'Ñ' || c == '&';
    'start: for index in 0..text.len() {
        if !text.at(index).map(upper).is_some_and(is_rfc_letter) || !text.word_starts(index) {
            continue;
        }
        let mut key: Vec<char> = Vec::with_capacity(13);
        let mut at = index;
        while key.len() < 5 {
            match text.at(at).map(upper) {
                Some(c) if is_rfc_letter(c) => key.push(c),
                _ => break,
            }
            at += 1;
        }
        let letters = key.len();
        if letters != 3 && letters != 4 {
            continue;
        }
        if text.is(at, '-') {
            at += 1;
        }
        let mut date = [0u8; 6];
        for slot in &mut date {
            if !text.is_digit(at) {
                continue 'start;
            }
            *slot = text.digit(at);
            key.push(text.at(at).unwrap_or('0'));
            at += 1;
        }
        if !is_valid_yymmdd(&date) {
            continue;
        }
        if text.is(at, '-') {
            at += 1;
        }
        for _ in 0..3 {
            match text.at(at).map(upper) {
                Some(c) if c.is_ascii_uppercase() || c.is_ascii_digit() => key.push(c),
                _ => continue 'start,
            }
            at += 1;
        }
        if !text.word_ends(at) {
            continue;
        }
        let (body, check) = key.split_at(key.len() - 1);
        if rfc_check_char(body) == Some(check[0]) {
            found.push(text.finding(Kind::RfcMx, index, at));
        }
    }
}

/// SAT check char over the 11 (moral, padded with a leading space) or 12 chars before it.
fn rfc_check_char(body: &[char]) -> Option<char> {
    const TABLE: &str = "0123456789ABCDEFGHIJKLMN&OPQRSTUVWXYZ Ñ";
    let padded: Vec<char> = if body.len() == 11 {
        std::iter::once(' ').chain(body.iter().copied()).collect()
    } else {
        body.to_vec()
    };
    let mut sum = 0;
    for (position, c) in padded.iter().enumerate() {
        let value = TABLE.chars().position(|entry| entry == *c)?;
        sum += value * (13 - position);
    }
    Some(match sum % 11 {
        0 => '0',
        1 => 'A',
        remainder => char::from(b'0' + (11 - remainder) as u8),
    })
}

/// The state codes a CURP may carry (NE: born abroad).
const CURP_STATES: [&str; 33] = [
    "AS", "BC", "BS", "CC", "CL", "CM", "CS", "CH", "DF", "DG", "GT", "GR", "HG", "JC", "MC", "MN",
    "MS", "NT", "NL", "OC", "PL", "QT", "QR", "SP", "SL", "SR", "TC", "TS", "TL", "VZ", "YN", "ZS",
    "NE",
];

/// CURP: 4 letters, YYMMDD, sex (H/M/X), state, 3 consonants, differentiator, check digit.
pub(super) fn find_curps(text: &Text, found: &mut Vec<Finding>) {
    let is_consonant = |c: char| c.is_ascii_uppercase() && !"AEIOU".contains(c);
    for index in 0..text.len().saturating_sub(17) {
        if !text.at(index).is_some_and(|c| c.is_ascii_alphabetic()) || !text.word_starts(index) {
            continue;
        }
        let curp: Vec<char> = (index..index + 18)
            .filter_map(|i| text.at(i))
            .map(upper)
            .collect();
        let state: String = curp[11..13].iter().collect();
        let mut date = [0u8; 6];
        for (slot, c) in date.iter_mut().zip(&curp[4..10]) {
            *slot = c.to_digit(10).unwrap_or(0) as u8;
        }
        let well_formed = curp[..4].iter().all(char::is_ascii_uppercase)
            && curp[4..10].iter().all(char::is_ascii_digit)
            && is_valid_yymmdd(&date)
            && matches!(curp[10], 'H' | 'M' | 'X')
            && CURP_STATES.contains(&state.as_str())
            && curp[13..16].iter().all(|&c| is_consonant(c))
            && (curp[16].is_ascii_uppercase() || curp[16].is_ascii_digit())
            && curp[17].is_ascii_digit()
            && text.word_ends(index + 18);
        if well_formed && curp_check_digit(&curp[..17]) == curp[17].to_digit(10) {
            found.push(text.finding(Kind::CurpMx, index, index + 18));
        }
    }
}

/// RENAPO check digit over the first 17 chars.
fn curp_check_digit(body: &[char]) -> Option<u32> {
    const TABLE: &str = "0123456789ABCDEFGHIJKLMNÑOPQRSTUVWXYZ";
    let mut sum = 0;
    for (position, c) in body.iter().enumerate() {
        let value = TABLE.chars().position(|entry| entry == *c)? as u32;
        sum += value * (18 - position as u32);
    }
    Some((10 - sum % 10) % 10)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::guard::detectors::testing::*;

    // --- Mexican RFC --------------------------------------------------------------------

    #[test]
    fn rfc_check_char_matches_published_rfcs() {
        for rfc in [
            "GODE561231GR8",
            "WAL9709244W4",
            "CFE370814QI0",
            "SAT970701NN3",
            "TME840315KT6",
            "IMS421231I45",
        ] {
            let chars: Vec<char> = rfc.chars().collect();
            assert_eq!(
                rfc_check_char(&chars[..chars.len() - 1]),
                chars.last().copied(),
                "{rfc}"
            );
        }
    }

    #[test]
    fn finds_rfcs() {
        assert_eq!(
            found("RFC: GODE561231GR8."),
            vec![(Kind::RfcMx, "GODE561231GR8")]
        );
        assert_eq!(
            found("Emisor WAL9709244W4 (moral)"),
            vec![(Kind::RfcMx, "WAL9709244W4")]
        );
        assert_eq!(
            found("RFC CFE-370814-QI0"),
            vec![(Kind::RfcMx, "CFE-370814-QI0")]
        );
        assert_eq!(
            found("rfc gode561231gr8"),
            vec![(Kind::RfcMx, "gode561231gr8")]
        );
    }

    #[test]
    fn leaves_rfcs_with_a_wrong_check_char_or_date() {
        assert!(found("RFC: GODE561231GR9").is_empty());
        assert!(found("Emisor WAL9709244W5").is_empty());
        assert!(found("RFC GODE561331GR8").is_empty(), "month 13");
        assert!(found("XGODE561231GR8").is_empty(), "inside a longer word");
    }

    // --- Mexican CURP -------------------------------------------------------------------

    #[test]
    fn curp_check_digit_matches_published_curps() {
        for curp in [
            "HEGG560427MVZRRL04",
            "LOOA531113HTCPBN07",
            "MAHJ280603MSPRRV09",
        ] {
            let chars: Vec<char> = curp.chars().collect();
            assert_eq!(
                curp_check_digit(&chars[..17]),
                chars[17].to_digit(10),
                "{curp}"
            );
        }
    }

    #[test]
    fn finds_curps() {
        assert_eq!(
            found("CURP: HEGG560427MVZRRL04"),
            vec![(Kind::CurpMx, "HEGG560427MVZRRL04")]
        );
        assert_eq!(
            found("curp: LOOA531113HTCPBN07."),
            vec![(Kind::CurpMx, "LOOA531113HTCPBN07")]
        );
        assert_eq!(
            found("curp mahj280603msprrv09"),
            vec![(Kind::CurpMx, "mahj280603msprrv09")]
        );
    }

    #[test]
    fn leaves_curps_with_a_wrong_check_digit_or_state() {
        assert!(found("CURP: HEGG560427MVZRRL05").is_empty());
        assert!(found("CURP: BADD110313HCMLNS09").is_empty()); // check digit should be 6
        assert!(
            found("CURP: HEGG560427MXXRRL04").is_empty(),
            "XX is not a state"
        );
    }
}
