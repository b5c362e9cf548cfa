//! What a payload becomes: the [`Decode`] trait and the [`RawJson`] message.
//!
//! A [`crate::Handler`] names its message type, and the reactor turns every payload into one
//! with [`Decode::decode`] exactly once. Three choices cover most programs:
//!
//! - `serde_json::Value`: a tree, for programs that look at arbitrary JSON;
//! - your own `#[derive(Deserialize)]` struct: typed, parsed once straight from the payload;
//! - [`RawJson`]: the payload checked for valid JSON but not turned into anything, which is
//!   the cheapest choice for programs that only forward, count or store messages.
//!
//! Invariant: whatever the type, a payload that is not valid UTF-8 JSON is reported as a
//! [`DecodeError`] (and answered with `invalid_json` on the wire), never passed on, and never
//! able to overflow the stack: nesting deeper than [`MAX_DEPTH`] is an error.

use std::fmt;

use bytes::Bytes;
use serde::de::DeserializeOwned;

/// Deepest nesting of arrays and objects accepted: serde_json's recursion limit (it allows
/// 127 levels), which applies to `Value`, typed structs and [`RawJson`] alike. Deeper input is
/// an `invalid_json` error, not a stack overflow.
pub const MAX_DEPTH: usize = 127;

/// A payload that is not valid UTF-8 JSON. The connection survives it: framing is intact, so
/// the next frame starts where this one ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DecodeError {
    detail: String,
}

impl DecodeError {
    /// A decode error with a human-readable explanation.
    pub fn new(detail: impl Into<String>) -> DecodeError {
        DecodeError {
            detail: detail.into(),
        }
    }

    /// What was wrong, as sent to the peer in `{"error":"invalid_json","detail":…}`.
    pub fn detail(&self) -> &str {
        &self.detail
    }

    /// The contract's reply to this error, `{"error":"invalid_json","detail":…}`, as a payload
    /// for [`crate::Context::send_payload`]. [`crate::Handler::on_bad_message`] sends it by
    /// default; a handler that keeps replies in request order (see
    /// [`crate::Workers::submit_ready`]) sends it in its turn instead.
    pub fn reply(&self) -> Bytes {
        // Serialising a struct of strings cannot fail.
        serde_json::to_vec(&crate::reply::ErrorReply::invalid_json(&self.detail))
            .map_or_else(|_| Bytes::new(), Bytes::from)
    }
}

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "invalid JSON payload: {}", self.detail)
    }
}

impl std::error::Error for DecodeError {}

/// Turns one frame's payload into a message. Implemented for every `DeserializeOwned` type,
/// for [`RawJson`] and for [`WithRaw`].
///
/// Implement it for a message type of your own when the payload should become something
/// serde does not build directly. For example, a router that needs only the first byte's
/// meaning and forwards the rest untouched:
///
/// ```
/// use highwater::bytes::Bytes;
/// use highwater::{Decode, DecodeError};
///
/// /// An array payload is a batch, anything else a single item; the bytes are kept as sent.
/// enum Shape {
///     Batch(Bytes),
///     Single(Bytes),
/// }
///
/// impl Decode for Shape {
///     fn decode(payload: Bytes) -> Result<Shape, DecodeError> {
///         // Validate first: a router must not forward what is not JSON.
///         let raw = highwater::RawJson::decode(payload)?.into_bytes();
///         Ok(match raw.first() {
///             Some(b'[') => Shape::Batch(raw),
///             _ => Shape::Single(raw),
///         })
///     }
/// }
///
/// assert!(matches!(Shape::decode(Bytes::from_static(b"[1,2]")), Ok(Shape::Batch(_))));
/// assert!(Shape::decode(Bytes::from_static(b"[1,")).is_err());
/// ```
pub trait Decode: Sized {
    /// Decodes one payload. The payload is a zero-copy slice of the read buffer.
    fn decode(payload: Bytes) -> Result<Self, DecodeError>;
}

/// Every serde type decodes by one parse of the payload. UTF-8 is checked up front for the
/// whole payload (a fast pass) because serde_json does not check it inside values a struct
/// ignores, and the contract promises `invalid_json` for any non-UTF-8 payload.
impl<T: DeserializeOwned> Decode for T {
    fn decode(payload: Bytes) -> Result<T, DecodeError> {
        let text = utf8(&payload)?;
        serde_json::from_str(text).map_err(|e| DecodeError::new(e.to_string()))
    }
}

fn utf8(payload: &[u8]) -> Result<&str, DecodeError> {
    if payload.is_empty() {
        return Err(DecodeError::new("empty payload"));
    }
    std::str::from_utf8(payload).map_err(|e| DecodeError::new(format!("invalid UTF-8: {e}")))
}

