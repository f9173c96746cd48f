//! What the NAB tests share: reading NAB's series and labelled windows, and the normal
//! quantiles the synthetic latencies are shaped by. (`mod nab_support;` in each test.)

use std::collections::BTreeMap;
use std::path::Path;

use gatewatch::event::Millis;

pub fn parse_nab_time(s: &str) -> Millis {
    let s = s.trim();
    let s = s.split('.').next().unwrap_or(s);
    chrono::NaiveDateTime::parse_from_str(s, "%Y-%m-%d %H:%M:%S")
        .unwrap_or_else(|e| panic!("bad NAB timestamp `{s}`: {e}"))
        .and_utc()
        .timestamp_millis()
}

pub fn load_series(path: &Path) -> Vec<(Millis, f64)> {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    text.lines()
        .skip(1)
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            let (t, v) = l.split_once(',').expect("timestamp,value");
            (parse_nab_time(t), v.trim().parse::<f64>().expect("numeric value"))
        })
        .collect()
}

pub fn load_windows(path: &Path) -> BTreeMap<String, Vec<(Millis, Millis)>> {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let v: serde_json::Value = serde_json::from_str(&text).expect("windows json");
    v.as_object()
        .expect("object")
        .iter()
        .map(|(k, ws)| {
            let ws = ws
                .as_array()
                .expect("array")
                .iter()
                .map(|w| {
                    let w = w.as_array().expect("pair");
                    (parse_nab_time(w[0].as_str().unwrap()), parse_nab_time(w[1].as_str().unwrap()))
                })
                .collect();
            (k.clone(), ws)
        })
        .collect()
}

/// Inverse of the standard normal CDF (Acklam's rational approximation, |error| < 1.2e-9).
pub fn inv_norm(p: f64) -> f64 {
    const A: [f64; 6] = [
        -3.969683028665376e1,
        2.209460984245205e2,
        -2.759285104469687e2,
        1.38357751867269e2,
        -3.066479806614716e1,
        2.506628277459239,
    ];
    const B: [f64; 5] =
        [-5.447609879822406e1, 1.615858368580409e2, -1.556989798598866e2, 6.680131188771972e1, -1.328068155288572e1];
    const C: [f64; 6] = [
        -7.784894002430293e-3,
        -3.223964580411365e-1,
        -2.400758277161838,
        -2.549732539343734,
        4.374664141464968,
        2.938163982698783,
    ];
    const D: [f64; 4] = [7.784695709041462e-3, 3.224671290700398e-1, 2.445134137142996, 3.754408661907416];
    let q = p.min(1.0 - p);
    let x = if q < 0.02425 {
        let r = (-2.0 * q.ln()).sqrt();
        (((((C[0] * r + C[1]) * r + C[2]) * r + C[3]) * r + C[4]) * r + C[5])
            / ((((D[0] * r + D[1]) * r + D[2]) * r + D[3]) * r + 1.0)
    } else {
        let r = q - 0.5;
        let s = r * r;
        (((((A[0] * s + A[1]) * s + A[2]) * s + A[3]) * s + A[4]) * s + A[5]) * r
            / (((((B[0] * s + B[1]) * s + B[2]) * s + B[3]) * s + B[4]) * s + 1.0)
    };
    if p < 0.5 {
        x
    } else {
        -x
    }
}
