//! Prometheus text metrics, kept as atomics (no registry dependency).

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

/// A cumulative histogram with fixed upper bounds.
pub struct Histogram {
    bounds: &'static [f64],
    counts: Vec<AtomicU64>,
    sum_micros: AtomicU64,
    count: AtomicU64,
}

impl Histogram {
    fn new(bounds: &'static [f64]) -> Histogram {
        Histogram {
            bounds,
            counts: bounds.iter().map(|_| AtomicU64::new(0)).collect(),
            sum_micros: AtomicU64::new(0),
            count: AtomicU64::new(0),
        }
    }

    /// Records one observation.
    pub fn observe(&self, v: f64) {
        for (b, c) in self.bounds.iter().zip(&self.counts) {
            if v <= *b {
                c.fetch_add(1, Ordering::Relaxed);
            }
        }
        self.sum_micros
            .fetch_add((v * 1e6) as u64, Ordering::Relaxed);
        self.count.fetch_add(1, Ordering::Relaxed);
    }

    fn render(&self, out: &mut String, name: &str, help: &str) {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} histogram");
        for (b, c) in self.bounds.iter().zip(&self.counts) {
            let _ = writeln!(
                out,
                "{name}_bucket{{le=\"{b}\"}} {}",
                c.load(Ordering::Relaxed)
            );
        }
        let n = self.count.load(Ordering::Relaxed);
        let _ = writeln!(out, "{name}_bucket{{le=\"+Inf\"}} {n}");
        let sum = self.sum_micros.load(Ordering::Relaxed) as f64 / 1e6;
        let _ = writeln!(out, "{name}_sum {sum}\n{name}_count {n}");
    }
}

/// The node's metrics.
pub struct Metrics {
    pub accepted: AtomicU64,
    pub duplicates: AtomicU64,
    refused: Mutex<std::collections::BTreeMap<&'static str, u64>>,
    pub shed: AtomicU64,
    pub batches: AtomicU64,
    pub heartbeats: AtomicU64,
    pub tree_size: AtomicU64,
    pub queue_depth: AtomicU64,
    pub batch_size: Histogram,
    pub submit_to_checkpoint: Histogram,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics {
            accepted: AtomicU64::new(0),
            duplicates: AtomicU64::new(0),
            refused: Mutex::new(Default::default()),
            shed: AtomicU64::new(0),
            batches: AtomicU64::new(0),
            heartbeats: AtomicU64::new(0),
            tree_size: AtomicU64::new(0),
            queue_depth: AtomicU64::new(0),
            batch_size: Histogram::new(&[1.0, 4.0, 16.0, 64.0, 256.0, 1024.0, 4096.0, 16384.0]),
            submit_to_checkpoint: Histogram::new(&[
                0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
            ]),
        }
    }
}

impl Metrics {
    /// Counts one refused event by its stable code.
    pub fn refused(&self, code: &'static str) {
        let mut m = self.refused.lock().unwrap_or_else(|p| p.into_inner());
        *m.entry(code).or_insert(0) += 1;
    }

    /// The Prometheus text exposition.
    pub fn render(&self) -> String {
        let mut out = String::new();
        let counter = |out: &mut String, name: &str, help: &str, v: u64| {
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} counter\n{name} {v}"
            );
        };
        let gauge = |out: &mut String, name: &str, help: &str, v: u64| {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} gauge\n{name} {v}");
        };
        let load = |a: &AtomicU64| a.load(Ordering::Relaxed);
        counter(
            &mut out,
            "revledger_events_accepted_total",
            "Events logged.",
            load(&self.accepted),
        );
        counter(
            &mut out,
            "revledger_events_duplicate_total",
            "Resubmitted events answered with their original index.",
            load(&self.duplicates),
        );
        let _ = writeln!(
            out,
            "# HELP revledger_events_refused_total Events refused, by reason.\n# TYPE revledger_events_refused_total counter"
        );
        let refused = self.refused.lock().unwrap_or_else(|p| p.into_inner());
        for (code, n) in refused.iter() {
            let _ = writeln!(
                out,
                "revledger_events_refused_total{{reason=\"{code}\"}} {n}"
            );
        }
        drop(refused);
        counter(
            &mut out,
            "revledger_requests_shed_total",
            "Submissions answered 503 because the queue was full.",
            load(&self.shed),
        );
        counter(
            &mut out,
            "revledger_batches_total",
            "Batches sequenced.",
            load(&self.batches),
        );
        counter(
            &mut out,
            "revledger_heartbeats_total",
            "Head records appended alone.",
            load(&self.heartbeats),
        );
        gauge(
            &mut out,
            "revledger_tree_size",
            "Size of the latest checkpoint.",
            load(&self.tree_size),
        );
        gauge(
            &mut out,
            "revledger_queue_depth",
            "Events waiting to be sequenced.",
            load(&self.queue_depth),
        );
        self.batch_size.render(
            &mut out,
            "revledger_batch_size",
            "Events per sequenced batch.",
        );
        self.submit_to_checkpoint.render(
            &mut out,
            "revledger_submit_to_checkpoint_seconds",
            "Time from a submission's arrival to its signed checkpoint.",
        );
        out
    }
}
