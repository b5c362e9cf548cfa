//! One connection: its transport, read side, write side, life state and pause reasons, as a
//! state machine whose fields only this module touches.
//!
//! A client connection and a server connection are the same thing here; only how they were
//! born differs (`outbound`).
//!
//! ## The states
//!
//! Four small machines, each an enum, make up a connection. Every transition is a method
//! named for what it means, and the life state's transitions are logged at debug level.
//!
//! ```text
//! life (ConnState):  Connecting ──connected──► Open ──begin_flushing──► Flushing ──begin_lingering──► Lingering
//!                        │                      │                          │                           │
//!                        └──────────────────────┴───────── closed ─────────┴───────────────────────────┴──► Closed
//!
//! read side:   Open ──finish_reading──► Finishing        (shutdown: close once read out)
//!                 └────┬─────────────────────┘
//!                      └──peer_finished──► PeerEof        (a read returned 0)
//!
//! write side:  Open ──close_write──► ShutWhenFlushed ──queue empty──► Shut   (FIN sent)
//!
//! pauses:      a set of reasons (`pause.rs`); reading when it is empty
//! ```
//!
//! Readiness memory (what the last event said) is `readiness.rs`; what the connection reads
//! from and writes to is `transport.rs`; the read side's methods are in `read.rs` and the
//! write side's in `write.rs`.
//!
//! The one invariant a reader of this module should keep in mind: [`Connection::interest`] is
//! the only place that decides what the connection asks of the poller, and it says:
//!
//! - **WRITABLE iff the write queue is non-empty** (or a connect is in progress). Asking for
//!   writability with nothing to write would wake the reactor for nothing.
//! - **READABLE iff the connection may read**: open, not paused for any reason, and the peer
//!   has not finished sending. A paused connection does not ignore readiness, it stops asking
//!   for it; that is what lets the kernel's receive buffer fill and the TCP window close.

mod id;
mod pause;
mod read;
mod readiness;
mod settings;
mod transport;
mod write;

#[cfg(test)]
mod tests;

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use mio::Interest;
use mio::net::TcpStream;

use crate::frame::Decoder;
use crate::handler::CloseReason;
use crate::read_buf::ReadBuf;
use crate::stats::ConnFigures;
use crate::write_queue::WriteQueue;

pub use id::ConnId;
pub use pause::{PauseReason, Paused};
pub(crate) use read::{PRESSED_CHUNK, READ_ALLOC_KEEP, READ_CHUNK, ReadOutcome};
pub(crate) use readiness::Seen;
pub use settings::ConnSettings;
pub(crate) use transport::Transport;

use pause::Pauses;
use read::ReadSide;
use readiness::Readiness;
use settings::OwnSettings;
use write::WriteSide;

/// Where a connection is in its life: the public view of the connection's life state (the
/// figures report it, and `on_close` follows `Closed`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConnState {
    /// Outbound, waiting for the non-blocking connect to finish (reported as writable).
    Connecting,
    /// Reading and writing.
    Open,
    /// Close requested: no more reading; delivering what is queued, then closing.
    Flushing,
    /// Everything was delivered and FIN sent; reading and discarding until the peer closes or
    /// the linger time ends, so that closing does not turn into a RST that destroys our last
    /// bytes in flight.
    Lingering,
    /// The socket is deregistered; the slot is freed at the end of this reactor turn.
    Closed,
}

/// The life state, with what each state carries: a graceful close's reason lives in the states
/// that have one, so it cannot be missing or left behind.
#[derive(Debug)]
enum Life {
    Connecting,
    Open,
    Flushing(CloseReason),
    Lingering(CloseReason),
    Closed,
}

impl Life {
    fn public(&self) -> ConnState {
        match self {
            Life::Connecting => ConnState::Connecting,
            Life::Open => ConnState::Open,
            Life::Flushing(_) => ConnState::Flushing,
            Life::Lingering(_) => ConnState::Lingering,
            Life::Closed => ConnState::Closed,
        }
    }
}

