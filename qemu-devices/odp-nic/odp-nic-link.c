/*
 * odp-nic: the link to a peer odp-nic through a QEMU netdev.
 *
 * Frames are Ethernet with EtherType 0x88b5 and an odp_nic_pkt_hdr (see
 * odp_nic_hw.h and docs/devices/odp-nic.md).  The protocol is stop-and-wait
 * per QP: the initiator sends a whole message (segments of link-mtu bytes),
 * then waits for an ACK (WRITE, SEND) or for the READ_RESP segments (READ).
 * Lost or corrupt frames end in a timeout and a retransmission of the whole
 * message; WRITE and READ are idempotent and a SEND that was already
 * delivered is re-acknowledged, not delivered twice.  A responder that hits
 * a non-present page of an ODP region raises its own page-fault event and
 * answers RNR; the initiator retries after rnr-delay-us.
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */
#include "qemu/osdep.h"
#include "qemu/units.h"
#include "qemu/log.h"
#include "qemu/main-loop.h"
#include "block/aio.h"
#include "net/net.h"
#include <zlib.h>
#include "odp-nic.h"
#include "trace.h"

#define HDR_LEN         ((size_t)sizeof(struct odp_nic_pkt_hdr))
#define FRAME_MAX       (ODP_NIC_ETH_HLEN + HDR_LEN + ODP_NIC_LINK_MTU_MAX)
#define DELAYED_MAX     4096    /* frames held back by link-delay-ns */

bool odp_nic_link_up(OdpNicState *s)
{
    NetClientState *nc = s->nic ? qemu_get_queue(s->nic) : NULL;

    return !s->gone && !s->link_down && nc && nc->peer && !nc->link_down;
}

static void odp_nic_link_emit(OdpNicState *s, const uint8_t *frame, size_t len)
{
    if (odp_nic_link_up(s)) {
        s->net_depth++;
        qemu_send_packet(qemu_get_queue(s->nic), frame, len);
        s->net_depth--;
    }
}

/*
 * Timers are not guarded against re-entrancy as BHs are: each timer only
 * schedules a BH created with the device's guard, and the BH does the work
 * (DMA, frames, completions), so nothing of ours reaches our own BAR0.
 */
static void odp_nic_link_delay_cb(void *opaque)
{
    OdpNicState *s = opaque;

    qemu_bh_schedule(s->delay_bh);
}

static void odp_nic_link_delay_bh(void *opaque)
{
    OdpNicState *s = opaque;
    int64_t now = qemu_clock_get_ns(QEMU_CLOCK_VIRTUAL);
    OdpNicDelayed *d;

    while ((d = QTAILQ_FIRST(&s->delayed)) && d->due <= now) {
        QTAILQ_REMOVE(&s->delayed, d, next);
        s->ndelayed--;
        odp_nic_link_emit(s, d->data, d->len);
        g_free(d);
    }
    if (d) {
        timer_mod(s->delay_timer, d->due);
    }
}

