//! A bundle is one version of the rules: the compiled script, every module it imports, and
//! the schemas it uses, all checked together and named by a content hash.
//!
//! Building a bundle is all-or-nothing: a syntax error, a missing import, an invalid schema
//! or a schema name that does not exist fails the build with `file:line:col` and a `hint:`,
//! before any document is touched. `hybrid check` is exactly this build.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use rhai::{
    ASTNode, Engine, EvalAltResult, Expr, FnCallExpr, Module, ModuleResolver, ParseErrorType,
    Position, Scope, Shared, Stmt, AST,
};

type SharedModule = Shared<Module>;
use sha2::{Digest, Sha256};

use crate::config::Limits;
use crate::host;
use crate::schemas::{hash_hex, SchemaError, SchemaRegistry};

/// Modules every script can import as `hybrid/NAME`, compiled into the binary. A file
/// `stdlib/NAME.rhai` beside the script (or its folder) overrides the embedded copy.
pub const STDLIB: &[(&str, &str)] = &[
    ("finetune", include_str!("../stdlib/finetune.rhai")),
    ("merge", include_str!("../stdlib/merge.rhai")),
    ("route", include_str!("../stdlib/route.rhai")),
    ("text", include_str!("../stdlib/text.rhai")),
];

#[derive(Debug, thiserror::Error)]
pub enum BundleError {
    #[error("cannot read script `{path}`: {source}\nhint: check the path; scripts usually live in `scripts/`")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{location}: {message}\n{}hint: {hint}", snippet.as_deref().map(|s| format!("{s}\n")).unwrap_or_default())]
    Script {
        location: String,
        message: String,
        hint: String,
        /// The offending line with a caret (`snippet`), when its text can be read.
        snippet: Option<String>,
    },
    #[error(transparent)]
    Schema(#[from] SchemaError),
}

/// Where a bundle's files are read from: the disk, or the files a `hybrid rules push`
/// carried to a fleet worker. Pushed files are keyed by the paths the pusher built them
/// from, so a worker names them the same way and computes the same version.
#[derive(Clone, Default)]
pub enum Files {
    #[default]
    Disk,
    Pushed(Arc<BTreeMap<PathBuf, String>>),
}

impl Files {
    pub fn read(&self, path: &Path) -> std::io::Result<String> {
        match self {
            Files::Disk => std::fs::read_to_string(path),
            Files::Pushed(files) => files.get(path).cloned().ok_or_else(|| {
                std::io::Error::new(std::io::ErrorKind::NotFound, "not in the pushed bundle")
            }),
        }
    }

    pub fn is_dir(&self, dir: &Path) -> bool {
        match self {
            Files::Disk => dir.is_dir(),
            Files::Pushed(files) => files.keys().any(|p| p.parent() == Some(dir)),
        }
    }

    /// The `*.json` files directly inside `dir`, sorted.
    pub fn json_in(&self, dir: &Path) -> std::io::Result<Vec<PathBuf>> {
        let mut paths: Vec<PathBuf> = match self {
            Files::Disk => std::fs::read_dir(dir)?
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.is_file())
                .collect(),
            Files::Pushed(files) => files
                .keys()
                .filter(|p| p.parent() == Some(dir))
                .cloned()
                .collect(),
        };
        paths.retain(|p| p.extension().is_some_and(|e| e == "json"));
        paths.sort();
        Ok(paths)
    }
}

/// One compiled, checked version of the rules.
pub struct Bundle {
    pub engine: Engine,
    pub ast: AST,
    pub schemas: Arc<SchemaRegistry>,
    /// Content hash of the script, its imports and the schemas: `v` + 12 hex digits.
    pub version: String,
    /// The script as named on the command line (used in error positions).
    pub script_name: String,
    /// Every file this bundle was built from, with its content hash (for the watcher and
    /// for saying what changed between versions).
    pub files: BTreeMap<PathBuf, String>,
    /// The limits the engine was built with (per-document budgets read them too).
    pub limits: Limits,
    /// The script's and each module's text, by the name error positions use.
    pub sources: BTreeMap<String, Arc<str>>,
}

