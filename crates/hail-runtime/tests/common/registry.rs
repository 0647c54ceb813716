//! A loopback OCI registry for tests: Debian's `docker-registry` (the CNCF
//! distribution registry) serving a temporary directory on 127.0.0.1, images
//! built offline with `umoci` and pushed with `skopeo`, and a token server
//! for the registry's bearer-token authentication.
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use base64::Engine as _;

/// Whether the registry tests can run: the container prerequisites plus the
/// registry tools. Under `CI=true` a missing tool fails, never skips.
pub fn registry_tools_available() -> bool {
    if !crate::common::containers_available() {
        return false;
    }
    let missing: Vec<&str> = ["docker-registry", "skopeo", "umoci", "busybox"]
        .into_iter()
        .filter(|t| crate::common::which(t).is_none())
        .collect();
    match missing.is_empty() {
        true => true,
        false if std::env::var("CI").as_deref() == Ok("true") => {
            panic!(
                "missing {} (scripts/install-deps.sh installs them)",
                missing.join(", ")
            )
        }
        false => {
            eprintln!("skipping: missing {}", missing.join(", "));
            false
        }
    }
}

/// How a registry authenticates its clients.
pub enum Auth {
    None,
    /// HTTP basic against an htpasswd file of bcrypt hashes.
    Htpasswd {
        username: String,
        password: String,
    },
    /// Bearer tokens issued by `issuer`.
    Token(Arc<TokenIssuer>),
}

/// A running `docker-registry`, killed on drop.
pub struct Registry {
    child: Child,
    pub addr: SocketAddr,
    pub storage: PathBuf,
    log: PathBuf,
    _config_dir: tempfile::TempDir,
}

impl Registry {
    /// Starts a registry serving `storage` (created if missing); several
    /// registries may serve one storage directory, e.g. an open one to push
    /// into and an authenticating one to pull from.
    pub fn start(storage: &Path, auth: &Auth) -> Registry {
        let bin = Path::new("/usr/bin/docker-registry");
        assert!(
            bin.is_file(),
            "docker-registry is not installed (scripts/install-deps.sh installs it)"
        );
        std::fs::create_dir_all(storage).unwrap();
        let config_dir = tempfile::tempdir().unwrap();
        let auth_yaml = match auth {
            Auth::None => String::new(),
            Auth::Htpasswd { username, password } => {
                let hash = bcrypt::hash(password, 4).unwrap();
                let path = config_dir.path().join("htpasswd");
                std::fs::write(&path, format!("{username}:{hash}\n")).unwrap();
                format!(
                    "auth:\n  htpasswd:\n    realm: hail-test\n    path: {}\n",
                    path.display()
                )
            }
            Auth::Token(issuer) => {
                let bundle = config_dir.path().join("token-ca.pem");
                std::fs::write(&bundle, &issuer.cert_pem).unwrap();
                format!(
                    "auth:\n  token:\n    realm: {}\n    service: {}\n    issuer: {}\n    rootcertbundle: {}\n",
                    issuer.realm(),
                    issuer.service,
                    issuer.issuer,
                    bundle.display()
                )
            }
        };
        let port = free_port();
        let config = config_dir.path().join("config.yml");
        std::fs::write(
            &config,
            format!(
                "version: 0.1\nlog:\n  level: info\nstorage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\nhttp:\n  addr: 127.0.0.1:{port}\n{auth_yaml}",
                storage.display()
            ),
        )
        .unwrap();
        let log = config_dir.path().join("registry.log");
        let out = std::fs::File::create(&log).unwrap();
        let child = Command::new(bin)
            .arg("serve")
            .arg(&config)
            .stdin(Stdio::null())
            .stdout(out.try_clone().unwrap())
            .stderr(out)
            .spawn()
            .unwrap();
        let mut registry = Registry {
            child,
            addr: SocketAddr::from(([127, 0, 0, 1], port)),
            storage: storage.to_owned(),
            log,
            _config_dir: config_dir,
        };
        registry.wait_ready();
        registry
    }

