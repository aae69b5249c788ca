//! The plugin registry: every deployed version of every plugin, immutable once written,
//! stored durably in the `meta` column family with the component bytes beside it.
//!
//! Keys: `plugin/<name>/<version, 10 digits>` → [`PluginInfo`]; `blob/<hash>` → component.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

use serde::{Deserialize, Serialize};

use crate::runtime::{LoadedPlugin, PluginError, Runtime, Sandbox, WORLD};
use crate::storage::{Store, StoreError};
use crate::types::{check_name, now_ms};

/// One immutable version of a plugin.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PluginInfo {
    /// Plugin name.
    pub name: String,
    /// 1, 2, 3, … per name.
    pub version: u32,
    /// blake3 of the component, hex.
    pub hash: String,
    /// Component size in bytes.
    pub size: u64,
    /// The WIT world it implements.
    pub world: String,
    /// Deploy time, ms since the Unix epoch.
    pub deployed_ms: u64,
    /// Its limits and grants.
    pub sandbox: Sandbox,
}

impl PluginInfo {
    /// `name@version`.
    pub fn label(&self) -> String {
        format!("{}@{}", self.name, self.version)
    }
}

/// Why a registry operation failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RegistryError {
    /// No such plugin or version.
    #[error("unknown plugin `{0}`: deploy it with `weir plugin deploy {name} FILE.wasm`", name = .0.split('@').next().unwrap_or(""))]
    Unknown(String),
    /// The name or reference is malformed.
    #[error("{0}")]
    Invalid(String),
    /// The component was rejected.
    #[error("cannot deploy plugin `{name}`: {source}")]
    Plugin {
        /// Plugin name.
        name: String,
        /// Why.
        source: PluginError,
    },
    /// Storage failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// The registry. Versions are read from the store at open; components are compiled (or
/// loaded from the compiled cache) on first use.
pub struct Registry {
    store: Arc<Store>,
    runtime: Arc<Runtime>,
    inner: Mutex<Inner>,
}

#[derive(Default)]
struct Inner {
    versions: BTreeMap<String, Vec<PluginInfo>>,
    loaded: HashMap<String, LoadedPlugin>,
}

impl Registry {
    /// Read every stored version.
    pub fn open(store: Arc<Store>, runtime: Arc<Runtime>) -> Result<Registry, RegistryError> {
        let mut inner = Inner::default();
        for (key, value) in store.meta_scan("plugin/")? {
            let info: PluginInfo =
                rmp_serde::from_slice(&value).map_err(|e| StoreError::Corrupt {
                    what: key.clone(),
                    why: e.to_string(),
                })?;
            inner
                .versions
                .entry(info.name.clone())
                .or_default()
                .push(info);
        }
        Ok(Registry {
            store,
            runtime,
            inner: Mutex::new(inner),
        })
    }

    /// Validate, compile and durably store a new version of `name`.
    pub async fn deploy(
        &self,
        name: &str,
        wasm: Vec<u8>,
        sandbox: Sandbox,
    ) -> Result<PluginInfo, RegistryError> {
        check_name("plugin", name).map_err(RegistryError::Invalid)?;
        if wasm.len() > crate::limits::MAX_PLUGIN_BYTES {
            return Err(RegistryError::Invalid(format!(
                "component of {} bytes exceeds the {}-byte limit",
                wasm.len(),
                crate::limits::MAX_PLUGIN_BYTES
            )));
        }
        let runtime = self.runtime.clone();
        let (loaded, wasm) =
            tokio::task::spawn_blocking(move || runtime.load(&wasm).map(|l| (l, wasm)))
                .await
                .map_err(|e| RegistryError::Invalid(format!("compilation task failed: {e}")))?
                .map_err(|source| RegistryError::Plugin {
                    name: name.to_string(),
                    source,
                })?;
        let mut info = PluginInfo {
            name: name.to_string(),
            version: 0,
            hash: loaded.hash.clone(),
            size: wasm.len() as u64,
            world: WORLD.to_string(),
            deployed_ms: now_ms(),
            sandbox,
        };
        // Version numbers are assigned under the lock, and the write finishes before the
        // next deploy of the same name can read the latest.
        let _guard = DEPLOY_LOCK.lock().await;
        info.version = self.latest(name).map_or(1, |l| l.version + 1);
        let encoded =
            rmp_serde::to_vec_named(&info).map_err(|e| RegistryError::Invalid(e.to_string()))?;
        let blob_key = format!("blob/{}", info.hash);
        let mut writes = vec![(version_key(name, info.version), Some(encoded))];
        if self.store.meta_get(&blob_key)?.is_none() {
            writes.push((blob_key, Some(wasm)));
        }
        self.store.meta_write(writes).await?;
        let mut inner = self.inner.lock().expect("registry lock");
        inner.loaded.insert(info.hash.clone(), loaded);
        inner
            .versions
            .entry(name.to_string())
            .or_default()
            .push(info.clone());
        Ok(info)
    }

