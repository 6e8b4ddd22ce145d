//! The Prometheus text exposition (format 0.0.4) of the module's counters.
//!
//! The module keeps the numbers in shared memory; this renders a snapshot of them, so the
//! format is unit-tested apart from nginx.

use std::fmt::Write;

/// Upper bounds (seconds) of the introspection latency histogram's buckets, then `+Inf`.
pub const BUCKETS: [f64; 13] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// Index of the bucket (into `BUCKETS`, or `BUCKETS.len()` for `+Inf`) of a duration.
pub fn bucket(ms: u64) -> usize {
    BUCKETS
        .iter()
        .position(|b| ms as f64 / 1000.0 <= *b)
        .unwrap_or(BUCKETS.len())
}

/// One labelled family: name, help, type, and (label value, number) samples.
pub struct Family<'a> {
    /// The metric name, e.g. `phantom_token_requests_total`.
    pub name: &'a str,
    /// The `# HELP` text.
    pub help: &'a str,
    /// The `# TYPE`: `counter` or `gauge`.
    pub kind: &'a str,
    /// The one label's name; empty for an unlabelled metric (one sample, its value unused).
    pub label: &'a str,
    /// (label value, number) per sample; label values are escaped when rendered.
    pub samples: Vec<(String, f64)>,
}

/// A latency histogram: per-bucket (not cumulative) counts, the sum and the count.
pub struct Histogram<'a> {
    /// The metric name (the `_bucket`, `_sum` and `_count` series are derived from it).
    pub name: &'a str,
    /// The `# HELP` text.
    pub help: &'a str,
    /// Observations per bucket of [`BUCKETS`], then the `+Inf` bucket; made cumulative when
    /// rendered.
    pub counts: Vec<u64>,
    /// The sum of all observations, in seconds.
    pub sum_seconds: f64,
}

fn escape(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

fn number(v: f64) -> String {
    if v.fract() == 0.0 && v.abs() < 1e15 {
        format!("{}", v as i64)
    } else {
        format!("{v}")
    }
}

/// Renders the families and the histogram in the text exposition format.
pub fn render(families: &[Family], histograms: &[Histogram]) -> String {
    let mut out = String::new();
    for f in families {
        let _ = writeln!(out, "# HELP {} {}", f.name, f.help);
        let _ = writeln!(out, "# TYPE {} {}", f.name, f.kind);
        for (value, n) in &f.samples {
            if f.label.is_empty() {
                let _ = writeln!(out, "{} {}", f.name, number(*n));
            } else {
                let _ = writeln!(
                    out,
                    "{}{{{}=\"{}\"}} {}",
                    f.name,
                    f.label,
                    escape(value),
                    number(*n)
                );
            }
        }
    }
    for h in histograms {
        let _ = writeln!(out, "# HELP {} {}", h.name, h.help);
        let _ = writeln!(out, "# TYPE {} histogram", h.name);
        let mut total = 0u64;
        for (i, n) in h.counts.iter().enumerate() {
            total += n;
            let le = BUCKETS.get(i).map_or("+Inf".to_string(), |b| b.to_string());
            let _ = writeln!(out, "{}_bucket{{le=\"{le}\"}} {total}", h.name);
        }
        let _ = writeln!(out, "{}_sum {}", h.name, number(h.sum_seconds));
        let _ = writeln!(out, "{}_count {total}", h.name);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_by_upper_bound() {
        assert_eq!(bucket(0), 0);
        assert_eq!(bucket(1), 0);
        assert_eq!(bucket(2), 1);
        assert_eq!(bucket(10_000), 12);
        assert_eq!(bucket(10_001), 13);
    }

    #[test]
    fn renders_families_and_a_cumulative_histogram() {
        let f = Family {
            name: "x_total",
            help: "X.",
            kind: "counter",
            label: "zone",
            samples: vec![("a\"b".into(), 3.0)],
        };
        let mut counts = vec![0; BUCKETS.len() + 1];
        counts[0] = 2;
        counts[13] = 1;
        let h = Histogram {
            name: "d_seconds",
            help: "D.",
            counts,
            sum_seconds: 11.5,
        };
        let text = render(&[f], &[h]);
        assert!(text.contains("# TYPE x_total counter\nx_total{zone=\"a\\\"b\"} 3\n"));
        assert!(text.contains("d_seconds_bucket{le=\"0.001\"} 2\n"));
        assert!(text.contains("d_seconds_bucket{le=\"10\"} 2\n"));
        assert!(text.contains("d_seconds_bucket{le=\"+Inf\"} 3\n"));
        assert!(text.contains("d_seconds_sum 11.5\nd_seconds_count 3\n"));
    }
}
