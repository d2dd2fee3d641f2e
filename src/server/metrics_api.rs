//! `/api/v1/metrics`: the function metrics (`monitor`) over HTTP, in the envelope of the
//! other `/api/v1` endpoints. `GET /api/v1/metrics` lists every metric;
//! `GET /api/v1/metrics/{name}?service=&function=&qualifier=&start=&end=&period=`
//! answers its datapoints. Routes and parameters only: `monitor` computes.

use axum::extract::{Path, RawQuery, State};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

use super::query_api::{blocking, ok, ApiError};
use super::tenant::TenantOf;
use super::AppState;
use crate::monitor::{self, catalog, catalog::Level};
use crate::query::params;

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct MetricView {
    name: String,
    unit: &'static str,
    level: &'static str,
    dimensions: &'static [&'static str],
    description: &'static str,
}

pub(super) async fn list() -> Response {
    let mut all: Vec<MetricView> = catalog::all()
        .map(|(name, level, base)| MetricView {
            name,
            unit: base.unit,
            level: level.prefix(),
            dimensions: level.dimensions(),
            description: base.meaning,
        })
        .collect();
    // Lambda's names: any level, by the dimensions given; `statistic` picks the value
    for (name, _) in monitor::lambda::names() {
        if let Ok(Some((base, _))) = monitor::lambda::find(name, None) {
            all.push(MetricView {
                name: name.to_owned(),
                unit: base.unit,
                level: "Lambda",
                dimensions: Level::Function.dimensions(),
                description: base.meaning,
            });
        }
    }
    let n = all.len();
    ok(all, n)
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct PointView<'a> {
    timestamp: u64,
    value: f64,
    #[serde(skip_serializing_if = "Option::is_none")]
    service_name: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    function_name: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    qualifier: Option<&'a str>,
}

pub(super) async fn series(
    State(state): State<AppState>,
    TenantOf(tenant): TenantOf,
    Path(name): Path<String>,
    RawQuery(raw): RawQuery,
) -> Response {
    match series_of(state, tenant, name, raw).await {
        Ok(r) => r,
        Err(e) => e.into_response(),
    }
}

async fn series_of(
    state: AppState,
    tenant: crate::store::keys::Tenant,
    name: String,
    raw: Option<String>,
) -> Result<Response, ApiError> {
    let pairs = params::pairs(raw.as_deref());
    let q = params::parse_metric_query(&pairs, crate::clock::now_us())?;
    let (level, base) = match catalog::find(&name) {
        Some((level, base)) => (level, *base),
        None => {
            // Lambda's names: the dimensions given pick the level
            let statistic = params::single(&pairs, "statistic")?;
            match monitor::lambda::find(&name, statistic).map_err(ApiError::BadRequest)? {
                Some((base, region_only)) => {
                    let level = match (&q.function, &q.service) {
                        _ if region_only => Level::Region,
                        (Some(_), _) => Level::Function,
                        (None, Some(_)) => Level::Service,
                        (None, None) => Level::Region,
                    };
                    (level, base)
                }
                None => {
                    return Err(ApiError::NotFound(
                        "unknown metric: GET /api/v1/metrics lists them",
                    ))
                }
            }
        }
    };
    let need = |v: &Option<String>, p: &str| {
        v.clone()
            .ok_or_else(|| ApiError::BadRequest(format!("{name} needs the parameter '{p}'")))
    };
    let function = monitor::Function {
        service: match level {
            Level::Region => String::new(),
            _ => need(&q.service, "service")?,
        },
        function: match level {
            Level::Function => need(&q.function, "function")?,
            _ => String::new(),
        },
        qualifier: q.qualifier.clone(),
    };
    let (query, gaps) = state.query.for_request();
    let f = function.clone();
    let points = blocking(move || {
        monitor::series(
            &query,
            tenant,
            level,
            &base,
            &f,
            (q.start_us, q.end_us),
            q.period,
        )
    })
    .await?;
    let view: Vec<PointView> = points
        .iter()
        .map(|p| PointView {
            timestamp: p.timestamp_ms,
            value: p.value,
            service_name: (level != Level::Region).then_some(function.service.as_str()),
            function_name: (level == Level::Function).then_some(function.function.as_str()),
            qualifier: (level == Level::Function).then_some(function.qualifier.as_str()),
        })
        .collect();
    let n = view.len();
    Ok(super::query_api::ok_but(view, n, &gaps))
}
