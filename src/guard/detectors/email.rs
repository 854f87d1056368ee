//! E-mail addresses, as written and as people spell them to dodge scrapers: `ana@x.co`,
//! `ana @ x.co`, `ana [at] x [dot] co`, `ana(at)x(dot)co`, `ana at x dot co`,
//! `ana arroba x punto co`. A spelled-out address needs a plausible top-level domain, so prose
//! such as "look at the dot product" passes untouched.

use super::text::Text;
use super::{Finding, Kind};

/// How a separator was written.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Spelling {
    /// `@` or `.`.
    Symbol,
    /// `[at]`, `(dot)`, `{at}`, `<dot>`, `[@]`, `[.]`.
    Bracketed,
    /// ` at `, ` dot `, ` arroba `, ` punto `: also ordinary words, so the least sure.
    Word,
}

/// Top-level domains taken after a spelled-out separator, besides every two-letter one.
const GENERIC_TOP_LEVEL: [&str; 7] = ["com", "net", "org", "edu", "gov", "info", "biz"];

/// Words that are no local part or domain label of a spelled-out address, only prose:
/// "look at the dot product", "visit us at …", "el punto de la cuenta".
const PROSE_WORDS: [&str; 40] = [
    "the", "a", "an", "this", "that", "these", "those", "my", "your", "his", "her", "its", "our",
    "their", "some", "any", "each", "every", "one", "us", "me", "you", "him", "them", "it", "we",
    "i", "el", "la", "los", "las", "un", "una", "este", "esta", "ese", "esa", "mi", "tu", "su",
];

pub(super) fn find_emails(text: &Text, found: &mut Vec<Finding>) {
    for index in 1..text.len() {
        // A separator starts right after the local part: at `@`, at a bracket or a space.
        if !text.at(index - 1).is_some_and(is_local) {
            continue;
        }
        let Some((domain_start, at_spelling)) = separator(text, index, '@', &["at", "arroba"])
        else {
            continue;
        };
        let Some(start) = local_part_start(text, index) else {
            continue;
        };
        let labels = read_labels(text, domain_start, at_spelling);
        if let Some(end) = best_end(text, start..index, &labels) {
            found.push(text.finding(Kind::Email, start, end));
        }
    }
}

/// Local parts may carry Unicode letters (RFC 6531: josé@…); domains stay ASCII.
fn is_local(c: char) -> bool {
    c.is_alphanumeric() || "._%+-".contains(c)
}

fn is_label_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '-'
}

/// Where the local part that ends just before `separator` starts, if it is one: not empty, not
/// ending in a dot, not the tail of another address.
fn local_part_start(text: &Text, separator: usize) -> Option<usize> {
    let mut start = separator;
    while start > 0 && text.at(start - 1).is_some_and(is_local) {
        start -= 1;
    }
    while start < separator && text.is(start, '.') {
        start += 1;
    }
    let after_another_at = text.before(start) == Some('@');
    let ends_in_dot = text.is(separator - 1, '.');
    (start < separator && !after_another_at && !ends_in_dot).then_some(start)
}

/// The separator that starts at `index`, if any: `symbol` itself (for `@`, also with a space
/// after it or on both sides), `symbol` or one of `words` in brackets, or one of `words`
/// between spaces. Returns where what it separates resumes, and how it was spelled.
fn separator(text: &Text, index: usize, symbol: char, words: &[&str]) -> Option<(usize, Spelling)> {
    let at_sign = symbol == '@';
    if text.is(index, symbol) {
        let spaced = at_sign && text.is(index + 1, ' ');
        return Some((index + 1 + usize::from(spaced), Spelling::Symbol));
    }
    if at_sign && text.is(index, ' ') && text.is(index + 1, '@') && text.is(index + 2, ' ') {
        return Some((index + 3, Spelling::Symbol));
    }
    let mut at = index + usize::from(text.is(index, ' '));
    if let Some(close) = text.at(at).and_then(closing_bracket) {
        at += 1;
        at += usize::from(text.is(at, ' '));
        at = if text.is(at, symbol) {
            at + 1
        } else {
            words.iter().find_map(|word| match_word(text, at, word))?
        };
        at += usize::from(text.is(at, ' '));
        if !text.is(at, close) {
            return None;
        }
        at += 1;
        return Some((at + usize::from(text.is(at, ' ')), Spelling::Bracketed));
    }
    if !text.is(index, ' ') {
        return None;
    }
    let end = words
        .iter()
        .find_map(|word| match_word(text, index + 1, word))?;
    text.is(end, ' ').then_some((end + 1, Spelling::Word))
}

fn closing_bracket(open: char) -> Option<char> {
    match open {
        '[' => Some(']'),
        '(' => Some(')'),
        '{' => Some('}'),
        '<' => Some('>'),
        _ => None,
    }
}

/// The end of `word` (lower case ASCII) if the text at `index` reads as it, in any case, as a
/// whole word.
fn match_word(text: &Text, index: usize, word: &str) -> Option<usize> {
    let mut at = index;
    for wanted in word.chars() {
        if text.at(at).map(|c| c.to_ascii_lowercase()) != Some(wanted) {
            return None;
        }
        at += 1;
    }
    (!text.at(at).is_some_and(char::is_alphanumeric)).then_some(at)
}

/// One domain label: its char range, and how the separator before it was spelled (for the
/// first label, the one after the local part).
struct Label {
    start: usize,
    end: usize,
    after: Spelling,
}

/// A domain name has at most 127 labels (253 chars); reading stops there.
const MOST_LABELS: usize = 127;

