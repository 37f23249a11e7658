//! `fulmar passwd`: manage a password file, like mosquitto_passwd.
//!
//! ```text
//! fulmar passwd [-c] [--scram] FILE USER             prompt for the password (twice)
//! fulmar passwd [-c] [--scram] -b FILE USER PASSWORD  batch mode
//! fulmar passwd -D FILE USER                         delete USER
//! ```
//!
//! New entries are argon2id PHC strings, or SCRAM-SHA-256 credentials with `--scram` (needed for
//! MQTT 5 SCRAM enhanced authentication; they verify plain CONNECT passwords too). Other lines,
//! comments included, are kept verbatim, so a file written by mosquitto_passwd can be managed
//! here. The file is replaced atomically (temporary file + rename) with mode 0600.

use std::io::{BufRead, IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::Args;
use fulmar_auth::{
    check_username, hash_password, hash_scram, PasswordFile, DEFAULT_SCRAM_ITERATIONS,
};

/// Options of `fulmar passwd` (mosquitto_passwd's spellings).
#[derive(Debug, Args)]
pub struct PasswdArgs {
    /// Create a new password file, overwriting an existing one.
    #[arg(short = 'c', conflicts_with = "delete")]
    create: bool,
    /// Delete USER from the file.
    #[arg(short = 'D', conflicts_with_all = ["batch", "scram"])]
    delete: bool,
    /// Batch mode: take the password from the command line (it is then visible to other local
    /// users in the process list; prefer the prompt, or stdin when it is not a terminal).
    #[arg(short = 'b')]
    batch: bool,
    /// Store a SCRAM-SHA-256 credential instead of argon2id: needed for MQTT 5 enhanced
    /// authentication with method SCRAM-SHA-256; also verifies plain CONNECT passwords.
    #[arg(long)]
    scram: bool,
    /// PBKDF2 iterations of a SCRAM credential (RFC 7677: at least 4096).
    #[arg(long, value_name = "N", default_value_t = DEFAULT_SCRAM_ITERATIONS, requires = "scram",
          value_parser = clap::value_parser!(u32).range(1..))]
    iterations: u32,
    /// The password file.
    file: PathBuf,
    /// The username (no ':', not starting with '#').
    user: String,
    /// The password, with -b only.
    password: Option<String>,
}

/// Runs `fulmar passwd`; exit status 1 with a message on stderr on failure.
pub fn run(args: PasswdArgs) -> ExitCode {
    match passwd(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("fulmar passwd: error: {message}");
            ExitCode::FAILURE
        }
    }
}

fn passwd(args: &PasswdArgs) -> Result<(), String> {
    check_username(&args.user)?;
    match (&args.password, args.batch) {
        (None, true) => return Err("-b needs FILE USER PASSWORD".into()),
        (Some(_), false) => return Err("a password on the command line needs -b".into()),
        _ => {}
    }
    let display = args.file.display();
    if args.delete {
        let mut file = PasswordFile::load(&args.file).map_err(|e| e.to_string())?;
        if !file.remove(&args.user) {
            return Err(format!("user {:?} is not in {display}", args.user));
        }
        return write_atomically(&args.file, &file.to_text());
    }
    let mut file = if args.create {
        PasswordFile::new()
    } else if args.file.exists() {
        PasswordFile::load(&args.file).map_err(|e| e.to_string())?
    } else {
        return Err(format!("{display} does not exist (use -c to create it)"));
    };
    let password = match &args.password {
        Some(password) => password.clone(),
        None => read_password()?,
    };
    let hash = if args.scram {
        hash_scram(password.as_bytes(), args.iterations)
    } else {
        hash_password(password.as_bytes())
    };
    file.set(&args.user, &hash)?;
    write_atomically(&args.file, &file.to_text())
}

/// From the terminal without echo, asked twice; otherwise the first line of stdin (and, if
/// there is a second line, it must repeat the first).
fn read_password() -> Result<String, String> {
    if std::io::stdin().is_terminal() {
        let first = rpassword::prompt_password("Password: ")
            .map_err(|e| format!("reading the password: {e}"))?;
        let again = rpassword::prompt_password("Reenter password: ")
            .map_err(|e| format!("reading the password: {e}"))?;
        if first != again {
            return Err("the passwords do not match".into());
        }
        return Ok(first);
    }
    let mut lines = std::io::stdin().lock().lines();
    let mut next = || {
        lines
            .next()
            .transpose()
            .map_err(|e| format!("reading the password from stdin: {e}"))
    };
    let first = next()?.ok_or("no password on stdin")?;
    let first = first.trim_end_matches('\r').to_owned();
    if let Some(again) = next()? {
        if again.trim_end_matches('\r') != first {
            return Err("the passwords do not match".into());
        }
    }
    Ok(first)
}

/// Replaces `path` with `text`: written to a temporary file (mode 0600) in the same directory,
/// flushed to disk, then renamed over `path`, so a reader sees the old file or the new one.
fn write_atomically(path: &Path, text: &str) -> Result<(), String> {
    let display = path.display();
    let name = path
        .file_name()
        .ok_or_else(|| format!("{display} is not a file name"))?;
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let temp = dir.join(format!(
        ".{}.tmp-{}",
        name.to_string_lossy(),
        std::process::id()
    ));
    let result = write_new(&temp, text).and_then(|()| std::fs::rename(&temp, path));
    if let Err(e) = result {
        let _ = std::fs::remove_file(&temp);
        return Err(format!("writing {display}: {e}"));
    }
    Ok(())
}

/// Creates `path` (which must not exist) with mode 0600 and writes `text` to it durably.
fn write_new(path: &Path, text: &str) -> std::io::Result<()> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options.open(path)?;
    // The umask may have cleared bits of 0600 (e.g. 0400 under umask 0277): set it outright.
    #[cfg(unix)]
    file.set_permissions(
        <std::fs::Permissions as std::os::unix::fs::PermissionsExt>::from_mode(0o600),
    )?;
    file.write_all(text.as_bytes())?;
    file.sync_all()
}
