//! Every limit the reactor enforces, in one place, with its default and the reason for it.
//!
//! A limit nobody can find is a limit nobody can tune. Each field below says what happens
//! when it is hit; `Config::validate` refuses combinations that cannot work (a low-water
//! mark above the high-water mark, a hard limit that cannot hold one frame, a frame limit
//! too small for the reactor's own error replies), and says which field is at fault.
//!
//! Durations have no upper limit: one too long to add to the clock (`Duration::MAX`) means
//! "never" (no idle timeout, no write timeout, linger until the peer closes).

use std::fmt;
use std::time::Duration;

use crate::frame::{DEFAULT_MAX_FRAME, HEADER_LEN};
use crate::reply::ErrorReply;

/// Reactor settings. Build one with `Config::default()` and change what you need.
///
/// ```
/// use highwater::Config;
/// use std::time::Duration;
///
/// let config = Config {
///     high_water: 64 * 1024,
///     low_water: 16 * 1024,
///     idle_timeout: Some(Duration::from_secs(5)),
///     ..Config::default()
/// };
/// config.validate().unwrap();
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// Per-connection write-queue high-water mark, in bytes. Default 256 KiB.
    ///
    /// When a connection's queue reaches it, sends return [`crate::Pressure::High`] and, if
    /// [`Config::pause_reads_above_high_water`] is set, the reactor stops reading that
    /// connection. 256 KiB holds a few of the article's ~58 KB frames, enough to keep the
    /// kernel's send buffer busy between wake-ups, and little enough that 10,000 stuck
    /// connections would hold 2.5 GiB at most (see [`Config::max_connections`]).
    pub high_water: usize,
    /// Per-connection write-queue low-water mark, in bytes. Default 64 KiB.
    ///
    /// After the queue reached the high-water mark, falling to this is a *drain*:
    /// [`crate::Handler::on_drain`] runs and paused reading resumes. The gap between the marks
    /// is hysteresis: without it a producer hovering at the mark would stop and start on every
    /// frame.
    pub low_water: usize,
    /// Hard limit on one connection's queued bytes. `None` (the default) means
    /// `high_water + max_frame + 4`: one maximum-size frame may always be queued while below
    /// the mark, and nothing beyond that. A send past it fails with
    /// [`crate::SendError::QueueFull`] instead of growing the queue.
    pub queue_limit: Option<usize>,
    /// Largest payload accepted from or sent to a peer. Default 8 MiB (tokio-util's default).
    /// A longer length prefix is answered with `frame_too_large` and the connection closed,
    /// decided from the four header bytes before anything is buffered. It must be large
    /// enough for that reply itself (about 64 bytes; `validate` says exactly).
    pub max_frame: usize,
    /// Process-wide budget on the bytes held for peers: every connection's write queue and
    /// read buffer. Default 256 MiB; `None` is off. When the total reaches it, the connections
    /// whose queue is above their fair share (the budget divided among the connections holding
    /// memory; nothing while the total is over the budget) stop reading
    /// ([`crate::PauseReason::Budget`]) until their queue is back under it or the total falls
    /// to three quarters; the others read on. A read buffer larger than an ordinary one (the
    /// rest of a large frame) is granted before it is allocated if the budget has room, else
    /// the connection waits ([`crate::PauseReason::ReadBudget`]); one connection at a time may
    /// overdraw for one frame. Total held: at most the budget, one `max_frame`, and per
    /// connection one ordinary read buffer plus the replies to one read. Per-connection marks
    /// bound one peer; this bounds all of them together (200 slow readers times 256 KiB would
    /// otherwise be 50 MiB, 10,000 would be 2.5 GiB).
    /// Payloads sent through a [`crate::Handle`] and still waiting in its channel count too,
    /// and the channel itself holds at most this many payload bytes (64 MiB when `None`).
    pub queue_budget: Option<usize>,
    /// Open connections allowed at once (accepted plus outbound). Default 10,000.
    /// A connection accepted past it gets `{"error":"busy"}` and is closed without being read.
    /// Remember the process's file-descriptor limit (`ulimit -n`) is usually lower.
    pub max_connections: usize,
    /// Close an *accepted* connection that makes no progress in either direction for this
    /// long. Default 60 s; `None` is off. Progress is a complete frame in, or bytes of ours
    /// taken by the peer's kernel; a one-byte-a-second trickle of input completes nothing and
    /// does not count, while a subscriber that only receives, or a client that only sends, is
    /// not idle while its data flows. The clock stops while the reactor itself has paused
    /// reading the connection. A duration too long to add to the clock (`Duration::MAX`)
    /// is off too. The server then sends `{"error":"idle_timeout"}` (best effort)
    /// and closes gracefully.
    pub idle_timeout: Option<Duration>,
    /// The same, for connections this reactor opened ([`crate::Context::connect`]). Default
    /// `None` (off): whether silence from a server is a failure is the client's call (a
    /// connection kept for occasional requests is silent by design), and a client has its own
    /// deadlines. When it fires, the connection is closed at once (no linger) and sends no
    /// error frame: the contract's error frames are replies a server sends.
    pub outbound_idle_timeout: Option<Duration>,
    /// Give up an outbound connect that has not completed after this long. Default 10 s; `None`
    /// leaves it to the kernel (about two minutes of SYN retries on Linux, for a listener whose
    /// backlog is full or a host that drops packets). Reported as
    /// [`crate::CloseReason::ConnectFailed`] with [`std::io::ErrorKind::TimedOut`].
    pub connect_timeout: Option<Duration>,
    /// Close a connection, in either direction, whose peer takes none of our queued bytes for
    /// this long (nginx's `send_timeout`: measured between successive writes, only while bytes
    /// are queued). Default 30 s; `None` is off. A peer reading steadily but slower than we
    /// produce makes progress and is not closed (its queue's high-water mark is what slows the
    /// producer). The close is a reset: the queued bytes are discarded anyway. A duration too
    /// long to add to the clock is off too.
    pub write_timeout: Option<Duration>,
    /// With [`Config::write_timeout`]: over each `write_timeout` period during which bytes were
    /// queued throughout, the peer must also take at least this many bytes per second, or the
    /// connection is closed the same way. Default 512 B/s (Apache's `mod_reqtimeout` asks 500
    /// of a request body); `None` keeps only the no-progress rule. It catches the peer that
    /// takes a byte every 20 ms, which is never quite "no progress" but pins its queue (and
    /// our memory) forever.
    pub write_min_rate: Option<u64>,
    /// Pause reading a connection while its own write queue is above the high-water mark
    /// (resume at the low-water mark). Default true: a peer that never reads its replies must
    /// not be able to make us buffer them without bound. A peer that pipelines requests
    /// without reading replies then stalls by design.
    pub pause_reads_above_high_water: bool,
    /// After a graceful close has flushed everything and sent FIN, keep reading (and
    /// discarding) for at most this long before closing the socket. Closing with unread bytes
    /// makes the kernel send RST, which can destroy our last replies before the peer reads
    /// them. Default 2 s. A duration too long to add to the clock (`Duration::MAX`) lingers
    /// until the peer closes.
    pub linger: Duration,
    /// `SO_SNDBUF` for every connection, in bytes; `None` (the default) leaves the kernel's
    /// auto-tuning alone. A small send buffer moves backpressure out of the kernel and into
    /// the write queue, where it is visible and counted: useful for demonstrations and for
    /// servers that want memory per connection bounded tightly. Linux doubles the value.
    ///
    /// What to expect: when set, each `writev` offers at most this many bytes (at least
    /// 4 KiB) and the next follows while the kernel takes them whole, so a queue larger than
    /// the buffer costs a few more system calls per turn; the default path writes a whole
    /// queue per call. The cap is there because a peer that only reads (a subscriber, a
    /// download) acknowledges a single large segment only when its delayed-ACK timer fires,
    /// 40 ms on Linux: one write of a whole queue into a buffer with room for one segment
    /// made a 4-subscriber fan-out of 256-byte frames fall from ~1.5 million to ~25,000
    /// deliveries/s at 16 and 32 KiB, and tokio-util falls the same way when it writes whole
    /// batches. With the cap the same fan-out runs at 1.5 to 2.4 million (BENCHMARKS.md,
    /// "Small send buffers"). Throughput per connection is still bounded by the buffer over the
    /// round-trip time, so on a long path a small buffer is slow whatever the writes.
    pub send_buffer_size: Option<usize>,
    /// `SO_RCVBUF` for every connection, in bytes; `None` (the default) leaves auto-tuning on.
    /// A small receive buffer makes a paused reader's TCP window close sooner.
    pub recv_buffer_size: Option<usize>,
    /// `TCP_NODELAY` on every connection. Default true: frames are already batched by the
    /// write queue, so Nagle's algorithm only adds latency.
    pub nodelay: bool,
    /// `SO_REUSEPORT` on listeners: several sockets (the reactors of a group, or several
    /// processes) listen on one port, and the kernel spreads incoming connections among them
    /// by a hash of the address pair. In a [`crate::ReactorGroup`] it gives every reactor a
    /// listener of its own, so no reactor accepts for the others (see the group's docs for
    /// the trade-off). Default false: one listener, and a group's reactor 0 hands connections
    /// out round-robin.
    pub reuse_port: bool,
    /// Busy polling: after a turn that had events, keep asking the poller without sleeping
    /// (`epoll_wait` with a zero timeout) for up to this long before blocking again. Default
    /// `None`: a reactor with nothing to do sleeps at once.
    ///
    /// What it buys is the wake-up. A sleeping reactor is woken by the kernel when a peer's
    /// bytes arrive, and on a virtual machine that wake-up can cost tens of microseconds,
    /// more than everything else in a round trip. A reactor that is still polling finds the
    /// bytes at its next call instead. What it costs is a core: the thread spins at 100% for
    /// this long after every burst of events, so the window should be about the time a
    /// peer takes to answer (a round trip or two), not longer. Timers, commands from handles
    /// and shutdown work as without it. The window opens at the end of each turn that had
    /// events (so a long turn does not use it up); a reactor that has had no event yet
    /// sleeps; `Some(Duration::ZERO)` is the same as `None`; `Duration::MAX` spins for ever
    /// from the first event on. Measured in BENCHMARKS.md ("Busy polling").
    pub busy_poll: Option<Duration>,
}

