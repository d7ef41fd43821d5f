//! Resource amounts as the scheduler adds and compares them: integers parsed once (CPU in
//! millicores, everything else in whole units), so filtering a node is integer arithmetic.
//!
//! A pod's request is computed the way Kubernetes' `resourcehelper.PodRequests` does it: the sum
//! of its containers and restartable (sidecar) init containers, or the largest init container
//! step if that is larger, plus the pod overhead. A quantity that does not parse counts as zero:
//! the API server's validation refuses such pods, so the scheduler only meets them if something
//! bypassed validation, and refusing to schedule anything would be worse.

use std::collections::BTreeMap;

use capstan_api::quantity::Quantity;
use k8s_openapi::api::core::v1::{Container, PodSpec};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity as ApiQuantity;

pub const CPU: &str = "cpu";
pub const MEMORY: &str = "memory";
pub const EPHEMERAL_STORAGE: &str = "ephemeral-storage";
pub const PODS: &str = "pods";

/// kube-scheduler's defaults for containers without requests, used only for scoring so that
/// request-less pods still spread (`schedutil.DefaultMilliCPURequest`, `DefaultMemoryRequest`).
pub const DEFAULT_MILLI_CPU_REQUEST: i64 = 100;
pub const DEFAULT_MEMORY_REQUEST: i64 = 200 * 1024 * 1024;

/// An amount of each resource. `extended` holds every other resource name (extended resources
/// such as `example.com/gpu`, `hugepages-2Mi`), kept sorted by name; usually empty.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Resources {
    pub milli_cpu: i64,
    pub memory: i64,
    pub ephemeral_storage: i64,
    pub pods: i64,
    pub extended: Vec<(String, i64)>,
}

impl Resources {
    /// From a resource list (`allocatable`, `requests`, `overhead`).
    pub fn from_list(list: Option<&BTreeMap<String, ApiQuantity>>) -> Resources {
        let mut resources = Resources::default();
        for (name, quantity) in list.into_iter().flatten() {
            resources.set(name, parse(name, &quantity.0));
        }
        resources
    }

    pub fn get(&self, name: &str) -> i64 {
        match name {
            CPU => self.milli_cpu,
            MEMORY => self.memory,
            EPHEMERAL_STORAGE => self.ephemeral_storage,
            PODS => self.pods,
            _ => self
                .extended
                .iter()
                .find(|(n, _)| n == name)
                .map_or(0, |(_, v)| *v),
        }
    }

    pub fn set(&mut self, name: &str, value: i64) {
        match name {
            CPU => self.milli_cpu = value,
            MEMORY => self.memory = value,
            EPHEMERAL_STORAGE => self.ephemeral_storage = value,
            PODS => self.pods = value,
            _ => match self
                .extended
                .binary_search_by(|(n, _)| n.as_str().cmp(name))
            {
                Ok(i) => self.extended[i].1 = value,
                Err(i) => self.extended.insert(i, (name.to_owned(), value)),
            },
        }
    }

    /// Adds (or, with `sign` -1, subtracts) `other`, saturating.
    pub fn add(&mut self, other: &Resources, sign: i64) {
        self.milli_cpu = self.milli_cpu.saturating_add(sign * other.milli_cpu);
        self.memory = self.memory.saturating_add(sign * other.memory);
        self.ephemeral_storage = self
            .ephemeral_storage
            .saturating_add(sign * other.ephemeral_storage);
        self.pods = self.pods.saturating_add(sign * other.pods);
        for (name, value) in &other.extended {
            let current = self.get(name);
            self.set(name, current.saturating_add(sign * value));
        }
    }

    /// Each resource set to the larger of the two.
    fn max_with(&mut self, other: &Resources) {
        self.milli_cpu = self.milli_cpu.max(other.milli_cpu);
        self.memory = self.memory.max(other.memory);
        self.ephemeral_storage = self.ephemeral_storage.max(other.ephemeral_storage);
        self.pods = self.pods.max(other.pods);
        for (name, value) in &other.extended {
            let current = self.get(name);
            self.set(name, current.max(*value));
        }
    }

    pub fn is_zero(&self) -> bool {
        self.milli_cpu == 0
            && self.memory == 0
            && self.ephemeral_storage == 0
            && self.extended.iter().all(|(_, v)| *v == 0)
    }
}

/// CPU in millicores, rounded up; everything else in whole units, rounded up (Go's
/// `MilliValue` and `Value`).
fn parse(name: &str, text: &str) -> i64 {
    let Some(quantity) = Quantity::parse(text) else {
        return 0;
    };
    let value = if name == CPU {
        quantity.milli_ceil()
    } else {
        quantity.ceil()
    };
    i64::try_from(value).unwrap_or(i64::MAX)
}

