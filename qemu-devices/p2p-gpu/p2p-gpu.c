/*
 * p2p-gpu: a discrete GPU as far as PCIe peer-to-peer DMA is concerned.
 *
 * VRAM is host RAM (lazily populated, or a memory backend).  BAR0 holds the
 * registers and MSI-X; BAR2 is a resizable 64-bit prefetchable aperture
 * whose windows are alias regions onto VRAM, so peer DMA into BAR2 is plain
 * RAM access.  A copy engine moves data between VRAM and guest memory
 * through the bus-master address space (and so through a vIOMMU).
 *
 * docs/devices/p2p-gpu.md is the specification; the register and descriptor
 * layout is qemu-devices/include/p2plab/p2p_gpu_hw.h.
 *
 * Everything runs in the main loop under the BQL.  No guest value is
 * trusted: bad input becomes a status code, never an abort.
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */
#include "qemu/osdep.h"
#include "qemu/units.h"
#include "qemu/log.h"
#include "qemu/module.h"
#include "qemu/main-loop.h"
#include "qemu/timer.h"
#include "qemu/range.h"
#include "qapi/error.h"
#include "qapi/visitor.h"
#include "hw/pci/pci.h"
#include "hw/pci/pci_device.h"
#include "hw/pci/pcie.h"
#include "hw/pci/msix.h"
#include "hw/qdev-properties.h"
#include "migration/vmstate.h"
#include "system/dma.h"
#include "system/hostmem.h"
#include "system/kvm.h"
#include "hw/virtio/vhost.h"
#include "p2plab/p2p_gpu_hw.h"
#include "trace.h"

#define TYPE_P2P_GPU "p2p-gpu"
typedef struct P2pGpuState P2pGpuState;
DECLARE_INSTANCE_CHECKER(P2pGpuState, P2P_GPU, TYPE_P2P_GPU)

#define P2P_GPU_VRAM_MAX        (64 * GiB)
#define P2P_GPU_APER_MAX_SLOTS  65536           /* bounds host memory per device */
#define P2P_GPU_DMA_CHUNK       (1 * MiB)       /* one pci_dma_* call at most */
#define P2P_GPU_BH_BYTES        (64 * MiB)      /* work per bottom half run */
#define P2P_GPU_BH_DESCS        64
#define P2P_GPU_PCIE_CAP_OFF    0x80
#define P2P_GPU_MEMSLOT_RESERVE 64              /* left for the rest of the VM */

/*
 * Windows mapped by every p2p-gpu in this process (BQL).  Each may need its
 * own memory slot later, see p2p_gpu_host_memslots_left().
 */
static uint32_t p2p_gpu_windows;

typedef struct P2pGpuSlot {
    MemoryRegion *mr;       /* created on first use, freed at finalize */
    uint64_t vram_off;
    bool mapped;
} P2pGpuSlot;

struct P2pGpuState {
    PCIDevice parent_obj;

    /* configuration (qdev properties) */
    uint64_t vram_size;
    uint64_t bar_size;          /* power-on BAR2 size */
    uint64_t rebar_min;
    uint64_t granule;
    HostMemoryBackend *hostmem;

    /* memory */
    MemoryRegion bar0;          /* container: registers + MSI-X */
    MemoryRegion regs;
    MemoryRegion vram_local;
    MemoryRegion *vram;         /* vram_local or the backend's region */
    uint8_t *vram_ptr;
    MemoryRegion bar2;          /* container: background + windows */
    MemoryRegion bar2_bg;
    MemoryRegion direct_mr;
    uint64_t cur_bar_size;
    uint32_t rebar_sizes;       /* ReBAR capability register */

    /* aperture */
    unsigned granule_shift;
    uint32_t max_slots;
    P2pGpuSlot *slots;
    uint32_t slots_used;
    bool direct;
    uint64_t aper_vram_off;
    uint32_t aper_slot;
    uint32_t aper_status;
    uint32_t aper_result_slot;
    uint64_t aper_result_off;

    /* interrupts and register errors */
    uint32_t int_status;
    uint32_t int_enable;
    uint32_t err_status;
    uint32_t err_count;
    uint32_t scratch;

    /* copy engine */
    uint32_t ce_ctrl;
    uint32_t ce_status;
    uint64_t ring_base;
    uint32_t ring_size;
    uint32_t head;
    uint32_t tail;
    uint32_t completed;
    uint32_t errors;
    uint32_t ce_gen;            /* bumped by every engine reset and by exit */
    bool dead;                  /* unrealized: raise nothing, schedule nothing */
    QEMUBH *bh;
    QEMUTimer timer;

    /* fault injection (qom-set at run time) */
    bool fail_next_copy;
    bool aperture_full;
    uint64_t completion_delay_ns;

    /* read-only counters */
    struct {
        uint64_t copies;
        uint64_t copy_bytes;
        uint64_t copy_errors;
        uint64_t aperture_maps;
        uint64_t aperture_map_failures;
        uint64_t aperture_unmaps;
        uint64_t aperture_unmapped_accesses;
        uint64_t resizes;
        uint64_t bad_register_accesses;
        uint64_t interrupts;
    } stat;
};

/* ---- interrupts and errors ------------------------------------------ */

static void p2p_gpu_release(void *opaque)
{
    object_unref(OBJECT(opaque));
}

/*
 * Keep the device alive until the main loop next runs bottom halves.  A DMA
 * or MSI write of ours can land in config space (ECAM) and unplug us, and
 * the BH and config-write paths hold no other reference.
 */
static void p2p_gpu_hold(P2pGpuState *s)
{
    object_ref(OBJECT(s));
    aio_bh_schedule_oneshot(qemu_get_aio_context(), p2p_gpu_release, s);
}

static void p2p_gpu_update_intx(P2pGpuState *s)
{
    PCIDevice *pdev = PCI_DEVICE(s);

    if (!s->dead && !msix_enabled(pdev)) {
        pci_set_irq(pdev, (s->int_status & s->int_enable) != 0);
    }
}

/* MSI-X: one message per event that is enabled; INTx: a level. */
static void p2p_gpu_raise(P2pGpuState *s, uint32_t bits)
{
    PCIDevice *pdev = PCI_DEVICE(s);
    uint32_t fire = bits & s->int_enable;

    s->int_status |= bits;
    trace_p2p_gpu_irq(bits, s->int_status);
    if (!fire || s->dead) {
        return;
    }
    s->stat.interrupts++;
    if (msix_enabled(pdev)) {
        if (fire & P2P_GPU_INT_COPY_DONE) {
            msix_notify(pdev, P2P_GPU_VEC_COPY);
        }
        /* That message may have unplugged us. */
        if ((fire & ~P2P_GPU_INT_COPY_DONE) && !s->dead) {
            msix_notify(pdev, P2P_GPU_VEC_ERROR);
        }
    } else {
        p2p_gpu_update_intx(s);
    }
}

