//! Object surgery on schemaless Kubernetes objects: RFC 7386 merge patches and the corpus'
//! run-time placeholders.

use serde_json::{Value, json};

use crate::cluster::{Cluster, UNUSABLE_ADDRESS, USABLE_ADDRESS};

/// RFC 7386 JSON merge patch: objects merge key by key, `null` deletes, anything else (lists
/// included) replaces.
pub(crate) fn merge_patch(target: &mut Value, patch: &Value) {
    let Some(p) = patch.as_object() else {
        *target = patch.clone();
        return;
    };
    if !target.is_object() {
        *target = json!({});
    }
    if let Some(t) = target.as_object_mut() {
        for (k, v) in p {
            if v.is_null() {
                t.remove(k);
            } else {
                merge_patch(t.entry(k.clone()).or_insert(Value::Null), v);
            }
        }
    }
}

/// Replaces the corpus' run-time placeholders in an action body: whole address entries
/// (`'{USABLE_ADDRESS}'`) and `{copy of <Kind> <ns>/<name> data['<key>']}`. A copy of an object
/// that does not exist leaves the placeholder as it is.
pub(crate) fn substitute(v: &mut Value, cluster: &Cluster) {
    match v {
        Value::String(s) if s == "{USABLE_ADDRESS}" => {
            *v = json!({"type": "IPAddress", "value": USABLE_ADDRESS})
        }
        Value::String(s) if s == "{UNUSABLE_ADDRESS}" => {
            *v = json!({"type": "IPAddress", "value": UNUSABLE_ADDRESS})
        }
        Value::String(s) if s.starts_with("{copy of ") => {
            let inner = s.trim_start_matches("{copy of ").trim_end_matches('}');
            let mut parts = inner.splitn(3, ' ');
            let (kind, nn, field) = (
                parts.next().unwrap_or(""),
                parts.next().unwrap_or(""),
                parts.next().unwrap_or(""),
            );
            let (ns, name) = nn.split_once('/').unwrap_or(("", nn));
            let data_key = field.trim_start_matches("data['").trim_end_matches("']");
            if let Some(obj) = cluster.get(&(kind.to_owned(), ns.to_owned(), name.to_owned())) {
                *v = obj["data"][data_key].clone();
            }
        }
        Value::Array(a) => a.iter_mut().for_each(|x| substitute(x, cluster)),
        Value::Object(o) => o.values_mut().for_each(|x| substitute(x, cluster)),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn patched(target: Value, patch: Value) -> Value {
        let mut t = target;
        merge_patch(&mut t, &patch);
        t
    }

    #[test]
    fn merge_patch_merges_objects_key_by_key() {
        let v = patched(
            json!({"spec": {"a": 1, "b": {"c": 2, "d": 3}}}),
            json!({"spec": {"b": {"c": 20}, "e": 5}}),
        );
        assert_eq!(v, json!({"spec": {"a": 1, "b": {"c": 20, "d": 3}, "e": 5}}));
    }

    #[test]
    fn merge_patch_null_deletes_a_key() {
        let v = patched(json!({"a": 1, "b": 2}), json!({"a": null}));
        assert_eq!(v, json!({"b": 2}));
    }

    #[test]
    fn merge_patch_null_for_a_missing_key_changes_nothing() {
        let v = patched(json!({"b": 2}), json!({"a": null}));
        assert_eq!(v, json!({"b": 2}));
    }

    #[test]
    fn merge_patch_replaces_lists_whole() {
        let v = patched(
            json!({"rules": [{"a": 1}, {"b": 2}]}),
            json!({"rules": [{"c": 3}]}),
        );
        assert_eq!(v, json!({"rules": [{"c": 3}]}));
    }

    #[test]
    fn merge_patch_object_over_a_scalar_replaces_it() {
        let v = patched(json!({"a": "x"}), json!({"a": {"b": 1}}));
        assert_eq!(v, json!({"a": {"b": 1}}));
    }

    #[test]
    fn merge_patch_scalar_patch_replaces_the_target() {
        assert_eq!(patched(json!({"a": 1}), json!("x")), json!("x"));
    }

    #[test]
    fn merge_patch_nulls_inside_a_new_object_are_dropped() {
        let v = patched(json!({}), json!({"a": {"b": null, "c": 1}}));
        assert_eq!(v, json!({"a": {"c": 1}}));
    }

    #[test]
    fn substitute_replaces_address_placeholders_with_whole_entries() {
        let mut v = json!({"addresses": ["{USABLE_ADDRESS}", "{UNUSABLE_ADDRESS}"]});
        substitute(&mut v, &Cluster::default());
        assert_eq!(
            v,
            json!({"addresses": [
                {"type": "IPAddress", "value": USABLE_ADDRESS},
                {"type": "IPAddress", "value": UNUSABLE_ADDRESS},
            ]})
        );
    }

    #[test]
    fn substitute_copies_data_from_another_object() {
        let mut cluster = Cluster::default();
        cluster.apply(json!({"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": "ca", "namespace": "ns"}, "data": {"ca.crt": "PEM"}}));
        let mut v = json!({"data": {"ca.crt": "{copy of ConfigMap ns/ca data['ca.crt']}"}});
        substitute(&mut v, &cluster);
        assert_eq!(v, json!({"data": {"ca.crt": "PEM"}}));
    }

    #[test]
    fn substitute_leaves_a_copy_of_a_missing_object_alone() {
        let text = "{copy of ConfigMap ns/absent data['ca.crt']}";
        let mut v = json!({"k": text});
        substitute(&mut v, &Cluster::default());
        assert_eq!(v, json!({"k": text}));
    }

    #[test]
    fn substitute_leaves_other_strings_alone() {
        let mut v = json!({"a": "{GATEWAY_CLASS_NAME}", "b": ["x", 1, true]});
        let before = v.clone();
        substitute(&mut v, &Cluster::default());
        assert_eq!(v, before);
    }
}
