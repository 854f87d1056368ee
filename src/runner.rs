//! Running many documents: up to `jobs` in flight, on as many threads that each take the next
//! document, run it and write its record (one JSONL line, flushed), and a summary at the end.
//!
//! Documents arrive as [`Job`]s on a channel — from the INPUT arguments, or from a watched
//! inbox. A document takes the current bundle once, when it starts, so a reload never changes
//! the rules under a document already running. On shutdown (Ctrl-C, SIGTERM) no new job is
//! taken and the ones in flight finish.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use arc_swap::ArcSwap;
use tokio::sync::{mpsc, oneshot, watch};

use crate::bundle::Bundle;
use crate::documents::{self, Document, Source};
use crate::host::{self, Services};
use crate::record::{Record, RecordError, Summary};
use crate::sink::Sink;

pub struct RunOptions {
    pub jobs: usize,
    pub max_bytes: u64,
    /// Show a progress line on stderr (only honoured when stderr is a terminal).
    pub progress: bool,
    /// A record longer than this becomes a `limit` error record.
    pub max_record_bytes: usize,
}

/// Documents that already have a record (from an earlier run into the same results file),
/// and which of them count as done.
#[derive(Default)]
pub struct Resume {
    pub done: crate::sink::Done,
    /// Skip documents whose record failed too (otherwise they run again).
    pub skip_failed: bool,
}

impl Resume {
    fn skips(&self, id: &str) -> Option<&crate::sink::Prior> {
        self.done
            .get(id)
            .filter(|prior| prior.ok || self.skip_failed)
    }
}

/// One document to process, and the inbox file it came from (if it did).
pub struct Job {
    pub input: Result<Arc<Document>, documents::Failed>,
    pub inbox_file: Option<PathBuf>,
    /// It may be passed over when the results already hold its record: true for documents
    /// read at start; an inbox file that arrives later is new work, even under an old name.
    pub resumable: bool,
    /// Its claim on a queue message, when it came from the fleet's work queue.
    pub ticket: Option<crate::fleet::queue::Ticket>,
}

/// Called after a document's record is written and flushed.
pub type OnDone<'a> = dyn FnMut(&Job, &Record) + Send + 'a;

/// Feeds the documents of `sources` into a job channel from a reader thread (reading is
/// blocking I/O: files, stdin). The channel closes when they are all read.
///
/// The reader stays up to [`READ_AHEAD_DOCS`] documents and [`READ_AHEAD_BYTES`] ahead, and
/// once there it sleeps until the runner has taken half of them: one wake-up per batch. (A
/// channel of a few slots woke it, and it the runner, for every document: half the thread
/// hand-offs of a short document.)
pub fn read_sources(sources: Vec<Source>, max_bytes: u64) -> ReadAhead {
    let (tx, rx) = mpsc::channel(READ_AHEAD_DOCS + 1);
    let gate = Arc::new(Gate::default());
    let reader_gate = gate.clone();
    std::thread::spawn(move || {
        documents::read_all(&sources, max_bytes, |input| {
            let bytes = input.as_ref().map_or(0, |doc| doc.bytes() as u64);
            reader_gate.enter(bytes)
                && tx
                    .blocking_send((
                        Job {
                            input: input.map(Arc::new),
                            inbox_file: None,
                            resumable: true,
                            ticket: None,
                        },
                        bytes,
                    ))
                    .is_ok()
        });
    });
    ReadAhead { rx, gate }
}

/// Documents read ahead of the runner: at most this many...
const READ_AHEAD_DOCS: usize = 256;
/// ...and this many bytes (one document larger than this is read when none is waiting).
const READ_AHEAD_BYTES: u64 = 4 << 20;

/// The documents [`read_sources`] has read, in order.
pub struct ReadAhead {
    rx: mpsc::Receiver<(Job, u64)>,
    gate: Arc<Gate>,
}

impl ReadAhead {
    pub async fn recv(&mut self) -> Option<Job> {
        let (job, bytes) = self.rx.recv().await?;
        self.gate.leave(bytes);
        Some(job)
    }
}

impl Drop for ReadAhead {
    fn drop(&mut self) {
        self.gate.close();
    }
}

/// Where the runner's jobs come from: the documents named at start, read ahead, then what
/// arrives later (a watched inbox, the fleet's queue).
///
/// The runner reads the read-ahead itself: a task forwarding it into the later channel woke
/// a worker thread for every document.
pub struct Jobs {
    batch: Option<ReadAhead>,
    later: mpsc::Receiver<Job>,
    batch_read: Option<oneshot::Sender<()>>,
}

