//! What `local(...)` and `cloud(...)` share: reading the script's arguments, resolving the
//! schema, guarding what goes to the cloud, blocking on the back end, checking the answer,
//! and recording (and, for the cloud, auditing) the call.
//!
//! Every failure comes back to the script as a catchable error with a `kind`; an answer that
//! should match a schema is parsed and validated here, so scripts never parse free text.

use std::sync::Arc;
use std::time::Instant;

use rhai::{Dynamic, EvalAltResult, Map, NativeCallContext, Position};
use serde_json::Value;

use super::error::host_error;
use super::DocContext;
use crate::audit::{self, Egress, Outcome};
use crate::guard::{Blocked, Parts, Redaction};
use crate::models::{Backend, ErrorKind, ModelError, ModelRequest, ModelResponse, Usage, Wire};
use crate::record::CallRecord;
use crate::schemas::Schema;

/// Which script function a call came through.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Local,
    Cloud,
}

impl Role {
    pub fn fn_name(self) -> &'static str {
        match self {
            Role::Local => "local",
            Role::Cloud => "cloud",
        }
    }

    /// What the answer cache may do for this function's calls.
    fn cache_mode(self, cache: &crate::cache::AnswerCache) -> crate::cache::Mode {
        match self {
            Role::Local => cache.local,
            Role::Cloud => cache.cloud,
        }
    }
}

const OPTIONS: &[&str] = &[
    "prompt",
    "input",
    "system",
    "schema",
    "max_tokens",
    "temperature",
    "thinking",
    "images",
];

type RhaiResult<T> = Result<T, Box<EvalAltResult>>;

/// The script's arguments, read and checked.
struct Args {
    parts: Parts,
    schema: Option<Dynamic>,
    max_tokens: Option<u32>,
    temperature: Option<f64>,
    thinking: bool,
    images: Vec<crate::images::PageImage>,
}

/// A call ready to go: arguments read, schema resolved, payload through the guard.
struct Prepared {
    role: Role,
    pos: Position,
    backend: Arc<dyn Backend>,
    schema: Option<Arc<Schema>>,
    redactions: Vec<Redaction>,
    request: ModelRequest,
    /// For the cloud: the body on its way out, for the audit log.
    egress: Option<Arc<Egress>>,
    /// For the cloud under a `[budget]`: the estimated cost held until the call is over.
    reservation: Option<crate::spend::Reservation>,
    /// The answer cache and this request's key in it, when the function uses the cache.
    cache: Option<(Arc<crate::cache::AnswerCache>, String)>,
    /// `--replay`: no model is called.
    replay: bool,
}

/// `local(prompt)`, `local(options)` and `local(prompt, schema)` (and the same for `cloud`).
pub fn call(
    ctx: &NativeCallContext,
    role: Role,
    first: Dynamic,
    schema: Option<Dynamic>,
) -> RhaiResult<Dynamic> {
    let doc = DocContext::of(ctx)?;
    let prepared = prepare(&doc, role, first, schema, ctx.call_position())?;
    let on_caller = prepared.backend.io_on_caller();
    let outcome = super::wait::block_on(&doc.services.runtime, on_caller, execute(&prepared));
    finish(&doc, prepared, outcome)
}

/// `both(local_options, cloud_options)`: both calls in flight at once; the pair takes about
/// as long as the slower one. Returns `#{ local, cloud, local_error, cloud_error }` — a side
/// that failed has `()` as its value and its error map (`kind`, `message`, ...) beside it,
/// so one failure never loses the other answer.
pub fn both(ctx: &NativeCallContext, local: Dynamic, cloud: Dynamic) -> RhaiResult<Map> {
    let doc = DocContext::of(ctx)?;
    let pos = ctx.call_position();
    let mut out = Map::new();
    let local = prepare(&doc, Role::Local, local, None, pos);
    let cloud = prepare(&doc, Role::Cloud, cloud, None, pos);
    let on_caller = [&local, &cloud]
        .iter()
        .all(|p| p.as_ref().map_or(true, |p| p.backend.io_on_caller()));
    let (l, c) = super::wait::block_on(&doc.services.runtime, on_caller, async {
        tokio::join!(
            execute_prepared(local.as_ref().ok()),
            execute_prepared(cloud.as_ref().ok())
        )
    });
    for (name, prepared, outcome) in [("local", local, l), ("cloud", cloud, c)] {
        let result = prepared.and_then(|p| finish(&doc, p, outcome.expect("prepared calls ran")));
        match result {
            Ok(value) => {
                out.insert(name.into(), value);
                out.insert(format!("{name}_error").into(), Dynamic::UNIT);
            }
            Err(err) => {
                let error = match *err {
                    EvalAltResult::ErrorRuntime(value, _) => value,
                    other => other.to_string().into(),
                };
                out.insert(name.into(), Dynamic::UNIT);
                out.insert(format!("{name}_error").into(), error);
            }
        }
    }
    Ok(out)
}

