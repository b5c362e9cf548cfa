//! Promises a `ReactorGroup` keeps whatever its size and whatever its handlers do: connection
//! ids that no other reactor of the group accepts (64 reactors), and one documented outcome
//! when a reactor's handler panics, whichever role that reactor has.

mod common;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{Peer, bounded};
use highwater::{Config, ConnId, Context, Handler, RawJson, ReactorGroup};
use serde_json::json;

/// The ids each reactor opened, with the reactor's index.
type Opened = Arc<Mutex<Vec<(usize, ConnId)>>>;

/// Echoes, records the ids it opens (with its reactor's index), and panics on `"panic"`.
struct Recorder {
    index: usize,
    opened: Opened,
}

impl Handler for Recorder {
    type Message = RawJson;
    fn on_open(&mut self, _: &mut Context<'_>, conn: ConnId) {
        self.opened.lock().unwrap().push((self.index, conn));
    }
    fn on_message(&mut self, ctx: &mut Context<'_>, conn: ConnId, msg: RawJson) {
        if msg.as_str() == r#""panic""# {
            panic!("handler told to panic on reactor {}", self.index);
        }
        let _ = ctx.send_payload(conn, msg.into_bytes());
    }
}

fn start(reactors: usize, config: Config) -> (ReactorGroup<Recorder>, Opened) {
    let opened = Arc::new(Mutex::new(Vec::new()));
    let shared = opened.clone();
    let group = ReactorGroup::start(reactors, config, "127.0.0.1:0".parse().unwrap(), |index| {
        Recorder {
            index,
            opened: shared.clone(),
        }
    })
    .unwrap();
    (group, opened)
}

#[test]
fn with_64_reactors_no_reactor_accepts_another_ones_conn_id() {
    common::raise_fd_limit();
    bounded(Duration::from_secs(60), || {
        const N: usize = 64;
        let (group, opened) = start(N, Config::default());
        // Round-robin: one connection per reactor.
        let mut peers: Vec<Peer> = (0..N).map(|_| Peer::connect(group.local_addr())).collect();
        for (i, p) in peers.iter_mut().enumerate() {
            p.send(&json!(i));
            assert_eq!(p.recv(), json!(i));
        }
        let ids = opened.lock().unwrap().clone();
        assert_eq!(ids.len(), N);
        let mut owners: Vec<usize> = ids.iter().map(|&(r, _)| r).collect();
        owners.sort_unstable();
        assert_eq!(
            owners,
            (0..N).collect::<Vec<_>>(),
            "one connection per reactor"
        );
        // Ask every reactor about every id: only the owner knows it.
        for (r, handle) in group.handles().iter().enumerate() {
            let ids = ids.clone();
            let (tx, rx) = std::sync::mpsc::channel();
            handle
                .run(move |ctx| {
                    let known: Vec<(usize, ConnId)> =
                        ids.into_iter().filter(|&(_, id)| ctx.is_open(id)).collect();
                    let _ = tx.send(known);
                })
                .unwrap();
            let known = rx.recv_timeout(Duration::from_secs(10)).unwrap();
            assert_eq!(
                known.iter().map(|&(owner, _)| owner).collect::<Vec<_>>(),
                vec![r],
                "reactor {r} accepts ids {known:?}"
            );
        }
        group.shutdown(Duration::from_secs(2));
        drop(peers);
        group.join().unwrap();
    });
}

/// Waits until `done` holds, or fails after `limit`.
fn wait_until(limit: Duration, what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for: {what}");
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Two reactors, a connection on each; the one on `victim` makes its handler panic. The group
/// reports it at once, stops the other reactor, keeps its counters true, and `join` says why.
fn panic_on_reactor(victim: usize) {
    bounded(Duration::from_secs(30), move || {
        let config = Config {
            max_connections: 4,
            ..Config::default()
        };
        let (group, opened) = start(2, config);
        // One at a time, each with a round trip, so each `on_open` is recorded before the
        // next connection exists: the two reactors' threads cannot record them out of order.
        let mut peers: Vec<Peer> = Vec::new();
        for i in 0..2 {
            let mut p = Peer::connect(group.local_addr());
            p.send(&json!(i));
            assert_eq!(p.recv(), json!(i));
            peers.push(p);
        }
        assert_eq!(group.open_connections(), 2);
        let on: Vec<usize> = opened.lock().unwrap().iter().map(|&(r, _)| r).collect();
        assert_eq!(on, vec![0, 1], "connection i lives on reactor i");
        assert!(!group.is_finished());

        peers[victim].send(&json!("panic"));
        wait_until(
            Duration::from_secs(10),
            "the group reports the panic",
            || group.is_finished(),
        );
        // The survivor was stopped too: its connection closes.
        peers[1 - victim].expect_closed();
        peers[victim].expect_closed();
        // Nothing is left counted against max_connections.
        wait_until(
            Duration::from_secs(10),
            "the open count returns to 0",
            || group.open_connections() == 0,
        );
        let err = match group.join() {
            Ok(_) => panic!("join must report the panic"),
            Err(e) => e.to_string(),
        };
        assert!(
            err.contains(&format!("reactor {victim} panicked"))
                && err.contains("handler told to panic"),
            "join said: {err}"
        );
    });
}

#[test]
fn a_panic_on_the_accepting_reactor_stops_the_group_and_is_reported() {
    panic_on_reactor(0);
}

#[test]
fn a_panic_on_another_reactor_stops_the_group_and_is_reported() {
    panic_on_reactor(1);
}
