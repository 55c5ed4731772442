//! BOLT #1 codec checked against LDK's message structs as an independent oracle: whatever we
//! encode LDK decodes to the same values, and whatever LDK encodes we decode to the same values
//! and re-encode to the same bytes.

use lcp::wire::bolt1::{self, Bolt1Message, ErrorMessage, Init, Ping, Pong};
use lightning::bitcoin::constants::ChainHash;
use lightning::ln::msgs;
use lightning::ln::types::ChannelId;
use lightning::types::features::InitFeatures;
use lightning::util::ser::{LengthReadable, Writeable};
use proptest::prelude::*;

fn ldk_read<T: LengthReadable>(bytes: &[u8]) -> Result<T, msgs::DecodeError> {
    T::read_from_fixed_length_buffer(&mut &bytes[..])
}

fn ipv4() -> impl Strategy<Value = Option<([u8; 4], u16)>> {
    proptest::option::of((any::<[u8; 4]>(), any::<u16>()))
}

fn ldk_addr(a: Option<([u8; 4], u16)>) -> Option<msgs::SocketAddress> {
    a.map(|(addr, port)| msgs::SocketAddress::TcpIpV4 { addr, port })
}

fn our_addr(a: Option<([u8; 4], u16)>) -> Option<Vec<u8>> {
    a.map(|(addr, port)| {
        let mut v = vec![1];
        v.extend(addr);
        v.extend(port.to_be_bytes());
        v
    })
}

fn networks() -> impl Strategy<Value = Option<Vec<[u8; 32]>>> {
    proptest::option::of(proptest::collection::vec(any::<[u8; 32]>(), 0..3))
}

fn feats_be(be: &[u8]) -> InitFeatures {
    InitFeatures::from_be_bytes(be.to_vec())
}

