//! Verbatim-overlap measure: the longest run of words a payload shares with its source
//! document. Kept apart from the personal-data detectors it used to live with; it is being
//! replaced elsewhere.

use std::collections::HashMap;
use std::ops::Range;

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
