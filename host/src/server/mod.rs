//! The TCP server: accepts connections, decodes frames, hands requests to the broker in
//! arrival order, and writes responses back as they complete.
//!
//! Bounded per the limits: connections (a semaphore; excess connections get a `Busy` error
//! frame and are closed), frame size (codec), requests in flight per connection (the reader
//! stops reading until responses drain), the time a frame may take to arrive once started
//! (slow clients), and the time a response may take to be taken by the client.
//!
//! With a token file, `Hello` must carry a known token; the broker checks every request
//! against the token's current grants ([`crate::auth`]), and a token removed by a reload stops
//! working at the connection's next request. With a certificate, every connection is TLS
//! ([`crate::tls`]); the handshake shares the frame deadline, so a client cannot hold a slot by
//! stalling it. A response too large for a frame is replaced by an error frame saying so.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, mpsc, watch};
use tokio_rustls::TlsAcceptor;
use tokio_util::codec::{FramedRead, FramedWrite, LengthDelimitedCodec};

pub mod amqp;
mod convert;
pub mod http;
pub mod kafka;
mod native;

use weir_client::wire::{self, ErrorCode, Request, RequestFrame, Response, ResponseFrame, WireError};

use crate::auth::{Authority, Identity};
use crate::broker::{Broker, Execution};
use crate::limits;

/// Server limits.
#[derive(Debug, Clone, Copy)]
pub struct ServerLimits {
    /// Largest frame accepted.
    pub max_frame_bytes: usize,
    /// Concurrent connections.
    pub max_connections: usize,
    /// How long a frame may take to arrive once its first byte did.
    pub frame_timeout: Duration,
    /// How long a response may wait for the client to read it.
    pub write_timeout: Duration,
}

impl Default for ServerLimits {
    fn default() -> Self {
        ServerLimits {
            max_frame_bytes: limits::MAX_FRAME_BYTES,
            max_connections: limits::MAX_CONNECTIONS,
            frame_timeout: Duration::from_millis(limits::FRAME_TIMEOUT_MS),
            write_timeout: Duration::from_millis(limits::WRITE_TIMEOUT_MS),
        }
    }
}

/// How clients connect. (Who may do what is the broker's [`crate::auth::Authority`].)
#[derive(Clone, Default)]
pub struct Security {
    /// TLS for every connection (`--tls-cert`, `--tls-key`); `None` is plaintext.
    pub tls: Option<Arc<tokio_rustls::rustls::ServerConfig>>,
}

/// Which protocol a listener speaks.
#[derive(Clone)]
pub enum Door {
    /// weir's own protocol (the `weir` CLI and `weir-client`).
    Native,
    /// The Kafka protocol ([`kafka`]).
    Kafka(Arc<kafka::KafkaSettings>),
    /// AMQP 0-9-1, RabbitMQ's protocol ([`amqp`]).
    Amqp,
}

/// Serve `listener` until `shutdown` resolves, then stop accepting and let the broker drain.
/// Taking the listener (not an address) lets callers bind port 0.
pub async fn run(
    listener: TcpListener,
    broker: Arc<Broker>,
    limits: ServerLimits,
    security: Security,
    door: Door,
    shutdown: impl Future<Output = ()>,
) -> std::io::Result<()> {
    let tls = security.tls.map(TlsAcceptor::from);
    let connections = Arc::new(Semaphore::new(limits.max_connections));
    // Refusing costs a task (and under TLS a handshake): bounded too, beyond it we just close.
    let refusals = Arc::new(Semaphore::new(limits::REFUSALS_IN_FLIGHT));
    let (closing_tx, closing) = watch::channel(false);
    tokio::pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    // Out of file descriptors and the like: keep serving the others.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let _ = stream.set_nodelay(true);
        let Ok(permit) = connections.clone().try_acquire_owned() else {
            // A Kafka client has no frame to read a refusal from: it is just closed.
            if let (Door::Native, Ok(refusing)) = (&door, refusals.clone().try_acquire_owned()) {
                let tls = tls.clone();
                tokio::spawn(async move {
                    let timeout = Duration::from_millis(limits::REFUSAL_TIMEOUT_MS);
                    let _ = tokio::time::timeout(timeout, refuse(stream, tls, limits)).await;
                    drop(refusing);
                });
            }
            continue;
        };
        let (broker, closing, tls, door) = (broker.clone(), closing.clone(), tls.clone(), door.clone());
        tokio::spawn(async move {
            let conn = Connection { peer, broker, limits, closing };
            let served = match tls {
                None => {
                    let (rd, wr) = stream.into_split();
                    conn.serve(door, rd, wr).await
                }
                Some(tls) => match handshake(&tls, stream, limits.frame_timeout).await {
                    Ok(stream) => {
                        let (rd, wr) = tokio::io::split(stream);
                        conn.serve(door, rd, wr).await
                    }
                    Err(e) => Err(e),
                },
            };
            if let Err(e) = served {
                tracing::debug!(%peer, error = %e, "connection ended with an error");
            }
            drop(permit);
        });
    }
    let _ = closing_tx.send(true);
    Ok(())
}

