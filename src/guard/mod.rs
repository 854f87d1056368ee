//! The egress guard: every `cloud()` payload is checked before anything leaves the machine.
//!
//! Two kinds of rule: verbatim overlap with the document being processed (a long run of its
//! words means source text is leaking), and personal-data detectors (e-mail, phone, cards,
//! IBAN, and the LATAM identifiers). Each rule blocks, redacts or allows, by policy. A block
//! names the rule and the field, never the offending text.

pub mod detectors;
pub mod overlap;

use std::collections::BTreeMap;
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::models::openai::{ResponseFormat, WireBody};
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
    /// Page images to the cloud: `block` (default: an image cannot be checked for copied
    /// text or personal data) or `allow`. Allowed images are audited by their hashes only.
    pub images: Action,
    /// `[guard.scripts."scripts/NAME.rhai"]`: a looser or stricter policy for one pipeline,
    /// keyed by the script's path relative to the settings file — kept in the config, where
    /// the data owner sees it, not in the script, and never inherited by another script that
    /// happens to share the file name.
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
    pub images: Option<Action>,
}

impl Default for GuardConfig {
    fn default() -> Self {
        GuardConfig {
            max_shared_words: 12,
            overlap: Action::Block,
            structured_only: false,
            detectors: BTreeMap::new(),
            images: Action::Block,
            scripts: BTreeMap::new(),
        }
    }
}

impl GuardConfig {
    /// The policy for the pipeline `script`: the global one with the `[guard.scripts."PATH"]`
    /// whose path (relative to the settings file `settings`) is that very script, if any —
    /// and that key, so the start-up log can say which policy applies.
    pub fn for_script(
        &self,
        script: &std::path::Path,
        settings: Option<&std::path::Path>,
    ) -> Result<(GuardConfig, Option<String>), GuardError> {
        let mut merged = self.clone();
        merged.scripts.clear();
        let base = crate::pipeline::settings_dir(settings);
        let mut applied = None;
        for (key, o) in &self.scripts {
            if !key.ends_with(".rhai") {
                return Err(GuardError::BareScriptKey(key.clone()));
            }
            if !crate::pipeline::names_script(&base, key, script) {
                continue;
            }
            merged.max_shared_words = o.max_shared_words.unwrap_or(merged.max_shared_words);
            merged.overlap = o.overlap.unwrap_or(merged.overlap);
            merged.structured_only = o.structured_only.unwrap_or(merged.structured_only);
            merged.detectors.extend(o.detectors.clone());
            merged.images = o.images.unwrap_or(merged.images);
            applied = Some(key.clone());
        }
        Ok((merged, applied))
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
    #[error("[guard.scripts.{0}] names a script by its bare name, which any script of that name anywhere would inherit\nhint: key it by the script's path relative to the settings file, e.g. [guard.scripts.\"scripts/{0}.rhai\"]")]
    BareScriptKey(String),
    #[error("`overlap = \"redact\"` under [guard] is not supported: copied source text cannot be redacted away\nhint: use `block` (the default) or `allow`")]
    OverlapRedact,
    #[error("`images = \"redact\"` under [guard] is not supported: an image cannot be redacted\nhint: use `block` (the default) or `allow`")]
    ImagesRedact,
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
    images: Action,
    /// Strings already scanned and found clean (system prompts and schemas come back on every
    /// call), by a keyed hash of their text.
    clean: std::sync::Arc<CleanTexts>,
    /// Schemas' `response_format`s already walked.
    formats: std::sync::Arc<FormatScans>,
}

/// A bounded set of texts with no findings. The hash is keyed per process, so nobody can
/// build a string that collides with a cached clean one.
#[derive(Debug, Default)]
struct CleanTexts {
    keys: std::hash::RandomState,
    seen: std::sync::Mutex<std::collections::HashSet<u64>>,
}

impl CleanTexts {
    /// Texts shorter than this are left out (a scan of them costs about a look-up).
    const MIN_LEN: usize = 4;
    const MAX_ENTRIES: usize = 4096;

