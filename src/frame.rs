//! The wire format: a 4-byte big-endian length, then that many bytes of JSON.
//!
//! ```text
//! +--------+--------+--------+--------+---------------------------+
//! |   payload length N (u32, BE)      |  N bytes of UTF-8 JSON     |
//! +--------+--------+--------+--------+---------------------------+
//! ```
//!
//! This is the layout of tokio-util's `LengthDelimitedCodec` with its defaults, and of the
//! usual Node.js `readUInt32BE` framing, so peers written in either interoperate.
//!
//! This file owns two things: the incremental [`Decoder`], which cuts frames out of a read
//! buffer, and [`encode_json`] / [`encode_header`], which append frames to a write buffer.
//!
//! Invariant: the decoder never asks for more than `max_frame + HEADER_LEN` bytes of
//! buffer, because a length above the limit is rejected from the four header bytes alone,
//! before a single payload byte is buffered ([`check_header`]). Check first, then parse:
//! a hostile `0xFFFF_FFFF` reserves nothing for its payload (the connection's ordinary read
//! buffer, which it holds anyway, is all it costs), not four gigabytes.

use std::fmt;

use byteorder::{BigEndian, ByteOrder};
use bytes::{Buf, BufMut, Bytes, BytesMut};
use serde::Serialize;

/// Bytes in the length prefix.
pub const HEADER_LEN: usize = 4;

/// Default largest payload accepted: 8 MiB, the same default as tokio-util's
/// `LengthDelimitedCodec`, so the two agree on what is "too large".
pub const DEFAULT_MAX_FRAME: usize = 8 * 1024 * 1024;

/// A frame the decoder cannot accept. Both variants are fatal for the stream: once a length
/// prefix is wrong, nothing after it can be trusted to start on a frame boundary.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FrameError {
    /// The length prefix announced more than the configured maximum.
    TooLarge {
        /// The configured maximum payload size.
        limit: usize,
        /// The length the peer announced.
        got: u64,
    },
    /// The stream ended in the middle of a frame.
    Truncated {
        /// Bytes the unfinished frame still needed (header included).
        missing: usize,
    },
}

impl fmt::Display for FrameError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FrameError::TooLarge { limit, got } => write!(
                f,
                "frame too large: the length prefix says {got} bytes, the limit is {limit} \
                 (raise max_frame if this peer is trusted)"
            ),
            FrameError::Truncated { missing } => write!(
                f,
                "the peer closed the stream in the middle of a frame ({missing} bytes missing)"
            ),
        }
    }
}

impl std::error::Error for FrameError {}

/// A message that cannot be encoded as a frame.
#[derive(Debug)]
pub enum EncodeError {
    /// Serialization failed (for example a map with non-string keys).
    Json(serde_json::Error),
    /// The encoded payload is larger than the configured maximum frame; the peer would reject
    /// it, so it is refused here instead.
    TooLarge {
        /// The configured maximum payload size.
        limit: usize,
        /// The payload size that was produced.
        got: usize,
    },
    /// The payload is empty. Zero bytes are not a JSON value; the peer would answer
    /// `invalid_json`.
    Empty,
}

impl fmt::Display for EncodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            EncodeError::Json(e) => write!(f, "could not serialize the message as JSON: {e}"),
            EncodeError::TooLarge { limit, got } => write!(
                f,
                "the message encodes to {got} bytes, above the {limit}-byte frame limit"
            ),
            EncodeError::Empty => write!(f, "an empty payload is not a JSON value"),
        }
    }
}

impl std::error::Error for EncodeError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            EncodeError::Json(e) => Some(e),
            _ => None,
        }
    }
}

/// Reads a length prefix and checks it against the limit. This is the whole defence against
/// oversized frames, and it needs the four header bytes only: nothing is reserved for a
/// payload before its length has passed.
#[inline]
pub fn check_header(header: [u8; HEADER_LEN], max_frame: usize) -> Result<usize, FrameError> {
    let len = BigEndian::read_u32(&header);
    // u32 -> u64 is lossless everywhere; comparing in u64 keeps 32-bit targets honest.
    if u64::from(len) > max_frame as u64 {
        return Err(FrameError::TooLarge {
            limit: max_frame,
            got: u64::from(len),
        });
    }
    Ok(len as usize)
}

