//! Each Kafka API as commands on the broker, and the broker's replies as Kafka responses.
//! Nothing here decides what a request may do (the broker's access check does) or stores
//! anything itself: this file only translates.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures_util::future::{join_all, select_all};
use kafka_protocol::messages::api_versions_response::{ApiVersion, ApiVersionsResponse};
use kafka_protocol::messages::create_topics_response::{CreatableTopicResult, CreateTopicsResponse};
use kafka_protocol::messages::delete_topics_response::{DeletableTopicResult, DeleteTopicsResponse};
use kafka_protocol::messages::describe_configs_response::{
    DescribeConfigsResourceResult, DescribeConfigsResponse, DescribeConfigsResult,
};
use kafka_protocol::messages::describe_groups_response::{
    DescribeGroupsResponse, DescribedGroup, DescribedGroupMember,
};
use kafka_protocol::messages::fetch_response::{FetchResponse, FetchableTopicResponse, PartitionData};
use kafka_protocol::messages::find_coordinator_response::{Coordinator, FindCoordinatorResponse};
use kafka_protocol::messages::join_group_response::{JoinGroupResponse, JoinGroupResponseMember};
use kafka_protocol::messages::leave_group_response::{LeaveGroupResponse, MemberResponse};
use kafka_protocol::messages::list_groups_response::{ListGroupsResponse, ListedGroup};
use kafka_protocol::messages::list_offsets_response::{
    ListOffsetsPartitionResponse, ListOffsetsResponse, ListOffsetsTopicResponse,
};
use kafka_protocol::messages::metadata_response::{
    MetadataResponse, MetadataResponseBroker, MetadataResponsePartition, MetadataResponseTopic,
};
use kafka_protocol::messages::offset_commit_response::{
    OffsetCommitResponse, OffsetCommitResponsePartition, OffsetCommitResponseTopic,
};
use kafka_protocol::messages::offset_fetch_response::{
    OffsetFetchResponse, OffsetFetchResponsePartition, OffsetFetchResponseTopic,
};
use kafka_protocol::messages::offset_for_leader_epoch_response::{
    EpochEndOffset, OffsetForLeaderEpochResponse, OffsetForLeaderTopicResult,
};
use kafka_protocol::messages::produce_request::PartitionProduceData;
use kafka_protocol::messages::produce_response::{PartitionProduceResponse, ProduceResponse, TopicProduceResponse};
use kafka_protocol::messages::{
    ApiKey, BrokerId, CreateTopicsRequest, DeleteTopicsRequest, DescribeConfigsRequest, DescribeGroupsRequest,
    FetchRequest, FindCoordinatorRequest, GroupId, HeartbeatRequest, HeartbeatResponse, InitProducerIdRequest,
    InitProducerIdResponse, JoinGroupRequest, LeaveGroupRequest, ListOffsetsRequest, MetadataRequest,
    OffsetCommitRequest, OffsetFetchRequest, OffsetForLeaderEpochRequest, ProduceRequest, ProducerId, RequestKind,
    SaslAuthenticateRequest, SaslAuthenticateResponse, SaslHandshakeRequest, SaslHandshakeResponse, SyncGroupRequest,
    SyncGroupResponse, TopicName,
};
use kafka_protocol::protocol::StrBytes;

use super::records::{self, BadBatch};
use super::{Close, KafkaSettings, Sasl, encode};
use crate::auth::Identity;
use crate::broker::{
    Broker, BrokerError, Command, ErrorKind, FetchPosition, GroupCommand, Reply, TopicCommand, TopicInfo,
};
use crate::classic_groups::JoinRequest;
use crate::limits;
use crate::types::{SubjectStrategy, TopicConfig, Validation};

/// A broker command under way.
type Started = Pin<Box<dyn Future<Output = crate::broker::Result<Reply>> + Send>>;

/// A response on its way (`None`: nothing is sent back).
pub(crate) type Answer = Pin<Box<dyn Future<Output = Option<Bytes>> + Send>>;

/// The request being answered.
#[derive(Debug, Clone)]
pub(crate) struct Call {
    pub api: ApiKey,
    pub version: i16,
    pub correlation: i32,
    pub client_id: Option<String>,
}

/// The APIs served, with the versions (the `kafka-protocol` crate encodes each of them).
const SUPPORTED: &[(ApiKey, i16, i16)] = &[
    (ApiKey::Produce, 3, 9),
    (ApiKey::Fetch, 4, 12),
    (ApiKey::ListOffsets, 1, 7),
    (ApiKey::Metadata, 4, 12),
    (ApiKey::OffsetCommit, 2, 8),
    (ApiKey::OffsetFetch, 1, 7),
    (ApiKey::FindCoordinator, 0, 4),
    (ApiKey::JoinGroup, 0, 7),
    (ApiKey::Heartbeat, 0, 4),
    (ApiKey::LeaveGroup, 0, 4),
    (ApiKey::SyncGroup, 0, 5),
    (ApiKey::DescribeGroups, 0, 5),
    (ApiKey::ListGroups, 0, 4),
    (ApiKey::SaslHandshake, 1, 1),
    (ApiKey::ApiVersions, 0, 3),
    (ApiKey::CreateTopics, 2, 7),
    (ApiKey::DeleteTopics, 1, 6),
    (ApiKey::InitProducerId, 0, 4),
    (ApiKey::OffsetForLeaderEpoch, 2, 4),
    (ApiKey::DescribeConfigs, 1, 4),
    (ApiKey::SaslAuthenticate, 0, 2),
];

/// Whether `version` of `api` is served.
pub(crate) fn supports(api: ApiKey, version: i16) -> bool {
    SUPPORTED.iter().any(|(a, lo, hi)| *a == api && (*lo..=*hi).contains(&version))
}

fn versions() -> Vec<ApiVersion> {
    SUPPORTED
        .iter()
        .map(|(api, lo, hi)| {
            ApiVersion::default().with_api_key(*api as i16).with_min_version(*lo).with_max_version(*hi)
        })
        .collect()
}

/// ApiVersions in a version weir does not speak: version 0, UNSUPPORTED_VERSION, the ranges.
pub(crate) fn unsupported_api_versions(correlation: i32) -> Bytes {
    let call = Call { api: ApiKey::ApiVersions, version: 0, correlation, client_id: None };
    encode(&call, &ApiVersionsResponse::default().with_error_code(UNSUPPORTED_VERSION).with_api_keys(versions()))
}

