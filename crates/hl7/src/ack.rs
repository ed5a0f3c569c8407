//! Acknowledgements (ACK messages): MSA with the acknowledgement code and
//! the original control id, and ERR segments that say what went wrong.
//!
//! Original mode answers `AA`, `AE` or `AR`; enhanced mode (when MSH-15 or
//! MSH-16 is set) answers a commit acknowledgement `CA`, `CE` or `CR`, and
//! later an application acknowledgement `AA`, `AE` or `AR`. An ACK echoes the
//! sender's delimiters, character set, version, processing id and control id
//! (MSA-2), and swaps the sending and receiving application and facility.
//!
//! The caller passes the ACK's own control id and timestamp: this module must
//! never read a clock or make an id, so an ACK is a pure function of its
//! inputs and can be snapshot-tested. Diagnostics go into ERR-8 as given; the
//! caller must never put PHI into one.

use std::fmt;

use crate::charset::Charset;
use crate::datetime::DateTime;
use crate::delimiters::Delimiters;
use crate::error::{Location, ParseError, SegmentId};
use crate::escape;
use crate::message::Message;
use crate::path::Path;
use crate::writer::MessageBuilder;

/// How the sender wants to be acknowledged.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum AckMode {
    /// One application acknowledgement per message (`AA`, `AE`, `AR`).
    Original,
    /// A commit acknowledgement (`CA`, `CE`, `CR`), then, if asked for, an
    /// application acknowledgement.
    Enhanced,
}

impl AckMode {
    /// The mode a message asks for: enhanced when MSH-15 or MSH-16 is set.
    pub fn of(message: &Message<'_>) -> Self {
        let msh = message.msh().segment();
        let set = |n| msh.field(n).is_some_and(|f| !f.is_empty());
        if set(15) || set(16) {
            AckMode::Enhanced
        } else {
            AckMode::Original
        }
    }
}

/// MSA-1, the acknowledgement code (HL7 table 0008).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum AckCode {
    /// `AA`: application accept.
    ApplicationAccept,
    /// `AE`: application error.
    ApplicationError,
    /// `AR`: application reject.
    ApplicationReject,
    /// `CA`: commit accept (enhanced mode).
    CommitAccept,
    /// `CE`: commit error (enhanced mode).
    CommitError,
    /// `CR`: commit reject (enhanced mode).
    CommitReject,
}

impl AckCode {
    /// The table 0008 code.
    pub fn code(&self) -> &'static str {
        match self {
            AckCode::ApplicationAccept => "AA",
            AckCode::ApplicationError => "AE",
            AckCode::ApplicationReject => "AR",
            AckCode::CommitAccept => "CA",
            AckCode::CommitError => "CE",
            AckCode::CommitReject => "CR",
        }
    }

    /// Reads a table 0008 code.
    pub fn from_code(code: &str) -> Option<Self> {
        match code {
            "AA" => Some(AckCode::ApplicationAccept),
            "AE" => Some(AckCode::ApplicationError),
            "AR" => Some(AckCode::ApplicationReject),
            "CA" => Some(AckCode::CommitAccept),
            "CE" => Some(AckCode::CommitError),
            "CR" => Some(AckCode::CommitReject),
            _ => None,
        }
    }

    /// The first acknowledgement of a message that was stored: `AA` in
    /// original mode, `CA` in enhanced mode.
    pub fn accept(mode: AckMode) -> Self {
        match mode {
            AckMode::Original => AckCode::ApplicationAccept,
            AckMode::Enhanced => AckCode::CommitAccept,
        }
    }

    /// The first acknowledgement of a message that could not be stored for a
    /// reason that may pass (`AE` or `CE`).
    pub fn error(mode: AckMode) -> Self {
        match mode {
            AckMode::Original => AckCode::ApplicationError,
            AckMode::Enhanced => AckCode::CommitError,
        }
    }

    /// The first acknowledgement of a message that is refused for good (`AR`
    /// or `CR`).
    pub fn reject(mode: AckMode) -> Self {
        match mode {
            AckMode::Original => AckCode::ApplicationReject,
            AckMode::Enhanced => AckCode::CommitReject,
        }
    }

    /// Whether this is a commit (enhanced mode, accept-level) code.
    pub fn is_commit(&self) -> bool {
        matches!(
            self,
            AckCode::CommitAccept | AckCode::CommitError | AckCode::CommitReject
        )
    }
}

impl fmt::Display for AckCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.code())
    }
}

