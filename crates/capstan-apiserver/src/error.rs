//! API errors, and the one place they become `metav1.Status` bodies with Kubernetes' reasons,
//! codes and wording.

use capstan_api::FieldError;
use capstan_api::validation::field_error::aggregate_message;
use hyper::StatusCode;
use serde_json::{Value, json};

/// What went wrong with a request. Each variant maps to one HTTP status and `reason`.
#[derive(Debug, thiserror::Error, Clone, PartialEq)]
pub enum ApiError {
    /// 404: the object (or namespace) does not exist.
    #[error("{} {name:?} not found", qualify(resource, group))]
    NotFound {
        group: String,
        resource: String,
        name: String,
    },
    /// 404 for a URL that names nothing capstan serves.
    #[error("the server could not find the requested resource")]
    UnknownPath,
    /// 409: create of an existing name.
    #[error("{} {name:?} already exists", qualify(resource, group))]
    AlreadyExists {
        group: String,
        resource: String,
        name: String,
    },
    /// 409: a resourceVersion or uid precondition failed; re-read and retry.
    #[error(
        "Operation cannot be fulfilled on {} {name:?}: {detail}",
        qualify(resource, group)
    )]
    Conflict {
        group: String,
        resource: String,
        name: String,
        detail: String,
    },
    /// 409: a server-side apply would change fields other managers own; `force` takes them.
    #[error("{message}")]
    ApplyConflict {
        group: String,
        resource: String,
        name: String,
        message: String,
        /// (field path, message) of each conflict.
        causes: Vec<(String, String)>,
    },
    /// 422: the object breaks validation; every field error is listed.
    #[error("{} {name:?} is invalid: {}", qualify(kind, group), aggregate_message(.errors))]
    Invalid {
        group: String,
        kind: String,
        name: String,
        errors: Vec<FieldError>,
    },
    /// 422 without field causes: the request is well-formed but cannot be carried out.
    #[error("{0}")]
    InvalidRequest(String),
    /// 400: the request cannot be understood as sent.
    #[error("{0}")]
    BadRequest(String),
    /// 401: no valid client certificate or bearer token.
    #[error("Unauthorized")]
    Unauthorized,
    /// 403: the request is understood but refused.
    #[error("{0}")]
    Forbidden(String),
    /// 405: the resource does not support this verb.
    #[error("the server does not allow this method on the requested resource")]
    MethodNotAllowed,
    /// 406: none of the accepted media types can be produced.
    #[error("{0}")]
    NotAcceptable(String),
    /// 410: the resourceVersion asked for has been compacted.
    #[error("{0}")]
    Expired(String),
    /// 413: the body or the object is too large.
    #[error("{0}")]
    TooLarge(String),
    /// 415: the body's media type is not supported.
    #[error("{0}")]
    UnsupportedMediaType(String),
    /// 429: the request would break a limit now (an eviction a disruption budget forbids);
    /// retrying later may succeed, after `retry_after_seconds` when that is not 0.
    #[error("{message}")]
    TooManyRequests {
        message: String,
        retry_after_seconds: u32,
        /// (reason, message) of each cause.
        causes: Vec<(String, String)>,
    },
    /// 503: what the request needs is not running (a node's agent); retrying later may help.
    #[error("{0}")]
    ServiceUnavailable(String),
    /// 500: a bug or a storage failure; a retry may help for storage failures.
    #[error("{0}")]
    Internal(String),
}

/// `deployments.apps`, `Deployment.apps`; core names stand alone.
fn qualify(name: &str, group: &str) -> String {
    if group.is_empty() {
        name.to_string()
    } else {
        format!("{name}.{group}")
    }
}

