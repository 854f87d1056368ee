//! Verbatim overlap: does what is about to leave repeat the document it came from?
//!
//! Text on both sides is folded the same way before words are compared — Unicode NFKC, case
//! folding, confusable (homoglyph) skeletons from UTS #39, accents, zero-width characters and
//! soft hyphens dropped, and every non-alphanumeric character (`_`, `-`, `.`, whitespace runs)
//! a word break — so light disguise does not hide a copied passage.
//!
//! A document's [`SourceIndex`] (its folded words and a table of every `SHINGLE`-word window)
//! is built once, at its first cloud call; each payload is then checked in time proportional
//! to the payload, not to the document. A [`Window`] remembers which stretches of the document
//! earlier calls already sent, so a passage split over several calls — or over several
//! fields of one call — is caught when the pieces join up.

use std::ops::Range;
use std::sync::LazyLock;

use unicode_normalization::char::is_combining_mark;

/// A word's id: 32 bits of its hash. Two different words sharing one can only make a shared
/// run look longer than it is, never hide one.
pub type WordId = u32;

/// Word windows the index is keyed by. A shared run shorter than this is not tracked: short
/// runs are names, dates and set phrases that extracted fields legitimately repeat.
pub const SHINGLE: usize = 4;
/// Positions looked at per window: bounds the work on boilerplate repeated many times.
const MAX_CANDIDATES: usize = 64;

/// Folds `text` into word ids, appending them to `out`.
///
/// Two passes over the text, no allocation once a thread has read one document: the text is
/// folded into bytes (ASCII sixteen characters at a time; anything else
/// decomposed to its compatibility form — NFKD: full-width `ａ` is `a`, `é` is `e` plus an
/// accent — and what is left that is not ASCII through the case and confusable folding), then
/// each word of those bytes is hashed eight bytes at a time. Marks are dropped, which makes
/// per-character decomposition equivalent to normalising the whole string first.
///
/// Cost: linear in `text`, about 1 ns a byte on a Spanish contract, 0.8 to 1.3 on a shared
/// machine (`BENCH_ONLY=index cargo bench --profile dev --bench long`).
pub fn word_ids(text: &str, out: &mut Vec<WordId>) {
    with_folded(|folded| {
        fold_text(text, folded);
        hash_words(folded, out);
    });
}

/// [`word_ids`] of several texts read one after the other, each ending a word.
fn word_ids_of_parts(parts: &[&str], out: &mut Vec<WordId>) {
    with_folded(|folded| {
        for part in parts {
            fold_text(part, folded);
            folded.push(BREAK);
        }
        hash_words(folded, out);
    });
}

/// [`word_ids`] of any run of characters (`text.chars().rev()` reads it backwards).
pub fn fold_chars(chars: impl Iterator<Item = char>, out: &mut Vec<WordId>) {
    with_folded(|folded| {
        chars.for_each(|c| fold_any(c, folded));
        hash_words(folded, out);
    });
}

thread_local! {
    /// The folded bytes of the text being read, kept for the thread's next one.
    static FOLDED: std::cell::Cell<Vec<u8>> = const { std::cell::Cell::new(Vec::new()) };
}

/// Runs `f` with this thread's folding buffer, empty.
fn with_folded<T>(f: impl FnOnce(&mut Vec<u8>) -> T) -> T {
    let mut folded = FOLDED.try_with(|b| b.take()).unwrap_or_default();
    folded.clear();
    let result = f(&mut folded);
    if folded.capacity() <= SPARE_MAX_BYTES {
        let _ = FOLDED.try_with(|b| b.set(folded));
    }
    result
}

/// The folded bytes of `text`, appended to `folded`: each word's bytes, [`BREAK`] between
/// words (several in a row where the text has several breaks).
///
/// Sixteen bytes at a time: the ASCII characters of a block are folded together
/// ([`fold_ascii16`]); a character that is not ASCII is folded on its own and the next block
/// starts right after it, so an accent costs one character's work, not sixteen.
fn fold_text(text: &str, folded: &mut Vec<u8>) {
    let bytes = text.as_bytes();
    folded.reserve(bytes.len() + 16);
    let mut i = 0;
    while let Some(chunk) = bytes.get(i..i + 16) {
        let block = fold_ascii16(chunk.try_into().expect("sixteen bytes"));
        // How many characters of the block are ASCII before the first that is not.
        let ascii = (block.high | 1 << 16).trailing_zeros() as usize;
        if ascii > 0 {
            // An `n` after an `r` (in the block, or the last byte written) is spelt `m`.
            let n = block.n & ((1 << ascii) - 1);
            if n != 0 && n & (block.r << 1 | u32::from(folded.last() == Some(&b'r'))) != 0 {
                for &b in &chunk[..ascii] {
                    fold_ascii_byte(b, folded);
                }
            } else {
                let len = folded.len();
                folded.extend_from_slice(&block.folded);
                folded.truncate(len + ascii);
            }
            i += ascii;
        }
        if ascii < 16 {
            i += fold_one(text, i, folded);
        }
    }
    while i < bytes.len() {
        i += fold_one(text, i, folded);
    }
}

