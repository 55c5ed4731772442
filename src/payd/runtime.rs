//! payd's runtime: `run(config, bus, shutdown)`.

use super::{PaydConfig, PaydServiceError};
use crate::bus::Bus;
use crate::datadir::Datadir;
use crate::node;
use tokio_util::sync::CancellationToken;

/// Log target.
pub const TARGET: &str = "payd";

/// Schema of `payd.db` (forward-only migrations; see `crate::store`).
pub const MIGRATIONS: &[&str] = &[];

/// Runs payd until `shutdown` fires.
pub async fn run(config: PaydConfig, bus: Bus, shutdown: CancellationToken) -> Result<(), PaydServiceError> {
    let dd = Datadir::open(&config.node.datadir)?;
    let key = dd.node_secret()?;
    let _db = crate::store::open(&dd.db_path("payd"), MIGRATIONS)?;
    bus.set_info(Some(key.node_id_hex()), vec![("network".into(), config.node.network.to_string())]);
    tracing::info!(target: TARGET, node_id = %key.node_id_hex(), network = %config.node.network, "payd ready");
    node::serve(
        &bus,
        &shutdown,
        |m| Err(node::unimplemented("payd", m)),
        |m| tracing::debug!(target: TARGET, from = %m.from, "event ignored"),
    )
    .await?;
    Ok(())
}
