/*
 * odp-nic: the work-request engine.
 *
 * A bottom half walks the QPs round-robin and runs each one's send queue in
 * order, within a budget of WRs and bytes per run, then reschedules itself.
 * A WR moves its bytes chunk by chunk (at most 64 KiB), translating (key, VA)
 * through the regions right before each chunk's DMA (odp-nic-mr.c), so a
 * missing ODP translation stalls exactly that QP with a page-fault event and
 * an INVALIDATE between two chunks is honoured.  Link QPs hand their WRs to
 * odp-nic-link.c.
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */
#include "qemu/osdep.h"
#include "qemu/units.h"
#include "hw/pci/pci.h"
#include "system/dma.h"
#include "system/memory.h"
#include "qemu/rcu.h"
#include "odp-nic.h"
#include "trace.h"

/* Is [addr, addr + len) plain RAM in our DMA address space (after IOMMU)? */
static bool odp_nic_dma_direct(OdpNicState *s, dma_addr_t addr, uint64_t len,
                               bool write)
{
    AddressSpace *as = pci_get_address_space(PCI_DEVICE(s));
    hwaddr xlat, l = len;
    MemoryRegion *mr;

    RCU_READ_LOCK_GUARD();
    mr = address_space_translate(as, addr, &xlat, &l, write,
                                 MEMTXATTRS_UNSPECIFIED);
    return l >= len && memory_access_is_direct(mr, write,
                                               MEMTXATTRS_UNSPECIFIED);
}

/*
 * Copy n bytes from IOVA src to IOVA dst.  RAM to RAM is one memmove through
 * mapped pointers; anything else (MMIO of a peer BAR, unassigned, IOMMU
 * refusals) goes through the bounce buffer with pci_dma_rw, which reports
 * errors precisely.
 */
static MemTxResult odp_nic_dma_copy(OdpNicState *s, dma_addr_t src,
                                    dma_addr_t dst, uint64_t n)
{
    PCIDevice *pdev = PCI_DEVICE(s);
    MemTxResult r;

    if (!s->fail_next_dma && odp_nic_dma_direct(s, src, n, false) &&
        odp_nic_dma_direct(s, dst, n, true)) {
        dma_addr_t slen = n, dlen = n;
        void *sp = pci_dma_map(pdev, src, &slen, DMA_DIRECTION_TO_DEVICE);
        void *dp = sp ? pci_dma_map(pdev, dst, &dlen,
                                    DMA_DIRECTION_FROM_DEVICE) : NULL;

        if (sp && dp && slen == n && dlen == n) {
            memmove(dp, sp, n);
            pci_dma_unmap(pdev, dp, dlen, DMA_DIRECTION_FROM_DEVICE, n);
            pci_dma_unmap(pdev, sp, slen, DMA_DIRECTION_TO_DEVICE, n);
            return MEMTX_OK;
        }
        if (dp) {
            pci_dma_unmap(pdev, dp, dlen, DMA_DIRECTION_FROM_DEVICE, 0);
        }
        if (sp) {
            pci_dma_unmap(pdev, sp, slen, DMA_DIRECTION_TO_DEVICE, 0);
        }
    }
    r = odp_nic_dma(s, src, s->bounce, n, false);
    if (r == MEMTX_OK) {
        r = odp_nic_dma(s, dst, s->bounce, n, true);
    }
    return r;
}

/* Complete the QP's current WR and move on to the next WQE. */
void odp_nic_complete_wr(OdpNicQP *qp, uint8_t status)
{
    OdpNicState *s = qp->s;
    uint32_t len = status == ODP_NIC_WC_SUCCESS ? qp->wr_len : 0;

    trace_odp_nic_wr_done(qp->qpn, qp->wqe.wr_id, status, qp->wr_len);
    s->cnt[ODP_NIC_CNT_WRS]++;
    if (status != ODP_NIC_WC_SUCCESS) {
        s->cnt[ODP_NIC_CNT_WR_ERRORS]++;
    } else {
        s->cnt[ODP_NIC_CNT_BYTES] += qp->wr_len;
    }
    odp_nic_post_cqe(s, qp->send_cqn, qp->wqe.wr_id, qp->qpn, qp->wqe.opcode,
                     status, len, 0);
    timer_del(qp->timer);
    qp->has_wr = false;
    qp->sq_ci++;
    qp->state = ODP_NIC_QP_STATE_READY;
}

