//! The one place that decides what a request may do: every permission a request needs, on
//! everything it reads or writes — directly or through what it sets up (a pipeline's source,
//! sink and dead-letter topic, a binding's destination, an alternate exchange, a group that
//! holds a pipeline's offsets) — and which entries of a listing a token may see.
//!
//! The rule: asking weir to read or write on your behalf needs the grants the direct read or
//! write would need. Pipelines then act with their owner's authority, re-checked when the
//! token file is reloaded and at every routed output (see `pipeline::worker`).

use std::borrow::Cow;

use super::command::{
    Command, ExchangeCommand, GroupCommand, PipelineCommand, PluginCommand, QueueCommand, Reply, SchemaCommand,
    SchemaReply, StateCommand, TopicCommand,
};
use super::{Broker, Result};
use crate::auth::Permission::{Admin, Read, Write};
use crate::auth::{Identity, Kind, Need, Permission};
use crate::classic_groups::JoinRequest;
use crate::exchange::Destination;
use crate::pipeline::{PipelineSpec, Source};

impl Broker {
    /// Refuse a metrics scrape unless `who` may read everything: metrics name and count every
    /// topic, group, queue and pipeline (`None`: a server without tokens).
    pub fn authorize_metrics(&self, who: Option<&Identity>) -> Result<()> {
        match who {
            None => Ok(()),
            Some(who) => Ok(who.require(&[Need::on(Read, Kind::Topic, "*").because("metrics cover every resource")])?),
        }
    }

    /// Refuse `command` unless `who` holds every grant it needs.
    pub(super) fn authorize(&self, who: &Identity, command: &Command) -> Result<()> {
        Ok(who.require(&self.needs(command))?)
    }