fn prepare(
    doc: &DocContext,
    role: Role,
    first: Dynamic,
    schema: Option<Dynamic>,
    pos: Position,
) -> RhaiResult<Prepared> {
    let made = doc.calls.lock().unwrap_or_else(|e| e.into_inner()).len();
    if made >= doc.limits.max_calls {
        return Err(super::error::budget_exceeded(
            format!("the document made more than {} model calls\nhint: if the work is real, raise `max_calls` under [limits] in hybrid.toml", doc.limits.max_calls),
            pos,
        ));
    }
    super::budget::check_value(&first, &doc.limits).map_err(|message| {
        host_error(
            "limit",
            format!("{}(): {message}", role.fn_name()),
            pos,
            |_| {},
        )
    })?;
    let args = read_args(role, first, schema, pos)?;
    let schema = match args.schema {
        Some(s) => Some(doc.schema(s, pos)?),
        None => None,
    };
    let backend = doc.services.backend(role).clone();
    let mut parts = args.parts;
    let mut request = ModelRequest {
        system: None,
        prompt: String::new(),
        schema: schema.as_ref().map(|s| s.request.clone()),
        max_tokens: args.max_tokens,
        temperature: args.temperature,
        thinking: args.thinking,
        wire: None,
        // Only the cloud has a prompt cache to route to (a local server may refuse the field).
        cache_key: (role == Role::Cloud).then(|| doc.cache_key()),
        images: args.images,
    };
    let (redactions, egress) = if role == Role::Cloud {
        // Nothing leaves for the cloud before the guard has seen all of it.
        match guard_cloud(doc, backend.as_ref(), &mut parts, &mut request) {
            Ok((redactions, egress)) => (redactions, Some(egress)),
            Err((blocked, body)) => {
                tracing::warn!(doc = %doc.document.id, rule = %blocked.rule, field = %blocked.field, "cloud call blocked");
                crate::console::metrics::global().blocked(&blocked.rule);
                // What was stopped is exactly what must not be written down: hash only.
                let egress = doc.egress(backend.model(), bytes::Bytes::new(), body.into());
                let images: Vec<String> = request.images.iter().map(|i| i.sha256.clone()).collect();
                egress.outcome(Outcome::Blocked, false, |e| {
                    e.rule = Some(blocked.rule.clone());
                    e.field = Some(blocked.field.clone());
                    e.images = images;
                });
                doc.push_call(CallRecord {
                    error: Some("blocked".into()),
                    ..CallRecord::new(
                        role.fn_name(),
                        backend.name(),
                        backend.model(),
                        schema.as_deref(),
                    )
                });
                return Err(host_error(
                    "blocked",
                    format!("cloud() {blocked}"),
                    pos,
                    |m| {
                        m.insert("function".into(), "cloud".into());
                        m.insert("rule".into(), blocked.rule.clone().into());
                        m.insert("field".into(), blocked.field.clone().into());
                    },
                ));
            }
        }
    } else {
        request.system = parts.system.take();
        request.prompt = prompt_text(&parts);
        (Vec::new(), None)
    };
    let cache = doc
        .services
        .cache
        .as_ref()
        .filter(|_| backend.name() != "dry-run")
        .map(|c| {
            let key = crate::cache::AnswerCache::key(
                role.fn_name(),
                backend.name(),
                backend.model(),
                &request,
            );
            (c.clone(), key)
        });
    let reservation = match (&doc.services.spend, &egress) {
        (Some(spend), Some(egress)) => Some(reserve(
            doc,
            spend,
            backend.as_ref(),
            &request,
            egress,
            schema.as_deref(),
            pos,
        )?),
        _ => None,
    };
    Ok(Prepared {
        role,
        pos,
        backend,
        schema,
        redactions,
        request,
        egress,
        reservation,
        cache,
        replay: doc.services.replay,
    })
}

