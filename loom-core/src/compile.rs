//! `compile`: the whole input in, one snapshot and every status out.
//!
//! Passes, in order: GatewayClasses → BackendTLSPolicies, RateLimitPolicies,
//! CircuitBreakerPolicies, ClientTrafficPolicies and WASMPlugins (so backends carry their TLS
//! and circuit breakers, rules their limits and plugins) →
//! Gateways and their listeners → ListenerSets → listener conflicts → routes (attachment,
//! backend resolution, rule compilation) → listener route counts → snapshot → statuses.
//!
//! Modules, each using only the ones above it:
//!
//! | module | what |
//! | --- | --- |
//! | `error` | why an object is not accepted, resolved or programmed; each knows its `Reason` |
//! | `lookup` | the input's objects by namespace/name, the ReferenceGrant check |
//! | `model` | what passes hand on: checked Gateways, listeners, ListenerSets; attached routes |
//! | `references` | certificate Secrets, CA bundles, PEM parsing |
//! | `classes` | GatewayClasses |
//! | `matches` | HTTPRouteMatch and GRPCRouteMatch values |
//! | `policies` | BackendTLSPolicies |
//! | `traffic` | RateLimit-, CircuitBreaker- and ClientTrafficPolicies: values, conflicts, what applies where |
//! | `plugins` | WASMPlugins: values, module state, what each rule runs; their status |
//! | `listeners` | one listener: protocol, port, hostname, route kinds, TLS |
//! | `gateways` | Gateways: addresses, ListenerSets, listener conflicts |
//! | `backends` | backendRefs → Services, Loom Backends, endpoints |
//! | `rules` | route rules: matches, filters, backends |
//! | `attachment` | routes → listeners (parentRefs, allowedRoutes, hostnames), route status |
//! | `assembly` | the snapshot |
//! | `status` | Gateway, listener, ListenerSet and policy status |
//!
//! Invariants: `compile` never fails as a whole and never panics; a bad object becomes a
//! condition and never affects the valid ones; the result depends on nothing but the input
//! (objects are sorted by creation time, then namespace/name, and maps are ordered).

mod error;
pub(crate) mod lookup;
pub(crate) mod model;

mod references;

mod classes;
mod matches;
mod plugins;
mod policies;
mod traffic;

mod listeners;

mod gateways;

mod backends;
mod rules;

mod attachment;

mod assembly;
mod status;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

pub use error::NotServing;
use lookup::InputLookup;
use model::Gateways;
pub use plugins::{
    DEFAULT_MEMORY, DEFAULT_TIMEOUT, MAX_TIMEOUT, ModuleSource, ModuleState, module_sources,
};

use crate::input::*;
use crate::snapshot::Snapshot;
use crate::status::{Status, StatusAddress};

/// Loom's controller name (`GatewayClass.spec.controllerName`).
pub const CONTROLLER_NAME: &str = "loom.dev/gateway-controller";

/// Settings that come from how Loom runs, not from objects.
#[derive(Clone, Debug, PartialEq)]
pub struct Options {
    /// The controller name GatewayClasses must carry.
    pub controller_name: String,
    /// Addresses reported for Gateways without `spec.addresses` (the data plane's).
    pub default_addresses: Vec<StatusAddress>,
    /// Per-Gateway addresses, by `(namespace, name)`, that take the place of
    /// `default_addresses` (a controller serving every Gateway on its own IP).
    pub gateway_addresses: BTreeMap<(String, String), Vec<StatusAddress>>,
    /// Addresses Loom can actually serve; `None` = any requested address is usable.
    pub usable_addresses: Option<BTreeSet<String>>,
    /// Features claimed on top of [`SUPPORTED_FEATURES`](crate::SUPPORTED_FEATURES), for
    /// what the embedding adds (the Kubernetes adapter's provisioning).
    pub extra_features: Vec<String>,
    /// Gateways whose data plane is not serving yet, by `(namespace, name)` (provisioned
    /// pods not ready, no address assigned): `Programmed` is `False` with this reason and
    /// message.
    pub gateway_not_programmed: BTreeMap<(String, String), NotServing>,
    /// Ports the data plane could not open, by Gateway `(namespace, name)` and port, with why
    /// (the address and the error): their listeners are `Programmed=False`, reason `Pending`.
    pub ports_not_serving: PortsNotServing,
    /// Whether the data plane shares rate limits through Redis (`spec.global` of a
    /// RateLimitPolicy needs it).
    pub global_rate_limits: bool,
    /// What the data plane knows of the WASMPlugin modules it fetches ([`module_sources`]);
    /// `None`: it runs no plugins (then every plugin reports so, and fails as its
    /// `failStrategy` says).
    pub plugin_modules: Option<PluginModuleStates>,
}

