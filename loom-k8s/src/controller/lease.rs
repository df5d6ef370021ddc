//! Leader election: only the holder of the Lease writes.

use std::time::Duration;

use tokio::sync::watch;

use super::LeaseOptions;

/// Keeps trying to set up the Lease manager (the API server may not be reachable yet, or
/// RBAC not in place), then reports every change of leadership to `tx`; `false` once it
/// stops.
pub(crate) async fn elect(
    client: kube::Client,
    lease: LeaseOptions,
    field_manager: String,
    tx: watch::Sender<bool>,
) {
    let manager = loop {
        let built = kube_lease_manager::LeaseManagerBuilder::new(client.clone(), &lease.name)
            .with_namespace(&lease.namespace)
            .with_identity(&lease.identity)
            .with_duration(lease.duration_seconds)
            .with_grace(lease.duration_seconds.div_ceil(3).max(1))
            .with_field_manager(format!("{field_manager}/lease"))
            .build()
            .await;
        match built {
            Ok(m) => break m,
            Err(e) => {
                tracing::warn!(
                    "leader election: Lease {}/{} not usable yet ({e}); trying again in 2 s",
                    lease.namespace,
                    lease.name
                );
                tokio::time::sleep(Duration::from_secs(2)).await;
            }
        }
    };
    let (mut rx, task) = manager.watch().await;
    let name = format!("{}/{}", lease.namespace, lease.name);
    loop {
        let leading = *rx.borrow_and_update();
        tracing::info!(
            "{} the status-writer lease {name}",
            if leading { "holding" } else { "not holding" }
        );
        if tx.send(leading).is_err() || rx.changed().await.is_err() {
            break;
        }
    }
    let _ = tx.send(false);
    if let Ok(Err(e)) = task.await {
        tracing::error!("leader election stopped: {e}");
    }
}
