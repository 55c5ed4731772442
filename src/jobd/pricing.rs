//! Job pricing: the `approx.v1` usage estimator, the per-model price table (msat per million
//! tokens), the request-JSON rules of the two OpenAI task kinds and in-flight surge pricing.
//!
//! Everything here follows the reference provider (go-lcpd, LCP v0.2) so that a requester sees the
//! same price for the same job from either implementation:
//!
//! * `input_tokens = ceil(len(input) / 4)`;
//! * `output_tokens` = the model's `max_output_tokens` (per-model override, else the provider-wide
//!   default, 4096), lowered for chat requests by an explicit `max_completion_tokens`, else
//!   `max_tokens`, else `max_output_tokens` (which must be > 0 and <= the provider maximum);
//! * `price = ceil((in * in_price + cached * cached_price + out * out_price) / 1_000_000)`;
//! * surge: `bps = 10_000 + per_job_bps * max(0, in_flight - threshold)`, capped by
//!   `max_multiplier_bps` (30 000 when unset), `price = ceil(price * bps / 10_000)`.
//!
//! Prices are computed at quote time only and never recomputed.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use serde::{Deserialize, Serialize};

/// Task kind of an OpenAI `POST /v1/chat/completions` body.
pub const TASK_KIND_CHAT_COMPLETIONS: &str = "openai.chat_completions.v1";
/// Task kind of an OpenAI `POST /v1/responses` body.
pub const TASK_KIND_RESPONSES: &str = "openai.responses.v1";
/// Identifier of the usage estimator implemented here.
pub const ESTIMATOR_ID: &str = "approx.v1";
/// Provider-wide default for the maximum number of output tokens of a job.
pub const DEFAULT_MAX_OUTPUT_TOKENS: u32 = 4096;
/// Multiplier of 1.0 expressed in basis points.
pub const MULTIPLIER_BPS_ONE: u64 = 10_000;
/// Cap applied to the surge multiplier when `per_job_bps > 0` and no cap is configured (3.0x).
pub const DEFAULT_MAX_SURGE_MULTIPLIER_BPS: u32 = 30_000;
/// Model of the built-in price table, used when no model is configured (as the reference does).
pub const BUILTIN_MODEL: &str = "gpt-5.2";

const TOKENS_PER_MILLION: u128 = 1_000_000;
const APPROX_BYTES_PER_TOKEN: u64 = 4;

/// LCP error code `unsupported_task`.
const CODE_UNSUPPORTED_TASK: u16 = 2;
/// LCP error code `rate_limited`.
const CODE_RATE_LIMITED: u16 = 7;
/// LCP error code `unsupported_params`.
const CODE_UNSUPPORTED_PARAMS: u16 = 8;

/// Errors of pricing and request validation.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PricingError {
    /// The request body (or the params) violates the rules of its task kind.
    #[error("invalid {task_kind} request: {reason}")]
    InvalidRequest {
        /// Task kind whose rules were violated.
        task_kind: String,
        /// Which field is wrong and why.
        reason: String,
    },
    /// The model has no entry in the price table.
    #[error("unknown model: {model:?} has no price table entry")]
    UnknownModel {
        /// The model that was asked for.
        model: String,
    },
    /// An intermediate or final price does not fit in a u64 msat amount.
    #[error("price overflow while computing {what}")]
    Overflow {
        /// Which step overflowed.
        what: &'static str,
    },
    /// The pricing configuration is unusable.
    #[error("invalid pricing config: {field}: {reason}")]
    InvalidConfig {
        /// Config field at fault.
        field: String,
        /// Why it is rejected.
        reason: String,
    },
}

impl PricingError {
    /// LCP `lcp_error.code` the reference provider sends for this error: unknown model -> 2
    /// (`unsupported_task`), overflow -> 7 (`rate_limited`), invalid request -> 8
    /// (`unsupported_params`). A config error never reaches a peer; it maps to 2 (the provider
    /// cannot serve the task).
    pub fn lcp_error_code(&self) -> u16 {
        match self {
            PricingError::InvalidRequest { .. } => CODE_UNSUPPORTED_PARAMS,
            PricingError::UnknownModel { .. } => CODE_UNSUPPORTED_TASK,
            PricingError::Overflow { .. } => CODE_RATE_LIMITED,
            PricingError::InvalidConfig { .. } => CODE_UNSUPPORTED_TASK,
        }
    }

    fn invalid(task_kind: &str, reason: impl Into<String>) -> Self {
        PricingError::InvalidRequest { task_kind: task_kind.to_owned(), reason: reason.into() }
    }

    fn config(field: impl Into<String>, reason: impl Into<String>) -> Self {
        PricingError::InvalidConfig { field: field.into(), reason: reason.into() }
    }
}

/// Price of one model in msat per million tokens.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelPrice {
    /// Price of input tokens.
    pub input_msat_per_mtok: u64,
    /// Price of cached input tokens; the input price when absent (cached tokens are always 0
    /// today, as in the reference).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cached_input_msat_per_mtok: Option<u64>,
    /// Price of output tokens.
    pub output_msat_per_mtok: u64,
}