/// Holds a cloud call's estimated cost against the `[budget]` caps, or refuses the call: the
/// refusal is audited (hash only: nothing left), recorded and raised as kind `budget`.
fn reserve(
    doc: &DocContext,
    spend: &crate::spend::Spend,
    backend: &dyn Backend,
    request: &ModelRequest,
    egress: &Egress,
    schema: Option<&Schema>,
    pos: Position,
) -> RhaiResult<crate::spend::Reservation> {
    let body = request.wire.as_ref().map(|w| w.bytes.clone());
    let prompt_tokens = body
        .as_deref()
        .map(|b| crate::cost::count_tokens(&String::from_utf8_lossy(b)))
        .unwrap_or(0);
    let usage = crate::models::Usage {
        prompt_tokens,
        completion_tokens: request.max_tokens.map_or(400, u64::from),
        ..Default::default()
    };
    let estimate = doc
        .services
        .pricing
        .price(backend.model())
        .map_or(0.0, |p| p.cost(&usage));
    use std::sync::atomic::Ordering;
    let first = !doc.counted_for_cloud.load(Ordering::Relaxed);
    match spend.reserve(first, estimate) {
        Ok(reservation) => {
            doc.counted_for_cloud.store(true, Ordering::Relaxed);
            Ok(reservation)
        }
        Err(refusal) => {
            tracing::warn!(doc = %doc.document.id, cap = %refusal.cap, "cloud call refused: {refusal}");
            egress.outcome(Outcome::Blocked, false, |e| {
                e.rule = Some("budget".into());
                e.field = Some(refusal.cap.clone());
                e.cost_usd = Some(estimate);
                e.estimated = true;
            });
            doc.push_call(CallRecord {
                error: Some("budget".into()),
                ..CallRecord::new("cloud", backend.name(), backend.model(), schema)
            });
            Err(host_error(
                "budget",
                format!("cloud() refused: {refusal}\nhint: raise the cap under [budget] in hybrid.toml, or let the script route the document elsewhere (catch kind `budget`)"),
                pos,
                |m| {
                    m.insert("function".into(), "cloud".into());
                    m.insert("cap".into(), refusal.cap.clone().into());
                    m.insert("limit".into(), refusal.limit.into());
                    m.insert("spent".into(), refusal.spent.into());
                    m.insert("resets".into(), refusal.resets.clone().into());
                },
            ))
        }
    }
}

