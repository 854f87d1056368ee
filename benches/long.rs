//! Long documents, run with `cargo bench --profile dev --bench long`.
//!
//! The contract-triage pipeline (`scripts/contract_triage.rhai`: a local triage, then the
//! extracted JSON to the cloud) over contracts of about 1.5 KB, 17 KB and 100 KB, with both
//! models answered instantly by a loopback server, at `--jobs 1` and `--jobs 16`. Beside it,
//! the same pipeline in Python (`benches/python/contract_triage.py`: the openai SDK,
//! jsonschema, asyncio) against the same server, when `python3` has those packages.
//!
//! CPU per document is user + sys time of the process (the honest figure on a shared
//! machine), over a run of N documents minus a run of as many documents as there are jobs,
//! divided by the difference: what one more document costs once the process and its workers
//! are up. At `--jobs 16` a run of one would leave fifteen workers' start-up (their threads,
//! HTTP connections and buffers, about 0.6 ms each) in the per-document figure, spread over
//! however many documents the run had. Wall time and peak memory (the process's own
//! high-water mark) are for the N-document run. Medians of `BENCH_RUNS` (default 3) runs.
//! Each run measures hybrid and then Python, and the ratio is the median of the runs' own
//! ratios, with their range: a slow moment on this shared machine then weighs on both sides
//! of a ratio, not on one program's median.
//!
//! `BENCH_ONLY=index` times only the document index (folding and the window table, ns per
//! byte); `BENCH_ONLY=guard` times only the guard in process; `BENCH_SIZE=1500` (or 17000,
//! 100000) times the guard on one size only; `BENCH_ONLY=hybrid` runs only the hybrid
//! processes; `BENCH_ONLY=serve` writes documents, prints their folders and the server's URL
//! and waits (to `perf record` a host).

#[path = "../tests/it/openai_stub.rs"]
mod openai_stub;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use openai_stub::StubServer;

/// Contract sentences to build documents from; names, amounts and dates vary per clause so
/// no two clauses are the same text.
const CLAUSES: &[&str] = &[
    "EL CONTRATISTA prestará a {party} los servicios de soporte técnico de primer y segundo nivel para sus sistemas de facturación electrónica, con un tiempo de respuesta no superior a {n} horas hábiles contadas desde el reporte del incidente.",
    "El valor mensual de los servicios será de {amount} pesos colombianos más IVA, pagaderos dentro de los {n} días siguientes a la radicación de la factura electrónica correspondiente.",
    "Las partes acuerdan que la información técnica, comercial y financiera intercambiada con ocasión del contrato número {n} es confidencial y no podrá ser divulgada a terceros sin autorización previa y escrita.",
    "El presente contrato tendrá una vigencia de {n} meses contados a partir del {date} y podrá prorrogarse por periodos iguales si ninguna de las partes manifiesta su intención de terminarlo.",
    "{party} podrá terminar unilateralmente el contrato con un preaviso de {n} días calendario, sin que haya lugar al pago de indemnización alguna distinta de los servicios efectivamente prestados.",
    "Cualquier controversia derivada del contrato se resolverá ante un tribunal de arbitramento de la Cámara de Comercio de {city}, compuesto por {n} árbitros designados de común acuerdo.",
    "The Provider shall indemnify {party} against any third-party claim arising from a breach of its obligations under section {n}, up to an aggregate amount of USD {amount}.",
    "Either party may assign this Agreement to an affiliate with {n} days' prior written notice, provided the assignee assumes all obligations as of {date}.",
];
const PARTIES: &[&str] = &[
    "Distribuidora La Sabana S.A.S.",
    "Logística del Valle Ltda.",
    "Grupo Andino de Servicios",
    "Comercializadora Pacífico",
    "Transportes Altiplano S.A.",
];
const CITIES: &[&str] = &["Bogotá", "Medellín", "Ciudad de México", "Córdoba", "Lima"];

