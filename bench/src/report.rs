//! Output: human tables, then one JSON object with every figure as the last line.

use hdrhistogram::Histogram;
use serde_json::{json, Map, Value};

/// Latency histogram in nanoseconds (1 ns .. 10 min, 3 significant digits).
pub(crate) fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 600_000_000_000, 3).expect("constant bounds are valid")
}

/// Nanoseconds → milliseconds, rounded to the microsecond.
pub(crate) fn ms(ns: u64) -> f64 {
    (ns as f64 / 1e3).round() / 1e3
}

/// p50/p90/p99/p99.9/max in ms (and the count) of a histogram.
pub(crate) fn percentiles(h: &Histogram<u64>) -> Value {
    json!({
        "count": h.len(),
        "p50_ms": ms(h.value_at_quantile(0.50)),
        "p90_ms": ms(h.value_at_quantile(0.90)),
        "p99_ms": ms(h.value_at_quantile(0.99)),
        "p999_ms": ms(h.value_at_quantile(0.999)),
        "max_ms": ms(h.max()),
    })
}

/// A benchmark's figures, printed as tables and as one JSON line.
#[derive(Debug)]
pub(crate) struct Report {
    json: Map<String, Value>,
    tables: Vec<(String, Vec<String>, Vec<Vec<String>>)>,
}

impl Report {
    pub(crate) fn new(bench: &str) -> Self {
        let mut json = Map::new();
        json.insert("bench".into(), json!(bench));
        Self { json, tables: Vec::new() }
    }

    /// A figure for the JSON line (and the key/value table).
    pub(crate) fn set(&mut self, key: &str, value: Value) {
        self.json.insert(key.to_owned(), value);
    }

    /// A figure set earlier.
    pub(crate) fn get(&self, key: &str) -> Option<&Value> {
        self.json.get(key)
    }

    /// An extra table (e.g. bridge vs NATS latencies).
    pub(crate) fn table(&mut self, title: &str, header: &[&str], rows: Vec<Vec<String>>) {
        self.tables.push((title.to_owned(), header.iter().map(|s| (*s).to_owned()).collect(), rows));
    }

    pub(crate) fn print(&self) {
        let rows: Vec<Vec<String>> = self
            .json
            .iter()
            .filter(|(_, v)| !v.is_object())
            .map(|(k, v)| vec![k.clone(), v.as_str().map_or_else(|| v.to_string(), str::to_owned)])
            .collect();
        print_table("figures", &["figure".to_owned(), "value".to_owned()], &rows);
        for (title, header, rows) in &self.tables {
            print_table(title, header, rows);
        }
        println!("{}", Value::Object(self.json.clone()));
    }
}

fn print_table(title: &str, header: &[String], rows: &[Vec<String>]) {
    let mut widths: Vec<usize> = header.iter().map(String::len).collect();
    for row in rows {
        for (i, cell) in row.iter().enumerate() {
            if let Some(w) = widths.get_mut(i) {
                *w = (*w).max(cell.len());
            }
        }
    }
    let line = |cells: &[String]| {
        let parts: Vec<String> = cells.iter().enumerate().map(|(i, c)| format!("{c:<w$}", w = widths[i])).collect();
        format!("| {} |", parts.join(" | "))
    };
    println!("\n{title}");
    println!("{}", line(header));
    println!("|{}|", widths.iter().map(|w| "-".repeat(w + 2)).collect::<Vec<_>>().join("|"));
    for row in rows {
        println!("{}", line(row));
    }
}
