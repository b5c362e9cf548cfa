//! The connection's state machine, one transition per test, over a scripted transport
//! (`transport.rs`): every read and write answers exactly as the test says, so short reads,
//! short writes, `WouldBlock` and errors happen where they are wanted, with no socket and no
//! clock but the one passed in.

use std::io;
use std::time::{Duration, Instant};

use bytes::Bytes;
use mio::Interest;

use super::transport::tests::{Script, Step};
use super::*;
use crate::frame::{FrameError, HEADER_LEN};
use crate::reactor::{WRITE_BYTES_PER_TURN, WRITES_PER_TURN};
use crate::write_queue::{Marks, Pressure};

const MARKS: Marks = Marks {
    high: 100,
    low: 10,
    limit: 1000,
};

fn conn(outbound: bool, steps: impl IntoIterator<Item = Step>) -> Connection<Script> {
    Connection::new(
        ConnId::new(3, 7),
        Script::new(steps),
        None,
        outbound,
        Decoder::new(1 << 20),
        &ConnSettings {
            high_water: MARKS.high,
            low_water: MARKS.low,
            queue_limit: MARKS.limit,
            pause_reads_above_high_water: true,
            idle_timeout: None,
            write_timeout: None,
        },
        Instant::now(),
    )
}

fn frame(payload: &str) -> Vec<u8> {
    let mut f = u32::try_from(payload.len()).unwrap().to_be_bytes().to_vec();
    f.extend_from_slice(payload.as_bytes());
    f
}

fn readable() -> Seen {
    Seen {
        readable: true,
        ..Seen::default()
    }
}

fn queue_bytes(c: &mut Connection<Script>, n: usize) -> Pressure {
    let payload = Bytes::from(format!("\"{}\"", "x".repeat(n - HEADER_LEN - 2)));
    c.queue_mut().push_payload(payload, 1 << 20).unwrap()
}

const R: Option<Interest> = Some(Interest::READABLE);
const W: Option<Interest> = Some(Interest::WRITABLE);

// ----- life --------------------------------------------------------------------------

#[test]
fn an_accepted_connection_starts_open_reading_and_writable() {
    let c = conn(false, []);
    assert_eq!(c.state(), ConnState::Open);
    assert_eq!(c.interest(), R);
    assert!(c.accepts_sends() && c.may_deliver() && c.writable() && !c.readable());
}

#[test]
fn an_outbound_connection_starts_connecting_asking_only_for_writable() {
    let c = conn(true, []);
    assert_eq!(c.state(), ConnState::Connecting);
    assert_eq!(
        c.interest(),
        W,
        "the connect's outcome is reported as writable"
    );
    assert!(c.accepts_sends(), "sends are queued while connecting");
    assert!(!c.may_deliver() && !c.writable());
}

#[test]
fn connecting_to_open_when_the_connect_completes() {
    let mut c = conn(true, []);
    let peer = "127.0.0.1:9".parse().unwrap();
    c.connected(peer);
    assert_eq!(c.state(), ConnState::Open);
    assert_eq!(c.peer(), Some(peer));
    assert!(c.writable(), "a connected socket can take bytes");
    assert_eq!(c.interest(), R);
}

#[test]
fn open_to_flushing_stops_reading_and_sends_what_is_queued() {
    let mut c = conn(false, [Step::Read(frame("1")[..2].to_vec())]);
    c.on_event(readable());
    assert!(matches!(c.read_some(READ_CHUNK), ReadOutcome::Data { .. }));
    let _ = queue_bytes(&mut c, 20);
    let buf = c.begin_flushing(CloseReason::Closed);
    assert_eq!(
        buf.len(),
        2,
        "the read buffer is handed back, partial frame and all"
    );
    assert_eq!(c.state(), ConnState::Flushing);
    assert!(!c.accepts_sends() && !c.may_deliver());
    assert_eq!(c.interest(), W, "writing what is queued, reading nothing");
}

#[test]
fn flushing_with_nothing_queued_asks_for_nothing() {
    let mut c = conn(false, []);
    let _ = c.begin_flushing(CloseReason::Closed);
    assert_eq!(c.interest(), None);
}

#[test]
fn flushing_to_lingering_shuts_the_write_side_and_keeps_the_reason() {
    let mut c = conn(false, []);
    let _ = c.begin_flushing(CloseReason::IdleTimeout);
    c.begin_lingering();
    assert_eq!(c.state(), ConnState::Lingering);
    assert!(c.write_shut());
    assert!(c.is_lingering());
    assert_eq!(
        c.interest(),
        R,
        "lingering reads, to discard, until the peer closes"
    );
    assert!(matches!(c.take_close_reason(), CloseReason::IdleTimeout));
}

