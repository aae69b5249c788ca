//! Admin routes: create and delete topics, queues and exchanges, and bind and unbind, each one
//! broker command under the one access check (as the native door's requests and the CLI).
//! Bodies take the settings in the wire types' JSON, as `weir … describe --json` shows them.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
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
    /// Settings (default: one partition, the server's durability): `partitions`,
    /// `durability` (`none`, `os`, `sync`), `retention_ms`, `retention_bytes`,
    /// `max_message_bytes`, `ephemeral`, `partitioner`, `key_schema`, `value_schema`,
    /// `validation`, `subject_strategy`.
    #[serde(default)]
    #[schema(value_type = Object)]
    config: Option<Value>,
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
    let config: w::TopicConfig = settings("topic", body.config)?;
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
    /// Settings (default: 30 s visibility, no delivery limit): `visibility_timeout_ms`,
    /// `max_deliveries`, `dead_letter`, `dedup_window_ms`, `max_messages`,
    /// `dead_letter_exchange`, `dead_letter_routing_key`, `message_ttl_ms`.
    #[serde(default)]
    #[schema(value_type = Object)]
    config: Option<Value>,
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
    let config: w::QueueConfig = settings("queue", body.config)?;
    let create = QueueCommand::Create { name: body.name.clone(), config: config.into() };
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
    /// Header matches (headers exchanges), `[name, value]` pairs.
    #[serde(default)]
    matches: Vec<(String, String)>,
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
    let binding = w::Binding { destination, key: body.key, matches: body.matches, match_any: body.match_any };
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

/// Settings given as JSON: what is left out takes its default, and a name that is not a
/// setting is refused (a misspelt setting must not pass unseen).
fn settings<T: Serialize + DeserializeOwned + Default>(what: &str, given: Option<Value>) -> Result<T, ApiError> {
    let Some(given) = given else { return Ok(T::default()) };
    let known = serde_json::to_value(T::default()).unwrap_or_default();
    let known = known.as_object().map(|o| o.keys().cloned().collect::<Vec<_>>()).unwrap_or_default();
    let Some(object) = given.as_object() else {
        return Err(ApiError::bad_request(format!("{what} config must be a JSON object, got {given}")));
    };
    if let Some(unknown) = object.keys().find(|k| !known.contains(k)) {
        return Err(ApiError::bad_request(format!(
            "{what} config has no setting `{unknown}`; the settings are {}",
            known.join(", ")
        )));
    }
    serde_json::from_value(given).map_err(|e| ApiError::bad_request(format!("{what} config: {e}")))
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
