// SPDX-License-Identifier: GPL-2.0
/*
 * p2pgpu: /dev/p2pgpuN, the ioctl ABI of uapi/p2pgpu.h and BO mmap.
 *
 * Handles are per file (an xarray of BO references, keyed by the BO's id).
 * Every file of the device shares one address space, that of an inode on a
 * private pseudo filesystem, as DRM does: unmap_mapping_range() on it reaches
 * every CPU mapping of a BO, whichever file or device node made it.
 */
#include <linux/dma-buf.h>
#include <linux/dma-resv.h>
#include <linux/fs.h>
#include <linux/miscdevice.h>
#include <linux/module.h>
#include <linux/mount.h>
#include <linux/pseudo_fs.h>
#include <linux/slab.h>
#include <linux/uaccess.h>
#include <linux/wait_bit.h>

#include "p2pgpu_drv.h"

#define P2PGPU_FS_MAGIC 0x50324750	/* "P2GP" */

struct p2pgpu_file {
	struct p2pgpu_dev *gpu;
	struct xarray bos;		/* handle -> BO reference */
	struct xarray imports;		/* dma-buf -> test importer attachment */
	struct mutex import_lock;	/* one IMPORT at a time per file */
};

static struct vfsmount *p2pgpu_mnt;

static int p2pgpu_fs_init_fs_context(struct fs_context *fc)
{
	return init_pseudo(fc, P2PGPU_FS_MAGIC) ? 0 : -ENOMEM;
}

/*
 * No .owner: the only mount is our own, from init to exit, and a module
 * reference from it would keep the module loaded forever.
 */
static struct file_system_type p2pgpu_fs_type = {
	.name = "p2pgpu",
	.init_fs_context = p2pgpu_fs_init_fs_context,
	.kill_sb = kill_anon_super,
};

int p2pgpu_fs_init(void)
{
	p2pgpu_mnt = kern_mount(&p2pgpu_fs_type);
	return PTR_ERR_OR_ZERO(p2pgpu_mnt);
}

void p2pgpu_fs_fini(void)
{
	kern_unmount(p2pgpu_mnt);
}

static int p2pgpu_open(struct inode *inode, struct file *file)
{
	struct p2pgpu_dev *gpu = container_of(file->private_data,
					      struct p2pgpu_dev, misc);
	struct p2pgpu_file *f;

	if (gpu->dead)
		return -ENODEV;
	f = kzalloc(sizeof(*f), GFP_KERNEL);
	if (!f)
		return -ENOMEM;
	f->gpu = gpu;
	xa_init(&f->bos);
	xa_init(&f->imports);
	mutex_init(&f->import_lock);
	atomic_inc(&gpu->users);
	file->private_data = f;
	file->f_mapping = gpu->inode->i_mapping;
	return 0;
}

static int p2pgpu_release(struct inode *inode, struct file *file)
{
	struct p2pgpu_file *f = file->private_data;
	struct p2pgpu_dev *gpu = f->gpu;
	struct p2pgpu_bo *bo;
	unsigned long id;

	p2pgpu_dmabuf_imports_release(&f->imports);
	xa_for_each(&f->bos, id, bo)
		p2pgpu_bo_put(bo);
	xa_destroy(&f->bos);
	mutex_destroy(&f->import_lock);
	kfree(f);
	p2pgpu_user_put(gpu);
	return 0;
}

/*
 * The last user's release may let remove() free @gpu at once: wake through
 * the variable's hashed waitqueue, which is not in @gpu.
 */
void p2pgpu_user_put(struct p2pgpu_dev *gpu)
{
	if (atomic_dec_and_test(&gpu->users))
		wake_up_var(&gpu->users);
}

/* A reference to the BO behind @handle in this file, or NULL. */
static struct p2pgpu_bo *p2pgpu_file_bo(struct p2pgpu_file *f, u32 handle)
{
	struct p2pgpu_bo *bo;

	xa_lock(&f->bos);
	bo = xa_load(&f->bos, handle);
	if (bo)
		kref_get(&bo->ref);
	xa_unlock(&f->bos);
	return bo;
}

static long p2pgpu_ioc_info(struct p2pgpu_dev *gpu, void __user *uarg)
{
	struct p2pgpu_info info = {
		.vram_size = gpu->vram_size,
		.bar_size = gpu->bar_size,
		.bar_size_initial = gpu->bar_size_initial,
		.granule = 1ull << gpu->granule_shift,
		.p2pmem_size = gpu->p2pmem_size,
		.hmm_size = gpu->hmm_size,
		.bo_vram_size = gpu->bo_size,
		.aperture_mode = gpu->mode,
		.slots = gpu->nslots,
		.dynamic_slots = gpu->nslots - gpu->first_dyn_slot,
		.resize_status = gpu->resize_status,
	};

	return copy_to_user(uarg, &info, sizeof(info)) ? -EFAULT : 0;
}

