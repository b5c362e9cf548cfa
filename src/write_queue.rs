//! One connection's outgoing bytes: a queue of encoded frames, counted in bytes, with a
//! high-water mark, a low-water mark and a hard limit.
//!
//! This is the application's end of the backpressure chain. The kernel's send buffer is
//! the next link: `WriteQueue::write_to` hands it as many queued frames as it will take in
//! one `writev` (one `send` when they are a single slice), and when it takes nothing
//! (`WouldBlock`) the bytes stay here and count.
//!
//! Invariants:
//! - `len()` is exactly the number of bytes not yet accepted by the kernel.
//! - Frames leave in the order they were pushed; a partial write keeps its place (the next
//!   write starts at the first unsent byte).
//! - `len()` never exceeds the hard limit: a push that would pass it is refused whole.
//! - The pressure state has hysteresis: it turns [`Pressure::High`] when `len()` reaches the
//!   high-water mark and back to [`Pressure::Clear`] only when `len()` falls to the low-water
//!   mark; that fall is a *drain*, counted and reported once.
//!
//! Layout: small frames are encoded straight into one growing `tail` buffer, so a burst of
//! small replies becomes one contiguous slice; a large payload that already exists as
//! [`Bytes`] (an echoed message, say) is queued as its own segment without copying.

use std::collections::VecDeque;
use std::fmt;
use std::io::{self, IoSlice, Write};

use bytes::{Buf, Bytes, BytesMut};
use serde::Serialize;

use crate::buf_pool::Spares;
use crate::frame::{self, EncodeError, HEADER_LEN};

/// Payloads up to this size are copied into the tail buffer: one `memcpy` is cheaper than an
/// extra iovec entry and a reference count. Larger ones are queued as their own segment.
const COPY_MAX: usize = 8 * 1024;

/// First allocation of the tail buffer: enough for a turn's worth of small replies, so a
/// burst of them costs one allocation instead of a chain of doublings.
const TAIL_INITIAL: usize = 8 * 1024;

/// Most empty tail buffers kept per thread for the next queue that needs one: 16 MiB.
const SPARE_TAILS_MAX: usize = 2048;

thread_local! {
    /// Tails of queues that emptied on this thread (a reactor's), reclaimed and empty. A
    /// queue's tail lives from its first reply to the flush that empties it, so a turn needs
    /// about one per busy connection; without these, each of them allocated 8 KiB on its
    /// first push and freed it at its flush, which glibc turned into one `madvise` per flush
    /// (issue 16). The list keeps about as many as are in use at once (`Spares`); an idle
    /// connection still holds no tail.
    static TAILS: std::cell::RefCell<Spares<BytesMut>> =
        const { std::cell::RefCell::new(Spares::new(SPARE_TAILS_MAX)) };
}

/// An empty tail buffer with room for `min` bytes: a spare one if it is big enough.
fn spare_tail(min: usize) -> BytesMut {
    match TAILS.try_with(|t| t.borrow_mut().take()).ok().flatten() {
        Some(tail) if tail.capacity() >= min => tail,
        _ => BytesMut::with_capacity(min),
    }
}

/// Keeps an emptied tail for [`spare_tail`] if nothing else shares it and it is of the
/// ordinary size (one grown for a burst is freed).
fn retire_tail(mut tail: BytesMut) {
    tail.clear();
    if tail.try_reclaim(TAIL_INITIAL) && tail.capacity() == TAIL_INITIAL {
        let _ = TAILS.try_with(|t| t.borrow_mut().put(tail));
    }
}

/// iovec entries per `writev`. Linux allows 1024; 64 frames per call already amortises the
/// syscall, and the array lives on the stack.
const MAX_IOVECS: usize = 64;

/// Whether the producer should keep going: Node's `write()` returning `true` or `false`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[must_use = "ignoring backpressure is how producers run out of memory"]
pub enum Pressure {
    /// The queue is below the high-water mark; keep producing.
    Clear,
    /// The queue has reached the high-water mark. The frame was queued, but stop producing
    /// until [`crate::Handler::on_drain`] says the queue fell to the low-water mark.
    High,
}

impl Pressure {
    /// True for [`Pressure::High`].
    pub fn is_high(self) -> bool {
        self == Pressure::High
    }
}

