//! Adversarial review: the write-stall clock of a connection whose settings were changed.
//! Found while attacking `FanOut` (see `attack_fanout.rs`): it is why a gracefully closing
//! broker subscriber held its publisher for ever rather than until `write_timeout`. It needs
//! no fan-out: own settings, a ticking application timer and a graceful close are enough.

mod common;

use std::net::Shutdown;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{Peer, Server, bounded};
use highwater::{Config, ConnId, ConnSettings, ConnState, Context, Handler, RawJson, TimerId};
use serde_json::json;

/// `"sub"`: (optionally) sets the connection's own settings, as `examples/broker.rs` does for
/// every subscriber, and answers; `"flood"`: queues 400 frames of 1 KiB for it.
struct Flooder {
    own_settings: bool,
    /// An application timer every 125 ms (as a fan-out's sweep), if set.
    tick: bool,
    conns: Arc<Mutex<Vec<ConnId>>>,
}

impl Handler for Flooder {
    type Message = RawJson;

    fn on_start(&mut self, ctx: &mut Context<'_>) {
        if self.tick {
            ctx.set_timer(TICK, 0);
        }
    }

    fn on_timer(&mut self, ctx: &mut Context<'_>, _: TimerId, _: u64) {
        ctx.set_timer(TICK, 0);
    }

    fn on_message(&mut self, ctx: &mut Context<'_>, conn: ConnId, msg: RawJson) {
        match msg.as_bytes() {
            b"\"sub\"" => {
                if self.own_settings {
                    if let Some(s) = ctx.settings(conn) {
                        let s = ConnSettings {
                            pause_reads_above_high_water: false,
                            ..s
                        };
                        let _ = ctx.set_settings(conn, s);
                    }
                }
                self.conns.lock().unwrap().push(conn);
                let _ = ctx.send(conn, &json!("ok"));
            }
            b"\"flood\"" => {
                for _ in 0..400 {
                    let _ = ctx.send(conn, &json!({"pad": "f".repeat(1000)}));
                }
            }
            _ => {}
        }
    }
}

const TICK: Duration = Duration::from_millis(125);

/// How long the reactor keeps a peer that half-closed and reads nothing while 400 KiB are
/// queued for it, or `None` if it still has it after `limit`.
fn stalled_close_after(own_settings: bool, tick: bool, limit: Duration) -> Option<Duration> {
    let conns = Arc::new(Mutex::new(Vec::new()));
    let config = Config {
        idle_timeout: Some(Duration::from_secs(4)),
        write_timeout: Some(Duration::from_secs(6)),
        write_min_rate: None,
        pause_reads_above_high_water: own_settings, // the same rule either way
        send_buffer_size: Some(16 * 1024),
        recv_buffer_size: Some(16 * 1024),
        ..Config::default()
    };
    let server = Server::start(
        config,
        Flooder {
            own_settings,
            tick,
            conns: conns.clone(),
        },
    );
    let mut peer = Peer::connect_small_window(server.addr, 8 * 1024);
    peer.send(&json!("sub"));
    assert_eq!(peer.recv(), json!("ok"));
    let id = conns.lock().unwrap()[0];
    peer.send(&json!("flood"));
    // "No more from me": the default `on_peer_shutdown` closes gracefully (flushing).
    peer.stream.shutdown(Shutdown::Write).unwrap();
    server.wait_for(Duration::from_secs(5), "flushing", move |ctx| {
        (ctx.conn_figures(id)?.state == ConnState::Flushing).then_some(())
    });
    let t = Instant::now();
    while t.elapsed() < limit {
        if server.query(move |ctx| ctx.pressure(id).is_none()) {
            return Some(t.elapsed());
        }
        std::thread::sleep(Duration::from_millis(50)); // polling a figure, bounded by `limit`
    }
    None
}

#[test]
fn control_without_own_settings_the_write_timeout_resets_a_flushing_peer_that_reads_nothing() {
    bounded(Duration::from_secs(60), || {
        let after = stalled_close_after(false, true, Duration::from_secs(15));
        assert!(
            after.is_some_and(|d| d < Duration::from_secs(8)),
            "{after:?}"
        );
    });
}

/// Held up: with the connection's own settings (set once, before anything is queued) and no
/// application timer, the write timeout still resets a flushing peer that reads nothing.
#[test]
fn with_own_settings_the_write_timeout_still_resets_a_flushing_peer_that_reads_nothing() {
    bounded(Duration::from_secs(60), || {
        let after = stalled_close_after(true, false, Duration::from_secs(15));
        assert!(
            after.is_some_and(|d| d < Duration::from_secs(8)),
            "{after:?}"
        );
    });
}

/// Found by the attack review (high, engine), fixed: a connection whose settings were changed with
/// `Context::set_settings`, closed gracefully (flushing) with a peer that reads nothing, is
/// never reset by the write timeout when another timer keeps the heap non-empty (here an
/// application timer ticking every 125 ms, as a fan-out's sweep) and the idle timeout is
/// shorter than the write timeout. No timeout applies any more (the idle clock ends once the
/// connection is not open), so the connection and its queue are kept for ever, and as a
/// `FanOut` sink it holds its publisher for ever (`attack_fanout.rs`).
///
/// Why (from `timer.rs`, and consistent with the tick being needed): `set_settings` calls
/// `Timers::cancel_conn`, made for closed connections, on a live one. It forgets the
/// connection's *count* of live entries and counts its idle entry I0 stale, but I0 stays in
/// the heap (without the tick, I0 is the heap's only entry and `compact_if_stale` clears it,
/// which is why the plain case passes). New entries are pushed: idle I1 and, at the first
/// send, write-stall W (count 2). `take_live` knows only the count, so I0, popping first,
/// spends one as if live; the idle checks of a flushing connection push no successor; I1
/// spends the last; W then pops with a count of zero and is dropped as cancelled.
/// Sequence: accept (I0), `set_settings` (I0 cancelled but kept, I1), reply queued (W), peer
/// half-closes and reads nothing (flushing), I0 and I1 pop, W is taken for a cancelled entry.
#[test]
fn with_own_settings_and_another_timer_pending_the_write_timeout_still_resets_a_flushing_peer() {
    bounded(Duration::from_secs(60), || {
        let after = stalled_close_after(true, true, Duration::from_secs(15));
        assert!(
            after.is_some_and(|d| d < Duration::from_secs(8)),
            "{after:?}"
        );
    });
}
