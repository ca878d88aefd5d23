/* SPDX-License-Identifier: GPL-2.0-or-later OR MIT */
/*
 * odp-nic hardware interface: PCI IDs, BAR0 registers, command queue entries,
 * work queue / completion / event entries and the link wire format.
 *
 * Shared by the QEMU device model (qemu-devices/odp-nic) and the guest driver.
 * Everything is little-endian; all structures are packed by construction
 * (naturally aligned fields) and their sizes are asserted below.
 * docs/devices/odp-nic.md is the prose specification of this header.
 */
#ifndef P2PLAB_ODP_NIC_HW_H
#define P2PLAB_ODP_NIC_HW_H

#ifdef __KERNEL__
#include <linux/types.h>
#else
#include <stdint.h>
#endif

/* ---- PCI identity ---------------------------------------------------- */
#define ODP_NIC_VENDOR_ID       0x1234
#define ODP_NIC_DEVICE_ID       0x0d1c
#define ODP_NIC_CLASS           0x0207  /* network controller: InfiniBand */
#define ODP_NIC_REVISION        1

#define ODP_NIC_REGS_BAR        0       /* 16 KiB MMIO: registers, doorbells */
#define ODP_NIC_REGS_SIZE       0x4000
#define ODP_NIC_MSIX_BAR        2       /* MSI-X table and PBA */

/* MSI-X vectors (ODP_NIC_MSIX_VECTORS in total). */
#define ODP_NIC_VEC_CMD         0       /* command completion */
#define ODP_NIC_VEC_EQ          1       /* event queue */
#define ODP_NIC_VEC_CQ_FIRST    2       /* completion queues pick 2..N-1 */
#define ODP_NIC_MSIX_VECTORS    8

/* ---- BAR0 registers (32-bit access; 64-bit counters may use 64-bit) --- */
#define ODP_NIC_REG_MAGIC       0x000   /* RO 'ODPN' */
#define ODP_NIC_MAGIC           0x4e50444fu
#define ODP_NIC_REG_VERSION     0x004   /* RO interface version */
#define ODP_NIC_VERSION         1
#define ODP_NIC_REG_MAX_MRS     0x008   /* RO number of memory keys */
#define ODP_NIC_REG_MAX_QPS     0x00c   /* RO number of QPs */
#define ODP_NIC_REG_MAX_CQS     0x010   /* RO number of CQs */
#define ODP_NIC_REG_MAX_LOG_Q   0x014   /* RO max log2 queue depth */
#define ODP_NIC_REG_STATUS      0x018   /* RO status bits below */
#define   ODP_NIC_STATUS_READY      (1u << 0)
#define   ODP_NIC_STATUS_LINK_UP    (1u << 1)
#define   ODP_NIC_STATUS_FATAL      (1u << 2)
#define ODP_NIC_REG_CTRL        0x01c   /* WO */
#define   ODP_NIC_CTRL_RESET        (1u << 0)
#define ODP_NIC_REG_CMDQ_BASE_LO 0x020  /* RW command queue base (64 B aligned) */
#define ODP_NIC_REG_CMDQ_BASE_HI 0x024
#define ODP_NIC_REG_CMDQ_LOG_SIZE 0x028 /* RW log2 entries, 1..ODP_NIC_CMDQ_MAX_LOG */
#define ODP_NIC_REG_CMDQ_PI     0x02c   /* RW doorbell: producer index (free-running) */
#define ODP_NIC_REG_CMDQ_CI     0x030   /* RO consumer index (free-running) */
#define ODP_NIC_REG_MAX_XLT_PAGES 0x034 /* RO translation entries per region */
#define ODP_NIC_REG_MAC_LO      0x038   /* RO MAC bytes 0..3 */
#define ODP_NIC_REG_MAC_HI      0x03c   /* RO MAC bytes 4..5 */
#define ODP_NIC_REG_COUNTERS    0x100   /* RO 64-bit counters, ODP_NIC_CNT_* */

#define ODP_NIC_CMDQ_MAX_LOG    12

/* Doorbells: one page each for QPs, CQs and the EQ. */
#define ODP_NIC_DB_QP_BASE      0x1000  /* + qpn * 16 */
#define ODP_NIC_DB_QP_STRIDE    16
#define   ODP_NIC_DB_SQ_PI          0x0 /* send queue producer index */
#define   ODP_NIC_DB_RQ_PI          0x4 /* receive queue producer index */
#define   ODP_NIC_DB_SQ_CI          0x8 /* RO send queue consumer index */
#define   ODP_NIC_DB_QP_STATE       0xc /* RO one of ODP_NIC_QP_STATE_* */
#define ODP_NIC_DB_QP_END       0x2000  /* QP_STATE reads NONE up to here */
#define ODP_NIC_DB_CQ_BASE      0x2000  /* + cqn * 8: consumer index */
#define ODP_NIC_DB_CQ_STRIDE    8
#define ODP_NIC_DB_EQ           0x3000  /* event queue consumer index */

