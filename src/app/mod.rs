//! Wiring: builds every stage from the configuration and runs the commands.

pub mod check;
pub mod cli;
#[cfg(feature = "simulate")]
pub mod demo;
pub mod explain;
pub mod inspect;
mod load_config;
pub mod redrive;
pub mod replay;
pub mod run;
pub mod scrub;
