//! The calculator: input selection, scale use, completeness and bands.

use super::*;

const T0: i64 = 1_800_000_000_000;
const MIN: i64 = 60_000;

fn at(minutes: i64) -> Timestamp {
    Timestamp::from_millis(T0 + minutes * MIN)
}

fn input(parameter: Parameter, value: f64, minute: i64) -> News2Input {
    News2Input {
        parameter,
        metric: parameter.key().to_owned(),
        value,
        time: at(minute),
        quality: Quality::GOOD,
    }
}

fn artefact(parameter: Parameter, value: f64, minute: i64) -> News2Input {
    News2Input {
        quality: Quality {
            implausible: false,
            device_flagged: true,
        },
        ..input(parameter, value, minute)
    }
}

/// A full set of normal observations at `minute`, on air, alert: NEWS2 0.
fn normal_set(minute: i64) -> Vec<News2Input> {
    vec![
        input(Parameter::RespirationRate, 16.0, minute),
        input(Parameter::Spo2, 97.0, minute),
        input(Parameter::AirOrOxygen, 0.0, minute),
        input(Parameter::SystolicBp, 125.0, minute),
        input(Parameter::Pulse, 72.0, minute),
        input(
            Parameter::Consciousness,
            Consciousness::Alert.code(),
            minute,
        ),
        input(Parameter::Temperature, 36.8, minute),
    ]
}

fn with(mut inputs: Vec<News2Input>, extra: News2Input) -> Vec<News2Input> {
    inputs.push(extra);
    inputs
}

fn scale_2_context() -> RecordContext {
    RecordContext {
        conditions: vec![],
        oxygen_target: Some(OxygenTarget {
            low_percent: 88.0,
            high_percent: 92.0,
        }),
    }
}

fn score(inputs: &[News2Input], context: &RecordContext, now_minute: i64) -> News2Result {
    News2Calculator::default().score(inputs, context, at(now_minute))
}

#[test]
fn normal_observations_score_zero_and_are_complete() {
    let result = score(&normal_set(0), &RecordContext::default(), 1);
    assert_eq!(result.total, 0);
    assert!(result.complete);
    assert_eq!(result.band, Band::Zero);
    assert_eq!(result.scale, Spo2Scale::Scale1);
    assert_eq!(result.scale_reason, ScaleReason::NoScale2Indication);
    for parameter in Parameter::ALL {
        assert_eq!(
            result.parameter(parameter).sub_score(),
            Some(0),
            "{parameter:?}"
        );
    }
}

#[test]
fn the_breakdown_carries_value_time_and_metric() {
    let mut inputs = normal_set(0);
    inputs.push(News2Input {
        metric: "heart_rate".into(),
        ..input(Parameter::Pulse, 90.4, 3)
    });
    let result = score(&inputs, &RecordContext::default(), 5);
    assert_eq!(
        result.parameter(Parameter::Pulse),
        &ParameterOutcome::Scored {
            sub_score: 0,
            value: 90.4,
            charted: 90.0,
            time: at(3),
            metric: "heart_rate".into(),
        }
    );
}

#[test]
fn bands_follow_chart_4() {
    assert_eq!(Band::of(0, 0), Band::Zero);
    assert_eq!(Band::of(1, 1), Band::Low);
    assert_eq!(Band::of(4, 2), Band::Low);
    assert_eq!(Band::of(3, 3), Band::LowMedium);
    assert_eq!(Band::of(4, 3), Band::LowMedium);
    assert_eq!(Band::of(5, 2), Band::Medium);
    assert_eq!(Band::of(5, 3), Band::Medium);
    assert_eq!(Band::of(6, 3), Band::Medium);
    assert_eq!(Band::of(7, 2), Band::High);
    assert_eq!(Band::of(20, 3), Band::High);
}

#[test]
fn a_single_three_is_low_medium_through_the_calculator() {
    let inputs = with(normal_set(0), input(Parameter::RespirationRate, 8.0, 1));
    let result = score(&inputs, &RecordContext::default(), 2);
    assert_eq!(result.total, 3);
    assert_eq!(result.band, Band::LowMedium);
    // New confusion scores 3 like V, P or U.
    let inputs = with(
        normal_set(0),
        input(
            Parameter::Consciousness,
            Consciousness::NewConfusion.code(),
            1,
        ),
    );
    let result = score(&inputs, &RecordContext::default(), 2);
    assert_eq!(
        result.parameter(Parameter::Consciousness).sub_score(),
        Some(3)
    );
    assert_eq!(result.band, Band::LowMedium);
}

#[test]
fn oxygen_scores_two_and_a_sick_patient_is_high() {
    let inputs = vec![
        input(Parameter::RespirationRate, 26.0, 0), // 3
        input(Parameter::Spo2, 92.0, 0),            // 2 (Scale 1)
        input(Parameter::AirOrOxygen, 2.0, 0),      // 2
        input(Parameter::SystolicBp, 95.0, 0),      // 2
        input(Parameter::Pulse, 115.0, 0),          // 2
        input(Parameter::Consciousness, 0.0, 0),    // 0
        input(Parameter::Temperature, 39.2, 0),     // 2
    ];
    let result = score(&inputs, &RecordContext::default(), 0);
    assert_eq!(result.total, 13);
    assert!(result.complete);
    assert_eq!(result.band, Band::High);
}