/* QP_STATE[q] values. */
#define ODP_NIC_QP_STATE_READY      0   /* runs when its SQ has WQEs */
#define ODP_NIC_QP_STATE_STALLED    1   /* page fault raised, waits for RESUME */
#define ODP_NIC_QP_STATE_WAIT_RQ    2   /* loopback SEND: target RQ empty */
#define ODP_NIC_QP_STATE_WAIT_ACK   3   /* link: request sent, waits for the peer */
#define ODP_NIC_QP_STATE_WAIT_RNR   4   /* link: peer not ready, timer retries */
#define ODP_NIC_QP_STATE_NONE       0xffffffffu /* q >= MAX_QPS, or not created */

/* Counter indices (ODP_NIC_REG_COUNTERS + 8 * index). */
enum odp_nic_counter {
    ODP_NIC_CNT_WRS = 0,            /* work requests completed */
    ODP_NIC_CNT_WR_ERRORS,          /* ... with an error status */
    ODP_NIC_CNT_BYTES,              /* payload bytes moved by completed WRs */
    ODP_NIC_CNT_COMMANDS,
    ODP_NIC_CNT_FAULTS_RAISED,      /* page-fault events raised */
    ODP_NIC_CNT_FAULTS_RESOLVED,    /* RESUME with status 0 */
    ODP_NIC_CNT_FAULTS_FAILED,      /* RESUME with an error status */
    ODP_NIC_CNT_INVALIDATIONS,      /* INVALIDATE commands */
    ODP_NIC_CNT_DMA_ERRORS,         /* DMA transactions that failed */
    ODP_NIC_CNT_LINK_TX,            /* link packets sent */
    ODP_NIC_CNT_LINK_RX,            /* link packets accepted */
    ODP_NIC_CNT_LINK_DROPPED,       /* received packets dropped (bad CRC, ...) */
    ODP_NIC_CNT_LINK_RETRIES,       /* retransmissions (timeout or RNR) */
    ODP_NIC_CNT_EQ_OVERFLOWS,       /* events lost, EQ full */
    ODP_NIC_CNT_CQ_OVERFLOWS,       /* completions lost, CQ full */
    ODP_NIC_CNT_NUM
};

/* ---- Command queue --------------------------------------------------- */
enum odp_nic_cmd_opcode {
    ODP_NIC_CMD_NOP = 0,
    ODP_NIC_CMD_CREATE_MR = 1,
    ODP_NIC_CMD_DESTROY_MR = 2,
    ODP_NIC_CMD_UPDATE_XLT = 3,
    ODP_NIC_CMD_INVALIDATE = 4,
    ODP_NIC_CMD_PREFETCH = 5,
    ODP_NIC_CMD_CREATE_CQ = 6,
    ODP_NIC_CMD_DESTROY_CQ = 7,
    ODP_NIC_CMD_CREATE_EQ = 8,
    ODP_NIC_CMD_DESTROY_EQ = 9,
    ODP_NIC_CMD_CREATE_QP = 10,
    ODP_NIC_CMD_DESTROY_QP = 11,
    ODP_NIC_CMD_RESUME = 12,
    ODP_NIC_CMD_QUERY_COUNTER = 13,
};

enum odp_nic_cmd_status {
    ODP_NIC_CMD_OK = 0,
    ODP_NIC_CMD_BAD_OPCODE = 1,
    ODP_NIC_CMD_BAD_PARAM = 2,      /* size, alignment, flags, range */
    ODP_NIC_CMD_BAD_INDEX = 3,      /* key/qpn/cqn out of range or not created */
    ODP_NIC_CMD_BUSY = 4,           /* already exists / still referenced */
    ODP_NIC_CMD_BAD_STATE = 5,      /* e.g. RESUME of a queue not stalled */
    ODP_NIC_CMD_NO_RESOURCES = 6,   /* translation budget exhausted */
    ODP_NIC_CMD_DMA_ERROR = 7,      /* a list in guest memory was unreadable */
};

