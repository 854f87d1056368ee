//! Text out of the documents operations teams actually receive: PDFs and e-mails.
//!
//! A PDF becomes its text; an `.eml` becomes its text body, with the headers in `doc.meta`
//! and its text and PDF attachments appended (each listed in `meta.attachments`). Anything
//! that cannot be read — corrupt, encrypted, empty — is an error with a reason, never a
//! panic: the PDF library is run behind `catch_unwind`. Scanned pages become page images
//! ([`crate::render`]).
//!
//! A 90 KB PDF can expand to gigabytes. The `hybrid` binary therefore extracts each PDF in a
//! child process of its own (`hybrid __extract-pdf`) under an address-space limit and a
//! deadline, so a decompression bomb fails that document only.

use std::io::{Read, Write};
use std::path::PathBuf;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use serde_json::{json, Map, Value};

/// The first argument that makes the `hybrid` binary the PDF extractor child.
pub const CHILD_ARG: &str = "__extract-pdf";

/// Where and how PDFs are extracted out of process; unset (library uses, unit tests) means
/// in process.
static ISOLATION: OnceLock<Isolation> = OnceLock::new();

#[derive(Debug, Clone)]
pub struct Isolation {
    /// The `hybrid` binary, which runs as the extractor when its first argument is
    /// [`CHILD_ARG`].
    pub exe: PathBuf,
    /// Bytes of address space the child may map (its program included).
    pub memory: u64,
    pub timeout: Duration,
}

/// Extract PDFs in child processes from now on.
pub fn isolate_pdfs(isolation: Isolation) {
    let _ = ISOLATION.set(isolation);
}

/// How far into a file the `%PDF-` header may start: some mail gateways and scanners put
/// bytes before it, and PDF readers accept that.
const HEADER_WITHIN: usize = 1024;

/// What a PDF gives: its text, or for a scan (pages that are images only), its page images.
#[derive(Debug)]
pub enum PdfContent {
    Text(String),
    Images(Vec<crate::images::PageImage>),
    /// Text pages and scanned pages in one file: the text, and the scanned pages' images.
    Both(String, Vec<crate::images::PageImage>),
}

/// Text of a PDF, or why there is none.
pub fn pdf_text(bytes: &[u8]) -> Result<String, String> {
    match pdf_content(bytes)? {
        PdfContent::Text(text) | PdfContent::Both(text, _) => Ok(text),
        PdfContent::Images(pages) => Err(format!(
            "the PDF's pages are images only (a scan or a photo, {} page(s)): it has no text layer",
            pages.len()
        )),
    }
}

/// The text of a PDF, or its page images when it is a scan, or why there is neither.
pub fn pdf_content(bytes: &[u8]) -> Result<PdfContent, String> {
    let head = &bytes[..bytes.len().min(HEADER_WITHIN)];
    let Some(start) = head.windows(5).position(|w| w == b"%PDF-") else {
        return Err(
            "not a PDF (no %PDF- header in its first 1 KiB); the file may be corrupt or misnamed"
                .into(),
        );
    };
    let bytes = &bytes[start..];
    match ISOLATION.get() {
        Some(isolation) => pdf_text_in_child(bytes, isolation),
        None => pdf_content_here(bytes),
    }
}

/// The child's side: a PDF on stdin, `{"text": ...}` or `{"error": ...}` on stdout.
pub fn extract_pdf_child() -> std::process::ExitCode {
    // A panic inside the PDF library is reported once, not with a backtrace.
    std::panic::set_hook(Box::new(|_| {}));
    let mut bytes = Vec::new();
    if std::io::stdin().read_to_end(&mut bytes).is_err() {
        return std::process::ExitCode::from(1);
    }
    if let Some((pages, pixels)) = std::env::var("HYBRID_IMAGE_LIMITS").ok().and_then(|v| {
        let (a, b) = v.split_once(':')?;
        Some((a.parse().ok()?, b.parse().ok()?))
    }) {
        crate::images::set_limits(crate::images::Limits {
            max_pages: pages,
            max_image_pixels: pixels,
        });
    }
    let encode = |pages: &[crate::images::PageImage]| -> Vec<Value> {
        use base64::Engine;
        pages
            .iter()
            .map(|p| {
                json!({"page": p.page,
                       "png": base64::engine::general_purpose::STANDARD.encode(p.png.as_slice())})
            })
            .collect()
    };
    let answer = match pdf_content_here(&bytes) {
        Ok(PdfContent::Text(text)) => json!({"text": text}),
        Ok(PdfContent::Images(pages)) => json!({"images": encode(&pages)}),
        Ok(PdfContent::Both(text, pages)) => json!({"text": text, "images": encode(&pages)}),
        Err(error) => json!({"error": error}),
    };
    let mut out = std::io::stdout().lock();
    let written = serde_json::to_writer(&mut out, &answer).is_ok() && out.flush().is_ok();
    if written {
        std::process::ExitCode::SUCCESS
    } else {
        std::process::ExitCode::from(1)
    }
}

