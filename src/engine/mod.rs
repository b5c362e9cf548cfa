//! The reactor's state, and every operation on it that does not call the application.
//!
//! The [`crate::Reactor`] owns an `Engine` and the application's handler side by side. The
//! engine never calls the handler: whatever the application must hear about (a connection
//! opened, a queue drained, a connection closed) becomes a [`Notice`], and the reactor
//! delivers notices after each step. That keeps callbacks from nesting, and lets the
//! [`crate::Context`] a handler receives be a plain `&mut Engine`.
//!
//! Invariants kept here:
//! - A slab slot is freed only at the end of a reactor turn ([`Engine::reap`]), never while
//!   the turn's events are being handled, so a stale event can never reach a new tenant.
//!   Every list that outlives a step (ready, dirty) holds [`ConnId`]s, checked by generation.
//! - Every connection whose queue, pause state or life state changed this turn is in the
//!   dirty list; before the reactor sleeps, `Engine::flush_dirty` (`flush.rs`) writes what it
//!   can and re-syncs poller interest for each of them, in one place (`Engine::sync_interest`;
//!   the one exception is `Engine::teardown`, which deregisters a closing socket at once).
//! - `queued` is the sum of every connection's queue length, and `read_held` the sum of their
//!   counted read buffers (`budget.rs`).

pub(crate) mod accept;
pub(crate) mod budget;
mod flush;
mod shutdown;
mod timeouts;

use std::collections::VecDeque;
use std::io;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use mio::net::TcpListener;
use mio::{Poll, Token, Waker};
use serde::Serialize;
use slab::Slab;

use crate::engine::budget::charge_read;

use crate::buf_pool::BufPool;
use crate::config::Config;
use crate::conn::{ConnId, ConnState, Connection, PauseReason};
use crate::frame::FrameError;
use crate::handle::{self, Handle, Inbox};
use crate::handler::CloseReason;
use crate::reply::ErrorReply;
use crate::stats::{ConnFigures, ReactorFigures};
use crate::timer::{Due, TimerId, Timers};
use crate::write_queue::{Pressure, QueueFigures, SendError, WriteQueue};

/// The waker's token; slab keys never get this high.
pub(crate) const WAKER: Token = Token(usize::MAX);
/// The signal pipe's token.
pub(crate) const SIGNALS: Token = Token(usize::MAX - 1);

/// Commands a handle may have waiting before senders are told the channel is full.
const COMMAND_CAPACITY: usize = 4096;

/// Something the application must be told, delivered by the reactor after the current step.
#[derive(Debug)]
pub(crate) enum Notice {
    Open(ConnId),
    Drain(ConnId),
    PeerShutdown(ConnId),
    Closed(ConnId, CloseReason),
    Timer(TimerId, u64),
    Warning(ConnId, crate::handler::TimeoutWarning),
}

/// A listening socket.
#[derive(Debug)]
pub(crate) struct Listener {
    pub(crate) socket: TcpListener,
    /// Shutting down: deregistered, freed at the end of the turn.
    pub(crate) closed: bool,
    /// Deregistered after an accept failure; a timer re-registers it.
    pub(crate) backing_off: bool,
}

/// What occupies a slab slot.
///
/// Connections are stored inline: almost every slot holds one, so boxing them to shrink the
/// rare listener slot would add an allocation and a pointer chase per connection for nothing.
#[derive(Debug)]
#[allow(clippy::large_enum_variant)]
pub(crate) enum Slot {
    Listener(Listener),
    Conn(Connection),
}

/// Whether the reactor is serving, finishing, or done.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum RunState {
    Running,
    /// Not accepting; connections finish what they have; dropped at `deadline` (`None`: a
    /// grace too long to represent, so no deadline).
    ShuttingDown {
        deadline: Option<Instant>,
    },
    Stopped,
}