impl Jobs {
    /// Jobs from `batch`, then from `later`. The receiver hears when `batch` is all taken
    /// (or the runner stopped before): the moment to start what feeds `later`.
    pub fn new(batch: ReadAhead, later: mpsc::Receiver<Job>) -> (Jobs, oneshot::Receiver<()>) {
        let (batch_read, heard) = oneshot::channel();
        let jobs = Jobs {
            batch: Some(batch),
            later,
            batch_read: Some(batch_read),
        };
        (jobs, heard)
    }

    /// The next job; `None` once both are done. Cancel-safe.
    pub async fn recv(&mut self) -> Option<Job> {
        if let Some(batch) = &mut self.batch {
            if let Some(job) = batch.recv().await {
                return Some(job);
            }
            self.batch = None;
            if let Some(batch_read) = self.batch_read.take() {
                let _ = batch_read.send(());
            }
        }
        self.later.recv().await
    }
}

/// What the reader holds ahead of the runner, and whether it waits for room.
#[derive(Default)]
struct Gate {
    state: std::sync::Mutex<Held>,
    room: std::sync::Condvar,
}

#[derive(Default)]
struct Held {
    docs: usize,
    bytes: u64,
    waiting: bool,
    closed: bool,
}

impl Gate {
    /// Waits for room for one more document of `bytes`; false once nobody reads.
    fn enter(&self, bytes: u64) -> bool {
        let mut held = self.state.lock().unwrap_or_else(|e| e.into_inner());
        while !held.closed
            && held.docs > 0
            && (held.docs >= READ_AHEAD_DOCS || held.bytes + bytes > READ_AHEAD_BYTES)
        {
            held.waiting = true;
            held = self.room.wait(held).unwrap_or_else(|e| e.into_inner());
        }
        held.docs += 1;
        held.bytes += bytes;
        !held.closed
    }

    /// One document taken; wakes the reader once half of what it was ahead is taken.
    fn leave(&self, bytes: u64) {
        let mut held = self.state.lock().unwrap_or_else(|e| e.into_inner());
        held.docs -= 1;
        held.bytes -= bytes;
        if held.waiting && held.docs <= READ_AHEAD_DOCS / 2 && held.bytes <= READ_AHEAD_BYTES / 2 {
            held.waiting = false;
            self.room.notify_one();
        }
    }

    fn close(&self) {
        self.state.lock().unwrap_or_else(|e| e.into_inner()).closed = true;
        self.room.notify_one();
    }
}

/// Stack for the threads documents run on. Only what a document touches is committed; a
/// script that builds a value nested a million deep (within `max_document_memory`) is dropped
/// and printed by recursive code, and must not overflow and take the host down.
pub const DOCUMENT_STACK: usize = 1 << 30;

/// Processes jobs until they run out or `shutdown` turns true, writing one record per
/// document to `out`.
///
/// `jobs` threads each take the next job, run it and write its record themselves: a thread
/// that hands a document to another and waits for it back costs two wake-ups a document,
/// a sixth of a short one's CPU. Must be called on a multi-threaded runtime (it blocks in
/// place).
#[allow(clippy::too_many_arguments)]
pub async fn run(
    bundle: Arc<ArcSwap<Bundle>>,
    services: Arc<Services>,
    jobs: Jobs,
    options: &RunOptions,
    out: &mut Sink,
    resume: &Resume,
    on_done: &mut OnDone<'_>,
    shutdown: watch::Receiver<bool>,
) -> std::io::Result<Summary> {
    let started = Instant::now();
    let progress = options
        .progress
        .then(crate::progress::Progress::start)
        .flatten();
    let shared = Shared {
        jobs: Mutex::new(jobs),
        shutdown,
        stopping: AtomicBool::new(false),
        handle: tokio::runtime::Handle::current(),
        bundle,
        services,
        resume,
        max_record_bytes: options.max_record_bytes,
        written: Mutex::new(Written {
            out,
            summary: Summary::default(),
            on_done,
            progress: progress.as_ref(),
            failed: None,
        }),
    };
    tokio::task::block_in_place(|| {
        std::thread::scope(|scope| {
            for n in 0..options.jobs.max(1) {
                let shared = &shared;
                let spawned = std::thread::Builder::new()
                    .name(format!("document-{n}"))
                    .stack_size(DOCUMENT_STACK)
                    .spawn_scoped(scope, move || shared.work());
                if let Err(e) = spawned {
                    // Fewer threads than asked for still finish the run; none does not.
                    tracing::warn!("cannot start a document thread: {e}");
                    if n == 0 {
                        let mut written = shared.lock_written();
                        written.failed.get_or_insert(e);
                    }
                    break;
                }
            }
        })
    });
    let written = shared
        .written
        .into_inner()
        .unwrap_or_else(|e| e.into_inner());
    if let Some(e) = written.failed {
        return Err(e);
    }
    let mut summary = written.summary;
    drop(progress);
    summary.wall_ms = started.elapsed().as_millis() as u64;
    Ok(summary)
}

