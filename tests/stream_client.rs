//! A streaming client that reconnects (issue 12, item 6): `Reconnecting` streams to a server,
//! the server is stopped, the client retries with a growing, jittered backoff while nothing
//! listens, a new server comes up on the same port, the client reconnects and the stream
//! resumes. And `close` stops the retries.

mod common;

use std::net::SocketAddr;
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use common::{Shared, Sink, bounded};
use highwater::{
    CloseReason, Config, ConnId, Context, Handle, Handler, RawJson, Reactor, ReconnectConfig,
    ReconnectFigures, Reconnecting, SendError, TimerId,
};

/// Shared state with a condition variable, so the test waits for events instead of sleeping.
struct Log<T> {
    state: Mutex<T>,
    changed: Condvar,
}

impl<T: Default> Log<T> {
    fn new() -> Arc<Log<T>> {
        Arc::new(Log {
            state: Mutex::new(T::default()),
            changed: Condvar::new(),
        })
    }

    fn update(&self, f: impl FnOnce(&mut T)) {
        f(&mut self.state.lock().unwrap());
        self.changed.notify_all();
    }

    fn wait<R>(&self, limit: Duration, what: &str, f: impl Fn(&T) -> Option<R>) -> R {
        let deadline = Instant::now() + limit;
        let mut state = self.state.lock().unwrap();
        loop {
            if let Some(r) = f(&state) {
                return r;
            }
            let left = deadline
                .checked_duration_since(Instant::now())
                .unwrap_or_else(|| panic!("timed out waiting for: {what}"));
            state = self.changed.wait_timeout(state, left).unwrap().0;
        }
    }
}

/// What the client saw, with the reactor's clock (`ctx.now()`): a timer set at `t` for `d`
/// never fires before `t + d` by that clock, so the bounds below are exact.
#[derive(Default, Clone)]
struct ClientSeen {
    opens: Vec<ConnId>,
    closes: Vec<String>,
    /// Each reconnection scheduled: when, its delay, and `retries` after it.
    scheduled: Vec<(Instant, Duration, u32)>,
    /// Each reconnection attempt (the stream's own timer firing).
    attempts: Vec<Instant>,
    /// Frames queued.
    sent: u64,
    /// Sends refused with `Closed` (each one stops the producer until `on_open`).
    refused_closed: u64,
    figures: ReconnectFigures,
    /// Figures when `close` was called, and again after a wait of several backoffs.
    at_close: Option<ReconnectFigures>,
    after_close: Option<(ReconnectFigures, bool)>,
}

const TICK: Duration = Duration::from_millis(2);
const FRAMES_PER_TICK: u64 = 10;
const CLOSE: u64 = 1;
const AFTER_CLOSE: u64 = 99;

/// Streams numbered frames on a tick, following the chain: stops on `Pressure::High` and on
/// `Closed`, resumes on `on_drain` / `on_open`. Its tick timer carries data 0, like the
/// stream's reconnection timer: timers are told apart by id.
struct Producer {
    up: Reconnecting,
    next: u64,
    stopped: bool,
    tick: Option<TimerId>,
    after_close: Option<TimerId>,
    log: Arc<Log<ClientSeen>>,
}

impl Producer {
    fn new(addr: SocketAddr, config: ReconnectConfig, log: Arc<Log<ClientSeen>>) -> Producer {
        Producer {
            up: Reconnecting::new(addr, config),
            next: 0,
            stopped: false,
            tick: None,
            after_close: None,
            log,
        }
    }

    fn produce(&mut self, ctx: &mut Context<'_>) {
        let mut sent = 0;
        let mut refused = 0;
        for _ in 0..FRAMES_PER_TICK {
            if self.stopped {
                break;
            }
            match self.up.send(ctx, &serde_json::json!({ "n": self.next })) {
                Ok(p) => {
                    self.next += 1;
                    sent += 1;
                    self.stopped = p.is_high();
                }
                Err(SendError::Closed) => {
                    refused += 1;
                    self.stopped = true;
                }
                Err(e) => panic!("unexpected send error: {e}"),
            }
        }
        self.record(ctx, |s| {
            s.sent += sent;
            s.refused_closed += refused;
        });
    }

    fn record(&self, ctx: &Context<'_>, f: impl FnOnce(&mut ClientSeen)) {
        let _ = ctx;
        let figures = self.up.figures();
        self.log.update(|s| {
            f(s);
            s.figures = figures;
        });
    }

    /// After the stream scheduled a reconnection, note when and for how long.
    fn note_scheduled(&self, ctx: &Context<'_>) {
        let f = self.up.figures();
        if let Some(d) = f.backoff {
            let now = ctx.now();
            self.record(ctx, |s| s.scheduled.push((now, d, f.retries)));
        }
    }
}

impl Handler for Producer {
    type Message = RawJson;

