//! What a device says it is (manufacturer, serial number, type coding) and the identifiers
//! other systems know it by, with the lookup identifier → device id that every source uses
//! (FHIR `Device.identifier` references, HL7 OBX-18 EUI-64).

use model::DeviceId;
use rusqlite::{OptionalExtension, params};

use crate::{Store, StoreError};

/// The IEEE EUI-64 identifier system as the HL7 Point-of-Care Device IG's examples write it.
pub const EUI64_SYSTEM: &str = "urn:oid:1.2.840.10004.1.1.1.0.0.1.0.0.1.2680";

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeviceIdentifier {
    pub system: String,
    pub value: String,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DeviceType {
    pub system: String,
    pub code: String,
    pub display: Option<String>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DeviceDetails {
    pub manufacturer: Option<String>,
    pub serial_number: Option<String>,
    pub device_type: Option<DeviceType>,
    pub identifiers: Vec<DeviceIdentifier>,
}

/// The canonical form of an identifier value for lookups: an EUI-64 compares as 16 upper-case
/// hex digits whether sent as `0123456789abcdef` or `01-23-45-67-89-AB-CD-EF`; other values as
/// given, trimmed.
pub fn identifier_key(system: &str, value: &str) -> String {
    if system == EUI64_SYSTEM {
        let hex: String = value
            .chars()
            .filter(|c| !matches!(c, '-' | ':'))
            .collect::<String>()
            .to_ascii_uppercase();
        if hex.len() == 16 && hex.bytes().all(|b| b.is_ascii_hexdigit()) {
            return hex;
        }
    }
    value.trim().to_owned()
}

impl Store {
    /// Inserts or updates the device and replaces its details and identifiers, all or nothing.
    pub fn register_device(
        &mut self,
        device: &crate::DeviceRecord,
        details: &DeviceDetails,
    ) -> Result<(), StoreError> {
        // `upsert_device` runs on the same connection, so inside this transaction.
        let tx = self.conn.unchecked_transaction()?;
        self.upsert_device(device)?;
        write_details(&tx, &device.id, details)?;
        tx.commit()?;
        Ok(())
    }

    /// Replaces the device's details and identifiers. Refuses, changing nothing, when an
    /// identifier already names another device. The device must be known.
    pub fn set_device_details(
        &mut self,
        device: &DeviceId,
        details: &DeviceDetails,
    ) -> Result<(), StoreError> {
        let tx = self.conn.transaction()?;
        write_details(&tx, device, details)?;
        tx.commit()?;
        Ok(())
    }

    /// The device's details and identifiers (empty details for a device registered without).
    pub fn device_details(&self, device: &DeviceId) -> Result<DeviceDetails, StoreError> {
        let row = self
            .conn
            .prepare_cached(
                "SELECT manufacturer, serial_number, type_system, type_code, type_display
                 FROM devices WHERE id = ?1",
            )?
            .query_row([device.as_str()], |row| {
                Ok((
                    row.get::<_, Option<String>>(0)?,
                    row.get::<_, Option<String>>(1)?,
                    row.get::<_, Option<String>>(2)?,
                    row.get::<_, Option<String>>(3)?,
                    row.get::<_, Option<String>>(4)?,
                ))
            })
            .optional()?;
        let Some((manufacturer, serial_number, system, code, display)) = row else {
            return Err(StoreError::NotFound {
                what: "device",
                id: device.to_string(),
            });
        };
        let identifiers = self
            .conn
            .prepare_cached(
                "SELECT system, value FROM device_identifiers WHERE device_id = ?1
                 ORDER BY system, value_key",
            )?
            .query_map([device.as_str()], |row| {
                Ok(DeviceIdentifier {
                    system: row.get(0)?,
                    value: row.get(1)?,
                })
            })?
            .collect::<Result<_, _>>()?;
        Ok(DeviceDetails {
            manufacturer,
            serial_number,
            device_type: match (system, code) {
                (Some(system), Some(code)) => Some(DeviceType {
                    system,
                    code,
                    display,
                }),
                _ => None,
            },
            identifiers,
        })
    }

    /// The device an identifier names, if any.
    pub fn device_by_identifier(
        &self,
        system: &str,
        value: &str,
    ) -> Result<Option<DeviceId>, StoreError> {
        let id: Option<String> = self
            .conn
            .prepare_cached(
                "SELECT device_id FROM device_identifiers WHERE system = ?1 AND value_key = ?2",
            )?
            .query_row(params![system, identifier_key(system, value)], |row| {
                row.get(0)
            })
            .optional()?;
        Ok(id.map(DeviceId::new))
    }
}

fn write_details(
    tx: &rusqlite::Connection,
    device: &DeviceId,
    details: &DeviceDetails,
) -> Result<(), StoreError> {
    let device_type = details.device_type.as_ref();
    let changed = tx.execute(
        "UPDATE devices SET manufacturer = ?2, serial_number = ?3, type_system = ?4,
                 type_code = ?5, type_display = ?6
             WHERE id = ?1",
        params![
            device.as_str(),
            details.manufacturer,
            details.serial_number,
            device_type.map(|t| t.system.as_str()),
            device_type.map(|t| t.code.as_str()),
            device_type.and_then(|t| t.display.as_deref()),
        ],
    )?;
    if changed == 0 {
        return Err(StoreError::NotFound {
            what: "device",
            id: device.to_string(),
        });
    }
    tx.execute(
        "DELETE FROM device_identifiers WHERE device_id = ?1",
        [device.as_str()],
    )?;
    for identifier in &details.identifiers {
        let key = identifier_key(&identifier.system, &identifier.value);
        let owner: Option<String> = tx
            .query_row(
                "SELECT device_id FROM device_identifiers WHERE system = ?1 AND value_key = ?2",
                params![identifier.system, key],
                |row| row.get(0),
            )
            .optional()?;
        if let Some(owner) = owner {
            if owner == device.as_str() {
                continue; // the same identifier listed twice
            }
            return Err(StoreError::IdentifierTaken {
                system: identifier.system.clone(),
                value: identifier.value.clone(),
                device: owner,
            });
        }
        tx.execute(
            "INSERT INTO device_identifiers (device_id, system, value, value_key)
                 VALUES (?1, ?2, ?3, ?4)",
            params![device.as_str(), identifier.system, identifier.value, key],
        )?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::DeviceRecord;
    use model::DeviceKind;

    fn device(store: &Store, id: &str) {
        store
            .upsert_device(&DeviceRecord {
                id: DeviceId::new(id),
                kind: DeviceKind::Wearable,
                model: "patch".into(),
                placement: None,
                first_seen: None,
                last_seen: None,
            })
            .unwrap();
    }

    fn eui(value: &str) -> DeviceIdentifier {
        DeviceIdentifier {
            system: EUI64_SYSTEM.into(),
            value: value.into(),
        }
    }

    #[test]
    fn identifiers_resolve_to_their_device_in_any_eui64_spelling() {
        let mut store = Store::open_in_memory().unwrap();
        device(&store, "a");
        let details = DeviceDetails {
            manufacturer: Some("Acme".into()),
            serial_number: Some("S1".into()),
            device_type: Some(DeviceType {
                system: "urn:iso:std:iso:11073:10101".into(),
                code: "69965".into(),
                display: None,
            }),
            identifiers: vec![eui("01-23-45-67-89-AB-CD-EF")],
        };
        store.set_device_details(&"a".into(), &details).unwrap();
        assert_eq!(store.device_details(&"a".into()).unwrap(), details);
        for spelling in [
            "0123456789abcdef",
            "01:23:45:67:89:ab:cd:ef",
            "01-23-45-67-89-AB-CD-EF",
        ] {
            assert_eq!(
                store.device_by_identifier(EUI64_SYSTEM, spelling).unwrap(),
                Some(DeviceId::new("a")),
                "{spelling}"
            );
        }
        assert_eq!(
            store
                .device_by_identifier("other", "0123456789ABCDEF")
                .unwrap(),
            None
        );
    }

    #[test]
    fn an_identifier_names_one_device() {
        let mut store = Store::open_in_memory().unwrap();
        device(&store, "a");
        device(&store, "b");
        let with = |value: &str| DeviceDetails {
            identifiers: vec![eui(value)],
            ..DeviceDetails::default()
        };
        store
            .set_device_details(&"a".into(), &with("0123456789ABCDEF"))
            .unwrap();
        assert!(matches!(
            store.set_device_details(&"b".into(), &with("01-23-45-67-89-ab-cd-ef")),
            Err(StoreError::IdentifierTaken { .. })
        ));
        // Replacing a's identifiers frees the old one.
        store
            .set_device_details(&"a".into(), &with("1111111111111111"))
            .unwrap();
        store
            .set_device_details(&"b".into(), &with("0123456789ABCDEF"))
            .unwrap();
        assert_eq!(
            store
                .device_by_identifier(EUI64_SYSTEM, "0123456789abcdef")
                .unwrap(),
            Some(DeviceId::new("b"))
        );
        assert!(store.set_device_details(&"zz".into(), &with("2")).is_err());
    }
}
