//! The model back ends behind `local()` and `cloud()`.
//!
//! Scripts never see a back end directly: a host function builds a [`ModelRequest`], hands it
//! to whichever [`Backend`] serves that role, and gets a [`ModelResponse`] or a [`ModelError`]
//! whose [`ErrorKind`] a script can branch on. One file per back end.

pub mod dry_run;
pub mod limiter;
pub mod mistral;
pub mod on_site;
pub mod openai;
pub mod tiny;

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use serde::Serialize;

/// One model call, as built from a script's `local(...)` / `cloud(...)` arguments.
#[derive(Debug, Clone, Default)]
pub struct ModelRequest {
    /// Optional system message.
    pub system: Option<String>,
    /// The user message text.
    pub prompt: String,
    /// The JSON Schema the answer must satisfy, with the name it was resolved from
    /// (`"inline"` for an inline map). `None` means free text.
    pub schema: Option<RequestSchema>,
    pub max_tokens: Option<u32>,
    pub temperature: Option<f64>,
    /// Let a model with a thinking mode (Gemma 4) reason before answering.
    pub thinking: bool,
    /// For the cloud: the body exactly as the egress guard passed it, to be sent as it is.
    pub wire: Option<Wire>,
    /// Groups requests that share a prompt prefix for the provider's prompt cache (one per
    /// pipeline and rules version); see `openai::chat_body`.
    pub cache_key: Option<String>,
    /// Page images sent with the prompt (`images: doc.images`).
    pub images: Vec<crate::images::PageImage>,
}

/// A request body the egress guard has passed, sent byte for byte, and what must happen
/// before each attempt leaves (the audit log's write-ahead line). When that fails, the
/// attempt does not leave.
#[derive(Clone)]
pub struct Wire {
    pub bytes: bytes::Bytes,
    /// The same body asking for the default tier instead of flex (`[cloud] flex_fallback`).
    pub fallback: Option<bytes::Bytes>,
    /// Called with the attempt number and the bytes about to leave.
    pub before_attempt: Arc<dyn Fn(u32, &[u8]) -> Result<(), String> + Send + Sync>,
}

impl std::fmt::Debug for Wire {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Wire({} bytes)", self.bytes.len())
    }
}

/// A schema attached to a request: the raw JSON (sent to the model) and its name.
#[derive(Debug, Clone)]
pub struct RequestSchema {
    pub name: String,
    pub json: Arc<serde_json::Value>,
    /// Why the schema cannot be sent in OpenAI's strict mode, if it cannot.
    pub not_strict: Option<String>,
    /// The schema as a Chat Completions body carries it, made with the schema.
    pub format: Arc<openai::ResponseFormat>,
}

impl RequestSchema {
    pub fn new(name: &str, json: Arc<serde_json::Value>, not_strict: Option<String>) -> Self {
        RequestSchema {
            format: Arc::new(openai::response_format(name, &json, not_strict.is_none())),
            name: name.to_owned(),
            json,
            not_strict,
        }
    }
}

/// What a back end answered.
#[derive(Debug, Clone, Default)]
pub struct ModelResponse {
    /// The raw text of the answer (JSON text when a schema was given).
    pub text: String,
    /// The model that answered, as the back end reports it.
    pub model: String,
    pub usage: Usage,
    /// The server's request id (`x-request-id`), when there is one.
    pub request_id: Option<String>,
    /// How many retries it took (0 when the first attempt answered).
    pub retries: u32,
    /// The model's reasoning, when it thought aloud (thinking mode).
    pub reasoning: Option<String>,
    /// The processing tier that served it (`default`, `flex`), as the API reports it.
    pub service_tier: Option<String>,
}

/// Token counts for one call.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct Usage {
    pub prompt_tokens: u64,
    pub completion_tokens: u64,
    /// Prompt tokens served from the provider's cache (billed at the cached rate).
    pub cached_tokens: u64,
    /// Hidden reasoning tokens (billed as output).
    pub reasoning_tokens: u64,
    /// Decode speed, for in-process back ends.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tokens_per_second: Option<f64>,
}

/// What kind of failure a model call ended in. Scripts see this as `e.kind`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorKind {
    Timeout,
    RateLimit,
    Refused,
    InvalidOutput,
    Truncated,
    NotConfigured,
    Auth,
    Quota,
    BadRequest,
    Server,
    Connection,
    Load,
    Blocked,
}

impl ErrorKind {
    /// The kind named `name` (as [`ErrorKind::as_str`] writes it).
    pub fn parse(name: &str) -> Option<ErrorKind> {
        serde_json::from_value(serde_json::Value::from(name)).ok()
    }

