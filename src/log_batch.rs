//! Batched log writes on worker threads.
//!
//! Every log line goes to standard error. A line written one `write(2)`
//! at a time costs a system call per session: against a log file on ext4
//! that was ~0.024 ms of kernel time per plaintext login, a sixth of the
//! login's CPU (docs/performance.md, "Log lines in batches"). So a worker
//! thread that holds a [`Batching`] guard gathers its lines in a
//! thread-local buffer instead, and its [`flush_every`] task writes them
//! out in one `write` at most one flush interval after the first of them
//! arrived, or at once when [`BATCH_CAPACITY`] bytes are waiting. A
//! warning or an error is written at once, after the lines waiting before
//! it: those are rare and an operator watches for them. Dropping
//! the guard (the worker stopping, or unwinding from a panic) writes what
//! is left. Every other thread (the main thread, the admin thread, a
//! directory's) writes each line at once, as does a worker without the
//! guard (`[log] flush_interval = "0s"`).
//!
//! Lines are whole when written: the formatter hands over one line per
//! call, and a batch is a run of whole lines. Lines of different workers
//! may come out of order by up to the interval; each carries its own
//! timestamp.
//!
//! Owns the per-thread buffer and nothing else. Must never hold a line
//! longer than the interval while its worker runs, block on anything but
//! the write to standard error (which an unbatched line did too), or know
//! what a line says.

use std::cell::RefCell;
use std::future::poll_fn;
use std::io::{self, Write};
use std::marker::PhantomData;
use std::task::{Poll, Waker};
use std::time::Duration;

/// How long a worker's first waiting line waits for others by default.
pub const DEFAULT_FLUSH_INTERVAL: Duration = Duration::from_millis(100);

/// Bytes of lines waiting after which they are written at once (~250
/// session-end lines).
pub const BATCH_CAPACITY: usize = 64 * 1024;

struct Batch {
    bytes: Vec<u8>,
    /// The flushing task, waiting for a batch's first line.
    waker: Option<Waker>,
}

thread_local! {
    static BATCH: RefCell<Option<Batch>> = const { RefCell::new(None) };
}

/// Where log lines go: standard error, batched on a thread that holds a
/// [`Batching`] guard. The formatter's writer factory: it makes one
/// [`LogLine`] per line.
#[derive(Debug, Clone, Copy, Default)]
pub struct LogOutput;

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for LogOutput {
    type Writer = LogLine;

    fn make_writer(&'a self) -> LogLine {
        LogLine { urgent: false }
    }

    fn make_writer_for(&'a self, meta: &tracing::Metadata<'_>) -> LogLine {
        LogLine {
            urgent: is_urgent(*meta.level()),
        }
    }
}

/// Warnings and errors are written at once (less verbose compares
/// smaller: ERROR < WARN < INFO).
fn is_urgent(level: tracing::Level) -> bool {
    level <= tracing::Level::WARN
}

/// One log line on its way out.
#[derive(Debug)]
pub struct LogLine {
    /// A warning or an error: written at once.
    urgent: bool,
}

