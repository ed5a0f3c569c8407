use bytes::{Bytes, BytesMut};
use futures::{SinkExt, StreamExt};
use hl7::Message;
use hl7::mllp::{MllpCodec, MllpError};
use proptest::prelude::*;
use tokio_util::codec::{Decoder, Encoder, FramedRead, FramedWrite};

use crate::fixtures::{ADT_A01, ORU_R01, cr};

fn frame(payload: &[u8]) -> Vec<u8> {
    let mut out = vec![0x0B];
    out.extend_from_slice(payload);
    out.extend_from_slice(&[0x1C, 0x0D]);
    out
}

#[tokio::test]
async fn a_framed_stream_yields_each_message_in_order() {
    let mut stream = frame(&cr(ADT_A01));
    stream.extend(frame(&cr(ORU_R01)));
    let mut reader = FramedRead::new(&stream[..], MllpCodec::new());
    let first = reader.next().await.unwrap().unwrap();
    let second = reader.next().await.unwrap().unwrap();
    assert!(reader.next().await.is_none());
    assert_eq!(first, cr(ADT_A01));
    assert_eq!(Message::parse(&second).unwrap().observations().count(), 19);
}

#[tokio::test]
async fn encoding_then_decoding_gives_the_payload_back() {
    let mut wire = Vec::new();
    let mut writer = FramedWrite::new(&mut wire, MllpCodec::new());
    writer.send(cr(ORU_R01)).await.unwrap();
    writer.send(&b"MSH|^~\\&|A\r"[..]).await.unwrap();
    drop(writer);
    assert_eq!(wire[0], 0x0B);
    assert_eq!(&wire[wire.len() - 2..], &[0x1C, 0x0D]);
    let frames: Vec<Bytes> = FramedRead::new(&wire[..], MllpCodec::new())
        .map(|frame| frame.unwrap())
        .collect()
        .await;
    assert_eq!(
        frames,
        [
            Bytes::from(cr(ORU_R01)),
            Bytes::from_static(b"MSH|^~\\&|A\r")
        ]
    );
}

#[test]
fn garbage_before_a_start_block_is_skipped_and_counted() {
    let mut codec = MllpCodec::new();
    let mut src = BytesMut::from(&b"\r\nnoise"[..]);
    src.extend_from_slice(&frame(b"MSH|^~\\&|A\r"));
    src.extend_from_slice(b"\x1c\x0d\n");
    src.extend_from_slice(&frame(b"MSH|^~\\&|B\r"));
    assert_eq!(
        codec.decode(&mut src).unwrap().unwrap(),
        &b"MSH|^~\\&|A\r"[..]
    );
    assert_eq!(
        codec.decode(&mut src).unwrap().unwrap(),
        &b"MSH|^~\\&|B\r"[..]
    );
    assert_eq!(codec.decode(&mut src).unwrap(), None);
    assert_eq!(codec.n_bytes_skipped(), 7 + 3);
}

#[test]
fn a_frame_over_the_limit_is_refused_and_the_next_one_still_decodes() {
    let mut codec = MllpCodec::with_frame_bytes_max(64);
    let big = vec![b'x'; 1000];
    let mut src = BytesMut::new();
    let mut errors = 0;
    let mut frames = Vec::new();
    // The big frame arrives in small reads, as from a socket.
    let mut wire = frame(&big);
    wire.extend(frame(b"MSH|^~\\&|OK\r"));
    for chunk in wire.chunks(50) {
        src.extend_from_slice(chunk);
        loop {
            match codec.decode(&mut src) {
                Ok(Some(frame)) => frames.push(frame),
                Ok(None) => break,
                Err(MllpError::FrameTooLarge { bytes_max: 64 }) => errors += 1,
                Err(e) => panic!("unexpected error {e}"),
            }
        }
        assert!(src.len() <= 64 + 2, "buffered {}", src.len());
    }
    assert_eq!(errors, 1);
    assert_eq!(frames, [Bytes::from_static(b"MSH|^~\\&|OK\r")]);
    assert_eq!(codec.n_frames_refused(), 1);
}

#[test]
fn a_whole_oversized_frame_in_one_read_is_refused() {
    let mut codec = MllpCodec::with_frame_bytes_max(4);
    let mut src = BytesMut::from(&frame(b"0123456789")[..]);
    src.extend_from_slice(&frame(b"ok"));
    assert!(matches!(
        codec.decode(&mut src),
        Err(MllpError::FrameTooLarge { .. })
    ));
    assert_eq!(codec.decode(&mut src).unwrap().unwrap(), &b"ok"[..]);
}

