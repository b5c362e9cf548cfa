//! Backpressure across connections: links (a relay's hop), fan-out policies (a broker's slow
//! subscriber), per-connection settings and pressure queries.
//!
//! One handler, `Hub`, plays relay or broker: a peer's first frame names its role
//! (`{"role":"pub"}` or `{"role":"sub"}`); every later frame from a publisher goes to the
//! subscribers, by a link (relay) or through a `FanOut` with a policy (broker).

mod common;

use std::io::Write;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Duration;

use common::{Peer, Server, bounded, frame};
use highwater::bytes::Bytes;
use highwater::{
    Config, ConnId, Context, FanOut, Handler, PauseReason, Pressure, RawJson, SlowPolicy, TimerId,
};
use serde_json::{Value, json};

#[derive(Clone, Copy)]
enum Mode {
    /// Forward to the one subscriber, linked: the subscriber's queue pauses the publisher.
    Link,
    /// Forward to every subscriber through a fan-out with this policy for each.
    Fan(SlowPolicy),
}

struct Hub {
    mode: Mode,
    publisher: Option<ConnId>,
    subscribers: Vec<ConnId>,
    topic: FanOut,
    /// The roles, for the test thread: (publisher, subscribers).
    roles: Roles,
}

type Roles = Arc<Mutex<(Option<ConnId>, Vec<ConnId>)>>;

impl Hub {
    fn new(mode: Mode) -> Hub {
        Hub {
            mode,
            publisher: None,
            subscribers: Vec::new(),
            topic: FanOut::new(),
            roles: Roles::default(),
        }
    }
}

/// How often the hub sweeps its fan-out: a member past its grace is let go even while it
/// holds the publisher back (so no frame comes).
const SWEEP: Duration = Duration::from_millis(20);

impl Handler for Hub {
    type Message = RawJson;

    fn on_start(&mut self, ctx: &mut Context<'_>) {
        if let Mode::Fan(_) = self.mode {
            ctx.set_timer(SWEEP, 0);
        }
    }

    fn on_timer(&mut self, ctx: &mut Context<'_>, _: TimerId, _: u64) {
        self.topic.sweep(ctx);
        ctx.set_timer(SWEEP, 0);
    }

    fn on_message(&mut self, ctx: &mut Context<'_>, conn: ConnId, msg: RawJson) {
        if Some(conn) == self.publisher {
            let payload = msg.into_bytes();
            match self.mode {
                Mode::Link => {
                    for &sub in &self.subscribers {
                        let _ = ctx.send_payload(sub, payload.clone());
                    }
                }
                Mode::Fan(_) => {
                    self.topic.send(ctx, Some(conn), payload);
                }
            }
            return;
        }
        let role: Value = serde_json::from_slice(msg.as_bytes()).unwrap_or_default();
        match role["role"].as_str() {
            Some("pub") => self.publisher = Some(conn),
            Some("sub") => {
                self.subscribers.push(conn);
                if let Mode::Fan(policy) = self.mode {
                    self.topic.add(conn, policy);
                }
            }
            _ => return,
        }
        *self.roles.lock().unwrap() = (self.publisher, self.subscribers.clone());
        if let (Mode::Link, Some(p)) = (self.mode, self.publisher) {
            for &sub in &self.subscribers {
                ctx.link(p, sub);
            }
        }
        let _ = ctx.send(conn, &json!({"ok": true}));
    }
}

/// Small marks and buffers, so pressure builds with little data.
fn config() -> Config {
    Config {
        high_water: 32 * 1024,
        low_water: 8 * 1024,
        send_buffer_size: Some(16 * 1024),
        recv_buffer_size: Some(16 * 1024),
        ..Config::default()
    }
}

/// For the fan-out: marks large enough that a subscriber reading as fast as it can is never
/// above high-water for long on a busy machine (a publisher at 10 MB/s fills 256 KiB in
/// 25 ms), while one that reads nothing is above it at once.
fn fan_config() -> Config {
    Config {
        high_water: 256 * 1024,
        low_water: 64 * 1024,
        ..config()
    }
}

fn join(server: &Server<Hub>, role: &str, small_window: bool) -> Peer {
    let mut p = if small_window {
        Peer::connect_small_window(server.addr, 8 * 1024)
    } else {
        Peer::connect(server.addr)
    };
    p.send(&json!({ "role": role }));
    assert_eq!(p.recv(), json!({"ok": true}));
    p
}

