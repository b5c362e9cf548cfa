//! One turn, fairly: every budget of a reactor turn is a budget per connection *per turn*,
//! on the write side as on the read side, and `on_drain` answers a `Pressure::High` that
//! still stands.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, mpsc};
use std::time::{Duration, Instant};

use bytes::Bytes;
use common::{Server, bounded, frame, read_frame};
use highwater::{Config, ConnId, Context, FRAMES_PER_TURN, Handler, Pressure, RawJson, TimerId};

/// A JSON string payload of exactly `len` bytes.
fn json_string(len: usize) -> Bytes {
    let mut v = vec![b'x'; len];
    v[0] = b'"';
    v[len - 1] = b'"';
    Bytes::from(v)
}

/// Serializes `record` onto `conn` until the queue says `Pressure::High`: a producer doing
/// real work per frame, which a reader that only copies bytes outpaces.
fn fill(ctx: &mut Context<'_>, conn: ConnId, record: &serde_json::Value) {
    while let Ok(Pressure::Clear) = ctx.send(conn, record) {}
}

// ----- the write side has a budget ------------------------------------------------------

/// Sets the flag when dropped, so a failing test's fast reader stops and lets the reactor's
/// turn end (its writes meet `WouldBlock`), and the test fails at its first assertion instead
/// of at its time bound.
struct SetOnDrop(Arc<AtomicBool>);

impl Drop for SetOnDrop {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Relaxed);
    }
}

/// The first connection is a fire hose: refilled on every `on_drain`. Every other connection
/// gets its messages echoed (a ping client). Timers report when they fired.
struct Hose {
    hose: Option<ConnId>,
    record: serde_json::Value,
    fired: mpsc::Sender<Instant>,
}

impl Handler for Hose {
    type Message = RawJson;

    fn on_open(&mut self, ctx: &mut Context<'_>, conn: ConnId) {
        if self.hose.is_none() {
            self.hose = Some(conn);
            fill(ctx, conn, &self.record);
        }
    }

    fn on_drain(&mut self, ctx: &mut Context<'_>, conn: ConnId) {
        if self.hose == Some(conn) {
            fill(ctx, conn, &self.record);
        }
    }

    fn on_message(&mut self, ctx: &mut Context<'_>, conn: ConnId, msg: RawJson) {
        let _ = ctx.send_payload(conn, msg.into_bytes());
    }

    fn on_timer(&mut self, _: &mut Context<'_>, _: TimerId, _: u64) {
        let _ = self.fired.send(Instant::now());
    }
}