fn contract(seed: usize, bytes: usize) -> String {
    let mut text = format!("CONTRATO DE PRESTACIÓN DE SERVICIOS No. {seed}-2026\n\n");
    let mut k = 0;
    while text.len() < bytes {
        let x = seed * 7919 + k * 104_729;
        let clause = CLAUSES[(seed + k) % CLAUSES.len()]
            .replace("{party}", PARTIES[x % PARTIES.len()])
            .replace("{city}", CITIES[(x / 7) % CITIES.len()])
            .replace("{n}", &(x % 97 + 2).to_string())
            .replace("{amount}", &format!("{}.{:03}.000", x % 90 + 10, x % 1000))
            .replace(
                "{date}",
                &format!(
                    "{} de {} de 2026",
                    x % 28 + 1,
                    ["enero", "marzo", "junio", "octubre"][x % 4]
                ),
            );
        text.push_str(&format!("CLÁUSULA {}. {clause}\n\n", k + 1));
        k += 1;
    }
    text
}

/// Wall time, CPU (user + sys) and peak RSS of a child run to its end.
///
/// The peak is the child's own high-water mark (`VmHWM`, polled): `ru_maxrss` would also count
/// this benchmark's memory, which a forked child holds until it execs.
fn measure(mut command: Command) -> (Duration, Duration, u64) {
    let started = Instant::now();
    let child = command
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("start");
    let pid = child.id() as libc::pid_t;
    let status_file = format!("/proc/{pid}/status");
    let mut status = 0;
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    let mut peak_kib = 0u64;
    loop {
        if let Some(kib) = std::fs::read_to_string(&status_file).ok().and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmHWM:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        }) {
            peak_kib = peak_kib.max(kib);
        }
        let reaped = unsafe { libc::wait4(pid, &mut status, libc::WNOHANG, &mut usage) };
        if reaped == pid {
            break;
        }
        assert!(reaped == 0, "wait4 failed");
        std::thread::sleep(Duration::from_millis(5));
    }
    let wall = started.elapsed();
    assert!(
        libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0,
        "run failed"
    );
    let tv = |t: libc::timeval| Duration::new(t.tv_sec as u64, t.tv_usec as u32 * 1000);
    (
        wall,
        tv(usage.ru_utime) + tv(usage.ru_stime),
        peak_kib * 1024,
    )
}

fn median(mut xs: Vec<f64>) -> f64 {
    xs.sort_by(|a, b| a.partial_cmp(b).unwrap());
    xs[xs.len() / 2]
}

/// One program's figures: CPU per document of each run, wall time and peak memory.
#[derive(Default)]
struct Figures {
    cpu_ms_per_doc: Vec<f64>,
    wall_s: Vec<f64>,
    peak_mb: Vec<f64>,
}

impl Figures {
    /// One run: `warm` (a folder of `warm_docs` documents, one per job), then `many` (`docs`
    /// documents).
    fn run(
        &mut self,
        (warm, warm_docs): (&Path, usize),
        (many, docs): (&Path, usize),
        command: &dyn Fn(&Path) -> Command,
    ) {
        let (_, cpu_warm, _) = measure(command(warm));
        let (wall, cpu_many, peak) = measure(command(many));
        self.cpu_ms_per_doc.push(
            (cpu_many.as_secs_f64() - cpu_warm.as_secs_f64()) * 1000.0 / (docs - warm_docs) as f64,
        );
        self.wall_s.push(wall.as_secs_f64());
        self.peak_mb.push(peak as f64 / 1e6);
    }

    fn cpu(&self) -> f64 {
        median(self.cpu_ms_per_doc.clone())
    }

    fn wall(&self) -> f64 {
        median(self.wall_s.clone())
    }

    fn peak(&self) -> f64 {
        median(self.peak_mb.clone())
    }
}

