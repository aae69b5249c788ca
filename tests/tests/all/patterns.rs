//! Messaging patterns over a real server: queues (visibility, dead letters, priority, delay,
//! dedup, FIFO groups, competing consumers), consumer groups (rebalance, seek), exchanges
//! (AMQP topic patterns, fanout, headers, unroutable), request/reply, ephemeral topics, and a
//! pipeline draining a queue.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use anyhow::Result;
use weir_tests::weir_client::consumer::GroupConsumer;
use weir_tests::weir_client::wire::TopicConfig;
use weir_tests::weir_client::wire::{Binding, Destination, ExchangeType};
use weir_tests::weir_client::wire::{ErrorCode, FetchPosition, WireRecord};
use weir_tests::weir_client::wire::{Nack, NewQueueMessage, QueueConfig};
use weir_tests::{Mode, Server, consume_n, eventually, pipeline, plugin_bytes, step, text, topic};

const LONG: Duration = Duration::from_secs(60);

fn msg(body: &str) -> NewQueueMessage {
    NewQueueMessage { body: body.as_bytes().to_vec(), ..Default::default() }
}

fn queue(visibility_ms: u64, max_deliveries: Option<u32>, dead_letter: Option<&str>) -> QueueConfig {
    QueueConfig {
        visibility_timeout_ms: visibility_ms,
        max_deliveries,
        dead_letter: dead_letter.map(str::to_string),
        ..QueueConfig::default()
    }
}

fn bodies(d: &[weir_tests::weir_client::wire::Delivery]) -> Vec<String> {
    d.iter().map(|d| String::from_utf8_lossy(&d.body).into_owned()).collect()
}

fn header<'a>(h: &'a [(String, String)], name: &str) -> Option<&'a str> {
    h.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
}