/// A complete payload at the front of the buffer, after `header` bytes of its header (all
/// four, or none when the header was consumed earlier): [`Decoder::next_frame`]'s answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct FrameAt {
    pub(crate) header: usize,
    pub(crate) len: usize,
}

impl FrameAt {
    /// Cuts this frame off the front of `buf` as a view of its payload: header and payload in
    /// one split (one reference-count bump), the header dropped from the frozen view by a
    /// pointer move.
    #[inline]
    pub(crate) fn split_payload(self, buf: &mut BytesMut) -> Bytes {
        let mut payload = buf.split_to(self.header + self.len).freeze();
        payload.advance(self.header);
        payload
    }
}

/// Where the decoder is in the current frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Waiting for the four header bytes.
    Header,
    /// The header was checked and consumed; waiting for this many payload bytes.
    Payload(usize),
}

/// Incremental frame decoder over a [`BytesMut`] read buffer.
///
/// Feed it whatever the socket gave you, any number of times: a frame may arrive one byte at a
/// time, or many frames may arrive in one read. Each call to [`Decoder::decode`] returns at most
/// one complete payload, split off the front of the buffer without copying.
///
/// ```
/// use bytes::BytesMut;
/// use highwater::frame::{encode_json, Decoder};
///
/// let mut wire = BytesMut::new();
/// encode_json(&serde_json::json!({"n": 1}), &mut wire, 1024).unwrap();
///
/// let mut decoder = Decoder::new(1024);
/// let mut buf = BytesMut::new();
/// buf.extend_from_slice(&wire[..3]); // a partial header is not an error
/// assert_eq!(decoder.decode(&mut buf).unwrap(), None);
/// buf.extend_from_slice(&wire[3..]);
/// assert_eq!(&decoder.decode(&mut buf).unwrap().unwrap()[..], br#"{"n":1}"#);
/// ```
#[derive(Debug, Clone)]
pub struct Decoder {
    max_frame: usize,
    state: State,
}

impl Decoder {
    /// A decoder that rejects payloads longer than `max_frame` bytes.
    pub fn new(max_frame: usize) -> Decoder {
        Decoder {
            max_frame,
            state: State::Header,
        }
    }

    /// The largest payload this decoder accepts.
    pub fn max_frame(&self) -> usize {
        self.max_frame
    }

    /// Takes the next complete payload off the front of `buf`.
    ///
    /// `Ok(None)` means "not enough bytes yet": an incomplete frame is the normal state of a
    /// stream, not an error. The payload is split from the buffer (a reference-count bump, no
    /// copy). An error is fatal for this stream; see [`FrameError`].
    pub fn decode(&mut self, buf: &mut BytesMut) -> Result<Option<Bytes>, FrameError> {
        Ok(self.next_frame(buf)?.map(|at| at.split_payload(buf)))
    }

    /// The first half of [`Decoder::decode`]: reports where the next complete payload is in
    /// `buf`, once all of it is there; the caller cuts it off (the reactor decides whether to
    /// cut a view or a copy, `read_buf.rs`).
    ///
    /// A frame that arrived whole is reported with its header still in front, to be cut off
    /// together with the payload: one split instead of two. Only when the payload is still
    /// incomplete is the header dropped on its own and its length remembered.
    #[inline]
    pub(crate) fn next_frame(&mut self, buf: &mut BytesMut) -> Result<Option<FrameAt>, FrameError> {
        if self.state == State::Header {
            let Some(header) = buf.first_chunk::<HEADER_LEN>() else {
                return Ok(None);
            };
            let len = check_header(*header, self.max_frame)?;
            if buf.len() - HEADER_LEN >= len {
                return Ok(Some(FrameAt {
                    header: HEADER_LEN,
                    len,
                }));
            }
            // Drop the header in place: `advance` moves a pointer, where `split_to` would
            // hand out (and then drop) a reference-counted view.
            buf.advance(HEADER_LEN);
            self.state = State::Payload(len);
        }
        let State::Payload(len) = self.state else {
            return Ok(None);
        };
        if buf.len() < len {
            return Ok(None);
        }
        self.state = State::Header;
        Ok(Some(FrameAt { header: 0, len }))
    }

