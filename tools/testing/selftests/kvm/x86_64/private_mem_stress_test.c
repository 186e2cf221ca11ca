// SPDX-License-Identifier: GPL-2.0-only
/*
 * Conversion stress: NR_VCPUS vCPUs convert a small private region
 * explicitly and implicitly, on overlapping and adjacent ranges, while a
 * host thread punches and allocates at random, for STRESS_SECONDS.
 *
 * Each vCPU owns one word of every page, in both views, and checks it.  A
 * mismatch is a read that returns neither what the vCPU last wrote through
 * that view nor, for private memory after a conversion, zero; data of one
 * view in the other; an explicit request whose exit never came; an exit
 * that does not match the access the vCPU was making.  There must be none.
 *
 * The host bumps a per-page epoch around every hole punch that destroys
 * private content (odd while it runs), so the guest knows when its private
 * word must read as zero.  As a negative control, the kvm parameter
 * fail_private_mem_zap (a fault injection attribute in KVM's debugfs
 * directory) makes KVM leave stale private mappings, which the test must
 * then report.
 *
 * The last vCPU asks for its explicit conversions in batches
 * (KVM_HC_MAP_GPA_BATCH) of up to BATCH_MAX scattered pages, which the
 * host carries out entry by entry, each an ordinary conversion; the batch
 * must come back done.
 *
 * The huge-page variant puts the NPAGES pages at the start of a 2 MiB
 * block of an MFD_INACCESSIBLE_HUGE memfd, and the host now and then
 * converts the whole block, so that the vCPUs' pages keep moving between
 * one 2 MiB mapping of a huge folio and 4 KiB mappings of its split
 * pages.
 */
#define _GNU_SOURCE
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "kvm_util.h"
#include "private_mem.h"
#include "processor.h"

/* test_util.h's ASSERT_EQ() predates the harness's; use the harness's. */
#undef ASSERT_EQ
#include "../kselftest_harness.h"

#define SLOT		10
#define GPA		BIT_ULL(30)
#define NPAGES		32
#define BLOCK		512	/* pages of a 2 MiB block */
#define PAGE		4096ULL
#define SHARED_GVA	0x40000000ULL
#define PRIVATE_GVA	0x80000000ULL
#define NR_VCPUS	3
#define STRESS_SECONDS	60
#define CONTROL_SECONDS	20
#define FAIL_ZAP	"fail_private_mem_zap/"
#define MAX_REPORTED	4
#define BATCHING_VCPU	(NR_VCPUS - 1)
#define BATCH_MAX	8

/* A word's value: the view, the vCPU and a sequence number, never 0. */
#define TAG_PRIVATE	BIT_ULL(63)
#define TAG(priv, id, seq) \
	(((priv) ? TAG_PRIVATE : 0) | ((uint64_t)(id) << 48) | ((seq) << 1) | 1)

enum mismatch_kind {
	PRIVATE_WRITE,		/* read back what was just written, privately */
	PRIVATE_READ,		/* a later private read */
	SHARED_WRITE,
	SHARED_READ,
	HYPERCALL,		/* an explicit request that failed */
	BATCH,			/* a batch that did not come back done */
};

struct mismatch {
	uint64_t kind, page, expected, got;
};

/* Written by the guest, read by the host. */
struct vcpu_report {
	uint64_t ops;
	uint64_t hypercalls;
	uint64_t batched_pages;
	uint64_t mismatches;
	struct mismatch first[MAX_REPORTED];
	/* The access in progress, to check implicit exits against. */
	uint64_t cur_page;
	uint64_t cur_private;
};

/* Guest memory, in memslot 0; the host updates epochs and stop. */
static uint64_t epochs[BLOCK];
static uint64_t stop;
static struct vcpu_report reports[NR_VCPUS];
/* The batching vCPU's list, in a page of its own. */
static uint8_t batch_page[PAGE] __aligned(PAGE);

