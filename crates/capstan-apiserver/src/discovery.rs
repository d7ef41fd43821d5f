//! Discovery documents: the legacy ones (`APIVersions`, `APIGroupList`, `APIResourceList`) and
//! the aggregated `APIGroupDiscoveryList` (apidiscovery.k8s.io v2 and v2beta1) that lets kubectl
//! learn every resource in two requests.

use capstan_api::resource::{self, ResourceInfo};
use serde_json::{Value, json};

/// `/api`
pub fn core_versions(server_address: &str) -> Value {
    json!({
        "kind": "APIVersions",
        "versions": ["v1"],
        "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": server_address}],
    })
}

fn group_entry(group: &resource::GroupVersions) -> Value {
    let versions: Vec<Value> = group
        .versions
        .iter()
        .map(|v| json!({"groupVersion": format!("{}/{v}", group.group), "version": v}))
        .collect();
    json!({
        "name": group.group,
        "versions": versions,
        "preferredVersion": versions[0].clone(),
    })
}

/// `/apis`
pub fn group_list() -> Value {
    let groups: Vec<Value> = resource::groups()
        .iter()
        .filter(|g| !g.group.is_empty())
        .map(group_entry)
        .collect();
    json!({"kind": "APIGroupList", "apiVersion": "v1", "groups": groups})
}

/// `/apis/<group>`, if the group is served.
pub fn group(name: &str) -> Option<Value> {
    let group = resource::groups()
        .into_iter()
        .find(|g| g.group == name && !name.is_empty())?;
    let mut entry = group_entry(&group);
    entry["kind"] = json!("APIGroup");
    entry["apiVersion"] = json!("v1");
    Some(entry)
}

/// `/api/v1`, `/apis/<group>/<version>`, if served.
pub fn resource_list(group: &str, version: &str) -> Option<Value> {
    let resources: Vec<&ResourceInfo> = resource::resources_in(group, version).collect();
    if resources.is_empty() {
        return None;
    }
    let mut entries = Vec::new();
    for r in resources {
        let mut entry = json!({
            "name": r.plural,
            "singularName": r.singular,
            "namespaced": r.namespaced,
            "kind": r.kind,
            "verbs": r.verbs,
        });
        if !r.short_names.is_empty() {
            entry["shortNames"] = json!(r.short_names);
        }
        if !r.categories.is_empty() {
            entry["categories"] = json!(r.categories);
        }
        entries.push(entry);
        for sub in r.subresources {
            let kind = subresource_kind(r, *sub);
            let mut entry = json!({
                "name": format!("{}/{}", r.plural, sub.path()),
                "singularName": "",
                "namespaced": r.namespaced,
                "kind": kind.2,
                "verbs": sub.verbs(),
            });
            if !kind.0.is_empty() {
                entry["group"] = json!(kind.0);
                entry["version"] = json!(kind.1);
            }
            entries.push(entry);
        }
    }
    let group_version = if group.is_empty() {
        version.to_string()
    } else {
        format!("{group}/{version}")
    };
    Some(json!({
        "kind": "APIResourceList",
        "apiVersion": "v1",
        "groupVersion": group_version,
        "resources": entries,
    }))
}

/// The (group, version, kind) a subresource answers with.
fn subresource_kind(
    r: &ResourceInfo,
    sub: resource::Subresource,
) -> (&'static str, &'static str, &'static str) {
    match sub {
        resource::Subresource::Status
        | resource::Subresource::Finalize
        | resource::Subresource::Log => (r.group, r.version, r.kind),
        resource::Subresource::Scale => ("autoscaling", "v1", "Scale"),
        resource::Subresource::Binding => ("", "v1", "Binding"),
        // kubectl drain looks for this entry to learn which Eviction version to post.
        resource::Subresource::Eviction => ("policy", "v1", "Eviction"),
    }
}

/// The aggregated discovery document of the core group (`core == true`) or of all others, in
/// the apidiscovery version asked for (`v2` or `v2beta1`).
pub fn aggregated(core: bool, discovery_version: &str) -> Value {
    let items: Vec<Value> = resource::groups()
        .iter()
        .filter(|g| g.group.is_empty() == core)
        .map(|g| {
            let versions: Vec<Value> = g
                .versions
                .iter()
                .map(|v| {
                    let resources: Vec<Value> = resource::resources_in(g.group, v)
                        .map(aggregated_resource)
                        .collect();
                    json!({"version": v, "resources": resources, "freshness": "Current"})
                })
                .collect();
            json!({"metadata": {"name": g.group, "creationTimestamp": null}, "versions": versions})
        })
        .collect();
    json!({
        "kind": "APIGroupDiscoveryList",
        "apiVersion": format!("apidiscovery.k8s.io/{discovery_version}"),
        "metadata": {},
        "items": items,
    })
}

