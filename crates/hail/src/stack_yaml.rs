//! A stack manifest's YAML as JSON, with the line of every field, so an
//! error about `services.web.autoscaling.max` can say `hail.yaml:23`.
//!
//! YAML 1.2's core schema: plain `true`/`false`, `null`/`~`/empty, integers
//! and floats are typed; quoted and block scalars are strings. Anchors and
//! aliases are expanded; duplicate keys and multiple documents are refused.

use std::collections::{BTreeMap, HashMap};

use serde_json::{Map, Number, Value};
use yaml_rust2::parser::{Event, MarkedEventReceiver, Parser};
use yaml_rust2::scanner::{Marker, TScalarStyle};

/// A parsed manifest: its JSON and where each field path starts.
#[derive(Debug)]
pub struct Document {
    pub value: Value,
    /// `services.web.autoscaling.max` → 1-based line.
    pub lines: BTreeMap<String, usize>,
}

/// A file that is not YAML this loader takes: the line and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{line}: {message}")]
pub struct YamlError {
    pub line: usize,
    pub message: String,
}

enum Frame {
    Map {
        map: Map<String, Value>,
        path: String,
        anchor: usize,
        /// The key read, waiting for its value.
        key: Option<String>,
    },
    Seq {
        items: Vec<Value>,
        path: String,
        anchor: usize,
    },
}

struct Loader {
    stack: Vec<Frame>,
    docs: Vec<Value>,
    lines: BTreeMap<String, usize>,
    anchors: HashMap<usize, Value>,
    error: Option<YamlError>,
}

fn join(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_owned()
    } else {
        format!("{path}.{key}")
    }
}

fn scalar(text: &str, style: TScalarStyle, tag: Option<&yaml_rust2::parser::Tag>) -> Value {
    if style != TScalarStyle::Plain || tag.is_some_and(|t| t.suffix == "str") {
        return Value::String(text.to_owned());
    }
    match text {
        "" | "~" | "null" | "Null" | "NULL" => return Value::Null,
        "true" | "True" | "TRUE" => return Value::Bool(true),
        "false" | "False" | "FALSE" => return Value::Bool(false),
        _ => {}
    }
    let unsigned = text.strip_prefix(['-', '+']).unwrap_or(text);
    let negative = text.starts_with('-');
    let radix = |digits: &str, radix: u32| {
        i64::from_str_radix(digits, radix)
            .ok()
            .map(|n| Value::Number(Number::from(if negative { -n } else { n })))
    };
    if let Some(hex) = unsigned.strip_prefix("0x") {
        if let Some(v) = radix(hex, 16) {
            return v;
        }
    }
    if let Some(oct) = unsigned.strip_prefix("0o") {
        if let Some(v) = radix(oct, 8) {
            return v;
        }
    }
    if !unsigned.is_empty() && unsigned.bytes().all(|b| b.is_ascii_digit()) {
        if let Ok(n) = text.parse::<i64>() {
            return Value::Number(n.into());
        }
        if let Ok(n) = text.parse::<u64>() {
            return Value::Number(n.into());
        }
    }
    let floaty = unsigned
        .bytes()
        .all(|b| b.is_ascii_digit() || matches!(b, b'.' | b'e' | b'E' | b'-' | b'+'))
        && unsigned.bytes().any(|b| b.is_ascii_digit());
    if floaty {
        if let Some(n) = text.parse::<f64>().ok().and_then(Number::from_f64) {
            return Value::Number(n);
        }
    }
    // .inf and .nan have no JSON form; they stay strings and fail as such.
    Value::String(text.to_owned())
}

impl Loader {
    fn fail(&mut self, mark: Marker, message: impl Into<String>) {
        if self.error.is_none() {
            self.error = Some(YamlError {
                line: mark.line(),
                message: message.into(),
            });
        }
    }

    /// The path of the node about to be read, recording its line.
    fn child_path(&mut self, mark: Marker) -> Option<String> {
        let path = match self.stack.last() {
            None => String::new(),
            Some(Frame::Map {
                path,
                key: Some(key),
                ..
            }) => join(path, key),
            Some(Frame::Map { .. }) => return None,
            Some(Frame::Seq { items, path, .. }) => {
                let p = format!("{path}[{}]", items.len());
                self.lines.entry(p.clone()).or_insert(mark.line());
                p
            }
        };
        Some(path)
    }

    /// Hands a finished node to its parent.
    fn add(&mut self, value: Value, anchor: usize, mark: Marker) {
        if anchor > 0 {
            self.anchors.insert(anchor, value.clone());
        }
        match self.stack.last_mut() {
            None => self.docs.push(value),
            Some(Frame::Seq { items, .. }) => items.push(value),
            Some(Frame::Map { map, key, path, .. }) => match key.take() {
                Some(k) => {
                    map.insert(k, value);
                }
                None => {
                    let k = match value {
                        Value::String(s) => s,
                        Value::Number(n) => n.to_string(),
                        Value::Bool(b) => b.to_string(),
                        Value::Null => String::new(),
                        _ => {
                            self.fail(mark, "a mapping key must be a plain value");
                            return;
                        }
                    };
                    let full = join(path, &k);
                    if map.contains_key(&k) {
                        self.fail(mark, format!("{full}: duplicate key {k:?}"));
                        return;
                    }
                    self.lines.insert(full, mark.line());
                    *key = Some(k);
                }
            },
        }
    }
}

