//! The in-memory NIC: frames handed over through channels, for tests and for measuring the
//! pipeline without a kernel in the way.

use std::sync::mpsc::{Receiver, Sender, TryRecvError, channel};

use super::{Batch, Edge, Offload};

/// The switch's side.
pub struct MemEdge {
    from_peer: Receiver<Vec<u8>>,
    to_peer: Sender<Vec<u8>>,
}

/// The other side: what a VM or container would see.
pub struct MemPeer {
    to_switch: Sender<Vec<u8>>,
    from_switch: Receiver<Vec<u8>>,
}

/// A connected pair.
pub fn pair() -> (MemEdge, MemPeer) {
    let (a_tx, a_rx) = channel();
    let (b_tx, b_rx) = channel();
    (
        MemEdge {
            from_peer: a_rx,
            to_peer: b_tx,
        },
        MemPeer {
            to_switch: a_tx,
            from_switch: b_rx,
        },
    )
}

impl MemPeer {
    /// Hands a frame to the switch; false when the switch side is gone.
    pub fn inject(&self, frame: &[u8]) -> bool {
        self.to_switch.send(frame.to_vec()).is_ok()
    }

    /// Everything the switch sent so far.
    pub fn take(&self) -> Vec<Vec<u8>> {
        self.from_switch.try_iter().collect()
    }
}

impl Edge for MemEdge {
    fn kind(&self) -> &'static str {
        "mem"
    }

    fn recv(&mut self, batch: &mut Batch) -> std::io::Result<()> {
        while !batch.is_full() {
            match self.from_peer.try_recv() {
                Ok(f) => batch.push(&f, Offload::default()),
                Err(TryRecvError::Empty | TryRecvError::Disconnected) => break,
            }
        }
        Ok(())
    }

    fn send(&mut self, batch: &Batch) -> std::io::Result<usize> {
        let mut sent = 0;
        for (f, _) in batch.iter() {
            if self.to_peer.send(f.to_vec()).is_ok() {
                sent += 1;
            }
        }
        Ok(sent)
    }
}