/// Counters for [`ReactorFigures`].
#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub(crate) accepted: u64,
    pub(crate) rejected_busy: u64,
    pub(crate) closed: u64,
    pub(crate) frames_in: u64,
    pub(crate) invalid_frames: u64,
    pub(crate) turns: u64,
    pub(crate) accept_errors: u64,
    /// Accepted connections handed to another reactor of the group.
    pub(crate) handed_out: u64,
    /// Every `recv` and `writev` attempted, including those that returned `WouldBlock`.
    pub(crate) recv_calls: u64,
    pub(crate) writev_calls: u64,
}

/// The reactor's state. See the module docs.
pub(crate) struct Engine {
    pub(crate) poll: Poll,
    pub(crate) config: Config,
    pub(crate) slots: Slab<Slot>,
    generation: u32,
    /// In a group: the generation counter every reactor of the group draws from, so no two
    /// connections of the group ever carry the same generation (see `share_generations`).
    group_generation: Option<Arc<AtomicU32>>,
    /// The time at the start of this turn; one `Instant::now()` per wake-up, not per frame.
    pub(crate) now: Instant,
    pub(crate) timers: Timers,
    /// Connections that still have input to handle but ran out of budget this turn.
    pub(crate) ready: VecDeque<ConnId>,
    /// Connections to flush and re-sync before sleeping.
    pub(crate) dirty: Vec<ConnId>,
    /// Connections that spent their write budget ([`crate::WRITES_PER_TURN`] calls or
    /// [`crate::WRITE_BYTES_PER_TURN`] bytes) with bytes
    /// queued and the socket still writable: no event will come for them, so the next turn
    /// marks them dirty again (`Engine::take_carried`) and the poll before it does not sleep.
    pub(crate) carried: Vec<ConnId>,
    /// Slots to free at the end of the turn.
    pub(crate) dead: Vec<usize>,
    pub(crate) notices: VecDeque<Notice>,
    pub(crate) pool: BufPool,
    handle: Handle,
    pub(crate) commands: Inbox,
    /// The command channel may hold more than one turn's share.
    pub(crate) commands_pending: bool,
    /// What is left of this turn's share of commands (`COMMANDS_PER_TURN`, reset each turn).
    pub(crate) commands_left: usize,
    pub(crate) run: RunState,
    pub(crate) signals: Option<(signal_hook_mio::v1_0::Signals, Duration)>,
    /// Connections counted against `max_connections` (connecting, open, flushing).
    pub(crate) open: usize,
    pub(crate) lingering: usize,
    /// Bytes queued across all connections.
    pub(crate) queued: usize,
    /// The most ever queued across all connections.
    pub(crate) peak_queued: usize,
    /// Read-buffer bytes held across all connections (each connection's `read_charged`).
    pub(crate) read_held: usize,
    /// The most ever held (queued + read buffers) across all connections.
    pub(crate) peak_held: usize,
    /// The budget binds: connections holding more than `fair_share` are paused (`budget.rs`).
    pub(crate) budget_paused: bool,
    /// The budget divided among the connections holding memory when it last bound.
    pub(crate) fair_share: usize,
    /// What was held at that moment; growing by another eighth of the budget shares anew.
    pub(crate) budget_scanned_at: usize,
    /// The one connection allowed to overdraw the budget to finish a large frame, and its
    /// frame count when granted: the grant ends with that frame.
    pub(crate) overdraft: Option<(ConnId, u64)>,
    /// Connections waiting for room to read a large frame, first come first served.
    pub(crate) read_waiters: VecDeque<ConnId>,
    /// Payload bytes held by work started elsewhere (each connection's `work_bytes`).
    pub(crate) work_held: usize,
    /// The message being handed to the application now, and its payload size: what work
    /// started during that callback holds.
    pub(crate) delivering: Option<(ConnId, usize)>,
    pub(crate) counters: Counters,
    /// Accept failures are logged at most once a second.
    /// The budget's binding warnings, at most one a second (`budget.rs`).
    pub(crate) budget_log: crate::engine::accept::LogLimiter,
    pub(crate) accept_log: crate::engine::accept::LogLimiter,
    /// The other reactors of a group: accepted connections are handed out round-robin among
    /// them and this one; shutdowns and stops are passed on.
    pub(crate) peers: Vec<Handle>,
    pub(crate) next_peer: usize,
    /// In a group: open connections across every reactor, so `max_connections` holds for the
    /// process. Touched when a connection opens or closes, never per message.
    pub(crate) group_open: Option<Arc<AtomicUsize>>,
}

