//! Cells as the data plane sees them: placement plus pooled clients to each upstream.

use cell_router::{CellIndex, CellSpec, Placement, PlacementError};
use http::HeaderValue;
use http::uri::Authority;

use super::containment::CellContainment;
use super::pool::{Pool, PoolConfig};
use crate::config::{CellConfig, ServerConfig};
use crate::metrics::{CellMetrics, Metrics};

/// Why the cell set could not be built from config.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    /// The placement rejected the cells (no cells, duplicate names, bad weights).
    #[error("invalid cells: {0}")]
    Placement(#[from] PlacementError),
    /// An upstream address is not a valid URI authority.
    #[error("cell {cell}: invalid upstream address {upstream:?}")]
    Upstream {
        /// The cell naming it.
        cell: String,
        /// The offending address.
        upstream: String,
    },
    /// A cell name cannot be sent as an `X-Cell` header value.
    #[error("cell name {0:?} is not a valid header value")]
    CellName(String),
}

/// One upstream instance of a cell, with its own connection pool.
///
/// A pool per upstream keeps the pool's lock per instance: no lock is shared by all requests.
#[derive(Debug)]
pub struct Upstream {
    authority: Authority,
    pool: Pool,
}

impl Upstream {
    /// `host:port` of this upstream (for logs and metrics only, never for clients).
    pub fn authority(&self) -> &Authority {
        &self.authority
    }

    /// The keep-alive HTTP/1.1 connections to this upstream.
    pub fn pool(&self) -> &Pool {
        &self.pool
    }
}

/// One cell: its upstreams and pre-resolved metric handles.
#[derive(Debug)]
pub struct Cell {
    name: String,
    header: HeaderValue,
    upstreams: Box<[Upstream]>,
    metrics: CellMetrics,
    containment: CellContainment,
}

impl Cell {
    /// The configured name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The name as an `X-Cell` header value.
    pub fn header(&self) -> &HeaderValue {
        &self.header
    }

    /// The cell's metric handles.
    pub fn metrics(&self) -> &CellMetrics {
        &self.metrics
    }

    /// Upstream instances, in config order.
    pub fn upstreams(&self) -> &[Upstream] {
        &self.upstreams
    }

    /// Breaker, bulkhead, upstream choice, outlier detection and retry budget of this cell.
    pub fn containment(&self) -> &CellContainment {
        &self.containment
    }
}

/// All cells, indexed like the [`Placement`] built from them.
#[derive(Debug)]
pub struct Cells {
    placement: Placement,
    cells: Box<[Cell]>,
}

impl Cells {
    /// Builds placement, pools and metric handles from config.
    ///
    /// # Errors
    /// See [`BuildError`]; config validation normally rules all of them out first.
    pub fn new(
        cells: &[CellConfig],
        server: &ServerConfig,
        metrics: &Metrics,
    ) -> Result<Cells, BuildError> {
        let placement = Placement::new(cells.iter().map(|c| CellSpec::new(&*c.name, c.weight)))?;
        let cells = cells
            .iter()
            .map(|c| build_cell(c, server, metrics))
            .collect::<Result<Vec<_>, _>>()?
            .into_boxed_slice();
        Ok(Cells { placement, cells })
    }

    /// The placement over these cells.
    pub fn placement(&self) -> &Placement {
        &self.placement
    }

    /// The cell at `idx`.
    pub fn get(&self, idx: CellIndex) -> Option<&Cell> {
        self.cells.get(idx.get())
    }

    /// Every cell, in config order.
    pub fn iter(&self) -> impl Iterator<Item = &Cell> {
        self.cells.iter()
    }
}

fn build_cell(
    config: &CellConfig,
    server: &ServerConfig,
    metrics: &Metrics,
) -> Result<Cell, BuildError> {
    let cell_metrics = metrics.cell(&config.name);
    let upstreams = config
        .upstreams
        .iter()
        .map(|u| {
            let addr = u.authority();
            let authority =
                Authority::try_from(addr.as_str()).map_err(|_| BuildError::Upstream {
                    cell: config.name.clone(),
                    upstream: addr.clone(),
                })?;
            Ok(Upstream {
                pool: Pool::new(
                    &authority,
                    pool_config(server),
                    cell_metrics.resent().clone(),
                ),
                authority,
            })
        })
        .collect::<Result<Vec<_>, BuildError>>()?;
    Ok(Cell {
        header: HeaderValue::from_str(&config.name)
            .map_err(|_| BuildError::CellName(config.name.clone()))?,
        name: config.name.clone(),
        containment: CellContainment::new(
            upstreams.len(),
            config.max_in_flight,
            &config.tuning,
            metrics.containment(&config.name),
            std::time::Instant::now(),
        ),
        upstreams: upstreams.into_boxed_slice(),
        metrics: cell_metrics,
    })
}

fn pool_config(server: &ServerConfig) -> PoolConfig {
    PoolConfig {
        connect_timeout: server.connect_timeout,
        idle_timeout: server.pool_idle_timeout,
        max_idle: server.pool_max_idle_per_upstream,
    }
}
