//! payd's channel messages to peerd carry a per-session sequence number (`ChannelSend`): a gap
//! (a message lost on the bus) ends the session at once, as a gap in the other direction does at
//! payd, since LDK needs every channel message exactly once.

use lcp::bus::api::peerd::PeerdApi;
use lcp::bus::api::Body;
use lcp::bus::{Bus, Incoming, ServiceId};
use lcp::testkit::PeerdNode;
use tokio::sync::mpsc::Receiver;

async fn next_event(rx: &mut Receiver<Incoming>) -> PeerdApi {
    PeerdNode::next_event(rx).await.unwrap()
}

fn channel_send(from: &Bus, to: &str, session: u64, seq: u64, msg: Vec<u8>) {
    let ev = PeerdApi::ChannelSend { node_id: to.into(), session, seq, msg };
    from.send_event(&ServiceId::Peerd, Body::Peerd(ev)).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gap_in_payds_channel_messages_ends_the_session() {
    let mut a = PeerdNode::start().await.unwrap();
    let mut b = PeerdNode::start().await.unwrap();
    let req = PeerdApi::Connect { node_id: b.node_id.clone(), addr: b.listen.clone(), persistent: false };
    a.client.request(&ServiceId::Peerd, Body::Peerd(req), std::time::Duration::from_secs(10)).await.unwrap();
    let session = match next_event(&mut a.payd_rx).await {
        PeerdApi::PeerConnected { peer, .. } => peer.session,
        other => panic!("{other:?}"),
    };
    assert!(matches!(next_event(&mut b.payd_rx).await, PeerdApi::PeerConnected { .. }));
    let msg = |n: u8| [vec![0, 32], vec![n; 10]].concat(); // open_channel-typed bytes
                                                           // In order: delivered.
    channel_send(&a.payd, &b.node_id, session, 0, msg(1));
    channel_send(&a.payd, &b.node_id, session, 1, msg(2));
    for (seq, want) in [(0, msg(1)), (1, msg(2))] {
        match next_event(&mut b.payd_rx).await {
            PeerdApi::Message { seq: s, msg: m, .. } => assert_eq!((s, m), (seq, want)),
            other => panic!("{other:?}"),
        }
    }
    // A message of another session does not count.
    channel_send(&a.payd, &b.node_id, session + 1000, 7, msg(3));
    // Message 2 was lost: 3 ends the session and is not delivered.
    channel_send(&a.payd, &b.node_id, session, 3, msg(4));
    for rx in [&mut a.payd_rx, &mut b.payd_rx] {
        match next_event(rx).await {
            PeerdApi::PeerDisconnected { .. } => {}
            other => panic!("expected PeerDisconnected, got {other:?}"),
        }
    }
}