/// The TLS handshake, within the frame deadline (a client that stalls it is cut off).
async fn handshake(
    tls: &TlsAcceptor,
    stream: TcpStream,
    timeout: Duration,
) -> std::io::Result<tokio_rustls::server::TlsStream<TcpStream>> {
    match tokio::time::timeout(timeout, tls.accept(stream)).await {
        Ok(Ok(stream)) => Ok(stream),
        Ok(Err(e)) => {
            tracing::info!(error = %e, "TLS handshake failed (a plaintext client, or one that does not trust our certificate?)");
            Err(e)
        }
        Err(_) => Err(std::io::Error::new(std::io::ErrorKind::TimedOut, "TLS handshake took too long")),
    }
}

/// Tell a client over the connection limit why it is refused.
async fn refuse(stream: TcpStream, tls: Option<TlsAcceptor>, limits: ServerLimits) {
    match tls {
        None => send_busy(stream, limits).await,
        Some(tls) => {
            if let Ok(stream) = handshake(&tls, stream, limits.frame_timeout).await {
                send_busy(stream, limits).await;
            }
        }
    }
}

async fn send_busy(stream: impl AsyncWrite + Unpin, limits: ServerLimits) {
    let mut framed = FramedWrite::new(stream, wire::codec(limits.max_frame_bytes));
    let err = WireError::new(
        ErrorCode::Busy,
        format!("the server has reached its limit of {} connections; retry later", limits.max_connections),
    );
    if let Ok(frame) = wire::encode(&ResponseFrame { id: 0, result: Err(err) }) {
        let _ = framed.send(frame).await;
    }
    let _ = SinkExt::<Bytes>::close(&mut framed).await;
}

/// SASL PLAIN (`[authzid] NUL user NUL password`), as the Kafka and AMQP doors take a
/// token: the password is the token, the user its name. The token and who it is, or why not.
pub(crate) fn sasl_plain(authority: &Authority, auth: &[u8]) -> Result<(String, Option<Arc<Identity>>), String> {
    let parts: Vec<&[u8]> = auth.split(|b| *b == 0).collect();
    let (user, password) = match parts.as_slice() {
        [_, user, password] => (String::from_utf8_lossy(user).into_owned(), String::from_utf8_lossy(password)),
        _ => (String::new(), "".into()),
    };
    match authority.identify(Some(password.as_ref())) {
        Ok(Some(identity)) if identity.name == user => Ok((password.into_owned(), Some(identity))),
        Ok(Some(_)) => Err(format!("the token does not belong to user `{user}`; the user is the token's name")),
        Ok(None) => Ok((password.into_owned(), None)),
        Err(e) => Err(e.to_string()),
    }
}

/// One client connection's context.
struct Connection {
    peer: SocketAddr,
    broker: Arc<Broker>,
    limits: ServerLimits,
    closing: watch::Receiver<bool>,
}

/// Who is on a connection: the token presented in `Hello`, and its identity as of the token
/// set's generation, looked up again when the set changes (a reload may revoke it).
struct Caller {
    token: Option<String>,
    identity: Result<Option<Arc<Identity>>, WireError>,
    generation: u64,
}

impl Caller {
    fn greet(authority: &Authority, token: Option<&str>) -> Result<Caller, WireError> {
        let generation = authority.generation();
        let identity = authority.identify(token).map_err(auth_error)?;
        Ok(Caller { token: token.map(str::to_string), identity: Ok(identity), generation })
    }

    /// The identity to act as now, or why there is none any more.
    fn current(&mut self, authority: &Authority) -> Result<Option<Arc<Identity>>, WireError> {
        let generation = authority.generation();
        if generation != self.generation {
            self.generation = generation;
            self.identity = authority.identify(self.token.as_deref()).map_err(|e| {
                WireError::new(
                    ErrorCode::Unauthenticated,
                    format!("{e}: the server's token file changed and no longer holds this connection's token"),
                )
            });
        }
        self.identity.clone()
    }
}

impl Connection {
    /// Serve the connection in its door's protocol.
    async fn serve<R, W>(self, door: Door, rd: R, wr: W) -> std::io::Result<()>
    where
        R: AsyncRead + Unpin,
        W: AsyncWrite + Unpin + Send + 'static,
    {
        match door {
            Door::Native => self.serve_native(rd, wr).await,
            Door::Kafka(settings) => {
                let Connection { peer, broker, limits, closing } = self;
                kafka::KafkaConnection { peer, broker, limits, closing, settings }.serve(rd, wr).await
            }
            Door::Amqp => {
                let Connection { peer, broker, limits, closing } = self;
                amqp::AmqpConnection { peer, broker, limits, closing }.serve(rd, wr).await
            }
        }
    }

