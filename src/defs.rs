//! Editor support: Rhai definition files (`.d.rhai`) for the host functions and the embedded
//! standard library, so the Rhai language server (and its VS Code extension) completes and
//! documents `local`, `cloud`, `validate`, `both`, `sampled`, `emit` and `hybrid/*` in
//! pipeline scripts. Written by `hybrid defs [DIR]` from the same engine `hybrid run` uses,
//! with the doc comments the host functions are registered with, so they cannot drift.

use std::path::{Path, PathBuf};

use crate::bundle::STDLIB;
use crate::config::Limits;

#[derive(Debug, thiserror::Error)]
pub enum DefsError {
    #[error("cannot write definitions into `{dir}`: {source}\nhint: pass another folder: `hybrid defs DIR`")]
    Write {
        dir: PathBuf,
        source: std::io::Error,
    },
    #[error("the embedded module `hybrid/{name}` does not compile: {message}")]
    Stdlib { name: String, message: String },
}

/// A file to write: its path under the definitions folder and its text.
pub struct DefFile {
    pub path: PathBuf,
    pub text: String,
}

/// Every definition file: the host functions (`__static__.d.rhai`), Rhai's own functions and
/// operators, and one `hybrid/NAME.d.rhai` per standard-library module, declared as
/// `module "hybrid/NAME";` so `import "hybrid/NAME" as x;` finds it.
pub fn files() -> Result<Vec<DefFile>, DefsError> {
    let engine = crate::host::new_engine(&Limits::default());
    let defs = engine.definitions().include_standard_packages(true);
    let mut out = vec![
        DefFile {
            path: PathBuf::from("__builtin__.d.rhai"),
            text: format!("module static;\n\n{}", defs.builtin_functions()),
        },
        DefFile {
            path: PathBuf::from("__builtin-operators__.d.rhai"),
            text: format!("module static;\n\n{}", defs.builtin_functions_operators()),
        },
        DefFile {
            path: PathBuf::from("__static__.d.rhai"),
            text: format!(
                "module static;\n\n{}",
                engine
                    .definitions()
                    .include_standard_packages(false)
                    .static_module()
            ),
        },
    ];
    for (name, text) in STDLIB {
        let ast = engine.compile(text).map_err(|e| DefsError::Stdlib {
            name: (*name).to_owned(),
            message: e.to_string(),
        })?;
        out.push(DefFile {
            path: Path::new("hybrid").join(format!("{name}.d.rhai")),
            text: module_definitions(name, &ast),
        });
    }
    Ok(out)
}

/// `module "hybrid/NAME";` and each public function of the module with its doc comments.
/// Script functions are untyped, so parameters and results are `?`.
fn module_definitions(name: &str, ast: &rhai::AST) -> String {
    let mut text = String::new();
    for line in ast.doc().lines() {
        text.push_str(&format!("/// {}\n", line.trim_start_matches("//!").trim()));
    }
    text.push_str(&format!("module \"hybrid/{name}\";\n"));
    for f in ast.iter_functions() {
        if f.access == rhai::FnAccess::Private {
            continue;
        }
        text.push('\n');
        for comment in f.comments {
            text.push_str(comment);
            text.push('\n');
        }
        let params: Vec<String> = f.params.iter().map(|p| format!("{p}: ?")).collect();
        text.push_str(&format!("fn {}({}) -> ?;\n", f.name, params.join(", ")));
    }
    text
}

/// Writes [`files`] under `dir`, returning the paths written.
pub fn write(dir: &Path) -> Result<Vec<PathBuf>, DefsError> {
    let fail = |source| DefsError::Write {
        dir: dir.to_owned(),
        source,
    };
    let mut written = Vec::new();
    for file in files()? {
        let path = dir.join(&file.path);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).map_err(fail)?;
        }
        std::fs::write(&path, file.text).map_err(fail)?;
        written.push(path);
    }
    Ok(written)
}
