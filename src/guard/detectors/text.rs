//! The view of a text that every detector reads. People and programs write the same number
//! in many forms (full-width digits, non-breaking or doubled spaces, zero-width characters
//! pasted in from a web page), so the detectors read a normalised copy, one char at a time,
//! in which each char remembers the bytes of the original it came from: a finding maps back
//! to the original text, and `redact` replaces what was really written. Also the boundary
//! tests (word, number) the detectors share.

use std::iter::Peekable;
use std::str::CharIndices;

use unicode_normalization::char::canonical_combining_class;
use unicode_normalization::UnicodeNormalization;

use super::{Finding, Kind};

/// A text normalised for the detectors, in one pass over the original:
/// - each char (with the combining marks that follow it) goes through Unicode NFKC, so
///   `４１１１` reads `4111` and `＠` reads `@`; `º` and `ª` are kept as they are (NFKC would
///   make them `o` and `a`, and `Nº` announces a number);
/// - hyphens and dashes that can join digit groups (U+2010–U+2013, U+2212) read `-`;
/// - zero-width chars (U+200B–U+200D, U+2060, U+FEFF) and soft hyphens are dropped;
/// - every run of horizontal whitespace (space, tab, no-break and other Unicode spaces) reads
///   as one `' '`; line breaks stay as they are.
pub(super) struct Text {
    chars: Vec<char>,
    /// For each char, the byte range of the original text it came from.
    spans: Vec<(usize, usize)>,
    /// The original text's length in bytes.
    source_len: usize,
}

impl Text {
    pub(super) fn new(source: &str) -> Self {
        let mut text = Text {
            chars: Vec::with_capacity(source.len()),
            spans: Vec::with_capacity(source.len()),
            source_len: source.len(),
        };
        let mut rest = source.char_indices().peekable();
        let mut cluster = Vec::new();
        while let Some((start, c)) = rest.next() {
            if is_invisible(c) {
                continue;
            }
            let end = take_combining_marks(&mut rest, start + c.len_utf8(), &mut cluster);
            if cluster.is_empty() && (c.is_ascii() || matches!(c, 'º' | 'ª')) {
                text.push(c, start, end);
            } else {
                cluster.insert(0, c);
                for normal in cluster.drain(..).nfkc() {
                    text.push(normal, start, end);
                }
            }
        }
        text
    }

    /// Appends `c`, read from the original bytes `start..end`.
    fn push(&mut self, c: char, start: usize, end: usize) {
        let c = match c {
            '\u{2010}'..='\u{2013}' | '\u{2212}' => '-',
            c if is_horizontal_space(c) => ' ',
            c => c,
        };
        if c == ' ' && self.chars.last() == Some(&' ') {
            if let Some(span) = self.spans.last_mut() {
                span.1 = end;
            }
            return;
        }
        self.chars.push(c);
        self.spans.push((start, end));
    }

    pub(super) fn len(&self) -> usize {
        self.chars.len()
    }

    pub(super) fn at(&self, index: usize) -> Option<char> {
        self.chars.get(index).copied()
    }

    /// The char just before `index`, if any.
    pub(super) fn before(&self, index: usize) -> Option<char> {
        index.checked_sub(1).and_then(|previous| self.at(previous))
    }

    pub(super) fn is(&self, index: usize, wanted: char) -> bool {
        self.at(index) == Some(wanted)
    }

    pub(super) fn is_digit(&self, index: usize) -> bool {
        self.at(index).is_some_and(|c| c.is_ascii_digit())
    }

    pub(super) fn digit(&self, index: usize) -> u8 {
        self.at(index).map_or(0, |c| c as u8 - b'0')
    }

    /// The index just past the run of ASCII digits that starts at `index`.
    pub(super) fn digits_end(&self, mut index: usize) -> usize {
        while self.is_digit(index) {
            index += 1;
        }
        index
    }

    /// The finding of the chars `start..end`, as byte offsets into the original text: from the
    /// first byte of the first char's source to the last byte of the last char's.
    pub(super) fn finding(&self, kind: Kind, start: usize, end: usize) -> Finding {
        let start_byte = self.spans.get(start).map_or(self.source_len, |span| span.0);
        let end_byte = match end.checked_sub(1).and_then(|last| self.spans.get(last)) {
            Some(span) if end > start => span.1,
            _ => start_byte,
        };
        Finding {
            kind,
            start: start_byte,
            end: end_byte,
        }
    }

    /// A word may start at `index`: no letter, digit or `&` right before it.
    pub(super) fn word_starts(&self, index: usize) -> bool {
        !self
            .before(index)
            .is_some_and(|c| c.is_alphanumeric() || c == '&')
    }

    /// A word may end just before `index`.
    pub(super) fn word_ends(&self, index: usize) -> bool {
        !self
            .at(index)
            .is_some_and(|c| c.is_alphanumeric() || c == '&')
    }

