//! What the gateway needs to know of a streamed (SSE) result, without I/O: whether the bytes a
//! client has received end with the stream's terminal event, and the error event that ends a
//! stream whose job failed after its first byte.
//!
//! OpenAI's clients stop reading at the terminal event (`data: [DONE]` for chat completions;
//! `response.completed`, `response.failed` or `response.incomplete` for responses) and close the
//! connection, often before the job's own end has reached the gateway. A client that closes after
//! the terminal event was served, not gone: its job must finish, not be cancelled.

use super::http::Api;

/// Longest line prefix kept: enough for every line the scanner compares.
const LINE_PREFIX: usize = 40;

/// Terminal event names of the responses API.
const TERMINAL_EVENTS: [&[u8]; 3] = [b"response.completed", b"response.failed", b"response.incomplete"];

/// Follows the SSE lines of a stream as they are delivered and tells whether the last event
/// dispatched was the terminal one. Comment lines (`:`) are neutral; lines ending in a lone `\r`
/// count as part of the next line (no OpenAI-compatible server sends them).
#[derive(Debug, Default)]
pub struct SseEnd {
    line: Vec<u8>,
    line_long: bool,
    /// The current event block has `data: [DONE]`.
    block_done: bool,
    /// The current event block names a terminal event.
    block_terminal_event: bool,
    /// The current event block has other fields.
    block_other: bool,
    complete: bool,
}

impl SseEnd {
    /// Takes the next delivered bytes.
    pub fn feed(&mut self, bytes: &[u8]) {
        for &b in bytes {
            if b == b'\n' {
                self.end_line();
            } else if self.line.len() < LINE_PREFIX {
                self.line.push(b);
            } else {
                self.line_long = true;
            }
        }
    }

    fn end_line(&mut self) {
        let mut line = std::mem::take(&mut self.line);
        if line.last() == Some(&b'\r') {
            line.pop();
        }
        let long = std::mem::replace(&mut self.line_long, false);
        if line.is_empty() && !long {
            // The end of an event block: a block of comments alone changes nothing.
            if self.block_terminal_event || (self.block_done && !self.block_other) {
                self.complete = true;
            } else if self.block_other || self.block_done {
                self.complete = false;
            }
            self.block_done = false;
            self.block_terminal_event = false;
            self.block_other = false;
        } else if line.first() == Some(&b':') {
        } else if !long && (line == b"data: [DONE]" || line == b"data:[DONE]") {
            self.block_done = true;
        } else if !long && Self::terminal_event(&line) {
            self.block_terminal_event = true;
        } else {
            self.block_other = true;
        }
    }

    fn terminal_event(line: &[u8]) -> bool {
        let Some(name) = line.strip_prefix(b"event:") else { return false };
        let name = name.strip_prefix(b" ").unwrap_or(name);
        TERMINAL_EVENTS.contains(&name)
    }

    /// Whether the bytes so far end with the terminal event, dispatched (its blank line sent) and
    /// followed by nothing but comments.
    pub fn complete(&self) -> bool {
        self.complete && self.line.is_empty() && !self.line_long && !self.block_other && !self.block_done
    }

    /// Whether the bytes so far end at an event boundary (nothing of an event pending).
    pub fn at_boundary(&self) -> bool {
        self.line.is_empty() && !self.line_long && !self.block_other && !self.block_done && !self.block_terminal_event
    }
}

