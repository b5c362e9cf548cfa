//! What the application implements: the [`Handler`] callbacks, and why a connection closed.
//!
//! Every callback runs on the reactor thread and must return quickly: while it runs, no other
//! connection is served. Work that takes time belongs on another thread; the reply comes back
//! through a [`crate::Handle`].
//!
//! Callbacks never nest. Anything a callback causes (another connection closing, a queue
//! draining) is reported by a later callback, after the current one has returned.

use std::fmt;
use std::io;
use std::time::Duration;

use crate::conn::ConnId;
use crate::context::Context;
use crate::message::{Decode, DecodeError};
use crate::timer::TimerId;

/// The application's side of the reactor.
///
/// Only [`Handler::on_message`] is required. A minimal echo server:
///
/// ```no_run
/// use highwater::{Config, ConnId, Context, Handler, RawJson, Reactor};
///
/// struct Echo;
///
/// impl Handler for Echo {
///     type Message = RawJson;
///
///     fn on_message(&mut self, ctx: &mut Context<'_>, conn: ConnId, msg: RawJson) {
///         // The reply is queued; if that took the queue past its high-water mark, the
///         // reactor stops reading this connection until the peer catches up.
///         let _ = ctx.send_payload(conn, msg.into_bytes());
///     }
/// }
///
/// let mut reactor = Reactor::new(Config::default(), Echo)?;
/// let addr = reactor.listen("127.0.0.1:0".parse().unwrap())?;
/// println!("listening on {addr}");
/// reactor.run()?;
/// # Ok::<(), std::io::Error>(())
/// ```
pub trait Handler {
    /// What each payload is decoded into: `serde_json::Value`, a `Deserialize` type of
    /// yours, or [`crate::RawJson`] to validate without building anything.
    type Message: Decode;

    /// The reactor is about to start polling. Set up timers or outbound connections here.
    fn on_start(&mut self, ctx: &mut Context<'_>) {
        let _ = ctx;
    }

    /// A connection is ready: accepted, or an outbound connect completed.
    fn on_open(&mut self, ctx: &mut Context<'_>, conn: ConnId) {
        let _ = (ctx, conn);
    }

    /// One message arrived. Messages from one connection arrive in order.
    fn on_message(&mut self, ctx: &mut Context<'_>, conn: ConnId, msg: Self::Message);

    /// A payload was not valid JSON; the connection stays open. The default queues the
    /// contract's `{"error":"invalid_json",…}` reply ([`DecodeError::reply`]) at once. A
    /// handler whose other replies are still being computed (on [`crate::Workers`], say)
    /// overrides this to send it in its turn, so that replies keep request order: error frames
    /// carry no id, and order is how a client tells which request failed. A handler that
    /// overrides this sends the reply itself.
    fn on_bad_message(&mut self, ctx: &mut Context<'_>, conn: ConnId, error: &DecodeError) {
        log::debug!("{conn}: {error}");
        if let Err(e) = ctx.send_payload(conn, error.reply()) {
            log::debug!("{conn}: invalid_json reply not queued: {e}");
        }
    }

    /// The write queue fell to its low-water mark after reaching its high-water mark: the
    /// producer may resume (Node's `'drain'`).
    ///
    /// Called at the end of the turn whose flush saw the fall, never inside another callback.
    /// Not called if the connection closed meanwhile (`on_close` comes instead), nor if a send
    /// made after the fall (from a callback delivered first) took the queue back to high-water:
    /// that send returned [`crate::Pressure::High`], and the next drain answers it. So every
    /// `Pressure::High` is answered by one `on_drain`, heard while the queue is below
    /// high-water (not necessarily still at low-water: sends since the fall may have added to
    /// it). The order of a turn is in `reactor.rs`.
    fn on_drain(&mut self, ctx: &mut Context<'_>, conn: ConnId) {
        let _ = (ctx, conn);
    }

    /// The peer shut down its sending side (half-close); every message it sent has been
    /// delivered. The connection can still send. The default closes it once everything
    /// queued has been delivered.
    fn on_peer_shutdown(&mut self, ctx: &mut Context<'_>, conn: ConnId) {
        ctx.close(conn);
    }

    /// The connection is closed; `conn` is stale from now on. Called exactly once for every
    /// connection that was opened or whose connect was attempted.
    fn on_close(&mut self, ctx: &mut Context<'_>, conn: ConnId, reason: &CloseReason) {
        let _ = (ctx, conn, reason);
    }

    /// A connection is halfway to a timeout close: no progress for half the idle timeout, or
    /// none of our queued bytes taken for half the write timeout. Once per quiet period. A
    /// chance to act before the close: send a heartbeat, shed what is queued, log, or close
    /// it now. The default does nothing; the close, if it comes, still reaches
    /// [`Handler::on_close`] with its reason.
    fn on_timeout_warning(
        &mut self,
        ctx: &mut Context<'_>,
        conn: ConnId,
        warning: &TimeoutWarning,
    ) {
        let _ = ctx;
        log::debug!("{conn}: {warning:?}");
    }

    /// A timer set with [`Context::set_timer`] expired.
    fn on_timer(&mut self, ctx: &mut Context<'_>, timer: TimerId, data: u64) {
        let _ = (ctx, timer, data);
    }

    /// Another thread called [`crate::Handle::notify`] with `value`.
    fn on_notify(&mut self, ctx: &mut Context<'_>, value: u64) {
        let _ = (ctx, value);
    }
}

/// What [`Handler::on_timeout_warning`] is told: which timeout is halfway, and how long is
/// left before it closes the connection if nothing moves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimeoutWarning {
    /// No frame in and no bytes taken by the peer for `quiet`
    /// ([`crate::Config::idle_timeout`] / [`crate::Config::outbound_idle_timeout`]).
    Idle {
        /// How long the connection has made no progress.
        quiet: Duration,
        /// When the idle timeout closes it, if nothing moves before.
        closes_in: Duration,
    },
    /// The peer has taken none of our `queued` bytes for `quiet`
    /// ([`crate::Config::write_timeout`]).
    Write {
        /// Bytes waiting in the connection's write queue.
        queued: usize,
        /// How long the peer has taken nothing.
        quiet: Duration,
        /// When the write timeout closes it (a reset), if the peer takes nothing before.
        closes_in: Duration,
    },
}

