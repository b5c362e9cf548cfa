//! Timeouts that measure progress in both directions and fit both ends of a connection
//! (issue 10, item 4): a publisher that only sends and a subscriber that only receives are
//! not idle; a connection the reactor opened never sends a server's error frame; a steady
//! reader slower than its producer is not a stalled one, and a trickling one still is.

mod common;

use std::io::{self, Read};
use std::net::{SocketAddr, TcpListener};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use common::{Peer, Server, Shared, bounded, read_frame};
use highwater::{
    CloseReason, Config, ConnId, Context, Handler, RawJson, Reactor, TimeoutWarning, TimerId,
};

/// Sends `burst` frames of `size` bytes to every open connection every `every`, and records
/// opens and closes.
struct Ticker {
    every: Duration,
    burst: usize,
    size: usize,
    conns: Vec<ConnId>,
    seen: Shared,
    /// Timeout warnings and closes, in the order the handler heard them.
    events: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
}

impl Ticker {
    fn new(every: Duration, burst: usize, size: usize) -> Ticker {
        Ticker {
            every,
            burst,
            size,
            conns: Vec::new(),
            seen: Shared::default(),
            events: Default::default(),
        }
    }
}

impl Handler for Ticker {
    type Message = RawJson;
    fn on_start(&mut self, ctx: &mut Context<'_>) {
        ctx.set_timer(self.every, 0);
    }
    fn on_open(&mut self, _: &mut Context<'_>, conn: ConnId) {
        self.conns.push(conn);
        self.seen.update(|s| s.opened.push(conn));
    }
    fn on_message(&mut self, _: &mut Context<'_>, _: ConnId, _: RawJson) {}
    fn on_timer(&mut self, ctx: &mut Context<'_>, _: TimerId, _: u64) {
        let payload = format!("\"{}\"", "p".repeat(self.size - 2));
        for &conn in &self.conns {
            for _ in 0..self.burst {
                if ctx.send_payload(conn, payload.clone()).is_err() {
                    break;
                }
            }
        }
        ctx.set_timer(self.every, 0);
    }
    fn on_timeout_warning(&mut self, _: &mut Context<'_>, _: ConnId, w: &TimeoutWarning) {
        let what = match w {
            TimeoutWarning::Idle { .. } => "warned:idle",
            TimeoutWarning::Write { .. } => "warned:write",
        };
        self.events.lock().unwrap().push(what.into());
    }
    fn on_close(&mut self, _: &mut Context<'_>, conn: ConnId, reason: &CloseReason) {
        self.events
            .lock()
            .unwrap()
            .push(format!("closed:{}", reason.name()));
        self.conns.retain(|&c| c != conn);
        self.seen
            .update(|s| s.closed.push((conn, reason.name().to_string())));
    }
}

/// Every payload the listener read, and whether the stream ended (EOF or error).
type Heard = (Vec<Vec<u8>>, bool);

/// A listener on its own thread that accepts one connection, reads frames for `read_for`,
/// and reports every payload, and whether the stream ended, over a channel.
fn reading_listener(read_for: Duration) -> (SocketAddr, mpsc::Receiver<Heard>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let (mut s, _) = listener.accept().unwrap();
        let end = Instant::now() + read_for;
        let mut got = Vec::new();
        let mut ended = false;
        while Instant::now() < end {
            s.set_read_timeout(Some(
                end.saturating_duration_since(Instant::now())
                    .max(Duration::from_millis(1)),
            ))
            .unwrap();
            match read_frame(&mut s) {
                Ok(Some(p)) => got.push(p),
                Ok(None) => {
                    ended = true;
                    break;
                }
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                    ) => {}
                Err(_) => {
                    ended = true;
                    break;
                }
            }
        }
        let _ = tx.send((got, ended));
    });
    (addr, rx)
}

/// Connects to `addr` and sends one small frame every 10 ms; reports its close.
struct Publisher {
    addr: SocketAddr,
    conn: Option<ConnId>,
    sent: u64,
    closed: Option<String>,
}

