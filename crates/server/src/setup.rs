//! Loading the ward from the store at start (directory, registry, live twin) and applying a
//! ward setup (layout, patients, admissions, devices, associations): the demo's simulated ward
//! or a hospital's configuration. The store is written first; the in-memory views are then
//! reloaded from it, so they can never disagree with what survives a restart.

use clinical::News2Config;
use clinical::alarms::{AlarmConfig, AlarmEngine};
use clinical::watch::ClinicalWatch;
use model::{
    AssociationTarget, BedId, Catalog, DeviceId, Observation, ObservedValue, PatientId, Timestamp,
};
use store::{AlarmQuery, DeviceRecord, PatientRecord, Store, StoreError, Subject, WardLayout};
use twin::{Attribution, DeviceHealthConfig, DeviceInfo, Registry};

use crate::directory::{
    BedView, ConditionView, Directory, PatientView, RoomView, WardView, age_on, civil_date,
};
use crate::pipeline::now;
use crate::ward::Ward;

#[derive(Clone, Debug, Default)]
pub struct WardSetup {
    pub wards: Vec<WardLayout>,
    pub patients: Vec<PatientRecord>,
    pub admissions: Vec<(PatientId, BedId)>,
    pub devices: Vec<DeviceRecord>,
    pub associations: Vec<(DeviceId, AssociationTarget)>,
}

/// Writes a setup into the store. Idempotent: what is already so (a patient already in that
/// bed, a device already associated with that target) is left as it is, history included.
pub fn apply(store: &mut Store, setup: &WardSetup, at: Timestamp) -> Result<(), StoreError> {
    for layout in &setup.wards {
        store.upsert_ward(&layout.ward)?;
        for room in &layout.rooms {
            store.upsert_room(&room.room)?;
            for bed in &room.beds {
                store.upsert_bed(bed)?;
            }
        }
    }
    for patient in &setup.patients {
        store.upsert_patient(patient)?;
    }
    let occupancy = store.current_occupancy()?;
    for (patient, bed) in &setup.admissions {
        let already = occupancy.iter().any(|(b, p, _)| b == bed && p == patient);
        if !already {
            // A bed held by someone else is freed first: the setup describes who lies where now.
            if let Some((_, other, _)) = occupancy.iter().find(|(b, p, _)| b == bed && p != patient)
            {
                store.discharge(other, at)?;
            }
            store.admit(patient, bed, at)?;
        }
    }
    for device in &setup.devices {
        store.upsert_device(device)?;
    }
    let open = store.open_associations()?;
    for (device, target) in &setup.associations {
        let already = open
            .iter()
            .any(|a| &a.device_id == device && &a.target == target);
        if !already {
            store.associate(device, target, at)?;
        }
    }
    Ok(())
}

pub fn load_registry(store: &Store) -> Result<Registry, StoreError> {
    let mut registry = Registry::default();
    for layout in store.layout()? {
        for room in layout.rooms {
            for bed in room.beds {
                registry.add_bed(bed.id, room.room.id.clone());
            }
        }
    }
    for device in store.devices()? {
        for association in store.associations_of(&device.id)? {
            registry.associate(
                device.id.clone(),
                association.target.clone(),
                association.from,
            );
            if let Some(to) = association.to {
                registry.end_association(&device.id, to);
            }
        }
        registry.upsert_device(DeviceInfo {
            id: device.id,
            kind: device.kind,
            model: device.model,
            placement: device.placement,
        });
    }
    let mut stays: Vec<_> = Vec::new();
    for patient in store.patients()? {
        stays.extend(store.stays_of(&patient.id)?);
    }
    stays.sort_by_key(|stay| stay.from);
    for stay in stays {
        registry.admit(stay.patient_id.clone(), stay.bed_id, stay.from);
        if let Some(to) = stay.to {
            registry.discharge(&stay.patient_id, to);
        }
    }
    Ok(registry)
}

