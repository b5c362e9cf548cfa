//! Figures: what each connection and the whole reactor are doing, readable at any time.
//!
//! Everything here is a copy of counters the reactor keeps anyway, so reading figures costs
//! nothing on the hot path.

use std::fmt;
use std::net::SocketAddr;
use std::time::Duration;

use crate::conn::{ConnId, ConnState, Paused};
use crate::kernel::KernelFigures;

/// One connection's figures. Get them with [`crate::Context::conn_figures`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnFigures {
    /// Which connection.
    pub id: ConnId,
    /// The peer's address, when known.
    pub peer: Option<SocketAddr>,
    /// True if we connected out; false if accepted.
    pub outbound: bool,
    /// Where the connection is in its life.
    pub state: ConnState,
    /// Reading, or paused and why.
    pub reading: Paused,
    /// Bytes in the application write queue now.
    pub queued_bytes: usize,
    /// The write queue's high-water mark.
    pub high_water: usize,
    /// The write queue's low-water mark.
    pub low_water: usize,
    /// The write queue's hard limit.
    pub queue_limit: usize,
    /// The most bytes ever queued at once.
    pub peak_queued_bytes: usize,
    /// Times the queue reached the high-water mark.
    pub high_water_crossings: u64,
    /// Times the queue drained to the low-water mark afterwards.
    pub drain_events: u64,
    /// Frames queued for sending.
    pub frames_out: u64,
    /// Bytes queued for sending since the connection opened (headers included).
    pub bytes_queued: u64,
    /// Bytes handed to the kernel.
    pub bytes_out: u64,
    /// Write calls that wrote something (`writev`, or `send` when the queue was one slice).
    pub writes: u64,
    /// Complete frames received.
    pub frames_in: u64,
    /// Bytes received.
    pub bytes_in: u64,
    /// `recv` calls that returned data.
    pub reads: u64,
    /// Bytes in the read buffer (an incomplete frame, or frames waiting while paused).
    pub read_buffered_bytes: usize,
    /// Capacity of the read buffer now (0 while the buffer is lent back to the pool).
    pub read_buffer_capacity: usize,
    /// The largest capacity the read buffer has had.
    pub peak_read_buffer_capacity: usize,
    /// Heap the write queue holds now (0 when empty: memory is released as it drains).
    pub write_buffer_capacity: usize,
    /// Whether READABLE interest is registered with the poller now.
    pub readable_interest: bool,
    /// Whether WRITABLE interest is registered now (true exactly while the queue is
    /// non-empty, or a connect is in progress).
    pub writable_interest: bool,
    /// The kernel's side of this socket: unsent and unread bytes, and both windows.
    pub kernel: KernelFigures,
    /// Total time reading has been paused.
    pub paused_time: Duration,
    /// Time since the connection was created.
    pub age: Duration,
}

/// The reactor's figures. Get them with [`crate::Context::figures`] or
/// [`crate::Reactor::figures`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ReactorFigures {
    /// Connections open now (connecting, open, or flushing before close).
    pub open_connections: usize,
    /// Connections lingering after a close (FIN sent, waiting for the peer).
    pub lingering_connections: usize,
    /// Connections with reading paused now.
    pub paused_connections: usize,
    /// Bytes queued across all connections.
    pub queued_bytes: usize,
    /// The most bytes ever queued across all connections at once.
    pub peak_queued_bytes: usize,
    /// Bytes of read-buffer allocations held by connections (frames in progress or not yet
    /// delivered); counted in the budget with `queued_bytes`.
    pub read_buffer_bytes: usize,
    /// The most bytes ever held at once, queues and read buffers together: what
    /// [`crate::Config::queue_budget`] bounds.
    pub peak_held_bytes: usize,
    /// True while the budget binds: the connections holding more than their fair share of it
    /// are paused ([`crate::PauseReason::Budget`]); the others read on.
    pub budget_paused: bool,
    /// Slab slots in use by connections (open, lingering, or closed this turn). Returns to
    /// zero when every connection is gone: the leak check.
    pub connection_slots: usize,
    /// Connections accepted since start.
    pub accepted: u64,
    /// Connections turned away with `busy`.
    pub rejected_busy: u64,
    /// Connections closed since start.
    pub closed: u64,
    /// Frames received since start.
    pub frames_in: u64,
    /// Payloads answered with `invalid_json`.
    pub invalid_frames: u64,
    /// `accept` calls that failed for want of resources (descriptors, memory).
    pub accept_errors: u64,
    /// Accepted connections handed to another reactor of a [`crate::ReactorGroup`].
    pub handed_out: u64,
    /// Poll calls (reactor turns) since start.
    pub turns: u64,
    /// `recv` calls since start, including any that found nothing. With `frames_in`, the
    /// figure that shows how well reads are batched.
    pub recv_calls: u64,
    /// Write calls since start (`writev`, or `send` when the queue was one slice),
    /// including any that the kernel refused.
    pub writev_calls: u64,
    /// Pending entries in the timer heap.
    pub timers: usize,
}

