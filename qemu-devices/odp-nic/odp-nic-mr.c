/*
 * odp-nic: memory regions and their translation tables.
 *
 * A region maps a VA range of the owning process to IOVAs, one 4 KiB page
 * per entry.  Lookups happen at the moment of every DMA chunk and nothing is
 * cached across chunks, which is what makes INVALIDATE a fence: commands and
 * the work engine run in the same main-loop context, so when an INVALIDATE
 * command completes no DMA is in flight, and every later chunk sees the
 * zapped entries.
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */
#include "qemu/osdep.h"
#include "qemu/units.h"
#include "qemu/log.h"
#include "odp-nic.h"
#include "trace.h"

#define XLT_LIST_BATCH  512     /* entries read per DMA from a list */

static OdpNicMR *odp_nic_mr(OdpNicState *s, uint32_t key)
{
    if (key >= s->max_mrs || !s->mrs[key].valid) {
        return NULL;
    }
    return &s->mrs[key];
}

bool odp_nic_mr_is_odp(OdpNicState *s, uint32_t key)
{
    OdpNicMR *mr = odp_nic_mr(s, key);

    return mr && mr->mode == ODP_NIC_MR_ODP;
}

/* Page index of va within mr; the caller has checked va is inside. */
static uint64_t odp_nic_mr_page(OdpNicMR *mr, uint64_t va)
{
    return (va >> ODP_NIC_PAGE_SHIFT) - (mr->start >> ODP_NIC_PAGE_SHIFT);
}

/* Is [va, va + len) inside the region?  len >= 1, overflow-safe. */
static bool odp_nic_mr_contains(OdpNicMR *mr, uint64_t va, uint64_t len)
{
    return va >= mr->start && len <= mr->length &&
           va - mr->start <= mr->length - len;
}

static bool odp_nic_entry_ok(uint64_t e, bool write)
{
    uint64_t need = ODP_NIC_XLT_VALID | (write ? ODP_NIC_XLT_WRITE
                                               : ODP_NIC_XLT_READ);
    return (e & need) == need;
}

/*
 * Translate (key, va) for an access of up to len bytes.  On XL_OK, *iova is
 * where va lives and *contig (1 .. min(len, ODP_NIC_CHUNK)) how many bytes
 * from there are IOVA-contiguous and accessible.
 */
OdpNicXlate odp_nic_xlate(OdpNicState *s, uint32_t key, uint64_t va,
                          uint64_t len, uint32_t rights, bool write,
                          bool force_fault, dma_addr_t *iova, uint64_t *contig)
{
    OdpNicMR *mr = odp_nic_mr(s, key);
    uint64_t idx, e, got, want;

    if (!mr) {
        return XL_BAD_KEY;
    }
    if ((mr->access & rights) != rights) {
        return XL_RIGHTS;
    }
    if (len == 0 || !odp_nic_mr_contains(mr, va, len)) {
        return XL_RANGE;
    }
    idx = odp_nic_mr_page(mr, va);
    e = mr->xlt[idx];
    if (!odp_nic_entry_ok(e, write) ||
        (force_fault && mr->mode == ODP_NIC_MR_ODP)) {
        return mr->mode == ODP_NIC_MR_ODP ? XL_FAULT : XL_HOLE;
    }
    want = MIN(len, ODP_NIC_CHUNK);
    *iova = (e & ODP_NIC_XLT_ADDR_MASK) + (va & (ODP_NIC_PAGE_SIZE - 1));
    got = MIN(want, ODP_NIC_PAGE_SIZE - (va & (ODP_NIC_PAGE_SIZE - 1)));
    /* Extend over following pages while they are present and contiguous. */
    while (got < want) {
        uint64_t next = mr->xlt[++idx];
        if (!odp_nic_entry_ok(next, write) ||
            (next & ODP_NIC_XLT_ADDR_MASK) !=
            (e & ODP_NIC_XLT_ADDR_MASK) + ODP_NIC_PAGE_SIZE) {
            break;
        }
        e = next;
        got = MIN(want, got + ODP_NIC_PAGE_SIZE);
    }
    *contig = got;
    return XL_OK;
}

