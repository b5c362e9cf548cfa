//! A JSON validator: is this exactly one JSON value (RFC 8259), nested at most
//! [`MAX_DEPTH`] deep? It builds nothing and allocates nothing.
//!
//! Why not serde_json here: [`crate::RawJson`] exists for handlers that forward, count or
//! store messages without looking inside, and for them validation *is* the per-message cost.
//! serde's visitor machinery parses every number and key on the way; this reads the bytes
//! once, and skips through strings eight bytes at a time. It agrees with serde_json's verdict
//! on every input (tested by property against it), with one documented exception: a number
//! too large for an `f64` (say `1e400`) is valid JSON by the grammar and accepted here, while
//! serde_json's `Value` rejects it as out of range.
//!
//! It also checks UTF-8, in the same pass. JSON's structure (brackets, commas, colons,
//! literals, numbers, escapes) is all ASCII, and every structural position here accepts only
//! the ASCII bytes the grammar names, so a byte of 0x80 or more outside a string is already an
//! error. Only string contents may hold other characters: the string scan stops at a byte of
//! 0x80 or more as it stops at a quote, and checks the run of text from there to the next
//! quote, backslash or control character as UTF-8. So an accepted payload is valid UTF-8, and
//! ASCII text (the usual case) costs no separate `std::str::from_utf8` pass over every payload.

use crate::message::MAX_DEPTH;

/// Where and why a payload is not valid JSON.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Invalid {
    pub(crate) at: usize,
    pub(crate) what: &'static str,
}

/// Why a payload is not valid JSON; where is the cursor's position when it is returned.
///
/// One byte, so that every `Result<(), Why>` on the hot path travels in a register: with the
/// position and a `&str` inside (24 bytes) each of the dozens of calls per payload returned
/// through memory, and that cost as much as the checks themselves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Why {
    ControlInString,
    ExpectedCommaOrEnd,
    ExpectedColon,
    ExpectedKey,
    ExpectedValue,
    ExpectedValueAtEnd,
    InvalidUtf8,
    InvalidEscape,
    InvalidHexDigit,
    InvalidLiteral,
    InvalidNumber,
    NoFractionDigits,
    NoExponentDigits,
    LoneLeadingSurrogate,
    LoneTrailingSurrogate,
    TooDeep,
    Trailing,
    TruncatedEscape,
    EndInContainer,
    Unterminated,
}

impl Why {
    fn text(self) -> &'static str {
        match self {
            Why::ControlInString => "control character in string",
            Why::ExpectedCommaOrEnd => "expected ',' or the end of the container",
            Why::ExpectedColon => "expected ':' after an object key",
            Why::ExpectedKey => "expected a string key",
            Why::ExpectedValue => "expected a value",
            Why::ExpectedValueAtEnd => "expected a value, found the end",
            Why::InvalidUtf8 => "invalid UTF-8",
            Why::InvalidEscape => "invalid escape",
            Why::InvalidHexDigit => "invalid hex digit in \\u escape",
            Why::InvalidLiteral => "invalid literal (expected true, false or null)",
            Why::InvalidNumber => "invalid number",
            Why::NoFractionDigits => "invalid number: no digits after the decimal point",
            Why::NoExponentDigits => "invalid number: no digits in the exponent",
            Why::LoneLeadingSurrogate => "lone leading surrogate in \\u escape",
            Why::LoneTrailingSurrogate => "lone trailing surrogate in \\u escape",
            Why::TooDeep => "nested too deeply",
            Why::Trailing => "trailing characters after the value",
            Why::TruncatedEscape => "truncated \\u escape",
            Why::EndInContainer => "unexpected end inside a container",
            Why::Unterminated => "unterminated string",
        }
    }
}

/// The containers open around the current position, innermost in bit 0: a set bit is an
/// object, a clear bit an array. 128 bits hold MAX_DEPTH (127) levels with no allocation.
struct Stack {
    bits: u128,
    depth: usize,
}

impl Stack {
    fn push(&mut self, object: bool) -> Result<(), Why> {
        if self.depth >= MAX_DEPTH {
            return Err(Why::TooDeep);
        }
        self.bits = (self.bits << 1) | u128::from(object);
        self.depth += 1;
        Ok(())
    }

    fn pop(&mut self) {
        self.bits >>= 1;
        self.depth -= 1;
    }

    fn in_object(&self) -> bool {
        self.bits & 1 == 1
    }
}