/* Build and send one frame, applying the fault-injection knobs. */
static void odp_nic_link_tx(OdpNicState *s, struct odp_nic_pkt_hdr *h,
                            const uint8_t *payload, uint32_t plen)
{
    uint8_t *f = s->link_frame;
    size_t len = ODP_NIC_ETH_HLEN + HDR_LEN + plen;
    uint32_t crc;

    trace_odp_nic_link_tx(h->opcode, h->dst_qpn, h->msn, h->offset, plen);
    h->version = ODP_NIC_PKT_VERSION;
    h->payload_len = plen;
    h->crc = 0;
    memset(f, 0xff, 6);                         /* broadcast: point to point */
    memcpy(f + 6, s->conf.macaddr.a, 6);
    stw_be_p(f + 12, ODP_NIC_ETHERTYPE);
    stb_p(f + 14, h->version);
    stb_p(f + 15, h->opcode);
    stb_p(f + 16, h->flags);
    stb_p(f + 17, h->status);
    stl_le_p(f + 18, h->dst_qpn);
    stl_le_p(f + 22, h->src_qpn);
    stl_le_p(f + 26, h->msn);
    stl_le_p(f + 30, h->rkey);
    stl_le_p(f + 34, h->payload_len);
    stq_le_p(f + 38, h->remote_va);
    stq_le_p(f + 46, h->offset);
    stl_le_p(f + 54, h->total_len);
    stl_le_p(f + 58, 0);
    if (plen) {
        memcpy(f + ODP_NIC_ETH_HLEN + HDR_LEN, payload, plen);
    }
    crc = crc32(0, f + ODP_NIC_ETH_HLEN, HDR_LEN + plen);
    stl_le_p(f + 58, crc);
    s->cnt[ODP_NIC_CNT_LINK_TX]++;

    if (s->link_drop_next) {
        s->link_drop_next--;
        trace_odp_nic_link_drop("link-drop-next");
        return;
    }
    if (s->link_corrupt_next) {
        s->link_corrupt_next--;
        f[len - 1] ^= 0x5a;                     /* the CRC catches it */
    }
    if (s->link_delay_ns) {
        OdpNicDelayed *d;

        if (s->ndelayed >= DELAYED_MAX) {
            trace_odp_nic_link_drop("delay queue full");
            return;
        }
        d = g_malloc(sizeof(*d) + len);
        d->due = qemu_clock_get_ns(QEMU_CLOCK_VIRTUAL) + s->link_delay_ns;
        d->len = len;
        memcpy(d->data, f, len);
        QTAILQ_INSERT_TAIL(&s->delayed, d, next);
        s->ndelayed++;
        if (!timer_pending(s->delay_timer)) {
            timer_mod(s->delay_timer, d->due);
        }
        return;
    }
    odp_nic_link_emit(s, f, len);
}

static void odp_nic_link_ack(OdpNicState *s, const struct odp_nic_pkt_hdr *req,
                             uint8_t status)
{
    struct odp_nic_pkt_hdr h = {
        .opcode = ODP_NIC_PKT_ACK,
        .flags = ODP_NIC_PKT_F_LAST,
        .status = status,
        .dst_qpn = req->src_qpn,
        .src_qpn = req->dst_qpn,
        .msn = req->msn,
    };

    odp_nic_link_tx(s, &h, NULL, 0);
}

/* Move n bytes between a host buffer and offset off of a segment list. */
static int odp_nic_link_xfer(OdpNicState *s, OdpNicQP *qp,
                             const OdpNicSegList *l, uint64_t off,
                             uint8_t *buf, uint64_t n, bool write,
                             uint8_t *status)
{
    bool force = s->fault_all && qp && !qp->forced_fault;

    while (n) {
        uint32_t key;
        uint64_t va, rem, got, c;
        dma_addr_t iova;
        OdpNicXlate r;

        odp_nic_seg_at(l, off, &key, &va, &rem);
        if (rem == 0) {
            *status = ODP_NIC_WC_LOC_LEN_ERR;
            return COPY_ERROR;
        }
        c = MIN(n, rem);
        r = odp_nic_xlate(s, key, va, c, l->rights, write, force, &iova, &got);
        if (r != XL_OK) {
            return odp_nic_xlate_fail(s, qp, l, r, key, va, rem, write,
                                      status);
        }
        if (odp_nic_dma(s, iova, buf, got, write) != MEMTX_OK) {
            *status = ODP_NIC_WC_DMA_ERR;
            return COPY_ERROR;
        }
        buf += got;
        off += got;
        n -= got;
    }
    return COPY_DONE;
}

/* ---- initiator ------------------------------------------------------ */

static void odp_nic_link_arm(OdpNicQP *qp, uint32_t state, uint64_t us)
{
    qp->state = state;
    timer_mod(qp->timer, qemu_clock_get_ns(QEMU_CLOCK_VIRTUAL) + us * 1000);
}

/*
 * Send the QP's current WR.  qp->done counts bytes already sent (WRITE,
 * SEND) so a big message goes out over several engine runs.
 */