/// The guard's two passes over a cloud call — the parts field by field, then the whole body
/// as it will leave — and the body frozen as the bytes that are sent, with the audit log's
/// write-ahead line before each attempt. On a block: why, and the body's bytes (for its hash).
fn guard_cloud(
    doc: &DocContext,
    backend: &dyn Backend,
    parts: &mut Parts,
    request: &mut ModelRequest,
) -> Result<(Vec<Redaction>, Arc<Egress>), (Blocked, Vec<u8>)> {
    let guard = &doc.services.guard;
    let fill = |request: &mut ModelRequest, parts: &Parts| {
        request.system = parts.system.clone();
        request.prompt = prompt_text(parts);
    };
    // An image cannot be checked for copied text or personal data: unless the pipeline's
    // policy allows images, it does not leave. The audit line keeps the body's hash only,
    // and the pages' hashes.
    if !request.images.is_empty() && !guard.allows_images() {
        fill(request, parts);
        let hashes: Vec<&str> = request.images.iter().map(|i| i.sha256.as_str()).collect();
        let blocked = Blocked {
            rule: "image".into(),
            field: "images".into(),
            detail: format!(
                "{} page image(s) (sha256 {}): an image cannot be checked for copied text or personal data; read it with local() and send the extracted JSON",
                hashes.len(),
                hashes.join(", ")
            ),
        };
        return Err((blocked, backend.wire_body(request).to_bytes()));
    }
    // Allowed images are not text for the detectors to read: the guard checks the request
    // without them, and they are added to the checked body after.
    let images = std::mem::take(&mut request.images);
    let mut redactions = match guard.check_parts(parts) {
        Ok(r) => r,
        Err(blocked) => {
            fill(request, parts);
            return Err((blocked, backend.wire_body(request).to_bytes()));
        }
    };
    fill(request, parts);
    let mut body = backend.wire_body(request);
    let prompt_len = parts.prompt.as_ref().map(String::len);
    let checked = {
        let mut window = doc.window.lock().unwrap_or_else(|e| e.into_inner());
        if guard.checks_overlap() && window.is_none() {
            *window = Some(crate::guard::window_of(&doc.document));
        }
        guard.check_wire(&mut body, prompt_len, window.as_mut())
    };
    let bytes = bytes::Bytes::from(body.to_bytes());
    match checked {
        Ok(r) => redactions.extend(r),
        Err(blocked) => return Err((blocked, bytes.to_vec())),
    }
    // With images: the audit keeps each as `sha256:…`, the wire carries the pages.
    // The body as the log keeps it, the body that leaves, and its bytes.
    let (audited, sent, bytes) = if images.is_empty() {
        (bytes.clone(), body, bytes)
    } else {
        let with = |url: &dyn Fn(&crate::images::PageImage) -> String| {
            let mut b = body.clone();
            if let Some(user) = b.head["messages"]
                .as_array_mut()
                .and_then(|m| m.iter_mut().rev().find(|m| m["role"] == "user"))
            {
                let mut content =
                    vec![serde_json::json!({"type": "text", "text": user["content"].clone()})];
                for image in &images {
                    content.push(
                        serde_json::json!({"type": "image_url", "image_url": {"url": url(image)}}),
                    );
                }
                user["content"] = Value::Array(content);
            }
            b
        };
        let audited = with(&|i| format!("sha256:{}", i.sha256));
        let sent = with(&|i| i.data_url());
        let bytes = bytes::Bytes::from(sent.to_bytes());
        (bytes::Bytes::from(audited.to_bytes()), sent, bytes)
    };
    request.images = images;
    // A flex request's twin asking for the default tier, for `[cloud] flex_fallback`: the
    // same checked body but for that one host-chosen field.
    let fallback = (sent.head["service_tier"] == "flex").then(|| {
        let mut default = sent.clone();
        default.head["service_tier"] = Value::from("default");
        bytes::Bytes::from(default.to_bytes())
    });
    let egress = Arc::new(doc.egress(backend.model(), audited, bytes.clone()));
    let hook = egress.clone();
    request.wire = Some(Wire {
        bytes,
        fallback,
        before_attempt: Arc::new(move |n, sent| hook.before_attempt(n, sent)),
    });
    Ok((redactions, egress))
}

/// What came back, and how long it took.
struct Reply {
    result: Result<ModelResponse, ModelError>,
    ms: u64,
    /// Answered from the answer cache.
    cached: bool,
    /// `--replay` found no cached answer: an estimate stands in.
    replay_miss: bool,
}

async fn execute(p: &Prepared) -> Reply {
    let started = Instant::now();
    if let Some((cache, key)) = &p.cache {
        if p.replay || p.role.cache_mode(cache).reads() {
            if let Some(answer) = cache.get(key) {
                return Reply {
                    result: Ok(answer),
                    ms: started.elapsed().as_millis() as u64,
                    cached: true,
                    replay_miss: false,
                };
            }
        }
    }
    if p.replay {
        // Never a model: an estimate, as a dry run makes it.
        let miss = crate::models::dry_run::DryRunBackend::replay_miss(p.backend.model().to_owned());
        return Reply {
            result: miss.complete(&p.request).await,
            ms: started.elapsed().as_millis() as u64,
            cached: false,
            replay_miss: true,
        };
    }
    let result = p.backend.complete(&p.request).await;
    Reply {
        result,
        ms: started.elapsed().as_millis() as u64,
        cached: false,
        replay_miss: false,
    }
}

async fn execute_prepared(p: Option<&Prepared>) -> Option<Reply> {
    match p {
        Some(p) => Some(execute(p).await),
        None => None,
    }
}

