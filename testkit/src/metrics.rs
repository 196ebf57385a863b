//! Reading Prometheus text as the bridge serves it on `/metrics`.

/// The value of one sample, named exactly (`realtime_bridge_open_streams`, or with its
/// labels: `realtime_bridge_events_dropped_total{reason="invalid_json"}`); `None` if absent.
pub fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(series).and_then(|rest| rest.strip_prefix(' ')))
        .and_then(|v| v.trim().parse().ok())
}

/// Sum of every sample of a family (`realtime_bridge_events_dropped_total`, labelled or
/// not); 0 when absent.
pub fn metric_sum(text: &str, family: &str) -> f64 {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| {
            let rest = l.strip_prefix(family)?;
            let value = if rest.starts_with('{') { rest.rsplit_once('}')?.1 } else { rest };
            value.split_whitespace().next()?.parse::<f64>().ok()
        })
        .fold(0.0, |a, b| a + b)
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEXT: &str = "# HELP x\nrealtime_bridge_events_dropped_total{reason=\"slow_client\"} 3\nrealtime_bridge_events_dropped_total{reason=\"too_large\"} 2\nrealtime_bridge_open_streams 7\n";

    #[test]
    fn reads_samples_and_sums() {
        assert_eq!(sample(TEXT, "realtime_bridge_open_streams"), Some(7.0));
        assert_eq!(sample(TEXT, r#"realtime_bridge_events_dropped_total{reason="too_large"}"#), Some(2.0));
        assert_eq!(sample(TEXT, "realtime_bridge_events_dropped_total"), None);
        assert!((metric_sum(TEXT, "realtime_bridge_events_dropped_total") - 5.0).abs() < 1e-9);
        assert!((metric_sum(TEXT, "realtime_bridge_open_streams") - 7.0).abs() < 1e-9);
        assert!(metric_sum(TEXT, "realtime_bridge_missing").abs() < 1e-9);
    }
}
