//! The OpenAI Chat Completions client: `cloud()`, and `local()` when it points at an
//! OpenAI-compatible server on the operator's own infrastructure (Ollama, vLLM,
//! `mistralrs serve`).
//!
//! Structured outputs go as `response_format: json_schema`; transient failures (429, 5xx,
//! connection errors, timeouts) are retried with exponential backoff and full jitter, honouring
//! `Retry-After`, within a bounded total time. The API key is never logged.

use std::cell::RefCell;
use std::collections::HashSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use rand::Rng;
use reqwest::header::{HeaderMap, RETRY_AFTER};
use reqwest::StatusCode;
use serde_json::{json, Value};

use super::{Backend, BoxFuture, ErrorKind, ModelError, ModelRequest, ModelResponse, Usage};
use crate::config::EndpointConfig;

/// Longest single back-off sleep, whatever the attempt number.
const MAX_BACKOFF: Duration = Duration::from_secs(30);

pub struct OpenAiBackend {
    /// `"openai"` for the cloud, `"openai-compatible"` for a local server.
    label: &'static str,
    cfg: EndpointConfig,
    /// Keys this back end's HTTP clients in [`CLIENTS`].
    id: u64,
    /// Every document's calls to this endpoint wait their turn here.
    limiter: super::limiter::Limiter,
    /// Schemas already reported as not strict-compatible (warn once each).
    warned: Mutex<HashSet<String>>,
    /// The Chat Completions URL, parsed once (reqwest parses a URL given as text on every
    /// request), or why the base URL does not make one.
    url: Result<reqwest::Url, String>,
    /// A local server's host and the addresses checked at start: the only ones connected to.
    pinned: Option<(String, Vec<std::net::SocketAddr>)>,
}

thread_local! {
    /// Each thread's HTTP clients, one per back end. A document's thread drives its own calls
    /// (`host::wait`), so the connections it keeps alive must be its own: a connection opened
    /// on one thread's runtime only moves while that thread waits on it.
    static CLIENTS: RefCell<Vec<(u64, reqwest::Client)>> = const { RefCell::new(Vec::new()) };
}

static NEXT_ID: AtomicU64 = AtomicU64::new(0);

impl OpenAiBackend {
    pub fn new(label: &'static str, cfg: EndpointConfig) -> Result<Self, ModelError> {
        let pinned = if cfg.on_site_only {
            super::on_site::check(&cfg.base_url)
                .map_err(|why| ModelError::new(ErrorKind::NotConfigured, why))?
        } else {
            None
        };
        // Built once here so a configuration the client refuses fails at start, not per call.
        client(&cfg, pinned.as_ref())?;
        let url = format!("{}/chat/completions", cfg.base_url.trim_end_matches('/'));
        let url = reqwest::Url::parse(&url).map_err(|e| format!("`{url}` is not a URL: {e}"));
        Ok(OpenAiBackend {
            label,
            limiter: super::limiter::Limiter::new(cfg.rpm, cfg.tpm),
            cfg,
            id: NEXT_ID.fetch_add(1, Ordering::Relaxed),
            warned: Mutex::new(HashSet::new()),
            url,
            pinned,
        })
    }

    /// This thread's client for this back end, made at its first call here.
    fn http(&self) -> Result<reqwest::Client, ModelError> {
        let found = CLIENTS.with(|clients| {
            clients
                .borrow()
                .iter()
                .find(|(id, _)| *id == self.id)
                .map(|(_, c)| c.clone())
        });
        if let Some(client) = found {
            return Ok(client);
        }
        let made = client(&self.cfg, self.pinned.as_ref())?;
        CLIENTS.with(|clients| clients.borrow_mut().push((self.id, made.clone())));
        Ok(made)
    }

    fn endpoint(&self) -> Result<reqwest::Url, ModelError> {
        self.url
            .clone()
            .map_err(|why| ModelError::new(ErrorKind::NotConfigured, why))
    }

