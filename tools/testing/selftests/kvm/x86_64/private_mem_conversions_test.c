// SPDX-License-Identifier: GPL-2.0-only
/*
 * Conversions between private and shared memory in KVM_X86_PRIVATE_MEM_VM
 * guests: explicit (KVM_HC_MAP_GPA_RANGE) and implicit (an access of the
 * other type), with data checks on both views of every page.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <linux/falloc.h>
#include <liburing.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "kvm_util.h"
#include "private_mem.h"
#include "processor.h"

/* test_util.h's ASSERT_EQ() predates the harness's; use the harness's. */
#undef ASSERT_EQ
#include "../kselftest_harness.h"

#define SLOT		10
#define GPA		BIT_ULL(30)		/* 1 GiB, 2 MiB aligned */
#define NPAGES		1024			/* 4 MiB */
#define PAGE		4096ULL
#define SHARED_GVA	0x40000000ULL
#define PRIVATE_GVA	0x80000000ULL
#define HOST_PATTERN	0x5a5a5a5a5a5a5a5aULL

/* What the guest does next; the host sets it before each run. */
enum guest_op { OP_CONVERT, OP_WRITE, OP_CHECK, OP_READ, OP_OWN_WORDS,
		OP_BATCH };

struct guest_cmd {
	uint64_t op;
	uint64_t first;		/* page index in the region */
	uint64_t npages;
	uint64_t private;	/* the view, or the conversion's direction */
	uint64_t val;		/* to write, or to find */
	uint64_t attrs;		/* OP_CONVERT: raw attributes if non-zero */
	uint64_t addr;		/* OP_CONVERT, OP_BATCH: raw gpa; OP_READ: gva */
};

static struct guest_cmd cmds[2];	/* one per vCPU */

static uint64_t *view(uint64_t page, bool private)
{
	return (uint64_t *)((private ? PRIVATE_GVA : SHARED_GVA) + page * PAGE);
}

/* The words of a page that vCPU @id owns in the two-vCPU race. */
#define OWN_WORDS	(PAGE / 8 / 2)

static void guest_code(uint64_t id)
{
	for (;;) {
		struct guest_cmd c = READ_ONCE(cmds[id]);
		uint64_t i, w, r = 0;

		switch (c.op) {
		case OP_CONVERT:
			if (c.addr || c.attrs)
				r = kvm_hypercall(KVM_HC_MAP_GPA_RANGE, c.addr,
						  c.npages, c.attrs, 0);
			else
				r = guest_map_gpa_range(GPA + c.first * PAGE,
							c.npages, c.private);
			break;
		case OP_WRITE:
			for (i = c.first; i < c.first + c.npages; i++)
				for (w = 0; w < PAGE / 8; w++)
					view(i, c.private)[w] = c.val;
			break;
		case OP_CHECK:
			/* r counts the words that differ from val. */
			for (i = c.first; i < c.first + c.npages; i++)
				for (w = 0; w < PAGE / 8; w++)
					r += view(i, c.private)[w] != c.val;
			break;
		case OP_READ:
			r = READ_ONCE(*(uint64_t *)c.addr);
			break;
		case OP_BATCH:
			/* val is the first reserved argument. */
			r = kvm_hypercall(KVM_HC_MAP_GPA_BATCH, c.addr, c.val,
					  0, 0);
			break;
		case OP_OWN_WORDS:
			/* Write this vCPU's half of the page, count misreads. */
			for (w = id * OWN_WORDS; w < (id + 1) * OWN_WORDS; w++)
				view(c.first, c.private)[w] = c.val;
			for (w = id * OWN_WORDS; w < (id + 1) * OWN_WORDS; w++)
				r += view(c.first, c.private)[w] != c.val;
			break;
		}
		GUEST_SYNC(r);
	}
}

struct test {
	struct kvm_vm *vm;
	struct kvm_vcpu *vcpus[2];
	struct private_region r;
	struct conversion_counts counts;
};

/*
 * A VM whose region has its shared pages from @src and its private pages
 * from @memfd, from byte @offset on.
 */
static void test_init_memfd(struct test *t, int nr_vcpus,
			    enum vm_mem_backing_src_type src, int memfd,
			    uint64_t offset)
{
	int i;

	memset(t, 0, sizeof(*t));
	t->vm = vm_create_private(nr_vcpus, guest_code, t->vcpus);
	for (i = 0; i < nr_vcpus; i++)
		vcpu_args_set(t->vcpus[i], 1, i);
	private_region_add_memfd(&t->r, t->vm, src, SLOT, GPA, NPAGES, memfd,
				 offset);
	private_region_map(&t->r, SHARED_GVA, PRIVATE_GVA);
	/* What the host put in the shared pages. */
	memset(t->r.hva, 0x5a, t->r.size);
}

static void test_init_src(struct test *t, int nr_vcpus,
			  enum vm_mem_backing_src_type src)
{
	test_init_memfd(t, nr_vcpus, src, private_memfd_create(NPAGES * PAGE),
			0);
}

/*
 * One vCPU, with private pages from an MFD_INACCESSIBLE_HUGE memfd, from
 * byte @offset on.  KVM maps huge only where the shared memory's host
 * address is congruent to the gfn modulo 2 MiB, as for any memslot, so
 * the tests take shared memory from VM_MEM_SRC_ANONYMOUS_THP, which the
 * library aligns to 2 MiB.
 */
static void test_init_huge(struct test *t, enum vm_mem_backing_src_type src,
			   uint64_t offset)
{
	test_init_memfd(t, 1, src,
			__private_memfd_create(offset + NPAGES * PAGE,
					       MFD_INACCESSIBLE_HUGE),
			offset);
}

static void test_init(struct test *t, int nr_vcpus)
{
	test_init_src(t, nr_vcpus, VM_MEM_SRC_ANONYMOUS);
}

static void test_fini(struct test *t)
{
	kvm_vm_free(t->vm);
	close(t->r.memfd);
}

/* Give vCPU @id the command @c. */
static void set_cmd(struct test *t, int id, struct guest_cmd c)
{
	cmds[id] = c;
	sync_global_to_guest(t->vm, cmds[id]);
}

/* Run vCPU 0 through @c; its exit is left for the caller. */
static void guest_start(struct test *t, struct guest_cmd c)
{
	set_cmd(t, 0, c);
	vcpu_run(t->vcpus[0]);
}

/* Run vCPU 0 once through @c, converting what it asks for. */
static uint64_t guest_do(struct test *t, struct guest_cmd c)
{
	struct ucall uc;

	set_cmd(t, 0, c);
	switch (vcpu_run_converting(t->vcpus[0], &t->r, &t->counts, &uc)) {
	case UCALL_SYNC:
		return uc.args[1];
	case UCALL_ABORT:
		REPORT_GUEST_ASSERT(uc);
	default:
		vcpu_dump(stderr, t->vcpus[0], 2);
		TEST_FAIL("unexpected exit %s",
			  exit_reason_str(t->vcpus[0]->run->exit_reason));
	}
	return 0;
}

static struct guest_cmd convert(uint64_t first, uint64_t n, bool private)
{
	return (struct guest_cmd){ OP_CONVERT, first, n, private };
}

static struct guest_cmd write_pages(uint64_t first, uint64_t n, bool private,
				    uint64_t val)
{
	return (struct guest_cmd){ OP_WRITE, first, n, private, val };
}

/* The number of words of the pages that are not @val. */
static struct guest_cmd check_pages(uint64_t first, uint64_t n, bool private,
				    uint64_t val)
{
	return (struct guest_cmd){ OP_CHECK, first, n, private, val };
}

static bool host_sees(struct test *t, uint64_t first, uint64_t n, uint64_t val)
{
	uint64_t *p = (uint64_t *)(t->r.hva + first * PAGE);
	uint64_t i;

	for (i = 0; i < n * PAGE / 8; i++)
		if (p[i] != val)
			return false;
	return true;
}

/*
 * Shared -> private -> shared -> private over [@first, @first + @n),
 * explicitly, with the data checks that make a conversion a conversion:
 * private writes never reach the shared pages, shared data never shows up
 * privately, and private memory made private again reads as zeros.
 */
static void explicit_round_trip(struct __test_metadata *_metadata,
				struct test *t, uint64_t first, uint64_t n)
{
	uint64_t guest_val = 0x1111111100000000ULL | first;
	char buf[64];

	ASSERT_EQ(guest_do(t, convert(first, n, true)), 0);
	ASSERT_EQ(t->counts.explicit_private, 1);
	ASSERT_EQ(guest_do(t, write_pages(first, n, true, guest_val)), 0);
	ASSERT_EQ(guest_do(t, check_pages(first, n, true, guest_val)), 0);

