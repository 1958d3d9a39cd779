//! The Dockerfile front end: text to a validated, typed instruction list,
//! read exactly as BuildKit reads it.
//!
//! - [`parser`]: directives, comments, continuations, heredocs, flags, the
//!   per-keyword argument shapes ([`ast`]); its dump matches BuildKit's.
//! - [`instruction`]: typed instructions with every flag validated.
//! - [`expand`]: `$VAR` / `${VAR...}` substitution, quotes and escapes.
//! - [`stage`]: stages, ARG/ENV scoping and expansion per instruction.
//! - [`dockerignore`] and [`glob`]: context selection patterns.
//!
//! Everything here is pure: no filesystem, environment, clock or network.

pub mod ast;
pub mod dockerignore;
pub mod error;
pub mod expand;
pub mod glob;
pub mod instruction;
pub mod parser;
pub mod stage;

pub use ast::{Ast, Node, Span};
pub use error::ParseError;
pub use instruction::Instruction;

/// A Dockerfile read and checked: its syntax tree and one typed instruction
/// per node, in file order.
#[derive(Debug, Clone, PartialEq)]
pub struct Dockerfile {
    /// The syntax tree, as BuildKit's parser would give it.
    pub ast: Ast,
    /// The typed instructions, `instructions[i]` for `ast.nodes[i]`.
    pub instructions: Vec<Instruction>,
}

/// Parses and validates a Dockerfile.
pub fn parse(input: &[u8]) -> Result<Dockerfile, ParseError> {
    let ast = parser::parse(input)?;
    let escape = ast.directives.escape;
    let instructions = ast
        .nodes
        .iter()
        .map(|node| instruction::from_node(node, escape))
        .collect::<Result<Vec<_>, _>>()?;
    let dockerfile = Dockerfile { ast, instructions };
    // Only ARG may precede the first FROM, and there must be one (F4).
    stage::check_structure(&dockerfile)?;
    Ok(dockerfile)
}
