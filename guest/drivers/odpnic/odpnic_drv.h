/* SPDX-License-Identifier: GPL-2.0 */
/*
 * odpnic: the RDMA provider of the odp-nic device (docs/devices/odp-nic.md).
 * docs/drivers/odpnic.md explains the design.
 *
 * Lock order (outer first):
 *   umem_odp->umem_mutex / dma_resv of an imported dma-buf
 *     -> odpnic_dev.cmd_lock
 *   odpnic_cq.lock -> odpnic_qp.sq_lock / rq_lock
 * cmd_lock is taken from inside mmu notifiers (INVALIDATE is a fence the
 * notifier must wait for), so nothing allocates memory while holding it.
 */
#ifndef ODPNIC_DRV_H
#define ODPNIC_DRV_H

#include <linux/atomic.h>
#include <linux/interrupt.h>
#include <linux/mutex.h>
#include <linux/pci.h>
#include <linux/spinlock.h>
#include <linux/wait.h>
#include <linux/xarray.h>
#include <rdma/ib_umem.h>
#include <rdma/ib_umem_odp.h>
#include <rdma/ib_verbs.h>

#include <p2plab/odp_nic_hw.h>

#define ODPNIC_PORT		1
/* One command at a time: commands are cheap, and a fence must not queue. */
#define ODPNIC_CMDQ_LOG		4
/* UPDATE_XLT list buffer: 2048 entries (16 KiB) per command. */
#define ODPNIC_XLT_CHUNK	2048
#define ODPNIC_EQ_LOG		8
/* Every CQ gets the largest ring: the device writes a CQE for every WR. */
#define ODPNIC_CQ_LOG		12
#define ODPNIC_CQ_DEPTH		(1u << ODPNIC_CQ_LOG)
/* Keys a WQE names: its scatter elements, and a loopback target. */
#define ODPNIC_WQE_KEYS		(ODP_NIC_MAX_SGE + 1)
#define ODPNIC_MAX_LOG_Q	12	/* the device's MAX_LOG_Q, checked at probe */
#define ODPNIC_MAX_WR		(1u << ODPNIC_MAX_LOG_Q)
/* Pages mapped per fault of a stalled queue; the WR faults again past it. */
#define ODPNIC_FAULT_PAGES	1024
#define ODPNIC_CMD_TIMEOUT_MS	10000

/* Driver-side counters, shown with the device's by `rdma statistic`. */
enum odpnic_sw_counter {
	ODPNIC_SW_FAULTS_HANDLED,	/* fault events taken from the EQ */
	ODPNIC_SW_FAULT_ERRORS,		/* ... that could not be mapped */
	ODPNIC_SW_PAGES_MAPPED,		/* translation entries written */
	ODPNIC_SW_ODP_INVALIDATIONS,	/* mmu notifier fences sent */
	ODPNIC_SW_DMABUF_INVALIDATIONS,	/* move_notify fences sent */
	ODPNIC_SW_PREFETCHES,		/* advise_mr prefetch requests */
	ODPNIC_SW_EQ_OVERFLOWS_SEEN,	/* CQ overflow events */
	ODPNIC_SW_NUM
};

struct odpnic_dev;

/* The context of one MSI-X vector's handler. */
struct odpnic_vec {
	struct odpnic_dev *dev;
	unsigned int vec;
};

struct odpnic_dev {
	struct ib_device ibdev;
	struct pci_dev *pdev;
	void __iomem *regs;
	u32 max_mrs, max_qps, max_cqs, max_xlt_pages;
	u8 mac[ETH_ALEN];
	u16 lid;
	__be64 guid;

	/* Command queue: one command in flight, the slot reused in turn. */
	struct mutex cmd_lock;
	struct odp_nic_cmd *cmdq;
	dma_addr_t cmdq_dma;
	u32 cmdq_pi;
	wait_queue_head_t cmd_wq;
	u64 *xlt;			/* UPDATE_XLT list, under cmd_lock */
	dma_addr_t xlt_dma;
	bool dead;			/* a command timed out: device reset */

