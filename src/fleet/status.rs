//! Who is working: each worker's heartbeat, and `hybrid fleet status`.
//!
//! A worker rewrites its entry in `STREAM_fleet` every `heartbeat_secs`; the bucket drops
//! entries older than three heartbeats, so a killed worker disappears by itself. The
//! status command reads the entries and the streams' counts: documents waiting, held by
//! workers, results stored, dead letters.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use arc_swap::ArcSwap;
use bytes::Bytes;
use futures_util::StreamExt;
use serde::{Deserialize, Serialize};

use super::rules::Following;
use super::{secs, Fleet, FleetError};
use crate::bundle::Bundle;

/// A worker's counters, updated as records are written.
#[derive(Debug, Default)]
pub struct Counters {
    pub done: AtomicU64,
    pub failed: AtomicU64,
    pub handed_back: AtomicU64,
}

/// One heartbeat entry.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Heartbeat {
    pub worker: String,
    pub pipeline: String,
    pub version: String,
    pub revision: Option<u64>,
    pub rejected: Option<(u64, String)>,
    pub done: u64,
    pub failed: u64,
    pub handed_back: u64,
    pub started: String,
    pub at: String,
}

/// This worker's name in the heartbeat bucket: `HOST-PID`.
pub fn worker_name() -> String {
    format!("{}-{}", super::rules::host_name(), std::process::id())
}

/// Takes this worker out of `fleet status` at once when it stops (instead of when its
/// heartbeat expires).
pub async fn sign_off(fleet: &Fleet) {
    if let Ok(store) = fleet.fleet_bucket().await {
        let _ = store.delete(worker_name()).await;
    }
}

/// Writes this worker's heartbeat until the host stops (the entry then expires).
pub async fn beat(
    fleet: Fleet,
    pipeline: String,
    current: Arc<ArcSwap<Bundle>>,
    following: Arc<Mutex<Following>>,
    counters: Arc<Counters>,
) {
    let worker = worker_name();
    let started = crate::audit::now();
    let every = secs(fleet.settings.heartbeat_secs);
    loop {
        let f = following.lock().unwrap().clone();
        let beat = Heartbeat {
            worker: worker.clone(),
            pipeline: pipeline.clone(),
            version: current.load().version.clone(),
            revision: f.revision,
            rejected: f.rejected,
            done: counters.done.load(Ordering::Relaxed),
            failed: counters.failed.load(Ordering::Relaxed),
            handed_back: counters.handed_back.load(Ordering::Relaxed),
            started: started.clone(),
            at: crate::audit::now(),
        };
        // The queue's depth, for the console's `documents_pending`.
        if let Some((waiting, _)) = depth(&fleet).await {
            crate::console::metrics::global()
                .pending
                .set(waiting as i64);
        }
        if let Ok(store) = fleet.fleet_bucket().await {
            let body = serde_json::to_vec(&beat).unwrap_or_default();
            if let Err(e) = store.put(&worker, Bytes::from(body)).await {
                tracing::debug!(error = %e, "heartbeat not written");
            }
        }
        tokio::time::sleep(every).await;
    }
}

/// What `hybrid fleet status` shows.
#[derive(Debug, Serialize)]
pub struct Status {
    pub queue: String,
    /// Documents on the queue not yet delivered to any worker.
    pub waiting: u64,
    /// Delivered and not yet acked (being worked on, or waiting out a back-off).
    pub held: u64,
    pub results: u64,
    pub dead: u64,
    pub workers: Vec<Heartbeat>,
}

/// Documents waiting for a worker and held by workers, from the workers' consumer.
async fn depth(fleet: &Fleet) -> Option<(u64, u64)> {
    let stream = fleet.js.get_stream(&fleet.address.stream).await.ok()?;
    let mut consumer: async_nats::jetstream::consumer::PullConsumer =
        stream.get_consumer(super::queue::CONSUMER).await.ok()?;
    let info = consumer.info().await.ok()?;
    Some((info.num_pending, info.num_ack_pending as u64))
}

