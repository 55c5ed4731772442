//! BOLT #8 (Noise_XK) over tokio.
//!
//! The cryptography is internet2's sans-IO `HandshakeState` and `NoiseEncryptor` /
//! `NoiseDecryptor` (which also rotate keys every 1000 messages); this module moves their bytes
//! over our own sockets, so peer sockets can get `TCP_NODELAY` and every read is bounded.

use std::net::SocketAddr;
use std::time::Duration;

use internet2::session::noise::{HandshakeState, NoiseDecryptor, NoiseEncryptor};
use secp256k1_inet2 as secp;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufWriter};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::TcpStream;

use super::error::TransportError;
use super::io::{MessageReader, MessageWriter};
use super::message::{LocalIdentity, NodeId, RawMessage, MAX_MESSAGE_LEN};

/// BOLT #8 frames: a 2-byte length prefix.
const LEN_SIZE: usize = 2;
/// Poly1305 tag length.
const TAG_LEN: usize = 16;
/// Encrypted length prefix plus its tag.
const HEADER_LEN: usize = LEN_SIZE + TAG_LEN;
/// Act one and act two are 50 bytes, act three 66 bytes.
const ACT_ONE_LEN: usize = 50;
const ACT_TWO_LEN: usize = 50;
const ACT_THREE_LEN: usize = 66;

/// Default size of the socket read buffer of a [`NoiseReader`].
pub const DEFAULT_READ_BUFFER: usize = 16 * 1024;
/// Default size of the write buffer of a [`NoiseWriter`].
pub const DEFAULT_WRITE_BUFFER: usize = 16 * 1024;

/// internet2's BOLT #8 cipher state after a completed handshake (2-byte length prefixes).
pub type Transcoder = internet2::session::noise::NoiseTranscoder<LEN_SIZE>;

/// Settings of the encrypted transport itself (independent of the connection actor).
#[derive(Debug, Clone)]
pub struct NoiseConfig {
    /// Upper bound on TCP connect (outbound) plus the three acts.
    pub handshake_timeout: Duration,
    /// Largest inbound plaintext accepted (at most [`MAX_MESSAGE_LEN`]); a frame announcing
    /// more closes the connection.
    pub max_inbound_message_len: usize,
    /// Bytes read from the socket at once.
    pub read_buffer: usize,
    /// Bytes of ciphertext buffered before a socket write.
    pub write_buffer: usize,
}

impl Default for NoiseConfig {
    fn default() -> Self {
        NoiseConfig {
            handshake_timeout: Duration::from_secs(10),
            max_inbound_message_len: MAX_MESSAGE_LEN,
            read_buffer: DEFAULT_READ_BUFFER,
            write_buffer: DEFAULT_WRITE_BUFFER,
        }
    }
}

fn handshake_error(act: u8, e: impl std::fmt::Display) -> TransportError {
    TransportError::Handshake { act, detail: e.to_string() }
}

async fn read_act<S: AsyncRead + Unpin>(stream: &mut S, act: u8, buf: &mut [u8]) -> Result<(), TransportError> {
    let mut got = 0;
    while got < buf.len() {
        let Some(rest) = buf.get_mut(got..) else {
            break;
        };
        let n = stream.read(rest).await?;
        if n == 0 {
            return Err(TransportError::HandshakeEof { act, received: got, expected: buf.len() });
        }
        got += n;
    }
    Ok(())
}

fn random_ephemeral() -> secp::SecretKey {
    use rand::RngCore;
    let mut rng = rand::thread_rng();
    loop {
        let mut bytes = [0u8; 32];
        rng.fill_bytes(&mut bytes);
        // Fails only for zero or values above the curve order (probability ~2^-128).
        if let Ok(key) = secp::SecretKey::from_slice(&bytes) {
            return key;
        }
    }
}

