//! Helpers: parse with a fixed environment, assert on `file:line: message`.

use std::collections::HashMap;

use gateway::config::{Config, ConfigError};

pub const ORIGIN: &str = "cellgate.toml";

/// One valid cell, for tests about other sections.
pub const CELL: &str = "[[cells]]\nname = \"cell-1\"\nupstreams = [\"127.0.0.1:7001\"]\n";

pub fn env() -> HashMap<String, String> {
    HashMap::from([
        ("CELLGATE_ADMIN_TOKEN".to_owned(), "t0ken".to_owned()),
        ("EMPTY".to_owned(), String::new()),
        ("PORT".to_owned(), "8181".to_owned()),
        ("REDIS_HOST".to_owned(), "redis.internal".to_owned()),
    ])
}

pub fn parse(text: &str) -> Config {
    Config::parse(text, ORIGIN, &env()).unwrap_or_else(|e| panic!("unexpected error: {e}"))
}

pub fn error(text: &str) -> ConfigError {
    match Config::parse(text, ORIGIN, &env()) {
        Ok(config) => panic!("expected an error, got {config:#?}"),
        Err(e) => e,
    }
}

/// The error is at `line` and its message contains every one of `words`.
#[track_caller]
pub fn assert_error(text: &str, line: usize, words: &[&str]) {
    let err = error(text);
    let shown = err.to_string();
    assert!(
        shown.starts_with(&format!("{ORIGIN}:{line}: ")),
        "expected an error at line {line}, got: {shown}"
    );
    assert_eq!(err.line, Some(line));
    assert!(err.column.is_some(), "{shown}");
    for word in words {
        assert!(shown.contains(word), "expected {word:?} in: {shown}");
    }
}

/// The error has no line (`file: message`) and its message contains every one of `words`.
#[track_caller]
pub fn assert_file_error(text: &str, words: &[&str]) {
    let err = error(text);
    let shown = err.to_string();
    assert!(shown.starts_with(&format!("{ORIGIN}: ")), "{shown}");
    assert_eq!(err.line, None);
    for word in words {
        assert!(shown.contains(word), "expected {word:?} in: {shown}");
    }
}
