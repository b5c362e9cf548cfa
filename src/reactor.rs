//! The poll loop: the order of a turn, and the two places the handler is called from (a decoded
//! message, and the notices the engine queues).
//!
//! ## A turn, in order
//!
//! Every turn does the same seven steps, in this order. Each names the function that does it
//! and the budget that bounds it. Budgets are **per turn**: a connection's are counted on the
//! connection (`Connection::share`, `conn/mod.rs`) and the commands' on the engine
//! (`commands_left`), so a second visit in the same turn continues where the first stopped
//! instead of starting afresh.
//!
//! 1. **Poll.** `mio::Poll::poll`, timeout from `Engine::poll_timeout(now)`: zero if work is
//!    waiting (the ready list, connections carried over by the write budget, commands beyond
//!    last turn's share, undelivered notices), else until the nearest timer or shutdown
//!    deadline; zero too while a [`Config::busy_poll`] window is open (it opens at the end of
//!    each turn that had events). At most 1,024 events per poll (the `Events` capacity). Then
//!    the clock is read,
//!    once, and handed to `Engine::begin_turn` (`engine/mod.rs`): the turn count goes up
//!    (which starts every budget afresh) and the connections the write budget carried over
//!    are dirty again. Nothing after this reads the clock ([`Reactor::process`]).
//! 2. **Events** ([`Reactor::dispatch`], one per event). A listener's event accepts until
//!    `WouldBlock` (`Engine::accept`, `engine/accept.rs`). A connection's event becomes readiness
//!    memory through `Engine::conn_event` (`engine/read.rs`) and `Connection::on_event`
//!    (`conn/readiness.rs`): readable / writable set, a FIN or error remembered, a writable
//!    connection with bytes queued marked dirty; then, if it may read, `Engine::read`
//!    (`engine/read.rs`) reads it: at most [`READS_PER_TURN`]
//!    `recv` calls and [`FRAMES_PER_TURN`] messages this turn. The waker's event applies
//!    commands (step 5's function); the signal pipe's starts a shutdown. After every
//!    [`FLUSH_EVERY_EVENTS`] (64) events, what they produced is flushed as in step 6, so the
//!    first connections of a large batch get their replies before the last are read.
//! 3. **Ready list** ([`Reactor::read_ready_list`]): connections that ran out of read budget
//!    (last turn, or earlier in this one), or resumed with input waiting, are read without an
//!    event, each visited once, with what is left of *this turn's* budget. Whoever still has
//!    input goes to the back of the list, for the next turn.
//! 4. **Timers** (`Engine::fire_timers`, `engine/timeouts.rs`): every timer now due: the
//!    application's, idle, write-stall, connect, linger, accept back-off; then the shutdown's
//!    deadline.
//! 5. **Commands** ([`Reactor::apply_commands`]) from handles, if some were left over: at
//!    most [`COMMANDS_PER_TURN`] (1,024) per turn, this step and the waker's event together.
//! 6. **Settle** ([`Reactor::settle`]): `Engine::flush_dirty` (`engine/flush.rs`) writes each dirty
//!    connection's queue, at most [`WRITES_PER_TURN`] `writev` calls and
//!    [`WRITE_BYTES_PER_TURN`] bytes per connection this turn, applies the low-water mark and
//!    re-syncs poller interest; then [`Reactor::deliver_notices`] delivers what that caused
//!    (`on_drain`, `on_close`), whose sends make connections dirty again; repeat until no
//!    notice is left. A connection that ran out of write budget with its socket still writable
//!    is *carried*: the next turn starts by marking it dirty, and its poll does not sleep.
//! 7. **Reap** (`Conns::reap`, `engine/conns.rs`): free the slots of connections closed this turn, never
//!    earlier, so no event of this turn's batch can reach a slot's next tenant.
//!
//! After every step (after each event, each ready-list visit, each command), the notices the
//! engine queued are delivered ([`Reactor::deliver_notices`]), so callbacks never nest.
//!
//! The memory budget (`engine/budget.rs`) acts at three points of this: in every read (steps 2
//! and 3), before each `recv`, `Engine::may_read` grants a large frame's buffer or makes the
//! connection wait, and after the visit an empty buffer goes back to the pool; in every send,
//! `Engine::apply_budget` pauses a connection whose queue is above its share; and at the start
//! of step 6 the overdraft passes to the next connection waiting for it
//! (`Engine::pass_overdraft`), at its end the budget lets everyone read again once the total
//! is down to 3/4 (`Engine::unbind_budget`).
//!
//! Fairness: whatever a peer sends or a producer makes, one connection's share of a turn is
//! its read budget and its write budget; past them it waits for the next turn, which comes
//! without sleeping. So a fire-hose peer (or a producer whose reader keeps up) gets its share
//! and no more, and timers, commands and the other connections are served every turn.
//!
//! ## When `on_drain` is called
//!
//! In step 6 (or the same flush after every [`FLUSH_EVERY_EVENTS`] events of a large batch),
//! never inside another callback. `Connection::flush` (`conn/write.rs`) writes,
//! and the queue falls
//! to the low-water mark after having reached high-water: `WriteQueue::take_drain` reports it
//! once, `Engine::flush` queues `Notice::Drain`, and [`Reactor::deliver_notices`], in the same
//! settle, calls `on_drain`, unless by then the connection closed (`on_close` instead) or a
//! callback delivered before it took the queue back to high-water (that send returned
//! `Pressure::High`, and the next drain brings the next `on_drain`). So each `Pressure::High`
//! is answered by one `on_drain`, delivered while the queue is below high-water.
//!
//! ## How a FIN reaches a paused connection
//!
//! A paused connection does not ask for READABLE (`Connection::interest`), so the peer's FIN
//! waits in the kernel and no event announces it. Resuming (`Engine::resume`) brings it back
//! by one of two paths. If the connection still has input the reactor knows of (`readable`
//! from an earlier event, or frame bytes already buffered), it goes on the ready list (step 3), and
//! `Engine::read` reads to the end of the stream. Otherwise settle's `Engine::sync_interest`
//! registers READABLE again, and epoll reports the readiness already there (the FIN, or bytes)
//! as an event at the next poll: step 2, `Engine::conn_event`, `Engine::read`. Either way
//! the read returns 0, `Engine::peer_eof` runs, and the handler hears `on_peer_shutdown`
//! after every message the peer sent before it.
//!
//! The read loop lives in the engine (`engine/read.rs`); the reactor hands it [`deliver`], the
//! one place that decodes a payload and calls `on_message`. Everything else the handler must
//! hear about arrives as a notice from the engine and is delivered by [`deliver_notices`].

