/*
 * odp-nic: an RDMA NIC with On-Demand Paging, as a QEMU PCIe device.
 *
 * This file holds the PCI function, BAR0 (registers and doorbells), the
 * command queue, the CQs and the EQ.  The work-request engine is in
 * odp-nic-wr.c, regions and translation in odp-nic-mr.c, the wire in
 * odp-nic-link.c.
 * docs/devices/odp-nic.md is the specification; the register and descriptor
 * layouts are in qemu-devices/include/p2plab/odp_nic_hw.h.
 *
 * Everything runs in the main loop under the BQL: MMIO only records doorbell
 * values and schedules a bottom half; the command BH and the work BH do the
 * DMA.  No guest value is trusted: every index, size and length is checked
 * and bad input becomes a status code, never an abort.
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */
#include "qemu/osdep.h"
#include "qemu/units.h"
#include "qemu/log.h"
#include "qemu/module.h"
#include "qapi/error.h"
#include "hw/pci/pci.h"
#include "hw/pci/pcie.h"
#include "hw/pci/msix.h"
#include "hw/qdev-properties.h"
#include "migration/vmstate.h"
#include "system/dma.h"
#include "odp-nic.h"
#include "trace.h"

/* ---- small helpers -------------------------------------------------- */

static void odp_nic_irq(OdpNicState *s, unsigned vector)
{
    PCIDevice *pdev = PCI_DEVICE(s);

    /* msix_notify() sets the pending bit if the vector is masked. */
    if (msix_enabled(pdev) && vector < ODP_NIC_MSIX_VECTORS) {
        msix_notify(pdev, vector);
    }
}

/* Data-path DMA: counts failures and honours fail-next-dma. */
MemTxResult odp_nic_dma(OdpNicState *s, dma_addr_t addr, void *buf,
                        uint64_t len, bool write)
{
    MemTxResult r;

    if (s->fail_next_dma) {
        s->fail_next_dma--;
        r = MEMTX_ERROR;
    } else {
        r = pci_dma_rw(PCI_DEVICE(s), addr, buf, len,
                       write ? DMA_DIRECTION_FROM_DEVICE
                             : DMA_DIRECTION_TO_DEVICE,
                       MEMTXATTRS_UNSPECIFIED);
    }
    if (r != MEMTX_OK) {
        s->cnt[ODP_NIC_CNT_DMA_ERRORS]++;
        trace_odp_nic_dma_error(addr, len, write);
    }
    return r;
}

static uint32_t odp_nic_ring_size(const OdpNicRing *r)
{
    return 1u << r->log_size;
}

/* Post one 32-byte entry on a CQ or the EQ; false if the ring is full. */
static bool odp_nic_ring_post(OdpNicState *s, OdpNicRing *r, void *entry,
                              uint8_t *owner)
{
    uint32_t size = odp_nic_ring_size(r);
    dma_addr_t addr;

    if (r->pi - r->ci >= size) {
        return false;
    }
    /* Phase bit: 1 on the first pass over the ring, 0 on the next, ... */
    *owner = !((r->pi >> r->log_size) & 1);
    addr = r->base + (uint64_t)(r->pi & (size - 1)) * 32;
    if (pci_dma_write(PCI_DEVICE(s), addr, entry, 32) != MEMTX_OK) {
        s->cnt[ODP_NIC_CNT_DMA_ERRORS]++;
        trace_odp_nic_dma_error(addr, 32, true);
    }
    r->pi++;
    odp_nic_irq(s, r->vector);
    return true;
}

static void odp_nic_post_eqe(OdpNicState *s, struct odp_nic_eqe *e)
{
    if (!s->eq.valid || !odp_nic_ring_post(s, &s->eq, e, &e->owner)) {
        s->cnt[ODP_NIC_CNT_EQ_OVERFLOWS]++;
    }
}

void odp_nic_raise_fault(OdpNicState *s, uint32_t qpn, uint32_t key,
                         uint64_t va, uint64_t len, bool write)
{
    struct odp_nic_eqe e = {
        .type = ODP_NIC_EV_PAGE_FAULT,
        .access = write ? ODP_NIC_FAULT_WRITE : ODP_NIC_FAULT_READ,
        .qpn = cpu_to_le32(qpn),
        .key = cpu_to_le32(key),
        .length = cpu_to_le32(MIN(len, UINT32_MAX)),
        .va = cpu_to_le64(va),
    };

    s->cnt[ODP_NIC_CNT_FAULTS_RAISED]++;
    trace_odp_nic_fault(qpn, key, va, len, write);
    odp_nic_post_eqe(s, &e);
}

