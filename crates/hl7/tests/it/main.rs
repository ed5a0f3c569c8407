//! The integration tests of the `hl7` crate: realistic messages through the
//! public API only.

mod ack;
mod batch;
mod charset;
mod differential;
mod fixtures;
#[cfg(feature = "serde")]
mod json;
#[cfg(feature = "mllp")]
mod mllp;
mod parse;
mod props;
mod regression;
mod typed;
mod writer;
