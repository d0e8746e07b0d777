//! The kernel half of the switch's flow cache (switch::flowcache): two small eBPF programs
//! and their maps, written here instruction by instruction and loaded with raw bpf(2) calls
//! (no clang, libbpf or bpftool on the build machine; host::afxdp does the same).
//!
//! - A **socket filter** per port, on the packet socket of the port's AF_PACKET edge. Packet
//!   taps see a received frame before tc ingress does (`__netif_receive_skb_core`: the
//!   `ptype_all` taps, the last one delivered at the top of `sch_handle_ingress`, then
//!   `tcx_run`), so this program decides a frame's fate: a frame of an active flow returns 0
//!   (the ring does not get it); any other frame is let in and counted in the edge's
//!   [`RxCounter`]. A flow still arming turns active here, on the first of its frames that
//!   finds the edge's counter balanced (nothing in the ring the switch has not sent).
//! - A **tc ingress program** (BPF_PROG_TYPE_SCHED_CLS) attached to each port's netdev with a
//!   tcx link (BPF_LINK_CREATE, BPF_TCX_INGRESS, kernel 6.6 and later). It does not look the
//!   flow up again: the socket filter left its verdict in a per-CPU scratch slot (a frame's
//!   tap and its tc ingress run back to back on one CPU, in one softirq), and tc only acts on
//!   a verdict whose key matches the frame it sees: counts the hit (packets, bytes) in the
//!   flow's slot and redirects it the way the slot says: to the destination netdev's egress
//!   (`bpf_redirect`), or, for a veth whose peer is in another namespace, straight into the
//!   peer's receive path (`bpf_redirect_peer`; switch::flowcache::choose_redirect says when
//!   the kernel takes it). (No last-hit time: the
//!   switch sweeps once a second and sees hits as counter deltas, which is all aging needs;
//!   bpf_ktime_get_ns would cost a helper call per frame for nothing.) Anything else goes
//!   on (TCX_NEXT). Deciding once is what makes delivery exactly-once even while flows are
//!   installed and removed between a frame's tap and its tc hook.
//!
//! Maps: `flows` (hash: the 24-byte key of switch::flowcache::FlowKey -> slot number),
//! `state` (one mmap-able array value holding every slot: 64 bytes each, state (u32 at 0),
//! destination ifindex (u32 at 4), packets (u64 at 8), bytes (u64 at 16), redirect mode (u32
//! at 24)), `scratch` (per-CPU, one 40-byte value: key, verdict at 24, destination at 28,
//! slot at 32, mode at 36), and per edge
//! the receive counter (mmap-able: frames let in, frames consumed). User space reads counters
//! and writes slot state through the mappings, with no system call.
//!
//! Everything dies with the process: links detach when their descriptor closes (kill -9
//! included), programs and maps go with their last reference. A new start never finds
//! anything of ours to clean up. The licence string is vportd's own, as in host::afxdp
//! (`bpf::PROGRAM_LICENSE`): the helpers used (map lookup, bpf_skb_load_bytes, bpf_redirect,
//! bpf_redirect_peer) are not GPL-only, and the kernel accepting the load says so.

use std::collections::HashMap;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};

use super::bpf::{
    self, BPF_MAP_DELETE_ELEM, BPF_MAP_UPDATE_ELEM, BPF_PSEUDO_MAP_FD, BPF_PSEUDO_MAP_VALUE, Insn,
    map_elem,
};
use crate::switch::PortId;
use crate::switch::flowcache::{
    FlowBackend, FlowKey, LinkFacts, Redirect, SLOT_ACTIVE, SLOT_ARMING, SLOT_FREE, SlotCounters,
};
use crate::switch::io::KernelPort;

