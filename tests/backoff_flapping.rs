//! A server that accepts and drops every connection at once (as an overloaded server does
//! when it sheds load) must not be asked again every `backoff_min`: a connection that did not
//! last counts as one more failure, so the delays keep doubling. Only a connection that
//! stayed open for `backoff_max` (or, for `Requests`, brought a reply) starts them again.

mod common;

use std::net::{SocketAddr, TcpListener};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use common::bounded;
use highwater::{
    CloseReason, Config, ConnId, Context, Handle, Handler, RawJson, Reactor, ReconnectConfig,
    Reconnecting, RequestConfig, Requests, TimerId,
};

/// Accepts connections and drops each at once, counting them. Stops when dropped.
struct Flapper {
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Flapper {
    fn start() -> Flapper {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let stopping = stop.clone();
        let thread = std::thread::spawn(move || {
            // Blocking accepts; `drop` wakes the last one with a connection of its own.
            for stream in listener.incoming() {
                drop(stream);
                if stopping.load(Ordering::SeqCst) {
                    break;
                }
            }
        });
        Flapper {
            addr,
            stop,
            thread: Some(thread),
        }
    }
}

impl Drop for Flapper {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = std::net::TcpStream::connect(self.addr);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Each reconnection the client scheduled: the number of failures in a row it counted.
#[derive(Default)]
struct Seen {
    opens: u32,
    retries: Vec<u32>,
}

#[derive(Default)]
struct Log {
    seen: Mutex<Seen>,
    changed: Condvar,
}

impl Log {
    fn update(&self, f: impl FnOnce(&mut Seen)) {
        f(&mut self.seen.lock().unwrap());
        self.changed.notify_all();
    }

    /// Waits (on the condition variable, not a sleep) until `n` reconnections were scheduled.
    fn wait_scheduled(&self, n: usize, limit: Duration) -> Vec<u32> {
        let deadline = Instant::now() + limit;
        let mut seen = self.seen.lock().unwrap();
        while seen.retries.len() < n {
            let left = deadline
                .checked_duration_since(Instant::now())
                .unwrap_or_else(|| panic!("only {} reconnections scheduled", seen.retries.len()));
            seen = self.changed.wait_timeout(seen, left).unwrap().0;
        }
        assert!(seen.opens >= 1, "the flapping server accepted connections");
        seen.retries.clone()
    }
}

fn run<H: Handler + Send + 'static>(handler: H) -> (Handle, JoinHandle<()>) {
    let mut reactor = Reactor::new(Config::default(), handler).unwrap();
    let handle = reactor.handle();
    (handle, std::thread::spawn(move || reactor.run().unwrap()))
}

const MIN: Duration = Duration::from_millis(2);
const MAX: Duration = Duration::from_secs(30);

struct Stream {
    up: Reconnecting,
    log: Arc<Log>,
}

impl Handler for Stream {
    type Message = RawJson;
    fn on_start(&mut self, ctx: &mut Context<'_>) {
        self.up.start(ctx);
    }
    fn on_open(&mut self, ctx: &mut Context<'_>, conn: ConnId) {
        assert!(self.up.on_open(ctx, conn));
        self.log.update(|s| s.opens += 1);
    }
    fn on_close(&mut self, ctx: &mut Context<'_>, conn: ConnId, reason: &CloseReason) {
        assert!(self.up.on_close(ctx, conn, reason));
        if self.up.figures().backoff.is_some() {
            let retries = self.up.figures().retries;
            self.log.update(|s| s.retries.push(retries));
        }
    }
    fn on_timer(&mut self, ctx: &mut Context<'_>, timer: TimerId, data: u64) {
        self.up.on_timer(ctx, timer, data);
    }
    fn on_message(&mut self, _: &mut Context<'_>, _: ConnId, _: RawJson) {}
}

/// The delays after `k` failures in a row are drawn below `MIN * 2^k`: with the count kept,
/// the sixth reconnection knows of six failures; reset at every open, it would know of one.
fn assert_counted(retries: &[u32]) {
    eprintln!("failures in a row at each reconnection: {retries:?}");
    for (k, &r) in retries.iter().enumerate() {
        let expected = u32::try_from(k).unwrap() + 1;
        assert_eq!(
            r, expected,
            "a connection the server dropped at once must count as a failure: {retries:?}"
        );
    }
}

#[test]
fn a_stream_to_a_server_that_drops_every_connection_backs_off_further_each_time() {
    bounded(Duration::from_secs(30), || {
        let server = Flapper::start();
        let log = Arc::new(Log::default());
        let stream = Stream {
            up: Reconnecting::new(
                server.addr,
                ReconnectConfig {
                    backoff_min: MIN,
                    backoff_max: MAX,
                },
            ),
            log: log.clone(),
        };
        let (handle, thread) = run(stream);
        // Six reconnections: delays drawn below 2, 4, ..., 64 ms; at most ~126 ms in all.
        let retries = log.wait_scheduled(6, Duration::from_secs(20));
        let _ = handle.stop();
        thread.join().unwrap();
        drop(server);
        assert_counted(&retries[..6]);
    });
}

struct Client {
    requests: Requests,
    log: Arc<Log>,
}

impl Handler for Client {
    type Message = serde_json::Value;
    fn on_start(&mut self, ctx: &mut Context<'_>) {
        self.requests.start(ctx);
    }
    fn on_open(&mut self, ctx: &mut Context<'_>, conn: ConnId) {
        if self.requests.on_open(ctx, conn) {
            self.log.update(|s| s.opens += 1);
        }
    }
    fn on_close(&mut self, ctx: &mut Context<'_>, conn: ConnId, reason: &CloseReason) {
        let _ = self.requests.on_close(ctx, conn, reason);
        let retries = self.requests.figures().retries;
        self.log.update(|s| s.retries.push(retries));
    }
    fn on_timer(&mut self, ctx: &mut Context<'_>, timer: TimerId, data: u64) {
        let _ = self.requests.on_timer(ctx, timer, data);
    }
    fn on_message(&mut self, ctx: &mut Context<'_>, conn: ConnId, msg: serde_json::Value) {
        let _ = self.requests.on_message(ctx, conn, msg);
    }
}

#[test]
fn a_request_client_to_a_server_that_drops_every_connection_backs_off_further_each_time() {
    bounded(Duration::from_secs(30), || {
        let server = Flapper::start();
        let log = Arc::new(Log::default());
        let client = Client {
            requests: Requests::new(
                server.addr,
                RequestConfig {
                    backoff_min: MIN,
                    backoff_max: MAX,
                    ..RequestConfig::default()
                },
            ),
            log: log.clone(),
        };
        let (handle, thread) = run(client);
        let retries = log.wait_scheduled(6, Duration::from_secs(20));
        let _ = handle.stop();
        thread.join().unwrap();
        drop(server);
        assert_counted(&retries[..6]);
    });
}
