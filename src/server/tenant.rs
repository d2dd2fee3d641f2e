//! Who a request is: the tenant its token names (`tenancy`), or the default tenant when
//! fctrace runs without a tenants file. An extractor for handlers, and the same check for
//! gRPC metadata and for the confidential `/adapt_{token}/…` ingest paths.

use axum::extract::{FromRef, FromRequestParts};
use axum::http::request::Parts;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};

use super::AppState;
use crate::store::keys::{Tenant, DEFAULT_TENANT};

/// What a request without a valid token is told (and nothing is stored or read).
pub const UNAUTHENTICATED: &str = "a valid tenant token is required: Authorization: Bearer TOKEN, \
     x-fctrace-token: TOKEN, or the /adapt_TOKEN/ ingest path";

/// The tenant `token` names; `None` when tenancy is on and it names none.
pub fn resolve(state: &AppState, token: Option<&str>) -> Option<Tenant> {
    if !state.tenancy.is_on() {
        return Some(DEFAULT_TENANT);
    }
    token.and_then(|t| state.tenancy.who(t)).map(|w| w.id)
}

/// Why a request has no tenant: its answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// 401: no valid token.
    Unauthorized,
    /// 404: a path that is no confidential endpoint.
    NotFound,
}

impl IntoResponse for Refusal {
    fn into_response(self) -> Response {
        match self {
            Refusal::Unauthorized => (
                StatusCode::UNAUTHORIZED,
                [(header::WWW_AUTHENTICATE, "Bearer")],
                UNAUTHENTICATED,
            )
                .into_response(),
            Refusal::NotFound => (StatusCode::NOT_FOUND, "not found").into_response(),
        }
    }
}

/// A 401, counted.
fn unauthorized(state: &AppState) -> Refusal {
    state.metrics.rejected_request("unauthenticated");
    Refusal::Unauthorized
}

/// The tenant of a request's headers, or why not.
pub fn of_headers(state: &AppState, headers: &HeaderMap) -> Result<Tenant, Refusal> {
    resolve(state, crate::tenancy::token_of(headers)).ok_or_else(|| unauthorized(state))
}

/// The tenant of a confidential path segment `adapt_{token}`; anything else is 404.
pub fn of_adapt_segment(state: &AppState, segment: &str) -> Result<Tenant, Refusal> {
    let Some(token) = segment.strip_prefix("adapt_") else {
        return Err(Refusal::NotFound);
    };
    if !state.tenancy.is_on() {
        // no tenants: the confidential paths are the plain ones
        return Ok(DEFAULT_TENANT);
    }
    resolve(state, Some(token)).ok_or_else(|| unauthorized(state))
}

/// Whether `given` is `secret`, in time independent of where they first differ.
pub fn same_secret(given: &str, secret: &str) -> bool {
    given.len() == secret.len()
        && given
            .bytes()
            .zip(secret.bytes())
            .fold(0u8, |acc, (a, b)| acc | (a ^ b))
            == 0
}

/// A handler's tenant, from `Authorization: Bearer …` or `x-fctrace-token`. The admin
/// token (`--admin-token`) reads any tenant: the one named in `x-fctrace-tenant`, else the
/// default one.
pub struct TenantOf(pub Tenant);

impl<S> FromRequestParts<S> for TenantOf
where
    AppState: FromRef<S>,
    S: Send + Sync,
{
    type Rejection = Refusal;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Refusal> {
        of_request(&AppState::from_ref(state), &parts.headers).map(TenantOf)
    }
}

/// What [`TenantOf`] extracts.
fn of_request(state: &AppState, headers: &HeaderMap) -> Result<Tenant, Refusal> {
    let token = crate::tenancy::token_of(headers);
    let admin = state.settings.admin_token.as_deref();
    if let (Some(t), Some(a), true) = (token, admin, state.tenancy.is_on()) {
        if same_secret(t, a) {
            let named = headers
                .get("x-fctrace-tenant")
                .and_then(|v| v.to_str().ok());
            return match named {
                None => Ok(DEFAULT_TENANT),
                Some(name) => match state.tenancy.by_name(name.trim()) {
                    Some(spec) => Ok(spec.id),
                    None => Err(Refusal::NotFound),
                },
            };
        }
    }
    of_headers(state, headers)
}

/// The tenant of a gRPC call's metadata (`authorization: Bearer …` or
/// `x-fctrace-token`), or `UNAUTHENTICATED`.
pub fn of_metadata(
    state: &AppState,
    md: &tonic::metadata::MetadataMap,
) -> Result<Tenant, tonic::Status> {
    let token = md
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .or_else(|| md.get("x-fctrace-token").and_then(|v| v.to_str().ok()))
        .map(str::trim);
    resolve(state, token).ok_or_else(|| {
        state.metrics.rejected_request("unauthenticated");
        tonic::Status::unauthenticated(UNAUTHENTICATED)
    })
}

/// Each function's tenant resolved (`tenant = "…"` must name a tenant of the file), with
/// a token of its tenant's for the function's own spans. With a tenants file every
/// function needs a tenant: the default one is nobody's to read.
pub fn assign_functions(
    specs: &[crate::platform::functions::FunctionSpec],
    tenancy: &crate::tenancy::Tenancy,
) -> Result<Vec<crate::platform::functions::FunctionSpec>, String> {
    specs
        .iter()
        .cloned()
        .map(|mut f| {
            let label = format!("function {}/{}", f.service, f.name);
            match (&f.tenant, tenancy.is_on()) {
                (None, false) => Ok(f),
                (None, true) => Err(format!(
                    "{label} names no tenant: with a tenants file every function needs `tenant`"
                )),
                (Some(_), false) => Err(format!(
                    "{label} names a tenant, but there is no tenants file (--tenants)"
                )),
                (Some(name), true) => {
                    let spec = tenancy.by_name(name).ok_or_else(|| {
                        format!("{label}: no tenant {name:?} in the tenants file")
                    })?;
                    f.tenant_id = spec.id;
                    f.ingest_token = Some(tenancy.internal_token(spec.id)?);
                    Ok(f)
                }
            }
        })
        .collect()
}
