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
    /// How a request carries it, made once here rather than on every call.
    pub request: crate::models::RequestSchema,
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
        let json = Arc::new(json);
        Ok(Schema {
            request: crate::models::RequestSchema::new(name, json.clone(), strict.clone().err()),
            name: name.to_owned(),
            json,
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

/// Whether OpenAI's strict structured-output mode accepts `schema`, by the rules of the
/// Structured Outputs guide ("Supported schemas" and its limits); the first reason it would not.
/// A schema that fails here is sent non-strict (with a warning) instead of being refused by the
/// API with a 400:
///
/// - the root is an object schema (`"type": "object"`), not an array or a root `anyOf`;
/// - every object schema sets `"additionalProperties": false` (property-less ones too) and
///   lists every property in `required`;
/// - no `allOf`, `not`, `if`/`then`/`else`, `dependentRequired`, `dependentSchemas`,
///   `patternProperties`;
/// - `format` only `date-time`, `time`, `date`, `duration`, `email`, `hostname`, `ipv4`,
///   `ipv6`, `uuid`;
/// - at most 10 levels of object nesting, 5,000 object properties in all, 1,000 enum values in
///   all, 120,000 characters of property names, definition names, enum and const values in
///   all, and 15,000 characters of values for a string enum of more than 250 values.
///
/// Only schema positions are walked (`properties` values, `items`, `anyOf` branches, `$defs`
/// ...): a property that happens to be named `properties` or `allOf` is not a keyword.
fn strict_compatible(schema: &Value, at: &str) -> Result<(), String> {
    let root_is_object = schema.get("type") == Some(&Value::String("object".into()))
        && schema.get("anyOf").is_none();
    if !root_is_object {
        return Err(
            "its root is not an object schema (strict mode wants `\"type\": \"object\"` at the root, not an array or `anyOf`)"
                .into(),
        );
    }
    let mut totals = Totals::default();
    check_node(schema, at, 1, &mut totals)?;
    totals.within_limits()
}

const STRICT_FORMATS: [&str; 9] = [
    "date-time",
    "time",
    "date",
    "duration",
    "email",
    "hostname",
    "ipv4",
    "ipv6",
    "uuid",
];
const STRICT_UNSUPPORTED: [&str; 8] = [
    "allOf",
    "not",
    "if",
    "then",
    "else",
    "dependentRequired",
    "dependentSchemas",
    "patternProperties",
];

/// What strict mode limits over a whole schema.
#[derive(Default)]
struct Totals {
    properties: usize,
    enum_values: usize,
    chars: usize,
}

impl Totals {
    fn within_limits(&self) -> Result<(), String> {
        if self.properties > 5_000 {
            return Err(format!(
                "it has {} object properties (strict mode allows 5,000)",
                self.properties
            ));
        }
        if self.enum_values > 1_000 {
            return Err(format!(
                "it has {} enum values (strict mode allows 1,000)",
                self.enum_values
            ));
        }
        if self.chars > 120_000 {
            return Err(format!(
                "its property names, definition names, enum and const values add up to {} characters (strict mode allows 120,000)",
                self.chars
            ));
        }
        Ok(())
    }
}

fn shown(at: &str) -> &str {
    if at.is_empty() {
        "/"
    } else {
        at
    }
}

/// One schema node at JSON pointer `at`, `depth` levels of object nesting deep.
fn check_node(node: &Value, at: &str, depth: usize, totals: &mut Totals) -> Result<(), String> {
    let Value::Object(map) = node else {
        return Ok(());
    };
    if let Some(keyword) = STRICT_UNSUPPORTED.iter().find(|k| map.contains_key(**k)) {
        return Err(format!(
            "the schema at `{}` uses `{keyword}`, which strict mode does not support",
            shown(at)
        ));
    }
    if let Some(format) = map.get("format").and_then(Value::as_str) {
        if !STRICT_FORMATS.contains(&format) {
            return Err(format!(
                "the schema at `{}` uses format `{format}`, which strict mode does not support",
                shown(at)
            ));
        }
    }
    let is_object = match map.get("type") {
        Some(Value::String(t)) => t == "object",
        Some(Value::Array(ts)) => ts.iter().any(|t| t == "object"),
        _ => map.contains_key("properties"),
    };
    if is_object {
        if depth > 10 {
            return Err(format!(
                "the object at `{}` is nested {depth} levels deep (strict mode allows 10)",
                shown(at)
            ));
        }
        if map.get("additionalProperties") != Some(&Value::Bool(false)) {
            return Err(format!(
                "the object at `{}` does not set \"additionalProperties\": false",
                shown(at)
            ));
        }
        let required: Vec<&str> = map
            .get("required")
            .and_then(Value::as_array)
            .map(|a| a.iter().filter_map(Value::as_str).collect())
            .unwrap_or_default();
        if let Some(Value::Object(props)) = map.get("properties") {
            if let Some(missing) = props.keys().find(|k| !required.contains(&k.as_str())) {
                return Err(format!(
                    "property `{missing}` of the object at `{}` is not in \"required\" (use a nullable type for optional fields)",
                    shown(at)
                ));
            }
        }
    }
    if let Some(values) = map.get("enum").and_then(Value::as_array) {
        totals.enum_values += values.len();
        let chars: usize = values.iter().filter_map(Value::as_str).map(str::len).sum();
        totals.chars += chars;
        if values.len() > 250 && values.iter().all(Value::is_string) && chars > 15_000 {
            return Err(format!("the enum at `{}` has {} string values of {chars} characters (strict mode allows 15,000 past 250 values)", shown(at), values.len()));
        }
    }
    if let Some(Value::String(c)) = map.get("const") {
        totals.chars += c.len();
    }
    let inner = depth + usize::from(is_object);
    if let Some(Value::Object(props)) = map.get("properties") {
        totals.properties += props.len();
        for (name, child) in props {
            totals.chars += name.len();
            check_node(child, &format!("{at}/properties/{name}"), inner, totals)?;
        }
    }
    for key in ["$defs", "definitions"] {
        if let Some(Value::Object(defs)) = map.get(key) {
            for (name, child) in defs {
                totals.chars += name.len();
                check_node(child, &format!("{at}/{key}/{name}"), depth, totals)?;
            }
        }
    }
    if let Some(extra @ Value::Object(_)) = map.get("additionalProperties") {
        check_node(extra, &format!("{at}/additionalProperties"), inner, totals)?;
    }
    match map.get("items") {
        Some(items @ Value::Object(_)) => check_node(items, &format!("{at}/items"), depth, totals)?,
        Some(Value::Array(items)) => {
            for (i, item) in items.iter().enumerate() {
                check_node(item, &format!("{at}/items/{i}"), depth, totals)?;
            }
        }
        _ => {}
    }
    for key in ["anyOf", "prefixItems"] {
        if let Some(Value::Array(branches)) = map.get(key) {
            for (i, branch) in branches.iter().enumerate() {
                check_node(branch, &format!("{at}/{key}/{i}"), depth, totals)?;
            }
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
        SchemaRegistry::load_from(dir, &crate::bundle::Files::Disk)
    }

    /// [`SchemaRegistry::load`], reading from the disk or from a pushed bundle's files.
    pub fn load_from(
        dir: Option<PathBuf>,
        files: &crate::bundle::Files,
    ) -> Result<SchemaRegistry, SchemaError> {
        let mut reg = SchemaRegistry {
            dir: dir.clone(),
            ..SchemaRegistry::default()
        };
        let Some(dir) = dir else { return Ok(reg) };
        let paths = files.json_in(&dir).map_err(|source| SchemaError::Read {
            path: dir.clone(),
            source,
        })?;
        for path in paths {
            let name = path.file_stem().unwrap().to_string_lossy().into_owned();
            let text = files.read(&path).map_err(|source| SchemaError::Read {
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
    schemas_dir_in(script, explicit, &crate::bundle::Files::Disk)
}

/// [`schemas_dir_for`], looking in the disk or in a pushed bundle's files.
pub fn schemas_dir_in(
    script: &Path,
    explicit: Option<&Path>,
    files: &crate::bundle::Files,
) -> Option<PathBuf> {
    if let Some(dir) = explicit {
        return Some(dir.to_owned());
    }
    crate::config::script_dirs(script)
        .into_iter()
        .map(|d| d.join("schemas"))
        .find(|p| files.is_dir(p))
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
    fn the_shipped_schemas_go_strict() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("schemas");
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            let json: Value =
                serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
            assert_eq!(strict_compatible(&json, ""), Ok(()), "{}", path.display());
        }
    }

    #[test]
    fn strict_mode_follows_the_documented_rules() {
        let closed = |props: Value, required: Value| json!({"type": "object", "properties": props, "required": required, "additionalProperties": false});
        let refused = |schema: Value, why: &str| {
            let err = strict_compatible(&schema, "").unwrap_err();
            assert!(err.contains(why), "{why}: {err}");
        };
        // A property-less object is an object too.
        refused(
            closed(json!({"meta": {"type": "object"}}), json!(["meta"])),
            "/properties/meta",
        );
        refused(
            json!({"type": "array", "items": {"type": "string"}}),
            "root",
        );
        refused(json!({"anyOf": [closed(json!({}), json!([]))]}), "root");
        let mut with_all_of = closed(json!({}), json!([]));
        with_all_of["allOf"] = json!([{"type": "object"}]);
        refused(with_all_of, "allOf");
        refused(
            closed(
                json!({"site": {"type": "string", "format": "uri"}}),
                json!(["site"]),
            ),
            "format `uri`",
        );
        assert!(strict_compatible(
            &closed(
                json!({"at": {"type": "string", "format": "date-time"}}),
                json!(["at"])
            ),
            ""
        )
        .is_ok());
        // Eleven levels of objects.
        let mut deep = closed(json!({}), json!([]));
        for _ in 0..10 {
            deep = closed(json!({"x": deep}), json!(["x"]));
        }
        refused(deep, "nested 11 levels");
        let many: Vec<String> = (0..1001).map(|i| format!("v{i}")).collect();
        refused(
            closed(json!({"e": {"type": "string", "enum": many}}), json!(["e"])),
            "1001 enum values",
        );
        // Properties named like keywords are just properties.
        let named = closed(
            json!({"properties": {"type": "string"}, "allOf": {"type": "string"}}),
            json!(["properties", "allOf"]),
        );
        assert!(
            strict_compatible(&named, "").is_ok(),
            "{:?}",
            strict_compatible(&named, "")
        );
        // Definitions are checked too.
        let mut with_defs = closed(json!({"p": {"$ref": "#/$defs/party"}}), json!(["p"]));
        with_defs["$defs"] =
            json!({"party": {"type": "object", "properties": {"n": {"type": "string"}}}});
        refused(with_defs, "/$defs/party");
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
