//! The load of the broker measurement (issue 12; BENCHMARKS.md, "Across connections: broker
//! and relay"): one publisher at full speed, `--fast` subscribers that read as fast as they
//! can, and optionally one that reads one frame per `--slow-every-ms`, all on one topic.
//!
//! ```text
//! cargo bench --bench broker_load -- --addr A --secs 20 [--fast 3] [--slow] [--size 256]
//!                                    [--warmup-secs 2] [--broker-pid PID] [--rate FRAMES_PER_S]
//! ```
//!
//! Every published frame is `{"op":"pub","topic":"t","data":{"seq":"000000000042","pad":"…"}}`,
//! exactly `--size` bytes, its padding a letter that depends on the sequence number. Each
//! subscriber checks every frame it gets byte for byte against the one published with that
//! number, and that the numbers follow on except where a gap notice
//! (`{"op":"gap","dropped":K}`) said exactly how many were skipped: anything else is counted
//! as missing or corrupt. Rates count the frames received between the end of the warm-up and
//! the end of the run. With `--broker-pid`, the broker's RSS is sampled every 250 ms over the
//! measured window and its peak (VmHWM) read at the end.
//!
//! Prints one JSON line.

use std::io::{BufReader, BufWriter, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

struct Args(Vec<String>);

impl Args {
    fn get<T: std::str::FromStr>(&self, name: &str, default: Option<T>) -> T {
        let flag = format!("--{name}");
        match self.0.iter().position(|a| *a == flag) {
            Some(i) => match self.0.get(i + 1).and_then(|v| v.parse().ok()) {
                Some(v) => v,
                None => die(&format!("{flag}: missing or bad value")),
            },
            None => default.unwrap_or_else(|| die(&format!("{flag} is required"))),
        }
    }
    fn has(&self, name: &str) -> bool {
        self.0.iter().any(|a| *a == format!("--{name}"))
    }
}

fn die(msg: &str) -> ! {
    eprintln!("broker_load: {msg}");
    std::process::exit(2)
}

/// The frame published with sequence number `seq`, `size` bytes long.
fn frame(seq: u64, size: usize) -> Vec<u8> {
    let head = format!(r#"{{"op":"pub","topic":"t","data":{{"seq":"{seq:012}","pad":""#);
    let tail = r#""}}"#;
    let pad = size.saturating_sub(head.len() + tail.len());
    let letter = b'a' + (seq % 26) as u8;
    let mut out = head.into_bytes();
    out.extend(std::iter::repeat_n(letter, pad));
    out.extend_from_slice(tail.as_bytes());
    out
}

/// Whether `buf` is byte for byte `frame(seq, size)`, without building it (the check must
/// cost the subscriber less than the broker's work, or it measures itself).
fn is_frame(buf: &[u8], seq: u64, size: usize) -> bool {
    const HEAD: &[u8] = br#"{"op":"pub","topic":"t","data":{"seq":""#;
    const MID: &[u8] = br#"","pad":""#;
    const TAIL: &[u8] = br#""}}"#;
    let letter = b'a' + (seq % 26) as u8;
    let pad_at = HEAD.len() + 12 + MID.len();
    buf.len() == size
        && buf.starts_with(HEAD)
        && buf[HEAD.len() + 12..pad_at] == *MID
        && buf.ends_with(TAIL)
        && buf[pad_at..size - TAIL.len()].iter().all(|&b| b == letter)
}

/// Where the sequence number sits in every frame.
const SEQ_AT: usize = r#"{"op":"pub","topic":"t","data":{"seq":""#.len();

fn write_frame(w: &mut impl Write, payload: &[u8]) -> std::io::Result<()> {
    w.write_all(&(payload.len() as u32).to_be_bytes())?;
    w.write_all(payload)
}

fn read_frame(r: &mut impl Read, buf: &mut Vec<u8>) -> std::io::Result<()> {
    let mut header = [0u8; 4];
    r.read_exact(&mut header)?;
    buf.resize(u32::from_be_bytes(header) as usize, 0);
    r.read_exact(buf)
}

fn subscribe(addr: SocketAddr) -> TcpStream {
    let mut s = TcpStream::connect(addr).expect("connect");
    s.set_nodelay(true).expect("nodelay");
    write_frame(&mut s, br#"{"op":"sub","topic":"t"}"#).expect("sub");
    let mut buf = Vec::new();
    read_frame(&mut s, &mut buf).expect("the subscription's answer");
    let v: Value = serde_json::from_slice(&buf).unwrap_or(Value::Null);
    if v["op"] != "subscribed" {
        die(&format!("unexpected answer to sub: {v}"));
    }
    s
}

/// What one subscriber saw.
#[derive(Default, Debug)]
struct Seen {
    frames: u64,
    /// Frames received inside the measured window.
    measured: u64,
    gaps: u64,
    dropped: u64,
    /// Frames whose number did not follow on, with no gap notice to say why.
    missing: u64,
    /// Frames not byte for byte the one published with their number.
    corrupt: u64,
    /// How the stream ended: "open" (we stopped), "reset", "eof".
    end: &'static str,
}

struct Window {
    from: Instant,
    to: Instant,
}

/// Reads and checks frames until `stop`, sleeping `pace` between frames (a slow reader, which
/// then reads unbuffered so the kernel keeps what it has not taken).
fn consume(
    stream: TcpStream,
    size: usize,
    pace: Option<Duration>,
    w: Arc<Window>,
    stop: Arc<AtomicBool>,
) -> Seen {
    let mut input: Box<dyn Read> = match pace {
        Some(_) => Box::new(stream),
        None => Box::new(BufReader::with_capacity(256 * 1024, stream)),
    };
    let mut seen = Seen {
        end: "open",
        ..Seen::default()
    };
    let mut next: Option<u64> = None;
    let mut buf = Vec::new();
    while !stop.load(Ordering::Relaxed) {
        if let Err(e) = read_frame(&mut input, &mut buf) {
            // At the end of the run the main thread shuts our socket down: "open".
            if !stop.load(Ordering::Relaxed) {
                seen.end = match e.kind() {
                    std::io::ErrorKind::ConnectionReset => "reset",
                    _ => "eof",
                };
            }
            break;
        }
        if buf.starts_with(br#"{"op":"gap""#) {
            let v: Value = serde_json::from_slice(&buf).unwrap_or(Value::Null);
            let k = v["dropped"].as_u64().unwrap_or(0);
            seen.gaps += 1;
            seen.dropped += k;
            next = next.map(|n| n + k);
            continue;
        }
        let seq = buf
            .get(SEQ_AT..SEQ_AT + 12)
            .and_then(|d| std::str::from_utf8(d).ok())
            .and_then(|d| d.parse::<u64>().ok());
        let Some(seq) = seq else {
            seen.corrupt += 1;
            continue;
        };
        if !is_frame(&buf, seq, size) {
            seen.corrupt += 1;
        }
        // The first frame a subscriber gets may be any: it joined mid-stream.
        if let Some(n) = next {
            if seq != n {
                seen.missing += seq.abs_diff(n);
            }
        }
        next = Some(seq + 1);
        seen.frames += 1;
        let now = Instant::now();
        if now >= w.from && now < w.to {
            seen.measured += 1;
        }
        if let Some(p) = pace {
            std::thread::sleep(p);
        }
    }
    seen
}

/// Whether the broker reset (or closed) `s`: its TCP state, from TCP_INFO, is no longer
/// ESTABLISHED. A reader that takes one frame per 100 ms would otherwise hear of the reset
/// only after reading everything the kernel had already received.
fn cut_off(s: &TcpStream) -> bool {
    use std::os::fd::AsRawFd;
    // SAFETY: tcp_info is plain integers, for which all-zero bytes are a valid value.
    let mut info: libc::tcp_info = unsafe { std::mem::zeroed() };
    let mut len = std::mem::size_of::<libc::tcp_info>() as libc::socklen_t;
    // SAFETY: getsockopt writes at most `len` bytes into `info`, which lives on this frame.
    let rc = unsafe {
        libc::getsockopt(
            s.as_raw_fd(),
            libc::IPPROTO_TCP,
            libc::TCP_INFO,
            (&raw mut info).cast(),
            &mut len,
        )
    };
    rc == 0 && info.tcpi_state != 1 // TCP_ESTABLISHED
}

fn status_kb(pid: u32, field: &str) -> Option<u64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    s.lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))?
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()
}