/// Sixteen bytes through [`fold_ascii16`].
struct Block16 {
    /// [`ASCII_ONE`] of each byte (bytes that are not ASCII come out as anything).
    folded: [u8; 16],
    /// A bit per byte: not ASCII.
    high: u32,
    /// A bit per folded byte: `n`; `r`.
    n: u32,
    r: u32,
}

/// Sixteen bytes folded at once: letters lower-cased, digits kept but `0` read as `o` and `1`
/// as `l` (as their skeletons are), everything else a [`BREAK`] — [`ASCII_ONE`] without a
/// table.
#[cfg(target_arch = "x86_64")]
#[inline]
fn fold_ascii16(chunk: [u8; 16]) -> Block16 {
    use std::arch::x86_64::*;
    let x = register(chunk);
    // SAFETY: SSE2 is part of every x86_64 target; these touch registers only.
    unsafe {
        let splat = |b: u8| _mm_set1_epi8(b as i8);
        let within = |v, from: u8, to: u8| {
            _mm_and_si128(
                _mm_cmpgt_epi8(v, splat(from - 1)),
                _mm_cmplt_epi8(v, splat(to + 1)),
            )
        };
        let lower = _mm_or_si128(x, splat(0x20));
        let mut out = _mm_or_si128(
            _mm_and_si128(lower, within(lower, b'a', b'z')),
            _mm_and_si128(x, within(x, b'0', b'9')),
        );
        out = _mm_xor_si128(
            out,
            _mm_and_si128(_mm_cmpeq_epi8(x, splat(b'0')), splat(b'0' ^ b'o')),
        );
        out = _mm_xor_si128(
            out,
            _mm_and_si128(_mm_cmpeq_epi8(x, splat(b'1')), splat(b'1' ^ b'l')),
        );
        let low = _mm_cvtsi128_si64(out) as u64;
        let high = _mm_cvtsi128_si64(_mm_unpackhi_epi64(out, out)) as u64;
        Block16 {
            folded: ((u128::from(high) << 64) | u128::from(low)).to_le_bytes(),
            high: _mm_movemask_epi8(x) as u32,
            n: _mm_movemask_epi8(_mm_cmpeq_epi8(out, splat(b'n'))) as u32,
            r: _mm_movemask_epi8(_mm_cmpeq_epi8(out, splat(b'r'))) as u32,
        }
    }
}

#[cfg(not(target_arch = "x86_64"))]
#[inline]
fn fold_ascii16(chunk: [u8; 16]) -> Block16 {
    let folded = chunk.map(|b| ASCII_ONE[usize::from(b & 0x7f)]);
    let mask = |bytes: [u8; 16], f: fn(u8) -> bool| {
        (0..16).fold(0u32, |m, i| m | u32::from(f(bytes[i])) << i)
    };
    Block16 {
        folded,
        high: mask(chunk, |b| !b.is_ascii()),
        n: mask(folded, |b| b == b'n'),
        r: mask(folded, |b| b == b'r'),
    }
}

/// Appends one folded byte, spelling `rn` as `m`.
///
/// The UTS #39 skeleton of `m` is `rn`. Folding writes the pair the other way round, which is
/// the same comparison (no skeleton contains an `m`, so the rewrite can be undone) and keeps
/// every ASCII letter one byte: a block of plain text never has to grow.
#[inline(always)]
fn put(folded: &mut Vec<u8>, b: u8) {
    if b == b'n' {
        if let Some(last @ b'r') = folded.last_mut() {
            *last = b'm';
            return;
        }
    }
    folded.push(b);
}

fn put_all(folded: &mut Vec<u8>, bytes: &[u8]) {
    for &b in bytes {
        put(folded, b);
    }
}

/// Folds an ASCII character: its byte from the table ([`BREAK`] for a word break).
#[inline(always)]
fn fold_ascii_byte(b: u8, folded: &mut Vec<u8>) {
    put(folded, ASCII_ONE[usize::from(b)]);
}

/// Folds the character at byte `i` of `text`; returns its length.
#[inline]
fn fold_one(text: &str, i: usize, folded: &mut Vec<u8>) -> usize {
    let b = text.as_bytes()[i];
    if b.is_ascii() {
        fold_ascii_byte(b, folded);
        return 1;
    }
    // Two bytes (U+0080 to U+07FF): the accented letters of the region's languages, from
    // the table without decoding a char.
    if b & 0xE0 == 0xC0 {
        let cp = (u32::from(b & 0x1F) << 6) | u32::from(text.as_bytes()[i + 1] & 0x3F);
        if let Some(&one) = LATIN_ONE.get((cp - 0x80) as usize) {
            match one {
                SEVERAL => put_all(folded, &LATIN[(cp - 0x80) as usize]),
                one => put(folded, one),
            }
            return 2;
        }
    }
    let c = text[i..].chars().next().expect("a char starts here");
    fold_any(c, folded);
    c.len_utf8()
}

