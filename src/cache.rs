//! The answer cache: every model answer kept by a hash of the request that produced it, so a
//! rerun after a rule change pays only for the calls it has never made.
//!
//! SQLite (through rusqlite, with its bundled library): one file, safe to share between
//! processes (a `--watch` host and a batch run at once) thanks to its locking and
//! write-ahead log, and never left unreadable by a crash (every write is a transaction). An
//! embedded key-value store like redb would be as fast for one process but refuses a second
//! process on the same file.
//!
//! The key is a SHA-256 of the canonical request: function, back end, model, system prompt,
//! prompt (for the cloud, as the egress guard passed it), schema, `max_tokens`, temperature,
//! thinking. Answers sampled at a temperature above 0 are cached too: the cache is a record of
//! what was answered (`[cache] local = "off"` for fresh samples).

use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Duration;

use rusqlite::{params, Connection, OptionalExtension};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use crate::models::{ModelRequest, ModelResponse, Usage};

#[derive(Debug, thiserror::Error)]
pub enum CacheError {
    #[error("cannot use the answer cache `{path}`: {message}\nhint: pass another file with --cache FILE, or --cache off")]
    Open { path: PathBuf, message: String },
    #[error("invalid [cache] {key} = `{value}`\nhint: use off, read, write or read-write")]
    Mode { key: &'static str, value: String },
}

/// What the cache may do for one function.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Off,
    Read,
    Write,
    ReadWrite,
}

impl Mode {
    pub fn parse(key: &'static str, value: Option<&str>) -> Result<Mode, CacheError> {
        Ok(match value {
            None | Some("read-write") => Mode::ReadWrite,
            Some("off") => Mode::Off,
            Some("read") => Mode::Read,
            Some("write") => Mode::Write,
            Some(other) => {
                return Err(CacheError::Mode {
                    key,
                    value: other.to_owned(),
                })
            }
        })
    }
    pub fn reads(self) -> bool {
        matches!(self, Mode::Read | Mode::ReadWrite)
    }
    pub fn writes(self) -> bool {
        matches!(self, Mode::Write | Mode::ReadWrite)
    }
}

/// `[cache]`.
#[derive(Debug, Default, Clone, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CacheFile {
    /// The cache file [default: `.hybrid/cache.db` in the folder of `--out`, else here].
    pub path: Option<PathBuf>,
    /// `off`, `read`, `write` or `read-write` (the default) for `local()` calls.
    pub local: Option<String>,
    /// The same for `cloud()` calls.
    pub cloud: Option<String>,
}

/// An open cache and what it may do per function.
pub struct AnswerCache {
    path: PathBuf,
    db: Mutex<Connection>,
    pub local: Mode,
    pub cloud: Mode,
}

fn open_error(path: &Path, e: impl std::fmt::Display) -> CacheError {
    CacheError::Open {
        path: path.to_owned(),
        message: e.to_string(),
    }
}

