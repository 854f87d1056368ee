//! The shipped example pipelines, run as their header comments say, through the real binary
//! with the tiny local model and a loopback cloud.

use std::path::Path;
use std::time::Duration;

use crate::openai_stub::StubServer;
use crate::support::Project;

/// A project holding copies of the repository's scripts, schemas and samples.
pub fn shipped() -> Project {
    let p = Project::new();
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    for dir in ["scripts", "schemas", "samples", "stdlib"] {
        copy_dir(&root.join(dir), &p.path(dir));
    }
    std::fs::copy(root.join("hybrid.toml"), p.path("hybrid.toml")).unwrap();
    p
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).unwrap();
        }
    }
}

#[test]
fn every_shipped_script_checks() {
    let p = shipped();
    for entry in std::fs::read_dir(p.path("scripts")).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "rhai") {
            let rel = format!("scripts/{}", path.file_name().unwrap().to_string_lossy());
            p.hybrid(&["check", &rel]).output().expect_code(0);
        }
    }
}

#[test]
fn contract_triage_runs_offline_as_the_readme_says() {
    let p = shipped();
    // The README's first command: inputs and outputs come from the pipeline's table in the
    // repository's hybrid.toml.
    p.hybrid(&[
        "run",
        "scripts/contract_triage.rhai",
        "--local-model",
        "tiny",
        "--cloud",
        "dry-run",
    ])
    .output()
    .expect_code(0);
    let records = crate::support::read_records(&p.path("out/contract_triage.jsonl"));
    assert_eq!(
        records.len(),
        std::fs::read_dir(p.path("samples/contracts"))
            .unwrap()
            .count()
    );
    // The scanned contract and the phone photo are read from their page images.
    for scan in [
        "samples/contracts/servicios_bogota_escaneado.pdf",
        "samples/contracts/foto_contrato_bogota.jpg",
    ] {
        let r = records.iter().find(|r| r["id"] == scan).unwrap();
        assert_eq!(r["ok"], true, "{r}");
        assert_eq!(r["calls"][0]["function"], "local", "{r}");
    }
    let mut escalated = 0;
    for r in &records {
        assert_eq!(r["calls"][0]["backend"], "mistralrs");
        match r["result"]["decision"].as_str().unwrap() {
            "cloud" => {
                escalated += 1;
                assert_eq!(r["calls"][1]["dry_run"], true, "{r}");
                assert!(r["calls"][1]["cost_usd"].as_f64().unwrap() > 0.0);
            }
            "local" | "human_review" => {}
            other => panic!("unexpected decision {other}: {r}"),
        }
    }
    let audit =
        std::fs::read_to_string(p.path("out/contract_triage.audit.jsonl")).unwrap_or_default();
    assert_eq!(audit.lines().count(), escalated);
    assert!(audit.lines().all(|l| l.contains("\"outcome\":\"dry_run\"")));

    // A second run does not overwrite those results silently.
    let again = p
        .hybrid(&[
            "run",
            "scripts/contract_triage.rhai",
            "--local-model",
            "tiny",
        ])
        .output();
    assert_eq!(again.code(), 1);
    assert!(again.stderr().contains("--overwrite"), "{}", again.stderr());

    // Without a key and without dry-run, escalations go to human review.
    let done = p
        .hybrid(&[
            "run",
            "scripts/contract_triage.rhai",
            "--local-model",
            "tiny",
            "--out",
            "-",
        ])
        .output()
        .expect_code(0);
    for r in &done.records() {
        let decision = r["result"]["decision"].as_str().unwrap();
        assert!(
            ["local", "human_review"].contains(&decision),
            "no cloud without a key: {r}"
        );
    }
}

