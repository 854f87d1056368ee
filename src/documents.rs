//! Documents in: turns the INPUT arguments of `hybrid run` into a stream of documents.
//!
//! An input is a file (text, Markdown, JSON, PDF, e-mail), a directory (its files), a `.jsonl`
//! file (one document a line) or `-` (JSONL on stdin). Anything that cannot become a document becomes a [`Failed`] input with a
//! reason, so the run records it and goes on: nothing is silently dropped.

use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};

use serde::Serialize;
use serde_json::{Map, Value};

/// Documents larger than this are refused (an error record, not a crash).
pub const DEFAULT_MAX_BYTES: u64 = 32 * 1024 * 1024;

/// One unit of work handed to a script's `process(doc)`.
#[derive(Debug, Clone, Serialize)]
pub struct Document {
    pub id: String,
    /// The file it came from, when there is one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    pub name: String,
    pub text: rhai::ImmutableString,
    /// `txt`, `md`, `json`, ... (the extension, lower case).
    pub kind: String,
    pub meta: Map<String, Value>,
    /// A PDF or e-mail as read from disk, its text not extracted yet: extraction is slow
    /// (a long PDF takes seconds), so it happens in the document's own job, bounded by
    /// `--jobs` and counted in its record's `elapsed_ms` ([`Document::extracted`]), not on
    /// the one reader every document waits behind.
    #[serde(skip)]
    pub unread: Option<std::sync::Arc<Vec<u8>>>,
    /// A scan's or photo's page images (`doc.images` in scripts: handles, never bytes).
    #[serde(skip)]
    pub images: Vec<crate::images::PageImage>,
}

impl Document {
    /// The document with its text extracted (itself when there was nothing to extract), or
    /// why it has none.
    pub fn extracted(&self) -> Result<Document, String> {
        match &self.unread {
            None => Ok(self.clone()),
            Some(bytes) => from_bytes(self.id.clone(), self.path.clone(), self.name.clone(), bytes),
        }
    }

    /// About how much memory it holds: its text, its unread bytes and its page images.
    pub fn bytes(&self) -> usize {
        self.text.len()
            + self.unread.as_ref().map_or(0, |b| b.len())
            + self.images.iter().map(|i| i.png.len()).sum::<usize>()
    }

    /// Where the document came from, for records: `path` or `path:line`.
    pub fn source(&self) -> String {
        match (&self.path, self.meta.get("line")) {
            (Some(p), Some(line)) => format!("{p}:{line}"),
            (Some(p), None) => p.clone(),
            (None, _) => "-".into(),
        }
    }
}

/// An input that could not be read as a document.
#[derive(Debug, Clone)]
pub struct Failed {
    pub id: String,
    pub source: String,
    pub reason: String,
}

pub type Input = Result<Document, Failed>;

