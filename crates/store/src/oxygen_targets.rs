//! Clinicians' prescribed target oxygen saturation ranges, one current one per patient.

use model::{PatientId, Timestamp};
use rusqlite::params;

use crate::{Store, StoreError};

#[derive(Clone, Debug, PartialEq)]
pub struct OxygenTargetRecord {
    pub low_percent: f64,
    pub high_percent: f64,
    pub set_by: String,
    pub set_at: Timestamp,
}

impl Store {
    /// Sets (or with `None` withdraws) a patient's prescribed target range.
    pub fn set_oxygen_target(
        &self,
        patient: &PatientId,
        target: Option<&OxygenTargetRecord>,
    ) -> Result<(), StoreError> {
        match target {
            Some(target) => self.conn.execute(
                "INSERT INTO oxygen_targets (patient_id, low_percent, high_percent, set_by, set_ms)
                 VALUES (?1, ?2, ?3, ?4, ?5)
                 ON CONFLICT (patient_id) DO UPDATE SET low_percent = excluded.low_percent,
                     high_percent = excluded.high_percent, set_by = excluded.set_by,
                     set_ms = excluded.set_ms",
                params![
                    patient.as_str(),
                    target.low_percent,
                    target.high_percent,
                    target.set_by,
                    target.set_at.millis()
                ],
            )?,
            None => self.conn.execute(
                "DELETE FROM oxygen_targets WHERE patient_id = ?1",
                [patient.as_str()],
            )?,
        };
        Ok(())
    }

    pub fn oxygen_targets(&self) -> Result<Vec<(PatientId, OxygenTargetRecord)>, StoreError> {
        let mut statement = self.conn.prepare_cached(
            "SELECT patient_id, low_percent, high_percent, set_by, set_ms FROM oxygen_targets
             ORDER BY patient_id",
        )?;
        let rows = statement.query_map([], |row| {
            Ok((
                PatientId::new(row.get::<_, String>(0)?),
                OxygenTargetRecord {
                    low_percent: row.get(1)?,
                    high_percent: row.get(2)?,
                    set_by: row.get(3)?,
                    set_at: Timestamp(row.get(4)?),
                },
            ))
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }
}
