//! Idempotent producers (Kafka's `enable.idempotence`): each producer id numbers its batches
//! per partition. A batch repeating one of the producer's last [`WINDOW`] batches in that
//! partition is a retry and is answered with the offsets it got the first time instead of
//! being stored twice (a client keeps up to five batches in flight, and retries all of them
//! after a lost connection). The window is written in the same commit as the records, so a
//! retry after a crash and restart is recognised too.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::sync::atomic::{AtomicI64, Ordering};

use super::Result;
use crate::storage::{Topic, keys};
use crate::store::{Raw, Store};

/// Batches remembered per producer and partition: Kafka's `max.in.flight` for idempotence.
const WINDOW: usize = 5;

/// A batch's place in its producer's sequence.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sequenced {
    /// Producer id from InitProducerId.
    pub producer: i64,
    /// Its epoch.
    pub epoch: i16,
    /// The batch's first sequence number.
    pub base_sequence: i32,
}

/// The offset of a batch stored before a restart: its commit records the batch before the
/// offset is assigned, so the store knows the batch but not where it went.
const UNKNOWN: u64 = u64::MAX;

/// One stored batch of a producer in a partition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Batch {
    epoch: i16,
    base_sequence: i32,
    count: u32,
    base_offset: u64,
    /// Admitted, its commit not yet done: a retry must wait for the outcome.
    pending: bool,
}

const BATCH_BYTES: usize = 18;

/// The producer's last batches in a partition, oldest first.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct Window(VecDeque<Batch>);

impl Window {
    fn encode(&self) -> Vec<u8> {
        let mut v = Vec::with_capacity(self.0.len() * BATCH_BYTES);
        for b in &self.0 {
            v.extend_from_slice(&b.epoch.to_le_bytes());
            v.extend_from_slice(&b.base_sequence.to_le_bytes());
            v.extend_from_slice(&b.count.to_le_bytes());
            // Offsets are learnt after the commit; a restart forgets them.
            v.extend_from_slice(&UNKNOWN.to_le_bytes());
        }
        v
    }

    fn decode(bytes: &[u8]) -> Option<Window> {
        let batch = |b: &[u8]| -> Option<Batch> {
            Some(Batch {
                epoch: i16::from_le_bytes(b.get(0..2)?.try_into().ok()?),
                base_sequence: i32::from_le_bytes(b.get(2..6)?.try_into().ok()?),
                count: u32::from_le_bytes(b.get(6..10)?.try_into().ok()?),
                base_offset: u64::from_le_bytes(b.get(10..18)?.try_into().ok()?),
                pending: false,
            })
        };
        bytes.chunks_exact(BATCH_BYTES).map(batch).collect::<Option<VecDeque<_>>>().map(Window)
    }
}

/// What to do with a sequenced batch.
pub(super) enum Verdict {
    /// Store it, writing `value` at `key` in the same commit.
    Store {
        /// Meta key of the producer's window in the partition.
        key: String,
        /// The window with this batch in it.
        value: Vec<u8>,
    },
    /// A retry of a batch in the window: answer with its first offset.
    Duplicate { base_offset: u64 },
}

/// Why a sequenced batch is refused.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SequenceError {
    /// A newer epoch of the producer exists.
    #[error(
        "producer {producer} epoch {epoch} is fenced by epoch {current}; a newer instance of this producer took over"
    )]
    Fenced {
        /// Producer id.
        producer: i64,
        /// The batch's epoch.
        epoch: i16,
        /// The newest.
        current: i16,
    },
    /// A gap or a reordering.
    #[error("producer {producer} sent sequence {got} to partition {partition} of `{topic}`, expected {expected}")]
    OutOfOrder {
        /// Producer id.
        producer: i64,
        /// Topic.
        topic: String,
        /// Partition.
        partition: u32,
        /// The batch's base sequence.
        got: i32,
        /// The next one.
        expected: i32,
    },
    /// A retry of a batch whose first attempt is still being committed.
    #[error("producer {producer}'s batch {sequence} is still being stored; retry")]
    InFlight {
        /// Producer id.
        producer: i64,
        /// The batch's base sequence.
        sequence: i32,
    },
    /// A retry of a batch stored before a restart (its offset is not remembered).
    #[error("producer {producer}'s batch {sequence} was stored before; not stored twice")]
    Duplicate {
        /// Producer id.
        producer: i64,
        /// The batch's base sequence.
        sequence: i32,
    },
}

/// Producer ids and each producer's window per partition.
pub(super) struct Producers {
    windows: Mutex<HashMap<String, Window>>,
    next_id: AtomicI64,
}

