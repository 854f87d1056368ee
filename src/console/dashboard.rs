//! The dashboard's numbers: the report's, from the results file as it grows, plus what a
//! page needs to draw (documents per minute over the last hour, failures by kind, spend
//! today and projected per month in dollars and the local currency, the rules versions
//! over time with their reloads and rollbacks).

use std::collections::BTreeMap;
use std::io::BufRead;
use std::path::PathBuf;

use serde_json::{json, Value};

use crate::cost::Pricing;

/// Everything the dashboard shows, as JSON.
pub fn summary(files: &[PathBuf], pricing: &Pricing) -> Value {
    let report = crate::report::build(files, pricing, None).unwrap_or_default();
    let now = chrono::Utc::now();
    let today = now.format("%Y-%m-%d").to_string();
    let mut per_minute = [0u64; 60];
    let mut failures: BTreeMap<String, u64> = BTreeMap::new();
    let mut spend_today = 0.0;
    let mut spend_day = 0.0;
    // Versions in the order documents met them: a change is a reload, a return to a version
    // already seen a rollback (or a revert).
    let mut timeline: Vec<(String, String)> = Vec::new();
    let (mut reloads, mut rollbacks) = (0u64, 0u64);
    for path in files {
        let Ok(file) = std::fs::File::open(path) else {
            continue;
        };
        for line in std::io::BufReader::new(file).lines().map_while(Result::ok) {
            let Ok(r) = serde_json::from_str::<Value>(&line) else {
                continue;
            };
            let at = r["at"].as_str().unwrap_or("");
            let when = chrono::DateTime::parse_from_rfc3339(at)
                .ok()
                .map(|t| t.with_timezone(&chrono::Utc));
            if let Some(t) = when {
                let ago = (now - t).num_minutes();
                if (0..60).contains(&ago) {
                    per_minute[59 - ago as usize] += 1;
                }
            }
            if r["ok"] == false {
                let kind = r["error"]["kind"].as_str().unwrap_or("?").to_owned();
                *failures.entry(kind).or_default() += 1;
            }
            let cost: f64 = r["calls"]
                .as_array()
                .map(|calls| {
                    calls
                        .iter()
                        .filter(|c| {
                            c["function"] == "cloud" && c["cached"] != true && c["dry_run"] != true
                        })
                        .filter_map(|c| c["cost_usd"].as_f64())
                        .sum()
                })
                .unwrap_or(0.0);
            if at.starts_with(&today) {
                spend_today += cost;
            }
            if when.is_some_and(|t| (now - t).num_hours() < 24) {
                spend_day += cost;
            }
            let version = r["version"].as_str().unwrap_or("").to_owned();
            if timeline.last().map(|(v, _)| v) != Some(&version) {
                if !timeline.is_empty() {
                    reloads += 1;
                    if timeline.iter().any(|(v, _)| *v == version) {
                        rollbacks += 1;
                    }
                }
                timeline.push((version, at.to_owned()));
            }
        }
    }
    let rate = pricing.currency.per_usd;
    json!({
        "files": report.files,
        "documents": report.documents,
        "ok": report.ok,
        "failed": report.failed,
        "per_minute": per_minute.to_vec(),
        "documents_last_minute": per_minute[59],
        "local_share": report.local_share_calls,
        "escalation_rate": report.escalation_rate,
        "divergence_rate": report.divergence_rate,
        "cloud_usd": report.cloud_usd,
        "spend_today_usd": spend_today,
        "projected_month_usd": spend_day * 30.0,
        "currency": pricing.currency.code,
        "spend_today_local": spend_today * rate,
        "projected_month_local": spend_day * 30.0 * rate,
        "failures": failures,
        "versions": timeline
            .iter()
            .map(|(v, at)| json!({"version": v, "from": at}))
            .collect::<Vec<_>>(),
        "reloads": reloads,
        "rollbacks": rollbacks,
    })
}
