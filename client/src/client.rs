//! The Rust client: one TCP connection with pipelined requests, used by the CLI, the
//! benchmarks and the tests.
//!
//! Requests are written in the order [`Client::start`] is called, so a caller that starts
//! produce requests one after another without awaiting keeps their order on the server.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use serde_bytes::ByteBuf;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpStream, ToSocketAddrs};
use tokio::sync::{mpsc, oneshot};
use tokio_util::codec::{FramedRead, FramedWrite};

use crate::tls::ClientTls;
use crate::wire::{
    self, ApplyChange, Binding, ClusterStatus, Delivery, Destination, ExchangeInfo, ExchangeType, FetchPosition,
    FetchedPartition, FetchedRecord, GroupInfo, GroupMembers, Membership, Nack, NewQueueMessage, PipelineSpec,
    PipelineStatus, PluginEntry, PluginInfo, QueueConfig, QueueInfo, Request, RequestFrame, ResetTarget, Response,
    ResponseFrame, Sandbox, ShadowReport, StateEntry, TopicConfig, TopicInfo, WireError, WireRecord,
};

/// Why a client call failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ClientError {
    /// Connecting or talking to the server failed.
    #[error(
        "cannot reach the weir server at {addr}: {error}; is `weir serve` running there? (set --server or WEIR_SERVER)"
    )]
    Connect {
        /// Address tried.
        addr: String,
        /// Why. (Shown in the message, not as a source, so error chains print it once.)
        error: std::io::Error,
    },
    /// The server answered with an error.
    #[error(transparent)]
    Server(#[from] WireError),
    /// The connection closed before the response arrived.
    #[error("the connection to the server closed: {0}")]
    Closed(String),
    /// The server answered something this client does not expect.
    #[error("unexpected response from the server: {0}")]
    Protocol(String),
    /// The TLS handshake failed.
    #[error("TLS handshake with {addr} failed: {error}; {}", tls_hint(error))]
    Tls {
        /// Address tried.
        addr: String,
        /// Why. (Shown in the message, not as a source, so error chains print it once.)
        error: std::io::Error,
    },
}

impl ClientError {
    /// The server's error code, when the server answered with an error.
    pub fn code(&self) -> Option<wire::ErrorCode> {
        match self {
            ClientError::Server(e) => Some(e.code),
            _ => None,
        }
    }
}

/// What to do about a failed TLS handshake, from rustls's reason.
fn tls_hint(error: &std::io::Error) -> &'static str {
    use tokio_rustls::rustls::{CertificateError, Error as TlsError};
    let wrong_name = matches!(
        error.get_ref().and_then(|e| e.downcast_ref::<TlsError>()),
        Some(TlsError::InvalidCertificate(
            CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. }
        ))
    );
    if wrong_name {
        return "the server's certificate does not name the host in --server; connect by a name it carries or pass --tls-server-name";
    }
    let reason = error.to_string();
    if reason.contains("CaUsedAsEndEntity") {
        "the server's certificate is marked as a CA; issue it with basicConstraints CA:FALSE (see the README's Security section)"
    } else {
        "is the server started with --tls-cert, and does --tls-ca hold the CA that signed its certificate?"
    }
}

/// How to connect: a token for servers started with `--auth-token-file`, TLS for servers
/// started with `--tls-cert`.
#[derive(Clone, Default)]
pub struct ConnectOptions {
    /// Sent in `Hello`.
    pub token: Option<String>,
    /// `None`: plaintext.
    pub tls: Option<ClientTls>,
}

type Waiters = Arc<Mutex<Option<HashMap<u64, oneshot::Sender<Result<Response, WireError>>>>>>;

/// A connection to `weir serve`. Cheap to share by reference across tasks.
pub struct Client {
    frames: mpsc::UnboundedSender<Bytes>,
    waiters: Waiters,
    next_id: AtomicU64,
    /// Whatever ended the connection, for errors after the fact.
    closed: Arc<Mutex<Option<String>>>,
}

/// A response on its way.
pub struct Pending {
    rx: oneshot::Receiver<Result<Response, WireError>>,
    closed: Arc<Mutex<Option<String>>>,
}

