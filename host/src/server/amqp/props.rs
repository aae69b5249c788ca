//! AMQP message properties and field tables ⇄ weir's string headers, and queue arguments ⇄
//! a queue's settings. Translation only: what the settings mean is the queue's business.

use amq_protocol::protocol::BasicProperties;
use amq_protocol::types::{AMQPValue, FieldTable, LongString, ShortString};
use weir_sdk::headers;

use crate::queue::QueueConfig;

/// Properties kept as headers of their own (`amqp-*`); priority, correlation id, reply-to
/// and type use weir's own header names, so every door and plugin sees them as weir does.
const CONTENT_TYPE: &str = "amqp-content-type";
const CONTENT_ENCODING: &str = "amqp-content-encoding";
const MESSAGE_ID: &str = "amqp-message-id";
const TIMESTAMP: &str = "amqp-timestamp";
const EXPIRATION: &str = "amqp-expiration";
const USER_ID: &str = "amqp-user-id";
const APP_ID: &str = "amqp-app-id";
const DELIVERY_MODE: &str = "amqp-delivery-mode";

/// Headers weir adds that are not the message's own (said again through the delivery).
const INTERNAL: &[&str] = &[
    headers::ROUTING_KEY,
    headers::EXCHANGE,
    headers::DELIVERY_COUNT,
    headers::TTL_MS,
    headers::DLQ_DEATHS,
    headers::DLQ_FIRST,
];

/// A field value as weir's header text: strings as they are, numbers and booleans written
/// out; nested tables and arrays as their debug form (weir's headers are flat strings).
pub(super) fn value_text(v: &AMQPValue) -> String {
    match v {
        AMQPValue::LongString(s) => String::from_utf8_lossy(s.as_bytes()).into_owned(),
        AMQPValue::ShortString(s) => s.as_str().to_string(),
        AMQPValue::Boolean(b) => b.to_string(),
        AMQPValue::ShortShortInt(n) => n.to_string(),
        AMQPValue::ShortShortUInt(n) => n.to_string(),
        AMQPValue::ShortInt(n) => n.to_string(),
        AMQPValue::ShortUInt(n) => n.to_string(),
        AMQPValue::LongInt(n) => n.to_string(),
        AMQPValue::LongUInt(n) => n.to_string(),
        AMQPValue::LongLongInt(n) => n.to_string(),
        AMQPValue::Timestamp(n) => n.to_string(),
        AMQPValue::Float(n) => n.to_string(),
        AMQPValue::Double(n) => n.to_string(),
        AMQPValue::ByteArray(b) => String::from_utf8_lossy(b.as_slice()).into_owned(),
        AMQPValue::Void => String::new(),
        other => format!("{other:?}"),
    }
}

/// An integer argument, whatever integer type the client chose.
pub(super) fn value_int(v: &AMQPValue) -> Option<i64> {
    match v {
        AMQPValue::ShortShortInt(n) => Some(i64::from(*n)),
        AMQPValue::ShortShortUInt(n) => Some(i64::from(*n)),
        AMQPValue::ShortInt(n) => Some(i64::from(*n)),
        AMQPValue::ShortUInt(n) => Some(i64::from(*n)),
        AMQPValue::LongInt(n) => Some(i64::from(*n)),
        AMQPValue::LongUInt(n) => Some(i64::from(*n)),
        AMQPValue::LongLongInt(n) => Some(*n),
        AMQPValue::Timestamp(n) => i64::try_from(*n).ok(),
        AMQPValue::LongString(s) => String::from_utf8_lossy(s.as_bytes()).parse().ok(),
        AMQPValue::ShortString(s) => s.as_str().parse().ok(),
        _ => None,
    }
}

/// A short string from any text, cut to the 255 bytes the type holds (on a char boundary).
pub(super) fn short(s: &str) -> ShortString {
    let mut end = s.len().min(255);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    ShortString::from(&s[..end])
}

/// A published message's properties as headers, its own headers first.
pub(super) fn to_headers(p: &BasicProperties) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = Vec::new();
    if let Some(table) = p.headers() {
        for (k, v) in table.inner() {
            out.push((k.as_str().to_string(), value_text(v)));
        }
    }
    let mut put = |name: &str, v: Option<String>| {
        if let Some(v) = v {
            out.push((name.to_string(), v));
        }
    };
    let s = |v: &Option<ShortString>| v.as_ref().map(|s| s.as_str().to_string());
    put(CONTENT_TYPE, s(p.content_type()));
    put(CONTENT_ENCODING, s(p.content_encoding()));
    put(headers::CORRELATION_ID, s(p.correlation_id()));
    put(headers::REPLY_TO, s(p.reply_to()));
    put(MESSAGE_ID, s(p.message_id()));
    put(headers::TYPE, s(p.kind()));
    put(USER_ID, s(p.user_id()));
    put(APP_ID, s(p.app_id()));
    put(TIMESTAMP, p.timestamp().map(|t| t.to_string()));
    put(DELIVERY_MODE, p.delivery_mode().map(|m| m.to_string()));
    put(headers::PRIORITY, p.priority().map(|n| n.to_string()));
    put(EXPIRATION, s(p.expiration()));
    // A message's expiration is its time to live in ms, as text.
    put(headers::TTL_MS, p.expiration().as_ref().and_then(|e| e.as_str().parse::<u64>().ok()).map(|t| t.to_string()));
    out
}

