//! Applying what the controller decided: status (server-side apply, forced, with Loom's
//! field manager), the GatewayClass finalizer and the objects Loom owns. Only the latest
//! batch counts, and a write already applied to the same resourceVersion is not repeated.

use std::borrow::Borrow;
use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use futures::{StreamExt, stream};
use kube::api::{Api, ApiResource, DeleteParams, DynamicObject, Patch, PatchParams};
use serde_json::{Value, json};
use tokio::sync::watch;

/// One server-side apply: an object's status, its finalizers, or a whole object Loom owns.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct StatusWrite {
    /// Namespace ("" for cluster-scoped objects).
    pub(crate) namespace: String,
    pub(crate) name: String,
    pub(crate) resource: ApiResource,
    /// The resourceVersion the write was computed from.
    pub(crate) base: String,
    pub(crate) what: Write,
}

#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Write {
    /// A whole object Loom owns (per-Gateway Services, Deployments, ...).
    Object(Value),
    Status(Value),
    /// Loom's finalizers (an empty list removes the ones Loom added).
    Finalizers(Vec<&'static str>),
    /// Delete an object Loom made that is not wanted any more.
    Delete,
}

impl StatusWrite {
    /// What the write is remembered by: kind, namespace, name and part.
    fn id(&self) -> (String, String, String, u8) {
        let part = self.what.part();
        (
            self.resource.kind.clone(),
            self.namespace.clone(),
            self.name.clone(),
            part,
        )
    }
}

impl std::fmt::Display for StatusWrite {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.namespace.as_str() {
            "" => write!(f, "{} {}", self.resource.kind, self.name),
            ns => write!(f, "{} {ns}/{}", self.resource.kind, self.name),
        }
    }
}

impl Write {
    /// Which part of the object the write owns: an object can get a status write and a
    /// finalizer write in one batch, remembered apart.
    fn part(&self) -> u8 {
        match self {
            Write::Object(_) => 0,
            Write::Status(_) => 1,
            Write::Finalizers(_) => 2,
            Write::Delete => 3,
        }
    }
}

/// Route and policy status is written this many at a time; between chunks a newer batch
/// takes over.
const CHUNK: usize = 64;

/// Splits writes into those that settle GatewayClasses and Gateways (finalizers, the objects
/// Loom provisions and deletes, and their own status), written first and all together, and
/// the status of everything else: routes and policies, which can number thousands, and whose
/// writes must not keep a deleted Gateway's class waiting for its finalizer.
fn urgent_first<W: Borrow<StatusWrite>>(writes: Vec<W>) -> (Vec<W>, Vec<W>) {
    writes.into_iter().partition(|w| match &w.borrow().what {
        Write::Status(_) => matches!(
            w.borrow().resource.kind.as_str(),
            "GatewayClass" | "Gateway"
        ),
        Write::Object(_) | Write::Finalizers(_) | Write::Delete => true,
    })
}

/// Applies the latest batch of writes, skipping those already applied to the same
/// resourceVersion (the watch has not caught up yet): the urgent ones first
/// ([`urgent_first`]), then the rest in chunks, giving way to a newer batch between chunks
/// (what it still needs is written then).
pub(crate) async fn status_writer(
    client: kube::Client,
    field_manager: String,
    mut batches: watch::Receiver<Arc<Vec<Arc<StatusWrite>>>>,
    leader: watch::Receiver<bool>,
) {
    let mut applied = Applied::new();
    let params = PatchParams::apply(&field_manager).force();
    while batches.changed().await.is_ok() {
        let batch = batches.borrow_and_update().clone();
        if !*leader.borrow() {
            continue;
        }
        let pending: HashSet<_> = batch.iter().map(|w| w.id()).collect();
        applied.retain(|id, _| pending.contains(id));
        let todo: Vec<Arc<StatusWrite>> = batch
            .iter()
            .filter(|w| {
                !applied.get(&w.id()).is_some_and(|done| {
                    Arc::ptr_eq(done, w) || (done.base == w.base && done.what == w.what)
                })
            })
            .cloned()
            .collect();
        let (urgent, rest) = urgent_first(todo);
        apply(&client, &params, urgent, &mut applied).await;
        let mut rest = rest.into_iter().peekable();
        while rest.peek().is_some() && !batches.has_changed().unwrap_or(true) && *leader.borrow() {
            let chunk = rest.by_ref().take(CHUNK).collect();
            apply(&client, &params, chunk, &mut applied).await;
        }
    }
}