/* Region access rights (CREATE_MR.access). Local read is always allowed. */
#define ODP_NIC_ACCESS_LOCAL_WRITE   (1u << 0)
#define ODP_NIC_ACCESS_REMOTE_READ   (1u << 1)
#define ODP_NIC_ACCESS_REMOTE_WRITE  (1u << 2)
#define ODP_NIC_ACCESS_ALL           0x7u

/* Region modes (CREATE_MR.mode). */
#define ODP_NIC_MR_PINNED       0
#define ODP_NIC_MR_ODP          1

#define ODP_NIC_PAGE_SHIFT      12
#define ODP_NIC_PAGE_SIZE       (1u << ODP_NIC_PAGE_SHIFT)

/*
 * Translation entry (UPDATE_XLT list, CREATE_MR initial list): a 4 KiB
 * aligned IOVA with permission bits in the low bits.  An entry without
 * VALID is "not present".
 */
#define ODP_NIC_XLT_VALID       (1ull << 0)
#define ODP_NIC_XLT_READ        (1ull << 1)
#define ODP_NIC_XLT_WRITE       (1ull << 2)
#define ODP_NIC_XLT_FLAGS_MASK  0xfffull
#define ODP_NIC_XLT_ADDR_MASK   (~ODP_NIC_XLT_FLAGS_MASK)

/* PREFETCH.flags */
#define ODP_NIC_PREFETCH_WRITE  (1u << 0)

/* CREATE_QP.dest */
#define ODP_NIC_QP_DEST_LOOPBACK 0
#define ODP_NIC_QP_DEST_LINK     1

/* RESUME.status: 0 retries the stalled WR, anything else fails it. */
#define ODP_NIC_RESUME_OK       0
#define ODP_NIC_RESUME_ERROR    1

struct odp_nic_cmd_create_mr {
    uint32_t key;           /* 0 .. MAX_MRS-1 */
    uint32_t access;        /* ODP_NIC_ACCESS_* */
    uint64_t start;         /* VA in the owner's address space, any alignment */
    uint64_t length;        /* bytes, 1 .. MAX_XLT_PAGES pages */
    uint64_t xlt_addr;      /* optional initial translation list, 0 = none */
    uint32_t xlt_count;     /* entries in that list (<= pages of the region) */
    uint8_t  mode;          /* ODP_NIC_MR_* */
    uint8_t  page_shift;    /* must be ODP_NIC_PAGE_SHIFT */
    uint16_t rsvd;
    uint64_t rsvd2;
};

struct odp_nic_cmd_key {        /* DESTROY_MR */
    uint32_t key;
    uint32_t rsvd[11];
};

struct odp_nic_cmd_update_xlt {
    uint32_t key;
    uint32_t count;         /* entries, 1 .. MAX_XLT_PAGES */
    uint64_t page_index;    /* first page (0 = page holding start) */
    uint64_t list_addr;     /* IOVA of count uint64_t entries, 8 B aligned */
    uint64_t rsvd[3];
};

struct odp_nic_cmd_range {      /* INVALIDATE, PREFETCH */
    uint32_t key;
    uint32_t flags;         /* PREFETCH: ODP_NIC_PREFETCH_* */
    uint64_t va;
    uint64_t length;
    uint64_t rsvd[3];
};

struct odp_nic_cmd_create_cq {  /* CREATE_CQ, CREATE_EQ */
    uint32_t num;           /* cqn (EQ: must be 0) */
    uint8_t  log_size;      /* 1 .. MAX_LOG_Q */
    uint8_t  rsvd0;
    uint16_t vector;        /* MSI-X vector (EQ: ignored, always VEC_EQ) */
    uint64_t base;          /* ring IOVA, entry-size aligned */
    uint64_t rsvd[4];
};

struct odp_nic_cmd_num {        /* DESTROY_CQ/EQ/QP, QUERY_COUNTER */
    uint32_t num;
    uint32_t rsvd[11];
};

struct odp_nic_cmd_create_qp {
    uint32_t qpn;
    uint32_t send_cqn;
    uint32_t recv_cqn;
    uint8_t  sq_log_size;   /* 1 .. MAX_LOG_Q */
    uint8_t  rq_log_size;   /* 0 = no receive queue, else 1 .. MAX_LOG_Q */
    uint8_t  dest;          /* ODP_NIC_QP_DEST_* */
    uint8_t  rsvd0;
    uint64_t sq_base;       /* 64 B aligned */
    uint64_t rq_base;       /* 64 B aligned */
    uint32_t remote_qpn;    /* SENDs land on this QP's RQ (local or peer) */
    uint32_t rsvd[3];
};

