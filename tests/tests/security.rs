//! Transport security on real processes: etcd serving only TLS with client
//! certificates, a coordinator and agents serving TLS with cluster
//! certificates from one CA (mutual TLS), an admin token on the
//! coordinator.
//! * an agent holding a certificate from another CA cannot register, and a
//!   client without a certificate can neither register a broker nor fetch
//!   as a follower;
//! * admin requests without the token are refused with PermissionDenied,
//!   from the API and from the command line; with it they work;
//! * plaintext is refused;
//! * records produced and consumed over TLS replicate between agents that
//!   present their cluster certificates to each other.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use ballast_proto::v1::admin_client::AdminClient;
use ballast_proto::v1::broker_control_client::BrokerControlClient;
use ballast_proto::v1::data_client::DataClient;
use ballast_proto::v1::{self as pb};
use ballast_tests::bin_path::ballast_bin;
use ballast_tests::cluster::{start_agent, start_coordinator_with};
use ballast_tests::etcd::{EtcdServer, EtcdTls};
use ballast_tests::process::eventually;
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
};
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity};

const WAIT: Duration = Duration::from_secs(60);
const TOKEN: &str = "test-admin-token-5f1c";

/// A CA, and certificates it signs for loopback (server and client use).
struct Pki {
    dir: tempfile::TempDir,
    ca_params: CertificateParams,
    ca_key: KeyPair,
}

impl Pki {
    fn new(name: &str) -> Pki {
        let dir = tempfile::tempdir().unwrap();
        let ca_key = KeyPair::generate().unwrap();
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params
            .distinguished_name
            .push(DnType::CommonName, format!("{name} CA"));
        let ca = ca_params.self_signed(&ca_key).unwrap();
        std::fs::write(dir.path().join("ca.pem"), ca.pem()).unwrap();
        Pki {
            dir,
            ca_params,
            ca_key,
        }
    }

    fn ca(&self) -> PathBuf {
        self.dir.path().join("ca.pem")
    }

    /// Writes `<name>.pem` and `<name>.key`; returns their paths.
    fn issue(&self, name: &str) -> (PathBuf, PathBuf) {
        self.issue_in(name, None)
    }

    /// [`Pki::issue`] with an organizational unit (a role) in the subject.
    fn issue_in(&self, name: &str, unit: Option<&str>) -> (PathBuf, PathBuf) {
        let key = KeyPair::generate().unwrap();
        let mut p =
            CertificateParams::new(vec!["127.0.0.1".to_owned(), "localhost".to_owned()]).unwrap();
        p.distinguished_name.push(DnType::CommonName, name);
        if let Some(u) = unit {
            p.distinguished_name.push(DnType::OrganizationalUnitName, u);
        }
        p.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
        let issuer = Issuer::from_params(&self.ca_params, &self.ca_key);
        let cert = p.signed_by(&key, &issuer).unwrap();
        let (c, k) = (
            self.dir.path().join(format!("{name}.pem")),
            self.dir.path().join(format!("{name}.key")),
        );
        std::fs::write(&c, cert.pem()).unwrap();
        std::fs::write(&k, key.serialize_pem()).unwrap();
        (c, k)
    }
}

fn s(p: &Path) -> String {
    p.to_string_lossy().into_owned()
}

/// A TLS channel verifying against `ca`, presenting `identity` if given.
fn tls_channel(address: &str, ca: &Path, identity: Option<(&Path, &Path)>) -> Channel {
    let mut tls =
        ClientTlsConfig::new().ca_certificate(Certificate::from_pem(std::fs::read(ca).unwrap()));
    if let Some((c, k)) = identity {
        tls = tls.identity(Identity::from_pem(
            std::fs::read(c).unwrap(),
            std::fs::read(k).unwrap(),
        ));
    }
    Endpoint::from_shared(format!("https://{address}"))
        .unwrap()
        .tls_config(tls)
        .unwrap()
        .connect_timeout(Duration::from_secs(2))
        .timeout(Duration::from_secs(10))
        .connect_lazy()
}

fn with_token<T>(msg: T) -> tonic::Request<T> {
    let mut r = tonic::Request::new(msg);
    r.metadata_mut()
        .insert("authorization", format!("Bearer {TOKEN}").parse().unwrap());
    r
}

