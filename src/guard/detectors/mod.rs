//! What the egress guard looks for before a payload leaves for the cloud: emails, phones,
//! cards, IBANs and the tax and identity numbers of Spain and Latin America, each confirmed by
//! its own check digit (or, where there is none, by a keyword announcing it) so look-alikes
//! pass untouched. The detectors read a normalised copy of the text (`text.rs`), so full-width
//! digits or odd spaces hide nothing, and report offsets into the original. One file per
//! family of detectors; this one says which exist, runs them and settles overlaps.

mod argentina;
mod brazil;
mod chile;
mod colombia;
mod ecuador;
mod email;
mod keywords;
mod mexico;
mod money;
mod numbers;
mod peru;
mod phone;
#[cfg(test)]
mod properties;
mod spain;
#[cfg(test)]
mod testing;
mod text;

use std::collections::BTreeMap;

use text::Text;

/// What a detector found.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Kind {
    Email,
    Phone,
    PaymentCard,
    Iban,
    NitCo,
    CedulaCo,
    RfcMx,
    CurpMx,
    CuitAr,
    CpfBr,
    CnpjBr,
    DniEs,
    NieEs,
    CifEs,
    RutCl,
    RucPe,
    DniPe,
    CedulaEc,
    RucEc,
}

/// One detector: the one place that says what a kind is called, what replaces its findings,
/// how it ranks against the others and where its search lives.
struct Detector {
    kind: Kind,
    /// The name used in config files and scripts.
    name: &'static str,
    /// What `redact` writes in place of a finding.
    placeholder: &'static str,
    /// Which finding survives when two overlap: the higher one.
    precedence: u8,
    find: fn(&Text, &mut Vec<Finding>),
}

/// Every detector, in the order of `Kind`'s variants. The ranks settle overlaps: structured
/// identifiers with letters (e-mail, IBAN, CURP, RFC) first; then numbers by the strength of
/// their check (CNPJ's two digits, a card's network and Luhn, Ecuador's and Peru's RUC with a
/// type prefix, the CUIT, the CPF, the NIT, the Ecuadorian cédula, the Spanish DNI/NIE/CIF,
/// the RUT); then numbers taken only because a keyword announced them (Peru's DNI, the
/// Colombian cédula); the phone, which matches almost any long run of digits, last.
#[rustfmt::skip]
const DETECTORS: [Detector; 19] = [
    //  kind                name            placeholder  rank search
    row(Kind::Email,        "email",        "[EMAIL]",   19, email::find_emails),
    row(Kind::Phone,        "phone",        "[PHONE]",   1,  phone::find_phones),
    row(Kind::PaymentCard,  "payment_card", "[CARD]",    14, money::find_cards),
    row(Kind::Iban,         "iban",         "[IBAN]",    18, money::find_ibans),
    row(Kind::NitCo,        "nit_co",       "[NIT]",     9,  colombia::find_nits),
    row(Kind::CedulaCo,     "cedula_co",    "[CEDULA]",  2,  colombia::find_cedulas),
    row(Kind::RfcMx,        "rfc_mx",       "[RFC]",     16, mexico::find_rfcs),
    row(Kind::CurpMx,       "curp_mx",      "[CURP]",    17, mexico::find_curps),
    row(Kind::CuitAr,       "cuit_ar",      "[CUIT]",    11, argentina::find_cuits),
    row(Kind::CpfBr,        "cpf_br",       "[CPF]",     10, brazil::find_cpfs),
    row(Kind::CnpjBr,       "cnpj_br",      "[CNPJ]",    15, brazil::find_cnpjs),
    row(Kind::DniEs,        "dni_es",       "[DNI]",     7,  spain::find_dnis),
    row(Kind::NieEs,        "nie_es",       "[NIE]",     6,  spain::find_nies),
    row(Kind::CifEs,        "cif_es",       "[CIF]",     5,  spain::find_cifs),
    row(Kind::RutCl,        "rut_cl",       "[RUT]",     4,  chile::find_ruts),
    row(Kind::RucPe,        "ruc_pe",       "[RUC]",     12, peru::find_rucs),
    row(Kind::DniPe,        "dni_pe",       "[DNI]",     3,  peru::find_dnis),
    row(Kind::CedulaEc,     "cedula_ec",    "[CEDULA]",  8,  ecuador::find_cedulas),
    row(Kind::RucEc,        "ruc_ec",       "[RUC]",     13, ecuador::find_rucs),
];

const fn row(
    kind: Kind,
    name: &'static str,
    placeholder: &'static str,
    precedence: u8,
    find: fn(&Text, &mut Vec<Finding>),
) -> Detector {
    Detector {
        kind,
        name,
        placeholder,
        precedence,
        find,
    }
}

