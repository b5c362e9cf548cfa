//! One source, many sinks: a broker's topic, with a rule for each slow member.
//!
//! A publisher feeding many subscribers meets the same question at every slow one: should the
//! publisher wait for it, should it miss frames, or should it go? [`FanOut`] asks each member's
//! write queue before every frame (no system call: [`crate::Context::pressure`]) and applies
//! the member's [`SlowPolicy`]:
//!
//! - [`SlowPolicy::Pause`]: lossless. A member above high-water is linked to the frame's source
//!   ([`crate::Context::link`]), so the source stops being read until the member drains. Every
//!   member of the fan-out then goes at the pace of the slowest `Pause` member.
//! - [`SlowPolicy::Drop`]: frames for a member above high-water are not queued, only counted.
//!   The next frame it does get is preceded by a gap notice (by default
//!   `{"op":"gap","dropped":K}`), so it knows what it missed. Fast members are not slowed.
//! - [`SlowPolicy::Disconnect`]: a member that stays above high-water for a grace period is
//!   reset ([`crate::Context::abort`]); within the grace it gets every frame. Fast members are
//!   not slowed.
//!
//! Memory: under `Drop` a slow member holds at most its high-water mark plus one frame; under
//! `Disconnect`, its hard queue limit for at most the grace period; under `Pause`, its
//! high-water mark plus what the source had already read when it was paused (one read).
//!
//! Members whose connection closed leave the fan-out by themselves, at the next send.

use std::time::{Duration, Instant};

use bytes::Bytes;

use crate::conn::ConnId;
use crate::context::Context;
use crate::write_queue::SendError;

/// What happens to a [`FanOut`] member whose write queue is above its high-water mark.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SlowPolicy {
    /// The source waits for it (lossless): see the module docs.
    Pause,
    /// It misses frames, and is told how many before the next one it gets.
    Drop,
    /// It is reset once it has stayed above high-water for `grace`.
    Disconnect {
        /// How long a member may stay above high-water.
        grace: Duration,
    },
}

/// What one [`FanOut::send`] did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Delivery {
    /// Members the frame was queued for.
    pub sent: usize,
    /// Members that missed it (`Drop`, above high-water).
    pub dropped: usize,
    /// Members reset by this send (`Disconnect` past its grace, or any member whose queue
    /// refused the frame: a full queue cannot be kept lossless).
    pub disconnected: usize,
    /// Whether the source was paused for a `Pause` member (it will read again when that
    /// member drains).
    pub paused_source: bool,
}

#[derive(Debug)]
struct Member {
    sink: ConnId,
    policy: SlowPolicy,
    /// Frames missed since the last gap notice (`Drop`).
    dropped: u64,
    /// Since when it has been above high-water (`Disconnect`).
    high_since: Option<Instant>,
}

/// The members of one fan-out and their policies. See the module docs.
///
/// ```no_run
/// use highwater::bytes::Bytes;
/// use highwater::{ConnId, Context, FanOut, SlowPolicy};
///
/// fn subscribe(topic: &mut FanOut, subscriber: ConnId) {
///     topic.add(subscriber, SlowPolicy::Drop);
/// }
///
/// fn publish(topic: &mut FanOut, ctx: &mut Context<'_>, publisher: ConnId, frame: Bytes) {
///     let d = topic.send(ctx, Some(publisher), frame);
///     if d.dropped > 0 {
///         log::debug!("{} slow subscribers missed a frame", d.dropped);
///     }
/// }
/// ```
#[derive(Debug)]
pub struct FanOut {
    members: Vec<Member>,
    gap_notice: fn(u64) -> Bytes,
}

impl Default for FanOut {
    fn default() -> FanOut {
        FanOut::new()
    }
}

