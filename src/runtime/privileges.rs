//! Root only to bind: after every listener is bound, the process switches to
//! `[runtime] user` (and `group`, else the user's own group) and can never
//! get root back; a process started as root without `user` refuses to run
//! unless `allow_root = true`.
//!
//! The switch covers every thread: glibc's `setgroups`, `setgid` and `setuid`
//! apply the change to all threads of the process. Files read later (on
//! `SIGHUP`: certificates, keys) must be readable by that user.

use std::ffi::{CStr, CString};

/// Why the switch could not be made.
#[derive(Debug, thiserror::Error)]
pub enum PrivilegeError {
    /// Started as root with neither `user` nor `allow_root`.
    #[error(
        "running as root: set [runtime] user = \"mailgate\" (root only binds the ports, then \
         the process switches to that user), or allow_root = true to keep root"
    )]
    Root,
    /// The user or group is not in the system's databases.
    #[error("[runtime] {what} `{name}` does not exist")]
    Unknown {
        /// `user` or `group`.
        what: &'static str,
        /// The name.
        name: String,
    },
    /// A system call refused.
    #[error("cannot switch to user {user}: {call}: {source}")]
    Switch {
        /// The user.
        user: String,
        /// The call that failed.
        call: &'static str,
        /// The OS error.
        source: std::io::Error,
    },
}

/// A user to switch to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Account {
    /// The user's name.
    pub name: String,
    /// Its uid.
    pub uid: libc::uid_t,
    /// The gid to run with.
    pub gid: libc::gid_t,
}

/// Checks the start: root needs `user` or `allow_root`.
pub fn check_start(user: Option<&str>, allow_root: bool) -> Result<(), PrivilegeError> {
    if user.is_none() && !allow_root && is_root() {
        return Err(PrivilegeError::Root);
    }
    Ok(())
}

/// Whether the effective user is root.
pub fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() == 0 }
}

/// Looks up `user` and the group (`group`, else the user's own).
pub fn resolve(user: &str, group: Option<&str>) -> Result<Account, PrivilegeError> {
    let unknown = |what, name: &str| PrivilegeError::Unknown {
        what,
        name: name.to_owned(),
    };
    let (uid, own_gid) = lookup_user(user).ok_or_else(|| unknown("user", user))?;
    let gid = match group {
        Some(g) => lookup_group(g).ok_or_else(|| unknown("group", g))?,
        None => own_gid,
    };
    Ok(Account {
        name: user.to_owned(),
        uid,
        gid,
    })
}

/// Switches every thread to `account` for good: supplementary groups
/// cleared, gid, then uid; checks that root cannot be taken back.
pub fn switch_to(account: &Account) -> Result<(), PrivilegeError> {
    let fail = |call| PrivilegeError::Switch {
        user: account.name.clone(),
        call,
        source: std::io::Error::last_os_error(),
    };
    let groups = [account.gid];
    // SAFETY: `groups` is a valid array of one gid for the duration of the
    // call.
    if unsafe { libc::setgroups(1, groups.as_ptr()) } != 0 {
        return Err(fail("setgroups"));
    }
    // SAFETY: setgid/setuid take plain integers.
    if unsafe { libc::setgid(account.gid) } != 0 {
        return Err(fail("setgid"));
    }
    // SAFETY: as above.
    if unsafe { libc::setuid(account.uid) } != 0 {
        return Err(fail("setuid"));
    }
    // SAFETY: as above; this call must fail now that root is given up.
    if account.uid != 0 && unsafe { libc::setuid(0) } == 0 {
        return Err(PrivilegeError::Switch {
            user: account.name.clone(),
            call: "setuid(0) succeeded after the switch",
            source: std::io::Error::from_raw_os_error(libc::EPERM),
        });
    }
    Ok(())
}

/// Scratch space for the reentrant lookups (getpw*_r/getgr*_r); entries
/// larger than this are treated as absent.
const LOOKUP_BUFFER: usize = 16 * 1024;

fn lookup_user(name: &str) -> Option<(libc::uid_t, libc::gid_t)> {
    let name = CString::new(name).ok()?;
    let mut buffer = vec![0 as libc::c_char; LOOKUP_BUFFER];
    // SAFETY: an all-zero passwd is a valid value for the call to fill.
    let mut entry: libc::passwd = unsafe { std::mem::zeroed() };
    let mut result: *mut libc::passwd = std::ptr::null_mut();
    // SAFETY: every pointer is valid for the call: the name is
    // NUL-terminated, `buffer` has the length given, `entry` and `result`
    // are live locals.
    let rc = unsafe {
        libc::getpwnam_r(
            name.as_ptr(),
            &mut entry,
            buffer.as_mut_ptr(),
            buffer.len(),
            &mut result,
        )
    };
    (rc == 0 && !result.is_null()).then_some((entry.pw_uid, entry.pw_gid))
}

fn lookup_group(name: &str) -> Option<libc::gid_t> {
    if let Ok(gid) = name.parse() {
        return Some(gid);
    }
    let name = CString::new(name).ok()?;
    let mut buffer = vec![0 as libc::c_char; LOOKUP_BUFFER];
    // SAFETY: an all-zero group is a valid value for the call to fill.
    let mut entry: libc::group = unsafe { std::mem::zeroed() };
    let mut result: *mut libc::group = std::ptr::null_mut();
    // SAFETY: as in `lookup_user`.
    let rc = unsafe {
        libc::getgrnam_r(
            name.as_ptr(),
            &mut entry,
            buffer.as_mut_ptr(),
            buffer.len(),
            &mut result,
        )
    };
    (rc == 0 && !result.is_null()).then_some(entry.gr_gid)
}

/// The name of the current real user (for the log line).
pub fn current_user() -> String {
    // SAFETY: getuid has no preconditions.
    let uid = unsafe { libc::getuid() };
    let mut buffer = vec![0 as libc::c_char; LOOKUP_BUFFER];
    // SAFETY: as in `lookup_user`.
    let mut entry: libc::passwd = unsafe { std::mem::zeroed() };
    let mut result: *mut libc::passwd = std::ptr::null_mut();
    // SAFETY: as in `lookup_user`.
    let rc = unsafe {
        libc::getpwuid_r(
            uid,
            &mut entry,
            buffer.as_mut_ptr(),
            buffer.len(),
            &mut result,
        )
    };
    if rc == 0 && !result.is_null() {
        // SAFETY: on success pw_name points to a NUL-terminated string in
        // `buffer`, which is still alive.
        unsafe { CStr::from_ptr(entry.pw_name) }
            .to_string_lossy()
            .into_owned()
    } else {
        uid.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn root_and_nobody_resolve_and_strangers_do_not() {
        let root = resolve("root", None).unwrap();
        assert_eq!((root.uid, root.gid), (0, 0));
        let nobody = resolve("nobody", Some("0")).unwrap();
        assert_ne!(nobody.uid, 0);
        assert_eq!(nobody.gid, 0);
        assert!(matches!(
            resolve("no-such-user-here", None),
            Err(PrivilegeError::Unknown { what: "user", .. })
        ));
        assert!(matches!(
            resolve("root", Some("no-such-group-here")),
            Err(PrivilegeError::Unknown { what: "group", .. })
        ));
    }

    #[test]
    fn root_needs_a_user_or_allow_root() {
        assert!(check_start(Some("nobody"), false).is_ok());
        assert!(check_start(None, true).is_ok());
        assert_eq!(check_start(None, false).is_err(), is_root());
    }
}
