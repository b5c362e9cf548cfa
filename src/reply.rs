//! The error frames the contract defines, one constructor each, so the wire text lives in one
//! place and matches `PROTOCOL.md` field for field (and in its order).
//!
//! | input                          | reply                                            | then        |
//! |--------------------------------|--------------------------------------------------|-------------|
//! | length prefix above max frame  | `{"error":"frame_too_large","limit":L,"got":N}`  | close       |
//! | payload not valid UTF-8 JSON   | `{"error":"invalid_json","detail":"…"}`          | keep going  |
//! | over `max_connections`         | `{"error":"busy","limit":L}`                     | close       |
//! | no frame within idle timeout   | `{"error":"idle_timeout"}`                       | close       |

use serde::Serialize;

/// One error frame. Absent fields are left out of the JSON.
#[derive(Debug, Serialize)]
pub(crate) struct ErrorReply<'a> {
    error: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    detail: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    limit: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    got: Option<u64>,
}

impl<'a> ErrorReply<'a> {
    fn new(error: &'static str) -> ErrorReply<'a> {
        ErrorReply {
            error,
            detail: None,
            limit: None,
            got: None,
        }
    }

    pub(crate) fn frame_too_large(limit: usize, got: u64) -> ErrorReply<'a> {
        ErrorReply {
            limit: Some(limit as u64),
            got: Some(got),
            ..ErrorReply::new("frame_too_large")
        }
    }

    pub(crate) fn invalid_json(detail: &'a str) -> ErrorReply<'a> {
        ErrorReply {
            detail: Some(detail),
            ..ErrorReply::new("invalid_json")
        }
    }

    pub(crate) fn busy(limit: usize) -> ErrorReply<'a> {
        ErrorReply {
            limit: Some(limit as u64),
            ..ErrorReply::new("busy")
        }
    }

    pub(crate) fn idle_timeout() -> ErrorReply<'a> {
        ErrorReply::new("idle_timeout")
    }

    /// The length of the longest reply the reactor must be able to queue on a connection,
    /// whatever the peer sends: `frame_too_large` with `max_frame` as its limit and the
    /// largest length a header can claim. (`busy` is written before a connection has a
    /// queue; `invalid_json` carries a detail of varying length and is best effort.)
    pub(crate) fn longest_fixed_len(max_frame: usize) -> usize {
        let replies = [
            ErrorReply::frame_too_large(max_frame, u64::from(u32::MAX)),
            ErrorReply::idle_timeout(),
        ];
        replies
            .iter()
            .map(|r| serde_json::to_vec(r).map_or(usize::MAX, |v| v.len()))
            .max()
            .unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(r: &ErrorReply<'_>) -> String {
        serde_json::to_string(r).unwrap()
    }

    #[test]
    fn replies_match_the_contract_text() {
        assert_eq!(
            text(&ErrorReply::frame_too_large(8, 9)),
            r#"{"error":"frame_too_large","limit":8,"got":9}"#
        );
        assert_eq!(
            text(&ErrorReply::invalid_json("bad \"x\"")),
            r#"{"error":"invalid_json","detail":"bad \"x\""}"#
        );
        assert_eq!(text(&ErrorReply::busy(3)), r#"{"error":"busy","limit":3}"#);
        assert_eq!(
            text(&ErrorReply::idle_timeout()),
            r#"{"error":"idle_timeout"}"#
        );
    }
}
