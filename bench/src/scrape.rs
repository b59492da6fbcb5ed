//! huddle's own account of a run, read from its `/metrics` before and after
//! the measured window: how long chat messages took to be durable in the
//! document store (`huddle_message_store_seconds`). End-to-end latency
//! includes it; the peer stores nothing, so this is the part of huddle's
//! latency the peer has no counterpart for. Not read from the peer.

use serde_json::{json, Value};

use crate::client::Target;
use crate::http;

/// The histogram read.
pub const STORE_HISTOGRAM: &str = "huddle_message_store_seconds";

/// A Prometheus histogram as scraped: cumulative counts per upper bound
/// (seconds, `+Inf` last) and the sum of the observations.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Scraped {
    /// `(upper bound, cumulative count)`, ascending, `+Inf` included.
    pub buckets: Vec<(f64, f64)>,
    /// Sum of the observations, in seconds.
    pub sum: f64,
}

impl Scraped {
    /// Observations counted.
    pub fn count(&self) -> f64 {
        self.buckets.last().map_or(0.0, |b| b.1)
    }

    /// What was observed after `before` (the same histogram, scraped
    /// earlier); `None` when the bounds differ (the server restarted with
    /// others).
    pub fn since(&self, before: &Scraped) -> Option<Scraped> {
        if before.buckets.is_empty() {
            return Some(self.clone());
        }
        if before.buckets.len() != self.buckets.len() {
            return None;
        }
        let buckets = self
            .buckets
            .iter()
            .zip(&before.buckets)
            .map(|(a, b)| (a.0 == b.0).then_some((a.0, a.1 - b.1)))
            .collect::<Option<Vec<_>>>()?;
        Some(Scraped {
            buckets,
            sum: self.sum - before.sum,
        })
    }

    /// Adds another node's histogram of the same bounds.
    pub fn add(&mut self, other: &Scraped) {
        if self.buckets.is_empty() {
            *self = other.clone();
            return;
        }
        for (a, b) in self.buckets.iter_mut().zip(&other.buckets) {
            a.1 += b.1;
        }
        self.sum += other.sum;
    }

    /// The smallest bucket bound that holds quantile `q` of the
    /// observations, in seconds (a histogram knows no more than that);
    /// `None` when empty.
    pub fn quantile_bound(&self, q: f64) -> Option<f64> {
        let count = self.count();
        if count <= 0.0 {
            return None;
        }
        self.buckets
            .iter()
            .find(|(_, c)| *c >= q * count)
            .map(|(le, _)| *le)
    }
}

/// Reads histogram `name` (without labels) from a Prometheus text
/// exposition; `None` when it is not there.
pub fn parse(text: &str, name: &str) -> Option<Scraped> {
    let bucket = format!("{name}_bucket{{le=\"");
    let sum = format!("{name}_sum ");
    let mut out = Scraped::default();
    let mut found_sum = false;
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix(&bucket) {
            let (le, count) = rest.split_once("\"} ")?;
            let le = if le == "+Inf" {
                f64::INFINITY
            } else {
                le.parse().ok()?
            };
            out.buckets.push((le, count.trim().parse().ok()?));
        } else if let Some(v) = line.strip_prefix(&sum) {
            out.sum = v.trim().parse().ok()?;
            found_sum = true;
        }
    }
    (found_sum && !out.buckets.is_empty()).then_some(out)
}

/// Scrapes `/metrics` of every target and sums their store-time
/// histograms; `None` when any of them fails or has none.
pub async fn store_times(targets: &[Target]) -> Option<Scraped> {
    let mut total = Scraped::default();
    for t in targets {
        let r = http::request(t.addr, "GET", "/metrics", None, None, b"")
            .await
            .ok()?;
        if r.status != 200 {
            return None;
        }
        total.add(&parse(&String::from_utf8_lossy(&r.body), STORE_HISTOGRAM)?);
    }
    Some(total)
}

/// The result line's `store_ms`: messages stored in the window, their mean
/// and the bucket bounds holding p50 / p99 / p99.9, in milliseconds.
pub fn store_summary(window: &Scraped) -> Value {
    let ms = |s: Option<f64>| s.filter(|s| s.is_finite()).map(|s| s * 1000.0);
    let count = window.count();
    json!({
        "count": count,
        "mean": (count > 0.0).then(|| (window.sum / count * 1e6).round() / 1000.0),
        "p50_le": ms(window.quantile_bound(0.5)),
        "p99_le": ms(window.quantile_bound(0.99)),
        "p99_9_le": ms(window.quantile_bound(0.999)),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEXT: &str = "# HELP huddle_message_store_seconds x\n\
        # TYPE huddle_message_store_seconds histogram\n\
        huddle_message_store_seconds_bucket{le=\"0.001\"} 90\n\
        huddle_message_store_seconds_bucket{le=\"0.01\"} 99\n\
        huddle_message_store_seconds_bucket{le=\"+Inf\"} 100\n\
        huddle_message_store_seconds_sum 0.25\n\
        huddle_message_store_seconds_count 100\n\
        huddle_bridge_lag_seconds_bucket{le=\"0.001\"} 7\n";

    #[test]
    fn parses_one_histogram_and_its_quantile_bounds() {
        let h = parse(TEXT, STORE_HISTOGRAM).expect("found");
        assert_eq!(
            h.buckets,
            vec![(0.001, 90.0), (0.01, 99.0), (f64::INFINITY, 100.0)]
        );
        assert_eq!(h.sum, 0.25);
        assert_eq!(h.quantile_bound(0.5), Some(0.001));
        assert_eq!(h.quantile_bound(0.99), Some(0.01));
        assert_eq!(h.quantile_bound(0.999), Some(f64::INFINITY));
        assert!(parse(TEXT, "huddle_nothing").is_none());
    }

    #[test]
    fn a_window_is_the_difference_and_nodes_add_up() {
        let after = parse(TEXT, STORE_HISTOGRAM).unwrap();
        let before = Scraped {
            buckets: vec![(0.001, 40.0), (0.01, 40.0), (f64::INFINITY, 40.0)],
            sum: 0.05,
        };
        let mut w = after.since(&before).unwrap();
        assert_eq!(w.count(), 60.0);
        assert_eq!(w.quantile_bound(0.9), Some(0.01));
        assert_eq!(w.quantile_bound(0.99), Some(f64::INFINITY));
        w.add(&w.clone());
        assert_eq!(w.count(), 120.0);
        let s = store_summary(&w);
        assert_eq!(s["count"], 120.0);
        assert_eq!(s["p50_le"], 1.0);
        assert_eq!(s["mean"], 3.333);
        let other_bounds = Scraped {
            buckets: vec![(0.5, 1.0)],
            sum: 0.0,
        };
        assert!(after.since(&other_bounds).is_none());
    }
}
