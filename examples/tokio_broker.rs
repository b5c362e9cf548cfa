//! The `broker` example's contract on tokio + tokio-util, for side-by-side measurements
//! (BENCHMARKS.md, "Across connections: broker and relay") and to compare the size of the
//! two cores. Not part of highwater: tokio is a dev-dependency only.
//!
//! ```text
//! cargo run --release --example tokio_broker -- --policy drop
//! ```
//!
//! As such a broker is usually written: a current-thread runtime, a reader task per
//! connection and a writer task fed by a bounded channel of frames (fed while more are ready,
//! flushed once per batch). Queues count frames, not bytes: the channel's bound,
//! `--high-frames`, plays the part of the high-water mark (1,024 frames of 256 bytes are
//! highwater's default 256 KiB) and `--low-frames` that of the low-water mark. Same messages,
//! same policies: when a subscriber's channel is full, the publisher's reader awaits room
//! (the publisher is not read meanwhile), for ever under `pause`, and for at most
//! `--grace-ms` under `drop` and `disconnect`. Past it, `drop` lets the subscriber miss
//! frames until its channel has drained to `--low-frames`, then sends it
//! `{"op":"gap","dropped":K}` before its next frame; `disconnect` resets it.

mod common;

use std::cell::RefCell;
use std::collections::HashMap;
use std::io::Write;
use std::net::SocketAddr;
use std::rc::Rc;
use std::time::Duration;

use bytes::Bytes;
use clap::{Parser, ValueEnum};
use futures::{SinkExt, StreamExt};
use serde::Deserialize;
use serde_json::json;
use tokio::sync::{Notify, mpsc};
use tokio_util::codec::{FramedRead, FramedWrite, LengthDelimitedCodec};

use common::cli;
use common::units::Millis;

/// The `broker` example's contract on tokio, for side-by-side measurements.
#[derive(Parser, Debug)]
#[command(name = "tokio_broker", version)]
struct Cli {
    /// Where to listen; port 0 picks a free one
    #[arg(long, value_name = "HOST:PORT", default_value = cli::DEFAULT_ADDR)]
    addr: SocketAddr,
    /// What happens to a subscriber whose queue stays full (--high-frames)
    #[arg(long, value_enum, default_value_t = Policy::Pause)]
    policy: Policy,
    /// drop, disconnect: how long the publisher waits for room in a full subscriber's queue
    /// before that subscriber misses frames (drop; 0: at once) or is reset (disconnect)
    #[arg(long, value_name = "MS", default_value = "1000ms")]
    grace_ms: Millis,
    /// The high-water mark of a subscriber's queue, in frames: the channel's bound
    #[arg(long, value_name = "N", default_value_t = 1024)]
    high_frames: usize,
    /// drop: a subscriber that missed frames gets them again once its queue holds this many
    #[arg(long, value_name = "N", default_value_t = 256)]
    low_frames: usize,
}

/// `--policy`'s values.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum Policy {
    /// Lossless: the publisher waits for the slowest subscriber
    Pause,
    /// After --grace-ms a slow subscriber misses frames and is told how many
    Drop,
    /// After --grace-ms a slow subscriber is reset
    Disconnect,
}

// ----- the broker's core (counted by benches/compare/core_lines.sh) -----------------------

#[derive(Clone, Copy)]
struct Rules {
    policy: Policy,
    grace: Duration,
    high: usize,
    low: usize,
}

#[derive(Deserialize)]
struct Head {
    op: String,
    topic: Option<String>,
}

/// One subscription: the subscriber's channel, and what the policy keeps about it.
struct Sub {
    conn: u64,
    tx: mpsc::Sender<Bytes>,
    kill: Rc<Notify>,
    dropped: u64,
    /// `drop`, past its grace: it misses frames until its queue has drained to `low`.
    let_go: bool,
}

impl Sub {
    fn queued(&self) -> usize {
        self.tx.max_capacity() - self.tx.capacity()
    }
}

type Topics = Rc<RefCell<HashMap<String, Vec<Sub>>>>;

