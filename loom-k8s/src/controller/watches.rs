//! The watches: one per kind the API server serves, one of Loom's data-plane Deployments in
//! provisioned mode, and one per Secret or ConfigMap the configuration names (a cluster's
//! other Secrets are never listed or cached). Each reconnects quickly ([`Reconnect`]).

use std::collections::HashMap;
use std::time::Duration;

use futures::stream::BoxStream;
use futures::{StreamExt, stream};
use k8s_openapi::api::apps::v1::Deployment;
use kube::api::{Api, ApiResource, DynamicObject};
use kube::runtime::WatchStreamExt;
use kube::runtime::watcher::{self, Event};
use loom_core::input::{Kind, ObjectKey};
use tokio::sync::mpsc::UnboundedSender;

use super::ControllerOptions;
use super::index::NamedWatchChanges;
use crate::provision::DATA_PLANE_SELECTOR;
use crate::resources::Watched;

/// How soon a failed watch tries again: 100 ms, doubling up to 2 s, with jitter; back to
/// 100 ms after any event. kube's default grows to 30 s, so after an API server outage of a
/// minute, changes made once it was back waited another minute and a half to be seen.
#[derive(Debug)]
pub(crate) struct Reconnect {
    next: Duration,
}

impl Reconnect {
    const FIRST: Duration = Duration::from_millis(100);
    const MAX: Duration = Duration::from_secs(2);
}

impl Default for Reconnect {
    fn default() -> Self {
        Reconnect { next: Self::FIRST }
    }
}

impl Iterator for Reconnect {
    type Item = Duration;

    fn next(&mut self) -> Option<Duration> {
        let d = self.next;
        self.next = (self.next * 2).min(Self::MAX);
        // Up to a quarter more, so that many watches do not retry in step.
        Some(d + d.mul_f64(fastrand::f64() / 4.0))
    }
}

impl kube::runtime::utils::Backoff for Reconnect {
    fn reset(&mut self) {
        self.next = Self::FIRST;
    }
}

pub(crate) type KindEvents = BoxStream<'static, (Kind, watcher::Result<Event<DynamicObject>>)>;

/// Every object of one kind.
pub(crate) fn watch_kind(client: &kube::Client, w: &Watched) -> KindEvents {
    let api: Api<DynamicObject> = Api::all_with(client.clone(), &w.resource);
    let kind = w.kind;
    watcher::watcher(api, watcher::Config::default())
        .backoff(Reconnect::default())
        .map(move |e| (kind, e))
        .boxed()
}

/// Provisioned data-plane Deployments (only Loom's, by label); nothing in other modes.
pub(crate) fn watch_rollouts(
    client: &kube::Client,
    opts: &ControllerOptions,
) -> BoxStream<'static, watcher::Result<Event<Deployment>>> {
    if opts
        .provision
        .as_ref()
        .is_none_or(|p| p.data_plane.is_none())
    {
        return stream::pending().boxed();
    }
    let api: Api<Deployment> = Api::all(client.clone());
    watcher::watcher(api, watcher::Config::default().labels(DATA_PLANE_SELECTOR))
        .backoff(Reconnect::default())
        .boxed()
}

/// An event of the watch of one named Secret or ConfigMap.
pub(crate) type NamedWatchEvent = (ObjectKey, watcher::Result<Event<DynamicObject>>);

/// The running watches of the Secrets and ConfigMaps the configuration names; their events
/// go to one channel.
pub(crate) struct NamedWatches {
    client: kube::Client,
    /// How the API server serves Secrets and ConfigMaps.
    resources: HashMap<Kind, ApiResource>,
    watches: HashMap<ObjectKey, WatchTask>,
    tx: UnboundedSender<NamedWatchEvent>,
}

/// Aborts its task when dropped.
struct WatchTask(tokio::task::AbortHandle);

impl Drop for WatchTask {
    fn drop(&mut self) {
        self.0.abort();
    }
}

impl NamedWatches {
    pub(crate) fn new(
        client: kube::Client,
        resources: HashMap<Kind, ApiResource>,
        tx: UnboundedSender<NamedWatchEvent>,
    ) -> Self {
        NamedWatches {
            client,
            resources,
            watches: HashMap::new(),
            tx,
        }
    }

    /// Stops and starts watches as the index asks.
    pub(crate) fn update(&mut self, changes: NamedWatchChanges) {
        for key in changes.stop {
            self.watches.remove(&key);
        }
        for key in changes.start {
            let task = self.start(&key);
            self.watches.insert(key, task);
        }
    }

    fn start(&self, key: &ObjectKey) -> WatchTask {
        let resource = &self.resources[&key.kind];
        let api: Api<DynamicObject> =
            Api::namespaced_with(self.client.clone(), &key.namespace, resource);
        let cfg = watcher::Config::default().fields(&format!("metadata.name={}", key.name));
        let tx = self.tx.clone();
        let k = key.clone();
        let task = tokio::spawn(async move {
            let mut events = watcher::watcher(api, cfg)
                .backoff(Reconnect::default())
                .boxed();
            while let Some(ev) = events.next().await {
                if tx.send((k.clone(), ev)).is_err() {
                    break;
                }
            }
        });
        WatchTask(task.abort_handle())
    }
}

#[cfg(test)]
mod tests {
    use kube::runtime::utils::Backoff;

    use super::*;

    #[test]
    fn reconnect_backoff_grows_to_two_seconds_and_resets() {
        let mut b = Reconnect::default();
        let first = b.next().unwrap();
        assert!(first >= Reconnect::FIRST && first <= Reconnect::FIRST.mul_f64(1.25));
        let later: Vec<Duration> = (0..10).map(|_| b.next().unwrap()).collect();
        assert!(later.iter().all(|d| *d <= Reconnect::MAX.mul_f64(1.25)));
        assert!(later.last().unwrap() >= &Reconnect::MAX);
        b.reset();
        assert!(b.next().unwrap() <= Reconnect::FIRST.mul_f64(1.25));
    }
}
