//! Reconnection delays: exponential backoff with full jitter, written once for every client
//! that reconnects ([`crate::Requests`], [`crate::Reconnecting`]).
//!
//! After `attempt` failures in a row the delay is drawn uniformly from
//! `[min, min(max, min * 2^attempt)]`. The floor stays at `min`, so a client never retries
//! sooner than that; the ceiling doubles, so a server that stays away is asked less and less
//! often; the draw spreads a fleet of clients that lost the same server, so they do not come
//! back in lockstep.
//!
//! What counts as a success matters as much. A connection that opens is not one yet: a
//! server shedding load accepts and drops connections at once, and a client that started
//! again from `min` at every accept would knock every `min`, forever, as hard as it can. So
//! the count restarts only when a connection proves healthy: it stayed open for `max`, or
//! (for request clients) the peer answered a request. One that ends sooner is one more
//! failure.

use std::time::{Duration, Instant};

/// The delay after `attempt` failures in a row, for a random draw `draw` (any `u64`):
/// `min + draw mod (ceiling - min + 1)` microseconds, with `ceiling = min(max, base * 2^attempt)`
/// but never below `min`, where `base` is `min` or 1 ms, whichever is longer (so a zero or
/// tiny floor still backs off towards `max` instead of retrying as fast as the loop turns,
/// and a longer floor never makes shorter ceilings). Durations are
/// counted in whole microseconds and saturate: a huge backoff is "a very long time", not its
/// low bits.
pub(crate) fn delay(min: Duration, max: Duration, attempt: u32, draw: u64) -> Duration {
    let micros = |d: Duration| u64::try_from(d.as_micros()).unwrap_or(u64::MAX);
    let (min, cap) = (micros(min), micros(max));
    let base = min.max(1_000);
    let ceiling = base
        .saturating_mul(1u64 << attempt.min(30))
        .min(cap)
        .max(min);
    // Cannot overflow: the ceiling is at least `min`, and with min = 0 it is below u64::MAX.
    let span = ceiling - min + 1;
    Duration::from_micros(min + draw % span)
}

/// The state behind [`delay`]: failures in a row and a random generator.
#[derive(Debug, Clone)]
pub(crate) struct Backoff {
    min: Duration,
    max: Duration,
    attempt: u32,
    rng: u64,
    /// When the current connection opened, until it ends or proves healthy.
    opened_at: Option<Instant>,
}

