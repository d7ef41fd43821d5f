//! Placeholder: e2e tests for the daemon_set controller are being written.
