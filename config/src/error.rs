//! Configuration errors that name the file, the key path, the line and column, and the cause.

use std::fmt;
use std::path::PathBuf;

/// Where in the configuration a problem was found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Location {
    /// 1-based line.
    pub line: usize,
    /// 1-based column (in characters).
    pub column: usize,
}

/// A configuration problem, precise enough for an operator to fix it without guessing.
#[derive(Debug, Clone, thiserror::Error)]
pub struct ConfigError {
    /// The file the configuration came from (`None` for built-in defaults or a string).
    pub file: Option<PathBuf>,
    /// Dotted key path, e.g. `relay.port_range`; empty for whole-file problems.
    pub key: String,
    /// Line and column of the offending key or value, when known.
    pub location: Option<Location>,
    /// What is wrong, in lowercase prose.
    pub message: String,
}

impl ConfigError {
    pub(crate) fn new(key: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            file: None,
            key: key.into(),
            location: None,
            message: message.into(),
        }
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.file {
            Some(file) => write!(f, "{}", file.display())?,
            None => write!(f, "<config>")?,
        }
        if let Some(loc) = &self.location {
            write!(f, ":{}:{}", loc.line, loc.column)?;
        }
        if !self.key.is_empty() {
            write!(f, ": key `{}`", self.key)?;
        }
        write!(f, ": {}", self.message)
    }
}

/// Converts a byte offset in `text` into a 1-based line and column.
pub(crate) fn location_of(text: &str, offset: usize) -> Location {
    let offset = offset.min(text.len());
    let before = text.get(..offset).unwrap_or(text);
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    let column = before.get(line_start..).map_or(0, |s| s.chars().count()) + 1;
    Location { line, column }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn location_counts_lines_and_columns_from_one() {
        let text = "a = 1\nbb = 2\n";
        assert_eq!(location_of(text, 0), Location { line: 1, column: 1 });
        assert_eq!(location_of(text, 6), Location { line: 2, column: 1 });
        assert_eq!(location_of(text, 11), Location { line: 2, column: 6 });
    }

    #[test]
    fn display_names_file_line_key_and_cause() {
        let err = ConfigError {
            file: Some("/etc/s.toml".into()),
            key: "relay.port_range".into(),
            location: Some(Location {
                line: 3,
                column: 14,
            }),
            message: "start is above end".into(),
        };
        assert_eq!(
            err.to_string(),
            "/etc/s.toml:3:14: key `relay.port_range`: start is above end"
        );
    }
}