type Applied = HashMap<(String, String, String, u8), Arc<StatusWrite>>;

/// Applies `writes`, eight at a time, and remembers those that succeeded.
async fn apply(
    client: &kube::Client,
    params: &PatchParams,
    writes: Vec<Arc<StatusWrite>>,
    applied: &mut Applied,
) {
    let results: Vec<_> = stream::iter(writes)
        .map(|w| write_status(client.clone(), params.clone(), w))
        .buffer_unordered(8)
        .collect()
        .await;
    for (w, r) in results {
        match r {
            Ok(_) => {
                tracing::debug!("{w}: written");
                applied.insert(w.id(), w);
            }
            Err(kube::Error::Api(e)) if e.code == 404 => {}
            Err(e) => tracing::warn!("writing {w}: {e}"),
        }
    }
}

async fn write_status(
    client: kube::Client,
    params: PatchParams,
    w: Arc<StatusWrite>,
) -> (Arc<StatusWrite>, kube::Result<()>) {
    let api: Api<DynamicObject> = if w.namespace.is_empty() {
        Api::all_with(client, &w.resource)
    } else {
        Api::namespaced_with(client, &w.namespace, &w.resource)
    };
    let r = match &w.what {
        Write::Object(body) => {
            let params = PatchParams::apply(&format!(
                "{}/provision",
                params.field_manager.as_deref().unwrap_or("loom")
            ))
            .force();
            api.patch(&w.name, &params, &Patch::Apply(body))
                .await
                .map(drop)
        }
        Write::Status(status) => {
            let body = json!({
                "apiVersion": w.resource.api_version,
                "kind": w.resource.kind,
                "status": status,
            });
            api.patch_status(&w.name, &params, &Patch::Apply(body))
                .await
                .map(drop)
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
                "metadata": {"name": w.name, "finalizers": f},
            });
            api.patch(&w.name, &params, &Patch::Apply(body))
                .await
                .map(drop)
        }
        Write::Delete => api
            .delete(&w.name, &DeleteParams::background())
            .await
            .map(drop),
    };
    (w, r)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(kind: &str, name: &str, what: Write) -> StatusWrite {
        StatusWrite {
            namespace: "default".into(),
            name: name.into(),
            resource: ApiResource {
                group: "gateway.networking.k8s.io".into(),
                version: "v1".into(),
                api_version: "gateway.networking.k8s.io/v1".into(),
                kind: kind.into(),
                plural: format!("{}s", kind.to_lowercase()),
            },
            base: "1".into(),
            what,
        }
    }

    fn names(writes: &[StatusWrite]) -> Vec<&str> {
        writes.iter().map(|w| w.name.as_str()).collect()
    }

    #[test]
    fn what_settles_classes_and_gateways_goes_before_route_and_policy_status() {
        let status = || Write::Status(json!({}));
        let (urgent, rest) = urgent_first(vec![
            write("HTTPRoute", "route-1", status()),
            write("GatewayClass", "class-status", status()),
            write("HTTPRoute", "route-2", status()),
            write("GatewayClass", "class-finalizer", Write::Finalizers(vec![])),
            write("RateLimitPolicy", "policy", status()),
            write("Gateway", "gateway", status()),
            write("Deployment", "data-plane", Write::Object(json!({}))),
            write("Service", "gone", Write::Delete),
        ]);
        assert_eq!(
            names(&urgent),
            [
                "class-status",
                "class-finalizer",
                "gateway",
                "data-plane",
                "gone"
            ]
        );
        assert_eq!(
            names(&rest),
            ["route-1", "route-2", "policy"],
            "in the order planned"
        );
    }
}
