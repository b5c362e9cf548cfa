//! How much user-space memory an idle connection costs: a highwater echo reactor on one
//! thread, N client sockets that each make one round trip and then sit idle, and the
//! process's resident memory before and after.
//!
//! ```text
//! cargo run --release --example idle -- --connections 10000
//! ulimit -n 250000; cargo run --release --example idle -- --connections 100000 --ports 4
//! ```
//!
//! Loopback has one client address, 127.0.0.1, and Linux's ephemeral ports
//! (`net.ipv4.ip_local_port_range`, 28,232 by default) are unique per destination: past about
//! 28,000 connections the server listens on several ports (`--ports`), and the clients
//! spread over them. Both ends are on this machine, so the descriptor limit must allow N in
//! each process (root may raise it with `ulimit -n`).
//!
//! The clients run in a child process (this program again, with `--clients ADDR`), so the
//! server's process holds only its own N descriptors and its RSS only its own memory. Socket
//! buffers are kernel memory, which RSS does not count. What grows is the reactor's own
//! bookkeeping: the slab entry, the timer-heap entry, and whatever buffers a connection keeps
//! after it has gone quiet (none: its read buffer is back in the pool and its empty write
//! queue holds no allocation).

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use highwater::{Config, ConnId, Context, Handler, RawJson, Reactor};

use clap::Parser;

/// How much user-space memory an idle connection costs: an echo reactor, N clients that each
/// make one round trip and sit idle (in a child process), and the server's RSS before and
/// after, as one JSON line.
#[derive(Parser, Debug)]
#[command(name = "idle", version)]
struct Cli {
    /// Idle connections to open
    #[arg(long, value_name = "N", default_value_t = 10_000)]
    connections: usize,
    /// Listening ports (one reactor listening on each): about 28,000 connections fit per port
    #[arg(long, value_name = "N", default_value_t = 1)]
    ports: usize,
    /// Be the child: open the connections to these addresses, round-robin, and hold them
    /// until stdin closes
    #[arg(long, value_name = "HOST:PORT,...", value_delimiter = ',')]
    clients: Vec<SocketAddr>,
}

struct Echo;

impl Handler for Echo {
    type Message = RawJson;
    fn on_message(&mut self, ctx: &mut Context<'_>, conn: ConnId, msg: RawJson) {
        let _ = ctx.send_payload(conn, msg.into_bytes());
    }
}

fn rss_kb() -> u64 {
    highwater::process_figures().rss_kb.unwrap_or(0)
}

fn main() -> std::io::Result<()> {
    let Cli {
        connections: n,
        ports,
        clients: clients_for,
    } = Cli::parse();
    common::raise_fd_limit();
    if clients_for.is_empty() {
        be_the_server(n, ports.max(1))
    } else {
        be_the_clients(&clients_for, n)
    }
}

/// The child: open `n` connections, one round trip each, report, then hold them until the
/// parent closes our stdin.
fn be_the_clients(addrs: &[SocketAddr], n: usize) -> std::io::Result<()> {
    let mut clients = Vec::with_capacity(n);
    for (i, addr) in addrs.iter().cycle().take(n).enumerate() {
        match TcpStream::connect(addr) {
            Ok(mut s) => {
                roundtrip(&mut s)?;
                clients.push(s);
            }
            Err(e) => {
                eprintln!("connection {i} to {addr} failed: {e} (raise `ulimit -n`, or --ports?)");
                break;
            }
        }
    }
    println!("{}", clients.len());
    std::io::stdout().flush()?;
    let mut rest = String::new();
    std::io::stdin().read_to_string(&mut rest)?;
    Ok(())
}

fn be_the_server(n: usize, ports: usize) -> std::io::Result<()> {
    let config = Config {
        max_connections: n + 16,
        idle_timeout: None,
        ..Config::default()
    };
    let mut reactor = Reactor::new(config, Echo)?;
    let addrs = (0..ports)
        .map(|_| reactor.listen("127.0.0.1:0".parse().unwrap()))
        .collect::<std::io::Result<Vec<SocketAddr>>>()?;
    let addr = addrs[0];
    let handle = reactor.handle();
    let thread = std::thread::spawn(move || reactor.run());
    let ask_open = || {
        let (tx, rx) = mpsc::channel();
        handle
            .run(move |ctx| {
                let _ = tx.send(ctx.figures().open_connections);
            })
            .ok()?;
        rx.recv_timeout(Duration::from_secs(10)).ok()
    };

    // Warm up what is allocated once (the buffer pool, the event array, a first connection).
    let mut warm = TcpStream::connect(addr)?;
    roundtrip(&mut warm)?;
    let before = rss_kb();

    let mut child = Command::new(std::env::current_exe()?)
        .args([
            "--clients",
            &addrs
                .iter()
                .map(SocketAddr::to_string)
                .collect::<Vec<_>>()
                .join(","),
            "--connections",
            &n.to_string(),
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()?;
    let mut line = String::new();
    BufReader::new(child.stdout.take().expect("piped")).read_line(&mut line)?;
    let opened: usize = line.trim().parse().unwrap_or(0);
    while ask_open() != Some(opened + 1) {
        std::thread::sleep(Duration::from_millis(10));
    }
    let after = rss_kb();
    let per_conn = after.saturating_sub(before) as f64 * 1024.0 / opened.max(1) as f64;
    println!(
        "{}",
        serde_json::json!({
            "connections": opened,
            "rss_before_kb": before,
            "rss_after_kb": after,
            "user_bytes_per_idle_connection": per_conn.round(),
        })
    );
    drop(child.stdin.take()); // the child exits, its connections close
    child.wait()?;
    handle.stop().ok();
    thread
        .join()
        .map_err(|_| std::io::Error::other("reactor thread panicked"))??;
    Ok(())
}

/// One small echo round trip, so the connection has read and written before going idle.
fn roundtrip(s: &mut TcpStream) -> std::io::Result<()> {
    s.write_all(b"\x00\x00\x00\x02{}")?;
    let mut reply = [0u8; 6];
    s.read_exact(&mut reply)?;
    Ok(())
}
