//! Status assertions (`before`, `status`; SCHEMA.md 4) against the compiled status. The runner
//! compiles after every change, so a polled assertion is checked once, on the final state.

use std::collections::BTreeMap;

use serde_json::{Value, json};

use crate::case::{Assertion, Check, Condition, ListenerSelection, ListenerStatus, RouteParent};
use crate::cluster::{Key, UNUSABLE_ADDRESS, USABLE_ADDRESS, ref_key};
use crate::conditions::{current, has_all, has_condition};
use crate::runner::{Ctx, Outcome};

/// Generations remembered by `record_generation`.
pub(crate) type Recorded = BTreeMap<Key, i64>;

/// Checks one assertion.
pub(crate) fn check(ctx: &Ctx<'_>, a: &Assertion, recorded: &mut Recorded) -> Outcome {
    let key = a.object.as_ref().map(ref_key).unwrap_or_default();
    let (kind, ns, name) = (&key.0, &key.1, &key.2);
    let st = ctx.status(kind, ns, name);
    let generation = ctx.cluster.generation(&key);
    let conditions_current = || {
        if current(&st["conditions"], generation) {
            Ok(())
        } else {
            Err(format!("conditions not current: {}", st["conditions"]))
        }
    };
    let res: Result<(), String> = match &a.check {
        Check::NamespacesReady { namespaces } => namespaces_ready(ctx, namespaces),
        Check::GatewayAddress { .. } => {
            if !current(&st["conditions"], generation) {
                Err("conditions not current".into())
            } else if !st["addresses"]
                .as_array()
                .is_some_and(|l| l.iter().any(|a| a["type"].is_string()))
            {
                Err(format!("no typed address in {}", st["addresses"]))
            } else {
                Ok(())
            }
        }
        Check::GatewayLatestConditions {}
        | Check::GatewayClassLatestConditions {}
        | Check::ListenerSetLatestConditions {} => {
            if st["conditions"].as_array().is_some_and(|l| !l.is_empty()) {
                conditions_current()
            } else {
                Err(format!("conditions not current: {}", st["conditions"]))
            }
        }
        Check::GatewayConditions { conditions }
        | Check::GatewayClassConditions { conditions }
        | Check::ListenerSetConditions { conditions } => {
            conditions_current().and_then(|()| has_all(&st["conditions"], conditions))
        }
        Check::GatewayListeners { listeners } | Check::ListenerSetListeners { listeners } => {
            if current(&st["conditions"], generation) {
                listener_statuses(&st["listeners"], listeners)
            } else {
                Err("conditions not current".into())
            }
        }
        Check::ListenerConditions {
            listeners,
            conditions,
        } => listener_conditions(&st["listeners"], listeners, conditions),
        Check::ListenerSetListenerConditions {
            listeners,
            conditions,
        } => {
            let r = listener_conditions(&st["listeners"], listeners, conditions);
            if r.is_ok() && !current(&st["conditions"], generation) {
                Err("ListenerSet conditions not current".into())
            } else {
                r
            }
        }
        Check::GatewayZeroRoutes {} => {
            let ls = st["listeners"].as_array().cloned().unwrap_or_default();
            if current(&st["conditions"], generation)
                && (ls.is_empty() || (ls.len() == 1 && ls[0]["attachedRoutes"] == 0))
            {
                Ok(())
            } else {
                Err(format!("listeners {ls:?}"))
            }
        }
        Check::GatewayAttachedListenerSets { count } => {
            let n = st["attachedListenerSets"].as_i64().unwrap_or(0);
            if current(&st["conditions"], generation) && n == *count {
                Ok(())
            } else {
                Err(format!("attachedListenerSets {n}"))
            }
        }
        Check::GatewayStatusAddresses {
            count,
            contains,
            not_contains,
            ..
        } => status_addresses(&st["addresses"], *count, contains, not_contains),
        Check::SpecAddressCount { count } => {
            let n = ctx
                .cluster
                .get(&key)
                .and_then(|v| v["spec"]["addresses"].as_array().map(Vec::len))
                .unwrap_or(0);
            if i64::try_from(n).ok() == Some(*count) {
                Ok(())
            } else {
                Err(format!("spec has {n} addresses"))
            }
        }
        Check::InfrastructureMetadataPropagated { .. } => {
            return Outcome::Undecided("needs provisioned infrastructure (Kubernetes)".into());
        }
        Check::RouteParents {
            namespace_required,
            observed_generation_must_be_current,
            parents,
        } => route_parents(
            &st["parents"],
            generation,
            *namespace_required,
            *observed_generation_must_be_current,
            parents,
        ),
        Check::RouteCondition { parent, condition } => {
            let parents = st["parents"].as_array().cloned().unwrap_or_default();
            if !parents
                .iter()
                .all(|x| current(&x["conditions"], generation))
            {
                Err("conditions not current".into())
            } else if parents.iter().any(|x| {
                let pr = &x["parentRef"];
                pr["name"] == parent.name.as_str()
                    && (pr["namespace"].is_null() || pr["namespace"] == parent.namespace.as_str())
                    && has_condition(&x["conditions"], condition)
            }) {
                Ok(())
            } else {
                Err(format!("no parent with {condition}; actual {parents:?}"))
            }
        }
        Check::RouteNoAcceptedParents {} => {
            let parents = st["parents"].as_array().cloned().unwrap_or_default();
            if parents.is_empty()
                || (parents.len() == 1
                    && current(&parents[0]["conditions"], generation)
                    && has_condition(
                        &parents[0]["conditions"],
                        &Condition::new("Accepted", "False"),
                    ))
            {
                Ok(())
            } else {
                Err(format!("parents {parents:?}"))
            }
        }
        Check::RouteLatestConditions {} => all_current(&st["parents"], generation),
        Check::PolicyAncestorCondition {
            ancestor,
            condition,
        } => {
            let mut r = Err(format!(
                "no ancestor {}/{} with {condition}: {}",
                ancestor.namespace, ancestor.name, st["ancestors"]
            ));
            for anc in st["ancestors"].as_array().into_iter().flatten() {
                if !current(&anc["conditions"], generation) {
                    r = Err("ancestor conditions not current".into());
                    break;
                }
                let ar = &anc["ancestorRef"];
                if ar["name"] == ancestor.name.as_str()
                    && (ar["namespace"].is_null() || ar["namespace"] == ancestor.namespace.as_str())
                    && has_condition(&anc["conditions"], condition)
                {
                    r = Ok(());
                    break;
                }
            }
            r
        }
        Check::PolicyLatestConditions {} => all_current(&st["ancestors"], generation),
        Check::RecordGeneration {} => {
            recorded.insert(key.clone(), generation);
            Ok(())
        }
        Check::GenerationChanged {} => {
            if recorded.get(&key).is_some_and(|g| *g != generation) {
                Ok(())
            } else {
                Err("generation did not change".into())
            }
        }
    };
    match res {
        Ok(()) => Outcome::Pass,
        Err(m) => Outcome::Fail(format!("{} {kind}/{ns}/{name}: {m}", a.check.name())),
    }
}

