//! Secret scrubbing. Nothing downstream of this stage sees a raw secret.
//!
//! - [`fingerprint`]: the keyed fingerprint that replaces a token.

pub mod fingerprint;

pub use fingerprint::Fingerprinter;