/* Copy count entries from a guest list into mr->xlt[idx...]. */
static uint8_t odp_nic_mr_load(OdpNicState *s, OdpNicMR *mr, uint64_t idx,
                               uint64_t count, uint64_t list)
{
    uint64_t buf[XLT_LIST_BATCH];
    uint64_t i, n, j;

    if (list & 7) {
        return ODP_NIC_CMD_BAD_PARAM;
    }
    s->cmd_work += count;
    for (i = 0; i < count; i += n) {
        n = MIN(count - i, XLT_LIST_BATCH);
        if (pci_dma_read(PCI_DEVICE(s), list + i * 8, buf, n * 8) !=
            MEMTX_OK) {
            s->cnt[ODP_NIC_CNT_DMA_ERRORS]++;
            return ODP_NIC_CMD_DMA_ERROR;
        }
        for (j = 0; j < n; j++) {
            /* Reserved flag bits are dropped, never interpreted. */
            mr->xlt[idx + i + j] = le64_to_cpu(buf[j]) &
                (ODP_NIC_XLT_ADDR_MASK | ODP_NIC_XLT_VALID |
                 ODP_NIC_XLT_READ | ODP_NIC_XLT_WRITE);
        }
    }
    return ODP_NIC_CMD_OK;
}

static void odp_nic_mr_free(OdpNicState *s, OdpNicMR *mr)
{
    s->xlt_used -= mr->npages;
    g_free(mr->xlt);
    memset(mr, 0, sizeof(*mr));
}

uint8_t odp_nic_cmd_create_mr(OdpNicState *s, const struct odp_nic_cmd *c)
{
    uint32_t key = le32_to_cpu(c->u.create_mr.key);
    uint32_t access = le32_to_cpu(c->u.create_mr.access);
    uint64_t start = le64_to_cpu(c->u.create_mr.start);
    uint64_t length = le64_to_cpu(c->u.create_mr.length);
    uint64_t xlt_addr = le64_to_cpu(c->u.create_mr.xlt_addr);
    uint32_t xlt_count = le32_to_cpu(c->u.create_mr.xlt_count);
    uint8_t mode = c->u.create_mr.mode;
    uint64_t npages;
    OdpNicMR *mr;
    uint8_t st;

    if (key >= s->max_mrs) {
        return ODP_NIC_CMD_BAD_INDEX;
    }
    if (s->mrs[key].valid) {
        return ODP_NIC_CMD_BUSY;
    }
    if (c->u.create_mr.page_shift != ODP_NIC_PAGE_SHIFT ||
        mode > ODP_NIC_MR_ODP || (access & ~ODP_NIC_ACCESS_ALL) ||
        length == 0 || start + length - 1 < start) {
        return ODP_NIC_CMD_BAD_PARAM;
    }
    npages = ((start + length - 1) >> ODP_NIC_PAGE_SHIFT) -
             (start >> ODP_NIC_PAGE_SHIFT) + 1;
    if (npages > s->max_xlt_pages || xlt_count > npages) {
        return ODP_NIC_CMD_BAD_PARAM;
    }
    if (s->xlt_used + npages > s->max_xlt_total) {
        return ODP_NIC_CMD_NO_RESOURCES;
    }
    mr = &s->mrs[key];
    mr->xlt = g_try_new0(uint64_t, npages);
    if (!mr->xlt) {
        return ODP_NIC_CMD_NO_RESOURCES;
    }
    mr->npages = npages;
    s->xlt_used += npages;
    s->cmd_work += npages;      /* the zeroed table */
    mr->mode = mode;
    mr->access = access;
    mr->start = start;
    mr->length = length;
    if (xlt_addr && xlt_count) {
        st = odp_nic_mr_load(s, mr, 0, xlt_count, xlt_addr);
        if (st != ODP_NIC_CMD_OK) {
            odp_nic_mr_free(s, mr);
            return st;
        }
    }
    mr->valid = true;
    trace_odp_nic_mr_create(key, mode, access, start, length);
    return ODP_NIC_CMD_OK;
}

uint8_t odp_nic_cmd_destroy_mr(OdpNicState *s, const struct odp_nic_cmd *c)
{
    uint32_t key = le32_to_cpu(c->u.key.key);
    OdpNicMR *mr = odp_nic_mr(s, key);

    if (!mr) {
        return ODP_NIC_CMD_BAD_INDEX;
    }
    /* A WR stalled on this key finds it gone after RESUME: error CQE. */
    odp_nic_mr_free(s, mr);
    trace_odp_nic_mr_destroy(key);
    return ODP_NIC_CMD_OK;
}

