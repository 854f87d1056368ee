//! Live rules and watched inboxes: the real binary, a real file-system watcher, real files.

use std::time::Duration;

use crate::openai_stub::StubServer;
use crate::support::{make_pdf, read_records, wait_for, Project};

const RULES: &str =
    "const TAG = \"one\";\nfn process(doc) {\n    #{ tag: TAG, text: doc.text }\n}\n";

fn watching(p: &Project, extra: &[&str]) -> crate::support::Running {
    std::fs::create_dir_all(p.path("inbox")).unwrap();
    let mut args = vec![
        "run",
        "--watch",
        "scripts/s.rhai",
        "inbox",
        "--out",
        "out.jsonl",
        "--settle-ms",
        "300",
    ];
    args.extend_from_slice(extra);
    let running = p.spawn(&args);
    wait_for(60, "the inbox watch to start", || {
        running
            .log()
            .contains("watching for new documents")
            .then_some(())
    });
    running
}

fn record_for(p: &Project, id: &str) -> serde_json::Value {
    wait_for(60, &format!("a record for {id}"), || {
        read_records(&p.path("out.jsonl"))
            .into_iter()
            .find(|r| r["id"] == id)
    })
}

/// Saves like an editor that writes a temporary file and renames it over the old one.
fn save_by_rename(p: &Project, rel: &str, text: &str) {
    let tmp = p.path(&format!("{rel}.swp"));
    std::fs::write(&tmp, text).unwrap();
    std::fs::rename(tmp, p.path(rel)).unwrap();
}

#[test]
fn rule_edits_are_picked_up_broken_ones_rejected_and_fixes_taken() {
    let p = Project::new();
    p.write("scripts/s.rhai", RULES);
    let running = watching(&p, &[]);

    p.write("inbox/a.txt", "first");
    let a = record_for(&p, "inbox/a.txt");
    assert_eq!(a["result"]["tag"], "one");

    // An editor's save: write elsewhere, rename over.
    save_by_rename(&p, "scripts/s.rhai", &RULES.replace("\"one\"", "\"two\""));
    wait_for(60, "the reload", || {
        running.log().contains("rules reloaded").then_some(())
    });
    p.write("inbox/b.txt", "second");
    let b = record_for(&p, "inbox/b.txt");
    assert_eq!(b["result"]["tag"], "two");
    assert_ne!(a["version"], b["version"]);

    // A broken save is rejected with its position; documents keep flowing on the old rules.
    p.write(
        "scripts/s.rhai",
        "const TAG = \"three\";\nfn process(doc) {\n    #{ tag: TAG, \n}\n",
    );
    wait_for(60, "the rejection", || {
        running.log().contains("rules not reloaded").then_some(())
    });
    let log = running.log();
    assert!(log.contains("scripts/s.rhai:5:1: syntax error"), "{log}");
    assert!(log.contains("hint:"), "{log}");
    // With the line it is about (here the end of the file, after the last line).
    assert!(log.contains("4 | }"), "{log}");
    p.write("inbox/c.txt", "third");
    let c = record_for(&p, "inbox/c.txt");
    assert_eq!(c["ok"], true);
    assert_eq!(c["result"]["tag"], "two");
    assert_eq!(c["version"], b["version"]);

    // Deleted, then created again, fixed: the new version comes in.
    std::fs::remove_file(p.path("scripts/s.rhai")).unwrap();
    std::thread::sleep(Duration::from_millis(300));
    p.write("scripts/s.rhai", &RULES.replace("\"one\"", "\"three\""));
    wait_for(60, "the second reload", || {
        (running.log().matches("rules reloaded").count() >= 2).then_some(())
    });
    p.write("inbox/d.txt", "fourth");
    assert_eq!(record_for(&p, "inbox/d.txt")["result"]["tag"], "three");

    // Schemas and imports are watched too.
    p.write("scripts/lib/tag.rhai", "fn tag() { \"from-module\" }\n");
    p.write(
        "scripts/s.rhai",
        "import \"lib/tag\" as t;\nfn process(doc) { #{ tag: t::tag() } }\n",
    );
    wait_for(60, "the third reload", || {
        (running.log().matches("rules reloaded").count() >= 3).then_some(())
    });
    p.write("scripts/lib/tag.rhai", "fn tag() { \"module-edited\" }\n");
    wait_for(60, "the reload of an import", || {
        (running.log().matches("rules reloaded").count() >= 4).then_some(())
    });
    p.write("inbox/e.txt", "fifth");
    assert_eq!(
        record_for(&p, "inbox/e.txt")["result"]["tag"],
        "module-edited"
    );

    // An edit that imports from a folder that does not exist yet is rejected; creating the
    // folder and the module brings it in.
    p.write(
        "scripts/s.rhai",
        "import \"helpers/fmt\" as f;\nfn process(doc) { #{ tag: f::tag() } }\n",
    );
    wait_for(60, "the rejected import", || {
        (running.log().matches("rules not reloaded").count() >= 2).then_some(())
    });
    std::thread::sleep(Duration::from_millis(300));
    p.write(
        "scripts/helpers/fmt.rhai",
        "fn tag() { \"from-new-folder\" }\n",
    );
    wait_for(60, "the reload from the new folder", || {
        (running.log().matches("rules reloaded").count() >= 5).then_some(())
    });
    p.write("inbox/f.txt", "sixth");
    assert_eq!(
        record_for(&p, "inbox/f.txt")["result"]["tag"],
        "from-new-folder"
    );

    assert_eq!(running.stop("TERM"), 0);
    let records = read_records(&p.path("out.jsonl"));
    assert_eq!(records.len(), 6, "each file exactly once: {records:?}");
}

