-- v2: what a device says it is, beyond our own id: its manufacturer, serial number and type
-- coding (FHIR Device.type, an IEEE 11073 MDC device code in the Point-of-Care Device IG), and
-- the identifiers other systems know it by (EUI-64, serial numbers, UDI), so a message naming a
-- device by identifier (FHIR Device.identifier, HL7 OBX-18) resolves to the one device.

ALTER TABLE devices ADD COLUMN manufacturer TEXT;
ALTER TABLE devices ADD COLUMN serial_number TEXT;
ALTER TABLE devices ADD COLUMN type_system TEXT;
ALTER TABLE devices ADD COLUMN type_code TEXT;
ALTER TABLE devices ADD COLUMN type_display TEXT;

-- `value` is as the sender wrote it; `value_key` is its canonical form for lookups (an EUI-64
-- as 16 upper-case hex digits, whether sent with hyphens or not). One identifier names one device.
CREATE TABLE device_identifiers (
    device_id TEXT NOT NULL REFERENCES devices (id),
    system    TEXT NOT NULL,
    value     TEXT NOT NULL,
    value_key TEXT NOT NULL,
    PRIMARY KEY (system, value_key)
);
CREATE INDEX device_identifiers_by_device ON device_identifiers (device_id);