impl Pending {
    /// Wait for the response.
    pub async fn wait(self) -> Result<Response, ClientError> {
        match self.rx.await {
            Ok(r) => Ok(r?),
            Err(_) => Err(ClientError::Closed(
                self.closed.lock().expect("closed").clone().unwrap_or_else(|| "no reason given".into()),
            )),
        }
    }
}

impl Client {
    /// Connect and say hello.
    pub async fn connect(addr: impl ToSocketAddrs + std::fmt::Display) -> Result<Client, ClientError> {
        Client::connect_with_token(addr, None).await
    }

    /// Connect and say hello with a token (for servers started with `--auth-token-file`).
    pub async fn connect_with_token(
        addr: impl ToSocketAddrs + std::fmt::Display,
        token: Option<String>,
    ) -> Result<Client, ClientError> {
        Client::connect_with(addr, ConnectOptions { token, tls: None }).await
    }

    /// Connect with a token and/or TLS, and say hello.
    pub async fn connect_with(
        addr: impl ToSocketAddrs + std::fmt::Display,
        options: ConnectOptions,
    ) -> Result<Client, ClientError> {
        let shown = addr.to_string();
        let stream =
            TcpStream::connect(addr).await.map_err(|error| ClientError::Connect { addr: shown.clone(), error })?;
        let _ = stream.set_nodelay(true);
        let plaintext = options.tls.is_none();
        let client = match options.tls {
            None => {
                let (rd, wr) = stream.into_split();
                Client::over(rd, wr)
            }
            Some(tls) => {
                let connector = tokio_rustls::TlsConnector::from(tls.config);
                let stream = connector
                    .connect(tls.server_name, stream)
                    .await
                    .map_err(|error| ClientError::Tls { addr: shown.clone(), error })?;
                let (rd, wr) = tokio::io::split(stream);
                Client::over(rd, wr)
            }
        };
        let client_name = format!("weir-client {}", env!("CARGO_PKG_VERSION"));
        let hello = Request::Hello { version: wire::PROTOCOL_VERSION, client: client_name, token: options.token };
        match client.request(hello).await {
            Ok(_) => Ok(client),
            // A TLS server answers a plaintext hello with TLS bytes, not a frame we can read.
            Err(ClientError::Closed(reason)) if plaintext && reason.starts_with("read failed") => {
                Err(ClientError::Closed(format!(
                    "{reason} (during the handshake with {shown}: if the server was started with --tls-cert, connect with --tls-ca)"
                )))
            }
            Err(e) => Err(e),
        }
    }

    /// The reader and writer tasks over one connection's halves.
    fn over<R, W>(rd: R, wr: W) -> Client
    where
        R: AsyncRead + Unpin + Send + 'static,
        W: AsyncWrite + Unpin + Send + 'static,
    {
        let (frames, rx) = mpsc::unbounded_channel();
        let waiters: Waiters = Arc::new(Mutex::new(Some(HashMap::new())));
        let closed = Arc::new(Mutex::new(None));
        tokio::spawn(write_frames(FramedWrite::new(wr, wire::codec(wire::MAX_FRAME_BYTES * 4)), rx));
        tokio::spawn(read_frames(
            FramedRead::new(rd, wire::codec(wire::MAX_FRAME_BYTES * 4)),
            waiters.clone(),
            closed.clone(),
        ));
        Client { frames, waiters, next_id: AtomicU64::new(1), closed }
    }

    /// Send a request now; the response comes back through the returned [`Pending`].
    pub fn start(&self, request: Request) -> Result<Pending, ClientError> {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let body = wire::encode(&RequestFrame { id, request })?;
        let (tx, rx) = oneshot::channel();
        match self.waiters.lock().expect("waiters").as_mut() {
            Some(w) => w.insert(id, tx),
            None => return Err(ClientError::Closed(self.closed_reason())),
        };
        self.frames.send(body).map_err(|_| ClientError::Closed(self.closed_reason()))?;
        Ok(Pending { rx, closed: self.closed.clone() })
    }

    /// Send a request and wait for its response.
    pub async fn request(&self, request: Request) -> Result<Response, ClientError> {
        self.start(request)?.wait().await
    }

    fn closed_reason(&self) -> String {
        self.closed.lock().expect("closed").clone().unwrap_or_else(|| "connection closed".into())
    }

