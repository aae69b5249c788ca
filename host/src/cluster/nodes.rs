//! Membership: every node heartbeats its key into the `weir-nodes` bucket, whose max age is
//! the lease, so a node that stops (killed, paused, cut off) disappears from the live set
//! one lease later; partitions are owned by rendezvous hashing over the live set.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_nats::jetstream::kv;
use futures_util::StreamExt;
use serde::{Deserialize, Serialize};
use tokio::sync::watch;

use super::{ClusterError, nats};

/// What a node tells the others about itself (Kafka Metadata and `weir cluster status`).
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct NodeInfo {
    /// Native protocol address.
    pub native: String,
    /// Kafka listener address, if any.
    pub kafka: Option<String>,
    /// HTTP listener address, if any.
    pub http: Option<String>,
}

pub(crate) struct Nodes {
    bucket: kv::Store,
    me: String,
    live: Arc<Mutex<BTreeMap<String, (NodeInfo, Instant)>>>,
    changes: watch::Receiver<u64>,
    beating: tokio::task::JoinHandle<()>,
    watching: tokio::task::JoinHandle<()>,
}

impl Nodes {
    /// Heartbeat now (so this node is live before it serves) and every third of the lease;
    /// watch the bucket for the live set.
    pub(crate) async fn start(
        bucket: kv::Store,
        me: String,
        info: NodeInfo,
        lease: Duration,
    ) -> Result<Nodes, ClusterError> {
        let body = bytes::Bytes::from(serde_json::to_vec(&info).map_err(nats)?);
        // A bucket just created on a fresh JetStream cluster may have no leader yet ("no
        // stream found for given subject"): the first heartbeat waits for one.
        super::retrying("announcing this node", || async { bucket.put(&me, body.clone()).await.map_err(nats) }).await?;
        let beat = bucket.clone();
        let key = me.clone();
        let beating = tokio::spawn(async move {
            let mut every = tokio::time::interval(lease / 3);
            every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                every.tick().await;
                if let Err(e) = beat.put(&key, body.clone()).await {
                    tracing::warn!(error = %e, "heartbeat failed");
                }
            }
        });
        let live = Arc::new(Mutex::new(BTreeMap::new()));
        let (tx, changes) = watch::channel(0u64);
        let watching = tokio::spawn(watch_nodes(bucket.clone(), me.clone(), live.clone(), tx, lease));
        let nodes = Nodes { bucket, me, live, changes, beating, watching };
        // The live set includes this node before anyone asks.
        let mut rx = nodes.changes.clone();
        let _ = tokio::time::timeout(Duration::from_secs(5), async {
            while !nodes.live.lock().expect("nodes").contains_key(&nodes.me) {
                if rx.changed().await.is_err() {
                    return;
                }
            }
        })
        .await;
        Ok(nodes)
    }

    pub(crate) fn live(&self) -> Vec<(String, NodeInfo)> {
        self.live.lock().expect("nodes").iter().map(|(k, (v, _))| (k.clone(), v.clone())).collect()
    }

    pub(crate) fn changes(&self) -> watch::Receiver<u64> {
        self.changes.clone()
    }

    pub(crate) async fn leave(&self) {
        self.beating.abort();
        self.watching.abort();
        let _ = self.bucket.delete(&self.me).await;
    }
}

impl Drop for Nodes {
    fn drop(&mut self) {
        self.beating.abort();
        self.watching.abort();
    }
}

/// Keep `live` equal to the bucket's keys: puts add, deletes and purges remove, and another
/// node's entry not refreshed within the lease is dropped here too (the bucket's max age
/// removes it without telling watchers). Every change bumps `tx`.
async fn watch_nodes(
    bucket: kv::Store,
    me: String,
    live: Arc<Mutex<BTreeMap<String, (NodeInfo, Instant)>>>,
    tx: watch::Sender<u64>,
    lease: Duration,
) {
    loop {
        let mut updates = match bucket.watch_with_history(">").await {
            Ok(w) => w,
            Err(e) => {
                tracing::warn!(error = %e, "cannot watch cluster membership; retrying");
                tokio::time::sleep(lease / 3).await;
                continue;
            }
        };
        let mut sweep = tokio::time::interval(lease / 6);
        loop {
            tokio::select! {
                entry = updates.next() => {
                    let Some(Ok(entry)) = entry else { break };
                    let changed = apply(&live, entry);
                    if changed { tx.send_modify(|n| *n += 1); }
                }
                _ = sweep.tick() => {
                    let mut map = live.lock().expect("nodes");
                    let before = map.len();
                    // A node never declares itself dead: after a pause it carries on (its
                    // heartbeat resumes at once) and its stale commits are refused by their
                    // fence, which is what makes a zombie harmless, not this view.
                    map.retain(|id, (_, seen)| *id == me || seen.elapsed() < lease);
                    if map.len() != before {
                        drop(map);
                        tx.send_modify(|n| *n += 1);
                    }
                }
            }
        }
    }
}

/// One heartbeat (or departure) into the live set; `true` when the set changed.
fn apply(live: &Mutex<BTreeMap<String, (NodeInfo, Instant)>>, entry: kv::Entry) -> bool {
    let mut map = live.lock().expect("nodes");
    if entry.operation != kv::Operation::Put {
        return map.remove(&entry.key).is_some();
    }
    // Seen now, by this node's clock: comparing the server's timestamp with this clock would
    // make membership depend on clock skew. (The bucket's max age already dropped entries
    // older than the lease before the watch replayed them.)
    let info: NodeInfo = serde_json::from_slice(&entry.value).unwrap_or_default();
    let seen = Instant::now();
    match map.insert(entry.key, (info.clone(), seen)) {
        Some((old, _)) => old != info,
        None => true,
    }
}

/// The owner of `partition` of `pipeline` among `nodes`: the node with the highest hash of
/// (node, pipeline, partition). A node leaving moves only its own partitions.
pub fn owner_of<'a>(nodes: impl Iterator<Item = &'a str>, pipeline: &str, partition: u32) -> Option<&'a str> {
    nodes.max_by_key(|node| {
        let mut h = twox_hash::XxHash64::with_seed(0x5745_4952);
        std::hash::Hasher::write(&mut h, node.as_bytes());
        std::hash::Hasher::write(&mut h, &[0]);
        std::hash::Hasher::write(&mut h, pipeline.as_bytes());
        std::hash::Hasher::write(&mut h, &partition.to_le_bytes());
        (std::hash::Hasher::finish(&h), *node)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rendezvous_moves_only_the_leavers_partitions() {
        let all = ["n1", "n2", "n3"];
        let before: Vec<&str> = (0..64).map(|p| owner_of(all.iter().copied(), "pipe", p).unwrap()).collect();
        assert!(all.iter().all(|n| before.contains(n)), "every node owns something: {before:?}");
        let after: Vec<&str> = (0..64).map(|p| owner_of(["n1", "n3"].into_iter(), "pipe", p).unwrap()).collect();
        for p in 0..64 {
            if before[p] != "n2" {
                assert_eq!(before[p], after[p], "partition {p} moved though its owner stayed");
            }
        }
        assert_eq!(owner_of(std::iter::empty(), "pipe", 0), None);
    }
}
