//! What a call costs: cloud tokens at the provider's prices, local work at the operator's
//! hardware and energy rates, in USD and in the local currency.
//!
//! Prices are per million tokens. The defaults are GPT-5.4's list prices; any model can be
//! priced in `hybrid.toml` under `[prices."MODEL"]`.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::models::Usage;

/// Per-million-token prices for one model.
#[derive(Debug, Clone, Copy, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Price {
    /// USD per million input (prompt) tokens.
    pub input: f64,
    /// USD per million cached input tokens.
    #[serde(default)]
    pub cached_input: Option<f64>,
    /// USD per million output tokens (reasoning tokens are billed as output).
    pub output: f64,
    /// Prompts longer than this many tokens are billed at the long-context rates.
    #[serde(default)]
    pub long_context_threshold: Option<u64>,
    #[serde(default = "one")]
    pub long_context_input_multiplier: f64,
    #[serde(default = "one")]
    pub long_context_output_multiplier: f64,
}

fn one() -> f64 {
    1.0
}

/// GPT-5.4's list prices: $2.50 / M input, $0.25 / M cached input, $15.00 / M output; prompts
/// over 272K tokens cost 2x input and 1.5x output.
pub const GPT_5_4: Price = Price {
    input: 2.50,
    cached_input: Some(0.25),
    output: 15.00,
    long_context_threshold: Some(272_000),
    long_context_input_multiplier: 2.0,
    long_context_output_multiplier: 1.5,
};

/// GPT-5.4 mini's list prices: $0.75 / M input, $0.075 / M cached input, $4.50 / M output
/// (400K context, no long-context tier).
pub const GPT_5_4_MINI: Price = Price {
    input: 0.75,
    cached_input: Some(0.075),
    output: 4.50,
    long_context_threshold: None,
    long_context_input_multiplier: 1.0,
    long_context_output_multiplier: 1.0,
};

/// GPT-5.4 nano's list prices: $0.20 / M input, $0.02 / M cached input, $1.25 / M output.
pub const GPT_5_4_NANO: Price = Price {
    input: 0.20,
    cached_input: Some(0.02),
    output: 1.25,
    long_context_threshold: None,
    long_context_input_multiplier: 1.0,
    long_context_output_multiplier: 1.0,
};

/// Flex processing bills this share of the standard rates (OpenAI: "50% lower", priced like
/// the Batch API).
pub const FLEX_RATE: f64 = 0.5;

/// The prices shipped with hybrid, by exact model id (OpenAI's pricing page, 2026).
const BUILT_IN: [(&str, Price); 3] = [
    ("gpt-5.4", GPT_5_4),
    ("gpt-5.4-mini", GPT_5_4_MINI),
    ("gpt-5.4-nano", GPT_5_4_NANO),
];

/// A dated snapshot's model id without its date: `gpt-5.4-mini-2026-03-17` → `gpt-5.4-mini`.
fn without_snapshot_date(model: &str) -> Option<&str> {
    let (base, date) = model.split_at(model.len().checked_sub(11)?);
    let shaped = date.len() == 11
        && date.bytes().enumerate().all(|(i, b)| {
            if matches!(i, 0 | 5 | 8) {
                b == b'-'
            } else {
                b.is_ascii_digit()
            }
        });
    (shaped && !base.is_empty()).then_some(base)
}

impl Price {
    /// USD for one call's usage.
    pub fn cost(&self, usage: &Usage) -> f64 {
        let long = self
            .long_context_threshold
            .is_some_and(|t| usage.prompt_tokens > t);
        let (im, om) = if long {
            (
                self.long_context_input_multiplier,
                self.long_context_output_multiplier,
            )
        } else {
            (1.0, 1.0)
        };
        let cached = usage.cached_tokens.min(usage.prompt_tokens);
        let uncached = usage.prompt_tokens - cached;
        let cached_price = self.cached_input.unwrap_or(self.input);
        (uncached as f64 * self.input * im
            + cached as f64 * cached_price * im
            + usage.completion_tokens as f64 * self.output * om)
            / 1e6
    }
}

