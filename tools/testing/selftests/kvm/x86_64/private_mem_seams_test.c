// SPDX-License-Identifier: GPL-2.0-only
/*
 * Private memory where it meets parts of KVM that the other private memory
 * tests never drive: memslot updates racing with the backing store's
 * callbacks, and the paths of a fault that lead to the instruction
 * emulator.  private_mem_host_access_test covers nested virtualization.
 */
#define _GNU_SOURCE
#include <fcntl.h>
#include <linux/falloc.h>
#include <pthread.h>
#include <sched.h>
#include <sys/mman.h>
#include <sys/sysinfo.h>
#include <time.h>
#include <unistd.h>

#include "apic.h"
#include "kvm_util.h"
#include "private_mem.h"
#include "processor.h"

/* test_util.h's ASSERT_EQ() predates the harness's; use the harness's. */
#undef ASSERT_EQ
#include "../kselftest_harness.h"

#define PAGE		4096ULL
#define APIC_GVA	0xc0000000ULL

/*
 * Memslot creation against the backing store's callbacks: a punch or an
 * allocation in the file may come at any moment of
 * KVM_SET_USER_MEMORY_REGION_EXT, and the callbacks must only ever see a
 * memslot that is prepared and whose creation can no longer fail.  The
 * slot is large, so that preparing it takes long; creations that fail in
 * the architecture's preparation (a slot reaching the private bit) race
 * too.  A callback on an unprepared slot dereferenced a NULL rmap when the
 * VM had used the shadow MMU; private VMs no longer can, and the kernel
 * now warns if a callback finds a slot without its metadata.
 */
#define RACE_SLOT	11
#define RACE_GPA	BIT_ULL(36)
#define RACE_SIZE	BIT_ULL(36)
#define RACE_SECONDS	10

/* A host thread that allocates and punches one page of a file. */
struct puncher {
	int fd;
	off_t offset;
	bool stop;
	uint64_t changes;
};

static void pin_to_cpu(int cpu)
{
	cpu_set_t set;

	CPU_ZERO(&set);
	CPU_SET(cpu % get_nprocs(), &set);
	TEST_ASSERT(!sched_setaffinity(0, sizeof(set), &set),
		    "sched_setaffinity() failed, errno %d", errno);
}

static void *punch_loop(void *arg)
{
	struct puncher *p = arg;

	pin_to_cpu(1);
	while (!READ_ONCE(p->stop)) {
		/* Allocation and punch: the callbacks bracket both. */
		TEST_ASSERT(!fallocate(p->fd, 0, p->offset, PAGE),
			    "fallocate() failed, errno %d", errno);
		TEST_ASSERT(!fallocate(p->fd, FALLOC_FL_PUNCH_HOLE |
				       FALLOC_FL_KEEP_SIZE, p->offset, PAGE),
			    "punch failed, errno %d", errno);
		p->changes += 2;
	}
	return NULL;
}

static int set_slot(struct kvm_vm *vm, uint64_t gpa, uint64_t size,
		    void *hva, int fd)
{
	struct kvm_userspace_memory_region_ext r = {
		.region = {
			.slot = RACE_SLOT,
			.flags = KVM_MEM_PRIVATE,
			.guest_phys_addr = gpa,
			.memory_size = size,
			.userspace_addr = (uintptr_t)hva,
		},
		.private_fd = fd,
	};

	return __vm_ioctl(vm, KVM_SET_USER_MEMORY_REGION_EXT, &r);
}

