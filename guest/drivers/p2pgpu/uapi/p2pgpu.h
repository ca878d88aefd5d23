/* SPDX-License-Identifier: GPL-2.0 WITH Linux-syscall-note */
/*
 * p2pgpu: the ioctl ABI of the p2p-gpu driver (/dev/p2pgpuN).
 *
 * The driver owns the GPU's VRAM and its BAR2 aperture.  Userspace allocates
 * buffer objects (BOs) in VRAM, maps them (a VMA backed by BAR2 pages), copies
 * to and from them with the device's copy engine, exports them as dma-bufs and
 * migrates anonymous memory into device-private VRAM and back (HMM).
 *
 * Conventions:
 * - Every structure is made of fixed-width fields, naturally aligned, with
 *   explicit padding that must be zero; a non-zero pad or flag the driver does
 *   not know is refused with -EINVAL, so fields can be added later.
 * - Sizes and offsets are bytes.  BO sizes are rounded up to PAGE_SIZE.
 * - A BO handle is valid in the file it was allocated through; it is not a
 *   global name (export a dma-buf to share a BO).
 * - Errors are negative errno values; where the device reports a status of its
 *   own (the copy engine's), it is returned as well, in @dev_status.
 */
#ifndef _UAPI_P2PGPU_H
#define _UAPI_P2PGPU_H

#include <linux/ioctl.h>
#include <linux/types.h>

#define P2PGPU_IOCTL_MAGIC	'G'

/* Aperture modes (struct p2pgpu_info.aperture_mode). */
#define P2PGPU_APERTURE_DIRECT		1	/* BAR2 covers VRAM, offset == VRAM offset */
#define P2PGPU_APERTURE_WINDOWED	2	/* granules mapped into BAR2 slots on demand */

/**
 * struct p2pgpu_info - what the driver made of the device (P2PGPU_IOC_INFO)
 * @vram_size: bytes of VRAM
 * @bar_size: BAR2 bytes after the driver's resize at probe
 * @bar_size_initial: BAR2 bytes the platform assigned before probe
 * @granule: aperture slot size (windowed mode); VRAM is mapped in granules
 * @p2pmem_size: bytes of VRAM published as P2PDMA memory (sysfs p2pmem)
 * @hmm_size: bytes of VRAM backing device-private pages (HMM migration)
 * @bo_vram_size: bytes of VRAM left for buffer objects
 * @aperture_mode: P2PGPU_APERTURE_*
 * @slots: BAR2 slots (windowed mode), 0 in direct mode
 * @dynamic_slots: slots used for on-demand windows; the others hold p2pmem
 * @resize_status: 0 if the resize to the largest fitting size worked or was
 *	not needed, else the negative errno of the last refused attempt
 */
struct p2pgpu_info {
	__u64 vram_size;
	__u64 bar_size;
	__u64 bar_size_initial;
	__u64 granule;
	__u64 p2pmem_size;
	__u64 hmm_size;
	__u64 bo_vram_size;
	__u32 aperture_mode;
	__u32 slots;
	__u32 dynamic_slots;
	__s32 resize_status;
};

/**
 * struct p2pgpu_alloc - allocate a BO in VRAM (P2PGPU_IOC_ALLOC)
 * @size: in: bytes (rounded up to PAGE_SIZE); out: the rounded size
 * @flags: must be 0
 * @handle: out: the BO's handle in this file
 * @mmap_offset: out: the offset to pass to mmap() on this file to map the BO
 *	(through BAR2: a VMA of VM_PFNMAP | VM_IO pages, write-combined)
 *
 * -ENOSPC: VRAM is full.  -E2BIG: @size is larger than VRAM.
 */
struct p2pgpu_alloc {
	__u64 size;
	__u32 flags;
	__u32 handle;
	__u64 mmap_offset;
};

/**
 * struct p2pgpu_handle - a BO handle (P2PGPU_IOC_FREE)
 * @handle: the BO
 * @pad: must be 0
 *
 * FREE drops the handle.  The BO itself lives until its last mapping,
 * dma-buf and in-flight copy are gone.
 */
