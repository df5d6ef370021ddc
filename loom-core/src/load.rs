//! Loading a multi-document YAML stream (what `kubectl apply -f` takes) into objects.
//!
//! Every problem names the file, the line and, for type errors, the field path. A bad document
//! never stops the others from loading; unknown kinds are reported and skipped.

use std::collections::HashMap;
use std::fmt;
use std::hash::{BuildHasher, RandomState};

use serde::de::DeserializeOwned;

use crate::input::{Kind, Object};

/// Where a document or error is in its file.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Source {
    /// The file name as given by the caller.
    pub file: String,
    /// 1-based line.
    pub line: u64,
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.file, self.line)
    }
}

/// A problem found while loading.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum LoadError {
    /// The document is not valid YAML.
    #[error("{at}: invalid YAML: {message}")]
    Syntax {
        /// Where.
        at: Source,
        /// The parser's message.
        message: String,
    },
    /// The document has no `apiVersion` or `kind`.
    #[error("{at}: document has no apiVersion and kind")]
    MissingKind {
        /// Where.
        at: Source,
    },
    /// A kind Loom does not read (skipped; not fatal).
    #[error("{at}: {api_version} {kind} {name} is not a kind Loom reads; skipped")]
    UnknownKind {
        /// Where.
        at: Source,
        /// `apiVersion`.
        api_version: String,
        /// `kind`.
        kind: String,
        /// `metadata.name`.
        name: String,
    },
    /// A field has the wrong type or a required field is missing.
    #[error("{at}: {kind} {name}: field `{field}`: {message}")]
    InvalidField {
        /// Where (line and column of the offending value).
        at: Source,
        /// The object's kind.
        kind: Kind,
        /// `namespace/name` or `name`.
        name: String,
        /// Dotted field path (`spec.rules[0].matches[1].path.type`).
        field: String,
        /// What is wrong.
        message: String,
    },
    /// An object without a name.
    #[error("{at}: {kind} has no metadata.name")]
    MissingName {
        /// Where.
        at: Source,
        /// The kind.
        kind: Kind,
    },
    /// A key a Gateway API object's CRD schema does not have: a typo, or a field of another
    /// implementation's API. The API server rejects it (`kubectl apply --validate=strict`) or
    /// drops it; Loom ignores it (a warning).
    #[error("{at}: {kind} {name}: unknown field `{field}`")]
    UnknownField {
        /// Where (the key's line).
        at: Source,
        /// The object's kind.
        kind: Kind,
        /// `namespace/name` or `name`.
        name: String,
        /// Dotted field path (`spec.rules[0].filterz`).
        field: String,
    },
}

impl LoadError {
    /// Whether the problem does not stop the configuration from loading: a skipped kind Loom
    /// does not read, or an unknown field Loom ignores.
    pub fn is_warning(&self) -> bool {
        matches!(
            self,
            LoadError::UnknownKind { .. } | LoadError::UnknownField { .. }
        )
    }
}

/// One YAML document of a stream.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Document<'a> {
    /// Where the document's first line is.
    pub first_line: u64,
    /// Its text.
    pub text: &'a str,
}

/// The objects of a stream, each with where it came from, and every problem found.
#[derive(Clone, Debug, Default)]
pub struct Loaded {
    /// The objects, in file order.
    pub objects: Vec<(Source, Object)>,
    /// Problems, in file order.
    pub errors: Vec<LoadError>,
}

/// Splits a YAML stream at `---` and `...` document markers.
pub fn split_documents(text: &str) -> Vec<Document<'_>> {
    let mut docs = Vec::new();
    let mut start = 0usize;
    let mut start_line = 1u64;
    let mut offset = 0usize;
    for (i, line) in text.split_inclusive('\n').enumerate() {
        let trimmed = line.trim_end();
        let is_marker = trimmed == "---"
            || trimmed.starts_with("--- ")
            || trimmed == "..."
            || trimmed.starts_with("%");
        if is_marker {
            docs.push(Document {
                first_line: start_line,
                text: &text[start..offset],
            });
            // `--- value` keeps the content after the marker out; Kubernetes manifests do not
            // use it.
            start = offset + line.len();
            start_line = i as u64 + 2;
        }
        offset += line.len();
    }
    docs.push(Document {
        first_line: start_line,
        text: &text[start..],
    });
    docs.retain(|d| {
        d.text
            .lines()
            .any(|l| !l.trim().is_empty() && !l.trim_start().starts_with('#'))
    });
    docs
}