// Kafka's error codes (the protocol's numbers).
const NONE: i16 = 0;
const UNKNOWN_SERVER_ERROR: i16 = -1;
const OFFSET_OUT_OF_RANGE: i16 = 1;
const CORRUPT_MESSAGE: i16 = 2;
const UNKNOWN_TOPIC_OR_PARTITION: i16 = 3;
const NOT_LEADER_OR_FOLLOWER: i16 = 6;
const NOT_COORDINATOR: i16 = 16;
const REQUEST_TIMED_OUT: i16 = 7;
const MESSAGE_TOO_LARGE: i16 = 10;
const INVALID_TOPIC_EXCEPTION: i16 = 17;
const ILLEGAL_GENERATION: i16 = 22;
const INCONSISTENT_GROUP_PROTOCOL: i16 = 23;
const UNKNOWN_MEMBER_ID: i16 = 25;
const INVALID_SESSION_TIMEOUT: i16 = 26;
const REBALANCE_IN_PROGRESS: i16 = 27;
const TOPIC_AUTHORIZATION_FAILED: i16 = 29;
const GROUP_AUTHORIZATION_FAILED: i16 = 30;
const UNSUPPORTED_SASL_MECHANISM: i16 = 33;
const ILLEGAL_SASL_STATE: i16 = 34;
const UNSUPPORTED_VERSION: i16 = 35;
const TOPIC_ALREADY_EXISTS: i16 = 36;
const INVALID_PARTITIONS: i16 = 37;
const INVALID_REQUEST: i16 = 42;
const OUT_OF_ORDER_SEQUENCE_NUMBER: i16 = 45;
const DUPLICATE_SEQUENCE_NUMBER: i16 = 46;
const INVALID_PRODUCER_EPOCH: i16 = 47;
const TRANSACTIONAL_ID_AUTHORIZATION_FAILED: i16 = 53;
const KAFKA_STORAGE_ERROR: i16 = 56;
const SASL_AUTHENTICATION_FAILED: i16 = 58;
const INVALID_RECORD: i16 = 87;

/// The Kafka code for a broker error: the one mapping from weir's kinds.
fn code(e: &BrokerError) -> i16 {
    match e.kind() {
        ErrorKind::UnknownTopic => UNKNOWN_TOPIC_OR_PARTITION,
        ErrorKind::TopicExists => TOPIC_ALREADY_EXISTS,
        ErrorKind::MessageTooLarge => MESSAGE_TOO_LARGE,
        ErrorKind::InvalidRecord => INVALID_RECORD,
        ErrorKind::Forbidden => TOPIC_AUTHORIZATION_FAILED,
        ErrorKind::Unauthenticated => SASL_AUTHENTICATION_FAILED,
        ErrorKind::Busy | ErrorKind::Timeout => REQUEST_TIMED_OUT,
        ErrorKind::Storage | ErrorKind::DiskFull => KAFKA_STORAGE_ERROR,
        ErrorKind::ShuttingDown => NOT_LEADER_OR_FOLLOWER,
        ErrorKind::NotFound => UNKNOWN_MEMBER_ID,
        ErrorKind::Rebalanced => ILLEGAL_GENERATION,
        ErrorKind::RebalanceInProgress => REBALANCE_IN_PROGRESS,
        ErrorKind::InconsistentProtocol => INCONSISTENT_GROUP_PROTOCOL,
        ErrorKind::ProducerFenced => INVALID_PRODUCER_EPOCH,
        ErrorKind::OutOfOrderSequence => OUT_OF_ORDER_SEQUENCE_NUMBER,
        ErrorKind::DuplicateSequence => DUPLICATE_SEQUENCE_NUMBER,
        ErrorKind::Internal => UNKNOWN_SERVER_ERROR,
        _ => INVALID_REQUEST,
    }
}

/// The Kafka code for a refused group operation: a missing grant is the group's.
fn group_code(e: &BrokerError) -> i16 {
    if e.kind() == ErrorKind::Forbidden { GROUP_AUTHORIZATION_FAILED } else { code(e) }
}

fn text(s: impl Into<String>) -> StrBytes {
    StrBytes::from_string(s.into())
}

fn topic_name(s: &str) -> TopicName {
    TopicName(text(s))
}

/// A connection's state, and the broker it talks to.
pub(crate) struct Session {
    pub broker: Arc<Broker>,
    pub settings: Arc<KafkaSettings>,
    pub sasl: Sasl,
}

/// One request's context: who asks, through which broker.
#[derive(Clone)]
struct Ctx {
    broker: Arc<Broker>,
    caller: Option<Arc<Identity>>,
    settings: Arc<KafkaSettings>,
    call: Call,
}

impl Ctx {
    /// Start `command` now (in arrival order); the returned future finishes it.
    fn start(&self, command: Command) -> Started {
        self.broker.execute(self.caller.as_ref(), command).future
    }

    fn answer<M: kafka_protocol::protocol::Encodable>(&self, body: &M) -> Option<Bytes> {
        Some(encode(&self.call, body))
    }

    /// Whether the request's version has fields of version `v`: the crate refuses to encode
    /// a field its version lacks, so later fields are set only where they exist.
    fn since(&self, v: i16) -> bool {
        self.call.version >= v
    }

    fn node(&self) -> (BrokerId, StrBytes, i32) {
        let id = self.broker.store.cluster().map_or(0, |c| kafka_node_id(&c.node));
        (BrokerId(id), text(self.settings.advertise.0.clone()), i32::from(self.settings.advertise.1))
    }

    /// Cluster mode: every live node with a Kafka listener as `(weir id, Kafka node id, host,
    /// port)`; a single node: this one.
    fn brokers(&self) -> Vec<(String, BrokerId, StrBytes, i32)> {
        let me = self.node();
        let Some(cluster) = self.broker.store.cluster() else { return vec![(String::new(), me.0, me.1, me.2)] };
        let mut out: Vec<_> = cluster
            .live_nodes()
            .into_iter()
            .filter_map(|(id, info)| {
                let (host, port) = info.kafka?.rsplit_once(':').map(|(h, p)| (h.to_string(), p.parse().ok()))?;
                Some((id.clone(), BrokerId(kafka_node_id(&id)), text(host), port?))
            })
            .collect();
        if !out.iter().any(|b| b.1 == me.0) {
            out.push((cluster.node.clone(), me.0, me.1, me.2));
        }
        out
    }

    /// Cluster mode: whether another node coordinates `group` now (its membership lives
    /// there alone; the client looks the coordinator up again on NOT_COORDINATOR).
    fn elsewhere(&self, group: &str) -> bool {
        self.broker.store.cluster().is_some()
            && self.placed(&self.brokers(), &format!("group:{group}"), 0).0 != self.node().0
    }

    /// The broker answering for `key` (a topic partition's leader, a group's coordinator):
    /// spread over the live nodes by rendezvous hashing. Any node serves any partition (the
    /// data is in JetStream); a group's membership lives on its coordinator alone.
    fn placed(
        &self,
        brokers: &[(String, BrokerId, StrBytes, i32)],
        key: &str,
        partition: u32,
    ) -> (BrokerId, StrBytes, i32) {
        let owner = crate::cluster::owner_of(brokers.iter().map(|b| b.0.as_str()), key, partition);
        match brokers.iter().find(|b| Some(b.0.as_str()) == owner) {
            Some((_, id, host, port)) => (*id, host.clone(), *port),
            None => self.node(),
        }
    }
}