static void odp_nic_wqe_from_le(struct odp_nic_wqe *w)
{
    int i;

    w->imm = le32_to_cpu(w->imm);
    w->wr_id = le64_to_cpu(w->wr_id);
    w->rkey = le32_to_cpu(w->rkey);
    w->remote_va = le64_to_cpu(w->remote_va);
    for (i = 0; i < ODP_NIC_MAX_SGE; i++) {
        w->sge[i].lkey = le32_to_cpu(w->sge[i].lkey);
        w->sge[i].length = le32_to_cpu(w->sge[i].length);
        w->sge[i].va = le64_to_cpu(w->sge[i].va);
    }
}

/* Sum and check a WQE's scatter list; a status if it is malformed. */
static uint8_t odp_nic_wqe_len(const struct odp_nic_wqe *w, uint64_t *len)
{
    uint64_t total = 0;
    int i;

    if (w->num_sge > ODP_NIC_MAX_SGE) {
        return ODP_NIC_WC_BAD_WR;
    }
    for (i = 0; i < w->num_sge; i++) {
        const struct odp_nic_sge *g = &w->sge[i];
        if (g->length && g->va + g->length - 1 < g->va) {
            return ODP_NIC_WC_LOC_PROT_ERR;    /* wraps around */
        }
        total += g->length;
    }
    if (total > ODP_NIC_MAX_WR_LEN) {
        return ODP_NIC_WC_LOC_LEN_ERR;
    }
    *len = total;
    return ODP_NIC_WC_SUCCESS;
}

void odp_nic_seglist_local(OdpNicSegList *l, const struct odp_nic_wqe *w,
                           uint32_t rights)
{
    int i;

    memset(l, 0, sizeof(*l));
    for (i = 0; i < w->num_sge && i < ODP_NIC_MAX_SGE; i++) {
        l->seg[i].key = w->sge[i].lkey;
        l->seg[i].va = w->sge[i].va;
        l->seg[i].len = w->sge[i].length;
        l->total += w->sge[i].length;
    }
    l->n = i;
    l->rights = rights;
}

static void odp_nic_seglist_remote(OdpNicSegList *l, uint32_t rkey,
                                   uint64_t va, uint64_t len, uint32_t rights)
{
    memset(l, 0, sizeof(*l));
    l->seg[0] = (OdpNicSeg){ .key = rkey, .va = va, .len = len };
    l->n = 1;
    l->total = len;
    l->rights = rights;
    l->remote = true;
}

/* Where byte off of a segment list lives: key, va and bytes left there. */
void odp_nic_seg_at(const OdpNicSegList *l, uint64_t off,
                           uint32_t *key, uint64_t *va, uint64_t *rem)
{
    int i;

    for (i = 0; i < l->n; i++) {
        if (off < l->seg[i].len) {
            *key = l->seg[i].key;
            *va = l->seg[i].va + off;
            *rem = l->seg[i].len - off;
            return;
        }
        off -= l->seg[i].len;
    }
    *key = 0;
    *va = 0;
    *rem = 0;
}

/* Turn a failed translation into a fault (ODP) or an error status. */
int odp_nic_xlate_fail(OdpNicState *s, OdpNicQP *qp, const OdpNicSegList *l,
                       OdpNicXlate r, uint32_t key, uint64_t va, uint64_t rem,
                       bool write, uint8_t *status)
{
    if (r == XL_FAULT) {
        if (qp) {
            qp->forced_fault = true;
            odp_nic_raise_fault(s, qp->qpn, key, va, rem, write);
        } else {
            /* Responder side of the link: nobody to stall, report only. */
            odp_nic_raise_fault(s, ODP_NIC_QPN_NONE, key, va, rem, write);
        }
        return COPY_FAULT;
    }
    *status = l->remote ? ODP_NIC_WC_REM_ACCESS_ERR : ODP_NIC_WC_LOC_PROT_ERR;
    return COPY_ERROR;
}

