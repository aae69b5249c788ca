//! Confluent Schema Registry's REST API on the HTTP door, at the root paths its clients use
//! (`/subjects`, `/schemas`, `/config`, `/mode`, `/compatibility`): each request becomes one
//! [`SchemaCommand`], and answers carry Confluent's media type and error bodies
//! (`{"error_code", "message"}`), because clients branch on the codes.

use axum::extract::rejection::{JsonRejection, PathRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{Value, json};

use super::{App, Caller};
use crate::broker::{BrokerError, Command, ErrorKind, Reply, SchemaCommand as S, SchemaReply as R};
use crate::schemas::{Compatibility, Mode, Reference, Registered, Registration, SchemaText, SchemaType, VersionSpec};

/// Confluent's media type, on every answer.
const MEDIA_TYPE: &str = "application/vnd.schemaregistry.v1+json";

/// The registry's routes.
pub(super) fn router() -> Router<App> {
    Router::new()
        .route("/subjects", get(subjects))
        .route("/subjects/{subject}", post(lookup).delete(delete_subject))
        .route("/subjects/{subject}/versions", post(register).get(versions))
        .route("/subjects/{subject}/versions/{version}", get(version).delete(delete_version))
        .route("/subjects/{subject}/versions/{version}/schema", get(version_schema))
        .route("/subjects/{subject}/versions/{version}/referencedby", get(referenced_by))
        .route("/schemas/types", get(types))
        .route("/schemas/ids/{id}", get(by_id))
        .route("/schemas/ids/{id}/schema", get(by_id_schema))
        .route("/schemas/ids/{id}/subjects", get(id_subjects))
        .route("/schemas/ids/{id}/versions", get(id_versions))
        .route("/compatibility/subjects/{subject}/versions", post(check_all))
        .route("/compatibility/subjects/{subject}/versions/{version}", post(check))
        .route("/config", get(global_config).put(set_global_config).delete(delete_global_config))
        .route("/config/{subject}", get(config).put(set_config).delete(delete_config))
        .route("/mode", get(global_mode).put(set_global_mode))
        .route("/mode/{subject}", get(mode).put(set_mode).delete(delete_mode))
}

/// An answer with Confluent's media type.
struct Sr(StatusCode, Value);

impl IntoResponse for Sr {
    fn into_response(self) -> Response {
        let mut r = (self.0, Json(self.1)).into_response();
        r.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static(MEDIA_TYPE));
        r
    }
}

fn ok(v: Value) -> Result<Sr, Sr> {
    Ok(Sr(StatusCode::OK, v))
}

/// An error body: `{"error_code", "message"}` with the status its code implies.
fn error(status: StatusCode, code: u32, message: impl Into<String>) -> Sr {
    Sr(status, json!({"error_code": code, "message": message.into()}))
}

impl From<BrokerError> for Sr {
    fn from(e: BrokerError) -> Sr {
        if let BrokerError::Schema(s) = &e {
            let status = StatusCode::from_u16(s.status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            return error(status, s.code(), s.to_string());
        }
        let (status, code) = match e.kind() {
            ErrorKind::Unauthenticated => (StatusCode::UNAUTHORIZED, 40101),
            ErrorKind::Forbidden => (StatusCode::FORBIDDEN, 40301),
            ErrorKind::InvalidArgument => (StatusCode::UNPROCESSABLE_ENTITY, 42200),
            ErrorKind::Timeout => (StatusCode::INTERNAL_SERVER_ERROR, 50002),
            _ => (StatusCode::INTERNAL_SERVER_ERROR, 50001),
        };
        error(status, code, e.to_string())
    }
}

impl From<super::ApiError> for Sr {
    fn from(e: super::ApiError) -> Sr {
        let code = u32::from(e.status.as_u16()) * 100 + 1;
        error(e.status, code, e.message)
    }
}

impl From<JsonRejection> for Sr {
    fn from(r: JsonRejection) -> Sr {
        error(StatusCode::UNPROCESSABLE_ENTITY, 42201, format!("{}; the body must be a JSON object", r.body_text()))
    }
}

impl From<QueryRejection> for Sr {
    fn from(r: QueryRejection) -> Sr {
        error(StatusCode::BAD_REQUEST, 40001, r.body_text())
    }
}

impl From<PathRejection> for Sr {
    fn from(r: PathRejection) -> Sr {
        error(StatusCode::NOT_FOUND, 40401, r.body_text())
    }
}

async fn run(app: &App, caller: &Caller, command: S) -> Result<R, Sr> {
    match app.broker.execute(caller.who.as_ref(), Command::Schema(command)).future.await? {
        Reply::Schema(r) => Ok(r),
        other => Err(error(StatusCode::INTERNAL_SERVER_ERROR, 50001, format!("unexpected reply {other:?}"))),
    }
}

type Answer = Result<Sr, Sr>;

/// Query flags the routes share.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Flags {
    #[serde(default, deserialize_with = "flag")]
    deleted: bool,
    #[serde(default, deserialize_with = "flag")]
    permanent: bool,
    #[serde(default, deserialize_with = "flag")]
    verbose: bool,
    #[serde(default, deserialize_with = "flag")]
    force: bool,
    #[serde(default, deserialize_with = "flag")]
    default_to_global: bool,
    #[serde(default, deserialize_with = "flag")]
    #[allow(dead_code)] // accepted: weir's canonical forms already make formatting not matter
    normalize: bool,
    subject_prefix: Option<String>,
    subject: Option<String>,
    format: Option<String>,
}

