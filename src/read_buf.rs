//! A connection's read buffer, and the one number `BytesMut` does not tell: how large the
//! allocation behind it is.
//!
//! Payloads are cut out of the read buffer without copying (`split_to` + `freeze`): a payload
//! is a reference-counted view into the buffer's allocation, and it keeps the *whole*
//! allocation alive for as long as it lives. That is the right trade for a 58 KB frame read
//! into a 64 KB buffer. It is the wrong one for a 9 KB frame that happened to arrive in the
//! tail of an 8 MB buffer grown for the frame before it: queued for an echo, that 9 KB slice
//! pins 8 MB while the write queue counts 9 KB, and a peer that repeats the pattern makes the
//! server hold gigabytes its budgets never see.
//!
//! So this type tracks the allocation size exactly (it makes every allocation itself, instead
//! of letting `BytesMut::reserve` grow the buffer by doubling), and [`ReadBuf::take`] copies a
//! payload out when it fills less than 7/8 of the allocation. A queued payload therefore keeps
//! alive at most 8/7 of what the queue is charged for it, and usually exactly that.
//!
//! Invariant: `alloc` is the size of the allocation `bytes` points into (0 for none), so
//! `bytes.capacity() <= alloc`.

use std::ops::Deref;

use bytes::{Bytes, BytesMut};

use crate::frame::FrameAt;

/// Payloads up to this size are always handed out as views. They are cheap to pin (a small
/// payload is rarely kept: decoded and dropped, or copied into a write queue's tail buffer,
/// whose own copy threshold this matches), and copying each would cost an allocation per
/// message on the hot path.
pub(crate) const VIEW_ALWAYS: usize = 8 * 1024;

/// A read buffer and the size of its allocation. Derefs to the bytes for reading; grows only
/// through [`ReadBuf::make_room`].
#[derive(Debug, Default)]
pub(crate) struct ReadBuf {
    bytes: BytesMut,
    alloc: usize,
}

impl Deref for ReadBuf {
    type Target = BytesMut;

    fn deref(&self) -> &BytesMut {
        &self.bytes
    }
}

impl ReadBuf {
    /// An empty buffer over a fresh allocation of exactly `size` bytes.
    #[cfg(test)]
    pub(crate) fn with_capacity(size: usize) -> ReadBuf {
        let bytes = BytesMut::with_capacity(size);
        ReadBuf {
            alloc: bytes.capacity(),
            bytes,
        }
    }

    /// The size of the allocation this buffer keeps alive (and so its cost, whatever its
    /// length): 0 once given back.
    pub(crate) fn alloc(&self) -> usize {
        self.alloc
    }

    /// The bytes, for the decoder and `recv` to work on. Growing through this (`reserve`)
    /// would defeat the allocation count; use [`ReadBuf::make_room`].
    pub(crate) fn bytes_mut(&mut self) -> &mut BytesMut {
        &mut self.bytes
    }

    /// Forgets the content, keeping the allocation.
    pub(crate) fn clear(&mut self) {
        self.bytes.clear();
    }

    /// Forgets the content and, if no payload still points into the allocation, makes all of
    /// it spare room again, without allocating. Returns whether it could.
    ///
    /// Payloads are cut off the front (`split_to`), so each one moves the buffer's start
    /// forward and `clear` alone never gives those bytes back: a buffer that went through
    /// 32 KiB of small frames has 32 KiB of room left, however long ago the frames died.
    pub(crate) fn reclaim(&mut self) -> bool {
        self.bytes.clear();
        self.alloc > 0 && self.bytes.try_reclaim(self.alloc)
    }

    /// Makes at least `wanted` bytes of spare room, if there is less than half that.
    ///
    /// First the cheap way: when no payload still points into the allocation, `try_reclaim`
    /// moves the unread bytes to its front, without allocating. That is kept to ordinary
    /// read-chunk allocations (`keep_max`): an allocation grown for one huge frame is not
    /// reused for the small frames after it, it is released. Otherwise a fresh allocation of
    /// exactly what is needed, and the unread bytes (part of one frame at most, since whole
    /// frames were delivered before reading more) are copied into it.
    ///
    /// Returns true if it allocated.
    pub(crate) fn make_room(&mut self, wanted: usize, keep_max: usize) -> bool {
        let spare = self.bytes.capacity() - self.bytes.len();
        if spare >= wanted / 2 {
            return false;
        }
        if self.alloc <= keep_max
            && self.alloc >= self.bytes.len() + wanted
            && self.bytes.try_reclaim(wanted)
        {
            return false;
        }
        let mut fresh = BytesMut::with_capacity(self.bytes.len() + wanted);
        fresh.extend_from_slice(&self.bytes);
        self.alloc = fresh.capacity();
        self.bytes = fresh;
        true
    }

