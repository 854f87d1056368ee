//! The Rhai side: the engine every pipeline script runs in, and the per-document context
//! its host functions (`local`, `cloud`, `validate`, `both`, `emit`, `sampled`) reach through.
//!
//! Rhai is synchronous, so each document runs on one of the runner's document threads and
//! host functions block until a model answers ([`wait`] says on which runtime). The document's context travels as the call's *tag*, so
//! one compiled engine serves every document at once.

mod both;
pub mod budget;
mod call;
mod cloud;
mod compare;
pub mod emit;
pub mod error;
mod local;
pub mod sample;
mod text;
mod validate;
mod wait;

use std::sync::{Arc, Mutex};
use std::time::Instant;

use rhai::{CallFnOptions, Dynamic, Engine, NativeCallContext, Position, Scope};
use serde_json::Value;
use tokio::runtime::Handle;

use crate::bundle::Bundle;
use crate::config::Limits;
use crate::documents::Document;
use crate::models::Backend;
use crate::record::{CallRecord, Record, RecordError};
use crate::schemas::{Schema, SchemaRegistry};

pub use call::Role;

/// The model back ends and the runtime host functions block on. Shared by every document.
pub struct Services {
    pub local: Arc<dyn Backend>,
    pub cloud: Arc<dyn Backend>,
    pub runtime: Handle,
    /// Checks every cloud payload before it leaves.
    pub guard: crate::guard::Guard,
    /// Where cloud payloads are recorded (none in `hybrid check`-like uses).
    pub audit: Option<Arc<crate::audit::AuditLog>>,
    pub pricing: crate::cost::Pricing,
    /// The cloud endpoint's host, for the audit log.
    pub cloud_endpoint: String,
    /// Where `emit(stream, value)` writes.
    pub streams: emit::Streams,
    /// The `[budget]` caps cloud calls are held against (none configured, or a dry run: none).
    pub spend: Option<Arc<crate::spend::Spend>>,
    /// The pipeline's script as named on the command line (for the prompt-cache key).
    pub pipeline: String,
    /// Model answers by request: read before a call, written after (per `[cache]` modes).
    pub cache: Option<Arc<crate::cache::AnswerCache>>,
    /// `--replay`: answer every call from the cache, call no model.
    pub replay: bool,
}

impl Services {
    pub fn backend(&self, role: Role) -> &Arc<dyn Backend> {
        match role {
            Role::Local => &self.local,
            Role::Cloud => &self.cloud,
        }
    }
}

/// What a host function knows about the document it is working for.
pub(crate) struct DocContext {
    pub document: Arc<Document>,
    /// What the document's cloud calls have sent, for the egress guard's overlap rule; built
    /// from the document at its first cloud call.
    pub window: Mutex<Option<crate::guard::overlap::Window>>,
    /// The rules version the document runs under.
    pub version: String,
    pub services: Arc<Services>,
    pub schemas: Arc<SchemaRegistry>,
    pub calls: Mutex<Vec<CallRecord>>,
    pub limits: Limits,
    /// Bytes this document has `emit`ted so far.
    pub emitted: std::sync::atomic::AtomicUsize,
    /// A cloud call of this document has got past the `[budget]` caps (it counts once toward
    /// the cloud share).
    pub counted_for_cloud: std::sync::atomic::AtomicBool,
}

impl DocContext {
    /// The context of the document this call belongs to.
    pub fn of(ctx: &NativeCallContext) -> Result<Arc<DocContext>, Box<rhai::EvalAltResult>> {
        ctx.tag()
            .and_then(|t| t.clone().try_cast::<Arc<DocContext>>())
            .ok_or_else(|| {
                error::host_error(
                    "not_configured",
                    format!("`{}` can only be called while a document is processed (inside `fn process(doc)`)", ctx.fn_name()),
                    ctx.call_position(),
                    |_| {},
                )
            })
    }

