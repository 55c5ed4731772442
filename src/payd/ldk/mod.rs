//! The embedded LDK channel engine, driven without LDK's `PeerManager`.
//!
//! The Lightning connection belongs to peerd. peerd reports each connection session with
//! [`LdkEngine::peer_connected`] (passing the peer's raw Init), forwards every channel message with
//! [`LdkEngine::handle_message`], reports the end of the session with
//! [`LdkEngine::peer_disconnected`], and sends to the peer, in order, every [`PeerOutput`] the engine
//! emits on the channel given at construction. Messages tagged with a session that is not the
//! peer's current one are dropped, in both directions, as the bus must deliver each message exactly
//! once and in order within a session.
//!
//! Channel state is persisted before any message that depends on it leaves the engine: channel
//! monitors synchronously on every update, and the `ChannelManager` at the end of every processing
//! round in which LDK asks for it, before the round's messages are emitted.

pub mod bridge;
mod chain;
mod persist;
mod store;

pub use bridge::{
    feature_bit_set_be, Dispatched, CHANNEL_MESSAGE_TYPES, MSG_CHANNEL_REESTABLISH, MSG_ERROR, MSG_INIT,
    UNSUPPORTED_FEATURE_BITS,
};
pub use chain::{
    fabricate_funding_tx, inbound_channel_decision, keys_seed_from_node_secret, InboundChannelDecision, TrustPolicy,
};
pub use store::{ClosedChannelRecord, Store, CLOSED_CHANNEL_KEEP_SECS, SCHEMA_VERSION};

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, RwLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use lightning::bitcoin::hashes::{sha256, Hash};
use lightning::bitcoin::secp256k1::{PublicKey, SecretKey};
use lightning::bitcoin::BlockHash;
use lightning::chain::chainmonitor::ChainMonitor;
use lightning::chain::channelmonitor::{Balance, ChannelMonitor};
use lightning::chain::{BestBlock, Filter, Watch};
use lightning::events::{Event, EventsProvider, ReplayEvent};
use lightning::ln::channelmanager::{
    Bolt11InvoiceParameters, Bolt11PaymentError, ChainParameters, ChannelManager, ChannelManagerReadArgs, PaymentId,
    RecentPaymentDetails, Retry, RetryableSendFailure,
};
use lightning::ln::msgs::{self, BaseMessageHandler};
use lightning::ln::types::ChannelId;
use lightning::onion_message::messenger::DefaultMessageRouter;
use lightning::routing::gossip::NetworkGraph;
use lightning::routing::router::{DefaultRouter, RouteParametersConfig};
use lightning::routing::scoring::{
    ProbabilisticScorer, ProbabilisticScoringDecayParameters, ProbabilisticScoringFeeParameters,
};
use lightning::sign::{InMemorySigner, KeysManager, NodeSigner, RandomBytes};
use lightning::types::features::InitFeatures;
use lightning::types::payment::{PaymentHash, PaymentPreimage};
use lightning::util::config::UserConfig;
use lightning::util::ser::{LengthReadable, ReadableArgs, Writeable};
use lightning_invoice::{Bolt11Invoice, Bolt11InvoiceDescription, Sha256};
use tokio::sync::{broadcast, mpsc, watch};
use tokio_util::sync::CancellationToken;

use crate::payd::backend::{
    check_before_pay, decode_bolt11, describe_invoice, BoxFuture, ChannelBalance, CreatedInvoice, DecodedInvoice,
    InvoiceRecord, InvoiceStatus, Network, PaidInvoice, PayParams, PaydError, PaydEvent, PaymentBackend, PaymentRecord,
    PaymentStatus,
};
use bridge::Outbound;
use chain::{ConstantFeeEstimator, MemoryBroadcaster, NodeKeys, TracingLogger};
use persist::{write_atomic, FilePersister, MANAGER_FILE};

type Graph = NetworkGraph<Arc<TracingLogger>>;
type Scorer = ProbabilisticScorer<Arc<Graph>, Arc<TracingLogger>>;
type Router = DefaultRouter<
    Arc<Graph>,
    Arc<TracingLogger>,
    Arc<KeysManager>,
    Arc<RwLock<Scorer>>,
    ProbabilisticScoringFeeParameters,
    Scorer,
>;
type MsgRouter = DefaultMessageRouter<Arc<Graph>, Arc<TracingLogger>, Arc<KeysManager>>;
type ChainMon = ChainMonitor<
    InMemorySigner,
    Arc<dyn Filter + Send + Sync>,
    Arc<MemoryBroadcaster>,
    Arc<ConstantFeeEstimator>,
    Arc<TracingLogger>,
    Arc<FilePersister>,
    Arc<KeysManager>,
>;
type Manager = ChannelManager<
    Arc<ChainMon>,
    Arc<MemoryBroadcaster>,
    Arc<KeysManager>,
    Arc<NodeKeys>,
    Arc<KeysManager>,
    Arc<ConstantFeeEstimator>,
    Arc<Router>,
    Arc<MsgRouter>,
    Arc<TracingLogger>,
>;

/// File name of the invoice and payment database inside the state directory.
pub const DB_FILE: &str = "payd.sqlite";
/// How often LDK's timer tick runs.
pub const DEFAULT_TIMER_TICK: Duration = Duration::from_secs(60);
/// How many `channel_reestablish` messages for a channel we do not know are answered per session
/// and channel id; further ones are dropped (this stops the bogus-reestablish ping-pong between
/// two nodes that both forgot a channel).
pub const DEFAULT_UNKNOWN_REESTABLISH_LIMIT: u32 = 1;
/// Capacity of the event broadcast channel.
pub const EVENT_CAPACITY: usize = 1024;
/// How many times `pay` tries to hand a payment to LDK while the channels are busy (an HTLC
/// still being added or removed, a channel to the payee not usable yet) before it gives up;
/// it also gives up at the caller's timeout.
pub const MAX_SEND_ATTEMPTS: u32 = 500;

/// Configuration of the LDK engine.
#[derive(Clone, Debug)]
pub struct LdkConfig {
    /// The network. Only [`Network::Devnet`] is accepted until a chain source exists.
    pub network: Network,
    /// Directory of the channel state and the payd database (created if missing).
    pub state_dir: PathBuf,
    /// The 32-byte node secret shared with peerd: invoices are signed with it.
    pub node_secret: [u8; 32],
    /// Who may open zero-conf channels to this node (honoured on devnet only).
    pub trust: TrustPolicy,
    /// Interval of LDK's timer tick.
    pub timer_tick: Duration,
    /// See [`DEFAULT_UNKNOWN_REESTABLISH_LIMIT`].
    pub unknown_reestablish_limit: u32,
}

impl LdkConfig {
    /// A devnet configuration with default settings.
    pub fn devnet(state_dir: PathBuf, node_secret: [u8; 32]) -> Self {
        LdkConfig {
            network: Network::Devnet,
            state_dir,
            node_secret,
            trust: TrustPolicy::AllPeersOnDevnet,
            timer_tick: DEFAULT_TIMER_TICK,
            unknown_reestablish_limit: DEFAULT_UNKNOWN_REESTABLISH_LIMIT,
        }
    }
}

/// Something peerd must do for the engine, in the order emitted.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PeerOutput {
    /// Send `raw` (2-byte type then payload) to `node_id` on connection `session_id`.
    Send {
        /// The peer.
        node_id: PublicKey,
        /// The connection session the message belongs to; drop it if that session is gone.
        session_id: u64,
        /// The message.
        raw: Vec<u8>,
    },
    /// Close connection `session_id` to `node_id` (the engine already treats it as gone).
    Disconnect {
        /// The peer.
        node_id: PublicKey,
        /// The connection session.
        session_id: u64,
        /// Why.
        reason: String,
    },
}