/// Why a frame was not queued.
#[derive(Debug)]
pub enum SendError {
    /// The connection is closed, closing, or the id is stale.
    Closed,
    /// Queuing the frame would take the queue past its hard limit. Nothing was queued.
    QueueFull {
        /// Bytes queued now.
        queued: usize,
        /// The size of the refused frame, header included.
        frame: usize,
        /// The hard limit.
        limit: usize,
    },
    /// The message could not be encoded.
    Encode(EncodeError),
}

impl fmt::Display for SendError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SendError::Closed => write!(f, "the connection is closed"),
            SendError::QueueFull {
                queued,
                frame,
                limit,
            } => write!(
                f,
                "write queue full: {queued} bytes queued + a {frame}-byte frame would pass the \
                 {limit}-byte limit (wait for on_drain before sending more)"
            ),
            SendError::Encode(e) => write!(f, "{e}"),
        }
    }
}

impl std::error::Error for SendError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            SendError::Encode(e) => Some(e),
            _ => None,
        }
    }
}

impl From<EncodeError> for SendError {
    fn from(e: EncodeError) -> SendError {
        SendError::Encode(e)
    }
}

/// The three byte counts that govern a write queue.
///
/// Crate-private: not re-exported, except through the `#[doc(hidden)]` `internals` module
/// (the `internals` feature) for the crate's own tests and benches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Marks {
    /// At or above this many queued bytes, sends report [`Pressure::High`].
    pub high: usize,
    /// After a high-water crossing, falling to this many bytes is a drain.
    pub low: usize,
    /// A push that would take the queue past this is refused.
    pub limit: usize,
}

/// Counters kept by a write queue, cheap to copy out at any time.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct QueueFigures {
    /// Bytes queued now (not yet accepted by the kernel).
    pub queued: usize,
    /// The most bytes ever queued at once.
    pub peak: usize,
    /// Times the queue reached the high-water mark from below.
    pub high_water_crossings: u64,
    /// Times the queue fell to the low-water mark after a crossing.
    pub drains: u64,
    /// Frames pushed.
    pub frames: u64,
    /// Bytes pushed since the queue was made (headers included): where the next frame starts
    /// in the connection's outgoing stream. Compare with `bytes_written` to know whether a
    /// frame has been handed to the kernel.
    pub bytes_queued: u64,
    /// Bytes handed to the kernel.
    pub bytes_written: u64,
    /// Write calls that wrote something (`writev`, or `send` for a single slice).
    pub writes: u64,
    /// The queue's high-water mark: at or above it, sends return [`Pressure::High`].
    pub high_water: usize,
    /// The low-water mark: falling to it after a crossing is a drain.
    pub low_water: usize,
    /// The hard limit: a send that would pass it fails with [`SendError::QueueFull`].
    pub queue_limit: usize,
}

/// A byte-counted queue of encoded frames with water marks. See the module docs.
///
/// Crate-private: not re-exported, except through the `#[doc(hidden)]` `internals` module
/// (the `internals` feature) for the crate's own tests and benches. Applications reach it
/// through [`crate::Context::send`] and see it in [`QueueFigures`].
#[derive(Debug)]
pub struct WriteQueue {
    /// Frozen segments, sent before `tail`.
    segments: VecDeque<Bytes>,
    /// Frames encoded in place; always after every segment on the wire.
    tail: BytesMut,
    marks: Marks,
    above_high: bool,
    drain_pending: bool,
    figures: QueueFigures,
}

impl WriteQueue {
    /// An empty queue. Allocates nothing until the first push.
    pub fn new(marks: Marks) -> WriteQueue {
        WriteQueue {
            segments: VecDeque::new(),
            tail: BytesMut::new(),
            marks,
            above_high: false,
            drain_pending: false,
            figures: QueueFigures::default(),
        }
    }

    /// Bytes queued and not yet accepted by the kernel.
    pub fn len(&self) -> usize {
        self.figures.queued
    }

    /// True when nothing is waiting to be written.
    pub fn is_empty(&self) -> bool {
        self.figures.queued == 0
    }

    /// The marks this queue was built with.
    pub fn marks(&self) -> Marks {
        self.marks
    }

    /// The current pressure state (with hysteresis, see the module docs).
    pub fn pressure(&self) -> Pressure {
        if self.above_high {
            Pressure::High
        } else {
            Pressure::Clear
        }
    }

    /// A copy of the counters.
    pub fn figures(&self) -> QueueFigures {
        QueueFigures {
            high_water: self.marks.high,
            low_water: self.marks.low,
            queue_limit: self.marks.limit,
            ..self.figures
        }
    }

