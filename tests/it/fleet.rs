//! The fleet against a real `nats-server -js` on a free loopback port: workers, submit,
//! results, dead letters, rules pushes, kill -9 and a server restart.

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::Value;

use crate::openai_stub::{instance_of, Reply, StubServer};
use crate::support::{free_port, installed, wait_for, wait_listening, Project, Running};

/// A JetStream server of our own, in a temp store, that can be stopped and started again on
/// the same port with the same store.
struct Nats {
    child: Option<Child>,
    port: u16,
    store: tempfile::TempDir,
}

impl Nats {
    fn start() -> Nats {
        let port = free_port();
        let mut nats = Nats {
            child: None,
            port,
            store: tempfile::tempdir().unwrap(),
        };
        nats.up();
        nats
    }

    fn up(&mut self) {
        let binary = installed(
            &[
                "nats-server",
                "/usr/sbin/nats-server",
                "/usr/bin/nats-server",
            ],
            "apt-get install nats-server",
        );
        let child = Command::new(binary)
            .args([
                "-js",
                "-a",
                "127.0.0.1",
                "-p",
                &self.port.to_string(),
                "-sd",
            ])
            .arg(self.store.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        self.child = Some(child);
        wait_listening(self.port, "nats-server to listen");
    }

    fn down(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = Command::new("kill")
                .args(["-TERM", &child.id().to_string()])
                .status();
            let _ = child.wait();
        }
    }

    fn url(&self, stream: &str) -> String {
        format!("nats://127.0.0.1:{}/{stream}", self.port)
    }
}

