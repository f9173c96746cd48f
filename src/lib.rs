//! gatewatch: API-gateway access logs in, credential-abuse alerts out.
//!
//! Stages, in the order a record meets them: [`normalize`] (one parser per
//! gateway format, secrets fingerprinted on the way in), [`scrub`],
//! [`engine`] (event-time ordering, watermarks), [`detectors`] (pure logic),
//! and the runtime wiring in [`app`].

// The wall clock is banned in clippy.toml and allowed only in the runtime modules below
// (timeouts, backoff, audit times, where to start reading); never in detection code.
#[allow(clippy::disallowed_methods)]
pub mod actions;
#[allow(clippy::disallowed_methods)]
pub mod admin;
#[allow(clippy::disallowed_methods)]
pub mod app;
pub mod bytes;
pub mod config;
pub mod detectors;
pub mod engine;
pub mod event;
pub mod normalize;
pub mod repartition;
pub mod scrub;
pub mod sigma;
/// Labelled, simulated gateway traffic: development and demo tooling, not the service
/// (`--no-default-features` builds without it).
#[cfg(feature = "simulate")]
pub mod simulate;
#[allow(clippy::disallowed_methods)]
pub mod source;
pub mod state;
pub mod telemetry;
