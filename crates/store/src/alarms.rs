//! Alarms as they are now and every step of their history, and patients' own alarm limits.
//! The alarm engine (crate `clinical`) decides; this keeps what it decided, so that the history
//! survives restarts and analysts can ask how long acknowledgments took.

use clinical::alarms::{
    Alarm, AlarmCondition, AlarmEvent, AlarmSubject, LimitSide, LimitTier, MetricLimits, Presence,
    Priority, Silence,
};
use model::{PatientId, Timestamp};
use rusqlite::{OptionalExtension, params};

use crate::{Store, StoreError};

/// One step of an alarm's history, as stored.
#[derive(Clone, Debug, PartialEq)]
pub struct AlarmHistoryEntry {
    pub at: Timestamp,
    pub transition: String,
    pub by: Option<String>,
    pub priority: Priority,
    pub state: String,
}

/// Which alarms to list.
#[derive(Clone, Debug, Default)]
pub struct AlarmQuery {
    pub active_only: bool,
    pub subject: Option<AlarmSubject>,
    pub limit: usize,
}

const ALARM_COLUMNS: &str = "id, subject_kind, subject_id, kind, condition, side, priority,
    latched, message, value, limit_value, raised_ms, delivered_ms, acknowledged_by,
    acknowledged_ms, escalations, last_escalated_ms, silenced_by, silence_reason,
    silenced_until_ms, cleared_ms, resolved_ms";

impl Store {
    /// Keeps alarm events in order, each alarm's row updated to how it is after them, in one
    /// transaction.
    pub fn record_alarm_events(&mut self, events: &[AlarmEvent]) -> Result<(), StoreError> {
        let tx = self.conn.transaction()?;
        {
            let mut upsert = tx.prepare_cached(&format!(
                "INSERT INTO alarms ({ALARM_COLUMNS}, state)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16,
                     ?17, ?18, ?19, ?20, ?21, ?22, ?23)
                 ON CONFLICT (id) DO UPDATE SET
                     priority = excluded.priority, latched = excluded.latched,
                     message = excluded.message, value = excluded.value,
                     limit_value = excluded.limit_value, delivered_ms = excluded.delivered_ms,
                     acknowledged_by = excluded.acknowledged_by,
                     acknowledged_ms = excluded.acknowledged_ms,
                     escalations = excluded.escalations,
                     last_escalated_ms = excluded.last_escalated_ms,
                     silenced_by = excluded.silenced_by, silence_reason = excluded.silence_reason,
                     silenced_until_ms = excluded.silenced_until_ms,
                     cleared_ms = excluded.cleared_ms, resolved_ms = excluded.resolved_ms,
                     state = excluded.state"
            ))?;
            let mut insert_event = tx.prepare_cached(
                "INSERT INTO alarm_events (alarm_id, at_ms, transition, by, priority, state)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            )?;
            for event in events {
                let alarm = &event.alarm;
                let id = i64::try_from(alarm.id)
                    .map_err(|_| StoreError::Corrupt(format!("alarm id {}", alarm.id)))?;
                let (subject_kind, subject_id) = alarm.subject.parts();
                let (kind, condition, side) = alarm.condition.parts();
                let cleared_ms = match alarm.presence {
                    Presence::Present => None,
                    Presence::Cleared(at) => Some(at.millis()),
                };
                let silence = alarm.silenced.as_ref();
                upsert.execute(params![
                    id,
                    subject_kind,
                    subject_id,
                    kind,
                    condition,
                    side.map(LimitSide::key),
                    alarm.priority.key(),
                    alarm.latched,
                    alarm.message,
                    alarm.value,
                    alarm.limit,
                    alarm.raised_at.millis(),
                    alarm.delivered_at.map(Timestamp::millis),
                    alarm.acknowledged.as_ref().map(|(by, _)| by),
                    alarm.acknowledged.as_ref().map(|(_, at)| at.millis()),
                    alarm.escalations,
                    alarm.last_escalated_at.map(Timestamp::millis),
                    silence.map(|s| &s.by),
                    silence.map(|s| &s.reason),
                    silence.map(|s| s.until.millis()),
                    cleared_ms,
                    alarm.resolved_at.map(Timestamp::millis),
                    alarm.state(),
                ])?;
                insert_event.execute(params![
                    id,
                    event.at.millis(),
                    event.transition.key(),
                    event.by,
                    alarm.priority.key(),
                    alarm.state(),
                ])?;
            }
        }
        tx.commit()?;
        Ok(())
    }