/// Checks the answer, records (and for the cloud, audits) the call, and hands the script its
/// value or a catchable error.
fn finish(doc: &DocContext, p: Prepared, outcome: Reply) -> RhaiResult<Dynamic> {
    let Prepared {
        role,
        pos,
        backend,
        schema,
        redactions,
        request,
        egress,
        reservation,
        cache,
        replay,
    } = p;
    let dry_run = backend.name() == "dry-run" || outcome.replay_miss;
    let cached = outcome.cached;
    // A fresh answer goes into the cache before it is checked: the cache records what was
    // answered (an answer that fails its schema fails the same way when replayed).
    if let (Ok(answer), Some((cache, key)), false) = (&outcome.result, &cache, cached || replay) {
        if role.cache_mode(cache).writes() {
            cache.put(key, role.fn_name(), answer);
        }
    }
    let result = outcome
        .result
        .and_then(|resp| decode(resp, schema.as_deref(), dry_run, request.thinking));

    let pricing = &doc.services.pricing;
    let mut record = CallRecord::new(
        role.fn_name(),
        backend.name(),
        backend.model(),
        schema.as_deref(),
    );
    record.ms = outcome.ms;
    record.dry_run = dry_run;
    record.cached = cached;
    record.replay_miss = outcome.replay_miss;
    record.redactions = redactions.clone();
    match &result {
        Ok((resp, _)) => {
            record.ok = true;
            record.model = resp.model.clone();
            record.usage = resp.usage;
            record.retries = resp.retries;
            record.request_id = resp.request_id.clone();
            record.service_tier = resp.service_tier.clone();
        }
        Err(err) => {
            record.error = Some(err.kind.as_str().to_owned());
            record.usage = err.usage.unwrap_or_default();
            record.retries = err.retries;
            record.request_id = err.request_id.clone();
        }
    }
    record.cost_usd = match role {
        Role::Cloud => {
            pricing.cloud_cost_on(&record.model, &record.usage, record.service_tier.as_deref())
        }
        Role::Local => pricing
            .local
            .has_rate()
            .then(|| pricing.local.call_cost(outcome.ms)),
    };
    if cached {
        // Nothing was called: nothing was paid.
        record.cost_usd = record.cost_usd.map(|_| 0.0);
    }

    if let Some(egress) = &egress {
        let outcome_kind = match (&result, dry_run) {
            (_, true) => Outcome::DryRun,
            _ if cached => Outcome::Cached,
            (Ok(_), false) => Outcome::Sent,
            (Err(_), false) => Outcome::Failed,
        };
        // A dry run's line is the only record of what would have left: it keeps the body.
        egress.outcome(outcome_kind, dry_run, |e| {
            e.prompt_tokens = record.usage.prompt_tokens;
            e.completion_tokens = record.usage.completion_tokens;
            e.estimated = dry_run;
            e.cost_usd = record.cost_usd;
            e.redactions = redactions;
            e.request_id = record.request_id.clone();
            e.error = record.error.clone();
        });
    }
    if let (Some(spend), Some(reservation)) = (&doc.services.spend, reservation) {
        spend.settle(reservation, record.cost_usd, &doc.document.id);
    }
    doc.push_call(record);

    match result {
        Ok((_, value)) => Ok(value),
        Err(err) => Err(model_error(role, backend.model(), err, pos)),
    }
}

