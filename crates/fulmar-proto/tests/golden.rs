//! Golden vectors: decode each, compare with the expected packet or error, and re-encode.

mod vectors;

use bytes::BytesMut;
use fulmar_proto::{decode, encode, encoded_len};
use vectors::{hex, Expect, Vector};

fn check(v: &Vector) {
    let bytes = hex(v.hex);
    let mut buf = BytesMut::from(&bytes[..]);
    let result = decode(&mut buf, v.version, v.max);
    match &v.expect {
        Expect::Packet(expected) | Expect::PacketNonCanonical(expected) => {
            let packet = result
                .unwrap_or_else(|e| panic!("{}: {e}", v.name))
                .unwrap_or_else(|| panic!("{}: incomplete", v.name));
            assert_eq!(&packet, expected, "{}", v.name);
            assert!(buf.is_empty(), "{}: bytes left in the buffer", v.name);
            let mut out = BytesMut::new();
            encode(&packet, v.version, &mut out).unwrap();
            assert_eq!(
                encoded_len(&packet, v.version).unwrap(),
                out.len(),
                "{}",
                v.name
            );
            if matches!(v.expect, Expect::Packet(_)) {
                assert_eq!(&out[..], &bytes[..], "{}: re-encoding differs", v.name);
            }
        }
        Expect::Error(expected) => assert_eq!(result.as_ref(), Err(expected), "{}", v.name),
        Expect::Reason(code) => match result {
            Err(e) => assert_eq!(e.reason_code(), *code, "{}: {e}", v.name),
            Ok(p) => panic!("{}: expected an error, got {p:?}", v.name),
        },
        Expect::Incomplete => {
            assert_eq!(result, Ok(None), "{}", v.name);
            assert_eq!(&buf[..], &bytes[..], "{}: buffer must be untouched", v.name);
        }
    }
}

#[test]
fn valid_packets_decode_and_reencode() {
    for v in vectors::valid() {
        check(&v);
    }
}

#[test]
fn invalid_packets_are_rejected() {
    for v in vectors::invalid() {
        check(&v);
    }
}

#[test]
fn every_prefix_of_a_valid_packet_is_incomplete() {
    for v in vectors::valid() {
        let bytes = hex(v.hex);
        for cut in 0..bytes.len() {
            let mut buf = BytesMut::from(&bytes[..cut]);
            assert_eq!(
                decode(&mut buf, v.version, usize::MAX),
                Ok(None),
                "{} cut at {cut}",
                v.name
            );
            assert_eq!(buf.len(), cut);
        }
    }
}

#[test]
fn packet_exactly_at_the_size_limit_is_accepted() {
    let bytes = hex("30 07 00 03 61 2F 62 68 69");
    let mut buf = BytesMut::from(&bytes[..]);
    assert!(decode(&mut buf, fulmar_proto::ProtocolVersion::V3_1_1, 9)
        .unwrap()
        .is_some());
    let mut buf = BytesMut::from(&bytes[..]);
    assert!(decode(&mut buf, fulmar_proto::ProtocolVersion::V3_1_1, 8).is_err());
}

/// Writes the fuzz seed corpus to `fuzz/corpus/decode/`: the first valid vector of each packet
/// type, and per version one stream of all its valid vectors back to back.
/// Run with `cargo test -p fulmar-proto --test golden -- --ignored write_fuzz_corpus`.
#[test]
#[ignore = "writes files into fuzz/corpus/decode; run by hand after changing the vectors"]
fn write_fuzz_corpus() {
    use fulmar_proto::ProtocolVersion;
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz/corpus/decode");
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let valid = vectors::valid();
    let mut seen = std::collections::BTreeSet::new();
    for v in &valid {
        let bytes = hex(v.hex);
        let Some(packet_type) = bytes.first().map(|b| b >> 4) else {
            continue;
        };
        if seen.insert(packet_type) {
            std::fs::write(dir.join(format!("type_{packet_type:02}")), bytes).unwrap();
        }
    }
    for version in [
        ProtocolVersion::V3_1,
        ProtocolVersion::V3_1_1,
        ProtocolVersion::V5,
    ] {
        // CONNECT is decoded by its own level, so every CONNECT fits in any stream.
        let stream: Vec<u8> = valid
            .iter()
            .filter(|v| v.version == version || v.hex.starts_with("10"))
            .flat_map(|v| hex(v.hex))
            .collect();
        std::fs::write(dir.join(format!("stream_v{}", version.level())), stream).unwrap();
    }
}