    fn wait_ready(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            // Any HTTP answer counts: an authenticating registry answers 401.
            if let Ok((status, _)) = http(self.addr, "GET", "/v2/", &[], b"") {
                if status == 200 || status == 401 {
                    return;
                }
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!("docker-registry exited with {status}:\n{}", self.log_text());
            }
            assert!(
                Instant::now() < deadline,
                "docker-registry did not answer /v2/:\n{}",
                self.log_text()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// `127.0.0.1:<port>`, as written in image references.
    pub fn host(&self) -> String {
        self.addr.to_string()
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// How many times a client whose user agent contains `agent` fetched the
    /// blob `digest`, from the registry's access log.
    pub fn blob_gets(&self, digest: &str, agent: &str) -> usize {
        let needle = "\"GET /v2/";
        let blob = format!("/blobs/{digest} ");
        self.log_text()
            .lines()
            .filter(|l| l.contains(needle) && l.contains(&blob) && l.contains(agent))
            .count()
    }

    /// Where the registry keeps blob `digest` (`sha256:<hex>`).
    pub fn blob_data_path(&self, digest: &str) -> PathBuf {
        let hex = digest.strip_prefix("sha256:").unwrap();
        self.storage
            .join("docker/registry/v2/blobs/sha256")
            .join(&hex[..2])
            .join(hex)
            .join("data")
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A minimal HTTP/1.1 request on loopback; returns the status and body.
pub fn http(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> std::io::Result<(u16, Vec<u8>)> {
    assert!(addr.ip().is_loopback());
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(2))?;
    s.set_read_timeout(Some(Duration::from_secs(10)))?;
    let mut req = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    s.write_all(req.as_bytes())?;
    s.write_all(body)?;
    let mut resp = Vec::new();
    s.read_to_end(&mut resp)?;
    let head_end = resp
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or_else(|| std::io::Error::other("no header end"))?;
    let head = String::from_utf8_lossy(&resp[..head_end]).to_string();
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| std::io::Error::other(format!("bad status line: {head}")))?;
    Ok((status, resp[head_end + 4..].to_vec()))
}

fn run(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// Builds an OCI layout at `layout` holding image `tag` with two layers: the
/// busybox root filesystem and a small layer with `/etc/hail-marker`
/// containing `marker` (so images built with different markers differ).
pub fn build_busybox_layout(work: &Path, layout: &Path, tag: &str, marker: &str) {
    let rootfs = work.join(format!("rootfs-{tag}.tar"));
    crate::common::write_busybox_rootfs_tar(&rootfs);
    let extra = work.join(format!("marker-{tag}.tar"));
    {
        let mut tar = tar::Builder::new(std::fs::File::create(&extra).unwrap());
        let mut h = tar::Header::new_gnu();
        h.set_mode(0o644);
        h.set_size(marker.len() as u64);
        tar.append_data(&mut h, "etc/hail-marker", marker.as_bytes())
            .unwrap();
        tar.into_inner().unwrap();
    }
    if !layout.join("index.json").exists() {
        run(Command::new("umoci").args(["init", "--layout"]).arg(layout));
    }
    let image = format!("{}:{tag}", layout.display());
    run(Command::new("umoci").args(["new", "--image", &image]));
    run(Command::new("umoci")
        .args(["raw", "add-layer", "--image", &image])
        .arg(&rootfs));
    run(Command::new("umoci")
        .args(["raw", "add-layer", "--image", &image])
        .arg(&extra));
    run(Command::new("umoci").args([
        "config",
        "--image",
        &image,
        "--config.cmd",
        "/bin/sh",
        "--os",
        "linux",
        "--architecture",
        "amd64",
    ]));
}

/// Pushes `layout:tag` to `dest` (`host/repo:tag`); `format` is skopeo's
/// `--format` (`oci` or `v2s2`).
pub fn push(layout: &Path, tag: &str, dest: &str, format: &str) {
    run(Command::new("skopeo").args([
        "copy",
        "--insecure-policy",
        "--dest-tls-verify=false",
        "--format",
        format,
        &format!("oci:{}:{tag}", layout.display()),
        &format!("docker://{dest}"),
    ]));
}

/// `skopeo inspect` of `reference` (`host/repo:tag`), as JSON.
pub fn inspect(reference: &str) -> serde_json::Value {
    let out = run(Command::new("skopeo").args([
        "inspect",
        "--tls-verify=false",
        &format!("docker://{reference}"),
    ]));
    serde_json::from_str(&out).unwrap()
}

/// The raw manifest of `reference`, as skopeo fetches it.
pub fn raw_manifest(reference: &str) -> Vec<u8> {
    run(Command::new("skopeo").args([
        "inspect",
        "--raw",
        "--tls-verify=false",
        &format!("docker://{reference}"),
    ]))
    .into_bytes()
}

/// Signs registry bearer tokens (ES256, certificate in the `x5c` header, as
/// the distribution registry verifies them against `rootcertbundle`) and
/// serves them from a token endpoint on loopback.
pub struct TokenIssuer {
    pub issuer: String,
    pub service: String,
    pub cert_pem: String,
    cert_der_b64: String,
    key: jsonwebtoken::EncodingKey,
    /// Basic credentials the token endpoint demands, if any.
    credentials: Option<(String, String)>,
    addr: SocketAddr,
    pub requests: AtomicUsize,
    pub issued: AtomicUsize,
    stop: AtomicBool,
    thread: std::sync::Mutex<Option<JoinHandle<()>>>,
}

impl TokenIssuer {
    pub fn start(credentials: Option<(&str, &str)>) -> Arc<TokenIssuer> {
        let certified =
            rcgen::generate_simple_self_signed(vec!["hail-test-token-issuer".to_owned()]).unwrap();
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let issuer = Arc::new(TokenIssuer {
            issuer: "hail-test-issuer".to_owned(),
            service: "hail-test-registry".to_owned(),
            cert_pem: certified.cert.pem(),
            cert_der_b64: base64::engine::general_purpose::STANDARD.encode(certified.cert.der()),
            key: jsonwebtoken::EncodingKey::from_ec_pem(
                certified.signing_key.serialize_pem().as_bytes(),
            )
            .unwrap(),
            credentials: credentials.map(|(u, p)| (u.to_owned(), p.to_owned())),
            addr: listener.local_addr().unwrap(),
            requests: AtomicUsize::new(0),
            issued: AtomicUsize::new(0),
            stop: AtomicBool::new(false),
            thread: std::sync::Mutex::new(None),
        });
        let served = Arc::clone(&issuer);
        let thread = std::thread::spawn(move || {
            for conn in listener.incoming() {
                if served.stop.load(Ordering::SeqCst) {
                    break;
                }
                if let Ok(conn) = conn {
                    let _ = served.answer(conn);
                }
            }
        });
        *issuer.thread.lock().unwrap() = Some(thread);
        issuer
    }

    pub fn realm(&self) -> String {
        format!("http://{}/token", self.addr)
    }

    pub fn shutdown(&self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect(self.addr);
        if let Some(t) = self.thread.lock().unwrap().take() {
            let _ = t.join();
        }
    }

    fn answer(&self, conn: TcpStream) -> std::io::Result<()> {
        self.requests.fetch_add(1, Ordering::SeqCst);
        let mut reader = BufReader::new(conn.try_clone()?);
        let mut request_line = String::new();
        reader.read_line(&mut request_line)?;
        let mut authorization = None;
        loop {
            let mut line = String::new();
            if reader.read_line(&mut line)? == 0 || line == "\r\n" {
                break;
            }
            if let Some((k, v)) = line.trim_end().split_once(':') {
                if k.eq_ignore_ascii_case("authorization") {
                    authorization = Some(v.trim().to_owned());
                }
            }
        }
        let target = request_line.split_whitespace().nth(1).unwrap_or("");
        let query = target.split_once('?').map_or("", |(_, q)| q);
        let param = |name: &str| {
            query
                .split('&')
                .filter_map(|kv| kv.split_once('='))
                .find(|(k, _)| *k == name)
                .map(|(_, v)| percent_decode(v))
        };
        let authorized = match &self.credentials {
            None => true,
            Some((u, p)) => {
                let expected = format!(
                    "Basic {}",
                    base64::engine::general_purpose::STANDARD.encode(format!("{u}:{p}"))
                );
                authorization.as_deref() == Some(expected.as_str())
            }
        };
        let (status, body) = if !target.starts_with("/token") {
            ("404 Not Found", "{}".to_owned())
        } else if !authorized {
            (
                "401 Unauthorized",
                r#"{"details":"bad credentials"}"#.to_owned(),
            )
        } else {
            let token = self.sign(param("scope").as_deref(), param("service").as_deref());
            self.issued.fetch_add(1, Ordering::SeqCst);
            (
                "200 OK",
                serde_json::json!({ "token": token, "expires_in": 300 }).to_string(),
            )
        };
        let mut conn = conn;
        write!(
            conn,
            "HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        )
    }

    /// A token granting exactly the requested `repository:<name>:<actions>` scope.
    pub fn sign(&self, scope: Option<&str>, service: Option<&str>) -> String {
        let access: Vec<serde_json::Value> = scope
            .into_iter()
            .filter_map(|s| {
                let mut parts = s.splitn(3, ':');
                let (kind, name, actions) = (parts.next()?, parts.next()?, parts.next()?);
                Some(serde_json::json!({
                    "type": kind,
                    "name": name,
                    "actions": actions.split(',').collect::<Vec<_>>(),
                }))
            })
            .collect();
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs();
        let claims = serde_json::json!({
            "iss": self.issuer,
            "sub": "hail-test",
            "aud": service.unwrap_or(&self.service),
            "exp": now + 300,
            "nbf": now - 10,
            "iat": now,
            "jti": format!("hail-test-{now}-{}", self.issued.load(Ordering::SeqCst)),
            "access": access,
        });
        let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::ES256);
        header.x5c = Some(vec![self.cert_der_b64.clone()]);
        jsonwebtoken::encode(&header, &claims, &self.key).unwrap()
    }
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' if i + 2 < bytes.len() => {
                let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).unwrap_or("");
                match u8::from_str_radix(hex, 16) {
                    Ok(b) => {
                        out.push(b);
                        i += 3;
                    }
                    Err(_) => {
                        out.push(b'%');
                        i += 1;
                    }
                }
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}
