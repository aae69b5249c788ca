//! The routes: each turns an HTTP request into broker commands and the reply into JSON. The
//! OpenAPI description is generated from the `#[utoipa::path]` on each handler, so the routes
//! and their description cannot drift apart.

use std::time::Duration;

use axum::Json;
use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::{IntoParams, OpenApi, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use weir_client::wire as w;

use super::records::{InMessage, InRecord, OutDelivery, OutRecord};
use super::{ApiError, App, Body, Caller, ErrorBody, OptionalBody, Params, Segments};
use crate::broker::{
    Command, ExchangeCommand, FetchPosition, GroupCommand, PipelineCommand, PluginCommand, QueueCommand, Reply,
    TopicCommand,
};
use crate::limits;
use crate::queue::Nack;
use crate::storage::NewRecord;

#[derive(OpenApi)]
#[openapi(
    info(
        title = "weir",
        description = "weir's HTTP API: produce, fetch and stream topics; queues, exchanges and request/reply; create and delete topics, queues, exchanges and bindings; views of what the server runs. Send `Authorization: Bearer TOKEN` when the server has a token file. Every error is a JSON body {\"error\": {\"kind\", \"message\"}}."
    ),
    components(schemas(ErrorBody))
)]
struct ApiDoc;

/// Every route, with the OpenAPI description served at `/openapi.json`; and the path
/// templates (`/api/v1/queues/{queue}`) that take no POST, from the same description.
pub(super) fn router(app: App) -> (axum::Router, Vec<String>) {
    let (router, api) = OpenApiRouter::with_openapi(ApiDoc::openapi())
        .routes(routes!(whoami))
        .routes(routes!(health))
        .routes(routes!(topics, super::admin::create_topic))
        .routes(routes!(topic, super::admin::delete_topic))
        .routes(routes!(produce, fetch))
        .routes(routes!(super::stream::events))
        .routes(routes!(request))
        .routes(routes!(replay))
        .routes(routes!(groups))
        .routes(routes!(queues, super::admin::create_queue))
        .routes(routes!(queue, super::admin::delete_queue))
        .routes(routes!(send))
        .routes(routes!(receive))
        .routes(routes!(ack))
        .routes(routes!(nack))
        .routes(routes!(exchanges, super::admin::create_exchange))
        .routes(routes!(super::admin::delete_exchange))
        .routes(routes!(super::admin::bind, super::admin::unbind))
        .routes(routes!(publish))
        .routes(routes!(pipelines))
        .routes(routes!(pipeline))
        .routes(routes!(pause))
        .routes(routes!(resume))
        .routes(routes!(plugins))
        .routes(routes!(versions))
        .routes(routes!(diff))
        .routes(routes!(promote))
        .routes(routes!(rollback))
        .routes(routes!(metrics))
        .split_for_parts();
    let mut api = api;
    document_errors(&mut api);
    let spec = document_twins(serde_json::to_value(&api).expect("the OpenAPI description serializes"));
    let spec = serde_json::to_string_pretty(&spec).expect("JSON serializes");
    let postless = api.paths.paths.iter().filter(|(_, item)| item.post.is_none()).map(|(p, _)| p.clone()).collect();
    let router = router
        .route(
            "/openapi.json",
            axum::routing::get(move || async move { ([(header::CONTENT_TYPE, "application/json")], spec) }),
        )
        .merge(super::console::router())
        .merge(super::registry::router())
        .fallback(not_found)
        .with_state(app);
    (router, postless)
}

/// The answers every route can give besides its own: the door's rejections (a malformed
/// path, query or body, a wrong content type, a body too large), the token check, and the
/// broker's failures of any command (busy, shutting down, timed out, disk full, internal).
/// Written here once so that /openapi.json lists every status the server can send.
fn document_errors(api: &mut utoipa::openapi::OpenApi) {
    use utoipa::openapi::{ContentBuilder, Ref, ResponseBuilder};
    let error = |why: &str| {
        let body = ContentBuilder::new().schema(Some(Ref::from_schema_name("ErrorBody"))).build();
        ResponseBuilder::new().description(why).content("application/json", body).build()
    };
    let common: &[(&str, &str)] = &[
        ("400", "A malformed path, query or body; the message says which and how to fix it"),
        ("401", "An unknown token, or none where the server requires one"),
        ("403", "The token has no grant for this"),
        ("429", "The server is busy or the queue full; try again"),
        ("500", "A failure of the server's; its log says more"),
        ("503", "The server is shutting down or at its connection limit"),
        ("504", "No answer within the request's time (for a request, no reply)"),
    ];
    let with_body: &[(&str, &str)] = &[
        ("413", "The body is over the limit (8 MiB)"),
        ("415", "The body is not `Content-Type: application/json`"),
        ("422", "The body is JSON, but not of this request's shape, or the broker cannot use it"),
    ];
    let writes: &[(&str, &str)] = &[
        ("409", "In conflict with the current state (exists, in use, stale)"),
        ("507", "The disk is below weir's free-space floor: writes are refused until space returns"),
    ];
    for (path, item) in api.paths.paths.iter_mut() {
        let named = path.contains('{');
        let ops = [&mut item.get, &mut item.post, &mut item.put, &mut item.delete, &mut item.patch];
        for (write, op) in ops.into_iter().enumerate().filter_map(|(i, op)| Some((i > 0, op.as_mut()?))) {
            let mut add = |codes: &[(&str, &str)]| {
                for (code, why) in codes {
                    op.responses.responses.entry((*code).to_string()).or_insert_with(|| error(why).into());
                }
            };
            add(common);
            if named || write {
                add(&[("404", "No such resource (or none of a name the request gives)")]);
            }
            if write {
                add(with_body);
                add(writes);
            }
        }
    }
}