use std::io;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::Bytes;
use mio::Events;
use mio::event::Event;

use crate::config::Config;
use crate::conn::{ConnId, ConnState, Seen};
use crate::context::Context;
use crate::engine::{Engine, Notice, SIGNALS, Slot, WAKER};
use crate::handle::{Command, Handle};
use crate::handler::{CloseReason, Handler};
use crate::message::Decode;
use crate::stats::{ConnFigures, ReactorFigures};
use crate::write_queue::Pressure;

/// `recv` calls one connection may make per turn before yielding to the others: per turn,
/// however many times the turn visits it (its event, then the ready list).
pub const READS_PER_TURN: usize = 16;

/// Messages one connection may deliver per turn before yielding to the others: per turn,
/// however many times the turn visits it.
pub const FRAMES_PER_TURN: usize = 1024;

/// `writev` calls one connection may make per turn, across every flush of the turn's end
/// (`Reactor::settle`, step 6 of a turn in `reactor.rs`). Each drain (and so each `on_drain`) needs a write, so this also bounds
/// a connection's `on_drain` calls per turn. See [`WRITE_BYTES_PER_TURN`] for what happens
/// when the budget runs out.
pub const WRITES_PER_TURN: usize = 16;

/// Bytes one connection may write per turn: no further `writev` starts once this many went
/// out this turn (one call may carry it past; the kernel's send buffer bounds that call).
/// Bytes, not only calls, because what a producer's turn costs is the bytes it makes and
/// writes: sixteen refills of a 256 KiB queue are 4 MiB of serializing. A connection that runs
/// out of either budget with bytes queued and its socket still writable is flushed again next
/// turn, and the poll in between does not sleep.
pub const WRITE_BYTES_PER_TURN: usize = 256 * 1024;

/// Events handled before the replies they produced are written, in a large batch. Each
/// connection's replies to one visit still leave in one `writev` (a visit reads and delivers
/// all it may before the next event), so flushing every so many events costs no batching, and
/// the first connections of a 1,024-event batch no longer wait for the last one's messages to
/// be handled before their replies go out (at thousands of busy connections that wait was
/// milliseconds: issue 16).
pub(crate) const FLUSH_EVERY_EVENTS: usize = 64;

