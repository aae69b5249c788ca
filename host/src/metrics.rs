//! Prometheus metrics. Weir already counts what an operator watches (pipeline and step
//! counters, watermarks, queue depths, group offsets, the writer's group commits); a scrape
//! reads those where they live and renders them in Prometheus' text format. Only what nothing
//! else keeps is recorded here: request latency per command kind. Pipelines keep their own
//! batch latency histogram.
//!
//! Names follow Prometheus conventions: `weir_` prefix, base units (seconds, bytes),
//! `_total` for counters. Labels are bounded by what operators create (topics, partitions,
//! groups, queues, pipelines, steps); plugin versions appear only in an `_info` gauge.

use std::time::Duration;

use prometheus::{Encoder, HistogramOpts, HistogramVec, IntCounterVec, IntGaugeVec, Opts, Registry, TextEncoder};

use crate::broker::Broker;
use crate::pipeline::RunState;

/// What the broker records as requests complete.
pub struct Metrics {
    requests: HistogramVec,
    /// Records refused by a topic's schema check, by topic and reason.
    refused: IntCounterVec,
}

impl Default for Metrics {
    fn default() -> Self {
        let opts = HistogramOpts::new(
            "weir_request_duration_seconds",
            "Time from a request's start to its reply, by command (long polls included)",
        )
        .buckets(crate::types::LATENCY_BUCKETS.to_vec());
        let refused = IntCounterVec::new(
            Opts::new("weir_schema_refused_records_total", "Produced records refused by their topic's schema check"),
            &["topic", "reason"],
        )
        .expect("valid counter");
        Metrics { requests: HistogramVec::new(opts, &["command"]).expect("valid histogram"), refused }
    }
}

impl Metrics {
    /// Record one request of `kind` that took `took`.
    pub fn observe_request(&self, kind: &'static str, took: Duration) {
        self.requests.with_label_values(&[kind]).observe(took.as_secs_f64());
    }

    /// Count a record refused by `topic`'s schema check for `reason` (a fixed word).
    pub fn count_refused(&self, topic: &str, reason: &'static str) {
        self.refused.with_label_values(&[topic, reason]).inc();
    }
}

/// Everything, in Prometheus' text exposition format (version 0.0.4).
pub async fn render(broker: &Broker) -> String {
    // What the store holds is read first (a round trip each in a cluster); the rest is in
    // memory.
    let mut bounds = Vec::new();
    for topic in broker.store.topics().await.unwrap_or_default() {
        let b = broker.store.all_bounds(&topic).await.unwrap_or_default();
        bounds.push((topic, b));
    }
    let lags = broker.group_lags().await.unwrap_or_default();
    let statuses = broker.pipelines.list().await;
    let registry = Registry::new();
    let mut add = |c: Box<dyn prometheus::core::Collector>| {
        // Names are fixed here and unique, so registration cannot fail but on a bug.
        if let Err(e) = registry.register(c) {
            tracing::warn!(error = %e, "metric not registered");
        }
    };
    add(Box::new(broker.metrics.requests.clone()));
    add(Box::new(broker.metrics.refused.clone()));
    for h in broker.pipelines.batch_latencies() {
        add(Box::new(h));
    }
    topics(&bounds, &mut add);
    groups(lags, &bounds, &mut add);
    queues(broker, &mut add);
    pipelines(broker, statuses, &mut add);
    store(broker, &mut add);
    cluster(broker, &mut add);
    let mut out = Vec::new();
    TextEncoder::new().encode(&registry.gather(), &mut out).expect("text encoding into a Vec");
    String::from_utf8(out).expect("text format is UTF-8")
}

type Add<'a> = dyn FnMut(Box<dyn prometheus::core::Collector>) + 'a;

fn counter(name: &str, help: &str, labels: &[&str]) -> IntCounterVec {
    IntCounterVec::new(Opts::new(name, help), labels).expect("valid counter")
}

fn gauge(name: &str, help: &str, labels: &[&str]) -> IntGaugeVec {
    IntGaugeVec::new(Opts::new(name, help), labels).expect("valid gauge")
}

