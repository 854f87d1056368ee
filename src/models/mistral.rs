//! Gemma 4 in-process through mistral.rs: the default back end behind `local()`.
//!
//! The model loads once, lazily, on the first call (concurrent first callers wait for the one
//! load), and every document in flight then shares the one engine, which batches concurrent
//! requests itself. JSON Schemas become llguidance constraints; checking the answer against the
//! schema is left to the host, as for every back end.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use mistralrs::error::Error as SdkError;
use mistralrs::{
    ChatCompletionResponse, Constraint, Device, IsqType, Model, ModelBuilder, ModelDType,
    RequestBuilder, SamplingParams, TextMessageRole, TokenSource,
};
use serde_json::Value;
use tokio::sync::{watch, OnceCell};

use super::{tiny, Backend, BoxFuture, ErrorKind, ModelError, ModelRequest, ModelResponse, Usage};

/// Top-k used with `test_sampling`: random weights need real sampling to leave loops.
const TEST_TOP_K: usize = 16;
/// The only Gemma 4 architecture mistral.rs 0.8.1 loads.
const GEMMA4_ARCH: &str = "Gemma4ForConditionalGeneration";

/// How to find and run the local model.
#[derive(Debug, Clone)]
pub struct LocalModelConfig {
    /// A Hugging Face id (`google/gemma-4-E4B-it`), a local directory, or `tiny` (a randomly
    /// initialised Gemma 4 written under `cache_dir`, for checking wiring).
    pub model: String,
    /// In-situ quantisation: a bit width (`2`..`8`) or a type (`q4k`, `Q8_0`, `hqq4`, ...).
    pub isq: Option<String>,
    /// `auto` (default), `f32`, `bf16` or `f16`.
    pub dtype: Option<String>,
    /// `auto` (default: CUDA 0 when built with CUDA, else CPU), `cpu`, `cuda`, `cuda:N`.
    pub device: Option<String>,
    /// Where the `tiny` model is written.
    pub cache_dir: PathBuf,
    /// Most sequences the engine runs at once (mistral.rs default: 32).
    pub max_num_seqs: Option<usize>,
    /// For random-weight models: keep JSON whitespace out of constrained answers and sample
    /// (temperature, top-k) instead of decoding greedily, so constrained output terminates.
    pub test_sampling: bool,
}

type LoadResult = Result<Arc<Model>, ModelError>;

pub struct MistralBackend {
    cfg: LocalModelConfig,
    /// Set once the load has finished, successfully or not. A failed load is kept: retrying a
    /// multi-gigabyte load per document would only repeat the failure slowly.
    loaded: OnceCell<LoadResult>,
    /// The load in progress. It runs on its own blocking thread and reports here, so a caller
    /// that gives up (a timeout drops its future) does not cancel it or start a second one.
    pending: Mutex<Option<watch::Receiver<Option<LoadResult>>>>,
}

impl MistralBackend {
    /// Nothing is read or loaded until the first [`Backend::complete`] call.
    pub fn new(cfg: LocalModelConfig) -> Self {
        MistralBackend {
            cfg,
            loaded: OnceCell::new(),
            pending: Mutex::new(None),
        }
    }

    /// Loads the model now instead of at the first call (benchmarks, warm start).
    pub async fn load(&self) -> Result<(), ModelError> {
        self.model_handle().await.map(|_| ())
    }

    /// True once the model has loaded successfully.
    pub fn is_loaded(&self) -> bool {
        matches!(self.loaded.get(), Some(Ok(_)))
    }

    async fn model_handle(&self) -> LoadResult {
        self.loaded
            .get_or_init(|| self.wait_for_load())
            .await
            .clone()
    }