void odp_nic_post_cqe(OdpNicState *s, uint32_t cqn, uint64_t wr_id,
                      uint32_t qpn, uint8_t opcode, uint8_t status,
                      uint32_t byte_len, uint32_t imm)
{
    OdpNicRing *cq = cqn < s->max_cqs ? &s->cqs[cqn] : NULL;
    struct odp_nic_cqe e = {
        .wr_id = cpu_to_le64(wr_id),
        .byte_len = cpu_to_le32(byte_len),
        .qpn = cpu_to_le32(qpn),
        .opcode = opcode,
        .status = status,
        .imm = cpu_to_le32(imm),
    };

    if (cq && cq->valid && odp_nic_ring_post(s, cq, &e, &e.owner)) {
        return;
    }
    s->cnt[ODP_NIC_CNT_CQ_OVERFLOWS]++;
    if (cq && cq->valid && !cq->overflowed) {
        struct odp_nic_eqe ev = {
            .type = ODP_NIC_EV_CQ_OVERFLOW,
            .qpn = cpu_to_le32(cqn),
        };
        cq->overflowed = true;
        odp_nic_post_eqe(s, &ev);
    }
}

OdpNicQP *odp_nic_qp(OdpNicState *s, uint32_t qpn)
{
    if (qpn >= s->max_qps || !s->qps[qpn].valid) {
        return NULL;
    }
    return &s->qps[qpn];
}

void odp_nic_kick(OdpNicState *s)
{
    qemu_bh_schedule(s->work_bh);
}

/* ---- commands ------------------------------------------------------- */

static uint8_t odp_nic_ring_create(OdpNicState *s, OdpNicRing *r,
                                   const struct odp_nic_cmd *c, bool is_eq)
{
    uint8_t log = c->u.create_cq.log_size;
    uint16_t vector = le16_to_cpu(c->u.create_cq.vector);
    uint64_t base = le64_to_cpu(c->u.create_cq.base);

    if (r->valid) {
        return ODP_NIC_CMD_BUSY;
    }
    if (log < 1 || log > ODP_NIC_MAX_LOG_Q || (base & 31)) {
        return ODP_NIC_CMD_BAD_PARAM;
    }
    if (is_eq) {
        vector = ODP_NIC_VEC_EQ;
    } else if (vector >= ODP_NIC_MSIX_VECTORS) {
        return ODP_NIC_CMD_BAD_PARAM;
    }
    *r = (OdpNicRing){ .valid = true, .base = base, .log_size = log,
                       .vector = vector };
    return ODP_NIC_CMD_OK;
}

static void odp_nic_qp_clear(OdpNicQP *qp)
{
    OdpNicState *s = qp->s;
    QEMUTimer *t = qp->timer;
    uint32_t qpn = qp->qpn;

    timer_del(t);
    memset(qp, 0, sizeof(*qp));
    qp->s = s;
    qp->qpn = qpn;
    qp->timer = t;
}

static uint8_t odp_nic_cmd_create_qp(OdpNicState *s,
                                     const struct odp_nic_cmd *c)
{
    const struct odp_nic_cmd_create_qp *a = &c->u.create_qp;
    uint32_t qpn = le32_to_cpu(a->qpn);
    uint32_t scqn = le32_to_cpu(a->send_cqn);
    uint32_t rcqn = le32_to_cpu(a->recv_cqn);
    uint64_t sq_base = le64_to_cpu(a->sq_base);
    uint64_t rq_base = le64_to_cpu(a->rq_base);
    OdpNicQP *qp;

    if (qpn >= s->max_qps) {
        return ODP_NIC_CMD_BAD_INDEX;
    }
    qp = &s->qps[qpn];
    if (qp->valid) {
        return ODP_NIC_CMD_BUSY;
    }
    if (scqn >= s->max_cqs || !s->cqs[scqn].valid) {
        return ODP_NIC_CMD_BAD_INDEX;
    }
    if (a->rq_log_size && (rcqn >= s->max_cqs || !s->cqs[rcqn].valid)) {
        return ODP_NIC_CMD_BAD_INDEX;
    }
    if (a->sq_log_size < 1 || a->sq_log_size > ODP_NIC_MAX_LOG_Q ||
        a->rq_log_size > ODP_NIC_MAX_LOG_Q || (sq_base & 63) ||
        (rq_base & 63) || a->dest > ODP_NIC_QP_DEST_LINK) {
        return ODP_NIC_CMD_BAD_PARAM;
    }
    odp_nic_qp_clear(qp);
    qp->valid = true;
    qp->dest = a->dest;
    qp->remote_qpn = le32_to_cpu(a->remote_qpn);
    qp->send_cqn = scqn;
    qp->recv_cqn = a->rq_log_size ? rcqn : scqn;
    qp->sq_base = sq_base;
    qp->rq_base = rq_base;
    qp->sq_log = a->sq_log_size;
    qp->rq_log = a->rq_log_size;
    qp->state = ODP_NIC_QP_STATE_READY;
    s->cqs[qp->send_cqn].refs++;
    s->cqs[qp->recv_cqn].refs++;
    return ODP_NIC_CMD_OK;
}

static uint8_t odp_nic_cmd_destroy_qp(OdpNicState *s, uint32_t qpn)
{
    OdpNicQP *qp = odp_nic_qp(s, qpn);

    if (!qp) {
        return ODP_NIC_CMD_BAD_INDEX;
    }
    /* A stalled or in-flight WR is dropped without a CQE. */
    s->cqs[qp->send_cqn].refs--;
    s->cqs[qp->recv_cqn].refs--;
    odp_nic_qp_clear(qp);
    return ODP_NIC_CMD_OK;
}