/// Runs the initiator side of the handshake over `stream` with a given ephemeral key.
pub(crate) async fn initiate_with_ephemeral<S: AsyncRead + AsyncWrite + Unpin>(
    stream: &mut S,
    local: &LocalIdentity,
    remote: &NodeId,
    ephemeral: &secp::SecretKey,
) -> Result<Transcoder, TransportError> {
    let remote_pk = remote.to_inet2()?;
    let state = HandshakeState::<LEN_SIZE>::new_initiator(local.secret(), &remote_pk, ephemeral);
    let (act_one, state) = state.next(&[]).map_err(|e| handshake_error(1, e))?;
    let act_one = act_one.ok_or_else(|| handshake_error(1, "no act one produced"))?;
    stream.write_all(&act_one).await?;
    stream.flush().await?;

    let mut act_two = [0u8; ACT_TWO_LEN];
    read_act(stream, 2, &mut act_two).await?;
    let (act_three, state) = state.next(&act_two).map_err(|e| handshake_error(2, e))?;
    let act_three = act_three.ok_or_else(|| handshake_error(2, "no act three produced"))?;
    let HandshakeState::Complete(transcoder) = state else {
        return Err(handshake_error(3, "handshake incomplete after act three"));
    };
    stream.write_all(&act_three).await?;
    stream.flush().await?;
    Ok(transcoder)
}

/// Runs the responder side of the handshake over `stream` with a given ephemeral key; returns
/// the transcoder and the initiator's node id.
pub(crate) async fn respond_with_ephemeral<S: AsyncRead + AsyncWrite + Unpin>(
    stream: &mut S,
    local: &LocalIdentity,
    ephemeral: &secp::SecretKey,
) -> Result<(Transcoder, NodeId), TransportError> {
    let state = HandshakeState::<LEN_SIZE>::new_responder(local.secret(), ephemeral);
    let mut act_one = [0u8; ACT_ONE_LEN];
    read_act(stream, 1, &mut act_one).await?;
    let (act_two, state) = state.next(&act_one).map_err(|e| handshake_error(1, e))?;
    let act_two = act_two.ok_or_else(|| handshake_error(1, "no act two produced"))?;
    stream.write_all(&act_two).await?;
    stream.flush().await?;

    let mut act_three = [0u8; ACT_THREE_LEN];
    read_act(stream, 3, &mut act_three).await?;
    let (_, state) = state.next(&act_three).map_err(|e| handshake_error(3, e))?;
    let HandshakeState::Complete(transcoder) = state else {
        return Err(handshake_error(3, "handshake incomplete after act three"));
    };
    let remote = NodeId::from_inet2(&transcoder.remote_pubkey());
    Ok((transcoder, remote))
}

/// Runs the initiator side of the BOLT #8 handshake over any byte stream and returns the cipher
/// state (split it with [`into_halves`]). `remote` is the node id we expect to reach; a peer
/// holding another key makes the handshake fail. No timeout: callers bound it.
pub async fn initiate<S: AsyncRead + AsyncWrite + Unpin>(
    stream: &mut S,
    local: &LocalIdentity,
    remote: &NodeId,
) -> Result<Transcoder, TransportError> {
    initiate_with_ephemeral(stream, local, remote, &random_ephemeral()).await
}

/// Runs the responder side of the BOLT #8 handshake over any byte stream; returns the cipher
/// state and the initiator's node id (proven by act three). No timeout: callers bound it.
pub async fn respond<S: AsyncRead + AsyncWrite + Unpin>(
    stream: &mut S,
    local: &LocalIdentity,
) -> Result<(Transcoder, NodeId), TransportError> {
    respond_with_ephemeral(stream, local, &random_ephemeral()).await
}

/// Splits a completed handshake into a reader over `r` and a writer over `w`.
pub fn into_halves<R, W>(transcoder: Transcoder, r: R, w: W, config: &NoiseConfig) -> (NoiseReader<R>, NoiseWriter<W>)
where
    R: AsyncRead + Unpin + Send + 'static,
    W: AsyncWrite + Unpin + Send + 'static,
{
    let Transcoder { encryptor, decryptor } = transcoder;
    (
        NoiseReader {
            inner: r,
            decryptor,
            scratch: vec![0u8; config.read_buffer.max(HEADER_LEN)].into_boxed_slice(),
            buffered: 0,
            max_len: config.max_inbound_message_len.min(MAX_MESSAGE_LEN),
        },
        NoiseWriter { inner: BufWriter::with_capacity(config.write_buffer.max(1), w), encryptor },
    )
}

/// The decrypting half of a BOLT #8 connection.
pub struct NoiseReader<R> {
    inner: R,
    decryptor: NoiseDecryptor<LEN_SIZE>,
    scratch: Box<[u8]>,
    /// Ciphertext handed to the decryptor and not yet returned as a message.
    buffered: usize,
    max_len: usize,
}

