//! Wall-clock time in the unit spans use (microseconds since the Unix epoch), and the
//! one way the daemon's periodic tasks tick.

use std::future::Future;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

pub fn now_us() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_micros() as u64)
        .unwrap_or(0)
}

/// Run `tick` every `interval` (after waiting it once) until `stop` turns true; a stop
/// ends the wait at once, and a running tick is finished first.
pub async fn every<F: Future<Output = ()>>(
    interval: Duration,
    mut stop: tokio::sync::watch::Receiver<bool>,
    mut tick: impl FnMut() -> F,
) {
    loop {
        tokio::select! {
            _ = tokio::time::sleep(interval) => {}
            _ = stop.wait_for(|s| *s) => return,
        }
        tick().await;
    }
}
