//! Rules for the whole fleet: a checked bundle stored as a revision of a key-value entry,
//! followed by every worker.
//!
//! `hybrid rules push` builds the bundle exactly as `hybrid check` does and stores its files
//! (script, imports, schemas, by the paths it was built from) under the pipeline's key in
//! `STREAM_rules`. A worker builds each new revision from those files alone, so it computes
//! the same version the pusher did, and swaps it in as a local `--watch` reload does: a
//! document takes the rules once, when it starts. A revision that does not build on a
//! worker is rejected there, with a log line and an entry in the worker's heartbeat; the
//! worker keeps its last good version. `rules history` lists the key's revisions and
//! `rules rollback --to R` stores revision R's bundle again as the newest.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arc_swap::ArcSwap;
use async_nats::jetstream::kv;
use bytes::Bytes;
use futures_util::StreamExt;
use serde::{Deserialize, Serialize};

use super::{Fleet, FleetError};
use crate::bundle::{Bundle, Files};
use crate::config::Limits;

/// What a revision holds.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Pushed {
    /// The script, as the pusher named it (paths in `files` are relative to the same place).
    pub script: PathBuf,
    /// `--schemas`, when the pusher gave one.
    pub schemas: Option<PathBuf>,
    pub version: String,
    pub files: BTreeMap<PathBuf, String>,
    pub pushed_at: String,
    pub pushed_by: String,
    /// The revision this one restores, for a rollback.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rollback_of: Option<u64>,
}

impl Pushed {
    /// The bundle's files as read now; a file that changed since the build (its hash differs)
    /// fails the push rather than sending rules nobody checked.
    pub fn of(
        bundle: &Bundle,
        script: &Path,
        schemas: Option<&Path>,
    ) -> Result<Pushed, FleetError> {
        let mut files = BTreeMap::new();
        for (path, hash) in &bundle.files {
            let text = std::fs::read_to_string(path)
                .map_err(|e| FleetError::Rules(format!("cannot read {}: {e}", path.display())))?;
            if crate::schemas::hash_hex(text.as_bytes()) != *hash {
                return Err(FleetError::Rules(format!(
                    "{} changed while it was being pushed\nhint: push again",
                    path.display()
                )));
            }
            files.insert(path.clone(), text);
        }
        Ok(Pushed {
            script: script.to_owned(),
            schemas: schemas.map(Path::to_owned),
            version: bundle.version.clone(),
            files,
            pushed_at: crate::audit::now(),
            pushed_by: who(),
            rollback_of: None,
        })
    }

    /// Builds the bundle from the pushed files only.
    pub fn build(&self, limits: &Limits) -> Result<Bundle, crate::bundle::BundleError> {
        let files = Files::Pushed(Arc::new(self.files.clone()));
        Bundle::build_from(&self.script, self.schemas.as_deref(), limits, &files)
    }
}

/// `user@host`, for the history.
fn who() -> String {
    let user = std::env::var("USER").unwrap_or_else(|_| "?".into());
    format!("{user}@{}", host_name())
}

pub fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_owned())
        .or_else(|_| std::env::var("HOSTNAME"))
        .unwrap_or_else(|_| "localhost".into())
}

/// Stores `pushed` as the key's newest revision; returns the revision.
pub async fn push(fleet: &Fleet, key: &str, pushed: &Pushed) -> Result<u64, FleetError> {
    let store = fleet.rules_bucket().await?;
    let body = serde_json::to_vec(pushed).map_err(|e| FleetError::Rules(e.to_string()))?;
    store
        .put(key, Bytes::from(body))
        .await
        .map_err(|e| fleet.refused(&format!("the rules for `{key}`"), e))
}

/// One line of `hybrid rules history`.
#[derive(Debug, Serialize)]
pub struct Revision {
    pub revision: u64,
    pub version: String,
    pub pushed_at: String,
    pub pushed_by: String,
    pub rollback_of: Option<u64>,
}

pub async fn history(fleet: &Fleet, key: &str) -> Result<Vec<Revision>, FleetError> {
    let store = fleet.rules_bucket().await?;
    let mut entries = match store.history(key).await {
        Ok(h) => h,
        Err(e) => {
            return Err(FleetError::Rules(format!(
                "no rules pushed for `{key}` ({e})\nhint: `hybrid rules push scripts/{key}.rhai --to {}`",
                fleet.address
            )))
        }
    };
    let mut out = Vec::new();
    while let Some(entry) = entries.next().await {
        let entry = entry.map_err(|e| FleetError::Rules(e.to_string()))?;
        if entry.operation != kv::Operation::Put {
            continue;
        }
        if let Ok(p) = serde_json::from_slice::<Pushed>(&entry.value) {
            out.push(Revision {
                revision: entry.revision,
                version: p.version,
                pushed_at: p.pushed_at,
                pushed_by: p.pushed_by,
                rollback_of: p.rollback_of,
            });
        }
    }
    Ok(out)
}

