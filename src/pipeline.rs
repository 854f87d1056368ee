//! Pipelines that know their inputs: the run settings a pipeline declares in `hybrid.toml`
//! under `[pipelines."scripts/NAME.rhai"]`, so `hybrid run scripts/NAME.rhai` needs nothing
//! else — and where each effective setting came from, for `hybrid check` to show.
//!
//! A pipeline is keyed by its script's path relative to the settings file, as the guard's
//! per-pipeline policies are: a copy of the script saved elsewhere does not inherit another
//! pipeline's inputs and outputs. Paths inside the table are relative to the settings file's
//! folder, so the command works from any directory. Flags override what is declared; the
//! environment and the rest of the file rank as the README's "Configuration" says.

use std::fmt;
use std::io::IsTerminal;
use std::path::{Path, PathBuf};

use serde::Deserialize;

/// `[pipelines."PATH"]`.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PipelineFile {
    /// Files, folders (inboxes with `watch`), `.jsonl` files, or `-` for stdin.
    #[serde(deserialize_with = "one_or_many")]
    pub inputs: Vec<PathBuf>,
    pub out: Option<PathBuf>,
    pub audit: Option<PathBuf>,
    pub emit_dir: Option<PathBuf>,
    pub watch: Option<bool>,
    pub move_done: Option<bool>,
    pub jobs: Option<usize>,
    /// `live` or `dry-run`.
    pub cloud: Option<String>,
}

/// `inputs = "samples"` and `inputs = ["a", "b"]` both read.
fn one_or_many<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<PathBuf>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum OneOrMany {
        One(PathBuf),
        Many(Vec<PathBuf>),
    }
    Ok(match OneOrMany::deserialize(d)? {
        OneOrMany::One(p) => vec![p],
        OneOrMany::Many(ps) => ps,
    })
}

#[derive(Debug, thiserror::Error)]
pub enum PipelineError {
    #[error("[pipelines.{0}] names a pipeline by a bare name, which any script of that name anywhere would take\nhint: key it by the script's path relative to the settings file, e.g. [pipelines.\"scripts/{0}.rhai\"]")]
    BareKey(String),
    #[error("{origin}: cloud = \"{value}\" is neither \"live\" nor \"dry-run\"")]
    Cloud { value: String, origin: Origin },
    #[error("{origin}: jobs must be at least 1")]
    Jobs { origin: Origin },
    #[error("no documents to read for `{script}`\nhint: pass INPUT (files, folders, or `-` for JSONL on stdin), or declare them in {settings}:\n      [pipelines.\"{key}\"]\n      inputs = [\"samples/\"]")]
    NoInputs {
        script: String,
        settings: String,
        key: String,
    },
    #[error("input `{path}` does not exist ({origin})\nhint: fix the path; it is relative to the folder of the settings file")]
    MissingInput { path: PathBuf, origin: Origin },
    #[error("{what} `{path}` cannot be written: `{dir}` is not a folder ({origin})")]
    NotAFolder {
        what: &'static str,
        path: PathBuf,
        dir: PathBuf,
        origin: Origin,
    },
    #[error("--move-done moves processed inbox files, so it needs --watch (or `watch = true` in the pipeline's settings)")]
    MoveDoneWithoutWatch,
}

/// Where an effective setting came from.
#[derive(Debug, Clone, PartialEq)]
pub enum Origin {
    /// A command-line flag, e.g. `--out`.
    Flag(&'static str),
    /// An environment variable.
    Env(&'static str),
    /// A table and key of the settings file.
    File { path: PathBuf, key: String },
    /// Standard input, read because nothing else was named and it is not a terminal.
    Stdin,
    /// Nothing set it; the reason for the value.
    Default(&'static str),
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Origin::Flag(flag) => write!(f, "flag {flag}"),
            Origin::Env(var) => write!(f, "env {var}"),
            Origin::File { path, key } => {
                let path = path.strip_prefix(".").unwrap_or(path);
                write!(f, "{}: {key}", path.display())
            }
            Origin::Stdin => f.write_str("stdin is not a terminal"),
            Origin::Default(why) => write!(f, "default: {why}"),
        }
    }
}

/// One effective setting, for `hybrid check`.
#[derive(Debug, Clone)]
pub struct Shown {
    pub name: &'static str,
    pub value: String,
    pub origin: Origin,
}

/// The first of `candidates` that is set, with its origin; else `default`.
pub fn pick<T>(candidates: Vec<(Option<T>, Origin)>, default: (T, Origin)) -> (T, Origin) {
    candidates
        .into_iter()
        .find_map(|(value, origin)| value.map(|v| (v, origin)))
        .unwrap_or(default)
}

/// A pipeline's table, found for one script, its paths made relative to here.
#[derive(Debug, Clone)]
pub struct Declared {
    /// The key as written (`scripts/contract_triage.rhai`).
    pub key: String,
    /// The settings file it is in.
    pub settings: PathBuf,
    pub file: PipelineFile,
}

impl Declared {
    /// `hybrid.toml: [pipelines."KEY"] NAME`, for a setting `name` of this table.
    pub fn origin(&self, name: &str) -> Origin {
        Origin::File {
            path: self.settings.clone(),
            key: format!("[pipelines.\"{}\"] {name}", self.key),
        }
    }