    fn on_start(&mut self, ctx: &mut Context<'_>) {
        self.up.start(ctx);
        self.note_scheduled(ctx); // a connect refused on the spot schedules at once
        self.tick = Some(ctx.set_timer(TICK, 0));
    }

    fn on_open(&mut self, ctx: &mut Context<'_>, conn: ConnId) {
        assert!(self.up.on_open(ctx, conn), "only the stream connects");
        assert_eq!(self.up.conn(), Some(conn));
        assert!(self.up.is_connected());
        self.record(ctx, |s| s.opens.push(conn));
        self.stopped = false;
        self.produce(ctx);
    }

    fn on_drain(&mut self, ctx: &mut Context<'_>, conn: ConnId) {
        if self.up.on_drain(ctx, conn) {
            self.stopped = false;
            self.produce(ctx);
        }
    }

    fn on_close(&mut self, ctx: &mut Context<'_>, conn: ConnId, reason: &CloseReason) {
        assert!(
            self.up.on_close(ctx, conn, reason),
            "only the stream connects"
        );
        assert_eq!(self.up.conn(), None);
        let name = reason.name().to_string();
        self.record(ctx, |s| s.closes.push(name));
        self.note_scheduled(ctx);
    }

    fn on_timer(&mut self, ctx: &mut Context<'_>, timer: TimerId, data: u64) {
        if self.up.on_timer(ctx, timer, data) {
            let now = ctx.now();
            self.record(ctx, |s| s.attempts.push(now));
            self.note_scheduled(ctx);
            return;
        }
        if Some(timer) == self.after_close {
            let refused = matches!(self.up.send(ctx, &1), Err(SendError::Closed));
            let f = self.up.figures();
            self.record(ctx, |s| s.after_close = Some((f, refused)));
            return;
        }
        assert_eq!(Some(timer), self.tick, "no other timer is set");
        self.produce(ctx);
        self.tick = Some(ctx.set_timer(TICK, 0));
    }

    fn on_notify(&mut self, ctx: &mut Context<'_>, value: u64) {
        if value == CLOSE {
            self.up.close(ctx);
            assert!(self.up.is_closed() && !self.up.is_connected());
            let f = self.up.figures();
            self.record(ctx, |s| s.at_close = Some(f));
            // Long enough for several reconnections, had close not stopped them.
            self.after_close = Some(ctx.set_timer(Duration::from_millis(200), AFTER_CLOSE));
        }
    }

    fn on_message(&mut self, _: &mut Context<'_>, _: ConnId, _: RawJson) {}
}

/// A reactor on its own thread; stopped (connections dropped) and joined on drop.
struct Running {
    handle: Handle,
    thread: Option<JoinHandle<()>>,
}

impl Running {
    fn spawn<H: Handler + Send + 'static>(mut reactor: Reactor<H>) -> Running {
        let handle = reactor.handle();
        let thread = std::thread::spawn(move || reactor.run().expect("reactor run"));
        Running {
            handle,
            thread: Some(thread),
        }
    }

    fn stop(mut self) {
        self.stop_now();
    }