    /// Everything `command` needs, the command's own resource first.
    fn needs<'a>(&self, command: &'a Command) -> Vec<Need<'a>> {
        match command {
            Command::Topic(c) => topic_needs(c),
            Command::Group(c) => self.group_needs(c),
            Command::Queue(c) => self.queue_needs(c),
            Command::Exchange(c) => exchange_needs(c),
            Command::Plugin(c) => plugin_needs(c),
            Command::Pipeline(c) => self.pipeline_needs(c),
            Command::State(c) => self.state_needs(c),
            Command::Schema(c) => schema_needs(c),
            // Names every pipeline and node: for operators.
            Command::ClusterStatus => vec![on(Read, Kind::Pipeline, "*")],
        }
    }

    fn group_needs<'a>(&self, command: &'a GroupCommand) -> Vec<Need<'a>> {
        match command {
            GroupCommand::Commit { group, topic, .. } => {
                let mut needs = vec![on(Read, Kind::Topic, topic)];
                needs.extend(self.pipeline_group_need(group));
                needs
            }
            GroupCommand::ClassicCommit { group, topic, .. } => {
                let mut needs = vec![on(Read, Kind::Group, group), on(Read, Kind::Topic, topic)];
                needs.extend(self.pipeline_group_need(group));
                needs
            }
            GroupCommand::Offsets { topic, .. }
            | GroupCommand::Join { topic, .. }
            | GroupCommand::Heartbeat { topic, .. }
            | GroupCommand::Leave { topic, .. } => vec![on(Read, Kind::Topic, topic)],
            // Filtered to the topics the token may read (`visible`).
            GroupCommand::List | GroupCommand::Describe => vec![],
            // A Kafka group is a resource of its own, as in Kafka's ACLs: membership needs read
            // on its name (subscriptions are the client's opaque bytes); reading and
            // committing need the topic's grants besides.
            GroupCommand::ClassicJoin(JoinRequest { group, .. })
            | GroupCommand::ClassicSync { group, .. }
            | GroupCommand::ClassicHeartbeat { group, .. }
            | GroupCommand::ClassicLeave { group, .. } => vec![on(Read, Kind::Group, group)],
            GroupCommand::ClassicDescribe { groups: Some(names) } => {
                names.iter().map(|g| on(Read, Kind::Group, g)).collect()
            }
            // Filtered to the groups the token may read (`visible`).
            GroupCommand::ClassicDescribe { groups: None } => vec![],
        }
    }

    fn queue_needs<'a>(&self, command: &'a QueueCommand) -> Vec<Need<'a>> {
        match command {
            QueueCommand::Send { queue, .. } => vec![on(Write, Kind::Queue, queue)],
            QueueCommand::Receive { queue, .. }
            | QueueCommand::Ack { queue, .. }
            | QueueCommand::Nack { queue, .. }
            | QueueCommand::Extend { queue, .. }
            | QueueCommand::Describe { name: queue } => vec![on(Read, Kind::Queue, queue)],
            QueueCommand::List => vec![],
            QueueCommand::Create { name, config } => {
                let mut needs = vec![on(Admin, Kind::Queue, name)];
                if let Some(dlq) = &config.dead_letter {
                    // Its messages will be written there; creating it is a create.
                    let p = if self.queues.get(dlq).is_ok() { Write } else { Admin };
                    needs.push(on(p, Kind::Queue, dlq).because("its dead-letter queue"));
                }
                needs
            }
            QueueCommand::Delete { name } | QueueCommand::Purge { name } => vec![on(Admin, Kind::Queue, name)],
        }
    }

    fn pipeline_needs<'a>(&self, command: &'a PipelineCommand) -> Vec<Need<'a>> {
        match command {
            PipelineCommand::Create { spec } | PipelineCommand::Apply { spec } => self.spec_needs(spec),
            PipelineCommand::Resume { name } => match self.running_spec(name) {
                Some(spec) => self.spec_needs(&spec).into_iter().map(owned).collect(),
                None => vec![on(Admin, Kind::Pipeline, name)],
            },
            // A replay reads the source again.
            PipelineCommand::Reset { name, .. } => {
                let mut needs = vec![on(Admin, Kind::Pipeline, name)];
                needs.extend(self.running_spec(name).map(|s| source_need(&s, Read, "the pipeline's source")));
                needs
            }
            PipelineCommand::Delete { name } | PipelineCommand::Pause { name } => {
                vec![on(Admin, Kind::Pipeline, name)]
            }
            PipelineCommand::Status { name } => vec![on(Read, Kind::Pipeline, name)],
            PipelineCommand::List => vec![],
        }
    }

    fn state_needs<'a>(&self, command: &'a StateCommand) -> Vec<Need<'a>> {
        match command {
            // State is made of the source's records: reading it is reading the source.
            StateCommand::Get { pipeline, .. } | StateCommand::List { pipeline, .. } => {
                let mut needs = vec![on(Read, Kind::Pipeline, pipeline)];
                needs.extend(self.running_spec(pipeline).map(|s| source_need(&s, Read, "the pipeline's source")));
                needs
            }
            StateCommand::Delete { pipeline, .. } => vec![on(Admin, Kind::Pipeline, pipeline)],
        }
    }

    /// What creating, applying or resuming a pipeline needs: admin on it, and what it will
    /// read and write with its creator's authority (`PipelineSpec::needs`), including a
    /// dead-letter topic it would create and a group that holds another pipeline's offsets.
    fn spec_needs<'a>(&self, spec: &'a PipelineSpec) -> Vec<Need<'a>> {
        let mut needs = vec![Need::on(Permission::Admin, Kind::Pipeline, spec.name.as_str())];
        needs.extend(spec.needs());
        if spec.on_error == crate::pipeline::ErrorPolicy::DeadLetter
            && self.store.topic(&spec.dead_letter_topic()).is_err()
        {
            needs.push(
                Need::on(Permission::Admin, Kind::Topic, spec.dead_letter_topic())
                    .because("its dead-letter topic, created with it"),
            );
        }
        needs.extend(
            self.pipeline_group_need(&spec.group())
                .filter(|n| n.resource.as_ref().is_none_or(|(_, other)| other.as_ref() != spec.name)),
        );
        needs
    }

    /// Moving a group that holds a pipeline's offsets is resetting that pipeline.
    fn pipeline_group_need(&self, group: &str) -> Option<Need<'static>> {
        let owner = self.pipelines.specs().into_iter().find(|s| s.group() == group)?;
        Some(Need::on(Permission::Admin, Kind::Pipeline, owner.name).because("the group holds its offsets"))
    }

    fn running_spec(&self, name: &str) -> Option<PipelineSpec> {
        self.pipelines.spec(name)
    }
}

fn on(permission: Permission, kind: Kind, name: &str) -> Need<'_> {
    Need::on(permission, kind, name)
}

fn topic_needs(command: &TopicCommand) -> Vec<Need<'_>> {
    match command {
        TopicCommand::Produce { topic, .. } | TopicCommand::Request { topic, .. } => {
            vec![on(Write, Kind::Topic, topic)]
        }
        TopicCommand::Fetch { topic, .. }
        | TopicCommand::Describe { name: topic }
        | TopicCommand::OffsetsForTime { topic, .. } => vec![on(Read, Kind::Topic, topic)],
        TopicCommand::Create { name, .. } | TopicCommand::Delete { name } => vec![on(Admin, Kind::Topic, name)],
        TopicCommand::List | TopicCommand::NewProducer => vec![],
        // Each record's original topic is checked as it is read (the broker knows it then).
        TopicCommand::ReplayDeadLetters { topic, to } => {
            let mut needs = vec![on(Read, Kind::Topic, topic)];
            needs.extend(to.as_deref().map(|t| on(Write, Kind::Topic, t).because("where the dead letters go")));
            needs
        }
    }
}

