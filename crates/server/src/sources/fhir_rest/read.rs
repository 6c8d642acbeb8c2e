//! Device data back out as FHIR: `GET /fhir/Observation/{offset}-{k}` finds the value in the
//! store's projection, or, when the projection has not reached it yet, reads the durable log's
//! record at `offset` (the log is the truth of device data, and a record is readable as soon
//! as its ingest was answered), and serves its `k`-th observation, counted across the record's
//! devices in log order, through `fhir::outbound`: a numeric as a vital-signs Observation, a
//! waveform chunk as one Observation with SampledData.

use durable_log::Offset;
use serde_json::Value;

use crate::api::AppState;
use crate::record::LogRecord;

/// `{offset}-{k}` as numbers; `None` for any other id.
pub fn parse_device_id(id: &str) -> Option<(u64, usize)> {
    let (offset, position) = id.split_once('-')?;
    let digits = |text: &str| !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit());
    if !digits(offset) || !digits(position) {
        return None;
    }
    Some((offset.parse().ok()?, position.parse().ok()?))
}

/// The device Observation `id`, or `None` if the log holds no such observation (a dead
/// letter, an offset not yet written or removed by retention, a position past the end).
pub async fn device_observation(state: &AppState, id: &str) -> Option<Value> {
    let (offset, position) = parse_device_id(id)?;
    if offset >= state.log.next_offset().0 {
        return None;
    }
    // The projection has it unless it arrived in the last moments: an indexed lookup.
    if let Ok(log_position) = u32::try_from(position) {
        let projected = state
            .stores
            .read(move |store| store.device_observation(offset, log_position))
            .await;
        if let Ok(Ok(Some(row))) = projected {
            let found = crate::api::fhir_record::device_search::stored(state.ward.catalog, &row)?;
            return Some(found.resource);
        }
    }
    let log = state.log.clone();
    // Opening a segment and skipping within it is blocking file I/O.
    let bytes = tokio::task::spawn_blocking(move || {
        let mut reader = log.read_from(Offset(offset)).ok()?;
        let (found, bytes) = reader.next()?.ok()?;
        (found.0 == offset).then_some(bytes)
    })
    .await
    .ok()??;
    let record = LogRecord::decode(&bytes).ok()?;
    if matches!(record, LogRecord::DeadLetter(_)) {
        return None;
    }
    let attributed = record
        .into_observation_records()
        .into_iter()
        .flat_map(|record| record.observations)
        .nth(position)?;
    let subject = fhir::outbound::Subject {
        patient: attributed.attribution.patient.map(|p| p.to_string()),
        room: attributed.attribution.room.map(|r| r.to_string()),
    };
    fhir::outbound::device_observation(state.ward.catalog, id, &attributed.observation, &subject)
}

#[cfg(test)]
mod tests {
    #[test]
    fn device_ids() {
        assert_eq!(super::parse_device_id("12-3"), Some((12, 3)));
        assert_eq!(super::parse_device_id("12-x"), None);
        assert_eq!(super::parse_device_id("a1b2"), None);
        assert_eq!(super::parse_device_id("-3"), None);
    }
}
