//! Drives the real `hybrid` binary in a temp directory, as a user would.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use serde_json::Value;

/// A scratch project: a temp dir with `scripts/`, `schemas/` and whatever a test writes.
pub struct Project {
    pub dir: tempfile::TempDir,
}

impl Project {
    pub fn new() -> Project {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("scripts")).unwrap();
        std::fs::create_dir_all(dir.path().join("schemas")).unwrap();
        Project { dir }
    }

    pub fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    pub fn write(&self, rel: &str, contents: impl AsRef<[u8]>) -> PathBuf {
        let path = self.path(rel);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, contents).unwrap();
        path
    }

    /// `hybrid ARGS...` run in the project directory, with no API key and no inherited
    /// endpoint settings.
    pub fn hybrid(&self, args: &[&str]) -> Run {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_hybrid"));
        cmd.args(args)
            .current_dir(self.dir.path())
            .env_remove("OPENAI_API_KEY")
            .env_remove("OPENAI_BASE_URL")
            .env_remove("HYBRID_LOCAL_MODEL")
            .env_remove("HYBRID_CLOUD_MODEL")
            .env("HYBRID_CACHE_DIR", cache_dir())
            .env("HYBRID_LOG", "warn,hybrid=info")
            .stdin(Stdio::null());
        Run { cmd, stdin: None }
    }
}

/// One cache for the whole test run, so the tiny model is written once.
pub fn cache_dir() -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("hybrid-cache");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

pub struct Run {
    pub cmd: Command,
    stdin: Option<Vec<u8>>,
}

impl Run {
    pub fn env(mut self, k: &str, v: &str) -> Run {
        self.cmd.env(k, v);
        self
    }

    pub fn stdin(mut self, data: impl Into<Vec<u8>>) -> Run {
        self.stdin = Some(data.into());
        self
    }

    pub fn output(mut self) -> Done {
        let output = match self.stdin {
            None => self.cmd.output().unwrap(),
            Some(data) => {
                use std::io::Write;
                let mut child = self
                    .cmd
                    .stdin(Stdio::piped())
                    .stdout(Stdio::piped())
                    .stderr(Stdio::piped())
                    .spawn()
                    .unwrap();
                child.stdin.take().unwrap().write_all(&data).unwrap();
                child.wait_with_output().unwrap()
            }
        };
        Done(output)
    }
}

pub struct Done(pub Output);

impl Done {
    pub fn code(&self) -> i32 {
        self.0.status.code().unwrap_or(-1)
    }
    pub fn stdout(&self) -> String {
        String::from_utf8_lossy(&self.0.stdout).into_owned()
    }
    pub fn stderr(&self) -> String {
        String::from_utf8_lossy(&self.0.stderr).into_owned()
    }
    /// Asserts the exit code, showing stderr when it is not the expected one.
    pub fn expect_code(self, code: i32) -> Done {
        assert_eq!(
            self.code(),
            code,
            "exit code; stderr:\n{}\nstdout:\n{}",
            self.stderr(),
            self.stdout()
        );
        self
    }
    /// The result records on stdout, by document id.
    pub fn records(&self) -> Vec<Value> {
        self.stdout()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
            .collect()
    }
    pub fn record(&self, id: &str) -> Value {
        self.records()
            .into_iter()
            .find(|r| r["id"] == id)
            .unwrap_or_else(|| panic!("no record `{id}` in:\n{}", self.stdout()))
    }
}
