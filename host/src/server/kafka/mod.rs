//! The Kafka door: unmodified Kafka clients (librdkafka, kafka-python, the Java client, kcat)
//! speak the Kafka protocol to weir. A second front door onto the same broker, not a second
//! broker: every request becomes [`crate::broker::Command`]s checked and run by
//! [`Broker::execute`], so topics, offsets, groups, grants and limits are the ones the native
//! protocol sees. The messages are encoded by the `kafka-protocol` crate; this module reads
//! frames, keeps each connection's SASL state and writes responses in request order.
//!
//! Connections share the native listener's machinery (connection limit, TLS, frame size and
//! frame deadline, write timeout). A request is started in arrival order (a produce's write is
//! submitted before the next frame is read) and may finish concurrently; responses are written
//! in request order, as the protocol requires. A frame that does not decode closes the
//! connection, as a Kafka broker does.

mod api;
mod records;

use std::net::SocketAddr;
use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use futures_util::SinkExt;
use kafka_protocol::messages::{ApiKey, RequestHeader, ResponseHeader};
use kafka_protocol::protocol::{Decodable, Encodable};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::{mpsc, oneshot, watch};
use tokio_util::codec::{FramedRead, FramedWrite, LengthDelimitedCodec};

use super::{Next, ServerLimits, next_frame};
use crate::auth::Identity;
use crate::broker::Broker;
use crate::limits;

/// What the Kafka listener tells clients about itself.
#[derive(Debug, Clone)]
pub struct KafkaSettings {
    /// Host and port Metadata and FindCoordinator return (`--kafka-advertise`).
    pub advertise: (String, u16),
}

/// One connection's context.
pub(super) struct KafkaConnection {
    pub peer: SocketAddr,
    pub broker: Arc<Broker>,
    pub limits: ServerLimits,
    pub closing: watch::Receiver<bool>,
    pub settings: Arc<KafkaSettings>,
}

/// Who is on the connection, as far as SASL has got.
#[derive(Clone)]
pub(crate) enum Sasl {
    /// Nothing yet: on a server with tokens, only ApiVersions and SASL are served.
    Start,
    /// SaslHandshake chose PLAIN; SaslAuthenticate comes next.
    Handshaken,
    /// Authenticated as `identity` with `token` (looked up again when the token set changes).
    Done { token: String, generation: u64, identity: Option<Arc<Identity>> },
}

/// A request's response, once ready: `None` sends nothing (a produce with acks=0).
type Pending = oneshot::Receiver<Option<Bytes>>;

/// Why a connection is closed instead of answered.
#[derive(Debug)]
pub(crate) struct Close(pub String);

impl KafkaConnection {
    /// Serve requests until the client leaves, the server stops, or a request demands a close.
    pub(super) async fn serve<R, W>(self, rd: R, wr: W) -> std::io::Result<()>
    where
        R: AsyncRead + Unpin,
        W: AsyncWrite + Unpin + Send + 'static,
    {
        let KafkaConnection { peer, broker, limits, mut closing, settings } = self;
        let mut frames = FramedRead::new(rd, codec(limits.max_frame_bytes));
        let (tx, rx) = mpsc::channel::<Pending>(limits::KAFKA_IN_FLIGHT_PER_CONNECTION);
        let writer = tokio::spawn(write_in_order(FramedWrite::new(wr, codec(limits.max_frame_bytes)), rx, limits));
        let mut session = api::Session { broker, settings, sasl: Sasl::Start };
        loop {
            let frame = match next_frame(&mut frames, &mut closing, limits.frame_timeout).await {
                Next::Frame(f) => f.freeze(),
                Next::Closed => break,
                Next::Error(err) => {
                    tracing::info!(%peer, error = %err, "closing Kafka connection");
                    break;
                }
            };
            let pending = match start(&mut session, frame) {
                Ok(Step::Queued(pending)) => pending,
                // Topic creation and deletion finish before the next request starts, so a
                // produce pipelined behind a CreateTopics finds the topic.
                Ok(Step::Inline(answer)) => ready(answer.await),
                Err(Close(why)) => {
                    tracing::info!(%peer, %why, "closing Kafka connection");
                    break;
                }
            };
            if tx.send(pending).await.is_err() {
                break;
            }
        }
        drop(tx);
        let _ = writer.await;
        Ok(())
    }
}

/// Kafka frames: a 4-byte big-endian length, then the request.
fn codec(max: usize) -> LengthDelimitedCodec {
    LengthDelimitedCodec::builder().length_field_length(4).max_frame_length(max).new_codec()
}

/// A started request.
enum Step {
    /// Running beside the connection; its response arrives here.
    Queued(Pending),
    /// To finish before the next request is read (a configuration change).
    Inline(api::Answer),
}

