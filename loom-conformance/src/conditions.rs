//! Status conditions as the corpus compares them (SCHEMA.md 0): subset matches, `status: any`,
//! omitted reasons, and observedGeneration currency.

use std::fmt;

use serde_json::Value;

use crate::case::Condition;

impl fmt::Display for Condition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}={}", self.type_, self.status)?;
        if let Some(r) = &self.reason {
            write!(f, "/{r}")?;
        }
        Ok(())
    }
}

/// Whether a list of actual conditions has one that matches `expected`: same type, same status
/// (or `any`), same reason (or none expected).
pub(crate) fn has_condition(actual: &Value, expected: &Condition) -> bool {
    actual.as_array().is_some_and(|list| {
        list.iter().any(|c| {
            c["type"] == expected.type_.as_str()
                && (expected.status == "any" || c["status"] == expected.status.as_str())
                && expected
                    .reason
                    .as_ref()
                    .is_none_or(|r| c["reason"] == r.as_str())
        })
    })
}

/// Every expected condition is in the actual list (extra actual conditions are fine).
pub(crate) fn has_all(actual: &Value, expected: &[Condition]) -> Result<(), String> {
    match expected.iter().find(|e| !has_condition(actual, e)) {
        Some(e) => Err(format!("missing condition {e} in {actual}")),
        None => Ok(()),
    }
}

/// Every condition of the list has `observedGeneration == generation`; a missing list is not
/// current, an empty one is.
pub(crate) fn current(conditions: &Value, generation: i64) -> bool {
    conditions.as_array().is_some_and(|l| {
        l.iter()
            .all(|c| c["observedGeneration"].as_i64() == Some(generation))
    })
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn actual() -> Value {
        json!([
            {"type": "Accepted", "status": "True", "reason": "Accepted", "observedGeneration": 2},
            {"type": "ResolvedRefs", "status": "False", "reason": "BackendNotFound",
             "observedGeneration": 2},
        ])
    }

    fn cond(type_: &str, status: &str, reason: Option<&str>) -> Condition {
        Condition {
            type_: type_.into(),
            status: status.into(),
            reason: reason.map(Into::into),
        }
    }

    #[test]
    fn a_condition_matches_on_type_status_and_reason() {
        assert!(has_condition(
            &actual(),
            &cond("Accepted", "True", Some("Accepted"))
        ));
    }

    #[test]
    fn an_omitted_reason_matches_any_reason() {
        assert!(has_condition(
            &actual(),
            &cond("ResolvedRefs", "False", None)
        ));
    }

    #[test]
    fn a_different_reason_does_not_match() {
        assert!(!has_condition(
            &actual(),
            &cond("ResolvedRefs", "False", Some("RefNotPermitted"))
        ));
    }

    #[test]
    fn a_different_status_does_not_match() {
        assert!(!has_condition(&actual(), &cond("Accepted", "False", None)));
    }

    #[test]
    fn status_any_matches_either_status() {
        assert!(has_condition(&actual(), &cond("Accepted", "any", None)));
        assert!(has_condition(&actual(), &cond("ResolvedRefs", "any", None)));
    }

    #[test]
    fn a_missing_type_does_not_match() {
        assert!(!has_condition(&actual(), &cond("Programmed", "any", None)));
    }

    #[test]
    fn no_conditions_match_nothing() {
        assert!(!has_condition(&Value::Null, &cond("Accepted", "any", None)));
    }

    #[test]
    fn has_all_is_a_subset_match() {
        assert!(has_all(&actual(), &[cond("Accepted", "True", None)]).is_ok());
        assert!(has_all(&actual(), &[]).is_ok());
        let err = has_all(
            &actual(),
            &[
                cond("Accepted", "True", None),
                cond("Programmed", "True", None),
            ],
        )
        .unwrap_err();
        assert!(
            err.starts_with("missing condition Programmed=True"),
            "{err}"
        );
    }

    #[test]
    fn conditions_are_current_when_every_one_observed_the_generation() {
        assert!(current(&actual(), 2));
        assert!(!current(&actual(), 3));
    }

    #[test]
    fn one_stale_condition_makes_the_list_stale() {
        let mut a = actual();
        a[1]["observedGeneration"] = json!(1);
        assert!(!current(&a, 2));
    }

    #[test]
    fn no_conditions_are_not_current_but_an_empty_list_is() {
        assert!(!current(&Value::Null, 1));
        assert!(current(&json!([]), 1));
    }

    #[test]
    fn a_condition_displays_as_type_status_reason() {
        assert_eq!(
            cond("Accepted", "True", Some("Accepted")).to_string(),
            "Accepted=True/Accepted"
        );
        assert_eq!(cond("Accepted", "any", None).to_string(), "Accepted=any");
    }
}
