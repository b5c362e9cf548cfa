//! Property tests for the wire format: whatever the messages and however the byte stream is
//! cut, decoding gives back exactly what was encoded, and the decoder never buffers more than
//! one maximum frame.

use bytes::BytesMut;
use highwater::frame::{Decoder, encode_json};
use highwater::{Decode, FrameError, HEADER_LEN, RawJson};
use proptest::prelude::*;
use serde_json::Value;

/// Arbitrary JSON values, nested a few levels.
fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<f64>()
            .prop_filter("finite", |f| f.is_finite())
            .prop_map(Value::from),
        ".{0,40}".prop_map(Value::String),
    ];
    leaf.prop_recursive(4, 64, 8, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..8).prop_map(Value::Array),
            prop::collection::hash_map(".{0,10}", inner, 0..8)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// Feeds `wire` to a decoder in pieces ending at `cuts`, collecting every payload.
fn decode_in_pieces(
    wire: &[u8],
    cuts: &[usize],
    max_frame: usize,
) -> Result<Vec<Vec<u8>>, FrameError> {
    let mut decoder = Decoder::new(max_frame);
    let mut buf = BytesMut::new();
    let mut out = Vec::new();
    let mut start = 0;
    let mut ends: Vec<usize> = cuts.iter().map(|c| c % (wire.len() + 1)).collect();
    ends.push(wire.len());
    ends.sort_unstable();
    for end in ends {
        buf.extend_from_slice(&wire[start..end]);
        start = end;
        while let Some(payload) = decoder.decode(&mut buf)? {
            let raw = RawJson::decode(payload).expect("encoded JSON is valid");
            out.push(raw.as_bytes().to_vec());
        }
        assert!(buf.len() <= max_frame + HEADER_LEN);
    }
    assert!(
        !decoder.is_mid_frame(&buf),
        "bytes left over after the last frame"
    );
    Ok(out)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn any_messages_cut_anywhere_decode_to_the_same_messages(
        messages in prop::collection::vec(json_value(), 0..20),
        cuts in prop::collection::vec(any::<usize>(), 0..30),
    ) {
        let mut wire = BytesMut::new();
        for m in &messages {
            encode_json(m, &mut wire, usize::MAX).unwrap();
        }
        // Compared as bytes: the codec must hand back exactly the payload that was encoded.
        // (Comparing parsed values would test serde_json's float round-tripping instead.)
        let expected: Vec<Vec<u8>> = messages.iter().map(|m| serde_json::to_vec(m).unwrap()).collect();
        let decoded = decode_in_pieces(&wire, &cuts, 1 << 20).unwrap();
        prop_assert_eq!(decoded, expected);
    }

    #[test]
    fn arbitrary_bytes_never_panic_and_never_overfill_the_buffer(
        bytes in prop::collection::vec(any::<u8>(), 0..4096),
        cuts in prop::collection::vec(any::<usize>(), 0..30),
        max_frame in 1usize..512,
    ) {
        let mut decoder = Decoder::new(max_frame);
        let mut buf = BytesMut::new();
        let mut ends: Vec<usize> = cuts.iter().map(|c| c % (bytes.len() + 1)).collect();
        ends.push(bytes.len());
        ends.sort_unstable();
        let mut start = 0;
        'feed: for end in ends {
            buf.extend_from_slice(&bytes[start..end]);
            start = end;
            loop {
                match decoder.decode(&mut buf) {
                    Ok(Some(payload)) => {
                        prop_assert!(payload.len() <= max_frame);
                        let _ = RawJson::decode(payload); // may fail, must not panic
                    }
                    Ok(None) => break,
                    Err(FrameError::TooLarge { got, limit }) => {
                        prop_assert!(got > limit as u64);
                        break 'feed; // fatal for the stream, as in the reactor
                    }
                    Err(e) => prop_assert!(false, "unexpected {e}"),
                }
            }
            // Every complete frame was taken out, so what is left is one unfinished frame,
            // which the header check bounded: never more than max frame + header bytes.
            prop_assert!(buf.len() < max_frame + HEADER_LEN);
        }
    }
}