fn main() {
    let args = Args(std::env::args().skip(1).collect());
    if args.has("--bench") && args.0.len() == 1 {
        return; // `cargo bench` runs every bench binary with --bench: nothing to do alone
    }
    let addr: SocketAddr = args.get("addr", None);
    let secs: f64 = args.get("secs", Some(20.0));
    let warmup: f64 = args.get("warmup-secs", Some(2.0));
    let fast: usize = args.get("fast", Some(3));
    let size: usize = args.get("size", Some(256));
    let slow_every = Duration::from_millis(args.get("slow-every-ms", Some(100)));
    let slow = args.has("slow");
    // Frames per second for the publisher (0: as fast as the broker takes them).
    let rate: f64 = args.get("rate", Some(0.0));
    let pid: Option<u32> = args.has("broker-pid").then(|| args.get("broker-pid", None));

    let start = Instant::now();
    let w = Arc::new(Window {
        from: start + Duration::from_secs_f64(warmup),
        to: start + Duration::from_secs_f64(warmup + secs),
    });
    let stop = Arc::new(AtomicBool::new(false));
    let mut readers = Vec::new();
    // Clones of every socket, shut down at the end to unblock whoever is reading or writing.
    let mut sockets = Vec::new();
    for _ in 0..fast {
        let s = subscribe(addr);
        sockets.push(s.try_clone().expect("clone"));
        let (w, stop) = (w.clone(), stop.clone());
        readers.push(std::thread::spawn(move || consume(s, size, None, w, stop)));
    }
    let mut slow_socket = None;
    let slow_reader = slow.then(|| {
        let s = subscribe(addr);
        slow_socket = Some(s.try_clone().expect("clone"));
        sockets.push(s.try_clone().expect("clone"));
        let (w, stop) = (w.clone(), stop.clone());
        std::thread::spawn(move || consume(s, size, Some(slow_every), w, stop))
    });

    let published = Arc::new(AtomicU64::new(0));
    let publisher = {
        let (stop, published) = (stop.clone(), published.clone());
        let s = TcpStream::connect(addr).expect("connect publisher");
        s.set_nodelay(true).expect("nodelay");
        sockets.push(s.try_clone().expect("clone"));
        std::thread::spawn(move || {
            let mut out = BufWriter::with_capacity(64 * 1024, s);
            let mut seq = 0u64;
            let began = Instant::now();
            while !stop.load(Ordering::Relaxed) {
                if rate > 0.0 {
                    let due = began + Duration::from_secs_f64(seq as f64 / rate);
                    std::thread::sleep(due.saturating_duration_since(Instant::now()));
                }
                for _ in 0..64 {
                    if write_frame(&mut out, &frame(seq, size)).is_err() {
                        return; // shut down at the end of the run
                    }
                    seq += 1;
                }
                if out.flush().is_err() {
                    return;
                }
                published.store(seq, Ordering::Relaxed);
            }
        })
    };

    let mut rss = Vec::new();
    while Instant::now() < w.to {
        std::thread::sleep(Duration::from_millis(250));
        if let (Some(pid), true) = (pid, Instant::now() >= w.from) {
            rss.extend(status_kb(pid, "VmRSS"));
        }
    }
    let hwm = pid.and_then(|p| status_kb(p, "VmHWM"));
    let slow_cut_off = slow_socket.as_ref().map(cut_off);
    stop.store(true, Ordering::Relaxed);
    for s in &sockets {
        let _ = s.shutdown(std::net::Shutdown::Both);
    }
    let _ = publisher.join();
    let fast: Vec<Seen> = readers
        .into_iter()
        .map(|r| r.join().expect("reader"))
        .collect();
    let slow = slow_reader.map(|r| r.join().expect("slow reader"));
    let rates: Vec<u64> = fast
        .iter()
        .map(|s| (s.measured as f64 / secs) as u64)
        .collect();
    let sum = |f: fn(&Seen) -> u64| fast.iter().map(f).sum::<u64>();
    let report = json!({
        "secs": secs,
        "published": published.load(Ordering::Relaxed),
        "fast_rates": rates,
        "fast_frames": fast.iter().map(|s| s.frames).collect::<Vec<_>>(),
        "fast_gaps": sum(|s| s.gaps),
        "fast_missing": sum(|s| s.missing),
        "fast_corrupt": sum(|s| s.corrupt),
        "fast_end": fast.iter().map(|s| s.end).collect::<Vec<_>>(),
        "slow": slow.map(|s| json!({
            "frames": s.frames, "gaps": s.gaps, "dropped": s.dropped,
            "missing": s.missing, "corrupt": s.corrupt, "end": s.end,
            "cut_off": slow_cut_off,
        })),
        "rss_kb_min": rss.iter().min(),
        "rss_kb_max": rss.iter().max(),
        "peak_rss_kb": hwm,
    });
    println!("{report}");
}
