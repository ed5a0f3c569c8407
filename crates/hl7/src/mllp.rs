//! The MLLP framing of HL7 over TCP, as a tokio codec: each message travels
//! as `0x0B` (start block), the payload, then `0x1C 0x0D` (end block, carriage
//! return).
//!
//! The decoder skips and counts bytes before a start block, refuses a frame
//! longer than its maximum (and then discards it up to its end block), and
//! reports a frame cut off by the end of the stream. It must never buffer
//! more than the maximum frame plus [`BUFFERED_BYTES_OVERHEAD_MAX`] bytes
//! between calls, and never scan the same byte twice while waiting for the
//! end of a frame.

use bytes::{Buf, BufMut, Bytes, BytesMut};
use tokio_util::codec::{Decoder, Encoder};

use crate::limits::MESSAGE_BYTES_MAX;

/// The byte that opens a frame.
pub const START_BLOCK: u8 = 0x0B;
/// The first byte of the two that close a frame.
pub const END_BLOCK: u8 = 0x1C;
/// The second byte of the two that close a frame.
pub const CARRIAGE_RETURN: u8 = 0x0D;

/// The largest payload [`MllpCodec::new`] accepts: the largest message.
pub const FRAME_BYTES_MAX: usize = MESSAGE_BYTES_MAX;

/// How many bytes beyond the maximum payload the decoder may hold between
/// calls: the start block and one byte of the end block.
pub const BUFFERED_BYTES_OVERHEAD_MAX: usize = 2;

/// Why MLLP framing failed.
#[derive(Debug, thiserror::Error)]
pub enum MllpError {
    /// A frame's payload is longer than the codec's maximum.
    #[error("an MLLP frame is longer than the limit of {bytes_max} bytes")]
    FrameTooLarge {
        /// The limit.
        bytes_max: usize,
    },
    /// The stream ended inside a frame.
    #[error("the stream ended inside an MLLP frame, after {bytes} bytes of payload")]
    TruncatedFrame {
        /// How many payload bytes had arrived.
        bytes: usize,
    },
    /// A payload to encode holds a framing byte (0x0B or 0x1C), which would
    /// break the framing; HL7 text never holds one.
    #[error("the payload holds the MLLP framing byte 0x{byte:02X} at offset {offset}")]
    FramingByteInPayload {
        /// The byte.
        byte: u8,
        /// Where it is.
        offset: usize,
    },
    /// The transport failed.
    #[error("MLLP transport error")]
    Io(#[from] std::io::Error),
}

/// An MLLP codec: decodes frames into payloads ([`Bytes`], zero-copy) and
/// encodes payloads into frames.
#[derive(Debug, Clone)]
pub struct MllpCodec {
    frame_bytes_max: usize,
    /// How many bytes of the current frame were already searched for its end.
    scanned: usize,
    /// After a frame was refused as too long: discard up to its end block.
    discarding: bool,
    n_bytes_skipped: u64,
    n_frames_refused: u64,
}

impl Default for MllpCodec {
    fn default() -> Self {
        Self::new()
    }
}

impl MllpCodec {
    /// A codec that accepts payloads up to [`FRAME_BYTES_MAX`].
    pub fn new() -> Self {
        Self::with_frame_bytes_max(FRAME_BYTES_MAX)
    }

    /// A codec that accepts payloads up to `frame_bytes_max` bytes.
    pub fn with_frame_bytes_max(frame_bytes_max: usize) -> Self {
        MllpCodec {
            frame_bytes_max,
            scanned: 0,
            discarding: false,
            n_bytes_skipped: 0,
            n_frames_refused: 0,
        }
    }

    /// The largest payload accepted.
    pub fn frame_bytes_max(&self) -> usize {
        self.frame_bytes_max
    }

    /// How many bytes were skipped so far: bytes outside any frame, frames
    /// abandoned by a new start block, and frames refused as too long.
    pub fn n_bytes_skipped(&self) -> u64 {
        self.n_bytes_skipped
    }

    /// How many frames were refused as too long.
    pub fn n_frames_refused(&self) -> u64 {
        self.n_frames_refused
    }

    fn skip(&mut self, src: &mut BytesMut, n: usize) {
        src.advance(n);
        self.n_bytes_skipped += n as u64;
        self.scanned = 0;
    }

    /// Discards bytes up to and including an end block, or up to a new start
    /// block. Returns whether the refused frame is behind us.
    fn discard(&mut self, src: &mut BytesMut) -> bool {
        match find_end(src, 0) {
            End::Found(at) => {
                self.skip(src, at + 2);
                self.discarding = false;
                true
            }
            End::Restart(at) => {
                // A new frame starts: the refused one ends here.
                self.skip(src, at);
                self.discarding = false;
                true
            }
            End::NotYet => {
                // Keep a trailing 0x1C: it may be the first half of the end.
                let keep = usize::from(src.last() == Some(&END_BLOCK));
                let n = src.len() - keep;
                self.skip(src, n);
                false
            }
        }
    }
}

/// What a search for the end of a frame found.
enum End {
    /// An end block at this offset.
    Found(usize),
    /// A start block at this offset, before any end block.
    Restart(usize),
    /// Neither, yet.
    NotYet,
}

/// Searches `src[from..]` for `0x1C 0x0D`, or for a new `0x0B`.
fn find_end(src: &[u8], from: usize) -> End {
    let mut at = from;
    while let Some(i) = memchr::memchr2(END_BLOCK, START_BLOCK, src.get(at..).unwrap_or(&[])) {
        let i = at + i;
        if src[i] == START_BLOCK {
            return End::Restart(i);
        }
        match src.get(i + 1) {
            Some(&CARRIAGE_RETURN) => return End::Found(i),
            Some(_) => at = i + 1,
            None => return End::NotYet,
        }
    }
    End::NotYet
}

impl Decoder for MllpCodec {
    type Item = Bytes;
    type Error = MllpError;

