//! The egress guard: every `cloud()` payload is checked before anything leaves the machine.
//!
//! Two kinds of rule: verbatim overlap with the document being processed (a long run of its
//! words means source text is leaking), and personal-data detectors (e-mail, phone, cards,
//! IBAN, and the LATAM identifiers). Each rule blocks, redacts or allows, by policy. A block
//! names the rule and the field, never the offending text.

pub mod detectors;

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use detectors::Kind;

/// What a rule does when it fires.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    Block,
    Redact,
    Allow,
}

/// `[guard]` in `hybrid.toml`.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct GuardConfig {
    /// A payload sharing a run of more than this many consecutive words with the document
    /// is source text leaking out.
    pub max_shared_words: usize,
    /// `block` (default) or `allow` for the verbatim-overlap rule.
    pub overlap: Action,
    /// Refuse free-text prompts to the cloud: only structured `input` (and the script's own
    /// `system` text) may leave.
    pub structured_only: bool,
    /// Per-detector actions, by name: `email`, `phone`, `payment_card`, `iban`, `nit_co`,
    /// `cedula_co`, `rfc_mx`, `curp_mx`, `cuit_ar`, `cpf_br`, `cnpj_br`, `dni_es`, `nie_es`,
    /// `cif_es`, `rut_cl`, `ruc_pe`, `dni_pe`, `cedula_ec`, `ruc_ec`.
    pub detectors: BTreeMap<String, Action>,
    /// `[guard.scripts.NAME]`: a looser or stricter policy for one pipeline, by script file
    /// name without `.rhai` — kept in the config, where the data owner sees it, not in the
    /// script.
    pub scripts: BTreeMap<String, GuardOverride>,
}

/// The keys of `[guard]` a pipeline may override.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct GuardOverride {
    pub max_shared_words: Option<usize>,
    pub overlap: Option<Action>,
    pub structured_only: Option<bool>,
    pub detectors: BTreeMap<String, Action>,
}

impl Default for GuardConfig {
    fn default() -> Self {
        GuardConfig {
            max_shared_words: 12,
            overlap: Action::Block,
            structured_only: false,
            detectors: BTreeMap::new(),
            scripts: BTreeMap::new(),
        }
    }
}

impl GuardConfig {
    /// The policy for one pipeline: the global one with its `[guard.scripts.NAME]` applied.
    pub fn for_script(&self, name: &str) -> GuardConfig {
        let mut merged = self.clone();
        merged.scripts.clear();
        if let Some(o) = self.scripts.get(name) {
            merged.max_shared_words = o.max_shared_words.unwrap_or(merged.max_shared_words);
            merged.overlap = o.overlap.unwrap_or(merged.overlap);
            merged.structured_only = o.structured_only.unwrap_or(merged.structured_only);
            merged.detectors.extend(o.detectors.clone());
        }
        merged
    }
}

/// The action for a detector when the policy does not name it: money identifiers block,
/// everything else is redacted.
fn default_action(kind: Kind) -> Action {
    match kind {
        Kind::PaymentCard | Kind::Iban => Action::Block,
        _ => Action::Redact,
    }
}

#[derive(Debug, thiserror::Error)]
pub enum GuardError {
    #[error("unknown detector `{0}` under [guard.detectors]\nhint: the detectors are email, phone, payment_card, iban, nit_co, cedula_co, rfc_mx, curp_mx, cuit_ar, cpf_br, cnpj_br, dni_es, nie_es, cif_es, rut_cl, ruc_pe, dni_pe, cedula_ec, ruc_ec")]
    UnknownDetector(String),
    #[error("`overlap = \"redact\"` under [guard] is not supported: copied source text cannot be redacted away\nhint: use `block` (the default) or `allow`")]
    OverlapRedact,
}

/// The parts of a model call, before they become messages.
#[derive(Debug, Clone, Default)]
pub struct Parts {
    pub system: Option<String>,
    pub prompt: Option<String>,
    pub input: Option<Value>,
}

/// A redaction made on the way out (reported in the call record and the audit log).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Redaction {
    /// Where: `system`, `prompt`, or `input/...` (a JSON pointer into the input).
    pub field: String,
    /// Which detector.
    pub kind: &'static str,
    pub count: usize,
}

/// A payload the guard stopped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Blocked {
    /// `verbatim_overlap`, `structured_only`, or a detector name.
    pub rule: String,
    pub field: String,
    /// Why, without the offending text.
    pub detail: String,
}

impl std::fmt::Display for Blocked {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "blocked by the egress guard: rule `{}` on field `{}`: {}",
            self.rule, self.field, self.detail
        )
    }
}

/// A compiled policy.
#[derive(Debug, Clone)]
pub struct Guard {
    max_shared_words: usize,
    overlap: Action,
    structured_only: bool,
    /// Detectors that do something, with what they do.
    active: Vec<(Kind, Action)>,
}

