//! Request/reply: a request is produced with a correlation id and `weir-reply-to` naming the
//! server's ephemeral reply topic; whoever handles it (a pipeline plugin, any consumer)
//! produces the reply there with the same correlation id; this hub hands it to the waiting
//! requester.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::oneshot;

use crate::limits;
use crate::storage::{StoredRecord, Topic};
use crate::store::Store;
use crate::types::TopicConfig;

/// The ephemeral topic replies are produced to.
pub const REPLY_TOPIC: &str = "weir.replies";
pub(crate) use weir_sdk::headers::{CORRELATION_ID, REPLY_TO};

/// Waiting requesters by correlation id.
pub(crate) struct ReplyHub {
    waiters: Mutex<HashMap<String, oneshot::Sender<StoredRecord>>>,
    next: AtomicU64,
    topic: Arc<Topic>,
}

impl ReplyHub {
    /// Create the reply topic if needed and start following it.
    pub(crate) async fn start(store: &Arc<Store>) -> Result<Arc<ReplyHub>, crate::storage::StoreError> {
        let topic = match store.find_topic(REPLY_TOPIC).await {
            Ok(t) => t,
            Err(_) => {
                match store.create_topic(REPLY_TOPIC, TopicConfig { ephemeral: true, ..TopicConfig::default() }).await {
                    Ok(t) => t,
                    // Another node of the cluster created it meanwhile.
                    Err(crate::storage::StoreError::TopicExists(_)) => store.find_topic(REPLY_TOPIC).await?,
                    Err(e) => return Err(e),
                }
            }
        };
        let hub = Arc::new(ReplyHub { waiters: Mutex::new(HashMap::new()), next: AtomicU64::new(1), topic });
        tokio::spawn(follow(Arc::downgrade(&hub), store.clone()));
        Ok(hub)
    }

    /// Register a new request: its correlation id and where its reply will arrive.
    pub(crate) fn register(&self) -> Result<(String, oneshot::Receiver<StoredRecord>), String> {
        let mut waiters = self.waiters.lock().expect("waiters");
        if waiters.len() >= limits::PENDING_REQUESTS_MAX {
            return Err(format!("{} requests are already waiting for replies; retry later", waiters.len()));
        }
        let id = format!("{:x}-{:x}", crate::types::now_ms(), self.next.fetch_add(1, Ordering::Relaxed));
        let (tx, rx) = oneshot::channel();
        waiters.insert(id.clone(), tx);
        Ok((id, rx))
    }

    /// Forget a request that timed out.
    pub(crate) fn forget(&self, id: &str) {
        self.waiters.lock().expect("waiters").remove(id);
    }

    fn deliver(&self, record: StoredRecord) {
        let Some(id) = record.headers.iter().find(|(k, _)| k == CORRELATION_ID).map(|(_, v)| v.clone()) else { return };
        if let Some(tx) = self.waiters.lock().expect("waiters").remove(&id) {
            let _ = tx.send(record);
        }
    }
}

/// Read the reply topic as it grows and hand each reply to its requester.
async fn follow(hub: std::sync::Weak<ReplyHub>, store: Arc<Store>) {
    let Some(topic) = hub.upgrade().map(|h| h.topic.clone()) else { return };
    let mut offset = loop {
        match store.bounds(&topic, 0).await {
            Ok((_, hw)) => break hw,
            Err(e) => tracing::warn!(error = %e, "cannot read the reply topic; retrying"),
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    };
    loop {
        if hub.strong_count() == 0 {
            return;
        }
        store.wait_for(&topic, 0, offset, Duration::from_secs(1)).await;
        let fetched = store.read(&topic, 0, offset, 10_000, usize::MAX).await.unwrap_or_default();
        let Some(h) = hub.upgrade() else { return };
        if let Some(last) = fetched.records.last() {
            offset = last.offset + 1;
        } else {
            // Fell behind the ring: skip to what is there.
            offset = offset.max(fetched.log_start);
        }
        for r in fetched.records {
            h.deliver(r);
        }
    }
}
