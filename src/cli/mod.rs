//! `lcp-cli`: operator and requester commands over the bus.

pub mod balance;
pub mod bus;
pub mod channel;
pub mod health;
pub mod invoice;
pub mod job;
pub mod payment;
pub mod peer;
pub mod status;
pub mod wire;
pub mod worker;

use crate::bus::{Bus, BusError, Endpoint, ServiceId};
use crate::config::{NodeArgs, NodeConfig};
use crate::datadir::Datadir;
use std::io::IsTerminal;
use std::time::{Duration, Instant};

/// lncli-like help layout.
pub const HELP_TEMPLATE: &str = "\
NAME:
   {name} - {about}

USAGE:
   {usage}

VERSION:
   {version}

COMMANDS:
{subcommands}

OPTIONS:
{options}{after-help}
";

/// The command line.
#[derive(clap::Parser, Debug)]
#[command(
    name = "lcp-cli",
    version,
    about = "control plane for an LCP node",
    help_template = HELP_TEMPLATE,
    subcommand_value_name = "COMMAND",
    after_help = "Talks to a running node (lcpnode, or lcpd with its services) over the node's bus.\n\
                  The bus endpoint is read from DATADIR/bus.endpoint unless --bus is given."
)]
pub struct Cli {
    /// Shared options.
    #[command(flatten)]
    pub node: NodeArgs,
    /// Print JSON instead of text
    #[arg(long, global = true)]
    pub json: bool,
    /// How long to wait for the node, in seconds
    #[arg(long, global = true, default_value_t = 5, env = "LCP_CLI_TIMEOUT", value_name = "SECS")]
    pub timeout: u64,
    /// The command.
    #[command(subcommand)]
    pub cmd: Command,
}

/// Commands.
#[derive(clap::Subcommand, Debug)]
pub enum Command {
    /// Show which services are up, their versions and the node id
    Status,
    /// Exit 0 when the named services are registered on the bus and answer (container health
    /// checks); `jobd` alone means any worker
    Health {
        /// Services to check [default: lcpd peerd payd jobd]
        #[arg(env = "LCP_HEALTH_SERVICES", value_delimiter = ',', value_name = "SERVICE")]
        services: Vec<String>,
    },
    /// Lightning peers: connect, list, disconnect
    #[command(subcommand)]
    Peer(peer::PeerCmd),
    /// Payment channels: open (devnet), list, close
    #[command(subcommand)]
    Channel(channel::ChannelCmd),
    /// LCP jobs: quote, run, accept, list, show, cancel; LCP peers
    #[command(subcommand)]
    Job(job::JobCmd),
    /// Invoices this node issued
    #[command(subcommand)]
    Invoice(invoice::InvoiceCmd),
    /// Payments this node made
    #[command(subcommand)]
    Payment(payment::PaymentCmd),
    /// What the node can send and receive, payment and invoice counts
    Balance,
    /// The node's jobd workers
    #[command(subcommand)]
    Worker(worker::WorkerCmd),
    /// Decode, encode and hash BOLT #1 and LCP messages (offline, no node needed)
    #[command(subcommand)]
    Wire(wire::WireCmd),
    /// The bus's CURVE keys (offline, no node needed)
    #[command(subcommand)]
    Bus(bus::BusCmd),
}

