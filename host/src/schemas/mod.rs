//! The schema registry: subjects, their versions and globally numbered schemas, kept in the
//! store's metadata (so a cluster shares one registry), with Confluent Schema Registry's
//! semantics — same schema, same id; seven compatibility levels per subject and global;
//! READWRITE, READONLY and IMPORT modes; soft and permanent deletes — and its error codes,
//! because clients branch on them. Doors translate requests into [`crate::broker::Command::Schema`];
//! this module decides and executes them.

mod avro;
#[cfg(test)]
mod cases;
mod compat;
mod declared;
mod format;
mod json;
mod proto;
mod stored;

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use serde::{Deserialize, Serialize};

pub use compat::Compatibility;
pub use declared::{Declared, SchemaRef};
pub use format::{Parsed, Resolved, SchemaType};
use stored::{Keys, SchemaRecord, VersionRecord};

use crate::storage::StoreError;
use crate::store::{MetaWrite, Raw, Store};
use crate::types::{SubjectStrategy, TopicConfig, Validation};

/// The prefix of the registry's subject-version keys (other nodes' changes there are followed).
pub const VERSION_KEYS: &str = stored::Keys::VERSIONS;
/// How many times a registration retries after another writer took its id or version.
const RETRIES: usize = 20;
/// Largest schema text accepted, bytes.
pub const MAX_SCHEMA_BYTES: usize = 1 << 20;
/// Most references one schema may have (directly and through its references).
pub const MAX_REFERENCES: usize = 256;

/// Why a registry request failed, with Confluent's error code.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SchemaError {
    /// 40401.
    #[error("Subject '{0}' not found.")]
    SubjectNotFound(String),
    /// 40402.
    #[error("Version {version} not found for subject '{subject}'.")]
    VersionNotFound {
        /// Subject.
        subject: String,
        /// The version asked for.
        version: String,
    },
    /// 40403.
    #[error("{0}")]
    SchemaNotFound(String),
    /// 40404.
    #[error("Subject '{0}' was soft deleted. Set permanent=true to delete permanently")]
    SubjectSoftDeleted(String),
    /// 40405.
    #[error("Subject '{0}' was not deleted first before being permanently deleted")]
    SubjectNotSoftDeleted(String),
    /// 40406.
    #[error("Version {version} of subject '{subject}' was soft deleted. Set permanent=true to delete permanently")]
    VersionSoftDeleted {
        /// Subject.
        subject: String,
        /// Version.
        version: u32,
    },
    /// 40407.
    #[error("Version {version} of subject '{subject}' was not deleted first before being permanently deleted")]
    VersionNotSoftDeleted {
        /// Subject.
        subject: String,
        /// Version.
        version: u32,
    },
    /// 40408.
    #[error("Subject '{0}' does not have subject-level compatibility configured")]
    SubjectConfigNotFound(String),
    /// 40409.
    #[error("Subject '{0}' does not have subject-level mode configured")]
    SubjectModeNotFound(String),
    /// 409.
    #[error("Schema being registered is incompatible with an earlier schema for subject \"{subject}\", details: [{}]", reasons.join("; "))]
    Incompatible {
        /// Subject.
        subject: String,
        /// Why, per earlier version checked.
        reasons: Vec<String>,
    },
    /// 42201.
    #[error("Invalid schema: {0}")]
    InvalidSchema(String),
    /// 42202.
    #[error(
        "The specified version '{0}' is not a valid version id. Allowed values are between [1, 2^31-1] and the string \"latest\""
    )]
    InvalidVersion(String),
    /// 42203.
    #[error(
        "Invalid compatibility level {0:?}. Valid values are NONE, BACKWARD, BACKWARD_TRANSITIVE, FORWARD, FORWARD_TRANSITIVE, FULL, FULL_TRANSITIVE"
    )]
    InvalidCompatibility(String),
    /// 42204.
    #[error("Invalid mode {0:?}. Valid values are READWRITE, READONLY, IMPORT")]
    InvalidMode(String),
    /// 42205.
    #[error("{0}")]
    NotPermitted(String),
    /// 42206.
    #[error("One or more references exist to the schema {{subject={subject}, version={version}}}: delete those first")]
    ReferenceExists {
        /// Subject.
        subject: String,
        /// Version.
        version: u32,
    },
    /// 42208.
    #[error("Invalid subject {0:?}: 1 to 255 bytes, no control characters")]
    InvalidSubject(String),
    /// 42209.
    #[error("Schema too large: {size} bytes; the limit is {max}")]
    SchemaTooLarge {
        /// Its size.
        size: usize,
        /// The limit.
        max: usize,
    },
    /// 50001.
    #[error("Error in the backend data store: {0}")]
    Store(#[from] StoreError),
}