/// A query flag: `true`/`false` in any case (Confluent's Python client sends `False`).
fn flag<'de, D: serde::Deserializer<'de>>(d: D) -> Result<bool, D::Error> {
    let s = String::deserialize(d)?;
    match s.to_ascii_lowercase().as_str() {
        "true" => Ok(true),
        "false" => Ok(false),
        _ => Err(serde::de::Error::custom(format!("`{s}` is not true or false"))),
    }
}

/// A schema as clients send it.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct SchemaBody {
    schema: String,
    schema_type: Option<String>,
    #[serde(default)]
    references: Vec<Reference>,
    id: Option<u32>,
    version: Option<u32>,
}

impl SchemaBody {
    fn text(&self) -> Result<SchemaText, Sr> {
        let schema_type = match &self.schema_type {
            None => SchemaType::Avro,
            Some(t) => SchemaType::parse(t).ok_or_else(|| {
                error(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    42201,
                    format!("Invalid schema type {t:?}: use AVRO, JSON or PROTOBUF"),
                )
            })?,
        };
        Ok(SchemaText { schema_type, schema: self.schema.clone(), references: self.references.clone() })
    }
}

fn body(b: Result<Json<SchemaBody>, JsonRejection>) -> Result<SchemaBody, Sr> {
    Ok(b?.0)
}

fn version_of(s: &str) -> Result<VersionSpec, Sr> {
    VersionSpec::parse(s).map_err(|e| error(StatusCode::UNPROCESSABLE_ENTITY, e.code(), e.to_string()))
}

fn schema_json(s: &SchemaText) -> serde_json::Map<String, Value> {
    let mut m = serde_json::Map::new();
    if s.schema_type != SchemaType::Avro {
        m.insert("schemaType".into(), json!(s.schema_type.name()));
    }
    m.insert("schema".into(), json!(s.schema));
    if !s.references.is_empty() {
        m.insert("references".into(), json!(s.references));
    }
    m
}

fn registered_json(r: &Registered) -> Value {
    let mut m = serde_json::Map::new();
    m.insert("subject".into(), json!(r.subject));
    m.insert("version".into(), json!(r.version));
    m.insert("id".into(), json!(r.id));
    m.extend(schema_json(&r.schema));
    Value::Object(m)
}

async fn subjects(State(app): State<App>, caller: Caller, q: Result<Query<Flags>, QueryRejection>) -> Answer {
    let q = q?.0;
    match run(&app, &caller, S::Subjects { deleted: q.deleted, prefix: q.subject_prefix }).await? {
        R::Subjects(s) => ok(json!(s)),
        other => Err(unexpected(other)),
    }
}

async fn register(
    State(app): State<App>,
    caller: Caller,
    Path(subject): Path<String>,
    b: Result<Json<SchemaBody>, JsonRejection>,
) -> Answer {
    let b = body(b)?;
    let registration = Registration { schema: b.text()?, id: b.id, version: b.version };
    match run(&app, &caller, S::Register { subject, registration }).await? {
        R::Registered(r) => ok(json!({"id": r.id, "version": r.version})),
        other => Err(unexpected(other)),
    }
}

