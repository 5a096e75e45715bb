//! The bearer-token security scheme shared by every `/api` operation.

use std::sync::Arc;

use poem::Request;
use poem_openapi::SecurityScheme;
use poem_openapi::auth::Bearer;

use super::error::ApiError;
use crate::AppState;
use crate::auth::{Principal, Scope};

/// `Authorization: Bearer <token>`: an API key or a JWT from the configured authority.
#[derive(SecurityScheme)]
#[oai(ty = "bearer", checker = "check_bearer")]
pub struct BearerAuth(pub Principal);

async fn check_bearer(req: &Request, bearer: Bearer) -> poem::Result<Principal> {
    let state = req
        .data::<Arc<AppState>>()
        .ok_or_else(|| ApiError::internal().into_poem())?;
    state
        .auth
        .authenticate(&bearer.token)
        .await
        .map_err(|e| ApiError::from(e).into_poem())
}

impl BearerAuth {
    /// The principal, if it holds `scope`.
    ///
    /// # Errors
    /// 403 naming the missing scope.
    pub fn require(&self, scope: Scope) -> Result<&Principal, ApiError> {
        if self.0.has(scope) {
            Ok(&self.0)
        } else {
            Err(ApiError::forbidden(scope.as_str()))
        }
    }
}