// `Kind::detector` indexes the table by variant: a row out of order fails the build.
const _: () = {
    let mut index = 0;
    while index < DETECTORS.len() {
        assert!(DETECTORS[index].kind as usize == index);
        index += 1;
    }
};

impl Kind {
    pub const ALL: [Kind; DETECTORS.len()] = {
        let mut all = [Kind::Email; DETECTORS.len()];
        let mut index = 0;
        while index < all.len() {
            all[index] = DETECTORS[index].kind;
            index += 1;
        }
        all
    };

    fn detector(self) -> &'static Detector {
        &DETECTORS[self as usize]
    }

    /// The name used in config files and scripts.
    pub fn name(self) -> &'static str {
        self.detector().name
    }

    /// What `redact` writes in place of a finding of this kind.
    pub fn placeholder(self) -> &'static str {
        self.detector().placeholder
    }

    pub fn from_name(s: &str) -> Option<Kind> {
        Kind::ALL.into_iter().find(|kind| kind.name() == s)
    }

    fn precedence(self) -> u8 {
        self.detector().precedence
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    pub kind: Kind,
    /// Byte offset of the first byte, on a char boundary.
    pub start: usize,
    /// Byte offset one past the last byte, on a char boundary.
    pub end: usize,
}

/// Every finding in `text`, sorted by start, non-overlapping (when two overlap keep the longer /
/// more specific one: e.g. a CNPJ beats a phone number, a card beats a phone).
pub fn scan(text: &str, kinds: &[Kind]) -> Vec<Finding> {
    let text = Text::new(text);
    let mut found = Vec::new();
    for detector in &DETECTORS {
        if kinds.contains(&detector.kind) {
            (detector.find)(&text, &mut found);
        }
    }
    keep_non_overlapping(found)
}

/// `text` with each finding replaced by its kind's placeholder. Findings that overlap an
/// earlier one, or do not fall on char boundaries of `text`, are ignored.
pub fn redact(text: &str, findings: &[Finding]) -> String {
    let mut sorted: Vec<&Finding> = findings.iter().collect();
    sorted.sort_by_key(|finding| (finding.start, finding.end));
    let mut out = String::with_capacity(text.len());
    let mut copied_up_to = 0;
    for finding in sorted {
        let fits = finding.start >= copied_up_to
            && finding.start <= finding.end
            && text.get(finding.start..finding.end).is_some();
        if !fits {
            continue;
        }
        out.push_str(&text[copied_up_to..finding.start]);
        out.push_str(finding.kind.placeholder());
        copied_up_to = finding.end;
    }
    out.push_str(&text[copied_up_to..]);
    out
}

/// Keeps, of every group of overlapping candidates, the one with the highest precedence (then
/// the longest, then the first), and returns the survivors sorted by start.
fn keep_non_overlapping(mut candidates: Vec<Finding>) -> Vec<Finding> {
    candidates.sort_by(|a, b| {
        (b.kind.precedence(), b.end - b.start, a.start).cmp(&(
            a.kind.precedence(),
            a.end - a.start,
            b.start,
        ))
    });
    // Accepted findings keyed by start; they never overlap, so only the last one starting
    // before a candidate's end can overlap it.
    let mut accepted: BTreeMap<usize, Finding> = BTreeMap::new();
    for candidate in candidates {
        let overlaps = accepted
            .range(..candidate.end)
            .next_back()
            .is_some_and(|(_, previous)| previous.end > candidate.start);
        if !overlaps && candidate.start < candidate.end {
            accepted.insert(candidate.start, candidate);
        }
    }
    accepted.into_values().collect()
}

#[cfg(test)]
mod tests {
    use super::argentina::cuit_is_valid;
    use super::brazil::cpf_is_valid;
    use super::testing::*;
    use super::*;

    // --- Kind ---------------------------------------------------------------------------

    #[test]
    fn kind_names_round_trip() {
        for kind in Kind::ALL {
            assert_eq!(Kind::from_name(kind.name()), Some(kind));
            assert!(kind.placeholder().starts_with('[') && kind.placeholder().ends_with(']'));
        }
        assert_eq!(Kind::from_name("payment_card"), Some(Kind::PaymentCard));
        assert_eq!(Kind::PaymentCard.placeholder(), "[CARD]");
        assert_eq!(Kind::from_name("passport"), None);
    }

    #[test]
    fn each_kind_has_a_rank_of_its_own() {
        let mut ranks: Vec<u8> = Kind::ALL.iter().map(|kind| kind.precedence()).collect();
        ranks.sort_unstable();
        ranks.dedup();
        assert_eq!(ranks.len(), Kind::ALL.len());
    }

