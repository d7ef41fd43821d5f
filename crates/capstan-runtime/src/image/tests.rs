//! Store-level tests. Archives are built in-process with the `tar` crate; unpacking makes
//! device nodes, sets `trusted.*` xattrs and chowns, so these tests need root (as the agent).

use std::fs;
use std::io::Write;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

use flate2::Compression as GzLevel;
use flate2::write::GzEncoder;
use serde_json::json;
use sha2::{Digest, Sha256};
use tempfile::TempDir;

use super::oci::host_architecture;
use super::*;

fn sha256(bytes: &[u8]) -> String {
    format!("sha256:{:x}", Sha256::digest(bytes))
}

fn hex(digest: &str) -> &str {
    &digest["sha256:".len()..]
}

/// One entry of a test layer.
enum Entry<'a> {
    Dir(&'a str, u32),
    File(&'a str, &'a str, u32),
    OwnedFile(&'a str, &'a str, u64),
    Symlink(&'a str, &'a str),
    Hardlink(&'a str, &'a str),
    CharDevice(&'a str, u32, u32),
    Fifo(&'a str),
    /// A regular file whose name is written into the header unchecked, as a hostile tool would.
    RawName(&'a [u8]),
}

fn tar_bytes(entries: &[Entry<'_>]) -> Vec<u8> {
    let mut builder = tar::Builder::new(Vec::new());
    for entry in entries {
        let mut header = tar::Header::new_gnu();
        header.set_mtime(1_700_000_000);
        header.set_uid(0);
        header.set_gid(0);
        header.set_size(0);
        let (path, data): (&str, &[u8]) = match entry {
            Entry::Dir(path, mode) => {
                header.set_entry_type(tar::EntryType::Directory);
                header.set_mode(*mode);
                (path, b"")
            }
            Entry::File(path, content, mode) => {
                header.set_mode(*mode);
                header.set_size(content.len() as u64);
                (path, content.as_bytes())
            }
            Entry::OwnedFile(path, content, uid) => {
                header.set_mode(0o644);
                header.set_uid(*uid);
                header.set_gid(*uid);
                header.set_size(content.len() as u64);
                (path, content.as_bytes())
            }
            Entry::Symlink(path, target) => {
                header.set_entry_type(tar::EntryType::Symlink);
                header.set_mode(0o777);
                header.set_link_name(target).unwrap();
                (path, b"")
            }
            Entry::Hardlink(path, target) => {
                header.set_entry_type(tar::EntryType::Link);
                header.set_mode(0o644);
                header.set_link_name(target).unwrap();
                (path, b"")
            }
            Entry::CharDevice(path, major, minor) => {
                header.set_entry_type(tar::EntryType::Char);
                header.set_mode(0o666);
                header.set_device_major(*major).unwrap();
                header.set_device_minor(*minor).unwrap();
                (path, b"")
            }
            Entry::Fifo(path) => {
                header.set_entry_type(tar::EntryType::Fifo);
                header.set_mode(0o600);
                (path, b"")
            }
            Entry::RawName(name) => {
                header.set_mode(0o644);
                header.set_size(4);
                header.as_old_mut().name[..name.len()].copy_from_slice(name);
                header.set_cksum();
                builder.append(&header, &b"evil"[..]).unwrap();
                continue;
            }
        };
        builder.append_data(&mut header, path, data).unwrap();
    }
    builder.into_inner().unwrap()
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut encoder = GzEncoder::new(Vec::new(), GzLevel::fast());
    encoder.write_all(bytes).unwrap();
    encoder.finish().unwrap()
}

struct Layer {
    /// The uncompressed tar: its digest is the diff ID.
    tar: Vec<u8>,
    /// What is stored: the tar itself or its gzip.
    blob: Vec<u8>,
}

fn layer(entries: &[Entry<'_>]) -> Layer {
    let tar = tar_bytes(entries);
    Layer {
        blob: tar.clone(),
        tar,
    }
}

fn gzip_layer(entries: &[Entry<'_>]) -> Layer {
    let tar = tar_bytes(entries);
    Layer {
        blob: gzip(&tar),
        tar,
    }
}

struct TestImage {
    config: Vec<u8>,
    layers: Vec<Layer>,
    manifest: Vec<u8>,
}

impl TestImage {
    fn new(layers: Vec<Layer>, cmd: &[&str]) -> Self {
        let diff_ids: Vec<String> = layers.iter().map(|l| sha256(&l.tar)).collect();
        let config = serde_json::to_vec(&json!({
            "architecture": host_architecture(),
            "os": "linux",
            "config": {
                "Cmd": cmd,
                "Entrypoint": null,
                "Env": ["PATH=/bin"],
                "WorkingDir": "/www",
                "User": "",
            },
            "rootfs": {"type": "layers", "diff_ids": diff_ids},
        }))
        .unwrap();
        let layer_descriptors: Vec<_> = layers
            .iter()
            .map(|l| {
                let gzipped = l.blob != l.tar;
                json!({
                    "mediaType": if gzipped { oci::MEDIA_TYPE_OCI_LAYER_GZIP } else { oci::MEDIA_TYPE_OCI_LAYER },
                    "digest": sha256(&l.blob),
                    "size": l.blob.len(),
                })
            })
            .collect();
        let manifest = serde_json::to_vec(&json!({
            "schemaVersion": 2,
            "mediaType": oci::MEDIA_TYPE_OCI_MANIFEST,
            "config": {
                "mediaType": oci::MEDIA_TYPE_OCI_CONFIG,
                "digest": sha256(&config),
                "size": config.len(),
            },
            "layers": layer_descriptors,
        }))
        .unwrap();
        Self {
            config,
            layers,
            manifest,
        }
    }

    fn digest(&self) -> String {
        sha256(&self.manifest)
    }

    fn config_digest(&self) -> String {
        sha256(&self.config)
    }

    fn blobs(&self) -> Vec<&[u8]> {
        let mut blobs = vec![self.manifest.as_slice(), self.config.as_slice()];
        blobs.extend(self.layers.iter().map(|l| l.blob.as_slice()));
        blobs
    }
}

fn append_file(builder: &mut tar::Builder<Vec<u8>>, path: &str, data: &[u8]) {
    let mut header = tar::Header::new_ustar();
    header.set_mode(0o644);
    header.set_size(data.len() as u64);
    builder.append_data(&mut header, path, data).unwrap();
}

/// An OCI image layout archive; each image is listed once per reference annotation.
fn oci_archive(dir: &Path, name: &str, images: &[(&TestImage, &[&str])]) -> PathBuf {
    let mut builder = tar::Builder::new(Vec::new());
    append_file(
        &mut builder,
        "oci-layout",
        br#"{"imageLayoutVersion":"1.0.0"}"#,
    );
    let mut manifests = Vec::new();
    let mut written = std::collections::HashSet::new();
    for (image, references) in images {
        for blob in image.blobs() {
            if written.insert(sha256(blob)) {
                append_file(
                    &mut builder,
                    &format!("blobs/sha256/{}", hex(&sha256(blob))),
                    blob,
                );
            }
        }
        let descriptor = |annotations: serde_json::Value| {
            json!({
                "mediaType": oci::MEDIA_TYPE_OCI_MANIFEST,
                "digest": image.digest(),
                "size": image.manifest.len(),
                "annotations": annotations,
            })
        };
        if references.is_empty() {
            manifests.push(descriptor(json!({})));
        }
        for reference in *references {
            manifests.push(descriptor(
                json!({ "org.opencontainers.image.ref.name": reference }),
            ));
        }
    }
    let index =
        json!({"schemaVersion": 2, "mediaType": oci::MEDIA_TYPE_OCI_INDEX, "manifests": manifests});
    append_file(
        &mut builder,
        "index.json",
        &serde_json::to_vec(&index).unwrap(),
    );
    write_archive(dir, name, builder)
}

/// A `docker save` archive in the pre-OCI layout: `<id>.json`, `<id>/layer.tar`.
fn docker_archive(dir: &Path, name: &str, images: &[(&TestImage, &[&str])]) -> PathBuf {
    let mut builder = tar::Builder::new(Vec::new());
    let mut entries = Vec::new();
    for (image, tags) in images {
        let config_path = format!("{}.json", hex(&image.config_digest()));
        append_file(&mut builder, &config_path, &image.config);
        let mut layer_paths = Vec::new();
        for layer in &image.layers {
            let path = format!("{}/layer.tar", hex(&sha256(&layer.tar)));
            append_file(&mut builder, &path, &layer.blob);
            append_file(
                &mut builder,
                &format!("{}/VERSION", hex(&sha256(&layer.tar))),
                b"1.0",
            );
            layer_paths.push(path);
        }
        entries.push(json!({"Config": config_path, "RepoTags": tags, "Layers": layer_paths}));
    }
    append_file(
        &mut builder,
        "manifest.json",
        &serde_json::to_vec(&entries).unwrap(),
    );
    write_archive(dir, name, builder)
}

fn write_archive(dir: &Path, name: &str, builder: tar::Builder<Vec<u8>>) -> PathBuf {
    let path = dir.join(name);
    fs::write(&path, builder.into_inner().unwrap()).unwrap();
    path
}

/// A store in a fresh directory, and a directory for archives beside it.
fn store() -> (TempDir, ImageStore) {
    let dir = TempDir::new().unwrap();
    let store = ImageStore::open(&dir.path().join("store")).unwrap();
    (dir, store)
}

fn names(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    names
}

fn base_layer() -> Layer {
    gzip_layer(&[
        Entry::Dir("bin/", 0o755),
        Entry::File("bin/busybox", "#!busybox", 0o755),
        Entry::Symlink("bin/sh", "busybox"),
        Entry::Dir("etc/", 0o755),
        Entry::File("etc/passwd", "root:x:0:0::/root:/bin/sh\n", 0o644),
        Entry::Dir("tmp/", 0o1777),
    ])
}

fn app_layer(content: &str) -> Layer {
    layer(&[
        Entry::Dir("www/", 0o755),
        Entry::File("www/index.html", content, 0o644),
    ])
}

#[test]
fn imports_an_oci_layout_with_its_references() {
    let (dir, store) = store();
    let image = TestImage::new(vec![base_layer(), app_layer("hello")], &["sh"]);
    let archive = oci_archive(
        dir.path(),
        "oci.tar",
        &[(
            &image,
            &["docker.io/library/busybox:latest", "capstan.test/busybox:1"],
        )],
    );

    let records = store.import(&archive).unwrap();

    let expected = ImageRecord {
        references: vec![
            "docker.io/library/busybox:latest".to_owned(),
            "capstan.test/busybox:1".to_owned(),
        ],
        digest: image.digest(),
        config_digest: image.config_digest(),
        layers: image.layers.iter().map(|l| sha256(&l.blob)).collect(),
        diff_ids: image.layers.iter().map(|l| sha256(&l.tar)).collect(),
        size: image.layers.iter().map(|l| l.blob.len() as u64).sum(),
    };
    assert_eq!(records, vec![expected.clone()]);
    assert_eq!(store.list().unwrap(), vec![expected.clone()]);
    // Every blob is kept, the archive's own files are not.
    let mut blobs: Vec<String> = image
        .blobs()
        .iter()
        .map(|b| hex(&sha256(b)).to_owned())
        .collect();
    blobs.sort();
    assert_eq!(names(&store.root().join(BLOBS_DIR)), blobs);
    assert_eq!(
        store.config(&expected).unwrap(),
        ImageConfig {
            entrypoint: vec![],
            cmd: vec!["sh".to_owned()],
            env: vec!["PATH=/bin".to_owned()],
            working_dir: Some("/www".to_owned()),
            user: None,
        }
    );
}

#[test]
fn resolve_accepts_names_digests_and_id_prefixes() {
    let (dir, store) = store();
    let image = TestImage::new(vec![app_layer("hello")], &["sh"]);
    let archive = oci_archive(
        dir.path(),
        "oci.tar",
        &[(
            &image,
            &[
                "docker.io/library/busybox:latest",
                "localhost:5000/test/httpd:1",
            ],
        )],
    );
    store.import(&archive).unwrap();

    let id = image.config_digest();
    let found = [
        "busybox".to_owned(),
        "busybox:latest".to_owned(),
        "library/busybox".to_owned(),
        "docker.io/library/busybox:latest".to_owned(),
        "localhost:5000/test/httpd:1".to_owned(),
        format!("busybox@{}", image.digest()),
        format!("localhost:5000/test/httpd@{}", image.digest()),
        id.clone(),
        hex(&id).to_owned(),
        hex(&id)[..12].to_owned(),
        format!("sha256:{}", &hex(&id)[..12]),
        image.digest(),
    ];
    for reference in &found {
        let record = store.resolve(reference).unwrap();
        assert_eq!(
            record.map(|r| r.digest),
            Some(image.digest()),
            "{reference}"
        );
    }
    let not_found = [
        "busybox:1".to_owned(),
        "localhost:5000/test/httpd".to_owned(),
        format!("nginx@{}", image.digest()),
        "ffffffffffff".to_owned(),
    ];
    for reference in &not_found {
        assert_eq!(store.resolve(reference).unwrap(), None, "{reference}");
    }
    assert!(matches!(
        store.resolve("Bad Name"),
        Err(ImageError::InvalidReference { .. })
    ));
}

#[test]
fn imports_a_docker_save_archive_with_gzip_and_plain_layers() {
    let (dir, store) = store();
    let image = TestImage::new(vec![base_layer(), app_layer("hello")], &["httpd"]);
    let archive = docker_archive(
        dir.path(),
        "docker.tar",
        &[(&image, &["busybox:latest", "localhost:5000/test/httpd:1"])],
    );

    let records = store.import(&archive).unwrap();

    assert_eq!(records.len(), 1);
    let record = &records[0];
    assert_eq!(
        record.references,
        [
            "docker.io/library/busybox:latest",
            "localhost:5000/test/httpd:1"
        ]
    );
    assert_eq!(record.config_digest, image.config_digest());
    // `docker save` has no manifest: the store writes one, pointing at the blobs as they were.
    let manifest: serde_json::Value =
        serde_json::from_slice(&fs::read(store.blob_path(&record.digest).unwrap()).unwrap())
            .unwrap();
    assert_eq!(
        manifest["layers"][0]["mediaType"],
        oci::MEDIA_TYPE_OCI_LAYER_GZIP
    );
    assert_eq!(
        manifest["layers"][1]["mediaType"],
        oci::MEDIA_TYPE_OCI_LAYER
    );
    assert_eq!(
        record.layers,
        [sha256(&image.layers[0].blob), sha256(&image.layers[1].blob)]
    );
    assert_eq!(store.config(record).unwrap().cmd, ["httpd"]);

    let dirs = store.layer_dirs(record).unwrap();
    assert_eq!(
        fs::read_to_string(dirs[0].join("etc/passwd")).unwrap(),
        "root:x:0:0::/root:/bin/sh\n"
    );
    assert_eq!(
        fs::read_to_string(dirs[1].join("www/index.html")).unwrap(),
        "hello"
    );
    // Only the image's blobs stay: `VERSION` files and the like are swept.
    assert_eq!(names(&store.root().join(BLOBS_DIR)).len(), 4);
}

#[test]
fn imports_a_gzipped_archive_and_reimporting_changes_nothing() {
    let (dir, store) = store();
    let image = TestImage::new(vec![app_layer("hello")], &["sh"]);
    let archive = docker_archive(dir.path(), "docker.tar", &[(&image, &["busybox:1"])]);
    let gzipped = dir.path().join("docker.tar.gz");
    fs::write(&gzipped, gzip(&fs::read(&archive).unwrap())).unwrap();

    let first = store.import(&gzipped).unwrap();
    let again = store.import(&archive).unwrap();

    assert_eq!(first, again);
    assert_eq!(store.list().unwrap(), first);
}

#[test]
fn unpacked_layers_keep_modes_owners_links_and_devices() {
    let (dir, store) = store();
    let image = TestImage::new(
        vec![layer(&[
            Entry::Dir("./", 0o755),
            Entry::Dir("./bin/", 0o755),
            Entry::File("./bin/busybox", "binary", 0o4755),
            Entry::Hardlink("./bin/ls", "bin/busybox"),
            Entry::Symlink("./bin/sh", "/bin/busybox"),
            Entry::Dir("./tmp/", 0o1777),
            Entry::OwnedFile("home/app/data", "mine", 1000),
            Entry::CharDevice("dev/null", 1, 3),
            Entry::Fifo("run/pipe"),
        ])],
        &["sh"],
    );
    let archive = oci_archive(dir.path(), "oci.tar", &[(&image, &["x:1"])]);
    let record = store.import(&archive).unwrap().remove(0);

    let root = store.layer_dirs(&record).unwrap().remove(0);

    let busybox = fs::symlink_metadata(root.join("bin/busybox")).unwrap();
    assert_eq!(busybox.mode() & 0o7777, 0o4755);
    assert_eq!(
        fs::symlink_metadata(root.join("bin/ls")).unwrap().ino(),
        busybox.ino()
    );
    assert_eq!(
        fs::read_link(root.join("bin/sh")).unwrap(),
        Path::new("/bin/busybox")
    );
    assert_eq!(
        fs::metadata(root.join("tmp")).unwrap().mode() & 0o7777,
        0o1777
    );
    let data = fs::metadata(root.join("home/app/data")).unwrap();
    assert_eq!((data.uid(), data.gid()), (1000, 1000));
    let null = fs::symlink_metadata(root.join("dev/null")).unwrap();
    assert!(null.file_type().is_char_device());
    assert_eq!(null.rdev(), nix::sys::stat::makedev(1, 3));
    assert_eq!(null.mode() & 0o7777, 0o666);
    assert!(
        fs::symlink_metadata(root.join("run/pipe"))
            .unwrap()
            .file_type()
            .is_fifo()
    );
    assert_eq!(fs::metadata(&root).unwrap().mode() & 0o777, 0o755);
}

#[test]
fn whiteouts_become_overlay_whiteouts_and_opaque_directories() {
    let (dir, store) = store();
    let image = TestImage::new(
        vec![
            base_layer(),
            layer(&[
                Entry::Dir("etc/", 0o755),
                Entry::File("etc/.wh.passwd", "", 0o644),
                Entry::Dir("var/", 0o755),
                Entry::File("var/.wh..wh..opq", "", 0o644),
                Entry::File("var/new", "new", 0o644),
                // A whiteout whose directory the layer does not list.
                Entry::File("usr/lib/.wh.gone", "", 0o644),
                // Deleted and made again as a directory in the same layer: opaque.
                Entry::File(".wh.tmp", "", 0o644),
                Entry::Dir("tmp/", 0o1777),
            ]),
        ],
        &["sh"],
    );
    let archive = oci_archive(dir.path(), "oci.tar", &[(&image, &["x:1"])]);
    let record = store.import(&archive).unwrap().remove(0);

    let upper = store.layer_dirs(&record).unwrap().remove(1);

    for whiteout in ["etc/passwd", "usr/lib/gone"] {
        let metadata = fs::symlink_metadata(upper.join(whiteout)).unwrap();
        assert!(metadata.file_type().is_char_device(), "{whiteout}");
        assert_eq!(metadata.rdev(), 0, "{whiteout}");
    }
    assert!(!upper.join("etc/.wh.passwd").exists());
    assert!(!upper.join("var/.wh..wh..opq").exists());
    for opaque in ["var", "tmp"] {
        let value = xattr::get(upper.join(opaque), "trusted.overlay.opaque").unwrap();
        assert_eq!(value.as_deref(), Some(&b"y"[..]), "{opaque}");
    }
    assert_eq!(
        xattr::get(upper.join("etc"), "trusted.overlay.opaque").unwrap(),
        None
    );
    assert_eq!(fs::read_to_string(upper.join("var/new")).unwrap(), "new");
}

#[test]
fn layer_entries_that_escape_the_layer_directory_are_refused() {
    let escapes: Vec<(&str, Vec<Entry<'_>>)> = vec![
        ("parent", vec![Entry::RawName(b"../escaped")]),
        (
            "nested parent",
            vec![Entry::Dir("a/", 0o755), Entry::RawName(b"a/../../escaped")],
        ),
        ("absolute", vec![Entry::RawName(b"/escaped")]),
        (
            "hard link target",
            vec![Entry::Hardlink("link", "../escaped")],
        ),
        (
            "whiteout of the parent",
            vec![Entry::File("a/.wh...", "", 0o644)],
        ),
        (
            "whiteout through a symlink",
            vec![
                Entry::Symlink("out", "/"),
                Entry::File("out/.wh.escaped", "", 0o644),
            ],
        ),
        (
            "file through a symlink",
            vec![
                Entry::Symlink("out", ".."),
                Entry::File("out/escaped", "x", 0o644),
            ],
        ),
    ];
    for (case, entries) in escapes {
        let (dir, store) = store();
        let image = TestImage::new(vec![layer(&entries)], &["sh"]);
        let archive = oci_archive(dir.path(), "oci.tar", &[(&image, &["x:1"])]);
        let record = store.import(&archive).unwrap().remove(0);

        let result = store.layer_dirs(&record);

        assert!(
            matches!(
                result,
                Err(ImageError::UnsafeLayerPath { .. } | ImageError::Unpack { .. })
            ),
            "{case}: {result:?}"
        );
        assert!(!dir.path().join("escaped").exists(), "{case}");
        assert!(!store.root().join("escaped").exists(), "{case}");
        assert!(names(&store.root().join(LAYERS_DIR)).is_empty(), "{case}");
        assert!(names(&store.root().join(TMP_DIR)).is_empty(), "{case}");
    }
}

#[test]
fn path_escape_is_reported_as_unsafe_layer_path() {
    let (dir, store) = store();
    let image = TestImage::new(vec![layer(&[Entry::RawName(b"../escaped")])], &["sh"]);
    let archive = oci_archive(dir.path(), "oci.tar", &[(&image, &["x:1"])]);
    let record = store.import(&archive).unwrap().remove(0);

    match store.layer_dirs(&record) {
        Err(ImageError::UnsafeLayerPath { layer, path }) => {
            assert_eq!(layer, record.layers[0]);
            assert_eq!(path, Path::new("../escaped"));
        }
        other => panic!("expected UnsafeLayerPath, got {other:?}"),
    }
}

#[test]
fn blobs_that_do_not_match_their_digest_are_refused() {
    let (dir, store) = store();
    let image = TestImage::new(vec![app_layer("hello")], &["sh"]);
    // A layout whose layer blob was altered after its name was computed.
    let mut builder = tar::Builder::new(Vec::new());
    append_file(
        &mut builder,
        "oci-layout",
        br#"{"imageLayoutVersion":"1.0.0"}"#,
    );
    for blob in image.blobs() {
        let content: &[u8] = if blob == image.layers[0].blob.as_slice() {
            b"tampered"
        } else {
            blob
        };
        append_file(
            &mut builder,
            &format!("blobs/sha256/{}", hex(&sha256(blob))),
            content,
        );
    }
    append_file(
        &mut builder,
        "index.json",
        br#"{"schemaVersion":2,"manifests":[]}"#,
    );
    let archive = write_archive(dir.path(), "oci.tar", builder);

    let result = store.import(&archive);

    match result {
        Err(ImageError::DigestMismatch { expected, actual }) => {
            assert_eq!(expected, sha256(&image.layers[0].blob));
            assert_eq!(actual, sha256(b"tampered"));
        }
        other => panic!("expected DigestMismatch, got {other:?}"),
    }
    assert!(names(&store.root().join(BLOBS_DIR)).is_empty());
    assert!(store.list().unwrap().is_empty());

    let result = store.write_blob(&b"data"[..], Some(&sha256(b"other")));
    assert!(
        matches!(result, Err(ImageError::DigestMismatch { .. })),
        "{result:?}"
    );
    assert!(names(&store.root().join(BLOBS_DIR)).is_empty());
}

#[test]
fn a_layer_whose_content_does_not_match_its_diff_id_is_refused() {
    let (dir, store) = store();
    let mut image = TestImage::new(vec![app_layer("hello")], &["sh"]);
    // The configuration claims another diff ID than the layer has.
    let other = app_layer("other");
    image.layers[0].tar = other.tar;
    let image = TestImage::new(image.layers, &["sh"]);
    let archive = oci_archive(dir.path(), "oci.tar", &[(&image, &["x:1"])]);
    let record = store.import(&archive).unwrap().remove(0);

    let result = store.layer_dirs(&record);

    assert!(
        matches!(result, Err(ImageError::DigestMismatch { .. })),
        "{result:?}"
    );
    assert!(names(&store.root().join(LAYERS_DIR)).is_empty());
}

#[test]
fn a_layer_shared_by_two_images_is_unpacked_once() {
    let (dir, store) = store();
    let first = TestImage::new(vec![base_layer(), app_layer("first")], &["sh"]);
    let second = TestImage::new(vec![base_layer(), app_layer("second")], &["sh"]);
    let archive = oci_archive(
        dir.path(),
        "oci.tar",
        &[(&first, &["first:1"]), (&second, &["second:1"])],
    );
    let records = store.import(&archive).unwrap();
    assert_eq!(records.len(), 2);

    let first_dirs = store.layer_dirs(&records[0]).unwrap();
    // A file the unpacker would not make: it survives only if the layer is not unpacked again.
    fs::write(first_dirs[0].join("marker"), "").unwrap();
    let second_dirs = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..4)
            .map(|_| scope.spawn(|| store.layer_dirs(&records[1])))
            .collect();
        let results: Vec<_> = handles
            .into_iter()
            .map(|h| h.join().unwrap().unwrap())
            .collect();
        assert!(results.windows(2).all(|w| w[0] == w[1]));
        results[0].clone()
    });

    assert_eq!(first_dirs[0], second_dirs[0]);
    assert_ne!(first_dirs[1], second_dirs[1]);
    assert!(second_dirs[0].join("marker").exists());
    assert_eq!(names(&store.root().join(LAYERS_DIR)).len(), 3);
    assert!(names(&store.root().join(TMP_DIR)).is_empty());
}

#[test]
fn removing_an_image_keeps_what_another_image_uses() {
    let (dir, store) = store();
    let first = TestImage::new(vec![base_layer(), app_layer("first")], &["sh"]);
    let second = TestImage::new(vec![base_layer(), app_layer("second")], &["sh"]);
    let archive = oci_archive(
        dir.path(),
        "oci.tar",
        &[(&first, &["first:1"]), (&second, &["second:1"])],
    );
    let records = store.import(&archive).unwrap();
    let first_dirs = store.layer_dirs(&records[0]).unwrap();
    let second_dirs = store.layer_dirs(&records[1]).unwrap();

    store.remove("first:1").unwrap();

    assert_eq!(store.resolve("first:1").unwrap(), None);
    assert!(first_dirs[0].is_dir(), "the shared base layer stays");
    assert!(!first_dirs[1].exists(), "the first image's own layer goes");
    assert!(!store.has_blob(&first.digest()));
    assert!(!store.has_blob(&first.config_digest()));
    assert!(!store.has_blob(&sha256(&first.layers[1].blob)));
    assert!(store.has_blob(&sha256(&first.layers[0].blob)));
    assert_eq!(store.layer_dirs(&records[1]).unwrap(), second_dirs);

    store.remove("second:1").unwrap();

    assert!(store.list().unwrap().is_empty());
    assert!(names(&store.root().join(LAYERS_DIR)).is_empty());
    assert!(names(&store.root().join(BLOBS_DIR)).is_empty());
    assert!(names(&store.root().join(TMP_DIR)).is_empty());
    assert!(matches!(
        store.remove("second:1"),
        Err(ImageError::NotFound { .. })
    ));
}

#[test]
fn removing_one_of_several_names_only_untags() {
    let (dir, store) = store();
    let image = TestImage::new(vec![app_layer("hello")], &["sh"]);
    let archive = oci_archive(
        dir.path(),
        "oci.tar",
        &[(&image, &["busybox:1", "busybox:latest"])],
    );
    store.import(&archive).unwrap();

    store.remove("busybox").unwrap();

    let record = store.resolve("busybox:1").unwrap().unwrap();
    assert_eq!(record.references, ["docker.io/library/busybox:1"]);
    assert!(store.has_blob(&image.digest()));

    // By ID the image goes with all its names.
    store.remove(&hex(&image.config_digest())[..12]).unwrap();
    assert!(store.list().unwrap().is_empty());
}

#[test]
fn a_name_moved_to_a_new_image_leaves_the_old_one_listed_by_id() {
    let (dir, store) = store();
    let old = TestImage::new(vec![app_layer("old")], &["sh"]);
    let new = TestImage::new(vec![app_layer("new")], &["sh"]);
    store
        .import(&oci_archive(
            dir.path(),
            "old.tar",
            &[(&old, &["busybox:latest"])],
        ))
        .unwrap();

    store
        .import(&oci_archive(
            dir.path(),
            "new.tar",
            &[(&new, &["busybox:latest"])],
        ))
        .unwrap();

    assert_eq!(
        store.resolve("busybox").unwrap().unwrap().digest,
        new.digest()
    );
    let old_record = store.resolve(&old.config_digest()).unwrap().unwrap();
    assert!(old_record.references.is_empty());
    assert_eq!(store.list().unwrap().len(), 2);
}

#[test]
fn add_image_records_blobs_a_registry_puller_wrote() {
    let (_dir, store) = store();
    let image = TestImage::new(vec![base_layer(), app_layer("pulled")], &["sh"]);
    for layer in &image.layers {
        store
            .write_blob(layer.blob.as_slice(), Some(&sha256(&layer.blob)))
            .unwrap();
    }

    let missing = store.add_image("localhost:5000/test/httpd:1", &image.manifest);
    assert!(
        matches!(&missing, Err(ImageError::MissingBlob { digest }) if *digest == image.config_digest()),
        "{missing:?}"
    );
    assert!(
        !store.has_blob(&image.digest()),
        "a refused manifest is not kept"
    );

    assert_eq!(
        store.write_blob(image.config.as_slice(), None).unwrap(),
        image.config_digest()
    );
    let record = store
        .add_image("localhost:5000/test/httpd:1", &image.manifest)
        .unwrap();
    assert_eq!(record.references, ["localhost:5000/test/httpd:1"]);
    assert_eq!(record.digest, image.digest());
    assert_eq!(store.layer_dirs(&record).unwrap().len(), 2);

    let by_digest = format!("localhost:5000/test/httpd@{}", image.digest());
    let record = store.add_image(&by_digest, &image.manifest).unwrap();
    assert_eq!(record.references.len(), 2);
    let wrong_digest = format!("localhost:5000/test/httpd@{}", image.config_digest());
    let result = store.add_image(&wrong_digest, &image.manifest);
    assert!(
        matches!(result, Err(ImageError::DigestMismatch { .. })),
        "{result:?}"
    );
    let result = store.add_image("Bad/Name", &image.manifest);
    assert!(
        matches!(result, Err(ImageError::InvalidReference { .. })),
        "{result:?}"
    );
}

#[test]
fn the_index_survives_reopening_and_open_sweeps_leftovers() {
    let (dir, store) = store();
    let image = TestImage::new(vec![app_layer("hello")], &["sh"]);
    store
        .import(&oci_archive(
            dir.path(),
            "oci.tar",
            &[(&image, &["busybox:latest"])],
        ))
        .unwrap();
    let listed = store.list().unwrap();
    drop(store);
    // What a crash could leave: a half-written file in tmp/, a blob no image uses.
    let root = dir.path().join("store");
    fs::write(root.join(TMP_DIR).join("blob-partial"), "half").unwrap();
    let orphan = sha256(b"orphan");
    fs::write(root.join(BLOBS_DIR).join(hex(&orphan)), "orphan").unwrap();

    let store = ImageStore::open(&root).unwrap();

    assert_eq!(store.list().unwrap(), listed);
    assert!(names(&root.join(TMP_DIR)).is_empty());
    assert!(!store.has_blob(&orphan));
    assert!(store.has_blob(&image.digest()));
}

#[test]
fn archives_of_unknown_format_are_refused() {
    let (dir, store) = store();
    let mut builder = tar::Builder::new(Vec::new());
    append_file(&mut builder, "README", b"not an image");
    let archive = write_archive(dir.path(), "other.tar", builder);

    let result = store.import(&archive);

    assert!(
        matches!(result, Err(ImageError::UnknownFormat { .. })),
        "{result:?}"
    );
    assert!(names(&store.root().join(BLOBS_DIR)).is_empty());
    let result = store.import(&dir.path().join("missing.tar"));
    assert!(
        matches!(result, Err(ImageError::ReadArchive { .. })),
        "{result:?}"
    );
}

/// Imports what `scripts/build-test-images.sh` builds, both formats, and checks they are the
/// same image.
#[test]
fn imports_the_test_images_the_script_builds() {
    // The script is deterministic and quick: build the archives afresh into a temporary dir.
    let images = tempfile::tempdir().unwrap();
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scripts/build-test-images.sh");
    let status = std::process::Command::new("bash")
        .arg(&script)
        .arg(images.path())
        .stdout(std::process::Stdio::null())
        .status()
        .unwrap();
    assert!(status.success(), "build-test-images.sh failed");
    let images = images.path();
    let (_dir, store) = store();

    let oci = store
        .import(&images.join("capstan-test-busybox.tar"))
        .unwrap();
    let docker = store
        .import(&images.join("capstan-test-busybox-docker.tar"))
        .unwrap();

    assert_eq!(oci.len(), 1);
    assert_eq!(docker.len(), 1);
    assert_eq!(oci[0].config_digest, docker[0].config_digest);
    assert_eq!(oci[0].diff_ids, docker[0].diff_ids);
    let record = store.resolve("busybox").unwrap().unwrap();
    assert!(
        record
            .references
            .contains(&"capstan.test/busybox:1".to_owned())
    );
    assert_eq!(store.config(&record).unwrap().cmd, ["sh"]);
    let root = store.layer_dirs(&record).unwrap().remove(0);
    assert_eq!(
        fs::read_to_string(root.join("www/index.html"))
            .unwrap()
            .trim(),
        "hello from capstan"
    );
    assert_eq!(
        fs::read_link(root.join("bin/sh")).unwrap(),
        Path::new("busybox")
    );
    assert_eq!(
        fs::metadata(root.join("tmp")).unwrap().mode() & 0o7777,
        0o1777
    );
}

#[test]
fn the_store_can_be_shared_between_threads() {
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<ImageStore>();
}
