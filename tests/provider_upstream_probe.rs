//! A provider node offers what its OpenAI-compatible upstream can deliver, as a requester sees it
//! in the provider's manifest (`ListLcpPeers`): the worker probes the upstream (the local
//! stand-in of `jobd_upstream.rs`, on 127.0.0.1) and announces only the (task kind, model)
//! pairs it serves; nothing while the upstream is unreachable, everything again once it is back;
//! and `--task-kinds` narrows the kinds.

mod gateway_common;
#[path = "jobd_upstream.rs"]
mod jobd_upstream;
mod standin_provider;

use gateway_common::{chat, lcpd, net, ProviderSpec, MODEL};
use jobd_upstream::{probe_llama_cpp_python, Script, Upstream};
use lcp::bus::api::jobd::OutputItem;
use lcp::bus::api::lcpd::LcpdApi;
use lcp::bus::Bus;
use lcp::jobd::backend::{BackendConfig, TASK_KIND_CHAT_COMPLETIONS};
use lcp::jobd::pricing::{ModelConfig, ModelPrice};
use lcp::testkit::{poll_until, wait_offer, TestJobs, PATIENCE};
use std::collections::BTreeSet;
use std::time::Duration;

const ANSWER: &[u8] = br#"{"id":"chatcmpl-standin","object":"chat.completion","choices":[]}"#;
const UNLISTED: &str = "unlisted-model";

fn answer(_: &jobd_upstream::Recorded) -> Script {
    Script::Respond { status: 200, content_type: "application/json", body: ANSWER.to_vec() }
}

/// The (task kind, model) pairs of `provider`'s manifest as the requester holds it.
async fn manifest_tasks(rc: &Bus, provider: &str) -> Option<BTreeSet<(String, String)>> {
    match lcpd(rc, LcpdApi::ListLcpPeers).await.ok()? {
        LcpdApi::LcpPeers(peers) => peers
            .into_iter()
            .find(|p| p.node_id == provider)
            .map(|p| p.manifest.tasks.into_iter().map(|t| (t.task_kind, t.model.unwrap_or_default())).collect()),
        _ => None,
    }
}

fn chat_only(model: &str) -> BTreeSet<(String, String)> {
    BTreeSet::from([(TASK_KIND_CHAT_COMPLETIONS.to_owned(), model.to_owned())])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upstream_without_responses_is_sold_for_chat_and_its_listed_models_only() {
    // llama-cpp-python: lists MODEL only, answers /v1/responses with 404.
    let up = Upstream::start_with(probe_llama_cpp_python(&[MODEL]), answer).await;
    let mut spec = ProviderSpec::openai(&up.base_url());
    // A second model, priced and configured, that the upstream does not list.
    let price = ModelPrice { input_msat_per_mtok: 1, cached_input_msat_per_mtok: None, output_msat_per_mtok: 1 };
    spec.pricing.models.insert(UNLISTED.into(), ModelConfig { max_output_tokens: None, price });
    if let BackendConfig::Openai(c) = &mut spec.backend {
        c.models.push(UNLISTED.into());
    }
    let n = net(vec![spec]).await;
    let provider = n.providers[0].id.clone();
    assert_eq!(manifest_tasks(&n.rc, &provider).await, Some(chat_only(MODEL)));
    n.close();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_provider_whose_upstream_goes_away_stops_offering_and_offers_again_when_it_is_back() {
    let mut up = Upstream::start(answer).await;
    let n = net(vec![ProviderSpec::openai(&up.base_url())]).await;
    let provider = n.providers[0].id.clone();
    let both = manifest_tasks(&n.rc, &provider).await.expect("manifest");
    assert_eq!(both.len(), 2, "{both:?}");

    // The upstream goes away; the next job cannot connect and fails ...
    up.stop();
    let pc = n.providers[0].node.client().await.expect("provider client");
    let mut jobs = TestJobs::new(&pc).expect("test jobs");
    let (id, _) = jobs.submit(TASK_KIND_CHAT_COMPLETIONS, MODEL, chat("hi", false).as_bytes()).await.expect("submit");
    jobs.wait(&[id], PATIENCE).await.expect("the job ends");
    assert!(matches!(jobs.done.get(&id), Some(OutputItem::Failed { .. })), "{:?}", jobs.done.get(&id));

    // ... and the requester no longer sees the model offered.
    poll_until(PATIENCE, "the provider's manifest without offers", || async {
        manifest_tasks(&n.rc, &provider).await.filter(BTreeSet::is_empty)
    })
    .await
    .expect("offers withdrawn");

    // Back: offered again, and jobs run.
    up.resume().await;
    wait_offer(&n.rc, &provider, MODEL).await.expect("offered again");
    assert_eq!(manifest_tasks(&n.rc, &provider).await, Some(both));
    let (id, _) = jobs.submit(TASK_KIND_CHAT_COMPLETIONS, MODEL, chat("hi", false).as_bytes()).await.expect("submit");
    jobs.wait(&[id], PATIENCE).await.expect("the job ends");
    assert!(matches!(jobs.done.get(&id), Some(OutputItem::End { .. })), "{:?}", jobs.done.get(&id));
    assert_eq!(jobs.bytes.get(&id).map(Vec::as_slice), Some(ANSWER));
    pc.close();
    n.close();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn task_kinds_flag_narrows_what_lcpnode_offers() {
    let model = "gpt-4o-mini";
    let up = Upstream::start(answer).await;
    let base_url = format!("{}/v1", up.base_url());
    let extra = ["--task-kinds", TASK_KIND_CHAT_COMPLETIONS];
    let n =
        standin_provider::provider_and_requester(&base_url, "gpt-4o-mini=150000:600000", "sk-standin", &extra).await;
    let (mut node, pc, provider, rc) = (n.provider, n.pc, n.provider_id, n.rc);
    wait_offer(&rc, &provider, model).await.expect("manifest");
    assert_eq!(manifest_tasks(&rc, &provider).await, Some(chat_only(model)));

    rc.close();
    pc.close();
    let status = node.terminate("lcpnode", Duration::from_secs(15)).expect("lcpnode stops");
    assert!(status.success(), "{status:?}");
}