/// The local machine's running cost.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct LocalCost {
    /// Hardware amortization (or rent) per month, USD.
    pub monthly_usd: Option<f64>,
    /// Alternatively, a per-hour rate, USD.
    pub hourly_usd: Option<f64>,
    /// Power draw while generating, watts.
    pub watts: Option<f64>,
    /// Electricity price, USD per kWh.
    pub kwh_usd: Option<f64>,
}

impl LocalCost {
    /// Fixed cost per month (hardware), USD.
    pub fn monthly_fixed(&self) -> f64 {
        self.monthly_usd
            .or(self.hourly_usd.map(|h| h * 24.0 * 30.0))
            .unwrap_or(0.0)
    }

    /// Marginal cost of `ms` of generation: energy, USD.
    pub fn energy(&self, ms: u64) -> f64 {
        match (self.watts, self.kwh_usd) {
            (Some(w), Some(p)) => w / 1000.0 * (ms as f64 / 3_600_000.0) * p,
            _ => 0.0,
        }
    }

    /// True when any local rate is configured.
    pub fn has_rate(&self) -> bool {
        self.monthly_usd.is_some()
            || self.hourly_usd.is_some()
            || (self.watts.is_some() && self.kwh_usd.is_some())
    }

    /// What `ms` of the machine's time costs, amortization included, USD.
    pub fn call_cost(&self, ms: u64) -> f64 {
        let hourly = self
            .hourly_usd
            .or(self.monthly_usd.map(|m| m / (24.0 * 30.0)))
            .unwrap_or(0.0);
        hourly * ms as f64 / 3_600_000.0 + self.energy(ms)
    }
}

/// The operator's currency.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct Currency {
    /// ISO code: COP, MXN, ARS, BRL, ...
    pub code: String,
    /// Units of that currency per US dollar.
    pub per_usd: f64,
}

impl Default for Currency {
    fn default() -> Self {
        Currency {
            code: "USD".into(),
            per_usd: 1.0,
        }
    }
}

/// Everything needed to price calls.
#[derive(Debug, Clone, Default)]
pub struct Pricing {
    pub prices: BTreeMap<String, Price>,
    pub local: LocalCost,
    pub currency: Currency,
}

impl Pricing {
    /// The price for `model`: configured under `[prices]`, else shipped; by exact id, or for
    /// a dated snapshot (`gpt-5.4-2026-03-05`) by the id it snapshots. Never a neighbour's:
    /// `gpt-5.4-mini` is not `gpt-5.4`, and a model nobody priced has no price.
    pub fn price(&self, model: &str) -> Option<Price> {
        let ids = [Some(model), without_snapshot_date(model)];
        let ids = ids.iter().flatten();
        ids.clone()
            .find_map(|id| self.prices.get(*id).copied())
            .or_else(|| {
                ids.clone().find_map(|id| {
                    BUILT_IN
                        .iter()
                        .find(|(known, _)| known == id)
                        .map(|(_, p)| *p)
                })
            })
    }

    /// USD for a cloud call served on `tier`: flex processing bills half the standard rates.
    pub fn cloud_cost_on(&self, model: &str, usage: &Usage, tier: Option<&str>) -> Option<f64> {
        let cost = self.cloud_cost(model, usage)?;
        Some(if tier == Some("flex") {
            cost * FLEX_RATE
        } else {
            cost
        })
    }

    /// USD for a cloud call; `None` when the model has no known price (said once per model).
    pub fn cloud_cost(&self, model: &str, usage: &Usage) -> Option<f64> {
        let price = self.price(model);
        if price.is_none() {
            static WARNED: std::sync::Mutex<std::collections::BTreeSet<String>> =
                std::sync::Mutex::new(std::collections::BTreeSet::new());
            if WARNED
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .insert(model.to_owned())
            {
                tracing::warn!(model, "no price known for `{model}`: its calls' cost is recorded as unknown\nhint: add [prices.\"{model}\"] with input, cached_input and output (USD per million tokens) to hybrid.toml");
            }
        }
        price.map(|p| p.cost(usage))
    }
}