/// A delivered message's properties from its headers (the reverse of [`to_headers`]); a
/// redelivery carries `x-delivery-count` (deliveries before this one), as RabbitMQ's
/// quorum queues do.
pub(super) fn from_headers(hs: &[(String, String)], deliveries: u32) -> BasicProperties {
    let mut p = BasicProperties::default();
    let mut table = FieldTable::default();
    for (k, v) in hs {
        let text = || short(v);
        match k.as_str() {
            CONTENT_TYPE => p = p.with_content_type(text()),
            CONTENT_ENCODING => p = p.with_content_encoding(text()),
            MESSAGE_ID => p = p.with_message_id(text()),
            USER_ID => p = p.with_user_id(text()),
            APP_ID => p = p.with_app_id(text()),
            EXPIRATION => p = p.with_expiration(text()),
            TIMESTAMP => {
                if let Ok(t) = v.parse() {
                    p = p.with_timestamp(t);
                }
            }
            DELIVERY_MODE => {
                if let Ok(m) = v.parse() {
                    p = p.with_delivery_mode(m);
                }
            }
            k if k == headers::CORRELATION_ID => p = p.with_correlation_id(text()),
            k if k == headers::REPLY_TO => p = p.with_reply_to(text()),
            k if k == headers::TYPE => p = p.with_type(text()),
            k if k == headers::PRIORITY => {
                if let Ok(n) = v.parse() {
                    p = p.with_priority(n);
                }
            }
            k if INTERNAL.contains(&k) => {}
            k => {
                table.insert(short(k), AMQPValue::LongString(LongString::from(v.as_bytes().to_vec())));
            }
        }
    }
    if deliveries > 1 {
        table.insert(short("x-delivery-count"), AMQPValue::LongLongInt(i64::from(deliveries - 1)));
    }
    death(hs, &mut table);
    if !table.inner().is_empty() {
        p = p.with_headers(table);
    }
    p
}

/// A dead letter carries RabbitMQ's `x-death` (one entry per reason and queue, most recent
/// first, with its count) and `x-first-death-*` headers, from weir's `weir-dlq-*` ones.
fn death(hs: &[(String, String)], table: &mut FieldTable) {
    let find = |name: &str| hs.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone());
    let (Some(reason), Some(queue)) = (find(headers::DLQ_REASON), find(headers::DLQ_QUEUE)) else { return };
    let exchange = find(headers::EXCHANGE).unwrap_or_default();
    let key = find(headers::ROUTING_KEY).unwrap_or_else(|| queue.clone());
    let first = find(headers::DLQ_FIRST).unwrap_or_default();
    let (first_reason, first_queue) = first.split_once(' ').unwrap_or((reason.as_str(), queue.as_str()));
    let long = |s: &str| AMQPValue::LongString(LongString::from(s.as_bytes().to_vec()));
    let deaths = find(headers::DLQ_DEATHS).unwrap_or_else(|| format!("{reason} {queue} 1"));
    let entries = deaths
        .split(',')
        .filter_map(|d| {
            let mut it = d.split(' ');
            let (r, q, n) = (it.next()?, it.next()?, it.next()?.parse::<i64>().ok()?);
            let mut entry = FieldTable::default();
            entry.insert(short("count"), AMQPValue::LongLongInt(n));
            entry.insert(short("reason"), long(r));
            entry.insert(short("queue"), long(q));
            entry.insert(short("exchange"), long(&exchange));
            entry.insert(short("routing-keys"), AMQPValue::FieldArray(vec![long(&key)].into()));
            Some(AMQPValue::FieldTable(entry))
        })
        .collect::<Vec<_>>();
    table.insert(short("x-death"), AMQPValue::FieldArray(entries.into()));
    table.insert(short("x-first-death-reason"), long(first_reason));
    table.insert(short("x-first-death-queue"), long(first_queue));
    table.insert(short("x-first-death-exchange"), long(&exchange));
}

/// A refused argument: what is wrong, for a channel close.
#[derive(Debug)]
pub(super) struct Unsupported(pub u16, pub String);

