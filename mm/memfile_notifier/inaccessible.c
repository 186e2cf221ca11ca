// SPDX-License-Identifier: GPL-2.0
/*
 * Inaccessible memfds: memfd_create(MFD_INACCESSIBLE).
 *
 * A file type of its own, whose operations let userspace size the file
 * once, allocate and punch its pages with fallocate(), seal it and ask
 * which pages it holds, and nothing else: no read, write, splice or mmap.
 * In-kernel consumers use the pages by pfn through memfile_notifier.
 *
 * The pages live in the page cache of the file's own inode, as
 * secretmem's do, and no other file, path or mapping refers to them.  The
 * store allocates, zeroes and frees them itself, with the generic
 * page-cache helpers, rather than through a tmpfs file: shmem's page
 * path pays for swap, memory policies, huge-page choices and block
 * accounting that these pages never use, and whatever shmem is told to do
 * for tmpfs (shmem_enabled) would reach them.  Around the page cache the
 * store keeps what is particular to inaccessible memory: the size and
 * fallocate rules, the memlock charge, the zeroing at allocation, the
 * mapping flags that keep the pages unreclaimable and unmovable, and the
 * notifications to consumers.
 *
 * A file made with MFD_INACCESSIBLE_HUGE also holds PMD-sized folios, but
 * only where one allocation covers a whole aligned PMD-sized hole, so that
 * which pages the file holds is still exact to the page: allocating one
 * page never allocates its neighbours.  A punch that cuts into such a
 * folio splits it first, and fails, changing nothing, if it cannot.
 *
 * See Documentation/mm/memfile_notifier.rst.
 */

#include <linux/blk_types.h>
#include <linux/cred.h>
#include <linux/debugfs.h>
#include <linux/falloc.h>
#include <linux/fault-inject.h>
#include <linux/fcntl.h>
#include <linux/file.h>
#include <linux/fs.h>
#include <linux/highmem.h>
#include <linux/huge_mm.h>
#include <linux/magic.h>
#include <linux/memfile_notifier.h>
#include <linux/mount.h>
#include <linux/pagemap.h>
#include <linux/pseudo_fs.h>
#include <linux/sched/signal.h>
#include <linux/shmem_fs.h>
#include <linux/slab.h>
#include <linux/user_namespace.h>
#include <uapi/linux/memfd.h>

#include "internal.h"

/*
 * struct inaccessible_file - the state of an inaccessible file
 * @inode: the file's inode, on the store's pseudo filesystem
 * @ucounts: the user charged for the pages the file holds (RLIMIT_MEMLOCK)
 * @seals: F_SEAL_* seals of the file
 * @huge: allocations may use PMD-sized folios (MFD_INACCESSIBLE_HUGE)
 * @node: the consumers of the file
 *
 * Hangs off the inode's i_private and lives as long as the inode, so it
 * is shared by every struct file of the inode (a reopen through /proc).
 * The size and @seals change, and pages come and go, under the inode's
 * i_rwsem.
 */
struct inaccessible_file {
	struct inode *inode;
	struct ucounts *ucounts;
	unsigned int seals;
	bool huge;
	struct memfile_node node;
};

/* Where the files live. */
static struct vfsmount *inaccessible_mnt;

static const struct file_operations inaccessible_fops;
static const struct address_space_operations inaccessible_aops;

static struct inaccessible_file *inaccessible_of(struct file *file)
{
	if (file->f_op != &inaccessible_fops)
		return NULL;
	return file_inode(file)->i_private;
}

/*
 * Charge @pages to the locked memory of the file's creator, as SHM_LOCK
 * charges its segments: the pages stay in memory whether or not anything
 * maps them.  CAP_IPC_LOCK lifts the limit.
 */
static bool inaccessible_charge(struct inaccessible_file *f, long pages)
{
	unsigned long limit = rlimit(RLIMIT_MEMLOCK);
	long locked;

	if (limit != RLIM_INFINITY)
		limit >>= PAGE_SHIFT;
	locked = inc_rlimit_ucounts(f->ucounts, UCOUNT_RLIMIT_MEMLOCK, pages);
	if ((locked == LONG_MAX || locked > limit) && !capable(CAP_IPC_LOCK)) {
		dec_rlimit_ucounts(f->ucounts, UCOUNT_RLIMIT_MEMLOCK, pages);
		return false;
	}
	return true;
}

