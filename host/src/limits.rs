//! Every limit a client or a plugin can push against, named, with the reason for its value.
//!
//! Values here are defaults; the ones marked *configurable* have a `weir serve` flag or a
//! per-topic / per-plugin setting. Defaults a client also needs (the frame limit, a deploy's
//! default sandbox) are defined in the wire protocol and named here with their reasons.

/// Largest frame the server accepts (*configurable*: `--max-frame-bytes`). A produce request
/// carries a batch, so this bounds a batch; 16 MiB holds 100,000 typical messages while
/// keeping one client from pinning much memory.
pub const MAX_FRAME_BYTES: usize = weir_client::wire::MAX_FRAME_BYTES;

/// Largest single message value (*configurable* per topic). Kafka's default is 1 MiB; a
/// message larger than that belongs in object storage with a pointer in the log.
pub const MAX_MESSAGE_BYTES: usize = weir_client::wire::MAX_MESSAGE_BYTES;

/// Largest key, header name or header value; keys are hashed and compared, not stored blobs.
pub const MAX_KEY_BYTES: usize = 16 * 1024;

/// Most headers one message may carry.
pub const MAX_HEADERS: usize = 64;

/// Concurrent client connections (*configurable*: `--max-connections`); each costs a task
/// and two buffers, so a flood is refused instead of exhausting memory.
pub const MAX_CONNECTIONS: usize = 1024;

/// Requests one connection may have in flight before the server stops reading from it:
/// the per-connection bound on memory held by pipelined requests.
pub const MAX_IN_FLIGHT_PER_CONNECTION: usize = 256;

/// Most records a single fetch returns; consumers ask again for more.
pub const MAX_FETCH_RECORDS: usize = 100_000;

/// Most bytes a single fetch returns, under the frame limit with room for headers.
pub const MAX_FETCH_BYTES: usize = weir_client::wire::MAX_FETCH_BYTES;

/// Longest a long-poll fetch may wait: a dead client's request must not linger forever.
pub const MAX_FETCH_WAIT_MS: u64 = 60_000;

/// Most partitions a topic may have; each one is a worker per pipeline.
pub const MAX_PARTITIONS: u32 = 1024;

/// Longest topic, plugin, pipeline or group name.
pub const MAX_NAME_BYTES: usize = 200;

/// Largest plugin component accepted by `deploy`; components are compiled in memory. A
/// Python plugin (CPython embedded by componentize-py) is about 18.5 MB, a JavaScript one
/// (SpiderMonkey, by componentize-js) about 12 MB: this leaves room for their libraries.
pub const MAX_PLUGIN_BYTES: usize = 64 * 1024 * 1024;

/// A component larger than this is deployed in parts of this size (the client splits it):
/// the frame limit stays what it is for every other request, and a part is far under it.
pub const PLUGIN_UPLOAD_PART_BYTES: usize = weir_client::wire::PLUGIN_UPLOAD_PART_BYTES;

/// Uploads in parts staged at once: each may hold up to [`MAX_PLUGIN_BYTES`] of memory.
pub const PLUGIN_UPLOADS_MAX: usize = 4;

/// An upload nobody has added a part to for this long is forgotten (its client is gone).
pub const PLUGIN_UPLOAD_IDLE: std::time::Duration = std::time::Duration::from_secs(60);

/// Most requests merged into one group commit. More waiting requests start the next commit
/// at once; the bound keeps one `WriteBatch` (and its memory) finite.
pub const MAX_GROUP_COMMIT_REQUESTS: usize = 4096;

/// Most bytes merged into one group commit, for the same reason.
pub const MAX_GROUP_COMMIT_BYTES: usize = 64 * 1024 * 1024;

/// Writes queued for the group-commit thread before producers wait: backpressure, so a
/// burst of producers cannot queue unbounded memory ahead of the disk.
pub const WRITE_QUEUE_DEPTH: usize = 8192;

