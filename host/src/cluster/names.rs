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

/// The stream holding partition `p` of `topic`.
pub fn topic_stream(topic: &str, p: u32) -> String {
    format!("WEIR-T-{}-{p}", escape(topic))
}

/// Where producers append to partition `p` of `topic`.
pub fn produce_subject(topic: &str, p: u32) -> String {
    format!("weir.t.{}.{p}", escape(topic))
}

/// Where a pipeline's forwarder appends outputs of its source partition `source` to
/// partition `p` of `topic`: a subject of its own, so the last record on it says how far
/// the forwarder got, and an expected sequence on it fences a second forwarder.
pub fn forward_subject(topic: &str, p: u32, pipeline: &str, source: u32) -> String {
    format!("weir.t.{}.{p}.f.{}.{source}", escape(topic), escape(pipeline))
}

/// The stream holding a pipeline's commits (outputs, state, progress) of every partition.
pub fn commit_stream(pipeline: &str) -> String {
    format!("WEIR-C-{}", escape(pipeline))
}

/// Subjects of the commit stream for source partition `p`: `…commit` (progress, the fence),
/// `…out.N` (packed outputs), `…state.HEX` (latest value of one state key).
pub fn commit_subject(pipeline: &str, p: u32, leaf: &str) -> String {
    format!("weir.c.{}.{p}.{leaf}", escape(pipeline))
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
    }
}