/// A payload of about 1 KiB carrying its sequence number.
fn item(seq: usize) -> Vec<u8> {
    serde_json::to_vec(&json!({"seq": seq, "pad": "p".repeat(1000)})).unwrap()
}

fn seq(payload: &[u8]) -> Option<u64> {
    serde_json::from_slice::<Value>(payload).ok()?["seq"].as_u64()
}

/// Starts a thread that writes `n` items as fast as the publisher's socket takes them, and
/// counts them.
fn publish(mut p: Peer, n: usize) -> (Arc<AtomicUsize>, thread::JoinHandle<Peer>) {
    let written = Arc::new(AtomicUsize::new(0));
    let w = written.clone();
    let t = thread::spawn(move || {
        for i in 0..n {
            p.stream.write_all(&frame(&item(i))).expect("publish");
            w.fetch_add(1, Ordering::SeqCst);
        }
        p
    });
    (written, t)
}

fn paused_by(server: &Server<Hub>, conn: ConnId, reason: PauseReason) -> bool {
    server.query(move |ctx| {
        ctx.conn_figures(conn)
            .is_some_and(|f| f.reading.contains(reason))
    })
}

/// The publisher's and the first subscriber's ids (`join` has already had both confirmed).
fn ids(roles: &Roles) -> (ConnId, ConnId) {
    let r = roles.lock().unwrap();
    (r.0.expect("a publisher"), r.1[0])
}

fn start(mode: Mode) -> (Server<Hub>, Roles) {
    let hub = Hub::new(mode);
    let roles = hub.roles.clone();
    let config = match mode {
        Mode::Link => config(),
        Mode::Fan(_) => fan_config(),
    };
    (Server::start(config, hub), roles)
}

#[test]
fn a_link_stops_reading_the_source_while_the_sink_is_above_high_water_and_nothing_is_lost() {
    bounded(Duration::from_secs(60), || {
        const N: usize = 20_000; // 20 MB: far more than every buffer on the way
        let (server, roles) = start(Mode::Link);
        let mut sub = join(&server, "sub", true);
        let publisher = join(&server, "pub", false);
        let (publisher_id, sub_id) = ids(&roles);
        let (written, writer) = publish(publisher, N);
        // The subscriber reads nothing: its queue reaches high-water, the link pauses the
        // publisher's connection, its window closes, the publisher's writes block.
        server.wait_for(
            Duration::from_secs(20),
            "the publisher paused by the link",
            move |ctx| {
                ctx.conn_figures(publisher_id)
                    .filter(|f| f.reading.contains(PauseReason::Link))
                    .map(|_| ())
            },
        );
        let f = server.query(move |ctx| ctx.queue_figures(sub_id)).unwrap();
        assert_eq!(f.high_water, 32 * 1024, "the figures carry the marks");
        // One read's frames may follow the crossing (64 KiB at most), not megabytes.
        assert!(
            f.peak <= f.high_water + 80 * 1024,
            "the sink's queue peaked at {} bytes",
            f.peak
        );
        assert!(
            written.load(Ordering::SeqCst) < N,
            "the publisher was held back"
        );
        // The subscriber reads: everything arrives, in order, and the link lets go.
        for i in 0..N {
            let p = sub.recv_raw().unwrap().expect("a frame");
            assert_eq!(seq(&p), Some(i as u64));
        }
        writer.join().unwrap();
        assert!(!paused_by(&server, publisher_id, PauseReason::Link));
        let peak = server
            .query(move |ctx| ctx.queue_figures(sub_id))
            .unwrap()
            .peak;
        assert!(peak <= 32 * 1024 + 80 * 1024, "peak {peak}");
    });
}

#[test]
fn closing_the_sink_lets_the_source_read_again() {
    bounded(Duration::from_secs(60), || {
        let (server, roles) = start(Mode::Link);
        let sub = join(&server, "sub", true);
        let publisher = join(&server, "pub", false);
        let (publisher_id, _) = ids(&roles);
        let (_written, _writer) = publish(publisher, 20_000);
        server.wait_for(Duration::from_secs(20), "paused by the link", move |ctx| {
            ctx.conn_figures(publisher_id)
                .filter(|f| f.reading.contains(PauseReason::Link))
                .map(|_| ())
        });
        sub.reset();
        server.wait_for(
            Duration::from_secs(20),
            "the link gone with the sink",
            move |ctx| {
                ctx.conn_figures(publisher_id)
                    .filter(|f| !f.reading.contains(PauseReason::Link))
                    .map(|_| ())
            },
        );
    });
}

