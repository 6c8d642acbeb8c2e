//! The trend of one metric over a window: how many trusted values, where it started
//! (baseline), where it is now, the change between them, and the least-squares slope per hour.
//!
//! The baseline is the mean of the values in the first quarter of the window, so one odd first
//! reading does not make the whole change; when the first quarter holds no value, it is the
//! first value in the window. Artefacts must be left out by the caller.

use model::Timestamp;

const HOUR_MS: f64 = 3_600_000.0;

#[derive(Clone, Debug, PartialEq)]
pub struct Trend {
    pub window_ms: i64,
    /// Values in the window.
    pub n: usize,
    pub baseline: f64,
    pub latest: f64,
    pub latest_time: Timestamp,
    /// `latest - baseline`.
    pub change: f64,
    /// Least-squares slope in units per hour; `None` with fewer than two distinct times.
    pub slope_per_hour: Option<f64>,
    pub min: f64,
    pub max: f64,
    pub mean: f64,
}

/// The trend over `[now - window_ms, now]` of `points` (any order; NaN values are skipped).
/// `None` when the window holds no value.
pub fn trend(points: &[(Timestamp, f64)], window_ms: i64, now: Timestamp) -> Option<Trend> {
    let start = now.plus_millis(-window_ms);
    let mut window: Vec<(Timestamp, f64)> = points
        .iter()
        .copied()
        .filter(|(t, v)| *t >= start && *t <= now && v.is_finite())
        .collect();
    if window.is_empty() {
        return None;
    }
    window.sort_by_key(|(t, _)| *t);
    let n = window.len();
    let quarter_end = start.plus_millis(window_ms / 4);
    let early: Vec<f64> = window
        .iter()
        .filter(|(t, _)| *t < quarter_end)
        .map(|(_, v)| *v)
        .collect();
    let baseline = if early.is_empty() {
        window[0].1
    } else {
        early.iter().sum::<f64>() / early.len() as f64
    };
    let (latest_time, latest) = window[n - 1];
    let values = window.iter().map(|(_, v)| *v);
    let min = values.clone().fold(f64::INFINITY, f64::min);
    let max = values.clone().fold(f64::NEG_INFINITY, f64::max);
    let mean = values.sum::<f64>() / n as f64;
    Some(Trend {
        window_ms,
        n,
        baseline,
        latest,
        latest_time,
        change: latest - baseline,
        slope_per_hour: slope_per_hour(&window),
        min,
        max,
        mean,
    })
}

fn slope_per_hour(points: &[(Timestamp, f64)]) -> Option<f64> {
    let origin = points[0].0;
    let xs: Vec<f64> = points
        .iter()
        .map(|(t, _)| t.since(origin) as f64 / HOUR_MS)
        .collect();
    let n = points.len() as f64;
    let mean_x = xs.iter().sum::<f64>() / n;
    let mean_y = points.iter().map(|(_, v)| v).sum::<f64>() / n;
    let mut covariance = 0.0;
    let mut variance = 0.0;
    for (x, (_, y)) in xs.iter().zip(points) {
        covariance += (x - mean_x) * (y - mean_y);
        variance += (x - mean_x) * (x - mean_x);
    }
    (variance > 0.0).then(|| covariance / variance)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn minutes(m: i64) -> Timestamp {
        Timestamp(m * 60_000)
    }

    #[test]
    fn a_steady_fall_has_its_slope_and_change() {
        // SpO2 falling one point every 10 minutes for an hour: 98 → 92.
        let points: Vec<_> = (0..=6)
            .map(|i| (minutes(i * 10), 98.0 - i as f64))
            .collect();
        let trend = trend(&points, 60 * 60_000, minutes(60)).unwrap();
        assert_eq!(trend.n, 7);
        assert!((trend.slope_per_hour.unwrap() - -6.0).abs() < 1e-9);
        // Baseline: the first quarter (minutes 0–14) holds 98 and 97.
        assert_eq!(trend.baseline, 97.5);
        assert_eq!(trend.latest, 92.0);
        assert_eq!(trend.change, -5.5);
        assert_eq!((trend.min, trend.max), (92.0, 98.0));
    }

    #[test]
    fn only_the_window_counts() {
        let points = [(minutes(0), 60.0), (minutes(50), 80.0), (minutes(55), 90.0)];
        let trend = trend(&points, 10 * 60_000, minutes(60)).unwrap();
        assert_eq!(trend.n, 2);
        // No value in the first quarter (50–52.5 has one: 80).
        assert_eq!(trend.baseline, 80.0);
        assert_eq!(trend.change, 10.0);
        assert!(super::trend(&points, 60_000, minutes(120)).is_none());
    }

    #[test]
    fn one_value_has_no_slope() {
        let trend = trend(&[(minutes(5), 37.2)], 60 * 60_000, minutes(10)).unwrap();
        assert_eq!(trend.slope_per_hour, None);
        assert_eq!(trend.change, 0.0);
    }
}