#[test]
fn a_producer_with_a_fast_reader_leaves_the_turn_to_timers_and_other_clients() {
    bounded(Duration::from_secs(30), || {
        const TIMER: Duration = Duration::from_millis(10);
        const ROUNDS: usize = 20;
        let config = Config {
            high_water: 16 * 1024,
            low_water: 4 * 1024,
            // A send buffer the fast reader never lets fill: without a write budget, the
            // turn would end only when a write met `WouldBlock`.
            send_buffer_size: Some(4 << 20),
            ..Config::default()
        };
        let (fired_tx, fired) = mpsc::channel();
        let server = Server::start(
            config,
            Hose {
                hose: None,
                record: serde_json::json!({
                    "users": (0..20)
                        .map(|i| serde_json::json!({"id": i, "name": "someone", "active": true}))
                        .collect::<Vec<_>>()
                }),
                fired: fired_tx,
            },
        );

        // The fast reader: takes everything, as fast as it comes.
        let received = Arc::new(AtomicU64::new(0));
        let done = Arc::new(AtomicBool::new(false));
        let _stop_reader = SetOnDrop(done.clone());
        let reader = {
            let mut s = TcpStream::connect(server.addr).unwrap();
            s.set_read_timeout(Some(Duration::from_millis(100)))
                .unwrap();
            let (received, done) = (received.clone(), done.clone());
            std::thread::spawn(move || {
                let mut buf = vec![0u8; 1 << 20];
                while !done.load(Ordering::Relaxed) {
                    match s.read(&mut buf) {
                        Ok(0) => break,
                        Ok(n) => {
                            received.fetch_add(n as u64, Ordering::Relaxed);
                        }
                        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                        Err(e) if e.kind() == std::io::ErrorKind::TimedOut => {}
                        Err(_) => break,
                    }
                }
            })
        };
        let deadline = Instant::now() + Duration::from_secs(10);
        while received.load(Ordering::Relaxed) < 16 << 20 {
            assert!(Instant::now() < deadline, "the hose never got going");
            std::thread::sleep(Duration::from_millis(2));
        }

        // Rounds of: a 10 ms timer set from the reactor thread, and a ping from a client
        // beside the hose, while the hose runs.
        let mut ping = TcpStream::connect(server.addr).unwrap();
        // Bounded waits: before the write side had a budget, the hose's turn could last for
        // as long as the hose ran, and nothing else was ever served.
        ping.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
        let (mut lates, mut rtts) = (Vec::new(), Vec::new());
        for i in 0..ROUNDS {
            let (set_tx, set) = mpsc::channel();
            server
                .handle
                .run(move |ctx| {
                    ctx.set_timer(TIMER, 0);
                    let _ = set_tx.send(ctx.now());
                })
                .unwrap();
            let started = Instant::now();
            ping.write_all(&frame(format!("{{\"ping\":{i}}}").as_bytes()))
                .unwrap();
            let pong = read_frame(&mut ping);
            assert!(
                matches!(pong, Ok(Some(_))),
                "no pong within 2 s: the hose's turn never ended ({pong:?})"
            );
            rtts.push(started.elapsed());
            let set_at = set
                .recv_timeout(Duration::from_secs(2))
                .expect("the timer set within 2 s");
            let fired_at = fired
                .recv_timeout(Duration::from_secs(2))
                .expect("the timer fired within 2 s");
            lates.push(fired_at.saturating_duration_since(set_at + TIMER));
        }
        done.store(true, Ordering::Relaxed);
        reader.join().unwrap();

        lates.sort();
        rtts.sort();
        let (late, worst) = (lates[ROUNDS - 1], rtts[ROUNDS - 1]);
        eprintln!(
            "timers late: median {:?}, worst {late:?}; pings: median {:?}, worst {worst:?}",
            lates[ROUNDS / 2],
            rtts[ROUNDS / 2]
        );
        assert!(
            late < Duration::from_millis(50),
            "a 10 ms timer fired {late:?} late"
        );
        assert!(
            worst < Duration::from_millis(50),
            "a ping waited {worst:?} for its pong"
        );
    });
}

// ----- read budgets are per turn ---------------------------------------------------------

/// Counts messages per reactor turn, and the most any turn delivered.
#[derive(Default)]
struct PerTurn {
    turn: u64,
    in_turn: usize,
    most: Arc<Mutex<(usize, usize)>>, // (most in one turn, total)
}

impl Handler for PerTurn {
    type Message = RawJson;

    fn on_message(&mut self, ctx: &mut Context<'_>, _: ConnId, _: RawJson) {
        let turn = ctx.figures().turns;
        if turn != self.turn {
            self.turn = turn;
            self.in_turn = 0;
        }
        self.in_turn += 1;
        let mut most = self.most.lock().unwrap();
        most.0 = most.0.max(self.in_turn);
        most.1 += 1;
    }
}

#[test]
fn one_connection_delivers_at_most_frames_per_turn_in_a_turn() {
    bounded(Duration::from_secs(30), || {
        const FRAMES: usize = 20_000;
        let most = Arc::new(Mutex::new((0, 0)));
        let server = Server::start(
            Config::default(),
            PerTurn {
                most: most.clone(),
                ..PerTurn::default()
            },
        );
        // 20,000 five-byte frames in one write: a single 64 KiB read holds thousands.
        let burst: Vec<u8> = (0..FRAMES).flat_map(|_| frame(b"1")).collect();
        let mut peer = TcpStream::connect(server.addr).unwrap();
        peer.write_all(&burst).unwrap();
        let deadline = Instant::now() + Duration::from_secs(20);
        while most.lock().unwrap().1 < FRAMES {
            assert!(Instant::now() < deadline, "not every frame arrived");
            std::thread::sleep(Duration::from_millis(2));
        }
        let (in_one_turn, _) = *most.lock().unwrap();
        eprintln!("most messages delivered in one turn: {in_one_turn}");
        assert!(
            in_one_turn <= FRAMES_PER_TURN,
            "{in_one_turn} messages in one turn, FRAMES_PER_TURN is {FRAMES_PER_TURN}"
        );
    });
}

