//! Where each node of a YAML document sits, by field path.

use std::collections::HashMap;

use yaml_rust2::parser::{Event, MarkedEventReceiver, Parser};
use yaml_rust2::scanner::Marker;

/// One step of a field path: a mapping key or a sequence index.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum PathSeg {
    Key(String),
    Index(usize),
}

/// Parses `a.b[2].c` (the notation of `serde_path_to_error`) into segments. `.` alone is the root.
pub fn parse_path(path: &str) -> Vec<PathSeg> {
    let mut segs = Vec::new();
    for part in path.split('.') {
        if part.is_empty() {
            continue;
        }
        let (key, mut rest) = part
            .find('[')
            .map_or((part, ""), |i| (&part[..i], &part[i..]));
        if !key.is_empty() {
            segs.push(PathSeg::Key(key.to_string()));
        }
        while let Some(end) = rest.find(']') {
            if let Ok(i) = rest[1..end].parse() {
                segs.push(PathSeg::Index(i));
            }
            rest = &rest[end + 1..];
        }
    }
    segs
}

/// Line and column (1-based) of every key and value in a document.
#[derive(Debug, Clone, Default)]
pub struct SpanIndex {
    values: HashMap<Vec<PathSeg>, (usize, usize)>,
    keys: HashMap<Vec<PathSeg>, (usize, usize)>,
}

enum Container {
    Map {
        path: Vec<PathSeg>,
        key: Option<String>,
    },
    Seq {
        path: Vec<PathSeg>,
        index: usize,
    },
}

#[derive(Default)]
struct Builder {
    stack: Vec<Container>,
    index: SpanIndex,
}

fn position(mark: Marker) -> (usize, usize) {
    // yaml-rust2 counts lines from 1 and columns from 0.
    (mark.line(), mark.col() + 1)
}

impl Builder {
    /// The path of the value that starts now, or `None` when the event is a mapping key.
    fn next_value_path(&mut self, ev: &Event, mark: Marker) -> Option<Vec<PathSeg>> {
        match self.stack.last_mut() {
            None => Some(Vec::new()),
            Some(Container::Map { path, key }) => {
                let mut p = path.clone();
                if let Some(k) = key.take() {
                    p.push(PathSeg::Key(k));
                    return Some(p);
                }
                let name = match ev {
                    Event::Scalar(s, ..) => s.clone(),
                    _ => "?".to_string(),
                };
                p.push(PathSeg::Key(name.clone()));
                self.index.keys.insert(p, position(mark));
                *key = Some(name);
                None
            }
            Some(Container::Seq { path, index }) => {
                let mut p = path.clone();
                p.push(PathSeg::Index(*index));
                *index += 1;
                Some(p)
            }
        }
    }
}

impl MarkedEventReceiver for Builder {
    fn on_event(&mut self, ev: Event, mark: Marker) {
        match ev {
            Event::Scalar(..)
            | Event::Alias(_)
            | Event::MappingStart(..)
            | Event::SequenceStart(..) => {
                let Some(path) = self.next_value_path(&ev, mark) else {
                    // A complex key (a mapping used as a key) is skipped as a whole.
                    if matches!(ev, Event::MappingStart(..) | Event::SequenceStart(..)) {
                        self.stack.push(Container::Seq {
                            path: vec![PathSeg::Key("?".into())],
                            index: 0,
                        });
                    }
                    return;
                };
                self.index
                    .values
                    .entry(path.clone())
                    .or_insert(position(mark));
                match ev {
                    Event::MappingStart(..) => self.stack.push(Container::Map { path, key: None }),
                    Event::SequenceStart(..) => self.stack.push(Container::Seq { path, index: 0 }),
                    _ => {}
                }
            }
            Event::MappingEnd | Event::SequenceEnd => {
                self.stack.pop();
            }
            _ => {}
        }
    }
}

impl SpanIndex {
    /// Indexes `text`; a syntax error comes back as `(line, column, message)`.
    pub fn build(text: &str) -> Result<Self, (usize, usize, String)> {
        let mut builder = Builder::default();
        let mut parser = Parser::new_from_str(text);
        parser.load(&mut builder, false).map_err(|e| {
            let (line, column) = position(*e.marker());
            (line, column, format!("invalid YAML: {}", e.info()))
        })?;
        Ok(builder.index)
    }

    /// Position of the value at `path`, or of its nearest indexed ancestor.
    pub fn locate_value(&self, path: &[PathSeg]) -> (usize, usize) {
        (0..=path.len())
            .rev()
            .find_map(|n| self.values.get(&path[..n]).copied())
            .unwrap_or((1, 1))
    }

    /// Position of the key naming `path` (for unknown fields), else as [`Self::locate_value`].
    pub fn locate_key(&self, path: &[PathSeg]) -> (usize, usize) {
        self.keys
            .get(path)
            .copied()
            .unwrap_or_else(|| self.locate_value(path))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_parse_like_serde_path_to_error_prints_them() {
        assert_eq!(
            parse_path("ops[2].classes[0].height_m"),
            vec![
                PathSeg::Key("ops".into()),
                PathSeg::Index(2),
                PathSeg::Key("classes".into()),
                PathSeg::Index(0),
                PathSeg::Key("height_m".into())
            ]
        );
        assert!(parse_path(".").is_empty());
    }

    #[test]
    fn values_and_keys_are_located() {
        let idx = SpanIndex::build("a: 1\nb:\n  - x: 2\n    y: [3, 4]\n").expect("valid");
        assert_eq!(idx.locate_value(&parse_path("a")), (1, 4));
        assert_eq!(idx.locate_value(&parse_path("b[0].y[1]")), (4, 12));
        assert_eq!(idx.locate_key(&parse_path("b[0].y")), (4, 5));
        // Missing nodes fall back to the nearest ancestor.
        assert_eq!(idx.locate_value(&parse_path("b[0].z")).0, 3);
    }
}