    /// Send `request` and take its typed reply: every call below is this, once.
    pub async fn call<T: Reply>(&self, request: Request) -> Result<T, ClientError> {
        T::pick(self.request(request).await?)
    }

    /// Create a topic.
    pub async fn create_topic(&self, name: &str, config: TopicConfig) -> Result<TopicInfo, ClientError> {
        self.call(Request::CreateTopic { name: name.into(), config }).await
    }

    /// Delete a topic.
    pub async fn delete_topic(&self, name: &str) -> Result<(), ClientError> {
        self.call(Request::DeleteTopic { name: name.into() }).await
    }

    /// Every topic.
    pub async fn list_topics(&self) -> Result<Vec<TopicInfo>, ClientError> {
        self.call(Request::ListTopics).await
    }

    /// One topic.
    pub async fn describe_topic(&self, name: &str) -> Result<TopicInfo, ClientError> {
        self.call(Request::DescribeTopic { name: name.into() }).await
    }

    /// Append records; returns `(partition, offset)` per record once durable.
    pub async fn produce(&self, topic: &str, records: Vec<WireRecord>) -> Result<Vec<(u32, u64)>, ClientError> {
        produced(self.start_produce(topic, None, records)?.wait().await?)
    }

    /// Start a produce without waiting (pipelining); see [`produced`] for the result.
    pub fn start_produce(
        &self,
        topic: &str,
        partition: Option<u32>,
        records: Vec<WireRecord>,
    ) -> Result<Pending, ClientError> {
        self.start(Request::Produce { topic: topic.into(), partition, records })
    }

    /// Read from several partitions, waiting up to `max_wait` for data.
    pub async fn fetch(
        &self,
        topic: &str,
        positions: Vec<FetchPosition>,
        max_records: u32,
        max_wait: Duration,
    ) -> Result<Vec<FetchedPartition>, ClientError> {
        self.call(Request::Fetch {
            topic: topic.into(),
            partitions: positions,
            max_records,
            max_bytes: wire::MAX_FETCH_BYTES as u32,
            max_wait_ms: max_wait.as_millis() as u64,
        })
        .await
    }

    /// Every record of a topic from the log start up to the high watermarks at the time of
    /// the call, as `(partition, offset, record)`, partition by partition.
    pub async fn read_all(&self, topic: &str) -> Result<Vec<(u32, u64, FetchedRecord)>, ClientError> {
        let info = self.describe_topic(topic).await?;
        let mut out = Vec::new();
        for (p, (start, end)) in info.partitions.iter().enumerate() {
            let mut offset = *start;
            while offset < *end {
                let pos = vec![FetchPosition { partition: p as u32, offset }];
                let parts = self.fetch(topic, pos, 50_000, Duration::ZERO).await?;
                let Some(part) = parts.into_iter().next().filter(|p| !p.records.is_empty()) else {
                    break;
                };
                for (i, r) in part.records.into_iter().enumerate() {
                    out.push((p as u32, part.first_offset + i as u64, r));
                }
                offset = out.last().map_or(offset, |(_, o, _)| o + 1);
            }
        }
        Ok(out)
    }

    /// Store a group's next offsets (an admin commit: a seek).
    pub async fn commit_offsets(&self, group: &str, topic: &str, offsets: Vec<(u32, u64)>) -> Result<(), ClientError> {
        self.call(Request::CommitOffsets { group: group.into(), topic: topic.into(), offsets, member: None }).await
    }

    /// Send a dead-letter topic's records not replayed before back to their original topics
    /// (or `to`); how many were sent. Records and the replay's progress commit together.
    pub async fn replay_dead_letters(&self, topic: &str, to: Option<&str>) -> Result<u64, ClientError> {
        self.call(Request::ReplayDeadLetters { topic: topic.into(), to: to.map(str::to_string) }).await
    }

    /// A group's committed next offset per partition.
    pub async fn fetch_offsets(&self, group: &str, topic: &str) -> Result<Vec<Option<u64>>, ClientError> {
        self.call(Request::FetchOffsets { group: group.into(), topic: topic.into() }).await
    }

    /// Consumer groups with their lag.
    pub async fn list_groups(&self) -> Result<Vec<GroupInfo>, ClientError> {
        self.call(Request::ListGroups).await
    }