#[test]
fn lingering_after_the_peer_finished_asks_for_nothing() {
    let mut c = conn(false, [Step::Eof]);
    c.on_event(readable());
    assert!(matches!(c.read_some(READ_CHUNK), ReadOutcome::Eof));
    c.peer_finished();
    let _ = c.begin_flushing(CloseReason::Closed);
    c.begin_lingering();
    assert_eq!(c.interest(), None);
}

#[test]
fn any_state_to_closed_forgets_the_registration_and_reports_what_it_left() {
    let mut c = conn(false, []);
    c.set_registered(R);
    assert_eq!(c.closed(&CloseReason::Closed), ConnState::Open);
    assert_eq!(c.state(), ConnState::Closed);
    assert_eq!(c.registered(), None);
    assert_eq!(c.interest(), None);
    assert!(!c.accepts_sends());
}

#[test]
fn a_turned_away_connection_lingers_unreported_with_fin_sent() {
    let c = conn(false, []).turned_away();
    assert_eq!(c.state(), ConnState::Lingering);
    assert!(!c.reported());
    assert!(c.write_shut());
}

// ----- read side ---------------------------------------------------------------------

#[test]
fn frames_are_cut_out_however_the_bytes_arrive() {
    let bytes = [frame("[1]"), frame("{\"a\":2}")].concat();
    let mut c = conn(false, bytes.iter().map(|b| Step::Read(vec![*b])));
    c.on_event(readable());
    let now = Instant::now();
    let mut got = Vec::new();
    while let ReadOutcome::Data { drained } = c.read_some(READ_CHUNK) {
        assert!(drained, "one byte offered 64 KiB is a short read");
        while let Some(p) = c.next_frame(now).unwrap() {
            got.push(p);
        }
    }
    assert_eq!(got, [Bytes::from("[1]"), Bytes::from("{\"a\":2}")]);
    assert_eq!(c.frames_in(), 2);
    assert_eq!(c.read_buffered(), 0);
}

#[test]
fn a_read_that_fills_the_space_offered_is_not_drained() {
    let mut c = conn(false, [Step::Read(vec![b'x'; 2 * READ_ALLOC_KEEP])]);
    c.on_event(readable());
    assert!(matches!(
        c.read_some(READ_CHUNK),
        ReadOutcome::Data { drained: false }
    ));
}

#[test]
fn would_block_and_errors_come_back_as_outcomes() {
    let mut c = conn(
        false,
        [
            Step::ReadBlock,
            Step::ReadErr(io::ErrorKind::Interrupted),
            Step::Read(b"ab".to_vec()),
            Step::ReadErr(io::ErrorKind::ConnectionReset),
        ],
    );
    assert!(matches!(c.read_some(READ_CHUNK), ReadOutcome::WouldBlock));
    assert!(
        matches!(c.read_some(READ_CHUNK), ReadOutcome::Data { .. }),
        "EINTR is retried, not reported"
    );
    assert!(matches!(
        c.read_some(READ_CHUNK),
        ReadOutcome::Error(e) if e.kind() == io::ErrorKind::ConnectionReset
    ));
}

#[test]
fn open_to_peer_eof_stops_asking_for_readable() {
    let mut c = conn(false, [Step::Eof]);
    c.on_event(readable());
    assert!(matches!(c.read_some(READ_CHUNK), ReadOutcome::Eof));
    c.peer_finished();
    assert!(c.peer_eof() && !c.readable());
    assert_eq!(c.interest(), None);
    assert!(c.truncation().is_none(), "nothing was in progress");
    let _ = queue_bytes(&mut c, 20);
    assert_eq!(c.interest(), W, "a half-closed peer still gets its replies");
}

#[test]
fn an_end_of_stream_inside_a_frame_is_a_truncation() {
    let mut c = conn(
        false,
        [Step::Read(frame("[1,2,3]")[..6].to_vec()), Step::Eof],
    );
    c.on_event(readable());
    assert!(matches!(c.read_some(READ_CHUNK), ReadOutcome::Data { .. }));
    assert_eq!(c.next_frame(Instant::now()).unwrap(), None);
    assert!(matches!(c.read_some(READ_CHUNK), ReadOutcome::Eof));
    c.peer_finished();
    assert_eq!(c.truncation(), Some(FrameError::Truncated { missing: 5 }));
}

