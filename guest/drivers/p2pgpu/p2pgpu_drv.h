/* SPDX-License-Identifier: GPL-2.0 */
/*
 * p2pgpu: internal interfaces between the driver's parts.
 *
 * Lock order (outermost first):
 *   mmap_lock -> bo->resv -> gpu->mm_lock
 *	-> i_mmap_rwsem (unmap_mapping_range) -> gpu->ce.lock
 * Aperture eviction runs under mm_lock: it only takes windows that no
 * dma-buf mapping pins, and revokes CPU mappings, which need no resv.
 */
#ifndef P2PGPU_DRV_H
#define P2PGPU_DRV_H

#include <linux/atomic.h>
#include <linux/dma-resv.h>
#include <linux/genalloc.h>
#include <linux/kref.h>
#include <linux/list.h>
#include <linux/memremap.h>
#include <linux/miscdevice.h>
#include <linux/mutex.h>
#include <linux/pci.h>
#include <linux/wait.h>
#include <linux/xarray.h>

#include <p2plab/p2p_gpu_hw.h>

#include "uapi/p2pgpu.h"

struct dma_buf;
struct p2pdma_provider;
struct dentry;
struct inode;

/*
 * Driver counters, in debugfs.  The ones named like the device's QOM counters
 * count the same events from the driver's side, so a scenario can compare
 * the two.
 */
struct p2pgpu_stats {
	atomic64_t resize_attempts;	/* pci_resize_resource() calls */
	atomic64_t resizes;		/* BAR2 size changes: ours, and the
					 * PCI core's ReBAR restores after a
					 * reset
					 */
	atomic64_t resets;		/* FLRs and other resets the driver rode out */
	atomic64_t aperture_maps;	/* MAP commands the device accepted */
	atomic64_t aperture_unmaps;	/* UNMAP commands the device accepted */
	atomic64_t aperture_map_failures; /* MAP commands the device refused */
	atomic64_t aperture_full;	/* ... of which FULL ("no room in the BAR") */
	atomic64_t aperture_evictions;	/* windows taken from an LRU victim */
	atomic64_t aperture_no_room;	/* requests that found no window at all */
	atomic64_t copies;		/* descriptors completed OK */
	atomic64_t copy_bytes;
	atomic64_t copy_errors;		/* descriptors completed with an error */
	atomic64_t copy_timeouts;	/* jobs with no completion: engine reset */
	atomic64_t ring_faults;
	atomic64_t cpu_faults;		/* BO mmap faults */
	atomic64_t revocations;		/* zaps of CPU mappings before a move */
	atomic64_t move_notifies;	/* dma_buf_move_notify() calls */
	atomic64_t exports;
	atomic64_t migrate_to_dev;	/* pages */
	atomic64_t migrate_to_sys;	/* pages, by ioctl */
	atomic64_t migrate_to_ram;	/* pages, by CPU fault */
	atomic64_t reg_errors;		/* REG_ERROR interrupts */
	atomic64_t interrupts;
};

#define P2PGPU_STAT_INC(gpu, name) atomic64_inc(&(gpu)->stats.name)
#define P2PGPU_STAT_ADD(gpu, name, n) atomic64_add((n), &(gpu)->stats.name)

/* One aperture slot in windowed mode. */
struct p2pgpu_slot {
	u32 granule;		/* VRAM granule mapped here, or P2PGPU_NONE */
	u32 pins;		/* users that cannot be revoked (pinned dma-buf, p2pmem) */
	struct list_head lru;	/* on gpu->lru while mapped and unpinned */
};

#define P2PGPU_NONE U32_MAX

struct p2pgpu_ce {
	struct mutex lock;		/* one job on the ring at a time */
	wait_queue_head_t wq;
	struct p2p_gpu_desc *ring;
	dma_addr_t ring_dma;
	u32 ring_size;
	u32 tail;
	struct p2p_gpu_sg *sg;		/* sg lists of the job on the ring */
	dma_addr_t sg_dma;
	u32 sg_entries;
};

