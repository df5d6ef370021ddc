//! WASMPlugins as the data plane runs them: which plugins a rule runs, in which order, with
//! which module, config and limits.
//!
//! The order (`RulePlugins::new`) is the spec's: `AUTHN`, `AUTHZ`, then the route's own
//! filters, then unspecified, then the backend; `STATS` after the backend answers; within a
//! phase, highest `priority` first, ties by namespace/name.

use std::cmp::Reverse;
use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;

use crate::input::ObjectKey;

/// `WASMPlugin.spec.phase`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub enum PluginPhase {
    /// Authentication: first.
    #[serde(rename = "AUTHN")]
    Authn,
    /// Authorization: after AUTHN.
    #[serde(rename = "AUTHZ")]
    Authz,
    /// After the route's own filters (`UNSPECIFIED_PHASE`, the default).
    #[serde(rename = "UNSPECIFIED_PHASE")]
    Unspecified,
    /// After the backend answers: sees the request, the response's status and the latency.
    #[serde(rename = "STATS")]
    Stats,
}

impl PluginPhase {
    /// The spec's name.
    pub fn as_str(self) -> &'static str {
        match self {
            PluginPhase::Authn => "AUTHN",
            PluginPhase::Authz => "AUTHZ",
            PluginPhase::Unspecified => "UNSPECIFIED_PHASE",
            PluginPhase::Stats => "STATS",
        }
    }
}

/// `WASMPlugin.spec.failStrategy`: what a failed or unavailable plugin does to the request.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub enum FailStrategy {
    /// Answer 500 (the plugin failed) or 503 (its module is not loaded).
    #[default]
    FailClose,
    /// Go on as if the plugin were not there.
    FailOpen,
}

/// A module by its content: the sha256 of the Wasm bytes, in hex.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub struct ModuleDigest(pub String);

/// A WASMPlugin as it runs on the rules it targets.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Plugin {
    /// The WASMPlugin.
    pub plugin: ObjectKey,
    /// Its phase.
    pub phase: PluginPhase,
    /// Order within the phase, highest first.
    pub priority: i32,
    /// What failure does.
    pub fail: FailStrategy,
    /// The module to run, or why there is none to run (pending, failed, invalid): the
    /// request then gets what `fail` says.
    pub module: Result<ModuleDigest, String>,
    /// `spec.config`, a JSON object, as text.
    pub config: Arc<str>,
    /// Time one call may take.
    #[serde(serialize_with = "millis")]
    pub timeout: Duration,
    /// Linear memory one instance may use, in 64 KiB Wasm pages.
    pub memory_pages: u32,
}

fn millis<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_u64(d.as_millis() as u64)
}

impl Plugin {
    fn order(&self) -> impl Ord + '_ {
        (
            self.phase,
            Reverse(self.priority),
            &self.plugin.namespace,
            &self.plugin.name,
        )
    }
}

/// The plugins of one rule, by where in the request they run.
#[derive(Debug, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RulePlugins {
    /// `AUTHN`, then `AUTHZ`: before the route's filters.
    pub before_filters: Vec<Arc<Plugin>>,
    /// Unspecified phase: after the route's filters, before the backend.
    pub after_filters: Vec<Arc<Plugin>>,
    /// `STATS`: after the backend answers.
    pub stats: Vec<Arc<Plugin>>,
}

impl RulePlugins {
    /// The plugins in the order they run; `None` for none.
    pub fn new(mut plugins: Vec<Arc<Plugin>>) -> Option<Self> {
        if plugins.is_empty() {
            return None;
        }
        plugins.sort_by(|a, b| a.order().cmp(&b.order()));
        plugins.dedup_by(|a, b| a.plugin == b.plugin);
        let mut out = RulePlugins::default();
        for p in plugins {
            match p.phase {
                PluginPhase::Authn | PluginPhase::Authz => out.before_filters.push(p),
                PluginPhase::Unspecified => out.after_filters.push(p),
                PluginPhase::Stats => out.stats.push(p),
            }
        }
        Some(out)
    }

    /// Every plugin, in the order their request side runs (STATS last).
    pub fn all(&self) -> impl Iterator<Item = &Arc<Plugin>> {
        self.before_filters
            .iter()
            .chain(&self.after_filters)
            .chain(&self.stats)
    }

    /// The order of the response side: the request side's reversed (the plugin nearest the
    /// backend sees the response first, as in Envoy's filter chain), STATS last.
    pub fn response_order(&self) -> impl Iterator<Item = &Arc<Plugin>> {
        self.after_filters
            .iter()
            .rev()
            .chain(self.before_filters.iter().rev())
            .chain(&self.stats)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::input::Kind;

    fn plugin(name: &str, phase: PluginPhase, priority: i32) -> Arc<Plugin> {
        Arc::new(Plugin {
            plugin: ObjectKey {
                kind: Kind::WasmPlugin,
                namespace: "default".into(),
                name: name.into(),
            },
            phase,
            priority,
            fail: FailStrategy::FailClose,
            module: Ok(ModuleDigest("00".into())),
            config: "{}".into(),
            timeout: Duration::from_millis(5),
            memory_pages: 1024,
        })
    }

    fn names<'a>(ps: impl Iterator<Item = &'a Arc<Plugin>>) -> Vec<&'a str> {
        ps.map(|p| p.plugin.name.as_str()).collect()
    }

    #[test]
    fn phases_run_authn_authz_unspecified_then_stats() {
        let r = RulePlugins::new(vec![
            plugin("stats", PluginPhase::Stats, 0),
            plugin("other", PluginPhase::Unspecified, 0),
            plugin("authz", PluginPhase::Authz, 100),
            plugin("authn", PluginPhase::Authn, -5),
        ])
        .unwrap();
        assert_eq!(names(r.before_filters.iter()), ["authn", "authz"]);
        assert_eq!(names(r.after_filters.iter()), ["other"]);
        assert_eq!(names(r.stats.iter()), ["stats"]);
        assert_eq!(names(r.all()), ["authn", "authz", "other", "stats"]);
    }

    #[test]
    fn highest_priority_first_within_a_phase_then_by_name() {
        let r = RulePlugins::new(vec![
            plugin("b", PluginPhase::Authn, 0),
            plugin("low", PluginPhase::Authn, -1),
            plugin("a", PluginPhase::Authn, 0),
            plugin("high", PluginPhase::Authn, 10),
        ])
        .unwrap();
        assert_eq!(names(r.all()), ["high", "a", "b", "low"]);
    }

    #[test]
    fn the_response_side_runs_in_reverse_then_stats() {
        let r = RulePlugins::new(vec![
            plugin("authn", PluginPhase::Authn, 0),
            plugin("stats", PluginPhase::Stats, 0),
            plugin("x", PluginPhase::Unspecified, 1),
            plugin("y", PluginPhase::Unspecified, 0),
        ])
        .unwrap();
        assert_eq!(names(r.response_order()), ["y", "x", "authn", "stats"]);
    }

    #[test]
    fn a_plugin_reached_twice_runs_once_and_none_means_none() {
        let r = RulePlugins::new(vec![
            plugin("a", PluginPhase::Authn, 0),
            plugin("a", PluginPhase::Authn, 0),
        ])
        .unwrap();
        assert_eq!(names(r.all()), ["a"]);
        assert!(RulePlugins::new(vec![]).is_none());
    }
}
