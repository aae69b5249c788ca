//! Placement in a cluster: which node runs a command. Queues keep their index on one node —
//! the coordinator, chosen among the live nodes as a pipeline partition's owner is — and so do
//! the memberships of weir's own consumer groups; a queue or membership command arriving at
//! another node is handed to the coordinator, which runs it with the same broker code as a
//! single node. A pipeline's counters and a shadow's comparisons are kept by the nodes that
//! ran its partitions; asking for them sums what every node answers.
//!
//! Nothing here decides a rule: it decides where the one broker code runs, and carries the
//! command and its result in the cluster's own types (`cluster::wire`).

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use crate::cluster::wire::{self, AnswerC1, AskC1, GroupCommandC1, QueueCommandC1, ReplyC1};
use crate::pipeline::{PipelineStatus, ShadowReport};
use crate::queue::{Delivery, Nack, NewQueueMessage, QueueInfo};

use super::{Broker, BrokerError, Command, ErrorKind, ExchangeCommand, GroupCommand, QueueCommand, Reply, Result};

use crate::cluster::COORDINATOR;

/// How long a command waits for a coordinator while one takes over.
const MOVING_MAX: Duration = Duration::from_secs(15);

impl Broker {
    /// The node that must run `command`, when it is not this one.
    fn coordinator_for(&self, command: &Command) -> Option<String> {
        let cluster = self.store.cluster()?;
        let coordinated = match command {
            Command::Queue(_) => true,
            // A queue's messages are written by the coordinator (topics by anyone).
            Command::Exchange(ExchangeCommand::Publish { exchange, routing_key, record }) => self
                .destinations(exchange, routing_key, &record.headers)
                .is_ok_and(|dests| dests.iter().any(|d| matches!(d, crate::exchange::Destination::Queue(_)))),
            Command::Group(g) => matches!(
                g,
                GroupCommand::Join { .. }
                    | GroupCommand::Heartbeat { .. }
                    | GroupCommand::Leave { .. }
                    | GroupCommand::Describe
                    | GroupCommand::Commit { member: Some(_), .. }
            ),
            _ => false,
        };
        if !coordinated {
            return None;
        }
        let live = cluster.live_nodes();
        let node = crate::cluster::owner_of(live.iter().map(|(n, _)| n.as_str()), COORDINATOR, 0)?.to_string();
        (node != cluster.node || !self.coordinating.load(Ordering::Acquire)).then_some(node)
    }

    /// Whether `command` runs on another node (a connection finishes it before it starts its
    /// next request, so requests keep their order across the hand-over).
    pub(super) fn runs_elsewhere(&self, command: &Command) -> bool {
        self.coordinator_for(command).is_some()
    }

    /// Run `command` where it must run: here, or handed to the coordinator.
    pub(super) async fn placed(&self, command: Command) -> std::result::Result<Command, Result<Reply>> {
        if self.coordinator_for(&command).is_none() {
            return Ok(command);
        }
        let ask = match to_ask(&command) {
            Some(ask) => ask,
            None => return Ok(command),
        };
        Err(self.hand_over(&command, ask).await)
    }

    /// Run `command` where it belongs: here, or handed to the coordinator. A coordinated
    /// command this node ran just as another node took coordination over was refused whole
    /// (fenced): it is handed to the new coordinator instead of failing the caller.
    pub(super) async fn run_placed(&self, command: Command, owner: Option<String>) -> Result<Reply> {
        let command = match self.placed(command).await {
            Ok(command) => command,
            Err(handed_over) => return handed_over,
        };
        let again = self.store.cluster().and_then(|_| to_ask(&command));
        match Box::pin(self.run_here(command, owner)).await {
            Err(e) if fenced(&e) && again.is_some() => {
                let ask = again.expect("checked");
                let command = to_command(ask.clone())?;
                self.hand_over(&command, ask).await
            }
            other => other,
        }
    }