/// Why a connection closed.
#[derive(Debug)]
pub enum CloseReason {
    /// The peer finished sending and everything we queued was delivered.
    PeerClosed,
    /// The application closed it with [`Context::close`] and everything queued was delivered.
    Closed,
    /// The application called [`Context::abort`]; queued bytes were discarded and the peer
    /// was sent a reset.
    Aborted {
        /// Bytes that were still queued.
        discarded: usize,
    },
    /// A socket error: connection reset, broken pipe, …
    Io(io::Error),
    /// The peer announced a frame above the limit; `frame_too_large` was sent.
    FrameTooLarge {
        /// The configured maximum.
        limit: usize,
        /// What the peer announced.
        got: u64,
    },
    /// The peer closed its side in the middle of a frame.
    Truncated {
        /// Bytes the frame still needed.
        missing: usize,
    },
    /// No progress in either direction within the idle timeout; on an accepted connection,
    /// `idle_timeout` was sent.
    IdleTimeout,
    /// The peer stopped taking our bytes (see [`crate::Config::write_timeout`]); queued
    /// bytes were discarded and the peer was sent a reset.
    WriteTimeout {
        /// Bytes that were still queued.
        discarded: usize,
    },
    /// An outbound connect failed; `on_open` was never called.
    ConnectFailed(io::Error),
    /// The reactor shut down.
    Shutdown,
}

impl CloseReason {
    /// A short machine-readable name (`"peer_closed"`, `"write_timeout"`, …) for logs.
    pub fn name(&self) -> &'static str {
        match self {
            CloseReason::PeerClosed => "peer_closed",
            CloseReason::Closed => "closed",
            CloseReason::Aborted { .. } => "aborted",
            CloseReason::Io(_) => "io_error",
            CloseReason::FrameTooLarge { .. } => "frame_too_large",
            CloseReason::Truncated { .. } => "truncated",
            CloseReason::IdleTimeout => "idle_timeout",
            CloseReason::WriteTimeout { .. } => "write_timeout",
            CloseReason::ConnectFailed(_) => "connect_failed",
            CloseReason::Shutdown => "shutdown",
        }
    }

    /// True for the orderly endings: everything queued reached the kernel.
    pub fn is_clean(&self) -> bool {
        matches!(self, CloseReason::PeerClosed | CloseReason::Closed)
    }
}

impl fmt::Display for CloseReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CloseReason::PeerClosed => write!(f, "the peer closed the connection"),
            CloseReason::Closed => write!(f, "closed by the application"),
            CloseReason::Aborted { discarded } => {
                write!(
                    f,
                    "aborted by the application ({discarded} queued bytes discarded)"
                )
            }
            CloseReason::Io(e) => write!(f, "socket error: {e}"),
            CloseReason::FrameTooLarge { limit, got } => {
                write!(f, "frame too large ({got} bytes announced, limit {limit})")
            }
            CloseReason::Truncated { missing } => {
                write!(f, "the peer closed mid-frame ({missing} bytes missing)")
            }
            CloseReason::IdleTimeout => {
                write!(f, "no progress in either direction within the idle timeout")
            }
            CloseReason::WriteTimeout { discarded } => write!(
                f,
                "the peer did not read within the write timeout ({discarded} queued bytes discarded)"
            ),
            CloseReason::ConnectFailed(e) => write!(f, "connect failed: {e}"),
            CloseReason::Shutdown => write!(f, "the reactor shut down"),
        }
    }
}