    /// The body, with a warning (once per schema) when a schema cannot go in strict mode.
    fn body(&self, req: &ModelRequest) -> WireBody {
        if let Some((schema, why)) = req
            .schema
            .as_ref()
            .and_then(|s| s.not_strict.as_ref().map(|why| (s, why)))
        {
            let mut warned = self.warned.lock().unwrap_or_else(|e| e.into_inner());
            if warned.insert(schema.name.clone()) {
                tracing::warn!(
                    schema = %schema.name,
                    "schema cannot be sent in strict mode: {why}; sending it non-strict (the answer is still validated)"
                );
            }
        }
        let mut body = wire_body(&self.cfg.model, req);
        if let Some(tier) = &self.cfg.service_tier {
            body.head["service_tier"] = json!(tier);
        }
        body
    }

    /// Removes the key from anything a server echoes back.
    fn scrub(&self, text: String) -> String {
        match self.cfg.api_key.expose() {
            Some(key) if text.contains(key) => text.replace(key, "***"),
            _ => text,
        }
    }

    async fn attempt(&self, body: &bytes::Bytes) -> Attempt {
        let http = match self.http() {
            Ok(http) => http,
            Err(err) => return Attempt::failed(err, false, None),
        };
        let endpoint = match self.endpoint() {
            Ok(url) => url,
            Err(err) => return Attempt::failed(err, false, None),
        };
        let mut request = http
            .post(endpoint)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(body.clone());
        if let Some(key) = self.cfg.api_key.expose() {
            request = request.bearer_auth(key);
        }
        let response = match request.send().await {
            Ok(r) => r,
            Err(e) => {
                let (kind, what) = if e.is_timeout() {
                    (
                        ErrorKind::Timeout,
                        format!("timed out after {:?}", self.cfg.timeout),
                    )
                } else {
                    (ErrorKind::Connection, "could not be reached".to_owned())
                };
                return Attempt::failed(
                    ModelError::new(
                        kind,
                        format!(
                            "{} {what}: {}",
                            crate::audit::endpoint_host(&self.cfg.base_url),
                            self.scrub(error_chain(&e))
                        ),
                    ),
                    true,
                    None,
                );
            }
        };
        let status = response.status();
        // What the headers say, read before the body takes the response.
        let headers = response.headers();
        let wait = retry_after(headers);
        self.limiter.observe(status, headers, wait);
        let request_id = headers
            .get("x-request-id")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let server_retry = should_retry(headers);
        let location = status.is_redirection().then(|| {
            headers
                .get(reqwest::header::LOCATION)
                .and_then(|v| v.to_str().ok())
                .map_or_else(|| "(no Location given)".to_owned(), str::to_owned)
        });
        // JSON is UTF-8 (RFC 8259): no charset to look up from the content type.
        let text = match response.bytes().await {
            Ok(bytes) => String::from_utf8_lossy(&bytes).into_owned(),
            Err(e) => {
                let kind = if e.is_timeout() {
                    ErrorKind::Timeout
                } else {
                    ErrorKind::Connection
                };
                let mut err = ModelError::new(
                    kind,
                    format!("reading the response failed: {}", error_chain(&e)),
                );
                err.request_id = request_id;
                return Attempt::failed(err, true, None);
            }
        };
        tracing::debug!(
            status = status.as_u16(),
            request_id = request_id.as_deref().unwrap_or("-"),
            backend = self.label,
            "model response"
        );
        if status.is_success() {
            let mut out = self.parse_success(&text);
            match &mut out {
                Ok(resp) => resp.request_id = request_id,
                Err(err) => err.request_id = request_id,
            }
            return Attempt {
                outcome: out,
                retryable: false,
                retry_after: None,
            };
        }
        if let Some(location) = location {
            // What is sent goes to the configured endpoint and nowhere else: the client does
            // not follow redirects, so a checked, audited payload cannot be forwarded to a
            // host nobody approved.
            let location = self.scrub(location);
            let mut err = ModelError::new(
                ErrorKind::NotConfigured,
                format!(
                    "{} answered {status}, sending the request on to {location}\n\
                     hint: hybrid sends only to the configured URL and does not follow \
                     redirects; if that address is the endpoint you mean, configure it as \
                     the base URL",
                    self.label
                ),
            );
            err.request_id = request_id;
            return Attempt::failed(err, false, None);
        }
        let (code, message) = error_fields(&text);
        // Scrub before cutting: a cut through the key would leave its prefix behind.
        let message = truncate(&self.scrub(message.unwrap_or_else(|| text.clone())), 300);
        let (kind, retryable, hint) = classify(status, code.as_deref());
        // The API's own word on retrying wins, as in the official SDKs.
        let retryable = server_retry.unwrap_or(retryable);
        let mut err = ModelError::new(
            kind,
            format!("{} answered {status}: {message}{hint}", self.label),
        );
        err.request_id = request_id;
        Attempt::failed(err, retryable, wait)
    }

