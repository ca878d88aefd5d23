/* SPDX-License-Identifier: GPL-2.0 */
/*
 * p2pgpu: the kernel API differences between the guest kernels the driver
 * builds on (6.12 LTS and 7.x), in one place.  Each is a real API change;
 * the release named is the one that made it.
 */
#ifndef P2PGPU_COMPAT_H
#define P2PGPU_COMPAT_H

#include <linux/memremap.h>
#include <linux/version.h>

/* 6.13: symbol namespaces are strings. */
#if KERNEL_VERSION(6, 13, 0) <= LINUX_VERSION_CODE
#define P2PGPU_IMPORT_DMA_BUF_NS() MODULE_IMPORT_NS("DMA_BUF")
#else
#define P2PGPU_IMPORT_DMA_BUF_NS() MODULE_IMPORT_NS(DMA_BUF)
#endif

/* 6.15: pgmap moved from the page to the folio, behind an accessor. */
#if KERNEL_VERSION(6, 15, 0) > LINUX_VERSION_CODE
static inline struct dev_pagemap *page_pgmap(const struct page *page)
{
	return page->pgmap;
}
#endif

/*
 * 6.19: device-private folios (THP migration): pages are freed as folios and
 * zone_device_page_init() takes the pgmap and an order.
 */
#if KERNEL_VERSION(6, 19, 0) <= LINUX_VERSION_CODE
#define P2PGPU_HAVE_FOLIO_FREE 1
static inline void p2pgpu_zone_device_page_init(struct page *page,
						struct dev_pagemap *pgmap)
{
	zone_device_page_init(page, pgmap, 0);
}
#else
static inline void p2pgpu_zone_device_page_init(struct page *page,
						struct dev_pagemap *pgmap)
{
	zone_device_page_init(page);
}
#endif

/*
 * 6.19: P2PDMA providers without struct pages, and the dma-buf helper that
 * maps MMIO ranges of one for an importer (bus address or IOVA).
 */
#if KERNEL_VERSION(6, 19, 0) <= LINUX_VERSION_CODE
#define P2PGPU_HAVE_DMA_BUF_PHYS_VEC 1
#include <linux/dma-buf-mapping.h>
#endif

/* 7.1: move_notify became invalidate_mappings, with a bounded-time contract. */
#if KERNEL_VERSION(7, 1, 0) <= LINUX_VERSION_CODE
#define p2pgpu_dma_buf_notify dma_buf_invalidate_mappings
#define P2PGPU_IMPORTER_NOTIFY invalidate_mappings
#else
#define p2pgpu_dma_buf_notify dma_buf_move_notify
#define P2PGPU_IMPORTER_NOTIFY move_notify
#endif

#endif /* P2PGPU_COMPAT_H */
