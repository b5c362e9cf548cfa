//! Requests and replies over one connection, with a cap on what may be pending: the
//! in-process equivalent of an HTTP client pool that refuses work instead of queueing it.
//!
//! The protocol stays length-prefixed JSON. A request is a JSON object; the client adds a
//! numeric `"id"` field ([`ID_FIELD`]) to it, and the server must copy that field into its
//! reply (an echo server does so by construction). Replies are matched by id, so they may come
//! back in any order.
//!
//! What makes it safe under load:
//! - **A pending cap.** When `pending_cap` requests are waiting for replies (sent or not), the
//!   next one fails at once with [`RequestError::Overloaded`]. Nothing queues without bound,
//!   and the caller learns immediately that it should shed or slow down.
//! - **A deadline per request.** It fails with [`RequestError::TimedOut`]; a reply arriving
//!   later is dropped.
//! - **Reconnection with exponential backoff and jitter** after the connection is lost. A
//!   connection counts as a success (restarting the delays) once a reply arrives on it or it
//!   stayed open for `backoff_max`: a server that accepts and drops every connection, as an
//!   overloaded one may, is asked less and less often, not every `backoff_min`.
//!   Requests that never reached the wire (still in our write queue, not handed to the
//!   kernel) are sent again on the new connection; those that did reach it fail with
//!   [`RequestError::ConnectionLost`], because the server may or may not have acted on them.
//!
//! - **Backpressure on the way out.** Requests are queued on the connection until its write
//!   queue reaches the high-water mark; the rest wait (still unsent, so still safe to resend)
//!   and go out on [`Requests::on_drain`].
//!
//! Use [`Requests`] inside a handler (feed it the handler's callbacks, `on_drain` included), or
//! [`RequestClient`] from any thread: it runs its own reactor thread and blocks only the
//! caller. Inside your own reactor, consider `Config::pause_reads_above_high_water: false`:
//! paused reads stop the replies that would free pending slots, and a server that also stops
//! reading a peer it cannot answer would then wait for us while we wait for it.

use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{Sender, channel};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::backoff::Backoff;
use crate::config::Config;
use crate::conn::ConnId;
use crate::context::Context;
use crate::handle::Handle;
use crate::handler::{CloseReason, Handler};
use crate::reactor::Reactor;
use crate::timer::TimerId;

/// The name of the field that carries a request's id, in the request and in its reply.
pub const ID_FIELD: &str = "id";

/// How a request failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RequestError {
    /// `pending_cap` requests are already waiting for replies: refused at once, nothing queued.
    Overloaded {
        /// Requests pending now.
        pending: usize,
        /// The cap.
        cap: usize,
    },
    /// No reply within the request's deadline.
    TimedOut,
    /// The connection was lost after the request had been handed to the kernel: the server
    /// may or may not have processed it. Not retried automatically (it may not be idempotent).
    ConnectionLost,
    /// The request is not a JSON object, so it cannot carry an id.
    NotAnObject,
    /// The client was shut down.
    Closed,
}

impl fmt::Display for RequestError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RequestError::Overloaded { pending, cap } => write!(
                f,
                "overloaded: {pending} requests pending (cap {cap}); shed load or retry later"
            ),
            RequestError::TimedOut => write!(f, "no reply before the request's deadline"),
            RequestError::ConnectionLost => write!(
                f,
                "the connection was lost after the request was sent; it may or may not have been processed"
            ),
            RequestError::NotAnObject => {
                write!(f, "a request must be a JSON object (it carries an \"id\")")
            }
            RequestError::Closed => write!(f, "the client was shut down"),
        }
    }
}

impl std::error::Error for RequestError {}

/// Settings for [`Requests`] and [`RequestClient`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestConfig {
    /// Requests allowed to wait for replies at once. Default 1,024.
    pub pending_cap: usize,
    /// Deadline for a request when none is given. Default 5 s.
    pub timeout: Duration,
    /// First reconnection delay; the ceiling doubles on each failure (from 1 ms if this is
    /// shorter). Default 50 ms.
    pub backoff_min: Duration,
    /// Longest reconnection delay. Default 5 s. A connection that brought a reply, or stayed
    /// open this long, counts as a success: the delays start again from `backoff_min`.
    pub backoff_max: Duration,
}

impl Default for RequestConfig {
    fn default() -> RequestConfig {
        RequestConfig {
            pending_cap: 1024,
            timeout: Duration::from_secs(5),
            backoff_min: Duration::from_millis(50),
            backoff_max: Duration::from_secs(5),
        }
    }
}

