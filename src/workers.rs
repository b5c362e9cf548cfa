//! Slow work off the reactor thread, with backpressure: a pool of worker threads fed through a
//! bounded queue, whose replies come back through the reactor's waker.
//!
//! The reactor thread must never run slow work: while it computes, no socket is served. So a
//! handler hands each message to [`Workers::submit`]. The queue between the reactor and the
//! workers is bounded, and a full queue does not block the reactor and does not drop the job:
//! the job is *parked* with its connection and the connection stops reading
//! ([`crate::PauseReason::Workers`]). Its kernel receive buffer fills,
//! its TCP window closes, and its producer feels the pressure, exactly as with a slow
//! consumer. As workers finish, parked jobs move into the queue (first parked, first in) and
//! their connections resume.
//!
//! Invariants:
//! - at most `capacity` jobs are in the pool at once, counting those waiting, those being
//!   worked on, and those finished but not yet collected: the pool's memory is bounded by
//!   `capacity` jobs and results, whatever the load (`capacity` should be at least `threads`,
//!   or some threads will idle); results handed in already finished ([`Workers::submit_ready`])
//!   count against the same bound while they wait for their turn;
//! - at most one job is parked per connection (it stops reading the moment its job parks);
//! - results for one connection come back in the order its jobs were submitted, however many
//!   workers there are (sequence numbers and a small reorder buffer), and a reply the handler
//!   produces itself takes its place in that order through [`Workers::submit_ready`];
//! - every submitted job is run exactly once and yields exactly one result: a job that panics
//!   yields [`JobPanicked`] for its own request, and its worker thread goes on with the next
//!   job, so a panic costs neither capacity nor order; a result for a connection that closed
//!   meanwhile is still returned (the send will fail; the caller decides what that means);
//! - while a connection has jobs in the pool (or results waiting for their turn), a graceful
//!   shutdown of the reactor keeps it open, within the grace period, so those replies are
//!   delivered ([`Context::work_started`]).

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::fmt;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, TrySendError, sync_channel};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use crate::conn::{ConnId, PauseReason};
use crate::context::Context;
use crate::doorbell::Doorbell;
use crate::handle::{Handle, HandleError};

/// One job on its way to a worker: which connection, its place in that connection's order.
struct Ticket<J> {
    conn: ConnId,
    seq: u64,
    job: J,
}

/// What a job became: its output, or the panic that ended it.
type Outcome<O> = Result<O, JobPanicked>;

/// Shared between the pool and its threads.
struct Shared<O> {
    results: Mutex<Vec<(ConnId, u64, Outcome<O>)>>,
    /// A doorbell is already on its way to the reactor: don't ring again until it is answered.
    rung: AtomicBool,
    /// Jobs taken off the queue and not yet finished.
    working: AtomicUsize,
}

/// A job panicked on its worker thread. Returned by [`Workers::completed`] in the place of that
/// job's result: the application decides what to reply. The worker thread survives it and
/// takes the next job.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobPanicked {
    /// The panic's message, when it was a string (as `panic!("...")` makes); otherwise a
    /// placeholder.
    pub message: String,
}

impl fmt::Display for JobPanicked {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "the job panicked: {}", self.message)
    }
}

impl std::error::Error for JobPanicked {}

/// Counters for the pool, cheap to read.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct WorkerFigures {
    /// Jobs in the pool now: waiting, running, or finished and not yet collected.
    pub in_flight: usize,
    /// The pool's bound on `in_flight` plus `held`.
    pub capacity: usize,
    /// The most jobs ever in the pool at once (never above `capacity`).
    pub peak_in_flight: usize,
    /// Jobs a worker is running now.
    pub working: usize,
    /// Jobs parked with their (paused) connections, waiting for room in the queue.
    pub parked: usize,
    /// Results handed in finished ([`Workers::submit_ready`]) that wait for earlier results of
    /// their connection.
    pub held: usize,
    /// Jobs submitted since start.
    pub submitted: u64,
    /// Results handed back since start (panicked jobs included).
    pub completed: u64,
    /// Jobs that panicked since start.
    pub panicked: u64,
    /// Times a connection was paused because the queue was full.
    pub pauses: u64,
}