static uint8_t odp_nic_cmd_resume(OdpNicState *s, const struct odp_nic_cmd *c)
{
    uint32_t qpn = le32_to_cpu(c->u.resume.qpn);
    uint32_t status = le32_to_cpu(c->u.resume.status);
    OdpNicQP *qp = odp_nic_qp(s, qpn);

    if (!qp) {
        return ODP_NIC_CMD_BAD_INDEX;
    }
    if (qp->state != ODP_NIC_QP_STATE_STALLED) {
        return ODP_NIC_CMD_BAD_STATE;
    }
    trace_odp_nic_resume(qpn, status);
    if (status == ODP_NIC_RESUME_OK) {
        /*
         * Loopback retries from where it stopped (bytes before done were
         * moved); a link message starts over, the peer expects offset 0.
         */
        s->cnt[ODP_NIC_CNT_FAULTS_RESOLVED]++;
        if (qp->dest == ODP_NIC_QP_DEST_LINK) {
            qp->done = 0;
        }
        qp->state = ODP_NIC_QP_STATE_READY;
    } else {
        s->cnt[ODP_NIC_CNT_FAULTS_FAILED]++;
        odp_nic_complete_wr(qp, ODP_NIC_WC_FAULT_ABORT);
    }
    odp_nic_kick(s);
    return ODP_NIC_CMD_OK;
}

static uint8_t odp_nic_exec_cmd(OdpNicState *s, const struct odp_nic_cmd *c,
                                uint64_t *out)
{
    uint32_t num = le32_to_cpu(c->u.num.num);

    switch (c->opcode) {
    case ODP_NIC_CMD_NOP:
        return ODP_NIC_CMD_OK;
    case ODP_NIC_CMD_CREATE_MR:
        return odp_nic_cmd_create_mr(s, c);
    case ODP_NIC_CMD_DESTROY_MR:
        return odp_nic_cmd_destroy_mr(s, c);
    case ODP_NIC_CMD_UPDATE_XLT:
        return odp_nic_cmd_update_xlt(s, c);
    case ODP_NIC_CMD_INVALIDATE:
        return odp_nic_cmd_invalidate(s, c);
    case ODP_NIC_CMD_PREFETCH:
        return odp_nic_cmd_prefetch(s, c, out);
    case ODP_NIC_CMD_CREATE_CQ:
        if (num >= s->max_cqs) {
            return ODP_NIC_CMD_BAD_INDEX;
        }
        return odp_nic_ring_create(s, &s->cqs[num], c, false);
    case ODP_NIC_CMD_DESTROY_CQ:
        if (num >= s->max_cqs || !s->cqs[num].valid) {
            return ODP_NIC_CMD_BAD_INDEX;
        }
        if (s->cqs[num].refs) {
            return ODP_NIC_CMD_BUSY;
        }
        memset(&s->cqs[num], 0, sizeof(s->cqs[num]));
        return ODP_NIC_CMD_OK;
    case ODP_NIC_CMD_CREATE_EQ:
        if (num != 0) {
            return ODP_NIC_CMD_BAD_INDEX;
        }
        return odp_nic_ring_create(s, &s->eq, c, true);
    case ODP_NIC_CMD_DESTROY_EQ:
        if (num != 0 || !s->eq.valid) {
            return ODP_NIC_CMD_BAD_INDEX;
        }
        memset(&s->eq, 0, sizeof(s->eq));
        return ODP_NIC_CMD_OK;
    case ODP_NIC_CMD_CREATE_QP:
        return odp_nic_cmd_create_qp(s, c);
    case ODP_NIC_CMD_DESTROY_QP:
        return odp_nic_cmd_destroy_qp(s, num);
    case ODP_NIC_CMD_RESUME:
        return odp_nic_cmd_resume(s, c);
    case ODP_NIC_CMD_QUERY_COUNTER:
        if (num >= ODP_NIC_CNT_NUM) {
            return ODP_NIC_CMD_BAD_INDEX;
        }
        *out = s->cnt[num];
        return ODP_NIC_CMD_OK;
    default:
        return ODP_NIC_CMD_BAD_OPCODE;
    }
}

static void odp_nic_fatal(OdpNicState *s)
{
    struct odp_nic_eqe e = { .type = ODP_NIC_EV_FATAL };

    s->fatal = true;
    trace_odp_nic_fatal();
    odp_nic_post_eqe(s, &e);
}