/// A finished request: the caller's tag, and the reply or the error.
#[derive(Debug)]
pub struct Completion {
    /// The tag given to [`Requests::request`].
    pub tag: u64,
    /// The reply (with its `"id"` field), or why there is none.
    pub result: Result<Value, RequestError>,
}

struct Pending {
    tag: u64,
    body: Value,
    deadline: TimerId,
    /// Where the request's frame ends in the connection's outgoing byte stream, once queued.
    /// Compared with the bytes the kernel took when the connection is lost.
    queued_until: Option<u64>,
}

/// Counters of a request client.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RequestFigures {
    /// Requests waiting for a reply (sent or not yet sent).
    pub pending: usize,
    /// Requests refused with `Overloaded`.
    pub overloaded: u64,
    /// Requests that failed with `TimedOut`.
    pub timed_out: u64,
    /// Requests that failed with `ConnectionLost`.
    pub lost: u64,
    /// Requests sent again after a reconnection (they had not reached the wire).
    pub resent: u64,
    /// Replies matched to requests.
    pub replies: u64,
    /// Connections made (the first and every reconnection).
    pub connects: u64,
    /// Failures in a row (failed connects, and connections that ended before they proved
    /// healthy): the number the next backoff delay doubles with.
    pub retries: u32,
}

/// The request side of a handler: ids, the pending cap, deadlines and reconnection. Embed it
/// in a handler and pass it the handler's callbacks; each returns the requests it finished.
pub struct Requests {
    addr: SocketAddr,
    config: RequestConfig,
    conn: Option<ConnId>,
    connected: bool,
    next_id: u64,
    pending: HashMap<u64, Pending>,
    /// Ids waiting for a connection (or room in its write queue) to be sent on, oldest first.
    unsent: VecDeque<u64>,
    /// The connection's write queue reached its high-water mark: hold the rest in `unsent`
    /// until [`Requests::on_drain`], so the queue stays near the mark instead of growing to
    /// its hard limit (and requests still unsent can be resent after a reconnection).
    held: bool,
    /// Failures in a row and the jitter's generator ([`crate::backoff`]).
    backoff: Backoff,
    /// The pending reconnection timer. Timers are recognised by the [`TimerId`] the reactor
    /// handed out, never by bits in their data, so two `Requests` in one handler, or an
    /// application timer carrying any data, cannot be taken for this one's.
    reconnect: Option<TimerId>,
    closed: bool,
    figures: RequestFigures,
}

impl fmt::Debug for Requests {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Requests")
            .field("addr", &self.addr)
            .field("figures", &self.figures())
            .finish_non_exhaustive()
    }
}

impl Requests {
    /// A client for the server at `addr`. Call [`Requests::start`] once the reactor runs (for
    /// example from `on_start`).
    pub fn new(addr: SocketAddr, config: RequestConfig) -> Requests {
        Requests {
            addr,
            backoff: Backoff::new(config.backoff_min, config.backoff_max),
            config,
            conn: None,
            connected: false,
            next_id: 1,
            pending: HashMap::new(),
            unsent: VecDeque::new(),
            held: false,
            reconnect: None,
            closed: false,
            figures: RequestFigures::default(),
        }
    }

    /// Connects (the first time; reconnections are automatic).
    pub fn start(&mut self, ctx: &mut Context<'_>) {
        self.connect(ctx);
    }

    fn connect(&mut self, ctx: &mut Context<'_>) {
        match ctx.connect(self.addr) {
            Ok(id) => {
                self.conn = Some(id);
                self.connected = false;
            }
            Err(e) => {
                log::debug!("request client: connect to {} failed: {e}", self.addr);
                self.schedule_reconnect(ctx);
            }
        }
    }

    /// Requests waiting for replies now.
    pub fn pending(&self) -> usize {
        self.pending.len()
    }