static void p2p_gpu_reg_error(P2pGpuState *s, uint32_t code, hwaddr addr,
                              uint64_t val)
{
    s->err_status = code;
    if (s->err_count != UINT32_MAX) {
        s->err_count++;
    }
    s->stat.bad_register_accesses++;
    trace_p2p_gpu_reg_error(code, addr, val);
    qemu_log_mask(LOG_GUEST_ERROR, "p2p-gpu: register error %u at 0x%"
                  HWADDR_PRIx " value 0x%" PRIx64 "\n", code, addr, val);
    p2p_gpu_raise(s, P2P_GPU_INT_REG_ERROR);
}

static bool p2p_gpu_vram_range_ok(P2pGpuState *s, uint64_t off, uint64_t len)
{
    return off < s->vram_size && len <= s->vram_size - off;
}

/* ---- aperture --------------------------------------------------------- */

static uint32_t p2p_gpu_aper_slots(P2pGpuState *s)
{
    return s->cur_bar_size >> s->granule_shift;
}

static void p2p_gpu_aper_unmap_slot(P2pGpuState *s, uint32_t slot)
{
    P2pGpuSlot *e = &s->slots[slot];

    if (e->mapped) {
        memory_region_del_subregion(&s->bar2, e->mr);
        e->mapped = false;
        s->slots_used--;
        p2p_gpu_windows--;
        s->stat.aperture_unmaps++;
        trace_p2p_gpu_aper_unmap(slot);
    }
}

static void p2p_gpu_aper_unmap_all(P2pGpuState *s)
{
    uint32_t i;

    if (!s->slots) {
        return;
    }
    memory_region_transaction_begin();
    for (i = 0; i < s->max_slots && s->slots_used; i++) {
        p2p_gpu_aper_unmap_slot(s, i);
    }
    memory_region_transaction_commit();
}

static void p2p_gpu_aper_set_direct(P2pGpuState *s, bool on)
{
    if (on == s->direct) {
        return;
    }
    if (on) {
        memory_region_add_subregion_overlap(&s->bar2, 0, &s->direct_mr, 2);
    } else {
        memory_region_del_subregion(&s->bar2, &s->direct_mr);
    }
    s->direct = on;
    trace_p2p_gpu_aper_direct(on);
}

/*
 * A window that does not merge with its neighbours is one more KVM (and
 * vhost) memory slot; running out of them aborts QEMU, so report FULL first.
 * The free count alone is not enough: windows mapped while BAR2 does not
 * decode, or merged with a neighbour that is unmapped later, take their
 * slots only afterwards, outside any MAP.  So every mapped window counts as
 * a future slot (those already visible are counted twice: conservative).
 */
static bool p2p_gpu_host_memslots_left(void)
{
    unsigned int free = vhost_get_free_memslots();

    if (kvm_enabled()) {
        free = MIN(free, kvm_get_free_memslots());
    }
    return free > P2P_GPU_MEMSLOT_RESERVE &&
           free - P2P_GPU_MEMSLOT_RESERVE > p2p_gpu_windows;
}

static uint32_t p2p_gpu_aper_map(P2pGpuState *s)
{
    uint64_t off = s->aper_vram_off;
    uint32_t nslots = p2p_gpu_aper_slots(s);
    uint32_t slot = s->aper_slot;
    P2pGpuSlot *e;

    if (s->direct) {
        return P2P_GPU_APER_BAD_MODE;
    }
    if (off & (s->granule - 1) || off >= s->vram_size) {
        return P2P_GPU_APER_BAD_OFFSET;
    }
    if (s->aperture_full || !p2p_gpu_host_memslots_left()) {
        return P2P_GPU_APER_FULL;
    }
    if (slot == P2P_GPU_APER_SLOT_ANY) {
        for (slot = 0; slot < nslots && s->slots[slot].mapped; slot++) {
            /* first free */
        }
        if (slot == nslots) {
            return P2P_GPU_APER_FULL;
        }
    } else if (slot >= nslots) {
        return P2P_GPU_APER_BAD_SLOT;
    } else if (s->slots[slot].mapped) {
        return P2P_GPU_APER_SLOT_BUSY;
    }

    e = &s->slots[slot];
    if (!e->mr) {
        /*
         * One name per slot: a shared name makes QOM number the children
         * ("[*]" scans for a free index, and stops at 32767), so a guest
         * mapping many distinct slots would slow QEMU quadratically and
         * then abort it.  Slots are bounded (P2P_GPU_APER_MAX_SLOTS), and
         * so are these regions: one per slot, reused by later MAPs.
         */
        g_autofree char *name = g_strdup_printf("p2p-gpu.window%u", slot);

        e->mr = g_new0(MemoryRegion, 1);
        memory_region_init_alias(e->mr, OBJECT(s), name, s->vram,
                                 off, s->granule);
    } else {
        memory_region_set_alias_offset(e->mr, off);
    }
    memory_region_add_subregion_overlap(&s->bar2, (hwaddr)slot << s->granule_shift,
                                        e->mr, 1);
    e->mapped = true;
    e->vram_off = off;
    s->slots_used++;
    p2p_gpu_windows++;
    s->stat.aperture_maps++;
    s->aper_result_slot = slot;
    s->aper_result_off = (uint64_t)slot << s->granule_shift;
    trace_p2p_gpu_aper_map(slot, off, s->aper_result_off);
    return P2P_GPU_APER_OK;
}

static void p2p_gpu_aper_cmd(P2pGpuState *s, uint32_t cmd)
{
    uint32_t slot = s->aper_slot;
    uint32_t st = P2P_GPU_APER_OK;

    switch (cmd) {
    case P2P_GPU_APER_CMD_MAP:
        st = p2p_gpu_aper_map(s);
        break;
    case P2P_GPU_APER_CMD_UNMAP:
    case P2P_GPU_APER_CMD_QUERY:
        if (s->direct) {
            st = P2P_GPU_APER_BAD_MODE;
        } else if (slot >= p2p_gpu_aper_slots(s)) {
            st = P2P_GPU_APER_BAD_SLOT;
        } else if (!s->slots[slot].mapped) {
            st = P2P_GPU_APER_NOT_MAPPED;
        } else if (cmd == P2P_GPU_APER_CMD_UNMAP) {
            p2p_gpu_aper_unmap_slot(s, slot);
        } else {
            s->aper_result_slot = slot;
            s->aper_result_off = s->slots[slot].vram_off;
        }
        break;
    case P2P_GPU_APER_CMD_UNMAP_ALL:
        p2p_gpu_aper_unmap_all(s);
        break;
    default:
        st = P2P_GPU_APER_BAD_CMD;
        break;
    }
    s->aper_status = st;
    if (st != P2P_GPU_APER_OK) {
        if (cmd == P2P_GPU_APER_CMD_MAP) {
            s->stat.aperture_map_failures++;
        }
        trace_p2p_gpu_aper_fail(cmd, st, s->aper_vram_off, slot);
        p2p_gpu_raise(s, P2P_GPU_INT_APER_FAIL);
    }
}