static void odp_nic_cmd_bh(void *opaque)
{
    OdpNicState *s = opaque;
    uint32_t size = 1u << s->cmdq_log;
    int k;

    /*
     * Table work (lists read, entries zapped or scanned) is bounded per run
     * too: 64 maximal UPDATE_XLTs would otherwise hold the main loop for
     * 64 * max-xlt-pages entries at once.
     */
    s->cmd_work = 0;
    for (k = 0; k < ODP_NIC_BH_CMDS && s->cmd_work < ODP_NIC_BH_XLT; k++) {
        struct odp_nic_cmd c;
        dma_addr_t addr;
        uint64_t out = 0;

        if (s->fatal || s->cmdq_log == 0 || s->cmdq_ci == s->cmdq_pi) {
            return;
        }
        addr = s->cmdq_base + (uint64_t)(s->cmdq_ci & (size - 1)) * sizeof(c);
        if (pci_dma_read(PCI_DEVICE(s), addr, &c, sizeof(c)) != MEMTX_OK) {
            /* The command queue itself is unreachable: nothing to report to. */
            s->cnt[ODP_NIC_CNT_DMA_ERRORS]++;
            odp_nic_fatal(s);
            return;
        }
        c.status = odp_nic_exec_cmd(s, &c, &out);
        trace_odp_nic_cmd(c.opcode, c.status);
        if (s->cmdq_log == 0) {
            /*
             * A reset or an unplug ran inside the command (a DMA of its own
             * reached a bridge's control register): the queue is gone, and
             * no DMA may follow.
             */
            return;
        }
        c.out = cpu_to_le64(out);
        c.owner = 0;
        /* Status and out first, owner last is implied: one 16-byte write. */
        if (pci_dma_write(PCI_DEVICE(s), addr, &c, 16) != MEMTX_OK) {
            s->cnt[ODP_NIC_CNT_DMA_ERRORS]++;
        }
        s->cmdq_ci++;
        s->cnt[ODP_NIC_CNT_COMMANDS]++;
        odp_nic_irq(s, ODP_NIC_VEC_CMD);
    }
    qemu_bh_schedule(s->cmd_bh);        /* more queued: yield, then go on */
}

/* ---- BAR0 ----------------------------------------------------------- */

static uint64_t odp_nic_mmio_read_reg(void *opaque, hwaddr addr)
{
    OdpNicState *s = opaque;
    const uint8_t *mac = s->conf.macaddr.a;

    if (addr >= ODP_NIC_REG_COUNTERS &&
        addr < ODP_NIC_REG_COUNTERS + 8 * ODP_NIC_CNT_NUM) {
        uint64_t v = s->cnt[(addr - ODP_NIC_REG_COUNTERS) / 8];
        return (addr & 4) ? v >> 32 : (uint32_t)v;
    }
    if (addr >= ODP_NIC_DB_QP_BASE &&
        addr < ODP_NIC_DB_QP_BASE + ODP_NIC_DB_QP_STRIDE * s->max_qps) {
        OdpNicQP *qp = &s->qps[(addr - ODP_NIC_DB_QP_BASE) /
                               ODP_NIC_DB_QP_STRIDE];
        switch (addr & (ODP_NIC_DB_QP_STRIDE - 1)) {
        case ODP_NIC_DB_SQ_PI:
            return qp->sq_pi;
        case ODP_NIC_DB_RQ_PI:
            return qp->rq_pi;
        case ODP_NIC_DB_SQ_CI:
            return qp->sq_ci;
        default:
            return qp->valid ? qp->state : ODP_NIC_QP_STATE_NONE;
        }
    }
    if (addr >= ODP_NIC_DB_QP_BASE && addr < ODP_NIC_DB_QP_END) {
        /* Beyond MAX_QPS: no QP there, as the spec says, rather than "ready". */
        return (addr & (ODP_NIC_DB_QP_STRIDE - 1)) == ODP_NIC_DB_QP_STATE ?
               ODP_NIC_QP_STATE_NONE : 0;
    }
    switch (addr) {
    case ODP_NIC_REG_MAGIC:
        return ODP_NIC_MAGIC;
    case ODP_NIC_REG_VERSION:
        return ODP_NIC_VERSION;
    case ODP_NIC_REG_MAX_MRS:
        return s->max_mrs;
    case ODP_NIC_REG_MAX_QPS:
        return s->max_qps;
    case ODP_NIC_REG_MAX_CQS:
        return s->max_cqs;
    case ODP_NIC_REG_MAX_LOG_Q:
        return ODP_NIC_MAX_LOG_Q;
    case ODP_NIC_REG_STATUS:
        return ODP_NIC_STATUS_READY |
               (odp_nic_link_up(s) ? ODP_NIC_STATUS_LINK_UP : 0) |
               (s->fatal ? ODP_NIC_STATUS_FATAL : 0);
    case ODP_NIC_REG_CMDQ_BASE_LO:
        return (uint32_t)s->cmdq_base;
    case ODP_NIC_REG_CMDQ_BASE_HI:
        return s->cmdq_base >> 32;
    case ODP_NIC_REG_CMDQ_LOG_SIZE:
        return s->cmdq_log;
    case ODP_NIC_REG_CMDQ_PI:
        return s->cmdq_pi;
    case ODP_NIC_REG_CMDQ_CI:
        return s->cmdq_ci;
    case ODP_NIC_REG_MAX_XLT_PAGES:
        return s->max_xlt_pages;
    case ODP_NIC_REG_MAC_LO:
        return mac[0] | mac[1] << 8 | mac[2] << 16 | (uint32_t)mac[3] << 24;
    case ODP_NIC_REG_MAC_HI:
        return mac[4] | mac[5] << 8;
    default:
        return 0;
    }
}

/* A new producer/consumer index is accepted only if it keeps the ring sane. */
static bool odp_nic_index_ok(uint32_t newv, uint32_t other, uint32_t size,
                             bool producer)
{
    uint32_t used = producer ? newv - other : other - newv;

    return used <= size;
}

