//! `text_excerpt` and `text_word_count`: the string work that scripts do on whole documents,
//! in Rust, in one pass. Written in Rhai, `excerpt` rescanned the cut once per space
//! (quadratic: 81% of CPU on 17 KB contracts). Scripts use them through `hybrid/text`.

use rhai::{Engine, ImmutableString};

pub fn register(engine: &mut Engine) {
    rhai::FuncRegistration::new("text_excerpt")
        .with_params_info(["text: &str", "max_chars: i64", "String"])
        .with_comments([
            "/// The host side of `hybrid/text`'s `excerpt`: use `text::excerpt(text, max_chars)`.",
        ])
        .register_into_engine(engine, |s: ImmutableString, max_chars: i64| {
            excerpt(&s, max_chars)
        });
    rhai::FuncRegistration::new("text_word_count")
        .with_params_info(["text: &str", "i64"])
        .with_comments([
            "/// The host side of `hybrid/text`'s `word_count`: use `text::word_count(text)`.",
        ])
        .register_into_engine(engine, |s: &str| word_count(s) as i64);
}

/// The first `max_chars` characters of `s`, cut back to the last space in their second half
/// when there is one, with `…` when cut. Linear in `max_chars`.
pub fn excerpt(s: &ImmutableString, max_chars: i64) -> ImmutableString {
    let max = usize::try_from(max_chars).unwrap_or(0);
    let Some(end) = char_offset(s, max) else {
        return s.clone();
    };
    let mut cut = &s[..end];
    let half = char_offset(cut, max / 2).unwrap_or(cut.len());
    if let Some(space) = cut[half..].rfind(' ').map(|i| half + i).filter(|&i| i > 0) {
        cut = &cut[..space];
    }
    format!("{cut}…").into()
}

/// Where the `n`th character (0-based) of `s` starts, or `None` when `s` has `n` characters
/// or fewer. Counts character starts 256 bytes at a time (a byte is a continuation byte
/// when its top bits are `10`), then byte by byte in the last block: a 100 KB contract
/// costs a few microseconds.
fn char_offset(s: &str, n: usize) -> Option<usize> {
    const HIGH: u64 = 0x8080_8080_8080_8080;
    const ONES: u64 = 0x0101_0101_0101_0101;
    let bytes = s.as_bytes();
    let (mut seen, mut at) = (0, 0);
    // 256 bytes at a time: each byte lane of `lanes` counts the continuation bytes at its
    // place in 32 blocks, summed across lanes once (in UTF-8 at most three bytes in four
    // continue a character, so the sum fits in a byte).
    for chunk in bytes.chunks_exact(256) {
        let lanes = chunk.chunks_exact(8).fold(0u64, |lanes, block| {
            let x = u64::from_le_bytes(block.try_into().expect("eight bytes"));
            lanes + ((x & !(x << 1) & HIGH) >> 7)
        });
        let here = 256 - (lanes.wrapping_mul(ONES) >> 56) as usize;
        if seen + here > n {
            break;
        }
        seen += here;
        at += 256;
    }
    for (i, &b) in bytes[at..].iter().enumerate() {
        if (b as i8) >= -0x40 {
            if seen == n {
                return Some(at + i);
            }
            seen += 1;
        }
    }
    None
}

/// Whitespace-separated words.
pub fn word_count(s: &str) -> usize {
    s.split_whitespace().count()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn excerpt_cuts_at_a_word_in_the_second_half() {
        let s: ImmutableString = "uno dos tres cuatro cinco".into();
        assert_eq!(excerpt(&s, 12).as_str(), "uno dos…");
        assert_eq!(excerpt(&s, 100).as_str(), s.as_str());
        assert_eq!(excerpt(&s, 25).as_str(), s.as_str());
        let no_space: ImmutableString = "abcdefghij".into();
        assert_eq!(excerpt(&no_space, 4).as_str(), "abcd…");
        let accents: ImmutableString = "información técnica reservada".into();
        assert_eq!(excerpt(&accents, 20).as_str(), "información técnica…");
        assert_eq!(word_count("  uno\tdos\n tres "), 3);
        // At every position, with characters of every width on the way.
        let long: String = "añ€😀b".repeat(400);
        for n in 0..2000 {
            assert_eq!(
                char_offset(&long, n),
                long.char_indices().nth(n).map(|(i, _)| i),
                "{n}"
            );
        }
        assert_eq!(char_offset(&long, 2000), None);
    }
}