fn pdf_text_in_child(bytes: &[u8], isolation: &Isolation) -> Result<PdfContent, String> {
    use std::os::unix::process::{CommandExt, ExitStatusExt};
    use std::process::{Command, Stdio};
    let limit = isolation.memory;
    let mut command = Command::new(&isolation.exe);
    command
        .arg(CHILD_ARG)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .env("HYBRID_LOG", "off")
        .env(
            "HYBRID_IMAGE_LIMITS",
            format!(
                "{}:{}",
                crate::images::limits().max_pages,
                crate::images::limits().max_image_pixels
            ),
        );
    // SAFETY: setrlimit is async-signal-safe; nothing else runs between fork and exec.
    unsafe {
        command.pre_exec(move || {
            let rlim = libc::rlimit {
                rlim_cur: limit as libc::rlim_t,
                rlim_max: limit as libc::rlim_t,
            };
            if libc::setrlimit(libc::RLIMIT_AS, &rlim) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let mut child = match command.spawn() {
        Ok(child) => child,
        Err(e) => {
            // The binary moved or was replaced under a running host: read it here rather
            // than fail every PDF.
            tracing::warn!(exe = %isolation.exe.display(), "cannot start the PDF extractor ({e}); extracting in process, without its memory limit");
            return pdf_content_here(bytes);
        }
    };
    let mut stdin = child.stdin.take().expect("piped");
    let input = bytes.to_vec();
    let writer = std::thread::spawn(move || {
        let _ = stdin.write_all(&input);
    });
    let mut stdout = child.stdout.take().expect("piped");
    let reader = std::thread::spawn(move || {
        let mut out = Vec::new();
        let _ = stdout.read_to_end(&mut out);
        out
    });
    let started = Instant::now();
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break Some(status),
            Ok(None) if started.elapsed() >= isolation.timeout => {
                let _ = child.kill();
                let _ = child.wait();
                break None;
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(5)),
            Err(e) => return Err(format!("the PDF extractor failed: {e}")),
        }
    };
    let _ = writer.join();
    let output = reader.join().unwrap_or_default();
    let Some(status) = status else {
        return Err(format!(
            "text extraction took longer than {} s and was stopped (a PDF built to exhaust readers?)\nhint: if the PDF is real, raise `pdf_seconds` under [limits] in hybrid.toml",
            isolation.timeout.as_secs()
        ));
    };
    if let Ok(answer) = serde_json::from_slice::<Value>(&output) {
        let text = answer["text"].as_str().map(str::to_owned);
        if let (Some(text), None) = (&text, answer.get("images")) {
            return Ok(PdfContent::Text(text.clone()));
        }
        if let Some(pages) = answer["images"].as_array() {
            use base64::Engine;
            let mut out = Vec::new();
            for p in pages {
                let png = base64::engine::general_purpose::STANDARD
                    .decode(p["png"].as_str().unwrap_or(""))
                    .map_err(|e| format!("the PDF extractor's answer is broken: {e}"))?;
                out.push(crate::images::from_png(
                    p["page"].as_u64().unwrap_or(0) as u32,
                    png,
                )?);
            }
            return Ok(match text {
                Some(text) => PdfContent::Both(text, out),
                None => PdfContent::Images(out),
            });
        }
        if let Some(error) = answer["error"].as_str() {
            return Err(error.to_owned());
        }
    }
    // No answer: the child ran out of memory (allocation failure aborts) or crashed.
    let how = match status.signal() {
        Some(libc::SIGABRT) | Some(libc::SIGSEGV) | Some(libc::SIGKILL) | None => format!(
            "text extraction needed more than its {} memory budget and was stopped (a decompression bomb?)",
            crate::host::budget::human_bytes(isolation.memory)
        ),
        Some(signal) => format!("the PDF extractor crashed (signal {signal})"),
    };
    Err(format!(
        "{how}\nhint: if the PDF is real, raise `pdf_memory` under [limits] in hybrid.toml"
    ))
}

fn pdf_content_here(bytes: &[u8]) -> Result<PdfContent, String> {
    let extracted = std::panic::catch_unwind(|| pdf_extract::extract_text_from_mem(bytes));
    let problem = match extracted {
        Ok(Ok(text)) => {
            let text = normalise(&text);
            if !text.trim().is_empty() {
                // Scanned pages among text pages: their images come too.
                return match image_pages(bytes, false) {
                    Some(Ok(pages)) => Ok(PdfContent::Both(text, pages)),
                    Some(Err(e)) => Err(e),
                    None => Ok(PdfContent::Text(text)),
                };
            }
            None
        }
        Ok(Err(e)) => Some(e.to_string()),
        Err(panic) => Some(
            panic
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "the PDF library failed on it".into()),
        ),
    };
    // No text: a scan gives its page images; anything else says what was found.
    if let Some(pages) = image_pages(bytes, true) {
        return pages.map(PdfContent::Images);
    }
    Err(diagnose(bytes, problem))
}

