//! A real HTTP server on loopback that speaks the OpenAI Chat Completions wire format, with
//! faults on demand. Every request is recorded so tests can assert what left the host.
//! Shared by the integration tests and the benchmarks.

#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{json, Value};

/// One request as the server saw it.
#[derive(Debug, Clone)]
pub struct Seen {
    pub path: String,
    pub headers: Vec<(String, String)>,
    pub body: Value,
    pub raw: String,
}

impl Seen {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
    /// The schema asked for in `response_format`, if any.
    pub fn schema(&self) -> Option<&Value> {
        self.body["response_format"]["json_schema"].get("schema")
    }
    /// The concatenated message contents.
    pub fn prompt(&self) -> String {
        self.body["messages"]
            .as_array()
            .map(|m| {
                m.iter()
                    .filter_map(|m| m["content"].as_str())
                    .collect::<Vec<_>>()
                    .join("\n")
            })
            .unwrap_or_default()
    }
}

/// What to answer.
#[derive(Debug, Clone)]
pub struct Reply {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
    pub delay: Duration,
}

impl Reply {
    /// A successful completion whose message content is `content`.
    pub fn content(content: &str) -> Reply {
        Reply::completion(json!({"role": "assistant", "content": content}), "stop")
    }

    /// A successful answer with `content`, the given `usage`, and `extra` top-level fields
    /// (`service_tier`, ...), as servers that report those differently send it.
    pub fn answer_with(content: &str, usage: Value, extra: Value) -> Reply {
        let mut body = json!({
            "id": "chatcmpl-stub", "object": "chat.completion", "model": "gpt-5.4",
            "choices": [{"index": 0, "message": {"role": "assistant", "content": content}, "finish_reason": "stop"}],
            "usage": usage,
        });
        if let (Some(body), Some(extra)) = (body.as_object_mut(), extra.as_object()) {
            body.extend(extra.clone());
        }
        Reply::status(200, &body.to_string())
    }

    pub fn completion(message: Value, finish_reason: &str) -> Reply {
        let body = json!({
            "id": "chatcmpl-stub",
            "object": "chat.completion",
            "model": "stub-model",
            "choices": [{"index": 0, "message": message, "finish_reason": finish_reason}],
            "usage": {
                "prompt_tokens": 100, "completion_tokens": 20, "total_tokens": 120,
                "prompt_tokens_details": {"cached_tokens": 40},
                "completion_tokens_details": {"reasoning_tokens": 5}
            }
        });
        Reply::status(200, &body.to_string()).header("x-request-id", "req_stub_1")
    }

    pub fn status(status: u16, body: &str) -> Reply {
        Reply {
            status,
            headers: vec![("content-type".into(), "application/json".into())],
            body: body.into(),
            delay: Duration::ZERO,
        }
    }

    pub fn error(status: u16, code: &str, message: &str) -> Reply {
        Reply::status(
            status,
            &json!({"error": {"message": message, "type": code, "code": code}}).to_string(),
        )
    }

    /// Answer as `model` (real servers name the model that answered).
    pub fn model(mut self, model: &str) -> Reply {
        self.body = self.body.replacen(
            "\"model\":\"stub-model\"",
            &format!("\"model\":{}", json!(model)),
            1,
        );
        self
    }

    pub fn header(mut self, k: &str, v: &str) -> Reply {
        self.headers.push((k.into(), v.into()));
        self
    }

    pub fn delayed(mut self, d: Duration) -> Reply {
        self.delay = d;
        self
    }
}

type Handler = dyn Fn(usize, &Seen) -> Reply + Send + Sync;

pub struct StubServer {
    pub addr: SocketAddr,
    seen: Arc<Mutex<Vec<Seen>>>,
    stop: Arc<AtomicBool>,
}

impl StubServer {
    /// A server that answers every request with a schema-valid instance of the requested
    /// schema (or "stub answer" for free text), after `latency`.
    pub fn conforming(latency: Duration) -> StubServer {
        StubServer::start(move |_, seen| {
            let content = match seen.schema() {
                Some(schema) => instance_of(schema).to_string(),
                None => "stub answer".to_owned(),
            };
            Reply::content(&content)
                .model(seen.body["model"].as_str().unwrap_or("stub-model"))
                .delayed(latency)
        })
    }

    /// A server whose answers come from `handler(n, request)`, `n` counting from 0.
    pub fn start(handler: impl Fn(usize, &Seen) -> Reply + Send + Sync + 'static) -> StubServer {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind loopback");
        let addr = listener.local_addr().unwrap();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let handler: Arc<Handler> = Arc::new(handler);
        let count = Arc::new(AtomicUsize::new(0));
        {
            let seen = seen.clone();
            let stop = stop.clone();
            std::thread::spawn(move || {
                for stream in listener.incoming() {
                    if stop.load(Ordering::Relaxed) {
                        break;
                    }
                    let Ok(stream) = stream else { continue };
                    let (seen, handler, count) = (seen.clone(), handler.clone(), count.clone());
                    std::thread::spawn(move || {
                        let _ = serve(stream, &seen, &*handler, &count);
                    });
                }
            });
        }
        StubServer { addr, seen, stop }
    }

