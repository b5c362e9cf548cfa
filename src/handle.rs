//! Reaching the reactor from other threads: a bounded command channel and a `mio::Waker`.
//!
//! The reactor thread owns every socket, so other threads do not touch sockets; they send a
//! [`Command`] and wake the poller. The channel is bounded on purpose: a thread that produces
//! commands faster than the reactor applies them is told ([`HandleError::Full`]) instead of
//! growing a queue nobody measures. That is backpressure too, one link further up.
//!
//! Bounded twice: in commands (a closure or a doorbell costs little, but not nothing) and in
//! payload bytes (16 threads each sending 256 KiB payloads would otherwise park a gigabyte
//! here, out of sight of `Config::queue_budget`). Both are counted in atomics that handles
//! reserve before sending and the reactor releases as it takes each command ([`Inbox`]);
//! the engine adds the bytes to its budget ([`Inbox::bytes`]). Control commands (close,
//! shutdown, stop) skip the bounds: they free resources, they are a few bytes each, and a
//! reactor that is behind is exactly when one must be able to stop it. They travel in the
//! same FIFO as everything else, so a close still follows the sends queued before it.
//!
//! Invariant: once the reactor's loop has ended ([`Inbox::close`]), every handle call fails
//! with [`HandleError::Stopped`]; nothing is accepted that no one will read.

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc::{Receiver, SendError, Sender, TryRecvError, channel as unbounded};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use mio::Waker;
use serde::Serialize;

use crate::conn::ConnId;
use crate::context::Context;
use crate::frame::{self, EncodeError, HEADER_LEN};

/// Payload bytes the command channel may hold when `Config::queue_budget` is off (with a
/// budget, the budget is the bound).
pub(crate) const COMMAND_BYTES_WITHOUT_BUDGET: usize = 64 * 1024 * 1024;

/// A closure run on the reactor thread with full access to the [`Context`].
pub(crate) type Job = Box<dyn for<'a> FnOnce(&mut Context<'a>) + Send>;

/// What another thread can ask of the reactor.
pub(crate) enum Command {
    /// Queue a payload (already JSON text) on a connection.
    Send(ConnId, Bytes),
    /// Close a connection gracefully.
    Close(ConnId),
    /// Begin a graceful shutdown with this grace period.
    Shutdown(Duration),
    /// Stop at once, dropping every connection.
    Stop,
    /// Run a closure on the reactor thread.
    Run(Job),
    /// Call the handler's `on_notify` with this value.
    Notify(u64),
    /// Take over a connection accepted by another reactor of the same group.
    Adopt(std::net::TcpStream, std::net::SocketAddr),
}

impl Command {
    /// Control commands are never refused for want of room (see the module docs).
    fn is_control(&self) -> bool {
        matches!(
            self,
            Command::Close(_) | Command::Shutdown(_) | Command::Stop
        )
    }

    /// Payload bytes counted against the byte bound.
    fn bytes(&self) -> usize {
        match self {
            Command::Send(_, payload) => payload.len(),
            _ => 0,
        }
    }
}

/// What the handles and the reactor's end of the channel share.
#[derive(Debug)]
struct Shared {
    /// Commands waiting that count against `max_commands` (all but control commands).
    commands: AtomicUsize,
    /// Payload bytes of the `Send` commands waiting.
    bytes: AtomicUsize,
    /// The reactor's loop has ended: nothing sent now would ever be read.
    stopped: AtomicBool,
    max_commands: usize,
    max_bytes: usize,
    max_frame: usize,
}

impl Shared {
    /// Takes room for `cmd`, or refuses it whole.
    fn reserve(&self, cmd: &Command) -> Result<(), HandleError> {
        if cmd.is_control() {
            return Ok(());
        }
        if self.commands.fetch_add(1, Ordering::AcqRel) >= self.max_commands {
            self.commands.fetch_sub(1, Ordering::AcqRel);
            return Err(HandleError::Full);
        }
        let n = cmd.bytes();
        if n > 0 {
            // One payload always fits in an empty channel, so a frame larger than the bound
            // (but within `max_frame`) can still be sent, alone.
            let before = self.bytes.fetch_add(n, Ordering::AcqRel);
            if before > 0 && before + n > self.max_bytes {
                self.bytes.fetch_sub(n, Ordering::AcqRel);
                self.commands.fetch_sub(1, Ordering::AcqRel);
                return Err(HandleError::Full);
            }
        }
        Ok(())
    }

    /// Gives back the room `cmd` took: it has left the channel.
    fn release(&self, cmd: &Command) {
        if cmd.is_control() {
            return;
        }
        self.commands.fetch_sub(1, Ordering::AcqRel);
        let n = cmd.bytes();
        if n > 0 {
            self.bytes.fetch_sub(n, Ordering::AcqRel);
        }
    }
}

/// The reactor's end of the command channel.
pub(crate) struct Inbox {
    rx: Receiver<Command>,
    shared: Arc<Shared>,
}

