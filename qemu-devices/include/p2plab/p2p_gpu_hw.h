/* SPDX-License-Identifier: GPL-2.0-or-later OR MIT */
/*
 * p2p-gpu hardware interface: PCI IDs, BAR layout, BAR0 registers, the
 * Resizable BAR encoding, aperture commands and copy-engine descriptors.
 *
 * Shared by the QEMU device model (qemu-devices/p2p-gpu) and the guest
 * driver.  Everything is little-endian; structures use naturally aligned
 * fixed-width fields and their sizes are asserted below.
 * docs/devices/p2p-gpu.md is the prose specification of this header.
 */
#ifndef P2PLAB_P2P_GPU_HW_H
#define P2PLAB_P2P_GPU_HW_H

#ifdef __KERNEL__
#include <linux/types.h>
typedef __u32 p2p_gpu_u32;
typedef __u64 p2p_gpu_u64;
#else
#include <stdint.h>
typedef uint32_t p2p_gpu_u32;
typedef uint64_t p2p_gpu_u64;
#endif

/* ---- PCI identity ---------------------------------------------------- */
#define P2P_GPU_VENDOR_ID       0x1234
#define P2P_GPU_DEVICE_ID       0x5032
#define P2P_GPU_CLASS           0x0302  /* display controller: 3D */
#define P2P_GPU_REVISION        1

/* ---- BARs ------------------------------------------------------------ */
#define P2P_GPU_REGS_BAR        0       /* 32-bit MMIO: registers + MSI-X */
#define P2P_GPU_REGS_BAR_SIZE   0x4000  /* 16 KiB */
#define P2P_GPU_REGS_SIZE       0x1000  /* register page at BAR0 + 0 */
#define P2P_GPU_MSIX_TABLE_OFF  0x2000  /* MSI-X table in BAR0 */
#define P2P_GPU_MSIX_PBA_OFF    0x3000  /* MSI-X PBA in BAR0 */
#define P2P_GPU_APERTURE_BAR    2       /* 64-bit prefetchable, resizable */

/* MSI-X vectors. */
#define P2P_GPU_VEC_COPY        0       /* INT_COPY_DONE */
#define P2P_GPU_VEC_ERROR       1       /* INT_COPY_ERROR, INT_APER_FAIL, INT_REG_ERROR */
#define P2P_GPU_MSIX_VECTORS    2

/* Resizable BAR extended capability (ID 0x15) at this config offset. */
#define P2P_GPU_REBAR_CAP_OFF   0x100
#define P2P_GPU_REBAR_MIN       (1ull << 20)    /* smallest encodable: 1 MiB */

/* ---- BAR0 registers ---------------------------------------------------
 * 32-bit registers take 32-bit accesses; 64-bit registers take one 64-bit
 * access or two 32-bit accesses (low half first for writes that act).
 */
#define P2P_GPU_REG_ID          0x000   /* RO P2P_GPU_MAGIC */
#define P2P_GPU_MAGIC           0x50325047u     /* 'GP2P' */
#define P2P_GPU_REG_VERSION     0x004   /* RO major << 16 | minor */
#define P2P_GPU_VERSION         0x00010000u
#define P2P_GPU_REG_CAPS        0x008   /* RO P2P_GPU_CAP_* */
#define   P2P_GPU_CAP_SGL           (1u << 0)   /* scatter-gather descriptors */
#define   P2P_GPU_CAP_V2V           (1u << 1)   /* VRAM-to-VRAM copies */
#define   P2P_GPU_CAP_DIRECT        (1u << 2)   /* identity aperture mode */
#define P2P_GPU_REG_SCRATCH     0x00c   /* RW, no effect */
#define P2P_GPU_REG_VRAM_SIZE   0x010   /* RO 64: VRAM bytes */
#define P2P_GPU_REG_BAR2_SIZE   0x018   /* RO 64: current BAR2 bytes */
#define P2P_GPU_REG_INT_STATUS  0x020   /* RW1C P2P_GPU_INT_* */
#define P2P_GPU_REG_INT_ENABLE  0x024   /* RW P2P_GPU_INT_* (1 = delivered) */
#define   P2P_GPU_INT_COPY_DONE     (1u << 0)
#define   P2P_GPU_INT_COPY_ERROR    (1u << 1)
#define   P2P_GPU_INT_APER_FAIL     (1u << 2)
#define   P2P_GPU_INT_REG_ERROR     (1u << 3)
#define   P2P_GPU_INT_ALL           0xfu
#define P2P_GPU_REG_ERR_STATUS  0x028   /* RO most recent register error (P2P_GPU_REGERR_*); reads keep it, any write sets NONE */
#define P2P_GPU_REG_ERR_COUNT   0x02c   /* RO register errors since reset (saturating) */