	/* The host cannot see it, neither in its memory nor in the file. */
	ASSERT_TRUE(host_sees(t, first, n, HOST_PATTERN));
	ASSERT_EQ(pread(t->r.memfd, buf, sizeof(buf), first * PAGE), -1);
	ASSERT_EQ(errno, EINVAL);

	/* Back to shared: the guest finds the host's data, not its own. */
	ASSERT_EQ(guest_do(t, convert(first, n, false)), 0);
	ASSERT_EQ(t->counts.explicit_shared, 1);
	ASSERT_EQ(guest_do(t, check_pages(first, n, false, HOST_PATTERN)), 0);

	/* Private again: the old private content is gone. */
	ASSERT_EQ(guest_do(t, convert(first, n, true)), 0);
	ASSERT_EQ(guest_do(t, check_pages(first, n, true, 0)), 0);
	ASSERT_EQ(t->counts.explicit_private, 2);
	/* None of this needed an implicit conversion. */
	ASSERT_EQ(t->counts.implicit_private + t->counts.implicit_shared, 0);
}

TEST(explicit_single_page)
{
	struct test t;

	test_init(&t, 1);
	explicit_round_trip(_metadata, &t, 5, 1);
	/* The neighbours never left the shared state. */
	ASSERT_EQ(guest_do(&t, check_pages(4, 1, false, HOST_PATTERN)), 0);
	ASSERT_EQ(guest_do(&t, check_pages(6, 1, false, HOST_PATTERN)), 0);
	test_fini(&t);
}

TEST(explicit_2mb_range)
{
	struct test t;

	test_init(&t, 1);
	explicit_round_trip(_metadata, &t, 512, 512);
	test_fini(&t);
}

TEST(explicit_odd_subranges)
{
	struct test t;

	test_init(&t, 1);
	explicit_round_trip(_metadata, &t, 3, 5);
	memset(&t.counts, 0, sizeof(t.counts));
	/* Neighbouring ranges on both sides, of other sizes. */
	explicit_round_trip(_metadata, &t, 1, 2);
	memset(&t.counts, 0, sizeof(t.counts));
	explicit_round_trip(_metadata, &t, 8, 7);
	/* [3, 8) is still private and zero after its neighbours moved. */
	ASSERT_EQ(guest_do(&t, check_pages(3, 5, true, 0)), 0);
	ASSERT_EQ(guest_do(&t, check_pages(15, 1, false, HOST_PATTERN)), 0);
	test_fini(&t);
}

/* The exit carries what the guest asked for, and userspace answers it. */
TEST(explicit_exit_contents_and_answer)
{
	struct kvm_run *run;
	struct ucall uc;
	struct test t;

	test_init(&t, 1);
	run = t.vcpus[0]->run;
	guest_start(&t, convert(16, 32, true));
	ASSERT_EQ(run->exit_reason, KVM_EXIT_MEMORY_ERROR);
	ASSERT_EQ(run->memory.flags, KVM_MEMORY_EXIT_FLAG_PRIVATE |
				     KVM_MEMORY_EXIT_FLAG_EXPLICIT);
	ASSERT_EQ(run->memory.gpa, GPA + 16 * PAGE);
	ASSERT_EQ(run->memory.size, 32 * PAGE);
	ASSERT_EQ(run->memory.ret, 0);

	/* A value that is no hypercall result is refused, and nothing runs. */
	run->memory.ret = 12345;
	ASSERT_EQ(_vcpu_run(t.vcpus[0]), -1);
	ASSERT_EQ(errno, EINVAL);
	/* The guest asks again. */
	vcpu_run(t.vcpus[0]);
	ASSERT_EQ(run->exit_reason, KVM_EXIT_MEMORY_ERROR);
	ASSERT_EQ(run->memory.gpa, GPA + 16 * PAGE);

	/* Userspace refuses: the guest gets the error, nothing changes. */
	run->memory.ret = -KVM_EPERM;
	vcpu_run(t.vcpus[0]);
	ASSERT_EQ(get_ucall(t.vcpus[0], &uc), UCALL_SYNC);
	ASSERT_EQ(uc.args[1], -KVM_EPERM);
	ASSERT_EQ(guest_do(&t, check_pages(16, 32, false, HOST_PATTERN)), 0);
	ASSERT_EQ(t.counts.implicit_private + t.counts.implicit_shared, 0);

	/* Going shared is an explicit exit without the private flag. */
	guest_start(&t, convert(16, 1, false));
	ASSERT_EQ(run->exit_reason, KVM_EXIT_MEMORY_ERROR);
	ASSERT_EQ(run->memory.flags, KVM_MEMORY_EXIT_FLAG_EXPLICIT);
	test_fini(&t);
}

static uint64_t raw_convert(struct test *t, uint64_t gpa, uint64_t npages,
			    uint64_t attrs)
{
	struct guest_cmd c = { OP_CONVERT, 0, npages, 0, 0, attrs, gpa };

	return guest_do(t, c);
}

static struct guest_cmd read_at(uint64_t gva)
{
	return (struct guest_cmd){ .op = OP_READ, .addr = gva };
}

/* Bad requests fail in the guest, without an exit. */
TEST(explicit_bad_requests)
{
	uint64_t enc = KVM_MAP_GPA_RANGE_ENCRYPTED, bit;
	struct test t;

	test_init(&t, 1);
	bit = vm_private_gpa_mask(t.vm);
	ASSERT_EQ(raw_convert(&t, GPA + 1, 1, enc), -KVM_EINVAL);
	ASSERT_EQ(raw_convert(&t, GPA, 0, enc), -KVM_EINVAL);
	/* The range is named without the private bit, and stays below it. */
	ASSERT_EQ(raw_convert(&t, GPA | bit, 1, enc), -KVM_EINVAL);
	ASSERT_EQ(raw_convert(&t, bit - PAGE, 2, enc), -KVM_EINVAL);
	ASSERT_EQ(raw_convert(&t, GPA, -1ULL, enc), -KVM_EINVAL);
	/* Unknown attributes, or two page sizes at once. */
	ASSERT_EQ(raw_convert(&t, GPA, 1, enc | BIT_ULL(5)), -KVM_EINVAL);
	ASSERT_EQ(raw_convert(&t, GPA, 1, enc | BIT_ULL(63)), -KVM_EINVAL);
	ASSERT_EQ(raw_convert(&t, GPA, 1, enc | KVM_MAP_GPA_RANGE_PAGE_SZ_2M |
			      KVM_MAP_GPA_RANGE_PAGE_SZ_1G), -KVM_EINVAL);
	ASSERT_EQ(t.counts.explicit_private + t.counts.explicit_shared, 0);

	/* A page size alone is a hint, and fine. */
	ASSERT_EQ(raw_convert(&t, GPA, 512, enc | KVM_MAP_GPA_RANGE_PAGE_SZ_2M),
		  0);
	ASSERT_EQ(t.counts.explicit_private, 1);
	test_fini(&t);
}

static void guest_hypercall_type0(void)
{
	GUEST_SYNC(guest_map_gpa_range(GPA, 1, true));
	GUEST_SYNC(guest_map_gpa_batch(GPA));
}

/*
 * A VM of type 0 keeps its KVM_EXIT_HYPERCALL behaviour, and has no
 * KVM_HC_MAP_GPA_BATCH.
 */
TEST(explicit_type0_unchanged)
{
	struct kvm_vcpu *vcpu;
	struct kvm_vm *vm;
	struct ucall uc;

	vm = vm_create_with_one_vcpu(&vcpu, guest_hypercall_type0);
	vcpu_run(vcpu);
	ASSERT_EQ(get_ucall(vcpu, &uc), UCALL_SYNC);
	ASSERT_EQ(uc.args[1], -KVM_ENOSYS);
	vcpu_run(vcpu);
	ASSERT_EQ(get_ucall(vcpu, &uc), UCALL_SYNC);
	ASSERT_EQ(uc.args[1], -KVM_ENOSYS);
	kvm_vm_free(vm);

	vm = vm_create_with_one_vcpu(&vcpu, guest_hypercall_type0);
	vm_enable_cap(vm, KVM_CAP_EXIT_HYPERCALL, 1 << KVM_HC_MAP_GPA_RANGE);
	vcpu_run(vcpu);
	ASSERT_EQ(vcpu->run->exit_reason, KVM_EXIT_HYPERCALL);
	ASSERT_EQ(vcpu->run->hypercall.nr, KVM_HC_MAP_GPA_RANGE);
	ASSERT_EQ(vcpu->run->hypercall.args[0], GPA);
	vcpu->run->hypercall.ret = 0;
	vcpu_run(vcpu);
	ASSERT_EQ(get_ucall(vcpu, &uc), UCALL_SYNC);
	ASSERT_EQ(uc.args[1], 0);
	kvm_vm_free(vm);
}

