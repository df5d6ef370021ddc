//! Gateways: their listeners and ListenerSets checked, addresses assigned, listener conflicts
//! settled.

use std::collections::{BTreeMap, HashMap};

use super::error::*;
use super::listeners::{PortClaim, check_listener};
use super::lookup::{InputLookup, by_age, group_or};
use super::model::*;
use super::plugins::PluginSettings;
use super::references::resolve_secret;
use crate::input::*;
use crate::snapshot::*;
use crate::status::*;

impl<'a> Gateways<'a> {
    pub(crate) fn build(lookup: &'a InputLookup<'a>, classes: &Classes) -> Self {
        let mut this = Gateways {
            lookup,
            gateways: vec![],
            listeners: vec![],
            listener_sets: vec![],
            by_name: HashMap::new(),
            sets_by_name: HashMap::new(),
        };
        for gw in by_age(&lookup.input.gateways, |g| &g.metadata) {
            let Some(&class_accepted) = classes.get(&gw.spec.gateway_class_name) else {
                continue;
            };
            let index = this.gateways.len();
            let ns = gw.metadata.namespace_or_default();
            let owner = ObjectKey {
                kind: Kind::Gateway,
                namespace: ns.into(),
                name: gw.metadata.name.clone(),
            };
            let listeners = gw
                .spec
                .listeners
                .iter()
                .map(|l| this.push_listener(index, owner.clone(), gw, l, gw.metadata.generation()))
                .collect();
            let mut checked = CheckedGateway {
                gateway: gw,
                name: GatewayName::new(ns, &gw.metadata.name),
                listeners,
                listener_sets: vec![],
                class_accepted,
                not_accepted: None,
                not_programmed: None,
                backend_client_cert: None,
                insecure_fallback: false,
                addresses: vec![],
                http3: false,
                plugins: Default::default(),
            };
            this.gateway_checks(&mut checked);
            this.by_name
                .insert((ns.into(), gw.metadata.name.clone()), index);
            this.gateways.push(checked);
        }
        this.attach_listener_sets();
        this.resolve_conflicts();
        this
    }

    fn push_listener(
        &mut self,
        gateway: usize,
        owner: ObjectKey,
        gw: &'a Gateway,
        spec: &'a Listener,
        generation: i64,
    ) -> usize {
        let checked = check_listener(self.lookup, gateway, owner, gw, spec, generation);
        self.listeners.push(checked);
        self.listeners.len() - 1
    }

    /// A setting of the Gateway's own GatewayClassConfig, else of its class's, and the name of
    /// the GatewayClassConfig that set it.
    fn class_setting<T>(
        &self,
        gw: &Gateway,
        setting: impl Fn(&GatewayClassConfigSpec) -> Option<T>,
    ) -> Option<(T, &'a str)> {
        let config = |ns: &str, group: &str, kind: &str, name: &str| {
            let c = (group == LOOM_GROUP && kind == "GatewayClassConfig")
                .then(|| self.lookup.class_config(ns, name))
                .flatten()?;
            Some((setting(&c.spec)?, c.metadata.name.as_str()))
        };
        let own = gw
            .spec
            .infrastructure
            .as_ref()
            .and_then(|i| i.parameters_ref.as_ref())
            .and_then(|p| {
                config(
                    gw.metadata.namespace_or_default(),
                    &p.group,
                    &p.kind,
                    &p.name,
                )
            });
        let class = || {
            let class = self
                .lookup
                .input
                .gateway_classes
                .iter()
                .find(|c| c.metadata.name == gw.spec.gateway_class_name)?;
            let p = class.spec.parameters_ref.as_ref()?;
            let ns = p.namespace.as_deref().unwrap_or("default");
            config(ns, &p.group, &p.kind, &p.name)
        };
        own.or_else(class)
    }

    /// GatewayClassConfig `plugins` of a Gateway.
    fn plugin_settings_of(&self, gw: &Gateway) -> PluginSettings {
        let enabled = self.class_setting(gw, |c| c.plugins.as_ref()?.enabled);
        let runtime = self.class_setting(gw, |c| c.plugins.as_ref()?.runtime.clone());
        PluginSettings {
            disabled_by: enabled
                .filter(|(on, _)| !on)
                .map(|(_, name)| name.to_owned()),
            runtime: runtime.map(|(r, _)| r),
        }
    }

    /// GatewayClassConfig `plugins` of every Gateway.
    pub(crate) fn plugin_settings(&self) -> BTreeMap<GatewayName, PluginSettings> {
        self.gateways
            .iter()
            .map(|g| (g.name.clone(), g.plugins.clone()))
            .collect()
    }

