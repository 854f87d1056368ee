//! Watched inboxes: documents are processed as they arrive, each file exactly once, and only
//! once it is complete.
//!
//! A file is ready when its size and modification time have stayed the same for a settle
//! period, so a file still being written or copied in is never read half-way; a file renamed
//! into place is seen like any other. A state file beside the output records what was done
//! (and under which rules version), so a restart neither loses nor repeats work. File-system
//! events trigger checks; a periodic rescan catches anything the events missed.

use std::collections::{HashMap, HashSet};
use std::fs::OpenOptions;
use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use notify::{RecursiveMode, Watcher};
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;

use crate::documents;
use crate::record::Record;
use crate::runner::Job;

/// How long a file must stay unchanged before it is read.
pub const DEFAULT_SETTLE: Duration = Duration::from_millis(500);
/// A file seen being written is read when its writer closes it; if no close is ever seen
/// (some file systems do not report it), after it has been unchanged this long.
const WRITER_GRACE: Duration = Duration::from_secs(10);
/// How often the inboxes are rescanned even without events.
const RESCAN: Duration = Duration::from_secs(2);
const TICK: Duration = Duration::from_millis(100);

#[derive(Debug, thiserror::Error)]
pub enum InboxError {
    #[error("cannot use the state file `{path}`: {source}")]
    State {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot watch inbox `{path}`: {source}")]
    Watch {
        path: PathBuf,
        source: notify::Error,
    },
    #[error("inbox `{path}` is already watched by another hybrid host ({holder})\nhint: stop that host first, or give this one an inbox of its own; two hosts on one inbox would process every file twice")]
    Locked { path: PathBuf, holder: String },
    #[error("cannot lock inbox `{path}`: {source}")]
    Lock {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// The lock file each watched inbox holds, hidden so it is never taken for a document.
const LOCK_FILE: &str = ".hybrid.lock";

/// Takes the inbox's lock (released when the process ends, however it ends) and writes who
/// holds it, for the message a second host gets.
fn lock_inbox(dir: &Path, out: &Path) -> Result<std::fs::File, InboxError> {
    let path = dir.join(LOCK_FILE);
    let fail = |source| InboxError::Lock {
        path: dir.to_owned(),
        source,
    };
    let mut file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&path)
        .map_err(fail)?;
    match file.try_lock() {
        Ok(()) => {}
        Err(std::fs::TryLockError::WouldBlock) => {
            let mut holder = String::new();
            let _ = std::io::Read::read_to_string(&mut file, &mut holder);
            return Err(InboxError::Locked {
                path: dir.to_owned(),
                holder: if holder.trim().is_empty() {
                    "a process that has not said who it is".into()
                } else {
                    holder.trim().to_owned()
                },
            });
        }
        Err(std::fs::TryLockError::Error(e)) => return Err(fail(e)),
    }
    let who = format!(
        "pid {} since {}, writing `{}`",
        std::process::id(),
        crate::audit::now(),
        out.display()
    );
    file.set_len(0).map_err(fail)?;
    file.write_all(who.as_bytes()).map_err(fail)?;
    file.flush().map_err(fail)?;
    Ok(file)
}

/// A file's identity for "done already?": the same path with the same size and mtime.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct Stamp {
    size: u64,
    mtime_ns: u128,
}

fn stamp(path: &Path) -> Option<Stamp> {
    let meta = std::fs::metadata(path).ok()?;
    if !meta.is_file() {
        return None;
    }
    stamp_of(&meta)
}

fn stamp_of(meta: &std::fs::Metadata) -> Option<Stamp> {
    let mtime = meta
        .modified()
        .ok()?
        .duration_since(SystemTime::UNIX_EPOCH)
        .ok()?;
    Some(Stamp {
        size: meta.len(),
        mtime_ns: mtime.as_nanos(),
    })
}

/// One line of the state file.
#[derive(Debug, Serialize, Deserialize)]
struct Done {
    file: PathBuf,
    size: u64,
    mtime_ns: u128,
    version: String,
    ok: bool,
    at: String,
}

/// The record of what was processed, append-only JSONL beside the output.
pub struct StateFile {
    path: PathBuf,
    /// The append handle, the lines written to the file since it was last compacted, and the
    /// latest line per file (what a compaction keeps).
    file: Mutex<Appending>,
    done: Mutex<HashMap<PathBuf, Stamp>>,
}

struct Appending {
    file: std::fs::File,
    lines: usize,
    latest: HashMap<PathBuf, String>,
    /// Lines the last compaction kept.
    kept: usize,
}

/// A running host compacts its state file once it holds more than twice the lines it needs
/// plus this many: the file stays bounded by the inbox's size, not by its history.
const COMPACT_SLACK: usize = 1000;

impl StateFile {
    pub fn open(path: &Path) -> Result<StateFile, InboxError> {
        let err = |source| InboxError::State {
            path: path.to_owned(),
            source,
        };
        let mut done = HashMap::new();
        // A line cut by a crash would swallow the next one appended: move it aside first.
        crate::sink::repair_tail(path).map_err(err)?;
        // The latest line per file, for files still there (a moved or deleted file needs no
        // memory): the file is rewritten with just those, so it does not grow without end.
        let mut latest: HashMap<PathBuf, String> = HashMap::new();
        let mut lines = 0;
        if let Ok(f) = std::fs::File::open(path) {
            for line in std::io::BufReader::new(f).lines() {
                let line = line.map_err(err)?;
                lines += 1;
                if let Ok(d) = serde_json::from_str::<Done>(&line) {
                    latest.insert(d.file, line);
                }
            }
        }
        latest.retain(|file, _| file.exists());
        for (file, line) in &latest {
            if let Ok(d) = serde_json::from_str::<Done>(line) {
                done.insert(
                    file.clone(),
                    Stamp {
                        size: d.size,
                        mtime_ns: d.mtime_ns,
                    },
                );
            }
        }
        if lines > latest.len() {
            compact(path, latest.values()).map_err(err)?;
            tracing::debug!(state = %path.display(), lines, kept = latest.len(), "state file compacted");
        }
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .map_err(err)?;
        Ok(StateFile {
            path: path.to_owned(),
            file: Mutex::new(Appending {
                file,
                lines: latest.len(),
                kept: latest.len(),
                latest,
            }),
            done: Mutex::new(done),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    fn is_done(&self, path: &Path, stamp: &Stamp) -> bool {
        self.done
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(path)
            == Some(stamp)
    }

    /// Records that `path` (as it was when read) is done.
    fn mark(&self, path: &Path, stamp: Stamp, record: &Record) {
        let line = Done {
            file: path.to_owned(),
            size: stamp.size,
            mtime_ns: stamp.mtime_ns,
            version: record.version.clone(),
            ok: record.ok,
            at: crate::audit::now(),
        };
        let text = serde_json::to_string(&line).unwrap_or_default();
        let mut appending = self.file.lock().unwrap_or_else(|e| e.into_inner());
        let written = appending
            .file
            .write_all(format!("{text}\n").as_bytes())
            .and_then(|_| appending.file.flush());
        if let Err(e) = written {
            tracing::error!(state = %self.path.display(), "cannot record progress: {e}");
        }
        appending.lines += 1;
        appending.latest.insert(path.to_owned(), text);
        if appending.lines > 2 * appending.kept + COMPACT_SLACK {
            self.compact_running(&mut appending);
        }
        self.done
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(path.to_owned(), stamp);
    }
}

impl StateFile {
    /// Keeps the latest line of each file still in the inbox, and appends to the new file.
    fn compact_running(&self, appending: &mut Appending) {
        appending.latest.retain(|file, _| file.exists());
        self.done
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .retain(|file, _| file.exists());
        let reopened = compact(&self.path, appending.latest.values()).and_then(|()| {
            OpenOptions::new()
                .create(true)
                .append(true)
                .open(&self.path)
        });
        match reopened {
            Ok(file) => {
                tracing::debug!(state = %self.path.display(), lines = appending.lines, kept = appending.latest.len(), "state file compacted");
                appending.file = file;
                appending.lines = appending.latest.len();
                appending.kept = appending.latest.len();
            }
            // The old file is still whole and still appended to; try again after more lines.
            Err(e) => {
                tracing::warn!(state = %self.path.display(), "cannot compact the state file: {e}");
                appending.kept = appending.lines;
            }
        }
    }
}

/// Rewrites the state file with `lines`, atomically (a temporary file renamed over it).
fn compact<'a>(path: &Path, lines: impl Iterator<Item = &'a String>) -> std::io::Result<()> {
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(".compacting");
    let temporary = path.with_file_name(name);
    let mut text = String::new();
    for line in lines {
        text.push_str(line);
        text.push('\n');
    }
    let mut file = std::fs::File::create(&temporary)?;
    file.write_all(text.as_bytes())?;
    file.sync_all()?;
    std::fs::rename(&temporary, path)
}

/// What a file-system event says about a file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Seen {
    /// Created or written: a writer may still have it open.
    Writing,
    /// Closed after writing, or renamed into place: complete.
    Closed,
    Other,
}

/// What to do with a file once processed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AfterDone {
    Leave,
    /// Move it into `done/` or `failed/` inside its inbox.
    Move,
}

/// The inboxes being watched, shared by the scanning thread and the completion hook.
pub struct Inboxes {
    /// Each inbox as the operator named it (document ids use this spelling), and its
    /// canonical path (file-system events use that one).
    dirs: Vec<(PathBuf, PathBuf)>,
    state: StateFile,
    after: AfterDone,
    settle: Duration,
    max_bytes: u64,
    /// Files handed to the runner and not finished yet: the stamp they were read at, how many
    /// of their documents are still running (a `.jsonl` file is one per line), and whether
    /// any failed.
    in_flight: Mutex<HashMap<PathBuf, InFlight>>,
    /// The inboxes' locks, held while the host runs.
    _locks: Vec<std::fs::File>,
}

struct InFlight {
    stamp: Stamp,
    remaining: usize,
    failed: bool,
}

impl Inboxes {
    /// Takes each inbox's lock: a second host on the same inbox is refused, naming the first.
    pub fn new(
        dirs: Vec<PathBuf>,
        state: StateFile,
        after: AfterDone,
        settle: Duration,
        max_bytes: u64,
        out: &Path,
    ) -> Result<Arc<Inboxes>, InboxError> {
        let locks = dirs
            .iter()
            .map(|d| lock_inbox(d, out))
            .collect::<Result<Vec<_>, _>>()?;
        let dirs = dirs
            .into_iter()
            .map(|d| {
                let canonical = d.canonicalize().unwrap_or_else(|_| d.clone());
                (d, canonical)
            })
            .collect();
        Ok(Arc::new(Inboxes {
            dirs,
            state,
            after,
            settle,
            max_bytes,
            in_flight: Mutex::new(HashMap::new()),
            _locks: locks,
        }))
    }

