//! Device observations in FHIR search: `GET /fhir/Observation?…` answers from the record and
//! from the device data projected out of the log (`vitals`, `waveform_chunks`), as one result
//! set with one `total`, one order and one paging.
//!
//! What a parameter means for device data is decided here, exactly:
//! - `patient`, `subject`, `device`, `date`, `status` (artefacts are `preliminary`), `_id` and
//!   `_lastUpdated` differ from row to row and become SQL tests (`store::DeviceTest`);
//! - every other Observation parameter (`code`, `category`, `identifier`,
//!   `encounter`, `component-code`) is the same for all values of a metric, so the clause is
//!   evaluated once per catalog metric, by the record's own matcher, on the FHIR form that
//!   metric's values take (`fhir::outbound`), and becomes "the metric is one of these".
//!
//! Device rows are rendered by the same mapper as `GET /fhir/Observation/{offset}-{k}`, so a
//! search result reads back identically by its id.

use model::{Catalog, MetricKind, ObservedValue, Timestamp, WaveformChunk};
use record::date::DateRange;
use record::memory::OrderKey;
use record::search::Prefix;
use record::{ClauseValue, RecordError, SearchPage, SearchRequest, StoredResource, index_values};
use serde_json::Value;
use store::{
    DeviceObservationFilter, DeviceObservationRow, DeviceSortKey, DeviceTest, PointTest, Store,
};

/// How deep into a result set paging may go when device data joins it: every page merges the
/// first `_offset + _count` results of both sources.
pub const MAX_DEPTH: usize = 10_000;

/// The Observation parameters whose value differs between two values of the same metric.
const PER_ROW_PARAMS: &[&str] = &[
    "patient",
    "subject",
    "device",
    "date",
    // `final`, or `preliminary` for an artefact.
    "status",
    "_id",
    "_lastUpdated",
];

/// The Observation parameters whose value is the same for every value of a metric (in the FHIR
/// form `fhir::outbound` gives device data). A parameter added to the record must be put in one
/// of the two lists; a test checks.
const PER_METRIC_PARAMS: &[&str] = &[
    "code",
    "category",
    "identifier",
    "encounter",
    "component-code",
];

/// A search of the record, with device observations joined in when it searches Observations.
pub fn search(
    store: &Store,
    catalog: &Catalog,
    request: &SearchRequest,
) -> Result<SearchPage, RecordError> {
    if request.resource_type != "Observation" {
        return store.fhir_search(request);
    }
    let depth = request.offset + request.count;
    if depth > MAX_DEPTH {
        return Err(RecordError::invalid(format!(
            "_offset + _count may be at most {MAX_DEPTH} for Observations, which include device \
             data; narrow the search with `date`"
        )));
    }
    let Some(filter) = filter(catalog, request) else {
        return store.fhir_search(request);
    };
    let mut record_request = request.clone();
    record_request.offset = 0;
    record_request.count = depth;
    let record_page = store.fhir_search(&record_request)?;
    let (device_total, rows) = store
        .search_device_observations(&filter, &sort(request), depth)
        .map_err(|error| RecordError::store(error.to_string()))?;

    let mut merged: Vec<(OrderKey, StoredResource)> = record_page
        .resources
        .into_iter()
        .chain(rows.iter().filter_map(|row| stored(catalog, row)))
        .map(|found| {
            let values = index_values(&found.resource);
            (OrderKey::of(request, &found, &values), found)
        })
        .collect();
    // Both inputs are in this order already; a stable sort of the two runs is their merge.
    merged.sort_by(|(a, _), (b, _)| a.cmp(b));
    Ok(SearchPage {
        total: record_page.total + device_total as usize,
        resources: merged
            .into_iter()
            .skip(request.offset)
            .take(request.count)
            .map(|(_, found)| found)
            .collect(),
    })
}

