//! One source, many sinks: a broker's topic, with a rule for each slow member.
//!
//! A publisher feeding many subscribers meets the same question at every member that falls
//! behind: should the publisher wait for it, should it miss frames, or should it go? The
//! answer depends on *how long* it has been behind. A member can be above its high-water
//! mark only because the publisher outran everybody for a moment (on a busy machine, or a
//! publisher faster than any reader), or because it is truly slow; only the second deserves
//! to lose frames or its connection.
//!
//! So [`FanOut`] asks each member's write queue before every frame (no system call:
//! [`crate::Context::pressure`]), and a member above high-water first **holds the frame's
//! source back**: the source is linked to it ([`crate::Context::link`]), so the source is not
//! read until the member drains to low-water. A member that only fell behind for a moment
//! loses nothing and paces the publisher. A member that stays above high-water for longer
//! than its policy's grace is *slow*, and its [`SlowPolicy`] decides:
//!
//! - [`SlowPolicy::Pause`]: lossless, no grace. The source waits for the member however long
//!   it takes, so every member goes at the pace of the slowest `Pause` member.
//! - [`SlowPolicy::Drop`]: past its grace the member stops holding the source back and misses
//!   frames, which are counted. The next frame it does get, once it has drained to
//!   low-water, is preceded by a gap notice (by default `{"op":"gap","dropped":K}`), so it
//!   knows exactly what it missed. A zero grace drops at once, never holding the source.
//! - [`SlowPolicy::Disconnect`]: past its grace the member is reset
//!   ([`crate::Context::abort`]).
//!
//! A truly slow member thus costs the others at most one grace period each time it falls
//! behind, and a member that keeps up costs them nothing. The grace restarts at each new
//! crossing (the member drained to low-water in between), so a member that drains just
//! inside every grace sets the pace of the whole topic (about (high-water - low-water) per
//! grace: 192 KiB/s with the default marks and a 1 s grace) without ever counting as slow.
//! If that pace is too slow for your topic, shorten the grace or narrow the marks; a budget
//! of held time over a window is not built in.
//!
//! **The grace needs a clock.** While a member holds the source back no frame arrives, so no
//! [`FanOut::send`] comes to notice that the grace has run out: call [`FanOut::sweep`] from a
//! timer ([`crate::Context::set_timer`]), every quarter of the grace say, and it lets go of
//! (or resets) every member past its grace, so the source reads again.
//!
//! **Memory**: a member above high-water holds its high-water mark plus the frame that took
//! it across (the source stops delivering frames as soon as it is paused; what it had
//! already read waits in its read buffer), under every policy, and a `Drop` member that was
//! let go keeps no more than that while it drains. That is one frame *per source*: each
//! source is held after its own frame is queued, so a member of a topic with several
//! publishers can hold high-water plus one frame from each. Its hard queue limit
//! (high-water + `max_frame` by default) has room for one; with several publishers of large
//! frames, raise the members' `ConnSettings::queue_limit`, or a `Pause` member whose queue
//! refuses a frame is reset (it cannot be kept whole) and a `Drop` member misses it. That
//! bound needs a source to hold back: a frame sent with no source (`send(ctx, None, ..)`)
//! goes to a member within its grace up to the member's hard queue limit.
//!
//! The fan-out's links are its own: it makes them when a member crosses high-water and
//! removes them when the member drains, is let go or leaves. Links are counted per pair, so
//! a link the application made on the same pair (or another topic's hold) stays. Members
//! whose connection closed leave the fan-out by themselves, at the next send or sweep, and
//! let go of what they held.

use std::time::{Duration, Instant};

use bytes::Bytes;

use crate::conn::ConnId;
use crate::context::Context;
use crate::write_queue::SendError;

/// What happens to a [`FanOut`] member that stays above its high-water mark. Within the
/// grace it holds the frame's source back and loses nothing (see the module docs).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SlowPolicy {
    /// The source waits for it however long it takes (lossless, no grace).
    Pause,
    /// Past `grace` it misses frames, and is told how many before the next one it gets.
    Drop {
        /// How long it may hold the source back; zero drops at once.
        grace: Duration,
    },
    /// Past `grace` it is reset.
    Disconnect {
        /// How long it may hold the source back.
        grace: Duration,
    },
}

impl SlowPolicy {
    /// How long a member above high-water may hold the source back before its policy acts:
    /// `None` for [`SlowPolicy::Pause`] (for ever).
    pub fn grace(self) -> Option<Duration> {
        match self {
            SlowPolicy::Pause => None,
            SlowPolicy::Drop { grace } | SlowPolicy::Disconnect { grace } => Some(grace),
        }
    }
}

