//! Prometheus metrics of the reconciler, served at `/metrics`.

use std::time::Instant;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct FailureLabels {
    /// [`crate::Error::metric_label`] of the failure.
    pub error: String,
}

#[derive(Clone)]
pub struct Metrics {
    pub reconciles: Counter,
    pub failures: Family<FailureLabels, Counter>,
    pub duration: Histogram,
}

impl Default for Metrics {
    fn default() -> Self {
        Self {
            reconciles: Counter::default(),
            failures: Family::default(),
            duration: Histogram::new(exponential_buckets(0.01, 2.0, 12)),
        }
    }
}

impl Metrics {
    pub fn register(self, registry: &mut Registry) -> Self {
        registry.register(
            "lake_operator_reconciles",
            "Reconciliations started",
            self.reconciles.clone(),
        );
        registry.register(
            "lake_operator_reconcile_failures",
            "Reconciliations that failed, by error",
            self.failures.clone(),
        );
        registry.register(
            "lake_operator_reconcile_duration_seconds",
            "Time one reconciliation took",
            self.duration.clone(),
        );
        self
    }

    /// Counts a reconciliation and measures it until the guard drops.
    pub fn start_reconcile(&self) -> ReconcileTimer {
        self.reconciles.inc();
        ReconcileTimer {
            start: Instant::now(),
            duration: self.duration.clone(),
        }
    }

    pub fn reconcile_failed(&self, error: &crate::Error) {
        self.failures
            .get_or_create(&FailureLabels {
                error: error.metric_label().into(),
            })
            .inc();
    }
}

pub struct ReconcileTimer {
    start: Instant,
    duration: Histogram,
}

impl Drop for ReconcileTimer {
    fn drop(&mut self) {
        self.duration.observe(self.start.elapsed().as_secs_f64());
    }
}