/* The guest's own bookkeeping. */
struct private_record {
	uint64_t tag;		/* 0: none, the word reads 0 */
	uint64_t epoch;
	bool maybe_zero;	/* a punch raced with the write */
};

static struct private_record private_words[NR_VCPUS][NPAGES];
static uint64_t shared_words[NR_VCPUS][NPAGES];

static uint64_t *word(uint64_t page, bool private, uint64_t id)
{
	return (uint64_t *)((private ? PRIVATE_GVA : SHARED_GVA) +
			    page * PAGE) + id;
}

static void mismatch(struct vcpu_report *rep, uint64_t kind, uint64_t page,
		     uint64_t expected, uint64_t got)
{
	if (rep->mismatches < MAX_REPORTED)
		rep->first[rep->mismatches] = (struct mismatch){
			kind, page, expected, got };
	rep->mismatches++;
}

static void announce(struct vcpu_report *rep, uint64_t page, bool private)
{
	WRITE_ONCE(rep->cur_page, page);
	WRITE_ONCE(rep->cur_private, private);
}

static void private_write(uint64_t id, uint64_t page, uint64_t tag)
{
	struct private_record *rec = &private_words[id][page];
	struct vcpu_report *rep = &reports[id];
	uint64_t e1, e2, v;

	e1 = READ_ONCE(epochs[page]);
	announce(rep, page, true);
	WRITE_ONCE(*word(page, true, id), tag);
	v = READ_ONCE(*word(page, true, id));
	e2 = READ_ONCE(epochs[page]);

	if (e1 == e2 && !(e1 & 1)) {
		if (v != tag)
			mismatch(rep, PRIVATE_WRITE, page, tag, v);
		*rec = (struct private_record){ tag, e1, false };
	} else {
		/* A punch may have destroyed the word before or after. */
		if (v != tag && v)
			mismatch(rep, PRIVATE_WRITE, page, tag, v);
		*rec = (struct private_record){ tag, e2, true };
	}
}

static void private_read(uint64_t id, uint64_t page)
{
	struct private_record *rec = &private_words[id][page];
	struct vcpu_report *rep = &reports[id];
	uint64_t e1, e2, v, expected;

	e1 = READ_ONCE(epochs[page]);
	if (e1 & 1)
		return;
	announce(rep, page, true);
	v = READ_ONCE(*word(page, true, id));
	e2 = READ_ONCE(epochs[page]);
	if (e1 != e2)
		return;

	/* Private content survives only while no punch destroyed it. */
	expected = rec->epoch == e1 ? rec->tag : 0;
	if (v == expected || (rec->epoch == e1 && rec->maybe_zero && !v)) {
		*rec = (struct private_record){ v, e1, false };
		return;
	}
	mismatch(rep, PRIVATE_READ, page, expected, v);
	*rec = (struct private_record){ v, e1, false };
}

static void shared_write(uint64_t id, uint64_t page, uint64_t tag)
{
	struct vcpu_report *rep = &reports[id];
	uint64_t v;

	announce(rep, page, false);
	WRITE_ONCE(*word(page, false, id), tag);
	v = READ_ONCE(*word(page, false, id));
	/* Conversions never touch the shared pages. */
	if (v != tag)
		mismatch(rep, SHARED_WRITE, page, tag, v);
	shared_words[id][page] = tag;
}

static void shared_read(uint64_t id, uint64_t page)
{
	struct vcpu_report *rep = &reports[id];
	uint64_t v;

	announce(rep, page, false);
	v = READ_ONCE(*word(page, false, id));
	if (v != shared_words[id][page])
		mismatch(rep, SHARED_READ, page, shared_words[id][page], v);
}

static uint64_t xorshift(uint64_t *s)
{
	*s ^= *s << 13;
	*s ^= *s >> 7;
	*s ^= *s << 17;
	return *s;
}

/*
 * Ask for up to BATCH_MAX scattered pages, each made private or shared at
 * random, with one KVM_HC_MAP_GPA_BATCH on the list at @list_gpa.
 */
