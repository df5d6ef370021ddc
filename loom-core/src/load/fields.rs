//! Unknown fields in Gateway API objects, found the way the API server finds them
//! (`kubectl apply --validate=strict`): every key of the document is looked up in the upstream
//! CRD schemas, so a field Loom does not model but Gateway API defines is never reported, and a
//! typo always is.
//!
//! The schemas are reduced to a list of field paths per kind, checked in as
//! `gateway-api-fields.txt` and compared with the CRDs by a test (which also regenerates it).

use std::collections::{HashMap, HashSet};
use std::sync::LazyLock;

use serde::Deserialize;
use serde::de::{self, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_saphyr::Spanned;

use crate::input::{GATEWAY_GROUP, Kind};

/// A YAML document as a tree, with the line of every mapping key and sequence item.
#[derive(Debug)]
pub(crate) enum Node {
    Map(Vec<Entry>),
    Seq(Vec<Spanned<Node>>),
    Scalar,
}

/// A mapping entry: the key, its line (in the document, 1-based) and the value.
#[derive(Debug)]
pub(crate) struct Entry {
    key: String,
    line: u64,
    value: Spanned<Node>,
}

impl<'de> Deserialize<'de> for Node {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Node;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("any YAML node")
            }
            fn visit_bool<E>(self, _: bool) -> Result<Node, E> {
                Ok(Node::Scalar)
            }
            fn visit_i64<E>(self, _: i64) -> Result<Node, E> {
                Ok(Node::Scalar)
            }
            fn visit_u64<E>(self, _: u64) -> Result<Node, E> {
                Ok(Node::Scalar)
            }
            fn visit_i128<E>(self, _: i128) -> Result<Node, E> {
                Ok(Node::Scalar)
            }
            fn visit_u128<E>(self, _: u128) -> Result<Node, E> {
                Ok(Node::Scalar)
            }
            fn visit_f64<E>(self, _: f64) -> Result<Node, E> {
                Ok(Node::Scalar)
            }
            fn visit_str<E>(self, _: &str) -> Result<Node, E> {
                Ok(Node::Scalar)
            }
            fn visit_bytes<E>(self, _: &[u8]) -> Result<Node, E> {
                Ok(Node::Scalar)
            }
            fn visit_unit<E>(self) -> Result<Node, E> {
                Ok(Node::Scalar)
            }
            fn visit_none<E>(self) -> Result<Node, E> {
                Ok(Node::Scalar)
            }
            fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Node, D::Error> {
                Node::deserialize(d)
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Node, A::Error> {
                let mut items = vec![];
                while let Some(item) = seq.next_element()? {
                    items.push(item);
                }
                Ok(Node::Seq(items))
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Node, A::Error> {
                let mut entries = vec![];
                while let Some(key) = map.next_key::<Spanned<Key>>()? {
                    entries.push(Entry {
                        key: key.value.0,
                        line: key.referenced.line(),
                        value: map.next_value()?,
                    });
                }
                Ok(Node::Map(entries))
            }
        }
        d.deserialize_any(V)
    }
}

/// A mapping key as text (Kubernetes keys are strings; a number or boolean key is written out).
struct Key(String);

impl<'de> Deserialize<'de> for Key {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = Key;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a scalar mapping key")
            }
            fn visit_bool<E>(self, v: bool) -> Result<Key, E> {
                Ok(Key(v.to_string()))
            }
            fn visit_i64<E>(self, v: i64) -> Result<Key, E> {
                Ok(Key(v.to_string()))
            }
            fn visit_u64<E>(self, v: u64) -> Result<Key, E> {
                Ok(Key(v.to_string()))
            }
            fn visit_f64<E>(self, v: f64) -> Result<Key, E> {
                Ok(Key(v.to_string()))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Key, E> {
                Ok(Key(v.to_owned()))
            }
            fn visit_unit<E>(self) -> Result<Key, E> {
                Ok(Key("null".into()))
            }
        }
        d.deserialize_any(V)
    }
}

