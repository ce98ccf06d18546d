//! How commands print: the `-o` formats, JSON and YAML documents, aligned tables, durations, and
//! whether stdout is a terminal (progress is drawn only then).
//!
//! The JSON shapes are the CLI's stable interface (docs/cli.md): fields are camelCase, only
//! added to, never renamed or removed.

use std::io::IsTerminal as _;

use clap::ValueEnum;
use headway_model::ObjectRef;
use serde::Serialize;

/// `-o` of `status`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, ValueEnum)]
pub enum StatusFormat {
    /// One aligned row per GitSync.
    #[default]
    Table,
    /// The list of GitSync summaries as one JSON document.
    Json,
    /// The same list as YAML.
    Yaml,
}

/// `-o` of `sync`, `rebuild`, `diff` and `apply`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, ValueEnum)]
pub enum Format {
    /// Lines for people.
    #[default]
    Text,
    /// One JSON document at the end (docs/cli.md gives its shape).
    Json,
}

/// Whether stdout is a terminal (then progress is drawn; otherwise plain lines).
pub fn stdout_is_terminal() -> bool {
    std::io::stdout().is_terminal()
}

/// `value` as pretty JSON with a final newline.
pub fn json<T: Serialize + ?Sized>(value: &T) -> anyhow::Result<String> {
    let mut text = serde_json::to_string_pretty(value)?;
    text.push('\n');
    Ok(text)
}

/// `value` as compact JSON on one line (a line per change with `--watch`).
pub fn json_line<T: Serialize + ?Sized>(value: &T) -> anyhow::Result<String> {
    let mut text = serde_json::to_string(value)?;
    text.push('\n');
    Ok(text)
}

/// `value` as a YAML document.
pub fn yaml<T: Serialize>(value: &T) -> anyhow::Result<String> {
    let mut text = serde_saphyr::to_string(value)?;
    if !text.ends_with('\n') {
        text.push('\n');
    }
    Ok(text)
}

/// Rows (the first is the header) as columns separated by two spaces, without trailing blanks.
pub fn table(rows: &[Vec<String>]) -> String {
    let columns = rows.iter().map(Vec::len).max().unwrap_or(0);
    let widths: Vec<usize> = (0..columns)
        .map(|i| {
            rows.iter()
                .filter_map(|r| r.get(i))
                .map(|c| c.chars().count())
                .max()
                .unwrap_or(0)
        })
        .collect();
    let mut out = String::new();
    for row in rows {
        let line: Vec<String> = row
            .iter()
            .zip(&widths)
            .map(|(cell, w)| format!("{cell:<w$}"))
            .collect();
        out.push_str(line.join("  ").trim_end());
        out.push('\n');
    }
    out
}

/// A duration for people: `553ms`, `4.2s`, `2m05s`.
pub fn seconds(s: f64) -> String {
    if s < 1.0 {
        format!("{}ms", (s * 1000.0).round() as u64)
    } else if s < 60.0 {
        format!("{s:.1}s")
    } else {
        let whole = s.round() as u64;
        format!("{}m{:02}s", whole / 60, whole % 60)
    }
}

/// Seconds rounded to milliseconds, for JSON.
pub fn rounded(s: f64) -> f64 {
    (s * 1000.0).round() / 1000.0
}

/// An object in the JSON output: its display form and its parts.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ObjectJson {
    /// `Kind.group/namespace/name` (as in the text output).
    pub id: String,
    pub group: String,
    pub kind: String,
    pub namespace: Option<String>,
    pub name: String,
}

impl From<&ObjectRef> for ObjectJson {
    fn from(id: &ObjectRef) -> Self {
        ObjectJson {
            id: id.to_string(),
            group: id.group.clone(),
            kind: id.kind.clone(),
            namespace: id.namespace.clone(),
            name: id.name.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_for_people() {
        for (s, expected) in [
            (0.0, "0ms"),
            (0.5534, "553ms"),
            (4.24, "4.2s"),
            (59.94, "59.9s"),
            (125.2, "2m05s"),
        ] {
            assert_eq!(seconds(s), expected, "{s}");
        }
        assert_eq!(rounded(1.23456), 1.235);
    }

    #[test]
    fn tables_are_aligned_without_trailing_blanks() {
        let rows = vec![
            vec!["A".to_string(), "BB".into(), "C".into()],
            vec!["long".into(), "x".into(), String::new()],
        ];
        assert_eq!(table(&rows), "A     BB  C\nlong  x\n");
    }

    #[test]
    fn yaml_and_json_documents() {
        let v = serde_json::json!({"a": [1, 2], "b": "x"});
        assert_eq!(json_line(&v).unwrap(), "{\"a\":[1,2],\"b\":\"x\"}\n");
        let y = yaml(&v).unwrap();
        assert!(y.contains("b: x"), "{y}");
        assert!(y.ends_with('\n'));
    }
}
