//! `[[cells]]`: the independent copies of the backend stack users are split across.

use std::collections::HashMap;

use toml::Spanned;

use super::raw::RawCell;
use super::tuning::{self, CellTuning, RawTuning};
use super::upstream::Upstream;
use super::validate::{Ctx, Result, is_simple_name, or_default};

/// Default [`CellConfig::max_in_flight`].
pub const DEFAULT_MAX_IN_FLIGHT: usize = 512;

/// One `[[cells]]` entry.
#[derive(Debug, Clone, PartialEq)]
pub struct CellConfig {
    /// Unique name: 1 to 64 of `[A-Za-z0-9._-]`. Shown in `X-Cell` and the admin API.
    pub name: String,
    /// Backend instances; never empty, no duplicates.
    pub upstreams: Vec<Upstream>,
    /// Share of users placed on this cell relative to the others; finite and `>= 0`.
    /// Default 1.0. At least one cell has a positive weight.
    pub weight: f64,
    /// Bulkhead: requests in flight to this cell beyond this get 503 at once. Default 512,
    /// at least 1.
    pub max_in_flight: usize,
    /// **Extension.** Requests per second the cell is sized for; `cellctl plan drain` warns
    /// when a drain would push a receiving cell above it. Default: unknown (no warning).
    pub capacity_rps: Option<f64>,
    /// Breaker, outlier detection, health checks and retries of this cell (the optional
    /// `[cells.breaker]`, `[cells.outlier]`, `[cells.health_check]`, `[cells.retry]` tables).
    pub tuning: CellTuning,
}

impl CellConfig {
    /// A cell with default weight and bulkhead.
    pub fn new(name: impl Into<String>, upstreams: Vec<Upstream>) -> Self {
        Self {
            name: name.into(),
            upstreams,
            weight: 1.0,
            max_in_flight: DEFAULT_MAX_IN_FLIGHT,
            capacity_rps: None,
            tuning: CellTuning::default(),
        }
    }
}

pub(super) fn build_all(raw: &[Spanned<RawCell>], ctx: &Ctx<'_>) -> Result<Vec<CellConfig>> {
    let Some(first) = raw.first() else {
        return Err(ctx.error(
            "at least one [[cells]] entry is required, e.g. [[cells]] name = \"cell-1\" upstreams = [\"127.0.0.1:7001\"]",
        ));
    };
    let mut seen: HashMap<String, usize> = HashMap::with_capacity(raw.len());
    let mut cells = Vec::with_capacity(raw.len());
    for cell in raw {
        let built = build(cell.get_ref(), ctx)?;
        let name_span = cell.get_ref().name.span();
        if let Some(line) = seen.insert(built.name.clone(), ctx.line_of(name_span.clone())) {
            return Err(ctx.error_at(
                name_span,
                format!(
                    "duplicate cell name `{}` (first defined at line {line})",
                    built.name
                ),
            ));
        }
        cells.push(built);
    }
    if cells.iter().all(|cell| cell.weight == 0.0) {
        return Err(ctx.error_at(
            first.span(),
            "all cells have weight 0: at least one cell needs a positive weight",
        ));
    }
    Ok(cells)
}

fn build(raw: &RawCell, ctx: &Ctx<'_>) -> Result<CellConfig> {
    let name = ctx.string(&raw.name)?;
    if !is_simple_name(&name) {
        return Err(ctx.error_at(
            raw.name.span(),
            format!(
                "invalid cell name `{}`: use 1 to 64 ASCII letters, digits, `.`, `_` or `-`",
                name.escape_debug()
            ),
        ));
    }
    let list = &raw.upstreams;
    if list.get_ref().is_empty() {
        return Err(ctx.error_at(
            list.span(),
            format!("cell `{name}` has no upstreams: list at least one `host:port`"),
        ));
    }
    let mut upstreams: Vec<Upstream> = Vec::with_capacity(list.get_ref().len());
    for item in list.get_ref() {
        let upstream = ctx
            .string(item)?
            .parse::<Upstream>()
            .map_err(|e| ctx.error_at(item.span(), e.to_string()))?;
        if upstreams.contains(&upstream) {
            return Err(ctx.error_at(
                item.span(),
                format!("duplicate upstream `{upstream}` in cell `{name}`"),
            ));
        }
        upstreams.push(upstream);
    }
    let weight = or_default(raw.weight.as_ref(), 1.0, |v| {
        let weight = v.get_ref().0;
        if weight.is_finite() && weight >= 0.0 {
            Ok(weight)
        } else {
            Err(ctx.error_at(
                v.span(),
                format!("invalid weight {weight} for cell `{name}`: must be a finite number >= 0"),
            ))
        }
    })?;
    let max_in_flight = or_default(raw.max_in_flight.as_ref(), DEFAULT_MAX_IN_FLIGHT, |v| {
        ctx.usize_at_least(v, 1, &format!("`max_in_flight` of cell `{name}`"))
    })?;
    let capacity_rps = raw
        .capacity_rps
        .as_ref()
        .map(|v| {
            let rps = v.get_ref().0;
            if rps.is_finite() && rps > 0.0 {
                Ok(rps)
            } else {
                Err(ctx.error_at(
                    v.span(),
                    format!("invalid capacity_rps {rps} for cell `{name}`: must be a number > 0"),
                ))
            }
        })
        .transpose()?;
    let tuning = tuning::build(
        &RawTuning {
            breaker: raw.breaker.as_ref(),
            outlier: raw.outlier.as_ref(),
            health_check: raw.health_check.as_ref(),
            retry: raw.retry.as_ref(),
        },
        &name,
        ctx,
    )?;
    Ok(CellConfig {
        name,
        upstreams,
        weight,
        max_in_flight,
        capacity_rps,
        tuning,
    })
}
