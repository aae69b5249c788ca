//! The edge between the wire's types (`weir_client::wire`) and the broker's: each boundary
//! owns its types, and they meet only here, so a field can change on one side without
//! changing the other. Most pairs have the same shape; [`mirror!`] writes both directions of
//! those, field by field, and the few that differ are written out.

use bytes::Bytes;
use serde_bytes::ByteBuf;
use weir_client::wire as w;

use crate::cluster::PartitionOwner;
use crate::mirror::{mirror, mirror_enum};

use crate::broker::{FetchPosition, FetchedPartition, GroupLag, PluginEntry, TopicInfo};
use crate::exchange::{Binding, Destination, ExchangeInfo, ExchangeType};
use crate::groups::{GroupMembers, Membership};
use crate::pipeline::{
    ApplyChange, DiffSample, ErrorPolicy, PipelineSpec, PipelineStatus, ResetTarget, RunState, ShadowReport, Source,
    StartPosition, StateEntry, StepSpec, StepStats,
};
use crate::queue::{Delivery, Nack, NewQueueMessage, QueueConfig, QueueInfo};
use crate::registry::PluginInfo;
use crate::runtime::Sandbox;
use crate::storage::{NewRecord, StoredRecord};
use crate::types::{Durability, Partitioner, SubjectStrategy, TopicConfig, Validation};

mirror_enum!(w::Durability => Durability { Sync, Os });
mirror_enum!(w::Partitioner => Partitioner { Hash, Murmur2 });
mirror_enum!(w::Validation => Validation { Id, Full, None });
mirror_enum!(w::SubjectStrategy => SubjectStrategy { TopicName, RecordName, TopicRecordName });
mirror_enum!(w::StartPosition => StartPosition { Earliest, Latest });
mirror_enum!(w::ErrorPolicy => ErrorPolicy { Halt, Retry, Skip, DeadLetter });
mirror_enum!(w::RunState => RunState { Running, Paused, Halted });
mirror_enum!(w::ApplyChange => ApplyChange { Created, Unchanged, Swapped, Restarted });
mirror_enum!(w::ExchangeType => ExchangeType { Direct, Topic, Fanout, Headers });

mirror!(w::TopicConfig => TopicConfig {
    partitions, durability: opt, retention_ms, retention_bytes, max_message_bytes, ephemeral, partitioner: into,
    key_schema, value_schema, validation: into, subject_strategy: into
});
mirror!(w::QueueConfig => QueueConfig {
    visibility_timeout_ms, max_deliveries, dead_letter, dedup_window_ms, max_messages,
    dead_letter_exchange, dead_letter_routing_key, message_ttl_ms
});
mirror!(w::NewQueueMessage => NewQueueMessage { body, headers, priority, delay_ms, dedup_id, group, ttl_ms });
mirror!(w::Delivery => Delivery { receipt, body, headers, deliveries, priority, group, enqueued_ms });
mirror!(w::QueueInfo => QueueInfo { name, config: into, ready, waiting, in_flight, created_ms });
mirror!(w::Membership => Membership { member_id, generation, partitions });
mirror!(w::GroupMembers => GroupMembers { group, topic, generation, members });
mirror!(w::Binding => Binding { destination: into, key, matches, match_any });
mirror!(w::ExchangeInfo => ExchangeInfo { name, kind: into, bindings: each, alternate, created_ms });
mirror!(w::Sandbox => Sandbox {
    memory_bytes, cpu_ms_per_batch, output_bytes_per_batch, state_value_bytes, state_bytes_per_batch,
    log_lines_per_s, allow_clock, allow_env
});
mirror!(w::PluginInfo => PluginInfo { name, version, hash, size, world, deployed_ms, sandbox: into });
mirror!(w::PluginEntry => PluginEntry { live: into, shadow, versions, used_by });
mirror!(w::DiffSample => DiffSample { pipeline, step, partition, offset, live, shadow });
mirror!(w::ShadowReport => ShadowReport {
    plugin, shadow_version, live_version, matched, differed, shadow_failures, samples: each, schema_changes
});
mirror!(w::StepSpec => StepSpec { plugin, config });
mirror!(w::PipelineSpec => PipelineSpec {
    name, source: into, group, steps: each, sink, start: into, batch_max_messages, on_error: into, max_attempts,
    backoff_ms, dead_letter_topic, parallelism, max_hops
});
mirror!(w::StepStats => StepStats { input, output, dropped, errors, calls, busy_us });
mirror!(w::PipelineStatus => PipelineStatus {
    spec: into, owner, state: into, plugins, shadows, processed, emitted, dropped, batches, failed, dead_lettered,
    retries, steps: each, swaps, swap_pause_p99_us, partitions, queue_depth, last_error, last_error_ms
});
mirror!(w::StateEntry => StateEntry { partition, key, value });
mirror!(w::FetchPosition => FetchPosition { partition, offset });
mirror!(w::TopicInfo => TopicInfo { name, config: into, durability: into, created_ms, partitions });
mirror!(w::GroupInfo => GroupLag { group, topic, partitions });

