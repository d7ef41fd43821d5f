//! Streaming subresources of pods (`exec`, `attach`, `portforward`): kubectl asks for a
//! WebSocket upgrade; the API server checks the pod and container, opens the same upgrade to
//! the node's agent, answers kubectl with the agent's 101, and then copies bytes both ways,
//! as kube-apiserver's upgrade-aware proxy does. The stream protocol itself is the agent's.

use hyper::body::Incoming;
use hyper::{Request, Response, StatusCode};
use serde_json::Value;

use crate::error::ApiError;
use crate::handler::{Body, Handler};
use crate::registry::Registry;

/// The headers of an upgrade passed from kubectl to the agent and back.
const FORWARDED_REQUEST_HEADERS: [&str; 4] = [
    "sec-websocket-key",
    "sec-websocket-version",
    "sec-websocket-protocol",
    "upgrade",
];
const FORWARDED_RESPONSE_HEADERS: [&str; 4] = [
    "sec-websocket-accept",
    "sec-websocket-protocol",
    "upgrade",
    "connection",
];

/// `/api/v1/namespaces/<ns>/pods/<name>/<exec|attach|portforward>` → its parts.
pub fn streaming_target(path: &str) -> Option<(&str, &str, &str)> {
    let rest = path.strip_prefix("/api/v1/namespaces/")?;
    let parts: Vec<&str> = rest.split('/').collect();
    match parts.as_slice() {
        [
            namespace,
            "pods",
            name,
            sub @ ("exec" | "attach" | "portforward"),
        ] => Some((namespace, name, sub)),
        _ => None,
    }
}

impl Handler {
    /// Serves a streaming subresource; every failure before the upgrade is a Status.
    pub async fn connect(
        &self,
        request: Request<Incoming>,
        namespace: &str,
        name: &str,
        subresource: &str,
    ) -> Result<Response<Body>, ApiError> {
        let pods = capstan_api::resource::find("", "v1", "pods").expect("pods are registered");
        let pod = self.registry.get(pods, Some(namespace), name)?;
        let query: Vec<(String, String)> =
            form_urlencoded::parse(request.uri().query().unwrap_or("").as_bytes())
                .into_owned()
                .collect();
        let phase = pod["status"]["phase"].as_str().unwrap_or("Pending");
        if matches!(phase, "Succeeded" | "Failed") {
            return Err(ApiError::BadRequest(format!(
                "cannot {subresource} into a container in a completed pod; current phase is {phase}"
            )));
        }
        let mut target = format!("/{}/{namespace}/{name}", agent_path(subresource));
        if subresource != "portforward" {
            target.push('/');
            target.push_str(&container_for(&pod, name, &query)?);
        }
        let node = node_of(&self.registry, &pod, name)?;
        let forwarded: Vec<(String, String)> = FORWARDED_REQUEST_HEADERS
            .iter()
            .filter_map(|h| {
                request
                    .headers()
                    .get(*h)
                    .and_then(|v| v.to_str().ok())
                    .map(|v| (h.to_string(), v.to_string()))
            })
            .collect();
        let query_string = request.uri().query().unwrap_or("").to_string();
        let path_and_query = format!("{target}?{query_string}");
        let (agent_response, agent_stream) = self
            .nodes
            .upgrade(&node, &path_and_query, &forwarded)
            .await?;
        let mut response = Response::new(http_body_util::BodyExt::boxed_unsync(
            http_body_util::Empty::new(),
        ));
        *response.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
        for header in FORWARDED_RESPONSE_HEADERS {
            if let Some(value) = agent_response.headers().get(header) {
                response.headers_mut().insert(header, value.clone());
            }
        }
        tokio::spawn(async move {
            let Ok(client) = hyper::upgrade::on(request).await else {
                return;
            };
            let mut client = hyper_util::rt::TokioIo::new(client);
            let mut agent = hyper_util::rt::TokioIo::new(agent_stream);
            let _ = tokio::io::copy_bidirectional(&mut client, &mut agent).await;
        });
        Ok(response)
    }
}

/// kubelet's paths for the subresources.
fn agent_path(subresource: &str) -> &'static str {
    match subresource {
        "exec" => "exec",
        "attach" => "attach",
        _ => "portForward",
    }
}

/// The container the request names, or the pod's only one, checked as Kubernetes checks it.
fn container_for(pod: &Value, name: &str, query: &[(String, String)]) -> Result<String, ApiError> {
    let names = |list: &str| -> Vec<String> {
        pod["spec"][list]
            .as_array()
            .map(|cs| {
                cs.iter()
                    .filter_map(|c| c["name"].as_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default()
    };
    let containers = names("containers");
    let requested = query.iter().find(|(k, _)| k == "container").map(|(_, v)| v);
    match requested {
        Some(c)
            if containers
                .iter()
                .chain(&names("initContainers"))
                .any(|n| n == c) =>
        {
            Ok(c.clone())
        }
        Some(c) => Err(ApiError::BadRequest(format!(
            "container {c} is not valid for pod {name}"
        ))),
        None if containers.len() == 1 => Ok(containers[0].clone()),
        None => Err(ApiError::BadRequest(format!(
            "a container name must be specified for pod {name}, choose one of: [{}]",
            containers.join(" ")
        ))),
    }
}

fn node_of(registry: &Registry, pod: &Value, name: &str) -> Result<Value, ApiError> {
    let node_name = pod["spec"]["nodeName"]
        .as_str()
        .filter(|n| !n.is_empty())
        .ok_or_else(|| ApiError::BadRequest(format!("pod {name} does not have a host assigned")))?;
    let nodes = capstan_api::resource::find("", "v1", "nodes").expect("nodes are registered");
    registry.get(nodes, None, node_name).map_err(|_| {
        ApiError::ServiceUnavailable(format!("node {node_name} of pod {name} is not registered"))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn streaming_paths_are_recognized() {
        assert_eq!(
            streaming_target("/api/v1/namespaces/default/pods/web/exec"),
            Some(("default", "web", "exec"))
        );
        assert_eq!(
            streaming_target("/api/v1/namespaces/a/pods/b/portforward"),
            Some(("a", "b", "portforward"))
        );
        assert_eq!(streaming_target("/api/v1/namespaces/a/pods/b/log"), None);
        assert_eq!(streaming_target("/api/v1/namespaces/a/pods/b"), None);
    }
}
