//! YAML and JSON streams to JSON values, read the way kubectl reads them.
//!
//! A stream is split into documents at lines that start with `---` followed by nothing or by
//! whitespace (kubectl's rule; YAML forbids such a line inside a scalar, so the split is exact),
//! and after lines that start with `...`. Each document is then parsed on its own with
//! serde-saphyr in YAML 1.1 mode (`yes`/`off` are booleans, `0755` is 493), so that one broken
//! document does not hide the errors of the others and every error names its document and line.

use headway_model::SourceLocation;
use serde::de::{self, Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::Value;

use crate::error::RenderError;

/// One parsed, non-empty document.
#[derive(Debug)]
pub(crate) struct Document {
    pub location: SourceLocation,
    pub value: Value,
    /// The document's text as written, when it is encrypted (see the `decrypt` module).
    pub encrypted: Option<String>,
    /// Whether it was read as JSON.
    pub json: bool,
}

impl Document {
    fn new(location: SourceLocation, value: Value, text: &str, json: bool) -> Self {
        let encrypted = crate::decrypt::is_encrypted(&value).then(|| text.to_string());
        Document {
            location,
            value,
            encrypted,
            json,
        }
    }
}

/// A chunk of the stream holding one document.
struct Chunk<'a> {
    text: &'a str,
    /// 1-based line of the chunk's first line.
    first_line: usize,
    /// 1-based line of the document's first content line (or the first line when empty).
    content_line: Option<usize>,
}

/// Splits a YAML stream into document chunks.
fn split(text: &str) -> Vec<Chunk<'_>> {
    let mut chunks = Vec::new();
    let mut start = 0usize; // byte offset of the current chunk
    let mut first_line = 1usize;
    let mut content_line = None;
    let mut explicit = false; // current chunk started with `---`
    let mut offset = 0usize;
    let mut line_no = 0usize;
    let bytes = text.as_bytes();
    while offset < bytes.len() {
        line_no += 1;
        let end = memchr_newline(bytes, offset);
        let line = &text[offset..end];
        let next = if end < bytes.len() { end + 1 } else { end };
        if is_marker(line, "---") {
            if explicit || content_line.is_some() {
                chunks.push(Chunk {
                    text: &text[start..offset],
                    first_line,
                    content_line,
                });
            }
            start = offset;
            first_line = line_no;
            explicit = true;
            // Content on the marker line itself (`--- |`, `--- {a: 1}`) starts the document.
            let rest = line[3..].trim_start();
            content_line = (!rest.is_empty() && !rest.starts_with('#')).then_some(line_no);
        } else if is_marker(line, "...") {
            if explicit || content_line.is_some() {
                chunks.push(Chunk {
                    text: &text[start..next],
                    first_line,
                    content_line,
                });
            }
            start = next;
            first_line = line_no + 1;
            explicit = false;
            content_line = None;
        } else if content_line.is_none() && is_content(line) {
            content_line = Some(line_no);
        }
        offset = next;
    }
    if explicit || content_line.is_some() {
        chunks.push(Chunk {
            text: &text[start..],
            first_line,
            content_line,
        });
    }
    chunks
}

fn memchr_newline(bytes: &[u8], from: usize) -> usize {
    bytes[from..]
        .iter()
        .position(|&b| b == b'\n')
        .map_or(bytes.len(), |p| from + p)
}

/// `---` or `...` at column 0, followed by nothing or by whitespace.
fn is_marker(line: &str, marker: &str) -> bool {
    line.strip_prefix(marker)
        .is_some_and(|rest| rest.is_empty() || rest.starts_with([' ', '\t', '\r']))
}

/// A line holding YAML content: not blank, not a comment, not a directive.
fn is_content(line: &str) -> bool {
    let t = line.trim_start();
    !(t.is_empty() || t.starts_with('#') || line.starts_with('%'))
}

/// Stack size for threads that parse: documents nest up to the depth budget, and parsing recurses.
pub(crate) const STACK_SIZE: usize = 16 << 20;

