//! What the egress guard looks for before a payload leaves for the cloud: emails, phones,
//! cards, IBANs and the tax and identity numbers of Colombia, Mexico, Argentina and Brazil,
//! each confirmed by its own check digit so look-alikes pass untouched, plus verbatim copying.

use std::collections::{BTreeMap, HashMap};
use std::ops::Range;

/// What a detector found.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Kind {
    Email,
    Phone,
    PaymentCard,
    Iban,
    NitCo,
    CedulaCo,
    RfcMx,
    CurpMx,
    CuitAr,
    CpfBr,
    CnpjBr,
}

impl Kind {
    pub const ALL: [Kind; 11] = [
        Kind::Email,
        Kind::Phone,
        Kind::PaymentCard,
        Kind::Iban,
        Kind::NitCo,
        Kind::CedulaCo,
        Kind::RfcMx,
        Kind::CurpMx,
        Kind::CuitAr,
        Kind::CpfBr,
        Kind::CnpjBr,
    ];

    /// The name used in config files and scripts.
    pub fn name(self) -> &'static str {
        match self {
            Kind::Email => "email",
            Kind::Phone => "phone",
            Kind::PaymentCard => "payment_card",
            Kind::Iban => "iban",
            Kind::NitCo => "nit_co",
            Kind::CedulaCo => "cedula_co",
            Kind::RfcMx => "rfc_mx",
            Kind::CurpMx => "curp_mx",
            Kind::CuitAr => "cuit_ar",
            Kind::CpfBr => "cpf_br",
            Kind::CnpjBr => "cnpj_br",
        }
    }

    /// What `redact` writes in place of a finding of this kind.
    pub fn placeholder(self) -> &'static str {
        match self {
            Kind::Email => "[EMAIL]",
            Kind::Phone => "[PHONE]",
            Kind::PaymentCard => "[CARD]",
            Kind::Iban => "[IBAN]",
            Kind::NitCo => "[NIT]",
            Kind::CedulaCo => "[CEDULA]",
            Kind::RfcMx => "[RFC]",
            Kind::CurpMx => "[CURP]",
            Kind::CuitAr => "[CUIT]",
            Kind::CpfBr => "[CPF]",
            Kind::CnpjBr => "[CNPJ]",
        }
    }

    pub fn from_name(s: &str) -> Option<Kind> {
        Kind::ALL.into_iter().find(|kind| kind.name() == s)
    }

    /// Which finding survives when two overlap: the higher one. Check-digit identifiers
    /// outrank the phone detector, which matches almost any long run of digits.
    fn precedence(self) -> u8 {
        match self {
            Kind::Email => 11,
            Kind::Iban => 10,
            Kind::CurpMx => 9,
            Kind::RfcMx => 8,
            Kind::CnpjBr => 7,
            Kind::PaymentCard => 6,
            Kind::CuitAr => 5,
            Kind::CpfBr => 4,
            Kind::NitCo => 3,
            Kind::CedulaCo => 2,
            Kind::Phone => 1,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    pub kind: Kind,
    /// Byte offset of the first byte, on a char boundary.
    pub start: usize,
    /// Byte offset one past the last byte, on a char boundary.
    pub end: usize,
}

/// Every finding in `text`, sorted by start, non-overlapping (when two overlap keep the longer /
/// more specific one: e.g. a CNPJ beats a phone number, a card beats a phone).
pub fn scan(text: &str, kinds: &[Kind]) -> Vec<Finding> {
    let text = Text::new(text);
    let wanted = |kind| kinds.contains(&kind);
    let mut found = Vec::new();
    if wanted(Kind::Email) {
        find_emails(&text, &mut found);
    }
    if wanted(Kind::Phone) {
        find_phones(&text, &mut found);
    }
    if wanted(Kind::PaymentCard) {
        find_cards(&text, &mut found);
    }
    if wanted(Kind::Iban) {
        find_ibans(&text, &mut found);
    }
    if wanted(Kind::NitCo) {
        find_numbers(
            &text,
            Kind::NitCo,
            &["ddd.ddd.ddd-d", "ddddddddd-d"],
            nit_is_valid,
            &mut found,
        );
    }
    if wanted(Kind::CedulaCo) {
        find_cedulas(&text, &mut found);
    }
    if wanted(Kind::RfcMx) {
        find_rfcs(&text, &mut found);
    }
    if wanted(Kind::CurpMx) {
        find_curps(&text, &mut found);
    }
    if wanted(Kind::CuitAr) {
        find_numbers(
            &text,
            Kind::CuitAr,
            &["dd-dddddddd-d", "ddddddddddd"],
            cuit_is_valid,
            &mut found,
        );
    }
    if wanted(Kind::CpfBr) {
        let shapes = ["ddd.ddd.ddd-dd", "ddddddddd-dd", "ddddddddddd"];
        find_numbers(&text, Kind::CpfBr, &shapes, cpf_is_valid, &mut found);
    }
    if wanted(Kind::CnpjBr) {
        let shapes = ["dd.ddd.ddd/dddd-dd", "dddddddddddddd"];
        find_numbers(&text, Kind::CnpjBr, &shapes, cnpj_is_valid, &mut found);
    }
    keep_non_overlapping(found)
}

/// `text` with each finding replaced by its kind's placeholder. Findings that overlap an
/// earlier one, or do not fall on char boundaries of `text`, are ignored.
pub fn redact(text: &str, findings: &[Finding]) -> String {
    let mut sorted: Vec<&Finding> = findings.iter().collect();
    sorted.sort_by_key(|finding| (finding.start, finding.end));
    let mut out = String::with_capacity(text.len());
    let mut copied_up_to = 0;
    for finding in sorted {
        let fits = finding.start >= copied_up_to
            && finding.start <= finding.end
            && text.get(finding.start..finding.end).is_some();
        if !fits {
            continue;
        }
        out.push_str(&text[copied_up_to..finding.start]);
        out.push_str(finding.kind.placeholder());
        copied_up_to = finding.end;
    }
    out.push_str(&text[copied_up_to..]);
    out
}

/// The longest run of consecutive words of `payload` that also appears, consecutively, in
/// `source`. Words are compared case-insensitively after Unicode-lowercasing and stripping
/// leading/trailing punctuation; a word is a maximal run of non-whitespace. Returns the run
/// length (number of words) and the byte range in `payload` where it starts/ends.
///
/// The range spans whole payload words, punctuation attached to them included; `(0, 0..0)`
/// when nothing is shared. Words that are nothing but punctuation (`—`, `|`, `{`) are skipped
/// on both sides. Runs in O((n + m) log m): a binary search on the length, each step hashing
/// the word n-grams.
pub fn longest_shared_run(payload: &str, source: &str) -> (usize, Range<usize>) {
    let mut vocabulary: HashMap<String, u64> = HashMap::new();
    let source_ids: Vec<u64> = words(source)
        .map(|(_, word)| {
            let next_id = vocabulary.len() as u64;
            *vocabulary.entry(word).or_insert(next_id)
        })
        .collect();
    // A payload word the source never uses gets an id of its own that nothing can match.
    let (payload_ranges, payload_ids): (Vec<Range<usize>>, Vec<u64>) = words(payload)
        .enumerate()
        .map(|(index, (range, word))| {
            let id = vocabulary
                .get(&word)
                .copied()
                .unwrap_or(u64::from(u32::MAX) + index as u64);
            (range, id)
        })
        .unzip();

    // A shared run of k words contains one of k - 1, so the longest length is found by bisection.
    let (mut shortest_absent, mut longest_present) =
        (payload_ids.len().min(source_ids.len()) + 1, 0);
    let mut found_at = None;
    while longest_present + 1 < shortest_absent {
        let length = (longest_present + shortest_absent) / 2;
        match find_shared_ngram(&payload_ids, &source_ids, length) {
            Some(at) => {
                longest_present = length;
                found_at = Some(at);
            }
            None => shortest_absent = length,
        }
    }
    match found_at {
        Some(at) => {
            let start = payload_ranges[at].start;
            let end = payload_ranges[at + longest_present - 1].end;
            (longest_present, start..end)
        }
        None => (0, 0..0),
    }
}

// ---------------------------------------------------------------------------------------------
// Text access shared by the detectors: chars with their byte offsets, so multi-byte letters
// (Ñ, é) can sit next to the ASCII patterns.

struct Text<'a> {
    source: &'a str,
    chars: Vec<(usize, char)>,
}