    fn parse_success(&self, text: &str) -> Result<ModelResponse, ModelError> {
        let body: Value = serde_json::from_str(text).map_err(|e| {
            ModelError::new(
                ErrorKind::InvalidOutput,
                format!("the server's response is not valid JSON: {e}"),
            )
            .with_partial(truncate(&self.scrub(text.to_owned()), 2000))
        })?;
        let usage = parse_usage(&body["usage"]);
        let model = body["model"].as_str().unwrap_or(&self.cfg.model).to_owned();
        let service_tier = body["service_tier"].as_str().map(str::to_owned);
        let choice = &body["choices"][0];
        if choice.is_null() {
            return Err(
                ModelError::new(ErrorKind::InvalidOutput, "the response has no choices")
                    .with_partial(truncate(&self.scrub(text.to_owned()), 2000)),
            );
        }
        let message = &choice["message"];
        let content = message["content"].as_str().unwrap_or_default().to_owned();
        let with_usage = |mut e: ModelError| {
            e.usage = Some(usage);
            e
        };
        if let Some(refusal) = message["refusal"].as_str().filter(|r| !r.is_empty()) {
            return Err(with_usage(ModelError::new(
                ErrorKind::Refused,
                format!("the model refused: {refusal}"),
            )));
        }
        match choice["finish_reason"].as_str() {
            Some("length") => {
                return Err(with_usage(
                    ModelError::new(
                        ErrorKind::Truncated,
                        format!("the answer was cut off at the token limit after {} tokens\nhint: raise `max_tokens`, or ask for less", usage.completion_tokens),
                    )
                    .with_partial(content),
                ))
            }
            Some("content_filter") => {
                return Err(with_usage(ModelError::new(ErrorKind::Refused, "the answer was withheld by the provider's content filter")))
            }
            _ => {}
        }
        if message["content"].is_null() {
            return Err(with_usage(ModelError::new(
                ErrorKind::InvalidOutput,
                "the answer has no text content",
            )));
        }
        Ok(ModelResponse {
            text: content,
            model,
            usage,
            request_id: None,
            retries: 0,
            service_tier,
            // OpenAI-compatible servers that think aloud (vLLM, mistralrs serve) say so here.
            reasoning: message["reasoning_content"]
                .as_str()
                .filter(|r| !r.is_empty())
                .map(str::to_owned),
        })
    }
}

/// A Chat Completions request body: system message, user message, limits, and the schema as
/// structured output.
pub fn chat_body(model: &str, req: &ModelRequest) -> Value {
    wire_body(model, req).to_value()
}

/// [`chat_body`] as it is built for sending: the schema's `response_format` is the one made
/// with the schema, shared.
pub fn wire_body(model: &str, req: &ModelRequest) -> WireBody {
    let mut messages = Vec::new();
    if let Some(system) = &req.system {
        messages.push(json!({"role": "system", "content": system}));
    }
    if req.images.is_empty() {
        messages.push(json!({"role": "user", "content": req.prompt}));
    } else {
        // The prompt, then each page as an image part (a base64 `data:` URL).
        let mut content = vec![json!({"type": "text", "text": req.prompt})];
        for image in &req.images {
            content.push(json!({"type": "image_url", "image_url": {"url": image.data_url()}}));
        }
        messages.push(json!({"role": "user", "content": content}));
    }
    let mut body = json!({"model": model, "messages": messages});
    if let Some(n) = req.max_tokens {
        body["max_completion_tokens"] = json!(n);
    }
    if let Some(t) = req.temperature {
        body["temperature"] = json!(t);
    }
    // Prompt caching: the stable part (system prompt, schema) comes first and the document's
    // part last, and calls of one pipeline and rules version share a key, so the provider
    // routes them to the same cache (Chat Completions `prompt_cache_key`).
    if let Some(key) = &req.cache_key {
        body["prompt_cache_key"] = json!(key);
    }
    WireBody {
        head: body,
        format: req.schema.as_ref().map(|s| s.format.clone()),
    }
}