/// The newest `max` device observations of each metric the search allows, for `$lastn`.
pub fn latest_per_metric(
    store: &Store,
    catalog: &Catalog,
    request: &SearchRequest,
    max: usize,
) -> Result<Vec<StoredResource>, RecordError> {
    let Some(filter) = filter(catalog, request) else {
        return Ok(Vec::new());
    };
    let newest_first = [(DeviceSortKey::Effective, true)];
    let mut out = Vec::new();
    for metric in allowed_metrics(catalog, request) {
        let mut one_metric = filter.clone();
        one_metric
            .all_of
            .push(vec![DeviceTest::MetricIn(vec![metric])]);
        let (_, rows) = store
            .search_device_observations(&one_metric, &newest_first, max)
            .map_err(|error| RecordError::store(error.to_string()))?;
        out.extend(rows.iter().filter_map(|row| stored(catalog, row)));
    }
    Ok(out)
}

/// A device observation as the record's search results carry resources: version 1, last
/// updated when it was received.
pub fn stored(catalog: &Catalog, row: &DeviceObservationRow) -> Option<StoredResource> {
    let id = row.fhir_id();
    let subject = fhir::outbound::Subject {
        patient: row.patient_id.as_ref().map(|p| p.to_string()),
        room: row.room_id.as_ref().map(|r| r.to_string()),
    };
    let resource = fhir::outbound::device_observation(catalog, &id, &row.observation, &subject)?;
    Some(StoredResource {
        resource_type: "Observation".into(),
        id,
        version: 1,
        last_updated: row.observation.received_time.millis(),
        deleted: false,
        resource,
    })
}

/// The store filter for a request's clauses; `None` when no device observation can match.
fn filter(catalog: &Catalog, request: &SearchRequest) -> Option<DeviceObservationFilter> {
    let mut all_of = vec![vec![DeviceTest::MetricIn(allowed_metrics(
        catalog, request,
    ))]];
    for clause in &request.clauses {
        if !PER_ROW_PARAMS.contains(&clause.param.as_str()) {
            continue; // in allowed_metrics
        }
        // The clause's values are ORed: one that every row passes makes the clause no test.
        let mut group = Some(Vec::new());
        for value in &clause.values {
            match (row_test(catalog, &clause.param, value), group.as_mut()) {
                (Test::Always, _) => group = None,
                (Test::Row(tests), Some(group)) => group.extend(tests),
                _ => {}
            }
        }
        match group {
            None => {}
            Some(group) if group.is_empty() => return None,
            Some(group) => all_of.push(group),
        }
    }
    Some(DeviceObservationFilter { all_of })
}

/// The catalog metrics whose values pass every clause that is the same for a whole metric.
fn allowed_metrics(catalog: &Catalog, request: &SearchRequest) -> Vec<String> {
    catalog
        .metrics()
        .iter()
        .filter_map(|metric| {
            let template = template(catalog, &metric.key, metric.kind)?;
            let values = index_values(&template);
            let passes = request
                .clauses
                .iter()
                .filter(|clause| PER_METRIC_PARAMS.contains(&clause.param.as_str()))
                .all(|clause| {
                    let of_param: Vec<_> = values
                        .iter()
                        .filter(|(name, _)| *name == clause.param)
                        .map(|(_, value)| value)
                        .collect();
                    clause
                        .values
                        .iter()
                        .any(|value| value.matches("", 0, &of_param))
                });
            passes.then(|| metric.key.clone())
        })
        .collect()
}

/// The `status` index values of a device observation that is, or is not, an artefact.
fn status_values(catalog: &Catalog, artefact: bool) -> Vec<record::IndexValue> {
    let metric = &catalog.metrics()[0];
    let mut observation = template_observation(&metric.key, metric.kind);
    observation.quality.device_flagged = artefact;
    let resource = render_template(catalog, &observation).unwrap_or_default();
    index_values(&resource)
        .into_iter()
        .filter(|(name, _)| *name == "status")
        .map(|(_, value)| value)
        .collect()
}

/// The FHIR form of a value of `metric`, for the parameters that do not depend on the value.
fn template(catalog: &Catalog, metric: &str, kind: MetricKind) -> Option<Value> {
    render_template(catalog, &template_observation(metric, kind))
}