impl AnswerCache {
    pub fn open(path: &Path, local: Mode, cloud: Mode) -> Result<AnswerCache, CacheError> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|e| open_error(path, e))?;
        }
        let db = Connection::open(path).map_err(|e| open_error(path, e))?;
        db.busy_timeout(Duration::from_secs(10))
            .map_err(|e| open_error(path, e))?;
        db.pragma_update(None, "journal_mode", "WAL")
            .map_err(|e| open_error(path, e))?;
        // With the write-ahead log, NORMAL never corrupts the file; a power cut may forget the
        // last answers, which a cache can afford (a full sync per answer cannot be).
        db.pragma_update(None, "synchronous", "NORMAL")
            .map_err(|e| open_error(path, e))?;
        db.execute_batch(
            "CREATE TABLE IF NOT EXISTS answers (
                key TEXT PRIMARY KEY,
                function TEXT NOT NULL,
                model TEXT NOT NULL,
                answer TEXT NOT NULL,
                stored_at INTEGER NOT NULL
            );",
        )
        .map_err(|e| open_error(path, e))?;
        Ok(AnswerCache {
            path: path.to_owned(),
            db: Mutex::new(db),
            local,
            cloud,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The key of a request to `model` on `backend` for `function`: each part hashed as it
    /// serialises, so a large schema is not copied on every call.
    pub fn key(function: &str, backend: &str, model: &str, req: &ModelRequest) -> String {
        /// Feeds what serde writes straight into the hash.
        struct Hashing<'a>(&'a mut Sha256);
        impl std::io::Write for Hashing<'_> {
            fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
                self.0.update(buf);
                Ok(buf.len())
            }
            fn flush(&mut self) -> std::io::Result<()> {
                Ok(())
            }
        }
        let mut hash = Sha256::new();
        let schema = req.schema.as_ref().map(|s| &*s.json);
        let images: Vec<&str> = req.images.iter().map(|i| i.sha256.as_str()).collect();
        let parts = (
            function,
            backend,
            model,
            &req.system,
            &req.prompt,
            schema,
            req.max_tokens,
            req.temperature,
            req.thinking,
            images,
        );
        serde_json::to_writer(Hashing(&mut hash), &parts).expect("a request always serialises");
        hash.finalize().iter().map(|b| format!("{b:02x}")).collect()
    }

    /// The answer stored under `key`, if any (a broken entry is a miss).
    pub fn get(&self, key: &str) -> Option<ModelResponse> {
        let db = self.db.lock().unwrap_or_else(|e| e.into_inner());
        let text: Option<String> = db
            .query_row(
                "SELECT answer FROM answers WHERE key = ?1",
                params![key],
                |row| row.get(0),
            )
            .optional()
            .unwrap_or_else(|e| {
                tracing::warn!(cache = %self.path.display(), "answer cache read failed: {e}");
                None
            });
        let v: Value = serde_json::from_str(&text?).ok()?;
        let n = |k: &str| v["usage"][k].as_u64().unwrap_or(0);
        let s = |k: &str| v[k].as_str().map(str::to_owned);
        Some(ModelResponse {
            text: s("text")?,
            model: s("model").unwrap_or_default(),
            usage: Usage {
                prompt_tokens: n("prompt_tokens"),
                completion_tokens: n("completion_tokens"),
                cached_tokens: n("cached_tokens"),
                reasoning_tokens: n("reasoning_tokens"),
                tokens_per_second: None,
            },
            request_id: s("request_id"),
            reasoning: s("reasoning"),
            service_tier: s("service_tier"),
            ..ModelResponse::default()
        })
    }

    /// Stores `answer` under `key` (the latest answer wins).
    pub fn put(&self, key: &str, function: &str, answer: &ModelResponse) {
        let value = json!({
            "text": answer.text,
            "model": answer.model,
            "usage": {
                "prompt_tokens": answer.usage.prompt_tokens,
                "completion_tokens": answer.usage.completion_tokens,
                "cached_tokens": answer.usage.cached_tokens,
                "reasoning_tokens": answer.usage.reasoning_tokens,
            },
            "request_id": answer.request_id,
            "reasoning": answer.reasoning,
            "service_tier": answer.service_tier,
        });
        let db = self.db.lock().unwrap_or_else(|e| e.into_inner());
        if let Err(e) = db.execute(
            "INSERT OR REPLACE INTO answers (key, function, model, answer, stored_at) VALUES (?1, ?2, ?3, ?4, ?5)",
            params![key, function, answer.model, value.to_string(), chrono::Utc::now().timestamp()],
        ) {
            tracing::warn!(cache = %self.path.display(), "answer cache write failed: {e}");
        }
    }

    /// Entries by function and model: (function, model, entries, oldest, newest) with times
    /// as Unix seconds.
    pub fn stats(&self) -> Result<Vec<(String, String, i64, i64, i64)>, CacheError> {
        let db = self.db.lock().unwrap_or_else(|e| e.into_inner());
        let mut stmt = db
            .prepare("SELECT function, model, COUNT(*), MIN(stored_at), MAX(stored_at) FROM answers GROUP BY function, model ORDER BY function, model")
            .map_err(|e| open_error(&self.path, e))?;
        let rows = stmt
            .query_map([], |r| {
                Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?))
            })
            .map_err(|e| open_error(&self.path, e))?;
        rows.collect::<Result<_, _>>()
            .map_err(|e| open_error(&self.path, e))
    }

    /// Drops entries stored more than `age` ago (all with `None`); returns how many.
    pub fn prune(&self, age: Option<Duration>) -> Result<usize, CacheError> {
        let cutoff = match age {
            Some(age) => chrono::Utc::now().timestamp() - age.as_secs() as i64,
            None => i64::MAX,
        };
        let db = self.db.lock().unwrap_or_else(|e| e.into_inner());
        let n = db
            .execute("DELETE FROM answers WHERE stored_at < ?1", params![cutoff])
            .map_err(|e| open_error(&self.path, e))?;
        let _ = db.execute_batch("VACUUM;");
        Ok(n)
    }
}