impl Bundle {
    /// Compiles `script` with its imports and schemas.
    pub fn build(
        script: &Path,
        schemas_dir: Option<&Path>,
        limits: &Limits,
    ) -> Result<Bundle, BundleError> {
        Bundle::build_from(script, schemas_dir, limits, &Files::Disk)
    }

    /// Compiles `script` with its imports and schemas, reading them from `files`.
    pub fn build_from(
        script: &Path,
        schemas_dir: Option<&Path>,
        limits: &Limits,
        files: &Files,
    ) -> Result<Bundle, BundleError> {
        Bundle::build_unshown(script, schemas_dir, limits, files).map_err(|err| match err {
            BundleError::Script {
                location,
                message,
                hint,
                snippet: None,
            } => BundleError::Script {
                snippet: crate::snippet::at(&location, |file| source_text(files, file)),
                location,
                message,
                hint,
            },
            other => other,
        })
    }

    /// The snippet (line and caret) for a `file:line:col` in this version's own sources.
    pub fn snippet(&self, location: &str) -> Option<String> {
        crate::snippet::at(location, |file| {
            self.sources.get(file).map(|t| t.to_string())
        })
    }

    fn build_unshown(
        script: &Path,
        schemas_dir: Option<&Path>,
        limits: &Limits,
        files: &Files,
    ) -> Result<Bundle, BundleError> {
        let script_name = script.display().to_string();
        let text = files.read(script).map_err(|source| BundleError::Read {
            path: script.to_owned(),
            source,
        })?;
        let schemas_dir = crate::schemas::schemas_dir_in(script, schemas_dir, files);
        let schemas = Arc::new(SchemaRegistry::load_from(schemas_dir, files)?);

        let resolver = Arc::new(Resolver::new(script, files.clone()));
        let mut engine = host::new_engine(limits);
        engine.set_module_resolver(SharedResolver(resolver.clone()));

        let mut ast = engine
            .compile_into_self_contained(&Scope::new(), &text)
            .map_err(|e| script_error(&script_name, &with_import_position(&engine, &text, *e)))?;
        ast.set_source(script_name.as_str());

        // The script contract: `fn process(doc)`.
        if !ast
            .iter_functions()
            .any(|f| f.name == "process" && f.params.len() == 1)
        {
            return Err(BundleError::Script {
                snippet: None,
                location: format!("{script_name}:1:1"),
                message: "the script has no `fn process(doc)`".into(),
                hint: "define `fn process(doc) { ... }`; the host calls it once per document and records what it returns".into(),
            });
        }

        let loaded = resolver.loaded();
        check_schema_names(&script_name, &ast, &schemas)?;
        check_no_captures(&script_name, &ast)?;
        for (_, module) in &loaded {
            check_schema_names(&module.shown, &module.ast, &schemas)?;
            check_no_captures(&module.shown, &module.ast)?;
        }

        // The text of every file, by the name positions use, for error snippets.
        let mut sources: BTreeMap<String, Arc<str>> = BTreeMap::new();
        sources.insert(script_name.clone(), Arc::from(text.as_str()));
        for (_, module) in &loaded {
            sources.insert(module.shown.clone(), Arc::from(module.text.as_str()));
        }

        // Every file and its content hash; the version hashes them all together.
        let mut files = BTreeMap::new();
        files.insert(script.to_owned(), hash_hex(text.as_bytes()));
        let mut hasher = Sha256::new();
        hasher.update(script_name.as_bytes());
        hasher.update(text.as_bytes());
        for (name, module) in &loaded {
            hasher.update(name.as_bytes());
            hasher.update(module.text.as_bytes());
            if let Some(path) = &module.path {
                files.insert(path.clone(), hash_hex(module.text.as_bytes()));
            }
        }
        for (path, hash) in &schemas.files {
            hasher.update(path.to_string_lossy().as_bytes());
            hasher.update(hash.as_bytes());
            files.insert(path.clone(), hash.clone());
        }
        let digest = hasher.finalize();
        let version = format!(
            "v{}",
            digest
                .iter()
                .take(6)
                .map(|b| format!("{b:02x}"))
                .collect::<String>()
        );

        Ok(Bundle {
            engine,
            ast,
            schemas,
            version,
            script_name,
            files,
            sources,
            limits: limits.clone(),
        })
    }
}

