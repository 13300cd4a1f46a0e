//! Connecting to the control daemon's Unix socket. NVIDIA's daemon listens on a
//! `SOCK_SEQPACKET` socket (seen with driver 580: a `SOCK_STREAM` connect fails with
//! `EPROTOTYPE`), which `std::os::unix::net` cannot open, hence libc.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

/// Connects a non-blocking socket of `kind` (`libc::SOCK_SEQPACKET`, `libc::SOCK_STREAM`) to
/// `path` and closes it again. `EAGAIN` (a full backlog) still means something listens.
pub(super) fn try_connect(path: &Path, kind: libc::c_int) -> io::Result<()> {
    let (address, length) = socket_address(path)?;
    // SAFETY: plain socket(2); the descriptor is owned (and closed) right below.
    let fd = unsafe {
        libc::socket(
            libc::AF_UNIX,
            kind | libc::SOCK_CLOEXEC | libc::SOCK_NONBLOCK,
            0,
        )
    };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `fd` is a fresh descriptor nobody else owns.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    // SAFETY: `address` is a valid sockaddr_un of `length` bytes.
    let rc = unsafe {
        libc::connect(
            fd.as_raw_fd(),
            (&raw const address).cast::<libc::sockaddr>(),
            length,
        )
    };
    if rc == 0 {
        return Ok(());
    }
    match io::Error::last_os_error() {
        e if e.raw_os_error() == Some(libc::EAGAIN) => Ok(()),
        e => Err(e),
    }
}

/// A `sockaddr_un` for `path`; `ENAMETOOLONG` past the 107 bytes `sun_path` holds.
pub(super) fn socket_address(path: &Path) -> io::Result<(libc::sockaddr_un, libc::socklen_t)> {
    let bytes = path.as_os_str().as_bytes();
    // SAFETY: all-zero is a valid sockaddr_un.
    let mut address: libc::sockaddr_un = unsafe { std::mem::zeroed() };
    if bytes.len() >= address.sun_path.len() {
        return Err(io::Error::from_raw_os_error(libc::ENAMETOOLONG));
    }
    address.sun_family = libc::AF_UNIX as libc::sa_family_t;
    for (dst, &src) in address.sun_path.iter_mut().zip(bytes) {
        *dst = src as libc::c_char;
    }
    let length = std::mem::size_of::<libc::sockaddr_un>() as libc::socklen_t;
    Ok((address, length))
}

/// The longest path a Unix socket can have (`sun_path` less its terminating NUL).
pub(super) const MAX_SOCKET_PATH: usize = 107;

/// A listening `SOCK_SEQPACKET` socket at `path`, standing in for the control daemon's.
#[cfg(test)]
pub(super) fn listen_seqpacket(path: &Path) -> io::Result<OwnedFd> {
    let (address, length) = socket_address(path)?;
    // SAFETY: as in `try_connect`.
    let fd = unsafe { libc::socket(libc::AF_UNIX, libc::SOCK_SEQPACKET | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: fresh descriptor.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    // SAFETY: valid address; plain bind(2) and listen(2).
    let rc = unsafe {
        libc::bind(
            fd.as_raw_fd(),
            (&raw const address).cast::<libc::sockaddr>(),
            length,
        )
    };
    if rc != 0 || unsafe { libc::listen(fd.as_raw_fd(), 8) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(fd)
}