static void inaccessible_uncharge(struct inaccessible_file *f, long pages)
{
	dec_rlimit_ucounts(f->ucounts, UCOUNT_RLIMIT_MEMLOCK, pages);
}

/* The pages [@start, @end) of @mapping holds. */
static unsigned long inaccessible_nr_pages(struct address_space *mapping,
					   pgoff_t start, pgoff_t end)
{
	XA_STATE(xas, &mapping->i_pages, start);
	unsigned long nr = 0;
	struct folio *folio;

	rcu_read_lock();
	xas_for_each(&xas, folio, end - 1) {
		if (xas_retry(&xas, folio) || xa_is_value(folio))
			continue;
		nr += min(end, folio->index + folio_nr_pages(folio)) -
		      max(start, folio->index);
	}
	rcu_read_unlock();
	return nr;
}

/* Whether @mapping holds a page in [@start, @end); needs no lock. */
static bool inaccessible_any_page(struct address_space *mapping,
				  pgoff_t start, pgoff_t end)
{
	pgoff_t index = start;

	return !!xa_find(&mapping->i_pages, &index, end - 1, XA_PRESENT);
}

/* Free the pages [@start, @end) of @mapping. */
static void inaccessible_truncate(struct address_space *mapping,
				  pgoff_t start, pgoff_t end)
{
	truncate_inode_pages_range(mapping, (loff_t)start << PAGE_SHIFT,
				   ((loff_t)end << PAGE_SHIFT) - 1);
}

/*
 * Add a zeroed folio of @order at @index of @mapping, where the caller
 * found a hole of that size.  The folio is zeroed before it is in the
 * page cache, so no lookup ever finds it unwritten, and that is the one
 * time it is written before a consumer gets it.  It is dirty from then on,
 * so that nothing drops it as a clean page-cache page; the inode's address
 * space operations set the flag and nothing else, so no writeback ever
 * looks at it.  A huge folio is an opportunity, not a need: it is
 * allocated without retrying or warning, and the caller falls back to
 * single pages.
 *
 * Return: the number of pages added, or -ENOMEM.
 */
static long inaccessible_add_folio(struct address_space *mapping,
				   pgoff_t index, unsigned int order)
{
	gfp_t gfp = mapping_gfp_mask(mapping);
	struct folio *folio;
	long i, nr;
	int ret;

	folio = filemap_alloc_folio(order ? gfp | __GFP_NORETRY | __GFP_NOWARN :
					    gfp, order);
	if (!folio)
		return -ENOMEM;
	nr = folio_nr_pages(folio);
	for (i = 0; i < nr; i++)
		clear_highpage(folio_page(folio, i));
	__folio_mark_uptodate(folio);
	ret = filemap_add_folio(mapping, folio, index, gfp);
	if (ret) {
		folio_put(folio);
		return ret;
	}
	folio_mark_dirty(folio);
	folio_unlock(folio);
	folio_put(folio);
	return nr;
}

static bool inaccessible_huge_supported(void)
{
#ifdef CONFIG_TRANSPARENT_HUGEPAGE
	/*
	 * The page cache splits a folio's xarray entry across two levels of
	 * nodes at most (xas_split_alloc()).  CONFIG_BASE_SMALL's nodes are
	 * too small for that: a punch could never split a huge folio.
	 */
	if (HPAGE_PMD_ORDER > 2 * XA_CHUNK_SHIFT)
		return false;
	return has_transparent_hugepage();
#else
	return false;
#endif
}

/*
 * The order of the folio to allocate at @index, for an allocation that
 * ends at @end: PMD order if the file asks for huge pages and the
 * allocation covers a whole aligned PMD-sized hole there, 0 otherwise.
 */
