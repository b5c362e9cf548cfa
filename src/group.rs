//! One reactor per core: N reactors on N threads serving one listening address.
//!
//! Reactor 0 owns the listener. Each connection it accepts goes, round-robin, to itself or to
//! one of the others, through that reactor's [`Handle`] (one channel send and one wake-up, at
//! accept time only). From then on a connection lives on one reactor, and reactors share
//! nothing on the hot path: no lock, no atomic, no cache line written by two threads.
//!
//! Why an acceptor and not `SO_REUSEPORT` (a listener per reactor, the kernel picking one by
//! hashing the 4-tuple)? Round-robin splits connections exactly evenly, where hashing 64
//! connections over 2 listeners lands outside ±20% of even about one time in ten. The price
//! is that one thread accepts for everyone: fine up to tens of thousands of connections a
//! second, which is where a per-core `SO_REUSEPORT` listener would take over.
//!
//! A [`crate::ConnId`] belongs to the reactor that reported it: send to it through that
//! reactor's [`crate::Context`] or handle (`ctx.handle()`). Each reactor numbers its
//! connections in its own range, so an id given to the wrong reactor is refused as stale.
//!
//! `max_connections` holds for the group: an atomic counter shared by the reactors is updated
//! when a connection opens or closes (never per message). Other limits (`queue_budget`) apply
//! per reactor.
//!
//! Shutdown and stop are passed on: a signal or [`ReactorGroup::shutdown`] on the group stops
//! every reactor.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::mpsc::channel;
use std::thread::JoinHandle;
use std::time::Duration;

use crate::config::Config;
use crate::handle::Handle;
use crate::handler::Handler;
use crate::reactor::Reactor;
use crate::stats::ReactorFigures;

/// Called on each reactor's thread before it starts, with the reactor's index (to pin it to a
/// core, register it with a profiler, ...).
pub type ThreadStart = Arc<dyn Fn(usize) + Send + Sync>;

/// N reactors on N threads, serving one address. See the module docs.
///
/// ```no_run
/// use highwater::{Config, ConnId, Context, Handler, RawJson, ReactorGroup};
///
/// struct Echo;
/// impl Handler for Echo {
///     type Message = RawJson;
///     fn on_message(&mut self, ctx: &mut Context<'_>, conn: ConnId, msg: RawJson) {
///         let _ = ctx.send_payload(conn, msg.into_bytes());
///     }
/// }
///
/// let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
/// let group = ReactorGroup::start(cores, Config::default(), "127.0.0.1:7878".parse().unwrap(), |_| Echo)?;
/// println!("listening on {}", group.local_addr());
/// group.join()?;
/// # Ok::<(), std::io::Error>(())
/// ```
pub struct ReactorGroup<H: Handler + Send + 'static> {
    addr: SocketAddr,
    handles: Vec<Handle>,
    threads: Vec<JoinHandle<io::Result<H>>>,
}

impl<H: Handler + Send + 'static> ReactorGroup<H> {
    /// Starts `reactors` reactors (at least one), each with a handler from `make(index)`.
    pub fn start(
        reactors: usize,
        config: Config,
        addr: SocketAddr,
        make: impl FnMut(usize) -> H,
    ) -> io::Result<ReactorGroup<H>> {
        ReactorGroup::start_with(reactors, config, addr, None, None, make)
    }

    /// Like [`ReactorGroup::start`], and optionally: SIGINT/SIGTERM start a graceful shutdown
    /// of the whole group with this grace period; `thread_start` runs on each thread first.
    pub fn start_with(
        reactors: usize,
        config: Config,
        addr: SocketAddr,
        shutdown_on_signals: Option<Duration>,
        thread_start: Option<ThreadStart>,
        mut make: impl FnMut(usize) -> H,
    ) -> io::Result<ReactorGroup<H>> {
        let mut all = (0..reactors.max(1))
            .map(|i| Reactor::new(config.clone(), make(i)))
            .collect::<io::Result<Vec<_>>>()?;
        let handles: Vec<Handle> = all.iter().map(Reactor::handle).collect();
        let open = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        for (i, r) in all.iter_mut().enumerate() {
            r.count_open_in(open.clone());
            r.set_generation_base(i);
        }
        let first = &mut all[0];
        let addr = first.listen(addr)?;
        if let Some(grace) = shutdown_on_signals {
            first.shutdown_on_signals(grace)?;
        }
        first.share_with(handles[1..].to_vec());
        let threads = all
            .into_iter()
            .enumerate()
            .map(|(i, mut reactor)| {
                let start = thread_start.clone();
                std::thread::Builder::new()
                    .name(format!("highwater-reactor-{i}"))
                    .spawn(move || {
                        if let Some(f) = start {
                            f(i);
                        }
                        reactor.run()?;
                        Ok(reactor.into_handler())
                    })
            })
            .collect::<io::Result<Vec<_>>>()?;
        Ok(ReactorGroup {
            addr,
            handles,
            threads,
        })
    }

    /// The bound address.
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// A handle per reactor, in index order.
    pub fn handles(&self) -> &[Handle] {
        &self.handles
    }

    /// Each reactor's figures (`None` for one that did not answer within a second, or has
    /// stopped), in index order. Asked through the handles; the reactors are never blocked.
    pub fn figures(&self) -> Vec<Option<ReactorFigures>> {
        let answers: Vec<_> = self
            .handles
            .iter()
            .map(|h| {
                let (tx, rx) = channel();
                let asked = h.run(move |ctx| {
                    let _ = tx.send(ctx.figures());
                });
                asked.ok().map(|()| rx)
            })
            .collect();
        answers
            .into_iter()
            .map(|rx| rx?.recv_timeout(Duration::from_secs(1)).ok())
            .collect()
    }

    /// Graceful shutdown of every reactor (see [`Handle::shutdown`]).
    pub fn shutdown(&self, grace: Duration) {
        for h in &self.handles {
            let _ = h.shutdown(grace);
        }
    }

    /// Whether every reactor has finished.
    pub fn is_finished(&self) -> bool {
        self.threads.iter().all(JoinHandle::is_finished)
    }

    /// Waits for every reactor to finish; returns their handlers in index order, or the first
    /// error.
    pub fn join(self) -> io::Result<Vec<H>> {
        self.threads
            .into_iter()
            .map(|t| {
                t.join()
                    .map_err(|_| io::Error::other("a reactor thread panicked"))?
            })
            .collect()
    }
}

/// Sums the figures of several reactors (the counters and gauges that add up).
pub fn total(figures: &[Option<ReactorFigures>]) -> ReactorFigures {
    let mut t = ReactorFigures::default();
    for f in figures.iter().flatten() {
        t.open_connections += f.open_connections;
        t.lingering_connections += f.lingering_connections;
        t.paused_connections += f.paused_connections;
        t.queued_bytes += f.queued_bytes;
        t.peak_queued_bytes += f.peak_queued_bytes;
        t.read_buffer_bytes += f.read_buffer_bytes;
        t.peak_held_bytes += f.peak_held_bytes;
        t.budget_paused |= f.budget_paused;
        t.connection_slots += f.connection_slots;
        t.accepted += f.accepted;
        t.rejected_busy += f.rejected_busy;
        t.closed += f.closed;
        t.frames_in += f.frames_in;
        t.invalid_frames += f.invalid_frames;
        t.turns += f.turns;
        t.timers += f.timers;
        t.accept_errors += f.accept_errors;
        t.handed_out += f.handed_out;
        t.recv_calls += f.recv_calls;
        t.writev_calls += f.writev_calls;
    }
    t
}