    /// The cloud mode declared, if any, checked.
    pub fn cloud_mode(&self) -> Result<Option<crate::config::CloudMode>, PipelineError> {
        use crate::config::CloudMode;
        match self.file.cloud.as_deref() {
            None => Ok(None),
            Some("live") => Ok(Some(CloudMode::Live)),
            Some("dry-run" | "dry_run") => Ok(Some(CloudMode::DryRun)),
            Some(other) => Err(PipelineError::Cloud {
                value: other.to_owned(),
                origin: self.origin("cloud"),
            }),
        }
    }
}

/// The folder paths in a settings file are relative to.
pub fn settings_dir(settings: Option<&Path>) -> PathBuf {
    match settings.and_then(Path::parent) {
        Some(p) if !p.as_os_str().is_empty() => p.to_owned(),
        _ => PathBuf::from("."),
    }
}

/// `path` as written in a settings file in `dir`, as a path from here.
fn from_settings(dir: &Path, path: &Path) -> PathBuf {
    let url = path.to_str().is_some_and(crate::fleet::is_address);
    if url || path.is_absolute() || dir == Path::new(".") || path == Path::new("-") {
        path.to_owned()
    } else {
        dir.join(path)
    }
}

/// Whether the settings-file key `key` (a path relative to `dir`) names `script`. A key
/// without `.rhai` is refused by the caller: it would match by name alone.
pub fn names_script(dir: &Path, key: &str, script: &Path) -> bool {
    match (dir.join(key).canonicalize(), script.canonicalize()) {
        (Ok(a), Ok(b)) => a == b,
        _ => false,
    }
}

/// The table declared for `script` in `tables` (from the settings file `settings`), with its
/// paths made usable from the current directory.
pub fn declared(
    tables: &std::collections::BTreeMap<String, PipelineFile>,
    script: &Path,
    settings: Option<&Path>,
) -> Result<Option<Declared>, PipelineError> {
    let dir = settings_dir(settings);
    let mut found = None;
    for (key, table) in tables {
        if !key.ends_with(".rhai") {
            return Err(PipelineError::BareKey(key.clone()));
        }
        if names_script(&dir, key, script) {
            let mut file = table.clone();
            for p in &mut file.inputs {
                *p = from_settings(&dir, p);
            }
            for p in [&mut file.out, &mut file.audit, &mut file.emit_dir]
                .into_iter()
                .flatten()
            {
                *p = from_settings(&dir, p);
            }
            found = Some(Declared {
                key: key.clone(),
                settings: settings.map(Path::to_owned).unwrap_or_default(),
                file,
            });
        }
    }
    Ok(found)
}

/// What `hybrid run` was told on the command line about its inputs and outputs.
#[derive(Debug, Default)]
pub struct RunFlags {
    pub inputs: Vec<PathBuf>,
    pub out: Option<PathBuf>,
    pub emit_dir: Option<PathBuf>,
    pub watch: bool,
    pub move_done: bool,
}

/// The effective inputs and outputs of one run.
#[derive(Debug)]
pub struct RunSettings {
    pub inputs: Vec<PathBuf>,
    /// `None`: records go to stdout.
    pub out: Option<PathBuf>,
    pub emit_dir: PathBuf,
    pub watch: bool,
    pub move_done: bool,
    pub shown: Vec<Shown>,
}

/// Flags over the declared table over defaults. With no inputs anywhere, standard input is
/// read when it is not a terminal (`stdin_is_terminal` says); otherwise that is an error with
/// both ways out.
pub fn run_settings(
    script: &Path,
    flags: RunFlags,
    declared: Option<&Declared>,
    settings: Option<&Path>,
    stdin_is_terminal: bool,
) -> Result<RunSettings, PipelineError> {
    let d = declared.map(|d| &d.file);
    // The origin of a declared value (only used when one is declared).
    let origin = |name: &str| declared.map_or(Origin::Default("not declared"), |d| d.origin(name));
    let (inputs, inputs_origin) = if !flags.inputs.is_empty() {
        (flags.inputs, Origin::Flag("INPUT"))
    } else if let Some(declared) = declared.filter(|d| !d.file.inputs.is_empty()) {
        (declared.file.inputs.clone(), origin("inputs"))
    } else if !stdin_is_terminal {
        (vec![PathBuf::from("-")], Origin::Stdin)
    } else {
        let key = script.to_string_lossy().into_owned();
        return Err(PipelineError::NoInputs {
            script: script.display().to_string(),
            settings: settings
                .map(|s| format!("`{}`", s.display()))
                .unwrap_or_else(|| "hybrid.toml".into()),
            key: declared.map(|d| d.key.clone()).unwrap_or(key),
        });
    };
    // `--out -` is stdout, also over a declared file.
    let (out, out_origin) = pick(
        vec![
            (flags.out.clone(), Origin::Flag("--out")),
            (d.and_then(|d| d.out.clone()), origin("out")),
        ],
        (PathBuf::from("-"), Origin::Default("records to stdout")),
    );
    let out = (out != Path::new("-")).then_some(out);
    let (emit_dir, emit_origin) = pick(
        vec![
            (flags.emit_dir.clone(), Origin::Flag("--emit-dir")),
            (d.and_then(|d| d.emit_dir.clone()), origin("emit_dir")),
        ],
        (
            output_dir(out.as_deref()),
            Origin::Default(if out.is_some() {
                "the folder of out"
            } else {
                "the current folder"
            }),
        ),
    );
    let (watch, watch_origin) = pick(
        vec![
            (flags.watch.then_some(true), Origin::Flag("--watch")),
            (d.and_then(|d| d.watch), origin("watch")),
        ],
        (false, Origin::Default("read the inputs once")),
    );
    let (move_done, move_origin) = pick(
        vec![
            (flags.move_done.then_some(true), Origin::Flag("--move-done")),
            (d.and_then(|d| d.move_done), origin("move_done")),
        ],
        (false, Origin::Default("processed files stay")),
    );
    if move_done && !watch {
        return Err(PipelineError::MoveDoneWithoutWatch);
    }
    let list = |ps: &[PathBuf]| {
        ps.iter()
            .map(|p| p.display().to_string())
            .collect::<Vec<_>>()
            .join(", ")
    };
    let shown = vec![
        Shown {
            name: "inputs",
            value: list(&inputs),
            origin: inputs_origin,
        },
        Shown {
            name: "out",
            value: out
                .as_ref()
                .map_or_else(|| "stdout".into(), |p| p.display().to_string()),
            origin: out_origin,
        },
        Shown {
            name: "emit_dir",
            value: emit_dir.display().to_string(),
            origin: emit_origin,
        },
        Shown {
            name: "watch",
            value: watch.to_string(),
            origin: watch_origin,
        },
        Shown {
            name: "move_done",
            value: move_done.to_string(),
            origin: move_origin,
        },
    ];
    Ok(RunSettings {
        inputs,
        out,
        emit_dir,
        watch,
        move_done,
        shown,
    })
}

/// Whether this process's standard input is a terminal (nobody piped documents in).
pub fn stdin_is_terminal() -> bool {
    std::io::stdin().is_terminal()
}

/// The folder results are written to: that of `out`, else the current one.
pub fn output_dir(out: Option<&Path>) -> PathBuf {
    out.and_then(|o| o.parent())
        .filter(|p| !p.as_os_str().is_empty())
        .map_or_else(|| PathBuf::from("."), |p| p.to_owned())
}

/// `hybrid check`'s look at declared paths: inputs exist; every output's folder is a folder
/// or can be made.
pub fn check_paths(run: &RunSettings, audit: &Path, shown: &[Shown]) -> Vec<PipelineError> {
    let origin_of = |name: &str| {
        shown
            .iter()
            .find(|s| s.name == name)
            .map(|s| s.origin.clone())
            .unwrap_or(Origin::Default(""))
    };
    let mut problems = Vec::new();
    for input in &run.inputs {
        let queue = input.to_str().is_some_and(crate::fleet::is_address);
        if input != Path::new("-") && !queue && !input.exists() {
            problems.push(PipelineError::MissingInput {
                path: input.clone(),
                origin: origin_of("inputs"),
            });
        }
    }
    let outputs = [
        ("out", run.out.clone()),
        ("audit", Some(audit.to_owned())),
        ("emit_dir", Some(run.emit_dir.join("x"))),
    ];
    for (what, path) in outputs {
        let Some(path) = path else { continue };
        let dir = output_dir(Some(&path));
        // The nearest existing ancestor must be a folder for the rest to be made.
        let existing = dir.ancestors().find(|a| a.exists());
        if let Some(existing) = existing.filter(|a| !a.as_os_str().is_empty() && !a.is_dir()) {
            problems.push(PipelineError::NotAFolder {
                what,
                path: if what == "emit_dir" {
                    run.emit_dir.clone()
                } else {
                    path.clone()
                },
                dir: existing.to_owned(),
                origin: origin_of(what),
            });
        }
    }
    problems
}

#[cfg(test)]
mod tests {
    use super::*;

