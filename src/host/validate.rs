//! `validate(value, schema)`: checks any value against a schema by name or inline map and
//! returns `#{ valid, errors: [#{ path, message }] }`, so scripts can route on the result
//! instead of failing.

use rhai::{Array, Dynamic, Engine, FuncRegistration, Map, NativeCallContext};
use serde_json::Value;

use super::DocContext;

pub fn register(engine: &mut Engine) {
    FuncRegistration::new("validate")
        .with_params_info(["value: ?", "schema: ?", "Map"])
        .with_comments(["/// Check any value against a schema (a name in `schemas/` or an inline map). Returns\n/// `#{ valid, errors: [#{ path, message }] }`, so a script can route on the result\n/// instead of failing.\n///\n/// ```rhai\n/// if !validate(answer, \"contract_risk\").valid { return #{ decision: \"human_review\" }; }\n/// ```"])
        .register_into_engine(engine, validate);
}

fn validate(
    ctx: NativeCallContext,
    value: Dynamic,
    schema: Dynamic,
) -> Result<Map, Box<rhai::EvalAltResult>> {
    let pos = ctx.call_position();
    let doc = DocContext::of(&ctx)?;
    super::budget::check_value(&value, &doc.limits).map_err(|message| {
        super::error::host_error("limit", format!("validate(): {message}"), pos, |_| {})
    })?;
    let schema = doc.schema(schema, pos)?;

    let errors: Array = match rhai::serde::from_dynamic::<Value>(&value) {
        Ok(json) => schema
            .validate(&json)
            .into_iter()
            .map(|v| {
                let mut m = Map::new();
                m.insert("path".into(), v.path.into());
                m.insert("message".into(), v.message.into());
                Dynamic::from_map(m)
            })
            .collect(),
        Err(e) => {
            let mut m = Map::new();
            m.insert("path".into(), "".into());
            m.insert(
                "message".into(),
                format!("the value is not JSON-shaped: {e}").into(),
            );
            vec![Dynamic::from_map(m)]
        }
    };
    let mut out = Map::new();
    out.insert("valid".into(), errors.is_empty().into());
    out.insert("errors".into(), errors.into());
    Ok(out)
}
