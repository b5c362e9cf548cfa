//! The demo's summary: what happened, in words, link by link, for the first time the
//! pressure travelled all the way back, and whether every link engaged in order.

use crate::{Board, RelaySample, Sample};

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
    if samples.iter().any(|s| s.relay.is_some()) {
        return tell_via_relay(samples, b, high);
    }
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

/// The same across a hop (`--via-relay`): every link from the consumer back to the producer,
/// through the relay's two connections.
fn tell_via_relay(samples: &[Sample], b: &Board, high: usize) -> String {
    let hop = |s: &Sample| -> RelaySample { s.relay.expect("every sample has the relay's") };
    let paused = b.pauses.first().copied();
    let from = paused.unwrap_or(0.0);
    let consumer_window = first_sample(samples, from, |s| hop(s).upstream_window == Some(0));
    let then = |t: Option<f64>| t.unwrap_or(from);
    let relay_high = first_sample(samples, then(consumer_window), |s| {
        hop(s).upstream_queue >= high
    });
    let link = first_sample(samples, then(relay_high), |s| !hop(s).reading_producer);
    let producer_window = first_sample(samples, then(link), |s| s.window == Some(0));
    let stalled = first_sample(samples, then(producer_window), |s| !s.generating);
    let stopped = stalled.map(|t| b.stops.iter().copied().rfind(|&s| s <= t).unwrap_or(t));
    let resumed = first_event(&b.resumes, from);
    let producer_resumed = stopped.and_then(|t| first_event(&b.drains, t));
    // Sampling every 25 ms can see it late; the producer's drain is proof the relay read
    // again (its bytes were taken), so whichever comes first.
    let relay_reads = link
        .and_then(|t| first_sample(samples, t, |s| hop(s).reading_producer))
        .map(|t| producer_resumed.map_or(t, |d| t.min(d)));
    let lines = [
        (
            paused,
            "the consumer paused to \"process\" and stopped reading",
        ),
        (
            consumer_window,
            "its kernel receive buffer filled: the window it advertises to the relay closed to 0",
        ),
        (
            relay_high,
            "the relay's queue to the consumer reached high-water",
        ),
        (
            link,
            "the relay stopped reading the producer (PauseReason::Link: its sink is above high-water)",
        ),
        (
            producer_window,
            "the relay's kernel receive buffer filled: the window it advertises to the producer closed to 0",
        ),
        (
            stopped,
            "the producer's queue reached high-water: send() said Pressure::High, it stopped",
        ),
        (resumed, "the consumer resumed reading"),
        (
            relay_reads,
            "the relay's queue to the consumer drained to low-water: it reads the producer again",
        ),
        (
            producer_resumed,
            "the producer's queue drained to low-water: on_drain, the producer resumed",
        ),
    ];
    let mut out = String::from(
        "What happened, the first time the pressure went all the way back, across the relay:\n",
    );
    for (t, what) in lines {
        out += &format!("  {}  {what}\n", at(t));
    }
    let order = [
        paused,
        consumer_window,
        relay_high,
        link,
        producer_window,
        stalled,
    ];
    let engaged = lines.iter().all(|(t, _)| t.is_some());
    let in_order = engaged && order.windows(2).all(|w| w[0] <= w[1]);
    out += if in_order {
        "Every link engaged, in order, across the hop.\n"
    } else if engaged {
        "Every link engaged, though not in the textbook order (sampling is every 25 ms).\n"
    } else {
        "Not every link engaged: with larger kernel buffers (--kernel-buffer) or shorter pauses \
         (--process-ms) the kernel absorbs the pauses before the producer feels them.\n"
    };
    let max = |f: fn(&Sample) -> usize| samples.iter().map(f).max().unwrap_or(0) / 1024;
    let link_pauses = samples
        .windows(2)
        .filter(|w| hop(&w[0]).reading_producer && !hop(&w[1]).reading_producer)
        .count();
    let duration = samples.last().map_or(0.0, |s| s.t);
    out += &format!(
        "Over {duration:.1} s: the consumer paused {} times; the relay stopped reading the producer \
         {link_pauses} times (as sampled); the producer stopped {} times at its high-water mark and \
         resumed {} times on drain. Queues peaked at {} KiB (producer) and {} KiB (relay, to the \
         consumer), high-water {} KiB; {} frames sent, {} confirmed by the consumer; peak RSS of \
         the whole process (three reactors) {:.1} MiB.",
        b.pauses.len(),
        b.stops.len(),
        b.drains.len(),
        max(|s| s.queue),
        max(|s| s.relay.map_or(0, |r| r.upstream_queue)),
        high / 1024,
        b.sent,
        b.confirmed.map_or("none".into(), |n| n.to_string()),
        highwater::process_figures().peak_rss_kb.unwrap_or(0) as f64 / 1024.0
    );
    out
}
