//! What a pipeline is — its spec, as the broker holds it — and what its status reports.

use std::collections::BTreeMap;

use crate::auth::{Kind, Need, Permission};

/// What a pipeline reads, runs and writes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PipelineSpec {
    /// Name.
    pub name: String,
    /// What it reads: a topic partition by partition, or a queue with competing workers.
    pub source: Source,
    /// Consumer group holding the pipeline's offsets; default `pipeline.<name>`.
    pub group: Option<String>,
    /// Steps, in order.
    pub steps: Vec<StepSpec>,
    /// Topic receiving the last step's outputs that are not routed elsewhere.
    pub sink: String,
    /// Where to start when the group has no committed offset.
    pub start: StartPosition,
    /// Messages per batch (default [`crate::limits::PIPELINE_BATCH_MESSAGES`]).
    pub batch_max_messages: Option<usize>,
    /// What happens to a message a step fails on.
    pub on_error: ErrorPolicy,
    /// Attempts per message before the policy applies (default: 1 for `halt`, 10 for
    /// `retry`, 3 otherwise). Only retryable failures and traps are tried again.
    pub max_attempts: Option<u32>,
    /// Wait before the first retry, doubling each time up to 30 s (default 50 ms).
    pub backoff_ms: Option<u64>,
    /// Topic for dead letters (default `<name>.dlq`, created with the pipeline).
    pub dead_letter_topic: Option<String>,
    /// Most partitions processed at once (default: all of them).
    pub parallelism: Option<usize>,
    /// Allow a cycle — outputs into its own source, or a topic upstream of it — each message
    /// going around at most this many times (counted in its `weir-hops` header). Unset: such
    /// a route is refused.
    pub max_hops: Option<u32>,
}

/// Longest wait between two attempts at one message.
const BACKOFF_MAX_MS: u64 = 30_000;

impl PipelineSpec {
    /// A pipeline with defaults for everything but its topology (`source`: `NAME` or
    /// `queue:NAME`).
    pub fn new(name: &str, source: &str, steps: Vec<StepSpec>, sink: &str) -> PipelineSpec {
        PipelineSpec {
            name: name.into(),
            source: Source::parse(source),
            group: None,
            steps,
            sink: sink.into(),
            start: StartPosition::Earliest,
            batch_max_messages: None,
            on_error: ErrorPolicy::Halt,
            max_attempts: None,
            backoff_ms: None,
            dead_letter_topic: None,
            parallelism: None,
            max_hops: None,
        }
    }

    /// Whether `other` differs from this spec only in the versions its steps run (which a
    /// hot swap can apply without a restart).
    pub fn differs_only_in_versions(&self, other: &PipelineSpec) -> bool {
        let same_steps = self.steps.len() == other.steps.len()
            && self
                .steps
                .iter()
                .zip(&other.steps)
                .all(|(a, b)| a.plugin_name() == b.plugin_name() && a.config == b.config);
        let strip = |s: &PipelineSpec| PipelineSpec { steps: Vec::new(), ..s.clone() };
        same_steps && strip(self) == strip(other)
    }

    /// The consumer group that holds this pipeline's source offsets.
    pub fn group(&self) -> String {
        self.group.clone().unwrap_or_else(|| format!("pipeline.{}", self.name))
    }

    /// Attempts per message before the failure policy applies.
    pub fn attempts(&self) -> u32 {
        self.max_attempts
            .unwrap_or(match self.on_error {
                ErrorPolicy::Halt => 1,
                ErrorPolicy::Retry => 10,
                ErrorPolicy::Skip | ErrorPolicy::DeadLetter => 3,
            })
            .max(1)
    }

    /// The wait before attempt `attempt + 1` (attempts count from 1).
    pub fn backoff(&self, attempt: u32) -> std::time::Duration {
        let base = self.backoff_ms.unwrap_or(50);
        let ms = base.saturating_mul(1u64 << (attempt - 1).min(20)).min(BACKOFF_MAX_MS);
        std::time::Duration::from_millis(ms)
    }

    /// The dead-letter topic.
    pub fn dead_letter_topic(&self) -> String {
        self.dead_letter_topic.clone().unwrap_or_else(|| format!("{}.dlq", self.name))
    }

