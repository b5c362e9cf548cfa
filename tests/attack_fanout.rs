//! Adversarial review of `FanOut` with links (findings; see each test's doc comment).
//!
//! `Bus` is a small broker like `examples/broker.rs`: a peer names its role and topic first
//! (`{"role":"pub","topic":k}` or `{"role":"sub","topic":k}`), a subscriber's own reading does
//! not pause on its queue (as in the broker example, so it can always subscribe more), and a
//! publisher's later frames go to topic `k`'s `FanOut`. The topics are shared with the test,
//! so a test can drive `send` and `sweep` itself, in an exact order, from `Server::query`.

mod common;

use std::collections::HashMap;
use std::io::Write;
use std::net::Shutdown;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use common::{Peer, Server, bounded, frame};
use highwater::bytes::Bytes;
use highwater::{
    CloseReason, Config, ConnId, ConnSettings, ConnState, Context, FanOut, Handler, PauseReason,
    RawJson, SlowPolicy, TimerId,
};
use serde_json::{Value, json};

type Topics = Arc<Mutex<Vec<FanOut>>>;
/// Every registration, in order: (role, topic, conn).
type Joined = Arc<Mutex<Vec<(String, usize, ConnId)>>>;

struct Bus {
    policies: Vec<SlowPolicy>,
    topics: Topics,
    publishers: HashMap<ConnId, usize>,
    joined: Joined,
    /// Sweep every topic this often (None: only the test sweeps).
    sweep: Option<Duration>,
}

impl Bus {
    fn new(policies: Vec<SlowPolicy>, sweep: Option<Duration>) -> Bus {
        Bus {
            topics: Arc::new(Mutex::new(policies.iter().map(|_| FanOut::new()).collect())),
            policies,
            publishers: HashMap::new(),
            joined: Arc::default(),
            sweep,
        }
    }
}

impl Handler for Bus {
    type Message = RawJson;

    fn on_start(&mut self, ctx: &mut Context<'_>) {
        if let Some(every) = self.sweep {
            ctx.set_timer(every, 0);
        }
    }

    fn on_timer(&mut self, ctx: &mut Context<'_>, _: TimerId, _: u64) {
        for t in self.topics.lock().unwrap().iter_mut() {
            t.sweep(ctx);
        }
        if let Some(every) = self.sweep {
            ctx.set_timer(every, 0);
        }
    }

    fn on_message(&mut self, ctx: &mut Context<'_>, conn: ConnId, msg: RawJson) {
        if let Some(&k) = self.publishers.get(&conn) {
            self.topics.lock().unwrap()[k].send(ctx, Some(conn), msg.into_bytes());
            return;
        }
        let v: Value = serde_json::from_slice(msg.as_bytes()).unwrap_or_default();
        let Some(k) = v["topic"].as_u64().map(|k| k as usize) else {
            return;
        };
        match v["role"].as_str() {
            Some("pub") => {
                self.publishers.insert(conn, k);
            }
            Some("sub") => {
                if let Some(s) = ctx.settings(conn) {
                    let s = ConnSettings {
                        pause_reads_above_high_water: false,
                        ..s
                    };
                    let _ = ctx.set_settings(conn, s);
                }
                self.topics.lock().unwrap()[k].add(conn, self.policies[k]);
            }
            _ => return,
        }
        let role = v["role"].as_str().unwrap_or_default().to_string();
        self.joined.lock().unwrap().push((role, k, conn));
        let _ = ctx.send(conn, &json!({"ok": true}));
    }

    fn on_close(&mut self, ctx: &mut Context<'_>, conn: ConnId, _: &CloseReason) {
        for t in self.topics.lock().unwrap().iter_mut() {
            t.remove(ctx, conn);
        }
    }
}

/// The marks of `tests/across.rs`'s fan-out tests.
fn config() -> Config {
    Config {
        high_water: 256 * 1024,
        low_water: 64 * 1024,
        send_buffer_size: Some(16 * 1024),
        recv_buffer_size: Some(16 * 1024),
        ..Config::default()
    }
}

