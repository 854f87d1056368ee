//! What a rule change did: `hybrid diff OLD.jsonl NEW.jsonl` compares the records of two runs
//! over the same documents, document by document (which results changed, and how) and in
//! total (decisions, escalation, cloud calls, spend now and projected per month).
//!
//! Results are compared as JSON leaves (`decision`, `risk/overall_risk`, ...), so any pipeline
//! can be diffed; a result's `decision` field, the convention of the shipped pipelines, is
//! also counted by value.

use std::collections::BTreeMap;
use std::io::BufRead;
use std::path::{Path, PathBuf};

use serde::Serialize;
use serde_json::Value;

use crate::cost::Pricing;
use crate::report::{Report, ReportError};

/// One field of a result that differs.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct FieldChange {
    /// `/`-separated path into the result (`""` for the result itself).
    pub path: String,
    pub old: Value,
    pub new: Value,
}

/// One document whose outcome changed.
#[derive(Debug, Clone, Serialize)]
pub struct DocChange {
    pub id: String,
    /// `ok → failed`, `failed → ok`, or `changed`.
    pub how: String,
    pub fields: Vec<FieldChange>,
}

/// One side's totals.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Side {
    pub documents: u64,
    pub failed: u64,
    /// `result.decision` values and how many documents had each.
    pub decisions: BTreeMap<String, u64>,
    pub escalation_rate: f64,
    pub cloud_calls: u64,
    pub cloud_usd: f64,
    pub projected_usd_per_month: f64,
}

/// Everything `hybrid diff` says.
#[derive(Debug, Clone, Serialize)]
pub struct Diff {
    pub old: Side,
    pub new: Side,
    pub in_both: u64,
    pub only_old: Vec<String>,
    pub only_new: Vec<String>,
    pub changed: Vec<DocChange>,
    pub newly_failing: Vec<String>,
    pub documents_per_day: f64,
}

fn records(path: &Path) -> Result<BTreeMap<String, Value>, ReportError> {
    let read = |source| ReportError::Read {
        path: path.to_owned(),
        source,
    };
    let file = std::fs::File::open(path).map_err(read)?;
    let mut out = BTreeMap::new();
    for line in std::io::BufReader::new(file).lines() {
        let line = line.map_err(read)?;
        let Ok(record) = serde_json::from_str::<Value>(&line) else {
            continue;
        };
        // A resumed file may hold a document twice: its latest record counts.
        if let Some(id) = record["id"].as_str() {
            out.insert(id.to_owned(), record);
        }
    }
    Ok(out)
}

fn side(report: &Report, records: &BTreeMap<String, Value>) -> Side {
    let mut decisions = BTreeMap::new();
    for record in records.values() {
        if let Some(d) = record["result"]["decision"].as_str() {
            *decisions.entry(d.to_owned()).or_insert(0) += 1;
        }
    }
    Side {
        documents: report.documents,
        failed: report.failed,
        decisions,
        escalation_rate: report.escalation_rate,
        cloud_calls: report
            .groups
            .iter()
            .filter(|g| g.function == "cloud")
            .map(|g| g.calls)
            .sum(),
        cloud_usd: report.cloud_usd,
        projected_usd_per_month: report.projection.hybrid_cloud_usd_per_month,
    }
}

/// The leaves of `value` by path, arrays compared whole (an item list is one value).
fn leaves(value: &Value, path: String, out: &mut BTreeMap<String, Value>) {
    match value {
        Value::Object(map) if !map.is_empty() => {
            for (k, v) in map {
                let p = if path.is_empty() {
                    k.clone()
                } else {
                    format!("{path}/{k}")
                };
                leaves(v, p, out);
            }
        }
        other => {
            out.insert(path, other.clone());
        }
    }
}

fn field_changes(old: &Value, new: &Value) -> Vec<FieldChange> {
    let (mut a, mut b) = (BTreeMap::new(), BTreeMap::new());
    leaves(old, String::new(), &mut a);
    leaves(new, String::new(), &mut b);
    let mut paths: Vec<&String> = a.keys().chain(b.keys()).collect();
    paths.sort();
    paths.dedup();
    paths
        .into_iter()
        .filter_map(|p| {
            let (o, n) = (
                a.get(p).cloned().unwrap_or(Value::Null),
                b.get(p).cloned().unwrap_or(Value::Null),
            );
            (o != n).then(|| FieldChange {
                path: p.clone(),
                old: o,
                new: n,
            })
        })
        .collect()
}

