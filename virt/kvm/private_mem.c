// SPDX-License-Identifier: GPL-2.0-only
/*
 * Guest private memory: memslots whose private pages come from a memfile,
 * an inaccessible file that KVM uses by pfn through memfile_notifier.
 *
 * See Documentation/virt/kvm/private-memory.rst.
 */

#include <linux/debugfs.h>
#include <linux/fault-inject.h>
#include <linux/file.h>
#include <linux/kvm_host.h>
#include <linux/memfile_notifier.h>

#include "kvm_mm.h"

/* What KVM needs of private pages: no user access, no moves, no swap. */
#define KVM_MEMFILE_FLAGS	(MEMFILE_F_USER_INACCESSIBLE | \
				 MEMFILE_F_UNMOVABLE | \
				 MEMFILE_F_UNRECLAIMABLE)

#ifdef CONFIG_KVM_PRIVATE_MEM_FAULT_INJECTION
static DECLARE_FAULT_ATTR(fail_private_mem_zap);
static DECLARE_FAULT_ATTR(fail_private_mem_block_check);

/**
 * kvm_private_mem_init_debugfs - add the fault injection attributes
 * @dir: KVM's debugfs directory
 *
 * Adds fail_private_mem_zap and fail_private_mem_block_check, with the
 * attributes of Documentation/fault-injection/fault-injection.rst.  Each
 * invalidation of private memory that the first fails leaves the private
 * mappings in place; each check that the second fails lets a shared fault
 * map a huge block that an invalidation in flight is changing.
 */
void kvm_private_mem_init_debugfs(struct dentry *dir)
{
	fault_create_debugfs_attr("fail_private_mem_zap", dir,
				  &fail_private_mem_zap);
	fault_create_debugfs_attr("fail_private_mem_block_check", dir,
				  &fail_private_mem_block_check);
}

/**
 * kvm_private_mem_inject_block_check - fault injection for huge shared faults
 *
 * Called when a shared fault of a private-capable memslot finds an
 * invalidation in flight over the huge block it could map.  Only shared
 * faults ask: their huge mapping reaches the host's memory, which stays
 * valid whatever the memfile does, while a private one left across a
 * changing block could reach pages that the memfile frees.
 *
 * Return: true if the fault should map the block huge all the same.
 */
bool kvm_private_mem_inject_block_check(void)
{
	return should_fail(&fail_private_mem_block_check, 1);
}

/*
 * Fault injection: leave the private mappings of [@start, @end) in place.
 * Take a reference to each page the memfile is about to free, so that the
 * stale mappings point to leaked pages rather than to freed ones.
 */
static bool kvm_private_mem_inject_skip_zap(struct kvm_memory_slot *slot,
					    gfn_t start, gfn_t end)
{
	kvm_pfn_t pfn;
	int order;
	gfn_t gfn;

	if (!should_fail(&fail_private_mem_zap, 1))
		return false;
	for (gfn = start; gfn < end; gfn++)
		kvm_private_mem_get_pfn(slot, gfn, &pfn, &order);
	return true;
}

#ifdef CONFIG_MEMORY_FAILURE
/*
 * Fault injection: a gfn written to the VM's debugfs file
 * private_mem_poison_gfn has its private page poisoned by memory_failure(),
 * as a hardware memory error would, so that tests can see what the guest
 * and userspace get.
 */
static int kvm_private_mem_poison_gfn(void *data, u64 gfn)
{
	struct kvm_memory_slot *slot;
	struct kvm *kvm = data;
	int idx, order, r;
	kvm_pfn_t pfn;

	idx = srcu_read_lock(&kvm->srcu);
	slot = gfn_to_memslot(kvm, gfn);
	r = -EINVAL;
	if (kvm_slot_can_be_private(slot)) {
		r = kvm_private_mem_get_pfn(slot, gfn, &pfn, &order);
		if (!r)
			kvm_private_mem_put_pfn(slot, pfn);
	}
	srcu_read_unlock(&kvm->srcu, idx);
	if (r)
		return r;
	return memory_failure(pfn, MF_SW_SIMULATED);
}
DEFINE_DEBUGFS_ATTRIBUTE(kvm_private_mem_poison_fops, NULL,
			 kvm_private_mem_poison_gfn, "%llu\n");

/**
 * kvm_private_mem_create_debugfs - add the VM's private memory debugfs files
 * @kvm: the VM, whose debugfs directory exists
 */
