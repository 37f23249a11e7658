//! The session state machine (`fulmar_core::Session`) fed with arbitrary packet sequences,
//! deliveries, acknowledgements, reconnects and clock steps; see src/session.rs for the input
//! encoding and the invariants. The body is shared with the stable smoke test.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| fulmar_fuzz::session(data));
