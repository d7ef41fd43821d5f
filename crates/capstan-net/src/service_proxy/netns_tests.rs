//! Root tests (being written).
