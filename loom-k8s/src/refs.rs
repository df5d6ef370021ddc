//! One watch per Secret or ConfigMap the configuration names (a cluster's other Secrets
//! are never listed or cached).

use std::collections::HashMap;
use std::time::{Duration, Instant};

use futures::StreamExt;
use kube::api::{Api, ApiResource, DynamicObject};
use kube::runtime::WatchStreamExt;
use kube::runtime::watcher::{self, Event};
use loom_core::input::{Kind, ObjectKey};

use crate::controller::Reconnect;

/// How long a compile waits for a newly named Secret or ConfigMap to be fetched (after
/// that, it compiles without it: the object may not exist, or not be readable).
pub(crate) const REF_WAIT: Duration = Duration::from_secs(3);

/// Watches of the Secrets and ConfigMaps the configuration names. A cluster's other
/// Secrets are never listed or cached.
pub(crate) struct Refs {
    pub(crate) client: kube::Client,
    pub(crate) resources: HashMap<Kind, ApiResource>,
    pub(crate) watches: HashMap<ObjectKey, RefWatch>,
    pub(crate) tx:
        tokio::sync::mpsc::UnboundedSender<(ObjectKey, watcher::Result<Event<DynamicObject>>)>,
}

pub(crate) struct RefWatch {
    pub(crate) task: tokio::task::AbortHandle,
    pub(crate) started: Instant,
    pub(crate) synced: bool,
    /// The object seen in the relist in progress.
    pub(crate) pending: Option<DynamicObject>,
}

impl Drop for RefWatch {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Refs {
    pub(crate) fn start(&self, key: &ObjectKey) -> RefWatch {
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
        RefWatch {
            task: task.abort_handle(),
            started: Instant::now(),
            synced: false,
            pending: None,
        }
    }
}