/// The event that ends a stream whose job failed after its first byte, in the shape OpenAI's own
/// streams use for errors: for chat completions a `data:` object with an `error` member (OpenAI's
/// SDKs raise it as an API error), for responses an `error` event. Preceded by a blank line when
/// the stream stopped inside an event, so the error is an event of its own.
pub fn error_event(api: Api, at_boundary: bool, code: &str, message: &str) -> Vec<u8> {
    let body = match api {
        Api::ChatCompletions => serde_json::json!({
            "error": { "message": message, "type": "server_error", "param": null, "code": code }
        }),
        Api::Responses => serde_json::json!({
            "type": "error", "code": code, "message": message, "param": null
        }),
    };
    let mut out = Vec::new();
    if !at_boundary {
        out.extend_from_slice(b"\n\n");
    }
    if api == Api::Responses {
        out.extend_from_slice(b"event: error\n");
    }
    out.extend_from_slice(format!("data: {body}\n\n").as_bytes());
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fed(parts: &[&[u8]]) -> SseEnd {
        let mut s = SseEnd::default();
        for p in parts {
            s.feed(p);
        }
        s
    }

    #[test]
    fn done_ends_a_chat_stream_in_any_split() {
        let stream: &[u8] = b"data: {\"choices\":[{\"delta\":{\"content\":\"hi\"}}]}\n\ndata: [DONE]\n\n";
        for cut in 0..=stream.len() {
            let s = fed(&[&stream[..cut], &stream[cut..]]);
            assert!(s.complete(), "split at {cut}");
        }
        // Every proper prefix is not complete.
        for cut in 0..stream.len() {
            assert!(!fed(&[&stream[..cut]]).complete(), "prefix of {cut} bytes");
        }
        assert!(fed(&[b"data:[DONE]\r\n\r\n"]).complete());
    }

    #[test]
    fn comments_after_the_end_keep_it_complete_and_data_after_it_does_not() {
        assert!(fed(&[b"data: [DONE]\n\n: keep-alive\n\n"]).complete());
        assert!(!fed(&[b"data: [DONE]\n\ndata: {}\n\n"]).complete());
        assert!(!fed(&[b"data: [DONE]\n\n: keep-al"]).complete(), "a line in progress");
        assert!(!fed(&[b"data: [DONE] and more\n\n"]).complete());
        assert!(!fed(&[b"data: {\"x\":\"data: [DONE]\"}\n\n"]).complete());
    }

    #[test]
    fn terminal_response_events_end_a_responses_stream() {
        let long = format!("event: response.completed\ndata: {{\"response\":\"{}\"}}\n\n", "x".repeat(500));
        let s = fed(&[b"event: response.output_text.delta\ndata: {}\n\n", long.as_bytes()]);
        assert!(s.complete());
        assert!(fed(&[b"event:response.failed\ndata: {}\n\n"]).complete());
        assert!(!fed(&[b"event: response.completed\ndata: {}\n"]).complete(), "not dispatched yet");
        assert!(!fed(&[b"event: response.output_text.done\ndata: {}\n\n"]).complete());
        assert!(!fed(&[b"event: response.completed.not\ndata: {}\n\n"]).complete());
    }

    #[test]
    fn error_events_have_openais_shapes() {
        let e = error_event(Api::ChatCompletions, true, "job_failed", "upstream \"died\"");
        let text = String::from_utf8(e).unwrap();
        let data = text.strip_prefix("data: ").unwrap().strip_suffix("\n\n").unwrap();
        let v: serde_json::Value = serde_json::from_str(data).unwrap();
        assert_eq!(v["error"]["message"], "upstream \"died\"");
        assert_eq!(v["error"]["code"], "job_failed");
        let e = String::from_utf8(error_event(Api::Responses, false, "job_failed", "m")).unwrap();
        assert!(e.starts_with("\n\nevent: error\ndata: "), "{e}");
        let data = e.trim_start().strip_prefix("event: error\ndata: ").unwrap().trim_end();
        let v: serde_json::Value = serde_json::from_str(data).unwrap();
        assert_eq!((v["type"].as_str(), v["message"].as_str()), (Some("error"), Some("m")));
        // The stream with its error event is well-formed SSE again: a boundary.
        let mut s = fed(&[b"data: {\"a\":"]);
        assert!(!s.at_boundary());
        s.feed(&error_event(Api::ChatCompletions, s.at_boundary(), "c", "m"));
        assert!(s.at_boundary() && !s.complete());
    }
}
