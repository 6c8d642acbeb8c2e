//! The HL7 v2 message itself: bytes in the character set MSH-18 names, segments ending in CR
//! (CRLF and LF tolerated), the delimiters MSH-1 and MSH-2 declare, and escape sequences
//! (`\F\`, `\S\`, `\T\`, `\R\`, `\E\`, `\P\`, `\Xhh..\`, `\.br\`) resolved into plain text.
//!
//! Fields are numbered as the standard numbers them: `MSH-1` is the field separator itself,
//! `PID-3` is the third field after the segment name. Every accessor answers "" for what is
//! absent, so the mapping code reads like the tables it follows. Parsing never panics; what it
//! cannot accept at all is a [`ParseError`] naming the place, for an ERR segment.

use crate::{ErrorCode, Location};

/// The separator and encoding characters (MSH-1, MSH-2).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Delimiters {
    pub field: char,
    pub component: char,
    pub repetition: char,
    pub escape: Option<char>,
    pub subcomponent: char,
    /// HL7 v2.7's truncation character, when MSH-2 declares one.
    pub truncation: Option<char>,
}

impl Default for Delimiters {
    fn default() -> Delimiters {
        Delimiters {
            field: '|',
            component: '^',
            repetition: '~',
            escape: Some('\\'),
            subcomponent: '&',
            truncation: None,
        }
    }
}

/// The character sets of HL7 table 0211 we read (MSH-18).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Charset {
    /// No MSH-18: HL7 says ASCII. Bytes above 0x7F are read as UTF-8 when they are valid
    /// UTF-8, else as ISO 8859-1, because senders that declare nothing send one of these.
    Undeclared,
    Ascii,
    Latin1,
    Utf8,
}

impl Charset {
    /// The MSH-18 value for this charset, as we write it back in an acknowledgment.
    pub fn code(self) -> &'static str {
        match self {
            Charset::Undeclared => "",
            Charset::Ascii => "ASCII",
            Charset::Latin1 => "8859/1",
            Charset::Utf8 => "UNICODE UTF-8",
        }
    }

    fn from_code(code: &str) -> Option<Charset> {
        match code.trim().to_ascii_uppercase().as_str() {
            "" => Some(Charset::Undeclared),
            "ASCII" => Some(Charset::Ascii),
            "8859/1" => Some(Charset::Latin1),
            // "UNICODE UTF-8" is table 0211's name; bare "UTF-8" is what some senders write.
            "UNICODE UTF-8" | "UTF-8" | "UTF8" => Some(Charset::Utf8),
            _ => None,
        }
    }

    /// Encodes text for the wire; characters the charset cannot hold become `?`.
    pub fn encode(self, text: &str) -> Vec<u8> {
        match self {
            Charset::Utf8 | Charset::Undeclared => text.as_bytes().to_vec(),
            Charset::Ascii => text
                .chars()
                .map(|c| if c.is_ascii() { c as u8 } else { b'?' })
                .collect(),
            Charset::Latin1 => text
                .chars()
                .map(|c| u8::try_from(u32::from(c)).unwrap_or(b'?'))
                .collect(),
        }
    }

    fn decode(self, bytes: &[u8]) -> Result<String, usize> {
        match self {
            // ISO 8859-1 is the first 256 code points of Unicode: a direct byte → char map.
            Charset::Latin1 => Ok(bytes.iter().map(|&b| char::from(b)).collect()),
            Charset::Utf8 => {
                String::from_utf8(bytes.to_vec()).map_err(|e| e.utf8_error().valid_up_to())
            }
            Charset::Ascii => match bytes.iter().position(|b| !b.is_ascii()) {
                Some(at) => Err(at),
                None => Ok(bytes.iter().map(|&b| char::from(b)).collect()),
            },
            Charset::Undeclared => Ok(match std::str::from_utf8(bytes) {
                Ok(text) => text.to_owned(),
                Err(_) => bytes.iter().map(|&b| char::from(b)).collect(),
            }),
        }
    }
}

