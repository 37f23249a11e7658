//! Property tests: `decode(encode(p)) == p` for every packet type and version, arbitrary bytes
//! never panic, and splitting a stream at any byte boundary yields the same packets.

mod strategies;

use bytes::BytesMut;
use fulmar_proto::*;
use proptest::collection::vec;
use proptest::prelude::*;
use strategies::{packet, publish, version, versioned_packet};

fn encode_all(packets: &[Packet], v: ProtocolVersion) -> BytesMut {
    let mut out = BytesMut::new();
    for p in packets {
        encode(p, v, &mut out).unwrap();
    }
    out
}

/// Decodes everything available; stops at `None`.
fn drain(buf: &mut BytesMut, v: ProtocolVersion, into: &mut Vec<Packet>) {
    while let Some(p) = decode(buf, v, usize::MAX).unwrap() {
        into.push(p);
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2048, ..ProptestConfig::default() })]

    #[test]
    fn decode_inverts_encode((v, p) in versioned_packet()) {
        let mut out = BytesMut::new();
        encode(&p, v, &mut out).unwrap();
        prop_assert_eq!(encoded_len(&p, v).unwrap(), out.len());
        let mut buf = out.clone();
        let decoded = decode(&mut buf, v, out.len()).unwrap().expect("complete packet");
        prop_assert_eq!(&decoded, &p);
        prop_assert!(buf.is_empty());
    }

    #[test]
    fn encode_publish_matches_encode((v, p) in version().prop_flat_map(|v| (Just(v), publish(v)))) {
        let mut a = BytesMut::new();
        encode(&Packet::Publish(p.clone()), v, &mut a).unwrap();
        let mut b = BytesMut::new();
        encode_publish(&p, v, &mut b).unwrap();
        prop_assert_eq!(&a, &b);
        let mut c = BytesMut::new();
        let header = encode_publish_header(&p, v, &mut c).unwrap();
        prop_assert_eq!(header, c.len());
        c.extend_from_slice(&p.payload);
        prop_assert_eq!(&a, &c);
    }

    #[test]
    fn arbitrary_bytes_never_panic(data in vec(any::<u8>(), 0..300), v in version(), max in 0usize..400) {
        let mut buf = BytesMut::from(&data[..]);
        while let Ok(Some(_)) = decode(&mut buf, v, max) {}
    }

    /// A valid fixed header over a random body reaches every body decoder.
    #[test]
    fn random_bodies_never_panic(first in any::<u8>(), body in vec(any::<u8>(), 0..200), v in version()) {
        let mut data = vec![first];
        let mut n = body.len();
        loop {
            let byte = (n & 0x7F) as u8;
            n >>= 7;
            data.push(if n > 0 { byte | 0x80 } else { byte });
            if n == 0 { break; }
        }
        data.extend_from_slice(&body);
        let mut buf = BytesMut::from(&data[..]);
        if let Ok(Some(p)) = decode(&mut buf, v, usize::MAX) {
            // Whatever decodes must encode again (CONNECT in its own version) to the same packet.
            let mut out = BytesMut::new();
            encode(&p, v, &mut out).unwrap();
            prop_assert_eq!(decode(&mut out, v, usize::MAX).unwrap(), Some(p));
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn split_at_every_boundary_yields_the_same_packets(
        (v, packets) in version().prop_flat_map(|v| (Just(v), vec(packet(v), 1..5)))
    ) {
        let stream = encode_all(&packets, v);
        for cut in 0..=stream.len() {
            let mut buf = BytesMut::from(&stream[..cut]);
            let mut got = Vec::new();
            drain(&mut buf, v, &mut got);
            buf.extend_from_slice(&stream[cut..]);
            drain(&mut buf, v, &mut got);
            prop_assert!(buf.is_empty());
            prop_assert_eq!(&got, &packets);
        }
    }
}
