//! Image pulls from OCI registries.
//!
//! Not built yet: an image missing from the node's store fails with kubelet's `ErrImagePull`
//! and a message saying so, and the pod waits in `ImagePullBackOff`. Images get onto a node
//! with `capstan image import`.

use k8s_openapi::api::core::v1::Pod;

use crate::worker::Shared;

pub async fn pull(
    _shared: &Shared,
    _pod: &Pod,
    image: &str,
) -> Result<capstan_runtime::image::ImageRecord, String> {
    Err(format!(
        "failed to pull and unpack image \"{image}\": pulling from registries is not supported by this capstan agent yet; import the image with `capstan image import`"
    ))
}
