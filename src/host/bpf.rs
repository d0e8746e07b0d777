//! The few bpf(2) calls vportd makes, for the programs it writes instruction by instruction
//! (no clang, libbpf or bpftool here): the AF_XDP edge's redirect program
//! ([`super::afxdp`]) and the switch's flow cache ([`super::tcflow`]). Each attribute struct
//! is a repr(C) prefix of the kernel's `union bpf_attr` for its command; the kernel treats
//! the bytes it is not given as zero, and refuses non-zero bytes it does not know.
//!
//! Programs are loaded with the licence string [`PROGRAM_LICENSE`], the project's own: see
//! there why no GPL string is needed, and [`load`] for the check that keeps it true.

use std::ffi::c_void;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

pub(crate) const BPF_MAP_CREATE: u32 = 0;
pub(crate) const BPF_MAP_UPDATE_ELEM: u32 = 2;
pub(crate) const BPF_MAP_DELETE_ELEM: u32 = 3;
pub(crate) const BPF_PROG_LOAD: u32 = 5;
pub(crate) const BPF_MAP_GET_FD_BY_ID: u32 = 14;
pub(crate) const BPF_OBJ_GET_INFO_BY_FD: u32 = 15;
pub(crate) const BPF_LINK_CREATE: u32 = 28;
pub(crate) const BPF_LINK_GET_FD_BY_ID: u32 = 30;

/// `src` of a 64-bit immediate load: the immediate is a map's descriptor.
pub(crate) const BPF_PSEUDO_MAP_FD: u8 = 1;
/// `src` of a 64-bit immediate load: a map descriptor and an offset into its first value.
pub(crate) const BPF_PSEUDO_MAP_VALUE: u8 = 2;

/// bpf(2) with `attr`; the command's non-negative result.
pub(crate) fn sys<T>(cmd: u32, attr: &mut T) -> std::io::Result<i64> {
    // SAFETY: bpf(2) reads (and for some commands writes) `size_of::<T>()` bytes of `attr`,
    // a live repr(C) prefix of `union bpf_attr`; the kernel zero-extends shorter attributes.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            cmd as libc::c_long,
            (attr as *mut T).cast::<c_void>(),
            std::mem::size_of::<T>() as libc::c_long,
        )
    };
    if rc < 0 {
        Err(std::io::Error::last_os_error())
    } else {
        Ok(rc)
    }
}

/// bpf(2) for a command that returns a new descriptor.
pub(crate) fn fd<T>(cmd: u32, attr: &mut T) -> std::io::Result<OwnedFd> {
    let fd = sys(cmd, attr)?;
    // SAFETY: the commands passed here return a new descriptor owned by nothing else.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as RawFd) })
}

#[repr(C)]
#[derive(Default)]
struct MapCreate {
    map_type: u32,
    key_size: u32,
    value_size: u32,
    max_entries: u32,
    map_flags: u32,
    inner_map_fd: u32,
    numa_node: u32,
    map_name: [u8; 16],
}

#[repr(C)]
struct MapElem {
    map_fd: u32,
    _pad: u32,
    key: u64,
    value: u64,
    flags: u64,
}

#[repr(C)]
#[derive(Default)]
struct ProgLoad {
    prog_type: u32,
    insn_cnt: u32,
    insns: u64,
    license: u64,
    log_level: u32,
    log_size: u32,
    log_buf: u64,
    kern_version: u32,
    prog_flags: u32,
    prog_name: [u8; 16],
    prog_ifindex: u32,
    expected_attach_type: u32,
}

#[repr(C)]
#[derive(Default)]
struct LinkCreate {
    prog_fd: u32,
    target_ifindex: u32,
    attach_type: u32,
    flags: u32,
    /// tcx: relative_fd, then expected_revision (u64, aligned); zero for XDP.
    relative_fd: u32,
    _pad: u32,
    expected_revision: u64,
}

/// An object name as the kernel keeps it: at most 15 bytes and a NUL.
fn name16(s: &str) -> [u8; 16] {
    let mut b = [0u8; 16];
    let n = s.len().min(15);
    b[..n].copy_from_slice(&s.as_bytes()[..n]);
    b
}

