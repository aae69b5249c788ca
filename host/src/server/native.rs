//! The native protocol's door onto the broker: a wire [`Request`] becomes a broker
//! [`Command`], a [`Reply`] becomes a wire [`Response`], and a [`BrokerError`] becomes a
//! [`WireError`] — its code chosen here, the one place broker errors meet wire codes. This
//! door decides no permission and executes nothing itself.

use std::time::Duration;

use weir_client::wire::{self as w, ErrorCode, Request, Response, WireError};

use super::convert::fetched;
use crate::broker::{
    BrokerError, Command, ErrorKind, ExchangeCommand, GroupCommand, PipelineCommand, PluginCommand, QueueCommand,
    Reply, StateCommand, TopicCommand,
};
use crate::storage::NewRecord;

/// The broker command a request asks for (`Hello` is the connection's, not the broker's).
pub(super) fn command(request: Request) -> Result<Command, WireError> {
    Ok(match request {
        Request::Hello { .. } => return Err(WireError::new(ErrorCode::Handshake, "Hello was already received")),
        Request::CreateTopic { name, config } => Command::Topic(TopicCommand::Create { name, config: config.into() }),
        Request::DeleteTopic { name } => Command::Topic(TopicCommand::Delete { name }),
        Request::ListTopics => Command::Topic(TopicCommand::List),
        Request::DescribeTopic { name } => Command::Topic(TopicCommand::Describe { name }),
        Request::Produce { topic, partition, records } => Command::Topic(TopicCommand::Produce {
            topic,
            partition,
            records: records.into_iter().map(NewRecord::from).collect(),
            sequence: None,
        }),
        Request::Fetch { topic, partitions, max_records, max_bytes, max_wait_ms } => {
            Command::Topic(TopicCommand::Fetch {
                topic,
                positions: partitions.into_iter().map(Into::into).collect(),
                max_records: max_records as usize,
                max_bytes: max_bytes as usize,
                max_wait: Duration::from_millis(max_wait_ms),
            })
        }
        Request::OffsetsForTime { topic, timestamp_ms } => {
            Command::Topic(TopicCommand::OffsetsForTime { topic, timestamp_ms })
        }
        Request::Request { topic, key, value, headers, timeout_ms } => Command::Topic(TopicCommand::Request {
            topic,
            record: w::WireRecord { key, value, headers }.into(),
            timeout: Duration::from_millis(timeout_ms),
        }),
        Request::CommitOffsets { group, topic, offsets, member } => {
            Command::Group(GroupCommand::Commit { group, topic, offsets, member })
        }
        Request::FetchOffsets { group, topic } => Command::Group(GroupCommand::Offsets { group, topic }),
        Request::ReplayDeadLetters { topic, to } => Command::Topic(TopicCommand::ReplayDeadLetters { topic, to }),
        Request::ListGroups => Command::Group(GroupCommand::List),
        Request::JoinGroup { group, topic, member, session_timeout_ms } => Command::Group(GroupCommand::Join {
            group,
            topic,
            member,
            session: Duration::from_millis(session_timeout_ms),
        }),
        Request::Heartbeat { group, topic, member } => Command::Group(GroupCommand::Heartbeat { group, topic, member }),
        Request::LeaveGroup { group, topic, member } => Command::Group(GroupCommand::Leave { group, topic, member }),
        Request::DescribeGroups => Command::Group(GroupCommand::Describe),
        other => return queue_exchange_or_plugin(other),
    })
}

