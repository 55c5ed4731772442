//! The init message peerd sends, and the checks on the one it receives.
//!
//! Our features are those of the embedded LDK channel engine (payd), so a remote LDK or lnd node
//! accepts us as a channel peer; every message type those bits commit us to is in peerd's channel
//! range and is forwarded to payd. The chain is the network's genesis hash (devnet uses regtest's).

use crate::config::Network;
use crate::wire::bolt1::Init;
use lightning::bitcoin::constants::ChainHash;

/// Our features, big-endian as on the wire: LDK's, less the bits whose messages the channel
/// engine does not handle (the same set payd's engine advertises).
pub fn our_features() -> Vec<u8> {
    let f = lightning::ln::channelmanager::provided_init_features(&lightning::util::config::UserConfig::default());
    let mut be = f.le_flags().to_vec();
    be.reverse();
    crate::payd::ldk::bridge::clear_feature_bits_be(&mut be, crate::payd::ldk::UNSUPPORTED_FEATURE_BITS);
    let first = be.iter().position(|b| *b != 0).unwrap_or(be.len());
    be.drain(..first);
    be
}

/// The chain hash we announce in `networks`.
pub fn chain_hash(network: Network) -> [u8; 32] {
    ChainHash::using_genesis_block(network.bitcoin_network()).to_bytes()
}

/// Our init message.
pub fn our_init(network: Network) -> Init {
    Init { features: our_features(), networks: Some(vec![chain_hash(network)]), ..Default::default() }
}

/// Whether bit `i` is set in a big-endian bit field.
fn bit(be: &[u8], i: usize) -> bool {
    let byte = i / 8;
    byte < be.len() && be[be.len() - 1 - byte] & (1 << (i % 8)) != 0
}

/// Why a peer's init is refused, if it is.
pub fn check_their_init(their: &Init, network: Network) -> Result<(), String> {
    let ours = our_features();
    // BOLT #1: a required (even) feature we do not know means we cannot talk to this peer.
    // The global and local fields are ORed, as BOLT #1 asks.
    let n = their.features.len().max(their.global_features.len()) * 8;
    for i in (0..n).step_by(2) {
        let required = bit(&their.features, i) || bit(&their.global_features, i);
        if required && !bit(&ours, i) && !bit(&ours, i + 1) {
            return Err(format!("peer requires feature bit {i}, which we do not support"));
        }
    }
    if let Some(nets) = &their.networks {
        let ours = chain_hash(network);
        if !nets.is_empty() && !nets.contains(&ours) {
            return Err(format!("no common chain: peer is on {} chain(s), none is ours ({network})", nets.len()));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn our_features_are_ldks_and_include_static_remote_key() {
        let f = our_features();
        assert!(bit(&f, 12) || bit(&f, 13), "static_remote_key");
        assert!(bit(&f, 14) || bit(&f, 15), "payment_secret");
        assert!(check_their_init(&our_init(Network::Devnet), Network::Devnet).is_ok());
    }

    #[test]
    fn every_channel_engine_message_is_routed_to_payd() {
        use crate::wire::{classify, MessageClass};
        for t in crate::payd::ldk::CHANNEL_MESSAGE_TYPES {
            let c = classify(*t);
            // error and warning are control messages; peerd forwards them to payd as well.
            let routed = c == MessageClass::Channel || matches!(*t, 1 | 17);
            assert!(routed, "type {t} is handled by the engine but classified {c:?}");
        }
    }

    #[test]
    fn unknown_required_bits_and_foreign_chains_are_refused() {
        let mut their = our_init(Network::Devnet);
        // bit 200, required, unknown to us
        let mut f = vec![0u8; 26];
        f[0] = 0x01;
        their.features = f;
        assert!(check_their_init(&their, Network::Devnet).unwrap_err().contains("bit 200"));
        // the same bit as optional (odd: 201) is fine
        let mut f = vec![0u8; 26];
        f[0] = 0x02;
        their.features = f;
        assert!(check_their_init(&their, Network::Devnet).is_ok());
        let main = our_init(Network::Mainnet);
        assert!(check_their_init(&main, Network::Devnet).unwrap_err().contains("no common chain"));
        let none = Init { networks: None, ..Default::default() };
        assert!(check_their_init(&none, Network::Mainnet).is_ok());
    }
}
