//! payd's options: flags (`LCP_*` env), the `[payd]` file section, and the resolved config.

use crate::config::{ConfigError, NodeArgs, NodeConfig};
use serde::{Deserialize, Serialize};

/// `payd` command line.
#[derive(clap::Parser, Debug)]
#[command(name = "payd", version, about = "LCP node: payments (invoices, channels, pay) on the bus")]
pub struct Opts {
    /// Shared options.
    #[command(flatten)]
    pub node: NodeArgs,
    /// payd's own options.
    #[command(flatten)]
    pub payd: PaydArgs,
}

/// payd's own flags.
#[derive(clap::Args, Debug, Clone, Default)]
pub struct PaydArgs {}

/// `[payd]` section of the config file.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct PaydFile {}

/// Resolved payd settings.
#[derive(Debug, Clone)]
pub struct PaydConfig {
    /// Shared settings.
    pub node: NodeConfig,
}

impl PaydConfig {
    /// Flags/env over file over defaults.
    pub fn resolve(node: &NodeConfig, _args: &PaydArgs, _file: &PaydFile) -> Result<Self, ConfigError> {
        Ok(Self { node: node.clone() })
    }
}
