//! The harness every weir integration test shares: it builds the `weir` binary and the
//! plugins in `plugins/` once per test run, starts real `weir serve` processes on free
//! loopback ports with temporary data directories, and talks to them over TCP.

use std::io::{BufRead, BufReader, Read};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use weir_client::client::Client;
use weir_client::wire::TopicConfig;
use weir_client::wire::{FetchPosition, FetchedRecord};
use weir_client::wire::{PipelineSpec, StepSpec};
use weir_host::build::tools_dir;

pub use weir_client;
pub use weir_host;

pub mod cluster_loop;
pub mod crash_loop;
/// A local JetStream cluster (3 real `nats-server` processes).
pub use weir_host::cluster::local as nats;

/// The workspace root (where `Cargo.toml` and `plugins/` are).
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("tests/ has a parent").to_path_buf()
}

/// `(target dir, profile dir name)` of the running test binary: `<target>/<profile>/deps/x`.
fn target_layout() -> (PathBuf, String) {
    let exe = std::env::current_exe().expect("current exe");
    let mut dir = exe.parent().expect("exe dir").to_path_buf();
    if dir.ends_with("deps") {
        dir.pop();
    }
    let profile = dir.file_name().and_then(|n| n.to_str()).unwrap_or("debug").to_string();
    (dir.parent().expect("target dir").to_path_buf(), profile)
}

fn cargo() -> Command {
    without_cargo_env(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
}

/// `program` run from the workspace root without the variables `cargo test` sets for this
/// crate: a nested cargo would otherwise see other fingerprints and rebuild (and the outer
/// build would then rebuild everything next time).
pub fn without_cargo_env(program: impl AsRef<std::ffi::OsStr>) -> Command {
    let mut c = Command::new(program);
    c.current_dir(workspace_root());
    for (k, _) in std::env::vars() {
        if k.starts_with("CARGO_") && !matches!(k.as_str(), "CARGO_HOME" | "CARGO_TARGET_DIR") {
            c.env_remove(k);
        }
    }
    c
}

/// The `weir` binary, built once per test run in the test's own profile, so it is never
/// stale. (Cargo has released its build lock by the time tests run.)
pub fn weir_bin() -> &'static Path {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        let (target, profile) = target_layout();
        let mut cmd = cargo();
        cmd.args(["build", "-p", "weir-cli", "--bin", "weir", "--target-dir"]).arg(&target);
        if profile != "debug" {
            cmd.args(["--profile", if profile == "release" { "release" } else { &profile }]);
        }
        run_build(cmd, "the weir binary");
        target.join(&profile).join("weir")
    })
}

/// The `weir` binary built in the release profile (whatever profile the tests run in), for
/// the figures that only an optimised build makes meaningful: instruction counts.
pub fn weir_release_bin() -> &'static Path {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        let (target, _) = target_layout();
        let mut cmd = cargo();
        cmd.args(["build", "--release", "-p", "weir-cli", "--bin", "weir", "--target-dir"]).arg(&target);
        run_build(cmd, "the release weir binary");
        target.join("release").join("weir")
    })
}

/// The `lossyfs` binary (a filesystem that loses what was not fsynced), built once per run
/// like [`weir_bin`].
pub fn lossyfs_bin() -> &'static Path {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        let (target, profile) = target_layout();
        let mut cmd = cargo();
        cmd.args(["build", "-p", "weir-lossyfs", "--bin", "lossyfs", "--target-dir"]).arg(&target);
        if profile != "debug" {
            cmd.args(["--profile", if profile == "release" { "release" } else { &profile }]);
        }
        run_build(cmd, "the lossyfs binary");
        target.join(&profile).join("lossyfs")
    })
}

/// A data directory on a `lossyfs` mount, for power-loss tests: everything weir writes and
/// does not fsync is lost at [`PowerDisk::lose_power`].
pub struct PowerDisk {
    /// The mount (dropped first: unmounted before the directories go).
    pub fs: weir_lossyfs::LossyFs,
    _backing: tempfile::TempDir,
    mount: tempfile::TempDir,
}

