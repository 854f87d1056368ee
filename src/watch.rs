//! Live rules: watch the script, its imports and the schemas, rebuild the bundle when they
//! change, and swap it in atomically — or keep the last good one when the edit is broken.
//!
//! The watcher runs on its own thread and watches *directories*, not files, so editors that
//! save by writing a temporary file and renaming it over the old one, and files deleted and
//! created again, are all seen. A burst of events is allowed to settle before rebuilding.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use notify::{RecursiveMode, Watcher};

use crate::bundle::Bundle;
use crate::config::Limits;

/// How long the rules files must stay quiet before a rebuild. An editor's save (write a
/// temporary file, rename it over the old one) is over within a few milliseconds; a build of a
/// half-written file is harmless (rejected, the last good version keeps running, the next
/// event rebuilds), so the wait is short. Inbox files have their own, longer settle.
pub const SETTLE: Duration = Duration::from_millis(25);
/// The longest a steady stream of events can delay a rebuild.
const MAX_SETTLE: Duration = Duration::from_secs(1);

/// Keeps the watcher alive; dropping it stops watching.
pub struct RulesWatcher {
    _thread: std::thread::JoinHandle<()>,
}

/// A check a new version must pass before it is swapped in (the pipeline's cases); the
/// reason it failed.
pub type Gate = Arc<dyn Fn(&Bundle) -> Result<(), String> + Send + Sync>;

/// What a rebuild needs.
#[derive(Clone)]
pub struct BuildSpec {
    pub script: PathBuf,
    pub schemas: Option<PathBuf>,
    pub limits: Limits,
    /// Run on every new version that compiles; a failure keeps the last good version.
    pub gate: Option<Gate>,
    /// Told of each swap, to watch the new version's first documents.
    pub probation: Option<Arc<crate::probation::Probation>>,
}

impl BuildSpec {
    pub fn build(&self) -> Result<Bundle, crate::bundle::BundleError> {
        Bundle::build(&self.script, self.schemas.as_deref(), &self.limits)
    }
}

/// Starts watching the current bundle's files and swapping in rebuilt bundles.
pub fn spawn(spec: BuildSpec, current: Arc<ArcSwap<Bundle>>) -> notify::Result<RulesWatcher> {
    let (tx, rx) = mpsc::channel();
    let mut watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
        let _ = tx.send(event);
    })?;
    let mut watched = BTreeSet::new();
    let _ = rewatch(
        &mut watcher,
        &mut watched,
        &dirs_to_watch(&spec, &current.load()),
    );
    let thread = std::thread::Builder::new()
        .name("rules-watcher".into())
        .spawn(move || {
            // The watcher must live as long as this loop.
            let mut watcher = watcher;
            while let Ok(first) = rx.recv() {
                if !is_relevant(&first, &current.load(), &watched) {
                    continue;
                }
                // Let the burst settle: rebuild once rules files have been quiet for SETTLE.
                // Other files in the same folders (results, logs) do not hold it back.
                let started = Instant::now();
                let mut quiet_from = Instant::now();
                loop {
                    let now = Instant::now();
                    let wait = (quiet_from + SETTLE)
                        .min(started + MAX_SETTLE)
                        .saturating_duration_since(now);
                    if wait.is_zero() {
                        break;
                    }
                    match rx.recv_timeout(wait) {
                        Ok(event) if is_relevant(&event, &current.load(), &watched) => {
                            quiet_from = Instant::now()
                        }
                        Ok(_) => {}
                        Err(mpsc::RecvTimeoutError::Timeout) => break,
                        Err(mpsc::RecvTimeoutError::Disconnected) => return,
                    }
                }
                reload(&spec, &current);
                let added = rewatch(
                    &mut watcher,
                    &mut watched,
                    &dirs_to_watch(&spec, &current.load()),
                );
                // Files written into a folder before it was watched raised no event: if a newly
                // watched folder already holds rules files, build once more to pick them up.
                if added.iter().any(|dir| holds_rules_files(dir)) {
                    reload(&spec, &current);
                }
            }
        });
    Ok(RulesWatcher {
        _thread: thread.map_err(|e| notify::Error::generic(&e.to_string()))?,
    })
}

/// Rebuilds and swaps, or keeps the old bundle and says why.
pub fn reload(spec: &BuildSpec, current: &ArcSwap<Bundle>) {
    let started = Instant::now();
    match spec.build() {
        Ok(new) => {
            let old = current.load();
            if new.version == old.version {
                tracing::debug!(version = %new.version, "rules unchanged");
                return;
            }
            let changed = changed_files(&old.files, &new.files);
            if let Some(gate) = &spec.gate {
                if let Err(why) = gate(&new) {
                    crate::console::metrics::global().reload("rejected");
                    tracing::error!(
                        keeping = %old.version,
                        rejected = %new.version,
                        changed = %changed.join(", "),
                        "rules not reloaded, the last good version keeps running: the new version fails the pipeline's cases\n{why}"
                    );
                    return;
                }
            }
            tracing::info!(
                old = %old.version,
                new = %new.version,
                changed = %changed.join(", "),
                build_ms = started.elapsed().as_millis() as u64,
                "rules reloaded"
            );
            let version = new.version.clone();
            let old = current.swap(Arc::new(new));
            let metrics = crate::console::metrics::global();
            metrics.reload("swapped");
            metrics.set_version(&version);
            if let Some(probation) = &spec.probation {
                probation.swapped(old, &version);
            }
        }
        Err(e) => {
            crate::console::metrics::global().reload("rejected");
            tracing::error!(
                keeping = %current.load().version,
                "rules not reloaded, the last good version keeps running:\n{e}"
            );
        }
    }
}