#[test]
fn slow_writes_and_renames_into_place_are_read_once_and_whole() {
    let p = Project::new();
    p.write("scripts/s.rhai", RULES);
    let running = watching(&p, &[]);

    // A writer that pauses longer than the settle period, holding the file open.
    {
        use std::io::Write;
        let mut f = std::fs::File::create(p.path("inbox/slow.txt")).unwrap();
        f.write_all(b"part one, ").unwrap();
        f.flush().unwrap();
        std::thread::sleep(Duration::from_millis(1200));
        f.write_all(b"part two").unwrap();
    }
    // Written under a temporary name, then renamed into place.
    p.write("inbox/report.txt.part", "renamed in");
    std::fs::rename(p.path("inbox/report.txt.part"), p.path("inbox/report.txt")).unwrap();

    assert_eq!(
        record_for(&p, "inbox/slow.txt")["result"]["text"],
        "part one, part two"
    );
    assert_eq!(
        record_for(&p, "inbox/report.txt")["result"]["text"],
        "renamed in"
    );
    std::thread::sleep(Duration::from_millis(2500)); // past a rescan
    assert_eq!(running.stop("INT"), 0);
    let ids: Vec<String> = read_records(&p.path("out.jsonl"))
        .iter()
        .map(|r| r["id"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(ids.len(), 2, "{ids:?}");
}

#[test]
fn a_restart_neither_loses_nor_repeats_work() {
    let p = Project::new();
    p.write("scripts/s.rhai", RULES);
    p.write("inbox/before-start.txt", "was waiting");
    let running = watching(&p, &[]);
    record_for(&p, "inbox/before-start.txt");
    p.write("inbox/one.txt", "1");
    record_for(&p, "inbox/one.txt");
    assert_eq!(running.stop("TERM"), 0);

    // Arrives while the host is down.
    p.write("inbox/while-down.txt", "2");
    let running = watching(&p, &[]);
    record_for(&p, "inbox/while-down.txt");
    p.write("inbox/after.txt", "3");
    record_for(&p, "inbox/after.txt");
    std::thread::sleep(Duration::from_millis(2500)); // past a rescan
    assert_eq!(running.stop("TERM"), 0);

    let mut ids: Vec<String> = read_records(&p.path("out.jsonl"))
        .iter()
        .map(|r| r["id"].as_str().unwrap().to_owned())
        .collect();
    ids.sort();
    assert_eq!(
        ids,
        [
            "inbox/after.txt",
            "inbox/before-start.txt",
            "inbox/one.txt",
            "inbox/while-down.txt"
        ]
    );
    let state = std::fs::read_to_string(p.path("out.state.jsonl")).unwrap();
    assert_eq!(state.lines().count(), 4);
    assert!(state.contains("\"version\":\"v"));
}

#[test]
fn processed_files_can_be_moved_to_done_and_failed() {
    let p = Project::new();
    p.write("scripts/s.rhai", RULES);
    let running = watching(&p, &["--move-done"]);
    p.write("inbox/good.txt", "fine");
    p.write("inbox/bad.txt", b"\x00\x01binary");
    record_for(&p, "inbox/good.txt");
    let bad = record_for(&p, "inbox/bad.txt");
    assert_eq!(bad["error"]["kind"], "input");
    wait_for(60, "the moves", || {
        (p.path("inbox/done/good.txt").exists() && p.path("inbox/failed/bad.txt").exists())
            .then_some(())
    });
    // A second file of the same name never replaces the first one's copy.
    p.write("inbox/good.txt", "fine again");
    wait_for(60, "the second move", || {
        p.path("inbox/done/good.1.txt").exists().then_some(())
    });
    assert_eq!(
        std::fs::read_to_string(p.path("inbox/done/good.txt")).unwrap(),
        "fine"
    );
    assert_eq!(
        running.stop("TERM"),
        2,
        "a failed document makes the exit code 2"
    );
}

#[test]
fn ctrl_c_finishes_the_documents_in_flight() {
    let p = Project::new();
    p.write(
        "scripts/s.rhai",
        "fn process(doc) { cloud(#{ input: #{ n: doc.name } }) }\n",
    );
    let server = StubServer::conforming(Duration::from_millis(1500));
    let url = server.url();
    let running = watching(&p, &["--cloud-url", &url]);
    p.write("inbox/slow-call.txt", "x");
    wait_for(60, "the cloud call to start", || {
        (!server.requests().is_empty()).then_some(())
    });
    assert_eq!(running.stop("INT"), 0);
    let records = read_records(&p.path("out.jsonl"));
    assert_eq!(records.len(), 1);
    assert_eq!(records[0]["result"], "stub answer");
}

#[test]
fn pdfs_emails_and_bad_inputs_in_a_batch() {
    let p = Project::new();
    p.write(
        "scripts/s.rhai",
        "fn process(doc) { #{ kind: doc.kind, text: doc.text, meta: doc.meta } }\n",
    );
    p.write(
        "in/contrato.pdf",
        make_pdf(
            &[
                "CONTRATO DE PRESTACIÓN DE SERVICIOS",
                "Cláusula primera: objeto.",
            ],
            false,
        ),
    );
    p.write("in/locked.pdf", make_pdf(&["secret"], true));
    p.write(
        "in/corrupt.pdf",
        b"%PDF-1.4\nthis is not really a pdf\n%%EOF",
    );
    let pdf = make_pdf(&["ANEXO: tarifas 2026"], false);
    let eml = format!(
        "From: Laura Gómez <laura@dataandes.co>\r\nTo: legal@lasabana.co\r\nSubject: Contrato firmado\r\nDate: Tue, 20 Jan 2026 10:00:00 -0500\r\nMIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=\"XX\"\r\n\r\n--XX\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nAdjunto el contrato firmado.\r\n--XX\r\nContent-Type: application/pdf; name=\"anexo.pdf\"\r\nContent-Disposition: attachment; filename=\"anexo.pdf\"\r\nContent-Transfer-Encoding: base64\r\n\r\n{}\r\n--XX--\r\n",
        base64(&pdf)
    );
    p.write("in/correo.eml", eml);
    p.write("in/big.txt", "x".repeat(5000));
    let done = p
        .hybrid(&["run", "scripts/s.rhai", "in", "--max-doc-bytes", "4000"])
        .output()
        .expect_code(2);

    let contract = done.record("in/contrato.pdf");
    assert_eq!(contract["result"]["kind"], "pdf");
    let text = contract["result"]["text"].as_str().unwrap();
    assert!(text.contains("PRESTACIÓN DE SERVICIOS"), "{text}");
    assert!(text.contains("Cláusula primera"), "{text}");

    let mail = done.record("in/correo.eml");
    assert_eq!(mail["result"]["meta"]["subject"], "Contrato firmado");
    assert_eq!(
        mail["result"]["meta"]["from"][0],
        "Laura Gómez <laura@dataandes.co>"
    );
    let text = mail["result"]["text"].as_str().unwrap();
    assert!(
        text.contains("Adjunto el contrato firmado.") && text.contains("ANEXO: tarifas 2026"),
        "{text}"
    );
    assert_eq!(
        mail["result"]["meta"]["attachments"][0]["name"],
        "anexo.pdf"
    );
    assert_eq!(mail["result"]["meta"]["attachments"][0]["included"], true);

    for (id, reason) in [
        ("in/locked.pdf", "encrypted"),
        ("in/corrupt.pdf", "corrupt"),
        ("in/big.txt", "limit"),
    ] {
        let r = done.record(id);
        assert_eq!(r["error"]["kind"], "input", "{r}");
        assert!(
            r["error"]["message"].as_str().unwrap().contains(reason),
            "{id}: {r}"
        );
    }
}

fn base64(bytes: &[u8]) -> String {
    const T: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (b[0] as u32) << 16 | (b[1] as u32) << 8 | b[2] as u32;
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(T[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

#[test]
fn a_rule_edit_that_fails_the_pipelines_cases_is_not_swapped_in() {
    let p = Project::new();
    p.write(
        "scripts/s.rhai",
        "const LIMIT = 10;\nfn process(doc) {\n    #{ long: doc.text.len() > LIMIT }\n}\n",
    );
    p.write(
        "scripts/s.cases.jsonl",
        "{\"name\": \"a short text is not long\", \"doc\": {\"text\": \"hola\"}, \"expect\": {\"long\": false}}\n",
    );
    let running = watching(&p, &[]);
    p.write("inbox/a.txt", "hola");
    assert_eq!(record_for(&p, "inbox/a.txt")["result"]["long"], false);

    // A valid script that breaks the case: rejected, the last good version keeps running.
    save_by_rename(
        &p,
        "scripts/s.rhai",
        "const LIMIT = 2;\nfn process(doc) {\n    #{ long: doc.text.len() > LIMIT }\n}\n",
    );
    wait_for(60, "the rejection", || {
        running
            .log()
            .contains("fails the pipeline's cases")
            .then_some(())
    });
    let log = running.log();
    assert!(
        log.contains("s.cases.jsonl:1: a short text is not long"),
        "{log}"
    );
    assert!(log.contains("long: expected false, got true"), "{log}");
    p.write("inbox/b.txt", "hola");
    assert_eq!(record_for(&p, "inbox/b.txt")["result"]["long"], false);

    // An edit that keeps the case passing goes in.
    save_by_rename(
        &p,
        "scripts/s.rhai",
        "const LIMIT = 5;\nfn process(doc) {\n    #{ long: doc.text.len() > LIMIT, limit: LIMIT }\n}\n",
    );
    wait_for(60, "the reload", || {
        running.log().contains("rules reloaded").then_some(())
    });
    p.write("inbox/c.txt", "hola");
    assert_eq!(record_for(&p, "inbox/c.txt")["result"]["limit"], 5);
}

#[test]
fn a_reloaded_version_that_throws_on_every_document_is_rolled_back() {
    let p = Project::new();
    p.write("scripts/s.rhai", RULES);
    p.write(
        "hybrid.toml",
        "[reload]\nprobation_docs = 5\nmax_failure_increase = 0.2\n",
    );
    let running = watching(&p, &[]);
    p.write("inbox/a.txt", "first");
    assert_eq!(record_for(&p, "inbox/a.txt")["ok"], true);
    let good = record_for(&p, "inbox/a.txt")["version"].clone();

    // Valid, but wrong on real traffic: every document throws.
    save_by_rename(
        &p,
        "scripts/s.rhai",
        "fn process(doc) {\n    throw \"oops\";\n}\n",
    );
    wait_for(60, "the reload", || {
        running.log().contains("rules reloaded").then_some(())
    });
    for name in ["b", "c", "d"] {
        p.write(&format!("inbox/{name}.txt"), name);
        record_for(&p, &format!("inbox/{name}.txt"));
    }
    wait_for(60, "the rollback", || {
        running.log().contains("rules rolled back").then_some(())
    });
    let log = running.log();
    assert!(
        log.contains("inbox/b.txt"),
        "the affected documents are named: {log}"
    );
    // The last good version runs again.
    p.write("inbox/e.txt", "after");
    let e = record_for(&p, "inbox/e.txt");
    assert_eq!(e["ok"], true, "{e}");
    assert_eq!(e["version"], good);
    // `hybrid versions` shows each version's documents and failures.
    let versions: serde_json::Value = serde_json::from_str(
        &p.hybrid(&["versions", "out.jsonl", "--json"])
            .output()
            .expect_code(0)
            .stdout(),
    )
    .unwrap();
    let rows = versions.as_array().unwrap();
    assert_eq!(rows.len(), 2, "{versions}");
    assert_eq!(rows[0]["version"], good);
    assert_eq!(rows[0]["failed"], 0);
    assert!(rows[1]["failed"].as_u64().unwrap() >= 2, "{versions}");
    assert!(!rows[1]["first"].as_str().unwrap().is_empty());
}
