//! Schema contracts of a pipeline, checked before anything runs: the source topic's value
//! schema must be readable by the first step, each step's declared output by the next step,
//! and the last step's output must fit the sink topic's subject under that subject's
//! compatibility level. Checked at `pipeline create` and `apply`, and for every pipeline a
//! new live version (deploy, promote, rollback) would run in, so a plugin's breaking change
//! never reaches a running pipeline. Not checked: a link where either side declares nothing,
//! and a subject that evolves later (a registration knows nothing of pipelines; the
//! subject's own compatibility level is what guards its readers then).

use super::{Broker, BrokerError, Result};
use crate::pipeline::PipelineSpec;
use crate::registry::PluginInfo;
use crate::runtime::LoadedPlugin;
use crate::schemas::{Declared, Parsed, SchemaError, SchemaRef, SchemaText, VersionSpec};
use crate::types::SubjectStrategy;

/// A schema on one side of a link, and how to name it in a refusal.
struct Side {
    what: String,
    text: SchemaText,
    parsed: Parsed,
}

impl Broker {
    /// Refuse `spec` when a declared schema does not fit its neighbour. `swap`: a version
    /// about to become live, standing in for every step that follows its plugin.
    pub(super) async fn check_contracts(
        &self,
        spec: &PipelineSpec,
        swap: Option<(&PluginInfo, &LoadedPlugin)>,
    ) -> Result<()> {
        let mut upstream = match spec.source.topic() {
            Some(topic) => self.topic_side(topic, "the source topic").await?,
            None => None,
        };
        for (i, step) in spec.steps.iter().enumerate() {
            let (label, declared) = self.declared(step, swap).await?;
            let name = format!("step {} (`{label}`)", i + 1);
            let declared = declared.unwrap_or_default();
            if let (Some(up), Some(reads)) = (&upstream, &declared.reads) {
                let reader = self.side(reads, &format!("what {name} reads")).await.map_err(|e| refuse(spec, e))?;
                let reasons = reader.parsed.can_read(&up.parsed);
                if !reasons.is_empty() {
                    return Err(refuse(
                        spec,
                        format!(
                            "{name} cannot read {}: its declared input, {}, says: {}",
                            up.what,
                            reads.describe(),
                            reasons.join("; ")
                        ),
                    ));
                }
            }
            upstream = match &declared.writes {
                Some(w) => Some(self.side(w, &format!("what {name} writes")).await.map_err(|e| refuse(spec, e))?),
                None => None,
            };
        }
        let (Some(out), Some(subject)) = (upstream, self.value_subject(&spec.sink).await?) else { return Ok(()) };
        let level = self.schemas.compatibility(Some(&subject), true).await?;
        let reasons = match self.schemas.check(&subject, VersionSpec::Latest, &out.text, true).await {
            Ok(r) => r,
            Err(SchemaError::SubjectNotFound(_)) => return Ok(()),
            Err(e) => return Err(e.into()),
        };
        if reasons.is_empty() {
            return Ok(());
        }
        Err(refuse(
            spec,
            format!(
                "{} does not fit the sink topic `{}`'s subject `{subject}` under {}: {}",
                out.what,
                spec.sink,
                level.name(),
                reasons.join("; ")
            ),
        ))
    }

    /// Check every pipeline that follows `info`'s plugin as if `info` were live in it.
    pub(super) async fn check_contracts_of_version(&self, info: &PluginInfo, loaded: &LoadedPlugin) -> Result<()> {
        for spec in self.pipelines.follower_specs(&info.name) {
            self.check_contracts(&spec, Some((info, loaded))).await?;
        }
        Ok(())
    }

    /// How the shadow version of `name` declares other schemas than the live one (one line
    /// per direction that changed), then whether promoting it would pass the checks a deploy
    /// passes in every pipeline it would run in.
    pub(super) async fn schema_changes(&self, name: &str) -> Result<Vec<String>> {
        let (Some(live), Some(shadow)) = (self.registry.live(name), self.registry.shadow(name)) else {
            return Ok(Vec::new());
        };
        let old = self.loaded_declared(live).await?;
        let registry = self.registry.clone();
        let info = shadow.clone();
        let loaded = tokio::task::spawn_blocking(move || registry.component(&info))
            .await
            .map_err(|e| BrokerError::Internal(e.to_string()))??;
        let new = loaded.declared.as_deref().cloned().unwrap_or_default();
        let name = |r: &Option<SchemaRef>| r.as_ref().map_or_else(|| "nothing declared".into(), SchemaRef::describe);
        let mut lines: Vec<String> = [("reads", &old.reads, &new.reads), ("writes", &old.writes, &new.writes)]
            .into_iter()
            .filter(|(_, a, b)| a != b)
            .map(|(direction, a, b)| format!("{direction}: {} → {}", name(a), name(b)))
            .collect();
        if lines.is_empty() {
            return Ok(lines);
        }
        lines.push(match self.check_contracts_of_version(&shadow, &loaded).await {
            Ok(()) => "promoting it passes the schema checks of every pipeline it would run in".to_string(),
            Err(e) => format!("promoting it would be refused: {e}"),
        });
        Ok(lines)
    }