/// The labels of the domain that starts at `start`, as long as they are joined by dots.
fn read_labels(text: &Text, start: usize, at_spelling: Spelling) -> Vec<Label> {
    let mut labels: Vec<Label> = Vec::new();
    let mut next = Some((start, at_spelling));
    while let Some((start, after)) = next.filter(|_| labels.len() < MOST_LABELS) {
        if !text.at(start).is_some_and(|c| c.is_ascii_alphanumeric()) {
            break;
        }
        let mut end = start;
        while text.at(end).is_some_and(is_label_char) {
            end += 1;
        }
        // A label ends with a letter or digit; a trailing `-` is not part of the address.
        while text.is(end - 1, '-') {
            end -= 1;
        }
        labels.push(Label { start, end, after });
        next = separator(text, end, '.', &["dot", "punto"]);
    }
    labels
}

/// Where the address with the local part `local` and the domain `labels` (or their longest
/// plausible prefix) ends, if it is one.
fn best_end(text: &Text, local: std::ops::Range<usize>, labels: &[Label]) -> Option<usize> {
    let word = |start: usize, end: usize| -> String {
        (start..end)
            .filter_map(|i| text.at(i))
            .map(|c| c.to_ascii_lowercase())
            .collect()
    };
    let is_prose = |w: &str| PROSE_WORDS.contains(&w);
    // For each prefix of the labels: the least sure spelling in it, and whether its local part
    // or a label before its last is a prose word.
    let mut prefixes: Vec<(Spelling, bool)> = Vec::with_capacity(labels.len());
    let mut spelling = Spelling::Symbol;
    let mut prose = is_prose(&word(local.start, local.end));
    for label in labels {
        spelling = spelling.max(label.after);
        prefixes.push((spelling, prose));
        prose = prose || is_prose(&word(label.start, label.end));
    }
    (2..=labels.len()).rev().find_map(|count| {
        let top = &labels[count - 1];
        let (spelling, prose) = prefixes[count - 1];
        let top_level = word(top.start, top.end);
        let letters_only =
            top_level.len() >= 2 && top_level.chars().all(|c| c.is_ascii_alphabetic());
        let plausible = match spelling {
            Spelling::Symbol => letters_only,
            Spelling::Bracketed | Spelling::Word => {
                letters_only
                    && (top_level.len() == 2 || GENERIC_TOP_LEVEL.contains(&top_level.as_str()))
            }
        };
        let bounded = text.word_ends(top.end) && !text.is(top.end, '@');
        let prose = prose && spelling == Spelling::Word;
        (plausible && !prose && bounded).then_some(top.end)
    })
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
    fn finds_emails_spelled_out_or_spaced() {
        for email in [
            "ana＠dataandes.co",
            "ana @ dataandes.co",
            "ana@ dataandes.co",
            "ana at dataandes dot co",
            "ana AT dataandes DOT co",
            "ana [at] dataandes [dot] co",
            "ana[at]dataandes[dot]co",
            "ana(at)dataandes(dot)co",
            "ana (at) dataandes (dot) com",
            "ana {at} dataandes {dot} org",
            "ana <at> dataandes <dot> co",
            "ana [@] dataandes [.] co",
            "ana [at] dataandes.co",
            "ana arroba dataandes punto co",
            "ana.perez arroba empresa punto com punto co",
            "ana\u{a0}at\u{a0}dataandes\u{a0}dot\u{a0}io",
            "ana at data-andes dot info",
        ] {
            let text = format!("Escribir a {email} hoy.");
            assert_eq!(found(&text), vec![(Kind::Email, email)], "{text:?}");
        }
    }

    /// Why this detector is ours and not a kept crate's: a link finder (`linkify`) finds
    /// the plain addresses, but none of the spellings people use to dodge scrapers, which
    /// are exactly the ones a payload must not carry out unnoticed.
    #[test]
    fn a_kept_link_finder_misses_what_this_detector_exists_for() {
        use linkify::{LinkFinder, LinkKind};
        let mut finder = LinkFinder::new();
        finder.kinds(&[LinkKind::Email]);
        let plain = "Escribir a ana.perez@empresa.com.co hoy.";
        assert_eq!(finder.links(plain).count(), 1);
        assert_eq!(
            found(plain),
            vec![(Kind::Email, "ana.perez@empresa.com.co")]
        );
        for email in [
            "ana＠dataandes.co",
            "ana @ dataandes.co",
            "ana [at] dataandes [dot] co",
            "ana(at)dataandes(dot)co",
            "ana arroba dataandes punto co",
        ] {
            let text = format!("Escribir a {email} hoy.");
            assert_eq!(finder.links(&text).count(), 0, "linkify found {text:?}");
            assert_eq!(found(&text), vec![(Kind::Email, email)], "{text:?}");
        }
    }

    #[test]
    fn leaves_prose_that_spells_at_and_dot() {
        for text in [
            "Look at the dot product of both vectors.",
            "Stare at the dot in the middle.",
            "Connect the dots at home dot page",
            "He arrived at 5 dot 30.",
            "Visit us at acme dot com",
            "Una arroba de trigo en el punto de venta.",
            "Pesaba una arroba punto",
            "Llegó a las diez en punto.",
            "Reunión at oficina dot central",
            "x [at] y [dot] museum",
            "sigue a @dataandes.co en redes",
            "precio: 3 @ 5 unidades, 3 @ 5.50 c/u",
        ] {
            assert!(found(text).is_empty(), "{text}: {:?}", found(text));
        }
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
