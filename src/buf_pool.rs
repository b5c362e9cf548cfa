//! Read buffers, lent to connections while they read and taken back when they are empty.
//!
//! A connection needs a read buffer only while bytes are arriving or a frame is incomplete.
//! Ten thousand idle connections should not hold ten thousand 64 KiB buffers, so a
//! connection that has read everything (its buffer empty, its socket `WouldBlock`) gives the
//! buffer back here, and the next connection with bytes to read takes it.
//!
//! Invariant: the pool holds at most [`POOL_MAX`] buffers, each empty and each an allocation
//! of at most [`READ_ALLOC_KEEP`] bytes, so it never holds more than 8 MiB. A buffer grown for
//! a large frame is not worth keeping: it is freed, and the next reader starts small.
//!
//! A buffer comes back with its front used up: every payload cut from it (`split_to`) moved
//! its start forward. [`BufPool::put`] reclaims that room when no payload points into the
//! allocation any more (the usual case: small payloads are decoded or copied into a write
//! queue and dropped within the turn). Without it, a buffer was dropped as "too small" once
//! its reads had used up half of it, and steady small-frame traffic allocated and freed one
//! 64 KiB buffer per 32 KiB received: with glibc, a `madvise` (or `brk`) pair each time.

use crate::conn::{READ_ALLOC_KEEP, READ_CHUNK};
use crate::read_buf::ReadBuf;

/// Buffers kept for reuse; enough for every connection that is busy in one turn on a small
/// server, and a bounded amount of memory (`POOL_MAX * READ_ALLOC_KEEP`) on any server.
const POOL_MAX: usize = 64;

/// Buffers smaller than this are not worth keeping (most of the allocation went out with
/// frames that are still alive elsewhere).
const KEEP_MIN: usize = READ_CHUNK / 2;

/// A free list of empty read buffers.
#[derive(Debug, Default)]
pub(crate) struct BufPool {
    free: Vec<ReadBuf>,
}

impl BufPool {
    /// A buffer to read into: a pooled one if there is one, else an empty one (which
    /// allocates on its first read).
    pub(crate) fn take(&mut self) -> ReadBuf {
        self.free.pop().unwrap_or_default()
    }

    /// Takes a buffer back, its content forgotten and its used-up front reclaimed if no
    /// payload still shares it. Buffers too large, beyond the pool's size, or with less than
    /// [`KEEP_MIN`] room even after that, are simply dropped (freed).
    pub(crate) fn put(&mut self, mut buf: ReadBuf) {
        if buf.alloc() > READ_ALLOC_KEEP || self.free.len() >= POOL_MAX {
            return;
        }
        // A buffer still shared with a payload keeps the room it has left.
        let _ = buf.reclaim();
        if buf.capacity() < KEEP_MIN {
            return;
        }
        self.free.push(buf);
    }

    /// Buffers waiting in the pool.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.free.len()
    }
}

/// Puts between two trims of a [`Spares`] list.
const TRIM_EVERY: u32 = 1024;

/// A free list whose bound follows demand, up to a hard maximum.
///
/// For buffers whose number in use at once is the number of connections busy in a turn
/// (the write queues' tail buffers, lent from the first reply to the flush that empties the
/// queue), which no fixed bound fits: 64 is too few for 2,000 busy connections, and 2,000
/// kept for a server that has 20 busy ones is memory held for nothing. The bound grows by one
/// each time a taker finds the list empty, and every [`TRIM_EVERY`] puts it drops half of the
/// spares that were never taken in that stretch (the list's lowest length). So a steady load
/// keeps about what it uses at once, a burst's extra spares are freed within a few thousand
/// puts, and the list never holds more than `max`.
#[derive(Debug)]
pub(crate) struct Spares<T> {
    free: Vec<T>,
    bound: usize,
    max: usize,
    /// The list's lowest length since the last trim: spares nobody needed.
    unused: usize,
    puts: u32,
}

impl<T> Spares<T> {
    /// An empty list that will keep at most `max` items.
    pub(crate) const fn new(max: usize) -> Spares<T> {
        Spares {
            free: Vec::new(),
            bound: 0,
            max,
            unused: 0,
            puts: 0,
        }
    }

    /// A spare, or `None` (and room for one more next time).
    pub(crate) fn take(&mut self) -> Option<T> {
        let item = self.free.pop();
        if item.is_none() {
            self.bound = (self.bound + 1).min(self.max);
        }
        self.unused = self.unused.min(self.free.len());
        item
    }