impl From<w::Source> for Source {
    fn from(s: w::Source) -> Source {
        match s {
            w::Source::Topic(t) => Source::Topic(t),
            w::Source::Queue(q) => Source::Queue(q),
        }
    }
}

impl From<Source> for w::Source {
    fn from(s: Source) -> w::Source {
        match s {
            Source::Topic(t) => w::Source::Topic(t),
            Source::Queue(q) => w::Source::Queue(q),
        }
    }
}

impl From<w::Destination> for Destination {
    fn from(d: w::Destination) -> Destination {
        match d {
            w::Destination::Topic(t) => Destination::Topic(t),
            w::Destination::Queue(q) => Destination::Queue(q),
        }
    }
}

impl From<Destination> for w::Destination {
    fn from(d: Destination) -> w::Destination {
        match d {
            Destination::Topic(t) => w::Destination::Topic(t),
            Destination::Queue(q) => w::Destination::Queue(q),
        }
    }
}

impl From<w::Nack> for Nack {
    fn from(n: w::Nack) -> Nack {
        match n {
            w::Nack::Requeue { delay_ms } => Nack::Requeue { delay_ms },
            w::Nack::DeadLetter => Nack::DeadLetter,
        }
    }
}

impl From<w::ResetTarget> for ResetTarget {
    fn from(t: w::ResetTarget) -> ResetTarget {
        match t {
            w::ResetTarget::Offset(o) => ResetTarget::Offset(o),
            w::ResetTarget::Time(t) => ResetTarget::Time(t),
        }
    }
}

/// A produced record: the wire's buffers become the store's `Bytes` without a copy.
impl From<w::WireRecord> for NewRecord {
    fn from(r: w::WireRecord) -> NewRecord {
        NewRecord {
            key: r.key.map(|k| Bytes::from(k.into_vec())),
            value: Bytes::from(r.value.into_vec()),
            headers: r.headers,
        }
    }
}

/// A stored record as it is fetched.
pub(super) fn fetched(r: StoredRecord) -> w::FetchedRecord {
    w::FetchedRecord {
        timestamp_ms: r.timestamp_ms,
        key: r.key.map(|k| ByteBuf::from(k.to_vec())),
        value: ByteBuf::from(r.value.to_vec()),
        headers: r.headers,
    }
}

impl From<FetchedPartition> for w::FetchedPartition {
    fn from(p: FetchedPartition) -> w::FetchedPartition {
        w::FetchedPartition {
            partition: p.partition,
            first_offset: p.first_offset,
            high_watermark: p.high_watermark,
            records: p.records.into_iter().map(fetched).collect(),
        }
    }
}

mirror!(w::PartitionOwner => PartitionOwner {
    pipeline, partition, owner, committed, committed_by, versions
});

/// Cluster mode's view, for the wire (live nodes as the wire's records).
pub(super) fn cluster_status(c: crate::cluster::ClusterStatus) -> w::ClusterStatus {
    w::ClusterStatus {
        node: c.node,
        nats: c.nats,
        connected: c.connected,
        nodes: c
            .nodes
            .into_iter()
            .map(|(id, n)| w::ClusterNode { id, native: n.native, kafka: n.kafka, http: n.http })
            .collect(),
        partitions: c.partitions.into_iter().map(Into::into).collect(),
        commits: c.commits,
        fenced_commits: c.fenced_commits,
        takeovers: c.takeovers,
    }
}
