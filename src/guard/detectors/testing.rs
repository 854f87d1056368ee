//! Helpers for the detectors' unit tests: what `scan` finds, as readable pairs.

use super::{scan, Kind};

/// The findings of `text` as (kind, matched text) pairs.
pub(super) fn found(text: &str) -> Vec<(Kind, &str)> {
    scan(text, &Kind::ALL)
        .into_iter()
        .map(|f| (f.kind, &text[f.start..f.end]))
        .collect()
}

pub(super) fn found_only(text: &str, kind: Kind) -> Vec<&str> {
    scan(text, &[kind])
        .into_iter()
        .map(|f| &text[f.start..f.end])
        .collect()
}

pub(super) fn has_kind(text: &str, kind: Kind) -> bool {
    scan(text, &Kind::ALL).iter().any(|f| f.kind == kind)
}

pub(super) fn digits(s: &str) -> Vec<u8> {
    s.bytes()
        .filter(u8::is_ascii_digit)
        .map(|b| b - b'0')
        .collect()
}
