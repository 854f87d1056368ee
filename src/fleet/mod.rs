//! # The fleet: many hosts as one system on a NATS JetStream work queue
//!
//! One machine is where a team starts; a document flow that outgrows it is shared by many
//! `hybrid run` workers pulling from one queue, with the single host's guarantees kept:
//!
//! - **Documents in** ([`queue`]): `nats://HOST:PORT/STREAM` as a run's INPUT makes the host a
//!   worker on the durable pull consumer of the work-queue stream `STREAM` (subject
//!   `STREAM.in`). `hybrid submit` puts documents there.
//! - **Results out**: each record is published to `STREAM.results` (stream `STREAM_RESULTS`)
//!   with `Nats-Msg-Id` = document id + rules version, and the document's message is acked
//!   only after JetStream has stored the record. A redelivered document therefore never
//!   makes a second record: at-least-once processing, exactly one stored result.
//! - **Failures**: transient model failures hand the document back (nak with back-off);
//!   after `max_deliver` tries, or for good failures, the record is stored; a document that
//!   never got a result goes to `STREAM.dead` with its last error.
//! - **Rules** ([`rules`]): `hybrid rules push` stores a checked bundle as a revision of the
//!   key `NAME` in the key-value bucket `STREAM_rules`; every worker watches it and swaps in
//!   new revisions as a local `--watch` reload does, keeping its last good version when one
//!   fails there.
//! - **Status** ([`status`]): each worker keeps a heartbeat entry in `STREAM_fleet` (entries
//!   expire, so a dead worker drops out); `hybrid fleet status` lists them with queue depth.

pub mod queue;
pub mod rules;
pub mod status;

use std::time::Duration;

use async_nats::jetstream::{self, kv, stream};
use serde::Deserialize;

/// `[fleet]` in hybrid.toml.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct FleetFile {
    /// Seconds a worker holds a document before JetStream gives it to another (a worker
    /// working on a long document keeps its hold with progress acks).
    pub ack_wait_secs: f64,
    /// Tries per document before it is given up (its record stored, the document
    /// dead-lettered).
    pub max_deliver: i64,
    /// First back-off after a transient failure, doubled per try (at most a minute).
    pub retry_backoff_secs: f64,
    /// How often a worker writes its heartbeat; it expires after three missed ones.
    pub heartbeat_secs: f64,
    /// How long JetStream remembers a result's id to drop a redelivered duplicate.
    pub duplicate_window_secs: f64,
}

impl Default for FleetFile {
    fn default() -> Self {
        FleetFile {
            ack_wait_secs: 30.0,
            max_deliver: 5,
            retry_backoff_secs: 1.0,
            heartbeat_secs: 5.0,
            duplicate_window_secs: 3600.0,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum FleetError {
    #[error("`{0}` is not a queue address\nhint: write nats://HOST:PORT/STREAM, e.g. nats://127.0.0.1:4222/contracts (STREAM: letters, digits, `-` and `_`)")]
    Address(String),
    #[error("cannot reach NATS at {server}: {message}\nhint: start a server with JetStream on (`nats-server -js`), or check the address")]
    Connect { server: String, message: String },
    #[error("JetStream at {server} refused {what}: {message}\nhint: the server must run with JetStream enabled (`nats-server -js`)")]
    JetStream {
        server: String,
        what: String,
        message: String,
    },
    #[error("{0}")]
    Rules(String),
}

/// Whether an INPUT names a queue rather than a file.
pub fn is_address(input: &str) -> bool {
    input.starts_with("nats://")
}

/// `nats://HOST:PORT/STREAM`, and the names of everything the fleet keeps for `STREAM`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Address {
    /// `nats://HOST:PORT`, what the client connects to.
    pub server: String,
    pub stream: String,
}

impl Address {
    pub fn parse(text: &str) -> Result<Address, FleetError> {
        let bad = || FleetError::Address(text.to_owned());
        let rest = text.strip_prefix("nats://").ok_or_else(bad)?;
        let (host, stream) = rest.split_once('/').ok_or_else(bad)?;
        let stream = stream.trim_end_matches('/');
        let valid = |s: &str| {
            !s.is_empty()
                && s.chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        };
        if host.is_empty() || !valid(stream) {
            return Err(bad());
        }
        Ok(Address {
            server: format!("nats://{host}"),
            stream: stream.to_owned(),
        })
    }

    pub fn work_subject(&self) -> String {
        format!("{}.in", self.stream)
    }
    pub fn results_stream(&self) -> String {
        format!("{}_RESULTS", self.stream)
    }
    pub fn results_subject(&self) -> String {
        format!("{}.results", self.stream)
    }
    pub fn dead_stream(&self) -> String {
        format!("{}_DEAD", self.stream)
    }
    pub fn dead_subject(&self) -> String {
        format!("{}.dead", self.stream)
    }
    pub fn rules_bucket(&self) -> String {
        format!("{}_rules", self.stream)
    }
    pub fn fleet_bucket(&self) -> String {
        format!("{}_fleet", self.stream)
    }
}

impl std::fmt::Display for Address {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.server, self.stream)
    }
}

