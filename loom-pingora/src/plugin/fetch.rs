//! Fetching modules: a file, an HTTP(S) URL, or an OCI registry (the Istio/solo "compat"
//! image, one tar+gzip layer holding `plugin.wasm`; and the CNCF Wasm artifact, an
//! `application/wasm` layer). Downloads land in a content-addressed cache
//! (`modules/sha256/<hex>.wasm`), and a tag once resolved is remembered (`refs/`), so that
//! `IfNotPresent` starts without the network.

use std::path::{Path, PathBuf};
use std::time::Duration;

use base64::Engine as _;
use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Request, StatusCode, header};
use http_body_util::{BodyExt, Empty, Limited};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use loom_core::compile::ModuleSource;
use sha2::{Digest, Sha256};

/// The largest module (or layer) Loom downloads.
const MAX_BYTES: usize = 256 << 20;
/// One request's deadline.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

const WASM_LAYERS: [&str; 2] = [
    "application/wasm",
    "application/vnd.wasm.content.layer.v1+wasm",
];
const TAR_GZIP_LAYERS: [&str; 2] = [
    "application/vnd.oci.image.layer.v1.tar+gzip",
    "application/vnd.docker.image.rootfs.diff.tar.gzip",
];
const MANIFESTS: &str = "application/vnd.oci.image.manifest.v1+json, \
     application/vnd.docker.distribution.manifest.v2+json, \
     application/vnd.oci.image.index.v1+json, \
     application/vnd.docker.distribution.manifest.list.v2+json";

/// Why a fetch failed: worth another try later, or not.
#[derive(Debug)]
pub(crate) enum FetchError {
    /// The network, the registry or the file system; tried again with backoff.
    Retry(String),
    /// The content is wrong for the spec (digest mismatch, no module in the image).
    Refused(String),
}

impl std::fmt::Display for FetchError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            FetchError::Retry(s) | FetchError::Refused(s) => f.write_str(s),
        }
    }
}

fn retry(e: impl std::fmt::Display) -> FetchError {
    FetchError::Retry(e.to_string())
}

/// Registry credentials (from an `imagePullSecret`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Credentials {
    /// User name.
    pub user: String,
    /// Password or token.
    pub password: String,
}

impl Credentials {
    /// The credentials for `registry` in a `.dockerconfigjson` (`auths.<host>.auth`, or
    /// `username`/`password`).
    pub fn from_docker_config(json: &[u8], registry: &str) -> Option<Credentials> {
        let v: serde_json::Value = serde_json::from_slice(json).ok()?;
        let auths = v.get("auths")?.as_object()?;
        let entry = auths.iter().find_map(|(k, v)| {
            let host = k
                .trim_start_matches("https://")
                .trim_start_matches("http://")
                .split('/')
                .next()?;
            (host == registry).then_some(v)
        })?;
        if let Some(auth) = entry.get("auth").and_then(|a| a.as_str()) {
            let decoded = base64::engine::general_purpose::STANDARD
                .decode(auth)
                .ok()?;
            let text = String::from_utf8(decoded).ok()?;
            let (user, password) = text.split_once(':')?;
            return Some(Credentials {
                user: user.into(),
                password: password.into(),
            });
        }
        Some(Credentials {
            user: entry.get("username")?.as_str()?.into(),
            password: entry.get("password")?.as_str()?.into(),
        })
    }

    fn basic(&self) -> String {
        let raw = format!("{}:{}", self.user, self.password);
        format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(raw)
        )
    }
}

type HttpsClient = Client<hyper_rustls::HttpsConnector<HttpConnector>, Empty<Bytes>>;

/// Fetches modules into the cache directory.
pub(crate) struct Fetcher {
    dir: PathBuf,
    /// The HTTP(S) client, or why there is none (no TLS roots on this machine): files still
    /// load, every download fails with the reason.
    client: Result<HttpsClient, String>,
}

/// `sha256` of bytes, in hex.
pub(crate) fn sha256_hex(bytes: &[u8]) -> String {
    let d = Sha256::digest(bytes);
    d.iter().map(|b| format!("{b:02x}")).collect()
}

