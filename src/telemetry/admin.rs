//! Metrics of the admin listener's limits: connections open, connections refused at the cap,
//! and what each timeout cut. Labels are a closed set (`header`, `request`, `idle`).

use prometheus::{IntCounter, IntCounterVec, IntGauge, Opts, Registry};

/// The `kind` label values of [`AdminListenerMetrics::timeouts`].
pub const TIMEOUT_KINDS: &[&str] = &["header", "request", "idle"];

/// Handles registered once, when the listener starts.
#[derive(Clone)]
pub struct AdminListenerMetrics {
    /// Connections open now.
    pub connections: IntGauge,
    /// Connections answered 503 and closed at accept because `max_connections` were open.
    pub refused: IntCounter,
    /// Connections closed by `header_timeout` or `idle_timeout`, and requests answered 503 by
    /// `request_timeout`, by kind.
    pub timeouts: IntCounterVec,
}

impl AdminListenerMetrics {
    pub fn register(r: &Registry) -> prometheus::Result<Self> {
        let connections = IntGauge::new("gatewatch_admin_connections", "Connections open on the admin listener")?;
        r.register(Box::new(connections.clone()))?;
        let refused = IntCounter::new(
            "gatewatch_admin_connections_refused_total",
            "Admin connections refused because [admin] max_connections were open",
        )?;
        r.register(Box::new(refused.clone()))?;
        let timeouts = IntCounterVec::new(
            Opts::new(
                "gatewatch_admin_timeouts_total",
                "Admin connections closed (header, idle) or requests answered 503 (request) by a timeout",
            ),
            &["kind"],
        )?;
        r.register(Box::new(timeouts.clone()))?;
        for k in TIMEOUT_KINDS {
            timeouts.with_label_values(&[k]);
        }
        Ok(AdminListenerMetrics { connections, refused, timeouts })
    }
}
