//! The audit log: one JSON line for every payload that left, would have left (dry-run), or
//! was stopped (blocked) on its way to the cloud.
//!
//! Write-ahead: an `attempt` line (the body, or its hash, and its size) is appended before each
//! attempt leaves, and nothing is sent if it cannot be written; the call's outcome follows in
//! a second line. A crash mid-call leaves the attempt line, and the number of attempt lines
//! is the number of times a payload left. Append-only and flushed per line. It is what an auditor asks for
//! when a client contract has a data-residency clause: what left, when, for which document,
//! under which rules, to which host, at what cost.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use serde::Serialize;

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
    /// About to leave (written before each attempt; the outcome line follows).
    Attempt,
    Sent,
    Failed,
    Blocked,
    DryRun,
    /// Answered from the answer cache: nothing left.
    Cached,
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
    /// SHA-256 of each page image in the call (the images themselves are never written).
    #[serde(skip_serializing_if = "Vec::is_empty", default)]
    pub images: Vec<String>,
    /// The payload as sent (or as it would have been), unless the policy keeps only the hash.
    /// Its JSON text, written into the line as it is, last (serialising a parsed copy of
    /// every body again was a tenth of a cloud call's cost).
    #[serde(skip)]
    pub payload: Option<bytes::Bytes>,
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
    /// On an `attempt` line: which attempt (1 is the first, 2 the first retry).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub attempt: Option<u32>,
    /// On an outcome line: how many times the payload left.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub attempts: Option<u32>,
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
        // A line cut by a crash would swallow the next one: move it aside first.
        crate::sink::repair_tail(path).map_err(fail)?;
        Ok(AuditLog {
            path: path.to_owned(),
            file: Mutex::new(None),
            keep_payload,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Appends one line with one write and flushes it. An error is logged and returned: the
    /// caller decides whether a call may go ahead without its line (an attempt may not).
    pub fn write(&self, mut entry: Entry) -> Result<(), String> {
        if !self.keep_payload {
            entry.payload = None;
        }
        let mut line = match serde_json::to_vec(&entry) {
            Ok(l) => l,
            Err(e) => {
                tracing::error!("cannot encode an audit entry: {e}");
                return Err(format!("cannot encode an audit entry: {e}"));
            }
        };
        if let Some(payload) = &entry.payload {
            // Compact JSON from serde_json (no newline in it): `{...}` becomes
            // `{...,"payload":<body>}`.
            line.pop();
            line.extend_from_slice(b",\"payload\":");
            line.extend_from_slice(payload);
            line.push(b'}');
        }
        line.push(b'\n');
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
                    return Err(format!(
                        "cannot open the audit log `{}`: {e}",
                        self.path.display()
                    ));
                }
            }
        }
        let f = file.as_mut().expect("opened above");
        f.write_all(&line).and_then(|_| f.flush()).map_err(|e| {
            tracing::error!(path = %self.path.display(), "cannot write the audit log: {e}");
            format!("cannot write the audit log `{}`: {e}", self.path.display())
        })
    }
}

/// One cloud request on its way out: the exact body (its hash and size, and the body itself
/// for the first attempt line when the policy keeps payloads), and how often it has left.
pub struct Egress {
    log: Option<std::sync::Arc<AuditLog>>,
    template: Entry,
    /// The body as the log shows it (page images as their hashes).
    payload: bytes::Bytes,
    /// The body as it leaves.
    body: bytes::Bytes,
    attempts: std::sync::atomic::AtomicU32,
}

impl Egress {
    /// `body` is what will be sent, byte for byte; `payload` the same body as the log keeps
    /// it (the same bytes unless pages are attached); `template` names the document, rules
    /// version, model and endpoint.
    pub fn new(
        log: Option<std::sync::Arc<AuditLog>>,
        mut template: Entry,
        payload: bytes::Bytes,
        body: bytes::Bytes,
    ) -> Egress {
        template.payload_sha256 = crate::schemas::hash_hex(&body);
        template.bytes = body.len();
        Egress {
            log,
            template,
            payload,
            body,
            attempts: std::sync::atomic::AtomicU32::new(0),
        }
    }

    /// How many times the body has left so far.
    pub fn attempts(&self) -> u32 {
        self.attempts.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// The write-ahead line, before attempt `n` leaves with `sent`. An error means it must
    /// not leave. A body other than the checked one (the default-tier twin of a flex request)
    /// is written whole with its own hash.
    pub fn before_attempt(&self, n: u32, sent: &[u8]) -> Result<(), String> {
        self.attempts
            .fetch_max(n, std::sync::atomic::Ordering::SeqCst);
        let Some(log) = &self.log else {
            return Ok(());
        };
        let mut entry = self.template.clone();
        entry.time = now();
        entry.outcome = Outcome::Attempt;
        entry.attempt = Some(n);
        if sent == &*self.body {
            // The body once, with the first attempt; retries carry its hash.
            entry.payload = (n == 1).then(|| self.payload.clone());
        } else {
            entry.payload_sha256 = crate::schemas::hash_hex(sent);
            entry.bytes = sent.len();
            entry.payload = Some(bytes::Bytes::copy_from_slice(sent));
        }
        log.write(entry)
    }

    /// The outcome line. `keep_payload` for lines that are the only record of the body
    /// (dry-run: nothing left, so there was no attempt line).
    pub fn outcome(&self, outcome: Outcome, keep_payload: bool, fill: impl FnOnce(&mut Entry)) {
        let Some(log) = &self.log else {
            return;
        };
        let mut entry = self.template.clone();
        entry.time = now();
        entry.outcome = outcome;
        entry.payload = keep_payload.then(|| self.payload.clone());
        if outcome != Outcome::DryRun {
            entry.attempts = Some(self.attempts());
        }
        fill(&mut entry);
        let _ = log.write(entry);
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
