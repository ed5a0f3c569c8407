//! HL7 v2 for Tenet: a zero-copy parser, typed access to the segments that
//! ingestion needs, a writer and message builder, acknowledgements (ACK) and an
//! MLLP codec for tokio.
//!
//! This crate is the only one in Tenet that knows HL7 wire bytes, and it depends
//! on nothing else in Tenet. It must never panic on any input, never recurse to a
//! depth that input controls, never allocate without a bound that a named
//! `*_MAX` constant or a [`Limits`] value sets, and never print field contents
//! (which are PHI) from `Debug` or from an error.
//!
//! ```
//! let bytes = b"MSH|^~\\&|LAB|HOSP|TENET|CLINIC|20240102030405||ORU^R01^ORU_R01|MSG00001|P|2.5.1\rPID|1||12345^^^HOSP^MR||DOE^JANE\r";
//! let message = hl7::Message::parse(bytes)?;
//! assert_eq!(message.msh().message_type().trigger().as_deref(), Some("R01"));
//! let path: hl7::Path = "PID-5.2".parse()?;
//! assert_eq!(message.get(&path).map(|v| v.decoded()).as_deref(), Some("JANE"));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

pub mod ack;
pub mod batch;
pub mod charset;
pub mod datetime;
pub mod delimiters;
pub mod error;
pub mod escape;
#[cfg(feature = "serde")]
mod json;
pub mod limits;
pub mod message;
#[cfg(feature = "mllp")]
pub mod mllp;
pub mod path;
pub mod segment;
pub mod typed;
pub mod writer;

pub use charset::Charset;
pub use datetime::{DateTime, DateTimeError, Precision};
pub use delimiters::{DelimiterError, Delimiters};
pub use error::{Location, ParseError, ParseWarning, SegmentId};
pub use limits::Limits;
pub use message::{LineEndings, Message, ParseOptions};
pub use path::{Path, PathError};
pub use segment::{Component, Field, Repetition, Segment, SubComponent, Value};
pub use writer::{MessageBuilder, SegmentBuilder, WriteError};
