//! Slow work off the reactor thread, with backpressure: a pool of worker threads fed through a
//! bounded queue, whose replies come back through the reactor's waker.
//!
//! The reactor thread must never run slow work: while it computes, no socket is served. So a
//! handler hands each message to [`Workers::submit`]. The queue between the reactor and the
//! workers is bounded, and a full queue does not block the reactor and does not drop the job:
//! the job is *parked* with its connection and the connection stops reading
//! ([`PauseReason::Workers`](crate::PauseReason::Workers)). Its kernel receive buffer fills,
//! its TCP window closes, and its producer feels the pressure, exactly as with a slow
//! consumer. As workers finish, parked jobs move into the queue (first parked, first in) and
//! their connections resume.
//!
//! Invariants:
//! - at most `capacity` jobs are in the pool at once, counting those waiting, those being
//!   worked on, and those finished but not yet collected: the pool's memory is bounded by
//!   `capacity` jobs and results, whatever the load (`capacity` should be at least `threads`,
//!   or some threads will idle);
//! - at most one job is parked per connection (it stops reading the moment its job parks);
//! - results for one connection come back in the order its jobs were submitted, however many
//!   workers there are (sequence numbers and a small reorder buffer);
//! - every submitted job is run exactly once; a result for a connection that closed meanwhile
//!   is still returned (the send will fail; the caller decides what that means).

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, TrySendError, sync_channel};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use crate::conn::{ConnId, PauseReason};
use crate::context::Context;
use crate::handle::{Handle, HandleError};

/// The value the pool rings with [`crate::Handle::notify`] when results are ready. Chosen near
/// `u64::MAX` so it does not collide with the small values applications use for their own
/// doorbells.
pub const WORKERS_DOORBELL: u64 = u64::MAX - 0x776f_726b; // "work"

/// One job on its way to a worker: which connection, its place in that connection's order.
struct Ticket<J> {
    conn: ConnId,
    seq: u64,
    job: J,
}

/// Shared between the pool and its threads.
struct Shared<O> {
    results: Mutex<Vec<(ConnId, u64, O)>>,
    /// A doorbell is already on its way to the reactor: don't ring again until it is answered.
    rung: AtomicBool,
    /// Jobs taken off the queue and not yet finished.
    working: AtomicUsize,
}

/// Counters for the pool, cheap to read.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct WorkerFigures {
    /// Jobs in the pool now: waiting, running, or finished and not yet collected.
    pub in_flight: usize,
    /// The pool's bound on `in_flight`.
    pub capacity: usize,
    /// The most jobs ever in the pool at once (never above `capacity`).
    pub peak_in_flight: usize,
    /// Jobs a worker is running now.
    pub working: usize,
    /// Jobs parked with their (paused) connections, waiting for room in the queue.
    pub parked: usize,
    /// Jobs submitted since start.
    pub submitted: u64,
    /// Results handed back since start.
    pub completed: u64,
    /// Times a connection was paused because the queue was full.
    pub pauses: u64,
}

/// A pool of worker threads behind a bounded queue. See the module docs.
///
/// ```no_run
/// use highwater::{Config, ConnId, Context, Handler, RawJson, Reactor, WORKERS_DOORBELL, Workers};
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
///         if value != WORKERS_DOORBELL {
///             return;
///         }
///         let Some(w) = self.workers.as_mut() else { return };
///         for (conn, reply) in w.completed(ctx) {
///             let _ = ctx.send_payload(conn, reply.into_bytes());
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
    capacity: usize,
    /// Jobs sent to the workers and not yet collected; kept by the reactor thread alone, so
    /// it is exact.
    in_flight: usize,
    parked: VecDeque<Ticket<J>>,
    /// Connections with jobs in the pool or parked; an entry goes as soon as nothing of its
    /// connection is left here, so this holds at most `capacity` + parked entries.
    order: HashMap<ConnId, Order<O>>,
    figures: WorkerFigures,
}