impl Fetcher {
    pub(crate) fn new(dir: &Path) -> Fetcher {
        let client = hyper_rustls::HttpsConnectorBuilder::new()
            .with_provider_and_native_roots(std::sync::Arc::new(
                rustls::crypto::ring::default_provider(),
            ))
            .map(|b| {
                let https = b.https_or_http().enable_http1().build();
                Client::builder(TokioExecutor::new()).build(https)
            })
            .map_err(|e| format!("no TLS roots on this machine for plugin downloads: {e}"));
        Fetcher {
            dir: dir.to_owned(),
            client,
        }
    }

    fn module_path(&self, hex: &str) -> PathBuf {
        self.dir
            .join("modules")
            .join("sha256")
            .join(format!("{hex}.wasm"))
    }

    fn ref_path(&self, url: &str) -> PathBuf {
        self.dir.join("refs").join(sha256_hex(url.as_bytes()))
    }

    /// The cached module of a digest, if there is one and it is whole.
    fn cached(&self, hex: &str) -> Option<Vec<u8>> {
        let bytes = std::fs::read(self.module_path(hex)).ok()?;
        (sha256_hex(&bytes) == hex).then_some(bytes)
    }

    fn store(&self, url: &str, bytes: &[u8]) -> String {
        let hex = sha256_hex(bytes);
        let path = self.module_path(&hex);
        let write = || -> std::io::Result<()> {
            if let Some(dir) = path.parent() {
                std::fs::create_dir_all(dir)?;
            }
            write_atomically(&path, bytes)?;
            let r = self.ref_path(url);
            if let Some(dir) = r.parent() {
                std::fs::create_dir_all(dir)?;
            }
            write_atomically(&r, hex.as_bytes())
        };
        if let Err(e) = write() {
            tracing::warn!("plugin cache {}: {e}", self.dir.display());
        }
        hex
    }

    /// The module of a source: its bytes, checked against `sha256` when the spec gives one.
    pub(crate) async fn fetch(
        &self,
        source: &ModuleSource,
        credentials: Option<&Credentials>,
    ) -> Result<Vec<u8>, FetchError> {
        let url = source.url.as_str();
        let local = url
            .strip_prefix("file://")
            .or((!url.contains("://")).then_some(url));
        if let Some(path) = local {
            let owned = path.to_owned();
            let bytes = tokio::task::spawn_blocking(move || read_module_file(&owned))
                .await
                .map_err(retry)??;
            return verify(source, bytes);
        }
        if !source.always_pull {
            let known = source.sha256.clone().or_else(|| {
                std::fs::read_to_string(self.ref_path(url))
                    .ok()
                    .map(|s| s.trim().to_owned())
            });
            if let Some(bytes) = known.and_then(|hex| self.cached(&hex)) {
                return verify(source, bytes);
            }
        }
        let bytes = if let Some(rest) = url.strip_prefix("oci://") {
            self.oci(rest, credentials).await?
        } else {
            self.get(url, &HeaderMap::new()).await?.1.to_vec()
        };
        let bytes = verify(source, bytes)?;
        self.store(url, &bytes);
        Ok(bytes)
    }

    /// GET, following redirects; the status and body of a 2xx, else an error.
    async fn get(&self, url: &str, headers: &HeaderMap) -> Result<(HeaderMap, Bytes), FetchError> {
        let (status, h, body) = self.request(url, headers).await?;
        if !status.is_success() {
            return Err(retry(format!("GET {url}: {status}")));
        }
        Ok((h, body))
    }