    /// Deploy a plugin version with the default sandbox; it becomes live.
    pub async fn deploy_plugin(&self, name: &str, wasm: Vec<u8>) -> Result<PluginInfo, ClientError> {
        self.deploy_plugin_with(name, wasm, None, false).await
    }

    /// Deploy a plugin version with `sandbox` limits, live or as the shadow.
    pub async fn deploy_plugin_with(
        &self,
        name: &str,
        wasm: Vec<u8>,
        sandbox: Option<Sandbox>,
        shadow: bool,
    ) -> Result<PluginInfo, ClientError> {
        use crate::wire::PLUGIN_UPLOAD_PART_BYTES;
        if wasm.len() <= PLUGIN_UPLOAD_PART_BYTES {
            let wasm = ByteBuf::from(wasm);
            return self.call(Request::DeployPlugin { name: name.into(), wasm, sandbox, shadow, upload: None }).await;
        }
        // Too large for one frame (Python and JavaScript plugins embed their interpreter):
        // in parts, then deployed as one.
        let total = wasm.len() as u64;
        // Random per upload (std's hasher keys are random per process and per instance).
        let upload = std::hash::BuildHasher::hash_one(&std::collections::hash_map::RandomState::new(), total);
        for (i, part) in wasm.chunks(PLUGIN_UPLOAD_PART_BYTES).enumerate() {
            let offset = (i * PLUGIN_UPLOAD_PART_BYTES) as u64;
            let bytes = ByteBuf::from(part.to_vec());
            self.call::<()>(Request::UploadPluginPart { name: name.into(), upload, offset, total, bytes }).await?;
        }
        let (wasm, upload) = (ByteBuf::new(), Some(upload));
        self.call(Request::DeployPlugin { name: name.into(), wasm, sandbox, shadow, upload }).await
    }

    /// Every plugin with its live and shadow versions.
    pub async fn list_plugins(&self) -> Result<Vec<PluginEntry>, ClientError> {
        self.call(Request::ListPlugins).await
    }

    /// Every version of a plugin, oldest first.
    pub async fn plugin_versions(&self, name: &str) -> Result<Vec<PluginInfo>, ClientError> {
        self.call(Request::PluginVersions { name: name.into() }).await
    }

    /// One version: `NAME` (live) or `NAME@V`.
    pub async fn describe_plugin(&self, reference: &str) -> Result<PluginInfo, ClientError> {
        self.call(Request::DescribePlugin { reference: reference.into() }).await
    }

    /// Make an earlier version live again.
    pub async fn rollback_plugin(&self, name: &str, to: Option<u32>) -> Result<PluginInfo, ClientError> {
        self.call(Request::RollbackPlugin { name: name.into(), to }).await
    }

    /// Make the shadow version live.
    pub async fn promote_plugin(&self, name: &str) -> Result<PluginInfo, ClientError> {
        self.call(Request::PromotePlugin { name: name.into() }).await
    }

    /// Delete every version of a plugin no pipeline uses.
    pub async fn remove_plugin(&self, name: &str) -> Result<(), ClientError> {
        self.call(Request::RemovePlugin { name: name.into() }).await
    }

    /// How the shadow compares with the live version.
    pub async fn plugin_diff(&self, name: &str) -> Result<ShadowReport, ClientError> {
        self.call(Request::PluginDiff { name: name.into() }).await
    }

    /// Create a pipeline.
    pub async fn create_pipeline(&self, spec: PipelineSpec) -> Result<PipelineStatus, ClientError> {
        self.call(Request::CreatePipeline { spec }).await
    }

    /// Cluster mode: nodes, partition owners, NATS health.
    pub async fn cluster_status(&self) -> Result<ClusterStatus, ClientError> {
        self.call(Request::ClusterStatus).await
    }

    /// Every pipeline.
    pub async fn list_pipelines(&self) -> Result<Vec<PipelineStatus>, ClientError> {
        self.call(Request::ListPipelines).await
    }

    /// One pipeline's status.
    pub async fn pipeline_status(&self, name: &str) -> Result<PipelineStatus, ClientError> {
        self.call(Request::PipelineStatus { name: name.into() }).await
    }

    /// Create a pipeline or bring it to `spec`.
    pub async fn apply_pipeline(&self, spec: PipelineSpec) -> Result<(PipelineStatus, ApplyChange), ClientError> {
        self.call(Request::ApplyPipeline { spec }).await
    }

