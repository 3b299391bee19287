//! Messages of bytes plus file descriptors over a unix stream socket (SCM_RIGHTS).
//!
//! A message is framed as an 8-byte header (payload length, descriptor count, both
//! little-endian u32) followed by the payload; the descriptors ride on the header bytes.
//! Receiving uses MSG_CMSG_CLOEXEC, and a truncated control message (MSG_CTRUNC) or a
//! descriptor count that differs from the header is an error, never a silent loss.

use std::fmt;
use std::io::{Read, Write};
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::net::UnixStream;

/// Most descriptors one message may carry.
pub const MAX_FDS: usize = 16;
/// Largest payload one message may carry.
pub const MAX_MESSAGE_LEN: usize = 16 << 20;
const FRAME_LEN: usize = 8;

/// Why sending a message failed.
#[derive(Debug)]
pub enum SendFdsError {
    /// More than [`MAX_FDS`] descriptors.
    TooManyFds(usize),
    /// A payload longer than [`MAX_MESSAGE_LEN`].
    TooLarge(usize),
    /// The peer closed its end.
    Disconnected,
    /// The socket failed.
    Io(std::io::Error),
}

impl fmt::Display for SendFdsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SendFdsError::TooManyFds(n) => {
                write!(
                    f,
                    "{n} descriptors in one message; at most {MAX_FDS} are allowed"
                )
            }
            SendFdsError::TooLarge(n) => write!(
                f,
                "payload of {n} bytes exceeds {MAX_MESSAGE_LEN}; put large data in a segment and send the segment"
            ),
            SendFdsError::Disconnected => write!(f, "the receiving process closed the connection"),
            SendFdsError::Io(e) => write!(f, "sending on the socket failed: {e}"),
        }
    }
}

impl std::error::Error for SendFdsError {}

/// Why receiving a message failed.
#[derive(Debug)]
pub enum RecvFdsError {
    /// The peer closed the connection before a message began.
    Disconnected,
    /// The peer closed the connection in the middle of a message.
    Truncated,
    /// The kernel dropped descriptors (MSG_CTRUNC), or fewer arrived than the header says.
    FdsTruncated {
        /// Descriptors the header announced.
        expected: usize,
        /// Descriptors that arrived.
        received: usize,
    },
    /// The header announces more than [`MAX_FDS`] descriptors or [`MAX_MESSAGE_LEN`]
    /// bytes: the stream is corrupt or the peer is not a memlink port.
    BadFrame {
        /// Announced payload length.
        len: u32,
        /// Announced descriptor count.
        fds: u32,
    },
    /// The payload did not fit the caller's buffer; it was read and discarded so the
    /// stream stays in step, and its descriptors were closed.
    BufferTooSmall {
        /// The payload's length.
        needed: usize,
    },
    /// The socket failed.
    Io(std::io::Error),
}

impl fmt::Display for RecvFdsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RecvFdsError::Disconnected => write!(f, "the sending process closed the connection"),
            RecvFdsError::Truncated => {
                write!(f, "the connection closed in the middle of a message")
            }
            RecvFdsError::FdsTruncated { expected, received } => write!(
                f,
                "message announced {expected} descriptors but {received} arrived (MSG_CTRUNC: raise the process's open-file limit)"
            ),
            RecvFdsError::BadFrame { len, fds } => write!(
                f,
                "corrupt message header (length {len}, {fds} descriptors): the peer does not speak memlink's framing"
            ),
            RecvFdsError::BufferTooSmall { needed } => write!(
                f,
                "message of {needed} bytes did not fit the receive buffer; it was discarded"
            ),
            RecvFdsError::Io(e) => write!(f, "receiving on the socket failed: {e}"),
        }
    }
}

impl std::error::Error for RecvFdsError {}

fn cmsg_space(n: usize) -> usize {
    // SAFETY: CMSG_SPACE is a pure size computation.
    unsafe { libc::CMSG_SPACE((n * std::mem::size_of::<RawFd>()) as u32) as usize }
}