impl SchemaError {
    /// Confluent's `error_code`.
    pub fn code(&self) -> u32 {
        match self {
            SchemaError::SubjectNotFound(_) => 40401,
            SchemaError::VersionNotFound { .. } => 40402,
            SchemaError::SchemaNotFound(_) => 40403,
            SchemaError::SubjectSoftDeleted(_) => 40404,
            SchemaError::SubjectNotSoftDeleted(_) => 40405,
            SchemaError::VersionSoftDeleted { .. } => 40406,
            SchemaError::VersionNotSoftDeleted { .. } => 40407,
            SchemaError::SubjectConfigNotFound(_) => 40408,
            SchemaError::SubjectModeNotFound(_) => 40409,
            SchemaError::Incompatible { .. } => 409,
            SchemaError::InvalidSchema(_) => 42201,
            SchemaError::InvalidVersion(_) => 42202,
            SchemaError::InvalidCompatibility(_) => 42203,
            SchemaError::InvalidMode(_) => 42204,
            SchemaError::NotPermitted(_) => 42205,
            SchemaError::ReferenceExists { .. } => 42206,
            SchemaError::InvalidSubject(_) => 42208,
            SchemaError::SchemaTooLarge { .. } => 42209,
            SchemaError::Store(_) => 50001,
        }
    }

    /// The HTTP status Confluent answers with it: the code's first three digits.
    pub fn status(&self) -> u16 {
        let code = self.code();
        if code < 1000 { code as u16 } else { (code / 100) as u16 }
    }
}

type Result<T> = std::result::Result<T, SchemaError>;

/// A reference from one schema to another's version.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Reference {
    /// The name the referring schema uses (Avro full name, JSON `$ref`, `.proto` import).
    pub name: String,
    /// The referenced subject.
    pub subject: String,
    /// Its version.
    pub version: u32,
}

/// A schema as clients send and receive it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SchemaText {
    /// Format.
    pub schema_type: SchemaType,
    /// Text.
    pub schema: String,
    /// References.
    pub references: Vec<Reference>,
}

/// A version of a subject.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Registered {
    /// Subject.
    pub subject: String,
    /// Version (from 1).
    pub version: u32,
    /// Global id.
    pub id: u32,
    /// The schema.
    pub schema: SchemaText,
}

/// A version as a request names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VersionSpec {
    /// A number.
    Number(u32),
    /// The newest (also `-1`).
    Latest,
}

impl VersionSpec {
    /// From a path segment: a positive number, `latest` or `-1`.
    pub fn parse(s: &str) -> Result<VersionSpec> {
        match s {
            "latest" | "-1" => Ok(VersionSpec::Latest),
            _ => match s.parse::<u32>() {
                Ok(n) if (1..=i32::MAX as u32).contains(&n) => Ok(VersionSpec::Number(n)),
                _ => Err(SchemaError::InvalidVersion(s.to_string())),
            },
        }
    }
}

/// The registry's modes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum Mode {
    /// Normal operation.
    Readwrite,
    /// Registrations and deletes refused.
    Readonly,
    /// Registrations carry their own ids and versions (migration with ids kept); no checks.
    Import,
}

impl Mode {
    /// From the API's name.
    pub fn parse(s: &str) -> Result<Mode> {
        match s.to_ascii_uppercase().as_str() {
            "READWRITE" => Ok(Mode::Readwrite),
            "READONLY" | "READONLY_OVERRIDE" => Ok(Mode::Readonly),
            "IMPORT" => Ok(Mode::Import),
            _ => Err(SchemaError::InvalidMode(s.to_string())),
        }
    }

    /// The API's name.
    pub fn name(self) -> &'static str {
        match self {
            Mode::Readwrite => "READWRITE",
            Mode::Readonly => "READONLY",
            Mode::Import => "IMPORT",
        }
    }
}

/// A registration request.
#[derive(Debug, Clone)]
pub struct Registration {
    /// The schema.
    pub schema: SchemaText,
    /// IMPORT mode: the id to keep.
    pub id: Option<u32>,
    /// IMPORT mode: the version to keep.
    pub version: Option<u32>,
}

/// The registry over the store's metadata. Schemas by id never change once written, so this
/// node keeps each parsed one it has needed.
pub struct Schemas {
    store: Arc<Store>,
    parsed: RwLock<HashMap<u32, Parsed>>,
    /// `(subject, id)` pairs seen registered, for produce checks; emptied whenever a version
    /// is deleted (here, or by another node: [`Schemas::forget_registrations`]).
    registered: RwLock<std::collections::HashSet<(String, u32)>>,
}

impl Schemas {
    /// The registry kept in `store`.
    pub fn new(store: Arc<Store>) -> Schemas {
        Schemas { store, parsed: RwLock::new(HashMap::new()), registered: RwLock::default() }
    }

    // ---- reading ----

    /// The schema with global id `id`.
    pub async fn by_id(&self, id: u32) -> Result<SchemaText> {
        self.record(id).await?.map(SchemaRecord::into_text).ok_or_else(|| schema_not_found(id))
    }

    /// The parsed schema with id `id` (parsed once per node).
    pub async fn parsed(&self, id: u32) -> Result<Parsed> {
        if let Some(p) = self.parsed.read().expect("parsed schemas").get(&id) {
            return Ok(p.clone());
        }
        let text = self.by_id(id).await?;
        let parsed = self.parse(&text).await?;
        self.parsed.write().expect("parsed schemas").insert(id, parsed.clone());
        Ok(parsed)
    }

