//! Password files: every hash format (incl. lines written by mosquitto_passwd 2.0.11), errors,
//! rewriting, and the unknown-user path.

use std::time::{Duration, Instant};

use super::PasswordFile;
use crate::{hash_password, hash_scram};

/// Written by `mosquitto_passwd -b` (mosquitto 2.0.11): `$7$` PBKDF2-SHA512, and `$6$` from
/// `-H sha512`. Passwords: secret123, `p@ss:word`, hunter2, pw, and the empty password.
const MOSQUITTO_FILE: &str = "\
alice:$7$101$/WSBBeWkVJy91WBk$EZW2T2Fi6vK1yxZ1fvoGbwVTDmOi1HrJnEvgP2cM8zgm6yiYP2oEom4gTdiltX5Qkk7F1GOapLHq9hMgiXXnvw==
bob:$7$101$fohv/s4KQbX4zpyO$jnSzvS/iyNBgl/WwuiEIudW97L/hIkjc+eM6FBJmzH3/hXCICA9FSeYcdCKcQzssE4qyDkKU8wySKlJdtyBwKA==
carol:$6$JnbfuGMfRIqz5O27$rkuTBOXpgmA6OP6wXt/iv9XqYCL75QBjhProDPSnyfFTsj059wGCRsHoLCyWUm7RWc47lEdug0bM2M7gG9UAuw==
dave smith:$7$101$CuNFfQV+Yftas58e$IlQ9J75WDkMdbmPaxlBYEmiEXS9NyXzfsiz9rP/Ufyp325P0LCFD/tf9qkr6hsXMkGL2N3oS8cZn9g64oOlptg==
eve:$7$101$tmbG4j2639E1Onbp$2uGF7SdSHM0r+RbtH5WdMPvnuPjya1YJskoawsdqmESG6d1W0xZGrA7K3gSBrKClVmvsPnc9u1BG4cae4enLPw==
";

/// The RFC 7677 §3 credential (user "user", password "pencil") in the SCRAM line format.
fn rfc7677_line() -> String {
    use base64::Engine as _;
    let salt = base64::engine::general_purpose::STANDARD
        .decode("W22ZaJ0SNY7soEsUEjb6gQ==")
        .expect("salt");
    format!(
        "user:{}",
        crate::ScramCredentials::derive(b"pencil", &salt, 4096).to_phc()
    )
}

fn parse(text: &str) -> PasswordFile {
    PasswordFile::parse(text, "passwd").unwrap_or_else(|e| panic!("{e}"))
}

#[test]
fn mosquitto_passwd_lines_verify() {
    let file = parse(MOSQUITTO_FILE);
    assert_eq!(
        file.users().collect::<Vec<_>>(),
        ["alice", "bob", "carol", "dave smith", "eve"]
    );
    assert!(file.verify("alice", b"secret123"));
    assert!(!file.verify("alice", b"secret124"));
    assert!(file.verify("bob", b"p@ss:word"));
    assert!(file.verify("carol", b"hunter2"), "$6$ salted SHA-512");
    assert!(!file.verify("carol", b"hunter3"));
    assert!(file.verify("dave smith", b"pw"));
    assert!(file.verify("eve", b""));
    assert!(!file.verify("eve", b" "));
    assert!(!file.verify("mallory", b"secret123"));
    assert_eq!(
        file.scram_credentials("alice"),
        None,
        "PBKDF2-SHA512 cannot serve SCRAM"
    );
}

#[test]
fn argon2id_round_trip() {
    let hash = hash_password(b"correct horse");
    assert!(
        hash.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"),
        "{hash}"
    );
    let file = parse(&format!("# admins\nroot:{hash}\n"));
    assert!(file.verify("root", b"correct horse"));
    assert!(!file.verify("root", b"correct horse "));
    assert_ne!(hash, hash_password(b"correct horse"), "random salt");
}

#[test]
fn scram_lines_verify_plain_passwords_and_give_credentials() {
    let file = parse(&format!(
        "{}\nnew:{}\n",
        rfc7677_line(),
        hash_scram(b"pw", 4096)
    ));
    assert!(file.verify("user", b"pencil"));
    assert!(!file.verify("user", b"pencil!"));
    assert!(file.verify("new", b"pw"));
    let creds = file.scram_credentials("user").expect("scram");
    assert_eq!((creds.iterations, creds.salt.len()), (4096, 16));
    assert!(rfc7677_line().starts_with("user:$scram-sha-256$i=4096,s=W22ZaJ0SNY7soEsUEjb6gQ==$"));
    assert_eq!(file.scram_credentials("nobody"), None);
}

