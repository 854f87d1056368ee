//! The three promises under accidents: nothing leaves that the guard did not see and the audit
//! log does not hold; one bad document, script or file never takes the host down; a crash
//! loses and repeats nothing. Each test is a fault a hostile tester tried.

use std::io::Write;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::openai_stub::{Reply, StubServer};
use crate::support::{audit_lines, read_records, wait_for, Project};

/// A clause long enough that any copy of it is a leak.
const CLAUSE: &str = "El contratista se obliga a mantener bajo estricta reserva toda la información técnica comercial y financiera que reciba del contratante durante la ejecución del presente contrato y hasta cinco años después de su terminación";

fn sha256(bytes: &[u8]) -> String {
    use sha2::Digest;
    sha2::Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

#[test]
fn a_canary_in_any_field_of_the_request_never_leaves() {
    let p = Project::new();
    // The document's own text, planted in every part of a request a script can fill —
    // the schema's title, descriptions, enum values and property names included.
    p.write(
        "scripts/leak.rhai",
        r#"
fn process(doc) {
    let c = doc.text;
    let w = doc.meta.where;
    if w == "system" { return cloud(#{ system: c, input: #{ n: 1 } }); }
    if w == "prompt" { return cloud(#{ prompt: c }); }
    if w == "input" { return cloud(#{ input: #{ note: c } }); }
    if w == "key" { let m = #{}; m[c] = 1; return cloud(#{ input: m }); }
    if w == "title" { return cloud(#{ input: #{ n: 1 }, schema: #{ type: "object", title: c } }); }
    if w == "description" { return cloud(#{ input: #{ n: 1 }, schema: #{ type: "object", properties: #{ a: #{ type: "string", description: c } } } }); }
    if w == "enum" { return cloud(#{ input: #{ n: 1 }, schema: #{ type: "string", enum: [c] } }); }
    if w == "property" { let props = #{}; props[c] = #{ type: "string" }; return cloud(#{ input: #{ n: 1 }, schema: #{ type: "object", properties: props } }); }
    if w == "card" { return cloud(#{ input: #{ n: 1 }, schema: #{ type: "string", description: "pay to 4111 1111 1111 1111" } }); }
    if w == "split" {
        // 24 words, 12 in the system message and 12 in the prompt.
        let words = c.split(" ");
        return cloud(#{ system: words.extract(0, 12).reduce(|s, x| s + " " + x, ""), prompt: words.extract(12, 12).reduce(|s, x| s + " " + x, "") });
    }
    if w == "chunks" {
        // The whole clause, 11 words a call.
        let words = c.split(" ");
        let i = 0;
        while i < words.len() {
            cloud(#{ input: #{ part: words.extract(i, 11).reduce(|s, x| s + " " + x, "") } });
            i += 11;
        }
        return "all sent";
    }
    cloud(#{ input: #{ kind: "confidentiality", years: 5 } })
}
"#,
    );
    let server = StubServer::conforming(Duration::ZERO);
    let url = server.url();
    let places = [
        "system",
        "prompt",
        "input",
        "key",
        "title",
        "description",
        "enum",
        "property",
        "card",
        "split",
        "chunks",
    ];
    let mut input = String::new();
    for w in places.iter().chain(&["extracted"]) {
        input.push_str(&json!({"id": w, "text": CLAUSE, "where": w}).to_string());
        input.push('\n');
    }
    let done = p
        .hybrid(&[
            "run",
            "scripts/leak.rhai",
            "-",
            "--cloud-url",
            &url,
            "--jobs",
            "1",
        ])
        .stdin(input)
        .output()
        .expect_code(2);
    for w in places {
        let r = done.record(w);
        assert_eq!(r["error"]["kind"], "blocked", "{w}: {r}");
    }
    // What did leave: the extracted fields, and the clause's first 11-word chunk (under the
    // limit; joined with the second, 22 words: the second call is refused).
    let seen = server.requests();
    for request in &seen {
        let prefix: String = CLAUSE.split(' ').take(23).collect::<Vec<_>>().join(" ");
        assert!(!request.raw.contains(&prefix), "{}", request.raw);
        assert!(!request.raw.contains("4111"), "{}", request.raw);
    }
    assert!(done.record("extracted")["ok"].as_bool().unwrap());
    assert_eq!(seen.len(), 2, "the extracted call and the first chunk");

    // Every request that left has its attempt line, made from the very bytes sent.
    let audit = audit_lines(&p.path("hybrid-audit.jsonl"));
    let attempts: Vec<&Value> = audit.iter().filter(|a| a["outcome"] == "attempt").collect();
    assert_eq!(attempts.len(), seen.len());
    for request in &seen {
        let hash = sha256(request.raw.as_bytes());
        let line = attempts
            .iter()
            .find(|a| a["payload_sha256"] == hash.as_str())
            .unwrap_or_else(|| panic!("no attempt line for {}", request.raw));
        assert_eq!(line["bytes"], request.raw.len());
        assert_eq!(line["payload"], request.body);
    }
    let blocked: Vec<&Value> = audit.iter().filter(|a| a["outcome"] == "blocked").collect();
    assert_eq!(blocked.len(), places.len());
    assert!(blocked.iter().all(|b| b.get("payload").is_none()));
}

#[test]
fn a_crash_during_a_cloud_call_leaves_its_audit_line_and_retries_are_attempts() {
    let p = Project::new();
    p.write(
        "scripts/c.rhai",
        "fn process(doc) { cloud(#{ input: #{ id: doc.id } }) }\n",
    );
    p.write("docs.jsonl", "{\"id\": \"slow\"}\n");
    let server = StubServer::start(|_, _| Reply::content("late").delayed(Duration::from_secs(60)));
    let url = server.url();
    let mut host = p.spawn(&[
        "run",
        "scripts/c.rhai",
        "docs.jsonl",
        "--cloud-url",
        &url,
        "--out",
        "r.jsonl",
    ]);
    wait_for(30, "the request to reach the server", || {
        (server.requests().len() == 1).then_some(())
    });
    host.child.kill().unwrap(); // SIGKILL: no chance to write anything more
    host.child.wait().unwrap();
    let audit = audit_lines(&p.path("r.audit.jsonl"));
    assert_eq!(audit.len(), 1, "{audit:?}");
    assert_eq!(audit[0]["outcome"], "attempt");
    assert_eq!(audit[0]["attempt"], 1);
    assert_eq!(audit[0]["document"], "slow");
    assert_eq!(
        audit[0]["payload_sha256"],
        sha256(server.requests()[0].raw.as_bytes())
    );

    // Two failures, then an answer: three attempt lines, and an outcome that counts them.
    let flaky = StubServer::start(|n, _| match n {
        0 | 1 => Reply::error(500, "server_error", "try again"),
        _ => Reply::content("ok"),
    });
    let url = flaky.url();
    p.write("hybrid.toml", "[cloud]\nbackoff_ms = 1\n");
    p.hybrid(&[
        "run",
        "scripts/c.rhai",
        "docs.jsonl",
        "--cloud-url",
        &url,
        "--out",
        "r2.jsonl",
    ])
    .output()
    .expect_code(0);
    let audit = audit_lines(&p.path("r2.audit.jsonl"));
    let outcomes: Vec<(&str, Value)> = audit
        .iter()
        .map(|a| (a["outcome"].as_str().unwrap(), a["attempt"].clone()))
        .collect();
    assert_eq!(
        outcomes,
        vec![
            ("attempt", json!(1)),
            ("attempt", json!(2)),
            ("attempt", json!(3)),
            ("sent", Value::Null)
        ]
    );
    assert_eq!(audit[3]["attempts"], 3);
    assert!(audit[0].get("payload").is_some() && audit[1].get("payload").is_none());
}

#[test]
fn values_nested_deeper_than_the_stack_fail_their_document_and_the_host_lives() {
    let p = Project::new();
    p.write(
        "scripts/deep.rhai",
        r#"
fn nest(n) { let m = #{}; for i in 0..n { m = #{ a: take(m) }; } m }
fn process(doc) {
    let n = doc.meta.depth;
    if doc.meta.what == "serialise" { return nest(n); }
    if doc.meta.what == "drop" { let m = nest(n); return "dropped"; }
    if doc.meta.what == "compare" { let a = nest(n); return a == a; }
    if doc.meta.what == "host" { return cloud(#{ input: nest(n) }); }
    if doc.meta.what == "print" { print(nest(n)); return "printed"; }
    if doc.meta.what == "throw" { throw nest(n); }
    if doc.meta.what == "arrays" { let a = []; for i in 0..n { a = [take(a)]; } return "dropped"; }
    "fine"
}
"#,
    );
    let cases = [
        ("serialise", 10_000, "limit"),
        ("drop", 10_000, "ok"),
        ("compare", 10_000, "limit"),
        ("host", 10_000, "limit"),
        ("print", 10_000, "ok"),
        ("throw", 10_000, "script"),
        ("arrays", 10_000, "ok"),
        ("fine", 0, "ok"),
    ];
    let input: String = cases
        .iter()
        .map(|(case, depth, _)| format!("{}\n", json!({"id": case, "what": case, "depth": depth})))
        .collect();
    let done = p
        .hybrid(&["run", "scripts/deep.rhai", "-", "--cloud", "dry-run"])
        .stdin(input)
        .output()
        .expect_code(2);
    for (case, _, expected) in cases {
        let r = done.record(case);
        let got = if r["ok"] == true {
            "ok"
        } else {
            r["error"]["kind"].as_str().unwrap()
        };
        assert_eq!(got, expected, "{case}: {r}");
        if expected == "limit" {
            assert!(
                r["error"]["message"]
                    .as_str()
                    .unwrap()
                    .contains("max_value_depth"),
                "{r}"
            );
        }
    }
}

#[test]
fn per_document_budgets_stop_one_document_and_spare_the_others() {
    let p = Project::new();
    p.write(
        "hybrid.toml",
        "[limits]\nmax_calls = 20\nmax_print_bytes = 100000\nmax_emit_bytes = 100000\nmax_record_bytes = 100000\nmax_document_memory = 67108864\n",
    );
    p.write(
        "scripts/greedy.rhai",
        r#"
fn big() { let s = "0123456789"; while s.len() < 50000 { s += s; } s }
fn process(doc) {
    if doc.id == "calls" { loop { cloud("hi"); } }
    if doc.id == "print" { let s = big(); loop { print(s); } }
    if doc.id == "emit" { let s = big(); loop { emit("out", #{ s: s }); } }
    if doc.id == "record" { return big() + big() + big(); }
    if doc.id == "memory" { let a = []; loop { a.push(big()); } }
    "fine"
}
"#,
    );
    let server = StubServer::conforming(Duration::ZERO);
    let url = server.url();
    let ids = ["calls", "print", "emit", "record", "memory", "fine"];
    let input: String = ids
        .iter()
        .map(|id| format!("{{\"id\": \"{id}\"}}\n"))
        .collect();
    let done = p
        .hybrid(&[
            "run",
            "scripts/greedy.rhai",
            "-",
            "--cloud-url",
            &url,
            "--out",
            "out/r.jsonl",
            // Every call must reach the server: no answer cache.
            "--cache",
            "off",
        ])
        .stdin(input)
        .output()
        .expect_code(2);
    let records = read_records(&p.path("out/r.jsonl"));
    let by_id = |id: &str| records.iter().find(|r| r["id"] == id).unwrap().clone();
    for (id, key) in [
        ("calls", "max_calls"),
        ("print", "max_print_bytes"),
        ("emit", "max_emit_bytes"),
        ("record", "max_record_bytes"),
        ("memory", "max_document_memory"),
    ] {
        let r = by_id(id);
        assert_eq!(r["error"]["kind"], "limit", "{r}");
        assert!(r["error"]["message"].as_str().unwrap().contains(key), "{r}");
    }
    assert_eq!(by_id("fine")["result"], "fine");
    assert_eq!(server.requests().len(), 20, "the 21st call never left");
    assert!(
        done.stderr().len() < 400_000,
        "print output was cut off at its budget"
    );
    let emitted = std::fs::read_to_string(p.path("out/out.jsonl")).unwrap();
    assert!(emitted.len() <= 100_000);
    for line in emitted.lines() {
        let line: Value = serde_json::from_str(line).unwrap();
        assert_eq!(line["_doc"], "emit", "each emitted line names its document");
        assert!(line["_version"].as_str().unwrap().starts_with('v'));
    }
}

/// A PDF whose one page's content stream inflates to `inflated` bytes of drawing operators.
fn pdf_bomb(inflated: usize) -> Vec<u8> {
    let mut encoder = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::default());
    let chunk = "0 0 m 1 1 l S\n".repeat(4096);
    let mut written = 0;
    while written < inflated {
        encoder.write_all(chunk.as_bytes()).unwrap();
        written += chunk.len();
    }
    let stream = encoder.finish().unwrap();
    let objects: Vec<Vec<u8>> = vec![
        b"<< /Type /Catalog /Pages 2 0 R >>".to_vec(),
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>".to_vec(),
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents 4 0 R >>".to_vec(),
        [
            format!(
                "<< /Length {} /Filter /FlateDecode >>\nstream\n",
                stream.len()
            )
            .into_bytes(),
            stream,
            b"\nendstream".to_vec(),
        ]
        .concat(),
    ];
    crate::support::assemble_pdf(&objects)
}

/// Runs `hybrid ARGS` to the end and returns its exit code, wall time and peak memory (KiB):
/// the highest `VmHWM` of it and its children, polled (`ru_maxrss` would count this test
/// process's own pages, which a spawned child shares until it execs).
fn measured(p: &Project, args: &[&str]) -> (i32, Duration, i64) {
    let started = Instant::now();
    let child = p
        .hybrid(args)
        .cmd
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let pid = child.id() as libc::pid_t;
    let hwm = |pid: &str| -> i64 {
        std::fs::read_to_string(format!("/proc/{pid}/status"))
            .ok()
            .and_then(|s| {
                s.lines()
                    .find_map(|l| l.strip_prefix("VmHWM:"))
                    .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            })
            .unwrap_or(0)
    };
    let mut peak = 0;
    let mut status = 0;
    loop {
        peak = peak.max(hwm(&pid.to_string()));
        // The PDF extractor is a child of the host (of whichever of its threads started it).
        for task in std::fs::read_dir(format!("/proc/{pid}/task"))
            .into_iter()
            .flatten()
            .flatten()
        {
            let children =
                std::fs::read_to_string(task.path().join("children")).unwrap_or_default();
            for child in children.split_whitespace() {
                peak = peak.max(hwm(child));
            }
        }
        let reaped = unsafe { libc::waitpid(pid, &mut status, libc::WNOHANG) };
        if reaped == pid {
            break;
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    let code = if libc::WIFEXITED(status) {
        libc::WEXITSTATUS(status)
    } else {
        -1
    };
    (code, started.elapsed(), peak)
}

#[test]
fn hostile_files_become_error_records_in_bounded_time_and_memory() {
    let p = Project::new();
    p.write(
        "scripts/echo.rhai",
        "fn process(doc) { #{ chars: doc.text.len() } }\n",
    );
    p.write("hybrid.toml", "[limits]\npdf_memory = 268435456\n");
    p.write("in/a.txt", "un contrato corto");
    p.write("in/z.txt", "otro contrato");
    let fifo = p.path("in/pipe.txt");
    let c = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o644) }, 0);
    std::os::unix::fs::symlink(p.path("nowhere.txt"), p.path("in/broken.txt")).unwrap();
    // One JSONL line of 150 MB between two good ones.
    {
        let mut f = std::fs::File::create(p.path("lines.jsonl")).unwrap();
        writeln!(f, "{{\"id\": \"first\", \"text\": \"hola\"}}").unwrap();
        write!(f, "{{\"id\": \"huge\", \"text\": \"").unwrap();
        let block = "x".repeat(1 << 20);
        for _ in 0..150 {
            f.write_all(block.as_bytes()).unwrap();
        }
        writeln!(f, "\"}}").unwrap();
        writeln!(f, "{{\"id\": \"last\", \"text\": \"adiós\"}}").unwrap();
    }
    let (code, took, peak_kib) = measured(
        &p,
        &[
            "run",
            "scripts/echo.rhai",
            "in",
            "lines.jsonl",
            "--out",
            "r.jsonl",
            "--jobs",
            "2",
        ],
    );
    assert_eq!(code, 2);
    let records = read_records(&p.path("r.jsonl"));
    let reason = |id: &str| -> String {
        let r = records
            .iter()
            .find(|r| r["id"].as_str().unwrap().ends_with(id))
            .unwrap_or_else(|| panic!("no record for {id}: {records:?}"));
        r["error"]["message"].as_str().unwrap_or("").to_owned()
    };
    assert_eq!(records.len(), 7, "{records:?}");
    assert!(reason("pipe.txt").contains("FIFO"));
    assert!(reason("broken.txt").contains("broken symbolic link"));
    assert!(reason("lines.jsonl:2").contains("over the"));
    for ok in ["a.txt", "z.txt", "first", "last"] {
        assert_eq!(reason(ok), "", "{ok}");
    }
    assert!(took < Duration::from_secs(60), "{took:?}");
    // The 150 MB line was never held.
    assert!(peak_kib < 100 * 1024, "peak {peak_kib} KiB");

    // A 400 MB page in a small PDF: its extraction (in a child process, counted in the peak)
    // stops at its memory budget, and the documents beside it are untouched.
    std::fs::remove_file(&fifo).unwrap();
    p.write("in/bomb.pdf", pdf_bomb(400 << 20));
    let (code, took, peak_kib) =
        measured(&p, &["run", "scripts/echo.rhai", "in", "--out", "r2.jsonl"]);
    assert_eq!(code, 2);
    let records = read_records(&p.path("r2.jsonl"));
    let bomb = records.iter().find(|r| r["id"] == "in/bomb.pdf").unwrap();
    let message = bomb["error"]["message"].as_str().unwrap();
    assert!(
        message.contains("memory budget") && message.contains("pdf_memory"),
        "{message}"
    );
    assert_eq!(records.iter().filter(|r| r["ok"] == true).count(), 2);
    assert!(took < Duration::from_secs(60), "{took:?}");
    assert!(peak_kib < 300 * 1024, "peak {peak_kib} KiB");
}

#[test]
fn a_slow_pdf_holds_up_no_other_document_and_reasons_say_what_was_found() {
    let p = Project::new();
    p.write("scripts/echo.rhai", "fn process(doc) { doc.text }\n");
    // Read first (sorted), slow to extract: it must not hold up the files behind it.
    p.write("in/a-bomb.pdf", pdf_bomb(400 << 20));
    p.write("in/b.txt", "uno");
    p.write("in/c.txt", "dos");
    // A gateway's bytes before the header, as readers accept.
    let mut prefixed = b"X-Scanner: MFP-4\r\n\r\n".to_vec();
    prefixed.extend(crate::support::make_pdf(&["Contrato con preámbulo"], false));
    p.write("in/d-prefixed.pdf", prefixed);
    p.write("in/e-scan.pdf", crate::support::make_image_pdf());
    p.write(
        "in/f-locked.pdf",
        crate::support::make_pdf(&["secreto"], true),
    );
    let done = p
        .hybrid(&[
            "run",
            "scripts/echo.rhai",
            "in",
            "--out",
            "r.jsonl",
            "--jobs",
            "2",
        ])
        .output()
        .expect_code(2);
    let records = read_records(&p.path("r.jsonl"));
    let ids: Vec<&str> = records.iter().map(|r| r["id"].as_str().unwrap()).collect();
    let at = |id: &str| ids.iter().position(|i| *i == id).unwrap();
    assert!(
        at("in/b.txt") < at("in/a-bomb.pdf") && at("in/c.txt") < at("in/a-bomb.pdf"),
        "the PDF was read ahead of the others: {ids:?}"
    );
    let record = |id: &str| records.iter().find(|r| r["id"] == id).unwrap().clone();
    let bomb = record("in/a-bomb.pdf");
    assert!(
        bomb["elapsed_ms"].as_u64().unwrap() >= 10,
        "extraction counts in elapsed_ms: {bomb}"
    );
    assert_eq!(
        record("in/d-prefixed.pdf")["result"],
        "Contrato con preámbulo"
    );
    let reason = |id: &str| record(id)["error"]["message"].as_str().unwrap().to_owned();
    // A scan is a document of page images, not an error.
    assert_eq!(record("in/e-scan.pdf")["ok"], true);
    assert!(
        reason("in/f-locked.pdf").contains("encrypted with a password"),
        "{}",
        reason("in/f-locked.pdf")
    );
    assert!(
        !done.stderr().contains("stack backtrace"),
        "{}",
        done.stderr()
    );
}

#[test]
fn a_cut_record_is_repaired_and_resume_pays_only_for_what_is_missing() {
    let p = Project::new();
    p.write(
        "scripts/c.rhai",
        "fn process(doc) { cloud(#{ input: #{ id: doc.id } }) }\n",
    );
    let input: String = (0..12).map(|i| format!("{{\"id\": \"d{i}\"}}\n")).collect();
    p.write("docs.jsonl", &input);
    let server = StubServer::conforming(Duration::from_millis(150));
    let url = server.url();
    let args = [
        "run",
        "scripts/c.rhai",
        "docs.jsonl",
        "--cloud-url",
        &url,
        "--out",
        "r.jsonl",
        "--jobs",
        "2",
    ];

    // Killed mid-run.
    let mut host = p.spawn(&args);
    wait_for(30, "a few records", || {
        (read_records(&p.path("r.jsonl")).len() >= 4).then_some(())
    });
    host.child.kill().unwrap();
    host.child.wait().unwrap();
    // And as a crash mid-write would leave it: a cut last line.
    let mut file = std::fs::OpenOptions::new()
        .append(true)
        .open(p.path("r.jsonl"))
        .unwrap();
    file.write_all(b"{\"id\": \"d11\", \"ok\": tr").unwrap();
    drop(file);
    let before = read_records(&p.path("r.jsonl")).len();
    let sent_before = server.requests().len();

    // A rerun without a choice is refused, naming both.
    let refused = p.hybrid(&args).output().expect_code(1);
    assert!(refused.stderr().contains("--resume") && refused.stderr().contains("--overwrite"));

    let mut resume = args.to_vec();
    resume.push("--resume");
    let done = p.hybrid(&resume).output().expect_code(0);
    assert!(done.stderr().contains("skipped"), "{}", done.stderr());
    let text = std::fs::read_to_string(p.path("r.jsonl")).unwrap();
    let records: Vec<Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let mut ids: Vec<&str> = records.iter().map(|r| r["id"].as_str().unwrap()).collect();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), 12, "every document once");
    assert_eq!(records.len(), 12, "no duplicates");
    assert!(std::fs::read_to_string(p.path("r.jsonl.torn"))
        .unwrap()
        .contains("\"d11\""));
    // Only the documents without a record were paid for again.
    assert_eq!(server.requests().len() - sent_before, 12 - before);
}

#[test]
fn an_inbox_is_exactly_once_across_a_crash_and_has_one_host() {
    let p = Project::new();
    p.write(
        "scripts/c.rhai",
        "fn process(doc) { emit(\"seen\", #{ id: doc.id }); cloud(#{ input: #{ n: doc.text.len() } }) }\n",
    );
    let server = StubServer::conforming(Duration::ZERO);
    let url = server.url();
    p.write("inbox/a.txt", "uno");
    p.write("inbox/b.txt", "dos");
    p.write(
        "inbox/batch.jsonl",
        "{\"id\": \"l1\", \"text\": \"x\"}\n{\"id\": \"l2\", \"text\": \"y\"}\n",
    );
    // As a kill between "record written" and "file marked done" leaves it: a.txt's record is
    // in the results, the state file does not know it.
    p.write(
        "r.jsonl",
        "{\"id\": \"inbox/a.txt\", \"source\": \"inbox/a.txt\", \"ok\": true, \"result\": 1, \"calls\": [], \"version\": \"v0\", \"elapsed_ms\": 1}\n",
    );
    let args = [
        "run",
        "--watch",
        "scripts/c.rhai",
        "inbox",
        "--out",
        "r.jsonl",
        "--move-done",
        "--cloud-url",
        &url,
        // l1 and l2 ask the same question: with the answer cache, whether l2 reaches the
        // server depends on whether l1's answer was stored first. This test counts calls.
        "--cache",
        "off",
    ];
    let host = p.spawn(&args);
    wait_for(30, "the inbox to be processed", || {
        let done = std::fs::read_dir(p.path("inbox/done")).ok()?.count();
        (done == 3).then_some(())
    });
    // A second host on the same inbox is refused, naming the first.
    let second = p.hybrid(&args).output().expect_code(1);
    assert!(
        second
            .stderr()
            .contains("already watched by another hybrid host"),
        "{}",
        second.stderr()
    );
    assert!(
        second
            .stderr()
            .contains(&format!("pid {}", host.child.id())),
        "{}",
        second.stderr()
    );
    assert_eq!(host.stop("TERM"), 0);

    let records = read_records(&p.path("r.jsonl"));
    let mut ids: Vec<&str> = records.iter().map(|r| r["id"].as_str().unwrap()).collect();
    ids.sort();
    assert_eq!(ids, ["inbox/a.txt", "inbox/b.txt", "l1", "l2"]);
    assert_eq!(server.requests().len(), 3, "a.txt was not run again");
    let seen = std::fs::read_to_string(p.path("seen.jsonl")).unwrap();
    assert_eq!(seen.lines().count(), 3);
}

#[test]
fn a_per_pipeline_policy_belongs_to_its_path_not_its_name() {
    let p = Project::new();
    let script = "fn process(doc) { cloud(#{ prompt: doc.text }) }\n";
    p.write("scripts/intent_parallel.rhai", script);
    p.write("elsewhere/intent_parallel.rhai", script);
    p.write(
        "hybrid.toml",
        "[guard.scripts.\"scripts/intent_parallel.rhai\"]\noverlap = \"allow\"\n",
    );
    let doc = format!("{{\"id\": \"x\", \"text\": \"{CLAUSE}\"}}\n");
    let allowed = p
        .hybrid(&[
            "run",
            "scripts/intent_parallel.rhai",
            "-",
            "--cloud",
            "dry-run",
            "--config",
            "hybrid.toml",
        ])
        .stdin(doc.clone())
        .output()
        .expect_code(0);
    assert!(
        allowed
            .stderr()
            .contains("policy=[guard.scripts.\"scripts/intent_parallel.rhai\"]"),
        "{}",
        allowed.stderr()
    );
    let copy = p
        .hybrid(&[
            "run",
            "elsewhere/intent_parallel.rhai",
            "-",
            "--cloud",
            "dry-run",
            "--config",
            "hybrid.toml",
        ])
        .stdin(doc)
        .output()
        .expect_code(2);
    assert_eq!(copy.record("x")["error"]["kind"], "blocked");

    p.write(
        "hybrid.toml",
        "[guard.scripts.intent_parallel]\noverlap = \"allow\"\n",
    );
    let bare = p
        .hybrid(&[
            "check",
            "scripts/intent_parallel.rhai",
            "--config",
            "hybrid.toml",
        ])
        .output()
        .expect_code(1);
    assert!(
        bare.stderr()
            .contains("[guard.scripts.\"scripts/intent_parallel.rhai\"]"),
        "{}",
        bare.stderr()
    );
}

#[test]
fn a_closure_that_captures_a_local_is_refused_with_its_position() {
    let p = Project::new();
    p.write(
        "scripts/cycle.rhai",
        "const LIMIT = 3;\nfn process(doc) {\n    let m = #{ data: doc.text };\n    m.f = |x| m.data.len() + x;\n    [1, 5].filter(|x| x > LIMIT)\n}\n",
    );
    let out = p
        .hybrid(&["check", "scripts/cycle.rhai"])
        .output()
        .expect_code(1);
    let err = out.stderr();
    assert!(err.contains("scripts/cycle.rhai:4:"), "{err}");
    assert!(err.contains("captures the local variable `m`"), "{err}");
    assert!(err.contains("hint:"), "{err}");
    // Constants are not captured: this one is fine.
    p.write(
        "scripts/fine.rhai",
        "const LIMIT = 3;\nfn process(doc) { [1, 5].filter(|x| x > LIMIT) }\n",
    );
    let done = p
        .hybrid(&["run", "scripts/fine.rhai", "-"])
        .stdin("{\"id\": \"a\"}\n")
        .output()
        .expect_code(0);
    assert_eq!(done.record("a")["result"], json!([5]));
}