    pub fn alarm(&self, id: u64) -> Result<Option<Alarm>, StoreError> {
        let Ok(id) = i64::try_from(id) else {
            return Ok(None);
        };
        let row = self
            .conn
            .query_row(
                &format!("SELECT {ALARM_COLUMNS} FROM alarms WHERE id = ?1"),
                [id],
                alarm_row,
            )
            .optional()?;
        row.map(alarm_from_row).transpose()
    }

    /// Alarms, most recently raised first.
    pub fn alarms(&self, query: &AlarmQuery) -> Result<Vec<Alarm>, StoreError> {
        let (subject_kind, subject_id) = match &query.subject {
            Some(subject) => {
                let (kind, id) = subject.parts();
                (Some(kind), Some(id.to_owned()))
            }
            None => (None, None),
        };
        let mut statement = self.conn.prepare_cached(&format!(
            "SELECT {ALARM_COLUMNS} FROM alarms
             WHERE (?1 = 0 OR resolved_ms IS NULL)
               AND (?2 IS NULL OR (subject_kind = ?2 AND subject_id = ?3))
             ORDER BY raised_ms DESC, id DESC LIMIT ?4"
        ))?;
        let rows = statement
            .query_map(
                params![
                    query.active_only,
                    subject_kind,
                    subject_id,
                    query.limit as i64
                ],
                alarm_row,
            )?
            .collect::<Result<Vec<_>, _>>()?;
        rows.into_iter().map(alarm_from_row).collect()
    }

    pub fn alarm_history(&self, id: u64) -> Result<Vec<AlarmHistoryEntry>, StoreError> {
        let id = i64::try_from(id).unwrap_or(-1);
        let mut statement = self.conn.prepare_cached(
            "SELECT at_ms, transition, by, priority, state FROM alarm_events
             WHERE alarm_id = ?1 ORDER BY id",
        )?;
        let rows = statement
            .query_map([id], |row| {
                Ok((
                    row.get::<_, i64>(0)?,
                    row.get::<_, String>(1)?,
                    row.get::<_, Option<String>>(2)?,
                    row.get::<_, String>(3)?,
                    row.get::<_, String>(4)?,
                ))
            })?
            .collect::<Result<Vec<_>, _>>()?;
        rows.into_iter()
            .map(|(at, transition, by, priority, state)| {
                Ok(AlarmHistoryEntry {
                    at: Timestamp(at),
                    transition,
                    by,
                    priority: parse_priority(&priority)?,
                    state,
                })
            })
            .collect()
    }

    /// The highest alarm id ever stored, so ids keep rising across restarts.
    pub fn max_alarm_id(&self) -> Result<u64, StoreError> {
        let max: Option<i64> = self
            .conn
            .query_row("SELECT max(id) FROM alarms", [], |row| row.get(0))?;
        Ok(max.unwrap_or(0).max(0) as u64)
    }

    /// Sets a patient's own limits for a metric, or with `None` goes back to the defaults.
    pub fn set_alarm_limits(
        &mut self,
        patient: &PatientId,
        metric: &str,
        limits: Option<&MetricLimits>,
        set_by: Option<&str>,
        at: Timestamp,
    ) -> Result<(), StoreError> {
        let tx = self.conn.transaction()?;
        tx.execute(
            "DELETE FROM alarm_limit_tiers WHERE patient_id = ?1 AND metric = ?2",
            params![patient.as_str(), metric],
        )?;
        tx.execute(
            "DELETE FROM alarm_limit_overrides WHERE patient_id = ?1 AND metric = ?2",
            params![patient.as_str(), metric],
        )?;
        if let Some(limits) = limits {
            tx.execute(
                "INSERT INTO alarm_limit_overrides (patient_id, metric, set_by, set_ms)
                 VALUES (?1, ?2, ?3, ?4)",
                params![patient.as_str(), metric, set_by, at.millis()],
            )?;
            let sides = [
                (LimitSide::Low, &limits.low),
                (LimitSide::High, &limits.high),
            ];
            for (side, tiers) in sides {
                for tier in tiers {
                    tx.execute(
                        "INSERT INTO alarm_limit_tiers (patient_id, metric, side, at, priority)
                         VALUES (?1, ?2, ?3, ?4, ?5)",
                        params![
                            patient.as_str(),
                            metric,
                            side.key(),
                            tier.at,
                            tier.priority.key()
                        ],
                    )?;
                }
            }
        }
        tx.commit()?;
        Ok(())
    }