/// A payload known to hold exactly one valid JSON value, kept as the bytes that arrived.
///
/// Decoding a `RawJson` validates (UTF-8, syntax, nesting depth) without building a tree and
/// without copying: the bytes are a slice of the read buffer. The validator is hand-written
/// (`validate.rs`) and agrees with serde_json on every input but one kind: numbers too large
/// for an `f64`, which the JSON grammar allows and this accepts. Sending one back with
/// [`crate::Context::send_payload`] is zero-copy too, which is what an echo server wants.
///
/// ```
/// use highwater::{Decode, RawJson};
///
/// let raw = RawJson::decode(bytes::Bytes::from_static(br#"{"id": 7}"#)).unwrap();
/// assert_eq!(raw.as_str(), r#"{"id": 7}"#);
/// let v: serde_json::Value = raw.parse().unwrap();
/// assert_eq!(v["id"], 7);
/// assert!(RawJson::decode(bytes::Bytes::from_static(b"{oops")).is_err());
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawJson {
    bytes: Bytes,
}

impl RawJson {
    /// The JSON text.
    pub fn as_str(&self) -> &str {
        // Validated in `decode`, and `bytes` is immutable since; the check is repeated
        // rather than skipped with `unsafe` because this accessor is not on a hot path.
        std::str::from_utf8(&self.bytes).unwrap_or_default()
    }

    /// The JSON text as bytes.
    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes
    }

    /// Length of the JSON text in bytes.
    pub fn len(&self) -> usize {
        self.bytes.len()
    }

    /// Always false: an empty payload is not valid JSON. Present for API symmetry with `len`.
    pub fn is_empty(&self) -> bool {
        self.bytes.is_empty()
    }

    /// The underlying bytes, for example to send them on unchanged.
    pub fn into_bytes(self) -> Bytes {
        self.bytes
    }

    /// Parses the text into a typed value. This is a second parse; if every message needs one,
    /// name the type as the handler's message type instead and it is parsed once.
    pub fn parse<T: DeserializeOwned>(&self) -> Result<T, DecodeError> {
        serde_json::from_slice(&self.bytes).map_err(|e| DecodeError::new(e.to_string()))
    }
}

/// One pass: the validator checks UTF-8 inside strings as it goes (`validate.rs`), so a
/// payload it accepts is valid UTF-8 and needs no `from_utf8` pass. Only a rejected payload is
/// passed to `from_utf8`, so that the error says what it always said: a payload with invalid
/// UTF-8 anywhere gets the `invalid UTF-8: …` detail (and an empty one `empty payload`), any
/// other the validator's.
impl Decode for RawJson {
    #[inline]
    fn decode(payload: Bytes) -> Result<RawJson, DecodeError> {
        match crate::validate::validate(&payload) {
            Ok(()) => Ok(RawJson { bytes: payload }),
            Err(e) => {
                utf8(&payload)?;
                Err(DecodeError::new(format!("{} at byte {}", e.what, e.at)))
            }
        }
    }
}

/// A message decoded for the few fields a router needs (`head`), with the payload kept exactly
/// as it arrived (`raw`), in one parse: route on the head, forward `raw` with
/// [`crate::Context::send_payload`] (or [`crate::FanOut::send`]) without re-encoding. The
/// head's type names only the fields it needs; serde skips the rest (still checking that the
/// whole payload is valid JSON).
///
/// ```
/// use highwater::bytes::Bytes;
/// use highwater::{Decode, WithRaw};
/// use serde::Deserialize;
///
/// #[derive(Deserialize)]
/// struct Head {
///     op: String,
///     topic: Option<String>,
/// }
///
/// let payload = Bytes::from_static(br#"{"op":"pub","topic":"t","data":[1,2,3]}"#);
/// let msg = WithRaw::<Head>::decode(payload.clone()).unwrap();
/// assert_eq!(msg.head.op, "pub");
/// assert_eq!(msg.head.topic.as_deref(), Some("t"));
/// assert_eq!(msg.raw, payload); // the same bytes, not a copy
/// ```
#[derive(Debug, Clone)]
pub struct WithRaw<H> {
    /// The fields decoded.
    pub head: H,
    /// The payload as it arrived: a zero-copy view of the read buffer.
    pub raw: Bytes,
}