/* Aperture (BAR2 windows onto VRAM). */
#define P2P_GPU_REG_APER_CTRL   0x100   /* RW P2P_GPU_APER_CTRL_* */
#define   P2P_GPU_APER_CTRL_DIRECT  (1u << 0)   /* BAR2 offset == VRAM offset */
#define P2P_GPU_REG_APER_GRANULE_SHIFT 0x104 /* RO log2(slot size) */
#define P2P_GPU_REG_APER_SLOTS  0x108   /* RO slots in the current BAR2 */
#define P2P_GPU_REG_APER_USED   0x10c   /* RO slots mapped */
#define P2P_GPU_REG_APER_VRAM_OFF 0x110 /* RW 64: VRAM offset for MAP (granule aligned) */
#define P2P_GPU_REG_APER_SLOT   0x118   /* RW slot for MAP/UNMAP/QUERY */
#define   P2P_GPU_APER_SLOT_ANY     0xffffffffu /* MAP: first free slot */
#define P2P_GPU_REG_APER_CMD    0x11c   /* WO P2P_GPU_APER_CMD_*, reads 0 */
#define   P2P_GPU_APER_CMD_MAP      1
#define   P2P_GPU_APER_CMD_UNMAP    2
#define   P2P_GPU_APER_CMD_UNMAP_ALL 3
#define   P2P_GPU_APER_CMD_QUERY    4
#define P2P_GPU_REG_APER_STATUS 0x120   /* RO P2P_GPU_APER_* of the last command */
#define   P2P_GPU_APER_OK           0
#define   P2P_GPU_APER_FULL         1   /* no free slot */
#define   P2P_GPU_APER_BAD_OFFSET   2   /* VRAM offset unaligned or out of range */
#define   P2P_GPU_APER_BAD_SLOT     3   /* slot >= APER_SLOTS */
#define   P2P_GPU_APER_SLOT_BUSY    4   /* explicit slot already mapped */
#define   P2P_GPU_APER_NOT_MAPPED   5   /* UNMAP/QUERY of a free slot */
#define   P2P_GPU_APER_BAD_MODE     6   /* command invalid in direct mode, or
                                         * direct mode without BAR2 == VRAM */
#define   P2P_GPU_APER_BAD_CMD      7
#define P2P_GPU_REG_APER_RESULT_SLOT 0x124 /* RO slot of the last MAP/QUERY */
#define P2P_GPU_REG_APER_RESULT_OFF  0x128 /* RO 64: MAP: BAR2 offset; QUERY: VRAM offset */

/* Copy engine. */
#define P2P_GPU_REG_CE_CTRL     0x200   /* RW P2P_GPU_CE_CTRL_* */
#define   P2P_GPU_CE_CTRL_ENABLE    (1u << 0)
#define   P2P_GPU_CE_CTRL_RESET     (1u << 1)   /* self-clearing */
#define P2P_GPU_REG_CE_STATUS   0x204   /* RO */
#define   P2P_GPU_CE_STATUS_BUSY    (1u << 0)   /* descriptors pending */
#define   P2P_GPU_CE_STATUS_HALTED  (1u << 1)   /* ring fault; needs RESET */
#define   P2P_GPU_CE_STATUS_ERR_SHIFT 8         /* bits 8..15: last error code */
#define P2P_GPU_REG_CE_RING_BASE 0x208  /* RW 64: ring IOVA, 32-byte aligned */
#define P2P_GPU_REG_CE_RING_SIZE 0x210  /* RW entries: power of two, 1..MAX */
#define P2P_GPU_REG_CE_HEAD     0x214   /* RO next descriptor the engine takes */
#define P2P_GPU_REG_CE_TAIL     0x218   /* RW doorbell: one past the last posted */
#define P2P_GPU_REG_CE_COMPLETED 0x21c  /* RO descriptors completed (wraps) */
#define P2P_GPU_REG_CE_ERRORS   0x220   /* RO descriptors failed (wraps) */

