//! What a connection reads from and writes to.
//!
//! The backpressure chain needs three things of the layer under it: bytes in (`recv`), bytes
//! out (`writev`, through [`std::io::Write::write_vectored`]), and a half-close. A TCP socket
//! is the one production transport. The trait is the seam where something else can sit under
//! the chain: a TLS session over the socket (rustls' buffer-based API suits a readiness
//! reactor), or, in the unit tests, a `Script` (below) that answers each call from a script:
//! short reads, short writes and `WouldBlock` exactly where a test wants them.
//!
//! Every call is non-blocking: `WouldBlock` means "not now", and the poller says when.

use std::io::{self, Write};
use std::os::fd::AsRawFd;

use bytes::BytesMut;
use mio::net::TcpStream;

/// A non-blocking byte stream under a connection.
pub(crate) trait Transport: Write {
    /// Receives into the spare capacity of `buf`, appending what arrived. `Ok(0)`: the peer
    /// finished sending.
    fn recv_into(&mut self, buf: &mut BytesMut) -> io::Result<usize>;

    /// Sends FIN once what was written is delivered (`shutdown(SHUT_WR)`).
    fn shutdown_write(&mut self) -> io::Result<()>;
}

impl Transport for TcpStream {
    fn recv_into(&mut self, buf: &mut BytesMut) -> io::Result<usize> {
        crate::sys::recv_into(self.as_raw_fd(), buf)
    }

    fn shutdown_write(&mut self) -> io::Result<()> {
        self.shutdown(std::net::Shutdown::Write)
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use std::collections::VecDeque;

    /// One scripted answer.
    #[derive(Debug)]
    pub(crate) enum Step {
        /// A read delivers these bytes (at most what the buffer has room for; the rest stays
        /// for the next read).
        Read(Vec<u8>),
        /// A write takes at most this many bytes.
        Write(usize),
        /// The next call of that kind returns `WouldBlock`.
        ReadBlock,
        WriteBlock,
        /// The peer finished sending.
        Eof,
        /// The call fails with this error kind.
        ReadErr(io::ErrorKind),
        WriteErr(io::ErrorKind),
    }

    /// A transport that answers from two scripts, one for reads and one for writes. A call
    /// whose script is empty returns `WouldBlock`, like a socket with nothing to give or no
    /// room. What was written is kept in `sent`.
    #[derive(Debug, Default)]
    pub(crate) struct Script {
        reads: VecDeque<Step>,
        writes: VecDeque<Step>,
        pub(crate) sent: Vec<u8>,
        pub(crate) shut: bool,
        pub(crate) recv_calls: usize,
        pub(crate) write_calls: usize,
    }

    impl Script {
        pub(crate) fn new(steps: impl IntoIterator<Item = Step>) -> Script {
            let mut s = Script::default();
            s.push(steps);
            s
        }

        pub(crate) fn push(&mut self, steps: impl IntoIterator<Item = Step>) {
            for step in steps {
                match step {
                    Step::Read(_) | Step::ReadBlock | Step::Eof | Step::ReadErr(_) => {
                        self.reads.push_back(step)
                    }
                    Step::Write(_) | Step::WriteBlock | Step::WriteErr(_) => {
                        self.writes.push_back(step)
                    }
                }
            }
        }
    }

    impl Transport for Script {
        fn recv_into(&mut self, buf: &mut BytesMut) -> io::Result<usize> {
            self.recv_calls += 1;
            let room = buf.capacity() - buf.len();
            match self.reads.pop_front() {
                Some(Step::Read(mut bytes)) => {
                    if bytes.len() > room {
                        let rest = bytes.split_off(room);
                        self.reads.push_front(Step::Read(rest));
                    }
                    buf.extend_from_slice(&bytes);
                    Ok(bytes.len())
                }
                Some(Step::Eof) => {
                    self.reads.push_front(Step::Eof); // the end stays the end
                    Ok(0)
                }
                Some(Step::ReadErr(kind)) => Err(kind.into()),
                Some(Step::ReadBlock) | None => Err(io::ErrorKind::WouldBlock.into()),
                Some(other) => unreachable!("a write step in the read script: {other:?}"),
            }
        }

        fn shutdown_write(&mut self) -> io::Result<()> {
            self.shut = true;
            Ok(())
        }
    }

    impl Write for Script {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            self.write_vectored(&[io::IoSlice::new(buf)])
        }

        fn write_vectored(&mut self, bufs: &[io::IoSlice<'_>]) -> io::Result<usize> {
            self.write_calls += 1;
            let limit = match self.writes.pop_front() {
                Some(Step::Write(n)) => n,
                Some(Step::WriteErr(kind)) => return Err(kind.into()),
                Some(Step::WriteBlock) | None => return Err(io::ErrorKind::WouldBlock.into()),
                Some(other) => unreachable!("a read step in the write script: {other:?}"),
            };
            let mut taken = 0;
            for b in bufs {
                let n = b.len().min(limit - taken);
                self.sent.extend_from_slice(&b[..n]);
                taken += n;
            }
            Ok(taken)
        }

        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }
}