#[derive(serde::Deserialize, Default)]
#[serde(rename_all = "camelCase", default)]
struct TypeMeta {
    api_version: Option<String>,
    kind: Option<String>,
    metadata: Option<NameOnly>,
}

#[derive(serde::Deserialize, Default)]
#[serde(default)]
struct NameOnly {
    name: Option<String>,
    namespace: Option<String>,
}

/// Loads every document of a YAML stream. Besides errors, `errors` has a warning for every
/// unknown field of a Gateway API object ([`LoadError::UnknownField`]).
pub fn load_str(file: &str, text: &str) -> Loaded {
    Reloader::default().load_str(file, text)
}

/// Loads streams as [`load_str`] does, again and again, reusing the object of every document
/// whose text it loaded the time before (without errors or warnings): a reload that changes
/// one object of a large file parses one document, and the object it gives for an unchanged
/// document is the one it gave before (the same `Arc`, shared with the input it went into).
/// The documents of the previous load are forgotten at [`Reloader::finish`].
#[derive(Debug, Default)]
pub struct Reloader {
    keys: (RandomState, RandomState),
    previous: HashMap<TextId, Object>,
    current: HashMap<TextId, Object>,
}

/// A document's text as a [`Reloader`] remembers it: its length and two 64-bit SipHashes
/// under random keys, not the text itself, which costs about as much memory as its object
/// (5,000 HTTPRoutes: 1.75 MB). Two different texts of one load share an id with a chance of
/// about n²/2¹²⁹.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
struct TextId(usize, u64, u64);

impl Reloader {
    /// Loads one stream, as [`load_str`].
    pub fn load_str(&mut self, file: &str, text: &str) -> Loaded {
        let mut loaded = Loaded::default();
        for doc in split_documents(text) {
            let source = Source {
                file: file.into(),
                line: doc.first_line,
            };
            let id = TextId(
                doc.text.len(),
                self.keys.0.hash_one(doc.text),
                self.keys.1.hash_one(doc.text),
            );
            // Seen in the last load: moved over; seen earlier in this one: kept.
            if let Some(obj) = self.previous.remove(&id) {
                loaded.objects.push((source, obj.clone()));
                self.current.insert(id, obj);
                continue;
            }
            if let Some(obj) = self.current.get(&id) {
                loaded.objects.push((source, obj.clone()));
                continue;
            }
            match load_document(file, &doc) {
                Ok(Some(obj)) => {
                    let unknown = unknown_fields(file, &doc, &obj);
                    if unknown.is_empty() {
                        self.current.insert(id, obj.clone());
                    }
                    loaded.errors.extend(unknown);
                    loaded.objects.push((source, obj));
                }
                Ok(None) => {}
                Err(e) => loaded.errors.push(e),
            }
        }
        loaded
    }

    /// Ends a load: only the documents seen in it are kept for the next.
    pub fn finish(&mut self) {
        self.previous = std::mem::take(&mut self.current);
    }
}

/// The keys of a loaded Gateway API object's document that are not in its upstream schema.
pub fn unknown_fields(file: &str, doc: &Document<'_>, object: &Object) -> Vec<LoadError> {
    let kind = object.kind();
    if kind.group() != crate::input::GATEWAY_GROUP {
        return vec![];
    }
    let Some(root) = fields::Node::parse(doc.text) else {
        return vec![];
    };
    let m = object.metadata();
    let name = match &m.namespace {
        Some(ns) => format!("{ns}/{}", m.name),
        None => m.name.clone(),
    };
    fields::unknown_fields(kind, &root)
        .into_iter()
        .map(|u| LoadError::UnknownField {
            at: Source {
                file: file.into(),
                line: doc.first_line + u.line.saturating_sub(1),
            },
            kind,
            name: name.clone(),
            field: u.field,
        })
        .collect()
}

/// The line in its file of a field of a document, given as a dotted path with list indexes
/// (`spec.parentRefs[1]`): the line of its key, or of the list item for a path that ends in an
/// index. `None` when the document has no such field.
pub fn line_of_field(doc: &Document<'_>, field: &str) -> Option<u64> {
    let line = fields::Node::parse(doc.text)?.line_of(field)?;
    Some(doc.first_line + line.saturating_sub(1))
}