#[test]
fn a_missing_parameter_makes_the_score_incomplete_never_normal() {
    let inputs: Vec<_> = normal_set(0)
        .into_iter()
        .filter(|i| i.parameter != Parameter::Temperature)
        .collect();
    let result = score(&inputs, &RecordContext::default(), 1);
    assert!(!result.complete);
    assert_eq!(
        result.parameter(Parameter::Temperature),
        &ParameterOutcome::Missing
    );
    assert_eq!(result.parameter(Parameter::Temperature).sub_score(), None);
    let unscored: Vec<_> = result.unscored().map(|p| p.parameter).collect();
    assert_eq!(unscored, vec![Parameter::Temperature]);
}

#[test]
fn freshness_windows_are_inclusive_at_their_edge() {
    // Default windows: 60 minutes for respiration rate, SpO2 and pulse; 240 for the others.
    let inputs = normal_set(0);
    let at_edge = score(&inputs, &RecordContext::default(), 60);
    assert!(at_edge.complete);
    let past_edge =
        News2Calculator::default().score(&inputs, &RecordContext::default(), at(60).plus_millis(1));
    assert!(!past_edge.complete);
    for parameter in [
        Parameter::RespirationRate,
        Parameter::Spo2,
        Parameter::Pulse,
    ] {
        assert_eq!(
            past_edge.parameter(parameter),
            &ParameterOutcome::Stale {
                time: at(0),
                age_millis: 60 * MIN + 1,
                window_millis: 60 * MIN,
            },
            "{parameter:?}"
        );
    }
    for parameter in [
        Parameter::AirOrOxygen,
        Parameter::SystolicBp,
        Parameter::Consciousness,
        Parameter::Temperature,
    ] {
        assert!(
            past_edge.parameter(parameter).sub_score().is_some(),
            "{parameter:?}"
        );
    }
    let later = score(&inputs, &RecordContext::default(), 241);
    assert_eq!(later.unscored().count(), 7);
}

#[test]
fn freshness_windows_are_configurable_per_parameter() {
    let mut config = News2Config::default();
    config.set_freshness_millis(Parameter::Temperature, 10 * MIN);
    let calculator = News2Calculator::new(config);
    let result = calculator.score(&normal_set(0), &RecordContext::default(), at(11));
    let unscored: Vec<_> = result.unscored().map(|p| p.parameter).collect();
    assert_eq!(unscored, vec![Parameter::Temperature]);
}

#[test]
fn artefacts_are_never_used() {
    // A good value at 0, then a flagged one at 5: the good one is used.
    let inputs = with(normal_set(0), artefact(Parameter::Spo2, 70.0, 5));
    let result = score(&inputs, &RecordContext::default(), 6);
    assert_eq!(result.parameter(Parameter::Spo2).sub_score(), Some(0));
    // Implausible values count as artefacts too.
    let mut implausible = input(Parameter::Spo2, 20.0, 5);
    implausible.quality.implausible = true;
    let result = score(
        &with(normal_set(0), implausible),
        &RecordContext::default(),
        6,
    );
    assert_eq!(result.parameter(Parameter::Spo2).sub_score(), Some(0));
    // Only artefacts within the window: not scored, and said so.
    let mut inputs: Vec<_> = normal_set(0)
        .into_iter()
        .filter(|i| i.parameter != Parameter::Spo2)
        .collect();
    inputs.push(artefact(Parameter::Spo2, 70.0, 5));
    let result = score(&inputs, &RecordContext::default(), 6);
    assert_eq!(
        result.parameter(Parameter::Spo2),
        &ParameterOutcome::ArtefactOnly { time: at(5) }
    );
    assert!(!result.complete);
    // A good but stale value and a fresh artefact: artefact is the reason (the newer fact).
    let inputs = with(normal_set(-120), artefact(Parameter::Spo2, 70.0, 5));
    let result = score(&inputs, &RecordContext::default(), 6);
    assert_eq!(
        result.parameter(Parameter::Spo2),
        &ParameterOutcome::ArtefactOnly { time: at(5) }
    );
}

#[test]
fn the_latest_usable_value_wins_and_future_values_are_not_known_yet() {
    let inputs = vec![
        input(Parameter::Pulse, 72.0, 0),
        input(Parameter::Pulse, 120.0, 10),
        input(Parameter::Pulse, 45.0, 5),
        input(Parameter::Pulse, 200.0, 30),
    ];
    let result = score(&inputs, &RecordContext::default(), 20);
    assert_eq!(result.parameter(Parameter::Pulse).sub_score(), Some(2));
    let only_future = vec![input(Parameter::Pulse, 72.0, 30)];
    let result = score(&only_future, &RecordContext::default(), 20);
    assert_eq!(
        result.parameter(Parameter::Pulse),
        &ParameterOutcome::Missing
    );
}