/* Unmapped parts of BAR2 read as all ones and drop writes, like a bus abort. */
static uint64_t p2p_gpu_bg_read(void *opaque, hwaddr addr, unsigned size)
{
    P2pGpuState *s = opaque;

    s->stat.aperture_unmapped_accesses++;
    return size == 8 ? UINT64_MAX : MAKE_64BIT_MASK(0, size * 8);
}

static void p2p_gpu_bg_write(void *opaque, hwaddr addr, uint64_t val,
                             unsigned size)
{
    P2pGpuState *s = opaque;

    s->stat.aperture_unmapped_accesses++;
}

static const MemoryRegionOps p2p_gpu_bg_ops = {
    .read = p2p_gpu_bg_read,
    .write = p2p_gpu_bg_write,
    .endianness = DEVICE_LITTLE_ENDIAN,
    .valid = { .min_access_size = 1, .max_access_size = 8 },
    .impl = { .min_access_size = 1, .max_access_size = 8 },
};

/* ---- Resizable BAR ------------------------------------------------------ */

static unsigned p2p_gpu_size_index(uint64_t size)
{
    return ctz64(size) - 20;    /* log2(MiB) */
}

static void p2p_gpu_rebar_set_ctrl(P2pGpuState *s, uint64_t size)
{
    uint8_t *ctrl = PCI_DEVICE(s)->config + P2P_GPU_REBAR_CAP_OFF + PCI_REBAR_CTRL;
    uint32_t v = pci_get_long(ctrl) & ~0x3f00u;

    pci_set_long(ctrl, v | (p2p_gpu_size_index(size) << 8));
}

/*
 * Change BAR2's size: the region, the recorded size, the sizing mask and the
 * address bits below the new size.  Windows do not survive a resize.
 */
static void p2p_gpu_set_bar2_size(P2pGpuState *s, uint64_t size)
{
    PCIDevice *pdev = PCI_DEVICE(s);
    uint8_t *bar = pdev->config + PCI_BASE_ADDRESS_2;
    uint64_t addr;

    memory_region_transaction_begin();
    p2p_gpu_aper_unmap_all(s);
    p2p_gpu_aper_set_direct(s, false);
    if (size != s->cur_bar_size) {
        trace_p2p_gpu_rebar_resize(s->cur_bar_size, size);
        memory_region_set_size(&s->bar2, size);
        pdev->io_regions[P2P_GPU_APERTURE_BAR].size = size;
        pci_set_quad(pdev->wmask + PCI_BASE_ADDRESS_2, ~(size - 1));
        addr = pci_get_quad(bar);
        pci_set_quad(bar, (addr & ~(size - 1)) | (addr & 0xf));
        s->cur_bar_size = size;
    }
    p2p_gpu_rebar_set_ctrl(s, size);
    /* pci_update_mappings() is reached only through a config write. */
    pci_default_write_config(pdev, PCI_COMMAND,
                             pci_get_word(pdev->config + PCI_COMMAND), 2);
    memory_region_transaction_commit();
}

static void p2p_gpu_rebar_init(P2pGpuState *s)
{
    PCIDevice *pdev = PCI_DEVICE(s);
    uint16_t pos = P2P_GPU_REBAR_CAP_OFF;
    uint64_t sz;

    pcie_add_capability(pdev, PCI_EXT_CAP_ID_REBAR, 1, pos, 12);
    s->rebar_sizes = 0;
    for (sz = s->rebar_min; sz <= s->vram_size; sz <<= 1) {
        s->rebar_sizes |= 1u << (p2p_gpu_size_index(sz) + 4);
    }
    pci_set_long(pdev->config + pos + PCI_REBAR_CAP, s->rebar_sizes);
    pci_set_long(pdev->config + pos + PCI_REBAR_CTRL,
                 P2P_GPU_APERTURE_BAR | (1 << PCI_REBAR_CTRL_NBAR_SHIFT));
    p2p_gpu_rebar_set_ctrl(s, s->cur_bar_size);
    pci_set_long(pdev->wmask + pos + PCI_REBAR_CTRL, 0x3f00);
}

static void p2p_gpu_write_config(PCIDevice *pdev, uint32_t addr, uint32_t val,
                                 int len)
{
    P2pGpuState *s = P2P_GPU(pdev);
    uint32_t ctrl_off = P2P_GPU_REBAR_CAP_OFF + PCI_REBAR_CTRL;
    uint32_t idx;

    pci_default_write_config(pdev, addr, val, len);
    pcie_cap_flr_write_config(pdev, addr, val, len);
    if (!ranges_overlap(addr, len, ctrl_off, 4)) {
        return;
    }
    idx = (pci_get_long(pdev->config + ctrl_off) >> 8) & 0x3f;
    if (idx + 4 >= 32 || !(s->rebar_sizes & (1u << (idx + 4)))) {
        trace_p2p_gpu_rebar_bad_size(idx);
        p2p_gpu_rebar_set_ctrl(s, s->cur_bar_size);
        p2p_gpu_hold(s);        /* the error MSI could unplug us */
        p2p_gpu_reg_error(s, P2P_GPU_REGERR_BAD_REBAR, addr, val);
        return;
    }
    if ((1ull << (idx + 20)) != s->cur_bar_size) {
        s->stat.resizes++;
        p2p_gpu_set_bar2_size(s, 1ull << (idx + 20));
    }
}

/* ---- copy engine ------------------------------------------------------ */

/*
 * Whether VRAM [off, off + len) is also reachable through our own BAR2 (a
 * window, or direct mode).  A DMA aimed there would memcpy VRAM onto itself,
 * undefined behaviour when the ranges overlap.  Windows cannot appear during
 * a copy: mapping one takes a BAR0 write, which our re-entrancy guard blocks.
 * O(slots): called once per descriptor, not per segment or chunk.
 */
static bool p2p_gpu_vram_exposed(P2pGpuState *s, uint64_t off, uint64_t len)
{
    uint32_t i, left = s->slots_used;

    if (s->direct) {
        return true;
    }
    for (i = 0; i < s->max_slots && left; i++) {
        if (s->slots[i].mapped) {
            left--;
            if (ranges_overlap(s->slots[i].vram_off, s->granule, off, len)) {
                return true;
            }
        }
    }
    return false;
}

/* One chunk through a buffer, for when the bus address may be this VRAM. */
static MemTxResult p2p_gpu_dma_bounce(P2pGpuState *s, uint32_t op,
                                      uint64_t vram_off, dma_addr_t addr,
                                      uint8_t *buf, uint64_t n)
{
    MemTxResult r;

    if (op == P2P_GPU_OP_VRAM_TO_HOST) {
        memcpy(buf, s->vram_ptr + vram_off, n);
        return pci_dma_write(PCI_DEVICE(s), addr, buf, n);
    }
    r = pci_dma_read(PCI_DEVICE(s), addr, buf, n);
    if (r == MEMTX_OK) {    /* never copy an uninitialised buffer to VRAM */
        memcpy(s->vram_ptr + vram_off, buf, n);
    }
    return r;
}

/*
 * Move len bytes between VRAM and a bus address, in bounded chunks, for the
 * engine generation gen; bounce if the VRAM range is exposed in our BAR2.
 */