impl ModelPrice {
    /// The reference's built-in price of `gpt-5.2`.
    pub const BUILTIN_GPT_5_2: ModelPrice = ModelPrice {
        input_msat_per_mtok: 1_750_000,
        cached_input_msat_per_mtok: Some(175_000),
        output_msat_per_mtok: 14_000_000,
    };

    /// `ceil((input * in + cached * cached_price + output * out) / 1e6)` msat, or
    /// [`PricingError::Overflow`] when it does not fit in a u64.
    pub fn price_msat(
        &self,
        input_tokens: u64,
        cached_input_tokens: u64,
        output_tokens: u64,
    ) -> Result<u64, PricingError> {
        let cached_price = self.cached_input_msat_per_mtok.unwrap_or(self.input_msat_per_mtok);
        let overflow = PricingError::Overflow { what: "token price sum" };
        let total = mul(input_tokens, self.input_msat_per_mtok)
            .checked_add(mul(cached_input_tokens, cached_price))
            .and_then(|t| t.checked_add(mul(output_tokens, self.output_msat_per_mtok)))
            .ok_or(overflow)?;
        let msat = total.div_ceil(TOKENS_PER_MILLION);
        u64::try_from(msat).map_err(|_| PricingError::Overflow { what: "price_msat" })
    }
}

fn mul(a: u64, b: u64) -> u128 {
    u128::from(a) * u128::from(b)
}

/// Configuration of one model.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelConfig {
    /// Overrides the provider-wide `max_output_tokens` for this model (must be > 0).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_output_tokens: Option<u32>,
    /// Price of the model.
    pub price: ModelPrice,
}

/// In-flight surge pricing. The default (all zero) disables surge.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SurgeConfig {
    /// Number of in-flight jobs before surge applies.
    pub threshold: u32,
    /// Added multiplier (bps) per in-flight job above the threshold; 0 disables surge.
    pub per_job_bps: u32,
    /// Cap of the multiplier in bps; 0 means [`DEFAULT_MAX_SURGE_MULTIPLIER_BPS`].
    pub max_multiplier_bps: u32,
}

impl SurgeConfig {
    /// Multiplier (bps, >= 10 000) for `in_flight` jobs, exactly as the reference computes it.
    pub fn multiplier_bps(&self, in_flight: u64) -> u64 {
        if self.per_job_bps == 0 {
            return MULTIPLIER_BPS_ONE;
        }
        let over = in_flight.saturating_sub(u64::from(self.threshold));
        let bps = MULTIPLIER_BPS_ONE.saturating_add(u64::from(self.per_job_bps).saturating_mul(over));
        let cap = if self.max_multiplier_bps == 0 { DEFAULT_MAX_SURGE_MULTIPLIER_BPS } else { self.max_multiplier_bps };
        bps.min(u64::from(cap)).max(MULTIPLIER_BPS_ONE)
    }
}

/// `ceil(price * bps / 10_000)`, or [`PricingError::Overflow`].
pub fn apply_multiplier_ceil(price_msat: u64, multiplier_bps: u64) -> Result<u64, PricingError> {
    if multiplier_bps == MULTIPLIER_BPS_ONE {
        return Ok(price_msat);
    }
    let total = mul(price_msat, multiplier_bps).div_ceil(u128::from(MULTIPLIER_BPS_ONE));
    u64::try_from(total).map_err(|_| PricingError::Overflow { what: "surge multiplier" })
}

/// Pricing configuration, embedded in the jobd config (TOML):
///
/// ```toml
/// max_output_tokens = 4096
/// [models."gpt-5.2"]
/// max_output_tokens = 8192          # optional
/// price = { input_msat_per_mtok = 1750000, output_msat_per_mtok = 14000000 }
/// [surge]
/// threshold = 4
/// per_job_bps = 500
/// max_multiplier_bps = 20000
/// ```
///
/// With no model configured the built-in table (only `gpt-5.2`) is used, as in the reference.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PricingConfig {
    /// Provider-wide maximum output tokens (must be > 0).
    pub max_output_tokens: u32,
    /// Price table and per-model limits, by model id.
    pub models: BTreeMap<String, ModelConfig>,
    /// In-flight surge pricing (`in_flight_surge` is accepted as the reference's name).
    #[serde(alias = "in_flight_surge")]
    pub surge: SurgeConfig,
}

impl Default for PricingConfig {
    fn default() -> Self {
        PricingConfig {
            max_output_tokens: DEFAULT_MAX_OUTPUT_TOKENS,
            models: BTreeMap::new(),
            surge: SurgeConfig::default(),
        }
    }
}

impl PricingConfig {
    /// Sets the price of each model in `prices` (the flag over the file): a model already in the
    /// table keeps its other settings, a new one gets the provider-wide limits.
    pub fn set_prices(&mut self, prices: &BTreeMap<String, ModelPrice>) {
        for (model, price) in prices {
            self.models
                .entry(model.clone())
                .and_modify(|m| m.price = *price)
                .or_insert(ModelConfig { max_output_tokens: None, price: *price });
        }
    }
}