/// What the derive cannot say: a field and its base64 twin are one or the other (`not:
/// {required: [both]}`), how many headers a record or message may carry, and what a name in a
/// path may be.
fn document_twins(mut spec: Value) -> Value {
    let named = ["topic", "queue", "exchange", "pipeline", "plugin"];
    for item in spec["paths"].as_object_mut().into_iter().flat_map(|p| p.values_mut()) {
        for op in item.as_object_mut().into_iter().flat_map(|i| i.values_mut()) {
            for param in op.get_mut("parameters").and_then(Value::as_array_mut).into_iter().flatten() {
                if param["in"] == "path" && named.iter().any(|n| param["name"] == *n) {
                    param["schema"]["pattern"] = r"^[A-Za-z0-9._-]{1,200}$".into();
                }
            }
        }
    }
    // (schema, its twins, the payload twin that is required)
    type Pair = (&'static str, &'static str);
    let twins: [(&str, &[Pair], Pair); 2] = [
        ("InRecord", &[("key", "key_base64"), ("value", "value_base64")], ("value", "value_base64")),
        ("InMessage", &[("body", "body_base64")], ("body", "body_base64")),
    ];
    for (schema, pairs, (payload, payload_b64)) in twins {
        let any: Vec<Value> = pairs.iter().map(|(a, b)| serde_json::json!({"required": [a, b]})).collect();
        if let Some(s) = spec["components"]["schemas"].get_mut(schema).and_then(Value::as_object_mut) {
            s.insert("not".into(), serde_json::json!({"anyOf": any}));
            // The payload is one of the two, and is required.
            s.insert("anyOf".into(), serde_json::json!([{"required": [payload]}, {"required": [payload_b64]}]));
            // Nor can it bound a map's size: the headers a record or message may carry.
            if let Some(h) = s.get_mut("properties").and_then(|p| p.get_mut("headers")).and_then(Value::as_object_mut) {
                h.insert("maxProperties".into(), limits::MAX_HEADERS.into());
            }
        }
    }
    spec
}

async fn not_found(uri: axum::http::Uri) -> ApiError {
    ApiError::not_found(format!("no route {}; the routes are listed in /openapi.json", uri.path()))
}

/// A reply of another shape than the command's: a bug.
pub(super) fn unexpected(reply: Reply) -> ApiError {
    ApiError::new(axum::http::StatusCode::INTERNAL_SERVER_ERROR, "Internal", format!("unexpected reply {reply:?}"))
}

/// The resource a route names in its one path segment.
type Named = Segments<String>;

/// Who the token is and what it may do (the console hides what would be refused).
#[derive(Serialize, ToSchema)]
struct WhoAmI {
    /// Whether the server requires tokens.
    enforced: bool,
    /// The token's name.
    name: Option<String>,
    /// `[permission, pattern]` pairs; `admin` implies the others.
    #[schema(value_type = Vec<Vec<String>>)]
    grants: Vec<(String, String)>,
}

/// The server's storage condition, shown by the console while a condition lasts.
#[derive(Serialize, ToSchema)]
struct Health {
    /// Produces, pipeline outputs and queue sends are refused for lack of disk space.
    disk_full: bool,
    /// Free bytes in the data (or write-ahead-log) directory, the fuller one.
    free_bytes: u64,
    /// The free space weir keeps (`weir serve --min-free-space`).
    min_free_bytes: u64,
    /// The store refuses writes after a failed write, until restarted (why is in the server's
    /// log and `weir_store_write_failed`; this route needs no token, so it tells no more).
    write_failed: bool,
}

#[utoipa::path(get, path = "/api/v1/health", tag = "access", responses((status = 200, description = "The storage condition; no token needed", body = Health)))]
async fn health(State(app): State<App>) -> Json<Health> {
    let store = &app.broker.store;
    // A fresh reading, so a console sees space come back while nothing is written.
    let _ = store.check_space();
    let (free_bytes, min_free_bytes, disk_full) = store.space();
    Json(Health { disk_full, free_bytes, min_free_bytes, write_failed: store.poisoned().is_some() })
}

