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
//! is that one thread accepts for everyone, and each connection handed out costs a channel
//! send and a wake-up of the reactor it goes to.
//!
//! [`Config::reuse_port`] chooses the other way: every reactor binds its own listener to the
//! same port with `SO_REUSEPORT` and accepts for itself, nothing is handed out, and the split
//! is the kernel's hash (even on average, not per connection). Worth it when connections are
//! short and many, so that accepting is a real share of the work (BENCHMARKS.md, "Accepting
//! at scale"). Every reactor's listener closes when that reactor shuts down; signals are still
//! watched by reactor 0 and passed on.
//!
//! A [`crate::ConnId`] belongs to the reactor that reported it: send to it through that
//! reactor's [`crate::Context`] or handle (`ctx.handle()`). Every reactor draws its connections'
//! generations from one counter shared by the group, so no two connections of the group ever
//! carry the same id, however many reactors there are, and an id given to the wrong reactor is
//! refused as stale.
//!
//! `max_connections` holds for the group: an atomic counter shared by the reactors is updated
//! when a connection opens or closes (never per message). Other limits (`queue_budget`) apply
//! per reactor.
//!
//! Shutdown and stop are passed on: a signal or [`ReactorGroup::shutdown`] on the group stops
//! every reactor.
//!
//! A panic stops the whole group. If a handler (or anything else on a reactor's thread)
//! panics, the panic is caught on that thread, which gives back its share of the group's
//! open-connection count and stops every other reactor at once (as [`Handle::stop`] does:
//! their connections are dropped, not drained). [`ReactorGroup::is_finished`] is true from
//! that moment, and [`ReactorGroup::join`] returns an error naming the reactor and the panic
//! message. Why not carry on without it? A group with a dead acceptor accepts nothing while
//! looking alive, and one with a dead worker reactor keeps handing connections to a thread
//! that will never serve them; the handler's own state may be half-updated too. Ending the
//! process's serving loudly lets a supervisor restart it whole. A reactor whose `run` fails
//! with an I/O error stops the group the same way.

use std::io;
use std::net::SocketAddr;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicUsize, Ordering};
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
    /// Set by the first reactor that panics or fails; the others are being stopped.
    failed: Arc<AtomicBool>,
    /// Open connections across the group (`max_connections`).
    open: Arc<AtomicUsize>,
}

impl<H: Handler + Send + 'static> std::fmt::Debug for ReactorGroup<H> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReactorGroup")
            .field("addr", &self.addr)
            .field("reactors", &self.handles.len())
            .field("open", &self.open.load(Ordering::Relaxed))
            .field("failed", &self.failed.load(Ordering::Relaxed))
            .finish_non_exhaustive()
    }
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
        let open = Arc::new(AtomicUsize::new(0));
        let generations = Arc::new(AtomicU32::new(0));
        for r in all.iter_mut() {
            r.count_open_in(open.clone());
            r.share_generations(generations.clone());
        }
        let failed = Arc::new(AtomicBool::new(false));
        let addr = all[0].listen(addr)?;
        if config.reuse_port {
            // A listener per reactor, all on the first one's port (it may have been 0).
            for r in all[1..].iter_mut() {
                r.listen(addr)?;
            }
        }
        let first = &mut all[0];
        if let Some(grace) = shutdown_on_signals {
            first.shutdown_on_signals(grace)?;
        }
        first.share_with(handles[1..].to_vec());
        let threads = all
            .into_iter()
            .enumerate()
            .map(|(i, mut reactor)| {
                let start = thread_start.clone();
                let (group, failed) = (handles.clone(), failed.clone());
                std::thread::Builder::new()
                    .name(format!("highwater-reactor-{i}"))
                    .spawn(move || {
                        let ran = catch_unwind(AssertUnwindSafe(|| {
                            if let Some(f) = start {
                                f(i);
                            }
                            reactor.run()
                        }));
                        let error = match ran {
                            Ok(Ok(())) => return Ok(reactor.into_handler()),
                            Ok(Err(e)) => io::Error::new(e.kind(), format!("reactor {i}: {e}")),
                            Err(panic) => {
                                reactor.abandon_group_share();
                                let message = crate::workers::panic_message(panic.as_ref());
                                io::Error::other(format!("reactor {i} panicked: {message}"))
                            }
                        };
                        // The policy in the module docs: one reactor down stops them all.
                        failed.store(true, Ordering::SeqCst);
                        log::error!("{error}; stopping the group");
                        for (j, h) in group.iter().enumerate() {
                            if j != i {
                                let _ = h.stop();
                            }
                        }
                        Err(error)
                    })
            })
            .collect::<io::Result<Vec<_>>>()?;
        Ok(ReactorGroup {
            addr,
            handles,
            threads,
            failed,
            open,
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
    /// Total them with `figures().iter().flatten().sum::<ReactorFigures>()`.
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

    /// Whether the group has stopped serving: every reactor has finished, or one of them
    /// panicked or failed (the others are stopping; see the module docs).
    pub fn is_finished(&self) -> bool {
        self.failed.load(Ordering::SeqCst) || self.threads.iter().all(JoinHandle::is_finished)
    }

    /// Connections open across the group now, as counted against `max_connections`.
    pub fn open_connections(&self) -> usize {
        self.open.load(Ordering::Relaxed)
    }

    /// Waits for every reactor to finish; returns their handlers in index order, or the first
    /// error (`"reactor N panicked: …"` if a handler panicked).
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
