//! A one-second tick on every worker, so that setting a session's timeout
//! costs no system call.
//!
//! tokio's timer wakes its own event loop whenever a timer is set to expire
//! before the loop's next planned wake-up (`Handle::reregister` calls
//! `unpark`): the loop may be asleep in `epoll_wait` with a longer timeout.
//! On a worker thread the loop is the caller itself and is not asleep, but
//! tokio cannot tell: each such timer costs an `eventfd` write and one more
//! turn of the loop (with io_uring, one more `io_uring_enter` and
//! `epoll_wait`). A login sets two timers (the pre-auth read timeout and the
//! back-end connect timeout), and on a quiet worker each was the earliest:
//! six system calls per login, found with `strace -k` and gdb.
//!
//! This tick keeps the planned wake-up at most [`TIMER_FLOOR`] away, so a
//! timer set further out than that is filed without waking anything: the
//! session's timeouts by default (pre-auth 60 s, the failure delay 2 s, the
//! back-end connect and login bounds, the idle limit). A timeout configured
//! shorter than a second still works; it wakes the loop as before. The tick
//! costs one wake-up per second per worker, idle or not.
//!
//! Owns nothing else and must never do work on its tick.

use std::time::Duration;
use tokio::time::MissedTickBehavior;

/// How far ahead the loop's planned wake-up stays at most.
pub const TIMER_FLOOR: Duration = Duration::from_secs(1);

/// Ticks every [`TIMER_FLOOR`] until dropped (the worker aborts it at
/// shutdown).
pub async fn run() {
    let mut tick = tokio::time::interval(TIMER_FLOOR);
    tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
    }
}