fn render_template(catalog: &Catalog, observation: &model::Observation) -> Option<Value> {
    let subject = fhir::outbound::Subject {
        patient: Some("template".into()),
        room: None,
    };
    fhir::outbound::device_observation(catalog, "0-0", observation, &subject)
}

fn template_observation(metric: &str, kind: MetricKind) -> model::Observation {
    let value = match kind {
        MetricKind::Numeric => ObservedValue::Numeric(0.0),
        MetricKind::Waveform => ObservedValue::Waveform(WaveformChunk {
            sample_rate_hz: 1.0,
            samples: vec![0.0],
        }),
    };
    model::Observation {
        device_id: "template".into(),
        metric: metric.to_owned(),
        value,
        device_time: Timestamp::from_millis(0),
        received_time: Timestamp::from_millis(0),
        body_site: None,
        quality: model::Quality::GOOD,
        reference_range: None,
    }
}

enum Test {
    /// Every device observation matches.
    Always,
    Never,
    /// Matches where any of these holds.
    Row(Vec<DeviceTest>),
}

/// One value of a per-row parameter as store tests.
fn row_test(catalog: &Catalog, param: &str, value: &ClauseValue) -> Test {
    let row = |test| Test::Row(vec![test]);
    match (param, value) {
        ("status", value) => {
            let matches = |artefact| {
                let values = status_values(catalog, artefact);
                value.matches("", 0, &values.iter().collect::<Vec<_>>())
            };
            match (matches(false), matches(true)) {
                (true, true) => Test::Always,
                (true, false) => row(DeviceTest::Artefact(false)),
                (false, true) => row(DeviceTest::Artefact(true)),
                (false, false) => Test::Never,
            }
        }
        ("patient", ClauseValue::Reference { target_type, id }) => match target_type.as_deref() {
            None | Some("Patient") => row(DeviceTest::Patient(id.clone())),
            Some(_) => Test::Never,
        },
        ("patient", ClauseValue::Missing(missing)) => row(DeviceTest::HasPatient(!missing)),
        ("subject", ClauseValue::Reference { target_type, id }) => match target_type.as_deref() {
            Some("Patient") => row(DeviceTest::Patient(id.clone())),
            Some("Location") => row(DeviceTest::Room(id.clone())),
            None => Test::Row(vec![
                DeviceTest::Patient(id.clone()),
                DeviceTest::Room(id.clone()),
            ]),
            Some(_) => Test::Never,
        },
        ("subject", ClauseValue::Missing(missing)) => row(DeviceTest::HasSubject(!missing)),
        ("device", ClauseValue::Reference { target_type, id }) => match target_type.as_deref() {
            None | Some("Device") => row(DeviceTest::Device(id.clone())),
            Some(_) => Test::Never,
        },
        ("device" | "date", ClauseValue::Missing(missing)) => {
            if *missing {
                Test::Never
            } else {
                Test::Always
            }
        }
        ("date", ClauseValue::Date(prefix, range)) => {
            row(DeviceTest::Effective(point_test(*prefix, *range)))
        }
        (_, ClauseValue::LastUpdated(prefix, range)) => {
            row(DeviceTest::Received(point_test(*prefix, *range)))
        }
        (_, ClauseValue::Id(id)) => match crate::sources::fhir_rest::read::parse_device_id(id) {
            Some((log_offset, position)) => match u32::try_from(position) {
                Ok(log_position) => row(DeviceTest::Id {
                    log_offset,
                    log_position,
                }),
                Err(_) => Test::Never,
            },
            None => Test::Never,
        },
        // A value of a kind the parameter does not take was refused when the request was
        // parsed; nothing matches it here either.
        _ => Test::Never,
    }
}

/// `Prefix::matches` for a resource whose range is one instant `t`, as a test of `t`.
fn point_test(prefix: Prefix, range: DateRange) -> PointTest {
    let (low, high) = (range.low, range.high);
    match prefix {
        Prefix::Eq => PointTest::Between(low, high),
        Prefix::Ne => PointTest::NotBetween(low, high),
        Prefix::Gt | Prefix::Sa => PointTest::After(high),
        Prefix::Lt | Prefix::Eb => PointTest::Before(low),
        Prefix::Ge => PointTest::AtLeast(low),
        Prefix::Le => PointTest::AtMost(high),
    }
}

