//! The backend conformance suite, run against every backend.

#[path = "jobd_upstream.rs"]
mod upstream;

use std::collections::BTreeMap;
use std::sync::Arc;

use bytes::Bytes;
use lcp::jobd::backend::conformance::{self, Suite};
use lcp::jobd::backend::deterministic::{DeterministicBackend, DeterministicConfig};
use lcp::jobd::backend::exec::{ExecBackend, ExecCommandConfig, ExecConfig, ExecLimits};
use lcp::jobd::backend::openai::OpenAiConfig;
use lcp::jobd::backend::{
    build_backend, BackendConfig, JobSpec, TaskOffer, CONTENT_TYPE_JSON, TASK_KIND_CHAT_COMPLETIONS,
    TASK_KIND_RESPONSES,
};
use lcp::jobd::pricing::{ModelConfig, ModelPrice, Pricer, PricingConfig};
use upstream::{chat_sse_events, Script, Upstream};

fn pricer() -> Arc<Pricer> {
    let mut config = PricingConfig::default();
    for model in ["gpt-5.2", "local-small"] {
        config.models.insert(model.into(), ModelConfig { max_output_tokens: None, price: ModelPrice::BUILTIN_GPT_5_2 });
    }
    Arc::new(Pricer::new(&config).expect("pricer"))
}

/// A well-formed OpenAI request for `offer` with the given user content.
fn openai_job(offer: &TaskOffer, content: &str, stream: bool) -> JobSpec {
    let body = if offer.task_kind == TASK_KIND_RESPONSES {
        serde_json::json!({"model": offer.model, "input": content, "stream": stream})
    } else {
        serde_json::json!({
            "model": offer.model,
            "messages": [{"role": "user", "content": content}],
            "stream": stream,
        })
    };
    JobSpec::new(offer.task_kind.clone(), offer.model.clone(), Bytes::from(body.to_string()), CONTENT_TYPE_JSON)
}

fn chat_offer() -> TaskOffer {
    TaskOffer { task_kind: TASK_KIND_CHAT_COMPLETIONS.into(), model: "gpt-5.2".into() }
}

fn openai_suite() -> Suite {
    Suite {
        job_for_offer: Box::new(|offer| openai_job(offer, "hello", false)),
        complete_job: openai_job(&chat_offer(), "finite", true),
        cancel_job: openai_job(&chat_offer(), "endless", true),
        cap_job: openai_job(&chat_offer(), "big", false),
        cap_bytes: 1000,
    }
}

#[tokio::test]
async fn deterministic_backend_conforms() {
    let backend = DeterministicBackend::new(
        &DeterministicConfig { output: "one two three four five six".into(), ..DeterministicConfig::default() },
        pricer(),
    )
    .expect("backend");
    let suite = Suite {
        job_for_offer: Box::new(|offer| openai_job(offer, "hello", false)),
        complete_job: openai_job(&chat_offer(), "x", true),
        cancel_job: openai_job(&chat_offer(), "x", true),
        cap_job: openai_job(&chat_offer(), "x", false),
        cap_bytes: 10,
    };
    conformance::run_all(&backend, &suite).await.expect("conforms");
    // Non-streamed too.
    conformance::check_stream_integrity(&backend, &openai_job(&chat_offer(), "x", false))
        .await
        .expect("non-streamed integrity");
}

#[tokio::test]
async fn openai_backend_conforms() {
    let up = Upstream::start(|req| {
        let body = String::from_utf8_lossy(&req.body);
        if body.contains("endless") {
            Script::Endless
        } else if body.contains("big") {
            Script::Big { len: 100_000 }
        } else if body.contains("\"stream\":true") {
            Script::Sse { events: chat_sse_events(&["a", "b", "c"]), gate: None }
        } else {
            Script::Respond {
                status: 200,
                content_type: "application/json",
                body: br#"{"choices":[{"message":{"content":"ok"}}]}"#.to_vec(),
            }
        }
    })
    .await;
    let config =
        BackendConfig::Openai(OpenAiConfig { base_url: up.base_url(), api_key: "k".into(), ..OpenAiConfig::default() });
    // Through the config entry point, as jobd builds it.
    let backend = build_backend(&config, pricer()).expect("backend");
    assert_eq!(backend.name(), "openai");
    conformance::run_all(&*backend, &openai_suite()).await.expect("conforms");
    conformance::check_stream_integrity(&*backend, &openai_job(&chat_offer(), "json", false))
        .await
        .expect("non-streamed integrity");
}

#[tokio::test]
async fn exec_backend_conforms() {
    // The operator's script: echo the input, or stream forever when asked to.
    let script = "input=$(cat); case \"$input\" in *endless*) exec yes;; *) printf '%s' \"$input\";; esac";
    let command = |kind: &str, models: &[&str]| ExecCommandConfig {
        task_kind: kind.into(),
        models: models.iter().map(|m| (*m).to_owned()).collect(),
        argv: vec!["sh".into(), "-c".into(), script.into()],
        env: BTreeMap::new(),
        working_dir: None,
        content_type: None,
        limits: None,
    };
    let backend = ExecBackend::new(
        &ExecConfig {
            commands: vec![
                command("exec.echo.v1", &["local-small", "gpt-5.2"]),
                command(TASK_KIND_CHAT_COMPLETIONS, &["local-small"]),
            ],
            limits: ExecLimits { wall_clock_secs: 30, ..ExecLimits::default() },
            path: None,
        },
        pricer(),
    )
    .expect("backend");
    let raw = |input: &str, stream: bool| {
        let mut job = JobSpec::new("exec.echo.v1", "local-small", Bytes::from(input.to_owned()), "text/plain");
        job.stream = stream;
        job
    };
    let suite = Suite {
        job_for_offer: Box::new(|offer| {
            if offer.task_kind == TASK_KIND_CHAT_COMPLETIONS {
                openai_job(offer, "hello", false)
            } else {
                JobSpec::new(
                    offer.task_kind.clone(),
                    offer.model.clone(),
                    Bytes::from_static(b"opaque input"),
                    "text/plain",
                )
            }
        }),
        complete_job: raw("hello exec", true),
        cancel_job: raw("endless", true),
        cap_job: raw("endless", false),
        cap_bytes: 4096,
    };
    conformance::run_all(&backend, &suite).await.expect("conforms");
    conformance::check_stream_integrity(&backend, &raw("once", false)).await.expect("non-streamed integrity");
}
