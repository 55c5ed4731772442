//! lcpd's runtime: `run(config, bus, shutdown)`.

use super::{LcpdConfig, LcpdError};
use crate::bus::Bus;
use crate::datadir::Datadir;
use crate::node;
use tokio_util::sync::CancellationToken;

/// Log target.
pub const TARGET: &str = "lcpd";

/// Schema of `lcpd.db` (forward-only migrations; see `crate::store`).
pub const MIGRATIONS: &[&str] = &[];

/// Runs lcpd until `shutdown` fires.
pub async fn run(config: LcpdConfig, bus: Bus, shutdown: CancellationToken) -> Result<(), LcpdError> {
    let dd = Datadir::open(&config.node.datadir)?;
    let _db = crate::store::open(&dd.db_path("lcpd"), MIGRATIONS)?;
    bus.set_info(None, vec![("network".into(), config.node.network.to_string())]);
    tracing::info!(target: TARGET, "lcpd ready");
    node::serve(
        &bus,
        &shutdown,
        |m| Err(node::unimplemented("lcpd", m)),
        |m| tracing::debug!(target: TARGET, from = %m.from, "event ignored"),
    )
    .await?;
    Ok(())
}
