//! The HTTP listener: health, metrics, the WebSocket bridge, the backend API, the admin view
//! (`admin.rs`), dev tokens and the web client's static files. Paths and payloads are
//! documented in docs/http-api.md.

use std::net::SocketAddr;
use std::path::{Component, Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use axum::Json;
use axum::extract::rejection::QueryRejection;
use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::extract::{ConnectInfo, FromRef, Query, State};
use axum::http::{HeaderMap, StatusCode, Uri, header};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{any, get, post};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use bytes::{Bytes, BytesMut};
use futures::stream::{SplitSink, SplitStream};
use futures::{SinkExt, StreamExt};
use natter_codec::frame::{History, Interest, Send};
use natter_codec::types::{Direction, Event, EventKind, Status};
use natter_codec::{ErrorCode, Frame, split_frame};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use tokio::sync::{Semaphore, mpsc, watch};

use crate::connection::{FrameSink, FrameSource, ReadError, serve};
use crate::hub::{Hub, now_ms};
use crate::router::Destination;

/// Dev tokens last a day.
const DEV_TOKEN_TTL_MS: u64 = 24 * 60 * 60 * 1000;
/// The device name backend API sends use; dedup keys are per (conversation, user, device).
const API_DEVICE: &str = "api";

#[derive(Debug, Clone)]
struct App {
    hub: Arc<Hub>,
    permits: Arc<Semaphore>,
    tracker: mpsc::Sender<()>,
    shutdown: watch::Receiver<bool>,
}

/// Handlers that need nothing but the hub (the admin view) take `State<Arc<Hub>>`.
impl FromRef<App> for Arc<Hub> {
    fn from_ref(app: &App) -> Self {
        app.hub.clone()
    }
}

/// The axum router for the HTTP listener.
pub fn router(
    hub: Arc<Hub>,
    permits: Arc<Semaphore>,
    tracker: mpsc::Sender<()>,
    shutdown: watch::Receiver<bool>,
) -> axum::Router {
    let app = App {
        hub,
        permits,
        tracker,
        shutdown,
    };
    axum::Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .route("/ws", get(websocket))
        .route("/v1/messages", post(send_message))
        .route("/v1/history", get(history))
        .route("/v1/presence", get(presence))
        .route("/v1/admin/connections", get(crate::admin::connections))
        .route("/v1/admin/server", get(crate::admin::server))
        .route("/v1/dev/token", post(dev_token))
        .route("/v1/{*rest}", any(api_not_found))
        .route("/dev", get(dev_page))
        .fallback(static_file)
        .method_not_allowed_fallback(method_not_allowed)
        .with_state(app)
}

async fn api_not_found() -> ApiError {
    ApiError::new(StatusCode::NOT_FOUND, "NOT_FOUND", "no such API path")
}

async fn method_not_allowed() -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "INVALID_REQUEST",
        "method not allowed on this path",
    )
}

async fn readyz(State(app): State<App>) -> Response {
    if app.hub.is_ready() {
        (StatusCode::OK, "ready\n").into_response()
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "not ready\n").into_response()
    }
}

async fn metrics(State(app): State<App>) -> Response {
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        app.hub.metrics.render(),
    )
        .into_response()
}

async fn websocket(State(app): State<App>, upgrade: WebSocketUpgrade) -> Response {
    let Ok(permit) = app.permits.clone().try_acquire_owned() else {
        app.hub.count_error(ErrorCode::TOO_MANY_CONNECTIONS);
        return (StatusCode::SERVICE_UNAVAILABLE, "server is full\n").into_response();
    };
    // A message carries one frame, so the frame limit (plus its prefix) bounds messages too.
    let max = app.hub.config.limits.max_frame_size as usize + 16;
    upgrade
        .max_message_size(max)
        .max_frame_size(max)
        .on_upgrade(move |socket| async move {
            let (sink, stream) = socket.split();
            let hub = app.hub.clone();
            serve(
                hub,
                WsSource(stream),
                WsSink(sink),
                "ws",
                app.shutdown.clone(),
            )
            .await;
            drop(permit);
            drop(app.tracker);
        })
}

