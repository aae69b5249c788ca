//! `weir serve`: open the data directory, start pipelines, serve clients until a signal.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use clap::Args;
use tokio::net::TcpListener;
use weir_client::wire::Durability;
use weir_host::auth::{Authority, Tokens};
use weir_host::broker::{Broker, BrokerConfig};
use weir_host::limits;
use weir_host::server::{self, ServerLimits};

#[derive(Args)]
pub struct ServeArgs {
    /// Directory holding the database and compiled plugins (created if missing).
    #[arg(long, default_value = "weir-data")]
    data_dir: PathBuf,
    /// Address to listen on; port 0 picks a free port (printed on stdout).
    #[arg(long, default_value = "127.0.0.1:7070")]
    listen: String,
    /// Default durability of topics: `sync` fsyncs every group commit before acknowledging;
    /// `os` acknowledges once the WAL write reaches the OS (survives a crash of weir, not of
    /// the machine).
    #[arg(long, value_parser = super::kebab::<Durability>, default_value = "sync")]
    durability: Durability,
    /// Largest request frame accepted, in bytes.
    #[arg(long, default_value_t = limits::MAX_FRAME_BYTES)]
    max_frame_bytes: usize,
    /// Most concurrent client connections.
    #[arg(long, default_value_t = limits::MAX_CONNECTIONS)]
    max_connections: usize,
    /// How often retention deletes old records.
    #[arg(long, default_value = "30s", value_parser = super::parse_duration)]
    retention_interval: Duration,
    /// Require a token from every client: one token per line, `[name:]token [grant]...`,
    /// grants like `read:orders*`, `write:orders*`, `admin:*` (none: everything). The file is
    /// read again when it changes or on SIGHUP; a file that does not parse keeps the old set.
    #[arg(long)]
    auth_token_file: Option<PathBuf>,
    /// How long a frame may take to arrive once it started (slow clients are cut off).
    #[arg(long, default_value = "30s", value_parser = super::parse_duration)]
    frame_timeout: Duration,
    /// How long responses may wait for a client to read them before it is disconnected.
    #[arg(long, default_value = "60s", value_parser = super::parse_duration)]
    write_timeout: Duration,
    /// How long an HTTP request may take (at least 2s); long polls and request/reply waits
    /// are capped a second below it.
    #[arg(long, default_value = "30s", value_parser = super::parse_duration)]
    http_request_timeout: Duration,
    /// Start even if the write-ahead log is damaged, keeping what precedes the damage. Without
    /// this, a damaged log stops the start (rather than silently dropping acknowledged writes).
    #[arg(long)]
    recover_wal: bool,
    /// Keep the write-ahead log in this directory, ideally on a device of its own: each
    /// group commit's fsync then does not wait behind the database's flushes and compactions.
    /// Chosen when the data directory is created; later starts must name the same one.
    #[arg(long)]
    wal_dir: Option<PathBuf>,
    /// Keep this much free in the data (and WAL) directory: below it, produces, pipeline
    /// outputs and queue sends are refused with a "disk full" error (reads, acks and deletes
    /// go on) and resume by themselves once space returns. 0 turns the floor off.
    #[arg(long, default_value = "128MiB", value_parser = super::parse_size)]
    min_free_space: usize,
    /// Serve TLS only, with this certificate chain (PEM); needs --tls-key. Clients pass
    /// --tls-ca (or WEIR_TLS_CA) with the CA that signed it.
    #[arg(long, requires = "tls_key")]
    tls_cert: Option<PathBuf>,
    /// Directory of compiled plugins (default: `compiled/` in the data directory). Servers may
    /// share one, so a component is compiled once per machine.
    #[arg(long, env = "WEIR_COMPILE_CACHE")]
    compile_cache: Option<PathBuf>,
    /// The private key of --tls-cert (PEM).
    #[arg(long, requires = "tls_cert")]
    tls_key: Option<PathBuf>,
    /// Also serve the Kafka protocol on this address (off by default): Kafka clients produce,
    /// fetch and join consumer groups on the same topics. TLS and tokens apply to it too
    /// (tokens through SASL PLAIN: user = token name, password = token).
    #[arg(long)]
    kafka_listen: Option<String>,
    /// HOST:PORT that Kafka clients are told to connect to (Metadata, FindCoordinator);
    /// default: the --kafka-listen address as bound.
    #[arg(long, requires = "kafka_listen")]
    kafka_advertise: Option<String>,
    /// Also serve AMQP 0-9-1 on this address (off by default): RabbitMQ's clients (pika,
    /// amqplib, lapin, the Java, .NET and Go clients) use weir's queues and exchanges. TLS and
    /// tokens apply to it too (tokens through PLAIN: user = token name, password = token).
    #[arg(long)]
    amqp_listen: Option<String>,
    /// Also serve HTTP on this address (off by default): the JSON API, Prometheus metrics at
    /// /metrics, the OpenAPI description at /openapi.json and the web console at /. TLS and
    /// tokens apply to it too (tokens as `Authorization: Bearer TOKEN`).
    #[arg(long)]
    http_listen: Option<String>,
    /// Export pipeline steps' spans of traced messages (those carrying a W3C `traceparent`)
    /// to this OpenTelemetry collector, OTLP over HTTP (e.g. http://127.0.0.1:4318; the path
    /// /v1/traces is added when the URL has none). Off by default.
    #[arg(long)]
    otlp_endpoint: Option<String>,
    /// Cluster mode: join the NATS JetStream cluster at these URLs (comma-separated, e.g.
    /// nats://10.0.0.1:4222,nats://10.0.0.2:4222; NATS 2.14.4 or newer). Topics, pipeline
    /// commits, group offsets and plugins then live in JetStream, replicated; this node's
    /// data directory becomes a cache, and pipeline partitions are shared among live nodes.
    #[arg(long)]
    cluster: Option<String>,
    /// This node's id in the cluster (unique; keep it across restarts). Default: the host name
    /// and the --listen port.
    #[arg(long, requires = "cluster")]
    node_id: Option<String>,
    /// Replicas of every stream and bucket weir creates in the cluster: 1, 3 or 5.
    #[arg(long, default_value_t = 3, requires = "cluster", value_parser = parse_replicas)]
    replicas: usize,
    /// A node not heard from for this long is declared dead and its partitions move.
    #[arg(long, default_value = "3s", requires = "cluster", value_parser = super::parse_duration)]
    lease: Duration,
    /// The weir cluster's name: every stream, subject and bucket it keeps in JetStream carries
    /// it, so several weir clusters can share one JetStream cluster. Nodes of one weir cluster
    /// give the same name.
    #[arg(long, default_value = "weir", requires = "cluster", value_parser = parse_cluster_name)]
    cluster_name: String,
}