    /// Read requests from `rd` and answer on `wr` until the client leaves or the server stops.
    /// Generic over the halves so plain TCP keeps its lock-free `into_split`.
    async fn serve_native<R, W>(self, rd: R, wr: W) -> std::io::Result<()>
    where
        R: AsyncRead + Unpin,
        W: AsyncWrite + Unpin + Send + 'static,
    {
        let Connection { peer, broker, limits, mut closing } = self;
        let mut frames = FramedRead::new(rd, wire::codec(limits.max_frame_bytes));
        let (tx, rx) = mpsc::channel::<Bytes>(limits::MAX_IN_FLIGHT_PER_CONNECTION);
        let writer = tokio::spawn(write_responses(
            FramedWrite::new(wr, wire::codec(limits.max_frame_bytes)),
            rx,
            limits.write_timeout,
        ));
        let in_flight = Arc::new(Semaphore::new(limits::MAX_IN_FLIGHT_PER_CONNECTION));
        let mut caller: Option<Caller> = None;
        loop {
            let frame = match next_frame(&mut frames, &mut closing, limits.frame_timeout).await {
                Next::Frame(f) => f,
                Next::Closed => break,
                Next::Error(err) => {
                    tracing::info!(%peer, error = %err, "closing connection");
                    send_error(&tx, 0, err).await;
                    break;
                }
            };
            let RequestFrame { id, request } = match wire::decode::<RequestFrame>(&frame) {
                Ok(r) => r,
                Err(err) => {
                    tracing::info!(%peer, error = %err, "closing connection");
                    send_error(&tx, 0, err).await;
                    break;
                }
            };
            let Some(caller) = caller.as_mut() else {
                match check_hello(&request).and_then(|token| Caller::greet(&broker.authority, token)) {
                    Ok(c) => {
                        caller = Some(c);
                        let _ = tx.send(response_body(id, Ok(hello()), limits.max_frame_bytes)).await;
                    }
                    Err(err) => {
                        tracing::info!(%peer, error = %err, "refusing connection");
                        send_error(&tx, id, err).await;
                        break;
                    }
                }
                continue;
            };
            let command = match caller.current(&broker.authority).and_then(|who| Ok((who, native::command(request)?))) {
                Ok((who, command)) => broker.execute(who.as_ref(), command),
                Err(err) => {
                    send_error(&tx, id, err).await;
                    continue;
                }
            };
            let permit = in_flight.clone().acquire_owned().await.expect("semaphore never closed");
            run_in_order(command, id, limits.max_frame_bytes, tx.clone(), permit).await;
        }
        drop(tx);
        let _ = writer.await;
        Ok(())
    }
}

/// What reading the next frame gave.
pub(crate) enum Next {
    Frame(bytes::BytesMut),
    Closed,
    Error(WireError),
}

/// The next frame, with a deadline on frames that started arriving: a client may be idle
/// as long as it likes between frames, but not trickle one in (slowloris).
pub(crate) async fn next_frame<R: AsyncRead + Unpin>(
    frames: &mut FramedRead<R, LengthDelimitedCodec>,
    closing: &mut watch::Receiver<bool>,
    timeout: Duration,
) -> Next {
    let mut partial_since: Option<Instant> = None;
    loop {
        tokio::select! {
            // A buffered frame first: the deadline timer is then never armed for it.
            biased;
            f = frames.next() => return match f {
                None => Next::Closed,
                Some(Ok(f)) => Next::Frame(f),
                Some(Err(e)) => Next::Error(frame_error(&e, frames.decoder().max_frame_length())),
            },
            _ = closing.changed() => return Next::Closed,
            () = tokio::time::sleep(timeout / 4) => {
                if frames.read_buffer().is_empty() {
                    partial_since = None;
                    continue;
                }
                let since = *partial_since.get_or_insert_with(Instant::now);
                if since.elapsed() >= timeout {
                    return Next::Error(WireError::new(
                        ErrorCode::MalformedFrame,
                        format!(
                            "a frame started {} ms ago is still incomplete ({} bytes so far); send whole frames promptly",
                            since.elapsed().as_millis(),
                            frames.read_buffer().len()
                        ),
                    ));
                }
            }
        }
    }
}

