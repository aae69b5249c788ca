//! The HTTP door (`weir serve --http-listen`): a JSON API for services without a weir client,
//! Prometheus metrics at `/metrics`, the OpenAPI description at `/openapi.json`, and the web
//! console at `/`. Like the Kafka door it only translates: each route turns its request into
//! broker [`Command`]s, which [`Broker::execute`] checks against the caller's grants and runs.
//!
//! Tokens arrive as `Authorization: Bearer …` (or `?access_token=` where a browser cannot set
//! headers); TLS, the connection limit and the token file are the native door's. Bodies are
//! bounded, every request has a deadline (long polls are capped below it), and every client
//! mistake is a 4xx with a JSON body `{"error": {"kind", "message"}}` saying what to fix.

use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::extract::rejection::{JsonRejection, PathRejection, QueryRejection};
use axum::extract::{FromRequestParts, Request, State};
use axum::http::request::Parts;
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc, watch};
use tokio_rustls::TlsAcceptor;
use tokio_util::either::Either;

mod admin;
mod api;
mod console;
mod int;
mod records;
mod registry;
mod stream;

use super::{Security, ServerLimits};
use crate::auth::Identity;
use crate::broker::{Broker, BrokerError, Command, ErrorKind, Reply};

/// Limits of the HTTP door.
#[derive(Debug, Clone, Copy)]
pub struct HttpSettings {
    /// Largest request body, bytes.
    pub max_body_bytes: usize,
    /// How long a request may take; long polls are capped a second below it.
    pub request_timeout: Duration,
}

impl Default for HttpSettings {
    fn default() -> Self {
        HttpSettings {
            max_body_bytes: crate::limits::HTTP_MAX_BODY_BYTES,
            request_timeout: Duration::from_millis(crate::limits::HTTP_REQUEST_TIMEOUT_MS),
        }
    }
}

/// What every handler shares.
#[derive(Clone)]
struct App {
    broker: Arc<Broker>,
    settings: HttpSettings,
    /// Set when the server stops: event streams end so shutdown is not held up.
    closing: watch::Receiver<bool>,
}

impl App {
    /// Execute `command` as `caller`: the broker checks the grants and runs it.
    async fn run(&self, caller: &Caller, command: Command) -> Result<Reply, ApiError> {
        Ok(self.broker.execute(caller.who.as_ref(), command).future.await?)
    }

    /// The longest a long poll may wait within the request deadline.
    fn max_wait(&self) -> Duration {
        self.settings.request_timeout.saturating_sub(Duration::from_secs(1))
    }
}

/// Serve HTTP on `listener` until `shutdown` resolves.
pub async fn run(
    listener: TcpListener,
    broker: Arc<Broker>,
    limits: ServerLimits,
    security: Security,
    settings: HttpSettings,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let (closing_tx, closing) = watch::channel(false);
    let app = App { broker, settings, closing };
    let (router, postless) = api::router(app.clone());
    let postless: Arc<Vec<String>> = Arc::new(postless);
    let router = router
        .layer(axum::middleware::from_fn_with_state(postless, json_posts_only))
        .layer(axum::middleware::from_fn_with_state(app.clone(), deadline))
        .layer(axum::extract::DefaultBodyLimit::max(settings.max_body_bytes));
    let doorway = Doorway::start(listener, security.tls.map(TlsAcceptor::from), limits)?;
    axum::serve(doorway, router.into_make_service())
        .with_graceful_shutdown(async move {
            shutdown.await;
            let _ = closing_tx.send(true);
        })
        .await
}

/// Every request within the deadline; a handler that overruns it answers 503.
async fn deadline(State(app): State<App>, request: Request, next: Next) -> Response {
    let limit = app.settings.request_timeout;
    match tokio::time::timeout(limit, next.run(request)).await {
        Ok(response) => response,
        Err(_) => ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "Timeout",
            format!(
                "the request took longer than the server's limit of {} ms; ask for less or retry",
                limit.as_millis()
            ),
        )
        .into_response(),
    }
}

/// The JSON media types a POST may carry: JSON, and the schema registry's (Confluent's
/// clients send theirs). A browser sends none of them cross-site without a preflight.
const JSON_TYPES: [&str; 3] =
    ["application/json", "application/vnd.schemaregistry.v1+json", "application/vnd.schemaregistry+json"];