/// Every non-skipped Gateway of the namespaces is Accepted and Programmed, with current
/// conditions. (The runner has no pods: they are always ready.)
fn namespaces_ready(ctx: &Ctx<'_>, namespaces: &[String]) -> Result<(), String> {
    let mut r = Ok(());
    for ns in namespaces {
        for (k, v) in ctx.cluster.of_kind("Gateway", ns) {
            if v["metadata"]["annotations"]["gateway-api/skip-this-for-readiness"] == "true" {
                continue;
            }
            let s = ctx.status("Gateway", &k.1, &k.2);
            let ok = current(&s["conditions"], ctx.cluster.generation(k))
                && has_condition(&s["conditions"], &Condition::new("Accepted", "True"))
                && has_condition(&s["conditions"], &Condition::new("Programmed", "True"));
            if !ok {
                r = Err(format!(
                    "Gateway {}/{} not ready: {}",
                    k.1, k.2, s["conditions"]
                ));
            }
        }
    }
    r
}

/// Every entry of a list (route parents, policy ancestors) has current conditions.
fn all_current(entries: &Value, generation: i64) -> Result<(), String> {
    if entries
        .as_array()
        .into_iter()
        .flatten()
        .all(|x| current(&x["conditions"], generation))
    {
        Ok(())
    } else {
        Err("not current".into())
    }
}

/// `gateway_listeners` / `listener_set_listeners`: exactly the expected listeners, each with the
/// expected kinds, attached routes and conditions.
pub(crate) fn listener_statuses(actual: &Value, expected: &[ListenerStatus]) -> Result<(), String> {
    let actual = actual.as_array().cloned().unwrap_or_default();
    if actual.len() != expected.len() {
        return Err(format!(
            "{} listener statuses, expected {}",
            actual.len(),
            expected.len()
        ));
    }
    let group = |g: Option<&str>| {
        g.filter(|g| !g.is_empty())
            .unwrap_or("gateway.networking.k8s.io")
            .to_owned()
    };
    for e in expected {
        let Some(a) = actual.iter().find(|a| a["name"] == e.name.as_str()) else {
            return Err(format!("no status for listener {:?}", e.name));
        };
        let ak = a["supportedKinds"].as_array().cloned().unwrap_or_default();
        if e.supported_kinds.is_empty() && !ak.is_empty() {
            return Err(format!(
                "listener {:?}: supportedKinds {ak:?}, expected none",
                e.name
            ));
        }
        for k in &e.supported_kinds {
            if !ak.iter().any(|a| {
                a["kind"] == k.kind.as_str()
                    && group(a["group"].as_str()) == group(k.group.as_deref())
            }) {
                return Err(format!(
                    "listener {:?}: supportedKinds {ak:?} lacks {}",
                    e.name, k.kind
                ));
            }
        }
        if a["attachedRoutes"] != e.attached_routes {
            return Err(format!(
                "listener {:?}: attachedRoutes {} expected {}",
                e.name, a["attachedRoutes"], e.attached_routes
            ));
        }
        has_all(&a["conditions"], &e.conditions)
            .map_err(|m| format!("listener {:?}: {m}", e.name))?;
    }
    Ok(())
}

