//! Reading YAML files of one or more documents.

use std::path::Path;

use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::Error;

/// Reads a file.
pub(crate) fn read(path: &Path) -> Result<String, Error> {
    std::fs::read_to_string(path).map_err(|source| Error::Read {
        path: path.into(),
        source,
    })
}

/// The documents of a file that are objects (empty documents and comments are skipped).
pub(crate) fn read_objects(path: &Path) -> Result<Vec<Value>, Error> {
    let text = read(path)?;
    let mut out = vec![];
    for doc in loom_core::load::split_documents(&text) {
        let v: Value = parse(path, doc.first_line, doc.text)?;
        if v.is_object() {
            out.push(v);
        }
    }
    Ok(out)
}

/// One document as `T`; errors name the file and the document's first line.
pub(crate) fn parse<T: DeserializeOwned>(path: &Path, line: u64, text: &str) -> Result<T, Error> {
    serde_saphyr::from_str(text).map_err(|e| Error::Yaml {
        path: path.into(),
        line,
        message: e.to_string(),
    })
}