/// ERR-3, an HL7 error code (table 0357).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ErrorCode {
    /// 0: message accepted.
    MessageAccepted,
    /// 100: segment sequence error.
    SegmentSequenceError,
    /// 101: required field missing.
    RequiredFieldMissing,
    /// 102: data type error.
    DataTypeError,
    /// 103: table value not found.
    TableValueNotFound,
    /// 200: unsupported message type.
    UnsupportedMessageType,
    /// 201: unsupported event code.
    UnsupportedEventCode,
    /// 202: unsupported processing id.
    UnsupportedProcessingId,
    /// 203: unsupported version id.
    UnsupportedVersionId,
    /// 204: unknown key identifier.
    UnknownKeyIdentifier,
    /// 205: duplicate key identifier.
    DuplicateKeyIdentifier,
    /// 206: application record locked.
    ApplicationRecordLocked,
    /// 207: application internal error.
    ApplicationInternalError,
}

impl ErrorCode {
    /// The numeric code.
    pub fn code(&self) -> u16 {
        match self {
            ErrorCode::MessageAccepted => 0,
            ErrorCode::SegmentSequenceError => 100,
            ErrorCode::RequiredFieldMissing => 101,
            ErrorCode::DataTypeError => 102,
            ErrorCode::TableValueNotFound => 103,
            ErrorCode::UnsupportedMessageType => 200,
            ErrorCode::UnsupportedEventCode => 201,
            ErrorCode::UnsupportedProcessingId => 202,
            ErrorCode::UnsupportedVersionId => 203,
            ErrorCode::UnknownKeyIdentifier => 204,
            ErrorCode::DuplicateKeyIdentifier => 205,
            ErrorCode::ApplicationRecordLocked => 206,
            ErrorCode::ApplicationInternalError => 207,
        }
    }

    /// The table's text for the code.
    pub fn description(&self) -> &'static str {
        match self {
            ErrorCode::MessageAccepted => "Message accepted",
            ErrorCode::SegmentSequenceError => "Segment sequence error",
            ErrorCode::RequiredFieldMissing => "Required field missing",
            ErrorCode::DataTypeError => "Data type error",
            ErrorCode::TableValueNotFound => "Table value not found",
            ErrorCode::UnsupportedMessageType => "Unsupported message type",
            ErrorCode::UnsupportedEventCode => "Unsupported event code",
            ErrorCode::UnsupportedProcessingId => "Unsupported processing id",
            ErrorCode::UnsupportedVersionId => "Unsupported version id",
            ErrorCode::UnknownKeyIdentifier => "Unknown key identifier",
            ErrorCode::DuplicateKeyIdentifier => "Duplicate key identifier",
            ErrorCode::ApplicationRecordLocked => "Application record locked",
            ErrorCode::ApplicationInternalError => "Application internal error",
        }
    }
}

/// ERR-4, how severe an error is (HL7 table 0516).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Severity {
    /// `E`: the message was not processed, or not fully.
    Error,
    /// `W`: processed, with a warning.
    Warning,
    /// `I`: information only.
    Information,
}

impl Severity {
    /// The table 0516 code.
    pub fn code(&self) -> &'static str {
        match self {
            Severity::Error => "E",
            Severity::Warning => "W",
            Severity::Information => "I",
        }
    }
}

/// ERR-2, where an error is (an ERL value).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ErrorLocation {
    /// ERL-1, the segment id.
    pub segment_id: SegmentId,
    /// ERL-2, which occurrence of the segment (1 for the first).
    pub occurrence: usize,
    /// ERL-3, the field.
    pub field: Option<usize>,
    /// ERL-4, the repetition.
    pub repetition: Option<usize>,
    /// ERL-5, the component.
    pub component: Option<usize>,
    /// ERL-6, the sub-component.
    pub subcomponent: Option<usize>,
}

impl From<&Path> for ErrorLocation {
    fn from(path: &Path) -> Self {
        ErrorLocation {
            segment_id: path.segment(),
            occurrence: path.occurrence(),
            field: Some(path.field()),
            repetition: path.repetition(),
            component: path.component(),
            subcomponent: path.subcomponent(),
        }
    }
}

impl ErrorLocation {
    /// The location of a parse error or a field error, when its segment id is
    /// known.
    pub fn from_location(location: &Location) -> Option<Self> {
        Some(ErrorLocation {
            segment_id: location.segment_id?,
            occurrence: location.occurrence.unwrap_or(1),
            field: location.field,
            repetition: None,
            component: None,
            subcomponent: None,
        })
    }
}

/// The longest diagnostic written into MSA-3 for versions before 2.5.
const MSA3_CHARS_MAX: usize = 80;

