//! Sources: where access-log messages come from. The live service reads Kafka
//! ([`kafka`]); replay reads files through `app::replay`.

pub mod kafka;