impl fmt::Display for ReactorFigures {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "open={} lingering={} paused={} queued={}B peak_queued={}B budget_paused={} accepted={} busy={} closed={} frames_in={} invalid={} turns={} recv_calls={} writev_calls={}",
            self.open_connections,
            self.lingering_connections,
            self.paused_connections,
            self.queued_bytes,
            self.peak_queued_bytes,
            self.budget_paused,
            self.accepted,
            self.rejected_busy,
            self.closed,
            self.frames_in,
            self.invalid_frames,
            self.turns,
            self.recv_calls,
            self.writev_calls
        )
    }
}

impl ReactorFigures {
    /// Adds `other`'s counters and gauges to these; `budget_paused` becomes true if either is.
    fn add(mut self, other: &ReactorFigures) -> ReactorFigures {
        self.open_connections += other.open_connections;
        self.lingering_connections += other.lingering_connections;
        self.paused_connections += other.paused_connections;
        self.queued_bytes += other.queued_bytes;
        self.peak_queued_bytes += other.peak_queued_bytes;
        self.read_buffer_bytes += other.read_buffer_bytes;
        self.peak_held_bytes += other.peak_held_bytes;
        self.budget_paused |= other.budget_paused;
        self.connection_slots += other.connection_slots;
        self.accepted += other.accepted;
        self.rejected_busy += other.rejected_busy;
        self.closed += other.closed;
        self.frames_in += other.frames_in;
        self.invalid_frames += other.invalid_frames;
        self.accept_errors += other.accept_errors;
        self.handed_out += other.handed_out;
        self.turns += other.turns;
        self.recv_calls += other.recv_calls;
        self.writev_calls += other.writev_calls;
        self.timers += other.timers;
        self
    }
}

/// Totals the figures of several reactors, such as the ones a [`crate::ReactorGroup`] runs.
///
/// Every counter and gauge is added up, and `budget_paused` is true if it is true for any of
/// them. The peaks (`peak_queued_bytes`, `peak_held_bytes`) are the sums of each reactor's
/// own peak: an upper bound on the group's, since the reactors need not have peaked at the
/// same moment. An empty iterator gives [`ReactorFigures::default`].
///
/// [`crate::ReactorGroup::figures`] answers `None` for a reactor that did not answer in time
/// or has stopped, so flatten its answers first:
///
/// ```
/// use highwater::ReactorFigures;
///
/// // What `group.figures()` might answer for a group of three reactors, one of them stopped.
/// let each = [
///     Some(ReactorFigures { open_connections: 2, frames_in: 10, ..Default::default() }),
///     None,
///     Some(ReactorFigures { open_connections: 1, frames_in: 5, ..Default::default() }),
/// ];
/// let total: ReactorFigures = each.iter().flatten().sum();
/// assert_eq!(total.open_connections, 3);
/// assert_eq!(total.frames_in, 15);
/// ```
impl<'a> std::iter::Sum<&'a ReactorFigures> for ReactorFigures {
    fn sum<I: Iterator<Item = &'a ReactorFigures>>(iter: I) -> ReactorFigures {
        iter.fold(ReactorFigures::default(), ReactorFigures::add)
    }
}

/// Totals owned figures; the same sum as for `&ReactorFigures`, above.
impl std::iter::Sum for ReactorFigures {
    fn sum<I: Iterator<Item = ReactorFigures>>(iter: I) -> ReactorFigures {
        iter.fold(ReactorFigures::default(), |total, f| total.add(&f))
    }
}

/// The process's own figures, from `/proc/self` (Linux); `None` where unknown.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ProcessFigures {
    /// Resident set size now, in KiB (`VmRSS`).
    pub rss_kb: Option<u64>,
    /// Peak resident set size, in KiB (`VmHWM`).
    pub peak_rss_kb: Option<u64>,
    /// Open file descriptors (entries of `/proc/self/fd`).
    pub open_fds: Option<usize>,
}

impl fmt::Display for ProcessFigures {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let show = |v: Option<u64>| v.map_or("unknown".to_string(), |v| v.to_string());
        write!(
            f,
            "rss={}KiB peak_rss={}KiB fds={}",
            show(self.rss_kb),
            show(self.peak_rss_kb),
            show(self.open_fds.map(|n| n as u64))
        )
    }
}

/// Reads the process's RSS, peak RSS and open descriptors. A few small file reads: fine for a
/// stats line every second, not for every frame.
pub fn process_figures() -> ProcessFigures {
    let status = std::fs::read_to_string("/proc/self/status").ok();
    let field = |name: &str| -> Option<u64> {
        status
            .as_deref()?
            .lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix(':'))?
            .trim()
            .trim_end_matches("kB")
            .trim()
            .parse()
            .ok()
    };
    ProcessFigures {
        rss_kb: field("VmRSS"),
        peak_rss_kb: field("VmHWM"),
        open_fds: std::fs::read_dir("/proc/self/fd").ok().map(Iterator::count),
    }
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use super::*;

    #[test]
    fn process_figures_are_read_from_proc() {
        let before = process_figures();
        let rss = before.rss_kb.expect("VmRSS");
        assert!(rss > 0);
        assert!(before.peak_rss_kb.expect("VmHWM") >= rss);
        let fds = before.open_fds.expect("fd count");
        let extra: Vec<_> = (0..5)
            .map(|_| std::fs::File::open("/proc/self/status").unwrap())
            .collect();
        // Other tests run in parallel threads and open files too, so only a lower bound holds.
        assert!(process_figures().open_fds.unwrap() + 5 > fds);
        drop(extra);
    }
}
