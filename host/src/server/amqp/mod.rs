//! The AMQP 0-9-1 door: RabbitMQ's clients (pika, amqplib, lapin, the Java, .NET and Go
//! clients) use weir's queues and exchanges unchanged. A fourth door onto the same broker,
//! not a second broker: every method becomes [`crate::broker::Command`]s checked and run by
//! [`Broker::execute`], so queues, exchanges, grants and limits are the ones every door sees.
//! Frames are decoded and encoded by the `amq-protocol` crate (lapin's codec); this module
//! bounds them, negotiates the connection, and keeps what AMQP keeps per connection and per
//! channel: content being assembled, delivery tags, prefetch, consumers, confirms.
//!
//! A delivery is a weir queue delivery whose visibility timeout the door renews while its
//! channel is open ([`limits::AMQP_DELIVERY_LEASE_MS`]); closing the channel or the
//! connection hands every unacked delivery back at once, marked redelivered, as RabbitMQ
//! does. If weir itself stops, they come back when the lease runs out.

mod channel;
mod props;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use amq_protocol::frame::{AMQPFrame, gen_frame, parse_frame};
use amq_protocol::protocol::{AMQPClass, connection};
use amq_protocol::types::{AMQPValue, FieldTable, LongString};
use bytes::{Bytes, BytesMut};
use futures_util::StreamExt;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::{mpsc, watch};
use tokio_util::codec::{Decoder, FramedRead};

use super::ServerLimits;
use crate::auth::Identity;
use crate::broker::{Broker, BrokerError, Command, ErrorKind, Reply};
use crate::limits;
use channel::Channel;

// Reply codes of the AMQP 0-9-1 specification (and RabbitMQ's use of them).
const NO_ROUTE: u16 = 312;
const CONNECTION_FORCED: u16 = 320;
const ACCESS_REFUSED: u16 = 403;
const NOT_FOUND: u16 = 404;
const RESOURCE_LOCKED: u16 = 405;
const PRECONDITION_FAILED: u16 = 406;
const FRAME_ERROR: u16 = 501;
const SYNTAX_ERROR: u16 = 502;
const COMMAND_INVALID: u16 = 503;
const CHANNEL_ERROR: u16 = 504;
const UNEXPECTED_FRAME: u16 = 505;
const RESOURCE_ERROR: u16 = 506;
const NOT_ALLOWED: u16 = 530;
const NOT_IMPLEMENTED: u16 = 540;
const INTERNAL_ERROR: u16 = 541;

/// The protocol header a 0-9-1 client opens with (and the one we answer a wrong one with).
const PROTOCOL_HEADER: &[u8; 8] = b"AMQP\x00\x00\x09\x01";

/// One connection's context.
pub(super) struct AmqpConnection {
    pub peer: SocketAddr,
    pub broker: Arc<Broker>,
    pub limits: ServerLimits,
    pub closing: watch::Receiver<bool>,
}

/// An error that ends a channel or the connection: a reply code, its text, and the method
/// that caused it (`(class, method)`, zeros when none did).
#[derive(Debug, Clone)]
struct AmqpError {
    pub code: u16,
    pub text: String,
    pub cause: (u16, u16),
}

impl AmqpError {
    fn new(code: u16, text: impl Into<String>) -> AmqpError {
        AmqpError { code, text: text.into(), cause: (0, 0) }
    }

    /// The same error, blamed on `method`.
    fn on(mut self, method: &AMQPClass) -> AmqpError {
        self.cause = (method.get_amqp_class_id(), method.get_amqp_method_id());
        self
    }

    /// A broker error in AMQP's terms.
    fn broker(e: &BrokerError) -> AmqpError {
        let code = match e.kind() {
            ErrorKind::Forbidden | ErrorKind::Unauthenticated => ACCESS_REFUSED,
            ErrorKind::UnknownQueue
            | ErrorKind::UnknownExchange
            | ErrorKind::UnknownTopic
            | ErrorKind::NotFound
            | ErrorKind::StaleReceipt => NOT_FOUND,
            ErrorKind::InUse => RESOURCE_LOCKED,
            ErrorKind::QueueFull | ErrorKind::Busy | ErrorKind::Storage | ErrorKind::DiskFull => RESOURCE_ERROR,
            ErrorKind::ShuttingDown => CONNECTION_FORCED,
            ErrorKind::Internal => INTERNAL_ERROR,
            _ => PRECONDITION_FAILED,
        };
        AmqpError::new(code, e.to_string())
    }