/* The guest's own accesses convert, in both directions, with data checks. */
TEST(implicit_round_trip)
{
	struct test t;

	test_init(&t, 1);
	/* A private write to shared pages... */
	ASSERT_EQ(guest_do(&t, write_pages(10, 3, true, 42)), 0);
	ASSERT_EQ(t.counts.implicit_private, 3);
	ASSERT_EQ(guest_do(&t, check_pages(10, 3, true, 42)), 0);
	ASSERT_TRUE(host_sees(&t, 10, 3, HOST_PATTERN));

	/* ...then a shared read of private pages... */
	ASSERT_EQ(guest_do(&t, check_pages(10, 3, false, HOST_PATTERN)), 0);
	ASSERT_EQ(t.counts.implicit_shared, 3);

	/* ...and a private read after that finds zeros. */
	ASSERT_EQ(guest_do(&t, check_pages(10, 3, true, 0)), 0);
	ASSERT_EQ(t.counts.implicit_private, 6);
	ASSERT_EQ(t.counts.explicit_private + t.counts.explicit_shared, 0);

	/* No exit for accesses that match: the state stays as it was. */
	ASSERT_EQ(guest_do(&t, check_pages(10, 3, true, 0)), 0);
	ASSERT_EQ(guest_do(&t, check_pages(13, 3, false, HOST_PATTERN)), 0);
	ASSERT_EQ(t.counts.implicit_private, 6);
	ASSERT_EQ(t.counts.implicit_shared, 3);
	test_fini(&t);
}

/* One page at a time, the exit says exactly what the access was. */
TEST(implicit_exit_contents)
{
	struct kvm_run *run;
	struct test t;

	test_init(&t, 1);
	run = t.vcpus[0]->run;
	guest_start(&t, check_pages(7, 1, true, 0));
	ASSERT_EQ(run->exit_reason, KVM_EXIT_MEMORY_ERROR);
	ASSERT_EQ(run->memory.flags, KVM_MEMORY_EXIT_FLAG_PRIVATE);
	ASSERT_EQ(run->memory.gpa, GPA + 7 * PAGE);
	ASSERT_EQ(run->memory.size, PAGE);

	/* Entering without converting repeats the exit. */
	vcpu_run(t.vcpus[0]);
	ASSERT_EQ(run->exit_reason, KVM_EXIT_MEMORY_ERROR);
	ASSERT_EQ(run->memory.gpa, GPA + 7 * PAGE);

	/* Converted, the private read completes... */
	private_region_convert(&t.r, GPA + 7 * PAGE, PAGE, true);
	vcpu_run(t.vcpus[0]);
	ASSERT_EQ(get_ucall(t.vcpus[0], NULL), UCALL_SYNC);

	/* ...and a shared read of the page now exits the other way. */
	guest_start(&t, check_pages(7, 1, false, HOST_PATTERN));
	ASSERT_EQ(run->exit_reason, KVM_EXIT_MEMORY_ERROR);
	ASSERT_EQ(run->memory.flags, 0);
	ASSERT_EQ(run->memory.gpa, GPA + 7 * PAGE);
	test_fini(&t);
}

/* Explicit and implicit conversions on neighbouring pages. */
TEST(explicit_and_implicit_mixed)
{
	uint64_t p;
	struct test t;

	test_init(&t, 1);
	for (p = 20; p < 28; p += 2) {
		ASSERT_EQ(guest_do(&t, convert(p, 1, true)), 0);
		ASSERT_EQ(guest_do(&t, write_pages(p, 1, true, p)), 0);
		ASSERT_EQ(guest_do(&t, write_pages(p + 1, 1, true, p + 1)), 0);
	}
	ASSERT_EQ(t.counts.explicit_private, 4);
	ASSERT_EQ(t.counts.implicit_private, 4);
	for (p = 20; p < 28; p++)
		ASSERT_EQ(guest_do(&t, check_pages(p, 1, true, p)), 0);

	/* Back the other way, alternating too. */
	for (p = 20; p < 28; p += 2) {
		ASSERT_EQ(guest_do(&t, check_pages(p, 1, false, HOST_PATTERN)), 0);
		ASSERT_EQ(guest_do(&t, convert(p + 1, 1, false)), 0);
	}
	ASSERT_EQ(t.counts.implicit_shared, 4);
	ASSERT_EQ(t.counts.explicit_shared, 4);
	ASSERT_EQ(guest_do(&t, check_pages(20, 8, false, HOST_PATTERN)), 0);
	ASSERT_TRUE(host_sees(&t, 20, 8, HOST_PATTERN));
	test_fini(&t);
}

#define NO_SLOT_GPA	0x30000000ULL
#define PLAIN_SLOT	11
#define PLAIN_GPA	0x38000000ULL
#define OTHER_GVA	0xc0000000ULL

/*
 * A private access at @gpa, where no private memory can exist: it exits,
 * flagged private, and keeps exiting, since converting cannot help.
 */
static void expect_no_private_memory(struct __test_metadata *_metadata,
				     bool plain_slot, uint64_t gpa)
{
	struct kvm_run *run;
	struct test t;

	test_init(&t, 1);
	run = t.vcpus[0]->run;
	if (plain_slot)
		vm_userspace_mem_region_add(t.vm, VM_MEM_SRC_ANONYMOUS,
					    PLAIN_GPA, PLAIN_SLOT, 1, 0);
	virt_pg_map(t.vm, OTHER_GVA, gpa | vm_private_gpa_mask(t.vm));
	guest_start(&t, read_at(OTHER_GVA));
	ASSERT_EQ(run->exit_reason, KVM_EXIT_MEMORY_ERROR);
	ASSERT_EQ(run->memory.flags, KVM_MEMORY_EXIT_FLAG_PRIVATE);
	ASSERT_EQ(run->memory.gpa, gpa);
	ASSERT_EQ(run->memory.size, PAGE);
	vcpu_run(t.vcpus[0]);
	ASSERT_EQ(run->exit_reason, KVM_EXIT_MEMORY_ERROR);
	ASSERT_EQ(run->memory.gpa, gpa);
	test_fini(&t);
}

TEST(private_access_without_memslot)
{
	expect_no_private_memory(_metadata, false, NO_SLOT_GPA);
}

TEST(private_access_to_slot_without_private_fd)
{
	expect_no_private_memory(_metadata, true, PLAIN_GPA);
}

/* Shared accesses to a slot without a private fd work as in any VM. */
TEST(shared_access_to_plain_slot)
{
	struct test t;

	test_init(&t, 1);
	vm_userspace_mem_region_add(t.vm, VM_MEM_SRC_ANONYMOUS, PLAIN_GPA,
				    PLAIN_SLOT, 1, 0);
	virt_pg_map(t.vm, OTHER_GVA, PLAIN_GPA);
	*(uint64_t *)addr_gpa2hva(t.vm, PLAIN_GPA) = 77;
	ASSERT_EQ(guest_do(&t, read_at(OTHER_GVA)), 77);
	test_fini(&t);
}

static uint64_t pf_error_code;

static void guest_pf_handler(struct ex_regs *regs)
{
	pf_error_code = regs->error_code;
	GUEST_SYNC(~0ULL);
}

/*
 * A guest page table entry with the bit above the private one set is no
 * private access: that bit is beyond what the guest may address, and the
 * guest takes a reserved-bit page fault instead of reaching KVM.
 */
TEST(bit_above_the_private_bit)
{
	struct test t;
	uint64_t pte;

	test_init(&t, 1);
	vm_init_descriptor_tables(t.vm);
	vcpu_init_descriptor_tables(t.vcpus[0]);
	vm_install_exception_handler(t.vm, PF_VECTOR, guest_pf_handler);
	virt_pg_map(t.vm, OTHER_GVA, GPA);
	pte = vm_get_page_table_entry(t.vm, t.vcpus[0], OTHER_GVA);
	vm_set_page_table_entry(t.vm, t.vcpus[0], OTHER_GVA,
				pte | vm_private_gpa_mask(t.vm) << 1);
	ASSERT_EQ(guest_do(&t, read_at(OTHER_GVA)), ~0ULL);
	sync_global_from_guest(t.vm, pf_error_code);
	ASSERT_TRUE(pf_error_code & PF_ERROR_RSVD);
	ASSERT_EQ(t.counts.implicit_private + t.counts.implicit_shared, 0);
	test_fini(&t);
}

