//! Per-worker pools of read buffers, so that a quiet connection holds none:
//! it waits for readiness without a buffer, takes one to read, and gives it
//! back when the bytes are passed on. Thread-local (one pool per worker
//! thread, no sharing across cores), bounded, keyed by capacity.

use std::cell::RefCell;

/// Buffers kept per worker and size.
pub const POOL_LIMIT: usize = 256;

thread_local! {
    static POOL: RefCell<Vec<Vec<u8>>> = const { RefCell::new(Vec::new()) };
}

/// An empty buffer of capacity `size` from this worker's pool, or a new one.
pub fn take(size: usize) -> Vec<u8> {
    POOL.with_borrow_mut(|pool| {
        pool.iter()
            .rposition(|b| b.capacity() == size)
            .map(|i| pool.swap_remove(i))
    })
    .unwrap_or_else(|| Vec::with_capacity(size))
}

/// Returns a buffer to this worker's pool (dropped when the pool is full).
pub fn give_back(mut buf: Vec<u8>) {
    buf.clear();
    POOL.with_borrow_mut(|pool| {
        if pool.len() < POOL_LIMIT {
            pool.push(buf);
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buffers_are_reused_by_capacity_and_the_pool_is_bounded() {
        let a = take(2048);
        let pointer = a.as_ptr();
        give_back(a);
        let again = take(2048);
        assert_eq!(again.as_ptr(), pointer, "reused");
        assert!(take(4096).capacity() >= 4096);
        for _ in 0..POOL_LIMIT + 10 {
            give_back(Vec::with_capacity(16));
        }
        POOL.with_borrow(|pool| assert_eq!(pool.len(), POOL_LIMIT));
    }
}
