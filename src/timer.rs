//! Deadlines: a binary heap ordered by time, so the next wake-up is found in O(1) and each
//! timer costs O(log n) to set and to fire, whatever the number of connections.
//!
//! Two kinds of timer share the heap:
//! - application timers ([`crate::Context::set_timer`]), cancelled lazily: cancelling removes
//!   the id from a live set, and the heap entry is skipped when it comes up;
//! - connection timers (idle, write stall, linger), at most one entry per connection per kind.
//!   A connection moves its own deadline forward without touching the heap (a field write
//!   per frame); when the stale entry comes up, the reactor sees the later deadline and pushes
//!   one new entry. So a busy connection costs one heap operation per timeout period, not one
//!   per frame.
//!
//! Invariant: [`Timers::next_deadline`] is never later than the earliest live deadline, so
//! the poll timeout computed from it never sleeps through a timer.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashSet};
use std::time::Instant;

use crate::conn::ConnId;

/// Identifies an application timer; returned by [`crate::Context::set_timer`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TimerId(u64);

impl TimerId {
    /// The number inside, for logging.
    pub fn as_u64(self) -> u64 {
        self.0
    }
}

/// What a heap entry is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Due {
    /// An application timer and the value it carries.
    App(TimerId, u64),
    /// Check whether the connection has completed a frame lately.
    Idle(ConnId),
    /// Check whether the connection's write queue has drained lately.
    WriteStall(ConnId),
    /// Give up the connection's connect if it is still in progress.
    Connect(ConnId),
    /// The lingering close of this connection has lasted long enough.
    Linger(ConnId),
    /// Re-register the listener in this slab slot after an accept back-off.
    ResumeAccept(usize),
}

#[derive(Debug, PartialEq, Eq, PartialOrd, Ord)]
struct Entry {
    at: Instant,
    // Breaks ties in insertion order, so equal deadlines fire first-set first-fired.
    seq: u64,
    due: Due,
}

/// The deadline heap. See the module docs.
#[derive(Debug, Default)]
pub(crate) struct Timers {
    heap: BinaryHeap<Reverse<Entry>>,
    live_app: HashSet<TimerId>,
    seq: u64,
}

impl Timers {
    /// Schedules an application timer.
    pub(crate) fn set_app(&mut self, at: Instant, data: u64) -> TimerId {
        let id = TimerId(self.seq);
        self.live_app.insert(id);
        self.push(at, Due::App(id, data));
        id
    }

    /// Cancels an application timer. Returns false if it had already fired or been cancelled.
    pub(crate) fn cancel_app(&mut self, id: TimerId) -> bool {
        self.live_app.remove(&id)
    }

    /// Schedules a connection timer entry.
    pub(crate) fn push(&mut self, at: Instant, due: Due) {
        self.seq += 1;
        self.heap.push(Reverse(Entry {
            at,
            seq: self.seq,
            due,
        }));
    }

    /// The earliest deadline in the heap (possibly of a cancelled timer: waking early for
    /// nothing is harmless, sleeping late is not).
    pub(crate) fn next_deadline(&self) -> Option<Instant> {
        self.heap.peek().map(|Reverse(e)| e.at)
    }

    /// Pops the next entry due at or before `now`. Cancelled application timers are skipped.
    pub(crate) fn pop_due(&mut self, now: Instant) -> Option<Due> {
        while let Some(Reverse(e)) = self.heap.peek() {
            if e.at > now {
                return None;
            }
            let Reverse(e) = self.heap.pop()?;
            if let Due::App(id, _) = e.due {
                if !self.live_app.remove(&id) {
                    continue;
                }
            }
            return Some(e.due);
        }
        None
    }

    /// Entries in the heap, live or not (for figures and tests).
    pub(crate) fn len(&self) -> usize {
        self.heap.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn timers_fire_in_deadline_order() {
        let t0 = Instant::now();
        let mut t = Timers::default();
        let late = t.set_app(t0 + Duration::from_millis(20), 2);
        let early = t.set_app(t0 + Duration::from_millis(10), 1);
        assert_eq!(t.next_deadline(), Some(t0 + Duration::from_millis(10)));
        assert_eq!(t.pop_due(t0), None);
        let now = t0 + Duration::from_millis(30);
        assert_eq!(t.pop_due(now), Some(Due::App(early, 1)));
        assert_eq!(t.pop_due(now), Some(Due::App(late, 2)));
        assert_eq!(t.pop_due(now), None);
    }

    #[test]
    fn cancelled_timers_never_fire() {
        let t0 = Instant::now();
        let mut t = Timers::default();
        let id = t.set_app(t0, 7);
        assert!(t.cancel_app(id));
        assert!(!t.cancel_app(id));
        assert_eq!(t.pop_due(t0 + Duration::from_secs(1)), None);
        assert_eq!(t.len(), 0);
    }

    #[test]
    fn equal_deadlines_fire_in_the_order_they_were_set() {
        let t0 = Instant::now();
        let mut t = Timers::default();
        let a = t.set_app(t0, 1);
        let b = t.set_app(t0, 2);
        assert_eq!(t.pop_due(t0), Some(Due::App(a, 1)));
        assert_eq!(t.pop_due(t0), Some(Due::App(b, 2)));
    }
}
