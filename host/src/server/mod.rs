//! The TCP server: accepts connections, decodes frames, hands requests to the broker in
//! arrival order, and writes responses back as they complete.
//!
//! Bounded per the limits: connections (a semaphore; excess connections get a `Busy` error
//! frame and are closed), frame size (codec), and requests in flight per connection (the
//! reader stops reading until responses drain).

use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, mpsc, watch};
use tokio_util::codec::{FramedRead, FramedWrite};

use crate::broker::Broker;
use crate::limits;
use crate::wire::{self, ErrorCode, Request, RequestFrame, ResponseFrame, WireError};

/// Server limits.
#[derive(Debug, Clone, Copy)]
pub struct ServerLimits {
    /// Largest frame accepted.
    pub max_frame_bytes: usize,
    /// Concurrent connections.
    pub max_connections: usize,
}

impl Default for ServerLimits {
    fn default() -> Self {
        ServerLimits { max_frame_bytes: limits::MAX_FRAME_BYTES, max_connections: limits::MAX_CONNECTIONS }
    }
}

/// Serve `listener` until `shutdown` resolves, then stop accepting and let the broker drain.
/// Taking the listener (not an address) lets callers bind port 0.
pub async fn run(
    listener: TcpListener,
    broker: Arc<Broker>,
    limits: ServerLimits,
    shutdown: impl Future<Output = ()>,
) -> std::io::Result<()> {
    let connections = Arc::new(Semaphore::new(limits.max_connections));
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
            tokio::spawn(refuse(stream, limits));
            continue;
        };
        let (broker, closing) = (broker.clone(), closing.clone());
        tokio::spawn(async move {
            if let Err(e) = serve_connection(stream, peer, broker, limits, closing).await {
                tracing::debug!(%peer, error = %e, "connection ended with an error");
            }
            drop(permit);
        });
    }
    let _ = closing_tx.send(true);
    Ok(())
}

/// Tell a client over the connection limit why it is refused.
async fn refuse(stream: TcpStream, limits: ServerLimits) {
    let mut framed = FramedWrite::new(stream, wire::codec(limits.max_frame_bytes));
    let err = WireError::new(
        ErrorCode::Busy,
        format!("the server has reached its limit of {} connections; retry later", limits.max_connections),
    );
    if let Ok(frame) = wire::encode(&ResponseFrame { id: 0, result: Err(err) }) {
        let _ = framed.send(frame).await;
    }
}

async fn serve_connection(
    stream: TcpStream,
    peer: SocketAddr,
    broker: Arc<Broker>,
    limits: ServerLimits,
    mut closing: watch::Receiver<bool>,
) -> std::io::Result<()> {
    let (rd, wr) = stream.into_split();
    let mut frames = FramedRead::new(rd, wire::codec(limits.max_frame_bytes));
    let (tx, rx) = mpsc::channel::<Bytes>(limits::MAX_IN_FLIGHT_PER_CONNECTION);
    let writer = tokio::spawn(write_responses(FramedWrite::new(wr, wire::codec(limits.max_frame_bytes)), rx));
    let in_flight = Arc::new(Semaphore::new(limits::MAX_IN_FLIGHT_PER_CONNECTION));
    let mut greeted = false;
    loop {
        let next = tokio::select! {
            f = frames.next() => f,
            _ = closing.changed() => None,
        };
        let Some(frame) = next else { break };
        let frame = match frame {
            Ok(f) => f,
            Err(e) => {
                let err = frame_error(&e, limits.max_frame_bytes);
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
        if !greeted {
            match check_hello(&request) {
                Ok(()) => greeted = true,
                Err(err) => {
                    send_error(&tx, id, err).await;
                    break;
                }
            }
        }
        let permit = in_flight.clone().acquire_owned().await.expect("semaphore never closed");
        // Dispatch here, in arrival order; only the wait for the result runs concurrently.
        let pending = broker.dispatch(request);
        let tx = tx.clone();
        tokio::spawn(async move {
            let result = pending.await;
            let body = wire::encode(&ResponseFrame { id, result }).unwrap_or_else(|e| {
                wire::encode(&ResponseFrame { id, result: Err(e) }).expect("an error frame always encodes")
            });
            let _ = tx.send(body).await;
            drop(permit);
        });
    }
    drop(tx);
    let _ = writer.await;
    Ok(())
}

/// Write response frames, flushing only when no more are queued so bursts share a syscall.
async fn write_responses(
    mut sink: FramedWrite<tokio::net::tcp::OwnedWriteHalf, tokio_util::codec::LengthDelimitedCodec>,
    mut rx: mpsc::Receiver<Bytes>,
) {
    while let Some(frame) = rx.recv().await {
        if sink.feed(frame).await.is_err() {
            return;
        }
        while let Ok(more) = rx.try_recv() {
            if sink.feed(more).await.is_err() {
                return;
            }
        }
        if SinkExt::<Bytes>::flush(&mut sink).await.is_err() {
            return;
        }
    }
}

async fn send_error(tx: &mpsc::Sender<Bytes>, id: u64, err: WireError) {
    if let Ok(body) = wire::encode(&ResponseFrame { id, result: Err(err) }) {
        let _ = tx.send(body).await;
    }
}

fn check_hello(request: &Request) -> Result<(), WireError> {
    match request {
        Request::Hello { version, .. } if *version == wire::PROTOCOL_VERSION => Ok(()),
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
    if e.kind() == std::io::ErrorKind::InvalidData {
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