/// `listener_conditions`: every selected listener has all the conditions; a named listener
/// must exist.
pub(crate) fn listener_conditions(
    actual: &Value,
    selection: &ListenerSelection,
    conditions: &[Condition],
) -> Result<(), String> {
    let ls = actual.as_array().cloned().unwrap_or_default();
    let targets: Vec<Value> = match selection {
        ListenerSelection::Named(names) => names
            .iter()
            .map(|n| {
                ls.iter()
                    .find(|l| l["name"] == n.as_str())
                    .cloned()
                    .unwrap_or(Value::Null)
            })
            .collect(),
        ListenerSelection::All => ls,
    };
    let mut r = Ok(());
    for l in targets {
        if l.is_null() {
            r = Err("listener missing".into());
        } else if let Err(m) = has_all(&l["conditions"], conditions) {
            r = Err(format!("listener {}: {m}", l["name"]));
        }
    }
    r
}

/// `route_parents`: each expected parent is matched by some actual entry.
fn route_parents(
    actual: &Value,
    generation: i64,
    namespace_required: bool,
    must_be_current: bool,
    expected: &[RouteParent],
) -> Result<(), String> {
    let parents = actual.as_array().cloned().unwrap_or_default();
    let mut r = Ok(());
    if must_be_current
        && !parents
            .iter()
            .all(|p| current(&p["conditions"], generation))
    {
        r = Err("parent conditions not current".into());
    }
    for e in expected {
        let ep = &e.parent_ref;
        let found = parents.iter().any(|p| {
            let pr = &p["parentRef"];
            p["controllerName"] == loom_core::CONTROLLER_NAME
                && pr["group"] == ep.group.as_str()
                && pr["kind"] == ep.kind.as_str()
                && pr["name"] == ep.name.as_str()
                && (pr["namespace"] == ep.namespace.as_str()
                    || (!namespace_required && pr["namespace"].is_null()))
                && has_all(&p["conditions"], &e.conditions).is_ok()
        });
        if !found {
            r = Err(format!(
                "no parent matches {} {}/{}; actual {parents:?}",
                ep.kind, ep.namespace, ep.name
            ));
        }
    }
    r
}