static void odp_nic_qp_doorbell(OdpNicState *s, hwaddr off, uint32_t val)
{
    uint32_t qpn = off / ODP_NIC_DB_QP_STRIDE, i;
    OdpNicQP *qp = odp_nic_qp(s, qpn);

    if (!qp) {
        ODP_NIC_GUEST_ERR(odp_nic_err_db_no_qp, "doorbell of QP %u, not created",
                          qpn);
        return;
    }
    switch (off & (ODP_NIC_DB_QP_STRIDE - 1)) {
    case ODP_NIC_DB_SQ_PI:
        if (!odp_nic_index_ok(val, qp->sq_ci, 1u << qp->sq_log, true)) {
            ODP_NIC_GUEST_ERR(odp_nic_err_db_sq, "SQ %u pi %u ci %u size %u",
                              qpn, val, qp->sq_ci, 1u << qp->sq_log);
            return;
        }
        trace_odp_nic_db_sq(qpn, val);
        qp->sq_pi = val;
        break;
    case ODP_NIC_DB_RQ_PI:
        if (qp->rq_log == 0 ||
            !odp_nic_index_ok(val, qp->rq_ci, 1u << qp->rq_log, true)) {
            ODP_NIC_GUEST_ERR(odp_nic_err_db_rq, "RQ %u pi %u ci %u size %u",
                              qpn, val, qp->rq_ci,
                              qp->rq_log ? 1u << qp->rq_log : 0);
            return;
        }
        trace_odp_nic_db_rq(qpn, val);
        qp->rq_pi = val;
        /* Loopback senders waiting for a receive buffer may go on. */
        for (i = 0; i < s->max_qps; i++) {
            if (s->qps[i].valid && s->qps[i].state == ODP_NIC_QP_STATE_WAIT_RQ) {
                s->qps[i].state = ODP_NIC_QP_STATE_READY;
            }
        }
        break;
    default:
        return;
    }
    odp_nic_kick(s);
}

/* @num: the CQ number, or UINT32_MAX for the EQ (traces only). */
static void odp_nic_ring_doorbell(OdpNicRing *r, uint32_t num, uint32_t val)
{
    if (!r->valid || !odp_nic_index_ok(val, r->pi, odp_nic_ring_size(r), false)) {
        ODP_NIC_GUEST_ERR(odp_nic_err_db_ring, "ring %d ci %u pi %u valid %d",
                          (int)num, val, r->pi, r->valid);
        return;
    }
    trace_odp_nic_db_ring((int)num, val);
    r->ci = val;
    if (r->ci == r->pi) {
        r->overflowed = false;
    }
}

static void odp_nic_reset_state(OdpNicState *s);

static void odp_nic_mmio_write_reg(OdpNicState *s, hwaddr addr, uint64_t val)
{
    if (addr >= ODP_NIC_DB_QP_BASE &&
        addr < ODP_NIC_DB_QP_BASE + ODP_NIC_DB_QP_STRIDE * s->max_qps) {
        odp_nic_qp_doorbell(s, addr - ODP_NIC_DB_QP_BASE, val);
        return;
    }
    if (addr >= ODP_NIC_DB_CQ_BASE &&
        addr < ODP_NIC_DB_CQ_BASE + ODP_NIC_DB_CQ_STRIDE * s->max_cqs) {
        if (!(addr & 7)) {
            uint32_t cqn = (addr - ODP_NIC_DB_CQ_BASE) / ODP_NIC_DB_CQ_STRIDE;

            odp_nic_ring_doorbell(&s->cqs[cqn], cqn, val);
        }
        return;
    }
    switch (addr) {
    case ODP_NIC_DB_EQ:
        odp_nic_ring_doorbell(&s->eq, UINT32_MAX, val);
        return;
    case ODP_NIC_REG_CTRL:
        if (val & ODP_NIC_CTRL_RESET) {
            odp_nic_reset_state(s);
        }
        return;
    case ODP_NIC_REG_CMDQ_BASE_LO:
    case ODP_NIC_REG_CMDQ_BASE_HI:
    case ODP_NIC_REG_CMDQ_LOG_SIZE:
        /* Reprogramming the queue restarts it at index 0. */
        if (addr == ODP_NIC_REG_CMDQ_BASE_LO) {
            s->cmdq_base = deposit64(s->cmdq_base, 0, 32, val & ~63u);
        } else if (addr == ODP_NIC_REG_CMDQ_BASE_HI) {
            s->cmdq_base = deposit64(s->cmdq_base, 32, 32, val);
        } else if (val <= ODP_NIC_CMDQ_MAX_LOG) {
            s->cmdq_log = val;
        } else {
            ODP_NIC_GUEST_ERR(odp_nic_err_cmdq_log, "CMDQ_LOG_SIZE %" PRIu64
                              " above %d", val, ODP_NIC_CMDQ_MAX_LOG);
        }
        s->cmdq_pi = s->cmdq_ci = 0;
        return;
    case ODP_NIC_REG_CMDQ_PI:
        if (s->cmdq_log == 0 ||
            !odp_nic_index_ok(val, s->cmdq_ci, 1u << s->cmdq_log, true)) {
            ODP_NIC_GUEST_ERR(odp_nic_err_db_cmdq, "CMDQ_PI %u ci %u log %u",
                              (uint32_t)val, s->cmdq_ci, s->cmdq_log);
            return;
        }
        trace_odp_nic_db_cmdq((uint32_t)val);
        s->cmdq_pi = val;
        qemu_bh_schedule(s->cmd_bh);
        return;
    default:
        ODP_NIC_GUEST_ERR(odp_nic_err_mmio_write, "write 0x%" PRIx64
                          " to read-only or undefined 0x%" HWADDR_PRIx, val, addr);
    }
}