/// Live brokers as the active coordinator at `address` sees them.
async fn live(address: &str, ca: &Path) -> Option<Vec<i32>> {
    let mut admin = AdminClient::new(tls_channel(address, ca, None));
    let r = admin
        .list_brokers(with_token(pb::ListBrokersRequest::default()))
        .await
        .ok()?
        .into_inner();
    let mut ids: Vec<i32> = r
        .brokers
        .iter()
        .filter(|b| !b.fenced)
        .map(|b| b.broker_id)
        .collect();
    ids.sort_unstable();
    Some(ids)
}

/// `ballast <args>` with the CA (and `token` when given): (success, output).
fn cli(args: &[&str], ca: &Path, token: Option<&Path>) -> (bool, String) {
    let mut cmd = Command::new(ballast_bin());
    cmd.args(args).arg("--tls-ca").arg(ca);
    if let Some(t) = token {
        cmd.arg("--token-file").arg(t);
    }
    let out = cmd.output().unwrap();
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_cluster_certificates_join_and_only_the_token_administers() {
    let pki = Pki::new("cluster");
    let rogue = Pki::new("rogue");
    let (coord_cert, coord_key) = pki.issue("coordinator");
    let token = pki.dir.path().join("admin.token");
    std::fs::write(&token, format!("{TOKEN}\n")).unwrap();
    // etcd itself serves only TLS and wants client certificates.
    let (etcd_cert, etcd_key) = pki.issue("etcd");
    let etcd = EtcdServer::start_tls(&EtcdTls {
        cert: etcd_cert,
        key: etcd_key,
        client_ca: pki.ca(),
    })
    .unwrap();
    assert!(etcd.endpoint().starts_with("https://"));
    let coordinator = start_coordinator_with(
        &etcd.endpoints(),
        "secure",
        &[
            "--etcd-ca",
            &s(&pki.ca()),
            "--etcd-cert",
            &s(&coord_cert),
            "--etcd-key",
            &s(&coord_key),
            "--tls-cert",
            &s(&coord_cert),
            "--tls-key",
            &s(&coord_key),
            "--tls-ca",
            &s(&pki.ca()),
            "--admin-token-file",
            &s(&token),
            "--admin-cert-role",
            "admin",
        ],
    );
    let address = coordinator.address().to_owned();
    let ca = pki.ca();

    // Plaintext is refused: the handshake fails, no answer comes.
    let mut plain = AdminClient::new(
        Endpoint::from_shared(format!("http://{address}"))
            .unwrap()
            .connect_timeout(Duration::from_secs(2))
            .timeout(Duration::from_secs(5))
            .connect_lazy(),
    );
    let e = plain
        .list_brokers(with_token(pb::ListBrokersRequest::default()))
        .await
        .unwrap_err();
    assert_ne!(e.code(), tonic::Code::Ok);
    assert_ne!(e.code(), tonic::Code::PermissionDenied, "{e}");

    // Without the token: PermissionDenied.
    let admin = AdminClient::new(tls_channel(&address, &ca, None));
    let e = eventually("the coordinator answers over TLS", WAIT, || {
        let mut admin = admin.clone();
        async move {
            match admin.list_brokers(pb::ListBrokersRequest::default()).await {
                Err(e) if e.code() == tonic::Code::PermissionDenied => Some(e),
                _ => None,
            }
        }
    })
    .await;
    assert!(e.message().contains("token"), "{e}");
    eventually("active", WAIT, || live(&address, &ca)).await;

    // Two agents with cluster certificates, one with a rogue CA's.
    let dirs = tempfile::tempdir().unwrap();
    let agent = |id: i32, pki: &Pki| {
        let (c, k) = pki.issue(&format!("agent-{id}"));
        start_agent(
            &address,
            id,
            &dirs.path().join(format!("b{id}")),
            &[
                "--tls-cert",
                &s(&c),
                "--tls-key",
                &s(&k),
                "--tls-ca",
                &s(&ca),
            ],
        )
    };
    let one = agent(1, &pki);
    let _three = agent(3, &pki);
    let two = agent(2, &rogue);
    eventually("brokers 1 and 3 live", WAIT, || async {
        (live(&address, &ca).await? == [1, 3]).then_some(())
    })
    .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(
        live(&address, &ca).await.unwrap(),
        [1, 3],
        "the rogue agent never joins"
    );
    assert!(
        two.log().contains("register"),
        "the rogue agent's refusals are logged:\n{}",
        two.log()
    );

    // No certificate at all: no registration, no follower fetch.
    let mut control = BrokerControlClient::new(tls_channel(&address, &ca, None));
    let e = control
        .register(pb::RegisterBrokerRequest {
            broker_id: 9,
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), tonic::Code::PermissionDenied, "{e}");
    let mut data = DataClient::new(tls_channel(one.address(), &ca, None));
    let e = data
        .fetch(pb::FetchRequest {
            replica_id: 3,
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), tonic::Code::PermissionDenied, "{e}");

    // Instead of the token: a certificate in the admin role (OU=admin), not
    // just any cluster certificate.
    let (op_cert, op_key) = pki.issue_in("operator", Some("admin"));
    let mut operator = AdminClient::new(tls_channel(&address, &ca, Some((&op_cert, &op_key))));
    operator
        .list_brokers(pb::ListBrokersRequest::default())
        .await
        .unwrap();
    let (member_cert, member_key) = pki.issue("member");
    let mut member = AdminClient::new(tls_channel(
        &address,
        &ca,
        Some((&member_cert, &member_key)),
    ));
    let e = member
        .list_brokers(pb::ListBrokersRequest::default())
        .await
        .unwrap_err();
    assert_eq!(e.code(), tonic::Code::PermissionDenied, "{e}");

    // The command line: refused without the token, served with it.
    let create = [
        "topics",
        "create",
        "sealed",
        "--coordinator",
        &address,
        "--replica-assignment",
        "1:3",
    ];
    let (ok, out) = cli(&create, &ca, None);
    assert!(!ok && out.contains("token"), "{out}");
    let (ok, out) = cli(&create, &ca, Some(&token));
    assert!(ok, "{out}");

    // Records over TLS, replicated from 1 to 3 under mutual TLS (acks=all
    // needs the follower's fetch).
    let mut child = Command::new(ballast_bin())
        .args([
            "produce",
            "--topic",
            "sealed",
            "--acks",
            "all",
            "--bootstrap",
            one.address(),
            "--tls-ca",
            &s(&ca),
        ])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    {
        use std::io::Write;
        let mut stdin = child.stdin.take().unwrap();
        stdin.write_all(b"alpha\nbeta\n").unwrap();
    }
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let (ok, out) = cli(
        &[
            "consume",
            "--topic",
            "sealed",
            "--from-beginning",
            "--max-messages",
            "2",
            "--bootstrap",
            one.address(),
        ],
        &ca,
        None,
    );
    assert!(ok, "{out}");
    // stdout (the records) first, then stderr's summary.
    assert_eq!(
        out.lines().take(2).collect::<Vec<_>>(),
        ["alpha", "beta"],
        "{out}"
    );

    // Secrets never show: not the token, not a private key, in any
    // process's log (after refused and accepted admin calls alike) or in
    // `config print` given the files that hold them.
    let key_line = |path: &Path| -> String {
        let pem = std::fs::read_to_string(path).unwrap();
        let body: Vec<&str> = pem.lines().filter(|l| !l.starts_with("-----")).collect();
        body[body.len() / 2].to_owned()
    };
    let secrets = [TOKEN.to_owned(), key_line(&coord_key), key_line(&op_key)];
    let out = Command::new(ballast_bin())
        .args(["config", "print", "--role", "coordinator", "--"])
        .args(["--etcd", "https://127.0.0.1:2379", "--etcd-ca"])
        .arg(pki.ca())
        .arg("--etcd-cert")
        .arg(&coord_cert)
        .arg("--admin-token-file")
        .arg(&token)
        .arg("--tls-key")
        .arg(&coord_key)
        .arg("--tls-cert")
        .arg(&coord_cert)
        .arg("--etcd-key")
        .arg(&coord_key)
        .output()
        .unwrap();
    let printed = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{printed}");
    assert!(printed.contains("admin-token-file"), "{printed}");
    for (name, text) in [
        ("coordinator log", coordinator.log()),
        ("agent 1 log", one.log()),
        ("agent 2 log", two.log()),
        ("agent 3 log", _three.log()),
        ("config print", printed),
    ] {
        for secret in &secrets {
            assert!(
                !text.contains(secret.as_str()),
                "{name} shows a secret ({secret:.8}...)"
            );
        }
    }
}
