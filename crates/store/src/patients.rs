//! Patients, their conditions, and who lay in which bed when.

use model::{BedId, PatientId, Timestamp};
use rusqlite::{OptionalExtension, params};

use crate::{ConditionRecord, PatientRecord, Stay, Store, StoreError};

impl Store {
    /// Inserts or replaces a patient; the conditions replace the stored ones as a whole, as the
    /// record is the source of truth for them.
    pub fn upsert_patient(&mut self, patient: &PatientRecord) -> Result<(), StoreError> {
        let tx = self.conn.transaction()?;
        tx.execute(
            "INSERT INTO patients (id, name, birth_date, sex) VALUES (?1, ?2, ?3, ?4)
             ON CONFLICT (id) DO UPDATE SET name = excluded.name,
                 birth_date = excluded.birth_date, sex = excluded.sex",
            params![
                patient.id.as_str(),
                patient.name,
                patient.birth_date,
                patient.sex
            ],
        )?;
        tx.execute(
            "DELETE FROM conditions WHERE patient_id = ?1",
            [patient.id.as_str()],
        )?;
        {
            let mut insert = tx.prepare_cached(
                "INSERT INTO conditions (patient_id, seq, system, code, display, body_site)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            )?;
            for (seq, condition) in patient.conditions.iter().enumerate() {
                insert.execute(params![
                    patient.id.as_str(),
                    seq as i64,
                    condition.system,
                    condition.code,
                    condition.display,
                    condition.body_site
                ])?;
            }
        }
        tx.commit()?;
        Ok(())
    }

    pub fn patient(&self, id: &PatientId) -> Result<Option<PatientRecord>, StoreError> {
        let patient = self
            .conn
            .prepare_cached("SELECT id, name, birth_date, sex FROM patients WHERE id = ?1")?
            .query_row([id.as_str()], patient_from_row)
            .optional()?;
        let Some(mut patient) = patient else {
            return Ok(None);
        };
        patient.conditions = self.conditions_of(id)?;
        Ok(Some(patient))
    }

    /// Every patient with their conditions, ordered by id.
    pub fn patients(&self) -> Result<Vec<PatientRecord>, StoreError> {
        let mut patients: Vec<PatientRecord> = self
            .conn
            .prepare_cached("SELECT id, name, birth_date, sex FROM patients ORDER BY id")?
            .query_map([], patient_from_row)?
            .collect::<Result<_, _>>()?;
        for patient in &mut patients {
            patient.conditions = self.conditions_of(&patient.id)?;
        }
        Ok(patients)
    }

    fn conditions_of(&self, id: &PatientId) -> Result<Vec<ConditionRecord>, StoreError> {
        Ok(self
            .conn
            .prepare_cached(
                "SELECT system, code, display, body_site FROM conditions
                 WHERE patient_id = ?1 ORDER BY seq",
            )?
            .query_map([id.as_str()], |row| {
                Ok(ConditionRecord {
                    system: row.get(0)?,
                    code: row.get(1)?,
                    display: row.get(2)?,
                    body_site: row.get(3)?,
                })
            })?
            .collect::<Result<_, _>>()?)
    }

    /// Puts `patient` in `bed` from `from`. If the patient is in another bed, this is a transfer:
    /// that stay ends at `from`. The bed must be free at `from` (discharge its occupant first).
    pub fn admit(
        &mut self,
        patient: &PatientId,
        bed: &BedId,
        from: Timestamp,
    ) -> Result<(), StoreError> {
        let tx = self.conn.transaction()?;
        let patient_known: bool = tx.query_row(
            "SELECT EXISTS (SELECT 1 FROM patients WHERE id = ?1)",
            [patient.as_str()],
            |row| row.get(0),
        )?;
        if !patient_known {
            return Err(StoreError::PatientNotFound);
        }
        let bed_known: bool = tx.query_row(
            "SELECT EXISTS (SELECT 1 FROM beds WHERE id = ?1)",
            [bed.as_str()],
            |row| row.get(0),
        )?;
        if !bed_known {
            return Err(StoreError::NotFound {
                what: "bed",
                id: bed.to_string(),
            });
        }
        let bed_holder: Option<String> = tx
            .query_row(
                "SELECT patient_id FROM bed_occupancy WHERE bed_id = ?1 AND to_ms IS NULL",
                [bed.as_str()],
                |row| row.get(0),
            )
            .optional()?;
        match bed_holder {
            // Admitting the patient to the bed they are already in changes nothing.
            Some(holder) if holder == patient.as_str() => return Ok(()),
            Some(_) => {
                return Err(StoreError::BedOccupied {
                    bed: bed.to_string(),
                });
            }
            None => {}
        }
        end_open_stay(&tx, patient, from)?;
        tx.execute(
            "INSERT INTO bed_occupancy (patient_id, bed_id, from_ms) VALUES (?1, ?2, ?3)",
            params![patient.as_str(), bed.as_str(), from.millis()],
        )?;
        tx.commit()?;
        Ok(())
    }

    /// Ends the patient's open stay at `at`.
    pub fn discharge(&mut self, patient: &PatientId, at: Timestamp) -> Result<(), StoreError> {
        let tx = self.conn.transaction()?;
        if !end_open_stay(&tx, patient, at)? {
            return Err(StoreError::NotAdmitted);
        }
        tx.commit()?;
        Ok(())
    }

    /// Who lay in `bed` at instant `t` (stays are `[from, to)`: at a transfer's instant the
    /// incoming patient holds the bed).
    pub fn occupancy_at(&self, bed: &BedId, t: Timestamp) -> Result<Option<Stay>, StoreError> {
        Ok(self
            .conn
            .prepare_cached(
                "SELECT patient_id, bed_id, from_ms, to_ms FROM bed_occupancy
                 WHERE bed_id = ?1 AND from_ms <= ?2 AND (to_ms IS NULL OR to_ms > ?2)
                 ORDER BY from_ms DESC LIMIT 1",
            )?
            .query_row(params![bed.as_str(), t.millis()], stay_from_row)
            .optional()?)
    }

    /// Every open stay as `(bed, patient, since)`, ordered by bed.
    pub fn current_occupancy(&self) -> Result<Vec<(BedId, PatientId, Timestamp)>, StoreError> {
        Ok(self
            .conn
            .prepare_cached(
                "SELECT bed_id, patient_id, from_ms FROM bed_occupancy
                 WHERE to_ms IS NULL ORDER BY bed_id",
            )?
            .query_map([], |row| {
                Ok((
                    BedId::new(row.get::<_, String>(0)?),
                    PatientId::new(row.get::<_, String>(1)?),
                    Timestamp::from_millis(row.get(2)?),
                ))
            })?
            .collect::<Result<_, _>>()?)
    }

    /// Every stay of a patient, oldest first.
    pub fn stays_of(&self, patient: &PatientId) -> Result<Vec<Stay>, StoreError> {
        Ok(self
            .conn
            .prepare_cached(
                "SELECT patient_id, bed_id, from_ms, to_ms FROM bed_occupancy
                 WHERE patient_id = ?1 ORDER BY from_ms, id",
            )?
            .query_map([patient.as_str()], stay_from_row)?
            .collect::<Result<_, _>>()?)
    }
}

/// Ends the patient's open stay, if any, at `at`; returns whether there was one.
fn end_open_stay(
    tx: &rusqlite::Transaction<'_>,
    patient: &PatientId,
    at: Timestamp,
) -> Result<bool, StoreError> {
    let open: Option<(i64, i64)> = tx
        .query_row(
            "SELECT id, from_ms FROM bed_occupancy WHERE patient_id = ?1 AND to_ms IS NULL",
            [patient.as_str()],
            |row| Ok((row.get(0)?, row.get(1)?)),
        )
        .optional()?;
    let Some((id, from_ms)) = open else {
        return Ok(false);
    };
    if at.millis() < from_ms {
        return Err(StoreError::BeforeOpenRange {
            what: "stay end",
            at: at.millis(),
            from: from_ms,
        });
    }
    tx.execute(
        "UPDATE bed_occupancy SET to_ms = ?2 WHERE id = ?1",
        params![id, at.millis()],
    )?;
    Ok(true)
}

fn patient_from_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<PatientRecord> {
    Ok(PatientRecord {
        id: PatientId::new(row.get::<_, String>(0)?),
        name: row.get(1)?,
        birth_date: row.get(2)?,
        sex: row.get(3)?,
        conditions: Vec::new(),
    })
}

fn stay_from_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<Stay> {
    Ok(Stay {
        patient_id: PatientId::new(row.get::<_, String>(0)?),
        bed_id: BedId::new(row.get::<_, String>(1)?),
        from: Timestamp::from_millis(row.get(2)?),
        to: row.get::<_, Option<i64>>(3)?.map(Timestamp::from_millis),
    })
}
