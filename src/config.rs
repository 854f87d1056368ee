//! Settings: `hybrid.toml`, environment variables and command-line flags, merged once.
//!
//! Precedence is flag > environment > file > default. The API key is only ever read from
//! the environment and is kept out of `Debug` output so it cannot leak into logs.

use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

/// The official endpoint `cloud()` talks to unless told otherwise.
pub const OPENAI_BASE_URL: &str = "https://api.openai.com/v1";
/// The cloud model used unless configured otherwise.
pub const DEFAULT_CLOUD_MODEL: &str = "gpt-5.4";
/// The local model used unless configured otherwise.
pub const DEFAULT_LOCAL_MODEL: &str = "google/gemma-4-E4B-it";

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config `{path}`: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("invalid config `{path}`: {message}\nhint: see the \"Configuration\" section of the README for every key")]
    Parse { path: PathBuf, message: String },
    #[error("invalid value for {key}: {message}")]
    Value { key: &'static str, message: String },
    #[error(transparent)]
    Pipeline(#[from] crate::pipeline::PipelineError),
}

/// The whole `hybrid.toml`. Every section and key is optional.
#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct FileConfig {
    pub cloud: EndpointFile,
    pub local: LocalFile,
    pub run: RunFile,
    pub limits: Limits,
    pub guard: crate::guard::GuardConfig,
    pub audit: AuditFile,
    /// `[prices."MODEL"]`: per-million-token prices beyond the built-in GPT-5.4 ones.
    pub prices: std::collections::BTreeMap<String, crate::cost::Price>,
    pub local_cost: crate::cost::LocalCost,
    pub currency: crate::cost::Currency,
    /// `[pipelines."scripts/NAME.rhai"]`: a pipeline's inputs, outputs and run settings.
    pub pipelines: std::collections::BTreeMap<String, crate::pipeline::PipelineFile>,
    /// `[budget]`: spend caps.
    pub budget: crate::spend::BudgetFile,
    /// `[cache]`: the answer cache.
    pub cache: crate::cache::CacheFile,
    /// `[reload]`: probation of live-reloaded versions.
    pub reload: crate::probation::ReloadFile,
    /// `[fleet]`: workers on a NATS JetStream work queue.
    pub fleet: crate::fleet::FleetFile,
    /// `[serve]`: the operations console.
    pub serve: ServeFile,
}

/// `[serve]`: the operations console of a long-running host.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ServeFile {
    /// Address for /metrics, /healthz and /readyz, e.g. `127.0.0.1:9464` (like `--listen`).
    pub listen: Option<String>,
    /// A file whose first line is the token every request must carry (like `--token-file`).
    pub token_file: Option<PathBuf>,
}

/// `[audit]`.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AuditFile {
    /// Where the audit log goes [default: beside `--out` as `NAME.audit.jsonl`, else
    /// `hybrid-audit.jsonl` in the current directory].
    pub path: Option<PathBuf>,
    /// `full` (default): keep each payload in the log; `hash`: only its SHA-256.
    pub payload: Option<String>,
}

/// What `cloud()` does with a call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CloudMode {
    /// Send it.
    Live,
    /// Send nothing: guard, audit and estimate, and answer with a placeholder.
    DryRun,
}

/// `[cloud]`, and the OpenAI-compatible half of `[local]`.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct EndpointFile {
    pub base_url: Option<String>,
    pub model: Option<String>,
    /// Name of the environment variable holding the key (default `OPENAI_API_KEY`).
    pub api_key_env: Option<String>,
    pub timeout_secs: Option<f64>,
    pub max_retries: Option<u32>,
    pub max_retry_secs: Option<f64>,
    pub backoff_ms: Option<u64>,
    /// Requests and tokens per minute this endpoint allows (the organisation's limits);
    /// without them, learned from the server's `x-ratelimit-limit-*` headers.
    pub rpm: Option<u32>,
    pub tpm: Option<u32>,
    /// `auto`, `default`, `flex` (about half the price, slower, sometimes unavailable) or
    /// `priority`: sent as the request's `service_tier`.
    pub service_tier: Option<String>,
    /// With `flex`: a call flex cannot serve (429/503) falls back to the default tier.
    pub flex_fallback: Option<bool>,
}

