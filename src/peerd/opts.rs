//! peerd's options: flags (`LCP_*` env), the `[peerd]` file section, and the resolved config.

use crate::config::{ConfigError, NodeArgs, NodeConfig};
use serde::{Deserialize, Serialize};

/// `peerd` command line.
#[derive(clap::Parser, Debug)]
#[command(name = "peerd", version, about = "LCP node: peer connections (BOLT #8 + BOLT #1) on the bus")]
pub struct Opts {
    /// Shared options.
    #[command(flatten)]
    pub node: NodeArgs,
    /// peerd's own options.
    #[command(flatten)]
    pub peerd: PeerdArgs,
}

/// peerd's own flags.
#[derive(clap::Args, Debug, Clone, Default)]
pub struct PeerdArgs {}

/// `[peerd]` section of the config file.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct PeerdFile {}

/// Resolved peerd settings.
#[derive(Debug, Clone)]
pub struct PeerdConfig {
    /// Shared settings.
    pub node: NodeConfig,
}

impl PeerdConfig {
    /// Flags/env over file over defaults.
    pub fn resolve(node: &NodeConfig, _args: &PeerdArgs, _file: &PeerdFile) -> Result<Self, ConfigError> {
        Ok(Self { node: node.clone() })
    }
}