    /// What running this pipeline needs from the identity it acts for: read on its source,
    /// write on its sink (and dead-letter topic, with that policy), read on each plugin.
    /// Topics a plugin routes outputs to are checked as they are written.
    pub fn needs(&self) -> Vec<Need<'_>> {
        let mut needs = vec![
            match &self.source {
                Source::Topic(t) => Need::on(Permission::Read, Kind::Topic, t.as_str()),
                Source::Queue(q) => Need::on(Permission::Read, Kind::Queue, q.as_str()),
            }
            .because("its source"),
        ];
        needs.push(Need::on(Permission::Write, Kind::Topic, self.sink.as_str()).because("its sink"));
        if self.on_error == ErrorPolicy::DeadLetter {
            needs.push(
                Need::on(Permission::Write, Kind::Topic, self.dead_letter_topic()).because("its dead-letter topic"),
            );
        }
        for s in &self.steps {
            needs.push(Need::on(Permission::Read, Kind::Plugin, s.plugin_name()).because("a step runs it"));
        }
        needs
    }
}

/// What a pipeline reads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// A topic, read partition by partition.
    Topic(String),
    /// A queue, drained by competing workers.
    Queue(String),
}

impl Source {
    /// `NAME` or `topic:NAME` (a topic), `queue:NAME` (a queue).
    pub fn parse(text: &str) -> Source {
        match text.split_once(':') {
            Some(("queue", q)) => Source::Queue(q.to_string()),
            Some(("topic", t)) => Source::Topic(t.to_string()),
            _ => Source::Topic(text.to_string()),
        }
    }

    /// The topic, if it is one.
    pub fn topic(&self) -> Option<&str> {
        match self {
            Source::Topic(t) => Some(t),
            Source::Queue(_) => None,
        }
    }

    /// The queue, if it is one.
    pub fn queue(&self) -> Option<&str> {
        match self {
            Source::Queue(q) => Some(q),
            Source::Topic(_) => None,
        }
    }

    /// The topic or queue name.
    pub fn name(&self) -> &str {
        match self {
            Source::Topic(n) | Source::Queue(n) => n,
        }
    }
}

impl std::fmt::Display for Source {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Source::Topic(t) => write!(f, "{t}"),
            Source::Queue(q) => write!(f, "queue:{q}"),
        }
    }
}

/// One step: a plugin and its config.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StepSpec {
    /// `NAME` (follows the live version, hot-swapped on deploy) or `NAME@V` (pinned).
    pub plugin: String,
    /// `key = value` config passed to the plugin's `init`.
    pub config: BTreeMap<String, String>,
}

impl StepSpec {
    /// A step running `plugin` with `config`.
    pub fn new(plugin: &str, config: &[(&str, &str)]) -> StepSpec {
        StepSpec { plugin: plugin.into(), config: config.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect() }
    }

    /// The plugin name, without a pinned version.
    pub fn plugin_name(&self) -> &str {
        self.plugin.split('@').next().unwrap_or(&self.plugin)
    }

    /// Whether the step pins a version (`NAME@V`) instead of following the live one.
    pub fn is_pinned(&self) -> bool {
        self.plugin.contains('@')
    }
}

/// Where a pipeline without committed offsets starts reading.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum StartPosition {
    /// The oldest stored record.
    #[default]
    Earliest,
    /// Only records produced after the pipeline starts.
    Latest,
}

/// What becomes of a message a step fails on, after its attempts.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum ErrorPolicy {
    /// Stop the pipeline at the message (it stays stopped across restarts).
    #[default]
    Halt,
    /// Keep retrying retryable failures and traps (up to the attempts), then halt.
    Retry,
    /// Count it as failed and go on.
    Skip,
    /// Write the original message to the dead-letter topic with headers saying why, and go on.
    DeadLetter,
}

/// A pipeline's run state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RunState {
    /// Processing.
    Running,
    /// Stopped by `weir pipeline pause`; `resume` continues at the committed offset.
    Paused,
    /// Stopped on a failure; the error says where and why. `resume` retries the message.
    Halted,
}