    /// Start the load if nobody has, then wait for its result.
    async fn wait_for_load(&self) -> LoadResult {
        let mut rx = {
            let mut pending = self.pending.lock().unwrap_or_else(|e| e.into_inner());
            pending
                .get_or_insert_with(|| {
                    let (tx, rx) = watch::channel(None);
                    let cfg = self.cfg.clone();
                    let handle = tokio::runtime::Handle::current();
                    // Loading is long and blocking (file reads, ISQ); mistral.rs's builder is
                    // async on the outside only. A blocking thread keeps the runtime's workers
                    // free, and a panic inside mistral.rs becomes an error, not a crash.
                    tokio::task::spawn_blocking(move || {
                        let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                            load(&cfg, &handle)
                        }))
                        .unwrap_or_else(|panic| {
                            Err(ModelError::new(
                                ErrorKind::Load,
                                format!(
                                    "mistral.rs panicked while loading `{}`: {}",
                                    cfg.model,
                                    panic_message(&*panic)
                                ),
                            ))
                        });
                        let _ = tx.send(Some(result));
                    });
                    rx
                })
                .clone()
        };
        let outcome = match rx.wait_for(Option::is_some).await {
            Ok(result) => (*result).clone().expect("wait_for returns a set value"),
            Err(_) => Err(ModelError::new(
                ErrorKind::Load,
                format!("loading `{}` stopped without a result", self.cfg.model),
            )),
        };
        outcome
    }

    fn request(&self, req: &ModelRequest) -> RequestBuilder {
        let mut builder = RequestBuilder::new();
        if let Some(system) = &req.system {
            builder = builder.add_message(TextMessageRole::System, system);
        }
        builder = if req.images.is_empty() {
            builder.add_message(TextMessageRole::User, &req.prompt)
        } else {
            // Page images go to the vision tower with the prompt (decoded from the PNG the
            // host keeps; a page that does not decode was refused when it was read).
            let images = req
                .images
                .iter()
                .filter_map(|i| {
                    image::load_from_memory_with_format(&i.png, image::ImageFormat::Png).ok()
                })
                .collect();
            builder.add_image_message(TextMessageRole::User, &req.prompt, images)
        };
        builder = builder
            // mistral.rs renders templates with `enable_thinking = true` unless told otherwise;
            // Gemma 4 then thinks (into `reasoning_content`) before answering: only on request.
            .enable_thinking(req.thinking)
            .set_sampling(self.sampling(req));
        if let Some(schema) = &req.schema {
            let mut json = (*schema.json).clone();
            if self.cfg.test_sampling {
                rigid_whitespace(&mut json);
                bound_numbers(&mut json);
            }
            builder = builder.set_constraint(Constraint::JsonSchema(json));
        }
        builder
    }

    fn sampling(&self, req: &ModelRequest) -> SamplingParams {
        let temperature = req.temperature.filter(|t| t.is_finite() && *t > 0.0);
        let mut params = if self.cfg.test_sampling {
            SamplingParams {
                temperature: Some(temperature.unwrap_or(1.0)),
                top_k: Some(TEST_TOP_K),
                ..SamplingParams::neutral()
            }
        } else {
            match temperature {
                // No temperature, or zero: greedy, so pipelines are reproducible.
                None => SamplingParams::deterministic(),
                Some(t) => SamplingParams {
                    temperature: Some(t),
                    ..SamplingParams::neutral()
                },
            }
        };
        params.max_len = req.max_tokens.map(|n| n as usize);
        params
    }
}

impl Backend for MistralBackend {
    fn load_state(&self) -> &'static str {
        match self.loaded.get() {
            Some(Ok(_)) => "loaded",
            Some(Err(_)) => "failed",
            None if self
                .pending
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .is_some() =>
            {
                "loading"
            }
            None => "not loaded",
        }
    }

    fn name(&self) -> &str {
        "mistralrs"
    }

    fn model(&self) -> &str {
        &self.cfg.model
    }

    fn complete<'a>(
        &'a self,
        req: &'a ModelRequest,
    ) -> BoxFuture<'a, Result<ModelResponse, ModelError>> {
        Box::pin(async move {
            let loaded = self.model_handle().await?;
            let response = loaded
                .send_chat_request(self.request(req))
                .await
                .map_err(engine_error)?;
            answer(response, &self.cfg.model)
        })
    }
}

