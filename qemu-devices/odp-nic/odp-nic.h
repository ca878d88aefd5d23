/*
 * odp-nic: internal header shared by the device model's files.
 *
 * odp-nic.c       PCI function, BAR0, command queue, QPs/CQs/EQ, lifecycle
 * odp-nic-wr.c    the work-request engine (loopback data movement)
 * odp-nic-mr.c    memory regions and (key, VA) -> IOVA translation
 * odp-nic-link.c  the wire: frames to and from a peer odp-nic via a netdev
 *
 * SPDX-License-Identifier: GPL-2.0-or-later
 */
#ifndef HW_P2PLAB_ODP_NIC_H
#define HW_P2PLAB_ODP_NIC_H

#include "hw/pci/pci_device.h"
#include "net/net.h"
#include "qemu/timer.h"
#include "qemu/log.h"
#include "p2plab/odp_nic_hw.h"

#define TYPE_ODP_NIC "odp-nic"
OBJECT_DECLARE_SIMPLE_TYPE(OdpNicState, ODP_NIC)

/*
 * A guest mistake: one trace event (always) and one -d guest_errors line,
 * as hw/nvme's NVME_GUEST_ERR.  TRACE names the event without its trace_
 * prefix; the arguments feed both.
 */
#define ODP_NIC_GUEST_ERR(trace, fmt, ...)                                  \
    do {                                                                    \
        (trace_##trace)(__VA_ARGS__);                                       \
        qemu_log_mask(LOG_GUEST_ERROR, #trace " in %s: " fmt "\n",          \
                      __func__, ## __VA_ARGS__);                            \
    } while (0)

/* Hard caps on the sizing properties (doorbell pages, key index width). */
#define ODP_NIC_MAX_MRS_CAP     4096
#define ODP_NIC_MAX_QPS_CAP     256
#define ODP_NIC_MAX_CQS_CAP     512
#define ODP_NIC_MAX_LOG_Q       12
#define ODP_NIC_CHUNK           (64 * KiB)  /* largest single DMA */
#define ODP_NIC_BH_BYTES        (4 * MiB)   /* data budget per engine run */
#define ODP_NIC_BH_CMDS         64          /* commands per command run */
#define ODP_NIC_BH_XLT          (512 * KiB) /* table entries per command run */

typedef struct OdpNicMR {
    bool valid;
    uint8_t mode;               /* ODP_NIC_MR_* */
    uint32_t access;            /* ODP_NIC_ACCESS_* */
    uint64_t start;
    uint64_t length;
    uint64_t npages;
    uint64_t *xlt;              /* npages entries, ODP_NIC_XLT_* format */
} OdpNicMR;

typedef struct OdpNicRing {     /* a CQ or the EQ */
    bool valid;
    uint64_t base;
    uint8_t log_size;
    uint16_t vector;
    uint32_t pi;                /* device producer, free-running */
    uint32_t ci;                /* driver consumer (doorbell), free-running */
    uint32_t refs;              /* QPs using this CQ */
    bool overflowed;            /* reported once until the driver catches up */
} OdpNicRing;

/* One data segment of a transfer: (key, va, len) and how it is accessed. */
typedef struct OdpNicSeg {
    uint32_t key;
    uint64_t va;
    uint64_t len;
} OdpNicSeg;

typedef struct OdpNicSegList {
    OdpNicSeg seg[ODP_NIC_MAX_SGE];
    int n;
    uint64_t total;
    uint32_t rights;            /* ODP_NIC_ACCESS_* the region must grant */
    bool remote;                /* errors are remote access errors */
} OdpNicSegList;

typedef struct OdpNicState OdpNicState;

typedef struct OdpNicQP {
    OdpNicState *s;
    uint32_t qpn;
    bool valid;
    uint8_t dest;
    uint32_t remote_qpn;
    uint32_t send_cqn, recv_cqn;
    uint64_t sq_base, rq_base;
    uint8_t sq_log, rq_log;
    uint32_t sq_pi, sq_ci, rq_pi, rq_ci;
    uint32_t state;             /* ODP_NIC_QP_STATE_* */

    /* The WQE at sq_ci once fetched; done counts bytes already moved. */
    bool has_wr;
    struct odp_nic_wqe wqe;
    uint64_t wr_len;
    uint64_t done;
    bool forced_fault;          /* fault-all-accesses already hit this WR */

    /* Link initiator: message in flight and its retry budget. */
    uint32_t msn;
    uint32_t retries;
    uint32_t rnr_retries;
    uint32_t link_status;       /* ODP_NIC_PKT_ST_* of the last answer */
    QEMUTimer *timer;
    bool timer_fired;           /* expired: timer_bh runs its timeout */

    /* Link responder: the message being received from the peer. */
    uint32_t rx_msn;
    uint64_t rx_next;           /* next expected offset */
    uint32_t rx_total;          /* total_len and opcode of its first segment */
    uint8_t rx_opcode;
    bool rx_active;
    bool rx_have_acked;         /* rx_acked_msn is meaningful */
    uint32_t rx_acked_msn;      /* last SEND delivered (duplicate filter) */
    uint8_t rx_acked_status;

    /* Link responder: a READ request being answered. */
    bool rd_pending;
    struct odp_nic_pkt_hdr rd_req;
    uint64_t rd_off;
} OdpNicQP;

typedef struct OdpNicDelayed {  /* a link frame held back by link-delay-ns */
    QTAILQ_ENTRY(OdpNicDelayed) next;
    int64_t due;
    size_t len;
    uint8_t data[];
} OdpNicDelayed;

struct OdpNicState {
    PCIDevice parent_obj;

    MemoryRegion mmio;
    QEMUBH *cmd_bh;
    QEMUBH *timer_bh;           /* QP timeouts, out of timer context */
    QEMUBH *work_bh;
    NICState *nic;
    NICConf conf;

    /* Properties. */
    uint32_t max_mrs, max_qps, max_cqs, max_xlt_pages;
    uint64_t max_xlt_total;
    uint32_t link_mtu;
    uint32_t retry_timeout_us, retry_count;
    uint32_t rnr_delay_us, rnr_retry_count;

    /* Fault injection (QOM, settable at run time). */
    bool fault_all;
    uint32_t fail_next_dma;
    bool link_down;
    uint32_t link_drop_next;
    uint64_t link_delay_ns;
    uint32_t link_corrupt_next;

    /* Command queue. */
    uint64_t cmdq_base;
    uint32_t cmdq_log;
    uint32_t cmdq_pi, cmdq_ci;
    uint64_t cmd_work;          /* table entries touched in this command run */
    bool fatal;

    OdpNicMR *mrs;
    uint64_t xlt_used;          /* translation entries allocated in all MRs */
    OdpNicQP *qps;
    OdpNicRing *cqs;
    OdpNicRing eq;
    uint32_t rr;                /* round-robin start of the engine */

    QTAILQ_HEAD(, OdpNicDelayed) delayed;
    uint32_t ndelayed;
    QEMUTimer *delay_timer;
    QEMUBH *delay_bh;           /* sends the delayed frames that are due */
    uint8_t *link_payload;      /* one segment's payload */
    uint8_t *link_frame;        /* the frame being built */
    uint8_t link_rx_hdr[sizeof(struct odp_nic_pkt_hdr)];

    /*
     * Unplugged (exit ran).  A DMA of ours can unplug us synchronously, so
     * exit may run inside our own BH, timer or receive: it stops everything
     * and finalize frees what those frames may still touch.
     */
    bool gone;
    uint32_t net_depth;         /* inside our receive or send callbacks */

    uint64_t cnt[ODP_NIC_CNT_NUM];
    uint8_t bounce[ODP_NIC_CHUNK];
};

/* Result of translating (key, va) for an access. */
typedef enum OdpNicXlate {
    XL_OK,
    XL_BAD_KEY,                 /* no such region */
    XL_RIGHTS,                  /* region does not grant the access */
    XL_RANGE,                   /* outside the region */
    XL_FAULT,                   /* ODP region: entry not present (fault) */
    XL_HOLE,                    /* pinned region: entry not present (error) */
} OdpNicXlate;

/* odp-nic-mr.c */
OdpNicXlate odp_nic_xlate(OdpNicState *s, uint32_t key, uint64_t va,
                          uint64_t len, uint32_t rights, bool write,
                          bool force_fault, dma_addr_t *iova, uint64_t *contig);
bool odp_nic_mr_is_odp(OdpNicState *s, uint32_t key);
uint8_t odp_nic_cmd_create_mr(OdpNicState *s, const struct odp_nic_cmd *c);
uint8_t odp_nic_cmd_destroy_mr(OdpNicState *s, const struct odp_nic_cmd *c);
uint8_t odp_nic_cmd_update_xlt(OdpNicState *s, const struct odp_nic_cmd *c);
uint8_t odp_nic_cmd_invalidate(OdpNicState *s, const struct odp_nic_cmd *c);
uint8_t odp_nic_cmd_prefetch(OdpNicState *s, const struct odp_nic_cmd *c,
                             uint64_t *out);
void odp_nic_mr_reset(OdpNicState *s);

/* odp-nic-wr.c */
void odp_nic_work_bh(void *opaque);

/* odp-nic.c and odp-nic-wr.c, used by the other files */
MemTxResult odp_nic_dma(OdpNicState *s, dma_addr_t addr, void *buf,
                        uint64_t len, bool write);
void odp_nic_raise_fault(OdpNicState *s, uint32_t qpn, uint32_t key,
                         uint64_t va, uint64_t len, bool write);
void odp_nic_post_cqe(OdpNicState *s, uint32_t cqn, uint64_t wr_id,
                      uint32_t qpn, uint8_t opcode, uint8_t status,
                      uint32_t byte_len, uint32_t imm);
void odp_nic_complete_wr(OdpNicQP *qp, uint8_t status);
void odp_nic_kick(OdpNicState *s);
OdpNicQP *odp_nic_qp(OdpNicState *s, uint32_t qpn);
bool odp_nic_rq_take(OdpNicQP *qp, struct odp_nic_wqe *rw, OdpNicSegList *dst,
                     uint64_t need, uint8_t *st);
void odp_nic_rq_consume(OdpNicQP *qp, const struct odp_nic_wqe *w,
                        uint8_t status, uint32_t byte_len, uint32_t imm);
int odp_nic_copy(OdpNicState *s, OdpNicQP *qp, const OdpNicSegList *src,
                 const OdpNicSegList *dst, uint64_t *done, uint64_t total,
                 uint64_t *budget, uint8_t *status);
void odp_nic_seglist_local(OdpNicSegList *l, const struct odp_nic_wqe *w,
                           uint32_t rights);
void odp_nic_seg_at(const OdpNicSegList *l, uint64_t off,
                    uint32_t *key, uint64_t *va, uint64_t *rem);
int odp_nic_xlate_fail(OdpNicState *s, OdpNicQP *qp, const OdpNicSegList *l,
                       OdpNicXlate r, uint32_t key, uint64_t va, uint64_t rem,
                       bool write, uint8_t *status);

/* odp_nic_copy() results */
#define COPY_DONE     0
#define COPY_BUDGET   1
#define COPY_FAULT    2         /* fault raised, the caller stalls the QP */
#define COPY_ERROR    3         /* *status holds the ODP_NIC_WC_* */

/* odp-nic-link.c */
void odp_nic_link_realize(OdpNicState *s, DeviceState *dev);
void odp_nic_link_unrealize(OdpNicState *s);
void odp_nic_link_finalize(OdpNicState *s);
void odp_nic_link_reset(OdpNicState *s);
bool odp_nic_link_up(OdpNicState *s);
void odp_nic_link_start_wr(OdpNicQP *qp, uint64_t *budget);
bool odp_nic_link_serve_read(OdpNicQP *qp, uint64_t *budget);
void odp_nic_link_qp_timer(void *opaque);

#endif