/// The text of a file named in an error position while building: an embedded standard
/// module (`<stdlib>/NAME.rhai`) or a file on disk (the one just read).
fn source_text(files: &Files, file: &str) -> Option<String> {
    match file
        .strip_prefix("<stdlib>/")
        .and_then(|f| f.strip_suffix(".rhai"))
    {
        Some(name) => STDLIB
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, text)| (*text).to_owned()),
        None => files.read(Path::new(file)).ok(),
    }
}

/// Schema names written as literals (`local(p, "contract_triage")`, `#{ schema: "x" }`)
/// must exist: a typo is caught before the first document, with its position.
/// Closures may not capture local variables. A captured variable becomes shared, and a
/// closure stored in the very map it captures (`m.f = || m.total`) is a reference cycle that
/// outlives the document: every document would leak its data. Constants and globals are not
/// captured (they are looked up when the closure runs), so `|x| x > ESCALATE_BELOW` is fine.
fn check_no_captures(file: &str, ast: &AST) -> Result<(), BundleError> {
    let mut problem = None;
    ast.walk(&mut |path: &[ASTNode]| {
        if let Some(ASTNode::Stmt(Stmt::Share(vars))) = path.last() {
            if let Some((var, _)) = vars.iter().find(|(_, index)| index.is_some()) {
                problem = Some((var.name.to_string(), var.pos));
                return false;
            }
        }
        true
    });
    match problem {
        None => Ok(()),
        Some((name, pos)) => Err(BundleError::Script {
            snippet: None,
            location: format!("{file}:{}:{}", pos.line().unwrap_or(0), pos.position().unwrap_or(0)),
            message: format!("a closure captures the local variable `{name}`"),
            hint: format!("closures may read constants but not capture local variables (a closure stored in a map it captures would keep every document's data alive); pass the value in instead, e.g. `Fn(\"name\").curry({name})` with `fn name({name}, x) {{ ... }}`"),
        }),
    }
}

fn check_schema_names(file: &str, ast: &AST, schemas: &SchemaRegistry) -> Result<(), BundleError> {
    let mut problem = None;
    ast.walk(&mut |path: &[ASTNode]| {
        let call: Option<&FnCallExpr> = match path.last() {
            Some(ASTNode::Expr(Expr::FnCall(call, _))) => Some(call),
            Some(ASTNode::Stmt(Stmt::FnCall(call, _))) => Some(call),
            _ => None,
        };
        let Some(call) = call.filter(|c| matches!(c.name.as_str(), "local" | "cloud" | "validate"))
        else {
            return true;
        };
        let mut literals: Vec<(String, Position)> = Vec::new();
        if let Some(Expr::StringConstant(name, pos)) = call.args.get(1) {
            literals.push((name.to_string(), *pos));
        }
        match call.args.first() {
            Some(Expr::Map(map, _)) => {
                for (key, value) in &map.0 {
                    if let (true, Expr::StringConstant(name, pos)) = (key.name == "schema", value) {
                        literals.push((name.to_string(), *pos));
                    }
                }
            }
            // A map of constants is folded into one value at compile time.
            Some(Expr::DynamicConstant(value, pos)) => {
                if let Some(name) = value.read_lock::<rhai::Map>().and_then(|m| {
                    m.get("schema")
                        .filter(|s| s.is_string())
                        .map(|s| s.to_string())
                }) {
                    literals.push((name, *pos));
                }
            }
            _ => {}
        }
        for (name, pos) in literals.into_iter() {
            if let Err(e) = schemas.named(&name) {
                problem = Some(BundleError::Script {
                    snippet: None,
                    location: location(file, pos),
                    message: format!("unknown schema `{name}` in {}()", call.name),
                    hint: e
                        .to_string()
                        .split_once("\nhint: ")
                        .map(|(_, h)| h.to_owned())
                        .unwrap_or_default(),
                });
                return false;
            }
        }
        true
    });
    problem.map_or(Ok(()), Err)
}

fn location(file: &str, pos: Position) -> String {
    format!(
        "{file}:{}:{}",
        pos.line().unwrap_or(1),
        pos.position().unwrap_or(1)
    )
}

