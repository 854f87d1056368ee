//! Live-reload benchmark, run with `cargo bench --profile dev --bench reload`.
//!
//! A watching host takes a steady stream of documents into its inbox (one every 20 ms) while
//! the script is saved 100 times, every third save broken. Reported: time from saving a good
//! version to the first record produced by it (p50/p99), and how many documents failed across
//! all the reloads (the broken saves must cost none). Nothing is asserted.

use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

fn script(n: usize) -> String {
    format!("const N = {n};\nfn process(doc) {{ #{{ n: N, len: doc.text.len() }} }}\n")
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

/// The version of the first record whose `n` is `n`, if any yet.
fn first_with(out: &Path, n: usize) -> bool {
    std::fs::read_to_string(out)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .any(|r| r["result"]["n"] == n)
}

fn main() {
    let saves: usize = std::env::var("BENCH_SAVES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100);
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    std::fs::create_dir_all(root.join("inbox")).unwrap();
    std::fs::write(root.join("s.rhai"), script(0)).unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_hybrid"))
        .args([
            "-q",
            "run",
            "--watch",
            "s.rhai",
            "inbox",
            "--out",
            "out.jsonl",
            "--settle-ms",
            "50",
            "--move-done",
        ])
        .current_dir(root)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start hybrid");
    std::thread::sleep(Duration::from_millis(500));

    // Steady load.
    let stop = Arc::new(AtomicBool::new(false));
    let feeder = {
        let (stop, inbox) = (stop.clone(), root.join("inbox"));
        std::thread::spawn(move || {
            let mut i = 0u64;
            while !stop.load(Ordering::Relaxed) {
                let tmp = inbox.join(format!(".doc-{i}.tmp"));
                std::fs::File::create(&tmp)
                    .unwrap()
                    .write_all(format!("document {i}").as_bytes())
                    .unwrap();
                std::fs::rename(&tmp, inbox.join(format!("doc-{i}.txt"))).unwrap();
                i += 1;
                std::thread::sleep(Duration::from_millis(20));
            }
            i
        })
    };

    let out = root.join("out.jsonl");
    let mut latencies = Vec::new();
    let mut version = 0;
    for save in 1..=saves {
        let broken = save % 3 == 0;
        let saved = Instant::now();
        if broken {
            std::fs::write(root.join("s.rhai"), "const N = ;\nfn process(doc) {\n").unwrap();
            std::thread::sleep(Duration::from_millis(300));
            continue;
        }
        version += 1;
        std::fs::write(root.join("s.rhai"), script(version)).unwrap();
        while !first_with(&out, version) {
            if saved.elapsed() > Duration::from_secs(10) {
                panic!("version {version} never produced a record");
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        latencies.push(saved.elapsed().as_secs_f64() * 1000.0);
    }
    stop.store(true, Ordering::Relaxed);
    let fed = feeder.join().unwrap();
    std::thread::sleep(Duration::from_millis(1500));
    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    let _ = child.wait();

    let records: Vec<serde_json::Value> = std::fs::read_to_string(&out)
        .unwrap()
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect();
    let failed = records.iter().filter(|r| r["ok"] != true).count();
    latencies.sort_by(|a, b| a.partial_cmp(b).unwrap());
    println!(
        "reload under load: {saves} saves ({} broken), {fed} documents fed, {} records",
        saves / 3,
        records.len()
    );
    println!(
        "  save -> first record of the new version: p50 {:.0} ms, p99 {:.0} ms (min {:.0}, max {:.0}; {} good saves)",
        percentile(&latencies, 0.5),
        percentile(&latencies, 0.99),
        latencies[0],
        latencies[latencies.len() - 1],
        latencies.len()
    );
    println!("  failed documents across all reloads: {failed}");
}
