//! Cycles: a pipeline whose outputs reach its own source — its sink, or a topic a step routes
//! to, feeding the source directly or through other pipelines — would feed itself until the
//! disk is full. Such a route is refused unless the spec sets `max_hops`; then each message
//! carries how many times it went around (`weir-hops`, as RabbitMQ's `x-death` counts
//! dead-letter cycles) and fails with the reason past the bound. The pipeline with
//! `max_hops` counts the trips (others in its cycle pass their sink outputs on), from the
//! header its input carries: a plugin in the cycle that drops headers restarts the count.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Mutex;

use super::spec::PipelineSpec;
use crate::runtime::Message;

/// The header counting a message's trips around a cycle.
pub const HOPS_HEADER: &str = "weir-hops";
/// Largest `max_hops` a spec may set.
pub const MAX_HOPS_LIMIT: u32 = 1000;

/// Which topic feeds which: each running pipeline's source topic (none for a queue) and sink.
#[derive(Default)]
pub struct Topology(Mutex<BTreeMap<String, (Option<String>, String)>>);

impl Topology {
    /// Note a running pipeline.
    pub fn set(&self, spec: &PipelineSpec) {
        let edge = (spec.source.topic().map(str::to_string), spec.sink.clone());
        self.0.lock().expect("topology").insert(spec.name.clone(), edge);
    }

    /// Forget a pipeline.
    pub fn remove(&self, name: &str) {
        self.0.lock().expect("topology").remove(name);
    }

    /// The topics whose records reach `spec`'s source: the source itself and, transitively,
    /// the sources of other pipelines whose sink is one of them. Empty for a queue source.
    pub fn upstream(&self, spec: &PipelineSpec) -> HashSet<String> {
        let mut set: HashSet<String> = spec.source.topic().map(str::to_string).into_iter().collect();
        let edges = self.0.lock().expect("topology");
        loop {
            let before = set.len();
            for (name, (source, sink)) in edges.iter() {
                if name != &spec.name
                    && set.contains(sink)
                    && let Some(s) = source
                {
                    set.insert(s.clone());
                }
            }
            if set.len() == before {
                return set;
            }
        }
    }
}

/// Why `spec` may not be created as it is: its sink feeds its own source without `max_hops`,
/// or `max_hops` is out of range.
pub fn check_spec(spec: &PipelineSpec, topology: &Topology) -> Result<(), String> {
    if let Some(n) = spec.max_hops
        && !(1..=MAX_HOPS_LIMIT).contains(&n)
    {
        return Err(format!("max_hops must be between 1 and {MAX_HOPS_LIMIT}, got {n}"));
    }
    if spec.max_hops.is_none() && topology.upstream(spec).contains(&spec.sink) {
        return Err(format!(
            "pipeline `{}` writes to `{}`, which feeds its own source `{}`{}: a cycle, which would feed \
             itself until the disk is full. Set `max_hops` (e.g. 3) to allow it, each message going \
             around at most that many times",
            spec.name,
            spec.sink,
            spec.source,
            if spec.source.topic() == Some(spec.sink.as_str()) { "" } else { " through other pipelines" }
        ));
    }
    Ok(())
}

/// One batch's view of cycles: which targets are upstream (read from the topology only if
/// the batch routes an output, or the pipeline allows a cycle), and each source message's
/// hops (by offset, which every output of a message keeps through the steps).
pub struct Hops<'a> {
    spec: &'a PipelineSpec,
    topology: &'a Topology,
    upstream: std::cell::OnceCell<HashSet<String>>,
    hops: HashMap<u64, u32>,
}

impl<'a> Hops<'a> {
    /// For a batch of `messages` read by `spec`.
    pub fn new(spec: &'a PipelineSpec, topology: &'a Topology, messages: &[Message]) -> Hops<'a> {
        let hops = match spec.max_hops {
            Some(_) => messages.iter().filter_map(|m| Some((m.offset, count(m)?))).collect(),
            None => HashMap::new(),
        };
        Hops { spec, topology, upstream: std::cell::OnceCell::new(), hops }
    }

    /// Whether an output to `topic` goes around a cycle.
    pub fn is_cycle(&self, topic: &str) -> bool {
        self.upstream.get_or_init(|| self.topology.upstream(self.spec)).contains(topic)
    }

    /// Let `msg` go to `topic`, upstream of the pipeline: count the hop, or refuse it.
    pub fn admit(&self, topic: &str, msg: &mut Message) -> Result<(), String> {
        let Some(max) = self.spec.max_hops else {
            return Err(format!(
                "a step routed an output to topic `{topic}`, which feeds pipeline `{}`'s own source `{}`: a \
                 cycle, refused. Set `max_hops` in the pipeline's spec to allow it, bounded",
                self.spec.name, self.spec.source
            ));
        };
        let hops = self.hops.get(&msg.offset).copied().unwrap_or(0).saturating_add(1);
        if hops > max {
            return Err(format!(
                "the message went around the cycle through topic `{topic}` {max} time(s), pipeline `{}`'s max_hops",
                self.spec.name
            ));
        }
        msg.headers.retain(|(k, _)| k != HOPS_HEADER);
        msg.headers.push((HOPS_HEADER.to_string(), hops.to_string()));
        Ok(())
    }
}

/// A message's hop count (absent or unreadable: none).
fn count(m: &Message) -> Option<u32> {
    m.headers.iter().find(|(k, _)| k == HOPS_HEADER).and_then(|(_, v)| v.parse().ok())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pipeline::StepSpec;

    fn message(offset: u64) -> Message {
        Message { key: None, value: "x".into(), headers: Vec::new(), timestamp_ms: 0, partition: 0, offset }
    }

    fn spec(name: &str, source: &str, sink: &str) -> PipelineSpec {
        PipelineSpec::new(name, source, vec![StepSpec::new("p", &[])], sink)
    }

    #[test]
    fn a_sink_feeding_the_source_through_another_pipeline_is_a_cycle() {
        let t = Topology::default();
        t.set(&spec("a", "t1", "t2"));
        assert!(check_spec(&spec("b", "t3", "t1"), &t).is_ok(), "t3 → t1 → t2: no cycle");
        let err = check_spec(&spec("b", "t2", "t1"), &t).unwrap_err();
        assert!(err.contains("through other pipelines") && err.contains("max_hops"), "{err}");
        assert!(check_spec(&spec("c", "t1", "t1"), &t).unwrap_err().contains("own source `t1`:"));
        let mut allowed = spec("b", "t2", "t1");
        allowed.max_hops = Some(3);
        assert!(check_spec(&allowed, &t).is_ok());
        allowed.max_hops = Some(0);
        assert!(check_spec(&allowed, &t).is_err());
    }

    #[test]
    fn hops_are_counted_from_the_source_message_and_bounded() {
        let t = Topology::default();
        let mut s = spec("a", "t1", "t2");
        s.max_hops = Some(2);
        let mut m = message(7);
        m.headers.push((HOPS_HEADER.into(), "1".into()));
        let hops = Hops::new(&s, &t, std::slice::from_ref(&m));
        assert!(hops.is_cycle("t1") && !hops.is_cycle("t2"));
        let mut out = message(7);
        hops.admit("t1", &mut out).unwrap();
        assert_eq!(count(&out), Some(2));
        let h2 = Hops::new(&s, &t, std::slice::from_ref(&out));
        assert!(h2.admit("t1", &mut out.clone()).unwrap_err().contains("max_hops"));
    }
}