impl<'a> Text<'a> {
    fn new(source: &'a str) -> Self {
        Text {
            source,
            chars: source.char_indices().collect(),
        }
    }

    fn len(&self) -> usize {
        self.chars.len()
    }

    fn at(&self, index: usize) -> Option<char> {
        self.chars.get(index).map(|&(_, c)| c)
    }

    /// The char just before `index`, if any.
    fn before(&self, index: usize) -> Option<char> {
        index.checked_sub(1).and_then(|previous| self.at(previous))
    }

    fn is(&self, index: usize, wanted: char) -> bool {
        self.at(index) == Some(wanted)
    }

    fn is_digit(&self, index: usize) -> bool {
        self.at(index).is_some_and(|c| c.is_ascii_digit())
    }

    fn digit(&self, index: usize) -> u8 {
        self.at(index).map_or(0, |c| c as u8 - b'0')
    }

    /// The index just past the run of ASCII digits that starts at `index`.
    fn digits_end(&self, mut index: usize) -> usize {
        while self.is_digit(index) {
            index += 1;
        }
        index
    }

    fn finding(&self, kind: Kind, start: usize, end: usize) -> Finding {
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
    fn word_starts(&self, index: usize) -> bool {
        !self
            .before(index)
            .is_some_and(|c| c.is_alphanumeric() || c == '&')
    }

    /// A word may end just before `index`.
    fn word_ends(&self, index: usize) -> bool {
        !self
            .at(index)
            .is_some_and(|c| c.is_alphanumeric() || c == '&')
    }

    /// A number may start at `index` without being the tail of a longer one: no letter or digit
    /// right before it, and no digit joined to it by `.`, `-` or `/`.
    fn number_starts(&self, index: usize) -> bool {
        match self.before(index) {
            None => true,
            Some(c) if c.is_alphanumeric() => false,
            Some('.' | '-' | '/') => !index.checked_sub(2).is_some_and(|i| self.is_digit(i)),
            Some(_) => true,
        }
    }

    /// A number may end just before `index` without being the head of a longer one.
    fn number_ends(&self, index: usize) -> bool {
        match self.at(index) {
            None => true,
            Some(c) if c.is_alphanumeric() => false,
            Some('.' | '-' | '/') => !self.is_digit(index + 1),
            Some(_) => true,
        }
    }
}

/// ASCII upper case, plus `ñ` → `Ñ`; the Mexican tables are written in upper case.
fn upper(c: char) -> char {
    if c == 'ñ' {
        'Ñ'
    } else {
        c.to_ascii_uppercase()
    }
}

/// Lower case without the Spanish accents, for matching keywords such as "Cédula".
fn fold(c: char) -> char {
    match c.to_lowercase().next().unwrap_or(c) {
        'á' => 'a',
        'é' => 'e',
        'í' => 'i',
        'ó' => 'o',
        'ú' => 'u',
        other => other,
    }
}

/// A valid YYMMDD: month 01–12, day 01–31.
fn is_valid_yymmdd(digits: &[u8]) -> bool {
    let month = digits[2] * 10 + digits[3];
    let day = digits[4] * 10 + digits[5];
    (1..=12).contains(&month) && (1..=31).contains(&day)
}

/// Keeps, of every group of overlapping candidates, the one with the highest precedence (then
/// the longest, then the first), and returns the survivors sorted by start.
fn keep_non_overlapping(mut candidates: Vec<Finding>) -> Vec<Finding> {
    candidates.sort_by(|a, b| {
        (b.kind.precedence(), b.end - b.start, a.start).cmp(&(
            a.kind.precedence(),
            a.end - a.start,
            b.start,
        ))
    });
    // Accepted findings keyed by start; they never overlap, so only the last one starting
    // before a candidate's end can overlap it.
    let mut accepted: BTreeMap<usize, Finding> = BTreeMap::new();
    for candidate in candidates {
        let overlaps = accepted
            .range(..candidate.end)
            .next_back()
            .is_some_and(|(_, previous)| previous.end > candidate.start);
        if !overlaps && candidate.start < candidate.end {
            accepted.insert(candidate.start, candidate);
        }
    }
    accepted.into_values().collect()
}

// ---------------------------------------------------------------------------------------------
// Email

fn find_emails(text: &Text, found: &mut Vec<Finding>) {
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

// ---------------------------------------------------------------------------------------------
// Phone

/// One group of digits in a run that may be a phone number.
struct DigitGroup {
    /// First char of the group, its `(` included.
    start: usize,
    /// Just past the group, its `)` included.
    end: usize,
    digits: usize,
    /// The `-` or `.` between this group and the previous one, if any.
    joined_by: Option<char>,
    /// Only spaces (or nothing, after a `)`) between this group and the previous one.
    after_space: bool,
}

/// Phone numbers: a run of digit groups (optional leading `+`, groups joined by a space, `-`,
/// `.` or parentheses) with 8–15 digits, and either a `+` or 10–13 digits. A run that is not
/// one phone may be several joined by spaces ("301 234 5678 320 987 6543"); a space after a
/// group of 7+ digits always ends a phone ("3012345678 2 veces").
fn find_phones(text: &Text, found: &mut Vec<Finding>) {
    let mut index = 0;
    while index < text.len() {
        let starts_run = match text.at(index) {
            Some('+') => {
                text.word_starts(index) && (text.is_digit(index + 1) || text.is(index + 1, '('))
            }
            Some('(') => text.number_starts(index),
            Some(c) if c.is_ascii_digit() => {
                // Not the tail of a code either: FE-2026-000123, 301 234 (a run starts earlier).
                let joined_to_word = matches!(text.before(index), Some('.' | '-' | '/'))
                    && index
                        .checked_sub(2)
                        .and_then(|i| text.at(i))
                        .is_some_and(char::is_alphanumeric);
                let continues_run =
                    text.is(index.wrapping_sub(1), ' ') && text.is_digit(index.wrapping_sub(2));
                text.number_starts(index)
                    && !joined_to_word
                    && !continues_run
                    && !matches!(text.before(index), Some('+' | '('))
            }
            _ => false,
        };
        if !starts_run {
            index += 1;
            continue;
        }
        let has_plus = text.is(index, '+');
        let groups = read_digit_groups(text, if has_plus { index + 1 } else { index });
        let Some(last) = groups.last() else {
            index += 1;
            continue;
        };
        let run_end = last.end;
        let time_follows = text.is(run_end, ':') && text.is_digit(run_end + 1);
        let mut piece_start = 0;
        for (position, group) in groups.iter().enumerate() {
            let is_last = position + 1 == groups.len();
            let cut_after = !is_last && group.digits >= 7 && groups[position + 1].after_space;
            if !(is_last || cut_after) {
                continue;
            }
            let piece = &groups[piece_start..=position];
            let plus = has_plus && piece_start == 0;
            let ends_cleanly = !is_last || text.number_ends(run_end) && !time_follows;
            if ends_cleanly {
                for phone in split_into_phones(piece, plus) {
                    let first = if plus && phone.start == 0 {
                        index
                    } else {
                        piece[phone.start].start
                    };
                    found.push(text.finding(Kind::Phone, first, piece[phone.end - 1].end));
                }
            }
            piece_start = position + 1;
        }
        index = run_end.max(index + 1);
    }
}

/// The fewest phones that together make up all of `groups`, split only where groups are
/// joined by spaces; none if there is no such split. Only the first may carry the `+`.
fn split_into_phones(groups: &[DigitGroup], has_plus: bool) -> Vec<Range<usize>> {
    /// A phone has at most 15 digits, so at most 15 groups.
    const MOST_GROUPS: usize = 15;
    // fewest[j]: the fewest phones making up groups[..j], and where the last one starts.
    let mut fewest: Vec<Option<(usize, usize)>> = vec![None; groups.len() + 1];
    fewest[0] = Some((0, 0));
    for end in 1..=groups.len() {
        for start in end.saturating_sub(MOST_GROUPS)..end {
            let Some((count, _)) = fewest[start] else {
                continue;
            };
            let may_split_here = start == 0 || groups[start].after_space;
            let better = fewest[end].is_none_or(|(best, _)| count + 1 < best);
            if may_split_here && better && is_phone(&groups[start..end], has_plus && start == 0) {
                fewest[end] = Some((count + 1, start));
            }
        }
    }
    let mut phones = Vec::new();
    let mut end = groups.len();
    while end > 0 {
        let Some((_, start)) = fewest[end] else {
            return Vec::new();
        };
        phones.push(start..end);
        end = start;
    }
    phones.reverse();
    phones
}

/// Reads digit groups from `index`: `301`, `(601)`, joined by a space, `-` or `.` (spaces
/// allowed around the `-` or `.`), or nothing after a `)`.
fn read_digit_groups(text: &Text, mut index: usize) -> Vec<DigitGroup> {
    let mut groups: Vec<DigitGroup> = Vec::new();
    let mut joined_by = None;
    let mut after_space = false;
    loop {
        let start = index;
        let opened = text.is(index, '(');
        if opened {
            index += 1;
        }
        if !text.is_digit(index) {
            break;
        }
        index = text.digits_end(index);
        let digits = index - start - usize::from(opened);
        if opened {
            if !text.is(index, ')') {
                break;
            }
            index += 1;
        }
        groups.push(DigitGroup {
            start,
            end: index,
            digits,
            joined_by,
            after_space,
        });

        // The separator to the next group, if there is one.
        let mut next = index;
        let mut spaces_only = true;
        joined_by = None;
        if text.is(next, ' ') {
            next += 1;
        }
        if let Some(c @ ('-' | '.')) = text.at(next) {
            joined_by = Some(c);
            spaces_only = false;
            next += 1;
            if text.is(next, ' ') {
                next += 1;
            }
        }
        let has_separator = next > index || opened;
        if !has_separator || !(text.is_digit(next) || text.is(next, '(')) {
            break;
        }
        after_space = spaces_only;
        index = next;
    }
    // A `(` that was never closed leaves its group out; the run ends before it.
    groups
}

fn is_phone(groups: &[DigitGroup], has_plus: bool) -> bool {
    let digits: usize = groups.iter().map(|group| group.digits).sum();
    let lengths: Vec<usize> = groups.iter().map(|group| group.digits).collect();
    let joiners: Vec<char> = groups.iter().filter_map(|group| group.joined_by).collect();
    let dotted = joiners.contains(&'.');
    let dashed = joiners.contains(&'-');
    let enough_digits = if has_plus {
        (8..=15).contains(&digits)
    } else {
        (10..=13).contains(&digits)
    };
    // 8.500.000 and 192.168.100.200: thousands separators or an address, not a phone.
    let thousands = lengths.len() >= 2
        && lengths[1..].iter().all(|&length| length == 3)
        && groups[1..].iter().all(|group| group.joined_by == Some('.'));
    // 3.1415926535: a decimal.
    let decimal = lengths.len() == 2 && joiners == ['.'];
    // 2026-01-20 10, 20-01-2026: a date (joined by `-` or `.`, not spaces as in +52 55 1234…).
    let date = lengths.len() >= 3
        && matches!(lengths[..3], [4, 2, 2] | [2, 2, 4])
        && groups[1].joined_by.is_some()
        && groups[2].joined_by.is_some();
    // 529.982.247-25, 900.123.456-7, 20-12345678-7: identifier layouts with a bad check digit.
    let identifier_layout = (dotted && dashed) || lengths.last().is_some_and(|&length| length < 2);
    enough_digits && !thousands && !decimal && !date && !identifier_layout
}

// ---------------------------------------------------------------------------------------------
// Payment card

/// Cards: 13–19 digits, plain or in groups (4-4-4-4…, Amex 4-6-5, Diners 4-6-4) joined by one
/// kind of separator, with a known IIN prefix and a valid Luhn check digit.
fn find_cards(text: &Text, found: &mut Vec<Finding>) {
    for index in 0..text.len() {
        if !text.is_digit(index)
            || !text.number_starts(index)
            || text.is(index.wrapping_sub(1), '+')
        {
            continue;
        }
        if text.is(index.wrapping_sub(1), ' ') && text.is_digit(index.wrapping_sub(2)) {
            continue;
        }
        let mut groups = vec![(index, text.digits_end(index))];
        if let Some(separator @ (' ' | '-')) = text.at(groups[0].1) {
            while groups.len() < 6 {
                let after = groups[groups.len() - 1].1;
                if !(text.is(after, separator) && text.is_digit(after + 1)) {
                    break;
                }
                groups.push((after + 1, text.digits_end(after + 1)));
            }
        }
        for taken in (1..=groups.len()).rev() {
            let lengths: Vec<usize> = groups[..taken]
                .iter()
                .map(|(start, end)| end - start)
                .collect();
            let end = groups[taken - 1].1;
            if !is_card_grouping(&lengths) || !text.number_ends(end) {
                continue;
            }
            let digits: Vec<u8> = groups[..taken]
                .iter()
                .flat_map(|&(start, end)| (start..end).map(|i| text.digit(i)))
                .collect();
            if card_is_valid(&digits) {
                found.push(text.finding(Kind::PaymentCard, index, end));
                break;
            }
        }
    }
}

fn is_card_grouping(lengths: &[usize]) -> bool {
    let total: usize = lengths.iter().sum();
    if !(13..=19).contains(&total) {
        return false;
    }
    match lengths {
        [_] | [4, 6, 5] | [4, 6, 4] => true,
        [body @ .., last] => body.iter().all(|&length| length == 4) && (1..=4).contains(last),
        [] => false,
    }
}

/// Luhn-valid, with the prefix and length of a card network we know.
fn card_is_valid(digits: &[u8]) -> bool {
    let prefix = |count: usize| {
        digits[..count]
            .iter()
            .fold(0u32, |acc, &d| acc * 10 + u32::from(d))
    };
    let length = digits.len();
    let network_known = match digits[0] {
        4 => true,                                               // Visa
        5 => (51..=55).contains(&prefix(2)) && length == 16,     // Mastercard
        2 => (2221..=2720).contains(&prefix(4)) && length == 16, // Mastercard 2-series
        3 if matches!(prefix(2), 34 | 37) => length == 15,       // Amex
        3 => matches!(prefix(2), 36 | 38) || (300..=305).contains(&prefix(3)) && length >= 14, // Diners
        6 => (prefix(4) == 6011 || prefix(2) == 65) && length >= 16, // Discover
        _ => false,
    };
    network_known && luhn_is_valid(digits)
}

fn luhn_is_valid(digits: &[u8]) -> bool {
    let sum: u32 = digits
        .iter()
        .rev()
        .enumerate()
        .map(|(position, &digit)| {
            let digit = u32::from(digit);
            if position % 2 == 1 {
                let doubled = digit * 2;
                if doubled > 9 {
                    doubled - 9
                } else {
                    doubled
                }
            } else {
                digit
            }
        })
        .sum();
    sum.is_multiple_of(10)
}

// ---------------------------------------------------------------------------------------------
// IBAN

/// IBANs: country, check digits, then the account, compact or in groups of four; the length
/// must fit the country and the ISO 13616 mod-97 check must give 1.
fn find_ibans(text: &Text, found: &mut Vec<Finding>) {
    let is_upper = |i: usize| text.at(i).is_some_and(|c| c.is_ascii_uppercase());
    let is_alnum = |i: usize| {
        text.at(i)
            .is_some_and(|c| c.is_ascii_uppercase() || c.is_ascii_digit())
    };
    for index in 0..text.len() {
        let looks_like_start = is_upper(index)
            && is_upper(index + 1)
            && text.is_digit(index + 2)
            && text.is_digit(index + 3)
            && text.word_starts(index);
        if !looks_like_start {
            continue;
        }
        let grouped = text.is(index + 4, ' ');
        let mut chars: Vec<u8> = Vec::with_capacity(34);
        let mut ends: Vec<usize> = Vec::with_capacity(34); // char index just past each IBAN char
        let mut next = index;
        while chars.len() < 34 {
            if grouped
                && chars.len() >= 4
                && chars.len().is_multiple_of(4)
                && text.is(next, ' ')
                && is_alnum(next + 1)
            {
                next += 1;
            }
            if chars.len() >= 4 && !is_alnum(next) {
                break;
            }
            chars.push(text.at(next).map_or(0, |c| c as u8));
            next += 1;
            ends.push(next);
        }
        let lengths: Vec<usize> = match iban_length(&chars[..2]) {
            Some(length) => vec![length],
            None => (15..=34).rev().collect(),
        };
        for length in lengths {
            if length <= chars.len()
                && text.word_ends(ends[length - 1])
                && iban_is_valid(&chars[..length])
            {
                found.push(text.finding(Kind::Iban, index, ends[length - 1]));
                break;
            }
        }
    }
}

/// The IBAN length of a country, from the SWIFT registry; `None` for countries not listed.
fn iban_length(country: &[u8]) -> Option<usize> {
    #[rustfmt::skip]
    const LENGTHS: &[(&[u8; 2], usize)] = &[
        (b"AD", 24), (b"AE", 23), (b"AL", 28), (b"AT", 20), (b"AZ", 28), (b"BA", 20), (b"BE", 16),
        (b"BG", 22), (b"BH", 22), (b"BR", 29), (b"BY", 28), (b"CH", 21), (b"CR", 22), (b"CY", 28),
        (b"CZ", 24), (b"DE", 22), (b"DK", 18), (b"DO", 28), (b"EE", 20), (b"EG", 29), (b"ES", 24),
        (b"FI", 18), (b"FO", 18), (b"FR", 27), (b"GB", 22), (b"GE", 22), (b"GI", 23), (b"GL", 18),
        (b"GR", 27), (b"GT", 28), (b"HR", 21), (b"HU", 28), (b"IE", 22), (b"IL", 23), (b"IQ", 23),
        (b"IS", 26), (b"IT", 27), (b"JO", 30), (b"KW", 30), (b"KZ", 20), (b"LB", 28), (b"LC", 32),
        (b"LI", 21), (b"LT", 20), (b"LU", 20), (b"LV", 21), (b"MC", 27), (b"MD", 24), (b"ME", 22),
        (b"MK", 19), (b"MR", 27), (b"MT", 31), (b"MU", 30), (b"NL", 18), (b"NO", 15), (b"PK", 24),
        (b"PL", 28), (b"PS", 29), (b"PT", 25), (b"QA", 29), (b"RO", 24), (b"RS", 22), (b"SA", 24),
        (b"SC", 31), (b"SE", 24), (b"SI", 19), (b"SK", 24), (b"SM", 27), (b"ST", 25), (b"SV", 28),
        (b"TL", 23), (b"TN", 24), (b"TR", 26), (b"UA", 29), (b"VA", 22), (b"VG", 24), (b"XK", 20),
    ];
    LENGTHS
        .iter()
        .find(|(code, _)| code[..] == *country)
        .map(|&(_, length)| length)
}

/// ISO 13616: move the first four chars to the end, read letters as 10–35, and the number
/// must leave 1 modulo 97.
fn iban_is_valid(iban: &[u8]) -> bool {
    let remainder = iban[4..]
        .iter()
        .chain(&iban[..4])
        .fold(0u32, |remainder, &c| match c {
            b'0'..=b'9' => (remainder * 10 + u32::from(c - b'0')) % 97,
            _ => (remainder * 100 + u32::from(c - b'A') + 10) % 97,
        });
    remainder == 1
}

// ---------------------------------------------------------------------------------------------
// Fixed-layout national numbers: NIT, CUIT/CUIL, CPF, CNPJ

/// Finds numbers laid out as one of `shapes` (`d` is any digit, other chars stand for
/// themselves), bounded on both sides, whose digits pass `is_valid`.
fn find_numbers(
    text: &Text,
    kind: Kind,
    shapes: &[&str],
    is_valid: fn(&[u8]) -> bool,
    found: &mut Vec<Finding>,
) {
    for index in 0..text.len() {
        if !text.is_digit(index) || !text.number_starts(index) {
            continue;
        }
        for shape in shapes {
            if let Some((end, digits)) = match_shape(text, index, shape) {
                if text.number_ends(end) && is_valid(&digits) {
                    found.push(text.finding(kind, index, end));
                    break;
                }
            }
        }
    }
}

fn match_shape(text: &Text, start: usize, shape: &str) -> Option<(usize, Vec<u8>)> {
    let mut digits = Vec::with_capacity(shape.len());
    let mut index = start;
    for wanted in shape.chars() {
        match wanted {
            'd' if text.is_digit(index) => digits.push(text.digit(index)),
            'd' => return None,
            literal if text.is(index, literal) => {}
            _ => return None,
        }
        index += 1;
    }
    Some((index, digits))
}

fn all_same(digits: &[u8]) -> bool {
    digits.iter().all(|&digit| digit == digits[0])
}

/// Colombian NIT, nine digits then the DIAN check digit.
fn nit_is_valid(digits: &[u8]) -> bool {
    let (body, check) = digits.split_at(digits.len() - 1);
    !all_same(body) && nit_check_digit(body) == check[0]
}

/// DIAN's mod-11 check digit, weights applied from the rightmost digit.
fn nit_check_digit(body: &[u8]) -> u8 {
    const WEIGHTS: [u32; 15] = [3, 7, 13, 17, 19, 23, 29, 37, 41, 43, 47, 53, 59, 67, 71];
    let sum: u32 = body
        .iter()
        .rev()
        .zip(WEIGHTS)
        .map(|(&digit, weight)| u32::from(digit) * weight)
        .sum();
    let remainder = sum % 11;
    if remainder > 1 {
        (11 - remainder) as u8
    } else {
        remainder as u8
    }
}

/// Argentine CUIT/CUIL: a known type prefix and the AFIP mod-11 check digit.
fn cuit_is_valid(digits: &[u8]) -> bool {
    const WEIGHTS: [u32; 10] = [5, 4, 3, 2, 7, 6, 5, 4, 3, 2];
    let prefix = digits[0] * 10 + digits[1];
    if ![20, 23, 24, 27, 30, 33, 34].contains(&prefix) {
        return false;
    }
    let sum: u32 = digits[..10]
        .iter()
        .zip(WEIGHTS)
        .map(|(&digit, weight)| u32::from(digit) * weight)
        .sum();
    match 11 - sum % 11 {
        11 => digits[10] == 0,
        10 => false,
        check => u32::from(digits[10]) == check,
    }
}

/// One Brazilian mod-11 check digit over `digits` with `weights`.
fn brazil_check_digit(digits: &[u8], weights: &[u32]) -> u8 {
    let sum: u32 = digits
        .iter()
        .zip(weights)
        .map(|(&digit, &weight)| u32::from(digit) * weight)
        .sum();
    let remainder = sum % 11;
    if remainder < 2 {
        0
    } else {
        (11 - remainder) as u8
    }
}

fn cpf_is_valid(digits: &[u8]) -> bool {
    !all_same(digits)
        && brazil_check_digit(&digits[..9], &[10, 9, 8, 7, 6, 5, 4, 3, 2]) == digits[9]
        && brazil_check_digit(&digits[..10], &[11, 10, 9, 8, 7, 6, 5, 4, 3, 2]) == digits[10]
}

fn cnpj_is_valid(digits: &[u8]) -> bool {
    !all_same(digits)
        && brazil_check_digit(&digits[..12], &[5, 4, 3, 2, 9, 8, 7, 6, 5, 4, 3, 2]) == digits[12]
        && brazil_check_digit(&digits[..13], &[6, 5, 4, 3, 2, 9, 8, 7, 6, 5, 4, 3, 2]) == digits[13]
}

// ---------------------------------------------------------------------------------------------
// Colombian cédula: no check digit, so only a number announced as one.

/// Keywords, folded (lower case, no accents), longest first.
const CEDULA_KEYWORDS: [&str; 5] = ["cedula de ciudadania", "cedula", "c.c.", "c.c", "cc"];
/// Words allowed between the keyword and the number ("No.", "número", "nro").
const CEDULA_FILLERS: [&str; 5] = ["numero", "nro", "num", "no", "n"];
/// At most this many chars between the keyword and the number.
const CEDULA_GAP: usize = 20;

fn find_cedulas(text: &Text, found: &mut Vec<Finding>) {
    for index in 0..text.len() {
        let may_start_keyword =
            text.at(index).is_some_and(|c| fold(c) == 'c') && text.word_starts(index);
        if !may_start_keyword {
            continue;
        }
        let Some(keyword_end) = CEDULA_KEYWORDS
            .iter()
            .find_map(|keyword| match_folded(text, index, keyword))
        else {
            continue;
        };
        if text.at(keyword_end).is_some_and(char::is_alphabetic) {
            continue; // "ccosto", "cedulas"
        }
        let Some(number_start) = skip_cedula_filler(text, keyword_end) else {
            continue;
        };
        if let Some(number_end) = match_cedula_number(text, number_start) {
            found.push(text.finding(Kind::CedulaCo, number_start, number_end));
        }
    }
}

/// The end of `keyword` if the text at `index` reads as it, ignoring case and accents.
fn match_folded(text: &Text, index: usize, keyword: &str) -> Option<usize> {
    let mut at = index;
    for wanted in keyword.chars() {
        if text.at(at).map(fold) != Some(wanted) {
            return None;
        }
        at += 1;
    }
    Some(at)
}

/// Skips spaces, `:`, `.`, `#`, `°` and words like "No." after the keyword; returns where the
/// digits begin, if they begin within `CEDULA_GAP` chars.
fn skip_cedula_filler(text: &Text, from: usize) -> Option<usize> {
    let mut index = from;
    while index <= from + CEDULA_GAP {
        match text.at(index)? {
            c if c.is_ascii_digit() => return Some(index),
            ' ' | '\t' | ':' | '.' | '#' | '°' | 'º' | '-' => index += 1,
            _ => {
                let filler_end = CEDULA_FILLERS
                    .iter()
                    .filter_map(|filler| match_folded(text, index, filler))
                    .find(|&end| !text.at(end).is_some_and(char::is_alphabetic))?;
                index = filler_end;
            }
        }
    }
    None
}

/// 6–10 digits, plain (`1020345678`) or with thousands dots (`1.020.345.678`).
fn match_cedula_number(text: &Text, start: usize) -> Option<usize> {
    let mut end = text.digits_end(start);
    let mut digits = end - start;
    if digits <= 3 {
        while text.is(end, '.')
            && (1..=3).all(|offset| text.is_digit(end + offset))
            && !text.is_digit(end + 4)
        {
            end += 4;
            digits += 3;
        }
    }
    ((6..=10).contains(&digits) && text.number_ends(end)).then_some(end)
}

// ---------------------------------------------------------------------------------------------
// Mexico: RFC and CURP

/// RFC: 3 letters (persona moral) or 4 (persona física), a YYMMDD date, and a 3-char
/// homoclave whose last char is the SAT check digit. `-` may separate the three parts.
fn find_rfcs(text: &Text, found: &mut Vec<Finding>) {
    let is_rfc_letter = |c: char| c.is_ascii_uppercase() || c == 'Ñ' || c == '&';
    'start: for index in 0..text.len() {
        if !text.at(index).map(upper).is_some_and(is_rfc_letter) || !text.word_starts(index) {
            continue;
        }
        let mut key: Vec<char> = Vec::with_capacity(13);
        let mut at = index;
        while key.len() < 5 {
            match text.at(at).map(upper) {
                Some(c) if is_rfc_letter(c) => key.push(c),
                _ => break,
            }
            at += 1;
        }
        let letters = key.len();
        if letters != 3 && letters != 4 {
            continue;
        }
        if text.is(at, '-') {
            at += 1;
        }
        let mut date = [0u8; 6];
        for slot in &mut date {
            if !text.is_digit(at) {
                continue 'start;
            }
            *slot = text.digit(at);
            key.push(text.at(at).unwrap_or('0'));
            at += 1;
        }
        if !is_valid_yymmdd(&date) {
            continue;
        }
        if text.is(at, '-') {
            at += 1;
        }
        for _ in 0..3 {
            match text.at(at).map(upper) {
                Some(c) if c.is_ascii_uppercase() || c.is_ascii_digit() => key.push(c),
                _ => continue 'start,
            }
            at += 1;
        }
        if !text.word_ends(at) {
            continue;
        }
        let (body, check) = key.split_at(key.len() - 1);
        if rfc_check_char(body) == Some(check[0]) {
            found.push(text.finding(Kind::RfcMx, index, at));
        }
    }
}

/// SAT check char over the 11 (moral, padded with a leading space) or 12 chars before it.
fn rfc_check_char(body: &[char]) -> Option<char> {
    const TABLE: &str = "0123456789ABCDEFGHIJKLMN&OPQRSTUVWXYZ Ñ";
    let padded: Vec<char> = if body.len() == 11 {
        std::iter::once(' ').chain(body.iter().copied()).collect()
    } else {
        body.to_vec()
    };
    let mut sum = 0;
    for (position, c) in padded.iter().enumerate() {
        let value = TABLE.chars().position(|entry| entry == *c)?;
        sum += value * (13 - position);
    }
    Some(match sum % 11 {
        0 => '0',
        1 => 'A',
        remainder => char::from(b'0' + (11 - remainder) as u8),
    })
}

/// The state codes a CURP may carry (NE: born abroad).
const CURP_STATES: [&str; 33] = [
    "AS", "BC", "BS", "CC", "CL", "CM", "CS", "CH", "DF", "DG", "GT", "GR", "HG", "JC", "MC", "MN",
    "MS", "NT", "NL", "OC", "PL", "QT", "QR", "SP", "SL", "SR", "TC", "TS", "TL", "VZ", "YN", "ZS",
    "NE",
];

/// CURP: 4 letters, YYMMDD, sex (H/M/X), state, 3 consonants, differentiator, check digit.
fn find_curps(text: &Text, found: &mut Vec<Finding>) {
    let is_consonant = |c: char| c.is_ascii_uppercase() && !"AEIOU".contains(c);
    for index in 0..text.len().saturating_sub(17) {
        if !text.at(index).is_some_and(|c| c.is_ascii_alphabetic()) || !text.word_starts(index) {
            continue;
        }
        let curp: Vec<char> = (index..index + 18)
            .filter_map(|i| text.at(i))
            .map(upper)
            .collect();
        let state: String = curp[11..13].iter().collect();
        let mut date = [0u8; 6];
        for (slot, c) in date.iter_mut().zip(&curp[4..10]) {
            *slot = c.to_digit(10).unwrap_or(0) as u8;
        }
        let well_formed = curp[..4].iter().all(char::is_ascii_uppercase)
            && curp[4..10].iter().all(char::is_ascii_digit)
            && is_valid_yymmdd(&date)
            && matches!(curp[10], 'H' | 'M' | 'X')
            && CURP_STATES.contains(&state.as_str())
            && curp[13..16].iter().all(|&c| is_consonant(c))
            && (curp[16].is_ascii_uppercase() || curp[16].is_ascii_digit())
            && curp[17].is_ascii_digit()
            && text.word_ends(index + 18);
        if well_formed && curp_check_digit(&curp[..17]) == curp[17].to_digit(10) {
            found.push(text.finding(Kind::CurpMx, index, index + 18));
        }
    }
}

/// RENAPO check digit over the first 17 chars.
fn curp_check_digit(body: &[char]) -> Option<u32> {
    const TABLE: &str = "0123456789ABCDEFGHIJKLMNÑOPQRSTUVWXYZ";
    let mut sum = 0;
    for (position, c) in body.iter().enumerate() {
        let value = TABLE.chars().position(|entry| entry == *c)? as u32;
        sum += value * (18 - position as u32);
    }
    Some((10 - sum % 10) % 10)
}

// ---------------------------------------------------------------------------------------------
// Shared word runs

/// The words of `text`, each with its byte range and its normalised form (lower case, no
/// leading or trailing punctuation); words that are only punctuation are left out.
fn words(text: &str) -> impl Iterator<Item = (Range<usize>, String)> + '_ {
    let mut rest = text.char_indices().peekable();
    std::iter::from_fn(move || loop {
        while rest.next_if(|(_, c)| c.is_whitespace()).is_some() {}
        let (start, _) = *rest.peek()?;
        let mut end = start;
        while let Some((offset, c)) = rest.next_if(|(_, c)| !c.is_whitespace()) {
            end = offset + c.len_utf8();
        }
        let word = text[start..end].trim_matches(|c: char| !c.is_alphanumeric());
        if !word.is_empty() {
            return Some((start..end, word.to_lowercase()));
        }
    })
}