    pub fn as_str(self) -> &'static str {
        match self {
            ErrorKind::Timeout => "timeout",
            ErrorKind::RateLimit => "rate_limit",
            ErrorKind::Refused => "refused",
            ErrorKind::InvalidOutput => "invalid_output",
            ErrorKind::Truncated => "truncated",
            ErrorKind::NotConfigured => "not_configured",
            ErrorKind::Auth => "auth",
            ErrorKind::Quota => "quota",
            ErrorKind::BadRequest => "bad_request",
            ErrorKind::Server => "server",
            ErrorKind::Connection => "connection",
            ErrorKind::Load => "load",
            ErrorKind::Blocked => "blocked",
        }
    }
}

/// A failed model call: its kind, a message for people, and whatever partial text came back.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{message}")]
pub struct ModelError {
    pub kind: ErrorKind,
    pub message: String,
    /// Text the model produced before failing (a truncated or invalid answer).
    pub partial: Option<String>,
    pub request_id: Option<String>,
    pub retries: u32,
    /// Usage spent on the failed call, when the server reported it.
    pub usage: Option<Usage>,
}

impl ModelError {
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        ModelError {
            kind,
            message: message.into(),
            partial: None,
            request_id: None,
            retries: 0,
            usage: None,
        }
    }

    pub fn with_partial(mut self, partial: impl Into<String>) -> Self {
        self.partial = Some(partial.into());
        self
    }
}

pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// A model back end. Implementations are shared by every document in flight.
pub trait Backend: Send + Sync {
    /// Short name for call records: `"openai"`, `"mistralrs"`.
    fn name(&self) -> &str;
    /// The model id this back end is configured for.
    fn model(&self) -> &str;
    /// The request body as this back end would send it, for the egress guard and the audit
    /// log to see whole before anything leaves.
    fn wire_body(&self, req: &ModelRequest) -> openai::WireBody {
        openai::wire_body(self.model(), req)
    }
    /// True when answering needs nothing but the runtime the call is polled on (its own
    /// sockets and timers): the document's thread then drives the call itself
    /// (`host::wait`), without a hand-off to the shared runtime's workers.
    fn io_on_caller(&self) -> bool {
        false
    }
    /// For health checks: `ready` (nothing to load: a server, a stand-in), or for an
    /// in-process model `not loaded` (it loads at the first call), `loading`, `loaded`,
    /// `failed`.
    fn load_state(&self) -> &'static str {
        "ready"
    }
    /// Answer one request.
    fn complete<'a>(
        &'a self,
        req: &'a ModelRequest,
    ) -> BoxFuture<'a, Result<ModelResponse, ModelError>>;
}

/// The back end that serves `cloud()`.
pub fn cloud_backend(config: &crate::config::Config) -> Result<Arc<dyn Backend>, ModelError> {
    use crate::config::CloudMode;
    Ok(match config.cloud_mode {
        CloudMode::Live => Arc::new(openai::OpenAiBackend::new("openai", config.cloud.clone())?),
        CloudMode::DryRun => Arc::new(dry_run::DryRunBackend::new(
            config.cloud.model.clone(),
            config.cloud.service_tier.clone(),
        )),
    })
}

/// The back end that serves `local()`: Gemma 4 in-process, or the operator's own
/// OpenAI-compatible server. Nothing is loaded until the first call.
pub fn local_backend(config: &crate::config::Config) -> Result<Arc<dyn Backend>, ModelError> {
    use crate::config::LocalConfig;
    Ok(match &config.local {
        LocalConfig::Server(endpoint) => Arc::new(openai::OpenAiBackend::new(
            "openai-compatible",
            endpoint.clone(),
        )?),
        LocalConfig::InProcess(cfg) => {
            // The wiring-check model answers one sequence at a time, in f32: on a CPU,
            // mistral.rs batching its long byte-level prompts costs more than it saves (six
            // contracts: 33 s at 8 in flight, 9 s one at a time), and f32 spares the f16
            // conversions of its attention. Settings given explicitly still win.
            let tiny = cfg.model == "tiny";
            Arc::new(mistral::MistralBackend::new(mistral::LocalModelConfig {
                test_sampling: tiny,
                model: cfg.model.clone(),
                isq: cfg.isq.clone(),
                dtype: cfg.dtype.clone().or_else(|| tiny.then(|| "f32".to_owned())),
                device: cfg.device.clone(),
                cache_dir: cfg.cache_dir.clone(),
                max_num_seqs: cfg.max_num_seqs.or(tiny.then_some(1)),
            }))
        }
    })
}