#[test]
fn unlink_lets_the_source_read_again_and_link_refuses_nonsense() {
    bounded(Duration::from_secs(60), || {
        let (server, roles) = start(Mode::Link);
        let _sub = join(&server, "sub", true);
        let publisher = join(&server, "pub", false);
        let (publisher_id, sub_id) = ids(&roles);
        let (_written, _writer) = publish(publisher, 20_000);
        server.wait_for(Duration::from_secs(20), "paused by the link", move |ctx| {
            ctx.conn_figures(publisher_id)
                .filter(|f| f.reading.contains(PauseReason::Link))
                .map(|_| ())
        });
        let (unlinked, again, selfish) = server.query(move |ctx| {
            let a = ctx.unlink(publisher_id, sub_id);
            let b = ctx.unlink(publisher_id, sub_id);
            // Linked to itself: allowed (a fan-out member that is its own source), and
            // undone like any other link.
            let c = ctx.link(sub_id, sub_id) && ctx.unlink(sub_id, sub_id);
            (a, b, c)
        });
        assert!(unlinked && !again && selfish);
        // The unlinked publisher reads again; its own replies are not what fills the sink,
        // so only the budget or the sink's hard limit could stop it now.
        assert!(!paused_by(&server, publisher_id, PauseReason::Link));
    });
}

/// Reads every frame until `last` (a seq), returning the seqs seen and the gap notices.
fn read_until(sub: &mut Peer, last: u64) -> (Vec<u64>, Vec<u64>) {
    read_while(sub, |s, _| s != last)
}

/// Reads frames while `go_on(seq, gaps so far)` says so (asked after each frame).
fn read_while(sub: &mut Peer, mut go_on: impl FnMut(u64, &[u64]) -> bool) -> (Vec<u64>, Vec<u64>) {
    let (mut seqs, mut gaps) = (Vec::new(), Vec::new());
    loop {
        let p = match sub.recv_raw() {
            Ok(Some(p)) => p,
            other => panic!(
                "{other:?} after {} frames (last seq {:?}) and gaps {gaps:?}",
                seqs.len(),
                seqs.last()
            ),
        };
        let v: Value = serde_json::from_slice(&p).unwrap();
        if v["op"] == "gap" {
            gaps.push(v["dropped"].as_u64().unwrap());
            continue;
        }
        let s = v["seq"].as_u64().unwrap();
        seqs.push(s);
        if v["end"] == true || !go_on(s, &gaps) {
            return (seqs, gaps);
        }
    }
}

/// A publisher that goes on at a steady pace (a frame every 100 µs or so, in bursts of 10)
/// until told to stop, numbering from `first`. Returns the next number.
fn trickle(mut p: Peer, first: usize, stop: Arc<AtomicBool>) -> thread::JoinHandle<usize> {
    thread::spawn(move || {
        let mut next = first;
        while !stop.load(Ordering::SeqCst) {
            for _ in 0..10 {
                p.stream.write_all(&frame(&item(next))).expect("publish");
                next += 1;
            }
            thread::sleep(Duration::from_millis(1)); // a pace, not a wait for an event
        }
        // The last frame says so, for readers that read to the end.
        let end = json!({"seq": next, "end": true});
        p.stream
            .write_all(&frame(&serde_json::to_vec(&end).unwrap()))
            .expect("publish");
        next + 1
    })
}

/// Whether `seqs` is exactly 0, 1, 2, ... (without printing thousands of numbers).
fn contiguous(seqs: &[u64]) -> Result<(), String> {
    match seqs.iter().enumerate().find(|(i, s)| **s != *i as u64) {
        None => Ok(()),
        Some((i, s)) => Err(format!(
            "frame {i} was seq {s} (of {} received)",
            seqs.len()
        )),
    }
}