/// What a connection has spent of its per-turn budgets ([`crate::READS_PER_TURN`],
/// [`crate::FRAMES_PER_TURN`], [`crate::WRITES_PER_TURN`], [`crate::WRITE_BYTES_PER_TURN`])
/// in the turn it was last counted in. Kept on the connection, not in a local of the function that spends it, because one turn may
/// visit a connection more than once (its event, then the ready list; several flushes in
/// `Reactor::settle`), and the budgets are per turn, not per visit.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct TurnShare {
    turn: u64,
    pub(crate) reads: usize,
    pub(crate) frames: usize,
    pub(crate) writes: usize,
    pub(crate) bytes_written: usize,
}

/// Which of the engine's lists (`engine/conns.rs`) hold this connection, so none holds it
/// twice. Only `Conns` reads and writes these.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct Listed {
    pub(crate) ready: bool,
    pub(crate) dirty: bool,
}

/// The clocks the timeouts judge a connection by (`engine/timeouts.rs` owns their meaning).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Timing {
    /// When the last frame completed (idle timeout). One idle timer is pushed at open; it
    /// re-pushes itself while the connection lives.
    pub(crate) last_frame_at: Instant,
    /// When the peer's kernel last took bytes of ours: progress for the idle timeout, and the
    /// write-stall clock.
    pub(crate) last_write_at: Instant,
    /// Since when the queue has held bytes for a peer that exists (`None`: empty): the
    /// write-stall clock's origin when the peer has taken nothing since.
    pub(crate) stall_since: Option<Instant>,
    /// The start of the current minimum-rate window, and the bytes written when it started.
    /// A new window is not progress: only `last_write_at` is.
    pub(crate) rate_since: Instant,
    pub(crate) stall_mark: u64,
    pub(crate) stall_armed: bool,
    /// The quiet period (its start) the handler was last warned about, per timeout, so each
    /// quiet period is warned about once.
    pub(crate) idle_warned: Option<Instant>,
    pub(crate) stall_warned: Option<Instant>,
    pub(crate) opened_at: Instant,
}

/// Replies the application is computing elsewhere (`Context::work_started`), and a close that
/// waits for them.
#[derive(Debug, Default)]
struct OwedWork {
    /// How many: a graceful shutdown does not close the connection while this is above 0.
    pending: u32,
    /// The payload size each owed reply's work holds, oldest first (work finishes in order):
    /// counted in the budget until it is done.
    bytes: VecDeque<usize>,
    /// A graceful close asked for while replies were owed: it happens, for this reason, when
    /// the last of them is produced. Meanwhile nothing is delivered or read.
    close: Option<CloseReason>,
}

/// The links this connection takes part in (`engine/links.rs`): the connections whose
/// reading it pauses while its queue is above high-water (`sources`), and those whose queue
/// pauses its own reading (`sinks`, each with the number of times the pair was linked and
/// not yet unlinked: see `Engine::link`). Boxed: most connections have none.
#[derive(Debug, Default)]
pub(crate) struct Linked {
    pub(crate) sources: Vec<ConnId>,
    pub(crate) sinks: Vec<(ConnId, u32)>,
}

/// A connection's whole state. Owned by the engine's slab (`engine/conns.rs`); generic over its
/// transport so the unit tests can put a script under it (`T` is a TCP socket everywhere else).
#[derive(Debug)]
pub(crate) struct Connection<T = TcpStream> {
    id: ConnId,
    transport: T,
    peer: Option<SocketAddr>,
    outbound: bool,
    life: Life,
    read_side: ReadSide,
    write_side: WriteSide,
    pauses: Pauses,
    readiness: Readiness,
    /// What the poller is currently asked for (`None`: not registered).
    registered: Option<Interest>,
    listed: Listed,
    /// This turn's spending (see [`Connection::share`]).
    share: TurnShare,
    read_buf: ReadBuf,
    /// How much of `read_buf` is counted in the engine's budget (`engine/budget.rs`): its
    /// allocation when last counted.
    read_charged: usize,
    decoder: Decoder,
    queue: WriteQueue,
    timing: Timing,
    settings: OwnSettings,
    linked: Option<Box<Linked>>,
    work: OwedWork,
    /// The application heard `on_open` (or started the connect) and will hear `on_close`.
    /// False for connections turned away with `busy`.
    reported: bool,
    frames_in: u64,
    bytes_in: u64,
    reads: u64,
    /// The largest the read buffer's allocation has been (memory figures, and the proof that
    /// a hostile length prefix reserved nothing).
    peak_read_capacity: usize,
}

