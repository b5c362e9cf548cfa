//! What `Workers` promises a handler, end to end over TCP: a job that panics costs one failed
//! result and nothing else; replies the handler makes itself keep their place among worker
//! results; and a graceful shutdown delivers the replies of jobs already accepted.

mod common;

use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{Peer, Server, bounded, frame};
use highwater::{Config, ConnId, Context, DecodeError, Handler, WorkerFigures, Workers};
use serde_json::{Value, json};

/// Echo through a pool whose job sleeps `{"ms": M}` and panics on `{"panic": true}`. A panicked
/// job is answered `{"error":"panicked"}`; an undecodable frame gets its `invalid_json` reply
/// in its turn, behind the jobs before it.
struct Pool {
    threads: usize,
    capacity: usize,
    workers: Option<Workers<Value, Value>>,
    figures: Arc<Mutex<WorkerFigures>>,
}

impl Pool {
    fn new(threads: usize, capacity: usize) -> (Pool, Arc<Mutex<WorkerFigures>>) {
        let figures = Arc::new(Mutex::new(WorkerFigures::default()));
        let pool = Pool {
            threads,
            capacity,
            workers: None,
            figures: figures.clone(),
        };
        (pool, figures)
    }
}

impl Handler for Pool {
    type Message = Value;
    fn on_start(&mut self, ctx: &mut Context<'_>) {
        self.workers = Some(Workers::new(
            &ctx.handle(),
            self.threads,
            self.capacity,
            |msg: Value| {
                if msg["panic"] == json!(true) {
                    panic!("job {} was told to panic", msg["n"]);
                }
                std::thread::sleep(Duration::from_millis(msg["ms"].as_u64().unwrap_or(0)));
                msg
            },
        ));
    }
    fn on_message(&mut self, ctx: &mut Context<'_>, conn: ConnId, msg: Value) {
        self.workers
            .as_mut()
            .expect("started")
            .submit(ctx, conn, msg);
    }
    fn on_bad_message(&mut self, ctx: &mut Context<'_>, conn: ConnId, error: &DecodeError) {
        let reply: Value = serde_json::from_slice(&error.reply()).expect("the reply is JSON");
        let w = self.workers.as_mut().expect("started");
        if let Some(now) = w.submit_ready(ctx, conn, reply) {
            let _ = ctx.send(conn, &now);
        }
    }
    fn on_notify(&mut self, ctx: &mut Context<'_>, value: u64) {
        let w = self.workers.as_mut().expect("started");
        assert!(w.is_doorbell(value), "nobody else rings here");
        for (conn, result) in w.completed(ctx) {
            let reply =
                result.unwrap_or_else(|p| json!({"error": "panicked", "message": p.message}));
            let _ = ctx.send(conn, &reply);
        }
        *self.figures.lock().unwrap() = w.figures();
    }
}

fn send_all(peer: &mut Peer, msgs: &[Value]) {
    let mut wire = Vec::new();
    for m in msgs {
        wire.extend(frame(m.to_string().as_bytes()));
    }
    peer.stream.write_all(&wire).unwrap();
}

#[test]
fn a_panicking_job_fails_alone_and_the_rest_come_back_in_order() {
    bounded(Duration::from_secs(20), || {
        let (pool, figures) = Pool::new(2, 4);
        let server = Server::start(Config::default(), pool);
        let mut peer = Peer::connect(server.addr);
        let jobs: Vec<Value> = (0..5)
            .map(|n| json!({"n": n, "ms": 20 * (5 - n), "panic": n == 1}))
            .collect();
        send_all(&mut peer, &jobs);
        for (n, job) in jobs.iter().enumerate() {
            let reply = peer.recv();
            if n == 1 {
                assert_eq!(reply["error"], "panicked", "reply {n}: {reply}");
                assert_eq!(reply["message"], "job 1 was told to panic");
            } else {
                assert_eq!(&reply, job, "reply {n}");
            }
        }
        // The pool kept both threads: it still serves, and counted the panic.
        peer.send(&json!({"n": 5}));
        assert_eq!(peer.recv(), json!({"n": 5}));
        let f = *figures.lock().unwrap();
        assert_eq!((f.panicked, f.completed, f.in_flight), (1, 6, 0), "{f:?}");
    });
}

