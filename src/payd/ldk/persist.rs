//! Channel state on disk: one file per ChannelMonitor (written synchronously before LDK is told
//! the update completed) and the serialized ChannelManager. Every write goes to a temporary file
//! that is fsynced and renamed over the old one, so a crash leaves either the old or the new state.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use lightning::chain::chainmonitor::Persist;
use lightning::chain::channelmonitor::{ChannelMonitor, ChannelMonitorUpdate};
use lightning::chain::ChannelMonitorUpdateStatus;
use lightning::sign::ecdsa::EcdsaChannelSigner;
use lightning::util::persist::MonitorName;
use lightning::util::ser::Writeable;

use crate::payd::backend::PaydError;

/// File name of the serialized ChannelManager inside the state directory.
pub const MANAGER_FILE: &str = "channel_manager.bin";
/// Directory of live ChannelMonitors inside the state directory.
pub const MONITORS_DIR: &str = "monitors";
/// Directory of ChannelMonitors of closed and resolved channels.
pub const ARCHIVE_DIR: &str = "monitors_archive";

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> PaydError + '_ {
    move |source| PaydError::Io { path: path.display().to_string(), source }
}

/// Write `bytes` to `path` atomically and durably (temporary file, fsync, rename, fsync dir).
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), PaydError> {
    let dir = path.parent().ok_or_else(|| PaydError::InvalidArgument {
        field: "path",
        reason: format!("{} has no parent directory", path.display()),
    })?;
    let mut tmp_name = path.as_os_str().to_owned();
    tmp_name.push(".tmp");
    let tmp = PathBuf::from(tmp_name);
    {
        let mut f = fs::File::create(&tmp).map_err(io_err(&tmp))?;
        f.write_all(bytes).map_err(io_err(&tmp))?;
        f.sync_all().map_err(io_err(&tmp))?;
    }
    fs::rename(&tmp, path).map_err(io_err(path))?;
    let d = fs::File::open(dir).map_err(io_err(dir))?;
    d.sync_all().map_err(io_err(dir))?;
    Ok(())
}

/// A `Persist` implementation writing each ChannelMonitor to its own file.
#[derive(Debug)]
pub struct FilePersister {
    monitors: PathBuf,
    archive: PathBuf,
}

impl FilePersister {
    /// Use (creating if needed) the monitor directories inside `state_dir`.
    pub fn new(state_dir: &Path) -> Result<Self, PaydError> {
        let monitors = state_dir.join(MONITORS_DIR);
        let archive = state_dir.join(ARCHIVE_DIR);
        fs::create_dir_all(&monitors).map_err(io_err(&monitors))?;
        fs::create_dir_all(&archive).map_err(io_err(&archive))?;
        Ok(FilePersister { monitors, archive })
    }

    /// Serialized monitors on disk, as (file name, bytes), sorted by name.
    pub fn read_monitors(&self) -> Result<Vec<(String, Vec<u8>)>, PaydError> {
        let mut out = Vec::new();
        for entry in fs::read_dir(&self.monitors).map_err(io_err(&self.monitors))? {
            let entry = entry.map_err(io_err(&self.monitors))?;
            let name = entry.file_name().to_string_lossy().into_owned();
            if !name.ends_with(".bin") {
                continue;
            }
            let path = entry.path();
            out.push((name, fs::read(&path).map_err(io_err(&path))?));
        }
        out.sort();
        Ok(out)
    }

    fn file_for(&self, name: &MonitorName) -> PathBuf {
        self.monitors.join(format!("{name}.bin"))
    }

    fn write<S: EcdsaChannelSigner>(
        &self,
        name: &MonitorName,
        monitor: &ChannelMonitor<S>,
    ) -> ChannelMonitorUpdateStatus {
        let path = self.file_for(name);
        match write_atomic(&path, &monitor.encode()) {
            Ok(()) => ChannelMonitorUpdateStatus::Completed,
            Err(e) => {
                // Returning `UnrecoverableError` makes LDK stop using the channel rather than
                // proceed with state that is not on disk.
                tracing::error!(target: "payd::ldk", "cannot persist channel monitor {name}: {e}");
                ChannelMonitorUpdateStatus::UnrecoverableError
            }
        }
    }
}

impl<S: EcdsaChannelSigner> Persist<S> for FilePersister {
    fn persist_new_channel(
        &self,
        monitor_name: MonitorName,
        monitor: &ChannelMonitor<S>,
    ) -> ChannelMonitorUpdateStatus {
        self.write(&monitor_name, monitor)
    }

    fn update_persisted_channel(
        &self,
        monitor_name: MonitorName,
        _update: Option<&ChannelMonitorUpdate>,
        monitor: &ChannelMonitor<S>,
    ) -> ChannelMonitorUpdateStatus {
        self.write(&monitor_name, monitor)
    }

    fn archive_persisted_channel(&self, monitor_name: MonitorName) {
        let from = self.file_for(&monitor_name);
        let to = self.archive.join(format!("{monitor_name}.bin"));
        if let Err(e) = fs::rename(&from, &to) {
            tracing::warn!(target: "payd::ldk", "cannot archive channel monitor {monitor_name}: {e}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn atomic_write_replaces_content() {
        let dir = tempfile::tempdir().expect("tempdir");
        let p = dir.path().join("x.bin");
        write_atomic(&p, b"one").expect("write");
        write_atomic(&p, b"two").expect("rewrite");
        assert_eq!(fs::read(&p).expect("read"), b"two");
        assert!(!dir.path().join("x.bin.tmp").exists());
        let persister = FilePersister::new(dir.path()).expect("dirs");
        assert!(persister.read_monitors().expect("list").is_empty());
        assert!(write_atomic(Path::new("/"), b"x").is_err());
    }
}
