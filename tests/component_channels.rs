//! Library components share a handler's callbacks with the application and with each other,
//! and must never take one another's signals: two `Requests`, two `Workers`, and the
//! application's own timers and doorbells, all in one handler, whatever the numbers they carry.

mod common;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{Peer, Server, Sink, bounded};
use highwater::{
    CloseReason, Completion, Config, ConnId, Context, Doorbell, Handler, RequestConfig,
    RequestError, Requests, TimerId, Workers,
};
use serde_json::{Value, json};

/// Timer data and notify values that once meant something to the library: the request
/// client's deadline mark for request 1, and the old fixed workers doorbell.
const OLD_DEADLINE_OF_REQUEST_1: u64 = (0x5245 << 48) | 1;
const OLD_WORKERS_DOORBELL: u64 = u64::MAX - 0x776f_726b;

type Done = Arc<Mutex<Vec<(u64, Result<Value, RequestError>, Duration)>>>;

/// Two request clients to a server that never answers, plus an application timer whose data
/// has the old deadline bits; every timer goes to both clients, as the docs say to do.
struct TwoClients {
    a: Requests,
    b: Requests,
    started: Instant,
    app_timers: Vec<TimerId>,
    done: Done,
}

impl TwoClients {
    fn record(&self, finished: Vec<Completion>) {
        let at = self.started.elapsed();
        let mut done = self.done.lock().unwrap();
        done.extend(finished.into_iter().map(|c| (c.tag, c.result, at)));
    }
}

impl Handler for TwoClients {
    type Message = Value;
    fn on_start(&mut self, ctx: &mut Context<'_>) {
        self.started = Instant::now();
        self.a.start(ctx);
        self.b.start(ctx);
        let short = Some(Duration::from_millis(300));
        let long = Some(Duration::from_millis(1500));
        self.a.request(ctx, json!({"from": "a"}), 1, short).unwrap();
        self.b.request(ctx, json!({"from": "b"}), 2, long).unwrap();
        let early = Duration::from_millis(30);
        self.app_timers
            .push(ctx.set_timer(early, OLD_DEADLINE_OF_REQUEST_1));
        self.app_timers.push(ctx.set_timer(early, 1));
    }
    fn on_open(&mut self, ctx: &mut Context<'_>, conn: ConnId) {
        self.a.on_open(ctx, conn);
        self.b.on_open(ctx, conn);
    }
    fn on_message(&mut self, ctx: &mut Context<'_>, conn: ConnId, msg: Value) {
        let done: Vec<Completion> = [
            self.a.on_message(ctx, conn, msg.clone()),
            self.b.on_message(ctx, conn, msg),
        ]
        .into_iter()
        .flatten()
        .collect();
        self.record(done);
    }
    fn on_timer(&mut self, ctx: &mut Context<'_>, timer: TimerId, data: u64) {
        let mut done = self.a.on_timer(ctx, timer, data);
        done.extend(self.b.on_timer(ctx, timer, data));
        if self.app_timers.contains(&timer) {
            assert!(
                done.is_empty(),
                "an application timer finished requests: {done:?}"
            );
        }
        self.record(done);
    }
    fn on_close(&mut self, ctx: &mut Context<'_>, conn: ConnId, reason: &CloseReason) {
        let mut done = self.a.on_close(ctx, conn, reason);
        done.extend(self.b.on_close(ctx, conn, reason));
        self.record(done);
    }
}

#[test]
fn two_request_clients_and_an_app_timer_never_take_each_others_timers() {
    bounded(Duration::from_secs(20), || {
        let backend = Server::start(Config::default(), Sink::default());
        let done: Done = Arc::new(Mutex::new(Vec::new()));
        let config = RequestConfig::default();
        let handler = TwoClients {
            a: Requests::new(backend.addr, config.clone()),
            b: Requests::new(backend.addr, config),
            started: Instant::now(),
            app_timers: Vec::new(),
            done: done.clone(),
        };
        let front = Server::start(Config::default(), handler);
        let deadline = Instant::now() + Duration::from_secs(10);
        while done.lock().unwrap().len() < 2 {
            assert!(Instant::now() < deadline, "requests never finished");
            std::thread::sleep(Duration::from_millis(10));
        }
        // Stop the front first: its callbacks record into `done` too.
        drop(front);
        let done = done.lock().unwrap();
        assert_eq!(done.len(), 2, "{done:?}");
        // Both time out, each at its own deadline: request 1 of each client is a different
        // request, and the application's timer (30 ms) is neither.
        let (a, b) = (&done[0], &done[1]);
        assert_eq!((a.0, &a.1), (1, &Err(RequestError::TimedOut)));
        assert_eq!((b.0, &b.1), (2, &Err(RequestError::TimedOut)));
        assert!(a.2 >= Duration::from_millis(300), "a finished at {:?}", a.2);
        assert!(
            b.2 >= Duration::from_millis(1500),
            "b finished at {:?}",
            b.2
        );
    });
}