#[utoipa::path(get, path = "/api/v1/whoami", tag = "access", responses((status = 200, description = "Without a token on a server that wants one: no name and no grants", body = WhoAmI), (status = 401, description = "An unknown token", body = ErrorBody)))]
async fn whoami(
    State(app): State<App>,
    uri: axum::http::Uri,
    headers: axum::http::HeaderMap,
    caller: Result<Caller, ApiError>,
) -> Result<Json<WhoAmI>, ApiError> {
    let enforced = app.broker.authority.is_enforced();
    let presented =
        headers.contains_key(header::AUTHORIZATION) || uri.query().is_some_and(|q| q.contains("access_token="));
    // Asking without a token is a question, not a mistake: the console asks it before sign-in.
    let caller = match caller {
        Err(_) if !presented => return Ok(Json(WhoAmI { enforced, name: None, grants: vec![] })),
        other => other?,
    };
    Ok(Json(match &caller.who {
        None => WhoAmI { enforced, name: None, grants: vec![("admin".into(), "*".into())] },
        Some(who) => WhoAmI {
            enforced: true,
            name: Some(who.name.clone()),
            grants: who.grants().map(|(p, pattern)| (p.word().to_string(), pattern.to_string())).collect(),
        },
    }))
}

#[utoipa::path(get, path = "/api/v1/topics", tag = "topics", responses((status = 200, description = "Topics the token may read or write, with each partition's [log start, high watermark]", body = [Object])))]
async fn topics(State(app): State<App>, caller: Caller) -> Result<Json<Value>, ApiError> {
    match app.run(&caller, Command::Topic(TopicCommand::List)).await? {
        Reply::Topics(t) => view(t.into_iter().map(w::TopicInfo::from).collect::<Vec<_>>()),
        other => Err(unexpected(other)),
    }
}

#[utoipa::path(get, path = "/api/v1/topics/{topic}", tag = "topics", params(("topic" = String, Path)), responses((status = 200, body = Object), (status = 404, body = ErrorBody)))]
async fn topic(State(app): State<App>, caller: Caller, Segments(name): Named) -> Result<Json<Value>, ApiError> {
    match app.run(&caller, Command::Topic(TopicCommand::Describe { name })).await? {
        Reply::Topic(t) => view(w::TopicInfo::from(t)),
        other => Err(unexpected(other)),
    }
}

/// Records to append.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct ProduceBody {
    /// In order; each goes to `partition` if given, else by key hash, else round-robin.
    #[schema(min_items = 1)]
    records: Vec<InRecord>,
}

/// Where to produce.
#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
struct ProduceQuery {
    /// Put every record in this partition.
    #[serde(default, deserialize_with = "super::int::query")]
    #[param(maximum = 1023)]
    partition: Option<u32>,
    /// A bearer token, for clients that cannot set headers; read by the token check.
    #[serde(rename = "access_token")]
    _access_token: Option<String>,
}

/// Where each record was stored, in request order.
#[derive(Serialize, ToSchema)]
struct Produced {
    /// One per record.
    offsets: Vec<Position>,
}

/// A position in a topic.
#[derive(Serialize, ToSchema)]
struct Position {
    /// Partition.
    partition: u32,
    /// Offset.
    offset: u64,
}

#[utoipa::path(post, path = "/api/v1/topics/{topic}/records", tag = "topics",
    params(("topic" = String, Path), ProduceQuery), request_body = ProduceBody,
    responses((status = 200, description = "Durable (acknowledged as the topic's durability says)", body = Produced),
        (status = 400, body = ErrorBody), (status = 404, body = ErrorBody), (status = 413, body = ErrorBody)))]
async fn produce(
    State(app): State<App>,
    caller: Caller,
    Segments(topic): Named,
    Params(q): Params<ProduceQuery>,
    Body(body): Body<ProduceBody>,
) -> Result<Json<Produced>, ApiError> {
    let records = body
        .records
        .into_iter()
        .enumerate()
        .map(|(i, r)| r.into_record(&format!("records[{i}]")))
        .collect::<Result<Vec<NewRecord>, _>>()?;
    let command = TopicCommand::Produce { topic, partition: q.partition, records, sequence: None };
    match app.run(&caller, Command::Topic(command)).await? {
        Reply::Produced(p) => Ok(Json(Produced {
            offsets: p.into_iter().map(|(partition, offset)| Position { partition, offset }).collect(),
        })),
        other => Err(unexpected(other)),
    }
}