type Bounds = [(std::sync::Arc<crate::storage::Topic>, Vec<(u64, u64)>)];

fn topics(bounds: &Bounds, add: &mut Add<'_>) {
    let records_in = counter("weir_topic_records_in_total", "Records appended to the topic, ever", &["topic"]);
    let bytes_in = counter("weir_topic_bytes_in_total", "Bytes appended since the server started", &["topic"]);
    let records_out = counter("weir_topic_records_out_total", "Records read since the server started", &["topic"]);
    let bytes_out = counter("weir_topic_bytes_out_total", "Bytes read since the server started", &["topic"]);
    let watermark = gauge("weir_topic_high_watermark", "One past the last readable offset", &["topic", "partition"]);
    let start =
        gauge("weir_topic_log_start", "First offset still stored (retention moves it)", &["topic", "partition"]);
    for (topic, parts) in bounds {
        let name = topic.name.as_str();
        let mut total = 0;
        for (p, (log_start, hw)) in parts.iter().enumerate() {
            let p = p.to_string();
            watermark.with_label_values(&[name, &p]).set(*hw as i64);
            start.with_label_values(&[name, &p]).set(*log_start as i64);
            total += hw;
        }
        let (b_in, r_out, b_out) = topic.traffic().totals();
        records_in.with_label_values(&[name]).inc_by(total);
        bytes_in.with_label_values(&[name]).inc_by(b_in);
        records_out.with_label_values(&[name]).inc_by(r_out);
        bytes_out.with_label_values(&[name]).inc_by(b_out);
    }
    for c in [records_in, bytes_in, records_out, bytes_out] {
        add(Box::new(c));
    }
    add(Box::new(watermark));
    add(Box::new(start));
}

fn groups(lags: Vec<crate::broker::GroupLag>, bounds: &Bounds, add: &mut Add<'_>) {
    let lag = gauge(
        "weir_group_lag_records",
        "Records between a consumer group's committed offset and the high watermark",
        &["group", "topic", "partition"],
    );
    for g in lags {
        let topic = bounds.iter().find(|(t, _)| t.name == g.topic);
        for (p, committed, hw) in g.partitions {
            // Nothing committed yet: the group would start at the log start.
            let start = topic.and_then(|(_, b)| b.get(p as usize)).map_or(0, |b| b.0);
            let behind = hw.saturating_sub(committed.unwrap_or(start).max(start));
            lag.with_label_values(&[&g.group, &g.topic, &p.to_string()]).set(behind as i64);
        }
    }
    add(Box::new(lag));
}

fn queues(broker: &Broker, add: &mut Add<'_>) {
    let depth = gauge("weir_queue_messages", "Messages in a queue by state", &["queue", "state"]);
    let dead = counter(
        "weir_queue_dead_lettered_total",
        "Messages moved to the dead-letter queue since the server started",
        &["queue"],
    );
    for q in broker.queues.all() {
        let info = q.info();
        for (state, n) in [("ready", info.ready), ("delayed", info.waiting), ("in_flight", info.in_flight)] {
            depth.with_label_values(&[&q.name, state]).set(n as i64);
        }
        dead.with_label_values(&[&q.name]).inc_by(q.dead_lettered());
    }
    add(Box::new(depth));
    add(Box::new(dead));
}