/// Compares the records in `old` and `new`; `volume` is documents per day for the projection.
pub fn diff(old: &Path, new: &Path, pricing: &Pricing, volume: f64) -> Result<Diff, ReportError> {
    let (a, b) = (records(old)?, records(new)?);
    let report = |p: &Path| crate::report::build(&[PathBuf::from(p)], pricing, Some(volume));
    let (ra, rb) = (report(old)?, report(new)?);
    let mut changed = Vec::new();
    let mut newly_failing = Vec::new();
    let mut in_both = 0;
    for (id, before) in &a {
        let Some(after) = b.get(id) else { continue };
        in_both += 1;
        let (was_ok, is_ok) = (before["ok"] == true, after["ok"] == true);
        let how = match (was_ok, is_ok) {
            (true, false) => {
                newly_failing.push(id.clone());
                "ok → failed"
            }
            (false, true) => "failed → ok",
            _ => "changed",
        };
        let fields = if was_ok && is_ok {
            field_changes(&before["result"], &after["result"])
        } else if !was_ok && !is_ok {
            field_changes(&before["error"]["kind"], &after["error"]["kind"])
        } else {
            Vec::new()
        };
        if was_ok != is_ok || !fields.is_empty() {
            changed.push(DocChange {
                id: id.clone(),
                how: how.into(),
                fields,
            });
        }
    }
    Ok(Diff {
        old: side(&ra, &a),
        new: side(&rb, &b),
        in_both,
        only_old: a.keys().filter(|k| !b.contains_key(*k)).cloned().collect(),
        only_new: b.keys().filter(|k| !a.contains_key(*k)).cloned().collect(),
        changed,
        newly_failing,
        documents_per_day: volume,
    })
}

/// The diff for a person.
pub fn render_text(d: &Diff, old: &Path, new: &Path) -> String {
    use std::fmt::Write;
    let mut s = String::new();
    let pct = |x: f64| format!("{:.1}%", x * 100.0);
    let _ = writeln!(s, "hybrid diff: {} → {}", old.display(), new.display());
    let _ = writeln!(
        s,
        "documents        {} in both, {} only in the old run, {} only in the new",
        d.in_both,
        d.only_old.len(),
        d.only_new.len()
    );
    let share = if d.in_both > 0 {
        d.changed.len() as f64 / d.in_both as f64
    } else {
        0.0
    };
    let _ = writeln!(s, "changed          {} ({})", d.changed.len(), pct(share));
    let _ = writeln!(s, "newly failing    {}", d.newly_failing.len());
    let mut names: Vec<&String> = d
        .old
        .decisions
        .keys()
        .chain(d.new.decisions.keys())
        .collect();
    names.sort();
    names.dedup();
    if !names.is_empty() {
        let shown: Vec<String> = names
            .iter()
            .map(|n| {
                format!(
                    "{n} {} → {}",
                    d.old.decisions.get(*n).unwrap_or(&0),
                    d.new.decisions.get(*n).unwrap_or(&0)
                )
            })
            .collect();
        let _ = writeln!(s, "decisions        {}", shown.join(", "));
    }
    let _ = writeln!(
        s,
        "escalation rate  {} → {}",
        pct(d.old.escalation_rate),
        pct(d.new.escalation_rate)
    );
    let _ = writeln!(
        s,
        "cloud calls      {} → {}",
        d.old.cloud_calls, d.new.cloud_calls
    );
    let _ = writeln!(
        s,
        "cloud spend      USD {:.4} → {:.4}",
        d.old.cloud_usd, d.new.cloud_usd
    );
    let _ = writeln!(
        s,
        "projected        USD {:.2} → {:.2} a month of cloud at {:.0} documents/day",
        d.old.projected_usd_per_month, d.new.projected_usd_per_month, d.documents_per_day
    );
    if !d.changed.is_empty() {
        let _ = writeln!(s, "\nchanged documents (--ids lists them all)");
        for c in d.changed.iter().take(20) {
            let fields: Vec<String> = c
                .fields
                .iter()
                .take(4)
                .map(|f| {
                    let path = if f.path.is_empty() { "result" } else { &f.path };
                    format!("{path}: {} → {}", f.old, f.new)
                })
                .collect();
            let more = c.fields.len().saturating_sub(4);
            let _ = writeln!(
                s,
                "  {}  {}{}{}",
                c.id,
                if c.how == "changed" {
                    String::new()
                } else {
                    format!("{} ", c.how)
                },
                fields.join("; "),
                if more > 0 {
                    format!(" (+{more} more)")
                } else {
                    String::new()
                }
            );
        }
        if d.changed.len() > 20 {
            let _ = writeln!(s, "  ... and {} more", d.changed.len() - 20);
        }
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn results_are_compared_leaf_by_leaf_with_lists_whole() {
        let old = json!({"decision": "cloud", "risk": {"level": "high"}, "reasons": ["a", "b"]});
        let new = json!({"decision": "local", "risk": {"level": "high"}, "reasons": ["a"]});
        let changes = field_changes(&old, &new);
        let paths: Vec<&str> = changes.iter().map(|c| c.path.as_str()).collect();
        assert_eq!(paths, ["decision", "reasons"]);
        assert_eq!(changes[0].old, "cloud");
        assert!(field_changes(&old, &old).is_empty());
    }
}