/// Loads one document; `Ok(None)` for a `List` or an empty document.
pub fn load_document(file: &str, doc: &Document<'_>) -> Result<Option<Object>, LoadError> {
    let at = |line: u64| Source {
        file: file.into(),
        line: doc.first_line + line.saturating_sub(1),
    };
    if doc.text.len() > MAX_DOCUMENT_BYTES {
        return Err(LoadError::Syntax {
            at: at(1),
            message: format!(
                "the document is {} bytes, more than Loom reads ({MAX_DOCUMENT_BYTES} bytes; \
                 Kubernetes stores at most about 1.5 MiB in one object)",
                doc.text.len()
            ),
        });
    }
    let meta: TypeMeta =
        serde_saphyr::from_str_with_options(doc.text, yaml_options()).map_err(|e| {
            LoadError::Syntax {
                at: at(e.location().map_or(1, |l| l.line())),
                message: yaml_message(&e),
            }
        })?;
    let (Some(api_version), Some(kind_name)) = (meta.api_version, meta.kind) else {
        return Err(LoadError::MissingKind { at: at(1) });
    };
    let names = meta.metadata.unwrap_or_default();
    let display_name = match (&names.namespace, &names.name) {
        (Some(ns), Some(n)) => format!("{ns}/{n}"),
        (None, Some(n)) => n.clone(),
        _ => String::new(),
    };
    let Some(kind) = Kind::from_api(&api_version, &kind_name) else {
        return Err(LoadError::UnknownKind {
            at: at(1),
            api_version,
            kind: kind_name,
            name: display_name,
        });
    };
    if names.name.as_deref().unwrap_or("").is_empty() {
        return Err(LoadError::MissingName { at: at(1), kind });
    }
    let parse = |doc: &Document<'_>| -> Result<Object, LoadError> {
        // serde-saphyr's error is large; it lives only until it becomes a `LoadError`.
        #[allow(clippy::result_large_err)]
        fn typed<T: DeserializeOwned>(text: &str) -> Result<T, (String, serde_saphyr::Error)> {
            let mut path = None;
            serde_saphyr::with_deserializer_from_str_with_options(text, yaml_options(), |de| {
                serde_path_to_error::deserialize::<_, T>(de).map_err(|e| {
                    path = Some(e.path().to_string());
                    e.into_inner()
                })
            })
            .map_err(|e| (path.unwrap_or_default(), e))
        }
        macro_rules! parse_as {
            ($($k:ident => $f:ident),*) => {
                match kind {
                    $(Kind::$k => typed(doc.text).map(|o| Object::$k(kept(o))),)*
                }
            };
        }
        crate::input::with_kinds!(parse_as).map_err(|(field, e)| LoadError::InvalidField {
            at: at(e.location().map_or(1, |l| l.line())),
            kind,
            name: display_name.clone(),
            field: if field == "." { String::new() } else { field },
            message: yaml_message(&e),
        })
    };
    let object = parse(doc)?;
    if let Some(over) = limits::first_over_limit(&object) {
        return Err(LoadError::InvalidField {
            at: at(line_of(doc.text, &over.field)),
            kind,
            name: display_name,
            field: over.field,
            message: over.message,
        });
    }
    Ok(Some(object))
}

/// The line (1-based, in the document) of the key that ends the dotted `field`, or 1.
fn line_of(text: &str, field: &str) -> u64 {
    let key = field.rsplit('.').next().unwrap_or(field);
    let key = key.split('[').next().unwrap_or(key);
    text.lines()
        .position(|l| {
            let l = l.trim_start().trim_start_matches("- ");
            l.starts_with(&format!("{key}:"))
        })
        .map_or(1, |i| i as u64 + 1)
}

/// What is kept of a parsed object: a copy. The parser's lists and strings have spare
/// capacity (a list of one grows to four), a clone's are exact (5,000 HTTPRoutes: 13 MB
/// parsed, 3.6 MB cloned).
fn kept<T: Clone>(parsed: T) -> std::sync::Arc<T> {
    std::sync::Arc::new(parsed.clone())
}

/// Builds a typed object from a JSON value of a known kind (the Kubernetes adapter and the
/// conformance runner hold objects as JSON).
pub fn from_value(kind: Kind, value: serde_json::Value) -> Result<Object, String> {
    macro_rules! parse_as {
        ($($k:ident => $f:ident),*) => {
            match kind {
                $(Kind::$k => serde_path_to_error::deserialize(value).map(|o| Object::$k(kept(o))),)*
            }
        };
    }
    crate::input::with_kinds!(parse_as)
        .map_err(|e| format!("{kind}: field `{}`: {}", e.path(), e.inner()))
}