/// Refuse a POST that is not JSON. Every POST route takes JSON, and a browser sends a
/// cross-site JSON request only after a preflight this server never answers: so a web page
/// elsewhere cannot make a visitor's browser pause a pipeline or replay dead letters on a
/// server without tokens.
///
/// A path that takes no POST at all (its OpenAPI item has none) is let through, so the router
/// answers 405 with the methods it does take, as HTTP says.
async fn json_posts_only(State(postless): State<Arc<Vec<String>>>, request: Request, next: Next) -> Response {
    let json = request.headers().get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).is_some_and(|v| {
        v.split(';').next().is_some_and(|t| JSON_TYPES.iter().any(|j| t.trim().eq_ignore_ascii_case(j)))
    });
    let refuse = request.method() == axum::http::Method::POST
        && !json
        && !postless.iter().any(|t| matches_template(t, request.uri().path()));
    if refuse {
        return ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "InvalidArgument",
            "POST requests must send `Content-Type: application/json` (with a body of `{}` where there is nothing to say)"
                .to_string(),
        )
        .into_response();
    }
    next.run(request).await
}

/// Whether `path` is an instance of the OpenAPI template `template` (`{name}` matches one
/// segment).
fn matches_template(template: &str, path: &str) -> bool {
    let (t, p): (Vec<&str>, Vec<&str>) = (template.split('/').collect(), path.split('/').collect());
    t.len() == p.len()
        && t.iter().zip(&p).all(|(t, p)| (t.starts_with('{') && t.ends_with('}') && !p.is_empty()) || t == p)
}

/// The caller: its identity (`None` on a server without tokens), and the token and token-set
/// generation it was found with, so a long-lived stream can look it up again after a reload.
#[derive(Clone)]
pub(super) struct Caller {
    who: Option<Arc<Identity>>,
    token: Option<String>,
    generation: u64,
}

impl Caller {
    /// The caller as of the token set in force now (a reload may have revoked the token).
    fn refreshed(&self, app: &App) -> Result<Caller, ApiError> {
        let authority = &app.broker.authority;
        let generation = authority.generation();
        if generation == self.generation {
            return Ok(self.clone());
        }
        let who = authority.identify(self.token.as_deref()).map_err(|e| {
            unauthenticated(&format!("{e}: the server's token file changed and no longer holds this token"))
        })?;
        Ok(Caller { who, token: self.token.clone(), generation })
    }
}

impl FromRequestParts<App> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, app: &App) -> Result<Caller, ApiError> {
        let authority = &app.broker.authority;
        let generation = authority.generation();
        if !authority.is_enforced() {
            return Ok(Caller { who: None, token: None, generation });
        }
        let token = match parts.headers.get(header::AUTHORIZATION) {
            Some(v) => Some(header_token(v).ok_or_else(|| {
                unauthenticated(
                    "the Authorization header must be `Bearer TOKEN` (or Basic with the token as the password)",
                )
            })?),
            None => query_token(parts.uri.query()),
        };
        let Some(token) = token else {
            return Err(unauthenticated(
                "this server requires a token: send `Authorization: Bearer TOKEN` (or ?access_token=TOKEN)",
            ));
        };
        match authority.identify(Some(&token)) {
            Ok(who) => Ok(Caller { who, token: Some(token), generation }),
            Err(e) => Err(unauthenticated(&e.to_string())),
        }
    }
}

/// The token of an `Authorization` header: `Bearer TOKEN`, or `Basic` with the token as the
/// password (what Confluent's schema registry clients send: `basic.auth.user.info`).
fn header_token(v: &HeaderValue) -> Option<String> {
    use base64::Engine;
    let v = v.to_str().ok()?;
    if let Some(token) = v.strip_prefix("Bearer ") {
        return Some(token.trim().to_string());
    }
    let decoded = base64::engine::general_purpose::STANDARD.decode(v.strip_prefix("Basic ")?.trim()).ok()?;
    let (_, password) =
        String::from_utf8(decoded).ok()?.split_once(':').map(|(u, p)| (u.to_string(), p.to_string()))?;
    Some(password)
}

