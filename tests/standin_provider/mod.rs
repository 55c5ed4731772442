//! Fixture of the tests that run the README's one-command provider: the real `lcpnode` with
//! `--compute-backend openai --openai-base-url URL --model-price PRICE` (plus any extra flags) and
//! an API key in its environment, against a local upstream, and a requester node of its own
//! connected to it with a devnet channel.
#![allow(dead_code)]

use lcp::bus::{Bus, ServiceId};
use lcp::testkit::{connect_with_channel, peerd_address, wait_services, InProcessNode, ProcessNode};

/// The provider (one `lcpnode` process) and the requester (in-process).
pub struct Nodes {
    pub provider: ProcessNode,
    pub pc: Bus,
    pub provider_id: String,
    pub requester: InProcessNode,
    pub rc: Bus,
}

/// Starts the provider against the upstream at `base_url` (with `/v1`), selling `price`
/// (`MODEL=IN:OUT`) with `key` and the `extra` flags, on loopback, and a requester with a channel
/// to it.
pub async fn provider_and_requester(base_url: &str, price: &str, key: &str, extra: &[&str]) -> Nodes {
    let mut args = vec![
        "--listen",
        "127.0.0.1:0",
        "--compute-backend",
        "openai",
        "--openai-base-url",
        base_url,
        "--model-price",
        price,
    ];
    args.extend_from_slice(extra);
    let provider = ProcessNode::lcpnode(&args, &[("OPENAI_API_KEY", key)]).expect("lcpnode starts");
    let pc = provider.client().await.expect("provider bus");
    let (provider_id, listen) = peerd_address(&pc).await.unwrap_or_else(|e| panic!("{e}\n{}", provider.log("lcpnode")));
    wait_services(&pc, &[ServiceId::Payd, ServiceId::Lcpd]).await.expect("provider services");
    let requester = InProcessNode::start().expect("requester");
    let rc = requester.client().await.expect("requester bus");
    wait_services(&rc, &[ServiceId::Payd, ServiceId::Lcpd, ServiceId::Peerd]).await.expect("requester services");
    connect_with_channel(&rc, &provider_id, listen, false, 1_000_000).await.expect("channel");
    Nodes { provider, pc, provider_id, requester, rc }
}