impl<R> std::fmt::Debug for NoiseReader<R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NoiseReader")
            .field("buffered", &self.buffered)
            .field("max_len", &self.max_len)
            .finish_non_exhaustive()
    }
}

impl<R> NoiseReader<R> {
    /// Takes one complete message out of the decryptor's buffer, if there is one.
    fn take_buffered(&mut self) -> Result<Option<RawMessage>, TransportError> {
        if self.buffered < HEADER_LEN {
            return Ok(None);
        }
        match self.decryptor.decrypt_single_message(None) {
            Ok(Some(plain)) => {
                // The whole frame may arrive in one read, before the prefix check below.
                if plain.len() > self.max_len {
                    return Err(TransportError::OversizedFrame { limit: self.max_len });
                }
                let frame = HEADER_LEN + plain.len() + TAG_LEN;
                self.buffered = self.buffered.saturating_sub(frame);
                RawMessage::from_bytes(plain).map(Some)
            }
            Ok(None) => {
                // The pending frame is incomplete. Had its length been within the limit, this
                // many bytes would have completed it: the prefix announces too much.
                if self.buffered >= HEADER_LEN + self.max_len + TAG_LEN {
                    Err(TransportError::OversizedFrame { limit: self.max_len })
                } else {
                    Ok(None)
                }
            }
            Err(_) => Err(TransportError::MacFailure),
        }
    }
}

impl<R: AsyncRead + Unpin + Send + 'static> MessageReader for NoiseReader<R> {
    async fn read_message(&mut self) -> Result<RawMessage, TransportError> {
        loop {
            if let Some(msg) = self.take_buffered()? {
                return Ok(msg);
            }
            // The only await point: bytes read are handed to the decryptor before the next
            // one, so dropping this future loses nothing.
            let n = self.inner.read(&mut self.scratch).await?;
            if n == 0 {
                return Err(if self.buffered == 0 {
                    TransportError::RemoteClosed
                } else {
                    TransportError::TruncatedFrame { pending: self.buffered }
                });
            }
            let chunk = self.scratch.get(..n).unwrap_or(&[]);
            self.decryptor.read_buf(chunk);
            self.buffered += n;
        }
    }
}

/// The encrypting half of a BOLT #8 connection.
pub struct NoiseWriter<W: AsyncWrite> {
    inner: BufWriter<W>,
    encryptor: NoiseEncryptor<LEN_SIZE>,
}

impl<W: AsyncWrite> std::fmt::Debug for NoiseWriter<W> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NoiseWriter").finish_non_exhaustive()
    }
}

impl<W: AsyncWrite> NoiseWriter<W> {
    /// Encrypts one message into a frame (length prefix, tag, ciphertext, tag).
    pub fn encrypt(&mut self, msg: &[u8]) -> Result<Vec<u8>, TransportError> {
        if msg.len() > MAX_MESSAGE_LEN {
            return Err(TransportError::MessageTooLarge { len: msg.len() });
        }
        self.encryptor.encrypt_buf(msg).map_err(|e| TransportError::Encryption(e.to_string()))
    }
}

impl<W: AsyncWrite + Unpin + Send + 'static> MessageWriter for NoiseWriter<W> {
    async fn write_message(&mut self, msg: &RawMessage) -> Result<(), TransportError> {
        let frame = self.encrypt(msg.as_bytes())?;
        self.inner.write_all(&frame).await?;
        Ok(())
    }

    async fn flush(&mut self) -> Result<(), TransportError> {
        self.inner.flush().await?;
        Ok(())
    }

    async fn close(&mut self) -> Result<(), TransportError> {
        self.inner.flush().await?;
        self.inner.shutdown().await?;
        Ok(())
    }
}

/// Reader half of a BOLT #8 TCP connection.
pub type TcpNoiseReader = NoiseReader<OwnedReadHalf>;
/// Writer half of a BOLT #8 TCP connection.
pub type TcpNoiseWriter = NoiseWriter<OwnedWriteHalf>;

/// An authenticated TCP connection, ready for the connection actor.
#[derive(Debug)]
pub struct Established {
    /// Decrypting half.
    pub reader: TcpNoiseReader,
    /// Encrypting half.
    pub writer: TcpNoiseWriter,
    /// The peer's node id (proven by the handshake).
    pub remote: NodeId,
    /// The peer's socket address.
    pub addr: SocketAddr,
}

