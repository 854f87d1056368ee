//! The review page and the dashboard in a real headless Chromium, driven over WebDriver
//! (Debian's `chromium` and `chromium-driver`; `.ci/run` installs them): load the queue,
//! decide with the keyboard, edit through the generated form, see the decisions in
//! `reviews.jsonl`; a hostile document renders inert; the token.
//!
//! `HYBRID_SCREENSHOTS=DIR` saves screenshots of both pages there (the README's come from
//! `HYBRID_SCREENSHOTS=docs cargo test browser`).

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::{json, Value};

use crate::examples::shipped;
use crate::openai_stub::{Reply, StubServer};
use crate::support::{
    free_port, installed, read_records, wait_for, wait_listening, Project, Running,
};

/// One HTTP/1.1 request with a JSON body; the JSON answer.
fn http(port: u16, method: &str, path: &str, body: Option<&Value>) -> Value {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(60)))
        .unwrap();
    let body = body.map(|b| b.to_string()).unwrap_or_default();
    write!(
        stream,
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    // Read the head, then exactly the body it announces (chromedriver keeps connections
    // open whatever the request says).
    let mut response = Vec::new();
    let mut buf = [0u8; 16 * 1024];
    loop {
        let n = stream.read(&mut buf).unwrap();
        if n == 0 {
            break;
        }
        response.extend_from_slice(&buf[..n]);
        let text = String::from_utf8_lossy(&response);
        if let Some((head, body)) = text.split_once("\r\n\r\n") {
            let length = head.lines().find_map(|l| {
                let (k, v) = l.split_once(':')?;
                k.eq_ignore_ascii_case("content-length")
                    .then(|| v.trim().parse::<usize>().ok())?
            });
            match length {
                Some(len) if body.len() >= len => break,
                None if body.ends_with("0\r\n\r\n") => break,
                _ => {}
            }
        }
    }
    let response = String::from_utf8_lossy(&response);
    let (head, body) = response.split_once("\r\n\r\n").unwrap_or((&response, ""));
    let body = if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        dechunk(body)
    } else {
        body.to_owned()
    };
    serde_json::from_str(&body).unwrap_or(Value::Null)
}

fn dechunk(mut body: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = body.split_once("\r\n") {
        let n = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
        if n == 0 || rest.len() < n {
            break;
        }
        out.push_str(&rest[..n]);
        body = rest[n..].trim_start_matches("\r\n");
    }
    out
}

/// A headless Chromium session through chromedriver.
struct Browser {
    driver: Child,
    port: u16,
    session: String,
}

impl Browser {
    fn start() -> Browser {
        let chromedriver = installed(
            &["chromedriver", "/usr/bin/chromedriver"],
            "apt-get install chromium chromium-driver",
        );
        let port = free_port();
        let driver = Command::new(chromedriver)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        wait_listening(port, "chromedriver to listen");
        let binary = ["/usr/bin/chromium", "/usr/bin/chromium-browser"]
            .into_iter()
            .find(|p| std::path::Path::new(p).exists())
            .unwrap_or("/usr/bin/chromium");
        let created = http(
            port,
            "POST",
            "/session",
            Some(&json!({"capabilities": {"alwaysMatch": {
                "browserName": "chrome",
                "goog:chromeOptions": {
                    "binary": binary,
                    "args": ["--headless=new", "--no-sandbox", "--disable-gpu",
                             "--disable-dev-shm-usage", "--window-size=1360,900"]
                }
            }}})),
        );
        let session = created["value"]["sessionId"]
            .as_str()
            .unwrap_or_else(|| panic!("no WebDriver session: {created}"))
            .to_owned();
        Browser {
            driver,
            port,
            session,
        }
    }

    fn call(&self, method: &str, path: &str, body: Option<Value>) -> Value {
        let answer = http(
            self.port,
            method,
            &format!("/session/{}{path}", self.session),
            body.as_ref(),
        );
        answer["value"].clone()
    }

    fn open(&self, url: &str) {
        self.call("POST", "/url", Some(json!({ "url": url })));
    }

    /// Runs JavaScript in the page and returns its value.
    fn js(&self, script: &str) -> Value {
        self.call(
            "POST",
            "/execute/sync",
            Some(json!({"script": script, "args": []})),
        )
    }

    /// Presses keys as a person does (key down and up, each in turn); `\u{E009}` is Ctrl.
    fn keys(&self, keys: &[&str]) {
        let mut actions = Vec::new();
        for k in keys {
            actions.push(json!({"type": "keyDown", "value": k}));
        }
        for k in keys.iter().rev() {
            actions.push(json!({"type": "keyUp", "value": k}));
        }
        self.call(
            "POST",
            "/actions",
            Some(json!({"actions": [{"type": "key", "id": "keyboard", "actions": actions}]})),
        );
        self.call("DELETE", "/actions", None);
    }