#[test]
fn open_to_finishing_assumes_readable_so_a_read_can_prove_it_read_out() {
    let mut c = conn(false, []);
    assert!(!c.has_pending_input());
    assert!(c.short_read_is_read_out());
    assert!(c.finish_reading());
    assert!(c.finishing() && c.readable() && c.has_pending_input());
    assert!(
        !c.short_read_is_read_out(),
        "finishing, only WouldBlock proves there is nothing left"
    );
    assert!(c.finish_reading(), "asking twice changes nothing");
}

#[test]
fn finishing_after_the_peer_finished_has_nothing_to_read() {
    let mut c = conn(false, [Step::Eof]);
    c.on_event(readable());
    let _ = c.read_some(READ_CHUNK);
    c.peer_finished();
    assert!(!c.finish_reading());
    assert!(c.peer_eof() && !c.readable());
}

#[test]
fn a_fin_event_means_a_short_read_proves_nothing() {
    let mut c = conn(false, []);
    c.on_event(Seen {
        readable: true,
        read_closed: true,
        ..Seen::default()
    });
    assert!(!c.short_read_is_read_out());
}

// ----- pauses ------------------------------------------------------------------------

#[test]
fn pause_reasons_combine_and_reading_resumes_when_the_last_goes() {
    let mut c = conn(false, []);
    let t0 = Instant::now();
    assert!(c.pause(PauseReason::Application, t0));
    assert_eq!(c.interest(), None);
    assert!(!c.may_deliver());
    assert!(!c.pause(PauseReason::WriteQueue, t0), "already paused");
    let t1 = t0 + Duration::from_millis(30);
    assert!(
        !c.resume(PauseReason::Application, t1),
        "still paused by the queue"
    );
    assert_eq!(c.paused().to_string(), "paused by WriteQueue");
    assert!(!c.resume(PauseReason::Budget, t1), "not a reason it had");
    let t2 = t0 + Duration::from_millis(50);
    assert!(c.resume(PauseReason::WriteQueue, t2));
    assert_eq!(c.interest(), R);
    assert_eq!(
        c.timing().last_frame_at,
        t2,
        "time paused is not the peer's idleness"
    );
    assert_eq!(
        c.figures_paused_time(t2 + Duration::from_secs(1)),
        Duration::from_millis(50)
    );
}

#[test]
fn a_paused_connection_with_readiness_remembered_has_pending_input_once_resumed() {
    let mut c = conn(false, []);
    let now = Instant::now();
    c.on_event(readable());
    c.pause(PauseReason::Application, now);
    assert!(
        !c.has_pending_input(),
        "paused: the reactor must not come back"
    );
    c.resume(PauseReason::Application, now);
    assert!(
        c.has_pending_input(),
        "resumed with bytes in the kernel: read without an event"
    );
}

// ----- write side --------------------------------------------------------------------

#[test]
fn a_write_queue_asks_for_writable_exactly_while_non_empty() {
    let mut c = conn(false, [Step::Write(usize::MAX)]);
    assert_eq!(c.interest(), R);
    let _ = queue_bytes(&mut c, 20);
    assert_eq!(c.interest(), Some(Interest::READABLE | Interest::WRITABLE));
    let done = c.flush(1, Instant::now());
    assert_eq!(done.written, 20);
    assert_eq!(c.interest(), R);
    assert_eq!(c.transport.sent.len(), 20);
}

#[test]
fn a_short_write_or_would_block_forgets_writability() {
    let mut c = conn(false, [Step::Write(5)]);
    let _ = queue_bytes(&mut c, 20);
    let done = c.flush(1, Instant::now());
    assert_eq!(done.written, 5);
    assert!(!done.carried);
    assert_eq!(c.writable(), !cfg!(target_os = "linux"));
    let mut c = conn(false, [Step::WriteBlock]);
    let _ = queue_bytes(&mut c, 20);
    assert_eq!(c.flush(1, Instant::now()).written, 0);
    assert!(!c.writable());
    assert_eq!(c.interest(), Some(Interest::READABLE | Interest::WRITABLE));
}

