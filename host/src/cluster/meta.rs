//! Shared metadata in KV: consumer-group offsets (compare-and-set, so two nodes committing
//! one group's partition never interleave a read-modify-write), and plugin versions (bytes
//! in the object store by hash, the live pointer in `weir-plugins`).

use bytes::Bytes;
use futures_util::StreamExt;
use serde::{Deserialize, Serialize};
use tokio::io::AsyncReadExt;

use super::{Cluster, ClusterError, names, nats};
use crate::registry::PluginInfo;
use crate::runtime::Sandbox;
use crate::storage::stored::SandboxV1;

/// A plugin's live version as the cluster knows it.
#[derive(Debug, Serialize, Deserialize)]
struct LivePointer {
    version: u32,
    /// Object name of the bytes (the component's hash).
    hash: String,
    sandbox: SandboxV1,
}

impl Cluster {
    /// Store `next` as `group`'s next offset in partition `p` of `topic` (compare-and-set on
    /// the key's revision, retried on a concurrent update).
    pub async fn commit_offset(&self, group: &str, topic: &str, p: u32, next: u64) -> Result<(), ClusterError> {
        let key = names::offset_key(group, topic, p);
        let body = Bytes::from(next.to_string());
        for _ in 0..16 {
            let done = match self.offsets.entry(&key).await.map_err(nats)? {
                Some(e) if e.operation == async_nats::jetstream::kv::Operation::Put => {
                    self.offsets.update(&key, body.clone(), e.revision).await.is_ok()
                }
                _ => self.offsets.create(&key, body.clone()).await.is_ok(),
            };
            if done {
                return Ok(());
            }
        }
        Err(ClusterError::Nats(format!("offset of group `{group}` on {topic}/{p}: too many concurrent updates")))
    }

    /// `group`'s committed next offset in partition `p` of `topic`.
    pub async fn committed_offset(&self, group: &str, topic: &str, p: u32) -> Result<Option<u64>, ClusterError> {
        let key = names::offset_key(group, topic, p);
        let Some(v) = self.offsets.get(&key).await.map_err(nats)? else { return Ok(None) };
        let text = String::from_utf8_lossy(&v);
        text.parse().map(Some).map_err(|_| ClusterError::Corrupt { what: key, message: format!("offset {text:?}") })
    }

    /// The cluster's live version of `name` (0: none) and the pointer's revision (0: none).
    pub async fn plugin_pointer(&self, name: &str) -> Result<(u32, u64), ClusterError> {
        let Some(e) = self.plugins.entry(names::escape(name)).await.map_err(nats)? else { return Ok((0, 0)) };
        if e.operation != async_nats::jetstream::kv::Operation::Put {
            return Ok((0, e.revision));
        }
        let pointer: LivePointer = serde_json::from_slice(&e.value)
            .map_err(|err| ClusterError::Corrupt { what: format!("plugin {name}"), message: err.to_string() })?;
        Ok((pointer.version, e.revision))
    }

    /// Publish a version deployed on this node: bytes into the object store (by hash), then
    /// the live pointer — if it is still at `revision` (compare-and-set: two nodes deploying
    /// at once cannot both win) — which every node's sync installs.
    pub async fn publish_plugin(&self, info: &PluginInfo, wasm: Vec<u8>, revision: u64) -> Result<(), ClusterError> {
        if self.plugin_bytes.info(&info.hash).await.is_err() {
            let mut reader = std::io::Cursor::new(wasm);
            self.plugin_bytes.put(info.hash.as_str(), &mut reader).await.map_err(nats)?;
        }
        let pointer =
            LivePointer { version: info.version, hash: info.hash.clone(), sandbox: info.sandbox.clone().into() };
        let body = Bytes::from(serde_json::to_vec(&pointer).map_err(nats)?);
        let key = names::escape(&info.name);
        let swapped = match revision {
            0 => self.plugins.create(&key, body).await.map(drop).map_err(|e| e.to_string()),
            r => self.plugins.update(&key, body, r).await.map(drop).map_err(|e| e.to_string()),
        };
        swapped.map_err(|e| {
            ClusterError::Nats(format!(
                "another node deployed `{}` at the same moment ({e}); deploy again to put {} live everywhere",
                info.name,
                info.label()
            ))
        })
    }

    /// Plugins whose live version in the cluster is newer than this node's (`local` gives
    /// the version live here): name, version, sandbox and component bytes of each.
    pub async fn plugins_newer_than(
        &self,
        local: impl Fn(&str) -> Option<u32>,
    ) -> Result<Vec<(String, u32, Sandbox, Vec<u8>)>, ClusterError> {
        let mut keys = self.plugins.keys().await.map_err(nats)?;
        let mut out = Vec::new();
        while let Some(key) = keys.next().await {
            let key = key.map_err(nats)?;
            let Some(v) = self.plugins.get(&key).await.map_err(nats)? else { continue };
            let pointer: LivePointer = serde_json::from_slice(&v)
                .map_err(|e| ClusterError::Corrupt { what: format!("plugin {key}"), message: e.to_string() })?;
            let name = names::unescape(&key);
            if local(&name).is_some_and(|v| v >= pointer.version) {
                continue;
            }
            let mut object = self.plugin_bytes.get(pointer.hash.as_str()).await.map_err(nats)?;
            let mut wasm = Vec::new();
            object.read_to_end(&mut wasm).await.map_err(nats)?;
            out.push((name, pointer.version, Sandbox::from(pointer.sandbox), wasm));
        }
        Ok(out)
    }
}