fn exchange_needs(command: &ExchangeCommand) -> Vec<Need<'_>> {
    match command {
        // The bindings' creators vouched for their destinations when they bound them.
        // The default exchange (AMQP's ``) delivers to the queue the routing key names.
        ExchangeCommand::Publish { exchange, routing_key, .. } if exchange.is_empty() => {
            vec![on(Write, Kind::Queue, routing_key)]
        }
        ExchangeCommand::Publish { exchange, .. } => vec![on(Write, Kind::Exchange, exchange)],
        ExchangeCommand::Create { name, alternate, .. } => {
            let mut needs = vec![on(Admin, Kind::Exchange, name)];
            needs.extend(alternate.as_deref().map(|a| on(Write, Kind::Exchange, a).because("its alternate exchange")));
            needs
        }
        ExchangeCommand::Delete { name } | ExchangeCommand::Unbind { exchange: name, .. } => {
            vec![on(Admin, Kind::Exchange, name)]
        }
        ExchangeCommand::Bind { exchange, binding } => {
            let (kind, dest) = match &binding.destination {
                Destination::Topic(t) => (Kind::Topic, t),
                Destination::Queue(q) => (Kind::Queue, q),
            };
            vec![on(Admin, Kind::Exchange, exchange), on(Write, kind, dest).because("the binding's destination")]
        }
        ExchangeCommand::List => vec![],
    }
}

fn plugin_needs(command: &PluginCommand) -> Vec<Need<'_>> {
    match command {
        PluginCommand::Versions { name } | PluginCommand::Diff { name } => vec![on(Read, Kind::Plugin, name)],
        PluginCommand::Describe { reference } => {
            vec![on(Read, Kind::Plugin, reference.split('@').next().unwrap_or(reference))]
        }
        PluginCommand::Deploy { name, .. }
        | PluginCommand::UploadPart { name, .. }
        | PluginCommand::Remove { name }
        | PluginCommand::Rollback { name, .. }
        | PluginCommand::Promote { name } => vec![on(Admin, Kind::Plugin, name)],
        PluginCommand::List => vec![],
    }
}

/// `permission` on a pipeline's source, a topic or a queue.
fn source_need(spec: &PipelineSpec, permission: Permission, why: &'static str) -> Need<'static> {
    let (kind, name) = match &spec.source {
        Source::Topic(t) => (Kind::Topic, t.clone()),
        Source::Queue(q) => (Kind::Queue, q.clone()),
    };
    Need::on(permission, kind, name).because(why)
}

fn owned(n: Need<'_>) -> Need<'static> {
    Need { permission: n.permission, resource: n.resource.map(|(k, r)| (k, Cow::Owned(r.into_owned()))), why: n.why }
}

/// A listing with only the entries `who` may read.
/// A subject's reads need read on it, registrations and deletes write, its configuration and
/// mode admin; the global configuration and mode, and reads that name no subject (a schema
/// by id alone, where a schema is registered), need the grant on every subject (`*`).
fn schema_needs(command: &SchemaCommand) -> Vec<Need<'_>> {
    use SchemaCommand as S;
    let subject = command.subject().unwrap_or("*");
    let permission = match command {
        S::Register { .. } | S::DeleteVersion { .. } | S::DeleteSubject { .. } => Write,
        S::SetConfig { .. } | S::DeleteConfig { .. } | S::SetMode { .. } | S::DeleteMode { .. } => Admin,
        // Filtered to the subjects the token may read (`visible`).
        S::Subjects { .. } => return vec![],
        _ => Read,
    };
    vec![on(permission, Kind::Subject, subject)]
}

pub(super) fn visible(who: &Identity, reply: Reply) -> Reply {
    let reads = |kind, name: &str| who.allows(&Need::on(Read, kind, name));
    match reply {
        // A topic is listed to those who may read or write it (a producer must find its topic:
        // Kafka's Describe is implied by either).
        Reply::Topics(mut v) => {
            v.retain(|t| reads(Kind::Topic, &t.name) || who.allows(&Need::on(Write, Kind::Topic, &t.name)));
            Reply::Topics(v)
        }
        Reply::Schema(SchemaReply::Subjects(mut v)) => {
            v.retain(|s| reads(Kind::Subject, s));
            Reply::Schema(SchemaReply::Subjects(v))
        }
        Reply::Queues(mut v) => {
            v.retain(|q| reads(Kind::Queue, &q.name));
            Reply::Queues(v)
        }
        Reply::Exchanges(mut v) => {
            v.retain(|e| reads(Kind::Exchange, &e.name));
            Reply::Exchanges(v)
        }
        Reply::Plugins(mut v) => {
            v.retain(|p| reads(Kind::Plugin, &p.live.name));
            Reply::Plugins(v)
        }
        Reply::Pipelines(mut v) => {
            v.retain(|p| reads(Kind::Pipeline, &p.spec.name));
            Reply::Pipelines(v)
        }
        Reply::Groups(mut v) => {
            v.retain(|g| reads(Kind::Topic, &g.topic));
            Reply::Groups(v)
        }
        Reply::ClassicGroups(mut v) => {
            v.retain(|g| reads(Kind::Group, &g.group));
            Reply::ClassicGroups(v)
        }
        Reply::GroupMembers(mut v) => {
            v.retain(|g| reads(Kind::Topic, &g.topic));
            Reply::GroupMembers(v)
        }
        other => other,
    }
}
