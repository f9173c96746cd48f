//! Wiring: builds every stage from the configuration and runs the commands.

pub mod cli;