/// Where in `payload` a run of `length` word ids starts that also appears in `source`.
fn find_shared_ngram(payload: &[u64], source: &[u64], length: usize) -> Option<usize> {
    if length == 0 || length > payload.len() || length > source.len() {
        return None;
    }
    let mut first_seen: HashMap<u64, usize> = HashMap::new();
    for (start, hash) in RollingHashes::new(source, length) {
        first_seen.entry(hash).or_insert(start);
    }
    RollingHashes::new(payload, length).find_map(|(start, hash)| {
        let seen = *first_seen.get(&hash)?;
        (payload[start..start + length] == source[seen..seen + length]).then_some(start)
    })
}

/// Polynomial hashes, modulo the Mersenne prime 2^61 - 1, of every window of `length` ids.
struct RollingHashes<'a> {
    ids: &'a [u64],
    length: usize,
    next_start: usize,
    hash: u64,
    /// BASE^(length - 1), to take the outgoing id back out.
    top_power: u64,
}

const MODULUS: u64 = (1 << 61) - 1;
const BASE: u64 = 1_000_003;

fn mul_mod(a: u64, b: u64) -> u64 {
    ((u128::from(a) * u128::from(b)) % u128::from(MODULUS)) as u64
}

impl<'a> RollingHashes<'a> {
    fn new(ids: &'a [u64], length: usize) -> Self {
        let hash = ids[..length].iter().fold(0, |hash, &id| {
            (mul_mod(hash, BASE) + (id + 1) % MODULUS) % MODULUS
        });
        let top_power = (1..length).fold(1, |power, _| mul_mod(power, BASE));
        RollingHashes {
            ids,
            length,
            next_start: 0,
            hash,
            top_power,
        }
    }
}

