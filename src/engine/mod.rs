//! The reactor's state, and every operation on it that does not call the application.
//!
//! The [`crate::Reactor`] owns an `Engine` and the application's handler side by side. The
//! engine never calls the handler: whatever the application must hear about (a connection
//! opened, a queue drained, a connection closed) becomes a [`Notice`], and the reactor
//! delivers notices after each step. That keeps callbacks from nesting, and lets the
//! [`crate::Context`] a handler receives be a plain `&mut Engine`. The one exception is a
//! decoded message, which the read path hands to a callback the reactor passes in
//! (`read.rs`), so a byte can be followed from `recv` to `on_message` in one file.
//!
//! The engine's parts, each a file, in the order a byte meets them:
//!
//! | file | what it does |
//! |---|---|
//! | `conns.rs` | the slab of connections and listeners, and the ready/dirty/carried/dead lists |
//! | `accept.rs` | listening, accepting (or turning away with `busy`), connecting out |
//! | `read.rs` | the read path: a socket event, `recv`, frames out, the per-turn read budget, lingering reads |
//! | `send.rs` | the application's sends, the high-water mark, pausing and resuming |
//! | `links.rs` | backpressure across connections: a sink above high-water pauses its sources |
//! | `settings.rs` | per-connection settings (marks, timeouts, pausing rule) |
//! | `budget.rs` | the process-wide memory budget: fair shares and read grants |
//! | `flush.rs` | the end of a turn: writes, the low-water mark, poller interest |
//! | `close.rs` | graceful close, half-close, lingering, teardown |
//! | `timeouts.rs` | timers: idle, write stall, connect, linger, accept back-off |
//! | `shutdown.rs` | graceful shutdown, stop, signals, owed work |
//!
//! Time comes from outside: the reactor reads the clock once per turn and hands it to
//! [`Engine::begin_turn`]; nothing here calls `Instant::now()` on its own (`now` is the
//! turn's time). So the unit tests drive timeouts, back-off and shutdown with a clock they
//! choose.
//!
//! Invariants kept here:
//! - A slab slot is freed only at the end of a reactor turn (`Conns::reap`), never while
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
mod close;
mod conns;
mod flush;
mod links;
mod read;
mod send;
mod settings;
mod shutdown;
mod timeouts;

#[cfg(test)]
mod tests;

use std::collections::VecDeque;
use std::io;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use mio::{Poll, Token, Waker};

use crate::buf_pool::BufPool;
use crate::config::Config;
use crate::conn::{ConnId, ConnState, Connection};
use crate::handle::{self, Handle, Inbox};
use crate::handler::CloseReason;
use crate::reactor::COMMANDS_PER_TURN;
use crate::stats::{ConnFigures, ReactorFigures};
use crate::timer::{TimerId, Timers};
use crate::write_queue::QueueFigures;

pub(crate) use conns::{Conns, Slot};

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

/// The memory the budget counts, and its state (`budget.rs`).
#[derive(Debug, Default)]
pub(crate) struct Held {
    /// Bytes queued across all connections.
    pub(crate) queued: usize,
    /// The most ever queued across all connections.
    pub(crate) peak_queued: usize,
    /// Read-buffer bytes held across all connections (each connection's `read_charged`).
    pub(crate) read: usize,
    /// Payload bytes held by work started elsewhere (each connection's owed work).
    pub(crate) work: usize,
    /// The most ever held (queued + read buffers + work + commands).
    pub(crate) peak: usize,
    /// The budget binds: connections holding more than `fair_share` are paused.
    pub(crate) binding: bool,
    /// The budget divided among the connections holding memory when it last bound.
    pub(crate) fair_share: usize,
    /// What was held at that moment; growing by another eighth of the budget shares anew.
    pub(crate) scanned_at: usize,
    /// The one connection allowed to overdraw the budget to finish a large frame, and its
    /// frame count when granted: the grant ends with that frame.
    pub(crate) overdraft: Option<(ConnId, u64)>,
    /// Connections waiting for room to read a large frame, first come first served.
    pub(crate) read_waiters: VecDeque<ConnId>,
}

