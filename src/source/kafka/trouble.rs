//! One clear line when the brokers cannot be reached, not a flood.
//!
//! librdkafka reports a refused connection three ways at once (a log line, the error
//! callback, a consumer poll error) and again on every reconnect attempt: about 40 lines
//! a second. Every Kafka client of gatewatch routes its connectivity errors here instead.
//! The first says what is wrong and that gatewatch keeps retrying (librdkafka's reconnect
//! backoff, up to `reconnect.backoff.max.ms`); then a reminder at most every
//! [`REMIND_EVERY`], with how many errors it stands for; and one line when a broker
//! answers again. The errors are counted whatever is logged.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use rdkafka::error::{KafkaError, RDKafkaErrorCode};

/// How often a reminder is logged while the brokers stay unreachable.
pub const REMIND_EVERY: Duration = Duration::from_secs(60);

#[derive(Default)]
struct State {
    down_since: Option<Instant>,
    last_line: Option<Instant>,
    since_last_line: u64,
    total: u64,
}

/// What to say about one more connectivity error.
#[derive(Debug, PartialEq, Eq)]
pub enum Say {
    /// The first error of an outage.
    Down,
    /// A reminder: still down, with the errors since the last line.
    StillDown { for_secs: u64, errors: u64 },
    /// Nothing: said recently.
    Quiet,
}

/// The connectivity state of the brokers as the clients see it.
pub struct BrokerTrouble {
    state: Mutex<State>,
    /// Set while an outage is open: the hot path checks it without the lock.
    down: AtomicBool,
}

/// Shared by every Kafka client of the process: they talk to one cluster.
pub static BROKERS: BrokerTrouble = BrokerTrouble::new();

impl BrokerTrouble {
    pub const fn new() -> Self {
        BrokerTrouble {
            state: Mutex::new(State { down_since: None, last_line: None, since_last_line: 0, total: 0 }),
            down: AtomicBool::new(false),
        }
    }

    /// Decides what to say about an error seen at `now` (no logging: see [`Self::report`]).
    pub fn observe(&self, now: Instant) -> Say {
        let mut st = self.state.lock().unwrap_or_else(|p| p.into_inner());
        st.total += 1;
        let Some(since) = st.down_since else {
            st.down_since = Some(now);
            self.down.store(true, Ordering::Relaxed);
            st.last_line = Some(now);
            st.since_last_line = 0;
            return Say::Down;
        };
        st.since_last_line += 1;
        match st.last_line {
            Some(t) if now.saturating_duration_since(t) < REMIND_EVERY => Say::Quiet,
            _ => {
                let errors = std::mem::take(&mut st.since_last_line);
                st.last_line = Some(now);
                Say::StillDown { for_secs: now.saturating_duration_since(since).as_secs(), errors }
            }
        }
    }

    /// A connectivity error from `client`: logged per the rules above.
    pub fn report(&self, client: &str, error: &dyn std::fmt::Display) {
        match self.observe(Instant::now()) {
            Say::Down => tracing::error!(
                client,
                %error,
                "cannot reach the Kafka brokers; retrying with backoff (a reminder every {}s until they answer)",
                REMIND_EVERY.as_secs()
            ),
            Say::StillDown { for_secs, errors } => tracing::warn!(
                client,
                %error,
                "still cannot reach the Kafka brokers after {for_secs}s ({errors} errors since the last line)"
            ),
            Say::Quiet => {}
        }
    }

    /// A broker answered (a message, an assignment, a delivery): ends an outage, if any.
    pub fn answered(&self) {
        if !self.down.load(Ordering::Relaxed) {
            return;
        }
        self.down.store(false, Ordering::Relaxed);
        let mut st = self.state.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(since) = st.down_since.take() {
            tracing::warn!("Kafka brokers reachable again after {}s", since.elapsed().as_secs());
        }
    }

    /// Connectivity errors seen so far.
    pub fn errors_total(&self) -> u64 {
        self.state.lock().unwrap_or_else(|p| p.into_inner()).total
    }
}

impl Default for BrokerTrouble {
    fn default() -> Self {
        Self::new()
    }
}

/// Whether an error says the brokers cannot be reached (rather than something about a request).
pub fn is_connectivity(e: &KafkaError) -> bool {
    let code = match e {
        KafkaError::Global(c) | KafkaError::MessageConsumption(c) | KafkaError::MetadataFetch(c) => *c,
        _ => return false,
    };
    matches!(
        code,
        RDKafkaErrorCode::AllBrokersDown
            | RDKafkaErrorCode::Resolve
            | RDKafkaErrorCode::Authentication
            | RDKafkaErrorCode::SSL
    )
}

/// Whether an error is one broker's connection failing, which librdkafka retries by itself
/// and follows with `AllBrokersDown` when it was the last one: worth a debug line only.
pub fn is_transport(e: &KafkaError) -> bool {
    matches!(
        e,
        KafkaError::Global(RDKafkaErrorCode::BrokerTransportFailure | RDKafkaErrorCode::NetworkException)
            | KafkaError::MessageConsumption(RDKafkaErrorCode::BrokerTransportFailure)
    )
}

/// Whether a librdkafka log line repeats a connection failure the error callback reports too.
pub fn is_connection_log(facility: &str) -> bool {
    matches!(facility, "FAIL" | "BROKERFAIL" | "CONNECT")
}

#[cfg(test)]
mod tests {
    #![allow(clippy::disallowed_methods)] // the limiter works on wall time; the test moves it by hand

    use super::*;

    #[test]
    fn one_line_then_a_reminder_a_minute_then_one_when_back() {
        let t = BrokerTrouble::new();
        let t0 = Instant::now();
        assert_eq!(t.observe(t0), Say::Down);
        for i in 1..2_400 {
            // 40 errors a second for a minute: nothing more said
            assert_eq!(t.observe(t0 + Duration::from_millis(i * 25)), Say::Quiet, "error {i}");
        }
        assert_eq!(t.observe(t0 + Duration::from_secs(61)), Say::StillDown { for_secs: 61, errors: 2_400 });
        assert_eq!(t.observe(t0 + Duration::from_secs(62)), Say::Quiet);
        t.answered();
        assert_eq!(t.observe(t0 + Duration::from_secs(90)), Say::Down, "a new outage is said again");
        assert_eq!(t.errors_total(), 2_403);
    }

    #[test]
    fn connectivity_errors_are_told_from_others() {
        assert!(is_connectivity(&KafkaError::Global(RDKafkaErrorCode::AllBrokersDown)));
        assert!(is_connectivity(&KafkaError::MessageConsumption(RDKafkaErrorCode::AllBrokersDown)));
        assert!(is_transport(&KafkaError::MessageConsumption(RDKafkaErrorCode::BrokerTransportFailure)));
        assert!(!is_connectivity(&KafkaError::MessageConsumption(RDKafkaErrorCode::UnknownTopicOrPartition)));
    }
}
