//! The bodies of the fuzz targets, shared by the libFuzzer binaries (`fuzz_targets/*.rs`, run
//! with `cargo fuzz`) and the stable-Rust smoke test (`tests/smoke.rs`, run by `scripts/test.sh`)
//! so that both exercise exactly the same code and invariants.
//!
//! - [`decode`]: arbitrary bytes as a packet stream under MQTT 3.1, 3.1.1 and 5.0.
//! - [`session`]: `fulmar_core::Session` driven by an arbitrary sequence of operations
//!   (see [`session`] for the encoding and the invariants).

mod session;

use bytes::BytesMut;
use fulmar_proto::{decode as decode_packet, encode, ProtocolVersion};

pub use session::session;

/// Every protocol version the codec speaks.
pub const VERSIONS: [ProtocolVersion; 3] = [
    ProtocolVersion::V3_1,
    ProtocolVersion::V3_1_1,
    ProtocolVersion::V5,
];

/// Decodes `data` as a stream of packets under every protocol version. Decoding must never
/// panic; whatever decodes must re-encode, and the re-encoding must decode to the same packet.
pub fn decode(data: &[u8]) {
    for version in VERSIONS {
        let mut buf = BytesMut::from(data);
        while let Ok(Some(packet)) = decode_packet(&mut buf, version, 1 << 20) {
            let mut out = BytesMut::new();
            encode(&packet, version, &mut out).expect("a decoded packet encodes");
            let again = decode_packet(&mut out, version, usize::MAX).expect("re-encoded packet decodes");
            assert_eq!(again.as_ref(), Some(&packet));
            assert!(out.is_empty(), "the re-encoding is consumed exactly");
        }
    }
}