static uint64_t odp_nic_mmio_read(void *opaque, hwaddr addr, unsigned size)
{
    uint64_t val = odp_nic_mmio_read_reg(opaque, addr);

    trace_odp_nic_mmio_read(addr, val);
    return val;
}

static void odp_nic_mmio_write(void *opaque, hwaddr addr, uint64_t val,
                               unsigned size)
{
    trace_odp_nic_mmio_write(addr, val);
    odp_nic_mmio_write_reg(opaque, addr, val);
}

static const MemoryRegionOps odp_nic_mmio_ops = {
    .read = odp_nic_mmio_read,
    .write = odp_nic_mmio_write,
    .endianness = DEVICE_LITTLE_ENDIAN,
    .valid = { .min_access_size = 4, .max_access_size = 8 },
    .impl = { .min_access_size = 4, .max_access_size = 4 },
};

/* ---- lifecycle ------------------------------------------------------ */

static void odp_nic_reset_state(OdpNicState *s)
{
    uint32_t i;

    trace_odp_nic_reset();
    qemu_bh_cancel(s->cmd_bh);
    qemu_bh_cancel(s->work_bh);
    for (i = 0; i < s->max_qps; i++) {
        odp_nic_qp_clear(&s->qps[i]);
    }
    memset(s->cqs, 0, sizeof(*s->cqs) * s->max_cqs);
    memset(&s->eq, 0, sizeof(s->eq));
    odp_nic_mr_reset(s);
    odp_nic_link_reset(s);
    s->cmdq_base = 0;
    s->cmdq_log = 0;
    s->cmdq_pi = s->cmdq_ci = 0;
    s->fatal = false;
    s->rr = 0;
}

static void odp_nic_qdev_reset(DeviceState *dev)
{
    odp_nic_reset_state(ODP_NIC(dev));
}

static void odp_nic_realize(PCIDevice *pdev, Error **errp)
{
    OdpNicState *s = ODP_NIC(pdev);
    uint32_t i;

    if (s->max_mrs < 1 || s->max_mrs > ODP_NIC_MAX_MRS_CAP ||
        s->max_qps < 1 || s->max_qps > ODP_NIC_MAX_QPS_CAP ||
        s->max_cqs < 1 || s->max_cqs > ODP_NIC_MAX_CQS_CAP) {
        error_setg(errp, "odp-nic: max-mrs 1..%d, max-qps 1..%d, "
                   "max-cqs 1..%d", ODP_NIC_MAX_MRS_CAP, ODP_NIC_MAX_QPS_CAP,
                   ODP_NIC_MAX_CQS_CAP);
        return;
    }
    if (s->max_xlt_pages < 1 || s->max_xlt_pages > (1u << 28) ||
        s->max_xlt_total < s->max_xlt_pages) {
        error_setg(errp, "odp-nic: need 1 <= max-xlt-pages <= 2^28 and "
                   "max-xlt-total >= max-xlt-pages");
        return;
    }
    if (s->link_mtu < 256 || s->link_mtu > ODP_NIC_LINK_MTU_MAX) {
        error_setg(errp, "odp-nic: link-mtu 256..%d", ODP_NIC_LINK_MTU_MAX);
        return;
    }

    pdev->config[PCI_INTERRUPT_PIN] = 0;
    if (pcie_endpoint_cap_init(pdev, 0x80) < 0) {
        error_setg(errp, "odp-nic: PCIe capability failed");
        return;
    }
    memory_region_init_io(&s->mmio, OBJECT(s), &odp_nic_mmio_ops, s,
                          "odp-nic-mmio", ODP_NIC_REGS_SIZE);
    pci_register_bar(pdev, ODP_NIC_REGS_BAR, PCI_BASE_ADDRESS_SPACE_MEMORY,
                     &s->mmio);
    if (msix_init_exclusive_bar(pdev, ODP_NIC_MSIX_VECTORS, ODP_NIC_MSIX_BAR,
                                errp)) {
        /* Undo what realize did (the BAR goes with the device). */
        pcie_cap_exit(pdev);
        return;
    }
    for (i = 0; i < ODP_NIC_MSIX_VECTORS; i++) {
        msix_vector_use(pdev, i);
    }

    s->mrs = g_new0(OdpNicMR, s->max_mrs);
    s->cqs = g_new0(OdpNicRing, s->max_cqs);
    s->qps = g_new0(OdpNicQP, s->max_qps);
    for (i = 0; i < s->max_qps; i++) {
        s->qps[i].s = s;
        s->qps[i].qpn = i;
        s->qps[i].timer = timer_new_ns(QEMU_CLOCK_VIRTUAL,
                                       odp_nic_link_qp_timer, &s->qps[i]);
    }
    s->cmd_bh = qemu_bh_new_guarded(odp_nic_cmd_bh, s,
                                    &DEVICE(pdev)->mem_reentrancy_guard);
    s->work_bh = qemu_bh_new_guarded(odp_nic_work_bh, s,
                                     &DEVICE(pdev)->mem_reentrancy_guard);
    odp_nic_link_realize(s, DEVICE(pdev));
}

