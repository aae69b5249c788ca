//! Kafka record batches (v2) in and out: a produced batch becomes weir records, stored
//! records become a batch for a fetch. Decoding is bounded before the `kafka-protocol` crate
//! sees a batch (record counts a batch can hold, decompressed bytes), so a hostile batch costs
//! at most the limits.
//!
//! Mapping: keys and values are bytes on both sides (a null value is stored empty); a header
//! value must be UTF-8 (weir headers are text) — a batch with a non-UTF-8 or null header value
//! is refused as a whole with INVALID_RECORD, naming the header. Timestamps are log-append
//! time: the producer's are replaced by weir's append time, which each fetched record carries
//! as its own timestamp.

use std::io::Read;

use bytes::{Bytes, BytesMut};
use kafka_protocol::indexmap::IndexMap;
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::records::{
    Compression, Record, RecordBatchDecoder, RecordBatchEncoder, RecordEncodeOptions, TimestampType,
};

use crate::broker::Sequenced;
use crate::limits;
use crate::storage::{NewRecord, StoredRecord};

/// The records of one partition's produce data.
#[derive(Debug)]
pub(crate) struct Produced {
    /// In order.
    pub records: Vec<NewRecord>,
    /// The idempotent producer's place, if the batch carries one.
    pub sequence: Option<Sequenced>,
}

/// Why produce data is refused.
#[derive(Debug)]
pub(crate) enum BadBatch {
    /// Not a readable v2 batch (CORRUPT_MESSAGE).
    Corrupt(String),
    /// Readable but not storable (INVALID_RECORD).
    Invalid(String),
    /// Transactional batches (not supported).
    Transactional,
}

/// Smallest encoding of one record inside a batch: length, attributes, timestamp delta,
/// offset delta, key length, value length, header count — one byte each at least.
const MIN_RECORD_BYTES: usize = 7;

/// Where the record count sits in a v2 batch header, and its total size.
const COUNT_AT: usize = 57;
const BATCH_HEADER: usize = 61;

/// Decode the records of one partition's produce data: one batch (Kafka's rule since
/// Produce v3), decompressing at most `budget` bytes (shared by the request's partitions: what
/// this batch used is taken off).
pub(crate) fn decode(mut data: Bytes, budget: &mut usize) -> Result<Produced, BadBatch> {
    check_batch(&data)?;
    // The decoder takes an `Fn`: the bytes used are counted through a cell.
    let (left, used) = (*budget, std::cell::Cell::new(0usize));
    let decompress = |b: &mut Bytes, c: Compression| {
        let out = decompress(b, c, left)?;
        used.set(out.len());
        Ok(out)
    };
    let set = RecordBatchDecoder::decode_with_custom_compression(&mut data, Some(decompress))
        .map_err(|e| BadBatch::Corrupt(format!("cannot read the record batch: {e}")))?;
    *budget = budget.saturating_sub(used.get());
    let mut records = Vec::with_capacity(set.records.len());
    let mut sequence = None;
    for r in set.records {
        if r.transactional || r.control {
            return Err(BadBatch::Transactional);
        }
        if sequence.is_none() && r.producer_id >= 0 && r.sequence >= 0 {
            sequence = Some(Sequenced { producer: r.producer_id, epoch: r.producer_epoch, base_sequence: r.sequence });
        }
        records.push(record(r)?);
    }
    Ok(Produced { records, sequence })
}

/// Check the batch header: v2 only, one batch filling the data, a record count its bytes can
/// hold and at most [`limits::KAFKA_MAX_BATCH_RECORDS`] (the decoder reserves memory for the
/// count it reads, and each record costs far more decoded than its few bytes on the wire).
fn check_batch(data: &[u8]) -> Result<(), BadBatch> {
    let header = data
        .get(..BATCH_HEADER)
        .ok_or_else(|| BadBatch::Corrupt(format!("a record batch of {} bytes is cut short", data.len())))?;
    let magic = header[16] as i8;
    if magic != 2 {
        return Err(BadBatch::Corrupt(format!(
            "record batch version (magic) {magic} is not supported; weir takes v2 batches (Kafka clients since 0.11)"
        )));
    }
    let length = i32::from_be_bytes(header[8..12].try_into().expect("4 bytes"));
    let fits = usize::try_from(length).is_ok_and(|l| l >= BATCH_HEADER - 12 && 12 + l <= data.len());
    if !fits {
        return Err(BadBatch::Corrupt(format!("a record batch of {length} bytes does not fit the request")));
    }
    if 12 + length as usize != data.len() {
        return Err(BadBatch::Corrupt("more than one record batch for a partition; Produce v3+ sends one".into()));
    }
    let count = i32::from_be_bytes(header[COUNT_AT..COUNT_AT + 4].try_into().expect("4 bytes"));
    let compressed = i16::from_be_bytes([header[21], header[22]]) & 0x7 != 0;
    let room = if compressed { limits::KAFKA_MAX_DECOMPRESSED_BYTES } else { data.len() - BATCH_HEADER };
    if count < 0 || count as usize > room / MIN_RECORD_BYTES {
        return Err(BadBatch::Corrupt(format!("a record batch claims {count} records, more than its bytes can hold")));
    }
    if count as usize > limits::KAFKA_MAX_BATCH_RECORDS {
        return Err(BadBatch::Invalid(format!(
            "a record batch of {count} records exceeds weir's limit of {}; send smaller batches",
            limits::KAFKA_MAX_BATCH_RECORDS
        )));
    }
    Ok(())
}