    /// Sends `body` (a JSON object; an `"id"` is added) with a deadline of `timeout` (or the
    /// configured default). Returns the request's id, or fails at once: `Overloaded` when the
    /// pending cap is reached. The reply comes back as a [`Completion`] carrying `tag`.
    pub fn request(
        &mut self,
        ctx: &mut Context<'_>,
        mut body: Value,
        tag: u64,
        timeout: Option<Duration>,
    ) -> Result<u64, RequestError> {
        if self.closed {
            return Err(RequestError::Closed);
        }
        if self.pending.len() >= self.config.pending_cap {
            self.figures.overloaded += 1;
            return Err(RequestError::Overloaded {
                pending: self.pending.len(),
                cap: self.config.pending_cap,
            });
        }
        let id = self.next_id;
        self.next_id += 1;
        let Some(obj) = body.as_object_mut() else {
            return Err(RequestError::NotAnObject);
        };
        obj.insert(ID_FIELD.to_string(), Value::from(id));
        let deadline = ctx.set_timer(timeout.unwrap_or(self.config.timeout), id);
        self.pending.insert(
            id,
            Pending {
                tag,
                body,
                deadline,
                queued_until: None,
            },
        );
        self.unsent.push_back(id);
        self.send_unsent(ctx);
        Ok(id)
    }

    /// Queues unsent requests on the connection, if it is up, until its write queue reaches
    /// the high-water mark; [`Requests::on_drain`] sends the rest.
    fn send_unsent(&mut self, ctx: &mut Context<'_>) {
        let Some(conn) = self.conn.filter(|_| self.connected && !self.held) else {
            return;
        };
        while let Some(id) = self.unsent.pop_front() {
            let Some(p) = self.pending.get_mut(&id) else {
                continue; // timed out while waiting
            };
            match ctx.send(conn, &p.body) {
                Ok(pressure) => {
                    p.queued_until = ctx.queue_figures(conn).map(|f| f.bytes_queued);
                    if pressure.is_high() {
                        // Queued, but the queue is full enough: wait for the drain.
                        self.held = true;
                        return;
                    }
                }
                Err(e) => {
                    // `QueueFull` only if the application shares the connection's queue;
                    // either way the drain (or the next connection) brings us back.
                    log::debug!("request {id} not queued: {e}");
                    self.unsent.push_front(id);
                    self.held = true;
                    return;
                }
            }
        }
    }

    /// Pass [`Handler::on_drain`] here: the connection's write queue fell to its low-water
    /// mark, so the requests held back since it reached the high-water mark are sent now.
    /// Returns true if it was this client's connection.
    pub fn on_drain(&mut self, ctx: &mut Context<'_>, conn: ConnId) -> bool {
        if self.conn != Some(conn) {
            return false;
        }
        self.held = false;
        self.send_unsent(ctx);
        true
    }

    /// Pass [`Handler::on_open`] here. Returns true if it was this client's connection.
    pub fn on_open(&mut self, ctx: &mut Context<'_>, conn: ConnId) -> bool {
        if self.conn != Some(conn) {
            return false;
        }
        self.connected = true;
        self.held = false;
        // Not a success yet: a server that accepts and drops connections must not be asked
        // again every `backoff_min` (see `backoff`). A reply, or `backoff_max` open, is one.
        self.backoff.opened(ctx.now());
        self.figures.connects += 1;
        self.send_unsent(ctx);
        true
    }

    /// Pass [`Handler::on_message`] here. Returns the finished request, if the reply matches
    /// one (replies without a known id are dropped and logged).
    pub fn on_message(
        &mut self,
        ctx: &mut Context<'_>,
        conn: ConnId,
        reply: Value,
    ) -> Option<Completion> {
        if self.conn != Some(conn) {
            return None;
        }
        let Some(id) = reply.get(ID_FIELD).and_then(Value::as_u64) else {
            log::debug!("request client: reply without an id: {reply}");
            return None;
        };
        let Some(p) = self.pending.remove(&id) else {
            log::debug!("request client: reply for unknown or expired request {id}");
            return None;
        };
        ctx.cancel_timer(p.deadline);
        self.figures.replies += 1;
        // The server answers: a healthy connection, so the next loss waits `backoff_min`.
        self.backoff.reset();
        Some(Completion {
            tag: p.tag,
            result: Ok(reply),
        })
    }

    /// Pass [`Handler::on_timer`] here, every timer (the ones that are not this client's are
    /// ignored, whatever their data). Returns requests whose deadline passed.
    pub fn on_timer(
        &mut self,
        ctx: &mut Context<'_>,
        timer: TimerId,
        data: u64,
    ) -> Vec<Completion> {
        if self.reconnect == Some(timer) {
            self.reconnect = None;
            if !self.closed {
                self.connect(ctx);
            }
            return Vec::new();
        }
        // A deadline carries its request's id as data; the timer id proves it is ours.
        match self.pending.get(&data) {
            Some(p) if p.deadline == timer => {}
            _ => return Vec::new(),
        }
        let Some(p) = self.pending.remove(&data) else {
            return Vec::new();
        };
        self.figures.timed_out += 1;
        vec![Completion {
            tag: p.tag,
            result: Err(RequestError::TimedOut),
        }]
    }

