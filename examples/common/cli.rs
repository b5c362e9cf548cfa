//! The command-line pieces several examples share, written once: the flags whose defaults are
//! the library's (`Config::default()`), the address and mode of the contract's servers, and
//! one way to refuse a combination of flags that each parsed.

use clap::{Args, CommandFactory, ValueEnum};
use highwater::Config;

use super::units::Size;

/// Where the contract's servers listen and its client connects, unless told otherwise.
pub const DEFAULT_ADDR: &str = "127.0.0.1:7878";

/// The library's defaults, the single source of every default below.
pub fn defaults() -> Config {
    Config::default()
}

/// A write queue's marks (`Config::high_water`, `Config::low_water`).
#[derive(Args, Debug, Clone, Copy)]
pub struct Marks {
    /// Write-queue high-water mark: at or above it sends report `Pressure::High` (and a
    /// server stops reading that connection)
    #[arg(long, value_name = "BYTES", default_value_t = Size(defaults().high_water))]
    pub high_water: Size,
    /// Write-queue low-water mark: falling to it after the high-water mark is a drain
    #[arg(long, value_name = "BYTES", default_value_t = Size(defaults().low_water))]
    pub low_water: Size,
}

impl Marks {
    /// These marks over `base`.
    pub fn apply(self, base: Config) -> Config {
        Config {
            high_water: self.high_water.0,
            low_water: self.low_water.0,
            ..base
        }
    }
}

/// What the contract's servers do with a message.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Mode {
    /// Every message comes back unchanged, in order
    Echo,
    /// Messages are counted; on half-close the server replies {"received":M,"bytes":B}
    Sink,
}

/// Exits as clap does for a bad value (status 2, the usage line), for checks that need more
/// than one flag or the library's `Config::validate`.
pub fn refuse<C: CommandFactory>(msg: impl std::fmt::Display) -> ! {
    C::command()
        .error(clap::error::ErrorKind::ValueValidation, msg)
        .exit()
}