/// Errors setting the fast path up.
#[derive(Debug, thiserror::Error)]
pub enum TcFlowError {
    #[error("cannot create the BPF map {name}: {source}")]
    Map {
        name: &'static str,
        #[source]
        source: std::io::Error,
    },
    #[error("the kernel refused the eBPF program {name}: {source}; verifier says: {log}")]
    Load {
        name: &'static str,
        log: String,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot map {name} into memory: {source}")]
    Mmap {
        name: &'static str,
        #[source]
        source: std::io::Error,
    },
}

/// Slots (flows) one switch can cache.
pub const SLOTS: u32 = 4096;
const SLOT_SIZE: usize = 64;
const KEY_SIZE: u32 = 24;
const SCRATCH_SIZE: u32 = 40;
/// Where a slot keeps its [`Redirect`] mode.
const SLOT_MODE: usize = 24;
// Clear of the counters (bytes end at 24), inside the slot.
const _: () = assert!(SLOT_MODE >= 24 && SLOT_MODE + 4 <= SLOT_SIZE);

/// Program names, as `bpftool prog` would show them.
pub const FILTER_NAME: &str = "vportd_fast_sk";
pub const TC_NAME: &str = "vportd_fast_tc";
pub const COUNT_NAME: &str = "vportd_rx_count";

// bpf(2) commands, map and program types, attach types (include/uapi/linux/bpf.h).
const BPF_MAP_TYPE_HASH: u32 = 1;
const BPF_MAP_TYPE_ARRAY: u32 = 2;
const BPF_MAP_TYPE_PERCPU_ARRAY: u32 = 6;
const BPF_PROG_TYPE_SOCKET_FILTER: u32 = 1;
const BPF_PROG_TYPE_SCHED_CLS: u32 = 3;
const BPF_TCX_INGRESS: u32 = 46;
const BPF_F_MMAPABLE: u32 = 1 << 10;
const BPF_NOEXIST: u64 = 1;

// Helpers.
const FN_MAP_LOOKUP_ELEM: i32 = 1;
const FN_REDIRECT: i32 = 23;
const FN_SKB_LOAD_BYTES: i32 = 26;
const FN_REDIRECT_PEER: i32 = 155;

// struct __sk_buff offsets.
const SKB_LEN: i16 = 0;
const SKB_VLAN_PRESENT: i16 = 20;
const SKB_VLAN_TCI: i16 = 24;
const SKB_VLAN_PROTO: i16 = 28;
const SKB_IFINDEX: i16 = 40;
const SKB_DATA: i16 = 76;
const SKB_DATA_END: i16 = 80;

/// What a socket filter returns to let a frame in whole (its snap length).
const ACCEPT: i32 = 0x40000;
/// tcx: no verdict, the next program (or the stack) decides.
const TCX_NEXT: i32 = -1;

fn create_map(
    name: &'static str,
    map_type: u32,
    key_size: u32,
    value_size: u32,
    max_entries: u32,
    flags: u32,
) -> Result<OwnedFd, TcFlowError> {
    bpf::create_map(name, map_type, key_size, value_size, max_entries, flags)
        .map_err(|source| TcFlowError::Map { name, source })
}

/// A shared read-write mapping of an mmap-able array map.
struct Mapping {
    ptr: *mut u8,
    len: usize,
}

// SAFETY: the mapping is plain shared memory; every access goes through atomics.
unsafe impl Send for Mapping {}

impl Mapping {
    fn new(name: &'static str, map: &OwnedFd, bytes: usize) -> Result<Self, TcFlowError> {
        let len = bytes.div_ceil(4096) * 4096;
        // SAFETY: mapping an mmap-able BPF array as the kernel prescribes: shared, read-write,
        // its data rounded up to pages; the result is checked for MAP_FAILED.
        let ptr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED,
                map.as_raw_fd(),
                0,
            )
        };
        if ptr == libc::MAP_FAILED {
            return Err(TcFlowError::Mmap {
                name,
                source: std::io::Error::last_os_error(),
            });
        }
        Ok(Mapping {
            ptr: ptr.cast(),
            len,
        })
    }

    fn u64_at(&self, off: usize) -> &AtomicU64 {
        assert!(off + 8 <= self.len && off.is_multiple_of(8));
        // SAFETY: in bounds and 8-aligned (checked; the mapping is page-aligned); the memory
        // is shared with the kernel, which only touches it with atomic or aligned accesses.
        unsafe { &*(self.ptr.add(off) as *const AtomicU64) }
    }

    fn u32_at(&self, off: usize) -> &AtomicU32 {
        assert!(off + 4 <= self.len && off.is_multiple_of(4));
        // SAFETY: as in `u64_at`, 4-aligned.
        unsafe { &*(self.ptr.add(off) as *const AtomicU32) }
    }
}

