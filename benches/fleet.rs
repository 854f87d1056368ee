//! The fleet, run with `cargo bench --profile dev --bench fleet`.
//!
//! `BENCH_DOCS` (default 10,000) documents through a one-call pipeline whose model, a
//! loopback stand-in, answers after `BENCH_LATENCY_MS` (default 50). Each worker runs
//! `--jobs BENCH_JOBS` (default 4), so the model's latency, not this 2-core machine's CPU,
//! bounds a worker: 1, 2 and 4 worker processes on a real `nats-server -js` (a fresh stream
//! each), timed from the workers' start to the last result stored. Reported: documents per
//! second, scaling efficiency (rate at N ÷ N × rate at 1), and CPU per document (user + sys
//! of the worker processes) against the same documents from a local JSONL file with one
//! process at the same `--jobs`: what the queue path adds per document. Numbers are printed,
//! never asserted: this machine is shared and noisy.

#[path = "../tests/it/openai_stub.rs"]
mod openai_stub;
#[path = "../tests/it/support.rs"]
mod support;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use openai_stub::StubServer;

const SCRIPT: &str = "fn process(doc) { cloud(#{ input: #{ id: doc.id, n: doc.text.len() } }) }\n";

fn env_or(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn hybrid(dir: &Path, args: &[&str]) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_hybrid"));
    cmd.arg("--quiet")
        .args(args)
        .current_dir(dir)
        .env("HYBRID_LOG", "warn")
        .env_remove("OPENAI_API_KEY")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::inherit());
    cmd
}

/// CPU (user + sys) of a child, once it has ended.
fn reap(child: Child) -> Duration {
    let pid = child.id() as libc::pid_t;
    let mut status = 0;
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    let reaped = unsafe { libc::wait4(pid, &mut status, 0, &mut usage) };
    assert_eq!(reaped, pid, "wait4 failed");
    std::mem::forget(child);
    let tv = |t: libc::timeval| Duration::new(t.tv_sec as u64, t.tv_usec as u32 * 1000);
    tv(usage.ru_utime) + tv(usage.ru_stime)
}

fn stored(dir: &Path, queue: &str) -> u64 {
    let out = hybrid(dir, &["fleet", "status", "--queue", queue, "--json"])
        .stdout(Stdio::piped())
        .output()
        .expect("fleet status");
    let status: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
    status["results"].as_u64().unwrap_or(0)
}

fn main() {
    let docs = env_or("BENCH_DOCS", 10_000);
    let latency = Duration::from_millis(env_or("BENCH_LATENCY_MS", 50));
    let jobs = env_or("BENCH_JOBS", 4).to_string();
    let nats_binary = ["nats-server", "/usr/sbin/nats-server"]
        .into_iter()
        .find(|b| {
            Command::new(b)
                .arg("--version")
                .stdout(Stdio::null())
                .status()
                .is_ok()
        });
    let Some(nats_binary) = nats_binary else {
        eprintln!("nats-server is not installed (apt-get install nats-server): nothing to measure");
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let root: PathBuf = dir.path().to_owned();
    std::fs::create_dir_all(root.join("scripts")).unwrap();
    std::fs::write(root.join("scripts/bench.rhai"), SCRIPT).unwrap();
    let input: String = (0..docs)
        .map(|i| format!("{{\"id\": \"doc-{i}\", \"text\": \"contrato de prueba número {i}\"}}\n"))
        .collect();
    std::fs::write(root.join("docs.jsonl"), input).unwrap();

    let port = support::free_port();
    let mut nats = Command::new(nats_binary)
        .args(["-js", "-a", "127.0.0.1", "-p", &port.to_string(), "-sd"])
        .arg(root.join("jetstream"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start nats-server");
    support::wait_listening(port, "nats-server to listen");
    let model = StubServer::conforming(latency);
    let url = model.url();
    let worker_args = |queue: &str| -> Vec<String> {
        [
            "run",
            "scripts/bench.rhai",
            queue,
            "--cloud-url",
            &url,
            "--jobs",
            &jobs,
            "--cache",
            "off",
            "--no-progress",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect()
    };

    println!(
        "{docs} documents, model answers in {} ms, --jobs {jobs} per worker",
        latency.as_millis()
    );
    // The same documents from a file, one process: the baseline CPU per document.
    let started = Instant::now();
    let mut args = worker_args("docs.jsonl");
    args.extend(["--out".into(), "file.jsonl".into()]);
    let child = hybrid(&root, &args.iter().map(String::as_str).collect::<Vec<_>>())
        .spawn()
        .unwrap();
    let file_cpu = reap(child);
    let file_wall = started.elapsed();
    let file_cpu_ms = file_cpu.as_secs_f64() * 1000.0 / docs as f64;
    println!(
        "file input, 1 process : {:>7.1} docs/s   CPU {:.3} ms/doc",
        docs as f64 / file_wall.as_secs_f64(),
        file_cpu_ms
    );

    let mut rate_one = 0.0;
    for workers in [1usize, 2, 4] {
        let queue = format!("nats://127.0.0.1:{port}/bench{workers}");
        let submitted = Instant::now();
        let status = hybrid(&root, &["submit", &queue, "docs.jsonl"])
            .status()
            .unwrap();
        assert!(status.success(), "submit failed");
        let submit_s = submitted.elapsed().as_secs_f64();
        let started = Instant::now();
        let children: Vec<Child> = (0..workers)
            .map(|i| {
                let mut args = worker_args(&queue);
                args.extend(["--out".into(), format!("w{workers}-{i}.jsonl")]);
                hybrid(&root, &args.iter().map(String::as_str).collect::<Vec<_>>())
                    .spawn()
                    .unwrap()
            })
            .collect();
        while stored(&root, &queue) < docs {
            std::thread::sleep(Duration::from_millis(200));
        }
        let wall = started.elapsed().as_secs_f64();
        let mut cpu = Duration::ZERO;
        for child in children {
            let _ = Command::new("kill")
                .args(["-TERM", &child.id().to_string()])
                .status();
            cpu += reap(child);
        }
        let rate = docs as f64 / wall;
        if workers == 1 {
            rate_one = rate;
        }
        let cpu_ms = cpu.as_secs_f64() * 1000.0 / docs as f64;
        println!(
            "queue, {workers} worker(s)    : {rate:>7.1} docs/s   efficiency {:.2}   CPU {cpu_ms:.3} ms/doc ({:+.3} vs file)   submit {:.0} docs/s",
            rate / (rate_one * workers as f64),
            cpu_ms - file_cpu_ms,
            docs as f64 / submit_s
        );
    }
    let _ = nats.kill();
    let _ = nats.wait();
}
