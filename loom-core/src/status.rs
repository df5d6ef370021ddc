//! Status as the spec defines it: conditions with typed reasons, per object.
//!
//! No timestamps here: the caller stamps `lastTransitionTime` when it writes status.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

use serde::{Serialize, Serializer};

use crate::input::{ObjectKey, ParentReference, RouteGroupKind};

/// A condition's `type`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[allow(missing_docs)]
pub enum ConditionType {
    Accepted,
    Programmed,
    ResolvedRefs,
    Conflicted,
    PartiallyInvalid,
    SupportedVersion,
    InsecureFrontendValidationMode,
}

impl ConditionType {
    /// The spec string.
    pub fn as_str(self) -> &'static str {
        match self {
            ConditionType::Accepted => "Accepted",
            ConditionType::Programmed => "Programmed",
            ConditionType::ResolvedRefs => "ResolvedRefs",
            ConditionType::Conflicted => "Conflicted",
            ConditionType::PartiallyInvalid => "PartiallyInvalid",
            ConditionType::SupportedVersion => "SupportedVersion",
            ConditionType::InsecureFrontendValidationMode => "InsecureFrontendValidationMode",
        }
    }
}

/// A condition's `reason`, each one from the Gateway API spec.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[allow(missing_docs)]
#[non_exhaustive]
pub enum Reason {
    Accepted,
    Programmed,
    ResolvedRefs,
    NoConflicts,
    SupportedVersion,
    Invalid,
    InvalidParameters,
    ListenersNotValid,
    UnsupportedAddress,
    AddressNotUsable,
    AddressNotAssigned,
    NotAllowedByListeners,
    NoMatchingListenerHostname,
    NoMatchingParent,
    UnsupportedValue,
    RefNotPermitted,
    BackendNotFound,
    InvalidKind,
    UnsupportedProtocol,
    InvalidRouteKinds,
    InvalidCertificateRef,
    InvalidCaCertificateRef,
    InvalidCaCertificateKind,
    InvalidClientCertificateRef,
    NoValidCaCertificate,
    HostnameConflict,
    ProtocolConflict,
    NotAllowed,
    Conflicted,
    ConfigurationChanged,
    TargetNotFound,
    Pending,
    /// Loom's own: the policy is valid, but this version of Loom does not act on it.
    NotEnforced,
    /// Loom's own: a GatewayClassConfig turns the feature off (`plugins.enabled: false`).
    Disabled,
}

impl Reason {
    /// The spec string.
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::Accepted => "Accepted",
            Reason::Programmed => "Programmed",
            Reason::ResolvedRefs => "ResolvedRefs",
            Reason::NoConflicts => "NoConflicts",
            Reason::SupportedVersion => "SupportedVersion",
            Reason::Invalid => "Invalid",
            Reason::InvalidParameters => "InvalidParameters",
            Reason::ListenersNotValid => "ListenersNotValid",
            Reason::UnsupportedAddress => "UnsupportedAddress",
            Reason::AddressNotUsable => "AddressNotUsable",
            Reason::AddressNotAssigned => "AddressNotAssigned",
            Reason::NotAllowedByListeners => "NotAllowedByListeners",
            Reason::NoMatchingListenerHostname => "NoMatchingListenerHostname",
            Reason::NoMatchingParent => "NoMatchingParent",
            Reason::UnsupportedValue => "UnsupportedValue",
            Reason::RefNotPermitted => "RefNotPermitted",
            Reason::BackendNotFound => "BackendNotFound",
            Reason::InvalidKind => "InvalidKind",
            Reason::UnsupportedProtocol => "UnsupportedProtocol",
            Reason::InvalidRouteKinds => "InvalidRouteKinds",
            Reason::InvalidCertificateRef => "InvalidCertificateRef",
            Reason::InvalidCaCertificateRef => "InvalidCACertificateRef",
            Reason::InvalidCaCertificateKind => "InvalidCACertificateKind",
            Reason::InvalidClientCertificateRef => "InvalidClientCertificateRef",
            Reason::NoValidCaCertificate => "NoValidCACertificate",
            Reason::HostnameConflict => "HostnameConflict",
            Reason::ProtocolConflict => "ProtocolConflict",
            Reason::NotAllowed => "NotAllowed",
            Reason::Conflicted => "Conflicted",
            Reason::ConfigurationChanged => "ConfigurationChanged",
            Reason::TargetNotFound => "TargetNotFound",
            Reason::NotEnforced => "NotEnforced",
            Reason::Disabled => "Disabled",
            Reason::Pending => "Pending",
        }
    }
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One status condition.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Condition {
    /// `type`.
    pub type_: ConditionType,
    /// `status`: `True` or `False`.
    pub status: bool,
    /// `reason`.
    pub reason: Reason,
    /// `message`: a sentence for humans (most are fixed ones, shared by every object that
    /// has them).
    pub message: Cow<'static, str>,
    /// `observedGeneration`.
    pub observed_generation: i64,
}

