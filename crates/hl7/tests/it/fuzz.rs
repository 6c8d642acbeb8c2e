//! No input makes the framer or the parser panic or loop: arbitrary bytes, arbitrary read
//! boundaries, and HL7-shaped noise that reaches the PCD-01, ADT and ACK code paths. What the
//! framer reports must not depend on how the bytes were split across reads, and a good frame
//! after any garbage is still read.

use hl7::ack::{AckCode, build_ack};
use hl7::mllp::{self, Frame, Framer};
use hl7::{Delimiters, Issue, Message, message};
use model::{Catalog, Timestamp};
use proptest::prelude::*;

fn frames_of(chunks: &[&[u8]], max_frame: usize) -> Vec<Frame> {
    let mut framer = Framer::new(max_frame);
    let mut frames = Vec::new();
    for chunk in chunks {
        framer.push(chunk);
        frames.extend(std::iter::from_fn(|| framer.next_frame()));
    }
    frames.extend(std::iter::from_fn(|| framer.finish()));
    frames
}

/// Bytes that look like HL7 and MLLP often enough to go deep: delimiters, segment names,
/// digits, framing bytes.
fn hl7ish() -> impl Strategy<Value = Vec<u8>> {
    let atoms: Vec<&'static [u8]> = vec![
        b"|",
        b"^",
        b"~",
        b"\\",
        b"&",
        b"\r",
        b"\n",
        b"\r\n",
        b"MSH|^~\\&|",
        b"PID|",
        b"PV1|",
        b"OBR|",
        b"OBX|",
        b"EVN|",
        b"NM",
        b"NA",
        b"ORU^R01",
        b"ADT^A01",
        b"ADT^A02",
        b"ADT^A03",
        b"ADT^A08",
        b"P",
        b"2.6",
        b"2.3.1",
        b"8859/1",
        b"UNICODE UTF-8",
        b"150456",
        b"131330",
        b"67981",
        b"147842",
        b"1.1.1.1",
        b"1.0.0.0",
        b".",
        b"EUI-64",
        b"20240101120000+0000",
        b"-",
        b"+",
        b"0",
        b"7",
        b"\\F\\",
        b"\\X41\\",
        b"\\",
        b"\"\"",
        b"\xe9",
        b"\xc3\xa9",
        b"\x0b",
        b"\x1c",
        b"ms",
    ];
    prop::collection::vec(prop::sample::select(atoms), 0..120).prop_map(|parts| parts.concat())
}

/// An ORU^R01 skeleton with noise in the places the mapping reads.
fn oru_like() -> impl Strategy<Value = Vec<u8>> {
    (hl7ish(), hl7ish(), hl7ish(), hl7ish()).prop_map(|(pid, obr, obx1, obx2)| {
        let mut message =
            b"MSH|^~\\&|GW^0011^EUI-64|F|||20240101||ORU^R01^ORU_R01|c1|P|2.6\rPID|||".to_vec();
        for (prefix, noise) in [
            (&b""[..], pid),
            (b"\rOBR|1|", obr),
            (b"\rOBX|1|", obx1),
            (b"\rOBX|2|", obx2),
        ] {
            message.extend_from_slice(prefix);
            message.extend(noise);
        }
        message
    })
}

fn exercise(bytes: &[u8]) {
    let catalog = Catalog::embedded();
    match Message::parse(bytes) {
        Ok(message) => {
            let oru = hl7::pcd01::map_oru(&message, catalog, Timestamp(0));
            for mapped in &oru.mapped {
                assert!(catalog.by_key(&mapped.observation.metric).is_some());
            }
            let _ = hl7::adt::map_adt(&message);
            let ack = build_ack(
                Some(&message),
                AckCode::Error,
                &oru.issues,
                "x",
                Timestamp(0),
            );
            // Our own answer is always a message we can read, answering the right control id.
            let read = Message::parse(&ack).expect("an ACK we wrote parses");
            assert_eq!(read.first("MSA").unwrap().value(2), message.control_id());
        }
        Err(error) => {
            let ack = build_ack(
                None,
                AckCode::Reject,
                &[Issue::from(error)],
                "x",
                Timestamp(0),
            );
            assert!(Message::parse(&ack).is_ok());
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn the_framer_reads_the_same_whatever_the_read_boundaries(
        bytes in prop::collection::vec(any::<u8>(), 0..600),
        cuts in prop::collection::vec(0usize..600, 0..12),
        max_frame in 1usize..300,
    ) {
        let whole = frames_of(&[&bytes], max_frame);
        let mut cuts: Vec<usize> = cuts.into_iter().map(|c| c.min(bytes.len())).collect();
        cuts.sort_unstable();
        let mut chunks = Vec::new();
        let mut start = 0;
        for cut in cuts {
            chunks.push(&bytes[start..cut]);
            start = cut;
        }
        chunks.push(&bytes[start..]);
        prop_assert_eq!(&frames_of(&chunks, max_frame), &whole);
        for frame in &whole {
            match frame {
                Frame::Message(message) => {
                    prop_assert!(message.len() <= max_frame);
                    prop_assert!(!message.contains(&mllp::START) && !message.contains(&mllp::END));
                }
                Frame::Malformed { bytes, .. } => prop_assert!(bytes.len() <= max_frame),
            }
        }
    }

    #[test]
    fn a_good_frame_after_any_garbage_is_read(
        garbage in prop::collection::vec(any::<u8>(), 0..300),
        body in prop::collection::vec(any::<u8>().prop_filter("no framing bytes", |b| *b != mllp::START && *b != mllp::END), 1..200),
    ) {
        let mut wire = garbage;
        wire.push(mllp::END);
        wire.extend(mllp::frame(&body));
        let frames = frames_of(&[&wire], 1024);
        prop_assert_eq!(frames.last(), Some(&Frame::Message(body)));
    }

    #[test]
    fn the_parser_and_mapping_take_any_bytes(bytes in prop::collection::vec(any::<u8>(), 0..400)) {
        let mut with_header = b"MSH|^~\\&|".to_vec();
        with_header.extend(&bytes);
        exercise(&bytes);
        exercise(&with_header);
    }

    #[test]
    fn the_parser_and_mapping_take_hl7_shaped_noise(bytes in hl7ish(), oru in oru_like()) {
        exercise(&bytes);
        exercise(&oru);
    }

    #[test]
    fn escaping_round_trips(text in "\\PC*") {
        let text = text.replace('\r', "\n");
        let d = Delimiters::default();
        prop_assert_eq!(message::unescape(&message::escape(&text, d), d, hl7::Charset::Utf8), text);
    }

    #[test]
    fn times_round_trip(millis in -2_208_988_800_000i64..253_402_300_799_999) {
        let text = hl7::time::format_dtm(Timestamp(millis));
        prop_assert_eq!(hl7::time::parse_dtm(&text), Some(Timestamp(millis)));
    }
}
