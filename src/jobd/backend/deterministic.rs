//! The deterministic backend: a fixed output (default `deterministic-output`, as the reference)
//! or an echo of the input; a job that asks for `"stream": true` gets a small SSE stream of the
//! same text, one event per chunk. For tests and demos; it never touches the network.

use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::{
    check_offered, check_offers_priced, openai_offers, priced_models, quote_offered, result_content_type,
    ComputeBackend, ComputeError, JobOutcome, JobSpec, ResultSink, TaskOffer, TASK_KIND_RESPONSES,
};
use crate::jobd::pricing::{PriceQuote, Pricer};

/// Default output, the same bytes as the reference's deterministic backend.
pub const DEFAULT_OUTPUT: &str = "deterministic-output";
/// Default result cap of the deterministic backend.
pub const DEFAULT_MAX_OUTPUT_BYTES: u64 = 16 * 1024 * 1024;

/// Configuration of [`DeterministicBackend`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DeterministicConfig {
    /// Output of every job (non-empty).
    pub output: String,
    /// Echo the input instead of `output`.
    pub echo: bool,
    /// Models offered for both OpenAI task kinds; empty = every model of the pricing table.
    pub models: Vec<String>,
    /// Result cap in bytes (> 0).
    pub max_output_bytes: u64,
}

impl Default for DeterministicConfig {
    fn default() -> Self {
        DeterministicConfig {
            output: DEFAULT_OUTPUT.to_owned(),
            echo: false,
            models: Vec::new(),
            max_output_bytes: DEFAULT_MAX_OUTPUT_BYTES,
        }
    }
}

/// Fixed-output or echo backend (see the module docs).
#[derive(Debug)]
pub struct DeterministicBackend {
    output: Bytes,
    echo: bool,
    offers: Vec<TaskOffer>,
    max_output_bytes: u64,
    pricer: Arc<Pricer>,
}

impl DeterministicBackend {
    /// Checks the config and builds the backend.
    pub fn new(config: &DeterministicConfig, pricer: Arc<Pricer>) -> Result<Self, ComputeError> {
        if config.output.is_empty() && !config.echo {
            return Err(ComputeError::config("output", "must be non-empty"));
        }
        if config.max_output_bytes == 0 {
            return Err(ComputeError::config("max_output_bytes", "must be > 0"));
        }
        let models = if config.models.is_empty() { priced_models(&pricer) } else { config.models.clone() };
        let offers = openai_offers(&models);
        check_offers_priced(&offers, &pricer)?;
        Ok(DeterministicBackend {
            output: Bytes::from(config.output.clone().into_bytes()),
            echo: config.echo,
            offers,
            max_output_bytes: config.max_output_bytes,
            pricer,
        })
    }

    fn body(&self, job: &JobSpec) -> Bytes {
        if self.echo {
            job.input.clone()
        } else {
            self.output.clone()
        }
    }
}

/// The SSE events (one per chunk) streaming `text` for `job`'s task kind: chat completion
/// chunks ending with `data: [DONE]`, or Responses API `response.output_text.delta` events
/// ending with `response.completed`.
pub fn sse_events(job: &JobSpec, text: &str) -> Vec<Bytes> {
    let pieces = split_words(text);
    let mut events = Vec::with_capacity(pieces.len() + 2);
    if job.task_kind == TASK_KIND_RESPONSES {
        for piece in pieces {
            let data = serde_json::json!({
                "type": "response.output_text.delta",
                "item_id": "msg_deterministic",
                "output_index": 0,
                "content_index": 0,
                "delta": piece,
            });
            events.push(event(Some("response.output_text.delta"), &data.to_string()));
        }
        let done = serde_json::json!({
            "type": "response.completed",
            "response": {
                "id": "resp_deterministic",
                "object": "response",
                "status": "completed",
                "model": job.model,
            },
        });
        events.push(event(Some("response.completed"), &done.to_string()));
    } else {
        let chunk = |delta: serde_json::Value, finish: serde_json::Value| {
            serde_json::json!({
                "id": "chatcmpl-deterministic",
                "object": "chat.completion.chunk",
                "created": 0,
                "model": job.model,
                "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
            })
            .to_string()
        };
        for piece in pieces {
            let data = chunk(serde_json::json!({ "content": piece }), serde_json::Value::Null);
            events.push(event(None, &data));
        }
        events.push(event(None, &chunk(serde_json::json!({}), serde_json::json!("stop"))));
        events.push(event(None, "[DONE]"));
    }
    events
}

fn event(name: Option<&str>, data: &str) -> Bytes {
    let mut s = String::with_capacity(data.len() + 32);
    if let Some(name) = name {
        s.push_str("event: ");
        s.push_str(name);
        s.push('\n');
    }
    s.push_str("data: ");
    s.push_str(data);
    s.push_str("\n\n");
    Bytes::from(s)
}

/// Splits after each run of whitespace so the pieces concatenate back to `text`.
fn split_words(text: &str) -> Vec<&str> {
    let mut pieces = Vec::new();
    let mut start = 0;
    let mut in_space = false;
    for (i, c) in text.char_indices() {
        if c.is_whitespace() {
            in_space = true;
        } else if in_space {
            pieces.push(&text[start..i]);
            start = i;
            in_space = false;
        }
    }
    if start < text.len() {
        pieces.push(&text[start..]);
    }
    pieces
}

