//! What `local(...)` and `cloud(...)` share: reading the script's arguments, resolving the
//! schema, guarding what goes to the cloud, blocking on the back end, checking the answer,
//! and recording (and, for the cloud, auditing) the call.
//!
//! Every failure comes back to the script as a catchable error with a `kind`; an answer that
//! should match a schema is parsed and validated here, so scripts never parse free text.

use std::sync::Arc;
use std::time::Instant;

use rhai::{Dynamic, EvalAltResult, Map, NativeCallContext, Position};
use serde_json::{json, Value};

use super::error::host_error;
use super::DocContext;
use crate::audit::{self, Outcome};
use crate::guard::{Parts, Redaction};
use crate::models::{
    Backend, ErrorKind, ModelError, ModelRequest, ModelResponse, RequestSchema, Usage,
};
use crate::record::CallRecord;
use crate::schemas::{hash_hex, Schema};

/// Which script function a call came through.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Local,
    Cloud,
}

impl Role {
    pub fn fn_name(self) -> &'static str {
        match self {
            Role::Local => "local",
            Role::Cloud => "cloud",
        }
    }
}

const OPTIONS: &[&str] = &[
    "prompt",
    "input",
    "system",
    "schema",
    "max_tokens",
    "temperature",
    "thinking",
];

type RhaiResult<T> = Result<T, Box<EvalAltResult>>;

/// The script's arguments, read and checked.
struct Args {
    parts: Parts,
    schema: Option<Dynamic>,
    max_tokens: Option<u32>,
    temperature: Option<f64>,
    thinking: bool,
}

/// A call ready to go: arguments read, schema resolved, payload through the guard.
struct Prepared {
    role: Role,
    pos: Position,
    backend: Arc<dyn Backend>,
    schema: Option<Arc<Schema>>,
    parts: Parts,
    redactions: Vec<Redaction>,
    request: ModelRequest,
}

/// `local(prompt)`, `local(options)` and `local(prompt, schema)` (and the same for `cloud`).
pub fn call(
    ctx: &NativeCallContext,
    role: Role,
    first: Dynamic,
    schema: Option<Dynamic>,
) -> RhaiResult<Dynamic> {
    let doc = DocContext::of(ctx)?;
    let prepared = prepare(&doc, role, first, schema, ctx.call_position())?;
    let outcome = doc.services.runtime.block_on(execute(&prepared));
    finish(&doc, prepared, outcome)
}

/// `both(local_options, cloud_options)`: both calls in flight at once; the pair takes about
/// as long as the slower one. Returns `#{ local, cloud, local_error, cloud_error }` — a side
/// that failed has `()` as its value and its error map (`kind`, `message`, ...) beside it,
/// so one failure never loses the other answer.
pub fn both(ctx: &NativeCallContext, local: Dynamic, cloud: Dynamic) -> RhaiResult<Map> {
    let doc = DocContext::of(ctx)?;
    let pos = ctx.call_position();
    let mut out = Map::new();
    let local = prepare(&doc, Role::Local, local, None, pos);
    let cloud = prepare(&doc, Role::Cloud, cloud, None, pos);
    let (l, c) = doc.services.runtime.block_on(async {
        tokio::join!(
            execute_prepared(local.as_ref().ok()),
            execute_prepared(cloud.as_ref().ok())
        )
    });
    for (name, prepared, outcome) in [("local", local, l), ("cloud", cloud, c)] {
        let result = prepared.and_then(|p| finish(&doc, p, outcome.expect("prepared calls ran")));
        match result {
            Ok(value) => {
                out.insert(name.into(), value);
                out.insert(format!("{name}_error").into(), Dynamic::UNIT);
            }
            Err(err) => {
                let error = match *err {
                    EvalAltResult::ErrorRuntime(value, _) => value,
                    other => other.to_string().into(),
                };
                out.insert(name.into(), Dynamic::UNIT);
                out.insert(format!("{name}_error").into(), error);
            }
        }
    }
    Ok(out)
}