    /// The same error, blamed on the method `(class, method)`.
    fn with_cause(mut self, class: u16, method: u16) -> AmqpError {
        self.cause = (class, method);
        self
    }

    /// The text as a reply-text short string: `CODE_NAME - text`, as RabbitMQ writes it.
    fn reply_text(&self) -> String {
        let name = match self.code {
            NO_ROUTE => "NO_ROUTE",
            CONNECTION_FORCED => "CONNECTION_FORCED",
            ACCESS_REFUSED => "ACCESS_REFUSED",
            NOT_FOUND => "NOT_FOUND",
            RESOURCE_LOCKED => "RESOURCE_LOCKED",
            PRECONDITION_FAILED => "PRECONDITION_FAILED",
            FRAME_ERROR => "FRAME_ERROR",
            SYNTAX_ERROR => "SYNTAX_ERROR",
            COMMAND_INVALID => "COMMAND_INVALID",
            CHANNEL_ERROR => "CHANNEL_ERROR",
            UNEXPECTED_FRAME => "UNEXPECTED_FRAME",
            RESOURCE_ERROR => "RESOURCE_ERROR",
            NOT_ALLOWED => "NOT_ALLOWED",
            NOT_IMPLEMENTED => "NOT_IMPLEMENTED",
            _ => "INTERNAL_ERROR",
        };
        format!("{name} - {}", self.text)
    }
}

impl From<std::io::Error> for AmqpError {
    fn from(e: std::io::Error) -> AmqpError {
        AmqpError::new(CONNECTION_FORCED, format!("reading from the client failed: {e}"))
    }
}

/// Frames out, encoded, to the connection's writer; each send is whole (a delivery's
/// method, header and body frames are never interleaved with another's).
#[derive(Clone)]
struct Out {
    tx: mpsc::Sender<Bytes>,
    frame_max: usize,
}

impl Out {
    /// Send frames as one unit; false once the connection is gone.
    async fn send(&self, frames: &[AMQPFrame]) -> bool {
        let mut buf = Vec::with_capacity(256);
        for f in frames {
            match cookie_factory::gen_simple(gen_frame(f), buf) {
                Ok(b) => buf = b,
                Err(e) => {
                    tracing::error!(error = ?e, "cannot encode an AMQP frame");
                    return false;
                }
            }
        }
        self.tx.send(Bytes::from(buf)).await.is_ok()
    }

    async fn method(&self, channel: u16, m: AMQPClass) -> bool {
        self.send(&[AMQPFrame::Method(channel, m)]).await
    }

    /// A method carrying content: the method, the content header, then the body in frames
    /// no larger than the negotiated maximum.
    fn content(
        &self,
        channel: u16,
        method: AMQPClass,
        properties: amq_protocol::protocol::BasicProperties,
        body: &[u8],
    ) -> Vec<AMQPFrame> {
        let mut frames = vec![
            AMQPFrame::Method(channel, method),
            AMQPFrame::Header(
                channel,
                amq_protocol::frame::AMQPContentHeader { class_id: 60, body_size: body.len() as u64, properties },
            ),
        ];
        let chunk = self.frame_max.saturating_sub(8).max(1);
        frames.extend(body.chunks(chunk).map(|c| AMQPFrame::Body(channel, c.to_vec())));
        frames
    }
}

/// What a task running beside the connection reports back to it.
enum Event {
    /// A channel must close with this error (a publish it ran beside the connection failed).
    /// Carries the channel's closed flag: an event from a channel since closed (whose id a
    /// new channel may have taken) is dropped.
    CloseChannel(u16, AmqpError, Arc<std::sync::atomic::AtomicBool>),
}

/// Frames in: a 7-byte header (type, channel, size), the payload and the end octet. The
/// size is checked against the negotiated maximum before anything is buffered for it.
struct FrameCodec {
    max: usize,
}

impl Decoder for FrameCodec {
    type Item = AMQPFrame;
    type Error = AmqpError;

