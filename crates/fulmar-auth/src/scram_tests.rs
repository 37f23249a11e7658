//! SCRAM-SHA-256: the RFC 7677 §3 example, a client written from RFC 5802 §3, and the failures.

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use sha2::{Digest, Sha256};

use super::{ScramError, ScramServer};
use crate::hash::{hmac_sha256, salted_password, ScramCredentials};

const RFC_SALT: &str = "W22ZaJ0SNY7soEsUEjb6gQ==";
const RFC_CLIENT_FIRST: &[u8] = b"n,,n=user,r=rOprNGfwEbeRWgbNEkqO";
const RFC_SERVER_NONCE: &[u8] = b"%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0";
const RFC_SERVER_FIRST: &str =
    "r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096";
const RFC_CLIENT_FINAL: &str =
    "c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=";
const RFC_SERVER_FINAL: &str = "v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=";

fn pencil() -> ScramCredentials {
    let salt = B64.decode(RFC_SALT).expect("salt");
    ScramCredentials::derive(b"pencil", &salt, 4096)
}

fn lookup_user(name: &str) -> Option<ScramCredentials> {
    (name == "user").then(pencil)
}

/// The client side, from RFC 5802 §3: the client-final message and the expected ServerSignature.
fn client_final(password: &[u8], client_first_bare: &str, server_first: &str) -> (String, String) {
    let attribute = |key: &str| {
        server_first
            .split(',')
            .find_map(|a| a.strip_prefix(key))
            .expect("server-first attribute")
            .to_owned()
    };
    let (nonce, salt, iterations) = (attribute("r="), attribute("s="), attribute("i="));
    let salted = salted_password(
        password,
        &B64.decode(salt).expect("salt"),
        iterations.parse().expect("i"),
    );
    let client_key = hmac_sha256(&salted, b"Client Key");
    let stored_key: [u8; 32] = Sha256::digest(client_key).into();
    let without_proof = format!("c=biws,r={nonce}");
    let auth_message = format!("{client_first_bare},{server_first},{without_proof}");
    let signature = hmac_sha256(&stored_key, auth_message.as_bytes());
    let proof: Vec<u8> = client_key
        .iter()
        .zip(signature)
        .map(|(k, s)| k ^ s)
        .collect();
    let server_signature = hmac_sha256(
        &hmac_sha256(&salted, b"Server Key"),
        auth_message.as_bytes(),
    );
    (
        format!("{without_proof},p={}", B64.encode(proof)),
        format!("v={}", B64.encode(server_signature)),
    )
}

#[test]
fn rfc7677_example() {
    let (server, server_first) =
        ScramServer::start(RFC_CLIENT_FIRST, lookup_user, RFC_SERVER_NONCE).expect("start");
    assert_eq!(String::from_utf8_lossy(&server_first), RFC_SERVER_FIRST);
    assert_eq!(server.username(), "user");
    let (user, server_final) = server.finish(RFC_CLIENT_FINAL.as_bytes()).expect("finish");
    assert_eq!(user, "user");
    assert_eq!(String::from_utf8_lossy(&server_final), RFC_SERVER_FINAL);
}

#[test]
fn client_implementation_agrees_with_the_rfc_example() {
    let (message, signature) =
        client_final(b"pencil", "n=user,r=rOprNGfwEbeRWgbNEkqO", RFC_SERVER_FIRST);
    assert_eq!(message, RFC_CLIENT_FINAL);
    assert_eq!(signature, RFC_SERVER_FINAL);
}

#[test]
fn round_trip_with_random_nonce_and_stored_credentials() {
    let line = crate::hash_scram(b"s3cret", 4096);
    let file = crate::PasswordFile::parse(&format!("a,b=c:{line}\n"), "t").expect("file");
    let bare = "n=a=2Cb=3Dc,r=abcdef";
    let (server, first) = ScramServer::start(
        format!("n,,{bare}").as_bytes(),
        |u| file.scram_credentials(u),
        &super::generate_nonce(),
    )
    .expect("start");
    assert_eq!(server.username(), "a,b=c");
    let first = String::from_utf8(first).expect("utf8");
    assert!(first.starts_with("r=abcdef") && first.len() > "r=abcdef".len() + 20);
    let (final_message, signature) = client_final(b"s3cret", bare, &first);
    let (user, server_final) = server.finish(final_message.as_bytes()).expect("finish");
    assert_eq!(
        (user.as_str(), server_final),
        ("a,b=c", signature.into_bytes())
    );
}