impl<T: Transport> Connection<T> {
    /// A new connection: open if accepted, connecting if outbound.
    pub(crate) fn new(
        id: ConnId,
        transport: T,
        peer: Option<SocketAddr>,
        outbound: bool,
        decoder: Decoder,
        settings: &ConnSettings,
        now: Instant,
    ) -> Connection<T> {
        Connection {
            id,
            transport,
            peer,
            outbound,
            life: if outbound {
                Life::Connecting
            } else {
                Life::Open
            },
            read_side: ReadSide::Open,
            write_side: WriteSide::Open,
            pauses: Pauses::default(),
            readiness: Readiness::new(!outbound),
            registered: None,
            listed: Listed::default(),
            share: TurnShare::default(),
            read_buf: ReadBuf::default(),
            read_charged: 0,
            decoder,
            queue: WriteQueue::new(settings.marks()),
            timing: Timing {
                last_frame_at: now,
                last_write_at: now,
                stall_since: None,
                rate_since: now,
                stall_mark: 0,
                stall_armed: false,
                idle_warned: None,
                stall_warned: None,
                opened_at: now,
            },
            settings: OwnSettings::from(settings),
            linked: None,
            work: OwedWork::default(),
            reported: true,
            frames_in: 0,
            bytes_in: 0,
            reads: 0,
            peak_read_capacity: 0,
        }
    }

    /// A connection turned away with `busy` (its frame written and FIN sent by the caller):
    /// it lingers so the frame is not destroyed by a RST, and the application never hears of it.
    pub(crate) fn turned_away(mut self) -> Connection<T> {
        self.reported = false;
        self.write_side = WriteSide::Shut;
        self.set_life(Life::Lingering(CloseReason::Closed), &"turned away: busy");
        self
    }

    // ----- who it is ---------------------------------------------------------------------

    pub(crate) fn id(&self) -> ConnId {
        self.id
    }

    #[cfg(test)]
    pub(crate) fn peer(&self) -> Option<SocketAddr> {
        self.peer
    }

    /// Opened by us (`Context::connect`), not accepted.
    pub(crate) fn outbound(&self) -> bool {
        self.outbound
    }

    /// Whether the application hears of this connection (`on_open` ... `on_close`).
    pub(crate) fn reported(&self) -> bool {
        self.reported
    }

    pub(crate) fn transport_mut(&mut self) -> &mut T {
        &mut self.transport
    }

    // ----- life ------------------------------------------------------------------------

    pub(crate) fn state(&self) -> ConnState {
        self.life.public()
    }

    /// The one place the life state changes, so every transition is a log line a reader can
    /// find, with the close reason the new state carries. Returns the state left.
    fn set_life(&mut self, next: Life, why: &dyn std::fmt::Display) -> Life {
        let (from, to) = (self.life.public(), next.public());
        if from != to {
            match &next {
                Life::Flushing(r) | Life::Lingering(r) => {
                    log::debug!("{}: {from:?} -> {to:?} ({why}; reason: {r})", self.id)
                }
                _ => log::debug!("{}: {from:?} -> {to:?} ({why})", self.id),
            }
        }
        std::mem::replace(&mut self.life, next)
    }

    /// Connecting → Open: the kernel reported the connect done, at `peer`.
    pub(crate) fn connected(&mut self, peer: SocketAddr) {
        debug_assert!(matches!(self.life, Life::Connecting));
        self.peer = Some(peer);
        self.readiness.connected();
        self.set_life(Life::Open, &"connected");
    }

