//! Test workload for checkpoint/restore of a Rust program with a
//! multi-threaded tokio runtime: listens on 127.0.0.1 (a port the kernel
//! picks, printed as "READY <port>") and reads each connection's request and
//! answers with the number of requests served so far, then closes it.

use std::sync::atomic::{AtomicU64, Ordering};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

#[tokio::main(flavor = "multi_thread", worker_threads = 4)]
async fn main() -> std::io::Result<()> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    println!("READY {}", listener.local_addr()?.port());
    static COUNT: AtomicU64 = AtomicU64::new(0);
    loop {
        let (mut socket, _) = listener.accept().await?;
        tokio::spawn(async move {
            // Read the request first: closing with unread data would reset
            // the connection under the client's feet.
            let mut request = [0u8; 1024];
            let _ = socket.read(&mut request).await;
            let n = COUNT.fetch_add(1, Ordering::SeqCst) + 1;
            let _ = socket.write_all(format!("{n}\n").as_bytes()).await;
        });
    }
}
