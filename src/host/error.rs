//! Errors across the Rhai boundary: how host functions fail (catchable, with a `kind`), and
//! how an uncaught failure becomes a record's `error`.
//!
//! A host failure is thrown as a map `#{kind, message, function, host, ...}`, so a script can
//! `try { cloud(...) } catch (e) { if e.kind == "timeout" { ... } }`, and the runner can tell
//! it from the script's own `throw` by its `seal`, which a script cannot make.

use rhai::{Dynamic, EvalAltResult, Map, Position};

use crate::record::RecordError;

/// A host error's `seal`: a keyed hash of its kind and message, the key random per process.
/// A script's own `throw #{ host: true, kind: "timeout" }` has no valid seal, so it is never
/// taken for a model timeout; a caught host error thrown again keeps its seal.
fn seal(kind: &str, message: &str) -> String {
    use std::hash::BuildHasher;
    static KEY: std::sync::LazyLock<std::hash::RandomState> =
        std::sync::LazyLock::new(std::hash::RandomState::new);
    format!("{:016x}", KEY.hash_one((kind, message)))
}

/// Builds a catchable host error. `extra` adds fields (`partial`, `errors`, ...).
pub fn host_error(
    kind: &str,
    message: impl Into<String>,
    pos: Position,
    extra: impl FnOnce(&mut Map),
) -> Box<EvalAltResult> {
    let message = message.into();
    let mut map = Map::new();
    map.insert("kind".into(), kind.into());
    map.insert("seal".into(), seal(kind, &message).into());
    map.insert("message".into(), message.into());
    map.insert("host".into(), true.into());
    extra(&mut map);
    EvalAltResult::ErrorRuntime(map.into(), pos).into()
}

/// A budget that ran out inside a host function: stops the script (it cannot be caught, so a
/// script cannot keep going past its budget).
pub fn budget_exceeded(message: String, pos: Position) -> Box<EvalAltResult> {
    EvalAltResult::ErrorTerminated(message.into(), pos).into()
}

/// Turns an error that escaped `process` into the record's error.
pub fn classify(err: &EvalAltResult, script: &str) -> RecordError {
    // Walk into function calls and modules to the error that started it, remembering the
    // innermost source file for the position.
    let mut source = script.to_owned();
    let mut err = err;
    loop {
        match err {
            EvalAltResult::ErrorInFunctionCall(_, src, inner, _) => {
                if !src.is_empty() {
                    source = src.clone();
                }
                err = inner;
            }
            EvalAltResult::ErrorInModule(name, inner, _) => {
                if !name.is_empty() {
                    source = name.clone();
                }
                err = inner;
            }
            _ => break,
        }
    }
    let pos = err.position();
    let position = (!pos.is_none()).then(|| {
        format!(
            "{source}:{}:{}",
            pos.line().unwrap_or(0),
            pos.position().unwrap_or(0)
        )
    });
    let (kind, message) = match err {
        EvalAltResult::ErrorRuntime(value, _) => runtime(value),
        EvalAltResult::ErrorTooManyOperations(_) => (
            "limit".into(),
            "the script ran too many operations (an endless loop?)\nhint: if the work is real, raise `max_operations` under [limits] in hybrid.toml".into(),
        ),
        EvalAltResult::ErrorStackOverflow(_) => (
            "limit".into(),
            "the script called functions too deeply (endless recursion?)\nhint: if the depth is real, raise `max_call_levels` under [limits] in hybrid.toml".into(),
        ),
        EvalAltResult::ErrorDataTooLarge(what, _) => {
            let key = if what.contains("string") {
                "max_string_size"
            } else if what.contains("array") {
                "max_array_size"
            } else if what.contains("map") {
                "max_map_size"
            } else {
                "max_*_size"
            };
            (
                "limit".into(),
                format!("{what} grew past its limit\nhint: if the data is real, raise `{key}` under [limits] in hybrid.toml"),
            )
        }
        // A per-document budget ran out (memory, print output, model calls, emit bytes).
        EvalAltResult::ErrorTerminated(reason, _) => ("limit".into(), reason.to_string()),
        EvalAltResult::ErrorTooManyModules(_) | EvalAltResult::ErrorTooManyVariables(_) => {
            ("limit".into(), err.to_string())
        }
        EvalAltResult::ErrorFunctionNotFound(sig, _) if sig.starts_with("process") => (
            "script".into(),
            "the script has no `fn process(doc)`\nhint: define `fn process(doc) { ... }`; the host calls it once per document".into(),
        ),
        other => ("script".into(), other.to_string()),
    };
    RecordError {
        snippet: None,
        kind,
        message,
        position,
    }
}

/// A runtime error is either a host function's map or the script's own `throw`.
fn runtime(value: &Dynamic) -> (String, String) {
    if let Some(map) = value.read_lock::<Map>() {
        let kind = map.get("kind").map(|k| k.to_string());
        let message = map.get("message").map(|m| m.to_string());
        let sealed = map.get("seal").map(|s| s.to_string());
        if let (Some(kind), Some(message), Some(sealed)) = (kind, message, sealed) {
            if sealed == seal(&kind, &message) {
                return (kind, message);
            }
        }
    }
    // Shown with Rhai's recursive printer: only values of a sane depth.
    let shallow = crate::config::Limits {
        max_value_depth: 64,
        max_string_size: 64 * 1024,
        ..crate::config::Limits::default()
    };
    if super::budget::check_value(value, &shallow).is_err() {
        return (
            "script".into(),
            format!(
                "the script threw a {} too deep or large to show",
                value.type_name()
            ),
        );
    }
    ("script".into(), format!("the script threw: {value}"))
}