struct odp_nic_cmd_resume {
    uint32_t qpn;
    uint32_t status;        /* ODP_NIC_RESUME_* */
    uint32_t rsvd[10];
};

/*
 * One 64-byte command.  The driver fills opcode, token and arguments, sets
 * owner = 1, and advances CMDQ_PI.  The device executes commands in order,
 * writes status and out, then owner = 0, advances CMDQ_CI and signals
 * MSI-X vector ODP_NIC_VEC_CMD.
 */
struct odp_nic_cmd {
    uint8_t  opcode;
    uint8_t  status;        /* written by the device */
    uint8_t  owner;         /* 1: device owns it; device writes 0 when done */
    uint8_t  rsvd;
    uint32_t token;         /* opaque, untouched */
    uint64_t out;           /* command output (QUERY_COUNTER value) */
    union {
        struct odp_nic_cmd_create_mr create_mr;
        struct odp_nic_cmd_key key;
        struct odp_nic_cmd_update_xlt update_xlt;
        struct odp_nic_cmd_range range;
        struct odp_nic_cmd_create_cq create_cq;
        struct odp_nic_cmd_num num;
        struct odp_nic_cmd_create_qp create_qp;
        struct odp_nic_cmd_resume resume;
        uint8_t raw[48];
    } u;
};

/* ---- Work queues ----------------------------------------------------- */
enum odp_nic_wr_opcode {
    ODP_NIC_WR_NOP = 0,
    ODP_NIC_WR_RDMA_WRITE = 1,
    ODP_NIC_WR_RDMA_READ = 2,
    ODP_NIC_WR_SEND = 3,
    ODP_NIC_WR_RECV = 4,        /* in CQEs only: a receive completed */
};

#define ODP_NIC_MAX_SGE         2
#define ODP_NIC_MAX_WR_LEN      (1ull << 30)  /* per work request */

struct odp_nic_sge {
    uint32_t lkey;
    uint32_t length;
    uint64_t va;
};

/* Send and receive queue entry (64 B).  RQ entries use wr_id and sge only. */
struct odp_nic_wqe {
    uint8_t  opcode;        /* ODP_NIC_WR_* */
    uint8_t  flags;         /* reserved, 0 */
    uint8_t  num_sge;       /* 0 .. ODP_NIC_MAX_SGE */
    uint8_t  rsvd;
    uint32_t imm;           /* SEND: delivered in the receiver's CQE */
    uint64_t wr_id;
    uint32_t rkey;          /* RDMA WRITE/READ target region */
    uint32_t rsvd2;
    uint64_t remote_va;
    struct odp_nic_sge sge[ODP_NIC_MAX_SGE];
};

enum odp_nic_wc_status {
    ODP_NIC_WC_SUCCESS = 0,
    ODP_NIC_WC_LOC_LEN_ERR = 1,     /* length too big / RQ buffer too small */
    ODP_NIC_WC_LOC_PROT_ERR = 2,    /* bad lkey, rights, range, pinned hole */
    ODP_NIC_WC_REM_ACCESS_ERR = 3,  /* bad rkey, rights, range, pinned hole */
    ODP_NIC_WC_BAD_WR = 4,          /* malformed WQE (opcode, num_sge) */
    ODP_NIC_WC_DMA_ERR = 5,         /* a DMA failed (IOMMU fault, ...) */
    ODP_NIC_WC_FAULT_ABORT = 6,     /* page fault resumed with an error */
    ODP_NIC_WC_RNR_RETRY_EXC = 7,   /* peer kept answering "not ready" */
    ODP_NIC_WC_RETRY_EXC = 8,       /* no answer from the link (timeouts) */
    ODP_NIC_WC_REM_OP_ERR = 9,      /* peer failed the request otherwise */
    ODP_NIC_WC_FLUSH = 10,          /* reserved: the device never writes it */
};

/* Completion queue entry (32 B).  owner toggles each pass over the ring. */
struct odp_nic_cqe {
    uint64_t wr_id;
    uint32_t byte_len;
    uint32_t qpn;
    uint8_t  opcode;        /* ODP_NIC_WR_* of the completed request */
    uint8_t  status;        /* ODP_NIC_WC_* */
    uint8_t  owner;         /* phase: 1 on the first pass, 0 on the second... */
    uint8_t  rsvd;
    uint32_t imm;
    uint64_t rsvd2;
};

/* ---- Event queue ----------------------------------------------------- */
enum odp_nic_event_type {
    ODP_NIC_EV_PAGE_FAULT = 1,
    ODP_NIC_EV_CQ_OVERFLOW = 2,
    ODP_NIC_EV_FATAL = 3,
};