    fn decode(&mut self, src: &mut BytesMut) -> Result<Option<AMQPFrame>, AmqpError> {
        if src.len() < 7 {
            return Ok(None);
        }
        let kind = src[0];
        if !matches!(kind, 1 | 2 | 3 | 8) {
            return Err(AmqpError::new(FRAME_ERROR, format!("unknown frame type {kind}")));
        }
        let size = u32::from_be_bytes([src[3], src[4], src[5], src[6]]) as usize;
        if size + 8 > self.max {
            return Err(AmqpError::new(
                FRAME_ERROR,
                format!("a frame of {} bytes exceeds the negotiated frame_max of {}", size + 8, self.max),
            ));
        }
        if src.len() < size + 8 {
            src.reserve(size + 8 - src.len());
            return Ok(None);
        }
        let raw = src.split_to(size + 8);
        if raw[size + 7] != amq_protocol::protocol::constants::FRAME_END {
            return Err(AmqpError::new(FRAME_ERROR, "a frame does not end with the frame-end octet 0xCE"));
        }
        // The codec parses nested field tables and arrays recursively: a frame that could
        // nest them deeper than any client does is refused before it can exhaust the stack.
        if matches!(kind, 1 | 2) && nesting_bound(&raw[7..7 + size]) > limits::AMQP_MAX_NESTING {
            return Err(AmqpError::new(
                SYNTAX_ERROR,
                format!("field tables or arrays nested deeper than {} levels", limits::AMQP_MAX_NESTING),
            ));
        }
        match parse_frame(&raw[..]) {
            Ok((_, frame)) => Ok(Some(frame)),
            Err(e) => {
                let code = if kind == 1 { SYNTAX_ERROR } else { FRAME_ERROR };
                Err(AmqpError::new(code, format!("a malformed frame of type {kind}: {e}")))
            }
        }
    }
}

/// An upper bound on how deeply field tables and arrays nest in a frame's payload, without
/// parsing it: every byte that could open one (`F` or `A` followed by a length that fits) is
/// counted inside every such span still open where it stands. Real containers are among
/// them, so the true depth is never above this.
fn nesting_bound(payload: &[u8]) -> usize {
    let mut open: Vec<usize> = Vec::new();
    let mut deepest = 0;
    for i in 0..payload.len().saturating_sub(4) {
        if !matches!(payload[i], b'F' | b'A') {
            continue;
        }
        let len = u32::from_be_bytes([payload[i + 1], payload[i + 2], payload[i + 3], payload[i + 4]]) as usize;
        let end = i + 5 + len;
        if end > payload.len() {
            continue;
        }
        open.retain(|e| *e > i);
        open.push(end);
        deepest = deepest.max(open.len());
        if deepest > limits::AMQP_MAX_NESTING {
            break;
        }
    }
    deepest
}

/// Who a connection acts as, looked up again when the token set changes (shared with the
/// connection's consumers, so a reload that revokes a grant reaches them too).
struct Caller {
    token: Option<String>,
    identity: Option<Arc<Identity>>,
    generation: u64,
}

impl Caller {
    /// The identity as of the token set in force, or why the token no longer works.
    fn current(&mut self, authority: &crate::auth::Authority) -> Result<Option<Arc<Identity>>, crate::auth::AuthError> {
        if self.generation != authority.generation() {
            self.generation = authority.generation();
            self.identity = authority.identify(self.token.as_deref())?;
        }
        Ok(self.identity.clone())
    }
}

/// A connection's state once open.
struct Conn {
    pub broker: Arc<Broker>,
    pub out: Out,
    pub events: mpsc::Sender<Event>,
    caller: Arc<std::sync::Mutex<Caller>>,
    channels: HashMap<u16, Channel>,
    channel_max: u16,
    /// Queues that end with the connection: exclusive, auto-delete and direct reply-to ones.
    pub owned_queues: Vec<String>,
}