static bool p2p_gpu_dma(P2pGpuState *s, uint32_t gen, uint32_t op,
                        uint64_t vram_off, dma_addr_t addr, uint64_t len,
                        bool bounce, uint64_t *done)
{
    PCIDevice *pdev = PCI_DEVICE(s);
    /* Per call, not per device: a chunk's DMA may re-enter the engine. */
    g_autofree uint8_t *buf = bounce ? g_malloc(MIN(len, P2P_GPU_DMA_CHUNK)) : NULL;
    MemTxResult r;
    uint64_t n;

    if (addr + len < addr) {
        return false;
    }
    while (len) {
        if (s->dead || gen != s->ce_gen) {
            return false;   /* a previous chunk or segment reset or unplugged us */
        }
        n = MIN(len, P2P_GPU_DMA_CHUNK);
        if (bounce) {
            r = p2p_gpu_dma_bounce(s, op, vram_off, addr, buf, n);
        } else if (op == P2P_GPU_OP_VRAM_TO_HOST) {
            r = pci_dma_write(pdev, addr, s->vram_ptr + vram_off, n);
        } else {
            r = pci_dma_read(pdev, addr, s->vram_ptr + vram_off, n);
        }
        if (op == P2P_GPU_OP_HOST_TO_VRAM) {
            memory_region_set_dirty(s->vram, vram_off, n);
        }
        if (r != MEMTX_OK) {
            return false;
        }
        vram_off += n;
        addr += n;
        len -= n;
        *done += n;
    }
    return true;
}

static uint32_t p2p_gpu_ce_sgl(P2pGpuState *s, uint32_t gen,
                               const struct p2p_gpu_desc *d, uint64_t *done)
{
    struct p2p_gpu_sg sg[P2P_GPU_CE_MAX_SEGS];
    uint32_t op = d->ctrl & P2P_GPU_DESC_OP_MASK;
    uint32_t i, n = d->len;
    uint64_t total = 0, voff = d->vram_off;
    bool bounce;

    if (op == P2P_GPU_OP_VRAM_TO_VRAM) {
        return P2P_GPU_CE_BAD_DESC;
    }
    if (n == 0 || n > P2P_GPU_CE_MAX_SEGS) {
        return P2P_GPU_CE_BAD_LEN;
    }
    if (pci_dma_read(PCI_DEVICE(s), d->addr, sg, n * sizeof(sg[0])) != MEMTX_OK) {
        return P2P_GPU_CE_SG_FAULT;
    }
    for (i = 0; i < n; i++) {
        sg[i].addr = le64_to_cpu(sg[i].addr);
        sg[i].len = le32_to_cpu(sg[i].len);
        if (sg[i].len == 0 || sg[i].rsvd != 0) {
            return P2P_GPU_CE_SG_FAULT;
        }
        total += sg[i].len;
    }
    if (total > P2P_GPU_CE_MAX_LEN) {
        return P2P_GPU_CE_BAD_LEN;
    }
    if (!p2p_gpu_vram_range_ok(s, voff, total)) {
        return P2P_GPU_CE_VRAM_RANGE;
    }
    bounce = p2p_gpu_vram_exposed(s, voff, total);
    for (i = 0; i < n; i++) {
        if (!p2p_gpu_dma(s, gen, op, voff, sg[i].addr, sg[i].len, bounce, done)) {
            return P2P_GPU_CE_DMA_FAULT;
        }
        voff += sg[i].len;
    }
    return P2P_GPU_CE_OK;
}

/* Execute one descriptor (already in host byte order); returns a CE code. */
static uint32_t p2p_gpu_ce_exec(P2pGpuState *s, uint32_t gen,
                                const struct p2p_gpu_desc *d, uint64_t *done)
{
    uint32_t op = d->ctrl & P2P_GPU_DESC_OP_MASK;

    if (d->ctrl & ~P2P_GPU_DESC_VALID_FLAGS ||
        op < P2P_GPU_OP_VRAM_TO_HOST || op > P2P_GPU_OP_VRAM_TO_VRAM) {
        return P2P_GPU_CE_BAD_DESC;
    }
    if (s->fail_next_copy) {
        s->fail_next_copy = false;
        return P2P_GPU_CE_INJECTED;
    }
    if (d->ctrl & P2P_GPU_DESC_SGL) {
        return p2p_gpu_ce_sgl(s, gen, d, done);
    }
    if (d->len == 0 || d->len > P2P_GPU_CE_MAX_LEN) {
        return P2P_GPU_CE_BAD_LEN;
    }
    if (!p2p_gpu_vram_range_ok(s, d->vram_off, d->len)) {
        return P2P_GPU_CE_VRAM_RANGE;
    }
    if (op == P2P_GPU_OP_VRAM_TO_VRAM) {
        if (!p2p_gpu_vram_range_ok(s, d->addr, d->len)) {
            return P2P_GPU_CE_VRAM_RANGE;
        }
        memmove(s->vram_ptr + d->vram_off, s->vram_ptr + d->addr, d->len);
        memory_region_set_dirty(s->vram, d->vram_off, d->len);
        *done = d->len;
        return P2P_GPU_CE_OK;
    }
    return p2p_gpu_dma(s, gen, op, d->vram_off, d->addr, d->len,
                       p2p_gpu_vram_exposed(s, d->vram_off, d->len), done) ?
           P2P_GPU_CE_OK : P2P_GPU_CE_DMA_FAULT;
}

static void p2p_gpu_ce_halt(P2pGpuState *s, dma_addr_t addr)
{
    trace_p2p_gpu_ce_halt(s->head, addr);
    s->ce_status |= P2P_GPU_CE_STATUS_HALTED;
    s->ce_status = deposit32(s->ce_status, P2P_GPU_CE_STATUS_ERR_SHIFT, 8,
                             P2P_GPU_CE_RING_FAULT);
    s->errors++;
    s->stat.copy_errors++;
    p2p_gpu_raise(s, P2P_GPU_INT_COPY_ERROR);
}

static bool p2p_gpu_ce_runnable(P2pGpuState *s)
{
    return (s->ce_ctrl & P2P_GPU_CE_CTRL_ENABLE) &&
           !(s->ce_status & P2P_GPU_CE_STATUS_HALTED) && s->head != s->tail;
}

static void p2p_gpu_ce_kick(P2pGpuState *s)
{
    if (s->dead || !p2p_gpu_ce_runnable(s)) {
        return;
    }
    s->ce_status |= P2P_GPU_CE_STATUS_BUSY;
    if (s->completion_delay_ns) {
        if (!timer_pending(&s->timer)) {
            timer_mod_ns(&s->timer, qemu_clock_get_ns(QEMU_CLOCK_VIRTUAL) +
                         s->completion_delay_ns);
        }
    } else {
        qemu_bh_schedule(s->bh);
    }
}

