//! Every `unsafe` block of the crate, and nothing else: the three system calls the standard
//! library and `mio` do not offer in the shape the reactor needs.
//!
//! - [`recv_into`]: `recv(2)` straight into a buffer's spare capacity, without zero-filling it
//!   first (the read path, through [`crate::conn::Transport`]).
//! - [`ioctl_int`] and [`tcp_info`]: the kernel's view of a socket's queues and windows
//!   ([`crate::KernelFigures`]).
//!
//! The rest of the crate is compiled with `#![deny(unsafe_code)]` (see `lib.rs`), so a reader
//! auditing memory safety reads this file and no other. Each block says why it is sound in a
//! `SAFETY:` comment, and each function has a test below.
#![allow(unsafe_code)]

use std::io;
use std::os::fd::RawFd;

use bytes::{BufMut, BytesMut};

/// `recv(2)` on `fd` into the spare capacity of `buf`, then commits exactly the bytes
/// received. Returns how many; 0 is the end of the stream (or no spare capacity).
///
/// `std::io::Read::read` wants an initialised `&mut [u8]`; zero-filling 64 KiB before every
/// read would cost about as much as the read itself, and handing uninitialised memory to
/// `read` as `&mut [u8]` is undefined behaviour. `recv` takes a raw pointer, so neither is
/// needed.
pub(crate) fn recv_into(fd: RawFd, buf: &mut BytesMut) -> io::Result<usize> {
    let spare = buf.chunk_mut();
    let len = spare.len();
    let ptr = spare.as_mut_ptr();
    // SAFETY: `ptr` points to `len` bytes of spare capacity owned by `buf`, valid for writes
    // for the duration of the call (we hold `&mut buf`). recv writes at most `len` bytes and
    // returns how many it wrote (or -1 and writes nothing we rely on). An fd that is not a
    // socket, or closed, makes recv fail without writing.
    let n = unsafe { libc::recv(fd, ptr.cast(), len, 0) };
    // Negative only on failure (-1); `try_from` turns exactly that case into the OS error.
    let n = usize::try_from(n).map_err(|_| io::Error::last_os_error())?;
    // SAFETY: the kernel initialised exactly `n <= len` bytes starting at `ptr`, the start of
    // the spare capacity, so advancing the length by `n` exposes only initialised bytes.
    unsafe { buf.advance_mut(n) };
    Ok(n)
}

/// `ioctl(2)` requests that write one `int`: `SIOCINQ` / `SIOCOUTQ` (`FIONREAD` / `TIOCOUTQ`)
/// on a TCP socket. `None` if the call fails (a closed descriptor, not a socket).
#[cfg(target_os = "linux")]
pub(crate) fn ioctl_int(fd: RawFd, request: libc::Ioctl) -> Option<u32> {
    let mut value: libc::c_int = 0;
    // SAFETY: both requests write exactly one c_int through the pointer, which points to a
    // live, aligned c_int on this stack frame. An invalid fd makes ioctl fail, not write.
    let rc = unsafe { libc::ioctl(fd, request, &mut value as *mut libc::c_int) };
    (rc == 0).then(|| u32::try_from(value.max(0)).unwrap_or(0))
}

/// `getsockopt(TCP_INFO)`, and how many bytes of it the kernel filled (an older kernel fills
/// fewer fields than the `libc` struct has).
#[cfg(target_os = "linux")]
pub(crate) fn tcp_info(fd: RawFd) -> Option<(libc::tcp_info, usize)> {
    use std::mem::{MaybeUninit, size_of};
    let mut info = MaybeUninit::<libc::tcp_info>::zeroed();
    let mut len = libc::socklen_t::try_from(size_of::<libc::tcp_info>())
        .expect("tcp_info is a few hundred bytes");
    // SAFETY: `info` is a zeroed, properly sized and aligned tcp_info; the kernel writes at
    // most `len` bytes into it and stores the number written back into `len`.
    let rc = unsafe {
        libc::getsockopt(
            fd,
            libc::IPPROTO_TCP,
            libc::TCP_INFO,
            info.as_mut_ptr().cast(),
            &mut len,
        )
    };
    if rc != 0 {
        return None;
    }
    // SAFETY: tcp_info is plain integers, so the zeroed bytes the kernel did not overwrite are
    // valid values too; the struct is fully initialised either way.
    Some((unsafe { info.assume_init() }, len as usize))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;
    use std::net::{TcpListener, TcpStream};
    use std::os::fd::AsRawFd;
    use std::time::{Duration, Instant};

    fn pair() -> (TcpStream, TcpStream) {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let a = TcpStream::connect(l.local_addr().unwrap()).unwrap();
        let (b, _) = l.accept().unwrap();
        b.set_nonblocking(true).unwrap();
        (a, b)
    }

    /// Polls the non-blocking socket until `recv_into` returns something but `WouldBlock`.
    fn recv_until_not_blocked(fd: RawFd, buf: &mut BytesMut) -> io::Result<usize> {
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            match recv_into(fd, buf) {
                Err(e) if e.kind() == io::ErrorKind::WouldBlock && Instant::now() < deadline => {
                    std::thread::yield_now()
                }
                other => return other,
            }
        }
    }

    #[test]
    fn recv_into_appends_exactly_what_arrived_after_what_was_there() {
        let (mut a, b) = pair();
        let mut buf = BytesMut::with_capacity(64);
        buf.extend_from_slice(b"kept");
        a.write_all(b"hello").unwrap();
        assert_eq!(recv_until_not_blocked(b.as_raw_fd(), &mut buf).unwrap(), 5);
        assert_eq!(&buf[..], b"kepthello");
        drop(a);
        assert_eq!(recv_until_not_blocked(b.as_raw_fd(), &mut buf).unwrap(), 0);
        assert_eq!(&buf[..], b"kepthello", "the end of the stream adds nothing");
    }

    #[test]
    fn recv_into_a_closed_descriptor_fails_without_writing() {
        let mut buf = BytesMut::with_capacity(16);
        let e = recv_into(-1, &mut buf).unwrap_err();
        assert_eq!(e.raw_os_error(), Some(libc::EBADF));
        assert!(buf.is_empty());
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn kernel_queries_on_a_bad_descriptor_say_unknown() {
        assert_eq!(ioctl_int(-1, libc::FIONREAD), None);
        assert!(tcp_info(-1).is_none());
        let (_a, b) = pair();
        assert_eq!(ioctl_int(b.as_raw_fd(), libc::FIONREAD), Some(0));
        let (_, filled) = tcp_info(b.as_raw_fd()).unwrap();
        assert!(filled > 0);
    }
}