/// The id of each word of `folded` (words are the runs between [`BREAK`] bytes), appended
/// to `out`. A word's bytes are read eight at a time as a little-endian block, zero-padded,
/// and each block mixed in once: a per-byte multiply chain would be the slowest part of
/// reading a long document.
fn hash_words(folded: &mut Vec<u8>, out: &mut Vec<WordId>) {
    let len = folded.len();
    // A break at the end, and padding so the last block and a word's last eight bytes can
    // be read whole.
    folded.extend_from_slice(&[BREAK; 17]);
    let bytes = folded.as_slice();
    // Pushed to a local: through `out` the length would go back to memory every word.
    let mut ids = std::mem::take(out);
    let mut start = 0;
    let mut at = 0;
    while at <= len {
        let mut breaks = breaks16(bytes[at..at + 16].try_into().expect("sixteen"));
        while breaks != 0 {
            let end = at + breaks.trailing_zeros() as usize;
            breaks &= breaks - 1;
            if end > start {
                ids.push(word_hash(bytes, start, end));
            }
            start = end + 1;
        }
        at += 16;
    }
    *out = ids;
    folded.truncate(len);
}

/// A bit per byte of `chunk` that is a [`BREAK`].
#[cfg(target_arch = "x86_64")]
#[inline]
fn breaks16(chunk: [u8; 16]) -> u32 {
    use std::arch::x86_64::*;
    let x = register(chunk);
    // SAFETY: SSE2 is part of every x86_64 target; these touch registers only.
    unsafe { _mm_movemask_epi8(_mm_cmpeq_epi8(x, _mm_setzero_si128())) as u32 }
}

/// Sixteen bytes in an SSE2 register.
#[cfg(target_arch = "x86_64")]
#[inline]
fn register(chunk: [u8; 16]) -> std::arch::x86_64::__m128i {
    let block = u128::from_le_bytes(chunk);
    // SAFETY: SSE2 is part of every x86_64 target; this touches registers only.
    unsafe { std::arch::x86_64::_mm_set_epi64x((block >> 64) as i64, block as i64) }
}

#[cfg(not(target_arch = "x86_64"))]
#[inline]
fn breaks16(chunk: [u8; 16]) -> u32 {
    (0..16).fold(0, |m, i| m | u32::from(chunk[i] == BREAK) << i)
}

const SEED: u64 = 0xcbf2_9ce4_8422_2325;
const K: u64 = 0x9e37_79b9_7f4a_7c15;

/// The id of the word `bytes[start..end]` (there are at least eight bytes after `end`).
///
/// A word of up to eight bytes (most of them) is its zero-padded block mixed once by a
/// multiply, whose high half is the id; a longer one is hashed a block at a time with its
/// length.
#[inline]
fn word_hash(bytes: &[u8], start: usize, end: usize) -> WordId {
    let block = |at: usize| u64::from_le_bytes(bytes[at..at + 8].try_into().expect("eight"));
    let len = end - start;
    if len <= 8 {
        let h = (block(start) & (u64::MAX >> (64 - 8 * len)) ^ SEED).wrapping_mul(K);
        return (h >> 32) as WordId;
    }
    let mut hash = SEED.rotate_left(32);
    let mut at = start;
    while end - at > 8 {
        hash = (hash ^ block(at)).wrapping_mul(K).rotate_left(27);
        at += 8;
    }
    let last = block(at) & (u64::MAX >> (64 - 8 * (end - at)));
    hash = (hash ^ last).wrapping_mul(K).rotate_left(27);
    let h = (hash ^ len as u64).wrapping_mul(K);
    (h >> 32) as WordId
}

/// Where [`LATIN`] ends: Latin-1, Latin Extended-A and B (the accents of Spanish, Portuguese
/// and the rest of the region's languages).
const LATIN_END: u32 = 0x250;

/// What folding does with each character from U+0080 to [`LATIN_END`], worked out once:
/// a contract in Spanish has an accented letter every few words, and decomposing each one
/// through the Unicode tables was a tenth of the guard's time on a long document.
static LATIN: LazyLock<Vec<Box<[u8]>>> = LazyLock::new(|| {
    (0x80..LATIN_END)
        .map(|cp| {
            let mut folded = Vec::new();
            if let Some(c) = char::from_u32(cp) {
                fold_other(c, &mut folded);
            }
            folded.into_boxed_slice()
        })
        .collect()
});

/// [`LATIN`] as one byte per character where the folded form is one byte ([`BREAK`]
/// included), [`SEVERAL`] where it is not.
static LATIN_ONE: LazyLock<Vec<u8>> = LazyLock::new(|| {
    LATIN
        .iter()
        .map(|folded| match **folded {
            [one] if one != SEVERAL => one,
            _ => SEVERAL,
        })
        .collect()
});