/// `[local]`.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LocalFile {
    /// `mistralrs` (in-process, the default) or `openai` (an OpenAI-compatible server).
    pub backend: Option<String>,
    pub model: Option<String>,
    pub isq: Option<String>,
    pub dtype: Option<String>,
    pub device: Option<String>,
    pub max_num_seqs: Option<usize>,
    pub cache_dir: Option<PathBuf>,
    pub base_url: Option<String>,
    /// Let `base_url` be at a public address: `local()` sends whole documents, so by default
    /// its server must be on this machine or the operator's own network.
    pub allow_remote: Option<bool>,
    pub api_key_env: Option<String>,
    pub timeout_secs: Option<f64>,
    pub max_retries: Option<u32>,
    pub max_retry_secs: Option<f64>,
    pub backoff_ms: Option<u64>,
    pub rpm: Option<u32>,
    pub tpm: Option<u32>,
}

/// `[run]`.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RunFile {
    pub jobs: Option<usize>,
    pub schemas: Option<PathBuf>,
}

/// `[limits]`: guards against runaway scripts and hostile files. Each fails one document with
/// kind `limit` (or `input`), never the host.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Limits {
    pub max_operations: u64,
    pub max_call_levels: usize,
    pub max_expr_depth: usize,
    /// Strings, arrays and maps a script hands to the host or returns.
    pub max_string_size: usize,
    pub max_array_size: usize,
    pub max_map_size: usize,
    /// How deeply values a script hands to the host (or returns) may nest.
    pub max_value_depth: usize,
    /// Bytes of memory one document's script may hold.
    pub max_document_memory: u64,
    /// `local()` + `cloud()` calls per document.
    pub max_calls: usize,
    /// Bytes of one result record.
    pub max_record_bytes: usize,
    /// Bytes one document may `emit`, and `print`.
    pub max_emit_bytes: usize,
    pub max_print_bytes: usize,
    /// Text extraction from one PDF: memory (bytes of address space) and seconds.
    pub pdf_memory: u64,
    pub pdf_seconds: u64,
    /// Pages one scanned document may bring, and pixels one page may have.
    pub max_pages: usize,
    pub max_image_pixels: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_operations: 50_000_000,
            max_call_levels: 64,
            max_expr_depth: 128,
            max_string_size: 16 * 1024 * 1024,
            max_array_size: 200_000,
            max_map_size: 200_000,
            max_value_depth: 128,
            max_document_memory: 512 * 1024 * 1024,
            max_calls: 500,
            max_record_bytes: 16 * 1024 * 1024,
            max_emit_bytes: 16 * 1024 * 1024,
            max_print_bytes: 1024 * 1024,
            pdf_memory: 1024 * 1024 * 1024,
            pdf_seconds: 60,
            max_pages: 50,
            max_image_pixels: 40_000_000,
        }
    }
}

impl FileConfig {
    pub fn load(path: &Path) -> Result<FileConfig, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        toml::from_str(&text).map_err(|e| ConfigError::Parse {
            path: path.to_owned(),
            message: e.to_string(),
        })
    }

    /// Finds `hybrid.toml`: beside the script, in the script's parent folder, then in the
    /// current directory.
    pub fn discover(script: &Path) -> Option<PathBuf> {
        let [dir, up] = script_dirs(script);
        [dir, up, PathBuf::from(".")]
            .into_iter()
            .map(|d| d.join("hybrid.toml"))
            .find(|p| p.is_file())
    }
}

/// The folders a script's companions (`hybrid.toml`, `schemas/`, `stdlib/`) are looked for
/// in: the script's own folder, then the one above it (so `scripts/x.rhai` finds the
/// project's `schemas/`).
pub fn script_dirs(script: &Path) -> [PathBuf; 2] {
    let dir = match script.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_owned(),
        _ => PathBuf::from("."),
    };
    let up = match dir.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_owned(),
        Some(_) if dir != Path::new(".") => PathBuf::from("."),
        _ => dir.join(".."),
    };
    [dir, up]
}

/// A secret that never prints.
#[derive(Clone, Default)]
pub struct Secret(Option<String>);

