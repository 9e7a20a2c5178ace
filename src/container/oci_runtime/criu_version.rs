//! ferry-criu: the `criu` Podman asks for its version before every
//! checkpoint and restore, answering that one question and nothing else.
//!
//! Podman 4.3 refuses `container checkpoint` and `container restore`
//! ("checkpoint/restore requires at least CRIU 31100") unless a `criu` on
//! its PATH answers go-criu's VERSION request: go-criu starts `criu swrk
//! FD` with one end of a SOCK_SEQPACKET pair as FD, sends a `criu_req`
//! (protobuf, CRIU's images/rpc.proto) of type VERSION and reads a
//! `criu_resp`. Podman never runs CRIU otherwise: the checkpoint and the
//! restore are the runtime's (ferry-runc's). So ferry-criu answers that
//! request with the CRIU release whose runc checkpoint/restore command
//! line ferry-runc stands in for (Debian 12's 3.17) and the name
//! "ferry-criu" (CRIU's own answer names "criu"), and refuses every other
//! request, and every other command, with the reason: it is not CRIU.
//! Debian's criu package would answer too, but its 3.17 cannot dump on
//! this kernel, and a real but broken `criu` on every program's PATH
//! would be taken by runc, Docker's default runtime and anything else.

use super::criu_wire::{put_bytes_field, put_varint_field, varint_field};
use nix::sys::socket::{recv, send, MsgFlags};
use std::ffi::OsString;
use std::process::ExitCode;

/// The CRIU release ferry-criu reports: 3.17, as Debian 12 packages it;
/// Podman 4.3 asks for 3.11, or 3.16 for containers in pods.
pub const REPORTED_VERSION: (u32, u32) = (3, 17);

/// criu_req_type.VERSION in CRIU's rpc.proto.
const VERSION_REQUEST: u64 = 10;

/// Runs ferry-criu with `argv` (the program's name first): what the
/// binary's `main` is.
pub fn main(argv: Vec<OsString>) -> ExitCode {
    let words: Vec<String> = argv
        .iter()
        .skip(1)
        .map(|a| a.to_string_lossy().into_owned())
        .collect();
    let served = match words.as_slice() {
        [swrk, fd] if swrk == "swrk" => match fd.parse() {
            Ok(fd) => serve(fd),
            Err(_) => Err(format!(
                "ferry-criu: swrk takes a descriptor number, not {fd:?}"
            )),
        },
        _ => Err(format!(
            "ferry-criu: {words:?} is not served: ferry-criu is not CRIU; it only answers the \
             version request of `criu swrk FD` (Podman's check before a checkpoint or restore, \
             which ferry-runc then makes with ferry's engine)"
        )),
    };
    match served {
        Ok(()) => ExitCode::SUCCESS,
        Err(msg) => {
            eprintln!("{msg}");
            ExitCode::FAILURE
        }
    }
}

/// Reads one request from the socket `fd` and answers it.
fn serve(fd: i32) -> Result<(), String> {
    let mut buf = vec![0u8; 64 * 1024];
    let n = recv(fd, &mut buf, MsgFlags::empty())
        .map_err(|e| format!("ferry-criu: reading the request from fd {fd} failed: {e}"))?;
    let request = buf.get(..n).unwrap_or_default();
    let (answer, refused) = match varint_field(request, 1) {
        Some(VERSION_REQUEST) => (version_response(), None),
        Some(t) => {
            let why = format!(
                "ferry-criu answers only the VERSION request (10), not request type {t}: it is \
                 not CRIU; checkpoint and restore are ferry-runc's"
            );
            (refusal_response(t, &why), Some(why))
        }
        None => {
            let why = format!("ferry-criu: a request of {n} bytes that is not a criu_req");
            (refusal_response(0, &why), Some(why))
        }
    };
    send(fd, &answer, MsgFlags::empty())
        .map_err(|e| format!("ferry-criu: writing the answer to fd {fd} failed: {e}"))?;
    refused.map_or(Ok(()), Err)
}

/// `criu_resp { type: VERSION, success: true, version: { major_number,
/// minor_number, name: "ferry-criu" } }`.
fn version_response() -> Vec<u8> {
    let mut version = Vec::new();
    put_varint_field(&mut version, 1, REPORTED_VERSION.0.into());
    put_varint_field(&mut version, 2, REPORTED_VERSION.1.into());
    put_bytes_field(&mut version, 6, b"ferry-criu");
    let mut resp = Vec::new();
    put_varint_field(&mut resp, 1, VERSION_REQUEST);
    put_varint_field(&mut resp, 2, 1);
    put_bytes_field(&mut resp, 10, &version);
    resp
}

/// `criu_resp { type, success: false, cr_errmsg: why }`.
fn refusal_response(request: u64, why: &str) -> Vec<u8> {
    let mut resp = Vec::new();
    put_varint_field(&mut resp, 1, request);
    put_varint_field(&mut resp, 2, 0);
    put_bytes_field(&mut resp, 9, why.as_bytes());
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_version_answer_is_criu_resp_wire_format() {
        // criu_req { type: VERSION }, as go-criu's proto.Marshal writes it.
        assert_eq!(varint_field(&[0x08, 0x0a], 1), Some(VERSION_REQUEST));
        let mut expect = vec![
            0x08, 0x0a, 0x10, 0x01, 0x52, 16, 0x08, 3, 0x10, 17, 0x32, 10,
        ];
        expect.extend_from_slice(b"ferry-criu");
        assert_eq!(version_response(), expect);
        let refused = refusal_response(1, "no");
        assert_eq!(
            refused,
            vec![0x08, 0x01, 0x10, 0x00, 0x4a, 0x02, b'n', b'o']
        );
    }
}
