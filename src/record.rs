//! The result format: one JSON line per document, with the model calls it made.
//!
//! Records are the product's output and its audit trail at once, so they carry enough to
//! answer "what happened to document X, under which rules, at what cost" without the logs.

use serde::Serialize;
use serde_json::Value;

use crate::models::Usage;

/// One document's outcome.
#[derive(Debug, Clone, Serialize)]
pub struct Record {
    pub id: String,
    pub source: String,
    pub ok: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub result: Option<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<RecordError>,
    pub calls: Vec<CallRecord>,
    /// Content hash of the rules (script, imports, schemas) that produced this record.
    pub version: String,
    pub elapsed_ms: u64,
    /// When the document finished (RFC 3339, UTC): `hybrid versions` says when each rules
    /// version was active.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub at: String,
}

/// Why a document failed.
#[derive(Debug, Clone, Serialize)]
pub struct RecordError {
    /// `input`, `script`, `limit`, `schema`, or a model error kind (`timeout`, `rate_limit`, ...).
    pub kind: String,
    pub message: String,
    /// `file:line:col` in the script, when the failure has a position.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub position: Option<String>,
    /// That line of the script with a caret under the column (see `snippet`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub snippet: Option<String>,
}

/// One `local()` / `cloud()` call.
#[derive(Debug, Clone, Serialize)]
pub struct CallRecord {
    /// `local` or `cloud`.
    pub function: &'static str,
    pub backend: String,
    pub model: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub schema: Option<String>,
    pub ok: bool,
    /// The error kind, when the call failed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    #[serde(flatten)]
    pub usage: Usage,
    /// What the call cost in USD: cloud tokens at the model's prices, local time at the
    /// configured hardware rate. Absent when no price is known.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cost_usd: Option<f64>,
    pub ms: u64,
    pub retries: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub request_id: Option<String>,
    /// The processing tier that served the call (`flex`, `default`), when the API says.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub service_tier: Option<String>,
    /// True when nothing was sent (`--cloud dry-run`): usage and cost are estimates.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub dry_run: bool,
    /// True when the answer came from the answer cache: nothing was called, nothing paid
    /// (`usage` and `request_id` are the original call's).
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub cached: bool,
    /// True when `--replay` found no cached answer: usage, cost and answer are estimates
    /// (placeholders marked `[replay-miss]`).
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub replay_miss: bool,
    /// What the egress guard redacted on the way out.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub redactions: Vec<crate::guard::Redaction>,
}

/// Totals over a run, for the closing summary line.
#[derive(Debug, Default, Clone, Serialize)]
pub struct Summary {
    pub documents: u64,
    pub ok: u64,
    pub failed: u64,
    pub local_calls: u64,
    pub cloud_calls: u64,
    pub failed_calls: u64,
    pub tokens: u64,
    pub wall_ms: u64,
    /// Documents passed over because the results file already had their record (--resume).
    pub skipped: u64,
    /// Calls `--replay` could not answer from the cache.
    pub replay_misses: u64,
    /// Queued documents handed back after a transient failure (not recorded; retried).
    pub handed_back: u64,
}

impl Summary {
    pub fn add(&mut self, record: &Record) {
        self.documents += 1;
        if record.ok {
            self.ok += 1;
        } else {
            self.failed += 1;
        }
        for call in &record.calls {
            match call.function {
                "local" => self.local_calls += 1,
                _ => self.cloud_calls += 1,
            }
            if !call.ok {
                self.failed_calls += 1;
            }
            if call.replay_miss {
                self.replay_misses += 1;
            }
            self.tokens += call.usage.prompt_tokens + call.usage.completion_tokens;
        }
    }
}

impl std::fmt::Display for Summary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} documents: {} ok, {} failed; {} calls ({} local, {} cloud, {} failed); {} tokens; {:.1} s",
            self.documents,
            self.ok,
            self.failed,
            self.local_calls + self.cloud_calls,
            self.local_calls,
            self.cloud_calls,
            self.failed_calls,
            self.tokens,
            self.wall_ms as f64 / 1000.0
        )?;
        if self.skipped > 0 {
            write!(f, "; {} skipped (already in the results)", self.skipped)?;
        }
        if self.replay_misses > 0 {
            write!(
                f,
                "; {} calls not in the answer cache (estimated, [replay-miss])",
                self.replay_misses
            )?;
        }
        if self.handed_back > 0 {
            write!(
                f,
                "; {} handed back to the queue after a transient failure",
                self.handed_back
            )?;
        }
        Ok(())
    }
}