#[test]
fn contract_triage_escalates_only_extracted_json_to_the_cloud() {
    let p = shipped();
    let server = StubServer::conforming(Duration::ZERO);
    let url = server.url();
    // Force every contract past the confidence rule, so each one that the local model
    // triaged goes to the cloud.
    p.set_constant(
        "contract_triage.rhai",
        "const ESCALATE_BELOW = 0.75;",
        "const ESCALATE_BELOW = 2.0;",
    );
    let done = p
        .hybrid(&[
            "run",
            "scripts/contract_triage.rhai",
            "samples/contracts",
            "--out",
            "-",
            "--local-model",
            "tiny",
            "--cloud-url",
            &url,
        ])
        .output()
        .expect_code(0);
    let escalated: Vec<_> = done
        .records()
        .into_iter()
        .filter(|r| r["result"]["decision"] == "cloud")
        .collect();
    let requests = server.requests();
    assert!(
        !escalated.is_empty(),
        "nothing escalated:\n{}",
        done.stdout()
    );
    assert_eq!(requests.len(), escalated.len());
    for r in &escalated {
        assert_eq!(r["result"]["risk"]["overall_risk"], "low", "{r}");
        assert!(
            r["result"]["reasons"][0]
                .as_str()
                .unwrap()
                .starts_with("confidence"),
            "{r}"
        );
    }
    // Not one line of any contract reached the server.
    for entry in std::fs::read_dir(p.path("samples/contracts")).unwrap() {
        // The scans and photos have no text lines to look for.
        let Ok(text) = std::fs::read_to_string(entry.unwrap().path()) else {
            continue;
        };
        for line in text.lines().filter(|l| l.len() > 40) {
            for req in &requests {
                assert!(
                    !req.raw.contains(line),
                    "contract text left the machine: {line}"
                );
            }
        }
    }
}

#[test]
fn contract_triage_escalates_local_json_that_fails_its_schema() {
    let p = shipped();
    // A local server whose answer is JSON but breaks the schema (confidence above 1).
    let local = StubServer::start(|_, _| {
        crate::openai_stub::Reply::content(
            r#"{"document_type":"service_agreement","parties":[{"name":"DataAndes S.A.S.","role":"provider"}],"jurisdiction":"Colombia","risk_flags":[],"escalate_to_cloud":false,"confidence_score":7}"#,
        )
    });
    let cloud = StubServer::conforming(Duration::ZERO);
    let (lu, cu) = (local.url(), cloud.url());
    let done = p
        .hybrid(&[
            "run",
            "scripts/contract_triage.rhai",
            "samples/contracts/servicios_bogota.txt",
            "--out",
            "-",
            "--local-url",
            &lu,
            "--cloud-url",
            &cu,
        ])
        .output()
        .expect_code(0);
    let r = &done.records()[0];
    assert_eq!(r["result"]["decision"], "cloud", "{r}");
    assert_eq!(r["result"]["reasons"][0], "local output failed validation");
    assert_eq!(r["calls"][0]["error"], "invalid_output");
    let sent = &cloud.requests()[0];
    assert!(
        sent.prompt().contains("\"confidence_score\": 7"),
        "{}",
        sent.prompt()
    );
    assert!(!sent.raw.contains("CONTRATO DE PRESTACIÓN"));
}