void odp_nic_link_start_wr(OdpNicQP *qp, uint64_t *budget)
{
    OdpNicState *s = qp->s;
    const struct odp_nic_wqe *w = &qp->wqe;
    struct odp_nic_pkt_hdr h = {
        .dst_qpn = qp->remote_qpn,
        .src_qpn = qp->qpn,
        .msn = qp->msn,
        .rkey = w->rkey,
        .remote_va = w->remote_va,
        .total_len = qp->wr_len,
    };
    OdpNicSegList local;
    uint8_t st;

    if (w->opcode == ODP_NIC_WR_RDMA_READ) {
        h.opcode = ODP_NIC_PKT_READ_REQ;
        h.flags = ODP_NIC_PKT_F_LAST;
        qp->done = 0;                   /* now: bytes of response received */
        odp_nic_link_arm(qp, ODP_NIC_QP_STATE_WAIT_ACK, s->retry_timeout_us);
        odp_nic_link_tx(s, &h, NULL, 0);
        return;
    }
    h.opcode = w->opcode == ODP_NIC_WR_SEND ? ODP_NIC_PKT_SEND
                                            : ODP_NIC_PKT_WRITE;
    if (w->opcode == ODP_NIC_WR_SEND) {
        h.rkey = w->imm;                /* SEND carries imm in rkey */
    }
    odp_nic_seglist_local(&local, w, 0);
    do {
        uint32_t n = MIN(qp->wr_len - qp->done, s->link_mtu);
        int r;

        if (*budget == 0) {
            return;                     /* the engine comes back to us */
        }
        r = odp_nic_link_xfer(s, qp, &local, qp->done, s->link_payload, n,
                              false, &st);
        if (r == COPY_FAULT) {
            qp->state = ODP_NIC_QP_STATE_STALLED;
            return;
        }
        if (r == COPY_ERROR) {
            odp_nic_complete_wr(qp, st);
            return;
        }
        h.offset = qp->done;
        qp->done += n;
        *budget -= MIN(*budget, MAX(n, 1));
        if (qp->done == qp->wr_len) {
            /* Armed first: a peer in this process may answer at once. */
            h.flags = ODP_NIC_PKT_F_LAST;
            odp_nic_link_arm(qp, ODP_NIC_QP_STATE_WAIT_ACK,
                             s->retry_timeout_us);
            odp_nic_link_tx(s, &h, s->link_payload, n);
            return;
        }
        h.flags = 0;
        odp_nic_link_tx(s, &h, s->link_payload, n);
        /*
         * A peer in this process answers inside link_tx: a NAK may have
         * completed this WR already (rx_ack), so stop sending its rest.
         */
        if (!qp->has_wr || qp->state != ODP_NIC_QP_STATE_READY) {
            return;
        }
    } while (true);
}

/* Restart the current WR from its first byte. */
static void odp_nic_link_restart(OdpNicQP *qp)
{
    qp->done = 0;
    qp->state = ODP_NIC_QP_STATE_READY;
    odp_nic_kick(qp->s);
}

static void odp_nic_link_qp_timeout(OdpNicQP *qp)
{
    OdpNicState *s = qp->s;

    if (!qp->valid || !qp->has_wr) {
        return;
    }
    if (qp->state == ODP_NIC_QP_STATE_WAIT_RNR) {
        s->cnt[ODP_NIC_CNT_LINK_RETRIES]++;
        trace_odp_nic_link_retry(qp->qpn, qp->msn, true);
        odp_nic_link_restart(qp);
    } else if (qp->state == ODP_NIC_QP_STATE_WAIT_ACK) {
        if (qp->retries >= s->retry_count) {
            odp_nic_complete_wr(qp, ODP_NIC_WC_RETRY_EXC);
            odp_nic_kick(s);
            return;
        }
        qp->retries++;
        s->cnt[ODP_NIC_CNT_LINK_RETRIES]++;
        trace_odp_nic_link_retry(qp->qpn, qp->msn, false);
        odp_nic_link_restart(qp);
    }
}

void odp_nic_link_qp_timer(void *opaque)
{
    OdpNicQP *qp = opaque;

    qp->timer_fired = true;             /* the timeout may post a CQE: DMA */
    qemu_bh_schedule(qp->s->timer_bh);
}

static void odp_nic_link_timer_bh(void *opaque)
{
    OdpNicState *s = opaque;
    uint32_t i;

    for (i = 0; i < s->max_qps; i++) {
        if (s->qps[i].timer_fired) {
            s->qps[i].timer_fired = false;
            odp_nic_link_qp_timeout(&s->qps[i]);
        }
    }
}