TEST(memslot_creation_races_callbacks)
{
	uint64_t created = 0, failed = 0, bit;
	/*
	 * Not the slot's first page: an rmap walk from there would stop at
	 * once on a missing rmap.
	 */
	struct puncher p = { .offset = PAGE };
	pthread_t thread;
	struct kvm_vm *vm;
	time_t end;
	void *hva;

	TEST_REQUIRE(kvm_check_cap(KVM_CAP_PRIVATE_MEM));
	vm = ____vm_create_type(VM_MODE_DEFAULT, 0, KVM_X86_PRIVATE_MEM_VM);
	bit = vm_private_gpa_mask(vm);
	p.fd = private_memfd_create(RACE_SIZE);
	hva = mmap(NULL, RACE_SIZE, PROT_READ | PROT_WRITE,
		   MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	ASSERT_NE(hva, MAP_FAILED);
	pin_to_cpu(0);
	ASSERT_EQ(pthread_create(&thread, NULL, punch_loop, &p), 0);

	end = time(NULL) + RACE_SECONDS;
	while (time(NULL) < end) {
		ASSERT_EQ(set_slot(vm, RACE_GPA, RACE_SIZE, hva, p.fd), 0);
		ASSERT_EQ(set_slot(vm, RACE_GPA, 0, hva, p.fd), 0);
		created++;
		/* Refused by the preparation: it would reach the private bit. */
		errno = 0;
		ASSERT_EQ(set_slot(vm, bit - PAGE, 2 * PAGE, hva, p.fd), -1);
		ASSERT_EQ(errno, EINVAL);
		failed++;
	}
	WRITE_ONCE(p.stop, true);
	pthread_join(thread, NULL);
	TH_LOG("%lu slots created, %lu refused, %lu file changes",
	       created, failed, p.changes);
	ASSERT_GT(created, 0);
	ASSERT_GT(p.changes, 0);

	munmap(hva, RACE_SIZE);
	close(p.fd);
	kvm_vm_free(vm);
}

static void guest_read(uint64_t gva)
{
	GUEST_SYNC(READ_ONCE(*(uint64_t *)gva));
}

/*
 * A private access to the APIC access page's gfn.  Where that page has a
 * memslot (VMX with APIC virtualization) and APICv is off, KVM emulated
 * such a fault, and the emulator, with no private memory to reach, handed
 * the access to userspace as MMIO.  It is a private access where no
 * private memory can exist: KVM_EXIT_MEMORY_ERROR, as for a gpa without
 * any memslot.
 */
TEST(private_access_to_the_apic_page)
{
	struct kvm_vcpu *vcpu;
	struct kvm_vm *vm;
	uint64_t bit;

	vm = vm_create_private(1, guest_read, &vcpu);
	bit = vm_private_gpa_mask(vm);
	virt_map(vm, APIC_GVA, APIC_DEFAULT_GPA | bit, 1);
	vcpu_args_set(vcpu, 1, APIC_GVA);
	vcpu_run(vcpu);
	ASSERT_EQ(vcpu->run->exit_reason, KVM_EXIT_MEMORY_ERROR);
	ASSERT_EQ(vcpu->run->memory.flags, KVM_MEMORY_EXIT_FLAG_PRIVATE);
	ASSERT_EQ(vcpu->run->memory.gpa, APIC_DEFAULT_GPA);
	ASSERT_EQ(vcpu->run->memory.size, PAGE);
	kvm_vm_free(vm);
}

/*
 * Exits make progress while the host converts elsewhere in the file: a
 * host thread allocates and punches the region's last page without pause,
 * which moves the invalidation sequence all the time, while the guest
 * converts its first page implicitly, back and forth.  An exit used to
 * turn into a retry whenever the sequence had moved since the fault
 * began; now only a change of the faulting gfn itself makes it retry.
 */
#define PROGRESS_SLOT	10
#define PROGRESS_GPA	BIT_ULL(30)
#define PROGRESS_PAGES	64
#define PROGRESS_GVA	0x40000000ULL
#define PROGRESS_ACCESSES 1000

static void guest_flip_page(uint64_t shared_gva, uint64_t private_gva)
{
	uint64_t i;

	for (i = 0; i < PROGRESS_ACCESSES; i++)
		READ_ONCE(*(uint64_t *)(i & 1 ? private_gva : shared_gva));
	GUEST_DONE();
}

TEST(exits_progress_while_the_host_converts_elsewhere)
{
	struct puncher p = { .offset = (PROGRESS_PAGES - 1) * PAGE };
	struct conversion_counts counts = { 0 };
	struct private_region r;
	struct kvm_vcpu *vcpu;
	pthread_t thread;
	struct kvm_vm *vm;
	struct ucall uc;

	vm = vm_create_private(1, guest_flip_page, &vcpu);
	private_region_add(&r, vm, PROGRESS_SLOT, PROGRESS_GPA, PROGRESS_PAGES);
	private_region_map(&r, PROGRESS_GVA, PROGRESS_GVA + r.size);
	vcpu_args_set(vcpu, 2, PROGRESS_GVA, PROGRESS_GVA + r.size);
	p.fd = r.memfd;
	ASSERT_EQ(pthread_create(&thread, NULL, punch_loop, &p), 0);
	ASSERT_EQ(vcpu_run_converting(vcpu, &r, &counts, &uc), UCALL_DONE);
	WRITE_ONCE(p.stop, true);
	pthread_join(thread, NULL);
	TH_LOG("%lu implicit exits while the host made %lu changes elsewhere",
	       counts.implicit_private + counts.implicit_shared, p.changes);
	ASSERT_EQ(counts.implicit_private + counts.implicit_shared,
		  PROGRESS_ACCESSES - 1);
	kvm_vm_free(vm);
	close(r.memfd);
}

/*
 * A poisoned private page, as a hardware memory error leaves it: the VM's
 * debugfs file private_mem_poison_gfn runs memory_failure() on it.  The
 * memfile invalidates KVM's mapping of the page, from a work item, and the
 * guest's next access fails KVM_RUN with EHWPOISON, with the page in
 * run->memory, for as long as userspace leaves it.  Punching the page and
 * allocating it anew lets the guest go on, reading zeros.
 */
#define POISON_SLOT	10
#define POISON_GPA	BIT_ULL(30)
#define POISON_GVA	0x80000000ULL
#define POISON_VALUE	0x5ec7e75ec7e75ec7ULL

static void guest_write_then_read(uint64_t gva)
{
	WRITE_ONCE(*(uint64_t *)gva, POISON_VALUE);
	for (;;)
		GUEST_SYNC(READ_ONCE(*(uint64_t *)gva));
}

static void expect_poisoned(struct __test_metadata *_metadata,
			    struct kvm_vcpu *vcpu)
{
	ASSERT_EQ(errno, EHWPOISON);
	ASSERT_EQ(vcpu->run->exit_reason, KVM_EXIT_MEMORY_ERROR);
	ASSERT_EQ(vcpu->run->memory.flags, KVM_MEMORY_EXIT_FLAG_PRIVATE);
	ASSERT_EQ(vcpu->run->memory.gpa, POISON_GPA);
	ASSERT_EQ(vcpu->run->memory.size, PAGE);
}

TEST(poisoned_private_page)
{
	struct private_region r;
	struct kvm_vcpu *vcpu;
	struct kvm_vm *vm;
	struct ucall uc;
	char path[96];
	FILE *f;
	int i;

	vm = vm_create_private(1, guest_write_then_read, &vcpu);
	private_region_add(&r, vm, POISON_SLOT, POISON_GPA, 1);
	virt_map(vm, POISON_GVA, POISON_GPA | vm_private_gpa_mask(vm), 1);
	private_region_convert(&r, POISON_GPA, PAGE, true);
	vcpu_args_set(vcpu, 1, POISON_GVA);
	vcpu_run(vcpu);
	ASSERT_EQ(get_ucall(vcpu, &uc), UCALL_SYNC);
	ASSERT_EQ(uc.args[1], POISON_VALUE);

	snprintf(path, sizeof(path),
		 "/sys/kernel/debug/kvm/%d-%d/private_mem_poison_gfn",
		 getpid(), vm->fd);
	f = fopen(path, "w");
	if (!f) {
		kvm_vm_free(vm);
		SKIP(return, "no %s (CONFIG_KVM_PRIVATE_MEM_FAULT_INJECTION, MEMORY_FAILURE)",
		     path);
	}
	fprintf(f, "%llu", POISON_GPA >> 12);
	ASSERT_EQ(fclose(f), 0);

	/* Until the invalidation runs, the guest still reads its page. */
	for (i = 0; i < 500 && !__vcpu_run(vcpu); i++) {
		ASSERT_EQ(get_ucall(vcpu, &uc), UCALL_SYNC);
		usleep(10000);
	}
	expect_poisoned(_metadata, vcpu);
	ASSERT_EQ(__vcpu_run(vcpu), -1);
	expect_poisoned(_metadata, vcpu);

	private_region_convert(&r, POISON_GPA, PAGE, false);
	private_region_convert(&r, POISON_GPA, PAGE, true);
	vcpu_run(vcpu);
	ASSERT_EQ(get_ucall(vcpu, &uc), UCALL_SYNC);
	ASSERT_EQ(uc.args[1], 0);
	kvm_vm_free(vm);
	close(r.memfd);
}

TEST_HARNESS_MAIN