/// Turn a finished chat completion into a response, or a truncation error.
fn answer(response: ChatCompletionResponse, name: &str) -> Result<ModelResponse, ModelError> {
    let usage = usage(&response);
    // Records name the model as the operator configured it (`tiny`, an id, a directory),
    // not mistral.rs's internal name for it.
    let model = name.to_owned();
    let Some(choice) = response.choices.into_iter().next() else {
        let mut e = ModelError::new(ErrorKind::InvalidOutput, "mistral.rs returned no choices");
        e.usage = Some(usage);
        return Err(e);
    };
    let text = choice.message.content.unwrap_or_default();
    let reasoning = choice
        .message
        .reasoning_content
        .filter(|r| !r.trim().is_empty());
    let fail = |kind: ErrorKind, message: String, text: String| {
        let mut e = ModelError::new(kind, message).with_partial(text);
        e.usage = Some(usage);
        Err(e)
    };
    match choice.finish_reason.as_str() {
        "length" => fail(
            ErrorKind::Truncated,
            format!(
                "the answer was cut off at the token limit after {} tokens\nhint: raise `max_tokens`, or ask for less",
                usage.completion_tokens
            ),
            text,
        ),
        "canceled" => fail(ErrorKind::Server, "mistral.rs cancelled the generation".into(), text),
        _ => Ok(ModelResponse {
            text,
            model,
            usage,
            request_id: None,
            retries: 0,
            reasoning,
            service_tier: None,
        }),
    }
}

fn usage(response: &ChatCompletionResponse) -> Usage {
    let u = &response.usage;
    let rate = if u.avg_compl_tok_per_sec.is_finite() && u.avg_compl_tok_per_sec > 0.0 {
        Some(f64::from(u.avg_compl_tok_per_sec))
    } else if u.total_completion_time_sec > 0.0 && u.completion_tokens > 0 {
        Some(u.completion_tokens as f64 / f64::from(u.total_completion_time_sec))
    } else {
        None
    };
    Usage {
        prompt_tokens: u.prompt_tokens as u64,
        completion_tokens: u.completion_tokens as u64,
        cached_tokens: 0,
        reasoning_tokens: 0,
        tokens_per_second: rate,
    }
}

/// Map an engine failure to the kind a script sees.
fn engine_error(e: SdkError) -> ModelError {
    match e {
        SdkError::RequestValidation(msg) => {
            let hint = if msg.contains("grammar") {
                "\nhint: llguidance could not compile the JSON Schema; simplify it (or check it with `validate`)"
            } else if msg.contains("sequence length") {
                "\nhint: the prompt is longer than the model's context; shorten or split the document"
            } else {
                ""
            };
            ModelError::new(
                ErrorKind::BadRequest,
                format!("mistral.rs rejected the request: {msg}{hint}"),
            )
        }
        SdkError::ModelError {
            message,
            partial_response,
        } => {
            let mut err = ModelError::new(
                ErrorKind::Server,
                format!("mistral.rs failed while generating: {message}"),
            );
            if let Some(partial) = partial_response {
                err.usage = Some(usage(&partial));
                if let Some(text) = partial
                    .choices
                    .into_iter()
                    .next()
                    .and_then(|c| c.message.content)
                {
                    err = err.with_partial(text);
                }
            }
            err
        }
        SdkError::Channel(msg) => ModelError::new(
            ErrorKind::Server,
            format!("the mistral.rs engine stopped answering: {msg}"),
        ),
        other => ModelError::new(ErrorKind::Server, format!("mistral.rs: {other}")),
    }
}

/// Keep llguidance from allowing free whitespace between JSON tokens. Random weights otherwise
/// tend to emit whitespace until the token limit. Merges into any `x-guidance` already present.
fn rigid_whitespace(schema: &mut Value) {
    if let Value::Object(map) = schema {
        let guidance = map
            .entry("x-guidance")
            .or_insert_with(|| Value::Object(Default::default()));
        if let Value::Object(options) = guidance {
            options.insert("whitespace_flexible".into(), Value::Bool(false));
        }
    }
}