static void odp_nic_exit(PCIDevice *pdev)
{
    OdpNicState *s = ODP_NIC(pdev);

    /*
     * Cancels BHs and timers and forgets every region, queue and ring, so
     * no DMA can follow.  This may run inside one of our own callbacks: a
     * DMA write to our root port's slot control (through ECAM) powers the
     * slot off and unplugs us on the spot.  The QP, CQ and MR tables, the
     * timers, the BHs and the link buffers stay allocated until finalize,
     * for the frames still on the stack; they find the device reset.
     */
    s->gone = true;
    odp_nic_reset_state(s);
    odp_nic_link_unrealize(s);
    msix_uninit_exclusive_bar(pdev);
}

static void odp_nic_finalize(Object *obj)
{
    OdpNicState *s = ODP_NIC(obj);
    uint32_t i;

    if (s->qps) {
        for (i = 0; i < s->max_qps; i++) {
            timer_free(s->qps[i].timer);
        }
    }
    if (s->cmd_bh) {
        qemu_bh_delete(s->cmd_bh);
        qemu_bh_delete(s->work_bh);
    }
    odp_nic_link_finalize(s);
    g_free(s->qps);
    g_free(s->cqs);
    g_free(s->mrs);
}

static const Property odp_nic_props[] = {
    DEFINE_NIC_PROPERTIES(OdpNicState, conf),
    DEFINE_PROP_UINT32("max-mrs", OdpNicState, max_mrs, 64),
    DEFINE_PROP_UINT32("max-qps", OdpNicState, max_qps, 16),
    DEFINE_PROP_UINT32("max-cqs", OdpNicState, max_cqs, 16),
    DEFINE_PROP_UINT32("max-xlt-pages", OdpNicState, max_xlt_pages, 262144),
    DEFINE_PROP_UINT64("max-xlt-total", OdpNicState, max_xlt_total, 1 << 22),
    DEFINE_PROP_UINT32("link-mtu", OdpNicState, link_mtu, 4096),
    DEFINE_PROP_UINT32("retry-timeout-us", OdpNicState, retry_timeout_us,
                       20000),
    DEFINE_PROP_UINT32("retry-count", OdpNicState, retry_count, 7),
    DEFINE_PROP_UINT32("rnr-delay-us", OdpNicState, rnr_delay_us, 100),
    DEFINE_PROP_UINT32("rnr-retry-count", OdpNicState, rnr_retry_count, 64),
};

static const VMStateDescription odp_nic_vmstate = {
    .name = "odp-nic",
    .unmigratable = 1,   /* queue and translation state is not migrated */
};

static const struct {
    const char *name;
    const char *desc;
} odp_nic_counters[ODP_NIC_CNT_NUM] = {
    [ODP_NIC_CNT_WRS] = { "wrs", "work requests completed" },
    [ODP_NIC_CNT_WR_ERRORS] = { "wr-errors", "work requests completed in error" },
    [ODP_NIC_CNT_BYTES] = { "bytes", "payload bytes moved" },
    [ODP_NIC_CNT_COMMANDS] = { "commands", "commands completed" },
    [ODP_NIC_CNT_FAULTS_RAISED] = { "faults-raised", "page-fault events raised" },
    [ODP_NIC_CNT_FAULTS_RESOLVED] = { "faults-resolved",
                                      "stalled QPs resumed without error" },
    [ODP_NIC_CNT_FAULTS_FAILED] = { "faults-failed",
                                    "stalled QPs resumed with an error" },
    [ODP_NIC_CNT_INVALIDATIONS] = { "invalidations",
                                    "INVALIDATE commands that cleared entries" },
    [ODP_NIC_CNT_DMA_ERRORS] = { "dma-errors",
                                 "DMAs the IOMMU or the bus refused" },
    [ODP_NIC_CNT_LINK_TX] = { "link-tx", "frames sent" },
    [ODP_NIC_CNT_LINK_RX] = { "link-rx", "frames accepted" },
    [ODP_NIC_CNT_LINK_DROPPED] = { "link-dropped",
                                   "frames dropped (bad, unexpected, or injected)" },
    [ODP_NIC_CNT_LINK_RETRIES] = { "link-retries",
                                   "messages resent after a timeout or RNR" },
    [ODP_NIC_CNT_EQ_OVERFLOWS] = { "eq-overflows", "events lost to a full EQ" },
    [ODP_NIC_CNT_CQ_OVERFLOWS] = { "cq-overflows",
                                   "completions lost to a full CQ" },
};

