//! `lcp-cli bus ...`: the bus's CURVE keys, offline.

use super::{to_json, CliError};
use crate::bus::keys;
use serde::Serialize;
use std::path::{Path, PathBuf};

/// `bus` subcommands.
#[derive(clap::Subcommand, Debug)]
pub enum BusCmd {
    /// Write a broker key (server.key) and a client key (client.key) into DIR, as lcpd makes them
    /// in DATADIR/bus on first start; existing keys are kept. Give server.key to the bus host
    /// (`lcpd --bus-server-key`) and client.key to every service that joins (`--bus-key`)
    Keygen {
        /// Directory for the two files (created, mode 0700)
        dir: PathBuf,
    },
}

/// What `bus keygen` made or found. Public keys only: secrets are never printed.
#[derive(Debug, Serialize)]
pub struct KeygenReport {
    /// The broker key file.
    pub server_key: String,
    /// The client key file.
    pub client_key: String,
    /// The broker's public key (Z85).
    pub server_public: String,
    /// The client's public key (Z85).
    pub client_public: String,
    /// Whether the files were made now (false: they were there and are unchanged).
    pub created: bool,
}

/// Runs a `bus` subcommand.
pub fn run(cmd: &BusCmd, json: bool) -> Result<String, CliError> {
    match cmd {
        BusCmd::Keygen { dir } => {
            let r = keygen(dir)?;
            if json {
                return to_json(&r);
            }
            Ok(format!(
                "{} {}\n  broker public key {}\n{} {}\n  client public key {}",
                if r.created { "wrote" } else { "kept " },
                r.server_key,
                r.server_public,
                if r.created { "wrote" } else { "kept " },
                r.client_key,
                r.client_public
            ))
        }
    }
}

/// Makes (or loads) the key pair in `dir` with the same code lcpd uses for `DATADIR/bus`.
pub fn keygen(dir: &Path) -> Result<KeygenReport, CliError> {
    let (sp, cp) = keys::paths(dir);
    let created = !sp.exists() && !cp.exists();
    let (server, client) = keys::load_or_create(dir)?;
    Ok(KeygenReport {
        server_key: sp.display().to_string(),
        client_key: cp.display().to_string(),
        server_public: keys::z85(&server.public),
        client_public: keys::z85(&client.public),
        created,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn keygen_writes_a_matching_private_pair_once() {
        let d = tempfile::tempdir().unwrap();
        let dir = d.path().join("secrets");
        let r = keygen(&dir).unwrap();
        assert!(r.created);
        let server = keys::load_server(Path::new(&r.server_key)).unwrap();
        let client = keys::load_client(Path::new(&r.client_key)).unwrap();
        assert_eq!(server.authorized, vec![client.public]);
        assert_eq!(client.server_public, server.public);
        assert_eq!(std::fs::metadata(&dir).unwrap().permissions().mode() & 0o777, 0o700);
        let text = run(&BusCmd::Keygen { dir: dir.clone() }, false).unwrap();
        assert!(text.contains("kept") && text.contains(&r.server_public), "{text}");
        assert!(!text.contains(&keys::z85(&server.secret)) && !text.contains(&keys::z85(&client.secret)));
        // A second run keeps the keys.
        let again = keygen(&dir).unwrap();
        assert!(!again.created);
        assert_eq!(keys::load_server(Path::new(&again.server_key)).unwrap().secret, server.secret);
    }
}