    /// Ask the coordinator to run `ask`; while coordination moves (a node died, another takes
    /// over), ask again for up to [`MOVING_MAX`].
    async fn hand_over(&self, command: &Command, ask: AskC1) -> Result<Reply> {
        let cluster = self.store.cluster().expect("placement is cluster mode's");
        let wait = match command {
            Command::Queue(QueueCommand::Receive { wait, .. }) => *wait,
            _ => Duration::ZERO,
        };
        let deadline = tokio::time::Instant::now() + MOVING_MAX;
        loop {
            let why = match self.coordinator_for(command) {
                // This node became the coordinator meanwhile and holds the queues.
                None => return Box::pin(self.run_here(to_command(ask)?, None)).await,
                Some(node) if node == cluster.node => "this node is taking the queues over".to_string(),
                Some(node) => match cluster.ask(&node, &ask, wait + Duration::from_secs(10)).await {
                    Ok(AnswerC1::Reply(r)) => return from_reply(r),
                    Ok(AnswerC1::Failed { kind, message }) => {
                        return Err(BrokerError::Remote { kind: ErrorKind::from_name(&kind), message });
                    }
                    Ok(AnswerC1::Moved(why)) => why,
                    Err(e) => e.to_string(),
                },
            };
            if tokio::time::Instant::now() >= deadline {
                return Err(BrokerError::Busy(format!(
                    "no node of the cluster coordinates the queues right now ({why}); retry"
                )));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Answer what another node asks of this one.
    pub(super) async fn answer(&self, ask: AskC1) -> AnswerC1 {
        let reply = match ask {
            AskC1::PipelineCounters(name) => {
                return AnswerC1::Reply(ReplyC1::Counters(self.pipelines.counters(&name).unwrap_or_default()));
            }
            AskC1::Shadow(plugin) => {
                return AnswerC1::Reply(ReplyC1::Shadow(shadow_c(self.pipelines.shadow_report(&plugin))));
            }
            ask => {
                let command = match to_command(ask) {
                    Ok(c) => c,
                    Err(e) => return failed(e),
                };
                if self.coordinator_for(&command).is_some() {
                    return AnswerC1::Moved(format!("node {} does not coordinate the queues", self.node_name()));
                }
                match Box::pin(self.run_here(command, None)).await {
                    // Coordination moved while it ran; the write was refused whole, so the
                    // asker asks the new coordinator.
                    Err(e) if fenced(&e) => return AnswerC1::Moved(e.to_string()),
                    other => other,
                }
            }
        };
        match reply.and_then(to_reply) {
            Ok(r) => AnswerC1::Reply(r),
            Err(e) => failed(e),
        }
    }

    fn node_name(&self) -> String {
        self.store.cluster().map(|c| c.node.clone()).unwrap_or_default()
    }

    /// Start answering other nodes and following who coordinates (cluster mode).
    pub(super) async fn serve_cluster(self: &Arc<Self>) -> Result<()> {
        let Some(cluster) = self.store.cluster() else { return Ok(()) };
        let weak = Arc::downgrade(self);
        let handler: crate::cluster::AskHandler = Arc::new(move |ask| {
            let weak = weak.clone();
            Box::pin(async move {
                match weak.upgrade() {
                    Some(broker) => broker.answer(ask).await,
                    None => AnswerC1::Moved("the node is stopping".into()),
                }
            })
        });
        cluster.serve_asks(handler).await?;
        self.spawn_coordination();
        Ok(())
    }

    /// Take the queues over when this node becomes the coordinator, let them go when it
    /// stops being it (or its write was fenced), for as long as the broker lives.
    fn spawn_coordination(self: &Arc<Self>) {
        let weak = Arc::downgrade(self);
        tokio::spawn(async move {
            loop {
                let Some(broker) = weak.upgrade() else { return };
                let Some(cluster) = broker.store.cluster().cloned() else { return };
                let live = cluster.live_nodes();
                let me = crate::cluster::owner_of(live.iter().map(|(n, _)| n.as_str()), COORDINATOR, 0)
                    == Some(cluster.node.as_str());
                let holding = broker.coordinating.load(Ordering::Acquire) && broker.store.holding_queues().await;
                if me && !holding {
                    broker.coordinating.store(false, Ordering::Release);
                    match broker.store.hold_queues(true).await {
                        Ok(()) => match broker.queues.reload().await {
                            Ok(()) => {
                                broker.coordinating.store(true, Ordering::Release);
                                tracing::info!(node = %cluster.node, "coordinating the queues");
                            }
                            Err(e) => tracing::warn!(error = %e, "cannot load the queues; retrying"),
                        },
                        Err(e) => tracing::warn!(error = %e, "cannot take the queues over; retrying"),
                    }
                } else if !me && broker.coordinating.load(Ordering::Acquire) {
                    broker.coordinating.store(false, Ordering::Release);
                    let _ = broker.store.hold_queues(false).await;
                    broker.queues.forget_indexes();
                    tracing::info!(node = %cluster.node, "no longer coordinating the queues");
                }
                let mut members = cluster.membership();
                drop(broker);
                tokio::select! {
                    _ = members.changed() => {}
                    _ = tokio::time::sleep(Duration::from_millis(500)) => {}
                }
            }
        });
    }

    /// A pipeline's status with the counters of every node that ran its partitions summed
    /// (a single node's status as it is).
    pub(super) async fn summed(&self, mut status: PipelineStatus) -> Result<PipelineStatus> {
        let Some(cluster) = self.store.cluster() else { return Ok(status) };
        let answers =
            cluster.ask_all(&AskC1::PipelineCounters(status.spec.name.clone()), Duration::from_secs(2)).await?;
        let mut total = wire::CountersC1::default();
        for a in answers {
            if let AnswerC1::Reply(ReplyC1::Counters(c)) = a {
                add_counters(&mut total, c);
            }
        }
        status.processed = total.processed;
        status.emitted = total.emitted;
        status.dropped = total.dropped;
        status.batches = total.batches;
        status.failed = total.failed;
        status.dead_lettered = total.dead_lettered;
        status.retries = total.retries;
        status.swaps = total.swaps;
        status.swap_pause_p99_us = total.swap_pause_p99_us;
        for (step, s) in status.steps.iter_mut().zip(total.steps) {
            [step.input, step.output, step.dropped, step.errors, step.calls, step.busy_us] = s;
        }
        if status.last_error.is_none() {
            status.last_error = total.last_failure;
            status.last_error_ms = total.last_failure_ms;
        }
        Ok(status)
    }

    /// A shadow's comparisons over every node (one node's as they are).
    pub(super) async fn shadow_summed(&self, mut report: ShadowReport) -> Result<ShadowReport> {
        let Some(cluster) = self.store.cluster() else { return Ok(report) };
        let answers = cluster.ask_all(&AskC1::Shadow(report.plugin.clone()), Duration::from_secs(2)).await?;
        let (mut matched, mut differed, mut failures, mut samples) = (0, 0, 0, Vec::new());
        for a in answers {
            if let AnswerC1::Reply(ReplyC1::Shadow(s)) = a {
                matched += s.matched;
                differed += s.differed;
                failures += s.shadow_failures;
                report.shadow_version = report.shadow_version.or(s.shadow_version);
                report.live_version = report.live_version.or(s.live_version);
                samples.extend(s.samples.into_iter().map(|(pipeline, step, partition, offset, live, shadow)| {
                    crate::pipeline::DiffSample { pipeline, step: step as usize, partition, offset, live, shadow }
                }));
            }
        }
        samples.truncate(crate::pipeline::SHADOW_SAMPLES_MAX);
        (report.matched, report.differed, report.shadow_failures, report.samples) =
            (matched, differed, failures, samples);
        Ok(report)
    }
}

fn add_counters(total: &mut wire::CountersC1, c: wire::CountersC1) {
    total.processed += c.processed;
    total.emitted += c.emitted;
    total.dropped += c.dropped;
    total.batches += c.batches;
    total.failed += c.failed;
    total.dead_lettered += c.dead_lettered;
    total.retries += c.retries;
    total.swaps += c.swaps;
    total.swap_pause_p99_us = total.swap_pause_p99_us.max(c.swap_pause_p99_us);
    if total.steps.len() < c.steps.len() {
        total.steps.resize(c.steps.len(), [0; 6]);
    }
    for (t, s) in total.steps.iter_mut().zip(c.steps) {
        for (a, b) in t.iter_mut().zip(s) {
            *a += b;
        }
    }
    // The newest failure any node handled, with its time.
    if total.last_failure.is_none() || c.last_failure_ms > total.last_failure_ms {
        (total.last_failure, total.last_failure_ms) =
            (c.last_failure.or(total.last_failure.take()), c.last_failure_ms.or(total.last_failure_ms));
    }
}

/// A write refused whole because another node took the queues over: safe to run again there.
fn fenced(e: &BrokerError) -> bool {
    matches!(e, BrokerError::Store(crate::storage::StoreError::Fenced(_)))
}

fn failed(e: BrokerError) -> AnswerC1 {
    AnswerC1::Failed { kind: e.kind().name().to_string(), message: e.to_string() }
}

fn shadow_c(r: ShadowReport) -> wire::ShadowC1 {
    wire::ShadowC1 {
        shadow_version: r.shadow_version,
        live_version: r.live_version,
        matched: r.matched,
        differed: r.differed,
        shadow_failures: r.shadow_failures,
        samples: r
            .samples
            .into_iter()
            .map(|s| (s.pipeline, s.step as u64, s.partition, s.offset, s.live, s.shadow))
            .collect(),
    }
}

/// `command` in the cluster's types, if it is one a node hands to another.
fn to_ask(command: &Command) -> Option<AskC1> {
    Some(match command {
        Command::Queue(q) => AskC1::Queue(match q {
            QueueCommand::Create { name, config } => {
                QueueCommandC1::Create { name: name.clone(), config: config.clone().into() }
            }
            QueueCommand::Delete { name } => QueueCommandC1::Delete { name: name.clone() },
            QueueCommand::Purge { name } => QueueCommandC1::Purge { name: name.clone() },
            QueueCommand::List => QueueCommandC1::List,
            QueueCommand::Describe { name } => QueueCommandC1::Describe { name: name.clone() },
            QueueCommand::Send { queue, messages } => QueueCommandC1::Send {
                queue: queue.clone(),
                messages: messages.iter().cloned().map(Into::into).collect(),
            },
            QueueCommand::Receive { queue, max, wait, visibility_ms } => QueueCommandC1::Receive {
                queue: queue.clone(),
                max: *max as u64,
                wait_ms: wait.as_millis() as u64,
                visibility_ms: *visibility_ms,
            },
            QueueCommand::Ack { queue, receipts } => {
                QueueCommandC1::Ack { queue: queue.clone(), receipts: receipts.clone() }
            }
            QueueCommand::Nack { queue, receipts, how } => QueueCommandC1::Nack {
                queue: queue.clone(),
                receipts: receipts.clone(),
                requeue_ms: match how {
                    Nack::Requeue { delay_ms } => Some(*delay_ms),
                    Nack::DeadLetter => None,
                },
            },
            QueueCommand::Extend { queue, receipts, timeout_ms } => {
                QueueCommandC1::Extend { queue: queue.clone(), receipts: receipts.clone(), timeout_ms: *timeout_ms }
            }
        }),
        Command::Exchange(ExchangeCommand::Publish { exchange, routing_key, record }) => AskC1::Publish {
            exchange: exchange.clone(),
            routing_key: routing_key.clone(),
            key: record.key.as_ref().map(|k| k.to_vec()),
            value: record.value.to_vec(),
            headers: record.headers.clone(),
        },
        Command::Group(g) => AskC1::Group(match g {
            GroupCommand::Join { group, topic, member, session } => GroupCommandC1::Join {
                group: group.clone(),
                topic: topic.clone(),
                member: member.clone(),
                session_ms: session.as_millis() as u64,
            },
            GroupCommand::Heartbeat { group, topic, member } => {
                GroupCommandC1::Heartbeat { group: group.clone(), topic: topic.clone(), member: member.clone() }
            }
            GroupCommand::Leave { group, topic, member } => {
                GroupCommandC1::Leave { group: group.clone(), topic: topic.clone(), member: member.clone() }
            }
            GroupCommand::Describe => GroupCommandC1::Describe,
            GroupCommand::Commit { group, topic, offsets, member: Some((member, generation)) } => {
                GroupCommandC1::Commit {
                    group: group.clone(),
                    topic: topic.clone(),
                    offsets: offsets.clone(),
                    member: member.clone(),
                    generation: *generation,
                }
            }
            _ => return None,
        }),
        _ => return None,
    })
}

/// A handed-over command as the broker's.
fn to_command(ask: AskC1) -> Result<Command> {
    Ok(match ask {
        AskC1::Queue(q) => Command::Queue(match q {
            QueueCommandC1::Create { name, config } => QueueCommand::Create { name, config: config.into() },
            QueueCommandC1::Delete { name } => QueueCommand::Delete { name },
            QueueCommandC1::Purge { name } => QueueCommand::Purge { name },
            QueueCommandC1::List => QueueCommand::List,
            QueueCommandC1::Describe { name } => QueueCommand::Describe { name },
            QueueCommandC1::Send { queue, messages } => {
                QueueCommand::Send { queue, messages: messages.into_iter().map(Into::into).collect() }
            }
            QueueCommandC1::Receive { queue, max, wait_ms, visibility_ms } => {
                QueueCommand::Receive { queue, max: max as usize, wait: Duration::from_millis(wait_ms), visibility_ms }
            }
            QueueCommandC1::Ack { queue, receipts } => QueueCommand::Ack { queue, receipts },
            QueueCommandC1::Nack { queue, receipts, requeue_ms } => QueueCommand::Nack {
                queue,
                receipts,
                how: requeue_ms.map_or(Nack::DeadLetter, |delay_ms| Nack::Requeue { delay_ms }),
            },
            QueueCommandC1::Extend { queue, receipts, timeout_ms } => {
                QueueCommand::Extend { queue, receipts, timeout_ms }
            }
        }),
        AskC1::Publish { exchange, routing_key, key, value, headers } => {
            let record = crate::storage::NewRecord { key: key.map(Into::into), value: value.into(), headers };
            Command::Exchange(ExchangeCommand::Publish { exchange, routing_key, record })
        }
        AskC1::Group(g) => Command::Group(match g {
            GroupCommandC1::Join { group, topic, member, session_ms } => {
                GroupCommand::Join { group, topic, member, session: Duration::from_millis(session_ms) }
            }
            GroupCommandC1::Heartbeat { group, topic, member } => GroupCommand::Heartbeat { group, topic, member },
            GroupCommandC1::Leave { group, topic, member } => GroupCommand::Leave { group, topic, member },
            GroupCommandC1::Describe => GroupCommand::Describe,
            GroupCommandC1::Commit { group, topic, offsets, member, generation } => {
                GroupCommand::Commit { group, topic, offsets, member: Some((member, generation)) }
            }
        }),
        other => return Err(BrokerError::Internal(format!("{other:?} is not a command"))),
    })
}

/// A reply in the cluster's types.
fn to_reply(reply: Reply) -> Result<ReplyC1> {
    Ok(match reply {
        Reply::Done => ReplyC1::Done,
        Reply::Count(n) => ReplyC1::Count(n),
        Reply::Queue(q) => ReplyC1::Queue(q.into()),
        Reply::Queues(qs) => ReplyC1::Queues(qs.into_iter().map(Into::into).collect()),
        Reply::Deliveries(ds) => ReplyC1::Deliveries(ds.into_iter().map(Into::into).collect()),
        Reply::Sent(s) => ReplyC1::Sent(s),
        Reply::Published(dests) => ReplyC1::Published(dests.into_iter().map(Into::into).collect()),
        Reply::Membership(m) => {
            ReplyC1::Membership { member_id: m.member_id, generation: m.generation, partitions: m.partitions }
        }
        Reply::GroupMembers(gs) => {
            ReplyC1::GroupMembers(gs.into_iter().map(|g| (g.group, g.topic, g.generation, g.members)).collect())
        }
        other => return Err(BrokerError::Internal(format!("a handed-over command replied {other:?}"))),
    })
}

/// A reply from another node as the broker's.
fn from_reply(reply: ReplyC1) -> Result<Reply> {
    Ok(match reply {
        ReplyC1::Done => Reply::Done,
        ReplyC1::Count(n) => Reply::Count(n),
        ReplyC1::Queue(q) => Reply::Queue(q.into()),
        ReplyC1::Queues(qs) => Reply::Queues(qs.into_iter().map(Into::into).collect()),
        ReplyC1::Deliveries(ds) => Reply::Deliveries(ds.into_iter().map(Into::into).collect()),
        ReplyC1::Sent(s) => Reply::Sent(s),
        ReplyC1::Published(dests) => Reply::Published(dests.into_iter().map(Into::into).collect()),
        ReplyC1::Membership { member_id, generation, partitions } => {
            Reply::Membership(crate::groups::Membership { member_id, generation, partitions })
        }
        ReplyC1::GroupMembers(gs) => Reply::GroupMembers(
            gs.into_iter()
                .map(|(group, topic, generation, members)| crate::groups::GroupMembers {
                    group,
                    topic,
                    generation,
                    members,
                })
                .collect(),
        ),
        other => return Err(BrokerError::Internal(format!("another node replied {other:?}"))),
    })
}

crate::mirror::mirror!(wire::QueueMessageC1 => NewQueueMessage { body, headers, priority, delay_ms, dedup_id, group, ttl_ms });
crate::mirror::mirror!(wire::QueueInfoC1 => QueueInfo { name, config: into, ready, waiting, in_flight, created_ms });
crate::mirror::mirror!(wire::DeliveryC1 => Delivery { receipt, body, headers, deliveries, priority, group, enqueued_ms });
