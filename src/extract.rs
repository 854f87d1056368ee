//! Text out of the documents operations teams actually receive: PDFs and e-mails.
//!
//! A PDF becomes its text; an `.eml` becomes its text body, with the headers in `doc.meta`
//! and its text and PDF attachments appended (each listed in `meta.attachments`). Anything
//! that cannot be read — corrupt, encrypted, image-only — is an error with a reason, never a
//! panic: the PDF library is run behind `catch_unwind`.

use serde_json::{json, Map, Value};

/// Text of a PDF, or why there is none.
pub fn pdf_text(bytes: &[u8]) -> Result<String, String> {
    if !bytes.starts_with(b"%PDF") {
        return Err("not a PDF (no %PDF header); the file may be corrupt or misnamed".into());
    }
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