/// Creates a map.
pub(crate) fn create_map(
    name: &str,
    map_type: u32,
    key_size: u32,
    value_size: u32,
    max_entries: u32,
    flags: u32,
) -> std::io::Result<OwnedFd> {
    let mut attr = MapCreate {
        map_type,
        key_size,
        value_size,
        max_entries,
        map_flags: flags,
        map_name: name16(name),
        ..Default::default()
    };
    fd(BPF_MAP_CREATE, &mut attr)
}

/// A map element command (update, delete) on `key`, with `value` where it takes one.
pub(crate) fn map_elem(
    cmd: u32,
    map: &OwnedFd,
    key: &[u8],
    value: Option<&[u8]>,
    flags: u64,
) -> std::io::Result<()> {
    let mut attr = MapElem {
        map_fd: map.as_raw_fd() as u32,
        _pad: 0,
        key: key.as_ptr() as u64,
        value: value.map_or(0, |v| v.as_ptr() as u64),
        flags,
    };
    sys(cmd, &mut attr).map(|_| ())
}

/// `struct bpf_insn`.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Insn {
    pub(crate) code: u8,
    /// dst in the low nibble, src in the high one.
    pub(crate) regs: u8,
    pub(crate) off: i16,
    pub(crate) imm: i32,
}

pub(crate) const fn insn(code: u8, dst: u8, src: u8, off: i16, imm: i32) -> Insn {
    Insn {
        code,
        regs: dst | (src << 4),
        off,
        imm,
    }
}

/// The licence string every program is loaded with: vportd's own licence, since the
/// instructions are vportd's code. The kernel reserves its GPL-only helpers for programs
/// whose string is GPL-compatible ("GPL", "Dual MIT/GPL"...); ours call only helpers open to
/// every program, so claiming GPL would relicense them for nothing:
/// bpf_map_lookup_elem, bpf_redirect, bpf_skb_load_bytes and bpf_redirect_peer (the flow
/// cache, `host::tcflow`), bpf_redirect_map (the AF_XDP edge, `host::afxdp`), none of them
/// `gpl_only` in the kernel's helper prototypes. [`load`] refuses a program that calls any
/// other helper, so adding one means reviewing this string first.
pub(crate) const PROGRAM_LICENSE: &std::ffi::CStr = c"MIT OR Apache-2.0";

/// The helpers (by `enum bpf_func_id`) the programs may call under [`PROGRAM_LICENSE`]:
/// map_lookup_elem, redirect, skb_load_bytes, redirect_map, redirect_peer.
const NON_GPL_HELPERS: &[i32] = &[1, 23, 26, 51, 155];

/// The first helper `insns` call that is not in [`NON_GPL_HELPERS`], if any (a call is
/// BPF_JMP|BPF_CALL, 0x85, with src 0; src 1 and 2 are calls to BPF functions and kfuncs).
fn unreviewed_helper(insns: &[Insn]) -> Option<i32> {
    insns
        .iter()
        .find(|i| i.code == 0x85 && i.regs >> 4 == 0 && !NON_GPL_HELPERS.contains(&i.imm))
        .map(|i| i.imm)
}

/// Loads a program. On a refusal, the error and the verifier's log (asked for in a second
/// load, so that a good load costs no log buffer), trimmed.
pub(crate) fn load(
    name: &str,
    prog_type: u32,
    prog_flags: u32,
    insns: &[Insn],
) -> Result<OwnedFd, (std::io::Error, String)> {
    if let Some(helper) = unreviewed_helper(insns) {
        return Err((
            std::io::Error::other(format!(
                "the BPF program {name} calls helper {helper}, which is not among those \
                 reviewed for the licence string {PROGRAM_LICENSE:?} (host::bpf::NON_GPL_HELPERS)"
            )),
            String::new(),
        ));
    }
    let license = PROGRAM_LICENSE;
    let mut attr = ProgLoad {
        prog_type,
        insn_cnt: insns.len() as u32,
        insns: insns.as_ptr() as u64,
        license: license.as_ptr() as u64,
        prog_flags,
        prog_name: name16(name),
        ..Default::default()
    };
    match fd(BPF_PROG_LOAD, &mut attr) {
        Ok(fd) => Ok(fd),
        Err(e) => {
            let mut log = vec![0u8; 65536];
            attr.log_level = 1;
            attr.log_size = log.len() as u32;
            attr.log_buf = log.as_mut_ptr() as u64;
            let _ = fd(BPF_PROG_LOAD, &mut attr);
            let end = log.iter().position(|b| *b == 0).unwrap_or(log.len());
            Err((e, String::from_utf8_lossy(&log[..end]).trim().to_string()))
        }
    }
}

