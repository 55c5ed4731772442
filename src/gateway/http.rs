//! The HTTP surface, pure: routes, Bearer keys, request validation, and the OpenAI-shaped bodies
//! (errors, the model list). No I/O here; the runtime feeds it what hyper received.

use serde_json::Value;

/// `GET /healthz` body.
pub const HEALTHZ_BODY: &[u8] = b"ok\n";
/// Realm in `WWW-Authenticate` on a 401.
pub const AUTH_REALM: &str = "lcp-gateway";
/// Provider node id header.
pub const H_PEER_ID: &str = "x-lcp-peer-id";
/// Job id header (hex).
pub const H_JOB_ID: &str = "x-lcp-job-id";
/// Price header (msat).
pub const H_PRICE_MSAT: &str = "x-lcp-price-msat";
/// terms_hash header (hex).
pub const H_TERMS_HASH: &str = "x-lcp-terms-hash";
/// Content type of a JSON result when the provider names none.
pub const DEFAULT_JSON_TYPE: &str = "application/json; charset=utf-8";
/// Content type of a streamed result when the provider names none.
pub const DEFAULT_SSE_TYPE: &str = "text/event-stream; charset=utf-8";

/// The two OpenAI endpoints that run jobs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Api {
    /// `POST /v1/chat/completions`.
    ChatCompletions,
    /// `POST /v1/responses`.
    Responses,
}

impl Api {
    /// The LCP task kind of this endpoint.
    pub fn task_kind(self) -> &'static str {
        match self {
            Api::ChatCompletions => crate::wire::lcp::v02::TASK_OPENAI_CHAT,
            Api::Responses => crate::wire::lcp::v02::TASK_OPENAI_RESPONSES,
        }
    }
}

/// Where a request goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Route {
    /// `GET|HEAD /healthz`: never authenticated.
    Healthz,
    /// `GET|HEAD /v1/models`.
    Models,
    /// A job endpoint.
    Job(Api),
    /// A known path with another method; the value is the `Allow` header.
    MethodNotAllowed(&'static str),
    /// Anything else.
    NotFound,
}

impl Route {
    /// Whether the route needs a Bearer key when keys are configured (every `/v1/*` path).
    pub fn needs_auth(self, path: &str) -> bool {
        self != Route::Healthz && (path == "/v1" || path.starts_with("/v1/"))
    }
}

/// Routes a request by method and path (without the query).
pub fn route(method: &http::Method, path: &str) -> Route {
    use http::Method;
    let get_or_head = *method == Method::GET || *method == Method::HEAD;
    match path {
        "/healthz" if get_or_head => Route::Healthz,
        "/healthz" => Route::MethodNotAllowed("GET, HEAD"),
        "/v1/models" if get_or_head => Route::Models,
        "/v1/models" => Route::MethodNotAllowed("GET, HEAD"),
        "/v1/chat/completions" if *method == Method::POST => Route::Job(Api::ChatCompletions),
        "/v1/responses" if *method == Method::POST => Route::Job(Api::Responses),
        "/v1/chat/completions" | "/v1/responses" => Route::MethodNotAllowed("POST"),
        _ => Route::NotFound,
    }
}

/// Compares two byte strings in time that depends only on their lengths.
fn ct_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Whether an `Authorization` header carries one of `keys` as a Bearer token. Every key is
/// compared (in constant time per key), so the answer's timing does not tell which one matched.
pub fn authorized(header: Option<&[u8]>, keys: &[String]) -> bool {
    let Some(h) = header else { return false };
    let Some(token) = h.get(..7).filter(|p| p.eq_ignore_ascii_case(b"bearer ")).map(|_| h[7..].trim_ascii()) else {
        return false;
    };
    keys.iter().fold(false, |ok, k| ct_eq(token, k.as_bytes()) | ok)
}