/* Register error codes (ERR_STATUS). */
#define P2P_GPU_REGERR_NONE     0
#define P2P_GPU_REGERR_BAD_REG  1   /* undefined offset, or write to RO */
#define P2P_GPU_REGERR_BAD_VALUE 2  /* value out of range for the register */
#define P2P_GPU_REGERR_BUSY     3   /* ring reconfigured while enabled */
#define P2P_GPU_REGERR_BAD_REBAR 4  /* unsupported size in ReBAR control */

/* ---- Copy-engine descriptors ------------------------------------------ */
#define P2P_GPU_CE_RING_MAX     4096
#define P2P_GPU_CE_MAX_LEN      (64u << 20)     /* bytes per descriptor */
#define P2P_GPU_CE_MAX_SEGS     256             /* SG entries per descriptor */

#define P2P_GPU_DESC_OP_MASK    0xfu
#define   P2P_GPU_OP_VRAM_TO_HOST   1   /* VRAM[vram_off] -> host addr */
#define   P2P_GPU_OP_HOST_TO_VRAM   2   /* host addr -> VRAM[vram_off] */
#define   P2P_GPU_OP_VRAM_TO_VRAM   3   /* VRAM[addr] -> VRAM[vram_off] */
#define P2P_GPU_DESC_SGL        (1u << 8)   /* addr points to sg entries, len = count */
#define P2P_GPU_DESC_INTR       (1u << 9)   /* raise COPY_DONE on completion */
#define P2P_GPU_DESC_VALID_FLAGS (P2P_GPU_DESC_OP_MASK | P2P_GPU_DESC_SGL | P2P_GPU_DESC_INTR)

#define P2P_GPU_DESC_DONE       (1u << 31)  /* in status, set by the device */
#define P2P_GPU_DESC_ERR_MASK   0xffu       /* in status: P2P_GPU_CE_* code */

/* Copy status codes (descriptor status bits 0..7, CE_STATUS bits 8..15). */
#define P2P_GPU_CE_OK           0
#define P2P_GPU_CE_BAD_DESC     1   /* unknown op or reserved bits set */
#define P2P_GPU_CE_BAD_LEN      2   /* zero or above the limits */
#define P2P_GPU_CE_VRAM_RANGE   3   /* VRAM range outside VRAM */
#define P2P_GPU_CE_DMA_FAULT    4   /* host access failed (IOMMU, unassigned) */
#define P2P_GPU_CE_SG_FAULT     5   /* sg list unreadable or malformed */
#define P2P_GPU_CE_INJECTED     6   /* fail-next-copy fault injection */
#define P2P_GPU_CE_RING_FAULT   7   /* ring read/write failed: engine halted */

struct p2p_gpu_desc {
    p2p_gpu_u32 ctrl;       /* op | flags */
    p2p_gpu_u32 len;        /* bytes, or sg entry count with DESC_SGL */
    p2p_gpu_u64 vram_off;   /* VRAM side (destination for VRAM_TO_VRAM) */
    p2p_gpu_u64 addr;       /* host IOVA, sg list IOVA, or source VRAM offset */
    p2p_gpu_u32 status;     /* written by the device: DONE | code; never read, never cleared */
    p2p_gpu_u32 xfer;       /* written by the device: bytes copied */
};

struct p2p_gpu_sg {
    p2p_gpu_u64 addr;       /* host IOVA */
    p2p_gpu_u32 len;        /* bytes, > 0 */
    p2p_gpu_u32 rsvd;       /* must be 0 */
};

_Static_assert(sizeof(struct p2p_gpu_desc) == 32, "p2p_gpu_desc layout");
_Static_assert(sizeof(struct p2p_gpu_sg) == 16, "p2p_gpu_sg layout");

#define P2P_GPU_DESC_STATUS_OFF 24  /* offsetof(struct p2p_gpu_desc, status) */

#endif /* P2PLAB_P2P_GPU_HW_H */
