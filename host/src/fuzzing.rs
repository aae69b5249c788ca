//! Entry points for fuzzing the code that reads what clients and plugins send: the frame
//! decoder, pipeline specs and token files, the host side of the component boundary, Kafka
//! requests, and registered schemas.
//! Used by the cargo-fuzz targets in `tests/fuzz/` (long runs) and by property tests (short
//! runs in the test suite). Each must return normally for any input.

use bytes::BytesMut;
use tokio_util::codec::Decoder;

use weir_client::wire::{self, RequestFrame, ResponseFrame};

use crate::pipeline::PipelineSpec;
use bytes::Bytes;

use crate::runtime::{Failure, Message, Outcome, Output};

/// Bytes off the socket: length-prefixed framing, then request and response decoding, then
/// the request's translation into a broker command. Returns the requests that decoded.
pub fn frame(data: &[u8]) -> Vec<RequestFrame> {
    let mut codec = wire::codec(64 * 1024);
    let mut buf = BytesMut::from(data);
    let mut decoded = Vec::new();
    while let Ok(Some(f)) = codec.decode(&mut buf) {
        if let Ok(r) = wire::decode::<RequestFrame>(&f) {
            decoded.push(r);
        }
        // Decoded again rather than cloned: requests can carry large buffers and are not `Clone`.
        if let Ok(r) = wire::decode::<RequestFrame>(&f) {
            crate::server::fuzz_command(r.request);
        }
    }
    let _ = wire::decode::<RequestFrame>(data);
    let _ = wire::decode::<ResponseFrame>(data);
    decoded
}

/// Text from a user: pipeline spec files (TOML) and token files.
pub fn spec(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else { return };
    if let Ok(spec) = toml::from_str::<wire::PipelineSpec>(text) {
        let spec = PipelineSpec::from(spec);
        let _ = (spec.group(), spec.attempts(), spec.dead_letter_topic(), spec.differs_only_in_versions(&spec));
        let _ = spec.needs();
        for a in 1..5 {
            let _ = spec.backoff(a);
        }
    }
    let _ = crate::auth::Tokens::parse(text);
}

/// What a guest may return from `process`, built from bytes: any number of outcomes of any
/// kind, any sizes, any topics — checked and applied as the host does.
pub fn outcomes(data: &[u8]) {
    let mut bytes = data.iter().copied();
    let mut next = move || bytes.next().unwrap_or(0);
    let inputs: Vec<Message> = (0..next() % 8)
        .map(|i| Message {
            key: None,
            value: Bytes::from(vec![next(); next() as usize]),
            headers: vec![],
            timestamp_ms: 0,
            partition: 0,
            offset: i.into(),
        })
        .collect();
    let outcomes: Vec<Outcome> = (0..next() % 10)
        .map(|_| match next() % 5 {
            0 => Outcome::Keep,
            4 => Outcome::Forward("t".repeat(next() as usize % 4)),
            1 => Outcome::Drop,
            2 => Outcome::Fail(Failure { message: "x".repeat(next() as usize), retryable: next() % 2 == 0 }),
            _ => Outcome::Emit(
                (0..next() % 4)
                    .map(|_| Output {
                        key: (next() % 2 == 0).then(|| Bytes::from(vec![next()])),
                        value: Bytes::from(vec![0; next() as usize * 16]),
                        headers: (0..next() % 3).map(|_| ("h".to_string(), "v".repeat(next() as usize))).collect(),
                        topic: (next() % 3 == 0).then(|| "t".repeat(next() as usize % 4)),
                    })
                    .collect(),
            ),
        })
        .collect();
    let _ = crate::pipeline::fuzz_outcomes(inputs, outcomes, usize::from(next()) * 64);
}

/// What a 0.2.0 plugin returns from `process`, as raw bytes: decoded and checked as the host
/// does. Returns the outcomes when the host accepts the buffer.
pub fn packed_result(data: &[u8]) -> Option<Vec<Outcome>> {
    let inputs = usize::from(data.first().copied().unwrap_or(0) % 16);
    let outcomes = crate::runtime::unpack(data.get(1..).unwrap_or_default().to_vec(), inputs).ok()?;
    crate::runtime::check_outcomes(inputs, &outcomes, 1 << 20).ok()?;
    Some(outcomes)
}

/// A Kafka request frame (without its length prefix), as the Kafka door reads it: header,
/// request body, and a produce's record batches. Returns whether it decoded.
pub fn kafka_request(data: &[u8]) -> bool {
    crate::server::kafka::fuzz_request(data)
}

/// Bytes after the AMQP protocol header, as the AMQP door reads them: frames bounded by
/// `frame_max`, methods, content headers (properties and field tables) and bodies. Returns
/// how many frames decoded.
pub fn amqp_frames(data: &[u8]) -> usize {
    crate::server::amqp::fuzz_frames(data)
}