fn prepare(
    doc: &DocContext,
    role: Role,
    first: Dynamic,
    schema: Option<Dynamic>,
    pos: Position,
) -> RhaiResult<Prepared> {
    let args = read_args(role, first, schema, pos)?;
    let schema = match args.schema {
        Some(s) => Some(doc.schema(s, pos)?),
        None => None,
    };
    let backend = doc.services.backend(role).clone();
    let mut parts = args.parts;

    // Nothing leaves for the cloud before the guard has seen it.
    let mut redactions = Vec::new();
    if role == Role::Cloud {
        match doc.services.guard.check(&mut parts, &doc.source_text) {
            Ok(r) => redactions = r,
            Err(blocked) => {
                tracing::warn!(doc = %doc.doc_id, rule = %blocked.rule, field = %blocked.field, "cloud call blocked");
                let payload = payload_json(&parts, schema.as_deref());
                // What was stopped is exactly what must not be written down: hash only.
                doc.audit(backend.model(), Outcome::Blocked, &payload, |e| {
                    e.rule = Some(blocked.rule.clone());
                    e.field = Some(blocked.field.clone());
                    e.payload = None;
                });
                doc.push_call(CallRecord {
                    error: Some("blocked".into()),
                    ..CallRecord::new(
                        role.fn_name(),
                        backend.name(),
                        backend.model(),
                        schema.as_deref(),
                    )
                });
                return Err(host_error(
                    "blocked",
                    format!("cloud() {blocked}"),
                    pos,
                    |m| {
                        m.insert("function".into(), "cloud".into());
                        m.insert("rule".into(), blocked.rule.clone().into());
                        m.insert("field".into(), blocked.field.clone().into());
                    },
                ));
            }
        }
    }
    let request = ModelRequest {
        system: parts.system.clone(),
        prompt: prompt_text(&parts),
        schema: schema.as_ref().map(|s| RequestSchema {
            name: s.name.clone(),
            json: s.json.clone(),
            not_strict: s.strict.clone().err(),
        }),
        max_tokens: args.max_tokens,
        temperature: args.temperature,
        thinking: args.thinking,
    };
    Ok(Prepared {
        role,
        pos,
        backend,
        schema,
        parts,
        redactions,
        request,
    })
}

/// What came back, and how long it took.
struct Reply {
    result: Result<ModelResponse, ModelError>,
    ms: u64,
}

async fn execute(p: &Prepared) -> Reply {
    let started = Instant::now();
    let result = p.backend.complete(&p.request).await;
    Reply {
        result,
        ms: started.elapsed().as_millis() as u64,
    }
}

async fn execute_prepared(p: Option<&Prepared>) -> Option<Reply> {
    match p {
        Some(p) => Some(execute(p).await),
        None => None,
    }
}

/// Checks the answer, records (and for the cloud, audits) the call, and hands the script its
/// value or a catchable error.
fn finish(doc: &DocContext, p: Prepared, outcome: Reply) -> RhaiResult<Dynamic> {
    let Prepared {
        role,
        pos,
        backend,
        schema,
        parts,
        redactions,
        request,
    } = p;
    let dry_run = backend.name() == "dry-run";
    let result = outcome
        .result
        .and_then(|resp| decode(resp, schema.as_deref(), dry_run, request.thinking));

    let pricing = &doc.services.pricing;
    let mut record = CallRecord::new(
        role.fn_name(),
        backend.name(),
        backend.model(),
        schema.as_deref(),
    );
    record.ms = outcome.ms;
    record.dry_run = dry_run;
    record.redactions = redactions.clone();
    match &result {
        Ok((resp, _)) => {
            record.ok = true;
            record.model = resp.model.clone();
            record.usage = resp.usage;
            record.retries = resp.retries;
            record.request_id = resp.request_id.clone();
        }
        Err(err) => {
            record.error = Some(err.kind.as_str().to_owned());
            record.usage = err.usage.unwrap_or_default();
            record.retries = err.retries;
            record.request_id = err.request_id.clone();
        }
    }
    record.cost_usd = match role {
        Role::Cloud => pricing.cloud_cost(&record.model, &record.usage),
        Role::Local => pricing
            .local
            .has_rate()
            .then(|| pricing.local.call_cost(outcome.ms)),
    };

    if role == Role::Cloud {
        let payload = payload_json(&parts, schema.as_deref());
        let outcome_kind = match (&result, dry_run) {
            (_, true) => Outcome::DryRun,
            (Ok(_), false) => Outcome::Sent,
            (Err(_), false) => Outcome::Failed,
        };
        doc.audit(&record.model, outcome_kind, &payload, |e| {
            e.prompt_tokens = record.usage.prompt_tokens;
            e.completion_tokens = record.usage.completion_tokens;
            e.estimated = dry_run;
            e.cost_usd = record.cost_usd;
            e.redactions = redactions;
            e.request_id = record.request_id.clone();
            e.error = record.error.clone();
        });
    }
    doc.push_call(record);

    match result {
        Ok((_, value)) => Ok(value),
        Err(err) => Err(model_error(role, backend.model(), err, pos)),
    }
}