/// What the document threads of one [`run`] share.
struct Shared<'a, 'b> {
    jobs: Mutex<Jobs>,
    shutdown: watch::Receiver<bool>,
    /// No new job is taken: shutdown, or writing a record failed.
    stopping: AtomicBool,
    handle: tokio::runtime::Handle,
    bundle: Arc<ArcSwap<Bundle>>,
    services: Arc<Services>,
    resume: &'a Resume,
    max_record_bytes: usize,
    written: Mutex<Written<'a, 'b>>,
}

/// Where records go, taken by one thread at a time.
struct Written<'a, 'b> {
    out: &'a mut Sink,
    summary: Summary,
    on_done: &'a mut OnDone<'b>,
    progress: Option<&'a crate::progress::Progress>,
    /// Writing a record failed: the run stops with this error.
    failed: Option<std::io::Error>,
}

impl<'a, 'b> Shared<'a, 'b> {
    /// One document thread: jobs until there are none, or the run stops.
    fn work(&self) {
        let _runtime = self.handle.enter();
        while let Some(job) = self.next_job() {
            self.take(job);
        }
    }

    /// The next job, waited for; `None` once there are none or no new one may start.
    fn next_job(&self) -> Option<Job> {
        let mut jobs = self.jobs.lock().unwrap_or_else(|e| e.into_inner());
        if self.stopping.load(Ordering::Relaxed) {
            return None;
        }
        let mut shutdown = self.shutdown.clone();
        let job = self.handle.block_on(async {
            tokio::select! {
                job = jobs.recv() => job,
                _ = shutdown.wait_for(|stop| *stop) => {
                    tracing::info!("stopping: no new documents; finishing the ones in flight");
                    None
                }
            }
        });
        if job.is_none() {
            self.stopping.store(true, Ordering::Relaxed);
        }
        job
    }

    fn lock_written(&self) -> std::sync::MutexGuard<'_, Written<'a, 'b>> {
        self.written.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Runs one job (or passes over it) and writes its record.
    fn take(&self, job: Job) {
        let id = match &job.input {
            Ok(doc) => &doc.id,
            Err(failed) => &failed.id,
        };
        if let Some(prior) = self.resume.skips(id).filter(|_| job.resumable) {
            tracing::debug!(doc = %id, "already has a record: skipped");
            let record = Record {
                ok: prior.ok,
                version: prior.version.clone(),
                ..failed_record(id, String::new(), "", "", String::new())
            };
            let mut written = self.lock_written();
            written.summary.skipped += 1;
            (written.on_done)(&job, &record);
            return;
        }
        let record = match &job.input {
            Ok(doc) => {
                let metrics = crate::console::metrics::global();
                metrics.in_flight.inc();
                let record = run_job(&self.bundle.load_full(), &self.services, doc);
                metrics.in_flight.dec();
                record
            }
            Err(failed) => {
                tracing::warn!(source = %failed.source, "input skipped: {}", failed.reason);
                let version = self.bundle.load().version.clone();
                failed_record(
                    &failed.id,
                    failed.source.clone(),
                    &version,
                    "input",
                    failed.reason.clone(),
                )
            }
        };
        self.finish(job, record);
    }

    /// Writes a finished document's record (a transient failure of a queued document goes
    /// back to the queue instead, unrecorded).
    fn finish(&self, job: Job, record: Record) {
        if job.ticket.as_ref().is_some_and(|t| t.hand_back(&record)) {
            let mut written = self.lock_written();
            written.summary.handed_back += 1;
            (written.on_done)(&job, &record);
            return;
        }
        // Encoded before taking the lock: the other threads need not wait for it.
        let (record, line) = encode(record, self.max_record_bytes);
        let mut written = self.lock_written();
        let written = &mut *written;
        if written.failed.is_some() {
            return;
        }
        if let Err(e) = written.out.write_line(&line) {
            written.failed = Some(e);
            self.stopping.store(true, Ordering::Relaxed);
            return;
        }
        written.summary.add(&record);
        if let Some(ticket) = &job.ticket {
            ticket.done(&record, &line);
        }
        (written.on_done)(&job, &record);
        if let Some(bar) = written.progress {
            bar.set_message(format!(
                "{} documents, {} failed",
                written.summary.documents, written.summary.failed
            ));
        }
    }
}