    /// Pause a pipeline.
    pub async fn pause_pipeline(&self, name: &str) -> Result<PipelineStatus, ClientError> {
        self.call(Request::PausePipeline { name: name.into() }).await
    }

    /// Resume a paused or halted pipeline.
    pub async fn resume_pipeline(&self, name: &str) -> Result<PipelineStatus, ClientError> {
        self.call(Request::ResumePipeline { name: name.into() }).await
    }

    /// Move a pipeline's source offsets for replay.
    pub async fn reset_pipeline(
        &self,
        name: &str,
        to: ResetTarget,
        reset_state: bool,
    ) -> Result<PipelineStatus, ClientError> {
        self.call(Request::ResetPipeline { name: name.into(), to, reset_state }).await
    }

    /// Delete a pipeline.
    pub async fn delete_pipeline(&self, name: &str) -> Result<(), ClientError> {
        self.call(Request::DeletePipeline { name: name.into() }).await
    }

    /// A step's state under `key`, per partition.
    pub async fn state_get(&self, pipeline: &str, step: usize, key: &[u8]) -> Result<Vec<StateEntry>, ClientError> {
        self.call(Request::StateGet { pipeline: pipeline.into(), step, key: ByteBuf::from(key.to_vec()) }).await
    }

    /// A step's state entries under `prefix`.
    pub async fn state_list(
        &self,
        pipeline: &str,
        step: usize,
        prefix: &[u8],
        limit: usize,
    ) -> Result<Vec<StateEntry>, ClientError> {
        self.call(Request::StateList { pipeline: pipeline.into(), step, prefix: ByteBuf::from(prefix.to_vec()), limit })
            .await
    }

    /// Delete a key from a step's state; returns how many partitions had it.
    pub async fn state_delete(&self, pipeline: &str, step: usize, key: &[u8]) -> Result<u64, ClientError> {
        self.call(Request::StateDelete { pipeline: pipeline.into(), step, key: ByteBuf::from(key.to_vec()) }).await
    }

    /// Create a queue.
    pub async fn create_queue(&self, name: &str, config: QueueConfig) -> Result<QueueInfo, ClientError> {
        self.call(Request::CreateQueue { name: name.into(), config }).await
    }

    /// Delete a queue.
    pub async fn delete_queue(&self, name: &str) -> Result<(), ClientError> {
        self.call(Request::DeleteQueue { name: name.into() }).await
    }

    /// Remove every message; returns how many.
    pub async fn purge_queue(&self, name: &str) -> Result<u64, ClientError> {
        self.call(Request::PurgeQueue { name: name.into() }).await
    }

    /// Every queue.
    pub async fn list_queues(&self) -> Result<Vec<QueueInfo>, ClientError> {
        self.call(Request::ListQueues).await
    }

    /// One queue.
    pub async fn describe_queue(&self, name: &str) -> Result<QueueInfo, ClientError> {
        self.call(Request::DescribeQueue { name: name.into() }).await
    }

    /// Enqueue messages durably; per message, whether it was enqueued (not a dedup repeat).
    pub async fn queue_send(&self, queue: &str, messages: Vec<NewQueueMessage>) -> Result<Vec<bool>, ClientError> {
        self.call(Request::QueueSend { queue: queue.into(), messages }).await
    }

    /// Receive up to `max` messages, waiting up to `wait` for the first.
    pub async fn queue_receive(&self, queue: &str, max: usize, wait: Duration) -> Result<Vec<Delivery>, ClientError> {
        let wait_ms = wait.as_millis() as u64;
        self.call(Request::QueueReceive { queue: queue.into(), max, wait_ms, visibility_ms: None }).await
    }

    /// Acknowledge deliveries.
    pub async fn queue_ack(&self, queue: &str, receipts: Vec<String>) -> Result<(), ClientError> {
        self.call(Request::QueueAck { queue: queue.into(), receipts }).await
    }

    /// Hand deliveries back.
    pub async fn queue_nack(&self, queue: &str, receipts: Vec<String>, how: Nack) -> Result<(), ClientError> {
        self.call(Request::QueueNack { queue: queue.into(), receipts, how }).await
    }