    /// Pass [`Handler::on_close`] here. Requests the kernel had taken fail with
    /// `ConnectionLost`; those still in our queue wait for the next connection, which is
    /// scheduled with backoff.
    pub fn on_close(
        &mut self,
        ctx: &mut Context<'_>,
        conn: ConnId,
        reason: &CloseReason,
    ) -> Vec<Completion> {
        if self.conn != Some(conn) {
            return Vec::new();
        }
        if matches!(reason, CloseReason::Shutdown) {
            // The reactor is shutting down: this is the end, not a loss. A reconnect now would
            // open a connection that keeps the reactor alive until its grace period runs out.
            log::debug!("request client: closed by the reactor's shutdown; not reconnecting");
            self.conn = None;
            self.connected = false;
            return self.close(ctx);
        }
        self.backoff.closed(ctx.now());
        // Figures are still readable inside on_close: how far did the kernel get?
        let written = ctx.queue_figures(conn).map_or(0, |f| f.bytes_written);
        log::debug!("request client: connection lost ({reason}); {written} bytes had been written");
        self.conn = None;
        self.connected = false;
        self.held = false;
        let mut failed = Vec::new();
        let mut retry = Vec::new();
        for (&id, p) in &mut self.pending {
            match p.queued_until {
                Some(end) if end <= written => failed.push(id),
                Some(_) => {
                    p.queued_until = None;
                    retry.push(id);
                }
                None => {}
            }
        }
        retry.sort_unstable();
        self.figures.resent += retry.len() as u64;
        for id in retry.into_iter().rev() {
            self.unsent.push_front(id);
        }
        let mut out = Vec::new();
        failed.sort_unstable();
        for id in failed {
            if let Some(p) = self.pending.remove(&id) {
                ctx.cancel_timer(p.deadline);
                self.figures.lost += 1;
                out.push(Completion {
                    tag: p.tag,
                    result: Err(RequestError::ConnectionLost),
                });
            }
        }
        if !self.closed {
            self.schedule_reconnect(ctx);
        }
        out
    }

    /// Exponential backoff with full jitter: a delay drawn uniformly from
    /// `[backoff_min, min(backoff_max, backoff_min * 2^attempt)]`, so a fleet of clients that
    /// lost the same server does not come back in lockstep.
    fn schedule_reconnect(&mut self, ctx: &mut Context<'_>) {
        let delay = self.backoff.next_delay();
        self.reconnect = Some(ctx.set_timer(delay, 0));
    }

    /// Fails every pending request with `Closed` and stops reconnecting.
    pub fn close(&mut self, ctx: &mut Context<'_>) -> Vec<Completion> {
        self.closed = true;
        if let Some(conn) = self.conn.take() {
            ctx.close(conn);
        }
        self.unsent.clear();
        let mut out: Vec<_> = self.pending.drain().collect();
        out.sort_unstable_by_key(|(id, _)| *id);
        out.into_iter()
            .map(|(_, p)| {
                ctx.cancel_timer(p.deadline);
                Completion {
                    tag: p.tag,
                    result: Err(RequestError::Closed),
                }
            })
            .collect()
    }

    /// The client's counters.
    pub fn figures(&self) -> RequestFigures {
        RequestFigures {
            pending: self.pending.len(),
            retries: self.backoff.attempt_at(Instant::now()),
            ..self.figures
        }
    }
}

// ----- from any thread ------------------------------------------------------------------------

/// A request waiting to be taken by the reactor thread.
struct Submission {
    body: Value,
    timeout: Duration,
    reply: Sender<Result<Value, RequestError>>,
}

/// What the caller threads and the reactor share.
struct Mailbox {
    submissions: Mutex<VecDeque<Submission>>,
    /// Requests accepted and not yet answered, counted on the caller's side so that
    /// `Overloaded` is decided before anything is queued.
    pending: AtomicUsize,
    /// A doorbell is on its way: callers don't ring again until the reactor has emptied the
    /// mailbox, so the reactor's command channel never fills with doorbells.
    rung: std::sync::atomic::AtomicBool,
    /// The reactor side is gone (see `ClientHandler`'s `Drop`); read and written under the
    /// `submissions` lock, so no submission can slip in after the last one was answered.
    closed: std::sync::atomic::AtomicBool,
}