    /// Encodes `msg` as one frame at the end of the queue.
    pub fn push_json<T: Serialize + ?Sized>(
        &mut self,
        msg: &T,
        max_frame: usize,
    ) -> Result<Pressure, SendError> {
        if self.tail.capacity() == 0 {
            self.tail = spare_tail(TAIL_INITIAL);
        }
        let before = self.tail.len();
        let frame = frame::encode_json(msg, &mut self.tail, max_frame)?;
        if let Err(e) = self.check_room(frame) {
            self.tail.truncate(before);
            return Err(e);
        }
        Ok(self.account(frame))
    }

    /// Queues a payload that is already JSON text, with its header. Small payloads are copied
    /// into the tail buffer; large ones are queued as they are, without copying.
    #[inline]
    pub fn push_payload(
        &mut self,
        payload: Bytes,
        max_frame: usize,
    ) -> Result<Pressure, SendError> {
        let frame = HEADER_LEN + payload.len();
        self.check_room(frame)?;
        if self.tail.capacity() == 0 {
            // A large payload is queued as its own segment; only its header goes in the tail,
            // and many headers share one allocation.
            let copied = if payload.len() <= COPY_MAX {
                frame
            } else {
                HEADER_LEN
            };
            self.tail = spare_tail(TAIL_INITIAL.max(copied));
        }
        frame::encode_header(payload.len(), &mut self.tail, max_frame)?;
        if payload.len() <= COPY_MAX {
            self.tail.extend_from_slice(&payload);
        } else {
            // Everything already in the tail goes first, so freeze it into a segment.
            self.segments.push_back(self.tail.split().freeze());
            self.segments.push_back(payload);
        }
        Ok(self.account(frame))
    }

    #[inline]
    fn check_room(&self, frame: usize) -> Result<(), SendError> {
        if self.figures.queued + frame > self.marks.limit {
            return Err(SendError::QueueFull {
                queued: self.figures.queued,
                frame,
                limit: self.marks.limit,
            });
        }
        Ok(())
    }

    #[inline]
    fn account(&mut self, frame: usize) -> Pressure {
        let f = &mut self.figures;
        f.queued += frame;
        f.frames += 1;
        f.bytes_queued += frame as u64;
        f.peak = f.peak.max(f.queued);
        if !self.above_high && f.queued >= self.marks.high {
            self.above_high = true;
            f.high_water_crossings += 1;
        }
        self.pressure()
    }

    /// One `writev` of as many queued frames as fit in 64 slices. Returns the bytes the
    /// kernel took and the bytes offered (fewer taken than offered: the kernel's buffer is
    /// full); `WouldBlock` and other errors come back unchanged and consume nothing. Writing
    /// an empty queue writes nothing and returns `(0, 0)`. (The reactor itself calls
    /// [`WriteQueue::write_to_max`]; this is the uncapped form, for tests and benches.)
    #[cfg(any(test, feature = "internals"))]
    pub fn write_to<W: Write>(&mut self, w: &mut W) -> io::Result<(usize, usize)> {
        self.write_to_max(w, usize::MAX)
    }

    /// Like `WriteQueue::write_to`, offering at most `max_bytes` (at least 1) in the call:
    /// the slice that would pass it is cut short, the rest waits for the next call. Used when
    /// the socket's send buffer is small (`Config::send_buffer_size`): see `conn/write.rs`.
    pub fn write_to_max<W: Write>(
        &mut self,
        w: &mut W,
        max_bytes: usize,
    ) -> io::Result<(usize, usize)> {
        if self.is_empty() {
            return Ok((0, 0));
        }
        let mut iov = [IoSlice::new(&[]); MAX_IOVECS];
        let mut n = 0;
        let mut room = max_bytes.max(1);
        for seg in &self.segments {
            if n == MAX_IOVECS || room == 0 {
                break;
            }
            let take = seg.len().min(room);
            iov[n] = IoSlice::new(&seg[..take]);
            room -= take;
            n += 1;
        }
        // The tail follows the segments on the wire, so it may only join a call that carries
        // every segment, whole.
        if n == self.segments.len() && n < MAX_IOVECS && room > 0 && !self.tail.is_empty() {
            let take = self.tail.len().min(room);
            iov[n] = IoSlice::new(&self.tail[..take]);
            n += 1;
        }
        let offered = iov[..n].iter().map(|s| s.len()).sum();
        // One slice (a reply or a turn's replies in the tail, the usual case) goes out with
        // `write`, which on a socket is `send(2)`: it skips the iovec import and the file
        // layer that `writev(2)` goes through (the path the blocking std server takes).
        let written = if n == 1 {
            w.write(&iov[0])?
        } else {
            w.write_vectored(&iov[..n])?
        };
        self.consume(written);
        Ok((written, offered))
    }

