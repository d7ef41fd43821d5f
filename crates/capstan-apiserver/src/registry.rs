//! REST storage with Kubernetes' object semantics, for every kind: decoding and field
//! validation, create/update preparation (uid, timestamps, generation, status split),
//! defaulting, validation, optimistic concurrency, finalizers and graceful deletion, lists with
//! selectors and paging.
//!
//! The HTTP layer turns requests into calls here and results back into responses; nothing here
//! knows about HTTP beyond the error type.

use std::sync::Arc;

use base64::Engine as _;
use capstan_api::admission::{self, AdmissionError, PodAdmission};
use capstan_api::object::{self, format_time};
use capstan_api::resource::{self, ResourceInfo, Subresource};
use capstan_api::selector::{FieldSelector, LabelSelector};
use capstan_api::{defaults, typed, validation};
use capstan_store::{KeyValue, Revision, Store, StoreError};
use serde_json::{Map, Value, json};

use crate::error::ApiError;
use crate::service_ips::{self, ServiceRange};
use capstan_api::managed_fields::{self, Writer};

/// Largest object the store keeps, as etcd's default request limit.
pub const MAX_OBJECT_BYTES: usize = 1_572_864;

/// How unknown fields in a write are treated (`fieldValidation`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum FieldValidation {
    Ignore,
    /// The default when the client says nothing, as in Kubernetes 1.27+.
    #[default]
    Warn,
    Strict,
}

impl FieldValidation {
    pub fn parse(value: Option<&str>) -> Result<Self, ApiError> {
        match value {
            None | Some("Warn") => Ok(FieldValidation::Warn),
            Some("Ignore") => Ok(FieldValidation::Ignore),
            Some("Strict") => Ok(FieldValidation::Strict),
            Some(other) => Err(ApiError::BadRequest(format!(
                "fieldValidation must be one of \"Ignore\", \"Strict\", or \"Warn\", got {other:?}"
            ))),
        }
    }
}

/// Options every write takes.
#[derive(Debug, Clone, Default)]
pub struct WriteOptions {
    pub dry_run: bool,
    pub field_validation: FieldValidation,
    /// Who writes, for `managedFields`; `None` for writes that keep ownership as it is (the
    /// server's own, and applies, which record ownership themselves).
    pub field_manager: Option<String>,
}

impl WriteOptions {
    /// The writer to record as owner, when this write records ownership.
    fn writer<'a>(&'a self, api_version: &'a str, time: &'a str) -> Option<Writer<'a>> {
        self.field_manager.as_deref().map(|manager| Writer {
            manager,
            api_version,
            time,
        })
    }
}

/// The result of a write: the object as stored (or as it would be, for a dry run), whether it
/// was created, and the warnings for the client.
#[derive(Debug, Clone)]
pub struct Written {
    pub object: Value,
    pub created: bool,
    pub warnings: Vec<String>,
}

/// `DeleteOptions`, from the body or the query.
#[derive(Debug, Clone, Default)]
pub struct DeleteOptions {
    pub dry_run: bool,
    /// `gracePeriodSeconds`: how long a pod's containers get to stop; `None` uses the pod's
    /// `terminationGracePeriodSeconds`.
    pub grace_period_seconds: Option<i64>,
    pub precondition_uid: Option<String>,
    pub precondition_resource_version: Option<String>,
    /// `propagationPolicy` (or the older `orphanDependents`): what happens to dependents.
    pub propagation: Propagation,
}

/// Whether and how the garbage collector deletes an object's dependents (`propagationPolicy`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Propagation {
    /// The object goes at once; the collector deletes its dependents afterwards.
    #[default]
    Background,
    /// The object stays (finalizer `foregroundDeletion`) until its blocking dependents are gone.
    Foreground,
    /// The object stays (finalizer `orphan`) until its dependents no longer point at it.
    Orphan,
}

impl Propagation {
    pub const SUPPORTED: &[&str] = &["Foreground", "Background", "Orphan"];

    pub fn parse(text: &str) -> Option<Propagation> {
        match text {
            "Foreground" => Some(Propagation::Foreground),
            "Background" => Some(Propagation::Background),
            "Orphan" => Some(Propagation::Orphan),
            _ => None,
        }
    }

    /// The finalizer that holds the object for the garbage collector, if any.
    pub fn finalizer(self) -> Option<&'static str> {
        match self {
            Propagation::Background => None,
            Propagation::Foreground => Some("foregroundDeletion"),
            Propagation::Orphan => Some("orphan"),
        }
    }
}

/// What a list asks for.
#[derive(Debug, Clone, Default)]
pub struct ListOptions {
    pub labels: LabelSelector,
    pub fields: FieldSelector,
    /// 0: no limit.
    pub limit: usize,
    pub continue_token: Option<String>,
}

/// One page of a list.
#[derive(Debug, Clone)]
pub struct Page<T> {
    pub items: Vec<T>,
    pub revision: Revision,
    pub continue_token: Option<String>,
}

/// A page of decoded objects.
pub type ListPage = Page<Value>;

/// The generic registry over one store.
#[derive(Clone)]
pub struct Registry {
    store: Arc<dyn Store>,
    service_range: ServiceRange,
    /// Held from choosing a Service's cluster IP and node ports until it is stored, so that
    /// two creates never take the same one.
    service_allocation: Arc<tokio::sync::Mutex<()>>,
    /// The server flags of the pod admission plugins.
    pod_admission: PodAdmission,
}

/// The object stored at `kv`, with its resourceVersion.
pub fn decode_stored(kv: &KeyValue) -> Result<Value, ApiError> {
    let mut object: Value = serde_json::from_slice(&kv.value)
        .map_err(|e| ApiError::Internal(format!("stored object {} is corrupt: {e}", kv.key)))?;
    object::set_meta(
        &mut object,
        "resourceVersion",
        json!(kv.mod_revision.to_string()),
    );
    Ok(object)
}

/// The stored JSON of an object with `"resourceVersion":"<revision>"` added as the first field
/// of its metadata. Stored objects always start `{"apiVersion":…,"kind":…,"metadata":{` (the
/// typed encoding puts those first); anything else answers `None` and is decoded instead.
fn splice_resource_version(stored: &[u8], revision: Revision) -> Option<Vec<u8>> {
    const METADATA: &[u8] = b"\"metadata\":{";
    let at = stored.windows(METADATA.len()).position(|w| w == METADATA)? + METADATA.len();
    // Only the top-level metadata qualifies: apiVersion and kind come before it and hold no
    // braces, so the only `{` before it is the object's own.
    if stored[..at - 1].iter().filter(|b| **b == b'{').count() != 1
        || !stored.starts_with(b"{\"apiVersion\":")
    {
        return None;
    }
    let field = format!("\"resourceVersion\":\"{revision}\"");
    let mut out = Vec::with_capacity(stored.len() + field.len() + 1);
    out.extend_from_slice(&stored[..at]);
    out.extend_from_slice(field.as_bytes());
    if stored.get(at) != Some(&b'}') {
        out.push(b',');
    }
    out.extend_from_slice(&stored[at..]);
    Some(out)
}

/// The bytes the store keeps: the object without its resourceVersion (the store's revision is
/// the resourceVersion, so keeping it inside would only go stale).
fn encode_for_store(object: &Value) -> Result<Vec<u8>, ApiError> {
    let mut object = object.clone();
    if let Some(meta) = object.get_mut("metadata").and_then(Value::as_object_mut) {
        meta.remove("resourceVersion");
    }
    let bytes = serde_json::to_vec(&object).map_err(|e| ApiError::Internal(e.to_string()))?;
    if bytes.len() > MAX_OBJECT_BYTES {
        return Err(ApiError::TooLarge(format!(
            "object is too large: {} bytes, the limit is {MAX_OBJECT_BYTES}",
            bytes.len()
        )));
    }
    Ok(bytes)
}

fn now() -> jiff::Timestamp {
    jiff::Timestamp::now()
}

fn not_found(resource: &ResourceInfo, name: &str) -> ApiError {
    ApiError::NotFound {
        group: resource.group.to_string(),
        resource: resource.plural.to_string(),
        name: name.to_string(),
    }
}

