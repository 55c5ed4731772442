//! CURVE keys of the bus, kept in the data directory.
//!
//! `bus/server.key` (broker only) holds the broker's key pair and the client public key it admits;
//! `bus/client.key` holds the client key pair and the broker's public key: it is the one file a
//! service on another host needs to join the bus. Both are created on first start with mode 0600 in
//! a 0700 directory, and never logged.

use super::BusError;
use serde::{Deserialize, Serialize};
use std::fs;
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// A raw 32-byte CURVE key.
pub type Key = [u8; 32];

/// What the broker needs.
#[derive(Clone)]
pub struct ServerKeys {
    /// Broker public key.
    pub public: Key,
    /// Broker secret key.
    pub secret: Key,
    /// Client public keys the broker admits.
    pub authorized: Vec<Key>,
}

/// What a bus client needs.
#[derive(Clone)]
pub struct ClientKeys {
    /// The broker's public key.
    pub server_public: Key,
    /// Client public key.
    pub public: Key,
    /// Client secret key.
    pub secret: Key,
}

impl std::fmt::Debug for ClientKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ClientKeys {{ public: {}, .. }}", z85(&self.public))
    }
}
impl std::fmt::Debug for ServerKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ServerKeys {{ public: {}, .. }}", z85(&self.public))
    }
}

#[derive(Serialize, Deserialize)]
struct ServerFile {
    public: String,
    secret: String,
    authorized_clients: Vec<String>,
}

#[derive(Serialize, Deserialize)]
struct ClientFile {
    server_public: String,
    public: String,
    secret: String,
}

/// A key in Z85, the text form of the key files (for public keys; never print a secret one).
pub fn z85(k: &Key) -> String {
    zmq::z85_encode(k).unwrap_or_default()
}

fn unz85(path: &Path, field: &str, s: &str) -> Result<Key, BusError> {
    let bytes = zmq::z85_decode(s).map_err(|_| BusError::Keys(format!("{}: {field} is not Z85", path.display())))?;
    bytes.try_into().map_err(|_| BusError::Keys(format!("{}: {field} is not a 32-byte key", path.display())))
}

fn pair() -> Result<(Key, Key), BusError> {
    let kp = zmq::CurveKeyPair::new()
        .map_err(|e| BusError::Keys(format!("cannot generate CURVE keys (libzmq without libsodium?): {e}")))?;
    Ok((kp.public_key, kp.secret_key))
}

/// Paths of the key files in a bus key directory.
pub fn paths(dir: &Path) -> (PathBuf, PathBuf) {
    (dir.join("server.key"), dir.join("client.key"))
}

/// Loads both key files from `dir`, creating them on first start.
pub fn load_or_create(dir: &Path) -> Result<(ServerKeys, ClientKeys), BusError> {
    let (sp, cp) = paths(dir);
    if !sp.exists() && !cp.exists() {
        create_private_dir(dir)?;
        let (spub, ssec) = pair()?;
        let (cpub, csec) = pair()?;
        let server = ServerFile { public: z85(&spub), secret: z85(&ssec), authorized_clients: vec![z85(&cpub)] };
        let client = ClientFile { server_public: z85(&spub), public: z85(&cpub), secret: z85(&csec) };
        write_new(&sp, "# LCP bus broker key. Keep secret.\n", &server)?;
        write_new(&cp, "# LCP bus client key: joins a service to this node's bus. Keep secret.\n", &client)?;
        tracing::info!(target: "bus", dir = %dir.display(), "created bus CURVE keys");
    }
    Ok((load_server(&sp)?, load_client(&cp)?))
}

/// Loads the broker key file.
pub fn load_server(path: &Path) -> Result<ServerKeys, BusError> {
    let f: ServerFile = read_toml(path)?;
    let authorized =
        f.authorized_clients.iter().map(|s| unz85(path, "authorized_clients", s)).collect::<Result<Vec<_>, _>>()?;
    Ok(ServerKeys { public: unz85(path, "public", &f.public)?, secret: unz85(path, "secret", &f.secret)?, authorized })
}

/// Loads a client key file (the one to copy to another host to add a worker there).
pub fn load_client(path: &Path) -> Result<ClientKeys, BusError> {
    let f: ClientFile = read_toml(path)?;
    Ok(ClientKeys {
        server_public: unz85(path, "server_public", &f.server_public)?,
        public: unz85(path, "public", &f.public)?,
        secret: unz85(path, "secret", &f.secret)?,
    })
}

fn read_toml<T: for<'de> Deserialize<'de>>(path: &Path) -> Result<T, BusError> {
    let meta = fs::metadata(path).map_err(|e| BusError::Keys(format!("{}: {e}", path.display())))?;
    if meta.permissions().mode() & 0o077 != 0 {
        return Err(BusError::Keys(format!(
            "{} is readable by group or others (mode {:o}); chmod 600 it",
            path.display(),
            meta.permissions().mode() & 0o777
        )));
    }
    let text = fs::read_to_string(path).map_err(|e| BusError::Keys(format!("{}: {e}", path.display())))?;
    toml::from_str(&text).map_err(|e| BusError::Keys(format!("{}: {}", path.display(), e.message())))
}

/// Creates a directory (and parents) readable only by its owner.
pub fn create_private_dir(dir: &Path) -> Result<(), BusError> {
    fs::create_dir_all(dir).map_err(|e| BusError::Keys(format!("{}: {e}", dir.display())))?;
    fs::set_permissions(dir, fs::Permissions::from_mode(0o700))
        .map_err(|e| BusError::Keys(format!("{}: {e}", dir.display())))
}

fn write_new<T: Serialize>(path: &Path, header: &str, value: &T) -> Result<(), BusError> {
    let body = toml::to_string(value).map_err(|e| BusError::Keys(e.to_string()))?;
    let mut f = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(|e| BusError::Keys(format!("{}: {e}", path.display())))?;
    f.write_all(header.as_bytes())
        .and_then(|_| f.write_all(body.as_bytes()))
        .and_then(|_| f.sync_all())
        .map_err(|e| BusError::Keys(format!("{}: {e}", path.display())))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn created_once_private_and_consistent() {
        let d = tempfile::tempdir().unwrap();
        let dir = d.path().join("bus");
        let (s, c) = load_or_create(&dir).unwrap();
        assert_eq!(c.server_public, s.public);
        assert_eq!(s.authorized, vec![c.public]);
        let (sp, cp) = paths(&dir);
        for p in [&sp, &cp] {
            assert_eq!(fs::metadata(p).unwrap().permissions().mode() & 0o777, 0o600);
        }
        assert_eq!(fs::metadata(&dir).unwrap().permissions().mode() & 0o777, 0o700);
        let (s2, c2) = load_or_create(&dir).unwrap();
        assert_eq!((s2.secret, c2.secret), (s.secret, c.secret));
        assert!(!format!("{c:?}").contains(&z85(&c.secret)));
    }

    #[test]
    fn refuses_world_readable_and_corrupt_files() {
        let d = tempfile::tempdir().unwrap();
        let (_, cp) = paths(d.path());
        load_or_create(d.path()).unwrap();
        fs::set_permissions(&cp, fs::Permissions::from_mode(0o644)).unwrap();
        assert!(load_client(&cp).unwrap_err().to_string().contains("chmod 600"));
        fs::set_permissions(&cp, fs::Permissions::from_mode(0o600)).unwrap();
        fs::write(&cp, "server_public = \"abc\"\npublic = \"x\"\nsecret = \"y\"\n").unwrap();
        assert!(load_client(&cp).unwrap_err().to_string().contains("server_public"));
    }
}
