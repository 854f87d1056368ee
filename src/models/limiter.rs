//! One rate limiter per endpoint, in front of every call, shared by all documents.
//!
//! Without it, `--jobs 32` fires 32 requests at once; past the organisation's limit they all get
//! `429`, all back off for about the same time and all come back together. Here requests wait
//! their turn instead: a requests-per-minute and a tokens-per-minute budget (`[cloud] rpm`,
//! `tpm`, or learned from the `x-ratelimit-limit-*` headers the API sends), paced a quarter of a
//! second's worth at a time; and a `429`, or the server saying its window is spent
//! (`x-ratelimit-remaining-* = 0`), pauses the whole endpoint until it resets, not just the
//! caller that met it. The limiter itself is `governor`'s (GCRA).

use std::num::NonZeroU32;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use governor::clock::{Clock, DefaultClock};
use governor::{DefaultDirectRateLimiter, Quota};
use rand::Rng;
use reqwest::header::HeaderMap;
use reqwest::StatusCode;

/// A pause after a `429` that did not say how long.
const DEFAULT_PAUSE: Duration = Duration::from_secs(1);
/// The longest pause a header can impose (a bad reset value must not stall a run for hours).
const MAX_PAUSE: Duration = Duration::from_secs(120);

/// A budget per minute, paced: at most a quarter of a second's worth at once, so no
/// one-second window of the server's sees much more than its share.
struct Budget {
    limiter: DefaultDirectRateLimiter,
    burst: u32,
}

impl Budget {
    fn per_minute(per_minute: u32) -> Option<Budget> {
        let per_minute = NonZeroU32::new(per_minute)?;
        let burst = per_minute.get().div_ceil(240).max(1);
        let quota = Quota::per_minute(per_minute).allow_burst(NonZeroU32::new(burst)?);
        let limiter = DefaultDirectRateLimiter::direct(quota);
        // Start empty, not with a burst in hand: a run's first second stays within the rate
        // like every other (the server's window does not know the run just began).
        let _ = limiter.check_n(NonZeroU32::new(burst)?);
        Some(Budget { limiter, burst })
    }

    /// Waits until `n` (at most a burst) can go.
    async fn take(&self, n: u32) {
        let n = NonZeroU32::new(n.clamp(1, self.burst)).expect("at least 1");
        loop {
            match self.limiter.check_n(n) {
                Ok(Ok(())) | Err(_) => return,
                Ok(Err(not_yet)) => {
                    let wait = not_yet.wait_time_from(DefaultClock::default().now());
                    tokio::time::sleep(wait + jitter()).await;
                }
            }
        }
    }
}

/// A few milliseconds of randomness, so waiters do not all wake on the same tick.
fn jitter() -> Duration {
    Duration::from_millis(rand::rng().random_range(0..20))
}

/// The requests and tokens budgets of one endpoint, and its pause.
#[derive(Default)]
pub struct Limiter {
    requests: RwLock<Option<Arc<Budget>>>,
    tokens: RwLock<Option<Arc<Budget>>>,
    /// Set from configuration: the server's headers do not replace it.
    configured: (bool, bool),
    paused_until: Mutex<Option<Instant>>,
}

impl Limiter {
    pub fn new(rpm: Option<u32>, tpm: Option<u32>) -> Limiter {
        let requests = rpm.and_then(Budget::per_minute).map(Arc::new);
        let tokens = tpm.and_then(Budget::per_minute).map(Arc::new);
        Limiter {
            configured: (requests.is_some(), tokens.is_some()),
            requests: RwLock::new(requests),
            tokens: RwLock::new(tokens),
            paused_until: Mutex::new(None),
        }
    }

    /// Waits until a request of about `tokens` tokens may go.
    pub async fn wait(&self, tokens: u32) {
        loop {
            let until = *self.paused_until.lock().unwrap_or_else(|e| e.into_inner());
            match until.map(|u| u.saturating_duration_since(Instant::now())) {
                Some(left) if !left.is_zero() => tokio::time::sleep(left + jitter()).await,
                _ => break,
            }
        }
        let requests = self
            .requests
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        if let Some(budget) = requests {
            budget.take(1).await;
        }
        let budget = self
            .tokens
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        if let Some(budget) = budget {
            budget.take(tokens).await;
        }
    }