/// A schema as a request carries it: `{"type": "json_schema", "json_schema": {...}}`, and
/// its JSON text.
#[derive(Debug)]
pub struct ResponseFormat {
    pub value: Value,
    pub bytes: Vec<u8>,
}

/// The `response_format` for a schema: made once per schema ([`super::RequestSchema::new`],
/// [`crate::schemas::Schema::compile`]), since copying a schema into every request body,
/// walking it in the guard and serialising it again was a tenth of a call's cost.
pub fn response_format(name: &str, json: &Value, strict: bool) -> ResponseFormat {
    // `$schema` is not in Structured Outputs' supported subset: the dialect stays ours.
    let mut sent = json.clone();
    if let Some(map) = sent.as_object_mut() {
        map.remove("$schema");
    }
    let value = json!({
        "type": "json_schema",
        "json_schema": {
            "name": wire_name(name),
            "strict": strict,
            "schema": sent,
        }
    });
    let bytes = serde_json::to_vec(&value).unwrap_or_default();
    ResponseFormat { value, bytes }
}

/// A request body in two parts: everything but the schema, and the schema's
/// `response_format`, kept as made so it is not copied into every body.
#[derive(Debug, Clone)]
pub struct WireBody {
    /// The body without `response_format` (a JSON object).
    pub head: Value,
    pub format: Option<Arc<ResponseFormat>>,
}

impl WireBody {
    /// The body's JSON text: the head, with `"response_format"` last.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut bytes = Vec::with_capacity(256);
        write_json(&self.head, &mut bytes);
        if let Some(format) = &self.format {
            if bytes.last() == Some(&b'}') {
                bytes.pop();
                if bytes.len() > 1 {
                    bytes.push(b',');
                }
                bytes.extend_from_slice(b"\"response_format\":");
                bytes.extend_from_slice(&format.bytes);
                bytes.push(b'}');
            }
        }
        bytes
    }

    /// The whole body as one value.
    pub fn to_value(&self) -> Value {
        let mut body = self.head.clone();
        if let (Some(format), Some(map)) = (&self.format, body.as_object_mut()) {
            map.insert("response_format".into(), format.value.clone());
        }
        body
    }
}

/// `value` as compact JSON, byte for byte what `serde_json::to_vec` writes, with strings
/// copied eight bytes at a time between the characters that need escaping: a long document's
/// prompt spent a nanosecond a byte in serde_json's per-byte escape loop.
fn write_json(value: &Value, out: &mut Vec<u8>) {
    match value {
        Value::String(s) => write_json_str(s, out),
        Value::Array(items) => {
            out.push(b'[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_json(item, out);
            }
            out.push(b']');
        }
        Value::Object(map) => {
            out.push(b'{');
            for (i, (key, item)) in map.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_json_str(key, out);
                out.push(b':');
                write_json(item, out);
            }
            out.push(b'}');
        }
        // Null, booleans and numbers: serde_json's own formatting.
        other => {
            let _ = serde_json::to_writer(&mut *out, other);
        }
    }
}

fn write_json_str(s: &str, out: &mut Vec<u8>) {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGH: u64 = 0x8080_8080_8080_8080;
    let bytes = s.as_bytes();
    out.reserve(bytes.len() + 2);
    out.push(b'"');
    // `clean` is where the bytes not yet copied start.
    let (mut clean, mut at) = (0, 0);
    while at < bytes.len() {
        if let Some(block) = bytes.get(at..at + 8) {
            let x = u64::from_le_bytes(block.try_into().expect("eight bytes"));
            // Any byte below 0x20, or a quote, or a backslash? (A flag past the first such
            // byte may be false; the block is then looked at byte by byte.)
            let zero = |y: u64| y.wrapping_sub(ONES) & !y & HIGH;
            if (x.wrapping_sub(ONES * 0x20) & !x & HIGH)
                | zero(x ^ (ONES * u64::from(b'"')))
                | zero(x ^ (ONES * u64::from(b'\\')))
                == 0
            {
                at += 8;
                continue;
            }
        }
        let escape: &[u8] = match bytes[at] {
            b'"' => b"\\\"",
            b'\\' => b"\\\\",
            b'\n' => b"\\n",
            b'\r' => b"\\r",
            b'\t' => b"\\t",
            0x08 => b"\\b",
            0x0c => b"\\f",
            b if b < 0x20 => {
                out.extend_from_slice(&bytes[clean..at]);
                const HEX: &[u8; 16] = b"0123456789abcdef";
                out.extend_from_slice(b"\\u00");
                out.push(HEX[usize::from(b >> 4)]);
                out.push(HEX[usize::from(b & 0xf)]);
                at += 1;
                clean = at;
                continue;
            }
            _ => {
                at += 1;
                continue;
            }
        };
        out.extend_from_slice(&bytes[clean..at]);
        out.extend_from_slice(escape);
        at += 1;
        clean = at;
    }
    out.extend_from_slice(&bytes[clean..]);
    out.push(b'"');
}