fn conflict(resource: &ResourceInfo, name: &str, detail: impl Into<String>) -> ApiError {
    ApiError::Conflict {
        group: resource.group.to_string(),
        resource: resource.plural.to_string(),
        name: name.to_string(),
        detail: detail.into(),
    }
}

const MODIFIED: &str =
    "the object has been modified; please apply your changes to the latest version and try again";

/// An admission plugin's refusal: `pods "web" is forbidden: …`.
fn admission_forbidden(resource: &ResourceInfo, name: &str, error: AdmissionError) -> ApiError {
    ApiError::Forbidden(format!(
        "{} {name:?} is forbidden: {error}",
        resource.group_resource()
    ))
}

fn invalid(resource: &ResourceInfo, name: &str, errors: Vec<capstan_api::FieldError>) -> ApiError {
    ApiError::Invalid {
        group: resource.group.to_string(),
        kind: resource.kind.to_string(),
        name: name.to_string(),
        errors,
    }
}

/// The continue token of a list: where the next page starts and the revision of the first.
fn encode_continue(revision: Revision, last_key: &str) -> String {
    let token = json!({"v": "meta.k8s.io/v1", "rv": revision, "start": last_key});
    base64::engine::general_purpose::URL_SAFE.encode(token.to_string())
}

fn decode_continue(token: &str, prefix: &str) -> Result<(Revision, String), ApiError> {
    let bad = || ApiError::BadRequest(format!("continue key is not valid: {token}"));
    let bytes = base64::engine::general_purpose::URL_SAFE
        .decode(token)
        .map_err(|_| bad())?;
    let value: Value = serde_json::from_slice(&bytes).map_err(|_| bad())?;
    let revision = value["rv"].as_i64().ok_or_else(bad)?;
    let start = value["start"].as_str().ok_or_else(bad)?;
    if !start.starts_with(prefix) {
        return Err(bad());
    }
    Ok((revision, start.to_string()))
}

/// Five characters from Kubernetes' alphabet for `generateName` (no vowels, no look-alikes).
fn random_suffix() -> String {
    const ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    uuid::Uuid::new_v4().as_bytes()[..5]
        .iter()
        .map(|b| ALPHABET[*b as usize % ALPHABET.len()] as char)
        .collect()
}

/// The object without `metadata` and `status`: what `generation` tracks.
fn spec_part(object: &Value) -> Value {
    let mut out = object.clone();
    if let Some(map) = out.as_object_mut() {
        map.remove("metadata");
        map.remove("status");
    }
    out
}

fn without_resource_version(object: &Value) -> Value {
    let mut out = object.clone();
    if let Some(meta) = out.get_mut("metadata").and_then(Value::as_object_mut) {
        meta.remove("resourceVersion");
    }
    out
}

impl Registry {
    /// A registry whose Services take cluster IPs from Kubernetes' default 10.96.0.0/12.
    pub fn new(store: Arc<dyn Store>) -> Self {
        let range = ServiceRange::parse("10.96.0.0/12").expect("a valid default range");
        Self::with_service_range(store, range)
    }

    pub fn with_service_range(store: Arc<dyn Store>, service_range: ServiceRange) -> Self {
        Registry {
            store,
            service_range,
            service_allocation: Arc::default(),
            pod_admission: PodAdmission::default(),
        }
    }

    /// The same registry with the admission plugins' server flags set.
    pub fn with_pod_admission(self, pod_admission: PodAdmission) -> Self {
        Registry {
            pod_admission,
            ..self
        }
    }

    /// Every stored PriorityClass, for the Priority admission plugin.
    fn priority_classes(&self) -> Result<Vec<Value>, ApiError> {
        let classes = resource::find("scheduling.k8s.io", "v1", "priorityclasses")
            .expect("priorityclasses are registered");
        Ok(self.list(classes, None, &ListOptions::default())?.items)
    }

    /// The admission plugins of a create (after defaulting, before validation): Priority and
    /// DefaultTolerationSeconds for pods, one global default for PriorityClasses. `name` is
    /// the name Kubernetes' admission errors give (the generateName for generated names).
    fn admit_create(
        &self,
        resource: &ResourceInfo,
        object: &mut Value,
        name: &str,
    ) -> Result<(), ApiError> {
        let result = match (resource.group, resource.kind) {
            ("", "Pod") => {
                admission::admit_default_tolerations(object, &self.pod_admission);
                admission::admit_pod_priority(object, &self.priority_classes()?)
            }
            ("scheduling.k8s.io", "PriorityClass") => {
                admission::admit_priority_class(object, &self.priority_classes()?, false)
            }
            _ => Ok(()),
        };
        result.map_err(|e| admission_forbidden(resource, name, e))
    }

    /// The admission plugins of an update of the object proper (not of a subresource).
    fn admit_update(
        &self,
        resource: &ResourceInfo,
        object: &mut Value,
        current: &Value,
        name: &str,
    ) -> Result<(), ApiError> {
        let result = match (resource.group, resource.kind) {
            ("", "Pod") => {
                admission::keep_pod_priority(object, current);
                admission::admit_default_tolerations(object, &self.pod_admission);
                Ok(())
            }
            ("scheduling.k8s.io", "PriorityClass") => {
                admission::admit_priority_class(object, &self.priority_classes()?, true)
            }
            _ => Ok(()),
        };
        result.map_err(|e| admission_forbidden(resource, name, e))
    }

    pub fn service_range(&self) -> ServiceRange {
        self.service_range
    }

    pub fn store(&self) -> &Arc<dyn Store> {
        &self.store
    }

    /// Runs a store call that may wait on disk on a blocking thread.
    async fn blocking<T: Send + 'static>(
        &self,
        f: impl FnOnce(&dyn Store) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<Result<T, StoreError>, ApiError> {
        let store = self.store.clone();
        tokio::task::spawn_blocking(move || f(store.as_ref()))
            .await
            .map_err(|e| ApiError::Internal(format!("store task failed: {e}")))
    }

    fn get_kv(
        &self,
        resource: &ResourceInfo,
        namespace: Option<&str>,
        name: &str,
    ) -> Result<KeyValue, ApiError> {
        self.store
            .get(&resource.storage_key(namespace, name))?
            .ok_or_else(|| not_found(resource, name))
    }

    pub fn get(
        &self,
        resource: &ResourceInfo,
        namespace: Option<&str>,
        name: &str,
    ) -> Result<Value, ApiError> {
        let kv = self.get_kv(resource, namespace, name)?;
        let object = decode_stored(&kv)?;
        Ok(crate::conversion::to_version(resource, object))
    }

    pub fn list(
        &self,
        resource: &ResourceInfo,
        namespace: Option<&str>,
        options: &ListOptions,
    ) -> Result<ListPage, ApiError> {
        self.scan(resource, namespace, options, |kv| {
            let object = decode_stored(kv)?;
            let selected = options.labels.matches(object::labels(&object))
                && options.fields.matches(resource, &object);
            Ok(selected.then(|| crate::conversion::to_version(resource, object)))
        })
    }

    /// A list whose items stay the stored JSON, with their resourceVersion spliced in: no
    /// parsing and re-encoding per item. `None` when the list needs parsed objects (selectors,
    /// a converted version, or a stored object in an unexpected shape).
    pub fn list_encoded(
        &self,
        resource: &ResourceInfo,
        namespace: Option<&str>,
        options: &ListOptions,
    ) -> Result<Option<Page<Vec<u8>>>, ApiError> {
        if !options.labels.is_empty()
            || !options.fields.is_empty()
            || crate::conversion::converts(resource)
        {
            return Ok(None);
        }
        let mut unexpected = false;
        let page = self.scan(resource, namespace, options, |kv| {
            let spliced = splice_resource_version(&kv.value, kv.mod_revision);
            unexpected |= spliced.is_none();
            Ok(spliced)
        })?;
        Ok((!unexpected).then_some(page))
    }