#[test]
fn a_fall_to_low_water_after_a_crossing_is_one_drain_and_resumes_reading() {
    let mut c = conn(
        false,
        [Step::Write(60), Step::Write(45), Step::Write(usize::MAX)],
    );
    let now = Instant::now();
    c.on_event(readable());
    assert_eq!(queue_bytes(&mut c, 120), Pressure::High);
    c.pause(PauseReason::WriteQueue, now);
    let writable = Seen {
        writable: true,
        ..Seen::default()
    };
    // 120 → 60: below high-water, above low-water: no drain yet (a short write: wait for
    // the next writable event).
    let done = c.flush(1, now);
    assert_eq!((done.written, done.drained), (60, false));
    assert!(!c.paused().is_empty());
    // 60 → 15: still above low-water.
    c.on_event(writable);
    let done = c.flush(2, now);
    assert_eq!((done.written, done.drained), (45, false));
    // 15 → 0: at or below low-water after the crossing: one drain.
    c.on_event(writable);
    let done = c.flush(3, now);
    assert!(done.drained, "fell to low-water after crossing high-water");
    assert!(
        done.resumed_with_input,
        "the queue was what paused it, and input waits"
    );
    assert!(c.paused().is_empty());
    assert_eq!(c.queue().figures().drains, 1);
    let _ = queue_bytes(&mut c, 20);
    c.transport.push([Step::Write(usize::MAX)]);
    assert!(!c.flush(4, now).drained, "one drain per crossing");
}

#[test]
fn no_drain_without_a_crossing() {
    let mut c = conn(false, [Step::Write(usize::MAX)]);
    assert_eq!(queue_bytes(&mut c, 50), Pressure::Clear);
    assert!(!c.flush(1, Instant::now()).drained);
}

#[test]
fn the_write_budget_carries_a_still_writable_connection_to_the_next_turn() {
    let mut c = conn(false, [Step::Write(usize::MAX)]);
    let _ = queue_bytes(&mut c, 20);
    // This turn's writes are spent (by earlier flushes of the same turn).
    c.share(1).writes = WRITES_PER_TURN;
    let done = c.flush(1, Instant::now());
    assert!(done.carried && done.written == 0);
    assert!(
        c.writable(),
        "still writable: no event will come, so the engine must"
    );
    c.share(2).bytes_written = 0;
    let next = c.flush(2, Instant::now());
    assert!(
        !next.carried && next.written == 20,
        "a new turn, a new budget"
    );
    // The byte budget counts too.
    let _ = queue_bytes(&mut c, 20);
    c.share(3).bytes_written = WRITE_BYTES_PER_TURN;
    assert!(c.flush(3, Instant::now()).carried);
}

#[test]
fn a_write_error_is_reported_for_teardown() {
    let mut c = conn(false, [Step::WriteErr(io::ErrorKind::BrokenPipe)]);
    let _ = queue_bytes(&mut c, 20);
    let done = c.flush(1, Instant::now());
    assert!(matches!(done.failed, Some(e) if e.kind() == io::ErrorKind::BrokenPipe));
}

#[test]
fn open_to_shut_when_flushed_to_shut_sends_fin_after_the_last_byte() {
    let mut c = conn(false, [Step::WriteBlock, Step::Write(usize::MAX)]);
    let _ = queue_bytes(&mut c, 20);
    c.close_write();
    c.flush(1, Instant::now());
    assert!(!c.transport.shut && !c.write_shut(), "bytes still queued");
    c.on_event(Seen {
        writable: true,
        ..Seen::default()
    });
    c.flush(2, Instant::now());
    assert!(c.transport.shut && c.write_shut());
    assert_eq!(c.interest(), R, "a half-close keeps reading");
}

#[test]
fn flushing_reports_close_ready_once_the_queue_is_empty() {
    let mut c = conn(false, [Step::Write(usize::MAX)]);
    let _ = queue_bytes(&mut c, 20);
    let _ = c.begin_flushing(CloseReason::Closed);
    assert!(c.flush(1, Instant::now()).close_ready);
}

#[test]
fn an_event_records_readiness_for_the_read_path() {
    let mut c = conn(false, []);
    c.on_event(Seen {
        error: true,
        ..Seen::default()
    });
    assert!(
        c.readable() && c.writable(),
        "an error is met by the next read or write"
    );
}

impl Connection<Script> {
    fn figures_paused_time(&self, now: Instant) -> Duration {
        self.pauses.time(now)
    }
}

// ----- capped writes (small send buffers) ----------------------------------------------

/// A socket with `room` bytes of send buffer left: records what each write offered, takes
/// what fits (a short write when it fills), then says `WouldBlock`.
#[derive(Debug, Default)]
struct Recorder {
    room: usize,
    offered: Vec<usize>,
    sent: Vec<u8>,
}

impl Transport for Recorder {
    fn recv_into(&mut self, _: &mut bytes::BytesMut) -> io::Result<usize> {
        Err(io::ErrorKind::WouldBlock.into())
    }