impl Iterator for RollingHashes<'_> {
    type Item = (usize, u64);

    fn next(&mut self) -> Option<(usize, u64)> {
        let start = self.next_start;
        if start + self.length > self.ids.len() {
            return None;
        }
        let current = (start, self.hash);
        if let Some(&incoming) = self.ids.get(start + self.length) {
            let outgoing = mul_mod((self.ids[start] + 1) % MODULUS, self.top_power);
            let without = (self.hash + MODULUS - outgoing) % MODULUS;
            self.hash = (mul_mod(without, BASE) + (incoming + 1) % MODULUS) % MODULUS;
        }
        self.next_start += 1;
        Some(current)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The findings of `text` as (kind, matched text) pairs.
    fn found(text: &str) -> Vec<(Kind, &str)> {
        scan(text, &Kind::ALL)
            .into_iter()
            .map(|f| (f.kind, &text[f.start..f.end]))
            .collect()
    }

    fn found_only(text: &str, kind: Kind) -> Vec<&str> {
        scan(text, &[kind])
            .into_iter()
            .map(|f| &text[f.start..f.end])
            .collect()
    }

    fn has_kind(text: &str, kind: Kind) -> bool {
        scan(text, &Kind::ALL).iter().any(|f| f.kind == kind)
    }

    fn digits(s: &str) -> Vec<u8> {
        s.bytes()
            .filter(u8::is_ascii_digit)
            .map(|b| b - b'0')
            .collect()
    }

    // --- Kind ---------------------------------------------------------------------------

    #[test]
    fn kind_names_round_trip() {
        for kind in Kind::ALL {
            assert_eq!(Kind::from_name(kind.name()), Some(kind));
            assert!(kind.placeholder().starts_with('[') && kind.placeholder().ends_with(']'));
        }
        assert_eq!(Kind::from_name("payment_card"), Some(Kind::PaymentCard));
        assert_eq!(Kind::PaymentCard.placeholder(), "[CARD]");
        assert_eq!(Kind::from_name("passport"), None);
    }

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

    // --- Phone --------------------------------------------------------------------------

    #[test]
    fn finds_latam_phones() {
        for phone in [
            "+57 301 234 5678",
            "+52 55 1234 5678",
            "(601) 234 5678",
            "+54 9 11 2345-6789",
            "+55 11 91234-5678",
            "301-234-5678",
            "3012345678",
        ] {
            let text = format!("Llamar al {phone}, gracias.");
            assert_eq!(found(&text), vec![(Kind::Phone, phone)], "{text}");
        }
    }

    #[test]
    fn splits_phones_listed_with_spaces() {
        assert_eq!(
            found("Tel 301 234 5678 320 987 6543"),
            vec![(Kind::Phone, "301 234 5678"), (Kind::Phone, "320 987 6543")]
        );
        assert_eq!(
            found("llamar al 3012345678 2 veces"),
            vec![(Kind::Phone, "3012345678")]
        );
        assert_eq!(
            found("Tel: 3012345678 3209876543"),
            vec![(Kind::Phone, "3012345678"), (Kind::Phone, "3209876543")]
        );
    }

    #[test]
    fn leaves_dates_amounts_and_short_numbers() {
        for text in [
            "Fecha: 2026-01-20",
            "Fecha: 2026-01-20 10:30",
            "Valor: $8.500.000",
            "Valor: $1.250.000.000",
            "Servidor 192.168.100.200",
            "pi = 3.1415926535",
            "Radicado 2345-6789",
            "Pedido 12345678",
            "Factura FE-2026-000123",
            "Ref 2345 6789 0123 4567 8901",
        ] {
            assert!(found(text).is_empty(), "{text}: {:?}", found(text));
        }
    }

    // --- Payment card -------------------------------------------------------------------

    #[test]
    fn finds_cards() {
        for card in [
            "4111 1111 1111 1111",
            "4111-1111-1111-1111",
            "5555555555554444",
            "2223 0031 2200 3222",
            "3782 822463 10005",
            "6011 1111 1111 1117",
            "3056 9309 0259 04",
            "4222222222222",
        ] {
            let text = format!("Tarjeta {card} vence 12/28");
            assert_eq!(found(&text), vec![(Kind::PaymentCard, card)], "{text}");
        }
    }

    #[test]
    fn leaves_cards_with_bad_luhn_or_unknown_prefix() {
        assert!(found("Tarjeta 4111 1111 1111 1112").is_empty());
        assert!(found("Tarjeta 3782 822463 10006").is_empty());
        assert!(!has_kind("Tarjeta 5555555555554445", Kind::PaymentCard));
        // Luhn-valid, but 9 is no card network's prefix.
        assert!(luhn_is_valid(&digits("9000000000000001")));
        assert!(found_only("Ref 9000000000000001", Kind::PaymentCard).is_empty());
        assert!(
            found_only("41111111111111111111", Kind::PaymentCard).is_empty(),
            "slice of a longer number"
        );
    }

    // --- IBAN ---------------------------------------------------------------------------

    #[test]
    fn finds_ibans() {
        for iban in [
            "DE89 3704 0044 0532 0130 00",
            "GB82 WEST 1234 5698 7654 32",
            "GB82WEST12345698765432",
            "ES91 2100 0418 4502 0005 1332",
            "FR14 2004 1010 0505 0001 3M02 606",
            "NL91 ABNA 0417 1643 00",
            "CH93 0076 2011 6238 5295 7",
            "IT60 X054 2811 1010 0000 0123 456",
            "PT50 0002 0123 1234 5678 9015 4",
            "BR18 0036 0305 0000 1000 9795 493C 1",
        ] {
            let text = format!("IBAN: {iban} (EUR)");
            assert_eq!(found(&text), vec![(Kind::Iban, iban)], "{text}");
        }
        // Grouped IBAN followed by more text on the same line.
        assert_eq!(
            found_only("ES91 2100 0418 4502 0005 1332 EUR", Kind::Iban),
            vec!["ES91 2100 0418 4502 0005 1332"]
        );
    }

    #[test]
    fn leaves_ibans_with_bad_checks_or_lengths() {
        assert!(found_only("DE88 3704 0044 0532 0130 00", Kind::Iban).is_empty());
        assert!(found_only("GB82 WEST 1234 5698 7654 33", Kind::Iban).is_empty());
        // Valid mod-97 for a 22-char German IBAN, but cut short.
        assert!(found_only("DE89 3704 0044 0532 0130", Kind::Iban).is_empty());
        assert!(found_only("XDE89370400440532013000", Kind::Iban).is_empty());
    }

    // --- Colombian NIT ------------------------------------------------------------------

    #[test]
    fn nit_check_digit_matches_known_nits() {
        assert_eq!(nit_check_digit(&digits("800197268")), 4); // DIAN
        assert_eq!(nit_check_digit(&digits("899999068")), 1); // Ecopetrol
        assert_eq!(nit_check_digit(&digits("900123456")), 8);
    }

    #[test]
    fn finds_nits() {
        assert_eq!(
            found("NIT 800.197.268-4 (DIAN)"),
            vec![(Kind::NitCo, "800.197.268-4")]
        );
        assert_eq!(
            found("NIT: 899999068-1."),
            vec![(Kind::NitCo, "899999068-1")]
        );
        assert_eq!(
            found("Proveedor 900.123.456-8"),
            vec![(Kind::NitCo, "900.123.456-8")]
        );
    }

    #[test]
    fn leaves_nits_with_a_wrong_check_digit() {
        assert!(found("NIT 800.197.268-5").is_empty());
        assert!(found("Proveedor 900.123.456-7").is_empty());
        assert!(found("NIT 899999068-2").is_empty());
    }

    // --- Colombian cédula ---------------------------------------------------------------

    #[test]
    fn finds_cedulas_announced_as_such() {
        assert_eq!(
            found("identificado con C.C. No. 1.020.345.678 de Bogotá"),
            vec![(Kind::CedulaCo, "1.020.345.678")]
        );
        assert_eq!(found("CC 79123456"), vec![(Kind::CedulaCo, "79123456")]);
        assert_eq!(
            found("con cédula de ciudadanía número 52.345.678 expedida"),
            vec![(Kind::CedulaCo, "52.345.678")]
        );
        assert_eq!(
            found("CÉDULA: 1020345678"),
            vec![(Kind::CedulaCo, "1020345678")]
        );
        assert_eq!(
            found("c.c 43.210.987"),
            vec![(Kind::CedulaCo, "43.210.987")]
        );
    }

    #[test]
    fn leaves_numbers_without_cedula_context() {
        assert!(found("Factura 79123456").is_empty());
        assert!(found_only("cuenta 52.345.678", Kind::CedulaCo).is_empty());
        assert!(
            found_only("CC 12345", Kind::CedulaCo).is_empty(),
            "too short"
        );
        assert!(
            found_only("CC 123456789012", Kind::CedulaCo).is_empty(),
            "too long"
        );
        assert!(
            found_only("ACC 79123456", Kind::CedulaCo).is_empty(),
            "inside a word"
        );
    }

    // --- Mexican RFC --------------------------------------------------------------------

    #[test]
    fn rfc_check_char_matches_published_rfcs() {
        for rfc in [
            "GODE561231GR8",
            "WAL9709244W4",
            "CFE370814QI0",
            "SAT970701NN3",
            "TME840315KT6",
            "IMS421231I45",
        ] {
            let chars: Vec<char> = rfc.chars().collect();
            assert_eq!(
                rfc_check_char(&chars[..chars.len() - 1]),
                chars.last().copied(),
                "{rfc}"
            );
        }
    }

    #[test]
    fn finds_rfcs() {
        assert_eq!(
            found("RFC: GODE561231GR8."),
            vec![(Kind::RfcMx, "GODE561231GR8")]
        );
        assert_eq!(
            found("Emisor WAL9709244W4 (moral)"),
            vec![(Kind::RfcMx, "WAL9709244W4")]
        );
        assert_eq!(
            found("RFC CFE-370814-QI0"),
            vec![(Kind::RfcMx, "CFE-370814-QI0")]
        );
        assert_eq!(
            found("rfc gode561231gr8"),
            vec![(Kind::RfcMx, "gode561231gr8")]
        );
    }

    #[test]
    fn leaves_rfcs_with_a_wrong_check_char_or_date() {
        assert!(found("RFC: GODE561231GR9").is_empty());
        assert!(found("Emisor WAL9709244W5").is_empty());
        assert!(found("RFC GODE561331GR8").is_empty(), "month 13");
        assert!(found("XGODE561231GR8").is_empty(), "inside a longer word");
    }

    // --- Mexican CURP -------------------------------------------------------------------

    #[test]
    fn curp_check_digit_matches_published_curps() {
        for curp in [
            "HEGG560427MVZRRL04",
            "LOOA531113HTCPBN07",
            "MAHJ280603MSPRRV09",
        ] {
            let chars: Vec<char> = curp.chars().collect();
            assert_eq!(
                curp_check_digit(&chars[..17]),
                chars[17].to_digit(10),
                "{curp}"
            );
        }
    }

    #[test]
    fn finds_curps() {
        assert_eq!(
            found("CURP: HEGG560427MVZRRL04"),
            vec![(Kind::CurpMx, "HEGG560427MVZRRL04")]
        );
        assert_eq!(
            found("curp: LOOA531113HTCPBN07."),
            vec![(Kind::CurpMx, "LOOA531113HTCPBN07")]
        );
        assert_eq!(
            found("curp mahj280603msprrv09"),
            vec![(Kind::CurpMx, "mahj280603msprrv09")]
        );
    }

    #[test]
    fn leaves_curps_with_a_wrong_check_digit_or_state() {
        assert!(found("CURP: HEGG560427MVZRRL05").is_empty());
        assert!(found("CURP: BADD110313HCMLNS09").is_empty()); // check digit should be 6
        assert!(
            found("CURP: HEGG560427MXXRRL04").is_empty(),
            "XX is not a state"
        );
    }

    // --- Argentine CUIT / CUIL ----------------------------------------------------------

    #[test]
    fn finds_cuits() {
        assert_eq!(
            found("CUIT 33-69345023-9 (AFIP)"),
            vec![(Kind::CuitAr, "33-69345023-9")]
        );
        assert_eq!(
            found("CUIT: 30-50001091-2"),
            vec![(Kind::CuitAr, "30-50001091-2")]
        );
        assert_eq!(
            found("CUIL 20-12345678-6"),
            vec![(Kind::CuitAr, "20-12345678-6")]
        );
        assert_eq!(
            found("CUIL 20123456786"),
            vec![(Kind::CuitAr, "20123456786")]
        );
    }

    #[test]
    fn leaves_cuits_with_a_wrong_check_digit_or_prefix() {
        assert!(found("CUIT 33-69345023-8").is_empty());
        assert!(found("CUIL 20-12345678-7").is_empty());
        assert!(
            found_only("21-12345678-6", Kind::CuitAr).is_empty(),
            "21 is no CUIT type"
        );
        assert!(!has_kind("CUIL 20123456787", Kind::CuitAr));
    }

    // --- Brazilian CPF and CNPJ ---------------------------------------------------------

    #[test]
    fn finds_cpfs() {
        assert_eq!(
            found("CPF 529.982.247-25"),
            vec![(Kind::CpfBr, "529.982.247-25")]
        );
        assert_eq!(
            found("CPF: 52998224725;"),
            vec![(Kind::CpfBr, "52998224725")]
        );
        assert_eq!(
            found("CPF 529982247-25"),
            vec![(Kind::CpfBr, "529982247-25")]
        );
        // Check digits computed by our own helper from a fresh base.
        let base = digits("123456789");
        let first = brazil_check_digit(&base, &[10, 9, 8, 7, 6, 5, 4, 3, 2]);
        let with_first: Vec<u8> = base.iter().copied().chain([first]).collect();
        let second = brazil_check_digit(&with_first, &[11, 10, 9, 8, 7, 6, 5, 4, 3, 2]);
        assert_eq!((first, second), (0, 9));
        assert_eq!(
            found("CPF 123.456.789-09"),
            vec![(Kind::CpfBr, "123.456.789-09")]
        );
    }

    #[test]
    fn leaves_cpfs_with_wrong_check_digits() {
        assert!(found("CPF 529.982.247-26").is_empty());
        assert!(found("CPF 529.982.247-35").is_empty());
        assert!(
            found("CPF 111.111.111-11").is_empty(),
            "repeated digits pass the check but are not issued"
        );
        assert!(!has_kind("CPF 52998224726", Kind::CpfBr));
        assert!(
            found_only("152998224725", Kind::CpfBr).is_empty(),
            "slice of a longer number"
        );
        assert!(
            found_only("1.529.982.247-25", Kind::CpfBr).is_empty(),
            "slice of a longer number"
        );
    }

    #[test]
    fn finds_cnpjs() {
        assert_eq!(
            found("CNPJ 11.222.333/0001-81"),
            vec![(Kind::CnpjBr, "11.222.333/0001-81")]
        );
        assert_eq!(
            found("CNPJ: 11222333000181"),
            vec![(Kind::CnpjBr, "11222333000181")]
        );
        assert!(cnpj_is_valid(&digits("33.000.167/0001-01"))); // Petrobras
        assert_eq!(
            found("Petrobras 33.000.167/0001-01"),
            vec![(Kind::CnpjBr, "33.000.167/0001-01")]
        );
    }

    #[test]
    fn leaves_cnpjs_with_wrong_check_digits() {
        assert!(found("CNPJ 11.222.333/0001-82").is_empty());
        assert!(found("CNPJ 11.222.333/0001-91").is_empty());
        assert!(found("CNPJ 00.000.000/0000-00").is_empty());
        assert!(!has_kind("CNPJ 11222333000182", Kind::CnpjBr));
    }

    #[test]
    fn plain_eleven_digits_valid_as_both_cuit_and_cpf_report_cuit() {
        let both = digits("20000013510");
        assert!(cuit_is_valid(&both) && cpf_is_valid(&both));
        assert_eq!(found("id 20000013510"), vec![(Kind::CuitAr, "20000013510")]);
        assert_eq!(
            found_only("id 20000013510", Kind::CpfBr),
            vec!["20000013510"]
        );
    }

    // --- Overlaps -----------------------------------------------------------------------

    #[test]
    fn specific_identifiers_beat_phones() {
        // A 13-digit Visa and a 10-digit cédula also read as phone numbers.
        assert_eq!(
            found("4222222222222"),
            vec![(Kind::PaymentCard, "4222222222222")]
        );
        assert_eq!(found("CC 1020345678"), vec![(Kind::CedulaCo, "1020345678")]);
        assert_eq!(
            found("CUIL 20123456786"),
            vec![(Kind::CuitAr, "20123456786")]
        );
        let cnpj = Finding {
            kind: Kind::CnpjBr,
            start: 0,
            end: 18,
        };
        let phone = Finding {
            kind: Kind::Phone,
            start: 3,
            end: 20,
        };
        assert_eq!(keep_non_overlapping(vec![phone, cnpj.clone()]), vec![cnpj]);
    }

    #[test]
    fn findings_are_sorted_and_cover_char_boundaries() {
        let text =
            "Señor Núñez, CPF 529.982.247-25, correo ñ.nunez@correo.com.br, tel +55 11 91234-5678";
        let findings = scan(text, &Kind::ALL);
        let kinds: Vec<Kind> = findings.iter().map(|f| f.kind).collect();
        assert_eq!(kinds, vec![Kind::CpfBr, Kind::Email, Kind::Phone]);
        assert!(findings.windows(2).all(|pair| pair[0].end <= pair[1].start));
        for f in &findings {
            assert!(text.is_char_boundary(f.start) && text.is_char_boundary(f.end));
        }
        assert_eq!(
            &text[findings[1].start..findings[1].end],
            "ñ.nunez@correo.com.br"
        );
    }

    #[test]
    fn scan_only_looks_for_the_kinds_asked() {
        let text = "CPF 529.982.247-25 y ana@empresa.co";
        assert_eq!(found_only(text, Kind::Email), vec!["ana@empresa.co"]);
        assert!(scan(text, &[]).is_empty());
    }

    #[test]
    fn spanish_contract_paragraph_has_no_findings() {
        let contract =
            "CLÁUSULA TERCERA. VALOR Y FORMA DE PAGO. El valor total del presente contrato \
            asciende a la suma de $8.500.000 (ocho millones quinientos mil pesos m/cte), que se \
            pagará en dos cuotas: la primera por $4.250.000 el 2026-01-20 y la segunda por \
            $ 4.250.000 el 2026-03-15, previa presentación de la factura y del informe de \
            actividades. El plazo de ejecución será de 12 meses contados a partir del acta de \
            inicio (20/01/2026). Las partes acuerdan una cláusula penal del 10% del valor del \
            contrato, es decir $850.000, conforme al numeral 3.2 y al artículo 1.592 del Código \
            Civil. Con copia (CC) a la interventoría. Valor anual estimado: $102.000.000,50.";
        assert_eq!(found(contract), vec![]);
    }

    // --- redact -------------------------------------------------------------------------

    #[test]
    fn redact_replaces_each_finding_with_its_placeholder() {
        let text =
            "Contacto: ana.perez@empresa.com.co, tel. +57 301 234 5678, C.C. 1.020.345.678; \
                    NIT 800.197.268-4; tarjeta 4111 1111 1111 1111.";
        let redacted = redact(text, &scan(text, &Kind::ALL));
        assert_eq!(
            redacted,
            "Contacto: [EMAIL], tel. [PHONE], C.C. [CEDULA]; NIT [NIT]; tarjeta [CARD]."
        );
    }

    #[test]
    fn redact_ignores_overlapping_or_broken_findings() {
        let text = "ñandú 123";
        let findings = [
            Finding {
                kind: Kind::Phone,
                start: 8,
                end: 11,
            },
            Finding {
                kind: Kind::Email,
                start: 9,
                end: 10,
            },
            Finding {
                kind: Kind::Email,
                start: 1,
                end: 2,
            }, // inside 'ñ'
        ];
        assert_eq!(redact(text, &findings), "ñandú [PHONE]");
        assert_eq!(redact(text, &[]), text);
    }

    // --- longest_shared_run -------------------------------------------------------------

    const SOURCE: &str = "El Contratista se obliga a prestar los servicios de soporte técnico \
        durante la vigencia del contrato, incluyendo la atención de incidentes críticos en un \
        plazo máximo de cuatro horas hábiles, la actualización mensual del inventario de equipos \
        y la entrega de informes trimestrales al supervisor designado por la Entidad.";

    #[test]
    fn longest_shared_run_finds_a_copied_passage_despite_case_and_punctuation() {
        let copied = "la Atención de incidentes críticos, en un plazo máximo de cuatro horas \
                      hábiles; la actualización";
        let payload = format!("Resumen: el proveedor dijo \"{copied}\" y nada más.");
        let (length, range) = longest_shared_run(&payload, SOURCE);
        assert_eq!(length, 15);
        assert_eq!(&payload[range], format!("\"{copied}\""));
    }

    #[test]
    fn longest_shared_run_of_field_values_is_small() {
        let payload = r#"{"contratista": "Soporte Andino SAS", "plazo_horas": 4, "informes": "trimestrales", "supervisor": "designado", "entidad": "Entidad"}"#;
        let (length, _) = longest_shared_run(payload, SOURCE);
        assert!(length <= 2, "got {length}");
        assert_eq!(longest_shared_run("nada que ver", SOURCE), (0, 0..0));
        assert_eq!(longest_shared_run("", SOURCE), (0, 0..0));
        assert_eq!(longest_shared_run("algo", ""), (0, 0..0));
    }

    #[test]
    fn longest_shared_run_handles_a_large_source() {
        let source: String = (0..40_000)
            .map(|i| format!("palabra{} ", i % 9_973))
            .collect();
        let payload: String = (5_000..5_030)
            .map(|i| format!("PALABRA{}, ", i % 9_973))
            .collect();
        let (length, range) = longest_shared_run(&payload, &source);
        assert_eq!(length, 30);
        assert_eq!(range, 0..payload.trim_end().len());
    }
}