/// Two pools and the application's own doorbells in one handler: `{"pool":"a","n":N}` is
/// doubled by pool A, `{"pool":"b",…}` negated by pool B; notify values that are no pool's are
/// counted as the application's.
struct TwoPools {
    a: Option<Workers<i64, i64>>,
    b: Option<Workers<i64, i64>>,
    app_rings: Arc<Mutex<Vec<u64>>>,
}

impl Handler for TwoPools {
    type Message = Value;
    fn on_start(&mut self, ctx: &mut Context<'_>) {
        self.a = Some(Workers::new(&ctx.handle(), 1, 4, |n: i64| n * 2));
        self.b = Some(Workers::new(&ctx.handle(), 1, 4, |n: i64| -n));
    }
    fn on_message(&mut self, ctx: &mut Context<'_>, conn: ConnId, msg: Value) {
        let n = msg["n"].as_i64().unwrap_or(0);
        let pool = if msg["pool"] == "a" {
            &mut self.a
        } else {
            &mut self.b
        };
        pool.as_mut().expect("started").submit(ctx, conn, n);
    }
    fn on_notify(&mut self, ctx: &mut Context<'_>, value: u64) {
        for (name, pool) in [("a", &mut self.a), ("b", &mut self.b)] {
            let pool = pool.as_mut().expect("started");
            if pool.is_doorbell(value) {
                for (conn, result) in pool.completed(ctx) {
                    let _ = ctx.send(conn, &json!({"pool": name, "result": result.unwrap()}));
                }
                return;
            }
        }
        self.app_rings.lock().unwrap().push(value);
    }
}

#[test]
fn two_pools_and_the_apps_doorbells_each_answer_only_their_own() {
    bounded(Duration::from_secs(20), || {
        let rings = Arc::new(Mutex::new(Vec::new()));
        let handler = TwoPools {
            a: None,
            b: None,
            app_rings: rings.clone(),
        };
        let server = Server::start(Config::default(), handler);
        // The value the pools once shared is in the components' half now: the application
        // cannot ring it at all. Its own values reach it alone.
        assert!(matches!(
            server.handle.notify(OLD_WORKERS_DOORBELL),
            Err(highwater::HandleError::Reserved { .. })
        ));
        server.handle.notify(3).unwrap();
        server.handle.notify(7).unwrap();
        let mut peer = Peer::connect(server.addr);
        for n in 0..20 {
            let pool = if n % 3 == 0 { "a" } else { "b" };
            peer.send(&json!({"pool": pool, "n": n}));
            let want = if pool == "a" { 2 * n } else { -n };
            assert_eq!(
                peer.recv(),
                json!({"pool": pool, "result": want}),
                "n = {n}"
            );
        }
        assert_eq!(*rings.lock().unwrap(), vec![3, 7]);
        // Doorbells the library hands out stay out of the application's half of the range.
        let (x, y) = (Doorbell::allocate(), Doorbell::allocate());
        assert!(x != y && x.value() >= Doorbell::RESERVED && y.value() >= Doorbell::RESERVED);
    });
}

/// The application's notify values and the components' doorbells cannot meet: a value in the
/// reserved half is refused at once, before it could reach a pool.
#[test]
fn the_application_cannot_ring_a_reserved_value() {
    let reactor = highwater::Reactor::new(highwater::Config::default(), Quiet).unwrap();
    let handle = reactor.handle();
    let value = highwater::Doorbell::RESERVED + 5;
    assert_eq!(
        handle.notify(value),
        Err(highwater::HandleError::Reserved { value })
    );
    assert_eq!(
        handle.notify(5),
        Ok(()),
        "the lower half is the application's"
    );
}

struct Quiet;

impl highwater::Handler for Quiet {
    type Message = serde_json::Value;
    fn on_message(
        &mut self,
        _: &mut highwater::Context<'_>,
        _: highwater::ConnId,
        _: serde_json::Value,
    ) {
    }
}