#[async_trait]
impl ComputeBackend for DeterministicBackend {
    fn name(&self) -> &'static str {
        "deterministic"
    }

    fn offers(&self) -> Vec<TaskOffer> {
        self.offers.clone()
    }

    fn quote(&self, job: &JobSpec) -> Result<PriceQuote, ComputeError> {
        quote_offered(&self.offers, &self.pricer, job)
    }

    async fn execute(
        &self,
        job: &JobSpec,
        out: mpsc::Sender<Bytes>,
        cancel: CancellationToken,
    ) -> Result<JobOutcome, ComputeError> {
        check_offered(&self.offers, job)?;
        if cancel.is_cancelled() {
            return Err(ComputeError::Cancelled);
        }
        let body = self.body(job);
        if body.is_empty() {
            return Err(ComputeError::InvalidTask("input is empty".into()));
        }
        let mut sink = ResultSink::new(out, cancel, self.max_output_bytes, job);
        if job.stream {
            let text = String::from_utf8_lossy(&body);
            for ev in sse_events(job, &text) {
                sink.send(ev).await?;
            }
        } else {
            sink.check_room(0, body.len())?;
            sink.send(body).await?;
        }
        Ok(sink.finish(result_content_type(job, super::CONTENT_TYPE_JSON)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::jobd::backend::{CONTENT_TYPE_JSON, CONTENT_TYPE_SSE, TASK_KIND_CHAT_COMPLETIONS};
    use crate::jobd::pricing::PricingConfig;
    use sha2::{Digest, Sha256};

    fn backend(config: DeterministicConfig) -> DeterministicBackend {
        let pricer = Arc::new(Pricer::new(&PricingConfig::default()).expect("pricer"));
        DeterministicBackend::new(&config, pricer).expect("backend")
    }

    fn spec(kind: &str, body: &str) -> JobSpec {
        JobSpec::new(kind, "gpt-5.2", Bytes::from(body.to_owned()), CONTENT_TYPE_JSON)
    }

    async fn run(b: &DeterministicBackend, job: &JobSpec) -> (Vec<u8>, usize, JobOutcome) {
        let (tx, mut rx) = mpsc::channel(64);
        let outcome = b.execute(job, tx, CancellationToken::new()).await.expect("execute");
        let mut all = Vec::new();
        let mut chunks = 0;
        while let Some(c) = rx.recv().await {
            all.extend_from_slice(&c);
            chunks += 1;
        }
        (all, chunks, outcome)
    }

    #[tokio::test]
    async fn fixed_output_matches_reference_default() {
        let b = backend(DeterministicConfig::default());
        let job = spec(TASK_KIND_CHAT_COMPLETIONS, r#"{"model":"gpt-5.2","messages":[1]}"#);
        let (bytes, chunks, outcome) = run(&b, &job).await;
        assert_eq!(bytes, b"deterministic-output");
        assert_eq!(chunks, 1);
        assert_eq!(outcome.content_type, CONTENT_TYPE_JSON);
        assert_eq!(outcome.len, 20);
        assert_eq!(outcome.sha256, <[u8; 32]>::from(Sha256::digest(&bytes)));
    }

    #[tokio::test]
    async fn echo_returns_input() {
        let b = backend(DeterministicConfig { echo: true, ..DeterministicConfig::default() });
        let body = r#"{"model":"gpt-5.2","input":"ping"}"#;
        let (bytes, _, _) = run(&b, &spec(TASK_KIND_RESPONSES, body)).await;
        assert_eq!(bytes, body.as_bytes());
    }

    #[tokio::test]
    async fn stream_yields_parseable_sse_with_the_text() {
        let b = backend(DeterministicConfig { output: "one two  three".into(), ..DeterministicConfig::default() });
        let job = spec(TASK_KIND_CHAT_COMPLETIONS, r#"{"model":"gpt-5.2","messages":[1],"stream":true}"#);
        let (bytes, chunks, outcome) = run(&b, &job).await;
        assert_eq!(outcome.content_type, CONTENT_TYPE_SSE);
        assert_eq!(chunks, 5); // three words, stop, [DONE]
        let text = String::from_utf8(bytes).expect("utf8");
        assert!(text.ends_with("data: [DONE]\n\n"));
        let mut content = String::new();
        for line in text.lines().filter_map(|l| l.strip_prefix("data: ")) {
            if line == "[DONE]" {
                continue;
            }
            let v: serde_json::Value = serde_json::from_str(line).expect("json event");
            if let Some(c) = v["choices"][0]["delta"]["content"].as_str() {
                content.push_str(c);
            }
        }
        assert_eq!(content, "one two  three");

        let resp = spec(TASK_KIND_RESPONSES, r#"{"model":"gpt-5.2","input":"x","stream":true}"#);
        let (bytes, _, _) = run(&b, &resp).await;
        let text = String::from_utf8(bytes).expect("utf8");
        assert_eq!(text.matches("event: response.output_text.delta").count(), 3);
        assert!(text.contains("event: response.completed"));
    }

    #[test]
    fn words_split_losslessly() {
        for s in ["", "a", "a b", " lead", "trail ", "x  y\tz\n", "é ü"] {
            assert_eq!(split_words(s).concat(), s);
        }
        assert_eq!(split_words("a b"), vec!["a ", "b"]);
    }

    #[test]
    fn rejects_unusable_config() {
        let pricer = Arc::new(Pricer::new(&PricingConfig::default()).expect("pricer"));
        for config in [
            DeterministicConfig { output: String::new(), ..DeterministicConfig::default() },
            DeterministicConfig { max_output_bytes: 0, ..DeterministicConfig::default() },
            DeterministicConfig { models: vec!["unpriced".into()], ..DeterministicConfig::default() },
        ] {
            assert!(matches!(DeterministicBackend::new(&config, pricer.clone()), Err(ComputeError::Config { .. })));
        }
    }
}