static void batch_convert(struct vcpu_report *rep, uint64_t *seed,
			  uint64_t list_gpa)
{
	struct kvm_map_gpa_batch *b = (struct kvm_map_gpa_batch *)batch_page;
	uint64_t i, n = 1 + xorshift(seed) % BATCH_MAX, ret;

	b->cur_entry = 0;
	b->end_entry = n - 1;
	for (i = 0; i < n; i++) {
		uint64_t r = xorshift(seed);

		b->entries[i] = (struct kvm_map_gpa_batch_entry){
			.gfn = (GPA / PAGE) + r % NPAGES,
			.op = r & BIT_ULL(32) ? KVM_MAP_GPA_BATCH_OP_PRIVATE :
						KVM_MAP_GPA_BATCH_OP_SHARED,
		};
	}
	rep->hypercalls++;
	rep->batched_pages += n;
	ret = guest_map_gpa_batch(list_gpa);
	if (ret || READ_ONCE(b->cur_entry) != n)
		mismatch(rep, BATCH, b->entries[0].gfn - GPA / PAGE, n,
			 ret ? ret : READ_ONCE(b->cur_entry));
}

static void guest_code(uint64_t id, uint64_t list_gpa)
{
	struct vcpu_report *rep = &reports[id];
	uint64_t seed = (id + 1) * 0x9e3779b97f4a7c15ULL, seq = 0;

	while (!READ_ONCE(stop)) {
		uint64_t r = xorshift(&seed), page = r % NPAGES;
		uint64_t len = 1 + (r >> 24) % 4;

		switch ((r >> 16) % 8) {
		case 0:
		case 1:
			/* Overlapping and adjacent ranges of up to 4 pages. */
			if (id == BATCHING_VCPU) {
				batch_convert(rep, &seed, list_gpa);
				break;
			}
			if (page + len > NPAGES)
				len = NPAGES - page;
			announce(rep, page, false);
			rep->hypercalls++;
			if (guest_map_gpa_range(GPA + page * PAGE, len,
						(r >> 16) % 8 == 0))
				mismatch(rep, HYPERCALL, page, 0, 1);
			break;
		case 2:
		case 3:
			private_write(id, page, TAG(1, id, ++seq));
			break;
		case 4:
			shared_write(id, page, TAG(0, id, ++seq));
			break;
		case 5:
		case 6:
			private_read(id, page);
			break;
		case 7:
			shared_read(id, page);
			break;
		}
		rep->ops++;
	}
	GUEST_DONE();
}

struct stress {
	struct kvm_vm *vm;
	struct kvm_vcpu *vcpus[NR_VCPUS];
	struct private_region r;
	bool huge;			/* the huge-page variant */
	pthread_mutex_t lock;		/* serialises conversions */
	bool private[BLOCK];		/* what the memfd holds */
	uint64_t *epochs;		/* the guest's epochs[] */
	uint64_t *stop;
	struct vcpu_report *reports;
	uint64_t explicit_exits[NR_VCPUS];
	uint64_t implicit_exits[NR_VCPUS];
	uint64_t bad_exits[NR_VCPUS];
	uint64_t batch_entries[NR_VCPUS];
	uint64_t host_conversions;
	bool host_stop;
};

/* Convert [first, first + n), bumping epochs on punches; under the lock. */
static void __convert(struct stress *s, uint64_t first, uint64_t n,
		      bool private)
{
	uint64_t p;

	if (private) {
		private_region_convert(&s->r, GPA + first * PAGE, n * PAGE, true);
		for (p = first; p < first + n; p++)
			s->private[p] = true;
	} else {
		for (p = first; p < first + n; p++)
			if (s->private[p])
				__atomic_add_fetch(&s->epochs[p], 1, __ATOMIC_SEQ_CST);
		private_region_convert(&s->r, GPA + first * PAGE, n * PAGE, false);
		for (p = first; p < first + n; p++) {
			if (s->private[p])
				__atomic_add_fetch(&s->epochs[p], 1, __ATOMIC_SEQ_CST);
			s->private[p] = false;
		}
	}
}