fn parse_cluster_name(s: &str) -> Result<String, String> {
    let ok = !s.is_empty() && s.len() <= 32 && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '-');
    if ok { Ok(s.to_string()) } else { Err(format!("{s:?}: use 1 to 32 letters, digits and `-`")) }
}

fn parse_replicas(s: &str) -> Result<usize, String> {
    match s {
        "1" => Ok(1),
        "3" => Ok(3),
        "5" => Ok(5),
        _ => Err(format!("{s:?}: JetStream replicates 1, 3 or 5 times (an odd count keeps a quorum)")),
    }
}

pub async fn run(args: ServeArgs) -> anyhow::Result<()> {
    init_tracing();
    let otlp = match &args.otlp_endpoint {
        Some(url) => Some(start_otlp(url)?),
        None => None,
    };
    let listener = TcpListener::bind(&args.listen).await.with_context(|| {
        format!("cannot listen on {}; is another server running there? pick another with --listen", args.listen)
    })?;
    let authority = match &args.auth_token_file {
        Some(path) => Authority::with_tokens(Tokens::load(path).map_err(anyhow::Error::msg)?),
        None => Authority::open(),
    };
    let tls = match (&args.tls_cert, &args.tls_key) {
        (Some(cert), Some(key)) => Some(weir_client::tls::server_config(cert, key)?),
        _ => None,
    };
    let security = server::Security { tls };
    let addr = listener.local_addr()?;
    // The other doors are bound before the broker opens, so a cluster node can tell the
    // others where they are (Kafka Metadata lists every node).
    let kafka_bound = match &args.kafka_listen {
        Some(a) => Some(kafka_door(a, args.kafka_advertise.as_deref()).await?),
        None => None,
    };
    let http_bound = match &args.http_listen {
        Some(a) => Some(TcpListener::bind(a).await.with_context(|| {
            format!("cannot listen for HTTP on {a}; is something else there? pick another with --http-listen")
        })?),
        None => None,
    };
    let http_addr = http_bound.as_ref().map(|l| l.local_addr()).transpose()?;
    let amqp_bound = match &args.amqp_listen {
        Some(a) => Some(TcpListener::bind(a).await.with_context(|| {
            format!("cannot listen for AMQP clients on {a}; is RabbitMQ there? pick another with --amqp-listen")
        })?),
        None => None,
    };
    let cluster = args.cluster.as_ref().map(|urls| {
        let node = args.node_id.clone().unwrap_or_else(|| {
            let host = std::fs::read_to_string("/etc/hostname").unwrap_or_else(|_| "weir".into());
            format!("{}-{}", host.trim(), addr.port())
        });
        let opts = weir_host::cluster::ClusterOptions {
            urls: urls.clone(),
            namespace: args.cluster_name.clone(),
            node,
            replicas: args.replicas,
            lease: args.lease,
        };
        let kafka = kafka_bound.as_ref().map(|(_, door, _)| match door {
            server::Door::Kafka(k) => format!("{}:{}", k.advertise.0, k.advertise.1),
            _ => String::new(),
        });
        (opts, weir_host::cluster::NodeInfo { native: addr.to_string(), kafka, http: http_addr.map(|a| a.to_string()) })
    });
    let config = BrokerConfig {
        data_dir: args.data_dir.clone(),
        durability: args.durability.into(),
        retention_interval: args.retention_interval,
        recover_wal: args.recover_wal,
        wal_dir: args.wal_dir.clone(),
        min_free_bytes: args.min_free_space as u64,
        compile_cache: args.compile_cache.clone(),
        authority: Arc::new(authority),
        cluster,
    };
    let broker = Broker::open(config).await.with_context(|| format!("starting on {}", args.data_dir.display()))?;
    if let Some(path) = &args.auth_token_file {
        tokio::spawn(reload_tokens(path.clone(), Arc::downgrade(&broker)));
    }
    // Tests and scripts read this line to learn the port when --listen ends in :0.
    println!("weir listening on {addr}");
    tracing::info!(%addr, data_dir = %args.data_dir.display(), durability = ?args.durability, "weir serving");
    let limits = ServerLimits {
        max_frame_bytes: args.max_frame_bytes,
        max_connections: args.max_connections,
        frame_timeout: args.frame_timeout,
        write_timeout: args.write_timeout,
    };
    if broker.authority.is_enforced() {
        tracing::info!("clients must authenticate with a token");
    }
    if security.tls.is_some() {
        tracing::info!("clients must connect with TLS");
    }
    let (stop, stopping) = tokio::sync::watch::channel(false);
    let stopped = move || {
        let mut stopping = stopping.clone();
        async move {
            let _ = stopping.wait_for(|s| *s).await;
        }
    };
    let kafka = match kafka_bound {
        Some((listener, door, bound)) => {
            // Tests and scripts read this line to learn the port when --kafka-listen ends in :0.
            println!("weir kafka listening on {bound}");
            let serving = server::run(listener, broker.clone(), limits, security.clone(), door, stopped());
            Some(tokio::spawn(serving))
        }
        None => None,
    };
    let http = match http_bound {
        Some(listener) => {
            let bound = listener.local_addr()?;
            // Tests and scripts read this line to learn the port when --http-listen ends in :0.
            println!("weir http listening on {bound}");
            tracing::info!(%bound, "serving HTTP: the API, /metrics and the console");
            let settings = server::http::HttpSettings {
                request_timeout: args.http_request_timeout.max(Duration::from_secs(2)),
                ..Default::default()
            };
            let serving = server::http::run(listener, broker.clone(), limits, security.clone(), settings, stopped());
            Some(tokio::spawn(serving))
        }
        None => None,
    };
    let amqp = match amqp_bound {
        Some(listener) => {
            let bound = listener.local_addr()?;
            // Tests and scripts read this line to learn the port when --amqp-listen ends in :0.
            println!("weir amqp listening on {bound}");
            tracing::info!(%bound, "serving AMQP 0-9-1");
            let serving =
                server::run(listener, broker.clone(), limits, security.clone(), server::Door::Amqp, stopped());
            Some(tokio::spawn(serving))
        }
        None => None,
    };
    let native = server::run(listener, broker.clone(), limits, security, server::Door::Native, stopped());
    let signal = async {
        shutdown_signal().await;
        let _ = stop.send(true);
    };
    let (served, ()) = tokio::join!(native, signal);
    served?;
    if let Some(kafka) = kafka {
        kafka.await??;
    }
    if let Some(http) = http {
        http.await??;
    }
    if let Some(amqp) = amqp {
        amqp.await??;
    }
    tracing::info!("shutting down: finishing in-flight batches");
    broker.shutdown().await;
    if let Some(provider) = otlp {
        // The exporter's blocking HTTP client must not be dropped on the runtime's threads.
        let flushed = std::thread::spawn(move || provider.shutdown()).join();
        if !matches!(flushed, Ok(Ok(()))) {
            tracing::warn!("the last spans may not have reached the OTLP collector");
        }
    }
    tracing::info!("stopped");
    Ok(())
}

