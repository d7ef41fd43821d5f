#!/usr/bin/env bash
# Builds the busybox test image without network access, from Debian's statically linked
# busybox, in the two archive formats the image store imports:
#   capstan-test-busybox.tar         OCI image layout (oci-archive), gzip layer
#   capstan-test-busybox-docker.tar  `docker save` (manifest.json), plain tar layer
# Both name the same image (same configuration and diff ID) as docker.io/library/busybox:latest
# and capstan.test/busybox:1. The archives are deterministic: fixed times, owners and entry
# order, so the digests only change when busybox does.
#
# Usage: scripts/build-test-images.sh [OUTPUT_DIR]   (default: target/test-images)
set -euo pipefail

repo_root="$(cd "$(dirname "$0")/.." && pwd)"
out_dir="${1:-$repo_root/target/test-images}"
busybox=/bin/busybox

# The dynamically linked `busybox` package would need a libc in the image: insist on the static one.
if ! dpkg-query -W -f='${Status}' busybox-static 2>/dev/null | grep -q "install ok installed"; then
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends busybox-static
fi

mkdir -p "$out_dir"
python3 - "$out_dir" "$busybox" <<'PYTHON'
import gzip
import hashlib
import io
import json
import os
import platform
import subprocess
import sys
import tarfile

out_dir, busybox = sys.argv[1], sys.argv[2]

# A fixed time for every file and for the image's creation date: the archives must be
# byte-for-byte the same on every run.
MTIME = 1_700_000_000
CREATED = "2023-11-14T22:13:20Z"
REFERENCES = ["docker.io/library/busybox:latest", "capstan.test/busybox:1"]
DOCKER_TAGS = ["busybox:latest", "capstan.test/busybox:1"]
PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
ARCHITECTURES = {"x86_64": "amd64", "aarch64": "arm64", "armv7l": "arm", "ppc64le": "ppc64le",
                 "s390x": "s390x", "riscv64": "riscv64"}

PASSWD = """root:x:0:0:root:/root:/bin/sh
nobody:x:65534:65534:nobody:/nonexistent:/bin/false
app:x:1000:1000:app:/home/app:/bin/sh
"""
GROUP = """root:x:0:
nobody:x:65534:
app:x:1000:
"""


def sha256(data):
    return "sha256:" + hashlib.sha256(data).hexdigest()


def hex_of(digest):
    return digest.split(":", 1)[1]


def canonical_json(value):
    return json.dumps(value, sort_keys=True, separators=(",", ":")).encode()


def tar_info(name, kind, mode, uid=0, gid=0, size=0, linkname=""):
    info = tarfile.TarInfo(name)
    info.type = kind
    info.mode = mode
    info.uid, info.gid = uid, gid
    info.uname = info.gname = ""
    info.mtime = MTIME
    info.size = size
    info.linkname = linkname
    return info