static bool odp_nic_get_link_down(Object *obj, Error **errp)
{
    return ODP_NIC(obj)->link_down;
}

static void odp_nic_set_link_down(Object *obj, bool value, Error **errp)
{
    ODP_NIC(obj)->link_down = value;
}

static bool odp_nic_get_fault_all(Object *obj, Error **errp)
{
    return ODP_NIC(obj)->fault_all;
}

static void odp_nic_set_fault_all(Object *obj, bool value, Error **errp)
{
    ODP_NIC(obj)->fault_all = value;
}

static void odp_nic_instance_init(Object *obj)
{
    OdpNicState *s = ODP_NIC(obj);
    int i;

    for (i = 0; i < ODP_NIC_CNT_NUM; i++) {
        object_property_add_uint64_ptr(obj, odp_nic_counters[i].name,
                                       &s->cnt[i], OBJ_PROP_FLAG_READ);
        object_property_set_description(obj, odp_nic_counters[i].name,
                                        odp_nic_counters[i].desc);
    }
    /* Fault injection (docs/devices/odp-nic.md, "Fault injection"). */
    object_property_add_bool(obj, "fault-all-accesses",
                             odp_nic_get_fault_all, odp_nic_set_fault_all);
    object_property_set_description(obj, "fault-all-accesses",
        "every region access faults once per WR, mapped or not");
    object_property_add_uint32_ptr(obj, "fail-next-dma", &s->fail_next_dma,
                                   OBJ_PROP_FLAG_READWRITE);
    object_property_set_description(obj, "fail-next-dma",
        "this many next data DMAs fail as the IOMMU would refuse them");
    object_property_add_bool(obj, "link-down", odp_nic_get_link_down,
                             odp_nic_set_link_down);
    object_property_set_description(obj, "link-down",
        "the link is down: nothing is sent or received");
    object_property_add_uint32_ptr(obj, "link-drop-next", &s->link_drop_next,
                                   OBJ_PROP_FLAG_READWRITE);
    object_property_set_description(obj, "link-drop-next",
        "drop this many next outgoing frames");
    object_property_add_uint64_ptr(obj, "link-delay-ns", &s->link_delay_ns,
                                   OBJ_PROP_FLAG_READWRITE);
    object_property_set_description(obj, "link-delay-ns",
        "hold each outgoing frame this long (virtual clock)");
    object_property_add_uint32_ptr(obj, "link-corrupt-next",
                                   &s->link_corrupt_next,
                                   OBJ_PROP_FLAG_READWRITE);
    object_property_set_description(obj, "link-corrupt-next",
        "flip a payload bit of this many next outgoing frames (bad CRC)");
}

static void odp_nic_class_init(ObjectClass *klass, const void *data)
{
    DeviceClass *dc = DEVICE_CLASS(klass);
    PCIDeviceClass *k = PCI_DEVICE_CLASS(klass);

    k->realize = odp_nic_realize;
    k->exit = odp_nic_exit;
    k->vendor_id = ODP_NIC_VENDOR_ID;
    k->device_id = ODP_NIC_DEVICE_ID;
    k->revision = ODP_NIC_REVISION;
    k->class_id = ODP_NIC_CLASS;
    dc->desc = "p2plab RDMA NIC with On-Demand Paging";
    set_bit(DEVICE_CATEGORY_NETWORK, dc->categories);
    device_class_set_props(dc, odp_nic_props);
    object_class_property_set_description(klass, "max-mrs",
        "memory keys (regions), 1..4096");
    object_class_property_set_description(klass, "max-qps",
        "queue pairs, 1..256");
    object_class_property_set_description(klass, "max-cqs",
        "completion queues, 1..512");
    object_class_property_set_description(klass, "max-xlt-pages",
        "largest region, in 4 KiB pages (1..2^28)");
    object_class_property_set_description(klass, "max-xlt-total",
        "translation entries across all regions (>= max-xlt-pages)");
    object_class_property_set_description(klass, "link-mtu",
        "largest payload per link frame, 256..LINK_MTU_MAX bytes");
    object_class_property_set_description(klass, "retry-timeout-us",
        "link: wait this long for an answer before resending");
    object_class_property_set_description(klass, "retry-count",
        "link: resends before a WR ends in RETRY_EXC");
    object_class_property_set_description(klass, "rnr-delay-us",
        "link: wait this long after a receiver-not-ready answer");
    object_class_property_set_description(klass, "rnr-retry-count",
        "link: RNR answers before a WR ends in RNR_RETRY_EXC");
    device_class_set_legacy_reset(dc, odp_nic_qdev_reset);
    dc->vmsd = &odp_nic_vmstate;
}

static const TypeInfo odp_nic_types[] = {
    {
        .name = TYPE_ODP_NIC,
        .parent = TYPE_PCI_DEVICE,
        .instance_size = sizeof(OdpNicState),
        .instance_init = odp_nic_instance_init,
        .instance_finalize = odp_nic_finalize,
        .class_init = odp_nic_class_init,
        .interfaces = (const InterfaceInfo[]) {
            { INTERFACE_PCIE_DEVICE },
            { }
        },
    },
};

DEFINE_TYPES(odp_nic_types)
