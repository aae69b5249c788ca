//! Schemas a plugin declares ([`schemas!`](crate::schemas!)), carried in its component so the
//! host checks a pipeline's chain before it runs, and Confluent's wire framing (a zero byte,
//! the schema id, for Protobuf the message indexes, then the payload) for plugins that read
//! and write registry-framed records.

/// The custom section the host reads declarations from.
pub const SECTION: &str = "weir:schemas";

/// Declare what this plugin reads and writes; the host refuses a pipeline (or a new version
/// of a running one) whose neighbours do not fit. Each entry is `reads` or `writes`, with
/// `subject("NAME")` (the subject's latest version), or a schema inline: `avro(TEXT)`,
/// `json(TEXT)`, `protobuf(TEXT)` — usually `include_str!` of a schema file.
///
/// ```
/// weir_sdk::schemas! {
///     reads: subject("orders-value"),
///     writes: avro(r#"{"type":"record","name":"Total","fields":[{"name":"cents","type":"long"}]}"#),
/// }
/// # fn main() {}
/// ```
#[macro_export]
macro_rules! schemas {
    ($($direction:ident : $kind:ident ( $text:expr )),+ $(,)?) => {
        $( $crate::__schema_line!($direction, $kind, $text); )+
    };
}

#[doc(hidden)]
#[macro_export]
macro_rules! __schema_line {
    (reads, $kind:ident, $text:expr) => {
        $crate::__schema_line!(@emit "reads", $kind, $text);
    };
    (writes, $kind:ident, $text:expr) => {
        $crate::__schema_line!(@emit "writes", $kind, $text);
    };
    (@emit $direction:literal, $kind:ident, $text:expr) => {
        const _: () = {
            const PARTS: &[(&str, bool)] = &[
                ("{\"", false),
                ($direction, false),
                ("\":{", false),
                ($crate::__schema_kind!($kind), false),
                ($text, true),
                ("\"}}\n", false),
            ];
            const LEN: usize = $crate::schemas::line_len(PARTS);
            #[unsafe(link_section = "weir:schemas")]
            #[used]
            static LINE: [u8; LEN] = $crate::schemas::line(PARTS);
        };
    };
}

#[doc(hidden)]
#[macro_export]
macro_rules! __schema_kind {
    (subject) => {
        "\"subject\":\""
    };
    (avro) => {
        "\"schemaType\":\"AVRO\",\"schema\":\""
    };
    (json) => {
        "\"schemaType\":\"JSON\",\"schema\":\""
    };
    (protobuf) => {
        "\"schemaType\":\"PROTOBUF\",\"schema\":\""
    };
}

/// The length of a declaration line: `parts` joined, those marked `true` escaped as JSON
/// string contents. Runs at compile time.
#[doc(hidden)]
pub const fn line_len(parts: &[(&str, bool)]) -> usize {
    let mut n = 0;
    let mut p = 0;
    while p < parts.len() {
        let (text, escape) = parts[p];
        let bytes = text.as_bytes();
        let mut i = 0;
        while i < bytes.len() {
            n += if escape { escaped(bytes[i]).1 } else { 1 };
            i += 1;
        }
        p += 1;
    }
    n
}

/// The declaration line itself; `N` is [`line_len`] of the same parts.
#[doc(hidden)]
pub const fn line<const N: usize>(parts: &[(&str, bool)]) -> [u8; N] {
    let mut out = [0u8; N];
    let mut n = 0;
    let mut p = 0;
    while p < parts.len() {
        let (text, escape) = parts[p];
        let bytes = text.as_bytes();
        let mut i = 0;
        while i < bytes.len() {
            if escape {
                let (code, len) = escaped(bytes[i]);
                let mut k = 0;
                while k < len {
                    out[n] = code[k];
                    n += 1;
                    k += 1;
                }
            } else {
                out[n] = bytes[i];
                n += 1;
            }
            i += 1;
        }
        p += 1;
    }
    out
}

/// One byte as JSON string contents: its bytes and how many (UTF-8 passes through).
const fn escaped(b: u8) -> ([u8; 6], usize) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    match b {
        b'"' => ([b'\\', b'"', 0, 0, 0, 0], 2),
        b'\\' => ([b'\\', b'\\', 0, 0, 0, 0], 2),
        b'\n' => ([b'\\', b'n', 0, 0, 0, 0], 2),
        b'\r' => ([b'\\', b'r', 0, 0, 0, 0], 2),
        b'\t' => ([b'\\', b't', 0, 0, 0, 0], 2),
        0..=0x1f => ([b'\\', b'u', b'0', b'0', HEX[(b >> 4) as usize], HEX[(b & 15) as usize]], 6),
        _ => ([b, 0, 0, 0, 0, 0], 1),
    }
}

