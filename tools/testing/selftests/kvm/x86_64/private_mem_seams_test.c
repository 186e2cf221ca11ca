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

struct puncher {
	int fd;
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
		/*
		 * Allocation and punch: the callbacks bracket both.  Not at
		 * the slot's first page, whose rmap walk would stop at once
		 * on a missing rmap.
		 */
		TEST_ASSERT(!fallocate(p->fd, 0, PAGE, PAGE),
			    "fallocate() failed, errno %d", errno);
		TEST_ASSERT(!fallocate(p->fd, FALLOC_FL_PUNCH_HOLE |
				       FALLOC_FL_KEEP_SIZE, PAGE, 2 * PAGE),
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
	struct puncher p = { 0 };
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

TEST_HARNESS_MAIN