/// Attaches `prog` to the netdev `ifindex` through a BPF link, which the kernel detaches
/// when its last descriptor closes (kill -9 included).
pub(crate) fn link_create(
    prog: &OwnedFd,
    ifindex: u32,
    attach_type: u32,
    flags: u32,
) -> std::io::Result<OwnedFd> {
    let mut attr = LinkCreate {
        prog_fd: prog.as_raw_fd() as u32,
        target_ifindex: ifindex,
        attach_type,
        flags,
        ..Default::default()
    };
    fd(BPF_LINK_CREATE, &mut attr)
}

#[repr(C)]
#[derive(Default)]
struct GetById {
    id: u32,
    next_id: u32,
    open_flags: u32,
}

/// Whether a BPF object with this id still exists (anywhere on the host); `cmd` is
/// BPF_LINK_GET_FD_BY_ID or BPF_MAP_GET_FD_BY_ID.
pub(crate) fn exists(cmd: u32, id: u32) -> bool {
    let mut attr = GetById {
        id,
        ..Default::default()
    };
    fd(cmd, &mut attr).is_ok()
}

#[repr(C)]
struct InfoByFd {
    bpf_fd: u32,
    info_len: u32,
    info: u64,
}

/// A u32 at byte `at` of a BPF object's info (`struct bpf_map_info`, `bpf_link_info`: the id
/// is at 4 in both).
pub(crate) fn info_u32(obj: &OwnedFd, at: usize) -> std::io::Result<u32> {
    let mut info = [0u8; 256];
    let mut attr = InfoByFd {
        bpf_fd: obj.as_raw_fd() as u32,
        info_len: info.len() as u32,
        info: info.as_mut_ptr() as u64,
    };
    sys(BPF_OBJ_GET_INFO_BY_FD, &mut attr)?;
    Ok(u32::from_ne_bytes(
        info[at..at + 4].try_into().expect("4 bytes"),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_cut_to_fifteen_bytes_and_a_nul() {
        assert_eq!(&name16("vportd_xsk")[..11], b"vportd_xsk\0");
        let long = name16("a_name_longer_than_fifteen");
        assert_eq!(&long[..15], b"a_name_longer_t");
        assert_eq!(long[15], 0);
    }

    #[test]
    fn attribute_layouts_match_the_kernel() {
        // Offsets from include/uapi/linux/bpf.h: prog_name at 48, expected_attach_type at
        // 68 in the PROG_LOAD part; link_create's tcx revision at 24.
        assert_eq!(std::mem::offset_of!(ProgLoad, prog_name), 48);
        assert_eq!(std::mem::offset_of!(ProgLoad, expected_attach_type), 68);
        assert_eq!(std::mem::offset_of!(LinkCreate, expected_revision), 24);
        assert_eq!(std::mem::offset_of!(MapCreate, map_name), 28);
        assert_eq!(std::mem::size_of::<Insn>(), 8);
    }

    #[test]
    fn only_reviewed_helpers_may_be_called() {
        let call = |imm| insn(0x85, 0, 0, 0, imm);
        let exit = insn(0x95, 0, 0, 0, 0);
        assert_eq!(
            unreviewed_helper(&[call(1), call(23), call(155), exit]),
            None
        );
        // bpf_trace_printk (6) is GPL-only: not under this licence string.
        assert_eq!(unreviewed_helper(&[call(51), call(6), exit]), Some(6));
        // A call to a BPF function (src 1) is no helper, whatever its immediate.
        assert_eq!(unreviewed_helper(&[insn(0x85, 0, 1, 0, 6), exit]), None);
        let (e, log) = load("t", 6, 0, &[call(6), exit]).expect_err("refused before bpf(2)");
        assert!(
            e.to_string().contains("calls helper 6") && log.is_empty(),
            "{e}"
        );
    }
}
