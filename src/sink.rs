//! Where records leave: standard output or a results file.
//!
//! Each record goes out in one write of its whole line, so a crash can cut only the last line
//! of a file. At start, a cut last line (of the results, the audit log, the state file or an
//! `emit` stream) is moved aside to `FILE.torn` before anything is appended, so the next line
//! never glues onto a fragment. An existing results file is never truncated silently: a run
//! resumes it (skipping documents that already have a record), overwrites it when told to,
//! or stops with both choices named.

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io::{BufRead, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use crate::record::Record;

#[derive(Debug, thiserror::Error)]
pub enum SinkError {
    #[error("`{path}` already holds {records} result records\nhint: pass --resume to keep them and process only the documents without a record, or --overwrite to start again")]
    Exists { path: PathBuf, records: usize },
    #[error("cannot use the results file `{path}`: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// What to do with a results file that already has records.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Existing {
    /// Stop with an error that names --resume and --overwrite.
    Refuse,
    /// Truncate it.
    Overwrite,
    /// Keep it, append, and report what it holds.
    Append,
}

/// A record already in the results file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Prior {
    pub ok: bool,
    pub version: String,
}

/// The records already in a results file, by document id (the last one wins).
pub type Done = HashMap<String, Prior>;

pub struct Sink {
    out: Box<dyn Write + Send>,
}

impl Sink {
    pub fn stdout() -> Sink {
        Sink {
            out: Box::new(std::io::stdout()),
        }
    }

    /// Opens `path` for results, repairing a cut last line first.
    pub fn open(path: &Path, existing: Existing) -> Result<(Sink, Done), SinkError> {
        let fail = |source| SinkError::Io {
            path: path.to_owned(),
            source,
        };
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(fail)?;
        }
        let mut done = Done::new();
        let non_empty = std::fs::metadata(path).is_ok_and(|m| m.len() > 0);
        if non_empty && existing != Existing::Overwrite {
            // Refused before anything is touched; repaired before anything is appended.
            done = read_done(path).map_err(fail)?;
            if existing == Existing::Refuse && !done.is_empty() {
                return Err(SinkError::Exists {
                    path: path.to_owned(),
                    records: done.len(),
                });
            }
            repair_tail(path).map_err(fail)?;
        }
        let mut open = OpenOptions::new();
        match existing {
            Existing::Overwrite => open.create(true).write(true).truncate(true),
            _ => open.create(true).append(true),
        };
        let file = open.open(path).map_err(fail)?;
        Ok((
            Sink {
                out: Box::new(file),
            },
            done,
        ))
    }

    /// Writes one record as one line, in one write, and flushes it.
    pub fn write_line(&mut self, line: &[u8]) -> std::io::Result<()> {
        debug_assert!(line.ends_with(b"\n"));
        self.out.write_all(line)?;
        self.out.flush()
    }
}

/// The serialised line of a record, `\n` included.
pub fn line_of(record: &Record) -> Result<Vec<u8>, serde_json::Error> {
    let mut line = serde_json::to_vec(record)?;
    line.push(b'\n');
    Ok(line)
}

/// If `path` does not end in a newline, moves the cut last line to `PATH.torn` (appending)
/// and truncates the file after its last whole line. Returns the bytes moved.
pub fn repair_tail(path: &Path) -> std::io::Result<Option<u64>> {
    let mut file = match OpenOptions::new().read(true).write(true).open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    };
    let len = file.metadata()?.len();
    if len == 0 {
        return Ok(None);
    }
    let mut last = [0u8; 1];
    file.seek(SeekFrom::Start(len - 1))?;
    file.read_exact(&mut last)?;
    if last[0] == b'\n' {
        return Ok(None);
    }
    // Find the last newline, reading backwards a block at a time.
    let mut keep = 0;
    let mut end = len;
    let mut block = vec![0u8; 64 * 1024];
    while end > 0 {
        let start = end.saturating_sub(block.len() as u64);
        let chunk = &mut block[..(end - start) as usize];
        file.seek(SeekFrom::Start(start))?;
        file.read_exact(chunk)?;
        if let Some(i) = chunk.iter().rposition(|&b| b == b'\n') {
            keep = start + i as u64 + 1;
            break;
        }
        end = start;
    }
    let mut fragment = Vec::with_capacity((len - keep) as usize);
    file.seek(SeekFrom::Start(keep))?;
    file.read_to_end(&mut fragment)?;
    let aside = torn_path(path);
    let mut torn = OpenOptions::new().create(true).append(true).open(&aside)?;
    fragment.push(b'\n');
    torn.write_all(&fragment)?;
    torn.flush()?;
    file.set_len(keep)?;
    tracing::warn!(
        file = %path.display(),
        moved_to = %aside.display(),
        bytes = len - keep,
        "the file ended in a partial line (a crash mid-write?); moved it aside before appending"
    );
    Ok(Some(len - keep))
}

/// `results.jsonl` → `results.jsonl.torn`.
pub fn torn_path(path: &Path) -> PathBuf {
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(".torn");
    path.with_file_name(name)
}

/// The records in a results file, by id; lines that are not records are skipped.
pub fn read_done(path: &Path) -> std::io::Result<Done> {
    #[derive(serde::Deserialize)]
    struct Line {
        id: String,
        ok: bool,
        #[serde(default)]
        version: String,
    }
    let mut done = Done::new();
    let file = File::open(path)?;
    for line in std::io::BufReader::new(file).split(b'\n') {
        let line = line?;
        if let Ok(l) = serde_json::from_slice::<Line>(&line) {
            done.insert(
                l.id,
                Prior {
                    ok: l.ok,
                    version: l.version,
                },
            );
        }
    }
    Ok(done)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cut_last_line_is_moved_aside() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("r.jsonl");
        std::fs::write(&path, "{\"id\":\"a\",\"ok\":true}\n{\"id\":\"b\",\"o").unwrap();
        assert_eq!(repair_tail(&path).unwrap(), Some(12));
        assert_eq!(
            std::fs::read_to_string(&path).unwrap(),
            "{\"id\":\"a\",\"ok\":true}\n"
        );
        assert_eq!(
            std::fs::read_to_string(torn_path(&path)).unwrap(),
            "{\"id\":\"b\",\"o\n"
        );
        assert_eq!(repair_tail(&path).unwrap(), None);
        let done = read_done(&path).unwrap();
        assert!(done["a"].ok);
    }

    #[test]
    fn an_existing_results_file_is_refused_unless_told() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("r.jsonl");
        std::fs::write(&path, "{\"id\":\"a\",\"ok\":false,\"version\":\"v1\"}\n").unwrap();
        let err = Sink::open(&path, Existing::Refuse).err().unwrap();
        assert!(err.to_string().contains("--resume"), "{err}");
        let (_, done) = Sink::open(&path, Existing::Append).unwrap();
        assert!(!done["a"].ok);
        Sink::open(&path, Existing::Overwrite).unwrap();
        assert_eq!(std::fs::metadata(&path).unwrap().len(), 0);
    }
}