/// `{"op":"gap","dropped":K}`.
fn default_gap_notice(dropped: u64) -> Bytes {
    Bytes::from(format!(r#"{{"op":"gap","dropped":{dropped}}}"#))
}

impl FanOut {
    /// A fan-out with no members, whose gap notice is `{"op":"gap","dropped":K}`.
    pub fn new() -> FanOut {
        FanOut {
            members: Vec::new(),
            gap_notice: default_gap_notice,
        }
    }

    /// The same with a gap notice of your own: the payload (JSON text) a `Drop` member gets
    /// before its next frame after it missed `dropped` of them.
    pub fn with_gap_notice(gap_notice: fn(u64) -> Bytes) -> FanOut {
        FanOut {
            members: Vec::new(),
            gap_notice,
        }
    }

    /// Adds `sink` with `policy`; a member already there gets the new policy. Returns true if
    /// it was not a member.
    pub fn add(&mut self, sink: ConnId, policy: SlowPolicy) -> bool {
        if let Some(m) = self.members.iter_mut().find(|m| m.sink == sink) {
            m.policy = policy;
            return false;
        }
        self.members.push(Member {
            sink,
            policy,
            dropped: 0,
            high_since: None,
        });
        true
    }

    /// Removes `sink`. Returns true if it was a member. (A `Pause` member's links to sources
    /// stay until either closes, or until [`crate::Context::unlink`].)
    pub fn remove(&mut self, sink: ConnId) -> bool {
        let before = self.members.len();
        self.members.retain(|m| m.sink != sink);
        self.members.len() < before
    }

    /// Whether `sink` is a member.
    pub fn contains(&self, sink: ConnId) -> bool {
        self.members.iter().any(|m| m.sink == sink)
    }

    /// How many members (including any whose connection closed since the last send).
    pub fn len(&self) -> usize {
        self.members.len()
    }

    /// Whether there is no member.
    pub fn is_empty(&self) -> bool {
        self.members.is_empty()
    }

    /// Frames `sink` has missed since its last gap notice (`Drop`), if it is a member.
    pub fn missed(&self, sink: ConnId) -> Option<u64> {
        self.members
            .iter()
            .find(|m| m.sink == sink)
            .map(|m| m.dropped)
    }

    /// Queues `payload` (JSON text, sent as is) for every member, each by its policy.
    /// `source` is the connection the frame came from, if any: the one a `Pause` member holds
    /// back. Members whose connection closed are removed.
    pub fn send(
        &mut self,
        ctx: &mut Context<'_>,
        source: Option<ConnId>,
        payload: Bytes,
    ) -> Delivery {
        let mut d = Delivery::default();
        let now = ctx.now();
        let gap_notice = self.gap_notice;
        self.members.retain_mut(|m| {
            let Some(pressure) = ctx.pressure(m.sink).filter(|_| ctx.is_open(m.sink)) else {
                return false; // closed: leaves the fan-out
            };
            let high = pressure.is_high();
            match m.policy {
                SlowPolicy::Drop if high => {
                    m.dropped += 1;
                    d.dropped += 1;
                    return true;
                }
                SlowPolicy::Drop if m.dropped > 0 => {
                    if ctx.send_payload(m.sink, gap_notice(m.dropped)).is_ok() {
                        m.dropped = 0;
                    }
                }
                SlowPolicy::Disconnect { grace } if high => {
                    let since = *m.high_since.get_or_insert(now);
                    if now.saturating_duration_since(since) >= grace {
                        log::debug!("{}: above high-water for {grace:?}: reset", m.sink);
                        ctx.abort(m.sink);
                        d.disconnected += 1;
                        return false;
                    }
                }
                SlowPolicy::Disconnect { .. } => m.high_since = None,
                SlowPolicy::Drop | SlowPolicy::Pause => {}
            }
            match ctx.send_payload(m.sink, payload.clone()) {
                Ok(after) => {
                    d.sent += 1;
                    // A `Pause` member that is (now) above high-water holds the source back
                    // until it drains: the link pauses the source at once if it is.
                    if m.policy == SlowPolicy::Pause && after.is_high() {
                        if let Some(src) = source {
                            if ctx.link(src, m.sink) {
                                d.paused_source = true;
                            }
                        }
                    }
                    true
                }
                Err(SendError::Closed) => false,
                Err(e) => {
                    // The queue refused the frame (its hard limit): the member cannot be kept
                    // whole, so it goes, whatever its policy.
                    log::debug!("{}: fan-out frame refused ({e}): reset", m.sink);
                    ctx.abort(m.sink);
                    d.disconnected += 1;
                    false
                }
            }
        });
        d
    }

    /// Resets every `Disconnect` member that has been above high-water for longer than its
    /// grace, without waiting for the next frame (call it from a timer when frames may stop
    /// coming). Returns how many were reset.
    pub fn sweep(&mut self, ctx: &mut Context<'_>) -> usize {
        let now = ctx.now();
        let mut reset = 0;
        self.members.retain_mut(|m| {
            let Some(pressure) = ctx.pressure(m.sink) else {
                return false;
            };
            let SlowPolicy::Disconnect { grace } = m.policy else {
                return true;
            };
            if !pressure.is_high() {
                m.high_since = None;
                return true;
            }
            let since = *m.high_since.get_or_insert(now);
            if now.saturating_duration_since(since) >= grace {
                ctx.abort(m.sink);
                reset += 1;
                return false;
            }
            true
        });
        reset
    }
}