impl AmqpConnection {
    /// Serve the connection until the client or the server closes it.
    pub(super) async fn serve<R, W>(self, mut rd: R, wr: W) -> std::io::Result<()>
    where
        R: AsyncRead + Unpin,
        W: AsyncWrite + Unpin + Send + 'static,
    {
        let AmqpConnection { peer, broker, limits, mut closing } = self;
        let (tx, rx) = mpsc::channel::<Bytes>(limits::AMQP_FRAMES_QUEUED);
        let writer = tokio::spawn(write_frames(wr, rx, limits.write_timeout));
        let mut header = [0u8; 8];
        match tokio::time::timeout(limits.frame_timeout, rd.read_exact(&mut header)).await {
            Ok(Ok(_)) if &header == PROTOCOL_HEADER => {}
            Ok(Ok(_)) => {
                tracing::info!(%peer, "not an AMQP 0-9-1 client; answering with the protocol weir speaks");
                let _ = tx.send(Bytes::from_static(PROTOCOL_HEADER)).await;
                drop(tx);
                let _ = writer.await;
                return Ok(());
            }
            _ => return Ok(()),
        }
        let out = Out { tx, frame_max: limits::AMQP_FRAME_MAX };
        let mut frames = FramedRead::new(rd, FrameCodec { max: limits::AMQP_FRAME_MAX });
        let (events_tx, events) = mpsc::channel(limits::AMQP_EVENTS_QUEUED);
        let opened = tokio::time::timeout(limits.frame_timeout, open(&broker, &out, &mut frames)).await;
        let (caller, heartbeat, frame_max) = match opened {
            Ok(Ok(o)) => o,
            Ok(Err(e)) => {
                tracing::info!(%peer, error = %e.text, "AMQP connection refused");
                close_connection(&out, &e).await;
                drop(out);
                let _ = writer.await;
                return Ok(());
            }
            Err(_) => {
                tracing::info!(%peer, "AMQP handshake took too long");
                return Ok(());
            }
        };
        frames.decoder_mut().max = frame_max;
        let out = Out { frame_max, ..out };
        let mut conn = Conn {
            broker,
            out,
            events: events_tx,
            caller: Arc::new(std::sync::Mutex::new(caller)),
            channels: HashMap::new(),
            channel_max: limits::AMQP_CHANNEL_MAX,
            owned_queues: Vec::new(),
        };
        let ended = conn.run(&mut frames, events, &mut closing, heartbeat, limits.frame_timeout).await;
        if let Err(e) = &ended {
            tracing::info!(%peer, code = e.code, error = %e.text, "closing AMQP connection");
            close_connection(&conn.out, e).await;
        }
        conn.release().await;
        drop(conn);
        let _ = writer.await;
        Ok(())
    }
}

/// Tell the client why the connection ends.
async fn close_connection(out: &Out, e: &AmqpError) {
    let close = connection::Close {
        reply_code: e.code,
        reply_text: props::short(&e.reply_text()),
        class_id: e.cause.0,
        method_id: e.cause.1,
    };
    out.method(0, AMQPClass::Connection(connection::AMQPMethod::Close(close))).await;
}

/// The next method on channel 0 during the handshake.
async fn expect<R: AsyncRead + Unpin>(
    frames: &mut FramedRead<R, FrameCodec>,
) -> Result<connection::AMQPMethod, AmqpError> {
    loop {
        match frames.next().await {
            None => return Err(AmqpError::new(CONNECTION_FORCED, "the client left during the handshake")),
            Some(Err(e)) => return Err(e),
            Some(Ok(AMQPFrame::Heartbeat)) => continue,
            Some(Ok(AMQPFrame::Method(0, AMQPClass::Connection(m)))) => return Ok(m),
            Some(Ok(other)) => {
                return Err(AmqpError::new(COMMAND_INVALID, format!("expected a connection method, got {other}")));
            }
        }
    }
}

