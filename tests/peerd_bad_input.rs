//! Hostile and broken peers against the listener: each is disconnected with a typed reason and
//! a log line, and the listener goes on serving a well-behaved peer afterwards.

mod peerd_common;

use std::time::Duration;

use internet2::session::noise::HandshakeState;
use lcp::peerd::transport::noise;
use lcp::peerd::transport::{DisconnectReason, RateLimit, TransportConfig};
use peerd_common::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Connects and completes the handshake with our own initiator, returning the socket and the
/// raw transcoder so the test can write arbitrary (broken) frames.
async fn handshaken_raw_peer(
    addr: std::net::SocketAddr,
    byte: u8,
) -> (TcpStream, internet2::session::noise::NoiseTranscoder<2>) {
    let mut stream = TcpStream::connect(addr).await.expect("connect");
    let t =
        noise::initiate(&mut stream, &client_identity(byte), &server_identity().node_id()).await.expect("handshake");
    (stream, t)
}

fn frame(t: &mut internet2::session::noise::NoiseTranscoder<2>, ty: u16, len: usize) -> Vec<u8> {
    let mut plain = ty.to_be_bytes().to_vec();
    plain.resize(len, 0xab);
    t.encrypt_buf(&plain).expect("encrypt")
}

#[tokio::test]
async fn garbage_instead_of_act_one() {
    let (logs, _g) = LogCapture::install();
    let mut listener = listen(TransportConfig::default()).await;
    let mut s = TcpStream::connect(listener.local_addr()).await.expect("connect");
    s.write_all(&[0xff; 50]).await.expect("write garbage");
    let reason = next_failure(&mut listener).await;
    assert!(matches!(&reason, DisconnectReason::HandshakeFailed(d) if d.contains("act 1")), "{reason}");
    // The listener closed the socket.
    let mut buf = [0u8; 1];
    let n = tokio::time::timeout(WAIT, s.read(&mut buf)).await.expect("in time");
    assert!(matches!(n, Ok(0) | Err(_)), "socket still open: {n:?}");
    assert!(logs.has_line(&["peerd", "handshake failed", "act 1"]), "{}", logs.text());
    assert_good_peer_served(&mut listener, 0x31).await;
}

#[tokio::test]
async fn garbage_instead_of_act_three() {
    let (logs, _g) = LogCapture::install();
    let mut listener = listen(TransportConfig::default()).await;
    let mut s = TcpStream::connect(listener.local_addr()).await.expect("connect");
    // A genuine act one from internet2's initiator, then 66 bytes of garbage.
    let local = secp256k1_inet2::SecretKey::from_slice(&[0x44; 32]).expect("key");
    let eph = secp256k1_inet2::SecretKey::from_slice(&[0x45; 32]).expect("key");
    let remote = secp256k1_inet2::PublicKey::from_slice(&server_identity().node_id().to_bytes()).expect("point");
    let state = HandshakeState::<2>::new_initiator(&local, &remote, &eph);
    let (act_one, _) = state.next(&[]).expect("act one");
    s.write_all(&act_one.expect("act one bytes")).await.expect("write");
    let mut act_two = [0u8; 50];
    s.read_exact(&mut act_two).await.expect("act two arrives");
    s.write_all(&[0x00; 66]).await.expect("write garbage act three");
    let reason = next_failure(&mut listener).await;
    assert!(matches!(&reason, DisconnectReason::HandshakeFailed(d) if d.contains("act 3")), "{reason}");
    assert!(logs.has_line(&["peerd", "handshake failed", "act 3"]), "{}", logs.text());
    assert_good_peer_served(&mut listener, 0x32).await;
}

#[tokio::test]
async fn close_in_the_middle_of_act_one() {
    let mut listener = listen(TransportConfig::default()).await;
    let mut s = TcpStream::connect(listener.local_addr()).await.expect("connect");
    s.write_all(&[0x00; 20]).await.expect("write");
    drop(s);
    let reason = next_failure(&mut listener).await;
    assert!(matches!(&reason, DisconnectReason::HandshakeFailed(d) if d.contains("after 20 of 50 bytes")), "{reason}");
    assert_good_peer_served(&mut listener, 0x33).await;
}

#[tokio::test]
async fn silent_socket_hits_the_handshake_timeout() {
    let (logs, _g) = LogCapture::install();
    let mut config = TransportConfig::default();
    config.noise.handshake_timeout = Duration::from_millis(200);
    let mut listener = listen(config).await;
    let _silent = TcpStream::connect(listener.local_addr()).await.expect("connect");
    assert_eq!(next_failure(&mut listener).await, DisconnectReason::HandshakeTimeout);
    assert!(logs.has_line(&["peerd", "handshake timed out"]), "{}", logs.text());
    assert_good_peer_served(&mut listener, 0x34).await;
}