/// A problem with the INPUT arguments themselves (a start-up error, not a document error).
#[derive(Debug, thiserror::Error)]
pub enum InputError {
    #[error("input `{path}` does not exist\nhint: pass files, directories, `.jsonl` files, or `-` for JSONL on stdin")]
    Missing { path: PathBuf },
    #[error("cannot list directory `{path}`: {source}")]
    ListDir {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// One place documents come from, resolved up front so a typo fails before any work starts.
#[derive(Debug, Clone)]
pub enum Source {
    File(PathBuf),
    Jsonl(PathBuf),
    Stdin,
}

/// Expands INPUT arguments into sources: directories into their files (sorted, hidden files
/// and sub-folders skipped).
pub fn sources(inputs: &[PathBuf]) -> Result<Vec<Source>, InputError> {
    let mut out = Vec::new();
    for input in inputs {
        if input.as_os_str() == "-" {
            out.push(Source::Stdin);
        } else if input.is_dir() {
            let entries = std::fs::read_dir(input).map_err(|source| InputError::ListDir {
                path: input.clone(),
                source,
            })?;
            let mut files: Vec<PathBuf> = entries
                .filter_map(|e| e.ok())
                .filter(|e| !e.file_name().to_string_lossy().starts_with('.'))
                .filter(|e| e.file_type().map(|t| !t.is_dir()).unwrap_or(false))
                .map(|e| e.path())
                .collect();
            files.sort();
            out.extend(files.into_iter().map(file_source));
        } else if input.exists() {
            out.push(file_source(input.clone()));
        } else {
            return Err(InputError::Missing {
                path: input.clone(),
            });
        }
    }
    Ok(out)
}

fn file_source(path: PathBuf) -> Source {
    if extension(&path) == "jsonl" {
        Source::Jsonl(path)
    } else {
        Source::File(path)
    }
}

fn extension(path: &Path) -> String {
    path.extension()
        .map(|e| e.to_string_lossy().to_lowercase())
        .unwrap_or_else(|| "txt".into())
}

/// Reads every source in order, calling `emit` once per document or failure. Stops early
/// when `emit` returns false (the consumer went away).
pub fn read_all(sources: &[Source], max_bytes: u64, mut emit: impl FnMut(Input) -> bool) {
    for source in sources {
        let go_on = match source {
            Source::File(path) => emit(read_file(path, max_bytes)),
            Source::Jsonl(path) => match regular_file(path)
                .and_then(|()| std::fs::File::open(path).map_err(|e| format!("cannot open: {e}")))
            {
                Ok(f) => read_jsonl(BufReader::new(f), Some(path), max_bytes, &mut emit),
                Err(reason) => emit(Err(failed_path(path, reason))),
            },
            Source::Stdin => read_jsonl(std::io::stdin().lock(), None, max_bytes, &mut emit),
        };
        if !go_on {
            return;
        }
    }
}

fn display_path(path: &Path) -> String {
    path.to_string_lossy().into_owned()
}

fn failed_path(path: &Path, reason: String) -> Failed {
    Failed {
        id: display_path(path),
        source: display_path(path),
        reason,
    }
}

/// Reads one file as one document.
pub fn read_file(path: &Path, max_bytes: u64) -> Input {
    let shown = display_path(path);
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| shown.clone());
    if path.to_str().is_none() {
        return Err(failed_path(
            path,
            "file name is not valid UTF-8; rename the file".into(),
        ));
    }
    // Only regular files are opened: opening a FIFO blocks until a writer comes, and a
    // device or socket is no document.
    regular_file(path).map_err(|reason| failed_path(path, reason))?;
    let file =
        std::fs::File::open(path).map_err(|e| failed_path(path, format!("cannot open: {e}")))?;
    let len = file.metadata().map(|m| m.len()).unwrap_or(0);
    if len > max_bytes {
        return Err(failed_path(
            path,
            format!("file is {len} bytes, over the {max_bytes}-byte limit"),
        ));
    }
    let kind = extension(Path::new(&name));
    if is_extracted_later(&kind) || len > READ_BUFFER_MAX {
        let mut bytes = Vec::with_capacity(len as usize);
        read_whole(file, max_bytes, &mut bytes).map_err(|reason| failed_path(path, reason))?;
        return read_later(shown.clone(), Some(shown), name, bytes)
            .map_err(|reason| failed_path(path, reason));
    }
    // Text is read into this thread's buffer and copied once into the document's string
    // ([`rhai_text`]): a Rhai string cannot take over a buffer, and a buffer used again is
    // already in memory, where a fresh one is new pages.
    let mut buffer = READ_BUFFER.take();
    buffer.clear();
    buffer.reserve(len as usize + 1);
    let read = read_whole(file, max_bytes, &mut buffer)
        .and_then(|()| checked_text(&buffer).map(rhai_text))
        .map(|text| text_document(shown.clone(), Some(shown), name, kind, text))
        .map_err(|reason| failed_path(path, reason));
    if buffer.capacity() <= READ_BUFFER_MAX as usize {
        READ_BUFFER.set(buffer);
    }
    read
}

/// The largest file read through a thread's kept buffer (see [`read_file`]).
const READ_BUFFER_MAX: u64 = 1 << 20;

thread_local! {
    static READ_BUFFER: std::cell::Cell<Vec<u8>> = const { std::cell::Cell::new(Vec::new()) };
}

/// Reads `file` to its end into `bytes`, refusing more than `max_bytes` and an empty file.
fn read_whole(file: std::fs::File, max_bytes: u64, bytes: &mut Vec<u8>) -> Result<(), String> {
    file.take(max_bytes + 1)
        .read_to_end(bytes)
        .map_err(|e| format!("cannot read: {e}"))?;
    if bytes.is_empty() {
        return Err("file is empty".into());
    }
    if bytes.len() as u64 > max_bytes {
        return Err(format!(
            "file grew past the {max_bytes}-byte limit while being read"
        ));
    }
    Ok(())
}

/// PDFs, e-mails and images: their text (or pages) is extracted in the document's own job.
fn is_extracted_later(kind: &str) -> bool {
    kind == "pdf" || kind == "eml" || crate::images::KINDS.contains(&kind)
}

/// A text document.
fn text_document(
    id: String,
    path: Option<String>,
    name: String,
    kind: String,
    text: rhai::ImmutableString,
) -> Document {
    Document {
        id,
        path,
        name,
        text,
        kind,
        meta: Map::new(),
        unread: None,
        images: Vec::new(),
    }
}

/// A document from a file's bytes, with a PDF's or an e-mail's text left to extract in the
/// document's own job ([`Document::extracted`]); text is decoded now.
pub fn read_later(
    id: String,
    path: Option<String>,
    name: String,
    bytes: Vec<u8>,
) -> Result<Document, String> {
    let kind = extension(Path::new(&name));
    if is_extracted_later(&kind) {
        return Ok(Document {
            unread: Some(std::sync::Arc::new(bytes)),
            ..text_document(id, path, name, kind, Default::default())
        });
    }
    let text = rhai_text(checked_text(&bytes)?);
    Ok(text_document(id, path, name, kind, text))
}

/// A document from a file's bytes (text, PDF or e-mail, by the extension of `name`), as it
/// arrives from a work queue as well as from the disk.
pub fn from_bytes(
    id: String,
    path: Option<String>,
    name: String,
    bytes: &[u8],
) -> Result<Document, String> {
    let kind = extension(Path::new(&name));
    let (text, meta, images) = match kind.as_str() {
        // A scan or a photo: its pages are the document's images.
        image if crate::images::KINDS.contains(&image) => {
            let images = crate::images::read(bytes, image, crate::images::limits())?;
            let mut meta = Map::new();
            meta.insert("pages".into(), Value::from(images.len()));
            (String::new(), meta, images)
        }
        "pdf" => match crate::extract::pdf_content(bytes)? {
            crate::extract::PdfContent::Text(text) => (text, Map::new(), Vec::new()),
            // A scan: its pages are the document's images.
            crate::extract::PdfContent::Images(images) => {
                let mut meta = Map::new();
                meta.insert("pages".into(), Value::from(images.len()));
                (String::new(), meta, images)
            }
            // Text pages and scanned pages: the text, and the scanned pages' images.
            crate::extract::PdfContent::Both(text, images) => {
                let mut meta = Map::new();
                meta.insert("scanned_pages".into(), Value::from(images.len()));
                (text, meta, images)
            }
        },
        "eml" => crate::extract::email(bytes)?,
        _ => {
            let text = rhai_text(checked_text(bytes)?);
            return Ok(text_document(id, path, name, kind, text));
        }
    };
    Ok(Document {
        id,
        path,
        name,
        text: text.into(),
        kind,
        meta,
        unread: None,
        images,
    })
}

/// A document from one JSON object (`{"id", "text", ...}`, as a JSONL line is), with
/// `origin` as its id when it names none.
pub fn from_json(bytes: &[u8], origin: &str) -> Result<Document, String> {
    let mut doc = jsonl_document(bytes, None, origin, 0)?;
    if doc.id == format!("{origin}:0") {
        doc.id = origin.to_owned();
        doc.name = origin.to_owned();
    }
    Ok(doc)
}

/// `Ok` for a regular file (or a link to one); otherwise why it is not a document.
pub fn regular_file(path: &Path) -> Result<(), String> {
    use std::os::unix::fs::FileTypeExt;
    let meta = match std::fs::metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(if std::fs::symlink_metadata(path).is_ok() {
                "a broken symbolic link (its target does not exist)".into()
            } else {
                "the file is gone (deleted before it could be read)".into()
            })
        }
        Err(e) => return Err(format!("cannot read its metadata: {e}")),
    };
    let kind = meta.file_type();
    if kind.is_file() {
        return Ok(());
    }
    let what = if kind.is_fifo() {
        "a named pipe (FIFO)"
    } else if kind.is_socket() {
        "a socket"
    } else if kind.is_block_device() || kind.is_char_device() {
        "a device"
    } else if kind.is_dir() {
        "a folder"
    } else {
        "not a regular file"
    };
    Err(format!("{what}, not a document file; it was not opened\nhint: pass stream input as JSONL on stdin (`-`)"))
}