/// Component → subcomponents, unescaped.
pub type Component = Vec<String>;
/// Repetition → components.
pub type Repetition = Vec<Component>;
/// Field → repetitions.
pub type Field = Vec<Repetition>;

#[derive(Clone, Debug, PartialEq)]
pub struct Segment {
    pub name: String,
    /// 1-based occurrence of this segment among all segments of the message (ERR's ERL-2).
    pub position: usize,
    /// `fields[n]` is field `n`; `fields[0]` is unused.
    fields: Vec<Field>,
}

impl Segment {
    pub fn field_count(&self) -> usize {
        self.fields.len().saturating_sub(1)
    }

    pub fn repetitions(&self, field: usize) -> &[Repetition] {
        self.fields.get(field).map(Vec::as_slice).unwrap_or(&[])
    }

    /// The components of the first repetition of a field.
    pub fn components(&self, field: usize) -> &[Component] {
        self.repetitions(field)
            .first()
            .map(Vec::as_slice)
            .unwrap_or(&[])
    }

    /// Component `component` (1-based) of the first repetition, its first subcomponent.
    /// HL7's explicit null `""` reads as "".
    pub fn get(&self, field: usize, component: usize) -> &str {
        component_text(self.components(field), component)
    }

    /// The first component of the first repetition.
    pub fn value(&self, field: usize) -> &str {
        self.get(field, 1)
    }

    pub fn location(&self, field: usize) -> Location {
        Location {
            segment: self.name.clone(),
            position: self.position,
            field,
            component: None,
        }
    }
}

/// Component `n` (1-based) of a repetition, first subcomponent; "" when absent or `""`.
pub fn component_text(components: &[Component], n: usize) -> &str {
    let text = n
        .checked_sub(1)
        .and_then(|i| components.get(i))
        .and_then(|sub| sub.first())
        .map(String::as_str)
        .unwrap_or("");
    if text == "\"\"" { "" } else { text }
}

#[derive(Clone, Debug, PartialEq)]
pub struct Message {
    pub delimiters: Delimiters,
    pub charset: Charset,
    pub segments: Vec<Segment>,
}

#[derive(Clone, Debug, PartialEq, thiserror::Error)]
#[error("{text}")]
pub struct ParseError {
    pub location: Option<Location>,
    pub code: ErrorCode,
    pub text: String,
}

impl Message {
    pub fn msh(&self) -> &Segment {
        // `parse` refuses a message whose first segment is not MSH.
        &self.segments[0]
    }

    pub fn segments_named<'m>(&'m self, name: &'m str) -> impl Iterator<Item = &'m Segment> + 'm {
        self.segments.iter().filter(move |s| s.name == name)
    }

    pub fn first(&self, name: &str) -> Option<&Segment> {
        self.segments.iter().find(|s| s.name == name)
    }

    /// MSH-9: message code, trigger event, structure (`ORU`, `R01`, `ORU_R01`).
    pub fn message_type(&self) -> (&str, &str, &str) {
        let msh = self.msh();
        (msh.get(9, 1), msh.get(9, 2), msh.get(9, 3))
    }

    pub fn control_id(&self) -> &str {
        self.msh().value(10)
    }

    pub fn version(&self) -> &str {
        self.msh().value(12)
    }

    /// Parses one message (the payload of one MLLP frame).
    pub fn parse(bytes: &[u8]) -> Result<Message, ParseError> {
        let fatal = |code, text: String| ParseError {
            location: None,
            code,
            text,
        };
        let start = bytes
            .iter()
            .position(|b| !b.is_ascii_whitespace())
            .unwrap_or(bytes.len());
        let bytes = &bytes[start..];
        if !bytes.starts_with(b"MSH") || bytes.len() < 8 {
            return Err(fatal(
                ErrorCode::SegmentSequence,
                "the message does not start with an MSH segment".into(),
            ));
        }
        let delimiters = delimiters(bytes).map_err(|text| ParseError {
            location: Some(Location::field("MSH", 1, 2)),
            code: ErrorCode::DataType,
            text,
        })?;
        let charset_code = msh_field_raw(bytes, delimiters, 18);
        let charset = Charset::from_code(&charset_code).ok_or_else(|| ParseError {
            location: Some(Location::field("MSH", 1, 18)),
            code: ErrorCode::TableValueNotFound,
            text: "unsupported character set in MSH-18 (accepted: ASCII, 8859/1, UNICODE UTF-8)"
                .into(),
        })?;
        let text = charset.decode(bytes).map_err(|at| {
            fatal(
                ErrorCode::DataType,
                format!(
                    "byte {} is not valid {}",
                    at + start,
                    match charset {
                        Charset::Ascii => "ASCII",
                        _ => "UTF-8",
                    }
                ),
            )
        })?;
        let mut segments = Vec::new();
        for line in text.split(['\r', '\n']) {
            if line.trim().is_empty() {
                continue;
            }
            let position = segments.len() + 1;
            segments.push(parse_segment(line, position, delimiters, charset));
        }
        Ok(Message {
            delimiters,
            charset,
            segments,
        })
    }
}

