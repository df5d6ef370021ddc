//! Reading manifests from files and directories.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use loom_core::Input;
use loom_core::input::{Kind, ObjectKey};
use loom_core::load::{LoadError, Reloader, Source, line_of_field, split_documents};

use crate::reload::{FileSummary, Files};

pub(crate) struct Loaded {
    pub(crate) input: Input,
    pub(crate) errors: Vec<LoadError>,
    /// What each file held.
    pub(crate) files: Files,
    /// Where each object's document starts (the last one of a key, which is the one loaded).
    pub(crate) sources: HashMap<ObjectKey, Source>,
}

impl Loaded {
    /// Where each of these objects is, or one of its fields (`spec.parentRefs[0]`) when the
    /// file still has it; `None` for an object not from a file. Each file is read once.
    pub(crate) fn locate<'k>(
        &self,
        items: impl IntoIterator<Item = (&'k ObjectKey, Option<&'k str>)>,
    ) -> Vec<Option<Source>> {
        let mut texts: HashMap<&str, Option<String>> = HashMap::new();
        items
            .into_iter()
            .map(|(key, field)| {
                let source = self.sources.get(key)?;
                let line = field
                    .and_then(|field| {
                        let text = texts
                            .entry(&source.file)
                            .or_insert_with(|| std::fs::read_to_string(&source.file).ok())
                            .as_deref()?;
                        let doc = split_documents(text)
                            .into_iter()
                            .find(|d| d.first_line == source.line)?;
                        line_of_field(&doc, field)
                    })
                    .unwrap_or(source.line);
                Some(Source {
                    file: source.file.clone(),
                    line,
                })
            })
            .collect()
    }
}

/// Loads every `.yaml`/`.yml` file under the paths (directories recursively, sorted).
pub(crate) fn load_paths(paths: &[PathBuf]) -> Result<Loaded> {
    load_paths_again(paths, &mut Reloader::default())
}

/// [`load_paths`] for a process that loads the same paths again and again: `reloader` keeps
/// the documents of the last load, so unchanged ones are not parsed again.
pub(crate) fn load_paths_again(paths: &[PathBuf], reloader: &mut Reloader) -> Result<Loaded> {
    let mut files = vec![];
    for p in paths {
        collect(p, &mut files)?;
    }
    let mut objects = vec![];
    let mut errors = vec![];
    let mut summaries = Files::new();
    let mut sources = HashMap::new();
    for f in files {
        let text =
            std::fs::read_to_string(&f).with_context(|| format!("reading {}", f.display()))?;
        let l = reloader.load_str(&f.display().to_string(), &text);
        errors.extend(l.errors);
        let summary = FileSummary {
            objects: l.objects.len(),
            gateways: l
                .objects
                .iter()
                .filter(|(_, o)| o.kind() == Kind::Gateway)
                .count(),
        };
        summaries.insert(f, summary);
        for (source, o) in l.objects {
            sources.insert(o.key(), source);
            objects.push(o);
        }
    }
    reloader.finish();
    let loaded = Loaded {
        input: Input::from_objects(objects),
        errors,
        files: summaries,
        sources,
    };
    Ok(loaded)
}

pub(crate) fn collect(p: &Path, out: &mut Vec<PathBuf>) -> Result<()> {
    let meta = std::fs::metadata(p).with_context(|| format!("reading {}", p.display()))?;
    if meta.is_dir() {
        let mut entries: Vec<_> = std::fs::read_dir(p)?.collect::<Result<_, _>>()?;
        entries.sort_by_key(|e| e.path());
        for e in entries {
            let path = e.path();
            if path.is_dir()
                || matches!(
                    path.extension().and_then(|e| e.to_str()),
                    Some("yaml" | "yml")
                )
            {
                collect(&path, out)?;
            }
        }
    } else {
        out.push(p.to_owned());
    }
    Ok(())
}