    fn wait_js(&self, what: &str, script: &str) -> Value {
        wait_for(20, what, || {
            let v = self.js(script);
            (!v.is_null() && v != false).then_some(v)
        })
    }

    fn screenshot(&self, name: &str) {
        let Ok(dir) = std::env::var("HYBRID_SCREENSHOTS") else {
            return;
        };
        use base64::Engine;
        let png = self.call("GET", "/screenshot", None);
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(png.as_str().unwrap())
            .unwrap();
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(dir);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join(name), bytes).unwrap();
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = http(
            self.port,
            "DELETE",
            &format!("/session/{}", self.session),
            None,
        );
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}

const LOCAL: &str =
    r#"{"intent":"billing","urgency":"medium","sentiment":0.1,"products":["factura"]}"#;
const EVIL: &str = "<script>window.__pwned = 1</script><img src=x onerror=\"window.__pwned = 2\"> mi pedido no llegó";

/// The intent pipeline over every message (sample rate 1), with a hostile one among them:
/// the local model always says billing, the cloud says delivery unless the message is about
/// a bill, so most messages diverge and go to review.
fn reviewed_run() -> Project {
    let p = shipped();
    p.set_constant(
        "intent_parallel.rhai",
        "const SAMPLE_RATE = 0.18;",
        "const SAMPLE_RATE = 1.0;",
    );
    let mut messages = std::fs::read_to_string(p.path("samples/messages.jsonl")).unwrap();
    messages.push_str(&format!(
        "{}\n",
        json!({"id": "msg-evil", "text": EVIL, "channel": "email"})
    ));
    p.write("samples/messages.jsonl", messages);
    let local = StubServer::start(|_, _| Reply::content(LOCAL));
    let cloud = StubServer::start(|_, req| {
        let text = req.prompt().to_lowercase();
        if text.contains("factura") || text.contains("cobr") {
            Reply::content(LOCAL).model("gpt-5.4")
        } else {
            Reply::content(
                r#"{"intent":"delivery","urgency":"high","sentiment":-0.5,"products":[]}"#,
            )
            .model("gpt-5.4")
        }
    });
    let (lu, cu) = (local.url(), cloud.url());
    p.hybrid(&[
        "run",
        "scripts/intent_parallel.rhai",
        "samples/messages.jsonl",
        "--local-url",
        &lu,
        "--cloud-url",
        &cu,
        "--out",
        "out/intents.jsonl",
        "--overwrite",
        "--cache",
        "off",
    ])
    .output()
    .expect_code(0);
    p
}

fn serve(p: &Project, host: &str, extra: &[&str]) -> (Running, u16) {
    let port = free_port();
    let listen = format!("{host}:{port}");
    let mut args = vec!["review", "out/intents.jsonl", "--listen", &listen];
    args.extend_from_slice(extra);
    let host = p.spawn(&args);
    wait_listening(port, "the review server");
    (host, port)
}

fn reviews(p: &Project) -> Vec<Value> {
    read_records(&p.path("out/reviews.jsonl"))
}