/*
 * Move bytes [*done, total) from src to dst through the translation tables,
 * at most *budget bytes, chunk by chunk.  Each chunk is translated right
 * before its DMA, so an INVALIDATE between two chunks is honoured.
 * qp is the queue to stall on a fault (NULL: responder, no stall).
 */
int odp_nic_copy(OdpNicState *s, OdpNicQP *qp, const OdpNicSegList *src,
                 const OdpNicSegList *dst, uint64_t *done, uint64_t total,
                 uint64_t *budget, uint8_t *status)
{
    bool force = s->fault_all && qp && !qp->forced_fault;

    while (*done < total) {
        uint32_t skey, dkey;
        uint64_t sva, dva, srem, drem, n, sc, dc;
        dma_addr_t siova, diova;
        OdpNicXlate r;

        if (*budget == 0) {
            return COPY_BUDGET;
        }
        odp_nic_seg_at(src, *done, &skey, &sva, &srem);
        odp_nic_seg_at(dst, *done, &dkey, &dva, &drem);
        if (srem == 0 || drem == 0) {
            *status = ODP_NIC_WC_LOC_LEN_ERR;
            return COPY_ERROR;
        }
        n = MIN(MIN(total - *done, *budget), MIN(srem, drem));
        r = odp_nic_xlate(s, skey, sva, n, src->rights, false, force,
                          &siova, &sc);
        if (r != XL_OK) {
            return odp_nic_xlate_fail(s, qp, src, r, skey, sva, srem, false,
                                      status);
        }
        r = odp_nic_xlate(s, dkey, dva, n, dst->rights, true, force,
                          &diova, &dc);
        if (r != XL_OK) {
            return odp_nic_xlate_fail(s, qp, dst, r, dkey, dva, drem, true,
                                      status);
        }
        n = MIN(n, MIN(sc, dc));
        if (odp_nic_dma_copy(s, siova, diova, n) != MEMTX_OK) {
            *status = ODP_NIC_WC_DMA_ERR;
            return COPY_ERROR;
        }
        *done += n;
        *budget -= n;
    }
    return COPY_DONE;
}

/* Peek the head of a QP's receive queue.  false: empty (or no RQ). */
static bool odp_nic_rq_peek(OdpNicQP *qp, struct odp_nic_wqe *w, uint8_t *status)
{
    uint32_t size;
    dma_addr_t addr;
    uint64_t len;

    if (qp->rq_log == 0 || qp->rq_ci == qp->rq_pi) {
        return false;
    }
    size = 1u << qp->rq_log;
    addr = qp->rq_base + (uint64_t)(qp->rq_ci & (size - 1)) * sizeof(*w);
    if (pci_dma_read(PCI_DEVICE(qp->s), addr, w, sizeof(*w)) != MEMTX_OK) {
        qp->s->cnt[ODP_NIC_CNT_DMA_ERRORS]++;
        memset(w, 0, sizeof(*w));
        *status = ODP_NIC_WC_DMA_ERR;
        return true;
    }
    odp_nic_wqe_from_le(w);
    *status = odp_nic_wqe_len(w, &len);
    return true;
}

void odp_nic_rq_consume(OdpNicQP *qp, const struct odp_nic_wqe *w,
                        uint8_t status, uint32_t byte_len, uint32_t imm)
{
    odp_nic_post_cqe(qp->s, qp->recv_cqn, w->wr_id, qp->qpn, ODP_NIC_WR_RECV,
                     status, status == ODP_NIC_WC_SUCCESS ? byte_len : 0, imm);
    qp->rq_ci++;
}

/*
 * Take the RQ head for an incoming message of need bytes, as dst.  false: the
 * RQ is empty.  Otherwise *st says whether the WQE can take the message; one
 * that cannot has already been completed with that status.
 */
