//! The bounds the parser holds every message to.
//!
//! Every loop over input in this crate is bounded by one of these numbers; a
//! message that exceeds one is refused with an error that names the limit.
//! Nothing here may ever be unbounded or depend on a value read from the input.

/// The largest message, in bytes, that [`Limits::default`] accepts: 8 MiB.
pub const MESSAGE_BYTES_MAX: usize = 8 * 1024 * 1024;

/// The most segments one message may hold by default.
pub const SEGMENTS_MAX: usize = 10_000;

/// The most fields one segment may hold by default (the longest standard
/// segments have fewer than 100).
pub const FIELDS_PER_SEGMENT_MAX: usize = 1_000;

/// The largest 1-based index a [`crate::Path`] accepts for a repetition, a
/// component or a sub-component.
pub const PATH_INDEX_MAX: usize = 10_000;

/// Configurable bounds for parsing one message.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// The largest message, in bytes.
    pub message_bytes_max: usize,
    /// The most segments in one message.
    pub segments_max: usize,
    /// The most fields in one segment.
    pub fields_per_segment_max: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            message_bytes_max: MESSAGE_BYTES_MAX,
            segments_max: SEGMENTS_MAX,
            fields_per_segment_max: FIELDS_PER_SEGMENT_MAX,
        }
    }
}