    /// A number may start at `index` without being the tail of a longer one: no letter or digit
    /// right before it, and no digit joined to it by `.`, `-` or `/`.
    pub(super) fn number_starts(&self, index: usize) -> bool {
        match self.before(index) {
            None => true,
            Some(c) if c.is_alphanumeric() => false,
            Some('.' | '-' | '/') => !index.checked_sub(2).is_some_and(|i| self.is_digit(i)),
            Some(_) => true,
        }
    }

    /// A number may end just before `index` without being the head of a longer one.
    pub(super) fn number_ends(&self, index: usize) -> bool {
        match self.at(index) {
            None => true,
            Some(c) if c.is_alphanumeric() => false,
            Some('.' | '-' | '/') => !self.is_digit(index + 1),
            Some(_) => true,
        }
    }
}

/// Moves the combining marks that follow a char (and any invisible chars among them) into
/// `marks`; returns the byte offset just past them.
fn take_combining_marks(
    rest: &mut Peekable<CharIndices>,
    mut end: usize,
    marks: &mut Vec<char>,
) -> usize {
    while let Some(&(offset, c)) = rest.peek() {
        let invisible = is_invisible(c);
        if !invisible && canonical_combining_class(c) == 0 {
            break;
        }
        if !invisible {
            marks.push(c);
        }
        end = offset + c.len_utf8();
        rest.next();
    }
    end
}

/// Zero-width spaces and joiners, the word joiner, the byte-order mark and the soft hyphen:
/// invisible when printed, so they must not split what the reader sees as one number.
fn is_invisible(c: char) -> bool {
    matches!(
        c,
        '\u{200B}'..='\u{200D}' | '\u{2060}' | '\u{FEFF}' | '\u{00AD}'
    )
}

/// Whitespace that is not a line break.
fn is_horizontal_space(c: char) -> bool {
    c.is_whitespace()
        && !matches!(
            c,
            '\n' | '\r' | '\u{000B}' | '\u{000C}' | '\u{0085}' | '\u{2028}' | '\u{2029}'
        )
}

/// ASCII upper case, plus `ñ` → `Ñ`; the Mexican tables are written in upper case.
pub(super) fn upper(c: char) -> char {
    if c == 'ñ' {
        'Ñ'
    } else {
        c.to_ascii_uppercase()
    }
}

/// Lower case without the Spanish accents, for matching keywords such as "Cédula".
pub(super) fn fold(c: char) -> char {
    match c.to_lowercase().next().unwrap_or(c) {
        'á' => 'a',
        'é' => 'e',
        'í' => 'i',
        'ó' => 'o',
        'ú' => 'u',
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn normalised(source: &str) -> String {
        Text::new(source).chars.iter().collect()
    }

    #[test]
    fn full_width_forms_read_as_ascii() {
        assert_eq!(normalised("４１１１ ＠ ｄａｔａ．ｃｏ"), "4111 @ data.co");
        assert_eq!(normalised("ＥＳ９１"), "ES91");
    }

    #[test]
    fn horizontal_whitespace_reads_as_one_space_and_line_breaks_stay() {
        assert_eq!(
            normalised("a \t\u{a0}b\u{2007}\u{202f}c\u{3000}d\n\ne\r\nf"),
            "a b c d\n\ne\r\nf"
        );
        assert_eq!(normalised("4111  1111\u{a0}1111"), "4111 1111 1111");
    }

    #[test]
    fn invisible_chars_are_dropped() {
        assert_eq!(
            normalised("41\u{200b}11\u{ad}1\u{feff}1\u{2060}1\u{200c}1\u{200d}"),
            "41111111"
        );
        assert_eq!(normalised("4111 \u{200b} 1111"), "4111 1111");
    }

    #[test]
    fn marks_compose_dashes_join_and_ordinals_stay() {
        assert_eq!(normalised("Jose\u{301} Nu\u{301}n\u{303}ez"), "José Núñez");
        assert_eq!(normalised("Nº 12, 1ª, № 3"), "Nº 12, 1ª, No 3");
        assert_eq!(normalised("301‐234–5678 −1"), "301-234-5678 -1");
        assert_eq!(normalised("ñandú ﬁn"), "ñandú fin");
    }

    #[test]
    fn findings_cover_the_original_bytes_they_were_read_from() {
        let source = "x ４１\u{200b}１ \u{a0}\t y";
        let text = Text::new(source);
        assert_eq!(text.chars.iter().collect::<String>(), "x 411 y");
        let span = |start, end| {
            let finding = text.finding(Kind::Phone, start, end);
            &source[finding.start..finding.end]
        };
        assert_eq!(span(2, 5), "４１\u{200b}１");
        assert_eq!(span(5, 6), " \u{a0}\t ");
        assert_eq!(span(6, 7), "y");
        assert_eq!(span(7, 7), "");
        assert_eq!(span(3, 3), "");
    }
}