    /// Open → Flushing: a graceful close starts. Nothing more is read or delivered; what is
    /// queued is still sent. The read buffer is handed back for the pool.
    pub(crate) fn begin_flushing(&mut self, reason: CloseReason) -> ReadBuf {
        debug_assert!(matches!(self.life, Life::Open));
        self.set_life(Life::Flushing(reason), &"close requested");
        std::mem::take(&mut self.read_buf)
    }

    /// Flushing → Lingering: everything was delivered and FIN sent; from now on reads only
    /// discard, until the peer closes or the linger time ends.
    pub(crate) fn begin_lingering(&mut self) {
        debug_assert!(matches!(self.life, Life::Flushing(_)));
        let reason = self.take_close_reason();
        self.write_side = WriteSide::Shut;
        // A decoder left in the middle of a large frame would size the discarding reads for
        // the rest of it (up to `max_frame`), with no budget grant: start it afresh, so they
        // are ordinary read chunks.
        self.decoder = Decoder::new(self.decoder.max_frame());
        self.set_life(Life::Lingering(reason), &"queue delivered, FIN sent");
    }

    /// The reason a graceful close (Flushing or Lingering) was started for; `Closed` if none.
    pub(crate) fn take_close_reason(&mut self) -> CloseReason {
        match &mut self.life {
            Life::Flushing(r) | Life::Lingering(r) => std::mem::replace(r, CloseReason::Closed),
            _ => CloseReason::Closed,
        }
    }

    /// Any state → Closed, for `reason`. Returns the state left, so the engine can count it.
    pub(crate) fn closed(&mut self, reason: &CloseReason) -> ConnState {
        self.registered = None;
        self.set_life(Life::Closed, reason).public()
    }

    /// Whether the application may queue frames (open, or still connecting).
    pub(crate) fn accepts_sends(&self) -> bool {
        matches!(self.life, Life::Open | Life::Connecting)
    }

    /// Whether buffered frames may be handed to the application now.
    pub(crate) fn may_deliver(&self) -> bool {
        matches!(self.life, Life::Open) && self.pauses.is_reading() && self.work.close.is_none()
    }

    // ----- pauses ----------------------------------------------------------------------

    pub(crate) fn paused(&self) -> Paused {
        self.pauses.reasons()
    }

    /// Adds a pause reason. Returns true if reading was allowed and now is not.
    pub(crate) fn pause(&mut self, reason: PauseReason, now: Instant) -> bool {
        let before = self.pauses.reasons();
        let stopped = self.pauses.add(reason, now);
        if stopped {
            log::debug!("{}: pause reading ({reason:?})", self.id);
        } else if !before.contains(reason) {
            log::debug!("{}: also paused by {reason:?} ({before})", self.id);
        }
        stopped
    }

    /// Removes a pause reason. Returns true if reading was not allowed and now is.
    pub(crate) fn resume(&mut self, reason: PauseReason, now: Instant) -> bool {
        let had = self.pauses.reasons().contains(reason);
        if !self.pauses.remove(reason, now) {
            if had {
                let left = self.pauses.reasons();
                log::debug!("{}: {reason:?} cleared, still {left}", self.id);
            }
            return false;
        }
        // Time spent paused by us is not the peer's idleness.
        self.timing.last_frame_at = now;
        log::debug!("{}: resume reading ({reason:?} cleared)", self.id);
        true
    }

    // ----- the poller ------------------------------------------------------------------

    /// What to ask the poller for. See the module docs: this is the only place it is decided.
    pub(crate) fn interest(&self) -> Option<Interest> {
        let read = match self.life {
            Life::Open => {
                self.pauses.is_reading()
                    && self.read_side != ReadSide::PeerEof
                    && self.work.close.is_none()
            }
            Life::Lingering(_) => self.read_side != ReadSide::PeerEof,
            Life::Connecting | Life::Flushing(_) | Life::Closed => false,
        };
        let write = match self.life {
            Life::Connecting => true,
            Life::Closed => false,
            _ => !self.queue.is_empty(),
        };
        match (read, write) {
            (true, true) => Some(Interest::READABLE | Interest::WRITABLE),
            (true, false) => Some(Interest::READABLE),
            (false, true) => Some(Interest::WRITABLE),
            (false, false) => None,
        }
    }

