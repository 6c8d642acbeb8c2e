//! MLLP framing (HL7 v2 Minimal Lower Layer Protocol): `<VT> message <FS><CR>`.
//!
//! The framer is a plain state machine over bytes, so it is tested and fuzzed without sockets.
//! It is lenient where real senders differ (a frame ended by FS alone, the CR after FS arriving
//! in the next read, blank lines between frames) and says precisely what was wrong otherwise:
//! bytes outside any frame, a frame cut off by a new start byte, a frame larger than the limit.
//! A bad frame is reported on its own; the frames after it are read as usual.

pub const START: u8 = 0x0b;
pub const END: u8 = 0x1c;
pub const CR: u8 = 0x0d;

/// What the framer found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Frame {
    /// A complete message, without the framing bytes.
    Message(Vec<u8>),
    /// Bytes that are not a well-formed frame, with the reason.
    Malformed { bytes: Vec<u8>, reason: FrameError },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    #[error("bytes outside an MLLP frame (no start byte 0x0B)")]
    OutsideFrame,
    #[error("an MLLP frame was cut off by a new start byte before its end (0x1C)")]
    Interrupted,
    #[error("an MLLP frame is larger than the limit")]
    TooLarge,
    #[error("the connection closed inside an MLLP frame")]
    Truncated,
}

impl FrameError {
    pub fn label(self) -> &'static str {
        match self {
            FrameError::OutsideFrame => "framing_outside_frame",
            FrameError::Interrupted => "framing_interrupted",
            FrameError::TooLarge => "framing_too_large",
            FrameError::Truncated => "framing_truncated",
        }
    }
}

#[derive(Debug)]
pub struct Framer {
    max_frame: usize,
    state: State,
    buffer: Vec<u8>,
    /// A CR right after FS belongs to the trailer, even when it arrives in the next read.
    swallow_cr: bool,
    /// Bytes of a frame that grew too large are skipped up to its end.
    discarding: bool,
    ready: std::collections::VecDeque<Frame>,
}

#[derive(Debug, PartialEq, Eq)]
enum State {
    /// Between frames: whitespace is ignored, anything else is garbage until a start byte.
    Idle,
    Garbage,
    InFrame,
}

impl Framer {
    pub fn new(max_frame: usize) -> Framer {
        Framer {
            max_frame,
            state: State::Idle,
            buffer: Vec::new(),
            swallow_cr: false,
            discarding: false,
            ready: std::collections::VecDeque::new(),
        }
    }

    /// Feeds bytes as they came off the socket.
    pub fn push(&mut self, bytes: &[u8]) {
        for &byte in bytes {
            self.push_byte(byte);
        }
    }

    /// The next complete frame, if one is ready.
    pub fn next_frame(&mut self) -> Option<Frame> {
        self.ready.pop_front()
    }

    /// The peer closed: whatever is pending is reported.
    pub fn finish(&mut self) -> Option<Frame> {
        let pending = std::mem::take(&mut self.buffer);
        let state = std::mem::replace(&mut self.state, State::Idle);
        let frame = match state {
            State::InFrame if !self.discarding => Some(Frame::Malformed {
                bytes: pending,
                reason: FrameError::Truncated,
            }),
            State::Garbage if !self.discarding => Some(Frame::Malformed {
                bytes: pending,
                reason: FrameError::OutsideFrame,
            }),
            _ => None,
        };
        self.discarding = false;
        self.ready.extend(frame);
        self.ready.pop_front()
    }

    /// Bytes held for a frame not yet complete (for a caller that bounds memory).
    pub fn pending(&self) -> usize {
        self.buffer.len()
    }

    fn push_byte(&mut self, byte: u8) {
        if std::mem::take(&mut self.swallow_cr) && byte == CR {
            return;
        }
        match self.state {
            State::Idle => match byte {
                START => self.state = State::InFrame,
                b' ' | b'\t' | b'\r' | b'\n' => {}
                _ => {
                    self.state = State::Garbage;
                    self.buffer.push(byte);
                }
            },
            State::Garbage => match byte {
                START => {
                    self.end_garbage();
                    self.state = State::InFrame;
                }
                END => {
                    // A sender that forgot the start byte but ended its message properly.
                    self.end_garbage();
                    self.state = State::Idle;
                    self.swallow_cr = true;
                }
                _ => self.keep(byte),
            },
            State::InFrame => match byte {
                END => {
                    if std::mem::take(&mut self.discarding) {
                        self.buffer.clear();
                    } else {
                        let message = std::mem::take(&mut self.buffer);
                        self.ready.push_back(Frame::Message(message));
                    }
                    self.state = State::Idle;
                    self.swallow_cr = true;
                }
                START => {
                    if !std::mem::take(&mut self.discarding) {
                        self.emit_malformed(FrameError::Interrupted);
                    }
                    self.buffer.clear();
                }
                _ => self.keep(byte),
            },
        }
    }

