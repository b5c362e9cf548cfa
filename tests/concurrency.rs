//! Bounded concurrency end to end: workers slower than the load, the request client's pending
//! cap, deadlines and reconnection, and a group of reactors sharing one port.

mod common;

use std::io::Write;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{Echo, Peer, Server, Sink, bounded, frame};
use highwater::{
    CloseReason, Completion, Config, ConnId, Context, Handler, RawJson, ReactorFigures,
    ReactorGroup, RequestClient, RequestConfig, RequestError, Requests, TimerId, WorkerFigures,
    Workers,
};
use serde_json::{Value, json};

// ----- workers -------------------------------------------------------------------------------

/// Echo through a pool of slow workers, recording the pool's figures after every batch.
struct Offloaded {
    work: Duration,
    threads: usize,
    queue: usize,
    workers: Option<Workers<RawJson, RawJson>>,
    figures: Arc<Mutex<WorkerFigures>>,
}

impl Handler for Offloaded {
    type Message = RawJson;
    fn on_start(&mut self, ctx: &mut Context<'_>) {
        let work = self.work;
        self.workers = Some(Workers::new(
            &ctx.handle(),
            self.threads,
            self.queue,
            move |m| {
                std::thread::sleep(work);
                m
            },
        ));
    }
    fn on_message(&mut self, ctx: &mut Context<'_>, conn: ConnId, msg: RawJson) {
        let w = self.workers.as_mut().expect("started");
        w.submit(ctx, conn, msg);
        let f = w.figures();
        let mut shared = self.figures.lock().unwrap();
        let parked = shared.parked.max(f.parked);
        *shared = WorkerFigures { parked, ..f };
    }
    fn on_notify(&mut self, ctx: &mut Context<'_>, value: u64) {
        let w = self.workers.as_mut().expect("started");
        if !w.is_doorbell(value) {
            return;
        }
        for (conn, reply) in w.completed(ctx) {
            let _ = ctx.send_payload(conn, reply.expect("no job panics").into_bytes());
        }
        let f = w.figures();
        let mut shared = self.figures.lock().unwrap();
        let parked = shared.parked.max(f.parked);
        *shared = WorkerFigures { parked, ..f };
    }
}

#[test]
fn slow_workers_bound_the_queue_lose_nothing_and_keep_the_reactor_responsive() {
    bounded(Duration::from_secs(120), || {
        const FLOOD: u32 = 600;
        const QUEUE: usize = 4;
        let figures = Arc::new(Mutex::new(WorkerFigures::default()));
        let handler = Offloaded {
            work: Duration::from_millis(1),
            threads: 2,
            queue: QUEUE,
            workers: None,
            figures: figures.clone(),
        };
        let server = Server::start(Config::default(), handler);

        // A producer far faster than two workers at 1 ms a message: all 600 in one write.
        let mut flood = Peer::connect(server.addr);
        let mut wire = Vec::new();
        for i in 0..FLOOD {
            wire.extend(frame(json!({"n": i}).to_string().as_bytes()));
        }
        flood.stream.write_all(&wire).unwrap();

        // Meanwhile a light client is answered promptly: its message waits behind at most a
        // queue's worth of jobs, never behind the whole flood.
        let mut light = Peer::connect(server.addr);
        let mut worst = Duration::ZERO;
        for i in 0..10 {
            let t = Instant::now();
            light.send(&json!({"ping": i}));
            assert_eq!(light.recv(), json!({"ping": i}));
            worst = worst.max(t.elapsed());
        }
        assert!(
            worst < Duration::from_millis(250),
            "light client waited {worst:?}"
        );

        // Every flood message comes back exactly once, in order.
        for i in 0..FLOOD {
            assert_eq!(flood.recv(), json!({"n": i}), "reply {i}");
        }
        let f = *figures.lock().unwrap();
        assert_eq!(
            f.peak_in_flight, QUEUE,
            "the pool filled up to its bound, and no further"
        );
        assert!(f.pauses > 0, "the flood never had to wait: {f:?}");
        assert!(
            f.parked <= 2,
            "one parked job per connection at most: {f:?}"
        );
        assert_eq!(f.submitted, u64::from(FLOOD) + 10);
        assert_eq!(f.completed, f.submitted);
    });
}

// ----- the request client ------------------------------------------------------------------

fn quick_config(cap: usize) -> RequestConfig {
    RequestConfig {
        pending_cap: cap,
        timeout: Duration::from_secs(5),
        backoff_min: Duration::from_millis(10),
        backoff_max: Duration::from_millis(100),
    }
}

