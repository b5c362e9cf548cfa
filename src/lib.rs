//! # highwater
//!
//! Length-prefixed JSON over raw TCP, on a hand-written [`mio`] reactor, with backpressure
//! you can see.
//!
//! A fast producer and a slow consumer meet over TCP. Backpressure is the chain of signals
//! that keeps the producer from burying the consumer (or itself) in bytes. This page walks
//! that chain link by link, in the order the bytes flow, and names the function where each
//! link lives, so the reactor can be studied in that order. (Functions in `engine/`,
//! `conn/` and `reactor.rs` are private; read them in the source. The last section of this
//! page is a map of the files.)
//!
//! ## 1. The application produces: [`Context::send`]
//!
//! A handler calls [`Context::send`] (or [`Context::send_payload`] for bytes that are already
//! JSON), which calls `Engine::send_json` (or `Engine::send_payload`); both go through
//! `Engine::push` (`engine/send.rs`), which finds the connection and hands the frame to
//! `WriteQueue::push_json` / `WriteQueue::push_payload` (`write_queue.rs`), which encode it
//! straight into the queue's buffer ([`frame::encode_json`]) and count it in bytes. Nothing is
//! written yet.
//!
//! ## 2. The write queue judges: [`Pressure`]
//!
//! When the queue reaches its high-water mark the send returns [`Pressure::High`]: the frame
//! was queued, but the producer should stop (Node's `write()` returning `false`). Past the
//! hard limit the send fails with [`SendError::QueueFull`] and nothing is queued: the
//! producer that ignores `High` is stopped here, before it exhausts memory.
//!
//! On the receiving side of a server the same mark is a defence: `Engine::push` also pauses
//! *reading* the connection ([`PauseReason::WriteQueue`]), so a peer that sends requests but
//! never reads the replies cannot make us buffer them.
//!
//! ## 3. The kernel's send buffer: `Engine::flush`
//!
//! At the end of every turn (`Reactor::settle`), `Engine::flush_dirty` (`engine/flush.rs`) calls
//! `Engine::flush` for every connection touched this turn, which calls `Connection::flush`
//! (`conn/write.rs`): `WriteQueue::write_to` hands as
//! many queued frames as fit to one `writev`, and again while the kernel takes them all, up to
//! the turn's write budget ([`WRITES_PER_TURN`], [`WRITE_BYTES_PER_TURN`]; the rest goes out
//! next turn, which comes without sleeping). When the kernel's send buffer is full the write
//! returns `WouldBlock`; the bytes stay queued and `Connection::interest` (`conn/mod.rs`) keeps
//! WRITABLE registered.
//! That is the only place interest is decided: WRITABLE exactly while the queue is non-empty.
//! [`kernel_figures`] shows this link: [`KernelFigures::unsent_bytes`].
//!
//! ## 4. TCP: the window
//!
//! The kernel sends only as much as the peer's advertised receive window allows
//! ([`KernelFigures::peer_window`]). A consumer that does not read lets its receive buffer
//! fill ([`KernelFigures::unread_bytes`]) and the window it advertises shrinks to zero.
//!
//! ## 5. The consumer stops reading: [`Context::pause_reading`]
//!
//! A slow consumer calls [`Context::pause_reading`]; `Engine::pause` adds
//! [`PauseReason::Application`], and `Connection::interest` drops READABLE, which
//! `Engine::sync_interest` (`engine/flush.rs`) tells the poller. Paused means *not asking*, not ignoring: no
//! event loop spins, and the unread bytes stay in the kernel, which is what closes the window.
//! [`Config::queue_budget`] does the same across connections (`engine/budget.rs`): when everything
//! held for peers (queues and read buffers) reaches the budget, the connections holding more
//! than their fair share of it stop reading ([`PauseReason::Budget`]), and a large frame's
//! read buffer waits for room before it is allocated ([`PauseReason::ReadBudget`]).
//!
//! ## 6. And back: [`Context::resume_reading`] → [`Handler::on_drain`]
//!
//! `Engine::resume` clears the reason, and reading restarts by one of two paths. If the reactor
//! already knows of input (an earlier event left `readable` set, or frame bytes are
//! buffered), the connection goes on the ready list and `Engine::read` reads it without an
//! event. Otherwise the end of the turn re-registers READABLE (`Engine::sync_interest`), and
//! epoll reports what already waits in the kernel (bytes, or the peer's FIN) as a new event:
//! `Engine::conn_event`, then `Engine::read` (both `engine/read.rs`). The consumer's window reopens, the
//! producer's kernel takes its bytes, and the producer's `Engine::flush` sees its queue fall to
//! the low-water mark: `WriteQueue::take_drain` reports the drain once, `flush` queues a
//! `Notice::Drain`, and `Reactor::deliver_notices`, in the same end-of-turn `Reactor::settle`,
//! calls [`Handler::on_drain`] (unless the queue is back at high-water by then: the next drain
//! answers that). The producer produces again (Node's `'drain'`).
//!
//! The order of a turn, step by step with each step's budget and function, is written once,
//! in `reactor.rs`'s module docs.
//!
//! ## Readiness is edge-triggered
//!
//! mio reports that a socket *became* readable or writable, once. Code that reads "some" and
//! returns will never hear from that socket again. `Engine::read` reads until the kernel has
//! nothing more (`WouldBlock`, or on Linux a short read, after which epoll announces any new
//! byte), or remembers that the socket is still readable (a paused connection, a connection out of
//! budget for this turn: [`READS_PER_TURN`], [`FRAMES_PER_TURN`], counted per turn however
//! often the turn visits it) and comes back to it through the ready list without waiting for an
//! event. Writes likewise: a socket that took everything is still writable, so a connection
//! out of write budget is carried to the next turn, not left for an event that will not come.
//!
//! ## The rest
//!
//! - The wire format is in [`frame`]: a 4-byte big-endian length, then that many bytes of
//!   UTF-8 JSON. `PROTOCOL.md`, at the root of the repository, describes it for peers in
//!   other languages, with the error frames and the examples' command lines. Oversized lengths are rejected from the header alone ([`frame::check_header`]).
//! - What a payload becomes is the handler's message type ([`Decode`]): `serde_json::Value`,
//!   your own `Deserialize` type, or [`RawJson`] (validated, not parsed, not copied).
//! - Other threads reach a running reactor through a [`Handle`].
//! - Past the socket: [`Workers`] move slow work off the reactor behind a bounded pool (a full
//!   pool pauses the connections that feed it); [`RequestClient`] / [`Requests`] match
//!   replies to requests under a pending cap, with deadlines and reconnection; and
//!   [`ReactorGroup`] runs one reactor per core.
//! - Every limit is in [`Config`]; every figure is in [`ConnFigures`], [`ReactorFigures`],
//!   [`KernelFigures`], [`ProcessFigures`], [`WorkerFigures`] and [`RequestFigures`].
//!
//! ## Where things live
//!
//! | place | what it is |
//! |---|---|
//! | `reactor.rs` | the poll loop; the seven steps of a turn, each with its budget; where the handler is called |
//! | `engine/` | the reactor's state, a file per part: `conns.rs` (slab and lists), `accept.rs`, `read.rs` (the read loop), `send.rs`, `links.rs`, `settings.rs`, `budget.rs`, `flush.rs`, `close.rs`, `timeouts.rs`, `shutdown.rs` |
//! | `conn/` | one connection as a state machine (life, read side, write side, pauses, readiness) over a `Transport`; `conn/tests.rs` has a test per transition |
//! | `sys.rs` | every `unsafe` block (the crate denies `unsafe_code` elsewhere) |
//! | `frame.rs`, `write_queue.rs`, `read_buf.rs` | bytes: the wire format, the write queue and its marks, the read buffer |
//! | `fanout.rs`, `engine/links.rs` | backpressure across connections: a broker's topic, a relay's hop |
//! | `workers.rs`, `request.rs`, `reconnecting.rs`, `backoff.rs`, `group.rs` | backpressure past the socket: a worker pool, a request client and a streaming client that reconnect with back-off, one reactor per core |
//!
//! Time enters once per turn: the reactor reads the clock after polling and hands it to the
//! engine (`Engine::begin_turn`), which never reads it itself, so `engine/tests.rs` drives
//! timeouts, back-off and shutdown with a clock of its own.
//!
//! ## Example
//!
//! ```no_run
//! use highwater::{Config, ConnId, Context, Handler, RawJson, Reactor};
//!
//! struct Echo;
//!
//! impl Handler for Echo {
//!     type Message = RawJson;
//!     fn on_message(&mut self, ctx: &mut Context<'_>, conn: ConnId, msg: RawJson) {
//!         let _ = ctx.send_payload(conn, msg.into_bytes());
//!     }
//! }
//!
//! let mut reactor = Reactor::new(Config::default(), Echo)?;
//! let addr = reactor.listen("127.0.0.1:0".parse().unwrap())?;
//! println!("listening on {addr}");
//! reactor.run()?;
//! # Ok::<(), std::io::Error>(())
//! ```
#![deny(missing_docs)]
#![deny(missing_debug_implementations)]
#![deny(clippy::cast_possible_truncation)]
#![deny(unsafe_op_in_unsafe_fn)]
// Every `unsafe` block lives in `sys.rs`, which allows it for itself alone.
#![deny(unsafe_code)]

