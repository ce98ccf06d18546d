//! A YAML or JSON document as an ordered tree: SOPS computes its MAC over the values in the
//! order they are written, which `serde_json::Value` (sorted keys) does not keep.

use serde::de::{self, Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::Value;

/// One node of a document, keys in document order.
#[derive(Clone, PartialEq)]
pub enum Node {
    Null,
    Bool(bool),
    Int(i64),
    UInt(u64),
    Float(f64),
    Str(String),
    Seq(Vec<Node>),
    Map(Vec<(String, Node)>),
}

impl std::fmt::Debug for Node {
    /// The shape only: a tree may hold decrypted values, which are never printed.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Node::Seq(items) => write!(f, "Seq({})", items.len()),
            Node::Map(entries) => f
                .debug_list()
                .entries(entries.iter().map(|(k, _)| k))
                .finish(),
            _ => f.write_str("<scalar>"),
        }
    }
}

impl Node {
    /// The value of `key` in a mapping.
    pub fn get(&self, key: &str) -> Option<&Node> {
        match self {
            Node::Map(entries) => entries.iter().find(|(k, _)| k == key).map(|(_, v)| v),
            _ => None,
        }
    }

    pub fn as_str(&self) -> Option<&str> {
        match self {
            Node::Str(s) => Some(s),
            _ => None,
        }
    }

    /// Parses YAML as the rest of Headway reads it (YAML 1.1 scalars, duplicate keys refused).
    pub fn from_yaml(text: &str) -> Result<Node, String> {
        let mut options = serde_saphyr::Options::default();
        options.legacy_octal_numbers = true;
        options.duplicate_keys = serde_saphyr::DuplicateKeyPolicy::Error;
        options.with_snippet = false;
        serde_saphyr::from_str_with_options::<Node>(text, options).map_err(|e| {
            let m = e.without_snippet().to_string();
            m.lines().next().unwrap_or_default().to_string()
        })
    }

    /// Parses one JSON value.
    pub fn from_json(text: &str) -> Result<Node, String> {
        serde_json::from_str::<Node>(text).map_err(|e| e.to_string())
    }

    /// The tree as JSON.
    pub fn into_json(self) -> Value {
        match self {
            Node::Null => Value::Null,
            Node::Bool(b) => Value::Bool(b),
            Node::Int(i) => i.into(),
            Node::UInt(u) => u.into(),
            Node::Float(f) => serde_json::Number::from_f64(f).map_or(Value::Null, Value::Number),
            Node::Str(s) => Value::String(s),
            Node::Seq(items) => Value::Array(items.into_iter().map(Node::into_json).collect()),
            Node::Map(entries) => Value::Object(
                entries
                    .into_iter()
                    .map(|(k, v)| (k, v.into_json()))
                    .collect(),
            ),
        }
    }
}

impl<'de> Deserialize<'de> for Node {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(NodeVisitor)
    }
}

struct NodeVisitor;

impl<'de> Visitor<'de> for NodeVisitor {
    type Value = Node;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a YAML or JSON value")
    }
    fn visit_bool<E>(self, v: bool) -> Result<Node, E> {
        Ok(Node::Bool(v))
    }
    fn visit_i64<E>(self, v: i64) -> Result<Node, E> {
        Ok(Node::Int(v))
    }
    fn visit_u64<E>(self, v: u64) -> Result<Node, E> {
        Ok(i64::try_from(v).map_or(Node::UInt(v), Node::Int))
    }
    fn visit_f64<E>(self, v: f64) -> Result<Node, E> {
        Ok(Node::Float(v))
    }
    fn visit_str<E>(self, v: &str) -> Result<Node, E> {
        Ok(Node::Str(v.to_string()))
    }
    fn visit_string<E>(self, v: String) -> Result<Node, E> {
        Ok(Node::Str(v))
    }
    fn visit_unit<E>(self) -> Result<Node, E> {
        Ok(Node::Null)
    }
    fn visit_none<E>(self) -> Result<Node, E> {
        Ok(Node::Null)
    }
    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Node, D::Error> {
        d.deserialize_any(NodeVisitor)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Node, A::Error> {
        let mut items = Vec::new();
        while let Some(v) = seq.next_element::<Node>()? {
            items.push(v);
        }
        Ok(Node::Seq(items))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Node, A::Error> {
        let mut entries: Vec<(String, Node)> = Vec::new();
        while let Some(key) = map.next_key::<String>()? {
            if entries.iter().any(|(k, _)| *k == key) {
                return Err(de::Error::custom(format_args!(
                    "duplicate mapping key: {key}"
                )));
            }
            let v = map.next_value::<Node>()?;
            entries.push((key, v));
        }
        Ok(Node::Map(entries))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_keep_their_order() {
        let n = Node::from_yaml("b: 1\na: [x, 2.5, true, null]\n").unwrap();
        let Node::Map(entries) = &n else { panic!() };
        assert_eq!(entries[0].0, "b");
        assert_eq!(entries[1].0, "a");
        let n = Node::from_json(r#"{"z": 1, "y": {"b": "x", "a": 18446744073709551615}}"#).unwrap();
        let Node::Map(entries) = &n else { panic!() };
        assert_eq!(entries[0].0, "z");
        assert_eq!(
            n.clone().into_json(),
            serde_json::json!({"z": 1, "y": {"b": "x", "a": 18446744073709551615u64}})
        );
        assert!(Node::from_json(r#"{"a": 1, "a": 2}"#).is_err());
        assert_eq!(format!("{n:?}"), r#"["z", "y"]"#);
    }
}