impl Drop for Mapping {
    fn drop(&mut self) {
        // SAFETY: ptr/len are exactly what mmap returned; nothing borrows the mapping once
        // its owner is being dropped.
        unsafe {
            libc::munmap(self.ptr.cast(), self.len);
        }
    }
}

// Opcodes used (class | size/op | source).
const LDXW: u8 = 0x61;
const LDXDW: u8 = 0x79;
const LDXH: u8 = 0x69;
const STXW: u8 = 0x63;
const STXH: u8 = 0x6b;
const STXDW: u8 = 0x7b;
const STW: u8 = 0x62;
const MOV64K: u8 = 0xb7;
const MOV64X: u8 = 0xbf;
const ADD64K: u8 = 0x07;
const ADD64X: u8 = 0x0f;
const LSH64K: u8 = 0x67;
const JEQK: u8 = 0x15;
const JNEK: u8 = 0x55;
const JNEX: u8 = 0x5d;
const JGTX: u8 = 0x2d;
const JGEK: u8 = 0x35;
const CALL: u8 = 0x85;
const EXIT: u8 = 0x95;
const LDDW: u8 = 0x18;
/// BPF_STX | BPF_ATOMIC | BPF_DW with imm BPF_ADD: `lock *(u64 *)(dst + off) += src`.
const XADDDW: u8 = 0xdb;

/// A tiny assembler: instructions plus forward jumps to named labels.
struct Asm {
    insns: Vec<Insn>,
    labels: HashMap<&'static str, usize>,
    fixups: Vec<(usize, &'static str)>,
}

impl Asm {
    fn new() -> Self {
        Asm {
            insns: Vec::new(),
            labels: HashMap::new(),
            fixups: Vec::new(),
        }
    }

    fn op(&mut self, code: u8, dst: u8, src: u8, off: i16, imm: i32) {
        self.insns.push(Insn {
            code,
            regs: dst | (src << 4),
            off,
            imm,
        });
    }

    /// A conditional (or, with JA, plain) jump to `label`, resolved by `finish`.
    fn jmp(&mut self, code: u8, dst: u8, src: u8, imm: i32, label: &'static str) {
        self.fixups.push((self.insns.len(), label));
        self.op(code, dst, src, 0, imm);
    }

    fn label(&mut self, name: &'static str) {
        self.labels.insert(name, self.insns.len());
    }

    /// `dst = map` (a 64-bit immediate: two instructions).
    fn ld_map(&mut self, dst: u8, map: RawFd) {
        self.op(LDDW, dst, BPF_PSEUDO_MAP_FD, 0, map);
        self.op(0, 0, 0, 0, 0);
    }

    /// `dst = &value[off]` of a one-element array map.
    fn ld_map_value(&mut self, dst: u8, map: RawFd, off: i32) {
        self.op(LDDW, dst, BPF_PSEUDO_MAP_VALUE, 0, map);
        self.op(0, 0, 0, 0, off);
    }