/// Runs `f` on a thread with a [`STACK_SIZE`] stack (the caller's may be small).
pub(crate) fn with_big_stack<T: Send>(f: impl FnOnce() -> T + Send) -> T {
    std::thread::scope(|s| {
        std::thread::Builder::new()
            .stack_size(STACK_SIZE)
            .spawn_scoped(s, f)
            .expect("spawn a parser thread")
            .join()
            .unwrap_or_else(|p| std::panic::resume_unwind(p))
    })
}

/// serde-saphyr options that read YAML as kubectl (go-yaml, YAML 1.1) does, with budgets large
/// enough for big bundles.
pub(crate) fn saphyr_options() -> serde_saphyr::Options {
    let mut budget = serde_saphyr::Budget::default();
    budget.max_documents = 1_000_000;
    budget.max_nodes = 10_000_000;
    budget.max_events = 50_000_000;
    budget.max_depth = 256;
    budget.max_total_scalar_bytes = 1 << 30;
    // Events kept for anchors and replayed for aliases: a "billion laughs" document is refused
    // after 100,000 (about 20 MiB) instead of the default 1,000,000 (about 190 MiB of peak memory
    // measured); Kubernetes manifests use few anchors, and small ones.
    budget.max_recorded_anchor_events = 100_000;
    let mut options = serde_saphyr::Options::default();
    options.budget = Some(budget);
    options.legacy_octal_numbers = true;
    options.duplicate_keys = serde_saphyr::DuplicateKeyPolicy::Error;
    options.with_snippet = false;
    options.emit_comments = false;
    options
}

/// Parses a YAML (or JSON) stream into its non-empty documents. `file` names the stream in
/// locations. Errors are collected per document; parsing goes on after a broken document.
pub(crate) fn parse_stream(
    text: &str,
    file: &str,
    docs: &mut Vec<Document>,
    errors: &mut Vec<RenderError>,
) {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let options = saphyr_options();
    for (index, chunk) in split(text).into_iter().enumerate() {
        let Some(content_line) = chunk.content_line else {
            continue; // an empty document
        };
        let location = SourceLocation {
            file: file.to_string(),
            document: index,
            line: Some(content_line),
        };
        match serde_saphyr::from_str_with_options::<Value>(chunk.text, options.clone()) {
            Ok(Value::Null) => {}
            Ok(value) => docs.push(Document::new(location, value, chunk.text, false)),
            Err(e) => {
                let line = e
                    .location()
                    .map(|l| l.line() as usize)
                    .filter(|&l| l > 0)
                    .map_or(content_line, |l| chunk.first_line + l - 1);
                errors.push(RenderError::InvalidYaml {
                    location: SourceLocation {
                        line: Some(line),
                        ..location
                    },
                    message: saphyr_message(&e),
                });
            }
        }
    }
}

/// The parser's message without its own `line L column C:` prefix (the location is ours).
fn saphyr_message(e: &serde_saphyr::Error) -> String {
    let full = e.without_snippet().to_string();
    let msg = full.strip_prefix("error: ").unwrap_or(&full);
    let msg = match msg.strip_prefix("line ") {
        Some(rest) => match rest.split_once(": ") {
            Some((pos, m)) if pos.contains("column") => m,
            _ => msg,
        },
        None => msg,
    };
    let msg = msg.lines().next().unwrap_or(msg).trim();
    // Positions are relative to the document; ours are absolute and already in the location.
    let msg = match msg.rfind(" at line ") {
        Some(i) if msg[i..].contains("column") => &msg[..i],
        _ => msg,
    };
    // Advice addressed to programmers using serde-saphyr, not to the author of the YAML.
    msg.replace(", set DuplicateKeyPolicy in Options if acceptable", "")
}

