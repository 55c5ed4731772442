//! jobd's runtime: `run(config, bus, shutdown)`.

use super::{JobdConfig, JobdError};
use crate::bus::Bus;
use crate::datadir::Datadir;
use crate::node;
use tokio_util::sync::CancellationToken;

/// Log target.
pub const TARGET: &str = "jobd";

/// Runs jobd until `shutdown` fires.
pub async fn run(config: JobdConfig, bus: Bus, shutdown: CancellationToken) -> Result<(), JobdError> {
    Datadir::open(&config.node.datadir)?;
    bus.set_info(None, vec![("worker".into(), config.worker_name.clone())]);
    tracing::info!(target: TARGET, worker = %config.worker_name, "jobd ready");
    node::serve(
        &bus,
        &shutdown,
        |m| Err(node::unimplemented("jobd", m)),
        |m| tracing::debug!(target: TARGET, from = %m.from, "event ignored"),
    )
    .await?;
    Ok(())
}