/// The state of each WASMPlugin module, by where it comes from.
pub type PluginModuleStates = BTreeMap<ModuleSource, ModuleState>;

/// Why the data plane has not opened a port, by Gateway `(namespace, name)` and port.
pub type PortsNotServing = BTreeMap<(String, String, u16), String>;

impl Default for Options {
    fn default() -> Self {
        Options {
            controller_name: CONTROLLER_NAME.into(),
            default_addresses: vec![],
            gateway_addresses: BTreeMap::new(),
            usable_addresses: None,
            extra_features: vec![],
            gateway_not_programmed: BTreeMap::new(),
            ports_not_serving: BTreeMap::new(),
            global_rate_limits: false,
            plugin_modules: None,
        }
    }
}

/// The result of [`compile`].
#[derive(Clone, Debug, Default)]
pub struct Compiled {
    /// What the data plane serves.
    pub snapshot: Snapshot,
    /// What the spec says every object's status is.
    pub status: Status,
    /// The Services, by `(namespace, name)`, whose EndpointSlices the snapshot's endpoints
    /// come from: a change to any other EndpointSlice cannot change this result (an adapter
    /// may skip compiling for it; the next compile must still see it).
    pub endpoint_sources: BTreeSet<(String, String)>,
}

/// A compile whose snapshot is ready and whose status is not put together yet
/// ([`Compiler::compile_staged`]): a data plane serves the snapshot, then
/// [`PendingStatus::finish`] builds the status. At 5,000 routes, building and sorting the
/// routes' status keys is a third of a recompile that a change waits for before it is served.
#[derive(Debug, Default)]
pub struct Staged {
    /// What the data plane serves.
    pub snapshot: Snapshot,
    /// What the spec says every object's status is, once finished.
    pub status: PendingStatus,
    /// As in [`Compiled::endpoint_sources`].
    pub endpoint_sources: BTreeSet<(String, String)>,
}

impl Staged {
    /// The compile with its status finished: what [`compile_with`] gives.
    pub fn finish(self) -> Compiled {
        Compiled {
            snapshot: self.snapshot,
            status: self.status.finish(),
            endpoint_sources: self.endpoint_sources,
        }
    }
}

/// The status of a [`Staged`] compile: everything but the routes' statuses is in place.
#[derive(Debug, Default)]
pub struct PendingStatus {
    status: Status,
    routes: attachment::RouteStatuses,
}

impl PendingStatus {
    /// Every object's status.
    pub fn finish(self) -> Status {
        let mut status = self.status;
        self.routes.write(&mut status);
        status
    }
}

/// Compiles with default [`Options`].
pub fn compile(input: &Input) -> Compiled {
    compile_with(input, &Options::default())
}

/// Compiles the input.
pub fn compile_with(input: &Input, options: &Options) -> Compiled {
    compile_staged(input, options).finish()
}

/// [`compile_with`], returning the snapshot before its status is put together.
pub fn compile_staged(input: &Input, options: &Options) -> Staged {
    compile_reusing(input, options, None)
}

/// Compiles one input after another, reusing what the last compile did for what did not
/// change: while every object that is not a route (Gateways, Services, EndpointSlices,
/// policies, ...) and the options stay the same, an HTTPRoute or GRPCRoute whose object is the
/// one the last compile saw (the same `Arc` in [`Input`]; [`Input::upsert`] keeps it for an
/// equal object) is not compiled again, and a virtual host whose rules all come from such
/// routes, as before, is not built again. Anything else is compiled as [`compile_with`] does,
/// and the result is always the one [`compile_with`] gives for the same input.
///
/// For an adapter that keeps one `Input` and changes it object by object: a change to one
/// route then costs its virtual hosts and the statuses, not every route.
#[derive(Default)]
pub struct Compiler {
    last: Option<Reusable>,
}