#[test]
fn scale_2_uses_air_or_oxygen_at_93_and_above() {
    let on_air = |spo2: f64| {
        let inputs = with(normal_set(0), input(Parameter::Spo2, spo2, 1));
        score(&inputs, &scale_2_context(), 2)
    };
    let on_oxygen = |spo2: f64| {
        let mut inputs = with(normal_set(0), input(Parameter::Spo2, spo2, 1));
        inputs.push(input(Parameter::AirOrOxygen, 2.0, 1));
        score(&inputs, &scale_2_context(), 2)
    };
    for (spo2, air, oxygen) in [
        (83.0, 3, 3),
        (84.0, 2, 2),
        (85.0, 2, 2),
        (86.0, 1, 1),
        (87.0, 1, 1),
        (88.0, 0, 0),
        (92.0, 0, 0),
        (93.0, 0, 1),
        (94.0, 0, 1),
        (95.0, 0, 2),
        (96.0, 0, 2),
        (97.0, 0, 3),
        (100.0, 0, 3),
    ] {
        let result = on_air(spo2);
        assert_eq!(result.scale, Spo2Scale::Scale2);
        assert_eq!(
            result.parameter(Parameter::Spo2).sub_score(),
            Some(air),
            "{spo2} on air"
        );
        let result = on_oxygen(spo2);
        assert_eq!(
            result.parameter(Parameter::Spo2).sub_score(),
            Some(oxygen),
            "{spo2} on oxygen"
        );
        // Oxygen itself scores 2 on top, on both scales.
        assert_eq!(
            result.parameter(Parameter::AirOrOxygen).sub_score(),
            Some(2)
        );
    }
}

#[test]
fn scale_2_at_93_or_more_without_air_or_oxygen_cannot_be_scored() {
    let inputs: Vec<_> = with(normal_set(0), input(Parameter::Spo2, 95.0, 1))
        .into_iter()
        .filter(|i| i.parameter != Parameter::AirOrOxygen)
        .collect();
    let result = score(&inputs, &scale_2_context(), 2);
    assert_eq!(
        result.parameter(Parameter::Spo2),
        &ParameterOutcome::NeedsAirOrOxygen {
            value: 95.0,
            time: at(1)
        }
    );
    assert!(!result.complete);
    // Below 93 it does not matter.
    let inputs: Vec<_> = with(normal_set(0), input(Parameter::Spo2, 90.0, 1))
        .into_iter()
        .filter(|i| i.parameter != Parameter::AirOrOxygen)
        .collect();
    let result = score(&inputs, &scale_2_context(), 2);
    assert_eq!(result.parameter(Parameter::Spo2).sub_score(), Some(0));
}

#[test]
fn invalid_consciousness_codes_are_not_scored() {
    for value in [5.0, -1.0, 1.5] {
        let inputs = with(normal_set(0), input(Parameter::Consciousness, value, 1));
        let result = score(&inputs, &RecordContext::default(), 2);
        assert_eq!(
            result.parameter(Parameter::Consciousness),
            &ParameterOutcome::Invalid { value, time: at(1) },
        );
    }
}

#[test]
fn inputs_come_from_catalog_observations() {
    let catalog = Catalog::embedded();
    let observation = |metric: &str, value: f64| Observation {
        device_id: model::DeviceId::new("dev-1"),
        metric: metric.into(),
        value: ObservedValue::Numeric(value),
        device_time: at(0),
        received_time: at(0),
        body_site: None,
        quality: Quality::GOOD,
        reference_range: None,
    };
    for (metric, parameter) in [
        ("respiration_rate", Parameter::RespirationRate),
        ("spo2", Parameter::Spo2),
        ("inhaled_oxygen_flow", Parameter::AirOrOxygen),
        ("nibp_systolic", Parameter::SystolicBp),
        ("heart_rate", Parameter::Pulse),
        ("pulse_rate", Parameter::Pulse),
        ("consciousness_acvpu", Parameter::Consciousness),
        ("body_temperature", Parameter::Temperature),
    ] {
        let input = News2Input::from_observation(&observation(metric, 1.0), catalog)
            .unwrap_or_else(|| panic!("{metric} feeds no parameter"));
        assert_eq!(input.parameter, parameter, "{metric}");
    }
    assert!(News2Input::from_observation(&observation("nibp_diastolic", 70.0), catalog).is_none());
    assert!(News2Input::from_observation(&observation("room_co2", 400.0), catalog).is_none());
    // Every catalog NEWS2 column names a parameter this crate knows.
    for metric in catalog.metrics() {
        if let Some(key) = &metric.news2 {
            assert!(Parameter::from_key(key).is_some(), "{}: {key}", metric.key);
        }
    }
    // Every parameter has at least one catalog metric feeding it.
    for parameter in Parameter::ALL {
        assert!(
            catalog
                .metrics()
                .iter()
                .any(|m| m.news2.as_deref() == Some(parameter.key())),
            "no metric feeds {parameter:?}"
        );
    }
}