/// Finds a live connection by id, checking the generation. A free function over the slab
/// (not a method) so callers can hold it while touching the engine's other fields.
pub(crate) fn conn_mut(slots: &mut Slab<Slot>, id: ConnId) -> Option<&mut Connection> {
    match slots.get_mut(id.index()) {
        Some(Slot::Conn(c)) if c.id == id && c.state() != ConnState::Closed => Some(c),
        _ => None,
    }
}

/// Keeps the reactor's open count, and the group's if there is one. A free function so it can
/// run while a connection is borrowed from the slab.
fn count_open(open: &mut usize, group: Option<&AtomicUsize>, opened: bool) {
    if opened {
        *open += 1;
    } else {
        *open -= 1;
    }
    if let Some(n) = group {
        if opened {
            n.fetch_add(1, Ordering::Relaxed);
        } else {
            n.fetch_sub(1, Ordering::Relaxed);
        }
    }
}

pub(crate) fn mark_dirty(dirty: &mut Vec<ConnId>, conn: &mut Connection) {
    if !conn.in_dirty {
        conn.in_dirty = true;
        dirty.push(conn.id);
    }
}

pub(crate) fn mark_ready(ready: &mut VecDeque<ConnId>, conn: &mut Connection) {
    if !conn.in_ready {
        conn.in_ready = true;
        ready.push_back(conn.id);
    }
}

impl Engine {
    pub(crate) fn new(config: Config) -> io::Result<Engine> {
        config
            .validate()
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
        let poll = Poll::new()?;
        let waker = Arc::new(Waker::new(poll.registry(), WAKER)?);
        let (handle, commands) = handle::channel(
            waker,
            COMMAND_CAPACITY,
            config.queue_budget,
            config.max_frame,
        );
        Ok(Engine {
            poll,
            config,
            slots: Slab::new(),
            generation: 0,
            group_generation: None,
            now: Instant::now(),
            timers: Timers::default(),
            ready: VecDeque::new(),
            dirty: Vec::new(),
            carried: Vec::new(),
            dead: Vec::new(),
            notices: VecDeque::new(),
            pool: BufPool::default(),
            handle,
            commands,
            commands_pending: false,
            commands_left: crate::reactor::COMMANDS_PER_TURN,
            run: RunState::Running,
            signals: None,
            open: 0,
            lingering: 0,
            queued: 0,
            peak_queued: 0,
            read_held: 0,
            peak_held: 0,
            budget_paused: false,
            fair_share: 0,
            budget_scanned_at: 0,
            overdraft: None,
            read_waiters: VecDeque::new(),
            work_held: 0,
            delivering: None,
            counters: Counters::default(),
            accept_log: Default::default(),
            budget_log: crate::engine::accept::LogLimiter::default(),
            peers: Vec::new(),
            next_peer: 0,
            group_open: None,
        })
    }

    /// Open connections counted against `max_connections`: this reactor's, or the group's.
    pub(crate) fn open_connections(&self) -> usize {
        self.group_open
            .as_ref()
            .map_or(self.open, |n| n.load(Ordering::Relaxed))
    }

    /// One more (or one fewer) connection counted against `max_connections`.
    pub(crate) fn count_open(&mut self, opened: bool) {
        count_open(&mut self.open, self.group_open.as_deref(), opened);
    }

    pub(crate) fn handle(&self) -> Handle {
        self.handle.clone()
    }

