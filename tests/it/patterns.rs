//! The three shipped pipelines and the standard library, through the real binary: the tiny
//! local model or a loopback local server, and a loopback cloud that records every request.

use std::collections::HashMap;
use std::time::Duration;

use serde_json::{json, Value};

use crate::examples::shipped;
use crate::openai_stub::{Reply, StubServer};
use crate::support::{read_records, Project};

fn messages(p: &Project) -> HashMap<String, String> {
    read_records(&p.path("samples/messages.jsonl"))
        .into_iter()
        .map(|m| {
            (
                m["id"].as_str().unwrap().to_owned(),
                m["text"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

const LOCAL: &str =
    r#"{"intent":"billing","urgency":"medium","sentiment":0.1,"products":["factura"]}"#;

#[test]
fn sampling_is_deterministic_and_near_its_rate() {
    let p = Project::new();
    p.write(
        "scripts/s.rhai",
        "fn process(doc) {\n    let n = 0;\n    for i in 0..4000 { if sampled(\"msg-\" + i, 0.18) { n += 1; } }\n    #{ n: n, same: sampled(doc.id, 0.5) == sampled(doc.id, 0.5) }\n}\n",
    );
    let r = p
        .hybrid(&["run", "scripts/s.rhai", "-"])
        .stdin("{\"id\": \"x\"}\n")
        .output()
        .expect_code(0)
        .record("x");
    let n = r["result"]["n"].as_i64().unwrap();
    assert!((640..=800).contains(&n), "{n} of 4000 at 18%");
    assert_eq!(r["result"]["same"], true);
}

#[test]
fn intent_parallel_merges_queues_divergences_and_exports_finetuning_pairs() {
    let p = shipped();
    // The local model always says "billing"; the cloud agrees only on billing messages.
    let local = StubServer::start(|_, _| Reply::content(LOCAL));
    let cloud = StubServer::start(|_, req| {
        let text = req.prompt().to_lowercase();
        if text.contains("factura") || text.contains("cobr") {
            Reply::content(&LOCAL.replace("0.1", "0.3")).model("gpt-5.4")
        } else {
            Reply::content(
                r#"{"intent":"delivery","urgency":"high","sentiment":-0.5,"products":[]}"#,
            )
            .model("gpt-5.4")
        }
    });
    let (lu, cu) = (local.url(), cloud.url());
    let done = p
        .hybrid(&[
            "run",
            "scripts/intent_parallel.rhai",
            "samples/messages.jsonl",
            "--local-url",
            &lu,
            "--cloud-url",
            &cu,
            "--out",
            "out/intents.jsonl",
        ])
        .output()
        .expect_code(0);
    assert_eq!(done.stdout(), "");
    let records = read_records(&p.path("out/intents.jsonl"));
    let texts = messages(&p);
    assert_eq!(records.len(), texts.len());

    let sampled: Vec<&Value> = records
        .iter()
        .filter(|r| r["result"]["sampled"] == true)
        .collect();
    assert!(
        !sampled.is_empty() && sampled.len() < records.len() / 2,
        "{} of {} sampled",
        sampled.len(),
        records.len()
    );
    assert_eq!(
        cloud.requests().len(),
        sampled.len(),
        "the cloud answers the sample only"
    );
    assert_eq!(
        local.requests().len(),
        records.len(),
        "the local model answers everything"
    );

    let mut divergent = 0;
    for r in &sampled {
        let text = texts[r["id"].as_str().unwrap()].to_lowercase();
        let billing = text.contains("factura") || text.contains("cobr");
        if billing {
            assert_eq!(r["result"]["decision"], "local", "{r}");
            assert_eq!(
                r["result"]["divergent"], false,
                "sentiment 0.1 vs 0.3 is inside the band: {r}"
            );
        } else {
            divergent += 1;
            assert_eq!(r["result"]["decision"], "human_review", "{r}");
            assert_eq!(
                r["result"]["divergent_fields"],
                json!(["intent", "products", "sentiment", "urgency"])
            );
        }
    }
    let queue = read_records(&p.path("out/review_queue.jsonl"));
    assert_eq!(queue.len(), divergent);
    for q in &queue {
        assert_eq!(q["text"], texts[q["id"].as_str().unwrap()].as_str());
        assert_eq!(q["cloud"]["intent"], "delivery");
    }
    let finetune = read_records(&p.path("out/finetune_intent.jsonl"));
    assert_eq!(finetune.len(), divergent);
    for f in &finetune {
        let msgs = f["messages"].as_array().unwrap();
        assert_eq!(
            (
                msgs[0]["role"].as_str(),
                msgs[1]["role"].as_str(),
                msgs[2]["role"].as_str()
            ),
            (Some("system"), Some("user"), Some("assistant"))
        );
        let target: Value = serde_json::from_str(msgs[2]["content"].as_str().unwrap()).unwrap();
        assert_eq!(
            target["intent"], "delivery",
            "the cloud's answer is the target"
        );
    }

    let report = p
        .hybrid(&["report", "out/intents.jsonl", "--json"])
        .output()
        .expect_code(0);
    let report: Value = serde_json::from_str(&report.stdout()).unwrap();
    assert_eq!(report["compared_documents"], sampled.len());
    assert_eq!(report["divergent_documents"], divergent);
    if divergent > 0 {
        assert_eq!(report["divergence_by_field"]["intent"], divergent);
        assert_eq!(report["divergence_by_category"]["delivery"][1], divergent);
    }

    // The policy constant: take the cloud's answer instead of queueing.
    p.set_constant(
        "intent_parallel.rhai",
        "const ON_DIVERGENCE = \"review\";",
        "const ON_DIVERGENCE = \"cloud\";",
    );
    let done = p
        .hybrid(&[
            "run",
            "scripts/intent_parallel.rhai",
            "samples/messages.jsonl",
            "--out",
            "-",
            "--local-url",
            &lu,
            "--cloud-url",
            &cu,
        ])
        .output()
        .expect_code(0);
    for r in done
        .records()
        .iter()
        .filter(|r| r["result"]["divergent"] == true)
    {
        assert_eq!(r["result"]["decision"], "cloud");
        assert_eq!(r["result"]["answer"]["intent"], "delivery");
    }
}

#[test]
fn both_keeps_the_local_answer_when_the_cloud_fails() {
    let p = shipped();
    let local = StubServer::start(|_, _| Reply::content(LOCAL));
    let cloud = StubServer::start(|_, _| Reply::error(503, "server_error", "down"));
    let (lu, cu) = (local.url(), cloud.url());
    p.set_constant(
        "intent_parallel.rhai",
        "const SAMPLE_RATE = 0.18;",
        "const SAMPLE_RATE = 1.0;",
    );
    let done = p
        .hybrid(&[
            "run",
            "scripts/intent_parallel.rhai",
            "samples/messages.jsonl",
            "--out",
            "-",
            "--local-url",
            &lu,
            "--cloud-url",
            &cu,
            "--max-retries",
            "0",
        ])
        .output()
        .expect_code(0);
    for r in done.records() {
        assert_eq!(r["result"]["decision"], "local", "{r}");
        assert_eq!(r["result"]["cloud_error"], "server");
        assert_eq!(r["calls"].as_array().unwrap().len(), 2);
    }
}

#[test]
fn intent_parallel_and_finance_refine_run_offline_as_their_headers_say() {
    let p = shipped();
    let done = p
        .hybrid(&[
            "run",
            "scripts/intent_parallel.rhai",
            "samples/messages.jsonl",
            "--local-model",
            "tiny",
            "--cloud",
            "dry-run",
            "--out",
            "out/intents.jsonl",
        ])
        .output()
        .expect_code(0);
    assert!(done.stderr().contains("documents"), "{}", done.stderr());
    let records = read_records(&p.path("out/intents.jsonl"));
    assert!(records.iter().all(|r| r["ok"] == true), "{records:?}");
    for r in records.iter().filter(|r| r["result"]["sampled"] == true) {
        assert_eq!(r["calls"][1]["dry_run"], true, "{r}");
    }
    p.hybrid(&["report", "out/intents.jsonl"])
        .output()
        .expect_code(0);

    let done = p
        .hybrid(&[
            "run",
            "scripts/finance_refine.rhai",
            "samples/finance",
            "--out",
            "-",
            "--local-model",
            "tiny",
            "--cloud",
            "dry-run",
        ])
        .output()
        .expect_code(0);
    for r in done.records() {
        let decision = r["result"]["decision"].as_str().unwrap();
        assert!(
            ["local", "cloud", "human_review"].contains(&decision),
            "{r}"
        );
        if decision != "human_review" {
            assert!(r["result"]["draft"]["case_type"].is_string(), "{r}");
        }
    }
}

#[test]
fn finance_refine_sends_the_cloud_the_draft_not_the_case() {
    let p = shipped();
    p.set_constant(
        "finance_refine.rhai",
        "const CONFIDENT_ENOUGH = 0.9;",
        "const CONFIDENT_ENOUGH = 2.0;",
    );
    let cloud = StubServer::conforming(Duration::ZERO);
    let cu = cloud.url();
    let done = p
        .hybrid(&[
            "run",
            "scripts/finance_refine.rhai",
            "samples/finance",
            "--out",
            "-",
            "--local-model",
            "tiny",
            "--cloud-url",
            &cu,
        ])
        .output()
        .expect_code(0);
    let records = done.records();
    assert_eq!(records.len(), 3);
    // Random weights can fail the draft's schema (then a person takes the case); every
    // valid draft goes to the cloud here.
    let escalated: Vec<_> = records
        .iter()
        .filter(|r| r["result"]["decision"] == "cloud")
        .collect();
    assert!(!escalated.is_empty(), "{records:?}");
    for r in &records {
        let decision = r["result"]["decision"].as_str().unwrap();
        assert!(
            decision == "cloud" || (decision == "human_review" && r["result"]["draft"].is_null()),
            "{r}"
        );
    }
    for r in &escalated {
        assert!(r["result"]["report"]["verdict"].is_string());
    }
    let requests = cloud.requests();
    assert_eq!(requests.len(), escalated.len());
    for entry in std::fs::read_dir(p.path("samples/finance")).unwrap() {
        let case = std::fs::read_to_string(entry.unwrap().path()).unwrap();
        for line in case.lines().filter(|l| l.len() > 30) {
            assert!(
                requests.iter().all(|r| !r.raw.contains(line)),
                "case text reached the cloud: {line}"
            );
        }
    }
    for r in &requests {
        assert_eq!(
            r.body["response_format"]["json_schema"]["name"],
            "finance_report"
        );
        assert!(
            r.prompt().contains("key_figures"),
            "the draft is what goes: {}",
            r.prompt()
        );
    }
}

#[test]
fn stdlib_merge_compares_by_rule() {
    let p = Project::new();
    p.write(
        "scripts/m.rhai",
        r#"import "hybrid/merge" as merge;
fn process(doc) {
    let a = #{ intent: "billing", score: 0.60, tags: ["a", "b", "c"], extra: 1 };
    let b = #{ intent: "billing", score: 0.75, tags: ["b", "c", "d"], extra: 2 };
    let tight = merge::compare(a, b, #{ intent: "exact", score: #{ band: 0.1 }, tags: #{ overlap: 0.5 } });
    let loose = merge::compare(a, b, #{ intent: "exact", score: #{ band: 0.2 }, tags: #{ overlap: 0.5 } });
    #{ tight: tight.divergent_fields, loose: loose.agree, jaccard: merge::jaccard(a.tags, b.tags) }
}
"#,
    );
    let r = p
        .hybrid(&["run", "scripts/m.rhai", "-"])
        .stdin("{\"id\": \"x\"}\n")
        .output()
        .expect_code(0)
        .record("x");
    assert_eq!(r["result"]["tight"], json!(["score"]));
    assert_eq!(r["result"]["loose"], true);
    assert_eq!(r["result"]["jaccard"], 0.5);
}