    /// Extend deliveries' visibility to `timeout` from now.
    pub async fn queue_extend(&self, queue: &str, receipts: Vec<String>, timeout: Duration) -> Result<(), ClientError> {
        let timeout_ms = timeout.as_millis() as u64;
        self.call(Request::QueueExtend { queue: queue.into(), receipts, timeout_ms }).await
    }

    /// Join a consumer group.
    pub async fn join_group(
        &self,
        group: &str,
        topic: &str,
        member: Option<String>,
        session: Duration,
    ) -> Result<Membership, ClientError> {
        let session_timeout_ms = session.as_millis() as u64;
        self.call(Request::JoinGroup { group: group.into(), topic: topic.into(), member, session_timeout_ms }).await
    }

    /// Heartbeat; returns the current assignment.
    pub async fn heartbeat(&self, group: &str, topic: &str, member: &str) -> Result<Membership, ClientError> {
        self.call(Request::Heartbeat { group: group.into(), topic: topic.into(), member: member.into() }).await
    }

    /// Leave a consumer group.
    pub async fn leave_group(&self, group: &str, topic: &str, member: &str) -> Result<(), ClientError> {
        self.call(Request::LeaveGroup { group: group.into(), topic: topic.into(), member: member.into() }).await
    }

    /// Commit offsets as a group member (refused after a rebalance).
    pub async fn commit_as_member(
        &self,
        group: &str,
        topic: &str,
        m: &Membership,
        offsets: Vec<(u32, u64)>,
    ) -> Result<(), ClientError> {
        let member = Some((m.member_id.clone(), m.generation));
        self.call(Request::CommitOffsets { group: group.into(), topic: topic.into(), offsets, member }).await
    }

    /// Members of every group.
    pub async fn describe_groups(&self) -> Result<Vec<GroupMembers>, ClientError> {
        self.call(Request::DescribeGroups).await
    }

    /// Per partition, the first offset at or after `timestamp_ms`.
    pub async fn offsets_for_time(&self, topic: &str, timestamp_ms: u64) -> Result<Vec<Option<u64>>, ClientError> {
        self.call(Request::OffsetsForTime { topic: topic.into(), timestamp_ms }).await
    }

    /// Create an exchange.
    pub async fn create_exchange(
        &self,
        name: &str,
        kind: ExchangeType,
        alternate: Option<String>,
    ) -> Result<ExchangeInfo, ClientError> {
        self.call(Request::CreateExchange { name: name.into(), kind, alternate }).await
    }

    /// Delete an exchange.
    pub async fn delete_exchange(&self, name: &str) -> Result<(), ClientError> {
        self.call(Request::DeleteExchange { name: name.into() }).await
    }

    /// Bind a destination to an exchange.
    pub async fn bind(&self, exchange: &str, binding: Binding) -> Result<ExchangeInfo, ClientError> {
        self.call(Request::Bind { exchange: exchange.into(), binding }).await
    }

    /// Remove bindings to a destination.
    pub async fn unbind(
        &self,
        exchange: &str,
        destination: Destination,
        key: Option<String>,
    ) -> Result<ExchangeInfo, ClientError> {
        self.call(Request::Unbind { exchange: exchange.into(), destination, key }).await
    }

    /// Every exchange.
    pub async fn list_exchanges(&self) -> Result<Vec<ExchangeInfo>, ClientError> {
        self.call(Request::ListExchanges).await
    }

    /// Publish through an exchange; returns the destinations.
    pub async fn publish(
        &self,
        exchange: &str,
        routing_key: &str,
        value: Vec<u8>,
        headers: Vec<(String, String)>,
    ) -> Result<Vec<String>, ClientError> {
        let value = ByteBuf::from(value);
        self.call(Request::Publish {
            exchange: exchange.into(),
            routing_key: routing_key.into(),
            key: None,
            value,
            headers,
        })
        .await
    }

    /// Send a request to `topic` with a correlation id and reply-to, and wait up to `timeout`
    /// for the reply.
    pub async fn request_reply(
        &self,
        topic: &str,
        value: Vec<u8>,
        headers: Vec<(String, String)>,
        timeout: Duration,
    ) -> Result<FetchedRecord, ClientError> {
        let timeout_ms = timeout.as_millis() as u64;
        self.call(Request::Request { topic: topic.into(), key: None, value: ByteBuf::from(value), headers, timeout_ms })
            .await
    }
}

