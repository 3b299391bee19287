//! How the `memlink dsm bench` suites print their figures: a JSON object (`--json`) of
//! figures rounded to 3 decimals and their ratios, or a table of microseconds and ratios.

use crate::dsm_bench::BenchArgs;

/// `v` rounded to 3 decimals, as the JSON objects give every figure.
pub(crate) fn round3(v: f64) -> f64 {
    (v * 1000.0).round() / 1000.0
}

/// The JSON object of a suite measured against a baseline: its name, manager, backend and
/// samples per figure.
pub(crate) fn json_object(a: &BenchArgs, suite: &str) -> serde_json::Value {
    serde_json::json!({
        "suite": suite,
        "manager": a.manager.to_string(),
        "backend": a.backend.to_string(),
        "iters": a.iters,
    })
}

/// Adds every figure of `named` to `obj`, and for each one but `read_miss_us` and those in
/// `no_ratio`, its ratio to `read_miss` as `<key without _us>_vs_read_miss`.
pub(crate) fn insert_vs_read_miss(
    obj: &mut serde_json::Value,
    named: Vec<(&'static str, f64)>,
    read_miss: f64,
    no_ratio: &[&str],
) {
    for (k, v) in named {
        obj[k] = serde_json::json!(round3(v));
        if k != "read_miss_us" && !no_ratio.contains(&k) {
            obj[format!("{}_vs_read_miss", k.trim_end_matches("_us"))] =
                serde_json::json!(round3(v / read_miss));
        }
    }
}

/// A table of figures in µs and their ratios to a baseline: a header row (`ratio` names the
/// last column), then a row per `(label, µs, ratio)`, a baseline's without a ratio. The
/// labels take `label_width` characters, the ratios `ratio_width`.
pub(crate) fn print_table(
    label_width: usize,
    (ratio, ratio_width): (&str, usize),
    rows: &[(&str, f64, Option<f64>)],
) {
    println!("  {:<label_width$} {:>9} {ratio:>ratio_width$}", "", "µs");
    for (label, us, ratio) in rows {
        match ratio {
            Some(r) => println!("  {label:<label_width$} {us:>9.1} {r:>ratio_width$.2}"),
            None => println!("  {label:<label_width$} {us:>9.1}"),
        }
    }
}