fn pipelines(broker: &Broker, statuses: Vec<crate::pipeline::PipelineStatus>, add: &mut Add<'_>) {
    let p = &["pipeline"];
    let totals = [
        counter("weir_pipeline_inputs_total", "Input messages processed and committed", p),
        counter("weir_pipeline_outputs_total", "Outputs written (sink and routed)", p),
        counter("weir_pipeline_dropped_total", "Inputs dropped by a step", p),
        counter("weir_pipeline_failed_total", "Messages that failed every attempt", p),
        counter("weir_pipeline_dead_lettered_total", "Messages written to the dead-letter topic", p),
        counter("weir_pipeline_retries_total", "Attempts repeated after a retryable failure or trap", p),
        counter("weir_pipeline_batches_total", "Batches committed", p),
        counter("weir_pipeline_swaps_total", "Hot swaps applied, summed over partitions", p),
    ];
    let lag = gauge("weir_pipeline_lag_records", "Unprocessed records of the source", p);
    let state = gauge("weir_pipeline_state", "1 for the pipeline's run state", &["pipeline", "state"]);
    let pause = prometheus::GaugeVec::new(
        Opts::new("weir_pipeline_swap_pause_p99_seconds", "99th percentile of recent swap pauses"),
        p,
    )
    .expect("valid gauge");
    let s = &["pipeline", "step", "plugin"];
    let steps = [
        counter("weir_step_inputs_total", "Messages handed to the step", s),
        counter("weir_step_outputs_total", "Outputs the step emitted", s),
        counter("weir_step_dropped_total", "Inputs the step dropped", s),
        counter("weir_step_errors_total", "Calls that failed (fail outcomes, traps, limits)", s),
        counter("weir_step_calls_total", "process calls", s),
    ];
    let busy = prometheus::CounterVec::new(
        Opts::new("weir_step_plugin_seconds_total", "Time spent inside the plugin (its CPU time per batch, summed)"),
        s,
    )
    .expect("valid counter");
    let memory = gauge(
        "weir_step_plugin_memory_bytes",
        "Linear memory held by the step's live plugin instances (one per partition or worker)",
        s,
    );
    let info = gauge(
        "weir_step_info",
        "The plugin version each step runs (role: live or shadow)",
        &["pipeline", "step", "plugin", "version", "role"],
    );
    for st in statuses {
        let name = st.spec.name.as_str();
        let values =
            [st.processed, st.emitted, st.dropped, st.failed, st.dead_lettered, st.retries, st.batches, st.swaps];
        for (c, v) in totals.iter().zip(values) {
            c.with_label_values(&[name]).inc_by(v);
        }
        lag.with_label_values(&[name]).set(st.lag() as i64);
        for (label, s) in [("running", RunState::Running), ("paused", RunState::Paused), ("halted", RunState::Halted)] {
            state.with_label_values(&[name, label]).set(i64::from(st.state == s));
        }
        pause.with_label_values(&[name]).set(st.swap_pause_p99_us as f64 / 1e6);
        let held = broker.pipelines.step_memory(name);
        for (i, stats) in st.steps.iter().enumerate() {
            let live = st.plugins.get(i).map(String::as_str).unwrap_or("");
            let (plugin, version) = live.split_once('@').unwrap_or((live, ""));
            let step = (i + 1).to_string();
            let labels = [name, step.as_str(), plugin];
            let values = [stats.input, stats.output, stats.dropped, stats.errors, stats.calls];
            for (c, v) in steps.iter().zip(values) {
                c.with_label_values(&labels).inc_by(v);
            }
            busy.with_label_values(&labels).inc_by(stats.busy_us as f64 / 1e6);
            memory.with_label_values(&labels).set(held.get(i).copied().unwrap_or(0) as i64);
            info.with_label_values(&[name, &step, plugin, version, "live"]).set(1);
            if let Some(Some(shadow)) = st.shadows.get(i) {
                let (sp, sv) = shadow.split_once('@').unwrap_or((shadow, ""));
                info.with_label_values(&[name, &step, sp, sv, "shadow"]).set(1);
            }
        }
    }
    for c in totals.into_iter().chain(steps) {
        add(Box::new(c));
    }
    add(Box::new(busy));
    add(Box::new(memory));
    add(Box::new(lag));
    add(Box::new(state));
    add(Box::new(pause));
    add(Box::new(info));
}

/// A counter holding `v`, read where weir keeps it.
fn plain(name: &str, help: &str, v: u64) -> prometheus::IntCounter {
    let c = prometheus::IntCounter::new(name, help).expect("valid counter");
    c.inc_by(v);
    c
}

