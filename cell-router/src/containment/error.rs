//! [`InvalidConfig`]: a containment `*Config` value out of range.

use thiserror::Error;

/// A containment config field out of its valid range; `validate()` on each `*Config` returns it.
///
/// Constructors never fail or panic: they clamp out-of-range values to the nearest valid one.
/// Validate first to tell the operator instead.
#[derive(Clone, Debug, Error, PartialEq, Eq)]
#[error("{section}.{field}: {requirement}")]
pub struct InvalidConfig {
    /// The config struct, e.g. `circuit_breaker`.
    pub section: &'static str,
    /// The offending field, e.g. `error_ratio`.
    pub field: &'static str,
    /// What a valid value looks like, e.g. `must be in (0, 1]`.
    pub requirement: &'static str,
}

/// `Err` for `section.field` unless `ok`.
pub(crate) fn check(
    ok: bool,
    section: &'static str,
    field: &'static str,
    requirement: &'static str,
) -> Result<(), InvalidConfig> {
    if ok {
        Ok(())
    } else {
        Err(InvalidConfig {
            section,
            field,
            requirement,
        })
    }
}

/// Whether `x` is a ratio in `(0, 1]`.
pub(crate) fn is_ratio(x: f64) -> bool {
    x > 0.0 && x <= 1.0
}