static void convert(struct stress *s, uint64_t first, uint64_t n, bool private)
{
	pthread_mutex_lock(&s->lock);
	__convert(s, first, n, private);
	pthread_mutex_unlock(&s->lock);
}

/*
 * Make the whole block private in one huge folio: only a fallocate() of a
 * block that is a hole throughout gets one, so punch it all first, with
 * no conversion of the vCPUs' in between.
 */
static void convert_block_huge(struct stress *s)
{
	pthread_mutex_lock(&s->lock);
	__convert(s, 0, BLOCK, false);
	__convert(s, 0, BLOCK, true);
	pthread_mutex_unlock(&s->lock);
}

struct vcpu_arg {
	struct stress *s;
	int id;
};

/*
 * Carry out the batch at @list_gpa entry by entry, each an ordinary
 * conversion.  The guest asks for single pages of the region only; any
 * other entry is a bad exit, and stops the batch with EINVAL.
 */
static void batch_exit(struct stress *s, int id, uint64_t list_gpa)
{
	struct kvm_map_gpa_batch *b = addr_gpa2hva(s->vm, list_gpa);
	unsigned int i, end = READ_ONCE(b->end_entry);

	for (i = READ_ONCE(b->cur_entry); i <= end && i < BATCH_MAX; i++) {
		struct kvm_map_gpa_batch_entry e = b->entries[i];
		uint64_t first = e.gfn - GPA / PAGE;

		if (e.gfn < GPA / PAGE || first >= NPAGES ||
		    e.page_size != KVM_MAP_GPA_BATCH_PAGE_4K) {
			s->bad_exits[id]++;
			b->entries[i].status = EINVAL;
			break;
		}
		convert(s, first, 1, e.op == KVM_MAP_GPA_BATCH_OP_PRIVATE);
		b->entries[i].status = 0;
		s->batch_entries[id]++;
	}
	WRITE_ONCE(b->cur_entry, i);
}

static void *vcpu_thread(void *data)
{
	struct vcpu_arg *a = data;
	struct stress *s = a->s;
	struct kvm_vcpu *vcpu = s->vcpus[a->id];
	struct vcpu_report *rep = &s->reports[a->id];
	struct kvm_run *run = vcpu->run;
	struct ucall uc;

	for (;;) {
		uint64_t first, n;
		bool private;

		vcpu_run(vcpu);
		if (run->exit_reason != KVM_EXIT_MEMORY_ERROR)
			break;
		if (run->memory.flags & KVM_MEMORY_EXIT_FLAG_BATCH) {
			s->explicit_exits[a->id]++;
			if (a->id != BATCHING_VCPU)
				s->bad_exits[a->id]++;
			batch_exit(s, a->id, run->memory.gpa);
			continue;
		}
		private = run->memory.flags & KVM_MEMORY_EXIT_FLAG_PRIVATE;
		first = (run->memory.gpa - GPA) / PAGE;
		n = run->memory.size / PAGE;
		if (run->memory.flags & KVM_MEMORY_EXIT_FLAG_EXPLICIT) {
			s->explicit_exits[a->id]++;
		} else {
			s->implicit_exits[a->id]++;
			/* It must be the access the vCPU announced. */
			if (first != READ_ONCE(rep->cur_page) || n != 1 ||
			    private != READ_ONCE(rep->cur_private))
				s->bad_exits[a->id]++;
		}
		if (run->memory.gpa < GPA || first + n > NPAGES) {
			s->bad_exits[a->id]++;
			continue;
		}
		convert(s, first, n, private);
	}

	switch (get_ucall(vcpu, &uc)) {
	case UCALL_DONE:
		break;
	case UCALL_ABORT:
		REPORT_GUEST_ASSERT(uc);
	default:
		vcpu_dump(stderr, vcpu, 2);
		TEST_FAIL("vCPU %d stopped with %s", a->id,
			  exit_reason_str(run->exit_reason));
	}
	return NULL;
}