/// Where to read.
#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
struct FetchQuery {
    /// Only this partition (default: all).
    #[serde(default, deserialize_with = "super::int::query")]
    #[param(maximum = 1023)]
    partition: Option<u32>,
    /// From this offset (default: the log start).
    #[serde(default, deserialize_with = "super::int::query")]
    offset: Option<u64>,
    /// From the first record appended at or after this time, ms since the Unix epoch.
    #[serde(default, deserialize_with = "super::int::query")]
    time_ms: Option<u64>,
    /// From this consumer group's committed offsets.
    #[param(pattern = r"^[A-Za-z0-9._-]{1,200}$")]
    group: Option<String>,
    /// With `group`: commit the offsets after the records returned.
    #[serde(default)]
    commit: bool,
    /// Most records (default 100; taken as 1 to 10,000, the nearest of those).
    #[serde(default, deserialize_with = "super::int::query")]
    #[param(value_type = Option<u64>)]
    max: Option<usize>,
    /// Wait this long for a first record (default 0; capped below the request deadline).
    #[serde(default, deserialize_with = "super::int::query")]
    wait_ms: Option<u64>,
    /// A bearer token, for clients that cannot set headers; read by the token check.
    #[serde(rename = "access_token")]
    _access_token: Option<String>,
}

/// Records read.
#[derive(Serialize, ToSchema)]
struct Fetched {
    /// In partition order, then offset order.
    records: Vec<OutRecord>,
    /// Per partition read, the next offset to ask for.
    next: Vec<Position>,
    /// Per partition read, one past the last readable offset.
    high_watermarks: Vec<Position>,
}

#[utoipa::path(get, path = "/api/v1/topics/{topic}/records", tag = "topics",
    params(("topic" = String, Path), FetchQuery),
    responses((status = 200, body = Fetched), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 409, description = "With commit=true: the group's offsets moved on (a member of it committed)", body = ErrorBody),
        (status = 422, description = "More than one of offset, time_ms and group, or commit without group", body = ErrorBody),
        (status = 507, description = "With commit=true: the disk is below weir's free-space floor", body = ErrorBody)))]
async fn fetch(
    State(app): State<App>,
    caller: Caller,
    Segments(topic): Named,
    Params(q): Params<FetchQuery>,
) -> Result<Json<Fetched>, ApiError> {
    if q.commit && q.group.is_none() {
        // Well formed, but nothing to commit to: a 422, as for offset with group below.
        return Err(ApiError::new(
            axum::http::StatusCode::UNPROCESSABLE_ENTITY,
            "InvalidArgument",
            "commit=true needs group=NAME: only a group's offsets can be committed".into(),
        ));
    }
    let positions = start_positions(&app, &caller, &topic, &q).await?;
    let max_records = q.max.unwrap_or(100).clamp(1, limits::HTTP_MAX_FETCH_RECORDS);
    let max_wait = Duration::from_millis(q.wait_ms.unwrap_or(0)).min(app.max_wait());
    let command = TopicCommand::Fetch {
        topic: topic.clone(),
        positions: positions.clone(),
        max_records,
        max_bytes: limits::HTTP_MAX_FETCH_BYTES,
        max_wait,
    };
    let parts = match app.run(&caller, Command::Topic(command)).await? {
        Reply::Fetched(parts) => parts,
        other => return Err(unexpected(other)),
    };
    let mut out = Fetched { records: Vec::new(), next: Vec::new(), high_watermarks: Vec::new() };
    for pos in &positions {
        let part = parts.iter().find(|p| p.partition == pos.partition);
        let next = part.and_then(|p| p.records.last()).map_or(pos.offset, |r| r.offset + 1);
        let next = part.map_or(next, |p| next.max(p.first_offset));
        out.next.push(Position { partition: pos.partition, offset: next });
        if let Some(p) = part {
            out.high_watermarks.push(Position { partition: p.partition, offset: p.high_watermark });
        }
    }
    for part in parts {
        let p = part.partition;
        out.records.extend(part.records.into_iter().map(|r| OutRecord::new(Some(p), r)));
    }
    if let (Some(group), true) = (q.group, q.commit) {
        let offsets = out.next.iter().map(|p| (p.partition, p.offset)).collect();
        let commit = GroupCommand::Commit { group, topic, offsets, member: None };
        app.run(&caller, Command::Group(commit)).await?;
    }
    Ok(Json(out))
}

/// The first offset to read in each partition the query names.
async fn start_positions(
    app: &App,
    caller: &Caller,
    topic: &str,
    q: &FetchQuery,
) -> Result<Vec<FetchPosition>, ApiError> {
    let given = [q.offset.is_some(), q.time_ms.is_some(), q.group.is_some()].iter().filter(|x| **x).count();
    if given > 1 {
        // Each is well formed; together they ask two things (a query string's parameters
        // cannot exclude each other in the OpenAPI document, so this is a 422, not a 400).
        return Err(ApiError::new(
            axum::http::StatusCode::UNPROCESSABLE_ENTITY,
            "InvalidArgument",
            "give at most one of offset, time_ms and group: each names where to start".into(),
        ));
    }
    let info = match app.run(caller, Command::Topic(TopicCommand::Describe { name: topic.to_string() })).await? {
        Reply::Topic(t) => t,
        other => return Err(unexpected(other)),
    };
    let count = info.partitions.len() as u32;
    if let Some(p) = q.partition.filter(|p| *p >= count) {
        return Err(ApiError::not_found(format!("topic `{topic}` has partitions 0 to {}, not {p}", count - 1)));
    }
    let starts: Vec<Option<u64>> = if let Some(group) = &q.group {
        let command = GroupCommand::Offsets { group: group.clone(), topic: topic.to_string() };
        match app.run(caller, Command::Group(command)).await? {
            Reply::Offsets(o) => o,
            other => return Err(unexpected(other)),
        }
    } else if let Some(time) = q.time_ms {
        let command = TopicCommand::OffsetsForTime { topic: topic.to_string(), timestamp_ms: time };
        match app.run(caller, Command::Topic(command)).await? {
            Reply::Offsets(o) => o,
            other => return Err(unexpected(other)),
        }
    } else {
        vec![q.offset; count as usize]
    };
    Ok((0..count)
        .filter(|p| q.partition.is_none_or(|only| only == *p))
        .map(|p| FetchPosition {
            partition: p,
            offset: starts.get(p as usize).copied().flatten().unwrap_or(info.partitions[p as usize].0),
        })
        .collect())
}