/// The receiving half of a WebSocket: each binary message is exactly one frame.
struct WsSource(SplitStream<WebSocket>);

impl FrameSource for WsSource {
    async fn next(&mut self, max_frame_size: u64) -> Result<Option<Bytes>, ReadError> {
        loop {
            let message = match self.0.next().await {
                None => return Ok(None),
                Some(Err(error)) => return Err(ReadError::Io(std::io::Error::other(error))),
                Some(Ok(message)) => message,
            };
            match message {
                Message::Binary(data) => {
                    let mut buf = BytesMut::from(data);
                    return match split_frame(&mut buf, max_frame_size) {
                        Ok(Some(frame)) if buf.is_empty() => Ok(Some(frame)),
                        Ok(_) => Err(ReadError::Protocol(ErrorCode::PROTOCOL_VIOLATION)),
                        Err(error) => Err(ReadError::Protocol(error.code())),
                    };
                }
                Message::Text(_) => return Err(ReadError::Protocol(ErrorCode::PROTOCOL_VIOLATION)),
                Message::Close(_) => return Ok(None),
                Message::Ping(_) | Message::Pong(_) => {}
            }
        }
    }
}

/// The sending half of a WebSocket: one binary message per frame.
struct WsSink(SplitSink<WebSocket, Message>);

impl FrameSink for WsSink {
    async fn send(&mut self, frames: Vec<Bytes>) -> std::io::Result<()> {
        for frame in frames {
            self.0
                .feed(Message::Binary(frame))
                .await
                .map_err(std::io::Error::other)?;
        }
        self.0.flush().await.map_err(std::io::Error::other)
    }

    async fn close(&mut self) {
        let _ = self.0.close().await;
    }
}

/// An HTTP API failure: a status and a JSON body naming the wire error code.
#[derive(Debug)]
pub(crate) struct ApiError {
    status: StatusCode,
    code: &'static str,
    message: String,
}

impl ApiError {
    fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
        }
    }

    fn from_wire(code: ErrorCode, message: &str) -> Self {
        let status = match code {
            ErrorCode::INVALID_REQUEST => StatusCode::BAD_REQUEST,
            ErrorCode::NOT_FOUND => StatusCode::NOT_FOUND,
            ErrorCode::FORBIDDEN => StatusCode::FORBIDDEN,
            ErrorCode::PAYLOAD_TOO_LARGE => StatusCode::PAYLOAD_TOO_LARGE,
            ErrorCode::DUPLICATE_MISMATCH | ErrorCode::CONFLICT => StatusCode::CONFLICT,
            ErrorCode::RATE_LIMITED => StatusCode::TOO_MANY_REQUESTS,
            ErrorCode::UNAVAILABLE | ErrorCode::WRONG_OWNER => StatusCode::SERVICE_UNAVAILABLE,
            _ => StatusCode::INTERNAL_SERVER_ERROR,
        };
        Self::new(status, code.name().unwrap_or("UNKNOWN"), message)
    }

    fn unavailable() -> Self {
        Self::from_wire(ErrorCode::UNAVAILABLE, "broker unreachable")
    }

    pub(crate) fn invalid(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "INVALID_REQUEST", message)
    }

    pub(crate) fn internal(message: impl Into<String>) -> Self {
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, "INTERNAL_ERROR", message)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = serde_json::json!({ "error": self.code, "message": self.message });
        (self.status, Json(body)).into_response()
    }
}

