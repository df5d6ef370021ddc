//! From the status loom-core computes to the `status` Loom writes: transition times,
//! other controllers' entries, and whether a write is needed at all.
//!
//! Pure functions: the current status comes in as JSON, the clock as a string.

use loom_core::status::ObjectStatus;
use serde_json::{Map, Value};

/// The full `status` to write, or `None` when the current one already says it.
///
/// - `lastTransitionTime` is kept from the current condition of the same type when its
///   `status` did not change ("the last time the condition transitioned from one status
///   to another"), else `now`.
/// - `status.parents` (routes) and `status.ancestors` (policies) are atomic lists shared
///   by every controller: entries whose `controllerName` is not `controller` are kept.
/// - `desired = None` removes Loom's own entries (a route that no longer names a parent
///   of Loom's); for other kinds it writes nothing.
pub fn next_status(
    desired: Option<&ObjectStatus>,
    current: Option<&Value>,
    controller: &str,
    now: &str,
) -> Option<Value> {
    let empty = Map::new();
    let current_map = current.and_then(Value::as_object).unwrap_or(&empty);
    let mut next = match desired {
        Some(d) => serde_json::to_value(d).ok()?,
        None => {
            // Only shared lists can hold entries Loom has to take back.
            let list = ["parents", "ancestors"]
                .into_iter()
                .find(|l| current_map.contains_key(*l))?;
            let mut m = Map::new();
            m.insert(list.into(), Value::Array(vec![]));
            Value::Object(m)
        }
    };
    let next_map = next.as_object_mut()?;
    stamp(next_map, current_map, now);
    for (list, reference) in [
        ("listeners", "name"),
        ("parents", "parentRef"),
        ("ancestors", "ancestorRef"),
    ] {
        // Listener entries are matched by name, route parents and policy ancestors by their
        // reference (and controller).
        let (Some(Value::Array(new)), old) = (next_map.get_mut(list), current_map.get(list)) else {
            continue;
        };
        let old = old.and_then(Value::as_array).map_or(&[][..], Vec::as_slice);
        for entry in new.iter_mut().filter_map(Value::as_object_mut) {
            let previous = old
                .iter()
                .filter_map(Value::as_object)
                .find(|o| o.get(reference) == entry.get(reference) && same_owner(o, entry));
            stamp(entry, previous.unwrap_or(&empty), now);
        }
    }
    for list in ["parents", "ancestors"] {
        if let Some(Value::Array(new)) = next_map.get_mut(list)
            && let Some(Value::Array(old)) = current_map.get(list)
        {
            new.extend(
                old.iter()
                    .filter(|o| o.get("controllerName").and_then(Value::as_str) != Some(controller))
                    .cloned(),
            );
        }
    }
    if desired.is_none()
        && next_map
            .values()
            .all(|v| v.as_array().is_some_and(Vec::is_empty))
    {
        // Nothing of Loom's to remove.
        let ours = ["parents", "ancestors"].into_iter().any(|l| {
            current_map
                .get(l)
                .and_then(Value::as_array)
                .is_some_and(|a| {
                    a.iter().any(|o| {
                        o.get("controllerName").and_then(Value::as_str) == Some(controller)
                    })
                })
        });
        if !ours {
            return None;
        }
    }
    (current != Some(&next)).then_some(next)
}

fn same_owner(a: &Map<String, Value>, b: &Map<String, Value>) -> bool {
    a.get("controllerName") == b.get("controllerName")
}

/// Sets `lastTransitionTime` on every condition in `new["conditions"]`.
fn stamp(new: &mut Map<String, Value>, old: &Map<String, Value>, now: &str) {
    let Some(Value::Array(conditions)) = new.get_mut("conditions") else {
        return;
    };
    let old = old
        .get("conditions")
        .and_then(Value::as_array)
        .map_or(&[][..], Vec::as_slice);
    for c in conditions.iter_mut().filter_map(Value::as_object_mut) {
        let kept = old
            .iter()
            .find(|o| o.get("type") == c.get("type") && o.get("status") == c.get("status"))
            .and_then(|o| o.get("lastTransitionTime"))
            .cloned();
        c.insert(
            "lastTransitionTime".into(),
            kept.unwrap_or_else(|| Value::String(now.into())),
        );
    }
}