/// One error to report in an ACK.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AckError {
    code: ErrorCode,
    severity: Severity,
    location: Option<ErrorLocation>,
    diagnostic: String,
}

impl AckError {
    /// An error of severity `E` with a diagnostic for the sender's staff
    /// (ERR-8). The diagnostic must never hold PHI.
    pub fn new(code: ErrorCode, diagnostic: impl Into<String>) -> Self {
        AckError {
            code,
            severity: Severity::Error,
            location: None,
            diagnostic: diagnostic.into(),
        }
    }

    /// The same error with another severity.
    pub fn with_severity(mut self, severity: Severity) -> Self {
        self.severity = severity;
        self
    }

    /// The same error at a location.
    pub fn at(mut self, location: ErrorLocation) -> Self {
        self.location = Some(location);
        self
    }

    /// The error for a message that could not be parsed: its table 0357
    /// code, its location and its text (which never holds PHI).
    pub fn from_parse_error(error: &ParseError) -> Self {
        AckError {
            code: error.error_code(),
            severity: Severity::Error,
            location: error
                .location()
                .as_ref()
                .and_then(ErrorLocation::from_location),
            diagnostic: error.to_string(),
        }
    }

    /// The HL7 error code.
    pub fn code(&self) -> ErrorCode {
        self.code
    }
}

/// What an ACK echoes from the message it answers: raw MSH fields (escaped
/// with the sender's delimiters), indexed as the standard numbers them.
#[derive(Clone)]
struct Original {
    delimiters: Delimiters,
    charset: Charset,
    /// `fields[n]` is MSH-n; MSH-0 and MSH-1 are unused.
    fields: Vec<String>,
}

/// The MSH fields an ACK reads.
const ECHOED_FIELDS_MAX: usize = 18;

/// The longest header line [`AckBuilder::for_unparsed`] reads.
const SNIFFED_HEADER_BYTES_MAX: usize = 64 * 1024;

impl Original {
    fn of(message: &Message<'_>) -> Self {
        let msh = message.msh().segment();
        Original {
            delimiters: message.delimiters(),
            charset: message.charset(),
            fields: (0..=ECHOED_FIELDS_MAX)
                .map(|n| {
                    msh.field(n)
                        .map(|f| f.as_str().to_owned())
                        .unwrap_or_default()
                })
                .collect(),
        }
    }

    /// Reads what it can of an MSH from bytes that did not parse.
    fn sniff(bytes: &[u8]) -> Self {
        let start = memchr::memmem::find(bytes, b"MSH").unwrap_or(bytes.len());
        let header = &bytes[start..];
        let header = &header[..header.len().min(SNIFFED_HEADER_BYTES_MAX)];
        let header = &header[..memchr::memchr2(b'\r', b'\n', header).unwrap_or(header.len())];
        let Ok(delimiters) = Delimiters::from_header(header) else {
            return Original {
                delimiters: Delimiters::STANDARD,
                charset: Charset::Ascii,
                fields: vec![String::new(); ECHOED_FIELDS_MAX + 1],
            };
        };
        let raw: Vec<&[u8]> = header.split(|&b| b == delimiters.field_byte()).collect();
        // A name is usable only if the ACK, written with the same delimiters, reads it
        // back as the same name: "8859/1" under a `/` repetition separator reads as
        // "8859" and must not be echoed (found by fuzzing).
        let usable = |name: &str| {
            let has_delimiter = name.chars().any(|c| {
                c == delimiters.component()
                    || c == delimiters.repetition()
                    || c == delimiters.escape()
                    || c == delimiters.subcomponent()
                    || Some(c) == delimiters.truncation()
            });
            !has_delimiter && Charset::from_hl7_name(name).is_ok()
        };
        let msh18 = raw.get(17).map(|f| String::from_utf8_lossy(f));
        let charset = msh18
            .as_deref()
            .filter(|name| usable(name))
            .and_then(|name| Charset::from_hl7_name(name).ok())
            .unwrap_or(Charset::Ascii);
        let mut fields = vec![String::new(); ECHOED_FIELDS_MAX + 1];
        for (n, field) in fields.iter_mut().enumerate().skip(2) {
            if let Some(bytes) = raw.get(n - 1) {
                *field = match charset {
                    Charset::Latin1 => bytes.iter().map(|&b| char::from(b)).collect(),
                    _ => String::from_utf8_lossy(bytes).into_owned(),
                };
            }
        }
        if !usable(&fields[18]) {
            // Never claim a character set that this ACK is not written in.
            fields[18].clear();
        }
        Original {
            delimiters,
            charset,
            fields,
        }
    }

