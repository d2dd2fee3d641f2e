//! Files the daemon re-reads when they change (sampling strategies, alarm rules): one
//! watcher for all, so each owner only says how to apply the new text. A file that
//! cannot be read (mid-replace, removed) changes nothing; one that does not apply keeps
//! what the owner had, and the owner reports it.

use std::path::PathBuf;
use std::time::Duration;

/// Every 250 ms, when `path`'s text differs from what was last seen, call `apply(text)`
/// (the text is remembered whatever `apply` made of it, so a bad file is reported once).
/// Returns when `stop` turns true.
pub async fn watch_file(
    path: PathBuf,
    mut apply: impl FnMut(&str),
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    let mut last_text = std::fs::read_to_string(&path).ok();
    loop {
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_millis(250)) => {}
            _ = stop.wait_for(|s| *s) => return,
        }
        let Ok(text) = std::fs::read_to_string(&path) else {
            continue;
        };
        if last_text.as_deref() == Some(text.as_str()) {
            continue;
        }
        apply(&text);
        last_text = Some(text);
    }
}