#[test]
fn replies_are_matched_to_their_requests_across_threads() {
    bounded(Duration::from_secs(60), || {
        let server = Server::start(Config::default(), Echo::default());
        let client = Arc::new(RequestClient::connect(server.addr, quick_config(256)).unwrap());
        let threads: Vec<_> = (0..4)
            .map(|t| {
                let client = client.clone();
                std::thread::spawn(move || {
                    for i in 0..200 {
                        let reply = client
                            .call(json!({"thread": t, "i": i}), Duration::from_secs(10))
                            .unwrap();
                        assert_eq!(reply["thread"], t);
                        assert_eq!(reply["i"], i);
                        assert!(reply["id"].is_u64(), "the id travels with the reply");
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        assert_eq!(client.pending(), 0);
    });
}

#[test]
fn at_the_pending_cap_a_request_fails_at_once_and_the_rest_time_out() {
    bounded(Duration::from_secs(60), || {
        // A sink never answers until the peer half-closes: every request stays pending.
        let server = Server::start(Config::default(), Sink::default());
        let client = RequestClient::connect(server.addr, quick_config(8)).unwrap();
        let waiting: Vec<_> = (0..8)
            .map(|i| {
                client
                    .submit(json!({"i": i}), Duration::from_millis(300))
                    .unwrap()
            })
            .collect();
        let t = Instant::now();
        let err = client
            .call(json!({"one": "more"}), Duration::from_secs(5))
            .unwrap_err();
        assert_eq!(err, RequestError::Overloaded { pending: 8, cap: 8 });
        assert!(
            t.elapsed() < Duration::from_millis(100),
            "refused at once, not queued"
        );
        for rx in waiting {
            let r = rx.recv_timeout(Duration::from_secs(5)).unwrap();
            assert_eq!(r.unwrap_err(), RequestError::TimedOut);
        }
        assert_eq!(client.pending(), 0);
        // Room again.
        assert!(client.submit(json!({}), Duration::from_millis(50)).is_ok());
    });
}

#[test]
fn the_client_reconnects_and_sends_what_never_reached_the_wire() {
    bounded(Duration::from_secs(60), || {
        // Reserve a port, then start nothing on it yet.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
        let client = RequestClient::connect(addr, quick_config(64)).unwrap();
        // Requests made while there is no server wait in the client, unsent.
        let early: Vec<_> = (0..5)
            .map(|i| {
                client
                    .submit(json!({"early": i}), Duration::from_secs(20))
                    .unwrap()
            })
            .collect();
        let group = ReactorGroup::start(1, Config::default(), addr, |_| Echo::default()).unwrap();
        for (i, rx) in early.into_iter().enumerate() {
            let reply = rx.recv_timeout(Duration::from_secs(20)).unwrap().unwrap();
            assert_eq!(reply["early"], i);
        }
        // The server goes away; a new one comes back on the same port; calls work again.
        group.shutdown(Duration::from_secs(1));
        group.join().unwrap();
        let group = ReactorGroup::start(1, Config::default(), addr, |_| Echo::default()).unwrap();
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            match client.call(json!({"after": "restart"}), Duration::from_millis(500)) {
                Ok(reply) => {
                    assert_eq!(reply["after"], "restart");
                    break;
                }
                Err(e) => assert!(Instant::now() < deadline, "never reconnected: {e}"),
            }
        }
        group.shutdown(Duration::from_secs(1));
        group.join().unwrap();
    });
}

#[test]
fn a_request_the_server_took_fails_with_connection_lost_when_the_server_dies() {
    bounded(Duration::from_secs(60), || {
        let server = Server::start(Config::default(), Sink::default());
        let addr = server.addr;
        let client = RequestClient::connect(addr, quick_config(16)).unwrap();
        let rx = client
            .submit(json!({"x": 1}), Duration::from_secs(20))
            .unwrap();
        // Let it reach the server, then stop the server without an answer.
        server.wait_for(Duration::from_secs(10), "request received", |ctx| {
            (ctx.figures().frames_in == 1).then_some(())
        });
        drop(server);
        let r = rx.recv_timeout(Duration::from_secs(20)).unwrap();
        assert_eq!(r.unwrap_err(), RequestError::ConnectionLost);
    });
}

/// A front end that answers each user message by asking a backend, from inside a handler.
struct Front {
    backend: Requests,
}

impl Handler for Front {
    type Message = Value;
    fn on_start(&mut self, ctx: &mut Context<'_>) {
        self.backend.start(ctx);
    }
    fn on_open(&mut self, ctx: &mut Context<'_>, conn: ConnId) {
        self.backend.on_open(ctx, conn);
    }
    fn on_message(&mut self, ctx: &mut Context<'_>, conn: ConnId, msg: Value) {
        if let Some(done) = self.backend.on_message(ctx, conn, msg.clone()) {
            return self.answer(ctx, done);
        }
        // A user's message: forward it, tagged with the user's connection.
        let body = json!({"asked": msg});
        if let Err(e) = self.backend.request(ctx, body, conn.as_u64(), None) {
            let _ = ctx.send(conn, &json!({"error": e.to_string()}));
        }
    }
    fn on_timer(&mut self, ctx: &mut Context<'_>, timer: TimerId, data: u64) {
        for done in self.backend.on_timer(ctx, timer, data) {
            self.answer(ctx, done);
        }
    }
    fn on_close(&mut self, ctx: &mut Context<'_>, conn: ConnId, reason: &CloseReason) {
        for done in self.backend.on_close(ctx, conn, reason) {
            self.answer(ctx, done);
        }
    }
}

impl Front {
    fn answer(&mut self, ctx: &mut Context<'_>, done: Completion) {
        let user = ConnId::from_u64(done.tag);
        let reply = match done.result {
            Ok(v) => json!({"backend_said": v["asked"]}),
            Err(e) => json!({"error": e.to_string()}),
        };
        let _ = ctx.send(user, &reply);
    }
}

#[test]
fn a_handler_can_make_requests_of_its_own() {
    bounded(Duration::from_secs(60), || {
        let backend = Server::start(Config::default(), Echo::default());
        let front = Front {
            backend: Requests::new(backend.addr, quick_config(64)),
        };
        let front = Server::start(Config::default(), front);
        let mut user = Peer::connect(front.addr);
        for i in 0..20 {
            user.send(&json!({"q": i}));
            assert_eq!(user.recv(), json!({"backend_said": {"q": i}}));
        }
    });
}

// ----- reactor groups ------------------------------------------------------------------------

#[test]
fn a_group_splits_connections_evenly_and_serves_them_all() {
    common::raise_fd_limit();
    bounded(Duration::from_secs(60), || {
        let group =
            ReactorGroup::start(2, Config::default(), "127.0.0.1:0".parse().unwrap(), |_| {
                Echo::default()
            })
            .unwrap();
        let mut peers: Vec<Peer> = (0..64).map(|_| Peer::connect(group.local_addr())).collect();
        for (i, p) in peers.iter_mut().enumerate() {
            p.send(&json!(i));
            assert_eq!(p.recv(), json!(i));
        }
        let each = group.figures();
        let open: Vec<usize> = each.iter().map(|f| f.unwrap().open_connections).collect();
        assert_eq!(open, vec![32, 32], "round-robin is exact");
        assert_eq!(each.iter().flatten().sum::<ReactorFigures>().frames_in, 64);
        assert_eq!(each[0].unwrap().handed_out, 32);
        drop(peers);
        group.shutdown(Duration::from_secs(2));
        let handlers = group.join().unwrap();
        assert_eq!(handlers.len(), 2);
    });
}

#[test]
fn max_connections_holds_for_the_whole_group() {
    bounded(Duration::from_secs(60), || {
        let config = Config {
            max_connections: 3,
            ..Config::default()
        };
        let group = ReactorGroup::start(2, config, "127.0.0.1:0".parse().unwrap(), |_| {
            Echo::default()
        })
        .unwrap();
        let mut ok: Vec<Peer> = (0..3).map(|_| Peer::connect(group.local_addr())).collect();
        for (i, p) in ok.iter_mut().enumerate() {
            p.send(&json!(i));
            assert_eq!(p.recv(), json!(i));
        }
        let mut fourth = Peer::connect(group.local_addr());
        assert_eq!(fourth.recv(), json!({"error": "busy", "limit": 3}));
        group.shutdown(Duration::from_secs(1));
        drop(ok);
        group.join().unwrap();
    });
}

#[test]
fn a_conn_id_sent_to_the_wrong_reactor_is_refused() {
    bounded(Duration::from_secs(30), || {
        let group =
            ReactorGroup::start(2, Config::default(), "127.0.0.1:0".parse().unwrap(), |_| {
                Echo::default()
            })
            .unwrap();
        let mut a = Peer::connect(group.local_addr()); // reactor 0
        let mut b = Peer::connect(group.local_addr()); // reactor 1
        a.send(&json!("a"));
        assert_eq!(a.recv(), json!("a"));
        b.send(&json!("b"));
        assert_eq!(b.recv(), json!("b"));
        // Reactor 1's connection, as reactor 1 names it.
        let (tx, rx) = std::sync::mpsc::channel();
        group.handles()[1]
            .run(move |ctx| {
                let _ = tx.send(ctx.figures().open_connections);
            })
            .unwrap();
        assert_eq!(rx.recv().unwrap(), 1);
        // Every id reactor 0 could ever have issued is unknown to reactor 1, and the other
        // way round: the generation ranges differ.
        let (tx, rx) = std::sync::mpsc::channel();
        group.handles()[0]
            .run(move |ctx| {
                // Slot 1 (after the listener in slot 0) with reactor 1's first generation.
                let foreign = ConnId::from_u64((((1u64 << 28) + 1) << 32) | 1);
                let _ = tx.send(ctx.send(foreign, &json!("stranger")).is_err());
            })
            .unwrap();
        assert!(rx.recv().unwrap(), "a foreign id is refused");
        group.shutdown(Duration::from_secs(1));
        drop((a, b));
        group.join().unwrap();
    });
}