    fn flags(inputs: &[&str]) -> RunFlags {
        RunFlags {
            inputs: inputs.iter().map(PathBuf::from).collect(),
            ..RunFlags::default()
        }
    }

    fn declared(inputs: &[&str], out: Option<&str>) -> Declared {
        Declared {
            key: "scripts/x.rhai".into(),
            settings: PathBuf::from("hybrid.toml"),
            file: PipelineFile {
                inputs: inputs.iter().map(PathBuf::from).collect(),
                out: out.map(PathBuf::from),
                ..PipelineFile::default()
            },
        }
    }

    #[test]
    fn flags_beat_declared_values_which_beat_defaults() {
        let d = declared(&["samples"], Some("results/x.jsonl"));
        let script = Path::new("scripts/x.rhai");
        let r = run_settings(script, flags(&[]), Some(&d), None, true).unwrap();
        assert_eq!(r.inputs, [PathBuf::from("samples")]);
        assert_eq!(r.out.as_deref(), Some(Path::new("results/x.jsonl")));
        assert_eq!(r.emit_dir, PathBuf::from("results"));
        assert_eq!(r.shown[0].origin, d.origin("inputs"));

        let mut f = flags(&["other"]);
        f.out = Some(PathBuf::from("-"));
        let r = run_settings(script, f, Some(&d), None, true).unwrap();
        assert_eq!(r.inputs, [PathBuf::from("other")]);
        assert_eq!(r.out, None, "`--out -` is stdout over a declared file");
        assert_eq!(r.shown[1].origin, Origin::Flag("--out"));
    }

