//! The gateway's own Prometheus metrics: routing decisions by type,
//! scheduling latency and ready pods.

use crate::plugins::profile_handler::DecisionKind;
use crate::pool::PoolSnapshot;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Upper bounds of the latency histogram buckets, in seconds.
const BUCKETS: [f64; 12] = [
    0.000_05, 0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1, 0.5,
];

/// Counters updated on every request, read by `/metrics`.
#[derive(Debug, Default)]
pub struct GatewayMetrics {
    decode_only: AtomicU64,
    prefill_decode: AtomicU64,
    buckets: [AtomicU64; BUCKETS.len()],
    latency_count: AtomicU64,
    latency_sum_nanos: AtomicU64,
}

impl GatewayMetrics {
    /// Records one scheduling decision and how long it took.
    pub fn record_decision(&self, kind: DecisionKind, took: Duration) {
        match kind {
            DecisionKind::DecodeOnly => &self.decode_only,
            DecisionKind::PrefillDecode => &self.prefill_decode,
        }
        .fetch_add(1, Ordering::Relaxed);
        let seconds = took.as_secs_f64();
        if let Some(i) = BUCKETS.iter().position(|b| seconds <= *b) {
            self.buckets[i].fetch_add(1, Ordering::Relaxed);
        }
        self.latency_count.fetch_add(1, Ordering::Relaxed);
        self.latency_sum_nanos.fetch_add(
            u64::try_from(took.as_nanos()).unwrap_or(u64::MAX),
            Ordering::Relaxed,
        );
    }

    /// The Prometheus text exposition of the metrics.
    pub fn render(&self, pool: &PoolSnapshot) -> String {
        let mut out = String::new();
        out.push_str("# HELP llmd_scheduler_decisions_total Routing decisions by type.\n");
        out.push_str("# TYPE llmd_scheduler_decisions_total counter\n");
        for (label, counter) in [
            ("decode_only", &self.decode_only),
            ("prefill_decode", &self.prefill_decode),
        ] {
            let _ = writeln!(
                out,
                "llmd_scheduler_decisions_total{{decision=\"{label}\"}} {}",
                counter.load(Ordering::Relaxed)
            );
        }
        out.push_str("# HELP llmd_scheduler_scheduling_duration_seconds Time to pick an endpoint, tokenization excluded.\n");
        out.push_str("# TYPE llmd_scheduler_scheduling_duration_seconds histogram\n");
        let mut cumulative = 0;
        for (bound, bucket) in BUCKETS.iter().zip(&self.buckets) {
            cumulative += bucket.load(Ordering::Relaxed);
            let _ = writeln!(
                out,
                "llmd_scheduler_scheduling_duration_seconds_bucket{{le=\"{bound}\"}} {cumulative}"
            );
        }
        let count = self.latency_count.load(Ordering::Relaxed);
        let _ = writeln!(
            out,
            "llmd_scheduler_scheduling_duration_seconds_bucket{{le=\"+Inf\"}} {count}"
        );
        let sum = self.latency_sum_nanos.load(Ordering::Relaxed) as f64 / 1e9;
        let _ = writeln!(out, "llmd_scheduler_scheduling_duration_seconds_sum {sum}");
        let _ = writeln!(
            out,
            "llmd_scheduler_scheduling_duration_seconds_count {count}"
        );
        out.push_str("# HELP llmd_scheduler_pods_ready Endpoints whose metrics are fresh.\n");
        out.push_str("# TYPE llmd_scheduler_pods_ready gauge\n");
        let _ = writeln!(out, "llmd_scheduler_pods_ready {}", pool.ready_count());
        out.push_str("# HELP llmd_scheduler_pods Endpoints in the pool.\n");
        out.push_str("# TYPE llmd_scheduler_pods gauge\n");
        let _ = writeln!(out, "llmd_scheduler_pods {}", pool.endpoints().len());
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_counters_histogram_and_gauges() {
        let metrics = GatewayMetrics::default();
        metrics.record_decision(DecisionKind::PrefillDecode, Duration::from_micros(80));
        metrics.record_decision(DecisionKind::DecodeOnly, Duration::from_secs(2));
        let text = metrics.render(&PoolSnapshot::new(Vec::new()));
        assert!(
            text.contains("llmd_scheduler_decisions_total{decision=\"prefill_decode\"} 1\n"),
            "{text}"
        );
        assert!(text.contains("llmd_scheduler_decisions_total{decision=\"decode_only\"} 1\n"));
        assert!(
            text.contains("llmd_scheduler_scheduling_duration_seconds_bucket{le=\"0.0001\"} 1\n"),
            "{text}"
        );
        assert!(text.contains("llmd_scheduler_scheduling_duration_seconds_bucket{le=\"0.5\"} 1\n"));
        assert!(text.contains("llmd_scheduler_scheduling_duration_seconds_count 2\n"));
        assert!(text.contains("llmd_scheduler_pods_ready 0\n"));
    }
}