    /// A schema argument: a name in the schemas folder, or an inline map.
    pub fn schema(
        &self,
        arg: Dynamic,
        pos: Position,
    ) -> Result<Arc<Schema>, Box<rhai::EvalAltResult>> {
        let resolved = if arg.is_string() {
            self.schemas.named(&arg.to_string())
        } else if arg.is_map() {
            budget::check_value(&arg, &self.limits)
                .map_err(|message| error::host_error("limit", message, pos, |_| {}))?;
            let json = rhai::serde::from_dynamic::<Value>(&arg).map_err(|e| {
                error::host_error(
                    "schema",
                    format!("the inline schema is not JSON-shaped: {e}"),
                    pos,
                    |_| {},
                )
            })?;
            self.schemas.inline(json)
        } else {
            return Err(error::host_error(
                "schema",
                format!("a schema is a name or a map, not {}", arg.type_name()),
                pos,
                |_| {},
            ));
        };
        resolved.map_err(|e| error::host_error("schema", e.to_string(), pos, |_| {}))
    }
}

/// A Rhai engine with the host functions, the configured limits, and `print`/`debug` routed
/// to the log.
pub fn new_engine(limits: &Limits) -> Engine {
    let mut engine = Engine::new();
    // A page image is a handle: its page number and size, never its bytes.
    engine
        .register_type_with_name::<crate::images::PageImage>("Image")
        .register_get("page", |i: &mut crate::images::PageImage| i.page as i64)
        .register_get("width", |i: &mut crate::images::PageImage| i.width as i64)
        .register_get("height", |i: &mut crate::images::PageImage| i.height as i64)
        .register_get("sha256", |i: &mut crate::images::PageImage| {
            i.sha256.clone()
        })
        .register_fn("to_string", |i: &mut crate::images::PageImage| {
            format!("{i:?}")
        })
        .register_fn("to_debug", |i: &mut crate::images::PageImage| {
            format!("{i:?}")
        });
    // Rhai's own string/array/map size limits re-measure a whole array on every `push`
    // (quadratic); they stay off, and `budget` bounds memory per document in O(1) per
    // operation and checks sizes and depth where values reach the host.
    engine
        .set_max_operations(limits.max_operations)
        .set_max_call_levels(limits.max_call_levels)
        .set_max_expr_depths(limits.max_expr_depth, limits.max_expr_depth)
        .set_max_string_size(0)
        .set_max_array_size(0)
        .set_max_map_size(0);
    engine.on_progress(|_| budget::over_budget());
    engine.on_print(|text| {
        if budget::allow_print(text.len()) {
            tracing::info!(target: "hybrid::script", "{text}")
        }
    });
    engine.on_debug(|text, source, pos| {
        if !budget::allow_print(text.len()) {
            return;
        }
        tracing::debug!(target: "hybrid::script", source = source.unwrap_or("-"), line = pos.line().unwrap_or(0), "{text}")
    });
    // Functions in Rhai cannot see the script's variables, but rules are top-level
    // constants: let `fn process` read `ESCALATE_BELOW` as plainly as `global::ESCALATE_BELOW`.
    #[allow(deprecated)] // "volatile", not deprecated: rhai marks it so to warn of change
    engine.on_var(|name, index, ctx| {
        if index > 0 || ctx.scope().contains(name) {
            return Ok(None);
        }
        let constants = ctx.global_runtime_state().constants.as_ref();
        Ok(constants.and_then(|c| c.read().ok().and_then(|c| c.get(name).cloned())))
    });
    compare::register(&mut engine, limits.max_value_depth);
    local::register(&mut engine);
    cloud::register(&mut engine);
    validate::register(&mut engine);
    both::register(&mut engine);
    emit::register(&mut engine);
    sample::register(&mut engine);
    text::register(&mut engine);
    engine
}

/// The script's `doc`: the document's fields, its text shared (not copied: a long contract
/// is read once), and `doc.images`, the page images of a scan or photo (empty for text).
fn doc_value(doc: &Document) -> Result<Dynamic, Box<rhai::EvalAltResult>> {
    let mut map = rhai::Map::new();
    map.insert("id".into(), doc.id.clone().into());
    if let Some(path) = &doc.path {
        map.insert("path".into(), path.clone().into());
    }
    map.insert("name".into(), doc.name.clone().into());
    map.insert("text".into(), doc.text.clone().into());
    map.insert("kind".into(), doc.kind.clone().into());
    map.insert("meta".into(), rhai::serde::to_dynamic(&doc.meta)?);
    let images: rhai::Array = doc.images.iter().cloned().map(Dynamic::from).collect();
    map.insert("images".into(), images.into());
    Ok(map.into())
}