/// Why a batch's records do not decompress. (kafka-protocol's callback returns its own error
/// type; this converts into it where the callback's `?` meets it, so weir names none.)
#[derive(Debug, thiserror::Error)]
enum DecompressError {
    /// Larger than allowed.
    #[error("the batch decompresses to more than {0} bytes")]
    TooLarge(usize),
    /// The codec failed.
    #[error("{0}")]
    Codec(String),
}

impl From<std::io::Error> for DecompressError {
    fn from(e: std::io::Error) -> Self {
        DecompressError::Codec(e.to_string())
    }
}

/// Decompress one batch's records, refusing to grow beyond `max` bytes.
fn decompress(compressed: &mut Bytes, compression: Compression, max: usize) -> Result<Bytes, DecompressError> {
    let input = compressed.split_to(compressed.len());
    let bounded = |reader: Box<dyn Read + '_>| -> Result<Bytes, DecompressError> {
        let mut out = Vec::new();
        reader.take(max as u64 + 1).read_to_end(&mut out)?;
        if out.len() > max {
            return Err(DecompressError::TooLarge(max));
        }
        Ok(Bytes::from(out))
    };
    match compression {
        Compression::None => Ok(input),
        Compression::Gzip => bounded(Box::new(flate2::read::GzDecoder::new(&input[..]))),
        Compression::Zstd => bounded(Box::new(zstd::stream::read::Decoder::new(&input[..])?)),
        Compression::Lz4 => bounded(Box::new(lz4::Decoder::new(&input[..])?)),
        Compression::Snappy => {
            // Each block declares its size, and the decoder allocates that before decoding.
            if snappy_len(&input)? > max {
                return Err(DecompressError::TooLarge(max));
            }
            use kafka_protocol::compression::{Decompressor, Snappy};
            <Snappy as Decompressor<Bytes>>::decompress(&mut input.clone(), |b: &mut Bytes| Ok(b.split_to(b.len())))
                .map_err(|e| DecompressError::Codec(e.to_string()))
        }
    }
}

/// The decompressed size a snappy input declares (xerial framing as Kafka's Java client and
/// librdkafka write it, or one raw block), read before anything is allocated for it.
fn snappy_len(input: &[u8]) -> Result<usize, DecompressError> {
    const MAGIC: &[u8] = b"\x82SNAPPY\x00";
    let block_len = |b: &[u8]| snap::raw::decompress_len(b).map_err(|e| DecompressError::Codec(e.to_string()));
    if !input.starts_with(MAGIC) {
        return block_len(input);
    }
    let (mut at, mut total) = (16usize, 0usize);
    while at < input.len() {
        let len = input.get(at..at + 4).map(|b| u32::from_be_bytes(b.try_into().expect("4 bytes")) as usize);
        let Some(block) = len.and_then(|len| input.get(at + 4..(at + 4).saturating_add(len))) else {
            return Err(DecompressError::Codec(format!("a snappy block at byte {at} is cut short")));
        };
        total = total.saturating_add(block_len(block)?);
        at += 4 + block.len();
    }
    Ok(total)
}

fn record(r: Record) -> Result<NewRecord, BadBatch> {
    let mut headers = Vec::with_capacity(r.headers.len());
    for (name, value) in r.headers {
        let Some(value) = value else {
            return Err(BadBatch::Invalid(format!(
                "header `{}` has a null value; weir headers are text: send an empty string instead",
                limits::truncated(name.to_string(), 64)
            )));
        };
        let Ok(value) = String::from_utf8(value.to_vec()) else {
            return Err(BadBatch::Invalid(format!(
                "header `{}` has a value that is not UTF-8; weir headers are text: encode binary values (e.g. base64)",
                limits::truncated(name.to_string(), 64)
            )));
        };
        headers.push((name.to_string(), value));
    }
    Ok(NewRecord { key: r.key, value: r.value.unwrap_or_default(), headers })
}

/// Stored records as one v2 batch (uncompressed, log-append time).
pub(crate) fn encode(stored: &[StoredRecord]) -> Bytes {
    if stored.is_empty() {
        return Bytes::new();
    }
    let records: Vec<Record> = stored.iter().map(kafka_record).collect();
    let mut buf = BytesMut::with_capacity(stored.iter().map(|r| r.value.len() + 32).sum());
    let options = RecordEncodeOptions { version: 2, compression: Compression::None };
    if let Err(e) = RecordBatchEncoder::encode(&mut buf, &records, &options) {
        tracing::error!(error = %e, "cannot encode a Kafka record batch");
        return Bytes::new();
    }
    buf.freeze()
}