/// Registers `peer` as `role` of `topic` and returns the server's id for it.
fn join(
    server: &Server<Bus>,
    joined: &Joined,
    peer: &mut Peer,
    role: &str,
    topic: usize,
) -> ConnId {
    peer.send(&json!({"role": role, "topic": topic}));
    assert_eq!(peer.recv(), json!({"ok": true}));
    let _ = server;
    joined.lock().unwrap().last().expect("registered").2
}

fn item(seq: usize) -> Vec<u8> {
    serde_json::to_vec(&json!({"seq": seq, "pad": "p".repeat(1000)})).unwrap()
}

fn link_paused(ctx: &mut Context<'_>, conn: ConnId) -> bool {
    ctx.conn_figures(conn)
        .is_some_and(|f| f.reading.contains(PauseReason::Link))
}

/// Reads frames until one carries `"end":true`; returns how many seqs it saw.
fn read_to_end(mut p: Peer) -> usize {
    let mut n = 0;
    while let Ok(Some(f)) = p.recv_raw() {
        let v: Value = serde_json::from_slice(&f).unwrap_or_default();
        if v["end"] == true {
            break;
        }
        n += 1;
    }
    n
}

/// A publisher writing 10 frames a millisecond until told to stop, then an end frame.
fn trickle(mut p: Peer, stop: Arc<AtomicBool>) -> thread::JoinHandle<()> {
    thread::spawn(move || {
        let mut next = 0;
        while !stop.load(Ordering::SeqCst) {
            for _ in 0..10 {
                if p.stream.write_all(&frame(&item(next))).is_err() {
                    return;
                }
                next += 1;
            }
            thread::sleep(Duration::from_millis(1)); // a pace, not a wait for an event
        }
        let end = serde_json::to_vec(&json!({"seq": next, "end": true})).unwrap();
        let _ = p.stream.write_all(&frame(&end));
    })
}

/// Found by the attack review (high), fixed: a `Drop` (or `Disconnect`) member that closes *gracefully* while it holds
/// the publisher back keeps holding it long past its grace: at best until `write_timeout`
/// (30 s by default; for ever with `write_timeout: None`), and with the default timeouts the
/// hold outlasted 45 s in two runs (see the next test for why it can be for ever).
///
/// Sequence: the subscriber reads nothing, crosses high-water, holds the publisher (a link);
/// it then half-closes (`shutdown(SHUT_WR)`). Its reading is not paused (as in the broker
/// example), so the reactor sees the FIN and the default `on_peer_shutdown` closes it
/// gracefully: `Flushing`. `FanOut::sweep`/`send` see `!is_open` and drop the member
/// *without unlinking*; the engine keeps a flushing sink's links until its queue drains
/// (`links.rs`), which it never does. The grace no longer applies to anyone: the publisher,
/// and every other subscriber of the topic, stall.
#[test]
fn a_drop_member_that_half_closes_while_holding_the_publisher_is_let_go_within_its_grace() {
    bounded(Duration::from_secs(60), || {
        let grace = Duration::from_millis(500);
        let bus = Bus::new(vec![SlowPolicy::Drop { grace }], Some(grace / 4));
        let joined = bus.joined.clone();
        let server = Server::start(config(), bus);
        let mut slow = Peer::connect_small_window(server.addr, 8 * 1024);
        let slow_id = join(&server, &joined, &mut slow, "sub", 0);
        let mut fast = Peer::connect(server.addr);
        join(&server, &joined, &mut fast, "sub", 0);
        let mut publisher = Peer::connect(server.addr);
        let pub_id = join(&server, &joined, &mut publisher, "pub", 0);
        let fast = thread::spawn(move || read_to_end(fast));
        let stop = Arc::new(AtomicBool::new(false));
        let writer = trickle(publisher, stop.clone());
        server.wait_for(
            Duration::from_secs(20),
            "the slow one holds the publisher",
            move |ctx| (ctx.pressure(slow_id)?.is_high() && link_paused(ctx, pub_id)).then_some(()),
        );
        // The slow subscriber says it will send nothing more; it still reads nothing.
        slow.stream.shutdown(Shutdown::Write).unwrap();
        server.wait_for(
            Duration::from_secs(5),
            "the slow one closing gracefully",
            move |ctx| (ctx.conn_figures(slow_id)?.state == ConnState::Flushing).then_some(()),
        );
        let t = Instant::now();
        // The promise: past its grace a Drop member stops holding the publisher back. Allow
        // six graces.
        server.wait_for(
            Duration::from_secs(3),
            "the publisher reading again",
            move |ctx| (!link_paused(ctx, pub_id)).then_some(()),
        );
        eprintln!(
            "publisher read again {:?} after the half-close",
            t.elapsed()
        );
        stop.store(true, Ordering::SeqCst);
        writer.join().unwrap();
        assert!(fast.join().unwrap() > 0);
        drop(slow);
    });
}

