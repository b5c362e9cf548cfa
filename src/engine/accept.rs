//! How connections are born: listening, accepting (or turning away with `busy`), and
//! connecting out.
//!
//! Accepted and outbound connections end up as the same [`Connection`] in the same slab;
//! an outbound one just starts in `ConnState::Connecting` until the kernel reports the
//! connect's outcome as a writable event (`Engine::conn_event`, `read.rs`, calls
//! [`Engine::finish_connect`]).

use std::io::{self, Write};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use mio::net::{TcpListener, TcpStream};
use mio::{Interest, Token};

use super::conns::Listener;
use super::{Engine, Notice, RunState};
use crate::conn::{ConnId, ConnSettings, Connection};
use crate::frame::{self, Decoder};
use crate::handler::CloseReason;
use crate::reply::ErrorReply;
use crate::timer::Due;

/// Rejected connections allowed to linger at once (so `busy` reaches the peer before the
/// socket closes); beyond this they are closed at once.
const MAX_REJECTED_LINGERING: usize = 256;

/// How long the listener is left alone after `accept` fails for lack of resources.
pub(crate) const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

/// Lets a message through at most once a second and counts what it held back, so a flood
/// of identical failures costs one log line a second, not one per event.
#[derive(Debug, Default)]
pub(crate) struct LogLimiter {
    last: Option<Instant>,
    suppressed: u64,
}

impl LogLimiter {
    /// `Some(n)` if a line may be logged now (`n` lines were held back since the last one).
    pub(crate) fn allow(&mut self, now: Instant) -> Option<u64> {
        if self
            .last
            .is_some_and(|t| now.saturating_duration_since(t) < Duration::from_secs(1))
        {
            self.suppressed += 1;
            return None;
        }
        self.last = Some(now);
        Some(std::mem::take(&mut self.suppressed))
    }
}

impl Engine {
    /// Binds a listener and starts accepting. Returns the bound address (useful with port 0).
    pub(crate) fn listen(&mut self, addr: SocketAddr) -> io::Result<SocketAddr> {
        // Built with socket2 so the buffer sizes can be set before `listen`: accepted sockets
        // inherit them, and the receive buffer must be in place before the handshake for the
        // window scale to match it.
        let socket = socket2::Socket::new(
            socket2::Domain::for_address(addr),
            socket2::Type::STREAM,
            Some(socket2::Protocol::TCP),
        )?;
        socket.set_reuse_address(true)?;
        if self.config.reuse_port {
            // Several listeners on one port (a group's reactors, or processes): the kernel
            // spreads incoming connections among them.
            socket.set_reuse_port(true)?;
        }
        if let Some(n) = self.config.recv_buffer_size {
            socket.set_recv_buffer_size(n)?;
        }
        if let Some(n) = self.config.send_buffer_size {
            socket.set_send_buffer_size(n)?;
        }
        socket.bind(&addr.into())?;
        socket.listen(1024)?;
        socket.set_nonblocking(true)?;
        let mut socket = TcpListener::from_std(socket.into());
        let local = socket.local_addr()?;
        let registry = self.poll.registry();
        self.conns.insert_listener(|key| {
            registry.register(&mut socket, Token(key), Interest::READABLE)?;
            Ok::<_, io::Error>(Listener {
                socket,
                closed: false,
                backing_off: false,
            })
        })?;
        log::info!("listening on {local}");
        Ok(local)
    }

