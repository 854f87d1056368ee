//! Text out of the documents operations teams actually receive: PDFs and e-mails.
//!
//! A PDF becomes its text; an `.eml` becomes its text body, with the headers in `doc.meta`
//! and its text and PDF attachments appended (each listed in `meta.attachments`). Anything
//! that cannot be read — corrupt, encrypted, image-only — is an error with a reason, never a
//! panic: the PDF library is run behind `catch_unwind`.
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

/// Text of a PDF, or why there is none.
pub fn pdf_text(bytes: &[u8]) -> Result<String, String> {
    if !bytes.starts_with(b"%PDF") {
        return Err("not a PDF (no %PDF header); the file may be corrupt or misnamed".into());
    }
    match ISOLATION.get() {
        Some(isolation) => pdf_text_in_child(bytes, isolation),
        None => pdf_text_here(bytes),
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
    let answer = match pdf_text_here(&bytes) {
        Ok(text) => json!({"text": text}),
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

fn pdf_text_in_child(bytes: &[u8], isolation: &Isolation) -> Result<String, String> {
    use std::os::unix::process::{CommandExt, ExitStatusExt};
    use std::process::{Command, Stdio};
    let limit = isolation.memory;
    let mut command = Command::new(&isolation.exe);
    command
        .arg(CHILD_ARG)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .env("HYBRID_LOG", "off");
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
            return pdf_text_here(bytes);
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
        if let Some(text) = answer["text"].as_str() {
            return Ok(text.to_owned());
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

fn pdf_text_here(bytes: &[u8]) -> Result<String, String> {
    let extracted = std::panic::catch_unwind(|| pdf_extract::extract_text_from_mem(bytes));
    let encrypted = contains(bytes, b"/Encrypt");
    match extracted {
        Ok(Ok(text)) => {
            let text = normalise(&text);
            if text.trim().is_empty() {
                Err(if encrypted {
                    "the PDF is encrypted (password-protected); decrypt it before dropping it in"
                        .into()
                } else {
                    "the PDF has no extractable text (a scanned image?); OCR it first".into()
                })
            } else {
                Ok(text)
            }
        }
        Ok(Err(_)) | Err(_) if encrypted => Err(
            "the PDF is encrypted (password-protected); decrypt it before dropping it in".into(),
        ),
        Ok(Err(e)) => Err(format!(
            "the PDF cannot be read: {e}; the file may be corrupt"
        )),
        Err(_) => Err(
            "the PDF cannot be read: the PDF library failed on it; the file may be corrupt".into(),
        ),
    }
}

/// An e-mail: the text to process, and what goes into `doc.meta`.
pub fn email(bytes: &[u8]) -> Result<(String, Map<String, Value>), String> {
    use mail_parser::{MessageParser, MimeHeaders};
    let message = MessageParser::default()
        .parse(bytes)
        .ok_or_else(|| "not an e-mail message (no headers could be parsed)".to_string())?;
    if message.headers().is_empty() {
        return Err("not an e-mail message (no headers could be parsed)".into());
    }
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

    let mut text = String::new();
    if let Some(subject) = message.subject() {
        text.push_str(&format!("Subject: {subject}\n\n"));
    }
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
        let lower = name.to_lowercase();
        let extracted = if content_type == "application/pdf" || lower.ends_with(".pdf") {
            Some(pdf_text(contents))
        } else if content_type.starts_with("text/")
            || lower.ends_with(".txt")
            || lower.ends_with(".md")
        {
            Some(
                std::str::from_utf8(contents)
                    .map(|t| t.replace("\r\n", "\n"))
                    .map_err(|_| "not UTF-8 text".to_string()),
            )
        } else {
            None
        };
        let mut entry =
            json!({"name": name, "content_type": content_type, "bytes": contents.len()});
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
                entry["error"] = json!("not a text or PDF attachment");
            }
        }
        attachments.push(entry);
    }
    meta.insert("attachments".into(), Value::Array(attachments));
    if text.trim().is_empty() {
        return Err("the e-mail has no text body and no readable attachment".into());
    }
    Ok((text, meta))
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
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
        assert!(pdf_text(b"hello").unwrap_err().contains("no %PDF header"));
        assert!(pdf_text(b"%PDF-1.4\n\x00\x01garbage").is_err());
    }

    #[test]
    fn an_email_gives_headers_body_and_text_attachments() {
        let eml = "From: Ana Gómez <ana@dataandes.co>\r\nTo: legal@lasabana.co\r\nSubject: Contrato de soporte\r\nDate: Tue, 20 Jan 2026 10:00:00 -0500\r\nMessage-ID: <1@dataandes.co>\r\nMIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=\"b\"\r\n\r\n--b\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nAdjunto el contrato.\r\n--b\r\nContent-Type: text/plain; name=\"anexo.txt\"\r\nContent-Disposition: attachment; filename=\"anexo.txt\"\r\n\r\nANEXO 1: niveles de servicio.\r\n--b\r\nContent-Type: image/png; name=\"logo.png\"\r\nContent-Disposition: attachment; filename=\"logo.png\"\r\nContent-Transfer-Encoding: base64\r\n\r\niVBORw0KGgo=\r\n--b--\r\n";
        let (text, meta) = email(eml.as_bytes()).unwrap();
        assert!(text.contains("Adjunto el contrato."));
        assert!(text.contains("ANEXO 1"));
        assert_eq!(meta["subject"], "Contrato de soporte");
        assert_eq!(meta["from"][0], "Ana Gómez <ana@dataandes.co>");
        let atts = meta["attachments"].as_array().unwrap();
        assert_eq!(atts.len(), 2);
        assert_eq!(atts[0]["included"], true);
        assert_eq!(atts[1]["included"], false);
    }
}
