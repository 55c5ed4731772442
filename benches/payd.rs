//! Payment latency over one devnet channel, three ways measured in the same run:
//!
//! - `ldk_peermanager_baseline`: two bare LDK nodes on their own `PeerManager` (BOLT #8 noise,
//!   framing and message handling as in the devnet recipe, no persistence) with a hand-written
//!   driver loop, joined by an in-memory byte pipe (which can only make the baseline faster than
//!   loopback TCP);
//! - `payd_engine_pump`: two payd LDK engines (durable channel state, SQLite records) joined by an
//!   in-process pump, no peerd and no bus;
//! - `payd_through_peerd_and_bus`: two whole in-process nodes on loopback, the payment asked for
//!   over each node's bus (payd `CreateInvoice` on the payee, `Pay` on the payer), channel messages
//!   carried by peerd over BOLT #8 and the bus.
//!
//! One iteration = create an invoice on the payee, pay it, and wait until the payer holds the
//! preimage; the next payment starts at once (the bare nodes and the pump also wait until the
//! channel has no HTLC in flight, which payd's `Pay` does by itself).

#[path = "../tests/payd_pump.rs"]
mod pump;

use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use lcp::bus::api::payd::PaydApi;
use lcp::bus::api::Body;
use lcp::bus::{Bus, ServiceId};
use lcp::payd::backend::{Network, PayParams, PaydEvent, PaymentBackend};
use lcp::payd::ldk::{fabricate_funding_tx, LdkEngine};
use lcp::testkit::{InProcessNode, NodePair};
use lightning::bitcoin::hashes::{sha256, Hash};
use lightning::bitcoin::Transaction;
use lightning::chain::chaininterface::{BroadcasterInterface, ConfirmationTarget, FeeEstimator};
use lightning::chain::chainmonitor::{ChainMonitor, Persist};
use lightning::chain::channelmonitor::{ChannelMonitor, ChannelMonitorUpdate};
use lightning::chain::{BestBlock, ChannelMonitorUpdateStatus, Filter};
use lightning::events::{Event, EventsProvider, ReplayEvent};
use lightning::ln::channelmanager::{
    Bolt11InvoiceParameters, ChainParameters, ChannelManager, PaymentId, Retry, SimpleArcChannelManager,
};
use lightning::ln::peer_handler::{IgnoringMessageHandler, MessageHandler, PeerManager, SocketDescriptor};
use lightning::onion_message::messenger::DefaultMessageRouter;
use lightning::routing::gossip::NetworkGraph;
use lightning::routing::router::{DefaultRouter, RouteParametersConfig};
use lightning::routing::scoring::{
    ProbabilisticScorer, ProbabilisticScoringDecayParameters, ProbabilisticScoringFeeParameters,
};
use lightning::sign::{InMemorySigner, KeysManager, NodeSigner};
use lightning::util::config::UserConfig;
use lightning::util::logger::{Logger, Record};
use lightning::util::persist::MonitorName;
use lightning_invoice::{Bolt11InvoiceDescription, Sha256};
use tokio::sync::{mpsc, watch};

const CHANNEL_SAT: u64 = 16_000_000;
const PAYMENT_MSAT: u64 = 1_000_000;
const TIMEOUT: Duration = Duration::from_secs(30);

// ---- baseline: bare LDK nodes on their own PeerManager, joined by an in-memory pipe ----

