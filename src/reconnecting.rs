//! One outbound stream that comes back by itself: connect, reconnect with exponential backoff
//! and full jitter after every loss or failed connect, and refuse sends while there is no
//! connection, so the producer's chain of signals stays the usual one.
//!
//! [`crate::Requests`] does the same for request/reply traffic; [`Reconnecting`] is for a
//! producer that streams frames one way (metrics, a log shipper, a feed to another service)
//! and has no replies to match.

use std::fmt;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::Bytes;
use serde::Serialize;

use crate::backoff::Backoff;
use crate::conn::ConnId;
use crate::context::Context;
use crate::handler::CloseReason;
use crate::timer::TimerId;
use crate::write_queue::{Pressure, SendError};

/// Settings for [`Reconnecting`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReconnectConfig {
    /// The first reconnection delay; the ceiling of the random delay doubles on each failure
    /// in a row (from 1 ms if this is shorter). Default 50 ms.
    pub backoff_min: Duration,
    /// The longest reconnection delay, and how long a connection must stay open to count as
    /// a success (restarting the delays from `backoff_min`). Default 5 s.
    pub backoff_max: Duration,
}

impl Default for ReconnectConfig {
    fn default() -> ReconnectConfig {
        ReconnectConfig {
            backoff_min: Duration::from_millis(50),
            backoff_max: Duration::from_secs(5),
        }
    }
}

/// Counters of a [`Reconnecting`] stream.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ReconnectFigures {
    /// Connections opened (`on_open`), the first included.
    pub connects: u64,
    /// Connections opened after the first: `connects - 1`, or 0.
    pub reconnects: u64,
    /// Connects that failed (refused, unreachable, timed out, or closed before opening).
    pub connect_failures: u64,
    /// Connections lost after they had opened (the peer closed, reset, a timeout, ...).
    pub lost: u64,
    /// Failures in a row: failed connects, and connections that ended before they had stayed
    /// open for `backoff_max` (a server that accepts and drops connections at once is not
    /// asked again every `backoff_min`). The number the backoff doubles on.
    pub retries: u32,
    /// The delay of the reconnection waiting now, drawn from `[backoff_min, min(backoff_max,
    /// backoff_min * 2^(retries - 1))]`; `None` when none waits.
    pub backoff: Option<Duration>,
    /// Bytes that were queued on a connection when it closed and had not been handed to the
    /// kernel: frames lost with it, summed over every connection. Frames the kernel had taken
    /// may be lost too (see [`Reconnecting`]); this counts only the ones that never left.
    pub unsent_bytes: u64,
}

