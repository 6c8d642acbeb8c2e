//! Chart 1 of NEWS2 as data: one row per cell of the published table, in chart units.
//!
//! **Values between chart rows.** The chart lists whole numbers (temperature to one decimal).
//! A measured value with more decimals (an averaged pulse of 90.4, a temperature of 38.05 °C)
//! is first rounded to the chart's resolution, half away from zero, and then looked up:
//! 90.4 → 90 (scores 0), 90.5 → 91 (scores 1), 38.05 → 38.1 (scores 1), 35.04 → 35.0 (scores 3).
//! Why this rule: it is what happens on the paper chart the table was written for (the nurse
//! writes the monitor's reading at the chart's resolution and scores what is written), it is the
//! same at every edge of every parameter, and it leaves no value without a row. The value as
//! measured and the value as charted are both kept in the result, so the rounding is visible.

use super::{Consciousness, Parameter};

/// How many decimals the chart uses for a parameter's values.
pub fn chart_decimals(parameter: Parameter) -> u32 {
    match parameter {
        Parameter::Temperature => 1,
        _ => 0,
    }
}

/// A measured value in chart units (tenths of °C for temperature, whole units otherwise),
/// rounded half away from zero. Binary floating point cannot hold 38.05 exactly (it is
/// 38.04999…), so a value within a millionth of a unit below a half is taken as the half.
pub fn to_chart_units(value: f64, decimals: u32) -> i64 {
    let scaled = value * 10f64.powi(decimals as i32);
    let nudged = scaled + scaled.signum() * 1e-6;
    nudged.round() as i64
}

/// The chart value (in the parameter's unit) of a value in chart units.
pub fn from_chart_units(units: i64, decimals: u32) -> f64 {
    units as f64 / 10f64.powi(decimals as i32)
}

/// One cell of the chart: values from `low` to `high` (inclusive, chart units; `None` is
/// unbounded) score `score`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Row {
    pub low: Option<i64>,
    pub high: Option<i64>,
    pub score: u8,
}

const fn row(low: Option<i64>, high: Option<i64>, score: u8) -> Row {
    Row { low, high, score }
}

/// Respiration rate (per minute): ≤8 → 3, 9–11 → 1, 12–20 → 0, 21–24 → 2, ≥25 → 3.
pub const RESPIRATION_RATE: [Row; 5] = [
    row(None, Some(8), 3),
    row(Some(9), Some(11), 1),
    row(Some(12), Some(20), 0),
    row(Some(21), Some(24), 2),
    row(Some(25), None, 3),
];

/// SpO2 Scale 1 (%): ≤91 → 3, 92–93 → 2, 94–95 → 1, ≥96 → 0.
pub const SPO2_SCALE_1: [Row; 4] = [
    row(None, Some(91), 3),
    row(Some(92), Some(93), 2),
    row(Some(94), Some(95), 1),
    row(Some(96), None, 0),
];

/// SpO2 Scale 2 (%), the part that does not depend on air or oxygen:
/// ≤83 → 3, 84–85 → 2, 86–87 → 1, 88–92 → 0.
pub const SPO2_SCALE_2_BELOW_93: [Row; 4] = [
    row(None, Some(83), 3),
    row(Some(84), Some(85), 2),
    row(Some(86), Some(87), 1),
    row(Some(88), Some(92), 0),
];

/// SpO2 Scale 2 (%), 93 or more on air: 0.
pub const SPO2_SCALE_2_ON_AIR: [Row; 1] = [row(Some(93), None, 0)];

/// SpO2 Scale 2 (%), 93 or more on oxygen: 93–94 → 1, 95–96 → 2, ≥97 → 3.
pub const SPO2_SCALE_2_ON_OXYGEN: [Row; 3] = [
    row(Some(93), Some(94), 1),
    row(Some(95), Some(96), 2),
    row(Some(97), None, 3),
];

/// The first SpO2 value (%) on Scale 2 whose score depends on air or oxygen.
pub const SPO2_SCALE_2_OXYGEN_DEPENDENT_FROM: i64 = 93;

/// Air or oxygen: air → 0, oxygen → 2.
pub const AIR_SCORE: u8 = 0;
pub const OXYGEN_SCORE: u8 = 2;

/// Systolic blood pressure (mmHg): ≤90 → 3, 91–100 → 2, 101–110 → 1, 111–219 → 0, ≥220 → 3.
pub const SYSTOLIC_BP: [Row; 5] = [
    row(None, Some(90), 3),
    row(Some(91), Some(100), 2),
    row(Some(101), Some(110), 1),
    row(Some(111), Some(219), 0),
    row(Some(220), None, 3),
];

