//! Stable-Rust fuzz smoke test: runs each fuzz target's body (the same functions the libFuzzer
//! binaries call) over its regression inputs (`regressions/<target>`), its seed corpus
//! (`corpus/<target>`, and `found/<target>`, the corpus a long libFuzzer run left, minimized), and
//! then deterministic mutations of all of them until a time budget is spent. No coverage feedback: this is the short bounded
//! run of `scripts/test.sh`; the long coverage-guided run is `cargo fuzz run` (see README.md).
//!
//! Environment:
//! - `FULMAR_FUZZ_SECS`: time budget per target, seconds (default 20);
//! - `FULMAR_FUZZ_SEED`: mutator seed (default fixed, so a run is reproducible given the budget);
//! - `FULMAR_FUZZ_MAX`: stop after this many mutated inputs per target (default unbounded).
//!
//! A failing input is written to `artifacts/<target>/smoke-<hash>` (replay it with
//! `cargo fuzz run <target> artifacts/<target>/smoke-<hash>` or by adding it to
//! `regressions/<target>/`) and the panic is re-raised.

use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn files(dir: &Path) -> Vec<Vec<u8>> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut paths: Vec<PathBuf> = entries.filter_map(|e| e.ok().map(|e| e.path())).collect();
    paths.sort();
    paths
        .into_iter()
        .filter(|p| p.is_file())
        .filter_map(|p| std::fs::read(p).ok())
        .collect()
}

/// xorshift64*: small, deterministic, good enough to pick mutations.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

const INTERESTING: [u8; 12] = [0, 1, 2, 0x7F, 0x80, 0xFF, 0x10, 0x20, 0x30, 0x62, 0xE0, 0xF0];
const MAX_LEN: usize = 4096;

/// One to four of: bit flip, interesting byte, random byte, insert, delete, duplicate a
/// range, splice in part of another seed, truncate.
fn mutate(rng: &mut Rng, seed: &[u8], corpus: &[Vec<u8>]) -> Vec<u8> {
    let mut data = seed.to_vec();
    for _ in 0..=rng.below(4) {
        let len = data.len();
        match rng.below(8) {
            0 if len > 0 => {
                let i = rng.below(len);
                data[i] ^= 1 << rng.below(8);
            }
            1 if len > 0 => {
                let i = rng.below(len);
                data[i] = INTERESTING[rng.below(INTERESTING.len())];
            }
            2 if len > 0 => {
                let i = rng.below(len);
                data[i] = rng.next() as u8;
            }
            3 => {
                let i = rng.below(len + 1);
                let n = 1 + rng.below(8);
                let bytes: Vec<u8> = (0..n).map(|_| rng.next() as u8).collect();
                data.splice(i..i, bytes);
            }
            4 if len > 1 => {
                let i = rng.below(len);
                let n = 1 + rng.below((len - i).min(16));
                data.drain(i..i + n);
            }
            5 if len > 1 => {
                let i = rng.below(len);
                let n = 1 + rng.below((len - i).min(64));
                let chunk = data[i..i + n].to_vec();
                let at = rng.below(data.len() + 1);
                data.splice(at..at, chunk);
            }
            6 if !corpus.is_empty() => {
                let other = &corpus[rng.below(corpus.len())];
                if !other.is_empty() {
                    let i = rng.below(other.len());
                    let n = 1 + rng.below(other.len() - i);
                    let at = rng.below(len + 1);
                    data.splice(at..at, other[i..i + n].iter().copied());
                }
            }
            _ if len > 0 => data.truncate(rng.below(len)),
            _ => data.push(rng.next() as u8),
        }
    }
    data.truncate(MAX_LEN);
    data
}

fn run_one(target: &str, body: fn(&[u8]), input: &[u8]) {
    if let Err(panic) = catch_unwind(AssertUnwindSafe(|| body(input))) {
        let mut hasher = DefaultHasher::new();
        input.hash(&mut hasher);
        let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("artifacts")
            .join(target);
        let path = dir.join(format!("smoke-{:016x}", hasher.finish()));
        let _ = std::fs::create_dir_all(&dir);
        let _ = std::fs::write(&path, input);
        eprintln!(
            "fuzz target {target} failed on {} ({} bytes): {:02x?}",
            path.display(),
            input.len(),
            input
        );
        std::panic::resume_unwind(panic);
    }
}

fn smoke(target: &str, body: fn(&[u8])) {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let budget = Duration::from_secs(env_u64("FULMAR_FUZZ_SECS", 20));
    let max = env_u64("FULMAR_FUZZ_MAX", u64::MAX);
    let mut rng = Rng(env_u64("FULMAR_FUZZ_SEED", 0x5EED_F00D_CAFE_D00D) | 1);
    let regressions = files(&root.join("regressions").join(target));
    let mut corpus = files(&root.join("corpus").join(target));
    corpus.extend(files(&root.join("found").join(target)));
    for input in regressions.iter().chain(&corpus) {
        run_one(target, body, input);
    }
    corpus.extend(regressions.iter().cloned());
    if corpus.is_empty() {
        corpus.push(Vec::new());
    }
    let start = Instant::now();
    let mut runs = 0u64;
    // Pure random inputs too, not only mutations of the seeds.
    while runs < max && start.elapsed() < budget {
        let input = if runs % 16 == 0 {
            let n = rng.below(256);
            (0..n).map(|_| rng.next() as u8).collect()
        } else {
            let seed = &corpus[rng.below(corpus.len())];
            mutate(&mut rng, seed, &corpus)
        };
        run_one(target, body, &input);
        runs += 1;
    }
    eprintln!(
        "fuzz smoke {target}: {} regression + {} corpus inputs, {runs} mutated inputs in {:.1}s",
        regressions.len(),
        corpus.len() - regressions.len(),
        start.elapsed().as_secs_f64()
    );
}

#[test]
fn decode() {
    smoke("decode", fulmar_fuzz::decode);
}

#[test]
fn session() {
    smoke("session", fulmar_fuzz::session);
}
