//! The AgentControl gRPC service: a thin edge over [`crate::state`].
//!
//! Owns request decoding and the conversion of results to responses; errors
//! become statuses through `From<AgentError> for Status` (the one mapping,
//! in [`crate::error`]). No logic lives here.

use std::sync::Arc;

use ballast_proto::v1::agent_control_server::AgentControl;
use ballast_proto::v1::{ApplyRequest, ApplyResponse, GetAgentStateRequest, GetAgentStateResponse};
use tonic::{Request, Response, Status};
use tracing::warn;

use crate::state::AgentState;

/// Serves AgentControl for one agent.
#[derive(Debug, Clone)]
pub(crate) struct AgentService {
    state: Arc<AgentState>,
}

impl AgentService {
    pub fn new(state: Arc<AgentState>) -> Self {
        Self { state }
    }
}

#[tonic::async_trait]
impl AgentControl for AgentService {
    async fn apply(
        &self,
        request: Request<ApplyRequest>,
    ) -> Result<Response<ApplyResponse>, Status> {
        match self.state.apply(request.into_inner()).await {
            Ok(resp) => Ok(Response::new(resp)),
            Err(e) => {
                warn!(error = %e, "push refused");
                Err(e.into())
            }
        }
    }

    async fn get_state(
        &self,
        _request: Request<GetAgentStateRequest>,
    ) -> Result<Response<GetAgentStateResponse>, Status> {
        Ok(Response::new(self.state.get_state()))
    }
}