impl Secret {
    pub fn new(value: Option<String>) -> Secret {
        Secret(value.filter(|v| !v.trim().is_empty()))
    }
    pub fn expose(&self) -> Option<&str> {
        self.0.as_deref()
    }
    pub fn is_set(&self) -> bool {
        self.0.is_some()
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(if self.0.is_some() {
            "Secret(***)"
        } else {
            "Secret(None)"
        })
    }
}

/// Everything an OpenAI-compatible client needs.
#[derive(Debug, Clone)]
pub struct EndpointConfig {
    pub base_url: String,
    pub model: String,
    pub api_key: Secret,
    /// Name of the variable the key came from, for hints.
    pub api_key_env: String,
    pub timeout: Duration,
    pub max_retries: u32,
    pub max_retry_time: Duration,
    pub backoff: Duration,
    pub rpm: Option<u32>,
    pub tpm: Option<u32>,
    pub service_tier: Option<String>,
    pub flex_fallback: bool,
    /// Only an address on this machine or the operator's network will do (the local server;
    /// see `models::on_site`).
    pub on_site_only: bool,
}

impl EndpointConfig {
    /// True when this endpoint is the official OpenAI one (where a key is mandatory).
    pub fn is_official(&self) -> bool {
        self.base_url.trim_end_matches('/') == OPENAI_BASE_URL
    }
}

/// Which back end serves `local()`.
#[derive(Debug, Clone)]
pub enum LocalConfig {
    /// Gemma 4 in-process through mistral.rs.
    InProcess(InProcessConfig),
    /// An OpenAI-compatible server on the operator's own infrastructure.
    Server(EndpointConfig),
}

#[derive(Debug, Clone)]
pub struct InProcessConfig {
    pub model: String,
    pub isq: Option<String>,
    pub dtype: Option<String>,
    pub device: Option<String>,
    pub max_num_seqs: Option<usize>,
    pub cache_dir: PathBuf,
}

/// Flags that override the file and the environment. `None` means "not given".
#[derive(Debug, Default, Clone)]
pub struct Overrides {
    pub cloud_url: Option<String>,
    pub cloud_model: Option<String>,
    pub local_backend: Option<String>,
    pub local_model: Option<String>,
    pub local_url: Option<String>,
    pub isq: Option<String>,
    pub device: Option<String>,
    pub timeout_secs: Option<f64>,
    pub max_retries: Option<u32>,
    pub jobs: Option<usize>,
    pub schemas: Option<PathBuf>,
    pub cloud_mode: Option<CloudMode>,
    pub audit: Option<PathBuf>,
}

/// The merged settings a run works from.
#[derive(Debug, Clone)]
pub struct Config {
    pub cloud: EndpointConfig,
    pub local: LocalConfig,
    pub jobs: usize,
    pub schemas: Option<PathBuf>,
    pub limits: Limits,
    pub cloud_mode: CloudMode,
    pub guard: crate::guard::GuardConfig,
    /// An explicit audit log path (`--audit`, the pipeline's `audit`, or `[audit] path`).
    pub audit_path: Option<PathBuf>,
    pub audit_origin: crate::pipeline::Origin,
    /// Keep payloads in the audit log (else only their hash).
    pub audit_payload: bool,
    pub pricing: crate::cost::Pricing,
    /// The file the settings came from, if any.
    pub source: Option<PathBuf>,
    pub budget: crate::spend::BudgetFile,
    pub cache: crate::cache::CacheFile,
    pub reload: crate::probation::ReloadFile,
    pub fleet: crate::fleet::FleetFile,
    pub serve: ServeFile,
    /// The effective value and origin of the settings an operator most often asks about
    /// (`hybrid check` prints them).
    pub shown: Vec<crate::pipeline::Shown>,
}

fn env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.trim().is_empty())
}

fn secs(key: &'static str, value: f64) -> Result<Duration, ConfigError> {
    Duration::try_from_secs_f64(value).map_err(|_| ConfigError::Value {
        key,
        message: format!("{value} is not a number of seconds"),
    })
}

impl Config {
    /// Merge a file (possibly empty), the environment and flags.
    pub fn resolve(
        file: FileConfig,
        source: Option<PathBuf>,
        flags: &Overrides,
    ) -> Result<Config, ConfigError> {
        Config::resolve_for(file, source, flags, None)
    }