    /// How many more bytes the frame in progress needs before [`Decoder::decode`] can return it
    /// (header included, when the header is not complete yet). The reader uses this to size
    /// its next read so a large frame arrives in few syscalls.
    pub fn bytes_wanted(&self, buf: &BytesMut) -> usize {
        match self.state {
            State::Header => HEADER_LEN.saturating_sub(buf.len()),
            State::Payload(len) => len.saturating_sub(buf.len()),
        }
    }

    /// Whether part of a frame is buffered: the stream ending now would cut a frame in half.
    pub fn is_mid_frame(&self, buf: &BytesMut) -> bool {
        match self.state {
            State::Header => !buf.is_empty(),
            State::Payload(_) => true,
        }
    }

    /// The error to report when the stream ends now, if it ends mid-frame.
    pub fn truncation(&self, buf: &BytesMut) -> Option<FrameError> {
        if !self.is_mid_frame(buf) {
            return None;
        }
        let missing = match self.state {
            State::Header => HEADER_LEN - buf.len().min(HEADER_LEN),
            State::Payload(len) => len.saturating_sub(buf.len()),
        };
        Some(FrameError::Truncated {
            missing: missing.max(1),
        })
    }
}

/// Appends one frame holding `msg` as JSON to `dst`: a header placeholder, the JSON written
/// straight into the buffer, then the real length patched in. No intermediate `Vec`.
///
/// Returns the frame's size on the wire (header included). On error `dst` is left as it was.
pub fn encode_json<T: Serialize + ?Sized>(
    msg: &T,
    dst: &mut BytesMut,
    max_frame: usize,
) -> Result<usize, EncodeError> {
    let start = dst.len();
    dst.put_u32(0);
    if let Err(e) = serde_json::to_writer(Append(dst), msg) {
        dst.truncate(start);
        return Err(EncodeError::Json(e));
    }
    let payload = dst.len() - start - HEADER_LEN;
    let header = match u32::try_from(payload) {
        Ok(n) if payload <= max_frame => n,
        _ => {
            dst.truncate(start);
            return Err(EncodeError::TooLarge {
                limit: max_frame,
                got: payload,
            });
        }
    };
    BigEndian::write_u32(&mut dst[start..start + HEADER_LEN], header);
    Ok(HEADER_LEN + payload)
}

/// `io::Write` straight onto a `BytesMut`. serde_json writes in many small pieces (a quote, a
/// key, a comma); `bytes`' generic `Writer` pays a bounds dance for each, this is one
/// `extend_from_slice`, as fast as writing into a `Vec`.
struct Append<'a>(&'a mut BytesMut);