pub fn load_directory(store: &Store, today_ms: i64) -> Result<Directory, StoreError> {
    let today = civil_date(today_ms);
    let occupancy = store.current_occupancy()?;
    let wards = store
        .layout()?
        .into_iter()
        .map(|layout| WardView {
            id: layout.ward.id.to_string(),
            name: layout.ward.name,
            rooms: layout
                .rooms
                .into_iter()
                .map(|room| RoomView {
                    id: room.room.id.to_string(),
                    name: room.room.name,
                    x: room.room.x,
                    z: room.room.z,
                    width: room.room.width,
                    depth: room.room.depth,
                    beds: room
                        .beds
                        .into_iter()
                        .map(|bed| BedView {
                            id: bed.id.to_string(),
                            label: bed.label,
                            x: bed.x,
                            z: bed.z,
                            rotation: bed.rotation,
                        })
                        .collect(),
                })
                .collect(),
        })
        .collect();
    let targets: std::collections::HashMap<PatientId, store::OxygenTargetRecord> =
        store.oxygen_targets()?.into_iter().collect();
    let mut patients = Vec::new();
    for patient in store.patients()? {
        let mut conditions: Vec<ConditionView> = patient
            .conditions
            .into_iter()
            .map(|condition| {
                let site = condition
                    .body_site
                    .as_deref()
                    .and_then(|key| key.parse().ok());
                ConditionView {
                    regions: twin::conditions::regions_for(
                        &condition.system,
                        &condition.code,
                        site,
                    )
                    .iter()
                    .map(ToString::to_string)
                    .collect(),
                    codings: vec![crate::directory::CodingView {
                        system: condition.system.clone(),
                        code: condition.code.clone(),
                    }],
                    system: condition.system,
                    code: condition.code,
                    display: condition.display,
                    source: "ward",
                    record_id: None,
                }
            })
            .collect();
        // The ward's conditions place the record's medications given for them, too.
        let record = crate::record_ward::patient_record(store, patient.id.as_str(), &conditions)?;
        // The record's conditions the ward's list does not already name.
        for from_record in record.conditions {
            let known = conditions
                .iter()
                .any(|c| c.system == from_record.system && c.code == from_record.code);
            if !known {
                conditions.push(from_record);
            }
        }
        patients.push(PatientView {
            oxygen_target: targets
                .get(&patient.id)
                .map(|t| [t.low_percent, t.high_percent]),
            bed_id: occupancy
                .iter()
                .find(|(_, p, _)| p == &patient.id)
                .map(|(bed, _, _)| bed.to_string()),
            age: patient
                .birth_date
                .as_deref()
                .and_then(|date| age_on(date, today)),
            id: patient.id.to_string(),
            name: patient.name,
            birth_date: patient.birth_date,
            sex: Some(patient.sex),
            conditions,
            medications: record.medications,
            allergies: record.allergies,
            labs: record.labs,
        });
    }
    Ok(Directory { wards, patients })
}

/// The ward as the store knows it, with the live twin rebuilt from the latest stored values
/// and the devices' technical state from when each was last heard from.
pub fn load_ward(
    catalog: &'static Catalog,
    store: &Store,
    device_health: DeviceHealthConfig,
    alarm_config: AlarmConfig,
    news2: News2Config,
) -> Result<Ward, StoreError> {
    let registry = load_registry(store)?;
    let directory = load_directory(store, now().millis())?;
    let mut latest = Vec::new();
    for patient in &directory.patients {
        let id = PatientId::new(&patient.id);
        for value in store.latest_values(&Subject::Patient(id.clone()))? {
            latest.push((
                Attribution {
                    patient: Some(id.clone()),
                    ..Attribution::default()
                },
                value,
            ));
        }
    }
    for room in directory.wards.iter().flat_map(|ward| &ward.rooms) {
        let id = model::RoomId::new(&room.id);
        for value in store.latest_values(&Subject::Room(id.clone()))? {
            latest.push((
                Attribution {
                    room: Some(id.clone()),
                    ..Attribution::default()
                },
                value,
            ));
        }
    }
    let attributed: Vec<_> = latest
        .into_iter()
        .map(|(attribution, value)| {
            let observation = Observation {
                device_id: value.device_id,
                metric: value.metric,
                value: ObservedValue::Numeric(value.value),
                device_time: value.time,
                received_time: value.received_time,
                body_site: value.body_site,
                quality: value.quality,
                reference_range: None,
            };
            let mut attributed =
                twin::attribution::attribute(&registry, catalog, observation, None);
            attributed.attribution = attribution;
            attributed
        })
        .collect();
    let mut last_seen: Vec<(DeviceId, Timestamp)> = store
        .devices()?
        .into_iter()
        .filter_map(|device| Some((device.id, device.last_seen?)))
        .collect();
    last_seen.extend(attributed.iter().map(|a| {
        let observation = &a.observation;
        (observation.device_id.clone(), observation.received_time)
    }));
    let mut alarms = AlarmEngine::new(alarm_config);
    let active = store.alarms(&AlarmQuery {
        active_only: true,
        subject: None,
        limit: usize::MAX >> 1,
    })?;
    alarms.restore(active, store.max_alarm_id()?);
    for (patient, limits) in store.alarm_limit_overrides()? {
        let metric = limits.metric.clone();
        alarms.set_patient_limits(&patient, &metric, Some(limits));
    }
    let clinical = ClinicalWatch::new(alarms, news2);
    let ward = Ward::new(catalog, registry, directory, device_health, clinical);
    ward.apply(&attributed);
    ward.seed_device_health(last_seen);
    Ok(ward)
}

/// Reloads the in-memory registry and directory after the store changed.
pub fn reload(ward: &Ward, store: &Store) -> Result<(), StoreError> {
    let registry = load_registry(store)?;
    ward.update_registry(|held| *held = registry);
    ward.set_directory(load_directory(store, now().millis())?);
    Ok(())
}