    /// Every subject (with `deleted`, also the soft-deleted ones), sorted.
    pub async fn subjects(&self, deleted: bool) -> Result<Vec<String>> {
        let mut out: Vec<String> = Vec::new();
        for (key, v) in self.store.meta_scan::<Raw>(Keys::VERSIONS).await? {
            let (subject, _) = Keys::parse_version(&key)?;
            let v = VersionRecord::decode(&key, &v)?;
            if (deleted || !v.deleted) && out.last() != Some(&subject) {
                out.push(subject);
            }
        }
        out.dedup();
        Ok(out)
    }

    /// The versions of `subject`: `(version, record)` in order, soft-deleted ones included.
    async fn all_versions(&self, subject: &str) -> Result<Vec<(u32, VersionRecord)>> {
        let mut out = Vec::new();
        for (key, v) in self.store.meta_scan::<Raw>(&Keys::subject_prefix(subject)).await? {
            let (_, version) = Keys::parse_version(&key)?;
            out.push((version, VersionRecord::decode(&key, &v)?));
        }
        Ok(out)
    }

    /// The version numbers of `subject` (with `deleted`, also soft-deleted ones).
    pub async fn versions(&self, subject: &str, deleted: bool) -> Result<Vec<u32>> {
        let all = self.all_versions(subject).await?;
        let out: Vec<u32> = all.iter().filter(|(_, v)| deleted || !v.deleted).map(|(n, _)| *n).collect();
        if out.is_empty() {
            return Err(SchemaError::SubjectNotFound(subject.to_string()));
        }
        Ok(out)
    }

    /// One version of `subject` (`deleted`: soft-deleted ones may be named).
    pub async fn version(&self, subject: &str, which: VersionSpec, deleted: bool) -> Result<Registered> {
        let all = self.all_versions(subject).await?;
        let live = |v: &&(u32, VersionRecord)| deleted || !v.1.deleted;
        if !all.iter().any(|v| live(&v)) {
            return Err(SchemaError::SubjectNotFound(subject.to_string()));
        }
        let found = match which {
            VersionSpec::Latest => all.iter().rfind(live),
            VersionSpec::Number(n) => all.iter().filter(live).find(|(v, _)| *v == n),
        };
        let Some((version, record)) = found else {
            let version = match which {
                VersionSpec::Latest => "latest".to_string(),
                VersionSpec::Number(n) => n.to_string(),
            };
            return Err(SchemaError::VersionNotFound { subject: subject.to_string(), version });
        };
        let schema = self.by_id(record.id).await?;
        Ok(Registered { subject: subject.to_string(), version: *version, id: record.id, schema })
    }

    /// The subject and version of every registration of schema `id`.
    pub async fn registrations(&self, id: u32, deleted: bool) -> Result<Vec<(String, u32)>> {
        self.by_id(id).await?;
        let mut out = Vec::new();
        for (key, v) in self.store.meta_scan::<Raw>(Keys::VERSIONS).await? {
            let v = VersionRecord::decode(&key, &v)?;
            if v.id == id && (deleted || !v.deleted) {
                out.push(Keys::parse_version(&key)?);
            }
        }
        Ok(out)
    }

    /// Whether schema `id` is a version (soft-deleted ones too) of `subject`: one subject's
    /// scan, not the registry's.
    pub async fn registered_under(&self, subject: &str, id: u32) -> Result<bool> {
        Ok(self.all_versions(subject).await?.iter().any(|(_, v)| v.id == id))
    }

    /// The ids of schemas that reference `subject`'s `version`.
    pub async fn referenced_by(&self, subject: &str, which: VersionSpec) -> Result<Vec<u32>> {
        let target = self.version(subject, which, false).await?;
        let mut out = Vec::new();
        for (key, v) in self.store.meta_scan::<Raw>(Keys::SCHEMAS).await? {
            let record = SchemaRecord::decode(&key, &v)?;
            if record.references.iter().any(|r| r.subject == subject && r.version == target.version) {
                out.push(Keys::parse_schema(&key)?);
            }
        }
        Ok(out)
    }

    /// The registration of `schema` under `subject`, if it is there.
    pub async fn lookup(&self, subject: &str, schema: &SchemaText, deleted: bool) -> Result<Registered> {
        let all = self.all_versions(subject).await?;
        if !all.iter().any(|(_, v)| deleted || !v.deleted) {
            return Err(SchemaError::SubjectNotFound(subject.to_string()));
        }
        let fingerprint = fingerprint(schema, &self.parse(schema).await?);
        if let Some(id) = self.store.meta_get::<u32>(&Keys::fingerprint(&fingerprint)).await? {
            for (version, v) in all.iter().rev() {
                if v.id == id && (deleted || !v.deleted) {
                    let schema = self.by_id(id).await?;
                    return Ok(Registered { subject: subject.to_string(), version: *version, id, schema });
                }
            }
        }
        Err(SchemaError::SchemaNotFound("Schema not found".to_string()))
    }