/// A channel as reported by the engine.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ChannelInfo {
    /// The channel id.
    pub channel_id: [u8; 32],
    /// The peer.
    pub counterparty: PublicKey,
    /// Channel size.
    pub capacity_sat: u64,
    /// What we can send now in one HTLC.
    pub next_outbound_htlc_limit_msat: u64,
    /// Our balance minus reserve.
    pub outbound_capacity_msat: u64,
    /// What we can receive.
    pub inbound_capacity_msat: u64,
    /// Whether payments can use it now.
    pub is_usable: bool,
    /// Whether we funded it.
    pub is_outbound: bool,
    /// HTLCs we offered that are not resolved yet.
    pub pending_outbound_htlcs: usize,
    /// HTLCs offered to us that are not resolved yet.
    pub pending_inbound_htlcs: usize,
}

/// Channel lifecycle notifications (internal to the engine and its tests).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ChannelEvent {
    /// A channel became ready.
    Ready {
        /// The channel.
        channel_id: [u8; 32],
        /// Caller's id given at open.
        user_channel_id: u128,
        /// The peer.
        counterparty: PublicKey,
    },
    /// A channel closed.
    Closed {
        /// The channel.
        channel_id: [u8; 32],
        /// Caller's id given at open.
        user_channel_id: u128,
        /// LDK's reason.
        reason: String,
    },
}

/// Counters that tests and operators can read.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct EngineStats {
    /// Inbound messages dropped because their session was not current.
    pub stale_dropped: u64,
    /// Unknown-channel reestablishes dropped by the rate limit.
    pub reestablish_dropped: u64,
    /// ChannelManager writes.
    pub manager_writes: u64,
    /// Processing passes (each drains events, HTLC forwards and messages once).
    pub rounds: u64,
}

struct Session {
    id: u64,
    unknown_reestablish: HashMap<ChannelId, u32>,
}

struct Inner {
    config: LdkConfig,
    node_id: PublicKey,
    cm: Arc<Manager>,
    chain_monitor: Arc<ChainMon>,
    store: Mutex<Store>,
    peers: Mutex<HashMap<PublicKey, Session>>,
    process_lock: Mutex<()>,
    out: mpsc::UnboundedSender<PeerOutput>,
    events: broadcast::Sender<PaydEvent>,
    channel_events: broadcast::Sender<ChannelEvent>,
    pay_lock: tokio::sync::Mutex<()>,
    /// Bumped after every processing round: anything about the channels may have changed.
    changes: watch::Sender<u64>,
    stopped: AtomicBool,
    stale_dropped: AtomicU64,
    reestablish_dropped: AtomicU64,
    manager_writes: AtomicU64,
    rounds: AtomicU64,
    entropy: RandomBytes,
    /// Our committed outbound HTLCs (payment hash, amount) per channel, as of the end of the last
    /// processing round: what a force close of the channel strands (see [`Inner::channel_closed`]).
    htlcs: Mutex<HtlcsByChannel>,
}

/// Per channel id: our committed outbound HTLCs as (payment hash, amount msat).
type HtlcsByChannel = HashMap<[u8; 32], Vec<([u8; 32], u64)>>;

/// Our outbound HTLCs that are part of a commitment (the peer may hold a signed commitment with
/// them), for every open channel (an empty list for a channel without any). HTLCs still in the
/// holding cell are not: LDK fails them back on a close.
fn committed_outbound_htlcs(cm: &Manager) -> HtlcsByChannel {
    cm.list_channels()
        .into_iter()
        .map(|c| {
            let htlcs = c
                .pending_outbound_htlcs
                .iter()
                .filter(|h| h.htlc_id.is_some())
                .map(|h| (h.payment_hash.0, h.amount_msat))
                .collect();
            (c.channel_id.0, htlcs)
        })
        .collect()
}

/// The LDK channel engine (see the module documentation).
///
/// Its peer methods are synchronous and do the protocol work (signing, persistence) before
/// returning; they take a few milliseconds and may block, so call them from a thread or task that
/// may block. Construct it inside a tokio runtime: it spawns its driver task there.
pub struct LdkEngine {
    inner: Arc<Inner>,
    shutdown: CancellationToken,
}

use crate::clock::now_secs;

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A poisoned lock means a panic elsewhere already; the data (a table or a connection) is
    // still consistent at statement granularity, so continue with it.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

fn user_config() -> UserConfig {
    let mut c = UserConfig { manually_accept_inbound_channels: true, ..UserConfig::default() };
    c.channel_handshake_config.max_inbound_htlc_value_in_flight_percent_of_channel = 100;
    c
}

fn secret_key(bytes: &[u8; 32]) -> Result<SecretKey, PaydError> {
    SecretKey::from_slice(bytes).map_err(|e| PaydError::InvalidArgument {
        field: "node_secret",
        reason: format!("not a valid secp256k1 secret key: {e}"),
    })
}

impl LdkEngine {
    /// Start the engine: load the channel state from `config.state_dir` (or create it), open the
    /// database and spawn the driver task. Outputs for peerd go to `out`, in order.
    ///
    /// Fails for any network but devnet ([`PaydError::ChainSourceRequired`]), for an invalid node
    /// secret, and for unreadable or inconsistent state.
    pub fn start(config: LdkConfig, out: mpsc::UnboundedSender<PeerOutput>) -> Result<Arc<LdkEngine>, PaydError> {
        if config.network != Network::Devnet {
            return Err(PaydError::ChainSourceRequired { network: config.network });
        }
        let node_secret = secret_key(&config.node_secret)?;
        std::fs::create_dir_all(&config.state_dir)
            .map_err(|source| PaydError::Io { path: config.state_dir.display().to_string(), source })?;
        let store = Store::open(&config.state_dir.join(DB_FILE))?;

        let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default();
        let keys = Arc::new(KeysManager::new(
            &keys_seed_from_node_secret(&config.node_secret),
            now.as_secs(),
            now.subsec_nanos(),
            true,
        ));
        let node_keys = Arc::new(NodeKeys::new(keys.clone(), node_secret));
        let node_id = node_keys.node_id();
        let logger = Arc::new(TracingLogger);
        let fees = Arc::new(ConstantFeeEstimator { sat_per_kw: chain::DEVNET_FEERATE_SAT_PER_KW });
        let bcast = Arc::new(MemoryBroadcaster::default());
        let persister = Arc::new(FilePersister::new(&config.state_dir)?);
        let btc_network = config.network.bitcoin_network();
        let chain_monitor: Arc<ChainMon> = Arc::new(ChainMonitor::new(
            None,
            bcast.clone(),
            logger.clone(),
            fees.clone(),
            persister.clone(),
            keys.clone(),
            node_keys.get_peer_storage_key(),
        ));
        let graph = Arc::new(NetworkGraph::new(btc_network, logger.clone()));
        let scorer = Arc::new(RwLock::new(ProbabilisticScorer::new(
            ProbabilisticScoringDecayParameters::default(),
            graph.clone(),
            logger.clone(),
        )));
        let router = Arc::new(DefaultRouter::new(
            graph.clone(),
            logger.clone(),
            keys.clone(),
            scorer,
            ProbabilisticScoringFeeParameters::default(),
        ));
        let msg_router = Arc::new(DefaultMessageRouter::new(graph, keys.clone()));

        let manager_path = config.state_dir.join(MANAGER_FILE);
        let monitor_blobs = persister.read_monitors()?;
        let cm: Arc<Manager> = if manager_path.exists() {
            let mut monitors: Vec<ChannelMonitor<InMemorySigner>> = Vec::new();
            for (name, bytes) in &monitor_blobs {
                let (_, monitor) =
                    <(BlockHash, ChannelMonitor<InMemorySigner>)>::read(&mut &bytes[..], (&*keys, &*keys)).map_err(
                        |e| PaydError::CorruptState {
                            what: format!("channel monitor {name}"),
                            reason: format!("{e:?}"),
                        },
                    )?;
                monitors.push(monitor);
            }
            let bytes = std::fs::read(&manager_path)
                .map_err(|source| PaydError::Io { path: manager_path.display().to_string(), source })?;
            let args = ChannelManagerReadArgs::new(
                keys.clone(),
                node_keys.clone(),
                keys.clone(),
                fees.clone(),
                chain_monitor.clone(),
                bcast.clone(),
                router,
                msg_router,
                logger.clone(),
                user_config(),
                monitors.iter().collect(),
            );
            let (_, cm) = <(BlockHash, Manager)>::read(&mut &bytes[..], args)
                .map_err(|e| PaydError::CorruptState { what: MANAGER_FILE.into(), reason: format!("{e:?}") })?;
            for monitor in monitors {
                let channel_id = monitor.channel_id();
                chain_monitor.watch_channel(channel_id, monitor).map_err(|()| PaydError::CorruptState {
                    what: format!("channel monitor {channel_id}"),
                    reason: "the chain monitor refused it".into(),
                })?;
            }
            Arc::new(cm)
        } else {
            if !monitor_blobs.is_empty() {
                return Err(PaydError::CorruptState {
                    what: MANAGER_FILE.into(),
                    reason: format!(
                        "missing, but {} channel monitor(s) exist; refusing to start a fresh node over them",
                        monitor_blobs.len()
                    ),
                });
            }
            let params = ChainParameters { network: btc_network, best_block: BestBlock::from_network(btc_network) };
            Arc::new(ChannelManager::new(
                fees,
                chain_monitor.clone(),
                bcast,
                router,
                msg_router,
                logger,
                keys.clone(),
                node_keys,
                keys.clone(),
                user_config(),
                params,
                now.as_secs() as u32,
            ))
        };

        let mut entropy_seed = [0u8; 32];
        entropy_seed.copy_from_slice(&sha256::Hash::hash(&config.node_secret).to_byte_array());
        let (events, _) = broadcast::channel(EVENT_CAPACITY);
        let (channel_events, _) = broadcast::channel(EVENT_CAPACITY);
        let timer_tick = config.timer_tick;
        let htlcs = committed_outbound_htlcs(&cm);
        let inner = Arc::new(Inner {
            config,
            node_id,
            cm,
            chain_monitor,
            store: Mutex::new(store),
            peers: Mutex::new(HashMap::new()),
            process_lock: Mutex::new(()),
            out,
            events,
            channel_events,
            pay_lock: tokio::sync::Mutex::new(()),
            changes: watch::channel(0).0,
            stopped: AtomicBool::new(false),
            stale_dropped: AtomicU64::new(0),
            reestablish_dropped: AtomicU64::new(0),
            manager_writes: AtomicU64::new(0),
            rounds: AtomicU64::new(0),
            entropy: RandomBytes::new(keys_seed_from_node_secret(&entropy_seed)),
            htlcs: Mutex::new(htlcs),
        });
        // Write the initial state, and handle whatever the reload left pending.
        inner.persist_manager(true)?;
        inner.process();

        let shutdown = CancellationToken::new();
        tokio::spawn(driver(inner.clone(), shutdown.clone(), timer_tick));
        Ok(Arc::new(LdkEngine { inner, shutdown }))
    }

