//! The one place that decides what a request may do: every permission a request needs, on
//! everything it reads or writes — directly or through what it sets up (a pipeline's source,
//! sink and dead-letter topic, a binding's destination, an alternate exchange, a group that
//! holds a pipeline's offsets) — and which entries of a listing a token may see.
//!
//! The rule: asking weir to read or write on your behalf needs the grants the direct read or
//! write would need. Pipelines then act with their owner's authority, re-checked when the
//! token file is reloaded and at every routed output (see `pipeline::worker`).

use std::borrow::Cow;

use crate::auth::{Identity, Kind, Need, Permission};
use crate::pipeline::{PipelineSpec, SourceName};
use crate::wire::{Request, Response, WireError};

use super::Broker;

impl Broker {
    /// Refuse `request` unless `who` holds every grant it needs.
    pub(super) fn authorize(&self, who: &Identity, request: &Request) -> Result<(), WireError> {
        who.require(&self.needs(request)).map_err(WireError::from)
    }

    /// Everything `request` needs, the request's own resource first.
    fn needs<'a>(&self, request: &'a Request) -> Vec<Need<'a>> {
        use Permission::{Admin, Read, Write};
        let on = |p, kind, name: &'a str| Need::on(p, kind, name);
        match request {
            Request::Hello { .. } => vec![Need::any(Read)],
            Request::Produce { topic, .. } | Request::Request { topic, .. } => vec![on(Write, Kind::Topic, topic)],
            Request::QueueSend { queue, .. } => vec![on(Write, Kind::Queue, queue)],
            // The bindings' creators vouched for their destinations when they bound them.
            Request::Publish { exchange, .. } => vec![on(Write, Kind::Exchange, exchange)],
            Request::Fetch { topic, .. }
            | Request::DescribeTopic { name: topic }
            | Request::FetchOffsets { topic, .. }
            | Request::OffsetsForTime { topic, .. }
            | Request::JoinGroup { topic, .. }
            | Request::Heartbeat { topic, .. }
            | Request::LeaveGroup { topic, .. } => vec![on(Read, Kind::Topic, topic)],
            Request::CommitOffsets { group, topic, .. } => {
                let mut needs = vec![on(Read, Kind::Topic, topic)];
                needs.extend(self.pipeline_group_need(group));
                needs
            }
            Request::QueueReceive { queue, .. }
            | Request::QueueAck { queue, .. }
            | Request::QueueNack { queue, .. }
            | Request::QueueExtend { queue, .. }
            | Request::DescribeQueue { name: queue } => vec![on(Read, Kind::Queue, queue)],
            Request::PipelineStatus { name } => vec![on(Read, Kind::Pipeline, name)],
            // State is made of the source's records: reading it is reading the source.
            Request::StateGet { pipeline, .. } | Request::StateList { pipeline, .. } => {
                let mut needs = vec![on(Read, Kind::Pipeline, pipeline)];
                needs.extend(self.running_spec(pipeline).map(|s| source_need(&s, Read, "the pipeline's source")));
                needs
            }
            Request::PluginVersions { name } | Request::PluginDiff { name } => vec![on(Read, Kind::Plugin, name)],
            Request::DescribePlugin { reference } => {
                vec![on(Read, Kind::Plugin, reference.split('@').next().unwrap_or(reference))]
            }
            // Listings are filtered to what the token may read (`visible`).
            Request::ListTopics
            | Request::ListGroups
            | Request::ListQueues
            | Request::ListPlugins
            | Request::ListPipelines
            | Request::ListExchanges
            | Request::DescribeGroups => vec![Need::any(Read)],
            Request::CreateTopic { name, .. } | Request::DeleteTopic { name } => vec![on(Admin, Kind::Topic, name)],
            Request::CreateQueue { name, config } => {
                let mut needs = vec![on(Admin, Kind::Queue, name)];
                if let Some(dlq) = &config.dead_letter {
                    // Its messages will be written there; creating it is a create.
                    let p = if self.queues.get(dlq).is_ok() { Write } else { Admin };
                    needs.push(on(p, Kind::Queue, dlq).because("its dead-letter queue"));
                }
                needs
            }
            Request::DeleteQueue { name } | Request::PurgeQueue { name } => vec![on(Admin, Kind::Queue, name)],
            Request::CreateExchange { name, alternate, .. } => {
                let mut needs = vec![on(Admin, Kind::Exchange, name)];
                needs.extend(
                    alternate.as_deref().map(|a| on(Write, Kind::Exchange, a).because("its alternate exchange")),
                );
                needs
            }
            Request::DeleteExchange { name } | Request::Unbind { exchange: name, .. } => {
                vec![on(Admin, Kind::Exchange, name)]
            }
            Request::Bind { exchange, binding } => {
                let (kind, dest) = match &binding.destination {
                    crate::exchange::Destination::Topic(t) => (Kind::Topic, t),
                    crate::exchange::Destination::Queue(q) => (Kind::Queue, q),
                };
                vec![on(Admin, Kind::Exchange, exchange), on(Write, kind, dest).because("the binding's destination")]
            }
            Request::DeployPlugin { name, .. }
            | Request::RemovePlugin { name }
            | Request::RollbackPlugin { name, .. }
            | Request::PromotePlugin { name } => vec![on(Admin, Kind::Plugin, name)],
            Request::CreatePipeline { spec } | Request::ApplyPipeline { spec } => self.spec_needs(spec),
            Request::ResumePipeline { name } => match self.running_spec(name) {
                Some(spec) => self.spec_needs(&spec).into_iter().map(owned).collect(),
                None => vec![on(Admin, Kind::Pipeline, name)],
            },
            // A replay reads the source again.
            Request::ResetPipeline { name, .. } => {
                let mut needs = vec![on(Admin, Kind::Pipeline, name)];
                needs.extend(self.running_spec(name).map(|s| source_need(&s, Read, "the pipeline's source")));
                needs
            }
            Request::DeletePipeline { name }
            | Request::PausePipeline { name }
            | Request::StateDelete { pipeline: name, .. } => {
                vec![on(Admin, Kind::Pipeline, name)]
            }
            // Anything added later needs admin on everything until it is classified here.
            #[allow(unreachable_patterns)]
            _ => vec![Need { permission: Admin, resource: Some((Kind::Topic, Cow::Borrowed("*"))), why: None }],
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
        let owner = self.pipelines.list().into_iter().find(|p| p.spec.group() == group)?;
        Some(Need::on(Permission::Admin, Kind::Pipeline, owner.spec.name).because("the group holds its offsets"))
    }

    fn running_spec(&self, name: &str) -> Option<PipelineSpec> {
        self.pipelines.status(name).ok().map(|s| s.spec)
    }
}