/// A weir node id as a Kafka node id: stable across restarts and membership changes.
fn kafka_node_id(node: &str) -> i32 {
    (twox_hash::XxHash64::oneshot(0, node.as_bytes()) & 0x3fff_ffff) as i32
}

fn boxed(f: impl Future<Output = Option<Bytes>> + Send + 'static) -> Answer {
    Box::pin(f)
}

impl Session {
    /// Start answering `request`.
    pub(crate) fn handle(&mut self, call: Call, request: RequestKind) -> Result<Answer, Close> {
        match request {
            RequestKind::ApiVersions(_) => {
                let body = ApiVersionsResponse::default().with_api_keys(versions());
                return Ok(boxed(std::future::ready(Some(encode(&call, &body)))));
            }
            RequestKind::SaslHandshake(r) => return self.sasl_handshake(call, r),
            RequestKind::SaslAuthenticate(r) => return self.sasl_authenticate(call, r),
            _ => {}
        }
        let caller = self.caller()?;
        let api = call.api;
        let ctx = Ctx { broker: self.broker.clone(), caller, settings: self.settings.clone(), call };
        Ok(match request {
            RequestKind::Metadata(r) => boxed(metadata(ctx, r)),
            RequestKind::Produce(r) => boxed(produce(ctx, r)),
            RequestKind::Fetch(r) => boxed(fetch(ctx, r)),
            RequestKind::ListOffsets(r) => boxed(list_offsets(ctx, r)),
            RequestKind::FindCoordinator(r) => boxed(find_coordinator(ctx, r)),
            RequestKind::JoinGroup(r) => boxed(join_group(ctx, r)),
            RequestKind::SyncGroup(r) => boxed(sync_group(ctx, r)),
            RequestKind::Heartbeat(r) => boxed(heartbeat(ctx, r)),
            RequestKind::LeaveGroup(r) => boxed(leave_group(ctx, r)),
            RequestKind::OffsetCommit(r) => boxed(offset_commit(ctx, r)),
            RequestKind::OffsetFetch(r) => boxed(offset_fetch(ctx, r)),
            RequestKind::InitProducerId(r) => boxed(init_producer_id(ctx, r)),
            RequestKind::CreateTopics(r) => boxed(create_topics(ctx, r)),
            RequestKind::DeleteTopics(r) => boxed(delete_topics(ctx, r)),
            RequestKind::ListGroups(_) => boxed(list_groups(ctx)),
            RequestKind::DescribeGroups(r) => boxed(describe_groups(ctx, r)),
            RequestKind::OffsetForLeaderEpoch(r) => boxed(offset_for_leader_epoch(ctx, r)),
            RequestKind::DescribeConfigs(r) => boxed(describe_configs(ctx, r)),
            _ => return Err(Close(format!("{api:?} is not served"))),
        })
    }

    /// Who the connection acts as; on a server with tokens, SASL must have succeeded (a Kafka
    /// broker closes unauthenticated connections the same way).
    fn caller(&mut self) -> Result<Option<Arc<Identity>>, Close> {
        let authority = &self.broker.authority;
        if !authority.is_enforced() {
            return Ok(None);
        }
        let Sasl::Done { token, generation, identity } = &mut self.sasl else {
            return Err(Close(
                "this server requires SASL PLAIN authentication (user: token name, password: token)".into(),
            ));
        };
        if *generation != authority.generation() {
            *generation = authority.generation();
            *identity = authority
                .identify(Some(token.as_str()))
                .map_err(|e| Close(format!("{e}: the server's token file no longer holds this connection's token")))?;
        }
        Ok(identity.clone())
    }

    fn sasl_handshake(&mut self, call: Call, r: SaslHandshakeRequest) -> Result<Answer, Close> {
        let mut body = SaslHandshakeResponse::default().with_mechanisms(vec![text("PLAIN")]);
        if r.mechanism.as_str() == "PLAIN" {
            self.sasl = Sasl::Handshaken;
        } else {
            body.error_code = UNSUPPORTED_SASL_MECHANISM;
        }
        Ok(boxed(std::future::ready(Some(encode(&call, &body)))))
    }

    /// PLAIN: `[authzid] NUL user NUL password`; the password is a weir token and the user its
    /// name. A failure is answered, then the connection is closed.
    fn sasl_authenticate(&mut self, call: Call, r: SaslAuthenticateRequest) -> Result<Answer, Close> {
        if !matches!(self.sasl, Sasl::Handshaken) {
            let body = SaslAuthenticateResponse::default()
                .with_error_code(ILLEGAL_SASL_STATE)
                .with_error_message(Some(text("SaslAuthenticate must follow a SaslHandshake choosing PLAIN")));
            return Ok(boxed(std::future::ready(Some(encode(&call, &body)))));
        }
        let generation = self.broker.authority.generation();
        let verdict = super::super::sasl_plain(&self.broker.authority, &r.auth_bytes);
        match verdict {
            Ok((token, identity)) => {
                self.sasl = Sasl::Done { token, generation, identity };
                let body = SaslAuthenticateResponse::default();
                Ok(boxed(std::future::ready(Some(encode(&call, &body)))))
            }
            Err(why) => {
                tracing::info!(%why, "Kafka SASL authentication failed");
                self.sasl = Sasl::Start;
                let body = SaslAuthenticateResponse::default()
                    .with_error_code(SASL_AUTHENTICATION_FAILED)
                    .with_error_message(Some(text(format!("authentication failed: {why}"))));
                Ok(boxed(std::future::ready(Some(encode(&call, &body)))))
            }
        }
    }
}

/// Topics the caller may see (read or write), by name.
async fn visible_topics(ctx: &Ctx) -> Result<Vec<TopicInfo>, BrokerError> {
    match ctx.start(Command::Topic(TopicCommand::List)).await? {
        Reply::Topics(t) => Ok(t),
        _ => Err(BrokerError::Internal("List answered with something else".into())),
    }
}

async fn metadata(ctx: Ctx, r: MetadataRequest) -> Option<Bytes> {
    let (node, _, _) = ctx.node();
    // The live nodes once per request (each partition's leader is placed among them).
    let live = ctx.brokers();
    let brokers = live
        .iter()
        .map(|(_, id, host, port)| {
            MetadataResponseBroker::default().with_node_id(*id).with_host(host.clone()).with_port(*port)
        })
        .collect();
    let mut body =
        MetadataResponse::default().with_brokers(brokers).with_cluster_id(Some(text("weir"))).with_controller_id(node);
    let all = visible_topics(&ctx).await.unwrap_or_default();
    let epoch = if ctx.since(7) { 0 } else { -1 };
    let described = |t: &TopicInfo| {
        let partitions = (0..t.partitions.len() as i32)
            .map(|p| {
                let (node, _, _) = ctx.placed(&live, &format!("topic:{}", t.name), p as u32);
                MetadataResponsePartition::default()
                    .with_partition_index(p)
                    .with_leader_id(node)
                    .with_leader_epoch(epoch)
                    .with_replica_nodes(vec![node])
                    .with_isr_nodes(vec![node])
            })
            .collect();
        MetadataResponseTopic::default().with_name(Some(topic_name(&t.name))).with_partitions(partitions)
    };
    body.topics = match r.topics {
        None => all.iter().map(described).collect(),
        Some(wanted) => {
            let mut out = Vec::new();
            for name in wanted.into_iter().filter_map(|w| w.name) {
                match all.iter().find(|t| t.name == name.as_str()) {
                    Some(t) => out.push(described(t)),
                    // Not among the visible: the broker says whether the caller may describe
                    // it at all. A Kafka broker answers TOPIC_AUTHORIZATION_FAILED for a name
                    // the caller may not describe, whether it exists or not.
                    None => {
                        let asked = ctx.start(Command::Topic(TopicCommand::Describe { name: name.to_string() })).await;
                        let code = match asked {
                            Err(e) if e.kind() == ErrorKind::Forbidden => TOPIC_AUTHORIZATION_FAILED,
                            _ => UNKNOWN_TOPIC_OR_PARTITION,
                        };
                        out.push(MetadataResponseTopic::default().with_name(Some(name)).with_error_code(code));
                    }
                }
            }
            out
        }
    };
    ctx.answer(&body)
}