/// The request's `_sort` as device sort keys. A key device observations have no value for
/// sorts them all alike (last, as the record sorts a missing value), so it adds nothing.
fn sort(request: &SearchRequest) -> Vec<(DeviceSortKey, bool)> {
    request
        .sort
        .iter()
        .filter_map(|key| {
            let device_key = match key.param.as_str() {
                "date" => DeviceSortKey::Effective,
                "_lastUpdated" => DeviceSortKey::Received,
                "_id" => DeviceSortKey::Id,
                _ => return None,
            };
            Some((device_key, key.descending))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_observation_parameter_is_classified() {
        for def in record::search_params_of("Observation") {
            assert!(
                PER_ROW_PARAMS.contains(&def.name) != PER_METRIC_PARAMS.contains(&def.name),
                "`{}` must be in exactly one of PER_ROW_PARAMS and PER_METRIC_PARAMS",
                def.name
            );
        }
    }

    /// The SQL point tests say what the record's prefix semantics say for an instant.
    #[test]
    fn point_tests_agree_with_the_prefix_semantics() {
        let prefixes = [
            Prefix::Eq,
            Prefix::Ne,
            Prefix::Gt,
            Prefix::Lt,
            Prefix::Ge,
            Prefix::Le,
            Prefix::Sa,
            Prefix::Eb,
        ];
        let range = DateRange { low: 10, high: 19 };
        for prefix in prefixes {
            for t in 0..30 {
                let expected = prefix.matches(DateRange { low: t, high: t }, range);
                let got = match point_test(prefix, range) {
                    PointTest::Between(low, high) => low <= t && t <= high,
                    PointTest::NotBetween(low, high) => !(low <= t && t <= high),
                    PointTest::After(bound) => t > bound,
                    PointTest::Before(bound) => t < bound,
                    PointTest::AtLeast(bound) => t >= bound,
                    PointTest::AtMost(bound) => t <= bound,
                };
                assert_eq!(got, expected, "{prefix:?} at {t}");
            }
        }
    }

    #[test]
    fn metric_parameters_select_metrics_by_their_fhir_form() {
        let catalog = Catalog::embedded();
        let pairs = |query: &[(&str, &str)]| -> Vec<(String, String)> {
            query
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect()
        };
        let allowed = |query: &[(&str, &str)]| {
            allowed_metrics(
                catalog,
                &SearchRequest::parse("Observation", &pairs(query)).unwrap(),
            )
        };
        assert_eq!(allowed(&[("code", "http://loinc.org|59408-5")]), ["spo2"]);
        assert_eq!(allowed(&[("code", "59408-5")]), ["spo2"]);
        let vitals = allowed(&[("category", "vital-signs")]);
        assert!(vitals.contains(&"heart_rate".to_owned()), "{vitals:?}");
        assert!(!vitals.contains(&"ecg_ii".to_owned()), "{vitals:?}");
        let not_spo2 = allowed(&[("code:not", "http://loinc.org|59408-5")]);
        assert_eq!(not_spo2.len(), catalog.metrics().len() - 1);
        // Device data carries no encounter: only `:missing=true` keeps it.
        assert!(allowed(&[("encounter", "Encounter/e1")]).is_empty());
        assert_eq!(
            allowed(&[("encounter:missing", "true")]).len(),
            catalog.metrics().len()
        );
        let status = |code| {
            row_test(
                catalog,
                "status",
                &ClauseValue::Token {
                    system: record::search::TokenSystem::Any,
                    code: Some(code),
                    negate: false,
                },
            )
        };
        assert!(
            matches!(status("final".into()), Test::Row(t) if t == [DeviceTest::Artefact(false)])
        );
        assert!(
            matches!(status("preliminary".into()), Test::Row(t) if t == [DeviceTest::Artefact(true)])
        );
        assert!(matches!(status("amended".into()), Test::Never));
    }
}