impl Write for LogLine {
    fn write(&mut self, line: &[u8]) -> io::Result<usize> {
        match keep(line, self.urgent) {
            Kept::Yes => Ok(line.len()),
            Kept::No => io::stderr().write(line),
            Kept::Full(mut batch) => {
                batch.extend_from_slice(line);
                let written = io::stderr().write_all(&batch);
                give_back(batch);
                written.map(|()| line.len())
            }
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Writes one whole informational line (ending in `\n`) as the
/// formatter's lines are written: batched on a worker, at once elsewhere.
/// For a line formatted outside tracing (the session-end line).
pub fn write_info_line(line: &[u8]) {
    // As for a formatted line: a log that cannot be written is not a
    // reason to stop serving.
    let _ = LogLine { urgent: false }.write_all(line);
}

/// What [`keep`] did with a line.
enum Kept {
    /// Appended to this thread's batch.
    Yes,
    /// This thread does not batch (or the buffer is in use further up
    /// this very thread's stack): write the line now.
    No,
    /// The batch would pass [`BATCH_CAPACITY`], or the line is urgent: the
    /// waiting lines, taken, to be written now with this one.
    Full(Vec<u8>),
}

fn keep(line: &[u8], urgent: bool) -> Kept {
    let mut wake = None;
    let kept = BATCH
        .try_with(|cell| {
            let Ok(mut slot) = cell.try_borrow_mut() else {
                return Kept::No;
            };
            let Some(batch) = slot.as_mut() else {
                return Kept::No;
            };
            if urgent || batch.bytes.len() + line.len() > BATCH_CAPACITY {
                return Kept::Full(std::mem::take(&mut batch.bytes));
            }
            if batch.bytes.is_empty() {
                wake = batch.waker.take();
            }
            batch.bytes.extend_from_slice(line);
            Kept::Yes
        })
        .unwrap_or(Kept::No);
    // Woken outside the borrow: nothing the waker does can meet it.
    if let Some(waker) = wake {
        waker.wake();
    }
    kept
}

/// Returns a written batch's buffer (emptied, its capacity kept) unless
/// lines arrived meanwhile.
fn give_back(mut bytes: Vec<u8>) {
    bytes.clear();
    let _ = BATCH.try_with(|cell| {
        if let Ok(mut slot) = cell.try_borrow_mut() {
            if let Some(batch) = slot.as_mut().filter(|b| b.bytes.is_empty()) {
                batch.bytes = bytes;
            }
        }
    });
}

/// Writes this thread's waiting lines, if any.
fn flush_this_thread() {
    let taken = BATCH
        .try_with(|cell| {
            let mut slot = cell.try_borrow_mut().ok()?;
            let batch = slot.as_mut()?;
            (!batch.bytes.is_empty()).then(|| std::mem::take(&mut batch.bytes))
        })
        .ok()
        .flatten();
    if let Some(bytes) = taken {
        // As an unbatched line: a log that cannot be written is not a
        // reason to stop serving.
        let _ = io::stderr().write_all(&bytes);
        give_back(bytes);
    }
}

/// While held, this thread's log lines are batched; dropping it writes
/// what waits and turns batching off. Not `Send`: it belongs to the
/// thread that made it.
#[must_use = "lines are batched only while the guard is held"]
pub struct Batching {
    _thread: PhantomData<*const ()>,
}

impl Batching {
    /// Starts batching this thread's log lines.
    pub fn start() -> Self {
        BATCH.with(|cell| {
            *cell.borrow_mut() = Some(Batch {
                bytes: Vec::new(),
                waker: None,
            });
        });
        Self {
            _thread: PhantomData,
        }
    }

    /// Bytes waiting on this thread (for tests).
    pub fn waiting(&self) -> usize {
        BATCH.with(|cell| cell.borrow().as_ref().map_or(0, |b| b.bytes.len()))
    }
}

impl Drop for Batching {
    fn drop(&mut self) {
        flush_this_thread();
        let _ = BATCH.try_with(|cell| {
            if let Ok(mut slot) = cell.try_borrow_mut() {
                *slot = None;
            }
        });
    }
}

/// Writes this thread's batches, each `interval` after its first line
/// arrived; sleeps without a timer while nothing waits. Ends at once on
/// a thread that does not batch. Runs as a task on the worker's reactor.
pub async fn flush_every(interval: Duration) {
    loop {
        let batching = poll_fn(|cx| {
            BATCH.with(|cell| {
                let mut slot = cell.borrow_mut();
                match slot.as_mut() {
                    None => Poll::Ready(false),
                    Some(batch) if !batch.bytes.is_empty() => Poll::Ready(true),
                    Some(batch) => {
                        batch.waker = Some(cx.waker().clone());
                        Poll::Pending
                    }
                }
            })
        })
        .await;
        if !batching {
            return;
        }
        tokio::time::sleep(interval).await;
        flush_this_thread();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(n: usize) -> Vec<u8> {
        let mut l = vec![b'x'; n - 1];
        l.push(b'\n');
        l
    }

    #[test]
    fn a_thread_without_the_guard_keeps_nothing() {
        std::thread::spawn(|| {
            assert!(matches!(keep(b"a\n", false), Kept::No));
        })
        .join()
        .unwrap();
    }

    #[test]
    fn lines_wait_until_the_capacity_would_be_passed_then_go_with_the_next() {
        std::thread::spawn(|| {
            let guard = Batching::start();
            let l = line(1000);
            let fit = BATCH_CAPACITY / l.len();
            for _ in 0..fit {
                assert!(matches!(keep(&l, false), Kept::Yes));
            }
            assert_eq!(guard.waiting(), fit * l.len());
            // The next line would pass the capacity: the waiting ones are
            // handed out (to be written with it), and the buffer is empty.
            match keep(&l, false) {
                Kept::Full(taken) => assert_eq!(taken.len(), fit * l.len()),
                _ => panic!("a full batch is written"),
            }
            assert_eq!(guard.waiting(), 0);
            // A line bigger than the capacity passes straight through.
            assert!(
                matches!(keep(&line(BATCH_CAPACITY + 1), false), Kept::Full(t) if t.is_empty())
            );
        })
        .join()
        .unwrap();
    }

    #[test]
    fn the_first_line_of_a_batch_wakes_the_flusher_and_dropping_the_guard_flushes() {
        std::thread::spawn(|| {
            let guard = Batching::start();
            let woken = std::sync::Arc::new(Flag::default());
            BATCH.with(|c| c.borrow_mut().as_mut().unwrap().waker = Some(woken.clone().into()));
            assert!(matches!(keep(b"one\n", false), Kept::Yes));
            assert!(woken.0.load(std::sync::atomic::Ordering::SeqCst));
            assert!(matches!(keep(b"two\n", false), Kept::Yes));
            assert_eq!(guard.waiting(), 8);
            // A warning takes the waiting lines with it, in order.
            match keep(b"warn\n", true) {
                Kept::Full(taken) => assert_eq!(taken, b"one\ntwo\n"),
                _ => panic!("an urgent line is written at once"),
            }
            assert_eq!(guard.waiting(), 0);
            drop(guard);
            // Off again, and nothing left behind.
            assert!(matches!(keep(b"three\n", false), Kept::No));
            assert!(BATCH.with(|c| c.borrow().is_none()));
        })
        .join()
        .unwrap();
    }

    #[test]
    fn the_flusher_writes_a_batch_after_the_interval_and_ends_without_a_guard() {
        std::thread::spawn(|| {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_time()
                .start_paused(true)
                .build()
                .unwrap();
            let local = tokio::task::LocalSet::new();
            local.block_on(&runtime, async {
                let guard = Batching::start();
                let flusher = tokio::task::spawn_local(flush_every(Duration::from_millis(100)));
                tokio::task::yield_now().await;
                assert!(matches!(keep(b"one\n", false), Kept::Yes));
                tokio::time::sleep(Duration::from_millis(50)).await;
                assert_eq!(guard.waiting(), 4, "held for the interval");
                tokio::time::sleep(Duration::from_millis(60)).await;
                assert_eq!(guard.waiting(), 0, "written after it");
                drop(guard);
                assert!(matches!(keep(b"x\n", false), Kept::No));
                // The flusher waits for a line that never comes; without a
                // guard it would end: start one without and it does.
                flusher.abort();
                tokio::task::spawn_local(flush_every(Duration::from_millis(100)))
                    .await
                    .unwrap();
            });
        })
        .join()
        .unwrap();
    }

    #[test]
    fn warnings_and_errors_are_urgent_and_the_rest_waits() {
        use tracing::Level;
        assert!(is_urgent(Level::ERROR));
        assert!(is_urgent(Level::WARN));
        assert!(!is_urgent(Level::INFO));
        assert!(!is_urgent(Level::DEBUG));
        assert!(!is_urgent(Level::TRACE));
        use tracing_subscriber::fmt::MakeWriter;
        assert!(!LogOutput.make_writer().urgent);
    }

    #[derive(Default)]
    struct Flag(std::sync::atomic::AtomicBool);

    impl std::task::Wake for Flag {
        fn wake(self: std::sync::Arc<Self>) {
            self.0.store(true, std::sync::atomic::Ordering::SeqCst);
        }
    }
}