static void odp_nic_link_rx_ack(OdpNicState *s, const struct odp_nic_pkt_hdr *h)
{
    OdpNicQP *qp = odp_nic_qp(s, h->dst_qpn);
    static const uint8_t wc[] = {
        [ODP_NIC_PKT_ST_OK] = ODP_NIC_WC_SUCCESS,
        [ODP_NIC_PKT_ST_REM_ACCESS] = ODP_NIC_WC_REM_ACCESS_ERR,
        [ODP_NIC_PKT_ST_REM_OP] = ODP_NIC_WC_REM_OP_ERR,
    };

    bool sending, waiting;

    if (!qp || qp->dest != ODP_NIC_QP_DEST_LINK || !qp->has_wr ||
        h->msn != qp->msn) {
        trace_odp_nic_link_drop("stale ack");
        return;                         /* a late answer to an old message */
    }
    /* A READ is answered by READ_RESP: an ACK may fail it, never complete it. */
    if (qp->wqe.opcode == ODP_NIC_WR_RDMA_READ &&
        h->status == ODP_NIC_PKT_ST_OK) {
        trace_odp_nic_link_drop("ok ack for a read");
        return;
    }
    /* A NAK may arrive while a long message is still going out: stop early. */
    sending = qp->state == ODP_NIC_QP_STATE_READY && qp->done &&
              h->status != ODP_NIC_PKT_ST_OK;
    waiting = qp->state == ODP_NIC_QP_STATE_WAIT_ACK;
    if (!sending && !waiting) {
        trace_odp_nic_link_drop("unexpected ack");
        return;
    }
    trace_odp_nic_link_ack(qp->qpn, h->msn, h->status);
    if (h->status == ODP_NIC_PKT_ST_RNR) {
        if (qp->rnr_retries >= s->rnr_retry_count) {
            odp_nic_complete_wr(qp, ODP_NIC_WC_RNR_RETRY_EXC);
        } else {
            qp->rnr_retries++;
            odp_nic_link_arm(qp, ODP_NIC_QP_STATE_WAIT_RNR, s->rnr_delay_us);
            return;
        }
    } else if (h->status < ARRAY_SIZE(wc)) {
        odp_nic_complete_wr(qp, wc[h->status]);
    } else {
        odp_nic_complete_wr(qp, ODP_NIC_WC_REM_OP_ERR);
    }
    odp_nic_kick(s);
}

static void odp_nic_link_rx_read_resp(OdpNicState *s,
                                      const struct odp_nic_pkt_hdr *h,
                                      const uint8_t *payload)
{
    OdpNicQP *qp = odp_nic_qp(s, h->dst_qpn);
    OdpNicSegList local;
    uint8_t st;
    int r;

    if (!qp || qp->dest != ODP_NIC_QP_DEST_LINK ||
        qp->state != ODP_NIC_QP_STATE_WAIT_ACK ||
        qp->wqe.opcode != ODP_NIC_WR_RDMA_READ || h->msn != qp->msn ||
        h->offset != qp->done || h->total_len != qp->wr_len ||
        h->payload_len > qp->wr_len - qp->done) {
        trace_odp_nic_link_drop("unexpected read response");
        return;
    }
    odp_nic_seglist_local(&local, &qp->wqe, ODP_NIC_ACCESS_LOCAL_WRITE);
    r = odp_nic_link_xfer(s, qp, &local, h->offset, (uint8_t *)payload,
                          h->payload_len, true, &st);
    if (r == COPY_FAULT) {
        /* Our own buffer is not present: stall; RESUME re-reads it all. */
        timer_del(qp->timer);
        qp->done = 0;
        qp->state = ODP_NIC_QP_STATE_STALLED;
        return;
    }
    if (r == COPY_ERROR) {
        odp_nic_complete_wr(qp, st);
        odp_nic_kick(s);
        return;
    }
    qp->done += h->payload_len;
    if (qp->done == qp->wr_len) {
        odp_nic_complete_wr(qp, ODP_NIC_WC_SUCCESS);
        odp_nic_kick(s);
    }
}

/* ---- responder ------------------------------------------------------ */

static uint8_t odp_nic_link_status_of(int r, uint8_t st)
{
    if (r == COPY_FAULT) {
        return ODP_NIC_PKT_ST_RNR;
    }
    return st == ODP_NIC_WC_DMA_ERR || st == ODP_NIC_WC_LOC_LEN_ERR
           ? ODP_NIC_PKT_ST_REM_OP : ODP_NIC_PKT_ST_REM_ACCESS;
}

