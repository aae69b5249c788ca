//! Nodes asking nodes (core NATS request/reply): a command handed to the node that holds what
//! it needs — the queues' coordinator, the coordinator of a consumer group — and questions
//! every node answers for what it runs. What is asked and answered are the cluster's own
//! types ([`super::wire::AskC1`], [`super::wire::AnswerC1`]); the broker decides what each
//! means.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures_util::StreamExt;
use futures_util::future::BoxFuture;

use super::{Cluster, ClusterError, nats, wire};

/// What answers the questions other nodes ask of this one.
pub type AskHandler = Arc<dyn Fn(wire::AskC1) -> BoxFuture<'static, wire::AnswerC1> + Send + Sync>;

impl Cluster {
    /// Answer what other nodes ask of this node (on its own inbox and the all-nodes subject)
    /// with `handler`, each question in a task of its own, for as long as the connection lives.
    pub async fn serve_asks(&self, handler: AskHandler) -> Result<(), ClusterError> {
        let mut direct = self.client.subscribe(self.names.node_inbox(&self.node)).await.map_err(nats)?;
        let mut all = self.client.subscribe(self.names.all_inbox()).await.map_err(nats)?;
        let client = self.client.clone();
        tokio::spawn(async move {
            loop {
                let msg = tokio::select! {
                    m = direct.next() => m,
                    m = all.next() => m,
                };
                let Some(msg) = msg else { return };
                let Some(reply) = msg.reply.clone() else { continue };
                let (handler, client) = (handler.clone(), client.clone());
                tokio::spawn(async move {
                    let answer = match wire::decode::<wire::AskC1>(&msg.subject, &msg.payload) {
                        Ok(ask) => handler(ask).await,
                        Err(e) => wire::AnswerC1::Failed { kind: "InvalidArgument".into(), message: e.to_string() },
                    };
                    let bytes = Bytes::from(wire::encode(&answer));
                    if let Err(e) = client.publish(reply, bytes).await {
                        tracing::warn!(error = %e, "cannot answer another node");
                    }
                });
            }
        });
        Ok(())
    }

    /// Ask node `node`, waiting up to `timeout` for its answer.
    pub async fn ask(&self, node: &str, ask: &wire::AskC1, timeout: Duration) -> Result<wire::AnswerC1, ClusterError> {
        let request = async_nats::Request::new().payload(Bytes::from(wire::encode(ask))).timeout(Some(timeout));
        let msg = self.client.send_request(self.names.node_inbox(node), request).await.map_err(|e| match e.kind() {
            async_nats::RequestErrorKind::NoResponders => ClusterError::NoResponders(format!("node {node}")),
            _ => ClusterError::Nats(format!("asking node {node}: {e}")),
        })?;
        wire::decode(&format!("the answer of node {node}"), &msg.payload)
            .map_err(|e| ClusterError::Corrupt { what: format!("answer of node {node}"), message: e.to_string() })
    }

    /// Ask every live node; the answers that arrive within `timeout` (all of them, when every
    /// node answers).
    pub async fn ask_all(&self, ask: &wire::AskC1, timeout: Duration) -> Result<Vec<wire::AnswerC1>, ClusterError> {
        let expected = self.live_nodes().len().max(1);
        let inbox = self.client.new_inbox();
        let mut sub = self.client.subscribe(inbox.clone()).await.map_err(nats)?;
        self.client
            .publish_with_reply(self.names.all_inbox(), inbox, Bytes::from(wire::encode(ask)))
            .await
            .map_err(nats)?;
        let mut out = Vec::with_capacity(expected);
        let deadline = tokio::time::Instant::now() + timeout;
        while out.len() < expected {
            match tokio::time::timeout_at(deadline, sub.next()).await {
                Ok(Some(msg)) => {
                    if let Ok(answer) = wire::decode::<wire::AnswerC1>("an answer", &msg.payload) {
                        out.push(answer);
                    }
                }
                _ => break,
            }
        }
        let _ = sub.unsubscribe().await;
        Ok(out)
    }
}
