//! Conversion between the served versions of one resource. Objects are stored in one version
//! (the preferred one) and converted when a client reads or writes through another; today only
//! HorizontalPodAutoscaler has two versions (autoscaling/v2 stored, autoscaling/v1 served).

use capstan_api::ResourceInfo;
use serde_json::{Map, Value, json};

const HPA_V2: &str = "autoscaling/v2";
const HPA_V1: &str = "autoscaling/v1";

/// Does reading through `resource` convert objects from the storage version?
pub fn converts(resource: &ResourceInfo) -> bool {
    resource.kind == "HorizontalPodAutoscaler" && resource.version == "v1"
}

/// The object as the storage version holds it.
pub fn to_storage(resource: &ResourceInfo, object: Value) -> Value {
    if resource.kind == "HorizontalPodAutoscaler" && object["apiVersion"] == HPA_V1 {
        return hpa_v1_to_v2(object);
    }
    object
}

/// The object in `resource`'s version.
pub fn to_version(resource: &ResourceInfo, object: Value) -> Value {
    if resource.kind == "HorizontalPodAutoscaler"
        && resource.version == "v1"
        && object["apiVersion"] == HPA_V2
    {
        return hpa_v2_to_v1(object);
    }
    object
}

fn take(map: &mut Map<String, Value>, key: &str) -> Option<Value> {
    map.remove(key).filter(|v| !v.is_null())
}

fn hpa_v1_to_v2(mut object: Value) -> Value {
    object["apiVersion"] = json!(HPA_V2);
    if let Some(spec) = object.get_mut("spec").and_then(Value::as_object_mut)
        && let Some(target) = take(spec, "targetCPUUtilizationPercentage")
    {
        spec.insert(
                "metrics".into(),
                json!([{"type": "Resource", "resource": {"name": "cpu", "target": {"type": "Utilization", "averageUtilization": target}}}]),
            );
    }
    if let Some(status) = object.get_mut("status").and_then(Value::as_object_mut)
        && let Some(current) = take(status, "currentCPUUtilizationPercentage")
    {
        status.insert(
                "currentMetrics".into(),
                json!([{"type": "Resource", "resource": {"name": "cpu", "current": {"averageUtilization": current}}}]),
            );
    }
    object
}

fn cpu_utilization(metrics: Option<&Value>, field: &str) -> Option<Value> {
    metrics?
        .as_array()?
        .iter()
        .find(|m| m["type"] == "Resource" && m["resource"]["name"] == "cpu")
        .and_then(|m| m["resource"][field]["averageUtilization"].as_i64())
        .map(Value::from)
}

fn hpa_v2_to_v1(mut object: Value) -> Value {
    object["apiVersion"] = json!(HPA_V1);
    if let Some(spec) = object.get_mut("spec").and_then(Value::as_object_mut) {
        let target = cpu_utilization(spec.get("metrics"), "target");
        spec.remove("metrics");
        spec.remove("behavior");
        if let Some(t) = target {
            spec.insert("targetCPUUtilizationPercentage".into(), t);
        }
    }
    if let Some(status) = object.get_mut("status").and_then(Value::as_object_mut) {
        let current = cpu_utilization(status.get("currentMetrics"), "current");
        status.remove("currentMetrics");
        status.remove("conditions");
        if let Some(c) = current {
            status.insert("currentCPUUtilizationPercentage".into(), c);
        }
    }
    object
}

#[cfg(test)]
mod tests {
    use super::*;
    use capstan_api::resource::find;

    #[test]
    fn hpa_cpu_target_survives_a_round_trip_through_v2() {
        let v1 = find("autoscaling", "v1", "horizontalpodautoscalers").unwrap();
        let object = json!({"apiVersion": "autoscaling/v1", "kind": "HorizontalPodAutoscaler",
            "spec": {"maxReplicas": 5, "targetCPUUtilizationPercentage": 80}});
        let stored = to_storage(v1, object.clone());
        assert_eq!(
            stored["spec"]["metrics"][0]["resource"]["target"]["averageUtilization"],
            80
        );
        assert_eq!(to_version(v1, stored), object);
    }
}
