//! Consumer-group offsets in KV (`<ns>-offsets`), by compare-and-set, so two nodes committing
//! one group's partition never interleave a read-modify-write.

use bytes::Bytes;
use futures_util::StreamExt;

use super::{Cluster, ClusterError, names, nats};

impl Cluster {
    /// Store `next` as `group`'s next offset in partition `p` of `topic` (the last commit
    /// wins, as on a single node; a connection's commits are made one after the other).
    pub async fn commit_offset(&self, group: &str, topic: &str, p: u32, next: u64) -> Result<(), ClusterError> {
        let key = names::offset_key(group, topic, p);
        self.offsets.put(&key, Bytes::from(next.to_string())).await.map_err(nats)?;
        Ok(())
    }

    /// `group`'s committed next offset in partition `p` of `topic`, as the bucket's leader
    /// has it (a replica serving direct gets may not have the commit acknowledged a moment
    /// ago yet).
    pub async fn committed_offset(&self, group: &str, topic: &str, p: u32) -> Result<Option<u64>, ClusterError> {
        let key = names::offset_key(group, topic, p);
        let bucket = self.names.bucket("offsets");
        let last = self.last_by_subject_leader(&format!("KV_{bucket}"), &format!("$KV.{bucket}.{key}")).await?;
        let Some((_, headers, payload)) = last else { return Ok(None) };
        if headers.get("KV-Operation").is_some() {
            return Ok(None);
        }
        let text = String::from_utf8_lossy(&payload);
        text.parse().map(Some).map_err(|_| ClusterError::Corrupt { what: key, message: format!("offset {text:?}") })
    }

    /// Every `(group, topic)` with a committed offset.
    pub async fn offset_groups(&self) -> Result<Vec<(String, String)>, ClusterError> {
        let mut keys = match self.offsets.keys().await {
            Ok(k) => k,
            Err(e) => return Err(nats(e)),
        };
        let mut out = std::collections::BTreeSet::new();
        while let Some(key) = keys.next().await {
            if let Some((g, t, _)) = names::parse_offset_key(&key.map_err(nats)?) {
                out.insert((g, t));
            }
        }
        Ok(out.into_iter().collect())
    }

    /// Forget every group's offsets in `topic` (it was deleted).
    pub async fn forget_offsets(&self, topic: &str) -> Result<(), ClusterError> {
        let mut keys = self.offsets.keys().await.map_err(nats)?;
        let mut doomed = Vec::new();
        while let Some(key) = keys.next().await {
            let key = key.map_err(nats)?;
            if names::parse_offset_key(&key).is_some_and(|(_, t, _)| t == topic) {
                doomed.push(key);
            }
        }
        for key in doomed {
            self.offsets.purge(&key).await.map_err(nats)?;
        }
        Ok(())
    }
}
