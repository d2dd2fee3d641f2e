//! The daemon's background loops that are not a listener's: adaptive sampling's
//! recalculation (and its saved probabilities), retention passes, and the alarm
//! evaluator and sender. `serve` starts and stops them.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

use super::AppState;
use crate::config::Settings;
use crate::store::Store;

/// Adaptive sampling's probabilities as the last run saved them (none when unreadable:
/// it starts over, and says so).
pub(super) fn adaptive_saved(
    store: &Store,
) -> std::collections::BTreeMap<String, std::collections::BTreeMap<String, f64>> {
    let key = crate::store::keys::adaptive_sampling_key();
    match store.state(&key) {
        Ok(Some(v)) => serde_json::from_slice(&v).unwrap_or_else(|e| {
            tracing::warn!(error = %e, "saved adaptive sampling probabilities unreadable; starting over");
            Default::default()
        }),
        Ok(None) => Default::default(),
        Err(e) => {
            tracing::warn!(error = %e, "adaptive sampling probabilities not read; starting over");
            Default::default()
        }
    }
}

/// Recompute adaptive sampling's probabilities every interval and keep them in the store.
pub(super) async fn adaptive_loop(
    adaptive: Arc<crate::sampling::adaptive::Adaptive>,
    store: Arc<Store>,
    mut stop: watch::Receiver<bool>,
) {
    let mut last = std::time::Instant::now();
    loop {
        tokio::select! {
            _ = tokio::time::sleep(adaptive.interval()) => {}
            _ = stop.wait_for(|s| *s) => return,
        }
        let now = std::time::Instant::now();
        let saved = adaptive.recalculate(now - last);
        last = now;
        let store = Arc::clone(&store);
        let written = tokio::task::spawn_blocking(move || {
            let value = serde_json::to_vec(&saved).unwrap_or_default();
            store.set_state(&crate::store::keys::adaptive_sampling_key(), &value)
        })
        .await;
        if let Ok(Err(e)) = written {
            tracing::warn!(error = %e, "adaptive sampling probabilities not saved");
        }
    }
}

pub(super) async fn retention_loop(store: Arc<Store>, mut stop: watch::Receiver<bool>) {
    // Expired span files, posting seconds and invocation records go at least this often,
    // so disk space comes back even on an idle store (see `Store::expire`).
    let every = store
        .retention()
        .clamp(Duration::from_secs(1), Duration::from_secs(86400));
    loop {
        tokio::select! {
            _ = tokio::time::sleep(every) => {}
            _ = stop.wait_for(|s| *s) => return,
        }
        let s = Arc::clone(&store);
        let started = std::time::Instant::now();
        if tokio::task::spawn_blocking(move || s.expire())
            .await
            .is_ok()
        {
            tracing::debug!(
                took_ms = started.elapsed().as_millis() as u64,
                "retention compaction done"
            );
        }
    }
}

/// The alarm evaluator, the notification sender and, with `--alarms`, the rules file's
/// watcher (a bad file keeps the last good rules, reported in the log and on /metrics).
pub(super) fn alarm_tasks(
    settings: &Settings,
    alarms: &Arc<crate::monitor::alarms::Alarms>,
    queue: tokio::sync::mpsc::Receiver<(String, crate::monitor::alarms::Transition)>,
    state: &AppState,
    stop: &tokio::sync::watch::Receiver<bool>,
) -> Vec<tokio::task::JoinHandle<()>> {
    use crate::monitor::alarms;
    let mut tasks = vec![tokio::spawn(alarms::send_loop(
        queue,
        Arc::clone(&state.metrics),
        stop.clone(),
    ))];
    // In a cluster a store node holds some partitions and an ingest node none: rules are
    // evaluated on query nodes, over every store node's aggregates.
    if matches!(
        settings.role,
        crate::cluster::Role::All | crate::cluster::Role::Query
    ) {
        let (source, _) = state.query.for_request();
        tasks.push(tokio::spawn(alarms::evaluate_loop(
            Arc::clone(alarms),
            Arc::new(source),
            Arc::clone(&state.metrics),
            {
                let tenancy = Arc::clone(&state.tenancy);
                Arc::new(move |name: &str| tenancy.id_by_name(name))
            },
            settings.alarm_interval,
            stop.clone(),
        )));
    }
    if let Some(path) = settings.alarms.clone() {
        let (alarms, metrics) = (Arc::clone(alarms), Arc::clone(&state.metrics));
        let shown = path.display().to_string();
        let apply = move |text: &str| match alarms::parse(text) {
            Ok(rules) => {
                alarms.set_rules(rules);
                metrics.alarm_rules_reload(true);
                tracing::info!(file = %shown, "alarm rules reloaded");
            }
            Err(e) => {
                metrics.alarm_rules_reload(false);
                tracing::error!(file = %shown, error = %e, "alarm rules not reloaded; keeping the last good rules");
            }
        };
        tasks.push(tokio::spawn(crate::reload::watch_file(
            path,
            apply,
            stop.clone(),
        )));
    }
    tasks
}