/// The largest YAML document Loom reads: twice what Kubernetes stores in one object.
pub const MAX_DOCUMENT_BYTES: usize = 3 * 1024 * 1024;

/// YAML limits sized for the largest object Kubernetes stores (about 1.5 MiB, which holds at
/// most some 750,000 of the smallest nodes), and still far below what a YAML bomb needs.
fn yaml_options() -> serde_saphyr::Options {
    let mut budget = serde_saphyr::Budget::default();
    budget.max_nodes = 2_000_000;
    budget.max_events = 6_000_000;
    let mut options = serde_saphyr::Options::default();
    options.budget = Some(budget);
    options
}

/// A parser error as one line, naming the limit when a YAML limit was hit, and cut when it
/// would echo a long value.
fn yaml_message(e: &serde_saphyr::Error) -> String {
    let message = match e {
        serde_saphyr::Error::Budget { breach, .. } => format!(
            "the document is beyond Loom's YAML limits ({breach:?}; at most 2,000,000 nodes, \
             6,000,000 parser events, 64 levels of nesting, {MAX_DOCUMENT_BYTES} bytes)"
        ),
        e => strip_location(&first_line(&e.to_string())),
    };
    crate::status::bounded(message)
}

fn first_line(s: &str) -> String {
    s.lines().next().unwrap_or("").trim().to_owned()
}

/// `error: line 6 column 13: invalid i32` → `invalid i32`.
fn strip_location(s: &str) -> String {
    let s = s.strip_prefix("error: ").unwrap_or(s);
    match s.strip_prefix("line ") {
        Some(rest) => rest.split_once(": ").map_or(s, |(_, m)| m).to_owned(),
        None => s.to_owned(),
    }
}

