//! Per-route component swap: when a component's `.wasm` changes on disk, the
//! new version is compiled and linked off the request path and swapped in
//! atomically. Requests in flight keep the version they started with; a file
//! that does not compile or link is refused and the old version keeps serving.

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use notify::{RecursiveMode, Watcher};

use crate::app::{App, ComponentSlot, Reload};

/// Quiet time after the last change before a file is read: build tools
/// replace files in several steps.
const SETTLE: Duration = Duration::from_millis(150);

/// Keeps the watcher alive; dropping it stops watching.
pub struct SwapWatcher {
    _watcher: notify::RecommendedWatcher,
}

/// Watches every component source of `app` and swaps changed ones in.
pub fn watch(app: Arc<App>) -> anyhow::Result<SwapWatcher> {
    let mut by_path: HashMap<PathBuf, Vec<Arc<ComponentSlot>>> = HashMap::new();
    for slot in app.slots.values() {
        let path = std::path::absolute(&slot.source).unwrap_or_else(|_| slot.source.clone());
        by_path.entry(path).or_default().push(slot.clone());
    }
    let (sender, receiver) = tokio::sync::mpsc::unbounded_channel::<PathBuf>();
    let watched: HashSet<PathBuf> = by_path.keys().cloned().collect();
    let mut watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
        if let Ok(event) = event {
            for path in event.paths {
                if watched.contains(&path) {
                    let _ = sender.send(path);
                }
            }
        }
    })
    .context("starting the file watcher")?;
    // Watch directories, not files: build tools replace files, which ends a
    // watch on the old inode.
    let dirs: HashSet<PathBuf> = by_path
        .keys()
        .filter_map(|p| p.parent().map(PathBuf::from))
        .collect();
    for dir in &dirs {
        std::fs::create_dir_all(dir).ok();
        watcher
            .watch(dir, RecursiveMode::NonRecursive)
            .with_context(|| format!("watching {}", dir.display()))?;
    }
    tokio::spawn(reload_loop(app, by_path, receiver));
    Ok(SwapWatcher { _watcher: watcher })
}

async fn reload_loop(
    app: Arc<App>,
    by_path: HashMap<PathBuf, Vec<Arc<ComponentSlot>>>,
    mut changes: tokio::sync::mpsc::UnboundedReceiver<PathBuf>,
) {
    while let Some(first) = changes.recv().await {
        let mut pending: HashSet<PathBuf> = HashSet::from([first]);
        // Let the writer finish: wait until no event arrives for SETTLE.
        while let Ok(Some(path)) = tokio::time::timeout(SETTLE, changes.recv()).await {
            pending.insert(path);
        }
        for path in pending {
            for slot in by_path.get(&path).into_iter().flatten() {
                let app = app.clone();
                let slot = slot.clone();
                // Compiling is CPU work: keep it off the request threads.
                let outcome =
                    tokio::task::spawn_blocking(move || app.reload(&slot).map(|r| (slot, r))).await;
                match outcome {
                    Ok(Ok((slot, Reload::Swapped { from, to }))) => tracing::info!(
                        component_id = %slot.id,
                        from = %from,
                        to = %to,
                        "component swapped"
                    ),
                    Ok(Ok((_, Reload::Unchanged))) => {}
                    Ok(Err(e)) => tracing::error!(
                        path = %path.display(),
                        "new component refused, the previous version keeps serving: {e:#}"
                    ),
                    Err(e) => tracing::error!("reload task failed: {e}"),
                }
            }
        }
    }
}