fn read_args(
    role: Role,
    first: Dynamic,
    schema: Option<Dynamic>,
    pos: Position,
) -> RhaiResult<Args> {
    let usage_error = |message: String| {
        host_error(
            "usage",
            format!("{}(): {message}", role.fn_name()),
            pos,
            |m| {
                m.insert("function".into(), role.fn_name().into());
            },
        )
    };
    let mut args = Args {
        parts: Parts::default(),
        schema,
        max_tokens: None,
        temperature: None,
        thinking: false,
    };
    if first.is_string() {
        args.parts.prompt = Some(first.into_string().unwrap_or_default());
        return Ok(args);
    }
    if !first.is_map() {
        return Err(usage_error(format!(
            "expected a prompt string or an options map, not {}",
            first.type_name()
        )));
    }
    if args.schema.is_some() {
        return Err(usage_error(
            "give the schema inside the options map, not as a second argument".into(),
        ));
    }
    let options = first.cast::<Map>();
    if let Some(unknown) = options.keys().find(|k| !OPTIONS.contains(&k.as_str())) {
        return Err(usage_error(format!(
            "unknown option `{unknown}`; the options are {}",
            OPTIONS.join(", ")
        )));
    }
    let get = |key: &str| options.get(key).filter(|v| !v.is_unit());
    let text = |key: &str| -> RhaiResult<Option<String>> {
        match get(key) {
            None => Ok(None),
            Some(v) if v.is_string() => Ok(Some(v.to_string())),
            Some(v) => Err(usage_error(format!(
                "`{key}` must be a string, not {}",
                v.type_name()
            ))),
        }
    };
    args.parts.prompt = text("prompt")?;
    args.parts.system = text("system")?;
    args.parts.input = match get("input") {
        Some(v) => Some(
            rhai::serde::from_dynamic::<Value>(v)
                .map_err(|e| usage_error(format!("`input` cannot be sent as JSON: {e}")))?,
        ),
        None => None,
    };
    if args.parts.prompt.is_none() && args.parts.input.is_none() {
        return Err(usage_error("give a `prompt` or an `input`".into()));
    }
    if let Some(v) = get("max_tokens") {
        let n = v
            .as_int()
            .map_err(|_| usage_error("`max_tokens` must be an integer".into()))?;
        if n <= 0 || n > u32::MAX as i64 {
            return Err(usage_error(
                "`max_tokens` must be a positive integer".into(),
            ));
        }
        args.max_tokens = Some(n as u32);
    }
    if let Some(v) = get("temperature") {
        let t = v
            .as_float()
            .or_else(|_| v.as_int().map(|i| i as f64))
            .map_err(|_| usage_error("`temperature` must be a number".into()))?;
        args.temperature = Some(t);
    }
    if let Some(v) = get("thinking") {
        args.thinking = v
            .as_bool()
            .map_err(|_| usage_error("`thinking` must be true or false".into()))?;
    }
    args.schema = get("schema").cloned();
    Ok(args)
}

/// The user message: the prompt, then the input as JSON.
fn prompt_text(parts: &Parts) -> String {
    let input = parts.input.as_ref().map(|i| match i {
        Value::String(s) => s.clone(),
        other => serde_json::to_string_pretty(other).unwrap_or_default(),
    });
    match (&parts.prompt, input) {
        (Some(p), Some(i)) => format!("{p}\n\n{i}"),
        (Some(p), None) => p.clone(),
        (None, Some(i)) => i,
        (None, None) => String::new(),
    }
}

/// What the audit log keeps of a payload: the messages as they leave, and the schema's name.
fn payload_json(parts: &Parts, schema: Option<&Schema>) -> Value {
    let mut messages = Vec::new();
    if let Some(system) = &parts.system {
        messages.push(json!({"role": "system", "content": system}));
    }
    messages.push(json!({"role": "user", "content": prompt_text(parts)}));
    json!({"messages": messages, "schema": schema.map(|s| s.name.clone())})
}

impl DocContext {
    fn push_call(&self, record: CallRecord) {
        self.calls
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(record);
    }