struct Attempt {
    outcome: Result<ModelResponse, ModelError>,
    retryable: bool,
    retry_after: Option<Duration>,
}

impl Attempt {
    fn failed(err: ModelError, retryable: bool, retry_after: Option<Duration>) -> Attempt {
        Attempt {
            outcome: Err(err),
            retryable,
            retry_after,
        }
    }
}

/// A client for `cfg`'s endpoint; with `pinned`, that host is reached at those addresses only.
fn client(
    cfg: &EndpointConfig,
    pinned: Option<&(String, Vec<std::net::SocketAddr>)>,
) -> Result<reqwest::Client, ModelError> {
    let builder = match tls() {
        Ok(tls) => reqwest::Client::builder().tls_backend_preconfigured(tls.clone()),
        Err(err) => {
            tracing::debug!("shared TLS settings unavailable ({err}); the client makes its own");
            reqwest::Client::builder()
        }
    };
    let builder = match pinned {
        Some((host, addrs)) => builder.resolve_to_addrs(host, addrs),
        None => builder,
    };
    // A local server is reached directly: through an `HTTP_PROXY` the whole documents would
    // pass a machine the on-site check never saw.
    let builder = if cfg.on_site_only {
        builder.no_proxy()
    } else {
        builder
    };
    builder
        .timeout(cfg.timeout)
        .connect_timeout(cfg.timeout.min(Duration::from_secs(10)))
        .user_agent(concat!("hybrid/", env!("CARGO_PKG_VERSION")))
        // A redirect is answered as an error (see `attempt`), never followed.
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .map_err(|e| {
            ModelError::new(
                ErrorKind::NotConfigured,
                format!("cannot build the HTTP client: {e}"),
            )
        })
}

/// The TLS settings every client shares, made once per process: the system's trust store
/// (the platform verifier, as reqwest uses by default) takes milliseconds to read, and each
/// document thread has clients of its own.
fn tls() -> Result<&'static rustls::ClientConfig, &'static str> {
    static TLS: OnceLock<Result<rustls::ClientConfig, String>> = OnceLock::new();
    TLS.get_or_init(|| {
        let provider = rustls::crypto::CryptoProvider::get_default()
            .cloned()
            .unwrap_or_else(|| Arc::new(rustls::crypto::aws_lc_rs::default_provider()));
        let verifier =
            rustls_platform_verifier::Verifier::new(provider.clone()).map_err(|e| e.to_string())?;
        let mut config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| e.to_string())?
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(verifier))
            .with_no_client_auth();
        config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        Ok(config)
    })
    .as_ref()
    .map_err(String::as_str)
}

impl Backend for OpenAiBackend {
    fn name(&self) -> &str {
        self.label
    }

    fn io_on_caller(&self) -> bool {
        true
    }

    fn model(&self) -> &str {
        &self.cfg.model
    }

    fn wire_body(&self, req: &ModelRequest) -> WireBody {
        self.body(req)
    }

