//! An ordered document tree: manifests keep Kubernetes' customary key order
//! (`apiVersion`, `kind`, `metadata`, `spec`) and the dashboard keeps Grafana's,
//! whichever serializer writes them (YAML or JSON).

use serde::ser::{Serialize, SerializeMap, SerializeSeq, Serializer};

/// A JSON/YAML value whose maps keep insertion order.
#[derive(Debug, Clone, PartialEq)]
pub enum Doc {
    Null,
    Bool(bool),
    Int(i64),
    /// Written as `null` when not finite (JSON has no NaN).
    Float(f64),
    Str(String),
    List(Vec<Doc>),
    Map(Vec<(String, Doc)>),
}

impl Doc {
    /// Renders as YAML (one document, no `---`).
    pub fn to_yaml(&self) -> String {
        serde_yaml_ng::to_string(self).expect("a Doc has string keys and plain scalars only")
    }

    /// Renders as pretty JSON with a final newline.
    pub fn to_json(&self) -> String {
        let mut text =
            serde_json::to_string_pretty(self).expect("a Doc has string keys and finite numbers");
        text.push('\n');
        text
    }

    /// Appends `key: value` to a map; does nothing to other values.
    pub fn push(&mut self, key: &str, value: impl Into<Doc>) {
        if let Doc::Map(entries) = self {
            entries.push((key.to_owned(), value.into()));
        }
    }
}

impl Serialize for Doc {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self {
            Doc::Null => serializer.serialize_none(),
            Doc::Bool(value) => serializer.serialize_bool(*value),
            Doc::Int(value) => serializer.serialize_i64(*value),
            Doc::Float(value) if value.is_finite() => {
                // Whole numbers as integers: `1000`, not `1000.0`.
                if value.fract() == 0.0 && value.abs() < 1e15 {
                    serializer.serialize_i64(*value as i64)
                } else {
                    serializer.serialize_f64(*value)
                }
            }
            Doc::Float(_) => serializer.serialize_none(),
            Doc::Str(value) => serializer.serialize_str(value),
            Doc::List(items) => {
                let mut seq = serializer.serialize_seq(Some(items.len()))?;
                for item in items {
                    seq.serialize_element(item)?;
                }
                seq.end()
            }
            Doc::Map(entries) => {
                let mut map = serializer.serialize_map(Some(entries.len()))?;
                for (key, value) in entries {
                    map.serialize_entry(key, value)?;
                }
                map.end()
            }
        }
    }
}

impl From<&str> for Doc {
    fn from(value: &str) -> Self {
        Doc::Str(value.to_owned())
    }
}

impl From<String> for Doc {
    fn from(value: String) -> Self {
        Doc::Str(value)
    }
}

impl From<&String> for Doc {
    fn from(value: &String) -> Self {
        Doc::Str(value.clone())
    }
}

impl From<bool> for Doc {
    fn from(value: bool) -> Self {
        Doc::Bool(value)
    }
}

impl From<i64> for Doc {
    fn from(value: i64) -> Self {
        Doc::Int(value)
    }
}

impl From<u32> for Doc {
    fn from(value: u32) -> Self {
        Doc::Int(i64::from(value))
    }
}

impl From<u16> for Doc {
    fn from(value: u16) -> Self {
        Doc::Int(i64::from(value))
    }
}

impl From<u64> for Doc {
    fn from(value: u64) -> Self {
        i64::try_from(value).map_or(Doc::Float(value as f64), Doc::Int)
    }
}

impl From<i32> for Doc {
    fn from(value: i32) -> Self {
        Doc::Int(i64::from(value))
    }
}

impl From<f64> for Doc {
    fn from(value: f64) -> Self {
        Doc::Float(value)
    }
}

impl From<Vec<Doc>> for Doc {
    fn from(items: Vec<Doc>) -> Self {
        Doc::List(items)
    }
}

impl<T: Into<Doc>> From<Option<T>> for Doc {
    fn from(value: Option<T>) -> Self {
        value.map_or(Doc::Null, Into::into)
    }
}

/// An ordered map: `obj! { "key": value, ... }` (values are anything `Into<Doc>`).
macro_rules! obj {
    ($($key:literal : $value:expr),* $(,)?) => {
        $crate::export::doc::Doc::Map(vec![
            $(($key.to_owned(), $crate::export::doc::Doc::from($value)),)*
        ])
    };
}

/// A list: `list![a, b, ...]` (items are anything `Into<Doc>`).
macro_rules! list {
    ($($item:expr),* $(,)?) => {
        $crate::export::doc::Doc::List(vec![$($crate::export::doc::Doc::from($item),)*])
    };
}

pub(crate) use {list, obj};

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn maps_keep_insertion_order_in_both_formats() {
        let doc = obj! {
            "kind": "Service",
            "apiVersion": "v1",
            "threshold": "1000",
            "flag": "false",
            "count": 3u32,
            "ratio": 0.5,
            "whole": 8000.0,
            "items": list!["a", obj! { "z": 1u32, "a": Doc::Null }],
        };
        assert_eq!(
            doc.to_yaml(),
            "kind: Service\napiVersion: v1\nthreshold: '1000'\nflag: 'false'\ncount: 3\n\
             ratio: 0.5\nwhole: 8000\nitems:\n- a\n- z: 1\n  a: null\n"
        );
        let json = doc.to_json();
        assert!(
            json.find("\"kind\"") < json.find("\"apiVersion\""),
            "{json}"
        );
        assert!(json.contains("\"whole\": 8000,"), "{json}");
        assert!(json.ends_with("}\n"));
    }

    #[test]
    fn non_finite_numbers_become_null() {
        assert_eq!(
            list![f64::NAN, f64::INFINITY].to_json(),
            "[\n  null,\n  null\n]\n"
        );
    }
}