    /// [`Config::resolve`] for one pipeline: what its `[pipelines."PATH"]` table declares
    /// (jobs, cloud mode, audit log) ranks under flags and the environment, over the rest of
    /// the file.
    pub fn resolve_for(
        file: FileConfig,
        source: Option<PathBuf>,
        flags: &Overrides,
        pipeline: Option<&crate::pipeline::Declared>,
    ) -> Result<Config, ConfigError> {
        use crate::pipeline::{pick, Origin, Shown};
        let in_file = |key: &str| Origin::File {
            path: source.clone().unwrap_or_default(),
            key: key.to_owned(),
        };
        let declared =
            |name: &str| pipeline.map_or(Origin::Default("not declared"), |p| p.origin(name));
        let mut shown = Vec::new();
        let c = &file.cloud;
        let cloud_key_env = c
            .api_key_env
            .clone()
            .unwrap_or_else(|| "OPENAI_API_KEY".into());
        let (base_url, origin) = pick(
            vec![
                (flags.cloud_url.clone(), Origin::Flag("--cloud-url")),
                (env("OPENAI_BASE_URL"), Origin::Env("OPENAI_BASE_URL")),
                (c.base_url.clone(), in_file("[cloud] base_url")),
            ],
            (OPENAI_BASE_URL.into(), Origin::Default("OpenAI")),
        );
        shown.push(Shown {
            name: "cloud.base_url",
            value: base_url.clone(),
            origin,
        });
        let (cloud_model, origin) = pick(
            vec![
                (flags.cloud_model.clone(), Origin::Flag("--cloud-model")),
                (env("HYBRID_CLOUD_MODEL"), Origin::Env("HYBRID_CLOUD_MODEL")),
                (c.model.clone(), in_file("[cloud] model")),
            ],
            (DEFAULT_CLOUD_MODEL.into(), Origin::Default("GPT-5.4")),
        );
        shown.push(Shown {
            name: "cloud.model",
            value: cloud_model.clone(),
            origin,
        });
        let cloud = EndpointConfig {
            base_url,
            model: cloud_model,
            api_key: Secret::new(env(&cloud_key_env)),
            api_key_env: cloud_key_env,
            timeout: secs(
                "cloud.timeout_secs",
                flags.timeout_secs.or(c.timeout_secs).unwrap_or(60.0),
            )?,
            max_retries: flags.max_retries.or(c.max_retries).unwrap_or(4),
            max_retry_time: secs("cloud.max_retry_secs", c.max_retry_secs.unwrap_or(120.0))?,
            backoff: Duration::from_millis(c.backoff_ms.unwrap_or(500)),
            rpm: c.rpm,
            tpm: c.tpm,
            service_tier: match c.service_tier.as_deref() {
                None => None,
                // The values of the Chat Completions `ServiceTier` (OpenAI's OpenAPI description).
                Some(t @ ("auto" | "default" | "flex" | "scale" | "priority" | "fast")) => {
                    Some(t.to_owned())
                }
                Some(other) => {
                    return Err(ConfigError::Value {
                        key: "cloud.service_tier",
                        message: format!("`{other}` is not a service tier\nhint: use auto, default, flex, scale, priority or fast"),
                    })
                }
            },
            flex_fallback: c.flex_fallback.unwrap_or(false),
            on_site_only: false,
        };

        let l = &file.local;
        let (model, local_origin) = pick(
            vec![
                (flags.local_model.clone(), Origin::Flag("--local-model")),
                (env("HYBRID_LOCAL_MODEL"), Origin::Env("HYBRID_LOCAL_MODEL")),
                (l.model.clone(), in_file("[local] model")),
            ],
            (DEFAULT_LOCAL_MODEL.into(), Origin::Default("Gemma 4 E4B")),
        );
        let model = Some(model);
        let backend = flags
            .local_backend
            .clone()
            .or_else(|| l.backend.clone())
            .unwrap_or_else(|| {
                // Naming a server URL is enough to mean "use a server".
                if flags.local_url.is_some() || l.base_url.is_some() {
                    "openai".into()
                } else {
                    "mistralrs".into()
                }
            });
        let local = match backend.as_str() {
            "mistralrs" | "in-process" => LocalConfig::InProcess(InProcessConfig {
                model: model.unwrap_or_else(|| DEFAULT_LOCAL_MODEL.into()),
                isq: flags.isq.clone().or_else(|| l.isq.clone()),
                dtype: l.dtype.clone(),
                device: flags.device.clone().or_else(|| l.device.clone()),
                max_num_seqs: l.max_num_seqs,
                cache_dir: l.cache_dir.clone().unwrap_or_else(default_cache_dir),
            }),
            "openai" | "server" => {
                let key_env = l
                    .api_key_env
                    .clone()
                    .unwrap_or_else(|| "HYBRID_LOCAL_API_KEY".into());
                let base_url = flags
                    .local_url
                    .clone()
                    .or_else(|| l.base_url.clone())
                    .ok_or(ConfigError::Value {
                        key: "local.base_url",
                        message: "the `openai` local back end needs a server URL\nhint: set `base_url` under [local] in hybrid.toml, or pass --local-url http://HOST:PORT/v1".into(),
                    })?;
                LocalConfig::Server(EndpointConfig {
                    base_url,
                    model: model.unwrap_or_else(|| DEFAULT_LOCAL_MODEL.into()),
                    api_key: Secret::new(env(&key_env)),
                    api_key_env: key_env,
                    timeout: secs(
                        "local.timeout_secs",
                        flags.timeout_secs.or(l.timeout_secs).unwrap_or(300.0),
                    )?,
                    max_retries: flags.max_retries.or(l.max_retries).unwrap_or(2),
                    max_retry_time: secs(
                        "local.max_retry_secs",
                        l.max_retry_secs.unwrap_or(120.0),
                    )?,
                    backoff: Duration::from_millis(l.backoff_ms.unwrap_or(250)),
                    rpm: l.rpm,
                    tpm: l.tpm,
                    service_tier: None,
                    flex_fallback: false,
                    on_site_only: !l.allow_remote.unwrap_or(false),
                })
            }
            other => {
                return Err(ConfigError::Value {
                    key: "local.backend",
                    message: format!(
                        "unknown back end `{other}`\nhint: use `mistralrs` (in-process Gemma 4) or `openai` (an OpenAI-compatible server)"
                    ),
                })
            }
        };

        shown.push(Shown {
            name: "local",
            value: match &local {
                LocalConfig::InProcess(m) => format!("{} (in-process)", m.model),
                LocalConfig::Server(e) => format!("{} at {}", e.model, e.base_url),
            },
            origin: local_origin,
        });

        let (jobs, origin) = pick(
            vec![
                (flags.jobs, Origin::Flag("--jobs")),
                (pipeline.and_then(|p| p.file.jobs), declared("jobs")),
                (file.run.jobs, in_file("[run] jobs")),
            ],
            (default_jobs(), Origin::Default("4 × cores, at most 32")),
        );
        if jobs == 0 {
            return Err(ConfigError::Value {
                key: "jobs",
                message: format!("must be at least 1 ({origin})"),
            });
        }
        shown.push(Shown {
            name: "jobs",
            value: jobs.to_string(),
            origin,
        });
        let (cloud_mode, origin) = pick(
            vec![
                (flags.cloud_mode, Origin::Flag("--cloud")),
                (
                    pipeline.map(|p| p.cloud_mode()).transpose()?.flatten(),
                    declared("cloud"),
                ),
            ],
            (CloudMode::Live, Origin::Default("send escalations")),
        );
        shown.push(Shown {
            name: "cloud",
            value: match cloud_mode {
                CloudMode::Live => "live",
                CloudMode::DryRun => "dry-run",
            }
            .into(),
            origin,
        });
        let (audit_path, audit_origin) = pick(
            vec![
                (flags.audit.clone().map(Some), Origin::Flag("--audit")),
                (
                    pipeline.and_then(|p| p.file.audit.clone()).map(Some),
                    declared("audit"),
                ),
                (file.audit.path.clone().map(Some), in_file("[audit] path")),
            ],
            (None, Origin::Default("beside out")),
        );
        let (schemas, origin) = pick(
            vec![
                (flags.schemas.clone().map(Some), Origin::Flag("--schemas")),
                (file.run.schemas.clone().map(Some), in_file("[run] schemas")),
            ],
            (
                None,
                Origin::Default("schemas/ beside the script or its folder"),
            ),
        );
        shown.push(Shown {
            name: "schemas",
            value: schemas.as_ref().map_or_else(
                || "(none found)".into(),
                |p: &PathBuf| p.display().to_string(),
            ),
            origin,
        });
        let audit_payload = match file.audit.payload.as_deref() {
            None | Some("full") => true,
            Some("hash") => false,
            Some(other) => {
                return Err(ConfigError::Value {
                    key: "audit.payload",
                    message: format!("`{other}` is neither `full` nor `hash`"),
                })
            }
        };
        if file.currency.per_usd <= 0.0 || !file.currency.per_usd.is_finite() {
            return Err(ConfigError::Value {
                key: "currency.per_usd",
                message: "must be a positive number of local units per US dollar".into(),
            });
        }
        Ok(Config {
            cloud,
            local,
            jobs,
            schemas,
            limits: file.limits,
            cloud_mode,
            guard: file.guard,
            audit_path,
            audit_origin,
            audit_payload,
            pricing: crate::cost::Pricing {
                prices: file.prices,
                local: file.local_cost,
                currency: file.currency,
            },
            source,
            budget: file.budget,
            cache: file.cache,
            reload: file.reload,
            fleet: file.fleet,
            serve: file.serve,
            shown,
        })
    }
}

