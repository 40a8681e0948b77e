//! The environment seam and `${NAME}` substitution.

use std::collections::HashMap;
use std::hash::BuildHasher;

/// Where `${NAME}` references in config values are looked up.
///
/// [`ProcessEnv`] reads the process environment; tests pass a `HashMap<String, String>`.
pub trait Env {
    /// The value of variable `name`, or `None` when it is not set.
    fn var(&self, name: &str) -> Option<String>;
}

/// The process environment, read through [`std::env::var`].
///
/// A variable whose value is not valid Unicode counts as not set.
#[derive(Debug, Clone, Copy, Default)]
pub struct ProcessEnv;

impl Env for ProcessEnv {
    fn var(&self, name: &str) -> Option<String> {
        std::env::var(name).ok()
    }
}

impl<S: BuildHasher> Env for HashMap<String, String, S> {
    fn var(&self, name: &str) -> Option<String> {
        self.get(name).cloned()
    }
}

/// Why a value could not be substituted. Never includes the value itself: it may be a secret.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum SubstError {
    #[error("environment variable {0} is not set")]
    Missing(String),
    #[error("unterminated `${{` (write `$${{` for a literal `${{`)")]
    Unterminated,
    #[error(
        "invalid environment variable name `{0}` in `${{...}}`: use letters, digits and `_`, not starting with a digit"
    )]
    InvalidName(String),
}

/// Replaces every `${NAME}` in `value` with the variable's value; `$${` stands for a literal
/// `${`. Substituted text is not scanned again, so a value cannot inject further references.
pub(crate) fn substitute(value: &str, env: &dyn Env) -> Result<String, SubstError> {
    let mut out = String::with_capacity(value.len());
    let mut rest = value;
    while let Some(dollar) = rest.find('$') {
        out.push_str(&rest[..dollar]);
        let tail = &rest[dollar..];
        if let Some(after) = tail.strip_prefix("$${") {
            out.push_str("${");
            rest = after;
        } else if let Some(after) = tail.strip_prefix("${") {
            let end = after.find('}').ok_or(SubstError::Unterminated)?;
            let name = &after[..end];
            if !is_var_name(name) {
                return Err(SubstError::InvalidName(name.to_owned()));
            }
            let var = env
                .var(name)
                .ok_or_else(|| SubstError::Missing(name.to_owned()))?;
            out.push_str(&var);
            rest = &after[end + 1..];
        } else {
            out.push('$');
            rest = &tail[1..];
        }
    }
    out.push_str(rest);
    Ok(out)
}

fn is_var_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn env() -> HashMap<String, String> {
        HashMap::from([
            ("TOKEN".to_owned(), "s3cret".to_owned()),
            ("PORT".to_owned(), "8080".to_owned()),
            ("EMPTY".to_owned(), String::new()),
            ("NESTED".to_owned(), "${TOKEN}".to_owned()),
        ])
    }

    #[test]
    fn substitutes_every_reference() {
        assert_eq!(substitute("${TOKEN}", &env()).unwrap(), "s3cret");
        assert_eq!(
            substitute("0.0.0.0:${PORT}/${TOKEN}", &env()).unwrap(),
            "0.0.0.0:8080/s3cret"
        );
        assert_eq!(substitute("a${EMPTY}b", &env()).unwrap(), "ab");
    }

    #[test]
    fn leaves_other_dollars_alone() {
        assert_eq!(substitute("no refs", &env()).unwrap(), "no refs");
        assert_eq!(
            substitute("$5 and $PORT and $", &env()).unwrap(),
            "$5 and $PORT and $"
        );
        assert_eq!(
            substitute("héllo $ wörld", &env()).unwrap(),
            "héllo $ wörld"
        );
    }

    #[test]
    fn double_dollar_brace_is_a_literal() {
        assert_eq!(substitute("$${TOKEN}", &env()).unwrap(), "${TOKEN}");
        assert_eq!(substitute("a$${b}${PORT}", &env()).unwrap(), "a${b}8080");
    }

    #[test]
    fn substituted_values_are_not_rescanned() {
        assert_eq!(substitute("${NESTED}", &env()).unwrap(), "${TOKEN}");
    }

    #[test]
    fn missing_variable_is_named() {
        let err = substitute("x${CELLGATE_ADMIN_TOKEN}", &env()).unwrap_err();
        assert_eq!(
            err.to_string(),
            "environment variable CELLGATE_ADMIN_TOKEN is not set"
        );
    }

    #[test]
    fn unterminated_and_invalid_references_are_errors() {
        assert_eq!(substitute("${TOKEN", &env()), Err(SubstError::Unterminated));
        assert_eq!(substitute("abc${", &env()), Err(SubstError::Unterminated));
        assert_eq!(
            substitute("${}", &env()),
            Err(SubstError::InvalidName(String::new()))
        );
        assert_eq!(
            substitute("${TOKEN:-x}", &env()),
            Err(SubstError::InvalidName("TOKEN:-x".to_owned()))
        );
        assert_eq!(
            substitute("${1X}", &env()),
            Err(SubstError::InvalidName("1X".to_owned()))
        );
    }

    #[test]
    fn process_env_reads_the_environment() {
        assert!(ProcessEnv.var("PATH").is_some());
        assert_eq!(ProcessEnv.var("CELLGATE_SURELY_UNSET_VARIABLE_42"), None);
    }
}
