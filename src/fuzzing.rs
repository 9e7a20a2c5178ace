//! Entry points for the cargo-fuzz targets in tests/fuzz (built only with
//! `--cfg fuzzing`, which cargo-fuzz sets): every decoder that a peer's
//! bytes reach, run on arbitrary input. Each must return an error, never
//! panic, hang or allocate without bound. The image decoder needs no entry
//! here: its target uses the public [`crate::image::ImageReader`].

use crate::agent::{ControlEvent, ControlRequest};
use crate::lazy::PageRequest;
use crate::migration::check_offer_claims;
use crate::migration::protocol::{
    Opening, ProbeToDestination, ProbeToSource, ResumeAnswer, RootfsReply, RootfsRequest,
    ToDestination, ToSource,
};
use crate::transport::frame::{read_bounded, MAX_CONTROL_LEN};
use crate::transport::{Opener, PageReceiver, Reply, MAX_OPENER_LEN};
use serde::de::DeserializeOwned;
use std::net::{Ipv4Addr, SocketAddr};

/// The peer named in the decoders' error messages.
const PEER: SocketAddr = SocketAddr::new(std::net::IpAddr::V4(Ipv4Addr::LOCALHOST), 9);

/// Decodes `stream` as a sequence of control messages of the kind its first
/// byte selects (every message type an agent reads from a peer or from its
/// control socket), as the agent reads them, until the stream ends or a
/// message is refused. A decoded offer also goes through the destination's
/// check of its claims.
pub fn control_stream(input: &[u8]) {
    let Some((&kind, mut stream)) = input.split_first() else {
        return;
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("a current-thread runtime needs no resources that can run out");
    runtime.block_on(async {
        loop {
            let more = match kind % 13 {
                0 => next::<Opener>(&mut stream, MAX_OPENER_LEN).await,
                1 => next::<Reply>(&mut stream, MAX_OPENER_LEN).await,
                2 => match read_bounded::<_, Opening>(&mut stream, PEER, MAX_CONTROL_LEN).await {
                    Ok(Opening::Migrate(offer)) => {
                        let _ = check_offer_claims(&offer);
                        true
                    }
                    Ok(_) => true,
                    Err(_) => false,
                },
                3 => next::<ToDestination>(&mut stream, MAX_CONTROL_LEN).await,
                4 => next::<ToSource>(&mut stream, MAX_CONTROL_LEN).await,
                5 => next::<RootfsRequest>(&mut stream, MAX_CONTROL_LEN).await,
                6 => next::<RootfsReply>(&mut stream, MAX_CONTROL_LEN).await,
                7 => next::<ProbeToDestination>(&mut stream, MAX_CONTROL_LEN).await,
                8 => next::<ProbeToSource>(&mut stream, MAX_CONTROL_LEN).await,
                9 => next::<ResumeAnswer>(&mut stream, MAX_CONTROL_LEN).await,
                10 => next::<PageRequest>(&mut stream, MAX_CONTROL_LEN).await,
                11 => next::<ControlRequest>(&mut stream, MAX_CONTROL_LEN).await,
                _ => next::<ControlEvent>(&mut stream, MAX_CONTROL_LEN).await,
            };
            if !more {
                break;
            }
        }
    });
}

/// Reads one message of type `T`; false once the stream holds no more.
async fn next<T: DeserializeOwned>(stream: &mut &[u8], max: u32) -> bool {
    read_bounded::<_, T>(stream, PEER, max).await.is_ok()
}

/// Reads `input` as a page stream (fixed little-endian headers, then the
/// pages) the way the destination does, until it ends or a frame is
/// refused.
pub fn page_stream(input: &[u8]) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("a current-thread runtime needs no resources that can run out");
    runtime.block_on(async {
        let mut receiver = PageReceiver::new(input, PEER);
        while let Ok(Some(frame)) = receiver.next().await {
            assert_eq!(
                frame.data.len(),
                frame.header.payload_len(),
                "a frame's payload is the length its header says"
            );
        }
    });
}
