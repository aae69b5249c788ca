//! Exchanges and routing keys (RabbitMQ/AMQP 0-9-1 semantics): a publish names an exchange
//! and a routing key; the exchange's bindings decide which topics and queues get a copy.
//!
//! * `direct`: bindings whose key equals the routing key.
//! * `topic`: bindings whose pattern matches the routing key: words split on `.`, `*` is
//!   exactly one word, `#` is zero or more words.
//! * `fanout`: every binding.
//! * `headers`: bindings whose `K=V` matches are all (or, with `any`, some) in the headers.
//!
//! A message that matches nothing is unroutable: it goes to the exchange's alternate exchange
//! if one is set, else the publisher gets an error. Nothing is dropped silently.
//! Exchanges are stored in `meta` as `exchange/<name>`.

use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};

use crate::cluster::wire;
use crate::limits;
use crate::mirror::{mirror, mirror_enum};
use crate::storage::{StoreError, keys, stored};
use crate::store::{MetaWrite, Store, record};
use crate::types::{check_name, now_ms};

/// How an exchange matches bindings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExchangeType {
    /// Binding key equals the routing key.
    Direct,
    /// AMQP topic patterns (`*`, `#`).
    Topic,
    /// Every binding.
    Fanout,
    /// Header matches.
    Headers,
}

/// Where a binding delivers.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum Destination {
    /// Append to a topic.
    Topic(String),
    /// Send to a queue.
    Queue(String),
}

impl std::fmt::Display for Destination {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Destination::Topic(t) => write!(f, "topic:{t}"),
            Destination::Queue(q) => write!(f, "queue:{q}"),
        }
    }
}

/// One binding.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Binding {
    /// Where matching messages go.
    pub destination: Destination,
    /// Binding key or topic pattern (direct and topic exchanges).
    pub key: Option<String>,
    /// `K=V` header matches (headers exchanges).
    pub matches: Vec<(String, String)>,
    /// Headers exchanges: match when any pair matches (default: all).
    pub match_any: bool,
}

/// An exchange and its bindings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExchangeInfo {
    /// Name.
    pub name: String,
    /// Type.
    pub kind: ExchangeType,
    /// Bindings.
    pub bindings: Vec<Binding>,
    /// Exchange that receives unroutable messages.
    pub alternate: Option<String>,
    /// Creation time.
    pub created_ms: u64,
}

/// Why an exchange operation failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ExchangeError {
    /// No such exchange.
    #[error("unknown exchange `{0}`: create it with `weir exchange create {0} --type direct|topic|fanout|headers`")]
    Unknown(String),
    /// It exists.
    #[error("exchange `{0}` already exists")]
    Exists(String),
    /// Nothing matched and there is no alternate exchange.
    #[error(
        "unroutable: no binding of exchange `{exchange}` ({kind:?}) matches routing key {key:?}; bind a destination or set an alternate exchange"
    )]
    Unroutable {
        /// Exchange.
        exchange: String,
        /// Its type.
        kind: ExchangeType,
        /// The routing key.
        key: String,
    },
    /// A bad argument; the text says which.
    #[error("{0}")]
    Invalid(String),
    /// An unbind named no binding the exchange has.
    #[error("exchange `{exchange}` has no binding to {destination}{}", key.as_ref().map(|k| format!(" with key {k:?}")).unwrap_or_default())]
    NoBinding {
        /// Exchange.
        exchange: String,
        /// The destination named.
        destination: Destination,
        /// The key named.
        key: Option<String>,
    },
    /// Storage failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

mirror_enum!(stored::ExchangeTypeV1 => ExchangeType { Direct, Topic, Fanout, Headers });
mirror!(stored::BindingV1 => Binding { destination: into, key, matches, match_any });
mirror!(stored::ExchangeV1 => ExchangeInfo { name, kind: into, bindings: each, alternate, created_ms });

mirror_enum!(wire::ExchangeTypeC1 => ExchangeType { Direct, Topic, Fanout, Headers });
mirror!(wire::BindingC1 => Binding { destination: into, key, matches, match_any });
mirror!(wire::ExchangeC1 => ExchangeInfo { name, kind: into, bindings: each, alternate, created_ms });
record!(ExchangeInfo => stored::ExchangeV1, wire::ExchangeC1);

impl From<wire::DestinationC1> for Destination {
    fn from(d: wire::DestinationC1) -> Destination {
        match d {
            wire::DestinationC1::Topic(t) => Destination::Topic(t),
            wire::DestinationC1::Queue(q) => Destination::Queue(q),
        }
    }
}

impl From<Destination> for wire::DestinationC1 {
    fn from(d: Destination) -> wire::DestinationC1 {
        match d {
            Destination::Topic(t) => wire::DestinationC1::Topic(t),
            Destination::Queue(q) => wire::DestinationC1::Queue(q),
        }
    }
}