/// The images of a PDF's scanned pages (no text on them), one per page: each page with
/// something on it drawn by [`crate::render`] (any encoding, several strips, outlined text),
/// or, where that fails, its one image taken out. Blank pages are left out. With `all`,
/// every page must be such a page, or it is no scan (`None`); otherwise the scanned pages
/// among text pages (`None` when there are none).
pub fn image_pages(
    bytes: &[u8],
    all: bool,
) -> Option<Result<Vec<crate::images::PageImage>, String>> {
    image_pages_by(bytes, all, Scanned::Draw)
}

/// How [`image_pages_by`] turns a scanned page into an image.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scanned {
    /// Drawn, its one image taken out where it cannot be drawn (what documents get).
    Draw,
    /// Its one image taken out, never drawn (for `benches/scans.rs`, which compares the two).
    TakeOut,
}

/// [`image_pages`], choosing how pages become images.
pub fn image_pages_by(
    bytes: &[u8],
    all: bool,
    how: Scanned,
) -> Option<Result<Vec<crate::images::PageImage>, String>> {
    let found = std::panic::catch_unwind(|| {
        let mut doc = lopdf::Document::load_mem(bytes).ok()?;
        if doc.is_encrypted() && doc.decrypt("").is_err() {
            return None;
        }
        let pages = doc.get_pages();
        let limits = crate::images::limits();
        let mut renderer: Option<Option<crate::render::Renderer>> = None;
        let mut out = Vec::new();
        for (number, page_id) in &pages {
            let operators: Vec<String> = doc
                .get_page_content(*page_id)
                .ok()
                .and_then(|c| lopdf::content::Content::decode(&c).ok())
                .map(|c| c.operations.into_iter().map(|op| op.operator).collect())
                .unwrap_or_default();
            let has_text = operators
                .iter()
                .any(|op| matches!(op.as_str(), "Tj" | "TJ" | "'" | "\""));
            if has_text {
                if all {
                    return None;
                }
                continue;
            }
            let images = doc.get_page_images(*page_id).unwrap_or_default();
            let draws = operators.iter().any(|op| {
                matches!(
                    op.as_str(),
                    "f" | "F" | "f*" | "B" | "B*" | "b" | "b*" | "S" | "s" | "sh" | "Do" | "BI"
                )
            });
            if images.is_empty() && !draws {
                // Blank: nothing for a model to read.
                continue;
            }
            if out.len() == limits.max_pages {
                return Some(Err(format!(
                    "the scanned PDF has more than {} pages\nhint: raise `max_pages` under [limits] in hybrid.toml",
                    limits.max_pages
                )));
            }
            // Every image is checked against the limits before anything is decoded.
            for image in &images {
                let (w, h) = (image.width.max(0) as u32, image.height.max(0) as u32);
                if let Err(e) = crate::images::too_big(w, h, limits, Some(*number as usize)) {
                    return Some(Err(e));
                }
            }
            // Drawn first: faster than taking the image out and decoding it ourselves, and
            // it reads every encoding (`benches/scans.rs`). Taken out when it cannot be drawn.
            let drawn = match how {
                Scanned::Draw => renderer
                    .get_or_insert_with(|| crate::render::Renderer::open(bytes))
                    .as_ref()
                    .map(|r| r.page(*number)),
                Scanned::TakeOut => None,
            };
            let page = match (drawn, images.as_slice()) {
                (Some(Ok(page)), _) => Ok(page),
                (_, [one]) => crate::images::pdf_image(&doc, one, *number, limits)
                    .and_then(|img| crate::images::page(*number, img)),
                (Some(Err(e)), _) => Err(e),
                (None, _) => Err(format!(
                    "page {number} of the PDF is not one image and cannot be drawn"
                )),
            };
            match page {
                Ok(p) => out.push(p),
                Err(e) => return Some(Err(e)),
            }
        }
        (!out.is_empty()).then_some(Ok(out))
    });
    found.unwrap_or(None)
}

