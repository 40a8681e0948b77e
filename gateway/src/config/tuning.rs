//! Per-cell containment tuning: the optional `[cells.breaker]`, `[cells.outlier]`,
//! `[cells.health_check]` and `[cells.retry]` tables of a `[[cells]]` entry. Every key is
//! optional; the defaults (in `docs/containment.md`) apply to what is left out.

use std::ops::Range;
use std::time::Duration;

use cell_router::containment::{
    BreakerConfig, HealthCheckConfig, InvalidConfig, OutlierConfig, RetryBudgetConfig,
    RetryPolicyConfig,
};
use serde::Deserialize;
use toml::Spanned;

use super::raw::{Int, Number, Text};
use super::validate::{Ctx, Result};

/// Containment settings of one cell.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct CellTuning {
    /// The cell's circuit breaker.
    pub breaker: BreakerConfig,
    /// Passive outlier detection and ejection of its upstreams.
    pub outlier: OutlierConfig,
    /// Active health checks of its upstreams.
    pub health_check: HealthCheckConfig,
    /// The retry budget (extra requests retries may add).
    pub retry_budget: RetryBudgetConfig,
    /// Which requests are retried, how often, with what backoff.
    pub retry_policy: RetryPolicyConfig,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, expecting = "a [cells.breaker] table")]
pub(super) struct RawBreaker {
    window: Option<Text>,
    min_requests: Option<Int>,
    error_ratio: Option<Spanned<Number>>,
    open_for: Option<Text>,
    max_open_for: Option<Text>,
    half_open_probes: Option<Int>,
    close_after: Option<Int>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, expecting = "a [cells.outlier] table")]
pub(super) struct RawOutlier {
    consecutive_failures: Option<Int>,
    base_ejection: Option<Text>,
    max_ejection: Option<Text>,
    max_ejection_share: Option<Spanned<Number>>,
    latency_ratio: Option<Spanned<Number>>,
    latency_min: Option<Text>,
    slow_start: Option<Text>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, expecting = "a [cells.health_check] table")]
pub(super) struct RawHealthCheck {
    path: Option<Text>,
    interval: Option<Text>,
    timeout: Option<Text>,
    healthy_threshold: Option<Int>,
    unhealthy_threshold: Option<Int>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, expecting = "a [cells.retry] table")]
pub(super) struct RawRetry {
    budget_ratio: Option<Spanned<Number>>,
    budget_min_per_second: Option<Int>,
    max_attempts: Option<Int>,
    backoff_base: Option<Text>,
    backoff_max: Option<Text>,
}

/// The raw tables, as found in one `[[cells]]` entry.
pub(super) struct RawTuning<'a> {
    pub breaker: Option<&'a Spanned<RawBreaker>>,
    pub outlier: Option<&'a Spanned<RawOutlier>>,
    pub health_check: Option<&'a Spanned<RawHealthCheck>>,
    pub retry: Option<&'a Spanned<RawRetry>>,
}

