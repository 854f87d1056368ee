//! Rule tests: a pipeline's behaviour pinned by cases an operator can read and run, with no
//! model — `hybrid test scripts/NAME.rhai` runs `scripts/NAME.cases.jsonl`.
//!
//! Each line of the cases file is one case: a document, the answers the models give (per
//! function, in call order), and what the result must contain:
//!
//! ```json
//! {"name": "escalates below the threshold",
//!  "doc": {"id": "c1", "text": "..."},
//!  "answers": {"local": [{"confidence_score": 0.5, "...": "..."}], "cloud": [{"overall_risk": "low", "...": "..."}]},
//!  "expect": {"decision": "cloud"}}
//! ```
//!
//! An answer is the JSON the model returns (a string for free text), or `{"error": "timeout"}`
//! for a call that fails with that kind. `expect` is matched as a subset of the result (maps
//! by key, everything else by value); `"expect_error": "script"` expects the document to fail
//! with that kind instead. The cases run through the real host: schemas, the egress guard and
//! the script's error handling all apply.

use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use serde_json::Value;

use crate::bundle::Bundle;
use crate::documents::Document;
use crate::models::{Backend, BoxFuture, ErrorKind, ModelError, ModelRequest, ModelResponse};

#[derive(Debug, thiserror::Error)]
pub enum CasesError {
    #[error("cannot read the cases `{path}`: {source}\nhint: a pipeline's cases live beside it as NAME.cases.jsonl, one JSON case a line (see the README's \"Rule tests\")")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}:{line}: {message}\nhint: a case is {{\"name\", \"doc\": {{\"id\", \"text\"}}, \"answers\": {{\"local\": [...], \"cloud\": [...]}}, \"expect\": {{...}}}}")]
    Case {
        path: PathBuf,
        line: usize,
        message: String,
    },
}

/// One case, as read.
pub struct Case {
    pub name: String,
    pub line: usize,
    doc: Document,
    local: Vec<Value>,
    cloud: Vec<Value>,
    expect: Option<Value>,
    expect_error: Option<String>,
}

/// What running a case found: `None` when it passed, else what differed.
pub struct Outcome {
    pub name: String,
    pub line: usize,
    pub failure: Option<String>,
}

/// The cases file of `script`: `NAME.cases.jsonl` beside it.
pub fn cases_path(script: &Path) -> PathBuf {
    let stem = script
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    script.with_file_name(format!("{stem}.cases.jsonl"))
}

pub fn read(path: &Path) -> Result<Vec<Case>, CasesError> {
    let text = std::fs::read_to_string(path).map_err(|source| CasesError::Read {
        path: path.to_owned(),
        source,
    })?;
    let mut cases = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let line_no = i + 1;
        let fail = |message: String| CasesError::Case {
            path: path.to_owned(),
            line: line_no,
            message,
        };
        if line.trim().is_empty() || line.trim_start().starts_with("//") {
            continue;
        }
        let v: Value = serde_json::from_str(line).map_err(|e| fail(format!("not JSON: {e}")))?;
        let name = v["name"]
            .as_str()
            .map(str::to_owned)
            .unwrap_or_else(|| format!("case on line {line_no}"));
        let d = &v["doc"];
        let text = d["text"]
            .as_str()
            .ok_or_else(|| fail("the case has no \"doc\": {\"text\": ...}".into()))?;
        let id = d["id"].as_str().unwrap_or(&name).to_owned();
        let doc = Document {
            id: id.clone(),
            path: None,
            name: d["name"].as_str().unwrap_or(&id).to_owned(),
            text: text.into(),
            kind: d["kind"].as_str().unwrap_or("txt").to_owned(),
            meta: d["meta"].as_object().cloned().unwrap_or_default(),
            unread: None,
            images: Vec::new(),
        };
        let answers = |f: &str| v["answers"][f].as_array().cloned().unwrap_or_default();
        let (expect, expect_error) = (
            v.get("expect").cloned(),
            v["expect_error"].as_str().map(str::to_owned),
        );
        if expect.is_none() && expect_error.is_none() {
            return Err(fail(
                "the case expects nothing: give \"expect\" or \"expect_error\"".into(),
            ));
        }
        cases.push(Case {
            name,
            line: line_no,
            doc,
            local: answers("local"),
            cloud: answers("cloud"),
            expect,
            expect_error,
        });
    }
    Ok(cases)
}

/// A model that gives a case's answers, in order.
struct Scripted {
    function: &'static str,
    model: String,
    answers: Mutex<VecDeque<Value>>,
}