struct p2pgpu_hmm;

struct p2pgpu_dev {
	struct pci_dev *pdev;
	void __iomem *regs;
	int id;
	char name[24];			/* p2pgpuN */
	struct miscdevice misc;
	struct inode *inode;		/* address space of all BO mmaps */
	atomic_t users;			/* open files and live dma-bufs */

	u64 vram_size;
	u64 bar_size;
	u64 bar_size_initial;
	resource_size_t bar_phys;
	int resize_status;

	/* VRAM layout: [p2pmem][hmm][BOs ...] */
	u64 p2pmem_off, p2pmem_size;
	u64 hmm_off, hmm_size;
	u64 bo_off, bo_size;
	struct gen_pool *vram;		/* BO allocator over [bo_off, +bo_size) */
	void *p2pmem_reserve;		/* direct mode: BO part taken from p2pdma */
	struct p2pdma_provider *provider; /* BAR2's, where the kernel has them */
	size_t p2pmem_reserve_size;

	/* Everything below is under mm_lock: BO placement and the aperture. */
	struct mutex mm_lock;
	u32 mode;			/* P2PGPU_APERTURE_* */
	u32 granule_shift;
	u32 nslots;
	u32 first_dyn_slot;
	struct p2pgpu_slot *slots;
	u32 *granule_slot;		/* VRAM granule -> slot, or P2PGPU_NONE */
	struct list_head lru;		/* unpinned mapped slots, oldest first */
	struct xarray bos;		/* id -> struct p2pgpu_bo */

	struct p2pgpu_ce ce;
	struct p2pgpu_hmm *hmm;
	struct dentry *debugfs;
	struct p2pgpu_stats stats;
	bool dead;			/* removed or reset failed: refuse work */
};

struct p2pgpu_bo {
	struct kref ref;
	struct p2pgpu_dev *gpu;
	u32 id;
	u64 size;
	u64 vram_off;			/* under gpu->mm_lock */
	u32 pins;			/* pinned dma-buf attachments, under mm_lock */
	u32 mapped;			/* live dma-buf mappings, under mm_lock */
	/*
	 * The reservation object of the BO's dma-buf lives in the BO (as a GEM
	 * object's does), so holding a BO reference keeps it valid even while
	 * the dma-buf is being released.  It ranks above mm_lock.
	 */
	struct dma_resv resv;
	struct list_head exports;	/* struct p2pgpu_exported, under resv */
};

/* p2pgpu_main.c */
u32 p2pgpu_rd(struct p2pgpu_dev *gpu, u32 reg);
void p2pgpu_wr(struct p2pgpu_dev *gpu, u32 reg, u32 val);
u64 p2pgpu_rd64(struct p2pgpu_dev *gpu, u32 reg);
void p2pgpu_wr64(struct p2pgpu_dev *gpu, u32 reg, u64 val);

/* p2pgpu_rebar.c */
void p2pgpu_rebar_resize(struct p2pgpu_dev *gpu);

/* p2pgpu_aperture.c */
int p2pgpu_aperture_init(struct p2pgpu_dev *gpu);
void p2pgpu_aperture_fini(struct p2pgpu_dev *gpu);
int p2pgpu_aperture_restore(struct p2pgpu_dev *gpu);
u32 p2pgpu_aperture_mapped(struct p2pgpu_dev *gpu);
int p2pgpu_aperture_get(struct p2pgpu_dev *gpu, u64 vram_off, bool pin,
			u64 *bar_off);
void p2pgpu_aperture_unpin(struct p2pgpu_dev *gpu, u64 vram_off);
int p2pgpu_aperture_drop(struct p2pgpu_dev *gpu, u64 vram_off, u64 size,
			 u32 *dropped);
bool p2pgpu_bar_to_vram(struct p2pgpu_dev *gpu, phys_addr_t phys, u64 *vram_off);

