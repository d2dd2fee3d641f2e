//! `GET /api/v1/alarms`: the alarm rules of the caller's tenant with their states, and
//! their transitions kept (`monitor::alarms`). Routes only.

use std::sync::Arc;

use axum::extract::State;
use axum::response::Response;
use axum::routing::get;
use axum::Router;
use serde::Serialize;

use super::query_api::ok;
use super::tenant::TenantOf;
use super::AppState;
use crate::monitor::alarms::{AlarmView, Alarms, Transition};

pub fn router(state: AppState, alarms: Arc<Alarms>) -> Router {
    Router::new()
        .route(
            "/api/v1/alarms",
            get(
                move |State(state): State<AppState>, TenantOf(tenant): TenantOf| {
                    list(state, tenant, Arc::clone(&alarms))
                },
            ),
        )
        .with_state(state)
}

#[derive(Serialize)]
struct View {
    alarms: Vec<AlarmView>,
    transitions: Vec<Transition>,
}

async fn list(
    state: AppState,
    tenant: crate::store::keys::Tenant,
    alarms: Arc<Alarms>,
) -> Response {
    let (mut alarms, mut transitions) = alarms.view();
    // a tenant sees the rules that watch its metrics
    alarms.retain(|a| state.tenancy.id_by_name(&a.rule.tenant) == Some(tenant));
    transitions.retain(|t| alarms.iter().any(|a| a.rule.name == t.alarm));
    let n = alarms.len();
    ok(
        View {
            alarms,
            transitions,
        },
        n,
    )
}