/// Pulse (per minute): ≤40 → 3, 41–50 → 1, 51–90 → 0, 91–110 → 1, 111–130 → 2, ≥131 → 3.
pub const PULSE: [Row; 6] = [
    row(None, Some(40), 3),
    row(Some(41), Some(50), 1),
    row(Some(51), Some(90), 0),
    row(Some(91), Some(110), 1),
    row(Some(111), Some(130), 2),
    row(Some(131), None, 3),
];

/// Temperature (tenths of °C): ≤35.0 → 3, 35.1–36.0 → 1, 36.1–38.0 → 0, 38.1–39.0 → 1, ≥39.1 → 2.
pub const TEMPERATURE_TENTHS: [Row; 5] = [
    row(None, Some(350), 3),
    row(Some(351), Some(360), 1),
    row(Some(361), Some(380), 0),
    row(Some(381), Some(390), 1),
    row(Some(391), None, 2),
];

/// Consciousness: Alert → 0; new Confusion, Voice, Pain, Unresponsive → 3.
pub fn consciousness_score(level: Consciousness) -> u8 {
    match level {
        Consciousness::Alert => 0,
        Consciousness::NewConfusion
        | Consciousness::Voice
        | Consciousness::Pain
        | Consciousness::Unresponsive => 3,
    }
}

/// The score of a value in chart units, from a table that covers every value.
pub fn lookup(rows: &[Row], units: i64) -> Option<u8> {
    rows.iter()
        .find(|row| {
            row.low.is_none_or(|low| units >= low) && row.high.is_none_or(|high| units <= high)
        })
        .map(|row| row.score)
}

#[cfg(test)]
mod tests {
    //! Row by row against /work/shared/clinical/NEWS2.md (RCP Chart 1): every cell at both of
    //! its edges, and the value just outside each edge in the neighbouring cell.

    use super::*;

    /// (value as charted, expected score), listed straight from the published table.
    fn check(rows: &[Row], decimals: u32, cases: &[(f64, u8)]) {
        for &(value, expected) in cases {
            let units = to_chart_units(value, decimals);
            assert_eq!(lookup(rows, units), Some(expected), "value {value}");
        }
    }

    /// The rows tile the number line: no gap, no overlap, unbounded at both ends.
    fn assert_contiguous(rows: &[Row]) {
        assert!(rows.first().unwrap().low.is_none());
        assert!(rows.last().unwrap().high.is_none());
        for pair in rows.windows(2) {
            assert_eq!(pair[0].high.unwrap() + 1, pair[1].low.unwrap(), "{pair:?}");
        }
    }

    #[test]
    fn every_table_covers_every_value_once() {
        assert_contiguous(&RESPIRATION_RATE);
        assert_contiguous(&SPO2_SCALE_1);
        assert_contiguous(&SYSTOLIC_BP);
        assert_contiguous(&PULSE);
        assert_contiguous(&TEMPERATURE_TENTHS);
        // Scale 2 tiles the line in two halves joined at 93.
        let mut on_air = SPO2_SCALE_2_BELOW_93.to_vec();
        on_air.extend(SPO2_SCALE_2_ON_AIR);
        assert_contiguous(&on_air);
        let mut on_oxygen = SPO2_SCALE_2_BELOW_93.to_vec();
        on_oxygen.extend(SPO2_SCALE_2_ON_OXYGEN);
        assert_contiguous(&on_oxygen);
        assert_eq!(
            SPO2_SCALE_2_BELOW_93.last().unwrap().high,
            Some(SPO2_SCALE_2_OXYGEN_DEPENDENT_FROM - 1)
        );
    }

    #[test]
    fn respiration_rate_row_by_row() {
        // ≤8 → 3 | 9–11 → 1 | 12–20 → 0 | 21–24 → 2 | ≥25 → 3
        check(
            &RESPIRATION_RATE,
            0,
            &[
                (0.0, 3),
                (8.0, 3),
                (9.0, 1),
                (11.0, 1),
                (12.0, 0),
                (20.0, 0),
                (21.0, 2),
                (24.0, 2),
                (25.0, 3),
                (60.0, 3),
            ],
        );
    }

    #[test]
    fn spo2_scale_1_row_by_row() {
        // ≤91 → 3 | 92–93 → 2 | 94–95 → 1 | ≥96 → 0
        check(
            &SPO2_SCALE_1,
            0,
            &[
                (50.0, 3),
                (91.0, 3),
                (92.0, 2),
                (93.0, 2),
                (94.0, 1),
                (95.0, 1),
                (96.0, 0),
                (100.0, 0),
            ],
        );
    }