const MAILBOX_DOORBELL: u64 = 1;
const SHUTDOWN_DOORBELL: u64 = 2;

/// The reactor-side handler behind [`RequestClient`].
struct ClientHandler {
    requests: Requests,
    mailbox: Arc<Mailbox>,
    replies: HashMap<u64, Sender<Result<Value, RequestError>>>,
    next_tag: u64,
}

impl ClientHandler {
    fn finish(&mut self, done: Vec<Completion>) {
        for c in done {
            if let Some(tx) = self.replies.remove(&c.tag) {
                self.mailbox.pending.fetch_sub(1, Ordering::SeqCst);
                let _ = tx.send(c.result);
            }
        }
    }
}

impl Drop for ClientHandler {
    /// However the reactor thread ends (a stop, or a panic in a callback), every request
    /// accepted and not yet answered is answered `Closed`, and the caller-side count goes back
    /// down with it: otherwise a dead reactor left its requests counted as pending forever, and
    /// every later call failed with `Overloaded`.
    fn drop(&mut self) {
        let mut waiting = self
            .mailbox
            .submissions
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        self.mailbox.closed.store(true, Ordering::SeqCst);
        let unanswered = waiting
            .drain(..)
            .map(|s| s.reply)
            .chain(self.replies.drain().map(|(_, tx)| tx));
        for tx in unanswered {
            self.mailbox.pending.fetch_sub(1, Ordering::SeqCst);
            let _ = tx.send(Err(RequestError::Closed));
        }
    }
}

impl Handler for ClientHandler {
    type Message = Value;

    fn on_start(&mut self, ctx: &mut Context<'_>) {
        self.requests.start(ctx);
    }

    fn on_open(&mut self, ctx: &mut Context<'_>, conn: ConnId) {
        self.requests.on_open(ctx, conn);
    }

    fn on_drain(&mut self, ctx: &mut Context<'_>, conn: ConnId) {
        self.requests.on_drain(ctx, conn);
    }

    fn on_message(&mut self, ctx: &mut Context<'_>, conn: ConnId, msg: Value) {
        let done = self
            .requests
            .on_message(ctx, conn, msg)
            .into_iter()
            .collect();
        self.finish(done);
    }

    fn on_timer(&mut self, ctx: &mut Context<'_>, timer: TimerId, data: u64) {
        let done = self.requests.on_timer(ctx, timer, data);
        self.finish(done);
    }

    fn on_close(&mut self, ctx: &mut Context<'_>, conn: ConnId, reason: &CloseReason) {
        let done = self.requests.on_close(ctx, conn, reason);
        self.finish(done);
    }

    fn on_notify(&mut self, ctx: &mut Context<'_>, value: u64) {
        if value == SHUTDOWN_DOORBELL {
            let done = self.requests.close(ctx);
            self.finish(done);
            ctx.stop();
            return;
        }
        self.mailbox.rung.store(false, Ordering::SeqCst);
        let batch = std::mem::take(
            &mut *self
                .mailbox
                .submissions
                .lock()
                .unwrap_or_else(|e| e.into_inner()),
        );
        for s in batch {
            let tag = self.next_tag;
            self.next_tag += 1;
            match self.requests.request(ctx, s.body, tag, Some(s.timeout)) {
                Ok(_) => {
                    self.replies.insert(tag, s.reply);
                }
                Err(e) => {
                    self.mailbox.pending.fetch_sub(1, Ordering::SeqCst);
                    let _ = s.reply.send(Err(e));
                }
            }
        }
    }
}

/// A request client usable from any thread: it runs its own reactor thread, and
/// [`RequestClient::call`] blocks only the calling thread.
///
/// It never hangs. Every call ends by its deadline, whatever the server does (accepts and
/// never replies, never accepts, is stopped); a connect that does not complete is given up
/// after [`Config::connect_timeout`] (10 s) and retried with backoff. A quiet connection is
/// not closed for its silence: between requests silence is normal, and a request's own
/// deadline is the measure of a server too slow for it.
///
/// ```no_run
/// use highwater::{RequestClient, RequestConfig, RequestError};
/// use std::time::Duration;
///
/// let client = RequestClient::connect("127.0.0.1:7878".parse().unwrap(), RequestConfig::default())?;
/// match client.call(serde_json::json!({"op": "ping"}), Duration::from_secs(1)) {
///     Ok(reply) => println!("{reply}"),
///     Err(RequestError::Overloaded { .. }) => { /* shed this one */ }
///     Err(e) => eprintln!("{e}"),
/// }
/// # Ok::<(), std::io::Error>(())
/// ```
pub struct RequestClient {
    handle: Handle,
    mailbox: Arc<Mailbox>,
    cap: usize,
    thread: Option<JoinHandle<io::Result<()>>>,
}