    /// The base URL to hand to `--cloud-url` / `--local-url`.
    pub fn url(&self) -> String {
        format!("http://{}/v1", self.addr)
    }

    pub fn requests(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }
}

impl Drop for StubServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        // Wake the accept loop so it sees the flag.
        let _ = TcpStream::connect(self.addr);
    }
}

fn serve(
    mut stream: TcpStream,
    seen: &Mutex<Vec<Seen>>,
    handler: &Handler,
    count: &AtomicUsize,
) -> std::io::Result<()> {
    // Connections stay open between requests, as the real API's do; an idle one is closed
    // after longer than any client keeps one in its pool, so no client races the close.
    stream.set_read_timeout(Some(Duration::from_secs(120)))?;
    stream.set_nodelay(true)?;
    let mut reader = BufReader::new(stream.try_clone()?);
    loop {
        let mut request_line = String::new();
        if reader.read_line(&mut request_line)? == 0 {
            return Ok(());
        }
        answer(
            &request_line,
            &mut reader,
            &mut stream,
            seen,
            handler,
            count,
        )?;
    }
}

/// Reads the rest of one request (after its request line) and writes its reply.
fn answer(
    request_line: &str,
    reader: &mut BufReader<TcpStream>,
    stream: &mut TcpStream,
    seen: &Mutex<Vec<Seen>>,
    handler: &Handler,
    count: &AtomicUsize,
) -> std::io::Result<()> {
    let path = request_line
        .split_whitespace()
        .nth(1)
        .unwrap_or("/")
        .to_owned();
    let mut headers = Vec::new();
    loop {
        let mut line = String::new();
        reader.read_line(&mut line)?;
        let line = line.trim_end();
        if line.is_empty() {
            break;
        }
        if let Some((k, v)) = line.split_once(':') {
            headers.push((k.trim().to_owned(), v.trim().to_owned()));
        }
    }
    let len: usize = headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case("content-length"))
        .and_then(|(_, v)| v.parse().ok())
        .unwrap_or(0);
    let mut body = vec![0; len];
    reader.read_exact(&mut body)?;
    let raw = String::from_utf8_lossy(&body).into_owned();
    let request = Seen {
        path,
        headers,
        body: serde_json::from_str(&raw).unwrap_or(Value::Null),
        raw,
    };
    let n = count.fetch_add(1, Ordering::SeqCst);
    seen.lock().unwrap().push(request.clone());
    let reply = handler(n, &request);
    if !reply.delay.is_zero() {
        std::thread::sleep(reply.delay);
    }
    let mut head = format!(
        "HTTP/1.1 {} Stub\r\ncontent-length: {}\r\n",
        reply.status,
        reply.body.len()
    );
    for (k, v) in &reply.headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str("\r\n");
    // One write: head and body in two would meet Nagle's algorithm and the client's delayed
    // ACK on a kept-alive connection, 40 ms per reply.
    head.push_str(&reply.body);
    stream.write_all(head.as_bytes())?;
    stream.flush()
}

/// A small value that satisfies `schema` (the subset of JSON Schema the shipped schemas use).
pub fn instance_of(schema: &Value) -> Value {
    if let Some(values) = schema["enum"].as_array() {
        return values.first().cloned().unwrap_or(Value::Null);
    }
    if let Some(c) = schema.get("const") {
        return c.clone();
    }
    for key in ["anyOf", "oneOf"] {
        if let Some(first) = schema[key].as_array().and_then(|a| a.first()) {
            return instance_of(first);
        }
    }
    let ty = match &schema["type"] {
        Value::String(s) => s.clone(),
        Value::Array(types) => types
            .iter()
            .filter_map(Value::as_str)
            .find(|t| *t != "null")
            .unwrap_or("null")
            .to_owned(),
        _ if schema.get("properties").is_some() => "object".into(),
        _ => "null".into(),
    };
    match ty.as_str() {
        "object" => {
            let mut out = serde_json::Map::new();
            if let Some(props) = schema["properties"].as_object() {
                for (k, v) in props {
                    out.insert(k.clone(), instance_of(v));
                }
            }
            Value::Object(out)
        }
        "array" => {
            let min = schema["minItems"].as_u64().unwrap_or(0) as usize;
            Value::Array((0..min).map(|_| instance_of(&schema["items"])).collect())
        }
        "string" => {
            let min = schema["minLength"].as_u64().unwrap_or(1) as usize;
            Value::String("s".repeat(min.max(1)))
        }
        "number" => json!(schema["minimum"]
            .as_f64()
            .unwrap_or(0.5)
            .max(0.5)
            .min(schema["maximum"].as_f64().unwrap_or(1.0))),
        "integer" => json!(schema["minimum"].as_i64().unwrap_or(1)),
        "boolean" => json!(false),
        _ => Value::Null,
    }
}
