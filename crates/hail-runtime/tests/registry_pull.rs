//! Pulls from a real registry (`docker-registry` on 127.0.0.1) into the
//! content store: anonymous, HTTP basic and bearer-token authentication, OCI
//! and Docker manifests, manifest lists, missing tags and tampered blobs.

mod common;
#[path = "common/registry.rs"]
mod registry_harness;

use std::path::Path;
use std::sync::Mutex;

use hail_runtime::content::{ContentError, ContentStore};
use hail_runtime::digest::Digest;
use hail_runtime::image::registry::{pull, Insecure, PullOptions, RegistryAuth, RegistryError};
use hail_runtime::progress::{NoProgress, Progress};
use registry_harness::{Auth, Registry, TokenIssuer};

/// The user agent oci-client sends, to tell our requests from skopeo's in the
/// registry's access log.
const AGENT: &str = "oci-client";

#[derive(Debug, Clone, PartialEq)]
enum Event {
    Begin(String, Option<u64>),
    Advance(u64),
    End,
}

#[derive(Default)]
struct Recorder(Mutex<Vec<Event>>);

impl Progress for Recorder {
    fn begin(&self, what: &str, total: Option<u64>) {
        self.0
            .lock()
            .unwrap()
            .push(Event::Begin(what.to_owned(), total));
    }
    fn advance(&self, bytes: u64) {
        self.0.lock().unwrap().push(Event::Advance(bytes));
    }
    fn end(&self) {
        self.0.lock().unwrap().push(Event::End);
    }
}

impl Recorder {
    /// Each step: its name, declared total and the bytes advanced within it.
    fn steps(&self) -> Vec<(String, Option<u64>, u64)> {
        let mut steps = Vec::new();
        let mut open = false;
        for e in self.0.lock().unwrap().iter() {
            match e {
                Event::Begin(what, total) => {
                    assert!(!open, "begin inside an open step");
                    open = true;
                    steps.push((what.clone(), *total, 0));
                }
                Event::Advance(n) => {
                    assert!(open, "advance outside a step");
                    steps.last_mut().unwrap().2 += n;
                }
                Event::End => {
                    assert!(open, "end outside a step");
                    open = false;
                }
            }
        }
        assert!(!open, "step left open");
        steps
    }
}

/// An image pushed to a registry, with what skopeo says about it.
struct Pushed {
    reference: String,
    digest: Digest,
    config: (Digest, u64),
    layers: Vec<(Digest, u64)>,
}

fn pushed(reference: &str) -> Pushed {
    let inspected = registry_harness::inspect(reference);
    let manifest: serde_json::Value =
        serde_json::from_slice(&registry_harness::raw_manifest(reference)).unwrap();
    let descriptor = |d: &serde_json::Value| {
        (
            d["digest"].as_str().unwrap().parse::<Digest>().unwrap(),
            d["size"].as_u64().unwrap(),
        )
    };
    Pushed {
        reference: reference.to_owned(),
        digest: inspected["Digest"].as_str().unwrap().parse().unwrap(),
        config: descriptor(&manifest["config"]),
        layers: manifest["layers"]
            .as_array()
            .unwrap()
            .iter()
            .map(descriptor)
            .collect(),
    }
}

/// Builds the busybox image and pushes it to `registry` as `repo:tag`.
fn push_busybox(work: &Path, registry: &Registry, repo_tag: &str, format: &str) -> Pushed {
    let layout = work.join("layout");
    let tag = repo_tag.rsplit(':').next().unwrap();
    registry_harness::build_busybox_layout(work, &layout, tag, repo_tag);
    let reference = format!("{}/{repo_tag}", registry.host());
    registry_harness::push(&layout, tag, &reference, format);
    pushed(&reference)
}

fn basic(username: &str, password: &str) -> PullOptions {
    PullOptions {
        auth: RegistryAuth::Basic {
            username: username.to_owned(),
            password: password.to_owned(),
        },
        ..PullOptions::default()
    }
}

fn assert_stored(content: &ContentStore, image: &Pushed) {
    assert!(content.contains(&image.digest), "manifest {}", image.digest);
    assert_eq!(
        content.read(&image.digest).unwrap(),
        registry_harness::raw_manifest(&image.reference),
        "the manifest is stored byte for byte"
    );
    for (digest, size) in std::iter::once(&image.config).chain(&image.layers) {
        assert!(content.contains(digest), "blob {digest}");
        assert_eq!(content.size(digest).unwrap(), *size);
        let bytes = content.read(digest).unwrap();
        assert_eq!(Digest::of(&bytes), *digest);
    }
}

