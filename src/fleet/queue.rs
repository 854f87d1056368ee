//! Documents from the work queue, results back to JetStream: the fleet's *source* and *sink*.
//!
//! A worker pulls only what it has room for (the runner's free slots), so documents wait in
//! the queue, not in one worker's buffer. Each document travels with a [`Ticket`], its
//! claim on the message. The runner settles the ticket once the record exists:
//!
//! - **recorded**: the record is published to `STREAM.results` with `Nats-Msg-Id` = id +
//!   version and, only once JetStream has stored it, the message is acked. A crash between
//!   the two redelivers the document; its second record is dropped as a duplicate.
//! - **handed back**: a transient model failure (timeout, rate limit, server error, lost
//!   connection, model still loading) naks the message with a back-off that doubles per
//!   try, and no record is written, so another worker or a later try takes it.
//! - **given up**: on the last allowed try the failure is recorded as usual and the document
//!   also goes to `STREAM.dead` (its message as it came, and the last error in headers). A
//!   document delivered more often than `max_deliver` without a result (its workers died on
//!   it) is given up before it runs again.
//!
//! A ticket dropped unsettled (the host stopping with documents still queued) hands its
//! document back at once. While a worker holds documents it sends progress acks, so a long
//! document keeps its lease.

use std::collections::HashSet;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_nats::jetstream::{consumer::pull, AckKind};
use async_nats::HeaderMap;
use bytes::Bytes;
use futures_util::StreamExt;
use tokio::sync::{mpsc, watch, Notify};

use super::{secs, Fleet, FleetError};
use crate::documents::{self, Source};
use crate::record::Record;
use crate::runner::Job;

/// Error kinds that say "try again later", not "this document is bad".
pub const TRANSIENT: &[&str] = &["timeout", "rate_limit", "server", "connection", "load"];

/// Headers of a raw document message: its id and its file name (the name's extension says
/// how to read it: `.pdf`, `.eml`, text).
pub const ID_HEADER: &str = "Hybrid-Id";
pub const NAME_HEADER: &str = "Hybrid-Name";

/// The durable consumer all workers of a stream share.
pub(crate) const CONSUMER: &str = "workers";

/// A header value from any text: control characters (a header is one line; a raw CR or
/// LF would be refused, and a document id may hold one) become `%XX`.
pub fn header_text(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if c.is_control() {
            out.push_str(&format!("%{:02X}", c as u32 & 0xff));
        } else {
            out.push(c);
        }
    }
    out
}