fn query_token(query: Option<&str>) -> Option<String> {
    query?.split('&').find_map(|kv| kv.strip_prefix("access_token=")).map(|t| {
        // Tokens are printable ASCII; only %-escapes need undoing.
        percent_decode(t)
    })
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: u8| (b as char).to_digit(16);
        match bytes[i] {
            b'%' if i + 2 < bytes.len() => match (hex(bytes[i + 1]), hex(bytes[i + 2])) {
                (Some(h), Some(l)) => {
                    out.push((h * 16 + l) as u8);
                    i += 3;
                    continue;
                }
                _ => out.push(b'%'),
            },
            b'+' => out.push(b' '),
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn unauthenticated(why: &str) -> ApiError {
    ApiError::new(StatusCode::UNAUTHORIZED, "Unauthenticated", why.to_string())
}

/// A client-facing error: status, kind and a message that says what to fix.
#[derive(Debug)]
pub(super) struct ApiError {
    status: StatusCode,
    kind: String,
    message: String,
}

/// The body of every error response.
#[derive(Serialize, utoipa::ToSchema)]
pub(super) struct ErrorBody {
    error: ErrorDetail,
}

/// What went wrong.
#[derive(Serialize, utoipa::ToSchema)]
pub(super) struct ErrorDetail {
    /// The kind of failure, e.g. `UnknownTopic`, `InvalidArgument`, `Forbidden`.
    kind: String,
    /// What went wrong, with what, and what to do.
    message: String,
}

impl ApiError {
    fn new(status: StatusCode, kind: &str, message: String) -> ApiError {
        ApiError { status, kind: kind.to_string(), message }
    }

    /// 400 with `message`.
    fn bad_request(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::BAD_REQUEST, "InvalidArgument", message.into())
    }

    fn not_found(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::NOT_FOUND, "NotFound", message.into())
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = ErrorBody { error: ErrorDetail { kind: self.kind, message: self.message } };
        let mut response = (self.status, axum::Json(body)).into_response();
        if self.status == StatusCode::UNAUTHORIZED {
            response.headers_mut().insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        response
    }
}

impl From<BrokerError> for ApiError {
    fn from(e: BrokerError) -> ApiError {
        let kind = e.kind();
        ApiError::new(status(kind), &format!("{kind:?}"), e.to_string())
    }
}

/// The HTTP status of each kind of failure: 4xx for what the client can fix, 5xx for ours.
fn status(kind: ErrorKind) -> StatusCode {
    use ErrorKind as K;
    match kind {
        K::InvalidArgument | K::InconsistentProtocol | K::OutOfOrderSequence => StatusCode::BAD_REQUEST,
        K::Unauthenticated => StatusCode::UNAUTHORIZED,
        K::Forbidden | K::ProducerFenced => StatusCode::FORBIDDEN,
        K::UnknownTopic
        | K::UnknownPlugin
        | K::UnknownPipeline
        | K::UnknownQueue
        | K::UnknownExchange
        | K::NotFound => StatusCode::NOT_FOUND,
        K::TopicExists
        | K::PipelineExists
        | K::AlreadyExists
        | K::InUse
        | K::DuplicateSequence
        | K::Rebalanced
        | K::RebalanceInProgress
        | K::StaleReceipt => StatusCode::CONFLICT,
        K::MessageTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
        K::InvalidPlugin | K::PluginInit | K::Unroutable | K::InvalidRecord => StatusCode::UNPROCESSABLE_ENTITY,
        K::Busy | K::QueueFull => StatusCode::TOO_MANY_REQUESTS,
        K::Timeout => StatusCode::GATEWAY_TIMEOUT,
        K::ShuttingDown => StatusCode::SERVICE_UNAVAILABLE,
        K::DiskFull => StatusCode::INSUFFICIENT_STORAGE,
        K::Storage | K::Internal => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

impl From<JsonRejection> for ApiError {
    fn from(r: JsonRejection) -> ApiError {
        let hint = match &r {
            JsonRejection::JsonSyntaxError(_) => "; the body must be valid JSON",
            JsonRejection::JsonDataError(_) => "; see /openapi.json for the body's fields",
            _ => "",
        };
        let status = r.status();
        let kind = if status == StatusCode::PAYLOAD_TOO_LARGE { "MessageTooLarge" } else { "InvalidArgument" };
        ApiError::new(status, kind, format!("{}{hint}", r.body_text()))
    }
}

impl From<QueryRejection> for ApiError {
    fn from(r: QueryRejection) -> ApiError {
        ApiError::bad_request(format!("{}; see /openapi.json for the parameters", r.body_text()))
    }
}

impl From<PathRejection> for ApiError {
    fn from(r: PathRejection) -> ApiError {
        ApiError::bad_request(r.body_text())
    }
}

/// A JSON object body whose rejections are JSON errors: not JSON is a 400, JSON of another
/// shape a 422. (serde would read a struct from an array too; the document says object.)
pub(super) struct Body<T>(T);

impl<S: Send + Sync, T: serde::de::DeserializeOwned> axum::extract::FromRequest<S> for Body<T> {
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &S) -> Result<Self, ApiError> {
        let bytes = axum::body::Bytes::from_request(request, state).await.map_err(unread)?;
        parse_object(&bytes).map(Body)
    }
}

/// A body that could not be read: too large (413, `MessageTooLarge`), or cut off.
fn unread(e: axum::extract::rejection::BytesRejection) -> ApiError {
    let kind = if e.status() == StatusCode::PAYLOAD_TOO_LARGE { "MessageTooLarge" } else { "InvalidArgument" };
    ApiError::new(e.status(), kind, e.body_text())
}

/// `bytes` as a JSON object of type `T`.
fn parse_object<T: serde::de::DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    if bytes.iter().find(|b| !b.is_ascii_whitespace()) != Some(&b'{') {
        return Err(ApiError::bad_request("the body must be a JSON object; see /openapi.json"));
    }
    serde_json::from_slice(bytes).map_err(|e| match e.is_data() {
        true => ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "InvalidArgument",
            format!("the body is JSON, but not of this request's shape: {e}; see /openapi.json"),
        ),
        false => ApiError::bad_request(format!("the body is not valid JSON: {e}")),
    })
}