/// Commands from handles applied per turn before polling again: per turn, across the waker's
/// event (step 2) and the leftovers' step (step 5).
pub(crate) const COMMANDS_PER_TURN: usize = 1024;

/// The reactor: a poller, a slab of connections and listeners, and the application's handler.
///
/// ```no_run
/// use highwater::{Config, ConnId, Context, Handler, Reactor};
///
/// /// Counts messages and closes each connection after its tenth.
/// struct Ten(u32);
///
/// impl Handler for Ten {
///     type Message = serde_json::Value;
///     fn on_message(&mut self, ctx: &mut Context<'_>, conn: ConnId, msg: serde_json::Value) {
///         self.0 += 1;
///         let _ = ctx.send(conn, &serde_json::json!({"seen": self.0, "you_sent": msg}));
///         if self.0 % 10 == 0 {
///             ctx.close(conn);
///         }
///     }
/// }
///
/// let mut reactor = Reactor::new(Config::default(), Ten(0))?;
/// reactor.listen("127.0.0.1:7878".parse().unwrap())?;
/// reactor.shutdown_on_signals(std::time::Duration::from_secs(5))?;
/// reactor.run()?;
/// # Ok::<(), std::io::Error>(())
/// ```
pub struct Reactor<H: Handler> {
    engine: Engine,
    handler: H,
    started: bool,
    /// When the last turn with events ended: the loop polls without sleeping until
    /// [`Config::busy_poll`] has passed since (kept as a start, not an end, so that a window
    /// too long to add to the clock, `Duration::MAX`, means "always").
    last_events_at: Option<Instant>,
}

impl<H: Handler> std::fmt::Debug for Reactor<H> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Reactor")
            .field("figures", &self.engine.figures())
            .field("started", &self.started)
            .finish_non_exhaustive()
    }
}

impl<H: Handler> Reactor<H> {
    /// A reactor with no sockets yet. Fails if the configuration is invalid or the OS poller
    /// cannot be created.
    pub fn new(config: Config, handler: H) -> io::Result<Reactor<H>> {
        Ok(Reactor {
            engine: Engine::new(config, Instant::now())?,
            handler,
            started: false,
            last_events_at: None,
        })
    }

    /// Listens on `addr`; returns the bound address (port 0 picks a free port).
    pub fn listen(&mut self, addr: SocketAddr) -> io::Result<SocketAddr> {
        self.engine.listen(addr)
    }

    /// Connects to `addr` without blocking (see [`Context::connect`]).
    pub fn connect(&mut self, addr: SocketAddr) -> io::Result<ConnId> {
        self.engine.connect(addr)
    }

    /// A handle other threads use to reach this reactor.
    pub fn handle(&self) -> Handle {
        self.engine.handle()
    }

    /// Makes SIGINT and SIGTERM start a graceful shutdown with the given grace period (a
    /// second signal stops at once).
    pub fn shutdown_on_signals(&mut self, grace: Duration) -> io::Result<()> {
        self.engine.watch_signals(grace)
    }

    /// Makes this reactor hand accepted connections out round-robin to `peers` (and itself),
    /// and pass shutdowns and stops on to them. Used by [`crate::ReactorGroup`].
    pub(crate) fn share_with(&mut self, peers: Vec<Handle>) {
        self.engine.peers = peers;
    }

    /// Draws connection generations from the group's shared counter (see `ReactorGroup`).
    pub(crate) fn share_generations(
        &mut self,
        counter: std::sync::Arc<std::sync::atomic::AtomicU32>,
    ) {
        self.engine.share_generations(counter);
    }

    /// Gives back this reactor's share of the group's counters after a panic unwound out of
    /// `run` (see `ReactorGroup`).
    pub(crate) fn abandon_group_share(&mut self) {
        self.engine.abandon_group_share();
    }

    /// Counts open connections in `counter`, shared by every reactor of a group, so that
    /// `max_connections` is a limit for the whole group.
    pub(crate) fn count_open_in(
        &mut self,
        counter: std::sync::Arc<std::sync::atomic::AtomicUsize>,
    ) {
        self.engine.group_open = Some(counter);
    }

    /// The settings in force.
    pub fn config(&self) -> &Config {
        &self.engine.config
    }

    /// The application's handler.
    pub fn handler(&self) -> &H {
        &self.handler
    }