impl Default for Config {
    fn default() -> Config {
        Config {
            high_water: 256 * 1024,
            low_water: 64 * 1024,
            queue_limit: None,
            max_frame: DEFAULT_MAX_FRAME,
            queue_budget: Some(256 * 1024 * 1024),
            max_connections: 10_000,
            idle_timeout: Some(Duration::from_secs(60)),
            outbound_idle_timeout: None,
            connect_timeout: Some(Duration::from_secs(10)),
            write_timeout: Some(Duration::from_secs(30)),
            write_min_rate: Some(512),
            pause_reads_above_high_water: true,
            linger: Duration::from_secs(2),
            send_buffer_size: None,
            recv_buffer_size: None,
            nodelay: true,
            reuse_port: false,
            busy_poll: None,
        }
    }
}

/// A configuration that cannot work: which field, and why.
///
/// ```
/// use highwater::Config;
///
/// let config = Config { max_frame: 1, ..Config::default() };
/// let err = config.validate().unwrap_err();
/// assert_eq!(err.field(), "max_frame");
/// println!("{err}"); // invalid configuration: max_frame: ... (the reason)
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    field: &'static str,
    reason: String,
}

impl ConfigError {
    pub(crate) fn new(field: &'static str, reason: impl Into<String>) -> ConfigError {
        ConfigError {
            field,
            reason: reason.into(),
        }
    }

