//! Admin routes: create and delete topics, queues and exchanges, and bind and unbind, each one
//! broker command under the one access check (as the native door's requests and the CLI).
//! Bodies take the settings in the wire types' JSON, as `weir … describe --json` shows them.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::Value;
use utoipa::{IntoParams, ToSchema};
use weir_client::wire as w;

use super::api::{unexpected, view};
use super::{ApiError, App, Body, Caller, ErrorBody, Params, Segments};
use crate::broker::{Command, ExchangeCommand, QueueCommand, Reply, TopicCommand};

/// What a create answers: the resource as its GET shows it.
type Created = (StatusCode, Json<Value>);

/// A topic to create.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct NewTopic {
    /// Letters, digits, `.`, `_` and `-`, at most 200 characters.
    #[schema(pattern = r"^[A-Za-z0-9._-]{1,200}$")]
    name: String,
    /// Settings; each left out takes its default.
    #[serde(default)]
    config: TopicSettings,
}

/// A topic's settings, as `weir topic create` takes them.
#[derive(Deserialize, ToSchema, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct TopicSettings {
    /// Partitions (default 1); order is kept within each.
    #[schema(minimum = 1, maximum = 1024)]
    #[serde(default, deserialize_with = "super::int::opt")]
    partitions: Option<u32>,
    /// When a write is acknowledged: `sync` (fsynced, the default) or `os`.
    #[schema(pattern = "^(sync|os)$")]
    durability: Option<String>,
    /// Delete records older than this.
    #[serde(default, deserialize_with = "super::int::opt")]
    retention_ms: Option<u64>,
    /// Delete a partition's oldest records beyond this many bytes.
    #[serde(default, deserialize_with = "super::int::opt")]
    retention_bytes: Option<u64>,
    /// The largest record value accepted (default 1 MiB).
    #[schema(minimum = 1, maximum = 8388608)]
    #[serde(default, deserialize_with = "super::int::opt")]
    max_message_bytes: Option<usize>,
    /// Kept in memory only, for live subscribers.
    ephemeral: Option<bool>,
    /// How a keyed record picks its partition: `hash` (default) or `murmur2` (Kafka's).
    #[schema(pattern = "^(hash|murmur2)$")]
    partitioner: Option<String>,
    /// Records' keys must carry a schema id of this registry subject (empty: by `subject_strategy`).
    key_schema: Option<String>,
    /// Records' values must carry a schema id of this registry subject (as `key_schema`).
    value_schema: Option<String>,
    /// Where a subject is set: `id` (default), `full` or `none`.
    #[schema(pattern = "^(id|full|none)$")]
    validation: Option<String>,
    /// `topic-name` (default), `record-name` or `topic-record-name`.
    #[schema(pattern = "^(topic-name|record-name|topic-record-name)$")]
    subject_strategy: Option<String>,
}

impl TopicSettings {
    fn into_config(self) -> Result<w::TopicConfig, ApiError> {
        let d = w::TopicConfig::default();
        Ok(w::TopicConfig {
            partitions: self.partitions.unwrap_or(d.partitions),
            durability: self.durability.map(|v| word("durability", v)).transpose()?,
            retention_ms: self.retention_ms,
            retention_bytes: self.retention_bytes,
            max_message_bytes: self.max_message_bytes.unwrap_or(d.max_message_bytes),
            ephemeral: self.ephemeral.unwrap_or(d.ephemeral),
            partitioner: self.partitioner.map_or(Ok(d.partitioner), |v| word("partitioner", v))?,
            key_schema: self.key_schema,
            value_schema: self.value_schema,
            validation: self.validation.map_or(Ok(d.validation), |v| word("validation", v))?,
            subject_strategy: self.subject_strategy.map_or(Ok(d.subject_strategy), |v| word("subject_strategy", v))?,
        })
    }
}

/// One of a setting's words (`sync`, `murmur2` …), as the wire types name them.
fn word<T: DeserializeOwned>(setting: &str, value: String) -> Result<T, ApiError> {
    serde_json::from_value(Value::String(value.clone()))
        .map_err(|_| ApiError::bad_request(format!("{setting} {value:?} is not one of the words /openapi.json lists")))
}

#[utoipa::path(post, path = "/api/v1/topics", tag = "topics", request_body = NewTopic,
    responses((status = 201, description = "Created; the topic as GET /api/v1/topics/{topic} shows it", body = Object),
        (status = 400, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 409, description = "A topic of that name exists", body = ErrorBody)))]
pub(super) async fn create_topic(
    State(app): State<App>,
    caller: Caller,
    Body(body): Body<NewTopic>,
) -> Result<Created, ApiError> {
    let config = body.config.into_config()?;
    let create = TopicCommand::Create { name: body.name.clone(), config: config.into() };
    app.run(&caller, Command::Topic(create)).await?;
    match app.run(&caller, Command::Topic(TopicCommand::Describe { name: body.name })).await? {
        Reply::Topic(t) => Ok((StatusCode::CREATED, view(w::TopicInfo::from(t))?)),
        other => Err(unexpected(other)),
    }
}

