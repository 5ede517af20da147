//! The process's metrics: one Prometheus recorder for every crate's
//! `metrics` counters, rendered as text when the web app is asked for
//! `GET /metrics`.

use std::sync::Arc;
use std::time::Duration;

use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};

/// The installed recorder.
pub(crate) struct Exporter {
    handle: PrometheusHandle,
}

/// Installs the recorder for this process (once; `None` if another already is).
pub(crate) fn install() -> Option<Exporter> {
    let handle = match PrometheusBuilder::new().install_recorder() {
        Ok(h) => h,
        Err(e) => {
            tracing::warn!("haven: metrics are off: {e}");
            return None;
        }
    };
    // Histograms keep their samples until upkeep folds them in; without a
    // scraper they would grow for ever.
    let h = handle.clone();
    let _ = std::thread::Builder::new().name("haven-metrics".into()).spawn(move || {
        loop {
            std::thread::sleep(Duration::from_secs(5));
            h.run_upkeep();
        }
    });
    Some(Exporter { handle })
}

impl Exporter {
    /// What the web app needs to answer `GET /metrics`: to machines on the
    /// loopback address, or to anyone with `HAVEN_METRICS_TOKEN`.
    pub(crate) fn hook(&self) -> haven_safeguard::MetricsHook {
        let handle = self.handle.clone();
        let token = std::env::var("HAVEN_METRICS_TOKEN").ok().filter(|t| !t.is_empty());
        haven_safeguard::MetricsHook { render: Arc::new(move || handle.render()), token }
    }
}