/// Why a PDF gave no text, from what is actually in it: a password, text in fonts the
/// reader cannot decode, pages that are only images, nothing at all, or a file that does not
/// parse. `problem` is what the text extractor said, if it failed.
fn diagnose(bytes: &[u8], problem: Option<String>) -> String {
    let said = problem
        .as_deref()
        .map(|p| format!(" (the reader said: {})", p.lines().next().unwrap_or(p)))
        .unwrap_or_default();
    let found = std::panic::catch_unwind(|| -> Result<(bool, bool, bool), String> {
        let mut doc = lopdf::Document::load_mem(bytes).map_err(|e| e.to_string())?;
        if doc.is_encrypted() && doc.decrypt("").is_err() {
            return Ok((true, false, false));
        }
        let text_operators = doc.get_pages().values().any(|page| {
            doc.get_page_content(*page)
                .ok()
                .and_then(|content| lopdf::content::Content::decode(&content).ok())
                .is_some_and(|c| {
                    c.operations
                        .iter()
                        .any(|op| matches!(op.operator.as_str(), "Tj" | "TJ" | "'" | "\""))
                })
        });
        let images = doc.objects.values().any(|o| {
            o.as_stream().is_ok_and(|s| {
                s.dict
                    .get(b"Subtype")
                    .and_then(|t| t.as_name())
                    .is_ok_and(|n| n == b"Image")
            })
        });
        Ok((false, text_operators, images))
    });
    match found {
        Ok(Ok((true, _, _))) => "the PDF is encrypted with a password; decrypt it (e.g. `qpdf --decrypt --password=... in.pdf out.pdf`) before dropping it in".into(),
        Ok(Ok((false, true, _))) => {
            let fonts = problem.as_deref().is_some_and(|p| {
                let p = p.to_lowercase();
                ["encoding", "cmap", "font", "glyph", "unicode"].iter().any(|w| p.contains(w))
            });
            if fonts {
                format!("the PDF has text, in a font encoding the text reader does not support (CJK CMaps, for one){said}; the file is not corrupt")
            } else {
                format!("the PDF has text, but the text reader got none out of it{said}: its fonts may use an encoding the reader does not support")
            }
        }
        Ok(Ok((false, false, true))) => {
            "the PDF's pages are images only (a scan or a photo): it has no text layer".into()
        }
        Ok(Ok((false, false, false))) => "the PDF has no text and no images (blank pages?)".into(),
        Ok(Err(e)) => format!("the PDF cannot be parsed: {e}; the file may be corrupt or truncated"),
        Err(_) => format!("the PDF cannot be read: the PDF library failed on it{said}; the file may be corrupt"),
    }
}

/// How deep forwarded messages (`message/rfc822` attachments) are opened.
const MAX_FORWARD_DEPTH: usize = 3;

/// An e-mail: the text to process, and what goes into `doc.meta`. Forwarded messages
/// inside it are opened (three levels deep): their headers, body and attachments join the
/// text, and they are listed in `meta.attachments` with their own.
pub fn email(
    bytes: &[u8],
) -> Result<(String, Map<String, Value>, Vec<crate::images::PageImage>), String> {
    use mail_parser::MessageParser;
    let message = MessageParser::default()
        .parse(bytes)
        .ok_or_else(|| "not an e-mail message (no headers could be parsed)".to_string())?;
    if message.headers().is_empty() {
        return Err("not an e-mail message (no headers could be parsed)".into());
    }
    let mut meta = headers(&message);
    let mut text = String::new();
    if let Some(subject) = message.subject() {
        text.push_str(&format!("Subject: {subject}\n\n"));
    }
    let mut images = Vec::new();
    let attachments = read_message(&message, 0, &mut text, &mut images);
    meta.insert("attachments".into(), Value::Array(attachments));
    if text.trim().is_empty() && images.is_empty() {
        return Err("the e-mail has no text body and no readable attachment".into());
    }
    Ok((text, meta, images))
}

