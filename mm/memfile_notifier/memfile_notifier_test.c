// SPDX-License-Identifier: GPL-2.0
/*
 * KUnit tests of the memfile_notifier contract, driven through its
 * backing store (MFD_INACCESSIBLE files).
 */

#include <kunit/test.h>
#include <linux/completion.h>
#include <linux/delay.h>
#include <linux/falloc.h>
#include <linux/file.h>
#include <linux/fs.h>
#include <linux/kthread.h>
#include <linux/memfile_notifier.h>
#include <linux/mm.h>
#include <linux/module.h>
#include <linux/shmem_fs.h>
#include <linux/slab.h>

#define TEST_PAGES	8
#define MAX_EVENTS	8
#define NR_RECORDERS	3

#define ALL_PROPERTIES	(MEMFILE_F_USER_INACCESSIBLE | MEMFILE_F_UNMOVABLE | \
			 MEMFILE_F_UNRECLAIMABLE)

struct event {
	bool begin;
	pgoff_t start;
	pgoff_t end;
	bool present;		/* was the page at @start there? */
};

/* A consumer that records its callbacks and whether pages were present. */
struct recorder {
	struct memfile_notifier notifier;
	bool registered;
	int nr;
	struct event events[MAX_EVENTS];
	/* For the consumer that blocks in invalidate_begin. */
	struct completion entered;
	struct completion release;
	bool block;
};

struct test_ctx {
	struct file *file;
	struct recorder rec[NR_RECORDERS];
};

static bool page_present(struct memfile_notifier *n, pgoff_t offset)
{
	unsigned long pfn;
	int order;

	if (memfile_get_pfn(n, offset, &pfn, &order))
		return false;
	put_page(pfn_to_page(pfn));
	return true;
}

static void record(struct memfile_notifier *n, bool begin, pgoff_t start,
		   pgoff_t end)
{
	struct recorder *rec = container_of(n, struct recorder, notifier);

	if (rec->nr < MAX_EVENTS)
		rec->events[rec->nr] = (struct event) {
			.begin = begin,
			.start = start,
			.end = end,
			.present = page_present(n, start),
		};
	rec->nr++;
}

static void rec_invalidate_begin(struct memfile_notifier *n, pgoff_t start,
				 pgoff_t end)
{
	struct recorder *rec = container_of(n, struct recorder, notifier);

	record(n, true, start, end);
	if (rec->block) {
		complete(&rec->entered);
		wait_for_completion(&rec->release);
	}
}

static void rec_invalidate_end(struct memfile_notifier *n, pgoff_t start,
			       pgoff_t end)
{
	record(n, false, start, end);
}

static const struct memfile_notifier_ops rec_ops = {
	.owner			= THIS_MODULE,
	.invalidate_begin	= rec_invalidate_begin,
	.invalidate_end		= rec_invalidate_end,
};

static int rec_register_file(struct recorder *rec, struct file *file,
			     pgoff_t start, pgoff_t nr)
{
	int ret;

	rec->notifier.ops = &rec_ops;
	ret = memfile_register_notifier(file, start, nr, ALL_PROPERTIES,
					&rec->notifier);
	rec->registered = !ret;
	return ret;
}

static int rec_register(struct test_ctx *ctx, int i, pgoff_t start,
			pgoff_t nr)
{
	return rec_register_file(&ctx->rec[i], ctx->file, start, nr);
}

static void rec_unregister(struct recorder *rec)
{
	memfile_unregister_notifier(&rec->notifier);
	rec->registered = false;
}

static int falloc(struct test_ctx *ctx, pgoff_t start, pgoff_t nr)
{
	return vfs_fallocate(ctx->file, 0, start << PAGE_SHIFT,
			     nr << PAGE_SHIFT);
}

static int punch(struct file *file, pgoff_t start, pgoff_t nr)
{
	return vfs_fallocate(file, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE,
			     start << PAGE_SHIFT, nr << PAGE_SHIFT);
}

/* Event @i of @rec was a begin (or end) for [@start, @end). */
static void expect_event(struct kunit *test, struct recorder *rec, int i,
			 bool begin, pgoff_t start, pgoff_t end, bool present)
{
	KUNIT_EXPECT_EQ(test, rec->events[i].begin, begin);
	KUNIT_EXPECT_EQ(test, rec->events[i].start, start);
	KUNIT_EXPECT_EQ(test, rec->events[i].end, end);
	KUNIT_EXPECT_EQ(test, rec->events[i].present, present);
}

