//! Plugin lifecycle requests: deploy (live or shadow), rollback, promote, remove, list.
//! Each change is checked against every pipeline that follows the plugin before anything
//! is stored or swapped, so a version that does not start never replaces one that runs.

use super::command::{PluginCommand, PluginEntry, Reply};
use super::{Broker, BrokerError, Result};
use crate::registry::{Placement, PluginInfo, RegistryError};
use crate::runtime::Sandbox;

impl Broker {
    pub(super) async fn plugin_command(&self, command: PluginCommand) -> Result<Reply> {
        Ok(match command {
            PluginCommand::Deploy { name, wasm, sandbox, shadow, upload } => {
                let wasm = match upload {
                    Some(_) if !wasm.is_empty() => {
                        return Err(BrokerError::BadRequest(format!(
                            "deploy of `{name}` names an upload and carries {} bytes too; send one or the other",
                            wasm.len()
                        )));
                    }
                    Some(id) => self.uploads.take(&name, id)?,
                    None => wasm,
                };
                Reply::Plugin(self.deploy(&name, wasm, sandbox, shadow, None).await?)
            }
            PluginCommand::UploadPart { name, upload, offset, total, bytes } => {
                crate::types::check_name("plugin", &name).map_err(|e| BrokerError::BadRequest(e.to_string()))?;
                self.uploads.part(&name, upload, offset, total, &bytes)?;
                Reply::Done
            }
            PluginCommand::List => Reply::Plugins(self.list_plugins()),
            PluginCommand::Versions { name } => {
                let versions = self.registry.versions(&name);
                if versions.is_empty() {
                    return Err(RegistryError::Unknown(name).into());
                }
                Reply::PluginVersions(versions)
            }
            PluginCommand::Describe { reference } => Reply::Plugin(self.registry.resolve(&reference)?),
            PluginCommand::Remove { name } => {
                self.remove_plugin(&name).await?;
                Reply::Done
            }
            PluginCommand::Rollback { name, to } => Reply::Plugin(self.rollback(&name, to).await?),
            PluginCommand::Promote { name } => Reply::Plugin(self.promote(&name).await?),
            PluginCommand::Diff { name } => {
                self.registry.resolve(&name)?;
                let mut report = self.shadow_summed(self.pipelines.shadow_report(&name)).await?;
                report.schema_changes = self.schema_changes(&name).await?;
                Reply::ShadowDiff(report)
            }
        })
    }

    /// Compile and check a new version, store it, then hot-swap it into every following
    /// pipeline step (or start it as the shadow). `number`: the version number the cluster
    /// assigned (`None`: the next one here).
    pub(super) async fn deploy(
        &self,
        name: &str,
        wasm: Vec<u8>,
        sandbox: Sandbox,
        shadow: bool,
        number: Option<u32>,
    ) -> Result<PluginInfo> {
        let _guard = self.registry.deploy_lock().await;
        let live = self.registry.live(name);
        if shadow && live.is_none() {
            return Err(BrokerError::BadRequest(format!(
                "cannot deploy a shadow of `{name}`: it has no live version yet; deploy it without --shadow first"
            )));
        }
        let mut candidate = self.registry.prepare(name, wasm, sandbox).await?;
        if let Some(n) = number {
            if n < candidate.info.version {
                return Err(BrokerError::BadRequest(format!(
                    "`{name}` is at version {} here, past the cluster's {n}",
                    candidate.info.version - 1
                )));
            }
            candidate.info.version = n;
        }
        self.pipelines
            .check_version(&candidate.info, &candidate.loaded)
            .await
            .map_err(|e| refused(&candidate.info, live.as_ref(), e.to_string()))?;
        if !shadow {
            self.check_contracts_of_version(&candidate.info, &candidate.loaded)
                .await
                .map_err(|e| refused(&candidate.info, live.as_ref(), e.to_string()))?;
        }
        let loaded = candidate.loaded.clone();
        let placement = if shadow { Placement::Shadow } else { Placement::Live };
        let info = self.registry.commit(candidate, placement).await?;
        if shadow {
            self.pipelines.set_shadow(name, live.map(|l| l.version), Some((&info, &loaded)));
        } else {
            self.pipelines.swap_live(&info, &loaded);
        }
        tracing::info!(plugin = %info.label(), shadow, "deployed");
        Ok(info)
    }