#[utoipa::path(delete, path = "/api/v1/topics/{topic}", tag = "topics", params(("topic" = String, Path)),
    responses((status = 204, description = "Deleted, with its records"), (status = 403, body = ErrorBody),
        (status = 404, body = ErrorBody), (status = 409, description = "A pipeline reads or writes it", body = ErrorBody)))]
pub(super) async fn delete_topic(
    State(app): State<App>,
    caller: Caller,
    Segments(name): Segments<String>,
) -> Result<StatusCode, ApiError> {
    app.run(&caller, Command::Topic(TopicCommand::Delete { name })).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// A queue to create.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct NewQueue {
    /// Letters, digits, `.`, `_` and `-`, at most 200 characters.
    #[schema(pattern = r"^[A-Za-z0-9._-]{1,200}$")]
    name: String,
    /// Settings; each left out takes its default.
    #[serde(default)]
    config: QueueSettings,
}

/// A queue's settings, as `weir queue create` takes them.
#[derive(Deserialize, ToSchema, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct QueueSettings {
    /// How long a received message stays invisible before it is delivered again (default 30 s).
    #[schema(minimum = 1, maximum = 43200000)]
    #[serde(default, deserialize_with = "super::int::opt")]
    visibility_timeout_ms: Option<u64>,
    /// Deliveries before a message moves to the dead-letter queue (default: unlimited).
    #[schema(minimum = 1)]
    #[serde(default, deserialize_with = "super::int::opt")]
    max_deliveries: Option<u32>,
    /// The dead-letter queue (created if missing).
    #[schema(pattern = r"^[A-Za-z0-9._-]{1,200}$")]
    dead_letter: Option<String>,
    /// How long a dedup id is remembered.
    #[serde(default, deserialize_with = "super::int::opt")]
    dedup_window_ms: Option<u64>,
    /// The most messages held (default and most: 1,000,000).
    #[schema(minimum = 1, maximum = 1000000)]
    #[serde(default, deserialize_with = "super::int::opt")]
    max_messages: Option<usize>,
    /// Dead letters are routed through this exchange instead (AMQP's `x-dead-letter-exchange`).
    #[schema(pattern = r"^[A-Za-z0-9._-]{1,200}$")]
    dead_letter_exchange: Option<String>,
    /// The routing key dead letters take through `dead_letter_exchange`.
    dead_letter_routing_key: Option<String>,
    /// A message not delivered this long after its send is dead-lettered.
    #[serde(default, deserialize_with = "super::int::opt")]
    message_ttl_ms: Option<u64>,
}

impl QueueSettings {
    fn into_config(self) -> w::QueueConfig {
        let d = w::QueueConfig::default();
        w::QueueConfig {
            visibility_timeout_ms: self.visibility_timeout_ms.unwrap_or(d.visibility_timeout_ms),
            max_deliveries: self.max_deliveries.or(d.max_deliveries),
            dead_letter: self.dead_letter.or(d.dead_letter),
            dedup_window_ms: self.dedup_window_ms.unwrap_or(d.dedup_window_ms),
            max_messages: self.max_messages.unwrap_or(d.max_messages),
            dead_letter_exchange: self.dead_letter_exchange.or(d.dead_letter_exchange),
            dead_letter_routing_key: self.dead_letter_routing_key.or(d.dead_letter_routing_key),
            message_ttl_ms: self.message_ttl_ms.or(d.message_ttl_ms),
        }
    }
}

#[utoipa::path(post, path = "/api/v1/queues", tag = "queues", request_body = NewQueue,
    responses((status = 201, description = "Created (with its dead-letter queue if named and missing)", body = Object),
        (status = 400, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 409, description = "A queue of that name exists", body = ErrorBody)))]
pub(super) async fn create_queue(
    State(app): State<App>,
    caller: Caller,
    Body(body): Body<NewQueue>,
) -> Result<Created, ApiError> {
    let create = QueueCommand::Create { name: body.name.clone(), config: body.config.into_config().into() };
    app.run(&caller, Command::Queue(create)).await?;
    match app.run(&caller, Command::Queue(QueueCommand::Describe { name: body.name })).await? {
        Reply::Queue(q) => Ok((StatusCode::CREATED, view(w::QueueInfo::from(q))?)),
        other => Err(unexpected(other)),
    }
}

#[utoipa::path(delete, path = "/api/v1/queues/{queue}", tag = "queues", params(("queue" = String, Path)),
    responses((status = 204, description = "Deleted, with its messages"), (status = 403, body = ErrorBody),
        (status = 404, body = ErrorBody), (status = 409, description = "A pipeline reads it", body = ErrorBody)))]
pub(super) async fn delete_queue(
    State(app): State<App>,
    caller: Caller,
    Segments(name): Segments<String>,
) -> Result<StatusCode, ApiError> {
    app.run(&caller, Command::Queue(QueueCommand::Delete { name })).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// An exchange to create.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct NewExchange {
    /// Letters, digits, `.`, `_` and `-`, at most 200 characters.
    #[schema(pattern = r"^[A-Za-z0-9._-]{1,200}$")]
    name: String,
    /// How bindings match: `direct`, `topic`, `fanout` or `headers`.
    #[schema(value_type = String, pattern = "^(direct|topic|fanout|headers)$")]
    kind: w::ExchangeType,
    /// The exchange that receives what no binding matched.
    #[serde(default)]
    alternate: Option<String>,
}