    /// The application's handler, mutably.
    pub fn handler_mut(&mut self) -> &mut H {
        &mut self.handler
    }

    /// Consumes the reactor and returns the handler (for its results, after `run`).
    pub fn into_handler(self) -> H {
        self.handler
    }

    /// Reactor-wide figures.
    pub fn figures(&self) -> ReactorFigures {
        self.engine.figures()
    }

    /// One connection's figures.
    pub fn conn_figures(&self, conn: ConnId) -> Option<ConnFigures> {
        self.engine.conn_figures(conn)
    }

    /// Runs until stopped ([`Context::stop`], [`Handle::stop`]) or until a graceful shutdown
    /// completes. Returns an error only if polling itself fails.
    pub fn run(&mut self) -> io::Result<()> {
        let mut events = Events::with_capacity(1024);
        if !self.started {
            self.started = true;
            self.engine.now = Instant::now();
            self.handler.on_start(&mut Context::new(&mut self.engine));
            self.settle();
        }
        while !self.engine.is_finished() {
            self.turn(&mut events)?;
        }
        // Handles fail with `Stopped` from now on, even while this value lives.
        self.engine.commands.close();
        Ok(())
    }

    /// One turn of the loop (see the module docs): poll, then everything else at the time the
    /// poll returned, read once.
    fn turn(&mut self, events: &mut Events) -> io::Result<()> {
        let before = Instant::now();
        let mut timeout = self.engine.poll_timeout(before);
        // Busy polling: inside the window, ask without sleeping (`Config::busy_poll`).
        if let (Some(window), Some(last)) = (self.engine.config.busy_poll, self.last_events_at) {
            if before.saturating_duration_since(last) < window {
                timeout = Some(Duration::ZERO);
            }
        }
        if let Err(e) = self.engine.poll.poll(events, timeout) {
            if e.kind() != io::ErrorKind::Interrupted {
                return Err(e);
            }
        }
        self.process(events, Instant::now());
        // The window opens when the turn's work is done: its replies were flushed just now,
        // and the answers to them come a round trip from here. (Stamped at the poll, a turn
        // longer than the window would leave none.) The clock is read again only for this.
        if !events.is_empty() && self.engine.config.busy_poll.is_some() {
            self.last_events_at = Some(Instant::now());
        }
        Ok(())
    }

    /// Steps 2 to 7 of a turn, at time `now`. Nothing below reads the clock.
    fn process(&mut self, events: &Events, now: Instant) {
        self.engine.begin_turn(now);
        for (i, event) in events.iter().enumerate() {
            self.dispatch(event);
            if (i + 1) % FLUSH_EVERY_EVENTS == 0 {
                self.flush_and_deliver();
            }
        }
        self.read_ready_list();
        self.engine.fire_timers();
        self.deliver_notices();
        if self.engine.commands_pending {
            self.apply_commands();
        }
        self.settle();
    }

    fn dispatch(&mut self, event: &Event) {
        match event.token() {
            WAKER => self.apply_commands(),
            SIGNALS => self.engine.on_signal(),
            token => match self.engine.conns.slot(token.0) {
                Some(Slot::Listener(_)) => self.engine.accept(token.0),
                Some(Slot::Conn(_)) => {
                    if let Some(id) = self.engine.conn_event(token.0, Seen::from_event(event)) {
                        self.read(id);
                    }
                }
                None => {} // spurious: nothing lives there any more
            },
        }
        self.deliver_notices();
    }

    /// Reads connections that still had input when their budget ran out last time, or that
    /// resumed with bytes already waiting. Each gets one more visit with what is left of this
    /// turn's budget; whoever still has input goes to the back of the list.
    fn read_ready_list(&mut self) {
        for _ in 0..self.engine.conns.ready_len() {
            let Some(entry) = self.engine.conns.pop_ready() else {
                break;
            };
            if let Some(id) = entry {
                self.read(id);
                self.deliver_notices();
            }
        }
    }

    /// The read path (`Engine::read`, `engine/read.rs`), with [`deliver`] as what it
    /// hands each frame to.
    fn read(&mut self, id: ConnId) {
        let handler = &mut self.handler;
        self.engine.read(id, &mut |engine, id, payload| {
            deliver(handler, engine, id, payload)
        });
    }

    /// Delivers what the engine queued (see [`deliver_notices`]).
    fn deliver_notices(&mut self) {
        deliver_notices(&mut self.handler, &mut self.engine);
    }