static long p2pgpu_ioc_alloc(struct p2pgpu_file *f, void __user *uarg)
{
	struct p2pgpu_alloc args;
	struct p2pgpu_bo *bo;
	int ret;

	if (copy_from_user(&args, uarg, sizeof(args)))
		return -EFAULT;
	if (args.flags)
		return -EINVAL;
	bo = p2pgpu_bo_create(f->gpu, args.size);
	if (IS_ERR(bo))
		return PTR_ERR(bo);
	ret = xa_insert(&f->bos, bo->id, bo, GFP_KERNEL);
	if (ret) {
		p2pgpu_bo_put(bo);
		return ret;
	}
	args.size = bo->size;
	args.handle = bo->id;
	args.mmap_offset = p2pgpu_bo_mmap_offset(bo);
	if (copy_to_user(uarg, &args, sizeof(args))) {
		/* A racing FREE of the handle may have dropped it already. */
		bo = xa_erase(&f->bos, bo->id);
		if (bo)
			p2pgpu_bo_put(bo);
		return -EFAULT;
	}
	return 0;
}

static long p2pgpu_ioc_free(struct p2pgpu_file *f, void __user *uarg)
{
	struct p2pgpu_handle args;
	struct p2pgpu_bo *bo;

	if (copy_from_user(&args, uarg, sizeof(args)))
		return -EFAULT;
	if (args.pad)
		return -EINVAL;
	bo = xa_erase(&f->bos, args.handle);
	if (!bo)
		return -ENOENT;
	p2pgpu_bo_put(bo);
	return 0;
}

static long p2pgpu_ioc_copy(struct p2pgpu_file *f, void __user *uarg)
{
	struct p2pgpu_copy args;
	struct p2pgpu_bo *bo;
	long ret;

	if (copy_from_user(&args, uarg, sizeof(args)))
		return -EFAULT;
	if (args.pad)
		return -EINVAL;
	bo = p2pgpu_file_bo(f, args.handle);
	if (!bo)
		return -ENOENT;
	args.dev_status = 0;
	ret = p2pgpu_copy_user(f->gpu, bo, &args);
	p2pgpu_bo_put(bo);
	/* The device's status goes out with the errno. */
	if (copy_to_user(uarg, &args, sizeof(args)))
		return -EFAULT;
	return ret;
}

static long p2pgpu_ioc_evict(struct p2pgpu_file *f, void __user *uarg)
{
	struct p2pgpu_evict args;
	struct p2pgpu_bo *bo;
	u32 dev_status = 0;
	long ret;

	if (copy_from_user(&args, uarg, sizeof(args)))
		return -EFAULT;
	if (args.pad || (args.op != P2PGPU_EVICT_APERTURE && args.op != P2PGPU_EVICT_MOVE))
		return -EINVAL;
	bo = p2pgpu_file_bo(f, args.handle);
	if (!bo)
		return -ENOENT;
	/* move_notify needs the reservation lock, which ranks above mm_lock. */
	dma_resv_lock(&bo->resv, NULL);
	args.windows = 0;
	if (args.op == P2PGPU_EVICT_APERTURE)
		ret = p2pgpu_bo_evict_aperture(bo, &args.windows);
	else
		ret = p2pgpu_bo_move(bo, &dev_status);
	dma_resv_unlock(&bo->resv);
	args.vram_offset = bo->vram_off;
	p2pgpu_bo_put(bo);
	if (copy_to_user(uarg, &args, sizeof(args)))
		return -EFAULT;
	return ret;
}

static long p2pgpu_ioc_export(struct p2pgpu_file *f, void __user *uarg)
{
	struct p2pgpu_export args;
	struct p2pgpu_bo *bo;
	int fd;

	if (copy_from_user(&args, uarg, sizeof(args)))
		return -EFAULT;
	if (args.pad || (args.flags & ~(O_CLOEXEC | O_RDWR)))
		return -EINVAL;
	bo = p2pgpu_file_bo(f, args.handle);
	if (!bo)
		return -ENOENT;
	fd = p2pgpu_dmabuf_export(bo, args.flags);
	p2pgpu_bo_put(bo);
	if (fd < 0)
		return fd;
	args.fd = fd;
	/* The fd is installed: a fault here leaves it to the process. */
	return copy_to_user(uarg, &args, sizeof(args)) ? -EFAULT : 0;
}

