//! The pid file `mailgate run --pid-file` writes: opened without following
//! a symbolic link and refused unless it is a regular file with one link,
//! checked before anything is truncated, so a pid file in a directory the
//! service user can write cannot turn root's write into a write elsewhere
//! (a link to `/etc/shadow` planted there).
//!
//! The pid is written to a new file beside it, which is then renamed over
//! the path: whoever reads the path sees the old file or the whole new one,
//! never an empty or half-written file (a supervisor polling for it read
//! an empty file between creation and write before).
//!
//! This module owns the file's creation and removal; it never decides where
//! the file lives.

use std::fs::File;
use std::io::Write;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

/// Why the pid file could not be written.
#[derive(Debug, thiserror::Error)]
pub enum PidFileError {
    /// Opening or writing failed (a symbolic link gives `ELOOP`).
    #[error("pid file {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// What the system said.
        source: std::io::Error,
    },
    /// Not a regular file with exactly one link.
    #[error("pid file {path}: not a regular file with one link ({what}); remove it")]
    NotPlain {
        /// The file.
        path: PathBuf,
        /// What it is.
        what: String,
    },
}

/// A written pid file, removed when dropped (best effort: after the
/// privilege drop a file in a root-owned directory cannot be removed and
/// stays, holding a pid that no longer runs, as with most daemons).
#[derive(Debug)]
pub struct PidFile(PathBuf);

impl PidFile {
    /// Writes this process's id to `path`, whole or not at all.
    pub fn write(path: &Path) -> Result<Self, PidFileError> {
        let io = |source| PidFileError::Io {
            path: path.to_owned(),
            source,
        };
        // What is there already must be a plain file (a stale pid file):
        // a link is refused with its target untouched, as before. The
        // rename below would replace a link rather than follow it.
        match std::fs::symlink_metadata(path) {
            Ok(meta) if meta.file_type().is_symlink() => {
                return Err(io(std::io::Error::from_raw_os_error(libc::ELOOP)))
            }
            Ok(meta) if !meta.file_type().is_file() || meta.nlink() != 1 => {
                return Err(PidFileError::NotPlain {
                    path: path.to_owned(),
                    what: format!("{:?}, {} links", meta.file_type(), meta.nlink()),
                });
            }
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(io(e)),
        }
        let mut name = path.file_name().unwrap_or_default().to_owned();
        name.push(format!(".{}.new", std::process::id()));
        let fresh = path.with_file_name(name);
        let written = (|| {
            // A new file only (never one planted under this name).
            let mut file: File = std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o644)
                .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
                .open(&fresh)?;
            file.write_all(format!("{}\n", std::process::id()).as_bytes())?;
            std::fs::rename(&fresh, path)
        })();
        if let Err(source) = written {
            let _ = std::fs::remove_file(&fresh);
            return Err(io(source));
        }
        Ok(Self(path.to_owned()))
    }
}

impl Drop for PidFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_link_planted_at_the_pid_file_path_is_refused_and_its_target_untouched() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("precious");
        std::fs::write(&target, "keep me").unwrap();
        let symlink = dir.path().join("by-symlink.pid");
        std::os::unix::fs::symlink(&target, &symlink).unwrap();
        assert!(matches!(
            PidFile::write(&symlink),
            Err(PidFileError::Io { .. })
        ));
        let hardlink = dir.path().join("by-hardlink.pid");
        std::fs::hard_link(&target, &hardlink).unwrap();
        assert!(matches!(
            PidFile::write(&hardlink),
            Err(PidFileError::NotPlain { .. })
        ));
        assert_eq!(std::fs::read_to_string(&target).unwrap(), "keep me");
    }

    #[test]
    fn a_stale_pid_file_is_rewritten_and_removed_when_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("mailgate.pid");
        std::fs::write(&path, "999999999 and more\n").unwrap();
        let pid = PidFile::write(&path).unwrap();
        assert_eq!(
            std::fs::read_to_string(&path).unwrap(),
            format!("{}\n", std::process::id())
        );
        drop(pid);
        assert!(!path.exists());
        // Nothing else was left in the directory.
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
    }

    #[test]
    fn the_pid_file_appears_whole_or_not_at_all() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("mailgate.pid");
        // A reader polling the path sees no file or the whole line: the
        // file is renamed into place after it was written.
        let reader = {
            let path = path.clone();
            std::thread::spawn(move || {
                let start = std::time::Instant::now();
                while start.elapsed() < std::time::Duration::from_secs(10) {
                    if let Ok(text) = std::fs::read_to_string(&path) {
                        return text;
                    }
                    std::thread::yield_now();
                }
                String::new()
            })
        };
        let pid = PidFile::write(&path).unwrap();
        assert_eq!(reader.join().unwrap(), format!("{}\n", std::process::id()));
        // A directory at the path is refused, and nothing is left behind.
        drop(pid);
        std::fs::create_dir(&path).unwrap();
        assert!(matches!(
            PidFile::write(&path),
            Err(PidFileError::NotPlain { .. })
        ));
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    }
}