/// `queue.declare`'s arguments as a queue's settings.
pub(super) fn queue_config(args: &FieldTable) -> Result<QueueConfig, Unsupported> {
    let mut c = QueueConfig {
        // An AMQP delivery is held until acked or its channel closes; the door renews this
        // lease while the channel is open, so it only matters when weir itself stops.
        visibility_timeout_ms: crate::limits::AMQP_DELIVERY_LEASE_MS,
        ..QueueConfig::default()
    };
    let bad = |k: &str, why: &str| Unsupported(super::PRECONDITION_FAILED, format!("invalid arg '{k}': {why}"));
    for (k, v) in args.inner() {
        let int = || value_int(v).filter(|n| *n >= 0).ok_or_else(|| bad(k.as_str(), "expected a non-negative integer"));
        match k.as_str() {
            "x-dead-letter-exchange" => c.dead_letter_exchange = Some(value_text(v)),
            "x-dead-letter-routing-key" => c.dead_letter_routing_key = Some(value_text(v)),
            "x-message-ttl" => c.message_ttl_ms = Some(int()? as u64),
            // Every weir queue orders by priority 0 to 9; a higher max is accepted and
            // priorities above 9 count as 9.
            "x-max-priority" => drop(int()?),
            // Its range is the queue's rule, checked where every door's queue is created.
            "x-max-length" => c.max_messages = usize::try_from(int()?).unwrap_or(usize::MAX),
            "x-overflow" => match value_text(v).as_str() {
                "reject-publish" => {}
                other => {
                    return Err(Unsupported(
                        super::NOT_IMPLEMENTED,
                        format!(
                            "x-overflow '{other}' is not supported: a full weir queue refuses publishes (reject-publish)"
                        ),
                    ));
                }
            },
            // x-delivery-limit counts redeliveries; weir counts deliveries.
            "x-delivery-limit" => c.max_deliveries = Some(u32::try_from(int()?.saturating_add(1)).unwrap_or(u32::MAX)),
            "x-queue-type" => match value_text(v).as_str() {
                // Every weir queue is durable and replicated the way its mode replicates.
                "classic" | "quorum" => {}
                other => {
                    return Err(Unsupported(
                        super::NOT_IMPLEMENTED,
                        format!(
                            "x-queue-type '{other}' is not supported (classic and quorum are); use a weir topic for a stream"
                        ),
                    ));
                }
            },
            "x-queue-mode" => {}
            other if other.starts_with("x-") => {
                return Err(Unsupported(
                    super::NOT_IMPLEMENTED,
                    format!("queue argument '{other}' is not supported by weir"),
                ));
            }
            _ => {}
        }
    }
    Ok(c)
}

/// A headers-exchange binding's arguments: the pairs to match and whether any suffices.
pub(super) fn header_matches(args: &FieldTable) -> (Vec<(String, String)>, bool) {
    let mut any = false;
    let mut pairs = Vec::new();
    for (k, v) in args.inner() {
        match k.as_str() {
            "x-match" => any = value_text(v).starts_with("any"),
            k if k.starts_with("x-") => {}
            k => pairs.push((k.to_string(), value_text(v))),
        }
    }
    (pairs, any)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn properties_round_trip_through_headers() {
        let mut table = FieldTable::default();
        table.insert("tenant".into(), AMQPValue::LongString("acme".into()));
        table.insert("n".into(), AMQPValue::LongInt(7));
        let p = BasicProperties::default()
            .with_content_type("application/json".into())
            .with_correlation_id("c-1".into())
            .with_reply_to("replies".into())
            .with_message_id("m-1".into())
            .with_type("OrderCreated".into())
            .with_priority(5)
            .with_timestamp(1_700_000_000)
            .with_headers(table);
        let hs = to_headers(&p);
        assert!(hs.contains(&(headers::CORRELATION_ID.into(), "c-1".into())));
        assert!(hs.contains(&("n".into(), "7".into())));
        let back = from_headers(&hs, 1);
        assert_eq!(back.content_type().as_ref().map(|s| s.as_str()), Some("application/json"));
        assert_eq!(back.correlation_id().as_ref().map(|s| s.as_str()), Some("c-1"));
        assert_eq!(back.reply_to().as_ref().map(|s| s.as_str()), Some("replies"));
        assert_eq!(back.kind().as_ref().map(|s| s.as_str()), Some("OrderCreated"));
        assert_eq!(*back.priority(), Some(5));
        assert_eq!(*back.timestamp(), Some(1_700_000_000));
        let t = back.headers().as_ref().expect("headers");
        assert_eq!(value_text(&t.inner()[&ShortString::from("tenant")]), "acme");
        assert!(!t.inner().contains_key(&ShortString::from("x-delivery-count")));
    }

    #[test]
    fn queue_arguments_map_to_settings_or_are_refused_by_name() {
        let mut a = FieldTable::default();
        a.insert("x-dead-letter-exchange".into(), AMQPValue::LongString("dlx".into()));
        a.insert("x-message-ttl".into(), AMQPValue::LongInt(200));
        a.insert("x-delivery-limit".into(), AMQPValue::LongInt(2));
        a.insert("x-queue-type".into(), AMQPValue::LongString("quorum".into()));
        let c = queue_config(&a).expect("supported");
        assert_eq!(c.dead_letter_exchange.as_deref(), Some("dlx"));
        assert_eq!((c.message_ttl_ms, c.max_deliveries), (Some(200), Some(3)));
        let mut b = FieldTable::default();
        b.insert("x-single-active-consumer".into(), AMQPValue::Boolean(true));
        let e = queue_config(&b).expect_err("unsupported");
        assert_eq!(e.0, super::super::NOT_IMPLEMENTED);
        assert!(e.1.contains("x-single-active-consumer"), "{}", e.1);
    }
}
