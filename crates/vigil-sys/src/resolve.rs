//! Finding executables the way execvp(3) does.

use std::ffi::OsStr;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use crate::SysError;

/// Finds `program` the way execvp does, in `path` (a PATH value) or the daemon's PATH when None.
///
/// A program containing '/' is checked as is (relative to the daemon's cwd). Missing files give
/// `ProgramNotFound`; files that exist but are not executable regular files give `Exec` with the
/// OS error (EACCES).
pub fn resolve_program(program: &str, path: Option<&OsStr>) -> Result<PathBuf, SysError> {
    let not_found = || SysError::ProgramNotFound {
        program: program.to_owned(),
    };
    if program.is_empty() {
        return Err(not_found());
    }
    if program.contains('/') {
        let p = PathBuf::from(program);
        return match check_executable(&p) {
            Ok(()) => Ok(p),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Err(not_found()),
            Err(e) => Err(SysError::Exec {
                program: program.to_owned(),
                source: e,
            }),
        };
    }
    let env_path;
    let search = match path {
        Some(p) => p,
        None => {
            env_path = std::env::var_os("PATH");
            env_path
                .as_deref()
                .unwrap_or(OsStr::new("/usr/local/bin:/usr/bin:/bin"))
        }
    };
    let mut denied = None;
    for dir in search.as_bytes().split(|&b| b == b':') {
        // An empty PATH entry means the current directory.
        let dir = if dir.is_empty() {
            Path::new(".")
        } else {
            Path::new(OsStr::from_bytes(dir))
        };
        let candidate = dir.join(program);
        match check_executable(&candidate) {
            Ok(()) => return Ok(candidate),
            Err(e) if e.kind() == io::ErrorKind::NotFound || e.raw_os_error() == Some(libc::ENOTDIR) => {}
            Err(e) => {
                denied.get_or_insert(e);
            }
        }
    }
    match denied {
        Some(e) => Err(SysError::Exec {
            program: program.to_owned(),
            source: e,
        }),
        None => Err(not_found()),
    }
}

/// Ok when `p` is a regular file we may execute (access(X_OK) semantics).
fn check_executable(p: &Path) -> io::Result<()> {
    let meta = std::fs::metadata(p)?;
    if !meta.is_file() {
        return Err(io::Error::from_raw_os_error(libc::EACCES));
    }
    rustix::fs::access(p, rustix::fs::Access::EXEC_OK).map_err(io::Error::from)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resolve_program_searches_path() {
        assert_eq!(
            resolve_program("sh", Some(OsStr::new("/nonexistent:/bin"))).unwrap(),
            Path::new("/bin/sh")
        );
        assert_eq!(resolve_program("/bin/sh", None).unwrap(), Path::new("/bin/sh"));
        assert!(matches!(
            resolve_program("no-such-program-xyz", Some(OsStr::new("/bin:/usr/bin"))),
            Err(SysError::ProgramNotFound { .. })
        ));
        assert!(matches!(
            resolve_program("/nonexistent/x", None),
            Err(SysError::ProgramNotFound { .. })
        ));
        assert!(matches!(
            resolve_program("", None),
            Err(SysError::ProgramNotFound { .. })
        ));
        // A directory and a non-executable file are found but refused with EACCES.
        match resolve_program("/tmp", None) {
            Err(SysError::Exec { source, .. }) => {
                assert_eq!(source.raw_os_error(), Some(libc::EACCES))
            }
            other => panic!("unexpected {other:?}"),
        }
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("plain"), "x").unwrap();
        match resolve_program("plain", Some(dir.path().as_os_str())) {
            Err(SysError::Exec { source, .. }) => {
                assert_eq!(source.raw_os_error(), Some(libc::EACCES))
            }
            other => panic!("unexpected {other:?}"),
        }
    }
}