#[test]
fn errors_name_the_line_and_never_show_the_hash() {
    let secret = "c2VjcmV0c2VjcmV0c2VjcmV0";
    for (text, line, words) in [
        ("# ok\nalice\n", 2, "no `:`"),
        (":$6$abcd$efgh\n", 1, "empty username"),
        (
            &format!("a:$7$x${secret}${secret}\n") as &str,
            1,
            "iteration count",
        ),
        (&format!("a:$7$101${secret}${secret}\n"), 1, "64 bytes"),
        (&format!("a:$6$!!!${secret}\n"), 1, "not valid base64"),
        ("a:plaintext\n", 1, "unknown password hash format"),
        (
            "a:$argon2i$v=19$m=16,t=2,p=1$c2FsdHNhbHQ$aGFzaGhhc2hoYXNoaGFzaA\n",
            1,
            "only argon2id",
        ),
        (
            "a:$argon2id$v=19$m=16,t=2,p=1$c2FsdHNhbHQ$\n",
            1,
            "argon2id",
        ),
        (
            &format!("a:$scram-sha-256$i=0,s={secret}$x:y\n"),
            1,
            "at least 1",
        ),
        (
            &format!("a:$scram-sha-256$i=4096,s={secret}${secret}\n"),
            1,
            "ServerKey",
        ),
        (
            &format!("{}\n\n{}\n", rfc7677_line(), rfc7677_line()),
            3,
            "already defined on line 1",
        ),
    ] {
        match PasswordFile::parse(text, "pw.txt") {
            Ok(_) => panic!("{text:?} parsed"),
            Err(e) => {
                let shown = e.to_string();
                assert_eq!(e.line(), Some(line), "{shown}");
                assert!(
                    shown.starts_with(&format!("pw.txt:{line}: ")) && shown.contains(words),
                    "{shown}"
                );
                assert!(!shown.contains(secret), "hash leaked: {shown}");
            }
        }
    }
}

#[test]
fn rewriting_keeps_comments_order_and_untouched_lines() {
    let original = format!("# migrated from mosquitto\n\n{MOSQUITTO_FILE}# trailing comment\n");
    let mut file = parse(&original);
    assert_eq!(file.to_text(), original);
    file.set("bob", &hash_scram(b"new", 4096)).expect("set");
    file.set("zoe", &hash_scram(b"zz", 4096)).expect("set");
    assert!(file.remove("carol"));
    assert!(!file.remove("carol"));
    let text = file.to_text();
    let reparsed = parse(&text);
    assert_eq!(
        reparsed.users().collect::<Vec<_>>(),
        ["alice", "bob", "dave smith", "eve", "zoe"]
    );
    assert!(
        reparsed.verify("bob", b"new")
            && reparsed.verify("zoe", b"zz")
            && reparsed.verify("alice", b"secret123")
    );
    let alice_line = MOSQUITTO_FILE.lines().next().expect("line");
    assert!(
        text.starts_with("# migrated from mosquitto\n\n")
            && text.contains(&format!("\n{alice_line}\n"))
    );
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines[lines.len() - 2], "# trailing comment");
    assert!(lines[lines.len() - 1].starts_with("zoe:$scram-sha-256$i=4096,"));
    assert!(
        file.verify("dave smith", b"pw"),
        "index still right after a removal"
    );
    for bad in ["", "a:b", "#x", "a\nb", "  "] {
        assert!(file.set(bad, &hash_scram(b"x", 1)).is_err(), "{bad:?}");
    }
    assert!(file.set("ok", "not a hash").is_err());
}

/// Median time of `verify` over a few runs.
fn time(file: &PasswordFile, user: &str) -> Duration {
    let mut runs: Vec<Duration> = (0..3)
        .map(|_| {
            let start = Instant::now();
            let _ = file.verify(user, b"guess");
            start.elapsed()
        })
        .collect();
    runs.sort();
    runs[1]
}

#[test]
fn unknown_user_costs_as_much_as_a_known_one() {
    let file = parse(&format!("root:{}\n", hash_password(b"pw")));
    let known = time(&file, "root");
    let unknown = time(&file, "nobody");
    // Without the dummy hash an unknown user would take microseconds against milliseconds.
    assert!(unknown * 3 > known, "known {known:?}, unknown {unknown:?}");
    assert!(!PasswordFile::new().verify("root", b"pw"));
}
