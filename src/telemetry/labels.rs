//! The closed sets that label values come from, one type each, so a call site cannot write a
//! value the dashboards and the pre-created zero series do not know.

/// Declares a label's values: an enum, its `ALL`, and `as_str` (what Prometheus shows).
macro_rules! label_values {
    ($(#[$doc:meta])* $name:ident { $($variant:ident = $text:literal),+ $(,)? }) => {
        $(#[$doc])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq)]
        pub enum $name {
            $($variant),+
        }

        impl $name {
            /// Every value, to create each series at zero.
            pub const ALL: &'static [$name] = &[$($name::$variant),+];

            pub fn as_str(self) -> &'static str {
                match self {
                    $($name::$variant => $text),+
                }
            }
        }
    };
}

label_values! {
    /// `result` of a commit or a detector reload.
    Outcome { Ok = "ok", Error = "error" }
}

label_values! {
    /// `kind` of `gatewatch_kafka_rebalances_total`.
    Rebalance { Assign = "assign", Revoke = "revoke", Lost = "lost", Error = "error" }
}

label_values! {
    /// `direction` of the repartition topic's counters.
    Direction { Sent = "sent", Received = "received" }
}

label_values! {
    /// `kind` of a repartition record.
    RepartitionRecord { Event = "event", Heartbeat = "heartbeat" }
}

label_values! {
    /// `result` of a CrowdSec bouncer's request (`forbidden`: a wrong or missing key).
    CrowdsecResult { Ok = "ok", Forbidden = "forbidden" }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_are_unique_prometheus_label_values() {
        for set in [
            Outcome::ALL.iter().map(|v| v.as_str()).collect::<Vec<_>>(),
            Rebalance::ALL.iter().map(|v| v.as_str()).collect(),
            Direction::ALL.iter().map(|v| v.as_str()).collect(),
            RepartitionRecord::ALL.iter().map(|v| v.as_str()).collect(),
            CrowdsecResult::ALL.iter().map(|v| v.as_str()).collect(),
        ] {
            let mut u = set.clone();
            u.sort();
            u.dedup();
            assert_eq!(u.len(), set.len(), "{set:?}");
            assert!(set.iter().all(|v| v.bytes().all(|b| b.is_ascii_lowercase() || b == b'_')), "{set:?}");
        }
    }
}
