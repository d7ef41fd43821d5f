//! The OCI runtime spec (`config.json`) of a container, written from its [`ContainerConfig`].
//!
//! Defaults follow containerd's, which is what Kubernetes users get: the same capability set,
//! the same masked and read-only paths under /proc and /sys, the same /dev mounts.

use serde_json::{Value, json};

use crate::container::{ContainerConfig, Mount, Seccomp};

/// containerd's default capabilities (`oci.WithDefaultSpec`), which Kubernetes containers get
/// unless their securityContext adds or drops some.
pub const DEFAULT_CAPABILITIES: &[&str] = &[
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_FSETID",
    "CAP_FOWNER",
    "CAP_MKNOD",
    "CAP_NET_RAW",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETFCAP",
    "CAP_SETPCAP",
    "CAP_NET_BIND_SERVICE",
    "CAP_SYS_CHROOT",
    "CAP_KILL",
    "CAP_AUDIT_WRITE",
];

/// Every capability, for privileged containers.
pub const ALL_CAPABILITIES: &[&str] = &[
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_DAC_READ_SEARCH",
    "CAP_FOWNER",
    "CAP_FSETID",
    "CAP_KILL",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETPCAP",
    "CAP_LINUX_IMMUTABLE",
    "CAP_NET_BIND_SERVICE",
    "CAP_NET_BROADCAST",
    "CAP_NET_ADMIN",
    "CAP_NET_RAW",
    "CAP_IPC_LOCK",
    "CAP_IPC_OWNER",
    "CAP_SYS_MODULE",
    "CAP_SYS_RAWIO",
    "CAP_SYS_CHROOT",
    "CAP_SYS_PTRACE",
    "CAP_SYS_PACCT",
    "CAP_SYS_ADMIN",
    "CAP_SYS_BOOT",
    "CAP_SYS_NICE",
    "CAP_SYS_RESOURCE",
    "CAP_SYS_TIME",
    "CAP_SYS_TTY_CONFIG",
    "CAP_MKNOD",
    "CAP_LEASE",
    "CAP_AUDIT_WRITE",
    "CAP_AUDIT_CONTROL",
    "CAP_SETFCAP",
    "CAP_MAC_OVERRIDE",
    "CAP_MAC_ADMIN",
    "CAP_SYSLOG",
    "CAP_WAKE_ALARM",
    "CAP_BLOCK_SUSPEND",
    "CAP_AUDIT_READ",
    "CAP_PERFMON",
    "CAP_BPF",
    "CAP_CHECKPOINT_RESTORE",
];

/// What this process may hand on to its containers. A node agent may itself run with less than
/// every privilege (in a container, a VM sandbox, a user namespace), and the kernel refuses a
/// container more than its runtime has.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostPrivileges {
    /// The effective capabilities of this process: what privileged containers, and those that
    /// add `ALL`, get (containerd's `cap.Current()`).
    pub capabilities: Vec<String>,
    /// The lowest `oom_score_adj` a container may get: -1000, or this process's own when it
    /// lacks CAP_SYS_RESOURCE, without which the kernel refuses to lower it (containerd's
    /// `restrict_oom_score_adj`).
    pub min_oom_score_adj: i32,
}

impl HostPrivileges {
    /// This process's privileges, read once.
    pub fn current() -> &'static HostPrivileges {
        static CURRENT: std::sync::OnceLock<HostPrivileges> = std::sync::OnceLock::new();
        CURRENT.get_or_init(|| {
            let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
            let oom_score_adj =
                std::fs::read_to_string("/proc/self/oom_score_adj").unwrap_or_default();
            HostPrivileges::from_proc(&status, &oom_score_adj)
        })
    }

    /// Reads `/proc/self/status` and `/proc/self/oom_score_adj`. A status without a `CapEff`
    /// line is taken as all capabilities.
    pub fn from_proc(status: &str, oom_score_adj: &str) -> HostPrivileges {
        let effective = status
            .lines()
            .find_map(|line| line.strip_prefix("CapEff:"))
            .and_then(|mask| u64::from_str_radix(mask.trim(), 16).ok())
            .unwrap_or(u64::MAX);
        // ALL_CAPABILITIES is in the kernel's bit order.
        let capabilities: Vec<String> = ALL_CAPABILITIES
            .iter()
            .enumerate()
            .filter(|(bit, _)| effective & (1 << bit) != 0)
            .map(|(_, name)| name.to_string())
            .collect();
        let min_oom_score_adj = if capabilities.iter().any(|c| c == "CAP_SYS_RESOURCE") {
            -1000
        } else {
            oom_score_adj.trim().parse().unwrap_or(0)
        };
        HostPrivileges {
            capabilities,
            min_oom_score_adj,
        }
    }
}