impl PowerDisk {
    /// Mount a fresh one; an error says why FUSE is not usable here.
    pub fn mount() -> Result<PowerDisk> {
        weir_lossyfs::fuse_available()
            .map_err(|why| anyhow::anyhow!("power-loss tests need a FUSE mount, which fails here: {why}"))?;
        let (backing, mount) = (tempfile::tempdir()?, tempfile::tempdir()?);
        let fs = weir_lossyfs::LossyFs::mount_with(lossyfs_bin(), backing.path(), mount.path(), &[])?;
        Ok(PowerDisk { fs, _backing: backing, mount })
    }

    /// The data directory to give `weir serve`.
    pub fn data_dir(&self) -> PathBuf {
        self.mount.path().join("data")
    }

    /// Drop everything not fsynced (tearing each file's last unsynced append at a sector
    /// boundary with `tear`'s seed): the report, as JSON.
    pub fn lose_power(&self, tear: Option<u64>) -> Result<serde_json::Value> {
        self.fs.lose_power(tear)
    }
}

/// Every plugin under `plugins/`, built once for wasm32-wasip2 in a target dir of its own
/// (a nested build must not share the outer build's lock).
fn plugin_dir() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let (target, _) = target_layout();
        let built = weir_host::build::build_components(&workspace_root(), &plugin_packages(), &target.join("plugins"))
            .unwrap_or_else(|e| panic!("{e}"));
        built[0].parent().expect("artifact dir").to_path_buf()
    })
}

fn plugin_packages() -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(workspace_root().join("plugins"))
        .expect("plugins dir")
        .filter_map(|e| e.ok())
        .filter(|e| e.path().join("Cargo.toml").exists())
        .map(|e| format!("weir-plugin-{}", e.file_name().to_string_lossy()))
        .collect();
    names.sort();
    names
}

fn run_build(mut cmd: Command, what: &str) {
    let out = cmd.output().unwrap_or_else(|e| panic!("cannot run cargo to build {what}: {e}"));
    assert!(out.status.success(), "building {what} failed:\n{}", String::from_utf8_lossy(&out.stderr));
}

/// The component built from `plugins/<name>` (e.g. `json-filter`).
pub fn plugin(name: &str) -> PathBuf {
    let path = plugin_dir().join(format!("weir_plugin_{}.wasm", name.replace('-', "_")));
    assert!(path.exists(), "no component at {}", path.display());
    path
}

/// The bytes of `plugins/<name>`'s component.
pub fn plugin_bytes(name: &str) -> Vec<u8> {
    std::fs::read(plugin(name)).expect("read component")
}

/// Run the `weir` CLI with `args` (against `server` when given) and return what it printed;
/// a failure carries its stderr.
pub fn weir_cli(args: &[&str], server: Option<&Server>) -> Result<String> {
    let mut cmd = Command::new(weir_bin());
    cmd.args(args);
    if let Some(s) = server {
        cmd.env("WEIR_SERVER", s.addr.to_string());
    }
    let out = cmd.output()?;
    if !out.status.success() {
        bail!("weir {args:?} failed:\n{}", String::from_utf8_lossy(&out.stderr));
    }
    Ok(String::from_utf8(out.stdout)?)
}

/// `weir plugin deploy NAME --watch DIR` against a server, in the background, stopped when
/// dropped (so a failing test does not leave it rebuilding). What it prints goes to a file.
pub struct Watcher(Child, tempfile::NamedTempFile);

impl Watcher {
    /// Start watching `dir` as plugin `name` on `server`, with extra environment `env`.
    pub fn start(server: &Server, name: &str, dir: &Path, env: &[(&str, &Path)]) -> Result<Watcher> {
        let log = tempfile::NamedTempFile::new()?;
        let child = Command::new(weir_bin())
            .args(["plugin", "deploy", name, "--watch"])
            .arg(dir)
            .env("WEIR_SERVER", server.addr.to_string())
            .envs(env.iter().map(|(k, v)| (k, v)))
            .stdout(log.reopen()?)
            .stderr(log.reopen()?)
            .spawn()?;
        Ok(Watcher(child, log))
    }

