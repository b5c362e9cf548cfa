//! Reaching the reactor from other threads: a bounded command channel and a `mio::Waker`.
//!
//! The reactor thread owns every socket, so other threads do not touch sockets; they send a
//! [`Command`] and wake the poller. The channel is bounded on purpose: a thread that produces
//! commands faster than the reactor applies them is told ([`HandleError::Full`]) instead of
//! growing a queue nobody measures. That is backpressure too, one link further up.

use std::fmt;
use std::sync::Arc;
use std::sync::mpsc::{Receiver, SyncSender, TrySendError, sync_channel};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use mio::Waker;
use serde::Serialize;

use crate::conn::ConnId;
use crate::context::Context;
use crate::frame::{self, EncodeError, HEADER_LEN};

/// A closure run on the reactor thread with full access to the [`Context`].
pub type Job = Box<dyn for<'a> FnOnce(&mut Context<'a>) + Send>;

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

/// Why a command did not reach the reactor.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HandleError {
    /// The command channel is full; the reactor is behind. Nothing was queued: retry later or
    /// shed the work.
    Full,
    /// The reactor has stopped.
    Stopped,
    /// The message could not be encoded (see [`EncodeError`]); nothing was queued.
    Encode,
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
        }
    }
}

impl std::error::Error for HandleError {}

impl From<EncodeError> for HandleError {
    fn from(_: EncodeError) -> HandleError {
        HandleError::Encode
    }
}

/// A cloneable, `Send` handle to a running reactor.
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
    tx: SyncSender<Command>,
    waker: Arc<Waker>,
}

impl fmt::Debug for Handle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Handle").finish_non_exhaustive()
    }
}

pub(crate) fn channel(waker: Arc<Waker>, capacity: usize) -> (Handle, Receiver<Command>) {
    let (tx, rx) = sync_channel(capacity);
    (Handle { tx, waker }, rx)
}

impl Handle {
    fn submit(&self, cmd: Command) -> Result<(), HandleError> {
        match self.tx.try_send(cmd) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) => return Err(HandleError::Full),
            Err(TrySendError::Disconnected(_)) => return Err(HandleError::Stopped),
        }
        // A failed wake means the poller is gone; the command will never be read.
        self.waker.wake().map_err(|_| HandleError::Stopped)
    }

    /// Encodes `msg` on this thread and queues it on `conn`. If the connection has closed by
    /// the time the reactor applies it, or its queue is at its hard limit, the message is
    /// dropped and logged: the caller learns about closes from [`crate::Handler::on_close`].
    pub fn send<T: Serialize + ?Sized>(&self, conn: ConnId, msg: &T) -> Result<(), HandleError> {
        let mut buf = BytesMut::new();
        frame::encode_json(msg, &mut buf, u32::MAX as usize)?;
        self.submit(Command::Send(conn, buf.split_off(HEADER_LEN).freeze()))
    }

    /// Queues a payload that is already JSON text on `conn`.
    pub fn send_payload(&self, conn: ConnId, payload: Bytes) -> Result<(), HandleError> {
        self.submit(Command::Send(conn, payload))
    }

    /// Closes `conn` gracefully (everything queued is delivered first).
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
    /// shared state, ring with its index or count).
    pub fn notify(&self, value: u64) -> Result<(), HandleError> {
        self.submit(Command::Notify(value))
    }

    /// Hands an accepted connection to this reactor (see [`crate::ReactorGroup`]). Gives the
    /// socket back if the channel is full or the reactor has stopped, so the caller can keep it.
    pub(crate) fn adopt(
        &self,
        stream: std::net::TcpStream,
        peer: std::net::SocketAddr,
    ) -> Result<(), std::net::TcpStream> {
        match self.tx.try_send(Command::Adopt(stream, peer)) {
            Ok(()) => {
                let _ = self.waker.wake();
                Ok(())
            }
            Err(TrySendError::Full(cmd) | TrySendError::Disconnected(cmd)) => match cmd {
                Command::Adopt(stream, _) => Err(stream),
                _ => unreachable!("try_send returns the command it was given"),
            },
        }
    }

    /// Graceful shutdown: stop accepting, finish reading what peers already sent, deliver
    /// everything queued, close; connections still open after `grace` are dropped.
    pub fn shutdown(&self, grace: Duration) -> Result<(), HandleError> {
        self.submit(Command::Shutdown(grace))
    }

    /// Stops the reactor at once; open connections are dropped without flushing.
    pub fn stop(&self) -> Result<(), HandleError> {
        self.submit(Command::Stop)
    }
}