    fn end_garbage(&mut self) {
        if std::mem::take(&mut self.discarding) {
            self.buffer.clear();
        } else {
            self.emit_malformed(FrameError::OutsideFrame);
        }
    }

    fn keep(&mut self, byte: u8) {
        if self.discarding {
            return;
        }
        if self.buffer.len() >= self.max_frame {
            let bytes = std::mem::take(&mut self.buffer);
            let reason = if self.state == State::Garbage {
                FrameError::OutsideFrame
            } else {
                FrameError::TooLarge
            };
            self.ready.push_back(Frame::Malformed { bytes, reason });
            self.discarding = true;
            return;
        }
        self.buffer.push(byte);
    }

    fn emit_malformed(&mut self, reason: FrameError) {
        let bytes = std::mem::take(&mut self.buffer);
        self.ready.push_back(Frame::Malformed { bytes, reason });
    }
}

/// Wraps a message in an MLLP frame.
pub fn frame(message: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(message.len() + 3);
    out.push(START);
    out.extend_from_slice(message);
    out.push(END);
    out.push(CR);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn all(framer: &mut Framer) -> Vec<Frame> {
        std::iter::from_fn(|| framer.next_frame()).collect()
    }

    #[test]
    fn frames_one_after_another_and_split_across_reads() {
        let mut framer = Framer::new(1024);
        let mut wire = frame(b"MSH|a\r");
        wire.extend(frame(b"MSH|b"));
        wire.extend(b"\r\n");
        wire.extend(frame(b"MSH|c\r"));
        for chunk in wire.chunks(3) {
            framer.push(chunk);
        }
        assert_eq!(
            all(&mut framer),
            vec![
                Frame::Message(b"MSH|a\r".to_vec()),
                Frame::Message(b"MSH|b".to_vec()),
                Frame::Message(b"MSH|c\r".to_vec()),
            ]
        );
        assert_eq!(framer.finish(), None);
    }

    #[test]
    fn fs_alone_ends_a_frame_and_a_late_cr_is_the_trailer() {
        let mut framer = Framer::new(1024);
        framer.push(b"\x0bMSH|a\x1c");
        assert_eq!(framer.next_frame(), Some(Frame::Message(b"MSH|a".to_vec())));
        framer.push(b"\r\x0bMSH|b\x1c\r");
        assert_eq!(all(&mut framer), vec![Frame::Message(b"MSH|b".to_vec())]);
    }

    #[test]
    fn garbage_is_reported_and_the_next_frame_still_read() {
        let mut framer = Framer::new(1024);
        framer.push(b"hello\x0bMSH|a\x1c\rMSH|nostart\x1c\r\x0bMSH|cut\x0bMSH|b\x1c\r");
        assert_eq!(
            all(&mut framer),
            vec![
                Frame::Malformed {
                    bytes: b"hello".to_vec(),
                    reason: FrameError::OutsideFrame
                },
                Frame::Message(b"MSH|a".to_vec()),
                Frame::Malformed {
                    bytes: b"MSH|nostart".to_vec(),
                    reason: FrameError::OutsideFrame
                },
                Frame::Malformed {
                    bytes: b"MSH|cut".to_vec(),
                    reason: FrameError::Interrupted
                },
                Frame::Message(b"MSH|b".to_vec()),
            ]
        );
        framer.push(b"\x0bMSH|half");
        assert_eq!(
            framer.finish(),
            Some(Frame::Malformed {
                bytes: b"MSH|half".to_vec(),
                reason: FrameError::Truncated
            })
        );
    }

    #[test]
    fn a_frame_over_the_limit_is_refused_once_and_skipped() {
        let mut framer = Framer::new(8);
        framer.push(b"\x0b0123456789abcdef\x1c\r\x0bok\x1c\r");
        let frames = all(&mut framer);
        assert_eq!(frames.len(), 2);
        assert!(
            matches!(&frames[0], Frame::Malformed { reason: FrameError::TooLarge, bytes } if bytes.len() == 8)
        );
        assert_eq!(frames[1], Frame::Message(b"ok".to_vec()));
        assert!(framer.pending() == 0);
    }
}