    fn complete<'a>(
        &'a self,
        req: &'a ModelRequest,
    ) -> BoxFuture<'a, Result<ModelResponse, ModelError>> {
        Box::pin(async move {
            if !self.cfg.api_key.is_set() && self.cfg.is_official() {
                return Err(ModelError::new(
                    ErrorKind::NotConfigured,
                    format!(
                        "{} is not configured: `{}` is not set\nhint: export {}=sk-..., or point OPENAI_BASE_URL (or --cloud-url) at an OpenAI-compatible server",
                        self.label, self.cfg.api_key_env, self.cfg.api_key_env
                    ),
                ));
            }
            // The cloud sends the body the guard passed, byte for byte; a local server gets
            // one built here.
            let body: bytes::Bytes = match &req.wire {
                Some(wire) => wire.bytes.clone(),
                None => self.body(req).to_bytes().into(),
            };
            let started = Instant::now();
            let mut retries = 0;
            // What the endpoint counts against its tokens-per-minute: the prompt (about four
            // bytes a token) and the completion it may write.
            let tokens = (body.len() / 4) as u64 + u64::from(req.max_tokens.unwrap_or(0));
            let tokens = u32::try_from(tokens).unwrap_or(u32::MAX);
            // What goes out: the checked body, or its default-tier twin once flex has said it
            // cannot serve the call and `flex_fallback` is on.
            let mut sending = body.clone();
            loop {
                // Wait for the endpoint's turn before the audit records the attempt, so the
                // attempt line's time is when the request left.
                self.limiter.wait(tokens).await;
                if let Some(wire) = &req.wire {
                    if let Err(why) = (wire.before_attempt)(retries + 1, &sending) {
                        let mut err = ModelError::new(
                            ErrorKind::Blocked,
                            format!("nothing was sent: the audit log must record a request before it leaves, and {why}\nhint: make the audit log writable (--audit FILE or [audit] path)"),
                        );
                        err.retries = retries;
                        return Err(err);
                    }
                }
                let attempt = self.attempt(&sending).await;
                let err = match attempt.outcome {
                    Ok(mut resp) => {
                        resp.retries = retries;
                        tracing::info!(
                            backend = self.label,
                            model = %resp.model,
                            request_id = resp.request_id.as_deref().unwrap_or("-"),
                            retries,
                            prompt_tokens = resp.usage.prompt_tokens,
                            completion_tokens = resp.usage.completion_tokens,
                            "model call answered"
                        );
                        return Ok(resp);
                    }
                    Err(err) => err,
                };
                let flex_unavailable = matches!(err.kind, ErrorKind::RateLimit | ErrorKind::Server);
                if let Some(default) = req.wire.as_ref().and_then(|w| w.fallback.as_ref()) {
                    if self.cfg.flex_fallback
                        && flex_unavailable
                        && sending.as_ptr() != default.as_ptr()
                    {
                        tracing::info!(
                            backend = self.label,
                            kind = err.kind.as_str(),
                            "flex could not serve the call: falling back to the default tier"
                        );
                        sending = default.clone();
                    }
                }
                let delay = backoff(self.cfg.backoff, retries, attempt.retry_after);
                let out_of_time = started.elapsed() + delay > self.cfg.max_retry_time;
                if !attempt.retryable || retries >= self.cfg.max_retries || out_of_time {
                    let mut err = err;
                    err.retries = retries;
                    if attempt.retryable && retries > 0 {
                        err.message = format!(
                            "{} (gave up after {retries} retries in {:.1?})",
                            err.message,
                            started.elapsed()
                        );
                    }
                    tracing::warn!(
                        backend = self.label,
                        kind = err.kind.as_str(),
                        request_id = err.request_id.as_deref().unwrap_or("-"),
                        retries,
                        "model call failed"
                    );
                    return Err(err);
                }
                tracing::info!(
                    backend = self.label,
                    kind = err.kind.as_str(),
                    request_id = err.request_id.as_deref().unwrap_or("-"),
                    retry = retries + 1,
                    delay_ms = delay.as_millis() as u64,
                    "retrying model call"
                );
                tokio::time::sleep(delay).await;
                retries += 1;
            }
        })
    }
}

/// Exponential backoff with full jitter; a server's `Retry-After` is a floor.
fn backoff(base: Duration, retries: u32, retry_after: Option<Duration>) -> Duration {
    let cap = base
        .saturating_mul(1u32 << retries.min(16))
        .min(MAX_BACKOFF);
    let jittered = Duration::from_secs_f64(rand::rng().random_range(0.0..=1.0) * cap.as_secs_f64());
    match retry_after {
        Some(after) => after.max(jittered.min(base)),
        None => jittered.max(base / 4),
    }
}