    fn shutdown_write(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl io::Write for Recorder {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.write_vectored(&[io::IoSlice::new(buf)])
    }

    fn write_vectored(&mut self, bufs: &[io::IoSlice<'_>]) -> io::Result<usize> {
        if self.room == 0 {
            return Err(io::ErrorKind::WouldBlock.into());
        }
        self.offered.push(bufs.iter().map(|b| b.len()).sum());
        let before = self.sent.len();
        for b in bufs {
            let n = b.len().min(self.room - (self.sent.len() - before));
            self.sent.extend_from_slice(&b[..n]);
        }
        let taken = self.sent.len() - before;
        self.room -= taken;
        Ok(taken)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

fn recorded(room: usize) -> Connection<Recorder> {
    Connection::new(
        ConnId::new(3, 7),
        Recorder {
            room,
            ..Recorder::default()
        },
        None,
        false,
        Decoder::new(1 << 20),
        &ConnSettings {
            high_water: 1 << 20,
            low_water: 0,
            queue_limit: 1 << 21,
            pause_reads_above_high_water: true,
            idle_timeout: None,
            write_timeout: None,
        },
        Instant::now(),
    )
}

/// Three frames of `n` bytes each, and the bytes they make on the wire.
fn queue_three(c: &mut Connection<Recorder>, n: usize) -> Vec<u8> {
    let mut wire = Vec::new();
    for tag in ["a", "b", "c"] {
        let payload = format!("\"{}\"", tag.repeat(n - HEADER_LEN - 2));
        wire.extend_from_slice(&frame(&payload));
        let _ = c
            .queue_mut()
            .push_payload(Bytes::from(payload), 1 << 20)
            .unwrap();
    }
    wire
}

#[test]
fn a_capped_flush_writes_cap_sized_pieces_while_they_are_taken_whole() {
    let mut c = recorded(usize::MAX);
    let wire = queue_three(&mut c, 100); // 300 bytes, one contiguous tail
    let done = c.flush_capped(1, Instant::now(), 64);
    assert_eq!(done.written, 300);
    assert_eq!(c.transport.offered, [64, 64, 64, 64, 44]);
    assert_eq!(c.transport.sent, wire, "in order, nothing lost or repeated");
    assert!(c.writable(), "every write was taken whole: still writable");
    assert_eq!(c.interest(), R);
}

#[test]
fn a_capped_flush_stops_at_the_first_short_write() {
    let mut c = recorded(150); // the send buffer fills after 150 bytes
    let wire = queue_three(&mut c, 100);
    let done = c.flush_capped(1, Instant::now(), 64);
    assert_eq!(done.written, 150);
    assert_eq!(
        c.transport.offered,
        [64, 64, 64],
        "the third was short: stop"
    );
    assert_eq!(c.queue().len(), 150);
    assert!(
        !done.carried,
        "full, not out of budget: WRITABLE brings it back"
    );
    assert_eq!(c.interest(), Some(Interest::READABLE | Interest::WRITABLE));
    // Room again: the rest, still in pieces, and in order.
    c.transport.room = usize::MAX;
    c.on_event(Seen {
        writable: true,
        ..Seen::default()
    });
    c.flush_capped(2, Instant::now(), 64);
    assert_eq!(c.transport.offered[3..], [64, 64, 22]);
    assert_eq!(c.transport.sent, wire);
}

#[test]
fn an_uncapped_flush_offers_the_whole_queue_in_one_write() {
    let mut c = recorded(150);
    let _ = queue_three(&mut c, 100);
    let done = c.flush(1, Instant::now());
    assert_eq!(c.transport.offered, [300]);
    assert_eq!(done.written, 150);
}

#[test]
fn the_write_budget_still_bounds_a_capped_flush() {
    let mut c = recorded(usize::MAX);
    let _ = queue_three(&mut c, 100);
    let done = c.flush_capped(1, Instant::now(), 10);
    assert!(
        done.carried,
        "30 writes wanted, {WRITES_PER_TURN} allowed per turn"
    );
    assert_eq!(c.transport.offered.len(), WRITES_PER_TURN);
    assert_eq!(done.written, 10 * WRITES_PER_TURN);
}

#[test]
fn only_a_small_send_buffer_caps_writes() {
    let config = |send_buffer_size| crate::Config {
        send_buffer_size,
        ..crate::Config::default()
    };
    assert_eq!(config(None).max_write(), usize::MAX, "the default path");
    assert_eq!(
        config(Some(32 * 1024)).max_write(),
        32 * 1024,
        "half the doubled buffer"
    );
    assert_eq!(config(Some(1024)).max_write(), 4 * 1024, "at least 4 KiB");
}