    async fn request(
        &self,
        url: &str,
        headers: &HeaderMap,
    ) -> Result<(StatusCode, HeaderMap, Bytes), FetchError> {
        let mut url = url.to_owned();
        for _ in 0..5 {
            let mut req = Request::get(&url)
                .body(Empty::<Bytes>::new())
                .map_err(|e| FetchError::Refused(format!("{url}: {e}")))?;
            req.headers_mut().extend(headers.clone());
            let client = self.client.as_ref().map_err(retry)?;
            let resp = tokio::time::timeout(REQUEST_TIMEOUT, client.request(req))
                .await
                .map_err(|_| retry(format!("GET {url}: no answer in {REQUEST_TIMEOUT:?}")))?
                .map_err(|e| retry(format!("GET {url}: {e:#}")))?;
            let status = resp.status();
            if status.is_redirection()
                && let Some(next) = resp.headers().get(header::LOCATION)
            {
                let next = next.to_str().map_err(retry)?;
                url = if next.starts_with('/') {
                    let uri: http::Uri = url.parse().map_err(retry)?;
                    format!(
                        "{}://{}{next}",
                        uri.scheme_str().unwrap_or("https"),
                        uri.authority().map_or("", |a| a.as_str())
                    )
                } else {
                    next.to_owned()
                };
                continue;
            }
            let head = resp.headers().clone();
            let body = Limited::new(resp.into_body(), MAX_BYTES)
                .collect()
                .await
                .map_err(|e| retry(format!("GET {url}: {e}")))?
                .to_bytes();
            return Ok((status, head, body));
        }
        Err(retry(format!("GET {url}: too many redirects")))
    }

    /// A module from an OCI registry: `registry/repository[:tag][@sha256:digest]`.
    async fn oci(
        &self,
        reference: &str,
        creds: Option<&Credentials>,
    ) -> Result<Vec<u8>, FetchError> {
        let r = OciRef::parse(reference).ok_or_else(|| {
            FetchError::Refused(format!(
                "oci://{reference} is not registry/repository[:tag]"
            ))
        })?;
        let mut session = Session {
            fetcher: self,
            r: &r,
            creds,
            authorization: None,
        };
        let mut manifest: serde_json::Value = serde_json::from_slice(
            &session
                .get(&format!("manifests/{}", r.reference()), MANIFESTS)
                .await?,
        )
        .map_err(|e| FetchError::Refused(format!("oci://{reference}: manifest: {e}")))?;
        if let Some(list) = manifest.get("manifests").and_then(|m| m.as_array()) {
            // An index: the first manifest (Wasm modules have one platform).
            let digest = list
                .first()
                .and_then(|m| m.get("digest")?.as_str())
                .ok_or_else(|| FetchError::Refused(format!("oci://{reference}: empty index")))?
                .to_owned();
            manifest = serde_json::from_slice(
                &session
                    .get(&format!("manifests/{digest}"), MANIFESTS)
                    .await?,
            )
            .map_err(|e| FetchError::Refused(format!("oci://{reference}: manifest: {e}")))?;
        }
        let layers = manifest
            .get("layers")
            .and_then(|l| l.as_array())
            .cloned()
            .unwrap_or_default();
        let layer = |kinds: &[&str]| {
            layers.iter().find_map(|l| {
                let t = l.get("mediaType")?.as_str()?;
                kinds
                    .contains(&t)
                    .then(|| l.get("digest")?.as_str().map(str::to_owned))
                    .flatten()
            })
        };
        if let Some(digest) = layer(&WASM_LAYERS) {
            return session.blob(&digest).await;
        }
        if let Some(digest) = layer(&TAR_GZIP_LAYERS) {
            let tgz = session.blob(&digest).await?;
            return plugin_wasm_from_tar_gz(&tgz).map_err(|e| {
                FetchError::Refused(format!("oci://{reference}: layer {digest}: {e}"))
            });
        }
        Err(FetchError::Refused(format!(
            "oci://{reference}: no application/wasm layer and no tar+gzip layer holding \
             plugin.wasm"
        )))
    }
}

/// A parsed `oci://` reference.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct OciRef {
    pub(crate) registry: String,
    pub(crate) repository: String,
    pub(crate) tag: Option<String>,
    pub(crate) digest: Option<String>,
}

