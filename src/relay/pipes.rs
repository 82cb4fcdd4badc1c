//! Pipes for splice, pooled per worker.
//!
//! A session takes a pipe only while bytes are in flight and gives it back
//! empty, so idle sessions own none. Pipes are non-blocking, close-on-exec,
//! sized with `F_SETPIPE_SZ`; the pool keeps at most [`POOL_LIMIT`] per worker
//! and closes the rest. Pipes in existence (pooled or in use, all workers)
//! are bounded by `[relay] max_pipes`: each holds two descriptors and up to
//! `pipe_size` bytes of kernel memory. A session that finds no pipe relays
//! that burst by copying instead (`splice.rs`).

use std::cell::RefCell;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::sync::atomic::{AtomicUsize, Ordering};

/// Pipes in existence, all workers.
static OPEN: AtomicUsize = AtomicUsize::new(0);

/// Empty pipes kept per worker.
pub const POOL_LIMIT: usize = 64;

/// A pipe: bytes go in at `write`, come out at `read`.
#[derive(Debug)]
pub struct Pipe {
    read: OwnedFd,
    write: OwnedFd,
}

impl Drop for Pipe {
    fn drop(&mut self) {
        OPEN.fetch_sub(1, Ordering::Relaxed);
    }
}

impl Pipe {
    /// A new pipe, counted in [`OPEN`] (the caller reserved its place).
    fn new(size: usize) -> io::Result<Self> {
        let mut fds = [0 as RawFd; 2];
        // SAFETY: pipe2 writes two descriptors into the array we own; on
        // success both are fresh and owned by nobody else.
        let rc = unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_NONBLOCK | libc::O_CLOEXEC) };
        if rc != 0 {
            OPEN.fetch_sub(1, Ordering::Relaxed);
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

/// An empty pipe from this worker's pool, or a new one if fewer than
/// `max_open` exist; `None` when none can be had (the caller copies).
pub fn take(size: usize, max_open: usize) -> Option<Pipe> {
    if let Some(pipe) = POOL.with_borrow_mut(Vec::pop) {
        return Some(pipe);
    }
    let reserved = OPEN
        .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| {
            (n < max_open).then_some(n + 1)
        })
        .is_ok();
    if !reserved {
        return None;
    }
    match Pipe::new(size) {
        Ok(pipe) => Some(pipe),
        Err(e) => {
            tracing::debug!("no pipe for splice: {e}");
            None
        }
    }
}

/// Pipes in existence, all workers.
pub fn open() -> usize {
    OPEN.load(Ordering::Relaxed)
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