/// Counts tokens as the GPT models do (o200k), for dry-run estimates.
pub fn count_tokens(text: &str) -> u64 {
    use std::sync::OnceLock;
    static BPE: OnceLock<Option<tiktoken_rs::CoreBPE>> = OnceLock::new();
    match BPE.get_or_init(|| tiktoken_rs::o200k_base().ok()) {
        Some(bpe) => bpe.encode_with_special_tokens(text).len() as u64,
        // Should the tokenizer fail to load, a rough 4-characters-a-token estimate.
        None => (text.chars().count() as u64).div_ceil(4),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn usage(prompt: u64, cached: u64, completion: u64) -> Usage {
        Usage {
            prompt_tokens: prompt,
            completion_tokens: completion,
            cached_tokens: cached,
            ..Usage::default()
        }
    }

    #[test]
    fn gpt_5_4_prices_input_cached_and_output() {
        // 200K uncached in + 1M out = 0.50 + 15.00 (under the long-context threshold)
        assert!((GPT_5_4.cost(&usage(200_000, 0, 1_000_000)) - 15.5).abs() < 1e-9);
        // 1000 prompt of which 400 cached, 200 out
        let c = GPT_5_4.cost(&usage(1000, 400, 200));
        let expected = (600.0 * 2.5 + 400.0 * 0.25 + 200.0 * 15.0) / 1e6;
        assert!((c - expected).abs() < 1e-12, "{c} {expected}");
    }

    #[test]
    fn long_prompts_pay_the_surcharge() {
        let c = GPT_5_4.cost(&usage(300_000, 0, 1000));
        let expected = (300_000.0 * 5.0 + 1000.0 * 22.5) / 1e6;
        assert!((c - expected).abs() < 1e-9);
    }

    #[test]
    fn snapshots_price_as_their_family() {
        let p = Pricing::default();
        assert_eq!(p.price("gpt-5.4-2026-03-05"), Some(GPT_5_4));
        assert_eq!(p.price("some-other-model"), None);
    }

    #[test]
    fn models_are_priced_by_exact_id_never_by_a_neighbour() {
        let mut p = Pricing::default();
        assert_eq!(p.price("gpt-5.4-mini"), Some(GPT_5_4_MINI));
        assert_eq!(p.price("gpt-5.4-mini-2026-03-17"), Some(GPT_5_4_MINI));
        assert_eq!(p.price("gpt-5.4-nano"), Some(GPT_5_4_NANO));
        // Not a snapshot of gpt-5.4, and nobody priced it.
        assert_eq!(p.price("gpt-5.4-pro"), None);
        assert_eq!(p.price("gpt-5.4o"), None);
        assert_eq!(p.cloud_cost("gpt-5.4-pro", &usage(10, 0, 10)), None);
        // A configured price wins over the shipped one, and covers its snapshots.
        let mine = Price {
            input: 1.0,
            ..GPT_5_4
        };
        p.prices.insert("gpt-5.4".into(), mine);
        assert_eq!(p.price("gpt-5.4"), Some(mine));
        assert_eq!(p.price("gpt-5.4-2026-03-05"), Some(mine));
        assert_eq!(p.price("gpt-5.4-mini"), Some(GPT_5_4_MINI));
    }

    #[test]
    fn local_cost_amortizes_the_month() {
        let l = LocalCost {
            monthly_usd: Some(720.0),
            ..LocalCost::default()
        };
        assert!((l.call_cost(3_600_000) - 1.0).abs() < 1e-9);
        assert_eq!(l.monthly_fixed(), 720.0);
    }

    #[test]
    fn token_counts_are_gpt_like() {
        let n = count_tokens("The quick brown fox jumps over the lazy dog.");
        assert!((8..=12).contains(&n), "{n}");
    }
}