impl Inbox {
    /// Takes the next command, giving back the room it held.
    pub(crate) fn try_recv(&self) -> Result<Command, TryRecvError> {
        let cmd = self.rx.try_recv()?;
        self.shared.release(&cmd);
        Ok(cmd)
    }

    /// Payload bytes waiting in the channel: memory the engine counts against its budget.
    pub(crate) fn bytes(&self) -> usize {
        self.shared.bytes.load(Ordering::Acquire)
    }

    /// The loop has ended: handles are refused from now on, and what is waiting is dropped
    /// (it would never run). A command that raced with this may still sit in the channel
    /// until the reactor is dropped; the bounds keep that small.
    pub(crate) fn close(&self) {
        self.shared.stopped.store(true, Ordering::Release);
        while self.try_recv().is_ok() {}
    }
}

/// Why a command did not reach the reactor.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HandleError {
    /// The command channel is full; the reactor is behind. Nothing was queued: retry later or
    /// shed the work.
    Full,
    /// The reactor's loop has ended (or the reactor is gone): nothing will read commands
    /// any more. Nothing was queued.
    Stopped,
    /// The message could not be encoded (see [`EncodeError`]); nothing was queued.
    Encode,
    /// The payload is larger than `Config::max_frame`; the peer would refuse it, so it is
    /// refused here, at once. Nothing was queued.
    TooLarge {
        /// The reactor's `max_frame`.
        limit: usize,
        /// The payload's size.
        got: usize,
    },
    /// [`Handle::notify`] was given a value in the half of `u64` reserved for components'
    /// doorbells ([`crate::Doorbell::RESERVED`] and above), where it could be taken for a
    /// pool's. Nothing was queued.
    Reserved {
        /// The value refused.
        value: u64,
    },
}

impl fmt::Display for HandleError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HandleError::Full => write!(
                f,
                "the reactor's command channel is full (it is behind; retry later or shed load)"
            ),
            HandleError::Stopped => write!(f, "the reactor has stopped"),
            HandleError::Encode => write!(f, "the message could not be encoded as JSON"),
            HandleError::Reserved { value } => write!(
                f,
                "notify value {value:#x} is reserved for components' doorbells (use one below 2^63)"
            ),
            HandleError::TooLarge { limit, got } => write!(
                f,
                "the payload is {got} bytes, above the reactor's {limit}-byte frame limit"
            ),
        }
    }
}

impl std::error::Error for HandleError {}

impl From<EncodeError> for HandleError {
    fn from(e: EncodeError) -> HandleError {
        match e {
            EncodeError::TooLarge { limit, got } => HandleError::TooLarge { limit, got },
            _ => HandleError::Encode,
        }
    }
}

/// A cloneable, `Send` handle to a running reactor.
///
/// Every call returns at once. [`HandleError::Full`] means the reactor is behind: the channel
/// holds 4,096 commands, or payloads up to `Config::queue_budget` bytes (64 MiB without a
/// budget; one payload always fits). Closing, shutting down and stopping are never refused
/// for lack of room. Once the reactor's loop has ended every call returns
/// [`HandleError::Stopped`], even while the `Reactor` value is still alive.
///
/// ```no_run
/// # use highwater::{Config, ConnId, Context, Handler, RawJson, Reactor};
/// # struct Echo;
/// # impl Handler for Echo {
/// #     type Message = RawJson;
/// #     fn on_message(&mut self, _: &mut Context<'_>, _: ConnId, _: RawJson) {}
/// # }
/// let mut reactor = Reactor::new(Config::default(), Echo)?;
/// let handle = reactor.handle();
/// let thread = std::thread::spawn(move || reactor.run());
/// // ... later, from any thread:
/// handle.shutdown(std::time::Duration::from_secs(5)).ok();
/// thread.join().unwrap()?;
/// # Ok::<(), std::io::Error>(())
/// ```
#[derive(Clone)]
pub struct Handle {
    tx: Sender<Command>,
    waker: Arc<Waker>,
    shared: Arc<Shared>,
}

impl fmt::Debug for Handle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Handle").finish_non_exhaustive()
    }
}

/// A channel bounded to `max_commands` commands and `max_bytes` payload bytes (`None`:
/// [`COMMAND_BYTES_WITHOUT_BUDGET`]), for a reactor whose frames are at most `max_frame`.
pub(crate) fn channel(
    waker: Arc<Waker>,
    max_commands: usize,
    max_bytes: Option<usize>,
    max_frame: usize,
) -> (Handle, Inbox) {
    // Unbounded underneath: the bounds are the counters in `Shared`, which control commands
    // may pass.
    let (tx, rx) = unbounded();
    let shared = Arc::new(Shared {
        commands: AtomicUsize::new(0),
        bytes: AtomicUsize::new(0),
        stopped: AtomicBool::new(false),
        max_commands,
        max_bytes: max_bytes.unwrap_or(COMMAND_BYTES_WITHOUT_BUDGET),
        max_frame,
    });
    let inbox = Inbox {
        rx,
        shared: shared.clone(),
    };
    (Handle { tx, waker, shared }, inbox)
}

