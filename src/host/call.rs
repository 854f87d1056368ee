//! What `local(...)` and `cloud(...)` share: reading the script's arguments, resolving the
//! schema, blocking on the back end, checking the answer, and recording the call.
//!
//! Every failure comes back to the script as a catchable error with a `kind`; an answer that
//! should match a schema is parsed and validated here, so scripts never parse free text.

use std::time::Instant;

use rhai::{Dynamic, EvalAltResult, Map, NativeCallContext, Position};
use serde_json::Value;

use super::error::host_error;
use super::DocContext;
use crate::models::{ErrorKind, ModelError, ModelRequest, ModelResponse, RequestSchema};
use crate::record::CallRecord;
use crate::schemas::Schema;

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
];

type RhaiResult<T> = Result<T, Box<EvalAltResult>>;

/// `local(prompt)`, `local(options)` and `local(prompt, schema)` (and the same for `cloud`).
pub fn call(
    ctx: &NativeCallContext,
    role: Role,
    first: Dynamic,
    schema: Option<Dynamic>,
) -> RhaiResult<Dynamic> {
    let pos = ctx.call_position();
    let doc = DocContext::of(ctx)?;
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

    let mut req = ModelRequest {
        system: None,
        prompt: String::new(),
        schema: None,
        max_tokens: None,
        temperature: None,
    };
    let mut schema_arg = schema;
    if first.is_string() {
        req.prompt = first.into_string().unwrap_or_default();
    } else if first.is_map() {
        if schema_arg.is_some() {
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
        let text = |key: &str| -> RhaiResult<Option<String>> {
            match options.get(key) {
                None => Ok(None),
                Some(v) if v.is_unit() => Ok(None),
                Some(v) if v.is_string() => Ok(Some(v.to_string())),
                Some(v) => Err(usage_error(format!(
                    "`{key}` must be a string, not {}",
                    v.type_name()
                ))),
            }
        };
        let prompt = text("prompt")?;
        req.system = text("system")?;
        let input = match options.get("input") {
            Some(v) if !v.is_unit() => Some(
                rhai::serde::from_dynamic::<Value>(v)
                    .map_err(|e| usage_error(format!("`input` cannot be sent as JSON: {e}")))?,
            ),
            _ => None,
        };
        req.prompt = match (prompt, input) {
            (Some(p), Some(i)) => format!("{p}\n\n{}", pretty(&i)),
            (Some(p), None) => p,
            (None, Some(i)) => pretty(&i),
            (None, None) => return Err(usage_error("give a `prompt` or an `input`".into())),
        };
        if let Some(v) = options.get("max_tokens").filter(|v| !v.is_unit()) {
            let n = v
                .as_int()
                .map_err(|_| usage_error("`max_tokens` must be an integer".into()))?;
            if n <= 0 {
                return Err(usage_error("`max_tokens` must be positive".into()));
            }
            req.max_tokens = Some(n as u32);
        }
        if let Some(v) = options.get("temperature").filter(|v| !v.is_unit()) {
            let t = v
                .as_float()
                .or_else(|_| v.as_int().map(|i| i as f64))
                .map_err(|_| usage_error("`temperature` must be a number".into()))?;
            req.temperature = Some(t);
        }
        schema_arg = options.get("schema").filter(|v| !v.is_unit()).cloned();
    } else {
        return Err(usage_error(format!(
            "expected a prompt string or an options map, not {}",
            first.type_name()
        )));
    }

    let schema = match schema_arg {
        Some(s) => Some(doc.schema(s, pos)?),
        None => None,
    };
    req.schema = schema.as_ref().map(|s| RequestSchema {
        name: s.name.clone(),
        json: s.json.clone(),
        not_strict: s.strict.clone().err(),
    });

    let backend = doc.services.backend(role).clone();
    let started = Instant::now();
    let outcome = doc.services.runtime.block_on(backend.complete(&req));
    let outcome = outcome.and_then(|resp| decode(resp, schema.as_deref()));
    let ms = started.elapsed().as_millis() as u64;

    let record = match &outcome {
        Ok((resp, _)) => CallRecord {
            function: role.fn_name(),
            backend: backend.name().to_owned(),
            model: resp.model.clone(),
            schema: schema.as_ref().map(|s| s.name.clone()),
            ok: true,
            error: None,
            usage: resp.usage,
            ms,
            retries: resp.retries,
            request_id: resp.request_id.clone(),
        },
        Err(err) => CallRecord {
            function: role.fn_name(),
            backend: backend.name().to_owned(),
            model: backend.model().to_owned(),
            schema: schema.as_ref().map(|s| s.name.clone()),
            ok: false,
            error: Some(err.kind.as_str().to_owned()),
            usage: err.usage.unwrap_or_default(),
            ms,
            retries: err.retries,
            request_id: err.request_id.clone(),
        },
    };
    doc.calls
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .push(record);

    match outcome {
        Ok((_, value)) => Ok(value),
        Err(err) => Err(model_error(role, backend.model(), err, pos)),
    }
}

/// Turns a back end's answer into a script value: the text, or — with a schema — the parsed
/// and validated JSON.
fn decode(
    resp: ModelResponse,
    schema: Option<&Schema>,
) -> Result<(ModelResponse, Dynamic), ModelError> {
    let Some(schema) = schema else {
        let text = resp.text.clone();
        return Ok((resp, text.into()));
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
    let violations = schema.validate(&value);
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
        let mut err = fail(
            &resp,
            format!(
                "the answer does not match schema `{}`: {}",
                schema.name,
                listed.join("; ")
            ),
        );
        err.partial = Some(resp.text.clone());
        return Err(err);
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

fn pretty(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        other => serde_json::to_string_pretty(other).unwrap_or_default(),
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fences_are_stripped() {
        assert_eq!(strip_fences("```json\n{\"a\":1}\n```"), "{\"a\":1}");
        assert_eq!(strip_fences(" {\"a\":1} "), "{\"a\":1}");
    }
}