/// Runs `process(doc)` for one document and turns whatever happens into a record.
/// Never panics on script or model failures: those are the record's `error`.
pub fn run_document(bundle: &Bundle, services: &Arc<Services>, doc: &Arc<Document>) -> Record {
    let started = Instant::now();
    if let Some(spend) = &services.spend {
        spend.document_started();
    }
    let ctx = Arc::new(DocContext {
        document: doc.clone(),
        window: Mutex::new(None),
        version: bundle.version.clone(),
        services: services.clone(),
        schemas: bundle.schemas.clone(),
        calls: Mutex::new(Vec::new()),
        limits: bundle.limits.clone(),
        emitted: std::sync::atomic::AtomicUsize::new(0),
        counted_for_cloud: std::sync::atomic::AtomicBool::new(false),
    });
    let watch = budget::Watch::start(&bundle.limits);
    let outcome = doc_value(doc).and_then(|doc_value| {
        let mut scope = Scope::new();
        let options = CallFnOptions::new().with_tag(ctx.clone());
        bundle.engine.call_fn_with_options::<Dynamic>(
            options,
            &mut scope,
            &bundle.ast,
            "process",
            (doc_value,),
        )
    });
    drop(watch);
    let (result, error) = match outcome {
        Ok(value) => match budget::check_value(&value, &bundle.limits)
            .map_err(|message| ("limit", message))
            .and_then(|()| {
                rhai::serde::from_dynamic::<Value>(&value).map_err(|e| {
                    (
                        "script",
                        format!("`process` returned a value that is not JSON-shaped: {e}"),
                    )
                })
            }) {
            Ok(v) => (Some(v), None),
            Err((kind, message)) => (
                None,
                Some(RecordError {
                    snippet: None,
                    kind: kind.into(),
                    message,
                    position: None,
                }),
            ),
        },
        Err(err) => {
            let mut e = error::classify(&err, &bundle.script_name);
            e.snippet = e.position.as_deref().and_then(|p| bundle.snippet(p));
            (None, Some(e))
        }
    };
    if let Some(e) = &error {
        tracing::warn!(doc = %doc.id, kind = %e.kind, position = e.position.as_deref().unwrap_or("-"), "document failed: {}", e.message);
    }
    let calls = std::mem::take(&mut *ctx.calls.lock().unwrap_or_else(|e| e.into_inner()));
    Record {
        id: doc.id.clone(),
        source: doc.source(),
        ok: error.is_none(),
        result,
        error,
        calls,
        version: bundle.version.clone(),
        elapsed_ms: started.elapsed().as_millis() as u64,
        at: crate::audit::now(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_scripts_doc_has_every_field_and_shares_the_text() {
        let doc = crate::documents::from_json(
            br#"{"id": "c-1", "text": "Cl\u00e1usula primera.", "meta": {"cliente": "Andino", "pages": 2}}"#,
            "inbox/c-1.jsonl",
        )
        .unwrap();
        let value = doc_value(&doc).unwrap();
        let map = value.read_lock::<rhai::Map>().unwrap();
        // What the document serialises to, and `images`.
        let serialised = rhai::serde::to_dynamic(&doc).unwrap();
        let mut expected: Vec<String> = serialised
            .read_lock::<rhai::Map>()
            .unwrap()
            .keys()
            .map(|k| k.to_string())
            .collect();
        expected.push("images".into());
        expected.sort();
        let keys: Vec<String> = map.keys().map(|k| k.to_string()).collect();
        assert_eq!(keys, expected);
        let text = map["text"].clone().into_immutable_string().unwrap();
        assert_eq!(text.as_str(), "Cláusula primera.");
        assert!(std::ptr::eq(text.as_str(), doc.text.as_str()), "a copy");
        assert_eq!(
            rhai::serde::from_dynamic::<Value>(&map["meta"]).unwrap(),
            serde_json::json!({"cliente": "Andino", "pages": 2})
        );
    }
}
