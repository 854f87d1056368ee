//! Spend caps: what the cloud may cost, set by the operator instead of discovered on the bill.
//!
//! `[budget]` caps USD per run and per day, and optionally the share of a run's documents that
//! may go to the cloud; `[budget.scripts."PATH"]` adds caps for one pipeline (keyed by the
//! script's path relative to the settings file, like the guard's per-pipeline policy). Before a
//! cloud call its cost is estimated (prompt tokens counted, output at `max_tokens` or 400) and
//! reserved; a call that would pass a cap fails with kind `budget`, which scripts catch like any
//! other model error. After the call the estimate is replaced by the call record's `cost_usd`.
//!
//! Daily spend is kept in a ledger (`[budget] ledger`, by default `hybrid-spend.jsonl` beside
//! the settings file): one line per paid call, so a restarted `--watch` host and every pipeline
//! sharing the settings file count the same day. Days are UTC; a day's cap resets at 00:00 UTC.
//! Hosts running at once each count their own calls live and the others' as of their start.

use std::collections::{BTreeMap, HashSet};
use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use serde::{Deserialize, Serialize};

/// `[budget]`.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct BudgetFile {
    /// USD one run (one `hybrid run` process) may spend in the cloud.
    pub run_usd: Option<f64>,
    /// USD one UTC day may spend in the cloud, all pipelines together.
    pub daily_usd: Option<f64>,
    /// The largest share (0 to 1) of a run's documents that may call the cloud.
    pub max_cloud_share: Option<f64>,
    /// Where daily spend is kept [default: `hybrid-spend.jsonl` beside the settings file].
    pub ledger: Option<PathBuf>,
    /// `[budget.scripts."scripts/NAME.rhai"]`: caps for one pipeline.
    pub scripts: BTreeMap<String, Caps>,
}

/// Caps, for all pipelines or for one.
#[derive(Debug, Default, Clone, Copy, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Caps {
    /// USD one run (one `hybrid run` process) may spend in the cloud.
    pub run_usd: Option<f64>,
    /// USD one UTC day may spend in the cloud.
    pub daily_usd: Option<f64>,
    /// The largest share (0 to 1) of a run's documents that may call the cloud.
    pub max_cloud_share: Option<f64>,
}