/// What the last compile leaves for the next.
struct Reusable {
    /// Every object that is not a route, as the last compile saw it (the `Arc`s held, so
    /// that the same address is the same object), and the options.
    world: Input,
    options: Options,
    memo: Memo,
}

/// What a compile keeps for the next, valid while nothing but routes changes.
#[derive(Default)]
struct Memo {
    routes: attachment::RouteMemo,
    vhosts: assembly::VhostMemo,
}

impl std::fmt::Debug for Compiler {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Compiler")
            .field(
                "routes",
                &self.last.as_ref().map_or(0, |l| l.memo.routes.routes.len()),
            )
            .finish_non_exhaustive()
    }
}

impl Compiler {
    /// A compiler with nothing to reuse yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Compiles the input, reusing what it can of the last compile.
    pub fn compile(&mut self, input: &Input, options: &Options) -> Compiled {
        self.compile_staged(input, options).finish()
    }

    /// [`compile`](Self::compile), returning the snapshot before its status is put
    /// together.
    pub fn compile_staged(&mut self, input: &Input, options: &Options) -> Staged {
        let mut memo = match self.last.take() {
            Some(last) if last.options == *options && same_world(&last.world, input) => last.memo,
            _ => Memo::default(),
        };
        let compiled = compile_reusing(input, options, Some(&mut memo));
        memo.routes.forget_gone();
        memo.vhosts.forget_gone();
        self.last = Some(Reusable {
            world: world_of(input),
            options: options.clone(),
            memo,
        });
        compiled
    }
}

/// The objects of an input that are not routes (shared, not copied).
fn world_of(input: &Input) -> Input {
    let mut world = Input::default();
    macro_rules! copy {
        ($($k:ident => $field:ident),*) => {
            $(if !Kind::$k.is_route() { world.$field = input.$field.clone(); })*
        };
    }
    with_kinds!(copy);
    world
}

/// Whether every object of `input` that is not a route is the very one in `world`, in the
/// same order.
fn same_world(world: &Input, input: &Input) -> bool {
    fn same<T>(a: &[Arc<T>], b: &[Arc<T>]) -> bool {
        a.len() == b.len() && a.iter().zip(b).all(|(a, b)| Arc::ptr_eq(a, b))
    }
    macro_rules! compare {
        ($($k:ident => $field:ident),*) => {
            $((Kind::$k.is_route() || same(&world.$field, &input.$field)) &&)* true
        };
    }
    with_kinds!(compare)
}

fn compile_reusing(input: &Input, options: &Options, memo: Option<&mut Memo>) -> Staged {
    let mut once = vec![];
    let (routes_into, vhosts) = match memo {
        Some(m) => (attachment::Store::Kept(&mut m.routes), Some(&mut m.vhosts)),
        None => (attachment::Store::Once(&mut once), None),
    };
    let lookup = InputLookup::new(input, options);
    let mut status = Status::default();
    let classes = classes::gateway_classes(&lookup, &mut status);
    let tls_policies = policies::backend_tls_policies(&lookup);
    let traffic = traffic::TrafficPolicies::check(&lookup);
    let plugins = plugins::Plugins::check(&lookup);
    let mut gateways = Gateways::build(&lookup, &classes);
    let mut routes =
        attachment::attach_all(&lookup, &mut gateways, &tls_policies, &traffic, routes_into);
    let snapshot = gateways.snapshot(&routes, &traffic, &plugins, vhosts);
    gateways.write_status(&mut status);
    status::write_backend_tls_status(&lookup, &tls_policies, &routes, &gateways, &mut status);
    status::write_traffic_policy_status(&lookup, &traffic, &mut status);
    plugins::write_status(&lookup, &plugins, &gateways.plugin_settings(), &mut status);
    Staged {
        snapshot,
        status: PendingStatus {
            status,
            routes: std::mem::take(&mut routes.statuses),
        },
        endpoint_sources: std::mem::take(&mut routes.endpoint_sources),
    }
}

#[cfg(test)]
mod tests;
