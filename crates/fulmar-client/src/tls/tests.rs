//! Real handshakes in process (a tokio-rustls server on a loopback port) with the test
//! certificates of `testdata/`: a server certificate for `broker.example` signed by `ca.pem`.

use std::path::PathBuf;
use std::sync::Arc;

use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use super::verifier::ChainOnlyVerifier;
use super::*;

fn data(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("src/tls/testdata")
        .join(name)
}

fn der(name: &str) -> CertificateDer<'static> {
    read_certs(&data(name), "test certificate")
        .expect("test certificate")
        .remove(0)
}

fn trusting(ca: &str) -> TlsOptions {
    TlsOptions {
        ca_file: Some(data(ca)),
        ..TlsOptions::default()
    }
}

/// A one-connection TLS echo server with the `broker.example` certificate; returns its port.
async fn echo_server(version: &'static rustls::SupportedProtocolVersion) -> u16 {
    let certs = read_certs(&data("server.pem"), "server certificate").expect("cert");
    let key: PrivateKeyDer<'static> = read_key(&data("server.key")).expect("key");
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[version])
        .expect("versions")
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .expect("server config");
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let port = listener.local_addr().expect("addr").port();
    tokio::spawn(async move {
        let Ok((tcp, _)) = listener.accept().await else {
            return;
        };
        // A failed handshake is what some tests expect; the client reports it.
        if let Ok(mut tls) = acceptor.accept(tcp).await {
            let mut byte = [0u8; 1];
            if tls.read_exact(&mut byte).await.is_ok() {
                let _ = tls.write_all(&byte).await;
                let _ = tls.flush().await;
            }
        }
    });
    port
}

async fn handshake(options: &TlsOptions, host: &str) -> Result<(), TlsFailure> {
    handshake_with(options, host, &rustls::version::TLS13).await
}

async fn handshake_with(
    options: &TlsOptions,
    host: &str,
    server_version: &'static rustls::SupportedProtocolVersion,
) -> Result<(), TlsFailure> {
    let config = TlsConfig::new(options).expect("config");
    let port = echo_server(server_version).await;
    let tcp = TcpStream::connect(("127.0.0.1", port))
        .await
        .expect("connect");
    let mut tls = config.handshake(host, tcp).await?;
    tls.write_all(b"x").await.expect("write");
    tls.flush().await.expect("flush");
    let mut byte = [0u8; 1];
    tls.read_exact(&mut byte).await.expect("echo");
    assert_eq!(&byte, b"x");
    Ok(())
}

#[tokio::test]
async fn handshake_succeeds_with_the_right_ca_and_name() {
    handshake(&trusting("ca.pem"), "broker.example")
        .await
        .expect("handshake");
}

#[tokio::test]
async fn a_name_not_in_the_certificate_is_a_name_mismatch() {
    let failure = handshake(&trusting("ca.pem"), "127.0.0.1")
        .await
        .expect_err("name mismatch");
    assert!(
        matches!(&failure, TlsFailure::NameMismatch(detail)
            if detail == "the certificate is for broker.example, not 127.0.0.1"),
        "{failure:?}"
    );
    assert!(failure
        .to_string()
        .starts_with("certificate verify failed: name mismatch"));
}

#[tokio::test]
async fn insecure_skips_only_the_name_check() {
    let insecure = TlsOptions {
        insecure: true,
        ..trusting("ca.pem")
    };
    handshake(&insecure, "127.0.0.1")
        .await
        .expect("insecure accepts the name mismatch");
    let untrusted = TlsOptions {
        insecure: true,
        ..trusting("other-ca.pem")
    };
    let failure = handshake(&untrusted, "127.0.0.1")
        .await
        .expect_err("insecure still checks the CA");
    assert!(
        matches!(failure, TlsFailure::UnknownCa { .. }),
        "{failure:?}"
    );
}

#[tokio::test]
async fn another_ca_is_an_unknown_ca_naming_the_ca_file() {
    let failure = handshake(&trusting("other-ca.pem"), "broker.example")
        .await
        .expect_err("unknown CA");
    let text = failure.to_string();
    assert!(
        text.starts_with("certificate verify failed: unknown CA"),
        "{text}"
    );
    assert!(text.contains("other-ca.pem"), "{text}");
}

#[tokio::test]
async fn the_built_in_roots_do_not_trust_a_private_ca() {
    let failure = handshake(&TlsOptions::default(), "broker.example")
        .await
        .expect_err("unknown CA");
    assert!(
        matches!(&failure, TlsFailure::UnknownCa { trusted } if trusted.contains("Mozilla")),
        "{failure:?}"
    );
}

#[tokio::test]
async fn a_pinned_version_the_broker_does_not_speak_fails() {
    let tls12 = TlsOptions {
        version: Some(TlsVersion::Tls12),
        ..trusting("ca.pem")
    };
    handshake_with(&tls12, "broker.example", &rustls::version::TLS12)
        .await
        .expect("TLS 1.2 against a TLS 1.2 server");
    let failure = handshake_with(&tls12, "broker.example", &rustls::version::TLS13)
        .await
        .expect_err("TLS 1.2 against a TLS 1.3-only server");
    assert!(matches!(failure, TlsFailure::Alert(_)), "{failure:?}");
}