/// Stores revision `to`'s bundle again as the newest revision.
pub async fn rollback(fleet: &Fleet, key: &str, to: u64) -> Result<(u64, String), FleetError> {
    let store = fleet.rules_bucket().await?;
    let entry = store
        .entry_for_revision(key, to)
        .await
        .ok()
        .flatten()
        .filter(|e| e.operation == kv::Operation::Put && e.key == key)
        .ok_or_else(|| {
            FleetError::Rules(format!(
                "`{key}` has no revision {to}\nhint: `hybrid rules history {key} --queue {}` lists them",
                fleet.address
            ))
        })?;
    let mut pushed: Pushed =
        serde_json::from_slice(&entry.value).map_err(|e| FleetError::Rules(e.to_string()))?;
    pushed.rollback_of = Some(to);
    pushed.pushed_at = crate::audit::now();
    pushed.pushed_by = who();
    let revision = push(fleet, key, &pushed).await?;
    Ok((revision, pushed.version))
}

/// What a worker knows of its rules, for its heartbeat.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Following {
    /// The revision running (none: the worker's own script file).
    pub revision: Option<u64>,
    /// The newest revision this worker could not build, and why.
    pub rejected: Option<(u64, String)>,
    /// The newest revision looked at, built or not.
    #[serde(skip)]
    pub seen: u64,
}

/// Builds and swaps in the key's newest revision, if there is one, before the worker takes
/// its first document, so a worker joining the fleet starts on the fleet's rules.
pub async fn adopt_latest(
    fleet: &Fleet,
    key: &str,
    limits: &Limits,
    current: &ArcSwap<Bundle>,
    state: &std::sync::Mutex<Following>,
) {
    let Ok(store) = fleet.rules_bucket().await else {
        return;
    };
    let Ok(Some(entry)) = store.entry(key).await else {
        tracing::info!(key, version = %current.load().version, "no rules pushed for this pipeline yet: running the local script");
        return;
    };
    if entry.operation != kv::Operation::Put {
        return;
    }
    settle(
        &entry.value,
        entry.revision,
        key,
        limits,
        current,
        None,
        state,
    );
}

/// Builds one revision and swaps it in, or rejects it and keeps the running version.
fn settle(
    value: &[u8],
    revision: u64,
    key: &str,
    limits: &Limits,
    current: &ArcSwap<Bundle>,
    probation: Option<&crate::probation::Probation>,
    state: &std::sync::Mutex<Following>,
) {
    let built = serde_json::from_slice::<Pushed>(value)
        .map_err(|e| format!("the revision is not a hybrid bundle: {e}"))
        .and_then(|pushed| pushed.build(limits).map_err(|e| e.to_string()));
    let mut s = state.lock().unwrap();
    s.seen = s.seen.max(revision);
    match built {
        Ok(new) => {
            let version = new.version.clone();
            let old = current.swap(Arc::new(new));
            let metrics = crate::console::metrics::global();
            metrics.reload("swapped");
            metrics.set_version(&version);
            tracing::info!(key, revision, old = %old.version, new = %version, "pushed rules swapped in");
            if let Some(probation) = probation.filter(|_| old.version != version) {
                probation.swapped(old, &version);
            }
            s.revision = Some(revision);
            if s.rejected.as_ref().is_some_and(|(r, _)| *r < revision) {
                s.rejected = None;
            }
        }
        Err(why) => {
            crate::console::metrics::global().reload("rejected");
            tracing::error!(key, revision, keeping = %current.load().version, "pushed rules rejected on this worker, the last good version keeps running:\n{why}");
            s.rejected = Some((revision, why));
        }
    }
}

/// Follows the pipeline's key: builds each revision and swaps it in, or rejects it and keeps
/// the last good version. Runs until the connection is dropped.
pub async fn follow(
    fleet: Fleet,
    key: String,
    limits: Limits,
    current: Arc<ArcSwap<Bundle>>,
    probation: Option<Arc<crate::probation::Probation>>,
    state: Arc<std::sync::Mutex<Following>>,
) {
    loop {
        let watch = match fleet.rules_bucket().await {
            Ok(store) => store
                .watch_with_history(&key)
                .await
                .map_err(|e| e.to_string()),
            Err(e) => Err(e.to_string()),
        };
        let mut watch = match watch {
            Ok(w) => w,
            Err(e) => {
                tracing::debug!(error = %e, "cannot watch the rules key yet; retrying");
                tokio::time::sleep(std::time::Duration::from_secs(1)).await;
                continue;
            }
        };
        while let Some(entry) = watch.next().await {
            let Ok(entry) = entry else { break };
            if entry.operation != kv::Operation::Put || state.lock().unwrap().seen >= entry.revision
            {
                continue;
            }
            let (key, limits, current, probation, state) = (
                key.clone(),
                limits.clone(),
                current.clone(),
                probation.clone(),
                state.clone(),
            );
            // Building compiles scripts and schemas: off the async threads.
            let _ = tokio::task::spawn_blocking(move || {
                settle(
                    &entry.value,
                    entry.revision,
                    &key,
                    &limits,
                    &current,
                    probation.as_deref(),
                    &state,
                )
            })
            .await;
        }
        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    }
}
