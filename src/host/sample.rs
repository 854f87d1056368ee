//! `sampled(key, rate)`: a deterministic sample. The same key is always in or always out, so
//! reruns (and restarts) sample the same documents; over many keys the share is `rate`.

use rhai::{Engine, FuncRegistration, FLOAT};

pub fn register(engine: &mut Engine) {
    const COMMENT: &str = "/// A deterministic sample: whether `key` is in a sample of share `rate` (0 to 1). The\n/// same key is always in or always out, so reruns sample the same documents.\n///\n/// ```rhai\n/// if sampled(doc.id, 0.18) { /* also ask the cloud */ }\n/// ```";
    FuncRegistration::new("sampled")
        .with_params_info(["key: &str", "rate: f64", "bool"])
        .with_comments([COMMENT])
        .register_into_engine(engine, |key: &str, rate: FLOAT| unit(key) < rate);
    FuncRegistration::new("sampled")
        .with_params_info(["key: &str", "rate: i64", "bool"])
        .with_comments([COMMENT])
        .register_into_engine(engine, |key: &str, rate: rhai::INT| {
            unit(key) < rate as FLOAT
        });
}

/// `key` mapped to [0, 1) by FNV-1a (64 bit), stable across runs, machines and versions.
pub fn unit(key: &str) -> f64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in key.as_bytes() {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    // A final mix so that keys differing only at the end spread too.
    h ^= h >> 33;
    h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
    h ^= h >> 33;
    (h >> 11) as f64 / (1u64 << 53) as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_share_is_close_to_the_rate_and_stable() {
        let n = 20_000;
        let hits = (0..n).filter(|i| unit(&format!("msg-{i}")) < 0.18).count();
        let share = hits as f64 / n as f64;
        assert!((0.17..0.19).contains(&share), "{share}");
        assert_eq!(unit("doc-42"), unit("doc-42"));
    }
}
