//! Encode/decode cost of the two hot LCP messages, against a memcpy of the same bytes measured
//! in the same run: a stream_chunk carrying 16 KiB of data and a quote_response with a
//! realistic BOLT11 string.

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use lcp::wire::lcp::{Envelope, QuoteResponse, StreamChunk};

fn chunk() -> StreamChunk {
    StreamChunk {
        protocol_version: 2,
        job_id: [0x11; 32],
        expiry: 1_700_000_300,
        stream_id: [0x99; 32],
        seq: 42,
        data: (0..16 * 1024).map(|i| (i * 31 % 251) as u8).collect(),
        extra: vec![],
    }
}

fn quote_response() -> QuoteResponse {
    // A 300-character bech32 string shaped like a regtest BOLT11 invoice with a description hash.
    let charset = b"qpzry9x8gf2tvdw0s3jn54khce6mua7l";
    let mut invoice = String::from("lnbcrt10u1p");
    while invoice.len() < 300 {
        invoice.push(charset[(invoice.len() * 7) % 32] as char);
    }
    QuoteResponse {
        envelope: Envelope { protocol_version: 2, job_id: [0x11; 32], msg_id: [0x33; 32], expiry: 1_700_000_300 },
        price_msat: 1_000_000,
        quote_expiry: 1_700_000_300,
        terms_hash: [0x44; 32],
        payment_request: invoice,
        extra: vec![],
    }
}

fn memcpy(bytes: &[u8]) -> Vec<u8> {
    let mut v = Vec::with_capacity(bytes.len());
    v.extend_from_slice(bytes);
    v
}

fn bench_chunk(c: &mut Criterion) {
    let m = chunk();
    let bytes = m.encode().expect("encode");
    let mut g = c.benchmark_group("stream_chunk_16k");
    g.throughput(Throughput::Bytes(bytes.len() as u64));
    g.bench_function("memcpy_baseline", |b| b.iter(|| memcpy(black_box(&bytes))));
    g.bench_function("encode", |b| b.iter(|| black_box(&m).encode().expect("encode")));
    g.bench_function("decode", |b| b.iter(|| StreamChunk::decode(black_box(&bytes)).expect("decode")));
    g.finish();
}

fn bench_quote(c: &mut Criterion) {
    let m = quote_response();
    let bytes = m.encode().expect("encode");
    let mut g = c.benchmark_group("quote_response");
    g.throughput(Throughput::Bytes(bytes.len() as u64));
    g.bench_function("memcpy_baseline", |b| b.iter(|| memcpy(black_box(&bytes))));
    g.bench_function("encode", |b| b.iter(|| black_box(&m).encode().expect("encode")));
    g.bench_function("decode", |b| b.iter(|| QuoteResponse::decode(black_box(&bytes)).expect("decode")));
    g.finish();
}

criterion_group!(benches, bench_chunk, bench_quote);
criterion_main!(benches);