/// Decode a request and start it.
fn start(session: &mut api::Session, mut frame: Bytes) -> Result<Step, Close> {
    if frame.len() < 8 {
        return Err(Close(format!("a request of {} bytes is shorter than a request header", frame.len())));
    }
    let key = i16::from_be_bytes([frame[0], frame[1]]);
    let version = i16::from_be_bytes([frame[2], frame[3]]);
    let correlation = i32::from_be_bytes([frame[4], frame[5], frame[6], frame[7]]);
    let Ok(api) = ApiKey::try_from(key) else {
        return Err(Close(format!("unknown API key {key}")));
    };
    if api == ApiKey::ApiVersions && !api::supports(api, version) {
        // Answered in version 0 with the supported ranges, whatever was asked.
        return Ok(Step::Queued(ready(Some(api::unsupported_api_versions(correlation)))));
    }
    if !api::supports(api, version) {
        return Err(Close(format!("{api:?} version {version} is not supported (see ApiVersions)")));
    }
    let header = RequestHeader::decode(&mut frame, api.request_header_version(version))
        .map_err(|e| Close(format!("malformed {api:?} v{version} request header: {e}")))?;
    let request = kafka_protocol::messages::RequestKind::decode(api, &mut frame, version)
        .map_err(|e| Close(format!("malformed {api:?} v{version} request: {e}")))?;
    tracing::debug!(?api, version, client = ?header.client_id, "Kafka request");
    let call = api::Call { api, version, correlation, client_id: header.client_id.map(|c| c.to_string()) };
    let mut future = session.handle(call, request)?;
    if matches!(api, ApiKey::CreateTopics | ApiKey::DeleteTopics) {
        return Ok(Step::Inline(future));
    }
    // Polled once here, in arrival order: a produce's write is submitted before the next
    // request is read. The rest runs beside the connection.
    let (tx, rx) = oneshot::channel();
    match futures_util::FutureExt::now_or_never(&mut future) {
        Some(response) => {
            let _ = tx.send(response);
        }
        None => {
            tokio::spawn(async move {
                let _ = tx.send(future.await);
            });
        }
    }
    Ok(Step::Queued(rx))
}

fn ready(response: Option<Bytes>) -> Pending {
    let (tx, rx) = oneshot::channel();
    let _ = tx.send(response);
    rx
}

/// A response frame: header (its version follows the API's) then body.
pub(crate) fn encode<M: Encodable>(call: &api::Call, body: &M) -> Bytes {
    let mut buf = BytesMut::with_capacity(64);
    let header = ResponseHeader::default().with_correlation_id(call.correlation);
    let encoded = header
        .encode(&mut buf, call.api.response_header_version(call.version))
        .and_then(|()| body.encode(&mut buf, call.version));
    if let Err(e) = encoded {
        // A bug: a field this version cannot carry. The client times out and retries.
        tracing::error!(api = ?call.api, version = call.version, error = %e, "cannot encode a Kafka response");
        return Bytes::new();
    }
    buf.freeze()
}

/// Write responses in request order; a client that stops reading is cut off.
async fn write_in_order<W: AsyncWrite + Unpin>(
    mut sink: FramedWrite<W, LengthDelimitedCodec>,
    mut rx: mpsc::Receiver<Pending>,
    limits: ServerLimits,
) {
    while let Some(pending) = rx.recv().await {
        let Ok(response) = pending.await else { return };
        let Some(frame) = response else { continue };
        if frame.is_empty() {
            // A response that could not be encoded: closing beats answering the next request
            // with this one's correlation id.
            return;
        }
        if frame.len() > limits.max_frame_bytes {
            tracing::warn!(bytes = frame.len(), "a Kafka response exceeds the frame limit; closing the connection");
            return;
        }
        let write = async {
            sink.feed(frame).await?;
            SinkExt::<Bytes>::flush(&mut sink).await
        };
        match tokio::time::timeout(limits.write_timeout, write).await {
            Ok(Ok(())) => {}
            Ok(Err(_)) => return,
            Err(_) => {
                tracing::info!("closing a Kafka connection whose client stopped reading responses");
                return;
            }
        }
    }
    let _ = tokio::time::timeout(limits.write_timeout, SinkExt::<Bytes>::close(&mut sink)).await;
}

/// Decode a frame as the Kafka door does, for fuzzing: must never panic.
#[doc(hidden)]
pub fn fuzz_request(frame: &[u8]) -> bool {
    let mut frame = Bytes::copy_from_slice(frame);
    if frame.len() < 4 {
        return false;
    }
    let key = i16::from_be_bytes([frame[0], frame[1]]);
    let version = i16::from_be_bytes([frame[2], frame[3]]);
    let Ok(api) = ApiKey::try_from(key) else { return false };
    if !api::supports(api, version) {
        return false;
    }
    let Ok(_) = RequestHeader::decode(&mut frame, api.request_header_version(version)) else { return false };
    let Ok(request) = kafka_protocol::messages::RequestKind::decode(api, &mut frame, version) else { return false };
    if let kafka_protocol::messages::RequestKind::Produce(p) = request {
        for t in p.topic_data {
            for d in t.partition_data {
                let _ = d.records.map(|r| records::decode(r, &mut limits::KAFKA_MAX_DECOMPRESSED_BYTES.clone()));
            }
        }
    }
    true
}