/// Give unbounded numbers bounds, for random weights only: sampling them otherwise produces
/// exponents like `1e999` that are valid JSON grammar but no f64. Real models never need it.
fn bound_numbers(schema: &mut Value) {
    match schema {
        Value::Object(map) => {
            let is_number = matches!(map.get("type"), Some(Value::String(t)) if t == "number" || t == "integer");
            if is_number {
                map.entry("minimum").or_insert(Value::from(-1e9));
                map.entry("maximum").or_insert(Value::from(1e9));
            }
            for (_, child) in map.iter_mut() {
                bound_numbers(child);
            }
        }
        Value::Array(items) => items.iter_mut().for_each(bound_numbers),
        _ => {}
    }
}

// ---------------------------------------------------------------------------------------------
// Loading
// ---------------------------------------------------------------------------------------------

/// Where the weights come from.
enum Source {
    /// A directory on disk (also the generated `tiny` model).
    Dir(PathBuf),
    /// A Hugging Face repository id, fetched (or taken from the HF cache) by mistral.rs.
    Hub(String),
}

/// Runs on a blocking thread; `handle` drives mistral.rs's async builder.
fn load(cfg: &LocalModelConfig, handle: &tokio::runtime::Handle) -> LoadResult {
    let started = Instant::now();
    let source = resolve_source(cfg)?;
    let device = parse_device(cfg.device.as_deref())?;
    let dtype = parse_dtype(cfg.dtype.as_deref())?;
    let isq = parse_isq(cfg.isq.as_deref(), &device)?;

    let model_id = match &source {
        Source::Dir(dir) => dir.to_string_lossy().into_owned(),
        Source::Hub(id) => id.clone(),
    };
    // `ModelBuilder` detects Gemma 4 from config.json and, unlike `MultimodalModelBuilder`
    // in 0.8.1, honours `with_device`.
    let mut builder = ModelBuilder::new(&model_id)
        .with_device(device.clone())
        .with_dtype(dtype);
    if let Source::Dir(_) = source {
        // Local files need no token; reading one needs a home directory, which may not exist.
        builder = builder.with_token_source(TokenSource::None);
    }
    if let Some(isq) = isq {
        builder = builder.with_isq(isq);
    }
    if let Some(n) = cfg.max_num_seqs {
        builder = builder.with_max_num_seqs(n.max(1));
    }
    tracing::info!(model = %cfg.model, source = %model_id, device = ?device, dtype = %dtype, isq = ?isq, "loading the local model");

    let model = handle
        .block_on(builder.build())
        .map_err(|e| build_error(cfg, &source, &e))?;

    let (rss, peak) = process_memory_mib();
    tracing::info!(
        model = %cfg.model,
        load_ms = started.elapsed().as_millis() as u64,
        rss_mib = rss,
        peak_rss_mib = peak,
        "local model loaded"
    );
    Ok(Arc::new(model))
}