/// One connection's place in its own sequence: the next number to give a job, the next
/// number to hand back, and results that finished ahead of their turn.
struct Order<O> {
    next_seq: u64,
    next_out: u64,
    early: BTreeMap<u64, O>,
}

impl<J: Send + 'static, O: Send + 'static> Workers<J, O> {
    /// Starts `threads` workers behind a queue of `capacity` jobs, each running `work`.
    /// Results are announced to the reactor behind `handle`.
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
        let work = Arc::new(work);
        let threads = (0..threads.max(1))
            .map(|i| {
                let (rx, shared, work, handle) =
                    (rx.clone(), shared.clone(), work.clone(), handle.clone());
                std::thread::Builder::new()
                    .name(format!("highwater-worker-{i}"))
                    .spawn(move || worker_loop(&rx, &shared, &*work, &handle))
                    .expect("spawn a worker thread")
            })
            .collect();
        Workers {
            queue: Some(tx),
            shared,
            threads,
            capacity: capacity.max(1),
            in_flight: 0,
            parked: VecDeque::new(),
            order: HashMap::new(),
            figures: WorkerFigures {
                capacity: capacity.max(1),
                ..WorkerFigures::default()
            },
        }
    }

    /// Hands `job` from connection `conn` to the workers. Never blocks and never drops: if the
    /// queue is full, the job is parked and `conn` stops reading until there is room.
    pub fn submit(&mut self, ctx: &mut Context<'_>, conn: ConnId, job: J) {
        let order = self.order.entry(conn).or_insert_with(|| Order {
            next_seq: 0,
            next_out: 0,
            early: BTreeMap::new(),
        });
        let ticket = Ticket {
            conn,
            seq: order.next_seq,
            job,
        };
        order.next_seq += 1;
        self.figures.submitted += 1;
        if let Some(ticket) = self.try_enqueue(ticket) {
            // Full: park it, and stop reading this connection. Its next messages stay in the
            // kernel, whose window closes: the pressure reaches its producer.
            self.parked.push_back(ticket);
            self.figures.pauses += 1;
            ctx.pause(conn, PauseReason::Workers);
        }
    }

    /// Sends a ticket to the workers; gives it back if the pool holds `capacity` jobs.
    fn try_enqueue(&mut self, ticket: Ticket<J>) -> Option<Ticket<J>> {
        if self.in_flight >= self.capacity {
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

    /// Call from [`crate::Handler::on_notify`] with [`WORKERS_DOORBELL`]: returns the finished
    /// results, each connection's in submission order, and moves parked jobs into the room
    /// that freed up (resuming their connections).
    pub fn completed(&mut self, ctx: &mut Context<'_>) -> Vec<(ConnId, O)> {
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
        for (conn, seq, result) in finished {
            self.figures.completed += 1;
            let Some(order) = self.order.get_mut(&conn) else {
                continue; // unreachable: an entry lives while its jobs do
            };
            order.early.insert(seq, result);
            while let Some(result) = order.early.remove(&order.next_out) {
                out.push((conn, result));
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
        out
    }

    /// The pool's counters.
    pub fn figures(&self) -> WorkerFigures {
        WorkerFigures {
            in_flight: self.in_flight,
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
        let result = work(ticket.job);
        shared
            .results
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push((ticket.conn, ticket.seq, result));
        shared.working.fetch_sub(1, Ordering::SeqCst);
        ring(shared, handle);
    }
}

/// Tells the reactor results are waiting, unless a doorbell is already on its way. The
/// command channel is bounded; if it is full (the reactor is behind on other commands) the
/// worker retries shortly rather than dropping the signal.
fn ring<O>(shared: &Shared<O>, handle: &Handle) {
    if shared.rung.swap(true, Ordering::SeqCst) {
        return;
    }
    loop {
        match handle.notify(WORKERS_DOORBELL) {
            Ok(())
            | Err(HandleError::Stopped | HandleError::Encode | HandleError::TooLarge { .. }) => {
                return;
            }
            Err(HandleError::Full) => std::thread::sleep(Duration::from_micros(200)),
        }
    }
}