void kvm_private_mem_create_debugfs(struct kvm *kvm)
{
	debugfs_create_file_unsafe("private_mem_poison_gfn", 0200,
				   kvm->debugfs_dentry, kvm,
				   &kvm_private_mem_poison_fops);
}
#endif
#else
static bool kvm_private_mem_inject_skip_zap(struct kvm_memory_slot *slot,
					    gfn_t start, gfn_t end)
{
	return false;
}
#endif

static struct kvm_memory_slot *notifier_to_slot(struct memfile_notifier *n)
{
	return container_of(n, struct kvm_memory_slot, notifier);
}

/* The page offset in the memfile of the slot's first gfn. */
static pgoff_t slot_pgoff(const struct kvm_memory_slot *slot)
{
	return slot->private_offset >> PAGE_SHIFT;
}

/*
 * The memfile is about to allocate or free pages of the slot: stop faults
 * on the gfns and zap every mapping of them, private and shared, since
 * the gfns change from one to the other.
 */
static void kvm_private_mem_invalidate_begin(struct memfile_notifier *n,
					     pgoff_t start, pgoff_t end)
{
	struct kvm_memory_slot *slot = notifier_to_slot(n);
	struct kvm *kvm = slot->kvm;
	struct kvm_gfn_range range = {
		.slot		= slot,
		.start		= slot->base_gfn + (start - slot_pgoff(slot)),
		.end		= slot->base_gfn + (end - slot_pgoff(slot)),
		.may_block	= true,
	};
	bool skip_zap, flush;
	int idx;

	skip_zap = kvm_private_mem_inject_skip_zap(slot, range.start, range.end);

	idx = srcu_read_lock(&kvm->srcu);
	KVM_MMU_LOCK(kvm);
	kvm_mmu_invalidate_begin(kvm);
	kvm_mmu_invalidate_range_add(kvm, range.start, range.end);
	if (skip_zap)
		flush = kvm_unmap_gfn_range(kvm, &range);
	else
		flush = kvm_arch_unmap_private_range(kvm, &range);
	if (flush)
		kvm_flush_remote_tlbs(kvm);
	KVM_MMU_UNLOCK(kvm);
	srcu_read_unlock(&kvm->srcu, idx);
}

/* The change is complete: faults that raced with it retry. */
static void kvm_private_mem_invalidate_end(struct memfile_notifier *n,
					   pgoff_t start, pgoff_t end)
{
	struct kvm *kvm = notifier_to_slot(n)->kvm;

	KVM_MMU_LOCK(kvm);
	kvm_mmu_invalidate_end(kvm);
	KVM_MMU_UNLOCK(kvm);
}

static const struct memfile_notifier_ops kvm_private_mem_notifier_ops = {
	.owner			= THIS_MODULE,
	.invalidate_begin	= kvm_private_mem_invalidate_begin,
	.invalidate_end		= kvm_private_mem_invalidate_end,
};

/**
 * kvm_private_mem_bind - take the memfile of a memslot being created
 * @kvm: the VM
 * @slot: the new memslot, not yet prepared, with base_gfn and npages set
 * @fd: the memfile, an MFD_INACCESSIBLE memfd opened for writing
 * @offset: byte offset in the memfile of the slot's first gfn
 *
 * Checks @fd and @offset and takes a reference to the file, so that the
 * fd may be closed at any time, but does not register for the file's
 * callbacks: kvm_private_mem_register() does that once the memslot is
 * prepared.  kvm_private_mem_unbind() undoes this if the memslot is not
 * created after all.
 *
 * Return: 0 on success; -EINVAL if @offset is not page-aligned or the
 * range wraps; -EBADF if @fd is not a file open for writing, since the
 * guest writes its private pages.
 */
int kvm_private_mem_bind(struct kvm *kvm, struct kvm_memory_slot *slot,
			 u32 fd, u64 offset)
{
	struct file *file;
	u64 end;

	if (!PAGE_ALIGNED(offset) ||
	    check_add_overflow(offset, (u64)slot->npages << PAGE_SHIFT, &end) ||
	    end > MAX_LFS_FILESIZE)
		return -EINVAL;

	file = fget(fd);
	if (!file)
		return -EBADF;
	if (!(file->f_mode & FMODE_WRITE)) {
		fput(file);
		return -EBADF;
	}

	slot->kvm = kvm;
	slot->private_file = file;
	slot->private_offset = offset;
	return 0;
}