uint8_t odp_nic_cmd_update_xlt(OdpNicState *s, const struct odp_nic_cmd *c)
{
    uint32_t key = le32_to_cpu(c->u.update_xlt.key);
    uint32_t count = le32_to_cpu(c->u.update_xlt.count);
    uint64_t idx = le64_to_cpu(c->u.update_xlt.page_index);
    uint64_t list = le64_to_cpu(c->u.update_xlt.list_addr);
    OdpNicMR *mr = odp_nic_mr(s, key);

    if (!mr) {
        return ODP_NIC_CMD_BAD_INDEX;
    }
    if (count == 0 || idx >= mr->npages || count > mr->npages - idx) {
        return ODP_NIC_CMD_BAD_PARAM;
    }
    trace_odp_nic_xlt_update(key, idx, count);
    return odp_nic_mr_load(s, mr, idx, count, list);
}

/*
 * Clip [va, va+len) to the region; false if nothing is left or len == 0.
 * Inclusive ends: a region or a range may end exactly at 2^64, where an
 * exclusive end wraps to 0 and INVALIDATE would silently zap nothing.  A
 * range that wraps is taken to run to the end of the address space.
 */
static bool odp_nic_mr_clip(OdpNicMR *mr, uint64_t *va, uint64_t *len)
{
    uint64_t last = mr->start + mr->length - 1, lo, hi;

    if (*len == 0) {
        return false;
    }
    hi = *va + *len - 1 < *va ? UINT64_MAX : *va + *len - 1;
    lo = MAX(*va, mr->start);
    hi = MIN(hi, last);
    if (lo > hi) {
        return false;
    }
    *va = lo;
    *len = hi - lo + 1;
    return true;
}

uint8_t odp_nic_cmd_invalidate(OdpNicState *s, const struct odp_nic_cmd *c)
{
    uint32_t key = le32_to_cpu(c->u.range.key);
    uint64_t va = le64_to_cpu(c->u.range.va);
    uint64_t len = le64_to_cpu(c->u.range.length);
    OdpNicMR *mr = odp_nic_mr(s, key);
    uint64_t first, last, i;

    if (!mr) {
        return ODP_NIC_CMD_BAD_INDEX;
    }
    s->cnt[ODP_NIC_CNT_INVALIDATIONS]++;
    trace_odp_nic_invalidate(key, va, len);
    if (!odp_nic_mr_clip(mr, &va, &len)) {
        return ODP_NIC_CMD_OK;     /* nothing of the region in the range */
    }
    /*
     * Zap.  The fence is implicit: this runs in the main loop like every
     * DMA of the device, and translations are never cached beyond one
     * synchronous chunk (see the top of this file).
     */
    first = odp_nic_mr_page(mr, va);
    last = odp_nic_mr_page(mr, va + len - 1);
    s->cmd_work += last - first + 1;
    for (i = first; i <= last; i++) {
        mr->xlt[i] = 0;
    }
    return ODP_NIC_CMD_OK;
}

uint8_t odp_nic_cmd_prefetch(OdpNicState *s, const struct odp_nic_cmd *c,
                             uint64_t *out)
{
    uint32_t key = le32_to_cpu(c->u.range.key);
    uint32_t flags = le32_to_cpu(c->u.range.flags);
    uint64_t va = le64_to_cpu(c->u.range.va);
    uint64_t len = le64_to_cpu(c->u.range.length);
    OdpNicMR *mr = odp_nic_mr(s, key);
    bool write = flags & ODP_NIC_PREFETCH_WRITE;
    uint64_t first, last, i;

    if (!mr) {
        return ODP_NIC_CMD_BAD_INDEX;
    }
    if (flags & ~ODP_NIC_PREFETCH_WRITE) {
        return ODP_NIC_CMD_BAD_PARAM;
    }
    *out = 0;
    if (mr->mode != ODP_NIC_MR_ODP || !odp_nic_mr_clip(mr, &va, &len)) {
        return ODP_NIC_CMD_OK;
    }
    first = odp_nic_mr_page(mr, va);
    last = odp_nic_mr_page(mr, va + len - 1);
    s->cmd_work += last - first + 1;
    for (i = first; i <= last; i++) {
        if (!odp_nic_entry_ok(mr->xlt[i], write)) {
            /* One event for the whole range; no queue waits on it. */
            odp_nic_raise_fault(s, ODP_NIC_QPN_NONE, key, va,
                                MIN(len, UINT32_MAX), write);
            *out = 1;
            break;
        }
    }
    return ODP_NIC_CMD_OK;
}

void odp_nic_mr_reset(OdpNicState *s)
{
    uint32_t i;

    for (i = 0; i < s->max_mrs; i++) {
        if (s->mrs[i].valid) {
            odp_nic_mr_free(s, &s->mrs[i]);
        }
    }
    s->xlt_used = 0;
}