/// A JSON body that may be left out (then every field takes its default).
pub(super) struct OptionalBody<T>(T);

impl<S: Send + Sync, T: serde::de::DeserializeOwned + Default> axum::extract::FromRequest<S> for OptionalBody<T> {
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &S) -> Result<Self, ApiError> {
        let bytes = axum::body::Bytes::from_request(request, state).await.map_err(unread)?;
        if bytes.iter().all(u8::is_ascii_whitespace) {
            return Ok(OptionalBody(T::default()));
        }
        parse_object(&bytes).map(OptionalBody)
    }
}

/// Query parameters whose rejections are JSON errors.
#[derive(axum::extract::FromRequestParts)]
#[from_request(via(axum::extract::Query), rejection(ApiError))]
pub(super) struct Params<T>(T);

/// Path segments whose rejections are JSON errors.
#[derive(axum::extract::FromRequestParts)]
#[from_request(via(axum::extract::Path), rejection(ApiError))]
pub(super) struct Segments<T>(T);

/// Accepts connections for axum: TLS handshakes run beside the accept loop (a client stalling
/// one holds no one else up), and each connection holds a slot of the connection limit until
/// it closes. Over the limit, a connection gets a 503 and is closed.
struct Doorway {
    ready: mpsc::Receiver<(Conn, SocketAddr)>,
    local: SocketAddr,
}

type Conn = Held<Either<TcpStream, tokio_rustls::server::TlsStream<TcpStream>>>;

