//! The data directory: node key, bus keys, each service's SQLite file, the bus endpoint file.
//!
//! Layout:
//! ```text
//! DATADIR/            0700
//!   node.key          0600  32-byte secp256k1 secret, shared by peerd, payd and lcpd (or at
//!                           `--node-key FILE`, e.g. a volume that containers share)
//!   bus/server.key    0600  broker CURVE keys (see crate::bus::keys)
//!   bus/client.key    0600  client CURVE keys: copy it to add a worker on another host
//!   bus.endpoint            the remote bus endpoint as bound by the broker
//!   peerd.db lcpd.db payd.db   one SQLite file per stateful service
//!   lcp.toml                optional config file
//! ```

use crate::bus::{keys, BusError, Endpoint, ServerKeys};
use lightning::bitcoin::secp256k1::{PublicKey, Secp256k1, SecretKey};
use std::fs;
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// Errors reading or creating data-directory files.
#[derive(Debug, thiserror::Error)]
pub enum DatadirError {
    #[error("{path}: {source}")]
    Io { path: String, source: std::io::Error },
    #[error("{path}: {msg}")]
    Invalid { path: String, msg: String },
    #[error(transparent)]
    Bus(#[from] BusError),
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> DatadirError + '_ {
    move |source| DatadirError::Io { path: path.display().to_string(), source }
}

/// The node's secret key. Never printed: `Debug` shows only the public node id.
#[derive(Clone)]
pub struct NodeSecret(SecretKey);

impl NodeSecret {
    /// The raw 32 bytes (for peerd's BOLT #8 and payd's key manager).
    pub fn secret_bytes(&self) -> [u8; 32] {
        self.0.secret_bytes()
    }

    /// The compressed public key: the Lightning node id.
    pub fn node_id(&self) -> [u8; 33] {
        PublicKey::from_secret_key(&Secp256k1::signing_only(), &self.0).serialize()
    }

    /// The node id as lowercase hex.
    pub fn node_id_hex(&self) -> String {
        hex::encode(self.node_id())
    }
}

impl std::fmt::Debug for NodeSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "NodeSecret(node_id={})", self.node_id_hex())
    }
}

/// Name of the node key file in the data directory.
pub const NODE_KEY_FILE: &str = "node.key";

/// An opened data directory.
#[derive(Clone, Debug)]
pub struct Datadir {
    root: PathBuf,
    node_key: PathBuf,
}

impl Datadir {
    /// Opens (and on first use creates, mode 0700) a data directory.
    pub fn open(root: &Path) -> Result<Self, DatadirError> {
        if !root.exists() {
            fs::create_dir_all(root).map_err(io(root))?;
            fs::set_permissions(root, fs::Permissions::from_mode(0o700)).map_err(io(root))?;
        }
        if !root.is_dir() {
            return Err(DatadirError::Invalid { path: root.display().to_string(), msg: "not a directory".into() });
        }
        Ok(Self { root: root.to_path_buf(), node_key: root.join(NODE_KEY_FILE) })
    }

    /// The same directory with the node key at `path` instead of `DATADIR/node.key`.
    pub fn with_node_key(mut self, path: &Path) -> Self {
        self.node_key = path.to_path_buf();
        self
    }

    /// The directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Loads the node key, creating it on first start (atomically: concurrent first starts of
    /// several daemons, also in several containers sharing the key's directory, agree on one key).
    pub fn node_secret(&self) -> Result<NodeSecret, DatadirError> {
        let path = &self.node_key;
        if !path.exists() {
            // The temporary file is made beside the key: link() works within one file system only.
            let dir = path.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
            let sk = loop {
                // A uniformly random 32-byte string is a valid key except with negligible probability.
                if let Ok(sk) = SecretKey::from_slice(&rand::random::<[u8; 32]>()) {
                    break sk;
                }
            };
            let tmp = dir.join(format!(".node.key.{}.{:016x}.tmp", std::process::id(), rand::random::<u64>()));
            let mut f = fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(&tmp).map_err(io(&tmp))?;
            f.write_all(&sk.secret_bytes()).and_then(|_| f.sync_all()).map_err(io(&tmp))?;
            drop(f);
            // link() fails if another process created the key first; then theirs wins.
            let linked = fs::hard_link(&tmp, path);
            let _ = fs::remove_file(&tmp);
            match linked {
                Ok(()) => tracing::info!(target: "node", "created node key {}", path.display()),
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
                Err(e) => return Err(io(path)(e)),
            }
        }
        let meta = fs::metadata(path).map_err(io(path))?;
        if meta.permissions().mode() & 0o077 != 0 {
            return Err(DatadirError::Invalid {
                path: path.display().to_string(),
                msg: format!(
                    "readable by group or others (mode {:o}); chmod 600 it",
                    meta.permissions().mode() & 0o777
                ),
            });
        }
        let bytes = fs::read(path).map_err(io(path))?;
        let invalid = |msg: &str| DatadirError::Invalid { path: path.display().to_string(), msg: msg.into() };
        let arr: [u8; 32] = bytes.as_slice().try_into().map_err(|_| invalid("node key must be exactly 32 bytes"))?;
        let sk = SecretKey::from_slice(&arr).map_err(|_| invalid("not a valid secp256k1 secret key"))?;
        Ok(NodeSecret(sk))
    }

