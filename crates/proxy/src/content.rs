//! Reading what pages say as they stream: HTML (`text/html`) and event
//! streams (`text/event-stream`, the way chatbots send their answers), judged
//! by `haven-textscan`'s page classifier on a bounded prefix.
//!
//! The response head waits only while the first `hold_bytes` of body arrive
//! or `hold_ms` pass, whichever is first (or the body ends): the usual
//! harmful page is decided there and never reaches the pupil. After that
//! bytes flow as they come, and the prefix is still read, up to
//! `max_prefix_bytes` of body or `max_text_bytes` of text; a harmful verdict
//! then replaces the rest of the answer (the block page over the page, or a
//! last chatbot message) and ends it. Nothing is buffered beyond the hold.
//!
//! Compressed bodies are not decoded: the proxy asks origins for an
//! uncompressed answer on requests that accept HTML or event streams (see
//! [`prefer_identity`]), and an answer compressed anyway passes unjudged.

use std::collections::VecDeque;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use haven_policy::{Category, CategorySet};
use haven_textscan::page::{HtmlText, PageScanner, PageVerdict};
use http_body_util::BodyExt;
use hyper::body::{Body as HttpBody, Frame, SizeHint};
use hyper::header::{self, HeaderMap, HeaderValue};
use hyper::{Response, StatusCode};

use crate::server::{Body, BoxError};

/// What kind of text an answer carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    /// An HTML page.
    Html,
    /// Server-sent events: a chatbot's answer, token by token.
    EventStream,
}

/// The bounds `[proxy.content]` sets.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Bounds {
    pub(crate) max_prefix_bytes: usize,
    pub(crate) max_text_bytes: usize,
    pub(crate) hold_bytes: usize,
    pub(crate) hold: Duration,
}

impl Bounds {
    pub(crate) fn of(c: &haven_config::ContentSettings) -> Self {
        Self {
            max_prefix_bytes: c.max_prefix_bytes,
            max_text_bytes: c.max_text_bytes,
            hold_bytes: c.hold_bytes.min(c.max_prefix_bytes),
            hold: Duration::from_millis(c.hold_ms),
        }
    }
}

/// Whether an answer is read, and as what: HTML and event streams with a
/// body, not compressed.
pub(crate) fn kind_of(status: StatusCode, headers: &HeaderMap) -> Option<Kind> {
    if !status.is_success() || status == StatusCode::NO_CONTENT || status == StatusCode::PARTIAL_CONTENT {
        return None;
    }
    let encoded = headers.get_all(header::CONTENT_ENCODING).iter().any(|v| !v.as_bytes().eq_ignore_ascii_case(b"identity"));
    if encoded {
        metrics::counter!("haven_proxy_content_unread_total", "reason" => "compressed").increment(1);
        return None;
    }
    let ct = headers.get(header::CONTENT_TYPE)?.to_str().ok()?;
    let mime = ct.split(';').next().unwrap_or_default().trim().to_ascii_lowercase();
    match mime.as_str() {
        "text/html" | "application/xhtml+xml" => Some(Kind::Html),
        "text/event-stream" => Some(Kind::EventStream),
        _ => None,
    }
}

/// Asks the origin for an uncompressed answer when the client would take
/// HTML or an event stream, so the text can be read as it passes without
/// decoding it; other requests (images, scripts, downloads) keep theirs.
pub(crate) fn prefer_identity(headers: &mut HeaderMap) {
    let wants_text = headers.get_all(header::ACCEPT).iter().any(|v| {
        let v = v.as_bytes();
        contains(v, b"text/html") || contains(v, b"text/event-stream") || contains(v, b"application/xhtml")
    });
    if wants_text && headers.contains_key(header::ACCEPT_ENCODING) {
        headers.insert(header::ACCEPT_ENCODING, HeaderValue::from_static("identity"));
    }
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w.eq_ignore_ascii_case(needle))
}