static void p2p_gpu_ce_run(P2pGpuState *s)
{
    PCIDevice *pdev = PCI_DEVICE(s);
    struct p2p_gpu_desc d;
    uint32_t gen = s->ce_gen;
    uint32_t raise = 0, code, n = 0;
    uint64_t bytes = 0, done;
    dma_addr_t da;
    MemTxResult r;
    uint8_t wb[8];

    while (p2p_gpu_ce_runnable(s) && n < P2P_GPU_BH_DESCS &&
           bytes < P2P_GPU_BH_BYTES) {
        da = s->ring_base + (dma_addr_t)s->head * sizeof(d);
        r = pci_dma_read(pdev, da, &d, sizeof(d));
        if (gen != s->ce_gen) {
            return;     /* the read hit something that reset us */
        }
        if (r != MEMTX_OK) {
            p2p_gpu_ce_halt(s, da);
            break;
        }
        d.ctrl = le32_to_cpu(d.ctrl);
        d.len = le32_to_cpu(d.len);
        d.vram_off = le64_to_cpu(d.vram_off);
        d.addr = le64_to_cpu(d.addr);
        trace_p2p_gpu_ce_desc(s->head, d.ctrl, d.len, d.vram_off, d.addr);

        done = 0;
        code = p2p_gpu_ce_exec(s, gen, &d, &done);
        if (gen != s->ce_gen) {
            /* A DMA write reset or unplugged us (FLR or slot power via ECAM). */
            return;
        }
        stl_le_p(wb, P2P_GPU_DESC_DONE | code);
        stl_le_p(wb + 4, (uint32_t)MIN(done, UINT32_MAX));
        r = pci_dma_write(pdev, da + P2P_GPU_DESC_STATUS_OFF, wb, 8);
        if (gen != s->ce_gen) {
            return;
        }
        if (r != MEMTX_OK) {
            p2p_gpu_ce_halt(s, da);
            break;
        }
        trace_p2p_gpu_ce_done(s->head, code, done);
        s->head = (s->head + 1) & (s->ring_size - 1);
        s->completed++;
        s->stat.copy_bytes += done;
        bytes += done + 1;
        n++;
        if (code == P2P_GPU_CE_OK) {
            s->stat.copies++;
            if (d.ctrl & P2P_GPU_DESC_INTR) {
                raise |= P2P_GPU_INT_COPY_DONE;
            }
        } else {
            s->errors++;
            s->stat.copy_errors++;
            s->ce_status = deposit32(s->ce_status, P2P_GPU_CE_STATUS_ERR_SHIFT,
                                     8, code);
            raise |= P2P_GPU_INT_COPY_ERROR;
        }
    }
    if (gen != s->ce_gen) {
        return;     /* the halt's interrupt reset or unplugged us */
    }
    if (!p2p_gpu_ce_runnable(s)) {
        s->ce_status &= ~P2P_GPU_CE_STATUS_BUSY;
    }
    if (raise) {
        p2p_gpu_raise(s, raise);
    }
    if (gen == s->ce_gen) {
        p2p_gpu_ce_kick(s);     /* budget exhausted: continue in a later run */
    }
}

static void p2p_gpu_ce_bh(void *opaque)
{
    P2pGpuState *s = opaque;

    p2p_gpu_hold(s);
    p2p_gpu_ce_run(s);
}

/* Delayed completion: hand over to the bottom half, which is guarded. */
static void p2p_gpu_ce_timer(void *opaque)
{
    P2pGpuState *s = opaque;

    if (s->bh) {
        qemu_bh_schedule(s->bh);
    }
}

static void p2p_gpu_ce_reset(P2pGpuState *s)
{
    trace_p2p_gpu_ce_reset();
    s->ce_gen++;
    if (s->bh) {            /* NULL once unrealized */
        qemu_bh_cancel(s->bh);
    }
    timer_del(&s->timer);
    s->ce_ctrl = 0;
    s->ce_status = 0;
    s->ring_base = 0;
    s->ring_size = 0;
    s->head = 0;
    s->tail = 0;
    s->completed = 0;
    s->errors = 0;
}

/* ---- BAR0 registers ------------------------------------------------- */

static bool p2p_gpu_reg_read32(P2pGpuState *s, hwaddr addr, uint32_t *v)
{
    switch (addr) {
    case P2P_GPU_REG_ID:            *v = P2P_GPU_MAGIC; break;
    case P2P_GPU_REG_VERSION:       *v = P2P_GPU_VERSION; break;
    case P2P_GPU_REG_CAPS:
        *v = P2P_GPU_CAP_SGL | P2P_GPU_CAP_V2V | P2P_GPU_CAP_DIRECT;
        break;
    case P2P_GPU_REG_SCRATCH:       *v = s->scratch; break;
    case P2P_GPU_REG_VRAM_SIZE:     *v = s->vram_size; break;
    case P2P_GPU_REG_VRAM_SIZE + 4: *v = s->vram_size >> 32; break;
    case P2P_GPU_REG_BAR2_SIZE:     *v = s->cur_bar_size; break;
    case P2P_GPU_REG_BAR2_SIZE + 4: *v = s->cur_bar_size >> 32; break;
    case P2P_GPU_REG_INT_STATUS:    *v = s->int_status; break;
    case P2P_GPU_REG_INT_ENABLE:    *v = s->int_enable; break;
    case P2P_GPU_REG_ERR_STATUS:    *v = s->err_status; break;
    case P2P_GPU_REG_ERR_COUNT:     *v = s->err_count; break;
    case P2P_GPU_REG_APER_CTRL:
        *v = s->direct ? P2P_GPU_APER_CTRL_DIRECT : 0;
        break;
    case P2P_GPU_REG_APER_GRANULE_SHIFT: *v = s->granule_shift; break;
    case P2P_GPU_REG_APER_SLOTS:    *v = p2p_gpu_aper_slots(s); break;
    case P2P_GPU_REG_APER_USED:     *v = s->slots_used; break;
    case P2P_GPU_REG_APER_VRAM_OFF: *v = s->aper_vram_off; break;
    case P2P_GPU_REG_APER_VRAM_OFF + 4: *v = s->aper_vram_off >> 32; break;
    case P2P_GPU_REG_APER_SLOT:     *v = s->aper_slot; break;
    case P2P_GPU_REG_APER_CMD:      *v = 0; break;
    case P2P_GPU_REG_APER_STATUS:   *v = s->aper_status; break;
    case P2P_GPU_REG_APER_RESULT_SLOT: *v = s->aper_result_slot; break;
    case P2P_GPU_REG_APER_RESULT_OFF: *v = s->aper_result_off; break;
    case P2P_GPU_REG_APER_RESULT_OFF + 4: *v = s->aper_result_off >> 32; break;
    case P2P_GPU_REG_CE_CTRL:       *v = s->ce_ctrl; break;
    case P2P_GPU_REG_CE_STATUS:     *v = s->ce_status; break;
    case P2P_GPU_REG_CE_RING_BASE:  *v = s->ring_base; break;
    case P2P_GPU_REG_CE_RING_BASE + 4: *v = s->ring_base >> 32; break;
    case P2P_GPU_REG_CE_RING_SIZE:  *v = s->ring_size; break;
    case P2P_GPU_REG_CE_HEAD:       *v = s->head; break;
    case P2P_GPU_REG_CE_TAIL:       *v = s->tail; break;
    case P2P_GPU_REG_CE_COMPLETED:  *v = s->completed; break;
    case P2P_GPU_REG_CE_ERRORS:     *v = s->errors; break;
    default:
        *v = 0;
        return false;
    }
    return true;
}