/// Every partition's records as one command each, all started now (so the writes keep the
/// arrival order), answered together. acks=0 is stored the same way and answered with nothing.
async fn produce(ctx: Ctx, r: ProduceRequest) -> Option<Bytes> {
    if r.transactional_id.is_some() {
        let topics = r.topic_data.into_iter().map(|t| {
            let partitions = t
                .partition_data
                .iter()
                .map(|p| {
                    let refused = (TRANSACTIONAL_ID_AUTHORIZATION_FAILED, "transactions are not supported".to_string());
                    partition_produced(&ctx, p.index, Err(refused))
                })
                .collect();
            TopicProduceResponse::default().with_name(t.name).with_partition_responses(partitions)
        });
        let body = ProduceResponse::default().with_responses(topics.collect());
        return (r.acks != 0).then(|| encode(&ctx.call, &body));
    }
    // One decompression budget for the whole request, whatever its partitions claim.
    let mut budget = limits::KAFKA_MAX_DECOMPRESSED_BYTES;
    let mut slots = Vec::new();
    for topic in r.topic_data {
        for part in topic.partition_data {
            let index = part.index;
            slots.push((topic.name.clone(), index, start_partition(&ctx, &topic.name, part, &mut budget)));
        }
    }
    let outcomes = join_all(slots.into_iter().map(|(topic, index, started)| async move {
        let result = match started {
            Err(e) => Err(e),
            Ok(f) => match f.await {
                Ok(Reply::Produced(at)) => Ok(at.first().map_or(-1, |(_, o)| *o as i64)),
                Ok(_) => Err((UNKNOWN_SERVER_ERROR, "unexpected reply".to_string())),
                Err(e) => Err((code(&e), e.to_string())),
            },
        };
        (topic, index, result)
    }))
    .await;
    if r.acks == 0 {
        return None;
    }
    let mut topics: Vec<TopicProduceResponse> = Vec::new();
    for (topic, index, result) in outcomes {
        let partition = partition_produced(&ctx, index, result);
        match topics.iter_mut().find(|t| t.name == topic) {
            Some(t) => t.partition_responses.push(partition),
            None => {
                topics.push(TopicProduceResponse::default().with_name(topic).with_partition_responses(vec![partition]))
            }
        }
    }
    ctx.answer(&ProduceResponse::default().with_responses(topics))
}

/// Decode one partition's records and start their produce.
fn start_partition(
    ctx: &Ctx,
    topic: &TopicName,
    part: PartitionProduceData,
    budget: &mut usize,
) -> Result<Started, Refusal> {
    let partition = u32::try_from(part.index)
        .map_err(|_| (UNKNOWN_TOPIC_OR_PARTITION, format!("partition {} does not exist", part.index)))?;
    let data = part.records.ok_or((CORRUPT_MESSAGE, "produce data without records".to_string()))?;
    let produced = records::decode(data, budget).map_err(|e| match e {
        BadBatch::Corrupt(m) => (CORRUPT_MESSAGE, m),
        BadBatch::Invalid(m) => (INVALID_RECORD, m),
        BadBatch::Transactional => {
            (TRANSACTIONAL_ID_AUTHORIZATION_FAILED, "transactional batches are not supported".to_string())
        }
    })?;
    Ok(ctx.start(Command::Topic(TopicCommand::Produce {
        topic: topic.to_string(),
        partition: Some(partition),
        records: produced.records,
        sequence: produced.sequence,
    })))
}

/// Why a request part is refused before it reaches the broker: a Kafka code and a message.
type Refusal = (i16, String);

fn partition_produced(ctx: &Ctx, index: i32, result: Result<i64, Refusal>) -> PartitionProduceResponse {
    let p = PartitionProduceResponse::default().with_index(index);
    match result {
        Ok(base) => p.with_base_offset(base).with_log_append_time_ms(crate::types::now_ms() as i64),
        Err((code, message)) => {
            // Clients on Produce below v8 never see the text: the server's log says it.
            if matches!(code, INVALID_RECORD | CORRUPT_MESSAGE) {
                tracing::info!(client = ?ctx.call.client_id, partition = index, code, reason = %message, "Kafka record batch refused");
            }
            let p = p.with_error_code(code).with_base_offset(-1);
            if ctx.since(8) { p.with_error_message(Some(text(message))) } else { p }
        }
    }
}

/// One fetch command per topic. Nothing ready: wait (up to max_wait) for the first topic to
/// get data, then read them all again.
async fn fetch(ctx: Ctx, r: FetchRequest) -> Option<Bytes> {
    // One budget for the whole response, split between its topics, so that it stays well
    // inside a frame whatever the client asks (records weigh a little more encoded).
    let total =
        if r.max_bytes > 0 { (r.max_bytes as usize).min(limits::MAX_FETCH_BYTES) } else { limits::MAX_FETCH_BYTES };
    let max_bytes = (total / r.topics.len().max(1)).max(1);
    let wait = Duration::from_millis(r.max_wait_ms.max(0) as u64);
    let command = |t: &kafka_protocol::messages::fetch_request::FetchTopic, wait: Duration| {
        let positions = t
            .partitions
            .iter()
            .filter_map(|p| {
                Some(FetchPosition {
                    partition: u32::try_from(p.partition).ok()?,
                    offset: p.fetch_offset.max(0) as u64,
                })
            })
            .collect();
        let per_topic: i64 = t.partitions.iter().map(|p| i64::from(p.partition_max_bytes.max(0))).sum();
        Command::Topic(TopicCommand::Fetch {
            topic: t.topic.to_string(),
            positions,
            max_records: limits::MAX_FETCH_RECORDS,
            max_bytes: max_bytes.min(per_topic.max(1) as usize),
            max_wait: wait,
        })
    };
    let read_all = |ctx: &Ctx| join_all(r.topics.iter().map(|t| ctx.start(command(t, Duration::ZERO))));
    let mut results = read_all(&ctx).await;
    let empty =
        results.iter().all(|res| matches!(res, Ok(Reply::Fetched(p)) if p.iter().all(|p| p.records.is_empty())));
    // An offset past the end is answered at once (the client resets), not after the wait.
    let past_end = r.topics.iter().zip(&results).any(|(t, res)| match res {
        Ok(Reply::Fetched(parts)) => t.partitions.iter().any(|asked| {
            parts.iter().any(|p| {
                i64::from(p.partition) == i64::from(asked.partition) && asked.fetch_offset > p.high_watermark as i64
            })
        }),
        _ => false,
    });
    if empty && !past_end && !wait.is_zero() && !r.topics.is_empty() {
        // Only a wake-up: the read that follows reports what each topic has (or its error).
        let _woken = select_all(r.topics.iter().map(|t| ctx.start(command(t, wait)))).await;
        results = read_all(&ctx).await;
    }
    let responses = r
        .topics
        .iter()
        .zip(results)
        .map(|(t, result)| {
            let partitions = t
                .partitions
                .iter()
                .map(|asked| fetched_partition(asked.partition, asked.fetch_offset, &result))
                .collect();
            FetchableTopicResponse::default().with_topic(t.topic.clone()).with_partitions(partitions)
        })
        .collect();
    ctx.answer(&FetchResponse::default().with_responses(responses))
}