struct p2pgpu_handle {
	__u32 handle;
	__u32 pad;
};

/* struct p2pgpu_copy.direction */
#define P2PGPU_COPY_TO_BO	1	/* user memory -> BO (HOST_TO_VRAM) */
#define P2PGPU_COPY_FROM_BO	2	/* BO -> user memory (VRAM_TO_HOST) */

/**
 * struct p2pgpu_copy - copy between a BO and user memory with the copy engine
 *	(P2PGPU_IOC_COPY)
 * @handle: the BO
 * @direction: P2PGPU_COPY_*
 * @bo_offset: byte offset in the BO
 * @user_addr: user virtual address (any alignment; scattered pages are fine)
 * @size: bytes; @bo_offset + @size must lie inside the BO
 * @dev_status: out: the copy engine's status code of the first failed
 *	descriptor (P2P_GPU_CE_* in p2p_gpu_hw.h), 0 when the copy succeeded
 * @pad: must be 0
 *
 * The user pages are pinned and DMA-mapped (through the IOMMU), and moved in
 * scatter-gather descriptors.  User memory may itself be P2PDMA memory (for
 * example this GPU's sysfs p2pmem mapped into the process): pages of this
 * GPU's own BAR become VRAM-to-VRAM copies, other devices' P2PDMA pages are
 * mapped with the P2P-aware DMA API.
 *
 * Errors: -EFAULT (user range not mapped or not writable for FROM_BO),
 * -EINVAL (range outside the BO), -EIO with @dev_status (the device failed
 * the copy: P2P_GPU_CE_DMA_FAULT for an IOMMU fault, P2P_GPU_CE_INJECTED for
 * fault injection, ...), -ETIMEDOUT (no completion; the engine was reset),
 * -EREMOTEIO (P2P between the user's P2PDMA memory and this GPU is refused).
 */
struct p2pgpu_copy {
	__u32 handle;
	__u32 direction;
	__u64 bo_offset;
	__u64 user_addr;
	__u64 size;
	__u32 dev_status;
	__u32 pad;
};

/* struct p2pgpu_evict.op */
#define P2PGPU_EVICT_APERTURE	1	/* drop the BO's BAR2 windows (revoking users) */
#define P2PGPU_EVICT_MOVE	2	/* move the BO to another VRAM range */

/**
 * struct p2pgpu_evict - a memory-pressure test hook (P2PGPU_IOC_EVICT)
 * @handle: the BO
 * @op: P2PGPU_EVICT_*
 * @vram_offset: out: the BO's VRAM offset afterwards (informational)
 * @windows: out: BAR2 windows dropped (APERTURE) or 0
 * @pad: must be 0
 *
 * Both revoke first: CPU mappings of the BO are zapped (the next access
 * faults the BO in again) and dynamic dma-buf importers get move_notify.
 * -EBUSY: a pinned dma-buf attachment or published p2pmem holds the BO in
 * place.  APERTURE in direct mode drops no window but still revokes.
 */
struct p2pgpu_evict {
	__u32 handle;
	__u32 op;
	__u64 vram_offset;
	__u32 windows;
	__u32 pad;
};

/**
 * struct p2pgpu_export - export a BO as a dma-buf (P2PGPU_IOC_EXPORT)
 * @handle: the BO
 * @flags: O_CLOEXEC and/or O_RDWR, for the new file descriptor
 * @fd: out: the dma-buf file descriptor
 * @pad: must be 0
 */
struct p2pgpu_export {
	__u32 handle;
	__u32 flags;
	__s32 fd;
	__u32 pad;
};

/* struct p2pgpu_import.flags */
/*
 * Pin the attachment (a dynamic attach, then dma_buf_pin(), as
 * ib_umem_dmabuf_get_pinned() does): the exporter keeps the buffer in place.
 */
