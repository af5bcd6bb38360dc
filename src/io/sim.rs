//! The deterministic, fault-injecting, in-memory backend (being written).