/// Messages a pipeline reads per batch (*configurable* per pipeline): one component call per
/// step per batch amortises the boundary cost (~80 ns) to nothing.
pub const PIPELINE_BATCH_MESSAGES: usize = 2048;

/// Bytes a pipeline reads per batch, so large messages make smaller batches.
pub const PIPELINE_BATCH_BYTES: usize = 4 * 1024 * 1024;

/// Largest total output of one batch of one step (*configurable* per plugin): a plugin
/// emitting gigantic output fails its batch instead of exhausting host memory.
pub const PLUGIN_OUTPUT_BYTES_PER_BATCH: usize = weir_client::wire::sandbox_defaults::OUTPUT_BYTES_PER_BATCH;

/// Linear memory of one plugin instance (*configurable* per plugin).
pub const PLUGIN_MEMORY_BYTES: usize = weir_client::wire::sandbox_defaults::MEMORY_BYTES;

/// Hard ceiling on any plugin's memory; the pooling allocator reserves this much address
/// space per slot.
pub const PLUGIN_MEMORY_BYTES_MAX: usize = 512 * 1024 * 1024;

/// CPU time one `process` call (one batch) may take before it is interrupted
/// (*configurable* per plugin). Measured in epoch ticks of [`EPOCH_TICK_MS`].
pub const PLUGIN_CPU_MS_PER_BATCH: u64 = weir_client::wire::sandbox_defaults::CPU_MS_PER_BATCH;

/// Granularity of plugin CPU deadlines.
pub const EPOCH_TICK_MS: u64 = 1;

/// Largest state key a plugin may write.
pub const STATE_KEY_BYTES: usize = 4 * 1024;

/// Largest state value a plugin may write (*configurable* per plugin).
pub const STATE_VALUE_BYTES: usize = weir_client::wire::sandbox_defaults::STATE_VALUE_BYTES;

/// Most state bytes one batch of one step may write, bounding the commit's size.
pub const STATE_BYTES_PER_BATCH: usize = weir_client::wire::sandbox_defaults::STATE_BYTES_PER_BATCH;

/// Log lines per second a plugin may write before lines are counted and dropped
/// (*configurable* per plugin).
pub const PLUGIN_LOG_LINES_PER_S: u32 = weir_client::wire::sandbox_defaults::LOG_LINES_PER_S;

/// Longest log line kept from a plugin; the rest is cut with [`truncated`]'s marker.
pub const PLUGIN_LOG_LINE_BYTES: usize = 4096;

/// Longest text a plugin hands back that the host keeps, logs or sends: a failure message,
/// an `init` error, a trap report, and so a dead-letter reason or a halt reason. A plugin
/// failing with 20 MiB of text must not put 20 MiB into the log, a status or a header.
pub const PLUGIN_TEXT_BYTES: usize = 4096;

/// Longest halt or failure reason a pipeline keeps (it quotes a plugin's text and adds where).
pub const PIPELINE_REASON_BYTES: usize = 2 * PLUGIN_TEXT_BYTES;

/// Instance slots in the pooling allocator: every pipeline step on every partition holds one.
pub const PLUGIN_INSTANCES_MAX: u32 = 1000;

/// Core module instances one component may create. A Rust plugin has 2–4; a Python plugin
/// (componentize-py: CPython and its WASI adapters) has 14 core modules; a JavaScript one
/// (componentize-js) 3. 16 holds all of them with a little room, no more.
pub const PLUGIN_CORE_INSTANCES_PER_COMPONENT: u32 = 16;

/// Linear memories one component may define: its module's and an adapter's.
pub const PLUGIN_MEMORIES_PER_COMPONENT: u32 = 2;

/// Tables one component may define: CPython's component has several (its modules' function
/// tables and the adapters' indirect-call shims); 8 holds the Python and JavaScript ones.
pub const PLUGIN_TABLES_PER_COMPONENT: u32 = 8;

