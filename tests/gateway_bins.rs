//! The gateway as shipped: `lcpnode --gateway-listen` runs it inside the all-in-one node, and
//! `lcp-gateway` joins a node whose services are separate processes (bus over tcp with CURVE).
//! Both answer /healthz, list no models and refuse a job with 503 while no provider is
//! connected, and stop cleanly on SIGTERM.

mod gateway_common;

use gateway_common::{call, client};
use lcp::bus::{Bus, ServiceId};
use lcp::testkit::{poll_until, services, ProcessNode, PATIENCE};
use std::net::SocketAddr;
use std::time::Duration;

async fn gateway_addr(bus: &Bus) -> SocketAddr {
    poll_until(PATIENCE, "gateway listening", || async {
        let s = services(bus).await.ok()?.into_iter().find(|s| s.id == ServiceId::Gateway)?;
        s.info.details.iter().find(|(k, _)| k == "listen")?.1.parse().ok()
    })
    .await
    .expect("gateway address")
}

async fn check_idle_gateway(addr: SocketAddr) {
    let c = client();
    let r = call(&c, "GET", &format!("http://{addr}/healthz"), &[], "").await;
    assert_eq!((r.status, r.body.as_slice()), (200, &b"ok\n"[..]));
    let r = call(&c, "GET", &format!("http://{addr}/v1/models"), &[], "").await;
    assert_eq!(r.status, 200);
    assert_eq!(r.json(), serde_json::json!({"object": "list", "data": []}));
    let body = r#"{"model":"gpt-5.2","messages":[{"role":"user","content":"x"}]}"#;
    let r = call(&c, "POST", &format!("http://{addr}/v1/chat/completions"), &[], body).await;
    let msg = r.openai_error(503);
    assert!(msg.contains("no LCP provider"), "{msg}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lcpnode_runs_the_gateway_when_asked() {
    let args = ["--bus", "tcp://127.0.0.1:0", "--listen", "127.0.0.1:0", "--gateway-listen", "127.0.0.1:0"];
    let mut node = ProcessNode::lcpnode(&args, &[]).unwrap();
    let bus = node.client().await.unwrap();
    check_idle_gateway(gateway_addr(&bus).await).await;
    bus.close();
    let status = node.terminate("lcpnode", Duration::from_secs(15)).unwrap();
    assert!(status.success(), "{status:?}\n{}", node.log("lcpnode"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lcp_gateway_joins_a_node_of_separate_processes() {
    let mut node = ProcessNode::start(&[]).unwrap();
    let ep = node.endpoint.to_string();
    node.spawn("gateway", "lcp-gateway", &["--bus", &ep, "--gateway-listen", "127.0.0.1:0"]).unwrap();
    let bus = node.client().await.unwrap();
    check_idle_gateway(gateway_addr(&bus).await).await;
    bus.close();
    let status = node.terminate("gateway", Duration::from_secs(15)).unwrap();
    assert!(status.success(), "{status:?}\n{}", node.log("gateway"));
    assert!(node.dir.path().join("gateway.db").exists());
}
