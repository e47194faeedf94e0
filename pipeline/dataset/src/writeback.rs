//! Writing a part file's finished row groups to disk while the next ones are encoded.
//!
//! Why: a version becomes visible only after its files are synced, and a sync at the end writes
//! everything still in the page cache at once, with every worker of the stage idle: 55 ms of a
//! 1.5 s augment run over `CamVid` train, 165 ms over three times as many frames, and as much
//! again each time a 1 GiB part file is closed. Syncing each flushed row group on a thread of its
//! own leaves the final sync only the last one to write.
//!
//! An error of a background sync is kept and returned by [`Writeback::finish`]: on Linux a failed
//! `fsync` clears the file's error state, so a later sync could report success for lost data.

use std::fs::File;
use std::path::PathBuf;
use std::sync::mpsc::{SyncSender, sync_channel};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::JoinHandle;

use crate::DatasetError;

type FirstError = Arc<Mutex<Option<(PathBuf, std::io::Error)>>>;
/// A file to sync, with its path for the error message.
type SyncRequest = (PathBuf, File);

/// A thread that syncs files handed to it, one at a time.
#[derive(Debug, Default)]
pub(crate) struct Writeback {
    running: Option<(SyncSender<SyncRequest>, JoinHandle<()>)>,
    first_error: FirstError,
}

impl Writeback {
    /// Asks for `file`'s data written so far to go to disk, without waiting for it. While a sync
    /// is queued, another request is dropped: the queued one will cover its bytes too, or the next
    /// request will. If the thread cannot be started, the data waits for the final sync.
    pub(crate) fn request(&mut self, path: PathBuf, file: &File) {
        if self.running.is_none() {
            // One queued sync beside the one running: enough to keep the disk busy.
            let (tx, rx) = sync_channel::<SyncRequest>(1);
            let first_error = Arc::clone(&self.first_error);
            let spawned = std::thread::Builder::new()
                .name("dataset-writeback".into())
                .spawn(move || {
                    for (path, file) in rx {
                        if let Err(e) = file.sync_data() {
                            let mut slot =
                                first_error.lock().unwrap_or_else(PoisonError::into_inner);
                            slot.get_or_insert((path, e));
                        }
                    }
                });
            match spawned {
                Ok(thread) => self.running = Some((tx, thread)),
                Err(_) => return,
            }
        }
        let Some((tx, _)) = &self.running else { return };
        // A second handle to the same open file: syncing it syncs the file.
        if let Ok(file) = file.try_clone() {
            // Refused when full (the queued sync covers these bytes) or when the thread is gone
            // (the final sync does): either way nothing is lost.
            let _ = tx.try_send((path, file));
        }
    }

    /// Waits for the queued syncs and returns the first error any of them met.
    pub(crate) fn finish(&mut self) -> Result<(), DatasetError> {
        if let Some((tx, thread)) = self.running.take() {
            drop(tx);
            // The thread's loop only syncs and records errors; a panic there is a bug in std.
            let _ = thread.join();
        }
        let failed = self
            .first_error
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        match failed {
            Some((path, source)) => Err(DatasetError::Io { path, source }),
            None => Ok(()),
        }
    }
}

impl Drop for Writeback {
    fn drop(&mut self) {
        // An abandoned writer: nothing to report, but no thread is left behind.
        let _ = self.finish();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn syncs_requested_while_writing_all_succeed_on_a_real_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("part.parquet");
        let mut file = File::create(&path).expect("create");
        let mut writeback = Writeback::default();
        for chunk in 0..20u8 {
            std::io::Write::write_all(&mut file, &[chunk; 4096]).expect("write");
            writeback.request(path.clone(), &file);
        }
        assert!(writeback.running.is_some(), "the sync thread started");
        writeback.finish().expect("every sync succeeded");
        assert!(writeback.running.is_none());
        assert_eq!(std::fs::metadata(&path).expect("stat").len(), 20 * 4096);
    }

    #[test]
    fn a_failed_background_sync_fails_finish_naming_the_file() {
        // Linux refuses to sync /dev/null (EINVAL): a sync error without breaking a disk.
        let Ok(null) = std::fs::OpenOptions::new().write(true).open("/dev/null") else {
            eprintln!("skipped: no /dev/null");
            return;
        };
        if null.sync_data().is_ok() {
            eprintln!("skipped: this system syncs /dev/null");
            return;
        }
        let mut writeback = Writeback::default();
        writeback.request(PathBuf::from("/dev/null"), &null);
        let err = writeback.finish().expect_err("the sync error is reported");
        assert!(
            matches!(&err, DatasetError::Io { path, .. } if path == &PathBuf::from("/dev/null")),
            "{err:?}"
        );
        // Reported once, then gone with the thread.
        writeback.finish().expect("nothing left to report");
    }
}
