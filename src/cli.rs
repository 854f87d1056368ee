//! The command line: `hybrid run` and `hybrid check`, their flags, and how outcomes map to
//! exit codes (0 all documents ok, 2 some failed, 1 usage or start-up error).

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;
use arc_swap::ArcSwap;
use clap::{Args, Parser, Subcommand};

use crate::bundle::Bundle;
use crate::config::{CloudMode, Config, FileConfig, Overrides};
use crate::documents;
use crate::host::Services;
use crate::models;
use crate::pipeline::{self, Declared};
use crate::runner::{self, RunOptions, DOCUMENT_STACK};

#[derive(Debug, Parser)]
#[command(
    name = "hybrid",
    version,
    about = "Run Rhai pipeline scripts over documents with a local model (Gemma 4, in-process) and a cloud model (GPT-5.4).",
    long_about = "Run Rhai pipeline scripts over documents with a local model (Gemma 4 in-process through mistral.rs) and a cloud model (GPT-5.4 over the OpenAI API).\n\nScripts define `fn process(doc)` and call local(), cloud() and validate(). Results are JSONL on stdout (or --out); logs and errors go to stderr."
)]
pub struct Cli {
    /// More log output (-v: debug, -vv: trace). `HYBRID_LOG` takes a full filter.
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    verbose: u8,
    /// Only errors on stderr.
    #[arg(short, long, global = true)]
    quiet: bool,
    /// Colour in logs: `auto` (when stderr is a terminal and `NO_COLOR` is not set),
    /// `always` or `never`.
    #[arg(
        long,
        global = true,
        value_enum,
        value_name = "WHEN",
        default_value = "auto"
    )]
    color: ColorWhen,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum ColorWhen {
    Auto,
    Always,
    Never,
}

impl ColorWhen {
    fn enabled(self) -> bool {
        match self {
            ColorWhen::Always => true,
            ColorWhen::Never => false,
            ColorWhen::Auto => {
                std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
                    && std::io::IsTerminal::is_terminal(&std::io::stderr())
            }
        }
    }
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Process documents with a pipeline script; one JSONL result record per document.
    Run(RunArgs),
    /// Compile a script and everything it imports, and check the schemas it names.
    Check(CheckArgs),
    /// Summarise result files: calls, tokens, local share, spend, and a cost projection.
    Report(ReportArgs),
    /// Run a pipeline's cases (NAME.cases.jsonl beside it) with the answers they give, no
    /// model: pass/fail for each, exit 1 if any fails.
    Test(TestArgs),
    /// Compare the records of two runs over the same documents: what a rule change did.
    Diff(DiffArgs),
    /// The rules versions in result files: when each was active, its documents and failures.
    Versions {
        /// Result files written by `hybrid run`.
        #[arg(required = true)]
        results: Vec<PathBuf>,
        /// Print them as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Look after the answer cache: `stats`, `prune --older-than 30d`, `clear`.
    Cache(CacheArgs),
    /// Put documents on a fleet's work queue (files, directories, `.jsonl`, `-`), for the
    /// workers running `hybrid run SCRIPT nats://HOST:PORT/STREAM` to take.
    Submit(SubmitArgs),
    /// The fleet's rules: `push` a checked bundle to every worker, list its `history`,
    /// `rollback` to an earlier revision.
    Rules(RulesArgs),
    /// The fleet: `status` lists live workers, the version each runs, and the queue.
    Fleet(FleetArgs),
    /// Serve the review page and the dashboard for a results file (decisions go to
    /// `reviews.jsonl` beside it), or `--export` a fine-tuning file with reviewed targets.
    Review(ReviewArgs),
    /// Print a shell completion script (bash, zsh, fish, elvish, powershell).
    ///
    /// For example: `hybrid completions bash > ~/.local/share/bash-completion/completions/hybrid`,
    /// or `hybrid completions zsh > ~/.zfunc/_hybrid`.
    Completions {
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Write Rhai definition files (`.d.rhai`) for the host functions and `hybrid/*`, for
    /// the Rhai language server: completion and docs for local(), cloud() and the rest.
    Defs {
        /// Folder to write them into (created if missing).
        #[arg(default_value = "defs")]
        dir: PathBuf,
    },
    /// Write the man pages (`hybrid.1` and one per subcommand) into DIR, or print `hybrid.1`.
    Man {
        /// Folder to write the pages into (created if missing), e.g. ~/.local/share/man/man1.
        dir: Option<PathBuf>,
    },
}

/// `--queue`: which fleet.
#[derive(Debug, Args)]
struct QueueArg {
    /// The fleet's queue: nats://HOST:PORT/STREAM.
    #[arg(long, value_name = "URL", env = "HYBRID_QUEUE")]
    queue: String,
    /// Settings file (for `[fleet]`) [default: `hybrid.toml` here].
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
}

/// `--to`: the fleet a push goes to.
#[derive(Debug, Args)]
struct PushTo {
    /// The fleet's queue: nats://HOST:PORT/STREAM.
    #[arg(
        long = "to",
        visible_alias = "queue",
        value_name = "URL",
        env = "HYBRID_QUEUE"
    )]
    queue: String,
    /// Settings file [default: `hybrid.toml` beside the script, in its parent, or here].
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
}

#[derive(Debug, Args)]
struct ReviewArgs {
    /// A results file written by `hybrid run`.
    results: PathBuf,
    /// Where to serve the pages.
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:8470")]
    listen: String,
    /// The token every request must carry (its first line) [default: $HYBRID_TOKEN]. Needed
    /// to listen beyond loopback; a browser opens the page once with `?token=TOKEN`.
    #[arg(long, value_name = "FILE")]
    token_file: Option<PathBuf>,
    /// Folder of JSON Schemas, for the edit form [default: `schemas/` here].
    #[arg(long, value_name = "DIR")]
    schemas: Option<PathBuf>,
    /// Print the fine-tuning examples in FILE (an emitted stream, e.g. finetune_intent.jsonl)
    /// with reviewed values as their targets and rejected ones left out, then exit.
    #[arg(long, value_name = "FILE")]
    export: Option<PathBuf>,
    /// Settings file (for `[currency]` and prices) [default: `hybrid.toml` here].
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
}

#[derive(Debug, Args)]
struct SubmitArgs {
    /// The fleet's queue: nats://HOST:PORT/STREAM.
    queue: String,
    /// Files, directories (their files), `.jsonl` files (a document a line), or `-`.
    #[arg(required = true)]
    inputs: Vec<PathBuf>,
    /// Settings file (for `[fleet]`) [default: `hybrid.toml` here].
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
}

#[derive(Debug, Args)]
struct RulesArgs {
    #[command(subcommand)]
    action: RulesAction,
}