/// Found by the attack review (high), fixed: the same half-closed subscriber holds the publisher *for ever* (here with
/// the idle timeout, 4 s, shorter than the write timeout, 6 s; with the defaults, 60 s and
/// 30 s, the hold outlasted 45 s in two runs of the test above with a longer wait). The
/// engine's part reproduces without a fan-out (`attack_timers.rs`): a connection with its own
/// settings (the broker example sets them for every subscriber), an application timer
/// ticking (the sweep), and a graceful close: the write timeout never fires (a stale timer
/// entry left by `set_settings` spends the write-stall entry's liveness; see there). Without
/// the sweep timer this test passes (tried), with it the publisher is never read again.
#[test]
fn a_half_closed_member_is_gone_by_the_write_timeout_when_the_idle_timeout_is_shorter() {
    bounded(Duration::from_secs(60), || {
        let grace = Duration::from_millis(500);
        let bus = Bus::new(vec![SlowPolicy::Drop { grace }], Some(grace / 4));
        let joined = bus.joined.clone();
        let cfg = Config {
            idle_timeout: Some(Duration::from_secs(4)),
            write_timeout: Some(Duration::from_secs(6)),
            ..config()
        };
        let server = Server::start(cfg, bus);
        let mut slow = Peer::connect_small_window(server.addr, 8 * 1024);
        let slow_id = join(&server, &joined, &mut slow, "sub", 0);
        let mut publisher = Peer::connect(server.addr);
        let pub_id = join(&server, &joined, &mut publisher, "pub", 0);
        let stop = Arc::new(AtomicBool::new(false));
        let writer = trickle(publisher, stop.clone());
        server.wait_for(
            Duration::from_secs(20),
            "the slow one holds the publisher",
            move |ctx| (ctx.pressure(slow_id)?.is_high() && link_paused(ctx, pub_id)).then_some(()),
        );
        slow.stream.shutdown(Shutdown::Write).unwrap();
        server.wait_for(
            Duration::from_secs(5),
            "the slow one closing gracefully",
            move |ctx| (ctx.conn_figures(slow_id)?.state == ConnState::Flushing).then_some(()),
        );
        // Six seconds without a byte taken: reset, and the publisher reads again.
        server.wait_for(
            Duration::from_secs(15),
            "the flushing subscriber reset by the write timeout",
            move |ctx| ctx.pressure(slow_id).is_none().then_some(()),
        );
        server.wait_for(
            Duration::from_secs(5),
            "the publisher reading",
            move |ctx| (!link_paused(ctx, pub_id)).then_some(()),
        );
        stop.store(true, Ordering::SeqCst);
        writer.join().unwrap();
        drop(slow);
    });
}

