//! Running code inside another network namespace.
//!
//! `setns(CLONE_NEWNET)` on a dedicated thread changes only that thread's
//! network namespace; the mount namespace (and so `/sys/fs/bpf`) stays the
//! caller's, unlike `ip netns exec`.

use std::{
    fs::File,
    os::fd::AsRawFd,
    path::{Path, PathBuf},
};

#[derive(Debug, thiserror::Error)]
pub enum NetnsError {
    #[error("opening the network namespace {path}: {source}")]
    Open {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("entering the network namespace {path}: {source}")]
    Enter {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("the thread working in {0} panicked")]
    Panicked(PathBuf),
}

/// Moves the calling thread into the network namespace at `path`.
pub fn enter(path: &Path) -> Result<(), NetnsError> {
    let file = File::open(path).map_err(|source| NetnsError::Open {
        path: path.to_owned(),
        source,
    })?;
    // SAFETY: setns on a valid namespace fd; affects only this thread.
    let rc = unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) };
    if rc != 0 {
        return Err(NetnsError::Enter {
            path: path.to_owned(),
            source: std::io::Error::last_os_error(),
        });
    }
    Ok(())
}

/// Runs `f` on a new thread in the network namespace at `path` (or in the
/// caller's when `None`) and returns its result.
pub fn in_netns<T: Send>(
    path: Option<&Path>,
    f: impl FnOnce() -> T + Send,
) -> Result<T, NetnsError> {
    std::thread::scope(|s| {
        let handle = s.spawn(|| {
            if let Some(path) = path {
                enter(path)?;
            }
            Ok(f())
        });
        handle
            .join()
            .map_err(|_| NetnsError::Panicked(path.map(Path::to_owned).unwrap_or_default()))?
    })
}
