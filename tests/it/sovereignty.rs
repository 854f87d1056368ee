//! Data sovereignty and cost: the egress guard, the audit log, dry-run, prices and
//! `hybrid report`, checked against a loopback server that records every request body.

use std::time::Duration;

use serde_json::Value;

use crate::openai_stub::StubServer;
use crate::support::{audit_lines, Project};

const CANARY: &str = "CANARY-7f3a9c-NO-EGRESS";

/// The stub's usage is 100 prompt tokens (40 cached) and 20 output tokens.
const STUB_CALL_USD: f64 = (60.0 * 2.50 + 40.0 * 0.25 + 20.0 * 15.00) / 1e6;

/// Puts `canary` in the middle of every text and Markdown file under `dir`.
fn plant(p: &Project, dir: &str, canary: &str) {
    for entry in std::fs::read_dir(p.path(dir)).unwrap() {
        let path = entry.unwrap().path();
        if !path.extension().is_some_and(|e| e == "txt" || e == "md") {
            continue;
        }
        let text = std::fs::read_to_string(&path).unwrap();
        let (head, tail) = text.split_at(text.len() / 2);
        let cut = head.rfind(' ').unwrap_or(0);
        std::fs::write(
            &path,
            format!("{} {canary} {}{tail}", &head[..cut], &head[cut..]),
        )
        .unwrap();
    }
}

#[test]
fn no_shipped_pipeline_sends_a_canary_planted_in_its_documents() {
    let p = crate::examples::shipped();
    let server = StubServer::conforming(Duration::ZERO);
    let url = server.url();

    // Pattern 1 and 3 never send source text: a plain canary, and rules that escalate all.
    plant(&p, "samples/contracts", CANARY);
    plant(&p, "samples/finance", CANARY);
    p.set_constant(
        "contract_triage.rhai",
        "const ESCALATE_BELOW = 0.75;",
        "const ESCALATE_BELOW = 2.0;",
    );
    p.set_constant(
        "finance_refine.rhai",
        "const CONFIDENT_ENOUGH = 0.9;",
        "const CONFIDENT_ENOUGH = 2.0;",
    );
    for (script, input) in [
        ("contract_triage.rhai", "samples/contracts"),
        ("finance_refine.rhai", "samples/finance"),
    ] {
        p.hybrid(&[
            "run",
            &format!("scripts/{script}"),
            input,
            "--out",
            "-",
            "--local-model",
            "tiny",
            "--cloud-url",
            &url,
        ])
        .output()
        .expect_code(0);
    }
    // Pattern 2 sends sampled messages by design (its guard override allows the overlap), so
    // its canary is personal data, which the guard redacts: every message sampled here.
    let email_canary = "canary.7f3a9c@no-egress.example.com";
    let mut messages = String::new();
    for m in crate::support::read_records(&p.path("samples/messages.jsonl")) {
        let mut m = m;
        m["text"] = format!(
            "{} Escríbanme a {email_canary}.",
            m["text"].as_str().unwrap()
        )
        .into();
        messages.push_str(&format!("{m}\n"));
    }
    p.write("samples/messages.jsonl", messages);
    p.set_constant(
        "intent_parallel.rhai",
        "const SAMPLE_RATE = 0.18;",
        "const SAMPLE_RATE = 1.0;",
    );
    p.hybrid(&[
        "run",
        "scripts/intent_parallel.rhai",
        "samples/messages.jsonl",
        "--out",
        "-",
        "--local-model",
        "tiny",
        "--cloud-url",
        &url,
    ])
    .output()
    .expect_code(0);

    let requests = server.requests();
    let prompts = |needle: &str| requests.iter().filter(|r| r.raw.contains(needle)).count();
    assert!(
        prompts("contract_risk") > 0,
        "pattern 1 must escalate in this test"
    );
    assert!(
        prompts("finance_report") > 0,
        "pattern 3 must escalate in this test"
    );
    assert!(
        prompts("[EMAIL]") >= 20,
        "pattern 2 sends every (redacted) message here"
    );
    for req in &requests {
        assert!(
            !req.raw.contains(CANARY),
            "the canary left the machine: {}",
            req.raw
        );
        assert!(
            !req.raw.contains("7f3a9c@"),
            "personal data left the machine: {}",
            req.raw
        );
    }
}

