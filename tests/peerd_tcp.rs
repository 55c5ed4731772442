//! Two peerd transports over loopback: message exchange, limits, keepalive, connection cap.

mod peerd_common;

use std::sync::Arc;
use std::time::Duration;

use lcp::peerd::transport::noise;
use lcp::peerd::transport::{
    Bolt1Pings, Dialer, DisconnectReason, KeepaliveConfig, RawMessage, TransportConfig, TransportError, MAX_MESSAGE_LEN,
};
use peerd_common::*;
use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;

fn dialer(byte: u8, config: TransportConfig) -> Dialer {
    Dialer::new(client_identity(byte), config, Arc::new(Bolt1Pings::default()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messages_both_ways_in_order_including_maximum_size() {
    let mut listener = listen(TransportConfig::default()).await;
    let mut ours = dialer(0x71, TransportConfig::default())
        .dial(listener.local_addr(), server_identity().node_id())
        .await
        .expect("dial");
    let mut theirs = next_connection(&mut listener).await;
    assert_eq!(ours.handle.remote(), server_identity().node_id());
    assert_eq!(theirs.handle.remote(), client_identity(0x71).node_id());

    const N: u32 = 3000; // three key rotations in each direction
    let sender = {
        let h = ours.handle.clone();
        tokio::spawn(async move {
            for i in 0..N {
                let m = RawMessage::new(42091, &i.to_be_bytes()).expect("fits");
                h.send(m).await.expect("send");
            }
            let max = RawMessage::new(42093, &vec![7u8; MAX_MESSAGE_LEN - 2]).expect("max fits");
            h.send(max).await.expect("send max");
        })
    };
    for i in 0..N {
        let m = tokio::time::timeout(WAIT, theirs.inbound.recv()).await.expect("in time").expect("open");
        assert_eq!(m.payload(), &i.to_be_bytes(), "message {i}");
    }
    let max = tokio::time::timeout(WAIT, theirs.inbound.recv()).await.expect("in time").expect("open");
    assert_eq!(max.len(), MAX_MESSAGE_LEN);
    sender.await.expect("sender");

    theirs.handle.send(RawMessage::new(42095, b"reply").expect("fits")).await.expect("reply");
    let reply = tokio::time::timeout(WAIT, ours.inbound.recv()).await.expect("in time").expect("open");
    assert_eq!(reply.payload(), b"reply");

    // One byte over the BOLT #8 limit is refused before it reaches the connection.
    assert!(matches!(
        RawMessage::new(42095, &vec![0; MAX_MESSAGE_LEN - 1]),
        Err(TransportError::MessageTooLarge { .. })
    ));

    assert_eq!(ours.handle.disconnect().await, DisconnectReason::LocalRequest);
    assert_eq!(closed(&theirs).await, DisconnectReason::RemoteClosed);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dialing_with_the_wrong_node_id_fails() {
    let mut listener = listen(TransportConfig::default()).await;
    let wrong = client_identity(0x99).node_id();
    let err = dialer(0x72, TransportConfig::default())
        .dial(listener.local_addr(), wrong)
        .await
        .expect_err("handshake must fail");
    assert!(matches!(DisconnectReason::from(err), DisconnectReason::HandshakeFailed(_)), "wrong key accepted");
    // The listener saw a bad act one.
    let reason = next_failure(&mut listener).await;
    assert!(matches!(reason, DisconnectReason::HandshakeFailed(_)), "{reason}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn listener_enforces_its_connection_limit() {
    let config = TransportConfig { max_inbound_connections: 1, ..TransportConfig::default() };
    let mut listener = listen(config).await;
    let first = dialer(0x73, TransportConfig::default())
        .dial(listener.local_addr(), server_identity().node_id())
        .await
        .expect("first dial");
    let first_server_side = next_connection(&mut listener).await;
    assert_eq!(listener.active_connections(), 1);

    // Over the limit: the socket is closed straight away.
    let mut extra = TcpStream::connect(listener.local_addr()).await.expect("tcp connect");
    assert_eq!(next_failure(&mut listener).await, DisconnectReason::TooManyConnections { max: 1 });
    let mut buf = [0u8; 1];
    let n = tokio::time::timeout(WAIT, extra.read(&mut buf)).await.expect("in time");
    assert!(matches!(n, Ok(0) | Err(_)), "refused socket still open: {n:?}");

    // Once the first peer leaves, its slot is free again.
    first.handle.disconnect().await;
    closed(&first_server_side).await;
    tokio::time::timeout(WAIT, async {
        while listener.active_connections() != 0 {
            tokio::task::yield_now().await;
        }
    })
    .await
    .expect("slot released");
    assert_good_peer_served(&mut listener, 0x74).await;
}

fn keepalive_config() -> TransportConfig {
    let mut c = TransportConfig::default();
    c.connection.keepalive =
        Some(KeepaliveConfig { interval: Duration::from_millis(100), timeout: Duration::from_millis(400) });
    c
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keepalive_keeps_answering_peers_and_drops_silent_ones() {
    let mut listener = listen(keepalive_config()).await;

    // A peer that answers pings (our own transport) survives many keepalive timeouts.
    let ours =
        dialer(0x75, keepalive_config()).dial(listener.local_addr(), server_identity().node_id()).await.expect("dial");
    let theirs = next_connection(&mut listener).await;
    let waited = tokio::time::timeout(Duration::from_secs(2), theirs.handle.closed()).await;
    assert!(waited.is_err(), "answering peer was dropped: {:?}", waited.ok());
    assert!(!ours.handle.is_closed());

    // A peer that completes the handshake and then never answers is declared dead.
    let mut silent = TcpStream::connect(listener.local_addr()).await.expect("connect");
    let _t =
        noise::initiate(&mut silent, &client_identity(0x76), &server_identity().node_id()).await.expect("handshake");
    let dead = next_connection(&mut listener).await;
    match closed(&dead).await {
        DisconnectReason::KeepaliveTimeout { idle } => {
            assert!(idle >= Duration::from_millis(400), "{idle:?}")
        }
        other => panic!("expected keepalive timeout, got {other}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_consumer_pauses_reading_and_loses_nothing() {
    const N: u32 = 2000; // 32 MB of 16 KiB messages: more than socket buffers hold
    let mut config = TransportConfig::default();
    config.connection.inbound_queue = 4;
    config.connection.rate_limit = None;
    let mut listener = listen(config).await;
    let ours = dialer(0x77, TransportConfig::default())
        .dial(listener.local_addr(), server_identity().node_id())
        .await
        .expect("dial");
    let mut theirs = next_connection(&mut listener).await;
    let sender = {
        let h = ours.handle.clone();
        tokio::spawn(async move {
            let mut payload = vec![0u8; 16 * 1024];
            for i in 0..N {
                payload[..4].copy_from_slice(&i.to_be_bytes());
                h.send(RawMessage::new(42091, &payload).expect("fits")).await.expect("send");
            }
        })
    };
    // Nobody reads: the receiving connection stops reading its socket.
    tokio::time::timeout(WAIT, async {
        while !theirs.handle.inbound_paused() {
            tokio::task::yield_now().await;
        }
    })
    .await
    .expect("reader pauses on a full inbound queue");
    assert!(!sender.is_finished(), "sender finished although nobody reads");
    // Then everything arrives, in order.
    for i in 0..N {
        let m = tokio::time::timeout(WAIT, theirs.inbound.recv()).await.expect("in time").expect("open");
        assert_eq!(m.payload()[..4], i.to_be_bytes(), "message {i}");
    }
    sender.await.expect("sender");
}