/// A connection to the fleet's server, with its streams and buckets in place.
#[derive(Clone)]
pub struct Fleet {
    pub address: Address,
    pub client: async_nats::Client,
    pub js: jetstream::Context,
    pub settings: FleetFile,
}

impl Fleet {
    /// Connects (failing fast when nothing answers) and creates what is missing: the work
    /// queue, the results and dead-letter streams, the rules and heartbeat buckets. Once
    /// connected, the client reconnects by itself for as long as the host runs.
    pub async fn connect(address: &Address, settings: &FleetFile) -> Result<Fleet, FleetError> {
        let lost = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let client = async_nats::ConnectOptions::new()
            .name(format!("hybrid {}", std::process::id()))
            .connection_timeout(Duration::from_secs(5))
            .max_reconnects(None)
            .reconnect_delay_callback(|attempt| {
                Duration::from_millis((100 * attempt as u64).min(2_000))
            })
            .event_callback(move |event| {
                let lost = lost.clone();
                async move {
                    match event {
                        async_nats::Event::Disconnected => {
                            lost.store(true, std::sync::atomic::Ordering::Relaxed);
                            tracing::warn!("lost the NATS server; reconnecting")
                        }
                        async_nats::Event::Connected
                            if lost.swap(false, std::sync::atomic::Ordering::Relaxed) =>
                        {
                            tracing::info!("reconnected to the NATS server")
                        }
                        other => tracing::debug!(event = %other, "NATS"),
                    }
                }
            })
            .connect(address.server.as_str())
            .await
            .map_err(|e| FleetError::Connect {
                server: address.server.clone(),
                message: e.to_string(),
            })?;
        let mut js = jetstream::new(client.clone());
        js.set_timeout(Duration::from_secs(10));
        let fleet = Fleet {
            address: address.clone(),
            client,
            js,
            settings: settings.clone(),
        };
        fleet.ensure().await?;
        Ok(fleet)
    }

    fn refused(&self, what: &str, e: impl std::fmt::Display) -> FleetError {
        FleetError::JetStream {
            server: self.address.server.clone(),
            what: what.to_owned(),
            message: e.to_string(),
        }
    }

    async fn ensure(&self) -> Result<(), FleetError> {
        let a = &self.address;
        let streams = [
            stream::Config {
                name: a.stream.clone(),
                subjects: vec![a.work_subject()],
                retention: stream::RetentionPolicy::WorkQueue,
                storage: stream::StorageType::File,
                // A document submitted twice (same id) within the window is queued once.
                duplicate_window: secs(self.settings.duplicate_window_secs),
                ..Default::default()
            },
            stream::Config {
                name: a.results_stream(),
                subjects: vec![a.results_subject()],
                storage: stream::StorageType::File,
                duplicate_window: secs(self.settings.duplicate_window_secs),
                ..Default::default()
            },
            stream::Config {
                name: a.dead_stream(),
                subjects: vec![a.dead_subject()],
                storage: stream::StorageType::File,
                duplicate_window: secs(self.settings.duplicate_window_secs),
                ..Default::default()
            },
        ];
        for config in streams {
            let name = config.name.clone();
            self.js
                .get_or_create_stream(config)
                .await
                .map_err(|e| self.refused(&format!("the stream `{name}`"), e))?;
        }
        self.rules_bucket().await?;
        self.fleet_bucket().await?;
        Ok(())
    }