/// CLI errors: printed as one line, exit code 1.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    #[error(transparent)]
    Config(#[from] crate::config::ConfigError),
    #[error("no node data directory at {0} (start the node first, or pass --datadir)")]
    NoDatadir(String),
    #[error("cannot reach the node's bus at {endpoint}: {why} (is lcpnode or lcpd running?)")]
    Unreachable { endpoint: String, why: String },
    #[error(transparent)]
    Bus(#[from] BusError),
    #[error(transparent)]
    Datadir(#[from] crate::datadir::DatadirError),
    #[error("{0}")]
    Other(String),
}

/// Runs a parsed command line and returns what to print on stdout.
pub async fn run(cli: Cli) -> Result<String, CliError> {
    let (cfg, file) = cli.node.resolve()?;
    let explicit_bus = cli.node.bus.is_some() || file.node.bus.is_some();
    let timeout = Duration::from_secs(cli.timeout.max(1));
    // Offline commands need no node.
    let cmd = match cli.cmd {
        Command::Wire(cmd) => {
            return wire::run(&cmd, cli.json, &mut std::io::stdin()).map_err(|e| CliError::Other(e.to_string()))
        }
        Command::Bus(cmd) => return bus::run(&cmd, cli.json),
        other => other,
    };
    let (bus, ep) = connect(&cfg, explicit_bus, timeout).await?;
    let out = match cmd {
        Command::Status => status::run(&bus, &ep, cli.json, timeout).await,
        Command::Health { services } => health::run(&bus, &services, cli.json, timeout).await,
        Command::Worker(cmd) => worker::run(&bus, cmd, cli.json, timeout).await,
        Command::Peer(cmd) => peer::run(&bus, cmd, cli.json, timeout).await,
        Command::Channel(cmd) => channel::run(&bus, cmd, cli.json, timeout).await,
        Command::Job(cmd) => job::run(&bus, cmd, cli.json, timeout).await,
        Command::Invoice(cmd) => invoice::run(&bus, cmd, cli.json, timeout).await,
        Command::Payment(cmd) => payment::run(&bus, cmd, cli.json, timeout).await,
        Command::Balance => balance::run(&bus, cli.json, timeout).await,
        Command::Wire(_) | Command::Bus(_) => unreachable_offline(),
    };
    bus.close();
    out
}

/// The progress line of a streaming command on stderr: bytes streamed and time elapsed, redrawn in
/// place at most ten times a second, also while nothing has arrived yet.
///
/// Drawn only when stderr is a terminal and the streamed bytes do not go to that same terminal
/// (they are collected for `--json`, or stdout is a file or a pipe): a progress line drawn over
/// the streamed text would garble it. With both on the terminal, the text itself shows progress
/// and the summary at the end gives bytes and time.
pub struct Progress {
    on: bool,
    started: Instant,
    drawn: Option<Instant>,
    bytes: u64,
}

impl Progress {
    /// How often the line is redrawn while waiting.
    pub const TICK: Duration = Duration::from_millis(250);

    /// A progress line for a command started at `started`.
    pub fn new(json: bool, started: Instant) -> Self {
        let on = std::io::stderr().is_terminal() && (json || !std::io::stdout().is_terminal());
        Self { on, started, drawn: None, bytes: 0 }
    }

    /// `n` more bytes arrived.
    pub fn add(&mut self, n: usize) {
        self.bytes += n as u64;
        self.draw(false);
    }

    /// Redraws the line (at most ten times a second unless `force`).
    pub fn draw(&mut self, force: bool) {
        if !self.on {
            return;
        }
        let now = Instant::now();
        if !force && self.drawn.is_some_and(|t| now.duration_since(t) < Duration::from_millis(100)) {
            return;
        }
        self.drawn = Some(now);
        eprint!("\r{} bytes, {:.1}s ", self.bytes, now.duration_since(self.started).as_secs_f64());
    }

    /// Draws the final state and ends the line, if one was drawn.
    pub fn finish(&mut self) {
        if self.on && self.drawn.is_some() {
            self.draw(true);
            eprintln!();
        }
    }
}

/// Parses a 32-byte id or hash given as 64 hex digits; `what` names it in the error.
pub fn parse_hex32(what: &str, s: &str) -> Result<[u8; 32], CliError> {
    let b = hex::decode(s.trim()).map_err(|_| CliError::Other(format!("{what} {s:?} is not hex")))?;
    b.try_into().map_err(|_| CliError::Other(format!("{what} must be 32 bytes (64 hex digits)")))
}

/// Pretty JSON for `--json` output. Ids and hashes (32-byte values, which the bus rows carry as
/// byte arrays) are printed as hex, as everywhere else.
pub fn to_json<T: serde::Serialize + ?Sized>(v: &T) -> Result<String, CliError> {
    let mut v = serde_json::to_value(v).map_err(|e| CliError::Other(e.to_string()))?;
    hex_ids(&mut v);
    serde_json::to_string_pretty(&v).map_err(|e| CliError::Other(e.to_string()))
}

/// Replaces every array of exactly 32 byte values with its hex string.
fn hex_ids(v: &mut serde_json::Value) {
    use serde_json::Value;
    match v {
        Value::Array(a) => {
            let bytes: Option<Vec<u8>> = (a.len() == 32)
                .then(|| a.iter().map(|x| x.as_u64().and_then(|n| u8::try_from(n).ok())).collect())
                .flatten();
            match bytes {
                Some(b) => *v = Value::String(hex::encode(b)),
                None => a.iter_mut().for_each(hex_ids),
            }
        }
        Value::Object(o) => o.values_mut().for_each(hex_ids),
        _ => {}
    }
}

/// Parses a node id: 66 hex digits of a compressed public key.
pub fn parse_node_id(s: &str) -> Result<String, CliError> {
    let malformed = |why: &str| CliError::Other(format!("node id {s:?} is malformed: {why}"));
    let s = s.trim();
    if s.len() != 66 {
        return Err(malformed("want 66 hex digits (a compressed public key)"));
    }
    let b = hex::decode(s).map_err(|_| malformed("not hex"))?;
    lightning::bitcoin::secp256k1::PublicKey::from_slice(&b).map_err(|_| malformed("not a public key"))?;
    Ok(s.to_ascii_lowercase())
}

fn unreachable_offline() -> Result<String, CliError> {
    Err(CliError::Other("internal: an offline command reached the online dispatch".into()))
}

/// Connects to the node's bus as a client and completes the readiness handshake.
pub async fn connect(cfg: &NodeConfig, explicit_bus: bool, timeout: Duration) -> Result<(Bus, Endpoint), CliError> {
    if !cfg.datadir.is_dir() {
        return Err(CliError::NoDatadir(cfg.datadir.display().to_string()));
    }
    let dd = Datadir::open(&cfg.datadir)?;
    let ep = if explicit_bus { cfg.bus.clone() } else { dd.read_bus_endpoint().unwrap_or_else(|| cfg.bus.clone()) };
    let keys = if ep.is_remote() {
        Some(crate::bus::keys::load_client(&cfg.bus_key)?)
    } else {
        return Err(CliError::Other(format!("{ep}: lcp-cli runs in its own process and cannot use an inproc:// bus")));
    };
    // The pid alone is not unique across containers joined to one bus (each starts counting at 1),
    // and a second client with the same id would take over the first one's routing identity.
    let id = ServiceId::Client(format!("cli-{}-{:08x}", std::process::id(), rand::random::<u32>()));
    let bus = Bus::connect_zmq(&ep, id, keys.as_ref())?;
    if let Err(e) = bus.wait_ready(timeout).await {
        bus.close();
        return Err(CliError::Unreachable { endpoint: ep.to_string(), why: e.to_string() });
    }
    Ok((bus, ep))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_output_prints_32_byte_values_as_hex() {
        #[derive(serde::Serialize)]
        struct Row {
            job_id: [u8; 32],
            preimage: Option<[u8; 32]>,
            none: Option<[u8; 32]>,
            runs: Vec<[u8; 32]>,
            short: Vec<u8>,
            counts: Vec<u32>,
        }
        let row = Row {
            job_id: [0xab; 32],
            preimage: Some([1; 32]),
            none: None,
            runs: vec![[2; 32]],
            short: vec![1, 2, 3],
            counts: vec![300; 32],
        };
        let v: serde_json::Value = serde_json::from_str(&to_json(&row).expect("json")).expect("parses");
        assert_eq!(v["job_id"], "ab".repeat(32));
        assert_eq!(v["preimage"], "01".repeat(32));
        assert_eq!(v["none"], serde_json::Value::Null);
        assert_eq!(v["runs"][0], "02".repeat(32));
        assert_eq!(v["short"], serde_json::json!([1, 2, 3]));
        // 32 numbers that are not bytes stay numbers.
        assert_eq!(v["counts"][0], 300);
    }

    #[test]
    fn node_ids_are_checked() {
        let key = "02".to_string() + "79be667ef9dcbbac55a06295ce870b07029bfcdb2dce28d959f2815b16f81798";
        assert_eq!(parse_node_id(&key.to_uppercase()).expect("a key"), key);
        for (bad, why) in
            [("02abc", "66 hex digits"), (&"zz".repeat(33)[..], "not hex"), (&"05".repeat(33)[..], "not a public key")]
        {
            let e = parse_node_id(bad).expect_err(bad).to_string();
            assert!(e.contains("is malformed") && e.contains(why), "{e}");
        }
    }
}