impl Condition {
    /// A condition with this type, status and reason.
    pub fn new(
        type_: ConditionType,
        status: bool,
        reason: Reason,
        message: impl Into<Cow<'static, str>>,
        generation: i64,
    ) -> Self {
        let message = match message.into() {
            Cow::Owned(m) => Cow::Owned(bounded(m)),
            fixed => fixed,
        };
        Condition {
            type_,
            status,
            reason,
            message,
            observed_generation: generation,
        }
    }
}

/// Messages longer than this are cut (a value in a message can be megabytes long; a
/// condition's message may hold at most 32,768 bytes).
pub const MAX_MESSAGE_BYTES: usize = 1024;

/// `message`, cut to [`MAX_MESSAGE_BYTES`] with a note saying how much was left out.
pub fn bounded(message: String) -> String {
    if message.len() <= MAX_MESSAGE_BYTES {
        return message;
    }
    let mut end = MAX_MESSAGE_BYTES - 64;
    while !message.is_char_boundary(end) {
        end -= 1;
    }
    format!(
        "{}… ({} more bytes left out)",
        &message[..end],
        message.len() - end
    )
}

impl Serialize for Condition {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeStruct;
        let mut st = s.serialize_struct("Condition", 5)?;
        st.serialize_field("type", self.type_.as_str())?;
        st.serialize_field("status", if self.status { "True" } else { "False" })?;
        st.serialize_field("reason", self.reason.as_str())?;
        st.serialize_field("message", &self.message)?;
        st.serialize_field("observedGeneration", &self.observed_generation)?;
        st.end()
    }
}

/// A list of conditions with at most one per type.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
#[serde(transparent)]
pub struct Conditions(pub Vec<Condition>);

impl Conditions {
    /// Sets a condition, replacing one of the same type.
    pub fn set(&mut self, c: Condition) {
        match self.0.iter_mut().find(|x| x.type_ == c.type_) {
            Some(x) => *x = c,
            None => self.0.push(c),
        }
    }

    /// The condition of this type.
    pub fn get(&self, t: ConditionType) -> Option<&Condition> {
        self.0.iter().find(|c| c.type_ == t)
    }

    /// Whether the condition of this type is present and True.
    pub fn is_true(&self, t: ConditionType) -> bool {
        self.get(t).is_some_and(|c| c.status)
    }
}

/// `status` of a GatewayClass.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct GatewayClassStatus {
    /// Conditions.
    pub conditions: Conditions,
    /// The features Loom supports (`supportedFeatures`).
    pub supported_features: Vec<SupportedFeature>,
}

/// A `supportedFeatures` entry.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct SupportedFeature {
    /// The feature name.
    pub name: String,
}

/// `status` of a Gateway.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct GatewayStatus {
    /// Addresses the Gateway is reachable at.
    pub addresses: Vec<StatusAddress>,
    /// Conditions.
    pub conditions: Conditions,
    /// One entry per spec listener.
    pub listeners: Vec<ListenerStatus>,
    /// Accepted ListenerSets.
    pub attached_listener_sets: i32,
}

/// A `status.addresses` entry.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct StatusAddress {
    /// `IPAddress`, `Hostname`, ...
    #[serde(rename = "type")]
    pub type_: String,
    /// The value.
    pub value: String,
}

/// A listener's status.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ListenerStatus {
    /// The listener name.
    pub name: String,
    /// Kinds the listener admits.
    pub supported_kinds: Vec<RouteGroupKind>,
    /// Routes accepted on it.
    pub attached_routes: i32,
    /// Conditions.
    pub conditions: Conditions,
}