    /// Stop the driver and write the channel state one last time.
    pub fn shutdown(&self) -> Result<(), PaydError> {
        self.shutdown.cancel();
        let _g = lock(&self.inner.process_lock);
        let r = self.inner.persist_manager(true).map(drop);
        self.inner.stopped.store(true, Ordering::SeqCst);
        r
    }

    /// The node id (equal to peerd's BOLT #8 identity).
    pub fn node_id(&self) -> PublicKey {
        self.inner.node_id
    }

    /// The network.
    pub fn network(&self) -> Network {
        self.inner.config.network
    }

    /// Feature bits (big-endian, as in Init) that peerd must OR into the Init it sends.
    pub fn init_features(&self) -> Vec<u8> {
        let mut be = self.inner.cm.provided_init_features(self.inner.node_id).le_flags().to_vec();
        be.reverse();
        bridge::clear_feature_bits_be(&mut be, UNSUPPORTED_FEATURE_BITS);
        let first = be.iter().position(|b| *b != 0).unwrap_or(be.len());
        be.drain(..first);
        be
    }

    /// The chain hashes peerd must put in its Init's `networks`.
    pub fn chain_hashes(&self) -> Vec<[u8; 32]> {
        use lightning::ln::msgs::ChannelMessageHandler;
        self.inner.cm.get_chain_hashes().unwrap_or_default().into_iter().map(|h| h.to_bytes()).collect()
    }

    /// The Init message (raw, with its type) carrying exactly the engine's features and chain
    /// hash; peerd's own Init must be a superset of it.
    pub fn init_message(&self) -> Vec<u8> {
        let mut be = self.init_features();
        be.reverse();
        let init = msgs::Init {
            features: InitFeatures::from_le_bytes(be),
            networks: Some(
                self.chain_hashes().into_iter().map(lightning::bitcoin::constants::ChainHash::from).collect(),
            ),
            remote_network_address: None,
        };
        bridge::encode(&init)
    }

    /// A new connection session to `node_id` began; `their_init` is the peer's raw Init message
    /// (type 16 included). A still-open earlier session of that peer is closed first. Reporting
    /// the current session again is refused without touching LDK.
    ///
    /// On error the caller must drop the connection.
    pub fn peer_connected(
        &self,
        node_id: PublicKey,
        session_id: u64,
        their_init: &[u8],
        inbound: bool,
    ) -> Result<(), PaydError> {
        let proto = |reason: String| PaydError::PeerProtocol { peer: node_id, session_id, reason };
        let (t, payload) = bridge::split_type(their_init).map_err(|e| proto(e.to_string()))?;
        if t != MSG_INIT {
            return Err(proto(format!("expected init (16), got message type {t}")));
        }
        let mut init = msgs::Init::read_from_fixed_length_buffer(&mut &payload[..])
            .map_err(|e| proto(format!("init does not decode: {e:?}")))?;
        if let Some(networks) = &init.networks {
            let ours = self.chain_hashes();
            if !networks.iter().any(|n| ours.contains(&n.to_bytes())) {
                return Err(proto("init lists none of our chains".into()));
            }
        }
        let mut be = init.features.le_flags().to_vec();
        be.reverse();
        bridge::clear_feature_bits_be(&mut be, UNSUPPORTED_FEATURE_BITS);
        be.reverse();
        init.features = InitFeatures::from_le_bytes(be);
        {
            let mut peers = lock(&self.inner.peers);
            if let Some(old) = peers.get(&node_id) {
                if old.id == session_id {
                    return Err(proto("session reported connected twice".into()));
                }
                tracing::info!(target: "payd::ldk", peer = %node_id, old = old.id, new = session_id, "new session replaces the old one");
                self.inner.cm.peer_disconnected(node_id);
                self.inner.chain_monitor.peer_disconnected(node_id);
                peers.remove(&node_id);
            }
            self.inner
                .cm
                .peer_connected(node_id, &init, inbound)
                .map_err(|()| proto("the channel engine refused the peer".into()))?;
            let _ = self.inner.chain_monitor.peer_connected(node_id, &init, inbound);
            peers.insert(node_id, Session { id: session_id, unknown_reestablish: HashMap::new() });
        }
        self.inner.process();
        Ok(())
    }

    /// Connection session `session_id` to `node_id` ended. Unknown or stale sessions are ignored.
    pub fn peer_disconnected(&self, node_id: PublicKey, session_id: u64) {
        {
            let mut peers = lock(&self.inner.peers);
            match peers.get(&node_id) {
                Some(s) if s.id == session_id => {
                    peers.remove(&node_id);
                    self.inner.cm.peer_disconnected(node_id);
                    self.inner.chain_monitor.peer_disconnected(node_id);
                }
                _ => return,
            }
        }
        self.inner.process();
    }

