//! A seccomp filter that makes io_uring unavailable, the way Docker's
//! default profile does since Engine 25: `io_uring_setup`, `io_uring_enter`
//! and `io_uring_register` fail with `EPERM`; every other system call is
//! allowed. Installed in a child process between fork and exec.

use std::io;
use std::os::unix::process::CommandExt;
use std::process::Command;

/// The io_uring system calls (the same numbers on x86_64 and aarch64).
const IO_URING_SYSCALLS: [u32; 3] = [425, 426, 427];

#[cfg(target_arch = "x86_64")]
const AUDIT_ARCH: u32 = 0xC000_003E;
#[cfg(target_arch = "aarch64")]
const AUDIT_ARCH: u32 = 0xC000_00B7;

const BPF_LD_W_ABS: u16 = 0x20;
const BPF_JEQ_K: u16 = 0x15;
const BPF_RET_K: u16 = 0x06;
const SECCOMP_RET_ALLOW: u32 = 0x7fff_0000;
const SECCOMP_RET_ERRNO: u32 = 0x0005_0000;
/// `offsetof(struct seccomp_data, nr)` and `arch`.
const OFFSET_NR: u32 = 0;
const OFFSET_ARCH: u32 = 4;

fn statement(code: u16, k: u32) -> libc::sock_filter {
    libc::sock_filter {
        code,
        jt: 0,
        jf: 0,
        k,
    }
}

fn jump(k: u32, jt: u8, jf: u8) -> libc::sock_filter {
    libc::sock_filter {
        code: BPF_JEQ_K,
        jt,
        jf,
        k,
    }
}

/// The filter: another architecture is allowed through untouched; an
/// io_uring call gets `EPERM`; everything else is allowed.
fn program() -> Vec<libc::sock_filter> {
    let mut filter = vec![
        statement(BPF_LD_W_ABS, OFFSET_ARCH),
        jump(AUDIT_ARCH, 1, 0),
        statement(BPF_RET_K, SECCOMP_RET_ALLOW),
        statement(BPF_LD_W_ABS, OFFSET_NR),
    ];
    let n = IO_URING_SYSCALLS.len() as u8;
    for (i, nr) in IO_URING_SYSCALLS.iter().enumerate() {
        // Matching jumps to the EPERM return after the remaining checks and
        // the allow.
        filter.push(jump(*nr, n - i as u8, 0));
    }
    filter.push(statement(BPF_RET_K, SECCOMP_RET_ALLOW));
    filter.push(statement(BPF_RET_K, SECCOMP_RET_ERRNO | libc::EPERM as u32));
    filter
}

/// Makes `command`'s process refuse io_uring (installed before exec).
pub fn deny_io_uring(command: &mut Command) {
    let filter = program();
    // SAFETY: the closure runs in the child between fork and exec and only
    // calls prctl(2), which is async-signal-safe, on memory (`filter`)
    // copied into the child with the closure.
    unsafe {
        command.pre_exec(move || {
            let prog = libc::sock_fprog {
                len: filter.len() as u16,
                filter: filter.as_ptr().cast_mut(),
            };
            if libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0 {
                return Err(io::Error::last_os_error());
            }
            if libc::prctl(
                libc::PR_SET_SECCOMP,
                libc::SECCOMP_MODE_FILTER,
                &prog as *const libc::sock_fprog,
            ) != 0
            {
                return Err(io::Error::last_os_error());
            }
            Ok(())
        });
    }
}