/// Connects to `addr` and runs the initiator handshake, expecting `remote`; connect and
/// handshake together are bounded by `config.handshake_timeout`. Sets `TCP_NODELAY`.
pub async fn connect(
    addr: SocketAddr,
    local: &LocalIdentity,
    remote: &NodeId,
    config: &NoiseConfig,
) -> Result<Established, TransportError> {
    let attempt = async {
        let mut stream = TcpStream::connect(addr).await?;
        stream.set_nodelay(true)?;
        let transcoder = initiate(&mut stream, local, remote).await?;
        Ok::<_, TransportError>((stream, transcoder))
    };
    let (stream, transcoder) = tokio::time::timeout(config.handshake_timeout, attempt)
        .await
        .map_err(|_| TransportError::HandshakeTimeout(config.handshake_timeout))??;
    let (r, w) = stream.into_split();
    let (reader, writer) = into_halves(transcoder, r, w, config);
    Ok(Established { reader, writer, remote: *remote, addr })
}

/// Runs the responder handshake on an accepted socket, bounded by `config.handshake_timeout`.
/// Sets `TCP_NODELAY`.
pub async fn accept(
    mut stream: TcpStream,
    local: &LocalIdentity,
    config: &NoiseConfig,
) -> Result<Established, TransportError> {
    stream.set_nodelay(true)?;
    let addr = stream.peer_addr()?;
    let (transcoder, remote) = tokio::time::timeout(config.handshake_timeout, respond(&mut stream, local))
        .await
        .map_err(|_| TransportError::HandshakeTimeout(config.handshake_timeout))??;
    let (r, w) = stream.into_split();
    let (reader, writer) = into_halves(transcoder, r, w, config);
    Ok(Established { reader, writer, remote, addr })
}

#[cfg(test)]
mod tests {
    //! BOLT #8 Appendix A test vectors, run through our handshake driver and framing.

    use tokio::io::{duplex, AsyncReadExt, AsyncWriteExt, DuplexStream};

    use super::*;

    fn h(s: &str) -> Vec<u8> {
        hex::decode(s).expect("valid hex")
    }

    fn key(byte: u8) -> secp::SecretKey {
        secp::SecretKey::from_slice(&[byte; 32]).expect("valid test key")
    }

    const RS_PUB: &str = "028d7500dd4c12685d1f568b4c2b5048e8534b873319f3a8daa612b469132ec7f7";
    const LS_PUB: &str = "034f355bdcb7cc0af728ef3cceb9615d90684bb5b2ca5f859ab0f0b704075871aa";
    const ACT1: &str =
        "00036360e856310ce5d294e8be33fc807077dc56ac80d95d9cd4ddbd21325eff73f70df6086551151f58b8afe6c195782c6a";
    const ACT2: &str =
        "0002466d7fcae563e5cb09a0d1870bb580344804617879a14949cf22285f1bae3f276e2470b93aac583c9ef6eafca3f730ae";
    const ACT3: &str = "00b9e3a702e93e3a9948c2ed6e5fd7590a6e1c3a0344cfc9d5b57357049aa22355361aa02e55a8fc28fef5bd6d71ad0c38228dc68b1c466263b47fdf31e560e139ba";

    /// The six published outputs of the initiator sending "hello" repeatedly.
    const MESSAGE_VECTORS: [(usize, &str); 6] = [
        (0, "cf2b30ddf0cf3f80e7c35a6e6730b59fe802473180f396d88a8fb0db8cbcf25d2f214cf9ea1d95"),
        (1, "72887022101f0b6753e0c7de21657d35a4cb2a1f5cde2650528bbc8f837d0f0d7ad833b1a256a1"),
        (500, "178cb9d7387190fa34db9c2d50027d21793c9bc2d40b1e14dcf30ebeeeb220f48364f7a4c68bf8"),
        (501, "1b186c57d44eb6de4c057c49940d79bb838a145cb528d6e8fd26dbe50a60ca2c104b56b60e45bd"),
        (1000, "4a2f3cc3b5e78ddb83dcb426d9863d9d9a723b0337c89dd0b005d89f8d3c05c52b76b29b740f09"),
        (1001, "2ecd8c8a5629d0d02ab457a0fdd0f7b90a192cd46be5ecb6ca570bfc5e268338b1a16cf4ef2d36"),
    ];