/// A request to send and wait for its reply.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct RequestBody {
    /// The request record.
    record: InRecord,
    /// How long to wait for the reply (default 5,000; capped below the request deadline).
    #[serde(default, deserialize_with = "super::int::opt")]
    #[schema(minimum = 0)]
    timeout_ms: Option<u64>,
}

#[utoipa::path(post, path = "/api/v1/topics/{topic}/request", tag = "topics", params(("topic" = String, Path)),
    request_body = RequestBody,
    responses((status = 200, description = "The reply record", body = OutRecord), (status = 504, body = ErrorBody)))]
async fn request(
    State(app): State<App>,
    caller: Caller,
    Segments(topic): Named,
    Body(body): Body<RequestBody>,
) -> Result<Json<OutRecord>, ApiError> {
    let record = body.record.into_record("record")?;
    let timeout = Duration::from_millis(body.timeout_ms.unwrap_or(5_000)).min(app.max_wait());
    match app.run(&caller, Command::Topic(TopicCommand::Request { topic, record, timeout })).await? {
        Reply::Reply(r) => Ok(Json(OutRecord::new(None, r))),
        other => Err(unexpected(other)),
    }
}

/// Where replayed dead letters go.
#[derive(Deserialize, ToSchema, Default)]
#[serde(deny_unknown_fields)]
struct ReplayBody {
    /// Send everything here instead of each record's original topic.
    to: Option<String>,
}

/// How many records were sent.
#[derive(Serialize, ToSchema)]
struct Count {
    /// How many.
    count: u64,
}

#[utoipa::path(post, path = "/api/v1/topics/{topic}/replay", tag = "topics", params(("topic" = String, Path)),
    request_body = ReplayBody,
    responses((status = 200, description = "Dead letters not replayed before were sent back, with the replay's progress in the same commit", body = Count)))]
async fn replay(
    State(app): State<App>,
    caller: Caller,
    Segments(topic): Named,
    OptionalBody(body): OptionalBody<ReplayBody>,
) -> Result<Json<Count>, ApiError> {
    let to = body.to;
    match app.run(&caller, Command::Topic(TopicCommand::ReplayDeadLetters { topic, to })).await? {
        Reply::Count(count) => Ok(Json(Count { count })),
        other => Err(unexpected(other)),
    }
}

#[utoipa::path(get, path = "/api/v1/groups", tag = "groups", responses((status = 200, description = "Consumer groups with [partition, committed, high watermark] per partition", body = [Object])))]
async fn groups(State(app): State<App>, caller: Caller) -> Result<Json<Value>, ApiError> {
    match app.run(&caller, Command::Group(GroupCommand::List)).await? {
        Reply::Groups(g) => view(g.into_iter().map(w::GroupInfo::from).collect::<Vec<_>>()),
        other => Err(unexpected(other)),
    }
}

#[utoipa::path(get, path = "/api/v1/queues", tag = "queues", responses((status = 200, description = "Queues with depth by state", body = [Object])))]
async fn queues(State(app): State<App>, caller: Caller) -> Result<Json<Value>, ApiError> {
    match app.run(&caller, Command::Queue(QueueCommand::List)).await? {
        Reply::Queues(q) => view(q.into_iter().map(w::QueueInfo::from).collect::<Vec<_>>()),
        other => Err(unexpected(other)),
    }
}

#[utoipa::path(get, path = "/api/v1/queues/{queue}", tag = "queues", params(("queue" = String, Path)), responses((status = 200, body = Object), (status = 404, body = ErrorBody)))]
async fn queue(State(app): State<App>, caller: Caller, Segments(name): Named) -> Result<Json<Value>, ApiError> {
    match app.run(&caller, Command::Queue(QueueCommand::Describe { name })).await? {
        Reply::Queue(q) => view(w::QueueInfo::from(q)),
        other => Err(unexpected(other)),
    }
}

/// Messages to enqueue in one durable commit.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct SendBody {
    /// Messages.
    #[schema(min_items = 1)]
    messages: Vec<InMessage>,
}