/* A READ request is served by the work engine, a budget at a time. */
static void odp_nic_link_rx_read_req(OdpNicState *s,
                                     const struct odp_nic_pkt_hdr *h)
{
    OdpNicQP *qp = odp_nic_qp(s, h->dst_qpn);

    if (!qp || qp->dest != ODP_NIC_QP_DEST_LINK) {
        odp_nic_link_ack(s, h, ODP_NIC_PKT_ST_REM_OP);
        return;
    }
    if (h->total_len && h->remote_va + h->total_len - 1 < h->remote_va) {
        odp_nic_link_ack(s, h, ODP_NIC_PKT_ST_REM_ACCESS);
        return;
    }
    /* A new request (or a retry) replaces the one being served. */
    qp->rd_req = *h;
    qp->rd_off = 0;
    qp->rd_pending = true;
    odp_nic_kick(s);
}

/* Send READ_RESP segments of the pending request; true if more remain. */
bool odp_nic_link_serve_read(OdpNicQP *qp, uint64_t *budget)
{
    OdpNicState *s = qp->s;
    const struct odp_nic_pkt_hdr *h = &qp->rd_req;
    OdpNicSegList src = {
        .seg[0] = { .key = h->rkey, .va = h->remote_va, .len = h->total_len },
        .n = 1, .total = h->total_len, .rights = ODP_NIC_ACCESS_REMOTE_READ,
        .remote = true,
    };
    struct odp_nic_pkt_hdr r = {
        .opcode = ODP_NIC_PKT_READ_RESP,
        .dst_qpn = h->src_qpn,
        .src_qpn = h->dst_qpn,
        .msn = h->msn,
        .total_len = h->total_len,
    };
    uint8_t st;
    int res;

    while (qp->rd_pending) {
        uint32_t n = MIN(h->total_len - qp->rd_off, s->link_mtu);

        if (*budget == 0) {
            return true;
        }
        res = odp_nic_link_xfer(s, NULL, &src, qp->rd_off, s->link_payload, n,
                                false, &st);
        if (res != COPY_DONE) {
            /* Error or our own ODP fault (RNR): the initiator decides. */
            qp->rd_pending = false;
            odp_nic_link_ack(s, h, odp_nic_link_status_of(res, st));
            return false;
        }
        r.offset = qp->rd_off;
        r.flags = qp->rd_off + n == h->total_len ? ODP_NIC_PKT_F_LAST : 0;
        qp->rd_off += n;
        if (qp->rd_off == h->total_len) {
            qp->rd_pending = false;
        }
        odp_nic_link_tx(s, &r, s->link_payload, n);
        *budget -= MIN(*budget, MAX(n, 1));
    }
    return false;
}