/// Checks the bearer key before anything of the request is looked at, so an unauthenticated
/// caller learns nothing, not even parse errors; keys are compared in constant time.
pub(crate) fn authorize(hub: &Hub, headers: &HeaderMap) -> Result<(), ApiError> {
    let presented = headers
        .get(header::AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.strip_prefix("Bearer "))
        .map(|key| Sha256::digest(key.as_bytes()));
    let known = presented.is_some_and(|presented| {
        // Every key is compared, with no early exit, on fixed-length digests.
        hub.config.api_keys.iter().fold(false, |found, known| {
            let known = Sha256::digest(known.as_bytes());
            let differing = known
                .iter()
                .zip(presented.iter())
                .fold(0u8, |acc, (a, b)| acc | (a ^ b));
            found | (differing == 0)
        })
    });
    if known {
        Ok(())
    } else {
        Err(ApiError::new(
            StatusCode::UNAUTHORIZED,
            "UNAUTHENTICATED",
            "missing or unknown API key",
        ))
    }
}

/// Parses a JSON body, after [`authorize`]; any Content-Type is accepted.
fn parse_json<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, ApiError> {
    serde_json::from_slice(body).map_err(|error| ApiError::invalid(format!("body: {error}")))
}

/// Parses a query string, after [`authorize`].
pub(crate) fn parse_query<T: serde::de::DeserializeOwned>(
    query: Result<Query<T>, QueryRejection>,
) -> Result<T, ApiError> {
    query
        .map(|Query(query)| query)
        .map_err(|rejection| ApiError::invalid(rejection.body_text()))
}

/// Refuses a user id the protocol would refuse, naming the rule.
fn check_user(field: &str, user: &str) -> Result<(), ApiError> {
    match natter_codec::ids::user_id_problem(user) {
        Some(problem) => Err(ApiError::invalid(format!("{field}: {problem}"))),
        None => Ok(()),
    }
}

/// The request id the API uses on its one-off sessions.
const API_REQUEST: u64 = 1;

/// Sends one request for `user` to the broker owning `destination` and awaits its answer.
/// Pushes that may precede the answer (the RECEIPTs before a newest history page,
/// NWP-7.4-4) are skipped.
async fn call(
    hub: &Hub,
    destination: Destination,
    user: &str,
    frame: Frame,
) -> Result<Frame, ApiError> {
    let broker = hub
        .router
        .broker_for(&destination, user)
        .ok_or_else(ApiError::unavailable)?;
    let raw = frame
        .to_bytes()
        .map_err(|error| ApiError::invalid(error.to_string()))?;
    let (session, mut answers) = hub.waiter();
    let answer = async {
        if !hub.route(broker, session, user, API_DEVICE, raw) {
            return Err(ApiError::unavailable());
        }
        let deadline =
            tokio::time::Instant::now() + Duration::from_millis(hub.config.timing.open_timeout_ms);
        loop {
            let raw = tokio::time::timeout_at(deadline, answers.recv())
                .await
                .ok()
                .flatten()
                .ok_or_else(ApiError::unavailable)?;
            let frame = Frame::decode(raw)
                .map_err(|_| ApiError::from_wire(ErrorCode::INTERNAL_ERROR, "bad answer"))?;
            if frame.request() == Some(API_REQUEST) {
                return Ok(frame);
            }
        }
    }
    .await;
    hub.forget_waiter(session);
    match answer? {
        Frame::Error(error) => Err(ApiError::from_wire(error.code, &error.message)),
        frame => Ok(frame),
    }
}

/// The body of `POST /v1/messages`.
#[derive(Debug, Deserialize)]
struct SendRequest {
    conversation: String,
    sender: String,
    #[serde(default)]
    content_type: String,
    #[serde(default)]
    body: Option<String>,
    #[serde(default)]
    body_base64: Option<String>,
}

/// The answer of `POST /v1/messages`.
#[derive(Debug, Serialize)]
struct SendResponse {
    conversation: String,
    seq: u64,
    timestamp: u64,
    duplicate: bool,
}

