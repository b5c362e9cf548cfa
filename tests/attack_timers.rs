//! Adversarial review: the write-stall clock of a connection whose settings were changed.
//! Found while attacking `FanOut` (see `attack_fanout.rs`): it is why a gracefully closing
//! broker subscriber held its publisher for ever rather than until `write_timeout`; the plain
//! case below holds up.

mod common;

use std::net::Shutdown;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{Peer, Server, bounded};
use highwater::{Config, ConnId, ConnSettings, ConnState, Context, Handler, RawJson};
use serde_json::json;

/// `"sub"`: (optionally) sets the connection's own settings, as `examples/broker.rs` does for
/// every subscriber, and answers; `"flood"`: queues 400 frames of 1 KiB for it.
struct Flooder {
    own_settings: bool,
    conns: Arc<Mutex<Vec<ConnId>>>,
}

impl Handler for Flooder {
    type Message = RawJson;

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

/// How long the reactor keeps a peer that half-closed and reads nothing while 400 KiB are
/// queued for it, or `None` if it still has it after `limit`.
fn stalled_close_after(own_settings: bool, limit: Duration) -> Option<Duration> {
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
        let after = stalled_close_after(false, Duration::from_secs(15));
        assert!(
            after.is_some_and(|d| d < Duration::from_secs(8)),
            "{after:?}"
        );
    });
}

/// Held up: with the connection's own settings (set once, before anything is queued) the
/// write timeout still resets a flushing peer that reads nothing. The fan-out case that does
/// not hold is
/// `attack_fanout::a_half_closed_member_is_gone_by_the_write_timeout_when_the_idle_timeout_is_shorter`.
#[test]
fn with_own_settings_the_write_timeout_still_resets_a_flushing_peer_that_reads_nothing() {
    bounded(Duration::from_secs(60), || {
        let after = stalled_close_after(true, Duration::from_secs(15));
        assert!(
            after.is_some_and(|d| d < Duration::from_secs(8)),
            "{after:?}"
        );
    });
}