static void expect_stats(struct __test_metadata *_metadata, struct test *t,
			 uint64_t faults, uint64_t shared_faults,
			 uint64_t explicit_exits, uint64_t implicit_exits,
			 uint64_t zapped)
{
	ASSERT_EQ(vm_get_stat(t->vm, "private_mem_faults"), faults);
	ASSERT_EQ(vm_get_stat(t->vm, "private_mem_shared_faults"), shared_faults);
	ASSERT_EQ(vm_get_stat(t->vm, "private_mem_explicit_exits"),
		  explicit_exits);
	ASSERT_EQ(vm_get_stat(t->vm, "private_mem_implicit_exits"),
		  implicit_exits);
	ASSERT_EQ(vm_get_stat(t->vm, "private_mem_zapped_pages"), zapped);
}

/* AnonHugePages of the mapping at @hva, in KiB, from /proc/self/smaps. */
static long anon_huge_kb(void *hva)
{
	unsigned long start, end, addr = (unsigned long)hva;
	bool here = false;
	char line[256];
	long kb = -1;
	FILE *f;

	f = fopen("/proc/self/smaps", "r");
	if (!f)
		return -1;
	while (fgets(line, sizeof(line), f)) {
		if (sscanf(line, "%lx-%lx ", &start, &end) == 2)
			here = start <= addr && addr < end;
		else if (here && sscanf(line, "AnonHugePages: %ld", &kb) == 1)
			break;
	}
	fclose(f);
	return kb;
}

/*
 * A shared page next to a private one, both in a huge page of the host:
 * the shared fault maps 4 KiB only, or a shared access to the private
 * page would reach the host's page through the huge mapping, without the
 * exit that tells userspace.
 */
TEST(huge_shared_mapping_never_covers_private_pages)
{
	struct test t;

	test_init_src(&t, 1, VM_MEM_SRC_ANONYMOUS_THP);
	if (anon_huge_kb(t.r.hva) <= 0) {
		test_fini(&t);
		SKIP(return, "the shared memory did not get huge pages");
	}
	private_region_convert(&t.r, GPA + PAGE, PAGE, true);
	ASSERT_EQ(guest_do(&t, check_pages(0, 1, false, HOST_PATTERN)), 0);
	ASSERT_EQ(t.counts.implicit_shared, 0);
	ASSERT_EQ(guest_do(&t, check_pages(1, 1, false, HOST_PATTERN)), 0);
	ASSERT_EQ(t.counts.implicit_shared, 1);
	test_fini(&t);
}

/*
 * The VM statistics count a known sequence of events exactly.  Zaps count
 * the mappings an invalidation removed, shared or private, not the pages
 * it covered.
 */
TEST(statistics)
{
	struct test t;

	test_init(&t, 1);
	expect_stats(_metadata, &t, 0, 0, 0, 0, 0);

	/* One hypercall for four unmapped pages: nothing to zap. */
	ASSERT_EQ(guest_do(&t, convert(0, 4, true)), 0);
	expect_stats(_metadata, &t, 0, 0, 1, 0, 0);

	/* Each private page faults in once. */
	ASSERT_EQ(guest_do(&t, write_pages(0, 4, true, 1)), 0);
	expect_stats(_metadata, &t, 4, 0, 1, 0, 0);

	/* Shared pages of the slot count as shared faults. */
	ASSERT_EQ(guest_do(&t, check_pages(8, 2, false, HOST_PATTERN)), 0);
	expect_stats(_metadata, &t, 4, 2, 1, 0, 0);

	/*
	 * A private read of a mapped shared page: an exit, the zap of its
	 * shared mapping, a private fault.
	 */
	ASSERT_EQ(guest_do(&t, check_pages(8, 1, true, 0)), 0);
	expect_stats(_metadata, &t, 5, 2, 1, 1, 1);

	/* A punch from the host zaps the four private mappings, no exit. */
	private_region_convert(&t.r, GPA, 4 * PAGE, false);
	expect_stats(_metadata, &t, 5, 2, 1, 1, 5);

	/* The shared pages behind it fault in as shared again. */
	ASSERT_EQ(guest_do(&t, check_pages(0, 4, false, HOST_PATTERN)), 0);
	expect_stats(_metadata, &t, 5, 6, 1, 1, 5);

	/* Converting pages the guest never mapped zaps nothing. */
	private_region_convert(&t.r, GPA + 16 * PAGE, 4 * PAGE, true);
	private_region_convert(&t.r, GPA + 16 * PAGE, 4 * PAGE, false);
	expect_stats(_metadata, &t, 5, 6, 1, 1, 5);
	test_fini(&t);
}

#define BLOCK		512	/* pages of a 2 MiB block */

/* The faults of one kind, private or shared, that mapped 2 MiB. */
static uint64_t faults_2m(struct test *t, bool private)
{
	return vm_get_stat(t->vm, private ? "private_mem_faults_2m" :
					    "private_mem_shared_faults_2m");
}

/*
 * A 2 MiB block converted to private whole, in a file that may hold huge
 * pages, is mapped with one fault.  A punch of one page inside takes the
 * huge mapping out and splits the folio: that page exits, its neighbours
 * keep their data, 4 KiB at a time, and the page reads as zeros once it
 * is private again.  Converted whole once more, the block is huge again.
 */
TEST(huge_private_mapping)
{
	const uint64_t first = BLOCK, hole = BLOCK + 88;
	struct kvm_run *run;
	uint64_t pages_2m;
	struct ucall uc;
	struct test t;

	test_init_huge(&t, VM_MEM_SRC_ANONYMOUS_THP, 0);
	run = t.vcpus[0]->run;
	pages_2m = vm_get_stat(t.vm, "pages_2m");

	ASSERT_EQ(guest_do(&t, convert(first, BLOCK, true)), 0);
	ASSERT_EQ(guest_do(&t, write_pages(first, BLOCK, true, 7)), 0);
	ASSERT_EQ(vm_get_stat(t.vm, "private_mem_faults"), 1);
	ASSERT_EQ(faults_2m(&t, true), 1);
	ASSERT_EQ(vm_get_stat(t.vm, "pages_2m"), pages_2m + 1);

	private_region_convert(&t.r, GPA + hole * PAGE, PAGE, false);
	ASSERT_EQ(vm_get_stat(t.vm, "pages_2m"), pages_2m);

	guest_start(&t, check_pages(hole, 1, true, 0));
	ASSERT_EQ(run->exit_reason, KVM_EXIT_MEMORY_ERROR);
	ASSERT_EQ(run->memory.flags, KVM_MEMORY_EXIT_FLAG_PRIVATE);
	ASSERT_EQ(run->memory.gpa, GPA + hole * PAGE);
	private_region_convert(&t.r, GPA + hole * PAGE, PAGE, true);
	vcpu_run(t.vcpus[0]);
	ASSERT_EQ(get_ucall(t.vcpus[0], &uc), UCALL_SYNC);
	ASSERT_EQ(uc.args[1], 0);

	ASSERT_EQ(guest_do(&t, check_pages(first, hole - first, true, 7)), 0);
	ASSERT_EQ(guest_do(&t, check_pages(hole + 1, first + BLOCK - hole - 1,
					   true, 7)), 0);
	ASSERT_EQ(faults_2m(&t, true), 1);
	ASSERT_EQ(vm_get_stat(t.vm, "pages_2m"), pages_2m);

	ASSERT_EQ(guest_do(&t, convert(first, BLOCK, false)), 0);
	ASSERT_EQ(guest_do(&t, convert(first, BLOCK, true)), 0);
	ASSERT_EQ(guest_do(&t, check_pages(first, BLOCK, true, 0)), 0);
	ASSERT_EQ(faults_2m(&t, true), 2);
	ASSERT_EQ(vm_get_stat(t.vm, "pages_2m"), pages_2m + 1);
	test_fini(&t);
}

/*
 * If a punch cannot split the huge page, it fails and changes nothing: the
 * page is still private, the guest's data is all there, and the block maps
 * 2 MiB again.
 */