/// Cluster mode: this node's commits, fenced (refused zombie) commits, takeovers, live nodes.
fn cluster(broker: &Broker, add: &mut Add<'_>) {
    use std::sync::atomic::Ordering::Relaxed;
    let Some(c) = broker.store.cluster() else { return };
    add(Box::new(plain(
        "weir_cluster_commits_total",
        "Pipeline batches this node committed to JetStream",
        c.counters.commits.load(Relaxed),
    )));
    add(Box::new(plain(
        "weir_cluster_fenced_commits_total",
        "Commits of this node refused because a newer owner had committed (a zombie stopped)",
        c.counters.fenced_commits.load(Relaxed),
    )));
    add(Box::new(plain(
        "weir_cluster_takeovers_total",
        "Pipeline partitions this node took over",
        c.counters.takeovers.load(Relaxed),
    )));
    let live = prometheus::IntGauge::new("weir_cluster_live_nodes", "Nodes this node sees alive").expect("valid gauge");
    live.set(c.live_nodes().len() as i64);
    add(Box::new(live));
}

fn store(broker: &Broker, add: &mut Add<'_>) {
    use std::sync::atomic::Ordering::Relaxed;
    let stats = broker.store.write_stats();
    add(Box::new(plain(
        "weir_store_group_commits_total",
        "Group commits written (one RocksDB write each)",
        stats.groups.load(Relaxed),
    )));
    add(Box::new(plain("weir_store_wal_fsyncs_total", "Group commits written with fsync", stats.fsyncs.load(Relaxed))));
    add(Box::new(stats.write_seconds.clone()));
    add(Box::new(plain(
        "weir_store_commit_requests_total",
        "Commit requests folded into group commits (÷ group commits = mean group size)",
        stats.requests.load(Relaxed),
    )));
    let level = |name: &str, help: &str, v: u64| {
        let g = prometheus::IntGauge::new(name, help).expect("valid gauge");
        g.set(v as i64);
        g
    };
    // (metric, help, RocksDB property, summed over column families or the database's own)
    let properties = [
        (
            "weir_store_pending_compaction_bytes",
            "RocksDB's estimate of bytes compaction must rewrite",
            "rocksdb.estimate-pending-compaction-bytes",
            true,
        ),
        ("weir_store_write_stopped", "1 while RocksDB stops writes (a stall)", "rocksdb.is-write-stopped", false),
        (
            "weir_store_delayed_write_rate_bytes",
            "Write rate RocksDB slows writers to while it delays them, bytes per second (0: no delay)",
            "rocksdb.actual-delayed-write-rate",
            false,
        ),
        ("weir_store_memtable_bytes", "Bytes in RocksDB memtables", "rocksdb.cur-size-all-mem-tables", true),
    ];
    for (name, help, property, per_cf) in properties {
        add(Box::new(level(name, help, broker.store.rocksdb_property(property, per_cf))));
    }
    // Read now, so the gauges move while nothing is written.
    let _ = broker.store.check_space();
    let (free, floor, full) = broker.store.space();
    add(Box::new(level(
        "weir_store_free_bytes",
        "Free bytes in the data (or WAL) directory, the fuller one",
        free.min(i64::MAX as u64),
    )));
    add(Box::new(level(
        "weir_store_min_free_bytes",
        "Free bytes weir keeps (--min-free-space); below them appends are refused",
        floor,
    )));
    add(Box::new(level("weir_store_disk_full", "1 while appends are refused for lack of disk space", u64::from(full))));
    add(Box::new(level(
        "weir_store_write_failed",
        "1 after a write failed: the store refuses writes until restarted",
        u64::from(broker.store.poisoned().is_some()),
    )));
    if let Some(rss) = resident_bytes() {
        add(Box::new(level("process_resident_memory_bytes", "Resident memory of the weir process", rss)));
    }
}

/// The process's resident memory, from /proc (Linux).
fn resident_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let kib: u64 =
        status.lines().find_map(|l| l.strip_prefix("VmRSS:"))?.trim().trim_end_matches("kB").trim().parse().ok()?;
    Some(kib * 1024)
}