fn fetched_partition(index: i32, offset: i64, result: &crate::broker::Result<Reply>) -> PartitionData {
    let data = PartitionData::default()
        .with_partition_index(index)
        .with_log_start_offset(-1)
        .with_preferred_read_replica(BrokerId(-1))
        .with_aborted_transactions(Some(Vec::new()));
    let fetched = match result {
        Ok(Reply::Fetched(parts)) => parts.iter().find(|p| i64::from(p.partition) == i64::from(index)),
        Ok(_) => None,
        Err(e) => return data.with_error_code(code(e)).with_high_watermark(-1).with_last_stable_offset(-1),
    };
    let Some(p) = fetched else {
        return data.with_error_code(UNKNOWN_TOPIC_OR_PARTITION).with_high_watermark(-1).with_last_stable_offset(-1);
    };
    let hw = p.high_watermark as i64;
    let data = data.with_high_watermark(hw).with_last_stable_offset(hw);
    // Before the log's start (retention removed it) or past its end: the client resets.
    if offset > hw || p.first_offset as i64 > offset {
        return data.with_error_code(OFFSET_OUT_OF_RANGE);
    }
    data.with_records(Some(records::encode(&p.records)))
}

/// Per partition: earliest (-2) and latest (-1) from the topic's offsets; a time from the
/// first record at or after it, with that record's timestamp (offset -1 when there is none).
async fn list_offsets(ctx: Ctx, r: ListOffsetsRequest) -> Option<Bytes> {
    let mut topics = Vec::new();
    for t in r.topics {
        let name = t.name.to_string();
        let described = ctx.start(Command::Topic(TopicCommand::Describe { name: name.clone() })).await;
        let mut partitions = Vec::with_capacity(t.partitions.len());
        for p in &t.partitions {
            let out = ListOffsetsPartitionResponse::default().with_partition_index(p.partition_index);
            let epoch = if ctx.since(4) { 0 } else { -1 };
            let range = match &described {
                Err(e) => {
                    partitions.push(out.with_error_code(code(e)).with_offset(-1).with_timestamp(-1));
                    continue;
                }
                Ok(Reply::Topic(info)) => usize::try_from(p.partition_index).ok().and_then(|i| info.partitions.get(i)),
                Ok(_) => None,
            };
            let Some(&(start, end)) = range else {
                partitions.push(out.with_error_code(UNKNOWN_TOPIC_OR_PARTITION).with_offset(-1).with_timestamp(-1));
                continue;
            };
            let found = match p.timestamp {
                -2 => Some((start as i64, -1)),
                t if t < 0 => Some((end as i64, -1)),
                t => offset_at_time(&ctx, &name, p.partition_index as u32, t as u64, end).await,
            };
            partitions.push(match found {
                Some((offset, timestamp)) => out.with_offset(offset).with_timestamp(timestamp).with_leader_epoch(epoch),
                None => out.with_offset(-1).with_timestamp(-1),
            });
        }
        topics.push(ListOffsetsTopicResponse::default().with_name(t.name).with_partitions(partitions));
    }
    ctx.answer(&ListOffsetsResponse::default().with_topics(topics))
}

/// The first record of `partition` at or after `time`: its offset and timestamp.
async fn offset_at_time(ctx: &Ctx, topic: &str, partition: u32, time: u64, end: u64) -> Option<(i64, i64)> {
    let by_time = Command::Topic(TopicCommand::OffsetsForTime { topic: topic.to_string(), timestamp_ms: time });
    let offset = match ctx.start(by_time).await {
        Ok(Reply::Offsets(o)) => o.get(partition as usize).copied().flatten()?,
        _ => return None,
    };
    if offset >= end {
        return None;
    }
    let positions = vec![FetchPosition { partition, offset }];
    let read = Command::Topic(TopicCommand::Fetch {
        topic: topic.to_string(),
        positions,
        max_records: 1,
        max_bytes: 1,
        max_wait: Duration::ZERO,
    });
    let timestamp = match ctx.start(read).await {
        Ok(Reply::Fetched(parts)) => parts.first()?.records.first()?.timestamp_ms as i64,
        _ => return None,
    };
    Some((offset as i64, timestamp))
}

async fn find_coordinator(ctx: Ctx, r: FindCoordinatorRequest) -> Option<Bytes> {
    let live = ctx.brokers();
    let body = if ctx.since(4) {
        let coordinators = r
            .coordinator_keys
            .into_iter()
            .map(|key| {
                let (node, host, port) = ctx.placed(&live, &format!("group:{key}"), 0);
                Coordinator::default().with_key(key).with_node_id(node).with_host(host).with_port(port)
            })
            .collect();
        FindCoordinatorResponse::default().with_coordinators(coordinators)
    } else {
        let (node, host, port) = ctx.placed(&live, &format!("group:{}", r.key), 0);
        FindCoordinatorResponse::default().with_node_id(node).with_host(host).with_port(port)
    };
    ctx.answer(&body)
}