    pub fn state_path(&self) -> &Path {
        self.state.path()
    }

    /// Starts the scanning thread. It sends a job for every complete, not-yet-done file, and
    /// stops when the receiving side closes.
    pub fn spawn(self: &Arc<Self>, jobs: mpsc::Sender<Job>) -> Result<(), InboxError> {
        let (tx, rx) = std::sync::mpsc::channel::<(PathBuf, Seen)>();
        let mut watcher =
            notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
                use notify::event::{AccessKind, AccessMode, EventKind, ModifyKind, RenameMode};
                let Ok(event) = event else { return };
                let seen = match event.kind {
                    EventKind::Create(_)
                    | EventKind::Modify(ModifyKind::Data(_) | ModifyKind::Any) => Seen::Writing,
                    EventKind::Access(AccessKind::Close(AccessMode::Write)) => Seen::Closed,
                    EventKind::Modify(ModifyKind::Name(RenameMode::To | RenameMode::Both)) => {
                        Seen::Closed
                    }
                    EventKind::Access(_) => return,
                    _ => Seen::Other,
                };
                // A rename carries [from, to]: only the destination arrived complete.
                let paths = if seen == Seen::Closed && event.paths.len() == 2 {
                    vec![event.paths[1].clone()]
                } else {
                    event.paths
                };
                for path in paths {
                    let _ = tx.send((path, seen));
                }
            })
            .map_err(|source| InboxError::Watch {
                path: self.dirs[0].0.clone(),
                source,
            })?;
        for (dir, canonical) in &self.dirs {
            watcher
                .watch(canonical, RecursiveMode::NonRecursive)
                .map_err(|source| InboxError::Watch {
                    path: dir.clone(),
                    source,
                })?;
        }
        let inboxes = self.clone();
        std::thread::Builder::new()
            .name("inbox".into())
            .spawn(move || {
                let _watcher = watcher;
                inboxes.scan_loop(rx, jobs);
            })
            .map_err(|e| InboxError::State {
                path: self.state.path.clone(),
                source: e,
            })?;
        Ok(())
    }

    fn scan_loop(
        &self,
        events: std::sync::mpsc::Receiver<(PathBuf, Seen)>,
        jobs: mpsc::Sender<Job>,
    ) {
        // Candidate files, with the stamp last seen and since when it has not changed.
        let mut pending: HashMap<PathBuf, (Stamp, Instant)> = HashMap::new();
        // Files some writer has open (created or written, not yet closed or renamed in).
        let mut writing: HashSet<PathBuf> = HashSet::new();
        let mut last_scan: Option<Instant> = None;
        // Files in the inboxes when the host started: only these may already have a record
        // (from before a crash); anything that arrives later is new work.
        let mut at_start: HashSet<PathBuf> = self
            .dirs
            .iter()
            .filter_map(|(dir, _)| std::fs::read_dir(dir).ok())
            .flat_map(|entries| entries.filter_map(|e| e.ok()).map(|e| e.path()))
            .collect();
        // An event that woke the wait below, handled with the rest on the next pass.
        let mut carried = None;
        loop {
            if jobs.is_closed() {
                return;
            }
            let mut seen: HashSet<PathBuf> = HashSet::new();
            let first = carried.take();
            for (path, what) in first
                .into_iter()
                .chain(std::iter::from_fn(|| events.try_recv().ok()))
            {
                let Some(path) = self.as_named(&path) else {
                    continue;
                };
                match what {
                    Seen::Writing => {
                        writing.insert(path.clone());
                    }
                    Seen::Closed => {
                        writing.remove(&path);
                    }
                    Seen::Other => {}
                }
                seen.insert(path);
            }
            let rescan = last_scan.is_none_or(|t| t.elapsed() >= RESCAN);
            if rescan {
                last_scan = Some(Instant::now());
                for (dir, _) in &self.dirs {
                    if let Ok(entries) = std::fs::read_dir(dir) {
                        seen.extend(entries.filter_map(|e| e.ok()).map(|e| e.path()));
                    }
                }
            }
            for path in seen {
                if wanted(&path) && !pending.contains_key(&path) {
                    if let Some(s) = stamp(&path) {
                        pending.insert(path, (s, Instant::now()));
                    }
                }
            }
            // FIFOs, sockets, devices and broken links are never opened, but each gets a record
            // (once) saying why it was not processed.
            let mut special = Vec::new();
            if rescan {
                for (dir, _) in &self.dirs {
                    if let Ok(entries) = std::fs::read_dir(dir) {
                        for entry in entries.filter_map(|e| e.ok()) {
                            let path = entry.path();
                            let not_regular = entry.file_type().is_ok_and(|t| {
                                !t.is_dir() && !t.is_file() && !(t.is_symlink() && path.is_dir())
                            }) && !path.is_file();
                            if not_regular && is_named(&path) {
                                if let Some(s) = special_stamp(&path) {
                                    special.push((path, s));
                                }
                            }
                        }
                    }
                }
            }
            let mut ready: Vec<(PathBuf, Stamp)> = special;
            pending.retain(|path, (last, since)| match stamp(path) {
                None => false,
                Some(now) if now != *last => {
                    *last = now;
                    *since = Instant::now();
                    true
                }
                Some(now) => {
                    let quiet = since.elapsed();
                    if quiet < self.settle || (writing.contains(path) && quiet < WRITER_GRACE) {
                        return true;
                    }
                    writing.remove(path);
                    ready.push((path.clone(), now));
                    false
                }
            });
            for (path, stamp) in ready {
                {
                    // Under the lock `finished` holds while recording, so a file is always
                    // seen either in flight or done.
                    let in_flight = self.in_flight.lock().unwrap_or_else(|e| e.into_inner());
                    if in_flight.get(&path).is_some_and(|f| f.stamp == stamp)
                        || self.state.is_done(&self.key(&path), &stamp)
                    {
                        continue;
                    }
                }
                tracing::debug!(file = %path.display(), "inbox file ready");
                // A `.jsonl` file is one document per line, as in a batch.
                let mut inputs = Vec::new();
                if path
                    .extension()
                    .is_some_and(|e| e.eq_ignore_ascii_case("jsonl"))
                    && path.is_file()
                {
                    documents::read_all(
                        &[documents::Source::Jsonl(path.clone())],
                        self.max_bytes,
                        |input| {
                            inputs.push(input);
                            true
                        },
                    );
                } else {
                    inputs.push(documents::read_file(&path, self.max_bytes));
                }
                if inputs.is_empty() {
                    inputs.push(Err(documents::Failed {
                        id: path.display().to_string(),
                        source: path.display().to_string(),
                        reason: "the JSONL file holds no documents".into(),
                    }));
                }
                self.in_flight
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .insert(
                        path.clone(),
                        InFlight {
                            stamp,
                            remaining: inputs.len(),
                            failed: false,
                        },
                    );
                let resumable = at_start.remove(&path);
                for input in inputs {
                    let job = Job {
                        input: input.map(std::sync::Arc::new),
                        inbox_file: Some(path.clone()),
                        resumable,
                        ticket: None,
                    };
                    if jobs.blocking_send(job).is_err() {
                        return;
                    }
                }
            }
            // Sleep until the next pending file settles or an event arrives, not a fixed tick:
            // a file is read the moment it is due (a rules reload then sees its first document
            // tens of milliseconds sooner).
            // Waiting: seen, not yet done (a rescan also sees the files already done).
            let waiting = pending
                .iter()
                .filter(|(path, (stamp, _))| !self.state.is_done(&self.key(path), stamp))
                .count();
            crate::console::metrics::global()
                .pending
                .set(waiting as i64);
            let now = Instant::now();
            let wait = pending
                .values()
                .map(|(_, since)| (*since + self.settle).saturating_duration_since(now))
                .min()
                .unwrap_or(TICK)
                .clamp(Duration::from_millis(1), TICK);
            match events.recv_timeout(wait) {
                Ok(event) => carried = Some(event),
                Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {}
                // No watcher any more: the periodic rescan still finds new files.
                Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => std::thread::sleep(wait),
            }
        }
    }

    /// An event's path, spelled as the operator named its inbox; `None` for anything not
    /// directly inside an inbox.
    fn as_named(&self, path: &Path) -> Option<PathBuf> {
        let (parent, name) = (path.parent()?, path.file_name()?);
        self.dirs
            .iter()
            .find(|(_, canonical)| canonical == parent)
            .map(|(dir, _)| dir.join(name))
    }

    /// The runner's completion hook: record the file as done, and move it if asked.
    pub fn finished(&self, job: &Job, record: &Record) {
        let Some(path) = &job.inbox_file else { return };
        // Hold the in-flight lock until the file is recorded, so the scanner never sees it
        // neither in flight nor done.
        let mut in_flight = self.in_flight.lock().unwrap_or_else(|e| e.into_inner());
        let Some(file) = in_flight.get_mut(path) else {
            return;
        };
        file.remaining = file.remaining.saturating_sub(1);
        file.failed |= !record.ok;
        if file.remaining > 0 {
            return;
        }
        let (stamp, ok) = (file.stamp.clone(), !file.failed);
        let moved = self.after == AfterDone::Move && path.exists() && self.move_out(path, ok);
        // A failed file moved to `failed/` is not recorded as done: moving it back into the
        // inbox (after fixing the cause) processes it again.
        if !(moved && !ok) {
            self.state.mark(&self.key(path), stamp, record);
        }
        in_flight.remove(path);
    }

    /// Moves a processed file into `done/` or `failed/` beside it, never over another file.
    fn move_out(&self, path: &Path, ok: bool) -> bool {
        let sub = if ok { "done" } else { "failed" };
        let (Some(dir), Some(name)) = (path.parent(), path.file_name()) else {
            return false;
        };
        let target_dir = dir.join(sub);
        let mut target = target_dir.join(name);
        let mut n = 1;
        while target.exists() {
            let stem = Path::new(name)
                .file_stem()
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_default();
            let ext = Path::new(name)
                .extension()
                .map(|e| format!(".{}", e.to_string_lossy()))
                .unwrap_or_default();
            target = target_dir.join(format!("{stem}.{n}{ext}"));
            n += 1;
        }
        match std::fs::create_dir_all(&target_dir).and_then(|_| std::fs::rename(path, &target)) {
            Ok(()) => true,
            Err(e) => {
                tracing::warn!(file = %path.display(), "cannot move to {sub}/: {e}");
                false
            }
        }
    }

    /// The state file's name for an inbox file: its canonical path, so the same inbox named
    /// two ways (`inbox/`, `/srv/p/inbox`) shares one history.
    fn key(&self, path: &Path) -> PathBuf {
        let (Some(parent), Some(name)) = (path.parent(), path.file_name()) else {
            return path.to_owned();
        };
        self.dirs
            .iter()
            .find(|(given, _)| given == parent)
            .map_or_else(|| path.to_owned(), |(_, canonical)| canonical.join(name))
    }
}