    fn key(&self, text: &str) -> Option<u64> {
        use std::hash::BuildHasher;
        (text.len() >= Self::MIN_LEN).then(|| self.keys.hash_one(text))
    }

    fn contains(&self, key: u64) -> bool {
        self.seen
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .contains(&key)
    }

    fn insert(&self, key: u64) {
        let mut seen = self.seen.lock().unwrap_or_else(|e| e.into_inner());
        if seen.len() >= Self::MAX_ENTRIES {
            seen.clear();
        }
        seen.insert(key);
    }
}

impl Guard {
    pub fn new(config: &GuardConfig) -> Result<Guard, GuardError> {
        if config.overlap == Action::Redact {
            return Err(GuardError::OverlapRedact);
        }
        if config.images == Action::Redact {
            return Err(GuardError::ImagesRedact);
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
            images: config.images,
            clean: Default::default(),
            formats: Default::default(),
        })
    }

    /// Whether the policy lets page images go to the cloud.
    pub fn allows_images(&self) -> bool {
        self.images == Action::Allow
    }

    /// Whether the overlap rule is on (then a document's [`overlap::Window`] is worth building).
    pub fn checks_overlap(&self) -> bool {
        self.overlap == Action::Block
    }

    /// The first pass, on the call's parts before they become a request: the policy on
    /// prompts, and personal data redacted (or blocked) field by field, so records and errors
    /// can name `input/parties/0/email` rather than a place in a message.
    pub fn check_parts(&self, parts: &mut Parts) -> Result<Vec<Redaction>, Blocked> {
        if self.structured_only && parts.prompt.is_some() {
            return Err(Blocked {
                rule: "structured_only".into(),
                field: "prompt".into(),
                detail: "the policy lets only structured `input` leave; pass the data as `input`, not as prompt text".into(),
            });
        }
        let mut redactions = Vec::new();
        if let Some(system) = &mut parts.system {
            self.check_text("system", system, &mut redactions)?;
        }
        if let Some(prompt) = &mut parts.prompt {
            self.check_text("prompt", prompt, &mut redactions)?;
        }
        if let Some(input) = &mut parts.input {
            self.check_value("input".into(), input, &mut redactions)?;
        }
        Ok(redactions)
    }

    /// The last pass, on the request body exactly as it will leave: every string in it —
    /// messages, the schema's names, descriptions and enum values, property names, anything —
    /// is scanned for personal data, base64 and hex runs are decoded and scanned too, and all
    /// of it, joined, is compared with the document (and what its earlier calls sent).
    ///
    /// `prompt_len` is the length of the prompt at the start of the user message (the rest is
    /// the input), so findings can be named `prompt` or `input`.
    pub fn check_body(
        &self,
        body: &mut Value,
        prompt_len: Option<usize>,
        window: Option<&mut overlap::Window>,
    ) -> Result<Vec<Redaction>, Blocked> {
        let mut scan = BodyScan::new(self, window.is_some() && self.checks_overlap());
        scan.body(body, prompt_len)?;
        self.verdict(scan, window)
    }

    /// [`Guard::check_body`] of a body whose schema part is kept apart: the walk over the
    /// schema's `response_format` is done once per schema and its words reused, unless it
    /// has something to redact (then the body is made whole and walked whole, each time).
    pub fn check_wire(
        &self,
        wire: &mut WireBody,
        prompt_len: Option<usize>,
        window: Option<&mut overlap::Window>,
    ) -> Result<Vec<Redaction>, Blocked> {
        let kept = match &wire.format {
            Some(format) => match self.format_scan(format) {
                Some(kept) => Some(kept),
                None => {
                    wire.head = wire.to_value();
                    wire.format = None;
                    None
                }
            },
            None => None,
        };
        let mut scan = BodyScan::new(self, window.is_some() && self.checks_overlap());
        scan.body(&mut wire.head, prompt_len)?;
        if let Some(kept) = kept.filter(|_| scan.words) {
            let start = scan.joined.len();
            scan.joined.extend_from_slice(&kept.joined);
            scan.fields
                .extend(kept.fields.iter().map(|(at, f)| (start + at, f.clone())));
            scan.extra.extend(kept.extra.iter().cloned());
        }
        self.verdict(scan, window)
    }

