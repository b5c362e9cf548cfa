//! The write side: from the write queue to the transport, within the turn's budget, and what
//! that changes (the low-water mark, the half-close).
//!
//! The engine calls [`Connection::flush_capped`] for each dirty connection at the end of a turn
//! (`engine/flush.rs`) and acts on what it reports: accounting, `on_drain`, the close.

use std::io;
use std::time::Instant;

use super::{Connection, Life, PauseReason, Transport};
use crate::reactor::{WRITE_BYTES_PER_TURN, WRITES_PER_TURN};

/// Whether we may still send.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum WriteSide {
    Open,
    /// Half-close requested: send FIN once the queue is empty.
    ShutWhenFlushed,
    /// FIN sent.
    Shut,
}

/// What one `Connection::flush` did.
#[derive(Debug, Default)]
pub(crate) struct Flushed {
    /// Bytes the transport took.
    pub(crate) written: usize,
    /// Stopped by this turn's write budget with the socket still writable: no event will come
    /// for it, so the engine must come back next turn.
    pub(crate) carried: bool,
    /// The queue fell to the low-water mark after a crossing: the producer hears `on_drain`.
    pub(crate) drained: bool,
    /// ...and reading resumed with input waiting: read it without an event.
    pub(crate) resumed_with_input: bool,
    /// The queue is empty and a graceful close was waiting for that.
    pub(crate) close_ready: bool,
    /// The transport failed: the connection must be torn down.
    pub(crate) failed: Option<io::Error>,
}

impl<T: Transport> Connection<T> {
    /// Half-close: send FIN once everything queued is delivered; keep reading.
    pub(crate) fn close_write(&mut self) {
        if self.write_side == WriteSide::Open {
            self.write_side = WriteSide::ShutWhenFlushed;
        }
    }

    /// [`Connection::flush_capped`] with no cap on a write's size.
    #[cfg(test)]
    pub(crate) fn flush(&mut self, turn: u64, now: Instant) -> Flushed {
        self.flush_capped(turn, now, usize::MAX)
    }

    /// Writes until the queue is empty, the transport's buffer is full (`WouldBlock`: the next
    /// link of the chain is pushing back), or this turn's write budget is spent. Then applies
    /// the low-water mark and a pending half-close.
    ///
    /// Each write offers at most `max_write` bytes (`Config::max_write`: unbounded unless
    /// the send buffer was made small); a write the transport takes whole is followed by the
    /// next, so a cap costs calls, not progress. Why a small send buffer needs it: a peer that
    /// only reads acknowledges a lone full-sized segment only when its delayed-ACK timer fires
    /// (~40 ms on Linux), and one write of a whole queue makes exactly one such segment fill
    /// a small buffer; writes of half the buffer leave room for a second segment, whose
    /// arrival the peer acknowledges at once (BENCHMARKS.md, "Small send buffers").
    pub(crate) fn flush_capped(&mut self, turn: u64, now: Instant, max_write: usize) -> Flushed {
        let mut out = Flushed::default();
        if !matches!(self.life, Life::Open | Life::Flushing(_)) {
            return out;
        }
        let before = self.queue.len();
        while self.readiness.writable() && !self.queue.is_empty() {
            // The write side's budget, per turn like the read side's: a producer whose peer
            // reads as fast as it writes would otherwise refill from `on_drain` and flush
            // again inside one `settle` for as long as it pleases, while every other
            // connection, timer and command waits. The socket is still writable, so no event
            // will bring it back: it is carried to the next turn.
            let share = self.share(turn);
            if share.writes >= WRITES_PER_TURN || share.bytes_written >= WRITE_BYTES_PER_TURN {
                out.carried = true;
                break;
            }
            share.writes += 1;
            let queued = self.queue.len();
            let result = self.queue.write_to_max(&mut self.transport, max_write);
            self.share(turn).bytes_written += queued - self.queue.len();
            match result {
                Ok((0, _)) => {
                    out.failed = Some(io::Error::from(io::ErrorKind::WriteZero));
                    break;
                }
                // A short write means the send buffer filled up. On Linux the kernel has
                // already flagged the socket to wake us when space frees (SOCK_NOSPACE), so
                // skip the write that would only return `WouldBlock`.
                Ok((written, offered)) if written < offered && cfg!(target_os = "linux") => {
                    self.readiness.write_blocked();
                }
                Ok(_) => {}
                // Edge-triggered: remember that the socket is full; the next WRITABLE event
                // (we stay registered for it while the queue is non-empty) sets this again.
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => self.readiness.write_blocked(),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    out.failed = Some(e);
                    break;
                }
            }
        }
        out.written = before - self.queue.len();
        if out.written > 0 {
            self.timing.last_write_at = now; // the peer took bytes: progress
        }
        if out.failed.is_some() {
            return out;
        }
        if self.queue.take_drain() {
            // Fallen to the low-water mark after a crossing: the producer may resume, and so
            // may reading if the queue was what paused it.
            out.drained = true;
            out.resumed_with_input =
                self.resume(PauseReason::WriteQueue, now) && self.has_pending_input();
        }
        if self.queue.is_empty() {
            self.timing.stall_since = None;
            if self.write_side == WriteSide::ShutWhenFlushed {
                self.write_side = WriteSide::Shut;
                if let Err(e) = self.transport.shutdown_write() {
                    log::debug!("{}: shutdown(Write) failed: {e}", self.id);
                }
            }
            out.close_ready = matches!(self.life, Life::Flushing(_));
        }
        out
    }

    /// Sends FIN now (a graceful close whose queue is empty, about to linger).
    pub(crate) fn shutdown_write(&mut self) -> io::Result<()> {
        self.transport.shutdown_write()
    }

    #[cfg(test)]
    /// Whether FIN was sent.
    pub(crate) fn write_shut(&self) -> bool {
        self.write_side == WriteSide::Shut
    }
}
