//! Clients never hang (issue 10, item 3): the `client` example, run as a program, against a
//! server that accepts and never replies, a listener that never accepts (never calls
//! `accept`, or has a full backlog), and a server stopped with SIGSTOP, ends with a clear
//! message and exit status 1 once `--timeout-ms` passes without progress. `RequestClient`
//! calls end on their deadlines against the same peers.

mod common;

use std::io::{BufRead, BufReader, Read};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use common::bounded;
use common::process::example;
use highwater::{RequestClient, RequestConfig, RequestError};
use serde_json::json;

/// Runs the client example against `addr` with `--timeout-ms 300`; returns its exit code,
/// its stderr, and how long it ran. The process is killed if it outlives `limit`.
fn run_client(
    addr: SocketAddr,
    extra: &[&str],
    limit: Duration,
) -> (Option<i32>, String, Duration) {
    let started = Instant::now();
    let mut child = Command::new(example("client"))
        .args(["--addr", &addr.to_string(), "--timeout-ms", "300"])
        .args(extra)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn client");
    let mut stderr = child.stderr.take().expect("stderr");
    let reader = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = stderr.read_to_string(&mut s);
        s
    });
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait") {
            break Some(status);
        }
        if started.elapsed() > limit {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    let took = started.elapsed();
    let err = reader.join().unwrap_or_default();
    let status = status.unwrap_or_else(|| panic!("the client hung for {took:?}; stderr: {err}"));
    (status.code(), err, took)
}

/// Accepts every connection and reads everything, never replying; keeps the sockets open.
fn silent_server() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        for s in listener.incoming() {
            let Ok(mut s) = s else { return };
            std::thread::spawn(move || {
                let mut buf = [0u8; 65536];
                while matches!(s.read(&mut buf), Ok(n) if n > 0) {}
                // Keep the socket open (never reply, never close) until the test process ends.
                std::thread::sleep(Duration::from_secs(60));
            });
        }
    });
    addr
}

/// A listener whose backlog is full: connects to it are never completed (Linux drops the
/// SYN). Returns the listener and the connections that fill the backlog; keep them alive.
fn full_backlog() -> (socket2::Socket, Vec<TcpStream>, SocketAddr) {
    let l = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    l.bind(&"127.0.0.1:0".parse::<SocketAddr>().unwrap().into())
        .unwrap();
    l.listen(0).unwrap();
    let addr = l.local_addr().unwrap().as_socket().unwrap();
    let mut fillers = Vec::new();
    for _ in 0..4 {
        if let Ok(s) = TcpStream::connect_timeout(&addr, Duration::from_millis(200)) {
            fillers.push(s);
        }
    }
    // Proof the backlog is full: one more connect does not complete.
    assert!(
        TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_err(),
        "the backlog did not fill"
    );
    (l, fillers, addr)
}

fn assert_timed_out(code: Option<i32>, err: &str, took: Duration, what: &str) {
    assert_eq!(code, Some(1), "exit status; stderr: {err}");
    assert!(err.contains(what), "stderr should say {what:?}: {err}");
    assert!(took < Duration::from_secs(5), "took {took:?}");
}

#[test]
fn the_client_gives_up_on_a_server_that_accepts_and_never_replies() {
    bounded(Duration::from_secs(30), || {
        let addr = silent_server();
        let (code, err, took) = run_client(
            addr,
            &["--frames", "5", "--records", "1"],
            Duration::from_secs(10),
        );
        assert_timed_out(code, &err, took, "no progress");
    });
}

#[test]
fn the_client_gives_up_on_a_listener_that_never_accepts() {
    bounded(Duration::from_secs(30), || {
        // Never calls accept: the kernel completes the handshake and buffers what we send.
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let (code, err, took) = run_client(addr, &["--frames", "50"], Duration::from_secs(10));
        assert_timed_out(code, &err, took, "no progress");
        drop(listener);
    });
}

#[test]
fn the_client_gives_up_connecting_to_a_listener_with_a_full_backlog() {
    bounded(Duration::from_secs(30), || {
        let (_l, _fillers, addr) = full_backlog();
        let (code, err, took) = run_client(addr, &["--frames", "5"], Duration::from_secs(10));
        assert_timed_out(code, &err, took, "could not connect");
    });
}

#[test]
fn the_client_gives_up_on_a_stopped_server() {
    bounded(Duration::from_secs(60), || {
        let mut server = Command::new(example("server"))
            .args(["--addr", "127.0.0.1:0", "--mode", "sink"])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn server");
        let stdout = server.stdout.take().expect("stdout");
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let mut line = String::new();
            let _ = BufReader::new(stdout).read_line(&mut line);
            let _ = tx.send(line);
        });
        let line = rx
            .recv_timeout(Duration::from_secs(30))
            .expect("listening line");
        let addr: SocketAddr = line
            .trim()
            .strip_prefix("listening on ")
            .and_then(|a| a.parse().ok())
            .expect("an address");
        // SAFETY: kill(2) on the pid of a child we own; no memory involved.
        assert_eq!(
            unsafe { libc::kill(server.id() as libc::pid_t, libc::SIGSTOP) },
            0
        );
        // Far more than the kernels' buffers hold: the client must notice the stall.
        let result = std::panic::catch_unwind(|| {
            run_client(addr, &["--frames", "100000"], Duration::from_secs(20))
        });
        let _ = server.kill(); // SIGKILL ends a stopped process too
        let _ = server.wait();
        let (code, err, took) = result.unwrap_or_else(|p| std::panic::resume_unwind(p));
        assert_eq!(code, Some(1), "stderr: {err}");
        assert!(
            err.contains("no progress") || err.contains("took none"),
            "{err}"
        );
        assert!(took < Duration::from_secs(5), "took {took:?}");
    });
}

/// A `RequestClient` call ends on its deadline, whatever the peer does.
fn call_ends_on_time(addr: SocketAddr) {
    let client = RequestClient::connect(addr, RequestConfig::default()).expect("client");
    let started = Instant::now();
    let r = client.call(json!({"op": "ping"}), Duration::from_millis(300));
    let took = started.elapsed();
    assert_eq!(r, Err(RequestError::TimedOut));
    assert!(took < Duration::from_secs(2), "took {took:?}");
}

#[test]
fn request_client_calls_end_on_their_deadline_against_peers_that_never_answer() {
    bounded(Duration::from_secs(30), || {
        call_ends_on_time(silent_server());
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        call_ends_on_time(listener.local_addr().unwrap());
        let (_l, _fillers, addr) = full_backlog();
        call_ends_on_time(addr);
    });
}