/// Span ids as pipelines plan them (the ids their outputs' `traceparent` carry), random
/// otherwise.
#[derive(Debug, Default)]
struct PlannedIds(opentelemetry_sdk::trace::RandomIdGenerator);

impl opentelemetry_sdk::trace::IdGenerator for PlannedIds {
    fn new_trace_id(&self) -> opentelemetry::trace::TraceId {
        self.0.new_trace_id()
    }

    fn new_span_id(&self) -> opentelemetry::trace::SpanId {
        match weir_host::pipeline::trace::planned_span_id() {
            Some(id) => opentelemetry::trace::SpanId::from_bytes(id),
            None => self.0.new_span_id(),
        }
    }
}

/// Install an OpenTelemetry tracer provider exporting to `url` (OTLP, HTTP, protobuf) in
/// batches every half second, and tell pipelines to export their steps' spans.
fn start_otlp(url: &str) -> anyhow::Result<opentelemetry_sdk::trace::SdkTracerProvider> {
    use opentelemetry_sdk::trace::{BatchConfigBuilder, BatchSpanProcessor, SdkTracerProvider};
    let endpoint = match url.split_once("://").map(|(_, rest)| rest.contains('/')) {
        Some(true) => url.to_string(),
        Some(false) => format!("{}/v1/traces", url.trim_end_matches('/')),
        None => anyhow::bail!("--otlp-endpoint takes a URL like http://127.0.0.1:4318, not `{url}`"),
    };
    // The blocking HTTP client is built (and later dropped) off the async runtime.
    let built = std::thread::spawn(move || -> anyhow::Result<SdkTracerProvider> {
        use opentelemetry_otlp::WithExportConfig;
        let exporter = opentelemetry_otlp::SpanExporter::builder().with_http().with_endpoint(&endpoint).build()?;
        let batches = BatchConfigBuilder::default().with_scheduled_delay(Duration::from_millis(500)).build();
        let processor = BatchSpanProcessor::builder(exporter).with_batch_config(batches).build();
        let resource = opentelemetry_sdk::Resource::builder().with_service_name("weir").build();
        Ok(SdkTracerProvider::builder()
            .with_span_processor(processor)
            .with_resource(resource)
            .with_id_generator(PlannedIds::default())
            .build())
    })
    .join()
    .map_err(|_| anyhow::anyhow!("starting the OTLP exporter panicked"))??;
    opentelemetry::global::set_tracer_provider(built.clone());
    weir_host::pipeline::trace::export_spans();
    tracing::info!(%url, "exporting traced messages' pipeline spans over OTLP");
    Ok(built)
}