/// Found by the attack review (medium), fixed (the grace follows the queue's crossings): a
/// member's grace was measured from a crossing it had since drained from.
/// `high_since` is reset only when this fan-out's own `send`/`sweep` sees the member below
/// high-water; if it drains and crosses again between two of them (here: pushed back over by
/// a second topic's traffic, but the application's own sends do the same), the new crossing
/// inherits the old start, and a `Disconnect` member that kept up is reset at once.
///
/// Sequence (grace 300 ms, sweeps every 75 ms): t=0 topic A's frame takes S across and S
/// holds A's publisher; sweeps at 75/150/225 ms see it high, within grace; at ~230 ms S reads
/// everything (drains to empty); topic B (Pause) then takes it across again; the sweep at
/// 320 ms sees it high "since t=0" and resets it, although it has been above high-water for
/// only a few ms in this crossing and drained within its grace the last time.
#[test]
fn a_member_that_drained_within_its_grace_and_crossed_again_is_not_reset_for_the_old_crossing() {
    bounded(Duration::from_secs(60), || {
        let grace = Duration::from_millis(300);
        let bus = Bus::new(
            vec![SlowPolicy::Disconnect { grace }, SlowPolicy::Pause],
            None,
        );
        let (joined, topics) = (bus.joined.clone(), bus.topics.clone());
        let server = Server::start(config(), bus);
        let mut s = Peer::connect_small_window(server.addr, 8 * 1024);
        let s_id = join(&server, &joined, &mut s, "sub", 0);
        join(&server, &joined, &mut s, "sub", 1);
        let mut pa = Peer::connect(server.addr);
        let pa_id = join(&server, &joined, &mut pa, "pub", 0);
        let mut pb = Peer::connect(server.addr);
        let pb_id = join(&server, &joined, &mut pb, "pub", 1);

        // t=0: topic A takes S across high-water.
        let t0 = Instant::now();
        let t = topics.clone();
        let n1 = server.query(move |ctx| {
            let mut topics = t.lock().unwrap();
            for i in 0..10_000 {
                if topics[0]
                    .send(ctx, Some(pa_id), Bytes::from(item(i)))
                    .paused_source
                {
                    return i + 1;
                }
            }
            panic!("never crossed");
        });
        // Sweeps every quarter grace, while S is (legitimately) above high-water.
        for k in 1..=3u32 {
            thread::sleep((grace / 4 * k).saturating_sub(t0.elapsed()));
            let t = topics.clone();
            let (acted, high) = server.query(move |ctx| {
                let acted = t.lock().unwrap()[0].sweep(ctx);
                (acted, ctx.pressure(s_id).map(|p| p.is_high()))
            });
            assert_eq!((acted, high), (0, Some(true)), "sweep {k}");
        }
        // S catches up within its grace: it reads everything queued for it.
        for _ in 0..n1 {
            s.recv_raw().unwrap().expect("a frame");
        }
        server.wait_for(Duration::from_secs(5), "S drained", move |ctx| {
            (!ctx.pressure(s_id)?.is_high() && ctx.queued_bytes(s_id) == 0).then_some(())
        });
        let drained_at = Instant::now();
        // Topic B's publisher then takes it across again (Pause: it holds PB back).
        let t = topics.clone();
        server.query(move |ctx| {
            let mut topics = t.lock().unwrap();
            for i in 0..10_000 {
                if topics[1]
                    .send(ctx, Some(pb_id), Bytes::from(item(i)))
                    .paused_source
                {
                    return;
                }
            }
            panic!("never crossed again");
        });
        // The next sweep, a quarter grace after the last.
        thread::sleep((grace + grace / 16).saturating_sub(t0.elapsed()));
        let high_for = drained_at.elapsed();
        let t = topics.clone();
        let (acted, open) = server.query(move |ctx| {
            let acted = t.lock().unwrap()[0].sweep(ctx);
            (acted, ctx.is_open(s_id))
        });
        assert!(high_for < grace, "the test's own timing: {high_for:?}");
        assert_eq!(
            (acted, open),
            (0, true),
            "S, above high-water for {high_for:?} in this crossing (grace {grace:?}), was reset"
        );
    });
}

