//! # highwater
//!
//! Length-prefixed JSON over raw TCP, on a hand-written [`mio`] reactor, with backpressure
//! you can see.
//!
//! A fast producer and a slow consumer meet over TCP. Backpressure is the chain of signals
//! that keeps the producer from burying the consumer (or itself) in bytes. highwater makes
//! every link of that chain a named function you can read, in the order the bytes flow:
//!
//! ```text
//!  PRODUCER                                                 CONSUMER
//!  Context::send ──► WriteQueue::push_json                  Context::pause_reading
//!    │  (queue ≥ high-water: Pressure::High, stop)            │  Engine::pause
//!    ▼                                                        ▼
//!  Engine::flush ──► WriteQueue::write_to (writev)          Connection::interest
//!    │  WouldBlock: kernel send buffer full                   │  READABLE dropped
//!    ▼                                                        ▼
//!  kernel send buffer ═════ TCP, window ═════► kernel receive buffer fills, window → 0
//!    ▲
//!    │  window reopens when the consumer reads (Engine::resume → ready list → Reactor::read)
//!  Engine::flush: queue ≤ low-water → Handler::on_drain: produce again
//! ```
//!
//! - The wire format is in [`frame`]: a 4-byte big-endian length, then that many bytes of
//!   UTF-8 JSON. Oversized lengths are rejected from the header alone ([`frame::check_header`]).
//! - What a payload becomes is chosen by the handler's message type ([`Decode`]):
//!   `serde_json::Value`, your own `Deserialize` type, or [`RawJson`] (validated, not parsed).
//! - The application implements [`Handler`] and acts through [`Context`]; other threads use
//!   a [`Handle`].
//! - The reactor's limits are all in [`Config`].
//!
//! ## Readiness is edge-triggered
//!
//! mio reports that a socket *became* readable or writable, once. Code that reads "some" and
//! returns will never hear from that socket again. The reactor reads until `WouldBlock`, or
//! remembers that the socket is still readable (a paused connection, a connection out of
//! budget for this turn) and comes back to it without waiting for an event. See
//! `conn.rs` and `Reactor::read`.
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
#![deny(unsafe_op_in_unsafe_fn)]

mod accept;
mod buf_pool;
mod config;
mod conn;
mod context;
mod engine;
pub mod frame;
mod handle;
mod handler;
mod message;
mod reactor;
mod reply;
mod shutdown;
mod stats;
mod timeouts;
mod timer;
mod write_queue;

pub use config::{Config, ConfigError};
pub use conn::{ConnId, PauseReason, Paused, State};
pub use context::Context;
pub use frame::{DEFAULT_MAX_FRAME, EncodeError, FrameError, HEADER_LEN};
pub use handle::{Handle, HandleError, Job};
pub use handler::{CloseReason, Handler};
pub use message::{Decode, DecodeError, MAX_DEPTH, RawJson};
pub use reactor::{FRAMES_PER_TURN, READS_PER_TURN, Reactor};
pub use stats::{ConnFigures, ReactorFigures};
pub use timer::TimerId;
pub use write_queue::{Marks, Pressure, QueueFigures, SendError, WriteQueue};