/// A pool of worker threads behind a bounded queue. See the module docs.
///
/// ```no_run
/// use highwater::{Config, ConnId, Context, DecodeError, Handler, RawJson, Reactor, Workers};
///
/// #[derive(Default)]
/// struct Offload {
///     // Built in on_start, where the reactor's handle is at hand.
///     workers: Option<Workers<RawJson, RawJson>>,
/// }
///
/// impl Handler for Offload {
///     type Message = RawJson;
///     fn on_start(&mut self, ctx: &mut Context<'_>) {
///         self.workers = Some(Workers::new(&ctx.handle(), 4, 8, |msg: RawJson| {
///             // slow work here, on a worker thread
///             msg
///         }));
///     }
///     fn on_message(&mut self, ctx: &mut Context<'_>, conn: ConnId, msg: RawJson) {
///         if let Some(w) = self.workers.as_mut() {
///             w.submit(ctx, conn, msg); // never blocks, never drops
///         }
///     }
///     fn on_notify(&mut self, ctx: &mut Context<'_>, value: u64) {
///         let Some(w) = self.workers.as_mut().filter(|w| w.is_doorbell(value)) else {
///             return;
///         };
///         for (conn, result) in w.completed(ctx) {
///             let _ = match result {
///                 Ok(reply) => ctx.send_payload(conn, reply.into_bytes()),
///                 Err(_panicked) => ctx.send(conn, &serde_json::json!({"error": "internal"})),
///             };
///         }
///     }
/// }
///
/// let mut reactor = Reactor::new(Config::default(), Offload::default())?;
/// reactor.listen("127.0.0.1:7878".parse().unwrap())?;
/// reactor.run()?;
/// # Ok::<(), std::io::Error>(())
/// ```
pub struct Workers<J: Send + 'static, O: Send + 'static> {
    queue: Option<SyncSender<Ticket<J>>>,
    shared: Arc<Shared<O>>,
    threads: Vec<JoinHandle<()>>,
    doorbell: Doorbell,
    capacity: usize,
    /// Jobs sent to the workers and not yet collected; kept by the reactor thread alone, so
    /// it is exact.
    in_flight: usize,
    /// Finished results handed in by the handler, waiting for their turn.
    held: usize,
    parked: VecDeque<Ticket<J>>,
    /// Connections paused because a result they handed in went past the bound; they read
    /// again when there is room.
    held_back: Vec<ConnId>,
    /// Connections with jobs in the pool or parked; an entry goes as soon as nothing of its
    /// connection is left here, so this holds at most `capacity` + parked entries.
    order: HashMap<ConnId, Order<O>>,
    figures: WorkerFigures,
}

impl<J: Send + 'static, O: Send + 'static> fmt::Debug for Workers<J, O> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Workers")
            .field("figures", &self.figures())
            .finish_non_exhaustive()
    }
}

/// A result that came back ahead of its turn; `held` if the handler handed it in finished.
struct Early<O> {
    outcome: Outcome<O>,
    held: bool,
}

/// One connection's place in its own sequence: the next number to give a job, the next
/// number to hand back, and results that finished ahead of their turn.
struct Order<O> {
    next_seq: u64,
    next_out: u64,
    early: BTreeMap<u64, Early<O>>,
}

impl<J: Send + 'static, O: Send + 'static> Workers<J, O> {
    /// Starts `threads` workers behind a queue of `capacity` jobs, each running `work`.
    /// Results are announced to the reactor behind `handle`, with a doorbell of the pool's own
    /// ([`Workers::is_doorbell`]).
    pub fn new<F>(handle: &Handle, threads: usize, capacity: usize, work: F) -> Workers<J, O>
    where
        F: Fn(J) -> O + Send + Sync + 'static,
    {
        let (tx, rx) = sync_channel::<Ticket<J>>(capacity.max(1));
        let rx = Arc::new(Mutex::new(rx));
        let shared = Arc::new(Shared {
            results: Mutex::new(Vec::new()),
            rung: AtomicBool::new(false),
            working: AtomicUsize::new(0),
        });
        let doorbell = Doorbell::allocate();
        let work = Arc::new(work);
        let threads = (0..threads.max(1))
            .map(|i| {
                let (rx, shared, work, handle) =
                    (rx.clone(), shared.clone(), work.clone(), handle.clone());
                std::thread::Builder::new()
                    .name(format!("highwater-worker-{i}"))
                    .spawn(move || worker_loop(&rx, &shared, &*work, &handle, doorbell))
                    .expect("spawn a worker thread")
            })
            .collect();
        Workers {
            queue: Some(tx),
            shared,
            threads,
            doorbell,
            capacity: capacity.max(1),
            in_flight: 0,
            held: 0,
            parked: VecDeque::new(),
            held_back: Vec::new(),
            order: HashMap::new(),
            figures: WorkerFigures {
                capacity: capacity.max(1),
                ..WorkerFigures::default()
            },
        }
    }

