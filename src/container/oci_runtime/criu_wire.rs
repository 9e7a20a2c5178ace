//! The little of protobuf's wire format ferry-runc speaks with Podman in
//! CRIU's terms (ferry-criu's version answer, the inventory and stats
//! files of a checkpoint): varints and length-delimited fields, written
//! by hand for the few messages of CRIU's rpc.proto, inventory.proto and
//! stats.proto involved.

/// Protobuf wire type of a varint field.
pub const VARINT: u64 = 0;
/// Protobuf wire type of a length-delimited field (string, message).
pub const LENGTH_DELIMITED: u64 = 2;

/// Takes one varint off the front of `msg`; None when it is cut short.
pub fn read_varint(msg: &mut &[u8]) -> Option<u64> {
    let mut value = 0u64;
    for shift in (0..64).step_by(7) {
        let (&byte, rest) = msg.split_first()?;
        *msg = rest;
        value |= u64::from(byte & 0x7f) << shift;
        if byte & 0x80 == 0 {
            return Some(value);
        }
    }
    None
}

/// The varint fields numbered `field` in the message `msg`, the last one
/// (protobuf's rule for a repeated scalar); None when `msg` is not a
/// well-formed message or has no such field.
pub fn varint_field(mut msg: &[u8], field: u64) -> Option<u64> {
    let mut found = None;
    while !msg.is_empty() {
        let key = read_varint(&mut msg)?;
        match key & 7 {
            VARINT => {
                let v = read_varint(&mut msg)?;
                if key >> 3 == field {
                    found = Some(v);
                }
            }
            LENGTH_DELIMITED => {
                let len = usize::try_from(read_varint(&mut msg)?).ok()?;
                msg = msg.get(len..)?;
            }
            1 => msg = msg.get(8..)?,
            5 => msg = msg.get(4..)?,
            _ => return None,
        }
    }
    found
}

/// Appends `v` as a varint.
pub fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v & 0x7f) as u8 | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

/// Appends varint field `field` with value `v`.
pub fn put_varint_field(out: &mut Vec<u8>, field: u64, v: u64) {
    put_varint(out, field << 3 | VARINT);
    put_varint(out, v);
}

/// Appends length-delimited field `field` (a string or a message).
pub fn put_bytes_field(out: &mut Vec<u8>, field: u64, bytes: &[u8]) {
    put_varint(out, field << 3 | LENGTH_DELIMITED);
    put_varint(out, bytes.len() as u64);
    out.extend_from_slice(bytes);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn varints_round_trip() {
        for v in [0u64, 1, 127, 128, 300, u64::from(u32::MAX), u64::MAX] {
            let mut buf = Vec::new();
            put_varint(&mut buf, v);
            let mut slice = buf.as_slice();
            assert_eq!(read_varint(&mut slice), Some(v));
            assert!(slice.is_empty());
        }
    }

    #[test]
    fn a_field_is_found_past_others() {
        // field 2 (a message), field 1 = 1, field 3 = 1.
        let msg = [0x12, 0x02, 0x08, 0x05, 0x08, 0x01, 0x18, 0x01];
        assert_eq!(varint_field(&msg, 1), Some(1));
        assert_eq!(varint_field(&msg, 3), Some(1));
        assert_eq!(varint_field(&msg, 4), None);
        assert_eq!(varint_field(&[0x08], 1), None);
    }
}