#[test]
fn a_frame_cut_off_at_end_of_stream_is_an_error() {
    let mut codec = MllpCodec::new();
    let mut src = BytesMut::from(&b"\x0bMSH|^~\\&|A\rPID|1"[..]);
    assert_eq!(codec.decode(&mut src).unwrap(), None);
    let err = codec.decode_eof(&mut src).unwrap_err();
    assert!(matches!(err, MllpError::TruncatedFrame { bytes: 16 }));
    assert_eq!(
        err.to_string(),
        "the stream ended inside an MLLP frame, after 16 bytes of payload"
    );
    assert!(src.is_empty());
}

#[tokio::test]
async fn a_truncated_frame_ends_a_framed_stream_with_an_error() {
    let mut stream = frame(b"MSH|^~\\&|A\r");
    stream.extend_from_slice(b"\x0bMSH|^~\\&|B");
    let mut reader = FramedRead::new(&stream[..], MllpCodec::new());
    assert!(reader.next().await.unwrap().is_ok());
    assert!(matches!(
        reader.next().await,
        Some(Err(MllpError::TruncatedFrame { .. }))
    ));
}

#[test]
fn trailing_garbage_at_end_of_stream_is_not_an_error() {
    let mut codec = MllpCodec::new();
    let mut src = BytesMut::from(&b"\r\n\r\n"[..]);
    assert_eq!(codec.decode_eof(&mut src).unwrap(), None);
    assert_eq!(codec.n_bytes_skipped(), 4);
}

#[test]
fn a_frame_arriving_one_byte_at_a_time_is_reassembled() {
    let payload = cr(ORU_R01);
    let wire = frame(&payload);
    let mut codec = MllpCodec::new();
    let mut src = BytesMut::new();
    let mut frames = Vec::new();
    for byte in wire {
        src.extend_from_slice(&[byte]);
        if let Some(frame) = codec.decode(&mut src).unwrap() {
            frames.push(frame);
        }
    }
    assert_eq!(frames, [Bytes::from(payload)]);
}

// The fuzz target `crates/hl7/fuzz/fuzz_targets/mllp.rs` runs the first
// property under libFuzzer.
proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn the_mllp_decoder_never_panics_and_stays_bounded(
        stream in prop::collection::vec(prop_oneof![
            3 => prop::sample::select(vec![0x0Bu8, 0x1C, 0x0D, b'M', b'|']),
            2 => any::<u8>(),
        ], 0..2048),
        cuts in prop::collection::vec(1usize..300, 1..64),
        frame_bytes_max in 1usize..64,
    ) {
        let mut codec = MllpCodec::with_frame_bytes_max(frame_bytes_max);
        let mut src = BytesMut::new();
        let mut rest = &stream[..];
        let mut cuts = cuts.iter().cycle();
        while !rest.is_empty() {
            let n = (*cuts.next().unwrap()).min(rest.len());
            src.extend_from_slice(&rest[..n]);
            rest = &rest[n..];
            loop {
                match codec.decode(&mut src) {
                    Ok(Some(frame)) => prop_assert!(frame.len() <= frame_bytes_max),
                    Ok(None) => break,
                    Err(_) => {}
                }
            }
            prop_assert!(
                src.len() <= frame_bytes_max + hl7::mllp::BUFFERED_BYTES_OVERHEAD_MAX,
                "buffered {} with a maximum of {}", src.len(), frame_bytes_max
            );
        }
        let _ = codec.decode_eof(&mut src);
        prop_assert!(src.is_empty());
    }

    #[test]
    fn mllp_frames_survive_any_chunking_and_garbage_between_them(
        payloads in prop::collection::vec(
            prop::collection::vec(any::<u8>().prop_filter("no framing byte", |b| *b != 0x0B && *b != 0x1C), 0..200),
            0..8,
        ),
        garbage in prop::collection::vec(any::<u8>().prop_filter("no start block", |b| *b != 0x0B), 0..16),
        cuts in prop::collection::vec(1usize..64, 1..16),
    ) {
        let mut codec = MllpCodec::with_frame_bytes_max(256);
        let mut wire = BytesMut::new();
        for payload in &payloads {
            wire.extend_from_slice(&garbage);
            codec.encode(&payload[..], &mut wire).unwrap();
        }
        let mut decoded = Vec::new();
        let mut src = BytesMut::new();
        let mut rest = &wire[..];
        let mut cuts = cuts.iter().cycle();
        while !rest.is_empty() {
            let n = (*cuts.next().unwrap()).min(rest.len());
            src.extend_from_slice(&rest[..n]);
            rest = &rest[n..];
            while let Some(frame) = codec.decode(&mut src).unwrap() {
                decoded.push(frame.to_vec());
            }
        }
        prop_assert!(codec.decode_eof(&mut src).unwrap().is_none());
        prop_assert_eq!(decoded, payloads.clone());
        prop_assert_eq!(codec.n_bytes_skipped(), (garbage.len() * payloads.len()) as u64);
    }
}