/// The positions in a produce response.
pub fn produced(response: Response) -> Result<Vec<(u32, u64)>, ClientError> {
    Reply::pick(response)
}

/// A typed reply: the one place a response variant is picked.
pub trait Reply: Sized {
    /// `response` as this reply, or a protocol error naming what came instead.
    fn pick(response: Response) -> Result<Self, ClientError>;
}

macro_rules! replies {
    ($($t:ty => $pattern:pat => $value:expr),* $(,)?) => {$(
        impl Reply for $t {
            fn pick(response: Response) -> Result<Self, ClientError> {
                match response {
                    $pattern => Ok($value),
                    other => Err(unexpected(&other)),
                }
            }
        }
    )*};
}

replies! {
    () => Response::Ok => (),
    TopicInfo => Response::Topic(t) => t,
    Vec<TopicInfo> => Response::Topics(t) => t,
    Vec<(u32, u64)> => Response::Produced { positions } => positions,
    Vec<FetchedPartition> => Response::Fetched { partitions } => partitions,
    Vec<Option<u64>> => Response::Offsets(o) => o,
    Vec<GroupInfo> => Response::Groups(g) => g,
    PluginInfo => Response::Plugin(p) => p,
    Vec<PluginEntry> => Response::Plugins(p) => p,
    Vec<PluginInfo> => Response::PluginVersions(v) => v,
    ShadowReport => Response::ShadowDiff(d) => d,
    PipelineStatus => Response::Pipeline(p) => p,
    ClusterStatus => Response::ClusterStatus(c) => c,
    Vec<PipelineStatus> => Response::Pipelines(p) => p,
    (PipelineStatus, ApplyChange) => Response::Applied { status, change } => (status, change),
    Vec<StateEntry> => Response::State(s) => s,
    u64 => Response::Count(n) => n,
    QueueInfo => Response::Queue(q) => q,
    Vec<QueueInfo> => Response::Queues(q) => q,
    Vec<bool> => Response::Sent(s) => s,
    Vec<Delivery> => Response::Deliveries(d) => d,
    Membership => Response::Membership(m) => m,
    Vec<GroupMembers> => Response::GroupMembers(g) => g,
    ExchangeInfo => Response::Exchange(e) => e,
    Vec<ExchangeInfo> => Response::Exchanges(e) => e,
    Vec<String> => Response::Published(d) => d,
    FetchedRecord => Response::Reply(r) => r,
}

fn unexpected(r: &Response) -> ClientError {
    ClientError::Protocol(format!("{r:?}").chars().take(200).collect())
}

async fn write_frames<W: AsyncWrite + Unpin>(
    mut sink: FramedWrite<W, tokio_util::codec::LengthDelimitedCodec>,
    mut rx: mpsc::UnboundedReceiver<Bytes>,
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
    // The client was dropped: shut the connection down (over TLS, with close_notify), so the
    // server frees its slot at once rather than keeping an idle connection.
    let _ = SinkExt::<Bytes>::close(&mut sink).await;
}

async fn read_frames<R: AsyncRead + Unpin>(
    mut frames: FramedRead<R, tokio_util::codec::LengthDelimitedCodec>,
    waiters: Waiters,
    closed: Arc<Mutex<Option<String>>>,
) {
    let reason = loop {
        let frame = match frames.next().await {
            None => break "the server closed the connection".to_string(),
            Some(Err(e)) => break format!("read failed: {e}"),
            Some(Ok(f)) => f,
        };
        let ResponseFrame { id, result } = match wire::decode::<ResponseFrame>(&frame) {
            Ok(r) => r,
            Err(e) => break format!("undecodable response: {e}"),
        };
        if id == 0 {
            // A connection-level error: the server closes after it.
            break match result {
                Err(e) => e.message,
                Ok(_) => "unexpected frame with id 0".into(),
            };
        }
        let waiter = waiters.lock().expect("waiters").as_mut().and_then(|w| w.remove(&id));
        if let Some(tx) = waiter {
            let _ = tx.send(result);
        }
    };
    *closed.lock().expect("closed") = Some(reason);
    // Dropping the senders wakes every waiter with `Closed`.
    waiters.lock().expect("waiters").take();
}