/// The page categories a verdict found, as the policy's categories.
pub(crate) fn categories(v: &PageVerdict) -> CategorySet {
    v.found.iter().filter_map(|f| Category::from_id(f.category.id())).collect()
}

/// The highest score in a verdict.
pub(crate) fn score(v: &PageVerdict) -> f32 {
    v.found.iter().map(|f| f.score).fold(0.0, f32::max)
}

/// Event-stream bytes to the answer's text: `data:` lines, the text of JSON
/// deltas where the line is JSON (OpenAI-style `choices[].delta.content`,
/// Anthropic-style `delta.text`, Gemini-style `candidates[].content.parts[].text`),
/// the line itself where it is not.
#[derive(Debug, Default)]
struct EventText {
    line: Vec<u8>,
    /// A line longer than this is skipped (no answer sends one).
    overlong: bool,
}

const EVENT_LINE_MAX: usize = 64 * 1024;

impl EventText {
    fn push(&mut self, bytes: &[u8], out: &mut String) {
        for &b in bytes {
            if b == b'\n' {
                if !self.overlong {
                    let line = std::mem::take(&mut self.line);
                    Self::line(&line, out);
                }
                self.line.clear();
                self.overlong = false;
            } else if self.line.len() < EVENT_LINE_MAX {
                self.line.push(b);
            } else {
                self.overlong = true;
            }
        }
    }

    fn finish(&mut self, out: &mut String) {
        if !self.overlong && !self.line.is_empty() {
            let line = std::mem::take(&mut self.line);
            Self::line(&line, out);
        }
    }

    fn line(line: &[u8], out: &mut String) {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        let Some(data) = line.strip_prefix(b"data:") else { return };
        let data = data.strip_prefix(b" ").unwrap_or(data);
        if data.is_empty() || data == b"[DONE]" {
            return;
        }
        match serde_json::from_slice::<serde_json::Value>(data) {
            Ok(v) => delta_text(&v, out),
            Err(_) => {
                out.push_str(&String::from_utf8_lossy(data));
                out.push('\n');
            }
        }
    }
}

fn delta_text(v: &serde_json::Value, out: &mut String) {
    let mut put = |s: Option<&str>| {
        if let Some(s) = s {
            out.push_str(s);
        }
    };
    if let Some(choices) = v.get("choices").and_then(|c| c.as_array()) {
        for c in choices {
            put(c.pointer("/delta/content").and_then(|x| x.as_str()));
            put(c.get("text").and_then(|x| x.as_str()));
            put(c.pointer("/message/content").and_then(|x| x.as_str()));
        }
    }
    put(v.pointer("/delta/text").and_then(|x| x.as_str()));
    if let Some(cands) = v.get("candidates").and_then(|c| c.as_array()) {
        for c in cands {
            for p in c.pointer("/content/parts").and_then(|p| p.as_array()).into_iter().flatten() {
                put(p.get("text").and_then(|x| x.as_str()));
            }
        }
    }
    // Simpler streams: `{"text": …}`, `{"response": …}` (local models).
    put(v.get("text").and_then(|x| x.as_str()));
    put(v.get("response").and_then(|x| x.as_str()));
}

enum Text {
    Html(HtmlText),
    Events(EventText),
}

/// Body bytes in, a verdict on the text so far out; stops at the bounds.
pub(crate) struct Reader {
    text: Text,
    scanner: PageScanner,
    scratch: String,
    bytes: usize,
    text_bytes: usize,
    bounds: Bounds,
    done: bool,
}

impl Reader {
    pub(crate) fn new(kind: Kind, bounds: Bounds) -> Self {
        let text = match kind {
            Kind::Html => Text::Html(HtmlText::new(bounds.max_prefix_bytes)),
            Kind::EventStream => Text::Events(EventText::default()),
        };
        Self { text, scanner: PageScanner::new(), scratch: String::new(), bytes: 0, text_bytes: 0, bounds, done: false }
    }