/// `30d`, `12h`, `90m`, `3600s`, or plain seconds.
pub fn parse_age(text: &str) -> Option<Duration> {
    let text = text.trim();
    let (number, unit) = text.split_at(
        text.find(|c: char| !c.is_ascii_digit())
            .unwrap_or(text.len()),
    );
    let n: u64 = number.parse().ok()?;
    let seconds = match unit {
        "" | "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        "w" => 604_800,
        _ => return None,
    };
    Some(Duration::from_secs(n * seconds))
}

/// Where the cache lives by default: `.hybrid/cache.db` in `dir`.
pub fn default_path(dir: &Path) -> PathBuf {
    dir.join(".hybrid").join("cache.db")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(prompt: &str) -> ModelRequest {
        ModelRequest {
            system: Some("s".into()),
            prompt: prompt.into(),
            schema: None,
            max_tokens: Some(10),
            ..Default::default()
        }
    }

    #[test]
    fn answers_round_trip_and_keys_follow_the_request() {
        let dir = tempfile::tempdir().unwrap();
        let cache = AnswerCache::open(
            &dir.path().join("c/cache.db"),
            Mode::ReadWrite,
            Mode::ReadWrite,
        )
        .unwrap();
        let key = AnswerCache::key("cloud", "openai", "gpt-5.4", &request("a"));
        assert_ne!(
            key,
            AnswerCache::key("cloud", "openai", "gpt-5.4", &request("b"))
        );
        assert_ne!(
            key,
            AnswerCache::key("local", "openai", "gpt-5.4", &request("a"))
        );
        assert!(cache.get(&key).is_none());
        let answer = ModelResponse {
            text: "{\"x\":1}".into(),
            model: "gpt-5.4".into(),
            usage: Usage {
                prompt_tokens: 10,
                completion_tokens: 2,
                ..Usage::default()
            },
            request_id: Some("req_1".into()),
            retries: 3,
            reasoning: None,
            service_tier: Some("default".into()),
        };
        cache.put(&key, "cloud", &answer);
        let got = cache.get(&key).unwrap();
        assert_eq!(
            (
                got.text.as_str(),
                got.usage.prompt_tokens,
                got.request_id.as_deref()
            ),
            ("{\"x\":1}", 10, Some("req_1"))
        );
        assert_eq!(got.retries, 0);
        // A second process-like handle on the same file sees it.
        let other =
            AnswerCache::open(&dir.path().join("c/cache.db"), Mode::Read, Mode::Read).unwrap();
        assert!(other.get(&key).is_some());
        assert_eq!(other.stats().unwrap()[0].2, 1);
        assert_eq!(other.prune(Some(Duration::from_secs(3600))).unwrap(), 0);
        assert_eq!(other.prune(None).unwrap(), 1);
        assert!(cache.get(&key).is_none());
        assert_eq!(parse_age("30d"), Some(Duration::from_secs(30 * 86_400)));
        assert_eq!(parse_age("soon"), None);
    }
}