fn headers(message: &mail_parser::Message) -> Map<String, Value> {
    let mut meta = Map::new();
    let addresses = |a: Option<&mail_parser::Address>| -> Value {
        a.map(|a| {
            a.iter()
                .map(|addr| match (&addr.name, &addr.address) {
                    (Some(n), Some(e)) => format!("{n} <{e}>"),
                    (None, Some(e)) => e.to_string(),
                    (Some(n), None) => n.to_string(),
                    (None, None) => String::new(),
                })
                .collect::<Vec<_>>()
        })
        .map_or(Value::Null, |v| json!(v))
    };
    meta.insert("from".into(), addresses(message.from()));
    meta.insert("to".into(), addresses(message.to()));
    meta.insert("cc".into(), addresses(message.cc()));
    meta.insert("subject".into(), json!(message.subject()));
    meta.insert("date".into(), json!(message.date().map(|d| d.to_rfc3339())));
    meta.insert("message_id".into(), json!(message.message_id()));
    meta
}

/// Appends a message's body and readable attachments to `text`; returns the attachments'
/// entries for `meta.attachments`.
fn read_message(
    message: &mail_parser::Message,
    depth: usize,
    text: &mut String,
    images: &mut Vec<crate::images::PageImage>,
) -> Vec<Value> {
    use mail_parser::MimeHeaders;
    let body = message
        .body_text(0)
        .map(|b| b.replace("\r\n", "\n"))
        .unwrap_or_default();
    text.push_str(body.trim_end());

    let mut attachments = Vec::new();
    for (i, part) in message.attachments().enumerate() {
        let name = part
            .attachment_name()
            .map_or_else(|| format!("attachment-{}", i + 1), str::to_owned);
        let content_type = part
            .content_type()
            .map(|ct| format!("{}/{}", ct.ctype(), ct.subtype().unwrap_or("octet-stream")))
            .unwrap_or_else(|| "application/octet-stream".into());
        let contents = part.contents();
        let mut entry =
            json!({"name": name, "content_type": content_type, "bytes": contents.len()});
        if let Some(inner) = part.message() {
            // A forwarded message: its headers in the entry, its text and attachments in
            // the document.
            for (k, v) in headers(inner) {
                entry[k.as_str()] = v;
            }
            if depth + 1 >= MAX_FORWARD_DEPTH {
                entry["included"] = json!(false);
                entry["error"] = json!(format!(
                    "a message forwarded more than {MAX_FORWARD_DEPTH} levels deep is not opened"
                ));
            } else {
                let subject = inner.subject().unwrap_or("(no subject)");
                text.push_str(&format!("\n\n--- forwarded message: {subject} ---\n"));
                let from = entry["from"].clone();
                if let Some(from) = from
                    .as_array()
                    .and_then(|a| a.first())
                    .and_then(|f| f.as_str())
                {
                    text.push_str(&format!("From: {from}\n"));
                }
                let inner_attachments = read_message(inner, depth + 1, text, images);
                entry["included"] = json!(true);
                entry["attachments"] = Value::Array(inner_attachments);
            }
            attachments.push(entry);
            continue;
        }
        let lower = name.to_lowercase();
        let extension = lower.rsplit_once('.').map(|(_, e)| e).unwrap_or("");
        // Scans and photos, attached or as scanned PDFs, join `doc.images`, numbered on
        // from the pages before them.
        let mut add_pages = |pages: Vec<crate::images::PageImage>, entry: &mut Value| {
            entry["pages"] = json!(pages.len());
            for mut page in pages {
                page.page = images.len() as u32 + 1;
                images.push(page);
            }
        };
        let image_kind = match content_type.as_str() {
            "image/png" => Some("png"),
            "image/jpeg" | "image/jpg" => Some("jpeg"),
            "image/webp" => Some("webp"),
            "image/tiff" => Some("tiff"),
            _ => crate::images::KINDS
                .iter()
                .copied()
                .find(|k| *k == extension),
        };
        if let Some(kind) = image_kind {
            match crate::images::read(contents, kind, crate::images::limits()) {
                Ok(pages) => {
                    add_pages(pages, &mut entry);
                    entry["included"] = json!(true);
                }
                Err(reason) => {
                    entry["included"] = json!(false);
                    entry["error"] = json!(reason);
                }
            }
            attachments.push(entry);
            continue;
        }
        let extracted = if content_type == "application/pdf" || lower.ends_with(".pdf") {
            match pdf_content(contents) {
                Ok(PdfContent::Text(t)) => Some(Ok(t)),
                Ok(PdfContent::Both(t, pages)) => {
                    add_pages(pages, &mut entry);
                    Some(Ok(t))
                }
                Ok(PdfContent::Images(pages)) => {
                    add_pages(pages, &mut entry);
                    entry["included"] = json!(true);
                    attachments.push(entry);
                    continue;
                }
                Err(e) => Some(Err(e)),
            }
        } else if content_type.starts_with("text/")
            || lower.ends_with(".txt")
            || lower.ends_with(".md")
        {
            // mail-parser has decoded the part's charset already when it is text.
            Some(match part.text_contents() {
                Some(t) => Ok(t.replace("\r\n", "\n")),
                None => std::str::from_utf8(contents)
                    .map(|t| t.replace("\r\n", "\n"))
                    .map_err(|_| "not UTF-8 text".to_string()),
            })
        } else {
            None
        };
        match extracted {
            Some(Ok(t)) => {
                text.push_str(&format!("\n\n--- attachment: {name} ---\n{}", t.trim_end()));
                entry["included"] = json!(true);
            }
            Some(Err(reason)) => {
                entry["included"] = json!(false);
                entry["error"] = json!(reason);
            }
            None => {
                entry["included"] = json!(false);
                entry["error"] = json!(format!("not a text or PDF attachment ({content_type})"));
            }
        }
        attachments.push(entry);
    }
    attachments
}