mod fields;
mod limits;

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn a_route_over_the_crd_limits_is_refused_with_the_api_servers_words() {
        let rules: String = (0..17)
            .map(|_| "  - backendRefs: [{name: s, port: 80}]\n")
            .collect();
        let text = format!(
            "apiVersion: gateway.networking.k8s.io/v1\nkind: HTTPRoute\nmetadata: {{name: r, namespace: n}}\nspec:\n  rules:\n{rules}"
        );
        let loaded = load_str("routes.yaml", &text);
        assert!(loaded.objects.is_empty());
        assert_eq!(
            loaded.errors[0].to_string(),
            "routes.yaml:5: HTTPRoute n/r: field `spec.rules`: Too many: 17: must have at most 16 items"
        );
    }

    #[test]
    fn a_large_valid_document_loads() {
        // 280,000 nodes (4 an endpoint), past serde-saphyr's default of 250,000.
        let endpoints: String = (0..70_000)
            .map(|i| format!("  - {{addresses: [10.0.{}.{}]}}\n", i / 256 % 256, i % 256))
            .collect();
        let text = format!(
            "apiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata: {{name: e, namespace: ns, labels: {{kubernetes.io/service-name: s}}}}\naddressType: IPv4\nendpoints:\n{endpoints}"
        );
        let loaded = load_str("big.yaml", &text);
        assert!(loaded.errors.is_empty(), "{:?}", loaded.errors.first());
        assert_eq!(loaded.objects.len(), 1);
    }

    #[test]
    fn a_document_past_the_size_limit_names_the_limit() {
        let text = format!(
            "apiVersion: v1\nkind: ConfigMap\nmetadata: {{name: c, namespace: ns}}\ndata: {{big: {}}}\n",
            "a".repeat(MAX_DOCUMENT_BYTES)
        );
        let loaded = load_str("big.yaml", &text);
        let e = loaded.errors[0].to_string();
        assert!(
            e.contains("more than Loom reads (3145728 bytes"),
            "{}",
            &e[..200.min(e.len())]
        );
        assert!(
            e.len() < 400,
            "the message echoes the document: {} bytes",
            e.len()
        );
    }

    #[test]
    fn a_long_bad_value_is_not_echoed_whole() {
        let text = format!(
            "apiVersion: gateway.networking.k8s.io/v1\nkind: HTTPRoute\nmetadata: {{name: r, namespace: ns}}\nspec:\n  rules:\n  - backendRefs: [{{name: s, port: \"{}\"}}]\n",
            "9".repeat(1_000_000)
        );
        let loaded = load_str("routes.yaml", &text);
        let e = loaded.errors[0].to_string();
        assert!(e.len() < 2048, "{} bytes", e.len());
    }

    #[test]
    fn splits_documents_with_line_numbers() {
        let docs = split_documents("a: 1\n---\n# only a comment\n---\nb: 2\nc: 3\n...\n");
        assert_eq!(docs.len(), 2);
        assert_eq!(docs[0].first_line, 1);
        assert_eq!(docs[1].first_line, 5);
        assert_eq!(docs[1].text, "b: 2\nc: 3\n");
    }

    #[test]
    fn errors_name_file_line_and_field() {
        let text = "apiVersion: v1\nkind: Namespace\nmetadata: {name: a}\n---\n\
            apiVersion: gateway.networking.k8s.io/v1\nkind: HTTPRoute\nmetadata:\n  name: r\n  namespace: n\n\
            spec:\n  rules:\n  - backendRefs:\n    - name: svc\n      port: eighty\n";
        let loaded = load_str("routes.yaml", text);
        assert_eq!(loaded.objects.len(), 1);
        let err = loaded.errors[0].to_string();
        assert!(
            err.starts_with(
                "routes.yaml:14: HTTPRoute n/r: field `spec.rules[0].backendRefs[0].port`"
            ),
            "{err}"
        );
    }

    #[test]
    fn unknown_kinds_are_warnings() {
        let loaded = load_str(
            "f.yaml",
            "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: d}\n",
        );
        assert!(loaded.objects.is_empty());
        assert!(loaded.errors[0].is_warning());
        assert_eq!(
            loaded.errors[0].to_string(),
            "f.yaml:1: apps/v1 Deployment d is not a kind Loom reads; skipped"
        );
    }

    #[test]
    fn unknown_fields_of_gateway_api_objects_are_warnings() {
        let text = "apiVersion: v1\nkind: Service\nmetadata: {name: s}\nspec: {ports: [{port: 80}], ipFamilyPolicy: SingleStack}\n---\n\
            apiVersion: gateway.networking.k8s.io/v1\nkind: HTTPRoute\nmetadata:\n  name: r\n  namespace: n\n\
            spec:\n  rules:\n  - backendRefs: [{name: s, port: 80}]\n    filterz: []\n";
        let loaded = load_str("routes.yaml", text);
        assert_eq!(loaded.objects.len(), 2);
        assert_eq!(loaded.errors.len(), 1, "{:?}", loaded.errors);
        assert!(loaded.errors[0].is_warning());
        assert_eq!(
            loaded.errors[0].to_string(),
            "routes.yaml:14: HTTPRoute n/r: unknown field `spec.rules[0].filterz`"
        );
    }

    #[test]
    fn fields_are_located_by_path() {
        let text = "apiVersion: v1\nkind: Namespace\nmetadata: {name: a}\n---\n\
            kind: HTTPRoute\nspec:\n  parentRefs:\n  - name: a\n  - {name: b}\n";
        let docs = split_documents(text);
        assert_eq!(line_of_field(&docs[1], "spec.parentRefs[1]"), Some(9));
        assert_eq!(line_of_field(&docs[1], "spec.parentRefs[2]"), None);
    }

    #[test]
    fn syntax_errors_are_located() {
        let loaded = load_str(
            "bad.yaml",
            "apiVersion: v1\nkind: Namespace\nmetadata: {name: [\n",
        );
        assert!(
            matches!(&loaded.errors[0], LoadError::Syntax { at, .. } if at.line >= 3),
            "{:?}",
            loaded.errors
        );
    }

    #[test]
    fn secrets_decode_base64_data() {
        let loaded = load_str(
            "s.yaml",
            "apiVersion: v1\nkind: Secret\nmetadata: {name: s}\ndata:\n  a: aGk=\nstringData:\n  b: yo\n",
        );
        let Object::Secret(s) = &loaded.objects[0].1 else {
            panic!()
        };
        assert_eq!(s.data["a"], b"hi");
        assert_eq!(s.data["b"], b"yo");
    }

    /// Two namespaces and a route with an unknown field, as one stream.
    const STREAM: &str = "apiVersion: v1\nkind: Namespace\nmetadata: {name: a}\n---\n\
        apiVersion: v1\nkind: Namespace\nmetadata: {name: b}\n---\n\
        apiVersion: gateway.networking.k8s.io/v1\nkind: HTTPRoute\nmetadata: {name: r, namespace: a}\n\
        spec:\n  rules:\n  - filterz: []\n";

    #[test]
    fn a_reloader_loads_what_load_str_loads_every_time() {
        let mut reloader = Reloader::default();
        for _ in 0..3 {
            let again = reloader.load_str("f.yaml", STREAM);
            reloader.finish();
            let once = load_str("f.yaml", STREAM);
            assert_eq!(again.objects, once.objects);
            // The route's unknown field is reported on every load, not only the first.
            assert_eq!(again.errors, once.errors);
            assert_eq!(again.errors.len(), 1, "{:?}", again.errors);
        }
    }

    #[test]
    fn a_loaded_object_keeps_no_spare_capacity_new_or_reused() {
        let doc = "apiVersion: gateway.networking.k8s.io/v1\nkind: HTTPRoute\n\
            metadata: {name: r, namespace: a}\nspec:\n  parentRefs: [{name: gw}]\n  \
            hostnames: [a.example.com]\n  rules:\n  - backendRefs: [{name: svc, port: 80}]\n";
        let mut reloader = Reloader::default();
        for load in 0..2 {
            let loaded = reloader.load_str("f.yaml", doc);
            reloader.finish();
            let Object::HttpRoute(r) = &loaded.objects[0].1 else {
                panic!("{loaded:?}")
            };
            // The parser's lists of one have room for four.
            let lists = [
                r.spec.parent_refs.capacity(),
                r.spec.hostnames.capacity(),
                r.spec.rules.capacity(),
                r.spec.rules[0].backend_refs.capacity(),
            ];
            assert_eq!(lists, [1; 4], "load {load}");
            assert_eq!(r.spec.hostnames[0].capacity(), "a.example.com".len());
        }
    }

    #[test]
    fn a_reloader_places_a_reused_document_where_it_is_now() {
        let mut reloader = Reloader::default();
        reloader.load_str("f.yaml", STREAM);
        reloader.finish();
        // The first namespace removed: the others move up four lines.
        let shorter = STREAM.split_once("---\n").unwrap().1;
        let loaded = reloader.load_str("g.yaml", shorter);
        assert_eq!(loaded.objects, load_str("g.yaml", shorter).objects);
        assert_eq!(loaded.objects[0].0.line, 1);
        assert_eq!(loaded.objects[0].0.file, "g.yaml");
        assert_eq!(
            loaded.errors[0].to_string(),
            load_str("g.yaml", shorter).errors[0].to_string()
        );
    }

    #[test]
    fn a_reloaded_unchanged_document_is_the_same_shared_object() {
        let mut reloader = Reloader::default();
        let first = reloader.load_str("f.yaml", STREAM);
        reloader.finish();
        let changed = STREAM.replace("{name: b}", "{name: c}");
        let again = reloader.load_str("f.yaml", &changed);
        let (Object::Namespace(was), Object::Namespace(now)) =
            (&first.objects[0].1, &again.objects[0].1)
        else {
            panic!("{again:?}")
        };
        assert!(Arc::ptr_eq(was, now), "namespace a is not copied");
        let (Object::Namespace(was), Object::Namespace(now)) =
            (&first.objects[1].1, &again.objects[1].1)
        else {
            panic!("{again:?}")
        };
        assert!(!Arc::ptr_eq(was, now), "namespace b became c");
    }

    #[test]
    fn a_reloader_parses_a_changed_document_again() {
        let mut reloader = Reloader::default();
        reloader.load_str("f.yaml", STREAM);
        reloader.finish();
        let changed = STREAM.replace("{name: b}", "{name: c}");
        let loaded = reloader.load_str("f.yaml", &changed);
        assert_eq!(loaded.objects[1].1.metadata().name, "c");
    }

    #[test]
    fn a_reloader_forgets_documents_a_load_did_not_see() {
        let mut reloader = Reloader::default();
        reloader.load_str("f.yaml", STREAM);
        reloader.finish();
        reloader.load_str(
            "f.yaml",
            "apiVersion: v1\nkind: Namespace\nmetadata: {name: z}\n",
        );
        reloader.finish();
        assert_eq!(reloader.previous.len(), 1);
    }
}
