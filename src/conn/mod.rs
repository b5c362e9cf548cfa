//! One connection: its socket, read buffer, decoder, write queue, state and pause reasons.
//!
//! A client connection and a server connection are the same thing here; only how they were
//! born differs (`outbound`).
//!
//! The one invariant a reader of this file should keep in mind: [`Connection::interest`] is
//! the only place that decides what the connection asks of the poller, and it says:
//!
//! - **WRITABLE iff the write queue is non-empty** (or a connect is in progress). Asking for
//!   writability with nothing to write would wake the reactor for nothing.
//! - **READABLE iff the connection may read**: open, not paused for any reason, and the peer
//!   has not finished sending. A paused connection does not ignore readiness, it stops asking
//!   for it; that is what lets the kernel's receive buffer fill and the TCP window close.
//!
//! Readiness is edge-triggered: the poller reports a *change* to readable or writable, once.
//! So `readable` and `writable` below remember what the last event said until a syscall
//! returns `WouldBlock`. A connection that stops reading with `readable` still true (paused,
//! or out of budget for this turn) must be revisited by the reactor when it may read again,
//! because no new event will come for bytes that are already there.

use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::os::fd::AsRawFd;
use std::time::{Duration, Instant};

use bytes::Bytes;

use crate::read_buf::ReadBuf;
use mio::Interest;
use mio::net::TcpStream;

use crate::frame::{Decoder, FrameError};
use crate::handler::CloseReason;
use crate::stats::ConnFigures;
use crate::write_queue::WriteQueue;

/// Identifies a connection for as long as it lives, and never another one after it.
///
/// The reactor keeps connections in a slab and reuses slots; the generation makes an id
/// from a closed connection stale instead of letting it reach the slot's next tenant.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ConnId {
    index: u32,
    generation: u32,
}

impl ConnId {
    pub(crate) fn new(index: usize, generation: u32) -> ConnId {
        ConnId {
            // `Config::validate` keeps `max_connections` far below this, and the slab holds
            // those plus a bounded number of lingering ones.
            index: u32::try_from(index).expect("a slab slot index fits in 32 bits"),
            generation,
        }
    }

    /// The slab slot (and mio token) this connection occupies.
    pub(crate) fn index(self) -> usize {
        self.index as usize
    }

    /// The id packed into a `u64`, for example as a timer's data.
    pub fn as_u64(self) -> u64 {
        (u64::from(self.generation) << 32) | u64::from(self.index)
    }

    /// Unpacks [`ConnId::as_u64`]. An id made up from any other number is harmless: it names
    /// no live connection, and every operation on it reports the connection as closed.
    // Splitting a `u64` into its halves: dropping the high bits is the point.
    #[allow(clippy::cast_possible_truncation)]
    pub fn from_u64(packed: u64) -> ConnId {
        ConnId {
            index: packed as u32,
            generation: (packed >> 32) as u32,
        }
    }
}

impl fmt::Display for ConnId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "conn#{}.{}", self.index, self.generation)
    }
}

/// Where a connection is in its life. Every transition goes through one function
/// (`Connection::set_state`), which logs it at debug level.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConnState {
    /// Outbound, waiting for the non-blocking connect to finish (reported as writable).
    Connecting,
    /// Reading and writing.
    Open,
    /// Close requested: no more reading; delivering what is queued, then closing.
    Flushing,
    /// Everything was delivered and FIN sent; reading and discarding until the peer closes or
    /// the linger time ends, so that closing does not turn into a RST that destroys our last
    /// bytes in flight.
    Lingering,
    /// The socket is deregistered; the slot is freed at the end of this reactor turn.
    Closed,
}

/// Why reading is paused. A connection reads only when no reason is present.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PauseReason {
    /// The application called [`crate::Context::pause_reading`] (a slow consumer).
    Application,
    /// This connection's own write queue is above its high-water mark (a peer that does not
    /// read its replies).
    WriteQueue,
    /// The bytes held across all connections reached [`crate::Config::queue_budget`], and this
    /// connection holds more than its fair share of it; it reads again when it holds less or
    /// the total falls back.
    Budget,
    /// A frame in progress needs a read buffer larger than an ordinary one, and the budget
    /// has no room for it now. Reading resumes when memory frees up, or when this connection's
    /// turn comes to overdraw the budget for one frame (`budget.rs`). The bytes wait in the
    /// kernel, so the peer feels it as a closed window.
    ReadBudget,
    /// This connection's last message is parked because the worker queue is full
    /// ([`crate::Workers`]); reading resumes when the workers make room.
    Workers,
}