/// One step's counters in `weir pipeline status`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StepStats {
    /// Messages the step dealt with, each once: the attempt whose result counts (a batch
    /// re-run one by one after a failure, or a retried message, is not counted again).
    pub input: u64,
    /// Outputs it emitted (to the next step, the sink or routed), in results that count.
    pub output: u64,
    /// Inputs it dropped, in results that count.
    pub dropped: u64,
    /// Inputs that failed for good (after their retries): fail outcomes, traps, limits.
    pub errors: u64,
    /// `process` calls, every attempt included (what the step cost).
    pub calls: u64,
    /// Time spent inside the plugin, µs, every attempt included.
    pub busy_us: u64,
}

impl StepStats {
    /// Add `other`'s cost (calls, time) and, if its result counts, its outcomes.
    pub fn add(&mut self, other: &StepStats, outcomes: bool) {
        self.calls += other.calls;
        self.busy_us += other.busy_us;
        if outcomes {
            self.input += other.input;
            self.output += other.output;
            self.dropped += other.dropped;
            self.errors += other.errors;
        }
    }
}

/// What `weir pipeline apply` did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ApplyChange {
    /// The pipeline did not exist and was created.
    Created,
    /// The spec was already in effect.
    Unchanged,
    /// Only step versions changed: hot-swapped at batch boundaries, no restart.
    Swapped,
    /// The topology changed: the pipeline restarted at its committed offsets, state kept.
    Restarted,
}

/// Where `weir pipeline reset` moves a pipeline's source offsets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResetTarget {
    /// This offset in every partition (clamped to what is stored).
    Offset(u64),
    /// The first offset at or after this time (ms since the epoch) in each partition.
    Time(u64),
}

/// What `weir pipeline status` shows.
#[derive(Debug, Clone)]
pub struct PipelineStatus {
    /// The spec.
    pub spec: PipelineSpec,
    /// The token whose grants it acts with (`None` without a token file).
    pub owner: Option<String>,
    /// Run state.
    pub state: RunState,
    /// Live `plugin@version` of each step.
    pub plugins: Vec<String>,
    /// Shadow `plugin@version` of each step, if one runs beside it.
    pub shadows: Vec<Option<String>>,
    /// Input messages processed and committed.
    pub processed: u64,
    /// Outputs written (sink and routed).
    pub emitted: u64,
    /// Inputs dropped by a step.
    pub dropped: u64,
    /// Batches committed.
    pub batches: u64,
    /// Messages that failed every attempt (skipped or dead-lettered).
    pub failed: u64,
    /// Messages written to the dead-letter topic.
    pub dead_lettered: u64,
    /// Attempts repeated after a retryable failure or trap.
    pub retries: u64,
    /// Per-step counters.
    pub steps: Vec<StepStats>,
    /// Hot swaps applied (plugin version changes), summed over partitions.
    pub swaps: u64,
    /// 99th percentile of the time a partition stalled to swap versions, µs.
    pub swap_pause_p99_us: u64,
    /// `(partition, committed next offset, high watermark)` of a topic source.
    pub partitions: Vec<(u32, u64, u64)>,
    /// Messages not yet acked in a queue source.
    pub queue_depth: Option<u64>,
    /// The error that halted the pipeline, or else the last failure it handled.
    pub last_error: Option<String>,
    /// When the last handled failure happened, ms since the Unix epoch (`None` for a halt, or
    /// when another node of a cluster reported it).
    pub last_error_ms: Option<u64>,
}

impl PipelineStatus {
    /// Unprocessed records over all partitions (or in the queue).
    pub fn lag(&self) -> u64 {
        self.partitions.iter().map(|(_, c, hw)| hw.saturating_sub(*c)).sum::<u64>() + self.queue_depth.unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_follow_the_policy() {
        let mut s = PipelineSpec::new("p", "a", vec![StepSpec::new("x", &[])], "b");
        assert_eq!(
            (s.attempts(), s.dead_letter_topic(), s.group()),
            (1, "p.dlq".to_string(), "pipeline.p".to_string())
        );
        s.on_error = ErrorPolicy::DeadLetter;
        assert_eq!(s.attempts(), 3);
        assert_eq!(s.backoff(1).as_millis(), 50);
        assert_eq!(s.backoff(3).as_millis(), 200);
        assert_eq!(s.backoff(40).as_millis(), 30_000);
        assert!(StepSpec::new("x@2", &[]).is_pinned());
        assert_eq!(StepSpec::new("x@2", &[]).plugin_name(), "x");
    }
}