    /// Learns from an answer: its limits (when none were configured), and whether the
    /// endpoint must pause (`429`, or a spent window) and for how long.
    pub fn observe(&self, status: StatusCode, headers: &HeaderMap, retry_after: Option<Duration>) {
        let number =
            |name: &str| -> Option<u64> { headers.get(name)?.to_str().ok()?.trim().parse().ok() };
        for (name, slot, configured) in [
            (
                "x-ratelimit-limit-requests",
                &self.requests,
                self.configured.0,
            ),
            ("x-ratelimit-limit-tokens", &self.tokens, self.configured.1),
        ] {
            if configured {
                continue;
            }
            if let Some(limit) = number(name).and_then(|l| u32::try_from(l).ok()) {
                let mut slot = slot.write().unwrap_or_else(|e| e.into_inner());
                if slot.is_none() {
                    tracing::info!(header = name, limit, "rate limit learned from the server");
                    *slot = Budget::per_minute(limit).map(Arc::new);
                }
            }
        }
        let mut pause = None;
        if status == StatusCode::TOO_MANY_REQUESTS {
            pause = Some(retry_after.unwrap_or(DEFAULT_PAUSE));
        }
        for (remaining, reset) in [
            (
                "x-ratelimit-remaining-requests",
                "x-ratelimit-reset-requests",
            ),
            ("x-ratelimit-remaining-tokens", "x-ratelimit-reset-tokens"),
        ] {
            if number(remaining) == Some(0) {
                let reset = headers
                    .get(reset)
                    .and_then(|v| v.to_str().ok())
                    .and_then(parse_reset)
                    .unwrap_or(DEFAULT_PAUSE);
                pause = Some(pause.map_or(reset, |p: Duration| p.max(reset)));
            }
        }
        if let Some(pause) = pause {
            let until = Instant::now() + pause.min(MAX_PAUSE);
            let mut paused = self.paused_until.lock().unwrap_or_else(|e| e.into_inner());
            if paused.is_none_or(|p| p < until) {
                tracing::debug!(pause_ms = pause.as_millis() as u64, "endpoint paused");
                *paused = Some(until);
            }
        }
    }
}

/// `x-ratelimit-reset-*` values: `1s`, `6m0s`, `20ms`, `1h2m3.5s`.
fn parse_reset(text: &str) -> Option<Duration> {
    let mut total = 0.0;
    let mut number = String::new();
    let mut chars = text.trim().chars().peekable();
    let mut any = false;
    while let Some(c) = chars.next() {
        if c.is_ascii_digit() || c == '.' {
            number.push(c);
            continue;
        }
        let value: f64 = number.parse().ok()?;
        number.clear();
        let unit = match c {
            'h' => 3600.0,
            'm' if chars.peek() == Some(&'s') => {
                chars.next();
                0.001
            }
            'm' => 60.0,
            's' => 1.0,
            _ => return None,
        };
        total += value * unit;
        any = true;
    }
    if !number.is_empty() {
        total += number.parse::<f64>().ok()?;
        any = true;
    }
    any.then(|| Duration::try_from_secs_f64(total).ok())
        .flatten()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reset_durations_read_as_the_api_writes_them() {
        assert_eq!(parse_reset("1s"), Some(Duration::from_secs(1)));
        assert_eq!(parse_reset("6m0s"), Some(Duration::from_secs(360)));
        assert_eq!(parse_reset("20ms"), Some(Duration::from_millis(20)));
        assert_eq!(
            parse_reset("1h2m3.5s"),
            Some(Duration::from_secs_f64(3723.5))
        );
        assert_eq!(parse_reset("2"), Some(Duration::from_secs(2)));
        assert_eq!(parse_reset("soon"), None);
    }

    #[tokio::test]
    async fn requests_are_paced_and_a_429_pauses_everyone() {
        // 600 a minute: ten a second, three at once, starting empty.
        let limiter = Limiter::new(Some(600), None);
        let started = Instant::now();
        for _ in 0..10 {
            limiter.wait(1).await;
        }
        let took = started.elapsed();
        assert!(took >= Duration::from_millis(900), "{took:?}");

        let mut headers = HeaderMap::new();
        headers.insert("x-ratelimit-remaining-requests", "0".parse().unwrap());
        headers.insert("x-ratelimit-reset-requests", "300ms".parse().unwrap());
        let limiter = Limiter::new(None, None);
        limiter.observe(StatusCode::OK, &headers, None);
        let started = Instant::now();
        limiter.wait(1).await;
        assert!(started.elapsed() >= Duration::from_millis(250));
    }

    #[test]
    fn limits_are_learned_unless_configured() {
        let mut headers = HeaderMap::new();
        headers.insert("x-ratelimit-limit-requests", "500".parse().unwrap());
        let learning = Limiter::new(None, None);
        learning.observe(StatusCode::OK, &headers, None);
        assert_eq!(
            learning.requests.read().unwrap().as_ref().map(|b| b.burst),
            Some(3)
        );
        let configured = Limiter::new(Some(60), None);
        configured.observe(StatusCode::OK, &headers, None);
        assert_eq!(
            configured
                .requests
                .read()
                .unwrap()
                .as_ref()
                .map(|b| b.burst),
            Some(1)
        );
    }
}