impl PauseReason {
    const ALL: [PauseReason; 5] = [
        PauseReason::Application,
        PauseReason::WriteQueue,
        PauseReason::Budget,
        PauseReason::ReadBudget,
        PauseReason::Workers,
    ];

    fn bit(self) -> u8 {
        match self {
            PauseReason::Application => 1,
            PauseReason::WriteQueue => 2,
            PauseReason::Budget => 4,
            PauseReason::Workers => 8,
            PauseReason::ReadBudget => 16,
        }
    }
}

/// The set of reasons reading is paused for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Paused(u8);

impl Paused {
    /// True when reading is allowed.
    pub fn is_empty(self) -> bool {
        self.0 == 0
    }

    /// Whether `reason` is one of the reasons.
    pub fn contains(self, reason: PauseReason) -> bool {
        self.0 & reason.bit() != 0
    }

    fn insert(&mut self, reason: PauseReason) {
        self.0 |= reason.bit();
    }

    fn remove(&mut self, reason: PauseReason) {
        self.0 &= !reason.bit();
    }
}

impl fmt::Display for Paused {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.is_empty() {
            return f.write_str("reading");
        }
        let mut sep = "paused by ";
        for r in PauseReason::ALL {
            if self.contains(r) {
                write!(f, "{sep}{r:?}")?;
                sep = "+";
            }
        }
        Ok(())
    }
}

/// What one read attempt produced.
#[derive(Debug)]
pub(crate) enum ReadOutcome {
    /// Bytes were appended to the read buffer. `drained` when the read did not fill the
    /// space offered: the kernel had nothing more at that moment (see `Reactor::read`).
    Data { drained: bool },
    /// The socket has nothing more for now; wait for the next readable event.
    WouldBlock,
    /// The peer shut down its sending side (or closed).
    Eof,
    /// A real error (reset, ...).
    Error(io::Error),
}

/// Reads are sized from this: enough for one of the article's ~58 KB frames plus change, so a
/// stream of them takes about one `recv` per frame.
pub(crate) const READ_CHUNK: usize = 64 * 1024;

/// The read size while the memory budget is exceeded. A connection paused with unread requests
/// in its buffer holds the whole buffer; with a thousand such connections, 64 KiB each would be
/// 64 MiB outside anyone's control, 4 KiB is 4 MiB. More `recv` calls, only under pressure.
pub(crate) const PRESSED_CHUNK: usize = 4 * 1024;

/// The largest read-buffer allocation that is reused for further reads (and kept in the
/// pool). A buffer grown for one large frame is released once that frame is out, so the
/// small frames after it neither pin it nor keep it (see `read_buf.rs`).
pub(crate) const READ_ALLOC_KEEP: usize = 2 * READ_CHUNK;

/// What a connection has spent of its per-turn budgets ([`crate::READS_PER_TURN`],
/// [`crate::FRAMES_PER_TURN`], [`crate::WRITES_PER_TURN`], [`crate::WRITE_BYTES_PER_TURN`])
/// in the turn it was last counted in. Kept on the connection, not in a local of the function that spends it, because one turn may
/// visit a connection more than once (its event, then the ready list; several flushes in
/// `Reactor::settle`), and the budgets are per turn, not per visit.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct TurnShare {
    turn: u64,
    pub(crate) reads: usize,
    pub(crate) frames: usize,
    pub(crate) writes: usize,
    pub(crate) bytes_written: usize,
}