#[test]
fn wrong_password_and_unknown_user_fail_alike() {
    let (server, first) =
        ScramServer::start(RFC_CLIENT_FIRST, lookup_user, RFC_SERVER_NONCE).expect("start");
    let (wrong, _) = client_final(
        b"pencil2",
        "n=user,r=rOprNGfwEbeRWgbNEkqO",
        &String::from_utf8_lossy(&first),
    );
    assert_eq!(
        server.finish(wrong.as_bytes()),
        Err(ScramError::InvalidProof)
    );

    // Unknown user: a normal-looking server-first, with a salt that is stable across attempts.
    let first_for = |name: &str| {
        let message = format!("n,,n={name},r=nonce1");
        let (server, first) =
            ScramServer::start(message.as_bytes(), lookup_user, b"srv").expect("start");
        (server, String::from_utf8(first).expect("utf8"))
    };
    let (ghost, first) = first_for("ghost");
    assert_eq!(first, first_for("ghost").1, "fake salt is stable");
    assert_ne!(
        first,
        first_for("ghost2").1,
        "fake salt depends on the user"
    );
    assert!(first.starts_with("r=nonce1srv,s=") && first.ends_with(",i=4096"));
    let (attempt, _) = client_final(b"pencil", "n=ghost,r=nonce1", &first);
    assert_eq!(
        ghost.finish(attempt.as_bytes()),
        Err(ScramError::InvalidProof)
    );
}

#[test]
fn malformed_and_unsupported_first_messages() {
    let start = |message: &[u8]| ScramServer::start(message, lookup_user, b"srv").map(|_| ());
    assert_eq!(
        start(b"p=tls-unique,,n=user,r=x"),
        Err(ScramError::ChannelBindingNotSupported)
    );
    assert_eq!(
        start(b"n,a=admin,n=user,r=x"),
        Err(ScramError::AuthzidNotSupported)
    );
    assert_eq!(
        start(b"n,,m=ext,n=user,r=x"),
        Err(ScramError::ExtensionNotSupported)
    );
    assert!(
        start(b"y,,n=user,r=x").is_ok(),
        "y: client could bind, thinks we cannot"
    );
    for bad in [
        &b"n,,n=user"[..],
        b"n,,r=x",
        b"n,,n=us=er,r=x",
        b"n,,n=,r=x",
        b"x,,n=user,r=x",
        b"n=user,r=x",
        b"\xff",
    ] {
        assert!(
            matches!(start(bad), Err(ScramError::Malformed(_))),
            "{:?}",
            String::from_utf8_lossy(bad)
        );
    }
    assert_eq!(
        ScramServer::start(RFC_CLIENT_FIRST, lookup_user, b"has,comma").map(|_| ()),
        Err(ScramError::InvalidServerNonce)
    );
}

#[test]
fn final_message_must_echo_binding_and_nonce() {
    let begin = || {
        ScramServer::start(RFC_CLIENT_FIRST, lookup_user, RFC_SERVER_NONCE)
            .expect("start")
            .0
    };
    let proof = ",p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=";
    let nonce = "r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0";
    let with = |binding: &str, nonce: &str| format!("c={binding},{nonce}{proof}");
    assert_eq!(
        begin().finish(with("eSws", nonce).as_bytes()),
        Err(ScramError::ChannelBindingMismatch)
    );
    assert_eq!(
        begin().finish(with("biws", "r=rOprNGfwEbeRWgbNEkqO").as_bytes()),
        Err(ScramError::NonceMismatch),
        "the client nonce alone is not enough"
    );
    assert!(matches!(
        begin().finish(b"c=biws"),
        Err(ScramError::Malformed(_))
    ));
    assert!(matches!(
        begin().finish(format!("c=biws,{nonce},p=AAAA").as_bytes()),
        Err(ScramError::Malformed(_))
    ));
    // Tampering with any signed attribute breaks the proof.
    let tampered = format!("c=biws,{nonce},x=extra{proof}");
    assert_eq!(
        begin().finish(tampered.as_bytes()),
        Err(ScramError::InvalidProof)
    );
}