/// Whether a `Content-Encoding` header (absent, empty or `identity`) leaves the body as is.
pub fn identity_encoding(header: Option<&[u8]>) -> bool {
    match header {
        None => true,
        Some(v) => {
            let v = v.trim_ascii();
            v.is_empty() || v.eq_ignore_ascii_case(b"identity")
        }
    }
}

/// What the gateway needs from a valid request body (the body itself goes on unchanged).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RequestInfo {
    /// The endpoint asked.
    pub api: Api,
    /// The model.
    pub model: String,
    /// Whether the client asked for a streamed (SSE) answer.
    pub stream: bool,
}

/// Validates a request body as the reference does: JSON object, `model` a non-empty string
/// without surrounding whitespace, chat `messages` a non-empty array, responses `input` present
/// and not null, `stream` a boolean when present. Returns a one-line reason otherwise.
pub fn validate(api: Api, body: &[u8]) -> Result<RequestInfo, String> {
    let v: Value = serde_json::from_slice(body).map_err(|e| format!("request body is not valid JSON: {e}"))?;
    let Value::Object(obj) = v else { return Err("request body must be a JSON object".into()) };
    let model = match obj.get("model") {
        Some(Value::String(m)) if m.is_empty() => return Err("model is required".into()),
        Some(Value::String(m)) if m.trim() != m => {
            return Err("model must not have leading or trailing whitespace".into())
        }
        Some(Value::String(m)) => m.clone(),
        None | Some(Value::Null) => return Err("model is required".into()),
        Some(_) => return Err("model must be a string".into()),
    };
    match api {
        Api::ChatCompletions => match obj.get("messages") {
            Some(Value::Array(a)) if !a.is_empty() => {}
            Some(Value::Array(_)) | None | Some(Value::Null) => {
                return Err("messages is required and must be non-empty".into())
            }
            Some(_) => return Err("messages must be an array".into()),
        },
        Api::Responses => {
            if matches!(obj.get("input"), None | Some(Value::Null)) {
                return Err("input is required and must not be null".into());
            }
        }
    }
    let stream = match obj.get("stream") {
        None | Some(Value::Null) => false,
        Some(Value::Bool(b)) => *b,
        Some(_) => return Err("stream must be a boolean".into()),
    };
    Ok(RequestInfo { api, model, stream })
}

/// An OpenAI-shaped error body: `{"error":{"message","type","param":null,"code"}}` (`code` null
/// where OpenAI has none for the case).
pub fn error_body(message: &str, kind: &str, code: Option<&str>) -> Vec<u8> {
    let v = serde_json::json!({
        "error": { "message": message, "type": kind, "param": null, "code": code }
    });
    let mut b = v.to_string().into_bytes();
    b.push(b'\n');
    b
}