    /// What the poller is asked for now (`None`: not registered).
    pub(crate) fn registered(&self) -> Option<Interest> {
        self.registered
    }

    pub(crate) fn set_registered(&mut self, interest: Option<Interest>) {
        self.registered = interest;
    }

    /// Records what a poller event says (see `readiness.rs`).
    pub(crate) fn on_event(&mut self, seen: Seen) {
        self.readiness.on_event(seen);
    }

    /// The socket may have more to read (the last event said so and no read said otherwise).
    pub(crate) fn readable(&self) -> bool {
        self.readiness.readable()
    }

    #[cfg(test)]
    /// The socket may take more bytes.
    pub(crate) fn writable(&self) -> bool {
        self.readiness.writable()
    }

    pub(crate) fn listed(&mut self) -> &mut Listed {
        &mut self.listed
    }

    /// What this connection has spent in turn `turn` (the reactor's turn count); a new turn
    /// starts from nothing, which is all the resetting the budgets need.
    pub(crate) fn share(&mut self, turn: u64) -> &mut TurnShare {
        if self.share.turn != turn {
            self.share = TurnShare {
                turn,
                ..TurnShare::default()
            };
        }
        &mut self.share
    }

    // ----- clocks and owed work ----------------------------------------------------------

    /// Restarts the write-stall clock at `now`, if the queue holds bytes: the queue starts
    /// waiting for a peer now (its first bytes, or a connect that just completed, before
    /// which no peer could take anything).
    pub(crate) fn restart_write_clock(&mut self, now: Instant) {
        if self.queue.is_empty() && self.timing.stall_since.is_none() {
            return;
        }
        let written = self.queue.figures().bytes_written;
        let t = &mut self.timing;
        t.stall_since = Some(now);
        t.rate_since = now;
        t.stall_mark = written;
    }

    pub(crate) fn timing(&self) -> &Timing {
        &self.timing
    }

    pub(crate) fn timing_mut(&mut self) -> &mut Timing {
        &mut self.timing
    }

    pub(crate) fn work_pending(&self) -> u32 {
        self.work.pending
    }

    /// One more reply owed, whose work holds `holds` payload bytes.
    pub(crate) fn work_started(&mut self, holds: usize) {
        self.work.pending = self.work.pending.saturating_add(1);
        self.work.bytes.push_back(holds);
    }

    /// The oldest owed reply was produced. Returns the payload bytes its work held.
    pub(crate) fn work_finished(&mut self) -> usize {
        self.work.pending = self.work.pending.saturating_sub(1);
        self.work.bytes.pop_front().unwrap_or(0)
    }

    /// Payload bytes held by work in progress.
    pub(crate) fn work_bytes(&self) -> usize {
        self.work.bytes.iter().sum()
    }

    /// Forgets every owed reply (the connection is closing for good). Returns the bytes held.
    pub(crate) fn forget_work(&mut self) -> usize {
        self.work.bytes.drain(..).sum()
    }

    /// A close waits for the owed replies (see [`OwedWork`]). The first reason stands.
    pub(crate) fn close_after_work(&mut self, reason: CloseReason) {
        if self.work.close.is_none() {
            log::debug!(
                "{}: close waits for {} replies owed",
                self.id,
                self.work.pending
            );
            self.work.close = Some(reason);
        }
    }

    /// Whether a close waits for owed replies.
    pub(crate) fn closing_after_work(&self) -> bool {
        self.work.close.is_some()
    }

    /// The close that waited for owed replies, once none is owed.
    pub(crate) fn take_close_after_work(&mut self) -> Option<CloseReason> {
        if self.work.pending > 0 {
            return None;
        }
        self.work.close.take()
    }

    // ----- settings and links ------------------------------------------------------------

    /// This connection's settings (see `settings.rs`).
    pub(crate) fn settings(&self) -> ConnSettings {
        let marks = self.queue.marks();
        ConnSettings {
            high_water: marks.high,
            low_water: marks.low,
            queue_limit: marks.limit,
            pause_reads_above_high_water: self.settings.pause_reads_above_high_water,
            idle_timeout: self.settings.idle_timeout,
            write_timeout: self.settings.write_timeout,
        }
    }