#[test]
fn diff_shows_what_a_threshold_change_did() {
    let p = shipped();
    let server = StubServer::conforming(Duration::ZERO);
    let url = server.url();
    // The real run, or (`--replay`) the same settings answered from the cache.
    let run = |out: &str, extra: &[&str]| {
        let mut args = vec![
            "run",
            "scripts/contract_triage.rhai",
            "--local-url",
            &url,
            "--cloud-url",
            &url,
            "--out",
            out,
        ];
        args.extend_from_slice(extra);
        p.hybrid(&args).output().expect_code(0)
    };
    // The stub's triage has confidence 0: below 0.75 every contract escalates; below 0 none.
    run("before.jsonl", &[]);
    p.set_constant(
        "contract_triage.rhai",
        "const ESCALATE_BELOW = 0.75;",
        "const ESCALATE_BELOW = 0.0;",
    );
    // What-if: the changed rules over the same traffic, answered from the cache.
    let sent = server.requests().len();
    let replayed = run("after.jsonl", &["--replay"]);
    assert_eq!(server.requests().len(), sent, "a replay calls no model");
    assert!(
        !replayed.stderr().contains("not in the answer cache"),
        "{}",
        replayed.stderr()
    );
    let n = std::fs::read_dir(p.path("samples/contracts"))
        .unwrap()
        .count();
    let text = p
        .hybrid(&["diff", "before.jsonl", "after.jsonl"])
        .output()
        .expect_code(0)
        .stdout();
    assert!(
        text.contains(&format!("changed          {n} (100.0%)")),
        "{text}"
    );
    assert!(
        text.contains(&format!("cloud {n} → 0, local 0 → {n}")),
        "{text}"
    );
    assert!(
        text.contains(&format!("cloud calls      {n} → 0")),
        "{text}"
    );
    assert!(text.contains("decision: \"cloud\" → \"local\""), "{text}");
    let ids = p
        .hybrid(&["diff", "before.jsonl", "after.jsonl", "--ids"])
        .output()
        .expect_code(0)
        .stdout();
    assert_eq!(ids.lines().count(), n, "{ids}");
    let json: serde_json::Value = serde_json::from_str(
        &p.hybrid(&["diff", "before.jsonl", "after.jsonl", "--json"])
            .output()
            .expect_code(0)
            .stdout(),
    )
    .unwrap();
    assert_eq!(json["new"]["cloud_calls"], 0);
    assert!(json["old"]["cloud_usd"].as_f64().unwrap() > 0.0);
    assert_eq!(json["newly_failing"].as_array().unwrap().len(), 0);

    // A prompt edit makes requests the cache has never seen: estimated, marked and counted.
    p.set_constant(
        "contract_triage.rhai",
        "Classify the contract,",
        "Classify the agreement,",
    );
    let missed = run("missed.jsonl", &["--replay"]);
    assert_eq!(server.requests().len(), sent);
    assert!(
        missed
            .stderr()
            .contains(&format!("{n} calls not in the answer cache")),
        "{}",
        missed.stderr()
    );
    let records = crate::support::read_records(&p.path("missed.jsonl"));
    assert!(records.iter().all(|r| r["calls"][0]["replay_miss"] == true));
}

#[test]
fn every_shipped_pipeline_passes_its_cases() {
    let p = shipped();
    for script in ["contract_triage", "intent_parallel", "finance_refine"] {
        let done = p
            .hybrid(&["test", &format!("scripts/{script}.rhai")])
            .output()
            .expect_code(0);
        assert!(
            done.stdout().contains(" failed") && done.stdout().contains(", 0 failed"),
            "{script}: {}",
            done.stdout()
        );
    }
}

#[test]
fn the_contract_pipelines_cases_pin_its_routing() {
    let p = shipped();
    let done = p
        .hybrid(&["test", "scripts/contract_triage.rhai"])
        .output()
        .expect_code(0);
    let out = done.stdout();
    assert!(out.contains("10 cases: 10 passed, 0 failed"), "{out}");
    // A rule edit that changes the routing is caught, with the case, its line and the
    // difference; the exit code says so.
    p.set_constant(
        "contract_triage.rhai",
        "const ESCALATE_BELOW = 0.75;",
        "const ESCALATE_BELOW = 0.4;",
    );
    let done = p.hybrid(&["test", "scripts/contract_triage.rhai"]).output();
    assert_eq!(done.code(), 1);
    let out = done.stdout();
    assert!(
        out.contains("FAIL low confidence escalates, and the cloud's risk is kept (scripts/contract_triage.cases.jsonl:2)"),
        "{out}"
    );
    assert!(
        out.contains("decision: expected \"cloud\", got \"local\""),
        "{out}"
    );
    // A broken cases file says where.
    p.write("scripts/contract_triage.cases.jsonl", "{\"name\": \"x\"}\n");
    let done = p.hybrid(&["test", "scripts/contract_triage.rhai"]).output();
    assert_eq!(done.code(), 1);
    assert!(
        done.stderr().contains("contract_triage.cases.jsonl:1"),
        "{}",
        done.stderr()
    );
}
