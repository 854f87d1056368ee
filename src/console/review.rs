//! The review queue: what the pipelines sent to people, and what people decided.
//!
//! Items are the records whose result says `decision: "human_review"`, joined with what the
//! pipeline `emit`ted to its review stream (`review_queue.jsonl` beside the results: the
//! document's text, both answers, the fields that differ); stream entries without a record
//! are items too. Decisions append to `reviews.jsonl` beside the results, one line each
//! (who, when, item, decision, final value, note); the latest decision on an item counts. A
//! decision that edits the answer is validated against the schema the local answer was
//! asked for before it is saved. [`export`] turns the emitted fine-tuning examples into a
//! training file whose targets are the reviewed values where they exist.

use std::collections::BTreeMap;
use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::schemas::SchemaRegistry;

/// Where the review queue of a results file lives.
#[derive(Debug, Clone)]
pub struct Queue {
    pub results: PathBuf,
    /// The emitted review stream (`review_queue.jsonl` beside the results).
    pub stream: PathBuf,
    /// Where decisions go (`reviews.jsonl` beside the results).
    pub reviews: PathBuf,
    pub schemas: Option<PathBuf>,
}

impl Queue {
    pub fn beside(results: &Path, schemas: Option<PathBuf>) -> Queue {
        let dir = results
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        Queue {
            results: results.to_owned(),
            stream: dir.join("review_queue.jsonl"),
            reviews: dir.join("reviews.jsonl"),
            schemas: schemas.or_else(|| Some(PathBuf::from("schemas")).filter(|p| p.is_dir())),
        }
    }
}

/// One thing a person should look at.
#[derive(Debug, Clone, Serialize)]
pub struct Item {
    /// Unique in the queue: `ID@VERSION`.
    pub key: String,
    pub id: String,
    pub version: String,
    pub at: String,
    pub source: String,
    pub category: Option<String>,
    pub reasons: Vec<String>,
    pub divergent_fields: Vec<String>,
    pub local: Value,
    pub cloud: Value,
    /// The schema name the local answer was asked for, when there was one.
    pub schema_name: Option<String>,
    pub schema: Option<Value>,
    /// The document's text, when the review stream carries it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub text: Option<String>,
    pub decision: Option<Decision>,
}

/// One line of `reviews.jsonl`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Decision {
    pub at: String,
    pub reviewer: String,
    /// The item's key (`ID@VERSION`) and the document id.
    pub item: String,
    pub id: String,
    /// `keep_local`, `take_cloud`, `edit` or `reject`.
    pub decision: String,
    /// The answer that stands after the review (none for `reject`).
    pub value: Value,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub note: String,
}

#[derive(Debug, thiserror::Error)]
pub enum ReviewError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot write {path}: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("no review item `{0}`")]
    NoItem(String),
    #[error("{0}")]
    Invalid(String),
}

fn lines(path: &Path) -> Result<Vec<Value>, ReviewError> {
    let file = match std::fs::File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(source) => {
            return Err(ReviewError::Read {
                path: path.to_owned(),
                source,
            })
        }
    };
    Ok(std::io::BufReader::new(file)
        .lines()
        .map_while(Result::ok)
        .filter_map(|l| serde_json::from_str(&l).ok())
        .collect())
}