impl Doorway {
    fn start(listener: TcpListener, tls: Option<TlsAcceptor>, limits: ServerLimits) -> std::io::Result<Doorway> {
        let local = listener.local_addr()?;
        let (tx, ready) = mpsc::channel(64);
        let slots = Arc::new(Semaphore::new(limits.max_connections));
        let refusals = Arc::new(Semaphore::new(crate::limits::REFUSALS_IN_FLIGHT));
        tokio::spawn(async move {
            loop {
                let (stream, peer) = match listener.accept().await {
                    Ok(a) => a,
                    Err(e) => {
                        tracing::warn!(error = %e, "accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                };
                let _ = stream.set_nodelay(true);
                let Ok(slot) = slots.clone().try_acquire_owned() else {
                    // Beyond the refusals in flight, a connection is closed unanswered.
                    if let Ok(refusing) = refusals.clone().try_acquire_owned() {
                        tokio::spawn(async move {
                            refuse(stream, limits.max_connections).await;
                            drop(refusing);
                        });
                    }
                    continue;
                };
                let (ready, tls) = (tx.clone(), tls.clone());
                tokio::spawn(async move {
                    let io = match tls {
                        None => Either::Left(stream),
                        Some(tls) => match tokio::time::timeout(limits.frame_timeout, tls.accept(stream)).await {
                            Ok(Ok(s)) => Either::Right(s),
                            _ => return,
                        },
                    };
                    let _ = ready.send((Held::new(io, slot, limits.write_timeout), peer)).await;
                });
                if tx.is_closed() {
                    return;
                }
            }
        });
        Ok(Doorway { ready, local })
    }
}

impl axum::serve::Listener for Doorway {
    type Io = Conn;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Conn, SocketAddr) {
        match self.ready.recv().await {
            Some(c) => c,
            None => std::future::pending().await,
        }
    }

    fn local_addr(&self) -> std::io::Result<SocketAddr> {
        Ok(self.local)
    }
}

/// A plaintext 503 for a connection over the limit.
async fn refuse(mut stream: TcpStream, max: usize) {
    use tokio::io::AsyncWriteExt;
    let body = format!(
        "{{\"error\":{{\"kind\":\"Busy\",\"message\":\"the server has reached its limit of {max} connections; retry later\"}}}}"
    );
    let response = format!(
        "HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    );
    let _ = tokio::time::timeout(Duration::from_secs(1), stream.write_all(response.as_bytes())).await;
}

/// An I/O stream holding a connection slot until it is dropped, and closed when it makes no
/// progress either way for `idle` (the server's write timeout): a client that sends nothing,
/// or stops reading a response or an event stream, gives its slot back. Event streams send
/// a keep-alive comment every 15 s, and long polls answer within the request deadline, so
/// live connections always make progress in time.
struct Held<T> {
    io: T,
    _slot: OwnedSemaphorePermit,
    idle: Duration,
    deadline: Pin<Box<tokio::time::Sleep>>,
}

impl<T> Held<T> {
    fn new(io: T, slot: OwnedSemaphorePermit, idle: Duration) -> Held<T> {
        Held { io, _slot: slot, idle, deadline: Box::pin(tokio::time::sleep(idle)) }
    }

    /// Progress: the idle clock starts again.
    fn touch(&mut self) {
        let at = tokio::time::Instant::now() + self.idle;
        self.deadline.as_mut().reset(at);
    }

    /// A pending operation: an error once the connection has been idle too long.
    fn stalled<R>(&mut self, cx: &mut Context<'_>) -> Poll<std::io::Result<R>> {
        match self.deadline.as_mut().poll(cx) {
            Poll::Ready(()) => Poll::Ready(Err(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                "no progress on the connection within the write timeout",
            ))),
            Poll::Pending => Poll::Pending,
        }
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for Held<T> {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        match Pin::new(&mut self.io).poll_read(cx, buf) {
            Poll::Pending => self.stalled(cx),
            ready => {
                if buf.filled().len() > before {
                    self.touch();
                }
                ready
            }
        }
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Held<T> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<std::io::Result<usize>> {
        match Pin::new(&mut self.io).poll_write(cx, buf) {
            Poll::Pending => self.stalled(cx),
            ready => {
                self.touch();
                ready
            }
        }
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match Pin::new(&mut self.io).poll_flush(cx) {
            Poll::Pending => self.stalled(cx),
            ready => ready,
        }
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_tokens_are_percent_decoded() {
        assert_eq!(query_token(Some("a=1&access_token=ab%2Bc")), Some("ab+c".to_string()));
        assert_eq!(query_token(Some("access_token=plain")), Some("plain".to_string()));
        assert_eq!(query_token(Some("x=1")), None);
        assert_eq!(percent_decode("100%"), "100%");
    }

    #[test]
    fn client_mistakes_are_4xx_and_ours_5xx() {
        assert_eq!(status(ErrorKind::UnknownTopic), StatusCode::NOT_FOUND);
        assert_eq!(status(ErrorKind::Forbidden), StatusCode::FORBIDDEN);
        assert_eq!(status(ErrorKind::MessageTooLarge), StatusCode::PAYLOAD_TOO_LARGE);
        assert_eq!(status(ErrorKind::Internal), StatusCode::INTERNAL_SERVER_ERROR);
    }
}

#[cfg(test)]
mod template_tests {
    use super::matches_template;

    #[test]
    fn a_template_matches_one_segment_per_parameter() {
        assert!(matches_template("/api/v1/queues", "/api/v1/queues"));
        assert!(matches_template("/api/v1/queues/{queue}", "/api/v1/queues/jobs"));
        assert!(!matches_template("/api/v1/queues/{queue}", "/api/v1/queues/jobs/send"));
        assert!(!matches_template("/api/v1/queues/{queue}", "/api/v1/queues/"));
        assert!(!matches_template("/api/v1/queues", "/api/v1/groups"));
    }
}