impl Backend for Scripted {
    fn name(&self) -> &str {
        "case"
    }
    fn model(&self) -> &str {
        &self.model
    }
    fn io_on_caller(&self) -> bool {
        true
    }
    fn complete<'a>(
        &'a self,
        _req: &'a ModelRequest,
    ) -> BoxFuture<'a, Result<ModelResponse, ModelError>> {
        Box::pin(async move {
            let next = self
                .answers
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .pop_front();
            let Some(answer) = next else {
                return Err(ModelError::new(
                    ErrorKind::NotConfigured,
                    format!("the case gives no more answers for {}()", self.function),
                ));
            };
            if let Some(kind) = answer.get("error").and_then(Value::as_str) {
                let kind = ErrorKind::parse(kind).unwrap_or(ErrorKind::Server);
                return Err(ModelError::new(
                    kind,
                    format!(
                        "the case's {}() fails with {}",
                        self.function,
                        kind.as_str()
                    ),
                ));
            }
            let text = match &answer {
                Value::String(s) => s.clone(),
                other => other.to_string(),
            };
            Ok(ModelResponse {
                text,
                model: self.model.clone(),
                ..ModelResponse::default()
            })
        })
    }
}

/// Whether `actual` contains `expected`: maps by key (recursively), everything else equal.
/// The first difference, as `path: expected X, got Y`.
pub fn contains(actual: &Value, expected: &Value, path: &str) -> Result<(), String> {
    match (actual, expected) {
        (Value::Object(a), Value::Object(e)) => {
            for (k, ev) in e {
                let p = if path.is_empty() {
                    k.clone()
                } else {
                    format!("{path}.{k}")
                };
                match a.get(k) {
                    Some(av) => contains(av, ev, &p)?,
                    None => return Err(format!("{p}: expected {ev}, but the result has no `{k}`")),
                }
            }
            Ok(())
        }
        (a, e) if a == e => Ok(()),
        (a, e) => Err(format!(
            "{}: expected {e}, got {a}",
            if path.is_empty() { "result" } else { path }
        )),
    }
}

/// Runs every case of `bundle` with `services` as the template (its back ends are replaced by
/// the case's answers).
pub fn run(bundle: &Bundle, template: &crate::host::Services, cases: Vec<Case>) -> Vec<Outcome> {
    // What the cases `emit` goes nowhere that matters.
    let scratch = tempfile::tempdir().ok();
    let emits = scratch
        .as_ref()
        .map_or_else(std::env::temp_dir, |d| d.path().to_owned());
    cases
        .into_iter()
        .map(|case| {
            let scripted =
                |function: &'static str, model: &str, answers: Vec<Value>| -> Arc<dyn Backend> {
                    Arc::new(Scripted {
                        function,
                        model: model.to_owned(),
                        answers: Mutex::new(answers.into()),
                    })
                };
            let services = Arc::new(crate::host::Services {
                local: scripted("local", template.local.model(), case.local),
                cloud: scripted("cloud", template.cloud.model(), case.cloud),
                runtime: template.runtime.clone(),
                guard: template.guard.clone(),
                audit: None,
                pricing: template.pricing.clone(),
                cloud_endpoint: template.cloud_endpoint.clone(),
                streams: crate::host::emit::Streams::new(emits.clone()),
                spend: None,
                pipeline: template.pipeline.clone(),
                cache: None,
                replay: false,
            });
            let record = crate::host::run_document(bundle, &services, &Arc::new(case.doc));
            let failure = match (&case.expect_error, &record.error, &record.result) {
                (Some(kind), Some(e), _) if &e.kind == kind => None,
                (Some(kind), Some(e), _) => Some(format!(
                    "expected the document to fail with `{kind}`, it failed with `{}`: {}",
                    e.kind, e.message
                )),
                (Some(kind), None, result) => Some(format!(
                    "expected the document to fail with `{kind}`, it succeeded with {}",
                    result.clone().unwrap_or(Value::Null)
                )),
                (None, Some(e), _) => Some(format!(
                    "the document failed with `{}`: {}",
                    e.kind, e.message
                )),
                (None, None, result) => {
                    let expect = case.expect.unwrap_or(Value::Null);
                    contains(result.as_ref().unwrap_or(&Value::Null), &expect, "").err()
                }
            };
            Outcome {
                name: case.name,
                line: case.line,
                failure,
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn expectations_are_subsets_of_the_result() {
        let result = json!({"decision": "cloud", "reasons": ["a"], "triage": {"confidence": 0.5, "flags": []}});
        assert!(contains(&result, &json!({"decision": "cloud"}), "").is_ok());
        assert!(contains(&result, &json!({"triage": {"confidence": 0.5}}), "").is_ok());
        let err = contains(&result, &json!({"decision": "local"}), "").unwrap_err();
        assert_eq!(err, "decision: expected \"local\", got \"cloud\"");
        let err = contains(&result, &json!({"triage": {"missing": 1}}), "").unwrap_err();
        assert!(err.starts_with("triage.missing:"), "{err}");
    }
}
