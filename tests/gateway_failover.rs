//! Provider choice with failover between two providers. Provider A is the cheaper one, but the
//! requester has no channel to it, so its payment fails before anything is paid; its worker also
//! refuses requests asking for more output tokens than it allows. Provider B works. The gateway
//! quotes both, tries A first (cheapest), and fails over to B.

mod gateway_common;

use gateway_common::*;
use lcp::bus::api::lcpd::LcpdApi;
use lcp::jobd::pricing::{ModelConfig, ModelPrice, PricingConfig};
use std::collections::BTreeMap;

const CHAT_URL: &str = "/v1/chat/completions";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cheapest_first_with_failover_before_payment() {
    let price = ModelPrice { input_msat_per_mtok: 1, cached_input_msat_per_mtok: None, output_msat_per_mtok: 1 };
    let cheap = PricingConfig {
        models: BTreeMap::from([(MODEL.to_string(), ModelConfig { max_output_tokens: Some(64), price })]),
        ..PricingConfig::default()
    };
    let a = ProviderSpec { pricing: cheap, channel: false, ..ProviderSpec::deterministic() };
    let b = ProviderSpec::deterministic();
    let mut n = net(vec![a, b]).await;
    let (a_id, b_id) = (n.providers[0].id.clone(), n.providers[1].id.clone());
    let cfg = n.gateway_config(|_| {});
    n.start_gateway(cfg).await;
    let c = client();

    // Both quote; A is cheaper, its payment fails (no channel), B serves.
    let r = call(&c, "POST", &format!("{}{CHAT_URL}", n.base()), &[], &chat("failover", false)).await;
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    assert_eq!(r.body, b"deterministic-output");
    assert_eq!(r.header("x-lcp-peer-id"), Some(b_id.as_str()));
    let jobs = match lcpd(&n.rc, LcpdApi::ListJobs { limit: 10 }).await.unwrap() {
        LcpdApi::Jobs(rows) => rows,
        other => panic!("{other:?}"),
    };
    let at_a: Vec<_> = jobs.iter().filter(|j| j.peer == a_id).collect();
    assert_eq!(at_a.len(), 1, "{jobs:?}");
    assert_eq!(at_a[0].state, "failed");
    assert!(at_a[0].error.as_deref().unwrap_or_default().contains("payment failed"), "{:?}", at_a[0].error);
    assert!(at_a[0].preimage.is_none());
    let at_b: Vec<_> = jobs.iter().filter(|j| j.peer == b_id).collect();
    assert_eq!((at_b.len(), at_b[0].state.as_str()), (1, "done"));
    assert!(at_a[0].price_msat < at_b[0].price_msat);

    // A's worker refuses 100 output tokens (it allows 64): only B quotes, B serves.
    let body = format!(r#"{{"model":"{MODEL}","messages":[{{"role":"user","content":"x"}}],"max_tokens":100}}"#);
    let r = call(&c, "POST", &format!("{}{CHAT_URL}", n.base()), &[], &body).await;
    assert_eq!((r.status, r.header("x-lcp-peer-id")), (200, Some(b_id.as_str())));

    // A streamed request fails over the same way.
    let r = call(&c, "POST", &format!("{}{CHAT_URL}", n.base()), &[], &chat("again", true)).await;
    assert_eq!((r.status, r.header("x-lcp-peer-id")), (200, Some(b_id.as_str())));
    assert!(String::from_utf8_lossy(&r.body).contains("[DONE]"));

    // With the model mapped to A, A alone cannot be paid: a failed job is 502 with its reason.
    n.stop_gateway().await;
    let cfg = n.gateway_config(|g| g.gateway_model_map = Some(vec![format!("{MODEL}={a_id}")]));
    n.start_gateway(cfg).await;
    let r = call(&c, "POST", &format!("{}{CHAT_URL}", n.base()), &[], &chat("only a", false)).await;
    let msg = r.openai_error(502);
    assert!(msg.contains("payment failed"), "{msg}");
    n.close();
}