/// A Confluent-framed payload taken apart: the schema id and what follows it (for Protobuf,
/// the message indexes then the message: see [`unframe_protobuf`]). `None` if `bytes` is not
/// framed (no zero magic byte, or shorter than five bytes).
pub fn unframe(bytes: &[u8]) -> Option<(u32, &[u8])> {
    match bytes {
        [0, a, b, c, d, rest @ ..] => Some((u32::from_be_bytes([*a, *b, *c, *d]), rest)),
        _ => None,
    }
}

/// `payload` framed with schema `id` (Avro and JSON Schema; Protobuf: [`frame_protobuf`]).
pub fn frame(id: u32, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(5 + payload.len());
    out.push(0);
    out.extend_from_slice(&id.to_be_bytes());
    out.extend_from_slice(payload);
    out
}

/// A framed JSON Schema payload decoded: its schema id and the value.
pub fn json_value<T: serde::de::DeserializeOwned>(bytes: &[u8]) -> Result<(u32, T), crate::Error> {
    let (id, rest) = unframe(bytes).ok_or_else(|| {
        crate::Error::fatal("the payload is not in Confluent's framing (byte 0, a 4-byte schema id, the payload)")
    })?;
    let value = serde_json::from_slice(rest)
        .map_err(|e| crate::Error::fatal(format!("the framed payload (schema id {id}) is not its JSON: {e}")))?;
    Ok((id, value))
}

/// A framed Protobuf payload: schema id, message indexes (`[0]`: the first message of the
/// file) and the message bytes.
pub fn unframe_protobuf(bytes: &[u8]) -> Option<(u32, Vec<i32>, &[u8])> {
    let (id, rest) = unframe(bytes)?;
    let (count, mut rest) = zigzag(rest)?;
    if count == 0 {
        return Some((id, vec![0], rest));
    }
    if count < 0 {
        return None;
    }
    let mut indexes = Vec::new();
    for _ in 0..count.min(64) {
        let (i, r) = zigzag(rest)?;
        indexes.push(i);
        rest = r;
    }
    (count <= 64).then_some((id, indexes, rest))
}

/// `message` framed with schema `id` and its message `indexes` (`[0]` is written as the
/// single zero byte Confluent's serializers use).
pub fn frame_protobuf(id: u32, indexes: &[i32], message: &[u8]) -> Vec<u8> {
    let mut out = frame(id, &[]);
    if indexes == [0] {
        out.push(0);
    } else {
        put_zigzag(&mut out, indexes.len() as i32);
        for i in indexes {
            put_zigzag(&mut out, *i);
        }
    }
    out.extend_from_slice(message);
    out
}

fn zigzag(bytes: &[u8]) -> Option<(i32, &[u8])> {
    let mut v: u64 = 0;
    for (i, b) in bytes.iter().enumerate().take(5) {
        v |= u64::from(b & 0x7f) << (7 * i);
        if b & 0x80 == 0 {
            let n = (v >> 1) as i64 ^ -((v & 1) as i64);
            return Some((i32::try_from(n).ok()?, &bytes[i + 1..]));
        }
    }
    None
}

fn put_zigzag(out: &mut Vec<u8>, n: i32) {
    let mut v = ((n << 1) ^ (n >> 31)) as u32;
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_declaration_line_is_json_with_the_schema_escaped() {
        const PARTS: &[(&str, bool)] = &[("{\"s\":\"", false), ("a\"b\\c\nd\u{1}é", true), ("\"}", false)];
        let bytes: [u8; line_len(PARTS)] = line(PARTS);
        let v: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
        assert_eq!(v["s"], "a\"b\\c\nd\u{1}é");
    }

    #[test]
    fn framing_round_trips() {
        assert_eq!(unframe(&frame(7, b"xyz")), Some((7, &b"xyz"[..])));
        assert_eq!(unframe(b"\x01\0\0\0\x07xyz"), None);
        let (id, v): (u32, serde_json::Value) = json_value(&frame(3, br#"{"a":1}"#)).unwrap();
        assert_eq!((id, v), (3, serde_json::json!({"a": 1})));
        assert!(json_value::<serde_json::Value>(br#"{"a":1}"#).is_err());
        let f = frame_protobuf(9, &[0], b"m");
        assert_eq!(f, b"\0\0\0\0\x09\0m");
        assert_eq!(unframe_protobuf(&f), Some((9, vec![0], &b"m"[..])));
        let nested = frame_protobuf(9, &[1, 2], b"m");
        assert_eq!(unframe_protobuf(&nested), Some((9, vec![1, 2], &b"m"[..])));
    }
}