/// Found by the attack review (medium), a documented limit (`fanout.rs`, Memory): `Pause` is not lossless, and a member holds more than "high-water plus
/// one frame", when a topic has two publishers. Each source is held back only after the frame
/// that took the member across, so every source adds one frame; two near-`max_frame` frames
/// exceed the hard limit (`high_water + max_frame + 4`), and a `Pause` member whose queue
/// refuses a frame is reset.
///
/// Sequence: S (Pause) is just under high-water; P1 publishes a 60 KiB frame (S crosses, P1
/// is held); P2 publishes a 60 KiB frame: refused, S reset.
#[test]
#[ignore = "known limit, documented in fanout.rs: a member holds one frame per source past high-water; size its queue limit for that"]
fn a_pause_member_is_not_reset_when_two_publishers_each_send_a_large_frame() {
    bounded(Duration::from_secs(60), || {
        let cfg = Config {
            max_frame: 64 * 1024,
            ..config()
        };
        let bus = Bus::new(vec![SlowPolicy::Pause], None);
        let (joined, topics) = (bus.joined.clone(), bus.topics.clone());
        let server = Server::start(cfg, bus);
        let mut s = Peer::connect_small_window(server.addr, 8 * 1024);
        let s_id = join(&server, &joined, &mut s, "sub", 0);
        let mut p1 = Peer::connect(server.addr);
        let p1_id = join(&server, &joined, &mut p1, "pub", 0);
        let mut p2 = Peer::connect(server.addr);
        let p2_id = join(&server, &joined, &mut p2, "pub", 0);
        let big = || {
            let v = json!({"pad": "b".repeat(60 * 1024)});
            Bytes::from(serde_json::to_vec(&v).unwrap())
        };
        let t = topics.clone();
        let (first, second, open, limit) = server.query(move |ctx| {
            let mut topics = t.lock().unwrap();
            // Just under high-water, with small frames from P1.
            let mut i = 0;
            while ctx.queued_bytes(s_id) < 250 * 1024 {
                let d = topics[0].send(ctx, Some(p1_id), Bytes::from(item(i)));
                assert!(!d.paused_source);
                i += 1;
            }
            let first = topics[0].send(ctx, Some(p1_id), big());
            let second = topics[0].send(ctx, Some(p2_id), big());
            let limit = ctx.conn_figures(s_id).map(|f| f.queue_limit);
            (first, second, ctx.is_open(s_id), limit)
        });
        eprintln!("first {first:?}, second {second:?}, queue limit {limit:?}");
        assert!(first.paused_source && first.sent == 1);
        assert_eq!(second.disconnected, 0, "the Pause member was reset");
        assert!(open);
    });
}

/// Found by the attack review (low), fixed (a new policy judges afresh): re-adding a member with `Pause` (`add` on a member: "gets the new policy")
/// does not make it lossless while it is above high-water after a `Drop` let it go: the
/// `let_go` flag survives the policy change, and the `Pause` member misses frames (counted,
/// with a gap notice later) until it drains.
#[test]
fn a_member_switched_to_pause_misses_no_frame() {
    bounded(Duration::from_secs(60), || {
        let bus = Bus::new(
            vec![SlowPolicy::Drop {
                grace: Duration::ZERO,
            }],
            None,
        );
        let (joined, topics) = (bus.joined.clone(), bus.topics.clone());
        let server = Server::start(config(), bus);
        let mut s = Peer::connect_small_window(server.addr, 8 * 1024);
        let s_id = join(&server, &joined, &mut s, "sub", 0);
        let mut p = Peer::connect(server.addr);
        let p_id = join(&server, &joined, &mut p, "pub", 0);
        let t = topics.clone();
        let (missed_as_pause, policy_taken) = server.query(move |ctx| {
            let mut topics = t.lock().unwrap();
            let mut i = 0;
            // Drop with no grace: let go as soon as it is above high-water.
            while topics[0]
                .send(ctx, Some(p_id), Bytes::from(item(i)))
                .dropped
                == 0
            {
                i += 1;
                assert!(i < 10_000, "never dropped");
            }
            // The application now wants this one lossless.
            let re_added = topics[0].add(s_id, SlowPolicy::Pause);
            let d = topics[0].send(ctx, Some(p_id), Bytes::from(item(i + 1)));
            (d.dropped, !re_added)
        });
        assert!(policy_taken);
        assert_eq!(missed_as_pause, 0, "a Pause member missed a frame");
    });
}