    fn finish(mut self) -> Vec<Insn> {
        for (at, label) in std::mem::take(&mut self.fixups) {
            let to = self.labels[label];
            self.insns[at].off = (to as isize - at as isize - 1) as i16;
        }
        self.insns
    }
}

/// Builds the flow key of the frame in `r6` (the context) on the stack at r10-24, exactly as
/// switch::flowcache::FlowKey lays it out; jumps to `fail` when the frame is shorter than two
/// MACs. Clobbers r0-r5.
fn emit_key(a: &mut Asm, fail: &'static str) {
    a.op(LDXW, 0, 6, SKB_IFINDEX, 0); //       r0 = skb->ifindex
    a.op(STXW, 10, 0, -24, 0); //              key.ifindex = r0
    a.op(MOV64X, 1, 6, 0, 0); //               r1 = skb
    a.op(MOV64K, 2, 0, 0, 0); //               r2 = 0 (offset: the MAC header)
    a.op(MOV64X, 3, 10, 0, 0); //              r3 = &key.dst
    a.op(ADD64K, 3, 0, 0, -20);
    a.op(MOV64K, 4, 0, 0, 12); //              r4 = 12 (dst MAC, src MAC)
    a.op(CALL, 0, 0, 0, FN_SKB_LOAD_BYTES);
    a.jmp(JNEK, 0, 0, 0, fail); //             short frame
    a.op(MOV64K, 1, 0, 0, 0); //               r1 = tci = 0
    a.op(MOV64K, 2, 0, 0, 0); //               r2 = tpid = 0
    a.op(LDXW, 0, 6, SKB_VLAN_PRESENT, 0); //  the outer tag, taken out of the frame by the
    a.op(JEQK, 0, 0, 2, 0); //                 kernel before taps and tc: skip 2 if none
    a.op(LDXW, 1, 6, SKB_VLAN_TCI, 0); //      r1 = skb->vlan_tci (host order)
    a.op(LDXW, 2, 6, SKB_VLAN_PROTO, 0); //    r2 = skb->vlan_proto (network order)
    a.op(STXH, 10, 1, -8, 0); //               key.tci
    a.op(STXH, 10, 2, -6, 0); //               key.tpid
    a.op(STW, 10, 0, -4, 0); //                key padding = 0
}

/// The socket filter of one port (module doc). Registers: r6 the skb, r7 this CPU's scratch,
/// r8 the flow's slot.
fn filter_program(scratch: RawFd, flows: RawFd, state: RawFd, counter: RawFd) -> Vec<Insn> {
    let mut a = Asm::new();
    a.op(MOV64X, 6, 1, 0, 0); //               r6 = skb
    a.op(STW, 10, 0, -32, 0); //               zero = 0 (the scratch map's key)
    a.ld_map(1, scratch);
    a.op(MOV64X, 2, 10, 0, 0);
    a.op(ADD64K, 2, 0, 0, -32);
    a.op(CALL, 0, 0, 0, FN_MAP_LOOKUP_ELEM); // r0 = &scratch[this CPU]
    a.jmp(JEQK, 0, 0, 0, "accept");
    a.op(MOV64X, 7, 0, 0, 0); //               r7 = scratch
    a.op(STW, 7, 0, 24, 0); //                 scratch.verdict = miss
    emit_key(&mut a, "accept");
    for off in [-24i16, -16, -8] {
        a.op(LDXDW, 1, 10, off, 0); //         scratch.key = key (3 x 8 bytes)
        a.op(STXDW, 7, 1, off + 24, 0);
    }
    a.ld_map(1, flows);
    a.op(MOV64X, 2, 10, 0, 0);
    a.op(ADD64K, 2, 0, 0, -24);
    a.op(CALL, 0, 0, 0, FN_MAP_LOOKUP_ELEM); // r0 = &flows[key]
    a.jmp(JEQK, 0, 0, 0, "accept"); //         not cached: the switch's ring
    a.op(LDXW, 1, 0, 0, 0); //                 r1 = slot
    a.jmp(JGEK, 1, 0, SLOTS as i32, "accept"); // (bounds the offset for the verifier)
    a.op(STXW, 7, 1, 32, 0); //                scratch.slot = slot
    a.op(LSH64K, 1, 0, 0, 6); //               r1 = slot * 64
    a.ld_map_value(8, state, 0);
    a.op(ADD64X, 8, 1, 0, 0); //               r8 = &state[slot]
    a.op(LDXW, 1, 8, 0, 0); //                 r1 = slot.state
    a.jmp(JEQK, 1, 0, SLOT_ACTIVE as i32, "hit");
    a.jmp(JNEK, 1, 0, SLOT_ARMING as i32, "accept");
    a.ld_map_value(1, counter, 0); //          arming: is the ring empty of what the
    a.op(LDXDW, 2, 1, 0, 0); //                switch has not sent? let in == consumed
    a.op(LDXDW, 3, 1, 8, 0);
    a.jmp(JNEX, 2, 3, 0, "accept");
    a.op(STW, 8, 0, 0, SLOT_ACTIVE as i32); // slot.state = active
    a.label("hit");
    a.op(LDXW, 1, 8, 4, 0); //                 scratch.out = slot.out_ifindex
    a.op(STXW, 7, 1, 28, 0);
    a.op(LDXW, 1, 8, SLOT_MODE as i16, 0); //  scratch.mode = slot.mode
    a.op(STXW, 7, 1, 36, 0);
    a.op(STW, 7, 0, 24, 1); //                 scratch.verdict = hit
    a.op(MOV64K, 0, 0, 0, 0); //               return 0: not for the ring
    a.op(EXIT, 0, 0, 0, 0);
    a.label("accept");
    a.ld_map_value(1, counter, 0);
    a.op(MOV64K, 2, 0, 0, 1);
    a.op(XADDDW, 1, 2, 0, 0); //               counter.let_in += 1
    a.op(MOV64K, 0, 0, 0, ACCEPT); //          return the whole frame
    a.op(EXIT, 0, 0, 0, 0);
    a.finish()
}

/// The tc ingress program, shared by every port of a switch. It compares the frame with the
/// key the socket filter left in the scratch slot reading the frame directly (tc programs
/// may; socket filters may not), which spares a helper call and a copy per frame. Registers:
/// r6 the skb, r7 this CPU's scratch, r8 the flow's slot, r9 the destination ifindex.
fn tc_program(scratch: RawFd, state: RawFd) -> Vec<Insn> {
    let mut a = Asm::new();
    a.op(MOV64X, 6, 1, 0, 0); //               r6 = skb
    a.op(STW, 10, 0, -32, 0);
    a.ld_map(1, scratch);
    a.op(MOV64X, 2, 10, 0, 0);
    a.op(ADD64K, 2, 0, 0, -32);
    a.op(CALL, 0, 0, 0, FN_MAP_LOOKUP_ELEM); // r0 = &scratch[this CPU]
    a.jmp(JEQK, 0, 0, 0, "pass");
    a.op(MOV64X, 7, 0, 0, 0);
    a.op(LDXW, 1, 7, 24, 0); //                the tap's verdict: hit?
    a.jmp(JNEK, 1, 0, 1, "pass");
    a.op(STW, 7, 0, 24, 0); //                 used once
    // Is it this very frame? ifindex, both MACs, the outer tag, against the scratch key.
    a.op(LDXW, 2, 6, SKB_DATA, 0); //          r2 = data (the MAC header at tc ingress)
    a.op(LDXW, 3, 6, SKB_DATA_END, 0);
    a.op(MOV64X, 1, 2, 0, 0);
    a.op(ADD64K, 1, 0, 0, 12);
    a.jmp(JGTX, 1, 3, 0, "pass"); //           fewer than 12 bytes
    a.op(LDXW, 1, 6, SKB_IFINDEX, 0);
    a.op(LDXW, 4, 7, 0, 0);
    a.jmp(JNEX, 1, 4, 0, "pass");
    a.op(LDXW, 1, 2, 0, 0); //                 frame bytes 0..4 (dst MAC)
    a.op(LDXW, 4, 7, 4, 0);
    a.jmp(JNEX, 1, 4, 0, "pass");
    a.op(LDXDW, 1, 2, 4, 0); //                frame bytes 4..12 (dst MAC, src MAC)
    a.op(LDXDW, 4, 7, 8, 0);
    a.jmp(JNEX, 1, 4, 0, "pass");
    a.op(MOV64K, 1, 0, 0, 0); //               r1 = tci, r2 = tpid: 0 when untagged
    a.op(MOV64K, 2, 0, 0, 0);
    a.op(LDXW, 0, 6, SKB_VLAN_PRESENT, 0);
    a.op(JEQK, 0, 0, 2, 0);
    a.op(LDXW, 1, 6, SKB_VLAN_TCI, 0);
    a.op(LDXW, 2, 6, SKB_VLAN_PROTO, 0);
    a.op(LDXH, 4, 7, 16, 0);
    a.jmp(JNEX, 1, 4, 0, "pass");
    a.op(LDXH, 4, 7, 18, 0);
    a.jmp(JNEX, 2, 4, 0, "pass");
    a.op(LDXW, 1, 7, 32, 0); //                r1 = scratch.slot
    a.jmp(JGEK, 1, 0, SLOTS as i32, "pass");
    a.op(LSH64K, 1, 0, 0, 6);
    a.ld_map_value(8, state, 0);
    a.op(ADD64X, 8, 1, 0, 0); //               r8 = &state[slot]
    a.op(MOV64K, 1, 0, 0, 1);
    a.op(XADDDW, 8, 1, 8, 0); //               slot.packets += 1
    a.op(LDXW, 1, 6, SKB_LEN, 0);
    a.op(XADDDW, 8, 1, 16, 0); //              slot.bytes += skb->len
    a.op(LDXW, 3, 7, 36, 0); //                r3 = scratch.mode
    a.op(LDXW, 1, 7, 28, 0); //                r1 = scratch.out
    a.op(MOV64K, 2, 0, 0, 0); //               r2 = flags = 0 (egress)
    a.jmp(JEQK, 3, 0, Redirect::Peer as i32, "peer");
    a.op(CALL, 0, 0, 0, FN_REDIRECT); //       return bpf_redirect(out, egress)
    a.op(EXIT, 0, 0, 0, 0);
    a.label("peer");
    a.op(CALL, 0, 0, 0, FN_REDIRECT_PEER); //  return bpf_redirect_peer(out, 0)
    a.op(EXIT, 0, 0, 0, 0);
    a.label("pass");
    a.op(MOV64K, 0, 0, 0, TCX_NEXT);
    a.op(EXIT, 0, 0, 0, 0);
    a.finish()
}

/// The edge's own filter: counts every frame it lets in. Attached before the socket is
/// bound, so not one frame reaches the ring uncounted.
fn count_program(counter: RawFd) -> Vec<Insn> {
    let mut a = Asm::new();
    a.ld_map_value(1, counter, 0); //          r1 = &counter.let_in
    a.op(MOV64K, 2, 0, 0, 1);
    a.op(XADDDW, 1, 2, 0, 0); //               += 1
    a.op(MOV64K, 0, 0, 0, ACCEPT); //          the whole frame
    a.op(EXIT, 0, 0, 0, 0);
    a.finish()
}

fn load(name: &'static str, prog_type: u32, insns: &[Insn]) -> Result<OwnedFd, TcFlowError> {
    bpf::load(name, prog_type, 0, insns).map_err(|(source, log)| {
        // The verifier's last lines say what it refused.
        let tail: Vec<&str> = log.lines().rev().take(12).collect();
        TcFlowError::Load {
            name,
            log: tail.into_iter().rev().collect::<Vec<_>>().join(" | "),
            source,
        }
    })
}

fn attach_tcx(prog: &OwnedFd, ifindex: u32) -> std::io::Result<OwnedFd> {
    bpf::link_create(prog, ifindex, BPF_TCX_INGRESS, 0)
}

fn info_u32(fd: &OwnedFd, at: usize) -> std::io::Result<u32> {
    bpf::info_u32(fd, at)
}

/// Whether a BPF link with this id still exists (anywhere on the host).
pub fn link_exists(id: u32) -> bool {
    bpf::exists(bpf::BPF_LINK_GET_FD_BY_ID, id)
}

/// Whether a BPF map with this id still exists.
pub fn map_exists(id: u32) -> bool {
    bpf::exists(bpf::BPF_MAP_GET_FD_BY_ID, id)
}

/// An AF_PACKET edge's receive counter: frames its socket filter let in (written by the
/// kernel programs) and frames the edge took off its ring or lost to a full one (written by
/// the edge), side by side in one mmap-able array value.
pub struct RxCounter {
    map: OwnedFd,
    mem: Mapping,
    count_prog: OwnedFd,
}

impl RxCounter {
    pub fn new() -> Result<Self, TcFlowError> {
        let map = create_map(
            "vportd_rx_cnt",
            BPF_MAP_TYPE_ARRAY,
            4,
            16,
            1,
            BPF_F_MMAPABLE,
        )?;
        let mem = Mapping::new("the receive counter", &map, 16)?;
        let count_prog = load(
            COUNT_NAME,
            BPF_PROG_TYPE_SOCKET_FILTER,
            &count_program(map.as_raw_fd()),
        )?;
        Ok(RxCounter {
            map,
            mem,
            count_prog,
        })
    }