    /// Pages through the stored objects of `resource`, keeping what `keep` returns: the limit
    /// and continue-token logic of every list.
    fn scan<T>(
        &self,
        resource: &ResourceInfo,
        namespace: Option<&str>,
        options: &ListOptions,
        mut keep: impl FnMut(&KeyValue) -> Result<Option<T>, ApiError>,
    ) -> Result<Page<T>, ApiError> {
        let prefix = resource.storage_list_prefix(namespace);
        let (mut first_revision, mut start_after) = match &options.continue_token {
            Some(token) => {
                let (rv, start) = decode_continue(token, &prefix)?;
                (Some(rv), Some(start))
            }
            None => (None, None),
        };
        // Read in chunks so that a selective filter with a small limit does not scan everything
        // at once, and a large list is not held twice.
        let chunk = if options.limit == 0 {
            0
        } else {
            options.limit.max(100)
        };
        let mut items = Vec::new();
        loop {
            let page = self.store.list(&prefix, start_after.as_deref(), chunk)?;
            let revision = *first_revision.get_or_insert(page.revision);
            for (i, kv) in page.items.iter().enumerate() {
                let Some(item) = keep(kv)? else { continue };
                items.push(item);
                if options.limit > 0 && items.len() == options.limit {
                    let more = page.more || i + 1 < page.items.len();
                    let continue_token = more.then(|| encode_continue(revision, &kv.key));
                    return Ok(Page {
                        items,
                        revision,
                        continue_token,
                    });
                }
            }
            if !page.more {
                return Ok(Page {
                    items,
                    revision,
                    continue_token: None,
                });
            }
            start_after = page.items.last().map(|kv| kv.key.clone());
        }
    }

    /// Decodes a request body as `resource`, applying `fieldValidation`.
    pub fn decode_body(
        &self,
        resource: &ResourceInfo,
        mut body: Value,
        validation: FieldValidation,
    ) -> Result<(Value, Vec<String>), ApiError> {
        if !body.is_object() {
            return Err(ApiError::BadRequest(format!(
                "Object 'Kind' is missing in '{body}'"
            )));
        }
        let expected_version = resource.api_version();
        match body.get("apiVersion").and_then(Value::as_str) {
            None | Some("") => body["apiVersion"] = json!(expected_version),
            Some(v) if v == expected_version => {}
            Some(v) => {
                return Err(ApiError::BadRequest(format!(
                    "the API version in the data ({v}) does not match the expected API version ({expected_version})"
                )));
            }
        }
        match body.get("kind").and_then(Value::as_str) {
            None | Some("") => body["kind"] = json!(resource.kind),
            Some(k) if k == resource.kind => {}
            Some(k) => {
                return Err(ApiError::BadRequest(format!(
                    "the kind in the data ({k}) does not match the expected kind ({})",
                    resource.kind
                )));
            }
        }
        let decoded =
            typed::decode(resource, body).map_err(|e| ApiError::BadRequest(e.to_string()))?;
        let unknown: Vec<String> = decoded
            .unknown_fields
            .iter()
            .map(|f| format!("unknown field {f:?}"))
            .collect();
        match validation {
            FieldValidation::Strict if !unknown.is_empty() => Err(ApiError::BadRequest(format!(
                "{} in version {:?} cannot be handled as a {}: strict decoding error: {}",
                resource.kind,
                resource.version,
                resource.kind,
                unknown.join(", ")
            ))),
            FieldValidation::Warn => Ok((decoded.object, unknown)),
            _ => Ok((decoded.object, Vec::new())),
        }
    }

    /// Refuses new objects in a namespace that is missing or being deleted.
    fn check_namespace_open(
        &self,
        resource: &ResourceInfo,
        namespace: Option<&str>,
        name: &str,
    ) -> Result<(), ApiError> {
        let Some(ns) = namespace.filter(|_| resource.namespaced) else {
            return Ok(());
        };
        let namespaces = resource::find("", "v1", "namespaces").expect("namespaces are registered");
        let kv = self
            .store
            .get(&namespaces.storage_key(None, ns))?
            .ok_or_else(|| not_found(namespaces, ns))?;
        if object::is_terminating(&decode_stored(&kv)?) {
            return Err(ApiError::Forbidden(format!(
                "{} {name:?} is forbidden: unable to create new content in namespace {ns} because it is being terminated",
                resource.plural,
            )));
        }
        Ok(())
    }

    pub async fn create(
        &self,
        resource: &'static ResourceInfo,
        namespace: Option<&str>,
        body: Value,
        options: WriteOptions,
    ) -> Result<Written, ApiError> {
        let (mut object, warnings) = self.decode_body(resource, body, options.field_validation)?;
        object = crate::conversion::to_storage(resource, object);
        if resource.namespaced {
            let url_ns = namespace.ok_or_else(|| {
                ApiError::BadRequest("the namespace of the object must be set".into())
            })?;
            match object::namespace(&object) {
                Some(ns) if ns != url_ns => {
                    return Err(ApiError::BadRequest(
                        "the namespace of the provided object does not match the namespace sent on the request".into(),
                    ));
                }
                _ => object::set_meta(&mut object, "namespace", json!(url_ns)),
            }
        } else {
            object::set_meta(&mut object, "namespace", Value::Null);
        }
        // Admission errors name the object as Kubernetes' do: its generateName when the name is
        // yet to be generated.
        let admission_name = object::name(&object)
            .or_else(|| object::str_at(&object, "/metadata/generateName"))
            .filter(|n| !n.is_empty())
            .unwrap_or("Unknown")
            .to_string();
        if object::name(&object).is_none()
            && let Some(prefix) =
                object::str_at(&object, "/metadata/generateName").filter(|s| !s.is_empty())
        {
            let name = format!("{prefix}{}", random_suffix());
            object::set_meta(&mut object, "name", json!(name));
        }
        prepare_for_create(resource, &mut object);
        defaults::apply_defaults(resource, &mut object);
        self.admit_create(resource, &mut object, &admission_name)?;
        let name = object::name(&object).unwrap_or_default().to_string();
        let mut errors = validation::validate(resource, &object, None);
        if name.is_empty() && errors.is_empty() {
            errors.push(capstan_api::FieldError::required(
                "metadata.name",
                "name or generateName is required",
            ));
        }
        if !errors.is_empty() {
            return Err(invalid(resource, &name, errors));
        }
        let (api_version, time) = (resource.api_version(), format_time(now()));
        if let Some(writer) = options.writer(&api_version, &time) {
            managed_fields::record_update(resource.kind, None, &mut object, &writer);
        }
        self.check_namespace_open(resource, namespace, &name)?;
        let _allocation = if resource.kind == "Service" {
            let guard = self.service_allocation.lock().await;
            let services = self.list(resource, None, &ListOptions::default())?.items;
            service_ips::allocate(&self.service_range, &mut object, &services)
                .map_err(|errors| invalid(resource, &name, errors))?;
            Some(guard)
        } else {
            None
        };
        let bytes = encode_for_store(&object)?;
        if options.dry_run {
            return Ok(written(resource, object, true, warnings));
        }
        let key = resource.storage_key(namespace, &name);
        let kv = match self.blocking(move |s| s.create(&key, bytes)).await? {
            Ok(kv) => kv,
            Err(StoreError::AlreadyExists { .. }) => {
                return Err(ApiError::AlreadyExists {
                    group: resource.group.to_string(),
                    resource: resource.plural.to_string(),
                    name,
                });
            }
            Err(e) => return Err(e.into()),
        };
        set_resource_version(&mut object, &kv);
        Ok(written(resource, object, true, warnings))
    }

