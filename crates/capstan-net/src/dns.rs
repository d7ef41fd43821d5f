//! Cluster DNS (being written).
