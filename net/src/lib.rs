//! Transport security for every gRPC connection Ballast makes or accepts.
//!
//! * **TLS** (rustls through tonic): a server given a certificate and key
//!   serves TLS only (a plaintext client fails its handshake); a process
//!   given a CA dials every coordinator and agent over TLS and verifies
//!   them against that CA.
//! * **Cluster certificates** (mutual TLS): a server given a client CA asks
//!   every client for a certificate and verifies the ones presented; the
//!   operations reserved to cluster members (an agent registering, a
//!   follower fetching, the coordinator pushing assignments) then require
//!   one ([`require_cluster_cert`]). Clients without a certificate still
//!   connect, for produce, fetch and admin requests.
//! * **Admin tokens**: a coordinator given a token refuses admin operations
//!   without `authorization: Bearer <token>` ([`check_token`]); clients
//!   configured with the token send it ([`authorize`]). Tokens are read
//!   from files and never printed.
//!
//! The client side is process-wide ([`configure_client`], once, at start):
//! the coordinator, the agents and the command line each make connections
//! from many places, and all of them must use the same settings.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use tonic::transport::{Certificate, ClientTlsConfig, Endpoint, Identity, ServerTlsConfig};
use tonic::{Request, Status};

/// Why a security setting cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum NetError {
    /// A file could not be read.
    #[error("cannot read {what} {}: {source}", path.display())]
    Read {
        /// Which setting ("--tls-cert", ...).
        what: &'static str,
        /// The file.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
    /// A setting is incomplete or inconsistent.
    #[error("{0}")]
    Invalid(String),
    /// The client side was configured twice.
    #[error("the client security settings are already set")]
    AlreadyConfigured,
    /// tonic refused a TLS setting (a malformed certificate or key).
    #[error("TLS: {0}")]
    Tls(#[from] tonic::transport::Error),
}

fn read(what: &'static str, path: &Path) -> Result<Vec<u8>, NetError> {
    std::fs::read(path).map_err(|source| NetError::Read {
        what,
        path: path.to_owned(),
        source,
    })
}

/// Reads a bearer token from `path` (surrounding whitespace trimmed; an
/// empty file is refused).
pub fn read_token(what: &'static str, path: &Path) -> Result<String, NetError> {
    let bytes = read(what, path)?;
    let token = String::from_utf8(bytes)
        .map_err(|_| NetError::Invalid(format!("{what} {}: not UTF-8", path.display())))?
        .trim()
        .to_owned();
    if token.is_empty() {
        return Err(NetError::Invalid(format!(
            "{what} {}: the file is empty",
            path.display()
        )));
    }
    Ok(token)
}

/// What a process uses when it dials a coordinator or an agent.
#[derive(Clone, Default)]
pub struct ClientSecurity {
    /// PEM CA that server certificates must chain to; `Some` means TLS.
    pub ca: Option<Vec<u8>>,
    /// PEM certificate and key presented to servers (a cluster
    /// certificate, for agents and coordinators).
    pub identity: Option<(Vec<u8>, Vec<u8>)>,
    /// Sent as `authorization: Bearer <token>` with admin requests.
    pub token: Option<String>,
}

impl std::fmt::Debug for ClientSecurity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the key or the token.
        f.debug_struct("ClientSecurity")
            .field("tls", &self.ca.is_some())
            .field("identity", &self.identity.is_some())
            .field("token", &self.token.as_ref().map(|_| "<redacted>"))
            .finish()
    }
}

impl ClientSecurity {
    /// From files: `ca` turns TLS on; `cert` and `key` go together.
    pub fn from_files(
        ca: Option<&Path>,
        cert: Option<&Path>,
        key: Option<&Path>,
        token: Option<&Path>,
    ) -> Result<ClientSecurity, NetError> {
        let identity = match (cert, key) {
            (Some(c), Some(k)) => Some((read("--tls-cert", c)?, read("--tls-key", k)?)),
            (None, None) => None,
            _ => {
                return Err(NetError::Invalid(
                    "--tls-cert and --tls-key go together".into(),
                ));
            }
        };
        if identity.is_some() && ca.is_none() {
            return Err(NetError::Invalid(
                "--tls-cert needs --tls-ca (the CA that servers' certificates chain to)".into(),
            ));
        }
        Ok(ClientSecurity {
            ca: ca.map(|p| read("--tls-ca", p)).transpose()?,
            identity,
            token: token.map(|p| read_token("--token-file", p)).transpose()?,
        })
    }
}

static CLIENT: OnceLock<ClientSecurity> = OnceLock::new();

