//! Settings one connection may have of its own, defaulting to the [`crate::Config`].
//!
//! A broker's subscriber needs its control messages read while its queue is full (so no
//! pausing on its own high-water mark); a relay's upstream may want larger marks than its
//! clients. [`crate::Context::settings`] reads them, [`crate::Context::set_settings`] changes
//! them for one connection.

use std::time::Duration;

use crate::config::{Config, ConfigError, check_queue_limit, check_water_marks};
use crate::write_queue::Marks;

/// One connection's marks, timeouts and pausing rule. See the module docs; every field means
/// what the [`Config`] field of the same name means, for this connection only.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnSettings {
    /// Write-queue high-water mark, in bytes ([`Config::high_water`]).
    pub high_water: usize,
    /// Write-queue low-water mark, in bytes ([`Config::low_water`]).
    pub low_water: usize,
    /// The hard limit of the write queue, in bytes (the effective [`Config::queue_limit`]).
    pub queue_limit: usize,
    /// Stop reading this connection while its own queue is above high-water
    /// ([`Config::pause_reads_above_high_water`]).
    pub pause_reads_above_high_water: bool,
    /// [`Config::idle_timeout`] (or [`Config::outbound_idle_timeout`] for a connection this
    /// reactor opened).
    pub idle_timeout: Option<Duration>,
    /// [`Config::write_timeout`].
    pub write_timeout: Option<Duration>,
}

impl ConnSettings {
    /// What a new connection gets from `config` (`outbound`: opened by this reactor).
    pub fn from_config(config: &Config, outbound: bool) -> ConnSettings {
        ConnSettings {
            high_water: config.high_water,
            low_water: config.low_water,
            queue_limit: config.effective_queue_limit(),
            pause_reads_above_high_water: config.pause_reads_above_high_water,
            idle_timeout: config.idle_timeout_for(outbound),
            write_timeout: config.write_timeout,
        }
    }

    /// The same checks as [`Config::validate`] makes of the marks.
    pub fn validate(&self) -> Result<(), ConfigError> {
        check_water_marks(self.high_water, self.low_water)?;
        check_queue_limit(self.queue_limit, self.high_water)
    }

    pub(crate) fn marks(&self) -> Marks {
        Marks {
            high: self.high_water,
            low: self.low_water,
            limit: self.queue_limit,
        }
    }
}

/// What the connection keeps of its settings (the marks live in its write queue).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct OwnSettings {
    pub(crate) pause_reads_above_high_water: bool,
    pub(crate) idle_timeout: Option<Duration>,
    pub(crate) write_timeout: Option<Duration>,
}

impl From<&ConnSettings> for OwnSettings {
    fn from(s: &ConnSettings) -> OwnSettings {
        OwnSettings {
            pause_reads_above_high_water: s.pause_reads_above_high_water,
            idle_timeout: s.idle_timeout,
            write_timeout: s.write_timeout,
        }
    }
}