	/* Event queue, consumed by the threaded handler of vector 1. */
	struct odp_nic_eqe *eq;
	dma_addr_t eq_dma;
	u32 eq_ci;

	struct xarray mrs;		/* key -> odpnic_mr */
	u32 next_key;			/* cyclic: delays reuse of a freed key */
	struct xarray qps;		/* qpn -> odpnic_qp */
	u32 next_qpn;
	struct xarray cqs;		/* cqn -> odpnic_cq */
	u32 next_cqn;
	/* CQs per MSI-X vector, for the completion interrupt. */
	spinlock_t cq_vec_lock;
	struct list_head cq_vec[ODP_NIC_MSIX_VECTORS];
	struct odpnic_vec vecs[ODP_NIC_MSIX_VECTORS];

	atomic64_t sw[ODPNIC_SW_NUM];
};

enum odpnic_mr_kind { ODPNIC_MR_PINNED, ODPNIC_MR_ODP, ODPNIC_MR_DMABUF };

struct odpnic_mr {
	struct ib_mr ibmr;
	struct odpnic_dev *dev;
	enum odpnic_mr_kind kind;
	struct ib_umem *umem;
	u32 key;
	u64 iova;
	u64 length;
	u32 npages;
	u32 hw_access;
	/*
	 * The device holds the region (CREATE_MR done, DESTROY_MR not yet).
	 * Written under umem_mutex (ODP) or the dma-buf's resv (DMABUF).
	 */
	bool live;
	/* Fault handling holds a reference; dereg waits for the last one. */
	refcount_t users;
	struct completion released;
	/*
	 * The key's own reference plus one per posted WQE naming it, dropped
	 * as poll retires the WQE: the key returns to the pool at 0, so no
	 * queued WQE can reach a later region that reuses the index.
	 */
	atomic_t wqe_refs;
	struct rcu_head rcu;		/* posts look regions up under RCU */
};

struct odpnic_cq {
	struct ib_cq ibcq;
	struct odpnic_dev *dev;
	u32 cqn;
	u16 vector;
	struct odp_nic_cqe *ring;
	dma_addr_t ring_dma;
	u32 ci;
	spinlock_t lock;
	atomic_t armed;
	struct list_head vec_node;
	/* QPs moved to the error state whose WRs are flushed by poll. */
	struct list_head flush_list;
	u32 attached_wrs;		/* sum of the depths of its QPs */
};

struct odpnic_wq {
	void *ring;			/* 64-byte WQEs */
	dma_addr_t ring_dma;
	u32 log;			/* 0: no queue */
	u32 pi;				/* posted */
	u32 ci;				/* completions seen by poll */
	u8 *signaled;			/* SQ: per slot, report a success CQE */
	/* Per slot, the regions its WQE names (odpnic_mr_hold). */
	struct odpnic_mr *(*mrs)[ODPNIC_WQE_KEYS];
};

/* A queue of a QP in the error state, on its CQ's flush list. */
struct odpnic_flush {
	struct list_head node;
	struct odpnic_qp *qp;
	bool send;
};

struct odpnic_qp {
	struct ib_qp ibqp;
	struct odpnic_dev *dev;
	u32 qpn;
	struct mutex mutex;		/* state transitions */
	enum ib_qp_state state;
	bool hw_created;		/* written under sq_lock and rq_lock */
	bool sq_sig_all;
	u8 dest;
	u32 remote_qpn;
	u8 path_mtu;
	spinlock_t sq_lock;
	spinlock_t rq_lock;
	struct odpnic_wq sq, rq;
	struct odpnic_flush sflush, rflush;
};

static inline struct odpnic_dev *to_odev(struct ib_device *ibdev)
{
	return container_of(ibdev, struct odpnic_dev, ibdev);
}

static inline struct odpnic_mr *to_omr(struct ib_mr *ibmr)
{
	return container_of(ibmr, struct odpnic_mr, ibmr);
}