#[tokio::test]
async fn anonymous_pull_stores_verified_blobs_once() {
    if !registry_harness::registry_tools_available() {
        return;
    }
    let work = tempfile::tempdir().unwrap();
    let registry = Registry::start(&work.path().join("storage"), &Auth::None);
    let image = push_busybox(work.path(), &registry, "hail/busybox:oci", "oci");
    assert_eq!(image.layers.len(), 2);

    let content = ContentStore::open(work.path().join("content")).unwrap();
    let progress = Recorder::default();
    let pulled = pull(
        &content,
        &image.reference,
        &PullOptions::default(),
        &progress,
    )
    .await
    .unwrap();
    assert_eq!(pulled.name, format!("{}/hail/busybox:oci", registry.host()));
    assert_eq!(
        pulled.manifest_digest, image.digest,
        "the digest skopeo reports"
    );
    assert_stored(&content, &image);

    // One progress step per blob, named by its short digest, each advanced
    // by exactly the blob's size.
    let mut expected = vec![(
        format!("config {}", image.config.0.short()),
        Some(image.config.1),
        image.config.1,
    )];
    for (digest, size) in &image.layers {
        expected.push((format!("layer {}", digest.short()), Some(*size), *size));
    }
    assert_eq!(progress.steps(), expected);
    for (digest, _) in &image.layers {
        assert_eq!(
            registry.blob_gets(&digest.to_string(), AGENT),
            1,
            "{digest}"
        );
    }

    // A second pull finds every blob present and downloads none.
    let again = Recorder::default();
    let repulled = pull(&content, &image.reference, &PullOptions::default(), &again)
        .await
        .unwrap();
    assert_eq!(repulled, pulled);
    assert!(again.steps().is_empty(), "{:?}", again.steps());
    for (digest, _) in &image.layers {
        assert_eq!(
            registry.blob_gets(&digest.to_string(), AGENT),
            1,
            "{digest}"
        );
    }
    assert_eq!(registry.blob_gets(&image.config.0.to_string(), AGENT), 1);

    // Pulling by digest names the same manifest.
    let by_digest = format!("{}/hail/busybox@{}", registry.host(), image.digest);
    let pulled = pull(&content, &by_digest, &PullOptions::default(), &NoProgress)
        .await
        .unwrap();
    assert_eq!(pulled.manifest_digest, image.digest);
    assert_eq!(pulled.name, by_digest);
}

