//! Field-by-field differences between two JSON documents (index,
//! manifest, config, a derivation's instruction).
//!
//! Objects are compared key by key, arrays item by item (a longer array
//! has items added at its end), and `KEY=VALUE` lists named by the caller
//! (the config's `Env`) as maps, so one changed variable is one change
//! whatever its position. Pure: values in, changes out.

use std::collections::BTreeMap;

use serde::Serialize;
use serde_json::Value;

/// One difference: the field's path and its value on each side (`None`
/// where the field is absent).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Change {
    /// The path, e.g. `config.Env[PATH]`, `history[2].created_by`,
    /// `config.Labels["org.example.x"]`.
    pub path: String,
    /// Its value in A.
    pub a: Option<Value>,
    /// Its value in B.
    pub b: Option<Value>,
}

/// The path of `key` under `parent`: `.key` for plain names, `["key"]`
/// otherwise.
pub fn child(parent: &str, key: &str) -> String {
    let plain = !key.is_empty()
        && key
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
    match (parent.is_empty(), plain) {
        (true, true) => key.to_owned(),
        (false, true) => format!("{parent}.{key}"),
        (_, false) => format!("{parent}[{}]", Value::String(key.to_owned())),
    }
}

/// Compares `a` and `b` below `path`, appending to `out`. Arrays at the
/// paths in `keyed` hold `KEY=VALUE` strings and are compared as maps
/// (reported as `path[KEY]`); if only their order differs, the whole list
/// is one change.
pub fn diff(a: &Value, b: &Value, path: &str, keyed: &[&str], out: &mut Vec<Change>) {
    if a == b {
        return;
    }
    match (a, b) {
        (Value::Object(ma), Value::Object(mb)) => {
            let keys: std::collections::BTreeSet<&String> = ma.keys().chain(mb.keys()).collect();
            for key in keys {
                let p = child(path, key);
                match (ma.get(key), mb.get(key)) {
                    (Some(x), Some(y)) => diff(x, y, &p, keyed, out),
                    (x, y) => out.push(Change {
                        path: p,
                        a: x.cloned(),
                        b: y.cloned(),
                    }),
                }
            }
        }
        (Value::Array(xa), Value::Array(xb)) if keyed.contains(&path) => {
            match (as_map(xa), as_map(xb)) {
                (Some(ma), Some(mb)) if ma == mb => out.push(Change {
                    path: format!("{path} (order)"),
                    a: Some(a.clone()),
                    b: Some(b.clone()),
                }),
                (Some(ma), Some(mb)) => {
                    let keys: std::collections::BTreeSet<&str> =
                        ma.keys().chain(mb.keys()).copied().collect();
                    for key in keys {
                        let (x, y) = (ma.get(key), mb.get(key));
                        if x != y {
                            out.push(Change {
                                path: format!("{path}[{key}]"),
                                a: x.map(|v| Value::String((*v).to_owned())),
                                b: y.map(|v| Value::String((*v).to_owned())),
                            });
                        }
                    }
                }
                _ => out.push(Change {
                    path: path.to_owned(),
                    a: Some(a.clone()),
                    b: Some(b.clone()),
                }),
            }
        }
        (Value::Array(xa), Value::Array(xb)) => {
            for i in 0..xa.len().max(xb.len()) {
                let p = format!("{path}[{i}]");
                match (xa.get(i), xb.get(i)) {
                    (Some(x), Some(y)) => diff(x, y, &p, keyed, out),
                    (x, y) => out.push(Change {
                        path: p,
                        a: x.cloned(),
                        b: y.cloned(),
                    }),
                }
            }
        }
        _ => out.push(Change {
            path: path.to_owned(),
            a: Some(a.clone()),
            b: Some(b.clone()),
        }),
    }
}

/// `["K=V", ...]` as a map, if every item is such a string (a later
/// duplicate wins, as in a process environment).
fn as_map(items: &[Value]) -> Option<BTreeMap<&str, &str>> {
    let mut out = BTreeMap::new();
    for item in items {
        let s = item.as_str()?;
        let (k, v) = s.split_once('=').unwrap_or((s, ""));
        out.insert(k, v);
    }
    Some(out)
}

/// Removes the field at `path` (object keys separated by `.`; `*` matches
/// every item of an array) from `value`, if present.
pub fn remove(value: &mut Value, path: &str) {
    let (head, rest) = match path.split_once('.') {
        Some((h, r)) => (h, Some(r)),
        None => (path, None),
    };
    match (value, rest) {
        (Value::Array(items), _) if head == "*" => {
            for item in items {
                match rest {
                    Some(r) => remove(item, r),
                    None => *item = Value::Null,
                }
            }
        }
        (Value::Object(map), None) => {
            map.remove(head);
        }
        (Value::Object(map), Some(r)) => {
            if let Some(v) = map.get_mut(head) {
                remove(v, r);
            }
        }
        _ => {}
    }
}

/// A value as one line for people: strings without quotes unless empty.
pub fn show(value: Option<&Value>) -> String {
    match value {
        None => "(absent)".to_owned(),
        Some(Value::String(s)) if !s.is_empty() && !s.contains(['\n', '"']) => s.clone(),
        Some(v) => v.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn changes(a: Value, b: Value) -> Vec<String> {
        let mut out = Vec::new();
        diff(&a, &b, "", &["config.Env"], &mut out);
        out.iter()
            .map(|c| {
                format!(
                    "{} {} -> {}",
                    c.path,
                    show(c.a.as_ref()),
                    show(c.b.as_ref())
                )
            })
            .collect()
    }

    #[test]
    fn env_is_compared_by_name_and_labels_by_key() {
        let a = json!({"config": {"Env": ["PATH=/bin", "A=1"], "Labels": {"org.x": "1"}}});
        let b = json!({"config": {"Env": ["A=2", "PATH=/bin", "B=3"], "Labels": {"org.x": "2"}}});
        assert_eq!(
            changes(a, b),
            [
                "config.Env[A] 1 -> 2",
                "config.Env[B] (absent) -> 3",
                "config.Labels[\"org.x\"] 1 -> 2"
            ]
        );
    }

    #[test]
    fn arrays_compare_by_position_and_order_only_is_one_change() {
        let a = json!({"history": [{"created_by": "x"}], "config": {"Env": ["A=1", "B=2"]}});
        let b = json!({"history": [{"created_by": "y"}, {"created_by": "z"}], "config": {"Env": ["B=2", "A=1"]}});
        assert_eq!(
            changes(a, b),
            [
                "config.Env (order) [\"A=1\",\"B=2\"] -> [\"B=2\",\"A=1\"]",
                "history[0].created_by x -> y",
                "history[1] (absent) -> {\"created_by\":\"z\"}"
            ]
        );
    }

    #[test]
    fn remove_drops_nested_fields_and_array_items_fields() {
        let mut v = json!({"created": "t", "history": [{"created": "t", "created_by": "x"}]});
        remove(&mut v, "created");
        remove(&mut v, "history.*.created");
        assert_eq!(v, json!({"history": [{"created_by": "x"}]}));
    }
}
