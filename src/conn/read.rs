//! The read side: from the transport into the read buffer, and complete frames out of it.
//!
//! The loop that drives these (how many reads a turn, when to stop, who hears of a frame) is
//! the engine's read path, `engine/read.rs`; here is what one connection does when asked.

use std::io;
use std::time::Instant;

use bytes::Bytes;

use super::{Connection, Life, Transport};
use crate::frame::{FrameError, HEADER_LEN};
use crate::read_buf::ReadBuf;

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

/// Whether the peer may still send.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum ReadSide {
    /// It may: read whenever not paused.
    Open,
    /// A graceful shutdown asked to read out what the peer already sent, then close.
    Finishing,
    /// The peer finished sending (a read returned 0): nothing more will come.
    PeerEof,
}

/// What one read attempt produced.
#[derive(Debug)]
pub(crate) enum ReadOutcome {
    /// Bytes were appended to the read buffer. `drained` when the read did not fill the
    /// space offered: the kernel had nothing more at that moment (see `engine/read.rs`).
    Data { drained: bool },
    /// The socket has nothing more for now; wait for the next readable event.
    WouldBlock,
    /// The peer shut down its sending side (or closed).
    Eof,
    /// A real error (reset, ...).
    Error(io::Error),
}

impl<T: Transport> Connection<T> {
    /// Whether the reactor should come back to this connection without waiting for an event:
    /// it may read, and either the socket may hold more, frames may be buffered, or a
    /// shutdown is waiting for it to finish reading (the read path then closes it).
    pub(crate) fn has_pending_input(&self) -> bool {
        self.may_deliver()
            && (self.readiness.readable()
                || self.read_buf.len() >= HEADER_LEN
                || self.read_side == ReadSide::Finishing)
    }

    /// Reads and discards only: everything was delivered and FIN sent (`Lingering`).
    pub(crate) fn is_lingering(&self) -> bool {
        matches!(self.life, Life::Lingering(_))
    }

    /// The peer has finished sending.
    pub(crate) fn peer_eof(&self) -> bool {
        self.read_side == ReadSide::PeerEof
    }

    /// A graceful shutdown waits for this connection to read out what its peer sent.
    pub(crate) fn finishing(&self) -> bool {
        self.read_side == ReadSide::Finishing
    }

    /// Open → Finishing: read out what the peer already sent (assumed readable: only a read
    /// can tell), then close. False if the peer already finished: nothing is left to read.
    pub(crate) fn finish_reading(&mut self) -> bool {
        match self.read_side {
            ReadSide::Open | ReadSide::Finishing => {
                self.read_side = ReadSide::Finishing;
                self.readiness.assume_readable();
                true
            }
            ReadSide::PeerEof => false,
        }
    }

    /// Open/Finishing → PeerEof: a read returned 0.
    pub(crate) fn peer_finished(&mut self) {
        self.read_side = ReadSide::PeerEof;
        self.readiness.read_out();
    }

    /// The kernel has nothing more for now (see `Readiness::read_out`).
    pub(crate) fn read_out(&mut self) {
        self.readiness.read_out();
    }

    /// Whether a short read proves the kernel's receive queue empty. Not after a FIN or error
    /// event (nothing will announce those again), nor while finishing or lingering (no later
    /// event brings us back, so only `WouldBlock` proves there is nothing left).
    pub(crate) fn short_read_is_read_out(&self) -> bool {
        cfg!(target_os = "linux")
            && !self.readiness.final_seen()
            && self.read_side != ReadSide::Finishing
            && !self.is_lingering()
    }

    /// Cuts the next complete frame out of the read buffer.
    #[inline]
    pub(crate) fn next_frame(&mut self, now: Instant) -> Result<Option<Bytes>, FrameError> {
        let Some(at) = self.decoder.next_frame(self.read_buf.bytes_mut())? else {
            return Ok(None);
        };
        self.frames_in += 1;
        self.timing.last_frame_at = now;
        Ok(Some(self.read_buf.take(at)))
    }

    /// The frame in progress cannot be completed: the peer finished in the middle of it.
    pub(crate) fn truncation(&self) -> Option<FrameError> {
        self.decoder.truncation(&self.read_buf)
    }

    /// The allocation the next read would need, if it needs a new one larger than an ordinary
    /// read buffer: the rest of a large frame in progress (see [`Connection::read_some`]).
    pub(crate) fn read_growth_needed(&self) -> Option<usize> {
        let wanted = self.decoder.bytes_wanted(&self.read_buf).max(READ_CHUNK);
        self.read_buf
            .room_needed(wanted, READ_ALLOC_KEEP)
            .filter(|&alloc| alloc > READ_ALLOC_KEEP)
    }

    /// One `recv` into the read buffer's spare capacity, of at least `chunk` bytes
    /// ([`READ_CHUNK`], or [`PRESSED_CHUNK`] while the budget is exceeded).
    ///
    /// The buffer is grown to hold the rest of the frame in progress (bounded by the frame
    /// limit, which the decoder already checked), or `chunk` when the next frame's size is not
    /// known yet. Growing to the whole frame costs address space, not memory: the allocator
    /// maps large blocks lazily, and only bytes that arrive are touched.
    pub(crate) fn read_some(&mut self, chunk: usize) -> ReadOutcome {
        let wanted = self.decoder.bytes_wanted(&self.read_buf).max(chunk);
        if self.read_buf.make_room(wanted, READ_ALLOC_KEEP) {
            self.peak_read_capacity = self.peak_read_capacity.max(self.read_buf.alloc());
        }
        let offered = self.read_buf.capacity() - self.read_buf.len();
        loop {
            match self.transport.recv_into(self.read_buf.bytes_mut()) {
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

    // ----- the read buffer and the budget ------------------------------------------------

    #[cfg(test)]
    /// Bytes in the read buffer (an incomplete frame, or frames waiting while paused).
    pub(crate) fn read_buffered(&self) -> usize {
        self.read_buf.len()
    }

    /// Whether the connection holds no read buffer at all.
    pub(crate) fn holds_no_read_buf(&self) -> bool {
        self.read_buf.capacity() == 0
    }

    /// Gives the connection a buffer to read into (from the pool), if it holds none.
    pub(crate) fn lend_read_buf(&mut self, buf: ReadBuf) {
        debug_assert!(self.holds_no_read_buf());
        self.read_buf = buf;
    }

    /// Takes the read buffer back, if it is empty and allocated: an idle or paused connection
    /// should hold no buffer at all.
    pub(crate) fn take_idle_read_buf(&mut self) -> Option<ReadBuf> {
        (self.read_buf.is_empty() && self.read_buf.alloc() > 0)
            .then(|| std::mem::take(&mut self.read_buf))
    }

    /// Takes the read buffer, whatever it holds (closing, or discarding while lingering).
    pub(crate) fn take_read_buf(&mut self) -> ReadBuf {
        std::mem::take(&mut self.read_buf)
    }

    /// Forgets what was read (lingering: reads only discard).
    pub(crate) fn discard_input(&mut self) {
        self.read_buf.clear();
    }

    /// Brings the count of the read buffer's allocation in `held` (the engine's `read_held`)
    /// up to date.
    pub(crate) fn recount_read(&mut self, held: &mut usize) {
        let now_held = self.read_buf.alloc();
        *held = *held + now_held - self.read_charged;
        self.read_charged = now_held;
    }

    /// The read-buffer bytes counted in the budget.
    pub(crate) fn read_charged(&self) -> usize {
        self.read_charged
    }
}
