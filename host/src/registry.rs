//! The plugin registry: every deployed version of every plugin, immutable once written,
//! stored durably in the `meta` column family with the component bytes beside it.
//!
//! Keys ([`keys::meta`]): a record per version, the component bytes by hash, and the live and
//! shadow pointers.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

use crate::cluster::wire;
use crate::mirror::mirror;
use crate::runtime::{LoadedPlugin, PluginError, Runtime, Sandbox};
use crate::storage::{StoreError, keys, stored};
use crate::store::{MetaWrite, Raw, Store, record};
use crate::types::{check_name, now_ms};

/// One immutable version of a plugin.
#[derive(Debug, Clone, PartialEq, Eq)]
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

mirror!(stored::PluginV1 => PluginInfo { name, version, hash, size, world, deployed_ms, sandbox: into });
mirror!(stored::SandboxV1 => Sandbox {
    memory_bytes, cpu_ms_per_batch, output_bytes_per_batch, state_value_bytes, state_bytes_per_batch,
    log_lines_per_s, allow_clock, allow_env
});
mirror!(wire::PluginC1 => PluginInfo { name, version, hash, size, world, deployed_ms, sandbox: into });
mirror!(wire::SandboxC1 => Sandbox {
    memory_bytes, cpu_ms_per_batch, output_bytes_per_batch, state_value_bytes, state_bytes_per_batch,
    log_lines_per_s, allow_clock, allow_env
});
record!(PluginInfo => stored::PluginV1, wire::PluginC1);

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
///
/// Each plugin has a *live* version — what `NAME` resolves to and what unpinned pipeline
/// steps run — and at most one *shadow* version, run beside the live one without emitting.
/// A plain deploy makes the new version live; `--shadow` makes it the shadow; rollback and
/// promote move the live pointer. Pointers are stored as `plugin-live/<name>` and
/// `plugin-shadow/<name>`.
pub struct Registry {
    store: Arc<Store>,
    runtime: Arc<Runtime>,
    inner: Mutex<Inner>,
    /// Serialises deploys, rollbacks and promotions.
    deploy: tokio::sync::Mutex<()>,
}

#[derive(Default)]
struct Inner {
    versions: BTreeMap<String, Vec<PluginInfo>>,
    live: BTreeMap<String, u32>,
    shadow: BTreeMap<String, u32>,
    loaded: HashMap<String, LoadedPlugin>,
}

/// A compiled, validated new version that is not yet stored: the caller checks it against
/// the pipelines that will run it, then [`Registry::commit`]s it.
pub struct Candidate {
    /// The version it will get.
    pub info: PluginInfo,
    /// Its compiled component.
    pub loaded: LoadedPlugin,
    wasm: Vec<u8>,
}

/// Where a committed version goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Placement {
    /// It becomes the live version.
    Live,
    /// It becomes the shadow version; the live one stays.
    Shadow,
}

impl Registry {
    /// Read every stored version and pointer.
    pub async fn open(store: Arc<Store>, runtime: Arc<Runtime>) -> Result<Registry, RegistryError> {
        let mut inner = Inner::default();
        for (_, info) in store.meta_scan::<PluginInfo>(keys::meta::PLUGINS).await? {
            inner.versions.entry(info.name.clone()).or_default().push(info);
        }
        for (prefix, map) in [(keys::meta::LIVE, &mut inner.live), (keys::meta::SHADOW, &mut inner.shadow)] {
            for (key, v) in store.meta_scan::<u32>(prefix).await? {
                map.insert(key[prefix.len()..].to_string(), v);
            }
        }
        Ok(Registry { store, runtime, inner: Mutex::new(inner), deploy: tokio::sync::Mutex::new(()) })
    }

    /// Read `name`'s versions and pointers again from the store (another node changed them)
    /// and say how its live and shadow versions moved.
    pub async fn follow(&self, name: &str) -> Result<PluginChange, RegistryError> {
        let prefix = format!("{}{name}/", keys::meta::PLUGINS);
        let versions: Vec<PluginInfo> = self.store.meta_scan(&prefix).await?.into_iter().map(|(_, i)| i).collect();
        let live = self.store.meta_get::<u32>(&keys::meta::live(name)).await?;
        let shadow = self.store.meta_get::<u32>(&keys::meta::shadow(name)).await?;
        let (was_live, was_shadow) = (self.live(name), self.shadow(name));
        {
            let mut inner = self.inner.lock().expect("registry lock");
            let set = |map: &mut BTreeMap<String, u32>, v: Option<u32>| match v {
                Some(v) => map.insert(name.to_string(), v),
                None => map.remove(name),
            };
            set(&mut inner.live, live);
            set(&mut inner.shadow, shadow);
            if versions.is_empty() {
                inner.versions.remove(name);
            } else {
                inner.versions.insert(name.to_string(), versions);
            }
        }
        Ok(PluginChange { was_live, live: self.live(name), was_shadow, shadow: self.shadow(name) })
    }