#define ODP_NIC_FAULT_READ      (1u << 0)   /* the device needs to read */
#define ODP_NIC_FAULT_WRITE     (1u << 1)   /* the device needs to write */
#define ODP_NIC_QPN_NONE        0xffffffffu /* fault without a stalled queue */

/* Event queue entry (32 B).  owner is a phase bit as in CQEs. */
struct odp_nic_eqe {
    uint8_t  type;          /* ODP_NIC_EV_* */
    uint8_t  owner;
    uint8_t  access;        /* page fault: ODP_NIC_FAULT_* */
    uint8_t  rsvd;
    uint32_t qpn;           /* stalled QP, or ODP_NIC_QPN_NONE; CQ overflow: cqn */
    uint32_t key;
    uint32_t length;        /* bytes from va (capped); PREFETCH: the clipped range */
    uint64_t va;            /* first byte not moved; PREFETCH: start of the range */
    uint64_t rsvd2;
};

/* ---- Link wire format ------------------------------------------------ */
#define ODP_NIC_ETHERTYPE       0x88b5  /* IEEE local experimental */

enum odp_nic_pkt_opcode {
    ODP_NIC_PKT_WRITE = 1,      /* payload -> rkey/remote_va + offset */
    ODP_NIC_PKT_READ_REQ = 2,   /* asks for length bytes at rkey/remote_va */
    ODP_NIC_PKT_READ_RESP = 3,  /* payload at offset of the read */
    ODP_NIC_PKT_SEND = 4,       /* payload -> receiver's RQ buffer + offset */
    ODP_NIC_PKT_ACK = 5,        /* status ODP_NIC_PKT_ST_* */
};

#define ODP_NIC_PKT_F_LAST      (1u << 0)   /* last segment of the message */

enum odp_nic_pkt_status {
    ODP_NIC_PKT_ST_OK = 0,
    ODP_NIC_PKT_ST_RNR = 1,         /* not ready: ODP fault or no RQ entry */
    ODP_NIC_PKT_ST_REM_ACCESS = 2,  /* bad rkey, rights, range */
    ODP_NIC_PKT_ST_REM_OP = 3,      /* bad QP, DMA error, RQ buffer too small */
};

/*
 * Every frame: 14-byte Ethernet header (dst, src, EtherType 0x88b5), then
 * this 48-byte header, then payload_len bytes.  crc is CRC-32 (zlib) of the
 * header with crc = 0 followed by the payload; bad frames are dropped.
 */
struct odp_nic_pkt_hdr {
    uint8_t  version;       /* 1 */
    uint8_t  opcode;        /* ODP_NIC_PKT_* */
    uint8_t  flags;         /* ODP_NIC_PKT_F_* */
    uint8_t  status;        /* ACK: ODP_NIC_PKT_ST_* */
    uint32_t dst_qpn;
    uint32_t src_qpn;
    uint32_t msn;           /* message sequence number of the sender's QP */
    uint32_t rkey;          /* WRITE/READ_REQ: region at the responder; SEND: imm */
    uint32_t payload_len;
    uint64_t remote_va;     /* WRITE/READ_REQ: address at the responder */
    uint64_t offset;        /* byte offset of this segment in the message */
    uint32_t total_len;     /* message length */
    uint32_t crc;
};

#define ODP_NIC_PKT_VERSION     1
#define ODP_NIC_ETH_HLEN        14
#define ODP_NIC_LINK_MTU_MAX    32768

_Static_assert(sizeof(struct odp_nic_cmd) == 64, "cmd size");
_Static_assert(sizeof(struct odp_nic_cmd_create_mr) == 48, "create_mr size");
_Static_assert(sizeof(struct odp_nic_cmd_update_xlt) == 48, "update_xlt size");
_Static_assert(sizeof(struct odp_nic_cmd_range) == 48, "range size");
_Static_assert(sizeof(struct odp_nic_cmd_create_cq) == 48, "create_cq size");
_Static_assert(sizeof(struct odp_nic_cmd_create_qp) == 48, "create_qp size");
_Static_assert(sizeof(struct odp_nic_cmd_resume) == 48, "resume size");
_Static_assert(sizeof(struct odp_nic_wqe) == 64, "wqe size");
_Static_assert(sizeof(struct odp_nic_cqe) == 32, "cqe size");
_Static_assert(sizeof(struct odp_nic_eqe) == 32, "eqe size");
_Static_assert(sizeof(struct odp_nic_pkt_hdr) == 48, "pkt hdr size");

#endif /* P2PLAB_ODP_NIC_HW_H */