impl fmt::Debug for RequestClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RequestClient")
            .field("pending", &self.pending())
            .field("cap", &self.cap)
            .finish_non_exhaustive()
    }
}

impl RequestClient {
    /// Starts a reactor thread connected (and reconnecting) to `addr`.
    pub fn connect(addr: SocketAddr, config: RequestConfig) -> io::Result<RequestClient> {
        let mailbox = Arc::new(Mailbox {
            submissions: Mutex::new(VecDeque::new()),
            pending: AtomicUsize::new(0),
            rung: std::sync::atomic::AtomicBool::new(false),
            closed: std::sync::atomic::AtomicBool::new(false),
        });
        let cap = config.pending_cap;
        let handler = ClientHandler {
            requests: Requests::new(addr, config),
            mailbox: mailbox.clone(),
            replies: HashMap::new(),
            next_tag: 0,
        };
        let reactor_config = Config {
            idle_timeout: None,
            // Reading replies is what frees pending slots, and it never makes us send more.
            // Pausing it because our own requests are queued would deadlock with a server
            // that, like ours, stops reading a peer whose replies it cannot deliver.
            pause_reads_above_high_water: false,
            ..Config::default()
        };
        let mut reactor = Reactor::new(reactor_config, handler)?;
        let handle = reactor.handle();
        let thread = std::thread::Builder::new()
            .name("highwater-request-client".into())
            .spawn(move || reactor.run())?;
        Ok(RequestClient {
            handle,
            mailbox,
            cap,
            thread: Some(thread),
        })
    }

    /// Sends `body` and waits for its reply, at most `timeout`. Fails at once with
    /// `Overloaded` when the pending cap is reached.
    pub fn call(&self, body: Value, timeout: Duration) -> Result<Value, RequestError> {
        let rx = self.submit(body, timeout)?;
        // The reactor enforces the deadline; the extra second only guards against a reactor
        // that has stopped.
        rx.recv_timeout(timeout.saturating_add(Duration::from_secs(1)))
            .unwrap_or(Err(RequestError::Closed))
    }

    /// Like [`RequestClient::call`], without waiting: the reply arrives on the returned
    /// channel.
    pub fn submit(
        &self,
        body: Value,
        timeout: Duration,
    ) -> Result<std::sync::mpsc::Receiver<Result<Value, RequestError>>, RequestError> {
        // Decided here, before anything is queued: the mailbox never holds more than the cap.
        let before = self.mailbox.pending.fetch_add(1, Ordering::SeqCst);
        if before >= self.cap {
            self.mailbox.pending.fetch_sub(1, Ordering::SeqCst);
            return Err(RequestError::Overloaded {
                pending: before,
                cap: self.cap,
            });
        }
        let (tx, rx) = channel();
        {
            let mut waiting = self
                .mailbox
                .submissions
                .lock()
                .unwrap_or_else(|e| e.into_inner());
            if self.mailbox.closed.load(Ordering::SeqCst) {
                drop(waiting);
                self.mailbox.pending.fetch_sub(1, Ordering::SeqCst);
                return Err(RequestError::Closed);
            }
            waiting.push_back(Submission {
                body,
                timeout,
                reply: tx,
            });
        }
        if !self.mailbox.rung.swap(true, Ordering::SeqCst) {
            loop {
                match self.handle.notify(MAILBOX_DOORBELL) {
                    Ok(()) => break,
                    // Only other commands can fill the channel; wait for the reactor a little.
                    Err(crate::HandleError::Full) => std::thread::sleep(Duration::from_micros(100)),
                    // The reactor is gone. Its handler answers (and uncounts) what is left in
                    // the mailbox, this request included, as it is dropped.
                    Err(_) => return Err(RequestError::Closed),
                }
            }
        }
        Ok(rx)
    }

    /// Requests accepted and not yet answered.
    pub fn pending(&self) -> usize {
        self.mailbox.pending.load(Ordering::SeqCst)
    }
}

impl Drop for RequestClient {
    /// Fails whatever is pending with `Closed` and stops the reactor thread.
    fn drop(&mut self) {
        let _ = self.handle.notify(SHUTDOWN_DOORBELL);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
