//! ConfigMaps and Secrets read from the API for environment variables and volumes.

use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use kube::{Api, Client};

use crate::env::{ObjectSource, SourceError};

pub struct ApiSource {
    client: Client,
}

impl ApiSource {
    pub fn new(client: Client) -> Self {
        ApiSource { client }
    }
}

impl ObjectSource for ApiSource {
    async fn config_map(
        &self,
        namespace: &str,
        name: &str,
    ) -> Result<Option<ConfigMap>, SourceError> {
        let api: Api<ConfigMap> = Api::namespaced(self.client.clone(), namespace);
        api.get_opt(name)
            .await
            .map_err(|e| SourceError(e.to_string()))
    }

    async fn secret(&self, namespace: &str, name: &str) -> Result<Option<Secret>, SourceError> {
        let api: Api<Secret> = Api::namespaced(self.client.clone(), namespace);
        api.get_opt(name)
            .await
            .map_err(|e| SourceError(e.to_string()))
    }
}
