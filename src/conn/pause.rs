//! Why a connection is not reading, and for how long it has not been.
//!
//! Reasons combine: a connection reads only when none is present, and each part of the
//! reactor that pauses (the application, the write queue's high-water mark, the memory
//! budget, the worker pool) removes only its own reason.

use std::fmt;
use std::time::{Duration, Instant};

/// Why reading is paused. A connection reads only when no reason is present.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PauseReason {
    /// The application called [`crate::Context::pause_reading`] (a slow consumer).
    Application,
    /// This connection's own write queue is above its high-water mark (a peer that does not
    /// read its replies).
    WriteQueue,
    /// The bytes held across all connections reached [`crate::Config::queue_budget`], and this
    /// connection holds more than its fair share of it; it reads again when it holds less or
    /// the total falls back.
    Budget,
    /// A frame in progress needs a read buffer larger than an ordinary one, and the budget
    /// has no room for it now. Reading resumes when memory frees up, or when this connection's
    /// turn comes to overdraw the budget for one frame (`budget.rs`). The bytes wait in the
    /// kernel, so the peer feels it as a closed window.
    ReadBudget,
    /// A connection this one is linked to as a source ([`crate::Context::link`]) has its
    /// queue above high-water: a relay stops reading the side that feeds a slow peer, so the
    /// pressure travels back through the hop. Reading resumes when every linked sink is below
    /// high-water again (drained), or closed.
    Link,
    /// This connection's last message is parked because the worker queue is full
    /// ([`crate::Workers`]); reading resumes when the workers make room.
    Workers,
}

impl PauseReason {
    const ALL: [PauseReason; 6] = [
        PauseReason::Application,
        PauseReason::WriteQueue,
        PauseReason::Budget,
        PauseReason::ReadBudget,
        PauseReason::Link,
        PauseReason::Workers,
    ];

    fn bit(self) -> u8 {
        match self {
            PauseReason::Application => 1,
            PauseReason::WriteQueue => 2,
            PauseReason::Budget => 4,
            PauseReason::Workers => 8,
            PauseReason::ReadBudget => 16,
            PauseReason::Link => 32,
        }
    }
}

/// The set of reasons reading is paused for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Paused(u8);

impl Paused {
    /// True when reading is allowed.
    pub fn is_empty(self) -> bool {
        self.0 == 0
    }

    /// Whether `reason` is one of the reasons.
    pub fn contains(self, reason: PauseReason) -> bool {
        self.0 & reason.bit() != 0
    }

    fn insert(&mut self, reason: PauseReason) {
        self.0 |= reason.bit();
    }

    fn remove(&mut self, reason: PauseReason) {
        self.0 &= !reason.bit();
    }
}

impl fmt::Display for Paused {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.is_empty() {
            return f.write_str("reading");
        }
        let mut sep = "paused by ";
        for r in PauseReason::ALL {
            if self.contains(r) {
                write!(f, "{sep}{r:?}")?;
                sep = "+";
            }
        }
        Ok(())
    }
}

/// The pause reasons in force, and the clock of time spent paused (a figure).
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Pauses {
    reasons: Paused,
    since: Option<Instant>,
    total: Duration,
}

impl Pauses {
    pub(crate) fn reasons(&self) -> Paused {
        self.reasons
    }

    pub(crate) fn is_reading(&self) -> bool {
        self.reasons.is_empty()
    }

    /// Adds `reason`. True if reading was allowed and now is not.
    pub(crate) fn add(&mut self, reason: PauseReason, now: Instant) -> bool {
        let was_reading = self.reasons.is_empty();
        self.reasons.insert(reason);
        if was_reading {
            self.since = Some(now);
        }
        was_reading
    }

    /// Removes `reason`. True if reading was not allowed and now is.
    pub(crate) fn remove(&mut self, reason: PauseReason, now: Instant) -> bool {
        if !self.reasons.contains(reason) {
            return false;
        }
        self.reasons.remove(reason);
        if !self.reasons.is_empty() {
            return false;
        }
        if let Some(since) = self.since.take() {
            self.total += now.saturating_duration_since(since);
        }
        true
    }

    /// Time spent paused, up to `now`.
    pub(crate) fn time(&self, now: Instant) -> Duration {
        self.total
            + self
                .since
                .map_or(Duration::ZERO, |s| now.saturating_duration_since(s))
    }
}
