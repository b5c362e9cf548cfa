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

    /// Takes a buffer back. Buffers too small, too large, or beyond the pool's size are
    /// simply dropped (freed); content is forgotten.
    pub(crate) fn put(&mut self, mut buf: ReadBuf) {
        if buf.capacity() < KEEP_MIN || buf.alloc() > READ_ALLOC_KEEP || self.free.len() >= POOL_MAX
        {
            return;
        }
        buf.clear();
        self.free.push(buf);
    }

    /// Buffers waiting in the pool.
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
    fn pool_is_bounded() {
        let mut p = BufPool::default();
        for _ in 0..POOL_MAX + 10 {
            p.put(ReadBuf::with_capacity(READ_CHUNK));
        }
        assert_eq!(p.len(), POOL_MAX);
    }
}