// ----- on_drain is never stale ------------------------------------------------------------

#[derive(Default)]
struct Drains {
    high: usize,
    conns: Vec<ConnId>,
    bounced: bool,
    /// Connections told `Pressure::High` and not yet told `on_drain`.
    waiting: Vec<ConnId>,
    highs: usize,
    /// `on_drain` calls heard with the queue back at high-water, or with no `High` to answer.
    stale: usize,
    report: Option<mpsc::Sender<(usize, usize)>>,
}

impl Drains {
    fn send_big(&mut self, ctx: &mut Context<'_>, conn: ConnId) {
        if let Ok(Pressure::High) = ctx.send_payload(conn, json_string(self.high + 4096)) {
            self.highs += 1;
            if !self.waiting.contains(&conn) {
                self.waiting.push(conn);
            }
        }
    }
}

impl Handler for Drains {
    type Message = RawJson;

    fn on_open(&mut self, ctx: &mut Context<'_>, conn: ConnId) {
        self.conns.push(conn);
        if self.conns.len() == 2 {
            // Both queues cross high-water in one callback, and the kernel takes both at
            // once: two drains in one flush, heard one after the other.
            for c in self.conns.clone() {
                self.send_big(ctx, c);
            }
        }
    }

    fn on_message(&mut self, _: &mut Context<'_>, _: ConnId, _: RawJson) {}

    fn on_drain(&mut self, ctx: &mut Context<'_>, conn: ConnId) {
        let was_waiting = self.waiting.contains(&conn);
        self.waiting.retain(|&c| c != conn);
        if ctx.queued_bytes(conn) >= self.high || !was_waiting {
            self.stale += 1;
        }
        if !self.bounced {
            // The first drain heard pushes the *other* queue back above high-water before
            // its own drain notice is delivered.
            self.bounced = true;
            let other = self.conns.iter().copied().find(|&c| c != conn);
            if let Some(other) = other {
                self.send_big(ctx, other);
            }
        }
        if self.waiting.is_empty() {
            if let Some(tx) = self.report.take() {
                let _ = tx.send((self.stale, self.highs));
            }
        }
    }
}

#[test]
fn on_drain_answers_the_last_high_and_never_comes_with_the_queue_back_at_high_water() {
    bounded(Duration::from_secs(30), || {
        let config = Config {
            high_water: 16 * 1024,
            low_water: 4 * 1024,
            // Room for both big frames at once, so both drain in the same flush.
            send_buffer_size: Some(1 << 20),
            ..Config::default()
        };
        let (tx, rx) = mpsc::channel();
        let server = Server::start(
            config,
            Drains {
                high: 16 * 1024,
                report: Some(tx),
                ..Drains::default()
            },
        );
        let readers: Vec<_> = (0..2)
            .map(|_| {
                let mut s = TcpStream::connect(server.addr).unwrap();
                s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
                std::thread::spawn(move || {
                    let mut buf = vec![0u8; 1 << 16];
                    while let Ok(n) = s.read(&mut buf) {
                        if n == 0 {
                            break;
                        }
                    }
                })
            })
            .collect();
        let (stale, highs) = rx
            .recv_timeout(Duration::from_secs(10))
            .expect("every Pressure::High answered by on_drain");
        drop(server); // stops the reactor: the readers see their connections close
        for r in readers {
            let _ = r.join();
        }
        assert_eq!(highs, 3, "three crossings: one per queue, then the bounce");
        assert_eq!(
            stale, 0,
            "on_drain heard with the queue back above high-water"
        );
    });
}

// ----- what the docs promise ---------------------------------------------------------------

/// On its first message: pauses and resumes (an open connection), then closes and pauses
/// again (a connection flushing its queue before the close), reporting both answers.
struct PauseAnswers(Option<mpsc::Sender<(bool, bool)>>);

impl Handler for PauseAnswers {
    type Message = RawJson;