    /// The walk over a schema's `response_format`, made at its first use; `None` when it
    /// redacts or blocks something.
    fn format_scan(&self, format: &Arc<ResponseFormat>) -> Option<Arc<FormatScan>> {
        let mut kept = self.formats.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((_, scan)) = kept.iter().rev().find(|(f, _)| Arc::ptr_eq(f, format)) {
            return scan.clone();
        }
        let mut scan = BodyScan::new(self, true);
        let mut body = Value::Object(
            [("response_format".to_owned(), format.value.clone())]
                .into_iter()
                .collect(),
        );
        let walked = scan.body(&mut body, None);
        let made = (walked.is_ok() && scan.redactions.is_empty()).then(|| {
            Arc::new(FormatScan {
                joined: scan.joined,
                fields: scan.fields,
                extra: scan.extra,
            })
        });
        if kept.len() >= FORMATS_KEPT {
            kept.remove(0);
        }
        kept.push((format.clone(), made.clone()));
        made
    }

    /// The overlap rule over a walked body, then its redactions.
    fn verdict(
        &self,
        scan: BodyScan<'_>,
        window: Option<&mut overlap::Window>,
    ) -> Result<Vec<Redaction>, Blocked> {
        if let Some(window) = window.filter(|_| self.checks_overlap()) {
            let readings: Vec<&[overlap::WordId]> =
                scan.extra.iter().map(|(_, r)| r.as_slice()).collect();
            let (verdict, stretches) = window.check(&scan.joined, &readings);
            if verdict.longest > self.max_shared_words {
                let field = match (verdict.at, verdict.reading) {
                    (Some(at), _) => scan
                        .fields
                        .iter()
                        .rev()
                        .find(|(start, _)| *start <= at)
                        .map(|(_, f)| f.clone()),
                    (None, Some(i)) => Some(scan.extra[i].0.clone()),
                    (None, None) => None,
                }
                .unwrap_or_else(|| "input".to_owned());
                let detail = if verdict.across_calls {
                    format!(
                        "together with the rest of this request and what earlier calls for this document sent, it repeats {} consecutive words of the document (the limit is {}); send extracted fields, not source text",
                        verdict.longest, self.max_shared_words
                    )
                } else {
                    format!(
                        "{} consecutive words are copied from the document (the limit is {}); send extracted fields, not source text",
                        verdict.longest, self.max_shared_words
                    )
                };
                return Err(Blocked {
                    rule: "verbatim_overlap".into(),
                    field,
                    detail,
                });
            }
            window.commit(&scan.joined, stretches, self.max_shared_words);
        }
        Ok(scan.redactions)
    }

    fn check_value(
        &self,
        field: String,
        value: &mut Value,
        out: &mut Vec<Redaction>,
    ) -> Result<(), Blocked> {
        match value {
            Value::String(s) => self.check_text(&field, s, out),
            Value::Number(n) => {
                // A card or an id stored as a number is still a card or an id.
                let mut text = n.to_string();
                self.check_text(&field, &mut text, out)?;
                if text != n.to_string() {
                    *value = Value::String(text);
                }
                Ok(())
            }
            Value::Array(items) => {
                for (i, item) in items.iter_mut().enumerate() {
                    self.check_value(format!("{field}/{i}"), item, out)?;
                }
                Ok(())
            }
            Value::Object(map) => {
                // Keys can carry personal data too (`{"ana@x.co": ...}`): check and redact them,
                // and name fields by the redacted key.
                let entries = std::mem::take(map);
                for (k, mut v) in entries {
                    let mut key = k;
                    self.check_text(&format!("{field} (a key)"), &mut key, out)?;
                    self.check_value(format!("{field}/{}", pointer_token(&key)), &mut v, out)?;
                    map.insert(key, v);
                }
                Ok(())
            }
            Value::Null | Value::Bool(_) => Ok(()),
        }
    }