fn delimiters(bytes: &[u8]) -> Result<Delimiters, String> {
    let field = bytes[3];
    if field.is_ascii_alphanumeric() || field == b'\r' || field == b'\n' || !field.is_ascii() {
        return Err("MSH-1 is not a valid field separator".into());
    }
    let encoding: Vec<u8> = bytes[4..]
        .iter()
        .take_while(|&&b| b != field && b != b'\r' && b != b'\n')
        .copied()
        .collect();
    if encoding.len() < 2
        || encoding.len() > 5
        || !encoding.iter().all(|b| b.is_ascii_punctuation())
    {
        return Err(
            "MSH-2 must hold the component, repetition, escape and subcomponent characters".into(),
        );
    }
    let mut all = encoding.clone();
    all.push(field);
    all.sort_unstable();
    if all.windows(2).any(|w| w[0] == w[1]) {
        return Err("MSH-1 and MSH-2 repeat a delimiter".into());
    }
    let at = |i: usize| encoding.get(i).map(|&b| char::from(b));
    Ok(Delimiters {
        field: char::from(field),
        component: char::from(encoding[0]),
        repetition: char::from(encoding[1]),
        escape: at(2),
        subcomponent: at(3).unwrap_or('&'),
        truncation: at(4),
    })
}

/// MSH-n of the raw bytes, first component, before the charset is known (MSH is ASCII).
fn msh_field_raw(bytes: &[u8], delimiters: Delimiters, n: usize) -> String {
    let line_end = bytes
        .iter()
        .position(|&b| b == b'\r' || b == b'\n')
        .unwrap_or(bytes.len());
    let line = &bytes[..line_end];
    // Split "MSH|^~\&|..." on the field separator: part k is MSH-(k+1) for k ≥ 1.
    let part = line
        .split(|&b| b == delimiters.field as u8)
        .nth(n - 1)
        .unwrap_or(&[]);
    let first = part
        .split(|&b| b == delimiters.repetition as u8 || b == delimiters.component as u8)
        .next()
        .unwrap_or(&[]);
    String::from_utf8_lossy(first).into_owned()
}

fn parse_segment(line: &str, position: usize, d: Delimiters, charset: Charset) -> Segment {
    let mut parts = line.split(d.field);
    let name = parts.next().unwrap_or("").trim().to_owned();
    let mut fields: Vec<Field> = vec![Vec::new()];
    if name == "MSH" {
        // MSH-1 is the separator and MSH-2 the encoding characters: literal, never split.
        fields.push(vec![vec![vec![d.field.to_string()]]]);
        fields.push(vec![vec![vec![parts.next().unwrap_or("").to_owned()]]]);
    }
    for raw in parts {
        fields.push(parse_field(raw, d, charset));
    }
    Segment {
        name,
        position,
        fields,
    }
}