impl Guard {
    pub fn new(config: &GuardConfig) -> Result<Guard, GuardError> {
        if config.overlap == Action::Redact {
            return Err(GuardError::OverlapRedact);
        }
        for name in config.detectors.keys() {
            if Kind::from_name(name).is_none() {
                return Err(GuardError::UnknownDetector(name.clone()));
            }
        }
        let active = Kind::ALL
            .iter()
            .map(|&k| {
                let action = config
                    .detectors
                    .get(k.name())
                    .copied()
                    .unwrap_or(default_action(k));
                (k, action)
            })
            .filter(|(_, a)| *a != Action::Allow)
            .collect();
        Ok(Guard {
            max_shared_words: config.max_shared_words,
            overlap: config.overlap,
            structured_only: config.structured_only,
            active,
        })
    }

    /// Checks (and redacts, in place) a payload bound for the cloud. `source` is the text of
    /// the document being processed.
    pub fn check(&self, parts: &mut Parts, source: &str) -> Result<Vec<Redaction>, Blocked> {
        if self.structured_only && parts.prompt.is_some() {
            return Err(Blocked {
                rule: "structured_only".into(),
                field: "prompt".into(),
                detail: "the policy lets only structured `input` leave; pass the data as `input`, not as prompt text".into(),
            });
        }
        let mut redactions = Vec::new();
        if let Some(system) = &mut parts.system {
            self.check_text("system", system, source, &mut redactions)?;
        }
        if let Some(prompt) = &mut parts.prompt {
            self.check_text("prompt", prompt, source, &mut redactions)?;
        }
        if let Some(input) = &mut parts.input {
            self.check_value("input".into(), input, source, &mut redactions)?;
            // A passage split over many short fields passes each field's check: check them
            // joined too.
            if self.overlap == Action::Block && !source.is_empty() {
                let mut joined = String::new();
                collect_strings(input, &mut joined);
                let (run, _) = detectors::longest_shared_run(&joined, source);
                if run > self.max_shared_words {
                    return Err(Blocked {
                        rule: "verbatim_overlap".into(),
                        field: "input".into(),
                        detail: format!(
                            "its fields together repeat {run} consecutive words of the document (the limit is {}); send extracted fields, not source text",
                            self.max_shared_words
                        ),
                    });
                }
            }
        }
        Ok(redactions)
    }

    fn check_value(
        &self,
        field: String,
        value: &mut Value,
        source: &str,
        out: &mut Vec<Redaction>,
    ) -> Result<(), Blocked> {
        match value {
            Value::String(s) => self.check_text(&field, s, source, out),
            Value::Number(n) => {
                // A card or an id stored as a number is still a card or an id.
                let mut text = n.to_string();
                self.check_text(&field, &mut text, source, out)?;
                if text != n.to_string() {
                    *value = Value::String(text);
                }
                Ok(())
            }
            Value::Array(items) => {
                for (i, item) in items.iter_mut().enumerate() {
                    self.check_value(format!("{field}/{i}"), item, source, out)?;
                }
                Ok(())
            }
            Value::Object(map) => {
                // Keys can carry personal data too (`{"ana@x.co": ...}`): check and redact them,
                // and name fields by the redacted key.
                let entries = std::mem::take(map);
                for (k, mut v) in entries {
                    let mut key = k;
                    self.check_text(&format!("{field} (a key)"), &mut key, source, out)?;
                    self.check_value(
                        format!("{field}/{}", key.replace('~', "~0").replace('/', "~1")),
                        &mut v,
                        source,
                        out,
                    )?;
                    map.insert(key, v);
                }
                Ok(())
            }
            Value::Null | Value::Bool(_) => Ok(()),
        }
    }

    fn check_text(
        &self,
        field: &str,
        text: &mut String,
        source: &str,
        out: &mut Vec<Redaction>,
    ) -> Result<(), Blocked> {
        if self.overlap == Action::Block && !source.is_empty() {
            let (run, _) = detectors::longest_shared_run(text, source);
            if run > self.max_shared_words {
                return Err(Blocked {
                    rule: "verbatim_overlap".into(),
                    field: field.into(),
                    detail: format!(
                        "{run} consecutive words are copied from the document (the limit is {}); send extracted fields, not source text",
                        self.max_shared_words
                    ),
                });
            }
        }
        let kinds: Vec<Kind> = self.active.iter().map(|(k, _)| *k).collect();
        let findings = detectors::scan(text, &kinds);
        if findings.is_empty() {
            return Ok(());
        }
        if let Some(f) = findings
            .iter()
            .find(|f| self.action(f.kind) == Action::Block)
        {
            return Err(Blocked {
                rule: f.kind.name().into(),
                field: field.into(),
                detail: format!(
                    "it contains a {} and the policy blocks those",
                    f.kind.name().replace('_', " ")
                ),
            });
        }
        let mut counts: BTreeMap<Kind, usize> = BTreeMap::new();
        for f in &findings {
            *counts.entry(f.kind).or_default() += 1;
        }
        *text = detectors::redact(text, &findings);
        out.extend(counts.into_iter().map(|(kind, count)| Redaction {
            field: field.into(),
            kind: kind.name(),
            count,
        }));
        Ok(())
    }

    fn action(&self, kind: Kind) -> Action {
        self.active
            .iter()
            .find(|(k, _)| *k == kind)
            .map_or(Action::Allow, |(_, a)| *a)
    }
}