    /// The pool's own doorbell: `on_notify` receives its value when results are ready.
    pub fn doorbell(&self) -> Doorbell {
        self.doorbell
    }

    /// Whether `value`, as received by [`crate::Handler::on_notify`], is this pool announcing
    /// results (call [`Workers::completed`] then). Two pools in one handler each answer only
    /// their own.
    pub fn is_doorbell(&self, value: u64) -> bool {
        self.doorbell.is(value)
    }

    /// Hands `job` from connection `conn` to the workers. Never blocks and never drops: if the
    /// queue is full, the job is parked and `conn` stops reading until there is room.
    pub fn submit(&mut self, ctx: &mut Context<'_>, conn: ConnId, job: J) {
        let seq = self.take_seq(conn);
        ctx.work_started(conn);
        self.figures.submitted += 1;
        if let Some(ticket) = self.try_enqueue(Ticket { conn, seq, job }) {
            // Full: park it, and stop reading this connection. Its next messages stay in the
            // kernel, whose window closes: the pressure reaches its producer.
            self.parked.push_back(ticket);
            self.figures.pauses += 1;
            ctx.pause(conn, PauseReason::Workers);
        }
    }

    /// Puts a result the handler already has (an error reply to a message that could not be
    /// decoded, a cached answer) in `conn`'s order. If nothing of `conn` is still with the
    /// workers, it is its turn: the result is given back to be sent now. Otherwise it waits,
    /// and [`Workers::completed`] returns it after the results submitted before it. A held
    /// result counts against the pool's bound; past it, `conn` stops reading until there is
    /// room, so a peer cannot pile up replies behind one slow job.
    pub fn submit_ready(&mut self, ctx: &mut Context<'_>, conn: ConnId, result: O) -> Option<O> {
        let Some(order) = self.order.get_mut(&conn) else {
            return Some(result); // nothing ahead of it
        };
        let seq = order.next_seq;
        order.next_seq += 1;
        order.early.insert(
            seq,
            Early {
                outcome: Ok(result),
                held: true,
            },
        );
        self.held += 1;
        ctx.work_started(conn);
        if self.in_flight + self.held >= self.capacity && !self.held_back.contains(&conn) {
            self.held_back.push(conn);
            self.figures.pauses += 1;
            ctx.pause(conn, PauseReason::Workers);
        }
        None
    }

    /// The next sequence number of `conn`, starting a sequence if it has none.
    fn take_seq(&mut self, conn: ConnId) -> u64 {
        let order = self.order.entry(conn).or_insert_with(|| Order {
            next_seq: 0,
            next_out: 0,
            early: BTreeMap::new(),
        });
        order.next_seq += 1;
        order.next_seq - 1
    }

    /// Sends a ticket to the workers; gives it back if the pool holds `capacity` jobs.
    fn try_enqueue(&mut self, ticket: Ticket<J>) -> Option<Ticket<J>> {
        if self.in_flight + self.held >= self.capacity {
            return Some(ticket);
        }
        // `queue` is only taken in `drop`.
        let Some(queue) = self.queue.as_ref() else {
            return Some(ticket);
        };
        // The channel holds `capacity` too, and fewer than `capacity` jobs are in flight, so
        // this cannot find it full; a disconnected channel means the workers are gone.
        match queue.try_send(ticket) {
            Ok(()) => {
                self.in_flight += 1;
                self.figures.peak_in_flight = self.figures.peak_in_flight.max(self.in_flight);
                None
            }
            Err(TrySendError::Full(t)) | Err(TrySendError::Disconnected(t)) => Some(t),
        }
    }

