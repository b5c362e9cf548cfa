//! Doorbells: [`crate::Handle::notify`] values handed out by the library, one per component,
//! so that two worker pools, or a pool and the application's own doorbells, never answer each
//! other's ring.
//!
//! A doorbell is only a number that `on_notify` receives. Numbers picked by hand collide (two
//! pools built from the same code pick the same one), so components ask for a fresh one
//! instead: [`Doorbell::allocate`] hands out values from a process-wide counter in the upper
//! half of `u64` ([`Doorbell::RESERVED`] and above), and never the same value twice. The lower
//! half is the application's: doorbells it rings with values below `RESERVED` can never be
//! mistaken for one of these.

use std::sync::atomic::{AtomicU64, Ordering};

use crate::handle::{Handle, HandleError};

/// The next value [`Doorbell::allocate`] hands out. Counting up from `2^63`, it would take
/// 2^63 allocations to wrap: never, in practice.
static NEXT: AtomicU64 = AtomicU64::new(Doorbell::RESERVED);

/// A notify value of its own, never handed out twice in a process. See the module docs.
///
/// ```
/// use highwater::Doorbell;
///
/// let a = Doorbell::allocate();
/// let b = Doorbell::allocate();
/// assert_ne!(a, b);
/// assert!(a.value() >= Doorbell::RESERVED);
/// assert!(a.is(a.value()) && !a.is(7));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Doorbell(u64);

impl Doorbell {
    /// Notify values at or above this are reserved for doorbells handed out by
    /// [`Doorbell::allocate`]; an application ringing its own doorbells uses values below it.
    pub const RESERVED: u64 = 1 << 63;

    /// A value no other doorbell in this process has.
    pub fn allocate() -> Doorbell {
        Doorbell(NEXT.fetch_add(1, Ordering::Relaxed))
    }

    /// The value `on_notify` receives when this doorbell rings.
    pub fn value(self) -> u64 {
        self.0
    }

    /// Whether `value`, as received by `on_notify`, is this doorbell ringing.
    pub fn is(self, value: u64) -> bool {
        self.0 == value
    }

    /// Rings: the reactor behind `handle` calls `on_notify` with [`Doorbell::value`].
    pub fn ring(self, handle: &Handle) -> Result<(), HandleError> {
        handle.ring_reserved(self.0)
    }
}