/// Sends `bytes` and `fds` as one message. The descriptors are duplicated into the
/// receiver; the caller keeps its own.
pub fn send_with_fds(
    stream: &UnixStream,
    bytes: &[u8],
    fds: &[BorrowedFd<'_>],
) -> Result<(), SendFdsError> {
    if fds.len() > MAX_FDS {
        return Err(SendFdsError::TooManyFds(fds.len()));
    }
    if bytes.len() > MAX_MESSAGE_LEN {
        return Err(SendFdsError::TooLarge(bytes.len()));
    }
    let mut frame = [0u8; FRAME_LEN];
    frame[..4].copy_from_slice(&(bytes.len() as u32).to_le_bytes());
    frame[4..].copy_from_slice(&(fds.len() as u32).to_le_bytes());
    let mut iov = [
        libc::iovec {
            iov_base: frame.as_mut_ptr().cast(),
            iov_len: FRAME_LEN,
        },
        libc::iovec {
            iov_base: bytes.as_ptr() as *mut libc::c_void,
            iov_len: bytes.len(),
        },
    ];
    // u64 storage keeps the control buffer aligned for cmsghdr.
    let mut control = [0u64; 64];
    // SAFETY: an all-zero msghdr is a valid "empty" value; fields are set below.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = iov.as_mut_ptr();
    msg.msg_iovlen = if bytes.is_empty() { 1 } else { 2 };
    if !fds.is_empty() {
        let space = cmsg_space(fds.len());
        debug_assert!(space <= std::mem::size_of_val(&control));
        msg.msg_control = control.as_mut_ptr().cast();
        msg.msg_controllen = space as _;
        // SAFETY: msg_control points to `space` writable, aligned bytes, enough for one
        // cmsghdr carrying fds.len() descriptors, so CMSG_FIRSTHDR is non-null and
        // CMSG_DATA has room for the descriptors.
        unsafe {
            let cmsg = libc::CMSG_FIRSTHDR(&msg);
            (*cmsg).cmsg_level = libc::SOL_SOCKET;
            (*cmsg).cmsg_type = libc::SCM_RIGHTS;
            (*cmsg).cmsg_len =
                libc::CMSG_LEN((fds.len() * std::mem::size_of::<RawFd>()) as u32) as _;
            let data = libc::CMSG_DATA(cmsg) as *mut RawFd;
            for (i, fd) in fds.iter().enumerate() {
                data.add(i).write_unaligned(fd.as_raw_fd());
            }
        }
    }
    let sent = loop {
        // SAFETY: `msg` points to live iovecs and control data on this frame.
        let n = unsafe { libc::sendmsg(stream.as_raw_fd(), &msg, libc::MSG_NOSIGNAL) };
        if n >= 0 {
            break n as usize;
        }
        let e = std::io::Error::last_os_error();
        match e.kind() {
            std::io::ErrorKind::Interrupted => continue,
            std::io::ErrorKind::BrokenPipe | std::io::ErrorKind::ConnectionReset => {
                return Err(SendFdsError::Disconnected);
            }
            _ => return Err(SendFdsError::Io(e)),
        }
    };
    // The descriptors went with the first byte; finish any remainder as plain data.
    let total = FRAME_LEN + bytes.len();
    if sent < total {
        let mut rest = Vec::with_capacity(total - sent);
        if sent < FRAME_LEN {
            rest.extend_from_slice(&frame[sent..]);
            rest.extend_from_slice(bytes);
        } else {
            rest.extend_from_slice(&bytes[sent - FRAME_LEN..]);
        }
        let mut w = stream;
        w.write_all(&rest).map_err(|e| match e.kind() {
            std::io::ErrorKind::BrokenPipe | std::io::ErrorKind::ConnectionReset => {
                SendFdsError::Disconnected
            }
            _ => SendFdsError::Io(e),
        })?;
    }
    Ok(())
}

/// Receives the frame header and the descriptors attached to it.
fn recv_frame(stream: &UnixStream) -> Result<(usize, Vec<OwnedFd>, u32), RecvFdsError> {
    let mut frame = [0u8; FRAME_LEN];
    let mut iov = libc::iovec {
        iov_base: frame.as_mut_ptr().cast(),
        iov_len: FRAME_LEN,
    };
    let mut control = [0u64; 64];
    let space = cmsg_space(MAX_FDS);
    // SAFETY: an all-zero msghdr is a valid "empty" value; fields are set below.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control.as_mut_ptr().cast();
    msg.msg_controllen = space as _;
    let n = loop {
        // SAFETY: `msg` points to a live iovec and control buffer of `space` bytes.
        let n = unsafe { libc::recvmsg(stream.as_raw_fd(), &mut msg, libc::MSG_CMSG_CLOEXEC) };
        if n >= 0 {
            break n as usize;
        }
        let e = std::io::Error::last_os_error();
        match e.kind() {
            std::io::ErrorKind::Interrupted => continue,
            std::io::ErrorKind::ConnectionReset => return Err(RecvFdsError::Disconnected),
            _ => return Err(RecvFdsError::Io(e)),
        }
    };
    // Take ownership of every descriptor that arrived, before any early return.
    let mut fds = Vec::new();
    // SAFETY: the kernel filled `msg_controllen` bytes of control data; the CMSG macros
    // walk only that range, and each SCM_RIGHTS payload is an array of new descriptors
    // that now belong to this process (owned exactly once here).
    unsafe {
        let mut cmsg = libc::CMSG_FIRSTHDR(&msg);
        while !cmsg.is_null() {
            if (*cmsg).cmsg_level == libc::SOL_SOCKET && (*cmsg).cmsg_type == libc::SCM_RIGHTS {
                let data = libc::CMSG_DATA(cmsg) as *const RawFd;
                let bytes = (*cmsg).cmsg_len as usize - (data as usize - cmsg as usize);
                for i in 0..bytes / std::mem::size_of::<RawFd>() {
                    fds.push(OwnedFd::from_raw_fd(data.add(i).read_unaligned()));
                }
            }
            cmsg = libc::CMSG_NXTHDR(&msg, cmsg);
        }
    }
    let ctrunc = msg.msg_flags & libc::MSG_CTRUNC != 0;
    if n == 0 {
        return Err(RecvFdsError::Disconnected);
    }
    if n < FRAME_LEN {
        let mut r = stream;
        r.read_exact(&mut frame[n..])
            .map_err(|_| RecvFdsError::Truncated)?;
    }
    let len = u32::from_le_bytes(frame[..4].try_into().expect("4 bytes"));
    let nfds = u32::from_le_bytes(frame[4..].try_into().expect("4 bytes"));
    if len as usize > MAX_MESSAGE_LEN || nfds as usize > MAX_FDS {
        return Err(RecvFdsError::BadFrame { len, fds: nfds });
    }
    if ctrunc || fds.len() != nfds as usize {
        // Drain the payload so the stream stays in step, then report.
        drain(stream, len as usize)?;
        return Err(RecvFdsError::FdsTruncated {
            expected: nfds as usize,
            received: fds.len(),
        });
    }
    Ok((len as usize, fds, nfds))
}

fn drain(stream: &UnixStream, mut len: usize) -> Result<(), RecvFdsError> {
    let mut buf = [0u8; 4096];
    let mut r = stream;
    while len > 0 {
        let k = len.min(buf.len());
        r.read_exact(&mut buf[..k])
            .map_err(|_| RecvFdsError::Truncated)?;
        len -= k;
    }
    Ok(())
}

/// Receives one message into `buf`; returns the payload length and the descriptors
/// (close-on-exec). A payload longer than `buf` is discarded with
/// [`RecvFdsError::BufferTooSmall`].
pub fn recv_with_fds(
    stream: &UnixStream,
    buf: &mut [u8],
) -> Result<(usize, Vec<OwnedFd>), RecvFdsError> {
    let (len, fds, _) = recv_frame(stream)?;
    if len > buf.len() {
        drain(stream, len)?;
        return Err(RecvFdsError::BufferTooSmall { needed: len });
    }
    let mut r = stream;
    r.read_exact(&mut buf[..len])
        .map_err(|_| RecvFdsError::Truncated)?;
    Ok((len, fds))
}

/// Receives one message of any length up to [`MAX_MESSAGE_LEN`].
pub fn recv_message(stream: &UnixStream) -> Result<(Vec<u8>, Vec<OwnedFd>), RecvFdsError> {
    let (len, fds, _) = recv_frame(stream)?;
    let mut buf = vec![0u8; len];
    let mut r = stream;
    r.read_exact(&mut buf)
        .map_err(|_| RecvFdsError::Truncated)?;
    Ok((buf, fds))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::AsFd;

    #[test]
    fn bytes_and_fds_round_trip() {
        let (a, b) = UnixStream::pair().unwrap();
        let seg = crate::segment::Segment::create("fdp", 64).unwrap();
        // SAFETY: payload has at least one byte, mapped read-write.
        unsafe { seg.payload_ptr().write(9) };
        send_with_fds(&a, b"hello", &[seg.as_fd()]).unwrap();
        send_with_fds(&a, b"", &[]).unwrap();
        let mut buf = [0u8; 16];
        let (n, fds) = recv_with_fds(&b, &mut buf).unwrap();
        assert_eq!(&buf[..n], b"hello");
        assert_eq!(fds.len(), 1);
        // SAFETY: F_GETFD only reads descriptor flags.
        let flags = unsafe { libc::fcntl(fds[0].as_raw_fd(), libc::F_GETFD) };
        assert_ne!(flags & libc::FD_CLOEXEC, 0);
        let other = crate::segment::Segment::attach(fds.into_iter().next().unwrap()).unwrap();
        // SAFETY: same segment.
        assert_eq!(unsafe { other.payload_ptr().read() }, 9);
        let (m, fds) = recv_message(&b).unwrap();
        assert!(m.is_empty() && fds.is_empty());
    }

    #[test]
    fn too_small_buffer_keeps_stream_in_step() {
        let (a, b) = UnixStream::pair().unwrap();
        send_with_fds(&a, &[1u8; 100], &[a.as_fd()]).unwrap();
        send_with_fds(&a, b"ok", &[]).unwrap();
        let mut small = [0u8; 10];
        assert!(matches!(
            recv_with_fds(&b, &mut small),
            Err(RecvFdsError::BufferTooSmall { needed: 100 })
        ));
        let (n, _) = recv_with_fds(&b, &mut small).unwrap();
        assert_eq!(&small[..n], b"ok");
        drop(a);
        assert!(matches!(recv_message(&b), Err(RecvFdsError::Disconnected)));
    }

    #[test]
    fn corrupt_frame_is_an_error() {
        let (a, b) = UnixStream::pair().unwrap();
        (&a).write_all(&[0xff; 8]).unwrap();
        assert!(matches!(
            recv_message(&b),
            Err(RecvFdsError::BadFrame { .. })
        ));
    }
}