    /// Validate and compile a new version of `name` without storing it. Callers hold
    /// [`Registry::deploy_lock`] from here until [`Registry::commit`].
    pub async fn prepare(&self, name: &str, wasm: Vec<u8>, sandbox: Sandbox) -> Result<Candidate, RegistryError> {
        check_name("plugin", name).map_err(|e| RegistryError::Invalid(e.to_string()))?;
        check_sandbox(&sandbox).map_err(RegistryError::Invalid)?;
        if wasm.len() > crate::limits::MAX_PLUGIN_BYTES {
            return Err(RegistryError::Invalid(format!(
                "component of {} bytes exceeds the {}-byte limit",
                wasm.len(),
                crate::limits::MAX_PLUGIN_BYTES
            )));
        }
        let runtime = self.runtime.clone();
        let (loaded, wasm) = tokio::task::spawn_blocking(move || runtime.load(&wasm).map(|l| (l, wasm)))
            .await
            .map_err(|e| RegistryError::Invalid(format!("compilation task failed: {e}")))?
            .map_err(|source| RegistryError::Plugin { name: name.to_string(), source })?;
        let version = self.versions(name).last().map_or(1, |l| l.version + 1);
        let info = PluginInfo {
            name: name.to_string(),
            version,
            hash: loaded.hash.clone(),
            size: wasm.len() as u64,
            world: loaded.world().to_string(),
            deployed_ms: now_ms(),
            sandbox,
        };
        Ok(Candidate { info, loaded, wasm })
    }

    /// Durably store a prepared version and place it as live or shadow.
    pub async fn commit(&self, candidate: Candidate, placement: Placement) -> Result<PluginInfo, RegistryError> {
        let Candidate { info, loaded, wasm } = candidate;
        // The version's number is taken with a create: two deploys at once on two nodes of a
        // cluster cannot both get it.
        let writes = vec![
            MetaWrite::put(keys::meta::blob(&info.hash), &Raw(wasm.into())),
            MetaWrite::create(keys::meta::plugin_version(&info.name, info.version), &info),
            pointer(placement, &info.name, Some(info.version)),
        ];
        self.store.meta_write(writes).await.map_err(|e| match e {
            StoreError::Conflict(_) => RegistryError::Invalid(format!(
                "another deploy of `{}` took version {} at the same moment; deploy again",
                info.name, info.version
            )),
            e => e.into(),
        })?;
        let mut inner = self.inner.lock().expect("registry lock");
        inner.loaded.insert(info.hash.clone(), loaded);
        inner.versions.entry(info.name.clone()).or_default().push(info.clone());
        match placement {
            Placement::Live => inner.live.insert(info.name.clone(), info.version),
            Placement::Shadow => inner.shadow.insert(info.name.clone(), info.version),
        };
        Ok(info)
    }

    /// Validate, compile, store and make live — for callers with no pipelines to check.
    pub async fn deploy(&self, name: &str, wasm: Vec<u8>, sandbox: Sandbox) -> Result<PluginInfo, RegistryError> {
        let _guard = self.deploy_lock().await;
        let candidate = self.prepare(name, wasm, sandbox).await?;
        self.commit(candidate, Placement::Live).await
    }