async fn join_group(ctx: Ctx, r: JoinGroupRequest) -> Option<Bytes> {
    if ctx.elsewhere(&r.group_id) {
        return ctx.answer(&JoinGroupResponse::default().with_error_code(NOT_COORDINATOR).with_generation_id(-1));
    }
    let session = r.session_timeout_ms;
    let metadata: usize = r.protocols.iter().map(|p| p.metadata.len() + p.name.len()).sum();
    if metadata > limits::KAFKA_GROUP_METADATA_BYTES {
        let body = JoinGroupResponse::default().with_error_code(INVALID_REQUEST).with_generation_id(-1);
        return ctx.answer(&body);
    }
    if !(1_000..=300_000).contains(&session) {
        let body = JoinGroupResponse::default().with_error_code(INVALID_SESSION_TIMEOUT).with_generation_id(-1);
        return ctx.answer(&body);
    }
    let rebalance = if ctx.call.version >= 1 { r.rebalance_timeout_ms } else { session };
    let request = JoinRequest {
        group: r.group_id.to_string(),
        member: Some(r.member_id.to_string()).filter(|m| !m.is_empty()),
        client_id: ctx.call.client_id.clone().unwrap_or_default(),
        protocol_type: r.protocol_type.to_string(),
        // Copied (not slices keeping the request's frame alive) and bounded.
        protocols: r
            .protocols
            .iter()
            .take(limits::KAFKA_GROUP_PROTOCOLS)
            .map(|p| (p.name.to_string(), Bytes::copy_from_slice(&p.metadata)))
            .collect(),
        session: Duration::from_millis(session as u64),
        rebalance: Duration::from_millis(rebalance.clamp(1_000, 300_000) as u64),
    };
    let body = match ctx.start(Command::Group(GroupCommand::ClassicJoin(request))).await {
        Ok(Reply::Joined(j)) => JoinGroupResponse::default()
            .with_generation_id(j.generation)
            .with_protocol_type(ctx.since(7).then(|| text(j.protocol_type)))
            .with_protocol_name(Some(text(j.protocol)))
            .with_leader(text(j.leader))
            .with_member_id(text(j.member))
            .with_members(
                j.members
                    .into_iter()
                    .map(|(id, metadata)| {
                        JoinGroupResponseMember::default().with_member_id(text(id)).with_metadata(metadata)
                    })
                    .collect(),
            ),
        Ok(_) => JoinGroupResponse::default().with_error_code(UNKNOWN_SERVER_ERROR),
        Err(e) => JoinGroupResponse::default()
            .with_error_code(group_code(&e))
            .with_generation_id(-1)
            .with_member_id(r.member_id),
    };
    ctx.answer(&body)
}

async fn sync_group(ctx: Ctx, r: SyncGroupRequest) -> Option<Bytes> {
    if ctx.elsewhere(&r.group_id) {
        return ctx.answer(&SyncGroupResponse::default().with_error_code(NOT_COORDINATOR));
    }
    let command = GroupCommand::ClassicSync {
        group: r.group_id.to_string(),
        member: r.member_id.to_string(),
        generation: r.generation_id,
        // Copied: slices would keep the whole request frame alive while the group lives.
        assignments: r
            .assignments
            .iter()
            .take(limits::GROUP_MAX_MEMBERS)
            .map(|a| (a.member_id.to_string(), Bytes::copy_from_slice(&a.assignment)))
            .collect(),
    };
    let body = match ctx.start(Command::Group(command)).await {
        Ok(Reply::Assignment(a)) => SyncGroupResponse::default()
            .with_assignment(a)
            .with_protocol_type(r.protocol_type)
            .with_protocol_name(r.protocol_name),
        Ok(_) => SyncGroupResponse::default().with_error_code(UNKNOWN_SERVER_ERROR),
        Err(e) => SyncGroupResponse::default().with_error_code(group_code(&e)),
    };
    ctx.answer(&body)
}

async fn heartbeat(ctx: Ctx, r: HeartbeatRequest) -> Option<Bytes> {
    if ctx.elsewhere(&r.group_id) {
        return ctx.answer(&HeartbeatResponse::default().with_error_code(NOT_COORDINATOR));
    }
    let command = GroupCommand::ClassicHeartbeat {
        group: r.group_id.to_string(),
        member: r.member_id.to_string(),
        generation: r.generation_id,
    };
    let error = ctx.start(Command::Group(command)).await.err().map_or(NONE, |e| group_code(&e));
    ctx.answer(&HeartbeatResponse::default().with_error_code(error))
}

async fn leave_group(ctx: Ctx, r: LeaveGroupRequest) -> Option<Bytes> {
    let members: Vec<String> = if ctx.call.version >= 3 {
        r.members.iter().map(|m| m.member_id.to_string()).collect()
    } else {
        vec![r.member_id.to_string()]
    };
    let command = GroupCommand::ClassicLeave { group: r.group_id.to_string(), members: members.clone() };
    let error = ctx.start(Command::Group(command)).await.err().map_or(NONE, |e| group_code(&e));
    let mut body = LeaveGroupResponse::default().with_error_code(error);
    if ctx.call.version >= 3 {
        body.members = members.into_iter().map(|m| MemberResponse::default().with_member_id(text(m))).collect();
    }
    ctx.answer(&body)
}

async fn offset_commit(ctx: Ctx, r: OffsetCommitRequest) -> Option<Bytes> {
    let (group, member, generation) =
        (r.group_id.to_string(), r.member_id.to_string(), r.generation_id_or_member_epoch);
    let started: Vec<_> = r
        .topics
        .iter()
        .map(|t| {
            let offsets = t
                .partitions
                .iter()
                .filter_map(|p| Some((u32::try_from(p.partition_index).ok()?, u64::try_from(p.committed_offset).ok()?)))
                .collect();
            ctx.start(Command::Group(GroupCommand::ClassicCommit {
                group: group.clone(),
                topic: t.name.to_string(),
                offsets,
                member: member.clone(),
                generation,
            }))
        })
        .collect();
    let results = join_all(started).await;
    let topics = r
        .topics
        .into_iter()
        .zip(results)
        .map(|(t, result)| {
            let error = result.err().map_or(NONE, |e| code(&e));
            let partitions = t
                .partitions
                .iter()
                .map(|p| {
                    OffsetCommitResponsePartition::default()
                        .with_partition_index(p.partition_index)
                        .with_error_code(error)
                })
                .collect();
            OffsetCommitResponseTopic::default().with_name(t.name).with_partitions(partitions)
        })
        .collect();
    ctx.answer(&OffsetCommitResponse::default().with_topics(topics))
}

async fn offset_fetch(ctx: Ctx, r: OffsetFetchRequest) -> Option<Bytes> {
    let group = r.group_id.to_string();
    let wanted: Vec<(TopicName, Option<Vec<i32>>)> = match r.topics {
        Some(topics) => topics.into_iter().map(|t| (t.name, Some(t.partition_indexes))).collect(),
        None => match ctx.start(Command::Group(GroupCommand::List)).await {
            Ok(Reply::Groups(groups)) => {
                groups.into_iter().filter(|g| g.group == group).map(|g| (topic_name(&g.topic), None)).collect()
            }
            _ => Vec::new(),
        },
    };
    let mut topics = Vec::new();
    for (name, partitions) in wanted {
        let command = GroupCommand::Offsets { group: group.clone(), topic: name.to_string() };
        let result = ctx.start(Command::Group(command)).await;
        let committed = match &result {
            Ok(Reply::Offsets(o)) => o.clone(),
            _ => Vec::new(),
        };
        let indexes = partitions.unwrap_or_else(|| (0..committed.len() as i32).collect());
        let error = result.as_ref().err().map_or(NONE, code);
        let partitions = indexes
            .into_iter()
            .map(|i| {
                let offset = usize::try_from(i).ok().and_then(|i| committed.get(i).copied().flatten());
                OffsetFetchResponsePartition::default()
                    .with_partition_index(i)
                    .with_committed_offset(offset.map_or(-1, |o| o as i64))
                    .with_committed_leader_epoch(-1)
                    .with_metadata(Some(StrBytes::default()))
                    .with_error_code(error)
            })
            .collect();
        topics.push(OffsetFetchResponseTopic::default().with_name(name).with_partitions(partitions));
    }
    ctx.answer(&OffsetFetchResponse::default().with_topics(topics))
}

