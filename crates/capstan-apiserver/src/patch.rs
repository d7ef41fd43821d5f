//! The patch types of `PATCH`: JSON patch (RFC 6902), JSON merge patch (RFC 7386) and
//! Kubernetes' strategic merge patch. Server-side apply (`apply-patch+yaml`) is not served yet.

use serde_json::Value;

use crate::error::ApiError;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PatchType {
    Json,
    Merge,
    StrategicMerge,
}

impl PatchType {
    /// The patch type of a `Content-Type`, or 415 as Kubernetes words it.
    pub fn from_content_type(content_type: &str) -> Result<Self, ApiError> {
        let media = content_type.split(';').next().unwrap_or("").trim();
        match media {
            "application/json-patch+json" => Ok(PatchType::Json),
            "application/merge-patch+json" => Ok(PatchType::Merge),
            "application/strategic-merge-patch+json" => Ok(PatchType::StrategicMerge),
            other => Err(ApiError::UnsupportedMediaType(format!(
                "the body of the request was in an unknown format - accepted media types include: application/json-patch+json, application/merge-patch+json, application/apply-patch+yaml, application/strategic-merge-patch+json; got {other:?}"
            ))),
        }
    }
}

/// Applies `patch` (the raw body) to `current`, an object of `kind`.
pub fn apply(
    kind: &str,
    patch_type: PatchType,
    current: &Value,
    patch: &[u8],
) -> Result<Value, ApiError> {
    let parse_error =
        |e: serde_json::Error| ApiError::BadRequest(format!("error decoding patch: {e}"));
    match patch_type {
        PatchType::Json => {
            let operations: json_patch::Patch =
                serde_json::from_slice(patch).map_err(parse_error)?;
            // Applied to a copy that is dropped on error, so nothing needs undoing. (The undoing
            // `json_patch::patch` panics when a `move` fails halfway, after removing its source:
            // the undo of an earlier operation then finds its path gone. Found by fuzzing.)
            let mut out = current.clone();
            json_patch::patch_unsafe(&mut out, &operations).map_err(|e| {
                ApiError::InvalidRequest(format!(
                    "the server rejected our request due to an error in our request: {e}"
                ))
            })?;
            Ok(out)
        }
        PatchType::Merge => {
            let patch: Value = serde_json::from_slice(patch).map_err(parse_error)?;
            require_object(&patch)?;
            let mut out = current.clone();
            json_patch::merge(&mut out, &patch);
            Ok(out)
        }
        PatchType::StrategicMerge => {
            let patch: Value = serde_json::from_slice(patch).map_err(parse_error)?;
            require_object(&patch)?;
            capstan_api::strategic_merge::strategic_merge_patch(kind, current, &patch)
                .map_err(|e| ApiError::BadRequest(e.to_string()))
        }
    }
}

fn require_object(patch: &Value) -> Result<(), ApiError> {
    if patch.is_object() {
        Ok(())
    } else {
        Err(ApiError::BadRequest(format!(
            "error decoding patch: a merge patch must be a JSON object, not {patch}"
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn merge_patch_sets_and_removes_fields() {
        let current = json!({"metadata": {"labels": {"a": "1", "b": "2"}}});
        let out = apply(
            "Pod",
            PatchType::Merge,
            &current,
            br#"{"metadata":{"labels":{"a":null,"c":"3"}}}"#,
        )
        .unwrap();
        assert_eq!(out, json!({"metadata": {"labels": {"b": "2", "c": "3"}}}));
    }

    #[test]
    fn json_patch_with_a_failed_test_changes_nothing_and_is_refused() {
        let current = json!({"spec": {"replicas": 1}});
        let err = apply(
            "Deployment",
            PatchType::Json,
            &current,
            br#"[{"op":"test","path":"/spec/replicas","value":2}]"#,
        )
        .unwrap_err();
        assert_eq!(err.status_code().as_u16(), 422);
        let out = apply(
            "Deployment",
            PatchType::Json,
            &current,
            br#"[{"op":"replace","path":"/spec/replicas","value":3}]"#,
        )
        .unwrap();
        assert_eq!(out["spec"]["replicas"], 3);
    }

    #[test]
    fn a_json_patch_whose_move_fails_halfway_is_refused_without_a_panic() {
        let current = json!({"metadata": {"labels": {"a": "1"}}});
        let err = apply(
            "Pod",
            PatchType::Json,
            &current,
            br#"[{"op":"add","path":"/metadata/labels/x","value":"1"},
                 {"op":"move","from":"/metadata/labels","path":"/missing/labels"}]"#,
        )
        .unwrap_err();
        assert_eq!(err.status_code().as_u16(), 422);
    }

    #[test]
    fn malformed_patches_are_bad_requests() {
        let err = apply("Pod", PatchType::Merge, &json!({}), b"{nope").unwrap_err();
        assert_eq!(err.status_code().as_u16(), 400);
        assert!(PatchType::from_content_type("application/apply-patch+yaml").is_err());
    }
}