/// A connection's whole state. Owned by the reactor's slab.
#[derive(Debug)]
pub(crate) struct Connection {
    pub(crate) id: ConnId,
    pub(crate) stream: TcpStream,
    pub(crate) peer: Option<SocketAddr>,
    pub(crate) outbound: bool,
    state: ConnState,
    pub(crate) read_buf: ReadBuf,
    /// How much of `read_buf` is counted in the engine's budget (`budget.rs`): its allocation
    /// when last counted.
    pub(crate) read_charged: usize,
    pub(crate) decoder: Decoder,
    pub(crate) queue: WriteQueue,
    paused: Paused,
    paused_since: Option<Instant>,
    paused_total: Duration,
    /// Edge-triggered memory: the last event said readable and no read has hit `WouldBlock`.
    pub(crate) readable: bool,
    /// Edge-triggered memory: the last event said writable and no write has hit `WouldBlock`.
    pub(crate) writable: bool,
    /// An event reported the peer's FIN or a socket error: reads must go on until they
    /// return 0 or the error, whatever their size, because no further event will say so.
    pub(crate) final_event_seen: bool,
    /// The peer has finished sending (a read returned 0).
    pub(crate) peer_eof: bool,
    /// Shut down our sending side once the queue is empty (half-close).
    pub(crate) shutdown_write_when_flushed: bool,
    /// We have sent FIN.
    pub(crate) write_shut: bool,
    /// What the poller is currently asked for (`None`: not registered).
    pub(crate) registered: Option<Interest>,
    /// Queued in the reactor's ready list (more to read this turn) / dirty list (flush and
    /// re-sync interest before sleeping). Flags keep each list free of duplicates.
    pub(crate) in_ready: bool,
    pub(crate) in_dirty: bool,
    /// This turn's spending (see [`Connection::share`]).
    share: TurnShare,
    /// When the last frame completed (idle timeout). One idle timer is pushed at open; it
    /// re-pushes itself while the connection lives (see `timeouts.rs`).
    pub(crate) last_frame_at: Instant,
    /// When the peer's kernel last took bytes of ours: progress for the idle timeout, and the
    /// write-stall clock.
    pub(crate) last_write_at: Instant,
    /// The start of the write-stall measuring window (the queue has held bytes ever since),
    /// the bytes written when it started (for the minimum rate), and whether a timer is armed.
    pub(crate) stall_since: Option<Instant>,
    pub(crate) stall_mark: u64,
    pub(crate) stall_armed: bool,
    /// The quiet period (its start) the handler was last warned about, per timeout, so each
    /// quiet period is warned about once.
    pub(crate) idle_warned: Option<Instant>,
    pub(crate) stall_warned: Option<Instant>,
    /// The reason a graceful close was started for, reported when the socket finally closes.
    pub(crate) close_reason: Option<CloseReason>,
    /// Close once the buffered frames and what the kernel already holds have been read
    /// (graceful shutdown of the reactor).
    pub(crate) finish_reading: bool,
    /// Replies the application is still computing elsewhere (`Context::work_started`): a
    /// graceful shutdown does not close the connection for reading out while this is above 0.
    pub(crate) work_pending: u32,
    /// A graceful close was asked for while replies were still owed (`work_pending` > 0): it
    /// happens, for this reason, when the last of them is produced. Meanwhile no message is
    /// delivered and nothing is read, as after any close.
    pub(crate) close_after_work: Option<CloseReason>,
    /// The payload size each owed reply's work holds, oldest first (work finishes in order):
    /// counted in the budget until it is done (`Engine::work_started`).
    pub(crate) work_bytes: std::collections::VecDeque<usize>,
    /// The application heard `on_open` (or started the connect) and will hear `on_close`.
    /// False for connections turned away with `busy`.
    pub(crate) reported: bool,
    pub(crate) frames_in: u64,
    pub(crate) bytes_in: u64,
    pub(crate) reads: u64,
    /// The largest the read buffer's capacity has been (memory figures, and the proof that a
    /// hostile length prefix reserved nothing).
    pub(crate) peak_read_capacity: usize,
    pub(crate) opened_at: Instant,
}