    /// Draws this reactor's generations from a counter shared by the whole group, so that no
    /// two reactors hand out the same `ConnId` whatever their number (until 2^32 connections
    /// of the group wrap the counter, as for one reactor alone), and an id used on the wrong
    /// reactor's handle is refused as stale instead of reaching a stranger. One atomic add per
    /// connection opened, never per message. (Ranges carved out of the `u32` per reactor would
    /// overlap once there are more reactors than ranges.)
    pub(crate) fn share_generations(&mut self, counter: Arc<AtomicU32>) {
        self.group_generation = Some(counter);
    }

    pub(crate) fn next_generation(&mut self) -> u32 {
        self.generation = match &self.group_generation {
            Some(shared) => shared.fetch_add(1, Ordering::Relaxed).wrapping_add(1),
            None => self.generation.wrapping_add(1),
        };
        self.generation
    }

    /// After a panic unwound out of this reactor's loop: its connections are gone with it, so
    /// the group's open count gives back this reactor's share.
    pub(crate) fn abandon_group_share(&mut self) {
        if let Some(n) = &self.group_open {
            n.fetch_sub(self.open, Ordering::Relaxed);
        }
        self.open = 0;
    }

    pub(crate) fn conn(&mut self, id: ConnId) -> Option<&mut Connection> {
        conn_mut(&mut self.slots, id)
    }

    pub(crate) fn conn_ref(&self, id: ConnId) -> Option<&Connection> {
        self.conn_even_closed(id)
            .filter(|c| c.state() != ConnState::Closed)
    }

    /// Like `conn_ref`, but also finds a connection closed this turn (its slot is freed at
    /// the end of the turn), so `on_close` can still read its last figures.
    fn conn_even_closed(&self, id: ConnId) -> Option<&Connection> {
        match self.slots.get(id.index()) {
            Some(Slot::Conn(c)) if c.id == id => Some(c),
            _ => None,
        }
    }

    /// Schedules a connection for flush and interest re-sync before the reactor sleeps.
    pub(crate) fn touch(&mut self, id: ConnId) {
        if let Some(conn) = conn_mut(&mut self.slots, id) {
            mark_dirty(&mut self.dirty, conn);
        }
    }

    /// Schedules a connection to be read again this turn or the next, without an event.
    pub(crate) fn defer(&mut self, id: ConnId) {
        if let Some(conn) = conn_mut(&mut self.slots, id) {
            mark_ready(&mut self.ready, conn);
        }
    }

    // ----- sending: the application's end of the chain -------------------------------------

    /// Encodes `msg` into `id`'s write queue.
    pub(crate) fn send_json<T: Serialize + ?Sized>(
        &mut self,
        id: ConnId,
        msg: &T,
    ) -> Result<Pressure, SendError> {
        let max = self.config.max_frame;
        self.push(id, |q| q.push_json(msg, max))
    }

    /// Queues `payload` (already JSON text) on `id`.
    pub(crate) fn send_payload(
        &mut self,
        id: ConnId,
        payload: Bytes,
    ) -> Result<Pressure, SendError> {
        let max = self.config.max_frame;
        self.push(id, |q| q.push_payload(payload, max))
    }

    /// Queues a frame and applies the water marks: this is where the application's write
    /// queue grows, and where, past the high-water mark, the connection stops reading so a
    /// peer that does not read its replies cannot make us buffer them without bound.
    fn push(
        &mut self,
        id: ConnId,
        op: impl FnOnce(&mut WriteQueue) -> Result<Pressure, SendError>,
    ) -> Result<Pressure, SendError> {
        let now = self.now;
        let Some(conn) = conn_mut(&mut self.slots, id) else {
            return Err(SendError::Closed);
        };
        if !conn.accepts_sends() {
            return Err(SendError::Closed);
        }
        let before = conn.queue.len();
        let pressure = op(&mut conn.queue)?;
        self.queued += conn.queue.len() - before;
        if before == 0 {
            // The queue starts waiting for the peer now; see `check_write_stall`.
            conn.stall_since = Some(now);
            conn.stall_mark = conn.queue.figures().bytes_written;
            if let Some(timeout) = self.config.write_timeout {
                if !conn.stall_armed {
                    conn.stall_armed = true;
                    self.timers
                        .push_after(now, timeout / 2, Due::WriteStall(id));
                }
            }
        }
        if pressure.is_high()
            && self.config.pause_reads_above_high_water
            && conn.state() == ConnState::Open
        {
            conn.pause(PauseReason::WriteQueue, now);
        }
        mark_dirty(&mut self.dirty, conn);
        self.peak_queued = self.peak_queued.max(self.queued);
        self.apply_budget(id);
        Ok(pressure)
    }