/// A container's requests; a resource with a limit but no request requests its limit, as API
/// defaulting would have set it.
fn container_requests(container: &Container, non_zero: bool) -> Resources {
    let mut resources = Resources::default();
    if let Some(requirements) = &container.resources {
        for (name, quantity) in requirements.limits.iter().flatten() {
            resources.set(name, parse(name, &quantity.0));
        }
        for (name, quantity) in requirements.requests.iter().flatten() {
            resources.set(name, parse(name, &quantity.0));
        }
    }
    if non_zero {
        if resources.milli_cpu == 0 {
            resources.milli_cpu = DEFAULT_MILLI_CPU_REQUEST;
        }
        if resources.memory == 0 {
            resources.memory = DEFAULT_MEMORY_REQUEST;
        }
    }
    resources
}

/// The pod's effective request (`resourcehelper.PodRequests`, sidecar-aware), plus overhead.
/// With `non_zero`, containers without a CPU or memory request count kube-scheduler's defaults,
/// as its scoring does. `pods` is always 1: each pod takes one of the node's pod slots.
pub fn pod_requests(spec: &PodSpec, non_zero: bool) -> Resources {
    let mut total = Resources::default();
    for container in &spec.containers {
        total.add(&container_requests(container, non_zero), 1);
    }
    let mut sidecars = Resources::default();
    let mut largest_init_step = Resources::default();
    for init in spec.init_containers.iter().flatten() {
        let requests = container_requests(init, non_zero);
        let step = if init.restart_policy.as_deref() == Some("Always") {
            // A sidecar keeps running beside the app containers and every later init container.
            total.add(&requests, 1);
            sidecars.add(&requests, 1);
            sidecars.clone()
        } else {
            let mut step = requests;
            step.add(&sidecars, 1);
            step
        };
        largest_init_step.max_with(&step);
    }
    total.max_with(&largest_init_step);
    total.add(&Resources::from_list(spec.overhead.as_ref()), 1);
    total.pods = 1;
    total
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::ResourceRequirements;

    fn container(cpu: &str, memory: &str, restart_policy: Option<&str>) -> Container {
        let mut requests = BTreeMap::new();
        if !cpu.is_empty() {
            requests.insert(CPU.to_string(), ApiQuantity(cpu.into()));
        }
        if !memory.is_empty() {
            requests.insert(MEMORY.to_string(), ApiQuantity(memory.into()));
        }
        Container {
            name: "c".into(),
            resources: Some(ResourceRequirements {
                requests: Some(requests),
                ..Default::default()
            }),
            restart_policy: restart_policy.map(Into::into),
            ..Default::default()
        }
    }

    #[test]
    fn effective_request_is_the_larger_of_containers_and_init_steps_plus_overhead() {
        struct Case {
            name: &'static str,
            containers: Vec<Container>,
            init: Vec<Container>,
            overhead: Option<&'static str>,
            want_cpu: i64,
            want_memory: i64,
        }
        let cases = [
            Case {
                name: "containers add up",
                containers: vec![
                    container("100m", "1Mi", None),
                    container("200m", "1Mi", None),
                ],
                init: vec![],
                overhead: None,
                want_cpu: 300,
                want_memory: 2 << 20,
            },
            Case {
                name: "a large init container dominates",
                containers: vec![container("100m", "1Mi", None)],
                init: vec![container("1", "", None)],
                overhead: None,
                want_cpu: 1000,
                want_memory: 1 << 20,
            },
            Case {
                name: "sidecars add to containers and to later init steps",
                containers: vec![container("100m", "", None)],
                init: vec![
                    container("50m", "", Some("Always")),
                    container("120m", "", None),
                ],
                overhead: None,
                want_cpu: 170,
                want_memory: 0,
            },
            Case {
                name: "overhead is added on top",
                containers: vec![container("100m", "", None)],
                init: vec![],
                overhead: Some("250m"),
                want_cpu: 350,
                want_memory: 0,
            },
            Case {
                name: "malformed quantities count as zero",
                containers: vec![container("lots", "1Mi", None)],
                init: vec![],
                overhead: None,
                want_cpu: 0,
                want_memory: 1 << 20,
            },
        ];
        for case in cases {
            let spec = PodSpec {
                containers: case.containers,
                init_containers: Some(case.init),
                overhead: case
                    .overhead
                    .map(|cpu| [(CPU.to_string(), ApiQuantity(cpu.into()))].into()),
                ..Default::default()
            };
            let requests = pod_requests(&spec, false);
            assert_eq!(requests.milli_cpu, case.want_cpu, "{}", case.name);
            assert_eq!(requests.memory, case.want_memory, "{}", case.name);
            assert_eq!(requests.pods, 1, "{}", case.name);
        }
    }

    #[test]
    fn scoring_requests_default_missing_cpu_and_memory() {
        let spec = PodSpec {
            containers: vec![container("", "", None)],
            ..Default::default()
        };
        let requests = pod_requests(&spec, true);
        assert_eq!(requests.milli_cpu, DEFAULT_MILLI_CPU_REQUEST);
        assert_eq!(requests.memory, DEFAULT_MEMORY_REQUEST);
    }
}