/// start/start-ok, tune/tune-ok, open/open-ok: who the client is, the heartbeat and the
/// frame size.
async fn open<R: AsyncRead + Unpin>(
    broker: &Broker,
    out: &Out,
    frames: &mut FramedRead<R, FrameCodec>,
) -> Result<(Caller, u16, usize), AmqpError> {
    let start = connection::Start {
        version_major: 0,
        version_minor: 9,
        server_properties: server_properties(),
        mechanisms: LongString::from("PLAIN"),
        locales: LongString::from("en_US"),
    };
    out.method(0, AMQPClass::Connection(connection::AMQPMethod::Start(start))).await;
    let connection::AMQPMethod::StartOk(ok) = expect(frames).await? else {
        return Err(AmqpError::new(COMMAND_INVALID, "expected connection.start-ok"));
    };
    if ok.mechanism.as_str() != "PLAIN" {
        return Err(AmqpError::new(
            ACCESS_REFUSED,
            format!("mechanism {} is not supported: use PLAIN (user: token name, password: token)", ok.mechanism),
        ));
    }
    let (token, identity) = super::sasl_plain(&broker.authority, ok.response.as_bytes()).map_err(|why| {
        AmqpError::new(ACCESS_REFUSED, format!("Login was refused using authentication mechanism PLAIN: {why}"))
    })?;
    let caller = Caller { token: Some(token), identity, generation: broker.authority.generation() };
    let tune = connection::Tune {
        channel_max: limits::AMQP_CHANNEL_MAX,
        frame_max: limits::AMQP_FRAME_MAX as u32,
        heartbeat: limits::AMQP_HEARTBEAT_S,
    };
    out.method(0, AMQPClass::Connection(connection::AMQPMethod::Tune(tune))).await;
    let connection::AMQPMethod::TuneOk(tuned) = expect(frames).await? else {
        return Err(AmqpError::new(COMMAND_INVALID, "expected connection.tune-ok"));
    };
    let frame_max = match tuned.frame_max as usize {
        0 => limits::AMQP_FRAME_MAX,
        n if n < 4096 => {
            return Err(AmqpError::new(NOT_ALLOWED, format!("frame_max {n} is below the minimum of 4096")));
        }
        n => n.min(limits::AMQP_FRAME_MAX),
    };
    let connection::AMQPMethod::Open(o) = expect(frames).await? else {
        return Err(AmqpError::new(COMMAND_INVALID, "expected connection.open"));
    };
    if !matches!(o.virtual_host.as_str(), "/" | "") {
        return Err(AmqpError::new(
            NOT_ALLOWED,
            format!("vhost '{}' not found: weir has one virtual host, '/'", o.virtual_host),
        ));
    }
    out.method(0, AMQPClass::Connection(connection::AMQPMethod::OpenOk(connection::OpenOk {}))).await;
    Ok((caller, tuned.heartbeat, frame_max))
}

/// What weir tells clients about itself: RabbitMQ's capability names, for what weir does.
fn server_properties() -> FieldTable {
    let mut caps = FieldTable::default();
    for cap in [
        "publisher_confirms",
        "basic.nack",
        "consumer_cancel_notify",
        "authentication_failure_close",
        "per_consumer_qos",
        "direct_reply_to",
    ] {
        caps.insert(cap.into(), AMQPValue::Boolean(true));
    }
    let mut p = FieldTable::default();
    p.insert("product".into(), AMQPValue::LongString("weir".into()));
    p.insert("version".into(), AMQPValue::LongString(env!("CARGO_PKG_VERSION").into()));
    p.insert("capabilities".into(), AMQPValue::FieldTable(caps));
    p
}

/// Write frames as they come, a batch at a time; a client that stops reading is cut off.
async fn write_frames<W: AsyncWrite + Unpin>(mut wr: W, mut rx: mpsc::Receiver<Bytes>, timeout: Duration) {
    let mut buf = BytesMut::new();
    while let Some(first) = rx.recv().await {
        buf.extend_from_slice(&first);
        while buf.len() < limits::AMQP_WRITE_BATCH_BYTES {
            match rx.try_recv() {
                Ok(more) => buf.extend_from_slice(&more),
                Err(_) => break,
            }
        }
        let write = async {
            wr.write_all(&buf).await?;
            wr.flush().await
        };
        match tokio::time::timeout(timeout, write).await {
            Ok(Ok(())) => buf.clear(),
            Ok(Err(_)) => return,
            Err(_) => {
                tracing::info!("closing an AMQP connection whose client stopped reading");
                return;
            }
        }
    }
    let _ = tokio::time::timeout(timeout, wr.shutdown()).await;
}

