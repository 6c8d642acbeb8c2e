//! HL7 v2 over MLLP on the real socket: the shared IHE PCD-01 files, a third-party sender
//! (`mllp_send` from PyPI `hl7`), acknowledgments validated by `hl7apy` at STRICT level, ADT
//! events driving attribution by bed, refused messages answered, counted and kept, and a peer
//! sending garbage beside a good one.

use std::path::PathBuf;

use tokio::net::TcpStream;

use crate::*;

const VT: u8 = 0x0b;
const FS: u8 = 0x1c;
const CR: u8 = 0x0d;

fn tools() -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../.tools/venv/bin");
    assert!(
        dir.join("python").exists() && dir.join("mllp_send").exists(),
        "{} is missing its tools: run scripts/install-test-tools",
        dir.display()
    );
    dir
}

/// The shared third-party PCD-01 files: `shared/` sits beside the project's checkout (or
/// beside a folder above it, for a worktree).
fn shared_pcd01() -> PathBuf {
    let manifest = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    manifest
        .ancestors()
        .skip(2)
        .map(|dir| dir.join("shared/data/hl7-pcd01"))
        .find(|dir| dir.exists())
        .unwrap_or_else(|| {
            panic!(
                "no shared/data/hl7-pcd01 beside {} or above it",
                manifest.display()
            )
        })
}

/// An MLLP peer that speaks one message at a time, as original mode does.
struct Peer {
    stream: TcpStream,
    pending: Vec<u8>,
}

impl Peer {
    async fn connect(addr: SocketAddr) -> Peer {
        Peer {
            stream: TcpStream::connect(addr).await.expect("connect mllp"),
            pending: Vec::new(),
        }
    }

    async fn send_raw(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).await.unwrap();
    }

    /// Sends a message (segments end in CR) framed, and returns the acknowledgment.
    async fn exchange(&mut self, message: &[u8]) -> String {
        let mut framed = vec![VT];
        framed.extend_from_slice(message);
        framed.extend([FS, CR]);
        self.send_raw(&framed).await;
        self.read_ack().await
    }

    async fn read_ack(&mut self) -> String {
        let read = tokio::time::timeout(DEADLINE, async {
            loop {
                if let Some(end) = self.pending.iter().position(|&b| b == FS) {
                    let frame: Vec<u8> = self.pending.drain(..=end).collect();
                    if self.pending.first() == Some(&CR) {
                        self.pending.remove(0);
                    }
                    assert_eq!(frame[0], VT, "acknowledgment frame starts with VT");
                    return String::from_utf8_lossy(&frame[1..frame.len() - 1]).into_owned();
                }
                let mut buffer = [0u8; 4096];
                let n = self.stream.read(&mut buffer).await.unwrap();
                assert!(
                    n > 0,
                    "the server closed the connection instead of answering"
                );
                self.pending.extend_from_slice(&buffer[..n]);
            }
        })
        .await;
        read.expect("an acknowledgment within the deadline")
    }
}

/// Field `n` of the first `segment` of an acknowledgment (MSH counted as the standard does).
fn field(ack: &str, segment: &str, n: usize) -> String {
    let line = ack
        .split('\r')
        .find(|line| line.starts_with(segment))
        .unwrap_or_else(|| panic!("no {segment} in {ack:?}"));
    let index = if segment == "MSH" { n - 1 } else { n };
    line.split('|').nth(index).unwrap_or("").to_owned()
}

fn errs(ack: &str) -> Vec<String> {
    ack.split('\r')
        .filter(|line| line.starts_with("ERR|"))
        .map(str::to_owned)
        .collect()
}

/// Reads a shared file as a sender would put it on the wire: segments end in CR.
fn wire(path: &std::path::Path) -> Vec<u8> {
    let raw = std::fs::read(path).unwrap();
    let mut out = Vec::with_capacity(raw.len());
    let mut i = 0;
    while i < raw.len() {
        if raw[i] == b'\r' && raw.get(i + 1) == Some(&b'\n') {
            out.push(b'\r');
            i += 2;
        } else if raw[i] == b'\n' {
            out.push(b'\r');
            i += 1;
        } else {
            out.push(raw[i]);
            i += 1;
        }
    }
    out
}