    /// A framing error is fatal for the stream: reply if possible, then close.
    pub(crate) fn frame_error(&mut self, id: ConnId, error: FrameError) {
        log::info!("{id}: {error}");
        let reason = match error {
            FrameError::TooLarge { limit, got } => {
                if let Err(e) = self.send_json(id, &ErrorReply::frame_too_large(limit, got)) {
                    log::debug!("{id}: frame_too_large reply not queued: {e}");
                }
                CloseReason::FrameTooLarge { limit, got }
            }
            FrameError::Truncated { missing } => CloseReason::Truncated { missing },
        };
        self.close(id, reason);
    }

    // ----- pausing: the consumer's end of the chain ----------------------------------------

    /// Stops reading `id` for `reason`. With READABLE interest gone, unread bytes stay in the
    /// kernel's receive buffer, which fills, which closes the TCP window: the peer's sends
    /// back up into *its* write queue. That is how a slow consumer pushes back.
    pub(crate) fn pause(&mut self, id: ConnId, reason: PauseReason) -> bool {
        let now = self.now;
        let Some(conn) = conn_mut(&mut self.slots, id) else {
            return false;
        };
        let changed = conn.pause(reason, now);
        mark_dirty(&mut self.dirty, conn);
        changed
    }

    /// Removes a pause reason; if none is left, reading resumes. Bytes that arrived while
    /// paused produced no event (the readiness edge came and went, or never came because we
    /// did not ask), so the connection goes on the ready list to be read without one.
    pub(crate) fn resume(&mut self, id: ConnId, reason: PauseReason) -> bool {
        let now = self.now;
        let Some(conn) = conn_mut(&mut self.slots, id) else {
            return false;
        };
        let resumed = conn.resume(reason, now);
        if resumed && conn.has_pending_input() {
            mark_ready(&mut self.ready, conn);
        }
        mark_dirty(&mut self.dirty, conn);
        resumed
    }

    // ----- closing ---------------------------------------------------------------------

    /// Graceful close: stop reading, deliver everything queued, send FIN, linger, close.
    /// The first reason given is the one reported.
    pub(crate) fn close(&mut self, id: ConnId, reason: CloseReason) {
        let Some(conn) = conn_mut(&mut self.slots, id) else {
            return;
        };
        match conn.state() {
            ConnState::Open => {}
            ConnState::Connecting => return self.teardown(id, reason),
            ConnState::Flushing | ConnState::Lingering | ConnState::Closed => return,
        }
        // After the peer's half-close, closing ends a conversation the peer ended.
        let reason = match reason {
            CloseReason::Closed if conn.peer_eof => CloseReason::PeerClosed,
            other => other,
        };
        if conn.work_pending > 0 {
            // Replies are still being computed elsewhere (`Workers`); a closing connection
            // refuses sends, so they would be lost. Stop delivering and reading now, and
            // close when the last of them is produced (`Engine::work_finished`).
            if conn.close_after_work.is_none() {
                log::debug!("{id}: close waits for {} replies owed", conn.work_pending);
                conn.close_after_work = Some(reason);
            }
            mark_dirty(&mut self.dirty, conn);
            return;
        }
        conn.close_reason = Some(reason);
        conn.set_state(ConnState::Flushing, "close requested");
        self.pool.put(std::mem::take(&mut conn.read_buf));
        charge_read(&mut self.read_held, conn);
        mark_dirty(&mut self.dirty, conn);
    }

