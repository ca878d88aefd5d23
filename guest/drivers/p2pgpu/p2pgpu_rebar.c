// SPDX-License-Identifier: GPL-2.0
/*
 * p2pgpu: Resizable BAR.  At probe, grow BAR2 to the largest size the device
 * offers (at most VRAM) that the platform can fit, trying smaller sizes when
 * the PCI core cannot place one.  Whether a size fits is the platform's
 * business (the upstream bridge window, the host's 64-bit hole), so a refusal
 * is normal: the driver then keeps the BAR it has and runs the aperture in
 * windowed mode.
 */
#include <linux/log2.h>
#include <linux/module.h>
#include <linux/pci.h>
#include <linux/sizes.h>

#include "p2pgpu_drv.h"

static int max_bar_mb;
module_param(max_bar_mb, int, 0444);
MODULE_PARM_DESC(max_bar_mb,
		 "Largest BAR2 size to resize to, in MiB (0: as large as VRAM, -1: do not resize)");

/*
 * Would a resize be pointless?  As amdgpu and xe do: without a root bus
 * window above 4 GiB there is nowhere to put a large 64-bit BAR.  Unlike
 * them, a window that starts at 4 GiB counts: QEMU's q35 puts its 64-bit
 * hole right there when all RAM is below 4 GiB.
 */
static bool p2pgpu_platform_has_64bit_window(struct pci_dev *pdev)
{
	struct pci_bus *root = pdev->bus;
	struct resource *res;
	unsigned int i;

	while (root->parent)
		root = root->parent;
	pci_bus_for_each_resource(root, res, i) {
		if (res && (res->flags & IORESOURCE_MEM) && res->start >= SZ_4G)
			return true;
	}
	return false;
}

void p2pgpu_rebar_resize(struct p2pgpu_dev *gpu)
{
	struct pci_dev *pdev = gpu->pdev;
	const int bar = P2P_GPU_APERTURE_BAR;
	u64 cur = pci_resource_len(pdev, bar);
	u64 sizes = pci_rebar_get_possible_sizes(pdev, bar);
	int size, ret = 0;
	u16 cmd;

	gpu->resize_status = 0;
	if (max_bar_mb < 0 || !sizes)
		return;
	if (max_bar_mb > 0) {
		/* Keep only sizes up to the cap: bit n is 2^n MiB. */
		int cap = ilog2(max_bar_mb);

		if (cap < 63)
			sizes &= GENMASK_ULL(cap, 0);
	}
	if (!sizes || (1ull << (fls64(sizes) - 1)) * SZ_1M <= cur)
		return;
	if (!p2pgpu_platform_has_64bit_window(pdev)) {
		pci_info(pdev, "no 64-bit root bus window: keeping BAR2 at %llu MiB\n",
			 cur >> 20);
		gpu->resize_status = -ENOSPC;
		return;
	}

	pci_read_config_word(pdev, PCI_COMMAND, &cmd);
	pci_write_config_word(pdev, PCI_COMMAND, cmd & ~PCI_COMMAND_MEMORY);
	for (size = fls64(sizes) - 1; size >= 0; size--) {
		u64 bytes = (u64)SZ_1M << size;

		if (!(sizes & BIT_ULL(size)) || bytes <= cur)
			continue;
		P2PGPU_STAT_INC(gpu, resize_attempts);
		ret = pci_resize_resource(pdev, bar, size, 0);
		if (!ret) {
			P2PGPU_STAT_INC(gpu, resizes);
			pci_info(pdev, "BAR2 resized from %llu MiB to %llu MiB\n",
				 cur >> 20, bytes >> 20);
			break;
		}
		pci_info(pdev, "BAR2 of %llu MiB does not fit (%pe)\n",
			 bytes >> 20, ERR_PTR(ret));
	}
	/* Place whatever the failed attempts left unassigned. */
	pci_assign_unassigned_bus_resources(pdev->bus);
	pci_write_config_word(pdev, PCI_COMMAND, cmd);
	gpu->resize_status = ret;
	if (ret)
		pci_info(pdev, "keeping BAR2 at %llu MiB\n",
			 (u64)pci_resource_len(pdev, bar) >> 20);
}
