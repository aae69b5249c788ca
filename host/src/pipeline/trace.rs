//! W3C trace context through pipeline steps. A message that carries a valid `traceparent`
//! keeps its trace: every output of a step carries the same trace id with a span id of its
//! own (the step's span for that message, child of the input's), whether the plugin copied
//! the header, changed it or dropped it. Each step also appends `pipeline#step plugin@version
//! µs` to the `weir-trace` header, so a message's path through pipelines (which steps, which
//! versions, how long each step's batch took) is stored with it and shown by the console; and
//! each step's span is logged as a `weir::trace` event (`WEIR_LOG=weir::trace=debug`).
//!
//! Span ids are derived from the parent span, the pipeline, the step and the output's index,
//! not drawn at random: a batch that is run again after a crash stamps the same ids, as it
//! writes the same outputs. With `weir serve --otlp-endpoint`, each step's span is also
//! exported through OpenTelemetry (OTLP over HTTP) with the same ids, so a trace viewer shows
//! the message's path beside the services that produced and consume it.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, SystemTime};

use crate::runtime::Message;

/// Whether spans are exported (an OpenTelemetry tracer provider is installed).
static EXPORTING: AtomicBool = AtomicBool::new(false);

/// Export each step's span through the global OpenTelemetry tracer provider from now on
/// (the server installs one for `--otlp-endpoint`). Without it, nothing is built.
pub fn export_spans() {
    EXPORTING.store(true, Ordering::Release);
}

std::thread_local! {
    /// The span id of the span being built on this thread: OpenTelemetry's SDK draws span
    /// ids from the provider's id generator, which asks here first ([`planned_span_id`]).
    static PLANNED: std::cell::Cell<Option<[u8; 8]>> = const { std::cell::Cell::new(None) };
}

/// The id planned for the span this thread is building, if any (taken: asked once). The
/// server's OpenTelemetry id generator uses it, so an exported span has the id the message's
/// `traceparent` carries.
pub fn planned_span_id() -> Option<[u8; 8]> {
    PLANNED.with(std::cell::Cell::take)
}

/// The W3C trace context header.
pub const TRACEPARENT: &str = "traceparent";

/// Where each step a traced message went through is recorded.
pub const TRACE_PATH: &str = "weir-trace";

/// The longest `weir-trace` kept: the oldest entries go first.
const TRACE_PATH_MAX: usize = 1024;

/// One step of one batch, as traces record it.
pub(super) struct StepTrace<'a> {
    pub pipeline: &'a str,
    /// From 1.
    pub step: usize,
    /// `plugin@version`.
    pub label: &'a str,
    /// The step's call for the whole batch, µs.
    pub took_us: u64,
}

/// A message's trace context: `00-TRACE-PARENT-FLAGS`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Context {
    trace: String,
    parent: String,
    flags: String,
}