    fn field(&self, n: usize) -> &str {
        self.fields.get(n).map_or("", String::as_str)
    }

    /// The first component of a field, decoded.
    fn first_component(&self, n: usize) -> String {
        let raw = self.field(n);
        let raw = raw
            .split([self.delimiters.component(), self.delimiters.repetition()])
            .next()
            .unwrap_or("");
        escape::decode(raw, &self.delimiters, self.charset).into_owned()
    }

    /// Whether MSH-12 is at least `major.minor[.patch]`; an unreadable version
    /// counts as recent.
    fn version_at_least(&self, wanted: (u32, u32, u32)) -> bool {
        let version = self.first_component(12);
        let mut parts = version.trim().split('.').map(|p| p.parse::<u32>().ok());
        let (Some(Some(major)), Some(Some(minor))) = (parts.next(), parts.next()) else {
            return true;
        };
        let patch = parts.next().flatten().unwrap_or(0);
        (major, minor, patch) >= wanted
    }
}

/// Builds one ACK for one message. See the module documentation.
///
/// ```
/// use hl7::ack::{AckBuilder, AckCode, AckError, ErrorCode};
/// let message = hl7::Message::parse(b"MSH|^~\\&|LAB|HOSP|TENET|CLINIC|20240101||ADT^A01|42|P|2.5.1\r")?;
/// let timestamp = hl7::DateTime::parse("20240101120000+0000")?;
/// let ack = AckBuilder::new(&message, AckCode::ApplicationError, "ACK-1", timestamp)
///     .error(AckError::new(ErrorCode::RequiredFieldMissing, "PID segment is missing"))
///     .to_text();
/// assert!(ack.contains("\rMSA|AE|42\r"));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone)]
pub struct AckBuilder {
    original: Original,
    code: AckCode,
    control_id: String,
    timestamp: DateTime,
    errors: Vec<AckError>,
}

impl AckBuilder {
    /// An ACK for a parsed message, with our own control id (MSH-10) and
    /// timestamp (MSH-7).
    pub fn new(
        original: &Message<'_>,
        code: AckCode,
        control_id: &str,
        timestamp: DateTime,
    ) -> Self {
        AckBuilder {
            original: Original::of(original),
            code,
            control_id: control_id.to_owned(),
            timestamp,
            errors: Vec::new(),
        }
    }

    /// An ACK for bytes that did not parse: echoes whatever can be read of
    /// their MSH (delimiters, applications, control id, version), and falls
    /// back to `|^~\&` and ASCII.
    pub fn for_unparsed(
        bytes: &[u8],
        code: AckCode,
        control_id: &str,
        timestamp: DateTime,
    ) -> Self {
        AckBuilder {
            original: Original::sniff(bytes),
            code,
            control_id: control_id.to_owned(),
            timestamp,
            errors: Vec::new(),
        }
    }

    /// Adds an error, written as an ERR segment.
    pub fn error(mut self, error: AckError) -> Self {
        self.errors.push(error);
        self
    }

