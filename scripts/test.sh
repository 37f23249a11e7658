#!/usr/bin/env bash
# The one test command (README, CI): Rust build and tests, a bounded fuzz smoke run, black-box integration suite.
#
# Needs only Rust and Python 3.11+ with pip on a Debian machine; installs the rest:
#   - mosquitto-clients (mosquitto_pub / mosquitto_sub), and mosquitto itself when
#     FULMAR_TEST_AGAINST=mosquitto (to validate the integration tests against a reference broker);
#   - the Python test dependencies, into a virtualenv at .venv-test;
#   - for the browser end-to-end test: chromium, nodejs and npm (Debian packages) and the npm packages of
#     tests/browser (`npm ci`, from its package-lock.json).
# Extra arguments go to pytest, e.g. `scripts/test.sh -k retained -x`.
# Environment: FULMAR_TEST_AGAINST=fulmar|mosquitto (default fulmar), PYTHON (default python3),
#   FULMAR_SKIP_CARGO=1 to run only the integration suite against an already built binary,
#   FULMAR_SKIP_BROWSER=1 to leave out the browser test (it never runs against mosquitto),
#   FULMAR_FUZZ_SECS (default 20) seconds of fuzz smoke per target, FULMAR_FUZZ_LIBFUZZER_SECS=N to add a
#   coverage-guided cargo-fuzz run of N seconds per target (installs cargo-fuzz if missing).
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
ROOT=$PWD
export DEBIAN_FRONTEND=noninteractive
export CARGO_TERM_COLOR="${CARGO_TERM_COLOR:-never}"
AGAINST="${FULMAR_TEST_AGAINST:-fulmar}"
PYTHON="${PYTHON:-python3}"
VENV="$ROOT/.venv-test"
REQUIREMENTS="$ROOT/tests/integration/requirements.txt"

phase() { printf '\n==> %s\n' "$*"; }

# --- system packages -------------------------------------------------------------------------------------
SUDO=()
if [ "$(id -u)" -ne 0 ]; then SUDO=(sudo -n); fi  # -n: fail instead of prompting (CI has no stdin)
APT_UPDATED=0
apt_install() {
    if ! command -v apt-get >/dev/null 2>&1; then
        echo "error: need the Debian packages: $*; apt-get is not available here, install them by hand" >&2
        exit 1
    fi
    if [ "$APT_UPDATED" -eq 0 ]; then
        "${SUDO[@]}" apt-get update -qq
        APT_UPDATED=1
    fi
    "${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@"
}

phase "system packages"
pkgs=()
command -v mosquitto_pub >/dev/null 2>&1 && command -v mosquitto_sub >/dev/null 2>&1 || pkgs+=(mosquitto-clients)
command -v mosquitto_passwd >/dev/null 2>&1 || pkgs+=(mosquitto)  # test_passwd_cli.py: mosquitto_passwd compatibility
if [ "$AGAINST" = mosquitto ]; then
    command -v mosquitto >/dev/null 2>&1 || [ -x /usr/sbin/mosquitto ] || pkgs+=(mosquitto)
fi
command -v stdbuf >/dev/null 2>&1 || pkgs+=(coreutils)
BROWSER=1
if [ "${FULMAR_SKIP_BROWSER:-0}" = 1 ] || [ "$AGAINST" != fulmar ]; then BROWSER=0; fi
if [ "$BROWSER" = 1 ]; then
    [ -x /usr/bin/chromium ] || pkgs+=(chromium)
    command -v node >/dev/null 2>&1 || pkgs+=(nodejs)
    command -v npm >/dev/null 2>&1 || pkgs+=(npm)
fi
if [ "${#pkgs[@]}" -gt 0 ]; then
    echo "installing: ${pkgs[*]}"
    apt_install "${pkgs[@]}"
else
    echo "mosquitto clients present"
fi

# --- Python test environment -----------------------------------------------------------------------------
phase "python test environment ($VENV)"
venv_ok() { [ -x "$VENV/bin/python" ] && "$VENV/bin/python" -m pip --version >/dev/null 2>&1; }
if ! venv_ok; then
    rm -rf "$VENV"
    # Debian's python3 lacks venv/ensurepip until python3-venv is installed; a half-made venv is removed above.
    if ! "$PYTHON" -m venv "$VENV" >/dev/null 2>&1; then
        rm -rf "$VENV"
        apt_install python3-venv
        "$PYTHON" -m venv "$VENV"
    fi