    /// The name of the [`Config`] field at fault (the first one found, if several are).
    pub fn field(&self) -> &'static str {
        self.field
    }

    /// Why that value cannot work, in words a user can act on.
    pub fn reason(&self) -> &str {
        &self.reason
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "invalid configuration: {}: {}", self.field, self.reason)
    }
}

impl std::error::Error for ConfigError {}

/// The marks' own rules, for a [`Config`] and for one connection's settings alike.
pub(crate) fn check_water_marks(high_water: usize, low_water: usize) -> Result<(), ConfigError> {
    if high_water == 0 {
        return Err(ConfigError::new("high_water", "must be at least 1 byte"));
    }
    if low_water > high_water {
        return Err(ConfigError::new(
            "low_water",
            format!("{low_water} must not exceed high_water ({high_water})"),
        ));
    }
    Ok(())
}

/// A queue's hard limit must leave room for its high-water mark.
pub(crate) fn check_queue_limit(limit: usize, high_water: usize) -> Result<(), ConfigError> {
    if limit < high_water {
        return Err(ConfigError::new(
            "queue_limit",
            format!("{limit} must be at least high_water ({high_water})"),
        ));
    }
    Ok(())
}

/// The smallest cap on one write that a small [`Config::send_buffer_size`] brings
/// (`Config::max_write`).
const MIN_CAPPED_WRITE: usize = 4 * 1024;

