#!/usr/bin/env python3
"""Generates `generated.rs`, the protobuf schema table of capstan's transcoder.

Usage (from the repository root; the crates come from ~/.cargo/registry after a build that used
them, e.g. `cargo test -p capstan-api`):

    python3 crates/capstan-api/src/protobuf/gen.py \
        ~/.cargo/registry/src/*/k8s-pb-0.9.0 ~/.cargo/registry/src/*/k8s-openapi-0.29.0 \
        > crates/capstan-api/src/protobuf/generated.rs

Two sources, each for what it knows best:
- k8s-pb (prost code generated from Kubernetes' `generated.proto` files) gives every message, its
  fields, their tags and wire types. Its field names are snake_case, which loses acronyms
  (`cluster_ip`), so they cannot give the JSON names.
- k8s-openapi (generated from the OpenAPI schema) spells the JSON names in its Deserialize impls
  (`"clusterIP" => Field::Key_cluster_ip`). A prost field and a JSON name match when they are
  equal ignoring case and underscores; a field k8s-openapi does not know falls back to lowerCamel.

Only the packages named in ROOTS and what they reference are emitted. The output is committed:
the build never reads the registry.
"""

import os
import re
import sys

# Proto packages of the served groups (and the meta types every group version carries).
ROOTS = [
    "k8s.io.api.core.v1",
    "k8s.io.api.apps.v1",
    "k8s.io.api.batch.v1",
    "k8s.io.api.autoscaling.v1",
    "k8s.io.api.autoscaling.v2",
    "k8s.io.api.coordination.v1",
    "k8s.io.api.discovery.v1",
    "k8s.io.api.events.v1",
    "k8s.io.api.networking.v1",
    "k8s.io.api.policy.v1",
    "k8s.io.api.policy.v1beta1",
    "k8s.io.api.rbac.v1",
    "k8s.io.api.scheduling.v1",
    "k8s.io.api.storage.v1",
    "k8s.io.apimachinery.pkg.apis.meta.v1",
]

META = "k8s.io.apimachinery.pkg.apis.meta.v1."
# Messages with a JSON form of their own: the transcoder handles them by kind, not by fields.
SPECIAL = {
    META + "Time": "Time",
    META + "MicroTime": "MicroTime",
    META + "Duration": "Duration",
    META + "FieldsV1": "RawJson",
    "k8s.io.apimachinery.pkg.runtime.RawExtension": "RawJson",
    "k8s.io.apimachinery.pkg.util.intstr.IntOrString": "IntOrString",
    "k8s.io.apimachinery.pkg.api.resource.Quantity": "Quantity",
}
SCALARS = {
    "string": "String",
    "bool": "Bool",
    "int32": "Int32",
    "int64": "Int64",
    "double": "Double",
    'bytes = "vec"': "Bytes",
    "bytes": "Bytes",
}

STRUCT_RE = re.compile(r"^pub struct (\w+) \{$")
ATTR_RE = re.compile(r"#\[prost\((.*)\)\]")
FIELD_RE = re.compile(r"pub (r#)?(\w+):\s*(.*),$", re.S)


def module_of(path, src):
    rel = os.path.relpath(os.path.dirname(path), src)
    return rel.split(os.sep)


def package_of(module):
    return "k8s.io." + ".".join(module)


def resolve(type_path, module):
    """`super::super::x::Y` seen from `module` -> full proto name."""
    parts = type_path.split("::")
    here = list(module)
    while parts and parts[0] == "super":
        parts.pop(0)
        here.pop()
    if parts and parts[0] == "crate":
        parts.pop(0)
        here = []
    return package_of(here + parts[:-1]) + "." + parts[-1]


def innermost_type(rust_type):
    """The last path inside the type that names a message (not a std container)."""
    paths = re.findall(r"(?:(?:super|crate|\w+)::)*[A-Z]\w*", rust_type)
    skip = {"Option", "Vec", "Box", "BTreeMap", "String"}
    names = [p for p in paths if p.split("::")[-1] not in skip]
    return names[-1] if names else None


def parse_k8s_pb(src):
    messages = {}
    for dirpath, _, files in os.walk(src):
        for f in files:
            if f != "mod.rs":
                continue
            path = os.path.join(dirpath, f)
            module = module_of(path, src)
            package = package_of(module)
            lines = open(path).read().split("\n")
            i = 0
            current = None
            while i < len(lines):
                line = lines[i].strip()
                m = STRUCT_RE.match(line)
                if m:
                    current = package + "." + m.group(1)
                    messages[current] = []
                elif line == "}":
                    current = None
                elif current and line.startswith("#[prost("):
                    attr = ATTR_RE.match(line).group(1)
                    decl = ""
                    i += 1
                    while not (decl.rstrip().endswith(",") and decl.count("<") == decl.count(">")):
                        decl += lines[i].strip() + " "
                        i += 1
                    fm = FIELD_RE.match(decl.strip())
                    name, rust_type = fm.group(2), fm.group(3)
                    messages[current].append(field_of(attr, name, rust_type, module))
                    continue
                i += 1
    return messages


