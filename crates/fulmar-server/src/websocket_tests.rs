//! The WebSocket byte-stream adapter against a real tungstenite client over an in-memory pipe.

use futures_util::{SinkExt, StreamExt};
use tokio::io::{AsyncReadExt, AsyncWriteExt, DuplexStream};

use super::*;

type Client = WebSocketStream<DuplexStream>;

async fn pair() -> (Client, WsByteStream<DuplexStream>) {
    let (a, b) = tokio::io::duplex(256 * 1024);
    let client = WebSocketStream::from_raw_socket(a, Role::Client, None).await;
    let server = WebSocketStream::from_raw_socket(b, Role::Server, Some(config(1024))).await;
    (client, WsByteStream::new(server))
}

async fn read_exact(server: &mut WsByteStream<DuplexStream>, n: usize) -> Vec<u8> {
    let mut buf = vec![0; n];
    server.read_exact(&mut buf).await.unwrap();
    buf
}

#[tokio::test]
async fn frames_concatenate_into_one_byte_stream() {
    let (mut client, mut server) = pair().await;
    // A PINGREQ split over two frames, then two PINGREQs in one frame.
    client.send(Message::binary(vec![0xC0])).await.unwrap();
    client.send(Message::binary(vec![0x00])).await.unwrap();
    client
        .send(Message::binary(vec![0xC0, 0x00, 0xC0, 0x00]))
        .await
        .unwrap();
    assert_eq!(
        read_exact(&mut server, 6).await,
        [0xC0, 0, 0xC0, 0, 0xC0, 0]
    );
}

#[tokio::test]
async fn a_flush_sends_what_was_written_as_one_binary_frame() {
    let (mut client, mut server) = pair().await;
    server.write_all(&[0xD0, 0x00]).await.unwrap();
    server.write_all(&[0xD0, 0x00]).await.unwrap();
    server.flush().await.unwrap();
    let frame = client.next().await.unwrap().unwrap();
    assert_eq!(frame, Message::binary(vec![0xD0, 0, 0xD0, 0]));
}

#[tokio::test]
async fn large_writes_are_cut_into_bounded_frames() {
    let (mut client, mut server) = pair().await;
    let data = vec![7u8; OUT_FRAME * 2 + 10];
    let writer = async {
        server.write_all(&data).await.unwrap();
        server.flush().await.unwrap();
    };
    let reader = async {
        let mut total = 0;
        while total < data.len() {
            let Message::Binary(frame) = client.next().await.unwrap().unwrap() else {
                panic!("not binary")
            };
            assert!(frame.len() <= OUT_FRAME);
            total += frame.len();
        }
    };
    tokio::join!(writer, reader);
}

#[tokio::test]
async fn a_text_frame_ends_the_stream_and_the_close_says_unsupported() {
    let (mut client, mut server) = pair().await;
    client.send(Message::text("hello")).await.unwrap();
    let mut buf = [0u8; 8];
    assert!(server.read(&mut buf).await.is_err());
    server.shutdown().await.unwrap();
    let Message::Close(Some(frame)) = client.next().await.unwrap().unwrap() else {
        panic!("expected a close frame")
    };
    assert_eq!(frame.code, CloseCode::Unsupported);
}

#[tokio::test]
async fn pings_are_answered_while_reading() {
    let (mut client, mut server) = pair().await;
    client.send(Message::Ping("p".into())).await.unwrap();
    client
        .send(Message::binary(vec![0xC0, 0x00]))
        .await
        .unwrap();
    assert_eq!(read_exact(&mut server, 2).await, [0xC0, 0]);
    assert_eq!(
        client.next().await.unwrap().unwrap(),
        Message::Pong("p".into())
    );
}

#[tokio::test]
async fn the_peers_close_is_end_of_stream() {
    let (mut client, mut server) = pair().await;
    client.close(None).await.unwrap();
    let mut buf = [0u8; 8];
    assert_eq!(server.read(&mut buf).await.unwrap(), 0);
}

#[tokio::test]
async fn an_oversized_message_is_an_error_with_close_code_size() {
    let (mut client, mut server) = pair().await;
    client
        .send(Message::binary(vec![0u8; 1024 + IN_SLACK + 1]))
        .await
        .unwrap();
    let mut buf = [0u8; 8];
    assert!(server.read(&mut buf).await.is_err());
    assert_eq!(server.close_code, CloseCode::Size);
}
