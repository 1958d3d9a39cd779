//! The stage graph: which stage reads which, `--target` selection, and the
//! errors BuildKit gives for unknown stages, cycles and duplicate names.
//!
//! Edges come from `FROM <stage>`, `COPY --from=<stage|index>` and
//! `RUN --mount from=<stage|index>` (and the same inside ONBUILD triggers a
//! stage inherits). A reference that names no stage and is not a number is
//! an image reference, not an edge. The graph is pure data: no filesystem.

use std::collections::BTreeSet;

use crate::dockerfile::{ParseError, Span};

/// How one stage refers to something outside itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reference {
    /// As written: a stage name, a stage index, or an image reference.
    pub text: String,
    /// What kind of use (for messages): `FROM`, `COPY --from`, `RUN --mount from`.
    pub via: &'static str,
    /// Where it is written.
    pub span: Span,
}

/// What the graph needs to know of one stage.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StageNode {
    /// `AS name`, lower-cased.
    pub name: Option<String>,
    /// The FROM line.
    pub span: Span,
    /// Every reference the stage makes, the FROM base first.
    pub references: Vec<Reference>,
}

/// What a reference resolved to.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum Target {
    /// Another stage of this Dockerfile, by index.
    Stage(usize),
    /// An image (or `scratch`), by reference.
    Image(String),
}

/// The resolved graph.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Graph {
    /// For each stage, its references resolved, in the order written.
    pub edges: Vec<Vec<Target>>,
}

/// Finds the stage a name or index refers to, if any.
pub fn find_stage(stages: &[StageNode], text: &str) -> Option<usize> {
    let lower = text.to_ascii_lowercase();
    if let Some(i) = stages
        .iter()
        .position(|s| s.name.as_deref() == Some(lower.as_str()))
    {
        return Some(i);
    }
    if !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit()) {
        return text.parse::<usize>().ok().filter(|&i| i < stages.len());
    }
    None
}

/// Resolves every reference and checks names, indices and cycles.
pub fn resolve(stages: &[StageNode]) -> Result<Graph, ParseError> {
    let mut seen = BTreeSet::new();
    for stage in stages {
        if let Some(name) = &stage.name
            && !seen.insert(name.as_str())
        {
            let first = stages
                .iter()
                .find(|s| s.name.as_ref() == Some(name))
                .map_or(0, |s| s.span.start);
            return Err(ParseError::at(
                stage.span.start,
                format!("duplicate stage name `{name}` (first defined on line {first})"),
            )
            .with_hint("give each stage its own name after `AS`"));
        }
    }

    let mut edges = Vec::with_capacity(stages.len());
    for (index, stage) in stages.iter().enumerate() {
        let mut out = Vec::with_capacity(stage.references.len());
        for reference in &stage.references {
            let text = reference.text.as_str();
            let target = match find_stage(stages, text) {
                Some(i) => Target::Stage(i),
                None if !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit()) => {
                    return Err(ParseError::at(
                        reference.span.start,
                        format!(
                            "{} refers to stage index {text}, but the Dockerfile has only {} stages (0 to {})",
                            reference.via,
                            stages.len(),
                            stages.len().saturating_sub(1)
                        ),
                    ));
                }
                None => Target::Image(text.to_string()),
            };
            if target == Target::Stage(index) {
                return Err(ParseError::at(
                    reference.span.start,
                    format!(
                        "stage {} refers to itself through {}",
                        describe(stages, index),
                        reference.via
                    ),
                ));
            }
            out.push(target);
        }
        edges.push(out);
    }
    let graph = Graph { edges };
    if let Some(cycle) = graph.find_cycle() {
        let names: Vec<String> = cycle.iter().map(|&i| describe(stages, i)).collect();
        let at = stages[cycle[0]].span.start;
        return Err(ParseError::at(
            at,
            format!("circular dependency between stages: {}", names.join(" -> ")),
        ));
    }
    Ok(graph)
}

/// `name` or `#index` for messages.
fn describe(stages: &[StageNode], index: usize) -> String {
    match &stages[index].name {
        Some(name) => format!("`{name}`"),
        None => format!("#{index}"),
    }
}

impl Graph {
    /// The stages `target` needs, itself included, in ascending index order.
    pub fn closure(&self, target: usize) -> Vec<usize> {
        let mut needed = BTreeSet::new();
        let mut todo = vec![target];
        while let Some(i) = todo.pop() {
            if needed.insert(i) {
                for edge in &self.edges[i] {
                    if let Target::Stage(j) = edge {
                        todo.push(*j);
                    }
                }
            }
        }
        needed.into_iter().collect()
    }