/// `Retry-After` (seconds or an HTTP date is not worth parsing here: seconds only) and
/// OpenAI's `retry-after-ms`.
/// `retry-after-ms`, else `Retry-After` as seconds or as an HTTP date (RFC 9110 §10.2.3).
fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    if let Some(ms) = headers
        .get("retry-after-ms")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<f64>().ok())
    {
        return Duration::try_from_secs_f64(ms / 1000.0).ok();
    }
    let value = headers.get(RETRY_AFTER)?.to_str().ok()?.trim();
    if let Ok(seconds) = value.parse::<f64>() {
        return Duration::try_from_secs_f64(seconds).ok();
    }
    // An HTTP date (`Wed, 21 Oct 2026 07:28:00 GMT`): the wait until then, none if past.
    let at = chrono::DateTime::parse_from_rfc2822(value).ok()?;
    let wait = at.signed_duration_since(chrono::Utc::now());
    Some(wait.to_std().unwrap_or(Duration::ZERO))
}

/// `x-should-retry: true|false`: the server saying whether a retry can succeed, which the
/// official SDKs obey over the status code.
fn should_retry(headers: &HeaderMap) -> Option<bool> {
    match headers.get("x-should-retry")?.to_str().ok()?.trim() {
        "true" => Some(true),
        "false" => Some(false),
        _ => None,
    }
}

fn classify(status: StatusCode, code: Option<&str>) -> (ErrorKind, bool, &'static str) {
    match status.as_u16() {
        429 if code == Some("insufficient_quota") => (
            ErrorKind::Quota,
            false,
            "\nhint: the account is out of credit; check billing, retrying will not help",
        ),
        429 => (ErrorKind::RateLimit, true, ""),
        401 | 403 => (
            ErrorKind::Auth,
            false,
            "\nhint: check the API key and that it may use this model",
        ),
        408 => (ErrorKind::Timeout, true, ""),
        // A conflicting request in flight (the SDKs retry it).
        409 => (ErrorKind::Server, true, ""),
        404 => (
            ErrorKind::BadRequest,
            false,
            "\nhint: check the base URL and the model name",
        ),
        s if s >= 500 => (ErrorKind::Server, true, ""),
        _ => (ErrorKind::BadRequest, false, ""),
    }
}

/// OpenAI errors look like `{"error": {"message": ..., "type": ..., "code": ...}}`.
fn error_fields(text: &str) -> (Option<String>, Option<String>) {
    let Ok(v) = serde_json::from_str::<Value>(text) else {
        return (None, None);
    };
    let e = &v["error"];
    let code = e["code"].as_str().or(e["type"].as_str()).map(str::to_owned);
    (code, e["message"].as_str().map(str::to_owned))
}

fn parse_usage(u: &Value) -> Usage {
    let n = |v: &Value| v.as_u64().unwrap_or(0);
    Usage {
        prompt_tokens: n(&u["prompt_tokens"]),
        completion_tokens: n(&u["completion_tokens"]),
        cached_tokens: n(&u["prompt_tokens_details"]["cached_tokens"]),
        reasoning_tokens: n(&u["completion_tokens_details"]["reasoning_tokens"]),
        tokens_per_second: None,
    }
}

/// OpenAI wants `^[a-zA-Z0-9_-]{1,64}$` as the schema name.
fn wire_name(name: &str) -> String {
    let clean: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' || c == '-' {
                c
            } else {
                '_'
            }
        })
        .take(64)
        .collect();
    if clean.is_empty() {
        "schema".into()
    } else {
        clean
    }
}