    // ---- configuration ----

    /// The compatibility level of `subject` (`None`: the global one); with `fallback`, a
    /// subject without its own gets the global one.
    pub async fn compatibility(&self, subject: Option<&str>, fallback: bool) -> Result<Compatibility> {
        if let Some(s) = subject {
            match self.store.meta_get::<Raw>(&Keys::config(Some(s))).await? {
                Some(raw) => return compat::decode(&raw.0),
                None if !fallback => return Err(SchemaError::SubjectConfigNotFound(s.to_string())),
                None => {}
            }
        }
        match self.store.meta_get::<Raw>(&Keys::config(None)).await? {
            Some(raw) => compat::decode(&raw.0),
            None => Ok(Compatibility::Backward),
        }
    }

    /// Set the level of `subject` (or the global one).
    pub async fn set_compatibility(&self, subject: Option<&str>, level: Compatibility) -> Result<()> {
        self.store.meta_write(vec![MetaWrite::put(Keys::config(subject), &Raw(level.name().into()))]).await?;
        Ok(())
    }

    /// Remove `subject`'s own level (or reset the global one to BACKWARD); the level it had.
    pub async fn delete_compatibility(&self, subject: Option<&str>) -> Result<Compatibility> {
        // Confluent answers a subject without its own level 40401 here.
        let had = self.compatibility(subject, subject.is_none()).await.map_err(|e| match e {
            SchemaError::SubjectConfigNotFound(s) => SchemaError::SubjectNotFound(s),
            e => e,
        })?;
        self.store.meta_write(vec![MetaWrite::delete(Keys::config(subject))]).await?;
        Ok(had)
    }

    /// The mode of `subject` (or the global one); with `fallback`, the global one when the
    /// subject has none.
    pub async fn mode(&self, subject: Option<&str>, fallback: bool) -> Result<Mode> {
        if let Some(s) = subject {
            match self.store.meta_get::<Raw>(&Keys::mode(Some(s))).await? {
                Some(raw) => return Mode::parse(&String::from_utf8_lossy(&raw.0)),
                None if !fallback => return Err(SchemaError::SubjectModeNotFound(s.to_string())),
                None => {}
            }
        }
        match self.store.meta_get::<Raw>(&Keys::mode(None)).await? {
            Some(raw) => Mode::parse(&String::from_utf8_lossy(&raw.0)),
            None => Ok(Mode::Readwrite),
        }
    }

    /// Set the mode of `subject` (or the global one). IMPORT is refused globally while
    /// schemas exist unless `force` (as Confluent does: ids could collide).
    pub async fn set_mode(&self, subject: Option<&str>, mode: Mode, force: bool) -> Result<()> {
        if mode == Mode::Import && !force && !self.subjects(true).await?.is_empty() && subject.is_none() {
            return Err(SchemaError::NotPermitted(
                "Cannot import since found existing subjects; pass force=true to import anyway".into(),
            ));
        }
        self.store.meta_write(vec![MetaWrite::put(Keys::mode(subject), &Raw(mode.name().into()))]).await?;
        Ok(())
    }

    /// Remove `subject`'s own mode; the mode it had.
    pub async fn delete_mode(&self, subject: &str) -> Result<Mode> {
        let had = self.mode(Some(subject), false).await.map_err(|e| match e {
            SchemaError::SubjectModeNotFound(s) => SchemaError::SubjectNotFound(s),
            e => e,
        })?;
        self.store.meta_write(vec![MetaWrite::delete(Keys::mode(Some(subject)))]).await?;
        Ok(had)
    }

    // ---- writing ----

    /// Register `request.schema` under `subject`: its id and version (an equal schema already
    /// registered there returns its registration; an equal schema anywhere else shares its id).
    pub async fn register(&self, subject: &str, request: Registration) -> Result<Registered> {
        check_subject(subject)?;
        let mode = self.mode(Some(subject), true).await?;
        if mode == Mode::Readonly {
            return Err(SchemaError::NotPermitted(format!("Subject {subject} is in read-only mode")));
        }
        if mode != Mode::Import && (request.id.is_some() || request.version.is_some()) {
            return Err(SchemaError::NotPermitted(format!(
                "Subject {subject} is not in import mode: registering with an id or a version needs mode IMPORT"
            )));
        }
        // As Confluent: while importing, only registrations that bring their id, so a
        // producer that auto-registers cannot take an id about to be imported.
        if mode == Mode::Import && request.id.is_none() {
            return Err(SchemaError::NotPermitted(format!(
                "Subject {subject} is in import mode: a registration must carry its id (and version)"
            )));
        }
        let parsed = self.parse(&request.schema).await?;
        let fingerprint = fingerprint(&request.schema, &parsed);
        for _ in 0..RETRIES {
            match self.try_register(subject, &request, &parsed, &fingerprint, mode).await {
                Err(SchemaError::Store(StoreError::Conflict(_))) => continue,
                done => return done,
            }
        }
        Err(SchemaError::Store(StoreError::Conflict(format!(
            "subject {subject} kept changing while registering; try again"
        ))))
    }