struct NullLogger;
impl Logger for NullLogger {
    fn log(&self, record: Record) {
        if std::env::var_os("PAYD_BENCH_LOG").is_some() {
            eprintln!("{:?} {} {}", record.level, record.module_path, record.args);
        }
    }
}
struct Fee;
impl FeeEstimator for Fee {
    fn get_est_sat_per_1000_weight(&self, _t: ConfirmationTarget) -> u32 {
        253
    }
}
struct NullBroadcaster;
impl BroadcasterInterface for NullBroadcaster {
    fn broadcast_transactions(&self, _txs: &[&Transaction]) {}
}
struct NullPersister;
impl Persist<InMemorySigner> for NullPersister {
    fn persist_new_channel(&self, _n: MonitorName, _m: &ChannelMonitor<InMemorySigner>) -> ChannelMonitorUpdateStatus {
        ChannelMonitorUpdateStatus::Completed
    }
    fn update_persisted_channel(
        &self,
        _n: MonitorName,
        _u: Option<&ChannelMonitorUpdate>,
        _m: &ChannelMonitor<InMemorySigner>,
    ) -> ChannelMonitorUpdateStatus {
        ChannelMonitorUpdateStatus::Completed
    }
    fn archive_persisted_channel(&self, _n: MonitorName) {}
}

type BareChainMonitor = ChainMonitor<
    InMemorySigner,
    Arc<dyn Filter + Send + Sync>,
    Arc<NullBroadcaster>,
    Arc<Fee>,
    Arc<NullLogger>,
    Arc<NullPersister>,
    Arc<KeysManager>,
>;
type BareManager = SimpleArcChannelManager<BareChainMonitor, NullBroadcaster, Fee, NullLogger>;
type BarePeerManager = PeerManager<
    MemSocket,
    Arc<BareManager>,
    Arc<IgnoringMessageHandler>,
    Arc<IgnoringMessageHandler>,
    Arc<NullLogger>,
    Arc<IgnoringMessageHandler>,
    Arc<KeysManager>,
    Arc<IgnoringMessageHandler>,
>;

enum BareEvent {
    Ready,
    Sent([u8; 32]),
    Claimed([u8; 32]),
    Failed(String),
}

struct BareNode {
    cm: Arc<BareManager>,
    pm: Arc<BarePeerManager>,
    events: mpsc::UnboundedReceiver<BareEvent>,
    /// Bumped after every driver round and every read of the pipe: something may have changed.
    progress: watch::Receiver<u64>,
    progress_tx: Arc<watch::Sender<u64>>,
}

impl BareNode {
    /// Waits until `ready()` holds, checking it again whenever the node has done something.
    async fn wait_until(&mut self, what: &str, ready: impl Fn(&BareNode) -> bool) {
        let waited = tokio::time::timeout(TIMEOUT, async {
            loop {
                self.progress.borrow_and_update();
                if ready(self) {
                    return true;
                }
                if self.progress.changed().await.is_err() {
                    return false;
                }
            }
        });
        assert_eq!(waited.await, Ok(true), "{what}");
    }
}