/// Folds any character: ASCII and [`LATIN`] from their tables, anything else through
/// [`fold_other`].
fn fold_any(c: char, folded: &mut Vec<u8>) {
    match c as u32 {
        cp if cp < 0x80 => fold_ascii_byte(cp as u8, folded),
        cp if cp < LATIN_END => put_all(folded, &LATIN[(cp - 0x80) as usize]),
        _ => fold_other(c, folded),
    }
}

/// A character outside ASCII: its compatibility decomposition, folded.
fn fold_other(c: char, folded: &mut Vec<u8>) {
    unicode_normalization::char::decompose_compatible(c, |d| {
        if d.is_ascii() {
            fold_ascii_byte(d as u8, folded);
        } else if is_ignorable(d) || is_combining_mark(d) {
            // Not a break: `fac\u{200B}tura` is one word.
        } else if d.is_alphanumeric() {
            fold_char(d, folded);
        } else {
            folded.push(BREAK);
        }
    });
}

const BREAK: u8 = 0;
const SEVERAL: u8 = 0xff;

/// The folded byte of each ASCII character ([`BREAK`] for word breaks): always one byte,
/// the hot path of reading a document.
static ASCII_ONE: LazyLock<[u8; 128]> = LazyLock::new(|| {
    let mut table = [BREAK; 128];
    for (b, slot) in table.iter_mut().enumerate() {
        let c = char::from(b as u8);
        if c.is_ascii_alphanumeric() {
            let mut folded = Vec::new();
            fold_char(c, &mut folded);
            *slot = match folded[..] {
                [one] if one.is_ascii_alphanumeric() => one,
                _ => unreachable!("{c:?} folds to {folded:?}, not one ASCII letter"),
            };
        }
    }
    table
});

/// Zero-width characters, joiners, soft hyphens and other default-ignorable code points an
/// editor shows as nothing.
fn is_ignorable(c: char) -> bool {
    matches!(c,
        '\u{00AD}' | '\u{034F}' | '\u{061C}' | '\u{115F}' | '\u{1160}' | '\u{17B4}' | '\u{17B5}'
        | '\u{180B}'..='\u{180F}' | '\u{200B}'..='\u{200F}' | '\u{202A}'..='\u{202E}'
        | '\u{2060}'..='\u{206F}' | '\u{3164}' | '\u{FE00}'..='\u{FE0F}' | '\u{FEFF}'
        | '\u{FFA0}' | '\u{FFF0}'..='\u{FFF8}')
}

/// Lower case, then the confusable skeleton, then lower case again (the skeleton of `0` is
/// `O`), without accents.
fn fold_char(c: char, folded: &mut Vec<u8>) {
    for lower in c.to_lowercase() {
        let mut buf = [0u8; 4];
        for s in unicode_security::skeleton(lower.encode_utf8(&mut buf)) {
            if is_combining_mark(s) {
                continue;
            }
            for l in s.to_lowercase() {
                put_all(folded, l.encode_utf8(&mut [0u8; 4]).as_bytes());
            }
        }
    }
}

/// A window's hash: its four words' ids (already well mixed) packed two to a word, rotated
/// apart and combined, which is enough to spread windows over the table (a slot's window is
/// compared word by word).
fn window_hash(ids: &[WordId]) -> u64 {
    const _: () = assert!(SHINGLE == 4, "window_hash reads four ids");
    let pair = |i: usize| u64::from(ids[i]) | u64::from(ids[i + 1]) << 32;
    pair(0) ^ pair(2).rotate_left(29)
}

/// Window → the last position it starts at, open-addressed over positions only: a slot holds
/// a position and the window's words are the key, read back from the document's word list.
/// A quarter of the memory of a general map, so a long document's table stays in cache.
struct WindowTable {
    slots: Vec<u32>,
    shift: u32,
}

impl WindowTable {
    fn with_capacity(windows: usize, mut slots: Vec<u32>) -> WindowTable {
        let size = (windows * 2).next_power_of_two().max(16);
        slots.clear();
        slots.resize(size, NONE);
        WindowTable {
            slots,
            shift: 64 - size.trailing_zeros(),
        }
    }

    fn slot(&self, window: &[WordId]) -> usize {
        (window_hash(window).wrapping_mul(0x9e37_79b9_7f4a_7c15) >> self.shift) as usize
    }

    /// Records `at` as the last start of its window; returns the one before it, or `NONE`.
    fn insert(&mut self, words: &[WordId], at: usize) -> u32 {
        let window = &words[at..at + SHINGLE];
        let mask = self.slots.len() - 1;
        let mut i = self.slot(window);
        loop {
            let held = self.slots[i];
            if held == NONE {
                self.slots[i] = at as u32;
                return NONE;
            }
            if &words[held as usize..held as usize + SHINGLE] == window {
                self.slots[i] = at as u32;
                return held;
            }
            i = (i + 1) & mask;
        }
    }

