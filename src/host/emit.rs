//! `emit(stream, value)`: appends `value` as one JSON line to `STREAM.jsonl` in the output
//! folder — a review queue an operator works through, a fine-tuning dataset, anything a
//! pipeline produces beside its result. Flushed per line; shared by every document.

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::PathBuf;
use std::sync::Mutex;

use rhai::{Dynamic, Engine, NativeCallContext};

use super::error::host_error;
use super::DocContext;

pub fn register(engine: &mut Engine) {
    rhai::FuncRegistration::new("emit")
        .with_params_info(["stream: &str", "value: ?", "()"])
        .with_comments(["/// Append `value` as one JSON line to `STREAM.jsonl` beside the results (`--emit-dir`):\n/// a review queue, a fine-tuning export. Each line carries `_doc` and `_version`.\n///\n/// ```rhai\n/// emit(\"review_queue\", #{ id: doc.id, local: pair.local, cloud: pair.cloud });\n/// ```"])
        .register_into_engine(
        engine,
        |ctx: NativeCallContext,
         stream: &str,
         value: Dynamic|
         -> Result<(), Box<rhai::EvalAltResult>> {
            let doc = DocContext::of(&ctx)?;
            let pos = ctx.call_position();
            super::budget::check_value(&value, &doc.limits).map_err(|message| {
                host_error("limit", format!("emit(): {message}"), pos, |_| {})
            })?;
            let json = rhai::serde::from_dynamic::<serde_json::Value>(&value).map_err(|e| {
                host_error(
                    "usage",
                    format!("emit(): the value is not JSON-shaped: {e}"),
                    pos,
                    |_| {},
                )
            })?;
            // Each line says which document (and rules version) wrote it, so a consumer can
            // drop the lines of a document that was run again after a crash: a map gets
            // `_doc` and `_version` keys first, any other value is wrapped as `value`.
            let mut line = serde_json::Map::new();
            line.insert("_doc".into(), doc.document.id.clone().into());
            line.insert("_version".into(), doc.version.clone().into());
            match json {
                serde_json::Value::Object(fields) => line.extend(fields),
                other => {
                    line.insert("value".into(), other);
                }
            }
            let mut text = serde_json::to_string(&line)
                .map_err(|e| host_error("usage", format!("emit(): {e}"), pos, |_| {}))?;
            text.push('\n');
            let total = doc
                .emitted
                .fetch_add(text.len(), std::sync::atomic::Ordering::SeqCst)
                + text.len();
            if total > doc.limits.max_emit_bytes {
                return Err(super::error::budget_exceeded(
                    format!("the document emitted more than {} bytes\nhint: if the work is real, raise `max_emit_bytes` under [limits] in hybrid.toml", doc.limits.max_emit_bytes),
                    pos,
                ));
            }
            doc.services
                .streams
                .write_line(stream, &text)
                .map_err(|e| host_error("usage", format!("emit(): {e}"), pos, |_| {}))
        },
    );
}

/// The output folder's named JSONL streams.
pub struct Streams {
    dir: PathBuf,
    files: Mutex<HashMap<String, File>>,
}

impl Streams {
    pub fn new(dir: PathBuf) -> Streams {
        Streams {
            dir,
            files: Mutex::new(HashMap::new()),
        }
    }

    pub fn path(&self, stream: &str) -> PathBuf {
        self.dir.join(format!("{stream}.jsonl"))
    }

    /// Appends one line (ending in `\n`) with one write.
    pub fn write_line(&self, stream: &str, line: &str) -> Result<(), String> {
        let valid = !stream.is_empty()
            && stream.len() <= 64
            && stream
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
        if !valid {
            return Err(format!(
                "`{stream}` is not a stream name (letters, digits, `_` and `-`, up to 64)"
            ));
        }
        let mut files = self.files.lock().unwrap_or_else(|e| e.into_inner());
        if !files.contains_key(stream) {
            std::fs::create_dir_all(&self.dir)
                .map_err(|e| format!("cannot create `{}`: {e}", self.dir.display()))?;
            let path = self.path(stream);
            crate::sink::repair_tail(&path)
                .map_err(|e| format!("cannot repair `{}`: {e}", path.display()))?;
            let file = OpenOptions::new()
                .create(true)
                .append(true)
                .open(&path)
                .map_err(|e| format!("cannot open `{}`: {e}", path.display()))?;
            files.insert(stream.to_owned(), file);
        }
        let file = files.get_mut(stream).expect("opened above");
        file.write_all(line.as_bytes())
            .and_then(|_| file.flush())
            .map_err(|e| format!("cannot write `{stream}.jsonl`: {e}"))
    }
}