impl Conn {
    /// The connection's life after the handshake: frames, events from its tasks,
    /// heartbeats and lease renewals, until a close.
    async fn run<R: AsyncRead + Unpin>(
        &mut self,
        frames: &mut FramedRead<R, FrameCodec>,
        mut events: mpsc::Receiver<Event>,
        closing: &mut watch::Receiver<bool>,
        heartbeat: u16,
        frame_timeout: Duration,
    ) -> Result<(), AmqpError> {
        let beat = Duration::from_secs(u64::from(heartbeat.max(1)));
        let mut beats = tokio::time::interval(beat / 2);
        let mut leases = tokio::time::interval(Duration::from_millis(limits::AMQP_DELIVERY_LEASE_MS / 3));
        let mut heard = tokio::time::Instant::now();
        let mut partial_since: Option<tokio::time::Instant> = None;
        loop {
            // Idle is fine while heartbeats arrive; a frame once started must finish in time.
            let deadline = match partial_since {
                Some(t) => t + frame_timeout,
                None if heartbeat > 0 => heard + beat * 2,
                None => heard + Duration::from_secs(365 * 24 * 3600),
            };
            tokio::select! {
                biased;
                Some(event) = events.recv() => match event {
                    Event::CloseChannel(ch, e, closed) => {
                        if !closed.load(std::sync::atomic::Ordering::Acquire) {
                            self.fail_channel(ch, e).await;
                        }
                    }
                },
                frame = frames.next() => {
                    heard = tokio::time::Instant::now();
                    partial_since = None;
                    match frame {
                        None => return Ok(()),
                        Some(Err(e)) => return Err(e),
                        Some(Ok(f)) => {
                            if !self.frame(f).await? {
                                return Ok(());
                            }
                        }
                    }
                    if !frames.read_buffer().is_empty() {
                        partial_since = Some(heard);
                    }
                }
                _ = beats.tick(), if heartbeat > 0 => {
                    self.out.send(&[AMQPFrame::Heartbeat]).await;
                }
                _ = leases.tick() => {
                    for ch in self.channels.values() {
                        ch.renew(self).await;
                    }
                }
                _ = tokio::time::sleep_until(deadline) => {
                    if partial_since.is_some() {
                        return Err(AmqpError::new(FRAME_ERROR, "a frame took too long to arrive"));
                    }
                    tracing::info!("closing an AMQP connection that missed its heartbeats");
                    return Ok(());
                }
                _ = closing.changed() => {
                    return Err(AmqpError::new(CONNECTION_FORCED, "broker shutting down"));
                }
            }
        }
    }

    /// Handle one frame; false when the connection closes cleanly.
    async fn frame(&mut self, frame: AMQPFrame) -> Result<bool, AmqpError> {
        match frame {
            AMQPFrame::Heartbeat => Ok(true),
            AMQPFrame::Method(0, AMQPClass::Connection(m)) => self.connection_method(m).await,
            AMQPFrame::Method(0, m) => {
                Err(AmqpError::new(COMMAND_INVALID, "channel 0 carries only connection methods").on(&m))
            }
            AMQPFrame::Method(ch, m) => {
                self.refresh_caller()?;
                self.channel_method(ch, m).await?;
                Ok(true)
            }
            AMQPFrame::Header(ch, h) => {
                let channel = self.channel(ch)?;
                if let Err(e) = channel.content_header(h) {
                    self.fail_channel(ch, e).await;
                }
                self.finish_publish(ch).await?;
                Ok(true)
            }
            AMQPFrame::Body(ch, body) => {
                self.channel(ch)?.content_body(body)?;
                self.finish_publish(ch).await?;
                Ok(true)
            }
            AMQPFrame::InvalidHeartbeat(ch) => Err(AmqpError::new(
                FRAME_ERROR,
                format!("a heartbeat frame on channel {ch} (heartbeats use channel 0)"),
            )),
            AMQPFrame::ProtocolHeader(_) => Err(AmqpError::new(FRAME_ERROR, "a protocol header inside the connection")),
        }
    }

    async fn connection_method(&mut self, m: connection::AMQPMethod) -> Result<bool, AmqpError> {
        match m {
            connection::AMQPMethod::Close(c) => {
                tracing::debug!(code = c.reply_code, text = %c.reply_text, "the client closes the AMQP connection");
                self.release().await;
                self.out
                    .method(0, AMQPClass::Connection(connection::AMQPMethod::CloseOk(connection::CloseOk {})))
                    .await;
                Ok(false)
            }
            connection::AMQPMethod::CloseOk(_) => Ok(false),
            other => Err(AmqpError::new(COMMAND_INVALID, "this connection method is not expected once open")
                .on(&AMQPClass::Connection(other))),
        }
    }

    /// The caller as of the token set in force; a revoked token ends the connection.
    fn refresh_caller(&mut self) -> Result<(), AmqpError> {
        self.caller.lock().expect("caller").current(&self.broker.authority).map(drop).map_err(|e| {
            AmqpError::new(CONNECTION_FORCED, format!("{e}: the server's token file no longer holds this token"))
        })
    }