    /// The last position `window` starts at in `words`, or `NONE`.
    fn get(&self, words: &[WordId], window: &[WordId]) -> u32 {
        let mask = self.slots.len() - 1;
        let mut i = self.slot(window);
        loop {
            let held = self.slots[i];
            if held == NONE || &words[held as usize..held as usize + SHINGLE] == window {
                return held;
            }
            i = (i + 1) & mask;
        }
    }
}

/// A document's words, indexed by every window of `SHINGLE` words.
pub struct SourceIndex {
    words: Vec<WordId>,
    /// Window → the last position it starts at; `previous` chains the earlier ones.
    last: WindowTable,
    previous: Vec<u32>,
}

const NONE: u32 = u32::MAX;

/// The buffers of this thread's last index, for its next one. A long document's index is a
/// few hundred kilobytes: fresh from the system allocator, that memory is new pages, and
/// faulting them in cost a fifth of indexing a 100 KB contract. Buffers past
/// [`SPARE_MAX_BYTES`] are let go.
type Buffers = (Vec<WordId>, Vec<u32>, Vec<u32>);

thread_local! {
    static SPARE: std::cell::RefCell<Option<Buffers>> = const { std::cell::RefCell::new(None) };
}

const SPARE_MAX_BYTES: usize = 8 << 20;

impl Drop for SourceIndex {
    fn drop(&mut self) {
        let bytes = self.words.capacity() * size_of::<WordId>()
            + (self.last.slots.capacity() + self.previous.capacity()) * size_of::<u32>();
        if bytes > SPARE_MAX_BYTES {
            return;
        }
        let buffers = (
            std::mem::take(&mut self.words),
            std::mem::take(&mut self.last.slots),
            std::mem::take(&mut self.previous),
        );
        let _ = SPARE.try_with(|spare| *spare.borrow_mut() = Some(buffers));
    }
}

impl SourceIndex {
    pub fn new(source: &str) -> SourceIndex {
        SourceIndex::of_parts(&[source])
    }

    /// The index of several texts read one after the other (a document's text, its name,
    /// its metadata), without joining them into one string first.
    pub fn of_parts(parts: &[&str]) -> SourceIndex {
        let len: usize = parts.iter().map(|p| p.len()).sum();
        let (mut words, slots, mut previous) = SPARE
            .try_with(|spare| spare.borrow_mut().take())
            .ok()
            .flatten()
            .unwrap_or_default();
        words.clear();
        words.reserve(len / 6);
        word_ids_of_parts(parts, &mut words);
        let windows = words.len().saturating_sub(SHINGLE - 1);
        let mut last = WindowTable::with_capacity(windows, slots);
        previous.clear();
        previous.extend((0..windows).map(|at| last.insert(&words, at)));
        SourceIndex {
            words,
            last,
            previous,
        }
    }

    pub fn len(&self) -> usize {
        self.words.len()
    }

    pub fn is_empty(&self) -> bool {
        self.words.is_empty()
    }

    /// Every maximal run of `SHINGLE` or more consecutive words that `payload` shares with the
    /// document: where it is in the payload and in the document.
    pub fn runs(&self, payload: &[WordId]) -> Vec<Run> {
        let mut runs = Vec::new();
        if payload.len() < SHINGLE || self.words.len() < SHINGLE {
            return runs;
        }
        let source = &self.words;
        for at in 0..=payload.len() - SHINGLE {
            let window = &payload[at..at + SHINGLE];
            let mut candidate = self.last.get(source, window);
            let mut looked = 0;
            while candidate != NONE && looked < MAX_CANDIDATES {
                looked += 1;
                let from = candidate as usize;
                candidate = self.previous[from];
                if &source[from..from + SHINGLE] != window {
                    continue;
                }
                // Only from the start of a run: its continuation would find it again.
                if at > 0 && from > 0 && payload[at - 1] == source[from - 1] {
                    continue;
                }
                let mut len = SHINGLE;
                while at + len < payload.len()
                    && from + len < source.len()
                    && payload[at + len] == source[from + len]
                {
                    len += 1;
                }
                runs.push(Run {
                    payload: at..at + len,
                    source: from as u32..(from + len) as u32,
                });
            }
        }
        runs
    }
}

/// A stretch of words a payload shares with its document.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Run {
    pub payload: Range<usize>,
    pub source: Range<u32>,
}

impl Run {
    pub fn len(&self) -> usize {
        self.payload.len()
    }

    pub fn is_empty(&self) -> bool {
        self.payload.is_empty()
    }
}

/// What one document has sent so far: the stretches of it that left, and the last words of
/// the last payload (so pieces sent one after another join up even when each is short).
pub struct Window {
    pub index: SourceIndex,
    /// Disjoint, sorted stretches of the document (word positions) that already left.
    sent: Vec<Range<u32>>,
    tail: Vec<WordId>,
}

