//! What-if speed, run with `cargo bench --profile dev --bench replay`.
//!
//! 10,000 short contracts (`BENCH_DOCS`) through `scripts/contract_triage.rhai` against a
//! loopback model server that answers after `BENCH_LATENCY_MS` (default 50) per call, at
//! `--jobs 16`: the real run that fills the answer cache, then `--replay` of the same traffic
//! with `ESCALATE_BELOW` changed (no model called), then `hybrid diff` of the two result files.
//! Reported: wall time of each (replay and diff: median of 3) and replay throughput. The
//! loopback server gives every contract the same triage, so the cloud requests (which carry
//! only that JSON) are identical and all but the first few are answered by the cache already
//! in the real run: its time is the local model's latency. `BENCH_KEEP=1` keeps the folder.

#[path = "../tests/it/openai_stub.rs"]
mod openai_stub;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use openai_stub::StubServer;

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &to.join(entry.file_name()));
        } else {
            std::fs::copy(entry.path(), to.join(entry.file_name())).unwrap();
        }
    }
}

fn timed(mut command: Command) -> Duration {
    let started = Instant::now();
    let status = command
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .status()
        .expect("run hybrid");
    assert!(status.success(), "{command:?} failed");
    started.elapsed()
}

fn median(mut xs: Vec<Duration>) -> Duration {
    xs.sort();
    xs[xs.len() / 2]
}

fn main() {
    let docs: usize = std::env::var("BENCH_DOCS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10_000);
    let latency = Duration::from_millis(
        std::env::var("BENCH_LATENCY_MS")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(50),
    );
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let work = tempfile::tempdir().unwrap();
    let p = work.path();
    if std::env::var("BENCH_KEEP").is_ok() {
        eprintln!("work folder: {}", p.display());
    }
    for dir in ["scripts", "schemas", "stdlib"] {
        copy_dir(&root.join(dir), &p.join(dir));
    }
    let lines: String = (0..docs)
        .map(|i| {
            format!(
                "{{\"id\": \"c{i}\", \"text\": \"CONTRATO No. {i}: servicios de soporte entre Distribuidora La Sabana S.A.S. y DataAndes S.A.S. por {} millones COP.\"}}\n",
                i % 97 + 3
            )
        })
        .collect();
    std::fs::write(p.join("docs.jsonl"), lines).unwrap();
    let server = StubServer::conforming(latency);
    let url = server.url();
    let hybrid = |args: &[&str]| {
        let mut c = Command::new(env!("CARGO_BIN_EXE_hybrid"));
        c.args([
            "-q",
            "run",
            "scripts/contract_triage.rhai",
            "docs.jsonl",
            "--no-progress",
            "--jobs",
            "16",
            "--local-url",
            &url,
            "--cloud-url",
            &url,
            "--overwrite",
        ])
        .args(args)
        .current_dir(p)
        .env_remove("OPENAI_API_KEY");
        c
    };
    let real = timed(hybrid(&["--out", "before.jsonl"]));
    let calls = server.requests().len();
    let script = p.join("scripts/contract_triage.rhai");
    let text = std::fs::read_to_string(&script).unwrap();
    std::fs::write(
        &script,
        text.replace(
            "const ESCALATE_BELOW = 0.75;",
            "const ESCALATE_BELOW = 0.0;",
        ),
    )
    .unwrap();
    let replays: Vec<Duration> = (0..3)
        .map(|_| timed(hybrid(&["--replay", "--out", "after.jsonl"])))
        .collect();
    assert_eq!(server.requests().len(), calls, "a replay calls no model");
    let diffs: Vec<Duration> = (0..3)
        .map(|_| {
            let mut c = Command::new(env!("CARGO_BIN_EXE_hybrid"));
            c.args(["diff", "before.jsonl", "after.jsonl"])
                .current_dir(p);
            timed(c)
        })
        .collect();
    let replay = median(replays);
    println!(
        "{docs} documents, {calls} model calls at {} ms each, --jobs 16",
        latency.as_millis()
    );
    println!("  real run            {:>8.2} s", real.as_secs_f64());
    println!(
        "  --replay            {:>8.2} s  ({:.0} documents/s, {:.0}x faster than the real run; median of 3)",
        replay.as_secs_f64(),
        docs as f64 / replay.as_secs_f64(),
        real.as_secs_f64() / replay.as_secs_f64()
    );
    println!(
        "  hybrid diff         {:>8.2} s  (median of 3)",
        median(diffs).as_secs_f64()
    );
}
