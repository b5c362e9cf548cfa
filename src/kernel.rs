//! What the kernel knows about a socket: the links of the chain that live below the
//! application, read with `ioctl(2)` and `getsockopt(TCP_INFO)`.
//!
//! ```text
//!  producer: write queue ──► [ send buffer: unsent_bytes ] ══ TCP ══► [ receive buffer: unread_bytes ]
//!                                   peer_window ◄── window advertised by the consumer ◄──┘
//! ```
//!
//! Linux only; elsewhere every figure is `None` ("unknown"), never a made-up zero. Each call
//! is one syscall on a socket the reactor owns, so reading them at a few hundred hertz for a
//! live display costs nothing that matters.

use std::os::fd::AsRawFd;

/// A socket's queues and windows as the kernel sees them. `None` means unknown (not Linux, or
/// a kernel too old to report it).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct KernelFigures {
    /// Bytes in the send buffer not yet acknowledged by the peer (`SIOCOUTQ`).
    pub send_queue_bytes: Option<u32>,
    /// Bytes in the send buffer not yet sent at all (`tcpi_notsent_bytes`): the kernel's own
    /// backlog, which grows when the peer's window is closed.
    pub unsent_bytes: Option<u32>,
    /// Bytes received and not yet read by the application (`SIOCINQ`).
    pub unread_bytes: Option<u32>,
    /// The receive window the *peer* last advertised to us (`tcpi_snd_wnd`): how much more we
    /// may send. Zero means the peer's receive buffer is full.
    pub peer_window: Option<u32>,
    /// The receive window *we* last advertised (`tcpi_rcv_wnd`).
    pub advertised_window: Option<u32>,
}

/// Reads the figures of `socket`. Fields the platform cannot report are `None`.
pub fn kernel_figures<S: AsRawFd>(socket: &S) -> KernelFigures {
    imp::read(socket.as_raw_fd())
}

#[cfg(target_os = "linux")]
mod imp {
    use super::KernelFigures;
    use crate::sys::{ioctl_int, tcp_info};
    use std::mem::{offset_of, size_of};
    use std::os::fd::RawFd;

    pub(super) fn read(fd: RawFd) -> KernelFigures {
        let info = tcp_info(fd);
        // A field is known only if the kernel's struct reached it (older kernels fill less).
        let field = |offset: usize, get: fn(&libc::tcp_info) -> u32| {
            info.as_ref()
                .filter(|(_, len)| *len >= offset + size_of::<u32>())
                .map(|(i, _)| get(i))
        };
        KernelFigures {
            send_queue_bytes: ioctl_int(fd, libc::TIOCOUTQ),
            unsent_bytes: field(offset_of!(libc::tcp_info, tcpi_notsent_bytes), |i| {
                i.tcpi_notsent_bytes
            }),
            unread_bytes: ioctl_int(fd, libc::FIONREAD),
            peer_window: field(offset_of!(libc::tcp_info, tcpi_snd_wnd), |i| i.tcpi_snd_wnd),
            advertised_window: field(offset_of!(libc::tcp_info, tcpi_rcv_wnd), |i| i.tcpi_rcv_wnd),
        }
    }
}

#[cfg(not(target_os = "linux"))]
mod imp {
    use super::KernelFigures;
    use std::os::fd::RawFd;

    pub(super) fn read(_: RawFd) -> KernelFigures {
        KernelFigures::default()
    }
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use super::*;
    use std::io::{Read, Write};
    use std::net::{TcpListener, TcpStream};
    use std::time::{Duration, Instant};

    fn wait_until(what: &str, mut f: impl FnMut() -> bool) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while !f() {
            assert!(Instant::now() < deadline, "timed out waiting for {what}");
            std::thread::yield_now();
        }
    }

    fn pair(buf: usize) -> (TcpStream, TcpStream) {
        // Small buffers on the listener are inherited by the accepted socket, so the window
        // scale is negotiated for them and the window closes after a few KiB.
        let l = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
        l.set_recv_buffer_size(buf).unwrap();
        l.bind(
            &"127.0.0.1:0"
                .parse::<std::net::SocketAddr>()
                .unwrap()
                .into(),
        )
        .unwrap();
        l.listen(1).unwrap();
        let l: TcpListener = l.into();
        let a = TcpStream::connect(l.local_addr().unwrap()).unwrap();
        socket2::SockRef::from(&a)
            .set_send_buffer_size(buf)
            .unwrap();
        let (b, _) = l.accept().unwrap();
        (a, b)
    }

    #[test]
    fn unread_bytes_count_what_the_application_has_not_read() {
        let (mut a, mut b) = pair(1 << 16);
        assert_eq!(kernel_figures(&b).unread_bytes, Some(0));
        a.write_all(&[7; 1000]).unwrap();
        wait_until("1000 unread bytes", || {
            kernel_figures(&b).unread_bytes == Some(1000)
        });
        let mut buf = [0; 1000];
        b.read_exact(&mut buf).unwrap();
        assert_eq!(kernel_figures(&b).unread_bytes, Some(0));
        let f = kernel_figures(&a);
        assert!(f.peer_window.is_some_and(|w| w > 0), "{f:?}");
        assert!(f.advertised_window.is_some());
    }

    #[test]
    fn a_reader_that_stops_closes_the_window_and_fills_the_senders_buffer() {
        let (a, b) = pair(4096);
        a.set_nonblocking(true).unwrap();
        // Write until the kernel refuses: the reader's buffer and then ours are full.
        let chunk = [1u8; 4096];
        let mut w = &a;
        wait_until(
            "the send buffer to fill",
            || matches!(w.write(&chunk), Err(e) if e.kind() == std::io::ErrorKind::WouldBlock),
        );
        wait_until("the window to close", || {
            kernel_figures(&a).peer_window == Some(0)
        });
        let sender = kernel_figures(&a);
        let reader = kernel_figures(&b);
        assert!(sender.unsent_bytes.is_some_and(|n| n > 0), "{sender:?}");
        assert!(sender.send_queue_bytes.is_some_and(|n| n > 0), "{sender:?}");
        assert!(reader.unread_bytes.is_some_and(|n| n > 0), "{reader:?}");
        assert_eq!(reader.advertised_window, Some(0), "{reader:?}");
    }

    #[test]
    fn a_closed_descriptor_reports_unknown_not_zero() {
        let f = imp::read(-1);
        assert_eq!(f, KernelFigures::default());
    }
}