/// Schema text from a registration: the first byte picks the format (Avro, JSON Schema,
/// Protobuf) and a Protobuf message index, the rest is the text, parsed as the registry parses
/// it. A schema that parses is then taken through what the registry does next: its canonical
/// text, a compatibility check against itself, and payloads checked against it (the last few
/// input bytes, and none). Returns whether the text parsed.
pub fn schema(data: &[u8]) -> bool {
    use crate::schemas::{Parsed, SchemaType};
    let Some((&first, rest)) = data.split_first() else { return false };
    let kind = match first % 3 {
        0 => SchemaType::Avro,
        1 => SchemaType::Json,
        _ => SchemaType::Protobuf,
    };
    let text = String::from_utf8_lossy(rest);
    let Ok(parsed) = Parsed::parse(kind, &text, &[]) else { return false };
    let _ = parsed.canonical();
    let _ = parsed.can_read(&parsed);
    // A few bytes reach every decoder. More would mostly find again that apache-avro's
    // recursive decoder has no depth limit: a recursive schema nests one level per byte or so.
    let payload = &rest[rest.len().saturating_sub(32)..];
    let message = [i32::from(first / 3 % 4) - 1];
    let _ = parsed.validate(payload, &message);
    let _ = parsed.validate(&[], &[]);
    true
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    /// 2,000 inputs per entry point in the suite; `PROPTEST_CASES=1000000` for a longer run.
    fn cases() -> u32 {
        std::env::var("PROPTEST_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(2_000)
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: cases(), ..ProptestConfig::default() })]

        #[test]
        fn the_frame_decoder_takes_any_bytes(data in proptest::collection::vec(any::<u8>(), 0..600)) {
            super::frame(&data);
        }

        #[test]
        fn spec_and_token_parsing_take_any_text(text in "\\PC{0,300}") {
            super::spec(text.as_bytes());
        }

        #[test]
        fn the_host_takes_any_outcomes(data in proptest::collection::vec(any::<u8>(), 0..200)) {
            super::outcomes(&data);
        }

        #[test]
        fn the_packed_result_decoder_takes_any_bytes(data in proptest::collection::vec(any::<u8>(), 0..400)) {
            super::packed_result(&data);
        }

        #[test]
        fn the_schema_parsers_take_any_text(first in any::<u8>(), text in "\\PC{0,300}") {
            let mut data = vec![first];
            data.extend(text.as_bytes());
            super::schema(&data);
        }

        #[test]
        fn the_kafka_decoder_takes_any_bytes(data in proptest::collection::vec(any::<u8>(), 0..400)) {
            super::kafka_request(&data);
        }

        #[test]
        fn the_amqp_decoder_takes_any_bytes(data in proptest::collection::vec(any::<u8>(), 0..400)) {
            super::amqp_frames(&data);
        }

        /// Valid AMQP frames (a publish with its header and body) with bytes flipped:
        /// refused or decoded, never a panic.
        #[test]
        fn damaged_amqp_frames_are_refused_or_decoded(flip in 0usize..300, bit in 0u8..8) {
            let mut data = valid_amqp_publish();
            prop_assert_eq!(super::amqp_frames(&data), 3);
            let at = flip % data.len();
            data[at] ^= 1 << bit;
            super::amqp_frames(&data);
        }

        /// A valid produce request with bytes flipped: refused or decoded, never a panic.
        #[test]
        fn damaged_kafka_produce_requests_are_refused_or_decoded(flip in 0usize..600, bit in 0u8..8) {
            let mut data = valid_produce();
            let at = flip % data.len();
            data[at] ^= 1 << bit;
            super::kafka_request(&data);
        }

        /// Valid results with bytes flipped: mostly refused, never misread.
        #[test]
        fn damaged_packed_results_are_refused_or_read_whole(flip in 0usize..400, bit in 0u8..8) {
            let mut data = vec![3u8];
            data.extend(valid_result());
            let at = 1 + flip % (data.len() - 1);
            data[at] ^= 1 << bit;
            if let Some(outcomes) = super::packed_result(&data) {
                prop_assert_eq!(outcomes.len(), 3);
            }
        }
    }

    /// basic.publish, a content header with properties and headers, and a body.
    fn valid_amqp_publish() -> Vec<u8> {
        use amq_protocol::frame::{AMQPContentHeader, AMQPFrame, gen_frame};
        use amq_protocol::protocol::{AMQPClass, BasicProperties, basic};
        use amq_protocol::types::{AMQPValue, FieldTable};
        let mut headers = FieldTable::default();
        headers.insert("tenant".into(), AMQPValue::LongString("acme".into()));
        headers.insert("n".into(), AMQPValue::FieldArray(vec![AMQPValue::LongInt(1)].into()));
        let properties = BasicProperties::default().with_correlation_id("c-1".into()).with_headers(headers);
        let publish =
            basic::Publish { exchange: "x".into(), routing_key: "k".into(), mandatory: true, immediate: false };
        let frames = [
            AMQPFrame::Method(1, AMQPClass::Basic(basic::AMQPMethod::Publish(publish))),
            AMQPFrame::Header(1, AMQPContentHeader { class_id: 60, body_size: 5, properties }),
            AMQPFrame::Body(1, b"hello".to_vec()),
        ];
        let mut out = Vec::new();
        for f in &frames {
            out = cookie_factory::gen_simple(gen_frame(f), out).expect("encodes");
        }
        out
    }

    /// A Produce v9 request with one gzip batch of two records.
    fn valid_produce() -> Vec<u8> {
        use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
        use kafka_protocol::messages::{ApiKey, ProduceRequest, RequestHeader, TopicName};
        use kafka_protocol::protocol::{Encodable, StrBytes};
        use kafka_protocol::records::{Compression, Record, RecordBatchEncoder, RecordEncodeOptions, TimestampType};
        let record = |v: &'static [u8]| Record {
            transactional: false,
            control: false,
            partition_leader_epoch: 0,
            producer_id: 1,
            producer_epoch: 0,
            timestamp_type: TimestampType::Creation,
            offset: 0,
            sequence: 0,
            timestamp: 0,
            key: Some(bytes::Bytes::from_static(b"k")),
            value: Some(bytes::Bytes::from_static(v)),
            headers: Default::default(),
        };
        let mut batch = bytes::BytesMut::new();
        let options = RecordEncodeOptions { version: 2, compression: Compression::Gzip };
        RecordBatchEncoder::encode(&mut batch, &[record(b"a"), record(b"b")], &options).expect("encodes");
        let data = PartitionProduceData::default().with_index(0).with_records(Some(batch.freeze()));
        let topic = TopicProduceData::default()
            .with_name(TopicName(StrBytes::from_static_str("t")))
            .with_partition_data(vec![data]);
        let request = ProduceRequest::default().with_acks(-1).with_timeout_ms(1000).with_topic_data(vec![topic]);
        let header = RequestHeader::default()
            .with_request_api_key(ApiKey::Produce as i16)
            .with_request_api_version(9)
            .with_correlation_id(1);
        let mut buf = bytes::BytesMut::new();
        header.encode(&mut buf, ApiKey::Produce.request_header_version(9)).expect("encodes");
        request.encode(&mut buf, 9).expect("encodes");
        buf.to_vec()
    }

    #[test]
    fn schemas_of_each_format_parse_through_the_entry_point() {
        assert!(super::schema(b"\x00\"string\""));
        assert!(super::schema(b"\x01{\"type\":\"object\"}"));
        assert!(super::schema(b"\x02syntax = \"proto3\"; message M { int32 a = 1; }"));
        assert!(!super::schema(b""));
    }

    #[test]
    fn a_valid_kafka_produce_decodes() {
        assert!(super::kafka_request(&valid_produce()));
    }

    fn valid_result() -> Vec<u8> {
        use weir_sdk::packed::{OutputRef, ResultWriter};
        let mut w = ResultWriter::new(3);
        w.emit(
            [OutputRef { key: Some(b"k"), value: b"{\"a\":1}", headers: vec![("h", "v")], topic: Some("eu") }]
                .into_iter(),
        );
        w.fail("no", true);
        w.forward("us");
        w.finish()
    }

    #[test]
    fn a_valid_packed_result_reads_back_whole() {
        let mut data = vec![3u8];
        data.extend(valid_result());
        let outcomes = super::packed_result(&data).expect("accepted");
        assert!(
            matches!(&outcomes[0], crate::runtime::Outcome::Emit(o) if o[0].topic.as_deref() == Some("eu") && &o[0].value[..] == b"{\"a\":1}")
        );
        assert!(matches!(&outcomes[1], crate::runtime::Outcome::Fail(f) if f.retryable && f.message == "no"));
        assert_eq!(outcomes[2], crate::runtime::Outcome::Forward("us".into()));
    }

    #[test]
    fn encoded_frames_survive_the_decoder() {
        use weir_client::wire::{Request, RequestFrame, encode};
        let f = RequestFrame { id: 3, request: Request::ListTopics };
        let body = encode(&f).unwrap();
        let mut framed = (body.len() as u32).to_be_bytes().to_vec();
        framed.extend_from_slice(&body);
        framed.extend_from_slice(&framed.clone());
        let decoded = super::frame(&framed);
        assert_eq!(decoded.len(), 2, "both frames decode");
        assert!(decoded.iter().all(|r| r.id == 3 && matches!(r.request, Request::ListTopics)));
        assert!(super::frame(&framed[..framed.len() - 1]).len() == 1, "a truncated frame does not decode");
    }
}