fn python_ready() -> bool {
    Command::new("python3")
        .args(["-c", "import openai, jsonschema"])
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// The egress guard's own cost per document: index the contract, then pass one escalation
/// (the extracted triage, the system prompt and the `contract_risk` schema) through both of
/// its passes and make the body's bytes, as `cloud()` does. In process, so nothing but the guard is timed.
fn guard_per_document(root: &Path) {
    use hybrid::guard::{Guard, GuardConfig, Parts};
    use hybrid::models::{ModelRequest, RequestSchema};
    let guard = Guard::new(&GuardConfig::default()).unwrap();
    // One schema made once, as the pipeline's schema registry makes it.
    let schema = RequestSchema::new(
        "contract_risk",
        std::sync::Arc::new(
            serde_json::from_str(
                &std::fs::read_to_string(root.join("schemas/contract_risk.json")).unwrap(),
            )
            .unwrap(),
        ),
        None,
    );
    let triage = serde_json::json!({"document_type": "service_agreement",
        "parties": [{"name": "Distribuidora La Sabana S.A.S.", "role": "client"}, {"name": "Grupo Andino de Servicios", "role": "provider"}],
        "jurisdiction": "Colombia", "risk_flags": ["auto_renewal"], "escalate_to_cloud": false, "confidence_score": 0.6});
    println!();
    println!("egress guard per document (index + one escalation through both passes), in process, median of 5 x 200");
    let only_size = std::env::var("BENCH_SIZE").ok();
    for (label, bytes) in [("1.5 KB", 1_500), ("17 KB", 17_000), ("100 KB", 100_000)] {
        if only_size.as_ref().is_some_and(|s| *s != bytes.to_string()) {
            continue;
        }
        let docs: Vec<hybrid::documents::Document> = (0..200)
            .map(|i| hybrid::documents::Document {
                id: format!("c{i}"),
                path: None,
                name: format!("c{i}.txt"),
                text: contract(i, bytes).into(),
                kind: "txt".into(),
                meta: Default::default(),
                unread: None,
                images: Vec::new(),
            })
            .collect();
        let mut times = Vec::new();
        for _ in 0..5 {
            let started = Instant::now();
            for doc in &docs {
                let mut window = hybrid::guard::window_of(doc);
                let mut parts = Parts {
                    system: Some("You are a senior contracts lawyer. You receive the structured triage of a contract (not the contract itself). Assess the overall risk and recommend an action. Answer in JSON only.".into()),
                    prompt: None,
                    input: Some(triage.clone()),
                };
                guard.check_parts(&mut parts).unwrap();
                let request = ModelRequest {
                    system: parts.system.clone(),
                    prompt: serde_json::to_string_pretty(parts.input.as_ref().unwrap()).unwrap(),
                    schema: Some(schema.clone()),
                    ..Default::default()
                };
                let mut body = hybrid::models::openai::wire_body("gpt-5.4", &request);
                guard
                    .check_wire(&mut body, None, Some(&mut window))
                    .unwrap();
                std::hint::black_box(body.to_bytes());
            }
            times.push(started.elapsed().as_secs_f64() * 1e6 / docs.len() as f64);
        }
        println!("{label:>8}: {:>8.1} µs per document", median(times));
    }
}

/// The document index alone: folding into word ids, then the whole index, per 100 KB.
fn index_per_document() {
    use hybrid::guard::overlap::{word_ids, SourceIndex};
    let docs: Vec<String> = (0..100).map(|i| contract(i, 100_000)).collect();
    let bytes: usize = docs.iter().map(|d| d.len()).sum();
    let (mut fold, mut index) = (Vec::new(), Vec::new());
    let mut ids = Vec::new();
    for _ in 0..7 {
        let started = Instant::now();
        for doc in &docs {
            ids.clear();
            word_ids(doc, &mut ids);
        }
        fold.push(started.elapsed().as_secs_f64() * 1e9 / bytes as f64);
        let started = Instant::now();
        for doc in &docs {
            std::hint::black_box(SourceIndex::of_parts(&[doc]));
        }
        index.push(started.elapsed().as_secs_f64() * 1e9 / bytes as f64);
    }
    println!(
        "document index, 100 KB contracts: fold {:.2} ns/byte, whole index {:.2} ns/byte (medians of 7)",
        median(fold),
        median(index)
    );
}

fn main() {
    let root_dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let only = std::env::var("BENCH_ONLY").unwrap_or_default();
    if only != "hybrid" && only != "serve" {
        index_per_document();
        if only != "index" {
            guard_per_document(&root_dir);
        }
    }
    if only == "guard" || only == "index" {
        return;
    }
    let runs: usize = std::env::var("BENCH_RUNS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(3);
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let work = tempfile::tempdir().unwrap();
    let server = StubServer::conforming(Duration::ZERO);
    let url = server.url();
    if only == "serve" {
        // For profiling the host alone: the server runs here, `hybrid` under `perf` elsewhere.
        for (bytes, docs) in [(1_500, 2_000), (100_000, 500)] {
            let dir = work.path().join(format!("docs-{bytes}"));
            std::fs::create_dir_all(&dir).unwrap();
            for i in 0..docs {
                std::fs::write(dir.join(format!("c{i:04}.txt")), contract(i, bytes)).unwrap();
            }
            println!("{}", dir.display());
        }
        println!("{url}");
        std::thread::sleep(Duration::from_secs(3600));
        return;
    }
    let python = only != "hybrid" && python_ready();
    if !python && only != "hybrid" {
        println!("(python3 with `openai` and `jsonschema` not found: `pip install openai jsonschema` for the comparison)");
    }

    println!("contract triage against an instant loopback model server; CPU = user + sys per document, less a run of one document per job (start-up); medians of {runs} runs, py/hybrid the median of each run's ratio and their range");
    println!(
        "{:>8} {:>5} | {:>12} {:>8} {:>8} | {:>12} {:>8} {:>8} | {:>9}",
        "size",
        "jobs",
        "hybrid ms",
        "wall s",
        "peak MB",
        "python ms",
        "wall s",
        "peak MB",
        "py/hybrid"
    );
    for (label, bytes, docs) in [
        ("1.5 KB", 1_500, 200),
        ("17 KB", 17_000, 200),
        ("100 KB", 100_000, 200),
    ] {
        let many = work.path().join(format!("docs-{bytes}"));
        std::fs::create_dir_all(&many).unwrap();
        for i in 0..docs {
            std::fs::write(many.join(format!("c{i:04}.txt")), contract(i, bytes)).unwrap();
        }
        for jobs in [1, 16] {
            // One document per job: every worker starts, as in the run of `docs`.
            let warm = work.path().join(format!("warm-{bytes}-{jobs}"));
            std::fs::create_dir_all(&warm).unwrap();
            for i in 0..jobs {
                std::fs::write(warm.join(format!("c{i:04}.txt")), contract(i, bytes)).unwrap();
            }
            let out = work.path().join("out.jsonl");
            let hybrid_command = |dir: &Path| {
                let mut c = Command::new(env!("CARGO_BIN_EXE_hybrid"));
                c.args(["-q", "run", "scripts/contract_triage.rhai"])
                    .arg(dir)
                    .args([
                        "--no-progress",
                        "--overwrite",
                        // Every run pays for its calls, as the Python one does.
                        "--cache",
                        "off",
                        "--local-url",
                        &url,
                        "--cloud-url",
                        &url,
                        "--jobs",
                        &jobs.to_string(),
                        "--out",
                    ])
                    .arg(&out)
                    .arg("--audit")
                    .arg(work.path().join("audit.jsonl"))
                    .current_dir(&root)
                    .env_remove("OPENAI_API_KEY");
                c
            };
            let python_command = |dir: &Path| {
                let mut c = Command::new("python3");
                c.arg(root.join("benches/python/contract_triage.py"))
                    .arg(dir)
                    .args(["--base-url", &url, "--jobs", &jobs.to_string(), "--out"])
                    .arg(&out)
                    .arg("--root")
                    .arg(&root);
                c
            };
            // Each run measures both programs back to back, so the machine's mood of the moment
            // weighs on both sides of that run's ratio.
            let (mut hybrid, mut py) = (Figures::default(), Figures::default());
            for _ in 0..runs {
                hybrid.run((&warm, jobs), (&many, docs), &hybrid_command);
                if python {
                    py.run((&warm, jobs), (&many, docs), &python_command);
                }
            }
            let py = python.then_some(py);
            match py {
                Some(py) => {
                    let ratios: Vec<f64> = py
                        .cpu_ms_per_doc
                        .iter()
                        .zip(&hybrid.cpu_ms_per_doc)
                        .map(|(p, h)| p / h)
                        .collect();
                    let (low, high) = ratios
                        .iter()
                        .fold((f64::MAX, f64::MIN), |(l, h), r| (l.min(*r), h.max(*r)));
                    println!(
                        "{label:>8} {jobs:>5} | {:>12.3} {:>8.2} {:>8.1} | {:>12.3} {:>8.2} {:>8.1} | {:>8.1}x  {low:.1}-{high:.1}x",
                        hybrid.cpu(), hybrid.wall(), hybrid.peak(),
                        py.cpu(), py.wall(), py.peak(),
                        median(ratios),
                    )
                }
                None => println!(
                    "{label:>8} {jobs:>5} | {:>12.3} {:>8.2} {:>8.1} |",
                    hybrid.cpu(),
                    hybrid.wall(),
                    hybrid.peak()
                ),
            }
        }
    }
}