/// Whether `sub` is above high-water and holds `publisher` back (a link pauses its reading).
fn holds_back(ctx: &mut Context<'_>, publisher: ConnId, sub: ConnId) -> Option<()> {
    let high = ctx.pressure(sub)?.is_high();
    let held = ctx
        .conn_figures(publisher)?
        .reading
        .contains(PauseReason::Link);
    (high && held).then_some(())
}

#[test]
fn a_member_that_drains_within_its_grace_loses_nothing_and_holds_the_publisher_back_meanwhile() {
    // Under `Drop` and `Disconnect` alike, a member above high-water first paces the
    // publisher: within its grace it is neither dropped frames nor reset.
    for policy in [
        SlowPolicy::Drop {
            grace: Duration::from_secs(20),
        },
        SlowPolicy::Disconnect {
            grace: Duration::from_secs(20),
        },
    ] {
        bounded(Duration::from_secs(60), move || {
            const N: usize = 20_000; // 20 MB: far more than every buffer on the way
            let (server, roles) = start(Mode::Fan(policy));
            let mut slow = join(&server, "sub", true);
            let mut fast = join(&server, "sub", false);
            let publisher = join(&server, "pub", false);
            let (publisher_id, slow_id) = ids(&roles);
            let (written, writer) = publish(publisher, N);
            let fast = thread::spawn(move || read_until(&mut fast, N as u64 - 1));
            // The slow one reads nothing yet: its queue crosses high-water, and it holds the
            // publisher back instead of missing frames or growing its queue.
            server.wait_for(
                Duration::from_secs(20),
                "the slow subscriber holding the publisher back",
                move |ctx| holds_back(ctx, publisher_id, slow_id),
            );
            assert!(written.load(Ordering::SeqCst) < N, "{policy:?}");
            // It catches up well within its grace: everything arrives, in order, no gap.
            let (seqs, gaps) = read_until(&mut slow, N as u64 - 1);
            contiguous(&seqs).unwrap();
            assert!(gaps.is_empty(), "{policy:?}: {gaps:?}");
            let (seqs, gaps) = fast.join().unwrap();
            contiguous(&seqs).unwrap();
            assert!(gaps.is_empty(), "{policy:?}: {gaps:?}");
            writer.join().unwrap();
            // Never reset, and it held no more than its high-water mark and the frame that
            // took it across (the publisher stopped being delivered at once).
            let f = server
                .query(move |ctx| ctx.queue_figures(slow_id))
                .expect("the slow subscriber still connected");
            assert!(
                f.peak <= f.high_water + 4 * 1024,
                "{policy:?}: its queue peaked at {} bytes",
                f.peak
            );
        });
    }
}

/// A slow subscriber that reads nothing while a publisher trickles; `grace` is its `Drop`
/// grace. The fast one gets everything; the slow one, when it reads, learns exactly what it
/// missed.
fn drop_policy_case(grace: Duration) {
    let (server, roles) = start(Mode::Fan(SlowPolicy::Drop { grace }));
    let mut slow = join(&server, "sub", true);
    let mut fast = join(&server, "sub", false);
    let publisher = join(&server, "pub", false);
    let (publisher_id, slow_id) = ids(&roles);
    let stop = Arc::new(AtomicBool::new(false));
    let writer = trickle(publisher, 0, stop.clone());
    let fast = thread::spawn(move || read_until(&mut fast, 3_000));
    if !grace.is_zero() {
        // First it holds the publisher back, for its grace; then it is let go, and the
        // publisher reads again although no frame came to say so (the hub's sweep): the
        // fast subscriber's 3,000 frames need it.
        server.wait_for(
            Duration::from_secs(20),
            "the slow subscriber holding the publisher back",
            move |ctx| holds_back(ctx, publisher_id, slow_id),
        );
    }
    // The fast subscriber is not slowed for longer than the grace by the slow one, which
    // reads nothing: it gets every frame, in order, with no gap notice.
    let (seqs, gaps) = fast.join().unwrap();
    contiguous(&seqs).unwrap();
    assert!(gaps.is_empty(), "{gaps:?}");
    let f = server.query(move |ctx| ctx.queue_figures(slow_id)).unwrap();
    assert!(
        f.peak <= f.high_water + 4 * 1024,
        "the slow one's queue peaked at {} bytes",
        f.peak
    );
    // The slow one now reads what was queued for it; frames keep coming, and once it has
    // drained, the next one it gets is preceded by a gap notice.
    let (seqs, gaps) = read_while(&mut slow, |_, gaps| gaps.is_empty());
    stop.store(true, Ordering::SeqCst);
    let _ = writer.join();
    let last = *seqs.last().unwrap();
    assert_eq!(gaps.len(), 1);
    assert!(gaps[0] > 0);
    contiguous(&seqs[..seqs.len() - 1]).unwrap();
    assert_eq!(
        seqs.len() as u64 + gaps[0],
        last + 1,
        "every frame up to the last one either arrived or was counted in the gap notice"
    );
}