fn bare_node(seed: u8) -> BareNode {
    let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default();
    let keys = Arc::new(KeysManager::new(&[seed; 32], now.as_secs(), now.subsec_nanos(), true));
    let logger = Arc::new(NullLogger);
    let fees = Arc::new(Fee);
    let bcast = Arc::new(NullBroadcaster);
    let chain_monitor = Arc::new(ChainMonitor::new(
        None,
        bcast.clone(),
        logger.clone(),
        fees.clone(),
        Arc::new(NullPersister),
        keys.clone(),
        keys.get_peer_storage_key(),
    ));
    let graph = Arc::new(NetworkGraph::new(lightning::bitcoin::Network::Regtest, logger.clone()));
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
    let mut config = UserConfig { manually_accept_inbound_channels: true, ..UserConfig::default() };
    config.channel_handshake_config.max_inbound_htlc_value_in_flight_percent_of_channel = 100;
    let network = lightning::bitcoin::Network::Regtest;
    let cm = Arc::new(ChannelManager::new(
        fees,
        chain_monitor.clone(),
        bcast,
        router,
        msg_router,
        logger.clone(),
        keys.clone(),
        keys.clone(),
        keys.clone(),
        config,
        ChainParameters { network, best_block: BestBlock::from_network(network) },
        now.as_secs() as u32,
    ));
    let ignore = Arc::new(IgnoringMessageHandler {});
    let pm = Arc::new(PeerManager::new(
        MessageHandler {
            chan_handler: cm.clone(),
            route_handler: Arc::clone(&ignore),
            onion_message_handler: Arc::clone(&ignore),
            custom_message_handler: Arc::clone(&ignore),
            send_only_message_handler: ignore,
        },
        now.as_secs() as u32,
        &[seed ^ 0x55; 32],
        logger,
        keys,
    ));
    let (tx, events) = mpsc::unbounded_channel();
    let (progress_tx, progress) = watch::channel(0u64);
    let progress_tx = Arc::new(progress_tx);
    let (dcm, dpm, dmon, dprogress) = (cm.clone(), pm.clone(), chain_monitor, progress_tx.clone());
    tokio::spawn(async move {
        let handler = |event: Event| -> Result<(), ReplayEvent> {
            match event {
                Event::OpenChannelRequest { temporary_channel_id, counterparty_node_id, .. } => {
                    let _ = dcm.accept_inbound_channel_from_trusted_peer_0conf(
                        &temporary_channel_id,
                        &counterparty_node_id,
                        0,
                        None,
                    );
                }
                Event::FundingGenerationReady {
                    temporary_channel_id,
                    counterparty_node_id,
                    channel_value_satoshis,
                    output_script,
                    ..
                } => {
                    if let Ok(tx) =
                        fabricate_funding_tx(Network::Devnet, channel_value_satoshis, output_script, [seed; 32])
                    {
                        let _ = dcm.funding_transaction_generated(temporary_channel_id, counterparty_node_id, tx);
                    }
                }
                Event::ChannelReady { .. } => {
                    let _ = tx.send(BareEvent::Ready);
                }
                Event::PaymentClaimable { purpose, .. } => {
                    // An event handler may call back into the ChannelManager (LDK's contract).
                    if let Some(p) = purpose.preimage() {
                        dcm.claim_funds(p);
                    }
                }
                Event::PaymentSent { payment_hash, .. } => {
                    let _ = tx.send(BareEvent::Sent(payment_hash.0));
                }
                Event::PaymentClaimed { payment_hash, .. } => {
                    let _ = tx.send(BareEvent::Claimed(payment_hash.0));
                }
                Event::PaymentFailed { reason, .. } => {
                    let _ = tx.send(BareEvent::Failed(format!("{reason:?}")));
                }
                other => {
                    if std::env::var_os("PAYD_BENCH_LOG").is_some() {
                        eprintln!("event {other:?}");
                    }
                }
            }
            Ok(())
        };
        // The driver waits for the ChannelManager or the ChainMonitor to signal work and then does
        // one round: HTLC forwards, events, and the PeerManager's `process_events` (which takes
        // the ChannelManager's pending messages and writes them to the pipe). Every round ends
        // at an await: work a round causes (a claim, a decoded HTLC, a message handled by the
        // reader task) notifies the futures taken before the round, so the next round follows
        // at once, and nothing else needs polling.
        //
        // The stall this baseline used to have came from treating
        // `needs_pending_htlc_processing()` as "a forward is ready": in LDK 0.2 it is also true
        // for as long as an outbound payment could still be retried (`Retry::Attempts(3)` and
        // fewer attempts made), that is, for the whole life of every payment in flight. The old
        // loop then went round again without awaiting, so the payer's driver spun on a runtime
        // worker until the payment completed. The payee's reader task, woken on that same worker
        // when the payer's PeerManager wrote `update_add_htlc` into the pipe, sat in the worker's
        // LIFO slot, which tokio's other workers do not steal: it never ran, the HTLC was never
        // handled, and the payment never completed. Here the loop calls
        // `process_pending_htlc_forwards` whenever LDK asks, but only the futures decide whether
        // to go round again: its real work (decoding an HTLC, a retry) notifies the
        // ChannelManager's future, a call that only found nothing to retry does not.
        let tick = Duration::from_secs(60);
        let mut next_tick = tokio::time::Instant::now() + tick;
        loop {
            let cm_future = dcm.get_event_or_persistence_needed_future();
            let mon_future = dmon.get_update_future();
            if dcm.needs_pending_htlc_processing() {
                dcm.process_pending_htlc_forwards();
            }
            dcm.process_pending_events(&handler);
            dmon.process_pending_events(&handler);
            dpm.process_events();
            dprogress.send_modify(|n| *n = n.wrapping_add(1));
            tokio::select! {
                _ = cm_future => {}
                _ = mon_future => {}
                _ = tokio::time::sleep_until(next_tick) => {
                    dcm.timer_tick_occurred();
                    next_tick = tokio::time::Instant::now() + tick;
                }
            }
        }
    });
    BareNode { cm, pm, events, progress, progress_tx }
}