    /// Hand one raw channel message (type then payload) from `node_id` on `session_id` to the
    /// engine. Messages of a session that is not current are dropped (`Ok(Dispatched::Ignored)`).
    ///
    /// An `Err` means the peer violated the protocol (undecodable message, unknown even type):
    /// the engine has already treated the session as disconnected, and the caller must close it.
    pub fn handle_message(&self, node_id: PublicKey, session_id: u64, raw: &[u8]) -> Result<Dispatched, PaydError> {
        let result = {
            let mut peers = lock(&self.inner.peers);
            let Some(session) = peers.get_mut(&node_id).filter(|s| s.id == session_id) else {
                self.inner.stale_dropped.fetch_add(1, Ordering::Relaxed);
                tracing::debug!(target: "payd::ldk", peer = %node_id, session_id, "message of a stale session dropped");
                return Ok(Dispatched::Ignored(bridge::split_type(raw).map(|(t, _)| t).unwrap_or(0)));
            };
            if self.limit_unknown_reestablish(session, raw) {
                self.inner.reestablish_dropped.fetch_add(1, Ordering::Relaxed);
                return Ok(Dispatched::Ignored(MSG_CHANNEL_REESTABLISH));
            }
            let r = bridge::dispatch(&*self.inner.cm, node_id, raw);
            let drop_session = !matches!(r, Ok(Dispatched::Delivered(_)) | Ok(Dispatched::Ignored(_)));
            if drop_session {
                peers.remove(&node_id);
                self.inner.cm.peer_disconnected(node_id);
                self.inner.chain_monitor.peer_disconnected(node_id);
            }
            r
        };
        self.inner.process();
        match result {
            Ok(Dispatched::DeliveredThenDisconnect(t)) => {
                let _ = self.inner.out.send(PeerOutput::Disconnect {
                    node_id,
                    session_id,
                    reason: "peer sent an error for all channels".into(),
                });
                Ok(Dispatched::DeliveredThenDisconnect(t))
            }
            Ok(d) => Ok(d),
            Err(e) => {
                let reason = e.to_string();
                let _ = self.inner.out.send(PeerOutput::Disconnect { node_id, session_id, reason: reason.clone() });
                Err(PaydError::PeerProtocol { peer: node_id, session_id, reason })
            }
        }
    }

    /// Whether `raw` is a reestablish for an unknown channel over this session's limit.
    fn limit_unknown_reestablish(&self, session: &mut Session, raw: &[u8]) -> bool {
        let Ok((MSG_CHANNEL_REESTABLISH, payload)) = bridge::split_type(raw) else {
            return false;
        };
        let Some(id) = payload.get(..32) else {
            return false;
        };
        let mut cid = [0u8; 32];
        cid.copy_from_slice(id);
        let cid = ChannelId(cid);
        if self.inner.cm.list_channels().iter().any(|c| c.channel_id == cid) {
            return false;
        }
        let n = session.unknown_reestablish.entry(cid).or_insert(0);
        *n += 1;
        *n > self.inner.config.unknown_reestablish_limit
    }

    /// Open a devnet channel of `sats` to the connected `peer`, funded by a fabricated
    /// transaction, and wait until it is usable. Devnet only.
    pub async fn open_channel(&self, peer: PublicKey, sats: u64, timeout: Duration) -> Result<ChannelInfo, PaydError> {
        let network = self.inner.config.network;
        if network != Network::Devnet {
            return Err(PaydError::DevnetOnly { what: "opening a channel with fabricated funding", network });
        }
        if !lock(&self.inner.peers).contains_key(&peer) {
            return Err(PaydError::PeerNotConnected { peer });
        }
        let mut rx = self.inner.channel_events.subscribe();
        let mut uid = [0u8; 16];
        uid.copy_from_slice(&lightning::sign::EntropySource::get_secure_random_bytes(&self.inner.entropy)[..16]);
        let user_channel_id = u128::from_be_bytes(uid);
        self.inner
            .cm
            .create_channel(peer, sats, 0, user_channel_id, None, None)
            .map_err(|e| PaydError::Ldk { op: "create_channel", reason: format!("{e:?}") })?;
        self.inner.process();
        let wait = async {
            loop {
                match rx.recv().await {
                    Ok(ChannelEvent::Ready { channel_id, user_channel_id: u, .. }) if u == user_channel_id => {
                        return Ok(channel_id)
                    }
                    Ok(ChannelEvent::Closed { user_channel_id: u, reason, .. }) if u == user_channel_id => {
                        return Err(PaydError::Ldk {
                            op: "open_channel",
                            reason: format!("channel closed while opening: {reason}"),
                        })
                    }
                    Ok(_) => {}
                    Err(broadcast::error::RecvError::Lagged(_)) => {
                        if let Some(c) = self
                            .inner
                            .cm
                            .list_usable_channels()
                            .into_iter()
                            .find(|c| c.user_channel_id == user_channel_id)
                        {
                            return Ok(c.channel_id.0);
                        }
                    }
                    Err(broadcast::error::RecvError::Closed) => {
                        return Err(PaydError::BackendUnavailable { reason: "engine stopped".into() })
                    }
                }
            }
        };
        let channel_id = tokio::time::timeout(timeout, wait)
            .await
            .map_err(|_| PaydError::OperationTimeout { what: "channel open", after: timeout })??;
        self.channels()
            .into_iter()
            .find(|c| c.channel_id == channel_id)
            .ok_or_else(|| PaydError::Ldk { op: "open_channel", reason: "channel ready but no longer listed".into() })
    }

    /// Close a channel cooperatively.
    pub fn close_channel(&self, channel_id: [u8; 32], peer: PublicKey) -> Result<(), PaydError> {
        self.inner
            .cm
            .close_channel(&ChannelId(channel_id), &peer)
            .map_err(|e| PaydError::Ldk { op: "close_channel", reason: format!("{e:?}") })?;
        self.inner.process();
        Ok(())
    }

    /// The peer of one of our channels.
    fn counterparty(&self, channel_id: [u8; 32]) -> Result<PublicKey, PaydError> {
        self.channels()
            .into_iter()
            .find(|c| c.channel_id == channel_id)
            .map(|c| c.counterparty)
            .ok_or_else(|| PaydError::UnknownChannel { channel_id: hex::encode(channel_id) })
    }

    /// Close a channel cooperatively and wait until LDK reports it closed; returns LDK's reason.
    /// The channel's peer must be connected (the shutdown messages go through its session).
    pub async fn close_channel_and_wait(&self, channel_id: [u8; 32], timeout: Duration) -> Result<String, PaydError> {
        self.ensure_running()?;
        let peer = self.counterparty(channel_id)?;
        if !self.is_connected(&peer) {
            return Err(PaydError::PeerNotConnected { peer });
        }
        let rx = self.inner.channel_events.subscribe();
        self.close_channel(channel_id, peer)?;
        self.wait_closed(rx, channel_id, timeout, "channel close").await
    }

    /// Waits on `rx` (subscribed before the close was asked) until LDK reports `channel_id`
    /// closed; returns LDK's reason.
    async fn wait_closed(
        &self,
        mut rx: broadcast::Receiver<ChannelEvent>,
        channel_id: [u8; 32],
        timeout: Duration,
        what: &'static str,
    ) -> Result<String, PaydError> {
        let wait = async {
            loop {
                match rx.recv().await {
                    Ok(ChannelEvent::Closed { channel_id: c, reason, .. }) if c == channel_id => return Ok(reason),
                    Ok(_) => {}
                    Err(broadcast::error::RecvError::Lagged(_)) => {
                        if !self.channels().iter().any(|c| c.channel_id == channel_id) {
                            return Ok("closed".to_string());
                        }
                    }
                    Err(broadcast::error::RecvError::Closed) => {
                        return Err(PaydError::BackendUnavailable { reason: "engine stopped".into() })
                    }
                }
            }
        };
        tokio::time::timeout(timeout, wait).await.map_err(|_| PaydError::OperationTimeout { what, after: timeout })?
    }