impl Drop for Nats {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

fn results(p: &Project, queue: &str, dead: bool) -> Vec<Value> {
    let mut args = vec!["fleet", "results", "--queue", queue];
    if dead {
        args.push("--dead");
    }
    let done = p.hybrid(&args).output().expect_code(0);
    done.stdout()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

fn status(p: &Project, queue: &str) -> Value {
    let done = p
        .hybrid(&["fleet", "status", "--queue", queue, "--json"])
        .output()
        .expect_code(0);
    serde_json::from_str(&done.stdout()).unwrap()
}

fn docs(prefix: &str, n: usize) -> String {
    (0..n)
        .map(|i| format!("{{\"id\": \"{prefix}{i}\", \"text\": \"documento {i}\"}}\n"))
        .collect()
}

fn worker(p: &Project, queue: &str, cloud: &str, out: &str) -> Running {
    p.spawn(&[
        "run",
        "scripts/f.rhai",
        queue,
        "--cloud-url",
        cloud,
        "--jobs",
        "2",
        "--cache",
        "off",
        "--max-retries",
        "0",
        "--out",
        out,
    ])
}

/// `hybrid rules push scripts/f.rhai` with the pusher's own (looser) settings.
fn push(p: &Project, queue: &str) -> crate::support::Done {
    p.hybrid(&[
        "rules",
        "push",
        "scripts/f.rhai",
        "--to",
        queue,
        "--config",
        "push.toml",
    ])
    .output()
    .expect_code(0)
}

/// Each id once, and the count.
fn assert_once(records: &[Value], expected: usize) {
    let mut ids: Vec<&str> = records.iter().map(|r| r["id"].as_str().unwrap()).collect();
    ids.sort();
    let before = ids.len();
    ids.dedup();
    assert_eq!(before, ids.len(), "a document has two records");
    assert_eq!(ids.len(), expected, "documents missing");
}

#[test]
fn three_workers_record_each_document_once_through_a_kill_and_follow_pushed_rules() {
    let nats = Nats::start();
    let queue = nats.url("contracts");
    let cloud = StubServer::conforming(Duration::from_millis(300));
    let p = Project::new();
    p.write(
        "scripts/f.rhai",
        "const RULE = 1;\nfn process(doc) {\n    let answer = cloud(#{ input: #{ id: doc.id } });\n    #{ rule: RULE, answer: answer }\n}\n",
    );
    // The workers' limits are tighter than the pusher's: a bundle that passes the pusher's
    // checks can still fail on a worker.
    p.write(
        "hybrid.toml",
        "[fleet]\nack_wait_secs = 2\nheartbeat_secs = 1\n\n[limits]\nmax_expr_depth = 20\n",
    );
    p.write("push.toml", "[fleet]\nheartbeat_secs = 1\n");
    p.write("docs.jsonl", docs("d", 60));

    let submitted = p
        .hybrid(&["submit", &queue, "docs.jsonl"])
        .output()
        .expect_code(0);
    assert!(
        submitted.stderr().contains("60 documents queued"),
        "{}",
        submitted.stderr()
    );
    // Submitting again queues nothing twice.
    let again = p
        .hybrid(&["submit", &queue, "docs.jsonl"])
        .output()
        .expect_code(0);
    assert!(
        again.stderr().contains("60 already queued"),
        "{}",
        again.stderr()
    );

    let url = cloud.url();
    let mut workers: Vec<Running> = (0..3)
        .map(|i| worker(&p, &queue, &url, &format!("w{i}.jsonl")))
        .collect();
    wait_for(60, "some results", || {
        (results(&p, &queue, false).len() >= 10).then_some(())
    });
    // kill -9: its unacked documents go to the others after the ack wait.
    let mut killed = workers.remove(0);
    killed.child.kill().unwrap();
    killed.child.wait().unwrap();
    let stored = wait_for(60, "every document's result", || {
        let r = results(&p, &queue, false);
        (r.len() >= 60).then_some(r)
    });
    std::thread::sleep(Duration::from_millis(500));
    let stored = {
        let again = results(&p, &queue, false);
        assert_eq!(again.len(), stored.len());
        again
    };
    assert_once(&stored, 60);
    assert!(stored.iter().all(|r| r["ok"] == true), "{stored:?}");
    // The killed worker had documents in flight: they ran again elsewhere, yet each
    // document has one stored result.
    assert!(
        cloud.requests().len() > 60,
        "{} requests: the kill caught nothing in flight",
        cloud.requests().len()
    );
    let first_version = stored[0]["version"].as_str().unwrap().to_owned();

    // The killed worker's heartbeat expires; two remain, on the local script.
    let live = wait_for(30, "the killed worker to drop out", || {
        let s = status(&p, &queue);
        (s["workers"].as_array().unwrap().len() == 2).then_some(s)
    });
    assert_eq!(live["waiting"], 0);
    assert!(live["workers"]
        .as_array()
        .unwrap()
        .iter()
        .all(|w| w["version"] == first_version.as_str() && w["revision"].is_null()));

    // A push reaches every worker; documents after it carry the new version.
    p.set_constant("f.rhai", "const RULE = 1;", "const RULE = 2;");
    let pushed = push(&p, &queue);
    let line = pushed.stdout();
    assert!(line.contains("as revision 1"), "{line}");
    let new_version = line.split_whitespace().nth(2).unwrap().to_owned();
    assert_ne!(new_version, first_version);
    wait_for(30, "every worker to run the pushed rules", || {
        let s = status(&p, &queue);
        s["workers"]
            .as_array()
            .unwrap()
            .iter()
            .all(|w| w["version"] == new_version.as_str() && w["revision"] == 1)
            .then_some(())
    });
    // Lines without an id are known by their content: two different ones are two documents.
    for text in ["sin id A", "sin id B"] {
        let queued = p
            .hybrid(&["submit", &queue, "-"])
            .stdin(format!("{{\"text\": \"{text}\"}}\n"))
            .output()
            .expect_code(0);
        assert!(
            queued.stderr().contains("1 documents queued"),
            "{}",
            queued.stderr()
        );
    }
    p.write("more.jsonl", docs("e", 8));
    p.hybrid(&["submit", &queue, "more.jsonl"])
        .output()
        .expect_code(0);
    let stored = wait_for(60, "the later documents' results", || {
        let r = results(&p, &queue, false);
        (r.len() >= 70).then_some(r)
    });
    assert_once(&stored, 70);
    assert_eq!(
        stored
            .iter()
            .filter(|r| r["id"].as_str().unwrap().starts_with("contracts#"))
            .count(),
        2,
        "id-less documents are known by their message"
    );
    for r in stored
        .iter()
        .filter(|r| r["id"].as_str().unwrap().starts_with('e'))
    {
        assert_eq!(r["version"], new_version.as_str(), "{r}");
        assert_eq!(r["result"]["rule"], 2, "{r}");
    }

    // A revision the workers cannot build (deeper than their limits allow) is rejected on
    // each of them; they keep the last good version and say so in their status.
    let deep = format!("{}RULE{}", "(".repeat(30), ")".repeat(30));
    p.write(
        "scripts/f.rhai",
        format!("const RULE = 3;\nfn process(doc) {{ #{{ rule: {deep} }} }}\n"),
    );
    let pushed = push(&p, &queue);
    assert!(
        pushed.stdout().contains("as revision 2"),
        "{}",
        pushed.stdout()
    );
    wait_for(30, "every worker to reject revision 2", || {
        let s = status(&p, &queue);
        s["workers"]
            .as_array()
            .unwrap()
            .iter()
            .all(|w| w["rejected"][0] == 2 && w["version"] == new_version.as_str())
            .then_some(())
    });
    assert!(workers[0]
        .log()
        .contains("pushed rules rejected on this worker, the last good version keeps running"));

    // A script that does not build is never pushed at all.
    p.write("scripts/f.rhai", "fn process(doc) { doc.text +\n");
    let refused = p
        .hybrid(&["rules", "push", "scripts/f.rhai", "--to", &queue])
        .output()
        .expect_code(1);
    assert!(
        refused.stderr().contains("scripts/f.rhai:"),
        "{}",
        refused.stderr()
    );

    // History lists both pushes; a rollback stores revision 1 again and the workers take it.
    let history = p
        .hybrid(&["rules", "history", "f", "--queue", &queue, "--json"])
        .output()
        .expect_code(0);
    let revisions: Vec<Value> = serde_json::from_str(&history.stdout()).unwrap();
    assert_eq!(revisions.len(), 2, "{revisions:?}");
    assert_eq!(revisions[0]["version"], new_version.as_str());
    let back = p
        .hybrid(&["rules", "rollback", "f", "--to", "1", "--queue", &queue])
        .output()
        .expect_code(0);
    assert!(
        back.stdout().contains("stored as revision 3"),
        "{}",
        back.stdout()
    );
    wait_for(30, "the workers to take the rollback", || {
        let s = status(&p, &queue);
        s["workers"]
            .as_array()
            .unwrap()
            .iter()
            .all(|w| w["revision"] == 3 && w["version"] == new_version.as_str())
            .then_some(())
    });

    // A worker that stops on TERM signs off at once.
    for w in workers {
        assert_eq!(w.stop("TERM"), 0);
    }
    assert_eq!(status(&p, &queue)["workers"].as_array().unwrap().len(), 0);
}

#[test]
fn a_poison_document_ends_dead_and_a_server_restart_loses_nothing() {
    let mut nats = Nats::start();
    let queue = nats.url("inbox");
    let cloud = StubServer::start(|_, seen| {
        if seen.raw.contains("poison") {
            Reply::error(500, "server_error", "the model crashed")
        } else if seen.raw.contains("slow") {
            // Longer than the ack wait: the worker's progress acks keep its lease.
            Reply::content("stub answer").delayed(Duration::from_secs(4))
        } else {
            let content = match seen.schema() {
                Some(schema) => instance_of(schema).to_string(),
                None => "stub answer".to_owned(),
            };
            Reply::content(&content).delayed(Duration::from_millis(100))
        }
    });
    let p = Project::new();
    p.write(
        "scripts/f.rhai",
        "fn process(doc) { cloud(#{ input: #{ id: doc.id } }) }\n",
    );
    p.write(
        "hybrid.toml",
        "[fleet]\nack_wait_secs = 2\nmax_deliver = 2\nretry_backoff_secs = 0.1\nheartbeat_secs = 1\n",
    );
    let mut input = docs("d", 40);
    input.push_str("{\"id\": \"poison\", \"text\": \"poison\"}\n");
    input.push_str("{\"id\": \"slow\", \"text\": \"slow\"}\n");
    // An id no header may carry as it is.
    input.push_str("{\"id\": \"two\\nlines\", \"text\": \"ok\"}\n");
    p.write("docs.jsonl", input);
    p.hybrid(&["submit", &queue, "docs.jsonl"])
        .output()
        .expect_code(0);

    let url = cloud.url();
    let host = worker(&p, &queue, &url, "w.jsonl");
    wait_for(60, "some results", || {
        (crate::support::read_records(&p.path("w.jsonl")).len() >= 8).then_some(())
    });
    // The server goes away mid-run and comes back with its store.
    nats.down();
    std::thread::sleep(Duration::from_millis(500));
    nats.up();
    let stored = wait_for(90, "every document's result", || {
        let r = results(&p, &nats.url("inbox"), false);
        (r.len() >= 43).then_some(r)
    });
    assert_once(&stored, 43);
    assert!(stored
        .iter()
        .any(|r| r["id"] == "two\nlines" && r["ok"] == true));
    let poison = stored.iter().find(|r| r["id"] == "poison").unwrap();
    assert_eq!(poison["error"]["kind"], "server", "{poison}");
    assert_eq!(
        stored.iter().filter(|r| r["ok"] == true).count(),
        42,
        "{stored:?}"
    );
    // Tried max_deliver times, then given up to the dead-letter subject with its error.
    let dead = results(&p, &queue, true);
    assert_eq!(dead.len(), 1, "{dead:?}");
    assert_eq!(dead[0]["id"], "poison");
    assert_eq!(dead[0]["delivered"], 2);
    assert_eq!(dead[0]["error_kind"], "server");
    assert_eq!(dead[0]["document"]["text"], "poison");
    let tries = cloud
        .requests()
        .iter()
        .filter(|r| r.raw.contains("poison"))
        .count();
    assert_eq!(tries, 2);
    let slow = cloud
        .requests()
        .iter()
        .filter(|r| r.raw.contains("slow"))
        .count();
    assert_eq!(
        slow, 1,
        "a document longer than the ack wait was taken away"
    );
    assert!(
        host.log().contains("handed back to the queue"),
        "{}",
        host.log()
    );
    assert_eq!(host.stop("TERM"), 2, "a failed document: exit 2");
}

#[test]
fn queue_addresses_and_unreachable_servers_are_clear_errors() {
    let p = Project::new();
    p.write("scripts/f.rhai", "fn process(doc) { doc.text }\n");
    let bad = p
        .hybrid(&["run", "scripts/f.rhai", "nats://127.0.0.1:4222"])
        .output()
        .expect_code(1);
    assert!(
        bad.stderr().contains("hint: write nats://HOST:PORT/STREAM"),
        "{}",
        bad.stderr()
    );
    let port = free_port();
    let queue = format!("nats://127.0.0.1:{port}/x");
    let down = p
        .hybrid(&["run", "scripts/f.rhai", &queue])
        .output()
        .expect_code(1);
    assert!(
        down.stderr().contains("cannot reach NATS") && down.stderr().contains("nats-server -js"),
        "{}",
        down.stderr()
    );
    p.write("a.txt", "x");
    let mixed = p
        .hybrid(&["run", "scripts/f.rhai", &queue, "a.txt"])
        .output()
        .expect_code(1);
    assert!(
        mixed.stderr().contains("hybrid submit"),
        "{}",
        mixed.stderr()
    );
}