/// Parses a JSON file: one or more concatenated JSON values, duplicate keys rejected.
pub(crate) fn parse_json_stream(
    text: &str,
    file: &str,
    docs: &mut Vec<Document>,
    errors: &mut Vec<RenderError>,
) {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let mut stream = serde_json::Deserializer::from_str(text).into_iter::<StrictValue>();
    let mut index = 0;
    loop {
        // The document starts at the first non-whitespace byte after the previous one.
        let at = stream.byte_offset();
        let start = at + text[at..].len() - text[at..].trim_start().len();
        let line = line_of(text, start);
        match stream.next() {
            None => break,
            Some(Ok(StrictValue(Value::Null))) => {}
            Some(Ok(StrictValue(value))) => docs.push(Document::new(
                SourceLocation {
                    file: file.to_string(),
                    document: index,
                    line: Some(line),
                },
                value,
                &text[start..stream.byte_offset()],
                true,
            )),
            Some(Err(e)) => {
                errors.push(RenderError::InvalidYaml {
                    location: SourceLocation {
                        file: file.to_string(),
                        document: index,
                        line: Some(if e.line() > 0 { e.line() } else { line }),
                    },
                    message: strip_json_position(&e.to_string()),
                });
                break; // a JSON stream cannot be resynchronised after a syntax error
            }
        }
        index += 1;
    }
}

fn strip_json_position(msg: &str) -> String {
    match msg.rfind(" at line ") {
        Some(i) => msg[..i].to_string(),
        None => msg.to_string(),
    }
}

fn line_of(text: &str, offset: usize) -> usize {
    1 + text.as_bytes()[..offset.min(text.len())]
        .iter()
        .filter(|&&b| b == b'\n')
        .count()
}

/// A JSON value whose objects may not repeat a key (serde_json's `Value` keeps the last one).
struct StrictValue(Value);

impl<'de> Deserialize<'de> for StrictValue {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(StrictVisitor).map(StrictValue)
    }
}

struct StrictVisitor;

