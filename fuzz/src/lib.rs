//! What the fuzz targets share: the first input byte picks a served kind, and whatever the
//! decoding or patch produced goes through the create path of a real registry (on a memory
//! store, as a dry run): typed decoding, conversion, defaults, validation and encoding.

use std::sync::{Arc, OnceLock};

use capstan_api::resource::{RESOURCES, ResourceInfo};
use capstan_apiserver::patch::{self, PatchType};
use capstan_apiserver::registry::{FieldValidation, Registry, WriteOptions};
use capstan_store::KvStore;
use serde_json::{Value, json};

struct World {
    runtime: tokio::runtime::Runtime,
    registry: Registry,
}

fn world() -> &'static World {
    static WORLD: OnceLock<World> = OnceLock::new();
    WORLD.get_or_init(|| {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("a tokio runtime");
        let registry = Registry::new(Arc::new(KvStore::memory()));
        let namespaces = capstan_api::resource::find("", "v1", "namespaces").unwrap();
        runtime
            .block_on(registry.ensure(namespaces, json!({"metadata": {"name": "default"}})))
            .expect("the default namespace");
        World { runtime, registry }
    })
}

/// The kind the first byte picks, and the rest of the input.
pub fn split_kind(data: &[u8]) -> Option<(&'static ResourceInfo, &[u8])> {
    let (first, rest) = data.split_first()?;
    Some((&RESOURCES[*first as usize % RESOURCES.len()], rest))
}

/// Runs `body` through the create path as a dry run; errors are fine, panics are bugs.
pub fn admit(resource: &'static ResourceInfo, body: Value) {
    let world = world();
    let namespace = resource.namespaced.then_some("default");
    for field_validation in [FieldValidation::Strict, FieldValidation::Warn] {
        let options = WriteOptions {
            dry_run: true,
            field_validation,
            field_manager: Some("fuzz".into()),
            ..WriteOptions::default()
        };
        let _ = world.runtime.block_on(world.registry.create(
            resource,
            namespace,
            body.clone(),
            options,
        ));
    }
}

/// A request body as the handler decodes it, then admitted.
pub fn decode_and_admit(content_type: &str, data: &[u8]) {
    let Some((resource, body)) = split_kind(data) else {
        return;
    };
    if let Ok(value) = capstan_apiserver::handler::decode_body(Some(content_type), body) {
        admit(resource, value);
    }
}

/// Input: kind byte, the current object as JSON, a 0xFF byte (never in UTF-8), the patch.
/// An unparsable object stands in as a minimal one of the kind.
pub fn patch_and_admit(patch_type: PatchType, data: &[u8]) {
    let Some((resource, rest)) = split_kind(data) else {
        return;
    };
    let (object, patch_bytes) = match rest.iter().position(|b| *b == 0xFF) {
        Some(at) => (&rest[..at], &rest[at + 1..]),
        None => (&b""[..], rest),
    };
    let current = serde_json::from_slice::<Value>(object).unwrap_or_else(|_| {
        json!({"apiVersion": resource.api_version(), "kind": resource.kind,
               "metadata": {"name": "fuzz"}})
    });
    if let Ok(patched) = patch::apply(resource.kind, patch_type, &current, patch_bytes) {
        admit(resource, patched);
    }
}