/// The trace context of `headers`, if they carry a valid `traceparent` (an invalid one is
/// ignored, as W3C asks: the message is then not traced).
pub(super) fn context(headers: &[(String, String)]) -> Option<Context> {
    let (_, value) = headers.iter().find(|(k, _)| k == TRACEPARENT)?;
    let mut parts = value.trim().split('-');
    let (version, trace, parent, flags) = (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
    let hex =
        |s: &str, len: usize| s.len() == len && s.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
    let valid = hex(version, 2)
        && version != "ff"
        && hex(trace, 32)
        && trace.bytes().any(|b| b != b'0')
        && hex(parent, 16)
        && parent.bytes().any(|b| b != b'0')
        && hex(flags, 2)
        && (version != "00" || parts.next().is_none());
    valid.then(|| Context { trace: trace.to_string(), parent: parent.to_string(), flags: flags.to_string() })
}

/// Stamp output `index` of a traced input with the step's child span and its path entry.
pub(super) fn stamp(msg: &mut Message, ctx: &Context, step: &StepTrace<'_>, index: usize) {
    let seed = format!("{}/{}/{}/{}/{}/{index}", ctx.parent, step.pipeline, step.step, msg.partition, msg.offset);
    let mut span = twox_hash::XxHash64::oneshot(0x7765_6972, seed.as_bytes());
    if span == 0 {
        span = 1;
    }
    if EXPORTING.load(Ordering::Acquire) {
        export(ctx, span, step, msg);
    }
    let span = format!("{span:016x}");
    tracing::debug!(
        target: "weir::trace",
        trace_id = %ctx.trace,
        span_id = %span,
        parent_span_id = %ctx.parent,
        pipeline = step.pipeline,
        step = step.step,
        plugin = step.label,
        batch_us = step.took_us,
        offset = msg.offset,
        "plugin step"
    );
    let traceparent = format!("00-{}-{span}-{}", ctx.trace, ctx.flags);
    let entry = format!("{}#{} {} {}us", step.pipeline, step.step, step.label, step.took_us);
    set(&mut msg.headers, TRACEPARENT, traceparent);
    let path = match msg.headers.iter().find(|(k, _)| k == TRACE_PATH) {
        Some((_, before)) => bounded(format!("{before},{entry}")),
        None => entry,
    };
    set(&mut msg.headers, TRACE_PATH, path);
}

/// The step's span, child of the message's, through OpenTelemetry: it ends now and began the
/// step's batch time ago.
fn export(ctx: &Context, span: u64, step: &StepTrace<'_>, msg: &Message) {
    use opentelemetry::KeyValue;
    use opentelemetry::trace::{Span, Tracer};
    let Some(cx) = remote_parent(ctx) else { return };
    let tracer = opentelemetry::global::tracer("weir");
    let end = SystemTime::now();
    let builder = tracer
        .span_builder(format!("{} step {} {}", step.pipeline, step.step, step.label))
        .with_start_time(end - Duration::from_micros(step.took_us))
        .with_attributes([
            KeyValue::new("weir.pipeline", step.pipeline.to_string()),
            KeyValue::new("weir.step", step.step as i64),
            KeyValue::new("weir.plugin", step.label.to_string()),
            KeyValue::new("weir.partition", i64::from(msg.partition)),
            KeyValue::new("weir.offset", msg.offset as i64),
        ]);
    PLANNED.with(|p| p.set(Some(span.to_be_bytes())));
    let mut built = tracer.build_with_context(builder, &cx);
    PLANNED.with(std::cell::Cell::take);
    built.end_with_timestamp(end);
}

/// The trace contexts of a commit's traced records, when spans are exported (else none):
/// after the commit is acknowledged, each gets a `commit` span ([`export_commits`]).
pub(super) fn traced_in(commit: &crate::storage::Commit) -> Vec<Context> {
    if !EXPORTING.load(Ordering::Acquire) {
        return Vec::new();
    }
    commit
        .appends
        .iter()
        .flat_map(|a| &a.records)
        .filter(|r| !r.headers.is_empty())
        .filter_map(|r| context(&r.headers))
        .collect()
}

/// A `commit` span for each traced record of a commit that was submitted `took` ago and is
/// now durable: the last span of the message's path through this pipeline.
pub(super) fn export_commits(pipeline: &str, traced: Vec<Context>, took: Duration) {
    use opentelemetry::trace::{Span, Tracer};
    if traced.is_empty() {
        return;
    }
    let tracer = opentelemetry::global::tracer("weir");
    let end = SystemTime::now();
    for ctx in traced {
        let Some(cx) = remote_parent(&ctx) else { continue };
        let builder = tracer
            .span_builder(format!("{pipeline} commit"))
            .with_start_time(end - took)
            .with_attributes([opentelemetry::KeyValue::new("weir.pipeline", pipeline.to_string())]);
        tracer.build_with_context(builder, &cx).end_with_timestamp(end);
    }
}

/// The OpenTelemetry context whose remote parent is `ctx`'s span.
fn remote_parent(ctx: &Context) -> Option<opentelemetry::Context> {
    use opentelemetry::trace::{SpanContext, SpanId, TraceContextExt, TraceFlags, TraceId, TraceState};
    let trace = TraceId::from_hex(&ctx.trace).ok()?;
    let parent = SpanId::from_hex(&ctx.parent).ok()?;
    let flags = TraceFlags::new(u8::from_str_radix(&ctx.flags, 16).ok()?);
    let span = SpanContext::new(trace, parent, flags, true, TraceState::default());
    Some(opentelemetry::Context::new().with_remote_span_context(span))
}

/// Keep the newest entries within [`TRACE_PATH_MAX`].
fn bounded(mut path: String) -> String {
    while path.len() > TRACE_PATH_MAX {
        match path.find(',') {
            Some(i) => path.drain(..=i),
            None => return String::new(),
        };
    }
    path
}

/// Replace the header `name`, or add it while the message has room for another header (a
/// message at the limit keeps its trace context but no longer records its path: tracing
/// never makes a valid message invalid).
fn set(headers: &mut Vec<(String, String)>, name: &str, value: String) {
    let room = headers.len() < crate::limits::MAX_HEADERS;
    match headers.iter_mut().find(|(k, _)| k == name) {
        Some((_, v)) => *v = value,
        None if room => headers.push((name.to_string(), value)),
        None => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PARENT: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

    fn msg(headers: Vec<(String, String)>) -> Message {
        Message { key: None, value: bytes::Bytes::new(), headers, timestamp_ms: 0, partition: 0, offset: 7 }
    }

    #[test]
    fn outputs_keep_the_trace_with_a_span_of_their_own() {
        let headers = vec![(TRACEPARENT.to_string(), PARENT.to_string())];
        let ctx = context(&headers).unwrap();
        let step = StepTrace { pipeline: "p", step: 1, label: "f@2", took_us: 5 };
        let mut m = msg(headers);
        stamp(&mut m, &ctx, &step, 0);
        let tp = &m.headers.iter().find(|(k, _)| k == TRACEPARENT).unwrap().1;
        assert!(tp.starts_with("00-4bf92f3577b34da6a3ce929d0e0e4736-") && tp.ends_with("-01"), "{tp}");
        assert_ne!(tp, PARENT);
        let again = context(&m.headers).unwrap();
        let mut m2 = msg(vec![]);
        stamp(&mut m2, &again, &StepTrace { step: 2, ..step }, 0);
        assert_eq!(m2.headers.iter().find(|(k, _)| k == TRACE_PATH).unwrap().1, "p#2 f@2 5us");
        let mut m3 = m.clone();
        stamp(&mut m3, &again, &StepTrace { pipeline: "p", step: 2, label: "g@1", took_us: 9 }, 0);
        assert_eq!(m3.headers.iter().find(|(k, _)| k == TRACE_PATH).unwrap().1, "p#1 f@2 5us,p#2 g@1 9us");
    }

    #[test]
    fn a_message_at_the_header_limit_stays_valid() {
        let mut headers: Vec<(String, String)> =
            (1..crate::limits::MAX_HEADERS).map(|i| (format!("h{i}"), "v".into())).collect();
        headers.push((TRACEPARENT.to_string(), PARENT.to_string()));
        let ctx = context(&headers).unwrap();
        let mut m = msg(headers);
        stamp(&mut m, &ctx, &StepTrace { pipeline: "p", step: 1, label: "f@1", took_us: 1 }, 0);
        assert_eq!(m.headers.len(), crate::limits::MAX_HEADERS);
        assert_ne!(m.headers.last().unwrap().1, PARENT, "the trace context still moves on");
    }

    #[test]
    fn invalid_contexts_are_ignored() {
        for bad in [
            "",
            "00-0000-00f067aa0ba902b7-01",
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
        ] {
            assert_eq!(context(&[(TRACEPARENT.to_string(), bad.to_string())]), None, "{bad}");
        }
        assert!(bounded("a".repeat(2000)).is_empty());
        assert_eq!(bounded(format!("{},b", "a".repeat(1500))), "b");
    }
}