static unsigned int inaccessible_order(struct inaccessible_file *f,
				       pgoff_t index, pgoff_t end)
{
#ifdef CONFIG_TRANSPARENT_HUGEPAGE
	if (f->huge && !shmem_huge_denied() &&
	    IS_ALIGNED(index, HPAGE_PMD_NR) && end - index >= HPAGE_PMD_NR &&
	    !inaccessible_any_page(f->inode->i_mapping, index,
				   index + HPAGE_PMD_NR))
		return HPAGE_PMD_ORDER;
#endif
	return 0;
}

/*
 * The runs of pages that one allocation added, to take them back if it
 * fails part way.  Ranges that are holes throughout need one run only;
 * each allocated page inside a range splits it.
 */
struct inaccessible_runs {
	unsigned int nr;
	unsigned int max;
	struct inaccessible_run {
		pgoff_t start;
		pgoff_t end;
	} *run, inline_run[4];
};

static int inaccessible_runs_add(struct inaccessible_runs *r, pgoff_t index,
				 long nr)
{
	struct inaccessible_run *run;

	if (r->nr && r->run[r->nr - 1].end == index) {
		r->run[r->nr - 1].end += nr;
		return 0;
	}
	if (r->nr == r->max) {
		run = kmalloc_array(2 * r->max, sizeof(*run), GFP_KERNEL);
		if (!run)
			return -ENOMEM;
		memcpy(run, r->run, r->nr * sizeof(*run));
		if (r->run != r->inline_run)
			kfree(r->run);
		r->run = run;
		r->max *= 2;
	}
	r->run[r->nr].start = index;
	r->run[r->nr].end = index + nr;
	r->nr++;
	return 0;
}

#ifdef CONFIG_MEMFILE_NOTIFIER_FAULT_INJECTION
static u32 inaccessible_change_delay_ms;

/*
 * Hold a change of the file open, inside its invalidation, for as long as
 * change_delay_ms says, so that tests can make consumers meet an
 * invalidation in flight.  A fatal signal ends the wait.
 */
static void inaccessible_change_delay(void)
{
	u32 ms = READ_ONCE(inaccessible_change_delay_ms);

	if (ms)
		schedule_timeout_killable(msecs_to_jiffies(ms));
}
#else
static inline void inaccessible_change_delay(void)
{
}
#endif

/*
 * Allocate the holes of [@start, @end), charged in advance so that a
 * failed charge changes nothing, and taken back if allocation fails part
 * way, so that a failure leaves the file and the charge as they were.
 */
static long inaccessible_allocate(struct inaccessible_file *f, pgoff_t start,
				  pgoff_t end)
{
	struct address_space *mapping = f->inode->i_mapping;
	struct inaccessible_runs r = { .max = ARRAY_SIZE(r.inline_run) };
	unsigned int i, order;
	unsigned long holes;
	pgoff_t index;
	long ret = 0, nr;

	holes = end - start - inaccessible_nr_pages(mapping, start, end);
	if (!holes)
		return 0;
	if (!inaccessible_charge(f, holes))
		return -ENOMEM;

	r.run = r.inline_run;
	memfile_notifier_invalidate_begin(&f->node, start, end);
	inaccessible_change_delay();
	for (index = start; index < end; index += nr) {
		/* Only the caller, under i_rwsem, adds or removes pages. */
		nr = 1;
		if (xa_load(&mapping->i_pages, index))
			continue;
		order = inaccessible_order(f, index, end);
		nr = -ENOMEM;
		if (order)
			nr = inaccessible_add_folio(mapping, index, order);
		if (nr == -ENOMEM)
			nr = inaccessible_add_folio(mapping, index, 0);
		if (nr < 0) {
			ret = nr;
			break;
		}
		ret = inaccessible_runs_add(&r, index, nr);
		if (ret) {
			inaccessible_truncate(mapping, index, index + nr);
			break;
		}
		if (fatal_signal_pending(current)) {
			ret = -EINTR;
			break;
		}
		cond_resched();
	}
	for (i = 0; ret && i < r.nr; i++)
		inaccessible_truncate(mapping, r.run[i].start, r.run[i].end);
	memfile_notifier_invalidate_end(&f->node, start, end);
	if (r.run != r.inline_run)
		kfree(r.run);
	if (ret)
		inaccessible_uncharge(f, holes);
	return ret;
}