impl From<stored::DestinationV1> for Destination {
    fn from(d: stored::DestinationV1) -> Destination {
        match d {
            stored::DestinationV1::Topic(t) => Destination::Topic(t),
            stored::DestinationV1::Queue(q) => Destination::Queue(q),
        }
    }
}

impl From<Destination> for stored::DestinationV1 {
    fn from(d: Destination) -> stored::DestinationV1 {
        match d {
            Destination::Topic(t) => stored::DestinationV1::Topic(t),
            Destination::Queue(q) => stored::DestinationV1::Queue(q),
        }
    }
}

/// Alternate exchanges followed before giving up (a cycle would loop forever otherwise).
const ALTERNATE_HOPS_MAX: usize = 8;

/// Every exchange.
pub struct Exchanges {
    store: Arc<Store>,
    map: RwLock<BTreeMap<String, ExchangeInfo>>,
}

impl Exchanges {
    /// Load the stored exchanges.
    pub async fn open(store: Arc<Store>) -> Result<Exchanges, ExchangeError> {
        let map =
            store.meta_scan::<ExchangeInfo>(keys::meta::EXCHANGES).await?.into_iter().map(|(_, e)| (e.name.clone(), e));
        Ok(Exchanges { map: RwLock::new(map.collect()), store })
    }

    /// Read exchange `name` again from the store (another node changed it).
    pub async fn follow(&self, name: &str) -> Result<(), ExchangeError> {
        let stored = self.store.meta_get::<ExchangeInfo>(&keys::meta::exchange(name)).await?;
        let mut map = self.map.write().expect("exchanges");
        match stored {
            Some(e) => map.insert(name.to_string(), e),
            None => map.remove(name),
        };
        Ok(())
    }

    /// Create an exchange.
    pub async fn create(
        &self,
        name: &str,
        kind: ExchangeType,
        alternate: Option<String>,
    ) -> Result<ExchangeInfo, ExchangeError> {
        check_name("exchange", name).map_err(|e| ExchangeError::Invalid(e.to_string()))?;
        if self.map.read().expect("exchanges").contains_key(name) {
            return Err(ExchangeError::Exists(name.to_string()));
        }
        let e = ExchangeInfo { name: name.to_string(), kind, bindings: Vec::new(), alternate, created_ms: now_ms() };
        match self.store.meta_write(vec![MetaWrite::create(keys::meta::exchange(name), &e)]).await {
            Err(StoreError::Conflict(_)) => return Err(ExchangeError::Exists(name.to_string())),
            other => other?,
        }
        self.map.write().expect("exchanges").insert(e.name.clone(), e.clone());
        Ok(e)
    }

    /// Delete an exchange.
    pub async fn delete(&self, name: &str) -> Result<(), ExchangeError> {
        self.get(name)?;
        self.store.meta_write(vec![MetaWrite::delete(keys::meta::exchange(name))]).await?;
        self.map.write().expect("exchanges").remove(name);
        Ok(())
    }

    /// Add a binding (binding the same thing twice is a no-op).
    pub async fn bind(&self, name: &str, binding: Binding) -> Result<ExchangeInfo, ExchangeError> {
        self.change(name, |e| {
            let binding = normalized(e, binding.clone());
            if !e.bindings.contains(&binding) {
                if e.bindings.len() >= limits::EXCHANGE_MAX_BINDINGS {
                    return Err(ExchangeError::Invalid(format!(
                        "exchange `{name}` has its maximum of {} bindings",
                        limits::EXCHANGE_MAX_BINDINGS
                    )));
                }
                e.bindings.push(binding.clone());
            }
            Ok(())
        })
        .await
    }

    /// Remove bindings to `destination` (with `key`, if given).
    pub async fn unbind(
        &self,
        name: &str,
        destination: &Destination,
        key: Option<&str>,
    ) -> Result<ExchangeInfo, ExchangeError> {
        self.change(name, |e| {
            let before = e.bindings.len();
            e.bindings.retain(|b| !(b.destination == *destination && key.is_none_or(|k| b.key.as_deref() == Some(k))));
            if e.bindings.len() == before {
                return Err(ExchangeError::NoBinding {
                    exchange: name.to_string(),
                    destination: destination.clone(),
                    key: key.map(str::to_string),
                });
            }
            Ok(())
        })
        .await
    }

