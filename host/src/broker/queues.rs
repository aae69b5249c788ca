//! Queue commands: create, delete, purge, describe, and the message path — send, receive,
//! ack, nack, extend — each submitting its write at the first poll, under the queue's lock.

use super::command::{QueueCommand, Reply};
use super::{Broker, BrokerError, Result};
use crate::queue::{NewQueueMessage, PreparedSend};
use crate::storage::Commit;

impl Broker {
    pub(super) async fn queue_command(&self, command: QueueCommand) -> Result<Reply> {
        let q = &self.queues;
        Ok(match command {
            QueueCommand::Create { name, config } => Reply::Queue(q.create(&name, config).await?),
            QueueCommand::Delete { name } => {
                self.refuse_if_used(&format!("queue `{name}`"), "read by", |s| {
                    s.source.queue() == Some(name.as_str())
                })?;
                q.delete(&name).await?;
                Reply::Done
            }
            QueueCommand::Purge { name } => Reply::Count(q.purge(&name).await?),
            QueueCommand::List => Reply::Queues(q.list()),
            QueueCommand::Describe { name } => Reply::Queue(q.get(&name)?.info()),
            QueueCommand::Send { queue, messages } => self.queue_send(&queue, messages).await?,
            QueueCommand::Receive { queue, max, wait, visibility_ms } => {
                Reply::Deliveries(q.receive(&queue, max, wait, visibility_ms).await?)
            }
            QueueCommand::Ack { queue, receipts } => {
                q.ack(&queue, &receipts).await?;
                Reply::Done
            }
            QueueCommand::Nack { queue, receipts, how } => {
                q.nack(&queue, &receipts, how).await?;
                Reply::Done
            }
            QueueCommand::Extend { queue, receipts, timeout_ms } => {
                q.extend(&queue, &receipts, timeout_ms).await?;
                Reply::Done
            }
        })
    }

    /// All messages in one durable commit.
    async fn queue_send(&self, queue: &str, messages: Vec<NewQueueMessage>) -> Result<Reply> {
        if messages.is_empty() {
            return Err(BrokerError::BadRequest(format!("a send to queue `{queue}` needs at least one message")));
        }
        self.store.check_space()?;
        let mut staged: Vec<Option<PreparedSend>> = Vec::with_capacity(messages.len());
        for m in messages {
            staged.push(self.queues.prepare_send(queue, m)?);
        }
        let writes = staged.iter().flatten().flat_map(|s| s.writes.clone()).collect();
        self.store.submit(Commit { queue: writes, ..Commit::default() }).await?;
        Ok(Reply::Sent(staged.into_iter().map(|s| s.map(PreparedSend::commit).is_some()).collect()))
    }
}