/// `text` as a Rhai string, copied once.
///
/// `ImmutableString::from(&str)` copies a long text twice (into a `String`, then into the
/// string's own allocation, which `From<String>` cannot take over): for a 100 KB contract
/// that was 3% of its CPU. Appending to an empty string allocates the exact size and copies
/// once.
fn rhai_text(text: &str) -> rhai::ImmutableString {
    let mut out = rhai::ImmutableString::new();
    out += text;
    out
}

/// The text of `bytes` (less a UTF-8 BOM), or why they are not a text document: text must
/// be UTF-8 without NUL bytes; anything else is most likely binary.
fn checked_text(bytes: &[u8]) -> Result<&str, String> {
    let bytes = bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(bytes);
    // `contains` on bytes is a vectorised search; a byte-by-byte `any` was 2% of a 17 KB
    // document's CPU.
    if bytes[..bytes.len().min(8192)].contains(&0) {
        return Err("binary content (NUL bytes), not a text document".into());
    }
    simdutf8::basic::from_utf8(bytes).map_err(|_| {
        // Only the slow check says where.
        format!(
            "not valid UTF-8 text (invalid byte at offset {}); convert it to UTF-8",
            std::str::from_utf8(bytes).map_or_else(|e| e.valid_up_to(), str::len)
        )
    })
}