async fn connection(stream: tokio::net::TcpStream, conn: u64, topics: Topics, rules: Rules) {
    let _ = stream.set_nodelay(true);
    let (rd, wr) = stream.into_split();
    // The channel's bound is the high-water mark: a full channel makes `send` wait.
    let (tx, mut rx) = mpsc::channel::<Bytes>(rules.high);
    let kill = Rc::new(Notify::new());
    let writer = tokio::task::spawn_local(async move {
        let mut out = FramedWrite::new(wr, LengthDelimitedCodec::new());
        while let Some(frame) = rx.recv().await {
            if out.feed(frame).await.is_err() {
                return;
            }
            while let Ok(frame) = rx.try_recv() {
                if out.feed(frame).await.is_err() {
                    return;
                }
            }
            if SinkExt::<Bytes>::flush(&mut out).await.is_err() {
                return;
            }
        }
    });
    let mut input = FramedRead::new(rd, LengthDelimitedCodec::new());
    loop {
        let frame = tokio::select! {
            frame = input.next() => match frame {
                Some(Ok(frame)) => frame.freeze(),
                _ => break,
            },
            _ = kill.notified() => {
                // Reset, not FIN: the subscriber must not take the end for a complete stream.
                let _ = socket2::SockRef::from(input.get_ref().as_ref()).set_linger(Some(Duration::ZERO));
                writer.abort();
                break;
            }
        };
        let reply = match serde_json::from_slice::<Head>(&frame) {
            Err(e) => json!({"error": "invalid_json", "detail": e.to_string()}),
            Ok(Head {
                op,
                topic: Some(topic),
            }) if op == "sub" => {
                let (tx, kill) = (tx.clone(), kill.clone());
                let sub = Sub {
                    conn,
                    tx,
                    kill,
                    dropped: 0,
                    let_go: false,
                };
                topics
                    .borrow_mut()
                    .entry(topic.clone())
                    .or_default()
                    .push(sub);
                json!({"op": "subscribed", "topic": topic})
            }
            Ok(Head {
                op,
                topic: Some(topic),
            }) if op == "pub" => {
                publish(&topics, &topic, frame, rules).await;
                continue;
            }
            Ok(Head { op, .. }) => {
                let detail = format!("unknown op {op:?}, or no topic: expected sub or pub");
                json!({"error": "bad_request", "detail": detail})
            }
        };
        if tx.send(Bytes::from(reply.to_string())).await.is_err() {
            break;
        }
    }
    // Leaving every topic drops this connection's senders; the writer delivers what is queued.
    topics.borrow_mut().retain(|_, subs| {
        subs.retain(|s| s.conn != conn);
        !subs.is_empty()
    });
}

async fn publish(topics: &Topics, topic: &str, frame: Bytes, rules: Rules) {
    let mut full = Vec::new();
    if let Some(subs) = topics.borrow_mut().get_mut(topic) {
        subs.retain_mut(|s| {
            if s.let_go && s.queued() > rules.low {
                s.dropped += 1;
                return true;
            }
            s.let_go = false;
            if s.dropped > 0 {
                let gap = format!(r#"{{"op":"gap","dropped":{}}}"#, s.dropped);
                if s.tx.try_send(Bytes::from(gap)).is_ok() {
                    s.dropped = 0;
                }
            }
            match s.tx.try_send(frame.clone()) {
                Ok(()) => true,
                Err(mpsc::error::TrySendError::Full(_)) => {
                    full.push((s.conn, s.tx.clone()));
                    true
                }
                Err(mpsc::error::TrySendError::Closed(_)) => false,
            }
        });
    }
    if full.is_empty() {
        return;
    }
    // A full subscriber holds the publisher back (it is not read meanwhile) until it has
    // room: for ever under pause, for at most the grace otherwise. All wait at once.
    let waits = full.into_iter().map(|(conn, tx)| {
        let frame = frame.clone();
        async move {
            if rules.policy == Policy::Pause {
                let _ = tx.send(frame).await;
                return None;
            }
            let late = tokio::time::timeout(rules.grace, tx.send(frame)).await;
            late.is_err().then_some(conn)
        }
    });
    let late: Vec<u64> = futures::future::join_all(waits)
        .await
        .into_iter()
        .flatten()
        .collect();
    if late.is_empty() {
        return;
    }
    // Past the grace: drop lets it miss frames (this one first), disconnect resets it.
    if let Some(subs) = topics.borrow_mut().get_mut(topic) {
        subs.retain_mut(|s| {
            if !late.contains(&s.conn) {
                return true;
            }
            if rules.policy == Policy::Disconnect {
                s.kill.notify_one();
                return false;
            }
            s.let_go = true;
            s.dropped += 1;
            true
        });
    }
}

// ----- end of the core ----------------------------------------------------------------------

fn main() -> std::io::Result<()> {
    let args = Cli::parse();
    let rules = Rules {
        policy: args.policy,
        grace: args.grace_ms.0,
        high: args.high_frames.max(1),
        low: args.low_frames.min(args.high_frames),
    };
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let local = tokio::task::LocalSet::new();
    local.block_on(&rt, async move {
        let listener = tokio::net::TcpListener::bind(args.addr).await?;
        let mut out = std::io::stdout().lock();
        writeln!(out, "listening on {}", listener.local_addr()?)?;
        out.flush()?;
        drop(out);
        let topics = Topics::default();
        for conn in 0.. {
            let (stream, _) = listener.accept().await?;
            tokio::task::spawn_local(connection(stream, conn, topics.clone(), rules));
        }
        Ok(())
    })
}