impl Node {
    /// Parses a document; `None` when it is not a mapping this reader understands (the typed
    /// parse has reported whatever is wrong with it).
    pub(crate) fn parse(text: &str) -> Option<Node> {
        let node: Node = serde_saphyr::from_str_with_options(text, super::yaml_options()).ok()?;
        matches!(node, Node::Map(_)).then_some(node)
    }

    /// The line (in the document) of a field given as a dotted path with list indexes
    /// (`spec.parentRefs[1]`, `spec.rules[0].filters`): the line of its key, or of the list
    /// item for a path ending in an index.
    pub(crate) fn line_of(&self, field: &str) -> Option<u64> {
        let mut node = self;
        let mut line = None;
        for segment in field.split('.') {
            let (key, indexes) = match segment.split_once('[') {
                Some((k, rest)) => (k, Some(rest)),
                None => (segment, None),
            };
            let Node::Map(entries) = node else {
                return None;
            };
            let entry = entries.iter().find(|e| e.key == key)?;
            line = Some(entry.line);
            node = &entry.value.value;
            for index in indexes.into_iter().flat_map(|r| r.split('[')) {
                let i: usize = index.trim_end_matches(']').parse().ok()?;
                let Node::Seq(items) = node else {
                    return None;
                };
                let item = items.get(i)?;
                line = Some(item.referenced.line());
                node = &item.value;
            }
        }
        line
    }
}

/// Field paths per kind (`spec.rules[].filters[].type`; `x.*` admits any key below `x`).
static KNOWN: LazyLock<HashMap<&'static str, HashSet<&'static str>>> = LazyLock::new(|| {
    let mut known: HashMap<&str, HashSet<&str>> = HashMap::new();
    for line in FIELDS.lines().filter(|l| !l.starts_with('#')) {
        if let Some((kind, path)) = line.split_once(' ') {
            known.entry(kind).or_default().insert(path);
        }
    }
    known
});

const FIELDS: &str = include_str!("gateway-api-fields.txt");

/// The fields of Kubernetes' `ObjectMeta`, which the CRDs leave to the API server.
const OBJECT_META: &[&str] = &[
    "name",
    "generateName",
    "namespace",
    "selfLink",
    "uid",
    "resourceVersion",
    "generation",
    "creationTimestamp",
    "deletionTimestamp",
    "deletionGracePeriodSeconds",
    "labels",
    "annotations",
    "ownerReferences",
    "finalizers",
    "managedFields",
];

/// An unknown field: its path (`spec.rules[0].filterz`) and line in the document.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Unknown {
    pub(crate) field: String,
    pub(crate) line: u64,
}

/// The keys of a Gateway API object's document that its CRD schema does not have, in document
/// order. Other kinds are not checked: Loom's own deny unknown fields when parsed, and the core
/// kinds are read in part (their schemas are not Loom's to check).
pub(crate) fn unknown_fields(kind: Kind, root: &Node) -> Vec<Unknown> {
    let mut out = vec![];
    let (GATEWAY_GROUP, Some(known), Node::Map(entries)) =
        (kind.group(), KNOWN.get(kind.as_str()), root)
    else {
        return out;
    };
    for e in entries {
        match e.key.as_str() {
            "apiVersion" | "kind" | "status" => {}
            "metadata" => {
                if let Node::Map(meta) = &e.value.value {
                    for m in meta
                        .iter()
                        .filter(|m| !OBJECT_META.contains(&m.key.as_str()))
                    {
                        out.push(Unknown {
                            field: format!("metadata.{}", m.key),
                            line: m.line,
                        });
                    }
                }
            }
            "spec" => walk(&e.value.value, "spec", "spec", known, &mut out),
            other => out.push(Unknown {
                field: other.to_owned(),
                line: e.line,
            }),
        }
    }
    out
}