/// The reactor's state. See the module docs.
pub(crate) struct Engine {
    pub(crate) poll: Poll,
    pub(crate) config: Config,
    pub(crate) conns: Conns,
    /// The time of this turn, handed in by the reactor (see the module docs).
    pub(crate) now: Instant,
    pub(crate) timers: Timers,
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
    pub(crate) held: Held,
    /// The message being handed to the application now, and its payload size: what work
    /// started during that callback holds.
    pub(crate) delivering: Option<(ConnId, usize)>,
    pub(crate) counters: Counters,
    /// The budget's binding warnings, at most one a second (`budget.rs`).
    pub(crate) budget_log: accept::LogLimiter,
    /// Accept failures are logged at most once a second.
    pub(crate) accept_log: accept::LogLimiter,
    /// The other reactors of a group: accepted connections are handed out round-robin among
    /// them and this one; shutdowns and stops are passed on.
    pub(crate) peers: Vec<Handle>,
    pub(crate) next_peer: usize,
    /// In a group: open connections across every reactor, so `max_connections` holds for the
    /// process. Touched when a connection opens or closes, never per message.
    pub(crate) group_open: Option<Arc<AtomicUsize>>,
}

impl Engine {
    pub(crate) fn new(config: Config, now: Instant) -> io::Result<Engine> {
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
            conns: Conns::default(),
            now,
            timers: Timers::default(),
            notices: VecDeque::new(),
            pool: BufPool::default(),
            handle,
            commands,
            commands_pending: false,
            commands_left: COMMANDS_PER_TURN,
            run: RunState::Running,
            signals: None,
            open: 0,
            lingering: 0,
            held: Held::default(),
            delivering: None,
            counters: Counters::default(),
            accept_log: accept::LogLimiter::default(),
            budget_log: accept::LogLimiter::default(),
            peers: Vec::new(),
            next_peer: 0,
            group_open: None,
        })
    }

    /// A new turn at time `now`: every per-turn budget starts afresh, and the connections the
    /// write budget carried over are dirty again.
    pub(crate) fn begin_turn(&mut self, now: Instant) {
        self.now = now;
        self.counters.turns += 1;
        self.commands_left = COMMANDS_PER_TURN;
        self.conns.take_carried();
    }

    /// Open connections counted against `max_connections`: this reactor's, or the group's.
    pub(crate) fn open_connections(&self) -> usize {
        self.group_open
            .as_ref()
            .map_or(self.open, |n| n.load(Ordering::Relaxed))
    }

    /// One more (or one fewer) connection counted against `max_connections`, here and in
    /// the group's count if there is one.
    pub(crate) fn count_open(&mut self, opened: bool) {
        if opened {
            self.open += 1;
        } else {
            self.open -= 1;
        }
        if let Some(n) = &self.group_open {
            if opened {
                n.fetch_add(1, Ordering::Relaxed);
            } else {
                n.fetch_sub(1, Ordering::Relaxed);
            }
        }
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
        self.conns.share_generations(counter);
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
        self.conns.get_mut(id)
    }

    pub(crate) fn conn_ref(&self, id: ConnId) -> Option<&Connection> {
        self.conns.get(id)
    }

    /// Schedules a connection for flush and interest re-sync before the reactor sleeps.
    pub(crate) fn touch(&mut self, id: ConnId) {
        self.conns.mark_dirty(id);
    }

    /// Schedules a connection to be read again this turn or the next, without an event.
    pub(crate) fn defer(&mut self, id: ConnId) {
        self.conns.mark_ready(id);
    }

    // ----- figures ---------------------------------------------------------------------

    pub(crate) fn queue_figures(&self, id: ConnId) -> Option<QueueFigures> {
        self.conns.get_even_closed(id).map(|c| c.queue().figures())
    }

    pub(crate) fn conn_figures(&self, id: ConnId) -> Option<ConnFigures> {
        self.conns.get_even_closed(id).map(|c| c.figures(self.now))
    }

    pub(crate) fn figures(&self) -> ReactorFigures {
        let (mut paused, mut slots) = (0, 0);
        for c in self.conns.iter() {
            slots += 1;
            if c.state() == ConnState::Open && !c.paused().is_empty() {
                paused += 1;
            }
        }
        ReactorFigures {
            open_connections: self.open,
            lingering_connections: self.lingering,
            paused_connections: paused,
            queued_bytes: self.held.queued,
            peak_queued_bytes: self.held.peak_queued,
            read_buffer_bytes: self.held.read,
            peak_held_bytes: self.held.peak,
            budget_paused: self.held.binding,
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

    /// How long the next poll may sleep, measured from `now`: zero if work is waiting, else
    /// until the nearest deadline (`None`: until an event).
    pub(crate) fn poll_timeout(&self, now: Instant) -> Option<Duration> {
        if self.conns.has_waiting_work() || self.commands_pending || !self.notices.is_empty() {
            return Some(Duration::ZERO);
        }
        let mut next = self.timers.next_deadline();
        if let RunState::ShuttingDown {
            deadline: Some(deadline),
        } = self.run
        {
            next = Some(next.map_or(deadline, |t| t.min(deadline)));
        }
        next.map(|t| t.saturating_duration_since(now))
    }
}