TEST(huge_failed_split_keeps_the_data)
{
	struct test t;

	test_init_huge(&t, VM_MEM_SRC_ANONYMOUS_THP, 0);
	if (!memfile_debugfs_set("fail_inaccessible_split/verbose", "0")) {
		test_fini(&t);
		SKIP(return, "needs CONFIG_MEMFILE_NOTIFIER_FAULT_INJECTION");
	}
	ASSERT_EQ(guest_do(&t, convert(0, BLOCK, true)), 0);
	ASSERT_EQ(guest_do(&t, write_pages(0, BLOCK, true, 9)), 0);
	ASSERT_EQ(faults_2m(&t, true), 1);

	ASSERT_TRUE(memfile_debugfs_set("fail_inaccessible_split/times", "1"));
	ASSERT_TRUE(memfile_debugfs_set("fail_inaccessible_split/probability",
					"100"));
	ASSERT_EQ(fallocate(t.r.memfd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE,
			    5 * PAGE, PAGE), -1);
	ASSERT_EQ(errno, EBUSY);
	ASSERT_TRUE(memfile_debugfs_set("fail_inaccessible_split/probability",
					"0"));

	ASSERT_EQ(guest_do(&t, check_pages(0, BLOCK, true, 9)), 0);
	ASSERT_EQ(t.counts.implicit_private + t.counts.implicit_shared, 0);
	ASSERT_EQ(faults_2m(&t, true), 2);
	test_fini(&t);
}

/*
 * With huge pages behind the shared memory, a shared block whose range of
 * the file is a hole maps 2 MiB.  Once one page inside is private, a
 * shared read of it exits, and its neighbours map 4 KiB.
 */
TEST(huge_shared_mapping)
{
	const uint64_t first = BLOCK, page = BLOCK + 8;
	struct kvm_run *run;
	struct ucall uc;
	struct test t;

	test_init_huge(&t, VM_MEM_SRC_ANONYMOUS_THP, 0);
	run = t.vcpus[0]->run;
	if (anon_huge_kb(t.r.hva) < (long)(t.r.size >> 10)) {
		test_fini(&t);
		SKIP(return, "the shared memory did not get huge pages");
	}
	ASSERT_EQ(guest_do(&t, check_pages(first, BLOCK, false, HOST_PATTERN)), 0);
	ASSERT_EQ(vm_get_stat(t.vm, "private_mem_shared_faults"), 1);
	ASSERT_EQ(faults_2m(&t, false), 1);

	private_region_convert(&t.r, GPA + page * PAGE, PAGE, true);
	guest_start(&t, check_pages(page, 1, false, HOST_PATTERN));
	ASSERT_EQ(run->exit_reason, KVM_EXIT_MEMORY_ERROR);
	ASSERT_EQ(run->memory.flags, 0);
	ASSERT_EQ(run->memory.gpa, GPA + page * PAGE);

	/* Shared again throughout, the block is one mapping again. */
	private_region_convert(&t.r, GPA + page * PAGE, PAGE, false);
	vcpu_run(t.vcpus[0]);
	ASSERT_EQ(get_ucall(t.vcpus[0], &uc), UCALL_SYNC);
	ASSERT_EQ(uc.args[1], 0);
	ASSERT_EQ(faults_2m(&t, false), 2);

	/* With a private page inside, its neighbours map 4 KiB. */
	private_region_convert(&t.r, GPA + page * PAGE, PAGE, true);
	ASSERT_EQ(guest_do(&t, check_pages(page + 1, 1, false, HOST_PATTERN)), 0);
	ASSERT_EQ(faults_2m(&t, false), 2);
	ASSERT_EQ(vm_get_stat(t.vm, "private_mem_shared_faults"), 3);
	test_fini(&t);
}

/*
 * A host thread makes @page private, with the memfile holding the change
 * open inside its invalidation (change_delay_ms), while the guest reads
 * @beside, a page of the same block, shared: the fault on @beside comes
 * while the block changes.
 */
#define CHANGE_DELAY_MS	"4000"
#define CHANGE_WAIT_US	(10 * 1000 * 1000)

struct change {
	struct private_region *r;
	uint64_t page;
	pid_t tid;
	bool done;
};

static void *change_page(void *arg)
{
	struct change *c = arg;

	WRITE_ONCE(c->tid, syscall(SYS_gettid));
	private_region_convert(c->r, GPA + c->page * PAGE, PAGE, true);
	WRITE_ONCE(c->done, true);
	return NULL;
}

/* Whether thread @tid sleeps uninterruptibly, as change_delay_ms makes it. */
static bool thread_waits(pid_t tid)
{
	char path[64], buf[512], *state;
	ssize_t n;
	int fd;

	snprintf(path, sizeof(path), "/proc/self/task/%d/stat", tid);
	fd = open(path, O_RDONLY);
	if (fd < 0)
		return false;
	n = read(fd, buf, sizeof(buf) - 1);
	close(fd);
	if (n <= 0)
		return false;
	buf[n] = '\0';
	/* "tid (comm) state ...", and comm may hold anything. */
	state = strrchr(buf, ')');
	return state && state[1] == ' ' && state[2] == 'D';
}

/*
 * Returns the 2 MiB shared faults that the read of @beside made, and
 * leaves vCPU 0 where a shared read of @page, private by then, took it.
 */
static uint64_t read_beside_a_change(struct __test_metadata *_metadata,
				     struct test *t, uint64_t page,
				     uint64_t beside)
{
	struct change c = { .r = &t->r, .page = page };
	uint64_t faults = faults_2m(t, false), waited;
	pthread_t thread;

	ASSERT_TRUE(memfile_debugfs_set("change_delay_ms", CHANGE_DELAY_MS));
	ASSERT_EQ(pthread_create(&thread, NULL, change_page, &c), 0);
	for (waited = 0; waited < CHANGE_WAIT_US; waited += 10000) {
		if (READ_ONCE(c.tid) && thread_waits(READ_ONCE(c.tid)))
			break;
		usleep(10000);
	}
	ASSERT_TRUE(memfile_debugfs_set("change_delay_ms", "0"));
	ASSERT_LT(waited, CHANGE_WAIT_US) {
		TH_LOG("the conversion never waited in change_delay_ms");
	}

	ASSERT_EQ(guest_do(t, check_pages(beside, 1, false, HOST_PATTERN)), 0);
	ASSERT_FALSE(READ_ONCE(c.done)) {
		TH_LOG("the change ended before the fault beside it");
	}
	faults = faults_2m(t, false) - faults;
	ASSERT_EQ(pthread_join(thread, NULL), 0);
	ASSERT_TRUE(c.done);

	guest_start(t, check_pages(page, 1, false, HOST_PATTERN));
	return faults;
}

/*
 * A shared fault beside a page that is changing maps 4 KiB, though the
 * block's range of the file is still a hole: a 2 MiB mapping would stay
 * over the page once it is private, and a shared read of it would not
 * exit.
 */
TEST(huge_shared_fault_beside_a_change_maps_4k)
{
	const uint64_t page = BLOCK + 8;
	struct kvm_run *run;
	struct test t;

	test_init_huge(&t, VM_MEM_SRC_ANONYMOUS_THP, 0);
	run = t.vcpus[0]->run;
	if (!memfile_debugfs_set("change_delay_ms", "0")) {
		test_fini(&t);
		SKIP(return, "needs CONFIG_MEMFILE_NOTIFIER_FAULT_INJECTION");
	}
	if (anon_huge_kb(t.r.hva) < (long)(t.r.size >> 10)) {
		test_fini(&t);
		SKIP(return, "the shared memory did not get huge pages");
	}
	ASSERT_EQ(read_beside_a_change(_metadata, &t, page, page + 1), 0);
	ASSERT_EQ(vm_get_stat(t.vm, "private_mem_shared_faults"), 1);
	ASSERT_EQ(run->exit_reason, KVM_EXIT_MEMORY_ERROR);
	ASSERT_EQ(run->memory.flags, 0);
	ASSERT_EQ(run->memory.gpa, GPA + page * PAGE);
	test_fini(&t);
}

/*
 * The negative control of the test above: with KVM's check of changing
 * blocks failed for shared faults, the same steps map the block 2 MiB, and
 * the guest reads the host's page of a private gfn without an exit.
 */
#define FAIL_BLOCK_CHECK	"fail_private_mem_block_check/"

FIXTURE(block_check) {};

/*
 * A skip here still runs the test body under the 6.1 harness, so the
 * body checks _metadata->skip first.
 */
FIXTURE_SETUP(block_check)
{
	if (!kvm_debugfs_set(FAIL_BLOCK_CHECK "verbose", "0") ||
	    !memfile_debugfs_set("change_delay_ms", "0"))
		SKIP(return, "needs %s and %s",
		     "CONFIG_KVM_PRIVATE_MEM_FAULT_INJECTION",
		     "CONFIG_MEMFILE_NOTIFIER_FAULT_INJECTION");
	ASSERT_TRUE(kvm_debugfs_set(FAIL_BLOCK_CHECK "times", "-1"));
	ASSERT_TRUE(kvm_debugfs_set(FAIL_BLOCK_CHECK "probability", "100"));
}

