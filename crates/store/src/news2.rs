//! NEWS2 history: each change of a patient's score, with the sub-score of every parameter.

use clinical::{Band, News2Result, Parameter};
use model::{PatientId, Timestamp};
use rusqlite::params;

use crate::{Store, StoreError};

/// A stored NEWS2 result: enough for a chart of the score over time and for SQL.
#[derive(Clone, Debug, PartialEq)]
pub struct StoredNews2 {
    pub at: Timestamp,
    pub total: u8,
    pub band: Band,
    pub complete: bool,
    pub scale: u8,
    pub scale_reason: String,
    /// In chart order ([`Parameter::ALL`]); `None` where the parameter was not scored.
    pub sub_scores: [Option<u8>; 7],
}

impl Store {
    pub fn record_news2(&mut self, scores: &[(PatientId, News2Result)]) -> Result<(), StoreError> {
        if scores.is_empty() {
            return Ok(());
        }
        let tx = self.conn.transaction()?;
        {
            let mut insert = tx.prepare_cached(
                "INSERT INTO news2_scores (patient_id, at_ms, total, band, complete, scale,
                     scale_reason, respiration_rate_score, spo2_score, air_or_oxygen_score,
                     systolic_bp_score, pulse_score, consciousness_score, temperature_score)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14)",
            )?;
            for (patient, result) in scores {
                let sub = |parameter: Parameter| result.parameter(parameter).sub_score();
                insert.execute(params![
                    patient.as_str(),
                    result.at.millis(),
                    result.total,
                    result.band.key(),
                    result.complete,
                    result.scale.number(),
                    result.scale_reason.describe(),
                    sub(Parameter::RespirationRate),
                    sub(Parameter::Spo2),
                    sub(Parameter::AirOrOxygen),
                    sub(Parameter::SystolicBp),
                    sub(Parameter::Pulse),
                    sub(Parameter::Consciousness),
                    sub(Parameter::Temperature),
                ])?;
            }
        }
        tx.commit()?;
        Ok(())
    }

    /// A patient's NEWS2 changes in `[from, to)`, oldest first, at most `limit`.
    pub fn news2_history(
        &self,
        patient: &PatientId,
        from: Timestamp,
        to: Timestamp,
        limit: usize,
    ) -> Result<Vec<StoredNews2>, StoreError> {
        let mut statement = self.conn.prepare_cached(
            "SELECT at_ms, total, band, complete, scale, scale_reason, respiration_rate_score,
                 spo2_score, air_or_oxygen_score, systolic_bp_score, pulse_score,
                 consciousness_score, temperature_score
             FROM news2_scores WHERE patient_id = ?1 AND at_ms >= ?2 AND at_ms < ?3
             ORDER BY at_ms, id LIMIT ?4",
        )?;
        let rows = statement.query_map(
            params![patient.as_str(), from.millis(), to.millis(), limit as i64],
            |row| {
                let mut sub_scores = [None; 7];
                for (i, slot) in sub_scores.iter_mut().enumerate() {
                    *slot = row.get::<_, Option<u8>>(6 + i)?;
                }
                Ok((
                    row.get::<_, i64>(0)?,
                    row.get::<_, u8>(1)?,
                    row.get::<_, String>(2)?,
                    row.get::<_, bool>(3)?,
                    row.get::<_, u8>(4)?,
                    row.get::<_, String>(5)?,
                    sub_scores,
                ))
            },
        )?;
        let mut history = Vec::new();
        for row in rows {
            let (at, total, band, complete, scale, scale_reason, sub_scores) = row?;
            history.push(StoredNews2 {
                at: Timestamp(at),
                total,
                band: Band::from_key(&band)
                    .ok_or_else(|| StoreError::Corrupt(format!("NEWS2 band `{band}`")))?,
                complete,
                scale,
                scale_reason,
                sub_scores,
            });
        }
        Ok(history)
    }
}
