//! The bearer-token security scheme shared by every `/api` operation.

use std::sync::Arc;

use poem::Request;
use poem_openapi::auth::Bearer;
use poem_openapi::registry::MetaOAuthScope;
use poem_openapi::{OAuthScopes, SecurityScheme};

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

/// The scopes, as named in security requirements: each operation declares the one it needs
/// with `#[oai(scope = "Scope::Read")]` on its `BearerAuth` argument, and
/// [`super::document`] turns that into the document's OpenID Connect requirement.
impl OAuthScopes for Scope {
    fn meta() -> Vec<MetaOAuthScope> {
        [Scope::Read, Scope::Write, Scope::Admin]
            .into_iter()
            .map(|scope| MetaOAuthScope {
                name: scope.as_str(),
                description: Some(description(scope)),
            })
            .collect()
    }

    fn name(&self) -> &'static str {
        self.as_str()
    }
}

/// What a scope allows, for the document.
const fn description(scope: Scope) -> &'static str {
    match scope {
        Scope::Read => {
            "Read the tenant's integrations, health, events, incidents, audit trail and webhook subscriptions."
        }
        Scope::Write => {
            "Everything `integrations:read` allows, and create, change and delete them."
        }
        Scope::Admin => {
            "Everything `integrations:write` allows, and manage API keys, discover plugins and read the cluster."
        }
    }
}