    fn initiator_identity() -> LocalIdentity {
        LocalIdentity::from_secret_bytes([0x11; 32]).unwrap_or_else(|e| panic!("{e}"))
    }

    fn responder_identity() -> LocalIdentity {
        LocalIdentity::from_secret_bytes([0x21; 32]).unwrap_or_else(|e| panic!("{e}"))
    }

    fn responder_id() -> NodeId {
        NodeId::from_slice(&h(RS_PUB)).unwrap_or_else(|e| panic!("{e}"))
    }

    async fn read_exact(s: &mut DuplexStream, n: usize) -> Vec<u8> {
        let mut buf = vec![0u8; n];
        s.read_exact(&mut buf).await.unwrap_or_else(|e| panic!("read: {e}"));
        buf
    }

    /// Runs our initiator against a scripted responder that checks act one, answers with
    /// `act2` and (if act two was valid) checks act three.
    async fn run_initiator(act2: &str) -> (Result<Transcoder, TransportError>, Option<Vec<u8>>) {
        let (mut ours, mut theirs) = duplex(4096);
        let act2 = h(act2);
        let script = tokio::spawn(async move {
            let act1 = read_exact(&mut theirs, 50).await;
            assert_eq!(hex::encode(&act1), ACT1, "act one");
            theirs.write_all(&act2).await.unwrap_or_else(|e| panic!("{e}"));
            if act2.len() < 50 {
                // Short act two: close the stream.
                return None;
            }
            let mut act3 = vec![0u8; 66];
            match theirs.read_exact(&mut act3).await {
                Ok(_) => Some(act3),
                Err(_) => None,
            }
        });
        let result = initiate_with_ephemeral(&mut ours, &initiator_identity(), &responder_id(), &key(0x12)).await;
        drop(ours);
        let act3 = script.await.unwrap_or_else(|e| panic!("{e}"));
        (result, act3)
    }

    #[tokio::test]
    async fn initiator_successful_handshake_vector() {
        let (result, act3) = run_initiator(ACT2).await;
        let transcoder = result.unwrap_or_else(|e| panic!("handshake: {e}"));
        assert_eq!(act3.map(hex::encode).as_deref(), Some(ACT3));
        assert_eq!(hex::encode(transcoder.remote_pubkey().serialize()), RS_PUB);
    }

    #[tokio::test]
    async fn initiator_act2_failure_vectors() {
        let cases = [
            // short read
            (
                "0002466d7fcae563e5cb09a0d1870bb580344804617879a14949cf22285f1bae3f276e2470b93aac583c9ef6eafca3f730",
                "eof",
            ),
            // bad version
            (
                "0102466d7fcae563e5cb09a0d1870bb580344804617879a14949cf22285f1bae3f276e2470b93aac583c9ef6eafca3f730ae",
                "act2",
            ),
            // bad key serialization
            (
                "0004466d7fcae563e5cb09a0d1870bb580344804617879a14949cf22285f1bae3f276e2470b93aac583c9ef6eafca3f730ae",
                "act2",
            ),
            // bad MAC
            (
                "0002466d7fcae563e5cb09a0d1870bb580344804617879a14949cf22285f1bae3f276e2470b93aac583c9ef6eafca3f730af",
                "act2",
            ),
        ];
        for (act2, expected) in cases {
            let (result, act3) = run_initiator(act2).await;
            match (expected, result) {
                ("eof", Err(TransportError::HandshakeEof { act: 2, received: 49, expected: 50 })) => {}
                ("act2", Err(TransportError::Handshake { act: 2, .. })) => {}
                (e, r) => panic!("act two {act2}: expected {e}, got {r:?}"),
            }
            assert!(act3.is_none(), "no act three after a bad act two");
        }
    }

    /// Runs our responder against a scripted initiator sending `act1` and, if act two comes
    /// back, `act3`.
    async fn run_responder(act1: &str, act3: &str) -> (Result<(Transcoder, NodeId), TransportError>, Option<Vec<u8>>) {
        let (mut ours, mut theirs) = duplex(4096);
        let (act1, act3) = (h(act1), h(act3));
        let script = tokio::spawn(async move {
            theirs.write_all(&act1).await.unwrap_or_else(|e| panic!("{e}"));
            if act1.len() < 50 {
                return None;
            }
            let mut act2 = vec![0u8; 50];
            if theirs.read_exact(&mut act2).await.is_err() {
                return None;
            }
            theirs.write_all(&act3).await.unwrap_or_else(|e| panic!("{e}"));
            Some(act2)
        });
        let result = respond_with_ephemeral(&mut ours, &responder_identity(), &key(0x22)).await;
        drop(ours);
        let act2 = script.await.unwrap_or_else(|e| panic!("{e}"));
        (result, act2)
    }