/// Write response frames, flushing only when no more are queued so bursts share a syscall.
/// A client that stops reading for longer than `timeout` is disconnected, so its unread
/// responses (and the requests waiting behind them) are freed.
async fn write_responses<W: AsyncWrite + Unpin>(
    mut sink: FramedWrite<W, LengthDelimitedCodec>,
    mut rx: mpsc::Receiver<Bytes>,
    timeout: Duration,
) {
    while let Some(frame) = rx.recv().await {
        let burst = async {
            sink.feed(frame).await?;
            while let Ok(more) = rx.try_recv() {
                sink.feed(more).await?;
            }
            SinkExt::<Bytes>::flush(&mut sink).await
        };
        match tokio::time::timeout(timeout, burst).await {
            Ok(Ok(())) => {}
            Ok(Err(_)) => return,
            Err(_) => {
                tracing::info!("closing a connection whose client stopped reading responses");
                return;
            }
        }
    }
    // Every response is written: shut the connection down (over TLS, with close_notify).
    let _ = tokio::time::timeout(timeout, SinkExt::<Bytes>::close(&mut sink)).await;
}

/// Start a command in arrival order: poll it once here, which submits a data-path write
/// before the next frame is read, then let it finish concurrently; a configuration command
/// finishes here first, so the next request sees its effect (a produce after a topic's
/// creation finds the topic).
async fn run_in_order(
    command: Execution,
    id: u64,
    max_frame_bytes: usize,
    tx: mpsc::Sender<Bytes>,
    permit: tokio::sync::OwnedSemaphorePermit,
) {
    let Execution { mut future, in_order } = command;
    let respond = move |result: crate::broker::Result<crate::broker::Reply>| {
        response_body(id, result.map(native::response).map_err(native::error), max_frame_bytes)
    };
    if in_order {
        let body = respond(future.await);
        let _ = tx.send(body).await;
        return;
    }
    let first = std::future::poll_fn(|cx| std::task::Poll::Ready(future.as_mut().poll(cx))).await;
    // Encoding (a fetch's response can be megabytes) runs beside the reading of the next
    // frame, not in its way.
    tokio::spawn(async move {
        let result = match first {
            std::task::Poll::Ready(result) => result,
            std::task::Poll::Pending => future.await,
        };
        let _ = tx.send(respond(result)).await;
        drop(permit);
    });
}

/// Translate a request as the native door does, for fuzzing: must never panic.
#[doc(hidden)]
pub fn fuzz_command(request: Request) -> bool {
    native::command(request).is_ok()
}

/// The answer to `Hello`.
fn hello() -> Response {
    Response::Hello { version: wire::PROTOCOL_VERSION, server: format!("weir {}", env!("CARGO_PKG_VERSION")) }
}

fn auth_error(e: crate::auth::AuthError) -> WireError {
    native::error(e.into())
}

/// The encoded response, or an error frame saying why it cannot be sent: a response larger
/// than a frame would otherwise close the connection with no explanation.
fn response_body(id: u64, result: Result<Response, WireError>, max_frame_bytes: usize) -> Bytes {
    let error_frame =
        |e: WireError| wire::encode(&ResponseFrame { id, result: Err(e) }).expect("an error frame always encodes");
    match wire::encode(&ResponseFrame { id, result }) {
        Ok(body) if body.len() <= max_frame_bytes => body,
        Ok(body) => error_frame(WireError::new(
            ErrorCode::FrameTooLarge,
            format!(
                "the response of {} bytes exceeds the frame limit of {max_frame_bytes} bytes; ask for less (fewer records or entries per request)",
                body.len()
            ),
        )),
        Err(e) => error_frame(e),
    }
}

async fn send_error(tx: &mpsc::Sender<Bytes>, id: u64, err: WireError) {
    if let Ok(body) = wire::encode(&ResponseFrame { id, result: Err(err) }) {
        let _ = tx.send(body).await;
    }
}

/// The token of a valid `Hello`.
fn check_hello(request: &Request) -> Result<Option<&str>, WireError> {
    match request {
        Request::Hello { version, token, .. } if *version == wire::PROTOCOL_VERSION => Ok(token.as_deref()),
        Request::Hello { version, .. } => Err(WireError::new(
            ErrorCode::Handshake,
            format!(
                "client speaks protocol version {version}, this server speaks {}; use a matching weir client",
                wire::PROTOCOL_VERSION
            ),
        )),
        _ => Err(WireError::new(ErrorCode::Handshake, "the first request on a connection must be Hello")),
    }
}

fn frame_error(e: &std::io::Error, max: usize) -> WireError {
    // The codec's own error; TLS record errors are `InvalidData` too but are not about size.
    let too_large = e.get_ref().is_some_and(|inner| inner.is::<tokio_util::codec::LengthDelimitedCodecError>());
    if too_large {
        WireError::new(
            ErrorCode::FrameTooLarge,
            format!(
                "a frame exceeds the server's limit of {max} bytes; send smaller batches (the server's --max-frame-bytes sets the limit)"
            ),
        )
    } else {
        WireError::new(ErrorCode::MalformedFrame, format!("cannot read frame: {e}"))
    }
}
