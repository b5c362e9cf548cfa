//! Read buffers, lent to connections while they read and taken back when they are empty.
//!
//! A connection needs a read buffer only while bytes are arriving or a frame is incomplete.
//! Ten thousand idle connections should not hold ten thousand 64 KiB buffers, so a
//! connection that has read everything (its buffer empty, its socket `WouldBlock`) gives the
//! buffer back here, and the next connection with bytes to read takes it.
//!
//! Invariant: the pool holds at most [`POOL_MAX`] buffers, each empty.

use bytes::BytesMut;

use crate::conn::READ_CHUNK;

/// Buffers kept for reuse; enough for every connection that is busy in one turn on a small
/// server, and a bounded amount of memory (`POOL_MAX * READ_CHUNK`, 4 MiB) on any server.
const POOL_MAX: usize = 64;

/// Buffers smaller than this are not worth keeping (most of the allocation went out with
/// frames that are still alive elsewhere).
const KEEP_MIN: usize = READ_CHUNK / 2;

/// A free list of empty read buffers.
#[derive(Debug, Default)]
pub(crate) struct BufPool {
    free: Vec<BytesMut>,
}

impl BufPool {
    /// A buffer to read into: a pooled one if there is one, else an empty one (which
    /// allocates on its first read).
    pub(crate) fn take(&mut self) -> BytesMut {
        self.free.pop().unwrap_or_default()
    }

    /// Takes a buffer back. Buffers with content, too small, or beyond the pool's size are
    /// simply dropped (freed).
    pub(crate) fn put(&mut self, mut buf: BytesMut) {
        if buf.capacity() < KEEP_MIN || self.free.len() >= POOL_MAX {
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
        p.put(BytesMut::with_capacity(16));
        assert_eq!(p.len(), 0);
        let mut b = BytesMut::with_capacity(READ_CHUNK);
        b.extend_from_slice(b"stale");
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
            p.put(BytesMut::with_capacity(READ_CHUNK));
        }
        assert_eq!(p.len(), POOL_MAX);
    }
}