/// What one [`FanOut::send`] did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Delivery {
    /// Members the frame was queued for.
    pub sent: usize,
    /// Members that missed it (`Drop`, past its grace).
    pub dropped: usize,
    /// Members reset by this send (`Disconnect` past its grace, or any member but a `Drop`
    /// one whose queue refused the frame: a full queue cannot be kept lossless).
    pub disconnected: usize,
    /// Whether a member above high-water holds the source back (it reads again when that
    /// member drains, or is let go at the end of its grace).
    pub paused_source: bool,
}

#[derive(Debug)]
struct Member {
    sink: ConnId,
    policy: SlowPolicy,
    /// Frames missed since the last gap notice (`Drop`).
    dropped: u64,
    /// Since when it has been above high-water, if it is, and which of its queue's crossings
    /// that is (`QueueFigures::high_water_crossings`): a member that drained and crossed again
    /// between two looks (another topic's frames, say) starts a new grace.
    high_since: Option<(Instant, u64)>,
    /// The sources it holds back (the links this fan-out made for it), while above
    /// high-water.
    holding: Vec<ConnId>,
    /// `Drop`, past its grace: it misses frames until it has drained to low-water.
    let_go: bool,
}

/// What a member's pressure says about the next frame for it.
enum Verdict {
    Deliver,
    Miss,
    Reset,
}

impl Member {
    fn new(sink: ConnId, policy: SlowPolicy) -> Member {
        Member {
            sink,
            policy,
            dropped: 0,
            high_since: None,
            holding: Vec::new(),
            let_go: false,
        }
    }

    /// It is above high-water at `now`: since when, in this crossing.
    fn high_since(&mut self, ctx: &Context<'_>, now: Instant) -> Instant {
        let crossing = ctx
            .queue_figures(self.sink)
            .map_or(0, |f| f.high_water_crossings);
        match self.high_since {
            Some((since, seen)) if seen == crossing => since,
            _ => {
                // A new crossing: a new grace, and a `Drop` member that had been let go gets
                // its frames (after its gap notice) and holds the source again.
                self.high_since = Some((now, crossing));
                self.let_go = false;
                now
            }
        }
    }

    /// Applies the policy to a member that is (or is not) above high-water at `now`.
    fn judge(&mut self, ctx: &mut Context<'_>, high: bool, now: Instant) -> Verdict {
        if !high {
            // Drained (its links have already let the sources go): a new start.
            self.release(ctx);
            self.high_since = None;
            self.let_go = false;
            return Verdict::Deliver;
        }
        let since = self.high_since(ctx, now);
        if self.let_go {
            return Verdict::Miss;
        }
        let Some(grace) = self.policy.grace() else {
            return Verdict::Deliver; // Pause: the source waits
        };
        if now.saturating_duration_since(since) < grace {
            return Verdict::Deliver; // within its grace: it holds the source back
        }
        self.release(ctx);
        if let SlowPolicy::Disconnect { .. } = self.policy {
            log::debug!("{}: above high-water for {grace:?}: reset", self.sink);
            return Verdict::Reset;
        }
        log::debug!(
            "{}: above high-water for {grace:?}: frames dropped",
            self.sink
        );
        self.let_go = true;
        Verdict::Miss
    }

    /// Holds `source` back until this member drains (a link), unless its policy drops at once.
    fn hold(&mut self, ctx: &mut Context<'_>, source: ConnId) -> bool {
        if self.policy.grace() == Some(Duration::ZERO) {
            return false;
        }
        // Links are counted (`Context::link`): link once per source held, unlink once in
        // `release`, so an application's own link on the same pair is left alone.
        if self.holding.contains(&source) {
            return true;
        }
        if !ctx.link(source, self.sink) {
            return false;
        }
        self.holding.push(source);
        true
    }

    /// Stops holding every source back.
    fn release(&mut self, ctx: &mut Context<'_>) {
        for source in self.holding.drain(..) {
            ctx.unlink(source, self.sink);
        }
    }
}

