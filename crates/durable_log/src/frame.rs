//! Record framing: `[len u32 LE][crc32 u32 LE][payload]`.
//!
//! The checksum (CRC-32/IEEE, `crc32fast`) covers the four length bytes and the payload, so a
//! zero-filled or garbage tail never passes as a record (the CRC of four zero bytes is not zero).

use std::io::{self, Read};

/// Bytes before the payload: length and checksum.
pub(crate) const HEADER_BYTES: usize = 8;

/// The largest payload a record may hold. A length field above it is read as corruption, so this
/// is part of the file format: raising it later is compatible, lowering it is not.
pub const MAX_RECORD_BYTES: usize = 32 * 1024 * 1024;

fn checksum(len_bytes: [u8; 4], payload: &[u8]) -> u32 {
    let mut hasher = crc32fast::Hasher::new();
    hasher.update(&len_bytes);
    hasher.update(payload);
    hasher.finalize()
}

/// Appends the frame of `payload` to `out`. The caller has checked the size limit.
pub(crate) fn encode(payload: &[u8], out: &mut Vec<u8>) {
    debug_assert!(payload.len() <= MAX_RECORD_BYTES);
    let len_bytes = (payload.len() as u32).to_le_bytes();
    out.extend_from_slice(&len_bytes);
    out.extend_from_slice(&checksum(len_bytes, payload).to_le_bytes());
    out.extend_from_slice(payload);
}

/// What the next bytes of a segment hold.
pub(crate) enum Frame {
    /// A whole record whose checksum matches.
    Record(Vec<u8>),
    /// A clean end: no byte left.
    End,
    /// A partial or damaged frame, with the reason.
    Torn(String),
}

/// Reads until `buf` is full or the reader is exhausted; returns how many bytes were read.
fn read_full(reader: &mut impl Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match reader.read(&mut buf[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(filled)
}

/// Decodes one frame. I/O errors are returned as such; damage is a `Frame::Torn`.
pub(crate) fn decode(reader: &mut impl Read) -> io::Result<Frame> {
    let mut header = [0u8; HEADER_BYTES];
    let n = read_full(reader, &mut header)?;
    if n == 0 {
        return Ok(Frame::End);
    }
    if n < HEADER_BYTES {
        return Ok(Frame::Torn(format!("partial header of {n} bytes")));
    }
    let len_bytes = [header[0], header[1], header[2], header[3]];
    let len = u32::from_le_bytes(len_bytes) as usize;
    let expected_crc = u32::from_le_bytes([header[4], header[5], header[6], header[7]]);
    if len > MAX_RECORD_BYTES {
        return Ok(Frame::Torn(format!(
            "length field {len} exceeds the record limit of {MAX_RECORD_BYTES}"
        )));
    }
    let mut payload = vec![0u8; len];
    let n = read_full(reader, &mut payload)?;
    if n < len {
        return Ok(Frame::Torn(format!("partial payload: {n} of {len} bytes")));
    }
    if checksum(len_bytes, &payload) != expected_crc {
        return Ok(Frame::Torn("checksum mismatch".to_owned()));
    }
    Ok(Frame::Record(payload))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_damage() {
        let mut bytes = Vec::new();
        encode(b"hello", &mut bytes);
        encode(b"", &mut bytes);
        let mut reader = &bytes[..];
        assert!(matches!(decode(&mut reader).unwrap(), Frame::Record(p) if p == b"hello"));
        assert!(matches!(decode(&mut reader).unwrap(), Frame::Record(p) if p.is_empty()));
        assert!(matches!(decode(&mut reader).unwrap(), Frame::End));

        // Zeros (what a filesystem may leave after a crash) are not a record.
        let zeros = [0u8; 16];
        assert!(matches!(decode(&mut &zeros[..]).unwrap(), Frame::Torn(_)));

        let mut flipped = bytes.clone();
        flipped[9] ^= 0x01;
        assert!(matches!(decode(&mut &flipped[..]).unwrap(), Frame::Torn(_)));

        assert!(matches!(decode(&mut &bytes[..5]).unwrap(), Frame::Torn(_)));
        assert!(matches!(decode(&mut &bytes[..11]).unwrap(), Frame::Torn(_)));
    }
}