fn strings(v: Option<&Value>) -> Vec<String> {
    v.and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(|s| s.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

fn text(v: Option<&Value>) -> Option<String> {
    v.and_then(Value::as_str).map(str::to_owned)
}

/// The latest decision per item.
pub fn decisions(queue: &Queue) -> Result<BTreeMap<String, Decision>, ReviewError> {
    let mut out = BTreeMap::new();
    for line in lines(&queue.reviews)? {
        if let Ok(d) = serde_json::from_value::<Decision>(line) {
            out.insert(d.item.clone(), d);
        }
    }
    Ok(out)
}

/// Every item, oldest first, with its latest decision.
pub fn items(queue: &Queue) -> Result<Vec<Item>, ReviewError> {
    let schemas = queue
        .schemas
        .clone()
        .and_then(|dir| SchemaRegistry::load(Some(dir)).ok());
    let mut streamed: BTreeMap<String, Value> = BTreeMap::new();
    for entry in lines(&queue.stream)? {
        if let Some(id) = entry.get("id").and_then(|v| match v {
            Value::String(s) => Some(s.clone()),
            Value::Number(n) => Some(n.to_string()),
            _ => None,
        }) {
            streamed.insert(id, entry);
        }
    }
    let decided = decisions(queue)?;
    let mut items = Vec::new();
    let mut seen = std::collections::HashSet::new();
    for record in lines(&queue.results)? {
        let result = record.get("result").cloned().unwrap_or(Value::Null);
        if result.get("decision").and_then(Value::as_str) != Some("human_review") {
            continue;
        }
        let id = text(record.get("id")).unwrap_or_default();
        let version = text(record.get("version")).unwrap_or_default();
        let key = format!("{id}@{version}");
        if !seen.insert(key.clone()) {
            continue;
        }
        let stream = streamed.remove(&id);
        let pick = |names: &[&str]| {
            names
                .iter()
                .find_map(|n| result.get(*n).filter(|v| !v.is_null()).cloned())
                .or_else(|| {
                    stream.as_ref().and_then(|s| {
                        names
                            .iter()
                            .find_map(|n| s.get(*n).filter(|v| !v.is_null()).cloned())
                    })
                })
                .unwrap_or(Value::Null)
        };
        let mut reasons = strings(result.get("reasons"));
        for (field, what) in [("local_error", "local"), ("cloud_error", "cloud")] {
            if let Some(kind) = result.get(field).and_then(Value::as_str) {
                reasons.push(format!("{what} {kind}"));
            }
        }
        let mut divergent = strings(result.get("divergent_fields"));
        if divergent.is_empty() {
            divergent = strings(stream.as_ref().and_then(|s| s.get("divergent_fields")));
        }
        if !divergent.is_empty() {
            reasons.push(format!(
                "local and cloud differ on {}",
                divergent.join(", ")
            ));
        }
        let schema_name = record
            .get("calls")
            .and_then(Value::as_array)
            .and_then(|calls| {
                calls
                    .iter()
                    .find(|c| c.get("function").and_then(Value::as_str) == Some("local"))
            })
            .and_then(|c| text(c.get("schema")));
        let schema = schema_name
            .as_ref()
            .and_then(|n| schemas.as_ref()?.named(n).ok())
            .map(|s| (*s.json).clone());
        items.push(Item {
            decision: decided.get(&key).cloned(),
            key,
            id,
            version,
            at: text(record.get("at")).unwrap_or_default(),
            source: text(record.get("source")).unwrap_or_default(),
            category: text(result.get("category")),
            reasons,
            divergent_fields: divergent,
            local: pick(&["answer", "local", "triage", "draft"]),
            cloud: pick(&["cloud"]),
            schema_name,
            schema,
            text: stream.as_ref().and_then(|s| text(s.get("text"))),
        });
    }
    // Review stream entries that no record sent to review (a pipeline that queues and then
    // takes an answer anyway).
    for (id, s) in streamed {
        let key = format!("{id}@");
        items.push(Item {
            decision: decided.get(&key).cloned(),
            key,
            id,
            version: String::new(),
            at: String::new(),
            source: String::new(),
            category: text(s.get("category")),
            reasons: Vec::new(),
            divergent_fields: strings(s.get("divergent_fields")),
            local: s.get("local").cloned().unwrap_or(Value::Null),
            cloud: s.get("cloud").cloned().unwrap_or(Value::Null),
            schema_name: None,
            schema: None,
            text: text(s.get("text")),
        });
    }
    Ok(items)
}

/// The document behind an item, read on this machine: its text from the review stream, or
/// its source file (`path`, or `path:line` of a JSONL file).
pub fn document(item: &Item) -> Option<String> {
    if let Some(t) = &item.text {
        return Some(t.clone());
    }
    let source = item.source.as_str();
    if source.is_empty() || source == "-" {
        return None;
    }
    let (path, line) = match source.rsplit_once(':') {
        Some((p, n)) if n.chars().all(|c| c.is_ascii_digit()) && !n.is_empty() => {
            (p, n.parse::<usize>().ok())
        }
        _ => (source, None),
    };
    let path = Path::new(path);
    match line {
        Some(n) => {
            let file = std::fs::File::open(path).ok()?;
            let line = std::io::BufReader::new(file)
                .lines()
                .nth(n.checked_sub(1)?)?
                .ok()?;
            let value: Value = serde_json::from_str(&line).ok()?;
            text(value.get("text"))
        }
        None => crate::documents::read_file(path, crate::documents::DEFAULT_MAX_BYTES)
            .ok()
            .and_then(|d| d.extracted().ok())
            .map(|d| d.text.to_string()),
    }
}

/// What a reviewer sends.
#[derive(Debug, Deserialize)]
pub struct Submitted {
    pub item: String,
    pub decision: String,
    #[serde(default)]
    pub value: Value,
    #[serde(default)]
    pub note: String,
    #[serde(default)]
    pub reviewer: String,
}

/// Checks a decision and appends it to `reviews.jsonl`.
pub fn decide(queue: &Queue, submitted: Submitted) -> Result<Decision, ReviewError> {
    let items = items(queue)?;
    let item = items
        .iter()
        .find(|i| i.key == submitted.item)
        .ok_or_else(|| ReviewError::NoItem(submitted.item.clone()))?;
    let value = match submitted.decision.as_str() {
        "keep_local" => item.local.clone(),
        "take_cloud" if item.cloud.is_null() => {
            return Err(ReviewError::Invalid(
                "this item has no cloud answer to take".into(),
            ))
        }
        "take_cloud" => item.cloud.clone(),
        "reject" => Value::Null,
        "edit" => {
            if let (Some(name), None) = (&item.schema_name, &item.schema) {
                return Err(ReviewError::Invalid(format!(
                    "the answer was asked for with the schema `{name}`, which is not in {}: the edit cannot be checked, so it is not saved\nhint: start `hybrid review` with --schemas DIR",
                    queue
                        .schemas
                        .as_deref()
                        .map(|d| d.display().to_string())
                        .unwrap_or_else(|| "any schemas folder here".into())
                )));
            }
            if let Some(json) = &item.schema {
                let schema = crate::schemas::Schema::compile("review", json.clone())
                    .map_err(|e| ReviewError::Invalid(e.to_string()))?;
                let violations = schema.validate(&submitted.value);
                if !violations.is_empty() {
                    let list: Vec<String> = violations
                        .iter()
                        .map(|v| {
                            format!(
                                "{}: {}",
                                if v.path.is_empty() { "/" } else { &v.path },
                                v.message
                            )
                        })
                        .collect();
                    return Err(ReviewError::Invalid(format!(
                        "the edited answer does not match the schema `{}`: {}",
                        item.schema_name.as_deref().unwrap_or("?"),
                        list.join("; ")
                    )));
                }
            }
            submitted.value.clone()
        }
        other => {
            return Err(ReviewError::Invalid(format!(
                "unknown decision `{other}`: keep_local, take_cloud, edit or reject"
            )))
        }
    };
    let reviewer = if submitted.reviewer.trim().is_empty() {
        std::env::var("USER").unwrap_or_else(|_| "reviewer".into())
    } else {
        submitted.reviewer.trim().chars().take(80).collect()
    };
    let decision = Decision {
        at: crate::audit::now(),
        reviewer,
        item: item.key.clone(),
        id: item.id.clone(),
        decision: submitted.decision,
        value,
        note: submitted.note.chars().take(2000).collect(),
    };
    let mut line = serde_json::to_vec(&decision).expect("a decision is JSON");
    line.push(b'\n');
    let write = || -> std::io::Result<()> {
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&queue.reviews)?;
        f.write_all(&line)?;
        f.sync_data()
    };
    write().map_err(|source| ReviewError::Write {
        path: queue.reviews.clone(),
        source,
    })?;
    Ok(decision)
}

/// Counts for `hybrid report`: items waiting and decisions by kind.
#[derive(Debug, Default, Clone, Serialize)]
pub struct Counts {
    pub items: u64,
    pub decided: u64,
    pub by_decision: BTreeMap<String, u64>,
}

pub fn counts(queue: &Queue) -> Result<Counts, ReviewError> {
    let items = items(queue)?;
    let mut c = Counts {
        items: items.len() as u64,
        ..Counts::default()
    };
    for d in items.iter().filter_map(|i| i.decision.as_ref()) {
        c.decided += 1;
        *c.by_decision.entry(d.decision.clone()).or_default() += 1;
    }
    Ok(c)
}

/// A fine-tuning file from the emitted examples (chat format: system, user, assistant), with
/// reviewed values as targets: an example whose user turn is a reviewed document's text
/// takes the reviewed value; a rejected one is left out; the rest keep their target.
/// Returns (examples written, of which reviewed, left out).
pub fn export(
    queue: &Queue,
    examples: &Path,
    out: &mut impl Write,
) -> Result<(u64, u64, u64), ReviewError> {
    let items = items(queue)?;
    let mut by_text: BTreeMap<String, &Decision> = BTreeMap::new();
    for item in &items {
        if let (Some(d), Some(t)) = (&item.decision, &item.text) {
            by_text.insert(t.clone(), d);
        }
    }
    let (mut written, mut reviewed, mut left_out) = (0, 0, 0);
    for mut example in lines(examples)? {
        let user = example["messages"]
            .as_array()
            .and_then(|m| m.iter().find(|t| t["role"] == "user"))
            .and_then(|t| t["content"].as_str())
            .map(str::to_owned);
        if let Some(d) = user.as_ref().and_then(|u| by_text.get(u)) {
            if d.decision == "reject" {
                left_out += 1;
                continue;
            }
            let target = match &d.value {
                Value::String(s) => s.clone(),
                other => other.to_string(),
            };
            if let Some(turn) = example["messages"]
                .as_array_mut()
                .and_then(|m| m.iter_mut().find(|t| t["role"] == "assistant"))
            {
                turn["content"] = Value::String(target);
                reviewed += 1;
            }
        }
        let mut line = serde_json::to_vec(&example).expect("JSON");
        line.push(b'\n');
        out.write_all(&line).map_err(|source| ReviewError::Write {
            path: PathBuf::from("-"),
            source,
        })?;
        written += 1;
    }
    Ok((written, reviewed, left_out))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_edit_whose_schema_cannot_be_found_is_not_saved() {
        let dir = tempfile::tempdir().unwrap();
        let results = dir.path().join("r.jsonl");
        std::fs::write(
            &results,
            "{\"id\":\"d1\",\"version\":\"v1\",\"ok\":true,\"result\":{\"decision\":\"human_review\",\"answer\":{\"x\":1}},\"calls\":[{\"function\":\"local\",\"schema\":\"intent\"}]}\n",
        )
        .unwrap();
        let queue = Queue::beside(&results, Some(dir.path().join("no-schemas")));
        let err = decide(
            &queue,
            Submitted {
                item: "d1@v1".into(),
                decision: "edit".into(),
                value: serde_json::json!({"x": "anything"}),
                note: String::new(),
                reviewer: "ana".into(),
            },
        )
        .unwrap_err()
        .to_string();
        assert!(
            err.contains("`intent`") && err.contains("--schemas"),
            "{err}"
        );
        assert!(!queue.reviews.exists());
        // Keeping the local answer needs no schema.
        let kept = decide(
            &queue,
            Submitted {
                item: "d1@v1".into(),
                decision: "keep_local".into(),
                value: Value::Null,
                note: "ok".into(),
                reviewer: "ana".into(),
            },
        )
        .unwrap();
        assert_eq!(kept.value, serde_json::json!({"x": 1}));
        assert_eq!(counts(&queue).unwrap().decided, 1);
    }
}