    fn stop_now(&mut self) {
        if let Some(t) = self.thread.take() {
            let _ = self.handle.stop();
            let _ = t.join();
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        self.stop_now();
    }
}

/// A server that counts what it receives, listening on `addr`.
fn collector(addr: SocketAddr) -> std::io::Result<(SocketAddr, Shared, Running)> {
    let sink = Sink::default();
    let seen = sink.seen.clone();
    let mut reactor = Reactor::new(Config::default(), sink)?;
    let addr = reactor.listen(addr)?;
    Ok((addr, seen, Running::spawn(reactor)))
}

fn client(addr: SocketAddr, config: ReconnectConfig) -> (Arc<Log<ClientSeen>>, Running) {
    let log = Log::new();
    let producer = Producer::new(addr, config, log.clone());
    let reactor = Reactor::new(Config::default(), producer).expect("client reactor");
    (log, Running::spawn(reactor))
}

#[test]
fn the_stream_reconnects_with_backoff_and_resumes_on_a_restarted_server() {
    bounded(Duration::from_secs(60), || {
        let (min, max) = (Duration::from_millis(20), Duration::from_millis(200));
        let limit = Duration::from_secs(20);
        let (addr, seen_a, server_a) = collector("127.0.0.1:0".parse().unwrap()).unwrap();
        let (log, client) = client(
            addr,
            ReconnectConfig {
                backoff_min: min,
                backoff_max: max,
            },
        );

        // It streams.
        seen_a.wait(limit, "the first server to receive frames", |s| {
            (s.messages >= 100).then_some(())
        });

        // The server goes away, its connections with it.
        server_a.stop();
        // With nothing listening, the stream keeps trying: the loss, then failed connects.
        let scheduled = log.wait(limit, "three failed reconnections", |s| {
            (s.scheduled.len() >= 4).then(|| s.scheduled.clone())
        });

        // The same port again (SO_REUSEADDR: the old connections' TIME_WAIT does not block
        // it). Another socket may hold the port for a moment: retry briefly.
        let deadline = Instant::now() + Duration::from_secs(5);
        let (_, seen_b, server_b) = loop {
            match collector(addr) {
                Ok(s) => break s,
                Err(e) if Instant::now() < deadline => {
                    eprintln!("rebinding {addr}: {e}; retrying");
                    std::thread::sleep(Duration::from_millis(20));
                }
                Err(e) => panic!("could not listen on {addr} again: {e}"),
            }
        };

        // It reconnects and the stream resumes on the new server.
        log.wait(limit, "a second on_open", |s| {
            (s.opens.len() == 2).then_some(())
        });
        seen_b.wait(limit, "the second server to receive frames", |s| {
            (s.messages >= 100).then_some(())
        });
        // Read before stopping: a stop closes the connection too (`Shutdown`).
        let seen = log.state.lock().unwrap().clone();
        client.stop();
        drop(server_b);
        let delays: Vec<_> = seen.scheduled.iter().map(|s| s.1).collect();
        eprintln!(
            "closes {:?}; delays {delays:?}; sent {}, refused {}; {:?}",
            seen.closes, seen.sent, seen.refused_closed, seen.figures
        );

        // The backoff: the first reconnection after the loss waits exactly backoff_min; each
        // later one a delay between backoff_min and a ceiling that doubles per failure in a
        // row (up to backoff_max); and no attempt comes before its delay has passed.
        for (k, &(_, delay, retries)) in scheduled.iter().enumerate() {
            let k32 = u32::try_from(k).unwrap();
            assert_eq!(
                retries,
                k32 + 1,
                "scheduled {k}: retries count failures in a row"
            );
            let ceiling = (min * 2u32.pow(k32)).min(max);
            assert!(
                delay >= min && delay <= ceiling,
                "scheduled {k}: {delay:?} outside [{min:?}, {ceiling:?}]"
            );
        }
        assert_eq!(
            scheduled[0].1, min,
            "after a loss the first retry waits backoff_min"
        );
        for (k, (&(at, delay, _), &attempt)) in
            seen.scheduled.iter().zip(&seen.attempts).enumerate()
        {
            assert!(
                attempt >= at + delay,
                "attempt {k} came {:?} after it was scheduled, before its {delay:?}",
                attempt - at
            );
        }
        for (k, gap) in seen.attempts.windows(2).map(|w| w[1] - w[0]).enumerate() {
            assert!(gap >= min, "attempts {k} and {} only {gap:?} apart", k + 1);
        }
        // Every attempt but the last failed; the last one opened.
        let f = seen.figures;
        assert_eq!(seen.opens.len(), 2);
        assert_ne!(seen.opens[0], seen.opens[1]);
        assert_eq!((f.connects, f.reconnects, f.lost), (2, 1, 1));
        assert!(f.connect_failures >= 3, "{f:?}");
        assert_eq!(f.connect_failures + 1, seen.attempts.len() as u64, "{f:?}");
        // Connected, so no delay waits; the failures in a row still count until this
        // connection has stayed open for backoff_max (`tests/backoff_flapping.rs`).
        assert_eq!(f.backoff, None, "connected: no backoff");
        // (Or 0, if the connection had already stayed open for backoff_max: healthy.)
        assert!(
            f.retries == 0 || f.retries == f.connect_failures as u32 + 1,
            "{f:?}"
        );
        // The producer was told: sends while disconnected were refused with Closed.
        assert!(seen.refused_closed >= 1);
        assert!(seen.sent >= 200);
        assert!(
            seen.closes.len() >= 4,
            "the loss and the failures: {:?}",
            seen.closes
        );
    });
}

#[test]
fn close_stops_the_retries_and_refuses_sends() {
    bounded(Duration::from_secs(60), || {
        // A port with nothing on it: every connect is refused.
        let addr = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap();
        let (log, client) = client(
            addr,
            ReconnectConfig {
                backoff_min: Duration::from_millis(5),
                backoff_max: Duration::from_millis(20),
            },
        );
        log.wait(Duration::from_secs(20), "two failed connects", |s| {
            (s.figures.connect_failures >= 2).then_some(())
        });
        client.handle.notify(CLOSE).unwrap();
        let (after, refused) = log.wait(Duration::from_secs(20), "the wait after close", |s| {
            s.after_close
        });
        let at_close = log.state.lock().unwrap().at_close.expect("closed");
        client.stop();
        assert_eq!(at_close.backoff, None, "no reconnection waits after close");
        // 200 ms is ten times backoff_max: without close there would have been more attempts.
        assert_eq!(after.connect_failures, at_close.connect_failures);
        assert_eq!(after.connects, 0);
        assert_eq!(after.backoff, None);
        assert!(refused, "a send after close is refused with Closed");
    });
}