    async fn try_register(
        &self,
        subject: &str,
        request: &Registration,
        parsed: &Parsed,
        fingerprint: &str,
        mode: Mode,
    ) -> Result<Registered> {
        let all = self.all_versions(subject).await?;
        let known = self.store.meta_get::<u32>(&Keys::fingerprint(fingerprint)).await?;
        if let Some(id) = known
            && let Some((version, _)) = all.iter().rev().find(|(_, v)| v.id == id && !v.deleted)
            && request.version.is_none_or(|want| want == *version)
        {
            return Ok(Registered { subject: subject.into(), version: *version, id, schema: request.schema.clone() });
        }
        if mode != Mode::Import {
            self.check_against(subject, parsed, &all).await?;
        }
        let mut writes = Vec::new();
        let id = match (known, request.id) {
            (Some(id), None) => id,
            (Some(id), Some(want)) if id == want => id,
            (known, Some(want)) => {
                self.import_id(want, &request.schema, known.is_none(), fingerprint, &mut writes).await?
            }
            (None, None) => {
                let id = self.free_id().await?;
                let record = SchemaRecord::new(&request.schema);
                writes.push(MetaWrite::create(Keys::schema(id), &Raw(record.encode().into())));
                writes.push(MetaWrite::create(Keys::fingerprint(fingerprint), &id));
                id
            }
        };
        let version = match request.version {
            Some(v) if all.iter().any(|(n, _)| *n == v) => {
                return Err(SchemaError::NotPermitted(format!(
                    "version {v} of subject {subject} exists; an import cannot overwrite it"
                )));
            }
            Some(v) => v,
            None => all.last().map_or(1, |(v, _)| v + 1),
        };
        let record = VersionRecord { id, deleted: false };
        writes.push(MetaWrite::create(Keys::version(subject, version), &Raw(record.encode().into())));
        self.store.meta_write(writes).await?;
        Ok(Registered { subject: subject.into(), version, id, schema: request.schema.clone() })
    }

    /// An imported id: free, or already holding this very schema. Another schema under it is
    /// refused (never retried: it will not change). The sequence is raised past it, so ids
    /// taken later never collide with imported ones.
    async fn import_id(
        &self,
        want: u32,
        schema: &SchemaText,
        first: bool,
        fingerprint: &str,
        writes: &mut Vec<MetaWrite>,
    ) -> Result<u32> {
        match self.record(want).await? {
            Some(r) if r.clone().into_text() == *schema => {}
            Some(_) => {
                return Err(SchemaError::NotPermitted(format!(
                    "Overwrite new schema with id {want} is not permitted: id {want} holds another schema"
                )));
            }
            None => {
                writes.push(MetaWrite::create(Keys::schema(want), &Raw(SchemaRecord::new(schema).encode().into())));
                // The first id of a schema is the one lookups answer.
                if first {
                    writes.push(MetaWrite::create(Keys::fingerprint(fingerprint), &want));
                }
            }
        }
        self.store
            .meta_update::<u32, SchemaError>(Keys::ID_SEQ, |n| Ok(Some(n.unwrap_or(1).max(want.saturating_add(1)))))
            .await?;
        Ok(want)
    }

    /// The next id of the sequence that no schema holds (imports may have taken some).
    async fn free_id(&self) -> Result<u32> {
        for _ in 0..RETRIES {
            let id = self.store.next_id(Keys::ID_SEQ).await?;
            if self.record(id).await?.is_none() {
                return Ok(id);
            }
        }
        Err(SchemaError::Store(StoreError::Conflict("no free schema id found; try again".into())))
    }

    /// Refuse `parsed` unless it is compatible with `subject`'s live versions at the
    /// subject's level.
    async fn check_against(&self, subject: &str, parsed: &Parsed, all: &[(u32, VersionRecord)]) -> Result<()> {
        let level = self.compatibility(Some(subject), true).await?;
        let reasons = self.reasons(parsed, all, level).await?;
        if reasons.is_empty() {
            return Ok(());
        }
        Err(SchemaError::Incompatible { subject: subject.to_string(), reasons })
    }

    async fn reasons(
        &self,
        parsed: &Parsed,
        all: &[(u32, VersionRecord)],
        level: Compatibility,
    ) -> Result<Vec<String>> {
        let live: Vec<&(u32, VersionRecord)> = all.iter().filter(|(_, v)| !v.deleted).collect();
        let against: Vec<&(u32, VersionRecord)> =
            if level.transitive() { live } else { live.last().copied().into_iter().collect() };
        let mut reasons = Vec::new();
        for (version, v) in against {
            let earlier = self.parsed(v.id).await?;
            for why in level.check(parsed, &earlier) {
                reasons.push(format!("version {version}: {why}"));
            }
        }
        Ok(reasons)
    }

