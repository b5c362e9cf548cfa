//! The hot paths do not allocate per frame: a counting global allocator watches the write
//! queue and the decoder while thousands of frames go through.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};

use bytes::{Bytes, BytesMut};
use highwater::frame::Decoder;
use highwater::internals::{Marks, WriteQueue};
use highwater::{Decode, RawJson};

struct Counting;

static ALLOCATIONS: AtomicUsize = AtomicUsize::new(0);

// SAFETY: defers every operation to the system allocator unchanged; it only counts.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: same contract as the caller's.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: same contract as the caller's.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: same contract as the caller's.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// Allocations made by `f` (this test file runs its tests one at a time: see `main` below).
fn allocations(f: impl FnOnce()) -> usize {
    let before = ALLOCATIONS.load(Ordering::SeqCst);
    f();
    ALLOCATIONS.load(Ordering::SeqCst) - before
}

struct Sink(usize);

impl std::io::Write for Sink {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0 += buf.len();
        Ok(buf.len())
    }
    fn write_vectored(&mut self, bufs: &[std::io::IoSlice<'_>]) -> std::io::Result<usize> {
        let n = bufs.iter().map(|b| b.len()).sum();
        self.0 += n;
        Ok(n)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn queue() -> WriteQueue {
    WriteQueue::new(Marks {
        high: 1 << 30,
        low: 0,
        limit: 1 << 31,
    })
}

fn small_frames_serialized_in_place_allocate_only_as_the_buffer_grows() {
    let msg = serde_json::json!({"id": 12345, "ok": true, "name": "small"});
    let mut q = queue();
    let n = allocations(|| {
        for _ in 0..10_000 {
            let _ = q.push_json(&msg, 1 << 20).unwrap();
        }
    });
    // 10,000 frames of ~40 bytes: ~400 KB, reached by doubling from 8 KiB.
    assert!(n <= 12, "{n} allocations for 10,000 frames");
    let n = allocations(|| {
        q.write_to(&mut Sink(0)).unwrap();
    });
    assert_eq!(n, 0, "writing allocates nothing");
}

fn large_payloads_are_queued_without_a_copy_or_an_allocation_each() {
    let payload = Bytes::from(vec![b'7'; 60_000]);
    let mut q = queue();
    let n = allocations(|| {
        for _ in 0..1_000 {
            let _ = q.push_payload(payload.clone(), 1 << 20).unwrap();
        }
    });
    // The headers share the tail buffer (a few allocations as it is frozen and regrown, plus
    // the segment deque's growth), never one per frame.
    assert!(n <= 40, "{n} allocations for 1,000 large frames");
}

fn decoding_a_stream_of_frames_allocates_nothing_per_frame() {
    let mut wire = BytesMut::new();
    for i in 0..10_000 {
        highwater::frame::encode_json(&serde_json::json!({"i": i}), &mut wire, 1 << 20).unwrap();
    }
    let mut d = Decoder::new(1 << 20);
    let mut count = 0;
    let n = allocations(|| {
        while let Some(p) = d.decode(&mut wire).unwrap() {
            let raw = RawJson::decode(p).unwrap();
            count += raw.len();
        }
    });
    assert!(count > 0);
    // Splitting the first frame turns the buffer into a shared one: one allocation, once.
    assert!(n <= 1, "{n} allocations decoding 10,000 frames");
}

fn main() {
    // One at a time and on the main thread, so no other test's allocations are counted.
    small_frames_serialized_in_place_allocate_only_as_the_buffer_grows();
    large_payloads_are_queued_without_a_copy_or_an_allocation_each();
    decoding_a_stream_of_frames_allocates_nothing_per_frame();
    println!("allocations: 3 checks passed");
}