fn resolve_source(cfg: &LocalModelConfig) -> Result<Source, ModelError> {
    let model = cfg.model.trim();
    if model.eq_ignore_ascii_case("tiny") || model.eq_ignore_ascii_case("tiny-mid") {
        let spec = if model.eq_ignore_ascii_case("tiny") {
            tiny::TinySpec::tiny()
        } else {
            tiny::TinySpec::mid()
        };
        let dir = tiny::ensure_model(&cfg.cache_dir, &spec).map_err(|e| {
            ModelError::new(
                ErrorKind::Load,
                format!(
                    "cannot write the `{model}` test model under `{}`: {e}\nhint: set `cache_dir` under [local] in hybrid.toml to a writable directory",
                    cfg.cache_dir.display()
                ),
            )
        })?;
        tracing::warn!(
            model,
            dir = %dir.display(),
            "the `{model}` local model has random weights: it checks the wiring, its answers mean nothing"
        );
        return Ok(Source::Dir(dir));
    }
    if model.is_empty() {
        return Err(ModelError::new(
            ErrorKind::Load,
            "no local model is configured\nhint: pass --local-model with a Hugging Face id (google/gemma-4-E4B-it) or a directory",
        ));
    }

    let path = expand_home(model);
    if path.exists() {
        check_local_dir(&path)?;
        let dir = std::fs::canonicalize(&path).unwrap_or(path);
        return Ok(Source::Dir(dir));
    }
    if looks_like_path(model) {
        return Err(ModelError::new(
            ErrorKind::Load,
            format!(
                "the local model directory `{model}` does not exist\nhint: point --local-model (or `model` under [local]) at a directory holding a Hugging Face Gemma 4 checkpoint, or give a Hugging Face id such as google/gemma-4-E4B-it"
            ),
        ));
    }
    let mut parts = model.split('/');
    match (parts.next(), parts.next(), parts.next()) {
        (Some(owner), Some(name), None) if !owner.is_empty() && !name.is_empty() => {
            Ok(Source::Hub(model.to_owned()))
        }
        _ => Err(ModelError::new(
            ErrorKind::Load,
            format!(
                "`{model}` is neither a local directory nor a Hugging Face id (owner/name)\nhint: use e.g. google/gemma-4-E4B-it, a path such as ./models/gemma-4-E4B-it, or `tiny`"
            ),
        )),
    }
}

fn expand_home(model: &str) -> PathBuf {
    if let Some(rest) = model.strip_prefix("~/") {
        if let Some(home) = std::env::var_os("HOME") {
            return PathBuf::from(home).join(rest);
        }
    }
    PathBuf::from(model)
}

/// Hugging Face ids are `owner/name`; anything else with path syntax is meant as a path.
fn looks_like_path(model: &str) -> bool {
    model.starts_with(['/', '.', '~'])
        || model.contains('\\')
        || model.ends_with('/')
        || model.matches('/').count() > 1
        || Path::new(model).is_absolute()
}