    /// Every patient-specific limit, by patient.
    pub fn alarm_limit_overrides(&self) -> Result<Vec<(PatientId, MetricLimits)>, StoreError> {
        let mut statement = self.conn.prepare_cached(
            "SELECT o.patient_id, o.metric, t.side, t.at, t.priority
             FROM alarm_limit_overrides o
             LEFT JOIN alarm_limit_tiers t ON t.patient_id = o.patient_id AND t.metric = o.metric
             ORDER BY o.patient_id, o.metric, t.side, t.at",
        )?;
        let rows = statement
            .query_map([], |row| {
                Ok((
                    row.get::<_, String>(0)?,
                    row.get::<_, String>(1)?,
                    row.get::<_, Option<String>>(2)?,
                    row.get::<_, Option<f64>>(3)?,
                    row.get::<_, Option<String>>(4)?,
                ))
            })?
            .collect::<Result<Vec<_>, _>>()?;
        let mut overrides: Vec<(PatientId, MetricLimits)> = Vec::new();
        for (patient, metric, side, at, priority) in rows {
            let patient = PatientId::new(patient);
            let same = overrides
                .last()
                .is_some_and(|(p, limits)| *p == patient && limits.metric == metric);
            if !same {
                overrides.push((
                    patient,
                    MetricLimits {
                        metric,
                        ..MetricLimits::default()
                    },
                ));
            }
            let limits = &mut overrides.last_mut().expect("just pushed").1;
            if let (Some(side), Some(at), Some(priority)) = (side, at, priority) {
                let tier = LimitTier {
                    at,
                    priority: parse_priority(&priority)?,
                };
                match LimitSide::from_key(&side) {
                    Some(LimitSide::Low) => limits.low.push(tier),
                    Some(LimitSide::High) => limits.high.push(tier),
                    None => return Err(StoreError::Corrupt(format!("limit side `{side}`"))),
                }
            }
        }
        Ok(overrides)
    }
}

type AlarmRow = (
    (i64, String, String, String, String, Option<String>, String),
    (bool, String, Option<f64>, Option<f64>, i64, Option<i64>),
    (Option<String>, Option<i64>, u32, Option<i64>),
    (
        Option<String>,
        Option<String>,
        Option<i64>,
        Option<i64>,
        Option<i64>,
    ),
);

fn alarm_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<AlarmRow> {
    Ok((
        (
            row.get(0)?,
            row.get(1)?,
            row.get(2)?,
            row.get(3)?,
            row.get(4)?,
            row.get(5)?,
            row.get(6)?,
        ),
        (
            row.get(7)?,
            row.get(8)?,
            row.get(9)?,
            row.get(10)?,
            row.get(11)?,
            row.get(12)?,
        ),
        (row.get(13)?, row.get(14)?, row.get(15)?, row.get(16)?),
        (
            row.get(17)?,
            row.get(18)?,
            row.get(19)?,
            row.get(20)?,
            row.get(21)?,
        ),
    ))
}

fn alarm_from_row(row: AlarmRow) -> Result<Alarm, StoreError> {
    let (
        (id, subject_kind, subject_id, kind, condition, side, priority),
        (latched, message, value, limit, raised_ms, delivered_ms),
        (acknowledged_by, acknowledged_ms, escalations, last_escalated_ms),
        (silenced_by, silence_reason, silenced_until_ms, cleared_ms, resolved_ms),
    ) = row;
    let corrupt = |what: String| StoreError::Corrupt(what);
    let subject = AlarmSubject::from_parts(&subject_kind, &subject_id)
        .ok_or_else(|| corrupt(format!("alarm subject kind `{subject_kind}`")))?;
    let side = side
        .map(|side| LimitSide::from_key(&side).ok_or_else(|| corrupt(format!("side `{side}`"))))
        .transpose()?;
    let condition = AlarmCondition::from_parts(&kind, &condition, side)
        .ok_or_else(|| corrupt(format!("alarm condition `{kind}` `{condition}`")))?;
    let silenced = match (silenced_by, silence_reason, silenced_until_ms) {
        (Some(by), Some(reason), Some(until)) => Some(Silence {
            by,
            reason,
            until: Timestamp(until),
        }),
        _ => None,
    };
    Ok(Alarm {
        id: id as u64,
        subject,
        condition,
        priority: parse_priority(&priority)?,
        latched,
        message,
        raised_at: Timestamp(raised_ms),
        value,
        limit,
        presence: cleared_ms.map_or(Presence::Present, |at| Presence::Cleared(Timestamp(at))),
        delivered_at: delivered_ms.map(Timestamp),
        acknowledged: acknowledged_by.zip(acknowledged_ms.map(Timestamp)),
        escalations,
        last_escalated_at: last_escalated_ms.map(Timestamp),
        silenced,
        resolved_at: resolved_ms.map(Timestamp),
    })
}

fn parse_priority(key: &str) -> Result<Priority, StoreError> {
    Priority::from_key(key).ok_or_else(|| StoreError::Corrupt(format!("alarm priority `{key}`")))
}