impl Connection {
    pub(crate) fn new(
        id: ConnId,
        stream: TcpStream,
        peer: Option<SocketAddr>,
        outbound: bool,
        decoder: Decoder,
        queue: WriteQueue,
        now: Instant,
    ) -> Connection {
        Connection {
            id,
            stream,
            peer,
            outbound,
            state: if outbound {
                ConnState::Connecting
            } else {
                ConnState::Open
            },
            read_buf: ReadBuf::default(),
            read_charged: 0,
            decoder,
            queue,
            paused: Paused::default(),
            paused_since: None,
            paused_total: Duration::ZERO,
            readable: false,
            // A fresh accepted socket has an empty send buffer: writable until proven otherwise.
            writable: !outbound,
            final_event_seen: false,
            peer_eof: false,
            shutdown_write_when_flushed: false,
            write_shut: false,
            registered: None,
            in_ready: false,
            in_dirty: false,
            share: TurnShare::default(),
            last_frame_at: now,
            last_write_at: now,
            stall_since: None,
            stall_mark: 0,
            stall_armed: false,
            idle_warned: None,
            stall_warned: None,
            close_reason: None,
            finish_reading: false,
            work_pending: 0,
            close_after_work: None,
            work_bytes: std::collections::VecDeque::new(),
            reported: true,
            frames_in: 0,
            bytes_in: 0,
            reads: 0,
            peak_read_capacity: 0,
            opened_at: now,
        }
    }

    pub(crate) fn state(&self) -> ConnState {
        self.state
    }

    /// The one place a state changes, so every transition is a log line a reader can find.
    pub(crate) fn set_state(&mut self, next: ConnState, why: &str) {
        if self.state != next {
            log::debug!("{}: {:?} -> {:?} ({why})", self.id, self.state, next);
            self.state = next;
        }
    }

    /// What this connection has spent in turn `turn` (the reactor's turn count); a new turn
    /// starts from nothing, which is all the resetting the budgets need.
    pub(crate) fn share(&mut self, turn: u64) -> &mut TurnShare {
        if self.share.turn != turn {
            self.share = TurnShare {
                turn,
                ..TurnShare::default()
            };
        }
        &mut self.share
    }

    /// Whether the application may queue frames (open, or still connecting).
    pub(crate) fn accepts_sends(&self) -> bool {
        matches!(self.state, ConnState::Open | ConnState::Connecting)
    }

    /// Whether buffered frames may be handed to the application now.
    pub(crate) fn may_deliver(&self) -> bool {
        self.state == ConnState::Open && self.paused.is_empty() && self.close_after_work.is_none()
    }

    pub(crate) fn paused(&self) -> Paused {
        self.paused
    }

    /// Adds a pause reason. Returns true if reading was allowed and now is not.
    pub(crate) fn pause(&mut self, reason: PauseReason, now: Instant) -> bool {
        let was_reading = self.paused.is_empty();
        self.paused.insert(reason);
        if was_reading {
            self.paused_since = Some(now);
            log::debug!("{}: pause reading ({reason:?})", self.id);
        }
        was_reading
    }

    /// Removes a pause reason. Returns true if reading was not allowed and now is.
    pub(crate) fn resume(&mut self, reason: PauseReason, now: Instant) -> bool {
        if !self.paused.contains(reason) {
            return false;
        }
        self.paused.remove(reason);
        if !self.paused.is_empty() {
            return false;
        }
        if let Some(since) = self.paused_since.take() {
            self.paused_total += now.saturating_duration_since(since);
        }
        // Time spent paused by us is not the peer's idleness.
        self.last_frame_at = now;
        log::debug!("{}: resume reading ({reason:?} cleared)", self.id);
        true
    }

    /// What to ask the poller for. See the module docs: this is the only place it is decided.
    pub(crate) fn interest(&self) -> Option<Interest> {
        let read = match self.state {
            ConnState::Open => {
                self.paused.is_empty() && !self.peer_eof && self.close_after_work.is_none()
            }
            ConnState::Lingering => !self.peer_eof,
            ConnState::Connecting | ConnState::Flushing | ConnState::Closed => false,
        };
        let write = match self.state {
            ConnState::Connecting => true,
            ConnState::Closed => false,
            _ => !self.queue.is_empty(),
        };
        match (read, write) {
            (true, true) => Some(Interest::READABLE | Interest::WRITABLE),
            (true, false) => Some(Interest::READABLE),
            (false, true) => Some(Interest::WRITABLE),
            (false, false) => None,
        }
    }