#[utoipa::path(post, path = "/api/v1/exchanges", tag = "exchanges", request_body = NewExchange,
    responses((status = 201, description = "Created; the exchange as GET /api/v1/exchanges lists it", body = Object),
        (status = 400, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 409, description = "An exchange of that name exists", body = ErrorBody)))]
pub(super) async fn create_exchange(
    State(app): State<App>,
    caller: Caller,
    Body(body): Body<NewExchange>,
) -> Result<Created, ApiError> {
    let create = ExchangeCommand::Create { name: body.name.clone(), kind: body.kind.into(), alternate: body.alternate };
    app.run(&caller, Command::Exchange(create)).await?;
    exchange_view(&app, &caller, &body.name, StatusCode::CREATED).await
}

#[utoipa::path(delete, path = "/api/v1/exchanges/{exchange}", tag = "exchanges", params(("exchange" = String, Path)),
    responses((status = 204, description = "Deleted, with its bindings"), (status = 403, body = ErrorBody),
        (status = 404, body = ErrorBody)))]
pub(super) async fn delete_exchange(
    State(app): State<App>,
    caller: Caller,
    Segments(name): Segments<String>,
) -> Result<StatusCode, ApiError> {
    app.run(&caller, Command::Exchange(ExchangeCommand::Delete { name })).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// A binding to add: where matching messages go, and what they must match.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct NewBinding {
    /// `topic:NAME` or `queue:NAME`.
    #[schema(pattern = "^(topic|queue):.+$")]
    destination: String,
    /// Binding key (direct) or pattern with `*` and `#` (topic exchanges).
    #[serde(default)]
    key: Option<String>,
    /// Header matches (headers exchanges): header name to value.
    #[serde(default)]
    matches: std::collections::BTreeMap<String, String>,
    /// Headers exchanges: match when any pair matches (default: all must).
    #[serde(default)]
    match_any: bool,
}

#[utoipa::path(post, path = "/api/v1/exchanges/{exchange}/bindings", tag = "exchanges",
    params(("exchange" = String, Path)), request_body = NewBinding,
    responses((status = 201, description = "Bound; the exchange with its bindings", body = Object),
        (status = 400, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub(super) async fn bind(
    State(app): State<App>,
    caller: Caller,
    Segments(exchange): Segments<String>,
    Body(body): Body<NewBinding>,
) -> Result<Created, ApiError> {
    let destination = w::Destination::parse(&body.destination).map_err(|e| ApiError::bad_request(e.to_string()))?;
    let matches = body.matches.into_iter().collect();
    let binding = w::Binding { destination, key: body.key, matches, match_any: body.match_any };
    let command = ExchangeCommand::Bind { exchange: exchange.clone(), binding: binding.into() };
    app.run(&caller, Command::Exchange(command)).await?;
    exchange_view(&app, &caller, &exchange, StatusCode::CREATED).await
}

/// Which bindings to remove.
#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub(super) struct Unbind {
    /// `topic:NAME` or `queue:NAME`: its bindings are removed.
    #[param(pattern = "^(topic|queue):.+$")]
    destination: String,
    /// Only the binding with this key.
    key: Option<String>,
    /// A bearer token, for clients that cannot set headers; read by the token check.
    #[serde(rename = "access_token")]
    _access_token: Option<String>,
}

#[utoipa::path(delete, path = "/api/v1/exchanges/{exchange}/bindings", tag = "exchanges",
    params(("exchange" = String, Path), Unbind),
    responses((status = 200, description = "Unbound; the exchange with the bindings left", body = Object),
        (status = 400, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub(super) async fn unbind(
    State(app): State<App>,
    caller: Caller,
    Segments(exchange): Segments<String>,
    Params(q): Params<Unbind>,
) -> Result<Json<Value>, ApiError> {
    let destination = w::Destination::parse(&q.destination).map_err(|e| ApiError::bad_request(e.to_string()))?;
    let command = ExchangeCommand::Unbind { exchange: exchange.clone(), destination: destination.into(), key: q.key };
    app.run(&caller, Command::Exchange(command)).await?;
    Ok(exchange_view(&app, &caller, &exchange, StatusCode::OK).await?.1)
}

/// The exchange `name` as GET /api/v1/exchanges lists it.
async fn exchange_view(app: &App, caller: &Caller, name: &str, status: StatusCode) -> Result<Created, ApiError> {
    match app.run(caller, Command::Exchange(ExchangeCommand::List)).await? {
        Reply::Exchanges(all) => match all.into_iter().find(|e| e.name == name) {
            Some(e) => Ok((status, view(w::ExchangeInfo::from(e))?)),
            None => Err(ApiError::not_found(format!("no exchange {name:?}"))),
        },
        other => Err(unexpected(other)),
    }
}