#[test]
fn drop_policy_lets_a_slow_subscriber_go_past_its_grace_and_tells_it_exactly_what_it_missed() {
    bounded(Duration::from_secs(60), || {
        drop_policy_case(Duration::from_millis(300))
    });
}

#[test]
fn drop_policy_with_no_grace_drops_at_once() {
    bounded(Duration::from_secs(60), || drop_policy_case(Duration::ZERO));
}

#[test]
fn disconnect_policy_resets_a_subscriber_that_stays_slow_past_its_grace() {
    bounded(Duration::from_secs(60), || {
        let grace = Duration::from_millis(300);
        let (server, roles) = start(Mode::Fan(SlowPolicy::Disconnect { grace }));
        let mut slow = join(&server, "sub", true);
        let mut fast = join(&server, "sub", false);
        let publisher = join(&server, "pub", false);
        let (publisher_id, slow_id) = ids(&roles);
        let stop = Arc::new(AtomicBool::new(false));
        let writer = trickle(publisher, 0, stop.clone());
        // Reads to the publisher's last frame.
        let reader = thread::spawn(move || read_while(&mut fast, |_, _| true).0);
        // The slow one reads nothing: it holds the publisher back for its grace, then the
        // server resets it (the sweep: no frame comes while the publisher is held).
        server.wait_for(
            Duration::from_secs(20),
            "the slow subscriber holding the publisher back",
            move |ctx| holds_back(ctx, publisher_id, slow_id),
        );
        server.wait_for(
            Duration::from_secs(20),
            "the slow subscriber gone",
            move |ctx| ctx.pressure(slow_id).is_none().then_some(()),
        );
        stop.store(true, Ordering::SeqCst);
        let sent = writer.join().unwrap();
        let seqs = reader.join().unwrap();
        contiguous(&seqs).unwrap();
        assert_eq!(seqs.len(), sent, "the fast subscriber got every frame");
        // What reached the slow one before the reset, then the reset itself.
        loop {
            match slow.recv_raw() {
                Ok(Some(_)) => continue,
                Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => break,
                other => panic!("expected a reset, got {other:?}"),
            }
        }
    });
}

#[test]
fn pause_policy_is_lossless_and_holds_the_publisher_back() {
    bounded(Duration::from_secs(60), || {
        const N: usize = 20_000;
        let (server, roles) = start(Mode::Fan(SlowPolicy::Pause));
        let mut slow = join(&server, "sub", true);
        let mut fast = join(&server, "sub", false);
        let publisher = join(&server, "pub", false);
        let (publisher_id, _) = ids(&roles);
        let (written, writer) = publish(publisher, N);
        server.wait_for(
            Duration::from_secs(20),
            "the publisher held back",
            move |ctx| {
                ctx.conn_figures(publisher_id)
                    .filter(|f| f.reading.contains(PauseReason::Link))
                    .map(|_| ())
            },
        );
        assert!(written.load(Ordering::SeqCst) < N);
        let slow_reader = thread::spawn(move || read_until(&mut slow, N as u64 - 1));
        let (seqs, gaps) = read_until(&mut fast, N as u64 - 1);
        contiguous(&seqs).unwrap();
        assert!(gaps.is_empty());
        let (seqs, gaps) = slow_reader.join().unwrap();
        contiguous(&seqs).unwrap(); // nothing lost, in order
        assert!(gaps.is_empty());
        writer.join().unwrap();
    });
}

/// Echoes, and makes a connection that says `{"own":true}` first keep reading above
/// high-water, with marks of its own. Remembers which one that was, and every id it saw.
#[derive(Default)]
struct Echo {
    own: Arc<Mutex<Option<ConnId>>>,
    all: Arc<Mutex<Vec<ConnId>>>,
}