FIXTURE_TEARDOWN(block_check)
{
	kvm_debugfs_set(FAIL_BLOCK_CHECK "probability", "0");
	memfile_debugfs_set("change_delay_ms", "0");
}

TEST_F(block_check, control_huge_mapping_over_a_change_is_caught)
{
	const uint64_t page = BLOCK + 8;
	struct ucall uc;
	struct test t;

	if (_metadata->skip)
		return;
	test_init_huge(&t, VM_MEM_SRC_ANONYMOUS_THP, 0);
	if (anon_huge_kb(t.r.hva) < (long)(t.r.size >> 10)) {
		test_fini(&t);
		SKIP(return, "the shared memory did not get huge pages");
	}
	ASSERT_EQ(read_beside_a_change(_metadata, &t, page, page + 1), 1);
	ASSERT_EQ(get_ucall(t.vcpus[0], &uc), UCALL_SYNC);
	ASSERT_EQ(uc.args[1], 0);
	test_fini(&t);
}

/*
 * With file offsets that are not congruent to the gfns modulo 2 MiB, the
 * file's huge folios cannot back a block: every fault maps 4 KiB, and the
 * data is right.
 */
TEST(huge_misaligned_offset_maps_4k)
{
	struct test t;

	test_init_huge(&t, VM_MEM_SRC_ANONYMOUS_THP, PAGE);
	ASSERT_EQ(guest_do(&t, convert(0, NPAGES, true)), 0);
	ASSERT_EQ(guest_do(&t, write_pages(0, NPAGES, true, 3)), 0);
	ASSERT_EQ(guest_do(&t, check_pages(0, NPAGES, true, 3)), 0);
	ASSERT_EQ(vm_get_stat(t.vm, "private_mem_faults"), NPAGES);
	ASSERT_EQ(faults_2m(&t, true), 0);
	test_fini(&t);
}

/* A file without MFD_INACCESSIBLE_HUGE is mapped 4 KiB, as it always was. */
TEST(huge_needs_the_flag)
{
	struct test t;

	test_init_src(&t, 1, VM_MEM_SRC_ANONYMOUS_THP);
	ASSERT_EQ(guest_do(&t, convert(0, BLOCK, true)), 0);
	ASSERT_EQ(guest_do(&t, write_pages(0, BLOCK, true, 3)), 0);
	ASSERT_EQ(vm_get_stat(t.vm, "private_mem_faults"), BLOCK);
	ASSERT_EQ(faults_2m(&t, true), 0);
	test_fini(&t);
}

/*
 * Batched conversions (KVM_HC_MAP_GPA_BATCH): the host writes the list
 * into a page of ordinary guest memory, and the guest passes its gpa.
 */
struct batch {
	struct kvm_map_gpa_batch *list;
	uint64_t gpa;
};

static void batch_init(struct test *t, struct batch *b, bool enable)
{
	vm_vaddr_t gva = vm_vaddr_alloc_page(t->vm);

	b->list = addr_gva2hva(t->vm, gva);
	b->gpa = addr_gva2gpa(t->vm, gva);
	memset(b->list, 0, PAGE);
	b->list->end_entry = -1;	/* empty, until batch_add() */
	if (enable)
		vm_enable_cap(t->vm, KVM_CAP_MAP_GPA_BATCH, 0);
}

/* Append to @b the page @first, or with @huge the 2 MiB block from it. */
static struct kvm_map_gpa_batch_entry *batch_add(struct batch *b,
						 uint64_t first, bool huge,
						 bool private)
{
	struct kvm_map_gpa_batch_entry *e;

	e = &b->list->entries[++b->list->end_entry];
	*e = (struct kvm_map_gpa_batch_entry){
		.gfn = (GPA >> 12) + first,
		.op = private ? KVM_MAP_GPA_BATCH_OP_PRIVATE :
				KVM_MAP_GPA_BATCH_OP_SHARED,
		.page_size = huge ? KVM_MAP_GPA_BATCH_PAGE_2M :
				    KVM_MAP_GPA_BATCH_PAGE_4K,
	};
	return e;
}

static struct guest_cmd batch_call(uint64_t gpa, uint64_t a1)
{
	return (struct guest_cmd){ .op = OP_BATCH, .addr = gpa, .val = a1 };
}

/* Whether page @i of @t's region is private: the memfd holds it. */
static bool is_private(struct test *t, uint64_t i)
{
	off_t off = t->r.offset + i * PAGE;

	return lseek(t->r.memfd, off, SEEK_DATA) == off;
}

/*
 * KVM_CAP_MAP_GPA_BATCH reports the largest list where private memory
 * exists, and must be enabled, on a private-memory VM only, before the
 * hypercall exits; until then the guest gets -KVM_ENOSYS.
 */
TEST(batch_needs_the_capability)
{
	struct kvm_vcpu *vcpu;
	struct kvm_vm *vm;
	struct batch b;
	struct test t;

	ASSERT_EQ(kvm_check_cap(KVM_CAP_MAP_GPA_BATCH),
		  KVM_MAP_GPA_BATCH_MAX_ENTRIES);
	vm = vm_create_with_one_vcpu(&vcpu, guest_code);
	ASSERT_EQ(vm_check_cap(vm, KVM_CAP_MAP_GPA_BATCH), 0);
	ASSERT_EQ(__vm_enable_cap(vm, KVM_CAP_MAP_GPA_BATCH, 0), -1);
	ASSERT_EQ(errno, EINVAL);
	kvm_vm_free(vm);

	test_init(&t, 1);
	ASSERT_EQ(vm_check_cap(t.vm, KVM_CAP_MAP_GPA_BATCH),
		  KVM_MAP_GPA_BATCH_MAX_ENTRIES);
	ASSERT_EQ(__vm_enable_cap(t.vm, KVM_CAP_MAP_GPA_BATCH, 1), -1);
	ASSERT_EQ(errno, EINVAL);
	batch_init(&t, &b, false);
	batch_add(&b, 0, false, true);
	ASSERT_EQ(guest_do(&t, batch_call(b.gpa, 0)), -KVM_ENOSYS);
	ASSERT_EQ(vm_get_stat(t.vm, "private_mem_batches"), 0);
	ASSERT_FALSE(is_private(&t, 0));

	vm_enable_cap(t.vm, KVM_CAP_MAP_GPA_BATCH, 0);
	ASSERT_EQ(guest_do(&t, batch_call(b.gpa, 0)), 0);
	ASSERT_EQ(t.counts.batches, 1);
	ASSERT_TRUE(is_private(&t, 0));
	test_fini(&t);
}

/*
 * A malformed batch fails in the guest with its documented error, without
 * an exit, and converts nothing.
 */