impl<H: DeserializeOwned> Decode for WithRaw<H> {
    fn decode(payload: Bytes) -> Result<WithRaw<H>, DecodeError> {
        let text = utf8(&payload)?;
        let head = serde_json::from_str(text).map_err(|e| DecodeError::new(e.to_string()))?;
        Ok(WithRaw { head, raw: payload })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;
    use serde_json::Value;

    fn raw(s: &[u8]) -> Result<RawJson, DecodeError> {
        RawJson::decode(Bytes::copy_from_slice(s))
    }

    #[test]
    fn raw_json_accepts_every_kind_of_value() {
        for ok in [
            &b"null"[..],
            b"true",
            b"-1.5e3",
            b"18446744073709551615",
            br#""\u00e9\n""#,
            br#"{"a":[1,{"b":null}],"c":"d"}"#,
            b"  [ ]  ",
        ] {
            assert!(raw(ok).is_ok(), "{:?}", String::from_utf8_lossy(ok));
        }
    }

    #[test]
    fn raw_json_rejects_garbage_empty_and_trailing_bytes() {
        for bad in [&b""[..], b"   ", b"{", b"[1,]", b"1 2", b"nul", b"\"open"] {
            assert!(raw(bad).is_err(), "{:?}", String::from_utf8_lossy(bad));
        }
    }

    #[test]
    fn invalid_utf8_is_rejected_by_every_message_type() {
        let bad = b"\"\xff\xfe\"";
        assert!(raw(bad).is_err());
        assert!(Value::decode(Bytes::from_static(bad)).is_err());

        #[derive(Deserialize)]
        #[allow(dead_code)]
        struct Typed {
            a: u8,
        }
        // Even inside a field the struct ignores.
        let hidden = b"{\"a\":1,\"skip\":\"\xff\"}";
        assert!(Typed::decode(Bytes::from_static(hidden)).is_err());
    }

    /// The details an `invalid_json` reply carries are what the two passes (`from_utf8`, then
    /// the validator) gave before they were fused: invalid UTF-8 anywhere wins, even after a
    /// syntax error that the validator meets first.
    #[test]
    fn raw_json_errors_read_as_before_the_passes_were_fused() {
        fn two_passes(s: &[u8]) -> Result<(), String> {
            utf8(s).map_err(|e| e.detail().to_string())?;
            crate::validate::validate(s).map_err(|e| format!("{} at byte {}", e.what, e.at))
        }
        for bad in [
            &b""[..],
            b"\"\xff\"",
            b"[1,]\xff",
            b"{\"a\":\"\xe2\x82\"}",
            b"\"\xed\xa0\x80\"",
            b"\xc3\xa9",
            b"[\"\xc3\xa9\",]",
            b"\"\xf0\x9f\x98",
        ] {
            let got = raw(bad).map(drop).map_err(|e| e.detail().to_string());
            assert!(got.is_err(), "{bad:x?}");
            assert_eq!(got, two_passes(bad), "{bad:x?}");
        }
        assert_eq!(
            raw(b"[1,]\xff").unwrap_err().detail(),
            "invalid UTF-8: invalid utf-8 sequence of 1 bytes from index 4"
        );
        assert_eq!(
            raw(b"[1,]").unwrap_err().detail(),
            "expected a value at byte 3"
        );
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(2000))]

        #[test]
        fn raw_json_verdict_and_detail_match_the_two_passes(
            bytes in proptest::collection::vec(
                proptest::sample::select(b"{}[]:,\"\\ 1a\x80\xbf\xc3\xe2\xed\xf0\xff".to_vec()),
                0..24,
            ),
        ) {
            let got = raw(&bytes).map(drop).map_err(|e| e.detail().to_string());
            // `utf8` says "empty payload" for an empty one, as it did.
            let expected = utf8(&bytes).map_err(|e| e.detail().to_string()).and_then(|_| {
                crate::validate::validate(&bytes).map_err(|e| format!("{} at byte {}", e.what, e.at))
            });
            proptest::prop_assert_eq!(got, expected, "{:x?}", bytes);
        }
    }

    #[test]
    fn deep_nesting_is_an_error_not_a_stack_overflow() {
        let deep = "[".repeat(100_000) + &"]".repeat(100_000);
        let err = raw(deep.as_bytes()).unwrap_err();
        assert!(err.detail().contains("nested too deeply"), "{err}");
        assert!(Value::decode(Bytes::from(deep)).is_err());
    }

    #[test]
    fn nesting_at_the_limit_is_accepted() {
        let ok = "[".repeat(MAX_DEPTH) + &"]".repeat(MAX_DEPTH);
        assert!(raw(ok.as_bytes()).is_ok());
        let too_deep = "[".repeat(MAX_DEPTH + 1) + &"]".repeat(MAX_DEPTH + 1);
        assert!(raw(too_deep.as_bytes()).is_err());
    }

    #[test]
    fn raw_json_keeps_the_payload_without_copying() {
        let payload = Bytes::from_static(br#"{"x":1}"#);
        let ptr = payload.as_ptr();
        let raw = RawJson::decode(payload).unwrap();
        assert_eq!(raw.as_bytes().as_ptr(), ptr);
        assert_eq!(raw.len(), 7);
    }

    #[test]
    fn typed_messages_decode_in_one_parse() {
        #[derive(Deserialize, Debug, PartialEq)]
        struct Req {
            id: u32,
        }
        let r = Req::decode(Bytes::from_static(br#"{"id":9}"#)).unwrap();
        assert_eq!(r, Req { id: 9 });
        assert!(Req::decode(Bytes::from_static(br#"{"id":"nine"}"#)).is_err());
    }
}