/// Bind the Kafka listener; what it advertises defaults to the address it bound.
async fn kafka_door(
    addr: &str,
    advertise: Option<&str>,
) -> anyhow::Result<(TcpListener, server::Door, std::net::SocketAddr)> {
    let listener = TcpListener::bind(addr).await.with_context(|| {
        format!("cannot listen for Kafka clients on {addr}; is another broker there? pick another with --kafka-listen")
    })?;
    let bound = listener.local_addr()?;
    let advertise = match advertise {
        None => (bound.ip().to_string(), bound.port()),
        Some(a) => {
            let (host, port) = a.rsplit_once(':').context("--kafka-advertise takes HOST:PORT")?;
            (host.to_string(), port.parse().with_context(|| format!("--kafka-advertise: `{port}` is not a port"))?)
        }
    };
    tracing::info!(%bound, advertise = %format!("{}:{}", advertise.0, advertise.1), "serving the Kafka protocol");
    Ok((listener, server::Door::Kafka(Arc::new(server::kafka::KafkaSettings { advertise })), bound))
}

/// How often the token file's modification time is looked at.
const TOKEN_FILE_POLL: Duration = Duration::from_secs(1);

/// Read the token file again on SIGHUP or when its modification time or size changes, and put
/// it in force. A file that does not parse keeps the tokens in force, with an error logged.
async fn reload_tokens(path: PathBuf, broker: std::sync::Weak<Broker>) {
    use tokio::signal::unix::{SignalKind, signal};
    let stamp = |p: &PathBuf| std::fs::metadata(p).ok().map(|m| (m.modified().ok(), m.len()));
    let mut seen = stamp(&path);
    let mut hup = signal(SignalKind::hangup()).ok();
    loop {
        let asked = tokio::select! {
            _ = async { match &mut hup { Some(h) => h.recv().await, None => std::future::pending().await } } => true,
            () = tokio::time::sleep(TOKEN_FILE_POLL) => false,
        };
        let now = stamp(&path);
        if !asked && now == seen {
            continue;
        }
        seen = now;
        let Some(broker) = broker.upgrade() else { return };
        match Tokens::load(&path) {
            Ok(tokens) => match broker.reload_tokens(tokens).await {
                Ok(()) => tracing::info!(file = %path.display(), "token file reloaded"),
                Err(e) => tracing::error!(error = %e, "token file not reloaded"),
            },
            Err(e) => tracing::error!(error = %e, "token file not reloaded; the tokens in force stay"),
        }
    }
}

fn init_tracing() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("WEIR_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).init();
}

/// SIGINT or SIGTERM.
async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).expect("install SIGTERM handler");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}