    /// Close a channel by force (our latest commitment is handed to the broadcaster, without the
    /// peer) and wait until LDK reports it closed; returns LDK's reason. On devnet nothing
    /// confirms the commitment, so our HTLCs in flight on the channel are stranded.
    pub async fn force_close_channel_and_wait(
        &self,
        channel_id: [u8; 32],
        timeout: Duration,
    ) -> Result<String, PaydError> {
        self.ensure_running()?;
        let peer = self.counterparty(channel_id)?;
        let rx = self.inner.channel_events.subscribe();
        {
            // Not while a round runs: the round's list of HTLCs per channel must see the channel
            // with every HTLC whose messages leave in it.
            let _g = lock(&self.inner.process_lock);
            self.inner
                .cm
                .force_close_broadcasting_latest_txn(
                    &ChannelId(channel_id),
                    &peer,
                    "closed by force by the operator".into(),
                )
                .map_err(|e| PaydError::Ldk { op: "force_close", reason: format!("{e:?}") })?;
        }
        self.inner.process();
        self.wait_closed(rx, channel_id, timeout, "channel force close").await
    }

    /// Channels closed in the last [`CLOSED_CHANNEL_KEEP_SECS`], most recent first.
    pub fn closed_channels(&self) -> Result<Vec<ClosedChannelRecord>, PaydError> {
        lock(&self.inner.store).closed_channels()
    }

    /// All channels.
    pub fn channels(&self) -> Vec<ChannelInfo> {
        self.inner
            .cm
            .list_channels()
            .into_iter()
            .map(|c| ChannelInfo {
                channel_id: c.channel_id.0,
                counterparty: c.counterparty.node_id,
                capacity_sat: c.channel_value_satoshis,
                next_outbound_htlc_limit_msat: c.next_outbound_htlc_limit_msat,
                outbound_capacity_msat: c.outbound_capacity_msat,
                inbound_capacity_msat: c.inbound_capacity_msat,
                is_usable: c.is_usable,
                is_outbound: c.is_outbound,
                pending_outbound_htlcs: c.pending_outbound_htlcs.len(),
                pending_inbound_htlcs: c.pending_inbound_htlcs.len(),
            })
            .collect()
    }

    /// Subscribe to channel lifecycle notifications.
    pub fn subscribe_channels(&self) -> broadcast::Receiver<ChannelEvent> {
        self.inner.channel_events.subscribe()
    }

    /// Engine counters.
    pub fn stats(&self) -> EngineStats {
        EngineStats {
            stale_dropped: self.inner.stale_dropped.load(Ordering::Relaxed),
            reestablish_dropped: self.inner.reestablish_dropped.load(Ordering::Relaxed),
            manager_writes: self.inner.manager_writes.load(Ordering::Relaxed),
            rounds: self.inner.rounds.load(Ordering::Relaxed),
        }
    }

    /// Whether `peer` has a current session.
    pub fn is_connected(&self, peer: &PublicKey) -> bool {
        lock(&self.inner.peers).contains_key(peer)
    }

    fn capacity_check(&self, invoice: &DecodedInvoice, amount: u64) -> Result<(), PaydError> {
        let usable = self.inner.cm.list_usable_channels();
        if usable.is_empty() {
            return Err(PaydError::NoChannel {
                peer: Some(invoice.payee).filter(|_| self.inner.cm.list_channels().is_empty()),
            });
        }
        let available = usable.iter().map(|c| c.next_outbound_htlc_limit_msat).max().unwrap_or(0);
        if available < amount {
            return Err(PaydError::InsufficientCapacity { needed_msat: amount, available_msat: available });
        }
        Ok(())
    }

    fn ensure_running(&self) -> Result<(), PaydError> {
        if self.inner.stopped.load(Ordering::SeqCst) {
            return Err(PaydError::BackendUnavailable { reason: "the LDK engine was shut down".into() });
        }
        Ok(())
    }

    async fn pay_inner(&self, bolt11: String, params: PayParams) -> Result<PaidInvoice, PaydError> {
        self.ensure_running()?;
        let invoice = Bolt11Invoice::from_str_checked(&bolt11)?;
        let decoded = describe_invoice(&invoice, bolt11.trim());
        let network = self.inner.config.network;
        let hash = decoded.payment_hash;
        let recorded = lock(&self.inner.store).payment(&hash)?.is_some();
        check_before_pay(&decoded, params.expected.as_ref(), network, recorded, now_secs())?;
        let amount = decoded.amount_msat.ok_or(PaydError::MissingAmount)?;
        let mut rx = self.inner.events.subscribe();
        let deadline = tokio::time::Instant::now() + params.timeout;
        let mut changes = self.inner.changes.subscribe();
        let (mut attempts, mut quiet_retry_used) = (0u32, false);
        loop {
            changes.borrow_and_update();
            let refused = {
                let _g = self.inner.pay_lock.lock().await;
                match self.start_payment(&invoice, &decoded, amount, &params)? {
                    Started::Done(r) => return r,
                    Started::InFlight => break,
                    Started::Refused(e) => e,
                }
            };
            // Refused before anything left the node. While an HTLC is still being added or
            // removed (or a channel to the payee is reestablishing) the refusal may be
            // temporary: try again when the channels change, until the timeout. A refusal seen
            // on quiet channels is tried once more at once (the channels may have become quiet
            // just after the attempt); refused again, it is final.
            attempts += 1;
            if attempts >= MAX_SEND_ATTEMPTS {
                return Err(refused);
            }
            if !self.channels_busy(&decoded.payee) {
                if quiet_retry_used {
                    return Err(refused);
                }
                quiet_retry_used = true;
                continue;
            }
            quiet_retry_used = false;
            tracing::debug!(target: "payd::ldk", payment_hash = %hex::encode(hash), attempts, "channels busy, payment waits: {refused}");
            match tokio::time::timeout_at(deadline, changes.changed()).await {
                Ok(Ok(())) => {}
                Ok(Err(_)) => return Err(PaydError::BackendUnavailable { reason: "engine stopped".into() }),
                Err(_) => return Err(refused),
            }
        }
        let wait = async {
            loop {
                if let Some(rec) = lock(&self.inner.store).payment(&hash)? {
                    match rec.status {
                        PaymentStatus::Succeeded => return paid_from(&rec),
                        PaymentStatus::Failed => {
                            return Err(PaydError::PaymentFailed {
                                payment_hash: hex::encode(hash),
                                reason: rec.failure.unwrap_or_else(|| "unknown".into()),
                            })
                        }
                        PaymentStatus::Stranded => return Err(stranded_from(&rec)),
                        PaymentStatus::Pending => {}
                    }
                }
                loop {
                    match rx.recv().await {
                        Ok(PaydEvent::PaymentSucceeded { payment_hash, .. })
                        | Ok(PaydEvent::PaymentFailed { payment_hash, .. })
                        | Ok(PaydEvent::PaymentStranded { payment_hash, .. })
                            if payment_hash == hash =>
                        {
                            break
                        }
                        Ok(_) => {}
                        Err(broadcast::error::RecvError::Lagged(_)) => break,
                        Err(broadcast::error::RecvError::Closed) => {
                            return Err(PaydError::BackendUnavailable { reason: "engine stopped".into() })
                        }
                    }
                }
            }
        };
        tokio::time::timeout_at(deadline, wait)
            .await
            .map_err(|_| PaydError::Timeout { payment_hash: hex::encode(hash), after: params.timeout })?
    }

    fn ldk_knows_payment(&self, hash: [u8; 32]) -> bool {
        let id = PaymentId(hash);
        self.inner.cm.list_recent_payments().iter().any(|p| match p {
            RecentPaymentDetails::AwaitingInvoice { payment_id }
            | RecentPaymentDetails::Pending { payment_id, .. }
            | RecentPaymentDetails::Fulfilled { payment_id, .. }
            | RecentPaymentDetails::Abandoned { payment_id, .. } => *payment_id == id,
        })
    }

