//! `hybrid report`: what a run (or a set of runs) did and cost, and what it would cost at
//! volume — cloud only versus hybrid, and the volume at which the local hardware pays for
//! itself.
//!
//! Actual figures come from the call records (each carries its tokens and cost); the
//! projection prices the local model's tokens at the cloud model's rates to answer "what if
//! all of this had gone to the cloud".

use std::collections::BTreeMap;
use std::io::BufRead;
use std::path::{Path, PathBuf};

use serde::Serialize;
use serde_json::Value;

use crate::cost::Pricing;
use crate::models::Usage;

#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    #[error("cannot read results `{path}`: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("no result records in {files}\nhint: pass the JSONL files `hybrid run --out` wrote")]
    Empty { files: String },
    #[error("cannot write the chart `{path}`: {source}")]
    Chart {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// Calls grouped by function and model.
#[derive(Debug, Default, Clone, Serialize)]
pub struct CallGroup {
    pub function: String,
    pub model: String,
    pub calls: u64,
    pub failed: u64,
    pub prompt_tokens: u64,
    pub completion_tokens: u64,
    pub cached_tokens: u64,
    pub cost_usd: f64,
    /// Calls whose cost is an estimate (dry-run).
    pub estimated: u64,
}

#[derive(Debug, Default, Clone, Serialize)]
pub struct Projection {
    /// Documents per day the projection is for.
    pub documents_per_day: f64,
    pub cloud_only_usd_per_day: f64,
    pub cloud_only_usd_per_month: f64,
    pub hybrid_cloud_usd_per_month: f64,
    pub hybrid_local_usd_per_month: f64,
    pub hybrid_total_usd_per_month: f64,
    /// The fixed part of the local cost: hardware amortization or rent.
    pub hardware_usd_per_month: f64,
    pub savings_usd_per_month: f64,
    /// Documents per day above which the local hardware pays for itself; `None` when it
    /// never does at these prices.
    pub break_even_documents_per_day: Option<f64>,
}

/// Everything `hybrid report` says.
#[derive(Debug, Default, Clone, Serialize)]
pub struct Report {
    pub files: Vec<String>,
    pub documents: u64,
    pub ok: u64,
    pub failed: u64,
    pub skipped_lines: u64,
    pub versions: Vec<String>,
    pub groups: Vec<CallGroup>,
    pub local_share_calls: f64,
    pub local_share_tokens: f64,
    pub cloud_usd: f64,
    pub local_usd: f64,
    pub currency: String,
    pub cloud_local_currency: f64,
    pub cost_per_document_usd: f64,
    pub escalated_documents: u64,
    pub escalation_rate: f64,
    /// Cloud prompt tokens, and how many of them the provider's prompt cache served.
    pub cloud_prompt_tokens: u64,
    pub cloud_cached_tokens: u64,
    pub cache_hit_rate: f64,
    /// What the cached tokens saved against the full input price.
    pub cache_saved_usd: f64,
    pub blocked_calls: u64,
    /// Documents whose result carries a `divergent` flag (pipelines that compare local and
    /// cloud answers), and those where it is true.
    pub divergent_documents: u64,
    pub compared_documents: u64,
    pub divergence_rate: f64,
    /// Divergent documents per field (`result.divergent_fields`).
    pub divergence_by_field: BTreeMap<String, u64>,
    /// Per category (`result.category`): [compared, divergent].
    pub divergence_by_category: BTreeMap<String, [u64; 2]>,
    pub projection: Projection,
}

/// Reads result files and summarises them. `volume` is documents per day for the
/// projection (default: 1,000).
pub fn build(
    files: &[PathBuf],
    pricing: &Pricing,
    volume: Option<f64>,
) -> Result<Report, ReportError> {
    let mut r = Report {
        files: files.iter().map(|f| f.display().to_string()).collect(),
        currency: pricing.currency.code.clone(),
        ..Report::default()
    };
    let mut groups: BTreeMap<(String, String), CallGroup> = BTreeMap::new();
    let mut versions = std::collections::BTreeSet::new();
    // Tokens the local model handled, to price "what if the cloud had done it".
    let mut local_usage = Usage::default();
    let mut local_ms = 0u64;
    let mut cloud_models: BTreeMap<String, u64> = BTreeMap::new();
    for path in files {
        let file = std::fs::File::open(path).map_err(|source| ReportError::Read {
            path: path.clone(),
            source,
        })?;
        for line in std::io::BufReader::new(file).lines() {
            let line = line.map_err(|source| ReportError::Read {
                path: path.clone(),
                source,
            })?;
            if line.trim().is_empty() {
                continue;
            }
            let Ok(record) = serde_json::from_str::<Value>(&line) else {
                r.skipped_lines += 1;
                continue;
            };
            if record.get("calls").is_none() {
                r.skipped_lines += 1;
                continue;
            }
            r.documents += 1;
            if record["ok"] == true {
                r.ok += 1;
            } else {
                r.failed += 1;
            }
            if let Some(v) = record["version"].as_str() {
                versions.insert(v.to_owned());
            }
            let calls = record["calls"].as_array().cloned().unwrap_or_default();
            let mut used_cloud = false;
            for call in &calls {
                let function = call["function"].as_str().unwrap_or("?").to_owned();
                let model = call["model"].as_str().unwrap_or("?").to_owned();
                let n = |k: &str| call[k].as_u64().unwrap_or(0);
                let g = groups
                    .entry((function.clone(), model.clone()))
                    .or_insert_with(|| CallGroup {
                        function: function.clone(),
                        model: model.clone(),
                        ..CallGroup::default()
                    });
                g.calls += 1;
                if call["ok"] != true {
                    g.failed += 1;
                }
                g.prompt_tokens += n("prompt_tokens");
                g.completion_tokens += n("completion_tokens");
                g.cached_tokens += n("cached_tokens");
                let cost = call["cost_usd"].as_f64().unwrap_or(0.0);
                g.cost_usd += cost;
                if call["dry_run"] == true {
                    g.estimated += 1;
                }
                if function == "local" {
                    r.local_usd += cost;
                    local_usage.prompt_tokens += n("prompt_tokens");
                    local_usage.completion_tokens += n("completion_tokens");
                    local_ms += n("ms");
                } else {
                    if call["error"] == "blocked" {
                        r.blocked_calls += 1;
                    } else {
                        used_cloud = true;
                    }
                    r.cloud_usd += cost;
                    r.cloud_prompt_tokens += n("prompt_tokens");
                    r.cloud_cached_tokens += n("cached_tokens");
                    if let Some(p) = pricing.price(&model) {
                        let cached = p.cached_input.unwrap_or(p.input);
                        r.cache_saved_usd += n("cached_tokens") as f64 * (p.input - cached) / 1e6;
                    }
                    *cloud_models.entry(model).or_default() += 1;
                }
            }
            if used_cloud {
                r.escalated_documents += 1;
            }
            // Pipelines that compare the two models say so with a `divergent` flag.
            if let Some(divergent) = record["result"]["divergent"].as_bool() {
                r.compared_documents += 1;
                let category = record["result"]["category"].as_str().map(str::to_owned);
                if let Some(c) = &category {
                    r.divergence_by_category.entry(c.clone()).or_default()[0] += 1;
                }
                if divergent {
                    r.divergent_documents += 1;
                    if let Some(c) = &category {
                        r.divergence_by_category.entry(c.clone()).or_default()[1] += 1;
                    }
                    for field in record["result"]["divergent_fields"]
                        .as_array()
                        .into_iter()
                        .flatten()
                    {
                        if let Some(f) = field.as_str() {
                            *r.divergence_by_field.entry(f.to_owned()).or_default() += 1;
                        }
                    }
                }
            }
        }
    }
    if r.documents == 0 {
        return Err(ReportError::Empty {
            files: r.files.join(", "),
        });
    }
    r.versions = versions.into_iter().collect();
    r.groups = groups.into_values().collect();
    let total_calls: u64 = r.groups.iter().map(|g| g.calls).sum();
    let local_calls: u64 = r
        .groups
        .iter()
        .filter(|g| g.function == "local")
        .map(|g| g.calls)
        .sum();
    let tokens = |g: &CallGroup| g.prompt_tokens + g.completion_tokens;
    let total_tokens: u64 = r.groups.iter().map(tokens).sum();
    let local_tokens: u64 = r
        .groups
        .iter()
        .filter(|g| g.function == "local")
        .map(tokens)
        .sum();
    r.local_share_calls = ratio(local_calls, total_calls);
    r.local_share_tokens = ratio(local_tokens, total_tokens);
    r.cloud_local_currency = r.cloud_usd * pricing.currency.per_usd;
    let docs = r.documents as f64;
    r.cost_per_document_usd = (r.cloud_usd + r.local_usd) / docs;
    r.escalation_rate = ratio(r.escalated_documents, r.documents);
    r.cache_hit_rate = ratio(r.cloud_cached_tokens, r.cloud_prompt_tokens);
    r.divergence_rate = ratio(r.divergent_documents, r.compared_documents);

    // Price the local work as if the cloud model had done it.
    let cloud_model = cloud_models
        .iter()
        .max_by_key(|(_, n)| **n)
        .map_or("gpt-5.4", |(m, _)| m.as_str());
    let price = pricing.price(cloud_model).unwrap_or(crate::cost::GPT_5_4);
    let local_at_cloud_prices = price.cost(&local_usage);
    let cloud_per_doc = r.cloud_usd / docs;
    let cloud_only_per_doc = cloud_per_doc + local_at_cloud_prices / docs;
    // Only energy grows with volume; the hardware is paid monthly whatever the volume.
    let energy_per_doc = pricing.local.energy(local_ms) / docs;
    let hardware = pricing.local.monthly_fixed();
    let per_day = volume.unwrap_or(1000.0);
    let month = 30.0;
    let p = &mut r.projection;
    p.documents_per_day = per_day;
    p.cloud_only_usd_per_day = cloud_only_per_doc * per_day;
    p.cloud_only_usd_per_month = p.cloud_only_usd_per_day * month;
    p.hybrid_cloud_usd_per_month = cloud_per_doc * per_day * month;
    p.hardware_usd_per_month = hardware;
    p.hybrid_local_usd_per_month = hardware + energy_per_doc * per_day * month;
    p.hybrid_total_usd_per_month = p.hybrid_cloud_usd_per_month + p.hybrid_local_usd_per_month;
    p.savings_usd_per_month = p.cloud_only_usd_per_month - p.hybrid_total_usd_per_month;
    let saving_per_doc = cloud_only_per_doc - cloud_per_doc - energy_per_doc;
    p.break_even_documents_per_day =
        (saving_per_doc > 0.0).then(|| hardware / month / saving_per_doc);
    Ok(r)
}

fn ratio(a: u64, b: u64) -> f64 {
    if b == 0 {
        0.0
    } else {
        a as f64 / b as f64
    }
}

/// The report for people.
pub fn render_text(r: &Report, pricing: &Pricing) -> String {
    use std::fmt::Write;
    let mut s = String::new();
    let cur = &r.currency;
    let local = |usd: f64| {
        if cur == "USD" {
            String::new()
        } else {
            format!(" ({} {})", money(usd * pricing.currency.per_usd), cur)
        }
    };
    let _ = writeln!(s, "hybrid report: {}", r.files.join(", "));
    let _ = writeln!(
        s,
        "  documents        {} ({} ok, {} failed){}",
        r.documents,
        r.ok,
        r.failed,
        if r.skipped_lines > 0 {
            format!("; {} lines skipped (not records)", r.skipped_lines)
        } else {
            String::new()
        }
    );
    let _ = writeln!(s, "  rules versions   {}", r.versions.join(", "));
    let _ = writeln!(s, "\ncalls by function and model");
    let _ = writeln!(
        s,
        "  {:<8} {:<28} {:>7} {:>7} {:>12} {:>12} {:>11}",
        "function", "model", "calls", "failed", "prompt tok", "output tok", "cost USD"
    );
    for g in &r.groups {
        let _ = writeln!(
            s,
            "  {:<8} {:<28} {:>7} {:>7} {:>12} {:>12} {:>11}{}",
            g.function,
            truncate(&g.model, 28),
            g.calls,
            g.failed,
            g.prompt_tokens,
            g.completion_tokens,
            format!("{:.4}", g.cost_usd),
            if g.estimated > 0 { " (estimated)" } else { "" }
        );
    }
    let _ = writeln!(
        s,
        "\nlocal share      {:.1}% of calls, {:.1}% of tokens",
        r.local_share_calls * 100.0,
        r.local_share_tokens * 100.0
    );
    let _ = writeln!(
        s,
        "cloud spend      USD {:.4}{}",
        r.cloud_usd,
        local(r.cloud_usd)
    );
    if r.cloud_prompt_tokens > 0 {
        let _ = writeln!(
            s,
            "prompt cache     {:.1}% of cloud prompt tokens served from cache, saving USD {:.4}{}",
            r.cache_hit_rate * 100.0,
            r.cache_saved_usd,
            local(r.cache_saved_usd)
        );
    }
    if r.local_usd > 0.0 {
        let _ = writeln!(
            s,
            "local cost       USD {:.4}{}",
            r.local_usd,
            local(r.local_usd)
        );
    }
    let _ = writeln!(
        s,
        "cost / document  USD {:.6}{}",
        r.cost_per_document_usd,
        local(r.cost_per_document_usd)
    );
    let _ = writeln!(
        s,
        "escalated        {} of {} documents ({:.1}%)",
        r.escalated_documents,
        r.documents,
        r.escalation_rate * 100.0
    );
    if r.blocked_calls > 0 {
        let _ = writeln!(
            s,
            "blocked          {} cloud calls stopped by the egress guard",
            r.blocked_calls
        );
    }
    if r.compared_documents > 0 {
        let _ = writeln!(
            s,
            "divergent        {} of {} compared documents ({:.1}%)",
            r.divergent_documents,
            r.compared_documents,
            r.divergence_rate * 100.0
        );
        for (field, n) in &r.divergence_by_field {
            let _ = writeln!(
                s,
                "  by field       {field}: {n} ({:.1}%)",
                *n as f64 * 100.0 / r.compared_documents as f64
            );
        }
        for (category, [compared, divergent]) in &r.divergence_by_category {
            let _ = writeln!(
                s,
                "  by category    {category}: {divergent} of {compared} ({:.1}%)",
                *divergent as f64 * 100.0 / *compared as f64
            );
        }
    }
    let p = &r.projection;
    let _ = writeln!(
        s,
        "\nprojection at {} documents/day (30-day month)",
        p.documents_per_day
    );
    let _ = writeln!(
        s,
        "  cloud only       USD {:>12}/month{}",
        money(p.cloud_only_usd_per_month),
        local(p.cloud_only_usd_per_month)
    );
    let _ = writeln!(
        s,
        "  hybrid           USD {:>12}/month{}  = cloud {} + local {}",
        money(p.hybrid_total_usd_per_month),
        local(p.hybrid_total_usd_per_month),
        money(p.hybrid_cloud_usd_per_month),
        money(p.hybrid_local_usd_per_month)
    );
    let _ = writeln!(
        s,
        "  saving           USD {:>12}/month{}",
        money(p.savings_usd_per_month),
        local(p.savings_usd_per_month)
    );
    match (
        p.break_even_documents_per_day,
        pricing.local.monthly_fixed() > 0.0,
    ) {
        (_, false) => {
            let _ = writeln!(s, "  break-even       set [local_cost] monthly_usd (or hourly_usd) in hybrid.toml to see when local hardware pays for itself");
        }
        (Some(n), true) => {
            let _ = writeln!(
                s,
                "  break-even       the local hardware pays for itself above {:.0} documents/day",
                n.ceil()
            );
        }
        (None, true) => {
            let _ = writeln!(s, "  break-even       never at these prices: the local model saves nothing per document");
        }
    }
    s
}

fn money(x: f64) -> String {
    let neg = x < 0.0;
    let cents = (x.abs() * 100.0).round() as u128;
    let whole = (cents / 100).to_string();
    let mut grouped = String::new();
    for (i, c) in whole.chars().enumerate() {
        if i > 0 && (whole.len() - i) % 3 == 0 {
            grouped.push(',');
        }
        grouped.push(c);
    }
    format!("{}{grouped}.{:02}", if neg { "-" } else { "" }, cents % 100)
}

fn truncate(s: &str, n: usize) -> String {
    if s.chars().count() <= n {
        s.to_owned()
    } else {
        format!(
            "…{}",
            s.chars()
                .rev()
                .take(n - 1)
                .collect::<Vec<_>>()
                .into_iter()
                .rev()
                .collect::<String>()
        )
    }
}

/// An SVG chart of monthly spend against daily volume: cloud only versus hybrid (hardware +
/// cloud), with the break-even point marked.
pub fn write_chart(r: &Report, path: &Path) -> Result<(), ReportError> {
    let p = &r.projection;
    let per_doc_cloud_only = if p.documents_per_day > 0.0 {
        p.cloud_only_usd_per_month / p.documents_per_day
    } else {
        0.0
    };
    let fixed = p.hardware_usd_per_month;
    let per_doc_hybrid = if p.documents_per_day > 0.0 {
        (p.hybrid_total_usd_per_month - fixed) / p.documents_per_day
    } else {
        0.0
    };
    let x_max = (p.break_even_documents_per_day.unwrap_or(0.0) * 2.0)
        .max(p.documents_per_day * 2.0)
        .max(10.0);
    let y_at = |slope: f64, intercept: f64, x: f64| intercept + slope * x;
    let y_max = [
        y_at(per_doc_cloud_only, 0.0, x_max),
        y_at(per_doc_hybrid, fixed, x_max),
    ]
    .into_iter()
    .fold(1.0_f64, f64::max)
        * 1.1;
    let (w, h, left, bottom) = (720.0, 420.0, 96.0, 50.0);
    let sx = |x: f64| left + x / x_max * (w - left - 20.0);
    let sy = |y: f64| h - bottom - y / y_max * (h - bottom - 30.0);
    let line = |slope: f64, intercept: f64, color: &str, label: &str| {
        format!(
            "<line x1=\"{:.1}\" y1=\"{:.1}\" x2=\"{:.1}\" y2=\"{:.1}\" stroke=\"{color}\" stroke-width=\"2.5\"/>\n<text x=\"{:.1}\" y=\"{:.1}\" fill=\"{color}\" font-size=\"13\" text-anchor=\"end\">{label}</text>\n",
            sx(0.0), sy(y_at(slope, intercept, 0.0)), sx(x_max), sy(y_at(slope, intercept, x_max)),
            sx(x_max) - 4.0, sy(y_at(slope, intercept, x_max)) - 8.0
        )
    };
    let mut svg = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{w}\" height=\"{h}\" font-family=\"sans-serif\">\n<rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n<text x=\"{left}\" y=\"20\" font-size=\"15\">Monthly spend (USD) by daily volume — cloud only vs hybrid</text>\n"
    );
    svg += &format!(
        "<line x1=\"{left}\" y1=\"{:.1}\" x2=\"{:.1}\" y2=\"{:.1}\" stroke=\"#444\"/>\n",
        sy(0.0),
        sx(x_max),
        sy(0.0)
    );
    svg += &format!(
        "<line x1=\"{left}\" y1=\"{:.1}\" x2=\"{left}\" y2=\"30\" stroke=\"#444\"/>\n",
        sy(0.0)
    );
    for i in 0..=4 {
        let x = x_max * i as f64 / 4.0;
        let y = y_max * i as f64 / 4.0;
        svg += &format!(
            "<text x=\"{:.1}\" y=\"{:.1}\" font-size=\"11\" text-anchor=\"middle\">{:.0}</text>\n",
            sx(x),
            h - bottom + 16.0,
            x
        );
        svg += &format!(
            "<text x=\"{:.1}\" y=\"{:.1}\" font-size=\"11\" text-anchor=\"end\">{}</text>\n",
            left - 6.0,
            sy(y) + 4.0,
            money(y)
        );
    }
    svg += &format!("<text x=\"{:.1}\" y=\"{:.1}\" font-size=\"12\" text-anchor=\"middle\">documents per day</text>\n", sx(x_max / 2.0), h - 10.0);
    svg += &line(per_doc_cloud_only, 0.0, "#c0392b", "cloud only");
    svg += &line(
        per_doc_hybrid,
        fixed,
        "#1e8449",
        "hybrid (hardware + cloud)",
    );
    if let Some(be) = p.break_even_documents_per_day.filter(|b| *b <= x_max) {
        svg += &format!(
            "<line x1=\"{0:.1}\" y1=\"{1:.1}\" x2=\"{0:.1}\" y2=\"30\" stroke=\"#555\" stroke-dasharray=\"4 4\"/>\n<text x=\"{2:.1}\" y=\"44\" font-size=\"12\">break-even ≈ {3:.0}/day</text>\n",
            sx(be), sy(0.0), sx(be) + 4.0, be.ceil()
        );
    }
    svg += "</svg>\n";
    std::fs::write(path, svg).map_err(|source| ReportError::Chart {
        path: path.to_owned(),
        source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn money_groups_thousands() {
        assert_eq!(money(1234567.891), "1,234,567.89");
        assert_eq!(money(0.5), "0.50");
        assert_eq!(money(-12.0), "-12.00");
    }
}

/// One rules version as seen in result files: `hybrid versions`.
#[derive(Debug, Clone, Serialize)]
pub struct VersionRow {
    pub version: String,
    /// When its first and last documents finished (empty for records older than `at`).
    pub first: String,
    pub last: String,
    pub documents: u64,
    pub failed: u64,
}

/// The versions in `files`, in the order they first appear, with their documents and failures.
pub fn versions(files: &[PathBuf]) -> Result<Vec<VersionRow>, ReportError> {
    let mut rows: Vec<VersionRow> = Vec::new();
    for path in files {
        let file = std::fs::File::open(path).map_err(|source| ReportError::Read {
            path: path.clone(),
            source,
        })?;
        for line in std::io::BufReader::new(file).lines().map_while(Result::ok) {
            let Ok(record) = serde_json::from_str::<Value>(&line) else {
                continue;
            };
            let Some(version) = record["version"].as_str() else {
                continue;
            };
            let at = record["at"].as_str().unwrap_or("").to_owned();
            let row = match rows.iter_mut().position(|r| r.version == version) {
                Some(i) => &mut rows[i],
                None => {
                    rows.push(VersionRow {
                        version: version.to_owned(),
                        first: at.clone(),
                        last: at.clone(),
                        documents: 0,
                        failed: 0,
                    });
                    rows.last_mut().expect("just pushed")
                }
            };
            row.documents += 1;
            if record["ok"] != true {
                row.failed += 1;
            }
            if !at.is_empty() {
                if row.first.is_empty() || at < row.first {
                    row.first = at.clone();
                }
                if at > row.last {
                    row.last = at;
                }
            }
        }
    }
    Ok(rows)
}
