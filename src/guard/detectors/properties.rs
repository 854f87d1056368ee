//! Property tests of the checksum detectors: every valid generated number is caught, whole,
//! in any surrounding text; a number whose check fails after a one-digit change is not; and
//! a corpus of look-alikes (order numbers, dates, amounts, tracking codes) passes untouched.

use proptest::prelude::*;

use super::testing::found_only;
use super::{argentina, brazil, chile, colombia, ecuador, money, peru, scan, spain, Kind};

/// A checksum detector, described well enough to generate its numbers.
struct Case {
    kind: Kind,
    /// The compact number: `d` a random digit, `x` a random digit or upper-case letter, `?`
    /// a check character (found by trying `checks`), anything else itself.
    template: &'static str,
    checks: &'static str,
    /// How it is written: each `#` takes the next character of the compact number.
    layout: &'static str,
    valid: fn(&str) -> bool,
    /// Whether every one-digit change breaks the check (Luhn, ISO 7064 mod 97), or only most
    /// (mod-11 schemes that write two remainders the same way).
    every_change_caught: bool,
}

const DIGITS: &str = "0123456789";
const ALNUM: &str = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ";

fn values(s: &str) -> Vec<u8> {
    s.bytes().map(|b| b.wrapping_sub(b'0')).collect()
}

fn chars(s: &str) -> Vec<char> {
    s.chars().collect()
}

#[rustfmt::skip]
const CASES: &[Case] = &[
    Case { kind: Kind::CpfBr, template: "ddddddddd??", checks: DIGITS, layout: "###.###.###-##",
           valid: |s| brazil::cpf_is_valid(&values(s)), every_change_caught: false },
    Case { kind: Kind::CnpjBr, template: "dddddddd0001??", checks: DIGITS, layout: "##.###.###/####-##",
           valid: |s| brazil::cnpj_chars_are_valid(&chars(s)), every_change_caught: false },
    Case { kind: Kind::CnpjBr, template: "xxxxxxxxxxxx??", checks: DIGITS, layout: "##.###.###/####-##",
           valid: |s| brazil::cnpj_chars_are_valid(&chars(s)), every_change_caught: false },
    Case { kind: Kind::CuitAr, template: "20dddddddd?", checks: DIGITS, layout: "##-########-#",
           valid: |s| argentina::cuit_is_valid(&values(s)), every_change_caught: false },
    Case { kind: Kind::CuitAr, template: "30dddddddd?", checks: DIGITS, layout: "###########",
           valid: |s| argentina::cuit_is_valid(&values(s)), every_change_caught: false },
    Case { kind: Kind::NitCo, template: "9dddddddd?", checks: DIGITS, layout: "###.###.###-#",
           valid: |s| colombia::nit_is_valid(&values(s)), every_change_caught: false },
    Case { kind: Kind::RutCl, template: "1ddddddd?", checks: "0123456789K", layout: "##.###.###-#",
           valid: |s| chile::rut_is_valid(&chars(s)), every_change_caught: false },
    Case { kind: Kind::RucPe, template: "10dddddddd?", checks: DIGITS, layout: "###########",
           valid: |s| peru::ruc_is_valid(&values(s)), every_change_caught: false },
    Case { kind: Kind::CedulaEc, template: "173dddddd?", checks: DIGITS, layout: "##########",
           valid: |s| ecuador::cedula_is_valid(&values(s)), every_change_caught: false },
    Case { kind: Kind::RucEc, template: "179dddddd?001", checks: DIGITS, layout: "#############",
           valid: |s| ecuador::ruc_is_valid(&values(s)), every_change_caught: false },
    Case { kind: Kind::DniEs, template: "dddddddd?", checks: "ABCDEFGHJKLMNPQRSTVWXYZ", layout: "########-#",
           valid: |s| spain::dni_is_valid(&chars(s)), every_change_caught: false },
    Case { kind: Kind::NieEs, template: "Xddddddd?", checks: "ABCDEFGHJKLMNPQRSTVWXYZ", layout: "#-#######-#",
           valid: |s| spain::nie_is_valid(&chars(s)), every_change_caught: false },
    Case { kind: Kind::CifEs, template: "Bddddddd?", checks: DIGITS, layout: "#########",
           valid: |s| spain::cif_is_valid(&chars(s)), every_change_caught: false },
    Case { kind: Kind::PaymentCard, template: "4dddddddddddddd?", checks: DIGITS, layout: "#### #### #### ####",
           valid: |s| money::card_is_valid(&values(s)), every_change_caught: true },
    Case { kind: Kind::Iban, template: "ES??dddddddddddddddddddd", checks: DIGITS, layout: "#### #### #### #### #### ####",
           valid: |s| money::iban_kind(s.as_bytes(), false), every_change_caught: true },
];

/// Text on either side of a number, as documents and extracted fields have it.
const BEFORE: &[&str] = &[
    "",
    "Nro ",
    "ID: ",
    "(",
    "cliente ",
    "Factura emitida a ",
    "«",
    "ref.\n",
    "\t",
];
const AFTER: &[&str] = &[
    "",
    ".",
    ",",
    ")",
    " gracias",
    "; pago 30 días",
    "»",
    "\n",
    " y",
];