    /// Drops `n` bytes from the front after the kernel accepted them.
    fn consume(&mut self, n: usize) {
        let mut left = n;
        while left > 0 {
            match self.segments.front_mut() {
                Some(front) if left >= front.len() => {
                    left -= front.len();
                    self.segments.pop_front();
                }
                Some(front) => {
                    front.advance(left);
                    left = 0;
                }
                None => {
                    self.tail.advance(left);
                    left = 0;
                }
            }
        }
        let f = &mut self.figures;
        f.queued -= n;
        f.bytes_written += n as u64;
        if n > 0 {
            f.writes += 1;
        }
        if f.queued == 0 {
            // Give memory back as soon as the queue is empty: an idle connection should cost
            // its socket and a few hundred bytes of bookkeeping, not its busiest moment.
            retire_tail(std::mem::take(&mut self.tail));
            self.segments = VecDeque::new();
        }
        if self.above_high && f.queued <= self.marks.low {
            self.above_high = false;
            self.drain_pending = true;
            f.drains += 1;
        }
    }

    /// New marks for this queue (per-connection settings). The pressure is judged again at
    /// once against them: a queue now at or above the new high-water mark has crossed it, and
    /// one that was above the old mark and is at or below the new low-water mark has drained
    /// (the producer was told to stop and must hear that it may go on).
    pub fn set_marks(&mut self, marks: Marks) {
        self.marks = marks;
        let f = &mut self.figures;
        if !self.above_high && f.queued >= marks.high {
            self.above_high = true;
            f.high_water_crossings += 1;
        } else if self.above_high && f.queued <= marks.low {
            self.above_high = false;
            self.drain_pending = true;
            f.drains += 1;
        }
    }

    /// True once after each drain (a fall to the low-water mark after a high-water crossing).
    pub fn take_drain(&mut self) -> bool {
        std::mem::take(&mut self.drain_pending)
    }

    /// Discards everything queued (the connection is gone) and frees the memory. Returns the
    /// number of bytes discarded.
    pub fn clear(&mut self) -> usize {
        let dropped = self.figures.queued;
        self.segments = VecDeque::new();
        self.tail = BytesMut::new();
        self.figures.queued = 0;
        self.above_high = false;
        dropped
    }