    #[tokio::test]
    async fn responder_successful_handshake_vector() {
        let (result, act2) = run_responder(ACT1, ACT3).await;
        let (_, remote) = result.unwrap_or_else(|e| panic!("handshake: {e}"));
        assert_eq!(act2.map(hex::encode).as_deref(), Some(ACT2));
        assert_eq!(remote.to_string(), LS_PUB);
    }

    #[tokio::test]
    async fn responder_failure_vectors() {
        let cases = [
            // act1 short read
            ("00036360e856310ce5d294e8be33fc807077dc56ac80d95d9cd4ddbd21325eff73f70df6086551151f58b8afe6c195782c", ACT3, 1, true),
            // act1 bad version
            ("01036360e856310ce5d294e8be33fc807077dc56ac80d95d9cd4ddbd21325eff73f70df6086551151f58b8afe6c195782c6a", ACT3, 1, false),
            // act1 bad key serialization
            ("00046360e856310ce5d294e8be33fc807077dc56ac80d95d9cd4ddbd21325eff73f70df6086551151f58b8afe6c195782c6a", ACT3, 1, false),
            // act1 bad MAC
            ("00036360e856310ce5d294e8be33fc807077dc56ac80d95d9cd4ddbd21325eff73f70df6086551151f58b8afe6c195782c6b", ACT3, 1, false),
            // act3 bad version
            (ACT1, "01b9e3a702e93e3a9948c2ed6e5fd7590a6e1c3a0344cfc9d5b57357049aa22355361aa02e55a8fc28fef5bd6d71ad0c38228dc68b1c466263b47fdf31e560e139ba", 3, false),
            // act3 short read
            (ACT1, "00b9e3a702e93e3a9948c2ed6e5fd7590a6e1c3a0344cfc9d5b57357049aa22355361aa02e55a8fc28fef5bd6d71ad0c38228dc68b1c466263b47fdf31e560e139", 3, true),
            // act3 bad MAC for ciphertext
            (ACT1, "00c9e3a702e93e3a9948c2ed6e5fd7590a6e1c3a0344cfc9d5b57357049aa22355361aa02e55a8fc28fef5bd6d71ad0c38228dc68b1c466263b47fdf31e560e139ba", 3, false),
            // act3 bad rs
            (ACT1, "00bfe3a702e93e3a9948c2ed6e5fd7590a6e1c3a0344cfc9d5b57357049aa2235536ad09a8ee351870c2bb7f78b754a26c6cef79a98d25139c856d7efd252c2ae73c", 3, false),
            // act3 bad MAC
            (ACT1, "00b9e3a702e93e3a9948c2ed6e5fd7590a6e1c3a0344cfc9d5b57357049aa22355361aa02e55a8fc28fef5bd6d71ad0c38228dc68b1c466263b47fdf31e560e139bb", 3, false),
        ];
        for (act1, act3, act, short) in cases {
            let (result, act2) = run_responder(act1, act3).await;
            match result {
                Err(TransportError::HandshakeEof { act: a, .. }) if short && a == act => {}
                Err(TransportError::Handshake { act: a, .. }) if !short && a == act => {}
                other => panic!("act {act} case {act1}/{act3}: got {:?}", other.map(|(_, id)| id)),
            }
            if act == 1 {
                assert!(act2.is_none(), "no act two after a bad act one");
            } else {
                assert_eq!(act2.map(hex::encode).as_deref(), Some(ACT2));
            }
        }
    }

