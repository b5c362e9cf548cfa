//! The `server` example with `--workers`, run as a program: replies keep request order whatever
//! produced them (worker results and error frames alike), and a graceful shutdown (SIGTERM)
//! waits for the jobs already accepted and delivers their replies before closing.

mod common;

use std::io::{BufRead, BufReader, Write};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use common::{Peer, bounded, frame};
use serde_json::{Value, json};

/// target/<profile>/examples/<name>, next to this test's own binary in target/<profile>/deps.
fn example(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("test binary path");
    let dir = exe
        .parent()
        .and_then(|deps| deps.parent())
        .expect("target dir");
    let path = dir.join("examples").join(name);
    assert!(
        path.exists(),
        "{} is missing: run `cargo test` (which builds the examples) or `cargo build --examples`",
        path.display()
    );
    path
}

/// A running server example; killed if the test ends without waiting for it.
struct Running {
    child: Child,
}

impl Running {
    fn start(args: &[&str]) -> (Running, SocketAddr) {
        let mut child = Command::new(example("server"))
            .args(["--addr", "127.0.0.1:0"])
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn server");
        let stdout = child.stdout.take().expect("stdout");
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let mut line = String::new();
            let _ = BufReader::new(stdout).read_line(&mut line);
            let _ = tx.send(line);
        });
        let running = Running { child };
        let line = rx
            .recv_timeout(Duration::from_secs(30))
            .expect("the server printed its address");
        let addr = line
            .strip_prefix("listening on ")
            .and_then(|a| a.trim_end().parse().ok())
            .unwrap_or_else(|| panic!("unexpected first line {line:?}"));
        (running, addr)
    }

    fn sigterm(&self) {
        // SAFETY: kill(2) with the pid of a child we own; no memory is involved.
        let rc = unsafe { libc::kill(self.child.id() as libc::pid_t, libc::SIGTERM) };
        assert_eq!(rc, 0, "kill failed");
    }

    fn wait(&mut self, limit: Duration) -> ExitStatus {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(status) = self.child.try_wait().expect("wait") {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "server did not exit in {limit:?}"
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The issue's mix: good, empty (invalid), good, not JSON (invalid), all in one write.
fn mixed_batch() -> Vec<u8> {
    let mut wire = frame(br#"{"a":1}"#);
    wire.extend(frame(b""));
    wire.extend(frame(br#"{"b":2}"#));
    wire.extend(frame(b"nope"));
    wire
}

fn assert_mixed_replies(peer: &mut Peer, round: usize) {
    assert_eq!(peer.recv(), json!({"a": 1}), "round {round}: reply 0");
    assert_eq!(
        peer.recv()["error"],
        "invalid_json",
        "round {round}: reply 1"
    );
    assert_eq!(peer.recv(), json!({"b": 2}), "round {round}: reply 2");
    assert_eq!(
        peer.recv()["error"],
        "invalid_json",
        "round {round}: reply 3"
    );
}

#[test]
fn server_example_with_workers_replies_in_request_order_errors_included() {
    bounded(Duration::from_secs(60), || {
        let (mut srv, addr) =
            Running::start(&["--reactors", "1", "--workers", "2", "--work-us", "2000"]);
        let mut peer = Peer::connect(addr);
        for round in 0..20 {
            peer.stream.write_all(&mixed_batch()).unwrap();
            assert_mixed_replies(&mut peer, round);
        }
        srv.sigterm();
        peer.expect_closed();
        assert!(srv.wait(Duration::from_secs(20)).success());
    });
}

#[test]
fn server_example_answers_jobs_at_the_workers_when_terminated() {
    bounded(Duration::from_secs(60), || {
        const N: usize = 5;
        let (mut srv, addr) =
            Running::start(&["--reactors", "1", "--workers", "1", "--work-us", "100000"]);
        let mut peer = Peer::connect(addr);
        let mut wire = Vec::new();
        for i in 0..N {
            wire.extend(frame(json!({"req": i}).to_string().as_bytes()));
        }
        peer.stream.write_all(&wire).unwrap();
        // The first reply proves the server has read the batch's start; the rest are still at
        // (or parked in front of) the single worker when the signal lands.
        assert_eq!(peer.recv(), json!({"req": 0}));
        srv.sigterm();
        for i in 1..N {
            let reply: Value = peer.recv();
            assert_eq!(reply, json!({"req": i}), "reply {i} after SIGTERM");
        }
        peer.expect_closed();
        assert!(srv.wait(Duration::from_secs(20)).success());
    });
}