async fn lookup(
    State(app): State<App>,
    caller: Caller,
    Path(subject): Path<String>,
    q: Result<Query<Flags>, QueryRejection>,
    b: Result<Json<SchemaBody>, JsonRejection>,
) -> Answer {
    let (q, b) = (q?.0, body(b)?);
    match run(&app, &caller, S::Lookup { subject, schema: b.text()?, deleted: q.deleted }).await? {
        R::Registered(r) => ok(registered_json(&r)),
        other => Err(unexpected(other)),
    }
}

async fn versions(
    State(app): State<App>,
    caller: Caller,
    Path(subject): Path<String>,
    q: Result<Query<Flags>, QueryRejection>,
) -> Answer {
    match run(&app, &caller, S::Versions { subject, deleted: q?.0.deleted }).await? {
        R::Numbers(v) => ok(json!(v)),
        other => Err(unexpected(other)),
    }
}

async fn one_version(
    app: &App,
    caller: &Caller,
    subject: String,
    version: &str,
    deleted: bool,
) -> Result<Registered, Sr> {
    let version = version_of(version)?;
    match run(app, caller, S::Version { subject, version, deleted }).await? {
        R::Registered(r) => Ok(r),
        other => Err(unexpected(other)),
    }
}

async fn version(
    State(app): State<App>,
    caller: Caller,
    Path((subject, v)): Path<(String, String)>,
    q: Result<Query<Flags>, QueryRejection>,
) -> Answer {
    let q = q?.0;
    let mut r = one_version(&app, &caller, subject, &v, q.deleted).await?;
    serialized(&app, &mut r.schema, r.id, q.format.as_deref()).await?;
    ok(registered_json(&r))
}

async fn version_schema(
    State(app): State<App>,
    caller: Caller,
    Path((subject, v)): Path<(String, String)>,
    q: Result<Query<Flags>, QueryRejection>,
) -> Answer {
    let r = one_version(&app, &caller, subject, &v, q?.0.deleted).await?;
    raw_schema(&r.schema.schema)
}

/// `…/schema`: the schema itself as the body (JSON schemas as JSON, others as a string).
fn raw_schema(text: &str) -> Answer {
    ok(serde_json::from_str(text).unwrap_or_else(|_| json!(text)))
}

async fn referenced_by(State(app): State<App>, caller: Caller, Path((subject, v)): Path<(String, String)>) -> Answer {
    let version = version_of(&v)?;
    match run(&app, &caller, S::ReferencedBy { subject, version }).await? {
        R::Numbers(ids) => ok(json!(ids)),
        other => Err(unexpected(other)),
    }
}

async fn delete_subject(
    State(app): State<App>,
    caller: Caller,
    Path(subject): Path<String>,
    q: Result<Query<Flags>, QueryRejection>,
) -> Answer {
    match run(&app, &caller, S::DeleteSubject { subject, permanent: q?.0.permanent }).await? {
        R::Numbers(v) => ok(json!(v)),
        other => Err(unexpected(other)),
    }
}

async fn delete_version(
    State(app): State<App>,
    caller: Caller,
    Path((subject, v)): Path<(String, String)>,
    q: Result<Query<Flags>, QueryRejection>,
) -> Answer {
    let version = version_of(&v)?;
    match run(&app, &caller, S::DeleteVersion { subject, version, permanent: q?.0.permanent }).await? {
        R::Numbers(v) => ok(json!(v.first())),
        other => Err(unexpected(other)),
    }
}

async fn types() -> Answer {
    ok(json!(["JSON", "PROTOBUF", "AVRO"]))
}

fn id_of(id: &str) -> Result<u32, Sr> {
    id.parse().map_err(|_| error(StatusCode::NOT_FOUND, 40403, format!("Schema {id} not found")))
}

async fn schema_by_id(app: &App, caller: &Caller, id: &str, subject: Option<String>) -> Result<SchemaText, Sr> {
    match run(app, caller, S::ById { id: id_of(id)?, subject }).await? {
        R::Schema(s) => Ok(s),
        other => Err(unexpected(other)),
    }
}

async fn by_id(
    State(app): State<App>,
    caller: Caller,
    Path(id): Path<String>,
    q: Result<Query<Flags>, QueryRejection>,
) -> Answer {
    let q = q?.0;
    let mut s = schema_by_id(&app, &caller, &id, q.subject).await?;
    serialized(&app, &mut s, id_of(&id)?, q.format.as_deref()).await?;
    ok(Value::Object(schema_json(&s)))
}