    /// What the watcher has printed so far, stdout and stderr as they came.
    pub fn printed(&self) -> String {
        String::from_utf8_lossy(&std::fs::read(self.1.path()).unwrap_or_default()).into_owned()
    }
}

impl Drop for Watcher {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The component of the Python or JavaScript project `plugins/<name>` (e.g.
/// `py-json-filter`), built by `weir plugin build` as a user would.
pub fn polyglot_plugin(name: &str) -> PathBuf {
    polyglot_build(&workspace_root().join("plugins").join(name))
}

/// The bytes of [`polyglot_plugin`].
pub fn polyglot_bytes(name: &str) -> Vec<u8> {
    std::fs::read(polyglot_plugin(name)).expect("read component")
}

/// Build the Python or JavaScript project in `dir` with `weir plugin build`, once per run
/// and one build at a time (each keeps a core busy for ~10 s). The output is kept beside
/// the test build under a hash of everything that goes into it — the project, its SDK, the
/// WIT, the build driver (`cli/src/polyglot.rs`) and the tool pins (`examples/setup.sh`, the
/// JavaScript lock file) — so later runs reuse it until one of them changes. A build goes to
/// a temporary directory first: an interrupted one is never taken for a finished one.
pub fn polyglot_build(dir: &Path) -> PathBuf {
    static BUILT: std::sync::Mutex<Vec<(PathBuf, PathBuf)>> = std::sync::Mutex::new(Vec::new());
    let mut built = BUILT.lock().unwrap_or_else(|e| e.into_inner());
    if let Some((_, wasm)) = built.iter().find(|(d, _)| d == dir) {
        return wasm.clone();
    }
    let root = workspace_root();
    let sdk = root.join("sdk").join(if dir.join("package.json").exists() { "js" } else { "python" });
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    let inputs =
        ["wit/weir.wit", "cli/src/polyglot.rs", "examples/setup.sh", "examples/tools/plugin-js/package-lock.json"];
    for tree in [dir.to_path_buf(), sdk].into_iter().chain(inputs.iter().map(|p| root.join(p))) {
        hash_tree(&tree, &mut hasher);
    }
    let name = dir.file_name().expect("project dir name").to_string_lossy();
    let out = target_layout().0.join("polyglot").join(format!("{name}-{:016x}", std::hash::Hasher::finish(&hasher)));
    if find_wasm(&out).is_none() {
        let partial = out.with_extension("partial");
        let _ = std::fs::remove_dir_all(&partial);
        let (dir_s, partial_s) = (dir.to_str().expect("utf-8 path"), partial.to_str().expect("utf-8 path"));
        weir_cli(&["plugin", "build", dir_s, "--target-dir", partial_s], None)
            .unwrap_or_else(|e| panic!("building {}: {e:#}", dir.display()));
        let _ = std::fs::remove_dir_all(&out);
        std::fs::rename(&partial, &out).expect("move the finished build into place");
    }
    let wasm = find_wasm(&out).expect("the build left a component");
    built.push((dir.to_path_buf(), wasm.clone()));
    wasm
}

fn find_wasm(dir: &Path) -> Option<PathBuf> {
    std::fs::read_dir(dir)
        .ok()?
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .find(|p| p.extension().is_some_and(|x| x == "wasm"))
}

/// Feed every source file under `path` (names and contents, in order) into `hasher`.
fn hash_tree(path: &Path, hasher: &mut impl std::hash::Hasher) {
    use std::hash::Hash;
    if path.is_file() {
        path.hash(hasher);
        std::fs::read(path).unwrap_or_default().hash(hasher);
        return;
    }
    let mut entries: Vec<PathBuf> =
        std::fs::read_dir(path).map_or_else(|_| Vec::new(), |rd| rd.filter_map(|e| e.ok()).map(|e| e.path()).collect());
    entries.sort();
    for entry in entries {
        let skip = entry.file_name().is_some_and(|n| {
            ["build", "node_modules", "__pycache__", ".pytest_cache"].contains(&n.to_string_lossy().as_ref())
        });
        if !skip {
            hash_tree(&entry, hasher);
        }
    }
}

/// The Python with componentize-py and pytest, for Python plugins' unit tests (installed by
/// `examples/setup.sh`).
pub fn plugin_python() -> PathBuf {
    tools_dir().join("plugin-py/bin/python")
}

/// A WASI command component (another world): deploy must refuse it.
pub fn not_a_plugin() -> Vec<u8> {
    std::fs::read(plugin_dir().join("not-a-plugin.wasm")).expect("read command component")
}

/// Where the tests' servers run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// One `weir serve` on RocksDB.
    Single,
    /// A node of a 2-node weir cluster over the run's shared 3-server JetStream cluster.
    Cluster,
}

tokio::task_local! {
    /// The mode of the test running on this task (see [`mode`]).
    static MODE: Mode;
}

/// The mode [`Server::start`] starts servers in: the test's own (a test generated by
/// [`both_modes!`] runs once in each), else `WEIR_TEST_MODE` (`single`, the default, or
/// `cluster`).
pub fn mode() -> Mode {
    MODE.try_with(|m| *m).unwrap_or_else(|_| match std::env::var("WEIR_TEST_MODE").as_deref() {
        Ok("cluster") => Mode::Cluster,
        _ => Mode::Single,
    })
}

/// Run `test` with servers started in `mode`.
pub async fn in_mode<T>(mode: Mode, test: impl Future<Output = T>) -> T {
    MODE.scope(mode, test).await
}

/// Each test of the block twice, in a module named after it: `single` on one server and
/// `cluster` on a node of a 2-node weir cluster, the same body in both.
#[macro_export]
macro_rules! both_modes {
    ($($(#[doc = $doc:literal])* async fn $name:ident() -> Result<()> $body:block)*) => {$(
        $(#[doc = $doc])*
        mod $name {
            #[allow(unused_imports)]
            use super::*;

            async fn body() -> Result<()> $body

            #[tokio::test(flavor = "multi_thread")]
            async fn single() -> Result<()> {
                $crate::in_mode($crate::Mode::Single, body()).await
            }

            #[tokio::test(flavor = "multi_thread")]
            async fn cluster() -> Result<()> {
                $crate::in_mode($crate::Mode::Cluster, body()).await
            }
        }
    )*};
}

/// The JetStream cluster every cluster-mode server of this test run joins (each weir cluster
/// under a name of its own): started once, by a thread that lives as long as the process, so
/// the servers die with it.
pub fn shared_nats() -> Result<String> {
    static URLS: OnceLock<Result<String, String>> = OnceLock::new();
    URLS.get_or_init(|| {
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::Builder::new()
            .name("weir-test-nats".into())
            .spawn(move || match nats::NatsCluster::start_tied(3) {
                Ok(cluster) => {
                    let _ = tx.send(Ok(cluster.urls()));
                    loop {
                        std::thread::park();
                    }
                }
                Err(e) => {
                    let _ = tx.send(Err(e.to_string()));
                }
            })
            .map_err(|e| e.to_string())?;
        rx.recv().map_err(|e| e.to_string())?
    })
    .clone()
    .map_err(|e| anyhow::anyhow!("cannot start the shared JetStream cluster: {e}"))
}

/// A `weir serve` process with a temporary data directory.
pub struct Server {
    child: Option<Child>,
    /// Cluster mode: the other node of this server's weir cluster, running beside it.
    pub peer: Option<Box<Server>>,
    /// Address it listens on.
    pub addr: SocketAddr,
    /// Address of its Kafka listener, when started with `--kafka-listen`.
    pub kafka: Option<SocketAddr>,
    /// Address of its HTTP listener, when started with `--http-listen`.
    pub http: Option<SocketAddr>,
    /// Address of its AMQP listener, when started with `--amqp-listen`.
    pub amqp: Option<SocketAddr>,
    root: tempfile::TempDir,
    /// How the next (re)start runs.
    pub launch: Launch,
}

/// How a server process is started.
#[derive(Debug, Clone, Default)]
pub struct Launch {
    /// Extra `weir serve` flags.
    pub flags: Vec<String>,
    /// Extra environment variables.
    pub env: Vec<(String, String)>,
    /// Largest file the process may write, bytes (`ulimit -f`): a disk that fills up.
    pub file_size_limit: Option<u64>,
    /// The data directory, if not `data/` in the server's temporary directory (a small
    /// filesystem of the test's own, say).
    pub data_dir: Option<PathBuf>,
}

impl Server {
    /// Start a server on a free port with a new data directory.
    pub fn start() -> Result<Server> {
        Server::start_with(&[])
    }

    /// Start a server with extra `weir serve` flags.
    pub fn start_with(extra: &[&str]) -> Result<Server> {
        Server::launch(Launch { flags: extra.iter().map(|s| s.to_string()).collect(), ..Launch::default() })
    }

    /// Start a server as `launch` says: in cluster mode (see [`mode`]) the first of two
    /// nodes of a new weir cluster, both with `launch`'s flags.
    pub fn launch(launch: Launch) -> Result<Server> {
        if mode() == Mode::Cluster && !launch.flags.iter().any(|f| f == "--cluster") {
            return Server::cluster_pair(launch);
        }
        Server::launch_one(launch)
    }

    fn launch_one(launch: Launch) -> Result<Server> {
        let root = tempfile::tempdir()?;
        let (child, Listening { native: addr, kafka, http, amqp }) = spawn(root.path(), &launch)?;
        Ok(Server { child: Some(child), peer: None, addr, kafka, http, amqp, root, launch })
    }

    /// Two nodes of a weir cluster of their own on the shared JetStream cluster; the first,
    /// with the second as its peer.
    fn cluster_pair(launch: Launch) -> Result<Server> {
        static CLUSTERS: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let urls = shared_nats()?;
        let name = format!("t{}-{}", std::process::id(), CLUSTERS.fetch_add(1, std::sync::atomic::Ordering::Relaxed));
        let node = |id: &str| {
            let mut l = launch.clone();
            l.flags.extend(
                ["--cluster", &urls, "--cluster-name", &name, "--node-id", id, "--replicas", "3", "--lease", "2s"]
                    .map(String::from),
            );
            l
        };
        // The peer listens where it can: a port the test fixed (to keep it across restarts)
        // is the first node's.
        let mut second = node("n2");
        for i in 1..second.flags.len() {
            if second.flags[i - 1].ends_with("-listen") {
                second.flags[i] = "127.0.0.1:0".into();
            }
        }
        let peer = Server::launch_one(second)?;
        let mut first = Server::launch_one(node("n1"))?;
        first.peer = Some(Box::new(peer));
        Ok(first)
    }

    /// A weir node of the JetStream cluster `nats`, with id `node` (lease 2 s, 3 replicas).
    pub fn cluster_node(nats: &nats::NatsCluster, node: &str) -> Result<Server> {
        Server::launch(cluster_launch(nats, node))
    }

    /// SIGSTOP (`true`) or SIGCONT (`false`) the server process: a node that stops answering
    /// without dying (a long GC pause, a frozen VM).
    pub fn pause(&self, stop: bool) -> Result<()> {
        let Some(c) = &self.child else { bail!("server not running") };
        let signal = if stop { "-STOP" } else { "-CONT" };
        Command::new("kill").args([signal, &c.id().to_string()]).status()?;
        Ok(())
    }

    /// The temporary directory holding the data directory and the server log.
    pub fn root(&self) -> &Path {
        self.root.path()
    }

    /// The data directory.
    pub fn data_dir(&self) -> PathBuf {
        self.launch.data_dir.clone().unwrap_or_else(|| self.root.path().join("data"))
    }

    /// A connected client.
    pub async fn client(&self) -> Result<Client> {
        Ok(Client::connect(self.addr.to_string()).await?)
    }

    /// SIGKILL the server: no shutdown, no flush.
    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// SIGTERM and wait for a graceful exit; returns its exit status.
    pub fn stop(&mut self) -> Result<std::process::ExitStatus> {
        let Some(mut c) = self.child.take() else { bail!("server not running") };
        let pid = c.id().to_string();
        Command::new("kill").args(["-TERM", &pid]).status()?;
        Ok(c.wait()?)
    }

    /// Start again on the same data directory (a new port).
    pub fn restart(&mut self) -> Result<()> {
        self.kill9();
        let (child, Listening { native, kafka, http, amqp }) = spawn(self.root.path(), &self.launch)?;
        self.amqp = amqp;
        self.child = Some(child);
        self.addr = native;
        self.kafka = kafka;
        self.http = http;
        Ok(())
    }

    /// Resident memory of the server process, KiB (from /proc).
    pub fn rss_kib(&self) -> Option<u64> {
        let pid = self.child.as_ref()?.id();
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
    }

    /// The server's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.root.path().join("server.log")).unwrap_or_default()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.kill9();
        if std::thread::panicking() {
            let log = self.log();
            let tail: Vec<&str> = log.lines().rev().take(40).collect();
            eprintln!("--- server log (last lines) ---");
            for l in tail.into_iter().rev() {
                eprintln!("{l}");
            }
        }
    }
}

/// How a weir node of the JetStream cluster `nats` starts (with a Kafka listener).
pub fn cluster_launch(nats: &nats::NatsCluster, node: &str) -> Launch {
    let flags = [
        "--cluster",
        &nats.urls(),
        "--node-id",
        node,
        "--replicas",
        "3",
        "--lease",
        "2s",
        "--kafka-listen",
        "127.0.0.1:0",
    ];
    Launch { flags: flags.iter().map(|s| s.to_string()).collect(), ..Launch::default() }
}

/// The compiled-plugin cache the test servers share, beside the test build.
fn compile_cache() -> PathBuf {
    target_layout().0.join("weir-test-compiled")
}

/// `weir serve` on `root/data`, as `launch` says.
pub fn serve_command(root: &Path, launch: &Launch) -> Command {
    let mut cmd = match launch.file_size_limit {
        // SIGXFSZ ignored, so writing past the limit fails with EFBIG instead of killing.
        Some(bytes) => {
            let mut c = Command::new("sh");
            c.arg("-c")
                .arg(format!("trap '' XFSZ; ulimit -f {}; exec \"$0\" \"$@\"", bytes.div_ceil(1024)))
                .arg(weir_bin());
            c
        }
        None => Command::new(weir_bin()),
    };
    let data = launch.data_dir.clone().unwrap_or_else(|| root.join("data"));
    cmd.arg("serve").arg("--data-dir").arg(data).args(["--listen", "127.0.0.1:0"]).args(&launch.flags);
    // Every server of a run shares one compiled-plugin cache: each component is compiled once,
    // not once per server (a deploy still validates, links and instantiates it).
    cmd.env("WEIR_COMPILE_CACHE", compile_cache());
    cmd.envs(launch.env.iter().map(|(k, v)| (k, v)));
    cmd
}

/// Where a started server listens.
struct Listening {
    native: SocketAddr,
    kafka: Option<SocketAddr>,
    http: Option<SocketAddr>,
    amqp: Option<SocketAddr>,
}

fn spawn(root: &Path, launch: &Launch) -> Result<(Child, Listening)> {
    let log = std::fs::OpenOptions::new().create(true).append(true).open(root.join("server.log"))?;
    let mut child =
        serve_command(root, launch).stdout(Stdio::piped()).stderr(log).spawn().context("spawning weir serve")?;
    let stdout = child.stdout.take().expect("piped stdout");
    let kafka = launch.flags.iter().any(|f| f == "--kafka-listen");
    let http = launch.flags.iter().any(|f| f == "--http-listen");
    let amqp = launch.flags.iter().any(|f| f == "--amqp-listen");
    let lines = 1 + usize::from(kafka) + usize::from(http) + usize::from(amqp);
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut reader = BufReader::new(stdout);
        for _ in 0..lines {
            let mut line = String::new();
            let _ = reader.read_line(&mut line);
            let _ = tx.send(line);
        }
        // Keep draining so the server never blocks on a full pipe.
        let _ = std::io::copy(&mut reader.take(u64::MAX), &mut std::io::sink());
    });
    let address = |prefix: &str| -> Result<SocketAddr> {
        let line = rx.recv_timeout(Duration::from_secs(120)).context("weir serve did not report its address")?;
        let addr = line.trim().strip_prefix(prefix).with_context(|| {
            // The temp dir goes with the test: quote the log's end while it exists.
            let log = std::fs::read_to_string(root.join("server.log")).unwrap_or_default();
            let tail: Vec<&str> = log.lines().rev().take(15).collect();
            let tail: Vec<&str> = tail.into_iter().rev().collect();
            format!("unexpected line from weir serve: {line:?}; its log ends:\n{}", tail.join("\n"))
        })?;
        Ok(addr.parse()?)
    };
    // The server prints the native address first, then the Kafka, HTTP and AMQP ones, in
    // that order.
    let native = address("weir listening on ")?;
    let kafka = if kafka { Some(address("weir kafka listening on ")?) } else { None };
    let http = if http { Some(address("weir http listening on ")?) } else { None };
    let amqp = if amqp { Some(address("weir amqp listening on ")?) } else { None };
    Ok((child, Listening { native, kafka, http, amqp }))
}