    /// Accepts until `WouldBlock`: the listener is edge-triggered like everything else, so
    /// stopping early would leave connections in the backlog with no event to announce them.
    pub(crate) fn accept(&mut self, key: usize) {
        loop {
            let Some(l) = self.conns.listener_mut(key) else {
                return;
            };
            if l.closed || l.backing_off {
                return;
            }
            match l.socket.accept() {
                Ok((stream, peer)) => self.admit(stream, peer),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                // Interrupted, or the peer gave up between SYN and accept: next, please.
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::Interrupted | io::ErrorKind::ConnectionAborted
                    ) => {}
                Err(e) => return self.accept_failed(key, e),
            }
        }
    }

    /// `accept` failed for want of resources: EMFILE (our descriptor limit), ENFILE (the
    /// system's), ENOBUFS/ENOMEM. The connection stays in the kernel's backlog, and retrying
    /// now would fail the same way, in a loop. So the listener is deregistered for
    /// [`ACCEPT_BACKOFF`] while the reactor goes on serving the connections it has (whose
    /// closing frees descriptors), then a timer re-registers it and accepting resumes by
    /// itself. The failure is logged at most once a second.
    pub(super) fn accept_failed(&mut self, key: usize, error: io::Error) {
        let now = self.now;
        if let Some(l) = self.conns.listener_mut(key) {
            let _ = self.poll.registry().deregister(&mut l.socket);
            l.backing_off = true;
        }
        self.timers
            .push(now + ACCEPT_BACKOFF, Due::ResumeAccept(key));
        self.counters.accept_errors += 1;
        if let Some(held_back) = self.accept_log.allow(now) {
            log::warn!(
                "accept failed: {error} ({} connections open); pausing accepts for {:?} \
                 ({held_back} similar failures not logged)",
                self.open,
                ACCEPT_BACKOFF
            );
        }
    }

    /// The back-off is over: watch the listener again and drain its backlog.
    pub(crate) fn resume_accept(&mut self, key: usize) {
        let Some(l) = self.conns.listener_mut(key) else {
            return;
        };
        if l.closed || !l.backing_off {
            return;
        }
        l.backing_off = false;
        if let Err(e) = self
            .poll
            .registry()
            .register(&mut l.socket, Token(key), Interest::READABLE)
        {
            log::error!("listener re-registration failed: {e}");
            return;
        }
        self.accept(key);
    }

    /// Takes an accepted socket into the slab, or hands it to the next reactor of the group,
    /// round-robin. Handing out costs one channel send and one wake-up per connection, at
    /// accept time only; after that, the connection lives on one reactor and shares nothing.
    fn admit(&mut self, stream: TcpStream, peer: SocketAddr) {
        // With `reuse_port` every reactor of the group accepts for itself: nothing to hand out.
        if !self.peers.is_empty() && !self.config.reuse_port {
            let turn = self.next_peer;
            self.next_peer = (turn + 1) % (self.peers.len() + 1);
            if turn > 0 {
                match self.peers[turn - 1].adopt(stream.into(), peer) {
                    Ok(()) => {
                        self.counters.handed_out += 1;
                        return;
                    }
                    // That reactor is behind or gone: keep the connection here.
                    Err(stream) => return self.admit_here(TcpStream::from_std(stream), peer),
                }
            }
        }
        self.admit_here(stream, peer)
    }

    /// A connection handed over by another reactor of the group.
    pub(crate) fn adopt(&mut self, stream: std::net::TcpStream, peer: SocketAddr) {
        self.admit_here(TcpStream::from_std(stream), peer);
    }

    /// Takes an accepted socket into this reactor's slab, or turns it away if we are at the
    /// limit.
    fn admit_here(&mut self, stream: TcpStream, peer: SocketAddr) {
        if self.open_connections() >= self.config.max_connections {
            return self.reject_busy(stream, peer);
        }
        self.apply_socket_options(&stream);
        let id = self.insert(stream, Some(peer), false);
        self.counters.accepted += 1;
        self.count_open(true);
        self.opened(id);
        log::debug!("{id}: accepted from {peer}");
        if matches!(self.run, RunState::ShuttingDown { .. }) {
            // Handed over while shutting down: serve what it sent, then close.
            self.finish_reading(id);
        }
    }

    /// `TCP_NODELAY` and buffer sizes from the config. Failures are logged, not fatal: the
    /// connection works without them.
    fn apply_socket_options(&self, stream: &TcpStream) {
        let sock = socket2::SockRef::from(stream);
        let c = &self.config;
        let results = [
            c.nodelay.then(|| sock.set_tcp_nodelay(true)),
            c.send_buffer_size.map(|n| sock.set_send_buffer_size(n)),
            c.recv_buffer_size.map(|n| sock.set_recv_buffer_size(n)),
        ];
        for e in results.into_iter().flatten().filter_map(Result::err) {
            log::debug!("socket option not applied: {e}");
        }
    }

    fn insert(&mut self, stream: TcpStream, peer: Option<SocketAddr>, outbound: bool) -> ConnId {
        // A new connection holds nothing, so even while the budget binds it may read
        // (`budget.rs`): it is judged when it starts to hold memory.
        let (max_frame, now) = (self.config.max_frame, self.now);
        let settings = ConnSettings::from_config(&self.config, outbound);
        self.conns.insert(|id| {
            Connection::new(
                id,
                stream,
                peer,
                outbound,
                Decoder::new(max_frame),
                &settings,
                now,
            )
        })
    }

    /// A connection became usable: tell the application, start its idle clock (first looked
    /// at halfway, when the handler may be warned; see `timeouts.rs`).
    fn opened(&mut self, id: ConnId) {
        let now = self.now;
        if let Some(conn) = self.conns.get_mut(id) {
            let timing = conn.timing_mut();
            timing.last_frame_at = now;
            timing.last_write_at = now;
            if let Some(idle) = conn.idle_timeout() {
                self.timers.push_after(now, idle / 2, Due::Idle(id));
            }
        }
        self.notices.push_back(Notice::Open(id));
    }

    /// Past `max_connections`: one `busy` frame, FIN, and a short linger so the frame is not
    /// destroyed by a RST, without reading a byte of the peer's data.
    fn reject_busy(&mut self, stream: TcpStream, peer: SocketAddr) {
        self.counters.rejected_busy += 1;
        log::info!(
            "{peer}: turned away, {} connections open (limit {})",
            self.open_connections(),
            self.config.max_connections
        );
        let mut reply = BytesMut::new();
        let busy = ErrorReply::busy(self.config.max_connections);
        if frame::encode_json(&busy, &mut reply, usize::MAX).is_ok() {
            // A fresh socket's send buffer is empty, so a few dozen bytes go out in one write;
            // if not, the peer simply sees the close.
            let _ = (&stream).write(&reply);
        }
        let _ = stream.shutdown(std::net::Shutdown::Write);
        if self.lingering >= MAX_REJECTED_LINGERING || self.config.linger.is_zero() {
            return; // dropped: closed now
        }
        let (max_frame, now) = (self.config.max_frame, self.now);
        let settings = ConnSettings::from_config(&self.config, false);
        let id = self.conns.insert(|id| {
            let conn = Connection::new(
                id,
                stream,
                Some(peer),
                false,
                Decoder::new(max_frame),
                &settings,
                now,
            );
            conn.turned_away()
        });
        self.lingering += 1;
        self.timers
            .push_after(now, self.config.linger, Due::Linger(id));
    }

    /// Starts a non-blocking connect. The connection is usable at once (sends are queued);
    /// `on_open` follows when the connect completes, or `on_close` with
    /// [`CloseReason::ConnectFailed`] if it fails.
    pub(crate) fn connect(&mut self, addr: SocketAddr) -> io::Result<ConnId> {
        if self.open_connections() >= self.config.max_connections {
            return Err(io::Error::other(format!(
                "max_connections ({}) reached",
                self.config.max_connections
            )));
        }
        // Buffer sizes must be set before connecting to take part in window scaling, so the
        // socket is made by hand rather than with `TcpStream::connect`.
        let domain = socket2::Domain::for_address(addr);
        let socket =
            socket2::Socket::new(domain, socket2::Type::STREAM, Some(socket2::Protocol::TCP))?;
        socket.set_nonblocking(true)?;
        let stream = TcpStream::from_std(std::net::TcpStream::from(socket));
        self.apply_socket_options(&stream);
        match socket2::SockRef::from(&stream).connect(&addr.into()) {
            Ok(()) => {}
            Err(e) if e.raw_os_error() == Some(libc::EINPROGRESS) => {}
            Err(e) => return Err(e),
        }
        let id = self.insert(stream, Some(addr), true);
        self.count_open(true);
        if let Some(limit) = self.config.connect_timeout {
            self.timers.push_after(self.now, limit, Due::Connect(id));
        }
        log::debug!("{id}: connecting to {addr}");
        Ok(id)
    }

    /// Learns the outcome of a non-blocking connect, the way mio documents it: the writable
    /// event says "something happened"; `take_error` and `peer_addr` say what.
    pub(super) fn finish_connect(&mut self, id: ConnId) {
        let Some(conn) = self.conns.get_mut(id) else {
            return;
        };
        let socket = conn.transport_mut();
        match socket.take_error() {
            Ok(Some(e)) | Err(e) => return self.teardown(id, CloseReason::ConnectFailed(e)),
            Ok(None) => {}
        }
        match socket.peer_addr() {
            Ok(addr) => {
                conn.connected(addr);
                // Bytes queued while connecting start waiting for the peer now.
                conn.restart_write_clock(self.now);
                self.touch(id);
                self.opened(id);
            }
            // Spurious wake-up: still in progress.
            Err(e)
                if e.kind() == io::ErrorKind::NotConnected
                    || e.raw_os_error() == Some(libc::EINPROGRESS) => {}
            Err(e) => self.teardown(id, CloseReason::ConnectFailed(e)),
        }
    }
}