/// `?format=serialized`: a Protobuf schema as a base64 `FileDescriptorProto`, which
/// Confluent's Protobuf serializers and deserializers ask for (their references too).
async fn serialized(app: &App, s: &mut SchemaText, id: u32, format: Option<&str>) -> Result<(), Sr> {
    if s.schema_type == SchemaType::Protobuf && format == Some("serialized") {
        let parsed = app.broker.schemas.parsed(id).await.map_err(|e| Sr::from(BrokerError::Schema(e)))?;
        if let crate::schemas::Parsed::Protobuf(p) = parsed {
            s.schema = p.serialized();
        }
    }
    Ok(())
}

async fn by_id_schema(
    State(app): State<App>,
    caller: Caller,
    Path(id): Path<String>,
    q: Result<Query<Flags>, QueryRejection>,
) -> Answer {
    raw_schema(&schema_by_id(&app, &caller, &id, q?.0.subject).await?.schema)
}

async fn registrations(app: &App, caller: &Caller, id: &str, deleted: bool) -> Result<Vec<(String, u32)>, Sr> {
    match run(app, caller, S::Registrations { id: id_of(id)?, deleted }).await? {
        R::Registrations(r) => Ok(r),
        other => Err(unexpected(other)),
    }
}

async fn id_subjects(
    State(app): State<App>,
    caller: Caller,
    Path(id): Path<String>,
    q: Result<Query<Flags>, QueryRejection>,
) -> Answer {
    let mut subjects: Vec<String> =
        registrations(&app, &caller, &id, q?.0.deleted).await?.into_iter().map(|r| r.0).collect();
    subjects.dedup();
    ok(json!(subjects))
}

async fn id_versions(
    State(app): State<App>,
    caller: Caller,
    Path(id): Path<String>,
    q: Result<Query<Flags>, QueryRejection>,
) -> Answer {
    let r = registrations(&app, &caller, &id, q?.0.deleted).await?;
    ok(json!(
        r.into_iter().map(|(subject, version)| json!({"subject": subject, "version": version})).collect::<Vec<_>>()
    ))
}

async fn compatibility(
    app: &App,
    caller: &Caller,
    subject: String,
    version: Option<VersionSpec>,
    b: SchemaBody,
    verbose: bool,
) -> Answer {
    // Without a version: every version the subject's level reaches, as a registration would be.
    let (version, every) = (version.unwrap_or(VersionSpec::Latest), version.is_none());
    match run(app, caller, S::Check { subject, version, schema: b.text()?, every }).await? {
        R::Reasons(reasons) if verbose => ok(json!({"is_compatible": reasons.is_empty(), "messages": reasons})),
        R::Reasons(reasons) => ok(json!({"is_compatible": reasons.is_empty()})),
        other => Err(unexpected(other)),
    }
}

async fn check(
    State(app): State<App>,
    caller: Caller,
    Path((subject, v)): Path<(String, String)>,
    q: Result<Query<Flags>, QueryRejection>,
    b: Result<Json<SchemaBody>, JsonRejection>,
) -> Answer {
    let version = version_of(&v)?;
    compatibility(&app, &caller, subject, Some(version), body(b)?, q?.0.verbose).await
}

async fn check_all(
    State(app): State<App>,
    caller: Caller,
    Path(subject): Path<String>,
    q: Result<Query<Flags>, QueryRejection>,
    b: Result<Json<SchemaBody>, JsonRejection>,
) -> Answer {
    compatibility(&app, &caller, subject, None, body(b)?, q?.0.verbose).await
}

/// A `PUT /config` body.
#[derive(Debug, Deserialize)]
struct ConfigBody {
    compatibility: String,
}

async fn get_config(app: &App, caller: &Caller, subject: Option<String>, fallback: bool) -> Answer {
    match run(app, caller, S::GetConfig { subject, fallback }).await? {
        R::Compatibility(c) => ok(json!({"compatibilityLevel": c.name()})),
        other => Err(unexpected(other)),
    }
}