static void odp_nic_link_rx_data(OdpNicState *s, const struct odp_nic_pkt_hdr *h,
                                 const uint8_t *payload)
{
    OdpNicQP *qp = odp_nic_qp(s, h->dst_qpn);
    bool last = h->flags & ODP_NIC_PKT_F_LAST;
    bool send = h->opcode == ODP_NIC_PKT_SEND;
    struct odp_nic_wqe rw;
    OdpNicSegList dst;
    uint8_t st = ODP_NIC_WC_SUCCESS;
    int r;

    if (!qp || qp->dest != ODP_NIC_QP_DEST_LINK) {
        odp_nic_link_ack(s, h, ODP_NIC_PKT_ST_REM_OP);
        return;
    }
    if (send && qp->rx_have_acked && h->msn == qp->rx_acked_msn) {
        /* Retransmission of a SEND we delivered: only re-acknowledge. */
        if (last) {
            odp_nic_link_ack(s, h, qp->rx_acked_status);
        }
        return;
    }
    if (h->offset == 0) {
        qp->rx_active = true;
        qp->rx_msn = h->msn;
        qp->rx_next = 0;
        qp->rx_opcode = h->opcode;
        qp->rx_total = h->total_len;
    }
    /* Every segment must belong to the message its first one started. */
    if (!qp->rx_active || h->msn != qp->rx_msn || h->offset != qp->rx_next ||
        h->opcode != qp->rx_opcode || h->total_len != qp->rx_total ||
        last != (h->offset + h->payload_len == h->total_len)) {
        /* A hole (lost segment): the initiator's timeout resends it all. */
        s->cnt[ODP_NIC_CNT_LINK_DROPPED]++;
        trace_odp_nic_link_drop("out of sequence");
        qp->rx_active = false;
        return;
    }
    if (send) {
        if (!odp_nic_rq_take(qp, &rw, &dst, h->total_len, &st)) {
            qp->rx_active = false;
            odp_nic_link_ack(s, h, ODP_NIC_PKT_ST_RNR);
            return;
        }
        if (st != ODP_NIC_WC_SUCCESS) {
            qp->rx_active = false;
            odp_nic_link_ack(s, h, ODP_NIC_PKT_ST_REM_OP);
            return;
        }
    } else {
        dst = (OdpNicSegList){
            .seg[0] = { .key = h->rkey, .va = h->remote_va,
                        .len = h->total_len },
            .n = 1, .total = h->total_len,
            .rights = ODP_NIC_ACCESS_REMOTE_WRITE, .remote = true,
        };
        if (h->total_len && h->remote_va + h->total_len - 1 < h->remote_va) {
            qp->rx_active = false;
            odp_nic_link_ack(s, h, ODP_NIC_PKT_ST_REM_ACCESS);
            return;
        }
    }
    r = odp_nic_link_xfer(s, NULL, &dst, h->offset, (uint8_t *)payload,
                          h->payload_len, true, &st);
    if (r != COPY_DONE) {
        qp->rx_active = false;
        if (send && r == COPY_ERROR) {
            odp_nic_rq_consume(qp, &rw, ODP_NIC_WC_LOC_PROT_ERR, 0, 0);
        }
        odp_nic_link_ack(s, h, odp_nic_link_status_of(r, st));
        return;
    }
    qp->rx_next += h->payload_len;
    if (last) {
        qp->rx_active = false;
        if (send) {
            odp_nic_rq_consume(qp, &rw, ODP_NIC_WC_SUCCESS, h->total_len,
                               h->rkey);
            qp->rx_have_acked = true;
            qp->rx_acked_msn = h->msn;
            qp->rx_acked_status = ODP_NIC_PKT_ST_OK;
        }
        odp_nic_link_ack(s, h, ODP_NIC_PKT_ST_OK);
    }
}

static bool odp_nic_can_receive(NetClientState *nc)
{
    return true;
}

static void odp_nic_receive_frame(OdpNicState *s, const uint8_t *buf,
                                  size_t size)
{
    struct odp_nic_pkt_hdr h;
    const uint8_t *p = buf + ODP_NIC_ETH_HLEN;
    uint32_t crc;

    if (size < ODP_NIC_ETH_HLEN + HDR_LEN ||
        lduw_be_p(buf + 12) != ODP_NIC_ETHERTYPE) {
        goto drop;
    }
    h.version = ldub_p(p);
    h.opcode = ldub_p(p + 1);
    h.flags = ldub_p(p + 2);
    h.status = ldub_p(p + 3);
    h.dst_qpn = ldl_le_p(p + 4);
    h.src_qpn = ldl_le_p(p + 8);
    h.msn = ldl_le_p(p + 12);
    h.rkey = ldl_le_p(p + 16);
    h.payload_len = ldl_le_p(p + 20);
    h.remote_va = ldq_le_p(p + 24);
    h.offset = ldq_le_p(p + 32);
    h.total_len = ldl_le_p(p + 40);
    h.crc = ldl_le_p(p + 44);
    if (h.version != ODP_NIC_PKT_VERSION ||
        h.payload_len > size - ODP_NIC_ETH_HLEN - HDR_LEN ||
        h.payload_len > ODP_NIC_LINK_MTU_MAX ||
        h.total_len > ODP_NIC_MAX_WR_LEN ||
        h.offset > h.total_len || h.payload_len > h.total_len - h.offset) {
        goto drop;
    }
    /* CRC over the header with crc = 0, then the payload. */
    memcpy(s->link_rx_hdr, p, HDR_LEN);
    stl_le_p(s->link_rx_hdr + 44, 0);
    crc = crc32(0, s->link_rx_hdr, HDR_LEN);
    crc = crc32(crc, p + HDR_LEN, h.payload_len);
    if (crc != h.crc) {
        goto drop;
    }
    s->cnt[ODP_NIC_CNT_LINK_RX]++;
    trace_odp_nic_link_rx(h.opcode, h.dst_qpn, h.msn, h.offset, h.payload_len);
    switch (h.opcode) {
    case ODP_NIC_PKT_WRITE:
    case ODP_NIC_PKT_SEND:
        odp_nic_link_rx_data(s, &h, p + HDR_LEN);
        break;
    case ODP_NIC_PKT_READ_REQ:
        odp_nic_link_rx_read_req(s, &h);
        break;
    case ODP_NIC_PKT_READ_RESP:
        odp_nic_link_rx_read_resp(s, &h, p + HDR_LEN);
        break;
    case ODP_NIC_PKT_ACK:
        odp_nic_link_rx_ack(s, &h);
        break;
    default:
        goto drop;
    }
    return;

drop:
    s->cnt[ODP_NIC_CNT_LINK_DROPPED]++;
    trace_odp_nic_link_drop("malformed or corrupt");
}

