//! Host benchmarks, run with `cargo bench --bench host`.
//!
//! 1. Host overhead per document (script + validate + record) with instant model answers
//!    from a loopback stub, against the same run with no model call at all.
//! 2. Throughput against a stub cloud that takes 200 ms per answer, at several `--jobs`.
//! 3. `both(local, cloud)` against the same two calls one after the other (300 ms stubs).
//!
//! Each figure is the median of several runs of the real binary. Numbers are printed, never
//! asserted: this machine is shared and noisy.

#[path = "../tests/it/openai_stub.rs"]
mod openai_stub;

use std::io::Write;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use openai_stub::StubServer;

const SCHEMA: &str = r#"{"type": "object", "additionalProperties": false,
  "properties": {"label": {"type": "string", "enum": ["ok", "risky"]}, "score": {"type": "number"}},
  "required": ["label", "score"]}"#;

const WITH_CLOUD: &str = r#"
fn process(doc) {
    let v = cloud(doc.text, "verdict");
    let check = validate(v, "verdict");
    #{ verdict: v, valid: check.valid }
}
"#;

const NO_MODEL: &str = r#"
fn process(doc) {
    let v = #{ label: "ok", score: 0.5 };
    let check = validate(v, "verdict");
    #{ verdict: v, valid: check.valid }
}
"#;

const BOTH: &str = r#"
fn process(doc) {
    let ask = #{ prompt: doc.text, schema: "verdict" };
    let pair = both(ask, ask);
    #{ local: pair.local, cloud: pair.cloud }
}
"#;

const ONE_AFTER_THE_OTHER: &str = r#"
fn process(doc) {
    let ask = #{ prompt: doc.text, schema: "verdict" };
    #{ local: local(ask), cloud: cloud(ask) }
}
"#;

fn median(mut xs: Vec<f64>) -> f64 {
    xs.sort_by(|a, b| a.partial_cmp(b).unwrap());
    xs[xs.len() / 2]
}

fn run(dir: &std::path::Path, script: &str, url: &str, docs: usize, jobs: usize) -> Duration {
    run_with(dir, script, url, docs, jobs, &[])
}

fn run_with(
    dir: &std::path::Path,
    script: &str,
    url: &str,
    docs: usize,
    jobs: usize,
    extra: &[&str],
) -> Duration {
    let input: String = (0..docs)
        .map(|i| format!("{{\"id\": \"d{i}\", \"text\": \"document number {i}\"}}\n"))
        .collect();
    let started = Instant::now();
    let mut child = Command::new(env!("CARGO_BIN_EXE_hybrid"))
        .args([
            "-q",
            "run",
            script,
            "-",
            "--no-progress",
            "--cloud-url",
            url,
            "--jobs",
            &jobs.to_string(),
            // Every run pays for its calls.
            "--cache",
            "off",
        ])
        .args(extra)
        .current_dir(dir)
        .env_remove("OPENAI_API_KEY")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("run hybrid");
    let mut stdin = child.stdin.take().unwrap();
    let writer = std::thread::spawn(move || stdin.write_all(input.as_bytes()));
    let out = child.wait_with_output().unwrap();
    writer.join().unwrap().unwrap();
    let elapsed = started.elapsed();
    assert!(out.status.success(), "hybrid failed");
    assert_eq!(String::from_utf8_lossy(&out.stdout).lines().count(), docs);
    elapsed
}

fn main() {
    let runs: usize = std::env::var("BENCH_RUNS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(5);
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("schemas")).unwrap();
    std::fs::write(dir.path().join("schemas/verdict.json"), SCHEMA).unwrap();
    std::fs::write(dir.path().join("with_cloud.rhai"), WITH_CLOUD).unwrap();
    std::fs::write(dir.path().join("no_model.rhai"), NO_MODEL).unwrap();
    std::fs::write(dir.path().join("both.rhai"), BOTH).unwrap();
    std::fs::write(dir.path().join("sequential.rhai"), ONE_AFTER_THE_OTHER).unwrap();

    println!("host overhead (median of {runs} runs, 2000 documents, --jobs 8)");
    let instant = StubServer::conforming(Duration::ZERO);
    let docs = 2000;
    let base = median(
        (0..runs)
            .map(|_| run(dir.path(), "no_model.rhai", &instant.url(), docs, 8).as_secs_f64())
            .collect(),
    );
    let cloud = median(
        (0..runs)
            .map(|_| run(dir.path(), "with_cloud.rhai", &instant.url(), docs, 8).as_secs_f64())
            .collect(),
    );
    println!(
        "  script + validate + record:              {:>8.1} µs/doc ({:.2} s total, incl. start-up)",
        base * 1e6 / docs as f64,
        base
    );
    println!(
        "  + one cloud() call to an instant stub:   {:>8.1} µs/doc ({:.2} s total)",
        cloud * 1e6 / docs as f64,
        cloud
    );

    println!("\nthroughput against a 200 ms stub cloud (median of {runs} runs, 64 documents)");
    let slow = StubServer::conforming(Duration::from_millis(200));
    let docs = 64;
    let mut first = None;
    for jobs in [1, 4, 16, 32] {
        let t = median(
            (0..runs)
                .map(|_| run(dir.path(), "with_cloud.rhai", &slow.url(), docs, jobs).as_secs_f64())
                .collect(),
        );
        let rate = docs as f64 / t;
        let base = *first.get_or_insert(rate);
        let ideal =
            (jobs as f64 / 0.2).min(docs as f64 / (0.2 * (docs as f64 / jobs as f64).ceil()));
        println!(
            "  --jobs {jobs:>2}: {rate:>7.1} docs/s  ({:.1}x --jobs 1; ideal {ideal:.1} docs/s)",
            rate / base
        );
    }

    println!("\nboth(): local and cloud at once (median of {runs} runs, 10 documents, --jobs 1, 300 ms stubs)");
    let local = StubServer::conforming(Duration::from_millis(300));
    let cloud = StubServer::conforming(Duration::from_millis(300));
    let local_url = local.url();
    let extra = ["--local-url", local_url.as_str()];
    let pair = median(
        (0..runs)
            .map(|_| run_with(dir.path(), "both.rhai", &cloud.url(), 10, 1, &extra).as_secs_f64())
            .collect(),
    );
    let seq = median(
        (0..runs)
            .map(|_| {
                run_with(dir.path(), "sequential.rhai", &cloud.url(), 10, 1, &extra).as_secs_f64()
            })
            .collect(),
    );
    println!("  both(local, cloud):      {:>6.0} ms/doc", pair * 100.0);
    println!(
        "  local() then cloud():    {:>6.0} ms/doc  (both() takes {:.2}x the sequential time)",
        seq * 100.0,
        pair / seq
    );
}