    fn on_message(&mut self, ctx: &mut Context<'_>, conn: ConnId, _: RawJson) {
        let Some(tx) = self.0.take() else { return };
        let open = ctx.pause_reading(conn);
        ctx.resume_reading(conn);
        let _ = ctx.send(conn, &"bye"); // something to flush, so the close takes a moment
        ctx.close(conn);
        let closing = ctx.pause_reading(conn);
        let _ = tx.send((open, closing));
    }
}

#[test]
fn pause_reading_answers_false_for_a_connection_that_is_closing() {
    bounded(Duration::from_secs(30), || {
        let (tx, rx) = mpsc::channel();
        let server = Server::start(Config::default(), PauseAnswers(Some(tx)));
        let mut peer = TcpStream::connect(server.addr).unwrap();
        peer.write_all(&frame(b"1")).unwrap();
        let (open, closing) = rx.recv_timeout(Duration::from_secs(10)).expect("a message");
        assert!(open, "pausing an open connection stops its reading");
        assert!(
            !closing,
            "a closing connection was not reading: nothing to stop"
        );
    });
}

// ----- commands are per turn too ---------------------------------------------------------

/// Counts `on_notify` calls per reactor turn; stops after `total`.
struct NotifyPerTurn {
    total: u64,
    seen: u64,
    turn: u64,
    in_turn: usize,
    most: usize,
}

impl Handler for NotifyPerTurn {
    type Message = RawJson;

    fn on_message(&mut self, _: &mut Context<'_>, _: ConnId, _: RawJson) {}

    fn on_notify(&mut self, ctx: &mut Context<'_>, _: u64) {
        let turn = ctx.figures().turns;
        if turn != self.turn {
            self.turn = turn;
            self.in_turn = 0;
        }
        self.in_turn += 1;
        self.most = self.most.max(self.in_turn);
        self.seen += 1;
        if self.seen == self.total {
            ctx.stop();
        }
    }
}

#[test]
fn handle_commands_are_applied_at_most_1024_a_turn() {
    bounded(Duration::from_secs(30), || {
        const TOTAL: u64 = 3000;
        let handler = NotifyPerTurn {
            total: TOTAL,
            seen: 0,
            turn: 0,
            in_turn: 0,
            most: 0,
        };
        let mut reactor = highwater::Reactor::new(Config::default(), handler).unwrap();
        let handle = reactor.handle();
        // All waiting before the first turn: one wake-up, then the per-turn share.
        for i in 0..TOTAL {
            handle.notify(i).unwrap();
        }
        reactor.run().unwrap();
        let h = reactor.into_handler();
        assert_eq!(h.seen, TOTAL);
        assert!(h.most <= 1024, "{} commands applied in one turn", h.most);
    });
}

/// Pauses every connection as it opens, before it ever asked for READABLE; reports what it
/// hears after that.
struct PausedFromTheStart {
    heard: mpsc::Sender<(&'static str, ConnId)>,
}

impl Handler for PausedFromTheStart {
    type Message = RawJson;

    fn on_open(&mut self, ctx: &mut Context<'_>, conn: ConnId) {
        ctx.pause_reading(conn);
        let _ = self.heard.send(("open", conn));
    }

    fn on_message(&mut self, _: &mut Context<'_>, conn: ConnId, _: RawJson) {
        let _ = self.heard.send(("message", conn));
    }

    fn on_peer_shutdown(&mut self, ctx: &mut Context<'_>, conn: ConnId) {
        let _ = self.heard.send(("peer_shutdown", conn));
        ctx.close(conn);
    }
}

/// The second resume path of the docs (`reactor.rs`, "How a FIN reaches a paused
/// connection"): no event was ever seen, so nothing puts the connection on the ready list;
/// re-registering READABLE makes epoll report the bytes and the FIN already waiting.
#[test]
fn a_fin_that_arrived_while_paused_is_heard_after_resuming() {
    bounded(Duration::from_secs(30), || {
        let (tx, heard) = mpsc::channel();
        let server = Server::start(Config::default(), PausedFromTheStart { heard: tx });
        let mut peer = TcpStream::connect(server.addr).unwrap();
        let next = || {
            heard
                .recv_timeout(Duration::from_secs(10))
                .expect("a callback")
        };
        let (what, conn) = next();
        assert_eq!(what, "open");
        peer.write_all(&frame(b"1")).unwrap();
        peer.shutdown(std::net::Shutdown::Write).unwrap();
        // Paused: neither the message nor the FIN is heard.
        assert!(heard.recv_timeout(Duration::from_millis(50)).is_err());
        let resumed = server.query(move |ctx| ctx.resume_reading(conn));
        assert!(resumed, "the paused connection resumed");
        assert_eq!(next().0, "message");
        assert_eq!(next().0, "peer_shutdown");
    });
}
