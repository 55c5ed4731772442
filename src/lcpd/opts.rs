//! lcpd's options: flags (`LCP_*` env), the `[lcpd]` file section, and the resolved config.

use crate::config::{ConfigError, NodeArgs, NodeConfig};
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

/// lcpd's own flags.
#[derive(clap::Args, Debug, Clone, Default)]
pub struct LcpdArgs {}

/// `[lcpd]` section of the config file.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct LcpdFile {}

/// Resolved lcpd settings.
#[derive(Debug, Clone)]
pub struct LcpdConfig {
    /// Shared settings.
    pub node: NodeConfig,
}

impl LcpdConfig {
    /// Flags/env over file over defaults.
    pub fn resolve(node: &NodeConfig, _args: &LcpdArgs, _file: &LcpdFile) -> Result<Self, ConfigError> {
        Ok(Self { node: node.clone() })
    }
}