/// An outbound connection that reconnects by itself, for a producer that streams frames.
///
/// Embed it in a [`crate::Handler`] and forward it the handler's callbacks: `on_open`,
/// `on_close`, `on_timer` (every timer: it recognises its own by the [`TimerId`] the reactor
/// handed out, never by the timer's data) and `on_drain`. Each returns true if the event was
/// this stream's. Call [`Reconnecting::start`] once the reactor runs (from `on_start`).
///
/// **Producing.** [`Reconnecting::send`] queues a frame on the live connection and returns the
/// usual [`Pressure`]; while there is none (connecting, or waiting to reconnect) it returns
/// [`SendError::Closed`] at once and queues nothing. So the producer follows the usual chain:
/// stop on `Pressure::High` and on `Closed` (and on `QueueFull`, which only a producer that
/// ignored `High` sees); resume when `on_drain` or `on_open` returns true.
///
/// **Reconnection.** When the connection is lost, or a connect fails, a reconnection is
/// scheduled after a delay drawn from `[backoff_min, min(backoff_max, backoff_min * 2^n)]`,
/// `n` counting the failures in a row before this one: the first comes after `backoff_min`,
/// later ones spread further apart, and a fleet of clients that lost the same server does not
/// come back in lockstep. Only a connection that stayed open for `backoff_max` resets `n`: one
/// the server drops sooner (a server shedding load accepts and closes) is one more failure, so
/// such a server is asked less and less often instead of every `backoff_min`.
/// A connect that never completes is given up after [`crate::Config::connect_timeout`]. A
/// peer that vanishes without closing is noticed by [`crate::Config::write_timeout`] once our
/// bytes back up, or by [`crate::Config::outbound_idle_timeout`] if the stream can go quiet.
///
/// **What a loss costs.** Frames are not replayed on the next connection. Those still in our
/// write queue when the connection dropped are lost (counted in
/// [`ReconnectFigures::unsent_bytes`]); those the kernel had taken may or may not have reached
/// the peer. To know where the stream broke, read [`Context::queue_figures`] for the
/// connection in your own `on_close`: `bytes_written` (handed to the kernel) against
/// `bytes_queued` (everything sent on it) says how far the kernel got, and a frame ends at
/// the `bytes_queued` read right after its send. Only the peer's acknowledgement proves
/// delivery; a stream that must not lose frames numbers them and resends from the peer's
/// last acknowledged number.
///
/// ```no_run
/// use highwater::{
///     CloseReason, Config, ConnId, Context, Handler, RawJson, Reactor, ReconnectConfig,
///     Reconnecting, SendError, TimerId,
/// };
///
/// /// Streams numbered readings to a collector, as fast as it takes them.
/// struct Feed {
///     upstream: Reconnecting,
///     next: u64,
/// }
///
/// impl Feed {
///     fn produce(&mut self, ctx: &mut Context<'_>) {
///         loop {
///             match self.upstream.send(ctx, &serde_json::json!({ "n": self.next })) {
///                 Ok(pressure) => {
///                     self.next += 1;
///                     if pressure.is_high() {
///                         return; // queued; on_drain brings us back
///                     }
///                 }
///                 // Not connected (on_open brings us back), or the queue is full.
///                 Err(SendError::Closed | SendError::QueueFull { .. }) => return,
///                 Err(e) => panic!("{e}"),
///             }
///         }
///     }
/// }
///
/// impl Handler for Feed {
///     type Message = RawJson;
///
///     fn on_start(&mut self, ctx: &mut Context<'_>) {
///         self.upstream.start(ctx);
///     }
///     fn on_open(&mut self, ctx: &mut Context<'_>, conn: ConnId) {
///         if self.upstream.on_open(ctx, conn) {
///             self.produce(ctx);
///         }
///     }
///     fn on_drain(&mut self, ctx: &mut Context<'_>, conn: ConnId) {
///         if self.upstream.on_drain(ctx, conn) {
///             self.produce(ctx);
///         }
///     }
///     fn on_close(&mut self, ctx: &mut Context<'_>, conn: ConnId, reason: &CloseReason) {
///         if let Some(q) = ctx.queue_figures(conn) {
///             let lost = q.bytes_queued.saturating_sub(q.bytes_written);
///             eprintln!("{conn} closed ({reason}); {lost} queued bytes never left");
///         }
///         self.upstream.on_close(ctx, conn, reason);
///     }
///     fn on_timer(&mut self, ctx: &mut Context<'_>, timer: TimerId, data: u64) {
///         if self.upstream.on_timer(ctx, timer, data) {
///             return;
///         }
///         // The application's own timers.
///     }
///     fn on_message(&mut self, _: &mut Context<'_>, conn: ConnId, _msg: RawJson) {
///         if self.upstream.conn() == Some(conn) {
///             // Something the collector said (an acknowledgement, an error frame).
///         }
///     }
/// }
///
/// let feed = Feed {
///     upstream: Reconnecting::new("127.0.0.1:7878".parse().unwrap(), ReconnectConfig::default()),
///     next: 0,
/// };
/// Reactor::new(Config::default(), feed)?.run()?;
/// # Ok::<(), std::io::Error>(())
/// ```
///
/// The peer's half-close is the handler's `on_peer_shutdown`, whose default closes the
/// connection once everything queued is delivered; its `on_close` then brings a reconnection.
/// A reactor's shutdown closes the stream for good when it closes the connection; if the
/// stream may be between connections then (waiting to reconnect), call
/// [`Reconnecting::close`] as you start the shutdown, or a reconnection may open during the
/// grace period and hold the reactor until it ends.
pub struct Reconnecting {
    addr: SocketAddr,
    /// The connection being made, open, or (after [`Reconnecting::close`]) closing: whichever
    /// `on_close` is still to come.
    conn: Option<ConnId>,
    /// `conn` has opened and is not being closed by us.
    open: bool,
    started: bool,
    closed: bool,
    backoff: Backoff,
    /// The pending reconnection timer, recognised by its id alone.
    reconnect: Option<TimerId>,
    figures: ReconnectFigures,
}