#[test]
fn a_script_that_sends_raw_text_is_blocked_naming_rule_and_field() {
    let p = Project::new();
    p.write(
        "scripts/leak.rhai",
        "fn process(doc) {\n    cloud(\"Summarise this contract: \" + doc.text)\n}\n",
    );
    let server = StubServer::conforming(Duration::ZERO);
    let url = server.url();
    let text = "El contratista prestará servicios de soporte técnico de primer y segundo nivel para los sistemas de facturación electrónica y el ERP del contratante.";
    let done = p
        .hybrid(&["run", "scripts/leak.rhai", "-", "--cloud-url", &url])
        .stdin(format!("{{\"id\": \"c1\", \"text\": \"{text}\"}}\n"))
        .output()
        .expect_code(2);
    assert_eq!(server.requests().len(), 0, "nothing may be sent");
    let r = done.record("c1");
    assert_eq!(r["error"]["kind"], "blocked");
    let message = r["error"]["message"].as_str().unwrap();
    assert!(
        message.contains("verbatim_overlap") && message.contains("`prompt`"),
        "{message}"
    );
    assert!(
        !message.contains("facturación"),
        "the message must not repeat the text: {message}"
    );
    assert!(
        !done.stderr().contains("facturación"),
        "nor the log:\n{}",
        done.stderr()
    );
    let audit = audit_lines(&p.path("hybrid-audit.jsonl"));
    assert_eq!(audit.len(), 1);
    assert_eq!(audit[0]["outcome"], "blocked");
    assert_eq!(audit[0]["rule"], "verbatim_overlap");
    assert_eq!(audit[0]["field"], "prompt");
    assert_eq!(audit[0]["document"], "c1");
    assert!(
        audit[0].get("payload").is_none(),
        "a blocked payload is not written down: {}",
        audit[0]
    );
    assert_eq!(audit[0]["payload_sha256"].as_str().unwrap().len(), 64);
}

#[test]
fn personal_data_is_redacted_or_blocked_by_policy() {
    let p = Project::new();
    p.write(
        "scripts/pii.rhai",
        r#"fn process(doc) {
    let data = parse_json(doc.text);
    try {
        return #{ answer: cloud(#{ input: data }) };
    } catch (e) {
        return #{ kind: e.kind, rule: e.rule, field: e.field, message: e.message };
    }
}
"#,
    );
    let server = StubServer::conforming(Duration::ZERO);
    let url = server.url();
    let input = [
        r#"{"id": "email", "text": "{\"contact\": \"ana.gomez@dataandes.co\", \"note\": \"ok\"}"}"#,
        r#"{"id": "card", "text": "{\"payment\": {\"card\": \"4111 1111 1111 1111\"}}"}"#,
        r#"{"id": "nit", "text": "{\"supplier\": \"NIT 900.123.456-8\"}"}"#,
    ]
    .join("\n");
    let done = p
        .hybrid(&[
            "run",
            "scripts/pii.rhai",
            "-",
            "--cloud-url",
            &url,
            "--jobs",
            "1",
        ])
        .stdin(input)
        .output()
        .expect_code(0);

    let email = done.record("email");
    assert_eq!(email["result"]["answer"], "stub answer", "{email}");
    assert_eq!(email["calls"][0]["redactions"][0]["kind"], "email");
    assert_eq!(email["calls"][0]["redactions"][0]["field"], "input/contact");

    let card = done.record("card");
    assert_eq!(card["result"]["kind"], "blocked");
    assert_eq!(card["result"]["rule"], "payment_card");
    assert_eq!(card["result"]["field"], "input/payment/card");
    assert!(!card["result"]["message"].as_str().unwrap().contains("4111"));

    let sent: Vec<String> = server.requests().iter().map(|r| r.raw.clone()).collect();
    assert_eq!(sent.len(), 2, "the card payload must not be sent");
    assert!(sent
        .iter()
        .all(|b| !b.contains("ana.gomez") && !b.contains("4111")));
    assert!(sent[0].contains("[EMAIL]"), "{}", sent[0]);
    let nit_body = &sent[1];
    assert!(
        nit_body.contains("[NIT]") && !nit_body.contains("900.123.456"),
        "{nit_body}"
    );
}