#define P2PGPU_IMPORT_PINNED	(1u << 0)

/**
 * struct p2pgpu_import - attach this GPU as a test importer of a dma-buf
 *	(P2PGPU_IOC_IMPORT), and read through the importer's mapping
 * @fd: in: a dma-buf file descriptor
 * @flags: in: P2PGPU_IMPORT_*
 * @handle: in: a BO of this file that receives what is read
 * @pad: must be 0
 * @offset: in: byte offset in the dma-buf
 * @size: in: bytes to read (at most the BO's size)
 * @move_notifies: out: move_notify calls this attachment has received
 * @maps: out: times the importer mapped the dma-buf (a move forces a remap)
 * @nents: out: DMA segments of the last mapping
 * @dev_status: out: copy-engine status, as in struct p2pgpu_copy
 *
 * The importer attaches (dynamically unless PINNED), maps the attachment,
 * copies @size bytes at @offset from the DMA addresses it was given into
 * @handle's BO with the copy engine, and keeps the attachment until the
 * dma-buf or this file is closed, so a later IMPORT of the same fd reuses it
 * and reports the move_notify calls received in between.
 * -EREMOTEIO: the exporter refused the attachment (P2P path not allowed).
 */
struct p2pgpu_import {
	__s32 fd;
	__u32 flags;
	__u32 handle;
	__u32 pad;
	__u64 offset;
	__u64 size;
	__u32 move_notifies;
	__u32 maps;
	__u32 nents;
	__u32 dev_status;
};

/**
 * struct p2pgpu_migrate - migrate anonymous memory to or from device-private
 *	VRAM (P2PGPU_IOC_MIGRATE_TO_DEV, P2PGPU_IOC_MIGRATE_TO_SYS)
 * @addr: page-aligned start, inside one private anonymous VMA
 * @npages: pages
 * @migrated: out: pages that moved (pages not present, or pinned, stay)
 * @dev_status: out: copy-engine status, as in struct p2pgpu_copy
 * @pad: must be 0
 *
 * TO_DEV moves pages into device-private memory backed by VRAM; a later CPU
 * access faults them back (dev_pagemap_ops.migrate_to_ram).  TO_SYS moves
 * this device's private pages in the range back to system memory.  Data moves
 * through the copy engine.  -ENOMEM: device-private VRAM is exhausted.
 */
struct p2pgpu_migrate {
	__u64 addr;
	__u64 npages;
	__u64 migrated;
	__u32 dev_status;
	__u32 pad;
};

#define P2PGPU_IOC_INFO		_IOR(P2PGPU_IOCTL_MAGIC, 0x00, struct p2pgpu_info)
#define P2PGPU_IOC_ALLOC	_IOWR(P2PGPU_IOCTL_MAGIC, 0x01, struct p2pgpu_alloc)
#define P2PGPU_IOC_FREE		_IOW(P2PGPU_IOCTL_MAGIC, 0x02, struct p2pgpu_handle)
#define P2PGPU_IOC_COPY		_IOWR(P2PGPU_IOCTL_MAGIC, 0x03, struct p2pgpu_copy)
#define P2PGPU_IOC_EVICT	_IOWR(P2PGPU_IOCTL_MAGIC, 0x04, struct p2pgpu_evict)
#define P2PGPU_IOC_EXPORT	_IOWR(P2PGPU_IOCTL_MAGIC, 0x05, struct p2pgpu_export)
#define P2PGPU_IOC_IMPORT	_IOWR(P2PGPU_IOCTL_MAGIC, 0x06, struct p2pgpu_import)
#define P2PGPU_IOC_MIGRATE_TO_DEV _IOWR(P2PGPU_IOCTL_MAGIC, 0x07, struct p2pgpu_migrate)
#define P2PGPU_IOC_MIGRATE_TO_SYS _IOWR(P2PGPU_IOCTL_MAGIC, 0x08, struct p2pgpu_migrate)

#endif /* _UAPI_P2PGPU_H */
