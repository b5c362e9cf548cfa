//! The values the examples' flags take: byte sizes (`262144`, `256KiB`, `8MiB`) and durations
//! (`500ms`, `60s`). Standard library only, so `tests/examples.rs` can check the same grammar
//! by including this file.
//!
//! A bare number keeps the unit the flag's name promises: `--idle-timeout-ms 500` is 500 ms,
//! `--seconds 4` is 4 s, `--work-us 200` is 200 µs. A suffix overrides it. Both types print
//! back in a form they parse, which is how `--help` shows the defaults.
#![allow(dead_code)]

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

/// A number of bytes: plain (`262144`), binary (`256KiB`, `8MiB`, `1GiB`) or decimal
/// (`64kB`, `10MB`, `1GB`). A bare `K`, `M` or `G` is refused as ambiguous.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Size(pub usize);

const SIZE_UNITS: [(&str, u64); 9] = [
    ("B", 1),
    ("KiB", 1 << 10),
    ("MiB", 1 << 20),
    ("GiB", 1 << 30),
    ("kB", 1_000),
    ("KB", 1_000),
    ("MB", 1_000_000),
    ("GB", 1_000_000_000),
    ("", 1),
];

impl FromStr for Size {
    type Err = String;

    fn from_str(s: &str) -> Result<Size, String> {
        let (number, unit) = split_number(s)?;
        let Some(&(_, scale)) = SIZE_UNITS.iter().find(|(u, _)| *u == unit) else {
            let hint = match unit {
                "k" | "K" => " (KiB is 1024 bytes, kB is 1000)",
                "m" | "M" => " (MiB is 1024 KiB, MB is 1000 kB)",
                "g" | "G" => " (GiB is 1024 MiB, GB is 1000 MB)",
                _ => "",
            };
            return Err(format!(
                "unknown size unit {unit:?}{hint}; use bytes, KiB, MiB, GiB, kB, MB or GB"
            ));
        };
        let bytes = scaled(number, scale as f64, s)?;
        if bytes.fract() != 0.0 {
            return Err(format!("{s:?} is not a whole number of bytes"));
        }
        if bytes > usize::MAX as f64 {
            return Err(format!("{s:?} is too large"));
        }
        Ok(Size(bytes as usize))
    }
}

impl fmt::Display for Size {
    /// The largest binary unit that states the value exactly: `256KiB`, `8MiB`, `10000`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = self.0 as u64;
        for (unit, scale) in [("GiB", 1u64 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)] {
            if n != 0 && n % scale == 0 {
                return write!(f, "{}{unit}", n / scale);
            }
        }
        write!(f, "{n}")
    }
}

/// A duration whose bare numbers count `UNIT_NS` nanoseconds: see [`Millis`], [`Secs`],
/// [`Micros`]. Suffixes: `us` (or `µs`), `ms`, `s`, `m` (minutes), `h`; decimals allowed
/// (`1.5s`). Zero is allowed; flags that read it as "off" say so.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Dur<const UNIT_NS: u64>(pub Duration);

/// Bare numbers are milliseconds (`--idle-timeout-ms 500`).
pub type Millis = Dur<1_000_000>;
/// Bare numbers are seconds (`--seconds 4`).
pub type Secs = Dur<1_000_000_000>;
/// Bare numbers are microseconds (`--work-us 200`).
pub type Micros = Dur<1_000>;

impl<const UNIT_NS: u64> Dur<UNIT_NS> {
    /// `None` for zero: the timeout flags' "0 = off".
    pub fn nonzero(self) -> Option<Duration> {
        (!self.0.is_zero()).then_some(self.0)
    }

    /// The flag's value for an optional duration: zero stands for `None`.
    pub fn or_off(d: Option<Duration>) -> Self {
        Dur(d.unwrap_or(Duration::ZERO))
    }
}

impl<const UNIT_NS: u64> FromStr for Dur<UNIT_NS> {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let (number, unit) = split_number(s)?;
        let scale_ns: u64 = match unit {
            "" => UNIT_NS,
            "ns" => 1,
            "us" | "µs" => 1_000,
            "ms" => 1_000_000,
            "s" => 1_000_000_000,
            "m" | "min" => 60_000_000_000,
            "h" => 3_600_000_000_000,
            _ => {
                return Err(format!(
                    "unknown duration unit {unit:?}; use us, ms, s, m or h (a bare number is {})",
                    unit_name(UNIT_NS)
                ));
            }
        };
        let ns = scaled(number, scale_ns as f64, s)?;
        if ns > u64::MAX as f64 {
            return Err(format!("{s:?} is too long"));
        }
        Ok(Dur(Duration::from_nanos(ns.round() as u64)))
    }
}

impl<const UNIT_NS: u64> fmt::Display for Dur<UNIT_NS> {
    /// The largest unit up to seconds that states the value exactly: `60s`, `500ms`, `0`
    /// (not `1m`, which reads like a millisecond at a glance).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ns = self.0.as_nanos();
        if ns == 0 {
            return write!(f, "0");
        }
        for (unit, scale) in [("s", 1_000_000_000u128), ("ms", 1_000_000), ("us", 1_000)] {
            if ns % scale == 0 {
                return write!(f, "{}{unit}", ns / scale);
            }
        }
        write!(f, "{ns}ns")
    }
}

fn unit_name(unit_ns: u64) -> &'static str {
    match unit_ns {
        1_000 => "microseconds",
        1_000_000 => "milliseconds",
        1_000_000_000 => "seconds",
        _ => "nanoseconds",
    }
}

/// `"8MiB"` → (`8.0`, `"MiB"`). Whitespace between the two is allowed (`"8 MiB"`).
fn split_number(s: &str) -> Result<(f64, &str), String> {
    let t = s.trim();
    let end = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.' || c == '_'))
        .unwrap_or(t.len());
    let (digits, unit) = t.split_at(end);
    let digits = digits.replace('_', "");
    if digits.is_empty() {
        return Err(format!("{s:?} does not start with a number"));
    }
    let number: f64 = digits
        .parse()
        .map_err(|_| format!("{s:?}: {digits:?} is not a number"))?;
    Ok((number, unit.trim()))
}

fn scaled(number: f64, scale: f64, s: &str) -> Result<f64, String> {
    let v = number * scale;
    if v.is_finite() {
        Ok(v)
    } else {
        Err(format!("{s:?} is too large"))
    }
}