mod backoff;
mod buf_pool;
mod config;
mod conn;
mod context;
mod doorbell;
mod engine;
mod fanout;
pub mod frame;
mod group;
mod handle;
mod handler;
mod kernel;
mod message;
mod reactor;
mod read_buf;
mod reconnecting;
mod reply;
mod request;
mod stats;
mod sys;
mod timer;
mod validate;
mod workers;
mod write_queue;

/// The `bytes` crate, whose [`bytes::Bytes`] payloads the API takes and returns: use this one,
/// and the versions always match.
pub use bytes;
pub use config::{Config, ConfigError};
pub use conn::{ConnId, ConnSettings, ConnState, PauseReason, Paused};
pub use context::Context;
pub use doorbell::Doorbell;
pub use fanout::{Delivery, FanOut, SlowPolicy};
pub use frame::{DEFAULT_MAX_FRAME, EncodeError, FrameError, HEADER_LEN};
pub use group::{ReactorGroup, ThreadStart};
pub use handle::{Handle, HandleError};
pub use handler::{CloseReason, Handler, TimeoutWarning};
pub use kernel::{KernelFigures, kernel_figures};
pub use message::{Decode, DecodeError, MAX_DEPTH, RawJson, WithRaw};
pub use reactor::{
    FRAMES_PER_TURN, READS_PER_TURN, Reactor, WRITE_BYTES_PER_TURN, WRITES_PER_TURN,
};
pub use reconnecting::{ReconnectConfig, ReconnectFigures, Reconnecting};
pub use request::{
    Completion, ID_FIELD, RequestClient, RequestConfig, RequestError, RequestFigures, Requests,
};
pub use stats::{ConnFigures, ProcessFigures, ReactorFigures, process_figures};
pub use timer::TimerId;
pub use workers::{JobPanicked, WorkerFigures, Workers};
pub use write_queue::{Pressure, QueueFigures, SendError};

/// Crate internals: not covered by semver; for the crate's own tests and benches.
///
/// Nothing here is part of the public API; it may change or go in any release, patch releases
/// included. `tests/allocations.rs` counts the allocations of a `WriteQueue` directly, so it
/// needs to build one. The crate's tests and benches enable the `internals` feature through a
/// dev-dependency of the crate on itself (see `Cargo.toml`); a plain dependency on highwater
/// never sees this module.
#[cfg(feature = "internals")]
#[doc(hidden)]
pub mod internals {
    pub use crate::write_queue::{Marks, WriteQueue};
}
