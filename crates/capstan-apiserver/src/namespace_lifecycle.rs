//! Namespace deletion: a namespace marked for deletion is emptied of every namespaced object,
//! then its `kubernetes` finalizer is cleared and it goes away. Runs inside the server until
//! the controllers crate takes over such loops.

use std::time::Duration;

use capstan_api::object;
use capstan_api::resource::{self, RESOURCES, Subresource};
use serde_json::{Value, json};

use crate::error::ApiError;
use crate::registry::{DeleteOptions, ListOptions, Registry, WriteOptions};

/// How often terminating namespaces are looked at. Deleting is idempotent, so a pass that
/// races with a client's writes is simply repeated.
const PASS_INTERVAL: Duration = Duration::from_millis(500);

pub async fn run(registry: Registry) {
    loop {
        if let Err(e) = pass(&registry).await {
            tracing::warn!("namespace lifecycle: {e}");
        }
        tokio::time::sleep(PASS_INTERVAL).await;
    }
}

/// One pass over every terminating namespace.
pub async fn pass(registry: &Registry) -> Result<(), ApiError> {
    let namespaces = resource::find("", "v1", "namespaces").expect("namespaces are registered");
    let all = registry.list(namespaces, None, &ListOptions::default())?;
    for ns in all.items.iter().filter(|ns| object::is_terminating(ns)) {
        let name = object::name(ns).unwrap_or_default().to_string();
        if empty_namespace(registry, &name).await? {
            registry
                .update_with(
                    namespaces,
                    None,
                    &name,
                    Some(Subresource::Finalize),
                    WriteOptions::default(),
                    |current| {
                        let mut next = current.clone();
                        let finalizers: Vec<Value> = current
                            .pointer("/spec/finalizers")
                            .and_then(Value::as_array)
                            .map(|f| f.iter().filter(|v| *v != "kubernetes").cloned().collect())
                            .unwrap_or_default();
                        next["spec"]["finalizers"] = json!(finalizers);
                        Ok((next, Vec::new()))
                    },
                )
                .await
                .map(|_| ())
                .or_else(|e| {
                    if matches!(e, ApiError::NotFound { .. }) {
                        Ok(())
                    } else {
                        Err(e)
                    }
                })?;
        }
    }
    Ok(())
}

/// Deletes what is left in `namespace`; true once nothing is left.
async fn empty_namespace(registry: &Registry, namespace: &str) -> Result<bool, ApiError> {
    let mut empty = true;
    // Each stored resource once: through its preferred version.
    for r in RESOURCES
        .iter()
        .filter(|r| r.namespaced && r.preferred && r.verbs.contains(&"delete"))
    {
        let page = registry.list(r, Some(namespace), &ListOptions::default())?;
        for item in &page.items {
            empty = false;
            if object::is_terminating(item) {
                continue;
            }
            let name = object::name(item).unwrap_or_default();
            match registry
                .delete(r, Some(namespace), name, &DeleteOptions::default())
                .await
            {
                Ok(_) | Err(ApiError::NotFound { .. }) | Err(ApiError::Conflict { .. }) => {}
                Err(e) => return Err(e),
            }
        }
    }
    Ok(empty)
}

#[cfg(test)]
mod tests {
    use super::*;
    use capstan_store::KvStore;
    use std::sync::Arc;

    #[tokio::test]
    async fn a_deleted_namespace_is_emptied_then_removed() {
        let registry = Registry::new(Arc::new(KvStore::memory()));
        let namespaces = resource::find("", "v1", "namespaces").unwrap();
        let configmaps = resource::find("", "v1", "configmaps").unwrap();
        registry
            .ensure(namespaces, json!({"metadata": {"name": "team"}}))
            .await
            .unwrap();
        registry
            .ensure(namespaces, json!({"metadata": {"name": "other"}}))
            .await
            .unwrap();
        for ns in ["team", "other"] {
            let cm = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c", "namespace": ns}});
            registry.ensure(configmaps, cm).await.unwrap();
        }
        let (marked, removed) = registry
            .delete(namespaces, None, "team", &DeleteOptions::default())
            .await
            .unwrap();
        assert!(!removed);
        assert_eq!(marked["status"]["phase"], "Terminating");
        pass(&registry).await.unwrap();
        assert!(registry.get(configmaps, Some("team"), "c").is_err());
        pass(&registry).await.unwrap();
        assert!(matches!(
            registry.get(namespaces, None, "team"),
            Err(ApiError::NotFound { .. })
        ));
        assert!(
            registry.get(configmaps, Some("other"), "c").is_ok(),
            "other namespaces are untouched"
        );
    }
}