#[test]
fn a_reviewer_decides_with_the_keyboard_and_edits_through_the_schema_form() {
    let p = reviewed_run();
    let (host, port) = serve(&p, "127.0.0.1", &[]);
    let browser = Browser::start();
    browser.open(&format!("http://127.0.0.1:{port}/review"));
    let waiting = browser.wait_js(
        "the queue to load",
        "return document.querySelectorAll('#items li').length || null",
    );
    assert!(waiting.as_u64().unwrap() >= 5, "{waiting}");

    // The hostile document: shown as text, nothing in it runs or renders.
    browser.js("document.querySelector('#items li[data-key^=\"msg-evil@\"]').click()");
    let shown = browser.wait_js(
        "the hostile document's text",
        "const t = document.getElementById('doc').textContent; return t.includes('mi pedido') ? t : null",
    );
    assert_eq!(shown, EVIL);
    assert_eq!(
        browser.js("return [window.__pwned === undefined, document.querySelectorAll('#view script, #view img').length]"),
        json!([true, 0])
    );
    // Fields that differ are highlighted.
    let differs = browser.js(
        "return [...document.querySelectorAll('#local tr.differs th')].map(th => th.textContent)",
    );
    assert!(
        differs.as_array().unwrap().contains(&json!("intent")),
        "{differs}"
    );
    browser.screenshot("console-review.png");

    // `l` keeps the local answer.
    browser.keys(&["l"]);
    wait_for(10, "the keep-local decision", || {
        (reviews(&p).len() == 1).then_some(())
    });
    let first = &reviews(&p)[0];
    assert_eq!(first["id"], "msg-evil");
    assert_eq!(first["decision"], "keep_local");
    assert_eq!(first["value"]["intent"], "billing");

    // The next item: `e` opens the form made from the `intent` schema; an answer outside
    // the schema is refused and nothing is saved.
    browser.wait_js(
        "the next item",
        "const t = document.getElementById('title').textContent; return t && !t.startsWith('msg-evil') ? t : null",
    );
    let next_id = browser
        .js("return document.getElementById('title').textContent.split(' ')[0]")
        .as_str()
        .unwrap()
        .to_owned();
    browser.keys(&["e"]);
    browser.wait_js(
        "the edit form",
        "return !document.getElementById('edit-form').classList.contains('hidden') && document.querySelector('#fields select[name=intent]') !== null",
    );
    browser.js(
        "const s = document.querySelector('#fields input[name=sentiment]'); s.value = '5'; s.focus();",
    );
    browser.keys(&["\u{E009}", "\u{E007}"]);
    let refused = browser.wait_js(
        "the schema error",
        "const s = document.getElementById('status'); return s.className === 'error' ? s.textContent : null",
    );
    assert!(
        refused
            .as_str()
            .unwrap()
            .contains("does not match the schema"),
        "{refused}"
    );
    assert_eq!(reviews(&p).len(), 1);
    browser.js(
        "document.querySelector('#fields select[name=intent]').value = JSON.stringify('returns');\
         const s = document.querySelector('#fields input[name=sentiment]'); s.value = '-0.25'; s.focus();",
    );
    browser.keys(&["\u{E009}", "\u{E007}"]);
    wait_for(10, "the edit decision", || {
        (reviews(&p).len() == 2).then_some(())
    });
    let edit = &reviews(&p)[1];
    assert_eq!(edit["id"], next_id.as_str());
    assert_eq!(edit["decision"], "edit");
    assert_eq!(edit["value"]["intent"], "returns");
    assert_eq!(edit["value"]["sentiment"], -0.25);

    // The dashboard draws the run's numbers.
    browser.open(&format!("http://127.0.0.1:{port}/dashboard"));
    let docs = browser.wait_js(
        "the dashboard's numbers",
        "const t = document.getElementById('t-docs').textContent; return t ? t : null",
    );
    assert!(docs.as_str().unwrap().starts_with("25 documents"), "{docs}");
    assert_eq!(
        browser.js("return document.querySelectorAll('#chart rect.bar').length"),
        60
    );
    browser.screenshot("console-dashboard.png");
    drop(browser);
    assert_eq!(host.stop("TERM"), 0);

    // `hybrid report` counts the decisions; the fine-tuning export takes the reviewed values.
    let report = p
        .hybrid(&["report", "out/intents.jsonl"])
        .output()
        .expect_code(0);
    assert!(
        report.stdout().contains("reviews: 2 of "),
        "{}",
        report.stdout()
    );
    let export = p
        .hybrid(&[
            "review",
            "out/intents.jsonl",
            "--export",
            "out/finetune_intent.jsonl",
        ])
        .output()
        .expect_code(0);
    assert!(
        export.stderr().contains("2 with reviewed targets"),
        "{}",
        export.stderr()
    );
    let examples: Vec<Value> = export
        .stdout()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let target = |user: &str| -> Value {
        let example = examples
            .iter()
            .find(|e| e["messages"][1]["content"] == user)
            .unwrap();
        serde_json::from_str(example["messages"][2]["content"].as_str().unwrap()).unwrap()
    };
    assert_eq!(target(EVIL)["intent"], "billing", "kept local");
}

#[test]
fn pages_beyond_loopback_need_the_token_and_a_browser_carries_it_as_a_cookie() {
    let p = reviewed_run();
    p.write("token", "t0ken-for-reviewers\n");
    // Bound on every interface (reached here over loopback only): the token is required.
    let (host, port) = serve(&p, "0.0.0.0", &["--token-file", "token"]);
    let browser = Browser::start();
    browser.open(&format!("http://127.0.0.1:{port}/review"));
    let body = browser.js("return document.body.textContent");
    assert!(
        body.as_str().unwrap().contains("a token is needed"),
        "{body}"
    );
    browser.open(&format!(
        "http://127.0.0.1:{port}/review?token=t0ken-for-reviewers"
    ));
    // The page's own requests carry the cookie the address set.
    browser.wait_js(
        "the queue to load with the cookie",
        "return document.querySelectorAll('#items li').length || null",
    );
    drop(browser);
    assert_eq!(host.stop("TERM"), 0);
}