/// Sets this process's client settings (once; later calls fail).
pub fn configure_client(security: ClientSecurity) -> Result<(), NetError> {
    if let Some((cert, key)) = &security.identity {
        // Refuse a malformed identity now rather than at the first dial.
        let _ = ClientTlsConfig::new().identity(Identity::from_pem(cert, key));
    }
    CLIENT
        .set(security)
        .map_err(|_| NetError::AlreadyConfigured)
}

fn client() -> Option<&'static ClientSecurity> {
    CLIENT.get()
}

/// Whether this process dials over TLS.
pub fn client_tls() -> bool {
    client().is_some_and(|c| c.ca.is_some())
}

/// The URI for `host:port`: `https://` when this process dials over TLS.
pub fn uri(address: &str) -> String {
    if client_tls() {
        format!("https://{address}")
    } else {
        format!("http://{address}")
    }
}

/// `endpoint` with this process's TLS settings (unchanged without TLS).
pub fn secure(endpoint: Endpoint) -> Result<Endpoint, NetError> {
    let Some(c) = client() else {
        return Ok(endpoint);
    };
    let Some(ca) = &c.ca else {
        return Ok(endpoint);
    };
    let mut tls = ClientTlsConfig::new().ca_certificate(Certificate::from_pem(ca));
    if let Some((cert, key)) = &c.identity {
        tls = tls.identity(Identity::from_pem(cert, key));
    }
    Ok(endpoint.tls_config(tls)?)
}

/// The endpoint for `host:port` with this process's settings.
pub fn endpoint(address: &str) -> Result<Endpoint, NetError> {
    let e = Endpoint::from_shared(uri(address))
        .map_err(|e| NetError::Invalid(format!("{address}: not host:port ({e})")))?;
    secure(e)
}

/// Adds this process's admin token to `request` (nothing without one).
pub fn authorize<T>(request: &mut Request<T>) {
    if let Some(token) = client().and_then(|c| c.token.as_deref())
        && let Ok(v) = format!("Bearer {token}").parse()
    {
        request.metadata_mut().insert("authorization", v);
    }
}

/// What a server presents and whom it admits.
#[derive(Clone, PartialEq, Eq)]
pub struct ServerSecurity {
    /// PEM certificate chain and key.
    pub cert: Vec<u8>,
    /// The key.
    pub key: Vec<u8>,
    /// PEM CA of cluster certificates: clients are asked for one and the
    /// ones presented are verified (clients without one still connect).
    pub client_ca: Option<Vec<u8>>,
}

impl std::fmt::Debug for ServerSecurity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerSecurity")
            .field("client_ca", &self.client_ca.is_some())
            .finish_non_exhaustive()
    }
}

impl ServerSecurity {
    /// From files; `None` without a certificate. A key without a
    /// certificate (or the reverse), or a client CA without either, is
    /// refused.
    pub fn from_files(
        cert: Option<&Path>,
        key: Option<&Path>,
        client_ca: Option<&Path>,
    ) -> Result<Option<ServerSecurity>, NetError> {
        match (cert, key) {
            (Some(c), Some(k)) => Ok(Some(ServerSecurity {
                cert: read("--tls-cert", c)?,
                key: read("--tls-key", k)?,
                client_ca: client_ca.map(|p| read("--tls-ca", p)).transpose()?,
            })),
            (None, None) if client_ca.is_none() => Ok(None),
            (None, None) => Err(NetError::Invalid(
                "a server given --tls-ca also needs --tls-cert and --tls-key".into(),
            )),
            _ => Err(NetError::Invalid(
                "--tls-cert and --tls-key go together".into(),
            )),
        }
    }

    /// The tonic server settings.
    pub fn config(&self) -> ServerTlsConfig {
        let mut c = ServerTlsConfig::new().identity(Identity::from_pem(&self.cert, &self.key));
        if let Some(ca) = &self.client_ca {
            c = c
                .client_ca_root(Certificate::from_pem(ca))
                .client_auth_optional(true);
        }
        c
    }
}

/// Refuses `request` unless its client presented a certificate the server
/// verified against its client CA (`what` names the operation). Admits
/// everyone when `required` is false (a server without a client CA).
pub fn require_cluster_cert<T>(
    request: &Request<T>,
    required: bool,
    what: &str,
) -> Result<(), Status> {
    if !required || request.peer_certs().is_some_and(|c| !c.is_empty()) {
        return Ok(());
    }
    Err(Status::permission_denied(format!(
        "{what} needs a cluster certificate (mutual TLS)"
    )))
}

