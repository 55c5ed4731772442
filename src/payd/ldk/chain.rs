//! The engine's environment for LDK: logging, a constant fee estimator, a broadcaster that keeps
//! transactions in memory, the node signer bound to the node key, and the devnet-only pieces
//! (fabricated funding and the zero-conf acceptance policy).

use std::collections::HashSet;

use lightning::bitcoin::absolute::LockTime;
use lightning::bitcoin::hashes::Hash;
use lightning::bitcoin::secp256k1::ecdh::SharedSecret;
use lightning::bitcoin::secp256k1::ecdsa::{RecoverableSignature, Signature};
use lightning::bitcoin::secp256k1::{schnorr, All, Keypair, PublicKey, Scalar, Secp256k1, SecretKey};
use lightning::bitcoin::transaction::Version;
use lightning::bitcoin::{Amount, OutPoint, ScriptBuf, Sequence, Transaction, TxIn, TxOut, Txid, Witness};
use lightning::chain::chaininterface::{BroadcasterInterface, ConfirmationTarget, FeeEstimator};
use lightning::ln::inbound_payment::ExpandedKey;
use lightning::ln::msgs::UnsignedGossipMessage;
use lightning::offers::invoice::UnsignedBolt12Invoice;
use lightning::sign::{EntropySource, KeysManager, NodeSigner, PeerStorageKey, ReceiveAuthKey, Recipient};
use lightning::util::logger::{Level, Logger, Record};
use lightning::util::ser::Writeable;
use lightning_invoice::RawBolt11Invoice;

use crate::payd::backend::{Network, PaydError};

/// Routes LDK's log records to `tracing` under the `payd::ldk` target.
#[derive(Debug, Default)]
pub struct TracingLogger;

impl Logger for TracingLogger {
    fn log(&self, record: Record) {
        let peer = record.peer_id.map(|p| p.to_string()).unwrap_or_default();
        match record.level {
            Level::Gossip | Level::Trace => {
                tracing::trace!(target: "payd::ldk", peer, module = record.module_path, "{}", record.args)
            }
            Level::Debug => {
                tracing::debug!(target: "payd::ldk", peer, module = record.module_path, "{}", record.args)
            }
            Level::Info => {
                tracing::info!(target: "payd::ldk", peer, module = record.module_path, "{}", record.args)
            }
            Level::Warn => {
                tracing::warn!(target: "payd::ldk", peer, module = record.module_path, "{}", record.args)
            }
            Level::Error => {
                tracing::error!(target: "payd::ldk", peer, module = record.module_path, "{}", record.args)
            }
        }
    }
}

/// Fee rate every confirmation target gets on devnet: the relay minimum, 253 sat per 1000 weight.
pub const DEVNET_FEERATE_SAT_PER_KW: u32 = 253;

/// A fee estimator that always answers the same rate (there is no mempool on devnet).
#[derive(Debug)]
pub struct ConstantFeeEstimator {
    /// The rate returned for every target, sat per 1000 weight units.
    pub sat_per_kw: u32,
}

impl FeeEstimator for ConstantFeeEstimator {
    fn get_est_sat_per_1000_weight(&self, _target: ConfirmationTarget) -> u32 {
        self.sat_per_kw
    }
}

/// A broadcaster with no chain behind it: it remembers which transactions it was asked to
/// broadcast (LDK repeats the funding transaction after every monitor update, so this must be
/// cheap and idempotent) and logs each new one once.
#[derive(Debug, Default)]
pub struct MemoryBroadcaster {
    seen: std::sync::Mutex<HashSet<Txid>>,
}

impl BroadcasterInterface for MemoryBroadcaster {
    fn broadcast_transactions(&self, txs: &[&Transaction]) {
        if let Ok(mut seen) = self.seen.lock() {
            for tx in txs {
                if seen.insert(tx.compute_txid()) {
                    tracing::debug!(target: "payd::ldk", txid = %tx.compute_txid(), "transaction dropped (no chain source)");
                }
            }
        }
    }
}