fn read_args(
    role: Role,
    first: Dynamic,
    schema: Option<Dynamic>,
    pos: Position,
) -> RhaiResult<Args> {
    let usage_error = |message: String| {
        host_error(
            "usage",
            format!("{}(): {message}", role.fn_name()),
            pos,
            |m| {
                m.insert("function".into(), role.fn_name().into());
            },
        )
    };
    let mut args = Args {
        parts: Parts::default(),
        schema,
        max_tokens: None,
        temperature: None,
        thinking: false,
        images: Vec::new(),
    };
    if first.is_string() {
        args.parts.prompt = Some(first.into_string().unwrap_or_default());
        return Ok(args);
    }
    if !first.is_map() {
        return Err(usage_error(format!(
            "expected a prompt string or an options map, not {}",
            first.type_name()
        )));
    }
    if args.schema.is_some() {
        return Err(usage_error(
            "give the schema inside the options map, not as a second argument".into(),
        ));
    }
    let options = first.cast::<Map>();
    if let Some(unknown) = options.keys().find(|k| !OPTIONS.contains(&k.as_str())) {
        return Err(usage_error(format!(
            "unknown option `{unknown}`; the options are {}",
            OPTIONS.join(", ")
        )));
    }
    let get = |key: &str| options.get(key).filter(|v| !v.is_unit());
    let text = |key: &str| -> RhaiResult<Option<String>> {
        match get(key) {
            None => Ok(None),
            Some(v) if v.is_string() => Ok(Some(v.to_string())),
            Some(v) => Err(usage_error(format!(
                "`{key}` must be a string, not {}",
                v.type_name()
            ))),
        }
    };
    args.parts.prompt = text("prompt")?;
    args.parts.system = text("system")?;
    args.parts.input = match get("input") {
        Some(v) => Some(
            rhai::serde::from_dynamic::<Value>(v)
                .map_err(|e| usage_error(format!("`input` cannot be sent as JSON: {e}")))?,
        ),
        None => None,
    };
    if args.parts.prompt.is_none() && args.parts.input.is_none() {
        return Err(usage_error("give a `prompt` or an `input`".into()));
    }
    if let Some(v) = get("max_tokens") {
        let n = v
            .as_int()
            .map_err(|_| usage_error("`max_tokens` must be an integer".into()))?;
        if n <= 0 || n > u32::MAX as i64 {
            return Err(usage_error(
                "`max_tokens` must be a positive integer".into(),
            ));
        }
        args.max_tokens = Some(n as u32);
    }
    if let Some(v) = get("temperature") {
        let t = v
            .as_float()
            .or_else(|_| v.as_int().map(|i| i as f64))
            .map_err(|_| usage_error("`temperature` must be a number".into()))?;
        args.temperature = Some(t);
    }
    if let Some(v) = get("thinking") {
        args.thinking = v
            .as_bool()
            .map_err(|_| usage_error("`thinking` must be true or false".into()))?;
    }
    if let Some(v) = get("images") {
        let list = v
            .as_array_ref()
            .map_err(|_| usage_error("`images` must be an array, e.g. `doc.images`".into()))?;
        for item in list.iter() {
            match item.clone().try_cast::<crate::images::PageImage>() {
                Some(image) => args.images.push(image),
                None => {
                    return Err(usage_error(format!(
                    "`images` holds {}, not an image; pass `doc.images` (or some of its entries)",
                    item.type_name()
                )))
                }
            }
        }
    }
    args.schema = get("schema").cloned();
    Ok(args)
}

/// The user message: the prompt, then the input as JSON.
fn prompt_text(parts: &Parts) -> String {
    let input = parts.input.as_ref().map(|i| match i {
        Value::String(s) => s.clone(),
        other => serde_json::to_string_pretty(other).unwrap_or_default(),
    });
    match (&parts.prompt, input) {
        (Some(p), Some(i)) => format!("{p}\n\n{i}"),
        (Some(p), None) => p.clone(),
        (None, Some(i)) => i,
        (None, None) => String::new(),
    }
}

impl DocContext {
    fn push_call(&self, record: CallRecord) {
        self.calls
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(record);
    }

    /// The audit log's view of one cloud request (its body, hash and size).
    /// The prompt-cache key of this document's calls: the pipeline and its rules version,
    /// hashed (the script's path does not leave the machine).
    fn cache_key(&self) -> String {
        use sha2::Digest;
        let digest = sha2::Sha256::digest(
            format!("{}\n{}", self.services.pipeline, self.version).as_bytes(),
        );
        let hex: String = digest.iter().take(8).map(|b| format!("{b:02x}")).collect();
        format!("hybrid-{hex}")
    }

    fn egress(&self, model: &str, payload: bytes::Bytes, body: bytes::Bytes) -> Egress {
        let template = audit::Entry {
            time: String::new(),
            document: self.document.id.clone(),
            version: self.version.clone(),
            model: model.to_owned(),
            endpoint: self.services.cloud_endpoint.clone(),
            outcome: Outcome::Attempt,
            rule: None,
            field: None,
            images: Vec::new(),
            payload: None,
            payload_sha256: String::new(),
            bytes: 0,
            prompt_tokens: 0,
            completion_tokens: 0,
            estimated: false,
            cost_usd: None,
            redactions: Vec::new(),
            request_id: None,
            error: None,
            attempt: None,
            attempts: None,
        };
        Egress::new(self.services.audit.clone(), template, payload, body)
    }
}

