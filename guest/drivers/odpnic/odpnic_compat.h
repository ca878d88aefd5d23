/* SPDX-License-Identifier: GPL-2.0 */
/*
 * odpnic: the kernel API differences between the guest kernels the driver
 * builds on (6.12 LTS and 7.x), in one place.  Each is a real API change;
 * the release named is the one that made it.
 */
#ifndef ODPNIC_COMPAT_H
#define ODPNIC_COMPAT_H

#include <linux/hmm.h>
#include <linux/version.h>
#include <rdma/ib_umem.h>
#include <rdma/ib_umem_odp.h>

#include <p2plab/odp_nic_hw.h>

/*
 * 6.16: ODP umems keep an hmm_dma_map.  ib_umem_odp_map_dma_and_lock() only
 * faults; the driver maps each page (hmm_dma_map_pfn(), P2PDMA-aware) while
 * it writes the translation.  Before, the core mapped every page and kept a
 * dma_list with the access bits in the low bits.
 */
#if KERNEL_VERSION(6, 16, 0) <= LINUX_VERSION_CODE
#include <linux/hmm-dma.h>
#include <linux/pci-p2pdma.h>

#define odpnic_p2p_state pci_p2pdma_map_state

static inline u64 odpnic_odp_access_mask(bool write)
{
	return write ? HMM_PFN_WRITE : 0;
}

static inline bool odpnic_odp_page_mapped(struct ib_umem_odp *odp, size_t idx)
{
	return odp->map.pfn_list[idx] & HMM_PFN_DMA_MAPPED;
}

/* The translation entry of page @idx, 0 when it is not present. */
static inline int odpnic_odp_entry(struct ib_umem_odp *odp, size_t idx,
				   struct odpnic_p2p_state *p2p, u64 *entry)
{
	unsigned long pfn = odp->map.pfn_list[idx];
	dma_addr_t dma;

	*entry = 0;
	if (!(pfn & HMM_PFN_VALID))
		return 0;
	dma = hmm_dma_map_pfn(odp->umem.ibdev->dma_device, &odp->map, idx, p2p);
	if (ib_dma_mapping_error(odp->umem.ibdev, dma))
		return -EFAULT;
	/* ib_umem_odp_unmap_dma_pages() counts every page it unmaps down. */
	if (!(pfn & HMM_PFN_DMA_MAPPED))
		odp->npages++;
	*entry = dma | ODP_NIC_XLT_VALID | ODP_NIC_XLT_READ;
	if (pfn & HMM_PFN_WRITE)
		*entry |= ODP_NIC_XLT_WRITE;
	return 0;
}
#else
/* The core maps ODP pages itself, P2PDMA ones included (or not at all). */
struct odpnic_p2p_state {
	int unused;
};

static inline u64 odpnic_odp_access_mask(bool write)
{
	return ODP_READ_ALLOWED_BIT | (write ? ODP_WRITE_ALLOWED_BIT : 0);
}

static inline bool odpnic_odp_page_mapped(struct ib_umem_odp *odp, size_t idx)
{
	return odp->dma_list[idx];
}

static inline int odpnic_odp_entry(struct ib_umem_odp *odp, size_t idx,
				   struct odpnic_p2p_state *p2p, u64 *entry)
{
	dma_addr_t dma = odp->dma_list[idx];

	*entry = 0;
	if (!dma)
		return 0;
	*entry = (dma & ODP_DMA_ADDR_MASK) | ODP_NIC_XLT_VALID;
	if (dma & ODP_READ_ALLOWED_BIT)
		*entry |= ODP_NIC_XLT_READ;
	if (dma & ODP_WRITE_ALLOWED_BIT)
		*entry |= ODP_NIC_XLT_WRITE;
	return 0;
}
#endif

/* 6.17: DMA handles (struct ib_dmah) reach reg_user_mr and its dma-buf twin. */
#if KERNEL_VERSION(6, 17, 0) <= LINUX_VERSION_CODE
#define ODPNIC_HAVE_DMAH 1
#endif

/*
 * ib_umem_get() became ib_umem_get_va() when umems learnt buffer
 * descriptors.  The boundary is the release we know has it (7.2); the
 * rename may be a release older.
 */
#if KERNEL_VERSION(7, 2, 0) > LINUX_VERSION_CODE
#define ib_umem_get_va ib_umem_get
#endif

/* 7.1: move_notify became invalidate_mappings, with a bounded-time contract. */
#if KERNEL_VERSION(7, 1, 0) <= LINUX_VERSION_CODE
#define ODPNIC_IMPORTER_NOTIFY invalidate_mappings
#else
#define ODPNIC_IMPORTER_NOTIFY move_notify
#endif

#endif /* ODPNIC_COMPAT_H */