/// The capability set of a container, as containerd's CRI builds it: privileged containers
/// get `all` (the runtime's own capabilities); others start from the defaults, `ALL` in `add`
/// makes that `all` and `ALL` in `drop` makes it empty, then the named ones are added, then
/// the named ones dropped (a capability both added and dropped is dropped). Names are taken
/// with or without the `CAP_` prefix and in any case, as Kubernetes accepts them.
pub fn capabilities(
    privileged: bool,
    add: &[String],
    drop: &[String],
    all: &[String],
) -> Vec<String> {
    let normalize = |name: &String| {
        let upper = name.to_ascii_uppercase();
        if upper.starts_with("CAP_") || upper == "ALL" {
            upper
        } else {
            format!("CAP_{upper}")
        }
    };
    if privileged {
        return all.to_vec();
    }
    let add: Vec<String> = add.iter().map(normalize).collect();
    let drop: Vec<String> = drop.iter().map(normalize).collect();
    let mut set: Vec<String> = DEFAULT_CAPABILITIES.iter().map(|c| c.to_string()).collect();
    if add.iter().any(|c| c == "ALL") {
        set = all.to_vec();
    }
    if drop.iter().any(|c| c == "ALL") {
        set.clear();
    }
    for cap in add.into_iter().filter(|c| c != "ALL") {
        if !set.contains(&cap) {
            set.push(cap);
        }
    }
    set.retain(|c| !drop.contains(c));
    set
}

/// Syscalls the RuntimeDefault profile refuses with EPERM: the ones Docker and containerd's
/// default profiles leave out for containers without extra capabilities (kernel modules,
/// clocks, mounts and namespaces, keyrings, tracing other processes, rebooting, swapping).
const SECCOMP_DENIED: &[&str] = &[
    "acct",
    "add_key",
    "bpf",
    "clock_adjtime",
    "clock_settime",
    "create_module",
    "delete_module",
    "finit_module",
    "fsconfig",
    "fsmount",
    "fsopen",
    "fspick",
    "get_kernel_syms",
    "get_mempolicy",
    "init_module",
    "ioperm",
    "iopl",
    "kcmp",
    "kexec_file_load",
    "kexec_load",
    "keyctl",
    "lookup_dcookie",
    "mbind",
    "mount",
    "mount_setattr",
    "move_mount",
    "move_pages",
    "name_to_handle_at",
    "nfsservctl",
    "open_by_handle_at",
    "open_tree",
    "perf_event_open",
    "pivot_root",
    "process_vm_readv",
    "process_vm_writev",
    "ptrace",
    "query_module",
    "quotactl",
    "reboot",
    "request_key",
    "set_mempolicy",
    "setns",
    "settimeofday",
    "swapoff",
    "swapon",
    "sysfs",
    "_sysctl",
    "umount2",
    "unshare",
    "uselib",
    "userfaultfd",
    "ustat",
    "vm86",
    "vm86old",
];

const MASKED_PATHS: &[&str] = &[
    "/proc/acpi",
    "/proc/asound",
    "/proc/kcore",
    "/proc/keys",
    "/proc/latency_stats",
    "/proc/timer_list",
    "/proc/timer_stats",
    "/proc/sched_debug",
    "/proc/scsi",
    "/sys/firmware",
    "/sys/devices/virtual/powercap",
];

const READONLY_PATHS: &[&str] = &[
    "/proc/bus",
    "/proc/fs",
    "/proc/irq",
    "/proc/sys",
    "/proc/sysrq-trigger",
];

/// The cgroup path (relative to each hierarchy) of a container of a pod.
pub fn cgroup_path(pod_uid: &str, container_id: &str) -> String {
    format!("/capstan/pod{pod_uid}/{container_id}")
}

/// Builds `config.json` for `config`, for a runtime with this process's privileges. The root
/// filesystem is `rootfs/` beside it.
pub fn spec(config: &ContainerConfig) -> Value {
    spec_for(config, HostPrivileges::current())
}

