//! Pure data structures detectors keep their per-key state in. No clock, no I/O:
//! time enters only as event time.

pub mod key;
pub mod keyed;
pub mod window;

pub use key::key128;
pub use keyed::{EvictionReason, KeyedState, StateStats};
pub use window::{BucketCounter, SlidingCount, SlidingSet};