    pub fn map_fd(&self) -> RawFd {
        self.map.as_raw_fd()
    }

    /// The counting filter, for SO_ATTACH_BPF.
    pub fn count_prog(&self) -> RawFd {
        self.count_prog.as_raw_fd()
    }

    /// Frames the socket filter let in so far.
    pub fn let_in(&self) -> u64 {
        self.mem.u64_at(0).load(Ordering::Acquire)
    }

    /// Publishes how many of them the edge has consumed (handed on or seen dropped).
    pub fn set_consumed(&self, n: u64) {
        self.mem.u64_at(8).store(n, Ordering::Release);
    }
}

struct PortLink {
    _filter: OwnedFd,
    _link: OwnedFd,
    link_id: u32,
}

/// The kernel half of one switch's flow cache.
pub struct KernelFlows {
    flows: OwnedFd,
    state: OwnedFd,
    scratch: OwnedFd,
    mem: Mapping,
    tc: OwnedFd,
    ports: HashMap<PortId, PortLink>,
}

impl KernelFlows {
    /// Creates the maps and loads the tc program. Fails on a kernel without what it needs
    /// (BPF, mmap-able arrays); tcx itself is checked when a port is attached.
    pub fn new() -> Result<Self, TcFlowError> {
        let flows = create_map("vportd_flows", BPF_MAP_TYPE_HASH, KEY_SIZE, 4, SLOTS, 0)?;
        let bytes = SLOTS as usize * SLOT_SIZE;
        let state = create_map(
            "vportd_fstate",
            BPF_MAP_TYPE_ARRAY,
            4,
            bytes as u32,
            1,
            BPF_F_MMAPABLE,
        )?;
        let scratch = create_map(
            "vportd_scratch",
            BPF_MAP_TYPE_PERCPU_ARRAY,
            4,
            SCRATCH_SIZE,
            1,
            0,
        )?;
        let mem = Mapping::new("the flow slots", &state, bytes)?;
        let tc = load(
            TC_NAME,
            BPF_PROG_TYPE_SCHED_CLS,
            &tc_program(scratch.as_raw_fd(), state.as_raw_fd()),
        )?;
        Ok(KernelFlows {
            flows,
            state,
            scratch,
            mem,
            tc,
            ports: HashMap::new(),
        })
    }
}

impl FlowBackend for KernelFlows {
    fn attach(&mut self, port: PortId, kp: &KernelPort) -> std::io::Result<RawFd> {
        self.detach(port);
        let insns = filter_program(
            self.scratch.as_raw_fd(),
            self.flows.as_raw_fd(),
            self.state.as_raw_fd(),
            kp.rx_counter,
        );
        let filter = load(FILTER_NAME, BPF_PROG_TYPE_SOCKET_FILTER, &insns)
            .map_err(std::io::Error::other)?;
        let link = attach_tcx(&self.tc, kp.ifindex)?;
        let link_id = info_u32(&link, 4)?;
        let fd = filter.as_raw_fd();
        self.ports.insert(
            port,
            PortLink {
                _filter: filter,
                _link: link,
                link_id,
            },
        );
        Ok(fd)
    }

