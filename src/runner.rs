//! Running many documents: up to `jobs` in flight, each on a blocking thread, every outcome
//! written as one JSONL record and flushed, and a summary at the end.
//!
//! Documents arrive as [`Job`]s on a channel — from the INPUT arguments, or from a watched
//! inbox. A document takes the current bundle once, when it starts, so a reload never changes
//! the rules under a document already running. On shutdown (Ctrl-C, SIGTERM) no new job is
//! taken and the ones in flight finish.

use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinSet;

use crate::bundle::Bundle;
use crate::documents::{self, Input, Source};
use crate::host::{self, Services};
use crate::record::{Record, RecordError, Summary};

pub struct RunOptions {
    pub jobs: usize,
    pub max_bytes: u64,
    /// Show a progress line on stderr (only honoured when stderr is a terminal).
    pub progress: bool,
}

/// One document to process, and the inbox file it came from (if it did).
pub struct Job {
    pub input: Input,
    pub inbox_file: Option<PathBuf>,
}

/// Called after a document's record is written and flushed.
pub type OnDone<'a> = dyn FnMut(&Job, &Record) + Send + 'a;

/// Feeds the documents of `sources` into a job channel from a reader thread (reading is
/// blocking I/O: files, stdin). The channel closes when they are all read.
pub fn read_sources(sources: Vec<Source>, max_bytes: u64, capacity: usize) -> mpsc::Receiver<Job> {
    let (tx, rx) = mpsc::channel(capacity);
    std::thread::spawn(move || {
        documents::read_all(&sources, max_bytes, |input| {
            tx.blocking_send(Job {
                input,
                inbox_file: None,
            })
            .is_ok()
        });
    });
    rx
}

/// Processes jobs until the channel closes or `shutdown` turns true, writing one record per
/// document to `out`.
pub async fn run(
    bundle: Arc<ArcSwap<Bundle>>,
    services: Arc<Services>,
    mut jobs: mpsc::Receiver<Job>,
    options: &RunOptions,
    out: &mut (dyn Write + Send),
    on_done: &mut OnDone<'_>,
    mut shutdown: watch::Receiver<bool>,
) -> std::io::Result<Summary> {
    let started = Instant::now();
    let progress = (options.progress && std::io::stderr().is_terminal()).then(|| {
        let bar = indicatif::ProgressBar::new_spinner();
        bar.enable_steady_tick(Duration::from_millis(200));
        bar
    });

    let mut summary = Summary::default();
    let mut in_flight: JoinSet<(Job, Record)> = JoinSet::new();
    let mut finish = |job: Job, record: Record, summary: &mut Summary| -> std::io::Result<()> {
        summary.add(&record);
        let line = serde_json::to_string(&record).map_err(std::io::Error::other)?;
        out.write_all(line.as_bytes())?;
        out.write_all(b"\n")?;
        out.flush()?;
        on_done(&job, &record);
        if let Some(bar) = &progress {
            bar.set_message(format!(
                "{} documents, {} failed",
                summary.documents, summary.failed
            ));
        }
        Ok(())
    };

    loop {
        // Room for one more? Otherwise wait for one to finish (or for the shutdown).
        if in_flight.len() >= options.jobs {
            let done = in_flight.join_next().await.expect("a task is in flight");
            let (job, record) = joined(done);
            finish(job, record, &mut summary)?;
            continue;
        }
        let job = tokio::select! {
            job = jobs.recv() => match job {
                Some(job) => job,
                None => break,
            },
            Some(done) = in_flight.join_next(), if !in_flight.is_empty() => {
                let (job, record) = joined(done);
                finish(job, record, &mut summary)?;
                continue;
            }
            _ = shutdown.wait_for(|stop| *stop) => {
                tracing::info!(in_flight = in_flight.len(), "stopping: no new documents; finishing the ones in flight");
                break;
            }
        };
        match &job.input {
            Ok(_) => {
                let bundle = bundle.load_full();
                let services = services.clone();
                in_flight.spawn_blocking(move || {
                    let Ok(doc) = &job.input else { unreachable!() };
                    let run = std::panic::AssertUnwindSafe(|| {
                        host::run_document(&bundle, &services, doc)
                    });
                    let record = std::panic::catch_unwind(run).unwrap_or_else(|_| {
                        failed_record(
                            &doc.id,
                            doc.source(),
                            &bundle.version,
                            "internal",
                            "the host panicked while processing this document; please report it"
                                .into(),
                        )
                    });
                    (job, record)
                });
            }
            Err(failed) => {
                tracing::warn!(source = %failed.source, "input skipped: {}", failed.reason);
                let version = bundle.load().version.clone();
                let record = failed_record(
                    &failed.id,
                    failed.source.clone(),
                    &version,
                    "input",
                    failed.reason.clone(),
                );
                finish(job, record, &mut summary)?;
            }
        }
    }
    while let Some(done) = in_flight.join_next().await {
        let (job, record) = joined(done);
        finish(job, record, &mut summary)?;
    }
    if let Some(bar) = progress {
        bar.finish_and_clear();
    }
    summary.wall_ms = started.elapsed().as_millis() as u64;
    Ok(summary)
}

/// A task only fails to join if the runtime is shutting down or the task panicked past
/// `catch_unwind`; either way the record says so rather than losing the document silently.
fn joined(result: Result<(Job, Record), tokio::task::JoinError>) -> (Job, Record) {
    result.unwrap_or_else(|e| {
        let record = failed_record(
            "?",
            "?".into(),
            "",
            "internal",
            format!("a document task failed: {e}"),
        );
        let job = Job {
            input: Err(documents::Failed {
                id: "?".into(),
                source: "?".into(),
                reason: e.to_string(),
            }),
            inbox_file: None,
        };
        (job, record)
    })
}

fn failed_record(id: &str, source: String, version: &str, kind: &str, message: String) -> Record {
    Record {
        id: id.to_owned(),
        source,
        ok: false,
        result: None,
        error: Some(RecordError {
            kind: kind.into(),
            message,
            position: None,
        }),
        calls: Vec::new(),
        version: version.to_owned(),
        elapsed_ms: 0,
    }
}