    #[test]
    fn spo2_scale_2_row_by_row() {
        // ≤83 → 3 | 84–85 → 2 | 86–87 → 1 | 88–92 → 0 (air or oxygen)
        check(
            &SPO2_SCALE_2_BELOW_93,
            0,
            &[
                (50.0, 3),
                (83.0, 3),
                (84.0, 2),
                (85.0, 2),
                (86.0, 1),
                (87.0, 1),
                (88.0, 0),
                (92.0, 0),
            ],
        );
        // ≥93 on air → 0
        check(&SPO2_SCALE_2_ON_AIR, 0, &[(93.0, 0), (100.0, 0)]);
        // 93–94 on oxygen → 1 | 95–96 → 2 | ≥97 → 3
        check(
            &SPO2_SCALE_2_ON_OXYGEN,
            0,
            &[
                (93.0, 1),
                (94.0, 1),
                (95.0, 2),
                (96.0, 2),
                (97.0, 3),
                (100.0, 3),
            ],
        );
        assert_eq!(lookup(&SPO2_SCALE_2_ON_AIR, 92), None);
        assert_eq!(lookup(&SPO2_SCALE_2_ON_OXYGEN, 92), None);
    }

    #[test]
    fn air_or_oxygen() {
        assert_eq!(AIR_SCORE, 0);
        assert_eq!(OXYGEN_SCORE, 2);
    }

    #[test]
    fn systolic_blood_pressure_row_by_row() {
        // ≤90 → 3 | 91–100 → 2 | 101–110 → 1 | 111–219 → 0 | ≥220 → 3
        check(
            &SYSTOLIC_BP,
            0,
            &[
                (40.0, 3),
                (90.0, 3),
                (91.0, 2),
                (100.0, 2),
                (101.0, 1),
                (110.0, 1),
                (111.0, 0),
                (219.0, 0),
                (220.0, 3),
                (280.0, 3),
            ],
        );
    }

    #[test]
    fn pulse_row_by_row() {
        // ≤40 → 3 | 41–50 → 1 | 51–90 → 0 | 91–110 → 1 | 111–130 → 2 | ≥131 → 3
        check(
            &PULSE,
            0,
            &[
                (20.0, 3),
                (40.0, 3),
                (41.0, 1),
                (50.0, 1),
                (51.0, 0),
                (90.0, 0),
                (91.0, 1),
                (110.0, 1),
                (111.0, 2),
                (130.0, 2),
                (131.0, 3),
                (200.0, 3),
            ],
        );
    }

    #[test]
    fn consciousness_row_by_row() {
        assert_eq!(consciousness_score(Consciousness::Alert), 0);
        for level in [
            Consciousness::NewConfusion,
            Consciousness::Voice,
            Consciousness::Pain,
            Consciousness::Unresponsive,
        ] {
            assert_eq!(consciousness_score(level), 3, "{level:?}");
        }
    }

    #[test]
    fn temperature_row_by_row() {
        // ≤35.0 → 3 | 35.1–36.0 → 1 | 36.1–38.0 → 0 | 38.1–39.0 → 1 | ≥39.1 → 2
        check(
            &TEMPERATURE_TENTHS,
            1,
            &[
                (30.0, 3),
                (35.0, 3),
                (35.1, 1),
                (36.0, 1),
                (36.1, 0),
                (38.0, 0),
                (38.1, 1),
                (39.0, 1),
                (39.1, 2),
                (42.0, 2),
            ],
        );
    }

    #[test]
    fn values_between_rows_round_to_the_chart_resolution_half_away_from_zero() {
        // The two examples NEWS2.md names.
        check(
            &TEMPERATURE_TENTHS,
            1,
            &[(38.05, 1), (38.04, 0), (35.04, 3), (35.05, 1)],
        );
        check(
            &PULSE,
            0,
            &[(90.4, 0), (90.5, 1), (40.49, 3), (40.5, 1), (130.5, 3)],
        );
        check(
            &RESPIRATION_RATE,
            0,
            &[(8.4, 3), (8.5, 1), (20.49, 0), (20.5, 2), (24.5, 3)],
        );
        check(&SPO2_SCALE_1, 0, &[(91.4, 3), (91.5, 2), (95.5, 0)]);
        check(
            &SYSTOLIC_BP,
            0,
            &[(90.49, 3), (90.5, 2), (219.49, 0), (219.5, 3)],
        );
        assert_eq!(to_chart_units(38.05, 1), 381);
        assert_eq!(to_chart_units(36.15, 1), 362);
        assert_eq!(from_chart_units(381, 1), 38.1);
    }
}