    fn detach(&mut self, port: PortId) {
        self.ports.remove(&port);
    }

    fn insert(
        &mut self,
        key: &FlowKey,
        slot: u32,
        out_ifindex: u32,
        how: Redirect,
    ) -> std::io::Result<()> {
        let base = slot as usize * SLOT_SIZE;
        self.mem
            .u32_at(base + 4)
            .store(out_ifindex, Ordering::Relaxed);
        self.mem
            .u32_at(base + SLOT_MODE)
            .store(how as u32, Ordering::Relaxed);
        self.mem.u32_at(base).store(SLOT_ARMING, Ordering::Release);
        map_elem(
            BPF_MAP_UPDATE_ELEM,
            &self.flows,
            &key.0,
            Some(&slot.to_ne_bytes()),
            BPF_NOEXIST,
        )
    }

    fn remove(&mut self, key: &FlowKey, slot: u32) {
        let _ = map_elem(BPF_MAP_DELETE_ELEM, &self.flows, &key.0, None, 0);
        self.mem
            .u32_at(slot as usize * SLOT_SIZE)
            .store(SLOT_FREE, Ordering::Release);
    }

    fn read(&self, slot: u32) -> SlotCounters {
        let base = slot as usize * SLOT_SIZE;
        SlotCounters {
            state: self.mem.u32_at(base).load(Ordering::Acquire),
            packets: self.mem.u64_at(base + 8).load(Ordering::Relaxed),
            bytes: self.mem.u64_at(base + 16).load(Ordering::Relaxed),
        }
    }