#ifdef CONFIG_MEMFILE_NOTIFIER_FAULT_INJECTION
static DECLARE_FAULT_ATTR(fail_inaccessible_split);

void inaccessible_init_debugfs(struct dentry *dir)
{
	fault_create_debugfs_attr("fail_inaccessible_split", dir,
				  &fail_inaccessible_split);
	debugfs_create_u32("change_delay_ms", 0600, dir,
			   &inaccessible_change_delay_ms);
}

static bool inaccessible_split_should_fail(void)
{
	return should_fail(&fail_inaccessible_split, 1);
}
#else
static inline bool inaccessible_split_should_fail(void)
{
	return false;
}
#endif

/* How long a punch waits for the references that keep a folio whole. */
#define INACCESSIBLE_SPLIT_WAIT	(HZ / 5)

/*
 * Split @folio, which the caller holds a reference to.  Only references
 * besides the page cache's and the caller's stop a split, and the store
 * hands out none that last: a consumer looks a page up and drops it again
 * once it has mapped it, or once the invalidation that the caller is in
 * has made its lookup stale.  So wait a little for such references to go.
 *
 * Return: 0, -EBUSY if the folio kept other references, -EINTR if a
 * fatal signal came, or -ENOMEM.
 */
static int inaccessible_split(struct folio *folio)
{
	unsigned long deadline = jiffies + INACCESSIBLE_SPLIT_WAIT;
	int ret;

	/* As if a reference stayed for good. */
	if (inaccessible_split_should_fail())
		return -EBUSY;
	for (;;) {
		folio_lock(folio);
		ret = split_folio(folio);
		folio_unlock(folio);
		if (ret != -EAGAIN)
			return ret;
		if (time_after(jiffies, deadline))
			return -EBUSY;
		if (fatal_signal_pending(current))
			return -EINTR;
		schedule_timeout_killable(1);
	}
}

/*
 * Split the folio of @mapping that holds page @index if it starts before
 * it, so that no folio spans the boundary between @index - 1 and @index.
 * The page cache cannot be left to split the folio while it truncates: if
 * that split fails, truncation zeroes the range and keeps the whole folio,
 * and the punch would seem to succeed.
 *
 * Return: 0 or an error of inaccessible_split().
 */
static int inaccessible_split_at(struct address_space *mapping, pgoff_t index)
{
	struct folio *folio;
	int ret = 0;

	folio = filemap_get_folio(mapping, index);
	if (!folio)
		return 0;
	if (folio->index != index)
		ret = inaccessible_split(folio);
	folio_put(folio);
	return ret;
}

static int inaccessible_punch(struct inaccessible_file *f, pgoff_t start,
			      pgoff_t end)
{
	struct address_space *mapping = f->inode->i_mapping;
	unsigned long before = mapping->nrpages;
	int ret;

	/*
	 * Only whole folios go, or nothing does.  The splits come inside the
	 * invalidation, so that a consumer that maps whole folios, and widens
	 * the range it invalidates to them, never sees a folio split behind
	 * its back.  A failed split leaves the pages where they were; the
	 * consumers only look them up again.
	 */
	memfile_notifier_invalidate_begin(&f->node, start, end);
	inaccessible_change_delay();
	ret = inaccessible_split_at(mapping, start);
	if (!ret)
		ret = inaccessible_split_at(mapping, end);
	if (!ret)
		inaccessible_truncate(mapping, start, end);
	memfile_notifier_invalidate_end(&f->node, start, end);
	inaccessible_uncharge(f, before - mapping->nrpages);
	return ret;
}

/*
 * Only allocation and punching (with FALLOC_FL_KEEP_SIZE), by whole
 * pages, inside the size.  Write seals freeze which pages are allocated.
 */