static int memfile_test_init(struct kunit *test)
{
	struct test_ctx *ctx;
	int i;

	ctx = kunit_kzalloc(test, sizeof(*ctx), GFP_KERNEL);
	if (!ctx)
		return -ENOMEM;
	ctx->file = inaccessible_file_create("memfile_notifier_test",
					     TEST_PAGES << PAGE_SHIFT, 0);
	if (IS_ERR(ctx->file))
		return PTR_ERR(ctx->file);
	for (i = 0; i < NR_RECORDERS; i++) {
		init_completion(&ctx->rec[i].entered);
		init_completion(&ctx->rec[i].release);
	}
	test->priv = ctx;
	return 0;
}

static void memfile_test_exit(struct kunit *test)
{
	struct test_ctx *ctx = test->priv;
	int i;

	for (i = 0; i < NR_RECORDERS; i++)
		if (ctx->rec[i].registered)
			rec_unregister(&ctx->rec[i]);
	fput(ctx->file);
	/*
	 * A kthread's fput() is deferred to a work item: finish it, so that
	 * no case leaves work behind for whatever runs next.
	 */
	flush_delayed_fput();
}

/* Hole punch: begin sees the pages, end runs after they are gone. */
static void punch_is_bracketed(struct kunit *test)
{
	struct test_ctx *ctx = test->priv;
	struct recorder *rec = &ctx->rec[0];

	KUNIT_ASSERT_EQ(test, falloc(ctx, 0, TEST_PAGES), 0);
	KUNIT_ASSERT_EQ(test, rec_register(ctx, 0, 0, TEST_PAGES), 0);

	KUNIT_ASSERT_EQ(test, punch(ctx->file, 2, 2), 0);
	KUNIT_ASSERT_EQ(test, rec->nr, 2);
	expect_event(test, rec, 0, true, 2, 4, true);
	expect_event(test, rec, 1, false, 2, 4, false);
}

/* Allocation: begin runs on a hole, end after the pages exist. */
static void allocation_is_bracketed(struct kunit *test)
{
	struct test_ctx *ctx = test->priv;
	struct recorder *rec = &ctx->rec[0];

	KUNIT_ASSERT_EQ(test, rec_register(ctx, 0, 0, TEST_PAGES), 0);

	KUNIT_ASSERT_EQ(test, falloc(ctx, 4, 2), 0);
	KUNIT_ASSERT_EQ(test, rec->nr, 2);
	expect_event(test, rec, 0, true, 4, 6, false);
	expect_event(test, rec, 1, false, 4, 6, true);
}

/* Callbacks carry the part of the change inside the consumer's range. */
static void callbacks_are_clamped(struct kunit *test)
{
	struct test_ctx *ctx = test->priv;
	struct recorder *rec = &ctx->rec[0];

	KUNIT_ASSERT_EQ(test, falloc(ctx, 0, TEST_PAGES), 0);
	KUNIT_ASSERT_EQ(test, rec_register(ctx, 0, 2, 4), 0);

	KUNIT_ASSERT_EQ(test, punch(ctx->file, 6, 2), 0);
	KUNIT_EXPECT_EQ(test, rec->nr, 0);
	KUNIT_ASSERT_EQ(test, punch(ctx->file, 0, TEST_PAGES), 0);
	KUNIT_ASSERT_EQ(test, rec->nr, 2);
	expect_event(test, rec, 0, true, 2, 6, true);
	expect_event(test, rec, 1, false, 2, 6, false);
}

/* A lookup on a hole fails and allocates nothing. */
static void get_on_hole_allocates_nothing(struct kunit *test)
{
	struct test_ctx *ctx = test->priv;
	struct inode *inode = file_inode(ctx->file);
	struct memfile_notifier *n = &ctx->rec[0].notifier;
	unsigned long pfn;
	int order;

	KUNIT_ASSERT_EQ(test, rec_register(ctx, 0, 0, 4), 0);
	KUNIT_EXPECT_EQ(test, memfile_get_pfn(n, 3, &pfn, &order), -ENOENT);
	KUNIT_EXPECT_EQ(test, inode->i_mapping->nrpages, 0UL);
	KUNIT_EXPECT_EQ(test, inode->i_blocks, (blkcnt_t)0);
	/* Outside the registered range, even where the file has pages. */
	KUNIT_ASSERT_EQ(test, falloc(ctx, 4, 1), 0);
	KUNIT_EXPECT_EQ(test, memfile_get_pfn(n, 4, &pfn, &order), -EINVAL);
}

