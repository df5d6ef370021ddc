//! Applying what the controller decided: status (server-side apply, forced, with Loom's
//! field manager), the GatewayClass finalizer and the objects Loom owns. Only the latest
//! batch counts, and a write already applied to the same resourceVersion is not repeated.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use futures::{StreamExt, stream};
use kube::api::{Api, ApiResource, DynamicObject, Patch, PatchParams};
use loom_core::input::ObjectKey;
use serde_json::{Value, json};
use tokio::sync::watch;

/// One server-side apply: an object's status, its finalizers, or a whole object Loom owns.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct StatusWrite {
    pub(crate) key: ObjectKey,
    pub(crate) resource: ApiResource,
    /// The resourceVersion the write was computed from.
    pub(crate) base: String,
    pub(crate) what: Write,
}

#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Write {
    /// A whole object Loom owns (a per-Gateway Service).
    Object(Value),
    Status(Value),
    /// Loom's finalizers (an empty list removes the ones Loom added).
    Finalizers(Vec<&'static str>),
}

impl Write {
    /// Which part of the object the write owns: an object can get a status write and a
    /// finalizer write in one batch, remembered apart.
    fn part(&self) -> u8 {
        match self {
            Write::Object(_) => 0,
            Write::Status(_) => 1,
            Write::Finalizers(_) => 2,
        }
    }
}

/// Applies the latest batch of writes, skipping those already applied to the same
/// resourceVersion (the watch has not caught up yet).
pub(crate) async fn status_writer(
    client: kube::Client,
    field_manager: String,
    mut batches: watch::Receiver<Arc<Vec<StatusWrite>>>,
    leader: watch::Receiver<bool>,
) {
    let mut applied: HashMap<(ObjectKey, u8), (String, Write)> = HashMap::new();
    let params = PatchParams::apply(&field_manager).force();
    while batches.changed().await.is_ok() {
        let batch = batches.borrow_and_update().clone();
        if !*leader.borrow() {
            continue;
        }
        let pending: HashSet<(&ObjectKey, u8)> =
            batch.iter().map(|w| (&w.key, w.what.part())).collect();
        applied.retain(|(k, part), _| pending.contains(&(k, *part)));
        let todo: Vec<StatusWrite> = batch
            .iter()
            .filter(|w| {
                applied.get(&(w.key.clone(), w.what.part()))
                    != Some(&(w.base.clone(), w.what.clone()))
            })
            .cloned()
            .collect();
        let results: Vec<_> = stream::iter(todo)
            .map(|w| write_status(client.clone(), params.clone(), w))
            .buffer_unordered(8)
            .collect()
            .await;
        for (w, r) in results {
            match r {
                Ok(_) => {
                    log::debug!("status of {} written", w.key);
                    applied.insert((w.key, w.what.part()), (w.base, w.what));
                }
                Err(kube::Error::Api(e)) if e.code == 404 => {}
                Err(e) => log::warn!("writing the status of {}: {e}", w.key),
            }
        }
    }
}

async fn write_status(
    client: kube::Client,
    params: PatchParams,
    w: StatusWrite,
) -> (StatusWrite, kube::Result<DynamicObject>) {
    let api: Api<DynamicObject> = if w.key.namespace.is_empty() {
        Api::all_with(client, &w.resource)
    } else {
        Api::namespaced_with(client, &w.key.namespace, &w.resource)
    };
    let r = match &w.what {
        Write::Object(body) => {
            let params = PatchParams::apply(&format!(
                "{}/provision",
                params.field_manager.as_deref().unwrap_or("loom")
            ))
            .force();
            api.patch(&w.key.name, &params, &Patch::Apply(body)).await
        }
        Write::Status(status) => {
            let body = json!({
                "apiVersion": w.resource.api_version,
                "kind": w.resource.kind,
                "status": status,
            });
            api.patch_status(&w.key.name, &params, &Patch::Apply(body))
                .await
        }
        Write::Finalizers(f) => {
            // A field manager of its own: applying an empty list then removes exactly the
            // finalizer Loom added.
            let params = PatchParams::apply(&format!(
                "{}/finalizer",
                params.field_manager.as_deref().unwrap_or("loom")
            ));
            let body = json!({
                "apiVersion": w.resource.api_version,
                "kind": w.resource.kind,
                "metadata": {"name": w.key.name, "finalizers": f},
            });
            api.patch(&w.key.name, &params, &Patch::Apply(body)).await
        }
    };
    (w, r)
}