static void p2p_gpu_ce_ctrl_write(P2pGpuState *s, hwaddr addr, uint32_t v)
{
    if (v & P2P_GPU_CE_CTRL_RESET) {
        p2p_gpu_ce_reset(s);
        return;
    }
    if (v & ~P2P_GPU_CE_CTRL_ENABLE ||
        ((v & P2P_GPU_CE_CTRL_ENABLE) && s->ring_size == 0)) {
        p2p_gpu_reg_error(s, P2P_GPU_REGERR_BAD_VALUE, addr, v);
        return;
    }
    s->ce_ctrl = v;
    if (!(v & P2P_GPU_CE_CTRL_ENABLE)) {
        /* Stop taking descriptors; the ring position is kept. */
        if (s->bh) {
            qemu_bh_cancel(s->bh);
        }
        timer_del(&s->timer);
        s->ce_status &= ~P2P_GPU_CE_STATUS_BUSY;
    }
    p2p_gpu_ce_kick(s);
}

/* Returns a P2P_GPU_REGERR_* code. */
static uint32_t p2p_gpu_reg_write32(P2pGpuState *s, hwaddr addr, uint32_t v)
{
    bool ce_on = s->ce_ctrl & P2P_GPU_CE_CTRL_ENABLE;

    switch (addr) {
    case P2P_GPU_REG_SCRATCH:
        s->scratch = v;
        break;
    case P2P_GPU_REG_INT_STATUS:
        s->int_status &= ~v;
        p2p_gpu_update_intx(s);
        break;
    case P2P_GPU_REG_INT_ENABLE: {
        uint32_t newly = v & ~s->int_enable & s->int_status;

        if (v & ~P2P_GPU_INT_ALL) {
            return P2P_GPU_REGERR_BAD_VALUE;
        }
        s->int_enable = v;
        p2p_gpu_update_intx(s);
        if (newly && msix_enabled(PCI_DEVICE(s))) {
            /* Deliver what became pending while disabled. */
            s->int_status &= ~newly;
            p2p_gpu_raise(s, newly);
        }
        break;
    }
    case P2P_GPU_REG_ERR_STATUS:
        s->err_status = P2P_GPU_REGERR_NONE;
        break;
    case P2P_GPU_REG_APER_CTRL:
        if (v & ~P2P_GPU_APER_CTRL_DIRECT) {
            return P2P_GPU_REGERR_BAD_VALUE;
        }
        if ((v & P2P_GPU_APER_CTRL_DIRECT) && s->cur_bar_size != s->vram_size) {
            s->aper_status = P2P_GPU_APER_BAD_MODE;
            p2p_gpu_raise(s, P2P_GPU_INT_APER_FAIL);
            break;
        }
        memory_region_transaction_begin();
        p2p_gpu_aper_unmap_all(s);
        p2p_gpu_aper_set_direct(s, v & P2P_GPU_APER_CTRL_DIRECT);
        memory_region_transaction_commit();
        s->aper_status = P2P_GPU_APER_OK;
        break;
    case P2P_GPU_REG_APER_VRAM_OFF:
        s->aper_vram_off = deposit64(s->aper_vram_off, 0, 32, v);
        break;
    case P2P_GPU_REG_APER_VRAM_OFF + 4:
        s->aper_vram_off = deposit64(s->aper_vram_off, 32, 32, v);
        break;
    case P2P_GPU_REG_APER_SLOT:
        s->aper_slot = v;
        break;
    case P2P_GPU_REG_APER_CMD:
        p2p_gpu_aper_cmd(s, v);
        break;
    case P2P_GPU_REG_CE_CTRL:
        p2p_gpu_ce_ctrl_write(s, addr, v);
        break;
    case P2P_GPU_REG_CE_RING_BASE:
        if (ce_on) {
            return P2P_GPU_REGERR_BUSY;
        }
        if (v & (sizeof(struct p2p_gpu_desc) - 1)) {
            return P2P_GPU_REGERR_BAD_VALUE;
        }
        s->ring_base = deposit64(s->ring_base, 0, 32, v);
        break;
    case P2P_GPU_REG_CE_RING_BASE + 4:
        if (ce_on) {
            return P2P_GPU_REGERR_BUSY;
        }
        s->ring_base = deposit64(s->ring_base, 32, 32, v);
        break;
    case P2P_GPU_REG_CE_RING_SIZE:
        if (ce_on) {
            return P2P_GPU_REGERR_BUSY;
        }
        if (v == 0 || v > P2P_GPU_CE_RING_MAX || !is_power_of_2(v)) {
            return P2P_GPU_REGERR_BAD_VALUE;
        }
        s->ring_size = v;
        s->head = 0;
        s->tail = 0;
        break;
    case P2P_GPU_REG_CE_TAIL:
        if (v >= s->ring_size) {
            return P2P_GPU_REGERR_BAD_VALUE;
        }
        s->tail = v;
        p2p_gpu_ce_kick(s);
        break;
    default:
        /* read-only or undefined */
        return P2P_GPU_REGERR_BAD_REG;
    }
    return P2P_GPU_REGERR_NONE;
}

static uint64_t p2p_gpu_mmio_read(void *opaque, hwaddr addr, unsigned size)
{
    P2pGpuState *s = opaque;
    uint32_t lo, hi = 0;
    bool ok;

    ok = p2p_gpu_reg_read32(s, addr, &lo);
    if (size == 8) {
        ok = p2p_gpu_reg_read32(s, addr + 4, &hi) && ok;
    }
    if (!ok) {
        p2p_gpu_reg_error(s, P2P_GPU_REGERR_BAD_REG, addr, 0);
    }
    trace_p2p_gpu_mmio_read(addr, size, ((uint64_t)hi << 32) | lo);
    return ((uint64_t)hi << 32) | lo;
}

static void p2p_gpu_mmio_write(void *opaque, hwaddr addr, uint64_t val,
                               unsigned size)
{
    P2pGpuState *s = opaque;
    uint32_t err;

    trace_p2p_gpu_mmio_write(addr, size, val);
    if (s->dead) {
        /*
         * A vCPU that looked up a flat view before the unplug can still get
         * here; a MAP or DIRECT now would pin regions in a dead device.
         */
        return;
    }
    err = p2p_gpu_reg_write32(s, addr, val);
    if (err) {
        p2p_gpu_reg_error(s, err, addr, (uint32_t)val);
    }
    if (size == 8 && !s->dead) {   /* the low half's interrupt may unplug us */
        err = p2p_gpu_reg_write32(s, addr + 4, val >> 32);
        if (err) {
            p2p_gpu_reg_error(s, err, addr + 4, val >> 32);
        }
    }
}

