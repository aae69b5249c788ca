//! Schema registry commands: each runs on the registry ([`crate::schemas`]), which decides
//! and executes; the access check before it ([`super::access`]) decided who may ask.

use super::command::{SchemaCommand, SchemaReply};
use super::{Broker, BrokerError, Result};
use crate::schemas::SchemaError;

impl Broker {
    pub(super) async fn schema_command(&self, command: SchemaCommand) -> Result<SchemaReply> {
        use SchemaCommand as S;
        use SchemaReply as R;
        let r = &self.schemas;
        Ok(match command {
            S::Register { subject, registration } => R::Registered(r.register(&subject, registration).await?),
            S::Lookup { subject, schema, deleted } => R::Registered(r.lookup(&subject, &schema, deleted).await?),
            S::Subjects { deleted, prefix } => {
                let mut all = r.subjects(deleted).await?;
                if let Some(p) = prefix {
                    all.retain(|s| s.starts_with(&p));
                }
                R::Subjects(all)
            }
            S::Versions { subject, deleted } => R::Numbers(r.versions(&subject, deleted).await?),
            S::Version { subject, version, deleted } => R::Registered(r.version(&subject, version, deleted).await?),
            S::ReferencedBy { subject, version } => R::Numbers(r.referenced_by(&subject, version).await?),
            S::ById { id, subject } => {
                // A caller naming a subject was granted that subject: the schema must be one
                // of its versions, or naming it would show any schema.
                if let Some(s) = &subject
                    && !r.registered_under(s, id).await?
                {
                    return Err(BrokerError::Schema(SchemaError::SchemaNotFound(format!(
                        "Schema {id} not found under subject {s}"
                    ))));
                }
                R::Schema(r.by_id(id).await?)
            }
            S::Registrations { id, deleted } => R::Registrations(r.registrations(id, deleted).await?),
            S::Check { subject, version, schema, every } => {
                R::Reasons(r.check(&subject, version, &schema, every).await?)
            }
            S::DeleteVersion { subject, version, permanent } => {
                R::Numbers(vec![r.delete_version(&subject, version, permanent).await?])
            }
            S::DeleteSubject { subject, permanent } => R::Numbers(r.delete_subject(&subject, permanent).await?),
            S::GetConfig { subject, fallback } => {
                R::Compatibility(r.compatibility(subject.as_deref(), fallback).await?)
            }
            S::SetConfig { subject, level } => {
                r.set_compatibility(subject.as_deref(), level).await?;
                R::Compatibility(level)
            }
            S::DeleteConfig { subject } => R::Compatibility(r.delete_compatibility(subject.as_deref()).await?),
            S::GetMode { subject, fallback } => R::Mode(r.mode(subject.as_deref(), fallback).await?),
            S::SetMode { subject, mode, force } => {
                r.set_mode(subject.as_deref(), mode, force).await?;
                R::Mode(mode)
            }
            S::DeleteMode { subject } => R::Mode(r.delete_mode(&subject).await?),
        })
    }
}