    /// Whether the channels may free up soon: an HTLC is being added or removed on a channel, or
    /// a channel to `payee` exists but is not usable yet (reestablishing).
    fn channels_busy(&self, payee: &PublicKey) -> bool {
        self.channels().iter().any(|c| {
            c.pending_outbound_htlcs > 0 || c.pending_inbound_htlcs > 0 || (!c.is_usable && c.counterparty == *payee)
        })
    }

    /// Record the attempt and hand it to LDK, or report the recorded outcome. Call with
    /// `pay_lock` held. A refusal before anything was sent leaves no record.
    fn start_payment(
        &self,
        invoice: &Bolt11Invoice,
        decoded: &DecodedInvoice,
        amount: u64,
        params: &PayParams,
    ) -> Result<Started, PaydError> {
        let hash = decoded.payment_hash;
        let existing = lock(&self.inner.store).payment(&hash)?;
        match existing {
            Some(rec) if rec.status == PaymentStatus::Succeeded => Ok(Started::Done(paid_from(&rec))),
            Some(rec) if rec.status == PaymentStatus::Failed => Ok(Started::Done(Err(PaydError::PaymentFailed {
                payment_hash: hex::encode(hash),
                reason: rec.failure.unwrap_or_else(|| "unknown".into()),
            }))),
            // Never sent again: its HTLC may still be claimed on the closed channel.
            Some(rec) if rec.status == PaymentStatus::Stranded => Ok(Started::Done(Err(stranded_from(&rec)))),
            Some(_) if self.ldk_knows_payment(hash) => Ok(Started::InFlight),
            // Recorded but never handed to LDK (a crash in between): send it now.
            Some(_) => self.send_payment(invoice, hash, params),
            None => {
                if let Err(e) = self.capacity_check(decoded, amount) {
                    return Ok(Started::Refused(e));
                }
                let rec = PaymentRecord::pending(decoded, amount, now_secs());
                lock(&self.inner.store).insert_pending_payment(&rec)?;
                self.send_payment(invoice, hash, params)
            }
        }
    }

    fn send_payment(&self, invoice: &Bolt11Invoice, hash: [u8; 32], params: &PayParams) -> Result<Started, PaydError> {
        let route_config = RouteParametersConfig {
            max_total_routing_fee_msat: Some(params.max_fee_msat),
            ..RouteParametersConfig::default()
        };
        let r = self.inner.cm.pay_for_bolt11_invoice(invoice, PaymentId(hash), None, route_config, Retry::Attempts(3));
        match r {
            Ok(()) | Err(Bolt11PaymentError::SendingFailed(RetryableSendFailure::DuplicatePayment)) => {
                self.inner.process();
                Ok(Started::InFlight)
            }
            Err(e) => {
                // Refused before anything left the node (and nothing changed, so no processing
                // round): forget the attempt, so that a later call can try again (the same as a
                // refused pre-check).
                lock(&self.inner.store).forget_unsent_payment(&hash)?;
                Ok(Started::Refused(PaydError::PaymentFailed {
                    payment_hash: hex::encode(hash),
                    reason: format!("not sent: {e:?}"),
                }))
            }
        }
    }
}

/// What [`LdkEngine::start_payment`] did.
enum Started {
    /// The outcome is known (recorded earlier).
    Done(Result<PaidInvoice, PaydError>),
    /// LDK has the payment; wait for its outcome.
    InFlight,
    /// Nothing was sent, and no attempt is recorded.
    Refused(PaydError),
}

fn stranded_from(rec: &PaymentRecord) -> PaydError {
    PaydError::PaymentStranded {
        payment_hash: hex::encode(rec.payment_hash),
        reason: rec.failure.clone().unwrap_or_else(|| "stranded on a closed channel".into()),
    }
}

fn paid_from(rec: &PaymentRecord) -> Result<PaidInvoice, PaydError> {
    let preimage = rec.preimage.ok_or_else(|| PaydError::CorruptState {
        what: format!("payment {}", hex::encode(rec.payment_hash)),
        reason: "succeeded without a preimage".into(),
    })?;
    Ok(PaidInvoice {
        payment_hash: rec.payment_hash,
        preimage,
        amount_msat: rec.amount_msat,
        fee_msat: rec.fee_msat.unwrap_or(0),
    })
}

trait FromStrChecked: Sized {
    fn from_str_checked(s: &str) -> Result<Self, PaydError>;
}

impl FromStrChecked for Bolt11Invoice {
    fn from_str_checked(s: &str) -> Result<Self, PaydError> {
        s.trim().parse::<Bolt11Invoice>().map_err(|e| PaydError::InvalidInvoice { reason: e.to_string() })
    }
}

impl Drop for LdkEngine {
    fn drop(&mut self) {
        // Behaves like a crash as far as disk state goes: nothing is written here, but no write
        // of this engine can happen after drop returns (a successor may load the same state).
        self.shutdown.cancel();
        let _g = lock(&self.inner.process_lock);
        self.inner.stopped.store(true, Ordering::SeqCst);
    }
}

async fn driver(inner: Arc<Inner>, shutdown: CancellationToken, tick: Duration) {
    let mut next_tick = tokio::time::Instant::now() + tick;
    loop {
        let cm_future = inner.cm.get_event_or_persistence_needed_future();
        let mon_future = inner.chain_monitor.get_update_future();
        tokio::select! {
            _ = shutdown.cancelled() => break,
            _ = cm_future => {}
            _ = mon_future => {}
            _ = tokio::time::sleep_until(next_tick) => {
                inner.cm.timer_tick_occurred();
                next_tick = tokio::time::Instant::now() + tick;
            }
        }
        if inner.stopped.load(Ordering::SeqCst) {
            break;
        }
        inner.process();
    }
}

impl Inner {
    /// Write the ChannelManager if LDK asks for it (or `force`); returns whether it was written.
    fn persist_manager(&self, force: bool) -> Result<bool, PaydError> {
        if self.stopped.load(Ordering::SeqCst) {
            return Ok(false);
        }
        if self.cm.get_and_clear_needs_persistence() || force {
            write_atomic(&self.config.state_dir.join(MANAGER_FILE), &self.cm.encode())?;
            self.manager_writes.fetch_add(1, Ordering::Relaxed);
            return Ok(true);
        }
        Ok(false)
    }

    /// One or more processing rounds until nothing changes: events, HTLC forwards, persistence,
    /// then the outbound messages of the round. Wakes whoever waits for a channel change.
    fn process(&self) {
        self.process_rounds();
        self.changes.send_modify(|n| *n = n.wrapping_add(1));
    }