static inline struct odpnic_cq *to_ocq(struct ib_cq *ibcq)
{
	return container_of(ibcq, struct odpnic_cq, ibcq);
}

static inline struct odpnic_qp *to_oqp(struct ib_qp *ibqp)
{
	return container_of(ibqp, struct odpnic_qp, ibqp);
}

#define ODPNIC_SW_INC(dev, c)	atomic64_inc(&(dev)->sw[ODPNIC_SW_##c])
#define ODPNIC_SW_ADD(dev, c, n) atomic64_add((n), &(dev)->sw[ODPNIC_SW_##c])

/* odpnic_main.c */
u32 odpnic_rd(struct odpnic_dev *dev, u32 reg);
void odpnic_wr(struct odpnic_dev *dev, u32 reg, u32 val);
u64 odpnic_counter(struct odpnic_dev *dev, unsigned int index);

/* odpnic_cmd.c */
int odpnic_cmdq_init(struct odpnic_dev *dev);
void odpnic_cmdq_fini(struct odpnic_dev *dev);
void odpnic_cmd_irq(struct odpnic_dev *dev);
int odpnic_cmd(struct odpnic_dev *dev, struct odp_nic_cmd *cmd, u64 *out);
int odpnic_cmd_locked(struct odpnic_dev *dev, struct odp_nic_cmd *cmd,
		      u64 *out);
int odpnic_cmd_num(struct odpnic_dev *dev, u8 opcode, u32 num);
typedef int (*odpnic_xlt_fill_t)(void *ctx, u64 first, u32 count, u64 *xlt);
int odpnic_xlt_write(struct odpnic_dev *dev, u32 key, u64 first, u64 count,
		     odpnic_xlt_fill_t fill, void *ctx);
int odpnic_cmd_invalidate(struct odpnic_dev *dev, u32 key, u64 va, u64 len);
int odpnic_cmd_resume(struct odpnic_dev *dev, u32 qpn, bool ok);

/* odpnic_eq.c */
int odpnic_eq_init(struct odpnic_dev *dev);
void odpnic_eq_fini(struct odpnic_dev *dev);
irqreturn_t odpnic_eq_thread(int irq, void *data);

/* odpnic_mr.c */
extern const struct ib_device_ops odpnic_mr_ops;
struct odpnic_mr *odpnic_mr_get(struct odpnic_dev *dev, u32 key);
void odpnic_mr_put(struct odpnic_mr *mr);
struct odpnic_mr *odpnic_mr_hold(struct odpnic_dev *dev, struct ib_pd *pd,
				 u32 key, u32 hw_right, int *err);
void odpnic_mr_unhold(struct odpnic_mr *mr);
void odpnic_wq_unhold(struct odpnic_wq *wq, u32 slot);

/* odpnic_odp.c: ODP and dma-buf regions, fault resolution */
extern const struct mmu_interval_notifier_ops odpnic_mni_ops;
extern const struct dma_buf_attach_ops odpnic_dmabuf_attach_ops;
int odpnic_odp_resolve(struct odpnic_mr *mr, u64 va, u64 len, bool write,
		       u64 max_pages);
int odpnic_dmabuf_map(struct odpnic_mr *mr);
void odpnic_odp_retire(struct odpnic_mr *mr);
void odpnic_dmabuf_retire(struct odpnic_mr *mr);

/* odpnic_cq.c */
extern const struct ib_device_ops odpnic_cq_ops;
irqreturn_t odpnic_cq_irq(int irq, void *data);
void odpnic_cq_scrub(struct odpnic_cq *cq, u32 qpn);
void odpnic_cq_flush_add(struct odpnic_cq *cq, struct odpnic_flush *fl);
void odpnic_cq_flush_del(struct odpnic_cq *cq, struct odpnic_flush *fl);

/* odpnic_qp.c */
extern const struct ib_device_ops odpnic_qp_ops;

/* odpnic_stats.c */
extern const struct ib_device_ops odpnic_stats_ops;

#endif /* ODPNIC_DRV_H */
