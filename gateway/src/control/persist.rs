//! The last-known directory on local disk (`state_dir/directory.json`), so that a gateway
//! restarted while the store is down boots with the drains and pins it last applied.
//!
//! Writes are atomic: a temporary file in the same directory, fsynced, then renamed over the
//! old one, so a crash leaves either the old or the new document, never half of one. One
//! `state_dir` belongs to one gateway.

use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use cell_router::Directory;

/// File name of the persisted directory inside `state_dir`.
pub(crate) const FILE_NAME: &str = "directory.json";

/// Why the persisted directory could not be read.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ReadError {
    #[error("cannot read {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("{path} is not a directory document: {source}")]
    Parse {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
}

/// The persisted directory; `None` if there is none.
pub(crate) fn read(state_dir: &Path) -> Result<Option<Directory>, ReadError> {
    let path = state_dir.join(FILE_NAME);
    let bytes = match fs::read(&path) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(source) => return Err(ReadError::Io { path, source }),
    };
    serde_json::from_slice(&bytes)
        .map(Some)
        .map_err(|source| ReadError::Parse { path, source })
}

/// Atomically replaces the persisted directory, creating `state_dir` if needed.
pub(crate) fn write(state_dir: &Path, directory: &Directory) -> io::Result<()> {
    fs::create_dir_all(state_dir)?;
    let json = serde_json::to_vec_pretty(directory).map_err(io::Error::other)?;
    let path = state_dir.join(FILE_NAME);
    let tmp = state_dir.join(format!(".{FILE_NAME}.{}.tmp", std::process::id()));
    let result = (|| {
        let mut file = fs::File::create(&tmp)?;
        file.write_all(&json)?;
        file.sync_all()?;
        fs::rename(&tmp, &path)?;
        // Make the rename itself durable. Not every platform can fsync a directory.
        if let Ok(dir) = fs::File::open(state_dir) {
            let _ = dir.sync_all();
        }
        Ok(())
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;
    use cell_router::Pin;

    fn scratch(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!(
            "cellgate-persist-{name}-{}-{}",
            std::process::id(),
            fastrand::u64(..)
        ));
        let _ = fs::remove_dir_all(&dir);
        dir
    }

    #[test]
    fn round_trips_and_replaces() {
        let dir = scratch("roundtrip").join("nested");
        assert!(read(&dir).expect("no file is fine").is_none());
        let mut directory = Directory {
            version: 3,
            ..Directory::default()
        };
        directory.pins.insert("alice".into(), Pin::new("cell-2"));
        write(&dir, &directory).expect("writes");
        assert_eq!(read(&dir).expect("reads"), Some(directory.clone()));
        directory.version = 4;
        write(&dir, &directory).expect("replaces");
        assert_eq!(read(&dir).expect("reads").map(|d| d.version), Some(4));
        let leftovers: Vec<_> = fs::read_dir(&dir)
            .expect("lists")
            .filter_map(Result::ok)
            .map(|e| e.file_name())
            .collect();
        assert_eq!(leftovers, [FILE_NAME]);
        let _ = fs::remove_dir_all(dir.parent().unwrap_or(&dir));
    }

    #[test]
    fn garbage_is_a_parse_error() {
        let dir = scratch("garbage");
        fs::create_dir_all(&dir).expect("mkdir");
        fs::write(dir.join(FILE_NAME), b"{not json").expect("write");
        assert!(matches!(read(&dir), Err(ReadError::Parse { .. })));
        let _ = fs::remove_dir_all(&dir);
    }
}