/* The host's own conversions, at random, until told to stop. */
static void *chaos_thread(void *data)
{
	struct stress *s = data;
	unsigned int seed = 12345;

	while (!READ_ONCE(s->host_stop)) {
		uint64_t first = rand_r(&seed) % NPAGES;
		uint64_t n = 1 + rand_r(&seed) % 4;

		if (first + n > NPAGES)
			n = NPAGES - first;
		/* The whole block becomes one huge folio, or a hole. */
		if (s->huge && !(rand_r(&seed) % 8)) {
			if (rand_r(&seed) & 1)
				convert_block_huge(s);
			else
				convert(s, 0, BLOCK, false);
		} else {
			convert(s, first, n, rand_r(&seed) & 1);
		}
		s->host_conversions++;
		usleep(rand_r(&seed) % 200);
	}
	return NULL;
}

struct outcome {
	uint64_t ops, mismatches, lost_exits, bad_exits, crossed_words;
	uint64_t faults_2m, batch_entries;
};

/*
 * Run the stress for @seconds, with private memory that may be @huge, and
 * count what went wrong.
 */
static struct outcome stress_run(struct __test_metadata *_metadata,
				 int seconds, bool huge)
{
	struct vcpu_arg args[NR_VCPUS];
	pthread_t vcpu_threads[NR_VCPUS], chaos;
	struct outcome out = { 0 };
	struct stress s = { .huge = huge };
	uint64_t i, j;
	int id;

	s.vm = vm_create_private(NR_VCPUS, guest_code, s.vcpus);
	vm_init_descriptor_tables(s.vm);
	vm_enable_cap(s.vm, KVM_CAP_MAP_GPA_BATCH, 0);
	for (id = 0; id < NR_VCPUS; id++) {
		vcpu_init_descriptor_tables(s.vcpus[id]);
		vcpu_args_set(s.vcpus[id], 2, id,
			      addr_gva2gpa(s.vm, (vm_vaddr_t)batch_page));
	}
	/* Huge mappings need a host address congruent to the gfn. */
	if (huge)
		private_region_add_memfd(&s.r, s.vm, VM_MEM_SRC_ANONYMOUS_THP,
					 SLOT, GPA, BLOCK,
					 __private_memfd_create(BLOCK * PAGE,
								MFD_INACCESSIBLE_HUGE),
					 0);
	else
		private_region_add(&s.r, s.vm, SLOT, GPA, NPAGES);
	private_region_map(&s.r, SHARED_GVA, PRIVATE_GVA);
	pthread_mutex_init(&s.lock, NULL);
	s.epochs = addr_gva2hva(s.vm, (vm_vaddr_t)epochs);
	s.stop = addr_gva2hva(s.vm, (vm_vaddr_t)&stop);
	s.reports = addr_gva2hva(s.vm, (vm_vaddr_t)reports);

	for (id = 0; id < NR_VCPUS; id++) {
		args[id] = (struct vcpu_arg){ &s, id };
		pthread_create(&vcpu_threads[id], NULL, vcpu_thread, &args[id]);
	}
	pthread_create(&chaos, NULL, chaos_thread, &s);
	sleep(seconds);
	__atomic_store_n(s.stop, 1, __ATOMIC_SEQ_CST);
	for (id = 0; id < NR_VCPUS; id++)
		pthread_join(vcpu_threads[id], NULL);
	WRITE_ONCE(s.host_stop, true);
	pthread_join(chaos, NULL);

	for (id = 0; id < NR_VCPUS; id++) {
		struct vcpu_report *rep = &s.reports[id];

		TH_LOG("vCPU %d: %lu ops, %lu mismatches", id, rep->ops,
		       rep->mismatches);
		TH_LOG("vCPU %d: %lu hypercalls, %lu explicit and %lu implicit exits",
		       id, rep->hypercalls, s.explicit_exits[id],
		       s.implicit_exits[id]);
		if (id == BATCHING_VCPU)
			TH_LOG("vCPU %d: %lu pages asked for in batches, %lu done",
			       id, rep->batched_pages, s.batch_entries[id]);
		for (i = 0; i < rep->mismatches && i < MAX_REPORTED; i++)
			TH_LOG("  mismatch kind %lu page %lu: expected 0x%lx, got 0x%lx",
			       rep->first[i].kind, rep->first[i].page,
			       rep->first[i].expected, rep->first[i].got);
		out.ops += rep->ops;
		out.mismatches += rep->mismatches;
		/* Every hypercall exits exactly once. */
		out.lost_exits += labs((long)(rep->hypercalls -
					      s.explicit_exits[id]));
		out.bad_exits += s.bad_exits[id];
		out.batch_entries += s.batch_entries[id];
	}
	/* Private data never shows up in the shared pages. */
	for (i = 0; i < NPAGES; i++)
		for (j = 0; j < PAGE / 8; j++)
			if (((uint64_t *)s.r.hva)[i * PAGE / 8 + j] & TAG_PRIVATE)
				out.crossed_words++;
	out.faults_2m = vm_get_stat(s.vm, "private_mem_faults_2m");
	TH_LOG("host: %lu conversions of its own; %lu private 2 MiB faults",
	       s.host_conversions, out.faults_2m);

	kvm_vm_free(s.vm);
	close(s.r.memfd);
	return out;
}