    /// Whether `schema` is compatible with `subject`'s `which` version (with `Latest`,
    /// transitive levels check every live version): the reasons it is not.
    /// With `every`, against every live version as the subject's level says (transitive:
    /// all of them), as a registration would be checked.
    pub async fn check(
        &self,
        subject: &str,
        which: VersionSpec,
        schema: &SchemaText,
        every: bool,
    ) -> Result<Vec<String>> {
        let parsed = self.parse(schema).await?;
        let level = self.compatibility(Some(subject), true).await?;
        if every {
            let all = self.all_versions(subject).await?;
            return self.reasons(&parsed, &all, level).await;
        }
        // One version named (`latest` too): the level's direction, not its reach.
        let r = self.version(subject, which, false).await?;
        let earlier = self.parsed(r.id).await?;
        Ok(level.check(&parsed, &earlier).into_iter().map(|why| format!("version {}: {why}", r.version)).collect())
    }

    /// Delete one version: soft (it stays for reading by id and with `deleted`), or
    /// permanently after a soft delete. Refused while another schema references it.
    pub async fn delete_version(&self, subject: &str, which: VersionSpec, permanent: bool) -> Result<u32> {
        self.writable(subject).await?;
        let all = self.all_versions(subject).await?;
        if all.is_empty() {
            return Err(SchemaError::SubjectNotFound(subject.to_string()));
        }
        let found = match which {
            VersionSpec::Latest => all.iter().rfind(|(_, v)| permanent || !v.deleted),
            VersionSpec::Number(n) => all.iter().find(|(v, _)| *v == n),
        };
        let Some((version, record)) = found.cloned() else {
            let version = match which {
                VersionSpec::Latest => "latest".to_string(),
                VersionSpec::Number(n) => n.to_string(),
            };
            return Err(SchemaError::VersionNotFound { subject: subject.to_string(), version });
        };
        if !self.referrers(subject, &[version], permanent, None).await?.is_empty() {
            return Err(SchemaError::ReferenceExists { subject: subject.to_string(), version });
        }
        let key = Keys::version(subject, version);
        match (permanent, record.deleted) {
            (false, true) => Err(SchemaError::VersionSoftDeleted { subject: subject.to_string(), version }),
            (true, false) => Err(SchemaError::VersionNotSoftDeleted { subject: subject.to_string(), version }),
            (true, true) => {
                self.store.meta_write(vec![MetaWrite::delete(key)]).await?;
                self.forget_registrations();
                Ok(version)
            }
            (false, false) => {
                let record = VersionRecord { deleted: true, ..record };
                self.store.meta_write(vec![MetaWrite::put(key, &Raw(record.encode().into()))]).await?;
                self.forget_registrations();
                Ok(version)
            }
        }
    }

    /// Delete a subject: soft (every version), or permanently after a soft delete. The
    /// versions deleted.
    pub async fn delete_subject(&self, subject: &str, permanent: bool) -> Result<Vec<u32>> {
        self.writable(subject).await?;
        let all = self.all_versions(subject).await?;
        if all.is_empty() {
            return Err(SchemaError::SubjectNotFound(subject.to_string()));
        }
        let live: Vec<u32> = all.iter().filter(|(_, v)| !v.deleted).map(|(n, _)| *n).collect();
        match (permanent, live.is_empty()) {
            (false, true) => return Err(SchemaError::SubjectSoftDeleted(subject.to_string())),
            (true, false) => return Err(SchemaError::SubjectNotSoftDeleted(subject.to_string())),
            _ => {}
        }
        // References from the subject's own versions go with it.
        let versions: Vec<u32> = all.iter().map(|(n, _)| *n).collect();
        if let Some((version, _)) = self.referrers(subject, &versions, permanent, Some(subject)).await?.first() {
            return Err(SchemaError::ReferenceExists { subject: subject.to_string(), version: *version });
        }
        let writes = all
            .iter()
            .map(|(n, v)| {
                let key = Keys::version(subject, *n);
                if permanent {
                    MetaWrite::delete(key)
                } else {
                    MetaWrite::put(key, &Raw(VersionRecord { deleted: true, ..v.clone() }.encode().into()))
                }
            })
            .chain(permanent.then(|| MetaWrite::delete(Keys::config(Some(subject)))))
            .chain(permanent.then(|| MetaWrite::delete(Keys::mode(Some(subject)))))
            .collect();
        self.store.meta_write(writes).await?;
        self.forget_registrations();
        Ok(if permanent { all.iter().map(|(n, _)| *n).collect() } else { live })
    }

    /// `(version, id)` for each schema still registered (with `soft`, soft-deleted
    /// registrations count too), outside subject `except`, that references one of
    /// `subject`'s `versions`: one scan of the versions and one of the schemas.
    async fn referrers(
        &self,
        subject: &str,
        versions: &[u32],
        soft: bool,
        except: Option<&str>,
    ) -> Result<Vec<(u32, u32)>> {
        let mut registered = std::collections::HashSet::new();
        for (key, v) in self.store.meta_scan::<Raw>(Keys::VERSIONS).await? {
            let record = VersionRecord::decode(&key, &v)?;
            let (owner, _) = Keys::parse_version(&key)?;
            if (soft || !record.deleted) && except != Some(owner.as_str()) {
                registered.insert(record.id);
            }
        }
        let mut out = Vec::new();
        for (key, v) in self.store.meta_scan::<Raw>(Keys::SCHEMAS).await? {
            let id = Keys::parse_schema(&key)?;
            if !registered.contains(&id) {
                continue;
            }
            let record = SchemaRecord::decode(&key, &v)?;
            for r in record.references.iter().filter(|r| r.subject == subject && versions.contains(&r.version)) {
                out.push((r.version, id));
            }
        }
        Ok(out)
    }