    /// Serialises deploys, rollbacks and promotions, so version numbers and pointers are
    /// assigned one change at a time.
    pub async fn deploy_lock(&self) -> tokio::sync::MutexGuard<'_, ()> {
        self.deploy.lock().await
    }

    /// Move the live pointer of `name` to `version` (rollback), or to the shadow (promote,
    /// which also clears the shadow). Returns the new live version.
    pub async fn set_live(&self, name: &str, version: u32, clear_shadow: bool) -> Result<PluginInfo, RegistryError> {
        let info = self.resolve(&format!("{name}@{version}"))?;
        let mut writes = vec![pointer(Placement::Live, name, Some(version))];
        if clear_shadow {
            writes.push(pointer(Placement::Shadow, name, None));
        }
        self.store.meta_write(writes).await?;
        let mut inner = self.inner.lock().expect("registry lock");
        inner.live.insert(name.to_string(), version);
        if clear_shadow {
            inner.shadow.remove(name);
        }
        Ok(info)
    }

    /// Forget the shadow version of `name`.
    pub async fn clear_shadow(&self, name: &str) -> Result<(), RegistryError> {
        self.store.meta_write(vec![pointer(Placement::Shadow, name, None)]).await?;
        self.inner.lock().expect("registry lock").shadow.remove(name);
        Ok(())
    }

    /// Delete every version of `name` (callers check that no pipeline uses it).
    pub async fn remove(&self, name: &str) -> Result<Vec<PluginInfo>, RegistryError> {
        let versions = self.versions(name);
        if versions.is_empty() {
            return Err(RegistryError::Unknown(name.to_string()));
        }
        let still_used: std::collections::HashSet<String> = self
            .inner
            .lock()
            .expect("registry lock")
            .versions
            .iter()
            .filter(|(n, _)| n.as_str() != name)
            .flat_map(|(_, v)| v.iter().map(|i| i.hash.clone()))
            .collect();
        let mut writes: Vec<MetaWrite> =
            versions.iter().map(|v| MetaWrite::delete(keys::meta::plugin_version(name, v.version))).collect();
        writes.push(pointer(Placement::Live, name, None));
        writes.push(pointer(Placement::Shadow, name, None));
        for hash in versions.iter().map(|v| &v.hash).collect::<std::collections::BTreeSet<_>>() {
            if !still_used.contains(hash) {
                writes.push(MetaWrite::delete(keys::meta::blob(hash)));
            }
        }
        self.store.meta_write(writes).await?;
        let mut inner = self.inner.lock().expect("registry lock");
        inner.versions.remove(name);
        inner.live.remove(name);
        inner.shadow.remove(name);
        Ok(versions)
    }

    /// The live version of `name`.
    pub fn live(&self, name: &str) -> Option<PluginInfo> {
        self.resolve(name).ok()
    }

    /// The shadow version of `name`, if one is deployed.
    pub fn shadow(&self, name: &str) -> Option<PluginInfo> {
        let inner = self.inner.lock().expect("registry lock");
        let v = *inner.shadow.get(name)?;
        inner.versions.get(name)?.iter().find(|i| i.version == v).cloned()
    }

    /// Every version of `name`, oldest first.
    pub fn versions(&self, name: &str) -> Vec<PluginInfo> {
        self.inner.lock().expect("registry lock").versions.get(name).cloned().unwrap_or_default()
    }

    /// Names of every plugin.
    pub fn names(&self) -> Vec<String> {
        self.inner.lock().expect("registry lock").versions.keys().cloned().collect()
    }

    /// Resolve `NAME` (the live version) or `NAME@V` to a version.
    pub fn resolve(&self, reference: &str) -> Result<PluginInfo, RegistryError> {
        let (name, version) = parse_reference(reference)?;
        let inner = self.inner.lock().expect("registry lock");
        let versions = inner.versions.get(name).ok_or_else(|| RegistryError::Unknown(name.to_string()))?;
        let wanted = version.or_else(|| inner.live.get(name).copied());
        match wanted {
            None => versions.last().cloned(),
            Some(v) => versions.iter().find(|i| i.version == v).cloned(),
        }
        .ok_or_else(|| RegistryError::Unknown(reference.to_string()))
    }

    /// The compiled component of a version (compiling or loading it from cache if needed).
    /// CPU-heavy on first use: call from a blocking context.
    pub fn component(&self, info: &PluginInfo) -> Result<LoadedPlugin, RegistryError> {
        if let Some(l) = self.inner.lock().expect("registry lock").loaded.get(&info.hash) {
            return Ok(l.clone());
        }
        let wasm = self
            .store
            .meta_get_now::<Raw>(&keys::meta::blob(&info.hash))?
            .ok_or_else(|| StoreError::Corrupt { what: info.label(), why: "component bytes missing".into() })?
            .0;
        let loaded =
            self.runtime.load(&wasm).map_err(|source| RegistryError::Plugin { name: info.name.clone(), source })?;
        self.inner.lock().expect("registry lock").loaded.insert(info.hash.clone(), loaded.clone());
        Ok(loaded)
    }

    /// The runtime components are instantiated in.
    pub fn runtime(&self) -> &Arc<Runtime> {
        &self.runtime
    }
}

fn pointer(placement: Placement, name: &str, version: Option<u32>) -> MetaWrite {
    let key = match placement {
        Placement::Live => keys::meta::live(name),
        Placement::Shadow => keys::meta::shadow(name),
    };
    match version {
        Some(v) => MetaWrite::put(key, &v),
        None => MetaWrite::delete(key),
    }
}

/// How a plugin's live and shadow versions moved when its records were read again.
#[derive(Debug)]
pub struct PluginChange {
    /// Live before.
    pub was_live: Option<PluginInfo>,
    /// Live now.
    pub live: Option<PluginInfo>,
    /// Shadow before.
    pub was_shadow: Option<PluginInfo>,
    /// Shadow now.
    pub shadow: Option<PluginInfo>,
}

/// Limits a deploy may ask for: positive, and memory under the pool's ceiling.
fn check_sandbox(s: &Sandbox) -> Result<(), String> {
    let max = crate::limits::PLUGIN_MEMORY_BYTES_MAX;
    if s.memory_bytes < 1 << 20 || s.memory_bytes > max {
        return Err(format!("memory limit must be between 1 MiB and {} MiB, got {} bytes", max >> 20, s.memory_bytes));
    }
    if s.cpu_ms_per_batch == 0
        || s.output_bytes_per_batch == 0
        || s.state_bytes_per_batch == 0
        || s.state_value_bytes == 0
    {
        return Err("CPU, output and state limits must be positive".into());
    }
    if let Some(bad) = s.allow_env.iter().find(|k| k.is_empty() || k.contains('=')) {
        return Err(format!("invalid environment variable name {bad:?}"));
    }
    Ok(())
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
