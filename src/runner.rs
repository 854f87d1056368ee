//! Running many documents: up to `jobs` in flight, each on a blocking thread, every outcome
//! written as one JSONL record and flushed, and a summary at the end.
//!
//! A document takes the current bundle once, when it starts, so a reload (see `bundle`)
//! never changes the rules under a document already running.

use std::io::{IsTerminal, Write};
use std::sync::Arc;
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
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

/// Processes every document from `sources`, writing one record per document to `out`.
pub async fn run(
    bundle: Arc<ArcSwap<Bundle>>,
    services: Arc<Services>,
    sources: Vec<Source>,
    options: &RunOptions,
    out: &mut (dyn Write + Send),
) -> std::io::Result<Summary> {
    let started = Instant::now();
    let (tx, mut rx) = tokio::sync::mpsc::channel::<Input>(options.jobs * 2);
    let max_bytes = options.max_bytes;
    // Reading is blocking I/O (files, stdin): keep it off the runtime's worker threads.
    let reader = std::thread::spawn(move || {
        documents::read_all(&sources, max_bytes, |input| tx.blocking_send(input).is_ok());
    });

    let progress = (options.progress && std::io::stderr().is_terminal()).then(|| {
        let bar = indicatif::ProgressBar::new_spinner();
        bar.enable_steady_tick(Duration::from_millis(200));
        bar
    });

    let mut summary = Summary::default();
    let mut in_flight: JoinSet<Record> = JoinSet::new();
    let mut write = |record: Record, summary: &mut Summary| -> std::io::Result<()> {
        summary.add(&record);
        let line = serde_json::to_string(&record).map_err(std::io::Error::other)?;
        out.write_all(line.as_bytes())?;
        out.write_all(b"\n")?;
        out.flush()?;
        if let Some(bar) = &progress {
            bar.set_message(format!(
                "{} documents, {} failed",
                summary.documents, summary.failed
            ));
        }
        Ok(())
    };

    while let Some(input) = rx.recv().await {
        while in_flight.len() >= options.jobs {
            let record = joined(in_flight.join_next().await.expect("a task is in flight"));
            write(record, &mut summary)?;
        }
        match input {
            Ok(doc) => {
                let bundle = bundle.load_full();
                let services = services.clone();
                in_flight.spawn_blocking(move || {
                    let run = std::panic::AssertUnwindSafe(|| {
                        host::run_document(&bundle, &services, &doc)
                    });
                    std::panic::catch_unwind(run).unwrap_or_else(|_| {
                        failed_record(
                            &doc.id,
                            doc.source(),
                            &bundle.version,
                            "internal",
                            "the host panicked while processing this document; please report it"
                                .into(),
                        )
                    })
                });
            }
            Err(failed) => {
                tracing::warn!(source = %failed.source, "input skipped: {}", failed.reason);
                let version = bundle.load().version.clone();
                write(
                    failed_record(&failed.id, failed.source, &version, "input", failed.reason),
                    &mut summary,
                )?;
            }
        }
    }
    while let Some(done) = in_flight.join_next().await {
        write(joined(done), &mut summary)?;
    }
    let _ = reader.join();
    if let Some(bar) = progress {
        bar.finish_and_clear();
    }
    summary.wall_ms = started.elapsed().as_millis() as u64;
    Ok(summary)
}

/// A task only fails to join if the runtime is shutting down or the task panicked past
/// `catch_unwind`; either way the record says so rather than losing the document silently.
fn joined(result: Result<Record, tokio::task::JoinError>) -> Record {
    result.unwrap_or_else(|e| {
        failed_record(
            "?",
            "?".into(),
            "",
            "internal",
            format!("a document task failed: {e}"),
        )
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
