//! Exchange commands: create, delete, bind, unbind, list, and publish — routing a message to
//! every matching destination in one atomic commit.

use super::command::{ExchangeCommand, Reply};
use super::{Broker, Result};
use crate::exchange::{Binding, Destination, ExchangeError, ExchangeType};
use crate::queue::NewQueueMessage;
use crate::storage::{Append, Commit, NewRecord};
use weir_sdk::headers;

impl Broker {
    pub(super) async fn exchange_command(&self, command: ExchangeCommand) -> Result<Reply> {
        let x = &self.exchanges;
        Ok(match command {
            ExchangeCommand::Create { name, kind, alternate } => {
                Reply::Exchange(x.create(&name, kind, alternate).await?)
            }
            ExchangeCommand::Delete { name } => {
                x.delete(&name).await?;
                Reply::Done
            }
            ExchangeCommand::Bind { exchange, binding } => self.bind(&exchange, binding).await?,
            ExchangeCommand::Unbind { exchange, destination, key } => {
                Reply::Exchange(x.unbind(&exchange, &destination, key.as_deref()).await?)
            }
            ExchangeCommand::List => Reply::Exchanges(x.list()),
            ExchangeCommand::Publish { exchange, routing_key, record } => {
                self.publish(&exchange, &routing_key, record).await?
            }
        })
    }

    async fn bind(&self, exchange: &str, binding: Binding) -> Result<Reply> {
        match &binding.destination {
            Destination::Topic(t) => drop(self.store.find_topic(t).await?),
            Destination::Queue(q) => drop(self.queues.get(q)?),
        }
        Ok(Reply::Exchange(self.exchanges.bind(exchange, binding).await?))
    }

    /// Where a message published to `exchange` goes. The default exchange (``, AMQP's)
    /// delivers to the queue its routing key names, or nowhere.
    pub(super) fn destinations(
        &self,
        exchange: &str,
        routing_key: &str,
        headers: &[(String, String)],
    ) -> std::result::Result<Vec<Destination>, ExchangeError> {
        if !exchange.is_empty() {
            return self.exchanges.route(exchange, routing_key, headers);
        }
        match self.queues.get(routing_key) {
            Ok(_) => Ok(vec![Destination::Queue(routing_key.to_string())]),
            Err(_) => Err(ExchangeError::Unroutable {
                exchange: String::new(),
                kind: ExchangeType::Direct,
                key: routing_key.to_string(),
            }),
        }
    }

    /// Route through the exchange and deliver to every destination in one atomic commit. A
    /// queue destination takes the message's priority (`weir-priority`) and time to live
    /// (`weir-ttl-ms`) from its headers.
    async fn publish(&self, exchange: &str, routing_key: &str, mut record: NewRecord) -> Result<Reply> {
        let dests = self.destinations(exchange, routing_key, &record.headers)?;
        let header = |name: &str| record.headers.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone());
        let priority = header(headers::PRIORITY).and_then(|p| p.parse::<u64>().ok()).map_or(0, |p| p.min(9) as u8);
        let ttl_ms = header(headers::TTL_MS).and_then(|t| t.parse().ok());
        self.store.check_space()?;
        record.headers.push((headers::ROUTING_KEY.into(), routing_key.to_string()));
        record.headers.push((headers::EXCHANGE.into(), exchange.to_string()));
        let mut commit = Commit::default();
        let mut staged = Vec::new();
        for d in &dests {
            match d {
                Destination::Topic(t) => {
                    let topic = self.store.find_topic(t).await?;
                    self.check_schemas(&topic, std::slice::from_ref(&record)).await?;
                    let partition = topic.partition_for(record.key.as_deref());
                    commit.appends.push(Append { topic, partition, records: vec![record.clone()] });
                }
                Destination::Queue(q) => {
                    let msg = NewQueueMessage {
                        body: record.value.to_vec(),
                        headers: record.headers.clone(),
                        priority,
                        ttl_ms,
                        ..Default::default()
                    };
                    if let Some(s) = self.queues.prepare_send(q, msg)? {
                        commit.queue.extend(s.writes.clone());
                        staged.push(s);
                    }
                }
            }
        }
        self.store.submit(commit).await?;
        staged.into_iter().for_each(crate::queue::PreparedSend::commit);
        Ok(Reply::Published(dests))
    }
}
