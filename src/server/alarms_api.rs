//! `GET /api/v1/alarms`: every alarm rule with its state, and the transitions kept
//! (`monitor::alarms`). Routes only.

use std::sync::Arc;

use axum::extract::State;
use axum::response::Response;
use axum::routing::get;
use axum::Router;
use serde::Serialize;

use super::query_api::ok;
use crate::monitor::alarms::{AlarmView, Alarms, Transition};

pub fn router(alarms: Arc<Alarms>) -> Router {
    Router::new()
        .route("/api/v1/alarms", get(list))
        .with_state(alarms)
}

#[derive(Serialize)]
struct View {
    alarms: Vec<AlarmView>,
    transitions: Vec<Transition>,
}

async fn list(State(alarms): State<Arc<Alarms>>) -> Response {
    let (alarms, transitions) = alarms.view();
    let n = alarms.len();
    ok(
        View {
            alarms,
            transitions,
        },
        n,
    )
}
