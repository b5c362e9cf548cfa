//! Backpressure across connections: links.
//!
//! A relay reads from one connection and writes to another. Within one connection the chain is
//! automatic (a queue above high-water stops that connection's reading), but a relay's slow
//! *upstream* fills the upstream queue while the *client* that feeds it goes on being read.
//! A link closes that gap: `link(source, sink)` means "while `sink`'s queue is above its
//! high-water mark, do not read `source`" ([`PauseReason::Link`]). When the sink drains to
//! low-water, or closes, the source reads again, unless another of its sinks is still above
//! high-water. So the pressure crosses the hop: the slow reader's window closes, the relay's
//! upstream queue fills, the relay stops reading the producer, the producer's window closes.
//!
//! Any number of sources per sink and sinks per source, and links are counted per pair (an
//! application's link and a fan-out's hold on the same pair each need their own unlink). A
//! connection may be linked to itself. A connection's links end when it closes (for good:
//! at teardown; a sink that is flushing still holds its sources until its queue drains). What a proxy does on a half-close is the application's call, made in
//! `on_peer_shutdown` (usually `close_write` on the other side, after what was read is
//! forwarded); links neither close nor half-close anything.
//!
//! A two-way relay (links both ways) must also turn off each side's own-queue pause
//! (`pause_reads_above_high_water`): see `Context::link` for the deadlock it makes otherwise.
//!
//! Costs: a send checks one pointer for links; the lists are touched only on a high-water
//! crossing, a drain, or a close.

use super::Engine;
use crate::conn::{ConnId, ConnState, PauseReason};

impl Engine {
    /// Links `source` to `sink` (see the module docs). False if either is closed. A
    /// connection may be linked to itself (a fan-out member that is also the frame's source:
    /// its own queue above high-water stops its reading, whatever its own-queue setting).
    /// Links are counted: a pair linked twice stays linked until it is unlinked twice, so two
    /// owners of the same pair (the application's own link and a
    /// fan-out's hold, or two topics' fan-outs) never undo each other's.
    pub(crate) fn link(&mut self, source: ConnId, sink: ConnId) -> bool {
        let live = |e: &Engine, id| {
            e.conn_ref(id)
                .is_some_and(|c| matches!(c.state(), ConnState::Open | ConnState::Connecting))
        };
        if !live(self, source) || !live(self, sink) {
            return false;
        }
        let Some(src) = self.conns.get_mut(source) else {
            return false;
        };
        let sinks = &mut src.linked_mut().sinks;
        if let Some((_, count)) = sinks.iter_mut().find(|(s, _)| *s == sink) {
            // Already linked: one more owner. A count, not an entry per call, so an
            // application that links on every frame costs no memory.
            *count = count.saturating_add(1);
            return true;
        }
        sinks.push((sink, 1));
        let Some(s) = self.conns.get_mut(sink) else {
            return false;
        };
        s.linked_mut().sources.push(source);
        if s.queue().pressure().is_high() {
            self.pause(source, PauseReason::Link);
        }
        log::debug!("{source}: linked to {sink} (reading pauses while its queue is high)");
        true
    }

    /// Undoes one [`Engine::link`] of the pair; the link ends when every one is undone. False
    /// if there was no such link.
    pub(crate) fn unlink(&mut self, source: ConnId, sink: ConnId) -> bool {
        let Some(sinks) = self
            .conns
            .get_mut(source)
            .and_then(|c| c.linked_mut_if_any())
            .map(|l| &mut l.sinks)
        else {
            return false;
        };
        let Some(i) = sinks.iter().position(|(s, _)| *s == sink) else {
            return false;
        };
        if sinks[i].1 > 1 {
            sinks[i].1 -= 1;
            return true;
        }
        sinks.swap_remove(i);
        if let Some(s) = self.conns.get_mut(sink) {
            remove(&mut s.linked_mut().sources, source);
        }
        self.recheck_link(source);
        log::debug!("{source}: unlinked from {sink}");
        true
    }

    /// `sink`'s queue crossed its high-water mark: its sources stop reading.
    pub(crate) fn sink_high(&mut self, sink: ConnId) {
        let n = self.sources_of(sink);
        for i in 0..n {
            if let Some(source) = self.source_at(sink, i) {
                self.pause(source, PauseReason::Link);
            }
        }
    }

    /// `sink`'s queue drained to low-water: each source reads again unless another of its
    /// sinks is still high.
    pub(crate) fn sink_relieved(&mut self, sink: ConnId) {
        let n = self.sources_of(sink);
        for i in 0..n {
            if let Some(source) = self.source_at(sink, i) {
                self.recheck_link(source);
            }
        }
    }

    /// `id` is closing for good: it leaves every link, and the sources it held back read again
    /// (unless another sink holds them).
    pub(crate) fn forget_links(&mut self, id: ConnId) {
        let Some(linked) = self.conns.get_mut(id).and_then(|c| c.take_linked()) else {
            return;
        };
        // Its links to itself went with `take_linked`: skip them, or `linked_mut` would
        // make new, empty ones on a closing connection.
        for (sink, _) in linked.sinks.iter().filter(|(s, _)| *s != id) {
            if let Some(s) = self.conns.get_mut(*sink) {
                remove(&mut s.linked_mut().sources, id);
            }
        }
        for source in linked.sources.iter().filter(|s| **s != id) {
            // Every count of the pair goes: the connection is gone.
            if let Some(src) = self.conns.get_mut(*source) {
                src.linked_mut().sinks.retain(|(s, _)| *s != id);
            }
            self.recheck_link(*source);
        }
    }

    /// Resumes `source`'s reading (the link reason only) if none of its sinks is high.
    fn recheck_link(&mut self, source: ConnId) {
        let Some(src) = self.conn_ref(source) else {
            return;
        };
        if !src.paused().contains(PauseReason::Link) {
            return;
        }
        let held = src.linked().is_some_and(|l| {
            l.sinks.iter().any(|(s, _)| {
                self.conn_ref(*s)
                    .is_some_and(|c| c.queue().pressure().is_high())
            })
        });
        if !held {
            self.resume(source, PauseReason::Link);
        }
    }

    fn sources_of(&self, sink: ConnId) -> usize {
        self.conn_ref(sink)
            .and_then(|c| c.linked())
            .map_or(0, |l| l.sources.len())
    }

    fn source_at(&self, sink: ConnId, i: usize) -> Option<ConnId> {
        self.conn_ref(sink)?.linked()?.sources.get(i).copied()
    }
}

/// Removes `id` from `list` (order does not matter). Returns it if it was there.
fn remove(list: &mut Vec<ConnId>, id: ConnId) -> Option<ConnId> {
    let i = list.iter().position(|x| *x == id)?;
    Some(list.swap_remove(i))
}