/// The members of one fan-out and their policies. See the module docs.
///
/// ```no_run
/// use std::time::Duration;
/// use highwater::bytes::Bytes;
/// use highwater::{ConnId, Context, FanOut, SlowPolicy};
///
/// fn subscribe(topic: &mut FanOut, subscriber: ConnId) {
///     topic.add(subscriber, SlowPolicy::Drop { grace: Duration::from_secs(1) });
/// }
///
/// fn publish(topic: &mut FanOut, ctx: &mut Context<'_>, publisher: ConnId, frame: Bytes) {
///     let d = topic.send(ctx, Some(publisher), frame);
///     if d.dropped > 0 {
///         log::debug!("{} slow subscribers missed a frame", d.dropped);
///     }
/// }
///
/// // From a timer, every quarter grace: the publisher may be held back, so no frame comes.
/// fn on_timer(topic: &mut FanOut, ctx: &mut Context<'_>) {
///     topic.sweep(ctx);
///     ctx.set_timer(Duration::from_millis(250), 0);
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
            if m.policy != policy {
                // A new policy judges afresh: a member let go under `Drop` and now `Pause`
                // must not go on missing frames, and a new grace starts now.
                m.policy = policy;
                m.let_go = false;
                m.high_since = None;
            }
            return false;
        }
        self.members.push(Member::new(sink, policy));
        true
    }

    /// Removes `sink`, which stops holding back any source it held. Returns true if it was a
    /// member.
    pub fn remove(&mut self, ctx: &mut Context<'_>, sink: ConnId) -> bool {
        let Some(i) = self.members.iter().position(|m| m.sink == sink) else {
            return false;
        };
        self.members.swap_remove(i).release(ctx);
        true
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
    /// `source` is the connection the frame came from, if any: the one a member above
    /// high-water holds back. Members whose connection closed are removed.
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
                // Closed, or closing: it leaves the fan-out, and lets go of the sources it
                // held. (A closing sink keeps its links until its queue drains, which for a
                // peer that reads nothing is never: no grace would end that hold.)
                m.release(ctx);
                return false;
            };
            match m.judge(ctx, pressure.is_high(), now) {
                Verdict::Deliver => {}
                Verdict::Miss => {
                    m.dropped += 1;
                    d.dropped += 1;
                    return true;
                }
                Verdict::Reset => {
                    ctx.abort(m.sink);
                    d.disconnected += 1;
                    return false;
                }
            }
            if m.dropped > 0 {
                if ctx.send_payload(m.sink, gap_notice(m.dropped)).is_err() {
                    // No room for the notice: the frame must not go ahead of it, so it is
                    // missed too, and the next notice counts it.
                    m.dropped += 1;
                    d.dropped += 1;
                    return true;
                }
                m.dropped = 0;
            }
            match ctx.send_payload(m.sink, payload.clone()) {
                Ok(after) => {
                    d.sent += 1;
                    // Now above high-water: it holds the source back until it drains (the
                    // link pauses the source at once), and its grace starts.
                    if after.is_high() {
                        m.high_since(ctx, now);
                        if let Some(src) = source {
                            d.paused_source |= m.hold(ctx, src);
                        }
                    }
                    true
                }
                Err(SendError::Closed) => {
                    m.release(ctx);
                    false
                }
                Err(e) if matches!(m.policy, SlowPolicy::Drop { .. }) => {
                    // Its hard limit (a frame with no source to hold back, say): a `Drop`
                    // member misses frames rather than its connection.
                    log::debug!("{}: fan-out frame refused ({e}): frames dropped", m.sink);
                    m.release(ctx);
                    m.let_go = true;
                    m.dropped += 1;
                    d.dropped += 1;
                    true
                }
                Err(e) => {
                    // The queue refused the frame (its hard limit): the member cannot be kept
                    // whole, so it goes.
                    log::debug!("{}: fan-out frame refused ({e}): reset", m.sink);
                    m.release(ctx);
                    ctx.abort(m.sink);
                    d.disconnected += 1;
                    false
                }
            }
        });
        d
    }

    /// Applies the policies without a frame: every member that has been above high-water for
    /// longer than its grace is let go (`Drop`: it stops holding the source back, and misses
    /// frames until it drains) or reset (`Disconnect`), so the source reads again. Call it
    /// from a timer: while a member holds the source back, no frame comes to do it. Returns
    /// how many members it let go or reset.
    pub fn sweep(&mut self, ctx: &mut Context<'_>) -> usize {
        let now = ctx.now();
        let mut acted = 0;
        self.members.retain_mut(|m| {
            let Some(pressure) = ctx.pressure(m.sink).filter(|_| ctx.is_open(m.sink)) else {
                m.release(ctx); // closed or closing: as in `send`
                return false;
            };
            let was_let_go = m.let_go;
            match m.judge(ctx, pressure.is_high(), now) {
                Verdict::Reset => {
                    ctx.abort(m.sink);
                    acted += 1;
                    false
                }
                Verdict::Miss if !was_let_go => {
                    acted += 1;
                    true
                }
                Verdict::Miss | Verdict::Deliver => true,
            }
        });
        acted
    }
}