    /// Run a command as the connection's caller.
    async fn execute(&self, command: Command) -> Result<Reply, BrokerError> {
        channel::Executes::run(self, command).await
    }

    /// The connection's identity as last refreshed (at its latest method).
    fn identity(&self) -> Option<Arc<Identity>> {
        self.caller.lock().expect("caller").identity.clone()
    }

    /// What a task beside the connection needs of it.
    fn handle(&self) -> channel::Handle {
        channel::Handle { broker: self.broker.clone(), caller: self.caller.clone(), out: self.out.clone() }
    }

    fn channel(&mut self, ch: u16) -> Result<&mut Channel, AmqpError> {
        self.channels.get_mut(&ch).ok_or_else(|| AmqpError::new(CHANNEL_ERROR, format!("channel {ch} is not open")))
    }

    async fn channel_method(&mut self, ch: u16, m: AMQPClass) -> Result<(), AmqpError> {
        use amq_protocol::protocol::channel as c;
        match m {
            AMQPClass::Channel(c::AMQPMethod::Open(_)) => {
                if ch > self.channel_max {
                    return Err(AmqpError::new(
                        CHANNEL_ERROR,
                        format!("channel {ch} is above channel_max {}", self.channel_max),
                    ));
                }
                if self.channels.contains_key(&ch) {
                    return Err(AmqpError::new(CHANNEL_ERROR, format!("channel {ch} is open already")));
                }
                self.channels.insert(ch, Channel::new(ch));
                self.out.method(ch, AMQPClass::Channel(c::AMQPMethod::OpenOk(c::OpenOk {}))).await;
                Ok(())
            }
            AMQPClass::Channel(c::AMQPMethod::Close(_)) => {
                if let Some(mut channel) = self.channels.remove(&ch) {
                    channel.release(self).await;
                }
                self.out.method(ch, AMQPClass::Channel(c::AMQPMethod::CloseOk(c::CloseOk {}))).await;
                Ok(())
            }
            AMQPClass::Channel(c::AMQPMethod::CloseOk(_)) => {
                self.channels.remove(&ch);
                Ok(())
            }
            m => {
                let channel = self.channel(ch)?;
                if channel.closing {
                    // Everything but close-ok is dropped once we closed the channel.
                    return Ok(());
                }
                if channel.awaiting_content() {
                    return Err(AmqpError::new(
                        UNEXPECTED_FRAME,
                        "a method arrived while a message's content was expected",
                    )
                    .on(&m));
                }
                let mut channel = self.channels.remove(&ch).expect("checked above");
                let handled = channel.method(self, m).await;
                self.channels.insert(ch, channel);
                match handled {
                    Ok(()) => Ok(()),
                    Err(channel::Failure::Channel(e)) => {
                        self.fail_channel(ch, e).await;
                        Ok(())
                    }
                    Err(channel::Failure::Connection(e)) => Err(e),
                }
            }
        }
    }

    /// Publish a message whose content is complete.
    async fn finish_publish(&mut self, ch: u16) -> Result<(), AmqpError> {
        let Some(mut channel) = self.channels.remove(&ch) else { return Ok(()) };
        let done = channel.take_complete();
        if let Some(message) = done
            && let Err(e) = channel.publish(self, message).await
        {
            self.channels.insert(ch, channel);
            self.fail_channel(ch, e).await;
            return Ok(());
        }
        self.channels.insert(ch, channel);
        Ok(())
    }

    /// Close a channel with an error: its consumers stop and its deliveries go back.
    async fn fail_channel(&mut self, ch: u16, e: AmqpError) {
        let Some(channel) = self.channels.get_mut(&ch) else { return };
        if channel.closing {
            return;
        }
        channel.closing = true;
        // A publish whose content is still arriving is dropped with the channel.
        channel.abandon_publish();
        tracing::debug!(channel = ch, code = e.code, error = %e.text, "closing an AMQP channel");
        let mut channel = self.channels.remove(&ch).expect("present");
        channel.release(self).await;
        self.channels.insert(ch, channel);
        let close = amq_protocol::protocol::channel::Close {
            reply_code: e.code,
            reply_text: props::short(&e.reply_text()),
            class_id: e.cause.0,
            method_id: e.cause.1,
        };
        self.out.method(ch, AMQPClass::Channel(amq_protocol::protocol::channel::AMQPMethod::Close(close))).await;
    }