/// Parses `--model-price` entries, `MODEL=INPUT_MSAT_PER_MTOK:OUTPUT_MSAT_PER_MTOK` (msat per
/// million tokens; the model is everything before the last `=`, so `llama3.2:3b=...` works).
/// Empty entries are skipped; a malformed entry, a model given twice or a model whose two prices
/// are both 0 (a free quote, which requesters refuse) is an error naming the entry.
pub fn parse_model_prices(entries: &[String]) -> Result<BTreeMap<String, ModelPrice>, String> {
    const SHAPE: &str = "expected MODEL=INPUT_MSAT_PER_MTOK:OUTPUT_MSAT_PER_MTOK, e.g. gpt-4o-mini=150000:600000";
    let mut prices = BTreeMap::new();
    for e in entries.iter().map(|e| e.trim()).filter(|e| !e.is_empty()) {
        let (model, price) = e.rsplit_once('=').ok_or_else(|| format!("{e:?}: {SHAPE}"))?;
        let model = model.trim();
        if model.is_empty() {
            return Err(format!("{e:?}: empty model name ({SHAPE})"));
        }
        let (input, output) = price.split_once(':').ok_or_else(|| format!("{e:?}: {SHAPE}"))?;
        let msat = |what: &str, v: &str| {
            v.trim().parse::<u64>().map_err(|_| {
                format!("{e:?}: {what} price {:?} is not a whole number of msat per million tokens", v.trim())
            })
        };
        let price = ModelPrice {
            input_msat_per_mtok: msat("input", input)?,
            cached_input_msat_per_mtok: None,
            output_msat_per_mtok: msat("output", output)?,
        };
        if price.input_msat_per_mtok == 0 && price.output_msat_per_mtok == 0 {
            return Err(format!("{e:?}: both prices are 0 (requesters refuse a free quote)"));
        }
        if prices.insert(model.to_owned(), price).is_some() {
            return Err(format!("model {model:?} is priced twice"));
        }
    }
    Ok(prices)
}

/// What the request JSON of an OpenAI task kind says about the job.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestInfo {
    /// The request's `model`.
    pub model: String,
    /// Whether the request asked for `"stream": true`.
    pub stream: bool,
    /// Explicit output token limit: of a chat request `max_completion_tokens`, else
    /// `max_tokens`, else `max_output_tokens`; of a responses request `max_output_tokens`.
    pub requested_max_output_tokens: Option<u32>,
}

/// Validates the request JSON of `openai.chat_completions.v1` and `openai.responses.v1` as the
/// reference provider does at the end of the input stream (errors are code 8):
/// the body is a JSON object, `model` is a non-empty string equal to `params_model`, chat
/// requests have a non-empty `messages` array, responses requests have an `input` that is
/// present and not `null`; `stream` is a boolean or null; chat `max_*` limits are integers in
/// u32 range. Other task kinds are rejected with [`PricingError::InvalidRequest`].
///
/// Divergences: the reference (Go `encoding/json`) also matches field names case-insensitively;
/// here names are matched exactly. The reference ignores a responses request's
/// `max_output_tokens` and prices it for the provider's maximum; here it lowers the price as a
/// chat request's limit does (the quote is the provider's to make: a requester only checks that
/// the invoice matches it).
pub fn validate_request_json(task_kind: &str, params_model: &str, input: &[u8]) -> Result<RequestInfo, PricingError> {
    let chat = match task_kind {
        TASK_KIND_CHAT_COMPLETIONS => true,
        TASK_KIND_RESPONSES => false,
        other => return Err(PricingError::invalid(other, "request JSON rules exist only for the openai task kinds")),
    };
    let value: serde_json::Value = serde_json::from_slice(input)
        .map_err(|e| PricingError::invalid(task_kind, format!("request body is not JSON: {e}")))?;
    let empty = serde_json::Map::new();
    let obj = match &value {
        serde_json::Value::Object(map) => map,
        serde_json::Value::Null => &empty,
        _ => return Err(PricingError::invalid(task_kind, "request body must be a JSON object")),
    };
    let model = match obj.get("model") {
        None | Some(serde_json::Value::Null) => String::new(),
        Some(serde_json::Value::String(s)) => s.clone(),
        Some(_) => {
            return Err(PricingError::invalid(task_kind, "model must be a string"));
        }
    };
    let stream = match obj.get("stream") {
        None | Some(serde_json::Value::Null) => false,
        Some(serde_json::Value::Bool(b)) => *b,
        Some(_) => return Err(PricingError::invalid(task_kind, "stream must be a boolean")),
    };
    let requested = if chat {
        let n_messages = match obj.get("messages") {
            None | Some(serde_json::Value::Null) => 0,
            Some(serde_json::Value::Array(a)) => a.len(),
            Some(_) => {
                return Err(PricingError::invalid(task_kind, "messages must be an array"));
            }
        };
        // Parse all three first: the reference rejects a malformed one even when another wins.
        let completion = optional_u32(task_kind, obj, "max_completion_tokens")?;
        let max_tokens = optional_u32(task_kind, obj, "max_tokens")?;
        let max_output = optional_u32(task_kind, obj, "max_output_tokens")?;
        if model.is_empty() {
            return Err(PricingError::invalid(task_kind, "model is required"));
        }
        if n_messages == 0 {
            return Err(PricingError::invalid(task_kind, "messages is required and must be non-empty"));
        }
        completion.or(max_tokens).or(max_output)
    } else {
        let max_output = optional_u32(task_kind, obj, "max_output_tokens")?;
        if model.is_empty() {
            return Err(PricingError::invalid(task_kind, "model is required"));
        }
        if matches!(obj.get("input"), None | Some(serde_json::Value::Null)) {
            return Err(PricingError::invalid(task_kind, "input is required and must not be null"));
        }
        max_output
    };
    if model != params_model {
        return Err(PricingError::invalid(
            task_kind,
            format!("request model {model:?} does not match params model {params_model:?}"),
        ));
    }
    Ok(RequestInfo { model, stream, requested_max_output_tokens: requested })
}

