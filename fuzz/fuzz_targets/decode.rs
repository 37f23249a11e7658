//! Decodes arbitrary bytes as a stream of packets under every protocol version. Decoding must
//! never panic; whatever decodes must re-encode and decode to the same packet.
#![no_main]

use bytes::BytesMut;
use fulmar_proto::{decode, encode, ProtocolVersion};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    for version in [
        ProtocolVersion::V3_1,
        ProtocolVersion::V3_1_1,
        ProtocolVersion::V5,
    ] {
        let mut buf = BytesMut::from(data);
        while let Ok(Some(packet)) = decode(&mut buf, version, 1 << 20) {
            let mut out = BytesMut::new();
            encode(&packet, version, &mut out).expect("a decoded packet encodes");
            let again = decode(&mut out, version, usize::MAX).expect("re-encoded packet decodes");
            assert_eq!(again.as_ref(), Some(&packet));
        }
    }
});