def field_of(attr, name, rust_type, module):
    tag = int(re.search(r'tag = "(\d+)"', attr).group(1))
    if attr.startswith("btree_map"):
        key, value = re.match(r'btree_map = "(\w+), (\w+)"', attr).groups()
        assert key == "string", attr
        shape = "Map"
        scalar = value
    else:
        scalar = attr.split(",")[0].strip()
        shape = "Repeated" if "repeated" in attr else "Single"
    if scalar == "message":
        kind = ("Message", resolve(innermost_type(rust_type), module))
    else:
        kind = (SCALARS[scalar], None)
    return {"tag": tag, "name": name, "shape": shape, "kind": kind}


def parse_openapi(src):
    """struct name (per module) -> list of JSON field names."""
    names = {}
    base = os.path.join(src, "src", "v1_33")
    for dirpath, _, files in os.walk(base):
        module = os.path.relpath(dirpath, base).split(os.sep)
        for f in files:
            if not f.endswith(".rs") or f == "mod.rs":
                continue
            text = open(os.path.join(dirpath, f)).read()
            for struct in re.findall(r"^pub struct (\w+)", text, re.M):
                keys = re.findall(r'"([^"]+)" => Field::Key_', text)
                # k8s-pb aligns acronyms differently (`HostIp` for `HostIP`): match ignoring case.
                names[(package_of(module) + "." + struct).lower()] = keys
    return names


def normalise(name):
    return name.replace("_", "").lower()


def lower_camel(snake):
    head, *rest = snake.split("_")
    return head + "".join(w[:1].upper() + w[1:] for w in rest)


def find_inlined(ordered, messages, openapi):
    """Go structs embedded with `json:",inline"` are nested messages in protobuf
    (`Volume.volumeSource`, `Probe.handler`, `ConfigMapKeySelector.localObjectReference`) but
    flattened in JSON. Such a field has no JSON name in its owner, whose JSON names include the
    embedded message's fields instead."""
    inline_fields = set()
    inlined_by = {}
    for name in ordered:
        owner_keys = {normalise(k) for k in openapi.get(name.lower(), [])}
        if not owner_keys:
            continue
        for field in messages[name]:
            kind, target = field["kind"]
            if kind != "Message" or target in SPECIAL or normalise(field["name"]) in owner_keys:
                continue
            target_keys = {normalise(f["name"]) for f in messages[target]}
            if target_keys & owner_keys:
                inline_fields.add((name, field["name"]))
                inlined_by.setdefault(target, []).append(name)
    return inline_fields, inlined_by


def json_name(message, field, openapi, inlined_by, fallbacks):
    owners = [message] + inlined_by.get(message, [])
    # An embedded message inlined into an inlined one (EphemeralContainerCommon in
    # EphemeralContainer) takes its names from the outermost owner.
    for owner in list(owners):
        owners += inlined_by.get(owner, [])
    for owner in owners:
        for candidate in openapi.get(owner.lower(), []):
            if normalise(candidate) == normalise(field):
                return candidate
    fallbacks.append(f"{message}.{field}")
    return lower_camel(field)


def main():
    pb_src = os.path.join(sys.argv[1], "src")
    messages = parse_k8s_pb(pb_src)
    openapi = parse_openapi(sys.argv[2])

    # Everything reachable from the roots, special types excluded.
    wanted = sorted(m for m in messages if m.rsplit(".", 1)[0] in ROOTS and m not in SPECIAL)
    seen = set(wanted)
    queue = list(wanted)
    while queue:
        for field in messages[queue.pop()]:
            kind, target = field["kind"]
            if kind == "Message" and target not in SPECIAL and target not in seen:
                if target not in messages:
                    sys.exit(f"unresolved message {target}")
                seen.add(target)
                queue.append(target)
    ordered = sorted(seen)
    index = {name: i for i, name in enumerate(ordered)}

    inline_fields, inlined_by = find_inlined(ordered, messages, openapi)

    fallbacks = []
    out = []
    out.append("// @generated by gen.py from k8s-pb 0.9 and k8s-openapi 0.29 (v1_33). Do not edit.")
    out.append("//! The schema of every message the transcoder knows, sorted by full proto name.")
    out.append("")
    out.append("use super::schema::{Field, Kind, Message, Shape};")
    out.append("")
    out.append("pub(super) static MESSAGES: &[Message] = &[")
    for name in ordered:
        out.append(f"    Message {{ name: {name!r}, fields: &[".replace("'", '"'))
        for field in sorted(messages[name], key=lambda f: f["tag"]):
            kind, target = field["kind"]
            if kind == "Message":
                kind = f"Kind::{SPECIAL[target]}" if target in SPECIAL else f"Kind::Message({index[target]})"
            else:
                kind = f"Kind::{kind}"
            if (name, field["name"]) in inline_fields:
                json, shape = "", "Inline"
            else:
                json = json_name(name, field["name"], openapi, inlined_by, fallbacks)
                shape = field["shape"]
            out.append(
                f'        Field {{ tag: {field["tag"]}, json: "{json}", shape: Shape::{shape}, kind: {kind} }},'
            )
        out.append("    ] },")
    out.append("];")
    print("\n".join(out))
    for f in fallbacks:
        print(f"note: no k8s-openapi name for {f}; used lowerCamel", file=sys.stderr)


main()