/// One end of an in-memory byte pipe between two `PeerManager`s: what one end sends, the other
/// reads. Noise encryption, framing and message handling stay PeerManager's own.
#[derive(Clone)]
struct MemSocket {
    id: u64,
    tx: mpsc::UnboundedSender<Vec<u8>>,
    /// The PeerManager's `continue_read` for this end, which its reader obeys.
    reading: Arc<watch::Sender<bool>>,
}

impl MemSocket {
    fn new(id: u64, tx: mpsc::UnboundedSender<Vec<u8>>) -> Self {
        MemSocket { id, tx, reading: Arc::new(watch::channel(true).0) }
    }
}

impl PartialEq for MemSocket {
    fn eq(&self, other: &Self) -> bool {
        self.id == other.id
    }
}
impl Eq for MemSocket {}
impl std::hash::Hash for MemSocket {
    fn hash<H: std::hash::Hasher>(&self, h: &mut H) {
        self.id.hash(h)
    }
}

impl SocketDescriptor for MemSocket {
    fn send_data(&mut self, data: &[u8], continue_read: bool) -> usize {
        self.reading.send_if_modified(|r| std::mem::replace(r, continue_read) != continue_read);
        if data.is_empty() {
            return 0;
        }
        // An unbounded channel takes every byte at once, so a write is never partial and there is
        // no `write_buffer_space_avail` to call later; 0 only once the other end is gone.
        if self.tx.send(data.to_vec()).is_ok() {
            data.len()
        } else {
            0
        }
    }
    fn disconnect_socket(&mut self) {
        eprintln!("ldk baseline: the PeerManager dropped the connection (socket {})", self.id);
    }
}

/// Feeds what the other end sent into `node`'s PeerManager, in order, and lets it answer.
fn read_pipe(node: &BareNode, mut desc: MemSocket, mut rx: mpsc::UnboundedReceiver<Vec<u8>>) {
    let (pm, progress) = (node.pm.clone(), node.progress_tx.clone());
    let mut reading = desc.reading.subscribe();
    tokio::spawn(async move {
        while let Some(bytes) = rx.recv().await {
            // Reads paused by `send_data(.., continue_read = false)` wait until the PeerManager
            // resumes them (it never needs to here: every write is taken whole).
            if reading.wait_for(|go| *go).await.is_err() {
                break;
            }
            if pm.read_event(&mut desc, &bytes).is_err() {
                eprintln!("ldk baseline: read_event refused the bytes (socket {})", desc.id);
                break;
            }
            pm.process_events();
            progress.send_modify(|n| *n = n.wrapping_add(1));
        }
    });
}