    /// Read-modify-write of one object, retried when another writer got there first; a
    /// resourceVersion pinned in what `change` returns must match the object read, else 409.
    /// `change` builds the new object from the current one, given without its resourceVersion
    /// (so that one in the result is always the client's); what it returns is prepared,
    /// defaulted, validated and stored. A result equal to the current object is not written.
    pub async fn update_with(
        &self,
        resource: &'static ResourceInfo,
        namespace: Option<&str>,
        name: &str,
        subresource: Option<Subresource>,
        options: WriteOptions,
        mut change: impl FnMut(&Value) -> Result<(Value, Vec<String>), ApiError>,
    ) -> Result<Written, ApiError> {
        let key = resource.storage_key(namespace, name);
        loop {
            let current_kv = self.get_kv(resource, namespace, name)?;
            let current = decode_stored(&current_kv)?;
            // `change` sees the object without its resourceVersion, so that a resourceVersion in
            // what it returns is one the client sent (a precondition, answered with 409 when
            // stale) and not one copied from the stored object (retried on conflict).
            let unversioned = without_resource_version(&current);
            let (proposed, warnings) =
                change(&crate::conversion::to_version(resource, unversioned))?;
            let proposed = crate::conversion::to_storage(resource, proposed);
            let pinned = object::resource_version(&proposed).map(str::to_string);
            if let Some(rv) = &pinned
                && *rv != current_kv.mod_revision.to_string()
            {
                return Err(conflict(resource, name, MODIFIED));
            }
            if let Some(body_name) = object::name(&proposed)
                && body_name != name
            {
                return Err(ApiError::BadRequest(format!(
                    "the name of the object ({body_name}) does not match the name on the URL ({name})"
                )));
            }
            let mut object = prepare_for_update(resource, subresource, proposed, &current)?;
            defaults::apply_defaults(resource, &mut object);
            if subresource.is_none() {
                self.admit_update(resource, &mut object, &current, name)?;
            }
            let errors = if matches!(
                subresource,
                Some(Subresource::Status | Subresource::Binding | Subresource::Finalize)
            ) {
                Vec::new()
            } else {
                validation::validate(resource, &object, Some(&current))
            };
            if !errors.is_empty() {
                return Err(invalid(resource, name, errors));
            }
            let (api_version, time) = (resource.api_version(), format_time(now()));
            if subresource.is_none()
                && let Some(writer) = options.writer(&api_version, &time)
            {
                managed_fields::record_update(resource.kind, Some(&current), &mut object, &writer);
            }
            if without_resource_version(&object) == without_resource_version(&current) {
                return Ok(written(resource, current, false, warnings));
            }
            // The last finalizer of an object being deleted is gone: delete it for real. A pod
            // in its grace period (deletionGracePeriodSeconds > 0) stays until its agent deletes
            // it, whatever updates its status meanwhile, as Kubernetes' store does.
            let in_grace_period = object
                .pointer("/metadata/deletionGracePeriodSeconds")
                .and_then(Value::as_i64)
                .is_some_and(|grace| grace > 0);
            let finishes_deletion = object::is_terminating(&object)
                && !holds_deletion(resource, &object)
                && !in_grace_period;
            let bytes = if finishes_deletion {
                None
            } else {
                Some(encode_for_store(&object)?)
            };
            if options.dry_run {
                return Ok(written(resource, object, false, warnings));
            }
            let write_key = key.clone();
            let expected = current_kv.mod_revision;
            let result = self
                .blocking(move |s| match bytes {
                    Some(bytes) => s.update(&write_key, bytes, expected),
                    None => s.delete(&write_key, Some(expected)),
                })
                .await?;
            match settle(resource, name, result)? {
                Some(kv) => {
                    set_resource_version(&mut object, &kv);
                    return Ok(written(resource, object, false, warnings));
                }
                None => continue,
            }
        }
    }

    /// `PUT` of an object or its status: the body replaces the object.
    pub async fn update(
        &self,
        resource: &'static ResourceInfo,
        namespace: Option<&str>,
        name: &str,
        subresource: Option<Subresource>,
        body: Value,
        options: WriteOptions,
    ) -> Result<Written, ApiError> {
        let (decoded, warnings) = self.decode_body(resource, body, options.field_validation)?;
        self.update_with(resource, namespace, name, subresource, options, |_| {
            Ok((decoded.clone(), warnings.clone()))
        })
        .await
    }

    /// Server-side apply (`application/apply-patch+yaml`): creates the object if missing,
    /// merges the applied configuration otherwise, with field ownership and conflicts.
    pub async fn apply(
        &self,
        resource: &'static ResourceInfo,
        namespace: Option<&str>,
        name: &str,
        body: Value,
        force: bool,
        options: WriteOptions,
    ) -> Result<Written, ApiError> {
        let manager = options.field_manager.clone().ok_or_else(|| {
            ApiError::BadRequest(
                "PATCH requests with apply content type require a fieldManager".into(),
            )
        })?;
        let (applied, warnings) = self.decode_body(resource, body, options.field_validation)?;
        if let Some(body_name) = object::name(&applied)
            && body_name != name
        {
            return Err(ApiError::BadRequest(format!(
                "the name of the object ({body_name}) does not match the name on the URL ({name})"
            )));
        }
        let (api_version, time) = (resource.api_version(), format_time(now()));
        let writer = Writer {
            manager: &manager,
            api_version: &api_version,
            time: &time,
        };
        let apply_error = |conflicts: Vec<managed_fields::Conflict>| ApiError::ApplyConflict {
            group: resource.group.to_string(),
            resource: resource.plural.to_string(),
            name: name.to_string(),
            message: managed_fields::conflicts_message(&conflicts),
            causes: conflicts
                .iter()
                .map(|c| (c.path.clone(), format!("conflict with {:?}", c.manager)))
                .collect(),
        };
        // The apply records ownership itself.
        let internal = WriteOptions {
            field_manager: None,
            ..options
        };
        if self.get(resource, namespace, name).is_err() {
            let mut object = managed_fields::apply(resource.kind, None, &applied, &writer, force)
                .map_err(apply_error)?;
            object::set_meta(&mut object, "name", json!(name));
            match self
                .create(resource, namespace, object, internal.clone())
                .await
            {
                Err(ApiError::AlreadyExists { .. }) => {} // created meanwhile: apply over it
                other => {
                    return other.map(|w| Written {
                        warnings: [warnings.clone(), w.warnings].concat(),
                        ..w
                    });
                }
            }
        }
        self.update_with(resource, namespace, name, None, internal, |current| {
            let merged =
                managed_fields::apply(resource.kind, Some(current), &applied, &writer, force)
                    .map_err(apply_error)?;
            Ok((merged, warnings.clone()))
        })
        .await
    }

    pub async fn delete(
        &self,
        resource: &'static ResourceInfo,
        namespace: Option<&str>,
        name: &str,
        options: &DeleteOptions,
    ) -> Result<(Value, bool), ApiError> {
        if resource.group == "scheduling.k8s.io"
            && resource.kind == "PriorityClass"
            && validation::scheduling::SYSTEM_PRIORITY_CLASSES
                .iter()
                .any(|c| c.name == name)
        {
            return Err(ApiError::Forbidden(format!(
                "{} {name:?} is forbidden: this is a system priority class and cannot be deleted",
                resource.group_resource()
            )));
        }
        let key = resource.storage_key(namespace, name);
        loop {
            let kv = self.get_kv(resource, namespace, name)?;
            let current = decode_stored(&kv)?;
            if let Some(uid) = &options.precondition_uid {
                let actual = object::uid(&current).unwrap_or_default();
                if uid != actual {
                    return Err(conflict(
                        resource,
                        name,
                        format!(
                            "Precondition failed: UID in precondition: {uid}, UID in object meta: {actual}"
                        ),
                    ));
                }
            }
            if let Some(rv) = &options.precondition_resource_version {
                let actual = kv.mod_revision.to_string();
                if *rv != actual {
                    return Err(conflict(
                        resource,
                        name,
                        format!(
                            "Precondition failed: ResourceVersion in precondition: {rv}, ResourceVersion in object meta: {actual}"
                        ),
                    ));
                }
            }
            // Foreground and orphan deletion hand the object to the garbage collector through
            // a finalizer, added once, when the deletion starts (as kube-apiserver does).
            let mut current = current;
            if let Some(finalizer) = options.propagation.finalizer()
                && !object::is_terminating(&current)
                && !object::finalizers(&current).contains(&finalizer)
            {
                let finalizers = object::metadata_mut(&mut current)
                    .entry("finalizers")
                    .or_insert_with(|| json!([]));
                if let Some(list) = finalizers.as_array_mut() {
                    list.push(json!(finalizer));
                }
            }
            // A pod running on a node is only marked: its agent stops the containers within
            // the grace period and then deletes it for good (with a grace period of 0).
            if let Some(grace) = graceful_deletion_period(resource, &current, options) {
                let shortens = current
                    .pointer("/metadata/deletionGracePeriodSeconds")
                    .and_then(Value::as_i64)
                    .is_none_or(|existing| grace < existing);
                if !shortens {
                    return Ok((crate::conversion::to_version(resource, current), false));
                }
                let mut marked = current.clone();
                let deadline = now() + std::time::Duration::from_secs(grace as u64);
                object::set_meta(
                    &mut marked,
                    "deletionTimestamp",
                    json!(format_time(deadline)),
                );
                object::set_meta(&mut marked, "deletionGracePeriodSeconds", json!(grace));
                if options.dry_run {
                    return Ok((crate::conversion::to_version(resource, marked), false));
                }
                let bytes = encode_for_store(&marked)?;
                let write_key = key.clone();
                let expected = kv.mod_revision;
                let result = self
                    .blocking(move |s| s.update(&write_key, bytes, expected))
                    .await?;
                match settle(resource, name, result)? {
                    Some(kv) => {
                        set_resource_version(&mut marked, &kv);
                        return Ok((crate::conversion::to_version(resource, marked), false));
                    }
                    None => continue,
                }
            }
            // Objects with finalizers (and namespaces, which finalize through their spec) are
            // only marked; whoever owns the finalizer removes it and the last removal deletes.
            if holds_deletion(resource, &current) {
                if object::is_terminating(&current) {
                    return Ok((crate::conversion::to_version(resource, current), false));
                }
                let mut marked = current.clone();
                object::set_meta(&mut marked, "deletionTimestamp", json!(format_time(now())));
                object::set_meta(&mut marked, "deletionGracePeriodSeconds", json!(0));
                if resource.kind == "Namespace" {
                    object::object_field_mut(&mut marked, "status")
                        .insert("phase".into(), json!("Terminating"));
                }
                if options.dry_run {
                    return Ok((crate::conversion::to_version(resource, marked), false));
                }
                let bytes = encode_for_store(&marked)?;
                let write_key = key.clone();
                let expected = kv.mod_revision;
                let result = self
                    .blocking(move |s| s.update(&write_key, bytes, expected))
                    .await?;
                match settle(resource, name, result)? {
                    Some(kv) => {
                        set_resource_version(&mut marked, &kv);
                        return Ok((crate::conversion::to_version(resource, marked), false));
                    }
                    None => continue,
                }
            }
            if options.dry_run {
                return Ok((crate::conversion::to_version(resource, current), true));
            }
            let delete_key = key.clone();
            let expected = kv.mod_revision;
            let result = self
                .blocking(move |s| s.delete(&delete_key, Some(expected)))
                .await?;
            match settle(resource, name, result)? {
                Some(deleted) => {
                    let object = decode_stored(&deleted)?;
                    return Ok((crate::conversion::to_version(resource, object), true));
                }
                None => continue,
            }
        }
    }