fn optional_u32(
    task_kind: &str,
    obj: &serde_json::Map<String, serde_json::Value>,
    field: &str,
) -> Result<Option<u32>, PricingError> {
    match obj.get(field) {
        None | Some(serde_json::Value::Null) => Ok(None),
        Some(v) => v
            .as_u64()
            .and_then(|n| u32::try_from(n).ok())
            .map(Some)
            .ok_or_else(|| PricingError::invalid(task_kind, format!("{field} must be an integer in u32 range"))),
    }
}

/// `ceil(len / 4)`: the `approx.v1` token count of a byte string.
pub fn approx_token_count(len: usize) -> u64 {
    (len as u64).div_ceil(APPROX_BYTES_PER_TOKEN)
}

/// Usage estimate of one job.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UsageEstimate {
    /// Estimated input tokens.
    pub input_tokens: u64,
    /// Output tokens the job may produce (and is priced for).
    pub max_output_tokens: u64,
}

/// A priced job.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PriceQuote {
    /// Model the job runs on.
    pub model: String,
    /// Estimator used (`approx.v1`).
    pub estimator: &'static str,
    /// Estimated input tokens.
    pub input_tokens: u64,
    /// Output tokens priced for (the job's output limit).
    pub max_output_tokens: u64,
    /// Price before surge.
    pub base_price_msat: u64,
    /// Surge multiplier applied (10 000 = none).
    pub multiplier_bps: u64,
    /// In-flight jobs counted for the surge.
    pub in_flight_jobs: u64,
    /// Price to put in the quote and the invoice.
    pub price_msat: u64,
    /// Whether the request asked for a streamed (SSE) result.
    pub stream: bool,
}

/// The price table, limits and in-flight counter of one jobd worker. Cheap to share behind an
/// `Arc`; quoting is pure apart from reading the in-flight counter.
#[derive(Debug)]
pub struct Pricer {
    models: BTreeMap<String, ModelConfig>,
    max_output_tokens: u32,
    surge: SurgeConfig,
    in_flight: Arc<AtomicU64>,
}

impl Pricer {
    /// Checks the config (every limit > 0, model names non-empty) and builds the pricer.
    pub fn new(config: &PricingConfig) -> Result<Self, PricingError> {
        if config.max_output_tokens == 0 {
            return Err(PricingError::config("max_output_tokens", "must be > 0"));
        }
        for (name, model) in &config.models {
            if name.trim().is_empty() || name.trim() != name {
                return Err(PricingError::config(
                    format!("models.{name:?}"),
                    "model name must be non-empty without surrounding whitespace",
                ));
            }
            if model.max_output_tokens == Some(0) {
                return Err(PricingError::config(format!("models.{name:?}.max_output_tokens"), "must be > 0"));
            }
        }
        if config.surge.per_job_bps > 0
            && config.surge.max_multiplier_bps != 0
            && u64::from(config.surge.max_multiplier_bps) < MULTIPLIER_BPS_ONE
        {
            return Err(PricingError::config(
                "surge.max_multiplier_bps",
                "must be >= 10000 (1.0x) or 0 for the default cap",
            ));
        }
        let models = if config.models.is_empty() {
            BTreeMap::from([(
                BUILTIN_MODEL.to_owned(),
                ModelConfig { max_output_tokens: None, price: ModelPrice::BUILTIN_GPT_5_2 },
            )])
        } else {
            config.models.clone()
        };
        Ok(Pricer {
            models,
            max_output_tokens: config.max_output_tokens,
            surge: config.surge,
            in_flight: Arc::new(AtomicU64::new(0)),
        })
    }

    /// Models with a price, sorted.
    pub fn models(&self) -> impl Iterator<Item = &str> {
        self.models.keys().map(String::as_str)
    }

    /// Whether `model` has a price.
    pub fn has_model(&self, model: &str) -> bool {
        self.models.contains_key(model)
    }

    /// Provider maximum output tokens of `model` (its override, else the default).
    pub fn max_output_tokens(&self, model: &str) -> u32 {
        self.models.get(model).and_then(|m| m.max_output_tokens).unwrap_or(self.max_output_tokens)
    }