#[test]
fn costs_in_records_audit_and_report_are_tokens_times_prices() {
    let p = Project::new();
    p.write(
        "scripts/c.rhai",
        "fn process(doc) { cloud(#{ input: #{ n: doc.id } }) }\n",
    );
    p.write(
        "hybrid.toml",
        "[currency]\ncode = \"COP\"\nper_usd = 4000\n\n[local_cost]\nmonthly_usd = 300\n",
    );
    let server = StubServer::conforming(Duration::ZERO);
    let url = server.url();
    let input: String = (0..5)
        .map(|i| format!("{{\"id\": \"d{i}\", \"text\": \"x\"}}\n"))
        .collect();
    p.hybrid(&[
        "run",
        "scripts/c.rhai",
        "-",
        "--cloud-url",
        &url,
        "--out",
        "results.jsonl",
    ])
    .stdin(input)
    .output()
    .expect_code(0);

    let records: Vec<Value> = std::fs::read_to_string(p.path("results.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    for r in &records {
        let cost = r["calls"][0]["cost_usd"].as_f64().unwrap();
        assert!(
            (cost - STUB_CALL_USD).abs() < 1e-12,
            "{cost} != {STUB_CALL_USD}"
        );
    }
    // Write-ahead: each call's attempt line (with the body) comes before its outcome line.
    let audit = audit_lines(&p.path("results.audit.jsonl"));
    assert_eq!(audit.len(), 10);
    let (attempts, sent): (Vec<&Value>, Vec<&Value>) =
        audit.iter().partition(|a| a["outcome"] == "attempt");
    assert_eq!((attempts.len(), sent.len()), (5, 5));
    for a in &attempts {
        assert_eq!(a["attempt"], 1);
        assert!(a["payload"]["messages"].is_array());
    }
    for a in &sent {
        assert_eq!(a["outcome"], "sent");
        assert_eq!(a["attempts"], 1);
        assert_eq!(a["endpoint"], server.addr.to_string());
        assert!((a["cost_usd"].as_f64().unwrap() - STUB_CALL_USD).abs() < 1e-12);
        assert_eq!(a["payload_sha256"].as_str().unwrap().len(), 64);
        assert!(
            a.get("payload").is_none(),
            "the body is in the attempt line"
        );
    }

    let report = p
        .hybrid(&["report", "results.jsonl", "--json", "--volume", "2000"])
        .output()
        .expect_code(0);
    let r: Value = serde_json::from_str(&report.stdout()).unwrap();
    assert_eq!(r["documents"], 5);
    assert!((r["cloud_usd"].as_f64().unwrap() - 5.0 * STUB_CALL_USD).abs() < 1e-12);
    assert!(
        (r["cloud_local_currency"].as_f64().unwrap() - 5.0 * STUB_CALL_USD * 4000.0).abs() < 1e-9
    );
    assert_eq!(r["local_share_calls"], 0.0);
    assert_eq!(r["escalation_rate"], 1.0);
    let month = r["projection"]["cloud_only_usd_per_month"]
        .as_f64()
        .unwrap();
    assert!(
        (month - STUB_CALL_USD * 2000.0 * 30.0).abs() < 1e-9,
        "{month}"
    );
    assert_eq!(r["projection"]["hardware_usd_per_month"], 300.0);

    let text = p
        .hybrid(&["report", "results.jsonl", "--chart", "spend.svg"])
        .output()
        .expect_code(0)
        .stdout();
    assert!(text.contains("COP"), "{text}");
    assert!(text.contains("local share"), "{text}");
    let svg = std::fs::read_to_string(p.path("spend.svg")).unwrap();
    assert!(svg.starts_with("<svg") && svg.contains("cloud only"));
}

#[test]
fn dry_run_sends_nothing_and_audits_what_would_leave_with_estimates() {
    let p = Project::new();
    p.write(
        "schemas/risk.json",
        r#"{"type": "object", "additionalProperties": false, "required": ["risk", "note"],
            "properties": {"risk": {"type": "string", "enum": ["low", "high"]}, "note": {"type": "string"}}}"#,
    );
    p.write(
        "scripts/d.rhai",
        "fn process(doc) { cloud(#{ input: #{ topic: doc.id }, schema: \"risk\" }) }\n",
    );
    let server = StubServer::conforming(Duration::ZERO);
    let url = server.url();
    let done = p
        .hybrid(&[
            "run",
            "scripts/d.rhai",
            "-",
            "--cloud",
            "dry-run",
            "--cloud-url",
            &url,
        ])
        .env("OPENAI_API_KEY", "sk-dry-run-key-unused")
        .stdin("{\"id\": \"a\", \"text\": \"x\"}\n")
        .output()
        .expect_code(0);
    assert_eq!(server.requests().len(), 0);
    let r = done.record("a");
    assert_eq!(r["result"]["risk"], "low");
    assert_eq!(r["result"]["note"], "[dry-run]");
    let call = &r["calls"][0];
    assert_eq!(call["dry_run"], true);
    assert_eq!(call["backend"], "dry-run");
    assert!(call["prompt_tokens"].as_u64().unwrap() > 10);
    assert!(call["cost_usd"].as_f64().unwrap() > 0.0);
    let audit = audit_lines(&p.path("hybrid-audit.jsonl"));
    assert_eq!(audit[0]["outcome"], "dry_run");
    assert_eq!(audit[0]["estimated"], true);
    assert!(audit[0]["payload"]["messages"][0]["content"]
        .as_str()
        .unwrap()
        .contains("topic"));
}