    fn link_facts(&self, ifindex: u32) -> Option<LinkFacts> {
        link_facts(ifindex).ok()
    }

    fn slots(&self) -> u32 {
        SLOTS
    }

    fn kernel_ids(&self) -> (Vec<u32>, Vec<u32>) {
        let links = self.ports.values().map(|p| p.link_id).collect();
        let maps = [&self.flows, &self.state, &self.scratch]
            .iter()
            .filter_map(|m| info_u32(m, 4).ok())
            .collect();
        (links, maps)
    }
}

/// Asks rtnetlink about one netdev (RTM_GETLINK by ifindex, no statistics): its kind,
/// whether its link partner is in another namespace (IFLA_LINK_NETNSID present), and whether
/// it is operationally up.
pub fn link_facts(ifindex: u32) -> Result<LinkFacts, super::netlink::NetlinkError> {
    use netlink_packet_route::RouteNetlinkMessage;
    use netlink_packet_route::link::{LinkAttribute, LinkExtentMask, LinkInfo, LinkMessage, State};
    let mut get = LinkMessage::default();
    get.header.index = ifindex;
    get.attributes
        .push(LinkAttribute::ExtMask(vec![LinkExtentMask::SkipStats]));
    let what = format!("read link {ifindex}");
    let replies = super::netlink::request_blocking(&what, RouteNetlinkMessage::GetLink(get), 0)?;
    let mut facts = LinkFacts::default();
    for m in &replies {
        let RouteNetlinkMessage::NewLink(l) = m else {
            continue;
        };
        for attr in &l.attributes {
            match attr {
                LinkAttribute::LinkNetNsId(_) => facts.peer_elsewhere = true,
                LinkAttribute::OperState(s) => facts.up = *s == State::Up,
                LinkAttribute::LinkInfo(infos) => {
                    for i in infos {
                        if let LinkInfo::Kind(k) = i {
                            facts.kind = Some(k.to_string());
                        }
                    }
                }
                _ => {}
            }
        }
    }
    Ok(facts)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jumps_land_on_their_labels() {
        // Every jump stays inside its program and the last instruction is an exit.
        for p in [filter_program(3, 4, 5, 6), tc_program(3, 5)] {
            for (i, insn) in p.iter().enumerate() {
                if matches!(insn.code, JEQK | JNEK | JNEX | JGEK | JGTX) {
                    let to = i as isize + 1 + insn.off as isize;
                    assert!(to > i as isize && (to as usize) < p.len(), "jump at {i}");
                }
            }
            assert_eq!(p.last().unwrap().code, EXIT);
        }
        // The tc program has both ways out, each call followed by its exit.
        let t = tc_program(3, 5);
        for f in [FN_REDIRECT, FN_REDIRECT_PEER] {
            let at = t.iter().position(|i| i.code == CALL && i.imm == f);
            assert_eq!(t[at.expect("the call is there") + 1].code, EXIT);
        }
        assert_eq!(count_program(6).len(), 6);
    }
}
