//! The char-level view of a text that every detector reads: chars with their byte offsets,
//! so multi-byte letters (Ñ, é) can sit next to the ASCII patterns, and the boundary tests
//! (word, number) the detectors share.

use super::{Finding, Kind};

pub(super) struct Text<'a> {
    source: &'a str,
    chars: Vec<(usize, char)>,
}

impl<'a> Text<'a> {
    pub(super) fn new(source: &'a str) -> Self {
        Text {
            source,
            chars: source.char_indices().collect(),
        }
    }

    pub(super) fn len(&self) -> usize {
        self.chars.len()
    }

    pub(super) fn at(&self, index: usize) -> Option<char> {
        self.chars.get(index).map(|&(_, c)| c)
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

    pub(super) fn finding(&self, kind: Kind, start: usize, end: usize) -> Finding {
        let byte = |index: usize| {
            self.chars
                .get(index)
                .map_or(self.source.len(), |&(offset, _)| offset)
        };
        Finding {
            kind,
            start: byte(start),
            end: byte(end),
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
