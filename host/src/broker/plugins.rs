//! Plugin lifecycle requests: deploy (live or shadow), rollback, promote, remove, list.
//! Each change is checked against every pipeline that follows the plugin before anything
//! is stored or swapped, so a version that does not start never replaces one that runs.

use crate::registry::{Placement, RegistryError};
use crate::runtime::Sandbox;
use crate::wire::{ErrorCode, PluginEntry, PluginInfo, WireError};

use super::{Broker, registry_error};

impl Broker {
    /// Compile and check a new version, store it, then hot-swap it into every following
    /// pipeline step (or start it as the shadow).
    pub(super) async fn deploy(
        &self,
        name: &str,
        wasm: Vec<u8>,
        sandbox: Sandbox,
        shadow: bool,
    ) -> Result<PluginInfo, WireError> {
        let _guard = self.registry.deploy_lock().await;
        let live = self.registry.live(name);
        if shadow && live.is_none() {
            return Err(WireError::invalid(format!(
                "cannot deploy a shadow of `{name}`: it has no live version yet; deploy it without --shadow first"
            )));
        }
        let candidate = self.registry.prepare(name, wasm, sandbox).await.map_err(registry_error)?;
        self.pipelines
            .check_version(&candidate.info, &candidate.loaded)
            .await
            .map_err(|e| refused(&candidate.info, live.as_ref(), e))?;
        let loaded = candidate.loaded.clone();
        let placement = if shadow { Placement::Shadow } else { Placement::Live };
        let info = self.registry.commit(candidate, placement).await.map_err(registry_error)?;
        if shadow {
            self.pipelines.set_shadow(name, live.map(|l| l.version), Some((&info, &loaded)));
        } else {
            self.pipelines.swap_live(&info, &loaded);
        }
        tracing::info!(plugin = %info.label(), shadow, "deployed");
        Ok(info)
    }

    /// Make version `to` (default: the highest version below the live one) live again.
    pub(super) async fn rollback(&self, name: &str, to: Option<u32>) -> Result<PluginInfo, WireError> {
        let _guard = self.registry.deploy_lock().await;
        let live = self.registry.live(name).ok_or_else(|| registry_error(RegistryError::Unknown(name.to_string())))?;
        let target = match to {
            Some(v) => v,
            None => {
                self.registry.versions(name).iter().rev().map(|i| i.version).find(|v| *v < live.version).ok_or_else(
                    || {
                        WireError::invalid(format!(
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
    pub(super) async fn promote(&self, name: &str) -> Result<PluginInfo, WireError> {
        let _guard = self.registry.deploy_lock().await;
        let live = self.registry.live(name).ok_or_else(|| registry_error(RegistryError::Unknown(name.to_string())))?;
        let shadow = self.registry.shadow(name).ok_or_else(|| {
            WireError::invalid(format!(
                "`{name}` has no shadow version to promote; deploy one with `weir plugin deploy {name} FILE --shadow`"
            ))
        })?;
        let info = self.make_live(name, shadow.version, true, live).await?;
        self.pipelines.set_shadow(name, Some(info.version), None);
        Ok(info)
    }

    async fn make_live(
        &self,
        name: &str,
        version: u32,
        clear_shadow: bool,
        live: PluginInfo,
    ) -> Result<PluginInfo, WireError> {
        let info = self.registry.resolve(&format!("{name}@{version}")).map_err(registry_error)?;
        let registry = self.registry.clone();
        let info_c = info.clone();
        let loaded = tokio::task::spawn_blocking(move || registry.component(&info_c))
            .await
            .map_err(|e| WireError::new(ErrorCode::Internal, e.to_string()))?
            .map_err(registry_error)?;
        self.pipelines.check_version(&info, &loaded).await.map_err(|e| refused(&info, Some(&live), e))?;
        let info = self.registry.set_live(name, version, clear_shadow).await.map_err(registry_error)?;
        self.pipelines.swap_live(&info, &loaded);
        tracing::info!(plugin = %info.label(), from = %live.label(), "live version changed");
        Ok(info)
    }

    /// Delete every version of a plugin, unless a pipeline uses it.
    pub(super) async fn remove_plugin(&self, name: &str) -> Result<(), WireError> {
        let _guard = self.registry.deploy_lock().await;
        let users = self.pipelines.users_of(name);
        if !users.is_empty() {
            return Err(WireError::new(
                ErrorCode::InUse,
                format!(
                    "plugin `{name}` is used by pipeline(s) {}; delete them or move them to another plugin first",
                    users.join(", ")
                ),
            ));
        }
        self.registry.remove(name).await.map_err(registry_error)?;
        self.pipelines.set_shadow(name, None, None);
        Ok(())
    }

    pub(super) fn list_plugins(&self) -> Vec<PluginEntry> {
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
fn refused(candidate: &PluginInfo, live: Option<&PluginInfo>, why: String) -> WireError {
    let keeps = live.map(|l| format!("; {} keeps running", l.label())).unwrap_or_default();
    WireError::new(ErrorCode::PluginInit, format!("{} refused{keeps}: {why}", candidate.label()))
}