impl BudgetFile {
    /// The caps for every pipeline.
    pub fn caps(&self) -> Caps {
        Caps {
            run_usd: self.run_usd,
            daily_usd: self.daily_usd,
            max_cloud_share: self.max_cloud_share,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum SpendError {
    #[error("[budget.scripts.{0}] names a pipeline by a bare name\nhint: key it by the script's path relative to the settings file, e.g. [budget.scripts.\"scripts/{0}.rhai\"]")]
    BareKey(String),
    #[error("{name} = {value} is not a cap\nhint: caps are positive numbers of USD; max_cloud_share is between 0 and 1")]
    Value { name: String, value: f64 },
    #[error("cannot use the spend ledger `{path}`: {source}")]
    Ledger {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// Which spend a cap limits.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Scope {
    Run,
    /// Every pipeline's spend today.
    Day,
    /// This pipeline's spend today.
    PipelineDay,
}

#[derive(Debug, Clone)]
struct Cap {
    /// As written in the settings file: `[budget] daily_usd`.
    name: String,
    limit: f64,
    scope: Scope,
}

/// Why a call was refused.
#[derive(Debug, Clone)]
pub struct Refusal {
    pub cap: String,
    pub limit: f64,
    pub spent: f64,
    pub estimate: f64,
    /// When the cap allows spending again: `next run`, or the next UTC midnight.
    pub resets: String,
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.cap.ends_with("max_cloud_share") {
            return write!(
                f,
                "the share of documents sent to the cloud would pass {} = {:.0}%; it resets {}",
                self.cap,
                self.limit * 100.0,
                self.resets
            );
        }
        write!(
            f,
            "this call (about ${:.4}) would take spend past {} = ${:.2} (${:.4} spent); it resets {}",
            self.estimate, self.cap, self.limit, self.spent, self.resets
        )
    }
}

/// A cost held for a call in flight.
#[derive(Debug)]
pub struct Reservation {
    estimate: f64,
}

#[derive(Default)]
struct State {
    day: String,
    run: f64,
    day_all: f64,
    day_pipeline: f64,
    reserved: f64,
    documents: usize,
    /// Documents that have made a cloud call (the documents count themselves, once).
    with_cloud: usize,
    warned: HashSet<String>,
}

/// The caps of one run and what has been spent against them.
pub struct Spend {
    caps: Vec<Cap>,
    share: Option<(String, f64)>,
    script: String,
    ledger: Option<(PathBuf, Mutex<std::fs::File>)>,
    state: Mutex<State>,
}

#[derive(Serialize, Deserialize)]
struct LedgerLine {
    day: String,
    at: String,
    script: String,
    usd: f64,
    document: String,
}

fn today() -> String {
    chrono::Utc::now().format("%Y-%m-%d").to_string()
}

fn next_midnight() -> String {
    let tomorrow = chrono::Utc::now().date_naive() + chrono::Days::new(1);
    format!("{tomorrow}T00:00:00Z")
}

impl Spend {
    /// The caps for `script` (run with the settings file `settings`), with the day's spend so
    /// far read from the ledger. `None` when no cap applies.
    pub fn open(
        file: &BudgetFile,
        script: &Path,
        settings: Option<&Path>,
    ) -> Result<Option<Spend>, SpendError> {
        let dir = crate::pipeline::settings_dir(settings);
        let (caps, share, key) = caps_for(file, script, &dir)?;
        if caps.is_empty() && share.is_none() {
            return Ok(None);
        }
        let mut state = State {
            day: today(),
            ..State::default()
        };
        let daily = caps.iter().any(|c| c.scope != Scope::Run);
        let ledger = if daily {
            let path = ledger_path(file, &dir);
            let (all, mine) = read_ledger(&path, &state.day, &key)?;
            state.day_all = all;
            state.day_pipeline = mine;
            let f = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(&path)
                .map_err(|source| SpendError::Ledger {
                    path: path.clone(),
                    source,
                })?;
            tracing::info!(ledger = %path.display(), spent_today_usd = all, "spend ledger");
            Some((path, Mutex::new(f)))
        } else {
            None
        };
        Ok(Some(Spend {
            caps,
            share,
            script: key,
            ledger,
            state: Mutex::new(state),
        }))
    }
}

/// The `[budget]` table checked for `script` without opening its ledger (`hybrid check`).
pub fn validate(
    file: &BudgetFile,
    script: &Path,
    settings: Option<&Path>,
) -> Result<(), SpendError> {
    caps_for(file, script, &crate::pipeline::settings_dir(settings)).map(|_| ())
}

fn ledger_path(file: &BudgetFile, dir: &Path) -> PathBuf {
    file.ledger
        .as_ref()
        .map(|p| {
            if p.is_absolute() {
                p.clone()
            } else {
                dir.join(p)
            }
        })
        .unwrap_or_else(|| dir.join("hybrid-spend.jsonl"))
}

/// The caps that apply to `script`, the strictest cloud share, and the pipeline's ledger key.
#[allow(clippy::type_complexity)]
fn caps_for(
    file: &BudgetFile,
    script: &Path,
    dir: &Path,
) -> Result<(Vec<Cap>, Option<(String, f64)>, String), SpendError> {
    let mut key = script.display().to_string();
    let mut pipeline = None;
    for (name, caps) in &file.scripts {
        if !name.ends_with(".rhai") {
            return Err(SpendError::BareKey(name.clone()));
        }
        if crate::pipeline::names_script(dir, name, script) {
            pipeline = Some((name.clone(), *caps));
            key = name.clone();
        }
    }
    let mut caps = Vec::new();
    let mut share = None;
    let mut add = |table: String, c: &Caps, pipeline: bool| -> Result<(), SpendError> {
        for (field, value, scope) in [
            ("run_usd", c.run_usd, Scope::Run),
            (
                "daily_usd",
                c.daily_usd,
                if pipeline {
                    Scope::PipelineDay
                } else {
                    Scope::Day
                },
            ),
        ] {
            if let Some(limit) = value {
                let name = format!("{table} {field}");
                if !(limit.is_finite() && limit >= 0.0) {
                    return Err(SpendError::Value { name, value: limit });
                }
                caps.push(Cap { name, limit, scope });
            }
        }
        if let Some(s) = c.max_cloud_share {
            let name = format!("{table} max_cloud_share");
            if !(0.0..=1.0).contains(&s) {
                return Err(SpendError::Value { name, value: s });
            }
            // The stricter share wins.
            if share.as_ref().is_none_or(|(_, old)| s < *old) {
                share = Some((name, s));
            }
        }
        Ok(())
    };
    add("[budget]".into(), &file.caps(), false)?;
    if let Some((name, c)) = &pipeline {
        add(format!("[budget.scripts.\"{name}\"]"), c, true)?;
    }
    Ok((caps, share, key))
}

impl Spend {
    /// A document started: the cloud share is of documents started so far.
    pub fn document_started(&self) {
        self.state
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .documents += 1;
    }

    fn roll_day(state: &mut State) {
        let now = today();
        if state.day != now {
            state.day = now;
            state.day_all = 0.0;
            state.day_pipeline = 0.0;
            state.warned.retain(|name| !name.ends_with("daily_usd"));
        }
    }

    /// Holds `estimate` USD for a cloud call, or says which cap refuses it. `first`: the
    /// document's first cloud call to get through (it then counts toward the cloud share).
    pub fn reserve(&self, first: bool, estimate: f64) -> Result<Reservation, Refusal> {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        Self::roll_day(&mut state);
        if let Some((name, share)) = &self.share {
            if first {
                let allowed = (share * state.documents.max(1) as f64).ceil() as usize;
                if state.with_cloud + 1 > allowed {
                    return Err(Refusal {
                        cap: name.clone(),
                        limit: *share,
                        spent: state.with_cloud as f64 / state.documents.max(1) as f64,
                        estimate,
                        resets: "as more documents run locally".into(),
                    });
                }
            }
        }
        for cap in &self.caps {
            let spent = match cap.scope {
                Scope::Run => state.run,
                Scope::Day => state.day_all,
                Scope::PipelineDay => state.day_pipeline,
            } + state.reserved;
            if spent + estimate > cap.limit {
                return Err(Refusal {
                    cap: cap.name.clone(),
                    limit: cap.limit,
                    spent,
                    estimate,
                    resets: match cap.scope {
                        Scope::Run => "at the next run".into(),
                        _ => format!("at {}", next_midnight()),
                    },
                });
            }
        }
        state.reserved += estimate;
        if first {
            state.with_cloud += 1;
        }
        Ok(Reservation { estimate })
    }

    /// The call is over: `actual` USD replaces the estimate (the estimate when the price is
    /// unknown), recorded in the ledger, with a warning the first time a cap passes 80%.
    pub fn settle(&self, reservation: Reservation, actual: Option<f64>, document: &str) {
        let usd = actual.unwrap_or(reservation.estimate);
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        Self::roll_day(&mut state);
        state.reserved = (state.reserved - reservation.estimate).max(0.0);
        state.run += usd;
        state.day_all += usd;
        state.day_pipeline += usd;
        for cap in &self.caps {
            let spent = match cap.scope {
                Scope::Run => state.run,
                Scope::Day => state.day_all,
                Scope::PipelineDay => state.day_pipeline,
            };
            if spent >= 0.8 * cap.limit && state.warned.insert(cap.name.clone()) {
                tracing::warn!(cap = %cap.name, spent_usd = spent, limit_usd = cap.limit, "cloud spend has passed 80% of {}", cap.name);
            }
        }
        let day = state.day.clone();
        drop(state);
        if usd > 0.0 {
            if let Some((path, file)) = &self.ledger {
                let line = LedgerLine {
                    day,
                    at: crate::audit::now(),
                    script: self.script.clone(),
                    usd,
                    document: document.to_owned(),
                };
                let text = format!("{}\n", serde_json::to_string(&line).unwrap_or_default());
                let mut f = file.lock().unwrap_or_else(|e| e.into_inner());
                if let Err(e) = f.write_all(text.as_bytes()).and_then(|_| f.flush()) {
                    tracing::error!(ledger = %path.display(), "cannot record spend: {e}");
                }
            }
        }
    }

    /// A call that was reserved but never made (a dry run).
    pub fn release(&self, reservation: Reservation) {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        state.reserved = (state.reserved - reservation.estimate).max(0.0);
    }
}

/// Today's spend in the ledger at `path`: all pipelines', and `script`'s. Lines of earlier days
/// are dropped (the file is rewritten with today's only), so it stays a day long.
fn read_ledger(path: &Path, day: &str, script: &str) -> Result<(f64, f64), SpendError> {
    let err = |source| SpendError::Ledger {
        path: path.to_owned(),
        source,
    };
    crate::sink::repair_tail(path).map_err(err)?;
    let Ok(f) = std::fs::File::open(path) else {
        return Ok((0.0, 0.0));
    };
    let (mut all, mut mine, mut kept, mut lines) = (0.0, 0.0, Vec::new(), 0);
    for line in std::io::BufReader::new(f).lines() {
        let line = line.map_err(err)?;
        lines += 1;
        let Ok(entry) = serde_json::from_str::<LedgerLine>(&line) else {
            continue;
        };
        if entry.day == day {
            all += entry.usd;
            if entry.script == script {
                mine += entry.usd;
            }
            kept.push(line);
        }
    }
    if kept.len() < lines {
        let mut text = kept.join("\n");
        if !text.is_empty() {
            text.push('\n');
        }
        let temporary = path.with_extension("jsonl.compacting");
        std::fs::write(&temporary, text)
            .and_then(|()| std::fs::rename(&temporary, path))
            .map_err(err)?;
    }
    Ok((all, mine))
}

/// Today's spend by pipeline in the ledger at `path`, read only.
fn today_by_script(path: &Path) -> BTreeMap<String, f64> {
    let day = today();
    let mut by = BTreeMap::new();
    if let Ok(f) = std::fs::File::open(path) {
        for line in std::io::BufReader::new(f).lines().map_while(Result::ok) {
            if let Ok(entry) = serde_json::from_str::<LedgerLine>(&line) {
                if entry.day == day {
                    *by.entry(entry.script).or_insert(0.0) += entry.usd;
                }
            }
        }
    }
    by
}

/// `hybrid report`'s lines on the caps: the results' cloud spend against the run caps, today's
/// ledger against the daily ones, the share of documents that went to the cloud.
pub fn report_lines(
    file: &BudgetFile,
    settings: Option<&Path>,
    cloud_usd: f64,
    cloud_share: f64,
) -> Vec<String> {
    let ledger = ledger_path(file, &crate::pipeline::settings_dir(settings));
    let today = today_by_script(&ledger);
    let all_today: f64 = today.values().sum();
    let pct = |spent: f64, cap: f64| {
        if cap > 0.0 {
            format!("{:.0}%", spent / cap * 100.0)
        } else {
            "-".into()
        }
    };
    let mut lines = Vec::new();
    let mut caps = vec![("[budget]".to_owned(), file.caps(), None)];
    for (key, c) in &file.scripts {
        caps.push((format!("[budget.scripts.\"{key}\"]"), *c, Some(key.clone())));
    }
    for (table, c, script) in caps {
        if let Some(cap) = c.run_usd {
            lines.push(format!(
                "{table} run_usd    USD {cloud_usd:.4} of {cap} in these results ({})",
                pct(cloud_usd, cap)
            ));
        }
        if let Some(cap) = c.daily_usd {
            let spent = match &script {
                Some(key) => today.get(key).copied().unwrap_or(0.0),
                None => all_today,
            };
            lines.push(format!(
                "{table} daily_usd  USD {spent:.4} of {cap} today, UTC ({}; ledger {})",
                pct(spent, cap),
                ledger.display()
            ));
        }
        if let Some(cap) = c.max_cloud_share {
            lines.push(format!(
                "{table} max_cloud_share  {:.0}% of documents went to the cloud, cap {:.0}%",
                cloud_share * 100.0,
                cap * 100.0
            ));
        }
    }
    lines
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spend(toml_text: &str, dir: &Path) -> Spend {
        let file: BudgetFile = toml::from_str(toml_text).unwrap();
        let script = dir.join("scripts/x.rhai");
        std::fs::create_dir_all(script.parent().unwrap()).unwrap();
        std::fs::write(&script, "fn process(doc) { 1 }").unwrap();
        Spend::open(&file, &script, Some(&dir.join("hybrid.toml")))
            .unwrap()
            .unwrap()
    }

    #[test]
    fn a_run_cap_refuses_the_call_that_would_pass_it() {
        let dir = tempfile::tempdir().unwrap();
        let s = spend("run_usd = 1.0", dir.path());
        let r = s.reserve(true, 0.6).unwrap();
        s.settle(r, Some(0.6), "a");
        let refused = s.reserve(true, 0.5).unwrap_err();
        assert_eq!(refused.cap, "[budget] run_usd");
        assert!(refused.to_string().contains("next run"), "{refused}");
        assert!(s.reserve(true, 0.3).is_ok());
    }

    #[test]
    fn daily_spend_survives_a_restart_through_the_ledger() {
        let dir = tempfile::tempdir().unwrap();
        let text = "daily_usd = 1.0\n[scripts.\"scripts/x.rhai\"]\ndaily_usd = 0.5\n";
        let s = spend(text, dir.path());
        let r = s.reserve(true, 0.4).unwrap();
        s.settle(r, Some(0.4), "a");
        drop(s);
        let s = spend(text, dir.path());
        // The pipeline's own day cap: 0.4 spent before the restart.
        let refused = s.reserve(true, 0.2).unwrap_err();
        assert_eq!(refused.cap, "[budget.scripts.\"scripts/x.rhai\"] daily_usd");
        assert!(refused.resets.contains("T00:00:00Z"));
        // An earlier day's lines do not count and are dropped.
        let ledger = dir.path().join("hybrid-spend.jsonl");
        let old = "{\"day\":\"2020-01-01\",\"at\":\"t\",\"script\":\"scripts/x.rhai\",\"usd\":9.0,\"document\":\"z\"}\n";
        let today = std::fs::read_to_string(&ledger).unwrap();
        std::fs::write(&ledger, format!("{old}{today}")).unwrap();
        let s = spend(text, dir.path());
        assert!(s.reserve(true, 0.05).is_ok());
        assert_eq!(std::fs::read_to_string(&ledger).unwrap(), today);
    }

    #[test]
    fn the_cloud_share_is_of_documents_started() {
        let dir = tempfile::tempdir().unwrap();
        let s = spend("max_cloud_share = 0.5", dir.path());
        let mut allowed = 0;
        for i in 0..10 {
            s.document_started();
            let doc = format!("d{i}");
            if let Ok(r) = s.reserve(true, 0.0) {
                allowed += 1;
                s.settle(r, Some(0.0), &doc);
                // A second call of the same document is not a second document.
                assert!(s.reserve(false, 0.0).is_ok());
            }
        }
        assert_eq!(allowed, 5);
    }

    #[test]
    fn bare_keys_and_bad_caps_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let script = dir.path().join("x.rhai");
        let file: BudgetFile = toml::from_str("[scripts.x]\nrun_usd = 1.0").unwrap();
        assert!(matches!(
            Spend::open(&file, &script, None),
            Err(SpendError::BareKey(_))
        ));
        let file: BudgetFile = toml::from_str("max_cloud_share = 2.0").unwrap();
        assert!(matches!(
            Spend::open(&file, &script, None),
            Err(SpendError::Value { .. })
        ));
    }
}