/// The Python with the Kafka client libraries (installed by `examples/setup.sh`).
pub fn kafka_python() -> PathBuf {
    tools_dir().join("kafka-venv/bin/python")
}

/// The Python with Playwright, for driving the system's chromium (installed by
/// `examples/setup.sh`).
pub fn browser_python() -> PathBuf {
    tools_dir().join("browser-venv/bin/python")
}

/// Run `tests/kafka/client.py COMMAND --bootstrap ADDR ARGS…` and parse the JSON it prints.
pub fn kafka_client(command: &str, bootstrap: SocketAddr, args: &[&str]) -> Result<serde_json::Value> {
    let bootstrap = bootstrap.to_string();
    let mut all = vec!["--bootstrap", bootstrap.as_str()];
    all.extend_from_slice(args);
    python_client("tests/kafka/client.py", command, &all)
}

/// Run `tests/schemas/client.py COMMAND --registry URL ARGS…` (Confluent's schema registry
/// client and serializers) and parse the JSON it prints.
pub fn schema_client(command: &str, registry: &str, args: &[&str]) -> Result<serde_json::Value> {
    let mut all = vec!["--registry", registry];
    all.extend_from_slice(args);
    python_client("tests/schemas/client.py", command, &all)
}

/// The AMQP test clients' URL for `addr`, as user `user` with password `password`.
pub fn amqp_url(addr: SocketAddr, user: &str, password: &str) -> String {
    format!("amqp://{user}:{password}@{addr}/%2F")
}