#[test]
fn when_every_job_panics_nothing_is_parked_and_every_request_is_answered() {
    bounded(Duration::from_secs(20), || {
        const N: usize = 50;
        let (pool, figures) = Pool::new(2, 2);
        let server = Server::start(Config::default(), pool);
        let mut peer = Peer::connect(server.addr);
        let jobs: Vec<Value> = (0..N).map(|n| json!({"n": n, "panic": true})).collect();
        send_all(&mut peer, &jobs);
        for n in 0..N {
            let reply = peer.recv();
            assert_eq!(reply["error"], "panicked", "reply {n}: {reply}");
            assert_eq!(reply["message"], format!("job {n} was told to panic"));
        }
        peer.send(&json!({"n": "after"}));
        assert_eq!(peer.recv(), json!({"n": "after"}));
        let f = *figures.lock().unwrap();
        assert_eq!(f.panicked, N as u64, "{f:?}");
        assert_eq!((f.parked, f.in_flight, f.held), (0, 0, 0), "{f:?}");
        assert!(
            f.pauses > 0,
            "the pool was full at times, as it should be: {f:?}"
        );
    });
}

#[test]
fn error_replies_made_on_the_reactor_keep_their_place_behind_worker_results() {
    bounded(Duration::from_secs(20), || {
        let (pool, figures) = Pool::new(2, 4);
        let server = Server::start(Config::default(), pool);
        let mut peer = Peer::connect(server.addr);
        for round in 0..10 {
            // Slow good, empty (invalid), fast good, not JSON (invalid), all in one write.
            let mut wire = frame(json!({"a": round, "ms": 30}).to_string().as_bytes());
            wire.extend(frame(b""));
            wire.extend(frame(json!({"b": round}).to_string().as_bytes()));
            wire.extend(frame(b"nope"));
            peer.stream.write_all(&wire).unwrap();
            assert_eq!(peer.recv(), json!({"a": round, "ms": 30}), "round {round}");
            assert_eq!(peer.recv()["error"], "invalid_json", "round {round}");
            assert_eq!(peer.recv(), json!({"b": round}), "round {round}");
            assert_eq!(peer.recv()["error"], "invalid_json", "round {round}");
        }
        // With nothing at the workers, an error reply goes out at once, not via the pool.
        peer.send_raw(b"{");
        assert_eq!(peer.recv()["error"], "invalid_json");
        let f = *figures.lock().unwrap();
        assert_eq!((f.held, f.in_flight), (0, 0), "{f:?}");
    });
}

#[test]
fn a_graceful_shutdown_delivers_the_replies_of_jobs_at_the_workers() {
    bounded(Duration::from_secs(20), || {
        const N: usize = 5;
        // One slow worker, room for two: the batch is partly in the pool, partly parked,
        // partly still unread when the shutdown starts.
        let (pool, _) = Pool::new(1, 2);
        let server = Server::start(Config::default(), pool);
        let mut peer = Peer::connect(server.addr);
        let jobs: Vec<Value> = (0..N).map(|n| json!({"n": n, "ms": 100})).collect();
        send_all(&mut peer, &jobs);
        assert_eq!(peer.recv(), jobs[0]);
        server.handle.shutdown(Duration::from_secs(10)).unwrap();
        for (n, job) in jobs.iter().enumerate().skip(1) {
            assert_eq!(&peer.recv(), job, "reply {n} after the shutdown began");
        }
        peer.expect_closed();
        server.join();
    });
}