static long inaccessible_fallocate(struct file *file, int mode, loff_t offset,
				   loff_t len)
{
	struct inode *inode = file_inode(file);
	struct inaccessible_file *f = inode->i_private;
	pgoff_t start = offset >> PAGE_SHIFT;
	pgoff_t end = (offset + len) >> PAGE_SHIFT;
	long ret;

	if (mode & ~(FALLOC_FL_KEEP_SIZE | FALLOC_FL_PUNCH_HOLE))
		return -EOPNOTSUPP;

	inode_lock(inode);
	ret = -EINVAL;
	if (!PAGE_ALIGNED(offset) || !PAGE_ALIGNED(len) ||
	    offset + len > i_size_read(inode))
		goto out;
	ret = -EPERM;
	if (f->seals & (F_SEAL_WRITE | F_SEAL_FUTURE_WRITE))
		goto out;

	if (mode & FALLOC_FL_PUNCH_HOLE)
		ret = inaccessible_punch(f, start, end);
	else
		ret = inaccessible_allocate(f, start, end);
	if (!ret)
		ret = file_modified(file);
out:
	inode_unlock(inode);
	return ret;
}

/* SEEK_DATA and SEEK_HOLE tell which pages the file holds. */
static loff_t inaccessible_llseek(struct file *file, loff_t offset, int whence)
{
	struct inode *inode = file_inode(file);
	loff_t size;

	if (whence != SEEK_DATA && whence != SEEK_HOLE)
		return generic_file_llseek_size(file, offset, whence,
						MAX_LFS_FILESIZE,
						i_size_read(inode));
	if (offset < 0)
		return -ENXIO;

	inode_lock(inode);
	size = i_size_read(inode);
	if (offset >= size)
		offset = -ENXIO;
	else
		offset = mapping_seek_hole_data(inode->i_mapping, offset, size,
						whence);
	if (offset >= 0)
		offset = vfs_setpos(file, offset, MAX_LFS_FILESIZE);
	inode_unlock(inode);
	return offset;
}

static const struct file_operations inaccessible_fops = {
	.llseek		= inaccessible_llseek,
	.fsync		= noop_fsync,
	.fallocate	= inaccessible_fallocate,
};

static int inaccessible_setattr(struct user_namespace *mnt_userns,
				struct dentry *dentry, struct iattr *attr)
{
	struct inode *inode = d_inode(dentry);
	struct inaccessible_file *f = inode->i_private;
	loff_t size = attr->ia_size;
	int ret;

	ret = setattr_prepare(mnt_userns, dentry, attr);
	if (ret)
		return ret;

	/*
	 * The size is set once, from 0, to whole pages: a file that never
	 * shrinks never truncates pages behind its consumers.
	 */
	if ((attr->ia_valid & ATTR_SIZE) && size != i_size_read(inode)) {
		if (i_size_read(inode) || (f->seals & F_SEAL_GROW))
			return -EPERM;
		if (!PAGE_ALIGNED(size))
			return -EINVAL;
		i_size_write(inode, size);
	}
	setattr_copy(mnt_userns, inode, attr);
	return 0;
}

/* st_blocks counts the pages the file holds. */
static int inaccessible_getattr(struct user_namespace *mnt_userns,
				const struct path *path, struct kstat *stat,
				u32 request_mask, unsigned int query_flags)
{
	struct inode *inode = d_inode(path->dentry);

	generic_fillattr(mnt_userns, inode, stat);
	stat->blocks = (u64)READ_ONCE(inode->i_mapping->nrpages) <<
		       (PAGE_SHIFT - SECTOR_SHIFT);
	return 0;
}

static const struct inode_operations inaccessible_iops = {
	.getattr	= inaccessible_getattr,
	.setattr	= inaccessible_setattr,
};

/**
 * inaccessible_file_create - create an inaccessible file
 * @name: name for the file's dentry
 * @size: page-aligned size of the file, or 0 to let ftruncate() set it once
 * @flags: MFD_INACCESSIBLE_HUGE to back whole aligned 2 MiB allocations
 *	with huge pages, or 0
 *
 * The pages of the file, once fallocate() allocates them, are charged to
 * the RLIMIT_MEMLOCK of the calling task's user.  See
 * Documentation/mm/memfile_notifier.rst for what the file allows.
 *
 * Return: the file, opened read-write, or an ERR_PTR(): -EINVAL if @size
 * is not page-aligned or too large, if @flags has unknown bits or asks
 * for huge pages that the kernel or the CPU lacks, or if the store failed
 * to mount its filesystem at boot (and said so in the kernel log),
 * -ENOMEM if memory ran out.
 */