#[tokio::test]
async fn truncated_frame() {
    let (logs, _g) = LogCapture::install();
    let mut listener = listen(TransportConfig::default()).await;
    let (mut s, mut t) = handshaken_raw_peer(listener.local_addr(), 0x41).await;
    let conn = next_connection(&mut listener).await;
    let f = frame(&mut t, 42081, 100);
    s.write_all(&f[..60]).await.expect("write part of a frame");
    s.shutdown().await.expect("close write side");
    assert_eq!(closed(&conn).await, DisconnectReason::TruncatedFrame { pending: 60 });
    assert!(logs.has_line(&["peerd", "peer disconnected", "mid-frame"]), "{}", logs.text());
    assert_good_peer_served(&mut listener, 0x35).await;
}

#[tokio::test]
async fn flipped_bit_fails_the_mac() {
    let (logs, _g) = LogCapture::install();
    let mut listener = listen(TransportConfig::default()).await;
    for (i, position) in [5usize, 40].into_iter().enumerate() {
        // Byte 5 is in the encrypted length prefix, byte 40 in the body.
        let (mut s, mut t) = handshaken_raw_peer(listener.local_addr(), 0x42 + i as u8).await;
        let mut conn = next_connection(&mut listener).await;
        let good = frame(&mut t, 42081, 64);
        let mut bad = frame(&mut t, 42081, 64);
        bad[position] ^= 0x01;
        s.write_all(&good).await.expect("write");
        s.write_all(&bad).await.expect("write");
        assert_eq!(closed(&conn).await, DisconnectReason::MacFailure);
        // The good frame before it was delivered, nothing after.
        let first = conn.inbound.recv().await.expect("first message delivered");
        assert_eq!(first.msg_type(), 42081);
        assert_eq!(conn.inbound.recv().await, None);
    }
    assert!(logs.has_line(&["peerd", "peer disconnected", "bad MAC"]), "{}", logs.text());
    assert_good_peer_served(&mut listener, 0x36).await;
}

#[tokio::test]
async fn length_prefix_over_the_limit() {
    let (logs, _g) = LogCapture::install();
    let mut config = TransportConfig::default();
    config.noise.max_inbound_message_len = 1024;
    let mut listener = listen(config).await;
    let (mut s, mut t) = handshaken_raw_peer(listener.local_addr(), 0x51).await;
    let mut conn = next_connection(&mut listener).await;
    let ok = frame(&mut t, 42081, 1024);
    let too_big = frame(&mut t, 42081, 4000);
    s.write_all(&ok).await.expect("write");
    // The peer may reset the socket before everything is written.
    let _ = s.write_all(&too_big).await;
    assert_eq!(closed(&conn).await, DisconnectReason::OversizedFrame { limit: 1024 });
    let first = conn.inbound.recv().await.expect("in-limit message delivered");
    assert_eq!(first.len(), 1024);
    assert!(logs.has_line(&["peerd", "peer disconnected", "1024-byte limit"]), "{}", logs.text());
    assert_good_peer_served(&mut listener, 0x37).await;
}

#[tokio::test]
async fn flood_beyond_the_rate_limit() {
    let (logs, _g) = LogCapture::install();
    let mut config = TransportConfig::default();
    config.connection.rate_limit = Some(RateLimit { burst: 20, per_second: 1 });
    let mut listener = listen(config).await;
    let (mut s, mut t) = handshaken_raw_peer(listener.local_addr(), 0x61).await;
    let conn = next_connection(&mut listener).await;
    let mut burst = Vec::new();
    for _ in 0..200 {
        burst.extend_from_slice(&frame(&mut t, 42081, 32));
    }
    let _ = s.write_all(&burst).await;
    assert_eq!(closed(&conn).await, DisconnectReason::RateLimited { burst: 20, per_second: 1 });
    assert!(logs.has_line(&["peerd", "peer disconnected", "rate limit"]), "{}", logs.text());
    // The good peer gets the same limit but sends one message: served.
    assert_good_peer_served(&mut listener, 0x38).await;
}

#[tokio::test]
async fn flood_of_pings_beyond_the_rate_limit() {
    let (logs, _g) = LogCapture::install();
    let mut config = TransportConfig::default();
    config.connection.rate_limit = Some(RateLimit { burst: 20, per_second: 1 });
    let mut listener = listen(config).await;
    let (mut s, mut t) = handshaken_raw_peer(listener.local_addr(), 0x62).await;
    let conn = next_connection(&mut listener).await;
    // ping(num_pong_bytes = 4, byteslen = 0): each would be answered, so each costs us a pong.
    let ping = [0u8, 18, 0, 4, 0, 0];
    let mut burst = Vec::new();
    for _ in 0..200 {
        burst.extend_from_slice(&t.encrypt_buf(&ping).expect("encrypt"));
    }
    let _ = s.write_all(&burst).await;
    assert_eq!(closed(&conn).await, DisconnectReason::RateLimited { burst: 20, per_second: 1 });
    assert!(logs.has_line(&["peerd", "peer disconnected", "rate limit"]), "{}", logs.text());
    assert_good_peer_served(&mut listener, 0x39).await;
}