/// Builds `config.json` for `config`, for a runtime with privileges `host`.
pub fn spec_for(config: &ContainerConfig, host: &HostPrivileges) -> Value {
    let caps = capabilities(
        config.privileged,
        &config.capabilities_add,
        &config.capabilities_drop,
        &host.capabilities,
    );
    let mut mounts = vec![
        json!({"destination": "/proc", "type": "proc", "source": "proc", "options": ["nosuid", "noexec", "nodev"]}),
        json!({"destination": "/dev", "type": "tmpfs", "source": "tmpfs", "options": ["nosuid", "strictatime", "mode=755", "size=65536k"]}),
        json!({"destination": "/dev/pts", "type": "devpts", "source": "devpts", "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"]}),
        json!({"destination": "/dev/shm", "type": "tmpfs", "source": "shm", "options": ["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"]}),
        json!({"destination": "/dev/mqueue", "type": "mqueue", "source": "mqueue", "options": ["nosuid", "noexec", "nodev"]}),
        json!({"destination": "/sys", "type": "sysfs", "source": "sysfs", "options": ["nosuid", "noexec", "nodev", if config.privileged { "rw" } else { "ro" }]}),
    ];
    for mount in &config.mounts {
        mounts.push(match mount {
            Mount::Bind { source, destination, read_only } => {
                let mut options = vec!["rbind", "rprivate"];
                if *read_only {
                    options.push("ro");
                }
                json!({"destination": destination, "type": "bind", "source": source, "options": options})
            }
            Mount::Tmpfs { destination, size_bytes } => {
                let mut options = vec!["nosuid".to_string(), "nodev".to_string(), "mode=1777".to_string()];
                if let Some(size) = size_bytes {
                    options.push(format!("size={size}"));
                }
                json!({"destination": destination, "type": "tmpfs", "source": "tmpfs", "options": options})
            }
        });
    }

    let pid = match &config.pid_namespace {
        Some(shared) => json!({"type": "pid", "path": shared}),
        None => json!({"type": "pid"}),
    };
    let mut namespaces = vec![pid, json!({"type": "mount"})];
    let sandbox = &config.namespaces;
    if let Some(net) = &sandbox.network {
        namespaces.push(json!({"type": "network", "path": net}));
    }
    namespaces.push(json!({"type": "ipc", "path": sandbox.ipc}));
    if let Some(uts) = &sandbox.uts {
        namespaces.push(json!({"type": "uts", "path": uts}));
    }

    let mut resources = json!({});
    let limits = &config.resources;
    if !config.privileged {
        resources["devices"] = json!([{"allow": false, "access": "rwm"}]);
    } else {
        resources["devices"] = json!([{"allow": true, "access": "rwm"}]);
    }
    if let Some(limit) = limits.memory_limit_bytes {
        resources["memory"] = json!({"limit": limit});
    }
    let mut cpu = json!({"shares": limits.cpu_shares});
    if let Some(quota) = limits.cpu_quota_micros {
        cpu["quota"] = json!(quota);
        cpu["period"] = json!(crate::container::CPU_PERIOD_MICROS);
    }
    resources["cpu"] = cpu;

    let mut linux = json!({
        "cgroupsPath": cgroup_path(&config.pod_uid, &config.id),
        "namespaces": namespaces,
        "resources": resources,
    });
    if !config.privileged {
        linux["maskedPaths"] = json!(MASKED_PATHS);
        linux["readonlyPaths"] = json!(READONLY_PATHS);
    }
    if config.seccomp == Seccomp::RuntimeDefault && !config.privileged {
        linux["seccomp"] = json!({
            "defaultAction": "SCMP_ACT_ALLOW",
            "architectures": ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"],
            "syscalls": [{"names": SECCOMP_DENIED, "action": "SCMP_ACT_ERRNO", "errnoRet": 1}],
        });
    }

    let user = &config.user;
    json!({
        "ociVersion": "1.0.2",
        "process": {
            "terminal": false,
            "user": {"uid": user.uid, "gid": user.gid, "additionalGids": user.additional_gids},
            "args": config.args,
            "env": config.env,
            "cwd": config.working_dir,
            "capabilities": {"bounding": caps, "effective": caps, "permitted": caps},
            // No rlimits: the container inherits the agent's, as containerd's inherit its own.
            "noNewPrivileges": config.no_new_privileges,
            "oomScoreAdj": config.oom_score_adj.max(host.min_oom_score_adj),
        },
        "root": {"path": "rootfs", "readonly": config.readonly_rootfs},
        "mounts": mounts,
        "linux": linux,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strings(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn capabilities_follow_kubernetes_add_and_drop_rules() {
        let defaults = strings(DEFAULT_CAPABILITIES);
        // What the runtime itself holds: everything but CAP_SYS_RESOURCE.
        let all: Vec<String> = strings(ALL_CAPABILITIES)
            .into_iter()
            .filter(|c| c != "CAP_SYS_RESOURCE")
            .collect();
        let all_but_chown = all[1..].to_vec();
        // (name, privileged, add, drop, expected set)
        type Case<'a> = (&'a str, bool, &'a [&'a str], &'a [&'a str], Vec<String>);
        let cases: &[Case] = &[
            ("defaults", false, &[], &[], defaults.clone()),
            ("drop all", false, &[], &["ALL"], vec![]),
            (
                "drop all add one",
                false,
                &["NET_ADMIN"],
                &["all"],
                strings(&["CAP_NET_ADMIN"]),
            ),
            ("prefix optional", false, &["CAP_SYS_TIME"], &["chown"], {
                let mut v = defaults[1..].to_vec();
                v.push("CAP_SYS_TIME".into());
                v
            }),
            (
                "added and dropped is dropped",
                false,
                &["NET_ADMIN"],
                &["NET_ADMIN"],
                defaults.clone(),
            ),
            (
                "add all is the runtime's own",
                false,
                &["ALL"],
                &[],
                all.clone(),
            ),
            (
                "add all drop one",
                false,
                &["ALL"],
                &["CHOWN"],
                all_but_chown,
            ),
            ("add all drop all", false, &["ALL"], &["ALL"], vec![]),
            (
                "privileged is the runtime's own",
                true,
                &[],
                &["ALL"],
                all.clone(),
            ),
        ];
        for (name, privileged, add, drop, want) in cases {
            let got = capabilities(*privileged, &strings(add), &strings(drop), &all);
            assert_eq!(&got, want, "{name}");
        }
    }

    #[test]
    fn host_privileges_come_from_the_effective_capabilities_and_own_oom_score() {
        let full = HostPrivileges::from_proc("Name:\tcapstan\nCapEff:\t000001ffffffffff\n", "0\n");
        assert_eq!(full.capabilities, strings(ALL_CAPABILITIES));
        assert_eq!(full.min_oom_score_adj, -1000);
        // Without CAP_SYS_RESOURCE (bit 24) the kernel refuses lowering oom_score_adj.
        let sandboxed = HostPrivileges::from_proc("CapEff:\t000001fffeffffff\n", "-5\n");
        assert_eq!(sandboxed.capabilities.len(), ALL_CAPABILITIES.len() - 1);
        assert!(
            !sandboxed
                .capabilities
                .contains(&"CAP_SYS_RESOURCE".to_string())
        );
        assert_eq!(sandboxed.min_oom_score_adj, -5);
        let defaults_only = HostPrivileges::from_proc("CapEff:\t00000000a80425fb\n", "0");
        assert_eq!(defaults_only.capabilities.len(), DEFAULT_CAPABILITIES.len());
    }

    #[test]
    fn oom_score_adj_is_never_below_what_the_runtime_may_set() {
        let mut config = ContainerConfig::for_tests();
        config.oom_score_adj = -997;
        let oom_score_adj = |min_oom_score_adj| {
            let host = HostPrivileges {
                capabilities: strings(DEFAULT_CAPABILITIES),
                min_oom_score_adj,
            };
            spec_for(&config, &host)["process"]["oomScoreAdj"].clone()
        };
        assert_eq!(oom_score_adj(-1000), -997);
        assert_eq!(oom_score_adj(0), 0);
    }

    #[test]
    fn the_spec_is_a_valid_oci_runtime_spec() {
        let config = ContainerConfig::for_tests();
        let value = spec(&config);
        let parsed: oci_spec::runtime::Spec = serde_json::from_value(value).expect("valid spec");
        let linux = parsed.linux().as_ref().unwrap();
        assert_eq!(
            linux.cgroups_path().as_ref().unwrap().to_str(),
            Some("/capstan/podu1/c1")
        );
        assert!(linux.seccomp().is_some());
        assert_eq!(
            parsed.process().as_ref().unwrap().args().as_ref().unwrap(),
            &["sh", "-c", "true"]
        );
    }
}