/// Model calls mostly wait on I/O or on the shared engine, so more documents than cores
/// can be in flight usefully.
fn default_jobs() -> usize {
    std::thread::available_parallelism()
        .map(|n| n.get() * 4)
        .unwrap_or(8)
        .min(32)
}

/// `$HYBRID_CACHE_DIR`, else `$XDG_CACHE_HOME/hybrid`, else `~/.cache/hybrid`.
pub fn default_cache_dir() -> PathBuf {
    if let Some(dir) = env("HYBRID_CACHE_DIR") {
        return PathBuf::from(dir);
    }
    if let Some(dir) = env("XDG_CACHE_HOME") {
        return PathBuf::from(dir).join("hybrid");
    }
    if let Some(home) = env("HOME") {
        return PathBuf::from(home).join(".cache").join("hybrid");
    }
    std::env::temp_dir().join("hybrid-cache")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secret_never_prints() {
        let s = Secret::new(Some("sk-very-secret".into()));
        assert!(!format!("{s:?}").contains("very-secret"));
    }

    #[test]
    fn unknown_keys_are_rejected_with_the_path() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("hybrid.toml");
        std::fs::write(&path, "[cloud]\nmodle = \"x\"\n").unwrap();
        let err = FileConfig::load(&path).unwrap_err().to_string();
        assert!(err.contains("hybrid.toml"), "{err}");
        assert!(err.contains("modle"), "{err}");
    }

    #[test]
    fn script_dirs_are_the_folder_and_the_one_above() {
        let [d, u] = script_dirs(Path::new("scripts/x.rhai"));
        assert_eq!((d, u), (PathBuf::from("scripts"), PathBuf::from(".")));
        let [d, u] = script_dirs(Path::new("x.rhai"));
        assert_eq!((d, u), (PathBuf::from("."), PathBuf::from("./..")));
        let [d, u] = script_dirs(Path::new("/srv/p/scripts/x.rhai"));
        assert_eq!(
            (d, u),
            (PathBuf::from("/srv/p/scripts"), PathBuf::from("/srv/p"))
        );
    }

    #[test]
    fn flags_beat_the_file() {
        let file: FileConfig =
            toml::from_str("[cloud]\nmodel = \"from-file\"\n[run]\njobs = 3\n").unwrap();
        let flags = Overrides {
            cloud_model: Some("from-flag".into()),
            ..Overrides::default()
        };
        let cfg = Config::resolve(file, None, &flags).unwrap();
        assert_eq!(cfg.cloud.model, "from-flag");
        assert_eq!(cfg.jobs, 3);
    }

    #[test]
    fn a_local_url_means_a_server_back_end() {
        let flags = Overrides {
            local_url: Some("http://127.0.0.1:1/v1".into()),
            ..Overrides::default()
        };
        let cfg = Config::resolve(FileConfig::default(), None, &flags).unwrap();
        assert!(matches!(cfg.local, LocalConfig::Server(_)));
    }
}