/// Found by the attack review (medium), fixed (a connection may now be linked to itself): a
/// member that is also the frame's source held nothing back. `hold`
/// asks `link(source, sink)`, which refuses a connection linked to itself, so the source goes
/// on being read while its own queue is above high-water; with the broker example's settings
/// (a subscriber's reading does not pause on its own queue) its queue grows to the hard
/// limit (high-water + `max_frame` + 4: 8.6 MB with the defaults; the test sees 2 MB queued
/// against a 256 KiB mark, every frame read), and a `Pause` member is then reset
/// ("lossless"), a `Drop` one let go. The memory bound ("high-water plus one frame when there
/// is a source") does not hold. A chat room
/// (every client publishes and subscribes to the same topic) meets this with any client that
/// stops reading.
#[test]
fn a_pause_member_that_is_also_the_source_is_held_back_not_reset() {
    bounded(Duration::from_secs(60), || {
        let bus = Bus::new(vec![SlowPolicy::Pause], None);
        let joined = bus.joined.clone();
        let server = Server::start(config(), bus);
        let mut me = Peer::connect_small_window(server.addr, 8 * 1024);
        let me_id = join(&server, &joined, &mut me, "sub", 0);
        join(&server, &joined, &mut me, "pub", 0);
        // It publishes 2 MB to its own topic and reads nothing.
        let mut w = me.stream.try_clone().unwrap();
        let writer = thread::spawn(move || {
            for i in 0..2_000 {
                if w.write_all(&frame(&item(i))).is_err() {
                    return;
                }
            }
        });
        // Held back (not read), reset, or read to the end (2,000 frames and the two roles).
        let outcome = server.wait_for(
            Duration::from_secs(20),
            "held back, reset or read out",
            move |ctx| {
                let Some(f) = ctx.conn_figures(me_id) else {
                    return Some("reset");
                };
                if f.frames_in == 2_002 {
                    return Some("read every frame");
                }
                (!f.reading.is_empty()).then_some("held back")
            },
        );
        let q = server.query(move |ctx| ctx.queue_figures(me_id));
        eprintln!("{outcome}: {q:?}");
        assert_eq!(outcome, "held back");
        let q = q.expect("open");
        assert!(
            q.peak <= q.high_water + 4 * 1024,
            "its queue peaked at {} bytes",
            q.peak
        );
        drop(me);
        let _ = writer.join();
    });
}

/// Held up: two topics holding the same publisher back for the same subscriber, and the
/// application's own link on that pair, each need their own undoing; the publisher reads
/// again only when the last of them is gone. And sweeps with no members do nothing.
#[test]
fn two_topics_and_an_application_link_on_one_pair_do_not_undo_each_other() {
    bounded(Duration::from_secs(60), || {
        let bus = Bus::new(vec![SlowPolicy::Pause, SlowPolicy::Pause], None);
        let (joined, topics) = (bus.joined.clone(), bus.topics.clone());
        let server = Server::start(config(), bus);
        let mut s = Peer::connect_small_window(server.addr, 8 * 1024);
        let s_id = join(&server, &joined, &mut s, "sub", 0);
        join(&server, &joined, &mut s, "sub", 1);
        let mut p = Peer::connect(server.addr);
        let p_id = join(&server, &joined, &mut p, "pub", 0);
        let t = topics.clone();
        let steps = server.query(move |ctx| {
            let mut topics = t.lock().unwrap();
            let mut i = 0;
            while !topics[0]
                .send(ctx, Some(p_id), Bytes::from(item(i)))
                .paused_source
            {
                i += 1;
            }
            // Topic B's frame from the same publisher: a second hold on the same pair.
            assert!(
                topics[1]
                    .send(ctx, Some(p_id), Bytes::from(item(i + 1)))
                    .paused_source
            );
            assert!(ctx.link(p_id, s_id), "the application's own link");
            let mut steps = vec![link_paused(ctx, p_id)];
            topics[0].remove(ctx, s_id);
            steps.push(link_paused(ctx, p_id));
            topics[1].remove(ctx, s_id);
            steps.push(link_paused(ctx, p_id));
            assert!(ctx.unlink(p_id, s_id));
            steps.push(link_paused(ctx, p_id));
            assert!(!ctx.unlink(p_id, s_id), "no link left");
            // No members: nothing to do.
            steps.push(topics[0].sweep(ctx) == 0 && topics[1].sweep(ctx) == 0);
            steps
        });
        assert_eq!(steps, [true, true, true, false, true]);
    });
}