/// The client_msg_id derived from an Idempotency-Key: the first 62 bits of its SHA-256.
fn client_msg_id(key: &str) -> u64 {
    let digest = Sha256::digest(key.as_bytes());
    let mut first = [0; 8];
    first.copy_from_slice(&digest[..8]);
    (u64::from_be_bytes(first) >> 2).max(1)
}

async fn send_message(
    State(app): State<App>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Json<SendResponse>, ApiError> {
    authorize(&app.hub, &headers)?;
    let request: SendRequest = parse_json(&body)?;
    let key = headers
        .get("idempotency-key")
        .and_then(|value| value.to_str().ok())
        .filter(|key| !key.is_empty())
        .ok_or_else(|| {
            ApiError::new(
                StatusCode::BAD_REQUEST,
                "INVALID_REQUEST",
                "Idempotency-Key header is required",
            )
        })?;
    let body = match (request.body, request.body_base64) {
        (Some(text), None) => Bytes::from(text),
        (None, Some(encoded)) => STANDARD.decode(encoded).map(Bytes::from).map_err(|_| {
            ApiError::new(
                StatusCode::BAD_REQUEST,
                "INVALID_REQUEST",
                "body_base64 is not base64",
            )
        })?,
        _ => {
            return Err(ApiError::new(
                StatusCode::BAD_REQUEST,
                "INVALID_REQUEST",
                "give exactly one of body and body_base64",
            ));
        }
    };
    check_user("sender", &request.sender)?;
    let send = Send {
        request: API_REQUEST,
        conversation: request.conversation.as_str().into(),
        client_msg_id: client_msg_id(key),
        kind: EventKind::MESSAGE,
        target: 0,
        content_type: request.content_type.as_str().into(),
        body,
    };
    let destination = Destination::Conversation(request.conversation.clone());
    match call(&app.hub, destination, &request.sender, send.into()).await? {
        Frame::SendAck(ack) => Ok(Json(SendResponse {
            conversation: request.conversation,
            seq: ack.seq,
            timestamp: ack.timestamp,
            duplicate: ack.duplicate,
        })),
        _ => Err(ApiError::from_wire(
            ErrorCode::INTERNAL_ERROR,
            "unexpected answer",
        )),
    }
}

/// The query of `GET /v1/history`.
#[derive(Debug, Deserialize)]
struct HistoryQuery {
    conversation: String,
    user: String,
    #[serde(default)]
    anchor: u64,
    #[serde(default)]
    direction: Option<String>,
    #[serde(default = "default_limit")]
    limit: u64,
}

fn default_limit() -> u64 {
    50
}

/// One event in JSON.
#[derive(Debug, Serialize)]
struct EventJson {
    seq: u64,
    kind: String,
    target: u64,
    deleted: bool,
    edited: bool,
    timestamp: u64,
    sender: String,
    device: String,
    client_msg_id: u64,
    content_type: String,
    body_base64: String,
    body: Option<String>,
}

impl From<Event> for EventJson {
    fn from(event: Event) -> Self {
        use natter_codec::types::EventFlags;
        Self {
            seq: event.seq,
            kind: event.kind.to_string(),
            target: event.target,
            deleted: event.flags.contains(EventFlags::DELETED),
            edited: event.flags.contains(EventFlags::EDITED),
            timestamp: event.timestamp,
            sender: event.sender.to_string(),
            device: event.device.to_string(),
            client_msg_id: event.client_msg_id,
            content_type: event.content_type.to_string(),
            body_base64: STANDARD.encode(&event.body),
            body: std::str::from_utf8(&event.body).ok().map(str::to_string),
        }
    }
}

async fn history(
    State(app): State<App>,
    headers: HeaderMap,
    query: Result<Query<HistoryQuery>, QueryRejection>,
) -> Result<Response, ApiError> {
    authorize(&app.hub, &headers)?;
    let query = parse_query(query)?;
    check_user("user", &query.user)?;
    let direction = match query.direction.as_deref() {
        None | Some("backward") => Direction::BACKWARD,
        Some("forward") => Direction::FORWARD,
        Some(_) => {
            return Err(ApiError::new(
                StatusCode::BAD_REQUEST,
                "INVALID_REQUEST",
                "direction is backward or forward",
            ));
        }
    };
    let request = History {
        request: API_REQUEST,
        conversation: query.conversation.as_str().into(),
        anchor: query.anchor,
        direction,
        limit: query.limit,
    };
    let destination = Destination::Conversation(query.conversation.clone());
    match call(&app.hub, destination, &query.user, request.into()).await? {
        Frame::HistoryPage(page) => {
            let events: Vec<EventJson> = page.events.into_iter().map(EventJson::from).collect();
            let body = serde_json::json!({
                "conversation": query.conversation,
                "more": page.more,
                "events": events,
            });
            Ok(Json(body).into_response())
        }
        _ => Err(ApiError::from_wire(
            ErrorCode::INTERNAL_ERROR,
            "unexpected answer",
        )),
    }
}

/// The query of `GET /v1/presence`.
#[derive(Debug, Deserialize)]
struct PresenceQuery {
    user: String,
}

async fn presence(
    State(app): State<App>,
    headers: HeaderMap,
    query: Result<Query<PresenceQuery>, QueryRejection>,
) -> Result<Response, ApiError> {
    authorize(&app.hub, &headers)?;
    let query = parse_query(query)?;
    check_user("user", &query.user)?;
    let hub = &app.hub;
    let broker = hub
        .router
        .home(&query.user)
        .ok_or_else(ApiError::unavailable)?;
    let (session, mut answers) = hub.waiter();
    let interest = |ttl_ms| Interest {
        node: hub.config.node_id.as_str().into(),
        session,
        ttl_ms,
        users: vec![query.user.as_str().into()],
        // An edge's own lookup: no conversation (NWP-9.6-3); the API key grants visibility.
        conversation: "".into(),
    };
    // A short interest makes the home broker send the current PRESENCE at once.
    let answer = async {
        if !hub.send_to(broker, interest(1_000).into()) {
            return Err(ApiError::unavailable());
        }
        let timeout = Duration::from_millis(hub.config.timing.open_timeout_ms);
        loop {
            let raw = tokio::time::timeout(timeout, answers.recv())
                .await
                .ok()
                .flatten()
                .ok_or_else(ApiError::unavailable)?;
            if let Ok(Frame::Presence(presence)) = Frame::decode(raw) {
                return Ok(presence);
            }
        }
    }
    .await;
    hub.send_to(broker, interest(0).into());
    hub.forget_waiter(session);
    let presence = answer?;
    let status = match presence.status {
        Status::ONLINE => "online",
        Status::OFFLINE => "offline",
        _ => "unknown",
    };
    let body = serde_json::json!({
        "user": presence.user.to_string(),
        "status": status,
        "last_seen": presence.last_seen,
    });
    Ok(Json(body).into_response())
}

/// The body of `POST /v1/dev/token`.
#[derive(Debug, Deserialize)]
struct DevTokenRequest {
    user: String,
    #[serde(default)]
    device: Option<String>,
}

fn dev_allowed(hub: &Hub, peer: SocketAddr) -> bool {
    hub.config.dev && peer.ip().is_loopback()
}

async fn dev_token(
    State(app): State<App>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    body: Bytes,
) -> Result<Response, ApiError> {
    if !dev_allowed(&app.hub, peer) {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "NOT_FOUND",
            "dev mode is off",
        ));
    }
    let request: DevTokenRequest = parse_json(&body)?;
    let device = request
        .device
        .unwrap_or_else(|| format!("web-{:04x}", rand::random::<u16>()));
    check_user("user", &request.user)?;
    if !natter_codec::ids::is_valid_device_id(&device) {
        return Err(ApiError::invalid(
            "device: 1 to 64 bytes, without white space or '/' (NWP-2.3-1)",
        ));
    }
    let expires_at = now_ms() + DEV_TOKEN_TTL_MS;
    let token = app.hub.keys.mint(&request.user, &device, expires_at);
    let body = serde_json::json!({
        "token": token,
        "user": request.user,
        "device": device,
        "expires_at": expires_at,
    });
    Ok(Json(body).into_response())
}