impl<'de> Visitor<'de> for StrictVisitor {
    type Value = Value;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a JSON value")
    }
    fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }
    fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
        Ok(v.into())
    }
    fn visit_u64<E>(self, v: u64) -> Result<Value, E> {
        Ok(v.into())
    }
    fn visit_f64<E>(self, v: f64) -> Result<Value, E> {
        Ok(serde_json::Number::from_f64(v).map_or(Value::Null, Value::Number))
    }
    fn visit_str<E>(self, v: &str) -> Result<Value, E> {
        Ok(Value::String(v.to_string()))
    }
    fn visit_string<E>(self, v: String) -> Result<Value, E> {
        Ok(Value::String(v))
    }
    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_none<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        d.deserialize_any(StrictVisitor)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut items = Vec::new();
        while let Some(StrictValue(v)) = seq.next_element()? {
            items.push(v);
        }
        Ok(Value::Array(items))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut out = serde_json::Map::new();
        while let Some(key) = map.next_key::<String>()? {
            if out.contains_key(&key) {
                return Err(de::Error::custom(format_args!(
                    "duplicate mapping key: {key}"
                )));
            }
            let StrictValue(v) = map.next_value()?;
            out.insert(key, v);
        }
        Ok(Value::Object(out))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chunks(text: &str) -> Vec<(String, usize, Option<usize>)> {
        split(text)
            .into_iter()
            .map(|c| (c.text.to_string(), c.first_line, c.content_line))
            .collect()
    }

    #[test]
    fn split_follows_kubectl_separators() {
        assert_eq!(chunks(""), vec![]);
        assert_eq!(chunks("# only a comment\n"), vec![]);
        assert_eq!(chunks("a: 1\n"), vec![("a: 1\n".into(), 1, Some(1))]);
        // A leading separator does not create an empty first document.
        assert_eq!(
            chunks("# c\n---\na: 1\n---\n---\nb: 2"),
            vec![
                ("---\na: 1\n".into(), 2, Some(3)),
                ("---\n".into(), 4, None),
                ("---\nb: 2".into(), 5, Some(6)),
            ]
        );
        // `---x` is not a separator; `--- |` is, and its content starts on the marker line.
        assert_eq!(chunks("a: ---x\n--- |\n  t\n").len(), 2);
        assert_eq!(chunks("a: ---x\n--- |\n  t\n")[1].2, Some(2));
        // `...` ends a document.
        assert_eq!(
            chunks("a: 1\n...\nb: 2\n"),
            vec![
                ("a: 1\n...\n".into(), 1, Some(1)),
                ("b: 2\n".into(), 3, Some(3))
            ]
        );
        // CRLF line endings.
        assert_eq!(chunks("a: 1\r\n---\r\nb: 2\r\n").len(), 2);
    }

    fn parse(text: &str) -> (Vec<Document>, Vec<RenderError>) {
        let (mut docs, mut errors) = (Vec::new(), Vec::new());
        parse_stream(text, "f.yaml", &mut docs, &mut errors);
        (docs, errors)
    }

    #[test]
    fn yaml_1_1_scalars_as_kubectl_reads_them() {
        let (docs, errors) =
            parse("a: yes\nb: off\nc: 0755\nd: NO\ne: '0755'\nf: \"yes\"\ng: 0x1F\nh: 1.5\n");
        assert!(errors.is_empty(), "{errors:?}");
        assert_eq!(
            docs[0].value,
            serde_json::json!({"a": true, "b": false, "c": 493, "d": false, "e": "0755", "f": "yes", "g": 31, "h": 1.5})
        );
    }

    #[test]
    fn errors_name_document_and_absolute_line() {
        let (docs, errors) = parse("a: 1\n---\nb: 2\n---\n# c\nc: [\n---\nd: 1\ne: 2\nd: 3\n");
        assert_eq!(docs.len(), 2);
        let msgs: Vec<String> = errors.iter().map(ToString::to_string).collect();
        assert_eq!(msgs.len(), 2, "{msgs:?}");
        assert!(
            msgs[0].starts_with("f.yaml (document 2, line 6): invalid YAML"),
            "{msgs:?}"
        );
        assert!(
            msgs[1].starts_with("f.yaml (document 3, line 10): invalid YAML: duplicate"),
            "{msgs:?}"
        );
    }

    #[test]
    fn json_streams_and_duplicate_keys() {
        let (mut docs, mut errors) = (Vec::new(), Vec::new());
        parse_json_stream(
            "{\"a\": 1}\n\n{\"b\": [1, 2]}",
            "f.json",
            &mut docs,
            &mut errors,
        );
        assert!(errors.is_empty());
        assert_eq!(docs.len(), 2);
        assert_eq!(docs[1].location.line, Some(3));
        assert_eq!(docs[1].location.document, 1);
        parse_json_stream("{\"a\": 1,\n \"a\": 2}", "g.json", &mut docs, &mut errors);
        assert_eq!(errors.len(), 1);
        let msg = errors[0].to_string();
        assert!(
            msg.starts_with("g.json (document 0, line 2): invalid YAML: duplicate mapping key: a"),
            "{msg}"
        );
    }

    #[test]
    fn deep_nesting_is_parsed_up_to_the_depth_budget() {
        let nested = |depth: usize| {
            let mut text = String::new();
            for i in 0..depth {
                text.push_str(&" ".repeat(i * 2));
                text.push_str("k:\n");
            }
            text.push_str(&" ".repeat(depth * 2));
            text.push_str("v: 1\n");
            text
        };
        let (docs, errors) = with_big_stack(|| parse(&nested(250)));
        assert!(errors.is_empty(), "{errors:?}");
        assert_eq!(docs.len(), 1);
        let (docs, errors) = with_big_stack(|| parse(&nested(2000)));
        assert!(docs.is_empty());
        let msg = errors[0].to_string();
        assert!(msg.contains("line 257") && msg.contains("budget"), "{msg}");
    }
}