    /// The connection ends: every channel hands its deliveries back, and the queues that
    /// live only as long as the connection are deleted.
    async fn release(&mut self) {
        let channels: Vec<Channel> = self.channels.drain().map(|(_, c)| c).collect();
        for mut c in channels {
            c.release(self).await;
        }
        for q in std::mem::take(&mut self.owned_queues) {
            let delete = crate::broker::QueueCommand::Delete { name: q.clone() };
            if let Err(e) = self.execute(Command::Queue(delete)).await
                && e.kind() != ErrorKind::UnknownQueue
            {
                tracing::warn!(queue = %q, error = %e, "cannot delete a queue of a closed AMQP connection");
            }
        }
    }
}

/// Decode a byte string as the AMQP door does, for fuzzing: must never panic and never
/// buffer beyond the frame limit.
#[doc(hidden)]
pub fn fuzz_frames(bytes: &[u8]) -> usize {
    let mut codec = FrameCodec { max: limits::AMQP_FRAME_MAX };
    let mut buf = BytesMut::from(bytes);
    let mut n = 0;
    while let Ok(Some(frame)) = codec.decode(&mut buf) {
        if let AMQPFrame::Header(_, h) = &frame {
            let _ = props::to_headers(&h.properties);
        }
        n += 1;
    }
    n
}

#[cfg(test)]
mod tests {
    use super::*;

    fn encode(frame: &AMQPFrame) -> Vec<u8> {
        cookie_factory::gen_simple(gen_frame(frame), Vec::new()).expect("encodes")
    }

    #[test]
    fn frames_round_trip_and_oversized_ones_are_refused_before_buffering() {
        let publish = AMQPFrame::Method(
            1,
            AMQPClass::Basic(amq_protocol::protocol::basic::AMQPMethod::Publish(
                amq_protocol::protocol::basic::Publish {
                    exchange: "x".into(),
                    routing_key: "k".into(),
                    mandatory: true,
                    immediate: false,
                },
            )),
        );
        let mut buf = BytesMut::from(&encode(&publish)[..]);
        let mut codec = FrameCodec { max: 4096 };
        assert_eq!(codec.decode(&mut buf).expect("decodes"), Some(publish));
        let mut huge = BytesMut::from(&[3u8, 0, 1, 0x7f, 0xff, 0xff, 0xff][..]);
        let e = codec.decode(&mut huge).expect_err("too large");
        assert_eq!(e.code, FRAME_ERROR);
        assert!(huge.capacity() < 1 << 20, "nothing reserved for a frame that is refused");
    }

    #[test]
    fn deeply_nested_field_tables_in_a_maximal_frame_do_not_overflow_the_stack() {
        // Arrays nested as deep as a frame of the largest size allows, in a content header's
        // headers property, parsed on a thread with tokio's default stack.
        let depth = (limits::AMQP_FRAME_MAX - 64) / 5;
        let mut value = Vec::new();
        for _ in 0..depth {
            value.push(b'A');
            value.extend_from_slice(&0u32.to_be_bytes());
        }
        // Fix up lengths from the inside out.
        let mut lens = vec![0u32; depth];
        for i in (0..depth - 1).rev() {
            lens[i] = lens[i + 1] + 5;
        }
        for (i, len) in lens.iter().enumerate() {
            value[i * 5 + 1..i * 5 + 5].copy_from_slice(&len.to_be_bytes());
        }
        let mut table = vec![1u8, b'h'];
        table.extend_from_slice(&value);
        let mut payload = vec![0u8, 60, 0, 0];
        payload.extend_from_slice(&0u64.to_be_bytes());
        payload.extend_from_slice(&0x2000u16.to_be_bytes());
        payload.extend_from_slice(&(table.len() as u32).to_be_bytes());
        payload.extend_from_slice(&table);
        let mut frame = vec![2u8, 0, 1];
        frame.extend_from_slice(&(payload.len() as u32).to_be_bytes());
        frame.extend_from_slice(&payload);
        frame.push(0xCE);
        let parsed =
            std::thread::Builder::new().stack_size(2 << 20).spawn(move || fuzz_frames(&frame)).expect("thread").join();
        assert_eq!(parsed.expect("parsing must not crash the thread"), 0, "refused, not parsed");
    }
}