proptest! {
    #[test]
    fn ldk_init_decodes_with_us(
        le in proptest::collection::vec(any::<u8>(), 0..10),
        nets in networks(),
        addr in ipv4(),
    ) {
        let ldk = msgs::Init {
            features: InitFeatures::from_le_bytes(le),
            networks: nets.clone().map(|n| n.into_iter().map(ChainHash::from).collect()),
            remote_network_address: ldk_addr(addr),
        };
        let bytes = ldk.encode();
        let ours = Init::decode(&bytes).expect("we decode LDK's init");
        prop_assert_eq!(feats_be(&ours.features) | feats_be(&ours.global_features), ldk.features.clone());
        prop_assert_eq!(&ours.networks, &nets);
        prop_assert_eq!(ours.remote_addr.clone(), ldk.remote_network_address.as_ref().map(|a| a.encode()));
        prop_assert_eq!(ours.remote_addr.clone(), our_addr(addr));
        prop_assert!(ours.extra.is_empty());
        prop_assert_eq!(ours.encode().expect("encode"), bytes);
    }

    #[test]
    fn our_init_decodes_with_ldk(
        global in proptest::collection::vec(any::<u8>(), 0..3),
        local in proptest::collection::vec(any::<u8>(), 0..10),
        nets in networks(),
        addr in ipv4(),
    ) {
        let ours = Init {
            global_features: global.clone(),
            features: local.clone(),
            networks: nets.clone(),
            remote_addr: our_addr(addr),
            extra: vec![],
        };
        let bytes = ours.encode().expect("encode");
        let ldk: msgs::Init = ldk_read(&bytes).expect("LDK decodes our init");
        prop_assert_eq!(ldk.features, feats_be(&local) | feats_be(&global));
        let ldk_nets = ldk.networks.map(|n| n.into_iter().map(|c| c.to_bytes()).collect::<Vec<_>>());
        prop_assert_eq!(ldk_nets, nets);
        prop_assert_eq!(ldk.remote_network_address, ldk_addr(addr));
    }

    #[test]
    fn ping_pong_agree_with_ldk(ponglen in any::<u16>(), byteslen in 0u16..2000, junk in proptest::collection::vec(any::<u8>(), 0..500)) {
        // LDK -> us.
        let bytes = msgs::Ping { ponglen, byteslen }.encode();
        let ours = Ping::decode(&bytes).expect("decode LDK ping");
        prop_assert_eq!(ours.num_pong_bytes, ponglen);
        prop_assert_eq!(&ours.ignored, &vec![0u8; usize::from(byteslen)]);
        prop_assert_eq!(ours.encode().expect("encode"), bytes);
        let bytes = msgs::Pong { byteslen }.encode();
        let ours = Pong::decode(&bytes).expect("decode LDK pong");
        prop_assert_eq!(ours.ignored.len(), usize::from(byteslen));
        prop_assert_eq!(ours.encode().expect("encode"), bytes);
        // us -> LDK (padding need not be zeros).
        let ping = Ping { num_pong_bytes: ponglen, ignored: junk.clone(), extra: vec![] };
        let ldk: msgs::Ping = ldk_read(&ping.encode().expect("encode")).expect("LDK decodes ping");
        prop_assert_eq!(ldk.ponglen, ponglen);
        prop_assert_eq!(usize::from(ldk.byteslen), junk.len());
        let pong = Pong { ignored: junk.clone(), extra: vec![] };
        let ldk: msgs::Pong = ldk_read(&pong.encode().expect("encode")).expect("LDK decodes pong");
        prop_assert_eq!(usize::from(ldk.byteslen), junk.len());
    }

    #[test]
    fn error_and_warning_agree_with_ldk(id in any::<[u8; 32]>(), text in ".{0,200}") {
        // LDK -> us.
        let e = msgs::ErrorMessage { channel_id: ChannelId(id), data: text.clone() };
        let bytes = e.encode();
        let ours = ErrorMessage::decode(&bytes).expect("decode LDK error");
        prop_assert_eq!(ours.channel_id, id);
        prop_assert_eq!(ours.text(), Some(text.as_str()));
        prop_assert_eq!(ours.encode().expect("encode"), bytes.clone());
        let w = msgs::WarningMessage { channel_id: ChannelId(id), data: text.clone() };
        prop_assert_eq!(w.encode(), bytes.clone());
        // us -> LDK.
        let ours = ErrorMessage { channel_id: id, data: text.as_bytes().to_vec(), extra: vec![] };
        let b = ours.encode().expect("encode");
        let ldk: msgs::ErrorMessage = ldk_read(&b).expect("LDK decodes error");
        prop_assert_eq!(ldk.channel_id, ChannelId(id));
        prop_assert_eq!(&ldk.data, &text);
        let ldk: msgs::WarningMessage = ldk_read(&b).expect("LDK decodes warning");
        prop_assert_eq!(ldk.data, text);
    }
}

#[test]
fn whole_messages_carry_the_ldk_type_numbers() {
    use lightning::ln::wire::Type;
    let init = msgs::Init { features: InitFeatures::empty(), networks: None, remote_network_address: None };
    assert_eq!(init.type_id(), bolt1::INIT);
    assert_eq!(msgs::Ping { ponglen: 1, byteslen: 0 }.type_id(), bolt1::PING);
    assert_eq!(msgs::Pong { byteslen: 0 }.type_id(), bolt1::PONG);
    let e = msgs::ErrorMessage { channel_id: ChannelId([0; 32]), data: String::new() };
    assert_eq!(e.type_id(), bolt1::ERROR);
    let w = msgs::WarningMessage { channel_id: ChannelId([0; 32]), data: String::new() };
    assert_eq!(w.type_id(), bolt1::WARNING);
    let m = Bolt1Message::decode(bolt1::PING, &msgs::Ping { ponglen: 9, byteslen: 3 }.encode()).expect("decode");
    assert_eq!(m.msg_type(), bolt1::PING);
}

#[test]
fn lnp_core_style_ping_is_rejected_like_ldk_does() {
    // `00 04 00` (BigSize length) is the broken encoding; LDK and we both refuse it.
    let broken = [0x00, 0x04, 0x00];
    assert!(ldk_read::<msgs::Ping>(&broken).is_err());
    assert!(Ping::decode(&broken).is_err());
}