fn queue_exchange_or_plugin(request: Request) -> Result<Command, WireError> {
    Ok(match request {
        Request::CreateQueue { name, config } => Command::Queue(QueueCommand::Create { name, config: config.into() }),
        Request::DeleteQueue { name } => Command::Queue(QueueCommand::Delete { name }),
        Request::PurgeQueue { name } => Command::Queue(QueueCommand::Purge { name }),
        Request::ListQueues => Command::Queue(QueueCommand::List),
        Request::DescribeQueue { name } => Command::Queue(QueueCommand::Describe { name }),
        Request::QueueSend { queue, messages } => {
            Command::Queue(QueueCommand::Send { queue, messages: messages.into_iter().map(Into::into).collect() })
        }
        Request::QueueReceive { queue, max, wait_ms, visibility_ms } => {
            Command::Queue(QueueCommand::Receive { queue, max, wait: Duration::from_millis(wait_ms), visibility_ms })
        }
        Request::QueueAck { queue, receipts } => Command::Queue(QueueCommand::Ack { queue, receipts }),
        Request::QueueNack { queue, receipts, how } => {
            Command::Queue(QueueCommand::Nack { queue, receipts, how: how.into() })
        }
        Request::QueueExtend { queue, receipts, timeout_ms } => {
            Command::Queue(QueueCommand::Extend { queue, receipts, timeout_ms })
        }
        Request::CreateExchange { name, kind, alternate } => {
            Command::Exchange(ExchangeCommand::Create { name, kind: kind.into(), alternate })
        }
        Request::DeleteExchange { name } => Command::Exchange(ExchangeCommand::Delete { name }),
        Request::Bind { exchange, binding } => {
            Command::Exchange(ExchangeCommand::Bind { exchange, binding: binding.into() })
        }
        Request::Unbind { exchange, destination, key } => {
            Command::Exchange(ExchangeCommand::Unbind { exchange, destination: destination.into(), key })
        }
        Request::ListExchanges => Command::Exchange(ExchangeCommand::List),
        Request::Publish { exchange, routing_key, key, value, headers } => {
            Command::Exchange(ExchangeCommand::Publish {
                exchange,
                routing_key,
                record: w::WireRecord { key, value, headers }.into(),
            })
        }
        Request::DeployPlugin { name, wasm, sandbox, shadow, upload } => Command::Plugin(PluginCommand::Deploy {
            name,
            wasm: wasm.into_vec(),
            sandbox: sandbox.map(Into::into).unwrap_or_default(),
            shadow,
            upload,
        }),
        Request::UploadPluginPart { name, upload, offset, total, bytes } => {
            Command::Plugin(PluginCommand::UploadPart { name, upload, offset, total, bytes: bytes.into_vec() })
        }
        Request::ListPlugins => Command::Plugin(PluginCommand::List),
        Request::PluginVersions { name } => Command::Plugin(PluginCommand::Versions { name }),
        Request::DescribePlugin { reference } => Command::Plugin(PluginCommand::Describe { reference }),
        Request::RemovePlugin { name } => Command::Plugin(PluginCommand::Remove { name }),
        Request::RollbackPlugin { name, to } => Command::Plugin(PluginCommand::Rollback { name, to }),
        Request::PromotePlugin { name } => Command::Plugin(PluginCommand::Promote { name }),
        Request::PluginDiff { name } => Command::Plugin(PluginCommand::Diff { name }),
        other => return pipeline_or_state(other),
    })
}

fn pipeline_or_state(request: Request) -> Result<Command, WireError> {
    Ok(match request {
        Request::CreatePipeline { spec } => Command::Pipeline(PipelineCommand::Create { spec: spec.into() }),
        Request::ApplyPipeline { spec } => Command::Pipeline(PipelineCommand::Apply { spec: spec.into() }),
        Request::ListPipelines => Command::Pipeline(PipelineCommand::List),
        Request::ClusterStatus => Command::ClusterStatus,
        Request::PipelineStatus { name } => Command::Pipeline(PipelineCommand::Status { name }),
        Request::DeletePipeline { name } => Command::Pipeline(PipelineCommand::Delete { name }),
        Request::PausePipeline { name } => Command::Pipeline(PipelineCommand::Pause { name }),
        Request::ResumePipeline { name } => Command::Pipeline(PipelineCommand::Resume { name }),
        Request::ResetPipeline { name, to, reset_state } => {
            Command::Pipeline(PipelineCommand::Reset { name, to: to.into(), reset_state })
        }
        Request::StateGet { pipeline, step, key } => {
            Command::State(StateCommand::Get { pipeline, step, key: key.into_vec() })
        }
        Request::StateList { pipeline, step, prefix, limit } => {
            Command::State(StateCommand::List { pipeline, step, prefix: prefix.into_vec(), limit })
        }
        Request::StateDelete { pipeline, step, key } => {
            Command::State(StateCommand::Delete { pipeline, step, key: key.into_vec() })
        }
        other => {
            return Err(WireError::new(ErrorCode::InvalidArgument, format!("this server does not handle {other:?}")));
        }
    })
}