#[test]
fn audit_can_keep_only_payload_hashes() {
    let p = Project::new();
    p.write(
        "scripts/c.rhai",
        "fn process(doc) { cloud(#{ input: #{ n: doc.id } }) }\n",
    );
    p.write(
        "hybrid.toml",
        "[audit]\npayload = \"hash\"\npath = \"logs/egress.jsonl\"\n",
    );
    let server = StubServer::conforming(Duration::ZERO);
    let url = server.url();
    p.hybrid(&["run", "scripts/c.rhai", "-", "--cloud-url", &url])
        .stdin("{\"id\": \"a\"}\n")
        .output()
        .expect_code(0);
    let audit = audit_lines(&p.path("logs/egress.jsonl"));
    assert_eq!(audit.len(), 2, "an attempt line and an outcome line");
    for line in &audit {
        assert!(line.get("payload").is_none());
        assert_eq!(line["payload_sha256"].as_str().unwrap().len(), 64);
    }
    assert_eq!(audit[0]["payload_sha256"], audit[1]["payload_sha256"]);
}

#[test]
fn a_local_server_at_a_public_address_is_refused_at_start() {
    // local() sends whole documents, unguarded: its server must be at home.
    let p = Project::new();
    p.write(
        "scripts/s.rhai",
        "fn process(doc) {\n    local(doc.text)\n}\n",
    );
    let run = |extra: &[&str]| {
        let mut args = vec![
            "run",
            "scripts/s.rhai",
            "-",
            "--cloud",
            "dry-run",
            "--cache",
            "off",
        ];
        args.extend_from_slice(extra);
        p.hybrid(&args).stdin("{\"id\": \"d1\", \"text\": \"x\"}\n")
    };
    for url in ["http://192.0.2.7:11434/v1", "https://8.8.8.8/v1"] {
        let done = run(&["--local-url", url]).output().expect_code(1);
        let err = done.stderr();
        assert!(err.contains("public address"), "{err}");
        assert!(err.contains("allow_remote = true"), "{err}");
        assert!(done.records().is_empty(), "{}", done.stdout());
    }
    // An on-site server is reached directly, whatever proxy the environment names.
    let server = StubServer::conforming(Duration::ZERO);
    let done = run(&["--local-url", &server.url()])
        .env("HTTP_PROXY", "http://127.0.0.1:9")
        .env("http_proxy", "http://127.0.0.1:9")
        .env("ALL_PROXY", "http://127.0.0.1:9")
        .output()
        .expect_code(0);
    assert_eq!(done.record("d1")["ok"], true, "{}", done.stderr());
    assert_eq!(server.requests().len(), 1);
    // Saying the server is the operator's own lets it start (the call then fails on its own).
    p.write(
        "hybrid.toml",
        "[local]\nbase_url = \"http://192.0.2.7:9/v1\"\nallow_remote = true\ntimeout_secs = 1\nmax_retries = 0\n",
    );
    let done = run(&[]).output();
    assert!(
        !done.stderr().contains("public address"),
        "{}",
        done.stderr()
    );
    let kind = done.record("d1")["error"]["kind"].clone();
    assert!(
        kind == "timeout" || kind == "connection",
        "{kind}: {}",
        done.stderr()
    );
}