    /// Whether the reactor should come back to this connection without waiting for an event:
    /// it may read, and either the socket may hold more, frames may be buffered, or a
    /// shutdown is waiting for it to finish reading (the read path then closes it).
    pub(crate) fn has_pending_input(&self) -> bool {
        self.may_deliver()
            && (self.readable
                || self.read_buf.len() >= crate::frame::HEADER_LEN
                || self.finish_reading)
    }

    /// Cuts the next complete frame out of the read buffer.
    pub(crate) fn next_frame(&mut self, now: Instant) -> Result<Option<Bytes>, FrameError> {
        let Some(len) = self.decoder.next_payload_len(self.read_buf.bytes_mut())? else {
            return Ok(None);
        };
        self.frames_in += 1;
        self.last_frame_at = now;
        Ok(Some(self.read_buf.take(len)))
    }

    /// The allocation the next read would need, if it needs a new one larger than an ordinary
    /// read buffer: the rest of a large frame in progress (see [`Connection::read_some`]).
    pub(crate) fn read_growth_needed(&self) -> Option<usize> {
        let wanted = self.decoder.bytes_wanted(&self.read_buf).max(READ_CHUNK);
        self.read_buf
            .room_needed(wanted, READ_ALLOC_KEEP)
            .filter(|&alloc| alloc > READ_ALLOC_KEEP)
    }

    /// One `recv` into the read buffer's spare capacity.
    ///
    /// The buffer is grown to hold the rest of the frame in progress (bounded by the frame
    /// limit, which the decoder already checked), or [`READ_CHUNK`] when the next frame's size
    /// is not known yet. Growing to the whole frame costs address space, not memory: the
    /// allocator maps large blocks lazily, and only bytes that arrive are touched.
    pub(crate) fn read_some(&mut self) -> ReadOutcome {
        self.read_some_sized(READ_CHUNK)
    }