impl Config {
    /// The effective per-connection hard limit (see [`Config::queue_limit`]).
    pub fn effective_queue_limit(&self) -> usize {
        self.queue_limit
            .unwrap_or_else(|| self.high_water.saturating_add(self.max_frame + HEADER_LEN))
    }

    /// The most one write (`writev`) offers the kernel: unbounded by default; when
    /// [`Config::send_buffer_size`] is set, that size (at least [`MIN_CAPPED_WRITE`]), which
    /// is half the buffer Linux allocates, so that at least two writes' segments fit in it.
    /// Why that matters: `Connection::flush_capped` (`conn/write.rs`).
    pub(crate) fn max_write(&self) -> usize {
        self.send_buffer_size
            .map_or(usize::MAX, |n| n.max(MIN_CAPPED_WRITE))
    }

    /// The idle timeout for a connection accepted (`outbound` false) or opened by us.
    pub(crate) fn idle_timeout_for(&self, outbound: bool) -> Option<Duration> {
        if outbound {
            self.outbound_idle_timeout
        } else {
            self.idle_timeout
        }
    }

    /// Checks that the settings make sense together. The error names the first field at
    /// fault and says why.
    pub fn validate(&self) -> Result<(), ConfigError> {
        check_water_marks(self.high_water, self.low_water)?;
        if self.max_frame > u32::MAX as usize {
            return Err(ConfigError::new(
                "max_frame",
                format!("must be at most {} (the length prefix is a u32)", u32::MAX),
            ));
        }
        // The reactor's own error frames go through the same limits as the application's.
        // A limit that cannot carry them turns a `frame_too_large` reply into a bare close.
        let reply = ErrorReply::longest_fixed_len(self.max_frame);
        if self.max_frame < reply {
            return Err(ConfigError::new(
                "max_frame",
                format!(
                    "{} bytes cannot carry the {reply}-byte frame_too_large error reply",
                    self.max_frame
                ),
            ));
        }
        let limit = self.effective_queue_limit();
        check_queue_limit(limit, self.high_water)?;
        if limit < HEADER_LEN + reply {
            return Err(ConfigError::new(
                "queue_limit",
                format!(
                    "{limit} bytes cannot hold one frame carrying the {reply}-byte \
                     frame_too_large error reply ({} bytes with its header): every send \
                     would be refused",
                    HEADER_LEN + reply
                ),
            ));
        }
        if self.queue_budget == Some(0) {
            return Err(ConfigError::new(
                "queue_budget",
                "must be at least 1 byte (or None)",
            ));
        }
        if self.max_connections == 0 {
            return Err(ConfigError::new("max_connections", "must be at least 1"));
        }
        if self.max_connections > MAX_CONNECTIONS_LIMIT {
            return Err(ConfigError::new(
                "max_connections",
                "must be at most 2^30: connection slots are numbered in 32 bits",
            ));
        }
        Ok(())
    }
}

/// The most `max_connections` may be: slots are numbered in 32 bits (`ConnId`), and the slab
/// holds the open connections plus a bounded number of lingering ones.
const MAX_CONNECTIONS_LIMIT: usize = 1 << 30;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid() {
        Config::default().validate().unwrap();
    }

    #[test]
    fn default_limit_holds_one_max_frame_above_the_mark() {
        let c = Config::default();
        assert_eq!(
            c.effective_queue_limit(),
            c.high_water + c.max_frame + HEADER_LEN
        );
    }

    #[test]
    fn inverted_marks_are_refused() {
        let c = Config {
            high_water: 10,
            low_water: 11,
            ..Config::default()
        };
        assert!(c.validate().unwrap_err().to_string().contains("low_water"));
    }

    #[test]
    fn more_connections_than_32_bit_slot_numbers_allow_are_refused() {
        let c = Config {
            max_connections: MAX_CONNECTIONS_LIMIT + 1,
            ..Config::default()
        };
        assert_eq!(c.validate().unwrap_err().field(), "max_connections");
    }

    #[test]
    fn a_limit_below_the_mark_is_refused() {
        let c = Config {
            high_water: 100,
            low_water: 10,
            queue_limit: Some(50),
            ..Config::default()
        };
        assert!(c.validate().is_err());
    }
}
