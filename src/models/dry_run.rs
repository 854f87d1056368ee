//! `--cloud dry-run`: the cloud back end that sends nothing.
//!
//! The egress guard and the audit log still run, so operators can review exactly what would
//! leave and what it would cost on their own corpus before turning the API on. Token counts
//! are estimated with the GPT tokenizer (o200k); answers are schema-shaped placeholders whose
//! strings say `[dry-run]`, so the pipeline completes.

use serde_json::{json, Value};

use super::{Backend, BoxFuture, ModelError, ModelRequest, ModelResponse, Usage};
use crate::cost::count_tokens;

/// Output tokens assumed for an answer when the call sets no `max_tokens`.
pub const ASSUMED_OUTPUT_TOKENS: u64 = 400;

/// The marker every placeholder string carries.
pub const MARKER: &str = "[dry-run]";

/// The marker of a `--replay` call the answer cache could not answer.
pub const REPLAY_MISS: &str = "[replay-miss]";

pub struct DryRunBackend {
    model: String,
    service_tier: Option<String>,
    marker: &'static str,
}

impl DryRunBackend {
    pub fn new(model: String, service_tier: Option<String>) -> DryRunBackend {
        DryRunBackend {
            model,
            service_tier,
            marker: MARKER,
        }
    }

    /// The stand-in for a model `--replay` found no cached answer for: estimates, and
    /// placeholders that say `[replay-miss]`.
    pub fn replay_miss(model: String) -> DryRunBackend {
        DryRunBackend {
            model,
            service_tier: None,
            marker: REPLAY_MISS,
        }
    }
}

impl Backend for DryRunBackend {
    fn name(&self) -> &str {
        "dry-run"
    }

    fn model(&self) -> &str {
        &self.model
    }

    fn io_on_caller(&self) -> bool {
        true
    }

    fn complete<'a>(
        &'a self,
        req: &'a ModelRequest,
    ) -> BoxFuture<'a, Result<ModelResponse, ModelError>> {
        Box::pin(async move {
            let mut prompt = String::new();
            if let Some(system) = &req.system {
                prompt.push_str(system);
            }
            prompt.push_str(&req.prompt);
            if let Some(schema) = &req.schema {
                prompt.push_str(&schema.json.to_string());
            }
            let text = match &req.schema {
                Some(schema) => placeholder_marked(&schema.json, self.marker).to_string(),
                None => format!("{} the model was not called", self.marker),
            };
            Ok(ModelResponse {
                text,
                model: self.model.clone(),
                usage: Usage {
                    // Chat formatting adds a few tokens per message.
                    prompt_tokens: count_tokens(&prompt) + 8,
                    completion_tokens: req.max_tokens.map_or(ASSUMED_OUTPUT_TOKENS, u64::from),
                    ..Usage::default()
                },
                // Estimated as the configured tier would be billed.
                service_tier: self.service_tier.clone(),
                ..ModelResponse::default()
            })
        })
    }
}

/// A value shaped like `schema`: enums take their first value, strings say `[dry-run]`,
/// numbers sit at their minimum (or 0), arrays hold their minimum number of items.
pub fn placeholder(schema: &Value) -> Value {
    placeholder_marked(schema, MARKER)
}

/// [`placeholder`] with `marker` in its strings.
fn placeholder_marked(schema: &Value, marker: &str) -> Value {
    let placeholder = |s: &Value| placeholder_marked(s, marker);
    if let Some(first) = schema["enum"].as_array().and_then(|v| v.first()) {
        return first.clone();
    }
    if let Some(c) = schema.get("const") {
        return c.clone();
    }
    for key in ["anyOf", "oneOf", "allOf"] {
        if let Some(first) = schema[key].as_array().and_then(|a| a.first()) {
            return placeholder(first);
        }
    }
    let ty = match &schema["type"] {
        Value::String(s) => s.as_str(),
        Value::Array(types) => types
            .iter()
            .filter_map(Value::as_str)
            .find(|t| *t != "null")
            .unwrap_or("null"),
        _ if schema.get("properties").is_some() => "object",
        _ => "string",
    };
    match ty {
        "object" => Value::Object(
            schema["properties"]
                .as_object()
                .map(|props| {
                    props
                        .iter()
                        .map(|(k, v)| (k.clone(), placeholder(v)))
                        .collect()
                })
                .unwrap_or_default(),
        ),
        "array" => {
            let n = schema["minItems"].as_u64().unwrap_or(0);
            Value::Array((0..n).map(|_| placeholder(&schema["items"])).collect())
        }
        "number" | "integer" => json!(schema["minimum"]
            .as_f64()
            .unwrap_or(0.0)
            .max(0.0)
            .min(schema["maximum"].as_f64().unwrap_or(f64::MAX))),
        "boolean" => json!(false),
        "null" => Value::Null,
        _ => json!(marker),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholders_follow_the_schema_and_are_marked() {
        let schema = json!({"type": "object", "properties": {
            "risk": {"type": "string", "enum": ["low", "high"]},
            "note": {"type": "string"},
            "score": {"type": "number", "minimum": 0, "maximum": 1},
            "items": {"type": "array", "minItems": 1, "items": {"type": "string"}}}});
        let p = placeholder(&schema);
        assert_eq!(
            p,
            json!({"risk": "low", "note": MARKER, "score": 0.0, "items": [MARKER]})
        );
        assert!(crate::schemas::Schema::compile("t", schema)
            .unwrap()
            .validate(&p)
            .is_empty());
    }
}