    pub async fn rules_bucket(&self) -> Result<kv::Store, FleetError> {
        // The most revisions JetStream keeps per key (its limit): the rollback horizon.
        self.bucket(
            self.address.rules_bucket(),
            "hybrid rule bundles, one key per pipeline",
            64,
            Duration::ZERO,
            stream::StorageType::File,
        )
        .await
    }

    pub async fn fleet_bucket(&self) -> Result<kv::Store, FleetError> {
        // A worker that misses three heartbeats drops out of `fleet status`.
        self.bucket(
            self.address.fleet_bucket(),
            "hybrid worker heartbeats",
            1,
            secs(self.settings.heartbeat_secs * 3.0),
            stream::StorageType::Memory,
        )
        .await
    }

    /// A key-value bucket, created when missing. The client's own `create_key_value` first
    /// asks for account details in a form nats-server 2.9 does not send, so the bucket's
    /// stream is made here, as the key-value convention lays it out (`KV_NAME`, subjects
    /// `$KV.NAME.>`, one message per key and revision).
    async fn bucket(
        &self,
        name: String,
        description: &str,
        history: i64,
        max_age: Duration,
        storage: stream::StorageType,
    ) -> Result<kv::Store, FleetError> {
        if let Ok(store) = self.js.get_key_value(&name).await {
            return Ok(store);
        }
        let config = stream::Config {
            name: format!("KV_{name}"),
            description: Some(description.into()),
            subjects: vec![format!("$KV.{name}.>")],
            max_messages_per_subject: history,
            max_bytes: -1,
            max_message_size: -1,
            max_age,
            storage,
            allow_rollup: true,
            deny_delete: true,
            allow_direct: true,
            discard: stream::DiscardPolicy::New,
            num_replicas: 1,
            ..Default::default()
        };
        self.js
            .get_or_create_stream(config)
            .await
            .map_err(|e| self.refused(&format!("the bucket `{name}`"), e))?;
        self.js
            .get_key_value(&name)
            .await
            .map_err(|e| self.refused(&format!("the bucket `{name}`"), e))
    }
}

pub(crate) fn secs(s: f64) -> Duration {
    Duration::from_secs_f64(s.max(0.001))
}

/// The key-value key a pipeline's rules live under: the script's file name without
/// `.rhai` (keys allow letters, digits, `-`, `_`, `/`, `=` and `.`).
pub fn pipeline_key(script: &std::path::Path) -> String {
    script
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default()
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "-_=".contains(c) {
                c
            } else {
                '_'
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_name_a_server_and_a_stream() {
        let a = Address::parse("nats://127.0.0.1:4222/contracts").unwrap();
        assert_eq!(a.server, "nats://127.0.0.1:4222");
        assert_eq!(a.stream, "contracts");
        assert_eq!(a.work_subject(), "contracts.in");
        assert_eq!(a.results_stream(), "contracts_RESULTS");
        assert_eq!(a.rules_bucket(), "contracts_rules");
        assert_eq!(a.to_string(), "nats://127.0.0.1:4222/contracts");
        for bad in [
            "nats://127.0.0.1:4222",
            "nats://127.0.0.1:4222/",
            "nats:///x",
            "nats://h/a.b",
            "http://h/x",
        ] {
            let err = Address::parse(bad).unwrap_err().to_string();
            assert!(
                err.contains("hint: write nats://HOST:PORT/STREAM"),
                "{bad}: {err}"
            );
        }
    }

    #[test]
    fn pipeline_keys_are_file_stems() {
        assert_eq!(
            pipeline_key(std::path::Path::new("scripts/contract_triage.rhai")),
            "contract_triage"
        );
        assert_eq!(pipeline_key(std::path::Path::new("a b.rhai")), "a_b");
    }
}