    #[test]
    fn plain_eleven_digits_valid_as_both_cuit_and_cpf_report_cuit() {
        let both = digits("20000013510");
        assert!(cuit_is_valid(&both) && cpf_is_valid(&both));
        assert_eq!(found("id 20000013510"), vec![(Kind::CuitAr, "20000013510")]);
        assert_eq!(
            found_only("id 20000013510", Kind::CpfBr),
            vec!["20000013510"]
        );
    }

    // --- Overlaps -----------------------------------------------------------------------

    #[test]
    fn specific_identifiers_beat_phones() {
        // A 13-digit Visa and a 10-digit cédula also read as phone numbers.
        assert_eq!(
            found("4222222222222"),
            vec![(Kind::PaymentCard, "4222222222222")]
        );
        assert_eq!(found("CC 1020345678"), vec![(Kind::CedulaCo, "1020345678")]);
        assert_eq!(
            found("CUIL 20123456786"),
            vec![(Kind::CuitAr, "20123456786")]
        );
        let cnpj = Finding {
            kind: Kind::CnpjBr,
            start: 0,
            end: 18,
        };
        let phone = Finding {
            kind: Kind::Phone,
            start: 3,
            end: 20,
        };
        assert_eq!(keep_non_overlapping(vec![phone, cnpj.clone()]), vec![cnpj]);
    }

    #[test]
    fn identifiers_of_different_countries_that_read_alike() {
        // Peru's RUC and Argentina's CUIT share the prefix 20 and the weights: the keyword
        // decides, and without one it stays a CUIT.
        assert!(cuit_is_valid(&digits("20123456786")));
        assert_eq!(
            found("CUIL 20123456786"),
            vec![(Kind::CuitAr, "20123456786")]
        );
        assert_eq!(found("RUC 20123456786"), vec![(Kind::RucPe, "20123456786")]);
        // Valid as a RUC (prefix 10) and as a CPF: the RUC ranks higher; laid out as a CPF, a
        // CPF.
        assert!(cpf_is_valid(&digits("10088995771")));
        assert_eq!(found("id 10088995771"), vec![(Kind::RucPe, "10088995771")]);
        assert_eq!(
            found("CPF 100.889.957-71"),
            vec![(Kind::CpfBr, "100.889.957-71")]
        );
        // A valid Ecuadorian cédula after a Colombian keyword: the check digit wins.
        assert_eq!(
            found("C.C. 1710034065"),
            vec![(Kind::CedulaEc, "1710034065")]
        );
        // A Chilean RUT and a Colombian NIT do not share a layout.
        assert_eq!(
            found("RUT 12.345.678-5, NIT 800.197.268-4"),
            vec![
                (Kind::RutCl, "12.345.678-5"),
                (Kind::NitCo, "800.197.268-4")
            ]
        );
    }

    #[test]
    fn findings_are_sorted_and_cover_char_boundaries() {
        let text =
            "Señor Núñez, CPF 529.982.247-25, correo ñ.nunez@correo.com.br, tel +55 11 91234-5678";
        let findings = scan(text, &Kind::ALL);
        let kinds: Vec<Kind> = findings.iter().map(|f| f.kind).collect();
        assert_eq!(kinds, vec![Kind::CpfBr, Kind::Email, Kind::Phone]);
        assert!(findings.windows(2).all(|pair| pair[0].end <= pair[1].start));
        for f in &findings {
            assert!(text.is_char_boundary(f.start) && text.is_char_boundary(f.end));
        }
        assert_eq!(
            &text[findings[1].start..findings[1].end],
            "ñ.nunez@correo.com.br"
        );
    }

    #[test]
    fn scan_only_looks_for_the_kinds_asked() {
        let text = "CPF 529.982.247-25 y ana@empresa.co";
        assert_eq!(found_only(text, Kind::Email), vec!["ana@empresa.co"]);
        assert!(scan(text, &[]).is_empty());
    }

    #[test]
    fn spanish_contract_paragraph_has_no_findings() {
        let contract =
            "CLÁUSULA TERCERA. VALOR Y FORMA DE PAGO. El valor total del presente contrato \
            asciende a la suma de $8.500.000 (ocho millones quinientos mil pesos m/cte), que se \
            pagará en dos cuotas: la primera por $4.250.000 el 2026-01-20 y la segunda por \
            $ 4.250.000 el 2026-03-15, previa presentación de la factura y del informe de \
            actividades. El plazo de ejecución será de 12 meses contados a partir del acta de \
            inicio (20/01/2026). Las partes acuerdan una cláusula penal del 10% del valor del \
            contrato, es decir $850.000, conforme al numeral 3.2 y al artículo 1.592 del Código \
            Civil. Con copia (CC) a la interventoría. Valor anual estimado: $102.000.000,50.";
        assert_eq!(found(contract), vec![]);
    }