/// The verdict on one request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Overlap {
    /// The longest stretch of consecutive document words that the request repeats, together
    /// with what earlier requests of the same document sent.
    pub longest: usize,
    /// Where the longest run of this request starts: an index into the joined word sequence
    /// handed to [`Window::check`] (`None` when it is in what earlier calls sent).
    pub at: Option<usize>,
    /// Or which of the `extra` readings it is in.
    pub reading: Option<usize>,
    /// True when the stretch only becomes long joined with earlier calls.
    pub across_calls: bool,
}

impl Window {
    pub fn new(source: &str) -> Window {
        Window::of_parts(&[source])
    }

    pub fn of_parts(parts: &[&str]) -> Window {
        Window {
            index: SourceIndex::of_parts(parts),
            sent: Vec::new(),
            tail: Vec::new(),
        }
    }

    /// Checks a request's words (`joined`: every string of it, in order) and any `extra`
    /// readings of it (reversed, decoded) against the document and what already left.
    /// Returns the longest stretch; call [`Window::commit`] if the request goes ahead.
    pub fn check(&self, joined: &[WordId], extra: &[&[WordId]]) -> (Overlap, Vec<Range<u32>>) {
        let keep = self.tail.len();
        let mut sequence = Vec::with_capacity(keep + joined.len());
        sequence.extend_from_slice(&self.tail);
        sequence.extend_from_slice(joined);

        let mut best = Overlap {
            longest: 0,
            at: None,
            reading: None,
            across_calls: false,
        };
        let mut stretches: Vec<Range<u32>> = Vec::new();
        let consider =
            |run: &Run, at: Option<usize>, reading: Option<usize>, best: &mut Overlap| {
                if run.len() > best.longest {
                    *best = Overlap {
                        longest: run.len(),
                        at,
                        reading,
                        across_calls: at.is_none() && reading.is_none(),
                    };
                }
            };
        for run in self.index.runs(&sequence) {
            // A run wholly inside the previous payload's tail was checked then.
            if run.payload.end <= keep {
                continue;
            }
            let at = run.payload.start.checked_sub(keep);
            consider(&run, at, None, &mut best);
            stretches.push(run.source.clone());
        }
        for (i, reading) in extra.iter().enumerate() {
            for run in self.index.runs(reading) {
                consider(&run, None, Some(i), &mut best);
                stretches.push(run.source.clone());
            }
        }
        // Joined with what already left (and with each other), how long do they get?
        let merged = merge(self.sent.iter().cloned().chain(stretches.iter().cloned()));
        for stretch in &stretches {
            let whole = merged
                .iter()
                .find(|m| m.start <= stretch.start && stretch.end <= m.end)
                .map_or(0, |m| m.len());
            if whole > best.longest {
                best = Overlap {
                    longest: whole,
                    at: None,
                    reading: None,
                    across_calls: true,
                };
            }
        }
        (best, stretches)
    }

    /// Records that a checked request left.
    pub fn commit(&mut self, joined: &[WordId], stretches: Vec<Range<u32>>, tail_words: usize) {
        self.sent = merge(self.sent.drain(..).chain(stretches));
        self.tail.extend_from_slice(joined);
        let excess = self.tail.len().saturating_sub(tail_words);
        self.tail.drain(..excess);
    }
}

/// Sorted, disjoint union of ranges (touching ranges join: 0..4 and 4..8 make 0..8).
fn merge(ranges: impl Iterator<Item = Range<u32>>) -> Vec<Range<u32>> {
    let mut all: Vec<Range<u32>> = ranges.filter(|r| !r.is_empty()).collect();
    all.sort_by_key(|r| r.start);
    let mut out: Vec<Range<u32>> = Vec::with_capacity(all.len());
    for r in all {
        match out.last_mut() {
            Some(last) if r.start <= last.end => last.end = last.end.max(r.end),
            _ => out.push(r),
        }
    }
    out
}

/// Runs of base64 or hex inside `text`, decoded, when they decode to readable text.
pub fn decoded_runs(text: &str) -> Vec<String> {
    use base64::Engine as _;
    let mut out = Vec::new();
    let bytes = text.as_bytes();
    let is_b64 = |b: u8| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'/' | b'-' | b'_');
    let mut i = 0;
    while i < bytes.len() {
        if !is_b64(bytes[i]) {
            i += 1;
            continue;
        }
        let start = i;
        while i < bytes.len() && is_b64(bytes[i]) {
            i += 1;
        }
        let mut end = i;
        while end < bytes.len() && bytes[end] == b'=' && end - i < 2 {
            end += 1;
        }
        let run = &text[start..i];
        if run.len() < 16 {
            i = end;
            continue;
        }
        let decoded = if run.len() % 2 == 0 && run.bytes().all(|b| b.is_ascii_hexdigit()) {
            decode_hex(run)
        } else {
            let standard = run.replace('-', "+").replace('_', "/");
            base64::engine::general_purpose::STANDARD_NO_PAD
                .decode(standard.trim_end_matches('='))
                .ok()
        };
        if let Some(text) = decoded.and_then(readable) {
            out.push(text);
        }
        i = end;
    }
    out
}