/// Reads one line into `buf` (without its `\n`), keeping at most `max` bytes of it: returns
/// the line's full length, or `None` at the end of input.
fn read_line_bounded(
    reader: &mut impl BufRead,
    buf: &mut Vec<u8>,
    max: u64,
) -> std::io::Result<Option<u64>> {
    buf.clear();
    let mut total: u64 = 0;
    let mut any = false;
    loop {
        let chunk = reader.fill_buf()?;
        if chunk.is_empty() {
            return Ok(any.then_some(total));
        }
        any = true;
        let (take, done) = match memchr_newline(chunk) {
            Some(i) => (i, true),
            None => (chunk.len(), false),
        };
        let room = (max + 1).saturating_sub(buf.len() as u64) as usize;
        buf.extend_from_slice(&chunk[..take.min(room)]);
        total += take as u64;
        reader.consume(take + usize::from(done));
        if done {
            return Ok(Some(total));
        }
    }
}

fn memchr_newline(bytes: &[u8]) -> Option<usize> {
    bytes.iter().position(|&b| b == b'\n')
}

/// One document per line; a line over `max_bytes` is an error record, never held in memory.
pub fn read_jsonl(
    mut reader: impl BufRead,
    path: Option<&Path>,
    max_bytes: u64,
    emit: &mut impl FnMut(Input) -> bool,
) -> bool {
    let origin = path.map(display_path).unwrap_or_else(|| "-".into());
    let mut bytes = Vec::new();
    let mut lineno = 0;
    loop {
        lineno += 1;
        let line = read_line_bounded(&mut reader, &mut bytes, max_bytes);
        let at = format!("{origin}:{lineno}");
        let input = match line {
            Ok(None) => return true,
            Err(e) => {
                let _ = emit(Err(Failed {
                    id: at.clone(),
                    source: at.clone(),
                    reason: format!("cannot read line: {e}"),
                }));
                return true;
            }
            Ok(Some(len)) if len > max_bytes => Err(Failed {
                id: at.clone(),
                source: at.clone(),
                reason: format!(
                    "the line is {len} bytes, over the {max_bytes}-byte limit (--max-doc-bytes)"
                ),
            }),
            Ok(Some(_)) => {
                if bytes.iter().all(|b| b.is_ascii_whitespace()) {
                    continue;
                }
                jsonl_document(&bytes, path, &origin, lineno).map_err(|reason| Failed {
                    id: at.clone(),
                    source: at.clone(),
                    reason,
                })
            }
        };
        if !emit(input) {
            return false;
        }
    }
}