    /// Call from [`crate::Handler::on_notify`] when [`Workers::is_doorbell`] says so: returns
    /// the finished results, each connection's in submission order, and moves parked jobs
    /// into the room that freed up (resuming their connections). A job that panicked comes
    /// back as `Err(JobPanicked)` in its own place. Send the replies before returning from
    /// `on_notify`: a connection a graceful shutdown kept open for them closes after that.
    pub fn completed(&mut self, ctx: &mut Context<'_>) -> Vec<(ConnId, Result<O, JobPanicked>)> {
        // Answer the doorbell first: a result that lands after the swap rings again.
        self.shared.rung.store(false, Ordering::SeqCst);
        let finished = std::mem::take(
            &mut *self
                .shared
                .results
                .lock()
                .unwrap_or_else(|e| e.into_inner()),
        );
        let mut out = Vec::with_capacity(finished.len());
        self.in_flight -= finished.len();
        for (conn, seq, outcome) in finished {
            self.figures.completed += 1;
            if outcome.is_err() {
                self.figures.panicked += 1;
            }
            let Some(order) = self.order.get_mut(&conn) else {
                continue; // unreachable: an entry lives while its jobs do
            };
            order.early.insert(
                seq,
                Early {
                    outcome,
                    held: false,
                },
            );
            while let Some(early) = order.early.remove(&order.next_out) {
                if early.held {
                    self.held -= 1;
                }
                ctx.work_finished(conn);
                out.push((conn, early.outcome));
                order.next_out += 1;
            }
            // Nothing of this connection left in the pool: forget it (a later job starts a
            // fresh sequence, which is as good as continuing the old one).
            if order.next_out == order.next_seq {
                self.order.remove(&conn);
            }
        }
        // Room freed: parked jobs go in, first parked first, and their connections read again.
        while let Some(ticket) = self.parked.pop_front() {
            let conn = ticket.conn;
            match self.try_enqueue(ticket) {
                None => {
                    ctx.resume(conn, PauseReason::Workers);
                }
                Some(ticket) => {
                    self.parked.push_front(ticket);
                    break;
                }
            }
        }
        // Connections that went past the bound with held results read again once there is
        // room (and no job of theirs is still parked, which holds its own pause).
        if self.in_flight + self.held < self.capacity {
            for conn in std::mem::take(&mut self.held_back) {
                if !self.parked.iter().any(|t| t.conn == conn) {
                    ctx.resume(conn, PauseReason::Workers);
                }
            }
        }
        out
    }

    /// The pool's counters.
    pub fn figures(&self) -> WorkerFigures {
        WorkerFigures {
            in_flight: self.in_flight,
            held: self.held,
            working: self.shared.working.load(Ordering::SeqCst),
            parked: self.parked.len(),
            ..self.figures
        }
    }
}

impl<J: Send + 'static, O: Send + 'static> Drop for Workers<J, O> {
    /// Closes the queue and waits for the workers to finish what they hold.
    fn drop(&mut self) {
        drop(self.queue.take());
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

fn worker_loop<J, O>(
    rx: &Mutex<Receiver<Ticket<J>>>,
    shared: &Shared<O>,
    work: &(dyn Fn(J) -> O + Send + Sync),
    handle: &Handle,
    doorbell: Doorbell,
) {
    loop {
        // One worker waits on the queue at a time; the others wait for the lock. Either way
        // they sleep, and the job goes to whichever gets there first.
        let ticket = {
            let rx = rx.lock().unwrap_or_else(|e| e.into_inner());
            match rx.recv() {
                Ok(t) => t,
                Err(_) => return, // the pool was dropped
            }
        };
        shared.working.fetch_add(1, Ordering::SeqCst);
        // A panic ends this job, not the thread: the thread is the pool's capacity, and the
        // job's connection is waiting for a result in this sequence number's place. (The
        // default panic hook has already printed the message by the time we get it back.)
        // `AssertUnwindSafe`: the job is consumed by the call, and `work` is shared `Fn`, so
        // only state the application put behind its own locks can be left half-updated.
        let job = ticket.job;
        let outcome = catch_unwind(AssertUnwindSafe(|| work(job))).map_err(|p| JobPanicked {
            message: panic_message(p.as_ref()),
        });
        shared
            .results
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push((ticket.conn, ticket.seq, outcome));
        shared.working.fetch_sub(1, Ordering::SeqCst);
        ring(shared, handle, doorbell);
    }
}

/// The text of a panic's payload: `panic!` with a literal gives `&str`, with arguments
/// `String`; anything else (`panic_any`) has no text to show.
pub(crate) fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_string()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "(a panic payload that is not a string)".to_string()
    }
}

/// Tells the reactor results are waiting, unless a doorbell is already on its way. The
/// command channel is bounded; if it is full (the reactor is behind on other commands) the
/// worker retries shortly rather than dropping the signal.
fn ring<O>(shared: &Shared<O>, handle: &Handle, doorbell: Doorbell) {
    if shared.rung.swap(true, Ordering::SeqCst) {
        return;
    }
    loop {
        match doorbell.ring(handle) {
            Ok(())
            | Err(
                HandleError::Stopped
                | HandleError::Encode
                | HandleError::TooLarge { .. }
                | HandleError::Reserved { .. },
            ) => {
                return;
            }
            Err(HandleError::Full) => std::thread::sleep(Duration::from_micros(200)),
        }
    }
}