#[test]
fn replies_held_behind_a_slow_job_are_bounded_by_pausing_the_connection() {
    bounded(Duration::from_secs(20), || {
        const BAD: usize = 10;
        let (pool, figures) = Pool::new(1, 2);
        let server = Server::start(Config::default(), pool);
        let mut peer = Peer::connect(server.addr);
        // One slow job, then a burst of undecodable frames: their replies must wait behind it,
        // and once the pool's bound is reached the connection stops reading instead of
        // holding more of them.
        let mut wire = frame(json!({"n": 0, "ms": 200}).to_string().as_bytes());
        for _ in 0..BAD {
            wire.extend(frame(b""));
        }
        peer.stream.write_all(&wire).unwrap();
        assert_eq!(peer.recv(), json!({"n": 0, "ms": 200}));
        for i in 0..BAD {
            assert_eq!(peer.recv()["error"], "invalid_json", "error reply {i}");
        }
        let f = *figures.lock().unwrap();
        assert!(f.pauses >= 1, "the held replies reached the bound: {f:?}");
        assert_eq!((f.held, f.in_flight), (0, 0), "{f:?}");
    });
}

/// The sibling of the shutdown case: a peer that sends its requests and then half-closes.
/// The default `on_peer_shutdown` closes the connection, and a close must not drop the replies
/// still owed by the workers: it waits for them (delivering no new message meanwhile), then
/// closes gracefully.
#[test]
fn a_peer_that_half_closes_gets_the_replies_of_jobs_still_at_the_workers() {
    bounded(Duration::from_secs(30), || {
        let (pool, _) = Pool::new(1, 8);
        let server = Server::start(Config::default(), pool);
        let mut peer = Peer::connect(server.addr);
        let msgs: Vec<Value> = (0..4).map(|n| json!({"n": n, "ms": 100})).collect();
        send_all(&mut peer, &msgs);
        peer.stream.shutdown(std::net::Shutdown::Write).unwrap();
        for m in &msgs {
            assert_eq!(&peer.recv(), m, "every reply, in order, before the close");
        }
        peer.expect_closed();
    });
}

/// Payloads handed to jobs are memory too: a job waiting at the workers (queued, or parked
/// with its paused connection) keeps its payload alive. Against a budget, peers that each send
/// one large frame to a slow pool must not get more frames read than the budget (and one
/// overdraft) can hold. Before, the budget never saw the jobs: every connection was granted a
/// frame, and held memory grew by a frame per peer.
#[test]
fn jobs_at_the_workers_count_against_the_budget() {
    bounded(Duration::from_secs(60), || {
        const PEERS: usize = 6;
        const BUDGET: usize = 1024 * 1024;
        const FRAME: usize = 1024 * 1024;
        let config = Config {
            queue_budget: Some(BUDGET),
            max_frame: 4 * FRAME,
            ..Config::default()
        };
        let (pool, _) = Pool::new(1, 2);
        let server = Server::start(config, pool);
        // One job takes 2 s, so for the test's 2 s everything read stays at the workers.
        let msg = serde_json::to_vec(&json!({"ms": 2000, "pad": "p".repeat(FRAME)})).unwrap();
        let peers: Vec<_> = (0..PEERS)
            .map(|_| {
                let mut peer = Peer::connect(server.addr);
                peer.stream.write_all(&frame(&msg)).unwrap();
                peer
            })
            .collect();
        // Watch for 1.5 s, while the first job still runs.
        let end = std::time::Instant::now() + Duration::from_millis(1500);
        let mut read = 0;
        while std::time::Instant::now() < end {
            read = server.query(|ctx| ctx.figures().frames_in);
            std::thread::sleep(Duration::from_millis(20));
        }
        // The budget holds one frame and the overdraft one more: not every peer's.
        assert!(
            read <= 2,
            "{read} large frames were read and handed to the workers against a budget of one"
        );
        drop(peers);
    });
}