static long p2pgpu_ioc_import(struct p2pgpu_file *f, void __user *uarg)
{
	struct p2pgpu_import args;
	struct p2pgpu_bo *bo;
	long ret;

	if (copy_from_user(&args, uarg, sizeof(args)))
		return -EFAULT;
	if (args.pad || (args.flags & ~P2PGPU_IMPORT_PINNED))
		return -EINVAL;
	bo = p2pgpu_file_bo(f, args.handle);
	if (!bo)
		return -ENOENT;
	args.dev_status = 0;
	mutex_lock(&f->import_lock);
	ret = p2pgpu_dmabuf_import(f->gpu, &f->imports, bo, &args);
	mutex_unlock(&f->import_lock);
	p2pgpu_bo_put(bo);
	if (copy_to_user(uarg, &args, sizeof(args)))
		return -EFAULT;
	return ret;
}

static long p2pgpu_ioc_migrate(struct p2pgpu_file *f, void __user *uarg, bool to_dev)
{
	struct p2pgpu_migrate args;
	long ret;

	if (copy_from_user(&args, uarg, sizeof(args)))
		return -EFAULT;
	if (args.pad)
		return -EINVAL;
	args.migrated = 0;
	args.dev_status = 0;
	ret = p2pgpu_migrate(f->gpu, &args, to_dev);
	if (copy_to_user(uarg, &args, sizeof(args)))
		return -EFAULT;
	return ret;
}

static long p2pgpu_ioctl(struct file *file, unsigned int cmd, unsigned long arg)
{
	struct p2pgpu_file *f = file->private_data;
	void __user *uarg = (void __user *)arg;

	if (f->gpu->dead)
		return -ENODEV;
	switch (cmd) {
	case P2PGPU_IOC_INFO:
		return p2pgpu_ioc_info(f->gpu, uarg);
	case P2PGPU_IOC_ALLOC:
		return p2pgpu_ioc_alloc(f, uarg);
	case P2PGPU_IOC_FREE:
		return p2pgpu_ioc_free(f, uarg);
	case P2PGPU_IOC_COPY:
		return p2pgpu_ioc_copy(f, uarg);
	case P2PGPU_IOC_EVICT:
		return p2pgpu_ioc_evict(f, uarg);
	case P2PGPU_IOC_EXPORT:
		return p2pgpu_ioc_export(f, uarg);
	case P2PGPU_IOC_IMPORT:
		return p2pgpu_ioc_import(f, uarg);
	case P2PGPU_IOC_MIGRATE_TO_DEV:
		return p2pgpu_ioc_migrate(f, uarg, true);
	case P2PGPU_IOC_MIGRATE_TO_SYS:
		return p2pgpu_ioc_migrate(f, uarg, false);
	default:
		return -ENOTTY;
	}
}

static int p2pgpu_mmap(struct file *file, struct vm_area_struct *vma)
{
	struct p2pgpu_file *f = file->private_data;
	struct p2pgpu_bo *bo;
	int ret;

	if (f->gpu->dead)
		return -ENODEV;
	/* Only BOs this file holds a handle to, referenced through that handle. */
	bo = p2pgpu_file_bo(f, p2pgpu_bo_mmap_id(vma->vm_pgoff));
	if (!bo)
		return -ENOENT;
	ret = p2pgpu_bo_mmap(bo, vma);
	if (ret)
		p2pgpu_bo_put(bo);
	return ret;
}

static const struct file_operations p2pgpu_fops = {
	.owner = THIS_MODULE,
	.open = p2pgpu_open,
	.release = p2pgpu_release,
	.unlocked_ioctl = p2pgpu_ioctl,
	.compat_ioctl = compat_ptr_ioctl,
	.mmap = p2pgpu_mmap,
};

int p2pgpu_cdev_init(struct p2pgpu_dev *gpu)
{
	int ret;

	gpu->inode = alloc_anon_inode(p2pgpu_mnt->mnt_sb);
	if (IS_ERR(gpu->inode))
		return PTR_ERR(gpu->inode);
	gpu->misc.minor = MISC_DYNAMIC_MINOR;
	gpu->misc.name = gpu->name;
	gpu->misc.fops = &p2pgpu_fops;
	gpu->misc.parent = &gpu->pdev->dev;
	ret = misc_register(&gpu->misc);
	if (ret) {
		iput(gpu->inode);
		gpu->inode = NULL;
	}
	return ret;
}

/*
 * After misc_deregister() no open is in flight (misc_open runs under the
 * misc lock), so the users count only falls.  Like vfio-pci, unbinding a
 * device that is in use waits for its users to let go.
 */
void p2pgpu_cdev_fini(struct p2pgpu_dev *gpu)
{
	misc_deregister(&gpu->misc);
	while (!wait_var_event_timeout(&gpu->users, !atomic_read(&gpu->users), 10 * HZ))
		dev_info(&gpu->pdev->dev, "remove waits for %d users of %s\n",
			 atomic_read(&gpu->users), gpu->name);
	iput(gpu->inode);
	gpu->inode = NULL;
}