/// Derive the seed of LDK's [`KeysManager`] (channel keys, payment secrets) from the node secret,
/// so that one 32-byte secret in the data directory restores everything.
pub fn keys_seed_from_node_secret(node_secret: &[u8; 32]) -> [u8; 32] {
    use sha2::{Digest, Sha256};
    let mut h = Sha256::new();
    h.update(b"lcp-node/payd/ldk-keys-seed/v1");
    h.update(node_secret);
    h.finalize().into()
}

/// The node signer: LDK's [`KeysManager`] for everything except the node identity, which is the
/// node secret shared with peerd (so invoice payee == node id == BOLT #8 identity).
pub struct NodeKeys {
    keys: std::sync::Arc<KeysManager>,
    node_secret: SecretKey,
    node_id: PublicKey,
    secp: Secp256k1<All>,
}

impl NodeKeys {
    /// Bind `keys` to the node identity `node_secret`.
    pub fn new(keys: std::sync::Arc<KeysManager>, node_secret: SecretKey) -> Self {
        let secp = Secp256k1::new();
        let node_id = PublicKey::from_secret_key(&secp, &node_secret);
        NodeKeys { keys, node_secret, node_id, secp }
    }

    /// The node id.
    pub fn node_id(&self) -> PublicKey {
        self.node_id
    }
}

impl NodeSigner for NodeKeys {
    fn get_expanded_key(&self) -> ExpandedKey {
        self.keys.get_expanded_key()
    }

    fn get_peer_storage_key(&self) -> PeerStorageKey {
        self.keys.get_peer_storage_key()
    }

    fn get_receive_auth_key(&self) -> ReceiveAuthKey {
        self.keys.get_receive_auth_key()
    }

    fn get_node_id(&self, recipient: Recipient) -> Result<PublicKey, ()> {
        match recipient {
            Recipient::Node => Ok(self.node_id),
            Recipient::PhantomNode => Err(()),
        }
    }

    fn ecdh(&self, recipient: Recipient, other_key: &PublicKey, tweak: Option<&Scalar>) -> Result<SharedSecret, ()> {
        if !matches!(recipient, Recipient::Node) {
            return Err(());
        }
        let mut secret = self.node_secret;
        if let Some(tweak) = tweak {
            secret = secret.mul_tweak(tweak).map_err(|_| ())?;
        }
        Ok(SharedSecret::new(other_key, &secret))
    }

    fn sign_invoice(&self, invoice: &RawBolt11Invoice, recipient: Recipient) -> Result<RecoverableSignature, ()> {
        if !matches!(recipient, Recipient::Node) {
            return Err(());
        }
        let hash = invoice.signable_hash();
        let msg = lightning::bitcoin::secp256k1::Message::from_digest(hash);
        Ok(self.secp.sign_ecdsa_recoverable(&msg, &self.node_secret))
    }

    fn sign_bolt12_invoice(&self, invoice: &UnsignedBolt12Invoice) -> Result<schnorr::Signature, ()> {
        let message = invoice.tagged_hash().as_digest();
        let keys = Keypair::from_secret_key(&self.secp, &self.node_secret);
        let aux = self.keys.get_secure_random_bytes();
        Ok(self.secp.sign_schnorr_with_aux_rand(message, &keys, &aux))
    }

    fn sign_gossip_message(&self, msg: UnsignedGossipMessage) -> Result<Signature, ()> {
        let digest = lightning::bitcoin::hashes::sha256d::Hash::hash(&msg.encode());
        let msg = lightning::bitcoin::secp256k1::Message::from_digest(digest.to_byte_array());
        Ok(self.secp.sign_ecdsa(&msg, &self.node_secret))
    }

    fn sign_message(&self, msg: &[u8]) -> Result<String, ()> {
        Ok(lightning::util::message_signing::sign(msg, &self.node_secret))
    }
}