    fn decode(&mut self, src: &mut BytesMut) -> Result<Option<Bytes>, MllpError> {
        // Each turn either returns or consumes at least one byte.
        loop {
            if self.discarding && !self.discard(src) {
                return Ok(None);
            }
            match src.first() {
                None => return Ok(None),
                Some(&START_BLOCK) => {}
                Some(_) => {
                    let garbage = memchr::memchr(START_BLOCK, src).unwrap_or(src.len());
                    self.skip(src, garbage);
                    continue;
                }
            }
            // src[0] is a start block; search the rest for the end.
            let from = self.scanned.max(1);
            match find_end(src, from) {
                End::Found(at) => {
                    self.scanned = 0;
                    let payload_len = at - 1;
                    if payload_len > self.frame_bytes_max {
                        self.n_frames_refused += 1;
                        self.skip(src, at + 2);
                        return Err(MllpError::FrameTooLarge {
                            bytes_max: self.frame_bytes_max,
                        });
                    }
                    let mut frame = src.split_to(at + 2);
                    frame.advance(1);
                    frame.truncate(payload_len);
                    return Ok(Some(frame.freeze()));
                }
                End::Restart(at) => {
                    // A new frame starts before this one ended: the sender
                    // gave up on it, and will resend what was not acknowledged.
                    self.skip(src, at);
                }
                End::NotYet => {
                    // Do not scan again a trailing 0x1C that may start the end.
                    self.scanned = src.len() - usize::from(src.last() == Some(&END_BLOCK));
                    let payload_so_far = self.scanned - 1;
                    if payload_so_far > self.frame_bytes_max {
                        // Drop what arrived of the refused frame, start block
                        // included, and discard the rest as it comes.
                        self.n_frames_refused += 1;
                        let n = self.scanned;
                        self.skip(src, n);
                        self.discarding = true;
                        return Err(MllpError::FrameTooLarge {
                            bytes_max: self.frame_bytes_max,
                        });
                    }
                    return Ok(None);
                }
            }
        }
    }

    fn decode_eof(&mut self, src: &mut BytesMut) -> Result<Option<Bytes>, MllpError> {
        if let Some(frame) = self.decode(src)? {
            return Ok(Some(frame));
        }
        if self.discarding {
            let n = src.len();
            self.skip(src, n);
            self.discarding = false;
            return Ok(None);
        }
        if src.first() == Some(&START_BLOCK) {
            let bytes = src.len() - 1;
            let n = src.len();
            self.skip(src, n);
            return Err(MllpError::TruncatedFrame { bytes });
        }
        let n = src.len();
        self.skip(src, n);
        Ok(None)
    }
}

impl<T: AsRef<[u8]>> Encoder<T> for MllpCodec {
    type Error = MllpError;

    fn encode(&mut self, payload: T, dst: &mut BytesMut) -> Result<(), MllpError> {
        let payload = payload.as_ref();
        if payload.len() > self.frame_bytes_max {
            return Err(MllpError::FrameTooLarge {
                bytes_max: self.frame_bytes_max,
            });
        }
        if let Some(offset) = memchr::memchr2(START_BLOCK, END_BLOCK, payload) {
            return Err(MllpError::FramingByteInPayload {
                byte: payload[offset],
                offset,
            });
        }
        dst.reserve(payload.len() + 3);
        dst.put_u8(START_BLOCK);
        dst.put_slice(payload);
        dst.put_u8(END_BLOCK);
        dst.put_u8(CARRIAGE_RETURN);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode_all(codec: &mut MllpCodec, bytes: &[u8]) -> Vec<Result<Bytes, String>> {
        let mut src = BytesMut::from(bytes);
        let mut out = Vec::new();
        loop {
            match codec.decode(&mut src) {
                Ok(Some(frame)) => out.push(Ok(frame)),
                Ok(None) => break,
                Err(e) => out.push(Err(e.to_string())),
            }
        }
        out
    }

    #[test]
    fn a_frame_yields_its_payload() {
        let mut codec = MllpCodec::new();
        let frames = decode_all(&mut codec, b"\x0bMSH|x\r\x1c\x0d");
        assert_eq!(frames, vec![Ok(Bytes::from_static(b"MSH|x\r"))]);
    }

    #[test]
    fn an_end_block_without_carriage_return_is_payload() {
        let mut codec = MllpCodec::new();
        let frames = decode_all(&mut codec, b"\x0ba\x1cb\x1c\x0d");
        assert_eq!(frames, vec![Ok(Bytes::from_static(b"a\x1cb"))]);
    }

    #[test]
    fn a_new_start_block_abandons_an_unfinished_frame() {
        let mut codec = MllpCodec::new();
        let frames = decode_all(&mut codec, b"\x0bcut\x0bwhole\x1c\x0d");
        assert_eq!(frames, vec![Ok(Bytes::from_static(b"whole"))]);
        assert_eq!(codec.n_bytes_skipped(), 4);
    }

    #[test]
    fn encoding_refuses_a_framing_byte_in_the_payload() {
        let mut codec = MllpCodec::new();
        let mut dst = BytesMut::new();
        assert!(matches!(
            codec.encode(&b"a\x1cb"[..], &mut dst),
            Err(MllpError::FramingByteInPayload {
                byte: 0x1C,
                offset: 1
            })
        ));
    }
}
