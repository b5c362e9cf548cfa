//! Adversarial review of the backoff that restarts only after a healthy connection
//! (`backoff.rs`, `reconnecting.rs`, `request.rs`): findings and what held up.

mod common;

use std::net::TcpListener;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{Server, bounded};
use highwater::{
    CloseReason, Config, ConnId, Context, Handler, RawJson, ReconnectConfig, Reconnecting, TimerId,
};

/// A handler that only runs one `Reconnecting`, shared with the test for its figures.
struct Stream {
    up: Arc<Mutex<Reconnecting>>,
}

impl Handler for Stream {
    type Message = RawJson;
    fn on_start(&mut self, ctx: &mut Context<'_>) {
        self.up.lock().unwrap().start(ctx);
    }
    fn on_open(&mut self, ctx: &mut Context<'_>, conn: ConnId) {
        self.up.lock().unwrap().on_open(ctx, conn);
    }
    fn on_close(&mut self, ctx: &mut Context<'_>, conn: ConnId, reason: &CloseReason) {
        self.up.lock().unwrap().on_close(ctx, conn, reason);
    }
    fn on_timer(&mut self, ctx: &mut Context<'_>, timer: TimerId, data: u64) {
        self.up.lock().unwrap().on_timer(ctx, timer, data);
    }
    fn on_message(&mut self, _: &mut Context<'_>, _: ConnId, _: RawJson) {}
}

/// An address nothing listens on (a port the kernel handed out and we gave back).
fn refused_addr() -> std::net::SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap()
}

fn start(
    addr: std::net::SocketAddr,
    config: ReconnectConfig,
) -> (Server<Stream>, Arc<Mutex<Reconnecting>>) {
    let up = Arc::new(Mutex::new(Reconnecting::new(addr, config)));
    let server = Server::start(Config::default(), Stream { up: up.clone() });
    (server, up)
}

/// Found by the attack review (low, a figure that lies), fixed (0 once open for backoff_max): `ReconnectFigures::retries` is documented as "failures
/// in a row: failed connects, and connections that ended before they had stayed open for
/// `backoff_max`". A connection that has been open for longer than `backoff_max` has proved
/// healthy (the module docs), yet the figure keeps the old count for as long as it stays open:
/// it restarts only when the connection closes. A dashboard reading it sees a client "failing"
/// that has been fine for hours. (`RequestFigures::retries` does the same for a `Requests`
/// whose server pushes without replying.)
///
/// Sequence: three refused connects (retries 3), then the server comes up; the connection
/// stays open for 3 x `backoff_max`; `retries` still says 3.
#[test]
fn retries_is_zero_once_the_connection_has_stayed_open_for_backoff_max() {
    bounded(Duration::from_secs(30), || {
        let addr = refused_addr();
        let max = Duration::from_millis(200);
        let (server, up) = start(
            addr,
            ReconnectConfig {
                backoff_min: Duration::from_millis(5),
                backoff_max: max,
            },
        );
        let u = up.clone();
        let deadline = Instant::now() + Duration::from_secs(10);
        while u.lock().unwrap().figures().connect_failures < 3 {
            assert!(Instant::now() < deadline, "no refused connects");
            std::thread::sleep(Duration::from_millis(5)); // polling a figure, bounded
        }
        // The server comes up on that address and keeps the connection.
        let listener = TcpListener::bind(addr).expect("the port is still free");
        let (_kept, _) = listener.accept().unwrap();
        let u = up.clone();
        server.wait_for(Duration::from_secs(10), "connected", move |_| {
            u.lock().unwrap().is_connected().then_some(())
        });
        let opened = Instant::now();
        std::thread::sleep(3 * max); // the connection proving itself healthy
        let f = up.lock().unwrap().figures();
        assert!(up.lock().unwrap().is_connected());
        eprintln!("after {:?} connected: {f:?}", opened.elapsed());
        assert_eq!(
            f.retries, 0,
            "failures in a row, on a connection healthy for 3 x backoff_max"
        );
    });
}

/// Found by the attack review (low-medium, spin), fixed (the ceiling doubles from 1 ms): `backoff_min: 0` makes every reconnection immediate, whatever
/// `backoff_max` says: the ceiling is `min * 2^n`, which stays 0. Nothing refuses or warns about
/// the setting, and the docs ("the ceiling of the random delay doubles on each failure") suggest
/// it would back off towards `backoff_max`. Against a refused port the client retries as fast
/// as the loop turns (tens of thousands of connects a second), and so would a fleet against a
/// server shedding load. (`backoff.rs`'s unit test asserts `delay(0, MAX, ..) == 0`, so the
/// arithmetic is deliberate; the finding is that a config that spins is accepted silently.)
#[test]
fn a_zero_backoff_min_still_backs_off_towards_backoff_max() {
    bounded(Duration::from_secs(30), || {
        let (server, up) = start(
            refused_addr(),
            ReconnectConfig {
                backoff_min: Duration::ZERO,
                backoff_max: Duration::from_secs(1),
            },
        );
        std::thread::sleep(Duration::from_millis(500)); // a window to count attempts in
        let f = up.lock().unwrap().figures();
        drop(server);
        eprintln!("{f:?}");
        // Any doubling from a positive floor to 1 s makes a few dozen attempts at most.
        assert!(
            f.connect_failures < 100,
            "{} connects refused in 500 ms",
            f.connect_failures
        );
    });
}

/// Held up: a refused address is retried with the delays growing (the count goes on across
/// refused connects), and a connection that stays open and then ends after `backoff_max`
/// restarts the count.
#[test]
fn a_healthy_connection_that_ends_restarts_the_delays() {
    bounded(Duration::from_secs(30), || {
        let addr = refused_addr();
        let max = Duration::from_millis(200);
        let (server, up) = start(
            addr,
            ReconnectConfig {
                backoff_min: Duration::from_millis(5),
                backoff_max: max,
            },
        );
        let deadline = Instant::now() + Duration::from_secs(10);
        while up.lock().unwrap().figures().connect_failures < 3 {
            assert!(Instant::now() < deadline, "no refused connects");
            std::thread::sleep(Duration::from_millis(5)); // polling a figure, bounded
        }
        let listener = TcpListener::bind(addr).expect("the port is still free");
        let (kept, _) = listener.accept().unwrap();
        let u = up.clone();
        server.wait_for(Duration::from_secs(10), "connected", move |_| {
            u.lock().unwrap().is_connected().then_some(())
        });
        std::thread::sleep(max + max / 2); // healthy: open for longer than backoff_max
        drop(kept);
        // The listener stays: the reconnection (after `backoff_min` again) opens at once, and
        // then nothing changes the figures.
        let u = up.clone();
        let f = server.wait_for(Duration::from_secs(10), "reconnected", move |_| {
            let f = u.lock().unwrap().figures();
            (f.connects == 2).then_some(f)
        });
        // One delay drawn since the healthy connection ended: the count restarted (it would
        // be 4 had the three refused connects still counted).
        assert_eq!((f.lost, f.retries), (1, 1), "{f:?}");
        drop(listener);
    });
}