/// Turns a compile failure (the script's or an import's) into a positioned error with a hint.
fn script_error(script: &str, err: &EvalAltResult) -> BundleError {
    match err {
        EvalAltResult::ErrorParsing(kind, pos) => BundleError::Script {
            snippet: None,
            location: location(script, *pos),
            message: format!("syntax error: {kind}"),
            hint: parse_hint(kind),
        },
        EvalAltResult::ErrorInModule(name, inner, pos) => match &**inner {
            EvalAltResult::ErrorParsing(..) | EvalAltResult::ErrorInModule(..) | EvalAltResult::ErrorModuleNotFound(..) => {
                script_error(name, inner)
            }
            EvalAltResult::ErrorRuntime(message, _) if message.to_string().starts_with("import cycle") => BundleError::Script {
                snippet: None,
                location: location(name, *pos),
                message: message.to_string(),
                hint: "modules may not import each other in a circle; move what they share into a third module".into(),
            },
            other => BundleError::Script {
                snippet: None,
                location: location(script, *pos),
                message: format!("module `{name}` failed to load: {other}"),
                hint: "a module's top level runs when it is imported; keep it to constants and functions".into(),
            },
        },
        EvalAltResult::ErrorModuleNotFound(name, pos) => BundleError::Script {
            snippet: None,
            location: location(script, *pos),
            message: format!("cannot find module `{name}`"),
            hint: format!(
                "imports are relative to the script's folder (`import \"lib/rules\" as rules;` reads `lib/rules.rhai`); the standard library is `hybrid/NAME`, one of: {}",
                STDLIB.iter().map(|(n, _)| *n).collect::<Vec<_>>().join(", ")
            ),
        },
        other => BundleError::Script {
            snippet: None,
            location: location(script, other.position()),
            message: other.to_string(),
            hint: "fix the script at this position".into(),
        },
    }
}

/// Rhai resolves a script's own imports without positions; find the `import` statement a
/// failure is about, so the error points at its line.
fn with_import_position(engine: &Engine, text: &str, err: EvalAltResult) -> EvalAltResult {
    let path = match &err {
        EvalAltResult::ErrorModuleNotFound(path, pos)
        | EvalAltResult::ErrorInModule(path, _, pos)
            if pos.is_none() =>
        {
            path.clone()
        }
        _ => return err,
    };
    let Ok(ast) = engine.compile(text) else {
        return err;
    };
    let mut found = None;
    ast.walk(&mut |nodes: &[ASTNode]| {
        if let Some(ASTNode::Stmt(Stmt::Import(x, pos))) = nodes.last() {
            if matches!(&x.0, Expr::StringConstant(s, _) if s.as_str() == path) {
                found = Some(*pos);
                return false;
            }
        }
        true
    });
    let Some(pos) = found else { return err };
    match err {
        EvalAltResult::ErrorModuleNotFound(path, _) => {
            EvalAltResult::ErrorModuleNotFound(path, pos)
        }
        EvalAltResult::ErrorInModule(path, inner, _) => {
            EvalAltResult::ErrorInModule(path, inner, pos)
        }
        other => other,
    }
}

fn parse_hint(kind: &ParseErrorType) -> String {
    match kind {
        ParseErrorType::MissingToken(token, _) => format!("add the missing `{token}`"),
        ParseErrorType::UnknownOperator(op) => format!("`{op}` is not a Rhai operator"),
        ParseErrorType::VariableUndefined(name) => {
            format!("declare `{name}` with `let` or `const` before using it")
        }
        ParseErrorType::FnMissingBody(name) => format!("give `fn {name}` a body in braces"),
        ParseErrorType::BadInput(_) => "check for an unclosed string or a stray character".into(),
        ParseErrorType::Reserved(word) => {
            format!("`{word}` is reserved in Rhai; choose another name")
        }
        _ => "check the syntax at this position (Rhai syntax: https://rhai.rs/book/)".into(),
    }
}

/// A module read while building a bundle.
struct Loaded {
    /// The name positions use: the file as found, or `<stdlib>/NAME.rhai`.
    shown: String,
    /// `None` for an embedded standard-library module.
    path: Option<PathBuf>,
    text: String,
    ast: AST,
    module: SharedModule,
}