    /// Personal data in one string: blocked, or redacted in place.
    fn check_text(
        &self,
        field: &str,
        text: &mut String,
        out: &mut Vec<Redaction>,
    ) -> Result<(), Blocked> {
        let key = self.clean.key(text);
        if key.is_some_and(|k| self.clean.contains(k)) {
            return Ok(());
        }
        let kinds: Vec<Kind> = self.active.iter().map(|(k, _)| *k).collect();
        let findings = detectors::scan(text, &kinds);
        if findings.is_empty() {
            if let Some(k) = key {
                self.clean.insert(k);
            }
            return Ok(());
        }
        if let Some(f) = findings
            .iter()
            .find(|f| self.action(f.kind) == Action::Block)
        {
            return Err(blocked_by(f.kind, field));
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

fn blocked_by(kind: Kind, field: &str) -> Blocked {
    Blocked {
        rule: kind.name().into(),
        field: field.into(),
        detail: format!(
            "it contains a {} and the policy blocks those",
            kind.name().replace('_', " ")
        ),
    }
}

/// A key as a JSON pointer token.
fn pointer_token(key: &str) -> String {
    key.replace('~', "~0").replace('/', "~1")
}

/// What walking a schema's `response_format` gave, for [`Guard::check_wire`] to reuse.
#[derive(Debug)]
struct FormatScan {
    joined: Vec<overlap::WordId>,
    fields: Vec<(usize, String)>,
    extra: Vec<(String, Vec<overlap::WordId>)>,
}

/// Schemas' walks kept per guard (see [`Guard::format_scan`]).
const FORMATS_KEPT: usize = 64;

type FormatScans = std::sync::Mutex<Vec<(Arc<ResponseFormat>, Option<Arc<FormatScan>>)>>;

/// One walk over a request body: detectors on every string, and the words of all of them.
struct BodyScan<'g> {
    guard: &'g Guard,
    redactions: Vec<Redaction>,
    /// Every string's words, in body order.
    joined: Vec<overlap::WordId>,
    /// Where each field's words start in `joined`, and the field's name.
    fields: Vec<(usize, String)>,
    /// Other readings of the strings, with the field they come from: reversed, decoded from
    /// base64 or hex, and the input's values without its keys.
    extra: Vec<(String, Vec<overlap::WordId>)>,
    /// Collect words (only when the overlap rule runs).
    words: bool,
}

impl<'g> BodyScan<'g> {
    fn new(guard: &'g Guard, words: bool) -> Self {
        BodyScan {
            guard,
            redactions: Vec::new(),
            joined: Vec::new(),
            fields: Vec::new(),
            extra: Vec::new(),
            words,
        }
    }

    fn body(&mut self, body: &mut Value, prompt_len: Option<usize>) -> Result<(), Blocked> {
        let Value::Object(map) = body else {
            return self.value("body".into(), body);
        };
        for (key, value) in map.iter_mut() {
            match (key.as_str(), value) {
                ("messages", Value::Array(messages)) => {
                    for (i, message) in messages.iter_mut().enumerate() {
                        let role = message["role"].as_str().unwrap_or("").to_owned();
                        let Some(content) = message.get_mut("content") else {
                            continue;
                        };
                        match (role.as_str(), content) {
                            ("user", Value::String(text)) => self.user_message(text, prompt_len)?,
                            ("system" | "developer", Value::String(text)) => {
                                self.text("system".into(), text)?
                            }
                            (_, other) => self.value(format!("messages/{i}/content"), other)?,
                        }
                    }
                }
                (key, value) => self.value(pointer_token(key), value)?,
            }
        }
        Ok(())
    }

    /// The user message is the prompt, then the input as JSON.
    fn user_message(
        &mut self,
        text: &mut String,
        prompt_len: Option<usize>,
    ) -> Result<(), Blocked> {
        let split = prompt_len.filter(|&n| n < text.len() && text.is_char_boundary(n));
        match split {
            Some(n) => {
                let mut prompt = text[..n].to_owned();
                let mut input = text[n..].to_owned();
                self.text("prompt".into(), &mut prompt)?;
                self.input(&mut input)?;
                *text = prompt + input.as_str();
                Ok(())
            }
            None if prompt_len.is_some() => self.text("prompt".into(), text),
            None => self.input(text),
        }
    }

    /// The input part of the user message: as text, and — since key names between fields
    /// would break up a passage split over several fields — its values alone, joined.
    fn input(&mut self, text: &mut String) -> Result<(), Blocked> {
        self.text("input".into(), text)?;
        if self.words {
            if let Ok(value) = serde_json::from_str::<Value>(text.trim()) {
                let mut values = String::new();
                collect_strings(&value, &mut values);
                let mut ids = Vec::new();
                overlap::word_ids(&values, &mut ids);
                self.extra.push(("input".into(), ids));
            }
        }
        Ok(())
    }

    fn value(&mut self, field: String, value: &mut Value) -> Result<(), Blocked> {
        match value {
            Value::String(s) => self.text(field, s),
            Value::Array(items) => {
                for (i, item) in items.iter_mut().enumerate() {
                    self.value(format!("{field}/{i}"), item)?;
                }
                Ok(())
            }
            Value::Object(map) => {
                let entries = std::mem::take(map);
                for (key, mut v) in entries {
                    let mut key = key;
                    self.text(format!("{field} (a key)"), &mut key)?;
                    let walked = self.value(format!("{field}/{}", pointer_token(&key)), &mut v);
                    map.insert(key, v);
                    walked?;
                }
                Ok(())
            }
            Value::Number(_) | Value::Null | Value::Bool(_) => Ok(()),
        }
    }

    fn text(&mut self, field: String, text: &mut String) -> Result<(), Blocked> {
        // `response_format/json_schema/schema/properties/x` reads better as `schema/properties/x`.
        let field = match field.strip_prefix("response_format/json_schema/schema") {
            Some(rest) => format!("schema{rest}"),
            None => field,
        };
        self.guard.check_text(&field, text, &mut self.redactions)?;
        // What hides inside an encoding cannot be redacted: any personal data there blocks.
        for decoded in overlap::decoded_runs(text) {
            let kinds: Vec<Kind> = self.guard.active.iter().map(|(k, _)| *k).collect();
            if let Some(f) = detectors::scan(&decoded, &kinds).first() {
                return Err(blocked_by(f.kind, &format!("{field} (encoded)")));
            }
            if self.words {
                let mut ids = Vec::new();
                overlap::word_ids(&decoded, &mut ids);
                self.extra.push((format!("{field} (encoded)"), ids));
            }
        }
        if self.words {
            let start = self.joined.len();
            overlap::word_ids(text, &mut self.joined);
            let words = self.joined.len() - start;
            if words > 0 {
                self.fields.push((start, field.clone()));
            }
            // Reversed, character by character and word by word (only a string long enough
            // to hold a tracked run on its own).
            if words >= overlap::SHINGLE {
                let mut reversed = Vec::with_capacity(words);
                overlap::fold_chars(text.chars().rev(), &mut reversed);
                let backwards = self.joined[start..].iter().rev().copied().collect();
                let label = format!("{field} (reversed)");
                self.extra.push((label.clone(), reversed));
                self.extra.push((label, backwards));
            }
        }
        Ok(())
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

/// A document's overlap window: compared against its text, its name and every string in its
/// metadata (a JSONL document may carry its content in any field). The text is read where it
/// is, not copied.
pub fn window_of(doc: &crate::documents::Document) -> overlap::Window {
    let mut meta = String::new();
    for value in doc.meta.values() {
        collect_strings(value, &mut meta);
    }
    overlap::Window::of_parts(&[&doc.text, &doc.name, &meta])
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn guard() -> Guard {
        Guard::new(&GuardConfig::default()).unwrap()
    }

    /// Both passes, over a body laid out as the OpenAI client lays it out.
    fn check(guard: &Guard, parts: &mut Parts, source: &str) -> Result<Vec<Redaction>, Blocked> {
        let mut window = overlap::Window::new(source);
        check_in(guard, parts, None, &mut window)
    }

    fn check_in(
        guard: &Guard,
        parts: &mut Parts,
        schema: Option<Value>,
        window: &mut overlap::Window,
    ) -> Result<Vec<Redaction>, Blocked> {
        let mut redactions = guard.check_parts(parts)?;
        let mut messages = Vec::new();
        if let Some(system) = &parts.system {
            messages.push(json!({"role": "system", "content": system}));
        }
        let input = parts
            .input
            .as_ref()
            .map(|i| serde_json::to_string_pretty(i).unwrap());
        let content = match (&parts.prompt, input) {
            (Some(p), Some(i)) => format!("{p}\n\n{i}"),
            (Some(p), None) => p.clone(),
            (None, Some(i)) => i,
            (None, None) => String::new(),
        };
        messages.push(json!({"role": "user", "content": content}));
        let mut body = json!({"model": "gpt-5.4", "messages": messages});
        if let Some(schema) = schema {
            body["response_format"] = json!({"type": "json_schema", "json_schema": {"name": "x", "strict": true, "schema": schema}});
        }
        let prompt_len = parts.prompt.as_ref().map(String::len);
        redactions.extend(guard.check_body(&mut body, prompt_len, Some(window))?);
        Ok(redactions)
    }

    const CONTRACT: &str = "El contratista prestará servicios de soporte técnico de primer y segundo nivel para los sistemas de facturación electrónica del contratante durante toda la vigencia del presente contrato";

    #[test]
    fn every_string_of_the_body_is_checked_the_schema_too() {
        // A document smuggled out through an inline schema's description.
        let mut parts = Parts {
            input: Some(json!({"n": 1})),
            ..Parts::default()
        };
        let schema = json!({"type": "object", "properties": {"a": {"type": "string", "description": CONTRACT}}});
        let blocked = check_in(
            &guard(),
            &mut parts,
            Some(schema),
            &mut overlap::Window::new(CONTRACT),
        )
        .unwrap_err();
        assert_eq!(
            (blocked.rule.as_str(), blocked.field.as_str()),
            ("verbatim_overlap", "schema/properties/a/description")
        );
        // A card in an enum value, an IBAN as a property name.
        for schema in [
            json!({"type": "string", "enum": ["4111 1111 1111 1111"]}),
            json!({"type": "object", "properties": {"ES9121000418450200051332": {"type": "string"}}}),
        ] {
            let mut parts = Parts {
                prompt: Some("hola".into()),
                ..Parts::default()
            };
            let blocked = check_in(
                &guard(),
                &mut parts,
                Some(schema),
                &mut overlap::Window::new(""),
            )
            .unwrap_err();
            assert!(blocked.field.starts_with("schema"), "{blocked:?}");
        }
    }

    /// `check_wire` (the schema walked once, then reused) finds what `check_body` finds over
    /// the whole body, the first time and every time after, and sends the same bytes.
    #[test]
    fn a_kept_schema_walk_decides_as_the_whole_walk_does() {
        use crate::models::{openai, ModelRequest, RequestSchema};
        let guard = guard();
        let schemas = [
            json!({"type": "object", "properties": {"risk": {"type": "string", "description": "overall risk"}}}),
            json!({"type": "object", "properties": {"a": {"type": "string", "description": CONTRACT}}}),
            json!({"type": "string", "enum": ["4111 1111 1111 1111"]}),
            json!({"type": "string", "description": "write to ana.perez@example.com"}),
            json!({"type": "string", "description": "facturación electrónica del contratante durante"}),
        ];
        for schema in schemas {
            let request = ModelRequest {
                system: Some("You are a lawyer.".into()),
                prompt: "servicios de soporte técnico de primer y segundo nivel para los".into(),
                schema: Some(RequestSchema::new("x", Arc::new(schema.clone()), None)),
                ..Default::default()
            };
            let whole = {
                let mut body = openai::chat_body("gpt-5.4", &request);
                let mut window = overlap::Window::new(CONTRACT);
                let verdict = guard.check_body(&mut body, None, Some(&mut window));
                (verdict.map_err(|b| (b.rule, b.field)), body)
            };
            for time in ["first", "again"] {
                let mut wire = openai::wire_body("gpt-5.4", &request);
                let mut window = overlap::Window::new(CONTRACT);
                let verdict = guard.check_wire(&mut wire, None, Some(&mut window));
                let body: Value = serde_json::from_slice(&wire.to_bytes()).unwrap();
                let kept = (verdict.map_err(|b| (b.rule, b.field)), body);
                assert_eq!(kept, whole, "{time}: {schema}");
            }
        }
    }

    #[test]
    fn a_passage_split_between_system_and_prompt_is_caught() {
        let words: Vec<&str> = CONTRACT.split(' ').collect();
        let mut parts = Parts {
            system: Some(words[..12].join(" ")),
            prompt: Some(words[12..24].join(" ")),
            ..Parts::default()
        };
        let blocked = check(&guard(), &mut parts, CONTRACT).unwrap_err();
        assert_eq!(blocked.rule, "verbatim_overlap");
    }

    #[test]
    fn reversed_and_encoded_copies_are_caught() {
        use base64::Engine as _;
        let reversed: String = CONTRACT.chars().rev().collect();
        let encoded = base64::engine::general_purpose::STANDARD.encode(CONTRACT);
        for text in [reversed, encoded] {
            let mut parts = Parts {
                input: Some(json!({"x": text})),
                ..Parts::default()
            };
            let blocked = check(&guard(), &mut parts, CONTRACT).unwrap_err();
            assert_eq!(blocked.rule, "verbatim_overlap", "{text}");
            assert!(blocked.field.starts_with("input ("), "{blocked:?}");
        }
        let card = base64::engine::general_purpose::STANDARD
            .encode("pago con 4111 1111 1111 1111 gracias");
        let mut parts = Parts {
            input: Some(json!({"x": card})),
            ..Parts::default()
        };
        let blocked = check(&guard(), &mut parts, "").unwrap_err();
        assert_eq!(
            (blocked.rule.as_str(), blocked.field.as_str()),
            ("payment_card", "input (encoded)")
        );
    }

    #[test]
    fn a_document_sent_in_short_pieces_over_several_calls_is_caught() {
        let guard = guard();
        let mut window = overlap::Window::new(CONTRACT);
        let words: Vec<&str> = CONTRACT.split(' ').collect();
        let mut outcome = Ok(Vec::new());
        for chunk in words.chunks(11) {
            let mut parts = Parts {
                input: Some(json!({"part": chunk.join(" ")})),
                ..Parts::default()
            };
            outcome = check_in(&guard, &mut parts, None, &mut window);
            if outcome.is_err() {
                break;
            }
        }
        assert_eq!(outcome.unwrap_err().rule, "verbatim_overlap");
    }

    #[test]
    fn copying_the_document_is_blocked_naming_rule_and_field() {
        let source = "El contratista prestará servicios de soporte técnico de primer y segundo nivel para los sistemas de facturación electrónica";
        let mut parts = Parts {
            prompt: Some(format!("Summarise: {source}")),
            ..Parts::default()
        };
        let blocked = check(&guard(), &mut parts, source).unwrap_err();
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
        let redactions = check(&guard(), &mut parts, source).unwrap();
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
        let blocked = check(&guard(), &mut parts.clone(), "").unwrap_err();
        assert_eq!(
            (blocked.rule.as_str(), blocked.field.as_str()),
            ("payment_card", "input/card")
        );
        let mut config = GuardConfig::default();
        config
            .detectors
            .insert("payment_card".into(), Action::Allow);
        assert!(check(&Guard::new(&config).unwrap(), &mut parts, "")
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
        let blocked = check(&guard(), &mut parts, source).unwrap_err();
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
        let redactions = check(&guard(), &mut parts, "").unwrap();
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
            check(&Guard::new(&config).unwrap(), &mut parts, "")
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
