//! Fuzz the frame decoder and the JSON validation behind it with arbitrary byte streams,
//! delivered in arbitrary pieces. Invariants checked on every input:
//! - nothing panics;
//! - every payload returned is within the frame limit;
//! - after the complete frames are taken out, the buffer holds less than one maximum frame
//!   plus its header (a hostile length cannot make the decoder hold more);
//! - a length above the limit is reported as `TooLarge`, and decoding stops (as the reactor
//!   does: the stream cannot be resynchronised).
#![no_main]

use bytes::BytesMut;
use highwater::frame::Decoder;
use highwater::{Decode, FrameError, HEADER_LEN, RawJson};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // The first two bytes choose the limit and how the rest is cut into reads.
    let [limit_byte, step_byte, stream @ ..] = data else {
        return;
    };
    let max_frame = 1 + usize::from(*limit_byte) * 64;
    let step = 1 + usize::from(*step_byte);
    let mut decoder = Decoder::new(max_frame);
    let mut buf = BytesMut::new();
    for piece in stream.chunks(step) {
        buf.extend_from_slice(piece);
        loop {
            match decoder.decode(&mut buf) {
                Ok(Some(payload)) => {
                    assert!(payload.len() <= max_frame);
                    let _ = RawJson::decode(payload);
                }
                Ok(None) => break,
                Err(FrameError::TooLarge { limit, got }) => {
                    assert_eq!(limit, max_frame);
                    assert!(got > limit as u64);
                    return;
                }
                Err(e) => panic!("decode never reports {e} by itself"),
            }
        }
        assert!(buf.len() < max_frame + HEADER_LEN);
    }
});
