//! Round notes: what a clinician recorded at a bed on a virtual round (text, an optional ACVPU
//! assessment, whether the patient was reviewed), with author and time. Storage only: the
//! ACVPU's way into NEWS2 is the log, as an observation, never this table.

use model::{PatientId, Timestamp};
use rusqlite::params;

use crate::{Store, StoreError};

#[derive(Clone, Debug, PartialEq)]
pub struct RoundNote {
    pub id: i64,
    pub patient_id: PatientId,
    pub author: String,
    pub at: Timestamp,
    pub text: String,
    /// `A`, `C`, `V`, `P` or `U`.
    pub acvpu: Option<char>,
    pub reviewed: bool,
    /// Where the note is in the medical record (`ClinicalImpression/{id}`).
    pub record_reference: Option<String>,
}

/// A patient's latest review: when and by whom.
#[derive(Clone, Debug, PartialEq)]
pub struct LastReview {
    pub patient_id: PatientId,
    pub at: Timestamp,
    pub author: String,
}

impl Store {
    /// Stores a note; returns it with the id the store gave it (the `id` handed in is ignored).
    pub fn insert_round_note(&self, note: RoundNote) -> Result<RoundNote, StoreError> {
        self.conn.execute(
            "INSERT INTO round_notes (patient_id, author, at_ms, text, acvpu, reviewed, record_reference)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
            params![
                note.patient_id.as_str(),
                note.author,
                note.at.millis(),
                note.text,
                note.acvpu.map(String::from),
                note.reviewed,
                note.record_reference
            ],
        )?;
        Ok(RoundNote {
            id: self.conn.last_insert_rowid(),
            ..note
        })
    }

    /// Notes, newest first; only these patients' when given.
    pub fn round_notes(
        &self,
        patients: Option<&[PatientId]>,
        limit: usize,
    ) -> Result<Vec<RoundNote>, StoreError> {
        let mut statement = self.conn.prepare_cached(
            "SELECT id, patient_id, author, at_ms, text, acvpu, reviewed, record_reference FROM round_notes
             WHERE ?1 IS NULL OR patient_id IN (SELECT value FROM json_each(?1))
             ORDER BY at_ms DESC, id DESC LIMIT ?2",
        )?;
        let patients = patients.map(|patients| {
            serde_json::Value::from(patients.iter().map(|p| p.as_str()).collect::<Vec<_>>())
                .to_string()
        });
        let rows = statement.query_map(
            params![patients, i64::try_from(limit).unwrap_or(i64::MAX)],
            |row| {
                Ok(RoundNote {
                    id: row.get(0)?,
                    patient_id: PatientId::new(row.get::<_, String>(1)?),
                    author: row.get(2)?,
                    at: Timestamp(row.get(3)?),
                    text: row.get(4)?,
                    acvpu: row
                        .get::<_, Option<String>>(5)?
                        .and_then(|s| s.chars().next()),
                    reviewed: row.get(6)?,
                    record_reference: row.get(7)?,
                })
            },
        )?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Each patient's latest review (a note marked reviewed), for the rounds worklist.
    pub fn last_reviews(&self) -> Result<Vec<LastReview>, StoreError> {
        let mut statement = self.conn.prepare_cached(
            "SELECT patient_id, at_ms, author FROM round_notes AS n WHERE reviewed = 1
             AND id = (SELECT id FROM round_notes WHERE patient_id = n.patient_id AND reviewed = 1
                       ORDER BY at_ms DESC, id DESC LIMIT 1)
             ORDER BY patient_id",
        )?;
        let rows = statement.query_map([], |row| {
            Ok(LastReview {
                patient_id: PatientId::new(row.get::<_, String>(0)?),
                at: Timestamp(row.get(1)?),
                author: row.get(2)?,
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn note(
        patient: &str,
        author: &str,
        at: i64,
        text: &str,
        acvpu: Option<char>,
        reviewed: bool,
    ) -> RoundNote {
        RoundNote {
            id: 0,
            patient_id: PatientId::new(patient),
            author: author.into(),
            at: Timestamp(at),
            text: text.into(),
            acvpu,
            reviewed,
            record_reference: None,
        }
    }

    #[test]
    fn notes_are_kept_newest_first_and_the_latest_review_wins() {
        let store = Store::open_in_memory().unwrap();
        let (p1, p2) = (PatientId::new("p1"), PatientId::new("p2"));
        let first = store
            .insert_round_note(note("p1", "dr.wang", 1_000, "settled", Some('A'), true))
            .unwrap();
        let second = store
            .insert_round_note(RoundNote {
                record_reference: Some("ClinicalImpression/n2".into()),
                ..note("p1", "dr.li", 2_000, "new confusion", Some('C'), false)
            })
            .unwrap();
        assert_ne!(first.id, second.id);
        store
            .insert_round_note(note("p2", "dr.li", 3_000, "seen", None, true))
            .unwrap();
        let notes = store
            .round_notes(Some(std::slice::from_ref(&p1)), 10)
            .unwrap();
        assert_eq!(notes.len(), 2);
        assert_eq!(notes[0], second);
        assert_eq!(notes[0].acvpu, Some('C'));
        assert_eq!(
            notes[0].record_reference.as_deref(),
            Some("ClinicalImpression/n2")
        );
        assert_eq!(store.round_notes(None, 10).unwrap().len(), 3);
        // p1's latest note was not a review: its last review is the first note.
        let reviews = store.last_reviews().unwrap();
        assert_eq!(
            reviews,
            vec![
                LastReview {
                    patient_id: p1,
                    at: Timestamp(1_000),
                    author: "dr.wang".into()
                },
                LastReview {
                    patient_id: p2,
                    at: Timestamp(3_000),
                    author: "dr.li".into()
                },
            ]
        );
    }

    #[test]
    fn an_acvpu_outside_the_scale_is_refused_by_the_table() {
        let store = Store::open_in_memory().unwrap();
        assert!(
            store
                .insert_round_note(note("p1", "x", 1, "", Some('X'), false))
                .is_err()
        );
    }
}