impl MarkedEventReceiver for Loader {
    fn on_event(&mut self, ev: Event, mark: Marker) {
        if self.error.is_some() {
            return;
        }
        match ev {
            Event::Scalar(text, style, anchor, tag) => {
                self.child_path(mark);
                let value = scalar(&text, style, tag.as_ref());
                self.add(value, anchor, mark);
            }
            Event::Alias(id) => {
                self.child_path(mark);
                match self.anchors.get(&id).cloned() {
                    Some(v) => self.add(v, 0, mark),
                    None => self.fail(mark, "an alias to an unknown anchor"),
                }
            }
            Event::MappingStart(anchor, _) => match self.child_path(mark) {
                Some(path) => self.stack.push(Frame::Map {
                    map: Map::new(),
                    path,
                    anchor,
                    key: None,
                }),
                None => self.fail(mark, "a mapping key must be a plain value"),
            },
            Event::SequenceStart(anchor, _) => match self.child_path(mark) {
                Some(path) => self.stack.push(Frame::Seq {
                    items: Vec::new(),
                    path,
                    anchor,
                }),
                None => self.fail(mark, "a mapping key must be a plain value"),
            },
            Event::MappingEnd => {
                if let Some(Frame::Map { map, anchor, .. }) = self.stack.pop() {
                    self.add(Value::Object(map), anchor, mark);
                }
            }
            Event::SequenceEnd => {
                if let Some(Frame::Seq { items, anchor, .. }) = self.stack.pop() {
                    self.add(Value::Array(items), anchor, mark);
                }
            }
            Event::Nothing
            | Event::StreamStart
            | Event::StreamEnd
            | Event::DocumentStart
            | Event::DocumentEnd => {}
        }
    }
}

/// Parses one YAML document.
pub fn parse(text: &str) -> Result<Document, YamlError> {
    let mut loader = Loader {
        stack: Vec::new(),
        docs: Vec::new(),
        lines: BTreeMap::new(),
        anchors: HashMap::new(),
        error: None,
    };
    Parser::new_from_str(text)
        .load(&mut loader, true)
        .map_err(|e| YamlError {
            line: e.marker().line(),
            message: e.info().to_owned(),
        })?;
    if let Some(e) = loader.error {
        return Err(e);
    }
    let mut docs = loader.docs;
    if docs.len() > 1 {
        return Err(YamlError {
            line: 1,
            message: "one YAML document per manifest (found more than one `---`)".into(),
        });
    }
    Ok(Document {
        value: docs.pop().unwrap_or(Value::Null),
        lines: loader.lines,
    })
}

impl Document {
    /// The line of a field path, or of its nearest ancestor that has one.
    /// An unknown field is reported on its parent's path; `field` names it,
    /// so its own line is found.
    pub fn line_of(&self, path: &str, field: Option<&str>) -> usize {
        if let Some(f) = field {
            if let Some(line) = self.lines.get(&join(path, f)) {
                return *line;
            }
        }
        let mut p = path;
        loop {
            if let Some(line) = self.lines.get(p) {
                return *line;
            }
            match p.rfind(['.', '[']) {
                Some(i) => p = &p[..i],
                None => return 1,
            }
        }
    }

    /// The known path a server message begins with (`path: …`), longest first.
    pub fn path_in_message<'a>(&'a self, message: &str) -> Option<&'a str> {
        self.lines
            .keys()
            .filter(|p| {
                message
                    .strip_prefix(p.as_str())
                    .is_some_and(|rest| rest.starts_with(": ") || rest.starts_with('.'))
            })
            .max_by_key(|p| p.len())
            .map(String::as_str)
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn values_are_typed_and_lines_kept() {
        let doc = parse(
            "stack: demo\n\
             services:\n\
             \x20 web:\n\
             \x20   desiredCount: 2\n\
             \x20   ratio: 0.5\n\
             \x20   name: '2'\n\
             \x20   on: true\n\
             \x20   none: ~\n\
             \x20   list:\n\
             \x20     - a\n\
             \x20     - {b: 0x10}\n",
        )
        .unwrap();
        assert_eq!(
            doc.value,
            json!({"stack": "demo", "services": {"web": {
                "desiredCount": 2, "ratio": 0.5, "name": "2", "on": true, "none": null,
                "list": ["a", {"b": 16}]
            }}})
        );
        assert_eq!(doc.lines["stack"], 1);
        assert_eq!(doc.lines["services.web.desiredCount"], 4);
        assert_eq!(doc.lines["services.web.list[1].b"], 11);
        assert_eq!(doc.line_of("services.web.list[1].b.c", None), 11);
        assert_eq!(doc.line_of("services.web", Some("ratio")), 5);
        assert_eq!(
            doc.path_in_message("services.web.desiredCount: bad"),
            Some("services.web.desiredCount")
        );
    }

    #[test]
    fn anchors_expand_and_bad_documents_name_their_line() {
        let doc = parse("a: &x {p: 1}\nb: *x\n").unwrap();
        assert_eq!(doc.value, json!({"a": {"p": 1}, "b": {"p": 1}}));
        let e = parse("a: 1\na: 2\n").unwrap_err();
        assert_eq!(e.line, 2);
        assert!(e.message.contains("duplicate"), "{e}");
        let e = parse("a: [1, 2\n").unwrap_err();
        assert!(e.line >= 1);
        assert!(parse("a: 1\n---\nb: 2\n").is_err());
    }
}