impl Default for Producers {
    fn default() -> Self {
        // Ids from the clock: a restarted server never hands out an id used before it.
        let start = (crate::types::now_ms() as i64) << 12;
        Producers { windows: Mutex::new(HashMap::new()), next_id: AtomicI64::new(start) }
    }
}

impl Producers {
    /// A new producer id (epoch 0).
    pub(super) fn new_id(&self) -> i64 {
        self.next_id.fetch_add(1, Ordering::Relaxed)
    }

    /// Check `seq` for `count` records into `partition` of `topic`: a retry, the next batch,
    /// or out of order. On `Store`, the batch joins the window at once (batches pipelined
    /// behind it are checked against it); [`Producers::stored`] fills in its offset and
    /// [`Producers::forget`] takes it out if the commit fails.
    pub(super) async fn admit(
        &self,
        store: &Store,
        topic: &Topic,
        partition: u32,
        seq: Sequenced,
        count: u32,
    ) -> Result<Verdict> {
        let key = keys::meta::producer(seq.producer, topic.id, partition);
        let known = self.windows.lock().expect("producers").contains_key(&key);
        let stored = match known {
            true => None,
            false => Some(store.meta_get::<Raw>(&key).await?.and_then(|r| Window::decode(&r.0)).unwrap_or_default()),
        };
        let mut windows = self.windows.lock().expect("producers");
        if windows.len() >= crate::limits::KAFKA_PRODUCER_WINDOWS && !windows.contains_key(&key) {
            // Forget the settled ones: they are in the store and load again when used.
            windows.retain(|_, w| w.0.iter().any(|b| b.pending));
        }
        if let Some(stored) = stored {
            windows.entry(key.clone()).or_insert(stored);
        }
        let window = windows.entry(key.clone()).or_default();
        if let Some(last) = window.0.back().copied() {
            if seq.epoch < last.epoch {
                let (producer, epoch, current) = (seq.producer, seq.epoch, last.epoch);
                return Err(SequenceError::Fenced { producer, epoch, current }.into());
            }
            if let Some(done) = window.0.iter().find(|b| b.epoch == seq.epoch && b.base_sequence == seq.base_sequence) {
                if done.pending {
                    return Err(SequenceError::InFlight { producer: seq.producer, sequence: seq.base_sequence }.into());
                }
                if done.base_offset == UNKNOWN {
                    return Err(SequenceError::Duplicate { producer: seq.producer, sequence: seq.base_sequence }.into());
                }
                return Ok(Verdict::Duplicate { base_offset: done.base_offset });
            }
            let expected = last.base_sequence.wrapping_add(last.count as i32);
            if seq.epoch == last.epoch && seq.base_sequence != expected {
                let (producer, topic, got) = (seq.producer, topic.name.clone(), seq.base_sequence);
                return Err(SequenceError::OutOfOrder { producer, topic, partition, got, expected }.into());
            }
            if seq.epoch > last.epoch {
                window.0.clear();
            }
        }
        window.0.push_back(Batch {
            epoch: seq.epoch,
            base_sequence: seq.base_sequence,
            count,
            base_offset: UNKNOWN,
            pending: true,
        });
        if window.0.len() > WINDOW {
            window.0.pop_front();
        }
        Ok(Verdict::Store { key, value: window.encode() })
    }

    /// The batch `seq` at `key` was stored at `base_offset`: a retry is answered with it.
    pub(super) fn stored(&self, key: &str, seq: Sequenced, base_offset: u64) {
        if let Some(w) = self.windows.lock().expect("producers").get_mut(key)
            && let Some(b) = w.0.iter_mut().find(|b| b.epoch == seq.epoch && b.base_sequence == seq.base_sequence)
        {
            b.base_offset = base_offset;
            b.pending = false;
        }
    }

    /// The batch `seq` at `key` was not stored: take it out, so the producer's retry is
    /// admitted (the stored window, written only with records, never had it).
    pub(super) fn forget(&self, key: &str, seq: Sequenced) {
        if let Some(w) = self.windows.lock().expect("producers").get_mut(key) {
            w.0.retain(|b| !(b.epoch == seq.epoch && b.base_sequence == seq.base_sequence));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn windows_round_trip_without_their_offsets() {
        let b = |s| Batch { epoch: 3, base_sequence: s, count: 7, base_offset: 1 << 40, pending: false };
        let w = Window([b(0), b(7)].into());
        let back = Window::decode(&w.encode()).unwrap();
        assert_eq!(
            back.0.iter().map(|b| (b.base_sequence, b.base_offset)).collect::<Vec<_>>(),
            [(0, UNKNOWN), (7, UNKNOWN)]
        );
        assert_eq!(Window::decode(&[1, 2]).map(|w| w.0.len()), Some(0), "a torn tail is ignored");
    }
}