async fn dev_page(State(app): State<App>, ConnectInfo(peer): ConnectInfo<SocketAddr>) -> Response {
    if !dev_allowed(&app.hub, peer) {
        return (StatusCode::NOT_FOUND, "dev mode is off\n").into_response();
    }
    Html(DEV_PAGE).into_response()
}

const DEV_PAGE: &str = r#"<!doctype html>
<meta charset="utf-8">
<title>natter dev token</title>
<h1>natter dev token</h1>
<p>Dev mode only: anyone on this machine can be anyone.</p>
<form id="f"><input id="user" placeholder="user name" required> <button>Get token</button></form>
<pre id="out"></pre>
<script>
document.getElementById("f").onsubmit = async (e) => {
  e.preventDefault();
  const r = await fetch("/v1/dev/token", {method: "POST", headers: {"content-type": "application/json"},
    body: JSON.stringify({user: document.getElementById("user").value})});
  document.getElementById("out").textContent = JSON.stringify(await r.json(), null, 2);
};
</script>
"#;

/// Serves the web client's build from `web_dir`; `/` is `index.html`.
async fn static_file(State(app): State<App>, uri: Uri) -> Response {
    let Some(root) = app.hub.config.web_dir.as_deref() else {
        return (StatusCode::NOT_FOUND, "no web client configured\n").into_response();
    };
    let Some(path) = resolve(root, uri.path()) else {
        return StatusCode::NOT_FOUND.into_response();
    };
    match tokio::fs::read(&path).await {
        Ok(contents) => ([(header::CONTENT_TYPE, content_type(&path))], contents).into_response(),
        Err(_) => StatusCode::NOT_FOUND.into_response(),
    }
}