pub async fn status(fleet: &Fleet) -> Result<Status, FleetError> {
    let a = &fleet.address;
    let count = |name: String| async move {
        match fleet.js.get_stream(&name).await {
            Ok(mut s) => s.info().await.map(|i| i.state.messages).unwrap_or(0),
            Err(_) => 0,
        }
    };
    // Before any worker made the consumer, everything in the stream is waiting.
    let (waiting, held) = match depth(fleet).await {
        Some(d) => d,
        None => (count(a.stream.clone()).await, 0),
    };
    let mut workers = Vec::new();
    let store = fleet.fleet_bucket().await?;
    if let Ok(mut keys) = store.keys().await {
        while let Some(Ok(key)) = keys.next().await {
            if let Ok(Some(value)) = store.get(&key).await {
                if let Ok(beat) = serde_json::from_slice::<Heartbeat>(&value) {
                    workers.push(beat);
                }
            }
        }
    }
    workers.sort_by(|a, b| a.worker.cmp(&b.worker));
    Ok(Status {
        queue: a.to_string(),
        waiting,
        held,
        results: count(a.results_stream()).await,
        dead: count(a.dead_stream()).await,
        workers,
    })
}

pub fn render(s: &Status) -> String {
    let mut out = format!(
        "queue {}: {} waiting, {} held by workers, {} results, {} dead letters\n",
        s.queue, s.waiting, s.held, s.results, s.dead
    );
    if s.workers.is_empty() {
        out.push_str("no live workers\n");
        return out;
    }
    out.push_str(&format!(
        "{:<28} {:<18} {:<14} {:>8} {:>6} {:>6} {:>8}  {}\n",
        "worker", "pipeline", "version", "revision", "done", "failed", "retried", "last seen"
    ));
    for w in &s.workers {
        out.push_str(&format!(
            "{:<28} {:<18} {:<14} {:>8} {:>6} {:>6} {:>8}  {}\n",
            w.worker,
            w.pipeline,
            w.version,
            w.revision
                .map(|r| r.to_string())
                .unwrap_or_else(|| "-".into()),
            w.done,
            w.failed,
            w.handed_back,
            w.at
        ));
        if let Some((revision, why)) = &w.rejected {
            let first = why.lines().next().unwrap_or("");
            out.push_str(&format!("    rejected revision {revision}: {first}\n"));
        }
    }
    out
}

/// Every message stored in the results stream (or the dead-letter stream), oldest first.
pub async fn stored(
    fleet: &Fleet,
    dead: bool,
    mut each: impl FnMut(async_nats::jetstream::message::StreamMessage),
) -> Result<(), FleetError> {
    let name = if dead {
        fleet.address.dead_stream()
    } else {
        fleet.address.results_stream()
    };
    let mut stream = fleet
        .js
        .get_stream(&name)
        .await
        .map_err(|e| fleet.refused(&format!("the stream `{name}`"), e))?;
    let state = stream
        .info()
        .await
        .map_err(|e| fleet.refused(&format!("the stream `{name}`"), e))?
        .state
        .clone();
    if state.messages == 0 {
        return Ok(());
    }
    for sequence in state.first_sequence..=state.last_sequence {
        if let Ok(message) = stream.get_raw_message(sequence).await {
            each(message);
        }
    }
    Ok(())
}

/// A dead letter as one JSON line: who, why, how often tried, and the document as it came
/// (its JSON, or for a raw file its name and size).
pub fn dead_letter_json(
    message: &async_nats::jetstream::message::StreamMessage,
) -> serde_json::Value {
    let header = |name: &str| message.headers.get(name).map(|v| v.as_str().to_owned());
    let document = match header(super::queue::NAME_HEADER) {
        Some(name) => serde_json::json!({"name": name, "bytes": message.payload.len()}),
        None => serde_json::from_slice(&message.payload)
            .unwrap_or_else(|_| serde_json::json!({"bytes": message.payload.len()})),
    };
    serde_json::json!({
        "id": header(super::queue::ID_HEADER),
        "delivered": header("Hybrid-Delivered").and_then(|d| d.parse::<u64>().ok()),
        "error_kind": header("Hybrid-Error-Kind"),
        "error": header("Hybrid-Error"),
        "at": message.time.to_string(),
        "document": document,
    })
}