    /// Bytes of heap this queue holds right now (capacity, not length), for memory figures.
    pub fn heap_bytes(&self) -> usize {
        self.tail.capacity()
            + self.segments.capacity() * std::mem::size_of::<Bytes>()
            + self.segments.iter().map(Bytes::len).sum::<usize>()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const BIG: usize = 1 << 20;

    fn queue(high: usize, low: usize, limit: usize) -> WriteQueue {
        WriteQueue::new(Marks { high, low, limit })
    }

    /// A writer that accepts at most `max` bytes per call, then `WouldBlock` once `budget` runs out.
    struct Trickle {
        out: Vec<u8>,
        max: usize,
        budget: usize,
        calls: usize,
    }

    impl Write for Trickle {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            self.write_vectored(&[IoSlice::new(buf)])
        }
        fn write_vectored(&mut self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
            if self.budget == 0 {
                return Err(io::ErrorKind::WouldBlock.into());
            }
            self.calls += 1;
            let mut take = self.max.min(self.budget);
            let mut n = 0;
            for b in bufs {
                let k = take.min(b.len());
                self.out.extend_from_slice(&b[..k]);
                n += k;
                take -= k;
            }
            self.budget -= n;
            Ok(n)
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    fn trickle(max: usize, budget: usize) -> Trickle {
        Trickle {
            out: Vec::new(),
            max,
            budget,
            calls: 0,
        }
    }

    #[test]
    fn frames_leave_in_order_across_partial_writes() {
        let mut q = queue(BIG, 0, BIG);
        let big = Bytes::from(format!("\"{}\"", "y".repeat(COPY_MAX * 2)));
        let _ = q.push_json(&json!(1), BIG).unwrap();
        let _ = q.push_payload(big.clone(), BIG).unwrap(); // a zero-copy segment
        let _ = q.push_json(&json!([2]), BIG).unwrap();
        let total = q.len();
        let mut w = trickle(7, usize::MAX);
        let (written, offered) = q.write_to(&mut w).unwrap();
        assert_eq!(
            (written, offered),
            (7, total),
            "a short write reports what was offered"
        );
        while !q.is_empty() {
            q.write_to(&mut w).unwrap();
        }
        let mut expect = BytesMut::new();
        frame::encode_json(&json!(1), &mut expect, BIG).unwrap();
        frame::encode_header(big.len(), &mut expect, BIG).unwrap();
        expect.extend_from_slice(&big);
        frame::encode_json(&json!([2]), &mut expect, BIG).unwrap();
        assert_eq!(w.out, &expect[..]);
        assert_eq!(q.figures().bytes_written, total as u64);
    }

    #[test]
    fn many_small_frames_go_out_in_one_writev() {
        let mut q = queue(BIG, 0, BIG);
        for i in 0..1000 {
            let _ = q.push_json(&json!(i), BIG).unwrap();
        }
        let mut w = trickle(usize::MAX, usize::MAX);
        q.write_to(&mut w).unwrap();
        assert!(q.is_empty());
        assert_eq!(w.calls, 1);
    }

    #[test]
    fn large_payloads_are_queued_without_copying() {
        let mut q = queue(BIG, 0, BIG);
        let big = Bytes::from(vec![b'7'; COPY_MAX + 1]);
        let _ = q.push_payload(big.clone(), BIG).unwrap();
        assert!(q.segments.iter().any(|s| s.as_ptr() == big.as_ptr()));
    }

    #[test]
    fn pressure_turns_high_at_the_mark_and_clears_only_at_low_water() {
        // Each `1` frame is 5 bytes on the wire.
        let mut q = queue(20, 5, 100);
        for _ in 0..3 {
            assert_eq!(q.push_json(&1, BIG).unwrap(), Pressure::Clear);
        }
        assert_eq!(q.push_json(&1, BIG).unwrap(), Pressure::High); // 20 bytes
        assert_eq!(q.figures().high_water_crossings, 1);

        let mut w = trickle(5, 10); // the kernel takes 10 bytes: 10 left, still above low
        while q.write_to(&mut w).is_ok() {}
        assert_eq!(q.len(), 10);
        assert_eq!(q.pressure(), Pressure::High, "hysteresis: 10 > low-water 5");
        assert!(!q.take_drain());

        let mut w = trickle(5, 5); // 5 left: that is the low-water mark
        while q.write_to(&mut w).is_ok() {}
        assert_eq!(q.pressure(), Pressure::Clear);
        assert!(q.take_drain());
        assert!(!q.take_drain(), "a drain is reported once");
        assert_eq!(q.figures().drains, 1);
    }

    #[test]
    fn a_push_past_the_limit_is_refused_whole() {
        let mut q = queue(10, 0, 12);
        let _ = q.push_json(&"abcd", BIG).unwrap(); // 10 bytes
        let err = q.push_json(&1, BIG).unwrap_err(); // 5 more would be 15 > 12
        assert!(matches!(
            err,
            SendError::QueueFull {
                queued: 10,
                frame: 5,
                limit: 12
            }
        ));
        assert_eq!(q.len(), 10);
        let err = q.push_payload(Bytes::from_static(b"123"), BIG).unwrap_err();
        assert!(matches!(err, SendError::QueueFull { .. }));
        let mut w = trickle(usize::MAX, usize::MAX);
        q.write_to(&mut w).unwrap();
        assert_eq!(w.out, b"\x00\x00\x00\x06\"abcd\"");
    }

    #[test]
    fn empty_payloads_are_refused() {
        let mut q = queue(10, 0, 100);
        assert!(matches!(
            q.push_payload(Bytes::new(), BIG),
            Err(SendError::Encode(EncodeError::Empty))
        ));
        assert!(q.is_empty());
    }

    #[test]
    fn would_block_consumes_nothing() {
        let mut q = queue(BIG, 0, BIG);
        let _ = q.push_json(&json!({"a": 1}), BIG).unwrap();
        let before = q.len();
        let mut w = trickle(1, 0);
        let err = q.write_to(&mut w).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::WouldBlock);
        assert_eq!(q.len(), before);
    }

    #[test]
    fn memory_is_released_when_the_queue_empties() {
        let mut q = queue(BIG, 0, BIG);
        let _ = q.push_json(&"z".repeat(10_000), BIG).unwrap();
        assert!(q.heap_bytes() >= 10_000);
        let mut w = trickle(usize::MAX, usize::MAX);
        q.write_to(&mut w).unwrap();
        assert_eq!(q.heap_bytes(), 0);
    }

    #[test]
    fn more_segments_than_iovecs_take_several_writes_in_order() {
        let mut q = queue(BIG * 8, 0, BIG * 8);
        let mut expect = Vec::new();
        for i in 0..(MAX_IOVECS * 2) {
            let p = Bytes::from(format!("\"{}{}\"", i, "q".repeat(COPY_MAX)));
            expect.extend_from_slice(&u32::try_from(p.len()).unwrap().to_be_bytes());
            expect.extend_from_slice(&p);
            let _ = q.push_payload(p, BIG).unwrap();
        }
        let mut w = trickle(usize::MAX, usize::MAX);
        while !q.is_empty() {
            q.write_to(&mut w).unwrap();
        }
        assert!(w.calls >= 2);
        assert_eq!(w.out, expect);
    }

    /// Takes everything, and records what each call offered.
    #[derive(Default)]
    struct Offers {
        out: Vec<u8>,
        offered: Vec<usize>,
    }

    impl Write for Offers {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            self.write_vectored(&[IoSlice::new(buf)])
        }
        fn write_vectored(&mut self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
            let n = bufs.iter().map(|b| b.len()).sum();
            self.offered.push(n);
            for b in bufs {
                self.out.extend_from_slice(b);
            }
            Ok(n)
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    /// Records which call each write came through: `write` (`send(2)` on a socket) or
    /// `write_vectored` (`writev(2)`).
    #[derive(Default)]
    struct Calls(Vec<&'static str>);

    impl Write for Calls {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            self.0.push("write");
            Ok(buf.len())
        }
        fn write_vectored(&mut self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
            self.0.push("write_vectored");
            Ok(bufs.iter().map(|b| b.len()).sum())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn one_slice_goes_out_with_write_and_several_with_write_vectored() {
        let mut q = queue(BIG, 0, BIG);
        let mut w = Calls::default();
        let _ = q.push_payload(Bytes::from_static(b"{}"), BIG).unwrap();
        let _ = q.push_payload(Bytes::from_static(b"[]"), BIG).unwrap();
        assert_eq!(q.write_to_max(&mut w, BIG).unwrap(), (12, 12));
        let big = Bytes::from(vec![b'1'; COPY_MAX + 1]);
        let _ = q.push_payload(big, BIG).unwrap(); // a header in the tail, then a segment
        assert_eq!(q.write_to_max(&mut w, BIG).unwrap().0, COPY_MAX + 5);
        assert_eq!(w.0, ["write", "write_vectored"]);
        assert!(q.is_empty());
    }

    #[test]
    fn a_capped_write_cuts_the_slice_that_would_pass_the_cap_and_keeps_the_order() {
        let mut q = queue(BIG, 0, BIG);
        let mut expect = BytesMut::new();
        for tag in ["a", "b"] {
            // Zero-copy segments, then small frames in the tail.
            let p = Bytes::from(format!("\"{}\"", tag.repeat(COPY_MAX * 2)));
            frame::encode_header(p.len(), &mut expect, BIG).unwrap();
            expect.extend_from_slice(&p);
            let _ = q.push_payload(p, BIG).unwrap();
        }
        for i in 0..100 {
            frame::encode_json(&json!(i), &mut expect, BIG).unwrap();
            let _ = q.push_json(&json!(i), BIG).unwrap();
        }
        let total = q.len();
        let cap = 5000;
        let mut w = Offers::default();
        while !q.is_empty() {
            let (written, offered) = q.write_to_max(&mut w, cap).unwrap();
            assert_eq!(written, offered);
        }
        let mut want = vec![cap; total / cap];
        if total % cap > 0 {
            want.push(total % cap);
        }
        assert_eq!(
            w.offered, want,
            "every call but the last offers exactly the cap"
        );
        assert_eq!(w.out, &expect[..]);
        assert_eq!(q.figures().bytes_written, total as u64);
    }
}