impl fmt::Debug for Reconnecting {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Reconnecting")
            .field("addr", &self.addr)
            .field("conn", &self.conn())
            .field("figures", &self.figures())
            .finish_non_exhaustive()
    }
}

impl Reconnecting {
    /// A stream to `addr`. Nothing happens until [`Reconnecting::start`].
    pub fn new(addr: SocketAddr, config: ReconnectConfig) -> Reconnecting {
        Reconnecting {
            addr,
            conn: None,
            open: false,
            started: false,
            closed: false,
            backoff: Backoff::new(config.backoff_min, config.backoff_max),
            reconnect: None,
            figures: ReconnectFigures::default(),
        }
    }

    /// The address it connects to.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Connects, the first time (reconnections are automatic). Later calls do nothing, and so
    /// does a call after [`Reconnecting::close`].
    pub fn start(&mut self, ctx: &mut Context<'_>) {
        if self.started || self.closed {
            return;
        }
        self.started = true;
        self.connect(ctx);
    }

    fn connect(&mut self, ctx: &mut Context<'_>) {
        match ctx.connect(self.addr) {
            Ok(id) => {
                self.conn = Some(id);
                self.open = false;
            }
            Err(e) => {
                log::debug!("reconnecting: connect to {} failed: {e}", self.addr);
                self.figures.connect_failures += 1;
                self.schedule_reconnect(ctx);
            }
        }
    }

    fn schedule_reconnect(&mut self, ctx: &mut Context<'_>) {
        let delay = self.backoff.next_delay();
        self.figures.backoff = Some(delay);
        self.reconnect = Some(ctx.set_timer(delay, 0));
    }

    /// The live connection: open, and not closed by [`Reconnecting::close`]. Use it to tell
    /// this stream's messages apart in `on_message`, or to read its figures.
    pub fn conn(&self) -> Option<ConnId> {
        self.conn.filter(|_| self.open)
    }

    /// Whether a connection is open now (sends are accepted).
    pub fn is_connected(&self) -> bool {
        self.open
    }

    /// Whether [`Reconnecting::close`] was called.
    pub fn is_closed(&self) -> bool {
        self.closed
    }

    /// Encodes `msg` as JSON and queues it as one frame on the live connection, as
    /// [`Context::send`] does. While there is no connection: [`SendError::Closed`], nothing
    /// queued; stop producing until `on_open` returns true.
    pub fn send<T: Serialize + ?Sized>(
        &mut self,
        ctx: &mut Context<'_>,
        msg: &T,
    ) -> Result<Pressure, SendError> {
        let conn = self.conn().ok_or(SendError::Closed)?;
        ctx.send(conn, msg)
    }

    /// Queues `payload`, already one JSON value as UTF-8 text, as one frame on the live
    /// connection ([`Context::send_payload`]). [`SendError::Closed`] while there is none.
    pub fn send_payload(
        &mut self,
        ctx: &mut Context<'_>,
        payload: impl Into<Bytes>,
    ) -> Result<Pressure, SendError> {
        let conn = self.conn().ok_or(SendError::Closed)?;
        ctx.send_payload(conn, payload)
    }

