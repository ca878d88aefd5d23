// SPDX-License-Identifier: GPL-2.0
/*
 * p2pgpu: the P2PDMA provider.
 *
 * Direct mode: the whole BAR becomes P2PDMA memory (ZONE_DEVICE pages and
 * the provider's gen_pool), so every VRAM byte has a P2PDMA page.  The p2pdma
 * pool is then the allocator of record for all of VRAM: the driver takes
 * everything past the published p2pmem out of it once, at probe, for its own
 * device-private and BO allocators, and only the first p2pmem_mb stay for the
 * kernel's p2pmem users (pci_alloc_p2pmem(), sysfs p2pmem/allocate,
 * FOLL_PCI_P2PDMA pinning of those mappings, O_DIRECT into them).
 *
 * Windowed mode: only the slots that hold p2pmem for good are registered;
 * the rest of BAR2 changes under the driver's feet and cannot have pages.
 */
#include <linux/pci-p2pdma.h>

#include "p2pgpu_drv.h"
#include "p2pgpu_compat.h"

/*
 * A fresh pool allocates first-fit from its start, so allocating the p2pmem
 * part first makes the reservation land right after it; checked anyway.
 */
static int p2pgpu_p2pdma_reserve(struct p2pgpu_dev *gpu)
{
	struct pci_dev *pdev = gpu->pdev;
	size_t rest = gpu->vram_size - gpu->p2pmem_size;
	pci_bus_addr_t base = pci_bus_address(pdev, P2P_GPU_APERTURE_BAR);
	void *head;

	head = pci_alloc_p2pmem(pdev, gpu->p2pmem_size);
	if (!head)
		return -ENOMEM;
	gpu->p2pmem_reserve = pci_alloc_p2pmem(pdev, rest);
	pci_free_p2pmem(pdev, head, gpu->p2pmem_size);
	if (!gpu->p2pmem_reserve)
		return -ENOMEM;
	gpu->p2pmem_reserve_size = rest;
	if (pci_p2pmem_virt_to_bus(pdev, gpu->p2pmem_reserve) - base != gpu->p2pmem_size) {
		dev_err(&pdev->dev, "p2pmem reservation landed at BAR2 + %#llx, not %#llx\n",
			(u64)(pci_p2pmem_virt_to_bus(pdev, gpu->p2pmem_reserve) - base),
			gpu->p2pmem_size);
		return -EIO;
	}
	return 0;
}

int p2pgpu_p2pdma_init(struct p2pgpu_dev *gpu)
{
	struct pci_dev *pdev = gpu->pdev;
	bool direct = gpu->mode == P2PGPU_APERTURE_DIRECT;
	int ret;

#ifdef P2PGPU_HAVE_DMA_BUF_PHYS_VEC
	/* The provider dma-buf mappings go through, p2pmem or not. */
	ret = pcim_p2pdma_init(pdev);
	if (ret)
		return ret;
	gpu->provider = pcim_p2pdma_provider(pdev, P2P_GPU_APERTURE_BAR);
	if (!gpu->provider)
		return -EOPNOTSUPP;
#endif
	if (!gpu->p2pmem_size)
		return 0;
	/* p2pmem sits at VRAM offset 0: BAR2 offset 0 in both modes. */
	ret = pci_p2pdma_add_resource(pdev, P2P_GPU_APERTURE_BAR,
				      direct ? 0 : gpu->p2pmem_size, 0);
	if (ret) {
		dev_err(&pdev->dev, "P2PDMA over BAR2 refused: %d\n", ret);
		return ret;
	}
	if (direct) {
		ret = p2pgpu_p2pdma_reserve(gpu);
		if (ret) {
			p2pgpu_p2pdma_fini(gpu);
			return ret;
		}
	}
	pci_p2pmem_publish(pdev, true);
	return 0;
}

/*
 * The provider itself is device-managed and goes after remove(); the
 * reservation must be back in its pool before.
 */
void p2pgpu_p2pdma_fini(struct p2pgpu_dev *gpu)
{
	struct pci_dev *pdev = gpu->pdev;

	if (!gpu->p2pmem_size)
		return;
	pci_p2pmem_publish(pdev, false);
	if (gpu->p2pmem_reserve)
		pci_free_p2pmem(pdev, gpu->p2pmem_reserve, gpu->p2pmem_reserve_size);
	gpu->p2pmem_reserve = NULL;
}