    /// Reads the next piece of body (nothing once the prefix is read).
    pub(crate) fn feed(&mut self, data: &[u8]) {
        if self.done {
            return;
        }
        let data = &data[..data.len().min(self.bounds.max_prefix_bytes.saturating_sub(self.bytes))];
        self.bytes += data.len();
        self.scratch.clear();
        match &mut self.text {
            Text::Html(h) => h.push(data, &mut self.scratch),
            Text::Events(e) => e.push(data, &mut self.scratch),
        }
        self.take_scratch();
        if self.bytes >= self.bounds.max_prefix_bytes || self.text_bytes >= self.bounds.max_text_bytes {
            self.end();
        }
    }

    fn take_scratch(&mut self) {
        let room = self.bounds.max_text_bytes.saturating_sub(self.text_bytes);
        let mut cut = self.scratch.len().min(room);
        while !self.scratch.is_char_boundary(cut) {
            cut -= 1;
        }
        self.scanner.push(&self.scratch[..cut]);
        self.text_bytes += cut;
    }

    /// The body (or the prefix) ended: the last word counts.
    pub(crate) fn end(&mut self) {
        if self.done {
            return;
        }
        self.scratch.clear();
        match &mut self.text {
            Text::Html(h) => h.finish(&mut self.scratch),
            Text::Events(e) => e.finish(&mut self.scratch),
        }
        self.take_scratch();
        self.scanner.finish();
        self.done = true;
    }

    /// Whether the whole prefix was read.
    pub(crate) fn is_done(&self) -> bool {
        self.done
    }

    pub(crate) fn verdict(&self) -> PageVerdict {
        self.scanner.verdict()
    }
}

/// Decides what a verdict means for the person asking (their policy), and
/// keeps the record of it.
pub(crate) trait Judge: Send + Sync + Unpin + 'static {
    /// Before the head is sent: the response instead (the block page), if the text blocks.
    fn early(&mut self, v: &PageVerdict) -> Option<Response<Body>>;
    /// Bytes already sent: what ends the answer instead of the rest, if the text blocks.
    fn late(&mut self, v: &PageVerdict) -> Option<Bytes>;
    /// The prefix was read to its end without a block.
    fn judged(&mut self, v: &PageVerdict);
}

/// What [`watch`] made of an answer.
pub(crate) enum Watched {
    /// Blocked before its head was sent; the judge has logged it.
    Blocked(Response<Body>),
    /// Passed on, still read as it streams.
    Passing(Response<Body>),
}

/// Holds the head for the first judgement, then streams the answer while
/// reading the rest of its prefix.
pub(crate) async fn watch<J: Judge>(resp: Response<Body>, kind: Kind, bounds: Bounds, mut judge: J) -> Watched {
    let started = std::time::Instant::now();
    let (mut parts, mut body) = resp.into_parts();
    let mut reader = Reader::new(kind, bounds);
    let mut held = VecDeque::new();
    let mut held_bytes = 0usize;
    let mut error = None;
    let mut ended = false;
    let deadline = tokio::time::Instant::now() + bounds.hold;
    while held_bytes < bounds.hold_bytes && !reader.is_done() {
        match tokio::time::timeout_at(deadline, body.frame()).await {
            Err(_) => break,
            Ok(None) => {
                ended = true;
                break;
            }
            Ok(Some(Err(e))) => {
                error = Some(e);
                ended = true;
                break;
            }
            Ok(Some(Ok(frame))) => {
                if let Some(data) = frame.data_ref() {
                    reader.feed(data);
                    held_bytes += data.len();
                }
                held.push_back(frame);
            }
        }
    }
    if ended {
        reader.end();
    }
    metrics::histogram!("haven_proxy_content_hold_seconds").record(started.elapsed().as_secs_f64());
    let v = reader.verdict();
    let mut judged = CategorySet::EMPTY;
    if !v.is_benign() {
        if let Some(r) = judge.early(&v) {
            return Watched::Blocked(r);
        }
        judged = categories(&v);
    }
    let reader = if reader.is_done() {
        // A body cut short by an error is not a page to remember.
        if error.is_none() {
            judge.judged(&v);
        }
        None
    } else {
        // A later verdict may end the answer early: its length is no longer known.
        parts.headers.remove(header::CONTENT_LENGTH);
        Some(reader)
    };
    let inner = if ended { None } else { Some(body) };
    Watched::Passing(Response::from_parts(parts, Streaming { held, error, inner, reader, judge, judged }.boxed()))
}