/// Maps a URL path under `root`, refusing anything that could climb out of it.
fn resolve(root: &Path, url_path: &str) -> Option<PathBuf> {
    let relative = Path::new(url_path.trim_start_matches('/'));
    if !relative
        .components()
        .all(|c| matches!(c, Component::Normal(_)))
    {
        return None;
    }
    let path = root.join(relative);
    Some(
        if url_path.ends_with('/') || relative.as_os_str().is_empty() {
            path.join("index.html")
        } else {
            path
        },
    )
}

fn content_type(path: &Path) -> &'static str {
    match path.extension().and_then(|ext| ext.to_str()) {
        Some("html") => "text/html; charset=utf-8",
        Some("js" | "mjs") => "text/javascript; charset=utf-8",
        Some("css") => "text/css; charset=utf-8",
        Some("json" | "map") => "application/json",
        Some("svg") => "image/svg+xml",
        Some("png") => "image/png",
        Some("ico") => "image/x-icon",
        Some("wasm") => "application/wasm",
        _ => "application/octet-stream",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn static_paths_stay_under_the_root() {
        let root = Path::new("/srv/web");
        assert_eq!(
            resolve(root, "/"),
            Some(PathBuf::from("/srv/web/index.html"))
        );
        assert_eq!(
            resolve(root, "/app.js"),
            Some(PathBuf::from("/srv/web/app.js"))
        );
        assert_eq!(resolve(root, "/../etc/passwd"), None);
        assert_eq!(resolve(root, "/a/./b"), Some(PathBuf::from("/srv/web/a/b")));
    }

    #[test]
    fn idempotency_keys_map_to_stable_valid_ids() {
        let id = client_msg_id("order-42");
        assert_eq!(id, client_msg_id("order-42"));
        assert_ne!(id, client_msg_id("order-43"));
        assert!(id > 0 && id < 1 << 62);
    }
}