/// Reads the overrides of cell `cell` over the defaults, then validates each table as a
/// whole (an error points at the table and names the key and its requirement).
pub(super) fn build(raw: &RawTuning<'_>, cell: &str, ctx: &Ctx<'_>) -> Result<CellTuning> {
    let mut t = CellTuning::default();
    let f = Fields { ctx, cell };
    if let Some(table) = raw.breaker {
        let r = table.get_ref();
        let b = &mut t.breaker;
        f.duration(&r.window, "breaker.window", &mut b.window)?;
        f.count(&r.min_requests, "breaker.min_requests", &mut b.min_requests)?;
        f.number(&r.error_ratio, &mut b.error_ratio);
        f.duration(&r.open_for, "breaker.open_for", &mut b.open_for)?;
        f.duration(&r.max_open_for, "breaker.max_open_for", &mut b.max_open_for)?;
        f.count(
            &r.half_open_probes,
            "breaker.half_open_probes",
            &mut b.half_open_probes,
        )?;
        f.count(&r.close_after, "breaker.close_after", &mut b.close_after)?;
        f.check("breaker", table.span(), b.validate())?;
    }
    if let Some(table) = raw.outlier {
        let r = table.get_ref();
        let o = &mut t.outlier;
        f.count(
            &r.consecutive_failures,
            "outlier.consecutive_failures",
            &mut o.consecutive_failures,
        )?;
        f.duration(
            &r.base_ejection,
            "outlier.base_ejection",
            &mut o.base_ejection,
        )?;
        f.duration(&r.max_ejection, "outlier.max_ejection", &mut o.max_ejection)?;
        f.number(&r.max_ejection_share, &mut o.max_ejection_share);
        f.number(&r.latency_ratio, &mut o.latency_ratio);
        f.duration(&r.latency_min, "outlier.latency_min", &mut o.latency_min)?;
        f.duration(&r.slow_start, "outlier.slow_start", &mut o.slow_start)?;
        f.check("outlier", table.span(), o.validate())?;
    }
    if let Some(table) = raw.health_check {
        let r = table.get_ref();
        let h = &mut t.health_check;
        if let Some(path) = &r.path {
            let p = ctx.string(path)?;
            if !p.starts_with('/') {
                return Err(ctx.error_at(
                    path.span(),
                    format!("`health_check.path` of cell `{cell}` must start with `/`, got `{p}`"),
                ));
            }
            h.path = p;
        }
        f.duration(&r.interval, "health_check.interval", &mut h.interval)?;
        f.duration(&r.timeout, "health_check.timeout", &mut h.timeout)?;
        f.count(
            &r.healthy_threshold,
            "health_check.healthy_threshold",
            &mut h.healthy_threshold,
        )?;
        f.count(
            &r.unhealthy_threshold,
            "health_check.unhealthy_threshold",
            &mut h.unhealthy_threshold,
        )?;
        f.check("health_check", table.span(), h.validate())?;
    }
    if let Some(table) = raw.retry {
        let r = table.get_ref();
        f.number(&r.budget_ratio, &mut t.retry_budget.ratio);
        f.count(
            &r.budget_min_per_second,
            "retry.budget_min_per_second",
            &mut t.retry_budget.min_per_second,
        )?;
        f.count(
            &r.max_attempts,
            "retry.max_attempts",
            &mut t.retry_policy.max_attempts,
        )?;
        f.duration(
            &r.backoff_base,
            "retry.backoff_base",
            &mut t.retry_policy.backoff_base,
        )?;
        f.duration(
            &r.backoff_max,
            "retry.backoff_max",
            &mut t.retry_policy.backoff_max,
        )?;
        f.check("retry", table.span(), t.retry_budget.validate())?;
        f.check("retry", table.span(), t.retry_policy.validate())?;
    }
    Ok(t)
}

/// Field readers that name the cell in their errors.
struct Fields<'a, 'b> {
    ctx: &'a Ctx<'b>,
    cell: &'a str,
}

impl Fields<'_, '_> {
    fn duration(&self, v: &Option<Text>, key: &str, out: &mut Duration) -> Result<()> {
        if let Some(v) = v {
            *out = self
                .ctx
                .duration(v, &format!("`{key}` of cell `{}`", self.cell))?;
        }
        Ok(())
    }

    fn count(&self, v: &Option<Int>, key: &str, out: &mut u32) -> Result<()> {
        if let Some(v) = v {
            let n = self
                .ctx
                .int_at_least(v, 0, &format!("`{key}` of cell `{}`", self.cell))?;
            *out = u32::try_from(n).map_err(|_| {
                self.ctx.error_at(
                    v.span(),
                    format!("`{key}` of cell `{}` is too large, got {n}", self.cell),
                )
            })?;
        }
        Ok(())
    }

    /// Numbers are range-checked by the table's `validate`.
    fn number(&self, v: &Option<Spanned<Number>>, out: &mut f64) {
        if let Some(v) = v {
            *out = v.get_ref().0;
        }
    }

    /// `table`: the TOML table name, which the error names (the library's section names
    /// differ).
    fn check(
        &self,
        table: &str,
        span: Range<usize>,
        result: std::result::Result<(), InvalidConfig>,
    ) -> Result<()> {
        result.map_err(|e| {
            let field = match e.field {
                "ratio" => "budget_ratio",
                "min_per_second" => "budget_min_per_second",
                other => other,
            };
            self.ctx.error_at(
                span,
                format!("cell `{}`: `{table}.{field}` {}", self.cell, e.requirement),
            )
        })
    }
}