/// Resolves `import` paths: `hybrid/NAME` from the standard library, anything else relative
/// to the script's folder. Remembers what it read, so the bundle can hash and watch it.
struct Resolver {
    /// The script's folder and the one above it.
    dirs: [PathBuf; 2],
    files: Files,
    loaded: Mutex<BTreeMap<String, Arc<Loaded>>>,
    /// Imports being loaded right now, outermost first: a path seen twice is a cycle.
    loading: Mutex<Vec<String>>,
}

impl Resolver {
    fn new(script: &Path, files: Files) -> Resolver {
        Resolver {
            dirs: crate::config::script_dirs(script),
            files,
            loaded: Mutex::new(BTreeMap::new()),
            loading: Mutex::new(Vec::new()),
        }
    }

    fn loaded(&self) -> Vec<(String, Arc<Loaded>)> {
        self.loaded
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect()
    }

    /// The file (or embedded text) an import path names, and the name errors should show.
    fn locate(&self, path: &str) -> Option<(String, Option<PathBuf>, String)> {
        let with_ext = |p: &str| {
            if p.ends_with(".rhai") {
                p.to_owned()
            } else {
                format!("{p}.rhai")
            }
        };
        if let Some(name) = path.strip_prefix("hybrid/") {
            for dir in &self.dirs {
                let candidate = dir.join("stdlib").join(with_ext(name));
                if let Ok(text) = self.files.read(&candidate) {
                    return Some((candidate.display().to_string(), Some(candidate), text));
                }
            }
            let (_, text) = STDLIB.iter().find(|(n, _)| *n == name)?;
            return Some((format!("<stdlib>/{name}.rhai"), None, (*text).to_owned()));
        }
        let candidate = self.dirs[0].join(with_ext(path));
        let text = self.files.read(&candidate).ok()?;
        Some((candidate.display().to_string(), Some(candidate), text))
    }

    fn load(
        &self,
        engine: &Engine,
        path: &str,
        pos: Position,
    ) -> Result<Arc<Loaded>, Box<EvalAltResult>> {
        if let Some(found) = self
            .loaded
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(path)
        {
            return Ok(found.clone());
        }
        {
            let mut loading = self.loading.lock().unwrap_or_else(|e| e.into_inner());
            if loading.iter().any(|p| p == path) {
                let cycle: Vec<&str> = loading.iter().map(String::as_str).chain([path]).collect();
                return Err(EvalAltResult::ErrorRuntime(
                    format!("import cycle: {}", cycle.join(" → ")).into(),
                    pos,
                )
                .into());
            }
            loading.push(path.to_owned());
        }
        let result = self.load_new(engine, path, pos);
        self.loading.lock().unwrap_or_else(|e| e.into_inner()).pop();
        result
    }

    fn load_new(
        &self,
        engine: &Engine,
        path: &str,
        pos: Position,
    ) -> Result<Arc<Loaded>, Box<EvalAltResult>> {
        let (shown, file, text) = self
            .locate(path)
            .ok_or_else(|| Box::new(EvalAltResult::ErrorModuleNotFound(path.to_owned(), pos)))?;
        let in_module =
            |e: Box<EvalAltResult>| Box::new(EvalAltResult::ErrorInModule(shown.clone(), e, pos));
        let mut ast = engine.compile(&text).map_err(|e| in_module(e.into()))?;
        ast.set_source(shown.as_str());
        let module = Module::eval_ast_as_new(Scope::new(), &ast, engine).map_err(in_module)?;
        let loaded = Arc::new(Loaded {
            shown: shown.clone(),
            path: file,
            text,
            ast,
            module: module.into(),
        });
        self.loaded
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(path.to_owned(), loaded.clone());
        Ok(loaded)
    }
}

/// The engine owns its resolver; the bundle keeps a second handle to read what was loaded.
struct SharedResolver(Arc<Resolver>);

impl ModuleResolver for SharedResolver {
    fn resolve(
        &self,
        engine: &Engine,
        _source: Option<&str>,
        path: &str,
        pos: Position,
    ) -> Result<SharedModule, Box<EvalAltResult>> {
        Ok(self.0.load(engine, path, pos)?.module.clone())
    }

    fn resolve_ast(
        &self,
        engine: &Engine,
        _source: Option<&str>,
        path: &str,
        pos: Position,
    ) -> Option<Result<AST, Box<EvalAltResult>>> {
        Some(self.0.load(engine, path, pos).map(|l| l.ast.clone()))
    }
}
