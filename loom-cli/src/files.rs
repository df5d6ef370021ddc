//! Reading manifests from files and directories.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use loom_core::Input;
use loom_core::input::Kind;
use loom_core::load::{LoadError, load_str};

use crate::reload::{FileSummary, Files};

pub(crate) struct Loaded {
    pub(crate) input: Input,
    pub(crate) errors: Vec<LoadError>,
    /// What each file held.
    pub(crate) files: Files,
}

/// Loads every `.yaml`/`.yml` file under the paths (directories recursively, sorted).
pub(crate) fn load_paths(paths: &[PathBuf]) -> Result<Loaded> {
    let mut files = vec![];
    for p in paths {
        collect(p, &mut files)?;
    }
    let mut objects = vec![];
    let mut errors = vec![];
    let mut summaries = Files::new();
    for f in files {
        let text =
            std::fs::read_to_string(&f).with_context(|| format!("reading {}", f.display()))?;
        let l = load_str(&f.display().to_string(), &text);
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
        objects.extend(l.objects.into_iter().map(|(_, o)| o));
    }
    let loaded = Loaded {
        input: Input::from_objects(objects),
        errors,
        files: summaries,
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
