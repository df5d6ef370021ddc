//! When a change to the watched files may replace the configuration being served.
//!
//! Editors and shells write a file in steps (truncate, then write; or write a new file, then
//! rename it over the old one). Read at the wrong moment, a file is empty or cut short, and a
//! configuration built from it would close every listener. So:
//!
//! - a change is read only once the files have stopped changing (the watcher's job), and
//! - a configuration is refused, and the last good one keeps serving, when a file that held
//!   objects is now empty, or when it would remove every Gateway while some are served.
//!
//! The explicit signal to remove objects is deleting their files: a configuration whose only
//! Gateways were in files that no longer exist is accepted. `loom serve --allow-empty` accepts
//! any configuration that loads.

use std::collections::BTreeMap;
use std::path::PathBuf;

/// What a load found in one file.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct FileSummary {
    /// Objects loaded from the file (Gateway API and Loom kinds).
    pub(crate) objects: usize,
    /// Gateways among them.
    pub(crate) gateways: usize,
}

/// Every watched file and what it held.
pub(crate) type Files = BTreeMap<PathBuf, FileSummary>;

/// Why a configuration was refused.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Refused {
    /// A file that held objects has none now (truncated, or being written).
    EmptiedFile { path: PathBuf, before: usize },
    /// The configuration would remove every Gateway; these files held them and still exist.
    NoGateway { files: Vec<PathBuf> },
}

impl std::fmt::Display for Refused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Refused::EmptiedFile { path, before } => write!(
                f,
                "{} held {before} objects and is now empty (truncated, or half written?); \
                 delete the file to remove its objects, or start loom serve with --allow-empty",
                path.display()
            ),
            Refused::NoGateway { files } => {
                let names: Vec<String> = files.iter().map(|p| p.display().to_string()).collect();
                write!(
                    f,
                    "the new configuration has no Gateway, so every listener would close; {} \
                     still exist{} without one: delete the files whose Gateways should go, or \
                     start loom serve with --allow-empty",
                    names.join(", "),
                    if files.len() == 1 { "s" } else { "" }
                )
            }
        }
    }
}

/// Whether `next` may replace `served` (both from a successful load).
pub(crate) fn judge(served: &Files, next: &Files, allow_empty: bool) -> Result<(), Refused> {
    if allow_empty {
        return Ok(());
    }
    for (path, now) in next {
        if let Some(before) = served.get(path)
            && before.objects > 0
            && now.objects == 0
        {
            return Err(Refused::EmptiedFile {
                path: path.clone(),
                before: before.objects,
            });
        }
    }
    let gateways = |files: &Files| files.values().map(|f| f.gateways).sum::<usize>();
    if gateways(served) > 0 && gateways(next) == 0 {
        // The Gateways' files that still exist: deleting them is the signal.
        let kept: Vec<PathBuf> = served
            .iter()
            .filter(|(path, f)| f.gateways > 0 && next.contains_key(*path))
            .map(|(path, _)| path.clone())
            .collect();
        if !kept.is_empty() {
            return Err(Refused::NoGateway { files: kept });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn files(list: &[(&str, usize, usize)]) -> Files {
        list.iter()
            .map(|(p, objects, gateways)| {
                (
                    PathBuf::from(p),
                    FileSummary {
                        objects: *objects,
                        gateways: *gateways,
                    },
                )
            })
            .collect()
    }

    #[test]
    fn an_ordinary_change_is_accepted() {
        let served = files(&[("gw.yaml", 4, 1)]);
        assert_eq!(judge(&served, &files(&[("gw.yaml", 5, 1)]), false), Ok(()));
    }

    #[test]
    fn a_file_emptied_is_refused() {
        let served = files(&[("gw.yaml", 4, 1), ("routes.yaml", 3, 0)]);
        let next = files(&[("gw.yaml", 4, 1), ("routes.yaml", 0, 0)]);
        assert_eq!(
            judge(&served, &next, false),
            Err(Refused::EmptiedFile {
                path: "routes.yaml".into(),
                before: 3
            })
        );
    }

    #[test]
    fn a_file_that_was_always_empty_is_fine() {
        let served = files(&[("gw.yaml", 4, 1), ("empty.yaml", 0, 0)]);
        assert_eq!(judge(&served, &served.clone(), false), Ok(()));
    }

    #[test]
    fn removing_every_gateway_from_a_file_that_remains_is_refused() {
        let served = files(&[("gw.yaml", 4, 1)]);
        let next = files(&[("gw.yaml", 2, 0)]);
        assert_eq!(
            judge(&served, &next, false),
            Err(Refused::NoGateway {
                files: vec!["gw.yaml".into()]
            })
        );
    }

    #[test]
    fn deleting_the_files_of_every_gateway_is_the_signal_to_remove_them() {
        let served = files(&[("gw.yaml", 4, 1), ("other.yaml", 1, 0)]);
        assert_eq!(
            judge(&served, &files(&[("other.yaml", 1, 0)]), false),
            Ok(())
        );
        assert_eq!(judge(&served, &files(&[]), false), Ok(()));
    }

    #[test]
    fn moving_the_gateways_to_another_file_is_accepted() {
        let served = files(&[("a.yaml", 4, 1)]);
        let next = files(&[("a.yaml", 2, 0), ("b.yaml", 2, 1)]);
        assert_eq!(judge(&served, &next, false), Ok(()));
    }

    #[test]
    fn nothing_served_yet_accepts_anything() {
        assert_eq!(
            judge(&files(&[]), &files(&[("gw.yaml", 0, 0)]), false),
            Ok(())
        );
    }

    #[test]
    fn allow_empty_accepts_everything() {
        let served = files(&[("gw.yaml", 4, 1)]);
        assert_eq!(judge(&served, &files(&[("gw.yaml", 0, 0)]), true), Ok(()));
    }

    #[test]
    fn the_no_gateway_message_names_the_files_to_delete() {
        let e = Refused::NoGateway {
            files: vec!["/etc/loom/gw.yaml".into()],
        };
        assert!(
            e.to_string().contains("/etc/loom/gw.yaml still exists"),
            "{e}"
        );
    }
}
