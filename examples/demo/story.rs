//! The demo's summary: what happened, in words, link by link, for the first time the
//! pressure travelled all the way back, and whether every link engaged in order.

use crate::{Board, Sample};

/// Times (seconds) of the first full trip of the pressure, back and forth. `None` where a
/// link never engaged.
struct Trip {
    paused: Option<f64>,
    window_closed: Option<f64>,
    sender_full: Option<f64>,
    /// The first sample that saw the producer stopped (for the order check).
    stalled: Option<f64>,
    /// The Pressure::High that left it stopped, as the handler timed it.
    stopped: Option<f64>,
    resumed_reading: Option<f64>,
    window_reopened: Option<f64>,
    producer_resumed: Option<f64>,
}

fn first_sample(samples: &[Sample], after: f64, pred: impl Fn(&Sample) -> bool) -> Option<f64> {
    samples
        .iter()
        .find(|s| s.t >= after && pred(s))
        .map(|s| s.t)
}

fn first_event(events: &[f64], after: f64) -> Option<f64> {
    events.iter().copied().find(|&t| t >= after)
}

fn trip(samples: &[Sample], b: &Board) -> Trip {
    let paused = b.pauses.first().copied();
    let from = paused.unwrap_or(0.0);
    let window_closed = first_sample(samples, from, |s| s.window == Some(0));
    let sender_full = first_sample(samples, window_closed.unwrap_or(from), |s| {
        s.writable_interest && s.unsent.is_some_and(|n| n > 0)
    });
    // The stop that left the producer waiting: the sampled "stopped" state, timed by the
    // handler's own record of the Pressure::High that caused it.
    let stalled = first_sample(samples, sender_full.unwrap_or(from), |s| !s.generating);
    let stopped = stalled.map(|t| b.stops.iter().copied().rfind(|&s| s <= t).unwrap_or(t));
    let resumed_reading = first_event(&b.resumes, from);
    let producer_resumed = stopped.and_then(|t| first_event(&b.drains, t));
    // Sampling every 25 ms can see the reopened window late; the drain is proof it had
    // reopened (the kernel took bytes), so whichever comes first.
    let window_reopened = window_closed
        .and_then(|t| first_sample(samples, t, |s| s.window.is_some_and(|w| w > 0)))
        .map(|t| producer_resumed.map_or(t, |d| t.min(d)));
    Trip {
        paused,
        window_closed,
        sender_full,
        stalled,
        stopped,
        resumed_reading,
        window_reopened,
        producer_resumed,
    }
}

fn at(t: Option<f64>) -> String {
    t.map_or("   never".into(), |t| format!("t={t:5.2} s"))
}

/// The summary printed at the end of the demo.
pub fn tell(samples: &[Sample], b: &Board, high: usize) -> String {
    let trip = trip(samples, b);
    let mut out =
        String::from("What happened, the first time the pressure went all the way back:\n");
    let lines = [
        (
            trip.paused,
            "the consumer paused to \"process\" and stopped reading",
        ),
        (
            trip.window_closed,
            "unread bytes filled its kernel receive buffer; the window it advertises closed to 0",
        ),
        (
            trip.sender_full,
            "the producer's kernel send buffer filled: writes hit WouldBlock, WRITABLE interest on",
        ),
        (
            trip.stopped,
            "the producer's queue reached high-water: send() said Pressure::High, it stopped",
        ),
        (trip.resumed_reading, "the consumer resumed reading"),
        (trip.window_reopened, "the window reopened"),
        (
            trip.producer_resumed,
            "the queue drained to low-water: on_drain, the producer resumed",
        ),
    ];
    for (t, what) in lines {
        out += &format!("  {}  {what}\n", at(t));
    }
    let order = [
        trip.paused,
        trip.window_closed,
        trip.sender_full,
        trip.stalled,
    ];
    let engaged = lines.iter().all(|(t, _)| t.is_some());
    let in_order = engaged && order.windows(2).all(|w| w[0] <= w[1]);
    out += if in_order {
        "Every link engaged, in order.\n"
    } else if engaged {
        "Every link engaged, though not in the textbook order (sampling is every 25 ms).\n"
    } else {
        "Not every link engaged: with larger kernel buffers (--kernel-buffer) or shorter pauses \
         (--process-ms) the kernel absorbs the pauses before the producer feels them.\n"
    };
    let max_queue = samples.iter().map(|s| s.queue).max().unwrap_or(0);
    let duration = samples.last().map_or(0.0, |s| s.t);
    out += &format!(
        "Over {duration:.1} s: the consumer paused {} times, the producer stopped {} times at its \
         high-water mark and resumed {} times on drain; its queue peaked at {} KiB (high-water {} \
         KiB); {} frames sent, {} confirmed by the consumer; peak RSS {:.1} MiB.",
        b.pauses.len(),
        b.stops.len(),
        b.drains.len(),
        max_queue / 1024,
        high / 1024,
        b.sent,
        b.confirmed.map_or("none".into(), |n| n.to_string()),
        highwater::process_figures().peak_rss_kb.unwrap_or(0) as f64 / 1024.0
    );
    out
}