fn jsonl_document(
    bytes: &[u8],
    path: Option<&Path>,
    origin: &str,
    line: usize,
) -> Result<Document, String> {
    // Parsed where it lies: a copy of the line would only be thrown away.
    let value: Value =
        serde_json::from_str(checked_text(bytes)?).map_err(|e| format!("line is not JSON: {e}"))?;
    let Value::Object(mut fields) = value else {
        return Err(
            "line is not a JSON object; each line must look like {\"id\": ..., \"text\": ...}"
                .into(),
        );
    };
    let id = match fields.remove("id") {
        Some(Value::String(s)) => s,
        Some(Value::Number(n)) => n.to_string(),
        Some(other) => return Err(format!("`id` must be a string or a number, not {other}")),
        None => format!("{origin}:{line}"),
    };
    let text = match fields.remove("text") {
        Some(Value::String(s)) => s,
        Some(other) => return Err(format!("`text` must be a string, not {other}")),
        None => String::new(),
    };
    let name = match fields.remove("name") {
        Some(Value::String(s)) => s,
        _ => id.clone(),
    };
    let kind = match fields.remove("kind") {
        Some(Value::String(s)) => s,
        _ => "txt".into(),
    };
    let mut meta = match fields.remove("meta") {
        Some(Value::Object(m)) => m,
        _ => Map::new(),
    };
    // Any other field is kept, in `meta`, so scripts can route on it.
    meta.extend(fields);
    if path.is_some() {
        meta.insert("line".into(), Value::from(line));
    }
    Ok(Document {
        id,
        path: path.map(display_path),
        name,
        text: text.into(),
        kind,
        meta,
        unread: None,
        images: Vec::new(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_files_read_through_the_thread_buffer_match_bytes_read_elsewhere() {
        let dir = tempfile::tempdir().unwrap();
        let long = "cláusula ".repeat(2000);
        let cases: [&[u8]; 7] = [
            long.as_bytes(),
            b"cl\xC3\xA1usula",
            b"\xEF\xBB\xBFcl\xC3\xA1usula",
            b"\xEF\xBB\xBF",
            b"bad \xC3(",
            b"nul \0 here",
            b"",
        ];
        for (i, bytes) in cases.iter().enumerate() {
            let path = dir.path().join(format!("{i}.txt"));
            std::fs::write(&path, bytes).unwrap();
            let from_file = read_file(&path, DEFAULT_MAX_BYTES)
                .map(|d| d.text.to_string())
                .map_err(|f| f.reason);
            if bytes.is_empty() {
                assert_eq!(from_file.unwrap_err(), "file is empty");
                continue;
            }
            let from_bytes = read_later("x".into(), None, "x.txt".into(), bytes.to_vec())
                .map(|d| d.text.to_string());
            assert_eq!(from_file, from_bytes, "{bytes:?}");
            assert_eq!(
                from_bytes,
                checked_text(bytes).map(str::to_owned),
                "{bytes:?}"
            );
            // As a queue message: the same text.
            let queued = super::from_bytes("x".into(), None, "x.txt".into(), bytes)
                .map(|d| d.text.to_string());
            assert_eq!(queued, from_bytes, "{bytes:?}");
        }
        let hola = dir.path().join("hola.txt");
        std::fs::write(&hola, b"\xEF\xBB\xBFhola").unwrap();
        assert_eq!(read_file(&hola, DEFAULT_MAX_BYTES).unwrap().text, "hola");
        assert!(checked_text(b"bad \xC3(").unwrap_err().contains("offset 4"));
    }

    #[test]
    fn a_file_over_the_byte_limit_is_refused_and_one_at_it_is_read() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("big.txt");
        std::fs::write(&path, "x".repeat(100)).unwrap();
        let refused = read_file(&path, 99).unwrap_err();
        assert!(
            refused.reason.contains("over the 99-byte limit"),
            "{}",
            refused.reason
        );
        assert!(read_file(&path, 100).is_ok());
    }

    fn collect(sources: &[Source]) -> Vec<Input> {
        let mut out = Vec::new();
        read_all(sources, DEFAULT_MAX_BYTES, |i| {
            out.push(i);
            true
        });
        out
    }

    #[test]
    fn jsonl_lines_become_documents_and_bad_lines_become_failures() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("in.jsonl");
        std::fs::write(
            &path,
            "{\"id\": 7, \"text\": \"hola\", \"lang\": \"es\"}\n\nnot json\n{\"text\": \"x\"}\n",
        )
        .unwrap();
        let got = collect(&sources(&[path.clone()]).unwrap());
        assert_eq!(got.len(), 3);
        let first = got[0].as_ref().unwrap();
        assert_eq!(first.id, "7");
        assert_eq!(first.meta["lang"], "es");
        let bad = got[1].as_ref().unwrap_err();
        assert!(bad.source.ends_with("in.jsonl:3"), "{}", bad.source);
        assert!(bad.reason.contains("not JSON"));
        assert!(got[2].as_ref().unwrap().id.ends_with("in.jsonl:4"));
    }

    #[test]
    fn binary_empty_and_latin1_files_fail_with_a_reason() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("a.txt"), b"ok").unwrap();
        std::fs::write(dir.path().join("b.txt"), b"\x00\x01\x02").unwrap();
        std::fs::write(dir.path().join("c.txt"), b"").unwrap();
        std::fs::write(dir.path().join("d.txt"), b"caf\xe9").unwrap();
        let got = collect(&sources(&[dir.path().to_owned()]).unwrap());
        assert!(got[0].is_ok());
        assert!(got[1].as_ref().unwrap_err().reason.contains("binary"));
        assert!(got[2].as_ref().unwrap_err().reason.contains("empty"));
        assert!(got[3].as_ref().unwrap_err().reason.contains("UTF-8"));
    }

    #[test]
    fn a_jsonl_line_over_the_limit_is_an_error_record_and_the_rest_go_on() {
        let long = format!("{{\"id\": \"big\", \"text\": \"{}\"}}", "x".repeat(5000));
        let input = format!("{{\"id\": \"a\"}}\n{long}\n{{\"id\": \"b\"}}");
        let mut got = Vec::new();
        read_jsonl(input.as_bytes(), None, 1000, &mut |i| {
            got.push(i);
            true
        });
        assert_eq!(got.len(), 3);
        assert_eq!(got[0].as_ref().unwrap().id, "a");
        assert!(got[1]
            .as_ref()
            .unwrap_err()
            .reason
            .contains("over the 1000-byte limit"));
        assert_eq!(got[2].as_ref().unwrap().id, "b");
    }

    #[test]
    fn fifos_and_broken_links_are_error_records_never_opened() {
        let dir = tempfile::tempdir().unwrap();
        let fifo = dir.path().join("pipe.txt");
        let c = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o644) }, 0);
        std::os::unix::fs::symlink(dir.path().join("nowhere"), dir.path().join("link.txt"))
            .unwrap();
        let got = collect(&sources(&[dir.path().to_owned()]).unwrap());
        let reasons: Vec<&str> = got
            .iter()
            .map(|i| i.as_ref().unwrap_err().reason.as_str())
            .collect();
        assert!(reasons[0].contains("broken symbolic link"), "{reasons:?}");
        assert!(reasons[1].contains("FIFO"), "{reasons:?}");
    }

    #[test]
    fn a_missing_input_is_a_start_up_error() {
        let err = sources(&[PathBuf::from("/no/such/input")]).unwrap_err();
        assert!(err.to_string().contains("hint:"));
    }
}