    /// `approx.v1` estimate. For the two OpenAI kinds the request JSON is validated first
    /// ([`validate_request_json`]) and the request's explicit limit lowers the output tokens
    /// (0 or above the provider maximum -> code 8). Other task kinds carry opaque input and are
    /// priced for the model's maximum output.
    pub fn estimate(&self, task_kind: &str, model: &str, input: &[u8]) -> Result<(UsageEstimate, bool), PricingError> {
        if input.is_empty() {
            return Err(PricingError::invalid(task_kind, "input is empty"));
        }
        let provider_max = self.max_output_tokens(model);
        let (max_out, stream) = match task_kind {
            TASK_KIND_CHAT_COMPLETIONS | TASK_KIND_RESPONSES => {
                let info = validate_request_json(task_kind, model, input)?;
                let max_out = match info.requested_max_output_tokens {
                    None => provider_max,
                    Some(0) => return Err(PricingError::invalid(task_kind, "max_tokens must be > 0")),
                    Some(n) if n > provider_max => {
                        return Err(PricingError::invalid(
                            task_kind,
                            format!("max_tokens {n} exceeds provider max_output_tokens {provider_max}"),
                        ))
                    }
                    Some(n) => n,
                };
                (max_out, info.stream)
            }
            _ => (provider_max, false),
        };
        Ok((
            UsageEstimate { input_tokens: approx_token_count(input.len()), max_output_tokens: u64::from(max_out) },
            stream,
        ))
    }

    /// Quotes a job with the current in-flight count (see [`Pricer::begin_job`]).
    pub fn quote(&self, task_kind: &str, model: &str, input: &[u8]) -> Result<PriceQuote, PricingError> {
        self.quote_with_in_flight(task_kind, model, input, self.in_flight_jobs())
    }

    /// Quotes a job as if `in_flight` jobs were running.
    pub fn quote_with_in_flight(
        &self,
        task_kind: &str,
        model: &str,
        input: &[u8],
        in_flight: u64,
    ) -> Result<PriceQuote, PricingError> {
        let (usage, stream) = self.estimate(task_kind, model, input)?;
        let entry = self.models.get(model).ok_or_else(|| PricingError::UnknownModel { model: model.to_owned() })?;
        let base = entry.price.price_msat(usage.input_tokens, 0, usage.max_output_tokens)?;
        let bps = self.surge.multiplier_bps(in_flight);
        let price = apply_multiplier_ceil(base, bps)?;
        Ok(PriceQuote {
            model: model.to_owned(),
            estimator: ESTIMATOR_ID,
            input_tokens: usage.input_tokens,
            max_output_tokens: usage.max_output_tokens,
            base_price_msat: base,
            multiplier_bps: bps,
            in_flight_jobs: in_flight,
            price_msat: price,
            stream,
        })
    }

    /// Jobs currently counted as in flight.
    pub fn in_flight_jobs(&self) -> u64 {
        self.in_flight.load(Ordering::Acquire)
    }

    /// Counts one job as in flight until the guard is dropped. The reference counts a job from
    /// the moment its quote is issued (unpaid quotes included) until its runner ends; the quote
    /// of a job itself does not count that job.
    pub fn begin_job(&self) -> InFlightGuard {
        self.in_flight.fetch_add(1, Ordering::AcqRel);
        InFlightGuard { counter: Arc::clone(&self.in_flight) }
    }
}

/// Keeps one job counted as in flight; dropping it ends the count.
#[derive(Debug)]
pub struct InFlightGuard {
    counter: Arc<AtomicU64>,
}

