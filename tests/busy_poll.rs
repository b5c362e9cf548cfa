//! `Config::busy_poll`: after a turn with events the reactor keeps polling without sleeping
//! for the window, and then sleeps again; timers, messages and shutdown work as without it.
//!
//! The sleeps below are the subject, not synchronisation: each one lets a window of time pass
//! whose effect on the reactor (how many turns it took, how much CPU it burnt) is measured.

mod common;

use std::sync::mpsc;
use std::time::{Duration, Instant};

use common::{Peer, Server, bounded};
use highwater::{Config, ConnId, Context, Handler, RawJson, TimerId};
use serde_json::json;

/// Echoes messages; reports timers as they fire.
struct Echo {
    fired: mpsc::Sender<Instant>,
}

impl Handler for Echo {
    type Message = RawJson;
    fn on_message(&mut self, ctx: &mut Context<'_>, conn: ConnId, msg: RawJson) {
        let _ = ctx.send_payload(conn, msg.into_bytes());
    }
    fn on_timer(&mut self, _ctx: &mut Context<'_>, _timer: TimerId, _data: u64) {
        let _ = self.fired.send(Instant::now());
    }
}

fn start(busy_poll: Option<Duration>) -> (Server<Echo>, mpsc::Receiver<Instant>) {
    let (fired, timers) = mpsc::channel();
    let config = Config {
        busy_poll,
        ..Config::default()
    };
    (Server::start(config, Echo { fired }), timers)
}

/// The calling thread's CPU time so far, user + system, in clock ticks of 10 ms.
fn thread_cpu_ticks() -> u64 {
    let stat = std::fs::read_to_string("/proc/thread-self/stat").expect("thread stat");
    // Fields after the command name (which is in parentheses): utime is the 12th, stime the
    // 13th of those.
    let rest = &stat[stat.rfind(')').expect("stat format") + 2..];
    let fields: Vec<&str> = rest.split(' ').collect();
    let ticks = |i: usize| fields[i].parse::<u64>().expect("ticks");
    ticks(11) + ticks(12)
}

/// The reactor's turns so far and its thread's CPU ticks, read on the reactor thread
/// itself. Asking is an event, so it opens a window too.
fn turns_and_cpu<H: Handler + Send + 'static>(server: &Server<H>) -> (u64, u64) {
    server.query(|ctx| (ctx.figures().turns, thread_cpu_ticks()))
}

#[test]
fn polls_without_sleeping_inside_the_window() {
    bounded(Duration::from_secs(20), || {
        let (busy, _t1) = start(Some(Duration::from_secs(10)));
        // A window too long to add to the clock means "always", as the other durations of
        // `Config` mean "never" for a timeout.
        let (always, _t3) = start(Some(Duration::MAX));
        let (plain, _t2) = start(None);
        let (busy_before, _) = turns_and_cpu(&busy);
        let (always_before, _) = turns_and_cpu(&always);
        let (plain_before, _) = turns_and_cpu(&plain);
        std::thread::sleep(Duration::from_millis(200));
        let (busy_after, _) = turns_and_cpu(&busy);
        let (always_after, _) = turns_and_cpu(&always);
        let (plain_after, _) = turns_and_cpu(&plain);
        assert!(
            always_after - always_before > 100,
            "a reactor with busy_poll Duration::MAX took only {} turns in 200 ms",
            always_after - always_before
        );
        // Each zero-timeout poll is a turn: a spinning reactor makes thousands in 200 ms,
        // one that sleeps makes the few its own queries cost.
        assert!(
            busy_after - busy_before > 100,
            "busy-polling reactor took only {} turns in 200 ms",
            busy_after - busy_before
        );
        assert!(
            plain_after - plain_before < 10,
            "a reactor without busy polling took {} turns in 200 ms with nothing to do",
            plain_after - plain_before
        );
    });
}

#[test]
fn sleeps_again_after_the_window() {
    bounded(Duration::from_secs(20), || {
        let (server, _timers) = start(Some(Duration::from_millis(20)));
        let mut peer = Peer::connect(server.addr);
        peer.send(&json!({"n": 1}));
        assert_eq!(peer.recv(), json!({"n": 1}));
        let (turns_before, cpu_before) = turns_and_cpu(&server);
        std::thread::sleep(Duration::from_millis(600));
        let (turns_after, cpu_after) = turns_and_cpu(&server);
        // The query opened a 20 ms window; after it the thread sleeps: at most a few ticks
        // of CPU in 600 ms, where one that kept spinning would burn about 60.
        assert!(
            cpu_after - cpu_before < 20,
            "the reactor burnt {} ticks of CPU in 600 ms after a 20 ms window ({} turns)",
            cpu_after - cpu_before,
            turns_after - turns_before
        );
    });
}