static ssize_t odp_nic_receive(NetClientState *nc, const uint8_t *buf,
                               size_t size)
{
    OdpNicState *s = qemu_get_nic_opaque(nc);

    if (s->gone || s->link_down || s->fatal) {
        return size;                    /* cable pulled: frames vanish */
    }
    /* While we are in here, an unplug must leave our net client alone. */
    s->net_depth++;
    odp_nic_receive_frame(s, buf, size);
    s->net_depth--;
    return size;
}

static NetClientInfo odp_nic_net_info = {
    .type = NET_CLIENT_DRIVER_NIC,
    .size = sizeof(NICState),
    .can_receive = odp_nic_can_receive,
    .receive = odp_nic_receive,
};

void odp_nic_link_realize(OdpNicState *s, DeviceState *dev)
{
    QTAILQ_INIT(&s->delayed);
    s->delay_timer = timer_new_ns(QEMU_CLOCK_VIRTUAL, odp_nic_link_delay_cb, s);
    s->delay_bh = qemu_bh_new_guarded(odp_nic_link_delay_bh, s,
                                      &dev->mem_reentrancy_guard);
    s->timer_bh = qemu_bh_new_guarded(odp_nic_link_timer_bh, s,
                                      &dev->mem_reentrancy_guard);
    s->link_payload = g_malloc(ODP_NIC_LINK_MTU_MAX);
    s->link_frame = g_malloc(FRAME_MAX);
    qemu_macaddr_default_if_unset(&s->conf.macaddr);
    s->nic = qemu_new_nic(&odp_nic_net_info, &s->conf,
                          object_get_typename(OBJECT(s)), dev->id,
                          &dev->mem_reentrancy_guard, s);
    qemu_format_nic_info_str(qemu_get_queue(s->nic), s->conf.macaddr.a);
}

void odp_nic_link_reset(OdpNicState *s)
{
    OdpNicDelayed *d, *tmp;

    if (s->delay_timer) {
        timer_del(s->delay_timer);
        qemu_bh_cancel(s->delay_bh);
        qemu_bh_cancel(s->timer_bh);    /* the QPs' fired flags are cleared too */
    }
    QTAILQ_FOREACH_SAFE(d, &s->delayed, next, tmp) {
        QTAILQ_REMOVE(&s->delayed, d, next);
        g_free(d);
    }
    s->ndelayed = 0;
}

static void odp_nic_link_del_bh(void *opaque)
{
    OdpNicState *s = opaque;

    qemu_del_nic(s->nic);
    s->nic = NULL;
    object_unref(OBJECT(s));
}

void odp_nic_link_unrealize(OdpNicState *s)
{
    odp_nic_link_reset(s);
    if (s->net_depth) {
        /*
         * Unplugged from inside our own receive or send: the net layer
         * still uses our client when we return, so delete it from a BH.
         * Until then s->gone makes it deaf and mute.
         */
        object_ref(OBJECT(s));
        aio_bh_schedule_oneshot(qemu_get_aio_context(), odp_nic_link_del_bh, s);
        return;
    }
    qemu_del_nic(s->nic);
    s->nic = NULL;
}

/* After unrealize, once nothing of ours is on the stack any more. */
void odp_nic_link_finalize(OdpNicState *s)
{
    timer_free(s->delay_timer);
    s->delay_timer = NULL;
    if (s->delay_bh) {
        qemu_bh_delete(s->delay_bh);
        qemu_bh_delete(s->timer_bh);
        s->delay_bh = s->timer_bh = NULL;
    }
    g_free(s->link_payload);
    s->link_payload = NULL;
    g_free(s->link_frame);
    s->link_frame = NULL;
}