impl Backoff {
    /// Seeded from the clock and the process id: different in every client of a fleet.
    pub(crate) fn new(min: Duration, max: Duration) -> Backoff {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| {
                d.as_secs() ^ u64::from(d.subsec_nanos()).rotate_left(32)
            });
        let seed = now ^ (u64::from(std::process::id()) << 32);
        Backoff {
            min,
            max,
            attempt: 0,
            rng: seed | 1,
            opened_at: None,
        }
    }

    /// The delay before the next attempt; counts one more failure.
    pub(crate) fn next_delay(&mut self) -> Duration {
        // xorshift64: plenty for jitter, no dependency.
        self.rng ^= self.rng << 13;
        self.rng ^= self.rng >> 7;
        self.rng ^= self.rng << 17;
        let d = delay(self.min, self.max, self.attempt, self.rng);
        self.attempt = self.attempt.saturating_add(1);
        d
    }

    /// A connection opened at `now`. Not a success yet: see the module docs.
    pub(crate) fn opened(&mut self, now: Instant) {
        self.opened_at = Some(now);
    }

    /// The connection ended at `now` (or a connect failed). If it had stayed open for `max`,
    /// it counts as a success and the next delay is `min` again; otherwise the count goes on.
    pub(crate) fn closed(&mut self, now: Instant) {
        if let Some(opened) = self.opened_at.take() {
            if now.saturating_duration_since(opened) >= self.max {
                self.attempt = 0;
            }
        }
    }

    /// The peer proved the connection healthy (it answered): the next delay is `min` again.
    pub(crate) fn reset(&mut self) {
        self.attempt = 0;
        self.opened_at = None;
    }

    /// Delays drawn since the last reset.
    #[cfg(test)]
    pub(crate) fn attempt(&self) -> u32 {
        self.attempt
    }

    /// Failures in a row as of `now`, for figures: 0 once the open connection has proved
    /// healthy by lasting `max` (the count itself restarts when it ends).
    pub(crate) fn attempt_at(&self, now: Instant) -> u32 {
        match self.opened_at {
            Some(opened) if now.saturating_duration_since(opened) >= self.max => 0,
            _ => self.attempt,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn the_delay_stays_between_min_and_the_doubling_ceiling() {
        let (min, max) = (50 * MS, 5000 * MS);
        for attempt in 0..40u32 {
            let ceiling = (min * 2u32.pow(attempt.min(20))).min(max);
            for draw in [0, 1, 7, 49_999, 50_000, 1 << 40, u64::MAX - 1, u64::MAX] {
                let d = delay(min, max, attempt, draw);
                assert!(d >= min && d <= ceiling, "attempt {attempt}: {d:?}");
            }
            // The draw reaches both ends.
            assert_eq!(delay(min, max, attempt, 0), min);
            let top = u64::try_from((ceiling - min).as_micros()).unwrap();
            assert_eq!(delay(min, max, attempt, top), ceiling);
        }
    }

    #[test]
    fn the_ceiling_doubles_until_the_maximum() {
        let (min, max) = (10 * MS, 100 * MS);
        // The largest delay each attempt can draw: 10, 20, 40, 80, then 100 ms for good.
        // The draw that lands on the ceiling: ceiling - min, in microseconds.
        let tops: Vec<_> = (0..8u32)
            .map(|a| delay(min, max, a, 10_000 * ((1u64 << a) - 1).min(9)))
            .collect();
        assert_eq!(tops, [10, 20, 40, 80, 100, 100, 100, 100].map(|ms| ms * MS));
    }

    #[test]
    fn odd_settings_do_not_overflow_or_panic() {
        // max below min: the delay is min.
        assert_eq!(delay(50 * MS, 10 * MS, 3, 12345), 50 * MS);
        // Zero both: immediate retries, as asked.
        assert_eq!(
            delay(Duration::ZERO, Duration::ZERO, 9, u64::MAX),
            Duration::ZERO
        );
        // A zero floor still backs off: the ceiling doubles from 1 ms towards max.
        assert_eq!(delay(Duration::ZERO, 100 * MS, 0, 1_000), MS);
        assert_eq!(delay(Duration::ZERO, 100 * MS, 3, 8_000), 8 * MS);
        assert_eq!(delay(Duration::ZERO, 100 * MS, 20, 100_000), 100 * MS);
        // Enormous: saturates instead of wrapping.
        let d = delay(Duration::MAX, Duration::MAX, u32::MAX, u64::MAX);
        assert_eq!(d, Duration::from_micros(u64::MAX));
        let d = delay(Duration::ZERO, Duration::MAX, u32::MAX, u64::MAX);
        assert!(d <= MS * (1 << 30), "{d:?}");
        let d = delay(MS, Duration::MAX, u32::MAX, u64::MAX);
        assert!(d >= MS && d <= MS * (1 << 30), "{d:?}");
    }

    #[test]
    fn the_generator_counts_attempts_and_resets() {
        let (min, max) = (MS, 64 * MS);
        let mut b = Backoff::new(min, max);
        assert_eq!(b.next_delay(), min, "the first delay after a reset is min");
        for a in 1..10u32 {
            assert_eq!(b.attempt(), a);
            let ceiling = (min * 2u32.pow(a)).min(max);
            let d = b.next_delay();
            assert!(d >= min && d <= ceiling, "attempt {a}: {d:?}");
        }
        b.reset();
        assert_eq!(b.attempt(), 0);
        assert_eq!(b.next_delay(), min);
    }

    #[test]
    fn a_connection_counts_as_a_success_only_once_it_lasted_max() {
        let (min, max) = (MS, 64 * MS);
        let t0 = Instant::now();
        let mut b = Backoff::new(min, max);
        b.next_delay();
        b.next_delay();
        assert_eq!(b.attempt(), 2);
        // Accepted and dropped at once: one more failure, not a fresh start.
        b.opened(t0);
        b.closed(t0 + max - MS);
        assert_eq!(b.attempt(), 2);
        b.next_delay();
        assert_eq!(b.attempt(), 3);
        // A connect that failed (never opened) changes nothing either.
        b.closed(t0 + 10 * max);
        assert_eq!(b.attempt(), 3);
        // Open for max: healthy. The next delay is min again.
        b.opened(t0);
        b.closed(t0 + max);
        assert_eq!(b.attempt(), 0);
        assert_eq!(b.next_delay(), min);
        // An answer proves it at once, and the close that follows does not undo it.
        b.next_delay();
        b.opened(t0);
        b.reset();
        b.closed(t0 + MS);
        assert_eq!(b.attempt(), 0);
    }

    /// Finding (attack review 2, low): the zero-floor fix looks at whole microseconds, so the
    /// back-off is not monotone in `backoff_min`: a floor of 0 (or 500 ns, which counts as 0)
    /// doubles from 1 ms, but a floor of 1 µs doubles from 1 µs, so a client configured to
    /// wait *longer* retries a thousand times sooner: its first ten delays add up to at most
    /// about 2 ms, where the zero floor's may reach about 2 s. The near-spin the fix removed
    /// for 0 is still there for any floor of a few microseconds.
    #[test]
    fn a_longer_floor_never_makes_shorter_ceilings() {
        let us = Duration::from_micros(1);
        let longest = |min: Duration, attempt: u32| {
            (0..100_000u64)
                .map(|draw| delay(min, Duration::from_secs(5), attempt, draw))
                .max()
                .expect("draws")
        };
        for attempt in 0..10 {
            let zero = longest(Duration::ZERO, attempt);
            assert_eq!(longest(Duration::from_nanos(500), attempt), zero);
            assert!(
                longest(us, attempt) >= zero,
                "attempt {attempt}: ceiling {:?} with a 1 us floor, {zero:?} with none",
                longest(us, attempt)
            );
        }
    }
}