    fn builder(&self) -> MessageBuilder {
        let o = &self.original;
        let d = o.delimiters;
        let mut builder = MessageBuilder::new(d).with_charset(o.charset);
        let msh = builder.msh();
        msh.set_raw_field(3, o.field(5))
            .set_raw_field(4, o.field(6))
            .set_raw_field(5, o.field(3))
            .set_raw_field(6, o.field(4))
            .set_field(7, &self.timestamp.to_string())
            .set_component(9, 1, "ACK");
        let trigger = o.field(9).split(d.component()).nth(1).unwrap_or("");
        let trigger = trigger.split(d.repetition()).next().unwrap_or("");
        if !trigger.is_empty() {
            msh.set_component(9, 2, &escape::decode(trigger, &d, o.charset));
        }
        if o.version_at_least((2, 3, 1)) {
            msh.set_component(9, 3, "ACK");
        }
        msh.set_field(10, &self.control_id);
        let or = |raw: &'_ str, default: &'static str| -> String {
            if raw.is_empty() {
                default.to_owned()
            } else {
                raw.to_owned()
            }
        };
        msh.set_raw_field(11, &or(o.field(11), "P"))
            .set_raw_field(12, &or(o.field(12), "2.5.1"))
            .set_raw_field(18, o.field(18));

        let modern = o.version_at_least((2, 5, 0));
        let msa = builder.add_segment("MSA");
        msa.set_field(1, self.code.code())
            .set_raw_field(2, o.field(10));
        if !modern && let Some(first) = self.errors.first() {
            // Before v2.5, MSA-3 is where a sender's staff looks for the text.
            let text: String = first.diagnostic.chars().take(MSA3_CHARS_MAX).collect();
            msa.set_field(3, &text);
        }
        if modern {
            for error in &self.errors {
                let err = builder.add_segment("ERR");
                if let Some(location) = &error.location {
                    let parts = [
                        Some(location.segment_id.to_string()),
                        Some(location.occurrence.to_string()),
                        location.field.map(|n| n.to_string()),
                        location.repetition.map(|n| n.to_string()),
                        location.component.map(|n| n.to_string()),
                        location.subcomponent.map(|n| n.to_string()),
                    ];
                    for (i, part) in parts.iter().enumerate() {
                        if let Some(part) = part {
                            err.set_component(2, i + 1, part);
                        }
                    }
                }
                err.set_component(3, 1, &error.code.code().to_string())
                    .set_component(3, 2, error.code.description())
                    .set_component(3, 3, "HL70357")
                    .set_field(4, error.severity.code());
                if !error.diagnostic.is_empty() {
                    err.set_field(8, &error.diagnostic);
                }
            }
        } else if !self.errors.is_empty() {
            // Before v2.5, ERR has one field, ERR-1 (ELD), that repeats.
            let mut raw = String::new();
            for (i, error) in self.errors.iter().enumerate() {
                if i > 0 {
                    raw.push(d.repetition());
                }
                if let Some(location) = &error.location {
                    raw.push_str(&escape::encode(location.segment_id.as_str(), &d));
                    raw.push(d.component());
                    raw.push_str(&location.occurrence.to_string());
                    raw.push(d.component());
                    if let Some(field) = location.field {
                        raw.push_str(&field.to_string());
                    }
                } else {
                    raw.push(d.component());
                    raw.push(d.component());
                }
                raw.push(d.component());
                raw.push_str(&error.code.code().to_string());
                raw.push(d.subcomponent());
                raw.push_str(&escape::encode(error.code.description(), &d));
                raw.push(d.subcomponent());
                raw.push_str("HL70357");
            }
            builder.add_segment("ERR").set_raw_field(1, &raw);
        }
        builder
    }

    /// The ACK as bytes in the original's character set, segments ended by
    /// carriage returns. A character that set cannot hold becomes `?`.
    pub fn build(&self) -> Vec<u8> {
        self.builder().to_bytes_lossy()
    }

    /// The ACK as text, for logs of structure and for tests. It may echo
    /// application and facility names, never PHI.
    pub fn to_text(&self) -> String {
        self.builder().to_text()
    }
}

impl fmt::Debug for AckBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AckBuilder")
            .field("code", &self.code)
            .field("errors", &self.errors.len())
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn original(version: &str) -> Original {
        let mut fields = vec![String::new(); ECHOED_FIELDS_MAX + 1];
        fields[12] = version.to_owned();
        Original {
            delimiters: Delimiters::STANDARD,
            charset: Charset::Ascii,
            fields,
        }
    }

    #[test]
    fn versions_compare_by_number_not_by_text() {
        assert!(original("2.10").version_at_least((2, 5, 0)));
        assert!(original("2.5").version_at_least((2, 5, 0)));
        assert!(!original("2.4").version_at_least((2, 5, 0)));
        assert!(original("2.3.1").version_at_least((2, 3, 1)));
        assert!(!original("2.3").version_at_least((2, 3, 1)));
        assert!(original("").version_at_least((2, 5, 0)));
    }

    #[test]
    fn accept_error_and_reject_codes_follow_the_mode() {
        assert_eq!(AckCode::accept(AckMode::Original).code(), "AA");
        assert_eq!(AckCode::accept(AckMode::Enhanced).code(), "CA");
        assert_eq!(AckCode::error(AckMode::Enhanced).code(), "CE");
        assert_eq!(AckCode::reject(AckMode::Original).code(), "AR");
    }

    #[test]
    fn sniffing_garbage_falls_back_to_standard_delimiters() {
        let sniffed = Original::sniff(b"\x00\x01 not hl7");
        assert_eq!(sniffed.delimiters, Delimiters::STANDARD);
        assert_eq!(sniffed.field(10), "");
    }

    #[test]
    fn sniffing_an_unsupported_charset_does_not_echo_it() {
        let sniffed = Original::sniff(b"MSH|^~\\&|A|B|C|D|||ADT^A01|7|P|2.5||||||ISO IR87\r");
        assert_eq!(sniffed.field(10), "7");
        assert_eq!(sniffed.field(18), "");
        assert_eq!(sniffed.charset, Charset::Ascii);
    }
}