/// `status` of a ListenerSet.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ListenerSetStatus {
    /// Conditions.
    pub conditions: Conditions,
    /// One entry per spec listener.
    pub listeners: Vec<ListenerStatus>,
}

/// `status` of any route kind.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RouteStatus {
    /// One entry per parentRef that names a parent of Loom's.
    pub parents: Vec<RouteParentStatus>,
}

/// A `status.parents` entry.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RouteParentStatus {
    /// The parentRef, with group, kind and namespace written out (shared: most routes name
    /// the same parent).
    pub parent_ref: Arc<ParentReference>,
    /// Loom's controller name (shared).
    pub controller_name: Arc<str>,
    /// Conditions.
    pub conditions: Conditions,
}

/// `status` of a policy (BackendTLSPolicy, Loom's policies).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PolicyStatus {
    /// One entry per ancestor (Gateway) the policy affects.
    pub ancestors: Vec<PolicyAncestorStatus>,
}

/// A `status.ancestors` entry.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PolicyAncestorStatus {
    /// The ancestor.
    pub ancestor_ref: ParentReference,
    /// Loom's controller name.
    pub controller_name: String,
    /// Conditions.
    pub conditions: Conditions,
}

/// The status of one object. Each variant is a pointer: a status map holds one entry per
/// route, and a Gateway's status inline made every entry 80 bytes rather than 16.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(untagged)]
#[allow(missing_docs)]
pub enum ObjectStatus {
    GatewayClass(Box<GatewayClassStatus>),
    Gateway(Box<GatewayStatus>),
    ListenerSet(Box<ListenerSetStatus>),
    Route(Arc<RouteStatus>),
    Policy(Box<PolicyStatus>),
}

impl Conditions {
    /// Whether every condition is in its good state: Accepted, ResolvedRefs and Programmed
    /// True; Conflicted and PartiallyInvalid False.
    pub fn are_healthy(&self) -> bool {
        self.0.iter().all(|c| match c.type_ {
            ConditionType::Accepted | ConditionType::ResolvedRefs | ConditionType::Programmed => {
                c.status
            }
            ConditionType::Conflicted | ConditionType::PartiallyInvalid => !c.status,
            ConditionType::SupportedVersion | ConditionType::InsecureFrontendValidationMode => true,
        })
    }
}

impl ObjectStatus {
    /// Whether the object and everything in it (listeners, parents, ancestors) is healthy.
    pub fn is_healthy(&self) -> bool {
        match self {
            ObjectStatus::GatewayClass(s) => s.conditions.are_healthy(),
            ObjectStatus::Gateway(s) => {
                s.conditions.are_healthy() && s.listeners.iter().all(|l| l.conditions.are_healthy())
            }
            ObjectStatus::ListenerSet(s) => {
                s.conditions.are_healthy() && s.listeners.iter().all(|l| l.conditions.are_healthy())
            }
            ObjectStatus::Route(s) => s.parents.iter().all(|p| p.conditions.are_healthy()),
            ObjectStatus::Policy(s) => s.ancestors.iter().all(|a| a.conditions.are_healthy()),
        }
    }
}

/// The status of every object Loom owns, keyed by object.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Status {
    /// Status by object.
    pub objects: BTreeMap<ObjectKey, ObjectStatus>,
}

impl Status {
    /// The status of one object.
    pub fn get(&self, key: &ObjectKey) -> Option<&ObjectStatus> {
        self.objects.get(key)
    }
}

#[cfg(test)]
mod bounded_tests {
    use super::*;

    #[test]
    fn short_messages_are_kept() {
        assert_eq!(bounded("fine".into()), "fine");
    }

    #[test]
    fn long_messages_are_cut_with_a_note() {
        let long = format!("hostname \"{}\" is invalid", "é".repeat(2_000_000));
        let cut = bounded(long.clone());
        assert!(cut.len() <= MAX_MESSAGE_BYTES + 64, "{}", cut.len());
        assert!(cut.starts_with("hostname \"éé"));
        assert!(cut.ends_with("more bytes left out)"), "{cut}");
    }
}

#[cfg(test)]
mod size_tests {
    use super::*;

    #[test]
    fn an_object_status_is_one_pointer_and_its_variant() {
        // One per route in a status map: at 5,000 routes, each byte here is 5 KB.
        assert_eq!(std::mem::size_of::<ObjectStatus>(), 16);
    }
}