impl Drop for InFlightGuard {
    fn drop(&mut self) {
        self.counter.fetch_sub(1, Ordering::AcqRel);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const VECTOR_INPUT: &[u8] = br#"{"model":"a","messages":[{"role":"user","content":"hi"}]}"#;

    fn pricer_with(models: &[(&str, Option<u32>)], surge: SurgeConfig) -> Pricer {
        let mut config = PricingConfig { surge, ..PricingConfig::default() };
        for (name, max) in models {
            config.models.insert(
                (*name).to_owned(),
                ModelConfig { max_output_tokens: *max, price: ModelPrice::BUILTIN_GPT_5_2 },
            );
        }
        Pricer::new(&config).expect("valid test config")
    }

    #[test]
    fn repo_example_five_bytes_ten_output_tokens_is_144_msat() {
        let tokens = approx_token_count(5);
        assert_eq!(tokens, 2);
        let price = ModelPrice::BUILTIN_GPT_5_2.price_msat(tokens, 0, 10).expect("fits");
        assert_eq!(price, 144);
    }

    #[test]
    fn repo_example_57_byte_vector_input_is_57371_msat() {
        assert_eq!(VECTOR_INPUT.len(), 57);
        let pricer = pricer_with(&[("a", None)], SurgeConfig::default());
        let quote = pricer.quote(TASK_KIND_CHAT_COMPLETIONS, "a", VECTOR_INPUT).expect("quote");
        assert_eq!(quote.input_tokens, 15);
        assert_eq!(quote.max_output_tokens, 4096);
        assert_eq!(quote.price_msat, 57_371);
        assert_eq!(quote.base_price_msat, 57_371);
        assert_eq!(quote.multiplier_bps, 10_000);
        assert!(!quote.stream);
    }

    #[test]
    fn builtin_table_is_used_when_no_model_is_configured() {
        let pricer = Pricer::new(&PricingConfig::default()).expect("default config");
        assert_eq!(pricer.models().collect::<Vec<_>>(), vec!["gpt-5.2"]);
        let input = br#"{"model":"gpt-5.2","messages":[{"role":"user","content":"hi"}]}"#;
        let q = pricer.quote(TASK_KIND_CHAT_COMPLETIONS, "gpt-5.2", input).expect("quote");
        let expected = (input.len() as u64).div_ceil(4) * 1_750_000 + 4096 * 14_000_000;
        assert_eq!(q.price_msat, expected.div_ceil(1_000_000));
    }

    #[test]
    fn token_count_rounds_up() {
        assert_eq!(approx_token_count(0), 0);
        assert_eq!(approx_token_count(1), 1);
        assert_eq!(approx_token_count(4), 1);
        assert_eq!(approx_token_count(5), 2);
        assert_eq!(approx_token_count(8), 2);
    }

    #[test]
    fn cached_price_defaults_to_input_price() {
        let price =
            ModelPrice { input_msat_per_mtok: 3_000_000, cached_input_msat_per_mtok: None, output_msat_per_mtok: 0 };
        assert_eq!(price.price_msat(0, 1, 0).expect("fits"), 3);
        let with_cached = ModelPrice { cached_input_msat_per_mtok: Some(1_000_000), ..price };
        assert_eq!(with_cached.price_msat(0, 1, 0).expect("fits"), 1);
    }

    #[test]
    fn chat_limits_lower_output_tokens_in_reference_order() {
        let pricer = pricer_with(&[("m", Some(100))], SurgeConfig::default());
        let cases: &[(&str, u64)] = &[
            (r#"{"model":"m","messages":[1]}"#, 100),
            (r#"{"model":"m","messages":[1],"max_output_tokens":30}"#, 30),
            (r#"{"model":"m","messages":[1],"max_tokens":20,"max_output_tokens":30}"#, 20),
            (r#"{"model":"m","messages":[1],"max_completion_tokens":10,"max_tokens":20}"#, 10),
            (r#"{"model":"m","messages":[1],"max_tokens":null}"#, 100),
        ];
        for (body, want) in cases {
            let q = pricer.quote(TASK_KIND_CHAT_COMPLETIONS, "m", body.as_bytes()).expect(body);
            assert_eq!(q.max_output_tokens, *want, "{body}");
        }
    }

    #[test]
    fn bad_chat_limits_are_code_8() {
        let pricer = pricer_with(&[("m", Some(100))], SurgeConfig::default());
        for body in [
            r#"{"model":"m","messages":[1],"max_tokens":0}"#,
            r#"{"model":"m","messages":[1],"max_completion_tokens":101}"#,
            r#"{"model":"m","messages":[1],"max_tokens":-1}"#,
            r#"{"model":"m","messages":[1],"max_tokens":1.5}"#,
            r#"{"model":"m","messages":[1],"max_tokens":4294967296}"#,
            r#"{"model":"m","messages":[1],"max_completion_tokens":5,"max_tokens":"x"}"#,
        ] {
            let err = pricer.quote(TASK_KIND_CHAT_COMPLETIONS, "m", body.as_bytes()).expect_err(body);
            assert_eq!(err.lcp_error_code(), 8, "{body}: {err}");
        }
    }

    #[test]
    fn responses_are_priced_for_their_max_output_tokens() {
        let pricer = pricer_with(&[("m", Some(77))], SurgeConfig::default());
        let q = pricer
            .quote(TASK_KIND_RESPONSES, "m", br#"{"model":"m","input":"x","max_output_tokens":5,"stream":true}"#)
            .expect("quote");
        assert_eq!(q.max_output_tokens, 5);
        assert!(q.stream);
        let full = pricer.quote(TASK_KIND_RESPONSES, "m", br#"{"model":"m","input":"x"}"#).expect("quote");
        assert_eq!(full.max_output_tokens, 77);
        assert!(full.price_msat > q.price_msat, "{} vs {}", full.price_msat, q.price_msat);
        for body in [
            r#"{"model":"m","input":"x","max_output_tokens":78}"#,
            r#"{"model":"m","input":"x","max_output_tokens":0}"#,
            r#"{"model":"m","input":"x","max_output_tokens":"5"}"#,
        ] {
            let err = pricer.quote(TASK_KIND_RESPONSES, "m", body.as_bytes()).expect_err(body);
            assert_eq!(err.lcp_error_code(), 8, "{body}: {err}");
        }
    }

    #[test]
    fn request_json_rules() {
        let ok = validate_request_json(
            TASK_KIND_CHAT_COMPLETIONS,
            "m",
            br#"{"model":"m","messages":[{"role":"user"}],"stream":true,"extra":{}}"#,
        )
        .expect("valid");
        assert!(ok.stream);
        assert_eq!(ok.model, "m");
        let bad: &[(&str, &str)] = &[
            (TASK_KIND_CHAT_COMPLETIONS, "not json"),
            (TASK_KIND_CHAT_COMPLETIONS, "[1]"),
            (TASK_KIND_CHAT_COMPLETIONS, r#"{"messages":[1]}"#),
            (TASK_KIND_CHAT_COMPLETIONS, r#"{"model":"","messages":[1]}"#),
            (TASK_KIND_CHAT_COMPLETIONS, r#"{"model":"m","messages":[]}"#),
            (TASK_KIND_CHAT_COMPLETIONS, r#"{"model":"m"}"#),
            (TASK_KIND_CHAT_COMPLETIONS, r#"{"model":"m","messages":"x"}"#),
            (TASK_KIND_CHAT_COMPLETIONS, r#"{"model":"other","messages":[1]}"#),
            (TASK_KIND_CHAT_COMPLETIONS, r#"{"model":"m","messages":[1],"stream":"yes"}"#),
            (TASK_KIND_CHAT_COMPLETIONS, r#"{"model":5,"messages":[1]}"#),
            (TASK_KIND_RESPONSES, r#"{"model":"m"}"#),
            (TASK_KIND_RESPONSES, r#"{"model":"m","input":null}"#),
            (TASK_KIND_RESPONSES, r#"{"input":"x"}"#),
            (TASK_KIND_RESPONSES, r#"{"model":"x","input":"x"}"#),
            ("llm.chat", r#"{"model":"m","messages":[1]}"#),
        ];
        for (kind, body) in bad {
            let err = validate_request_json(kind, "m", body.as_bytes()).expect_err(body);
            assert_eq!(err.lcp_error_code(), 8, "{kind} {body}");
        }
        // `input` may be any non-null JSON value.
        for input in [r#""""#, "[]", "0", "false"] {
            let body = format!(r#"{{"model":"m","input":{input}}}"#);
            validate_request_json(TASK_KIND_RESPONSES, "m", body.as_bytes()).expect(&body);
        }
    }

    #[test]
    fn unknown_model_is_code_2() {
        let pricer = pricer_with(&[("m", None)], SurgeConfig::default());
        let err = pricer
            .quote(TASK_KIND_CHAT_COMPLETIONS, "z", br#"{"model":"z","messages":[1]}"#)
            .expect_err("unknown model");
        assert_eq!(err, PricingError::UnknownModel { model: "z".into() });
        assert_eq!(err.lcp_error_code(), 2);
    }

    #[test]
    fn overflow_is_code_7() {
        let huge = ModelPrice {
            input_msat_per_mtok: u64::MAX,
            cached_input_msat_per_mtok: None,
            output_msat_per_mtok: u64::MAX,
        };
        let err = huge.price_msat(u64::MAX, 0, u64::MAX).expect_err("overflow");
        assert_eq!(err.lcp_error_code(), 7);
        // Just over u64 after the division also overflows.
        let err = ModelPrice {
            input_msat_per_mtok: 1_000_000,
            cached_input_msat_per_mtok: None,
            output_msat_per_mtok: 1_000_000,
        }
        .price_msat(u64::MAX, 0, 1)
        .expect_err("overflow");
        assert_eq!(err.lcp_error_code(), 7);
        let err = apply_multiplier_ceil(u64::MAX, 10_001).expect_err("overflow");
        assert_eq!(err.lcp_error_code(), 7);
        assert_eq!(apply_multiplier_ceil(u64::MAX, 10_000), Ok(u64::MAX));
    }

    #[test]
    fn surge_multiplier_matches_reference() {
        let off = SurgeConfig::default();
        assert_eq!(off.multiplier_bps(1_000), 10_000);
        let default_cap = SurgeConfig { threshold: 0, per_job_bps: 5_000, max_multiplier_bps: 0 };
        assert_eq!(default_cap.multiplier_bps(10), 30_000);
        let capped = SurgeConfig { threshold: 1, per_job_bps: 500, max_multiplier_bps: 12_000 };
        assert_eq!(capped.multiplier_bps(0), 10_000);
        assert_eq!(capped.multiplier_bps(1), 10_000);
        assert_eq!(capped.multiplier_bps(3), 11_000);
        assert_eq!(capped.multiplier_bps(5), 12_000);
        assert_eq!(capped.multiplier_bps(u64::MAX), 12_000);
        assert_eq!(apply_multiplier_ceil(57_371, 11_000), Ok(63_109)); // 63108.1 rounds up
    }

    #[test]
    fn surge_follows_in_flight_guards() {
        let surge = SurgeConfig { threshold: 1, per_job_bps: 500, max_multiplier_bps: 12_000 };
        let pricer = pricer_with(&[("a", None)], surge);
        let base = pricer.quote(TASK_KIND_CHAT_COMPLETIONS, "a", VECTOR_INPUT).expect("quote").price_msat;
        let guards: Vec<_> = (0..3).map(|_| pricer.begin_job()).collect();
        assert_eq!(pricer.in_flight_jobs(), 3);
        let surged = pricer.quote(TASK_KIND_CHAT_COMPLETIONS, "a", VECTOR_INPUT).expect("quote");
        assert_eq!(surged.in_flight_jobs, 3);
        assert_eq!(surged.multiplier_bps, 11_000);
        assert_eq!(surged.price_msat, (base * 11_000).div_ceil(10_000));
        drop(guards);
        assert_eq!(pricer.in_flight_jobs(), 0);
        let after = pricer.quote(TASK_KIND_CHAT_COMPLETIONS, "a", VECTOR_INPUT).expect("quote");
        assert_eq!(after.price_msat, base);
    }

    #[test]
    fn opaque_task_kinds_price_for_model_max() {
        let pricer = pricer_with(&[("m", Some(10))], SurgeConfig::default());
        let q = pricer.quote("exec.wordcount.v1", "m", b"12345").expect("quote");
        assert_eq!((q.input_tokens, q.max_output_tokens), (2, 10));
        assert_eq!(q.price_msat, 144);
        let err = pricer.quote("exec.wordcount.v1", "m", b"").expect_err("empty");
        assert_eq!(err.lcp_error_code(), 8);
    }

    #[test]
    fn config_from_toml_and_rejections() {
        let config: PricingConfig = toml::from_str(
            r#"
            max_output_tokens = 2048
            [models."gpt-5.2"]
            max_output_tokens = 100
            price = { input_msat_per_mtok = 1750000, cached_input_msat_per_mtok = 175000, output_msat_per_mtok = 14000000 }
            [models.small]
            price = { input_msat_per_mtok = 1, output_msat_per_mtok = 2 }
            [in_flight_surge]
            threshold = 2
            per_job_bps = 250
            "#,
        )
        .expect("toml parses");
        let pricer = Pricer::new(&config).expect("valid");
        assert_eq!(pricer.max_output_tokens("gpt-5.2"), 100);
        assert_eq!(pricer.max_output_tokens("small"), 2048);
        assert_eq!(config.surge.multiplier_bps(4), 10_500);
        assert_eq!(pricer.models().collect::<Vec<_>>(), vec!["gpt-5.2", "small"]);

        let zero: PricingConfig = toml::from_str("max_output_tokens = 0").expect("parses");
        assert!(matches!(Pricer::new(&zero), Err(PricingError::InvalidConfig { .. })));
        let zero_model: PricingConfig = toml::from_str(
            "[models.m]\nmax_output_tokens = 0\nprice = { input_msat_per_mtok = 1, output_msat_per_mtok = 1 }",
        )
        .expect("parses");
        assert!(matches!(Pricer::new(&zero_model), Err(PricingError::InvalidConfig { .. })));
        assert!(toml::from_str::<PricingConfig>("bogus = 1").is_err());
    }

    fn entries(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn model_prices_parse_and_refuse_malformed_entries() {
        let prices = parse_model_prices(&entries(&["gpt-4o-mini=150000:600000", " llama3.2:3b = 1:2 ", ""])).unwrap();
        assert_eq!(prices.keys().collect::<Vec<_>>(), ["gpt-4o-mini", "llama3.2:3b"]);
        let p = prices["gpt-4o-mini"];
        assert_eq!(
            (p.input_msat_per_mtok, p.cached_input_msat_per_mtok, p.output_msat_per_mtok),
            (150_000, None, 600_000)
        );
        assert_eq!(prices["llama3.2:3b"].output_msat_per_mtok, 2);
        assert!(parse_model_prices(&entries(&["0:5=0:7"])).unwrap().contains_key("0:5"));
        for (entry, want) in [
            ("gpt-4o-mini", "expected MODEL=INPUT_MSAT_PER_MTOK:OUTPUT_MSAT_PER_MTOK"),
            ("gpt-4o-mini=150000", "expected MODEL="),
            ("=1:2", "empty model name"),
            ("m=abc:2", "input price \"abc\" is not a whole number"),
            ("m=1:-2", "output price \"-2\" is not a whole number"),
            ("m=1:2:3", "output price \"2:3\""),
            ("m=1.5:2", "input price \"1.5\""),
            ("m=1:99999999999999999999", "output price"),
            ("m=0:0", "both prices are 0"),
        ] {
            let e = parse_model_prices(&entries(&[entry])).unwrap_err();
            assert!(e.contains(want) && e.contains(&format!("{entry:?}")), "{entry}: {e}");
        }
        let e = parse_model_prices(&entries(&["m=1:2", "m=3:4"])).unwrap_err();
        assert!(e.contains("\"m\" is priced twice"), "{e}");
    }

    #[test]
    fn set_prices_replaces_prices_and_keeps_model_limits() {
        let mut config: PricingConfig = toml::from_str(
            "[models.a]\nmax_output_tokens = 100\nprice = { input_msat_per_mtok = 1, cached_input_msat_per_mtok = 1, output_msat_per_mtok = 1 }\n\
             [models.b]\nprice = { input_msat_per_mtok = 5, output_msat_per_mtok = 5 }",
        )
        .unwrap();
        config.set_prices(&parse_model_prices(&entries(&["a=7:8", "c=9:10"])).unwrap());
        assert_eq!(config.models.keys().collect::<Vec<_>>(), ["a", "b", "c"]);
        assert_eq!(config.models["a"].max_output_tokens, Some(100));
        assert_eq!(config.models["a"].price, parse_model_prices(&entries(&["a=7:8"])).unwrap()["a"]);
        assert_eq!(config.models["b"].price.input_msat_per_mtok, 5);
        assert_eq!(config.models["c"].max_output_tokens, None);
    }
}
