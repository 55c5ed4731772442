//! lcpd's options: flags (`LCP_*` env), the `[lcpd]` file section, and the resolved config.

use crate::config::{pick, ConfigError, NodeArgs, NodeConfig};
use serde::{Deserialize, Serialize};

/// `lcpd` command line.
#[derive(clap::Parser, Debug)]
#[command(name = "lcpd", version, about = "LCP node: LCP sessions (provider and requester); hosts the bus broker")]
pub struct Opts {
    /// Shared options.
    #[command(flatten)]
    pub node: NodeArgs,
    /// lcpd's own options.
    #[command(flatten)]
    pub lcpd: LcpdArgs,
}

/// Default limit of jobs running or queued on this node's workers.
pub const DEFAULT_MAX_INFLIGHT_JOBS: u16 = 32;

/// Default lifetime of a quote, seconds (the reference's default).
pub const DEFAULT_QUOTE_TTL_SECS: u64 = 300;

/// Default capacity of a devnet channel opened for a payment, satoshis.
pub const DEFAULT_AUTO_CHANNEL_SATS: u64 = 1_000_000;

/// lcpd's own flags.
#[derive(clap::Args, Debug, Clone, Default)]
pub struct LcpdArgs {
    /// Jobs running or waiting for a worker at most; more are refused [default: 32]
    #[arg(long, env = "LCP_MAX_INFLIGHT_JOBS", value_name = "N")]
    pub max_inflight_jobs: Option<u16>,
    /// Seconds a quote stays valid; payment, execution and delivery fit in it [default: 300]
    #[arg(long, env = "LCP_QUOTE_TTL_SECS", value_name = "SECS")]
    pub quote_ttl_secs: Option<u64>,
    /// Devnet: capacity of the channel a payment opens to a provider when no channel can carry it;
    /// 0 turns that off [default: 1000000]
    #[arg(long, env = "LCP_AUTO_CHANNEL_SATS", value_name = "SATS")]
    pub auto_channel_sats: Option<u64>,
}

/// `[lcpd]` section of the config file.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct LcpdFile {
    /// See [`LcpdArgs::max_inflight_jobs`].
    pub max_inflight_jobs: Option<u16>,
    /// See [`LcpdArgs::quote_ttl_secs`].
    pub quote_ttl_secs: Option<u64>,
    /// See [`LcpdArgs::auto_channel_sats`].
    pub auto_channel_sats: Option<u64>,
}

/// Resolved lcpd settings.
#[derive(Debug, Clone)]
pub struct LcpdConfig {
    /// Shared settings.
    pub node: NodeConfig,
    /// Jobs running or queued at most (advertised as the manifest's `max_inflight_jobs`).
    pub max_inflight_jobs: u16,
    /// Lifetime of a quote, seconds.
    pub quote_ttl_secs: u64,
    /// Devnet: capacity of a channel opened for a payment (0: never open one).
    pub auto_channel_sats: u64,
}

impl LcpdConfig {
    /// Flags/env over file over defaults.
    pub fn resolve(node: &NodeConfig, args: &LcpdArgs, file: &LcpdFile) -> Result<Self, ConfigError> {
        let max_inflight_jobs = pick(args.max_inflight_jobs, file.max_inflight_jobs, DEFAULT_MAX_INFLIGHT_JOBS);
        if max_inflight_jobs == 0 {
            return Err(ConfigError::Invalid { what: "max-inflight-jobs", msg: "must be at least 1".into() });
        }
        let quote_ttl_secs = pick(args.quote_ttl_secs, file.quote_ttl_secs, DEFAULT_QUOTE_TTL_SECS);
        if !(10..=86_400).contains(&quote_ttl_secs) {
            return Err(ConfigError::Invalid { what: "quote-ttl-secs", msg: "must be between 10 and 86400".into() });
        }
        let auto_channel_sats = pick(args.auto_channel_sats, file.auto_channel_sats, DEFAULT_AUTO_CHANNEL_SATS);
        Ok(Self { node: node.clone(), max_inflight_jobs, quote_ttl_secs, auto_channel_sats })
    }
}