    fn audit(
        &self,
        model: &str,
        outcome: Outcome,
        payload: &Value,
        fill: impl FnOnce(&mut audit::Entry),
    ) {
        let Some(log) = &self.services.audit else {
            return;
        };
        let text = payload.to_string();
        let mut entry = audit::Entry {
            time: audit::now(),
            document: self.doc_id.clone(),
            version: self.version.clone(),
            model: model.to_owned(),
            endpoint: self.services.cloud_endpoint.clone(),
            outcome,
            rule: None,
            field: None,
            payload: Some(payload.clone()),
            payload_sha256: hash_hex(text.as_bytes()),
            bytes: text.len(),
            prompt_tokens: 0,
            completion_tokens: 0,
            estimated: false,
            cost_usd: None,
            redactions: Vec::<Redaction>::new(),
            request_id: None,
            error: None,
        };
        fill(&mut entry);
        log.write(entry);
    }
}

/// Turns a back end's answer into a script value: the text, or — with a schema — the parsed
/// and validated JSON. A dry-run placeholder is not validated: it is marked, not real.
fn decode(
    resp: ModelResponse,
    schema: Option<&Schema>,
    dry_run: bool,
    thinking: bool,
) -> Result<(ModelResponse, Dynamic), ModelError> {
    let Some(schema) = schema else {
        // With thinking on, the script gets the reasoning beside the answer.
        let value: Dynamic = if thinking {
            let mut m = Map::new();
            m.insert("answer".into(), resp.text.clone().into());
            m.insert(
                "reasoning".into(),
                resp.reasoning.clone().unwrap_or_default().into(),
            );
            m.into()
        } else {
            resp.text.clone().into()
        };
        return Ok((resp, value));
    };
    let fail = |resp: &ModelResponse, message: String| {
        let mut e =
            ModelError::new(ErrorKind::InvalidOutput, message).with_partial(resp.text.clone());
        e.usage = Some(resp.usage);
        e.request_id = resp.request_id.clone();
        e.retries = resp.retries;
        e
    };
    let value: Value = match serde_json::from_str(strip_fences(&resp.text)) {
        Ok(v) => v,
        Err(e) => {
            return Err(fail(
                &resp,
                format!(
                    "the answer is not JSON ({e}), though schema `{}` was asked for",
                    schema.name
                ),
            ))
        }
    };
    let violations = if dry_run {
        Vec::new()
    } else {
        schema.validate(&value)
    };
    if !violations.is_empty() {
        let listed: Vec<String> = violations
            .iter()
            .take(5)
            .map(|v| {
                format!(
                    "`{}`: {}",
                    if v.path.is_empty() { "/" } else { &v.path },
                    v.message
                )
            })
            .collect();
        return Err(fail(
            &resp,
            format!(
                "the answer does not match schema `{}`: {}",
                schema.name,
                listed.join("; ")
            ),
        ));
    }
    let dynamic = rhai::serde::to_dynamic(&value).map_err(|e| {
        fail(
            &resp,
            format!("the answer cannot be handed to the script: {e}"),
        )
    })?;
    Ok((resp, dynamic))
}

/// Some servers wrap JSON in a Markdown fence even when asked not to.
fn strip_fences(text: &str) -> &str {
    let t = text.trim();
    let Some(rest) = t.strip_prefix("```") else {
        return t;
    };
    let rest = rest.strip_prefix("json").unwrap_or(rest);
    rest.strip_suffix("```").unwrap_or(rest).trim()
}

fn model_error(role: Role, model: &str, err: ModelError, pos: Position) -> Box<EvalAltResult> {
    let message = format!(
        "{}() failed ({}): {}",
        role.fn_name(),
        err.kind.as_str(),
        err.message
    );
    host_error(err.kind.as_str(), message, pos, |m| {
        m.insert("function".into(), role.fn_name().into());
        m.insert("model".into(), model.into());
        m.insert("retries".into(), (err.retries as i64).into());
        if let Some(p) = err.partial {
            m.insert("partial".into(), p.into());
        }
        if let Some(id) = err.request_id {
            m.insert("request_id".into(), id.into());
        }
    })
}

impl CallRecord {
    fn new(
        function: &'static str,
        backend: &str,
        model: &str,
        schema: Option<&Schema>,
    ) -> CallRecord {
        CallRecord {
            function,
            backend: backend.to_owned(),
            model: model.to_owned(),
            schema: schema.map(|s| s.name.clone()),
            ok: false,
            error: None,
            usage: Usage::default(),
            cost_usd: None,
            ms: 0,
            retries: 0,
            request_id: None,
            dry_run: false,
            redactions: Vec::new(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fences_are_stripped() {
        assert_eq!(strip_fences("```json\n{\"a\":1}\n```"), "{\"a\":1}");
        assert_eq!(strip_fences(" {\"a\":1} "), "{\"a\":1}");
    }
}