/// The answer after the hold: held frames first, then the origin's, read
/// until the prefix ends.
struct Streaming<J> {
    held: VecDeque<Frame<Bytes>>,
    error: Option<BoxError>,
    inner: Option<Body>,
    reader: Option<Reader>,
    judge: J,
    /// Categories already put to the judge (and allowed), so each is decided once.
    judged: CategorySet,
}

impl<J: Judge> Streaming<J> {
    /// After more text: the replacement, if the answer is now blocked.
    fn check(&mut self) -> Option<Bytes> {
        let reader = self.reader.as_ref()?;
        let v = reader.verdict();
        let found = categories(&v);
        let mut out = None;
        if !found.difference(self.judged).is_empty() {
            self.judged = self.judged.union(found);
            out = self.judge.late(&v);
        }
        if out.is_none() && reader.is_done() {
            self.judge.judged(&v);
            self.reader = None;
        }
        if out.is_some() {
            self.reader = None;
            self.inner = None;
        }
        out
    }
}

impl<J: Judge> HttpBody for Streaming<J> {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = self.get_mut();
        if let Some(f) = this.held.pop_front() {
            return Poll::Ready(Some(Ok(f)));
        }
        if let Some(e) = this.error.take() {
            return Poll::Ready(Some(Err(e)));
        }
        let Some(inner) = this.inner.as_mut() else { return Poll::Ready(None) };
        match Pin::new(inner).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                if let (Some(data), Some(reader)) = (frame.data_ref(), this.reader.as_mut()) {
                    reader.feed(data);
                    // The piece that tipped it is not sent: the replacement goes instead.
                    if let Some(replacement) = this.check() {
                        return Poll::Ready(Some(Ok(Frame::data(replacement))));
                    }
                }
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(None) => {
                this.inner = None;
                if let Some(reader) = this.reader.as_mut() {
                    reader.end();
                    if let Some(replacement) = this.check() {
                        return Poll::Ready(Some(Ok(Frame::data(replacement))));
                    }
                }
                Poll::Ready(None)
            }
            other => other,
        }
    }

    fn is_end_stream(&self) -> bool {
        self.held.is_empty() && self.error.is_none() && self.inner.as_ref().is_none_or(HttpBody::is_end_stream) && self.reader.is_none()
    }

    fn size_hint(&self) -> SizeHint {
        match (&self.inner, &self.reader) {
            (None, None) => {
                let n: usize = self.held.iter().filter_map(|f| f.data_ref().map(Bytes::len)).sum();
                SizeHint::with_exact(n as u64)
            }
            _ => SizeHint::default(),
        }
    }
}

/// What ends an HTML page blocked after its head was sent: raw-text
/// elements closed, the block page over everything, loading stopped.
pub(crate) fn html_replacement(block_page: &str) -> Bytes {
    Bytes::from(format!(
        "</script></style></textarea></noscript></template><div id=\"haven-blocked\" style=\"position:fixed;inset:0;z-index:2147483647;background:#fff\">\
         <iframe title=\"Blocked by Haven\" srcdoc=\"{}\" style=\"width:100%;height:100%;border:0\"></iframe></div>\
         <script>try{{window.stop();for(const e of document.body.children){{if(e.id!==\"haven-blocked\")e.remove()}}}}catch(e){{}}</script>",
        crate::page::esc(block_page)
    ))
}