/// Sixteen hex digits of a SHA-256: what tells two versions of a document apart.
fn short_hash(bytes: &[u8]) -> String {
    use sha2::Digest;
    sha2::Sha256::digest(bytes)
        .iter()
        .take(8)
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn transient(record: &Record) -> bool {
    record
        .error
        .as_ref()
        .is_some_and(|e| TRANSIENT.contains(&e.kind.as_str()))
}

/// Settles tickets: publishes records, acks and naks, and keeps held documents' leases.
#[derive(Clone)]
pub struct Settler {
    fleet: Fleet,
    runtime: tokio::runtime::Handle,
    /// Reply subjects of the messages this worker holds (for progress acks).
    held: Arc<Mutex<HashSet<String>>>,
    pending: Arc<(AtomicUsize, Notify)>,
    /// What this worker has done, for its heartbeat.
    pub counters: Arc<super::status::Counters>,
}

impl Settler {
    pub fn new(fleet: Fleet, runtime: tokio::runtime::Handle) -> Settler {
        let settler = Settler {
            fleet,
            runtime,
            held: Arc::default(),
            pending: Arc::new((AtomicUsize::new(0), Notify::new())),
            counters: Arc::default(),
        };
        // Progress acks: three per ack wait, for every document held.
        let keeper = settler.clone();
        settler.runtime.spawn(async move {
            let every = secs(keeper.fleet.settings.ack_wait_secs / 3.0);
            loop {
                tokio::time::sleep(every).await;
                let held: Vec<String> = keeper.held.lock().unwrap().iter().cloned().collect();
                for reply in held {
                    let _ = keeper
                        .fleet
                        .client
                        .publish(reply, Bytes::from(AckKind::Progress))
                        .await;
                }
            }
        });
        settler
    }

    pub fn fleet(&self) -> &Fleet {
        &self.fleet
    }

    /// Runs `work` in the background, counted, so [`Settler::drain`] can wait for it.
    fn spawn(&self, reply: String, work: impl std::future::Future<Output = ()> + Send + 'static) {
        let pending = self.pending.clone();
        let held = self.held.clone();
        pending.0.fetch_add(1, Ordering::SeqCst);
        self.runtime.spawn(async move {
            work.await;
            held.lock().unwrap().remove(&reply);
            if pending.0.fetch_sub(1, Ordering::SeqCst) == 1 {
                pending.1.notify_waiters();
            }
        });
    }

    /// Waits (at most `limit`) until every settling has finished.
    pub async fn drain(&self, limit: Duration) {
        let wait = async {
            loop {
                let notified = self.pending.1.notified();
                if self.pending.0.load(Ordering::SeqCst) == 0 {
                    return;
                }
                notified.await;
            }
        };
        if tokio::time::timeout(limit, wait).await.is_err() {
            tracing::warn!(
                unsettled = self.pending.0.load(Ordering::SeqCst),
                "stopping with documents unsettled; JetStream redelivers them after the ack wait"
            );
        }
    }

    async fn answer(&self, reply: &str, kind: AckKind) {
        let client = &self.fleet.client;
        if let Err(e) = client.publish(reply.to_owned(), Bytes::from(kind)).await {
            tracing::warn!(error = %e, "cannot answer a queue message; it will be redelivered");
        }
        let _ = client.flush().await;
    }

    /// Publishes until JetStream stores the message (or gives up after a few minutes,
    /// leaving the document to be redelivered). Whether it was stored.
    async fn store(&self, subject: String, headers: HeaderMap, payload: Bytes) -> bool {
        let mut wait = Duration::from_millis(100);
        for _ in 0..200 {
            let sent = self
                .fleet
                .js
                .publish_with_headers(subject.clone(), headers.clone(), payload.clone())
                .await;
            match sent {
                Ok(ack) => match ack.await {
                    Ok(_) => return true,
                    Err(e) => tracing::debug!(error = %e, %subject, "not stored yet; retrying"),
                },
                Err(e) => tracing::debug!(error = %e, %subject, "cannot publish yet; retrying"),
            }
            tokio::time::sleep(wait).await;
            wait = (wait * 2).min(Duration::from_secs(2));
        }
        tracing::error!(%subject, "JetStream did not store a message in minutes; the document will be redelivered");
        false
    }
}

/// A worker's claim on one queued document.
pub struct Ticket {
    reply: String,
    delivered: i64,
    /// The message as it came, for the dead-letter subject.
    payload: Bytes,
    headers: HeaderMap,
    /// Delivered more often than allowed without a result: record it and give it up.
    abandoned: bool,
    settled: AtomicBool,
    settler: Settler,
}

impl Ticket {
    /// For a transient failure with tries left: hands the document back (nak with
    /// back-off) and says so; the record is not written.
    pub fn hand_back(&self, record: &Record) -> bool {
        let max = self.settler.fleet.settings.max_deliver;
        if self.abandoned || !transient(record) || self.delivered >= max {
            return false;
        }
        self.settled.store(true, Ordering::SeqCst);
        self.settler
            .counters
            .handed_back
            .fetch_add(1, Ordering::Relaxed);
        let base = self.settler.fleet.settings.retry_backoff_secs;
        let delay = secs((base * 2f64.powi(self.delivered as i32 - 1)).min(60.0));
        tracing::info!(doc = %record.id, try_ = self.delivered, of = max, ?delay, kind = %record.error.as_ref().map(|e| e.kind.as_str()).unwrap_or(""), "transient failure: handed back to the queue");
        let settler = self.settler.clone();
        let reply = self.reply.clone();
        self.settler.spawn(self.reply.clone(), async move {
            settler.answer(&reply, AckKind::Nak(Some(delay))).await;
        });
        true
    }

    /// The record is written here: stores it in the results stream, dead-letters the
    /// document when it was given up, then acks the message.
    pub fn done(&self, record: &Record, line: &[u8]) {
        self.settled.store(true, Ordering::SeqCst);
        let counters = &self.settler.counters;
        counters.done.fetch_add(1, Ordering::Relaxed);
        if !record.ok {
            counters.failed.fetch_add(1, Ordering::Relaxed);
        }
        let fleet = &self.settler.fleet;
        let mut headers = HeaderMap::new();
        let id = header_text(&record.id);
        headers.insert("Nats-Msg-Id", format!("{id}@{}", record.version).as_str());
        headers.insert(ID_HEADER, id.as_str());
        headers.insert("Hybrid-Version", header_text(&record.version).as_str());
        headers.insert("Hybrid-Ok", if record.ok { "true" } else { "false" });
        let result = (
            fleet.address.results_subject(),
            headers,
            Bytes::from(line.trim_ascii_end().to_vec()),
        );
        let dead = (self.abandoned || (transient(record) && self.delivered >= fleet.settings.max_deliver))
            .then(|| {
                let mut headers = self.headers.clone();
                let error = record.error.as_ref();
                let id = header_text(&record.id);
                headers.insert("Nats-Msg-Id", format!("dead:{id}").as_str());
                headers.insert(ID_HEADER, id.as_str());
                headers.insert("Hybrid-Delivered", self.delivered.to_string().as_str());
                headers.insert("Hybrid-Error-Kind", header_text(error.map(|e| e.kind.as_str()).unwrap_or("")).as_str());
                // Header values are one line.
                let message = error.map(|e| header_text(&e.message.replace(['\r', '\n'], " "))).unwrap_or_default();
                headers.insert("Hybrid-Error", message.as_str());
                tracing::warn!(doc = %record.id, delivered = self.delivered, "given up: sent to the dead-letter subject");
                (fleet.address.dead_subject(), headers, self.payload.clone())
            });
        let settler = self.settler.clone();
        let reply = self.reply.clone();
        self.settler.spawn(self.reply.clone(), async move {
            let (subject, headers, payload) = result;
            if !settler.store(subject, headers, payload).await {
                return;
            }
            if let Some((subject, headers, payload)) = dead {
                if !settler.store(subject, headers, payload).await {
                    return;
                }
            }
            settler.answer(&reply, AckKind::Ack).await;
        });
    }
}

impl Drop for Ticket {
    fn drop(&mut self) {
        if !self.settled.load(Ordering::SeqCst) {
            let settler = self.settler.clone();
            let reply = self.reply.clone();
            self.settler.spawn(self.reply.clone(), async move {
                settler.answer(&reply, AckKind::Nak(None)).await;
            });
        }
    }
}

/// Pulls documents into `jobs` until `stop` turns true, never more than the channel has room
/// for. Survives the server going away: it keeps asking until it comes back.
pub async fn intake(
    settler: Settler,
    jobs: mpsc::Sender<Job>,
    max_bytes: u64,
    mut stop: watch::Receiver<bool>,
) -> Result<(), FleetError> {
    let fleet = settler.fleet.clone();
    let consumer = consumer(&fleet).await?;
    tracing::info!(queue = %fleet.address, "taking documents from the queue; Ctrl-C to stop");
    loop {
        let room = tokio::select! {
            permit = jobs.reserve() => match permit {
                Ok(permit) => permit,
                Err(_) => return Ok(()),
            },
            _ = stop.wait_for(|s| *s) => return Ok(()),
        };
        drop(room);
        let wanted = jobs.capacity().max(1);
        let batch = consumer
            .batch()
            .max_messages(wanted)
            .expires(Duration::from_secs(1))
            .messages()
            .await;
        let mut batch = match batch {
            Ok(batch) => batch,
            Err(e) => {
                tracing::debug!(error = %e, "cannot pull from the queue; retrying");
                tokio::time::sleep(Duration::from_millis(250)).await;
                continue;
            }
        };
        while let Some(message) = batch.next().await {
            let message = match message {
                Ok(m) => m,
                Err(e) => {
                    tracing::debug!(error = %e, "pull interrupted");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    break;
                }
            };
            let job = job_of(&settler, message, max_bytes).await;
            if jobs.send(job).await.is_err() {
                return Ok(());
            }
        }
    }
}

async fn consumer(
    fleet: &Fleet,
) -> Result<async_nats::jetstream::consumer::PullConsumer, FleetError> {
    let config = pull::Config {
        durable_name: Some(CONSUMER.into()),
        ack_wait: secs(fleet.settings.ack_wait_secs),
        // The host counts tries itself, so a document that killed its workers is still
        // recorded and dead-lettered instead of silently never delivered again.
        max_deliver: -1,
        ..Default::default()
    };
    let stream = fleet
        .js
        .get_stream(&fleet.address.stream)
        .await
        .map_err(|e| fleet.refused("the work queue", e))?;
    match stream.create_consumer(config.clone()).await {
        Ok(c) => Ok(c),
        // An older consumer with other settings: use it as it is.
        Err(e) => {
            tracing::debug!(error = %e, "using the existing consumer");
            stream
                .get_consumer(CONSUMER)
                .await
                .map_err(|e| fleet.refused("the workers' consumer", e))
        }
    }
}

/// A message as a job: its document (or why it is none) and its ticket.
async fn job_of(settler: &Settler, message: async_nats::jetstream::Message, max_bytes: u64) -> Job {
    let (delivered, sequence) = message
        .info()
        .map(|i| (i.delivered, i.stream_sequence))
        .unwrap_or((1, 0));
    let message = message.message;
    let reply = message
        .reply
        .as_ref()
        .map(|r| r.to_string())
        .unwrap_or_default();
    let headers = message.headers.clone().unwrap_or_default();
    let header = |name: &str| headers.get(name).map(|v| v.as_str().to_owned());
    let origin = format!("{}#{sequence}", settler.fleet.address.stream);
    let max = settler.fleet.settings.max_deliver;
    let abandoned = delivered > max;
    let id_hint = header(ID_HEADER).unwrap_or_else(|| origin.clone());
    let payload = message.payload.clone();
    let input = if abandoned {
        Err(documents::Failed {
            id: json_id(&payload).unwrap_or(id_hint.clone()),
            source: origin.clone(),
            reason: format!("delivered {delivered} times and no worker finished it (a worker may have died on it each time); given up after max_deliver = {max}\nhint: see the dead-letter subject {}; raise [fleet] max_deliver, or fix what kills the worker", settler.fleet.address.dead_subject()),
        })
    } else if payload.len() as u64 > max_bytes {
        Err(documents::Failed {
            id: id_hint.clone(),
            source: origin.clone(),
            reason: format!(
                "the message is {} bytes, over the {max_bytes}-byte limit (--max-doc-bytes)",
                payload.len()
            ),
        })
    } else if let Some(name) = header(NAME_HEADER) {
        // A PDF's or e-mail's text is extracted in the document's own job. Its source is
        // the queue message, never a path on this machine (the name is the sender's word).
        documents::read_later(
            id_hint.clone(),
            Some(origin.clone()),
            name,
            payload.to_vec(),
        )
        .map_err(|reason| documents::Failed {
            id: id_hint.clone(),
            source: origin.clone(),
            reason,
        })
    } else {
        documents::from_json(&payload, &origin).map_err(|reason| documents::Failed {
            id: id_hint.clone(),
            source: origin.clone(),
            reason,
        })
    };
    settler.held.lock().unwrap().insert(reply.clone());
    Job {
        input: input.map(Arc::new),
        inbox_file: None,
        resumable: false,
        ticket: Some(Ticket {
            reply,
            delivered,
            payload,
            headers,
            abandoned,
            settled: AtomicBool::new(false),
            settler: settler.clone(),
        }),
    }
}

/// The `id` of a JSON document body, if it has one.
fn json_id(payload: &[u8]) -> Option<String> {
    let value: serde_json::Value = serde_json::from_slice(payload).ok()?;
    match value.get("id")? {
        serde_json::Value::String(s) => Some(s.clone()),
        serde_json::Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// What `hybrid submit` did.
#[derive(Debug, Default)]
pub struct Submitted {
    pub queued: u64,
    /// Already on the queue (the same id within the duplicate window).
    pub duplicates: u64,
    /// Could not be queued; each was logged with its reason.
    pub failed: u64,
}

/// Puts documents on the queue: each JSONL line as a JSON message, any other file as raw
/// bytes with its id (the path as given) and name in headers. `Nats-Msg-Id` is the
/// document id, so submitting the same document twice queues it once.
pub async fn submit(fleet: &Fleet, inputs: &[PathBuf]) -> Result<Submitted, anyhow::Error> {
    let sources = documents::sources(inputs)?;
    let limit = fleet.client.server_info().max_payload as u64;
    let subject = fleet.address.work_subject();
    let mut done = Submitted::default();
    let mut waiting = Vec::new();
    let send = |id: String, headers: HeaderMap, body: Bytes, shown: String| {
        if body.len() as u64 > limit {
            tracing::error!(document = %shown, "{} bytes, over the server's max_payload of {limit}\nhint: raise max_payload in the nats-server configuration", body.len());
            return None;
        }
        // The id and the content: the same document submitted twice is queued once, an
        // edited one (same id, new content) is new work.
        let mut headers = headers;
        let msg_id = format!("{}#{}", header_text(&id), short_hash(&body));
        headers.insert("Nats-Msg-Id", msg_id.as_str());
        Some((subject.clone(), headers, body, shown))
    };
    for source in &sources {
        match source {
            Source::File(path) => {
                let shown = path.display().to_string();
                match std::fs::read(path) {
                    Ok(bytes) => {
                        let mut headers = HeaderMap::new();
                        headers.insert(ID_HEADER, header_text(&shown).as_str());
                        let name = path
                            .file_name()
                            .map(|n| n.to_string_lossy().into_owned())
                            .unwrap_or_else(|| shown.clone());
                        headers.insert(NAME_HEADER, header_text(&name).as_str());
                        match send(shown.clone(), headers, Bytes::from(bytes), shown) {
                            Some(m) => waiting.push(m),
                            None => done.failed += 1,
                        }
                    }
                    Err(e) => {
                        tracing::error!(document = %shown, "cannot read: {e}");
                        done.failed += 1;
                    }
                }
            }
            Source::Jsonl(_) | Source::Stdin => {
                let (reader, origin): (Box<dyn std::io::BufRead>, String) = match source {
                    Source::Jsonl(path) => (
                        Box::new(std::io::BufReader::new(std::fs::File::open(path)?)),
                        path.display().to_string(),
                    ),
                    _ => (Box::new(std::io::stdin().lock()), "-".into()),
                };
                for (n, line) in std::io::BufRead::lines(reader).enumerate() {
                    let line = line?;
                    if line.trim().is_empty() {
                        continue;
                    }
                    let at = format!("{origin}:{}", n + 1);
                    match documents::from_json(line.as_bytes(), &at) {
                        // A line without an `id` is known by its content alone.
                        Ok(doc) => match send(
                            if doc.id == at { String::new() } else { doc.id },
                            HeaderMap::new(),
                            Bytes::from(line),
                            at,
                        ) {
                            Some(m) => waiting.push(m),
                            None => done.failed += 1,
                        },
                        Err(reason) => {
                            tracing::error!(document = %at, "not queued: {reason}");
                            done.failed += 1;
                        }
                    }
                }
            }
        }
    }
    // In flight together, a few hundred at a time.
    for chunk in waiting.chunks(256) {
        let mut acks = Vec::new();
        for (subject, headers, body, shown) in chunk.iter().cloned() {
            match fleet.js.publish_with_headers(subject, headers, body).await {
                Ok(ack) => acks.push((ack, shown)),
                Err(e) => {
                    tracing::error!(document = %shown, "not queued: {e}");
                    done.failed += 1;
                }
            }
        }
        for (ack, shown) in acks {
            match ack.await {
                Ok(ack) if ack.duplicate => done.duplicates += 1,
                Ok(_) => done.queued += 1,
                Err(e) => {
                    tracing::error!(document = %shown, "not queued: {e}");
                    done.failed += 1;
                }
            }
        }
    }
    Ok(done)
}
