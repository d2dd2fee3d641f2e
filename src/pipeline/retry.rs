//! Bounded retries for writes that no client is waiting on (platform spans and
//! invocation records, traces tail sampling decided early or on its timer): a retriable
//! refusal (full queue, busy budget, full disk) is retried with growing pauses, and both
//! retries and give-ups are counted. Nothing is dropped silently.

use std::time::Duration;

use super::SubmitError;
use crate::telemetry::Metrics;

/// Attempts at one background write.
const WRITE_ATTEMPTS: u32 = 4;

/// Run `write` until it succeeds, fails for good, or has been tried [`WRITE_ATTEMPTS`]
/// times.
pub async fn with_retries<F, Fut>(metrics: &Metrics, mut write: F) -> Result<(), SubmitError>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<(), SubmitError>>,
{
    let mut pause = Duration::from_millis(100);
    let mut attempt = 1;
    loop {
        match write().await {
            Ok(()) => return Ok(()),
            Err(e) if e.code().is_retriable() && attempt < WRITE_ATTEMPTS => {
                metrics.background_write_retried();
                tracing::warn!(error = %e, attempt, "platform write refused; retrying");
                tokio::time::sleep(pause).await;
                pause *= 4;
                attempt += 1;
            }
            Err(e) => {
                metrics.background_write_failed();
                return Err(e);
            }
        }
    }
}