fn parse_field(raw: &str, d: Delimiters, charset: Charset) -> Field {
    if raw.is_empty() {
        return Vec::new();
    }
    raw.split(d.repetition)
        .map(|repetition| {
            repetition
                .split(d.component)
                .map(|component| {
                    component
                        .split(d.subcomponent)
                        .map(|sub| unescape(sub, d, charset))
                        .collect()
                })
                .collect()
        })
        .collect()
}

/// Resolves escape sequences. An unknown or unterminated sequence is kept as it was written,
/// so nothing a sender wrote disappears.
pub fn unescape(text: &str, d: Delimiters, charset: Charset) -> String {
    let Some(escape) = d.escape else {
        return text.to_owned();
    };
    if !text.contains(escape) {
        return text.to_owned();
    }
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find(escape) {
        out.push_str(&rest[..at]);
        let after = &rest[at + escape.len_utf8()..];
        let Some(end) = after.find(escape) else {
            out.push_str(&rest[at..]);
            return out;
        };
        let sequence = &after[..end];
        match sequence {
            "F" => out.push(d.field),
            "S" => out.push(d.component),
            "T" => out.push(d.subcomponent),
            "R" => out.push(d.repetition),
            "E" => out.push(escape),
            "P" if d.truncation.is_some() => out.extend(d.truncation),
            ".br" => out.push('\n'),
            // Highlighting on and off: formatting only.
            "H" | "N" => {}
            _ if sequence.starts_with('X') && hex_bytes(&sequence[1..]).is_some() => {
                let bytes = hex_bytes(&sequence[1..]).unwrap_or_default();
                match charset {
                    Charset::Latin1 => out.extend(bytes.iter().map(|&b| char::from(b))),
                    _ => out.push_str(&String::from_utf8_lossy(&bytes)),
                }
            }
            _ => {
                out.push(escape);
                out.push_str(sequence);
                out.push(escape);
            }
        }
        rest = &after[end + escape.len_utf8()..];
    }
    out.push_str(rest);
    out
}

fn hex_bytes(hex: &str) -> Option<Vec<u8>> {
    if hex.is_empty() || !hex.len().is_multiple_of(2) || !hex.bytes().all(|b| b.is_ascii_hexdigit())
    {
        return None;
    }
    (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).ok())
        .collect()
}