    fn gateway_checks(&self, checked: &mut CheckedGateway<'a>) {
        let gw = checked.gateway;
        let ns = gw.metadata.namespace_or_default();
        let opts = self.lookup.options;
        if !checked.class_accepted {
            checked.not_accepted = Some(GatewayError::ClassNotAccepted);
        }
        if let Some(p) = gw
            .spec
            .infrastructure
            .as_ref()
            .and_then(|i| i.parameters_ref.as_ref())
            && (p.group != LOOM_GROUP
                || p.kind != "GatewayClassConfig"
                || self.lookup.class_config(ns, &p.name).is_none())
        {
            checked.not_accepted = Some(GatewayError::InfrastructureParameters {
                group: p.group.clone(),
                kind: p.kind.clone(),
                name: p.name.clone(),
            });
        }
        checked.http3 = self
            .class_setting(gw, |c| c.http3.as_ref()?.enabled)
            .is_some_and(|(on, _)| on);
        checked.plugins = self.plugin_settings_of(gw);
        // Addresses.
        let defaults = opts
            .gateway_addresses
            .get(&(ns.to_owned(), gw.metadata.name.clone()))
            .unwrap_or(&opts.default_addresses);
        for a in &gw.spec.addresses {
            let type_ = a.type_.as_deref().unwrap_or("IPAddress");
            let value = a.value.as_deref().filter(|v| !v.is_empty());
            match type_ {
                "IPAddress" | "Hostname" => {}
                other => {
                    checked.not_accepted = Some(GatewayError::AddressType(other.into()));
                    continue;
                }
            }
            if type_ == "IPAddress" && value.is_some_and(|v| v.parse::<std::net::IpAddr>().is_err())
            {
                checked.not_accepted =
                    Some(GatewayError::NotAnIpAddress(value.unwrap_or("").into()));
                continue;
            }
            let value = match value {
                Some(v) => v.to_owned(),
                None => match defaults.iter().find(|d| d.type_ == type_) {
                    Some(d) => d.value.clone(),
                    None => {
                        checked.not_programmed =
                            Some(GatewayNotProgrammed::NoAddress(type_.into()));
                        continue;
                    }
                },
            };
            if opts
                .usable_addresses
                .as_ref()
                .is_some_and(|u| !u.contains(&value))
            {
                checked.not_programmed =
                    Some(GatewayNotProgrammed::AddressNotUsable(value.clone()));
            }
            checked.addresses.push(StatusAddress {
                type_: type_.into(),
                value,
            });
        }
        if gw.spec.addresses.is_empty() {
            checked.addresses = defaults.clone();
        }
        if let Some(why) = opts
            .gateway_not_programmed
            .get(&(ns.to_owned(), gw.metadata.name.clone()))
        {
            checked.not_programmed = Some(why.clone().into());
        }
        // Backend client certificate.
        let tls = gw.spec.tls.as_ref();
        if let Some(r) = tls
            .and_then(|t| t.backend.as_ref())
            .and_then(|b| b.client_certificate_ref.as_ref())
        {
            let res = resolve_secret(self.lookup, ("gateway.networking.k8s.io", "Gateway", ns), r);
            checked.backend_client_cert = Some(res);
        }
        if let Some(f) = tls.and_then(|t| t.frontend.as_ref()) {
            let modes = f.default.iter().chain(f.per_port.iter().map(|p| &p.tls));
            checked.insecure_fallback = modes
                .filter_map(|t| t.validation.as_ref())
                .any(|v| v.mode.as_deref() == Some("AllowInsecureFallback"));
        }
    }

    fn attach_listener_sets(&mut self) {
        let lookup = self.lookup;
        for set in by_age(&lookup.input.listener_sets, |s| &s.metadata) {
            let ns = set.metadata.namespace_or_default();
            let p = &set.spec.parent_ref;
            if group_or(&p.group, GATEWAY_GROUP) != GATEWAY_GROUP
                || p.kind.as_deref().unwrap_or("Gateway") != "Gateway"
            {
                continue;
            }
            let gw_ns = p.namespace.as_deref().unwrap_or(ns);
            let Some(&gateway) = self.by_name.get(&(gw_ns.to_owned(), p.name.clone())) else {
                continue;
            };
            let gw = self.gateways[gateway].gateway;
            let allowed = gw
                .spec
                .allowed_listeners
                .as_ref()
                .and_then(|a| a.namespaces.as_ref());
            let not_allowed = match allowed.and_then(|a| a.from.as_deref()).unwrap_or("None") {
                "All" => None,
                "Same" if ns == gw_ns => None,
                "Selector"
                    if allowed
                        .and_then(|a| a.selector.as_ref())
                        .is_some_and(|s| s.matches(&lookup.namespace_labels(ns))) =>
                {
                    None
                }
                from => Some(ListenerSetNotAllowed { from: from.into() }),
            };
            let key = ObjectKey {
                kind: Kind::ListenerSet,
                namespace: ns.into(),
                name: set.metadata.name.clone(),
            };
            let listeners = if not_allowed.is_none() {
                set.spec
                    .listeners
                    .iter()
                    .map(|l| {
                        self.push_listener(gateway, key.clone(), gw, l, set.metadata.generation())
                    })
                    .collect()
            } else {
                vec![]
            };
            let index = self.listener_sets.len();
            self.sets_by_name
                .insert((ns.into(), set.metadata.name.clone()), index);
            self.gateways[gateway].listener_sets.push(index);
            self.listener_sets.push(CheckedListenerSet {
                set,
                key,
                not_allowed,
                listeners,
            });
        }
    }

    /// Listener precedence: the Gateway's own listeners in order, then ListenerSets oldest
    /// first (then by namespace/name). A later listener that clashes with an earlier one on
    /// the same port loses with `ProtocolConflict` or `HostnameConflict`.
    fn resolve_conflicts(&mut self) {
        let mut settled = vec![];
        for gw in &self.gateways {
            let order: Vec<usize> = gw
                .listeners
                .iter()
                .copied()
                .chain(
                    gw.listener_sets
                        .iter()
                        .flat_map(|&s| self.listener_sets[s].listeners.iter().copied()),
                )
                .collect();
            let mut kept: Vec<PortClaim<'_>> = vec![];
            let mut conflicts = vec![];
            for i in order {
                let l = &self.listeners[i];
                let (Some(protocol), None) = (l.protocol, &l.not_accepted) else {
                    continue;
                };
                let claim = PortClaim {
                    port: l.port,
                    protocol,
                    hostname: l.hostname.as_ref(),
                };
                let conflict = claim.conflict(&kept);
                match conflict {
                    Some(r) => conflicts.push((i, r)),
                    None => kept.push(claim),
                }
            }
            settled.extend(conflicts);
        }
        for (i, r) in settled {
            self.listeners[i].conflict = Some(r);
        }
    }
}
