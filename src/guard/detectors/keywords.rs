//! Numbers with no check digit to confirm them (a Colombian cédula, a Peruvian DNI, a Spanish
//! mobile written as nine bare digits) are only taken when a keyword announces them. This finds
//! the keywords, ignoring case and Spanish accents, as whole words.

use super::text::{fold, Text};

/// The end of `keyword` (folded: lower case, no accents) if the text at `index` reads as it.
pub(super) fn match_folded(text: &Text, index: usize, keyword: &str) -> Option<usize> {
    let mut at = index;
    for wanted in keyword.chars() {
        if text.at(at).map(fold) != Some(wanted) {
            return None;
        }
        at += 1;
    }
    Some(at)
}

/// The end of the first of `keywords` that reads, as a whole word, at `index`.
fn keyword_at(text: &Text, index: usize, keywords: &[&str]) -> Option<usize> {
    if !text.word_starts(index) || !text.at(index).is_some_and(char::is_alphabetic) {
        return None;
    }
    keywords
        .iter()
        .filter_map(|keyword| match_folded(text, index, keyword))
        .find(|&end| !text.at(end).is_some_and(char::is_alphanumeric))
}

/// Where the keywords of a text end, to ask whether one comes shortly before a number.
pub(super) struct Keywords {
    ends: Vec<usize>,
    gap: usize,
}

impl Keywords {
    /// Every occurrence of `keywords` in `text`; `gap` is how many chars may separate one from
    /// the number it announces.
    pub(super) fn find(text: &Text, keywords: &[&str], gap: usize) -> Self {
        let ends = (0..text.len())
            .filter_map(|index| keyword_at(text, index, keywords))
            .collect();
        Keywords { ends, gap }
    }

    /// Whether a keyword ends exactly at `index`.
    pub(super) fn end_at(&self, index: usize) -> bool {
        self.ends.binary_search(&index).is_ok()
    }

    /// Whether a keyword ends at most `gap` chars before `index`.
    pub(super) fn precede(&self, index: usize) -> bool {
        let before = self.ends.partition_point(|&end| end <= index);
        before > 0 && index - self.ends[before - 1] <= self.gap
    }
}

/// Words allowed between a keyword and its number ("No.", "número", "nro").
const FILLERS: [&str; 6] = ["numero", "nro", "num", "nº", "no", "n"];
/// At most this many chars between a keyword and its number.
const FILLER_GAP: usize = 20;

/// Where each number announced by one of `keywords` starts: the keyword, then only spaces,
/// `:`, `.`, `#`, `°`, `º`, `-` and words like "No." for at most 20 chars, then a digit.
pub(super) fn announced_numbers(text: &Text, keywords: &[&str]) -> Vec<usize> {
    (0..text.len())
        .filter_map(|index| keyword_at(text, index, keywords))
        .filter_map(|keyword_end| skip_filler(text, keyword_end))
        .collect()
}

/// Skips the filler after a keyword; returns where the digits begin, if they begin within
/// `FILLER_GAP` chars.
fn skip_filler(text: &Text, from: usize) -> Option<usize> {
    let mut index = from;
    while index <= from + FILLER_GAP {
        match text.at(index)? {
            c if c.is_ascii_digit() => return Some(index),
            ' ' | '\t' | ':' | '.' | '#' | '°' | 'º' | '-' => index += 1,
            _ => {
                let filler_end = FILLERS
                    .iter()
                    .filter_map(|filler| match_folded(text, index, filler))
                    .find(|&end| !text.at(end).is_some_and(char::is_alphabetic))?;
                index = filler_end;
            }
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keywords_match_whole_words_in_any_case_and_accent() {
        let text = Text::new("TELÉFONO: 1, teléfonos 2, telefonista 3, Tel. 4");
        let keywords = Keywords::find(&text, &["telefono", "tel"], 3);
        assert_eq!(keywords.ends, vec![8, 44]);
        assert!(keywords.precede(10) && keywords.precede(11) && !keywords.precede(12));
        assert!(!keywords.precede(5));
        assert!(keywords.end_at(44) && !keywords.end_at(45));
    }

    #[test]
    fn announced_numbers_follow_their_keyword_and_fillers_only() {
        let text = Text::new("DNI Nº 123, dni: no. 456, DNI del titular 789, xdni 1");
        let starts = announced_numbers(&text, &["dni"]);
        let digits: Vec<char> = starts.iter().filter_map(|&i| text.at(i)).collect();
        assert_eq!(digits, vec!['1', '4']);
    }
}
