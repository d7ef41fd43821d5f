//! One container of a pod, resolved into what the runtime runs: the image's defaults merged
//! with the pod spec (command and args, environment, working directory, user), the security
//! context, and cgroup resources — as kubelet's `generateContainerConfig` does.

use std::path::{Path, PathBuf};

use capstan_runtime::container::{Mount, Resources, Seccomp, User};
use capstan_runtime::image::ImageConfig;
use k8s_openapi::api::core::v1::{Container, Pod, SecurityContext};

/// The argv of a container: Kubernetes' rules for `command`/`args` against the image's
/// ENTRYPOINT/CMD. `command` replaces the entrypoint (and drops CMD); `args` alone replaces
/// CMD; `$(VAR)` references are expanded against the container's environment.
pub fn argv(container: &Container, image: &ImageConfig, env: &[String]) -> Vec<String> {
    let expand = |list: &[String]| {
        list.iter()
            .map(|a| crate::env::expand(a, env))
            .collect::<Vec<_>>()
    };
    let command = container.command.as_deref().unwrap_or_default();
    let args = container.args.as_deref().unwrap_or_default();
    match (command.is_empty(), args.is_empty()) {
        (false, _) => [expand(command), expand(args)].concat(),
        (true, false) => [image.entrypoint.clone(), expand(args)].concat(),
        (true, true) => [image.entrypoint.clone(), image.cmd.clone()].concat(),
    }
}

/// The image's environment with the container's on top (a container variable replaces an
/// image variable of the same name).
pub fn merge_env(image: &[String], container: Vec<String>) -> Vec<String> {
    let name = |entry: &str| entry.split_once('=').map_or(entry, |(n, _)| n).to_owned();
    let mut merged: Vec<String> = image
        .iter()
        .filter(|i| !container.iter().any(|c| name(c) == name(i)))
        .cloned()
        .collect();
    merged.extend(container);
    merged
}

/// The effective security settings: the container's securityContext over the pod's.
#[derive(Debug, Clone, Default)]
pub struct Security {
    pub user: User,
    pub readonly_rootfs: bool,
    pub privileged: bool,
    pub add: Vec<String>,
    pub drop: Vec<String>,
    pub no_new_privileges: bool,
    pub seccomp: Seccomp,
}

/// Resolves the user (runAsUser/runAsGroup, else the image's USER, looked up in the image's
/// /etc/passwd and /etc/group when it is a name), capabilities, privilege and seccomp.
pub fn security(
    pod: &Pod,
    container: &Container,
    image: &ImageConfig,
    layers: &[PathBuf],
) -> Result<Security, String> {
    let pod_context = pod
        .spec
        .as_ref()
        .and_then(|s| s.security_context.clone())
        .unwrap_or_default();
    let context: SecurityContext = container.security_context.clone().unwrap_or_default();
    let (image_uid, image_gid) = match image.user.as_deref().filter(|u| !u.is_empty()) {
        Some(user) => image_user(user, layers)?,
        None => (0, None),
    };
    let uid = context
        .run_as_user
        .or(pod_context.run_as_user)
        .map_or(image_uid, |u| u as u32);
    let gid = context
        .run_as_group
        .or(pod_context.run_as_group)
        .map(|g| g as u32)
        .or(image_gid)
        .unwrap_or_else(|| {
            // A user given by number without a group gets the primary group from /etc/passwd.
            passwd_entry(layers, |fields| fields[2] == uid.to_string())
                .and_then(|f| f[3].parse().ok())
                .unwrap_or(0)
        });
    if context.run_as_non_root.or(pod_context.run_as_non_root) == Some(true) && uid == 0 {
        return Err("container has runAsNonRoot and image will run as root".into());
    }
    let mut additional_gids: Vec<u32> = pod_context
        .supplemental_groups
        .iter()
        .flatten()
        .map(|g| *g as u32)
        .collect();
    if let Some(fs_group) = pod_context.fs_group {
        additional_gids.push(fs_group as u32);
    }
    let privileged = context.privileged.unwrap_or(false);
    let capabilities = context.capabilities.clone().unwrap_or_default();
    let seccomp_type = context
        .seccomp_profile
        .as_ref()
        .or(pod_context.seccomp_profile.as_ref())
        .map(|p| p.type_.as_str());
    Ok(Security {
        user: User {
            uid,
            gid,
            additional_gids,
        },
        readonly_rootfs: context.read_only_root_filesystem.unwrap_or(false),
        privileged,
        add: capabilities.add.unwrap_or_default(),
        drop: capabilities.drop.unwrap_or_default(),
        // Kubernetes: allowPrivilegeEscalation defaults to true; false sets no_new_privs.
        no_new_privileges: context.allow_privilege_escalation == Some(false),
        seccomp: match seccomp_type {
            Some("RuntimeDefault") => Seccomp::RuntimeDefault,
            _ => Seccomp::Unconfined,
        },
    })
}

/// The image's USER: `uid`, `uid:gid`, `name` or `name:group`.
fn image_user(user: &str, layers: &[PathBuf]) -> Result<(u32, Option<u32>), String> {
    let (user_part, group_part) = match user.split_once(':') {
        Some((u, g)) => (u, Some(g)),
        None => (user, None),
    };
    let uid = match user_part.parse::<u32>() {
        Ok(uid) => uid,
        Err(_) => passwd_entry(layers, |f| f[0] == user_part)
            .and_then(|f| f[2].parse().ok())
            .ok_or_else(|| {
                format!("unable to find user {user_part}: no matching entries in passwd file")
            })?,
    };
    let gid = match group_part {
        None => passwd_entry(layers, |f| f[0] == user_part || f[2] == user_part)
            .and_then(|f| f[3].parse().ok()),
        Some(group) => Some(match group.parse::<u32>() {
            Ok(gid) => gid,
            Err(_) => file_entry(layers, "etc/group", 3, |f| f[0] == group)
                .and_then(|f| f[2].parse().ok())
                .ok_or_else(|| {
                    format!("unable to find group {group}: no matching entries in group file")
                })?,
        }),
    };
    Ok((uid, gid))
}