#[test]
fn chain_only_verifier_forgives_the_name_and_nothing_else() {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let roots_of = |ca: &str| {
        let mut roots = RootCertStore::empty();
        roots.add(der(ca)).expect("root");
        roots
    };
    let server = der("server.pem");
    let wrong_name = ServerName::try_from("127.0.0.1").expect("name");
    let verifier =
        ChainOnlyVerifier::new(roots_of("ca.pem"), Arc::clone(&provider)).expect("verifier");
    use rustls::client::danger::ServerCertVerifier;
    verifier
        .verify_server_cert(&server, &[], &wrong_name, &[], UnixTime::now())
        .expect("a name mismatch is forgiven");
    let untrusting = ChainOnlyVerifier::new(roots_of("other-ca.pem"), provider).expect("verifier");
    let error = untrusting
        .verify_server_cert(&server, &[], &wrong_name, &[], UnixTime::now())
        .expect_err("an unknown CA is not");
    assert_eq!(
        error,
        rustls::Error::InvalidCertificate(rustls::CertificateError::UnknownIssuer)
    );
    // Far past the certificate's notAfter (2126): expiry is still checked.
    let late = UnixTime::since_unix_epoch(std::time::Duration::from_secs(200 * 365 * 86_400));
    let error = verifier
        .verify_server_cert(&server, &[], &wrong_name, &[], late)
        .expect_err("an expired certificate is not");
    assert!(
        matches!(error, rustls::Error::InvalidCertificate(ref e) if e.to_string().contains("expired")),
        "{error:?}"
    );
}

#[test]
fn unreadable_and_empty_files_are_named_in_the_error() {
    let missing = TlsConfig::new(&trusting("no-such-ca.pem")).expect_err("missing");
    let text = missing.to_string();
    assert!(text.starts_with("cannot read the CA file "), "{text}");
    assert!(text.contains("no-such-ca.pem"), "{text}");

    // A key file where a certificate should be: no certificate in it.
    let not_a_cert = TlsConfig::new(&trusting("server.key")).expect_err("no cert");
    assert!(
        matches!(
            not_a_cert,
            TlsError::Pem {
                problem: "no PEM certificate found",
                ..
            }
        ),
        "{not_a_cert:?}"
    );

    let no_key = TlsOptions {
        identity: Some(ClientIdentity {
            cert: data("server.pem"),
            key: data("ca.pem"),
        }),
        ..trusting("ca.pem")
    };
    let error = TlsConfig::new(&no_key).expect_err("no key");
    assert!(
        error.to_string().contains("no PEM private key found"),
        "{error}"
    );
}

#[test]
fn a_client_identity_loads() {
    let options = TlsOptions {
        identity: Some(ClientIdentity {
            cert: data("server.pem"),
            key: data("server.key"),
        }),
        ..trusting("ca.pem")
    };
    TlsConfig::new(&options).expect("certificate and matching key");
}

#[test]
fn a_key_of_another_certificate_is_named() {
    let options = TlsOptions {
        identity: Some(ClientIdentity {
            cert: data("ca.pem"),
            key: data("server.key"),
        }),
        ..trusting("ca.pem")
    };
    let error = TlsConfig::new(&options).expect_err("mismatch");
    assert!(matches!(error, TlsError::KeyMismatch { .. }), "{error:?}");
    assert!(error.to_string().contains("server.key"), "{error}");
}

#[tokio::test]
async fn a_plain_port_is_reported_as_not_tls() {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let port = listener.local_addr().expect("addr").port();
    // A plain MQTT broker reads the ClientHello as a malformed packet and closes.
    tokio::spawn(async move {
        if let Ok((mut tcp, _)) = listener.accept().await {
            let mut hello = [0u8; 5];
            let _ = tcp.read_exact(&mut hello).await;
        }
    });
    let config = TlsConfig::new(&trusting("ca.pem")).expect("config");
    let tcp = TcpStream::connect(("127.0.0.1", port))
        .await
        .expect("connect");
    let failure = config
        .handshake("broker.example", tcp)
        .await
        .expect_err("not TLS");
    assert!(
        failure.to_string().contains("is this a TLS port?"),
        "{failure}"
    );
}

#[test]
fn versions_accept_mosquitto_spellings() {
    assert_eq!("tlsv1.2".parse(), Ok(TlsVersion::Tls12));
    assert_eq!("TLSv1.3".parse(), Ok(TlsVersion::Tls13));
    assert_eq!("1.3".parse(), Ok(TlsVersion::Tls13));
    assert!("tlsv1.1".parse::<TlsVersion>().is_err());
}

#[test]
fn alerts_say_what_the_broker_wanted() {
    let required = TlsFailure::from_rustls(
        &rustls::Error::AlertReceived(rustls::AlertDescription::CertificateRequired),
        "x",
    );
    assert!(required
        .to_string()
        .contains("requires a client certificate"));
    let refused = TlsFailure::from_rustls(
        &rustls::Error::AlertReceived(rustls::AlertDescription::UnknownCA),
        "x",
    );
    assert!(refused
        .to_string()
        .contains("did not accept our client certificate"));
}