/// Messages an ephemeral topic keeps per partition for subscribers that fall behind; older
/// ones are gone (a slow subscriber skips ahead, as with Redis Pub/Sub output buffers).
pub const EPHEMERAL_RING_RECORDS: usize = 10_000;

/// Messages a queue may hold (*configurable* per queue): the in-memory index costs about
/// 100 bytes per message.
pub const QUEUE_MAX_MESSAGES: usize = weir_client::wire::QUEUE_MAX_MESSAGES;

/// Memory all RocksDB memtables may hold together, across column families: past it, RocksDB
/// flushes memtables to get back under it (a soft limit: writes are not stalled). Without a
/// shared budget each column family grows its own buffers up to its own maximum.
pub const STORE_MEMTABLE_BYTES: usize = 192 * 1024 * 1024;

/// RocksDB's block cache, which also holds index and filter blocks: without it in the cache
/// they are pinned per table file, so memory would grow with the data on disk.
pub const STORE_BLOCK_CACHE_BYTES: usize = 64 * 1024 * 1024;

/// Messages one receive may return.
pub const QUEUE_RECEIVE_MAX: usize = 10_000;

/// Longest visibility timeout or delay (12 hours, as SQS).
pub const QUEUE_MAX_DELAY_MS: u64 = 12 * 3_600_000;

/// Members of one consumer group.
pub const GROUP_MAX_MEMBERS: usize = 1_000;

/// Distinct `(reason, queue)` deaths a dead letter remembers (`weir-dlq-deaths`, RabbitMQ's
/// `x-death`): a message cycling through more queues forgets the oldest.
pub const QUEUE_DEATHS_KEPT: usize = 8;

/// Largest AMQP frame, offered in connection.tune (RabbitMQ's default, 128 KiB): a frame is
/// refused by its size before anything is buffered for it.
pub const AMQP_FRAME_MAX: usize = 131_072;

/// How deeply field tables and arrays may nest in an AMQP frame (the codec parses them
/// recursively; clients nest a few levels at most).
pub const AMQP_MAX_NESTING: usize = 64;

/// Channels one AMQP connection may open (RabbitMQ's default).
pub const AMQP_CHANNEL_MAX: u16 = 2_047;

/// Heartbeat offered in connection.tune, seconds (RabbitMQ's default): a client silent for
/// two of the negotiated intervals is disconnected.
pub const AMQP_HEARTBEAT_S: u16 = 60;

/// Encoded frame groups waiting for an AMQP connection's writer (a slow reader holds its
/// consumers back, not the server's memory).
pub const AMQP_FRAMES_QUEUED: usize = 256;

/// Events (a channel to close) from an AMQP connection's tasks waiting for it.
pub const AMQP_EVENTS_QUEUED: usize = 64;

/// Bytes an AMQP connection's writer gathers into one write.
pub const AMQP_WRITE_BATCH_BYTES: usize = 64 * 1024;

/// How long an AMQP delivery stays invisible to others unacked: renewed while its channel
/// is open, so it bounds only how long deliveries of a stopped weir stay away.
pub const AMQP_DELIVERY_LEASE_MS: u64 = 60_000;

/// Unacked deliveries one AMQP channel may hold, whatever its prefetch (0 is unlimited in
/// AMQP; not here).
pub const AMQP_MAX_UNACKED: usize = 10_000;

/// Publishes one AMQP channel may have written and not yet confirmed (a publisher ahead of
/// its confirms waits).
pub const AMQP_PUBLISHES_IN_FLIGHT: usize = 1_024;

/// Messages one AMQP consumer takes from its queue per receive.
pub const AMQP_RECEIVE_BATCH: usize = 100;

/// How long an idle AMQP consumer's receive waits before it looks at its stop signal again.
pub const AMQP_CONSUMER_POLL_MS: u64 = 500;

/// Kafka requests started and not yet answered on one connection (clients pipeline up to
/// `max.in.flight`, 5 by default).
pub const KAFKA_IN_FLIGHT_PER_CONNECTION: usize = 64;