async fn bare_pair() -> (BareNode, BareNode) {
    let mut a = bare_node(1);
    let mut b = bare_node(2);
    let b_id = b.cm.get_our_node_id();
    let ((to_b, b_in), (to_a, a_in)) = (mpsc::unbounded_channel(), mpsc::unbounded_channel());
    let a_desc = MemSocket::new(1, to_b.clone());
    let b_desc = MemSocket::new(2, to_a);
    let hello = a.pm.new_outbound_connection(b_id, a_desc.clone(), None).expect("outbound");
    b.pm.new_inbound_connection(b_desc.clone(), None).expect("inbound");
    read_pipe(&b, b_desc, b_in);
    read_pipe(&a, a_desc, a_in);
    to_b.send(hello).expect("first act");
    a.wait_until("peers connect", |a| a.pm.peer_by_node_id(&b_id).is_some()).await;
    a.cm.create_channel(b_id, CHANNEL_SAT, 0, 1, None, None).expect("create_channel");
    for node in [&mut a, &mut b] {
        let ready = tokio::time::timeout(TIMEOUT, async {
            while let Some(ev) = node.events.recv().await {
                if matches!(ev, BareEvent::Ready) {
                    return;
                }
            }
        });
        ready.await.expect("channel ready");
        node.wait_until("channel usable", |n| !n.cm.list_usable_channels().is_empty()).await;
    }
    (a, b)
}

async fn wait_bare(node: &mut BareNode, want: impl Fn(&BareEvent) -> bool) {
    tokio::time::timeout(TIMEOUT, async {
        while let Some(ev) = node.events.recv().await {
            if let BareEvent::Failed(reason) = &ev {
                panic!("baseline payment failed: {reason}");
            }
            if want(&ev) {
                return;
            }
        }
    })
    .await
    .expect("payment completes");
}

async fn bare_payment(a: &mut BareNode, b: &mut BareNode, n: u64) {
    let terms = sha256::Hash::hash(&n.to_be_bytes());
    let inv =
        b.cm.create_bolt11_invoice(Bolt11InvoiceParameters {
            amount_msats: Some(PAYMENT_MSAT),
            description: Bolt11InvoiceDescription::Hash(Sha256(terms)),
            invoice_expiry_delta_secs: Some(600),
            ..Default::default()
        })
        .expect("invoice");
    let hash = inv.payment_hash().to_byte_array();
    // Both sides see the payment complete, so the next one starts on a quiet channel.
    if let Err(e) =
        a.cm.pay_for_bolt11_invoice(&inv, PaymentId(hash), None, RouteParametersConfig::default(), Retry::Attempts(3))
    {
        let c = a.cm.list_channels();
        panic!(
            "payment {n} not sent: {e:?}; usable {:?} limit {:?} pending out {:?} in {:?}",
            c.iter().map(|c| c.is_usable).collect::<Vec<_>>(),
            c.iter().map(|c| c.next_outbound_htlc_limit_msat).collect::<Vec<_>>(),
            c.iter().map(|c| c.pending_outbound_htlcs.len()).collect::<Vec<_>>(),
            c.iter().map(|c| c.pending_inbound_htlcs.len()).collect::<Vec<_>>(),
        );
    }
    // The driver task sends what the payment queued (woken by the manager).
    wait_bare(a, |e| matches!(e, BareEvent::Sent(h) if *h == hash)).await;
    wait_bare(b, |e| matches!(e, BareEvent::Claimed(h) if *h == hash)).await;
    a.wait_until("channel quiet again", |a| {
        a.cm.list_channels().iter().all(|c| c.is_usable && c.pending_outbound_htlcs.is_empty())
    })
    .await;
}

// ---- payd engines through the pump ----