/// Check a local checkpoint before handing it to mistral.rs, whose own errors for these cases
/// are panics or bare file names.
fn check_local_dir(dir: &Path) -> Result<(), ModelError> {
    let shown = dir.display();
    let fail = |message: String| Err(ModelError::new(ErrorKind::Load, message));
    let download = "hint: download the whole repository, e.g. `huggingface-cli download google/gemma-4-E4B-it --local-dir DIR`";
    if !dir.is_dir() {
        return fail(format!(
            "the local model `{shown}` is not a directory\nhint: point --local-model at the directory that holds config.json, not at a file"
        ));
    }
    let config_path = dir.join("config.json");
    if !config_path.is_file() {
        return fail(format!(
            "`{shown}` has no config.json, so it is not a Hugging Face model directory\n{download}"
        ));
    }
    let config: Value = match std::fs::read_to_string(&config_path)
        .map_err(|e| e.to_string())
        .and_then(|text| serde_json::from_str(&text).map_err(|e| e.to_string()))
    {
        Ok(v) => v,
        Err(e) => return fail(format!("cannot read `{}`: {e}", config_path.display())),
    };
    let archs: Vec<&str> = config["architectures"]
        .as_array()
        .map(|a| a.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    if !archs.contains(&GEMMA4_ARCH) {
        let found = if archs.is_empty() {
            "no `architectures` entry".to_string()
        } else {
            format!("architectures {}", archs.join(", "))
        };
        return fail(format!(
            "`{shown}` is not a Gemma 4 checkpoint: its config.json has {found}\nhint: this back end runs Gemma 4 ({GEMMA4_ARCH}), e.g. google/gemma-4-E4B-it; use the `openai` back end for other models served elsewhere"
        ));
    }
    if !dir.join("tokenizer.json").is_file() {
        return fail(format!(
            "`{shown}` has no tokenizer.json\nhint: copy tokenizer.json from the original repository (mistral.rs needs the fast tokenizer file)\n{download}"
        ));
    }
    if !has_chat_template(dir) {
        return fail(format!(
            "`{shown}` has no chat template (no chat_template.jinja, no chat_template.json, no `chat_template` in tokenizer_config.json)\nhint: copy chat_template.jinja or tokenizer_config.json from the original repository\n{download}"
        ));
    }
    let has_weights = std::fs::read_dir(dir)
        .map(|entries| {
            entries.filter_map(Result::ok).any(|e| {
                let name = e.file_name();
                let name = name.to_string_lossy();
                name.ends_with(".safetensors") && name.starts_with("model")
            })
        })
        .unwrap_or(false);
    if !has_weights {
        return fail(format!(
            "`{shown}` has no weights (model.safetensors or model-00001-of-0000N.safetensors)\n{download}"
        ));
    }
    Ok(())
}

fn has_chat_template(dir: &Path) -> bool {
    if dir.join("chat_template.jinja").is_file() || dir.join("chat_template.json").is_file() {
        return true;
    }
    std::fs::read_to_string(dir.join("tokenizer_config.json"))
        .ok()
        .and_then(|text| serde_json::from_str::<Value>(&text).ok())
        .is_some_and(|v| match &v["chat_template"] {
            Value::String(s) => !s.trim().is_empty(),
            Value::Array(a) => !a.is_empty(),
            _ => false,
        })
}

fn parse_device(spec: Option<&str>) -> Result<Device, ModelError> {
    let spec = spec
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .unwrap_or("auto");
    let lower = spec.to_ascii_lowercase();
    let unusable = |e: &dyn std::fmt::Display| {
        ModelError::new(
            ErrorKind::Load,
            format!("cannot use device `{spec}`: {e}\nhint: GPU support needs a build with `--features cuda`; use --device cpu otherwise"),
        )
    };
    let ordinal = |rest: &str| {
        rest.parse::<usize>().map_err(|_| {
            ModelError::new(
                ErrorKind::Load,
                format!("device `{spec}`: `{rest}` is not a device number\nhint: use cpu, cuda, cuda:N or auto"),
            )
        })
    };
    match lower.as_str() {
        "auto" => mistralrs::best_device(false).map_err(|e| unusable(&e)),
        "cpu" => Ok(Device::Cpu),
        "cuda" | "gpu" => Device::new_cuda(0).map_err(|e| unusable(&e)),
        "metal" => Device::new_metal(0).map_err(|e| unusable(&e)),
        s => {
            if let Some(rest) = s.strip_prefix("cuda:") {
                Device::new_cuda(ordinal(rest)?).map_err(|e| unusable(&e))
            } else if let Some(rest) = s.strip_prefix("metal:") {
                Device::new_metal(ordinal(rest)?).map_err(|e| unusable(&e))
            } else {
                Err(ModelError::new(
                    ErrorKind::Load,
                    format!("unknown device `{spec}`\nhint: use cpu, cuda, cuda:N or auto"),
                ))
            }
        }
    }
}

fn parse_dtype(spec: Option<&str>) -> Result<ModelDType, ModelError> {
    let spec = spec
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .unwrap_or("auto");
    spec.parse::<ModelDType>().map_err(|_| {
        ModelError::new(
            ErrorKind::Load,
            format!("unknown dtype `{spec}`\nhint: use auto, f32, bf16 or f16"),
        )
    })
}

fn parse_isq(spec: Option<&str>, device: &Device) -> Result<Option<IsqType>, ModelError> {
    let Some(spec) = spec.map(str::trim).filter(|s| !s.is_empty()) else {
        return Ok(None);
    };
    if ["none", "off", "no"].contains(&spec.to_ascii_lowercase().as_str()) {
        return Ok(None);
    }
    mistralrs::parse_isq_value(spec, Some(device))
        .map(Some)
        .map_err(|e| {
            ModelError::new(
                ErrorKind::Load,
                format!("bad ISQ setting `{spec}`: {e}\nhint: use a bit width (4, 8) or a type such as q4k or q8_0"),
            )
        })
}

/// Explain a failed `ModelBuilder::build`.
fn build_error(cfg: &LocalModelConfig, source: &Source, e: &anyhow::Error) -> ModelError {
    let detail = format!("{e:#}");
    let message = match source {
        Source::Hub(id) => {
            let lower = detail.to_lowercase();
            if lower.contains("http 401")
                || lower.contains("http 403")
                || lower.contains("mistralrs login")
            {
                format!(
                    "cannot download `{id}` from Hugging Face: {detail}\nhint: Gemma is a gated model: accept its licence on huggingface.co, then set HF_TOKEN (or run `huggingface-cli login`)\nhint: or download it elsewhere and point --local-model at the directory"
                )
            } else if lower.contains("hugging face")
                || lower.contains("huggingface")
                || lower.contains("request error")
                || lower.contains("dns")
                || lower.contains("connect")
                || lower.contains("relative url")
                || lower.contains("status code")
            {
                format!(
                    "could not fetch `{id}` from Hugging Face: {detail}\nhint: download it elsewhere (e.g. `huggingface-cli download {id} --local-dir DIR`) and point --local-model at the directory\nhint: mistral.rs has no offline mode (HF_HUB_OFFLINE is not honoured); files already in the Hugging Face cache (HF_HUB_CACHE, or HF_HOME/hub, default ~/.cache/huggingface/hub) are reused only after one online run"
                )
            } else {
                format!("cannot load `{id}`: {detail}")
            }
        }
        Source::Dir(dir) => format!("cannot load the model in `{}`: {detail}", dir.display()),
    };
    let hint = if cfg.isq.is_some() && detail.to_lowercase().contains("divisible") {
        "\nhint: this ISQ type needs tensor sizes it cannot divide; try another (q8_0, q4_0) or none"
    } else {
        ""
    };
    ModelError::new(ErrorKind::Load, format!("{message}{hint}"))
}

fn panic_message(panic: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = panic.downcast_ref::<&str>() {
        (*s).to_string()
    } else if let Some(s) = panic.downcast_ref::<String>() {
        s.clone()
    } else {
        "unknown panic".to_string()
    }
}

/// Resident and peak resident memory of this process, in MiB (Linux; `None` elsewhere).
fn process_memory_mib() -> (Option<u64>, Option<u64>) {
    let Ok(status) = std::fs::read_to_string("/proc/self/status") else {
        return (None, None);
    };
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|rest| {
                rest.trim()
                    .trim_end_matches("kB")
                    .trim()
                    .parse::<u64>()
                    .ok()
            })
            .map(|kib| kib / 1024)
    };
    (field("VmRSS:"), field("VmHWM:"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(model: &str, cache_dir: &Path) -> LocalModelConfig {
        LocalModelConfig {
            model: model.into(),
            isq: None,
            dtype: None,
            device: None,
            cache_dir: cache_dir.to_path_buf(),
            max_num_seqs: None,
            test_sampling: false,
        }
    }

    #[test]
    fn hub_ids_and_paths_are_told_apart() {
        let tmp = tempfile::tempdir().unwrap();
        let c = |m: &str| resolve_source(&cfg(m, tmp.path()));
        assert!(matches!(c("google/gemma-4-E4B-it"), Ok(Source::Hub(_))));
        let missing = c("./models/gemma").err().unwrap();
        assert_eq!(missing.kind, ErrorKind::Load);
        assert!(
            missing.message.contains("does not exist"),
            "{}",
            missing.message
        );
        assert!(c("gemma").err().unwrap().message.contains("neither"));
    }

    #[test]
    fn local_dirs_are_checked_before_loading() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("m");
        std::fs::create_dir(&dir).unwrap();
        let err = |d: &Path| check_local_dir(d).err().unwrap().message;
        assert!(err(&dir).contains("no config.json"));
        std::fs::write(
            dir.join("config.json"),
            r#"{"architectures": ["LlamaForCausalLM"]}"#,
        )
        .unwrap();
        let m = err(&dir);
        assert!(m.contains("LlamaForCausalLM") && m.contains("hint:"), "{m}");
        std::fs::write(
            dir.join("config.json"),
            format!(r#"{{"architectures": ["{GEMMA4_ARCH}"]}}"#),
        )
        .unwrap();
        assert!(err(&dir).contains("tokenizer.json"));
        std::fs::write(dir.join("tokenizer.json"), "{}").unwrap();
        std::fs::write(dir.join("tokenizer_config.json"), "{}").unwrap();
        assert!(err(&dir).contains("chat template"));
        std::fs::write(dir.join("chat_template.jinja"), "{{ messages }}").unwrap();
        assert!(err(&dir).contains("no weights"));
        std::fs::write(dir.join("model.safetensors"), "").unwrap();
        assert!(check_local_dir(&dir).is_ok());
    }

    #[test]
    fn the_tiny_model_passes_the_local_checks() {
        let tmp = tempfile::tempdir().unwrap();
        let Source::Dir(dir) = resolve_source(&cfg("tiny", tmp.path())).unwrap() else {
            panic!("tiny resolves to a directory");
        };
        check_local_dir(&dir).unwrap();
    }

    #[test]
    fn settings_are_parsed_with_clear_errors() {
        assert!(matches!(parse_device(Some("cpu")), Ok(Device::Cpu)));
        assert!(parse_device(Some("tpu"))
            .err()
            .unwrap()
            .message
            .contains("unknown device"));
        assert!(parse_device(Some("cuda:x")).is_err());
        assert!(matches!(parse_dtype(None), Ok(ModelDType::Auto)));
        assert!(matches!(parse_dtype(Some("BF16")), Ok(ModelDType::BF16)));
        assert!(parse_dtype(Some("f8")).is_err());
        assert_eq!(
            parse_isq(Some("q8_0"), &Device::Cpu).unwrap(),
            Some(IsqType::Q8_0)
        );
        assert_eq!(
            parse_isq(Some("4"), &Device::Cpu).unwrap(),
            Some(IsqType::Q4K)
        );
        assert_eq!(parse_isq(Some(" "), &Device::Cpu).unwrap(), None);
        let bad = parse_isq(Some("q9"), &Device::Cpu).err().unwrap();
        assert_eq!(bad.kind, ErrorKind::Load);
        assert!(bad.message.contains("q9"));
    }

    #[test]
    fn test_schemas_get_rigid_whitespace() {
        let mut schema = serde_json::json!({"type": "object", "x-guidance": {"lenient": true}});
        rigid_whitespace(&mut schema);
        assert_eq!(
            schema["x-guidance"],
            serde_json::json!({"lenient": true, "whitespace_flexible": false})
        );
        let mut boolean = Value::Bool(true);
        rigid_whitespace(&mut boolean);
        assert_eq!(boolean, Value::Bool(true));
    }

    #[test]
    fn sampling_is_greedy_unless_asked() {
        let tmp = tempfile::tempdir().unwrap();
        let backend = MistralBackend::new(cfg("tiny", tmp.path()));
        let mut req = ModelRequest {
            system: None,
            prompt: "hi".into(),
            schema: None,
            max_tokens: Some(7),
            ..Default::default()
        };
        let p = backend.sampling(&req);
        assert_eq!((p.top_k, p.max_len), (Some(1), Some(7)));
        req.temperature = Some(0.7);
        assert_eq!(backend.sampling(&req).temperature, Some(0.7));
        let mut test = cfg("tiny", tmp.path());
        test.test_sampling = true;
        let p = MistralBackend::new(test).sampling(&req);
        assert_eq!(p.top_k, Some(TEST_TOP_K));
        assert!(!backend.is_loaded());
    }
}