    /// The allocation [`ReadBuf::make_room`] would make for `wanted`, or `None` if it would
    /// reuse the one it has.
    pub(crate) fn room_needed(&self, wanted: usize, keep_max: usize) -> Option<usize> {
        let spare = self.bytes.capacity() - self.bytes.len();
        if spare >= wanted / 2
            || (self.alloc <= keep_max && self.alloc >= self.bytes.len() + wanted)
        {
            return None;
        }
        Some(self.bytes.len() + wanted)
    }

    /// Cuts the frame at the front off (`at`: its payload, after `at.header` bytes of header)
    /// and returns the payload: a view into the allocation when the payload fills at least 7/8
    /// of it (or is small, see [`VIEW_ALWAYS`]), else a copy. So a view keeps alive at most 8/7
    /// of what a queue is charged for it. In practice a large frame gets an allocation of its
    /// own size (`make_room`) and stays a view; a mid-sized one that shares a read chunk with
    /// its neighbours is copied, one `memcpy` of under 64 KiB.
    #[inline]
    pub(crate) fn take(&mut self, at: FrameAt) -> Bytes {
        let FrameAt { header, len } = at;
        if len > VIEW_ALWAYS && len.saturating_mul(8) < self.alloc.saturating_mul(7) {
            let copy = Bytes::copy_from_slice(&self.bytes[header..header + len]);
            bytes::Buf::advance(&mut self.bytes, header + len);
            copy
        } else {
            at.split_payload(&mut self.bytes)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A payload of `len` at the front, its header already consumed.
    fn payload(len: usize) -> FrameAt {
        FrameAt { header: 0, len }
    }

    #[test]
    fn a_fresh_buffer_knows_its_allocation() {
        let b = ReadBuf::with_capacity(1000);
        assert_eq!(b.alloc(), 1000);
        assert!(b.is_empty());
    }

    #[test]
    fn growing_allocates_exactly_and_keeps_the_unread_bytes() {
        let mut b = ReadBuf::with_capacity(16);
        b.bytes_mut().extend_from_slice(b"0123456789");
        assert!(b.make_room(1000, 64));
        assert_eq!(&b[..], b"0123456789");
        assert_eq!(b.alloc(), 1010, "len + wanted, no doubling");
        assert!(!b.make_room(1000, 64), "room enough: nothing to do");
    }

    #[test]
    fn a_small_slice_of_a_big_allocation_is_copied_out() {
        let mut b = ReadBuf::with_capacity(1 << 20);
        b.bytes_mut().resize(VIEW_ALWAYS + 1, b'a');
        let p = b.take(payload(VIEW_ALWAYS + 1));
        assert_eq!(p.len(), VIEW_ALWAYS + 1);
        // A copy has its own allocation: the buffer's is free to be reclaimed at once.
        assert!(b.bytes_mut().try_reclaim(1 << 20));
    }

    #[test]
    fn a_payload_that_fills_most_of_its_allocation_is_a_view() {
        let mut b = ReadBuf::with_capacity(100_000);
        b.bytes_mut().resize(90_000, b'a');
        let p = b.take(payload(90_000));
        // A view shares the allocation: it cannot be reclaimed while the payload lives.
        assert!(!b.bytes_mut().try_reclaim(100_000));
        drop(p);
        assert!(b.bytes_mut().try_reclaim(100_000));
    }

    #[test]
    fn a_frame_just_over_half_its_read_chunk_is_copied() {
        // The attack that found the old "half" rule too loose: a 65,540-byte payload that
        // straddled reads, in a 131,068-byte allocation, pinned twice its charge.
        let mut b = ReadBuf::with_capacity(131_068);
        b.bytes_mut().resize(65_540, b'a');
        let p = b.take(payload(65_540));
        assert!(
            b.bytes_mut().try_reclaim(131_068),
            "a copy: the allocation is free"
        );
        drop(p);
    }

    #[test]
    fn small_payloads_are_views_whatever_the_allocation() {
        let mut b = ReadBuf::with_capacity(1 << 20);
        b.bytes_mut().extend_from_slice(b"{}");
        let p = b.take(payload(2));
        assert!(!b.bytes_mut().try_reclaim(1 << 20));
        drop(p);
    }

    #[test]
    fn an_allocation_grown_for_a_huge_frame_is_not_reused_for_small_reads() {
        let mut b = ReadBuf::with_capacity(8 << 20);
        b.bytes_mut().resize(8 << 20, b'x');
        drop(b.take(payload(8 << 20)));
        // Empty now, and reclaimable, but far larger than a read chunk: released.
        assert!(b.make_room(64 * 1024, 128 * 1024));
        assert_eq!(b.alloc(), 64 * 1024);
    }
}
