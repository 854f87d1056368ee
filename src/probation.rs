//! Probation after a live reload: a new version that compiled and passed the cases can still be
//! wrong on real traffic (a rule that throws on half the documents). For its first
//! `[reload] probation_docs` documents the host compares its failure rate with the version it
//! replaced; past the old rate plus `max_failure_increase`, it swaps the old version back, says
//! why, and lists the documents the bad version handled (their records carry its version, so
//! they can be run again: see the README's "Live rules").

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use arc_swap::ArcSwap;
use serde::Deserialize;

use crate::bundle::Bundle;
use crate::record::Record;

/// `[reload]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ReloadFile {
    /// Documents a new version is watched for after a swap (0: no probation).
    pub probation_docs: usize,
    /// How much higher than the old version's its failure rate may be (0.2 = 20 points).
    pub max_failure_increase: f64,
}

impl Default for ReloadFile {
    fn default() -> Self {
        ReloadFile {
            probation_docs: 50,
            max_failure_increase: 0.2,
        }
    }
}

/// A version on probation.
struct Trial {
    old: Arc<Bundle>,
    new_version: String,
    seen: usize,
    failed: usize,
    documents: Vec<String>,
}

#[derive(Default)]
struct State {
    /// Documents and failures by version, over the run.
    history: HashMap<String, (usize, usize)>,
    trial: Option<Trial>,
}

/// The probation of the version running now, if it is new.
pub struct Probation {
    current: Arc<ArcSwap<Bundle>>,
    settings: ReloadFile,
    state: Mutex<State>,
}

impl Probation {
    pub fn new(current: Arc<ArcSwap<Bundle>>, settings: ReloadFile) -> Probation {
        Probation {
            current,
            settings,
            state: Mutex::new(State::default()),
        }
    }

    /// `new_version` has just replaced `old`.
    pub fn swapped(&self, old: Arc<Bundle>, new_version: &str) {
        if self.settings.probation_docs == 0 {
            return;
        }
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        state.trial = Some(Trial {
            old,
            new_version: new_version.to_owned(),
            seen: 0,
            failed: 0,
            documents: Vec::new(),
        });
    }

    /// A document's record: counted for its version, and for the version on probation judged.
    pub fn observe(&self, record: &Record) {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let entry = state.history.entry(record.version.clone()).or_default();
        entry.0 += 1;
        if !record.ok {
            entry.1 += 1;
        }
        let Some(trial) = state.trial.as_mut() else {
            return;
        };
        if record.version != trial.new_version {
            return;
        }
        trial.seen += 1;
        if !record.ok {
            trial.failed += 1;
        }
        trial.documents.push(record.id.clone());
        let (old_seen, old_failed) = state
            .history
            .get(&state.trial.as_ref().expect("a trial").old.version)
            .copied()
            .unwrap_or((0, 0));
        let trial = state.trial.as_ref().expect("a trial");
        let old_rate = if old_seen > 0 {
            old_failed as f64 / old_seen as f64
        } else {
            0.0
        };
        let limit = old_rate + self.settings.max_failure_increase;
        let window = self.settings.probation_docs as f64;
        // Failing already more than the whole window may: no need to wait for the rest.
        let hopeless = trial.failed as f64 / window > limit;
        let done = trial.seen >= self.settings.probation_docs;
        if hopeless || (done && trial.failed as f64 / trial.seen as f64 > limit) {
            let trial = state.trial.take().expect("a trial");
            let rate = trial.failed as f64 / trial.seen as f64;
            self.current.store(trial.old.clone());
            let metrics = crate::console::metrics::global();
            metrics.reload("rolled_back");
            metrics.set_version(&trial.old.version);
            tracing::error!(
                rolled_back = %trial.new_version,
                running = %trial.old.version,
                failed = trial.failed,
                of = trial.seen,
                "rules rolled back: version {} failed {} of its {} documents ({:.0}%, the old version {:.0}%, allowed +{:.0} points); the last good version runs again. Documents it handled (their records carry version {}): {}",
                trial.new_version,
                trial.failed,
                trial.seen,
                rate * 100.0,
                old_rate * 100.0,
                self.settings.max_failure_increase * 100.0,
                trial.new_version,
                trial.documents.join(", ")
            );
        } else if done {
            let trial = state.trial.take().expect("a trial");
            tracing::info!(version = %trial.new_version, failed = trial.failed, of = trial.seen, "probation passed");
        }
    }
}