impl ApiError {
    pub fn status_code(&self) -> StatusCode {
        match self {
            ApiError::NotFound { .. } | ApiError::UnknownPath => StatusCode::NOT_FOUND,
            ApiError::AlreadyExists { .. }
            | ApiError::Conflict { .. }
            | ApiError::ApplyConflict { .. } => StatusCode::CONFLICT,
            ApiError::Invalid { .. } | ApiError::InvalidRequest(_) => {
                StatusCode::UNPROCESSABLE_ENTITY
            }
            ApiError::BadRequest(_) => StatusCode::BAD_REQUEST,
            ApiError::Unauthorized => StatusCode::UNAUTHORIZED,
            ApiError::Forbidden(_) => StatusCode::FORBIDDEN,
            ApiError::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            ApiError::NotAcceptable(_) => StatusCode::NOT_ACCEPTABLE,
            ApiError::Expired(_) => StatusCode::GONE,
            ApiError::TooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::UnsupportedMediaType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ApiError::TooManyRequests { .. } => StatusCode::TOO_MANY_REQUESTS,
            ApiError::ServiceUnavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn reason(&self) -> &'static str {
        match self {
            ApiError::NotFound { .. } | ApiError::UnknownPath => "NotFound",
            ApiError::AlreadyExists { .. } => "AlreadyExists",
            ApiError::Conflict { .. } | ApiError::ApplyConflict { .. } => "Conflict",
            ApiError::Invalid { .. } | ApiError::InvalidRequest(_) => "Invalid",
            ApiError::BadRequest(_) => "BadRequest",
            ApiError::Unauthorized => "Unauthorized",
            ApiError::Forbidden(_) => "Forbidden",
            ApiError::MethodNotAllowed => "MethodNotAllowed",
            ApiError::NotAcceptable(_) => "NotAcceptable",
            ApiError::Expired(_) => "Expired",
            ApiError::TooLarge(_) => "RequestEntityTooLarge",
            ApiError::UnsupportedMediaType(_) => "UnsupportedMediaType",
            ApiError::TooManyRequests { .. } => "TooManyRequests",
            ApiError::ServiceUnavailable(_) => "ServiceUnavailable",
            ApiError::Internal(_) => "InternalError",
        }
    }

    fn details(&self) -> Option<Value> {
        let with_group = |mut d: Value, group: &str| {
            if !group.is_empty() {
                d["group"] = json!(group);
            }
            d
        };
        match self {
            ApiError::NotFound {
                group,
                resource,
                name,
            } => Some(with_group(json!({"name": name, "kind": resource}), group)),
            ApiError::AlreadyExists {
                group,
                resource,
                name,
                ..
            }
            | ApiError::Conflict {
                group,
                resource,
                name,
                ..
            } => Some(with_group(json!({"name": name, "kind": resource}), group)),
            ApiError::Invalid {
                group,
                kind,
                name,
                errors,
                ..
            } => {
                let causes: Vec<Value> = errors
                    .iter()
                    .map(|e| {
                        json!({"reason": e.error_type.cause_reason(), "message": e.body(), "field": e.field})
                    })
                    .collect();
                Some(with_group(
                    json!({"name": name, "kind": kind, "causes": causes}),
                    group,
                ))
            }
            ApiError::TooManyRequests {
                retry_after_seconds,
                causes,
                ..
            } => {
                let mut details = json!({});
                if !causes.is_empty() {
                    let causes: Vec<Value> = causes
                        .iter()
                        .map(|(reason, message)| json!({"reason": reason, "message": message}))
                        .collect();
                    details["causes"] = json!(causes);
                }
                if *retry_after_seconds > 0 {
                    details["retryAfterSeconds"] = json!(retry_after_seconds);
                }
                Some(details)
            }
            ApiError::Internal(message) => Some(json!({"causes": [{"message": message}]})),
            _ => None,
        }
    }

    /// Seconds a client should wait before retrying (the `Retry-After` header), if any.
    pub fn retry_after_seconds(&self) -> Option<u32> {
        match self {
            ApiError::TooManyRequests {
                retry_after_seconds,
                ..
            } if *retry_after_seconds > 0 => Some(*retry_after_seconds),
            _ => None,
        }
    }

    /// The `metav1.Status` body of this error.
    pub fn to_status(&self) -> Value {
        let mut status = json!({
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.to_string(),
            "reason": self.reason(),
            "code": self.status_code().as_u16(),
        });
        if let Some(details) = self.details() {
            status["details"] = details;
        }
        status
    }
}

impl From<capstan_store::StoreError> for ApiError {
    fn from(e: capstan_store::StoreError) -> Self {
        match e {
            capstan_store::StoreError::Compacted {
                requested,
                compacted,
            } => ApiError::Expired(format!(
                "too old resource version: {requested} ({compacted})"
            )),
            other => ApiError::Internal(other.to_string()),
        }
    }
}

/// A `Status` of success, as a delete that removed the object answers.
pub fn success_status(details: Value) -> Value {
    json!({
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Success",
        "details": details,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn not_found_reads_as_kubernetes_words_it() {
        let e = ApiError::NotFound {
            group: "apps".into(),
            resource: "deployments".into(),
            name: "web".into(),
        };
        let s = e.to_status();
        assert_eq!(s["message"], "deployments.apps \"web\" not found");
        assert_eq!(s["code"], 404);
        assert_eq!(s["details"]["group"], "apps");
    }

    #[test]
    fn too_many_requests_carries_its_causes_and_retry_delay() {
        let e = ApiError::TooManyRequests {
            message: "Cannot evict pod as it would violate the pod's disruption budget.".into(),
            retry_after_seconds: 10,
            causes: vec![(
                "DisruptionBudget".into(),
                "The disruption budget web is still being processed by the server.".into(),
            )],
        };
        let s = e.to_status();
        assert_eq!(s["code"], 429);
        assert_eq!(s["reason"], "TooManyRequests");
        assert_eq!(s["details"]["retryAfterSeconds"], 10);
        assert_eq!(s["details"]["causes"][0]["reason"], "DisruptionBudget");
        assert_eq!(e.retry_after_seconds(), Some(10));
    }

    #[test]
    fn invalid_lists_every_cause() {
        let e = ApiError::Invalid {
            group: "".into(),
            kind: "Pod".into(),
            name: "p".into(),
            errors: vec![
                FieldError::required("spec.containers[0].image", ""),
                FieldError::invalid("metadata.name", "P", "bad"),
            ],
        };
        let s = e.to_status();
        assert_eq!(
            s["message"],
            "Pod \"p\" is invalid: [spec.containers[0].image: Required value, metadata.name: Invalid value: \"P\": bad]"
        );
        assert_eq!(s["details"]["causes"][0]["reason"], "FieldValueRequired");
        assert_eq!(s["details"]["causes"][1]["field"], "metadata.name");
        assert_eq!(s["code"], 422);
    }
}