    /// Half-close: send FIN once everything queued is delivered; keep reading.
    pub(crate) fn close_write(&mut self, id: ConnId) {
        if let Some(conn) = conn_mut(&mut self.slots, id) {
            conn.shutdown_write_when_flushed = true;
            mark_dirty(&mut self.dirty, conn);
        }
    }

    /// Called when a graceful close has delivered everything.
    pub(crate) fn finish_close(&mut self, id: ConnId) {
        let now = self.now;
        let linger = self.config.linger;
        let Some(conn) = conn_mut(&mut self.slots, id) else {
            return;
        };
        let reason = conn.close_reason.take().unwrap_or(CloseReason::Closed);
        // If the peer already finished sending there is nothing unread to turn our close
        // into a RST, and if lingering is off there is nothing to wait for.
        if conn.peer_eof || linger.is_zero() {
            return self.teardown(id, reason);
        }
        if let Err(e) = conn.stream.shutdown(std::net::Shutdown::Write) {
            log::debug!("{id}: shutdown(Write) failed: {e}");
            return self.teardown(id, reason);
        }
        conn.write_shut = true;
        conn.close_reason = Some(reason);
        // Lingering reads only to discard. A decoder left in the middle of a large frame
        // would size those reads for the rest of it (up to `max_frame`), with no budget
        // grant: start it afresh, so they are ordinary read chunks.
        conn.decoder = crate::frame::Decoder::new(conn.decoder.max_frame());
        conn.set_state(ConnState::Lingering, "queue delivered, FIN sent");
        count_open(&mut self.open, self.group_open.as_deref(), false);
        self.lingering += 1;
        self.timers.push_after(now, linger, Due::Linger(id));
        if conn.readable {
            mark_ready(&mut self.ready, conn);
        }
        mark_dirty(&mut self.dirty, conn);
    }

    /// Immediate close: deregister, discard the queue, report `reason`. The slot is freed at
    /// the end of the turn.
    pub(crate) fn teardown(&mut self, id: ConnId, reason: CloseReason) {
        let Some(conn) = conn_mut(&mut self.slots, id) else {
            return;
        };
        self.queued -= conn.queue.clear();
        if conn.registered.take().is_some() {
            // Errors here mean the fd is already gone from the poller; nothing to undo.
            let _ = self.poll.registry().deregister(&mut conn.stream);
        }
        match conn.state() {
            ConnState::Lingering => self.lingering -= 1,
            ConnState::Closed => return,
            _ => count_open(&mut self.open, self.group_open.as_deref(), false),
        }
        conn.set_state(ConnState::Closed, reason.name());
        self.work_held -= conn.work_bytes.drain(..).sum::<usize>();
        // Its idle, stall and linger entries would otherwise wait in the heap until due.
        self.timers.cancel_conn(id);
        self.pool.put(std::mem::take(&mut conn.read_buf));
        charge_read(&mut self.read_held, conn);
        self.counters.closed += 1;
        if conn.reported {
            self.notices.push_back(Notice::Closed(id, reason));
        }
        self.dead.push(id.index());
    }

    /// Frees the slots of connections and listeners closed this turn. Runs once per turn,
    /// after every event of the batch was handled (see the module docs).
    pub(crate) fn reap(&mut self) {
        for key in self.dead.drain(..) {
            let done = match self.slots.get(key) {
                Some(Slot::Conn(c)) => c.state() == ConnState::Closed,
                Some(Slot::Listener(l)) => l.closed,
                None => false,
            };
            if done {
                self.slots.remove(key);
            }
        }
    }

    // ----- input side helpers used by the reactor's read path ------------------------------