    /// Pass [`crate::Handler::on_open`] here. Returns true if it was this stream's connection,
    /// now open: resume producing. The backoff starts again from `backoff_min` once the
    /// connection has stayed open for `backoff_max`.
    pub fn on_open(&mut self, ctx: &mut Context<'_>, conn: ConnId) -> bool {
        if self.conn != Some(conn) {
            return false;
        }
        if self.closed {
            return true; // closed while connecting; its on_close follows
        }
        self.open = true;
        // Not a success yet: only a connection that stays open for `backoff_max` restarts
        // the delays (see `backoff`), so a server that drops every connection is asked less
        // and less often.
        self.backoff.opened(ctx.now());
        self.figures.backoff = None;
        self.figures.connects += 1;
        if self.figures.connects > 1 {
            self.figures.reconnects += 1;
        }
        true
    }

    /// Pass [`crate::Handler::on_drain`] here. Returns true if it was this stream's connection:
    /// its queue fell to the low-water mark, so resume producing.
    pub fn on_drain(&mut self, ctx: &mut Context<'_>, conn: ConnId) -> bool {
        let _ = ctx;
        self.conn == Some(conn)
    }

    /// Pass [`crate::Handler::on_close`] here. Returns true if it was this stream's
    /// connection (or connect); a reconnection is then scheduled, with backoff, unless
    /// [`Reconnecting::close`] was called or the reactor is shutting down
    /// ([`CloseReason::Shutdown`], which closes the stream for good). Whatever was still
    /// queued on it is lost.
    pub fn on_close(&mut self, ctx: &mut Context<'_>, conn: ConnId, reason: &CloseReason) -> bool {
        if self.conn != Some(conn) {
            return false;
        }
        self.backoff.closed(ctx.now());
        // Figures are still readable inside on_close: what never reached the kernel?
        let unsent = ctx
            .queue_figures(conn)
            .map_or(0, |q| q.bytes_queued.saturating_sub(q.bytes_written));
        self.figures.unsent_bytes += unsent;
        if self.open {
            self.figures.lost += 1;
        } else if !self.closed {
            self.figures.connect_failures += 1;
        }
        log::debug!(
            "reconnecting: {conn} to {} closed ({reason}); {unsent} queued bytes lost",
            self.addr
        );
        self.conn = None;
        self.open = false;
        if matches!(reason, CloseReason::Shutdown) {
            // The reactor is shutting down: a new connection would only hold it up.
            self.closed = true;
        }
        if !self.closed {
            self.schedule_reconnect(ctx);
        }
        true
    }

    /// Pass [`crate::Handler::on_timer`] here, every timer. Returns true if it was this
    /// stream's reconnection timer (and then reconnects); the application's own timers, whatever
    /// their data, return false.
    pub fn on_timer(&mut self, ctx: &mut Context<'_>, timer: TimerId, data: u64) -> bool {
        let _ = data;
        if self.reconnect != Some(timer) {
            return false;
        }
        self.reconnect = None;
        self.figures.backoff = None;
        if !self.closed {
            self.connect(ctx);
        }
        true
    }

    /// Stops for good: no more reconnections, and the live connection (or the connect in
    /// progress) is closed gracefully, so what is queued on it is still delivered. Its
    /// `on_close` still comes, and returns true.
    pub fn close(&mut self, ctx: &mut Context<'_>) {
        self.closed = true;
        self.open = false;
        if let Some(timer) = self.reconnect.take() {
            ctx.cancel_timer(timer);
        }
        self.figures.backoff = None;
        if let Some(conn) = self.conn {
            ctx.close(conn);
        }
    }

    /// The stream's counters.
    pub fn figures(&self) -> ReconnectFigures {
        ReconnectFigures {
            retries: self.backoff.attempt_at(Instant::now()),
            ..self.figures
        }
    }
}
