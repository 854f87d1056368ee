//! JSON Schemas: found by name in the schemas folder, compiled once, shared by every document.
//!
//! Every step of a pipeline is schema-constrained. This module turns a schema name (or an
//! inline map) into a compiled validator, checks values against it, and says whether the
//! schema can be sent to OpenAI in strict structured-output mode.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use serde::Serialize;
use serde_json::Value;
use sha2::{Digest, Sha256};

#[derive(Debug, thiserror::Error)]
pub enum SchemaError {
    #[error("schema `{name}` not found: no `{path}`\nhint: create `{path}`, or fix the name; known schemas: {known}")]
    NotFound {
        name: String,
        path: PathBuf,
        known: String,
    },
    #[error("schema `{name}` was asked for, but there is no schemas folder\nhint: create `schemas/` beside the script (or its parent folder), or pass --schemas DIR")]
    NoDir { name: String },
    #[error("schema name `{name}` is not allowed\nhint: a schema name is a file name in the schemas folder, without `..` or a leading `/`")]
    BadName { name: String },
    #[error("cannot read schema `{path}`: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}:{line}:{column}: schema is not valid JSON: {message}\nhint: fix the JSON syntax at that position")]
    Parse {
        path: PathBuf,
        line: usize,
        column: usize,
        message: String,
    },
    #[error("schema `{name}` is not a valid JSON Schema: {message}\nhint: check the keyword at that location against https://json-schema.org")]
    Invalid { name: String, message: String },
}

/// One problem found by [`Schema::validate`].
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Violation {
    /// JSON pointer to the offending value (`""` for the root).
    pub path: String,
    pub message: String,
}

/// A compiled schema.
pub struct Schema {
    pub name: String,
    pub json: Arc<Value>,
    validator: jsonschema::Validator,
    /// `Ok` when OpenAI's strict mode accepts it as is; otherwise why not.
    pub strict: Result<(), String>,
}

impl std::fmt::Debug for Schema {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Schema").field("name", &self.name).finish()
    }
}

impl Schema {
    pub fn compile(name: &str, json: Value) -> Result<Schema, SchemaError> {
        let validator = jsonschema::validator_for(&json).map_err(|e| SchemaError::Invalid {
            name: name.to_owned(),
            message: format!("{e} (at `{}`)", e.schema_path().as_str()),
        })?;
        let strict = strict_compatible(&json, "");
        Ok(Schema {
            name: name.to_owned(),
            json: Arc::new(json),
            validator,
            strict,
        })
    }

    pub fn validate(&self, value: &Value) -> Vec<Violation> {
        self.validator
            .iter_errors(value)
            .map(|e| Violation {
                path: e.instance_path().as_str().to_owned(),
                message: e.to_string(),
            })
            .collect()
    }
}

/// OpenAI's strict mode wants, on every object, all properties required and
/// `additionalProperties: false`.
fn strict_compatible(schema: &Value, at: &str) -> Result<(), String> {
    let Value::Object(map) = schema else {
        return Ok(());
    };
    if let Some(Value::Object(props)) = map.get("properties") {
        if map.get("additionalProperties") != Some(&Value::Bool(false)) {
            return Err(format!(
                "the object at `{}` does not set \"additionalProperties\": false",
                if at.is_empty() { "/" } else { at }
            ));
        }
        let required: Vec<&str> = map
            .get("required")
            .and_then(Value::as_array)
            .map(|a| a.iter().filter_map(Value::as_str).collect())
            .unwrap_or_default();
        if let Some(missing) = props.keys().find(|k| !required.contains(&k.as_str())) {
            return Err(format!(
                "property `{missing}` of the object at `{}` is not in \"required\" (use a nullable type for optional fields)",
                if at.is_empty() { "/" } else { at }
            ));
        }
    }
    for (key, child) in map {
        match child {
            Value::Object(_) => strict_compatible(child, &format!("{at}/{key}"))?,
            Value::Array(items) => {
                for (i, item) in items.iter().enumerate() {
                    strict_compatible(item, &format!("{at}/{key}/{i}"))?;
                }
            }
            _ => {}
        }
    }
    Ok(())
}

/// All the schemas a bundle uses: the named ones (compiled when the bundle is built) and
/// inline ones (compiled on first use, keyed by content).
#[derive(Debug, Default)]
pub struct SchemaRegistry {
    dir: Option<PathBuf>,
    named: BTreeMap<String, Arc<Schema>>,
    /// Files read, with their contents hash, for the bundle's version.
    pub files: Vec<(PathBuf, String)>,
    inline: Mutex<InlineCache>,
}

/// Compiled inline schemas, by content hash. Bounded: a pipeline that builds a new schema for
/// every document must not grow the host without end; the oldest are compiled again if
/// they come back.
#[derive(Debug, Default)]
struct InlineCache {
    by_hash: HashMap<String, Arc<Schema>>,
    order: std::collections::VecDeque<String>,
}

/// Inline schemas kept compiled at once.
const INLINE_CACHE: usize = 256;