#[tokio::test(flavor = "multi_thread")]
async fn an_unacked_message_comes_back_after_its_visibility_timeout() -> Result<()> {
    let server = Server::start()?;
    let c = server.client().await?;
    c.create_queue("q", queue(300, None, None)).await?;
    c.queue_send("q", vec![msg("job")]).await?;
    let first = c.queue_receive("q", 1, Duration::ZERO).await?;
    assert_eq!(
        (bodies(&first), header(&first[0].headers, "weir-delivery-count")),
        (vec!["job".to_string()], Some("1"))
    );
    assert!(c.queue_receive("q", 1, Duration::ZERO).await?.is_empty(), "invisible while in flight");
    let again = c.queue_receive("q", 1, LONG).await?;
    assert_eq!((bodies(&again), again[0].deliveries), (vec!["job".to_string()], 2));
    assert_eq!(header(&again[0].headers, "weir-delivery-count"), Some("2"));
    // The first receipt is stale now; the second acks.
    let stale = c.queue_ack("q", vec![first[0].receipt.clone()]).await.expect_err("stale");
    assert_eq!(stale.code(), Some(ErrorCode::StaleReceipt));
    c.queue_ack("q", vec![again[0].receipt.clone()]).await?;
    assert_eq!(c.describe_queue("q").await?.in_flight, 0);
    assert!(c.queue_receive("q", 1, Duration::from_millis(500)).await?.is_empty(), "acked messages are gone");
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn after_max_deliveries_a_message_moves_to_the_dead_letter_queue() -> Result<()> {
    let server = Server::start()?;
    let c = server.client().await?;
    c.create_queue("jobs", queue(200, Some(2), Some("jobs-dlq"))).await?;
    assert!(c.list_queues().await?.iter().any(|q| q.name == "jobs-dlq"), "the dead-letter queue was created");
    c.queue_send("jobs", vec![msg("job-42")]).await?;
    assert_eq!(bodies(&c.queue_receive("jobs", 1, LONG).await?), vec!["job-42"]);
    assert_eq!(bodies(&c.queue_receive("jobs", 1, LONG).await?), vec!["job-42"]);
    let dead = c.queue_receive("jobs-dlq", 1, LONG).await?;
    assert_eq!(bodies(&dead), vec!["job-42"]);
    let reason = header(&dead[0].headers, "weir-dlq-error").expect("reason");
    assert!(reason.contains("delivered 2 times"), "{reason}");
    assert_eq!(header(&dead[0].headers, "weir-dlq-queue"), Some("jobs"));
    assert!(c.queue_receive("jobs", 1, Duration::from_millis(300)).await?.is_empty());
    // An explicit nack --dead-letter moves at once.
    c.queue_send("jobs", vec![msg("bad")]).await?;
    let got = c.queue_receive("jobs", 1, LONG).await?;
    c.queue_nack("jobs", vec![got[0].receipt.clone()], Nack::DeadLetter).await?;
    assert_eq!(bodies(&c.queue_receive("jobs-dlq", 1, LONG).await?), vec!["bad"]);
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn higher_priority_first_fifo_within_a_priority() -> Result<()> {
    let server = Server::start()?;
    let c = server.client().await?;
    c.create_queue("q", QueueConfig::default()).await?;
    let sends = [("low-1", 0), ("high-1", 9), ("mid-1", 5), ("low-2", 0), ("high-2", 9), ("mid-2", 5)];
    let messages = sends.iter().map(|(b, p)| NewQueueMessage { priority: *p, ..msg(b) }).collect();
    c.queue_send("q", messages).await?;
    let got = c.queue_receive("q", 10, Duration::ZERO).await?;
    assert_eq!(bodies(&got), vec!["high-1", "high-2", "mid-1", "mid-2", "low-1", "low-2"]);
    let bad = c.queue_send("q", vec![NewQueueMessage { priority: 10, ..msg("x") }]).await.expect_err("priority 10");
    assert!(bad.to_string().contains("priority must be 0 to 9"), "{bad}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn delayed_messages_stay_invisible_until_due() -> Result<()> {
    let server = Server::start()?;
    let c = server.client().await?;
    c.create_queue("q", QueueConfig::default()).await?;
    let sent = std::time::Instant::now();
    c.queue_send("q", vec![NewQueueMessage { delay_ms: 700, ..msg("later") }, msg("now")]).await?;
    assert_eq!(bodies(&c.queue_receive("q", 10, Duration::ZERO).await?), vec!["now"]);
    let later = c.queue_receive("q", 10, LONG).await?;
    assert_eq!(bodies(&later), vec!["later"]);
    assert!(sent.elapsed() >= Duration::from_millis(700), "delivered before its delay");
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn a_repeated_dedup_id_is_accepted_but_enqueued_once() -> Result<()> {
    let server = Server::start()?;
    let c = server.client().await?;
    c.create_queue("q", QueueConfig { dedup_window_ms: 60_000, ..QueueConfig::default() }).await?;
    let with_id = |b: &str, id: &str| NewQueueMessage { dedup_id: Some(id.into()), ..msg(b) };
    let sent = c
        .queue_send("q", vec![with_id("a", "order-1"), with_id("a again", "order-1"), with_id("b", "order-2")])
        .await?;
    assert_eq!(sent, vec![true, false, true]);
    assert_eq!(c.queue_send("q", vec![with_id("a once more", "order-1")]).await?, vec![false]);
    assert_eq!(bodies(&c.queue_receive("q", 10, Duration::ZERO).await?), vec!["a", "b"]);
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn fifo_groups_deliver_one_at_a_time_in_order() -> Result<()> {
    let server = Server::start()?;
    let c = server.client().await?;
    c.create_queue("q", QueueConfig::default()).await?;
    let grouped = |b: &str, g: &str| NewQueueMessage { group: Some(g.into()), ..msg(b) };
    c.queue_send(
        "q",
        vec![grouped("a1", "A"), grouped("a2", "A"), grouped("b1", "B"), grouped("a3", "A"), grouped("b2", "B")],
    )
    .await?;
    let first = c.queue_receive("q", 10, Duration::ZERO).await?;
    assert_eq!(bodies(&first), vec!["a1", "b1"], "one in flight per group");
    c.queue_ack("q", vec![first[0].receipt.clone()]).await?;
    assert_eq!(bodies(&c.queue_receive("q", 10, Duration::ZERO).await?), vec!["a2"]);
    // A nacked head stays the head.
    let b = first[1].receipt.clone();
    c.queue_nack("q", vec![b], Nack::Requeue { delay_ms: 0 }).await?;
    assert_eq!(bodies(&c.queue_receive("q", 10, Duration::ZERO).await?), vec!["b1"]);
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn competing_consumers_get_disjoint_sets_covering_every_message() -> Result<()> {
    let server = Server::start()?;
    let c = server.client().await?;
    c.create_queue("work", QueueConfig::default()).await?;
    const N: usize = 2_000;
    for chunk in (0..N).collect::<Vec<_>>().chunks(500) {
        c.queue_send("work", chunk.iter().map(|i| msg(&i.to_string())).collect()).await?;
    }
    let mut workers = Vec::new();
    for _ in 0..4 {
        let client = server.client().await?;
        workers.push(tokio::spawn(async move {
            let mut mine = Vec::new();
            loop {
                let got = client.queue_receive("work", 25, Duration::from_millis(300)).await?;
                if got.is_empty() {
                    return anyhow::Ok(mine);
                }
                client.queue_ack("work", got.iter().map(|d| d.receipt.clone()).collect()).await?;
                mine.extend(bodies(&got));
            }
        }));
    }
    let mut all = BTreeSet::new();
    let mut total = 0;
    let mut busy = 0;
    for w in workers {
        let mine = w.await??;
        busy += usize::from(!mine.is_empty());
        total += mine.len();
        all.extend(mine);
    }
    assert_eq!(total, N, "no message delivered twice");
    assert_eq!(all.len(), N, "every message delivered");
    assert!(busy >= 2, "the work was shared");
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn a_consumer_group_rebalances_when_members_join_and_die() -> Result<()> {
    let server = Server::start()?;
    let c = server.client().await?;
    c.create_topic("t", topic(4)).await?;
    c.produce("t", (0..40).map(|i| WireRecord::value(format!("m{i}"))).collect()).await?;
    let (ca, cb) = (server.client().await?, server.client().await?);
    let mut a = GroupConsumer::join(&ca, "g", "t", Duration::from_secs(30)).await?;
    assert_eq!(a.partitions(), vec![0, 1, 2, 3]);
    let mut b = GroupConsumer::join(&cb, "g", "t", Duration::from_millis(400)).await?;
    a.heartbeat().await?;
    let (pa, pb) = (a.partitions(), b.partitions());
    assert_eq!((pa.len(), pb.len()), (2, 2), "{pa:?} {pb:?}");
    assert!(pa.iter().all(|p| !pb.contains(p)), "members split the partitions");
    // Both read their share; together they see every message once.
    let mut seen = BTreeSet::new();
    for m in [&mut a, &mut b] {
        for (_, _, r) in m.poll(100, Duration::ZERO).await? {
            assert!(seen.insert(text(&r)));
        }
        m.commit().await?;
    }
    assert_eq!(seen.len(), 40);
    // b stops heart-beating: its session expires and a gets everything back.
    drop(b);
    let deadline = std::time::Instant::now() + LONG;
    while a.heartbeat().await?.partitions.len() != 4 {
        assert!(std::time::Instant::now() < deadline, "the dead member's partitions never moved");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let members = c.describe_groups().await?;
    assert_eq!(members[0].members.len(), 1);
    // A commit carrying the old generation is refused.
    let stale =
        weir_tests::weir_client::wire::Membership { member_id: cb_id(&members), generation: 1, partitions: vec![] };
    let err = c.commit_as_member("g", "t", &stale, vec![(0, 1)]).await.expect_err("fenced");
    assert!(matches!(err.code(), Some(ErrorCode::Rebalanced | ErrorCode::NotFound)), "{err}");
    let offsets = c.fetch_offsets("g", "t").await?;
    assert_eq!(offsets.iter().map(|o| o.unwrap_or(0)).sum::<u64>(), 40, "committed positions cover everything read");
    Ok(())
}

fn cb_id(members: &[weir_tests::weir_client::wire::GroupMembers]) -> String {
    members[0].members[0].0.clone()
}

#[tokio::test(flavor = "multi_thread")]
async fn seeking_by_time_finds_the_first_record_at_or_after_it() -> Result<()> {
    let server = Server::start()?;
    let c = server.client().await?;
    c.create_topic("t", topic(1)).await?;
    for i in 0..20 {
        c.produce("t", vec![WireRecord::value(format!("m{i}"))]).await?;
    }
    let all = c.read_all("t").await?;
    let target = all[10].2.timestamp_ms;
    let at = c.offsets_for_time("t", target).await?[0].expect("offset");
    assert!(at <= 10 && all[at as usize].2.timestamp_ms >= target, "offset {at} is at or after the time");
    assert!(at == 0 || all[at as usize - 1].2.timestamp_ms < target, "and nothing earlier is");
    // Seek a group there and consume from it.
    c.commit_offsets("g", "t", vec![(0, at)]).await?;
    let cm = server.client().await?;
    let mut m = GroupConsumer::join(&cm, "g", "t", Duration::from_secs(30)).await?;
    let got = m.poll(100, Duration::ZERO).await?;
    assert_eq!(got[0].1, at);
    assert_eq!(got.len() as u64, 20 - at);
    Ok(())
}

/// AMQP topic-pattern cases: `*` is exactly one word, `#` zero or more.
const TOPIC_CASES: [(&str, &str, bool); 24] = [
    ("stock.usd.nyse", "stock.usd.nyse", true),
    ("stock.*.nyse", "stock.usd.nyse", true),
    ("stock.*.nyse", "stock.nyse", false),
    ("stock.*", "stock.usd.nyse", false),
    ("*.*.*", "a.b.c", true),
    ("*.*.*", "a.b", false),
    ("#", "", true),
    ("#", "anything.at.all", true),
    ("#.nyse", "stock.usd.nyse", true),
    ("#.nyse", "nyse", true),
    ("#.nyse", "stock.nyse.usd", false),
    ("stock.#", "stock", true),
    ("stock.#", "stock.usd.nyse", true),
    ("stock.#", "stocks.usd", false),
    ("stock.#.nyse", "stock.nyse", true),
    ("stock.#.nyse", "stock.usd.eur.nyse", true),
    ("stock.#.nyse", "stock.usd.eur", false),
    ("#.usd.#", "usd", true),
    ("#.usd.#", "stock.usd.nyse", true),
    ("#.usd.#", "stock.eur.nyse", false),
    ("*.usd.#", "stock.usd", true),
    ("*.usd.#", "usd.nyse", false),
    ("a.*.#.z", "a.b.z", true),
    ("a.*.#.z", "a.z", false),
];

#[tokio::test(flavor = "multi_thread")]
async fn topic_exchanges_match_amqp_patterns() -> Result<()> {
    let server = Server::start()?;
    let c = server.client().await?;
    for (i, (pattern, key, routed)) in TOPIC_CASES.iter().enumerate() {
        let (x, q) = (format!("x{i}"), format!("q{i}"));
        c.create_exchange(&x, ExchangeType::Topic, None).await?;
        c.create_queue(&q, QueueConfig::default()).await?;
        c.bind(
            &x,
            Binding {
                destination: Destination::Queue(q.clone()),
                key: Some(pattern.to_string()),
                matches: vec![],
                match_any: false,
            },
        )
        .await?;
        match c.publish(&x, key, b"m".to_vec(), vec![]).await {
            Ok(dests) => {
                assert!(routed, "{pattern:?} must not match {key:?}");
                assert_eq!(dests, vec![format!("queue:{q}")]);
                assert_eq!(c.queue_receive(&q, 1, Duration::ZERO).await?.len(), 1);
            }
            Err(e) => {
                assert!(!routed, "{pattern:?} must match {key:?}: {e}");
                assert_eq!(e.code(), Some(ErrorCode::Unroutable));
            }
        }
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn fanout_headers_direct_and_unroutable_messages() -> Result<()> {
    let server = Server::start()?;
    let c = server.client().await?;
    for t in ["audit", "mail", "unrouted"] {
        c.create_topic(t, topic(1)).await?;
    }
    c.create_queue("work", QueueConfig::default()).await?;
    let bind = |to: Destination, key: Option<&str>, matches: &[(&str, &str)], any: bool| Binding {
        destination: to,
        key: key.map(str::to_string),
        matches: matches.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
        match_any: any,
    };
    // Fanout: every binding, a topic and a queue, in one atomic publish.
    c.create_exchange("all", ExchangeType::Fanout, None).await?;
    c.bind("all", bind(Destination::Topic("audit".into()), None, &[], false)).await?;
    c.bind("all", bind(Destination::Queue("work".into()), None, &[], false)).await?;
    let dests = c.publish("all", "ignored", b"event".to_vec(), vec![]).await?;
    assert_eq!(dests, vec!["topic:audit", "queue:work"]);
    assert_eq!(c.read_all("audit").await?.len(), 1);
    let got = c.queue_receive("work", 1, Duration::ZERO).await?;
    assert_eq!(header(&got[0].headers, "weir-routing-key"), Some("ignored"));

    // Headers: all pairs (default) or any pair.
    c.create_exchange("h", ExchangeType::Headers, None).await?;
    c.bind("h", bind(Destination::Topic("mail".into()), None, &[("format", "pdf"), ("type", "report")], false)).await?;
    c.bind("h", bind(Destination::Topic("audit".into()), None, &[("format", "zip"), ("urgent", "yes")], true)).await?;
    let hdr = |pairs: &[(&str, &str)]| pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect::<Vec<_>>();
    assert_eq!(
        c.publish("h", "", b"1".to_vec(), hdr(&[("format", "pdf"), ("type", "report")])).await?,
        vec!["topic:mail"]
    );
    assert_eq!(c.publish("h", "", b"2".to_vec(), hdr(&[("urgent", "yes")])).await?, vec!["topic:audit"]);
    let err = c.publish("h", "", b"3".to_vec(), hdr(&[("format", "pdf")])).await.expect_err("partial match under all");
    assert!(err.to_string().contains("unroutable"), "{err}");

    // Direct with an alternate exchange catching what nothing matches.
    c.create_exchange("catch", ExchangeType::Fanout, None).await?;
    c.bind("catch", bind(Destination::Topic("unrouted".into()), None, &[], false)).await?;
    c.create_exchange("d", ExchangeType::Direct, Some("catch".into())).await?;
    c.bind("d", bind(Destination::Topic("mail".into()), Some("mail"), &[], false)).await?;
    assert_eq!(c.publish("d", "mail", b"x".to_vec(), vec![]).await?, vec!["topic:mail"]);
    assert_eq!(c.publish("d", "other", b"y".to_vec(), vec![]).await?, vec!["topic:unrouted"]);
    assert_eq!(c.read_all("unrouted").await?.len(), 1);
    let err = c
        .bind("d", bind(Destination::Topic("missing".into()), Some("k"), &[], false))
        .await
        .expect_err("unknown topic");
    assert!(err.to_string().contains("unknown topic `missing`"), "{err}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn request_reply_round_trip_and_timeout() -> Result<()> {
    let server = Server::start()?;
    let c = server.client().await?;
    c.create_topic("prices", topic(2)).await?;
    c.create_topic("unused-sink", topic(1)).await?;
    c.deploy_plugin("quote", plugin_bytes("json-transform")).await?;
    let steps = vec![step("quote", &[("set.price", "42"), ("reply", "true")])];
    c.create_pipeline(pipeline("quotes", "prices", "unused-sink", steps)).await?;
    let reply = c.request_reply("prices", br#"{"sku":"A-1"}"#.to_vec(), vec![], LONG).await?;
    let doc: serde_json::Value = serde_json::from_slice(&reply.value)?;
    assert_eq!((doc["sku"].as_str(), doc["price"].as_u64()), (Some("A-1"), Some(42)));
    assert!(header(&reply.headers, "weir-correlation-id").is_some());
    // Concurrent requests each get their own reply.
    let mut tasks = Vec::new();
    for i in 0..20 {
        let client = server.client().await?;
        tasks.push(tokio::spawn(async move {
            client.request_reply("prices", format!(r#"{{"sku":"S{i}"}}"#).into_bytes(), vec![], LONG).await
        }));
    }
    for (i, t) in tasks.into_iter().enumerate() {
        let r = t.await??;
        let doc: serde_json::Value = serde_json::from_slice(&r.value)?;
        assert_eq!(doc["sku"], format!("S{i}"));
    }
    // Nobody answers on this topic: a clear timeout.
    c.create_topic("silent", topic(1)).await?;
    let err = c.request_reply("silent", b"?".to_vec(), vec![], Duration::from_millis(300)).await.expect_err("timeout");
    assert_eq!(err.code(), Some(ErrorCode::Timeout));
    assert!(err.to_string().contains("no reply within 300 ms"), "{err}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn ephemeral_topics_fan_out_to_live_subscribers_and_persist_nothing() -> Result<()> {
    let mut server = Server::start()?;
    let c = server.client().await?;
    c.create_topic("ticks", TopicConfig { ephemeral: true, ..topic(1) }).await?;
    c.produce("ticks", vec![WireRecord::value("before anyone listened")]).await?;
    let hw = c.describe_topic("ticks").await?.partitions[0].1;
    let mut subs = Vec::new();
    for _ in 0..3 {
        let client = server.client().await?;
        subs.push(tokio::spawn(async move {
            let mut got = Vec::new();
            let mut at = hw;
            while got.len() < 10 {
                let parts = client.fetch("ticks", vec![FetchPosition { partition: 0, offset: at }], 100, LONG).await?;
                for r in &parts[0].records {
                    got.push(text(r));
                }
                at = parts[0].first_offset + parts[0].records.len() as u64;
            }
            anyhow::Ok(got)
        }));
    }
    let expected: Vec<String> = (0..10).map(|i| format!("tick {i}")).collect();
    for e in &expected {
        c.produce("ticks", vec![WireRecord::value(e.clone())]).await?;
    }
    for s in subs {
        assert_eq!(s.await??, expected, "every live subscriber gets every message, in order");
    }
    server.restart()?;
    let c = server.client().await?;
    let info = c.describe_topic("ticks").await?;
    assert!(info.config.ephemeral, "the topic itself survives a restart");
    match weir_tests::mode() {
        Mode::Single => assert_eq!(info.partitions[0], (0, 0), "its messages do not"),
        // In a cluster an ephemeral topic lives in the JetStream servers' memory: a weir
        // node's restart keeps it; the servers' restart would not (RELIABILITY.md).
        Mode::Cluster => assert_eq!(info.partitions[0].1, hw + 10, "a node's restart keeps them"),
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn a_pipeline_drains_a_queue_with_two_workers_once_per_message() -> Result<()> {
    let mut server = Server::start()?;
    let c = server.client().await?;
    c.create_queue("orders", QueueConfig::default()).await?;
    c.create_topic("done", topic(2)).await?;
    c.deploy_plugin("t", plugin_bytes("json-transform")).await?;
    let mut spec = pipeline("drain", "queue:orders", "done", vec![step("t", &[("set.done", "true")])]);
    spec.parallelism = Some(2);
    c.create_pipeline(spec).await?;
    const N: usize = 3_000;
    for chunk in (0..N).collect::<Vec<_>>().chunks(500) {
        c.queue_send("orders", chunk.iter().map(|i| msg(&format!(r#"{{"id":{i}}}"#))).collect()).await?;
    }
    let out = consume_n(&c, "done", N, LONG).await?;
    let mut ids: BTreeMap<u64, usize> = BTreeMap::new();
    for (_, _, r) in &out {
        let d: serde_json::Value = serde_json::from_slice(&r.value)?;
        assert_eq!(d["done"], true);
        *ids.entry(d["id"].as_u64().unwrap()).or_default() += 1;
    }
    assert_eq!(ids.len(), N);
    assert!(ids.values().all(|n| *n == 1), "exactly one output per message");
    let status = eventually("the queue to drain", LONG, || async {
        let s = c.pipeline_status("drain").await?;
        Ok((s.lag() == 0).then_some(s))
    })
    .await?;
    assert_eq!(status.processed, N as u64);
    let q = c.describe_queue("orders").await?;
    assert_eq!((q.ready, q.in_flight), (0, 0), "every message was acked with its outputs");
    // Nothing comes back after a restart: acks were durable with the outputs.
    server.restart()?;
    let c = server.client().await?;
    assert_eq!(c.describe_queue("orders").await?.ready, 0);
    assert_eq!(c.read_all("done").await?.len(), N);
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn the_cli_walks_a_job_through_redelivery_into_the_dead_letter_queue() -> Result<()> {
    let server = Server::start()?;
    let weir = |args: &[&str]| -> Result<String> {
        let out = std::process::Command::new(weir_tests::weir_bin())
            .args(args)
            .env("WEIR_SERVER", server.addr.to_string())
            .output()?;
        assert!(out.status.success(), "weir {args:?}: {}", String::from_utf8_lossy(&out.stderr));
        Ok(String::from_utf8(out.stdout)?)
    };
    weir(&[
        "queue",
        "create",
        "jobs",
        "--visibility-timeout",
        "2s",
        "--max-deliveries",
        "2",
        "--dead-letter",
        "jobs-dlq",
    ])?;
    weir(&["queue", "send", "jobs", "job-42"])?;
    assert_eq!(weir(&["queue", "receive", "jobs", "--max", "1"])?, "job-42\n");
    assert_eq!(weir(&["queue", "receive", "jobs", "--max", "1"])?, "", "invisible within the timeout");
    assert_eq!(
        weir(&["queue", "receive", "jobs", "--max", "1", "--wait", "10s"])?,
        "job-42\n",
        "back after the timeout"
    );
    assert_eq!(
        weir(&["queue", "receive", "jobs-dlq", "--max", "1", "--wait", "10s"])?,
        "job-42\n",
        "dead-lettered after two deliveries"
    );
    let list = weir(&["queue", "list"])?;
    assert!(list.contains("jobs-dlq"), "{list}");
    Ok(())
}