fi
# Reinstall only when requirements.txt changed (a venv pip never meets PEP 668's externally-managed error).
req_hash="$(sha256sum "$REQUIREMENTS" | cut -d' ' -f1)"
if [ "$(cat "$VENV/.requirements.sha256" 2>/dev/null || true)" != "$req_hash" ]; then
    "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check -r "$REQUIREMENTS"
    echo "$req_hash" > "$VENV/.requirements.sha256"
fi
"$VENV/bin/python" -m pip list --disable-pip-version-check 2>/dev/null | grep -iE '^(paho-mqtt|pytest|pytest-timeout) ' || true

# --- Rust ------------------------------------------------------------------------------------------------
TARGET_DIR="${CARGO_TARGET_DIR:-$ROOT/target}"
if [ "${FULMAR_SKIP_CARGO:-0}" != 1 ]; then
    phase "cargo build --release --workspace --all-targets"
    cargo build --release --workspace --all-targets

    if cargo nextest --version >/dev/null 2>&1; then
        phase "cargo nextest run --release --workspace"
        cargo nextest run --release --workspace --no-tests=warn
        phase "cargo test --release --workspace --doc"
        cargo test --release --workspace --doc
    else
        phase "cargo test --release --workspace"
        cargo test --release --workspace
    fi

    if [ -f fuzz/Cargo.toml ]; then
        # Stable Rust: every fuzz target's body over its regression inputs, its seed corpus and then
        # deterministic mutations, FULMAR_FUZZ_SECS per target (the targets run in parallel). The
        # coverage-guided libFuzzer run (cargo-fuzz) is opt-in, it installs cargo-fuzz (minutes):
        # FULMAR_FUZZ_LIBFUZZER_SECS=N runs each target N seconds more. See fuzz/README.md.
        phase "fuzz smoke: cargo test --release --manifest-path fuzz/Cargo.toml (${FULMAR_FUZZ_SECS:-20}s per target)"
        FULMAR_FUZZ_SECS="${FULMAR_FUZZ_SECS:-20}" \
            cargo test --release --manifest-path fuzz/Cargo.toml -- --nocapture
        if [ "${FULMAR_FUZZ_LIBFUZZER_SECS:-0}" != 0 ]; then
            cargo fuzz --version >/dev/null 2>&1 || cargo install cargo-fuzz --locked
            for target in decode session; do
                phase "cargo fuzz run $target (libFuzzer, ${FULMAR_FUZZ_LIBFUZZER_SECS}s)"
                # -s none: no sanitizer, so stable Rust builds it; new inputs go to a scratch corpus.
                mkdir -p "$TARGET_DIR/fuzz-corpus/$target"
                (cd fuzz && cargo fuzz run -s none --target-dir "$TARGET_DIR/fuzz" "$target" \
                    "$TARGET_DIR/fuzz-corpus/$target" "corpus/$target" "found/$target" "regressions/$target" \
                    -- -max_total_time="$FULMAR_FUZZ_LIBFUZZER_SECS" -max_len=4096)
            done
        fi
    fi
fi

# --- black-box integration suite -------------------------------------------------------------------------
export FULMAR_BIN="$TARGET_DIR/release/fulmar"
phase "integration tests against $AGAINST (FULMAR_BIN=$FULMAR_BIN)"
FULMAR_TEST_AGAINST="$AGAINST" "$VENV/bin/python" -m pytest tests/integration "$@"

# --- browser end-to-end test -----------------------------------------------------------------------------
# The chat page in headless Chromium (Debian's /usr/bin/chromium, driven by playwright-core), two pages and a
# `fulmar chat` process in one room; screenshots go to tests/browser/artifacts/.
if [ "$BROWSER" = 1 ]; then
    phase "browser end-to-end test (tests/browser)"
    # playwright-core downloads no browser; the variable only makes sure of it.
    (cd tests/browser && PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1 npm ci --no-audit --no-fund --loglevel=error)
    (cd tests/browser && node --test chat.test.mjs)
fi