struct file *inaccessible_file_create(const char *name, loff_t size,
				      unsigned int flags)
{
	struct address_space *mapping;
	struct inaccessible_file *f;
	struct inode *inode;
	struct file *file;

	if (!PAGE_ALIGNED(size) || size < 0 || size > MAX_LFS_FILESIZE)
		return ERR_PTR(-EINVAL);
	if (flags & ~MFD_INACCESSIBLE_HUGE)
		return ERR_PTR(-EINVAL);
	if ((flags & MFD_INACCESSIBLE_HUGE) && !inaccessible_huge_supported())
		return ERR_PTR(-EINVAL);

	/* The store did not come up at boot. */
	if (!inaccessible_mnt)
		return ERR_PTR(-EINVAL);

	f = kzalloc(sizeof(*f), GFP_KERNEL);
	if (!f)
		return ERR_PTR(-ENOMEM);
	f->ucounts = get_ucounts(current_ucounts());
	if (!f->ucounts) {
		kfree(f);
		return ERR_PTR(-ENOMEM);
	}
	f->seals = F_SEAL_SEAL;
	f->huge = flags & MFD_INACCESSIBLE_HUGE;
	memfile_node_init(&f->node, MEMFILE_F_USER_INACCESSIBLE |
			  MEMFILE_F_UNMOVABLE | MEMFILE_F_UNRECLAIMABLE);

	inode = alloc_anon_inode(inaccessible_mnt->mnt_sb);
	if (IS_ERR(inode)) {
		put_ucounts(f->ucounts);
		kfree(f);
		return ERR_CAST(inode);
	}
	/* From here on, the inode's eviction frees @f. */
	f->inode = inode;
	inode->i_private = f;
	inode->i_mode |= S_IFREG;
	inode->i_op = &inaccessible_iops;
	inode->i_fop = &inaccessible_fops;
	i_size_write(inode, size);

	mapping = inode->i_mapping;
	mapping->a_ops = &inaccessible_aops;
	/* Reclaim never scans the pages: they stay in memory. */
	mapping_set_unevictable(mapping);
	if (flags & MFD_INACCESSIBLE_HUGE)
		mapping_set_large_folios(mapping);
	/*
	 * Nothing migrates them either.  Take them from unmovable
	 * pageblocks, so they never land in ZONE_MOVABLE or CMA, whose
	 * pages must stay movable.
	 */
	mapping_set_unmovable(mapping);
	mapping_set_gfp_mask(mapping, mapping_gfp_mask(mapping) & ~__GFP_MOVABLE);

	file = alloc_file_pseudo(inode, inaccessible_mnt, name, O_RDWR,
				 &inaccessible_fops);
	if (IS_ERR(file))
		iput(inode);
	return file;
}
EXPORT_SYMBOL_GPL(inaccessible_file_create);

/**
 * inaccessible_file_seals - the seals of an inaccessible file
 * @file: any file
 *
 * Return: a pointer to the F_SEAL_* seals of @file, for memfd_fcntl(), or
 * NULL if @file is not an inaccessible file.
 */
unsigned int *inaccessible_file_seals(struct file *file)
{
	struct inaccessible_file *f = inaccessible_of(file);

	return f ? &f->seals : NULL;
}

struct memfile_node *inaccessible_file_node(struct file *file)
{
	struct inaccessible_file *f = inaccessible_of(file);

	return f ? &f->node : NULL;
}

/*
 * Take a reference to the page at @offset and return its pfn.  A hole
 * fails: a consumer that looks up a range being allocated is inside an
 * invalidation bracket and retries.
 */
int inaccessible_get_pfn(struct file *file, pgoff_t offset, unsigned long *pfn,
			 int *order)
{
	struct folio *folio;
	struct page *page;

	folio = filemap_get_folio(file->f_mapping, offset);
	if (!folio)
		return -ENOENT;
	page = folio_file_page(folio, offset);
	/* A poisoned page stays in the file, but is no one's to use. */
	if (PageHWPoison(page)) {
		folio_put(folio);
		return -EHWPOISON;
	}
	*pfn = page_to_pfn(page);
	*order = folio_order(folio);
	return 0;
}

