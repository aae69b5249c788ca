//! Messaging-pattern requests: queues, consumer-group membership, exchanges and
//! request/reply.

use std::time::Duration;

use bytes::Bytes;

use super::Broker;
use super::replies::{CORRELATION_ID, REPLY_TO, REPLY_TOPIC};
use crate::exchange::{Destination, ExchangeError};
use crate::groups::GroupError;
use crate::queue::{NewQueueMessage, PreparedSend, QueueError};
use crate::storage::{Append, Commit, NewRecord};
use crate::wire::{ErrorCode, FetchedRecord, Request, Response, WireError};

impl Broker {
    /// Handle a messaging request; `Err(request)` hands back anything else.
    pub(super) async fn handle_messaging(&self, request: Request) -> Result<Result<Response, WireError>, Request> {
        Ok(match request {
            Request::CreateQueue { name, config } => {
                self.queues.create(&name, config).await.map(Response::Queue).map_err(queue_error)
            }
            Request::DeleteQueue { name } => self.delete_queue(&name).await,
            Request::PurgeQueue { name } => self.queues.purge(&name).await.map(Response::Count).map_err(queue_error),
            Request::ListQueues => Ok(Response::Queues(self.queues.list())),
            Request::DescribeQueue { name } => {
                self.queues.get(&name).map(|q| Response::Queue(q.info())).map_err(queue_error)
            }
            Request::QueueSend { queue, messages } => self.queue_send(&queue, messages).await,
            Request::QueueReceive { queue, max, wait_ms, visibility_ms } => self
                .queues
                .receive(&queue, max, Duration::from_millis(wait_ms), visibility_ms)
                .await
                .map(Response::Deliveries)
                .map_err(queue_error),
            Request::QueueAck { queue, receipts } => {
                self.queues.ack(&queue, &receipts).await.map(|()| Response::Ok).map_err(queue_error)
            }
            Request::QueueNack { queue, receipts, how } => {
                self.queues.nack(&queue, &receipts, how).await.map(|()| Response::Ok).map_err(queue_error)
            }
            Request::QueueExtend { queue, receipts, timeout_ms } => {
                self.queues.extend(&queue, &receipts, timeout_ms).await.map(|()| Response::Ok).map_err(queue_error)
            }
            Request::JoinGroup { group, topic, member, session_timeout_ms } => {
                self.join_group(&group, &topic, member, session_timeout_ms)
            }
            Request::Heartbeat { group, topic, member } => {
                self.groups.heartbeat(&group, &topic, &member).map(Response::Membership).map_err(group_error)
            }
            Request::LeaveGroup { group, topic, member } => {
                self.groups.leave(&group, &topic, &member);
                Ok(Response::Ok)
            }
            Request::DescribeGroups => Ok(Response::GroupMembers(self.groups.describe())),
            Request::CreateExchange { name, kind, alternate } => {
                self.exchanges.create(&name, kind, alternate).await.map(Response::Exchange).map_err(exchange_error)
            }
            Request::DeleteExchange { name } => {
                self.exchanges.delete(&name).await.map(|()| Response::Ok).map_err(exchange_error)
            }
            Request::Bind { exchange, binding } => self.bind(&exchange, binding).await,
            Request::Unbind { exchange, destination, key } => self
                .exchanges
                .unbind(&exchange, &destination, key.as_deref())
                .await
                .map(Response::Exchange)
                .map_err(exchange_error),
            Request::ListExchanges => Ok(Response::Exchanges(self.exchanges.list())),
            Request::Publish { exchange, routing_key, key, value, headers } => {
                self.publish(&exchange, &routing_key, key.map(|k| k.into_vec()), value.into_vec(), headers).await
            }
            Request::Request { topic, key, value, headers, timeout_ms } => {
                self.request_reply(&topic, key.map(|k| k.into_vec()), value.into_vec(), headers, timeout_ms).await
            }
            other => return Err(other),
        })
    }

    async fn delete_queue(&self, name: &str) -> Result<Response, WireError> {
        let users: Vec<String> = self
            .pipelines
            .list()
            .into_iter()
            .filter(|p| p.spec.source == format!("queue:{name}"))
            .map(|p| p.spec.name)
            .collect();
        if !users.is_empty() {
            return Err(WireError::new(
                ErrorCode::InUse,
                format!("queue `{name}` is read by pipeline(s) {}; delete them first", users.join(", ")),
            ));
        }
        self.queues.delete(name).await.map(|()| Response::Ok).map_err(queue_error)
    }

    /// All messages in one durable commit.
    async fn queue_send(&self, queue: &str, messages: Vec<NewQueueMessage>) -> Result<Response, WireError> {
        let mut staged: Vec<Option<PreparedSend>> = Vec::with_capacity(messages.len());
        for m in messages {
            staged.push(self.queues.prepare_send(queue, m).map_err(queue_error)?);
        }
        let writes = staged.iter().flatten().flat_map(|s| s.writes.clone()).collect();
        self.store.submit(Commit { queue: writes, ..Commit::default() }).await?;
        Ok(Response::Sent(staged.into_iter().map(|s| s.map(PreparedSend::commit).is_some()).collect()))
    }

    fn join_group(
        &self,
        group: &str,
        topic: &str,
        member: Option<String>,
        session_ms: u64,
    ) -> Result<Response, WireError> {
        crate::types::check_name("group", group).map_err(WireError::invalid)?;
        let partitions = self.store.topic(topic)?.partition_count();
        let session = Duration::from_millis(session_ms.clamp(100, 300_000));
        self.groups.join(group, topic, partitions, member, session).map(Response::Membership).map_err(group_error)
    }