/// Build a fabricated funding transaction for a devnet channel: one input spending an outpoint
/// that does not exist (`nonce` makes it unique), with a non-empty dummy witness so LDK accepts it
/// as "fully signed", and one output paying `value_sat` to the channel's funding script.
///
/// Refused on every network but [`Network::Devnet`].
pub fn fabricate_funding_tx(
    network: Network,
    value_sat: u64,
    output_script: ScriptBuf,
    nonce: [u8; 32],
) -> Result<Transaction, PaydError> {
    if network != Network::Devnet {
        return Err(PaydError::DevnetOnly { what: "fabricated channel funding", network });
    }
    let mut witness = Witness::new();
    witness.push([0x01u8]);
    Ok(Transaction {
        version: Version::TWO,
        lock_time: LockTime::ZERO,
        input: vec![TxIn {
            previous_output: OutPoint { txid: Txid::from_byte_array(nonce), vout: 0 },
            script_sig: ScriptBuf::new(),
            sequence: Sequence::MAX,
            witness,
        }],
        output: vec![TxOut { value: Amount::from_sat(value_sat), script_pubkey: output_script }],
    })
}

/// How to answer an inbound channel request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum InboundChannelDecision {
    /// Accept with zero confirmations (trusted peer, devnet only).
    AcceptZeroConf,
    /// Refuse the channel.
    Reject,
}

/// Who may open zero-conf channels to us.
#[derive(Clone, Debug, Default)]
pub enum TrustPolicy {
    /// Every peer (only honoured on devnet).
    #[default]
    AllPeersOnDevnet,
    /// Only these peers.
    Peers(HashSet<PublicKey>),
}

/// Decide on an inbound channel. Without a chain source the engine cannot watch a funding
/// transaction confirm, so the only channels it can use are zero-conf ones funded by a trusted
/// peer; and since such funding may be fabricated, they are accepted on devnet only.
pub fn inbound_channel_decision(network: Network, policy: &TrustPolicy, peer: &PublicKey) -> InboundChannelDecision {
    if network != Network::Devnet {
        return InboundChannelDecision::Reject;
    }
    match policy {
        TrustPolicy::AllPeersOnDevnet => InboundChannelDecision::AcceptZeroConf,
        TrustPolicy::Peers(set) if set.contains(peer) => InboundChannelDecision::AcceptZeroConf,
        TrustPolicy::Peers(_) => InboundChannelDecision::Reject,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(b: u8) -> PublicKey {
        let secp = Secp256k1::new();
        let sk = SecretKey::from_slice(&[b; 32]).expect("constant test key is valid");
        PublicKey::from_secret_key(&secp, &sk)
    }

    #[test]
    fn fabricated_funding_only_on_devnet() {
        for net in [Network::Mainnet, Network::Testnet, Network::Signet, Network::Regtest] {
            let err = fabricate_funding_tx(net, 1000, ScriptBuf::new(), [7; 32]).unwrap_err();
            assert!(matches!(err, PaydError::DevnetOnly { network, .. } if network == net));
        }
        let tx = fabricate_funding_tx(Network::Devnet, 1234, ScriptBuf::new(), [7; 32]).expect("devnet funding");
        assert_eq!(tx.output[0].value, Amount::from_sat(1234));
        assert!(!tx.input[0].witness.is_empty());
        assert_eq!(tx.input[0].previous_output.txid, Txid::from_byte_array([7; 32]));
    }

    #[test]
    fn zero_conf_policy() {
        let a = key(1);
        let b = key(2);
        let only_a = TrustPolicy::Peers([a].into_iter().collect());
        assert_eq!(
            inbound_channel_decision(Network::Devnet, &TrustPolicy::AllPeersOnDevnet, &b),
            InboundChannelDecision::AcceptZeroConf
        );
        assert_eq!(inbound_channel_decision(Network::Devnet, &only_a, &a), InboundChannelDecision::AcceptZeroConf);
        assert_eq!(inbound_channel_decision(Network::Devnet, &only_a, &b), InboundChannelDecision::Reject);
        for net in [Network::Mainnet, Network::Regtest, Network::Testnet] {
            assert_eq!(
                inbound_channel_decision(net, &TrustPolicy::AllPeersOnDevnet, &a),
                InboundChannelDecision::Reject
            );
            assert_eq!(inbound_channel_decision(net, &only_a, &a), InboundChannelDecision::Reject);
        }
    }

    #[test]
    fn keys_seed_depends_on_secret() {
        assert_ne!(keys_seed_from_node_secret(&[1; 32]), keys_seed_from_node_secret(&[2; 32]));
        assert_eq!(keys_seed_from_node_secret(&[1; 32]), keys_seed_from_node_secret(&[1; 32]));
    }
}