/// Per message: enqueued (`false`: a repeat within the dedup window).
#[derive(Serialize, ToSchema)]
struct Sent {
    /// One per message.
    enqueued: Vec<bool>,
}

#[utoipa::path(post, path = "/api/v1/queues/{queue}/messages", tag = "queues", params(("queue" = String, Path)),
    request_body = SendBody, responses((status = 200, body = Sent), (status = 404, body = ErrorBody), (status = 429, body = ErrorBody)))]
async fn send(
    State(app): State<App>,
    caller: Caller,
    Segments(queue): Named,
    Body(body): Body<SendBody>,
) -> Result<Json<Sent>, ApiError> {
    let messages = body
        .messages
        .into_iter()
        .enumerate()
        .map(|(i, m)| m.into_message(&format!("messages[{i}]")))
        .collect::<Result<Vec<_>, _>>()?;
    match app.run(&caller, Command::Queue(QueueCommand::Send { queue, messages })).await? {
        Reply::Sent(enqueued) => Ok(Json(Sent { enqueued })),
        other => Err(unexpected(other)),
    }
}

/// How to receive.
#[derive(Deserialize, ToSchema, Default)]
#[serde(deny_unknown_fields)]
struct ReceiveBody {
    /// Most messages (default 1; taken as 1 to 1,000, the nearest of those).
    #[serde(default, deserialize_with = "super::int::opt")]
    #[schema(minimum = 0)]
    max: Option<usize>,
    /// Wait this long for a first message (default 0; capped below the request deadline).
    #[serde(default, deserialize_with = "super::int::opt")]
    #[schema(minimum = 0)]
    wait_ms: Option<u64>,
    /// Invisible to others for this long (default: the queue's visibility timeout; capped at
    /// 12 h; 0: visible again at once).
    #[serde(default, deserialize_with = "super::int::opt")]
    #[schema(minimum = 0)]
    visibility_ms: Option<u64>,
}

/// Received messages.
#[derive(Serialize, ToSchema)]
struct Received {
    /// Ack or nack each by its receipt.
    messages: Vec<OutDelivery>,
}

#[utoipa::path(post, path = "/api/v1/queues/{queue}/receive", tag = "queues", params(("queue" = String, Path)),
    request_body = ReceiveBody, responses((status = 200, body = Received), (status = 404, body = ErrorBody)))]
async fn receive(
    State(app): State<App>,
    caller: Caller,
    Segments(queue): Named,
    OptionalBody(b): OptionalBody<ReceiveBody>,
) -> Result<Json<Received>, ApiError> {
    let command = QueueCommand::Receive {
        queue,
        max: b.max.unwrap_or(1).clamp(1, 1_000),
        wait: Duration::from_millis(b.wait_ms.unwrap_or(0)).min(app.max_wait()),
        visibility_ms: b.visibility_ms,
    };
    match app.run(&caller, Command::Queue(command)).await? {
        Reply::Deliveries(d) => Ok(Json(Received { messages: d.into_iter().map(OutDelivery::from).collect() })),
        other => Err(unexpected(other)),
    }
}

/// Receipts to settle.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct AckBody {
    /// From received messages.
    receipts: Vec<String>,
}

#[utoipa::path(post, path = "/api/v1/queues/{queue}/ack", tag = "queues", params(("queue" = String, Path)),
    request_body = AckBody, responses((status = 200, body = Count), (status = 409, description = "A receipt no longer names a current delivery", body = ErrorBody)))]
async fn ack(
    State(app): State<App>,
    caller: Caller,
    Segments(queue): Named,
    Body(body): Body<AckBody>,
) -> Result<Json<Count>, ApiError> {
    let n = body.receipts.len() as u64;
    counted(app.run(&caller, Command::Queue(QueueCommand::Ack { queue, receipts: body.receipts })).await?, n)
}

/// Receipts to hand back.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct NackBody {
    /// From received messages.
    receipts: Vec<String>,
    /// Move them to the dead-letter queue now instead of requeueing.
    #[serde(default)]
    dead_letter: bool,
    /// Requeued messages become visible after this long (capped at 12 h).
    #[serde(default, deserialize_with = "super::int::one")]
    #[schema(minimum = 0)]
    delay_ms: u64,
}

#[utoipa::path(post, path = "/api/v1/queues/{queue}/nack", tag = "queues", params(("queue" = String, Path)),
    request_body = NackBody, responses((status = 200, body = Count), (status = 409, body = ErrorBody)))]
async fn nack(
    State(app): State<App>,
    caller: Caller,
    Segments(queue): Named,
    Body(body): Body<NackBody>,
) -> Result<Json<Count>, ApiError> {
    let how = if body.dead_letter { Nack::DeadLetter } else { Nack::Requeue { delay_ms: body.delay_ms } };
    let n = body.receipts.len() as u64;
    counted(app.run(&caller, Command::Queue(QueueCommand::Nack { queue, receipts: body.receipts, how })).await?, n)
}