async fn init_producer_id(ctx: Ctx, r: InitProducerIdRequest) -> Option<Bytes> {
    if r.transactional_id.is_some() {
        let body = InitProducerIdResponse::default()
            .with_error_code(TRANSACTIONAL_ID_AUTHORIZATION_FAILED)
            .with_producer_id(ProducerId(-1))
            .with_producer_epoch(-1);
        return ctx.answer(&body);
    }
    let body = match ctx.start(Command::Topic(TopicCommand::NewProducer)).await {
        Ok(Reply::Producer(id)) => {
            InitProducerIdResponse::default().with_producer_id(ProducerId(id)).with_producer_epoch(0)
        }
        Ok(_) => InitProducerIdResponse::default().with_error_code(UNKNOWN_SERVER_ERROR),
        Err(e) => InitProducerIdResponse::default().with_error_code(code(&e)).with_producer_id(ProducerId(-1)),
    };
    ctx.answer(&body)
}

/// A topic's settings from CreateTopics configs: partitions, `retention.ms`,
/// `retention.bytes`, `max.message.bytes`; anything else is refused, naming it.
fn topic_config(t: &kafka_protocol::messages::create_topics_request::CreatableTopic) -> Result<TopicConfig, Refusal> {
    let mut config = TopicConfig::default();
    if t.num_partitions > 0 {
        config.partitions = t.num_partitions as u32;
    } else if t.num_partitions != -1 {
        return Err((INVALID_PARTITIONS, format!("{} partitions: ask for at least 1", t.num_partitions)));
    }
    for c in &t.configs {
        let value = c.value.as_ref().map(|v| v.to_string()).unwrap_or_default();
        let number = || {
            value
                .parse::<u64>()
                .map_err(|_| (INVALID_REQUEST, format!("config {} = `{value}` is not a number", c.name)))
        };
        match c.name.as_str() {
            "retention.ms" => config.retention_ms = Some(number()?),
            "retention.bytes" => config.retention_bytes = Some(number()?),
            "max.message.bytes" => config.max_message_bytes = number()? as usize,
            "cleanup.policy" if value == "delete" => {}
            // Confluent's (and Redpanda's) per-topic schema validation: the subject follows
            // the naming strategy; `true` checks the id, weir's `full` also the payload.
            "confluent.value.schema.validation" | "redpanda.value.schema.id.validation" => {
                config.value_schema = schema_flag(&c.name, &value)?
            }
            "confluent.key.schema.validation" | "redpanda.key.schema.id.validation" => {
                config.key_schema = schema_flag(&c.name, &value)?
            }
            "confluent.value.subject.name.strategy" | "confluent.key.subject.name.strategy" => {
                config.subject_strategy = strategy(&value)?
            }
            "weir.schema.validation" => {
                config.validation = match value.as_str() {
                    "id" => Validation::Id,
                    "full" => Validation::Full,
                    "none" => Validation::None,
                    _ => {
                        return Err((
                            INVALID_REQUEST,
                            format!("weir.schema.validation = `{value}`: use id, full or none"),
                        ));
                    }
                }
            }
            other => {
                return Err((
                    INVALID_REQUEST,
                    format!(
                        "config `{other}` is not supported by weir (retention.ms, retention.bytes, max.message.bytes, confluent.value.schema.validation, confluent.key.schema.validation, confluent.*.subject.name.strategy, weir.schema.validation are)"
                    ),
                ));
            }
        }
    }
    Ok(config)
}

/// `true`: check against the strategy's subject (stored empty); `false`: no check.
fn schema_flag(name: &str, value: &str) -> Result<Option<String>, Refusal> {
    match value {
        "true" => Ok(Some(String::new())),
        "false" => Ok(None),
        _ => Err((INVALID_REQUEST, format!("config {name} = `{value}`: use true or false"))),
    }
}

/// A Confluent subject naming strategy, by its Java class name or short name.
fn strategy(value: &str) -> Result<SubjectStrategy, Refusal> {
    match value.rsplit('.').next().unwrap_or(value) {
        "TopicNameStrategy" => Ok(SubjectStrategy::TopicName),
        "RecordNameStrategy" => Ok(SubjectStrategy::RecordName),
        "TopicRecordNameStrategy" => Ok(SubjectStrategy::TopicRecordName),
        _ => Err((
            INVALID_REQUEST,
            format!(
                "subject name strategy `{value}`: use TopicNameStrategy, RecordNameStrategy or TopicRecordNameStrategy"
            ),
        )),
    }
}

async fn create_topics(ctx: Ctx, r: CreateTopicsRequest) -> Option<Bytes> {
    let mut topics = Vec::new();
    for t in &r.topics {
        let result = match topic_config(t) {
            Err(e) => Err(e),
            Ok(config) if r.validate_only => Ok(config.partitions),
            Ok(config) => {
                let command = Command::Topic(TopicCommand::Create { name: t.name.to_string(), config });
                match ctx.start(command).await {
                    Ok(Reply::Topic(info)) => Ok(info.partitions.len() as u32),
                    Ok(_) => Err((UNKNOWN_SERVER_ERROR, "unexpected reply".into())),
                    Err(e) if e.kind() == ErrorKind::InvalidArgument => Err((INVALID_TOPIC_EXCEPTION, e.to_string())),
                    Err(e) => Err((code(&e), e.to_string())),
                }
            }
        };
        let out = CreatableTopicResult::default().with_name(t.name.clone());
        topics.push(match result {
            Ok(n) if ctx.since(5) => out.with_num_partitions(n as i32).with_replication_factor(1),
            Ok(_) => out,
            Err((code, message)) => out.with_error_code(code).with_error_message(Some(text(message))),
        });
    }
    ctx.answer(&CreateTopicsResponse::default().with_topics(topics))
}

async fn delete_topics(ctx: Ctx, r: DeleteTopicsRequest) -> Option<Bytes> {
    let names: Vec<TopicName> =
        if ctx.call.version >= 6 { r.topics.into_iter().filter_map(|t| t.name).collect() } else { r.topic_names };
    let mut responses = Vec::new();
    for name in names {
        let result = ctx.start(Command::Topic(TopicCommand::Delete { name: name.to_string() })).await;
        let out = DeletableTopicResult::default().with_name(Some(name));
        responses.push(match result {
            Ok(_) => out,
            Err(e) if ctx.since(5) => out.with_error_code(code(&e)).with_error_message(Some(text(e.to_string()))),
            Err(e) => out.with_error_code(code(&e)),
        });
    }
    ctx.answer(&DeleteTopicsResponse::default().with_responses(responses))
}