fn truncate(text: &str, max: usize) -> String {
    if text.len() <= max {
        return text.to_owned();
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &text[..end])
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        out.push_str(": ");
        out.push_str(&s.to_string());
        source = s.source();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wire_json_is_what_serde_json_writes() {
        let mut text = String::new();
        for c in (0u32..0x80).chain([0xe9, 0xf1, 0x2028, 0x1f600]) {
            text.push(char::from_u32(c).expect("a char"));
            text.push_str("abcdefghi");
        }
        let values = [
            serde_json::json!({"model": "m", "messages": [{"role": "user", "content": text}],
                "max_tokens": 12, "temperature": 0.3, "n": null, "stream": false,
                "nested": {"a\"b": [1.5e300, -2, "x\\y"]}}),
            serde_json::json!(""),
            serde_json::json!("\u{0}\u{1f}\"\\"),
            serde_json::json!([]),
            serde_json::json!({}),
        ];
        for value in values {
            let mut ours = Vec::new();
            write_json(&value, &mut ours);
            assert_eq!(
                String::from_utf8(ours).unwrap(),
                serde_json::to_string(&value).unwrap()
            );
        }
    }

    #[test]
    fn conflicts_are_retried_and_the_server_can_say_otherwise() {
        assert!(classify(StatusCode::CONFLICT, None).1);
        let mut headers = HeaderMap::new();
        assert_eq!(should_retry(&headers), None);
        headers.insert("x-should-retry", "false".parse().unwrap());
        assert_eq!(should_retry(&headers), Some(false));
        headers.insert("x-should-retry", "true".parse().unwrap());
        assert_eq!(should_retry(&headers), Some(true));
    }

    #[test]
    fn retry_after_reads_seconds_or_an_http_date() {
        let mut headers = HeaderMap::new();
        headers.insert(RETRY_AFTER, "2.5".parse().unwrap());
        assert_eq!(retry_after(&headers), Some(Duration::from_millis(2500)));
        let soon = chrono::Utc::now() + chrono::Duration::seconds(30);
        headers.insert(RETRY_AFTER, soon.to_rfc2822().parse().unwrap());
        let wait = retry_after(&headers).unwrap();
        assert!(
            wait > Duration::from_secs(25) && wait <= Duration::from_secs(30),
            "{wait:?}"
        );
        headers.insert(
            RETRY_AFTER,
            "Wed, 21 Oct 2015 07:28:00 GMT".parse().unwrap(),
        );
        assert_eq!(
            retry_after(&headers),
            Some(Duration::ZERO),
            "a date in the past"
        );
    }

    #[test]
    fn the_root_dialect_keyword_is_not_sent() {
        let req = ModelRequest {
            system: None,
            prompt: "p".into(),
            schema: Some(super::super::RequestSchema::new(
                "x",
                std::sync::Arc::new(
                    serde_json::json!({"$schema": "https://json-schema.org/draft/2020-12/schema", "type": "object", "properties": {}, "required": [], "additionalProperties": false}),
                ),
                None,
            )),
            ..Default::default()
        };
        let body = chat_body("gpt-5.4", &req);
        let sent = &body["response_format"]["json_schema"]["schema"];
        assert!(sent.get("$schema").is_none(), "{sent}");
        assert_eq!(sent["type"], "object");
    }

    #[test]
    fn quota_is_not_retried_but_rate_limits_are() {
        assert_eq!(
            classify(StatusCode::TOO_MANY_REQUESTS, Some("insufficient_quota")).0,
            ErrorKind::Quota
        );
        assert!(!classify(StatusCode::TOO_MANY_REQUESTS, Some("insufficient_quota")).1);
        assert!(classify(StatusCode::TOO_MANY_REQUESTS, None).1);
        assert!(classify(StatusCode::BAD_GATEWAY, None).1);
        assert!(!classify(StatusCode::UNAUTHORIZED, None).1);
        assert!(!classify(StatusCode::BAD_REQUEST, None).1);
    }

    #[test]
    fn retry_after_is_a_floor_and_backoff_is_capped() {
        let d = backoff(Duration::from_millis(100), 3, Some(Duration::from_secs(2)));
        assert!(d >= Duration::from_secs(2));
        for r in 0..40 {
            assert!(backoff(Duration::from_millis(500), r, None) <= MAX_BACKOFF);
        }
    }

    #[test]
    fn usage_reads_cached_and_reasoning_tokens() {
        let u = parse_usage(&json!({"prompt_tokens": 10, "completion_tokens": 5,
            "prompt_tokens_details": {"cached_tokens": 4},
            "completion_tokens_details": {"reasoning_tokens": 2}}));
        assert_eq!(
            (
                u.prompt_tokens,
                u.completion_tokens,
                u.cached_tokens,
                u.reasoning_tokens
            ),
            (10, 5, 4, 2)
        );
    }

    #[test]
    fn schema_names_are_made_wire_safe() {
        assert_eq!(wire_name("contract risk.v2"), "contract_risk_v2");
    }
}