fn passwd_entry(layers: &[PathBuf], matches: impl Fn(&[&str]) -> bool) -> Option<Vec<String>> {
    file_entry(layers, "etc/passwd", 4, matches)
}

/// Finds a line of a colon-separated file in the topmost layer that has the file.
fn file_entry(
    layers: &[PathBuf],
    file: &str,
    min_fields: usize,
    matches: impl Fn(&[&str]) -> bool,
) -> Option<Vec<String>> {
    let text = layers
        .iter()
        .rev()
        .find_map(|layer| std::fs::read_to_string(layer.join(file)).ok())?;
    text.lines().find_map(|line| {
        let fields: Vec<&str> = line.split(':').collect();
        (fields.len() >= min_fields && matches(&fields))
            .then(|| fields.iter().map(|f| f.to_string()).collect())
    })
}

/// cgroup settings from the container's requests and limits.
pub fn resources(container: &Container) -> Resources {
    let resources = container.resources.clone().unwrap_or_default();
    let millis = |map: &Option<
        std::collections::BTreeMap<String, k8s_openapi::apimachinery::pkg::api::resource::Quantity>,
    >| {
        map.as_ref()
            .and_then(|m| m.get("cpu"))
            .and_then(|q| capstan_api::quantity::Quantity::parse(&q.0))
            .map(|v| v.milli_ceil())
    };
    let memory = resources
        .limits
        .as_ref()
        .and_then(|m| m.get("memory"))
        .and_then(|q| capstan_api::quantity::Quantity::parse(&q.0))
        .map(|v| v.ceil() as i64);
    Resources::from_kubernetes(
        millis(&resources.requests),
        millis(&resources.limits),
        memory,
    )
}

/// The files kubelet manages for every container: /etc/hosts, /etc/hostname, /etc/resolv.conf
/// (written once per pod), and the termination message file (one per container attempt).
pub fn managed_files(
    pod_dir: &Path,
    container: &Container,
    termination_log: &Path,
    host_network: bool,
) -> Vec<Mount> {
    let mut mounts = vec![
        Mount::Bind {
            source: pod_dir.join("etc-hosts"),
            destination: "/etc/hosts".into(),
            read_only: false,
        },
        Mount::Bind {
            source: pod_dir.join("resolv.conf"),
            destination: "/etc/resolv.conf".into(),
            read_only: false,
        },
    ];
    if !host_network {
        mounts.push(Mount::Bind {
            source: pod_dir.join("hostname"),
            destination: "/etc/hostname".into(),
            read_only: false,
        });
    }
    let path = container
        .termination_message_path
        .clone()
        .unwrap_or_else(|| "/dev/termination-log".into());
    mounts.push(Mount::Bind {
        source: termination_log.to_owned(),
        destination: path,
        read_only: false,
    });
    mounts
}

#[cfg(test)]
mod tests {
    use super::*;

    fn container(command: &[&str], args: &[&str]) -> Container {
        let list = |l: &[&str]| (!l.is_empty()).then(|| l.iter().map(|s| s.to_string()).collect());
        Container {
            name: "c".into(),
            command: list(command),
            args: list(args),
            ..Default::default()
        }
    }

    #[test]
    fn command_and_args_combine_with_the_image_as_kubernetes_documents() {
        let image = ImageConfig {
            entrypoint: vec!["/ep".into()],
            cmd: vec!["cmd".into()],
            ..Default::default()
        };
        let env = vec!["X=1".to_string()];
        let cases: [(&[&str], &[&str], &[&str]); 4] = [
            (&[], &[], &["/ep", "cmd"]),
            (&["/bin/sh"], &[], &["/bin/sh"]),
            (&[], &["a", "$(X)"], &["/ep", "a", "1"]),
            (
                &["/bin/sh"],
                &["-c", "echo $(X)"],
                &["/bin/sh", "-c", "echo 1"],
            ),
        ];
        for (command, args, want) in cases {
            assert_eq!(
                argv(&container(command, args), &image, &env),
                want,
                "{command:?} {args:?}"
            );
        }
    }

    #[test]
    fn container_env_replaces_image_env_of_the_same_name() {
        let merged = merge_env(
            &["PATH=/bin".into(), "A=image".into()],
            vec!["A=pod".into(), "B=2".into()],
        );
        assert_eq!(merged, ["PATH=/bin", "A=pod", "B=2"]);
    }

    #[test]
    fn image_users_resolve_through_the_image_passwd_and_group_files() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("etc")).unwrap();
        std::fs::write(
            dir.path().join("etc/passwd"),
            "root:x:0:0::/root:/bin/sh\napp:x:1000:1001::/home/app:/bin/sh\n",
        )
        .unwrap();
        std::fs::write(dir.path().join("etc/group"), "root:x:0:\nstaff:x:50:\n").unwrap();
        let layers = vec![dir.path().to_owned()];
        assert_eq!(image_user("app", &layers).unwrap(), (1000, Some(1001)));
        assert_eq!(image_user("1000", &layers).unwrap(), (1000, Some(1001)));
        assert_eq!(image_user("app:staff", &layers).unwrap(), (1000, Some(50)));
        assert_eq!(image_user("7:8", &layers).unwrap(), (7, Some(8)));
        assert!(
            image_user("ghost", &layers)
                .unwrap_err()
                .contains("unable to find user ghost")
        );
    }
}