TEST(batch_malformed)
{
	struct kvm_map_gpa_batch_entry *e;
	uint64_t bit;
	struct batch b;
	struct test t;

	test_init(&t, 1);
	bit = vm_private_gpa_mask(t.vm);
	batch_init(&t, &b, true);
	e = batch_add(&b, 0, false, true);

	/* The call: reserved arguments, the list's address. */
	ASSERT_EQ(guest_do(&t, batch_call(b.gpa, 1)), -KVM_EINVAL);
	ASSERT_EQ(guest_do(&t, batch_call(b.gpa + 8, 0)), -KVM_EINVAL);
	ASSERT_EQ(guest_do(&t, batch_call(b.gpa | bit, 0)), -KVM_EINVAL);
	/* Not in shared memory: no memslot, or a private page. */
	ASSERT_EQ(guest_do(&t, batch_call(GPA + 2 * NPAGES * PAGE, 0)),
		  -KVM_EFAULT);
	private_region_convert(&t.r, GPA + 100 * PAGE, PAGE, true);
	ASSERT_EQ(guest_do(&t, batch_call(GPA + 100 * PAGE, 0)), -KVM_EFAULT);

	/* The header. */
	b.list->reserved = 1;
	ASSERT_EQ(guest_do(&t, batch_call(b.gpa, 0)), -KVM_EINVAL);
	b.list->reserved = 0;
	b.list->end_entry = KVM_MAP_GPA_BATCH_MAX_ENTRIES;
	ASSERT_EQ(guest_do(&t, batch_call(b.gpa, 0)), -KVM_E2BIG);
	b.list->end_entry = 0;

	/* The entry: operation, page size, reserved bits. */
	e->op = 0;
	ASSERT_EQ(guest_do(&t, batch_call(b.gpa, 0)), -KVM_EINVAL);
	e->op = 3;
	ASSERT_EQ(guest_do(&t, batch_call(b.gpa, 0)), -KVM_EINVAL);
	e->op = KVM_MAP_GPA_BATCH_OP_PRIVATE;
	e->page_size = 2;
	ASSERT_EQ(guest_do(&t, batch_call(b.gpa, 0)), -KVM_EINVAL);
	e->page_size = KVM_MAP_GPA_BATCH_PAGE_4K;
	e->reserved = 1;
	ASSERT_EQ(guest_do(&t, batch_call(b.gpa, 0)), -KVM_EINVAL);
	e->reserved = 0;

	/* The range: 2 MiB alignment, memslots, the private bit. */
	e->page_size = KVM_MAP_GPA_BATCH_PAGE_2M;
	e->gfn = (GPA >> 12) + 1;
	ASSERT_EQ(guest_do(&t, batch_call(b.gpa, 0)), -KVM_EINVAL);
	e->page_size = KVM_MAP_GPA_BATCH_PAGE_4K;
	e->gfn = (GPA >> 12) + NPAGES;
	ASSERT_EQ(guest_do(&t, batch_call(b.gpa, 0)), -KVM_EINVAL);
	e->gfn = b.gpa >> 12;		/* a memslot without private memory */
	ASSERT_EQ(guest_do(&t, batch_call(b.gpa, 0)), -KVM_EINVAL);
	e->gfn = (GPA | bit) >> 12;
	ASSERT_EQ(guest_do(&t, batch_call(b.gpa, 0)), -KVM_EINVAL);
	/* A bad entry anywhere after cur_entry fails the whole list. */
	e->gfn = GPA >> 12;
	batch_add(&b, 1, false, true)->op = 0;
	ASSERT_EQ(guest_do(&t, batch_call(b.gpa, 0)), -KVM_EINVAL);

	ASSERT_EQ(vm_get_stat(t.vm, "private_mem_batches"), 0);
	ASSERT_EQ(t.counts.batches, 0);
	ASSERT_FALSE(is_private(&t, 0));
	ASSERT_FALSE(is_private(&t, 1));

	/* Entries before cur_entry are not looked at; none left is done. */
	b.list->cur_entry = 2;
	ASSERT_EQ(guest_do(&t, batch_call(b.gpa, 0)), 0);
	ASSERT_EQ(vm_get_stat(t.vm, "private_mem_batches"), 0);
	b.list->cur_entry = 1;
	b.list->entries[1].op = KVM_MAP_GPA_BATCH_OP_PRIVATE;
	ASSERT_EQ(guest_do(&t, batch_call(b.gpa, 0)), 0);
	ASSERT_EQ(vm_get_stat(t.vm, "private_mem_batches"), 1);
	ASSERT_EQ(vm_get_stat(t.vm, "private_mem_batch_entries"), 1);
	ASSERT_FALSE(is_private(&t, 0));
	ASSERT_TRUE(is_private(&t, 1));
	test_fini(&t);
}

/* Each batch test runs with both of the library's ways to carry it out. */
FIXTURE(batch) {
	struct test t;
	struct batch b;
	struct io_uring ring;
};

FIXTURE_VARIANT(batch) {
	bool uring;
};

FIXTURE_VARIANT_ADD(batch, sync) {
	.uring = false,
};

FIXTURE_VARIANT_ADD(batch, uring) {
	.uring = true,
};

FIXTURE_SETUP(batch)
{
	test_init_huge(&self->t, VM_MEM_SRC_ANONYMOUS_THP, 0);
	batch_init(&self->t, &self->b, true);
	if (variant->uring) {
		batch_ring_init(&self->ring);
		self->t.r.ring = &self->ring;
	}
}

FIXTURE_TEARDOWN(batch)
{
	if (variant->uring)
		io_uring_queue_exit(&self->ring);
	test_fini(&self->t);
}

/*
 * One exit carries a batch that goes both ways, with a 2 MiB entry: each
 * page ends up as the entries say in order, the guest reads zeros from
 * its new private pages, and the host's data from pages that stayed
 * shared, while pages that were private in between read as released.
 */
TEST_F(batch, mixed_directions_and_sizes)
{
	struct test *t = &self->t;
	struct batch *b = &self->b;
	uint64_t i;

	batch_add(b, 0, false, true);
	batch_add(b, 1, false, true);
	batch_add(b, 2, false, true);
	batch_add(b, BLOCK, true, true);
	batch_add(b, 10, false, true);
	batch_add(b, 1, false, false);
	batch_add(b, BLOCK + 88, false, false);
	ASSERT_EQ(guest_do(t, batch_call(b->gpa, 0)), 0);
	ASSERT_EQ(t->counts.batches, 1);
	ASSERT_EQ(t->counts.batch_entries, 7);
	ASSERT_EQ(t->counts.explicit_private + t->counts.implicit_private, 0);
	ASSERT_EQ(vm_get_stat(t->vm, "private_mem_batches"), 1);
	ASSERT_EQ(vm_get_stat(t->vm, "private_mem_batch_entries"), 7);
	ASSERT_EQ(b->list->cur_entry, 7);
	for (i = 0; i < 7; i++)
		ASSERT_EQ(b->list->entries[i].status, 0);

	for (i = 0; i < NPAGES; i++)
		ASSERT_EQ(is_private(t, i), i == 0 || i == 2 || i == 10 ||
			  (i >= BLOCK && i != BLOCK + 88)) {
			TH_LOG("page %lu", i);
		}
	ASSERT_EQ(guest_do(t, check_pages(0, 1, true, 0)), 0);
	ASSERT_EQ(guest_do(t, check_pages(2, 1, true, 0)), 0);
	ASSERT_EQ(guest_do(t, check_pages(10, 1, true, 0)), 0);
	ASSERT_EQ(guest_do(t, check_pages(BLOCK, 88, true, 0)), 0);
	ASSERT_EQ(guest_do(t, write_pages(BLOCK + 89, BLOCK - 89, true, 4)), 0);
	ASSERT_EQ(guest_do(t, check_pages(BLOCK + 89, BLOCK - 89, true, 4)), 0);
	ASSERT_EQ(guest_do(t, check_pages(3, 7, false, HOST_PATTERN)), 0);
	ASSERT_EQ(guest_do(t, check_pages(1, 1, false, 0)), 0);
	ASSERT_EQ(guest_do(t, check_pages(BLOCK + 88, 1, false, 0)), 0);
	ASSERT_EQ(t->counts.implicit_private + t->counts.implicit_shared, 0);
}

/*
 * An entry that fails stops the batch there, with its errno, and the
 * guest goes on from it with the same list once the cause is gone.  The
 * failure is a split of a huge folio forced to fail.
 */
TEST_F(batch, resume_after_a_failed_entry)
{
	struct test *t = &self->t;
	struct batch *b = &self->b;

	if (!memfile_debugfs_set("fail_inaccessible_split/verbose", "0"))
		SKIP(return, "needs CONFIG_MEMFILE_NOTIFIER_FAULT_INJECTION");
	private_region_convert(&t->r, GPA, BLOCK * PAGE, true);
	ASSERT_EQ(guest_do(t, write_pages(0, BLOCK, true, 6)), 0);

	batch_add(b, BLOCK, false, true);
	batch_add(b, 5, false, false);		/* splits the huge folio */
	batch_add(b, BLOCK + 1, false, true);
	ASSERT_TRUE(memfile_debugfs_set("fail_inaccessible_split/times", "-1"));
	ASSERT_TRUE(memfile_debugfs_set("fail_inaccessible_split/probability",
					"100"));
	ASSERT_EQ(guest_do(t, batch_call(b->gpa, 0)), 0);
	ASSERT_TRUE(memfile_debugfs_set("fail_inaccessible_split/probability",
					"0"));
	ASSERT_EQ(b->list->cur_entry, 1);
	ASSERT_EQ(b->list->entries[0].status, 0);
	ASSERT_EQ(b->list->entries[1].status, EBUSY);
	ASSERT_TRUE(is_private(t, BLOCK));
	ASSERT_TRUE(is_private(t, 5));
	ASSERT_FALSE(is_private(t, BLOCK + 1));
	ASSERT_EQ(guest_do(t, check_pages(0, BLOCK, true, 6)), 0);

	ASSERT_EQ(guest_do(t, batch_call(b->gpa, 0)), 0);
	ASSERT_EQ(t->counts.batches, 2);
	ASSERT_EQ(t->counts.batch_entries, 3 + 2);
	ASSERT_EQ(b->list->cur_entry, 3);
	ASSERT_EQ(b->list->entries[1].status, 0);
	ASSERT_EQ(b->list->entries[2].status, 0);
	ASSERT_FALSE(is_private(t, 5));
	ASSERT_TRUE(is_private(t, BLOCK + 1));
	ASSERT_EQ(guest_do(t, check_pages(0, 5, true, 6)), 0);
	ASSERT_EQ(guest_do(t, check_pages(6, BLOCK - 6, true, 6)), 0);
	ASSERT_EQ(t->counts.implicit_private + t->counts.implicit_shared, 0);
}