/// `schema` is the path with `[]` for list items, `shown` the same with the indexes.
fn walk(node: &Node, schema: &str, shown: &str, known: &HashSet<&str>, out: &mut Vec<Unknown>) {
    match node {
        Node::Map(entries) => {
            if known.contains(format!("{schema}.*").as_str()) {
                return;
            }
            for e in entries {
                let path = format!("{schema}.{}", e.key);
                let field = format!("{shown}.{}", e.key);
                if known.contains(path.as_str()) {
                    walk(&e.value.value, &path, &field, known, out);
                } else {
                    out.push(Unknown {
                        field,
                        line: e.line,
                    });
                }
            }
        }
        Node::Seq(items) => {
            for (i, item) in items.iter().enumerate() {
                walk(
                    &item.value,
                    &format!("{schema}[]"),
                    &format!("{shown}[{i}]"),
                    known,
                    out,
                );
            }
        }
        Node::Scalar => {}
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;
    use std::path::PathBuf;

    use serde_json::Value;

    use super::*;

    fn unknown(kind: Kind, yaml: &str) -> Vec<(String, u64)> {
        let root = Node::parse(yaml).unwrap();
        unknown_fields(kind, &root)
            .into_iter()
            .map(|u| (u.field, u.line))
            .collect()
    }

    #[test]
    fn typos_are_found_with_their_lines_and_valid_fields_are_not() {
        let yaml = "\
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata:
  name: r
  nmespace: x
  annotations: {a: b}
  managedFields: [{manager: kubectl, fieldsV1: {f:spec: {}}}]
spec:
  parentRefs: [{name: gw, sectionName: http}]
  useDefaultGateways: All
  rules:
  - matches:
    - path: {type: PathPrefix, value: /}
      headerz: []
    filterz: []
    sessionPersistence: {sessionName: s, type: Cookie}
  - backendRefs:
    - name: svc
      port: 80
      wieght: 3
status:
  parents: [{whatever: 1}]
extra: 1
";
        assert_eq!(
            unknown(Kind::HttpRoute, yaml),
            [
                ("metadata.nmespace".to_owned(), 5),
                ("spec.rules[0].matches[0].headerz".to_owned(), 14),
                ("spec.rules[0].filterz".to_owned(), 15),
                ("spec.rules[1].backendRefs[0].wieght".to_owned(), 20),
                ("extra".to_owned(), 23),
            ]
        );
    }

    #[test]
    fn maps_take_any_key_and_other_kinds_are_not_checked() {
        let gw = "\
spec:
  gatewayClassName: loom
  infrastructure: {labels: {anything: goes}, annotations: {example.com/x: y}}
  listeners:
  - {name: tls, port: 443, protocol: TLS, tls: {mode: Terminate, options: {example.com/o: v}}}
";
        assert_eq!(unknown(Kind::Gateway, gw), []);
        assert_eq!(unknown(Kind::Service, "spec: {whatever: 1}\n"), []);
    }

    #[test]
    fn lines_of_fields_and_list_items() {
        let yaml = "\
metadata: {name: r}
spec:
  parentRefs:
  - name: a
  - name: b
    namespace: x
  rules: [{backendRefs: [{name: s}]}]
";
        let root = Node::parse(yaml).unwrap();
        assert_eq!(root.line_of("spec.parentRefs[1]"), Some(5));
        assert_eq!(root.line_of("spec.parentRefs[1].namespace"), Some(6));
        assert_eq!(root.line_of("spec.rules[0].backendRefs[0].name"), Some(7));
        assert_eq!(root.line_of("spec.parentRefs[2]"), None);
        assert_eq!(root.line_of("spec.hostnames"), None);
    }

    /// The upstream CRDs, where the Go module cache of the conformance suite has them.
    fn crd_dir() -> Option<PathBuf> {
        let cache = std::env::var_os("GOMODCACHE")
            .map(PathBuf::from)
            .unwrap_or_else(|| "/var/cache/loom/go/mod".into());
        let dir = cache.join("sigs.k8s.io/gateway-api@v1.6.1/config/crd");
        dir.is_dir().then_some(dir)
    }

    /// Every field path of a CRD's schemas, every version together.
    fn paths_of(schema: &Value, path: &str, out: &mut BTreeSet<String>) {
        if schema.get("x-kubernetes-preserve-unknown-fields") == Some(&Value::Bool(true))
            || schema.get("additionalProperties").is_some()
        {
            out.insert(format!("{path}.*"));
        }
        if let Some(props) = schema.get("properties").and_then(Value::as_object) {
            for (k, v) in props {
                let p = format!("{path}.{k}");
                out.insert(p.clone());
                paths_of(v, &p, out);
            }
        }
        for alternatives in ["allOf", "anyOf", "oneOf"] {
            for s in schema
                .get(alternatives)
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
            {
                paths_of(s, path, out);
            }
        }
        if let Some(items) = schema.get("items") {
            paths_of(items, &format!("{path}[]"), out);
        }
    }

    fn generate(dir: &std::path::Path) -> String {
        let mut by_kind: std::collections::BTreeMap<String, BTreeSet<String>> = Default::default();
        for channel in ["standard", "experimental"] {
            let mut files: Vec<_> = std::fs::read_dir(dir.join(channel))
                .unwrap()
                .map(|e| e.unwrap().path())
                .filter(|p| {
                    p.file_name()
                        .and_then(|n| n.to_str())
                        .is_some_and(|n| n.starts_with("gateway.networking.k8s.io_"))
                })
                .collect();
            files.sort();
            for f in files {
                let text = std::fs::read_to_string(&f).unwrap();
                for doc in super::super::split_documents(&text) {
                    let crd: Value =
                        serde_saphyr::from_str_with_options(doc.text, super::super::yaml_options())
                            .unwrap();
                    if crd["kind"] != "CustomResourceDefinition" {
                        continue;
                    }
                    let kind = crd["spec"]["names"]["kind"].as_str().unwrap().to_owned();
                    if !Kind::ALL.iter().any(|k| k.as_str() == kind) {
                        continue;
                    }
                    let out = by_kind.entry(kind).or_default();
                    for v in crd["spec"]["versions"].as_array().unwrap() {
                        let spec = &v["schema"]["openAPIV3Schema"]["properties"]["spec"];
                        out.insert("spec".into());
                        paths_of(spec, "spec", out);
                    }
                }
            }
        }
        let mut text = String::from(HEADER);
        for (kind, paths) in by_kind {
            for p in paths {
                text.push_str(&format!("{kind} {p}\n"));
            }
        }
        text
    }

    const HEADER: &str = "\
# Every field path under `spec` of the Gateway API kinds Loom reads, from the upstream CRDs of
# Gateway API v1.6.1 (standard and experimental channels, every served version). `[]` is a list
# item; `x.*` admits any key below `x`. `loom check` warns of keys outside these (load/fields.rs).
# Generated; to regenerate: LOOM_REGENERATE_FIELDS=1 cargo test -p loom-core gateway_api_fields
";

    #[test]
    fn gateway_api_fields_are_those_of_the_upstream_crds() {
        let Some(dir) = crd_dir() else {
            eprintln!(
                "skipped: the Gateway API CRDs are not in the Go module cache (set GOMODCACHE)"
            );
            return;
        };
        let generated = generate(&dir);
        let file =
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("src/load/gateway-api-fields.txt");
        if std::env::var_os("LOOM_REGENERATE_FIELDS").is_some() {
            std::fs::write(&file, &generated).unwrap();
            return;
        }
        assert!(
            FIELDS == generated,
            "{} is out of date: run LOOM_REGENERATE_FIELDS=1 cargo test -p loom-core gateway_api_fields",
            file.display()
        );
    }
}
