//! End-to-end tests: a real `capstan server` driven by the installed `kubectl` (and curl for raw
//! HTTP checks). Run with `cargo test --test e2e`.

mod harness;

mod api_server;
mod clients;
mod concurrency;
mod controllers;
mod daemon_sets;
mod disruption;
mod disruption_controller;
mod durability;
mod garbage_collection;
mod image_pull;
mod jobs;
mod kube_rs;
mod networking;
mod nodes;
mod openapi;
mod pods;
mod probes;
mod protobuf;
mod server_side_apply;
mod stateful_sets;
mod workloads;