/// Escapes text for a field we write, so a delimiter in it cannot change the structure.
pub fn escape(text: &str, d: Delimiters) -> String {
    let escape = d.escape.unwrap_or('\\');
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        let code = if c == d.field {
            Some("F")
        } else if c == d.component {
            Some("S")
        } else if c == d.subcomponent {
            Some("T")
        } else if c == d.repetition {
            Some("R")
        } else if c == escape {
            Some("E")
        } else if c == '\r' || c == '\n' {
            Some(".br")
        } else {
            None
        };
        match code {
            Some(code) => {
                out.push(escape);
                out.push_str(code);
                out.push(escape);
            }
            None => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn segments_end_in_cr_crlf_or_lf() {
        for sep in ["\r", "\r\n", "\n"] {
            let raw = format!("MSH|^~\\&|A|B|||20240101||ORU^R01|1|P|2.6{sep}PID|||42{sep}");
            let message = Message::parse(raw.as_bytes()).unwrap();
            assert_eq!(message.segments.len(), 2);
            assert_eq!(message.first("PID").unwrap().value(3), "42");
            assert_eq!(message.message_type(), ("ORU", "R01", ""));
        }
    }

    #[test]
    fn msh_fields_are_numbered_as_the_standard_numbers_them() {
        let message =
            Message::parse(b"MSH|^~\\&|APP^0011^EUI-64|FAC|||20240101||ADT^A01|c1|P|2.5").unwrap();
        let msh = message.msh();
        assert_eq!(msh.value(1), "|");
        assert_eq!(msh.value(2), "^~\\&");
        assert_eq!(msh.get(3, 2), "0011");
        assert_eq!(message.control_id(), "c1");
        assert_eq!(message.version(), "2.5");
    }

    #[test]
    fn escapes_resolve_to_the_delimiters_and_hex() {
        let d = Delimiters::default();
        assert_eq!(
            unescape(r"a\F\b\S\c\T\d\R\e\E\f", d, Charset::Ascii),
            "a|b^c&d~e\\f"
        );
        assert_eq!(
            unescape(r"line\.br\two\H\bold\N\", d, Charset::Ascii),
            "line\ntwobold"
        );
        assert_eq!(unescape(r"\XC3A9\", d, Charset::Utf8), "é");
        assert_eq!(unescape(r"\XE9\", d, Charset::Latin1), "é");
        // Unknown and unterminated sequences stay as written.
        assert_eq!(unescape(r"\Q\ and \F", d, Charset::Ascii), r"\Q\ and \F");
        assert_eq!(escape("a|b^c&d~e\\f", d), r"a\F\b\S\c\T\d\R\e\E\f");
    }

    #[test]
    fn an_escaped_delimiter_does_not_split_the_field() {
        let raw = b"MSH|^~\\&|A||||20240101||ORU^R01|1|P|2.6\rNTE|1||x\\S\\y\\F\\z";
        let message = Message::parse(raw).unwrap();
        assert_eq!(message.first("NTE").unwrap().value(3), "x^y|z");
    }

    #[test]
    fn charsets_from_msh_18() {
        let latin1 =
            b"MSH|^~\\&|A||||20240101||ADT^A08|1|P|2.6||||||8859/1\rPID|||1||M\xfcller^J\xfcrgen";
        let message = Message::parse(latin1).unwrap();
        assert_eq!(message.charset, Charset::Latin1);
        assert_eq!(message.first("PID").unwrap().value(5), "Müller");
        let utf8 = "MSH|^~\\&|A||||20240101||ADT^A08|1|P|2.6||||||UNICODE UTF-8\rPID|||1||Müller"
            .as_bytes();
        assert_eq!(
            Message::parse(utf8).unwrap().first("PID").unwrap().value(5),
            "Müller"
        );
        let bad_ascii = b"MSH|^~\\&|A||||20240101||ADT^A08|1|P|2.6||||||ASCII\rPID|||1||M\xfcller";
        assert!(Message::parse(bad_ascii).is_err());
        let bad_utf8 =
            b"MSH|^~\\&|A||||20240101||ADT^A08|1|P|2.6||||||UNICODE UTF-8\rPID|||1||M\xfcller";
        assert!(Message::parse(bad_utf8).is_err());
        let unknown = b"MSH|^~\\&|A||||20240101||ADT^A08|1|P|2.6||||||ISO IR87\r";
        let error = Message::parse(unknown).unwrap_err();
        assert_eq!(error.location.unwrap().field, 18);
    }

    #[test]
    fn null_values_and_missing_fields_read_empty() {
        let message =
            Message::parse(b"MSH|^~\\&|A||||20240101||ORU^R01|1|P|2.6\rOBX|1|NM|\"\"").unwrap();
        let obx = message.first("OBX").unwrap();
        assert_eq!(obx.value(3), "");
        assert_eq!(obx.value(40), "");
        assert_eq!(obx.get(2, 9), "");
    }

    #[test]
    fn what_is_not_a_message_is_refused_with_a_reason() {
        for raw in [
            &b""[..],
            b"PID|1",
            b"MSH",
            b"MSH|^|A",
            b"MSHA^~\\&",
            b"MSH|^^\\&|",
        ] {
            assert!(Message::parse(raw).is_err(), "{raw:?}");
        }
    }
}