/// `permission` on a pipeline's source, a topic or a queue.
fn source_need(spec: &PipelineSpec, permission: Permission, why: &'static str) -> Need<'static> {
    let (kind, name) = match spec.source() {
        SourceName::Topic(t) => (Kind::Topic, t.to_string()),
        SourceName::Queue(q) => (Kind::Queue, q.to_string()),
    };
    Need::on(permission, kind, name).because(why)
}

fn owned(n: Need<'_>) -> Need<'static> {
    Need { permission: n.permission, resource: n.resource.map(|(k, r)| (k, Cow::Owned(r.into_owned()))), why: n.why }
}

/// A listing with only the entries `who` may read.
pub(super) fn visible(who: &Identity, response: Response) -> Response {
    let reads = |kind, name: &str| who.allows(&Need::on(Permission::Read, kind, name));
    match response {
        Response::Topics(mut v) => {
            v.retain(|t| reads(Kind::Topic, &t.name));
            Response::Topics(v)
        }
        Response::Queues(mut v) => {
            v.retain(|q| reads(Kind::Queue, &q.name));
            Response::Queues(v)
        }
        Response::Exchanges(mut v) => {
            v.retain(|e| reads(Kind::Exchange, &e.name));
            Response::Exchanges(v)
        }
        Response::Plugins(mut v) => {
            v.retain(|p| reads(Kind::Plugin, &p.live.name));
            Response::Plugins(v)
        }
        Response::Pipelines(mut v) => {
            v.retain(|p| reads(Kind::Pipeline, &p.spec.name));
            Response::Pipelines(v)
        }
        Response::Groups(mut v) => {
            v.retain(|g| reads(Kind::Topic, &g.topic));
            Response::Groups(v)
        }
        Response::GroupMembers(mut v) => {
            v.retain(|g| reads(Kind::Topic, &g.topic));
            Response::GroupMembers(v)
        }
        other => other,
    }
}
