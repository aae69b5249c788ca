//! What a plugin step works on, as the host holds it, whichever ABI version the plugin
//! speaks: messages whose key and value are `Bytes` taken from the log without a copy, and
//! one outcome per message. The worker, the shadow comparison and the failure policies see
//! only these.

use bytes::Bytes;

/// One message handed to a step.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    /// Partitioning key.
    pub key: Option<Bytes>,
    /// Payload.
    pub value: Bytes,
    /// Headers, in order.
    pub headers: Vec<(String, String)>,
    /// Append time in the source partition, ms since the Unix epoch.
    pub timestamp_ms: u64,
    /// Source partition.
    pub partition: u32,
    /// Source offset (outputs of a step keep their input's).
    pub offset: u64,
}

/// The messages of one call, all from one source.
#[derive(Debug, Clone)]
pub struct Batch {
    /// The pipeline's source topic (or queue).
    pub topic: String,
    /// The messages, in order.
    pub messages: Vec<Message>,
}

/// A message a step emitted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Output {
    /// Partitioning key.
    pub key: Option<Bytes>,
    /// Payload.
    pub value: Bytes,
    /// Headers, in order.
    pub headers: Vec<(String, String)>,
    /// `None`: the next step (or the sink); `Some`: routed to that topic.
    pub topic: Option<String>,
}

/// Why a step failed on a message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    /// What went wrong (bounded by the host).
    pub message: String,
    /// Whether another attempt may succeed.
    pub retryable: bool,
}

/// What became of one input.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Zero or more outputs.
    Emit(Vec<Output>),
    /// The input passes on unchanged, without crossing back.
    Keep,
    /// The input, unchanged, routed to this topic.
    Forward(String),
    /// Filtered out on purpose.
    Drop,
    /// Failed.
    Fail(Failure),
}

impl Output {
    /// Bytes this output adds to its batch's output budget.
    pub fn size(&self) -> usize {
        self.value.len()
            + self.key.as_ref().map_or(0, Bytes::len)
            + self.topic.as_ref().map_or(0, String::len)
            + self.headers.iter().map(|(n, v)| n.len() + v.len()).sum::<usize>()
    }
}
