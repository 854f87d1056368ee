//! E-mail addresses: a local part, `@` and a domain of at least two labels ending in a
//! letters-only top-level label.

use super::text::Text;
use super::{Finding, Kind};

pub(super) fn find_emails(text: &Text, found: &mut Vec<Finding>) {
    // Local parts may carry Unicode letters (RFC 6531: josé@…); domains stay ASCII.
    let is_local = |c: char| c.is_alphanumeric() || "._%+-".contains(c);
    let is_domain = |c: char| c.is_ascii_alphanumeric() || c == '.' || c == '-';
    for at in 0..text.len() {
        if !text.is(at, '@') {
            continue;
        }
        let mut start = at;
        while start > 0 && text.at(start - 1).is_some_and(is_local) {
            start -= 1;
        }
        while start < at && text.is(start, '.') {
            start += 1;
        }
        let inside_a_word = text
            .before(start)
            .is_some_and(|c| c.is_alphanumeric() || c == '@');
        if start == at || inside_a_word || text.is(at - 1, '.') {
            continue;
        }
        let mut end = at + 1;
        while text.at(end).is_some_and(is_domain) {
            end += 1;
        }
        while end > at + 1 && text.at(end - 1).is_some_and(|c| c == '.' || c == '-') {
            end -= 1;
        }
        if !text.word_ends(end) || text.is(end, '@') {
            continue;
        }
        let domain: String = (at + 1..end).filter_map(|i| text.at(i)).collect();
        let labels: Vec<&str> = domain.split('.').collect();
        let labels_ok = labels.len() >= 2
            && labels
                .iter()
                .all(|label| !label.is_empty() && !label.starts_with('-') && !label.ends_with('-'));
        let top_level = labels[labels.len() - 1];
        if labels_ok && top_level.len() >= 2 && top_level.chars().all(|c| c.is_ascii_alphabetic()) {
            found.push(text.finding(Kind::Email, start, end));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::guard::detectors::testing::*;

    // --- Email --------------------------------------------------------------------------

    #[test]
    fn finds_emails() {
        assert_eq!(
            found("Escribir a ana.perez@empresa.com.co hoy"),
            vec![(Kind::Email, "ana.perez@empresa.com.co")]
        );
        assert_eq!(
            found("<j_silva+ops@banco-sul.com.br>."),
            vec![(Kind::Email, "j_silva+ops@banco-sul.com.br")]
        );
    }

    #[test]
    fn leaves_email_look_alikes() {
        assert!(found("usuario@localhost").is_empty());
        assert!(found("precio: 3@5 unidades").is_empty());
        assert!(found("@equipo revisen").is_empty());
        assert!(found("a@b@c.com").is_empty());
        assert!(found("ana@empresa.c0m").is_empty());
        assert_eq!(
            found_only("josé@correo.mx", Kind::Email),
            vec!["josé@correo.mx"]
        );
    }
}
