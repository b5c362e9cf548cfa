//! A connection's name: a slab slot and a generation, so a closed connection's id never
//! reaches the slot's next tenant.

use std::fmt;

/// Identifies a connection for as long as it lives, and never another one after it.
///
/// The reactor keeps connections in a slab and reuses slots; the generation makes an id
/// from a closed connection stale instead of letting it reach the slot's next tenant.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ConnId {
    index: u32,
    generation: u32,
}

impl ConnId {
    pub(crate) fn new(index: usize, generation: u32) -> ConnId {
        ConnId {
            // `Config::validate` keeps `max_connections` far below this, and the slab holds
            // those plus a bounded number of lingering ones.
            index: u32::try_from(index).expect("a slab slot index fits in 32 bits"),
            generation,
        }
    }

    /// The slab slot (and mio token) this connection occupies.
    pub(crate) fn index(self) -> usize {
        self.index as usize
    }

    /// The id packed into a `u64`, for example as a timer's data.
    pub fn as_u64(self) -> u64 {
        (u64::from(self.generation) << 32) | u64::from(self.index)
    }

    /// Unpacks [`ConnId::as_u64`]. An id made up from any other number is harmless: it names
    /// no live connection, and every operation on it reports the connection as closed.
    // Splitting a `u64` into its halves: dropping the high bits is the point.
    #[allow(clippy::cast_possible_truncation)]
    pub fn from_u64(packed: u64) -> ConnId {
        ConnId {
            index: packed as u32,
            generation: (packed >> 32) as u32,
        }
    }
}

impl fmt::Display for ConnId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "conn#{}.{}", self.index, self.generation)
    }
}