/// A special file's identity: its own metadata (a FIFO's, a link's), never its target's.
fn special_stamp(path: &Path) -> Option<Stamp> {
    stamp_of(&std::fs::symlink_metadata(path).ok()?)
}

/// Inbox files worth reading: not hidden, not an editor's or a download's temporary file,
/// not a folder.
fn wanted(path: &Path) -> bool {
    is_named(path) && path.is_file()
}

/// Not hidden, not an editor's or a download's temporary file (by name alone).
fn is_named(path: &Path) -> bool {
    let Some(name) = path.file_name() else {
        return false;
    };
    let name = name.to_string_lossy();
    let temporary = name.starts_with('.')
        || name.ends_with('~')
        || [
            ".tmp",
            ".part",
            ".partial",
            ".crdownload",
            ".swp",
            ".download",
        ]
        .iter()
        .any(|s| name.ends_with(s));
    !temporary
}

/// `results.jsonl` → `results.state.jsonl`.
pub fn state_path_for(out: &Path) -> PathBuf {
    let stem = out
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| "results".into());
    out.with_file_name(format!("{stem}.state.jsonl"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_state_file_keeps_one_line_per_file_still_there() {
        let dir = tempfile::tempdir().unwrap();
        let kept = dir.path().join("a.txt");
        std::fs::write(&kept, "x").unwrap();
        let gone = dir.path().join("gone.txt");
        let line = |file: &Path, size: u64| {
            format!(
                "{}\n",
                serde_json::json!({"file": file, "size": size, "mtime_ns": 1, "version": "v1", "ok": true, "at": "t"})
            )
        };
        let state = dir.path().join("r.state.jsonl");
        std::fs::write(
            &state,
            [line(&kept, 1), line(&gone, 1), line(&kept, 2)].concat(),
        )
        .unwrap();
        let opened = StateFile::open(&state).unwrap();
        assert!(opened.is_done(
            &kept,
            &Stamp {
                size: 2,
                mtime_ns: 1
            }
        ));
        assert_eq!(std::fs::read_to_string(&state).unwrap(), line(&kept, 2));
    }

    #[test]
    fn a_running_host_keeps_its_state_file_bounded() {
        let dir = tempfile::tempdir().unwrap();
        let kept = dir.path().join("a.txt");
        std::fs::write(&kept, "x").unwrap();
        let state_path = dir.path().join("r.state.jsonl");
        let state = StateFile::open(&state_path).unwrap();
        let record = crate::runner::failed_record("a", String::new(), "v1", "input", "x".into());
        // A long-running inbox: thousands of files come and go, one stays.
        for i in 0..5000u64 {
            let passing = dir.path().join(format!("gone-{i}.txt"));
            state.mark(
                &passing,
                Stamp {
                    size: i,
                    mtime_ns: 1,
                },
                &record,
            );
            state.mark(
                &kept,
                Stamp {
                    size: i,
                    mtime_ns: 1,
                },
                &record,
            );
        }
        let lines = std::fs::read_to_string(&state_path)
            .unwrap()
            .lines()
            .count();
        assert!(lines <= 2 + 2 * COMPACT_SLACK, "{lines} lines");
        // What it keeps is still right: the latest stamp of the file still there.
        drop(state);
        let reopened = StateFile::open(&state_path).unwrap();
        assert!(reopened.is_done(
            &kept,
            &Stamp {
                size: 4999,
                mtime_ns: 1
            }
        ));
    }
}