static const MemoryRegionOps p2p_gpu_mmio_ops = {
    .read = p2p_gpu_mmio_read,
    .write = p2p_gpu_mmio_write,
    .endianness = DEVICE_LITTLE_ENDIAN,
    .valid = { .min_access_size = 4, .max_access_size = 8, .unaligned = false },
    .impl = { .min_access_size = 4, .max_access_size = 8 },
};

/* ---- lifecycle ------------------------------------------------------ */

static bool p2p_gpu_check_config(P2pGpuState *s, Error **errp)
{
    if (!is_power_of_2(s->vram_size) || s->vram_size < P2P_GPU_REBAR_MIN ||
        s->vram_size > P2P_GPU_VRAM_MAX) {
        error_setg(errp, "vram-size must be a power of two from 1 MiB to 64 GiB");
        return false;
    }
    if (!is_power_of_2(s->rebar_min) || s->rebar_min < P2P_GPU_REBAR_MIN ||
        s->rebar_min > s->vram_size) {
        error_setg(errp, "rebar-min must be a power of two from 1 MiB to vram-size");
        return false;
    }
    if (!is_power_of_2(s->bar_size) || s->bar_size < s->rebar_min ||
        s->bar_size > s->vram_size) {
        error_setg(errp, "bar-size must be a power of two from rebar-min to vram-size");
        return false;
    }
    if (!is_power_of_2(s->granule) || s->granule < 4 * KiB ||
        s->granule > s->rebar_min) {
        error_setg(errp, "aperture-granule must be a power of two from 4 KiB to rebar-min");
        return false;
    }
    if (s->vram_size / s->granule > P2P_GPU_APER_MAX_SLOTS) {
        error_setg(errp, "aperture-granule too small: at most %u slots",
                   P2P_GPU_APER_MAX_SLOTS);
        return false;
    }
    return true;
}

static void p2p_gpu_realize(PCIDevice *pdev, Error **errp)
{
    P2pGpuState *s = P2P_GPU(pdev);

    if (s->hostmem) {
        if (host_memory_backend_is_mapped(s->hostmem)) {
            error_setg(errp, "memdev '%s' is already in use",
                       object_get_canonical_path_component(OBJECT(s->hostmem)));
            return;
        }
        s->vram = host_memory_backend_get_memory(s->hostmem);
        s->vram_size = memory_region_size(s->vram);
    }
    if (!p2p_gpu_check_config(s, errp)) {
        return;
    }
    if (s->hostmem) {
        host_memory_backend_set_mapped(s->hostmem, true);
    } else {
        /* Lazily populated: untouched VRAM costs no host memory. */
        if (!memory_region_init_ram_flags_nomigrate(&s->vram_local, OBJECT(s),
                                                    "p2p-gpu.vram", s->vram_size,
                                                    RAM_NORESERVE, errp)) {
            return;
        }
        s->vram = &s->vram_local;
    }
    s->vram_ptr = memory_region_get_ram_ptr(s->vram);

    pci_config_set_interrupt_pin(pdev->config, 1);
    if (pcie_endpoint_cap_init(pdev, P2P_GPU_PCIE_CAP_OFF) < 0) {
        error_setg(errp, "p2p-gpu: PCIe capability init failed");
        goto fail_mem;
    }
    pcie_cap_flr_init(pdev);

    memory_region_init(&s->bar0, OBJECT(s), "p2p-gpu.bar0", P2P_GPU_REGS_BAR_SIZE);
    memory_region_init_io(&s->regs, OBJECT(s), &p2p_gpu_mmio_ops, s,
                          "p2p-gpu.regs", P2P_GPU_REGS_SIZE);
    memory_region_add_subregion(&s->bar0, 0, &s->regs);
    if (msix_init(pdev, P2P_GPU_MSIX_VECTORS, &s->bar0, P2P_GPU_REGS_BAR,
                  P2P_GPU_MSIX_TABLE_OFF, &s->bar0, P2P_GPU_REGS_BAR,
                  P2P_GPU_MSIX_PBA_OFF, 0, errp) < 0) {
        goto fail_pcie;
    }
    msix_vector_use(pdev, P2P_GPU_VEC_COPY);
    msix_vector_use(pdev, P2P_GPU_VEC_ERROR);
    pci_register_bar(pdev, P2P_GPU_REGS_BAR, PCI_BASE_ADDRESS_SPACE_MEMORY, &s->bar0);

    s->cur_bar_size = s->bar_size;
    s->granule_shift = ctz64(s->granule);
    s->max_slots = s->vram_size >> s->granule_shift;
    s->slots = g_new0(P2pGpuSlot, s->max_slots);
    memory_region_init(&s->bar2, OBJECT(s), "p2p-gpu.bar2", s->cur_bar_size);
    /* The background spans the largest BAR; the container clips it. */
    memory_region_init_io(&s->bar2_bg, OBJECT(s), &p2p_gpu_bg_ops, s,
                          "p2p-gpu.bar2-unmapped", s->vram_size);
    memory_region_add_subregion_overlap(&s->bar2, 0, &s->bar2_bg, -1);
    memory_region_init_alias(&s->direct_mr, OBJECT(s), "p2p-gpu.direct",
                             s->vram, 0, s->vram_size);
    pci_register_bar(pdev, P2P_GPU_APERTURE_BAR,
                     PCI_BASE_ADDRESS_SPACE_MEMORY | PCI_BASE_ADDRESS_MEM_TYPE_64 |
                     PCI_BASE_ADDRESS_MEM_PREFETCH, &s->bar2);
    p2p_gpu_rebar_init(s);

    s->bh = qemu_bh_new_guarded(p2p_gpu_ce_bh, s, &DEVICE(s)->mem_reentrancy_guard);
    timer_init_ns(&s->timer, QEMU_CLOCK_VIRTUAL, p2p_gpu_ce_timer, s);
    return;

fail_pcie:
    pcie_cap_exit(pdev);
fail_mem:
    if (s->hostmem) {
        host_memory_backend_set_mapped(s->hostmem, false);
    }
}

static void p2p_gpu_exit(PCIDevice *pdev)
{
    P2pGpuState *s = P2P_GPU(pdev);

    /* We may be inside our own BH or MMIO handler (unplug through ECAM). */
    s->dead = true;
    s->ce_gen++;
    s->ce_ctrl = 0;
    qemu_bh_delete(s->bh);
    s->bh = NULL;
    timer_del(&s->timer);
    memory_region_transaction_begin();
    p2p_gpu_aper_unmap_all(s);
    p2p_gpu_aper_set_direct(s, false);
    /*
     * A subregion references its owner (QEMU 10.0): ours would keep the
     * device alive forever, so it is never finalized and DEVICE_DELETED
     * never reaches the management layer.
     */
    memory_region_del_subregion(&s->bar2, &s->bar2_bg);
    memory_region_del_subregion(&s->bar0, &s->regs);
    memory_region_transaction_commit();
    msix_uninit(pdev, &s->bar0, &s->bar0);
    pcie_cap_exit(pdev);
    if (s->hostmem) {
        host_memory_backend_set_mapped(s->hostmem, false);
    }
}