/// Every acknowledgment must parse with hl7apy at STRICT level (read as bytes, decoded in
/// the charset the acknowledgment declares).
async fn assert_hl7apy_strict(acks: &[String]) {
    let dir = tempfile::tempdir().unwrap();
    let mut paths = Vec::new();
    for (i, ack) in acks.iter().enumerate() {
        let path = dir.path().join(format!("ack{i}.hl7"));
        std::fs::write(&path, ack.as_bytes()).unwrap();
        paths.push(path);
    }
    let script = r#"
import sys
from hl7apy.parser import parse_message
from hl7apy.consts import VALIDATION_LEVEL
failed = 0
for path in sys.argv[1:]:
    raw = open(path, 'rb').read().decode('latin-1')
    try:
        message = parse_message(raw, validation_level=VALIDATION_LEVEL.STRICT, find_groups=True)
        assert message.msa.msa_1.value in ('AA', 'AE', 'AR')
    except Exception as error:
        failed += 1
        print('INVALID', path, type(error).__name__, error, repr(raw))
sys.exit(1 if failed else 0)
"#;
    let python = tools().join("python");
    let output = tokio::task::spawn_blocking(move || {
        std::process::Command::new(python)
            .arg("-c")
            .arg(script)
            .args(&paths)
            .output()
    })
    .await
    .unwrap()
    .unwrap();
    assert!(
        output.status.success(),
        "hl7apy refused an acknowledgment:\n{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

async fn metric_sum(http_addr: SocketAddr, name: &str, labels: &[&str]) -> f64 {
    let metrics = http(http_addr, "GET", "/metrics", None).await;
    metrics
        .body
        .lines()
        .filter(|l| {
            l.starts_with(name)
                && l[name.len()..].starts_with('{')
                && labels.iter().all(|label| l.contains(label))
        })
        .map(|l| l.rsplit(' ').next().unwrap().parse::<f64>().unwrap())
        .sum()
}

async fn counts(http_addr: SocketAddr) -> (f64, f64, f64) {
    let received = metric_sum(
        http_addr,
        "metaward_messages_received_total",
        &["source=\"hl7\""],
    )
    .await;
    let accepted = metric_sum(
        http_addr,
        "metaward_messages_accepted_total",
        &["source=\"hl7\""],
    )
    .await;
    let rejected = metric_sum(
        http_addr,
        "metaward_messages_rejected_total",
        &["source=\"hl7\""],
    )
    .await;
    (received, accepted, rejected)
}

async fn assert_reconciles(http_addr: SocketAddr) -> (f64, f64, f64) {
    let (received, accepted, rejected) = counts(http_addr).await;
    assert_eq!(
        received,
        accepted + rejected,
        "received = accepted + rejected"
    );
    (received, accepted, rejected)
}

/// `(time, value, artefact)` of a patient's history of a metric, from the epoch on.
async fn history(http_addr: SocketAddr, patient: &str, metric: &str) -> Vec<(i64, f64, bool)> {
    let history = get_json(
        http_addr,
        &format!("/api/v1/patients/{patient}/history?metric={metric}&from=0"),
    )
    .await;
    history["points"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            (
                p["time"].as_i64().unwrap(),
                p["value"].as_f64().unwrap(),
                p["artefact"].as_bool().unwrap(),
            )
        })
        .collect()
}

async fn history_has(
    http_addr: SocketAddr,
    patient: &str,
    metric: &str,
    points: &[(i64, f64, bool)],
) {
    eventually(&format!("{metric} of {patient} in the store"), || async {
        let stored = history(http_addr, patient, metric).await;
        points.iter().all(|p| stored.contains(p)).then_some(())
    })
    .await;
}

fn utc(text: &str) -> i64 {
    ::hl7::time::parse_dtm(text).unwrap().millis()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_shared_pcd01_file_ingests_as_its_content_says() {
    let (server, _dir) = start_server().await;
    let (http_addr, mllp) = (server.http_addr(), server.mllp_addr());
    let dir = shared_pcd01();
    let mut peer = Peer::connect(mllp).await;
    let mut acks = Vec::new();
    let mut send = async |name: &str| {
        let ack = peer.exchange(&wire(&dir.join(name))).await;
        acks.push(ack.clone());
        ack
    };

    // NIBP from a blood pressure monitor: the channel header carries the time.
    let ack = send("ipf-valid-pcd01-request.hl7").await;
    assert_eq!(field(&ack, "MSA", 1), "AA", "{ack}");
    assert_eq!(field(&ack, "MSA", 2), "MSGID1234");
    assert_eq!(field(&ack, "MSH", 5), "AcmeInc^ACDE48234567ABCD^EUI-64");
    assert!(errs(&ack).is_empty(), "{ack}");
    let t = utc("20090813095715+0500");
    history_has(http_addr, "789567", "nibp_systolic", &[(t, 120.0, false)]).await;
    history_has(http_addr, "789567", "nibp_diastolic", &[(t, 80.0, false)]).await;
    history_has(http_addr, "789567", "nibp_mean", &[(t, 100.0, false)]).await;

    // An ICU monitor through a gateway: UCUM units, device from OBR-3's EUI-64, time from
    // OBR-7 (no offset: UTC). Every value's MDC code is in the catalog: no warning.
    let ack = send("ipf-valid-pcd01-request2.hl7").await;
    assert_eq!(field(&ack, "MSA", 1), "AA", "{ack}");
    assert_eq!(field(&ack, "MSA", 2), "12d15a9:11df9e61347:-7fee:30456965");
    assert_eq!(field(&ack, "MSH", 18), "8859/1");
    assert!(errs(&ack).is_empty(), "{ack}");
    let t = utc("20081211144500");
    for (metric, value) in [
        ("heart_rate", 60.0),
        ("pvc_rate", 0.0),
        ("arterial_mean", 92.0),
        ("arterial_systolic", 120.0),
        ("arterial_diastolic", 80.0),
        ("pulse_rate_invasive", 60.0),
        ("pulmonary_artery_mean", 14.0),
        ("pulmonary_artery_systolic", 25.0),
        ("pulmonary_artery_diastolic", 10.0),
    ] {
        history_has(http_addr, "AB60001", metric, &[(t, value, false)]).await;
    }
    let stored = get_json(
        http_addr,
        "/api/v1/patients/AB60001/history?metric=heart_rate&from=0",
    )
    .await;
    assert_eq!(stored["points"][0]["device_id"], "080019ffff4f6ac0");

    // The maximal message: two OBR groups, NTEs, 8859/1, flags and statuses, body sites.
    let ack = send("ipf-valid-pcd01-MaximumRequest2.hl7").await;
    assert_eq!(field(&ack, "MSA", 1), "AA", "{ack}");
    let own = utc("20090813095725+0500");
    let channel = utc("20090813095715+0500");
    // 140 is corrected (C) but questionable (QUES); 70 is deleted (D): kept, flagged.
    history_has(
        http_addr,
        "111222333444",
        "nibp_systolic",
        &[(own, 140.0, true)],
    )
    .await;
    history_has(
        http_addr,
        "111222333444",
        "nibp_diastolic",
        &[(own, 70.0, true)],
    )
    .await;
    history_has(
        http_addr,
        "111222333444",
        "nibp_mean",
        &[(channel, 100.0, false)],
    )
    .await;
    // The second group's codes (1500212, 1500232) and the device-profile row with a value
    // are not catalog metrics: said so, not stored.
    let warnings = errs(&ack);
    for code in ["528391", "1500212", "1500232"] {
        assert!(
            warnings.iter().any(|e| e.contains(&format!("`{code}`"))),
            "{code}: {ack}"
        );
    }
    assert_eq!(
        history(http_addr, "111222333444", "nibp_systolic")
            .await
            .len(),
        1
    );
    // OBX-7 limits travel with their values: `<120` and `75 - 90`.
    let points = async |metric: &str| {
        get_json(
            http_addr,
            &format!("/api/v1/patients/111222333444/history?metric={metric}&from=0"),
        )
        .await["points"]
            .clone()
    };
    let systolic = points("nibp_systolic").await;
    assert_eq!(
        systolic[0]["reference_range"],
        serde_json::json!({ "low": null, "high": 120.0 }),
        "{systolic}"
    );
    let diastolic = points("nibp_diastolic").await;
    assert_eq!(
        diastolic[0]["reference_range"],
        serde_json::json!({ "low": 75.0, "high": 90.0 }),
        "{diastolic}"
    );

    // v2.6 with a PID-13 component withdrawn in 2.6: a field we do not read, so accepted.
    let ack = send("hapi-MessageValidatorTest-withdrawn-datatype.hl7").await;
    assert_eq!(field(&ack, "MSA", 1), "AA", "{ack}");
    let t = utc("20090813095715+0000");
    history_has(http_addr, "1", "nibp_systolic", &[(t, 120.0, false)]).await;
    history_has(http_addr, "1", "nibp_mean", &[(t, 100.0, false)]).await;

    // Acknowledgments are answers, not data: refused as an unsupported message type.
    for name in [
        "ipf-valid-pcd01-response.hl7",
        "ipf-valid-pcd01-response2.hl7",
    ] {
        let ack = send(name).await;
        assert_eq!(field(&ack, "MSA", 1), "AR", "{ack}");
        assert_eq!(field(&ack, "MSA", 2), "AMSGID1234");
        assert!(
            errs(&ack)[0].contains("|MSH^1^9^1|200^Unsupported message type^HL70357|E|"),
            "{ack}"
        );
    }
    let (received, accepted, rejected) = assert_reconciles(http_addr).await;
    assert_eq!((received, accepted, rejected), (6.0, 4.0, 2.0));
    // 4 codes of the maximal message are not in the catalog: told back and counted.
    let not_stored = metric_sum(
        http_addr,
        "metaward_observations_not_stored_total",
        &["source=\"hl7\"", "reason=\"not_in_catalog\""],
    )
    .await;
    assert_eq!(not_stored, 4.0);
    assert_hl7apy_strict(&acks).await;
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mllp_send_from_pypi_hl7_is_answered_for_every_message() {
    let (server, _dir) = start_server().await;
    let (http_addr, mllp) = (server.http_addr(), server.mllp_addr());
    let dir = shared_pcd01();
    // Two messages in one file, CRLF as in the shared files: `--loose` turns them into CR
    // segments and sends both on one connection, without the final CR before the trailer.
    let work = tempfile::tempdir().unwrap();
    let file = work.path().join("two.hl7");
    let mut text = std::fs::read(dir.join("ipf-valid-pcd01-request.hl7")).unwrap();
    text.extend(b"\r\n");
    text.extend(std::fs::read(dir.join("ipf-valid-pcd01-request2.hl7")).unwrap());
    std::fs::write(&file, text).unwrap();
    let mllp_send = tools().join("mllp_send");
    let port = mllp.port().to_string();
    let output = tokio::task::spawn_blocking(move || {
        std::process::Command::new(mllp_send)
            .args(["--loose", "-p", &port, "-f"])
            .arg(&file)
            .arg("127.0.0.1")
            .output()
    })
    .await
    .unwrap()
    .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(
        output.status.success(),
        "mllp_send failed: {stdout}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert_eq!(stdout.matches("MSA|AA|").count(), 2, "{stdout}");
    assert!(stdout.contains("MSA|AA|MSGID1234"), "{stdout}");
    assert!(
        stdout.contains("MSA|AA|12d15a9:11df9e61347:-7fee:30456965"),
        "{stdout}"
    );
    history_has(
        http_addr,
        "789567",
        "nibp_systolic",
        &[(utc("20090813095715+0500"), 120.0, false)],
    )
    .await;
    history_has(
        http_addr,
        "AB60001",
        "heart_rate",
        &[(utc("20081211144500"), 60.0, false)],
    )
    .await;
    server.shutdown().await;
}

pub(crate) fn oru(
    control_id: &str,
    pid: &str,
    pv1: &str,
    device: &str,
    time: i64,
    obx: &str,
) -> Vec<u8> {
    let t = ::hl7::time::format_dtm(model::Timestamp(time));
    let mut text = format!(
        "MSH|^~\\&|GW^{device}^EUI-64|ICU|||{t}||ORU^R01^ORU_R01|{control_id}|P|2.6|||NE|AL\r"
    );
    if !pid.is_empty() {
        text.push_str(&format!("PID|||{pid}^^^H^PI\r"));
    }
    if !pv1.is_empty() {
        text.push_str(&format!("PV1||I|{pv1}\r"));
    }
    text.push_str(&format!(
        "OBR|1|||182777000^monitoring of patient^SNOMED-CT|||{t}\r{obx}\r"
    ));
    text.into_bytes()
}

pub(crate) fn hr(value: &str) -> String {
    format!(
        "OBX|1|NM|147842^MDC_ECG_HEART_RATE^MDC|1.1.1.1|{value}|264864^MDC_DIM_BEAT_PER_MIN^MDC|||||R"
    )
}

fn adt(
    trigger: &str,
    control_id: &str,
    patient: &str,
    name: &str,
    bed: &str,
    time: i64,
    charset: &str,
) -> Vec<u8> {
    let t = ::hl7::time::format_dtm(model::Timestamp(time));
    format!(
        "MSH|^~\\&|ADT|H|||{t}||ADT^{trigger}^ADT_A01|{control_id}|P|2.5||||||{charset}\r\
         EVN|{trigger}|{t}\rPID|||{patient}^^^H^MR||{name}||19600101|F\rPV1||I|{bed}\r"
    )
    .into_bytes()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn adt_moves_patients_and_bed_attribution_follows() {
    let (server, _dir) = start_server().await;
    let mut setup = small_setup();
    setup.wards[0].rooms[0].beds.push(store::BedRecord {
        id: BedId::new("b2"),
        room_id: RoomId::new("r1"),
        label: "Bed 2".into(),
        x: 5.0,
        z: 1.5,
        rotation: 0.0,
    });
    server.apply_setup(setup).await.unwrap();
    let (http_addr, mllp) = (server.http_addr(), server.mllp_addr());
    let mut peer = Peer::connect(mllp).await;
    let mut acks = Vec::new();
    let t0 = now_ms() + 1000;

    // A01: a new patient into bed b2; the name arrives in UTF-8 with an escaped delimiter.
    let ack = peer
        .exchange(&adt(
            "A01",
            "adt-1",
            "MRN-9",
            "M\\T\\ller^Zoë",
            "ICU^r1^b2",
            t0,
            "UNICODE UTF-8",
        ))
        .await;
    assert_eq!(field(&ack, "MSA", 1), "AA", "{ack}");
    assert_eq!(field(&ack, "MSA", 2), "adt-1");
    acks.push(ack);
    let patient = get_json(http_addr, "/api/v1/patients/MRN-9").await;
    assert_eq!(patient["name"], "Zoë M&ller");
    assert_eq!(patient["bed_id"], "b2");

    // An ORU naming only the bed goes to whoever lies in it at the time of the sample.
    let ack = peer
        .exchange(&oru(
            "oru-1",
            "",
            "ICU^r1^b2",
            "0a0b0c0d0e0f0001",
            t0 + 1000,
            &hr("71"),
        ))
        .await;
    assert_eq!(field(&ack, "MSA", 1), "AA", "{ack}");
    acks.push(ack);
    history_has(
        http_addr,
        "MRN-9",
        "heart_rate",
        &[(t0 + 1000, 71.0, false)],
    )
    .await;

    // A03 discharges p1 from b1; A02 moves MRN-9 into b1.
    for (trigger, id, patient, bed, at) in [
        ("A03", "adt-2", "p1", "", t0 + 2000),
        ("A02", "adt-3", "MRN-9", "ICU^r1^b1", t0 + 3000),
    ] {
        let ack = peer
            .exchange(&adt(trigger, id, patient, "", bed, at, ""))
            .await;
        assert_eq!(field(&ack, "MSA", 1), "AA", "{trigger}: {ack}");
        acks.push(ack);
    }
    let beds = get_json(http_addr, "/api/v1/beds").await;
    let occupant = |bed: &str| {
        beds.as_array()
            .unwrap()
            .iter()
            .find(|b| b["id"] == bed)
            .map(|b| b["patient_id"].clone())
            .unwrap()
    };
    assert_eq!(occupant("b1"), "MRN-9");
    assert!(occupant("b2").is_null());

    // dev-1 is associated with bed b1: with no PID or PV1, its data follows the bed's occupant.
    // Before the transfer that was p1, after it MRN-9.
    let ack = peer
        .exchange(&oru(
            "oru-2",
            "",
            "",
            "dev-1",
            t0 + 4000,
            &hr("88").replace("|R", "|R|||||||dev-1"),
        ))
        .await;
    assert_eq!(field(&ack, "MSA", 1), "AA", "{ack}");
    acks.push(ack);
    history_has(
        http_addr,
        "MRN-9",
        "heart_rate",
        &[(t0 + 4000, 88.0, false)],
    )
    .await;

    // A PID wins over the bed; an unknown bed falls back to the device association (none
    // here), and the data stays unassociated, visible to clinical engineers.
    let ack = peer
        .exchange(&oru(
            "oru-3",
            "p1",
            "ICU^r1^b1",
            "0a0b0c0d0e0f0002",
            t0 + 5000,
            &hr("64"),
        ))
        .await;
    assert_eq!(field(&ack, "MSA", 1), "AA", "{ack}");
    acks.push(ack);
    history_has(http_addr, "p1", "heart_rate", &[(t0 + 5000, 64.0, false)]).await;
    let ack = peer
        .exchange(&oru(
            "oru-4",
            "",
            "ICU^r1^b9",
            "0a0b0c0d0e0f0003",
            t0 + 6000,
            &hr("99"),
        ))
        .await;
    assert_eq!(field(&ack, "MSA", 1), "AA", "{ack}");
    assert!(
        errs(&ack)[0].contains("|PV1^2^3^1|204^Unknown key identifier^HL70357|W|"),
        "{ack}"
    );
    acks.push(ack);
    eventually("the unknown-bed device listed as unassociated", || async {
        let list = get_json(http_addr, "/api/v1/devices/unassociated").await;
        list.to_string().contains("0a0b0c0d0e0f0003").then_some(())
    })
    .await;

    // A08 updates demographics and keeps the bed.
    let ack = peer
        .exchange(&adt(
            "A08",
            "adt-4",
            "MRN-9",
            "Muller^Zoe",
            "ICU^r1^b1",
            t0 + 7000,
            "",
        ))
        .await;
    assert_eq!(field(&ack, "MSA", 1), "AA", "{ack}");
    acks.push(ack);
    let patient = get_json(http_addr, "/api/v1/patients/MRN-9").await;
    assert_eq!(patient["name"], "Zoe Muller");
    assert_eq!(patient["bed_id"], "b1");

    // ISO 8859-1 on the wire: one byte per character, read as MSH-18 says.
    let latin1: Vec<u8> = adt(
        "A08",
        "adt-4b",
        "MRN-9",
        "M@ller^Zo@",
        "ICU^r1^b1",
        t0 + 7500,
        "8859/1",
    )
    .into_iter()
    .map(|b| if b == b'@' { 0xfc } else { b })
    .collect();
    let ack = peer.exchange(&latin1).await;
    assert_eq!(field(&ack, "MSA", 1), "AA", "{ack}");
    assert_eq!(field(&ack, "MSH", 18), "8859/1");
    acks.push(ack);
    let patient = get_json(http_addr, "/api/v1/patients/MRN-9").await;
    assert_eq!(patient["name"], "Zoü Müller");

    // An admission to a bed we do not have is refused, naming PV1-3.
    let ack = peer
        .exchange(&adt(
            "A01",
            "adt-5",
            "MRN-10",
            "X^Y",
            "ICU^r1^nope",
            t0 + 8000,
            "",
        ))
        .await;
    assert_eq!(field(&ack, "MSA", 1), "AE", "{ack}");
    assert!(errs(&ack)[0].contains("|PV1^4^3^1|204^"), "{ack}");
    acks.push(ack);
    assert_reconciles(http_addr).await;
    assert_hl7apy_strict(&acks).await;
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_messages_get_ae_or_ar_with_err_are_counted_and_kept() {
    let (server, _dir) = start_server().await;
    server.apply_setup(small_setup()).await.unwrap();
    let (http_addr, mllp) = (server.http_addr(), server.mllp_addr());
    let mut peer = Peer::connect(mllp).await;
    let t = now_ms();
    let cases: Vec<(Vec<u8>, &str, &str)> = vec![
        (
            oru("bad-1", "p1", "", "0a01", t, &hr("7x2")),
            "AE",
            "|OBX^4^5^1|102^Data type error^HL70357|E|",
        ),
        (
            oru(
                "bad-2",
                "p1",
                "",
                "0a01",
                t,
                &hr("72").replace("264864^MDC_DIM_BEAT_PER_MIN^MDC", "kPa^kPa^UCUM"),
            ),
            "AE",
            "|OBX^4^6^1|103^Table value not found^HL70357|E|",
        ),
        (
            oru("bad-3", "p1", "", "0a01", t, &hr("72")).replace_msh(12, "3.0"),
            "AR",
            "|MSH^1^12^1|203^",
        ),
        (
            adt("A40", "bad-4", "p1", "", "", t, ""),
            "AR",
            "|MSH^1^9^1|201^Unsupported event code^HL70357|E|",
        ),
        (
            oru("bad-5", "p1", "", "0a01", t, &hr("72")).replace_msh(18, "ISO IR87"),
            "AR",
            "|MSH^1^18^1|103^",
        ),
        (
            b"PID|||1\rOBX|1|NM|1".to_vec(),
            "AR",
            "|100^Segment sequence error^HL70357|E|",
        ),
    ];
    let mut acks = Vec::new();
    for (message, code, err) in &cases {
        let ack = peer.exchange(message).await;
        assert_eq!(field(&ack, "MSA", 1), *code, "{ack}");
        assert!(
            errs(&ack).iter().any(|e| e.contains(err)),
            "expected {err} in {ack}"
        );
        acks.push(ack);
    }
    // The same connection still works.
    let ack = peer
        .exchange(&oru("good-1", "p1", "", "0a01", t, &hr("72")))
        .await;
    assert_eq!(field(&ack, "MSA", 1), "AA", "{ack}");
    acks.push(ack);
    assert_hl7apy_strict(&acks).await;

    let (received, accepted, rejected) = assert_reconciles(http_addr).await;
    assert_eq!((received, accepted, rejected), (7.0, 1.0, 6.0));
    for reason in [
        "data_type",
        "table_value_not_found",
        "unsupported_version_id",
        "unsupported_event_code",
        "parse_table_value_not_found",
        "parse_segment_sequence",
    ] {
        let n = metric_sum(
            http_addr,
            "metaward_messages_rejected_total",
            &["source=\"hl7\"", &format!("reason=\"{reason}\"")],
        )
        .await;
        assert_eq!(n, 1.0, "{reason}");
    }
    let peer_addr = peer.stream.local_addr().unwrap().to_string();
    let letters = eventually("six hl7 dead letters", || async {
        let letters = get_json(http_addr, "/api/v1/dead-letters").await;
        let ours: Vec<Value> = letters
            .as_array()
            .unwrap()
            .iter()
            .filter(|d| d["source"] == "hl7")
            .cloned()
            .collect();
        (ours.len() == 6).then_some(ours)
    })
    .await;
    assert!(
        letters.iter().all(|d| d["origin"] == peer_addr.as_str()),
        "{letters:?}"
    );
    assert!(
        letters
            .iter()
            .any(|d| d["raw"].as_str().is_some_and(|raw| raw.contains("bad-1")))
    );
    server.shutdown().await;
}

trait ReplaceMsh {
    fn replace_msh(self, field: usize, value: &str) -> Vec<u8>;
}

impl ReplaceMsh for Vec<u8> {
    /// Sets MSH-`field` (counted as the standard does) of a message.
    fn replace_msh(self, field: usize, value: &str) -> Vec<u8> {
        let text = String::from_utf8(self).unwrap();
        let (msh, rest) = text.split_once('\r').unwrap();
        let mut parts: Vec<String> = msh.split('|').map(str::to_owned).collect();
        if parts.len() < field {
            parts.resize(field, String::new());
        }
        parts[field - 1] = value.to_owned();
        format!("{}\r{rest}", parts.join("|")).into_bytes()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_garbage_peer_never_disturbs_the_others_and_framing_is_lenient() {
    let (server, _dir) = start_server().await;
    server.apply_setup(small_setup()).await.unwrap();
    let (http_addr, mllp) = (server.http_addr(), server.mllp_addr());
    let t = now_ms();

    let mut bad = Peer::connect(mllp).await;
    let mut good = Peer::connect(mllp).await;
    // Garbage outside any frame, a frame cut off by a new start byte, binary noise.
    bad.send_raw(b"GET / HTTP/1.1\r\n\r\n").await;
    bad.send_raw(&[VT]).await;
    bad.send_raw(b"MSH|^~\\&|half").await;
    // The VT that ends the noise starts the bad peer's next frame, sent further down.
    bad.send_raw(&[0xff, 0x00, 0x13, VT]).await;
    // Meanwhile the good peer's message is answered.
    let ack = good
        .exchange(&oru("g-1", "p1", "", "0a02", t, &hr("61")))
        .await;
    assert_eq!(field(&ack, "MSA", 1), "AA", "{ack}");
    // The bad peer's own next frame, ended by FS alone and without the final CR, still works.
    let mut message = oru("b-1", "p1", "", "0a03", t + 1, &hr("62"));
    message.pop();
    message.push(FS);
    bad.send_raw(&message).await;
    let ack = bad.read_ack().await;
    assert_eq!(field(&ack, "MSA", 1), "AA", "{ack}");
    assert_eq!(field(&ack, "MSA", 2), "b-1");

    // Many messages on one connection and many connections at once, LF-only segments too.
    let mut tasks = Vec::new();
    for connection in 0..6 {
        tasks.push(tokio::spawn(async move {
            let mut peer = Peer::connect(mllp).await;
            for n in 0..15 {
                let id = format!("c{connection}-{n}");
                let mut message = oru(
                    &id,
                    "p1",
                    "",
                    &format!("0b{connection:02}"),
                    t + 10 + n,
                    &hr("70"),
                );
                if n % 2 == 1 {
                    message = message
                        .iter()
                        .map(|&b| if b == CR { b'\n' } else { b })
                        .collect();
                }
                let ack = peer.exchange(&message).await;
                assert_eq!(field(&ack, "MSA", 1), "AA", "{ack}");
                assert_eq!(field(&ack, "MSA", 2), id);
            }
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
    // A frame the peer never finishes before it hangs up is kept too.
    bad.send_raw(&[VT, b'M', b'S', b'H']).await;
    drop(bad);
    let (_, accepted, _) = eventually("the bad peer's truncated frame counted", || async {
        let (received, accepted, rejected) = counts(http_addr).await;
        (rejected == 3.0 && received == accepted + rejected)
            .then_some((received, accepted, rejected))
    })
    .await;
    assert_eq!(accepted, 2.0 + 6.0 * 15.0);
    for reason in [
        "framing_outside_frame",
        "framing_interrupted",
        "framing_truncated",
    ] {
        let n = metric_sum(
            http_addr,
            "metaward_messages_rejected_total",
            &[&format!("reason=\"{reason}\"")],
        )
        .await;
        assert!(n >= 1.0, "{reason}");
    }
    server.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn waveforms_body_sites_and_two_devices_in_one_message() {
    let (server, _dir) = start_server().await;
    server.apply_setup(small_setup()).await.unwrap();
    let (http_addr, mllp) = (server.http_addr(), server.mllp_addr());
    let t = now_ms();
    let ts = ::hl7::time::format_dtm(model::Timestamp(t));
    let message = format!(
        "MSH|^~\\&|GW^00000000000000ff^EUI-64|ICU|||{ts}||ORU^R01^ORU_R01|wave-1|P|2.6\r\
         PID|||p1^^^H^PI\r\
         OBR|1|||182777000^monitoring of patient^SNOMED-CT|||{ts}\r\
         OBX|1||69798^MDC_DEV_ECG^MDC|1.0.0.0|||||||X|||{ts}||||00-00-00-00-00-00-00-0A^EUI-64\r\
         OBX|2|NA|131330^MDC_ECG_ELEC_POTL_II^MDC|1.1.2.1|0.1^0.25^-0.5^1.25^0|266418^MDC_DIM_MILLI_VOLT^MDC|||||R\r\
         OBX|3|NM|67981^MDC_ATTR_TIME_PD_SAMP^MDC|1.1.2.1.1|4|ms^ms^UCUM|||||R\r\
         OBX|4|NM|150021^MDC_PRESS_BLD_NONINV_SYS^MDC|1.2.1.1|118|266016^MDC_DIM_MMHG^MDC|||||R|||||||||RA^Right arm\r\
         OBX|5||69642^MDC_DEV_PULS_OXIM^MDC|2.0.0.0|||||||X|||{ts}||||000000000000000B^EUI-64\r\
         OBX|6|NM|150456^MDC_PULS_OXIM_SAT_O2^MDC|2.1.1.1|97|262688^MDC_DIM_PERCENT^MDC|||||R\r"
    );
    let mut peer = Peer::connect(mllp).await;
    let ack = peer.exchange(message.as_bytes()).await;
    assert_eq!(field(&ack, "MSA", 1), "AA", "{ack}");
    assert!(errs(&ack).is_empty(), "{ack}");

    let wave = eventually("the ECG chunk stored", || async {
        let wave = get_json(
            http_addr,
            &format!(
                "/api/v1/patients/p1/waveform?metric=ecg_ii&from={}&to={}",
                t - 1000,
                t + 60_000
            ),
        )
        .await;
        (!wave["chunks"].as_array().unwrap().is_empty()).then_some(wave)
    })
    .await;
    let chunk = &wave["chunks"][0];
    assert_eq!(chunk["start"], t);
    assert_eq!(chunk["rate_hz"], 250.0);
    assert_eq!(chunk["device_id"], "000000000000000a");
    let samples: Vec<f64> = chunk["samples"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s.as_f64().unwrap())
        .collect();
    assert_eq!(samples.len(), 5);
    for (got, want) in samples.iter().zip([0.1, 0.25, -0.5, 1.25, 0.0]) {
        assert!((got - want).abs() < 0.01, "{samples:?}");
    }
    history_has(http_addr, "p1", "spo2", &[(t, 97.0, false)]).await;
    let stored = get_json(
        http_addr,
        &format!("/api/v1/patients/p1/history?metric=spo2&from={}", t - 1),
    )
    .await;
    assert_eq!(stored["points"][0]["device_id"], "000000000000000b");
    let twin = get_json(http_addr, "/api/v1/patients/p1/twin").await;
    let nibp = twin["values"]
        .as_array()
        .unwrap()
        .iter()
        .find(|v| v["metric"] == "nibp_systolic")
        .cloned()
        .expect("nibp in the twin");
    assert_eq!(nibp["region"], "upper_arm_right", "{nibp}");
    // Two devices, one message.
    let (received, accepted, _) = assert_reconciles(http_addr).await;
    assert_eq!((received, accepted), (1.0, 1.0));

    // A long strip (100 s at 500 Hz, a frame of about 300 kB) is read off the runtime and kept whole.
    let start = t + 10_000;
    let samples: Vec<String> = (0..50_000)
        .map(|i| format!("{:.3}", (i % 100) as f64 / 100.0))
        .collect();
    let long = format!(
        "MSH|^~\\&|GW^000000000000000a^EUI-64|ICU|||{ts}||ORU^R01^ORU_R01|wave-2|P|2.6\r\
         PID|||p1^^^H^PI\rOBR|1|||182777000^monitoring of patient^SNOMED-CT|||{}\r\
         OBX|1|NA|131330^MDC_ECG_ELEC_POTL_II^MDC|1.1.2.1|{}|mV^mV^UCUM|||||R\r\
         OBX|2|NM|67981^MDC_ATTR_TIME_PD_SAMP^MDC|1.1.2.1.1|2|ms^ms^UCUM|||||R\r",
        ::hl7::time::format_dtm(model::Timestamp(start)),
        samples.join("^")
    );
    assert!(long.len() > 256 * 1024);
    let ack = peer.exchange(long.as_bytes()).await;
    assert_eq!(field(&ack, "MSA", 1), "AA", "{ack}");
    eventually("the long ECG chunk stored", || async {
        let wave = get_json(
            http_addr,
            &format!(
                "/api/v1/patients/p1/waveform?metric=ecg_ii&from={}&to={}",
                start,
                start + 200_000
            ),
        )
        .await;
        wave["chunks"]
            .as_array()
            .unwrap()
            .iter()
            .any(|c| {
                c["start"] == start
                    && c["rate_hz"] == 500.0
                    && c["samples"].as_array().unwrap().len() == 50_000
            })
            .then_some(())
    })
    .await;
    server.shutdown().await;
}

/// The real binary, SIGKILLed while four gateways send: every message it answered AA is in the
/// history after a restart, and so is the bed an ADT A01 put the patient in.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_aa_survives_sigkill() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let mut demo = crate::crash::spawn(&["demo", "--beds", "2", "--seed", "7"], &data);
    let beds = get_json(demo.http, "/api/v1/beds").await;
    let bed = beds[0]["id"].as_str().unwrap().to_owned();
    let base = now_ms();
    let mut peer = Peer::connect(demo.mllp).await;
    let ack = peer
        .exchange(&adt(
            "A01",
            "crash-adt",
            "HL7-CRASH",
            "Crash^Carla",
            &format!("^^{bed}"),
            base,
            "",
        ))
        .await;
    assert_eq!(field(&ack, "MSA", 1), "AA", "{ack}");

    let acked = std::sync::Arc::new(std::sync::Mutex::new(Vec::<(i64, f64)>::new()));
    let mut senders = Vec::new();
    for connection in 0..4i64 {
        let (acked, mllp) = (acked.clone(), demo.mllp);
        senders.push(tokio::spawn(async move {
            let Ok(stream) = TcpStream::connect(mllp).await else {
                return;
            };
            let mut peer = Peer {
                stream,
                pending: Vec::new(),
            };
            for n in 0..100_000i64 {
                let time = base + 1 + n * 4 + connection;
                let value = 40.0 + (n % 50) as f64;
                let message = oru(
                    &format!("k{connection}-{n}"),
                    "HL7-CRASH",
                    "",
                    "0c0c",
                    time,
                    &hr(&value.to_string()),
                );
                let mut framed = vec![VT];
                framed.extend(message);
                framed.extend([FS, CR]);
                if peer.stream.write_all(&framed).await.is_err() {
                    return;
                }
                // Read the answer; a closed socket means the server was killed.
                loop {
                    if let Some(end) = peer.pending.iter().position(|&b| b == FS) {
                        let frame: Vec<u8> = peer.pending.drain(..=end).collect();
                        if String::from_utf8_lossy(&frame).contains("MSA|AA|") {
                            acked.lock().unwrap().push((time, value));
                        }
                        break;
                    }
                    let mut buffer = [0u8; 4096];
                    match peer.stream.read(&mut buffer).await {
                        Ok(n) if n > 0 => peer.pending.extend_from_slice(&buffer[..n]),
                        _ => return,
                    }
                }
            }
        }));
    }
    eventually("300 messages acknowledged", || async {
        (acked.lock().unwrap().len() >= 300).then_some(())
    })
    .await;
    demo.child.kill().expect("SIGKILL the server");
    for sender in senders {
        let _ = tokio::time::timeout(DEADLINE, sender).await;
    }
    let _ = demo.child.wait();
    drop(demo);
    let acked = acked.lock().unwrap().clone();

    let served = crate::crash::spawn(&["serve"], &data);
    // The sample times run ahead of the clock (four per millisecond), so the range says `to`.
    let path = format!(
        "/api/v1/patients/HL7-CRASH/history?metric=heart_rate&from={base}&to={}&limit=100000",
        base + 10_000_000
    );
    let stored = eventually("history readable after restart", || async {
        let response = http(served.http, "GET", &path, None).await;
        (response.status == 200).then(|| response.json())
    })
    .await;
    let points: std::collections::HashSet<(i64, u64)> = stored["points"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            (
                p["time"].as_i64().unwrap(),
                p["value"].as_f64().unwrap().to_bits(),
            )
        })
        .collect();
    let missing: Vec<_> = acked
        .iter()
        .filter(|(t, v)| !points.contains(&(*t, v.to_bits())))
        .collect();
    assert!(
        missing.is_empty(),
        "{} of {} AA'd messages lost, e.g. {:?}",
        missing.len(),
        acked.len(),
        missing.first()
    );
    let patient = get_json(served.http, "/api/v1/patients/HL7-CRASH").await;
    assert_eq!(patient["bed_id"], bed.as_str());
}