#[cfg(test)]
mod tests {
    use loom_core::status::*;
    use serde_json::json;

    use super::*;

    const ME: &str = "loom.dev/gateway-controller";

    fn accepted(status: bool, generation: i64) -> Conditions {
        let reason = if status {
            Reason::Accepted
        } else {
            Reason::NotAllowedByListeners
        };
        Conditions(vec![Condition::new(
            ConditionType::Accepted,
            status,
            reason,
            "m",
            generation,
        )])
    }

    fn route(parent: &str, status: bool, generation: i64) -> ObjectStatus {
        ObjectStatus::Route(
            RouteStatus {
                parents: vec![RouteParentStatus {
                    parent_ref: serde_json::from_value(json!({"name": parent})).unwrap(),
                    controller_name: ME.into(),
                    conditions: accepted(status, generation),
                }],
            }
            .into(),
        )
    }

    fn times(v: &Value) -> Vec<String> {
        v["parents"]
            .as_array()
            .unwrap()
            .iter()
            .flat_map(|p| p["conditions"].as_array().unwrap().clone())
            .map(|c| c["lastTransitionTime"].as_str().unwrap().to_owned())
            .collect()
    }

    #[test]
    fn first_write_stamps_now_and_a_repeat_writes_nothing() {
        let d = route("gw", true, 1);
        let first = next_status(Some(&d), None, ME, "T1").unwrap();
        assert_eq!(times(&first), ["T1"]);
        assert_eq!(next_status(Some(&d), Some(&first), ME, "T2"), None);
    }

    #[test]
    fn transition_time_moves_only_when_the_status_flips() {
        let first = next_status(Some(&route("gw", true, 1)), None, ME, "T1").unwrap();
        // New generation, same status: observedGeneration changes, the time does not.
        let second = next_status(Some(&route("gw", true, 2)), Some(&first), ME, "T2").unwrap();
        assert_eq!(times(&second), ["T1"]);
        assert_eq!(
            second["parents"][0]["conditions"][0]["observedGeneration"],
            2
        );
        let third = next_status(Some(&route("gw", false, 3)), Some(&second), ME, "T3").unwrap();
        assert_eq!(times(&third), ["T3"]);
    }

    #[test]
    fn other_controllers_parents_are_kept_and_ours_can_be_removed() {
        let theirs = json!({"parentRef": {"name": "other"}, "controllerName": "example.com/x",
            "conditions": [{"type": "Accepted", "status": "True", "reason": "Accepted",
                "message": "", "observedGeneration": 1, "lastTransitionTime": "T0"}]});
        let current = json!({"parents": [theirs.clone()]});
        let next = next_status(Some(&route("gw", true, 1)), Some(&current), ME, "T1").unwrap();
        assert_eq!(next["parents"].as_array().unwrap().len(), 2);
        assert_eq!(next["parents"][1], theirs);
        // The route leaves Loom's Gateway: only the other entry stays.
        assert_eq!(
            next_status(None, Some(&next), ME, "T2"),
            Some(json!({"parents": [theirs]}))
        );
        // Nothing of Loom's left: no write.
        assert_eq!(next_status(None, Some(&current), ME, "T3"), None);
        assert_eq!(next_status(None, None, ME, "T3"), None);
    }

    #[test]
    fn listener_conditions_keep_their_times_by_listener_name() {
        let gw = |status| {
            ObjectStatus::Gateway(Box::new(GatewayStatus {
                listeners: vec![
                    ListenerStatus {
                        name: "a".into(),
                        conditions: accepted(true, 1),
                        ..Default::default()
                    },
                    ListenerStatus {
                        name: "b".into(),
                        conditions: accepted(status, 1),
                        ..Default::default()
                    },
                ],
                ..Default::default()
            }))
        };
        let first = next_status(Some(&gw(true)), None, ME, "T1").unwrap();
        let second = next_status(Some(&gw(false)), Some(&first), ME, "T2").unwrap();
        let t =
            |v: &Value, i: usize| v["listeners"][i]["conditions"][0]["lastTransitionTime"].clone();
        assert_eq!(t(&second, 0), "T1");
        assert_eq!(t(&second, 1), "T2");
    }
}
