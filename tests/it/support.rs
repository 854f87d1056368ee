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

    /// Edits a rule in `scripts/SCRIPT`, failing the test if the rule is not there (so a
    /// renamed constant cannot quietly make a test check nothing).
    pub fn set_constant(&self, script: &str, from: &str, to: &str) {
        let path = format!("scripts/{script}");
        let text = std::fs::read_to_string(self.path(&path)).unwrap();
        assert!(text.contains(from), "{script} has no `{from}`");
        self.write(&path, text.replace(from, to));
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

/// A `hybrid` process left running (for `--watch`), with its stdout and stderr in files.
pub struct Running {
    pub child: std::process::Child,
    pub stderr: PathBuf,
}

impl Project {
    /// Starts `hybrid ARGS...` in the background.
    pub fn spawn(&self, args: &[&str]) -> Running {
        let stderr = self.path(&format!(
            "stderr-{}.log",
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos()
        ));
        let run = self.hybrid(args);
        let mut cmd = run.cmd;
        cmd.stdout(Stdio::null())
            .stderr(std::fs::File::create(&stderr).unwrap());
        Running {
            child: cmd.spawn().unwrap(),
            stderr,
        }
    }
}

impl Running {
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.stderr).unwrap_or_default()
    }

    /// Sends a signal (`INT`, `TERM`) and waits for the exit code.
    pub fn stop(mut self, signal: &str) -> i32 {
        Command::new("kill")
            .args([&format!("-{signal}"), &self.child.id().to_string()])
            .status()
            .unwrap();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status.code().unwrap_or(-1);
            }
            assert!(
                std::time::Instant::now() < deadline,
                "hybrid did not stop:\n{}",
                self.log()
            );
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Polls until `check` returns `Some`, or panics after `secs` with `what`.
pub fn wait_for<T>(secs: u64, what: &str, mut check: impl FnMut() -> Option<T>) -> T {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(secs);
    loop {
        if let Some(v) = check() {
            return v;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}

/// The lines of an audit log, each parsed (a line that is not JSON fails the test).
pub fn audit_lines(path: &Path) -> Vec<Value> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// The records in a JSONL results file (a torn last line is ignored).
pub fn read_records(path: &Path) -> Vec<Value> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

/// A small, valid one-page PDF whose text is `lines` (Latin-1 text, WinAnsi encoding).
/// With `encrypted`, the trailer claims an encryption dictionary, as a locked PDF's does.
pub fn make_pdf(lines: &[&str], encrypted: bool) -> Vec<u8> {
    let mut content = String::from("BT /F1 11 Tf 72 740 Td 14 TL\n");
    for line in lines {
        let escaped: String = line
            .chars()
            .map(|c| match c {
                '(' | ')' | '\\' => format!("\\{c}"),
                c if (c as u32) < 128 => c.to_string(),
                c => format!("\\{:03o}", c as u32 & 0xff),
            })
            .collect();
        content.push_str(&format!("({escaped}) Tj T*\n"));
    }
    content.push_str("ET");
    let objects = [
        "<< /Type /Catalog /Pages 2 0 R >>".to_string(),
        "<< /Type /Pages /Kids [3 0 R] /Count 1 >>".to_string(),
        "<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents 4 0 R /Resources << /Font << /F1 5 0 R >> >> >>".to_string(),
        format!("<< /Length {} >>\nstream\n{content}\nendstream", content.len()),
        "<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica /Encoding /WinAnsiEncoding >>".to_string(),
        "<< /Filter /Standard /V 2 /R 3 /Length 128 /P -4 /O <00> /U <00> >>".to_string(),
    ];
    let count = if encrypted { 6 } else { 5 };
    let mut pdf = b"%PDF-1.4\n".to_vec();
    let mut offsets = Vec::new();
    for (i, body) in objects.iter().take(count).enumerate() {
        offsets.push(pdf.len());
        pdf.extend_from_slice(format!("{} 0 obj\n{body}\nendobj\n", i + 1).as_bytes());
    }
    let xref = pdf.len();
    pdf.extend_from_slice(format!("xref\n0 {}\n0000000000 65535 f \n", count + 1).as_bytes());
    for off in offsets {
        pdf.extend_from_slice(format!("{off:010} 00000 n \n").as_bytes());
    }
    let encrypt = if encrypted {
        " /Encrypt 6 0 R /ID [<01> <01>]"
    } else {
        ""
    };
    pdf.extend_from_slice(
        format!(
            "trailer\n<< /Size {} /Root 1 0 R{encrypt} >>\nstartxref\n{xref}\n%%EOF\n",
            count + 1
        )
        .as_bytes(),
    );
    pdf
}

/// A one-page PDF whose page is only an image (as a scanner makes it): a 2×2 grey image
/// drawn over the page, no text operators.
pub fn make_image_pdf() -> Vec<u8> {
    let content = "q 612 0 0 792 0 0 cm /Im1 Do Q";
    let pixels = [0x20u8, 0xe0, 0xe0, 0x20];
    assemble_pdf(&[
        b"<< /Type /Catalog /Pages 2 0 R >>".to_vec(),
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>".to_vec(),
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents 4 0 R /Resources << /XObject << /Im1 5 0 R >> >> >>".to_vec(),
        format!("<< /Length {} >>\nstream\n{content}\nendstream", content.len()).into_bytes(),
        [
            b"<< /Type /XObject /Subtype /Image /Width 2 /Height 2 /ColorSpace /DeviceGray /BitsPerComponent 8 /Length 4 >>\nstream\n".to_vec(),
            pixels.to_vec(),
            b"\nendstream".to_vec(),
        ]
        .concat(),
    ])
}

/// A two-page PDF: page 1 text (`line`), page 2 a scanned image (4×2 grey, no text).
pub fn make_mixed_pdf(line: &str) -> Vec<u8> {
    let text = format!("BT /F1 11 Tf 72 740 Td ({line}) Tj ET");
    let draw = "q 612 0 0 792 0 0 cm /Im1 Do Q";
    assemble_pdf(&[
        b"<< /Type /Catalog /Pages 2 0 R >>".to_vec(),
        b"<< /Type /Pages /Kids [3 0 R 5 0 R] /Count 2 >>".to_vec(),
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents 4 0 R /Resources << /Font << /F1 7 0 R >> >> >>".to_vec(),
        format!("<< /Length {} >>\nstream\n{text}\nendstream", text.len()).into_bytes(),
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents 6 0 R /Resources << /XObject << /Im1 8 0 R >> >> >>".to_vec(),
        format!("<< /Length {} >>\nstream\n{draw}\nendstream", draw.len()).into_bytes(),
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica /Encoding /WinAnsiEncoding >>".to_vec(),
        [
            b"<< /Type /XObject /Subtype /Image /Width 4 /Height 2 /ColorSpace /DeviceGray /BitsPerComponent 8 /Length 8 >>\nstream\n".to_vec(),
            vec![0x10, 0x40, 0x80, 0xf0, 0xf0, 0x80, 0x40, 0x10],
            b"\nendstream".to_vec(),
        ]
        .concat(),
    ])
}

/// A PDF file of these objects (numbered from 1, the first the catalog), with its
/// cross-reference table and trailer.
pub fn assemble_pdf(objects: &[Vec<u8>]) -> Vec<u8> {
    let mut pdf = b"%PDF-1.4\n".to_vec();
    let mut offsets = Vec::new();
    for (i, body) in objects.iter().enumerate() {
        offsets.push(pdf.len());
        pdf.extend_from_slice(format!("{} 0 obj\n", i + 1).as_bytes());
        pdf.extend_from_slice(body);
        pdf.extend_from_slice(b"\nendobj\n");
    }
    let xref = pdf.len();
    pdf.extend_from_slice(
        format!("xref\n0 {}\n0000000000 65535 f \n", objects.len() + 1).as_bytes(),
    );
    for off in offsets {
        pdf.extend_from_slice(format!("{off:010} 00000 n \n").as_bytes());
    }
    pdf.extend_from_slice(
        format!(
            "trailer\n<< /Size {} /Root 1 0 R >>\nstartxref\n{xref}\n%%EOF\n",
            objects.len() + 1
        )
        .as_bytes(),
    );
    pdf
}

/// A pseudo-terminal: the end a child gets as its stdin or stderr (it is a terminal to it),
/// and the end the test reads what it shows from.
pub fn pseudo_terminal() -> (std::fs::File, std::fs::File) {
    use std::os::fd::FromRawFd;
    let (mut leader, mut follower) = (0, 0);
    let made = unsafe {
        libc::openpty(
            &mut leader,
            &mut follower,
            std::ptr::null_mut(),
            std::ptr::null(),
            std::ptr::null(),
        )
    };
    assert_eq!(made, 0, "openpty");
    unsafe {
        (
            std::fs::File::from_raw_fd(follower),
            std::fs::File::from_raw_fd(leader),
        )
    }
}

/// A loopback port nothing listens on (now).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// The first of `candidates` that runs (`--version`), or a failure naming how to install it.
pub fn installed(candidates: &[&'static str], install: &str) -> &'static str {
    candidates
        .iter()
        .copied()
        .find(|b| {
            Command::new(b)
                .arg("--version")
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .is_ok()
        })
        .unwrap_or_else(|| {
            panic!(
                "{} is not installed ({install}; .ci/run does it)",
                candidates[0]
            )
        })
}

/// Waits until something listens on the loopback `port`.
pub fn wait_listening(port: u16, what: &str) {
    wait_for(20, what, || {
        std::net::TcpStream::connect(("127.0.0.1", port))
            .ok()
            .map(|_| ())
    });
}
