//! Prometheus metrics: logins by outcome and refusal code, validation and append latency
//! histograms. Counters are atomics; the label maps are small and behind a mutex.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Histogram bucket bounds in seconds: 50 µs to 1 s.
const BUCKETS_SECONDS: [f64; 12] = [
    0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.25, 1.0,
];

#[derive(Debug, Default)]
pub struct Histogram {
    buckets: [AtomicU64; 12],
    count: AtomicU64,
    sum_nanos: AtomicU64,
}

impl Histogram {
    pub fn observe(&self, elapsed: Duration) {
        let seconds = elapsed.as_secs_f64();
        for (bound, bucket) in BUCKETS_SECONDS.iter().zip(&self.buckets) {
            if seconds <= *bound {
                bucket.fetch_add(1, Ordering::Relaxed);
            }
        }
        self.count.fetch_add(1, Ordering::Relaxed);
        let nanos = u64::try_from(elapsed.as_nanos()).unwrap_or(u64::MAX);
        self.sum_nanos.fetch_add(nanos, Ordering::Relaxed);
    }

    fn render(&self, name: &str, help: &str, out: &mut String) {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} histogram");
        for (bound, bucket) in BUCKETS_SECONDS.iter().zip(&self.buckets) {
            let _ = writeln!(
                out,
                "{name}_bucket{{le=\"{bound}\"}} {}",
                bucket.load(Ordering::Relaxed)
            );
        }
        let count = self.count.load(Ordering::Relaxed);
        let _ = writeln!(out, "{name}_bucket{{le=\"+Inf\"}} {count}");
        let sum = self.sum_nanos.load(Ordering::Relaxed) as f64 / 1e9;
        let _ = writeln!(out, "{name}_sum {sum}\n{name}_count {count}");
    }
}

#[derive(Debug, Default)]
pub struct Metrics {
    logins: Mutex<BTreeMap<&'static str, u64>>,
    refusals: Mutex<BTreeMap<&'static str, u64>>,
    validation: Histogram,
    append: Histogram,
}

fn increment(map: &Mutex<BTreeMap<&'static str, u64>>, key: &'static str) {
    let mut map = map
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    *map.entry(key).or_default() += 1;
}

impl Metrics {
    pub fn count_login(&self, outcome: &'static str) {
        increment(&self.logins, outcome);
    }

    pub fn count_refusal(&self, code: &'static str) {
        increment(&self.refusals, code);
    }

    pub fn observe_validation(&self, elapsed: Duration) {
        self.validation.observe(elapsed);
    }

    pub fn observe_append(&self, elapsed: Duration) {
        self.append.observe(elapsed);
    }

    /// The Prometheus text exposition.
    pub fn render(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(
            out,
            "# HELP jitledger_logins_total Accepted logins by outcome."
        );
        let _ = writeln!(out, "# TYPE jitledger_logins_total counter");
        for (outcome, count) in self
            .logins
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .iter()
        {
            let _ = writeln!(
                out,
                "jitledger_logins_total{{outcome=\"{outcome}\"}} {count}"
            );
        }
        let _ = writeln!(
            out,
            "# HELP jitledger_login_refusals_total Refused logins by code."
        );
        let _ = writeln!(out, "# TYPE jitledger_login_refusals_total counter");
        for (code, count) in self
            .refusals
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .iter()
        {
            let _ = writeln!(
                out,
                "jitledger_login_refusals_total{{code=\"{code}\"}} {count}"
            );
        }
        self.validation.render(
            "jitledger_validation_seconds",
            "SAML validation latency.",
            &mut out,
        );
        self.append.render(
            "jitledger_append_seconds",
            "Durable append latency.",
            &mut out,
        );
        out
    }
}
