//! What a handler can do: the [`Context`] passed to every callback.
//!
//! Every method acts on the reactor's own state and returns at once; nothing here blocks or
//! performs I/O on the spot. Frames are queued and written before the reactor next sleeps,
//! so many replies produced in one turn leave in one `writev`.

use std::io;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::Bytes;
use serde::Serialize;

use crate::config::ConfigError;
use crate::conn::{ConnId, ConnSettings, ConnState, PauseReason};
use crate::engine::Engine;
use crate::handle::Handle;
use crate::handler::CloseReason;
use crate::stats::{ConnFigures, ReactorFigures};
use crate::timer::TimerId;
use crate::write_queue::{Pressure, QueueFigures, SendError};

/// The application's view of the reactor, passed to every [`crate::Handler`] callback.
pub struct Context<'a> {
    engine: &'a mut Engine,
}

impl std::fmt::Debug for Context<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Context")
            .field("figures", &self.engine.figures())
            .finish_non_exhaustive()
    }
}

impl<'a> Context<'a> {
    pub(crate) fn new(engine: &'a mut Engine) -> Context<'a> {
        Context { engine }
    }

    /// Encodes `msg` as JSON and queues it as one frame on `conn`.
    ///
    /// Returns [`Pressure::High`] once the queue has reached its high-water mark: the frame
    /// was queued, but stop producing for this connection until
    /// [`crate::Handler::on_drain`]. Past the hard limit the frame is refused with
    /// [`SendError::QueueFull`] and nothing is queued.
    pub fn send<T: Serialize + ?Sized>(
        &mut self,
        conn: ConnId,
        msg: &T,
    ) -> Result<Pressure, SendError> {
        self.engine.send_json(conn, msg)
    }

    /// Queues `payload`, which must already be one JSON value as UTF-8 text (for example a
    /// received [`crate::RawJson`]'s bytes), as one frame. Large payloads are queued without
    /// copying. The payload is not re-validated. Pressure as for [`Context::send`].
    #[inline]
    pub fn send_payload(
        &mut self,
        conn: ConnId,
        payload: impl Into<Bytes>,
    ) -> Result<Pressure, SendError> {
        self.engine.send_payload(conn, payload.into())
    }

    /// Stops reading `conn` until [`Context::resume_reading`]: the slow consumer's move. Its
    /// unread bytes fill our kernel receive buffer, the TCP window closes, and the peer's
    /// writes back up into its own queue. Returns true if this call stopped reading; false if
    /// it was already paused (for any reason), or is closing or closed (a connection flushing
    /// its queue before a close reads no more anyway).
    pub fn pause_reading(&mut self, conn: ConnId) -> bool {
        let reading = self
            .engine
            .conn_ref(conn)
            .is_some_and(|c| matches!(c.state(), ConnState::Open | ConnState::Connecting));
        reading && self.engine.pause(conn, PauseReason::Application)
    }

    /// Undoes [`Context::pause_reading`]. Reading restarts unless another reason (the
    /// connection's own write queue above its high-water mark) still holds it. Returns true if
    /// reading restarted.
    pub fn resume_reading(&mut self, conn: ConnId) -> bool {
        self.engine.resume(conn, PauseReason::Application)
    }

    /// Pauses reading for a library-internal reason (worker queue full, ...).
    pub(crate) fn pause(&mut self, conn: ConnId, reason: PauseReason) -> bool {
        self.engine.pause(conn, reason)
    }

    /// Clears a library-internal pause reason.
    pub(crate) fn resume(&mut self, conn: ConnId, reason: PauseReason) -> bool {
        self.engine.resume(conn, reason)
    }

    /// Tells the reactor that a reply to `conn` is being computed elsewhere (another thread):
    /// a graceful shutdown keeps `conn` open, within its grace period, until a matching
    /// [`Context::work_finished`], so the reply is delivered. [`crate::Workers`] calls both
    /// for each job. Called while `conn`'s message is being handled, the work is taken to hold
    /// that message's payload until it finishes, and [`crate::Config::queue_budget`] counts it.
    /// Reading and timeouts go on as usual; a close waits for the owed replies.
    pub fn work_started(&mut self, conn: ConnId) {
        self.engine.work_started(conn);
    }

    /// The reply announced by [`Context::work_started`] has been produced (send it before
    /// this callback returns). Once nothing is pending, a connection that a graceful shutdown
    /// has read out closes.
    pub fn work_finished(&mut self, conn: ConnId) {
        self.engine.work_finished(conn);
    }

    /// Closes `conn` gracefully: no more messages are delivered, everything queued is sent,
    /// then FIN. If replies announced with [`Context::work_started`] are still owed (jobs at
    /// [`crate::Workers`]), the close waits for the last of them, reading and delivering
    /// nothing meanwhile, so a peer that half-closes after its requests gets every reply. [`crate::Handler::on_close`] follows when the socket is closed, with
    /// [`CloseReason::PeerClosed`] if the peer had already half-closed, else
    /// [`CloseReason::Closed`].
    pub fn close(&mut self, conn: ConnId) {
        self.engine.close(conn, CloseReason::Closed);
    }

    /// Shuts down our sending side once everything queued is delivered (half-close); the
    /// connection keeps reading. This is how a producer says "that was the last frame".
    pub fn close_write(&mut self, conn: ConnId) {
        self.engine.close_write(conn);
    }

    /// Resets `conn` at once: whatever is queued, here and in the kernel's send buffer, is
    /// discarded, and the peer gets a RST (`SO_LINGER` 0), so its next read fails with
    /// "connection reset" straight away instead of after it has read every byte the kernel
    /// still held (4 MB at 10 frames a second took 13 s). An end of stream would tell the
    /// peer everything arrived, which is not true after an abort.
    ///
    /// Which calls reset and which close gracefully (FIN after everything queued):
    /// - **reset**: [`Context::abort`], and the reactor's write-timeout close (a peer that
    ///   stopped taking bytes, whose bytes are discarded anyway).
    /// - **graceful**: [`Context::close`], [`crate::Handle::close`], [`Context::close_write`]
    ///   (half-close), the idle-timeout close (after its error frame), a `frame_too_large`
    ///   close, a peer's close, and a graceful shutdown.
    /// - [`Context::stop`] and the end of a shutdown's grace period drop the sockets: a
    ///   plain `close(2)`, which the kernel turns into a RST only if unread input remains.
    pub fn abort(&mut self, conn: ConnId) {
        let Some(c) = self.engine.conn(conn) else {
            return;
        };
        let discarded = c.queue().len();
        c.reset_on_close();
        self.engine
            .teardown(conn, CloseReason::Aborted { discarded });
    }

    /// Connects to `addr` without blocking. The id is usable at once (sends are queued);
    /// [`crate::Handler::on_open`] follows on success, [`crate::Handler::on_close`] with
    /// [`CloseReason::ConnectFailed`] on failure.
    pub fn connect(&mut self, addr: SocketAddr) -> io::Result<ConnId> {
        self.engine.connect(addr)
    }

    /// Starts listening on `addr`; returns the bound address (port 0 picks a free port).
    pub fn listen(&mut self, addr: SocketAddr) -> io::Result<SocketAddr> {
        self.engine.listen(addr)
    }

    /// Calls [`crate::Handler::on_timer`] with `data` after `after` has passed. A duration
    /// too long to add to [`Context::now`] (such as `Duration::MAX`) means never: the timer
    /// is set, never fires, and can be cancelled.
    pub fn set_timer(&mut self, after: Duration, data: u64) -> TimerId {
        self.engine.timers.set_app(self.engine.now, after, data)
    }

    /// Cancels a timer. Returns false if it already fired or was cancelled.
    pub fn cancel_timer(&mut self, timer: TimerId) -> bool {
        self.engine.timers.cancel_app(timer)
    }

    /// Whether `conn` is open (or connecting) and accepts sends.
    pub fn is_open(&self, conn: ConnId) -> bool {
        self.engine
            .conn_ref(conn)
            .is_some_and(|c| c.accepts_sends())
    }

    /// Bytes queued on `conn` (0 if it is closed).
    pub fn queued_bytes(&self, conn: ConnId) -> usize {
        self.engine.conn_ref(conn).map_or(0, |c| c.queue().len())
    }

    /// `conn`'s write-queue pressure ([`Pressure::High`] from reaching high-water until
    /// draining to low-water), or `None` if it is closed. No system call: cheap enough to ask
    /// before every send, for example to choose which subscribers get a frame.
    pub fn pressure(&self, conn: ConnId) -> Option<Pressure> {
        self.engine.conn_ref(conn).map(|c| c.queue().pressure())
    }

    /// Links `source` to `sink`: while `sink`'s write queue is above its high-water mark,
    /// `source` is not read ([`PauseReason::Link`]); when `sink` drains to low-water (or
    /// closes), `source` reads again, unless another of its sinks is still high. This is the
    /// chain across a hop: a relay that links the connection it reads to the one it writes
    /// makes a slow reader at one end slow down the producer at the other, instead of
    /// buffering the difference (Node's `pipe()`, Netty's proxy turning `autoRead` off).
    ///
    /// Any number of sources per sink and sinks per source; link both ways for a two-way
    /// relay, and then turn off both connections' own high-water pause
    /// ([`ConnSettings::pause_reads_above_high_water`]): in a relay, what is read from one
    /// side is written to the *other*, so the link is the right rule and the own-queue rule
    /// is a deadlock. (The relay stops reading its upstream because its queue *to* the
    /// upstream is full; the upstream, an echo server say, stops reading the relay because
    /// its queue back to the relay is full; neither ever drains. Seen in 2 runs of 4 with a
    /// client that started reading late; none with the setting off.)
    ///
    /// Links are counted: linking a pair that is already linked adds an owner, and the link
    /// ends when each `link` has had its [`Context::unlink`] (or either side closes). So your
    /// own link and a [`crate::FanOut`]'s hold on the same pair, or two fan-outs', never undo
    /// each other. The count is a number, not an entry per call: linking on every frame
    /// costs no memory (but then one `unlink` does not end the link).
    ///
    /// A connection linked to itself stops being read while its own queue is above high-water
    /// (as the own-queue pause does, but for this link's owner even with that setting off: a
    /// fan-out member that is also the frame's source).
    ///
    /// Returns false if either connection is closed. A connection's links end when it
    /// closes; what to do when one side closes or half-closes is the application's call,
    /// made in `on_close` / `on_peer_shutdown` (a proxy usually closes, or
    /// [`Context::close_write`]s, the other side).
    pub fn link(&mut self, source: ConnId, sink: ConnId) -> bool {
        self.engine.link(source, sink)
    }

    /// Undoes one [`Context::link`] of the pair; when none is left, `source` reads again
    /// unless another sink holds it. Returns false if there was no such link.
    pub fn unlink(&mut self, source: ConnId, sink: ConnId) -> bool {
        self.engine.unlink(source, sink)
    }

    /// `conn`'s own settings (marks, timeouts, whether it pauses above high-water), or `None`
    /// if it is closed. They start as the [`crate::Config`]'s.
    pub fn settings(&self, conn: ConnId) -> Option<ConnSettings> {
        self.engine.settings(conn)
    }

    /// Gives `conn` settings of its own, for example a subscriber that must keep being read
    /// (its control messages) while its queue is full:
    ///
    /// ```no_run
    /// # use highwater::{ConnId, Context};
    /// # fn f(ctx: &mut Context<'_>, subscriber: ConnId) {
    /// if let Some(mut s) = ctx.settings(subscriber) {
    ///     s.pause_reads_above_high_water = false;
    ///     s.high_water = 64 * 1024;
    ///     let _ = ctx.set_settings(subscriber, s);
    /// }
    /// # }
    /// ```
    ///
    /// The queue is judged again against new marks at once (which may pause it, or bring an
    /// `on_drain`), and its timers follow the new timeouts. `Ok(false)` if the connection is
    /// closed or closing; an error names the first setting at fault.
    pub fn set_settings(
        &mut self,
        conn: ConnId,
        settings: ConnSettings,
    ) -> Result<bool, ConfigError> {
        self.engine.set_settings(conn, settings)
    }

    /// The write queue's counters for `conn` (queued, written, marks crossed, …): no system
    /// call, so cheap enough for every frame. Available inside `on_close` too.
    pub fn queue_figures(&self, conn: ConnId) -> Option<QueueFigures> {
        self.engine.queue_figures(conn)
    }

    /// Everything known about `conn` (including the kernel's figures, three system calls),
    /// or `None` if it is gone. Still available inside
    /// [`crate::Handler::on_close`], for the connection's last figures.
    pub fn conn_figures(&self, conn: ConnId) -> Option<ConnFigures> {
        self.engine.conn_figures(conn)
    }

    /// Reactor-wide figures.
    pub fn figures(&self) -> ReactorFigures {
        self.engine.figures()
    }

    /// The time at the start of this reactor turn (cheaper than `Instant::now()`, and the
    /// same for every callback in the turn).
    pub fn now(&self) -> Instant {
        self.engine.now
    }

    /// A handle for other threads.
    pub fn handle(&self) -> Handle {
        self.engine.handle()
    }

    /// Starts a graceful shutdown (see [`Handle::shutdown`]; a grace too long to add to the
    /// clock, such as `Duration::MAX`, means no deadline).
    pub fn shutdown(&mut self, grace: Duration) {
        self.engine.begin_shutdown(grace);
    }

    /// Stops the reactor at once; connections are dropped.
    pub fn stop(&mut self) {
        self.engine.stop_now();
    }
}