/**
 * kvm_private_mem_unbind - drop the memfile of a memslot
 * @slot: the memslot; nothing happens if it has no memfile
 *
 * For a memslot whose creation failed, and so never registered.
 */
void kvm_private_mem_unbind(struct kvm_memory_slot *slot)
{
	if (!slot->private_file)
		return;
	fput(slot->private_file);
	slot->private_file = NULL;
}

/**
 * kvm_private_mem_register - start the memfile's callbacks for a memslot
 * @slot: a memslot bound to a memfile and prepared by the architecture,
 *	  whose creation can no longer fail
 *
 * From here on, every change of the slot's range of the file zaps the
 * slot's mappings.  The callbacks use the architecture's data of the slot
 * (the shadow MMU's rmaps, for one), so they must never see a memslot
 * that is not prepared yet, or whose preparation failed and was undone.
 * The range of the file may back no other memslot, of this VM or any
 * other.
 *
 * Return: 0 on success; -EINVAL if the range does not lie inside the
 * file; -EOPNOTSUPP if the file is not an inaccessible memfd; -EBUSY if
 * another memslot uses part of the range.
 */
int kvm_private_mem_register(struct kvm_memory_slot *slot)
{
	slot->notifier.ops = &kvm_private_mem_notifier_ops;
	return memfile_register_notifier(slot->private_file, slot_pgoff(slot),
					 slot->npages, KVM_MEMFILE_FLAGS,
					 &slot->notifier);
}

/**
 * kvm_private_mem_unregister - release the memfile of a memslot
 * @slot: a created memslot; nothing happens if it has no memfile
 *
 * Waits for an invalidation of the slot in flight, then drops the file
 * reference, which frees the private pages if it was the last one.
 */
void kvm_private_mem_unregister(struct kvm_memory_slot *slot)
{
	if (!slot->private_file)
		return;
	memfile_unregister_notifier(&slot->notifier);
	kvm_private_mem_unbind(slot);
}

/**
 * kvm_private_mem_unregister_all - release the memfiles of all memslots
 * @kvm: the VM, being destroyed
 */
void kvm_private_mem_unregister_all(struct kvm *kvm)
{
	struct kvm_memory_slot *slot;
	int i, bkt;

	for (i = 0; i < KVM_ADDRESS_SPACE_NUM; i++)
		kvm_for_each_memslot(slot, bkt, __kvm_memslots(kvm, i))
			kvm_private_mem_unregister(slot);
}

/**
 * kvm_private_mem_get_pfn - look up the private page of a gfn
 * @slot: a memslot with KVM_MEM_PRIVATE
 * @gfn: a gfn of @slot
 * @pfn: on success, the pfn of the private page, referenced
 * @order: on success, the order of the folio that holds it
 *
 * Return: 0 if @gfn is private; -ENOENT if it is shared (the memfile has
 * no page for it); another negative errno on failure.
 */
int kvm_private_mem_get_pfn(struct kvm_memory_slot *slot, gfn_t gfn,
			    kvm_pfn_t *pfn, int *order)
{
	unsigned long p;
	int r;

	r = memfile_get_pfn(&slot->notifier,
			    slot_pgoff(slot) + (gfn - slot->base_gfn), &p, order);
	if (!r)
		*pfn = p;
	return r;
}

/**
 * kvm_private_mem_range_is_shared - whether no gfn of a range is private
 * @slot: a memslot with KVM_MEM_PRIVATE
 * @start: the first gfn, in @slot
 * @end: the gfn after the range, at most the end of @slot
 *
 * Takes no lock and no reference, so it may be called under mmu_lock.
 * The answer holds until the next invalidation of the range, which the
 * caller must check for, as for kvm_private_mem_get_pfn().
 *
 * Return: true if the memfile has no page for any gfn of the range.
 */
bool kvm_private_mem_range_is_shared(struct kvm_memory_slot *slot,
				     gfn_t start, gfn_t end)
{
	pgoff_t first = slot_pgoff(slot) + (start - slot->base_gfn);

	return !memfile_range_has_pages(&slot->notifier, first,
					first + (end - start));
}

/**
 * kvm_private_mem_put_pfn - drop the reference kvm_private_mem_get_pfn() took
 * @slot: the memslot
 * @pfn: the pfn
 */
void kvm_private_mem_put_pfn(struct kvm_memory_slot *slot, kvm_pfn_t pfn)
{
	put_page(pfn_to_page(pfn));
}