    /// The latest version of `name`.
    pub fn latest(&self, name: &str) -> Option<PluginInfo> {
        self.inner
            .lock()
            .expect("registry lock")
            .versions
            .get(name)
            .and_then(|v| v.last().cloned())
    }

    /// Every version of `name`, oldest first.
    pub fn versions(&self, name: &str) -> Vec<PluginInfo> {
        self.inner
            .lock()
            .expect("registry lock")
            .versions
            .get(name)
            .cloned()
            .unwrap_or_default()
    }

    /// The latest version of every plugin.
    pub fn list(&self) -> Vec<PluginInfo> {
        self.inner
            .lock()
            .expect("registry lock")
            .versions
            .values()
            .filter_map(|v| v.last().cloned())
            .collect()
    }

    /// Resolve `NAME` (latest) or `NAME@V` to a version.
    pub fn resolve(&self, reference: &str) -> Result<PluginInfo, RegistryError> {
        let (name, version) = parse_reference(reference)?;
        let inner = self.inner.lock().expect("registry lock");
        let versions = inner
            .versions
            .get(name)
            .ok_or_else(|| RegistryError::Unknown(name.to_string()))?;
        match version {
            None => versions.last().cloned(),
            Some(v) => versions.iter().find(|i| i.version == v).cloned(),
        }
        .ok_or_else(|| RegistryError::Unknown(reference.to_string()))
    }

    /// The compiled component of a version (compiling or loading it from cache if needed).
    /// CPU-heavy on first use: call from a blocking context.
    pub fn component(&self, info: &PluginInfo) -> Result<LoadedPlugin, RegistryError> {
        if let Some(l) = self
            .inner
            .lock()
            .expect("registry lock")
            .loaded
            .get(&info.hash)
        {
            return Ok(l.clone());
        }
        let wasm = self
            .store
            .meta_get(&format!("blob/{}", info.hash))?
            .ok_or_else(|| StoreError::Corrupt {
                what: info.label(),
                why: "component bytes missing".into(),
            })?;
        let loaded = self
            .runtime
            .load(&wasm)
            .map_err(|source| RegistryError::Plugin {
                name: info.name.clone(),
                source,
            })?;
        self.inner
            .lock()
            .expect("registry lock")
            .loaded
            .insert(info.hash.clone(), loaded.clone());
        Ok(loaded)
    }

    /// The runtime components are instantiated in.
    pub fn runtime(&self) -> &Arc<Runtime> {
        &self.runtime
    }
}

/// Serialises version assignment across concurrent deploys.
static DEPLOY_LOCK: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

fn version_key(name: &str, version: u32) -> String {
    format!("plugin/{name}/{version:010}")
}

/// Split `NAME` or `NAME@V`.
pub fn parse_reference(reference: &str) -> Result<(&str, Option<u32>), RegistryError> {
    match reference.split_once('@') {
        None => Ok((reference, None)),
        Some((name, v)) => v.parse::<u32>().map(|v| (name, Some(v))).map_err(|_| {
            RegistryError::Invalid(format!(
                "invalid plugin reference {reference:?}: use NAME or NAME@VERSION (a number)"
            ))
        }),
    }
}
