//! `--tls-ca`, `--tls-cert`, `--tls-key`, `--token-file`: transport
//! security for every command (module `ballast_net`). Servers serve TLS
//! with their certificate, dial the others over TLS presenting it as their
//! cluster certificate, and, with the CA, require cluster certificates for
//! cluster operations; client commands dial over TLS and send the admin
//! token.

use std::path::PathBuf;

use anyhow::Result;
use ballast_net::{ClientSecurity, ServerSecurity};

/// Flags shared by every command.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct SecurityArgs {
    /// TLS: the CA (PEM) that coordinators' and agents' certificates chain
    /// to. Clients dial over TLS and verify against it; servers also
    /// verify cluster certificates against it.
    #[arg(long, global = true, env = "BALLAST_TLS_CA", value_name = "FILE")]
    pub tls_ca: Option<PathBuf>,
    /// TLS: this process's certificate chain (PEM). Servers serve it and
    /// present it as their cluster certificate when they dial.
    #[arg(long, global = true, env = "BALLAST_TLS_CERT", value_name = "FILE")]
    pub tls_cert: Option<PathBuf>,
    /// TLS: the private key (PEM) of --tls-cert.
    #[arg(long, global = true, env = "BALLAST_TLS_KEY", value_name = "FILE")]
    pub tls_key: Option<PathBuf>,
    /// A file holding the admin token, sent with admin requests (never
    /// printed).
    #[arg(long, global = true, env = "BALLAST_TOKEN_FILE", value_name = "FILE")]
    pub token_file: Option<PathBuf>,
}

impl SecurityArgs {
    /// Sets this process's client side (every connection it makes).
    pub fn apply_client(&self) -> Result<()> {
        let c = ClientSecurity::from_files(
            self.tls_ca.as_deref(),
            self.tls_cert.as_deref(),
            self.tls_key.as_deref(),
            self.token_file.as_deref(),
        )?;
        ballast_net::configure_client(c)?;
        Ok(())
    }

    /// The listener's TLS for a server (`None`: plaintext). The CA, when
    /// given, verifies cluster certificates.
    pub fn server(&self) -> Result<Option<ServerSecurity>> {
        Ok(ServerSecurity::from_files(
            self.tls_cert.as_deref(),
            self.tls_key.as_deref(),
            self.tls_ca.as_deref(),
        )?)
    }
}