fn decode_hex(run: &str) -> Option<Vec<u8>> {
    (0..run.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&run[i..i + 2], 16).ok())
        .collect()
}

/// Decoded bytes that read as text: UTF-8, almost all of it printable.
fn readable(bytes: Vec<u8>) -> Option<String> {
    let text = String::from_utf8(bytes).ok()?;
    let total = text.chars().count();
    let printable = text
        .chars()
        .filter(|c| !c.is_control() || c.is_whitespace())
        .count();
    (total > 0 && printable * 10 >= total * 9).then_some(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ids(text: &str) -> Vec<WordId> {
        let mut out = Vec::new();
        word_ids(text, &mut out);
        out
    }

    const SOURCE: &str = "El contratista prestará servicios de soporte técnico de primer y segundo nivel para los sistemas de facturación electrónica del contratante durante la vigencia del contrato";

    fn longest(window: &Window, payload: &str) -> usize {
        window.check(&ids(payload), &[]).0.longest
    }

    #[test]
    fn folding_sees_through_case_width_accents_joiners_and_homoglyphs() {
        let plain = ids("Facturación electrónica del contratante");
        assert_eq!(ids("FACTURACION ELECTRONICA DEL CONTRATANTE"), plain);
        assert_eq!(
            ids("fac\u{200B}turación elec\u{00AD}trónica del contratante"),
            plain
        );
        assert_eq!(ids("facturación_electrónica-del.contratante"), plain);
        assert_eq!(
            ids("ｆａｃｔｕｒａｃｉóｎ electrónica del contratante"),
            plain
        );
        // Cyrillic а, е, о and с in place of Latin letters.
        assert_eq!(ids("f\u{0430}ctur\u{0430}ción \u{0435}l\u{0435}ctrónica d\u{0435}l \u{0441}\u{043E}ntratante"), plain);
        assert_eq!(
            ids("facturacio\u{0301}n   electrónica\n\tdel contratante"),
            plain
        );
        // `rn` reads as `m`, wherever the two letters come from.
        let m = ids("gobierno interno");
        assert_eq!(ids("gobiemo intemo"), m);
        assert_eq!(ids("GOBIERNO INTERÑO"), m);
        assert_eq!(ids("gobier\u{200B}no inter\u{00AD}no"), m);
        assert_ne!(ids("gobier no"), ids("gobiem o"));
    }

    #[test]
    fn sixteen_ascii_bytes_fold_as_the_table_does() {
        let mut accented = *b"abc\xc3\xa9defghijklmn";
        accented[15] = 0xff;
        assert_eq!(fold_ascii16(accented).high, 1 << 3 | 1 << 4 | 1 << 15);
        for b in 0..128u8 {
            for at in 0..16 {
                let mut block = *b"Ab0 1mZz9._-RnIx";
                block[at] = b;
                let folded = fold_ascii16(block);
                let expected = block.map(|b| ASCII_ONE[usize::from(b)]);
                assert_eq!(folded.folded, expected, "byte {b:#04x} at {at}");
                let bits = |f: &dyn Fn(usize) -> bool| {
                    (0..16).filter(|&i| f(i)).fold(0, |m, i| m | 1 << i)
                };
                assert_eq!(folded.n, bits(&|i| expected[i] == b'n'));
                assert_eq!(folded.r, bits(&|i| expected[i] == b'r'));
                assert_eq!(folded.high, 0);
            }
        }
    }

    #[test]
    fn a_word_has_one_id_wherever_it_stands() {
        let letters = "abcdefghijklnopqrstuvwxyz0123456789";
        let mut seen = std::collections::HashSet::new();
        for len in 1..=letters.len() {
            let word = &letters[..len];
            let alone = ids(word);
            assert_eq!(alone.len(), 1);
            assert!(seen.insert(alone[0]), "{word} shares an id");
            for before in 0..10 {
                let text = format!("{}{word}.", "k ".repeat(before));
                let all = ids(&text);
                assert_eq!(all.len(), before + 1, "{text}");
                assert_eq!(all[before], alone[0], "{text}");
                let mut backwards = Vec::new();
                fold_chars(text.chars(), &mut backwards);
                assert_eq!(backwards, all);
            }
        }
        assert!(ids("").is_empty());
        assert!(ids(" .,;\n\t ").is_empty());
        assert_eq!(ids("uno dos"), [ids("uno"), ids("dos")].concat());
    }

    #[test]
    fn words_split_alike_across_blocks_and_runs_of_breaks() {
        // Words and runs of breaks of every length from one to twenty, so each lands on
        // every position of a sixteen-byte block and many cross from one block to the next.
        let mut seed = 7u32;
        let mut next = |n: u32| {
            seed = seed.wrapping_mul(1_103_515_245).wrapping_add(12_345);
            (seed >> 16) % n
        };
        for _ in 0..200 {
            let (mut text, mut words) = (String::new(), Vec::new());
            for _ in 0..next(12) {
                // At least one break between words; the text may start with a word.
                let breaks = next(4) as usize + usize::from(!text.is_empty());
                text.push_str(&" .,\n-"[..next(5) as usize + 1].repeat(breaks));
                let word: String = (0..next(20) + 1)
                    .map(|_| char::from(b'a' + next(26) as u8))
                    .collect();
                text.push_str(&word);
                words.push(word);
            }
            text.push_str(&".".repeat(next(3) as usize));
            let alone: Vec<WordId> = words.iter().flat_map(|w| ids(w)).collect();
            assert_eq!(ids(&text), alone, "{text:?}");
        }
    }

    #[test]
    fn the_latin_table_folds_as_the_unicode_tables_do() {
        let reference = |text: &str| {
            let (mut folded, mut out) = (Vec::new(), Vec::new());
            for c in text.chars() {
                if c.is_ascii() {
                    fold_ascii_byte(c as u8, &mut folded);
                } else {
                    fold_other(c, &mut folded);
                }
            }
            hash_words(&mut folded, &mut out);
            out
        };
        for cp in 0x80..LATIN_END + 0x40 {
            let Some(c) = char::from_u32(cp) else {
                continue;
            };
            let text = format!("Fa{c}ctura {c} x{c}{c}");
            assert_eq!(ids(&text), reference(&text), "U+{cp:04X} {c}");
            let mut backwards = Vec::new();
            fold_chars(text.chars(), &mut backwards);
            assert_eq!(backwards, reference(&text), "U+{cp:04X} {c}");
        }
        assert_eq!(ids("INFORMACIÓN técnica"), ids("informacion tecnica"));
        // And in any mix, at any word length.
        let pieces = [
            "a",
            "Bc",
            "defghij",
            "KLMNOPQRS",
            "0",
            "1",
            "m",
            "M",
            "ñ",
            "é",
            " ",
            ", ",
            "-",
            "x2y",
            "Ｆ",
            "\u{200B}",
            "ümlaut",
            "abcdefgh",
            "ABCDEFGHIJKLMNOPQRSTU",
            "9",
            "r",
            "n",
            "R",
            "N",
            "rn",
            "ñ",
        ];
        let mut seed = 0x2545_f491_4f6c_dd1du64;
        let mut next = || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        for _ in 0..3000 {
            let mut text = String::new();
            for _ in 0..next() % 17 {
                text.push_str(pieces[(next() % pieces.len() as u64) as usize]);
            }
            assert_eq!(ids(&text), reference(&text), "{text:?}");
        }
    }

    #[test]
    fn a_copied_passage_is_found_at_its_full_length() {
        let window = Window::new(SOURCE);
        assert_eq!(longest(&window, &format!("Resumen: {SOURCE}")), 25);
        assert_eq!(longest(&window, "soporte técnico de primer nivel"), 4);
        assert_eq!(longest(&window, "tipo: servicios; partes: 2"), 0);
    }

    #[test]
    fn pieces_sent_over_several_calls_join_up() {
        let mut window = Window::new(SOURCE);
        let words: Vec<&str> = SOURCE.split(' ').collect();
        let mut seen = 0;
        for chunk in words.chunks(9) {
            let joined = ids(&chunk.join(" "));
            let (verdict, stretches) = window.check(&joined, &[]);
            seen = seen.max(verdict.longest);
            window.commit(&joined, stretches, 12);
        }
        assert!(seen > 12, "{seen}");
    }

    #[test]
    fn pieces_out_of_order_join_up_too() {
        let mut window = Window::new(SOURCE);
        let words: Vec<&str> = SOURCE.split(' ').collect();
        let first = ids(&words[10..18].join(" "));
        let (verdict, stretches) = window.check(&first, &[]);
        assert_eq!(verdict.longest, 8);
        window.commit(&first, stretches, 0);
        let second = ids(&words[2..10].join(" "));
        let (verdict, _) = window.check(&second, &[]);
        assert_eq!(verdict.longest, 16);
        assert!(verdict.across_calls);
    }

    #[test]
    fn base64_and_hex_runs_are_decoded() {
        use base64::Engine as _;
        let encoded = base64::engine::general_purpose::STANDARD.encode(SOURCE);
        let decoded = decoded_runs(&format!("blob={encoded};"));
        assert_eq!(decoded, vec![SOURCE.to_owned()]);
        let hex: String = SOURCE.bytes().map(|b| format!("{b:02x}")).collect();
        assert_eq!(decoded_runs(&hex), vec![SOURCE.to_owned()]);
        assert!(decoded_runs("order FE2026000123 ok 0123456789abcdef0123").is_empty());
    }

    #[test]
    fn index_work_grows_with_the_payload_not_the_document() {
        let long: String = (0..20_000).map(|i| format!("palabra{i} ")).collect();
        let window = Window::new(&long);
        assert_eq!(window.index.len(), 20_000);
        assert_eq!(
            longest(&window, "palabra100 palabra101 palabra102 palabra103 x"),
            4
        );
    }
}