/// `gateway_status_addresses`: the count, then the values present and absent.
fn status_addresses(
    actual: &Value,
    count: i64,
    contains: &[String],
    not_contains: &[String],
) -> Result<(), String> {
    let addrs = actual.as_array().cloned().unwrap_or_default();
    let value = |s: &str| match s {
        "{USABLE_ADDRESS}.value" => USABLE_ADDRESS.to_owned(),
        "{UNUSABLE_ADDRESS}.value" => UNUSABLE_ADDRESS.to_owned(),
        o => o.to_owned(),
    };
    let has = |v: &str| addrs.iter().any(|x| x["value"] == json!(value(v)));
    if i64::try_from(addrs.len()).ok() != Some(count) {
        Err(format!(
            "{} status addresses, expected {count}",
            addrs.len()
        ))
    } else if contains.iter().any(|c| !has(c)) {
        Err(format!("addresses {addrs:?} lack an expected value"))
    } else if not_contains.iter().any(|c| has(c)) {
        Err(format!("addresses {addrs:?} contain an unexpected value"))
    } else {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::case::{GroupKind, ParentRef};

    fn accepted() -> Vec<Condition> {
        vec![Condition::new("Accepted", "True")]
    }

    fn listeners() -> Value {
        json!([
            {"name": "http", "attachedRoutes": 1,
             "supportedKinds": [{"group": "gateway.networking.k8s.io", "kind": "HTTPRoute"}],
             "conditions": [{"type": "Accepted", "status": "True"}]},
            {"name": "tls", "attachedRoutes": 0, "supportedKinds": [],
             "conditions": [{"type": "Accepted", "status": "False"}]},
        ])
    }

    fn expected_listener(name: &str, kinds: &[&str], attached: i64) -> ListenerStatus {
        ListenerStatus {
            name: name.into(),
            supported_kinds: kinds
                .iter()
                .map(|k| GroupKind {
                    group: None,
                    kind: (*k).into(),
                })
                .collect(),
            attached_routes: attached,
            conditions: vec![],
        }
    }

    #[test]
    fn listener_conditions_all_checks_every_listener() {
        let r = listener_conditions(&listeners(), &ListenerSelection::All, &accepted());
        assert!(r.unwrap_err().contains("listener \"tls\""));
    }

    #[test]
    fn listener_conditions_all_holds_vacuously_without_listeners() {
        assert!(listener_conditions(&Value::Null, &ListenerSelection::All, &accepted()).is_ok());
    }

    #[test]
    fn listener_conditions_named_checks_only_those() {
        let named = ListenerSelection::Named(vec!["http".into()]);
        assert!(listener_conditions(&listeners(), &named, &accepted()).is_ok());
    }

    #[test]
    fn listener_conditions_named_listener_must_exist() {
        let named = ListenerSelection::Named(vec!["absent".into()]);
        assert_eq!(
            listener_conditions(&listeners(), &named, &accepted()),
            Err("listener missing".into())
        );
    }

    #[test]
    fn listener_statuses_need_the_exact_count() {
        let r = listener_statuses(
            &listeners(),
            &[expected_listener("http", &["HTTPRoute"], 1)],
        );
        assert_eq!(r, Err("2 listener statuses, expected 1".into()));
    }

    #[test]
    fn listener_statuses_treat_a_missing_group_as_gateway_api() {
        let r = listener_statuses(
            &listeners(),
            &[
                expected_listener("http", &["HTTPRoute"], 1),
                expected_listener("tls", &[], 0),
            ],
        );
        assert_eq!(r, Ok(()));
    }

    #[test]
    fn listener_statuses_with_no_expected_kinds_need_none() {
        let r = listener_statuses(
            &listeners(),
            &[
                expected_listener("http", &[], 1),
                expected_listener("tls", &[], 0),
            ],
        );
        assert!(r.unwrap_err().contains("expected none"));
    }

    #[test]
    fn listener_statuses_compare_attached_routes() {
        let r = listener_statuses(
            &listeners(),
            &[
                expected_listener("http", &["HTTPRoute"], 2),
                expected_listener("tls", &[], 0),
            ],
        );
        assert!(r.unwrap_err().contains("attachedRoutes 1 expected 2"));
    }

    fn parent(ns_in_status: Option<&str>) -> Value {
        let mut pr = json!({"group": "gateway.networking.k8s.io", "kind": "Gateway", "name": "gw"});
        if let Some(ns) = ns_in_status {
            pr["namespace"] = json!(ns);
        }
        json!([{"parentRef": pr, "controllerName": loom_core::CONTROLLER_NAME,
            "conditions": [{"type": "Accepted", "status": "True", "observedGeneration": 1}]}])
    }

    fn expected_parent() -> RouteParent {
        RouteParent {
            parent_ref: ParentRef {
                group: "gateway.networking.k8s.io".into(),
                kind: "Gateway".into(),
                namespace: "infra".into(),
                name: "gw".into(),
                section_name: None,
            },
            controller_name: "{GATEWAY_CONTROLLER_NAME}".into(),
            conditions: accepted(),
        }
    }

    #[test]
    fn route_parents_may_omit_the_namespace_unless_required() {
        let e = [expected_parent()];
        assert!(route_parents(&parent(None), 1, false, true, &e).is_ok());
        assert!(route_parents(&parent(None), 1, true, true, &e).is_err());
        assert!(route_parents(&parent(Some("infra")), 1, true, true, &e).is_ok());
    }

    #[test]
    fn route_parents_checks_currency_only_when_asked() {
        let e = [expected_parent()];
        assert!(route_parents(&parent(None), 2, false, false, &e).is_ok());
        assert_eq!(
            route_parents(&parent(None), 2, false, true, &e),
            Err("parent conditions not current".into())
        );
    }

    #[test]
    fn status_addresses_resolve_placeholder_values() {
        let a = json!([{"type": "IPAddress", "value": USABLE_ADDRESS}]);
        let usable = ["{USABLE_ADDRESS}.value".to_owned()];
        let unusable = ["{UNUSABLE_ADDRESS}.value".to_owned()];
        assert!(status_addresses(&a, 1, &usable, &unusable).is_ok());
        assert!(status_addresses(&a, 1, &unusable, &[]).is_err());
        assert!(status_addresses(&a, 2, &usable, &[]).is_err());
    }
}