#[derive(Debug, Subcommand)]
enum RulesAction {
    /// Check a pipeline (script, imports, schemas, and its cases when it has them) and
    /// store it as the newest revision of its rules: every worker swaps it in.
    Push {
        /// The pipeline script; its rules are stored under its file name without `.rhai`.
        script: PathBuf,
        #[command(flatten)]
        queue: PushTo,
        /// Folder of JSON Schemas [default: `schemas/` beside the script or its folder].
        #[arg(long, value_name = "DIR")]
        schemas: Option<PathBuf>,
    },
    /// The revisions of a pipeline's rules, oldest first.
    History {
        /// The pipeline: its script's file name without `.rhai`.
        name: String,
        #[command(flatten)]
        queue: QueueArg,
        /// Print them as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Store an earlier revision again as the newest: every worker swaps it in.
    Rollback {
        /// The pipeline: its script's file name without `.rhai`.
        name: String,
        /// The revision to go back to (see `hybrid rules history`).
        #[arg(long = "to", value_name = "REVISION")]
        revision: u64,
        #[command(flatten)]
        queue: QueueArg,
    },
}

#[derive(Debug, Args)]
struct FleetArgs {
    #[command(subcommand)]
    action: FleetAction,
}

#[derive(Debug, Subcommand)]
enum FleetAction {
    /// Live workers (the version and revision each runs, documents done and failed), and
    /// the queue: documents waiting, held, results stored, dead letters.
    Status {
        #[command(flatten)]
        queue: QueueArg,
        /// Print it as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Print the stored result records as JSONL (one per document), oldest first.
    Results {
        #[command(flatten)]
        queue: QueueArg,
        /// The dead letters instead: documents given up, with their last error.
        #[arg(long)]
        dead: bool,
    },
}

#[derive(Debug, Args)]
struct TestArgs {
    /// The pipeline script.
    script: PathBuf,
    /// The cases file [default: NAME.cases.jsonl beside the script].
    #[arg(long, value_name = "FILE")]
    cases: Option<PathBuf>,
    #[command(flatten)]
    common: CommonArgs,
}

#[derive(Debug, Args)]
struct CacheArgs {
    #[command(subcommand)]
    action: CacheAction,
    /// The cache file [default: `.hybrid/cache.db` here].
    #[arg(long, global = true, value_name = "FILE")]
    cache: Option<PathBuf>,
}

#[derive(Debug, Subcommand)]
enum CacheAction {
    /// Entries by function and model, with the oldest and newest.
    Stats,
    /// Drop entries stored longer ago than AGE (`30d`, `12h`, `90m`).
    Prune {
        #[arg(long, value_name = "AGE")]
        older_than: String,
    },
    /// Drop every entry.
    Clear,
}

#[derive(Debug, Args)]
struct DiffArgs {
    /// Records of the earlier run (JSONL written by `hybrid run`).
    old: PathBuf,
    /// Records of the later run over the same documents.
    new: PathBuf,
    /// Print the comparison as JSON.
    #[arg(long, conflicts_with = "ids")]
    json: bool,
    /// Print only the ids of the documents whose outcome changed, one per line.
    #[arg(long)]
    ids: bool,
    /// Documents per day for the projected monthly spend.
    #[arg(long, value_name = "DOCS_PER_DAY", default_value_t = 1000.0)]
    volume: f64,
    /// Settings file with `[prices]` [default: `hybrid.toml` beside the records, in their
    /// parent folder, or here].
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
}

#[derive(Debug, Args)]
struct ReportArgs {
    /// Result files written by `hybrid run` (JSONL).
    #[arg(required = true)]
    results: Vec<PathBuf>,
    /// Print the report as JSON.
    #[arg(long)]
    json: bool,
    /// Documents per day for the projection.
    #[arg(long, value_name = "DOCS_PER_DAY", default_value_t = 1000.0)]
    volume: f64,
    /// Also draw monthly spend against volume (cloud only vs hybrid) as an SVG file.
    #[arg(long, value_name = "FILE.svg")]
    chart: Option<PathBuf>,
    /// Settings file with `[prices]`, `[local_cost]` and `[currency]` [default: `hybrid.toml`
    /// beside the results, in their parent folder, or here].
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
}

/// `--cloud`: send calls, or only guard, audit and estimate them.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
enum CloudArg {
    Live,
    DryRun,
}

#[derive(Debug, Args)]
struct RunArgs {
    /// The pipeline script (`.rhai`), which defines `fn process(doc)`.
    script: PathBuf,
    /// Files, directories (their files), `.jsonl` files (one document a line), or `-` for
    /// JSONL on stdin [default: the pipeline's `inputs` in hybrid.toml; else stdin when it
    /// is not a terminal].
    inputs: Vec<PathBuf>,
    /// Write result records to FILE (`-`: stdout) [default: the pipeline's `out`, else
    /// stdout]. An existing FILE with records needs --resume or --overwrite.
    #[arg(short, long, value_name = "FILE")]
    out: Option<PathBuf>,
    /// Keep the records already in --out and process only the documents without a
    /// successful one (a killed run picks up where it stopped, paying nothing twice).
    #[arg(long, conflicts_with = "overwrite")]
    resume: bool,
    /// With --resume: skip documents whose earlier record failed too, instead of retrying them.
    #[arg(long, requires = "resume")]
    skip_failed: bool,
    /// Replace an existing --out file.
    #[arg(long)]
    overwrite: bool,
    /// Documents in flight at once [default: 4 × cores, at most 32; or `[run] jobs`].
    #[arg(short, long, value_name = "N")]
    jobs: Option<usize>,
    /// Refuse documents larger than this many bytes (an error record each).
    #[arg(long, value_name = "BYTES", default_value_t = documents::DEFAULT_MAX_BYTES)]
    max_doc_bytes: u64,
    /// No progress line on stderr.
    #[arg(long)]
    no_progress: bool,
    /// Keep running: reload the rules (script, imports, schemas) when they change, and treat
    /// directory INPUTs as inboxes, processing each new file once it is complete. Needs --out
    /// when watching an inbox. Ctrl-C finishes the documents in flight and exits.
    #[arg(long)]
    watch: bool,
    /// With --watch: move each processed inbox file into `done/` or `failed/` inside its inbox.
    #[arg(long)]
    move_done: bool,
    /// With --watch: how long an inbox file must stay unchanged before it is read.
    #[arg(long, value_name = "MS", default_value_t = 500)]
    settle_ms: u64,
    /// `dry-run`: send nothing to the cloud; the egress guard and the audit log still run,
    /// token counts and costs are estimated, and cloud() answers with marked placeholders
    /// [default: the pipeline's `cloud`, else live].
    #[arg(long, value_enum, value_name = "MODE")]
    cloud: Option<CloudArg>,
    /// Audit log of every cloud payload [default: the pipeline's `audit`, else `[audit]
    /// path`, else beside --out as NAME.audit.jsonl, else ./hybrid-audit.jsonl].
    #[arg(long, value_name = "FILE")]
    audit: Option<PathBuf>,
    /// Answer every model call from the answer cache and call no model: a what-if run of
    /// changed rules over traffic already answered. A call the cache lacks is estimated as in
    /// `--cloud dry-run` (placeholders marked `[replay-miss]`) and counted.
    #[arg(long)]
    replay: bool,
    /// The answer cache: a file, or `off` [default: `[cache] path`, else
    /// `.hybrid/cache.db` in the folder of --out, else here].
    #[arg(long, value_name = "FILE|off")]
    cache: Option<PathBuf>,
    /// Where `emit(stream, value)` appends `STREAM.jsonl` [default: the pipeline's
    /// `emit_dir`, else the folder of --out, else the current one].
    #[arg(long, value_name = "DIR")]
    emit_dir: Option<PathBuf>,
    /// Serve the console (/metrics, /healthz, /readyz) on ADDR, e.g. 127.0.0.1:9464
    /// [default: `[serve] listen`; none].
    #[arg(long, value_name = "ADDR")]
    listen: Option<String>,
    /// The token every console request must carry (`Authorization: Bearer ...`): the first
    /// line of FILE [default: `[serve] token_file`, else $HYBRID_TOKEN]. Needed to listen
    /// beyond loopback.
    #[arg(long, value_name = "FILE")]
    token_file: Option<PathBuf>,
    #[command(flatten)]
    common: CommonArgs,
}

#[derive(Debug, Args)]
struct CheckArgs {
    /// The pipeline script to check.
    script: PathBuf,
    #[command(flatten)]
    common: CommonArgs,
}

#[derive(Debug, Default, Args)]
struct CommonArgs {
    /// Settings file [default: `hybrid.toml` beside the script, in its parent, or here].
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Folder of JSON Schemas [default: `schemas/` beside the script or its folder].
    #[arg(long, value_name = "DIR")]
    schemas: Option<PathBuf>,
    /// Cloud endpoint, e.g. http://127.0.0.1:8080/v1 [env: OPENAI_BASE_URL; default: OpenAI].
    #[arg(long, value_name = "URL")]
    cloud_url: Option<String>,
    /// Cloud model [env: HYBRID_CLOUD_MODEL; default: gpt-5.4].
    #[arg(long, value_name = "MODEL")]
    cloud_model: Option<String>,
    /// Local model: a Gemma 4 id, a local directory, or `tiny` (built-in random weights for
    /// checking wiring) [env: HYBRID_LOCAL_MODEL; default: google/gemma-4-E4B-it].
    #[arg(long, value_name = "MODEL")]
    local_model: Option<String>,
    /// Serve local() from an OpenAI-compatible server (Ollama, vLLM, `mistralrs serve`)
    /// at URL instead of in-process.
    #[arg(long, value_name = "URL")]
    local_url: Option<String>,
    /// Local back end: `mistralrs` (in-process) or `openai` (a server; see --local-url).
    #[arg(long, value_name = "BACKEND")]
    local_backend: Option<String>,
    /// In-situ quantization of the local model, e.g. `q4k` or `q8_0` (CPU boxes).
    #[arg(long, value_name = "TYPE")]
    isq: Option<String>,
    /// Device for the local model: `cpu`, `cuda`, `cuda:N` or `auto`.
    #[arg(long, value_name = "DEVICE")]
    device: Option<String>,
    /// Per-request timeout in seconds for model servers.
    #[arg(long, value_name = "SECS")]
    timeout: Option<f64>,
    /// Retries for transient model-server failures (429, 5xx, connection errors).
    #[arg(long, value_name = "N")]
    max_retries: Option<u32>,
}

impl CommonArgs {
    /// The merged settings for `script`, and the pipeline table it declares, if any.
    fn config(
        &self,
        script: &std::path::Path,
        run: Option<&RunArgs>,
    ) -> anyhow::Result<(Config, Option<Declared>)> {
        let path = self.config.clone().or_else(|| FileConfig::discover(script));
        let file = match &path {
            Some(p) => FileConfig::load(p)?,
            None => FileConfig::default(),
        };
        let declared = crate::pipeline::declared(&file.pipelines, script, path.as_deref())?;
        let flags = Overrides {
            cloud_url: self.cloud_url.clone(),
            cloud_model: self.cloud_model.clone(),
            local_backend: self.local_backend.clone(),
            local_model: self.local_model.clone(),
            local_url: self.local_url.clone(),
            isq: self.isq.clone(),
            device: self.device.clone(),
            timeout_secs: self.timeout,
            max_retries: self.max_retries,
            jobs: run.and_then(|r| r.jobs),
            schemas: self.schemas.clone(),
            cloud_mode: run.and_then(|r| r.cloud).map(|c| match c {
                CloudArg::Live => CloudMode::Live,
                CloudArg::DryRun => CloudMode::DryRun,
            }),
            audit: run.and_then(|r| r.audit.clone()),
        };
        if let Some(p) = &path {
            tracing::debug!(config = %p.display(), "settings file");
        }
        let config = Config::resolve_for(file, path, &flags, declared.as_ref())?;
        Ok((config, declared))
    }
}

/// `-q`: no summary line either.
static QUIET: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Parses the command line, runs the command, and returns the exit code.
pub fn main() -> ExitCode {
    // The PDF extractor child (`extract`): an internal entry point, kept out of the command
    // line's contract (help, completions, man pages).
    if std::env::args_os()
        .nth(1)
        .is_some_and(|a| a == crate::extract::CHILD_ARG)
    {
        return crate::extract::extract_pdf_child();
    }
    // A usage error exits 1, as documented: 2 means "some documents failed", and a shell
    // script that retries on 2 must never retry a typo. `--help` and `--version` exit 0.
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(err) => {
            let _ = err.print();
            return if err.use_stderr() {
                ExitCode::from(1)
            } else {
                ExitCode::SUCCESS
            };
        }
    };
    init_logging(cli.verbose, cli.quiet, cli.color.enabled());
    QUIET.store(cli.quiet, std::sync::atomic::Ordering::Relaxed);
    quiet_panics();
    match dispatch(cli) {
        Ok(code) => code,
        Err(err) => {
            eprintln!("error: {}", message(&err));
            ExitCode::from(1)
        }
    }
}

/// A panic caught on a document's thread (a library failing on one hostile file) is that
/// document's error record; the log gets one line for it, not a backtrace per document (a
/// 1,900-file batch once wrote 1.4 MB of them). `HYBRID_BACKTRACE=1` brings the backtrace.
fn quiet_panics() {
    let backtrace = std::env::var("HYBRID_BACKTRACE").is_ok_and(|v| v == "1");
    std::panic::set_hook(Box::new(move |info| {
        let message = info
            .payload()
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| info.payload().downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "(no message)".into());
        let at = info
            .location()
            .map(|l| format!("{}:{}", l.file(), l.line()))
            .unwrap_or_default();
        // Plain stderr: a panic can come while a thread's locals are being torn down, where
        // the logger's thread-local state (or the thread's name) is gone. One such panic is
        // known and harmless: at trace level, a document thread's runtime, dropped with the
        // thread, logs as it closes its connections after the logger's buffer is gone; tokio
        // catches it. It is not worth a line.
        if message.contains("during or after destruction") {
            return;
        }
        let first = message.lines().next().unwrap_or("");
        eprintln!("hybrid: panic at {at}: {first} (HYBRID_BACKTRACE=1 shows where it came from)");
        if backtrace {
            eprintln!("{}", std::backtrace::Backtrace::force_capture());
        }
    }));
}