bool inaccessible_has_pages(struct file *file, pgoff_t start, pgoff_t end)
{
	return inaccessible_any_page(file->f_mapping, start, end);
}

/* Telling the consumers of an inaccessible file about a poisoned page. */
struct inaccessible_poison_work {
	struct work_struct work;
	struct inaccessible_file *f;
	pgoff_t index;
};

static void inaccessible_poison_invalidate(struct work_struct *work)
{
	struct inaccessible_poison_work *pw;

	pw = container_of(work, struct inaccessible_poison_work, work);
	memfile_notifier_invalidate_begin(&pw->f->node, pw->index, pw->index + 1);
	memfile_notifier_invalidate_end(&pw->f->node, pw->index, pw->index + 1);
	iput(pw->f->inode);
	kfree(pw);
}

/*
 * Memory failure hit a page of the file; it holds the page locked.  The
 * page stays in the file, so that its offset still reads as allocated and
 * nothing takes its place until userspace punches it, and
 * inaccessible_get_pfn() refuses it.  The file's consumers must drop
 * their mappings of it: they are invalidated for the page from a work
 * item, since the callbacks take the memfile node's lock, which a change
 * of the file takes before page locks.
 */
static int inaccessible_error_remove_page(struct address_space *mapping,
					  struct page *page)
{
	struct inaccessible_file *f = mapping->host->i_private;
	struct inaccessible_poison_work *pw;

	pw = kmalloc(sizeof(*pw), GFP_NOIO);
	if (!pw)
		return -ENOMEM;
	/* Not if the file is being evicted: its consumers are gone. */
	if (!igrab(f->inode)) {
		kfree(pw);
		return 0;
	}
	pw->f = f;
	pw->index = page_to_pgoff(page);
	INIT_WORK(&pw->work, inaccessible_poison_invalidate);
	schedule_work(&pw->work);
	return 0;
}

/*
 * The pages are dirty, and nothing writes them back; memory failure keeps
 * them in the file.  Migration never reaches them: the mapping is
 * unmovable.
 */
static const struct address_space_operations inaccessible_aops = {
	.dirty_folio		= noop_dirty_folio,
	.error_remove_page	= inaccessible_error_remove_page,
};

static void inaccessible_evict_inode(struct inode *inode)
{
	struct inaccessible_file *f = inode->i_private;
	/* The charge is the pages held. */
	unsigned long pages = inode->i_data.nrpages;

	truncate_inode_pages_final(&inode->i_data);
	clear_inode(inode);
	if (!f)
		return;
	inaccessible_uncharge(f, pages);
	put_ucounts(f->ucounts);
	kfree(f);
}

static const struct super_operations inaccessible_sops = {
	.statfs		= simple_statfs,
	.drop_inode	= generic_delete_inode,
	.evict_inode	= inaccessible_evict_inode,
};

static int inaccessible_init_fs_context(struct fs_context *fc)
{
	struct pseudo_fs_context *ctx;

	ctx = init_pseudo(fc, INACCESSIBLE_MAGIC);
	if (!ctx)
		return -ENOMEM;
	ctx->ops = &inaccessible_sops;
	return 0;
}

static struct file_system_type inaccessible_fs = {
	.name		= "inaccessible",
	.init_fs_context = inaccessible_init_fs_context,
	.kill_sb	= kill_anon_super,
};

static int __init inaccessible_init(void)
{
	struct vfsmount *mnt;

	mnt = kern_mount(&inaccessible_fs);
	if (IS_ERR(mnt)) {
		/* memfd_create(MFD_INACCESSIBLE) then fails as if the flag were unknown. */
		pr_err("inaccessible: cannot mount the store's filesystem (%ld)\n",
		       PTR_ERR(mnt));
		return PTR_ERR(mnt);
	}
	inaccessible_mnt = mnt;
	return 0;
}
fs_initcall(inaccessible_init);