/* p2pgpu_bo.c */
int p2pgpu_vram_init(struct p2pgpu_dev *gpu);
void p2pgpu_vram_fini(struct p2pgpu_dev *gpu);
struct p2pgpu_bo *p2pgpu_bo_create(struct p2pgpu_dev *gpu, u64 size);
void p2pgpu_bo_put(struct p2pgpu_bo *bo);
void p2pgpu_bo_revoke(struct p2pgpu_bo *bo, u64 off, u64 len);
int p2pgpu_bo_move(struct p2pgpu_bo *bo, u32 *dev_status);
int p2pgpu_bo_evict_aperture(struct p2pgpu_bo *bo, u32 *windows);
u64 p2pgpu_bo_mmap_offset(const struct p2pgpu_bo *bo);
void p2pgpu_revoke_vram(struct p2pgpu_dev *gpu, u64 vram_off, u64 len);
extern const struct vm_operations_struct p2pgpu_bo_vm_ops;
u32 p2pgpu_bo_mmap_id(unsigned long pgoff);
int p2pgpu_bo_mmap(struct p2pgpu_bo *bo, struct vm_area_struct *vma);

/* p2pgpu_ce.c */
int p2pgpu_ce_init(struct p2pgpu_dev *gpu);
void p2pgpu_ce_fini(struct p2pgpu_dev *gpu);
int p2pgpu_ce_start(struct p2pgpu_dev *gpu);
void p2pgpu_ce_wake(struct p2pgpu_dev *gpu);

/* One piece of a copy: a VRAM range and where the other side is. */
struct p2pgpu_xfer {
	u32 op;			/* P2P_GPU_OP_* */
	u64 vram_off;
	u64 addr;		/* host IOVA, or source VRAM offset for VRAM_TO_VRAM */
	u32 len;
};
int p2pgpu_ce_run(struct p2pgpu_dev *gpu, const struct p2pgpu_xfer *x,
		  unsigned int n, u32 *dev_status);
int p2pgpu_ce_run_sg(struct p2pgpu_dev *gpu, u32 op, u64 vram_off,
		     struct scatterlist *sgl, unsigned int nents, u32 *dev_status);
int p2pgpu_copy_user(struct p2pgpu_dev *gpu, struct p2pgpu_bo *bo,
		     struct p2pgpu_copy *args);

/* p2pgpu_p2pdma.c */
int p2pgpu_p2pdma_init(struct p2pgpu_dev *gpu);
void p2pgpu_p2pdma_fini(struct p2pgpu_dev *gpu);

/* p2pgpu_dmabuf.c */
int p2pgpu_dmabuf_export(struct p2pgpu_bo *bo, u32 flags);
void p2pgpu_dmabuf_move_notify(struct p2pgpu_bo *bo);
int p2pgpu_dmabuf_import(struct p2pgpu_dev *gpu, struct xarray *imports,
			 struct p2pgpu_bo *dst, struct p2pgpu_import *args);
void p2pgpu_dmabuf_imports_release(struct xarray *imports);

/* p2pgpu_hmm.c */
int p2pgpu_hmm_init(struct p2pgpu_dev *gpu);
void p2pgpu_hmm_fini(struct p2pgpu_dev *gpu);
int p2pgpu_migrate(struct p2pgpu_dev *gpu, struct p2pgpu_migrate *args,
		   bool to_dev);

/* p2pgpu_debugfs.c */
void p2pgpu_debugfs_init(struct p2pgpu_dev *gpu);
void p2pgpu_debugfs_fini(struct p2pgpu_dev *gpu);
void p2pgpu_debugfs_root_init(void);
void p2pgpu_debugfs_root_fini(void);

/* p2pgpu_cdev.c */
int p2pgpu_cdev_init(struct p2pgpu_dev *gpu);
void p2pgpu_cdev_fini(struct p2pgpu_dev *gpu);
void p2pgpu_user_put(struct p2pgpu_dev *gpu);
int p2pgpu_fs_init(void);
void p2pgpu_fs_fini(void);

/* errno for a copy-engine status code */
int p2pgpu_ce_errno(u32 code);

#endif /* P2PGPU_DRV_H */
