//! The front end's one error type. Every error knows the 1-based line and
//! column it refers to; the CLI prefixes the file name (`FILE:LINE:COL:`).

use crate::dockerfile::expand::ExpandError;

/// Why a Dockerfile (or a `.dockerignore`, or a build argument) was rejected.
#[derive(Debug, thiserror::Error)]
pub enum ParseError {
    /// The text breaks a rule of the Dockerfile language.
    #[error("{message}")]
    Syntax {
        /// 1-based line.
        line: usize,
        /// 1-based column (1 when only the line is known).
        col: usize,
        /// What is wrong, lower case, naming the offending text.
        message: String,
        /// How to fix it, when there is something useful to say.
        hint: Option<String>,
    },
    /// A `$variable` substitution could not be expanded.
    #[error("failed to expand `{word}`")]
    Expand {
        /// 1-based line.
        line: usize,
        /// 1-based column.
        col: usize,
        /// The word being expanded.
        word: String,
        /// What the expander found.
        #[source]
        source: ExpandError,
    },
}

impl ParseError {
    /// A syntax error at `line`, column 1, without a hint.
    pub fn at(line: usize, message: impl Into<String>) -> Self {
        ParseError::Syntax {
            line,
            col: 1,
            message: message.into(),
            hint: None,
        }
    }

    /// The same error with a hint attached (syntax errors only).
    pub fn with_hint(self, text: impl Into<String>) -> Self {
        match self {
            ParseError::Syntax {
                line, col, message, ..
            } => ParseError::Syntax {
                line,
                col,
                message,
                hint: Some(text.into()),
            },
            other => other,
        }
    }

    /// `(line, column)`, both 1-based.
    pub fn location(&self) -> (usize, usize) {
        match self {
            ParseError::Syntax { line, col, .. } | ParseError::Expand { line, col, .. } => {
                (*line, *col)
            }
        }
    }

    /// The hint, if any.
    pub fn hint(&self) -> Option<&str> {
        match self {
            ParseError::Syntax { hint, .. } => hint.as_deref(),
            ParseError::Expand { .. } => None,
        }
    }
}