static int stress_seconds(void)
{
	const char *env = getenv("STRESS_SECONDS");

	return env ? atoi(env) : STRESS_SECONDS;
}

FIXTURE(stress) {};
FIXTURE_SETUP(stress) {}
FIXTURE_TEARDOWN(stress) {}

static void expect_clean(struct __test_metadata *_metadata,
			 struct outcome out)
{
	ASSERT_GT(out.ops, 0);
	ASSERT_EQ(out.mismatches, 0);
	ASSERT_EQ(out.lost_exits, 0);
	ASSERT_EQ(out.bad_exits, 0);
	ASSERT_EQ(out.crossed_words, 0);
	ASSERT_GT(out.batch_entries, 0);
}

TEST_F_TIMEOUT(stress, sixty_seconds, 300)
{
	expect_clean(_metadata, stress_run(_metadata, stress_seconds(), false));
}

/* Half as long, with huge folios that the conversions keep splitting. */
TEST_F_TIMEOUT(stress, huge_pages, 300)
{
	struct outcome out = stress_run(_metadata, stress_seconds() / 2, true);

	expect_clean(_metadata, out);
	ASSERT_GT(out.faults_2m, 0);
}

/*
 * The negative control: with KVM leaving stale private mappings behind,
 * the same stress must find mismatches.
 */
FIXTURE(negative) {};

/*
 * A skip here still runs the test body under the 6.1 harness, so the
 * body checks _metadata->skip first.
 */
FIXTURE_SETUP(negative)
{
	/* Quiet, and for every invalidation, before it starts. */
	if (!kvm_debugfs_set(FAIL_ZAP "verbose", "0"))
		SKIP(return, "no %s (needs %s)", FAIL_ZAP,
		     "CONFIG_KVM_PRIVATE_MEM_FAULT_INJECTION");
	ASSERT_TRUE(kvm_debugfs_set(FAIL_ZAP "times", "-1"));
	ASSERT_TRUE(kvm_debugfs_set(FAIL_ZAP "probability", "100"));
}

FIXTURE_TEARDOWN(negative)
{
	kvm_debugfs_set(FAIL_ZAP "probability", "0");
}

TEST_F_TIMEOUT(negative, control_stale_mappings_are_caught, 120)
{
	struct outcome out;

	if (_metadata->skip)
		return;
	out = stress_run(_metadata, CONTROL_SECONDS, false);
	TH_LOG("with stale private mappings: %lu mismatches in %lu ops",
	       out.mismatches, out.ops);
	ASSERT_GT(out.mismatches, 0);
}

TEST_HARNESS_MAIN