/// PDF text comes with ragged whitespace: collapse runs of blank lines and trailing spaces.
fn normalise(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut blank = 0;
    for line in text.lines() {
        let line = line.trim_end();
        if line.is_empty() {
            blank += 1;
            if blank > 1 {
                continue;
            }
        } else {
            blank = 0;
        }
        out.push_str(line);
        out.push('\n');
    }
    out.trim().to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn garbage_is_not_a_pdf() {
        assert!(pdf_text(b"hello").unwrap_err().contains("no %PDF- header"));
        assert!(pdf_text(b"%PDF-1.4\n\x00\x01garbage").is_err());
    }

    #[test]
    fn an_email_gives_headers_body_and_text_attachments() {
        let eml = "From: Ana Gómez <ana@dataandes.co>\r\nTo: legal@lasabana.co\r\nSubject: Contrato de soporte\r\nDate: Tue, 20 Jan 2026 10:00:00 -0500\r\nMessage-ID: <1@dataandes.co>\r\nMIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=\"b\"\r\n\r\n--b\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nAdjunto el contrato.\r\n--b\r\nContent-Type: text/plain; name=\"anexo.txt\"\r\nContent-Disposition: attachment; filename=\"anexo.txt\"\r\n\r\nANEXO 1: niveles de servicio.\r\n--b\r\nContent-Type: image/png; name=\"logo.png\"\r\nContent-Disposition: attachment; filename=\"logo.png\"\r\nContent-Transfer-Encoding: base64\r\n\r\niVBORw0KGgo=\r\n--b--\r\n";
        let (text, meta, _) = email(eml.as_bytes()).unwrap();
        assert!(text.contains("Adjunto el contrato."));
        assert!(text.contains("ANEXO 1"));
        assert_eq!(meta["subject"], "Contrato de soporte");
        assert_eq!(meta["from"][0], "Ana Gómez <ana@dataandes.co>");
        let atts = meta["attachments"].as_array().unwrap();
        assert_eq!(atts.len(), 2);
        assert_eq!(atts[0]["included"], true);
        assert_eq!(atts[1]["included"], false);
    }

    #[test]
    fn legacy_east_asian_charsets_are_decoded() {
        for (charset, body, expected) in [
            ("euc-kr", b"\xb0\xe8\xbe\xe0\xbc\xad\xb8\xa6\x20\xc3\xb7\xba\xce\xc7\xd5\xb4\xcf\xb4\xd9".as_slice(), "계약서를 첨부합니다"),
            ("ks_c_5601-1987", b"\xbc\xad\xb8\xed\xb5\xc8\x20\xb0\xe8\xbe\xe0\xbc\xad".as_slice(), "서명된 계약서"),
            ("shift_jis", b"\x8c\x5f\x96\xf1\x8f\x91\x82\xf0\x93\x59\x95\x74\x82\xb5\x82\xdc\x82\xb7".as_slice(), "契約書を添付します"),
            ("iso-2022-jp", b"\x1b\x24\x42\x37\x40\x4c\x73\x24\x4e\x39\x39\x3f\x37\x24\x4b\x24\x44\x24\x24\x24\x46\x1b\x28\x42".as_slice(), "契約の更新について"),
        ] {
            let mut eml = format!(
                "From: a@example.kr\r\nSubject: test\r\nMIME-Version: 1.0\r\nContent-Type: text/plain; charset=\"{charset}\"\r\nContent-Transfer-Encoding: 8bit\r\n\r\n"
            )
            .into_bytes();
            eml.extend_from_slice(body);
            let (text, _, _) = email(&eml).unwrap();
            assert!(text.contains(expected), "{charset}: {text:?}");
        }
    }

    #[test]
    fn forwarded_messages_are_opened_with_their_headers_and_attachments() {
        let eml = "From: Ana <ana@dataandes.co>\r\nTo: legal@lasabana.co\r\nSubject: Fwd: contrato\r\nMIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=\"outer\"\r\n\r\n--outer\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nTe reenvío el contrato.\r\n--outer\r\nContent-Type: message/rfc822\r\nContent-Disposition: attachment; filename=\"original.eml\"\r\n\r\nFrom: Proveedor <ventas@proveedor.co>\r\nSubject: Contrato de suministro\r\nMIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=\"inner\"\r\n\r\n--inner\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nAdjunto el contrato firmado.\r\n--inner\r\nContent-Type: text/plain; name=\"anexo.txt\"\r\nContent-Disposition: attachment; filename=\"anexo.txt\"\r\n\r\nANEXO B: penalidades.\r\n--inner--\r\n--outer--\r\n";
        let (text, meta, _) = email(eml.as_bytes()).unwrap();
        assert!(text.contains("Te reenvío el contrato."), "{text}");
        assert!(
            text.contains("--- forwarded message: Contrato de suministro ---"),
            "{text}"
        );
        assert!(text.contains("Adjunto el contrato firmado."), "{text}");
        assert!(text.contains("ANEXO B: penalidades."), "{text}");
        let forwarded = &meta["attachments"][0];
        assert_eq!(forwarded["content_type"], "message/rfc822");
        assert_eq!(forwarded["subject"], "Contrato de suministro");
        assert_eq!(forwarded["from"][0], "Proveedor <ventas@proveedor.co>");
        assert_eq!(forwarded["included"], true);
        assert_eq!(forwarded["attachments"][0]["name"], "anexo.txt");
    }

    #[test]
    fn forwarding_is_opened_three_levels_deep_only() {
        let mut eml = "From: x@y.co\r\nSubject: nivel 4\r\n\r\nel fondo\r\n".to_string();
        for level in (1..=3).rev() {
            eml = format!("From: x@y.co\r\nSubject: nivel {level}\r\nMIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=\"b{level}\"\r\n\r\n--b{level}\r\nContent-Type: text/plain\r\n\r\ntexto {level}\r\n--b{level}\r\nContent-Type: message/rfc822\r\n\r\n{eml}\r\n--b{level}--\r\n");
        }
        let (text, meta, _) = email(eml.as_bytes()).unwrap();
        assert!(
            text.contains("texto 3") && !text.contains("el fondo"),
            "{text}"
        );
        let deepest = &meta["attachments"][0]["attachments"][0]["attachments"][0];
        assert_eq!(deepest["included"], false, "{meta:?}");
    }

    #[test]
    fn a_pdf_may_start_after_other_bytes() {
        assert!(pdf_text(&[b'x'; 2000]).unwrap_err().contains("first 1 KiB"));
        let late = [
            b"X-Gateway: scanned\r\n\r\n".as_slice(),
            b"%PDF-1.4\n\x00garbage",
        ]
        .concat();
        let err = pdf_text(&late).unwrap_err();
        assert!(!err.contains("no %PDF- header"), "{err}");
    }
}
