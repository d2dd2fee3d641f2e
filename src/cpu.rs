//! The bounded CPU pool: decompression, decoding and encoding of large requests run
//! here, one job per core at a time, so the async worker threads stay free for
//! `/healthz`, queries and every other client while a big body is processed.
//!
//! Small jobs run inline: handing a few kilobytes to another thread costs more than
//! decoding them. Callers say how big a job is; this module only schedules.

use std::sync::{Arc, OnceLock};

use tokio::sync::Semaphore;

/// Jobs on inputs smaller than this run on the calling task: a typical export (a few
/// hundred KiB) decodes in a millisecond or two, less than a hand-off to another thread
/// and back costs under load; bigger bodies take long enough to hold up other clients.
pub const INLINE_BYTES: usize = 1 << 20;

fn permits() -> &'static Arc<Semaphore> {
    static POOL: OnceLock<Arc<Semaphore>> = OnceLock::new();
    POOL.get_or_init(|| {
        let cores = std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1);
        Arc::new(Semaphore::new(cores))
    })
}

/// Run `job`, whose input is `size` bytes, inline when small, else on a blocking
/// thread once a core is free.
pub async fn run<T, F>(size: usize, job: F) -> T
where
    F: FnOnce() -> T + Send + 'static,
    T: Send + 'static,
{
    if size < INLINE_BYTES {
        return job();
    }
    // The semaphore is never closed, so acquiring fails only if it were.
    let _permit = Arc::clone(permits()).acquire_owned().await;
    match tokio::task::spawn_blocking(job).await {
        Ok(v) => v,
        // the job panicked (or the runtime is going away): fail the request's task alike
        Err(e) => std::panic::resume_unwind(if e.is_panic() {
            e.into_panic()
        } else {
            Box::new("CPU pool job cancelled")
        }),
    }
}

#[cfg(test)]
mod tests {
    #[tokio::test]
    async fn small_jobs_run_inline_and_large_ones_elsewhere() {
        let here = std::thread::current().id();
        assert_eq!(
            super::run(10, move || std::thread::current().id()).await,
            here
        );
        let there = super::run(1 << 20, || std::thread::current().id()).await;
        assert_ne!(there, here);
    }
}
