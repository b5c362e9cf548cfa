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
//! flushed once per batch). Queues count frames, not bytes: `--high-frames` plays the part of
//! the high-water mark (1,024 frames of 256 bytes are highwater's default 256 KiB) and
//! `--queue-frames` that of the hard limit. Same messages, same policies: `pause` awaits the
//! slow subscriber's channel (the publisher is not read meanwhile), `drop` skips a subscriber
//! holding `--high-frames` or more and sends it `{"op":"gap","dropped":K}` before its next
//! frame, `disconnect` resets one that has held that many for `--grace-ms`.

mod common;

use std::cell::RefCell;
use std::collections::HashMap;
use std::io::Write;
use std::net::SocketAddr;
use std::rc::Rc;
use std::time::{Duration, Instant};

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
    /// What happens to a subscriber whose queue holds --high-frames or more
    #[arg(long, value_enum, default_value_t = Policy::Pause)]
    policy: Policy,
    /// disconnect: how long a subscriber may stay that full before it is reset
    #[arg(long, value_name = "MS", default_value = "1000ms")]
    grace_ms: Millis,
    /// The high-water mark of a subscriber's queue, in frames
    #[arg(long, value_name = "N", default_value_t = 1024)]
    high_frames: usize,
    /// The hard limit of a subscriber's queue, in frames (pause waits at --high-frames)
    #[arg(long, value_name = "N", default_value_t = 32 * 1024)]
    queue_frames: usize,
}

/// `--policy`'s values.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum Policy {
    /// Lossless: the publisher waits for the slowest subscriber
    Pause,
    /// A slow subscriber misses frames and is told how many
    Drop,
    /// A slow subscriber is reset after --grace-ms
    Disconnect,
}

// ----- the broker's core (counted by benches/compare/core_lines.sh) -----------------------

#[derive(Clone, Copy)]
struct Rules {
    policy: Policy,
    grace: Duration,
    high: usize,
    limit: usize,
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
    high_since: Option<Instant>,
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
    // Under pause the channel's bound is the high-water mark: a full channel makes `send` wait.
    let bound = if rules.policy == Policy::Pause {
        rules.high
    } else {
        rules.limit
    };
    let (tx, mut rx) = mpsc::channel::<Bytes>(bound);
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
                    high_since: None,
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
    let mut waits = Vec::new();
    let now = Instant::now();
    if let Some(subs) = topics.borrow_mut().get_mut(topic) {
        subs.retain_mut(|s| {
            let high = s.queued() >= rules.high;
            match rules.policy {
                Policy::Pause if high => {
                    waits.push((s.tx.clone(), frame.clone()));
                    return true;
                }
                Policy::Drop if high => {
                    s.dropped += 1;
                    return true;
                }
                Policy::Drop if s.dropped > 0 => {
                    let gap = format!(r#"{{"op":"gap","dropped":{}}}"#, s.dropped);
                    if s.tx.try_send(Bytes::from(gap)).is_ok() {
                        s.dropped = 0;
                    }
                }
                Policy::Disconnect if high => {
                    if too_long(s, now, rules.grace) {
                        return false;
                    }
                }
                _ => s.high_since = None,
            }
            match s.tx.try_send(frame.clone()) {
                Ok(()) => true,
                Err(mpsc::error::TrySendError::Full(_)) => {
                    s.kill.notify_one(); // its hard limit: it cannot be kept whole
                    false
                }
                Err(mpsc::error::TrySendError::Closed(_)) => false,
            }
        });
    }
    // Lossless: the publisher is not read until each slow subscriber has room.
    for (tx, frame) in waits {
        let _ = tx.send(frame).await;
    }
}

/// Whether `s` has been above high-water for `grace` (and so was told to go).
fn too_long(s: &mut Sub, now: Instant, grace: Duration) -> bool {
    let since = *s.high_since.get_or_insert(now);
    let gone = now.duration_since(since) >= grace;
    if gone {
        s.kill.notify_one();
    }
    gone
}

/// Publishers may fall quiet: reset who stayed slow past the grace all the same.
async fn sweep(topics: Topics, rules: Rules) {
    let mut tick = tokio::time::interval(rules.grace.max(Duration::from_millis(20)) / 2);
    loop {
        tick.tick().await;
        let now = Instant::now();
        for subs in topics.borrow_mut().values_mut() {
            subs.retain_mut(|s| s.queued() < rules.high || !too_long(s, now, rules.grace));
        }
    }
}

// ----- end of the core ----------------------------------------------------------------------

fn main() -> std::io::Result<()> {
    let args = Cli::parse();
    let rules = Rules {
        policy: args.policy,
        grace: args.grace_ms.0,
        high: args.high_frames.max(1),
        limit: args.queue_frames.max(args.high_frames).max(1),
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
        if rules.policy == Policy::Disconnect {
            tokio::task::spawn_local(sweep(topics.clone(), rules));
        }
        for conn in 0.. {
            let (stream, _) = listener.accept().await?;
            tokio::task::spawn_local(connection(stream, conn, topics.clone(), rules));
        }
        Ok(())
    })
}