    async fn writable(&self, subject: &str) -> Result<()> {
        if self.mode(Some(subject), true).await? == Mode::Readonly {
            return Err(SchemaError::NotPermitted(format!("Subject {subject} is in read-only mode")));
        }
        Ok(())
    }

    // ---- parsing ----

    async fn record(&self, id: u32) -> Result<Option<SchemaRecord>> {
        let key = Keys::schema(id);
        match self.store.meta_get::<Raw>(&key).await? {
            Some(raw) => Ok(Some(SchemaRecord::decode(&key, &raw)?)),
            None => Ok(None),
        }
    }

    /// The texts `schema` references, depth first, each once.
    async fn resolve(&self, schema: &SchemaText) -> Result<Vec<Resolved>> {
        let mut out: Vec<Resolved> = Vec::new();
        let mut seen = std::collections::HashSet::new();
        // A reference is pushed unread, then again with its text once its own references
        // are on the stack above it: out comes depth first, each looked up once.
        let mut stack: Vec<(Reference, Option<String>)> =
            schema.references.iter().rev().map(|r| (r.clone(), None)).collect();
        while let Some((r, text)) = stack.pop() {
            if let Some(text) = text {
                out.push(Resolved { name: r.name, schema: text });
                continue;
            }
            if !seen.insert((r.subject.clone(), r.version)) {
                continue;
            }
            if seen.len() > MAX_REFERENCES {
                return Err(SchemaError::InvalidSchema(format!("more than {MAX_REFERENCES} references")));
            }
            let found = self.version(&r.subject, VersionSpec::Number(r.version), true).await.map_err(|e| {
                SchemaError::InvalidSchema(format!(
                    "reference {:?} to subject {} version {}: {e}",
                    r.name, r.subject, r.version
                ))
            })?;
            let inner: Vec<Reference> = found.schema.references.iter().rev().cloned().collect();
            stack.push((r, Some(found.schema.schema)));
            stack.extend(inner.into_iter().map(|i| (i, None)));
        }
        Ok(out)
    }

    /// Parse a schema with its references.
    /// Parse a schema, resolving its references in the registry.
    pub async fn parse(&self, schema: &SchemaText) -> Result<Parsed> {
        if schema.schema.len() > MAX_SCHEMA_BYTES {
            return Err(SchemaError::SchemaTooLarge { size: schema.schema.len(), max: MAX_SCHEMA_BYTES });
        }
        let refs = self.resolve(schema).await?;
        Parsed::parse(schema.schema_type, &schema.schema, &refs).map_err(SchemaError::InvalidSchema)
    }
}

/// What makes two schemas the same: format, canonical text (of `parsed`, the schema parsed)
/// and references.
fn fingerprint(schema: &SchemaText, parsed: &Parsed) -> String {
    let mut h = blake3::Hasher::new();
    h.update(schema.schema_type.name().as_bytes());
    h.update(&[0]);
    h.update(parsed.canonical().as_bytes());
    for r in &schema.references {
        h.update(&[0]);
        h.update(format!("{}\u{0}{}\u{0}{}", r.name, r.subject, r.version).as_bytes());
    }
    h.finalize().to_hex().to_string()
}

/// Which part of a record a check is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Part {
    /// The key.
    Key,
    /// The value.
    Value,
}

impl Part {
    fn word(self) -> &'static str {
        match self {
            Part::Key => "key",
            Part::Value => "value",
        }
    }
}

/// A record a produce check refused: why, in words a producer can act on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    /// Key or value.
    pub part: Part,
    /// The kind of failure, a fixed word (a metrics label): `framing`,
    /// `unknown-id`, `subject`, `payload`.
    pub class: &'static str,
    /// Why.
    pub reason: String,
}

impl Schemas {
    /// Forget which ids were seen registered under which subjects (a version was deleted).
    pub fn forget_registrations(&self) {
        self.registered.write().expect("registrations").clear();
    }

