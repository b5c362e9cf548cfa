//! A graceful shutdown meets a connection whose peer has already finished sending and whose
//! handler keeps it open (it still owes nothing, it simply has not closed). Reading out such a
//! connection finds nothing more: it must close at once, not be read again for an end of
//! stream it already reported (a second `on_peer_shutdown`), and not wait for the grace
//! period to end.

mod common;

use std::net::Shutdown;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use common::{Peer, Server, bounded};
use highwater::{CloseReason, Config, ConnId, Context, Handler};
use serde_json::{Value, json};

/// Echoes, counts `on_peer_shutdown`, and never closes on its own.
#[derive(Default)]
struct KeepsHalfClosed {
    peer_shutdowns: Arc<AtomicU32>,
    closes: Vec<String>,
}

impl Handler for KeepsHalfClosed {
    type Message = Value;

    fn on_message(&mut self, ctx: &mut Context<'_>, conn: ConnId, msg: Value) {
        let _ = ctx.send(conn, &msg);
    }

    fn on_peer_shutdown(&mut self, _ctx: &mut Context<'_>, _conn: ConnId) {
        self.peer_shutdowns.fetch_add(1, Ordering::SeqCst);
    }

    fn on_close(&mut self, _ctx: &mut Context<'_>, _conn: ConnId, reason: &CloseReason) {
        self.closes.push(reason.name().to_string());
    }
}

#[test]
fn shutdown_closes_a_half_closed_connection_at_once_and_reports_its_end_once() {
    bounded(Duration::from_secs(20), || {
        let handler = KeepsHalfClosed::default();
        let shutdowns = handler.peer_shutdowns.clone();
        let server = Server::start(Config::default(), handler);
        let mut peer = Peer::connect(server.addr);
        peer.send(&json!({"n": 1}));
        assert_eq!(peer.recv(), json!({"n": 1}));
        peer.stream.shutdown(Shutdown::Write).unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        while shutdowns.load(Ordering::SeqCst) == 0 {
            assert!(Instant::now() < deadline, "on_peer_shutdown never came");
            std::thread::sleep(Duration::from_millis(2));
        }
        // A grace far longer than the test's bound: only a prompt close passes.
        let started = Instant::now();
        let handler = server.shutdown(Duration::from_secs(60));
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "shutdown waited {:?} for a connection with nothing left to read",
            started.elapsed()
        );
        assert_eq!(shutdowns.load(Ordering::SeqCst), 1, "the end reported once");
        assert_eq!(handler.closes, ["shutdown"]);
        assert_eq!(peer.recv_raw().unwrap(), None, "a clean close");
    });
}