    /// The peer shut down its sending side.
    pub(crate) fn peer_eof(&mut self, id: ConnId) {
        let Some(conn) = conn_mut(&mut self.slots, id) else {
            return;
        };
        conn.peer_eof = true;
        conn.readable = false;
        mark_dirty(&mut self.dirty, conn);
        if conn.state() == ConnState::Lingering {
            let reason = conn.close_reason.take().unwrap_or(CloseReason::Closed);
            return self.teardown(id, reason);
        }
        if let Some(e) = conn.decoder.truncation(&conn.read_buf) {
            return self.frame_error(id, e);
        }
        self.notices.push_back(Notice::PeerShutdown(id));
    }

    /// Reads and discards while lingering; closes when the peer does.
    pub(crate) fn linger_read(&mut self, id: ConnId) {
        let turn = self.counters.turns;
        loop {
            let Some(conn) = conn_mut(&mut self.slots, id) else {
                return;
            };
            if conn.state() != ConnState::Lingering {
                return;
            }
            // The same per-turn read budget as the read path (`Connection::share`).
            if conn.share(turn).reads >= crate::reactor::READS_PER_TURN {
                break;
            }
            conn.share(turn).reads += 1;
            if conn.read_buf.capacity() == 0 {
                conn.read_buf = self.pool.take();
            }
            let outcome = conn.read_some();
            self.counters.recv_calls += 1;
            conn.read_buf.clear();
            charge_read(&mut self.read_held, conn);
            match outcome {
                crate::conn::ReadOutcome::Data { .. } => {}
                crate::conn::ReadOutcome::WouldBlock => {
                    conn.readable = false;
                    self.pool.put(std::mem::take(&mut conn.read_buf));
                    charge_read(&mut self.read_held, conn);
                    return;
                }
                crate::conn::ReadOutcome::Eof | crate::conn::ReadOutcome::Error(_) => {
                    let reason = conn.close_reason.take().unwrap_or(CloseReason::Closed);
                    return self.teardown(id, reason);
                }
            }
        }
        self.defer(id);
    }

    // ----- figures ---------------------------------------------------------------------

    pub(crate) fn queue_figures(&self, id: ConnId) -> Option<QueueFigures> {
        self.conn_even_closed(id).map(|c| c.queue.figures())
    }

    pub(crate) fn conn_figures(&self, id: ConnId) -> Option<ConnFigures> {
        self.conn_even_closed(id).map(|c| c.figures(self.now))
    }

    pub(crate) fn figures(&self) -> ReactorFigures {
        let (mut paused, mut slots) = (0, 0);
        for (_, slot) in self.slots.iter() {
            if let Slot::Conn(c) = slot {
                slots += 1;
                if c.state() == ConnState::Open && !c.paused().is_empty() {
                    paused += 1;
                }
            }
        }
        ReactorFigures {
            open_connections: self.open,
            lingering_connections: self.lingering,
            paused_connections: paused,
            queued_bytes: self.queued,
            peak_queued_bytes: self.peak_queued,
            read_buffer_bytes: self.read_held,
            peak_held_bytes: self.peak_held,
            budget_paused: self.budget_paused,
            connection_slots: slots,
            accepted: self.counters.accepted,
            rejected_busy: self.counters.rejected_busy,
            closed: self.counters.closed,
            frames_in: self.counters.frames_in,
            invalid_frames: self.counters.invalid_frames,
            accept_errors: self.counters.accept_errors,
            handed_out: self.counters.handed_out,
            recv_calls: self.counters.recv_calls,
            writev_calls: self.counters.writev_calls,
            turns: self.counters.turns,
            timers: self.timers.len(),
        }
    }

    /// The poll timeout: zero if work is waiting, else until the nearest deadline.
    pub(crate) fn poll_timeout(&self) -> Option<Duration> {
        if !self.ready.is_empty()
            || !self.carried.is_empty()
            || self.commands_pending
            || !self.notices.is_empty()
        {
            return Some(Duration::ZERO);
        }
        let mut next = self.timers.next_deadline();
        if let RunState::ShuttingDown {
            deadline: Some(deadline),
        } = self.run
        {
            next = Some(next.map_or(deadline, |t| t.min(deadline)));
        }
        next.map(|t| t.saturating_duration_since(Instant::now()))
    }
}