bool odp_nic_rq_take(OdpNicQP *qp, struct odp_nic_wqe *rw, OdpNicSegList *dst,
                     uint64_t need, uint8_t *st)
{
    if (!odp_nic_rq_peek(qp, rw, st)) {
        return false;
    }
    odp_nic_seglist_local(dst, rw, ODP_NIC_ACCESS_LOCAL_WRITE);
    if (*st == ODP_NIC_WC_SUCCESS && dst->total < need) {
        *st = ODP_NIC_WC_LOC_LEN_ERR;
    }
    if (*st != ODP_NIC_WC_SUCCESS) {
        odp_nic_rq_consume(qp, rw, *st, 0, 0);
    }
    return true;
}

/* Loopback SEND: the payload lands in the RQ head of the target QP. */
static void odp_nic_exec_send(OdpNicQP *qp, uint64_t *budget)
{
    OdpNicState *s = qp->s;
    OdpNicQP *dq = odp_nic_qp(s, qp->remote_qpn);
    OdpNicSegList src, dst;
    struct odp_nic_wqe rw;
    uint8_t st = ODP_NIC_WC_SUCCESS;
    int r;

    if (!dq || dq->dest != ODP_NIC_QP_DEST_LOOPBACK || dq->rq_log == 0) {
        odp_nic_complete_wr(qp, ODP_NIC_WC_REM_OP_ERR);
        return;
    }
    if (!odp_nic_rq_take(dq, &rw, &dst, qp->wr_len, &st)) {
        qp->state = ODP_NIC_QP_STATE_WAIT_RQ;   /* an RQ doorbell wakes us */
        return;
    }
    if (st != ODP_NIC_WC_SUCCESS) {
        odp_nic_complete_wr(qp, ODP_NIC_WC_REM_OP_ERR);
        return;
    }
    dst.remote = true;
    odp_nic_seglist_local(&src, &qp->wqe, 0);
    r = odp_nic_copy(s, qp, &src, &dst, &qp->done, qp->wr_len, budget, &st);
    switch (r) {
    case COPY_DONE:
        odp_nic_rq_consume(dq, &rw, ODP_NIC_WC_SUCCESS, qp->wr_len,
                           qp->wqe.imm);
        odp_nic_complete_wr(qp, ODP_NIC_WC_SUCCESS);
        break;
    case COPY_ERROR:
        odp_nic_rq_consume(dq, &rw, ODP_NIC_WC_LOC_PROT_ERR, 0, 0);
        odp_nic_complete_wr(qp, st);
        break;
    case COPY_FAULT:
        qp->state = ODP_NIC_QP_STATE_STALLED;
        break;
    }
}

static void odp_nic_exec(OdpNicQP *qp, uint64_t *budget)
{
    OdpNicState *s = qp->s;
    const struct odp_nic_wqe *w = &qp->wqe;
    OdpNicSegList local, remote;
    uint8_t st = ODP_NIC_WC_SUCCESS;
    int r;

    if (w->opcode == ODP_NIC_WR_NOP) {
        odp_nic_complete_wr(qp, ODP_NIC_WC_SUCCESS);
        return;
    }
    if (qp->dest == ODP_NIC_QP_DEST_LINK) {
        odp_nic_link_start_wr(qp, budget);
        return;
    }
    switch (w->opcode) {
    case ODP_NIC_WR_RDMA_WRITE:
        odp_nic_seglist_local(&local, w, 0);
        odp_nic_seglist_remote(&remote, w->rkey, w->remote_va, qp->wr_len,
                               ODP_NIC_ACCESS_REMOTE_WRITE);
        r = odp_nic_copy(s, qp, &local, &remote, &qp->done, qp->wr_len,
                         budget, &st);
        break;
    case ODP_NIC_WR_RDMA_READ:
        odp_nic_seglist_local(&local, w, ODP_NIC_ACCESS_LOCAL_WRITE);
        odp_nic_seglist_remote(&remote, w->rkey, w->remote_va, qp->wr_len,
                               ODP_NIC_ACCESS_REMOTE_READ);
        r = odp_nic_copy(s, qp, &remote, &local, &qp->done, qp->wr_len,
                         budget, &st);
        break;
    default:
        odp_nic_exec_send(qp, budget);
        return;
    }
    switch (r) {
    case COPY_DONE:
        odp_nic_complete_wr(qp, ODP_NIC_WC_SUCCESS);
        break;
    case COPY_ERROR:
        odp_nic_complete_wr(qp, st);
        break;
    case COPY_FAULT:
        /* Only this QP stalls; RESUME restarts it. */
        qp->state = ODP_NIC_QP_STATE_STALLED;
        break;
    }
}