#[test]
fn messages_and_timers_work_while_spinning() {
    bounded(Duration::from_secs(20), || {
        let (server, timers) = start(Some(Duration::from_secs(10)));
        let mut peer = Peer::connect(server.addr);
        for n in 0..100 {
            peer.send(&json!({"n": n}));
            assert_eq!(peer.recv(), json!({"n": n}));
        }
        let set_at = server.query(|ctx| {
            ctx.set_timer(Duration::from_millis(50), 7);
            ctx.now()
        });
        let fired = timers
            .recv_timeout(Duration::from_secs(5))
            .expect("timer fired");
        let after = fired - set_at;
        assert!(after >= Duration::from_millis(50), "fired early: {after:?}");
        assert!(after < Duration::from_secs(2), "fired late: {after:?}");
        // A graceful shutdown ends a spinning reactor too.
        drop(peer);
        server.shutdown(Duration::from_secs(1));
    });
}

/// Replies to each message after `work` of "work", with the turn count at the reply.
struct Slow {
    work: Duration,
}

impl Handler for Slow {
    type Message = RawJson;
    fn on_message(&mut self, ctx: &mut Context<'_>, conn: ConnId, _msg: RawJson) {
        std::thread::sleep(self.work); // the handler's work: the turn takes this long
        let turns = ctx.figures().turns;
        let _ = ctx.send(conn, &json!({ "turns": turns }));
    }
}

/// The window opens when a turn's work is done, where the answers to its replies start to
/// come, not when its poll returned: a turn longer than the window still gets all of it.
/// (Found by a review: stamped at the poll, a 300 ms turn used up a 200 ms window.)
#[test]
fn the_window_runs_after_a_turn_longer_than_the_window() {
    bounded(Duration::from_secs(20), || {
        let config = Config {
            busy_poll: Some(Duration::from_millis(200)),
            ..Config::default()
        };
        let work = Duration::from_millis(300);
        let server = Server::start(config, Slow { work });
        let mut peer = Peer::connect(server.addr);
        peer.send(&json!({"go": 1}));
        let at_reply = peer.recv()["turns"].as_u64().expect("turns");
        // 100 ms into the 200 ms window that follows the turn that sent the reply.
        std::thread::sleep(Duration::from_millis(100));
        let now = server.query(|ctx| ctx.figures().turns);
        assert!(
            now - at_reply > 100,
            "only {} turns in the 100 ms after a 300 ms turn with a 200 ms busy_poll window",
            now - at_reply
        );
    });
}

/// Pauses reading a connection at its first message and never resumes.
struct PauseFirst;

impl Handler for PauseFirst {
    type Message = RawJson;
    fn on_message(&mut self, ctx: &mut Context<'_>, conn: ConnId, _msg: RawJson) {
        ctx.pause_reading(conn);
    }
}

/// A peer that keeps sending to a connection we stopped reading makes no events (READABLE
/// interest is gone, its bytes wait in the kernel), so it must not keep the reactor spinning:
/// the window closes and the thread sleeps while the peer's sends back up.
#[test]
fn a_peer_flooding_a_paused_connection_does_not_keep_it_spinning() {
    bounded(Duration::from_secs(20), || {
        let config = Config {
            busy_poll: Some(Duration::from_millis(20)),
            ..Config::default()
        };
        let server = Server::start(config, PauseFirst);
        let addr = server.addr;
        let (done_tx, done_rx) = mpsc::channel::<()>();
        let flooder = std::thread::spawn(move || {
            let mut peer = Peer::connect(addr);
            peer.stream
                .set_nonblocking(true)
                .expect("non-blocking flooder");
            let payload = serde_json::to_vec(&json!({"pad": "x".repeat(1000)})).expect("json");
            let frame = common::frame(&payload);
            // Write until told to stop; a full socket (WouldBlock) is the point, not an error.
            while done_rx.try_recv().is_err() {
                let _ = std::io::Write::write(&mut peer.stream, &frame);
            }
        });
        // Wait until the connection is paused (its first message arrived).
        server.wait_for(Duration::from_secs(5), "the connection paused", |ctx| {
            (ctx.figures().paused_connections == 1).then_some(())
        });
        let (_, before) = turns_and_cpu(&server);
        std::thread::sleep(Duration::from_millis(600));
        let (_, after) = turns_and_cpu(&server);
        let _ = done_tx.send(());
        let _ = flooder.join();
        assert!(
            after - before < 20,
            "the reactor burnt {} ticks of CPU in 600 ms beside a paused, flooded connection",
            after - before
        );
    });
}