    #[test]
    fn look_alikes_pass_untouched() {
        let corpus = [
            // Order, invoice and ticket numbers.
            "Pedido 612345678 enviado; pedido #20240115-0042; orden 00012345; lote 4.500.123",
            "Factura FE-2026-000123, factura electrónica SETP990000123, nota crédito NC-000045",
            "Ticket INC0012345 y caso 00012345; radicado 2026-01-20-000123",
            "Order #A1B2C3D4, PO 45-00012, SKU ABC-12345-XL, pedido nº 987654",
            // Dates and times.
            "Fecha: 2026-01-20, 20/01/2026, 20.01.2026, 20-01-2026 y 2026/01/20",
            "Hora: 10:30, 10:30:45, 22h15; from 9:00 to 17:30 on 2026-01-20T10:30:00Z",
            // Amounts.
            "Valor $ 8.500.000, total 1.234.567,89 €, USD 1,234,567.89 y 12 345 678,90 EUR",
            "Importe: 612 345 678 € (seiscientos doce millones)",
            "Pago de S/ 1.250.000,00 y MXN $ 45,300.00; cuota 3 de 12",
            // Tracking codes, versions and addresses.
            "Guía 1Z999AA10123456784, envío CP123456789ES, tracking 9400111899223856228546",
            "Servidor 192.168.100.200, puerta 10.0.0.1:8080, IPv6 2001:db8::8a2e:370:7334",
            "Versión 1.24.3, build 20260120.1, commit 3f2a9c1e",
            // Prose in Spanish and English.
            "El contratista entregará el informe el 15 de marzo; la reunión es a las 10 en punto \
             en el punto de encuentro, y cada arroba de café cuesta más que el año pasado.",
            "Look at the dot product at the end of chapter 3; call it a day at 5 o'clock.",
            "Art. 1.592 del Código Civil, numeral 3.2, inciso 2; Ley 1581 de 2012.",
            "La cédula de ciudadanía es obligatoria; el DNI y el RUT también; su RUC es público.",
        ];
        for text in corpus {
            assert_eq!(found(text), vec![], "{text}");
        }
    }

    #[test]
    fn the_unknown_detector_hint_names_every_detector() {
        let hint = crate::guard::GuardError::UnknownDetector("x".into()).to_string();
        for kind in Kind::ALL {
            assert!(
                hint.contains(kind.name()),
                "{} missing from: {hint}",
                kind.name()
            );
        }
    }

    // --- redact -------------------------------------------------------------------------

    #[test]
    fn redact_replaces_each_finding_with_its_placeholder() {
        let text =
            "Contacto: ana.perez@empresa.com.co, tel. +57 301 234 5678, C.C. 1.020.345.678; \
                    NIT 800.197.268-4; tarjeta 4111 1111 1111 1111.";
        let redacted = redact(text, &scan(text, &Kind::ALL));
        assert_eq!(
            redacted,
            "Contacto: [EMAIL], tel. [PHONE], C.C. [CEDULA]; NIT [NIT]; tarjeta [CARD]."
        );
    }

    #[test]
    fn redact_replaces_what_was_written_not_its_normalised_form() {
        let text =
            "Tarjeta ４１１１ １１１１\u{a0}１１１１ \u{200b}１１１１, correo ana＠dataandes.co.";
        assert_eq!(
            found(text),
            vec![
                (
                    Kind::PaymentCard,
                    "４１１１ １１１１\u{a0}１１１１ \u{200b}１１１１"
                ),
                (Kind::Email, "ana＠dataandes.co"),
            ]
        );
        assert_eq!(
            redact(text, &scan(text, &Kind::ALL)),
            "Tarjeta [CARD], correo [EMAIL]."
        );
    }

    #[test]
    fn redact_ignores_overlapping_or_broken_findings() {
        let text = "ñandú 123";
        let findings = [
            Finding {
                kind: Kind::Phone,
                start: 8,
                end: 11,
            },
            Finding {
                kind: Kind::Email,
                start: 9,
                end: 10,
            },
            Finding {
                kind: Kind::Email,
                start: 1,
                end: 2,
            }, // inside 'ñ'
        ];
        assert_eq!(redact(text, &findings), "ñandú [PHONE]");
        assert_eq!(redact(text, &[]), text);
    }
}