struct Cursor<'a> {
    b: &'a [u8],
    pos: usize,
}

impl Cursor<'_> {
    #[inline(always)]
    fn peek(&self) -> Option<u8> {
        self.b.get(self.pos).copied()
    }

    #[inline(always)]
    fn skip_ws(&mut self) {
        while let Some(b' ' | b'\t' | b'\n' | b'\r') = self.peek() {
            self.pos += 1;
        }
    }

    #[inline(always)]
    fn expect(&mut self, byte: u8, why: Why) -> Result<(), Why> {
        if self.peek() != Some(byte) {
            return Err(why);
        }
        self.pos += 1;
        Ok(())
    }

    #[inline(always)]
    fn literal(&mut self, word: &'static [u8]) -> Result<(), Why> {
        if !self.b[self.pos..].starts_with(word) {
            return Err(Why::InvalidLiteral);
        }
        self.pos += word.len();
        Ok(())
    }

    #[inline(always)]
    fn digits(&mut self) -> usize {
        let start = self.pos;
        while let Some(b'0'..=b'9') = self.peek() {
            self.pos += 1;
        }
        self.pos - start
    }

    /// `-?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?`
    #[inline(always)]
    fn number(&mut self) -> Result<(), Why> {
        if self.peek() == Some(b'-') {
            self.pos += 1;
        }
        match self.peek() {
            Some(b'0') => self.pos += 1,
            Some(b'1'..=b'9') => {
                self.digits();
            }
            _ => return Err(Why::InvalidNumber),
        }
        if self.peek() == Some(b'.') {
            self.pos += 1;
            if self.digits() == 0 {
                return Err(Why::NoFractionDigits);
            }
        }
        if let Some(b'e' | b'E') = self.peek() {
            self.pos += 1;
            if let Some(b'+' | b'-') = self.peek() {
                self.pos += 1;
            }
            if self.digits() == 0 {
                return Err(Why::NoExponentDigits);
            }
        }
        Ok(())
    }

    fn hex4(&mut self) -> Result<u16, Why> {
        let Some(hex) = self.b.get(self.pos..self.pos + 4) else {
            return Err(Why::TruncatedEscape);
        };
        let mut v = 0u16;
        for &h in hex {
            let d = match h {
                b'0'..=b'9' => h - b'0',
                b'a'..=b'f' => h - b'a' + 10,
                b'A'..=b'F' => h - b'A' + 10,
                _ => return Err(Why::InvalidHexDigit),
            };
            v = (v << 4) | u16::from(d);
        }
        self.pos += 4;
        Ok(v)
    }

    /// An object key and its colon: `"…" :`, with the whitespace around them.
    #[inline(always)]
    fn key(&mut self) -> Result<(), Why> {
        self.expect(b'"', Why::ExpectedKey)?;
        self.string()?;
        self.skip_ws();
        self.expect(b':', Why::ExpectedColon)?;
        self.skip_ws();
        Ok(())
    }

    /// After the opening quote, up to and including the closing one.
    #[inline(always)]
    fn string(&mut self) -> Result<(), Why> {
        self.pos = plain_run_end(self.b, self.pos);
        if self.peek() == Some(b'"') {
            self.pos += 1;
            return Ok(());
        }
        // Through a copy of the cursor: a cursor whose address is never taken stays in
        // registers throughout the validator's loop.
        let mut rest = Cursor {
            b: self.b,
            pos: self.pos,
        };
        let verdict = rest.string_rest();
        self.pos = rest.pos;
        verdict
    }

    /// The rest of a string that holds an escape or text that is not ASCII (or is broken):
    /// out of line, so that the usual plain string stays small enough to inline.
    #[inline(never)]
    fn string_rest(&mut self) -> Result<(), Why> {
        loop {
            match self.peek() {
                Some(b'"') => {
                    self.pos += 1;
                    return Ok(());
                }
                Some(b'\\') => {
                    self.pos += 1;
                    self.escape()?;
                }
                Some(0x80..) => {
                    // Text that is not ASCII: take the whole run up to the next byte that
                    // needs attention, and check it in one go.
                    let run = self.pos;
                    self.skip_string_bytes::<false>();
                    self.utf8(run)?;
                }
                Some(_) => return Err(Why::ControlInString),
                None => return Err(Why::Unterminated),
            }
            self.skip_string_bytes::<true>();
        }
    }

    /// Skips the bytes of a string that need no attention: anything but `"`, `\` and control
    /// characters, and with `ASCII_ONLY`, anything but ASCII too. Stops at the first byte that
    /// does, or at the end.
    ///
    /// Eight bytes at a time: each test below sets the high bit of every byte that matches (the
    /// "has a zero byte" and "has a byte less than n" tricks), and the lowest byte flagged is
    /// exact (a false flag can only come from a borrow out of a matching byte below it), so
    /// its position is the answer without a byte-by-byte rescan.
    #[inline(always)]
    fn skip_string_bytes<const ASCII_ONLY: bool>(&mut self) {
        const ONES: u64 = 0x0101_0101_0101_0101;
        const HIGHS: u64 = 0x8080_8080_8080_8080;
        /// High bit set in each byte of `x` equal to `byte`.
        fn equal(x: u64, byte: u8) -> u64 {
            let y = x ^ (ONES * u64::from(byte));
            y.wrapping_sub(ONES) & !y
        }
        let rest = self.b.get(self.pos..).unwrap_or_default();
        let mut words = rest.chunks_exact(8);
        // A local count, not `self.pos`, so that the loop keeps it in a register.
        let mut skipped = 0;
        for word in &mut words {
            // Always eight bytes (`chunks_exact`); the compiler drops the check.
            let Ok(word) = <[u8; 8]>::try_from(word) else {
                break;
            };
            let x = u64::from_le_bytes(word);
            // `& !x`: a byte with its own high bit set is not a control character.
            let control = x.wrapping_sub(ONES * 0x20) & !x;
            // `x` itself: its high bits are the bytes that are not ASCII.
            let non_ascii = if ASCII_ONLY { x } else { 0 };
            let special = (control | equal(x, b'"') | equal(x, b'\\') | non_ascii) & HIGHS;
            if special != 0 {
                // Little-endian: the first byte is the lowest.
                self.pos += skipped + special.trailing_zeros() as usize / 8;
                return;
            }
            skipped += 8;
        }
        for &b in words.remainder() {
            if b == b'"' || b == b'\\' || b < 0x20 || (ASCII_ONLY && b >= 0x80) {
                break;
            }
            skipped += 1;
        }
        self.pos += skipped;
    }

    /// Checks that the string bytes from `start` to here are UTF-8. They hold no quote,
    /// backslash or control character, all ASCII: no multi-byte sequence can span those, so
    /// a run between them is valid exactly when it is valid on its own. The standard
    /// library's check rules out what JSON must not carry either: overlong forms, surrogates,
    /// code points above U+10FFFF, sequences cut short. On failure the cursor moves to the
    /// first byte that is not.
    fn utf8(&mut self, start: usize) -> Result<(), Why> {
        match std::str::from_utf8(&self.b[start..self.pos]) {
            Ok(_) => Ok(()),
            Err(e) => {
                self.pos = start + e.valid_up_to();
                Err(Why::InvalidUtf8)
            }
        }
    }

    /// After a backslash. Surrogates must pair up, as serde_json requires.
    fn escape(&mut self) -> Result<(), Why> {
        match self.peek() {
            Some(b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't') => {
                self.pos += 1;
                Ok(())
            }
            Some(b'u') => {
                self.pos += 1;
                match self.hex4()? {
                    0xD800..=0xDBFF => {
                        if !self.b[self.pos..].starts_with(b"\\u") {
                            return Err(Why::LoneLeadingSurrogate);
                        }
                        self.pos += 2;
                        match self.hex4()? {
                            0xDC00..=0xDFFF => Ok(()),
                            _ => Err(Why::LoneLeadingSurrogate),
                        }
                    }
                    0xDC00..=0xDFFF => Err(Why::LoneTrailingSurrogate),
                    _ => Ok(()),
                }
            }
            _ => Err(Why::InvalidEscape),
        }
    }
}

