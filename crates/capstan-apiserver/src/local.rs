//! In-process API clients for the scheduler and controllers that run inside `capstan server`.
//! They speak to the same handler HTTPS clients reach — same routing, validation, admission
//! and watch streams — but without TCP, TLS or authentication: each request is handed to
//! [`Handler::handle`] as the user the client was made for. kube-rs drives it, so informers,
//! reflectors and watchers work unchanged.

use std::sync::Arc;

use http_body_util::BodyExt;
use hyper::header::{ACCEPT, CONTENT_TYPE, USER_AGENT};
use hyper::{Request, Response};

use crate::authn::UserInfo;
use crate::handler::{ApiRequest, Body, Handler};
use crate::request::Query;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// A kube client whose requests go straight to `handler` as `user`.
pub fn client(handler: Arc<Handler>, user: UserInfo) -> kube::Client {
    let service = tower::service_fn(move |request: Request<kube::client::Body>| {
        let handler = handler.clone();
        let user = user.clone();
        async move { call(&handler, user, request).await }
    });
    kube::Client::new(service, "default")
}

async fn call(
    handler: &Handler,
    user: UserInfo,
    request: Request<kube::client::Body>,
) -> Result<Response<Body>, BoxError> {
    let (parts, body) = request.into_parts();
    let header = |name| {
        parts
            .headers
            .get(name)
            .and_then(|v: &hyper::header::HeaderValue| v.to_str().ok())
            .map(str::to_string)
    };
    let api_request = ApiRequest {
        method: parts.method.clone(),
        path: parts.uri.path().to_string(),
        query: Query::parse(parts.uri.query()),
        accept: header(ACCEPT).unwrap_or_default(),
        content_type: header(CONTENT_TYPE),
        body: body.collect().await?.to_bytes(),
        // kube-rs sends no User-Agent here; the component's name (`kube-scheduler`) names
        // its field manager, as Kubernetes' components' own user agents do.
        user_agent: header(USER_AGENT).unwrap_or_else(|| {
            user.name
                .strip_prefix("system:")
                .unwrap_or(&user.name)
                .to_string()
        }),
        user,
    };
    Ok(crate::server::isolate_panics(handler.handle(api_request)).await)
}

#[cfg(test)]
mod tests {
    use futures_util::{StreamExt, TryStreamExt};
    use k8s_openapi::api::core::v1::ConfigMap;
    use kube::api::{Api, PostParams, WatchEvent, WatchParams};

    use crate::{ServerConfig, start};

    #[tokio::test]
    async fn a_local_client_creates_lists_and_watches_through_the_handler() {
        let dir = tempfile::tempdir().unwrap();
        let server = start(ServerConfig {
            data_dir: dir.path().to_owned(),
            listen: "127.0.0.1:0".parse().unwrap(),
            compaction_interval: std::time::Duration::from_secs(300),
            service_range: crate::service_ips::ServiceRange::parse("10.43.0.0/16").unwrap(),
            default_not_ready_toleration_seconds: 300,
            default_unreachable_toleration_seconds: 300,
            cluster_dns: None,
        })
        .await
        .unwrap();
        let config_maps: Api<ConfigMap> = Api::namespaced(
            server.local_client("system:kube-controller-manager"),
            "default",
        );
        let mut watch = config_maps
            .watch(&WatchParams::default(), "0")
            .await
            .unwrap()
            .boxed();
        let made: ConfigMap = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "local"}, "data": {"k": "v"}
        }))
        .unwrap();
        config_maps
            .create(&PostParams::default(), &made)
            .await
            .unwrap();
        let listed = config_maps.list(&Default::default()).await.unwrap();
        assert_eq!(listed.items.len(), 1);
        let first = watch.try_next().await;
        let Ok(Some(WatchEvent::Added(seen))) = first else {
            panic!("expected an ADDED event, got {first:?}");
        };
        assert_eq!(seen.metadata.name.as_deref(), Some("local"));
        // Errors come back as Kubernetes Status objects.
        let again = config_maps.create(&PostParams::default(), &made).await;
        let Err(kube::Error::Api(status)) = again else {
            panic!("expected a conflict, got {again:?}");
        };
        assert_eq!(status.code, 409);
        assert_eq!(status.reason, "AlreadyExists");
    }
}
