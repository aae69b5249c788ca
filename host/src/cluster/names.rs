//! Stream names and subjects: weir names escaped into the characters NATS allows in a
//! stream name and a subject token (letters, digits, `-`; everything else as `_xx` hex).

/// `name` as one stream-name-safe, subject-token-safe string; distinct names stay distinct.
pub fn escape(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    for b in name.bytes() {
        if b.is_ascii_alphanumeric() || b == b'-' {
            out.push(b as char);
        } else {
            out.push_str(&format!("_{b:02x}"));
        }
    }
    out
}

/// The topic name an escaped key stands for.
pub fn unescape(escaped: &str) -> String {
    let b = escaped.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'_'
            && let Some(v) = escaped.get(i + 1..i + 3).and_then(|h| u8::from_str_radix(h, 16).ok())
        {
            out.push(v);
            i += 3;
            continue;
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The names of one weir cluster's streams, subjects and buckets: every one carries the
/// cluster's namespace (`--cluster-name`), so several weir clusters can share one JetStream
/// cluster without seeing each other's data.
#[derive(Debug, Clone)]
pub struct Names {
    /// The namespace as a subject token and bucket prefix (`weir`).
    ns: String,
    /// The namespace in stream names (`WEIR`).
    upper: String,
}

impl Names {
    /// The names of cluster `namespace` (letters, digits and `-`).
    pub fn new(namespace: &str) -> Names {
        let ns = escape(namespace);
        Names { upper: ns.to_uppercase(), ns }
    }

    /// A bucket or object store of this cluster (`weir-meta`).
    pub fn bucket(&self, what: &str) -> String {
        format!("{}-{what}", self.ns)
    }

    /// The stream holding partition `p` of `topic`.
    pub fn topic_stream(&self, topic: &str, p: u32) -> String {
        format!("{}-T-{}-{p}", self.upper, escape(topic))
    }

    /// Where producers append to partition `p` of `topic`.
    pub fn produce_subject(&self, topic: &str, p: u32) -> String {
        format!("{}.t.{}.{p}", self.ns, escape(topic))
    }

    /// Where a pipeline's forwarder appends outputs of its source partition `source` to
    /// partition `p` of `topic`: a subject of its own, so the last record on it says how far
    /// the forwarder got, and an expected sequence on it fences a second forwarder.
    pub fn forward_subject(&self, topic: &str, p: u32, pipeline: &str, source: u32) -> String {
        format!("{}.t.{}.{p}.f.{}.{source}", self.ns, escape(topic), escape(pipeline))
    }

    /// The stream holding a pipeline's commits (outputs, state, progress) of every partition.
    pub fn commit_stream(&self, pipeline: &str) -> String {
        format!("{}-C-{}", self.upper, escape(pipeline))
    }

    /// Every subject of a pipeline's commit stream.
    pub fn commit_subjects(&self, pipeline: &str) -> String {
        format!("{}.c.{}.>", self.ns, escape(pipeline))
    }

    /// Subjects of the commit stream for source partition `p`: `…commit` (progress, the
    /// fence), `…out.N` (packed outputs), `…state.HEX` (latest value of one state key).
    pub fn commit_subject(&self, pipeline: &str, p: u32, leaf: &str) -> String {
        format!("{}.c.{}.{p}.{leaf}", self.ns, escape(pipeline))
    }

    /// The stream of the queues' messages and delivery states (one per cluster).
    pub fn queue_stream(&self) -> String {
        format!("{}-QUEUES", self.upper)
    }

    /// The subject of one key of the queues' key space (hex), or `fence`.
    pub fn queue_subject(&self, leaf: &str) -> String {
        format!("{}.q.{leaf}", self.ns)
    }

    /// Where every node takes questions asked of all of them.
    pub fn all_inbox(&self) -> String {
        format!("{}.nodes.all", self.ns)
    }

    /// Where node `node` takes commands other nodes hand it.
    pub fn node_inbox(&self, node: &str) -> String {
        format!("{}.node.{}", self.ns, escape(node))
    }
}

/// Lower-case hex of `bytes` (state keys as subject tokens).
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The bytes of `hex`, if it is hex.
pub fn unhex(hex: &str) -> Option<Vec<u8>> {
    if !hex.len().is_multiple_of(2) {
        return None;
    }
    (0..hex.len()).step_by(2).map(|i| u8::from_str_radix(hex.get(i..i + 2)?, 16).ok()).collect()
}

/// A group's offset key in the offsets bucket (KV keys allow `-_=./` and alphanumerics).
pub fn offset_key(group: &str, topic: &str, p: u32) -> String {
    format!("{}.{}.{p}", escape(group), escape(topic))
}

/// `(group, topic, partition)` of an offset key.
pub fn parse_offset_key(key: &str) -> Option<(String, String, u32)> {
    let mut parts = key.split('.');
    let (g, t, p) = (parts.next()?, parts.next()?, parts.next()?.parse().ok()?);
    parts.next().is_none().then(|| (unescape(g), unescape(t), p))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escaping_keeps_names_apart_and_safe() {
        assert_eq!(escape("orders"), "orders");
        assert_eq!(escape("a.b"), "a_2eb");
        assert_ne!(escape("a_b"), escape("a.b"));
        assert_ne!(escape("a_2eb"), escape("a.b"));
        assert!(escape("x y*>/\\ü").bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'));
        assert_eq!(unhex(&hex(b"\x00\xffkey")), Some(b"\x00\xffkey".to_vec()));
        assert_eq!(unhex("zz"), None);
        assert_eq!(parse_offset_key(&offset_key("g.1", "t_x", 3)), Some(("g.1".into(), "t_x".into(), 3)));
        let n = Names::new("test-7");
        assert_eq!(n.topic_stream("a.b", 2), "TEST-7-T-a_2eb-2");
        assert_eq!(n.produce_subject("a", 0), "test-7.t.a.0");
    }
}