/*
 * Random batches, some with an entry outside the region, applied entry by
 * entry to one region and with io_uring to another from the same start:
 * the same entries done, the same statuses, the same pages private, the
 * same shared pages released.  No guest runs; the lists live in host
 * memory.
 */
#define RANDOM_ROUNDS	40
#define GPA2		(GPA + 2 * NPAGES * PAGE)

static bool page_released(struct private_region *r, uint64_t i)
{
	return !*(uint64_t *)(r->hva + i * PAGE);
}

static void random_batch(struct kvm_map_gpa_batch *a,
			 struct kvm_map_gpa_batch *b)
{
	unsigned int i, n = 1 + random() % KVM_MAP_GPA_BATCH_MAX_ENTRIES;

	memset(a, 0, PAGE);
	a->end_entry = n - 1;
	for (i = 0; i < n; i++) {
		struct kvm_map_gpa_batch_entry *e = &a->entries[i];
		bool huge = !(random() % 16);

		e->page_size = huge ? KVM_MAP_GPA_BATCH_PAGE_2M :
				      KVM_MAP_GPA_BATCH_PAGE_4K;
		e->op = random() % 2 ? KVM_MAP_GPA_BATCH_OP_PRIVATE :
				       KVM_MAP_GPA_BATCH_OP_SHARED;
		/* Runs of neighbours, to coalesce, and now and then a jump. */
		if (i && !huge && random() % 4 &&
		    a->entries[i - 1].page_size == KVM_MAP_GPA_BATCH_PAGE_4K)
			e->gfn = a->entries[i - 1].gfn + 1;
		else
			e->gfn = (GPA >> 12) + random() % NPAGES;
		if (huge)
			e->gfn &= ~(uint64_t)(BLOCK - 1);
		if (!(random() % 64))
			e->gfn += NPAGES;	/* outside the region */
	}
	memcpy(b, a, PAGE);
	for (i = 0; i < n; i++)
		b->entries[i].gfn += (GPA2 - GPA) >> 12;
}

TEST(batch_sync_and_uring_agree)
{
	struct kvm_map_gpa_batch *la, *lb;
	struct batch_stats sa = {}, sb = {};
	struct private_region b;
	struct io_uring ring;
	unsigned int round, i;
	struct test t;

	test_init(&t, 1);
	private_region_add(&b, t.vm, SLOT + 1, GPA2, NPAGES);
	memset(b.hva, 0x5a, b.size);
	batch_ring_init(&ring);
	la = calloc(1, PAGE);
	lb = calloc(1, PAGE);
	srandom(0x5eed);
	for (round = 0; round < RANDOM_ROUNDS; round++) {
		unsigned int da, db;

		random_batch(la, lb);
		da = private_region_apply_batch(&t.r, la, NULL, &sa);
		db = private_region_apply_batch(&b, lb, &ring, &sb);
		ASSERT_EQ(da, db);
		ASSERT_EQ(la->cur_entry, lb->cur_entry);
		for (i = 0; i <= la->end_entry && i <= la->cur_entry; i++)
			ASSERT_EQ(la->entries[i].status, lb->entries[i].status);
		for (i = 0; i < NPAGES; i++) {
			off_t off = i * PAGE;

			ASSERT_EQ(lseek(t.r.memfd, off, SEEK_DATA) == off,
				  lseek(b.memfd, off, SEEK_DATA) == off) {
				TH_LOG("round %u, page %u", round, i);
			}
			ASSERT_EQ(page_released(&t.r, i), page_released(&b, i));
		}
	}
	TH_LOG("%lu entries in %lu syscalls one by one, in %lu with io_uring (%lu runs)",
	       sa.entries, sa.syscalls, sb.syscalls, sb.runs);
	ASSERT_EQ(sa.entries, sb.entries);
	ASSERT_GT(sa.entries, 0);
	ASSERT_LT(sb.syscalls, sa.syscalls);
	io_uring_queue_exit(&ring);
	free(la);
	free(lb);
	close(b.memfd);
	test_fini(&t);
}

/*
 * Two vCPUs convert the same page implicitly at the same moment, over and
 * over, each its own way round: both write privately, then both read
 * shared.  Each exit must be for that page and that phase, and each vCPU
 * must read back what it wrote.
 */
#define RACE_ROUNDS	200
#define RACE_PAGE	100

struct racer {
	struct test *t;
	int id;
	pthread_barrier_t *barrier;
	struct conversion_counts counts;
	uint64_t bad;
};

static void *race_vcpu(void *arg)
{
	struct racer *rc = arg;
	struct kvm_vcpu *vcpu = rc->t->vcpus[rc->id];
	struct kvm_run *run = vcpu->run;
	int round;

	for (round = 0; round < RACE_ROUNDS; round++) {
		/* Even rounds: private writes; odd rounds: shared reads. */
		bool private = !(round & 1);
		struct guest_cmd c;
		struct ucall uc;

		if (private)
			c = (struct guest_cmd){ OP_OWN_WORDS, RACE_PAGE, 1,
						true, round << 8 | rc->id };
		else
			c = check_pages(RACE_PAGE, 1, false, HOST_PATTERN);
		/* Both vCPUs start the round together. */
		pthread_barrier_wait(rc->barrier);
		set_cmd(rc->t, rc->id, c);
		for (;;) {
			vcpu_run(vcpu);
			if (run->exit_reason != KVM_EXIT_MEMORY_ERROR)
				break;
			/* Only this page, only the direction of the round. */
			if (run->memory.gpa != GPA + RACE_PAGE * PAGE ||
			    !!(run->memory.flags & KVM_MEMORY_EXIT_FLAG_PRIVATE) != private ||
			    run->memory.flags & KVM_MEMORY_EXIT_FLAG_EXPLICIT)
				rc->bad++;
			private_region_convert(&rc->t->r, run->memory.gpa,
					       run->memory.size, private);
			if (private)
				rc->counts.implicit_private++;
			else
				rc->counts.implicit_shared++;
		}
		TEST_ASSERT(get_ucall(vcpu, &uc) == UCALL_SYNC, "guest failed");
		/* What it wrote privately, or the host's shared data. */
		if (uc.args[1])
			rc->bad++;
		pthread_barrier_wait(rc->barrier);
	}
	return NULL;
}

/* Two vCPUs under nested emulation need more than the default 30 s. */
FIXTURE(race) {};
FIXTURE_SETUP(race) {}
FIXTURE_TEARDOWN(race) {}

TEST_F_TIMEOUT(race, implicit_two_vcpus, 120)
{
	struct racer rc[2];
	pthread_barrier_t barrier;
	pthread_t threads[2];
	struct test t;
	int i;

	test_init(&t, 2);
	pthread_barrier_init(&barrier, NULL, 2);
	for (i = 0; i < 2; i++) {
		rc[i] = (struct racer){ &t, i, &barrier };
		pthread_create(&threads[i], NULL, race_vcpu, &rc[i]);
	}
	for (i = 0; i < 2; i++)
		pthread_join(threads[i], NULL);

	for (i = 0; i < 2; i++) {
		TH_LOG("vCPU %d: %lu private and %lu shared exits", i,
		       rc[i].counts.implicit_private, rc[i].counts.implicit_shared);
		ASSERT_EQ(rc[i].bad, 0);
	}
	/* Every round converted the page once, whichever vCPU asked first. */
	ASSERT_GE(rc[0].counts.implicit_private + rc[1].counts.implicit_private,
		  RACE_ROUNDS / 2);
	ASSERT_GE(rc[0].counts.implicit_shared + rc[1].counts.implicit_shared,
		  RACE_ROUNDS / 2);
	/* What the host holds in the page was never touched. */
	ASSERT_TRUE(host_sees(&t, RACE_PAGE, 1, HOST_PATTERN));
	test_fini(&t);
}

TEST_HARNESS_MAIN