    /// Deletes every object a list with `list_options` returns; answers the list of what was
    /// deleted or marked.
    pub async fn delete_collection(
        &self,
        resource: &'static ResourceInfo,
        namespace: Option<&str>,
        list_options: &ListOptions,
        options: &DeleteOptions,
    ) -> Result<ListPage, ApiError> {
        let page = self.list(resource, namespace, list_options)?;
        let mut items = Vec::new();
        for item in &page.items {
            let name = object::name(item).unwrap_or_default();
            match self
                .delete(resource, object::namespace(item), name, options)
                .await
            {
                Ok((object, _)) => items.push(object),
                Err(ApiError::NotFound { .. }) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(ListPage { items, ..page })
    }

    /// Creates the object if missing (used to bootstrap built-in objects); an existing one is
    /// left as it is.
    pub async fn ensure(
        &self,
        resource: &'static ResourceInfo,
        object: Value,
    ) -> Result<(), ApiError> {
        let namespace = object::namespace(&object).map(str::to_string);
        let name = object::name(&object).unwrap_or_default();
        if self.get(resource, namespace.as_deref(), name).is_ok() {
            return Ok(());
        }
        match self
            .create(
                resource,
                namespace.as_deref(),
                object,
                WriteOptions::default(),
            )
            .await
        {
            Ok(_) | Err(ApiError::AlreadyExists { .. }) => Ok(()),
            Err(e) => Err(e),
        }
    }
}

/// What a compare-and-swap write's result means inside a read-modify-write loop: the written
/// key, or `None` to read again and retry because another writer got there first. A retry,
/// not a 409, even when the caller pinned a resourceVersion: the loop checks the pin against
/// what it reads again, and answers 409 there if the pin went stale. (Answering 409 here
/// instead turned every patch into a pinned write, since a patch keeps the resourceVersion of
/// the object it applies to, and lost-race patches failed where Kubernetes retries them.)
fn settle(
    resource: &ResourceInfo,
    name: &str,
    result: Result<KeyValue, StoreError>,
) -> Result<Option<KeyValue>, ApiError> {
    match result {
        Ok(kv) => Ok(Some(kv)),
        Err(StoreError::Conflict { .. }) => Ok(None),
        Err(StoreError::NotFound { .. }) => Err(not_found(resource, name)),
        Err(e) => Err(e.into()),
    }
}

fn set_resource_version(object: &mut Value, kv: &KeyValue) {
    object::set_meta(
        object,
        "resourceVersion",
        json!(kv.mod_revision.to_string()),
    );
}

/// A write's result, in the version the client used.
fn written(
    resource: &ResourceInfo,
    object: Value,
    created: bool,
    warnings: Vec<String>,
) -> Written {
    Written {
        object: crate::conversion::to_version(resource, object),
        created,
        warnings,
    }
}

/// Does something still hold the object back from deletion: finalizers, or for a namespace
/// the `spec.finalizers` its lifecycle clears once the namespace is empty?
/// Kubernetes' pod strategy `CheckGracefulDelete`: a pod on a node gets the grace period the
/// request asks for, else its `terminationGracePeriodSeconds`; a pod that never reached a node,
/// or whose containers have all ended (phase Succeeded or Failed), goes at once. `None` means
/// delete now.
fn graceful_deletion_period(
    resource: &ResourceInfo,
    object: &Value,
    options: &DeleteOptions,
) -> Option<i64> {
    if resource.kind != "Pod" || !resource.group.is_empty() {
        return None;
    }
    let scheduled = object::str_at(object, "/spec/nodeName").is_some_and(|n| !n.is_empty());
    let ended = matches!(
        object::str_at(object, "/status/phase"),
        Some("Succeeded" | "Failed")
    );
    if !scheduled || ended {
        return None;
    }
    let grace = options.grace_period_seconds.unwrap_or_else(|| {
        object
            .pointer("/spec/terminationGracePeriodSeconds")
            .and_then(Value::as_i64)
            .unwrap_or(30)
    });
    (grace > 0).then_some(grace)
}

fn holds_deletion(resource: &ResourceInfo, object: &Value) -> bool {
    let spec_finalizers = resource.kind == "Namespace"
        && object
            .pointer("/spec/finalizers")
            .and_then(Value::as_array)
            .is_some_and(|f| !f.is_empty());
    spec_finalizers || !object::finalizers(object).is_empty()
}

/// Kubernetes' PrepareForCreate, common part: server-owned metadata is set here, whatever the
/// client sent.
fn prepare_for_create(resource: &ResourceInfo, object: &mut Value) {
    let meta = object::metadata_mut(object);
    for server_owned in [
        "resourceVersion",
        "deletionTimestamp",
        "deletionGracePeriodSeconds",
        "selfLink",
    ] {
        meta.remove(server_owned);
    }
    meta.insert("uid".into(), json!(uuid::Uuid::new_v4().to_string()));
    meta.insert("creationTimestamp".into(), json!(format_time(now())));
    if resource.tracks_generation {
        meta.insert("generation".into(), json!(1));
    } else {
        meta.remove("generation");
    }
    if resource.resets_status_on_create
        && let Some(map) = object.as_object_mut()
    {
        map.remove("status");
    }
}

/// Kubernetes' PrepareForUpdate, common part: metadata the server owns is kept from the stored
/// object; the main resource keeps the stored status and the status subresource keeps
/// everything but the status.
fn prepare_for_update(
    resource: &ResourceInfo,
    subresource: Option<Subresource>,
    proposed: Value,
    current: &Value,
) -> Result<Value, ApiError> {
    if subresource == Some(Subresource::Binding) {
        // The binding handler built the whole new pod from the stored one.
        return Ok(proposed);
    }
    if subresource == Some(Subresource::Finalize) {
        let mut out = current.clone();
        let finalizers = proposed
            .pointer("/spec/finalizers")
            .cloned()
            .unwrap_or(json!([]));
        object::object_field_mut(&mut out, "spec").insert("finalizers".into(), finalizers);
        return Ok(out);
    }
    if subresource == Some(Subresource::Status) {
        let mut out = current.clone();
        let status = proposed.get("status").cloned().unwrap_or(Value::Null);
        match out.as_object_mut() {
            Some(map) if !status.is_null() => {
                map.insert("status".into(), status);
            }
            Some(map) => {
                map.remove("status");
            }
            None => {}
        }
        return Ok(out);
    }
    let mut out = proposed;
    let current_meta = current
        .get("metadata")
        .and_then(Value::as_object)
        .cloned()
        .unwrap_or_default();
    {
        let meta = object::metadata_mut(&mut out);
        for kept in [
            "uid",
            "creationTimestamp",
            "deletionTimestamp",
            "deletionGracePeriodSeconds",
            "namespace",
            "name",
            "generation",
        ] {
            match current_meta.get(kept) {
                Some(v) => meta.insert(kept.to_string(), v.clone()),
                None => meta.remove(kept),
            };
        }
        meta.remove("selfLink");
    }
    if object::is_terminating(current) {
        let before: Vec<&str> = object::finalizers(current);
        let added: Vec<String> = object::finalizers(&out)
            .into_iter()
            .filter(|f| !before.contains(f))
            .map(str::to_string)
            .collect();
        if !added.is_empty() {
            return Err(ApiError::Invalid {
                group: resource.group.to_string(),
                kind: resource.kind.to_string(),
                name: object::name(current).unwrap_or_default().to_string(),
                errors: vec![capstan_api::FieldError::forbidden(
                    "metadata.finalizers",
                    format!(
                        "no new finalizers can be added if the object is being deleted, found new finalizers {added:?}"
                    ),
                )],
            });
        }
    }
    if resource.kind == "Service" {
        service_ips::keep_allocated(&mut out, current);
    }
    // A namespace's finalizers change only through `finalize`.
    if resource.kind == "Namespace" {
        let finalizers = current.pointer("/spec/finalizers").cloned();
        let spec = object::object_field_mut(&mut out, "spec");
        match finalizers {
            Some(f) => spec.insert("finalizers".into(), f),
            None => spec.remove("finalizers"),
        };
    }
    if resource.has_status() {
        let status = current.get("status").cloned();
        if let Some(map) = out.as_object_mut() {
            match status {
                Some(s) => map.insert("status".into(), s),
                None => map.remove("status"),
            };
        }
    }
    if resource.tracks_generation && spec_part(&out) != spec_part(current) {
        let generation = current
            .pointer("/metadata/generation")
            .and_then(Value::as_i64)
            .unwrap_or(0)
            + 1;
        object::set_meta(&mut out, "generation", json!(generation));
    }
    Ok(out)
}

/// Copies `labels` into a new map (for building objects in tests and bootstrap).
pub fn labels_map(pairs: &[(&str, &str)]) -> Map<String, Value> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), json!(v)))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use capstan_store::KvStore;

    fn registry() -> Registry {
        Registry::new(Arc::new(KvStore::memory()))
    }

    fn res(group: &str, plural: &str) -> &'static ResourceInfo {
        let version = if group == "autoscaling" { "v2" } else { "v1" };
        resource::find(group, version, plural).unwrap()
    }

    async fn with_namespace(r: &Registry, name: &str) {
        r.ensure(res("", "namespaces"), json!({"metadata": {"name": name}}))
            .await
            .unwrap();
    }

    /// Creates a ConfigMap in `default` with default options.
    async fn create_configmap(r: &Registry, body: Value) -> Written {
        let cm = res("", "configmaps");
        r.create(cm, Some("default"), body, WriteOptions::default())
            .await
            .unwrap()
    }

    fn configmap(name: &str, data: Value) -> Value {
        json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name}, "data": data})
    }

    #[tokio::test]
    async fn create_sets_server_owned_metadata_and_ignores_the_clients() {
        let r = registry();
        with_namespace(&r, "default").await;
        let mut body = configmap("c", json!({"a": "1"}));
        body["metadata"]["uid"] = json!("mine");
        body["metadata"]["resourceVersion"] = json!("99");
        let out = r
            .create(
                res("", "configmaps"),
                Some("default"),
                body,
                WriteOptions::default(),
            )
            .await
            .unwrap();
        assert_ne!(out.object["metadata"]["uid"], "mine");
        assert_eq!(out.object["metadata"]["namespace"], "default");
        assert_eq!(out.object["metadata"]["resourceVersion"], "2");
        assert!(out.object["metadata"]["creationTimestamp"].is_string());
    }

    #[tokio::test]
    async fn create_in_a_missing_namespace_is_not_found() {
        let r = registry();
        let err = r
            .create(
                res("", "configmaps"),
                Some("nope"),
                configmap("c", json!({})),
                WriteOptions::default(),
            )
            .await
            .unwrap_err();
        assert_eq!(err.to_string(), "namespaces \"nope\" not found");
    }

    #[tokio::test]
    async fn generate_name_makes_a_unique_name() {
        let r = registry();
        with_namespace(&r, "default").await;
        let body =
            json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"generateName": "cfg-"}});
        let out = r
            .create(
                res("", "configmaps"),
                Some("default"),
                body,
                WriteOptions::default(),
            )
            .await
            .unwrap();
        let name = out.object["metadata"]["name"].as_str().unwrap();
        assert!(name.starts_with("cfg-") && name.len() == 9, "{name}");
    }

    #[tokio::test]
    async fn stale_resource_version_conflicts_and_changes_nothing() {
        let r = registry();
        with_namespace(&r, "default").await;
        let cm = res("", "configmaps");
        let created = create_configmap(&r, configmap("c", json!({"a": "1"}))).await;
        let mut first = created.object.clone();
        first["data"]["a"] = json!("2");
        r.update(
            cm,
            Some("default"),
            "c",
            None,
            first,
            WriteOptions::default(),
        )
        .await
        .unwrap();
        let mut stale = created.object.clone();
        stale["data"]["a"] = json!("3");
        let err = r
            .update(
                cm,
                Some("default"),
                "c",
                None,
                stale,
                WriteOptions::default(),
            )
            .await
            .unwrap_err();
        assert_eq!(err.status_code().as_u16(), 409);
        assert_eq!(r.get(cm, Some("default"), "c").unwrap()["data"]["a"], "2");
    }

    /// Writes `data.racer` straight to the store, as a writer that wins a race would.
    fn race(r: &Registry, key: &str) {
        let kv = r.store().get(key).unwrap().unwrap();
        let mut object: Value = serde_json::from_slice(&kv.value).unwrap();
        object["data"]["racer"] = json!("won");
        let bytes = serde_json::to_vec(&object).unwrap();
        r.store().update(key, bytes, kv.mod_revision).unwrap();
    }

    #[tokio::test]
    async fn a_patch_that_loses_a_race_is_retried_on_the_new_state() {
        let r = registry();
        with_namespace(&r, "default").await;
        let cm = res("", "configmaps");
        create_configmap(&r, configmap("c", json!({"a": "1"}))).await;
        let key = cm.storage_key(Some("default"), "c");
        let mut calls = 0;
        // As a patch does: the result keeps the resourceVersion of the object it was applied to.
        let written = r
            .update_with(
                cm,
                Some("default"),
                "c",
                None,
                WriteOptions::default(),
                |current| {
                    calls += 1;
                    if calls == 1 {
                        race(&r, &key);
                    }
                    let mut patched = current.clone();
                    patched["data"]["a"] = json!("2");
                    Ok((patched, Vec::new()))
                },
            )
            .await
            .unwrap();
        assert_eq!(calls, 2);
        assert_eq!(written.object["data"], json!({"a": "2", "racer": "won"}));
        assert_eq!(
            r.get(cm, Some("default"), "c").unwrap()["data"],
            written.object["data"]
        );
    }

    #[tokio::test]
    async fn an_update_pinned_to_a_version_that_loses_a_race_conflicts() {
        let r = registry();
        with_namespace(&r, "default").await;
        let cm = res("", "configmaps");
        let created = create_configmap(&r, configmap("c", json!({"a": "1"}))).await;
        let key = cm.storage_key(Some("default"), "c");
        let mut raced = false;
        let err = r
            .update_with(
                cm,
                Some("default"),
                "c",
                None,
                WriteOptions::default(),
                |_| {
                    if !raced {
                        raced = true;
                        race(&r, &key);
                    }
                    let mut pinned = created.object.clone();
                    pinned["data"]["a"] = json!("2");
                    Ok((pinned, Vec::new()))
                },
            )
            .await
            .unwrap_err();
        assert_eq!(err.status_code().as_u16(), 409);
        let stored = r.get(cm, Some("default"), "c").unwrap();
        assert_eq!(stored["data"], json!({"a": "1", "racer": "won"}));
    }

    #[tokio::test]
    async fn generation_moves_with_spec_and_not_with_metadata_or_status() {
        let r = registry();
        with_namespace(&r, "default").await;
        let deploy = res("apps", "deployments");
        let body = json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web"},
            "spec": {"replicas": 1, "selector": {"matchLabels": {"app": "web"}},
                "template": {"metadata": {"labels": {"app": "web"}}, "spec": {"containers": [{"name": "c", "image": "i"}]}}}});
        r.create(deploy, Some("default"), body, WriteOptions::default())
            .await
            .unwrap();
        let relabel = r
            .update_with(
                deploy,
                Some("default"),
                "web",
                None,
                WriteOptions::default(),
                |cur| {
                    let mut o = cur.clone();
                    o["metadata"]["labels"] = json!({"x": "y"});
                    Ok((o, vec![]))
                },
            )
            .await
            .unwrap();
        assert_eq!(relabel.object["metadata"]["generation"], 1);
        let scaled = r
            .update_with(
                deploy,
                Some("default"),
                "web",
                None,
                WriteOptions::default(),
                |cur| {
                    let mut o = cur.clone();
                    o["spec"]["replicas"] = json!(3);
                    o["status"] = json!({"replicas": 7});
                    Ok((o, vec![]))
                },
            )
            .await
            .unwrap();
        assert_eq!(scaled.object["metadata"]["generation"], 2);
        assert!(
            scaled.object.get("status").is_none(),
            "the main resource ignores status"
        );
        let status = r
            .update_with(
                deploy,
                Some("default"),
                "web",
                Some(Subresource::Status),
                WriteOptions::default(),
                |cur| {
                    let mut o = cur.clone();
                    o["spec"]["replicas"] = json!(9);
                    o["status"] = json!({"replicas": 3});
                    Ok((o, vec![]))
                },
            )
            .await
            .unwrap();
        assert_eq!(
            status.object["spec"]["replicas"], 3,
            "the status subresource ignores spec"
        );
        assert_eq!(status.object["status"]["replicas"], 3);
        assert_eq!(status.object["metadata"]["generation"], 2);
    }

    #[tokio::test]
    async fn finalizers_hold_a_deleted_object_until_removed() {
        let r = registry();
        with_namespace(&r, "default").await;
        let cm = res("", "configmaps");
        let mut body = configmap("c", json!({}));
        body["metadata"]["finalizers"] = json!(["example.com/hold"]);
        r.create(cm, Some("default"), body, WriteOptions::default())
            .await
            .unwrap();
        let (marked, gone) = r
            .delete(cm, Some("default"), "c", &DeleteOptions::default())
            .await
            .unwrap();
        assert!(!gone);
        assert!(object::is_terminating(&marked));
        r.update_with(
            cm,
            Some("default"),
            "c",
            None,
            WriteOptions::default(),
            |cur| {
                let mut o = cur.clone();
                o["metadata"]["finalizers"] = json!([]);
                Ok((o, vec![]))
            },
        )
        .await
        .unwrap();
        assert!(matches!(
            r.get(cm, Some("default"), "c"),
            Err(ApiError::NotFound { .. })
        ));
    }

    #[tokio::test]
    async fn foreground_and_orphan_deletion_hold_the_object_with_the_collectors_finalizer() {
        let r = registry();
        with_namespace(&r, "default").await;
        let cm = res("", "configmaps");
        for (name, propagation, finalizer) in [
            ("fg", Propagation::Foreground, Some("foregroundDeletion")),
            ("orphan", Propagation::Orphan, Some("orphan")),
            ("bg", Propagation::Background, None),
        ] {
            r.create(
                cm,
                Some("default"),
                configmap(name, json!({})),
                WriteOptions::default(),
            )
            .await
            .unwrap();
            let options = DeleteOptions {
                propagation,
                ..Default::default()
            };
            let (marked, gone) = r.delete(cm, Some("default"), name, &options).await.unwrap();
            match finalizer {
                Some(finalizer) => {
                    assert!(!gone, "{name}");
                    assert!(object::is_terminating(&marked), "{name}");
                    assert_eq!(object::finalizers(&marked), [finalizer], "{name}");
                    // Deleting again does not add it twice.
                    let (again, _) = r.delete(cm, Some("default"), name, &options).await.unwrap();
                    assert_eq!(object::finalizers(&again), [finalizer], "{name}");
                }
                None => assert!(gone, "{name}"),
            }
        }
    }

    #[tokio::test]
    async fn a_pod_on_a_node_is_deleted_gracefully_and_only_for_good_by_a_zero_grace_delete() {
        let r = registry();
        with_namespace(&r, "default").await;
        let pods = res("", "pods");
        let pod = |name: &str, node: Option<&str>| {
            let mut pod = json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name},
                "spec": {"containers": [{"name": "c", "image": "busybox"}]}});
            if let Some(node) = node {
                pod["spec"]["nodeName"] = json!(node);
            }
            pod
        };
        for (name, node) in [("running", Some("n1")), ("pending", None)] {
            r.create(
                pods,
                Some("default"),
                pod(name, node),
                WriteOptions::default(),
            )
            .await
            .unwrap();
        }
        // Never scheduled: gone at once.
        let (_, gone) = r
            .delete(pods, Some("default"), "pending", &DeleteOptions::default())
            .await
            .unwrap();
        assert!(gone);
        // On a node: marked with the pod's grace period (30 s by default).
        let (marked, gone) = r
            .delete(pods, Some("default"), "running", &DeleteOptions::default())
            .await
            .unwrap();
        assert!(!gone);
        assert_eq!(marked["metadata"]["deletionGracePeriodSeconds"], 30);
        // A status update meanwhile (the agent reporting) must not finish the deletion.
        r.update_with(
            pods,
            Some("default"),
            "running",
            Some(Subresource::Status),
            WriteOptions::default(),
            |cur| {
                let mut o = cur.clone();
                o["status"] = json!({"phase": "Running"});
                Ok((o, vec![]))
            },
        )
        .await
        .unwrap();
        assert!(r.get(pods, Some("default"), "running").is_ok());
        // A shorter grace period shortens it; the agent's final delete (grace 0) removes it.
        let shorter = DeleteOptions {
            grace_period_seconds: Some(5),
            ..Default::default()
        };
        let (marked, _) = r
            .delete(pods, Some("default"), "running", &shorter)
            .await
            .unwrap();
        assert_eq!(marked["metadata"]["deletionGracePeriodSeconds"], 5);
        let now = DeleteOptions {
            grace_period_seconds: Some(0),
            ..Default::default()
        };
        let (_, gone) = r
            .delete(pods, Some("default"), "running", &now)
            .await
            .unwrap();
        assert!(gone);
    }

    #[tokio::test]
    async fn strict_field_validation_names_unknown_fields_and_stores_nothing() {
        let r = registry();
        with_namespace(&r, "default").await;
        let cm = res("", "configmaps");
        let mut body = configmap("c", json!({}));
        body["spec"] = json!({"x": 1});
        let strict = WriteOptions {
            field_validation: FieldValidation::Strict,
            ..Default::default()
        };
        let err = r
            .create(cm, Some("default"), body.clone(), strict)
            .await
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            "ConfigMap in version \"v1\" cannot be handled as a ConfigMap: strict decoding error: unknown field \"spec\""
        );
        assert!(r.get(cm, Some("default"), "c").is_err());
        let warned = r
            .create(cm, Some("default"), body, WriteOptions::default())
            .await
            .unwrap();
        assert_eq!(warned.warnings, vec!["unknown field \"spec\""]);
    }

    #[tokio::test]
    async fn dry_run_validates_but_stores_nothing() {
        let r = registry();
        with_namespace(&r, "default").await;
        let cm = res("", "configmaps");
        let dry = WriteOptions {
            dry_run: true,
            ..Default::default()
        };
        r.create(cm, Some("default"), configmap("c", json!({})), dry)
            .await
            .unwrap();
        assert!(r.get(cm, Some("default"), "c").is_err());
    }

    #[test]
    fn resource_versions_splice_into_stored_json_as_decoding_would_set_them() {
        let cases = [
            json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c", "labels": {"a": "{"}}, "data": {"k": "\"metadata\":{"}}),
            json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {}}),
        ];
        for object in cases {
            let kv = KeyValue {
                key: "/k".into(),
                value: encode_for_store(&object).unwrap().into(),
                create_revision: 3,
                mod_revision: 9,
            };
            let spliced: Value =
                serde_json::from_slice(&splice_resource_version(&kv.value, 9).unwrap()).unwrap();
            assert_eq!(spliced, decode_stored(&kv).unwrap());
        }
        assert_eq!(
            splice_resource_version(br#"{"metadata":{},"apiVersion":"v1"}"#, 1),
            None
        );
        assert_eq!(
            splice_resource_version(br#"{"apiVersion":"v1","x":{"metadata":{}}}"#, 1),
            None
        );
    }

    #[tokio::test]
    async fn lists_page_with_continue_tokens_and_filter_by_labels() {
        let r = registry();
        with_namespace(&r, "default").await;
        let cm = res("", "configmaps");
        for i in 0..5 {
            let mut body = configmap(&format!("c{i}"), json!({}));
            body["metadata"]["labels"] = json!({"parity": if i % 2 == 0 { "even" } else { "odd" }});
            r.create(cm, Some("default"), body, WriteOptions::default())
                .await
                .unwrap();
        }
        let mut options = ListOptions {
            limit: 2,
            ..Default::default()
        };
        let first = r.list(cm, Some("default"), &options).unwrap();
        assert_eq!(first.items.len(), 2);
        options.continue_token = first.continue_token.clone();
        let second = r.list(cm, Some("default"), &options).unwrap();
        assert_eq!(second.revision, first.revision);
        assert_eq!(object::name(&second.items[0]), Some("c2"));
        let even = ListOptions {
            labels: LabelSelector::parse("parity=even").unwrap(),
            ..Default::default()
        };
        assert_eq!(r.list(cm, None, &even).unwrap().items.len(), 3);
    }

    fn priority_class(name: &str, value: i64, global_default: bool) -> Value {
        json!({"apiVersion": "scheduling.k8s.io/v1", "kind": "PriorityClass",
               "metadata": {"name": name}, "value": value, "globalDefault": global_default})
    }

    fn pod_body(name: &str, spec: Value) -> Value {
        let mut spec = spec;
        spec["containers"] = json!([{"name": "c", "image": "busybox"}]);
        json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name}, "spec": spec})
    }

    #[tokio::test]
    async fn pod_creates_resolve_priority_classes_and_tolerate_node_problems_for_the_configured_time()
     {
        let r = registry().with_pod_admission(PodAdmission {
            not_ready_toleration_seconds: 60,
            unreachable_toleration_seconds: 90,
        });
        with_namespace(&r, "default").await;
        let classes = res("scheduling.k8s.io", "priorityclasses");
        let class = r
            .create(
                classes,
                None,
                priority_class("high", 1000, false),
                WriteOptions::default(),
            )
            .await
            .unwrap();
        assert_eq!(class.object["preemptionPolicy"], "PreemptLowerPriority");
        let pods = res("", "pods");
        let body = pod_body("p", json!({"priorityClassName": "high"}));
        let pod = r
            .create(pods, Some("default"), body, WriteOptions::default())
            .await
            .unwrap()
            .object;
        assert_eq!(pod["spec"]["priority"], 1000);
        assert_eq!(pod["spec"]["preemptionPolicy"], "PreemptLowerPriority");
        assert_eq!(
            pod["spec"]["tolerations"],
            json!([
                {"key": "node.kubernetes.io/not-ready", "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 60},
                {"key": "node.kubernetes.io/unreachable", "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 90},
            ])
        );
        // An update that leaves priority out keeps it; admission does not run twice over.
        let updated = r
            .update(
                pods,
                Some("default"),
                "p",
                None,
                pod_body(
                    "p",
                    json!({"priorityClassName": "high", "tolerations": pod["spec"]["tolerations"]}),
                ),
                WriteOptions::default(),
            )
            .await
            .unwrap()
            .object;
        assert_eq!(updated["spec"]["priority"], 1000);
        assert_eq!(updated["spec"]["tolerations"].as_array().unwrap().len(), 2);
    }

    #[tokio::test]
    async fn pods_naming_a_missing_class_or_their_own_priority_are_forbidden_and_not_stored() {
        let r = registry();
        with_namespace(&r, "default").await;
        let pods = res("", "pods");
        let cases = [
            (
                pod_body("p", json!({"priorityClassName": "foo"})),
                "pods \"p\" is forbidden: no PriorityClass with name foo was found",
            ),
            (
                pod_body(
                    "p",
                    json!({"priorityClassName": "system-node-critical", "priority": 3}),
                ),
                "pods \"p\" is forbidden: the integer value of priority (3) must not be provided in pod spec; priority admission controller computed 2000001000 from the given PriorityClass name",
            ),
        ];
        for (body, want) in cases {
            let err = r
                .create(pods, Some("default"), body, WriteOptions::default())
                .await
                .unwrap_err();
            assert_eq!(err.status_code(), hyper::StatusCode::FORBIDDEN);
            assert_eq!(err.to_string(), want);
            assert!(r.get(pods, Some("default"), "p").is_err());
        }
    }

    #[tokio::test]
    async fn only_one_priority_class_is_the_global_default_and_system_classes_stay() {
        let r = registry();
        let classes = res("scheduling.k8s.io", "priorityclasses");
        r.create(
            classes,
            None,
            priority_class("a", 10, true),
            WriteOptions::default(),
        )
        .await
        .unwrap();
        let err = r
            .create(
                classes,
                None,
                priority_class("b", 20, true),
                WriteOptions::default(),
            )
            .await
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            "priorityclasses.scheduling.k8s.io \"b\" is forbidden: PriorityClass a is marked as default. Only one default can exist"
        );
        let err = r
            .create(
                classes,
                None,
                priority_class("huge", 2_000_000_000, false),
                WriteOptions::default(),
            )
            .await
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            "PriorityClass.scheduling.k8s.io \"huge\" is invalid: value: Forbidden: maximum allowed value of a user defined priority is 1000000000"
        );
        let err = r
            .delete(
                classes,
                None,
                "system-node-critical",
                &DeleteOptions::default(),
            )
            .await
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            "priorityclasses.scheduling.k8s.io \"system-node-critical\" is forbidden: this is a system priority class and cannot be deleted"
        );
    }

    #[tokio::test]
    async fn disruption_budgets_start_with_a_zero_status_and_generation_one() {
        let r = registry();
        with_namespace(&r, "default").await;
        let budgets = res("policy", "poddisruptionbudgets");
        let body = json!({"apiVersion": "policy/v1", "kind": "PodDisruptionBudget",
            "metadata": {"name": "web"},
            "spec": {"minAvailable": 1, "selector": {"matchLabels": {"app": "web"}}},
            "status": {"disruptionsAllowed": 9}});
        let budget = r
            .create(budgets, Some("default"), body, WriteOptions::default())
            .await
            .unwrap()
            .object;
        assert_eq!(budget["metadata"]["generation"], 1);
        assert_eq!(
            budget["status"],
            json!({"disruptionsAllowed": 0, "currentHealthy": 0, "desiredHealthy": 0, "expectedPods": 0})
        );
        let both = json!({"apiVersion": "policy/v1", "kind": "PodDisruptionBudget",
            "metadata": {"name": "both"}, "spec": {"minAvailable": 1, "maxUnavailable": 1}});
        let err = r
            .create(budgets, Some("default"), both, WriteOptions::default())
            .await
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            "PodDisruptionBudget.policy \"both\" is invalid: spec: Invalid value: {\"maxUnavailable\":1,\"minAvailable\":1}: minAvailable and maxUnavailable cannot be both set"
        );
    }
}