/// The response a reply travels as.
pub(super) fn response(reply: Reply) -> Response {
    fn all<A, B: From<A>>(v: Vec<A>) -> Vec<B> {
        v.into_iter().map(B::from).collect()
    }
    match reply {
        Reply::Done => Response::Ok,
        Reply::Topic(t) => Response::Topic(t.into()),
        Reply::Topics(t) => Response::Topics(all(t)),
        Reply::Produced(positions) => Response::Produced { positions },
        Reply::Fetched(p) => Response::Fetched { partitions: all(p) },
        Reply::Offsets(o) => Response::Offsets(o),
        Reply::Reply(r) => Response::Reply(fetched(r)),
        Reply::Groups(g) => Response::Groups(all(g)),
        Reply::Membership(m) => Response::Membership(m.into()),
        Reply::GroupMembers(g) => Response::GroupMembers(all(g)),
        Reply::Queue(q) => Response::Queue(q.into()),
        Reply::Queues(q) => Response::Queues(all(q)),
        Reply::Sent(s) => Response::Sent(s),
        Reply::Deliveries(d) => Response::Deliveries(all(d)),
        Reply::Count(n) => Response::Count(n),
        Reply::Exchange(e) => Response::Exchange(e.into()),
        Reply::Exchanges(e) => Response::Exchanges(all(e)),
        Reply::Published(d) => Response::Published(d.iter().map(ToString::to_string).collect()),
        Reply::Plugin(p) => Response::Plugin(p.into()),
        Reply::Plugins(p) => Response::Plugins(all(p)),
        Reply::PluginVersions(p) => Response::PluginVersions(all(p)),
        Reply::ShadowDiff(d) => Response::ShadowDiff(d.into()),
        Reply::Pipeline(p) => Response::Pipeline(p.into()),
        // Kafka's door asks for these; the native door never does.
        // Kafka-door and HTTP-door answers: the native protocol has no request that gets them.
        Reply::Joined(_) | Reply::Assignment(_) | Reply::ClassicGroups(_) | Reply::Producer(_) | Reply::Schema(_) => {
            Response::Ok
        }
        Reply::Pipelines(p) => Response::Pipelines(all(p)),
        Reply::Applied(status, change) => Response::Applied { status: status.into(), change: change.into() },
        Reply::State(s) => Response::State(all(s)),
        Reply::ClusterStatus(c) => Response::ClusterStatus(super::convert::cluster_status(c)),
    }
}

/// The wire error of a broker error: its code, and its message as is.
pub(super) fn error(e: BrokerError) -> WireError {
    WireError::new(code(e.kind()), e.to_string())
}

/// The native protocol's number for each kind of failure.
pub(super) fn code(kind: ErrorKind) -> ErrorCode {
    match kind {
        ErrorKind::InvalidArgument => ErrorCode::InvalidArgument,
        ErrorKind::UnknownTopic => ErrorCode::UnknownTopic,
        ErrorKind::TopicExists => ErrorCode::TopicExists,
        ErrorKind::MessageTooLarge => ErrorCode::MessageTooLarge,
        ErrorKind::UnknownPlugin => ErrorCode::UnknownPlugin,
        ErrorKind::InvalidPlugin => ErrorCode::InvalidPlugin,
        ErrorKind::UnknownPipeline => ErrorCode::UnknownPipeline,
        ErrorKind::PipelineExists => ErrorCode::PipelineExists,
        ErrorKind::Storage => ErrorCode::Storage,
        ErrorKind::ShuttingDown => ErrorCode::ShuttingDown,
        ErrorKind::Busy => ErrorCode::Busy,
        ErrorKind::PluginInit => ErrorCode::PluginInit,
        ErrorKind::InUse => ErrorCode::InUse,
        ErrorKind::Unauthenticated => ErrorCode::Unauthenticated,
        ErrorKind::Forbidden => ErrorCode::Forbidden,
        ErrorKind::Timeout => ErrorCode::Timeout,
        ErrorKind::NotFound => ErrorCode::NotFound,
        ErrorKind::AlreadyExists => ErrorCode::AlreadyExists,
        ErrorKind::UnknownQueue => ErrorCode::UnknownQueue,
        ErrorKind::UnknownExchange => ErrorCode::UnknownExchange,
        ErrorKind::Unroutable => ErrorCode::Unroutable,
        ErrorKind::Rebalanced | ErrorKind::RebalanceInProgress => ErrorCode::Rebalanced,
        ErrorKind::InconsistentProtocol | ErrorKind::ProducerFenced | ErrorKind::OutOfOrderSequence => {
            ErrorCode::InvalidArgument
        }
        ErrorKind::DuplicateSequence => ErrorCode::AlreadyExists,
        ErrorKind::StaleReceipt => ErrorCode::StaleReceipt,
        ErrorKind::QueueFull => ErrorCode::QueueFull,
        ErrorKind::InvalidRecord => ErrorCode::InvalidRecord,
        ErrorKind::DiskFull => ErrorCode::DiskFull,
        ErrorKind::Internal => ErrorCode::Internal,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Kinds map to the wire's pinned numbers; a wrong mapping would tell clients the wrong
    /// thing.
    #[test]
    fn kinds_map_to_their_codes() {
        let queue = BrokerError::Queue(crate::queue::QueueError::Unknown("q".into()));
        assert_eq!(u16::from(error(queue).code), 23);
        let source = crate::pipeline::PipelineError::Queue(crate::queue::QueueError::Unknown("q".into()));
        assert_eq!(error(BrokerError::Pipeline(source)).code, ErrorCode::UnknownQueue, "a missing source queue");
        assert_eq!(code(ErrorKind::Forbidden), ErrorCode::Forbidden);
        assert_eq!(code(ErrorKind::Internal), ErrorCode::Internal);
    }
}
