//! A TLS server on loopback, certificates of a certificate authority made in the test, and
//! kubeconfig files.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, date_time_ymd,
};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

/// A certificate authority made in the test.
pub struct TestCa {
    pem: String,
    issuer: Issuer<'static, KeyPair>,
}

impl std::fmt::Debug for TestCa {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TestCa").finish_non_exhaustive()
    }
}

impl TestCa {
    /// A new certificate authority (a new key), with `name` as its common name.
    ///
    /// # Panics
    /// When the key or certificate cannot be made.
    pub fn new(name: &str) -> TestCa {
        let mut params = CertificateParams::new(Vec::new()).expect("no names");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, name);
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let key = KeyPair::generate().expect("a CA key");
        let cert = params.self_signed(&key).expect("a CA certificate");
        TestCa {
            pem: cert.pem(),
            issuer: Issuer::new(params, key),
        }
    }

    /// Its certificate, in PEM.
    pub fn pem(&self) -> String {
        self.pem.clone()
    }

    /// A server certificate it signs for `names` (host names or IP addresses), valid from 1975
    /// to 4096.
    pub fn server_certificate(&self, names: &[&str]) -> ServerCertificate {
        self.sign(names, false)
    }

    /// A server certificate it signs for `names`, valid in 2020 only: expired.
    pub fn expired_server_certificate(&self, names: &[&str]) -> ServerCertificate {
        self.sign(names, true)
    }

    fn sign(&self, names: &[&str], expired: bool) -> ServerCertificate {
        let names: Vec<String> = names.iter().map(|n| (*n).to_owned()).collect();
        let mut params = CertificateParams::new(names.clone()).expect("valid names");
        params.distinguished_name.push(
            DnType::CommonName,
            names.first().cloned().unwrap_or_default(),
        );
        params.key_usages = vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyEncipherment,
        ];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        params.use_authority_key_identifier_extension = true;
        if expired {
            params.not_before = date_time_ymd(2020, 1, 1);
            params.not_after = date_time_ymd(2021, 1, 1);
        }
        let key = KeyPair::generate().expect("a server key");
        let cert = params
            .signed_by(&key, &self.issuer)
            .expect("a server certificate");
        ServerCertificate {
            chain: vec![cert.der().clone()],
            key: PrivatePkcs8KeyDer::from(key.serialize_der()).into(),
        }
    }
}

/// A server's certificate (with its chain) and key.
#[derive(Debug)]
pub struct ServerCertificate {
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
}

/// What the server answers after a TLS handshake: `/version` of a Kubernetes API server, to
/// whatever was asked.
const VERSION: &str = r#"{"major":"1","minor":"33","gitVersion":"v1.33.0","gitCommit":"0","gitTreeState":"clean","buildDate":"2025-01-01T00:00:00Z","goVersion":"go1.24","compiler":"gc","platform":"linux/amd64"}"#;

/// A TLS server on 127.0.0.1 (stopped when dropped). Each connection does a TLS handshake with
/// the server's certificate; when the client accepts it, its request is answered with `200`
/// and a Kubernetes API server's `/version`, whatever the path.
#[derive(Debug)]
pub struct TlsServer {
    addr: SocketAddr,
    connections: Arc<AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl TlsServer {
    /// Starts serving `certificate` on a free port of 127.0.0.1.
    ///
    /// # Panics
    /// When the port cannot be bound or the certificate does not fit its key.
    pub async fn start(certificate: ServerCertificate) -> TlsServer {
        let config = rustls::ServerConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .expect("TLS versions")
        .with_no_client_auth()
        .with_single_cert(certificate.chain, certificate.key)
        .expect("the certificate fits its key");
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("a loopback port");
        let addr = listener.local_addr().expect("its address");
        let connections = Arc::new(AtomicUsize::new(0));
        let counted = connections.clone();
        let task = tokio::spawn(async move {
            while let Ok((socket, _)) = listener.accept().await {
                counted.fetch_add(1, Ordering::SeqCst);
                let acceptor = acceptor.clone();
                tokio::spawn(async move {
                    // A client that refuses the certificate ends the handshake: nothing to do.
                    let Ok(mut tls) = acceptor.accept(socket).await else {
                        return;
                    };
                    let mut request = Vec::new();
                    let mut buf = [0u8; 4096];
                    while !request.windows(4).any(|w| w == b"\r\n\r\n") {
                        match tls.read(&mut buf).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => request.extend_from_slice(&buf[..n]),
                        }
                    }
                    let answer = format!(
                        "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{VERSION}",
                        VERSION.len()
                    );
                    let _ = tls.write_all(answer.as_bytes()).await;
                    let _ = tls.shutdown().await;
                });
            }
        });
        TlsServer {
            addr,
            connections,
            task,
        }
    }

    /// Its URL, `https://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("https://{}", self.addr)
    }

    /// How many connections it accepted so far.
    pub fn connections(&self) -> usize {
        self.connections.load(Ordering::SeqCst)
    }
}

impl Drop for TlsServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A kubeconfig file (removed when dropped) with one cluster at `server` whose
/// `certificate-authority-data` is `ca_pem`, a token user, and one context per name in
/// `contexts`, all of that cluster and user; the first is the current context.
///
/// # Panics
/// When `contexts` is empty, or the file cannot be written.
pub fn kubeconfig(server: &str, ca_pem: &str, contexts: &[&str]) -> tempfile::NamedTempFile {
    use std::io::Write as _;
    let current = contexts.first().expect("at least one context");
    let contexts: String = contexts
        .iter()
        .map(|c| format!("- name: {c}\n  context: {{cluster: c, user: u}}\n"))
        .collect();
    let mut file = tempfile::NamedTempFile::new().expect("a temporary file");
    write!(
        file,
        "apiVersion: v1\nkind: Config\nclusters:\n- name: c\n  cluster:\n    server: '{server}'\n    certificate-authority-data: {}\nusers:\n- name: u\n  user: {{token: t}}\ncontexts:\n{contexts}current-context: {current}\n",
        STANDARD.encode(ca_pem)
    )
    .expect("the kubeconfig is written");
    file
}