/// Run `tests/amqp/client.py COMMAND --url URL ARGS…` (pika) and parse the JSON it prints.
pub fn amqp_pika(command: &str, url: &str, args: &[&str]) -> Result<serde_json::Value> {
    let mut all = vec!["--url", url];
    all.extend_from_slice(args);
    run_client(&tools_dir().join("amqp-venv/bin/python"), "tests/amqp/client.py", command, &all)
}

/// Run `tests/amqp/client.mjs COMMAND --url URL ARGS…` (amqplib, under node) and parse the
/// JSON it prints.
pub fn amqp_amqplib(command: &str, url: &str, args: &[&str]) -> Result<serde_json::Value> {
    let mut all = vec!["--url", url];
    all.extend_from_slice(args);
    run_client(Path::new("node"), "tests/amqp/client.mjs", command, &all)
}

/// Run one of the tests' Python clients (in the kafka-venv) and parse the last line it prints.
fn python_client(script: &str, command: &str, args: &[&str]) -> Result<serde_json::Value> {
    run_client(&kafka_python(), script, command, args)
}

/// Run a test client script with `interpreter` and parse the last line it prints.
fn run_client(interpreter: &Path, script: &str, command: &str, args: &[&str]) -> Result<serde_json::Value> {
    if interpreter.is_absolute() && !interpreter.exists() {
        bail!("{} is missing: run examples/setup.sh (it installs the clients the tests use)", interpreter.display());
    }
    let out = Command::new(interpreter)
        .env("WEIR_TOOLS", tools_dir())
        .arg(workspace_root().join(script))
        .arg(command)
        .args(args)
        .output()
        .with_context(|| format!("running {}", interpreter.display()))?;
    if !out.status.success() {
        bail!(
            "{script} {command} failed ({}): {}{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let stdout = String::from_utf8_lossy(&out.stdout);
    let last = stdout.lines().last().unwrap_or_default();
    serde_json::from_str(last).with_context(|| format!("{script} {command} printed {stdout:?}"))
}

/// A free loopback port (for a listener that must keep its port across restarts).
pub fn free_port() -> Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// Wait until `check` returns `Some`, polling every 20 ms, up to `timeout`.
pub async fn eventually<T, F, Fut>(what: &str, timeout: Duration, mut check: F) -> Result<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<Option<T>>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = check().await? {
            return Ok(v);
        }
        if Instant::now() > deadline {
            bail!("timed out after {timeout:?} waiting for {what}");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Read `topic` from the beginning with long polls until `count` records have arrived
/// (or `timeout` passes): `(partition, offset, record)` in per-partition order.
pub async fn consume_n(
    client: &Client,
    topic: &str,
    count: usize,
    timeout: Duration,
) -> Result<Vec<(u32, u64, FetchedRecord)>> {
    let info = client.describe_topic(topic).await?;
    let mut positions: Vec<FetchPosition> = info
        .partitions
        .iter()
        .enumerate()
        .map(|(p, (s, _))| FetchPosition { partition: p as u32, offset: *s })
        .collect();
    let deadline = Instant::now() + timeout;
    let mut out = Vec::with_capacity(count);
    while out.len() < count {
        if Instant::now() > deadline {
            bail!("timed out: {} of {count} records arrived in `{topic}`", out.len());
        }
        let parts = client.fetch(topic, positions.clone(), 50_000, Duration::from_millis(500)).await?;
        for part in parts {
            let n = part.records.len() as u64;
            for (i, r) in part.records.into_iter().enumerate() {
                out.push((part.partition, part.first_offset + i as u64, r));
            }
            positions[part.partition as usize].offset = part.first_offset + n;
        }
    }
    Ok(out)
}

/// The value of a fetched record as text.
pub fn text(r: &FetchedRecord) -> String {
    String::from_utf8_lossy(&r.value).into_owned()
}

/// A topic config with `partitions` partitions and defaults otherwise.
pub fn topic(partitions: u32) -> TopicConfig {
    TopicConfig { partitions, ..TopicConfig::default() }
}

/// A pipeline step.
pub fn step(plugin: &str, config: &[(&str, &str)]) -> StepSpec {
    StepSpec::new(plugin, config)
}

/// A pipeline with default settings.
pub fn pipeline(name: &str, source: &str, sink: &str, steps: Vec<StepSpec>) -> PipelineSpec {
    PipelineSpec::new(name, source, steps, sink)
}

/// What the `hostile` plugin's `escape` mode reports when every attempt was refused: files,
/// directories, writes, sockets, environment, variables and the clock.
pub const ESCAPES_REFUSED: [&str; 7] =
    ["file=ERR(", "dir=ERR(", "write=ERR(", "tcp=ERR(", "env=ERR(", "vars=0", "clock=0"];

/// Deploy `hostile` as `escape` with no grants, run it in `escape` mode over one message
/// (topic `in` → pipeline `p` → topic `out`), and return its report of what each attempt to
/// leave the sandbox returned.
pub async fn escape_report(client: &Client) -> Result<String> {
    client.create_topic("in", topic(1)).await?;
    client.create_topic("out", topic(1)).await?;
    client.deploy_plugin("escape", plugin_bytes("hostile")).await?;
    client.create_pipeline(pipeline("p", "in", "out", vec![step("escape", &[("mode", "escape")])])).await?;
    client.produce("in", vec![weir_client::wire::WireRecord::value("x")]).await?;
    Ok(text(&consume_n(client, "out", 1, Duration::from_secs(60)).await?[0].2))
}
