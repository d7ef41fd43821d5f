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

/// The capability set of a container: the defaults (or all, when privileged), plus `add`,
/// minus `drop`. Names are taken with or without the `CAP_` prefix and in any case, as
/// Kubernetes accepts them; `ALL` adds or drops every one.
pub fn capabilities(privileged: bool, add: &[String], drop: &[String]) -> Vec<String> {
    let normalize = |name: &String| {
        let upper = name.to_ascii_uppercase();
        if upper.starts_with("CAP_") || upper == "ALL" {
            upper
        } else {
            format!("CAP_{upper}")
        }
    };
    let mut set: Vec<String> = if privileged {
        ALL_CAPABILITIES
    } else {
        DEFAULT_CAPABILITIES
    }
    .iter()
    .map(|c| c.to_string())
    .collect();
    if privileged {
        return set;
    }
    let drop: Vec<String> = drop.iter().map(normalize).collect();
    if drop.iter().any(|d| d == "ALL") {
        set.clear();
    } else {
        set.retain(|c| !drop.contains(c));
    }
    for cap in add.iter().map(normalize) {
        if cap == "ALL" {
            return ALL_CAPABILITIES.iter().map(|c| c.to_string()).collect();
        }
        if !set.contains(&cap) {
            set.push(cap);
        }
    }
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

/// Builds `config.json` for `config`. The root filesystem is `rootfs/` beside it.
pub fn spec(config: &ContainerConfig) -> Value {
    let caps = capabilities(
        config.privileged,
        &config.capabilities_add,
        &config.capabilities_drop,
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

    let mut namespaces = vec![json!({"type": "pid"}), json!({"type": "mount"})];
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
            "oomScoreAdj": config.oom_score_adj,
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
            ("privileged", true, &[], &["ALL"], strings(ALL_CAPABILITIES)),
        ];
        for (name, privileged, add, drop, want) in cases {
            let got = capabilities(*privileged, &strings(add), &strings(drop));
            assert_eq!(&got, want, "{name}");
        }
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
