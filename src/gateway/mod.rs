//! The OpenAI-compatible gateway: an HTTP server for requesters that buys each request as a paid
//! LCP job through lcpd's client API, so any OpenAI SDK or curl works with only its base URL
//! pointed here.
//!
//! Endpoints: `POST /v1/chat/completions` and `POST /v1/responses` (JSON, or SSE when the body
//! asks for `"stream": true`, each result chunk written as it arrives), `GET /v1/models` (the
//! models of the connected providers' manifests), `GET /healthz` (`ok`, never authenticated).
//! The request body goes to the provider byte for byte.
//!
//! Shape shared by every service: [`opts`] (flags, env, file), [`runtime`] (`run`), [`error`];
//! the pure parts are [`http`] (routes, keys, validation, bodies), [`choice`] (which provider),
//! [`tracker`] (job events by job id, cancel and budget actions) and [`budget`] (the day's
//! spending in `gateway.db`) and [`sse`] (a stream's terminal event, error events); [`body`]
//! streams results.

pub mod body;
pub mod budget;
pub mod choice;
pub mod error;
pub mod http;
pub mod opts;
pub mod runtime;
pub mod sse;
pub mod tracker;

pub use error::GatewayError;
pub use opts::{GatewayArgs, GatewayConfig, GatewayFile};
pub use runtime::run;