    /// Check one part of a record produced to `topic` (configured as `config`): Confluent's
    /// framing, the id registered under the part's subject, and with [`Validation::Full`]
    /// the payload decoding with that schema. `Ok(Err(_))`: the record is refused.
    /// `seen` holds the `(part, id)` pairs already found registered under their subject in
    /// this request: a batch's records mostly share one id, and need the lookup once.
    pub async fn check_record(
        &self,
        topic: &str,
        config: &TopicConfig,
        part: Part,
        bytes: Option<&[u8]>,
        seen: &mut Vec<(Part, u32)>,
    ) -> Result<std::result::Result<(), Refusal>> {
        let configured = match part {
            Part::Key => config.key_schema.as_deref(),
            Part::Value => config.value_schema.as_deref(),
        };
        let Some(configured) = configured.filter(|_| config.validation != Validation::None) else { return Ok(Ok(())) };
        let refuse = |class: &'static str, reason: String| Ok(Err(Refusal { part, class, reason }));
        // A null key or value (a tombstone, a keyless record) carries no schema: Confluent's
        // serializers write null for None. The Kafka door gives a null value as empty.
        let Some(bytes) = bytes.filter(|b| !b.is_empty()) else { return Ok(Ok(())) };
        let Some((id, rest)) = unframe(bytes) else {
            return refuse(
                "framing",
                format!(
                    "the {} is not in Confluent's framing (byte 0, a 4-byte schema id, the payload): serialize it with a schema registry serializer",
                    part.word()
                ),
            );
        };
        // Under the record strategies a subject depends on the message, not only the id.
        let known = config.subject_strategy == SubjectStrategy::TopicName && seen.contains(&(part, id));
        if known && config.validation == Validation::Id {
            return Ok(Ok(()));
        }
        let parsed = match self.parsed(id).await {
            Ok(p) => p,
            Err(SchemaError::SchemaNotFound(_)) => {
                return refuse("unknown-id", format!("schema id {id} is not registered"));
            }
            Err(e) => return Err(e),
        };
        let (message, payload) = match parsed.kind() {
            SchemaType::Protobuf => match message_indexes(rest) {
                Some(found) => found,
                None => {
                    return refuse("framing", format!("the {}'s Protobuf message indexes are malformed", part.word()));
                }
            },
            _ => (Vec::new(), rest),
        };
        let subject = match (config.subject_strategy, configured) {
            (SubjectStrategy::TopicName, "") => format!("{topic}-{}", part.word()),
            (SubjectStrategy::TopicName, s) => s.to_string(),
            (strategy, _) => {
                let Some(name) = parsed.record_name(&message) else {
                    return refuse(
                        "subject",
                        format!("schema id {id} has no record name for the record naming strategy"),
                    );
                };
                if strategy == SubjectStrategy::RecordName { name } else { format!("{topic}-{name}") }
            }
        };
        if !known {
            if !self.is_registered(&subject, id).await? {
                return refuse("subject", format!("schema id {id} is not registered under subject `{subject}`"));
            }
            seen.push((part, id));
        }
        if config.validation == Validation::Full
            && let Err(why) = parsed.validate(payload, &message)
        {
            return refuse(
                "payload",
                format!("the {} does not match schema id {id} of `{subject}`: {why}", part.word()),
            );
        }
        Ok(Ok(()))
    }

    async fn is_registered(&self, subject: &str, id: u32) -> Result<bool> {
        let pair = (subject.to_string(), id);
        if self.registered.read().expect("registrations").contains(&pair) {
            return Ok(true);
        }
        let found = self.all_versions(subject).await?.iter().any(|(_, v)| v.id == id && !v.deleted);
        if found {
            self.registered.write().expect("registrations").insert(pair);
        }
        Ok(found)
    }
}

/// `(schema id, the rest)` of a Confluent-framed part: magic byte 0, then the id big-endian.
fn unframe(bytes: &[u8]) -> Option<(u32, &[u8])> {
    if bytes.len() < 5 || bytes[0] != 0 {
        return None;
    }
    Some((u32::from_be_bytes(bytes[1..5].try_into().ok()?), &bytes[5..]))
}

/// A Protobuf payload's message indexes (zigzag varints: a count, then the path; a count of
/// 0 means `[0]`, the first message) and the message after them.
fn message_indexes(bytes: &[u8]) -> Option<(Vec<i32>, &[u8])> {
    fn varint(bytes: &[u8]) -> Option<(i64, &[u8])> {
        let mut value: u64 = 0;
        for (i, b) in bytes.iter().enumerate().take(10) {
            value |= u64::from(b & 0x7f) << (7 * i);
            if b & 0x80 == 0 {
                let zigzag = ((value >> 1) as i64) ^ -((value & 1) as i64);
                return Some((zigzag, &bytes[i + 1..]));
            }
        }
        None
    }
    let (count, mut rest) = varint(bytes)?;
    if count == 0 {
        return Some((vec![0], rest));
    }
    // Nesting deeper than this is no schema anyone wrote: refuse rather than allocate.
    if !(1..=64).contains(&count) {
        return None;
    }
    let mut path = Vec::with_capacity(count as usize);
    for _ in 0..count {
        let (i, after) = varint(rest)?;
        path.push(i32::try_from(i).ok()?);
        rest = after;
    }
    Some((path, rest))
}

fn schema_not_found(id: u32) -> SchemaError {
    SchemaError::SchemaNotFound(format!("Schema {id} not found"))
}

/// Subjects are any non-empty text up to 255 bytes without control characters.
fn check_subject(subject: &str) -> Result<()> {
    if subject.is_empty() || subject.len() > 255 || subject.chars().any(char::is_control) {
        return Err(SchemaError::InvalidSubject(subject.to_string()));
    }
    Ok(())
}