impl OciRef {
    pub(crate) fn parse(s: &str) -> Option<OciRef> {
        let (s, digest) = match s.split_once('@') {
            Some((s, d)) if d.starts_with("sha256:") => (s, Some(d.to_owned())),
            Some(_) => return None,
            None => (s, None),
        };
        let (registry, path) = s.split_once('/')?;
        let (repository, tag) = match path.rsplit_once(':') {
            Some((repo, tag)) if !tag.contains('/') => (repo, Some(tag.to_owned())),
            _ => (path, None),
        };
        if registry.is_empty() || repository.is_empty() {
            return None;
        }
        Some(OciRef {
            registry: registry.into(),
            repository: repository.into(),
            tag,
            digest,
        })
    }

    fn reference(&self) -> &str {
        self.digest
            .as_deref()
            .or(self.tag.as_deref())
            .unwrap_or("latest")
    }

    /// Plain HTTP for a registry on this machine (as Docker and containerd allow), HTTPS
    /// otherwise.
    fn base(&self) -> String {
        let host = self
            .registry
            .rsplit_once(':')
            .map_or(self.registry.as_str(), |(h, _)| h);
        let local = host == "localhost"
            || host == "[::1]"
            || host
                .parse::<std::net::Ipv4Addr>()
                .is_ok_and(|a| a.is_loopback());
        let scheme = if local { "http" } else { "https" };
        format!("{scheme}://{}/v2/{}", self.registry, self.repository)
    }
}

/// Requests to one repository, with the token a registry's challenge asked for.
struct Session<'a> {
    fetcher: &'a Fetcher,
    r: &'a OciRef,
    creds: Option<&'a Credentials>,
    authorization: Option<HeaderValue>,
}

impl Session<'_> {
    async fn get(&mut self, path: &str, accept: &str) -> Result<Bytes, FetchError> {
        let url = format!("{}/{path}", self.r.base());
        for attempt in 0..2 {
            let mut headers = HeaderMap::new();
            headers.insert(
                header::ACCEPT,
                HeaderValue::from_str(accept).map_err(retry)?,
            );
            if let Some(a) = &self.authorization {
                headers.insert(header::AUTHORIZATION, a.clone());
            }
            let (status, head, body) = self.fetcher.request(&url, &headers).await?;
            if status == StatusCode::UNAUTHORIZED && attempt == 0 {
                let challenge = head
                    .get(header::WWW_AUTHENTICATE)
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or("")
                    .to_owned();
                self.authorization = Some(self.authorize(&challenge).await?);
                continue;
            }
            if !status.is_success() {
                let hint = if status == StatusCode::UNAUTHORIZED || status == StatusCode::FORBIDDEN
                {
                    " (check imagePullSecret)"
                } else {
                    ""
                };
                return Err(retry(format!("GET {url}: {status}{hint}")));
            }
            return Ok(body);
        }
        Err(retry(format!("GET {url}: still unauthorized")))
    }

    /// The Authorization for a `WWW-Authenticate` challenge: Basic with the pull secret, or a
    /// Bearer token from the realm (anonymous, or with the pull secret).
    async fn authorize(&self, challenge: &str) -> Result<HeaderValue, FetchError> {
        let (scheme, params) = challenge.split_once(' ').unwrap_or((challenge, ""));
        if scheme.eq_ignore_ascii_case("basic") {
            let c = self
                .creds
                .ok_or_else(|| retry("the registry wants credentials: set imagePullSecret"))?;
            return HeaderValue::from_str(&c.basic()).map_err(retry);
        }
        let param = |name: &str| {
            params.split(',').find_map(|p| {
                let (k, v) = p.trim().split_once('=')?;
                (k == name).then(|| v.trim_matches('"').to_owned())
            })
        };
        let realm = param("realm").ok_or_else(|| retry(format!("bad challenge {challenge:?}")))?;
        let mut url = format!(
            "{realm}?scope={}",
            param("scope").unwrap_or_else(|| format!("repository:{}:pull", self.r.repository))
        );
        if let Some(s) = param("service") {
            url.push_str(&format!("&service={s}"));
        }
        let mut headers = HeaderMap::new();
        if let Some(c) = self.creds {
            headers.insert(
                header::AUTHORIZATION,
                HeaderValue::from_str(&c.basic()).map_err(retry)?,
            );
        }
        let (_, body) = self.fetcher.get(&url, &headers).await?;
        let v: serde_json::Value = serde_json::from_slice(&body).map_err(retry)?;
        let token = v
            .get("token")
            .or_else(|| v.get("access_token"))
            .and_then(|t| t.as_str())
            .ok_or_else(|| retry(format!("{realm}: no token in the answer")))?;
        HeaderValue::from_str(&format!("Bearer {token}")).map_err(retry)
    }

    /// A blob, checked against its digest.
    async fn blob(&mut self, digest: &str) -> Result<Vec<u8>, FetchError> {
        let body = self.get(&format!("blobs/{digest}"), "*/*").await?;
        let hex = digest.strip_prefix("sha256:").unwrap_or(digest);
        if sha256_hex(&body) != hex {
            return Err(retry(format!(
                "blob {digest}: content does not match its digest"
            )));
        }
        Ok(body.to_vec())
    }
}