static bool page_is(unsigned long pfn, u8 val)
{
	u8 *p = page_address(pfn_to_page(pfn));
	int i;

	for (i = 0; i < PAGE_SIZE; i++)
		if (p[i] != val)
			return false;
	return true;
}

/*
 * Pages handed out read as zero, however they were used before: by the
 * file's own consumer, or by whoever owned the memory before the file.
 */
static void pages_are_zeroed(struct kunit *test)
{
	struct test_ctx *ctx = test->priv;
	struct memfile_notifier *n = &ctx->rec[0].notifier;
	unsigned long pfn, stale_pfn;
	struct page *stale;
	int order;

	KUNIT_ASSERT_EQ(test, rec_register(ctx, 0, 0, TEST_PAGES), 0);
	KUNIT_ASSERT_EQ(test, falloc(ctx, 0, 1), 0);
	KUNIT_ASSERT_EQ(test, memfile_get_pfn(n, 0, &pfn, &order), 0);
	KUNIT_EXPECT_EQ(test, order, 0);
	KUNIT_EXPECT_TRUE(test, page_is(pfn, 0));
	memset(page_address(pfn_to_page(pfn)), 0xa5, PAGE_SIZE);
	put_page(pfn_to_page(pfn));

	/* The content stays while the page stays... */
	KUNIT_ASSERT_EQ(test, memfile_get_pfn(n, 0, &pfn, &order), 0);
	KUNIT_EXPECT_TRUE(test, page_is(pfn, 0xa5));
	put_page(pfn_to_page(pfn));

	/* ...and is gone once the page was punched and allocated again. */
	KUNIT_ASSERT_EQ(test, punch(ctx->file, 0, 1), 0);
	KUNIT_ASSERT_EQ(test, falloc(ctx, 0, 1), 0);
	KUNIT_ASSERT_EQ(test, memfile_get_pfn(n, 0, &pfn, &order), 0);
	KUNIT_EXPECT_TRUE(test, page_is(pfn, 0));
	put_page(pfn_to_page(pfn));

	/* Memory that held someone else's data comes back zeroed. */
	stale = alloc_page(GFP_HIGHUSER_MOVABLE);
	KUNIT_ASSERT_NOT_NULL(test, stale);
	memset(page_address(stale), 0x5a, PAGE_SIZE);
	stale_pfn = page_to_pfn(stale);
	__free_page(stale);
	KUNIT_ASSERT_EQ(test, falloc(ctx, 1, 1), 0);
	KUNIT_ASSERT_EQ(test, memfile_get_pfn(n, 1, &pfn, &order), 0);
	KUNIT_EXPECT_TRUE(test, page_is(pfn, 0));
	kunit_info(test, "the allocator %s the dirtied page",
		   pfn == stale_pfn ? "reused" : "did not reuse");
	put_page(pfn_to_page(pfn));
}

/* Consumers on disjoint ranges of one file each see their own part. */
static void two_consumers(struct kunit *test)
{
	struct test_ctx *ctx = test->priv;
	struct recorder *a = &ctx->rec[0], *b = &ctx->rec[1];

	KUNIT_ASSERT_EQ(test, falloc(ctx, 0, TEST_PAGES), 0);
	KUNIT_ASSERT_EQ(test, rec_register(ctx, 0, 0, 4), 0);
	KUNIT_ASSERT_EQ(test, rec_register(ctx, 1, 4, 4), 0);
	/* A page has at most one consumer. */
	KUNIT_EXPECT_EQ(test, rec_register(ctx, 2, 3, 2), -EBUSY);

	KUNIT_ASSERT_EQ(test, punch(ctx->file, 2, 4), 0);
	KUNIT_ASSERT_EQ(test, a->nr, 2);
	KUNIT_ASSERT_EQ(test, b->nr, 2);
	expect_event(test, a, 0, true, 2, 4, true);
	expect_event(test, a, 1, false, 2, 4, false);
	expect_event(test, b, 0, true, 4, 6, true);
	expect_event(test, b, 1, false, 4, 6, false);

	rec_unregister(a);
	KUNIT_ASSERT_EQ(test, punch(ctx->file, 0, TEST_PAGES), 0);
	KUNIT_EXPECT_EQ(test, a->nr, 2);
	KUNIT_EXPECT_EQ(test, b->nr, 4);
}

/* Registers, and undoes it on success: these registrations should fail. */
static int try_register(struct file *file, pgoff_t start, pgoff_t nr,
			unsigned long flags, struct memfile_notifier *n)
{
	int ret = memfile_register_notifier(file, start, nr, flags, n);

	if (!ret)
		memfile_unregister_notifier(n);
	return ret;
}