fn kafka_record(r: &StoredRecord) -> Record {
    let headers: IndexMap<StrBytes, Option<Bytes>> = r
        .headers
        .iter()
        .map(|(n, v)| (StrBytes::from_string(n.clone()), Some(Bytes::copy_from_slice(v.as_bytes()))))
        .collect();
    Record {
        transactional: false,
        control: false,
        partition_leader_epoch: 0,
        producer_id: -1,
        producer_epoch: -1,
        // Each record carries its own append time. A batch typed LogAppendTime would make
        // clients give every record the batch's latest time, and a fetched batch spans appends.
        timestamp_type: TimestampType::Creation,
        offset: r.offset as i64,
        sequence: -1,
        timestamp: r.timestamp_ms as i64,
        key: r.key.clone(),
        value: Some(r.value.clone()),
        headers,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn batch(records: &[Record], compression: Compression) -> Bytes {
        let mut buf = BytesMut::new();
        RecordBatchEncoder::encode(&mut buf, records, &RecordEncodeOptions { version: 2, compression }).unwrap();
        buf.freeze()
    }

    fn rec(value: &str, header: Option<Option<Bytes>>) -> Record {
        let mut headers = IndexMap::new();
        if let Some(v) = header {
            headers.insert(StrBytes::from_static_str("h"), v);
        }
        Record {
            transactional: false,
            control: false,
            partition_leader_epoch: 0,
            producer_id: 7,
            producer_epoch: 0,
            timestamp_type: TimestampType::Creation,
            offset: 0,
            sequence: 5,
            timestamp: 1,
            key: Some(Bytes::from_static(b"k")),
            value: Some(Bytes::copy_from_slice(value.as_bytes())),
            headers,
        }
    }

    #[test]
    fn batches_round_trip_through_every_compression() {
        for c in [Compression::None, Compression::Gzip, Compression::Snappy, Compression::Lz4, Compression::Zstd] {
            let p = decode(batch(&[rec("a", Some(Some("v".into()))), rec("b", None)], c), &mut (1 << 20)).unwrap();
            assert_eq!(p.records.len(), 2, "{c:?}");
            assert_eq!(
                (&p.records[0].value[..], &p.records[0].headers[..]),
                (&b"a"[..], &[("h".into(), "v".into())][..])
            );
            assert_eq!(p.sequence, Some(Sequenced { producer: 7, epoch: 0, base_sequence: 5 }));
        }
    }

    #[test]
    fn non_utf8_headers_and_bombs_and_lying_counts_are_refused() {
        let bad =
            decode(batch(&[rec("a", Some(Some(Bytes::from_static(&[0xff]))))], Compression::None), &mut (1 << 20));
        assert!(matches!(bad, Err(BadBatch::Invalid(m)) if m.contains("not UTF-8")));
        let big = "x".repeat(100_000);
        let bomb = decode(batch(&[rec(&big, None)], Compression::Gzip), &mut 10_000);
        assert!(matches!(bomb, Err(BadBatch::Corrupt(m)) if m.contains("more than 10000 bytes")));
        let mut lying = BytesMut::from(&batch(&[rec("a", None)], Compression::None)[..]);
        lying[COUNT_AT..COUNT_AT + 4].copy_from_slice(&i32::MAX.to_be_bytes());
        assert!(matches!(decode(lying.freeze(), &mut (1 << 20)), Err(BadBatch::Corrupt(m)) if m.contains("claims")));
        assert!(matches!(decode(Bytes::from_static(b"short"), &mut (1 << 20)), Err(BadBatch::Corrupt(_))));
        let two = [batch(&[rec("a", None)], Compression::None), batch(&[rec("b", None)], Compression::None)].concat();
        assert!(
            matches!(decode(Bytes::from(two), &mut (1 << 20)), Err(BadBatch::Corrupt(m)) if m.contains("one record batch"))
        );
        // A snappy block declaring 100 MB is refused before anything is allocated for it.
        let mut declared = vec![0x80, 0xc2, 0xd7, 0x2f];
        declared.extend_from_slice(&[0; 8]);
        assert!(decompress(&mut Bytes::from(declared), Compression::Snappy, 1 << 20).is_err());
    }

    #[test]
    fn stored_records_encode_as_a_batch_with_their_offsets() {
        let stored = StoredRecord {
            offset: 41,
            timestamp_ms: 9,
            key: None,
            headers: vec![("a".into(), "b".into())],
            value: Bytes::from_static(b"v"),
        };
        let mut out = encode(&[stored]);
        let set = RecordBatchDecoder::decode(&mut out).unwrap();
        assert_eq!((set.records[0].offset, set.records[0].timestamp), (41, 9), "the append time, per record");
    }
}
