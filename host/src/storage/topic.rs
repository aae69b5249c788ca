//! In-memory view of a topic and its partitions: offsets and the wake-up for long polls.

use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::time::Duration;

use tokio::sync::Notify;

use super::{Result, StoreError};
use crate::types::TopicConfig;

/// A topic: its settings and partitions.
#[derive(Debug)]
pub struct Topic {
    /// Numeric id used in keys; never reused, so a recreated topic shares nothing with the old.
    pub id: u32,
    /// Name.
    pub name: String,
    /// Settings fixed at creation.
    pub config: TopicConfig,
    /// Creation time, ms since the Unix epoch.
    pub created_ms: u64,
    partitions: Vec<Partition>,
    /// Next partition for keyless messages.
    round_robin: AtomicU32,
    /// Set when the topic is deleted, so writers holding the `Arc` are refused.
    deleted: AtomicBool,
    /// Bytes appended and records and bytes read since the server started (for metrics).
    pub(crate) traffic: Traffic,
}

/// A topic's traffic since the server started. Records in are not counted here: the high
/// watermarks are that count, and survive restarts.
#[derive(Debug, Default)]
pub struct Traffic {
    pub(crate) bytes_in: AtomicU64,
    pub(crate) records_out: AtomicU64,
    pub(crate) bytes_out: AtomicU64,
}

impl Traffic {
    /// `(bytes in, records out, bytes out)`.
    pub fn totals(&self) -> (u64, u64, u64) {
        let load = |a: &AtomicU64| a.load(Ordering::Relaxed);
        (load(&self.bytes_in), load(&self.records_out), load(&self.bytes_out))
    }
}

impl Topic {
    pub(crate) fn new(
        id: u32,
        name: String,
        config: TopicConfig,
        created_ms: u64,
        partitions: Vec<Partition>,
    ) -> Topic {
        Topic {
            id,
            name,
            config,
            created_ms,
            partitions,
            round_robin: AtomicU32::new(0),
            deleted: AtomicBool::new(false),
            traffic: Traffic::default(),
        }
    }

    /// Number of partitions.
    pub fn partition_count(&self) -> u32 {
        self.partitions.len() as u32
    }

    /// Partition `p`, or an error naming the valid range.
    pub fn partition(&self, p: u32) -> Result<&Partition> {
        self.partitions.get(p as usize).ok_or_else(|| StoreError::UnknownPartition {
            topic: self.name.clone(),
            partition: p,
            partitions: self.partition_count(),
        })
    }

    /// Every partition, in order.
    pub fn partitions(&self) -> &[Partition] {
        &self.partitions
    }

    /// The partition for a message: by the topic's partitioner when keyed (stable across
    /// versions and restarts), round-robin otherwise.
    pub fn partition_for(&self, key: Option<&[u8]>) -> u32 {
        let n = self.partition_count();
        match key {
            Some(k) => self.config.partitioner.partition(k, n),
            None => self.round_robin.fetch_add(1, Ordering::Relaxed) % n,
        }
    }

    /// Bytes in and records and bytes out since the server started.
    pub fn traffic(&self) -> &Traffic {
        &self.traffic
    }

    /// Count a read of `records` records, `bytes` value bytes (metrics).
    pub(crate) fn count_read(&self, records: usize, bytes: usize) {
        self.traffic.records_out.fetch_add(records as u64, Ordering::Relaxed);
        self.traffic.bytes_out.fetch_add(bytes as u64, Ordering::Relaxed);
    }

    /// Count `bytes` appended (metrics).
    pub(crate) fn count_written(&self, bytes: u64) {
        self.traffic.bytes_in.fetch_add(bytes, Ordering::Relaxed);
    }

    /// Whether the topic was deleted.
    pub fn is_deleted(&self) -> bool {
        self.deleted.load(Ordering::Acquire)
    }

    pub(crate) fn mark_deleted(&self) {
        self.deleted.store(true, Ordering::Release);
        for p in &self.partitions {
            p.notify.notify_waiters();
        }
    }
}

/// One partition's offsets.
#[derive(Debug)]
pub struct Partition {
    /// First offset still stored (retention moves it forward).
    log_start: AtomicU64,
    /// Next offset to assign; only the writer thread changes it.
    pub(crate) next_offset: AtomicU64,
    /// One past the last acknowledged (durable) offset: what readers may see.
    high_watermark: AtomicU64,
    /// Append time of the last record, so timestamps never go backwards.
    pub(crate) last_timestamp_ms: AtomicU64,
    /// Woken when the high watermark moves.
    notify: Notify,
    /// The records of an ephemeral topic's partition (empty for durable topics).
    pub(crate) ring: std::sync::Mutex<std::collections::VecDeque<super::StoredRecord>>,
}

impl Partition {
    pub(crate) fn new(log_start: u64, next: u64, last_ts: u64) -> Partition {
        Partition {
            log_start: AtomicU64::new(log_start),
            next_offset: AtomicU64::new(next),
            high_watermark: AtomicU64::new(next),
            last_timestamp_ms: AtomicU64::new(last_ts),
            notify: Notify::new(),
            ring: std::sync::Mutex::new(std::collections::VecDeque::new()),
        }
    }

    /// First stored offset.
    pub fn log_start(&self) -> u64 {
        self.log_start.load(Ordering::Acquire)
    }

    /// One past the last readable offset.
    pub fn high_watermark(&self) -> u64 {
        self.high_watermark.load(Ordering::Acquire)
    }

    /// Add records of an ephemeral partition (offsets from `first`), dropping the oldest
    /// beyond the ring's bound.
    pub(crate) fn push_ephemeral(&self, records: Vec<super::StoredRecord>) {
        let mut ring = self.ring.lock().expect("ring");
        ring.extend(records);
        while ring.len() > crate::limits::EPHEMERAL_RING_RECORDS {
            ring.pop_front();
        }
        if let Some(first) = ring.front() {
            self.log_start.store(first.offset, Ordering::Release);
        }
    }

    /// Records of an ephemeral partition from `from`, at most `max`.
    pub(crate) fn read_ephemeral(&self, from: u64, max: usize) -> Vec<super::StoredRecord> {
        let ring = self.ring.lock().expect("ring");
        let Some(first) = ring.front().map(|r| r.offset) else { return Vec::new() };
        let skip = from.saturating_sub(first) as usize;
        ring.iter().skip(skip).take(max).cloned().collect()
    }

    pub(crate) fn set_log_start(&self, start: u64) {
        self.log_start.store(start, Ordering::Release);
    }

    pub(crate) fn publish(&self, high_watermark: u64) {
        self.high_watermark.store(high_watermark, Ordering::Release);
        self.notify.notify_waiters();
    }

    /// Wait until the high watermark passes `offset`, or `timeout` elapses. Returns whether
    /// data is available.
    pub async fn wait_for(&self, offset: u64, timeout: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let notified = self.notify.notified();
            tokio::pin!(notified);
            // Register before checking, so a publish between check and wait is not missed.
            notified.as_mut().enable();
            if self.high_watermark() > offset {
                return true;
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                return self.high_watermark() > offset;
            }
        }
    }
}