/// Turns a back end's answer into a script value: the text, or — with a schema — the parsed
/// and validated JSON. A dry-run placeholder is not validated: it is marked, not real.
fn decode(
    resp: ModelResponse,
    schema: Option<&Schema>,
    dry_run: bool,
    thinking: bool,
) -> Result<(ModelResponse, Dynamic), ModelError> {
    let Some(schema) = schema else {
        // With thinking on, the script gets the reasoning beside the answer.
        let value: Dynamic = if thinking {
            let mut m = Map::new();
            m.insert("answer".into(), resp.text.clone().into());
            m.insert(
                "reasoning".into(),
                resp.reasoning.clone().unwrap_or_default().into(),
            );
            m.into()
        } else {
            resp.text.clone().into()
        };
        return Ok((resp, value));
    };
    let fail = |resp: &ModelResponse, message: String| {
        let mut e =
            ModelError::new(ErrorKind::InvalidOutput, message).with_partial(resp.text.clone());
        e.usage = Some(resp.usage);
        e.request_id = resp.request_id.clone();
        e.retries = resp.retries;
        e
    };
    let value: Value = match serde_json::from_str(strip_fences(&resp.text)) {
        Ok(v) => v,
        Err(e) => {
            return Err(fail(
                &resp,
                format!(
                    "the answer is not JSON ({e}), though schema `{}` was asked for",
                    schema.name
                ),
            ))
        }
    };
    let violations = if dry_run {
        Vec::new()
    } else {
        schema.validate(&value)
    };
    if !violations.is_empty() {
        let listed: Vec<String> = violations
            .iter()
            .take(5)
            .map(|v| {
                format!(
                    "`{}`: {}",
                    if v.path.is_empty() { "/" } else { &v.path },
                    v.message
                )
            })
            .collect();
        return Err(fail(
            &resp,
            format!(
                "the answer does not match schema `{}`: {}",
                schema.name,
                listed.join("; ")
            ),
        ));
    }
    let dynamic = rhai::serde::to_dynamic(&value).map_err(|e| {
        fail(
            &resp,
            format!("the answer cannot be handed to the script: {e}"),
        )
    })?;
    Ok((resp, dynamic))
}

/// Some servers wrap JSON in a Markdown fence even when asked not to.
fn strip_fences(text: &str) -> &str {
    let t = text.trim();
    let Some(rest) = t.strip_prefix("```") else {
        return t;
    };
    let rest = rest.strip_prefix("json").unwrap_or(rest);
    rest.strip_suffix("```").unwrap_or(rest).trim()
}

fn model_error(role: Role, model: &str, err: ModelError, pos: Position) -> Box<EvalAltResult> {
    let message = format!(
        "{}() failed ({}): {}",
        role.fn_name(),
        err.kind.as_str(),
        err.message
    );
    host_error(err.kind.as_str(), message, pos, |m| {
        m.insert("function".into(), role.fn_name().into());
        m.insert("model".into(), model.into());
        m.insert("retries".into(), (err.retries as i64).into());
        if let Some(p) = err.partial {
            m.insert("partial".into(), p.into());
        }
        if let Some(id) = err.request_id {
            m.insert("request_id".into(), id.into());
        }
    })
}

impl CallRecord {
    pub(crate) fn new(
        function: &'static str,
        backend: &str,
        model: &str,
        schema: Option<&Schema>,
    ) -> CallRecord {
        CallRecord {
            function,
            backend: backend.to_owned(),
            model: model.to_owned(),
            schema: schema.map(|s| s.name.clone()),
            ok: false,
            error: None,
            usage: Usage::default(),
            cost_usd: None,
            ms: 0,
            retries: 0,
            request_id: None,
            service_tier: None,
            dry_run: false,
            cached: false,
            replay_miss: false,
            redactions: Vec::new(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fences_are_stripped() {
        assert_eq!(strip_fences("```json\n{\"a\":1}\n```"), "{\"a\":1}");
        assert_eq!(strip_fences(" {\"a\":1} "), "{\"a\":1}");
    }
}