/// Where the run of plain ASCII string bytes starting at `pos` ends (see
/// `Cursor::skip_string_bytes`). Out of line: inlined into the validator's loop it made
/// that loop too big for the registers, and both reloaded values at every step (callgrind:
/// 563 -> 515 instructions for a 64-byte object, 830 -> 741 for an array of 8 integers).
#[inline(never)]
fn plain_run_end(b: &[u8], pos: usize) -> usize {
    let mut c = Cursor { b, pos };
    c.skip_string_bytes::<true>();
    c.pos
}

/// Checks that `input` is exactly one JSON value, with optional surrounding whitespace, and
/// valid UTF-8 (see the module docs).
pub(crate) fn validate(input: &[u8]) -> Result<(), Invalid> {
    let mut c = Cursor { b: input, pos: 0 };
    value(&mut c).map_err(|why| Invalid {
        at: c.pos,
        what: why.text(),
    })
}

/// The grammar's loop: a value, then what may follow it, until the outermost value ends.
#[inline(always)]
fn value(c: &mut Cursor<'_>) -> Result<(), Why> {
    let mut stack = Stack { bits: 0, depth: 0 };
    c.skip_ws();
    'value: loop {
        // A value starts here.
        match c.peek() {
            Some(b'{') => {
                stack.push(true)?;
                c.pos += 1;
                c.skip_ws();
                if c.peek() == Some(b'}') {
                    c.pos += 1;
                    stack.pop();
                } else {
                    c.key()?;
                    continue 'value;
                }
            }
            Some(b'[') => {
                stack.push(false)?;
                c.pos += 1;
                c.skip_ws();
                if c.peek() == Some(b']') {
                    c.pos += 1;
                    stack.pop();
                } else {
                    continue 'value;
                }
            }
            Some(b'"') => {
                c.pos += 1;
                c.string()?;
            }
            Some(b't') => c.literal(b"true")?,
            Some(b'f') => c.literal(b"false")?,
            Some(b'n') => c.literal(b"null")?,
            Some(b'-' | b'0'..=b'9') => c.number()?,
            Some(_) => return Err(Why::ExpectedValue),
            None => return Err(Why::ExpectedValueAtEnd),
        }
        // A value ended: close containers, or move to the next element.
        loop {
            c.skip_ws();
            if stack.depth == 0 {
                return match c.peek() {
                    None => Ok(()),
                    Some(_) => Err(Why::Trailing),
                };
            }
            match c.peek() {
                Some(b',') => {
                    c.pos += 1;
                    c.skip_ws();
                    if stack.in_object() {
                        c.key()?;
                    }
                    continue 'value;
                }
                Some(b'}') if stack.in_object() => {
                    c.pos += 1;
                    stack.pop();
                }
                Some(b']') if !stack.in_object() => {
                    c.pos += 1;
                    stack.pop();
                }
                Some(_) => return Err(Why::ExpectedCommaOrEnd),
                None => return Err(Why::EndInContainer),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(s: &str) -> bool {
        validate(s.as_bytes()).is_ok()
    }

    #[test]
    fn accepts_the_grammar() {
        for s in [
            "0",
            "-0",
            "-12.5e+3",
            "1E-7",
            "true",
            "false",
            "null",
            "\"\"",
            "\"a\\\"b\\\\c\\/d\\b\\f\\n\\r\\t\"",
            "\"\\u00e9\\ud83d\\ude00\"",
            "\"é ☃ 😀\"",
            "[]",
            "{}",
            " [1, [2, {\"k\": [null]}], \"s\"] ",
            "{\"a\":1,\"b\":{\"c\":[true,false]}}",
            "1e400",
        ] {
            assert!(ok(s), "{s}");
        }
    }

    #[test]
    fn rejects_what_is_not_json() {
        for s in [
            "",
            " ",
            "01",
            "1.",
            ".5",
            "-",
            "1e",
            "+1",
            "tru",
            "nul",
            "[1,]",
            "[,1]",
            "{\"a\"}",
            "{\"a\":}",
            "{a:1}",
            "{\"a\":1,}",
            "[1 2]",
            "1 2",
            "\"open",
            "\"\\x\"",
            "\"\\u12\"",
            "\"\\ud800\"",
            "\"\\udc00\"",
            "\"\\ud800\\u0041\"",
            "\"tab\there\"",
            "[",
            "]",
            "{",
            "NaN",
            "Infinity",
            "'s'",
        ] {
            assert!(!ok(s), "{s:?} should be invalid");
        }
    }

    #[test]
    fn depth_limit_is_exact() {
        let at = "[".repeat(MAX_DEPTH) + &"]".repeat(MAX_DEPTH);
        assert!(ok(&at));
        let over = "[".repeat(MAX_DEPTH + 1) + &"]".repeat(MAX_DEPTH + 1);
        assert_eq!(
            validate(over.as_bytes()).unwrap_err().what,
            "nested too deeply"
        );
        let objects = "{\"k\":".repeat(MAX_DEPTH) + "0" + &"}".repeat(MAX_DEPTH);
        assert!(ok(&objects));
    }

    #[test]
    fn long_strings_take_the_fast_path_and_stop_at_every_special_byte() {
        for at in 0..20 {
            let xs = "x".repeat(20);
            let (head, tail) = xs.split_at(at);
            // A raw quote ends the string early, `\x` is not an escape, a control character
            // is not allowed: each is caught wherever it falls in the 8-byte words.
            for bad in ["\"", "\\x", "\u{1}"] {
                assert!(!ok(&format!("\"{head}{bad}{tail}\"")), "{bad:?} at {at}");
            }
            // A valid escape anywhere is fine.
            assert!(
                ok(&format!("\"{head}\\\"{tail}\"")),
                "escaped quote at {at}"
            );
        }
    }

    /// The validator's UTF-8 verdict inside strings is `std::str::from_utf8`'s, for the edge
    /// cases of every sequence length, wherever they fall in the scan's 8-byte words.
    #[test]
    fn utf8_in_strings_agrees_with_from_utf8() {
        let cases: &[&[u8]] = &[
            // Well-formed, at the edges of each range.
            b"\xC2\x80",
            b"\xDF\xBF",
            b"\xE0\xA0\x80",
            b"\xED\x9F\xBF",
            b"\xEE\x80\x80",
            b"\xEF\xBF\xBF",
            b"\xF0\x90\x80\x80",
            b"\xF4\x8F\xBF\xBF",
            "é ☃ 😀".as_bytes(),
            // Overlong encodings.
            b"\xC0\x80",
            b"\xC1\xBF",
            b"\xE0\x80\x80",
            b"\xE0\x9F\xBF",
            b"\xF0\x80\x80\x80",
            b"\xF0\x8F\xBF\xBF",
            // Surrogates, encoded directly.
            b"\xED\xA0\x80",
            b"\xED\xBF\xBF",
            // Above U+10FFFF, and bytes that never occur.
            b"\xF4\x90\x80\x80",
            b"\xF5\x80\x80\x80",
            b"\xFE",
            b"\xFF",
            // Lone continuation bytes, and sequences cut short (by the quote, or by ASCII).
            b"\x80",
            b"\xBF",
            b"\xC3",
            b"\xE2\x82",
            b"\xF0\x9F\x98",
            b"\xE2\x82a",
            b"\xC3\xA9\x80",
        ];
        for &case in cases {
            for pad in 0..17 {
                let mut text = b"\"".to_vec();
                text.extend(std::iter::repeat_n(b'x', pad));
                text.extend_from_slice(case);
                text.extend(std::iter::repeat_n(b'y', pad % 5));
                text.push(b'"');
                let expected = std::str::from_utf8(&text).is_ok();
                assert_eq!(validate(&text).is_ok(), expected, "{text:x?}");
                // Cut off before the closing quote: never valid, never a panic.
                assert!(validate(&text[..text.len() - 1]).is_err());
                // A truncated sequence at the very end of the input.
                let mut cut = b"\"".to_vec();
                cut.extend(std::iter::repeat_n(b'x', pad));
                cut.extend_from_slice(&case[..case.len() - 1]);
                assert!(validate(&cut).is_err(), "{cut:x?}");
            }
        }
    }

    #[test]
    fn non_ascii_outside_strings_is_rejected() {
        for text in ["é", "[é]", "1é", "{\"a\"é:1}", "[1,\u{a0}2]", "\u{feff}{}"] {
            assert!(!ok(text), "{text:?}");
        }
    }

    mod parity {
        use super::super::validate;
        use proptest::prelude::*;
        use serde_json::Value;

        /// The verdict of `std::str::from_utf8` and then serde_json, minus the one documented
        /// difference (out-of-range numbers).
        fn serde_verdict(bytes: &[u8]) -> Option<bool> {
            let Ok(text) = std::str::from_utf8(bytes) else {
                return Some(false);
            };
            match serde_json::from_str::<Value>(text) {
                Ok(_) => Some(true),
                Err(e) if e.to_string().contains("number out of range") => None,
                Err(_) => Some(false),
            }
        }

        /// Bytes for the UTF-8 property: ASCII, the bytes JSON treats specially, every kind of
        /// UTF-8 lead byte at its range edges, continuation bytes at theirs, and bytes no
        /// UTF-8 text may hold.
        const TRICKY_BYTES: &[u8] = &[
            b'a', b'x', b' ', b'"', b'\\', b'u', b'n', b'0', 0x00, 0x1F, 0x7F, // ASCII
            0x80, 0x8F, 0x90, 0x9F, 0xA0, 0xBF, // continuations
            0xC0, 0xC1, 0xC2, 0xDF, // 2-byte leads (C0, C1: always overlong)
            0xE0, 0xE1, 0xEC, 0xED, 0xEE, 0xEF, // 3-byte leads (ED: surrogates follow A0..)
            0xF0, 0xF1, 0xF3, 0xF4, 0xF5, 0xF8, 0xFF, // 4-byte leads, and never-valid bytes
        ];

        fn json() -> impl Strategy<Value = Value> {
            let leaf = prop_oneof![
                Just(Value::Null),
                any::<bool>().prop_map(Value::Bool),
                any::<i64>().prop_map(Value::from),
                any::<f64>()
                    .prop_filter("finite", |f| f.is_finite())
                    .prop_map(Value::from),
                any::<String>().prop_map(Value::String),
            ];
            leaf.prop_recursive(5, 64, 6, |inner| {
                prop_oneof![
                    prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
                    prop::collection::hash_map(any::<String>(), inner, 0..6)
                        .prop_map(|m| Value::Object(m.into_iter().collect())),
                ]
            })
        }

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(2000))]

            #[test]
            fn agrees_with_serde_json_on_valid_documents(v in json(), pretty in any::<bool>()) {
                let text = if pretty { serde_json::to_vec_pretty(&v) } else { serde_json::to_vec(&v) }.unwrap();
                prop_assert!(validate(&text).is_ok(), "{}", String::from_utf8_lossy(&text));
            }

            #[test]
            fn agrees_with_serde_json_on_damaged_documents(
                v in json(),
                edits in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>(), 0u8..3), 1..4),
            ) {
                let mut text = serde_json::to_vec(&v).unwrap();
                for (at, byte, op) in edits {
                    let i = at.index(text.len() + 1);
                    match op {
                        0 if i < text.len() => text[i] = byte,
                        1 if i < text.len() => { text.remove(i); }
                        _ => text.insert(i, byte),
                    }
                }
                if let Some(expected) = serde_verdict(&text) {
                    prop_assert_eq!(
                        validate(&text).is_ok(),
                        expected,
                        "{:?}",
                        String::from_utf8_lossy(&text)
                    );
                }
            }

            #[test]
            fn agrees_with_from_utf8_and_serde_json_on_strings_of_any_bytes(
                body in prop::collection::vec(prop::sample::select(TRICKY_BYTES.to_vec()), 0..40),
                any_bytes in prop::collection::vec(any::<u8>(), 0..12),
                key in any::<bool>(),
            ) {
                // Bytes that matter to UTF-8 (leads, continuations, the bytes no sequence may
                // hold) mixed with ASCII, quotes, escapes and control characters, in a string
                // value or an object key, plus a few wholly arbitrary bytes.
                let mut text = if key { b"{\"".to_vec() } else { b"[\"".to_vec() };
                text.extend_from_slice(&body);
                text.extend_from_slice(&any_bytes);
                text.extend_from_slice(if key { b"\":1}" } else { b"\"]" });
                if let Some(expected) = serde_verdict(&text) {
                    prop_assert_eq!(validate(&text).is_ok(), expected, "{:x?}", text);
                }
            }

            #[test]
            fn agrees_with_from_utf8_and_serde_json_on_any_bytes(
                bytes in prop::collection::vec(any::<u8>(), 0..16),
            ) {
                if let Some(expected) = serde_verdict(&bytes) {
                    prop_assert_eq!(validate(&bytes).is_ok(), expected, "{:x?}", bytes);
                }
            }

            #[test]
            fn agrees_with_serde_json_on_short_json_like_noise(
                bytes in prop::collection::vec(prop::sample::select(b" \t\n{}[]:,\"\\tfnrue0123456789-+.eEal/bu".to_vec()), 0..24),
            ) {
                if let Some(expected) = serde_verdict(&bytes) {
                    prop_assert_eq!(validate(&bytes).is_ok(), expected, "{:?}", String::from_utf8_lossy(&bytes));
                }
            }
        }
    }
}
