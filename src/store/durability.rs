//! Making sled's writes durable. sled 0.34 ends a flush with `sync_file_range` on Linux,
//! which survives a process crash but neither forces the device cache nor commits file
//! metadata, and it writes values too large for a page (blobs) into their own files without
//! syncing them at all. After each flush we `fdatasync` the data file and every blob file
//! written since the last sync, and `fsync` the blob directory when it gained files.

use std::fs::File;
use std::io;
use std::path::{Path, PathBuf};

/// `fsync` of a directory, so that the files created in it survive a power loss.
pub fn sync_directory(path: &Path) -> io::Result<()> {
    File::open(path)?.sync_all()
}

/// Remembers which blob files are already synced.
#[derive(Debug)]
pub struct Syncer {
    path: PathBuf,
    /// The highest blob file name (an LSN) already synced.
    last_blob: Option<u64>,
}

impl Syncer {
    pub fn new(path: &Path) -> Syncer {
        Syncer {
            path: path.to_path_buf(),
            last_blob: None,
        }
    }

    /// Call after `sled::Db::flush`: makes everything it wrote durable.
    pub fn sync(&mut self) -> io::Result<()> {
        File::open(self.path.join("db"))?.sync_data()?;
        let blobs = self.path.join("blobs");
        let entries = match std::fs::read_dir(&blobs) {
            Ok(entries) => entries,
            Err(error) if error.kind() == io::ErrorKind::NotFound => return Ok(()),
            Err(error) => return Err(error),
        };
        let mut newest = self.last_blob;
        for entry in entries {
            let entry = entry?;
            let Some(lsn) = entry
                .file_name()
                .to_str()
                .and_then(|name| name.parse::<u64>().ok())
            else {
                continue;
            };
            if self.last_blob.is_some_and(|last| lsn <= last) {
                continue;
            }
            File::open(entry.path())?.sync_data()?;
            newest = Some(newest.map_or(lsn, |n| n.max(lsn)));
        }
        if newest != self.last_blob {
            sync_directory(&blobs)?;
            self.last_blob = newest;
        }
        Ok(())
    }
}