/* What cannot be registered, and why. */
static void registration_errors(struct kunit *test)
{
	static const struct memfile_notifier_ops no_end_ops = {
		.invalidate_begin = rec_invalidate_begin,
	};
	struct test_ctx *ctx = test->priv;
	struct memfile_notifier *n = &ctx->rec[0].notifier;
	struct file *ordinary;

	n->ops = &rec_ops;
	/* An ordinary shmem file is no memfile, whatever is demanded. */
	ordinary = shmem_file_setup("memfile_notifier_test", PAGE_SIZE,
				    VM_NORESERVE);
	KUNIT_ASSERT_NOT_ERR_OR_NULL(test, ordinary);
	KUNIT_EXPECT_EQ(test, try_register(ordinary, 0, 1,
					   MEMFILE_F_USER_INACCESSIBLE, n),
			-EOPNOTSUPP);
	KUNIT_EXPECT_EQ(test, try_register(ordinary, 0, 1, 0, n), -EOPNOTSUPP);
	fput(ordinary);

	KUNIT_EXPECT_EQ(test, try_register(ctx->file, 0, 1, BIT(16), n),
			-EINVAL);
	KUNIT_EXPECT_EQ(test, try_register(ctx->file, 0, 0, ALL_PROPERTIES, n),
			-EINVAL);
	KUNIT_EXPECT_EQ(test, try_register(ctx->file, 4, TEST_PAGES,
					   ALL_PROPERTIES, n), -EINVAL);
	KUNIT_EXPECT_EQ(test, try_register(ctx->file, ULONG_MAX, 2,
					   ALL_PROPERTIES, n), -EINVAL);
	n->ops = &no_end_ops;
	KUNIT_EXPECT_EQ(test, try_register(ctx->file, 0, 1, ALL_PROPERTIES, n),
			-EINVAL);
}

struct punch_work {
	struct file *file;
	struct completion done;
};

static int punch_thread(void *data)
{
	struct punch_work *w = data;

	punch(w->file, 0, TEST_PAGES);
	complete(&w->done);
	return 0;
}

struct unregister_work {
	struct recorder *rec;
	struct completion done;
};

static int unregister_thread(void *data)
{
	struct unregister_work *w = data;

	rec_unregister(w->rec);
	complete(&w->done);
	return 0;
}

/*
 * Unregistering waits for the callbacks in flight: while a hole punch is
 * inside the consumer's invalidate_begin, unregistration does not return;
 * it returns after invalidate_end, and no callback follows.
 */
static void unregister_waits_for_callbacks(struct kunit *test)
{
	struct test_ctx *ctx = test->priv;
	struct recorder *rec = &ctx->rec[0];
	struct unregister_work uw = { .rec = rec };
	struct punch_work pw = { .file = ctx->file };
	struct task_struct *t;

	KUNIT_ASSERT_EQ(test, falloc(ctx, 0, TEST_PAGES), 0);
	KUNIT_ASSERT_EQ(test, rec_register(ctx, 0, 0, TEST_PAGES), 0);
	rec->block = true;
	init_completion(&pw.done);
	init_completion(&uw.done);

	t = kthread_run(punch_thread, &pw, "memfile-test-punch");
	KUNIT_ASSERT_FALSE(test, IS_ERR(t));
	wait_for_completion(&rec->entered);

	t = kthread_run(unregister_thread, &uw, "memfile-test-unreg");
	if (IS_ERR(t)) {
		complete(&rec->release);
		wait_for_completion(&pw.done);
		KUNIT_FAIL(test, "cannot start the unregistering thread");
		return;
	}
	/* The callback is still running: unregistration must wait. */
	KUNIT_EXPECT_FALSE(test, wait_for_completion_timeout(&uw.done,
							     msecs_to_jiffies(200)));
	KUNIT_EXPECT_EQ(test, rec->nr, 1);

	complete(&rec->release);
	wait_for_completion(&pw.done);
	wait_for_completion(&uw.done);
	KUNIT_ASSERT_EQ(test, rec->nr, 2);
	expect_event(test, rec, 1, false, 0, TEST_PAGES, false);

	/* Unregistered: later changes are not reported. */
	rec->block = false;
	KUNIT_ASSERT_EQ(test, falloc(ctx, 0, TEST_PAGES), 0);
	KUNIT_EXPECT_EQ(test, rec->nr, 2);
}