    /// Keeps `item` if the list is below its bound; else drops it.
    pub(crate) fn put(&mut self, item: T) {
        self.puts += 1;
        if self.puts >= TRIM_EVERY {
            self.puts = 0;
            self.bound -= self.unused / 2;
            self.free.truncate(self.bound);
            self.unused = self.free.len();
        }
        if self.free.len() < self.bound {
            self.free.push(item);
        }
    }

    /// Items waiting in the list.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.free.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pool_keeps_big_empty_buffers_and_drops_small_ones() {
        let mut p = BufPool::default();
        p.put(ReadBuf::with_capacity(16));
        assert_eq!(p.len(), 0);
        p.put(ReadBuf::with_capacity(8 << 20));
        assert_eq!(
            p.len(),
            0,
            "a buffer grown for a large frame is freed, not kept"
        );
        let mut b = ReadBuf::with_capacity(READ_CHUNK);
        b.bytes_mut().extend_from_slice(b"stale");
        p.put(b);
        assert_eq!(p.len(), 1);
        let b = p.take();
        assert!(b.is_empty(), "pooled buffers come back empty");
        assert!(b.capacity() >= READ_CHUNK);
    }

    #[test]
    fn a_buffer_whose_front_was_cut_into_payloads_comes_back_whole() {
        let mut p = BufPool::default();
        let mut b = ReadBuf::with_capacity(READ_CHUNK);
        b.bytes_mut().resize(READ_CHUNK - 100, b'x');
        drop(b.take(crate::frame::FrameAt {
            header: 0,
            len: READ_CHUNK - 100,
        }));
        assert!(
            b.capacity() < KEEP_MIN,
            "the payload took the front with it"
        );
        p.put(b);
        assert_eq!(p.len(), 1, "kept: nothing points into it any more");
        assert_eq!(p.take().capacity(), READ_CHUNK, "all of it is room again");
    }

    #[test]
    fn a_buffer_still_shared_with_a_payload_is_kept_only_if_it_has_room() {
        let mut p = BufPool::default();
        let mut b = ReadBuf::with_capacity(READ_CHUNK);
        b.bytes_mut().resize(100, b'x');
        let small = b.take(crate::frame::FrameAt {
            header: 0,
            len: 100,
        });
        p.put(b);
        assert_eq!(p.len(), 1, "most of it is still room");
        let mut b = p.take();
        let fill = b.capacity() - 10;
        b.bytes_mut().resize(fill, b'y');
        let big = b.take(crate::frame::FrameAt {
            header: 0,
            len: b.len(),
        });
        p.put(b);
        assert_eq!(
            p.len(),
            0,
            "10 bytes of room, the rest pinned by payloads: freed"
        );
        drop((small, big));
    }

    #[test]
    fn spares_grow_to_the_demand_and_shrink_when_it_falls() {
        let mut s = Spares::new(1000);
        // 300 in use at once, turn after turn: after the first turn, no taker goes without.
        for turn in 0..20 {
            let taken: Vec<Box<u8>> = (0..300).map(|_| s.take().unwrap_or_default()).collect();
            if turn > 0 {
                assert_eq!(s.len(), 0, "every spare was used");
            }
            taken.into_iter().for_each(|b| s.put(b));
            assert_eq!(s.len(), 300, "turn {turn}: all kept");
        }
        // Then 10 at a time: the other 290 spares are freed within a few trims.
        for _ in 0..2000 {
            let taken: Vec<Box<u8>> = (0..10).map(|_| s.take().unwrap_or_default()).collect();
            taken.into_iter().for_each(|b| s.put(b));
        }
        assert!(s.len() <= 20, "{} spares kept for a demand of 10", s.len());
        assert!(s.len() >= 10, "still enough for the demand");
    }

    #[test]
    fn spares_never_exceed_their_maximum() {
        let mut s = Spares::new(5);
        let taken: Vec<u32> = (0..50).map(|i| s.take().unwrap_or(i)).collect();
        taken.into_iter().for_each(|b| s.put(b));
        assert_eq!(s.len(), 5);
    }

    #[test]
    fn pool_is_bounded() {
        let mut p = BufPool::default();
        for _ in 0..POOL_MAX + 10 {
            p.put(ReadBuf::with_capacity(READ_CHUNK));
        }
        assert_eq!(p.len(), POOL_MAX);
    }
}