/// Every string (and number) in a JSON value, space-separated.
fn collect_strings(value: &Value, out: &mut String) {
    match value {
        Value::String(s) => {
            out.push_str(s);
            out.push(' ');
        }
        Value::Number(n) => {
            out.push_str(&n.to_string());
            out.push(' ');
        }
        Value::Array(items) => items.iter().for_each(|v| collect_strings(v, out)),
        Value::Object(map) => map.values().for_each(|v| collect_strings(v, out)),
        Value::Null | Value::Bool(_) => {}
    }
}

/// What a document's cloud payloads are compared against: its text and every string in its
/// metadata (a JSONL document may carry its content in any field).
pub fn source_of(doc: &crate::documents::Document) -> String {
    let mut source = doc.text.clone();
    source.push(' ');
    collect_strings(&Value::Object(doc.meta.clone()), &mut source);
    source
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn guard() -> Guard {
        Guard::new(&GuardConfig::default()).unwrap()
    }

    #[test]
    fn copying_the_document_is_blocked_naming_rule_and_field() {
        let source = "El contratista prestará servicios de soporte técnico de primer y segundo nivel para los sistemas de facturación electrónica";
        let mut parts = Parts {
            prompt: Some(format!("Summarise: {source}")),
            ..Parts::default()
        };
        let blocked = guard().check(&mut parts, source).unwrap_err();
        assert_eq!(blocked.rule, "verbatim_overlap");
        assert_eq!(blocked.field, "prompt");
        assert!(!blocked.to_string().contains("facturación"));
    }

    #[test]
    fn extracted_json_passes_and_emails_are_redacted() {
        let source =
            "Contrato entre DataAndes S.A.S. y Distribuidora La Sabana. Contacto: ana@dataandes.co";
        let mut parts = Parts {
            input: Some(
                json!({"parties": [{"name": "DataAndes S.A.S."}], "contact": "ana@dataandes.co"}),
            ),
            ..Parts::default()
        };
        let redactions = guard().check(&mut parts, source).unwrap();
        assert_eq!(
            redactions,
            vec![Redaction {
                field: "input/contact".into(),
                kind: "email",
                count: 1
            }]
        );
        assert_eq!(parts.input.unwrap()["contact"], "[EMAIL]");
    }

    #[test]
    fn cards_block_by_default_and_policy_can_allow_them() {
        let mut parts = Parts {
            input: Some(json!({"card": "4111 1111 1111 1111"})),
            ..Parts::default()
        };
        let blocked = guard().check(&mut parts.clone(), "").unwrap_err();
        assert_eq!(
            (blocked.rule.as_str(), blocked.field.as_str()),
            ("payment_card", "input/card")
        );
        let mut config = GuardConfig::default();
        config
            .detectors
            .insert("payment_card".into(), Action::Allow);
        assert!(Guard::new(&config)
            .unwrap()
            .check(&mut parts, "")
            .unwrap()
            .is_empty());
    }

    #[test]
    fn a_passage_split_over_short_fields_is_still_caught() {
        let source = "uno dos tres cuatro cinco seis siete ocho nueve diez once doce trece catorce quince dieciseis";
        let mut parts = Parts {
            input: Some(
                json!({"a": "uno dos tres cuatro cinco seis", "b": "siete ocho nueve diez once doce", "c": "trece catorce quince"}),
            ),
            ..Parts::default()
        };
        let blocked = guard().check(&mut parts, source).unwrap_err();
        assert_eq!(
            (blocked.rule.as_str(), blocked.field.as_str()),
            ("verbatim_overlap", "input")
        );
    }

    #[test]
    fn keys_are_checked_and_redacted() {
        let mut parts = Parts {
            input: Some(json!({"ana@dataandes.co": {"role": "buyer"}})),
            ..Parts::default()
        };
        let redactions = guard().check(&mut parts, "").unwrap();
        assert_eq!(redactions[0].kind, "email");
        assert_eq!(parts.input.unwrap(), json!({"[EMAIL]": {"role": "buyer"}}));
    }

    #[test]
    fn overlap_cannot_be_redact() {
        let config = GuardConfig {
            overlap: Action::Redact,
            ..GuardConfig::default()
        };
        assert!(Guard::new(&config)
            .unwrap_err()
            .to_string()
            .contains("hint:"));
    }

    #[test]
    fn structured_only_refuses_prompts() {
        let config = GuardConfig {
            structured_only: true,
            ..GuardConfig::default()
        };
        let mut parts = Parts {
            prompt: Some("hello".into()),
            ..Parts::default()
        };
        assert_eq!(
            Guard::new(&config)
                .unwrap()
                .check(&mut parts, "")
                .unwrap_err()
                .rule,
            "structured_only"
        );
    }

    #[test]
    fn unknown_detector_names_are_config_errors() {
        let mut config = GuardConfig::default();
        config.detectors.insert("emial".into(), Action::Block);
        assert!(Guard::new(&config)
            .unwrap_err()
            .to_string()
            .contains("emial"));
    }
}