#[tokio::test]
async fn docker_manifests_and_manifest_lists() {
    if !registry_harness::registry_tools_available() {
        return;
    }
    let work = tempfile::tempdir().unwrap();
    let registry = Registry::start(&work.path().join("storage"), &Auth::None);
    let docker = push_busybox(work.path(), &registry, "hail/multi:v2s2", "v2s2");
    let manifest: serde_json::Value =
        serde_json::from_slice(&registry_harness::raw_manifest(&docker.reference)).unwrap();
    assert_eq!(
        manifest["mediaType"],
        "application/vnd.docker.distribution.manifest.v2+json"
    );
    let oci = push_busybox(work.path(), &registry, "hail/multi:oci", "oci");
    assert_ne!(oci.digest, docker.digest);

    let content = ContentStore::open(work.path().join("content")).unwrap();
    let pulled = pull(
        &content,
        &docker.reference,
        &PullOptions::default(),
        &NoProgress,
    )
    .await
    .unwrap();
    assert_eq!(pulled.manifest_digest, docker.digest);
    assert_stored(&content, &docker);

    // An index whose linux/amd64 entry is the OCI image and linux/arm64 the
    // Docker one: the pull must pick the amd64 manifest and return its digest.
    let entry = |image: &Pushed, arch: &str, media_type: &str| {
        serde_json::json!({
            "mediaType": media_type,
            "digest": image.digest.to_string(),
            "size": registry_harness::raw_manifest(&image.reference).len(),
            "platform": { "architecture": arch, "os": "linux" },
        })
    };
    let put_index = |tag: &str, entries: Vec<serde_json::Value>| {
        let index = serde_json::json!({
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.index.v1+json",
            "manifests": entries,
        });
        let (status, body) = registry_harness::http(
            registry.addr,
            "PUT",
            &format!("/v2/hail/multi/manifests/{tag}"),
            &[("Content-Type", "application/vnd.oci.image.index.v1+json")],
            index.to_string().as_bytes(),
        )
        .unwrap();
        assert_eq!(status, 201, "{}", String::from_utf8_lossy(&body));
    };
    let docker_type = "application/vnd.docker.distribution.manifest.v2+json";
    let oci_type = "application/vnd.oci.image.manifest.v1+json";
    put_index(
        "multi",
        vec![
            entry(&docker, "arm64", docker_type),
            entry(&oci, "amd64", oci_type),
        ],
    );
    let list_reference = format!("{}/hail/multi:multi", registry.host());
    let list_digest: Digest = registry_harness::inspect(&list_reference)["Digest"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    let pulled = pull(
        &content,
        &list_reference,
        &PullOptions::default(),
        &NoProgress,
    )
    .await
    .unwrap();
    assert_eq!(
        pulled.manifest_digest, oci.digest,
        "the platform manifest's digest"
    );
    assert_eq!(pulled.name, list_reference);
    assert_stored(&content, &oci);
    assert_ne!(list_digest, oci.digest);
    assert!(
        !content.contains(&list_digest),
        "the list itself is not stored"
    );

    put_index("arm-only", vec![entry(&docker, "arm64", docker_type)]);
    let arm_only = format!("{}/hail/multi:arm-only", registry.host());
    let err = pull(&content, &arm_only, &PullOptions::default(), &NoProgress)
        .await
        .unwrap_err();
    match err {
        RegistryError::NoMatchingPlatform {
            reference,
            available,
        } => {
            assert_eq!(reference, arm_only);
            assert_eq!(available, vec!["linux/arm64".to_owned()]);
        }
        e => panic!("expected NoMatchingPlatform, got {e}"),
    }

    // An artifact that is not a container image: the registry takes it (its
    // blobs exist), the pull refuses it before downloading anything.
    let mut artifact: serde_json::Value =
        serde_json::from_slice(&registry_harness::raw_manifest(&oci.reference)).unwrap();
    artifact["layers"][0]["mediaType"] = "application/vnd.wasm.content.layer.v1+wasm".into();
    let (status, body) = registry_harness::http(
        registry.addr,
        "PUT",
        "/v2/hail/multi/manifests/wasm",
        &[("Content-Type", oci_type)],
        artifact.to_string().as_bytes(),
    )
    .unwrap();
    assert_eq!(status, 201, "{}", String::from_utf8_lossy(&body));
    let fresh = ContentStore::open(work.path().join("fresh")).unwrap();
    let wasm = format!("{}/hail/multi:wasm", registry.host());
    let err = pull(&fresh, &wasm, &PullOptions::default(), &NoProgress)
        .await
        .unwrap_err();
    match err {
        RegistryError::UnsupportedMediaType {
            what, media_type, ..
        } => {
            assert_eq!(what, "layer");
            assert_eq!(media_type, "application/vnd.wasm.content.layer.v1+wasm");
        }
        e => panic!("expected UnsupportedMediaType, got {e}"),
    }
    assert!(fresh.list().unwrap().is_empty());
}

#[tokio::test]
async fn missing_tag_and_repository_are_manifest_not_found() {
    if !registry_harness::registry_tools_available() {
        return;
    }
    let work = tempfile::tempdir().unwrap();
    let registry = Registry::start(&work.path().join("storage"), &Auth::None);
    push_busybox(work.path(), &registry, "hail/present:v1", "oci");
    let content = ContentStore::open(work.path().join("content")).unwrap();
    for reference in [
        format!("{}/hail/present:v2", registry.host()),
        format!("{}/hail/absent:v1", registry.host()),
    ] {
        let err = pull(&content, &reference, &PullOptions::default(), &NoProgress)
            .await
            .unwrap_err();
        match &err {
            RegistryError::ManifestNotFound { reference: r } => assert_eq!(*r, reference),
            e => panic!("{reference}: expected ManifestNotFound, got {e}"),
        }
        assert!(err.to_string().contains(&reference), "{err}");
    }
    assert!(content.list().unwrap().is_empty());

    let err = pull(
        &content,
        "Not A Reference!",
        &PullOptions::default(),
        &NoProgress,
    )
    .await
    .unwrap_err();
    assert!(
        matches!(err, RegistryError::InvalidReference { .. }),
        "{err}"
    );
}

#[tokio::test]
async fn transport_failures_name_the_registry() {
    if !registry_harness::registry_tools_available() {
        return;
    }
    let work = tempfile::tempdir().unwrap();
    let registry = Registry::start(&work.path().join("storage"), &Auth::None);
    push_busybox(work.path(), &registry, "hail/plain:v1", "oci");
    let content = ContentStore::open(work.path().join("content")).unwrap();

    // An explicit list without this registry means HTTPS, which a plain-HTTP
    // registry cannot answer.
    let https_only = PullOptions {
        insecure: Insecure::Registries(vec![]),
        ..PullOptions::default()
    };
    let reference = format!("{}/hail/plain:v1", registry.host());
    let err = pull(&content, &reference, &https_only, &NoProgress)
        .await
        .unwrap_err();
    match &err {
        RegistryError::Transport { registry: r, .. } => assert_eq!(*r, registry.host()),
        e => panic!("expected Transport, got {e}"),
    }
    // Listing it explicitly allows plain HTTP again.
    let listed = PullOptions {
        insecure: Insecure::Registries(vec![registry.host()]),
        ..PullOptions::default()
    };
    pull(&content, &reference, &listed, &NoProgress)
        .await
        .unwrap();

    // Nothing listens on the port of a registry that has stopped.
    let host = registry.host();
    drop(registry);
    let stopped = format!("{host}/hail/plain:v1");
    let err = pull(&content, &stopped, &PullOptions::default(), &NoProgress)
        .await
        .unwrap_err();
    match &err {
        RegistryError::Transport { registry, message } => {
            assert_eq!(*registry, host);
            assert!(message.to_lowercase().contains("connect"), "{message}");
        }
        e => panic!("expected Transport, got {e}"),
    }
}

#[tokio::test]
async fn basic_auth_is_required_and_accepted() {
    if !registry_harness::registry_tools_available() {
        return;
    }
    let work = tempfile::tempdir().unwrap();
    let storage = work.path().join("storage");
    let open = Registry::start(&storage, &Auth::None);
    let image = push_busybox(work.path(), &open, "hail/private:v1", "oci");
    let guarded = Registry::start(
        &storage,
        &Auth::Htpasswd {
            username: "hail".to_owned(),
            password: "s3cret pass".to_owned(),
        },
    );
    let reference = format!("{}/hail/private:v1", guarded.host());
    let content = ContentStore::open(work.path().join("content")).unwrap();

    for opts in [PullOptions::default(), basic("hail", "wrong")] {
        let err = pull(&content, &reference, &opts, &NoProgress)
            .await
            .unwrap_err();
        match err {
            RegistryError::Unauthorized { registry } => assert_eq!(registry, guarded.host()),
            e => panic!("{:?}: expected Unauthorized, got {e}", opts.auth),
        }
    }
    assert!(content.list().unwrap().is_empty());

    let pulled = pull(
        &content,
        &reference,
        &basic("hail", "s3cret pass"),
        &NoProgress,
    )
    .await
    .unwrap();
    assert_eq!(pulled.manifest_digest, image.digest);
    assert_stored(&content, &image);
    for (digest, _) in &image.layers {
        assert_eq!(guarded.blob_gets(&digest.to_string(), AGENT), 1);
    }
}

#[tokio::test]
async fn bearer_token_flow_with_and_without_credentials() {
    if !registry_harness::registry_tools_available() {
        return;
    }
    let work = tempfile::tempdir().unwrap();
    let storage = work.path().join("storage");
    let open = Registry::start(&storage, &Auth::None);
    let image = push_busybox(work.path(), &open, "hail/tokened:v1", "oci");

    // A token server that demands credentials.
    let issuer = TokenIssuer::start(Some(("robot", "t0ken-pass")));
    let guarded = Registry::start(&storage, &Auth::Token(issuer.clone()));
    let reference = format!("{}/hail/tokened:v1", guarded.host());
    let content = ContentStore::open(work.path().join("content")).unwrap();

    let err = pull(&content, &reference, &PullOptions::default(), &NoProgress)
        .await
        .unwrap_err();
    assert!(matches!(err, RegistryError::Unauthorized { .. }), "{err}");
    let refused = issuer.requests.load(std::sync::atomic::Ordering::SeqCst);
    assert!(refused >= 1, "the token endpoint was asked");
    assert_eq!(issuer.issued.load(std::sync::atomic::Ordering::SeqCst), 0);

    let pulled = pull(
        &content,
        &reference,
        &basic("robot", "t0ken-pass"),
        &NoProgress,
    )
    .await
    .unwrap();
    assert_eq!(pulled.manifest_digest, image.digest);
    assert!(issuer.issued.load(std::sync::atomic::Ordering::SeqCst) >= 1);
    assert_stored(&content, &image);
    assert!(
        guarded
            .log_text()
            .contains("\"GET /v2/hail/tokened/manifests/v1 HTTP/1.1\" 200"),
        "the registry accepted the token:\n{}",
        guarded.log_text()
    );
    issuer.shutdown();

    // A token server that hands out tokens anonymously, as public registries do.
    let public = TokenIssuer::start(None);
    let guarded = Registry::start(&storage, &Auth::Token(public.clone()));
    let reference = format!("{}/hail/tokened:v1", guarded.host());
    let fresh = ContentStore::open(work.path().join("fresh")).unwrap();
    let pulled = pull(&fresh, &reference, &PullOptions::default(), &NoProgress)
        .await
        .unwrap();
    assert_eq!(pulled.manifest_digest, image.digest);
    assert!(public.issued.load(std::sync::atomic::Ordering::SeqCst) >= 1);
    public.shutdown();
}

#[tokio::test]
async fn tampered_blob_is_rejected_and_not_stored() {
    if !registry_harness::registry_tools_available() {
        return;
    }
    let work = tempfile::tempdir().unwrap();
    let registry = Registry::start(&work.path().join("storage"), &Auth::None);
    let image = push_busybox(work.path(), &registry, "hail/tampered:v1", "oci");

    // Flip one byte in the middle of the big layer, keeping its size.
    let (victim, _) = image
        .layers
        .iter()
        .max_by_key(|(_, size)| *size)
        .unwrap()
        .clone();
    let path = registry.blob_data_path(&victim.to_string());
    let mut bytes = std::fs::read(&path).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0xff;
    std::fs::write(&path, &bytes).unwrap();

    let content = ContentStore::open(work.path().join("content")).unwrap();
    let err = pull(
        &content,
        &image.reference,
        &PullOptions::default(),
        &NoProgress,
    )
    .await
    .unwrap_err();
    match &err {
        RegistryError::Content(ContentError::DigestMismatch { expected, actual }) => {
            assert_eq!(*expected, victim);
            assert_eq!(*actual, Digest::of(&bytes));
        }
        e => panic!("expected a digest mismatch, got {e}"),
    }
    assert!(err.to_string().contains(&victim.to_string()), "{err}");
    assert!(
        !content.contains(&victim),
        "nothing stored under the tampered digest"
    );
    assert!(
        !content.contains(&image.digest),
        "no manifest for an incomplete image"
    );
    assert_eq!(
        content.remove_leftovers().unwrap(),
        0,
        "no partial files left"
    );
}

/// The same image reaches the store by two roads — pulled from a registry and
/// imported from a `docker save` archive — and is the same image: same image
/// id (config digest) and same layer diff ids.
#[tokio::test]
async fn pulled_image_equals_the_same_image_imported_from_docker_save() {
    if !registry_harness::registry_tools_available() {
        return;
    }
    let work = tempfile::tempdir().unwrap();
    let registry = Registry::start(&work.path().join("storage"), &Auth::None);
    let pushed = push_busybox(work.path(), &registry, "hail/busybox:same", "v2s2");
    let archive = work.path().join("saved.tar");
    let status = std::process::Command::new("skopeo")
        .args(["copy", "--insecure-policy"])
        .arg(format!("oci:{}:same", work.path().join("layout").display()))
        .arg(format!(
            "docker-archive:{}:hail/busybox:same",
            archive.display()
        ))
        .status()
        .unwrap();
    assert!(status.success());

    let store = hail_runtime::image::store::ImageStore::open(&work.path().join("data")).unwrap();
    let imported = store
        .import("saved/busybox:same", &archive, &NoProgress)
        .unwrap();
    let pulled = store
        .pull(&pushed.reference, &PullOptions::default(), &NoProgress)
        .await
        .unwrap();
    assert_eq!(pulled.config_digest, imported.config_digest, "image id");
    let diff_ids = |i: &hail_runtime::image::Image| {
        i.layers
            .iter()
            .map(|l| l.diff_id.clone())
            .collect::<Vec<_>>()
    };
    assert_eq!(diff_ids(&pulled), diff_ids(&imported));
    assert_eq!(pulled.layers.len(), 2);
    // Both names resolve to that one image.
    assert_eq!(
        store.get(&pushed.reference).unwrap().unwrap().config_digest,
        imported.config_digest
    );
    assert_eq!(
        store
            .get("saved/busybox:same")
            .unwrap()
            .unwrap()
            .config_digest,
        imported.config_digest
    );
}
