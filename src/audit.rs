//! The audit log: one JSON line for every payload that left, would have left (dry-run), or
//! was stopped (blocked) on its way to the cloud.
//!
//! Append-only and flushed per line, so it survives a crash. It is what an auditor asks for
//! when a client contract has a data-residency clause: what left, when, for which document,
//! under which rules, to which host, at what cost.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use serde::Serialize;
use serde_json::Value;

#[derive(Debug, thiserror::Error)]
#[error("cannot open the audit log `{path}`: {source}\nhint: pass --audit FILE with a writable path (or set `path` under [audit])")]
pub struct AuditError {
    pub path: PathBuf,
    pub source: std::io::Error,
}

/// What happened to the payload.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    Sent,
    Failed,
    Blocked,
    DryRun,
}

/// One audit line.
#[derive(Debug, Clone, Serialize)]
pub struct Entry {
    /// RFC 3339, UTC.
    pub time: String,
    pub document: String,
    /// The rules version (bundle hash) that made the call.
    pub version: String,
    pub model: String,
    /// Where it went (host only, never the full URL's query or credentials).
    pub endpoint: String,
    pub outcome: Outcome,
    /// The guard rule that blocked it, and the field it fired on.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rule: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
    /// The payload as sent (or as it would have been), unless the policy keeps only the hash.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub payload: Option<Value>,
    /// SHA-256 of the payload's JSON text.
    pub payload_sha256: String,
    pub bytes: usize,
    pub prompt_tokens: u64,
    pub completion_tokens: u64,
    /// True when the token counts are estimates (dry-run, blocked).
    pub estimated: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cost_usd: Option<f64>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub redactions: Vec<crate::guard::Redaction>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub request_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// An append-only JSONL file shared by every document in flight. The file is created at the
/// first cloud call, so runs that send nothing leave nothing behind.
pub struct AuditLog {
    path: PathBuf,
    file: Mutex<Option<File>>,
    /// Keep payloads in the log (`full`) or only their hash (`hash`).
    pub keep_payload: bool,
}

impl AuditLog {
    /// Checks that the log's folder can be created; the file itself waits for the first entry.
    pub fn open(path: &Path, keep_payload: bool) -> Result<AuditLog, AuditError> {
        let fail = |source| AuditError {
            path: path.to_owned(),
            source,
        };
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(fail)?;
        }
        if path.is_dir() {
            return Err(fail(std::io::Error::other("it is a folder")));
        }
        Ok(AuditLog {
            path: path.to_owned(),
            file: Mutex::new(None),
            keep_payload,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Appends one line and flushes it. A failure to write is logged, not fatal: the call
    /// itself already happened (or was stopped).
    pub fn write(&self, mut entry: Entry) {
        if !self.keep_payload {
            entry.payload = None;
        }
        let mut line = match serde_json::to_string(&entry) {
            Ok(l) => l,
            Err(e) => {
                tracing::error!("cannot encode an audit entry: {e}");
                return;
            }
        };
        line.push('\n');
        let mut file = self.file.lock().unwrap_or_else(|e| e.into_inner());
        if file.is_none() {
            match OpenOptions::new()
                .create(true)
                .append(true)
                .open(&self.path)
            {
                Ok(f) => *file = Some(f),
                Err(e) => {
                    tracing::error!(path = %self.path.display(), "cannot open the audit log: {e}");
                    return;
                }
            }
        }
        let f = file.as_mut().expect("opened above");
        if let Err(e) = f.write_all(line.as_bytes()).and_then(|_| f.flush()) {
            tracing::error!(path = %self.path.display(), "cannot write the audit log: {e}");
        }
    }
}

/// Now, as RFC 3339 UTC with milliseconds.
pub fn now() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

/// The host part of an endpoint URL.
pub fn endpoint_host(url: &str) -> String {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    let host = rest.split(['/', '?', '#']).next().unwrap_or(rest);
    // Drop any `user:password@`.
    host.rsplit_once('@').map_or(host, |(_, h)| h).to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoint_host_keeps_only_the_host() {
        assert_eq!(endpoint_host("https://api.openai.com/v1"), "api.openai.com");
        assert_eq!(
            endpoint_host("http://user:pw@127.0.0.1:8080/v1?x=1"),
            "127.0.0.1:8080"
        );
    }
}
