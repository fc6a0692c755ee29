//! A gibibyte through the tunnel, hashed on both ends. In its own test binary: the hashing
//! keeps both cores busy, which would starve the timing of tests running beside it.

mod support;

use aws_lc_rs::digest;
use support::TcpPair;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_gibibyte_arrives_intact() {
    const TOTAL: usize = 1 << 30;
    strait::tls::install_default_provider();
    // A sink that hashes everything it receives and answers with the digest.
    let listener = TcpListener::bind("127.0.20.23:0").await.unwrap();
    let sink = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let (mut tcp, _) = listener.accept().await.unwrap();
        let mut ctx = digest::Context::new(&digest::SHA256);
        let mut buf = vec![0u8; 256 * 1024];
        loop {
            let n = tcp.read(&mut buf).await.unwrap();
            if n == 0 {
                break;
            }
            ctx.update(&buf[..n]);
        }
        tcp.write_all(ctx.finish().as_ref()).await.unwrap();
        tcp.shutdown().await.unwrap();
    });
    let gateways = TcpPair::start(sink).await;

    let mut tcp = TcpStream::connect(gateways.listen).await.unwrap();
    let mut ctx = digest::Context::new(&digest::SHA256);
    let mut block = vec![0u8; 1 << 20];
    let mut state = 0x9e37_79b9_7f4a_7c15u64;
    for _ in 0..TOTAL / block.len() {
        // xorshift: cheap bytes that differ block to block, so reordering would show.
        for chunk in block.chunks_mut(8) {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            chunk.copy_from_slice(&state.to_le_bytes());
        }
        ctx.update(&block);
        tcp.write_all(&block).await.unwrap();
    }
    tcp.shutdown().await.unwrap();
    let mut digest_back = Vec::new();
    tcp.read_to_end(&mut digest_back).await.unwrap();
    assert_eq!(
        digest_back,
        ctx.finish().as_ref(),
        "SHA-256 of 1 GiB matches after the tunnel"
    );
}