impl Handler for Publisher {
    type Message = RawJson;
    fn on_start(&mut self, ctx: &mut Context<'_>) {
        self.conn = Some(ctx.connect(self.addr).unwrap());
        ctx.set_timer(Duration::from_millis(10), 0);
    }
    fn on_message(&mut self, _: &mut Context<'_>, _: ConnId, _: RawJson) {}
    fn on_timer(&mut self, ctx: &mut Context<'_>, _: TimerId, _: u64) {
        if let Some(conn) = self.conn {
            if ctx.send(conn, &self.sent).is_ok() {
                self.sent += 1;
            }
        }
        ctx.set_timer(Duration::from_millis(10), 0);
    }
    fn on_close(&mut self, ctx: &mut Context<'_>, _: ConnId, reason: &CloseReason) {
        self.closed = Some(reason.name().to_string());
        ctx.stop();
    }
}

fn run_publisher(config: Config, addr: SocketAddr, for_how_long: Duration) -> Publisher {
    let publisher = Publisher {
        addr,
        conn: None,
        sent: 0,
        closed: None,
    };
    let mut reactor = Reactor::new(config, publisher).unwrap();
    let handle = reactor.handle();
    let thread = std::thread::spawn(move || {
        reactor.run().unwrap();
        reactor.into_handler()
    });
    std::thread::sleep(for_how_long);
    let _ = handle.stop();
    thread.join().unwrap()
}

#[test]
fn an_outbound_publisher_is_not_closed_by_the_servers_idle_timeout_nor_sends_its_error_frame() {
    bounded(Duration::from_secs(30), || {
        let (addr, rx) = reading_listener(Duration::from_millis(1200));
        // The inbound idle timeout is a server's defence; it must not reach out to a
        // connection this reactor opened.
        let config = Config {
            idle_timeout: Some(Duration::from_millis(200)),
            ..Config::default()
        };
        let p = run_publisher(config, addr, Duration::from_millis(1000));
        // Closed only by the test's own stop.
        assert!(
            p.closed.as_deref().is_none_or(|r| r == "shutdown"),
            "closed ({:?}) after {} frames",
            p.closed,
            p.sent
        );
        let (got, _) = rx.recv_timeout(Duration::from_secs(5)).unwrap();
        assert!(got.len() > 50, "only {} frames arrived", got.len());
        assert!(
            got.iter()
                .all(|f| !String::from_utf8_lossy(f).contains("error")),
            "a client sent a server's error frame"
        );
    });
}

#[test]
fn an_outbound_idle_timeout_counts_bytes_the_peer_takes_as_progress() {
    bounded(Duration::from_secs(30), || {
        let (addr, rx) = reading_listener(Duration::from_millis(1200));
        let config = Config {
            outbound_idle_timeout: Some(Duration::from_millis(200)),
            ..Config::default()
        };
        let p = run_publisher(config, addr, Duration::from_millis(1000));
        // Closed only by the test's own stop.
        assert!(
            p.closed.as_deref().is_none_or(|r| r == "shutdown"),
            "closed ({:?}) after {} frames",
            p.closed,
            p.sent
        );
        drop(rx);
    });
}

#[test]
fn an_outbound_connection_with_nothing_flowing_closes_on_its_idle_timeout_without_an_error_frame() {
    bounded(Duration::from_secs(30), || {
        // Accepts, reads, never replies; the publisher sends nothing (its timer is far off).
        let (addr, rx) = reading_listener(Duration::from_secs(5));
        let config = Config {
            outbound_idle_timeout: Some(Duration::from_millis(200)),
            ..Config::default()
        };
        struct Quiet {
            addr: SocketAddr,
            closed: Option<(String, Duration)>,
            started: Option<Instant>,
        }
        impl Handler for Quiet {
            type Message = RawJson;
            fn on_start(&mut self, ctx: &mut Context<'_>) {
                self.started = Some(ctx.now());
                ctx.connect(self.addr).unwrap();
            }
            fn on_message(&mut self, _: &mut Context<'_>, _: ConnId, _: RawJson) {}
            fn on_close(&mut self, ctx: &mut Context<'_>, _: ConnId, reason: &CloseReason) {
                let took = self.started.map(|s| s.elapsed()).unwrap_or_default();
                self.closed = Some((reason.name().to_string(), took));
                ctx.stop();
            }
        }
        let mut reactor = Reactor::new(
            config,
            Quiet {
                addr,
                closed: None,
                started: None,
            },
        )
        .unwrap();
        reactor.run().unwrap();
        let (reason, took) = reactor.into_handler().closed.expect("closed");
        assert_eq!(reason, "idle_timeout");
        assert!(took < Duration::from_secs(2), "took {took:?}");
        let (got, ended) = rx.recv_timeout(Duration::from_secs(10)).unwrap();
        assert!(got.is_empty(), "the client sent {got:?}");
        assert!(ended, "the server saw the close");
    });
}

#[test]
fn an_inbound_subscriber_that_only_receives_is_not_idle_while_frames_flow() {
    bounded(Duration::from_secs(30), || {
        let config = Config {
            idle_timeout: Some(Duration::from_millis(200)),
            ..Config::default()
        };
        let ticker = Ticker::new(Duration::from_millis(10), 1, 64);
        let seen = ticker.seen.clone();
        let server = Server::start(config, ticker);
        let mut peer = Peer::connect(server.addr);
        let end = Instant::now() + Duration::from_millis(1000);
        let mut frames = 0;
        while Instant::now() < end {
            let f = peer.recv();
            assert!(f.get("error").is_none(), "got {f} after {frames} frames");
            frames += 1;
        }
        assert!(seen.get(|s| s.closed.is_empty()));
        // And once the subscriber stops reading, with nothing coming in either, it is idle.
        drop(peer);
    });
}

/// Reads `per_tick` frames every `tick`, for `for_how_long`. Returns frames read, and the
/// error or end of stream that stopped it early, if any.
fn steady_reader(
    peer: &mut Peer,
    per_tick: usize,
    tick: Duration,
    for_how_long: Duration,
) -> (usize, Option<String>) {
    let start = Instant::now();
    let mut frames = 0;
    let mut next = start;
    while start.elapsed() < for_how_long {
        for _ in 0..per_tick {
            match peer.recv_raw() {
                Ok(Some(_)) => frames += 1,
                Ok(None) => return (frames, Some("end of stream".into())),
                Err(e) => return (frames, Some(e.to_string())),
            }
        }
        next += tick;
        std::thread::sleep(next.saturating_duration_since(Instant::now()));
    }
    (frames, None)
}

#[test]
fn a_steady_reader_slower_than_its_producer_is_not_a_stalled_one() {
    bounded(Duration::from_secs(30), || {
        // 1 KB frames at 1,000/s to a reader taking 850/s: the queue grows slowly and is never
        // empty, but the peer takes bytes all the time.
        let config = Config {
            write_timeout: Some(Duration::from_millis(300)),
            send_buffer_size: Some(4096),
            ..Config::default()
        };
        let ticker = Ticker::new(Duration::from_millis(10), 10, 1000);
        let seen = ticker.seen.clone();
        let server = Server::start(config, ticker);
        let mut peer = Peer::connect_small_window(server.addr, 4096);
        let (frames, ended) = steady_reader(
            &mut peer,
            // 850/s: below the ticker's rate even when its timer runs late, so the queue
            // backs up, but not past the high-water mark within the test.
            17,
            Duration::from_millis(20),
            Duration::from_millis(1500),
        );
        assert_eq!(ended, None, "closed after {frames} frames");
        let conn = common::first_conn(&seen);
        let queued = server.query(move |ctx| ctx.queued_bytes(conn));
        assert!(
            queued > 0,
            "the queue never backed up: the test proves nothing"
        );
        assert!(seen.get(|s| s.closed.is_empty()));
    });
}

#[test]
fn a_reader_taking_a_byte_every_20_ms_is_still_closed() {
    bounded(Duration::from_secs(30), || {
        let config = Config {
            write_timeout: Some(Duration::from_millis(300)),
            send_buffer_size: Some(4096),
            ..Config::default()
        };
        let ticker = Ticker::new(Duration::from_millis(10), 10, 1000);
        let seen = ticker.seen.clone();
        let server = Server::start(config, ticker);
        let mut peer = Peer::connect_small_window(server.addr, 4096);
        let started = Instant::now();
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let trickle = {
            let stop = stop.clone();
            std::thread::spawn(move || {
                let mut byte = [0u8; 1];
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    if !matches!(peer.stream.read(&mut byte), Ok(1)) {
                        return;
                    }
                    std::thread::sleep(Duration::from_millis(20));
                }
            })
        };
        let (_, reason) = seen.wait(Duration::from_secs(10), "the close", |s| {
            s.closed.first().cloned()
        });
        let took = started.elapsed();
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        let _ = trickle.join();
        assert_eq!(reason, "write_timeout");
        assert!(took < Duration::from_secs(3), "closed after {took:?}");
    });
}

#[test]
fn the_handler_is_warned_halfway_before_an_idle_or_a_write_timeout_closes() {
    bounded(Duration::from_secs(30), || {
        // Idle: a peer that says nothing and gets nothing (the ticker's timer is far off).
        let config = Config {
            idle_timeout: Some(Duration::from_millis(300)),
            ..Config::default()
        };
        let ticker = Ticker::new(Duration::from_secs(3600), 0, 2);
        let (seen, events) = (ticker.seen.clone(), ticker.events.clone());
        let server = Server::start(config, ticker);
        let _peer = Peer::connect(server.addr);
        seen.wait(Duration::from_secs(5), "the idle close", |s| {
            s.closed.first().cloned()
        });
        assert_eq!(
            *events.lock().unwrap(),
            ["warned:idle", "closed:idle_timeout"]
        );
        drop(server);

        // Write: a peer that never reads while frames keep coming.
        let config = Config {
            write_timeout: Some(Duration::from_millis(300)),
            send_buffer_size: Some(4096),
            ..Config::default()
        };
        let ticker = Ticker::new(Duration::from_millis(10), 10, 1000);
        let (seen, events) = (ticker.seen.clone(), ticker.events.clone());
        let server = Server::start(config, ticker);
        let _peer = Peer::connect_small_window(server.addr, 4096);
        seen.wait(Duration::from_secs(5), "the write-timeout close", |s| {
            s.closed.first().cloned()
        });
        // A kernel may still open its window a little after the peer stopped reading: each
        // such bit of progress starts a new quiet period, with its own warning.
        let events = events.lock().unwrap().clone();
        let (close, warnings) = events.split_last().expect("events");
        assert_eq!(close, "closed:write_timeout");
        assert!(!warnings.is_empty(), "{events:?}");
        assert!(warnings.iter().all(|w| w == "warned:write"), "{events:?}");
    });
}

#[test]
fn a_connect_that_never_completes_fails_on_its_deadline_not_on_the_write_timeout() {
    bounded(Duration::from_secs(30), || {
        // A listener with a full backlog: Linux drops further SYNs, so connects hang.
        let l = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
        l.bind(&"127.0.0.1:0".parse::<SocketAddr>().unwrap().into())
            .unwrap();
        l.listen(0).unwrap();
        let addr = l.local_addr().unwrap().as_socket().unwrap();
        let fillers: Vec<_> = (0..4)
            .filter_map(|_| {
                std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(200)).ok()
            })
            .collect();
        struct Connector {
            addr: SocketAddr,
            closed: Option<(String, String, Duration)>,
        }
        impl Handler for Connector {
            type Message = RawJson;
            fn on_start(&mut self, ctx: &mut Context<'_>) {
                let conn = ctx.connect(self.addr).unwrap();
                // Queued while connecting: no peer exists yet to be blamed for not taking it.
                let _ = ctx
                    .send(conn, &"queued before the connect completed")
                    .unwrap();
            }
            fn on_message(&mut self, _: &mut Context<'_>, _: ConnId, _: RawJson) {}
            fn on_close(&mut self, ctx: &mut Context<'_>, _: ConnId, reason: &CloseReason) {
                let kind = match reason {
                    CloseReason::ConnectFailed(e) => format!("{:?}", e.kind()),
                    _ => String::new(),
                };
                self.closed = Some((reason.name().into(), kind, Duration::ZERO));
                ctx.stop();
            }
        }
        let config = Config {
            connect_timeout: Some(Duration::from_millis(400)),
            write_timeout: Some(Duration::from_millis(100)),
            ..Config::default()
        };
        let started = Instant::now();
        let mut reactor = Reactor::new(config, Connector { addr, closed: None }).unwrap();
        reactor.run().unwrap();
        let took = started.elapsed();
        let (reason, kind, _) = reactor.into_handler().closed.expect("closed");
        assert_eq!(
            (reason.as_str(), kind.as_str()),
            ("connect_failed", "TimedOut")
        );
        assert!(
            took >= Duration::from_millis(400) && took < Duration::from_secs(3),
            "took {took:?}"
        );
        drop(fillers);
    });
}
