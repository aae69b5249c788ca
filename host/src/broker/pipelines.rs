//! Pipeline and step-state commands. A pipeline created or applied acts with its caller's
//! grants afterwards (the owner recorded with it).

use super::command::{PipelineCommand, Reply, StateCommand};
use super::{Broker, Result};

impl Broker {
    pub(super) async fn pipeline_command(&self, command: PipelineCommand, owner: Option<String>) -> Result<Reply> {
        let p = &self.pipelines;
        Ok(match command {
            // Under the deploy lock: a deploy checking the pipelines that follow its plugin
            // cannot miss one being created with the version it replaces.
            PipelineCommand::Create { spec } => {
                let _deploys = self.registry.deploy_lock().await;
                self.check_contracts(&spec, None).await?;
                Reply::Pipeline(p.create(spec, owner).await?)
            }
            PipelineCommand::Apply { spec } => {
                let _deploys = self.registry.deploy_lock().await;
                self.check_contracts(&spec, None).await?;
                let (status, change) = p.apply(spec, owner).await?;
                Reply::Applied(status, change)
            }
            PipelineCommand::List => {
                let mut all = Vec::new();
                for status in p.list().await {
                    all.push(self.summed(status).await?);
                }
                Reply::Pipelines(all)
            }
            PipelineCommand::Status { name } => Reply::Pipeline(self.summed(p.status(&name).await?).await?),
            PipelineCommand::Delete { name } => {
                p.delete(&name).await?;
                Reply::Done
            }
            PipelineCommand::Pause { name } => Reply::Pipeline(p.pause(&name).await?),
            PipelineCommand::Resume { name } => Reply::Pipeline(p.resume(&name).await?),
            PipelineCommand::Reset { name, to, reset_state } => Reply::Pipeline(p.reset(&name, to, reset_state).await?),
        })
    }

    pub(super) async fn state_command(&self, command: StateCommand) -> Result<Reply> {
        let p = &self.pipelines;
        Ok(match command {
            StateCommand::Get { pipeline, step, key } => Reply::State(p.state_get(&pipeline, step, &key).await?),
            StateCommand::List { pipeline, step, prefix, limit } => {
                Reply::State(p.state_list(&pipeline, step, &prefix, limit).await?)
            }
            StateCommand::Delete { pipeline, step, key } => {
                Reply::Count(p.state_delete(&pipeline, step, &key).await? as u64)
            }
        })
    }
}