    fn process_rounds(&self) {
        let _g = lock(&self.process_lock);
        if self.stopped.load(Ordering::SeqCst) {
            return;
        }
        for _ in 0..64 {
            self.rounds.fetch_add(1, Ordering::Relaxed);
            let handled = AtomicU64::new(0);
            let handler = |event: Event| -> Result<(), ReplayEvent> {
                handled.fetch_add(1, Ordering::Relaxed);
                self.handle_event(event)
            };
            self.cm.process_pending_events(&handler);
            self.chain_monitor.process_pending_events(&handler);
            // Not progress by itself: LDK also reports this for as long as an outbound payment
            // may still be retried, that is the whole life of a payment in flight. Whatever the
            // call really does (an HTLC received, forwarded, retried or failed, a holding cell
            // freed) marks the ChannelManager for persistence, queues an event or a message, and
            // each of those counts below.
            if self.cm.needs_pending_htlc_processing() {
                self.cm.process_pending_htlc_forwards();
            }
            let outputs = {
                let mut peers = lock(&self.peers);
                let mut raw = Vec::new();
                for ev in self.cm.get_and_clear_pending_msg_events() {
                    bridge::encode_event(ev, &mut raw);
                }
                for ev in self.chain_monitor.get_and_clear_pending_msg_events() {
                    bridge::encode_event(ev, &mut raw);
                }
                let mut outputs = Vec::with_capacity(raw.len());
                for o in raw {
                    match o {
                        Outbound::Send(node_id, bytes) => match peers.get(&node_id) {
                            Some(s) => outputs.push(PeerOutput::Send { node_id, session_id: s.id, raw: bytes }),
                            None => {
                                tracing::debug!(target: "payd::ldk", peer = %node_id, "message for a disconnected peer dropped")
                            }
                        },
                        Outbound::Disconnect(node_id) => {
                            if let Some(s) = peers.remove(&node_id) {
                                self.cm.peer_disconnected(node_id);
                                self.chain_monitor.peer_disconnected(node_id);
                                outputs.push(PeerOutput::Disconnect {
                                    node_id,
                                    session_id: s.id,
                                    reason: "the channel engine dropped the peer".into(),
                                });
                            }
                        }
                    }
                }
                outputs
            };
            let persisted = match self.persist_manager(false) {
                Ok(persisted) => persisted,
                Err(e) => {
                    // Nothing that depends on the unsaved state may leave: drop every session so the
                    // peers reestablish from what is on disk.
                    tracing::error!(target: "payd::ldk", "cannot persist the channel manager: {e}");
                    let mut peers = lock(&self.peers);
                    for (node_id, s) in peers.drain() {
                        self.cm.peer_disconnected(node_id);
                        let _ = self.out.send(PeerOutput::Disconnect {
                            node_id,
                            session_id: s.id,
                            reason: format!("channel state not persisted: {e}"),
                        });
                    }
                    return;
                }
            };
            // Before the round's messages leave: an HTLC whose update_add goes out now is listed.
            // A channel no longer listed keeps its entry until its close is handled, even if it
            // closed while this round ran.
            let fresh = committed_outbound_htlcs(&self.cm);
            lock(&self.htlcs).extend(fresh);
            let progressed = !outputs.is_empty() || handled.load(Ordering::Relaxed) > 0 || persisted;
            for o in outputs {
                if self.out.send(o).is_err() {
                    tracing::debug!(target: "payd::ldk", "output channel closed");
                }
            }
            if !progressed {
                return;
            }
        }
    }

    /// A channel closed: it is kept in the store for the operator with its reason, and, on a
    /// network without a chain source (devnet), every payment whose HTLC was committed on it and
    /// is still pending becomes `stranded`: nothing will ever claim or time out that HTLC, so
    /// waiting for it would leave the payment (and the job that paid) pending forever. With a
    /// chain, LDK resolves such HTLCs on chain and reports the outcome as usual.
    fn channel_closed(
        &self,
        channel_id: [u8; 32],
        counterparty: Option<PublicKey>,
        capacity_sat: Option<u64>,
        reason: &str,
        stale_manager: bool,
    ) -> Result<(), ReplayEvent> {
        // What the ChannelManager last listed, plus the HTLCs of the channel monitor's latest
        // commitment: a ChannelManager reloaded stale after a crash closes the channel at start
        // without knowing its latest HTLCs, which the monitor still has.
        let mut htlcs = lock(&self.htlcs).remove(&channel_id).unwrap_or_default();
        if let Ok(monitor) = self.chain_monitor.get_monitor(ChannelId(channel_id)) {
            for b in monitor.get_claimable_balances() {
                if let Balance::MaybeTimeoutClaimableHTLC {
                    payment_hash,
                    outbound_payment: true,
                    amount_satoshis,
                    ..
                } = b
                {
                    if !htlcs.iter().any(|(h, _)| *h == payment_hash.0) {
                        htlcs.push((payment_hash.0, amount_satoshis.saturating_mul(1000)));
                    }
                }
            }
        }
        let fail = |e: PaydError| {
            tracing::error!(target: "payd::ldk", "{e}");
            ReplayEvent()
        };
        let now = now_secs();
        let store = lock(&self.store);
        // A ChannelManager reloaded stale after a crash closes the channel at start without
        // knowing its latest HTLCs (and the monitor offers no list of an HTLC only the peer's
        // commitment has). LDK rebuilt those payments from the monitor as pending; at start none
        // is being retried, so a pending payment to this peer with no HTLC on any open channel
        // is one of them (devnet pays its channel peer directly: there is no network graph).
        if let (true, Some(peer)) = (stale_manager, counterparty) {
            let open = committed_outbound_htlcs(&self.cm);
            let on_open = |h: &[u8; 32]| open.values().flatten().any(|(x, _)| x == h);
            for p in self.cm.list_recent_payments() {
                if let RecentPaymentDetails::Pending { payment_hash, total_msat, .. } = p {
                    let h = payment_hash.0;
                    if htlcs.iter().any(|(x, _)| *x == h) || on_open(&h) {
                        continue;
                    }
                    let ours = store.payment(&h).map_err(fail)?;
                    if ours.is_some_and(|r| r.status == PaymentStatus::Pending && r.payee == peer) {
                        htlcs.push((h, total_msat));
                    }
                }
            }
        }
        let mut stranded = Vec::new();
        if self.config.network == Network::Devnet {
            let why = format!(
                "channel {} closed by force with the HTLC in flight ({reason}); devnet has no chain to resolve it",
                hex::encode(channel_id)
            );
            for (hash, amount) in &htlcs {
                if store.payment_stranded(hash, &why, now).map_err(fail)? {
                    tracing::warn!(target: "payd::ldk", payment_hash = %hex::encode(hash), amount_msat = amount, "payment stranded: {why}");
                    stranded.push((*hash, why.clone()));
                }
            }
        }
        let rec = ClosedChannelRecord {
            channel_id,
            counterparty: counterparty.map(|c| hex::encode(c.serialize())).unwrap_or_default(),
            capacity_sat: capacity_sat.unwrap_or(0),
            closed_at: now,
            reason: reason.to_string(),
            stranded_htlcs: htlcs.len() as u64,
            stranded_msat: htlcs.iter().map(|(_, a)| *a).sum(),
        };
        store.insert_closed_channel(&rec).map_err(fail)?;
        drop(store);
        for (payment_hash, reason) in stranded {
            let _ = self.events.send(PaydEvent::PaymentStranded { payment_hash, reason });
        }
        Ok(())
    }