/// The body of `GET /v1/models`: an OpenAI list of `model` objects.
pub fn models_body(ids: &[String], created: u64) -> Vec<u8> {
    let data: Vec<Value> = ids
        .iter()
        .map(|id| serde_json::json!({ "id": id, "object": "model", "created": created, "owned_by": "lcp" }))
        .collect();
    let mut b = serde_json::json!({ "object": "list", "data": data }).to_string().into_bytes();
    b.push(b'\n');
    b
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::Method;

    #[test]
    fn routes_and_methods() {
        assert_eq!(route(&Method::GET, "/healthz"), Route::Healthz);
        assert_eq!(route(&Method::HEAD, "/healthz"), Route::Healthz);
        assert_eq!(route(&Method::POST, "/healthz"), Route::MethodNotAllowed("GET, HEAD"));
        assert_eq!(route(&Method::GET, "/v1/models"), Route::Models);
        assert_eq!(route(&Method::POST, "/v1/chat/completions"), Route::Job(Api::ChatCompletions));
        assert_eq!(route(&Method::POST, "/v1/responses"), Route::Job(Api::Responses));
        assert_eq!(route(&Method::GET, "/v1/responses"), Route::MethodNotAllowed("POST"));
        assert_eq!(route(&Method::POST, "/v1/embeddings"), Route::NotFound);
        assert!(Route::NotFound.needs_auth("/v1/embeddings"));
        assert!(!Route::NotFound.needs_auth("/other"));
        assert!(!Route::Healthz.needs_auth("/healthz"));
        assert!(Route::Models.needs_auth("/v1/models"));
    }

    #[test]
    fn bearer_keys() {
        let keys = vec!["k-one".to_string(), "k-two".to_string()];
        assert!(authorized(Some(b"Bearer k-two"), &keys));
        assert!(authorized(Some(b"bearer  k-one "), &keys));
        assert!(!authorized(Some(b"Bearer k-on"), &keys));
        assert!(!authorized(Some(b"Basic k-one"), &keys));
        assert!(!authorized(Some(b"Bearer"), &keys));
        assert!(!authorized(None, &keys));
        assert!(!authorized(Some(b"Bearer "), &[]));
    }

    #[test]
    fn content_encoding() {
        assert!(identity_encoding(None));
        assert!(identity_encoding(Some(b"identity")));
        assert!(identity_encoding(Some(b" Identity ")));
        assert!(identity_encoding(Some(b"")));
        assert!(!identity_encoding(Some(b"gzip")));
    }

    #[test]
    fn validation_follows_the_reference() {
        let chat = |s: &str| validate(Api::ChatCompletions, s.as_bytes());
        let resp = |s: &str| validate(Api::Responses, s.as_bytes());
        assert_eq!(
            chat(r#"{"model":"m","messages":[{"role":"user","content":"x"}],"stream":true}"#).unwrap(),
            RequestInfo { api: Api::ChatCompletions, model: "m".into(), stream: true }
        );
        assert!(!chat(r#"{"model":"m","messages":[1],"stream":null}"#).unwrap().stream);
        assert!(chat("nope").unwrap_err().contains("not valid JSON"));
        assert!(chat("[]").unwrap_err().contains("JSON object"));
        assert!(chat(r#"{"messages":[1]}"#).unwrap_err().contains("model is required"));
        assert!(chat(r#"{"model":"","messages":[1]}"#).unwrap_err().contains("model is required"));
        assert!(chat(r#"{"model":" m","messages":[1]}"#).unwrap_err().contains("whitespace"));
        assert!(chat(r#"{"model":1,"messages":[1]}"#).unwrap_err().contains("string"));
        assert!(chat(r#"{"model":"m","messages":[]}"#).unwrap_err().contains("non-empty"));
        assert!(chat(r#"{"model":"m"}"#).unwrap_err().contains("non-empty"));
        assert!(chat(r#"{"model":"m","messages":{}}"#).unwrap_err().contains("array"));
        assert!(chat(r#"{"model":"m","messages":[1],"stream":"yes"}"#).unwrap_err().contains("boolean"));
        assert_eq!(resp(r#"{"model":"m","input":"hi"}"#).unwrap().model, "m");
        assert!(resp(r#"{"model":"m","input":[]}"#).is_ok());
        assert!(resp(r#"{"model":"m","input":null}"#).unwrap_err().contains("input is required"));
        assert!(resp(r#"{"model":"m"}"#).unwrap_err().contains("input is required"));
    }

    #[test]
    fn bodies_have_the_openai_shape() {
        let v: Value = serde_json::from_slice(&error_body("bad \"thing\"", "invalid_request_error", None)).unwrap();
        assert_eq!(
            v,
            serde_json::json!({"error":{"message":"bad \"thing\"","type":"invalid_request_error","param":null,"code":null}})
        );
        let v: Value = serde_json::from_slice(&models_body(&["a".into(), "b".into()], 7)).unwrap();
        assert_eq!(v["object"], "list");
        assert_eq!(v["data"][1], serde_json::json!({"id":"b","object":"model","created":7,"owned_by":"lcp"}));
    }
}