impl Handler for Echo {
    type Message = Value;

    fn on_open(&mut self, _ctx: &mut Context<'_>, conn: ConnId) {
        self.all.lock().unwrap().push(conn);
    }

    fn on_message(&mut self, ctx: &mut Context<'_>, conn: ConnId, msg: Value) {
        if msg == json!({"own": true}) {
            let mut s = ctx.settings(conn).expect("open");
            s.pause_reads_above_high_water = false;
            s.high_water = 4 * 1024;
            s.low_water = 1024;
            assert_eq!(ctx.set_settings(conn, s), Ok(true));
            *self.own.lock().unwrap() = Some(conn);
            let _ = ctx.send(conn, &json!({"ok": true}));
            return;
        }
        let _ = ctx.send(conn, &msg);
    }
}

#[test]
fn per_connection_settings_keep_one_connection_reading_with_its_own_marks() {
    bounded(Duration::from_secs(60), || {
        let echo = Echo::default();
        let (own_id, all) = (echo.own.clone(), echo.all.clone());
        let server = Server::start(config(), echo);
        let mut own = Peer::connect_small_window(server.addr, 8 * 1024);
        own.send(&json!({"own": true}));
        assert_eq!(own.recv(), json!({"ok": true}));
        let plain = Peer::connect_small_window(server.addr, 8 * 1024);
        // Neither peer reads its replies from now on.
        let request = frame(&serde_json::to_vec(&json!({"pad": "q".repeat(1000)})).unwrap());
        let burst: Vec<u8> = (0..200).flat_map(|_| request.clone()).collect();
        let (a, b) = (burst.clone(), burst);
        let mut own_stream = own.stream.try_clone().unwrap();
        let mut plain_stream = plain.stream.try_clone().unwrap();
        let w1 = thread::spawn(move || own_stream.write_all(&a));
        let w2 = thread::spawn(move || plain_stream.write_all(&b));
        let own_id = own_id.lock().unwrap().expect("own settings applied");
        // The connection with its own settings reads all 200 requests although its queue is
        // far above its (smaller) high-water mark; the plain one stops at its mark.
        let f = server.wait_for(
            Duration::from_secs(20),
            "the own-settings peer read out",
            move |ctx| ctx.conn_figures(own_id).filter(|f| f.frames_in == 201),
        );
        assert!(!f.reading.contains(PauseReason::WriteQueue));
        assert_eq!((f.high_water, f.low_water), (4 * 1024, 1024));
        let plain_id = *all
            .lock()
            .unwrap()
            .iter()
            .find(|id| **id != own_id)
            .expect("the plain peer");
        let p = server.wait_for(
            Duration::from_secs(20),
            "the plain peer paused",
            move |ctx| {
                ctx.conn_figures(plain_id)
                    .filter(|f| f.reading.contains(PauseReason::WriteQueue))
            },
        );
        assert!(
            p.frames_in < 200,
            "the plain peer stopped being read: {}",
            p.frames_in
        );
        assert_eq!(p.high_water, 32 * 1024);
        drop((own, plain));
        let _ = (w1.join(), w2.join());
    });
}

#[test]
fn settings_are_validated_and_pressure_is_a_cheap_query() {
    bounded(Duration::from_secs(30), || {
        let echo = Echo::default();
        let all = echo.all.clone();
        let server = Server::start(config(), echo);
        let mut peer = Peer::connect(server.addr);
        peer.send(&json!(1));
        assert_eq!(peer.recv(), json!(1));
        let id = all.lock().unwrap()[0];
        let (err, pressure, closed, gone) = server.query(move |ctx| {
            let mut s = ctx.settings(id).unwrap();
            s.low_water = s.high_water + 1;
            let err = ctx.set_settings(id, s).unwrap_err();
            let stale = ConnId::from_u64(u64::MAX);
            (
                err.field(),
                ctx.pressure(id),
                ctx.pressure(stale),
                ctx.set_settings(stale, ctx.settings(id).unwrap()),
            )
        });
        assert_eq!(err, "low_water");
        assert_eq!(pressure, Some(Pressure::Clear));
        assert_eq!(closed, None);
        assert_eq!(gone, Ok(false));
        let _ = Bytes::new();
    });
}