async fn list_groups(ctx: Ctx) -> Option<Bytes> {
    let groups = match ctx.start(Command::Group(GroupCommand::ClassicDescribe { groups: None })).await {
        Ok(Reply::ClassicGroups(g)) => g,
        _ => Vec::new(),
    };
    let listed = groups
        .into_iter()
        .map(|g| {
            let listed =
                ListedGroup::default().with_group_id(GroupId(text(g.group))).with_protocol_type(text(g.protocol_type));
            if ctx.since(4) { listed.with_group_state(text(g.state)) } else { listed }
        })
        .collect();
    ctx.answer(&ListGroupsResponse::default().with_groups(listed))
}

async fn describe_groups(ctx: Ctx, r: DescribeGroupsRequest) -> Option<Bytes> {
    let names: Vec<String> = r.groups.iter().map(|g| g.to_string()).collect();
    let groups = match ctx.start(Command::Group(GroupCommand::ClassicDescribe { groups: Some(names) })).await {
        Ok(Reply::ClassicGroups(g)) => g,
        _ => Vec::new(),
    };
    let described = groups
        .into_iter()
        .map(|g| {
            let members = g
                .members
                .into_iter()
                .map(|(id, client, subscription, assignment)| {
                    DescribedGroupMember::default()
                        .with_member_id(text(id))
                        .with_client_id(text(client))
                        .with_member_metadata(subscription)
                        .with_member_assignment(assignment)
                })
                .collect();
            DescribedGroup::default()
                .with_group_id(GroupId(text(g.group)))
                .with_group_state(text(g.state))
                .with_protocol_type(text(g.protocol_type))
                .with_protocol_data(text(g.protocol))
                .with_members(members)
        })
        .collect();
    ctx.answer(&DescribeGroupsResponse::default().with_groups(described))
}

/// A topic's settings (resource type 2) or the broker's basics (4), as Kafka names them.
async fn describe_configs(ctx: Ctx, r: DescribeConfigsRequest) -> Option<Bytes> {
    const TOPIC: i8 = 2;
    const BROKER: i8 = 4;
    let mut results = Vec::new();
    for res in r.resources {
        let out = DescribeConfigsResult::default()
            .with_resource_type(res.resource_type)
            .with_resource_name(res.resource_name.clone());
        let configs: Result<Vec<(&str, String)>, BrokerError> = match res.resource_type {
            TOPIC => {
                match ctx.start(Command::Topic(TopicCommand::Describe { name: res.resource_name.to_string() })).await {
                    Ok(Reply::Topic(t)) => Ok(vec![
                        ("cleanup.policy", "delete".into()),
                        ("retention.ms", t.config.retention_ms.map_or("-1".into(), |v| v.to_string())),
                        ("retention.bytes", t.config.retention_bytes.map_or("-1".into(), |v| v.to_string())),
                        ("max.message.bytes", t.config.max_message_bytes.to_string()),
                        ("message.timestamp.type", "LogAppendTime".into()),
                        ("compression.type", "producer".into()),
                        ("min.insync.replicas", "1".into()),
                    ]),
                    Ok(_) => Ok(Vec::new()),
                    Err(e) => Err(e),
                }
            }
            BROKER => Ok(vec![
                ("auto.create.topics.enable", "false".into()),
                ("log.message.timestamp.type", "LogAppendTime".into()),
                ("message.max.bytes", limits::MAX_MESSAGE_BYTES.to_string()),
                ("default.replication.factor", "1".into()),
            ]),
            other => Err(BrokerError::BadRequest(format!(
                "resource type {other}: weir describes topics (2) and the broker (4)"
            ))),
        };
        let wanted = res.configuration_keys.map(|k| k.iter().map(|k| k.to_string()).collect::<Vec<_>>());
        results.push(match configs {
            Ok(configs) => out.with_configs(
                configs
                    .into_iter()
                    .filter(|(name, _)| wanted.as_ref().is_none_or(|w| w.iter().any(|k| k == name)))
                    .map(|(name, value)| {
                        DescribeConfigsResourceResult::default()
                            .with_name(text(name))
                            .with_value(Some(text(value)))
                            .with_read_only(true)
                            .with_config_source(5)
                    })
                    .collect(),
            ),
            Err(e) => out.with_error_code(code(&e)).with_error_message(Some(text(e.to_string()))),
        });
    }
    ctx.answer(&DescribeConfigsResponse::default().with_results(results))
}

/// Weir has one leader epoch (0): every partition's end offset is its high watermark.
async fn offset_for_leader_epoch(ctx: Ctx, r: OffsetForLeaderEpochRequest) -> Option<Bytes> {
    let mut topics = Vec::new();
    for t in r.topics {
        let result = ctx.start(Command::Topic(TopicCommand::Describe { name: t.topic.to_string() })).await;
        let partitions = t
            .partitions
            .iter()
            .map(|p| {
                let out = EpochEndOffset::default().with_partition(p.partition);
                let end = match &result {
                    Ok(Reply::Topic(info)) => {
                        usize::try_from(p.partition).ok().and_then(|i| info.partitions.get(i)).map(|(_, e)| *e)
                    }
                    _ => None,
                };
                match (end, &result) {
                    (Some(end), _) => out.with_leader_epoch(0).with_end_offset(end as i64),
                    (None, Err(e)) => out.with_error_code(code(e)).with_leader_epoch(-1).with_end_offset(-1),
                    (None, Ok(_)) => {
                        out.with_error_code(UNKNOWN_TOPIC_OR_PARTITION).with_leader_epoch(-1).with_end_offset(-1)
                    }
                }
            })
            .collect();
        topics.push(OffsetForLeaderTopicResult::default().with_topic(t.topic).with_partitions(partitions));
    }
    ctx.answer(&OffsetForLeaderEpochResponse::default().with_topics(topics))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_map_to_kafka_codes() {
        let unknown = BrokerError::Store(crate::storage::StoreError::UnknownTopic("t".into()));
        assert_eq!(code(&unknown), UNKNOWN_TOPIC_OR_PARTITION);
        let stale =
            BrokerError::Group(crate::groups::GroupError::StaleGeneration { group: "g".into(), current: 2, stale: 1 });
        assert_eq!(code(&stale), ILLEGAL_GENERATION);
        assert_eq!(
            code(&BrokerError::Group(crate::groups::GroupError::RebalanceInProgress("g".into()))),
            REBALANCE_IN_PROGRESS
        );
    }

    #[test]
    fn supported_versions_are_ones_the_crate_encodes() {
        for (api, lo, hi) in SUPPORTED {
            let range = api.valid_versions();
            assert!(range.min <= *lo && *hi <= range.max, "{api:?} {lo}..={hi} outside {range:?}");
        }
    }
}
