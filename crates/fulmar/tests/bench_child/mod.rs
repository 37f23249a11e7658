//! Shared by the `fulmar bench` tests: waiting for the generator process, bounded.

use std::process::{Child, Output};
use std::time::{Duration, Instant};

/// Waits for `child` to exit and collects its output; kills it and fails the test after `limit`.
pub fn wait_with_limit(mut child: Child, limit: Duration) -> Output {
    let deadline = Instant::now() + limit;
    while child.try_wait().expect("wait").is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("fulmar bench did not finish within {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    child.wait_with_output().expect("output")
}