static void p2p_gpu_reset(DeviceState *dev)
{
    P2pGpuState *s = P2P_GPU(dev);

    trace_p2p_gpu_reset();
    p2p_gpu_ce_reset(s);
    s->int_status = 0;
    s->int_enable = 0;
    s->err_status = 0;
    s->err_count = 0;
    s->scratch = 0;
    s->aper_vram_off = 0;
    s->aper_slot = 0;
    s->aper_status = 0;
    s->aper_result_slot = 0;
    s->aper_result_off = 0;
    pci_set_irq(PCI_DEVICE(s), 0);
    p2p_gpu_set_bar2_size(s, s->bar_size);
}

/* Slot regions may be referenced by a stale flat view until the owner dies. */
static void p2p_gpu_instance_finalize(Object *obj)
{
    P2pGpuState *s = P2P_GPU(obj);
    uint32_t i;

    for (i = 0; s->slots && i < s->max_slots; i++) {
        g_free(s->slots[i].mr);
    }
    g_free(s->slots);
}

static bool p2p_gpu_get_fail_next_copy(Object *obj, Error **errp)
{
    return P2P_GPU(obj)->fail_next_copy;
}

static void p2p_gpu_set_fail_next_copy(Object *obj, bool v, Error **errp)
{
    P2P_GPU(obj)->fail_next_copy = v;
}

static bool p2p_gpu_get_aperture_full(Object *obj, Error **errp)
{
    return P2P_GPU(obj)->aperture_full;
}

static void p2p_gpu_set_aperture_full(Object *obj, bool v, Error **errp)
{
    P2P_GPU(obj)->aperture_full = v;
}

static void p2p_gpu_instance_init(Object *obj)
{
    P2pGpuState *s = P2P_GPU(obj);
    static const struct {
        const char *name;
        size_t off;
        const char *desc;
    } counters[] = {
#define C(f, n, d) { n, offsetof(P2pGpuState, stat.f), d }
        C(copies, "copies", "descriptors completed without error"),
        C(copy_bytes, "copy-bytes", "bytes moved by the copy engine"),
        C(copy_errors, "copy-errors", "descriptors failed, and ring faults"),
        C(aperture_maps, "aperture-maps", "windows mapped into BAR2"),
        C(aperture_map_failures, "aperture-map-failures", "MAP commands refused"),
        C(aperture_unmaps, "aperture-unmaps", "windows unmapped"),
        C(aperture_unmapped_accesses, "aperture-unmapped-accesses",
          "accesses to BAR2 outside any window"),
        C(resizes, "resizes", "ReBAR size changes by the guest"),
        C(bad_register_accesses, "bad-register-accesses",
          "register accesses refused (ERR_STATUS)"),
        C(interrupts, "interrupts", "interrupts delivered"),
#undef C
    };
    size_t i;

    for (i = 0; i < ARRAY_SIZE(counters); i++) {
        object_property_add_uint64_ptr(obj, counters[i].name,
                                       (uint64_t *)((char *)s + counters[i].off),
                                       OBJ_PROP_FLAG_READ);
        object_property_set_description(obj, counters[i].name, counters[i].desc);
    }
    object_property_add_bool(obj, "fail-next-copy", p2p_gpu_get_fail_next_copy,
                             p2p_gpu_set_fail_next_copy);
    object_property_set_description(obj, "fail-next-copy",
                                    "fault injection: the next descriptor fails");
    object_property_add_bool(obj, "aperture-full", p2p_gpu_get_aperture_full,
                             p2p_gpu_set_aperture_full);
    object_property_set_description(obj, "aperture-full",
                                    "fault injection: MAP reports FULL");
    object_property_add_uint64_ptr(obj, "completion-delay-ns",
                                   &s->completion_delay_ns, OBJ_PROP_FLAG_READWRITE);
    object_property_set_description(obj, "completion-delay-ns",
                                    "fault injection: copy completions wait this long");
}

static const VMStateDescription vmstate_p2p_gpu = {
    .name = TYPE_P2P_GPU,
    .unmigratable = 1,
};

static const Property p2p_gpu_properties[] = {
    DEFINE_PROP_SIZE("vram-size", P2pGpuState, vram_size, 1 * GiB),
    DEFINE_PROP_SIZE("bar-size", P2pGpuState, bar_size, 256 * MiB),
    DEFINE_PROP_SIZE("rebar-min", P2pGpuState, rebar_min, 256 * MiB),
    DEFINE_PROP_SIZE("aperture-granule", P2pGpuState, granule, 2 * MiB),
    DEFINE_PROP_LINK("memdev", P2pGpuState, hostmem, TYPE_MEMORY_BACKEND,
                     HostMemoryBackend *),
};

static void p2p_gpu_class_init(ObjectClass *klass, const void *data)
{
    DeviceClass *dc = DEVICE_CLASS(klass);
    PCIDeviceClass *k = PCI_DEVICE_CLASS(klass);

    k->realize = p2p_gpu_realize;
    k->exit = p2p_gpu_exit;
    k->config_write = p2p_gpu_write_config;
    k->vendor_id = P2P_GPU_VENDOR_ID;
    k->device_id = P2P_GPU_DEVICE_ID;
    k->revision = P2P_GPU_REVISION;
    k->class_id = P2P_GPU_CLASS;
    dc->desc = "p2plab GPU model: VRAM, resizable BAR aperture, copy engine";
    dc->vmsd = &vmstate_p2p_gpu;
    device_class_set_legacy_reset(dc, p2p_gpu_reset);
    device_class_set_props(dc, p2p_gpu_properties);
    object_class_property_set_description(klass, "vram-size",
        "VRAM bytes: power of two, 1 MiB to 64 GiB (ignored with memdev)");
    object_class_property_set_description(klass, "bar-size",
        "power-on BAR2 size: power of two from rebar-min to VRAM");
    object_class_property_set_description(klass, "rebar-min",
        "smallest Resizable BAR size advertised (>= 1 MiB)");
    object_class_property_set_description(klass, "aperture-granule",
        "aperture slot size: power of two, 4 KiB to rebar-min");
    object_class_property_set_description(klass, "memdev",
        "memory backend for VRAM (default: lazily allocated host RAM)");
    set_bit(DEVICE_CATEGORY_DISPLAY, dc->categories);
}

static const TypeInfo p2p_gpu_types[] = {
    {
        .name = TYPE_P2P_GPU,
        .parent = TYPE_PCI_DEVICE,
        .instance_size = sizeof(P2pGpuState),
        .instance_init = p2p_gpu_instance_init,
        .instance_finalize = p2p_gpu_instance_finalize,
        .class_init = p2p_gpu_class_init,
        .interfaces = (const InterfaceInfo[]) {
            { INTERFACE_PCIE_DEVICE },
            { }
        },
    },
};

DEFINE_TYPES(p2p_gpu_types)
