//! [`ConfigError`]: one problem, located in the config file.

use std::fmt;
use std::io;
use std::ops::Range;

/// Why a config file was rejected, and where.
///
/// Displays as `file:line: message`, or `file: message` when the problem has no single line
/// (e.g. the file cannot be read, or no cell is configured). `cellgate check-config` prints
/// exactly this and exits 1.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct ConfigError {
    /// The file name as given by the operator, or the `origin` passed to
    /// [`Config::parse`](super::Config::parse).
    pub origin: String,
    /// 1-based line of the offending key or value.
    pub line: Option<usize>,
    /// 1-based column (in characters) of the offending key or value.
    pub column: Option<usize>,
    /// What is wrong, naming the key or value.
    pub message: String,
}

impl ConfigError {
    /// An error about the file as a whole.
    pub fn new(origin: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            origin: origin.into(),
            line: None,
            column: None,
            message: message.into(),
        }
    }

    /// The file could not be read: `cellgate.toml: cannot read: No such file or directory`.
    pub fn io(origin: impl Into<String>, error: &io::Error) -> Self {
        Self::new(origin, format!("cannot read: {}", describe_io(error)))
    }

    /// An error at byte `offset` of `text`.
    pub(crate) fn at(origin: &str, text: &str, offset: usize, message: impl Into<String>) -> Self {
        let (line, column) = locate(text, offset);
        Self {
            origin: origin.to_owned(),
            line: Some(line),
            column: Some(column),
            message: message.into(),
        }
    }

    /// A TOML syntax error, type error or unknown key, at the span toml reports.
    pub(crate) fn from_toml(origin: &str, text: &str, error: &toml::de::Error) -> Self {
        let message = error.message().trim_end();
        match error.span() {
            // toml does not say which key is duplicated; the span is the key.
            Some(span) if message == "duplicate key" => {
                let key = text.get(span.clone()).unwrap_or_default();
                Self::at(origin, text, span.start, format!("duplicate key `{key}`"))
            }
            Some(Range { start, .. }) => Self::at(origin, text, start, message),
            None => Self::new(origin, message),
        }
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.line {
            Some(line) => write!(f, "{}:{line}: {}", self.origin, self.message),
            None => write!(f, "{}: {}", self.origin, self.message),
        }
    }
}

/// The OS's description without the ` (os error N)` suffix std appends.
fn describe_io(error: &io::Error) -> String {
    let text = error.to_string();
    match text.rfind(" (os error ") {
        Some(suffix) if text.ends_with(')') => text[..suffix].to_owned(),
        _ => text,
    }
}

/// 1-based line and character column of byte `offset` in `text`.
pub(super) fn locate(text: &str, offset: usize) -> (usize, usize) {
    let offset = offset.min(text.len());
    let before = &text.as_bytes()[..offset];
    let line = before.iter().filter(|&&b| b == b'\n').count() + 1;
    let line_start = before
        .iter()
        .rposition(|&b| b == b'\n')
        .map_or(0, |newline| newline + 1);
    let column = text
        .get(line_start..offset)
        .map_or(offset - line_start, |prefix| prefix.chars().count());
    (line, column + 1)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn displays_file_line_message() {
        let text = "a = 1\nbb = 2\n";
        let err = ConfigError::at("cellgate.toml", text, 6, "unknown field `bb`");
        assert_eq!(err.line, Some(2));
        assert_eq!(err.column, Some(1));
        assert_eq!(err.to_string(), "cellgate.toml:2: unknown field `bb`");
        let err = ConfigError::new("cellgate.toml", "no cells");
        assert_eq!(err.to_string(), "cellgate.toml: no cells");
    }

    #[test]
    fn io_errors_read_like_the_os_message() {
        let err = io::Error::from_raw_os_error(2);
        assert_eq!(
            ConfigError::io("cellgate.toml", &err).to_string(),
            "cellgate.toml: cannot read: No such file or directory"
        );
    }

    #[test]
    fn locate_counts_lines_and_characters() {
        let text = "é = 1\n\nkey = \"ü\" x";
        assert_eq!(locate(text, 0), (1, 1));
        assert_eq!(locate(text, 2), (1, 2));
        assert_eq!(locate(text, 8), (3, 1));
        assert_eq!(locate(text, text.len()), (3, 12));
        assert_eq!(locate(text, 10_000), (3, 12));
    }
}