impl Handle {
    fn submit(&self, cmd: Command) -> Result<(), HandleError> {
        if self.shared.stopped.load(Ordering::Acquire) {
            return Err(HandleError::Stopped);
        }
        self.shared.reserve(&cmd)?;
        if let Err(SendError(cmd)) = self.tx.send(cmd) {
            self.shared.release(&cmd);
            return Err(HandleError::Stopped);
        }
        // A failed wake means the poller is gone; the command will never be read.
        self.waker.wake().map_err(|_| HandleError::Stopped)
    }

    /// Encodes `msg` on this thread and queues it on `conn`. If the connection has closed by
    /// the time the reactor applies it, or its queue is at its hard limit, the message is
    /// dropped and logged: the caller learns about closes from [`crate::Handler::on_close`].
    /// A message that encodes to more than `max_frame` bytes is refused at once
    /// ([`HandleError::TooLarge`]).
    pub fn send<T: Serialize + ?Sized>(&self, conn: ConnId, msg: &T) -> Result<(), HandleError> {
        let mut buf = BytesMut::new();
        frame::encode_json(msg, &mut buf, self.shared.max_frame)?;
        self.submit(Command::Send(conn, buf.split_off(HEADER_LEN).freeze()))
    }

    /// Queues a payload that is already JSON text on `conn`. A payload over `max_frame` is
    /// refused at once ([`HandleError::TooLarge`]).
    pub fn send_payload(&self, conn: ConnId, payload: Bytes) -> Result<(), HandleError> {
        let limit = self.shared.max_frame;
        if payload.len() > limit {
            return Err(HandleError::TooLarge {
                limit,
                got: payload.len(),
            });
        }
        self.submit(Command::Send(conn, payload))
    }

    /// Closes `conn` gracefully (everything queued is delivered first, including sends made
    /// through handles before this call). Never refused for lack of room.
    pub fn close(&self, conn: ConnId) -> Result<(), HandleError> {
        self.submit(Command::Close(conn))
    }

    /// Runs `job` on the reactor thread, with the same [`Context`] a handler gets.
    pub fn run<F>(&self, job: F) -> Result<(), HandleError>
    where
        F: for<'a> FnOnce(&mut Context<'a>) + Send + 'static,
    {
        self.submit(Command::Run(Box::new(job)))
    }

    /// Calls [`crate::Handler::on_notify`] with `value` on the reactor thread: a doorbell for
    /// the application's own cross-thread messages (put the data in your own channel or
    /// shared state, ring with its index or count). Values from [`crate::Doorbell::RESERVED`]
    /// (2^63) up belong to components' doorbells and are refused with
    /// [`HandleError::Reserved`], so the application's can never be taken for a pool's.
    pub fn notify(&self, value: u64) -> Result<(), HandleError> {
        if value >= crate::Doorbell::RESERVED {
            return Err(HandleError::Reserved { value });
        }
        self.submit(Command::Notify(value))
    }

    /// Rings a component's doorbell (any value, reserved ones included).
    pub(crate) fn ring_reserved(&self, value: u64) -> Result<(), HandleError> {
        self.submit(Command::Notify(value))
    }

    /// Hands an accepted connection to this reactor (see [`crate::ReactorGroup`]). Gives the
    /// socket back if the channel is full or the reactor has stopped, so the caller can keep it.
    pub(crate) fn adopt(
        &self,
        stream: std::net::TcpStream,
        peer: std::net::SocketAddr,
    ) -> Result<(), std::net::TcpStream> {
        let cmd = Command::Adopt(stream, peer);
        let refused =
            if self.shared.stopped.load(Ordering::Acquire) || self.shared.reserve(&cmd).is_err() {
                Some(cmd)
            } else {
                match self.tx.send(cmd) {
                    Ok(()) => None,
                    Err(SendError(cmd)) => {
                        self.shared.release(&cmd);
                        Some(cmd)
                    }
                }
            };
        match refused {
            None => {
                let _ = self.waker.wake();
                Ok(())
            }
            Some(Command::Adopt(stream, _)) => Err(stream),
            Some(_) => unreachable!("the command refused is the one built above"),
        }
    }

    /// Graceful shutdown: stop accepting, finish reading what peers already sent, deliver
    /// everything queued, close; connections still open after `grace` are dropped. A grace too
    /// long to add to the clock (`Duration::MAX`) means no deadline: `run()` returns when the
    /// last connection has closed. Never refused for lack of room.
    pub fn shutdown(&self, grace: Duration) -> Result<(), HandleError> {
        self.submit(Command::Shutdown(grace))
    }

    /// Stops the reactor at once; open connections are dropped without flushing. Commands
    /// sent before it are applied first (one FIFO). Never refused for lack of room.
    pub fn stop(&self) -> Result<(), HandleError> {
        self.submit(Command::Stop)
    }
}