/// Which files differ between two versions: added, removed or edited.
fn changed_files(old: &BTreeMap<PathBuf, String>, new: &BTreeMap<PathBuf, String>) -> Vec<String> {
    let mut out = Vec::new();
    for (path, hash) in new {
        match old.get(path) {
            None => out.push(format!("+{}", path.display())),
            Some(h) if h != hash => out.push(path.display().to_string()),
            _ => {}
        }
    }
    for path in old.keys().filter(|p| !new.contains_key(*p)) {
        out.push(format!("-{}", path.display()));
    }
    out
}

/// The folders holding the bundle's files, the script's folder, the schemas folder, and the
/// `stdlib/` override folders.
fn dirs_to_watch(spec: &BuildSpec, bundle: &Bundle) -> BTreeSet<PathBuf> {
    let mut dirs: BTreeSet<PathBuf> = bundle.files.keys().filter_map(|f| parent(f)).collect();
    dirs.extend(parent(&spec.script));
    if let Some(dir) = bundle.schemas.dir() {
        dirs.insert(dir.to_owned());
    }
    for dir in crate::config::script_dirs(&spec.script) {
        let stdlib = dir.join("stdlib");
        if stdlib.is_dir() {
            dirs.insert(stdlib);
        }
    }
    // Imports the script names now — possibly in folders that do not exist yet (the edit that
    // adds `import "helpers/fmt"` before `helpers/` is created): watch the nearest folder that
    // exists, so creating the rest is seen.
    let script_dir = parent(&spec.script).unwrap_or_else(|| PathBuf::from("."));
    for import in named_imports(&spec.script) {
        let mut dir = parent(&script_dir.join(&import)).unwrap_or_else(|| script_dir.clone());
        while !dir.is_dir() && dir.starts_with(&script_dir) && dir != script_dir {
            dir = parent(&dir).unwrap_or_else(|| script_dir.clone());
        }
        dirs.insert(dir);
    }
    dirs.into_iter().filter(|d| d.is_dir()).collect()
}

/// The script's own `import "..."` paths, read straight from its text (it may not compile).
fn named_imports(script: &Path) -> Vec<String> {
    let text = std::fs::read_to_string(script).unwrap_or_default();
    text.match_indices("import")
        .filter_map(|(i, _)| {
            let rest = text[i + "import".len()..].trim_start();
            let rest = rest.strip_prefix('"')?;
            let path = &rest[..rest.find('"')?];
            (!path.starts_with("hybrid/") && !path.contains("..")).then(|| path.to_owned())
        })
        .collect()
}

fn parent(path: &Path) -> Option<PathBuf> {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => Some(p.to_owned()),
        _ => Some(PathBuf::from(".")),
    }
}

/// Watches exactly `wanted`; returns the folders newly watched.
fn rewatch(
    watcher: &mut impl Watcher,
    watched: &mut BTreeSet<PathBuf>,
    wanted: &BTreeSet<PathBuf>,
) -> Vec<PathBuf> {
    let mut added = Vec::new();
    for dir in watched.difference(wanted).cloned().collect::<Vec<_>>() {
        let _ = watcher.unwatch(&dir);
        watched.remove(&dir);
    }
    for dir in wanted.difference(watched).cloned().collect::<Vec<_>>() {
        match watcher.watch(&dir, RecursiveMode::NonRecursive) {
            Ok(()) => {
                watched.insert(dir.clone());
                added.push(dir);
            }
            Err(e) => tracing::warn!(dir = %dir.display(), "cannot watch: {e}"),
        }
    }
    added
}

fn holds_rules_files(dir: &Path) -> bool {
    std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .any(|e| {
            let p = e.path();
            p.is_file()
                && matches!(
                    p.extension().and_then(|x| x.to_str()),
                    Some("rhai" | "json")
                )
        })
}

/// Rules files are `.rhai` and `.json` files in the watched folders (new imports and new
/// schemas count), or any file the bundle was built from.
fn is_relevant(
    event: &notify::Result<notify::Event>,
    bundle: &Bundle,
    watched: &BTreeSet<PathBuf>,
) -> bool {
    let Ok(event) = event else { return true };
    if event.kind.is_access() {
        return false;
    }
    // A new folder may be where a pending import is about to appear.
    if matches!(
        event.kind,
        notify::EventKind::Create(notify::event::CreateKind::Folder)
    ) {
        return true;
    }
    event.paths.iter().any(|p| {
        let ext = p.extension().and_then(|e| e.to_str()).unwrap_or("");
        let name = p.file_name().and_then(|n| n.to_str()).unwrap_or("");
        let in_bundle = bundle
            .files
            .keys()
            .any(|f| f == p || f.file_name() == p.file_name() && same_dir(f, p));
        in_bundle
            || (matches!(ext, "rhai" | "json")
                && !name.starts_with('.')
                && watched.iter().any(|d| same_dir(&d.join("x"), p)))
    })
}

/// Whether two paths name files in the same folder, however each was spelled.
fn same_dir(a: &Path, b: &Path) -> bool {
    let canon = |p: &Path| {
        p.parent().and_then(|d| {
            if d.as_os_str().is_empty() {
                Path::new(".").canonicalize().ok()
            } else {
                d.canonicalize().ok()
            }
        })
    };
    canon(a).is_some() && canon(a) == canon(b)
}