/// A module file: a regular file (not a device or a FIFO, which a plugin's url could name to
/// make the data plane read forever) of at most [`MAX_BYTES`].
fn read_module_file(path: &str) -> Result<Vec<u8>, FetchError> {
    use std::io::Read as _;
    let file = std::fs::File::open(path).map_err(|e| retry(format!("{path}: {e}")))?;
    let meta = file.metadata().map_err(|e| retry(format!("{path}: {e}")))?;
    if !meta.is_file() {
        return Err(FetchError::Refused(format!("{path} is not a regular file")));
    }
    let mut bytes = vec![];
    file.take(MAX_BYTES as u64 + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| retry(format!("{path}: {e}")))?;
    if bytes.len() > MAX_BYTES {
        return Err(FetchError::Refused(format!(
            "{path} is larger than {} MiB",
            MAX_BYTES >> 20
        )));
    }
    Ok(bytes)
}

/// `plugin.wasm` from a tar+gzip layer (the compat image layout).
fn plugin_wasm_from_tar_gz(tgz: &[u8]) -> Result<Vec<u8>, String> {
    use std::io::Read as _;
    let mut archive = tar::Archive::new(flate2::read::GzDecoder::new(tgz));
    for entry in archive.entries().map_err(|e| e.to_string())? {
        let mut entry = entry.map_err(|e| e.to_string())?;
        let path = entry.path().map_err(|e| e.to_string())?.into_owned();
        if path.file_name().is_some_and(|n| n == "plugin.wasm") {
            let mut out = vec![];
            entry
                .by_ref()
                .take(MAX_BYTES as u64)
                .read_to_end(&mut out)
                .map_err(|e| e.to_string())?;
            return Ok(out);
        }
    }
    Err("no plugin.wasm in it".into())
}

fn verify(source: &ModuleSource, bytes: Vec<u8>) -> Result<Vec<u8>, FetchError> {
    if let Some(want) = &source.sha256 {
        let got = sha256_hex(&bytes);
        if &got != want {
            return Err(FetchError::Refused(format!(
                "{}: sha256 is {got}, spec.sha256 says {want}",
                source.url
            )));
        }
    }
    Ok(bytes)
}

