//! gatewatch: API-gateway access logs in, credential-abuse alerts out.
//!
//! Stages, in the order a record meets them: [`normalize`] (one parser per
//! gateway format, secrets fingerprinted on the way in), [`scrub`],
//! [`engine`] (event-time ordering, watermarks), [`detectors`] (pure logic),
//! and the runtime wiring in [`app`].

pub mod actions;
pub mod admin;
pub mod app;
pub mod config;
pub mod detectors;
pub mod engine;
pub mod event;
pub mod normalize;
pub mod scrub;
pub mod simulate;
pub mod source;
pub mod state;
pub mod telemetry;