/// The compact number for `case` from the random `seed` bytes, with its check characters
/// found by trying each; `None` when no choice passes (a body the scheme never issues).
fn generate(case: &Case, seed: &[u8]) -> Option<String> {
    let mut body = String::new();
    for (i, t) in case.template.chars().enumerate() {
        let r = seed[i % seed.len()].wrapping_add(i as u8) as usize;
        body.push(match t {
            'd' => DIGITS.as_bytes()[r % 10] as char,
            'x' => ALNUM.as_bytes()[r % 36] as char,
            other => other,
        });
    }
    let holes: Vec<usize> = body.match_indices('?').map(|(i, _)| i).collect();
    let checks: Vec<char> = case.checks.chars().collect();
    let tries = checks.len().pow(holes.len() as u32);
    (0..tries).find_map(|mut n| {
        let mut candidate: Vec<char> = body.chars().collect();
        for &hole in &holes {
            candidate[hole] = checks[n % checks.len()];
            n /= checks.len();
        }
        let candidate: String = candidate.into_iter().collect();
        (case.valid)(&candidate).then_some(candidate)
    })
}

/// `compact` written out as `case.layout` says.
fn lay_out(case: &Case, compact: &str) -> String {
    let mut rest = compact.chars();
    case.layout
        .chars()
        .map(|c| {
            if c == '#' {
                rest.next().expect("layout fits")
            } else {
                c
            }
        })
        .collect()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn every_valid_number_is_caught_whole_in_any_surrounding_text(
        which in 0..CASES.len(),
        seed in proptest::array::uniform16(any::<u8>()),
        before in proptest::sample::select(BEFORE),
        after in proptest::sample::select(AFTER),
    ) {
        let case = &CASES[which];
        let Some(compact) = generate(case, &seed) else { return Ok(()) };
        let written = lay_out(case, &compact);
        let text = format!("{before}{written}{after}");
        prop_assert_eq!(found_only(&text, case.kind), vec![written.as_str()], "{:?} in {:?}", case.kind, text);
    }

    #[test]
    fn a_number_whose_check_a_one_digit_change_breaks_is_left(
        which in 0..CASES.len(),
        seed in proptest::array::uniform16(any::<u8>()),
        at in any::<prop::sample::Index>(),
        by in 1u8..10,
        before in proptest::sample::select(BEFORE),
    ) {
        let case = &CASES[which];
        let Some(compact) = generate(case, &seed) else { return Ok(()) };
        // One of the random body digits, changed to another digit.
        let template: Vec<char> = case.template.chars().collect();
        let mut changed: Vec<char> = compact.chars().collect();
        let digits: Vec<usize> = (0..template.len())
            .filter(|&i| matches!(template[i], 'd' | 'x') && changed[i].is_ascii_digit())
            .collect();
        if digits.is_empty() {
            return Ok(());
        }
        let i = digits[at.index(digits.len())];
        changed[i] = char::from(b'0' + (changed[i] as u8 - b'0' + by) % 10);
        let changed: String = changed.into_iter().collect();
        if case.every_change_caught {
            prop_assert!(!(case.valid)(&changed), "{:?}: {} still valid", case.kind, changed);
        }
        if !(case.valid)(&changed) {
            let text = format!("{before}{} fin", lay_out(case, &changed));
            prop_assert!(found_only(&text, case.kind).is_empty(), "{:?} in {:?}", case.kind, text);
        }
    }
}

#[test]
fn every_case_generates_numbers() {
    for case in CASES {
        let made = (0u8..20)
            .filter(|s| generate(case, &[*s, s.wrapping_mul(7), 3, 11]).is_some())
            .count();
        assert!(
            made > 10,
            "{:?}: {made} of 20 seeds gave a number",
            case.kind
        );
    }
}

/// Numbers a business document is full of that are no one's identity or account.
#[test]
fn look_alikes_pass_untouched() {
    let mut wrong = Vec::new();
    for text in [
        "Pedido 2026-000123 despachado",
        "Orden de compra OC-4500012345",
        "Fecha de emisión: 12/05/2026, vence 2026-06-11",
        "Total: $ 1.234.567,89 COP (USD 312.45)",
        "Valor 45.000.000 pesos, IVA 19% incluido",
        "Guía de envío 1Z999AA10123456784",
        "Código de barras 7701234567890",
        "Lote L2026-11-26-03, vencimiento 11/2027",
        "Versión 3.14.159 del contrato, cláusula 7.2.1",
        "Tracking TBA123456789000 entregado",
        "Referencia de pago 000123456",
        "Radicado No. 20261126-0042",
    ] {
        let found = scan(text, &Kind::ALL);
        if !found.is_empty() {
            wrong.push(format!("{text}: {found:?}"));
        }
    }
    assert!(wrong.is_empty(), "{wrong:#?}");
}
