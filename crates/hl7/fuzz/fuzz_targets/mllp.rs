//! Fuzzes the MLLP decoder with arbitrary bytes arriving in arbitrary reads.
//!
//! Mirrors `the_mllp_decoder_never_panics_and_stays_bounded` in
//! `tests/it/props.rs`: the first byte sets the maximum frame size, the second
//! the size of each read; no input may panic, no frame may exceed the maximum,
//! and the decoder may never hold more than the maximum plus a small constant.

#![no_main]

use bytes::BytesMut;
use hl7::mllp::{BUFFERED_BYTES_OVERHEAD_MAX, MllpCodec};
use libfuzzer_sys::fuzz_target;
use tokio_util::codec::Decoder;

fuzz_target!(|data: &[u8]| {
    let [max, read, stream @ ..] = data else {
        return;
    };
    let frame_bytes_max = usize::from(*max) + 1;
    let read_bytes = usize::from(*read) + 1;
    let mut codec = MllpCodec::with_frame_bytes_max(frame_bytes_max);
    let mut src = BytesMut::new();
    for chunk in stream.chunks(read_bytes) {
        src.extend_from_slice(chunk);
        loop {
            match codec.decode(&mut src) {
                Ok(Some(frame)) => assert!(frame.len() <= frame_bytes_max),
                Ok(None) => break,
                Err(_) => {}
            }
        }
        assert!(src.len() <= frame_bytes_max + BUFFERED_BYTES_OVERHEAD_MAX);
    }
    let _ = codec.decode_eof(&mut src);
    assert!(src.is_empty());
});