    /// The broker's bus keys: from `server_key` when given (it must exist), else
    /// `DATADIR/bus/server.key`, created with its client key on first start.
    pub fn bus_server_keys(&self, server_key: Option<&Path>) -> Result<ServerKeys, DatadirError> {
        match server_key {
            Some(p) => Ok(keys::load_server(p)?),
            None => Ok(keys::load_or_create(&self.root.join("bus"))?.0),
        }
    }

    /// Path of a service's SQLite file.
    pub fn db_path(&self, service: &str) -> PathBuf {
        self.root.join(format!("{service}.db"))
    }

    /// Where the broker host records its bound remote endpoint.
    pub fn bus_endpoint_file(&self) -> PathBuf {
        self.root.join("bus.endpoint")
    }

    /// Records the bound remote endpoint (written to a temp file, then renamed).
    pub fn write_bus_endpoint(&self, ep: &Endpoint) -> Result<(), DatadirError> {
        let path = self.bus_endpoint_file();
        let tmp = self.root.join(".bus.endpoint.tmp");
        fs::write(&tmp, format!("{ep}\n")).map_err(io(&tmp))?;
        fs::rename(&tmp, &path).map_err(io(&path))
    }

    /// The endpoint recorded by a running broker host, if any.
    pub fn read_bus_endpoint(&self) -> Option<Endpoint> {
        fs::read_to_string(self.bus_endpoint_file()).ok()?.trim().parse().ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn node_key_created_once_private_and_stable() {
        let d = tempfile::tempdir().unwrap();
        let dd = Datadir::open(&d.path().join("x")).unwrap();
        let k1 = dd.node_secret().unwrap();
        let k2 = dd.node_secret().unwrap();
        assert_eq!(k1.secret_bytes(), k2.secret_bytes());
        let p = dd.root().join(NODE_KEY_FILE);
        assert_eq!(fs::metadata(&p).unwrap().permissions().mode() & 0o777, 0o600);
        assert_eq!(fs::metadata(dd.root()).unwrap().permissions().mode() & 0o777, 0o700);
        assert_eq!(k1.node_id().len(), 33);
        let dbg = format!("{k1:?}");
        assert!(dbg.contains(&k1.node_id_hex()) && !dbg.contains(&hex::encode(k1.secret_bytes())));
    }

    #[test]
    fn concurrent_first_starts_agree_on_one_key() {
        let d = tempfile::tempdir().unwrap();
        let dd = Datadir::open(d.path()).unwrap();
        let keys: Vec<[u8; 32]> = std::thread::scope(|s| {
            let hs: Vec<_> = (0..8).map(|_| s.spawn(|| dd.node_secret().unwrap().secret_bytes())).collect();
            hs.into_iter().map(|h| h.join().unwrap()).collect()
        });
        assert!(keys.windows(2).all(|w| w[0] == w[1]));
    }

    #[test]
    fn bad_key_files_are_refused() {
        let d = tempfile::tempdir().unwrap();
        let dd = Datadir::open(d.path()).unwrap();
        let p = d.path().join("node.key");
        fs::write(&p, [0u8; 32]).unwrap();
        fs::set_permissions(&p, fs::Permissions::from_mode(0o600)).unwrap();
        assert!(dd.node_secret().unwrap_err().to_string().contains("not a valid"));
        fs::write(&p, [1u8; 31]).unwrap();
        assert!(dd.node_secret().unwrap_err().to_string().contains("32 bytes"));
        fs::write(&p, [1u8; 32]).unwrap();
        fs::set_permissions(&p, fs::Permissions::from_mode(0o644)).unwrap();
        assert!(dd.node_secret().unwrap_err().to_string().contains("chmod 600"));
    }

    #[test]
    fn node_key_elsewhere_is_shared_by_two_datadirs() {
        let d = tempfile::tempdir().unwrap();
        let shared = d.path().join("identity");
        fs::create_dir(&shared).unwrap();
        let key = shared.join(NODE_KEY_FILE);
        let a = Datadir::open(&d.path().join("a")).unwrap().with_node_key(&key);
        let b = Datadir::open(&d.path().join("b")).unwrap().with_node_key(&key);
        assert_eq!(a.node_secret().unwrap().node_id(), b.node_secret().unwrap().node_id());
        assert!(key.exists() && !d.path().join("a").join(NODE_KEY_FILE).exists());
        // Only the key is left in the shared directory, no temporary file.
        assert_eq!(fs::read_dir(&shared).unwrap().count(), 1);
    }

    #[test]
    fn bus_endpoint_file_round_trips() {
        let d = tempfile::tempdir().unwrap();
        let dd = Datadir::open(d.path()).unwrap();
        assert!(dd.read_bus_endpoint().is_none());
        let ep: Endpoint = "tcp://127.0.0.1:4444".parse().unwrap();
        dd.write_bus_endpoint(&ep).unwrap();
        assert_eq!(dd.read_bus_endpoint(), Some(ep));
    }
}
