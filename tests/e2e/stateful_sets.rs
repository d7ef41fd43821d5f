//! Placeholder: e2e tests for the stateful_set controller are being written.
