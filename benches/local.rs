//! Local model benchmarks, run with `cargo bench --profile dev --bench local`.
//!
//! For a tiny and a mid-size (~260M parameters) randomly initialised Gemma 4, unquantized and
//! with 4-bit in-situ quantization: load time, decode tokens/s (free text and
//! schema-constrained, same prompt), peak RSS, and N concurrent `local()` calls against the
//! same N one at a time. Each case runs in its own process so peak RSS is its own.
//! Figures are medians of several runs; nothing is asserted.

use std::sync::Arc;
use std::time::Instant;

use hybrid::models::mistral::{LocalModelConfig, MistralBackend};
use hybrid::models::{Backend, ModelRequest, RequestSchema};
use serde_json::json;

const CASES: &[(&str, &str, Option<&str>)] = &[
    ("tiny", "tiny", None),
    ("tiny q4k", "tiny", Some("q4k")),
    ("mid", "tiny-mid", None),
    ("mid q4k", "tiny-mid", Some("q4k")),
];

fn median(mut xs: Vec<f64>) -> f64 {
    xs.sort_by(|a, b| a.partial_cmp(b).unwrap());
    xs[xs.len() / 2]
}

fn peak_rss_mib() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|kb| kb.parse::<f64>().ok())
        .map_or(0.0, |kb| kb / 1024.0)
}

fn request(max_tokens: u32, constrained: bool) -> ModelRequest {
    let schema = json!({"type": "object", "additionalProperties": false,
        "required": ["label", "confidence", "summary"],
        "properties": {
            "label": {"type": "string", "enum": ["invoice", "contract", "other"]},
            "confidence": {"type": "number", "minimum": 0, "maximum": 1},
            "summary": {"type": "string"}}});
    ModelRequest {
        system: None,
        prompt: "Classify this document and summarise it: Contrato de prestación de servicios entre DataAndes S.A.S. y Distribuidora La Sabana Ltda.".into(),
        schema: constrained.then(|| RequestSchema::new("bench", Arc::new(schema), None)),
        max_tokens: Some(max_tokens),
        ..Default::default()
    }
}

/// Completion tokens and seconds for one call; a truncated answer still counts its tokens.
async fn decode(backend: &MistralBackend, req: &ModelRequest) -> (u64, f64) {
    let t = Instant::now();
    let tokens = match backend.complete(req).await {
        Ok(r) => r.usage.completion_tokens,
        Err(e) => e
            .usage
            .map(|u| u.completion_tokens)
            .unwrap_or_else(|| panic!("{e}")),
    };
    (tokens, t.elapsed().as_secs_f64())
}

async fn run_case(model: &str, isq: Option<&str>) -> serde_json::Value {
    let cache = hybrid::config::default_cache_dir();
    let big = model != "tiny";
    let (max_tokens, runs, n) = if big { (16, 3, 4) } else { (128, 5, 8) };
    let backend = MistralBackend::new(LocalModelConfig {
        model: model.into(),
        isq: isq.map(str::to_owned),
        dtype: None,
        device: Some("cpu".into()),
        cache_dir: cache,
        max_num_seqs: None,
        test_sampling: true,
    });
    let t = Instant::now();
    if let Err(e) = backend.load().await {
        return json!({"error": e.to_string()});
    }
    let load_ms = t.elapsed().as_secs_f64() * 1000.0;
    let rates = |constrained: bool| {
        let req = request(max_tokens, constrained);
        let backend = &backend;
        async move {
            let mut xs = Vec::new();
            for _ in 0..runs {
                let (tokens, secs) = decode(backend, &req).await;
                xs.push(tokens as f64 / secs);
            }
            median(xs)
        }
    };
    let free = rates(false).await;
    let constrained = rates(true).await;

    let req = request(max_tokens, true);
    let t = Instant::now();
    for _ in 0..n {
        decode(&backend, &req).await;
    }
    let sequential = t.elapsed().as_secs_f64();
    let backend = Arc::new(backend);
    let t = Instant::now();
    let mut set = tokio::task::JoinSet::new();
    for _ in 0..n {
        let (backend, req) = (backend.clone(), req.clone());
        set.spawn(async move { decode(&backend, &req).await });
    }
    set.join_all().await;
    let concurrent = t.elapsed().as_secs_f64();

    json!({
        "load_ms": load_ms,
        "free_tok_s": free,
        "constrained_tok_s": constrained,
        "n": n,
        "sequential_s": sequential,
        "concurrent_s": concurrent,
        "peak_rss_mib": peak_rss_mib(),
    })
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if let Some(i) = args.iter().position(|a| a == "--case") {
        let model = &args[i + 1];
        let isq = args
            .get(i + 2)
            .filter(|s| !s.starts_with('-') && s.as_str() != "none");
        let rt = tokio::runtime::Runtime::new().unwrap();
        let out = rt.block_on(run_case(model, isq.map(String::as_str)));
        println!("{out}");
        return;
    }
    let only = std::env::var("BENCH_CASES").ok();
    println!(
        "local model (CPU, {} cores); medians; tokens/s per request",
        std::thread::available_parallelism().map_or(1, |n| n.get())
    );
    println!(
        "{:<10} {:>9} {:>10} {:>12} {:>9} {:>22}",
        "case", "load ms", "free tok/s", "constr tok/s", "peak MiB", "N concurrent vs serial"
    );
    for (name, model, isq) in CASES {
        if only
            .as_deref()
            .is_some_and(|o| !o.split(',').any(|c| c == *name))
        {
            continue;
        }
        let out = std::process::Command::new(&args[0])
            .args(["--case", model, isq.unwrap_or("none")])
            .env("HYBRID_LOG", "error")
            .output()
            .expect("run case");
        let line = String::from_utf8_lossy(&out.stdout);
        let v: serde_json::Value = serde_json::from_str(line.trim()).unwrap_or_else(|_| json!({"error": String::from_utf8_lossy(&out.stderr).lines().last().unwrap_or("crashed").to_owned()}));
        if let Some(e) = v.get("error") {
            println!(
                "{name:<10} failed: {}",
                e.as_str()
                    .unwrap_or_default()
                    .lines()
                    .next()
                    .unwrap_or_default()
            );
            continue;
        }
        let f = |k: &str| v[k].as_f64().unwrap_or(0.0);
        println!(
            "{name:<10} {:>9.0} {:>10.1} {:>12.1} {:>9.0} {:>6.2}s vs {:>6.2}s ({:.2}x, n={})",
            f("load_ms"),
            f("free_tok_s"),
            f("constrained_tok_s"),
            f("peak_rss_mib"),
            f("concurrent_s"),
            f("sequential_s"),
            f("sequential_s") / f("concurrent_s"),
            v["n"]
        );
    }
}