def build_tar(entries):
    """entries: (name, kind, mode, data_or_linkname, uid) in any order; written sorted by name
    so that parents come before their children."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.GNU_FORMAT) as tar:
        for name, kind, mode, payload, uid in sorted(entries, key=lambda e: e[0]):
            if kind == tarfile.REGTYPE:
                tar.addfile(tar_info(name, kind, mode, uid, uid, len(payload)), io.BytesIO(payload))
            elif kind == tarfile.SYMTYPE:
                tar.addfile(tar_info(name, kind, mode, uid, uid, linkname=payload))
            else:
                tar.addfile(tar_info(name, kind, mode, uid, uid))
    return buffer.getvalue()


def rootfs_layer():
    with open(busybox, "rb") as f:
        binary = f.read()
    applets = subprocess.run([busybox, "--list"], check=True, capture_output=True,
                             text=True).stdout.split()
    entries = [
        ("bin", tarfile.DIRTYPE, 0o755, None, 0),
        ("bin/busybox", tarfile.REGTYPE, 0o755, binary, 0),
        ("dev", tarfile.DIRTYPE, 0o755, None, 0),
        ("etc", tarfile.DIRTYPE, 0o755, None, 0),
        ("etc/passwd", tarfile.REGTYPE, 0o644, PASSWD.encode(), 0),
        ("etc/group", tarfile.REGTYPE, 0o644, GROUP.encode(), 0),
        ("home", tarfile.DIRTYPE, 0o755, None, 0),
        ("home/app", tarfile.DIRTYPE, 0o755, None, 1000),
        ("proc", tarfile.DIRTYPE, 0o755, None, 0),
        ("root", tarfile.DIRTYPE, 0o700, None, 0),
        ("sys", tarfile.DIRTYPE, 0o755, None, 0),
        ("tmp", tarfile.DIRTYPE, 0o1777, None, 0),
        ("www", tarfile.DIRTYPE, 0o755, None, 0),
        ("www/index.html", tarfile.REGTYPE, 0o644, b"hello from capstan\n", 0),
    ]
    entries += [(f"bin/{applet}", tarfile.SYMTYPE, 0o777, "busybox", 0)
                for applet in sorted(set(applets)) if applet != "busybox"]
    return build_tar(entries)


def write_atomically(path, data):
    tmp = path + ".tmp"
    with open(tmp, "wb") as f:
        f.write(data)
    os.replace(tmp, path)


layer = rootfs_layer()
# mtime=0 and no file name keep the gzip header fixed.
layer_gzip = gzip.compress(layer, compresslevel=9, mtime=0)
diff_id = sha256(layer)

config = canonical_json({
    "architecture": ARCHITECTURES.get(platform.machine(), platform.machine()),
    "os": "linux",
    "created": CREATED,
    "config": {"Cmd": ["sh"], "Env": [f"PATH={PATH}"]},
    "rootfs": {"type": "layers", "diff_ids": [diff_id]},
    "history": [{"created": CREATED, "created_by": "scripts/build-test-images.sh"}],
})
config_digest = sha256(config)


def oci_archive():
    manifest = canonical_json({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                   "digest": config_digest, "size": len(config)},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
                    "digest": sha256(layer_gzip), "size": len(layer_gzip)}],
    })
    # One index entry per name, as `podman save` and `ctr export` write them.
    index = canonical_json({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": [{
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "digest": sha256(manifest),
            "size": len(manifest),
            "annotations": {"io.containerd.image.name": reference,
                            "org.opencontainers.image.ref.name": reference},
        } for reference in REFERENCES],
    })
    entries = [
        ("blobs", tarfile.DIRTYPE, 0o755, None, 0),
        ("blobs/sha256", tarfile.DIRTYPE, 0o755, None, 0),
        ("oci-layout", tarfile.REGTYPE, 0o644, b'{"imageLayoutVersion":"1.0.0"}', 0),
        ("index.json", tarfile.REGTYPE, 0o644, index, 0),
    ]
    entries += [(f"blobs/sha256/{hex_of(sha256(blob))}", tarfile.REGTYPE, 0o644, blob, 0)
                for blob in (manifest, config, layer_gzip)]
    return build_tar(entries), sha256(manifest)


def docker_archive():
    layer_dir = hex_of(diff_id)
    config_file = f"{hex_of(config_digest)}.json"
    manifest = canonical_json([{"Config": config_file, "RepoTags": DOCKER_TAGS,
                                "Layers": [f"{layer_dir}/layer.tar"]}])
    repositories = canonical_json({"busybox": {"latest": layer_dir},
                                   "capstan.test/busybox": {"1": layer_dir}})
    entries = [
        (config_file, tarfile.REGTYPE, 0o644, config, 0),
        (layer_dir, tarfile.DIRTYPE, 0o755, None, 0),
        (f"{layer_dir}/VERSION", tarfile.REGTYPE, 0o644, b"1.0", 0),
        (f"{layer_dir}/json", tarfile.REGTYPE, 0o644,
         canonical_json({"id": layer_dir, "created": CREATED}), 0),
        (f"{layer_dir}/layer.tar", tarfile.REGTYPE, 0o644, layer, 0),
        ("manifest.json", tarfile.REGTYPE, 0o644, manifest, 0),
        ("repositories", tarfile.REGTYPE, 0o644, repositories, 0),
    ]
    return build_tar(entries)


oci, manifest_digest = oci_archive()
write_atomically(os.path.join(out_dir, "capstan-test-busybox.tar"), oci)
write_atomically(os.path.join(out_dir, "capstan-test-busybox-docker.tar"), docker_archive())
print(f"{out_dir}/capstan-test-busybox.tar: manifest {manifest_digest}")
print(f"{out_dir}/capstan-test-busybox-docker.tar")
print(f"image ID {config_digest}, layer {diff_id}")
PYTHON