    /// A cycle, as the list of stages on it (first repeated at the end), if
    /// there is one.
    fn find_cycle(&self) -> Option<Vec<usize>> {
        #[derive(Clone, Copy, PartialEq)]
        enum Mark {
            New,
            Active,
            Done,
        }
        let mut marks = vec![Mark::New; self.edges.len()];
        for start in 0..self.edges.len() {
            if marks[start] != Mark::New {
                continue;
            }
            // Iterative DFS: (node, next edge to look at).
            let mut stack = vec![(start, 0usize)];
            marks[start] = Mark::Active;
            while let Some(&mut (node, ref mut next)) = stack.last_mut() {
                let deps: Vec<usize> = self.edges[node]
                    .iter()
                    .filter_map(|t| match t {
                        Target::Stage(j) => Some(*j),
                        Target::Image(_) => None,
                    })
                    .collect();
                if *next < deps.len() {
                    let dep = deps[*next];
                    *next += 1;
                    match marks[dep] {
                        Mark::New => {
                            marks[dep] = Mark::Active;
                            stack.push((dep, 0));
                        }
                        Mark::Active => {
                            let from = stack.iter().position(|&(n, _)| n == dep).unwrap_or(0);
                            let mut cycle: Vec<usize> =
                                stack[from..].iter().map(|&(n, _)| n).collect();
                            cycle.push(dep);
                            return Some(cycle);
                        }
                        Mark::Done => {}
                    }
                } else {
                    marks[node] = Mark::Done;
                    stack.pop();
                }
            }
        }
        None
    }
}

/// Picks the target stage: by name (case-insensitive) or index, else the last.
pub fn select_target(stages: &[StageNode], target: Option<&str>) -> Result<usize, ParseError> {
    match target {
        None => stages
            .len()
            .checked_sub(1)
            .ok_or_else(|| ParseError::at(1, "the Dockerfile has no stages")),
        Some(name) => find_stage(stages, name).ok_or_else(|| {
            let known: Vec<String> = stages
                .iter()
                .enumerate()
                .map(|(i, s)| s.name.clone().unwrap_or_else(|| i.to_string()))
                .collect();
            ParseError::at(
                stages.last().map_or(1, |s| s.span.start),
                format!("target stage `{name}` could not be found"),
            )
            .with_hint(format!("the stages are: {}", known.join(", ")))
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn span(line: usize) -> Span {
        Span {
            start: line,
            end: line,
        }
    }

    fn stage(name: Option<&str>, line: usize, refs: &[(&str, &'static str)]) -> StageNode {
        StageNode {
            name: name.map(str::to_string),
            span: span(line),
            references: refs
                .iter()
                .map(|(text, via)| Reference {
                    text: text.to_string(),
                    via,
                    span: span(line),
                })
                .collect(),
        }
    }

    #[test]
    fn target_needs_only_its_dependencies() {
        let stages = vec![
            stage(Some("base"), 1, &[("debian", "FROM")]),
            stage(Some("unrelated"), 3, &[("alpine", "FROM")]),
            stage(Some("build"), 5, &[("base", "FROM")]),
            stage(None, 7, &[("scratch", "FROM"), ("build", "COPY --from")]),
        ];
        let graph = resolve(&stages).unwrap();
        assert_eq!(graph.closure(3), vec![0, 2, 3]);
        assert_eq!(
            graph.closure(select_target(&stages, Some("BUILD")).unwrap()),
            vec![0, 2]
        );
        assert_eq!(select_target(&stages, None).unwrap(), 3);
        assert_eq!(graph.edges[3][0], Target::Image("scratch".into()));
    }

    #[test]
    fn numeric_references_are_stage_indices() {
        let stages = vec![
            stage(None, 1, &[("debian", "FROM")]),
            stage(None, 2, &[("scratch", "FROM"), ("0", "COPY --from")]),
        ];
        assert_eq!(resolve(&stages).unwrap().edges[1][1], Target::Stage(0));
        let bad = vec![stage(None, 1, &[("debian", "FROM"), ("4", "COPY --from")])];
        let err = resolve(&bad).unwrap_err();
        assert!(err.to_string().contains("stage index 4"), "{err}");
    }

    #[test]
    fn duplicate_names_are_rejected() {
        let stages = vec![
            stage(Some("a"), 1, &[("debian", "FROM")]),
            stage(Some("a"), 4, &[("debian", "FROM")]),
        ];
        let err = resolve(&stages).unwrap_err();
        assert_eq!(err.location(), (4, 1));
        assert!(err.to_string().contains("duplicate stage name `a`"));
    }

    #[test]
    fn cycles_are_rejected() {
        let stages = vec![
            stage(Some("a"), 1, &[("b", "FROM")]),
            stage(Some("b"), 2, &[("a", "FROM")]),
        ];
        let err = resolve(&stages).unwrap_err();
        assert!(err.to_string().contains("circular dependency"), "{err}");
        let selfref = vec![stage(
            Some("a"),
            1,
            &[("debian", "FROM"), ("a", "COPY --from")],
        )];
        assert!(
            resolve(&selfref)
                .unwrap_err()
                .to_string()
                .contains("itself")
        );
    }

    #[test]
    fn unknown_target_lists_the_stages() {
        let stages = vec![stage(Some("a"), 1, &[("debian", "FROM")])];
        let err = select_target(&stages, Some("nope")).unwrap_err();
        assert!(err.to_string().contains("`nope`"));
        assert_eq!(err.hint(), Some("the stages are: a"));
    }
}