async fn engine_payment(payer: &LdkEngine, payee: &LdkEngine, n: u64) {
    let mut settled = payee.subscribe();
    let terms: [u8; 32] = sha256::Hash::hash(&n.to_be_bytes()).to_byte_array();
    let inv = payee.create_invoice(PAYMENT_MSAT, terms, 600).await.expect("invoice");
    payer
        .pay(inv.bolt11.clone(), PayParams { max_fee_msat: 0, timeout: TIMEOUT, expected: None })
        .await
        .expect("payment");
    tokio::time::timeout(TIMEOUT, async {
        while let Ok(ev) = settled.recv().await {
            if matches!(ev, PaydEvent::InvoiceSettled { payment_hash, .. } if payment_hash == inv.payment_hash) {
                return;
            }
        }
    })
    .await
    .expect("payee settles");
    let deadline = Instant::now() + TIMEOUT;
    while payer.channels().iter().any(|c| !c.is_usable || c.pending_outbound_htlcs > 0) {
        assert!(Instant::now() < deadline, "channel quiet again");
        tokio::task::yield_now().await;
    }
}

// ---- two whole nodes: payd through peerd and the bus ----

async fn bus_payment(rc: &Bus, pc: &Bus, n: u64) {
    let terms: [u8; 32] = sha256::Hash::hash(&n.to_be_bytes()).to_byte_array();
    let inv = PaydApi::CreateInvoice { amount_msat: PAYMENT_MSAT, description_hash: terms, expiry_secs: 600 };
    let bolt11 = match pc.request(&ServiceId::Payd, Body::Payd(inv), TIMEOUT).await {
        Ok(Body::Payd(PaydApi::Invoice { bolt11, .. })) => bolt11,
        other => panic!("invoice {n}: {other:?}"),
    };
    let pay = PaydApi::Pay { bolt11, max_fee_msat: 0, timeout_secs: TIMEOUT.as_secs() as u32 };
    match rc.request(&ServiceId::Payd, Body::Payd(pay), TIMEOUT).await {
        Ok(Body::Payd(PaydApi::Paid { .. })) => {}
        other => panic!("payment {n}: {other:?}"),
    }
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("runtime")
}

/// Times `iters` sequential payments made by `pay(n)` on `rt`.
fn timed<F: std::future::Future<Output = ()>>(
    rt: &tokio::runtime::Runtime,
    iters: u64,
    n: &mut u64,
    mut pay: impl FnMut(u64) -> F,
) -> Duration {
    rt.block_on(async {
        let start = Instant::now();
        for _ in 0..iters {
            *n += 1;
            pay(*n).await;
        }
        start.elapsed()
    })
}

fn payments(c: &mut Criterion) {
    // The bare nodes get a runtime of their own.
    let bare_rt = runtime();
    let (mut ba, mut bb) = bare_rt.block_on(bare_pair());
    let rt = runtime();
    let (da, db) = (tempfile::tempdir().expect("tempdir"), tempfile::tempdir().expect("tempdir"));
    let (a, b, _link) = rt.block_on(pump::pair_with_channel(da.path(), db.path(), CHANNEL_SAT));
    let pair = rt.block_on(NodePair::start(InProcessNode::start().expect("payee node"), CHANNEL_SAT)).expect("nodes");
    let (rc, pc) = (&pair.rc, &pair.pc);

    let mut g = c.benchmark_group("payd_payment");
    g.throughput(Throughput::Elements(1));
    g.sample_size(20);
    g.warm_up_time(Duration::from_secs(1));
    g.measurement_time(Duration::from_secs(6));
    let mut n = 0u64;
    g.bench_function("ldk_peermanager_baseline", |bench| {
        bench.iter_custom(|iters| {
            bare_rt.block_on(async {
                let start = Instant::now();
                for _ in 0..iters {
                    n += 1;
                    bare_payment(&mut ba, &mut bb, n).await;
                }
                start.elapsed()
            })
        })
    });
    g.bench_function("payd_engine_pump", |bench| {
        bench.iter_custom(|iters| timed(&rt, iters, &mut n, |n| engine_payment(&a.engine, &b.engine, n)))
    });
    g.bench_function("payd_through_peerd_and_bus", |bench| {
        bench.iter_custom(|iters| timed(&rt, iters, &mut n, |n| bus_payment(rc, pc, n)))
    });
    g.finish();
}

criterion_group!(benches, payments);
criterion_main!(benches);