impl SchemaRegistry {
    /// Compiles every `*.json` in `dir`. One bad schema fails the whole load, naming the file.
    pub fn load(dir: Option<PathBuf>) -> Result<SchemaRegistry, SchemaError> {
        let mut reg = SchemaRegistry {
            dir: dir.clone(),
            ..SchemaRegistry::default()
        };
        let Some(dir) = dir else { return Ok(reg) };
        let entries = std::fs::read_dir(&dir).map_err(|source| SchemaError::Read {
            path: dir.clone(),
            source,
        })?;
        let mut paths: Vec<PathBuf> = entries
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|e| e == "json") && p.is_file())
            .collect();
        paths.sort();
        for path in paths {
            let name = path.file_stem().unwrap().to_string_lossy().into_owned();
            let text = std::fs::read_to_string(&path).map_err(|source| SchemaError::Read {
                path: path.clone(),
                source,
            })?;
            let json: Value = serde_json::from_str(&text).map_err(|e| SchemaError::Parse {
                path: path.clone(),
                line: e.line(),
                column: e.column(),
                message: e.to_string(),
            })?;
            let schema = Schema::compile(&name, json).map_err(|e| match e {
                SchemaError::Invalid { message, .. } => SchemaError::Invalid {
                    name: path.display().to_string(),
                    message,
                },
                other => other,
            })?;
            reg.files.push((path, hash_hex(text.as_bytes())));
            reg.named.insert(name, Arc::new(schema));
        }
        Ok(reg)
    }

    pub fn dir(&self) -> Option<&Path> {
        self.dir.as_deref()
    }

    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.named.keys().map(String::as_str)
    }

    /// A schema by name (`contract_triage` or `contract_triage.json`).
    pub fn named(&self, name: &str) -> Result<Arc<Schema>, SchemaError> {
        let stem = name.strip_suffix(".json").unwrap_or(name);
        if let Some(schema) = self.named.get(stem) {
            return Ok(schema.clone());
        }
        if stem.is_empty() || stem.contains("..") || stem.starts_with('/') {
            return Err(SchemaError::BadName { name: name.into() });
        }
        let Some(dir) = &self.dir else {
            return Err(SchemaError::NoDir { name: name.into() });
        };
        let known: Vec<&str> = self.names().collect();
        Err(SchemaError::NotFound {
            name: name.into(),
            path: dir.join(format!("{stem}.json")),
            known: if known.is_empty() {
                "(none)".into()
            } else {
                known.join(", ")
            },
        })
    }

    /// An inline schema (a map in the script), compiled once per distinct content.
    pub fn inline(&self, json: Value) -> Result<Arc<Schema>, SchemaError> {
        let key = hash_hex(json.to_string().as_bytes());
        let mut cache = self.inline.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(s) = cache.by_hash.get(&key) {
            return Ok(s.clone());
        }
        let name = json
            .get("title")
            .and_then(Value::as_str)
            .unwrap_or("inline")
            .to_owned();
        let schema = Arc::new(Schema::compile(&name, json)?);
        if cache.order.len() >= INLINE_CACHE {
            if let Some(oldest) = cache.order.pop_front() {
                cache.by_hash.remove(&oldest);
            }
        }
        cache.order.push_back(key.clone());
        cache.by_hash.insert(key, schema.clone());
        Ok(schema)
    }
}

/// Where named schemas live for a script: `--schemas DIR`, else `schemas/` beside the
/// script, else `schemas/` beside the script's folder.
pub fn schemas_dir_for(script: &Path, explicit: Option<&Path>) -> Option<PathBuf> {
    if let Some(dir) = explicit {
        return Some(dir.to_owned());
    }
    crate::config::script_dirs(script)
        .into_iter()
        .map(|d| d.join("schemas"))
        .find(|p| p.is_dir())
}

pub fn hash_hex(bytes: &[u8]) -> String {
    let digest = Sha256::digest(bytes);
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn the_inline_schema_cache_is_bounded() {
        let registry = SchemaRegistry::default();
        for i in 0..(INLINE_CACHE + 50) {
            registry
                .inline(json!({"type": "object", "description": format!("schema {i}")}))
                .unwrap();
        }
        let cache = registry.inline.lock().unwrap();
        assert_eq!(cache.by_hash.len(), INLINE_CACHE);
        assert_eq!(cache.order.len(), INLINE_CACHE);
    }

    #[test]
    fn violations_name_the_path() {
        let s = Schema::compile(
            "t",
            json!({"type": "object", "properties": {"n": {"type": "number"}}, "required": ["n"]}),
        )
        .unwrap();
        assert!(s.validate(&json!({"n": 1})).is_empty());
        let v = s.validate(&json!({"n": "x"}));
        assert_eq!(v[0].path, "/n");
    }

    #[test]
    fn strict_mode_wants_every_property_required_and_closed_objects() {
        let ok = json!({"type": "object", "properties": {"a": {"type": "string"}},
            "required": ["a"], "additionalProperties": false});
        assert!(strict_compatible(&ok, "").is_ok());
        let open =
            json!({"type": "object", "properties": {"a": {"type": "string"}}, "required": ["a"]});
        assert!(strict_compatible(&open, "")
            .unwrap_err()
            .contains("additionalProperties"));
        let nested = json!({"type": "object", "additionalProperties": false, "required": ["x"],
            "properties": {"x": {"type": "object", "additionalProperties": false,
                "properties": {"y": {"type": "string"}}}}});
        assert!(strict_compatible(&nested, "")
            .unwrap_err()
            .contains("/properties/x"));
    }

    #[test]
    fn a_broken_schema_file_is_reported_with_its_position() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("bad.json"), "{\n  \"type\": \"object\",\n}").unwrap();
        let err = SchemaRegistry::load(Some(dir.path().into()))
            .unwrap_err()
            .to_string();
        assert!(err.contains("bad.json:3:1"), "{err}");
    }

    #[test]
    fn an_unknown_name_lists_the_known_ones() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("a.json"), "{\"type\": \"object\"}").unwrap();
        let reg = SchemaRegistry::load(Some(dir.path().into())).unwrap();
        let err = reg.named("b").unwrap_err().to_string();
        assert!(err.contains("known schemas: a"), "{err}");
    }
}
