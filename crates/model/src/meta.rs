//! Reading the labels and annotations of an object given as JSON.

use serde_json::Value;

/// The value of label `key` of `o`, if it is a string.
pub(crate) fn label<'a>(o: &'a Value, key: &str) -> Option<&'a str> {
    o.pointer("/metadata/labels")?.get(key)?.as_str()
}

/// The value of annotation `key` of `o`, if it is a string.
pub(crate) fn annotation<'a>(o: &'a Value, key: &str) -> Option<&'a str> {
    o.pointer("/metadata/annotations")?.get(key)?.as_str()
}
