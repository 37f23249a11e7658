//! Decodes arbitrary bytes as a stream of packets under MQTT 3.1, 3.1.1 and 5.0. Decoding must
//! never panic; whatever decodes must re-encode and decode to the same packet.
//! The body is `fulmar_fuzz::decode` (src/lib.rs), shared with the stable smoke test.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| fulmar_fuzz::decode(data));