    /// Change exchange `name` in one read-modify-write of its record: two binds at once
    /// (from two connections, or two nodes of a cluster) both land.
    async fn change(
        &self,
        name: &str,
        mut edit: impl FnMut(&mut ExchangeInfo) -> Result<(), ExchangeError>,
    ) -> Result<ExchangeInfo, ExchangeError> {
        self.get(name)?;
        let stored = self
            .store
            .meta_update::<ExchangeInfo, ExchangeError>(&keys::meta::exchange(name), |current| {
                let mut e = current.ok_or_else(|| ExchangeError::Unknown(name.to_string()))?;
                edit(&mut e)?;
                Ok(Some(e))
            })
            .await?
            .expect("an edit keeps the exchange");
        self.map.write().expect("exchanges").insert(name.to_string(), stored.clone());
        Ok(stored)
    }

    /// One exchange.
    pub fn get(&self, name: &str) -> Result<ExchangeInfo, ExchangeError> {
        self.map.read().expect("exchanges").get(name).cloned().ok_or_else(|| ExchangeError::Unknown(name.to_string()))
    }

    /// Every exchange.
    pub fn list(&self) -> Vec<ExchangeInfo> {
        self.map.read().expect("exchanges").values().cloned().collect()
    }

    /// The destinations of a message, each once, following alternate exchanges when nothing
    /// matches.
    pub fn route(
        &self,
        name: &str,
        routing_key: &str,
        headers: &[(String, String)],
    ) -> Result<Vec<Destination>, ExchangeError> {
        let mut current = self.get(name)?;
        for _ in 0..ALTERNATE_HOPS_MAX {
            let mut dests: Vec<Destination> = current
                .bindings
                .iter()
                .filter(|b| matches(&current, b, routing_key, headers))
                .map(|b| b.destination.clone())
                .collect();
            dests.sort();
            dests.dedup();
            if !dests.is_empty() {
                return Ok(dests);
            }
            match &current.alternate {
                Some(alt) => current = self.get(alt)?,
                None => break,
            }
        }
        let first = self.get(name)?;
        Err(ExchangeError::Unroutable { exchange: name.to_string(), kind: first.kind, key: routing_key.to_string() })
    }
}

/// A binding as RabbitMQ takes it: a direct or topic binding given no key binds with the
/// empty key (it matches messages routed with the empty key), and a headers binding with no
/// matches is kept as given (with all-must-match it matches every message; with any, none).
fn normalized(e: &ExchangeInfo, mut b: Binding) -> Binding {
    if matches!(e.kind, ExchangeType::Direct | ExchangeType::Topic) && b.key.is_none() {
        b.key = Some(String::new());
    }
    b
}

fn matches(e: &ExchangeInfo, b: &Binding, key: &str, headers: &[(String, String)]) -> bool {
    match e.kind {
        ExchangeType::Fanout => true,
        ExchangeType::Direct => b.key.as_deref() == Some(key),
        ExchangeType::Topic => b.key.as_deref().is_some_and(|p| topic_matches(p, key)),
        ExchangeType::Headers => {
            let has = |(k, v): &(String, String)| headers.iter().any(|(hk, hv)| hk == k && hv == v);
            if b.match_any { b.matches.iter().any(has) } else { b.matches.iter().all(has) }
        }
    }
}

/// AMQP topic matching: `*` matches exactly one word, `#` zero or more; words split on `.`.
pub fn topic_matches(pattern: &str, key: &str) -> bool {
    // An empty pattern or key is no words (so `""` binds to `""`, as in RabbitMQ).
    let p: Vec<&str> = if pattern.is_empty() { Vec::new() } else { pattern.split('.').collect() };
    let k: Vec<&str> = if key.is_empty() { Vec::new() } else { key.split('.').collect() };
    // can[i][j]: pattern words from i match key words from j.
    let mut can = vec![vec![false; k.len() + 1]; p.len() + 1];
    can[p.len()][k.len()] = true;
    for i in (0..p.len()).rev() {
        for j in (0..=k.len()).rev() {
            can[i][j] = match p[i] {
                "#" => can[i + 1][j] || (j < k.len() && can[i][j + 1]),
                "*" => j < k.len() && can[i + 1][j + 1],
                word => j < k.len() && k[j] == word && can[i + 1][j + 1],
            };
        }
    }
    can[0][0]
}

#[cfg(test)]
mod tests {
    use super::topic_matches;

    #[test]
    fn amqp_topic_patterns() {
        let cases = [
            ("", "", true),
            ("", "a", false),
            ("#", "", true),
            ("a.b.c", "a.b.c", true),
            ("a.*.c", "a.b.c", true),
            ("a.*.c", "a.c", false),
            ("#", "", true),
            ("#", "a.b", true),
            ("a.#", "a", true),
            ("#.c", "a.b.c", true),
            ("a.#.c", "a.c", true),
        ];
        for (p, k, want) in cases {
            assert_eq!(topic_matches(p, k), want, "{p} vs {k}");
        }
    }
}