    /// Replaces the settings (already validated). The queue's pressure is judged again against
    /// the new marks (`WriteQueue::set_marks`).
    pub(crate) fn set_settings(&mut self, settings: &ConnSettings) {
        self.queue.set_marks(settings.marks());
        self.settings = OwnSettings::from(settings);
    }

    pub(crate) fn pauses_above_high_water(&self) -> bool {
        self.settings.pause_reads_above_high_water
    }

    pub(crate) fn idle_timeout(&self) -> Option<Duration> {
        self.settings.idle_timeout
    }

    pub(crate) fn write_timeout(&self) -> Option<Duration> {
        self.settings.write_timeout
    }

    /// The links this connection takes part in, if any.
    pub(crate) fn linked(&self) -> Option<&Linked> {
        self.linked.as_deref()
    }

    /// The links, made on first use.
    pub(crate) fn linked_mut(&mut self) -> &mut Linked {
        self.linked.get_or_insert_with(Box::default)
    }

    /// The links, if it has any (without making them).
    pub(crate) fn linked_mut_if_any(&mut self) -> Option<&mut Linked> {
        self.linked.as_deref_mut()
    }

    /// Takes the links away (the connection is closing for good).
    pub(crate) fn take_linked(&mut self) -> Option<Box<Linked>> {
        self.linked.take()
    }

    pub(crate) fn frames_in(&self) -> u64 {
        self.frames_in
    }

    pub(crate) fn queue(&self) -> &WriteQueue {
        &self.queue
    }

    pub(crate) fn queue_mut(&mut self) -> &mut WriteQueue {
        &mut self.queue
    }
}

impl Connection<TcpStream> {
    /// Makes the coming close a reset: `SO_LINGER` with a zero timeout turns `close(2)` into
    /// a RST. The kernel drops what it still holds for the peer at once (megabytes, for a
    /// slow reader) and the peer's next read fails with "connection reset" instead of
    /// working through those bytes before seeing an end of stream that looks like success.
    /// For closes that discard data anyway; a graceful close must never do this.
    pub(crate) fn reset_on_close(&self) {
        if let Err(e) = socket2::SockRef::from(&self.transport).set_linger(Some(Duration::ZERO)) {
            // Without it the close is a FIN: slower for the peer to learn, still a close.
            log::debug!("{}: SO_LINGER 0 not set: {e}", self.id);
        }
    }

    /// The figures a user can read at any time.
    pub(crate) fn figures(&self, now: Instant) -> ConnFigures {
        let q = self.queue.figures();
        let marks = self.queue.marks();
        ConnFigures {
            id: self.id,
            peer: self.peer,
            outbound: self.outbound,
            state: self.state(),
            reading: self.pauses.reasons(),
            queued_bytes: q.queued,
            high_water: marks.high,
            low_water: marks.low,
            queue_limit: marks.limit,
            peak_queued_bytes: q.peak,
            high_water_crossings: q.high_water_crossings,
            drain_events: q.drains,
            frames_out: q.frames,
            bytes_queued: q.bytes_queued,
            bytes_out: q.bytes_written,
            writes: q.writes,
            frames_in: self.frames_in,
            bytes_in: self.bytes_in,
            reads: self.reads,
            read_buffered_bytes: self.read_buf.len(),
            read_buffer_capacity: self.read_buf.capacity(),
            peak_read_buffer_capacity: self.peak_read_capacity,
            write_buffer_capacity: self.queue.heap_bytes(),
            readable_interest: self.registered.is_some_and(|i| i.is_readable()),
            writable_interest: self.registered.is_some_and(|i| i.is_writable()),
            kernel: if matches!(self.life, Life::Closed) {
                crate::kernel::KernelFigures::default()
            } else {
                crate::kernel::kernel_figures(&self.transport)
            },
            paused_time: self.pauses.time(now),
            age: now.saturating_duration_since(self.timing.opened_at),
        }
    }
}