fn counted(reply: Reply, asked: u64) -> Result<Json<Count>, ApiError> {
    match reply {
        Reply::Count(count) => Ok(Json(Count { count })),
        Reply::Done => Ok(Json(Count { count: asked })),
        other => Err(unexpected(other)),
    }
}

#[utoipa::path(get, path = "/api/v1/exchanges", tag = "exchanges", responses((status = 200, description = "Exchanges with their bindings", body = [Object])))]
async fn exchanges(State(app): State<App>, caller: Caller) -> Result<Json<Value>, ApiError> {
    match app.run(&caller, Command::Exchange(ExchangeCommand::List)).await? {
        Reply::Exchanges(e) => view(e.into_iter().map(w::ExchangeInfo::from).collect::<Vec<_>>()),
        other => Err(unexpected(other)),
    }
}

/// A message to route.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct PublishBody {
    /// Matched against the bindings (AMQP rules per exchange type).
    routing_key: String,
    /// The message (its key partitions topic destinations).
    record: InRecord,
}

/// Where a published message went.
#[derive(Serialize, ToSchema)]
struct Published {
    /// Whether any binding (or the alternate exchange) took it; if not, it was dropped.
    routed: bool,
    /// `topic:NAME` or `queue:NAME`.
    destinations: Vec<String>,
}

#[utoipa::path(post, path = "/api/v1/exchanges/{exchange}/publish", tag = "exchanges", params(("exchange" = String, Path)),
    request_body = PublishBody, responses((status = 200, description = "Routed, or (`routed: false`) matched nothing and dropped, there being no alternate exchange", body = Published), (status = 404, body = ErrorBody)))]
async fn publish(
    State(app): State<App>,
    caller: Caller,
    Segments(exchange): Named,
    Body(body): Body<PublishBody>,
) -> Result<Json<Published>, ApiError> {
    let record = body.record.into_record("record")?;
    let command = ExchangeCommand::Publish { exchange, routing_key: body.routing_key, record };
    match app.broker.execute(caller.who.as_ref(), Command::Exchange(command)).future.await {
        Ok(Reply::Published(d)) => {
            Ok(Json(Published { routed: true, destinations: d.iter().map(ToString::to_string).collect() }))
        }
        // The broker's answer to a message nothing took; over HTTP, as RabbitMQ's HTTP API
        // answers it, a success that says it was not routed.
        Err(e) if e.kind() == crate::broker::ErrorKind::Unroutable => {
            Ok(Json(Published { routed: false, destinations: vec![] }))
        }
        Ok(other) => Err(unexpected(other)),
        Err(e) => Err(e.into()),
    }
}

#[utoipa::path(get, path = "/api/v1/pipelines", tag = "pipelines", responses((status = 200, description = "Pipelines with their steps, versions, counters and state", body = [Object])))]
async fn pipelines(State(app): State<App>, caller: Caller) -> Result<Json<Value>, ApiError> {
    match app.run(&caller, Command::Pipeline(PipelineCommand::List)).await? {
        Reply::Pipelines(p) => view(p.into_iter().map(w::PipelineStatus::from).collect::<Vec<_>>()),
        other => Err(unexpected(other)),
    }
}

#[utoipa::path(get, path = "/api/v1/pipelines/{pipeline}", tag = "pipelines", params(("pipeline" = String, Path)), responses((status = 200, body = Object), (status = 404, body = ErrorBody)))]
async fn pipeline(State(app): State<App>, caller: Caller, Segments(name): Named) -> Result<Json<Value>, ApiError> {
    pipeline_view(app.run(&caller, Command::Pipeline(PipelineCommand::Status { name })).await?)
}

fn pipeline_view(reply: Reply) -> Result<Json<Value>, ApiError> {
    match reply {
        Reply::Pipeline(p) => view(w::PipelineStatus::from(p)),
        other => Err(unexpected(other)),
    }
}

/// An empty JSON object: the body of a POST with nothing to say. Its JSON content type is
/// what counts, keeping cross-site forms out.
#[derive(Deserialize, ToSchema, Default)]
#[serde(deny_unknown_fields)]
struct Empty {}

#[utoipa::path(post, path = "/api/v1/pipelines/{pipeline}/pause", tag = "pipelines", params(("pipeline" = String, Path)), request_body = Empty, responses((status = 200, body = Object), (status = 403, body = ErrorBody)))]
async fn pause(
    State(app): State<App>,
    caller: Caller,
    Segments(name): Named,
    OptionalBody(Empty {}): OptionalBody<Empty>,
) -> Result<Json<Value>, ApiError> {
    app.run(&caller, Command::Pipeline(PipelineCommand::Pause { name: name.clone() })).await?;
    pipeline_view(app.run(&caller, Command::Pipeline(PipelineCommand::Status { name })).await?)
}