/// Largest the compressed Kafka record batches of one produce request may grow, together,
/// when decompressed.
pub const KAFKA_MAX_DECOMPRESSED_BYTES: usize = 64 * 1024 * 1024;

/// Records in one Kafka record batch (librdkafka sends up to 10,000 by default; each decoded
/// record costs a few hundred bytes however small it was on the wire).
pub const KAFKA_MAX_BATCH_RECORDS: usize = 100_000;

/// Idempotent producers' windows (one per producer and partition) kept in memory; beyond it
/// the settled ones are dropped and read again from the store when a producer returns.
pub const KAFKA_PRODUCER_WINDOWS: usize = 100_000;

/// Assignors a Kafka group member may offer, and their metadata (subscriptions) together.
pub const KAFKA_GROUP_PROTOCOLS: usize = 16;
/// See [`KAFKA_GROUP_PROTOCOLS`].
pub const KAFKA_GROUP_METADATA_BYTES: usize = 1024 * 1024;

/// Kafka classic consumer groups with members at once.
pub const CLASSIC_GROUPS_MAX: usize = 10_000;

/// Bindings of one exchange.
pub const EXCHANGE_MAX_BINDINGS: usize = 10_000;

/// Requests waiting for a reply at once, server-wide.
pub const PENDING_REQUESTS_MAX: usize = 100_000;

/// Connections over the limit being told so at once; past this many, more are just closed.
pub const REFUSALS_IN_FLIGHT: usize = 64;

/// How long telling a refused connection why (a TLS handshake and one frame) may take.
pub const REFUSAL_TIMEOUT_MS: u64 = 1_000;

/// How long a frame may take to arrive once its first byte did (*configurable*:
/// `--frame-timeout`): a client trickling a frame byte by byte (slowloris) is cut off.
pub const FRAME_TIMEOUT_MS: u64 = 30_000;

/// Largest HTTP request body: a produce of this many bytes of JSON (base64 values grow by a
/// third) is still far below a native frame.
pub const HTTP_MAX_BODY_BYTES: usize = 8 << 20;

/// How long an HTTP request may take (a long poll waits at most a second less).
pub const HTTP_REQUEST_TIMEOUT_MS: u64 = 30_000;

/// Records per HTTP fetch or server-sent-events read, at most.
pub const HTTP_MAX_FETCH_RECORDS: usize = 10_000;

/// Bytes per HTTP fetch, about (records are JSON-encoded from here).
pub const HTTP_MAX_FETCH_BYTES: usize = 4 << 20;

/// How long responses may wait for a client to read them (*configurable*:
/// `--write-timeout`) before the connection is closed.
pub const WRITE_TIMEOUT_MS: u64 = 60_000;

/// `text` cut to at most `max` bytes (at a character boundary) with a marker saying how long
/// it was: `… (truncated, 20971520 bytes)`. Shorter text comes back unchanged.
pub fn truncated(mut text: String, max: usize) -> String {
    if text.len() <= max {
        return text;
    }
    let len = text.len();
    let mut cut = max;
    while !text.is_char_boundary(cut) {
        cut -= 1;
    }
    text.truncate(cut);
    text.push_str(&format!("… (truncated, {len} bytes)"));
    text
}

/// Most inputs in one cluster-mode pipeline batch: the batch commits as one JetStream atomic
/// batch, at most 1000 messages (outputs packed, plus one per state key written, plus the
/// commit record).
pub const CLUSTER_BATCH_MESSAGES: usize = 500;

#[cfg(test)]
mod tests {
    #[test]
    fn long_text_is_cut_with_a_marker() {
        assert_eq!(super::truncated("short".into(), 10), "short");
        assert_eq!(super::truncated("abcdef".into(), 3), "abc… (truncated, 6 bytes)");
        // Never inside a character.
        assert_eq!(super::truncated("ééé".into(), 3), "é… (truncated, 6 bytes)");
    }
}