    /// Both sides with the vector keys over one stream; the initiator's frames for "hello"
    /// must match the published ones at n = 0, 1, 500, 501, 1000, 1001 (two key rotations),
    /// and our responder must decrypt every one of them.
    #[tokio::test]
    async fn message_encryption_vectors_and_key_rotation() {
        let (mut a, mut b) = duplex(1 << 16);
        let responder = tokio::spawn(async move {
            respond_with_ephemeral(&mut b, &responder_identity(), &key(0x22)).await.map(|(t, id)| (t, id, b))
        });
        let init = initiate_with_ephemeral(&mut a, &initiator_identity(), &responder_id(), &key(0x12))
            .await
            .unwrap_or_else(|e| panic!("initiator: {e}"));
        let (resp, remote, _b) =
            responder.await.unwrap_or_else(|e| panic!("{e}")).unwrap_or_else(|e| panic!("responder: {e}"));
        assert_eq!(remote.to_string(), LS_PUB);

        let config = NoiseConfig::default();
        let (_, mut writer) = into_halves(init, tokio::io::empty(), tokio::io::sink(), &config);
        drop(a);

        let mut frames = Vec::new();
        for _ in 0..1002 {
            frames.push(writer.encrypt(b"hello").unwrap_or_else(|e| panic!("{e}")));
        }
        for (n, expected) in MESSAGE_VECTORS {
            assert_eq!(frames.get(n).map(hex::encode).as_deref(), Some(expected), "output {n}");
        }
        // Feed all frames to the responder's reader through a fresh pipe.
        let (mut tx, rx) = duplex(1 << 20);
        let (mut reader, _) = into_halves(resp, rx, tokio::io::sink(), &config);
        let all: Vec<u8> = frames.concat();
        let feeder = tokio::spawn(async move {
            tx.write_all(&all).await.unwrap_or_else(|e| panic!("{e}"));
        });
        for i in 0..1002 {
            let m = reader.read_message().await.unwrap_or_else(|e| panic!("message {i}: {e}"));
            assert_eq!(m.as_bytes(), b"hello", "message {i}");
        }
        feeder.await.unwrap_or_else(|e| panic!("{e}"));
        assert!(matches!(reader.read_message().await, Err(TransportError::RemoteClosed)));
    }
}

#[cfg(test)]
mod frame_limit_tests {
    use tokio::io::{duplex, AsyncWriteExt};

    use super::*;

    /// A connected pair of transcoders (initiator, responder) over an in-memory stream.
    async fn transcoders() -> (Transcoder, Transcoder) {
        let a_id = LocalIdentity::from_secret_bytes([0x01; 32]).expect("key");
        let b_id = LocalIdentity::from_secret_bytes([0x02; 32]).expect("key");
        let b_node = b_id.node_id();
        let (mut a, mut b) = duplex(4096);
        let resp = tokio::spawn(async move { respond(&mut b, &b_id).await.map(|(t, _)| t) });
        let init = initiate(&mut a, &a_id, &b_node).await.expect("initiator");
        let resp = resp.await.expect("task").expect("responder");
        (init, resp)
    }

    #[tokio::test]
    async fn incomplete_frame_announcing_too_much_is_refused_before_it_arrives() {
        let (mut init, resp) = transcoders().await;
        let config = NoiseConfig { max_inbound_message_len: 1024, ..NoiseConfig::default() };
        let (mut tx, rx) = duplex(1 << 16);
        let (mut reader, _) = into_halves(resp, rx, tokio::io::sink(), &config);
        let frame = init.encrypt_buf(&[0u8; 4000]).expect("encrypt");
        // Send a bit more than a maximal allowed frame, keep the stream open.
        tx.write_all(&frame[..HEADER_LEN + 1024 + TAG_LEN]).await.expect("write");
        assert!(matches!(reader.read_message().await, Err(TransportError::OversizedFrame { limit: 1024 })));
    }

    #[tokio::test]
    async fn frames_split_across_reads_and_runt_messages() {
        let (mut init, resp) = transcoders().await;
        let (mut tx, rx) = duplex(1 << 16);
        let (mut reader, _) = into_halves(resp, rx, tokio::io::sink(), &NoiseConfig::default());
        let a = init.encrypt_buf(b"\x00\x10abc").expect("encrypt");
        let runt = init.encrypt_buf(b"x").expect("encrypt");
        let writer = tokio::spawn(async move {
            // Byte by byte: every partial state of the decryptor is exercised.
            for byte in a.iter().chain(runt.iter()) {
                tx.write_all(&[*byte]).await.expect("write");
            }
        });
        let m = reader.read_message().await.expect("first message");
        assert_eq!((m.msg_type(), m.payload()), (16, &b"abc"[..]));
        assert!(matches!(reader.read_message().await, Err(TransportError::MessageTooShort { len: 1 })));
        writer.await.expect("writer");
    }
}