impl std::io::Write for Append<'_> {
    #[inline]
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.extend_from_slice(buf);
        Ok(buf.len())
    }

    #[inline]
    fn write_all(&mut self, buf: &[u8]) -> std::io::Result<()> {
        self.0.extend_from_slice(buf);
        Ok(())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Appends the header for a payload of `len` bytes, after checking `len` against `max_frame`.
/// Use it with a payload that is already JSON text (see [`crate::Context::send_payload`]).
#[inline]
pub fn encode_header(len: usize, dst: &mut BytesMut, max_frame: usize) -> Result<(), EncodeError> {
    if len == 0 {
        return Err(EncodeError::Empty);
    }
    let header = match u32::try_from(len) {
        Ok(n) if len <= max_frame => n,
        _ => {
            return Err(EncodeError::TooLarge {
                limit: max_frame,
                got: len,
            });
        }
    };
    dst.put_u32(header);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{Value, json};

    fn wire(values: &[Value]) -> BytesMut {
        let mut out = BytesMut::new();
        for v in values {
            encode_json(v, &mut out, DEFAULT_MAX_FRAME).expect("encodes");
        }
        out
    }

    #[test]
    fn header_is_big_endian_payload_length() {
        let out = wire(&[json!("hi")]);
        assert_eq!(&out[..], b"\x00\x00\x00\x04\"hi\"");
    }

    #[test]
    fn many_frames_in_one_buffer_come_out_in_order() {
        let mut buf = wire(&[json!(1), json!([2]), json!({"three": 3})]);
        let mut d = Decoder::new(DEFAULT_MAX_FRAME);
        assert_eq!(&d.decode(&mut buf).unwrap().unwrap()[..], b"1");
        assert_eq!(&d.decode(&mut buf).unwrap().unwrap()[..], b"[2]");
        assert_eq!(&d.decode(&mut buf).unwrap().unwrap()[..], br#"{"three":3}"#);
        assert_eq!(d.decode(&mut buf).unwrap(), None);
        assert!(buf.is_empty());
    }

    #[test]
    fn one_byte_at_a_time_yields_the_frame_exactly_once() {
        let all = wire(&[json!({"k": "v"})]);
        let mut d = Decoder::new(DEFAULT_MAX_FRAME);
        let mut buf = BytesMut::new();
        let mut got = Vec::new();
        for b in all.iter() {
            buf.extend_from_slice(&[*b]);
            while let Some(p) = d.decode(&mut buf).unwrap() {
                got.push(p);
            }
        }
        assert_eq!(got.len(), 1);
        assert_eq!(&got[0][..], br#"{"k":"v"}"#);
    }

    #[test]
    fn oversized_length_is_rejected_from_the_header_alone() {
        let mut buf = BytesMut::from(&b"\xff\xff\xff\xff"[..]);
        let mut d = Decoder::new(1024);
        let err = d.decode(&mut buf).unwrap_err();
        assert_eq!(
            err,
            FrameError::TooLarge {
                limit: 1024,
                got: 0xFFFF_FFFF
            }
        );
        // Nothing was reserved for the announced payload.
        assert!(buf.capacity() < 1024);
    }

    #[test]
    fn length_equal_to_the_limit_is_accepted() {
        let mut buf = BytesMut::new();
        buf.put_u32(3);
        buf.extend_from_slice(b"123");
        let mut d = Decoder::new(3);
        assert_eq!(&d.decode(&mut buf).unwrap().unwrap()[..], b"123");
    }

    #[test]
    fn zero_length_frame_decodes_to_an_empty_payload() {
        // Framing accepts it; the JSON layer rejects it as invalid_json.
        let mut buf = BytesMut::from(&b"\x00\x00\x00\x00"[..]);
        let mut d = Decoder::new(16);
        assert_eq!(d.decode(&mut buf).unwrap().unwrap().len(), 0);
    }

    #[test]
    fn decoded_payload_shares_the_read_buffer_allocation() {
        let mut buf = wire(&[json!("zero-copy")]);
        let base = buf.as_ptr() as usize;
        let mut d = Decoder::new(DEFAULT_MAX_FRAME);
        let payload = d.decode(&mut buf).unwrap().unwrap();
        assert_eq!(payload.as_ptr() as usize, base + HEADER_LEN);
    }

    #[test]
    fn bytes_wanted_reports_the_rest_of_the_frame() {
        let all = wire(&[json!("abcdef")]); // payload 8 bytes
        let mut d = Decoder::new(DEFAULT_MAX_FRAME);
        let mut buf = BytesMut::from(&all[..2]);
        assert_eq!(d.bytes_wanted(&buf), 2);
        assert_eq!(d.decode(&mut buf).unwrap(), None);
        buf.extend_from_slice(&all[2..6]);
        assert_eq!(d.decode(&mut buf).unwrap(), None);
        assert_eq!(d.bytes_wanted(&buf), 6);
        assert!(d.is_mid_frame(&buf));
        assert_eq!(
            d.truncation(&buf),
            Some(FrameError::Truncated { missing: 6 })
        );
    }

    #[test]
    fn clean_boundary_is_not_a_truncation() {
        let mut buf = wire(&[json!(1)]);
        let mut d = Decoder::new(DEFAULT_MAX_FRAME);
        d.decode(&mut buf).unwrap();
        assert_eq!(d.truncation(&buf), None);
    }

    #[test]
    fn encoding_above_the_limit_fails_and_leaves_the_buffer_untouched() {
        let mut buf = BytesMut::from(&b"keep"[..]);
        let err = encode_json(&"x".repeat(100), &mut buf, 10).unwrap_err();
        assert!(matches!(
            err,
            EncodeError::TooLarge {
                limit: 10,
                got: 102
            }
        ));
        assert_eq!(&buf[..], b"keep");
    }

    #[test]
    fn encode_header_refuses_empty_payloads() {
        let mut buf = BytesMut::new();
        assert!(matches!(
            encode_header(0, &mut buf, 10),
            Err(EncodeError::Empty)
        ));
        assert!(buf.is_empty());
    }
}