    /// Make version `to` (default: the highest version below the live one) live again.
    async fn rollback(&self, name: &str, to: Option<u32>) -> Result<PluginInfo> {
        let _guard = self.registry.deploy_lock().await;
        let live = self.registry.live(name).ok_or_else(|| RegistryError::Unknown(name.to_string()))?;
        let target = match to {
            Some(v) => v,
            None => {
                self.registry.versions(name).iter().rev().map(|i| i.version).find(|v| *v < live.version).ok_or_else(
                    || {
                        BrokerError::BadRequest(format!(
                            "{} is the oldest version of `{name}`; there is nothing to roll back to",
                            live.label()
                        ))
                    },
                )?
            }
        };
        self.make_live(name, target, false, live).await
    }

    /// Make the shadow version live and stop shadowing.
    async fn promote(&self, name: &str) -> Result<PluginInfo> {
        let _guard = self.registry.deploy_lock().await;
        let live = self.registry.live(name).ok_or_else(|| RegistryError::Unknown(name.to_string()))?;
        let shadow = self.registry.shadow(name).ok_or_else(|| {
            BrokerError::BadRequest(format!(
                "`{name}` has no shadow version to promote; deploy one with `weir plugin deploy {name} FILE --shadow`"
            ))
        })?;
        let info = self.make_live(name, shadow.version, true, live).await?;
        self.pipelines.set_shadow(name, Some(info.version), None);
        Ok(info)
    }

    async fn make_live(&self, name: &str, version: u32, clear_shadow: bool, live: PluginInfo) -> Result<PluginInfo> {
        let info = self.registry.resolve(&format!("{name}@{version}"))?;
        let registry = self.registry.clone();
        let info_c = info.clone();
        let loaded = tokio::task::spawn_blocking(move || registry.component(&info_c))
            .await
            .map_err(|e| BrokerError::Internal(e.to_string()))??;
        self.pipelines.check_version(&info, &loaded).await.map_err(|e| refused(&info, Some(&live), e.to_string()))?;
        self.check_contracts_of_version(&info, &loaded)
            .await
            .map_err(|e| refused(&info, Some(&live), e.to_string()))?;
        let info = self.registry.set_live(name, version, clear_shadow).await?;
        self.pipelines.swap_live(&info, &loaded);
        tracing::info!(plugin = %info.label(), from = %live.label(), "live version changed");
        Ok(info)
    }

    /// Delete every version of a plugin, unless a pipeline uses it.
    async fn remove_plugin(&self, name: &str) -> Result<()> {
        let _guard = self.registry.deploy_lock().await;
        let users = self.pipelines.users_of(name);
        if !users.is_empty() {
            return Err(BrokerError::InUse(format!(
                "plugin `{name}` is used by pipeline(s) {}; delete them or move them to another plugin first",
                users.join(", ")
            )));
        }
        self.registry.remove(name).await?;
        self.pipelines.set_shadow(name, None, None);
        Ok(())
    }

    fn list_plugins(&self) -> Vec<PluginEntry> {
        self.registry
            .names()
            .into_iter()
            .filter_map(|name| {
                Some(PluginEntry {
                    live: self.registry.live(&name)?,
                    shadow: self.registry.shadow(&name).map(|s| s.version),
                    versions: self.registry.versions(&name).len() as u32,
                    used_by: self.pipelines.users_of(&name),
                })
            })
            .collect()
    }
}

/// A refused change: what was refused, what keeps running, and why.
fn refused(candidate: &PluginInfo, live: Option<&PluginInfo>, why: String) -> BrokerError {
    let keeps = live.map(|l| format!("; {} keeps running", l.label())).unwrap_or_default();
    BrokerError::Refused { candidate: candidate.label(), keeps, why }
}