/// Writes `file` whole or not at all (unless it already holds `contents`): other threads
/// and processes sharing the plugin cache read its files meanwhile (wasmtime its cache
/// configuration whenever an engine is built), and a plain write empties a file before
/// filling it.
pub(crate) fn write_atomically(file: &Path, contents: &[u8]) -> std::io::Result<()> {
    if std::fs::read(file).is_ok_and(|old| old == contents) {
        return Ok(());
    }
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let mut name = file.as_os_str().to_owned();
    name.push(format!(".{}.{n}.tmp", std::process::id()));
    let tmp = PathBuf::from(name);
    std::fs::write(&tmp, contents)
        .and_then(|()| std::fs::rename(&tmp, file))
        .inspect_err(|_| {
            let _ = std::fs::remove_file(&tmp);
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_file_rewritten_while_read_is_never_seen_partial() {
        let dir = std::env::temp_dir().join(format!("loom-fetch-race-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("wasmtime-cache.toml");
        let (a, b) = (
            "[cache]\ndirectory = \"/a\"\n",
            "[cache]\ndirectory = \"/bb\"\n",
        );
        write_atomically(&file, a.as_bytes()).unwrap();
        let stop = std::sync::atomic::AtomicBool::new(false);
        std::thread::scope(|s| {
            let reader = s.spawn(|| {
                let mut reads = 0;
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    let seen = std::fs::read_to_string(&file).unwrap();
                    assert!(seen == a || seen == b, "read {seen:?}");
                    reads += 1;
                }
                reads
            });
            for contents in [a, b] {
                s.spawn(|| {
                    for _ in 0..300 {
                        write_atomically(&file, contents.as_bytes()).unwrap();
                    }
                });
            }
            std::thread::sleep(Duration::from_millis(200));
            stop.store(true, std::sync::atomic::Ordering::Relaxed);
            assert!(reader.join().unwrap() > 0);
        });
        let left: Vec<_> = std::fs::read_dir(&dir).unwrap().flatten().collect();
        assert_eq!(left.len(), 1, "temporary files are renamed away: {left:?}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn oci_references_parse_with_tag_digest_and_port() {
        assert_eq!(
            OciRef::parse("registry.example.com/plugins/auth:v1.0"),
            Some(OciRef {
                registry: "registry.example.com".into(),
                repository: "plugins/auth".into(),
                tag: Some("v1.0".into()),
                digest: None,
            })
        );
        let r = OciRef::parse("127.0.0.1:5000/auth@sha256:ab").unwrap();
        assert_eq!(
            (r.registry.as_str(), r.repository.as_str()),
            ("127.0.0.1:5000", "auth")
        );
        assert_eq!(r.reference(), "sha256:ab");
        assert_eq!(r.base(), "http://127.0.0.1:5000/v2/auth");
        assert_eq!(OciRef::parse("r.io/p").unwrap().reference(), "latest");
        assert!(
            OciRef::parse("r.io/p")
                .unwrap()
                .base()
                .starts_with("https://")
        );
        assert_eq!(OciRef::parse("nohost"), None);
    }

    #[test]
    fn docker_config_credentials_by_registry() {
        let auth = base64::engine::general_purpose::STANDARD.encode("u:p:w");
        let json = format!(
            r#"{{"auths":{{"https://r.io/v1/":{{"auth":"{auth}"}},"other:5000":{{"username":"a","password":"b"}}}}}}"#
        );
        assert_eq!(
            Credentials::from_docker_config(json.as_bytes(), "r.io"),
            Some(Credentials {
                user: "u".into(),
                password: "p:w".into()
            })
        );
        assert_eq!(
            Credentials::from_docker_config(json.as_bytes(), "other:5000")
                .unwrap()
                .user,
            "a"
        );
        assert_eq!(Credentials::from_docker_config(json.as_bytes(), "x"), None);
    }

    #[test]
    fn only_regular_files_are_read_as_modules() {
        let why = read_module_file("/dev/zero").unwrap_err().to_string();
        assert!(why.contains("not a regular file"), "{why}");
        assert!(read_module_file("/nonexistent/p.wasm").is_err());
    }

    #[test]
    fn a_compat_layer_gives_its_plugin_wasm() {
        let mut tar = tar::Builder::new(vec![]);
        let mut h = tar::Header::new_gnu();
        h.set_size(4);
        h.set_cksum();
        tar.append_data(&mut h, "plugin.wasm", &b"\0asm"[..])
            .unwrap();
        let raw = tar.into_inner().unwrap();
        let mut gz = flate2::write::GzEncoder::new(vec![], flate2::Compression::fast());
        std::io::Write::write_all(&mut gz, &raw).unwrap();
        let tgz = gz.finish().unwrap();
        assert_eq!(plugin_wasm_from_tar_gz(&tgz).unwrap(), b"\0asm");
        assert!(plugin_wasm_from_tar_gz(b"nope").is_err());
    }
}