    async fn bind(&self, exchange: &str, binding: crate::exchange::Binding) -> Result<Response, WireError> {
        match &binding.destination {
            Destination::Topic(t) => {
                self.store.topic(t)?;
            }
            Destination::Queue(q) => {
                self.queues.get(q).map_err(queue_error)?;
            }
        }
        self.exchanges.bind(exchange, binding).await.map(Response::Exchange).map_err(exchange_error)
    }

    /// Route through the exchange and deliver to every destination in one atomic commit.
    async fn publish(
        &self,
        exchange: &str,
        routing_key: &str,
        key: Option<Vec<u8>>,
        value: Vec<u8>,
        mut headers: Vec<(String, String)>,
    ) -> Result<Response, WireError> {
        let dests = self.exchanges.route(exchange, routing_key, &headers).map_err(exchange_error)?;
        headers.push(("weir-routing-key".into(), routing_key.to_string()));
        headers.push(("weir-exchange".into(), exchange.to_string()));
        let mut commit = Commit::default();
        let mut staged = Vec::new();
        for d in &dests {
            match d {
                Destination::Topic(t) => {
                    let topic = self.store.topic(t)?;
                    let partition = topic.partition_for(key.as_deref());
                    let record = NewRecord {
                        key: key.clone().map(Bytes::from),
                        value: Bytes::from(value.clone()),
                        headers: headers.clone(),
                    };
                    commit.appends.push(Append { topic, partition, records: vec![record] });
                }
                Destination::Queue(q) => {
                    let msg = NewQueueMessage { body: value.clone(), headers: headers.clone(), ..Default::default() };
                    if let Some(s) = self.queues.prepare_send(q, msg).map_err(queue_error)? {
                        commit.queue.extend(s.writes.clone());
                        staged.push(s);
                    }
                }
            }
        }
        self.store.submit(commit).await?;
        staged.into_iter().for_each(PreparedSend::commit);
        Ok(Response::Published(dests.iter().map(|d| d.to_string()).collect()))
    }

    async fn request_reply(
        &self,
        topic: &str,
        key: Option<Vec<u8>>,
        value: Vec<u8>,
        mut headers: Vec<(String, String)>,
        timeout_ms: u64,
    ) -> Result<Response, WireError> {
        let t = self.store.topic(topic)?;
        let (id, reply) = self.replies.register().map_err(|e| WireError::new(ErrorCode::Busy, e))?;
        headers.retain(|(k, _)| k != CORRELATION_ID && k != REPLY_TO);
        headers.push((CORRELATION_ID.into(), id.clone()));
        headers.push((REPLY_TO.into(), REPLY_TOPIC.into()));
        let partition = t.partition_for(key.as_deref());
        let record = NewRecord { key: key.map(Bytes::from), value: Bytes::from(value), headers };
        if let Err(e) = self.store.append(&t, partition, vec![record]).await {
            self.replies.forget(&id);
            return Err(e.into());
        }
        let timeout = Duration::from_millis(timeout_ms.clamp(1, crate::limits::MAX_FETCH_WAIT_MS));
        match tokio::time::timeout(timeout, reply).await {
            Ok(Ok(r)) => Ok(Response::Reply(FetchedRecord(
                r.timestamp_ms,
                r.key.map(|k| serde_bytes::ByteBuf::from(k.to_vec())),
                serde_bytes::ByteBuf::from(r.value.to_vec()),
                r.headers,
            ))),
            _ => {
                self.replies.forget(&id);
                Err(WireError::new(
                    ErrorCode::Timeout,
                    format!(
                        "no reply within {} ms to request {id} sent to topic `{topic}`; is a pipeline or consumer answering on `{topic}` (replies go to `{REPLY_TOPIC}` with header {CORRELATION_ID})?",
                        timeout.as_millis()
                    ),
                ))
            }
        }
    }
}

pub(super) fn queue_error(e: QueueError) -> WireError {
    let code = match &e {
        QueueError::Unknown(_) => ErrorCode::UnknownQueue,
        QueueError::Exists(_) => ErrorCode::AlreadyExists,
        QueueError::StaleReceipt { .. } => ErrorCode::StaleReceipt,
        QueueError::Invalid(_) => ErrorCode::InvalidArgument,
        QueueError::Full { .. } => ErrorCode::QueueFull,
        QueueError::Store(s) => WireError::from_store_ref(s),
    };
    WireError::new(code, e.to_string())
}

pub(super) fn group_error(e: GroupError) -> WireError {
    let code = match &e {
        GroupError::StaleGeneration { .. } => ErrorCode::Rebalanced,
        GroupError::UnknownMember { .. } => ErrorCode::NotFound,
        GroupError::Full(_) => ErrorCode::Busy,
    };
    WireError::new(code, e.to_string())
}

fn exchange_error(e: ExchangeError) -> WireError {
    let code = match &e {
        ExchangeError::Unknown(_) => ErrorCode::UnknownExchange,
        ExchangeError::Exists(_) => ErrorCode::AlreadyExists,
        ExchangeError::Unroutable { .. } => ErrorCode::Unroutable,
        ExchangeError::Invalid(_) => ErrorCode::InvalidArgument,
        ExchangeError::Store(s) => WireError::from_store_ref(s),
    };
    WireError::new(code, e.to_string())
}