/* Registration pins the module that provides the callbacks. */
static void owner_module_is_pinned(struct kunit *test)
{
	struct test_ctx *ctx = test->priv;
	int refs;

	if (!IS_MODULE(CONFIG_MEMFILE_NOTIFIER_KUNIT_TEST))
		kunit_skip(test, "built in: there is no module to pin");

	refs = module_refcount(THIS_MODULE);
	KUNIT_ASSERT_EQ(test, rec_register(ctx, 0, 0, 2), 0);
	KUNIT_ASSERT_EQ(test, rec_register(ctx, 1, 2, 2), 0);
	KUNIT_EXPECT_EQ(test, module_refcount(THIS_MODULE), refs + 2);
	rec_unregister(&ctx->rec[0]);
	KUNIT_EXPECT_EQ(test, module_refcount(THIS_MODULE), refs + 1);
	rec_unregister(&ctx->rec[1]);
	KUNIT_EXPECT_EQ(test, module_refcount(THIS_MODULE), refs);
	/* A failed registration leaves no pin behind. */
	KUNIT_EXPECT_EQ(test, rec_register(ctx, 2, 0, TEST_PAGES + 1), -EINVAL);
	KUNIT_EXPECT_EQ(test, rec_register(ctx, 2, 0, 0), -EINVAL);
	KUNIT_EXPECT_EQ(test, module_refcount(THIS_MODULE), refs);
}

/*
 * Memory failure on a page a consumer got: the consumer is invalidated for
 * that page, memfile_get_pfn() refuses it from then on, and the rest of
 * the file is untouched.  Punching the page frees the offset for a new
 * one.  The invalidation comes from a work item, so wait for it.
 */
static void poisoned_page_is_refused(struct kunit *test)
{
	struct test_ctx *ctx = test->priv;
	struct recorder *rec = &ctx->rec[0];
	unsigned long pfn;
	int order, i;

	if (!IS_ENABLED(CONFIG_MEMORY_FAILURE))
		kunit_skip(test, "needs MEMORY_FAILURE");
	KUNIT_ASSERT_EQ(test, falloc(ctx, 0, 2), 0);
	KUNIT_ASSERT_EQ(test, rec_register(ctx, 0, 0, TEST_PAGES), 0);
	KUNIT_ASSERT_EQ(test, memfile_get_pfn(&rec->notifier, 1, &pfn, &order), 0);
	put_page(pfn_to_page(pfn));

	/* Recovered: the page stays in the file, for the store to refuse. */
	KUNIT_EXPECT_EQ(test, memory_failure(pfn, MF_SW_SIMULATED), 0);
	for (i = 0; i < 500 && READ_ONCE(rec->nr) < 2; i++)
		msleep(20);
	KUNIT_ASSERT_EQ(test, rec->nr, 2);
	expect_event(test, rec, 0, true, 1, 2, false);
	expect_event(test, rec, 1, false, 1, 2, false);
	KUNIT_EXPECT_EQ(test, memfile_get_pfn(&rec->notifier, 1, &pfn, &order),
			-EHWPOISON);
	KUNIT_EXPECT_TRUE(test, page_present(&rec->notifier, 0));

	KUNIT_ASSERT_EQ(test, punch(ctx->file, 1, 1), 0);
	KUNIT_ASSERT_EQ(test, falloc(ctx, 1, 1), 0);
	KUNIT_EXPECT_TRUE(test, page_present(&rec->notifier, 1));
}

static struct kunit_case memfile_notifier_cases[] = {
	KUNIT_CASE(punch_is_bracketed),
	KUNIT_CASE(allocation_is_bracketed),
	KUNIT_CASE(callbacks_are_clamped),
	KUNIT_CASE(get_on_hole_allocates_nothing),
	KUNIT_CASE(pages_are_zeroed),
	KUNIT_CASE(two_consumers),
	KUNIT_CASE(registration_errors),
	KUNIT_CASE(unregister_waits_for_callbacks),
	KUNIT_CASE(owner_module_is_pinned),
	KUNIT_CASE(poisoned_page_is_refused),
	{}
};

static struct kunit_suite memfile_notifier_suite = {
	.name = "memfile_notifier",
	.init = memfile_test_init,
	.exit = memfile_test_exit,
	.test_cases = memfile_notifier_cases,
};

kunit_test_suite(memfile_notifier_suite);

MODULE_DESCRIPTION("KUnit tests for memfile_notifier");
MODULE_LICENSE("GPL");