    async fn loaded_declared(&self, info: PluginInfo) -> Result<Declared> {
        let registry = self.registry.clone();
        let loaded = tokio::task::spawn_blocking(move || registry.component(&info))
            .await
            .map_err(|e| BrokerError::Internal(e.to_string()))??;
        Ok(loaded.declared.as_deref().cloned().unwrap_or_default())
    }

    /// The version a step runs (or `swap`, if it follows that plugin) and its declarations.
    async fn declared(
        &self,
        step: &crate::pipeline::StepSpec,
        swap: Option<(&PluginInfo, &LoadedPlugin)>,
    ) -> Result<(String, Option<std::sync::Arc<Declared>>)> {
        if let Some((info, loaded)) = swap
            && step.plugin_name() == info.name
            && !step.is_pinned()
        {
            return Ok((info.label(), loaded.declared.clone()));
        }
        let info = self.registry.resolve(&step.plugin)?;
        let label = info.label();
        let declared = self.loaded_declared(info).await?;
        Ok((label, (!declared.is_empty()).then(|| std::sync::Arc::new(declared))))
    }

    /// The latest value schema of `topic`'s subject, if it has one.
    async fn topic_side(&self, topic: &str, role: &str) -> Result<Option<Side>> {
        let Some(subject) = self.value_subject(topic).await? else { return Ok(None) };
        let r = match self.schemas.version(&subject, VersionSpec::Latest, false).await {
            Ok(r) => r,
            Err(SchemaError::SubjectNotFound(_) | SchemaError::VersionNotFound { .. }) => return Ok(None),
            Err(e) => return Err(e.into()),
        };
        let parsed = self.schemas.parsed(r.id).await?;
        let what = format!("{role} `{topic}` (subject `{subject}` version {})", r.version);
        Ok(Some(Side { what, text: r.schema, parsed }))
    }

    /// The value subject of `topic` under the topic-name strategy (the record strategies
    /// name a subject per record, so they give none to check a chain against).
    async fn value_subject(&self, topic: &str) -> Result<Option<String>> {
        let topic = match self.store.find_topic(topic).await {
            Ok(t) => t,
            Err(crate::storage::StoreError::UnknownTopic(_)) => return Ok(None),
            Err(e) => return Err(e.into()),
        };
        Ok(match (&topic.config.value_schema, topic.config.subject_strategy) {
            (Some(s), SubjectStrategy::TopicName) if s.is_empty() => Some(format!("{}-value", topic.name)),
            (Some(s), SubjectStrategy::TopicName) => Some(s.clone()),
            _ => None,
        })
    }

    /// A declared schema, read from the registry or parsed inline.
    async fn side(&self, r: &SchemaRef, what: &str) -> std::result::Result<Side, String> {
        let unusable = |e: SchemaError| format!("{what}, {}, cannot be used: {e}", r.describe());
        if let Some(text) = r.inline()? {
            let parsed = self.schemas.parse(&text).await.map_err(unusable)?;
            return Ok(Side { what: what.to_string(), text, parsed });
        }
        let SchemaRef::Subject { subject, version } = r else { unreachable!("inline handled above") };
        let which = version.map_or(VersionSpec::Latest, VersionSpec::Number);
        let found = self.schemas.version(subject, which, false).await.map_err(unusable)?;
        let parsed = self.schemas.parsed(found.id).await.map_err(unusable)?;
        Ok(Side { what: format!("{what} (subject `{subject}` version {})", found.version), text: found.schema, parsed })
    }
}

/// A chain refused, naming the pipeline.
fn refuse(spec: &PipelineSpec, why: String) -> BrokerError {
    BrokerError::Incompatible(format!("pipeline `{}`: {why}", spec.name))
}