    fn handle_event(&self, event: Event) -> Result<(), ReplayEvent> {
        match event {
            Event::OpenChannelRequest { temporary_channel_id, counterparty_node_id, funding_satoshis, .. } => {
                match inbound_channel_decision(self.config.network, &self.config.trust, &counterparty_node_id) {
                    InboundChannelDecision::AcceptZeroConf => {
                        if let Err(e) = self.cm.accept_inbound_channel_from_trusted_peer_0conf(
                            &temporary_channel_id,
                            &counterparty_node_id,
                            0,
                            None,
                        ) {
                            tracing::warn!(target: "payd::ldk", peer = %counterparty_node_id, "cannot accept channel: {e:?}");
                        }
                    }
                    InboundChannelDecision::Reject => {
                        tracing::info!(target: "payd::ldk", peer = %counterparty_node_id, funding_satoshis, "inbound channel refused (untrusted peer)");
                        let _ = self.cm.force_close_broadcasting_latest_txn(
                            &temporary_channel_id,
                            &counterparty_node_id,
                            "channel refused: zero-conf channels only from trusted peers".into(),
                        );
                    }
                }
            }
            Event::FundingGenerationReady {
                temporary_channel_id,
                counterparty_node_id,
                channel_value_satoshis,
                output_script,
                ..
            } => {
                let nonce = lightning::sign::EntropySource::get_secure_random_bytes(&self.entropy);
                match fabricate_funding_tx(self.config.network, channel_value_satoshis, output_script, nonce) {
                    Ok(tx) => {
                        if let Err(e) =
                            self.cm.funding_transaction_generated(temporary_channel_id, counterparty_node_id, tx)
                        {
                            tracing::warn!(target: "payd::ldk", "funding refused: {e:?}");
                        }
                    }
                    Err(e) => {
                        tracing::error!(target: "payd::ldk", "{e}");
                        let _ = self.cm.force_close_broadcasting_latest_txn(
                            &temporary_channel_id,
                            &counterparty_node_id,
                            e.to_string(),
                        );
                    }
                }
            }
            Event::ChannelReady { channel_id, user_channel_id, counterparty_node_id, .. } => {
                let _ = self.channel_events.send(ChannelEvent::Ready {
                    channel_id: channel_id.0,
                    user_channel_id,
                    counterparty: counterparty_node_id,
                });
            }
            Event::ChannelClosed {
                channel_id,
                user_channel_id,
                reason,
                counterparty_node_id,
                channel_capacity_sats,
                ..
            } => {
                tracing::info!(target: "payd::ldk", %channel_id, "channel closed: {reason}");
                let stale = matches!(reason, lightning::events::ClosureReason::OutdatedChannelManager);
                self.channel_closed(
                    channel_id.0,
                    counterparty_node_id,
                    channel_capacity_sats,
                    &reason.to_string(),
                    stale,
                )?;
                let _ = self.channel_events.send(ChannelEvent::Closed {
                    channel_id: channel_id.0,
                    user_channel_id,
                    reason: reason.to_string(),
                });
            }
            Event::PaymentClaimable { payment_hash, purpose, amount_msat, .. } => {
                let known = lock(&self.store).invoice(&payment_hash.0, now_secs()).map_err(|e| {
                    tracing::error!(target: "payd::ldk", "{e}");
                    ReplayEvent()
                })?;
                match (known, purpose.preimage()) {
                    (Some(inv), Some(preimage)) if amount_msat >= inv.amount_msat => self.cm.claim_funds(preimage),
                    _ => {
                        tracing::warn!(target: "payd::ldk", payment_hash = %hex::encode(payment_hash.0), "refusing a payment for an unknown invoice");
                        self.cm.fail_htlc_backwards(&payment_hash);
                    }
                }
            }
            Event::PaymentClaimed { payment_hash, amount_msat, .. } => {
                let first =
                    lock(&self.store).settle_invoice(&payment_hash.0, amount_msat, now_secs()).map_err(|e| {
                        tracing::error!(target: "payd::ldk", "{e}");
                        ReplayEvent()
                    })?;
                if first {
                    let _ = self.events.send(PaydEvent::InvoiceSettled { payment_hash: payment_hash.0, amount_msat });
                }
            }
            Event::PaymentSent { payment_preimage, payment_hash, fee_paid_msat, .. } => {
                let PaymentPreimage(preimage) = payment_preimage;
                let PaymentHash(hash) = payment_hash;
                let changed = lock(&self.store)
                    .payment_succeeded(&hash, &preimage, fee_paid_msat.unwrap_or(0), now_secs())
                    .map_err(|e| {
                        tracing::error!(target: "payd::ldk", "{e}");
                        ReplayEvent()
                    })?;
                if changed {
                    let _ = self.events.send(PaydEvent::PaymentSucceeded { payment_hash: hash, preimage });
                }
            }
            Event::PaymentFailed { payment_id, reason, .. } => {
                // Also replaces `stranded`: LDK failed the HTLC back after all.
                let hash = payment_id.0;
                let reason = format!("{reason:?}");
                let changed = lock(&self.store).payment_failed(&hash, &reason, now_secs()).map_err(|e| {
                    tracing::error!(target: "payd::ldk", "{e}");
                    ReplayEvent()
                })?;
                if changed {
                    let _ = self.events.send(PaydEvent::PaymentFailed { payment_hash: hash, reason });
                }
            }
            other => {
                tracing::debug!(target: "payd::ldk", "event: {other:?}");
            }
        }
        Ok(())
    }
}

impl PaymentBackend for LdkEngine {
    fn node_id(&self) -> PublicKey {
        self.inner.node_id
    }

    fn network(&self) -> Network {
        self.inner.config.network
    }

    fn create_invoice(
        &self,
        amount_msat: u64,
        description_hash: [u8; 32],
        expiry_secs: u32,
    ) -> BoxFuture<'_, Result<CreatedInvoice, PaydError>> {
        Box::pin(async move {
            self.ensure_running()?;
            if amount_msat == 0 {
                return Err(PaydError::InvalidArgument {
                    field: "amount_msat",
                    reason: "must be greater than zero (amount-less invoices are not issued)".into(),
                });
            }
            if expiry_secs == 0 {
                return Err(PaydError::InvalidArgument {
                    field: "expiry_secs",
                    reason: "must be greater than zero".into(),
                });
            }
            let invoice = self
                .inner
                .cm
                .create_bolt11_invoice(Bolt11InvoiceParameters {
                    amount_msats: Some(amount_msat),
                    description: Bolt11InvoiceDescription::Hash(Sha256(sha256::Hash::from_byte_array(
                        description_hash,
                    ))),
                    invoice_expiry_delta_secs: Some(expiry_secs),
                    min_final_cltv_expiry_delta: None,
                    payment_hash: None,
                })
                .map_err(|e| PaydError::Ldk { op: "create_bolt11_invoice", reason: format!("{e:?}") })?;
            let bolt11 = invoice.to_string();
            let d = describe_invoice(&invoice, &bolt11);
            let rec = InvoiceRecord {
                payment_hash: d.payment_hash,
                bolt11: bolt11.clone(),
                amount_msat,
                description_hash,
                created_at: d.timestamp_secs,
                expires_at: d.expires_at_secs(),
                status: InvoiceStatus::Open,
                amount_received_msat: None,
                settled_at: None,
            };
            lock(&self.inner.store).insert_invoice(&rec)?;
            Ok(CreatedInvoice { bolt11, payment_hash: d.payment_hash, expires_at_secs: d.expires_at_secs() })
        })
    }

    fn lookup_invoice(&self, payment_hash: [u8; 32]) -> BoxFuture<'_, Result<Option<InvoiceRecord>, PaydError>> {
        Box::pin(async move { lock(&self.inner.store).invoice(&payment_hash, now_secs()) })
    }

    fn subscribe(&self) -> broadcast::Receiver<PaydEvent> {
        self.inner.events.subscribe()
    }

    fn pay(&self, bolt11: String, params: PayParams) -> BoxFuture<'_, Result<PaidInvoice, PaydError>> {
        Box::pin(self.pay_inner(bolt11, params))
    }

    fn decode_invoice(&self, bolt11: &str) -> Result<DecodedInvoice, PaydError> {
        decode_bolt11(bolt11)
    }

    fn list_payments(&self) -> BoxFuture<'_, Result<Vec<PaymentRecord>, PaydError>> {
        Box::pin(async move { lock(&self.inner.store).payments() })
    }

    fn lookup_payment(&self, payment_hash: [u8; 32]) -> BoxFuture<'_, Result<Option<PaymentRecord>, PaydError>> {
        Box::pin(async move { lock(&self.inner.store).payment(&payment_hash) })
    }

    fn list_invoices(&self) -> BoxFuture<'_, Result<Vec<InvoiceRecord>, PaydError>> {
        Box::pin(async move { lock(&self.inner.store).invoices(now_secs()) })
    }

    fn channel_balance(&self) -> BoxFuture<'_, Result<ChannelBalance, PaydError>> {
        Box::pin(async move {
            let mut b = ChannelBalance::default();
            for c in self.channels() {
                b.channels += 1;
                b.usable_channels += u32::from(c.is_usable);
                b.outbound_msat = b.outbound_msat.saturating_add(c.outbound_capacity_msat);
                b.inbound_msat = b.inbound_msat.saturating_add(c.inbound_capacity_msat);
            }
            Ok(b)
        })
    }
}

/// Peers with a current session (for diagnostics).
impl LdkEngine {
    /// Node ids with a current session.
    pub fn connected_peers(&self) -> HashSet<PublicKey> {
        lock(&self.inner.peers).keys().copied().collect()
    }
}