async fn put_config(
    app: &App,
    caller: &Caller,
    subject: Option<String>,
    b: Result<Json<ConfigBody>, JsonRejection>,
) -> Answer {
    let level = b?.0.compatibility;
    let level =
        Compatibility::parse(&level).map_err(|e| error(StatusCode::UNPROCESSABLE_ENTITY, e.code(), e.to_string()))?;
    match run(app, caller, S::SetConfig { subject, level }).await? {
        R::Compatibility(c) => ok(json!({"compatibility": c.name()})),
        other => Err(unexpected(other)),
    }
}

async fn drop_config(app: &App, caller: &Caller, subject: Option<String>) -> Answer {
    match run(app, caller, S::DeleteConfig { subject }).await? {
        R::Compatibility(c) => ok(json!({"compatibilityLevel": c.name()})),
        other => Err(unexpected(other)),
    }
}

async fn global_config(State(app): State<App>, caller: Caller) -> Answer {
    get_config(&app, &caller, None, true).await
}

async fn set_global_config(
    State(app): State<App>,
    caller: Caller,
    b: Result<Json<ConfigBody>, JsonRejection>,
) -> Answer {
    put_config(&app, &caller, None, b).await
}

async fn delete_global_config(State(app): State<App>, caller: Caller) -> Answer {
    drop_config(&app, &caller, None).await
}

async fn config(
    State(app): State<App>,
    caller: Caller,
    Path(subject): Path<String>,
    q: Result<Query<Flags>, QueryRejection>,
) -> Answer {
    get_config(&app, &caller, Some(subject), q?.0.default_to_global).await
}

async fn set_config(
    State(app): State<App>,
    caller: Caller,
    Path(subject): Path<String>,
    b: Result<Json<ConfigBody>, JsonRejection>,
) -> Answer {
    put_config(&app, &caller, Some(subject), b).await
}

async fn delete_config(State(app): State<App>, caller: Caller, Path(subject): Path<String>) -> Answer {
    drop_config(&app, &caller, Some(subject)).await
}

/// A `PUT /mode` body.
#[derive(Debug, Deserialize)]
struct ModeBody {
    mode: String,
}

async fn get_mode(app: &App, caller: &Caller, subject: Option<String>, fallback: bool) -> Answer {
    match run(app, caller, S::GetMode { subject, fallback }).await? {
        R::Mode(m) => ok(json!({"mode": m.name()})),
        other => Err(unexpected(other)),
    }
}

async fn put_mode(
    app: &App,
    caller: &Caller,
    subject: Option<String>,
    force: bool,
    b: Result<Json<ModeBody>, JsonRejection>,
) -> Answer {
    let mode = Mode::parse(&b?.0.mode).map_err(|e| error(StatusCode::UNPROCESSABLE_ENTITY, e.code(), e.to_string()))?;
    match run(app, caller, S::SetMode { subject, mode, force }).await? {
        R::Mode(m) => ok(json!({"mode": m.name()})),
        other => Err(unexpected(other)),
    }
}

async fn global_mode(State(app): State<App>, caller: Caller) -> Answer {
    get_mode(&app, &caller, None, true).await
}

async fn set_global_mode(
    State(app): State<App>,
    caller: Caller,
    q: Result<Query<Flags>, QueryRejection>,
    b: Result<Json<ModeBody>, JsonRejection>,
) -> Answer {
    put_mode(&app, &caller, None, q?.0.force, b).await
}

async fn mode(
    State(app): State<App>,
    caller: Caller,
    Path(subject): Path<String>,
    q: Result<Query<Flags>, QueryRejection>,
) -> Answer {
    get_mode(&app, &caller, Some(subject), q?.0.default_to_global).await
}

async fn set_mode(
    State(app): State<App>,
    caller: Caller,
    Path(subject): Path<String>,
    q: Result<Query<Flags>, QueryRejection>,
    b: Result<Json<ModeBody>, JsonRejection>,
) -> Answer {
    put_mode(&app, &caller, Some(subject), q?.0.force, b).await
}

async fn delete_mode(State(app): State<App>, caller: Caller, Path(subject): Path<String>) -> Answer {
    match run(&app, &caller, S::DeleteMode { subject }).await? {
        R::Mode(m) => ok(json!({"mode": m.name()})),
        other => Err(unexpected(other)),
    }
}

fn unexpected(reply: R) -> Sr {
    error(StatusCode::INTERNAL_SERVER_ERROR, 50001, format!("unexpected reply {reply:?}"))
}