/// What ends a chatbot's answer blocked mid-stream: a last delta the chat
/// shows, an event tools can read, and the end.
pub(crate) fn event_replacement(reference: &str, categories: &[&str]) -> Bytes {
    let said = format!(
        "\n\n[Haven stopped this answer because it looked like {} content. Reference {reference}. If this was a mistake, tell a teacher.]",
        categories.join(" and ").to_lowercase()
    );
    let delta = serde_json::json!({ "choices": [{ "index": 0, "delta": { "content": said } }] });
    let blocked = serde_json::json!({ "blocked": true, "reference": reference, "categories": categories });
    Bytes::from(format!("data: {delta}\n\nevent: haven-blocked\ndata: {blocked}\n\ndata: [DONE]\n\n"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bounds() -> Bounds {
        Bounds { max_prefix_bytes: 1 << 20, max_text_bytes: 1 << 20, hold_bytes: 1024, hold: Duration::from_millis(10) }
    }

    #[test]
    fn event_streams_give_the_answer_text_in_any_pieces() {
        let stream = "event: x\ndata: {\"choices\":[{\"delta\":{\"content\":\"Hel\"}}]}\n\n\
                      data: {\"choices\":[{\"delta\":{\"content\":\"lo the\"}}]}\r\n\r\n\
                      data: {\"type\":\"content_block_delta\",\"delta\":{\"text\":\"re, \"}}\n\n\
                      data: {\"candidates\":[{\"content\":{\"parts\":[{\"text\":\"world\"}]}}]}\n\n\
                      data: plain words\n\ndata: [DONE]\n\n";
        for piece in [1, 5, stream.len()] {
            let mut e = EventText::default();
            let mut out = String::new();
            for c in stream.as_bytes().chunks(piece) {
                e.push(c, &mut out);
            }
            e.finish(&mut out);
            assert_eq!(out, "Hello there, worldplain words\n");
        }
    }

    #[test]
    fn the_reader_stops_at_the_text_bound() {
        let mut r = Reader::new(Kind::Html, Bounds { max_text_bytes: 20, ..bounds() });
        r.feed(b"<p>free spins, deposit bonus</p>");
        assert!(r.is_done());
        r.feed(b" welcome bonus, play now, bet now");
        assert!(r.verdict().is_benign(), "nothing past the bound is read");
    }

    #[test]
    fn only_uncompressed_html_and_event_streams_are_read() {
        let h = |ct: &str, ce: Option<&str>| {
            let mut m = HeaderMap::new();
            m.insert(header::CONTENT_TYPE, HeaderValue::from_str(ct).unwrap());
            if let Some(ce) = ce {
                m.insert(header::CONTENT_ENCODING, HeaderValue::from_str(ce).unwrap());
            }
            m
        };
        assert_eq!(kind_of(StatusCode::OK, &h("text/html; charset=utf-8", None)), Some(Kind::Html));
        assert_eq!(kind_of(StatusCode::OK, &h("Text/Event-Stream", None)), Some(Kind::EventStream));
        assert_eq!(kind_of(StatusCode::OK, &h("text/html", Some("gzip"))), None);
        assert_eq!(kind_of(StatusCode::OK, &h("image/png", None)), None);
        assert_eq!(kind_of(StatusCode::NOT_MODIFIED, &h("text/html", None)), None);
        let mut req = HeaderMap::new();
        req.insert(header::ACCEPT, HeaderValue::from_static("text/html,application/xhtml+xml;q=0.9"));
        req.insert(header::ACCEPT_ENCODING, HeaderValue::from_static("gzip, br"));
        prefer_identity(&mut req);
        assert_eq!(req[header::ACCEPT_ENCODING], "identity");
        let mut img = HeaderMap::new();
        img.insert(header::ACCEPT, HeaderValue::from_static("image/*"));
        img.insert(header::ACCEPT_ENCODING, HeaderValue::from_static("gzip, br"));
        prefer_identity(&mut img);
        assert_eq!(img[header::ACCEPT_ENCODING], "gzip, br");
    }
}
