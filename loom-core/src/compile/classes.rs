//! GatewayClasses: which are Loom's, whether their parameters resolve; their status.

use super::error::ClassParametersError;
use super::lookup::{InputLookup, by_age};
use super::model::*;
use crate::input::*;
use crate::status::*;

pub(crate) fn gateway_classes(lookup: &InputLookup<'_>, status: &mut Status) -> Classes {
    let mut classes = Classes::new();
    for class in by_age(&lookup.input.gateway_classes, |c| &c.metadata) {
        if class.spec.controller_name != lookup.options.controller_name {
            continue;
        }
        let g = class.metadata.generation();
        let invalid = class.spec.parameters_ref.as_ref().and_then(|p| {
            if p.group != LOOM_GROUP || p.kind != "GatewayClassConfig" {
                return Some(ClassParametersError::NotAClassConfig {
                    group: p.group.clone(),
                    kind: p.kind.clone(),
                });
            }
            let ns = p.namespace.as_deref().unwrap_or("default");
            lookup
                .class_config(ns, &p.name)
                .is_none()
                .then(|| ClassParametersError::NotFound {
                    namespace: ns.into(),
                    name: p.name.clone(),
                })
        });
        let mut conditions = Conditions::default();
        conditions.set(match &invalid {
            None => Condition::new(
                ConditionType::Accepted,
                true,
                Reason::Accepted,
                "Loom accepts this class",
                g,
            ),
            Some(e) => Condition::new(ConditionType::Accepted, false, e.reason(), e.to_string(), g),
        });
        conditions.set(Condition::new(
            ConditionType::SupportedVersion,
            true,
            Reason::SupportedVersion,
            "Gateway API v1.6",
            g,
        ));
        let mut names: Vec<&str> = crate::SUPPORTED_FEATURES.to_vec();
        names.extend(lookup.options.extra_features.iter().map(String::as_str));
        names.sort_unstable();
        names.dedup();
        let supported_features = names
            .into_iter()
            .map(|f| SupportedFeature { name: f.into() })
            .collect();
        status.objects.insert(
            ObjectKey {
                kind: Kind::GatewayClass,
                namespace: String::new(),
                name: class.metadata.name.clone(),
            },
            ObjectStatus::GatewayClass(Box::new(GatewayClassStatus {
                conditions,
                supported_features,
            })),
        );
        classes.insert(class.metadata.name.clone(), invalid.is_none());
    }
    classes
}
