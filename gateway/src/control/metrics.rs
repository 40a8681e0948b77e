//! Control-plane metrics, computed at scrape time from the plane's state.

use std::sync::Arc;

use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;

use super::shared::Shared;

/// A [`prometheus_client`] collector over a plane's shared state.
#[derive(Debug)]
pub(crate) struct Collector {
    shared: Arc<Shared>,
}

impl Collector {
    pub(crate) fn new(shared: Arc<Shared>) -> Self {
        Self { shared }
    }
}

impl prometheus_client::collector::Collector for Collector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let shared = &self.shared;
        let version = ConstGauge::new(i64::try_from(shared.version()).unwrap_or(i64::MAX));
        encode(
            &mut encoder,
            "directory_version",
            "Version of the cell directory this gateway applies",
            &version,
        )?;
        let connected = ConstGauge::new(i64::from(shared.is_connected()));
        encode(
            &mut encoder,
            "control_plane_connected",
            "1 while the control-plane store answers, 0 while this gateway serves its \
             last-known directory",
            &connected,
        )?;
        let errors = ConstCounter::new(shared.errors());
        encode(
            &mut encoder,
            "control_plane_errors",
            "Failed control-plane store calls",
            &errors,
        )?;
        let age = ConstGauge::new(shared.sync_age_seconds());
        encode(
            &mut encoder,
            "directory_sync_age_seconds",
            "Seconds since this gateway last confirmed its directory is current with the store \
             (since start if never)",
            &age,
        )
    }
}

fn encode(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    metric: &impl EncodeMetric,
) -> Result<(), std::fmt::Error> {
    let metric_encoder = encoder.encode_descriptor(name, help, None, metric.metric_type())?;
    metric.encode(metric_encoder)
}
