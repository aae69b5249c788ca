//! The on-disk encoding of one log record (format version 1).
//!
//! ```text
//! u8 version (=1) · u64 LE timestamp_ms · varint key_len+1 (0 = no key) · key
//! · varint header_count · { varint name_len · name · varint value_len · value }*
//! · value (the rest)
//! ```
//! The value is last so that it needs no length and decoding it is a slice.

use bytes::{BufMut, Bytes};

/// Version byte of this encoding; a new layout gets a new byte and both stay readable.
pub const RECORD_V1: u8 = 1;

/// A record as produced, before the store assigns offset and timestamp.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NewRecord {
    /// Partitioning key.
    pub key: Option<Bytes>,
    /// Payload.
    pub value: Bytes,
    /// Metadata, in order.
    pub headers: Vec<(String, String)>,
}

impl NewRecord {
    /// Bytes this record occupies in a write, for batch budgets.
    pub fn size(&self) -> usize {
        self.value.len()
            + self.key.as_ref().map_or(0, |k| k.len())
            + self.headers.iter().map(|(n, v)| n.len() + v.len() + 2).sum::<usize>()
            + 16
    }
}

/// A record read back from the log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredRecord {
    /// Position in its partition.
    pub offset: u64,
    /// Append time, ms since the Unix epoch.
    pub timestamp_ms: u64,
    /// Partitioning key.
    pub key: Option<Bytes>,
    /// Metadata.
    pub headers: Vec<(String, String)>,
    /// Payload.
    pub value: Bytes,
}

/// Append the encoding of `rec` stamped with `timestamp_ms` to `out`.
pub fn encode(rec: &NewRecord, timestamp_ms: u64, out: &mut Vec<u8>) {
    out.reserve(rec.size());
    out.put_u8(RECORD_V1);
    out.put_u64_le(timestamp_ms);
    match &rec.key {
        None => put_varint(out, 0),
        Some(k) => {
            put_varint(out, k.len() as u64 + 1);
            out.extend_from_slice(k);
        }
    }
    put_varint(out, rec.headers.len() as u64);
    for (n, v) in &rec.headers {
        put_varint(out, n.len() as u64);
        out.extend_from_slice(n.as_bytes());
        put_varint(out, v.len() as u64);
        out.extend_from_slice(v.as_bytes());
    }
    out.extend_from_slice(&rec.value);
}

/// Just the timestamp of an encoded record (for seeking by time without decoding the rest).
pub(crate) fn timestamp_of(buf: &[u8]) -> Result<u64, String> {
    if buf.first() != Some(&RECORD_V1) {
        return Err(format!("unknown record version {:?}", buf.first()));
    }
    let ts: [u8; 8] = buf.get(1..9).ok_or("truncated timestamp")?.try_into().map_err(|_| "truncated")?;
    Ok(u64::from_le_bytes(ts))
}

/// Decode `buf` (an owned copy of the stored bytes) as the record at `offset`; key and value
/// are slices of `buf`, not copies.
pub(crate) fn decode(offset: u64, buf: Bytes) -> Result<StoredRecord, String> {
    let timestamp_ms = timestamp_of(&buf)?;
    let mut pos = 9;
    let key = match get_varint(&buf, &mut pos)? {
        0 => None,
        n => Some(take(&buf, &mut pos, n as usize - 1)?),
    };
    let count = get_varint(&buf, &mut pos)? as usize;
    if count > crate::limits::MAX_HEADERS {
        return Err(format!("{count} headers"));
    }
    let mut headers = Vec::with_capacity(count);
    for _ in 0..count {
        let n = get_varint(&buf, &mut pos)? as usize;
        let name = take(&buf, &mut pos, n)?;
        let v = get_varint(&buf, &mut pos)? as usize;
        let value = take(&buf, &mut pos, v)?;
        headers.push((utf8(name)?, utf8(value)?));
    }
    Ok(StoredRecord { offset, timestamp_ms, key, headers, value: buf.slice(pos..) })
}

fn utf8(b: Bytes) -> Result<String, String> {
    String::from_utf8(b.to_vec()).map_err(|e| format!("header is not UTF-8: {e}"))
}

fn take(buf: &Bytes, pos: &mut usize, n: usize) -> Result<Bytes, String> {
    let end = pos.checked_add(n).filter(|e| *e <= buf.len()).ok_or("truncated field")?;
    let out = buf.slice(*pos..end);
    *pos = end;
    Ok(out)
}

fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn get_varint(buf: &[u8], pos: &mut usize) -> Result<u64, String> {
    let mut v = 0u64;
    for shift in (0..64).step_by(7) {
        let b = *buf.get(*pos).ok_or("truncated varint")?;
        *pos += 1;
        v |= u64::from(b & 0x7f) << shift;
        if b < 0x80 {
            return Ok(v);
        }
    }
    Err("varint too long".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips() {
        let rec = NewRecord {
            key: Some(Bytes::from_static(b"k")),
            value: Bytes::from(vec![7u8; 300]),
            headers: vec![("weir-type".into(), "OrderCreated".into())],
        };
        let mut buf = Vec::new();
        encode(&rec, 1234, &mut buf);
        let got = decode(9, Bytes::from(buf)).unwrap();
        assert_eq!(got.offset, 9);
        assert_eq!(got.timestamp_ms, 1234);
        assert_eq!(got.key, rec.key);
        assert_eq!(got.headers, rec.headers);
        assert_eq!(got.value, rec.value);
    }

    #[test]
    fn keyless_empty_and_truncated() {
        let mut buf = Vec::new();
        encode(&NewRecord::default(), 1, &mut buf);
        let got = decode(0, Bytes::from(buf.clone())).unwrap();
        assert_eq!(got.key, None);
        assert!(got.value.is_empty());
        assert!(decode(0, Bytes::copy_from_slice(&buf[..5])).is_err());
        let mut keyed = Vec::new();
        encode(&NewRecord { key: Some(Bytes::from_static(b"abc")), ..Default::default() }, 1, &mut keyed);
        assert!(decode(0, Bytes::copy_from_slice(&keyed[..keyed.len() - 1])).is_err());
    }
}
