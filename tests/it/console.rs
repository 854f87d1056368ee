//! The console of a running host: /metrics read back with a Prometheus text parser after a
//! known run, health checks, and the token.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use crate::openai_stub::StubServer;
use crate::support::{free_port, read_records, wait_for, wait_listening, Project};

/// `GET path` over a plain socket: status code and body.
fn get(port: u16, path: &str, token: Option<&str>) -> (u16, String) {
    get_as(port, "127.0.0.1", path, token)
}

/// `GET path` addressed to `host` (the `Host` header), as a browser would send it.
fn get_as(port: u16, host: &str, path: &str, token: Option<&str>) -> (u16, String) {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let auth = token
        .map(|t| format!("Authorization: Bearer {t}\r\n"))
        .unwrap_or_default();
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {host}\r\n{auth}Connection: close\r\n\r\n"
    )
    .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    let status = response
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let body = response
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    (status, body)
}

const SCRIPT: &str = r#"
fn process(doc) {
    if doc.text == "boom" { throw "boom"; }
    let draft = local(#{ prompt: "classify this", max_tokens: 5 });
    if doc.text == "escalate" {
        cloud(#{ prompt: "review the draft" });
        return #{ decision: "cloud", divergent: true };
    }
    if doc.text == "mail" {
        cloud(#{ prompt: "write to ana.perez@example.com about the invoice" });
        return #{ decision: "cloud" };
    }
    if doc.text == "card" {
        try {
            cloud(#{ prompt: "the card 4111 1111 1111 1111 is on file" });
        } catch (e) {
            return #{ decision: "blocked", kind: e.kind };
        }
    }
    #{ decision: "local" }
}
"#;

/// The value of the one sample of `name` whose labels include `labels`.
fn sample(scrape: &prometheus_parse::Scrape, name: &str, labels: &[(&str, &str)]) -> f64 {
    let found: Vec<&prometheus_parse::Sample> = scrape
        .samples
        .iter()
        .filter(|s| s.metric == name)
        .filter(|s| labels.iter().all(|(k, v)| s.labels.get(k) == Some(*v)))
        .collect();
    assert_eq!(found.len(), 1, "{name} {labels:?}: {found:?}");
    match found[0].value {
        prometheus_parse::Value::Counter(v)
        | prometheus_parse::Value::Gauge(v)
        | prometheus_parse::Value::Untyped(v) => v,
        ref other => panic!("{name}: {other:?}"),
    }
}

#[test]
fn metrics_count_a_known_run_exactly_and_health_checks_answer() {
    let p = Project::new();
    p.write("scripts/m.rhai", SCRIPT);
    let docs: String = ["plain", "escalate", "boom", "mail", "card"]
        .iter()
        .map(|t| format!("{{\"id\": \"{t}\", \"text\": \"{t}\"}}\n"))
        .collect();
    p.write("inbox/docs.jsonl", docs);
    let local = StubServer::conforming(Duration::ZERO);
    let cloud = StubServer::conforming(Duration::ZERO);
    let (lu, cu) = (local.url(), cloud.url());
    let port = free_port();
    let listen = format!("127.0.0.1:{port}");
    let host = p.spawn(&[
        "run",
        "--watch",
        "scripts/m.rhai",
        "inbox",
        "--out",
        "r.jsonl",
        "--local-url",
        &lu,
        "--cloud-url",
        &cu,
        "--cache",
        "off",
        "--listen",
        &listen,
    ]);
    let records = wait_for(30, "five records", || {
        let r = read_records(&p.path("r.jsonl"));
        (r.len() == 5).then_some(r)
    });
    // The record is written before the metrics count it: wait for the last one.
    wait_for(10, "the metrics to count every record", || {
        let (_, body) = get(port, "/metrics", None);
        body.contains("error_kind=\"script\"} 1").then_some(())
    });
    let (status, body) = get(port, "/metrics", None);
    assert_eq!(status, 200);
    assert!(body.ends_with("# EOF\n"), "{body}");
    let lines = body.lines().map(|l| Ok(l.to_owned()));
    let scrape = prometheus_parse::Scrape::parse(lines).unwrap();

    let pipeline = ("pipeline", "scripts/m.rhai");
    assert_eq!(
        sample(
            &scrape,
            "hybrid_documents_total",
            &[pipeline, ("outcome", "ok")]
        ),
        4.0
    );
    assert_eq!(
        sample(
            &scrape,
            "hybrid_documents_total",
            &[pipeline, ("outcome", "failed"), ("error_kind", "script")]
        ),
        1.0
    );
    let calls = |function: &str, outcome: &str| {
        sample(
            &scrape,
            "hybrid_model_calls_total",
            &[("function", function), ("outcome", outcome)],
        )
    };
    assert_eq!(calls("local", "ok"), 4.0);
    assert_eq!(calls("cloud", "ok"), 2.0);
    assert_eq!(calls("cloud", "blocked"), 1.0);
    assert_eq!(
        sample(
            &scrape,
            "hybrid_egress_blocked_total",
            &[("rule", "payment_card")]
        ),
        1.0
    );
    assert_eq!(
        sample(
            &scrape,
            "hybrid_egress_redactions_total",
            &[("rule", "email")]
        ),
        1.0
    );
    assert_eq!(
        sample(&scrape, "hybrid_escalations_total", &[pipeline]),
        3.0
    );
    assert_eq!(
        sample(&scrape, "hybrid_divergences_total", &[pipeline]),
        1.0
    );
    for (decision, n) in [("local", 1.0), ("cloud", 2.0), ("blocked", 1.0)] {
        assert_eq!(
            sample(
                &scrape,
                "hybrid_decisions_total",
                &[pipeline, ("decision", decision)]
            ),
            n,
            "{decision}"
        );
    }
    assert_eq!(sample(&scrape, "hybrid_local_call_share", &[]), 4.0 / 7.0);
    assert_eq!(sample(&scrape, "hybrid_documents_in_flight", &[]), 0.0);
    assert_eq!(sample(&scrape, "hybrid_documents_pending", &[]), 0.0);
    let version = records[0]["version"].as_str().unwrap();
    assert_eq!(
        sample(
            &scrape,
            "hybrid_rules_version_info",
            &[pipeline, ("version", version)]
        ),
        1.0
    );
    // Tokens are the records' own, summed.
    for (function, kind, field) in [
        ("local", "prompt", "prompt_tokens"),
        ("local", "completion", "completion_tokens"),
        ("cloud", "prompt", "prompt_tokens"),
    ] {
        let expected: f64 = records
            .iter()
            .flat_map(|r| r["calls"].as_array().unwrap())
            .filter(|c| c["function"] == function)
            .map(|c| c[field].as_f64().unwrap())
            .sum();
        assert_eq!(
            sample(
                &scrape,
                "hybrid_model_tokens_total",
                &[("function", function), ("kind", kind)]
            ),
            expected,
            "{function} {kind}"
        );
    }
    // One latency observation per call.
    assert_eq!(
        sample(
            &scrape,
            "hybrid_model_call_duration_seconds_count",
            &[("function", "local")]
        ),
        4.0
    );
    // Never a document id in a label.
    for id in ["plain", "escalate", "mail", "card"] {
        assert!(!body.contains(&format!("\"{id}\"")), "{id} in {body}");
    }

    let (status, body) = get(port, "/healthz", None);
    assert_eq!((status, body.as_str()), (200, "ok\n"));
    // Without a token, a request addressed by another name (a rebound web page's) is refused.
    let evil = format!("evil.example:{port}");
    assert_eq!(get_as(port, &evil, "/metrics", None).0, 403);
    let (status, body) = get(port, "/readyz", None);
    assert_eq!(status, 200);
    let ready: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(ready["ready"], true);
    assert_eq!(ready["rules_version"], version);
    assert_eq!(
        ready["local_model"], "ready",
        "a model server has nothing to load"
    );
    assert_eq!(get(port, "/nope", None).0, 404);

    // A rejected edit counts as a rejected reload.
    p.write("scripts/m.rhai", "fn process(doc) { doc.text +\n");
    wait_for(20, "the rejected reload to be counted", || {
        let (_, body) = get(port, "/metrics", None);
        body.contains("hybrid_rules_reloads_total{outcome=\"rejected\"} 1")
            .then_some(())
    });
    assert_eq!(host.stop("TERM"), 2);
}

#[test]
fn the_console_needs_a_token_beyond_loopback_and_checks_it() {
    let p = Project::new();
    p.write("scripts/m.rhai", "fn process(doc) { doc.text }\n");
    std::fs::create_dir_all(p.path("inbox")).unwrap();
    let open = p
        .hybrid(&[
            "run",
            "--watch",
            "scripts/m.rhai",
            "inbox",
            "--out",
            "r.jsonl",
            "--listen",
            "0.0.0.0:0",
        ])
        .output()
        .expect_code(1);
    assert!(
        open.stderr().contains("needs a token") && open.stderr().contains("--token-file"),
        "{}",
        open.stderr()
    );

    p.write("token", "s3cret-token\n");
    let port = free_port();
    let listen = format!("127.0.0.1:{port}");
    let host = p.spawn(&[
        "run",
        "--watch",
        "scripts/m.rhai",
        "inbox",
        "--out",
        "r.jsonl",
        "--listen",
        &listen,
        "--token-file",
        "token",
    ]);
    wait_listening(port, "the console to listen");
    assert_eq!(get(port, "/metrics", None).0, 401);
    assert_eq!(get(port, "/metrics", Some("wrong-token!")).0, 401);
    assert_eq!(get(port, "/metrics", Some("s3cret-token")).0, 200);
    assert_eq!(get(port, "/healthz", Some("s3cret-token")).0, 200);
    assert_eq!(host.stop("TERM"), 0);
}
