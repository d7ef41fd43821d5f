//! Root tests in network namespaces (to come).