/// Whether the client presented a (verified) certificate whose subject
/// names `role` as an organizational unit (`OU=<role>`).
pub fn cert_has_role<T>(request: &Request<T>, role: &str) -> bool {
    let Some(certs) = request.peer_certs() else {
        return false;
    };
    let Some(leaf) = certs.first() else {
        return false;
    };
    let Ok((_, cert)) = x509_parser::parse_x509_certificate(leaf.as_ref()) else {
        return false;
    };
    cert.subject()
        .iter_organizational_unit()
        .any(|ou| ou.as_str().is_ok_and(|v| v == role))
}

/// Who may run admin operations: holders of the token, and clients whose
/// certificate carries the role (`OU=<role>`). Neither set: everyone.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct AdminAuth {
    /// The bearer token.
    pub token: Option<String>,
    /// The organizational unit that makes a client certificate an admin's.
    pub cert_role: Option<String>,
}

impl std::fmt::Debug for AdminAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AdminAuth")
            .field("token", &self.token.as_ref().map(|_| "<redacted>"))
            .field("cert_role", &self.cert_role)
            .finish()
    }
}

/// Refuses an admin `request` that neither carries the token nor comes
/// with a certificate in the admin role (when either is required).
pub fn check_admin<T>(request: &Request<T>, auth: &AdminAuth) -> Result<(), Status> {
    if auth.token.is_none() && auth.cert_role.is_none() {
        return Ok(());
    }
    if let Some(role) = &auth.cert_role
        && cert_has_role(request, role)
    {
        return Ok(());
    }
    if auth.token.is_some() && check_token(request, auth.token.as_deref()).is_ok() {
        return Ok(());
    }
    Err(Status::permission_denied(match &auth.cert_role {
        Some(role) => format!(
            "admin operations need a valid token (--token-file) or a client certificate with OU={role}"
        ),
        None => "admin operations need a valid token (--token-file)".to_owned(),
    }))
}

/// Refuses `request` unless it carries `authorization: Bearer <expected>`;
/// admits everything when `expected` is `None`. The comparison takes the
/// same time wherever the tokens differ.
pub fn check_token<T>(request: &Request<T>, expected: Option<&str>) -> Result<(), Status> {
    let Some(expected) = expected else {
        return Ok(());
    };
    let got = request
        .metadata()
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or("");
    let (a, b) = (got.as_bytes(), expected.as_bytes());
    let mut diff = a.len() ^ b.len();
    for i in 0..a.len().max(b.len()) {
        diff |= usize::from(a.get(i).copied().unwrap_or(0) ^ b.get(i).copied().unwrap_or(0));
    }
    if diff == 0 {
        Ok(())
    } else {
        Err(Status::permission_denied(
            "admin operations need a valid token (--token-file)",
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_checked_exactly() {
        let with = |v: &str| {
            let mut r = Request::new(());
            r.metadata_mut().insert("authorization", v.parse().unwrap());
            r
        };
        assert!(check_token(&Request::new(()), None).is_ok());
        assert!(check_token(&with("Bearer s3cret"), Some("s3cret")).is_ok());
        for bad in [
            "Bearer s3cre",
            "Bearer s3cret2",
            "bearer s3cret",
            "s3cret",
            "Bearer ",
        ] {
            let e = check_token(&with(bad), Some("s3cret")).unwrap_err();
            assert_eq!(e.code(), tonic::Code::PermissionDenied, "{bad}");
        }
        assert!(check_token(&Request::new(()), Some("s3cret")).is_err());
    }

    #[test]
    fn settings_are_refused_by_name_and_never_printed() {
        let dir = std::env::temp_dir().join(format!("ballast-net-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let token = dir.join("token");
        std::fs::write(&token, "  s3cret\n").unwrap();
        assert_eq!(read_token("--token-file", &token).unwrap(), "s3cret");
        std::fs::write(&token, "\n").unwrap();
        assert!(read_token("--token-file", &token).is_err());
        let missing = dir.join("missing.pem");
        let e = ServerSecurity::from_files(Some(&missing), Some(&missing), None).unwrap_err();
        assert!(e.to_string().contains("--tls-cert"), "{e}");
        assert!(ServerSecurity::from_files(Some(&missing), None, None).is_err());
        assert!(ServerSecurity::from_files(None, None, Some(&missing)).is_err());
        assert!(
            ServerSecurity::from_files(None, None, None)
                .unwrap()
                .is_none()
        );
        assert!(ClientSecurity::from_files(None, Some(&missing), None, None).is_err());
        let c = ClientSecurity {
            ca: Some(b"ca".to_vec()),
            identity: Some((b"cert".to_vec(), b"KEY".to_vec())),
            token: Some("s3cret".into()),
        };
        let shown = format!("{c:?}");
        assert!(
            !shown.contains("s3cret") && !shown.contains("KEY"),
            "{shown}"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
