//! What one peer may hold on an accepting agent at once, so that a peer
//! with a valid certificate that opens sessions and never completes them
//! (or opens very many) cannot starve the others: handshakes in progress
//! (all peers, and per address) and sessions open or opening per peer
//! agent. Each is a counted [`Slot`], given back when dropped.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// Connections in their TLS handshake or first message, from all peers.
pub(super) const MAX_HANDSHAKES: usize = 256;
/// Connections in their TLS handshake or first message from one address:
/// opening a session takes one control and at most
/// [`MAX_BULK_CONNECTIONS`](super::settings::MAX_BULK_CONNECTIONS) bulk
/// connections, so two sessions can always open at once.
pub(super) const MAX_HANDSHAKES_PER_ADDRESS: usize =
    2 * (1 + super::settings::MAX_BULK_CONNECTIONS);
/// Sessions one peer agent may have open or opening here at once (a
/// migration takes one; a post-copy resume, a dry run one more each).
pub const MAX_SESSIONS_PER_PEER: usize = 16;

/// Counts of something held, by key (an address, an agent name).
#[derive(Clone, Default)]
pub(super) struct Counters(Arc<Mutex<HashMap<String, usize>>>);

impl Counters {
    /// One more for `key`, unless `key` already holds `max`: then how many
    /// it holds.
    pub(super) fn take(&self, key: &str, max: usize) -> Result<Slot, usize> {
        let mut map = self.0.lock().unwrap_or_else(|e| e.into_inner());
        let held = map.entry(key.to_string()).or_default();
        if *held >= max {
            return Err(*held);
        }
        *held += 1;
        Ok(Slot {
            counters: self.clone(),
            key: key.to_string(),
        })
    }
}

/// One unit of a [`Counters`] entry, given back on drop.
pub(super) struct Slot {
    counters: Counters,
    key: String,
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut map = self.counters.0.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(held) = map.get_mut(&self.key) {
            *held -= 1;
            if *held == 0 {
                map.remove(&self.key);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::transport::limits::*;

    #[test]
    fn a_key_holds_at_most_max_and_gets_slots_back_on_drop() {
        let counters = Counters::default();
        let a: Vec<Slot> = (0..3).map(|_| counters.take("a", 3).unwrap()).collect();
        assert_eq!(counters.take("a", 3).err(), Some(3));
        let b = counters.take("b", 3).unwrap();
        drop(a);
        assert!(counters.take("a", 3).is_ok());
        drop(b);
        assert!(counters.0.lock().unwrap().is_empty());
    }
}