    /// Applies commands sent through handles, at most [`COMMANDS_PER_TURN`] per turn however
    /// often the turn calls this (the waker's event, then the leftovers' step).
    fn apply_commands(&mut self) {
        self.engine.commands_pending = false;
        while self.engine.commands_left > 0 {
            let Ok(cmd) = self.engine.commands.try_recv() else {
                return;
            };
            self.engine.commands_left -= 1;
            match cmd {
                Command::Send(id, payload) => {
                    if let Err(e) = self.engine.send_payload(id, payload) {
                        log::debug!("{id}: send from handle dropped: {e}");
                    }
                }
                Command::Close(id) => self.engine.close(id, CloseReason::Closed),
                Command::Shutdown(grace) => self.engine.begin_shutdown(grace),
                Command::Stop => self.engine.stop_now(),
                Command::Run(job) => job(&mut Context::new(&mut self.engine)),
                Command::Notify(value) => self
                    .handler
                    .on_notify(&mut Context::new(&mut self.engine), value),
                Command::Adopt(stream, peer) => self.engine.adopt(stream, peer),
            }
            self.deliver_notices();
        }
        // The budget ran out with commands possibly left: come back without sleeping.
        self.engine.commands_pending = true;
    }

    /// End of turn: flush and re-sync every dirty connection, deliver what that caused
    /// (drains, closes; their callbacks may queue more), repeat until quiet, then free the
    /// slots of closed connections.
    fn settle(&mut self) {
        self.flush_and_deliver();
        self.engine.conns.reap();
    }

    /// Flushes and re-syncs every dirty connection and delivers what that caused, until quiet:
    /// step 6, and also after every [`FLUSH_EVERY_EVENTS`] events of a large batch.
    fn flush_and_deliver(&mut self) {
        loop {
            self.engine.flush_dirty();
            if self.engine.notices.is_empty() {
                break;
            }
            self.deliver_notices();
        }
    }
}

/// Decodes one payload and hands it to the application, then delivers what that caused.
fn deliver<H: Handler>(handler: &mut H, engine: &mut Engine, id: ConnId, payload: Bytes) {
    match H::Message::decode(payload) {
        Ok(msg) => handler.on_message(&mut Context::new(engine), id, msg),
        Err(e) => {
            engine.counters.invalid_frames += 1;
            handler.on_bad_message(&mut Context::new(engine), id, &e);
        }
    }
    deliver_notices(handler, engine);
}

/// Delivers what the engine queued for the application, in order. Drain and
/// peer-shutdown notices for connections that closed in the meantime are dropped: the
/// application hears `on_close` instead.
///
/// A drain is also re-checked here, because callbacks delivered before it (another
/// connection's `on_drain`, an `on_close`) may have sent on its connection since `flush`
/// saw the fall. If a send took the queue back to high-water, that send returned
/// `Pressure::High` and its own drain will bring the next `on_drain`: this one is stale
/// and dropped. Otherwise it is delivered, even if the queue grew a little since: the
/// producer was told `High` and is waiting for it, and no later fall would tell it again.
fn deliver_notices<H: Handler>(handler: &mut H, engine: &mut Engine) {
    while let Some(notice) = engine.notices.pop_front() {
        let still_open = |engine: &Engine, id| {
            engine
                .conn_ref(id)
                .is_some_and(|c| c.state() == ConnState::Open)
        };
        let drain_stands = |engine: &Engine, id| {
            engine.conn_ref(id).is_some_and(|c| {
                c.state() == ConnState::Open && c.queue().pressure() == Pressure::Clear
            })
        };
        match notice {
            Notice::Open(id) => handler.on_open(&mut Context::new(engine), id),
            Notice::Drain(id) if drain_stands(engine, id) => {
                handler.on_drain(&mut Context::new(engine), id)
            }
            Notice::PeerShutdown(id) if still_open(engine, id) => {
                handler.on_peer_shutdown(&mut Context::new(engine), id)
            }
            Notice::Warning(id, w) if engine.conn_ref(id).is_some() => {
                handler.on_timeout_warning(&mut Context::new(engine), id, &w)
            }
            Notice::Drain(_) | Notice::PeerShutdown(_) | Notice::Warning(..) => {}
            Notice::Closed(id, reason) => handler.on_close(&mut Context::new(engine), id, &reason),
            Notice::Timer(timer, data) => handler.on_timer(&mut Context::new(engine), timer, data),
        }
    }
}