/// An error and its causes, each said once: many errors already quote their cause (`cannot
/// read `x`: No such file`), and repeating it after them says nothing new.
fn message(err: &anyhow::Error) -> String {
    let mut text = String::new();
    for cause in err.chain() {
        let said = cause.to_string();
        if text.contains(said.lines().next().unwrap_or(&said)) {
            continue;
        }
        if !text.is_empty() {
            text.push_str(": ");
        }
        text.push_str(&said);
    }
    text
}

fn dispatch(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Check(args) => check(args),
        Command::Run(args) => run(args),
        Command::Report(args) => report(args),
        Command::Cache(args) => cache_command(args),
        Command::Versions { results, json } => {
            let rows = crate::report::versions(&results)?;
            if json {
                println!("{}", serde_json::to_string_pretty(&rows)?);
            } else {
                println!(
                    "{:<14} {:<24} {:<24} {:>9} {:>7}",
                    "version", "first", "last", "documents", "failed"
                );
                for r in &rows {
                    println!(
                        "{:<14} {:<24} {:<24} {:>9} {:>7}",
                        r.version, r.first, r.last, r.documents, r.failed
                    );
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Test(args) => test_command(args),
        Command::Submit(args) => submit(args),
        Command::Rules(args) => rules_command(args),
        Command::Fleet(args) => fleet_command(args),
        Command::Review(args) => review_command(args),
        Command::Diff(args) => {
            let path = args
                .config
                .clone()
                .or_else(|| FileConfig::discover(&args.new));
            let file = match &path {
                Some(p) => FileConfig::load(p)?,
                None => FileConfig::default(),
            };
            let config = Config::resolve(file, path, &Overrides::default())?;
            let d = crate::diff::diff(&args.old, &args.new, &config.pricing, args.volume)?;
            if args.json {
                println!("{}", serde_json::to_string_pretty(&d)?);
            } else if args.ids {
                for c in &d.changed {
                    println!("{}", c.id);
                }
            } else {
                print!("{}", crate::diff::render_text(&d, &args.old, &args.new));
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Completions { shell } => {
            use clap::CommandFactory;
            let mut command = Cli::command();
            clap_complete::generate(shell, &mut command, "hybrid", &mut std::io::stdout());
            Ok(ExitCode::SUCCESS)
        }
        Command::Man { dir } => man(dir),
        Command::Defs { dir } => {
            let written = crate::defs::write(&dir)?;
            if !QUIET.load(std::sync::atomic::Ordering::Relaxed) {
                eprintln!(
                    "{} definition files written to {} (see the README's \"Editor support\")",
                    written.len(),
                    dir.display()
                );
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// `[fleet]` from `--config`, else `hybrid.toml` here when there is one.
fn fleet_settings(config: Option<&std::path::Path>) -> anyhow::Result<crate::fleet::FleetFile> {
    let path = config
        .map(std::path::Path::to_owned)
        .or_else(|| Some(PathBuf::from("hybrid.toml")).filter(|p| p.is_file()));
    Ok(match path {
        Some(p) => FileConfig::load(&p)?.fleet,
        None => Default::default(),
    })
}

/// A small runtime and a connection to the fleet, for the commands that talk to it.
fn fleet_connect(
    queue: &str,
    settings: crate::fleet::FleetFile,
) -> anyhow::Result<(tokio::runtime::Runtime, crate::fleet::Fleet)> {
    let address = crate::fleet::Address::parse(queue)?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    let fleet = runtime.block_on(crate::fleet::Fleet::connect(&address, &settings))?;
    Ok((runtime, fleet))
}

fn submit(args: SubmitArgs) -> anyhow::Result<ExitCode> {
    let (runtime, fleet) = fleet_connect(&args.queue, fleet_settings(args.config.as_deref())?)?;
    let done = runtime.block_on(crate::fleet::queue::submit(&fleet, &args.inputs))?;
    if !QUIET.load(std::sync::atomic::Ordering::Relaxed) {
        eprintln!(
            "hybrid: {} documents queued on {}; {} already queued (same id); {} not queued",
            done.queued, fleet.address, done.duplicates, done.failed
        );
    }
    Ok(if done.failed > 0 {
        ExitCode::from(2)
    } else {
        ExitCode::SUCCESS
    })
}

fn rules_command(args: RulesArgs) -> anyhow::Result<ExitCode> {
    use crate::fleet::rules;
    match args.action {
        RulesAction::Push {
            script,
            queue,
            schemas,
        } => {
            let path = queue
                .config
                .clone()
                .or_else(|| FileConfig::discover(&script));
            let file = match &path {
                Some(p) => FileConfig::load(p)?,
                None => FileConfig::default(),
            };
            let settings = file.fleet.clone();
            let config = Config::resolve(file, path, &Overrides::default())?;
            let schemas = schemas.or(config.schemas.clone());
            // Everything `hybrid check` checks, then the pipeline's cases where it has them.
            let bundle = Bundle::build(&script, schemas.as_deref(), &config.limits)?;
            if crate::cases::cases_path(&script).is_file() {
                let common = CommonArgs {
                    config: queue.config.clone(),
                    schemas: schemas.clone(),
                    ..Default::default()
                };
                let tested = test_command(TestArgs {
                    script: script.clone(),
                    cases: None,
                    common,
                })?;
                if tested != ExitCode::SUCCESS {
                    anyhow::bail!("not pushed: the pipeline's cases fail (above); the fleet keeps its rules\nhint: fix the rules or the cases, then push again");
                }
            }
            let key = crate::fleet::pipeline_key(&script);
            let pushed = rules::Pushed::of(&bundle, &script, schemas.as_deref())?;
            let (runtime, fleet) = fleet_connect(&queue.queue, settings)?;
            let revision = runtime.block_on(rules::push(&fleet, &key, &pushed))?;
            println!(
                "pushed {key} {} as revision {revision} to {}",
                pushed.version, fleet.address
            );
            Ok(ExitCode::SUCCESS)
        }
        RulesAction::History { name, queue, json } => {
            let (runtime, fleet) =
                fleet_connect(&queue.queue, fleet_settings(queue.config.as_deref())?)?;
            let revisions = runtime.block_on(rules::history(&fleet, &name))?;
            if json {
                println!("{}", serde_json::to_string_pretty(&revisions)?);
            } else {
                println!("{:>8}  {:<14} {:<24} by", "revision", "version", "pushed");
                for r in &revisions {
                    let note = r
                        .rollback_of
                        .map(|o| format!("  (rollback to revision {o})"))
                        .unwrap_or_default();
                    println!(
                        "{:>8}  {:<14} {:<24} {}{note}",
                        r.revision, r.version, r.pushed_at, r.pushed_by
                    );
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        RulesAction::Rollback {
            name,
            revision,
            queue,
        } => {
            let (runtime, fleet) =
                fleet_connect(&queue.queue, fleet_settings(queue.config.as_deref())?)?;
            let (stored, version) = runtime.block_on(rules::rollback(&fleet, &name, revision))?;
            println!("{name} rolled back to revision {revision} ({version}), stored as revision {stored}");
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn fleet_command(args: FleetArgs) -> anyhow::Result<ExitCode> {
    match args.action {
        FleetAction::Status { queue, json } => {
            let (runtime, fleet) =
                fleet_connect(&queue.queue, fleet_settings(queue.config.as_deref())?)?;
            let status = runtime.block_on(crate::fleet::status::status(&fleet))?;
            if json {
                println!("{}", serde_json::to_string_pretty(&status)?);
            } else {
                print!("{}", crate::fleet::status::render(&status));
            }
            Ok(ExitCode::SUCCESS)
        }
        FleetAction::Results { queue, dead } => {
            use std::io::Write;
            let (runtime, fleet) =
                fleet_connect(&queue.queue, fleet_settings(queue.config.as_deref())?)?;
            let mut stdout = std::io::stdout().lock();
            let mut failed = None;
            runtime.block_on(crate::fleet::status::stored(&fleet, dead, |m| {
                let line = if dead {
                    crate::fleet::status::dead_letter_json(&m)
                        .to_string()
                        .into_bytes()
                } else {
                    m.payload.to_vec()
                };
                if failed.is_none() {
                    if let Err(e) = stdout
                        .write_all(&line)
                        .and_then(|_| stdout.write_all(b"\n"))
                    {
                        failed = Some(e);
                    }
                }
            }))?;
            match failed {
                Some(e) if e.kind() != std::io::ErrorKind::BrokenPipe => Err(e.into()),
                _ => Ok(ExitCode::SUCCESS),
            }
        }
    }
}

fn review_command(args: ReviewArgs) -> anyhow::Result<ExitCode> {
    if !args.results.is_file() {
        anyhow::bail!(
            "no results file `{}`\nhint: pass the --out FILE of a `hybrid run`",
            args.results.display()
        );
    }
    let queue = crate::console::review::Queue::beside(&args.results, args.schemas.clone());
    if let Some(examples) = &args.export {
        let mut stdout = std::io::stdout().lock();
        let (written, reviewed, left_out) =
            crate::console::review::export(&queue, examples, &mut stdout)?;
        if !QUIET.load(std::sync::atomic::Ordering::Relaxed) {
            eprintln!("hybrid: {written} examples, {reviewed} with reviewed targets; {left_out} rejected and left out");
        }
        return Ok(ExitCode::SUCCESS);
    }
    let path = args
        .config
        .clone()
        .or_else(|| Some(PathBuf::from("hybrid.toml")).filter(|p| p.is_file()));
    let file = match &path {
        Some(p) => FileConfig::load(p)?,
        None => FileConfig::default(),
    };
    let config = Config::resolve(file, path, &Overrides::default())?;
    let token = crate::console::token(args.token_file.as_deref())?;
    let host = crate::console::Host {
        rules: None,
        local: None,
        review: Some(queue),
        pricing: config.pricing.clone(),
    };
    let bound = crate::console::serve(&args.listen, token, Arc::new(host))?;
    if !QUIET.load(std::sync::atomic::Ordering::Relaxed) {
        eprintln!("hybrid: review at http://{bound}/review, dashboard at http://{bound}/dashboard; Ctrl-C to stop");
    }
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(wait_for_signal());
    Ok(ExitCode::SUCCESS)
}

/// With `--watch`, a new version must pass the pipeline's cases (NAME.cases.jsonl, read at
/// each reload so edits to them count) before it is swapped in.
fn cases_gate(script: &std::path::Path, services: Arc<Services>) -> Option<crate::watch::Gate> {
    let path = crate::cases::cases_path(script);
    if !path.is_file() {
        return None;
    }
    tracing::info!(cases = %path.display(), "new rule versions must pass these cases before they run");
    Some(Arc::new(move |bundle: &Bundle| {
        let cases = crate::cases::read(&path).map_err(|e| e.to_string())?;
        let failed: Vec<String> = crate::cases::run(bundle, &services, cases)
            .into_iter()
            .filter_map(|o| {
                o.failure
                    .map(|why| format!("{}:{}: {}: {why}", path.display(), o.line, o.name))
            })
            .collect();
        if failed.is_empty() {
            Ok(())
        } else {
            Err(failed.join("\n"))
        }
    }))
}

fn test_command(args: TestArgs) -> anyhow::Result<ExitCode> {
    let (config, _) = args.common.config(&args.script, None)?;
    let (policy, _) = config
        .guard
        .for_script(&args.script, config.source.as_deref())?;
    let guard = crate::guard::Guard::new(&policy)?;
    let bundle = Bundle::build(&args.script, config.schemas.as_deref(), &config.limits)?;
    let path = args
        .cases
        .clone()
        .unwrap_or_else(|| crate::cases::cases_path(&args.script));
    let cases = crate::cases::read(&path)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .worker_threads(1)
        .build()
        .context("cannot start the async runtime")?;
    let template = Services {
        local: models::local_backend(&config)?,
        cloud: models::cloud_backend(&config)?,
        runtime: runtime.handle().clone(),
        guard,
        audit: None,
        pricing: config.pricing.clone(),
        cloud_endpoint: crate::audit::endpoint_host(&config.cloud.base_url),
        streams: crate::host::emit::Streams::new(std::env::temp_dir()),
        spend: None,
        pipeline: args.script.display().to_string(),
        cache: None,
        replay: false,
    };
    // Documents run on a thread of their own, as in a run (deep values need the stack).
    let outcomes = std::thread::Builder::new()
        .stack_size(DOCUMENT_STACK)
        .spawn(move || crate::cases::run(&bundle, &template, cases))
        .context("cannot start the case runner")?
        .join()
        .map_err(|_| anyhow::anyhow!("the case runner panicked; please report it"))?;
    let failed = outcomes.iter().filter(|o| o.failure.is_some()).count();
    for o in &outcomes {
        match &o.failure {
            None => println!("PASS {} ({}:{})", o.name, path.display(), o.line),
            Some(why) => println!(
                "FAIL {} ({}:{})\n     {why}",
                o.name,
                path.display(),
                o.line
            ),
        }
    }
    println!(
        "{} cases: {} passed, {failed} failed",
        outcomes.len(),
        outcomes.len() - failed
    );
    Ok(if failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

fn cache_command(args: CacheArgs) -> anyhow::Result<ExitCode> {
    use crate::cache::{AnswerCache, Mode};
    let path = args
        .cache
        .unwrap_or_else(|| crate::cache::default_path(std::path::Path::new(".")));
    if !path.exists() {
        anyhow::bail!(
            "no answer cache at `{}`\nhint: runs keep one at .hybrid/cache.db beside their --out; pass --cache FILE",
            path.display()
        );
    }
    let cache = AnswerCache::open(&path, Mode::ReadWrite, Mode::ReadWrite)?;
    match args.action {
        CacheAction::Stats => {
            let rows = cache.stats()?;
            let when = |t: i64| {
                chrono::DateTime::from_timestamp(t, 0)
                    .map(|d| d.format("%Y-%m-%d %H:%M").to_string())
                    .unwrap_or_default()
            };
            println!("answer cache {}", path.display());
            println!(
                "  {:<8} {:<28} {:>9}  {:<16}  {:<16}",
                "function", "model", "answers", "oldest (UTC)", "newest (UTC)"
            );
            for (function, model, n, oldest, newest) in &rows {
                println!(
                    "  {function:<8} {model:<28} {n:>9}  {:<16}  {:<16}",
                    when(*oldest),
                    when(*newest)
                );
            }
            let total: i64 = rows.iter().map(|r| r.2).sum();
            let bytes = std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
            println!("  {total} answers, {:.1} MB", bytes as f64 / 1e6);
        }
        CacheAction::Prune { older_than } => {
            let age = crate::cache::parse_age(&older_than).ok_or_else(|| {
                anyhow::anyhow!(
                    "`{older_than}` is not an age\nhint: write it like 30d, 12h, 90m or 3600s"
                )
            })?;
            println!("{} answers dropped", cache.prune(Some(age))?);
        }
        CacheAction::Clear => println!("{} answers dropped", cache.prune(None)?),
    }
    Ok(ExitCode::SUCCESS)
}

/// The answer cache a run uses: `--cache FILE|off`, else `[cache]`, else beside the output.
fn open_cache(
    flag: Option<&std::path::Path>,
    config: &Config,
    out: Option<&std::path::Path>,
    replay: bool,
) -> anyhow::Result<Option<Arc<crate::cache::AnswerCache>>> {
    use crate::cache::{AnswerCache, Mode};
    if flag.is_some_and(|f| f == std::path::Path::new("off")) {
        if replay {
            anyhow::bail!("--replay answers from the answer cache, so it cannot run with --cache off\nhint: pass --cache FILE to replay from another cache");
        }
        return Ok(None);
    }
    let (mut local, mut cloud) = (
        Mode::parse("local", config.cache.local.as_deref())?,
        Mode::parse("cloud", config.cache.cloud.as_deref())?,
    );
    if replay {
        // A replay reads whatever the modes say, and writes nothing.
        (local, cloud) = (Mode::Read, Mode::Read);
    }
    if local == Mode::Off && cloud == Mode::Off {
        return Ok(None);
    }
    let path = match (flag, &config.cache.path) {
        (Some(f), _) => f.to_owned(),
        (None, Some(p)) => p.clone(),
        (None, None) => crate::cache::default_path(&pipeline::output_dir(out)),
    };
    match AnswerCache::open(&path, local, cloud) {
        Ok(cache) => {
            tracing::debug!(cache = %path.display(), "answer cache");
            Ok(Some(Arc::new(cache)))
        }
        // A replay has nothing to answer from without it.
        Err(e) if replay => Err(e.into()),
        // The cache saves money; it must not stop the work: run without it, loudly.
        Err(e) => {
            tracing::warn!(
                "{e}\nrunning without the answer cache: every call is made and paid for"
            );
            Ok(None)
        }
    }
}

fn man(dir: Option<PathBuf>) -> anyhow::Result<ExitCode> {
    use clap::CommandFactory;
    let command = Cli::command();
    match dir {
        Some(dir) => {
            std::fs::create_dir_all(&dir)
                .with_context(|| format!("cannot create `{}`", dir.display()))?;
            clap_mangen::generate_to(command, &dir)
                .with_context(|| format!("cannot write the man pages into `{}`", dir.display()))?;
            if !QUIET.load(std::sync::atomic::Ordering::Relaxed) {
                eprintln!(
                    "man pages written to {} (try `man -l {}`)",
                    dir.display(),
                    dir.join("hybrid.1").display()
                );
            }
        }
        None => clap_mangen::Man::new(command)
            .render(&mut std::io::stdout())
            .context("cannot write the man page")?,
    }
    Ok(ExitCode::SUCCESS)
}

fn check(args: CheckArgs) -> anyhow::Result<ExitCode> {
    let (config, declared) = args.common.config(&args.script, None)?;
    let (policy, _) = config
        .guard
        .for_script(&args.script, config.source.as_deref())?;
    crate::guard::Guard::new(&policy)?;
    crate::spend::validate(&config.budget, &args.script, config.source.as_deref())?;
    crate::cache::Mode::parse("local", config.cache.local.as_deref())?;
    crate::cache::Mode::parse("cloud", config.cache.cloud.as_deref())?;
    let bundle = Bundle::build(&args.script, config.schemas.as_deref(), &config.limits)?;
    let schemas: Vec<&str> = bundle.schemas.names().collect();
    println!(
        "{}: ok ({}; {} file{}; schemas: {})",
        args.script.display(),
        bundle.version,
        bundle.files.len(),
        if bundle.files.len() == 1 { "" } else { "s" },
        if schemas.is_empty() {
            "none".to_owned()
        } else {
            schemas.join(", ")
        }
    );
    // What `hybrid run SCRIPT` would use, and where each value comes from. Without declared
    // inputs a run reads stdin (or asks for INPUT); `check` itself never reads stdin.
    let run = pipeline::run_settings(
        &args.script,
        pipeline::RunFlags::default(),
        declared.as_ref(),
        config.source.as_deref(),
        false,
    )?;
    let audit = effective_audit(&config, run.out.as_deref());
    let mut shown = vec![pipeline::Shown {
        name: "settings",
        value: config
            .source
            .as_ref()
            .map_or_else(|| "(none)".into(), |p| p.display().to_string()),
        origin: match (&args.common.config, &config.source) {
            (Some(_), _) => pipeline::Origin::Flag("--config"),
            (None, Some(_)) => {
                pipeline::Origin::Default("found beside the script, above it, or here")
            }
            (None, None) => pipeline::Origin::Default("no hybrid.toml found"),
        },
    }];
    shown.extend(run.shown.iter().cloned());
    shown.push(audit.clone());
    shown.extend(config.shown.iter().cloned().map(|mut s| {
        // The folder the schemas were actually found in, not just "found".
        if s.name == "schemas" {
            if let Some(dir) =
                crate::schemas::schemas_dir_for(&args.script, config.schemas.as_deref())
            {
                s.value = dir.display().to_string();
            }
        }
        s
    }));
    let problems = pipeline::check_paths(&run, std::path::Path::new(&audit.value), &shown);
    println!("run settings:");
    let width = shown.iter().map(|s| s.name.len()).max().unwrap_or(0);
    let value_width = shown
        .iter()
        .map(|s| s.value.chars().count())
        .max()
        .unwrap_or(0)
        .min(48);
    for s in &shown {
        println!(
            "  {:width$}  {:value_width$}  ({})",
            s.name, s.value, s.origin
        );
    }
    if let Some(first) = problems.into_iter().next() {
        return Err(first.into());
    }
    Ok(ExitCode::SUCCESS)
}

/// The audit log a run writes, and why there.
fn effective_audit(config: &Config, out: Option<&std::path::Path>) -> pipeline::Shown {
    let (path, origin) = match &config.audit_path {
        Some(p) => (p.clone(), config.audit_origin.clone()),
        None => (
            default_audit_path(out),
            pipeline::Origin::Default(if out.is_some() {
                "beside out"
            } else {
                "the current folder"
            }),
        ),
    };
    pipeline::Shown {
        name: "audit",
        value: path.display().to_string(),
        origin,
    }
}

fn run(args: RunArgs) -> anyhow::Result<ExitCode> {
    let (config, declared) = args.common.config(&args.script, Some(&args))?;
    let settings = pipeline::run_settings(
        &args.script,
        pipeline::RunFlags {
            inputs: args.inputs.clone(),
            out: args.out.clone(),
            emit_dir: args.emit_dir.clone(),
            watch: args.watch,
            move_done: args.move_done,
        },
        declared.as_ref(),
        config.source.as_deref(),
        pipeline::stdin_is_terminal(),
    )?;
    for s in &settings.shown {
        tracing::debug!(setting = s.name, value = %s.value, origin = %s.origin, "run setting");
    }
    // `nats://HOST:PORT/STREAM`: this host is a worker of that fleet (see `fleet`).
    let (queues, file_inputs): (Vec<PathBuf>, Vec<PathBuf>) = settings
        .inputs
        .iter()
        .cloned()
        .partition(|p| p.to_str().is_some_and(crate::fleet::is_address));
    let queue = match queues.as_slice() {
        [] => None,
        [one] => Some(crate::fleet::Address::parse(&one.to_string_lossy())?),
        _ => anyhow::bail!(
            "a worker takes documents from one queue\nhint: run one `hybrid run` per queue"
        ),
    };
    if let (Some(q), false) = (&queue, file_inputs.is_empty()) {
        anyhow::bail!("a worker takes documents from its queue only, not from files too\nhint: put the files on the queue with `hybrid submit {q} FILES...`");
    }
    // A worker, like a watching host, runs until stopped and appends to its results.
    let long_running = settings.watch || queue.is_some();
    if settings.out.is_none() {
        // `--overwrite` of stdout is harmless; resuming needs the earlier records.
        for (flag, given) in [("--resume", args.resume)] {
            if given {
                anyhow::bail!("{flag} needs a results file\nhint: pass --out FILE, or declare `out` in the pipeline's [pipelines.\"...\"] table in hybrid.toml");
            }
        }
    }
    let (policy, applied) = config
        .guard
        .for_script(&args.script, config.source.as_deref())?;
    let guard = crate::guard::Guard::new(&policy)?;
    match &applied {
        Some(key) => {
            tracing::info!(policy = %format!("[guard.scripts.\"{key}\"]"), settings = %config.source.as_deref().unwrap_or(std::path::Path::new("-")).display(), "egress policy for this pipeline")
        }
        None => tracing::info!(policy = "[guard]", "egress policy"),
    }
    crate::images::set_limits(crate::images::Limits {
        max_pages: config.limits.max_pages,
        max_image_pixels: config.limits.max_image_pixels,
    });
    if let Ok(exe) = std::env::current_exe() {
        crate::extract::isolate_pdfs(crate::extract::Isolation {
            exe,
            memory: config.limits.pdf_memory,
            timeout: std::time::Duration::from_secs(config.limits.pdf_seconds),
        });
    }
    let mut spec = crate::watch::BuildSpec {
        script: args.script.clone(),
        schemas: config.schemas.clone(),
        limits: config.limits.clone(),
        gate: None,
        probation: None,
    };
    let bundle = spec.build()?;

    // With --watch, directories are inboxes; everything else is read once, up front.
    let (inbox_dirs, batch): (Vec<PathBuf>, Vec<PathBuf>) = if settings.watch {
        file_inputs.iter().cloned().partition(|p| p.is_dir())
    } else {
        (Vec::new(), file_inputs.clone())
    };
    let sources = documents::sources(&batch)?;
    if !inbox_dirs.is_empty() && settings.out.is_none() {
        anyhow::bail!("watching an inbox needs --out FILE\nhint: results are appended to FILE, and FILE.state.jsonl beside it remembers which files are done, so a restart neither loses nor repeats work");
    }
    // One host per inbox: the lock is taken before anything is written.
    let inboxes = match (&settings.out, inbox_dirs.is_empty()) {
        (Some(out), false) => {
            let state = crate::inbox::StateFile::open(&crate::inbox::state_path_for(out))?;
            let after = if settings.move_done {
                crate::inbox::AfterDone::Move
            } else {
                crate::inbox::AfterDone::Leave
            };
            let settle = std::time::Duration::from_millis(args.settle_ms);
            Some(crate::inbox::Inboxes::new(
                inbox_dirs.clone(),
                state,
                after,
                settle,
                args.max_doc_bytes,
                out,
            )?)
        }
        _ => None,
    };
    // A watching host appends (a restart adds to the results); a batch never truncates an
    // existing results file unless told to.
    let existing = if args.overwrite {
        crate::sink::Existing::Overwrite
    } else if args.resume || long_running {
        crate::sink::Existing::Append
    } else {
        crate::sink::Existing::Refuse
    };
    let (mut out, done) = match &settings.out {
        Some(path) => crate::sink::Sink::open(path, existing)?,
        None => (crate::sink::Sink::stdout(), Default::default()),
    };
    // A document that already has a record is not run again: with --resume (failed ones
    // too with --skip-failed), and always when watching, so a crash between writing a record
    // and marking its inbox file done repeats nothing.
    let resume = runner::Resume {
        done: if args.resume || settings.watch {
            done
        } else {
            Default::default()
        },
        skip_failed: args.skip_failed || settings.watch,
    };
    if !resume.done.is_empty() {
        tracing::info!(
            records = resume.done.len(),
            "resuming: documents with a record are skipped"
        );
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .max_blocking_threads(config.jobs + 16)
        .thread_stack_size(DOCUMENT_STACK)
        .build()
        .context("cannot start the async runtime")?;
    tracing::info!(script = %args.script.display(), version = %bundle.version, jobs = config.jobs, "rules loaded");
    let audit_path = PathBuf::from(effective_audit(&config, settings.out.as_deref()).value);
    let audit = crate::audit::AuditLog::open(&audit_path, config.audit_payload)?;
    if config.cloud_mode == CloudMode::DryRun {
        tracing::info!(audit = %audit_path.display(), "dry run: nothing is sent to the cloud; see the audit log for what would have been");
    }
    let services = Arc::new(Services {
        local: models::local_backend(&config)?,
        cloud: models::cloud_backend(&config)?,
        runtime: runtime.handle().clone(),
        guard,
        audit: Some(Arc::new(audit)),
        pricing: config.pricing.clone(),
        cloud_endpoint: crate::audit::endpoint_host(&config.cloud.base_url),
        streams: crate::host::emit::Streams::new(settings.emit_dir.clone()),
        // A dry run or a replay spends nothing: the caps apply to calls that are paid for.
        spend: match config.cloud_mode {
            CloudMode::Live if !args.replay => {
                crate::spend::Spend::open(&config.budget, &args.script, config.source.as_deref())?
                    .map(Arc::new)
            }
            _ => None,
        },
        pipeline: args.script.display().to_string(),
        cache: open_cache(
            args.cache.as_deref(),
            &config,
            settings.out.as_deref(),
            args.replay,
        )?,
        replay: args.replay,
    });
    spec.gate = cases_gate(&args.script, services.clone());
    let options = RunOptions {
        jobs: config.jobs,
        max_bytes: args.max_doc_bytes,
        progress: !args.no_progress && !long_running,
        max_record_bytes: config.limits.max_record_bytes,
    };
    let bundle = Arc::new(ArcSwap::from_pointee(bundle));
    // The console, when asked for: it reads the rules and the local model's state.
    let console = match args.listen.as_ref().or(config.serve.listen.as_ref()) {
        Some(addr) => {
            let file = args
                .token_file
                .as_deref()
                .or(config.serve.token_file.as_deref());
            let token = crate::console::token(file)?;
            crate::console::metrics::global()
                .start(&args.script.display().to_string(), &bundle.load().version);
            let schemas = crate::schemas::schemas_dir_for(&args.script, config.schemas.as_deref());
            let host = crate::console::Host {
                rules: Some(bundle.clone()),
                local: Some(services.local.clone()),
                review: settings
                    .out
                    .as_deref()
                    .map(|out| crate::console::review::Queue::beside(out, schemas)),
                pricing: config.pricing.clone(),
            };
            Some(crate::console::serve(addr, token, Arc::new(host))?)
        }
        None => None,
    };
    let pipeline_name = args.script.display().to_string();
    // A swapped-in version is on probation for its first documents (see `probation`).
    let probation = long_running.then(|| {
        Arc::new(crate::probation::Probation::new(
            bundle.clone(),
            config.reload.clone(),
        ))
    });
    spec.probation = probation.clone();
    let _rules_watcher = if settings.watch {
        Some(crate::watch::spawn(spec, bundle.clone()).context("cannot watch the rules files")?)
    } else {
        None
    };

    let summary = runtime.block_on(async {
        let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
        tokio::spawn(async move {
            wait_for_signal().await;
            let _ = stop_tx.send(true);
        });
        let (tx, rx) = tokio::sync::mpsc::channel(options.jobs * 2);
        // A worker: the fleet's rules first, then its heartbeat, then documents.
        let worker = match &queue {
            Some(address) => {
                let fleet = crate::fleet::Fleet::connect(address, &config.fleet).await?;
                let key = crate::fleet::pipeline_key(&args.script);
                let following = Arc::new(std::sync::Mutex::new(crate::fleet::rules::Following::default()));
                crate::fleet::rules::adopt_latest(&fleet, &key, &config.limits, &bundle, &following).await;
                tokio::spawn(crate::fleet::rules::follow(
                    fleet.clone(),
                    key.clone(),
                    config.limits.clone(),
                    bundle.clone(),
                    probation.clone(),
                    following.clone(),
                ));
                let settler = crate::fleet::queue::Settler::new(fleet.clone(), tokio::runtime::Handle::current());
                tokio::spawn(crate::fleet::status::beat(
                    fleet,
                    key,
                    bundle.clone(),
                    following,
                    settler.counters.clone(),
                ));
                Some(settler)
            }
            None => None,
        };
        // Batch inputs first, then (when watching) the inboxes or the queue.
        let (jobs, batch_read) = runner::Jobs::new(runner::read_sources(sources, options.max_bytes), rx);
        let feeder = {
            let tx = tx.clone();
            let inboxes = inboxes.clone();
            let settler = worker.clone();
            let stop = stop_rx.clone();
            let max_bytes = options.max_bytes;
            tokio::spawn(async move {
                if batch_read.await.is_err() {
                    return Ok::<(), anyhow::Error>(());
                }
                if let Some(inboxes) = inboxes {
                    tracing::info!(inboxes = ?inbox_dirs, state = %inboxes.state_path().display(), "watching for new documents; Ctrl-C to stop");
                    inboxes.spawn(tx).map_err(|e| anyhow::anyhow!("{e}\nhint: on Linux, raise fs.inotify.max_user_watches if the watch limit was reached"))?;
                } else if let Some(settler) = settler {
                    crate::fleet::queue::intake(settler, tx, max_bytes, stop).await?;
                }
                Ok(())
            })
        };
        drop(tx);
        let mut on_done = |job: &runner::Job, record: &crate::record::Record| {
            if let Some(inboxes) = &inboxes {
                inboxes.finished(job, record);
            }
            if let Some(probation) = &probation {
                probation.observe(record);
            }
            if console.is_some() {
                crate::console::metrics::global().observe(&pipeline_name, record);
            }
        };
        let summary = runner::run(bundle, services, jobs, &options, &mut out, &resume, &mut on_done, stop_rx).await;
        let summary = match summary {
            // The reader went away (`hybrid run ... | head -1`): stop quietly.
            Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => return anyhow::Ok(None),
            other => other?,
        };
        // The documents read so far are recorded; now say why intake stopped, if it failed.
        feeder.await.context("the input task failed")??;
        // Records are stored and messages acked before the worker goes.
        if let Some(settler) = &worker {
            settler.drain(std::time::Duration::from_secs(30)).await;
            crate::fleet::status::sign_off(settler.fleet()).await;
        }
        anyhow::Ok(Some(summary))
    })?;
    drop(out);
    let Some(summary) = summary else {
        runtime.shutdown_background();
        return Ok(ExitCode::SUCCESS);
    };
    if !QUIET.load(std::sync::atomic::Ordering::Relaxed) {
        eprintln!("hybrid: {summary}");
    }
    Ok(if summary.failed > 0 {
        ExitCode::from(2)
    } else {
        ExitCode::SUCCESS
    })
}

/// Ctrl-C or SIGTERM.
async fn wait_for_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        let mut term = match signal(SignalKind::terminate()) {
            Ok(s) => s,
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
                return;
            }
        };
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

/// The folder of `--out`, else the current one.
/// `results.jsonl` → `results.audit.jsonl`; no `--out` → `./hybrid-audit.jsonl`.
fn default_audit_path(out: Option<&std::path::Path>) -> PathBuf {
    match out {
        Some(out) => {
            let stem = out
                .file_stem()
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_else(|| "results".into());
            out.with_file_name(format!("{stem}.audit.jsonl"))
        }
        None => PathBuf::from("hybrid-audit.jsonl"),
    }
}

fn report(args: ReportArgs) -> anyhow::Result<ExitCode> {
    // Found as `run` finds it: beside the (first) results file, in its parent folder, or here.
    let path = args
        .config
        .clone()
        .or_else(|| args.results.first().and_then(|r| FileConfig::discover(r)));
    let file = match &path {
        Some(p) => FileConfig::load(p)?,
        None => FileConfig::default(),
    };
    let config = Config::resolve(file, path, &Overrides::default())?;
    let report = crate::report::build(&args.results, &config.pricing, Some(args.volume))?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print!("{}", crate::report::render_text(&report, &config.pricing));
        let caps = crate::spend::report_lines(
            &config.budget,
            config.source.as_deref(),
            report.cloud_usd,
            report.escalation_rate,
        );
        if !caps.is_empty() {
            println!("\nspend against the caps");
            for line in caps {
                println!("  {line}");
            }
        }
        // What people decided on the items the pipelines sent them (`hybrid review`).
        for results in &args.results {
            let queue = crate::console::review::Queue::beside(results, None);
            let Ok(counts) = crate::console::review::counts(&queue) else {
                continue;
            };
            if counts.items == 0 {
                continue;
            }
            let by: Vec<String> = counts
                .by_decision
                .iter()
                .map(|(d, n)| format!("{d} {n}"))
                .collect();
            println!(
                "\nreviews: {} of {} items sent to people decided{} ({})",
                counts.decided,
                counts.items,
                if by.is_empty() {
                    String::new()
                } else {
                    format!(": {}", by.join(", "))
                },
                queue.reviews.display()
            );
        }
    }
    if let Some(chart) = &args.chart {
        crate::report::write_chart(&report, chart)?;
        eprintln!("chart written to `{}`", chart.display());
    }
    Ok(ExitCode::SUCCESS)
}

fn init_logging(verbose: u8, quiet: bool, color: bool) {
    use tracing_subscriber::EnvFilter;
    let default = match (quiet, verbose) {
        (true, _) => "error",
        (false, 0) => "warn,hybrid=info",
        (false, 1) => "warn,hybrid=debug",
        _ => "info,hybrid=trace",
    };
    let filter = std::env::var("HYBRID_LOG")
        .ok()
        .and_then(|f| EnvFilter::try_new(f).ok())
        .unwrap_or_else(|| EnvFilter::new(default));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(crate::progress::LogWriter)
        .with_ansi(color)
        .with_target(false)
        .try_init();
}
