//! Pipes for splice, pooled per worker.
//!
//! A session takes a pipe only while bytes are in flight and gives it back
//! empty, so idle sessions own none. Pipes are non-blocking, close-on-exec,
//! sized with `F_SETPIPE_SZ`; the pool keeps at most [`POOL_LIMIT`] per worker
//! and closes the rest.

use std::cell::RefCell;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

/// Empty pipes kept per worker.
pub const POOL_LIMIT: usize = 64;

/// A pipe: bytes go in at `write`, come out at `read`.
#[derive(Debug)]
pub struct Pipe {
    read: OwnedFd,
    write: OwnedFd,
}

impl Pipe {
    fn new(size: usize) -> io::Result<Self> {
        let mut fds = [0 as RawFd; 2];
        // SAFETY: pipe2 writes two descriptors into the array we own; on
        // success both are fresh and owned by nobody else.
        let rc = unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_NONBLOCK | libc::O_CLOEXEC) };
        if rc != 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: pipe2 succeeded, so both descriptors are open and ours.
        let (read, write) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
        let size = libc::c_int::try_from(size).unwrap_or(libc::c_int::MAX);
        // SAFETY: fcntl on a descriptor we own; a failure (size above
        // /proc/sys/fs/pipe-max-size) leaves the default size, which works.
        unsafe { libc::fcntl(write.as_raw_fd(), libc::F_SETPIPE_SZ, size) };
        Ok(Self { read, write })
    }

    /// The read end.
    pub fn read_fd(&self) -> RawFd {
        self.read.as_raw_fd()
    }

    /// The write end.
    pub fn write_fd(&self) -> RawFd {
        self.write.as_raw_fd()
    }
}

thread_local! {
    static POOL: RefCell<Vec<Pipe>> = const { RefCell::new(Vec::new()) };
}

/// An empty pipe from this worker's pool, or a new one.
pub fn take(size: usize) -> io::Result<Pipe> {
    match POOL.with_borrow_mut(Vec::pop) {
        Some(pipe) => Ok(pipe),
        None => Pipe::new(size),
    }
}

/// Returns an empty pipe to the pool (a pipe with bytes in it must be dropped).
pub fn give_back(pipe: Pipe) {
    POOL.with_borrow_mut(|pool| {
        if pool.len() < POOL_LIMIT {
            pool.push(pipe);
        }
    });
}

/// Pipes currently pooled on this worker.
pub fn pooled() -> usize {
    POOL.with_borrow(Vec::len)
}