/* Fetch and check the WQE at sq_ci.  false if it was completed at once. */
static bool odp_nic_fetch_wqe(OdpNicQP *qp)
{
    OdpNicState *s = qp->s;
    uint32_t size = 1u << qp->sq_log;
    dma_addr_t addr = qp->sq_base + (uint64_t)(qp->sq_ci & (size - 1)) * 64;
    struct odp_nic_wqe *w = &qp->wqe;
    uint8_t st;

    qp->has_wr = true;
    qp->done = 0;
    qp->wr_len = 0;
    qp->forced_fault = false;
    qp->retries = 0;
    qp->rnr_retries = 0;
    qp->msn++;                          /* the link's message number */
    if (pci_dma_read(PCI_DEVICE(s), addr, w, sizeof(*w)) != MEMTX_OK) {
        s->cnt[ODP_NIC_CNT_DMA_ERRORS]++;
        memset(w, 0, sizeof(*w));
        odp_nic_complete_wr(qp, ODP_NIC_WC_DMA_ERR);
        return false;
    }
    odp_nic_wqe_from_le(w);
    trace_odp_nic_wr_start(qp->qpn, w->opcode, w->wr_id);
    if (w->opcode > ODP_NIC_WR_SEND || w->flags) {
        odp_nic_complete_wr(qp, ODP_NIC_WC_BAD_WR);
        return false;
    }
    st = odp_nic_wqe_len(w, &qp->wr_len);
    if (st == ODP_NIC_WC_SUCCESS && qp->wr_len &&
        w->opcode != ODP_NIC_WR_SEND &&
        w->remote_va + qp->wr_len - 1 < w->remote_va) {
        st = ODP_NIC_WC_REM_ACCESS_ERR;
    }
    if (st != ODP_NIC_WC_SUCCESS) {
        qp->wr_len = 0;
        odp_nic_complete_wr(qp, st);
        return false;
    }
    return true;
}

/* Run one QP within the budgets; true if it has work left for later. */
static bool odp_nic_qp_run(OdpNicQP *qp, uint64_t *budget, int *wrs)
{
    while (qp->valid && qp->state == ODP_NIC_QP_STATE_READY) {
        if (!qp->has_wr && qp->sq_ci == qp->sq_pi) {
            return false;
        }
        if (*budget == 0 || *wrs <= 0) {
            return true;
        }
        (*wrs)--;
        if (!qp->has_wr && !odp_nic_fetch_wqe(qp)) {
            continue;
        }
        odp_nic_exec(qp, budget);
    }
    return false;
}

/* The work engine: bounded work per run, round-robin over QPs. */
void odp_nic_work_bh(void *opaque)
{
    OdpNicState *s = opaque;
    uint64_t budget = ODP_NIC_BH_BYTES;
    int wrs = 256;
    bool more = false;
    uint32_t i;

    if (s->fatal) {
        return;
    }
    for (i = 0; i < s->max_qps; i++) {
        OdpNicQP *qp = &s->qps[(s->rr + i) % s->max_qps];
        if (qp->valid && odp_nic_qp_run(qp, &budget, &wrs)) {
            more = true;
        }
        if (qp->valid && qp->rd_pending &&
            odp_nic_link_serve_read(qp, &budget)) {
            more = true;
        }
    }
    s->rr = (s->rr + 1) % s->max_qps;
    if (more) {
        qemu_bh_schedule(s->work_bh);
    }
}