#[utoipa::path(post, path = "/api/v1/pipelines/{pipeline}/resume", tag = "pipelines", params(("pipeline" = String, Path)), request_body = Empty, responses((status = 200, body = Object), (status = 403, body = ErrorBody)))]
async fn resume(
    State(app): State<App>,
    caller: Caller,
    Segments(name): Named,
    OptionalBody(Empty {}): OptionalBody<Empty>,
) -> Result<Json<Value>, ApiError> {
    app.run(&caller, Command::Pipeline(PipelineCommand::Resume { name: name.clone() })).await?;
    pipeline_view(app.run(&caller, Command::Pipeline(PipelineCommand::Status { name })).await?)
}

#[utoipa::path(get, path = "/api/v1/plugins", tag = "plugins", responses((status = 200, description = "Plugins with live and shadow versions and their users", body = [Object])))]
async fn plugins(State(app): State<App>, caller: Caller) -> Result<Json<Value>, ApiError> {
    match app.run(&caller, Command::Plugin(PluginCommand::List)).await? {
        Reply::Plugins(p) => view(p.into_iter().map(w::PluginEntry::from).collect::<Vec<_>>()),
        other => Err(unexpected(other)),
    }
}

#[utoipa::path(get, path = "/api/v1/plugins/{plugin}/versions", tag = "plugins", params(("plugin" = String, Path)), responses((status = 200, body = [Object]), (status = 404, body = ErrorBody)))]
async fn versions(State(app): State<App>, caller: Caller, Segments(name): Named) -> Result<Json<Value>, ApiError> {
    match app.run(&caller, Command::Plugin(PluginCommand::Versions { name })).await? {
        Reply::PluginVersions(v) => view(v.into_iter().map(w::PluginInfo::from).collect::<Vec<_>>()),
        other => Err(unexpected(other)),
    }
}

#[utoipa::path(get, path = "/api/v1/plugins/{plugin}/diff", tag = "plugins", params(("plugin" = String, Path)), responses((status = 200, description = "How the shadow version compares with the live one", body = Object), (status = 404, body = ErrorBody)))]
async fn diff(State(app): State<App>, caller: Caller, Segments(name): Named) -> Result<Json<Value>, ApiError> {
    match app.run(&caller, Command::Plugin(PluginCommand::Diff { name })).await? {
        Reply::ShadowDiff(d) => view(w::ShadowReport::from(d)),
        other => Err(unexpected(other)),
    }
}

#[utoipa::path(post, path = "/api/v1/plugins/{plugin}/promote", tag = "plugins", params(("plugin" = String, Path)), request_body = Empty, responses((status = 200, description = "The shadow version is live", body = Object), (status = 403, body = ErrorBody)))]
async fn promote(
    State(app): State<App>,
    caller: Caller,
    Segments(name): Named,
    OptionalBody(Empty {}): OptionalBody<Empty>,
) -> Result<Json<Value>, ApiError> {
    plugin_view(app.run(&caller, Command::Plugin(PluginCommand::Promote { name })).await?)
}

/// Which version to make live again.
#[derive(Deserialize, ToSchema, Default)]
#[serde(deny_unknown_fields)]
struct RollbackBody {
    /// Version (default: the one before the live one).
    #[serde(default, deserialize_with = "super::int::opt")]
    #[schema(minimum = 1, maximum = 2147483647)]
    to: Option<u32>,
}

#[utoipa::path(post, path = "/api/v1/plugins/{plugin}/rollback", tag = "plugins", params(("plugin" = String, Path)), request_body = RollbackBody, responses((status = 200, body = Object), (status = 403, body = ErrorBody)))]
async fn rollback(
    State(app): State<App>,
    caller: Caller,
    Segments(name): Named,
    OptionalBody(body): OptionalBody<RollbackBody>,
) -> Result<Json<Value>, ApiError> {
    let to = body.to;
    plugin_view(app.run(&caller, Command::Plugin(PluginCommand::Rollback { name, to })).await?)
}

fn plugin_view(reply: Reply) -> Result<Json<Value>, ApiError> {
    match reply {
        Reply::Plugin(p) => view(w::PluginInfo::from(p)),
        Reply::Done => view(serde_json::json!({})),
        other => Err(unexpected(other)),
    }
}

#[utoipa::path(get, path = "/metrics", tag = "metrics", responses((status = 200, description = "Prometheus text format 0.0.4; needs a token that may read everything (read:*)", content_type = "text/plain")))]
async fn metrics(State(app): State<App>, caller: Caller) -> Result<impl IntoResponse, ApiError> {
    app.broker.authorize_metrics(caller.who.as_deref())?;
    let text = crate::metrics::render(&app.broker).await;
    Ok(([(header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")], text))
}

/// A wire type as JSON: the admin views show what `weir … status` shows.
pub(super) fn view(v: impl Serialize) -> Result<Json<Value>, ApiError> {
    serde_json::to_value(v)
        .map(Json)
        .map_err(|e| ApiError::new(axum::http::StatusCode::INTERNAL_SERVER_ERROR, "Internal", e.to_string()))
}
