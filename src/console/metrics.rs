//! What a running host counts, for Prometheus: documents, model calls, tokens, spend,
//! latency, the egress guard's work, rules versions and reloads, queue and inbox depth.
//!
//! One process-wide set ([`global`]), fed from where things happen: each record as it is
//! written ([`Metrics::observe`]), each reload as it is decided, the runner's in-flight
//! count. Names follow Prometheus conventions (`hybrid_` prefix, units in names, `_total`
//! counters) and every label has a bounded set of values: never a document id, and
//! script-chosen values (decisions) are capped.

use std::collections::HashSet;
use std::sync::atomic::{AtomicI64, AtomicU64};
use std::sync::{Mutex, OnceLock};

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::{Registry, Unit};

use crate::record::Record;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct DocLabels {
    pub pipeline: String,
    /// `ok` or `failed`.
    pub outcome: String,
    /// The error kind of a failed document (`input`, `script`, `timeout`, ...); empty when ok.
    pub error_kind: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CallLabels {
    /// `local` or `cloud`.
    pub function: String,
    pub backend: String,
    pub model: String,
    /// `ok`, `cached`, or the error kind.
    pub outcome: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct TokenLabels {
    pub function: String,
    /// `prompt`, `cached`, `completion` or `reasoning`.
    pub kind: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct FunctionLabels {
    pub function: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PipelineLabels {
    pub pipeline: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct DecisionLabels {
    pub pipeline: String,
    pub decision: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RuleLabels {
    /// The detector or check: `email`, `cpf`, `overlap`, `image`, ...
    pub rule: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct VersionLabels {
    pub pipeline: String,
    pub version: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReloadLabels {
    /// `swapped`, `rejected` or `rolled_back`.
    pub outcome: String,
}

/// Distinct `decision` values kept as labels; later ones count as `other`.
const MAX_DECISIONS: usize = 16;

pub struct Metrics {
    registry: Registry,
    pub documents: Family<DocLabels, Counter>,
    pub calls: Family<CallLabels, Counter>,
    pub tokens: Family<TokenLabels, Counter>,
    pub spend_usd: Family<FunctionLabels, Counter<f64, AtomicU64>>,
    pub call_seconds: Family<FunctionLabels, Histogram>,
    pub local_share: Gauge<f64, AtomicU64>,
    pub escalations: Family<PipelineLabels, Counter>,
    pub divergences: Family<PipelineLabels, Counter>,
    pub decisions: Family<DecisionLabels, Counter>,
    pub egress_blocked: Family<RuleLabels, Counter>,
    pub egress_redactions: Family<RuleLabels, Counter>,
    pub rules_info: Family<VersionLabels, Gauge>,
    pub reloads: Family<ReloadLabels, Counter>,
    pub in_flight: Gauge<i64, AtomicI64>,
    pub pending: Gauge<i64, AtomicI64>,
    local_calls: AtomicU64,
    all_calls: AtomicU64,
    seen_decisions: Mutex<HashSet<String>>,
    running: Mutex<Option<VersionLabels>>,
    pipeline: Mutex<String>,
}

/// The process's metrics.
pub fn global() -> &'static Metrics {
    static METRICS: OnceLock<Metrics> = OnceLock::new();
    METRICS.get_or_init(Metrics::new)
}

impl Metrics {
    fn new() -> Metrics {
        let mut registry = Registry::with_prefix("hybrid");
        let m = Metrics {
            documents: Family::default(),
            calls: Family::default(),
            tokens: Family::default(),
            spend_usd: Family::default(),
            call_seconds: Family::new_with_constructor(|| {
                Histogram::new(exponential_buckets(0.01, 2.0, 14))
            }),
            local_share: Gauge::default(),
            escalations: Family::default(),
            divergences: Family::default(),
            decisions: Family::default(),
            egress_blocked: Family::default(),
            egress_redactions: Family::default(),
            rules_info: Family::default(),
            reloads: Family::default(),
            in_flight: Gauge::default(),
            pending: Gauge::default(),
            local_calls: AtomicU64::new(0),
            all_calls: AtomicU64::new(0),
            seen_decisions: Mutex::default(),
            running: Mutex::default(),
            pipeline: Mutex::default(),
            registry: Registry::default(),
        };
        registry.register(
            "documents",
            "Documents recorded, by pipeline, outcome and error kind",
            m.documents.clone(),
        );
        registry.register(
            "model_calls",
            "local() and cloud() calls, by back end, model and outcome",
            m.calls.clone(),
        );
        registry.register(
            "model_tokens",
            "Tokens of model calls, by kind (cached: prompt tokens served from the provider's cache)",
            m.tokens.clone(),
        );
        registry.register_with_unit(
            "spend",
            "What model calls cost: cloud tokens at their prices, local time at the hardware rate",
            Unit::Other("usd".into()),
            m.spend_usd.clone(),
        );
        registry.register_with_unit(
            "model_call_duration",
            "Model call latency, retries included",
            Unit::Seconds,
            m.call_seconds.clone(),
        );
        registry.register(
            "local_call_share",
            "Share of model calls answered by the local model, since start (0 to 1)",
            m.local_share.clone(),
        );
        registry.register(
            "escalations",
            "Documents that made at least one cloud() call",
            m.escalations.clone(),
        );
        registry.register(
            "divergences",
            "Documents whose result says the local and cloud answers diverged (`divergent: true`)",
            m.divergences.clone(),
        );
        registry.register(
            "decisions",
            "Documents by the `decision` in their result (at most 16 values; later ones are `other`)",
            m.decisions.clone(),
        );
        registry.register(
            "egress_blocked",
            "Cloud payloads the egress guard stopped",
            m.egress_blocked.clone(),
        );
        registry.register(
            "egress_redactions",
            "Values the egress guard redacted from cloud payloads, by detector",
            m.egress_redactions.clone(),
        );
        registry.register(
            "rules_version_info",
            "The rules version running (1 for the current one)",
            m.rules_info.clone(),
        );
        registry.register(
            "rules_reloads",
            "Rule versions swapped in, rejected, or rolled back",
            m.reloads.clone(),
        );
        registry.register(
            "documents_in_flight",
            "Documents being processed now",
            m.in_flight.clone(),
        );
        registry.register(
            "documents_pending",
            "Documents waiting: inbox files not yet read, or queue messages not yet delivered",
            m.pending.clone(),
        );
        Metrics { registry, ..m }
    }

    /// The metrics in the OpenMetrics text format (which Prometheus scrapes).
    pub fn render(&self) -> String {
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.registry)
            .expect("writing to a String cannot fail");
        out
    }

    /// Names the pipeline this host runs and its first version.
    pub fn start(&self, pipeline: &str, version: &str) {
        *self.pipeline.lock().unwrap_or_else(|e| e.into_inner()) = pipeline.to_owned();
        self.set_version(version);
    }

    /// Says which version runs now (the info metric keeps one series at 1).
    pub fn set_version(&self, version: &str) {
        let labels = VersionLabels {
            pipeline: self
                .pipeline
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .clone(),
            version: version.to_owned(),
        };
        let mut running = self.running.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(old) = running.take() {
            self.rules_info.remove(&old);
        }
        self.rules_info.get_or_create(&labels).set(1);
        *running = Some(labels);
    }

    /// A cloud payload the egress guard stopped, by the rule that stopped it (a detector
    /// name, `verbatim_overlap`, `structured_only`: a fixed set).
    pub fn blocked(&self, rule: &str) {
        self.egress_blocked
            .get_or_create(&RuleLabels { rule: rule.into() })
            .inc();
    }

    pub fn reload(&self, outcome: &str) {
        self.reloads
            .get_or_create(&ReloadLabels {
                outcome: outcome.into(),
            })
            .inc();
    }

    /// Counts one written record: the document, its calls, tokens, cost, latency and what
    /// the guard did.
    pub fn observe(&self, pipeline: &str, record: &Record) {
        use std::sync::atomic::Ordering::Relaxed;
        let error_kind = record
            .error
            .as_ref()
            .map(|e| e.kind.clone())
            .unwrap_or_default();
        self.documents
            .get_or_create(&DocLabels {
                pipeline: pipeline.to_owned(),
                outcome: if record.ok { "ok" } else { "failed" }.into(),
                error_kind,
            })
            .inc();
        let pipe = PipelineLabels {
            pipeline: pipeline.to_owned(),
        };
        if record.calls.iter().any(|c| c.function == "cloud") {
            self.escalations.get_or_create(&pipe).inc();
        }
        if let Some(result) = record.result.as_ref().and_then(|r| r.as_object()) {
            if result.get("divergent") == Some(&serde_json::Value::Bool(true)) {
                self.divergences.get_or_create(&pipe).inc();
            }
            if let Some(decision) = result.get("decision").and_then(|d| d.as_str()) {
                let decision = {
                    let mut seen = self
                        .seen_decisions
                        .lock()
                        .unwrap_or_else(|e| e.into_inner());
                    if seen.contains(decision) || seen.len() < MAX_DECISIONS {
                        seen.insert(decision.to_owned());
                        decision.to_owned()
                    } else {
                        "other".to_owned()
                    }
                };
                self.decisions
                    .get_or_create(&DecisionLabels {
                        pipeline: pipeline.to_owned(),
                        decision,
                    })
                    .inc();
            }
        }
        for call in &record.calls {
            let function = call.function.to_owned();
            let outcome = match (&call.error, call.cached) {
                (Some(kind), _) => kind.clone(),
                (None, true) => "cached".into(),
                (None, false) => "ok".into(),
            };
            self.calls
                .get_or_create(&CallLabels {
                    function: function.clone(),
                    backend: call.backend.clone(),
                    model: call.model.clone(),
                    outcome,
                })
                .inc();
            for (kind, n) in [
                ("prompt", call.usage.prompt_tokens),
                ("cached", call.usage.cached_tokens),
                ("completion", call.usage.completion_tokens),
                ("reasoning", call.usage.reasoning_tokens),
            ] {
                if n > 0 && !call.cached {
                    self.tokens
                        .get_or_create(&TokenLabels {
                            function: function.clone(),
                            kind: kind.into(),
                        })
                        .inc_by(n);
                }
            }
            let f = FunctionLabels {
                function: function.clone(),
            };
            if let Some(cost) = call.cost_usd.filter(|_| !call.cached && !call.dry_run) {
                self.spend_usd.get_or_create(&f).inc_by(cost);
            }
            if !call.cached {
                self.call_seconds
                    .get_or_create(&f)
                    .observe(call.ms as f64 / 1000.0);
            }
            for r in &call.redactions {
                self.egress_redactions
                    .get_or_create(&RuleLabels {
                        rule: r.kind.to_owned(),
                    })
                    .inc_by(r.count as u64);
            }
            let all = self.all_calls.fetch_add(1, Relaxed) + 1;
            let local = if call.function == "local" {
                self.local_calls.fetch_add(1, Relaxed) + 1
            } else {
                self.local_calls.load(Relaxed)
            };
            self.local_share.set(local as f64 / all as f64);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::{CallRecord, RecordError};

    /// A record with one failed local and one redacted cloud call.
    fn record() -> Record {
        let mut local = CallRecord::new("local", "mistralrs", "tiny", None);
        local.ok = true;
        local.ms = 120;
        local.usage.prompt_tokens = 10;
        let mut cloud = CallRecord::new("cloud", "openai", "gpt-5.4", None);
        cloud.ok = true;
        cloud.cost_usd = Some(0.002);
        cloud.usage.prompt_tokens = 7;
        cloud.redactions = vec![crate::guard::Redaction {
            field: "prompt".into(),
            kind: "email",
            count: 2,
        }];
        Record {
            id: "doc-1".into(),
            source: "x".into(),
            ok: false,
            result: Some(serde_json::json!({"decision": "human_review", "divergent": true})),
            error: Some(RecordError {
                kind: "schema".into(),
                message: "m".into(),
                position: None,
                snippet: None,
            }),
            calls: vec![local, cloud],
            version: "v1".into(),
            elapsed_ms: 1,
            at: String::new(),
        }
    }

    #[test]
    fn every_metric_the_grafana_dashboard_reads_exists() {
        let m = Metrics::new();
        *m.pipeline.lock().unwrap() = "scripts/x.rhai".into();
        m.observe("scripts/x.rhai", &record());
        m.blocked("payment_card");
        m.reload("swapped");
        m.set_version("v1");
        m.in_flight.set(0);
        m.pending.set(0);
        let text = m.render();
        assert!(!text.contains("doc-1"), "no document id in a label");
        assert!(
            text.contains("hybrid_spend_usd_total{function=\"cloud\"} 0.002"),
            "{text}"
        );
        assert!(
            text.contains("hybrid_egress_redactions_total{rule=\"email\"} 2"),
            "{text}"
        );
        let dashboard = include_str!("../../contrib/grafana/hybrid.json");
        let mut names: Vec<&str> = dashboard
            .match_indices("hybrid_")
            .map(|(i, _)| {
                let rest = &dashboard[i..];
                let end = rest
                    .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                    .unwrap_or(rest.len());
                &rest[..end]
            })
            .filter(|n| n.len() > "hybrid_".len())
            .collect();
        names.sort();
        names.dedup();
        assert!(names.len() >= 10, "{names:?}");
        for name in names {
            assert!(
                text.lines().any(|l| l.starts_with(name)),
                "the dashboard reads `{name}`, which /metrics does not have:\n{text}"
            );
        }
    }

    #[test]
    fn decisions_beyond_the_cap_count_as_other() {
        let m = Metrics::new();
        for i in 0..(MAX_DECISIONS + 3) {
            let mut r = record();
            r.result = Some(serde_json::json!({ "decision": format!("d{i}") }));
            m.observe("p", &r);
        }
        let text = m.render();
        assert!(text.contains("decision=\"other\"} 3"), "{text}");
        assert_eq!(
            text.matches("hybrid_decisions_total{").count(),
            MAX_DECISIONS + 1
        );
    }
}