    #[test]
    fn with_nothing_named_stdin_is_read_unless_it_is_a_terminal() {
        let script = Path::new("scripts/x.rhai");
        let r = run_settings(script, flags(&[]), None, None, false).unwrap();
        assert_eq!(r.inputs, [PathBuf::from("-")]);
        assert_eq!(r.shown[0].origin, Origin::Stdin);
        let err = run_settings(script, flags(&[]), None, None, true).unwrap_err();
        let text = err.to_string();
        assert!(text.contains("hint: pass INPUT"), "{text}");
        assert!(text.contains("[pipelines.\"scripts/x.rhai\"]"), "{text}");
    }

    #[test]
    fn bare_names_are_refused_and_paths_are_relative_to_the_settings_file() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("scripts")).unwrap();
        let script = dir.path().join("scripts/x.rhai");
        std::fs::write(&script, "fn process(doc) { 1 }").unwrap();
        let settings = dir.path().join("hybrid.toml");
        let mut tables = std::collections::BTreeMap::new();
        tables.insert(
            "scripts/x.rhai".to_owned(),
            PipelineFile {
                inputs: vec![PathBuf::from("samples")],
                ..PipelineFile::default()
            },
        );
        let found = super::declared(&tables, &script, Some(&settings))
            .unwrap()
            .unwrap();
        assert_eq!(found.file.inputs, [dir.path().join("samples")]);
        tables.insert("x".to_owned(), PipelineFile::default());
        assert!(matches!(
            super::declared(&tables, &script, Some(&settings)),
            Err(PipelineError::BareKey(_))
        ));
    }

    #[test]
    fn inputs_read_as_one_path_or_a_list() {
        let one: PipelineFile = toml::from_str("inputs = \"a\"").unwrap();
        let many: PipelineFile = toml::from_str("inputs = [\"a\", \"b\"]").unwrap();
        assert_eq!(one.inputs.len(), 1);
        assert_eq!(many.inputs.len(), 2);
        assert!(toml::from_str::<PipelineFile>("inptus = \"a\"").is_err());
    }
}