fn aggregated_resource(r: &ResourceInfo) -> Value {
    let mut entry = json!({
        "resource": r.plural,
        "responseKind": {"group": r.group, "version": r.version, "kind": r.kind},
        "scope": if r.namespaced { "Namespaced" } else { "Cluster" },
        "singularResource": r.singular,
        "verbs": r.verbs,
    });
    if !r.short_names.is_empty() {
        entry["shortNames"] = json!(r.short_names);
    }
    if !r.categories.is_empty() {
        entry["categories"] = json!(r.categories);
    }
    if !r.subresources.is_empty() {
        let subs: Vec<Value> = r
            .subresources
            .iter()
            .map(|s| {
                let (group, version, kind) = subresource_kind(r, *s);
                json!({
                    "subresource": s.path(),
                    "responseKind": {"group": group, "version": version, "kind": kind},
                    "verbs": s.verbs(),
                })
            })
            .collect();
        entry["subresources"] = json!(subs);
    }
    entry
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn aggregated_core_discovery_lists_pods_with_short_names_and_categories() {
        let doc = aggregated(true, "v2");
        let resources = doc["items"][0]["versions"][0]["resources"]
            .as_array()
            .unwrap();
        let pods = resources.iter().find(|r| r["resource"] == "pods").unwrap();
        assert_eq!(pods["shortNames"], json!(["po"]));
        assert_eq!(pods["categories"], json!(["all"]));
        assert_eq!(pods["scope"], "Namespaced");
        assert!(
            pods["subresources"]
                .as_array()
                .unwrap()
                .iter()
                .any(|s| s["subresource"] == "status")
        );
    }

    #[test]
    fn groups_list_their_preferred_version_first() {
        let list = group_list();
        let autoscaling = list["groups"]
            .as_array()
            .unwrap()
            .iter()
            .find(|g| g["name"] == "autoscaling")
            .unwrap();
        assert_eq!(autoscaling["preferredVersion"]["version"], "v2");
        assert!(
            list["groups"]
                .as_array()
                .unwrap()
                .iter()
                .all(|g| g["name"] != "")
        );
    }

    #[test]
    fn pods_list_the_eviction_subresource_as_policy_v1_eviction() {
        let list = resource_list("", "v1").unwrap();
        let eviction = list["resources"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["name"] == "pods/eviction")
            .unwrap();
        assert_eq!(eviction["group"], "policy");
        assert_eq!(eviction["version"], "v1");
        assert_eq!(eviction["kind"], "Eviction");
        assert_eq!(eviction["verbs"], json!(["create"]));
        let doc = aggregated(true, "v2");
        let pods = doc["items"][0]["versions"][0]["resources"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["resource"] == "pods")
            .unwrap();
        let sub = pods["subresources"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["subresource"] == "eviction")
            .unwrap();
        assert_eq!(
            sub["responseKind"],
            json!({"group": "policy", "version": "v1", "kind": "Eviction"})
        );
    }

    #[test]
    fn disruption_budgets_and_priority_classes_are_discovered_by_short_name() {
        let policy = resource_list("policy", "v1").unwrap();
        let pdb = &policy["resources"][0];
        assert_eq!(pdb["name"], "poddisruptionbudgets");
        assert_eq!(pdb["shortNames"], json!(["pdb"]));
        assert_eq!(pdb["namespaced"], true);
        let scheduling = resource_list("scheduling.k8s.io", "v1").unwrap();
        let pc = &scheduling["resources"][0];
        assert_eq!(pc["name"], "priorityclasses");
        assert_eq!(pc["shortNames"], json!(["pc"]));
        assert_eq!(pc["namespaced"], false);
    }

    #[test]
    fn legacy_resource_lists_include_subresources() {
        let list = resource_list("apps", "v1").unwrap();
        let names: Vec<&str> = list["resources"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["name"].as_str().unwrap())
            .collect();
        assert!(names.contains(&"deployments/scale"));
        assert!(resource_list("apps", "v9").is_none());
    }
}