/// A document through the rules, on this thread: read first when it is a PDF or e-mail
/// (the time counts), and any panic a failed record, never a lost one.
fn run_job(bundle: &Arc<Bundle>, services: &Arc<Services>, doc: &Arc<Document>) -> Record {
    let started = Instant::now();
    let read = match &doc.unread {
        None => Ok(doc.clone()),
        // A library failing on a hostile file fails this document only.
        Some(_) => std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            doc.extracted().map(Arc::new)
        }))
        .unwrap_or_else(|_| {
            Err("reading the file failed inside a library (a malformed or hostile file?)".into())
        }),
    };
    let doc = match read {
        Ok(doc) => doc,
        Err(reason) => {
            tracing::warn!(source = %doc.source(), "input skipped: {reason}");
            let mut record = failed_record(&doc.id, doc.source(), &bundle.version, "input", reason);
            record.elapsed_ms = started.elapsed().as_millis() as u64;
            return record;
        }
    };
    let extract_ms = started.elapsed().as_millis() as u64;
    let run = std::panic::AssertUnwindSafe(|| {
        let mut record = host::run_document(bundle, services, &doc);
        record.elapsed_ms += extract_ms;
        record
    });
    std::panic::catch_unwind(run).unwrap_or_else(|_| {
        failed_record(
            &doc.id,
            doc.source(),
            &bundle.version,
            "internal",
            "the host panicked while processing this document; please report it".into(),
        )
    })
}

/// The record's line; a record too long, or one that cannot be written as JSON, becomes an
/// error record for its document instead of stopping the run.
fn encode(record: Record, max_bytes: usize) -> (Record, Vec<u8>) {
    let replacement = match crate::sink::line_of(&record) {
        Ok(line) if line.len() <= max_bytes => return (record, line),
        Ok(line) => failed_record(
            &record.id,
            record.source.clone(),
            &record.version,
            "limit",
            format!(
                "the document's record would be {} bytes, over the {max_bytes}-byte limit\nhint: return less, or raise `max_record_bytes` under [limits] in hybrid.toml",
                line.len()
            ),
        ),
        Err(e) => failed_record(
            &record.id,
            record.source.clone(),
            &record.version,
            "internal",
            format!("the record cannot be written as JSON: {e}"),
        ),
    };
    let record = Record {
        calls: record.calls,
        elapsed_ms: record.elapsed_ms,
        at: crate::audit::now(),
        ..replacement
    };
    let line = crate::sink::line_of(&record).expect("an error record is plain JSON");
    (record, line)
}

pub(crate) fn failed_record(
    id: &str,
    source: String,
    version: &str,
    kind: &str,
    message: String,
) -> Record {
    Record {
        id: id.to_owned(),
        source,
        ok: false,
        result: None,
        error: Some(RecordError {
            snippet: None,
            kind: kind.into(),
            message,
            position: None,
        }),
        calls: Vec::new(),
        version: version.to_owned(),
        elapsed_ms: 0,
        at: crate::audit::now(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_reader_waits_past_the_budget_and_goes_on_at_half() {
        let gate = Arc::new(Gate::default());
        for _ in 0..READ_AHEAD_DOCS {
            assert!(gate.enter(1));
        }
        let reader = {
            let gate = gate.clone();
            std::thread::spawn(move || gate.enter(1))
        };
        std::thread::sleep(std::time::Duration::from_millis(50));
        assert!(!reader.is_finished(), "a full read-ahead waits");
        // Taking fewer than half does not wake it; taking half does.
        for _ in 0..READ_AHEAD_DOCS / 2 - 1 {
            gate.leave(1);
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
        assert!(!reader.is_finished(), "woken before half was taken");
        gate.leave(1);
        assert!(reader.join().unwrap());
    }

    #[test]
    fn a_document_over_the_byte_budget_is_read_when_none_waits() {
        let gate = Gate::default();
        assert!(gate.enter(READ_AHEAD_BYTES * 3));
        gate.leave(READ_AHEAD_BYTES * 3);
        assert!(gate.enter(1));
        let gate = Arc::new(gate);
        let reader = {
            let gate = gate.clone();
            std::thread::spawn(move || gate.enter(READ_AHEAD_BYTES * 3))
        };
        gate.leave(1);
        assert!(reader.join().unwrap());
        // Once nobody reads, the reader stops instead of waiting.
        gate.close();
        assert!(!gate.enter(READ_AHEAD_BYTES));
    }
}