    /// [`Connection::read_some`] with `chunk` in place of [`READ_CHUNK`]: the budget asks for
    /// [`PRESSED_CHUNK`] while it is exceeded (`budget.rs`).
    pub(crate) fn read_some_sized(&mut self, chunk: usize) -> ReadOutcome {
        let wanted = self.decoder.bytes_wanted(&self.read_buf).max(chunk);
        if self.read_buf.make_room(wanted, READ_ALLOC_KEEP) {
            self.peak_read_capacity = self.peak_read_capacity.max(self.read_buf.alloc());
        }
        let offered = self.read_buf.capacity() - self.read_buf.len();
        loop {
            match crate::sys::recv_into(self.stream.as_raw_fd(), self.read_buf.bytes_mut()) {
                Ok(0) => return ReadOutcome::Eof,
                Ok(n) => {
                    self.bytes_in += n as u64;
                    self.reads += 1;
                    return ReadOutcome::Data {
                        drained: n < offered,
                    };
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return ReadOutcome::WouldBlock,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return ReadOutcome::Error(e),
            }
        }
    }

    /// Makes the coming close a reset: `SO_LINGER` with a zero timeout turns `close(2)` into
    /// a RST. The kernel drops what it still holds for the peer at once (megabytes, for a
    /// slow reader) and the peer's next read fails with "connection reset" instead of
    /// working through those bytes before seeing an end of stream that looks like success.
    /// For closes that discard data anyway; a graceful close must never do this.
    pub(crate) fn reset_on_close(&self) {
        if let Err(e) = socket2::SockRef::from(&self.stream).set_linger(Some(Duration::ZERO)) {
            // Without it the close is a FIN: slower for the peer to learn, still a close.
            log::debug!("{}: SO_LINGER 0 not set: {e}", self.id);
        }
    }

    /// Time spent with reading paused, up to `now`.
    pub(crate) fn paused_time(&self, now: Instant) -> Duration {
        self.paused_total
            + self
                .paused_since
                .map_or(Duration::ZERO, |s| now.saturating_duration_since(s))
    }

    /// The figures a user can read at any time.
    pub(crate) fn figures(&self, now: Instant) -> ConnFigures {
        let q = self.queue.figures();
        let marks = self.queue.marks();
        ConnFigures {
            id: self.id,
            peer: self.peer,
            outbound: self.outbound,
            state: self.state,
            reading: self.paused,
            queued_bytes: q.queued,
            high_water: marks.high,
            low_water: marks.low,
            queue_limit: marks.limit,
            peak_queued_bytes: q.peak,
            high_water_crossings: q.high_water_crossings,
            drain_events: q.drains,
            frames_out: q.frames,
            bytes_queued: q.bytes_queued,
            bytes_out: q.bytes_written,
            writes: q.writes,
            frames_in: self.frames_in,
            bytes_in: self.bytes_in,
            reads: self.reads,
            read_buffered_bytes: self.read_buf.len(),
            read_buffer_capacity: self.read_buf.capacity(),
            peak_read_buffer_capacity: self.peak_read_capacity,
            write_buffer_capacity: self.queue.heap_bytes(),
            readable_interest: self.registered.is_some_and(|i| i.is_readable()),
            writable_interest: self.registered.is_some_and(|i| i.is_writable()),
            kernel: if self.state == ConnState::Closed {
                crate::kernel::KernelFigures::default()
            } else {
                crate::kernel::kernel_figures(&self.stream)
            },
            paused_time: self.paused_time(now),
            age: now.saturating_duration_since(self.opened_at),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::write_queue::Marks;
    use std::io::Write;

    fn pair() -> (std::net::TcpStream, TcpStream) {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let a = std::net::TcpStream::connect(l.local_addr().unwrap()).unwrap();
        let (b, _) = l.accept().unwrap();
        b.set_nonblocking(true).unwrap();
        (a, TcpStream::from_std(b))
    }

    fn conn(stream: TcpStream) -> Connection {
        let marks = Marks {
            high: 100,
            low: 10,
            limit: 1000,
        };
        Connection::new(
            ConnId::new(0, 0),
            stream,
            None,
            false,
            Decoder::new(1 << 20),
            WriteQueue::new(marks),
            Instant::now(),
        )
    }

    #[test]
    fn recv_into_appends_exactly_what_arrived() {
        let (mut a, b) = pair();
        let mut c = conn(b);
        c.read_buf.bytes_mut().extend_from_slice(b"kept");
        a.write_all(b"hello").unwrap();
        a.flush().unwrap();
        // Loopback delivery is not instantaneous: poll the non-blocking socket until it has data.
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            match c.read_some() {
                ReadOutcome::Data { .. } => break,
                ReadOutcome::WouldBlock if Instant::now() < deadline => std::thread::yield_now(),
                other => panic!("unexpected {other:?}"),
            }
        }
        assert_eq!(&c.read_buf[..], b"kepthello");
        assert!(c.read_buf.capacity() >= READ_CHUNK);
        drop(a);
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            match c.read_some() {
                ReadOutcome::Eof => break,
                ReadOutcome::WouldBlock if Instant::now() < deadline => std::thread::yield_now(),
                other => panic!("unexpected {other:?}"),
            }
        }
    }

    #[test]
    fn interest_follows_queue_and_pause_state() {
        let (_a, b) = pair();
        let mut c = conn(b);
        let now = Instant::now();
        assert_eq!(c.interest(), Some(Interest::READABLE));
        let _ = c.queue.push_json(&1, 100).unwrap();
        assert_eq!(c.interest(), Some(Interest::READABLE | Interest::WRITABLE));
        assert!(c.pause(PauseReason::Application, now));
        assert_eq!(c.interest(), Some(Interest::WRITABLE));
        assert!(!c.pause(PauseReason::WriteQueue, now), "already paused");
        assert!(
            !c.resume(PauseReason::Application, now),
            "still paused by the queue"
        );
        assert_eq!(c.paused().to_string(), "paused by WriteQueue");
        assert!(c.resume(PauseReason::WriteQueue, now));
        c.set_state(ConnState::Flushing, "test");
        assert_eq!(c.interest(), Some(Interest::WRITABLE));
        c.queue.clear();
        assert_eq!(c.interest(), None);
    }
}
