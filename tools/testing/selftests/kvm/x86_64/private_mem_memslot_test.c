// SPDX-License-Identifier: GPL-2.0-only
/*
 * Private memslots of KVM_X86_PRIVATE_MEM_VM guests: the VM type and its
 * capability, and every bad field of KVM_SET_USER_MEMORY_REGION_EXT.
 * private_mem_teardown_test covers their teardown.
 */
#define _GNU_SOURCE
#include <fcntl.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "kvm_util.h"
#include "private_mem.h"
#include "processor.h"

/* test_util.h's ASSERT_EQ() predates the harness's; use the harness's. */
#undef ASSERT_EQ
#include "../kselftest_harness.h"

#define SLOT		10
#define GPA		BIT_ULL(30)
#define NPAGES		64
#define SIZE		(NPAGES * 4096ULL)

/* A private VM without vCPUs, and a memfd to back its slots. */
struct setup {
	struct kvm_vm *vm;
	int memfd;
	void *shared;
};

/* A private VM without memory or vCPUs, like vm_create_barebones(). */
static struct kvm_vm *private_vm_barebones(void)
{
	return ____vm_create_type(VM_MODE_DEFAULT, 0, KVM_X86_PRIVATE_MEM_VM);
}

static void setup_vm(struct setup *s, uint64_t memfd_size)
{
	TEST_REQUIRE(kvm_check_cap(KVM_CAP_PRIVATE_MEM));
	s->vm = private_vm_barebones();
	s->memfd = private_memfd_create(memfd_size);
	s->shared = mmap(NULL, SIZE, PROT_READ | PROT_WRITE,
			 MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	TEST_ASSERT(s->shared != MAP_FAILED, "mmap() failed");
}

static void teardown_vm(struct setup *s)
{
	kvm_vm_free(s->vm);
	close(s->memfd);
	munmap(s->shared, SIZE);
}

static struct kvm_userspace_memory_region_ext
region(struct setup *s, uint32_t slot, uint64_t gpa, uint64_t offset)
{
	return (struct kvm_userspace_memory_region_ext) {
		.region = {
			.slot = slot,
			.flags = KVM_MEM_PRIVATE,
			.guest_phys_addr = gpa,
			.memory_size = SIZE,
			.userspace_addr = (uintptr_t)s->shared,
		},
		.private_fd = s->memfd,
		.private_offset = offset,
	};
}

static int set_ext(struct kvm_vm *vm, struct kvm_userspace_memory_region_ext *r)
{
	return __vm_ioctl(vm, KVM_SET_USER_MEMORY_REGION_EXT, r);
}

#define ASSERT_FAILS_WITH(expr, err) do {	\
	errno = 0;				\
	ASSERT_EQ((expr), -1);			\
	ASSERT_EQ(errno, (err));		\
} while (0)

TEST(vm_type_and_capability)
{
	struct kvm_vm *vm;
	int bit, kvm_fd;

	bit = kvm_check_cap(KVM_CAP_PRIVATE_MEM);
	TEST_REQUIRE(bit);
	/* The bit is the top of what TDP maps, far above any memslot here. */
	ASSERT_GE(bit, 32);
	ASSERT_LT(bit, 52);

	vm = private_vm_barebones();
	ASSERT_EQ(vm_check_cap(vm, KVM_CAP_PRIVATE_MEM), bit);
	kvm_vm_free(vm);

	vm = vm_create_barebones();
	ASSERT_EQ(vm_check_cap(vm, KVM_CAP_PRIVATE_MEM), 0);
	kvm_vm_free(vm);

	/* Types nobody defined stay refused. */
	kvm_fd = open_kvm_dev_path_or_exit();
	ASSERT_FAILS_WITH(ioctl(kvm_fd, KVM_CREATE_VM, 30), EINVAL);
	ASSERT_FAILS_WITH(ioctl(kvm_fd, KVM_CREATE_VM, 32), EINVAL);
	close(kvm_fd);
}

/* VMs created with kvm.tdp_mmu off get the shadow MMU. */
FIXTURE(shadow_mmu) {
	bool changed;
};

/*
 * A skip here still runs the test body under the 6.1 harness, so the
 * body checks _metadata->skip first.
 */
FIXTURE_SETUP(shadow_mmu)
{
	if (!kvm_check_cap(KVM_CAP_PRIVATE_MEM))
		SKIP(return, "no private memory on this host");
	if (!kvm_param_set("tdp_mmu", "N"))
		SKIP(return, "cannot write kvm.tdp_mmu");
	self->changed = true;
}

FIXTURE_TEARDOWN(shadow_mmu)
{
	if (self->changed)
		kvm_param_set("tdp_mmu", "Y");
}

/*
 * The shadow MMU never maps private memory, so where VMs would not get the
 * TDP MMU there is no private VM: the capability says so and the VM type
 * is refused.
 */
TEST_F(shadow_mmu, refuses_private_vms)
{
	int kvm_fd, vm_fd;

	if (_metadata->skip)
		return;
	kvm_fd = open_kvm_dev_path_or_exit();
	ASSERT_EQ(ioctl(kvm_fd, KVM_CHECK_EXTENSION, KVM_CAP_PRIVATE_MEM), 0);
	ASSERT_FAILS_WITH(ioctl(kvm_fd, KVM_CREATE_VM, KVM_X86_PRIVATE_MEM_VM),
			  EOPNOTSUPP);
	/* Ordinary VMs are as they were. */
	vm_fd = ioctl(kvm_fd, KVM_CREATE_VM, 0);
	ASSERT_GE(vm_fd, 0);
	close(vm_fd);
	close(kvm_fd);
}

static void guest_read_maxphyaddr(void)
{
	uint32_t eax, ebx, ecx, edx;

	cpuid(0x80000008, &eax, &ebx, &ecx, &edx);
	GUEST_SYNC(eax & 0xff);
}

/* The guest learns the private bit from its MAXPHYADDR. */
TEST(guest_maxphyaddr_is_the_private_bit)
{
	struct kvm_vcpu *vcpu;
	struct kvm_vm *vm;
	struct ucall uc;

	vm = vm_create_private(1, guest_read_maxphyaddr, &vcpu);
	vcpu_run(vcpu);
	ASSERT_EQ(get_ucall(vcpu, &uc), UCALL_SYNC);
	ASSERT_EQ(uc.args[1], kvm_check_cap(KVM_CAP_PRIVATE_MEM));
	kvm_vm_free(vm);
}

/*
 * KVM_SET_CPUID2 lowers a larger MAXPHYADDR to the private bit, which is
 * what KVM_GET_SUPPORTED_CPUID reports for every VM type, and refuses a
 * smaller one, with which the guest could not address the bit.
 */
TEST(cpuid_maxphyaddr)
{
	struct kvm_cpuid_entry2 *e;
	struct kvm_vcpu *vcpu;
	struct kvm_vm *vm;
	int bit;

	vm = vm_create_private(1, guest_read_maxphyaddr, &vcpu);
	bit = vm_check_cap(vm, KVM_CAP_PRIVATE_MEM);
	e = vcpu_get_cpuid_entry(vcpu, 0x80000008);

	e->eax = (e->eax & ~0xff) | (bit - 1);
	ASSERT_FAILS_WITH(__vcpu_set_cpuid(vcpu), EINVAL);

	e->eax = (e->eax & ~0xff) | 52;
	ASSERT_EQ(__vcpu_set_cpuid(vcpu), 0);
	e = vcpu_get_cpuid_entry(vcpu, 0x80000008);
	ASSERT_EQ(e->eax & 0xff, bit);
	kvm_vm_free(vm);
}

/*
 * The private bit is one the TDP root can reach: a 4-level root maps 48
 * bits, and only hosts with 5-level paging get a 5-level root.
 */
TEST(private_bit_within_the_tdp_root)
{
	unsigned int bit = kvm_check_cap(KVM_CAP_PRIVATE_MEM), pa, va;

	TEST_REQUIRE(bit);
	kvm_get_cpu_address_width(&pa, &va);
	ASSERT_LT(bit, pa);
	if (!kvm_cpu_has(X86_FEATURE_LA57))
		ASSERT_LE(bit, 47);
}

TEST(good_region)
{
	struct kvm_userspace_memory_region_ext r;
	struct setup s;

	setup_vm(&s, 2 * SIZE);
	r = region(&s, SLOT, GPA, SIZE);
	ASSERT_EQ(set_ext(s.vm, &r), 0);
	/* A second slot on another range of the same file. */
	r = region(&s, SLOT + 1, GPA + SIZE, 0);
	ASSERT_EQ(set_ext(s.vm, &r), 0);
	teardown_vm(&s);
}

TEST(private_flag_needs_private_vm)
{
	struct kvm_userspace_memory_region_ext r;
	struct setup s;
	struct kvm_vm *vm0;

	setup_vm(&s, SIZE);
	vm0 = vm_create_barebones();
	r = region(&s, SLOT, GPA, 0);
	ASSERT_FAILS_WITH(set_ext(vm0, &r), EINVAL);
	kvm_vm_free(vm0);
	teardown_vm(&s);
}

TEST(legacy_ioctl_cannot_create_private)
{
	struct kvm_userspace_memory_region_ext r;
	struct setup s;

	setup_vm(&s, SIZE);
	r = region(&s, SLOT, GPA, 0);
	ASSERT_FAILS_WITH(__vm_ioctl(s.vm, KVM_SET_USER_MEMORY_REGION,
				     &r.region), EINVAL);
	teardown_vm(&s);
}

TEST(bad_flags)
{
	struct kvm_userspace_memory_region_ext r;
	struct setup s;

	setup_vm(&s, SIZE);
	r = region(&s, SLOT, GPA, 0);
	r.region.flags |= 1U << 14;
	ASSERT_FAILS_WITH(set_ext(s.vm, &r), EINVAL);
	/* Bit 20, which KVM_MEM_PRIVATE once used, is KVM's own. */
	r.region.flags = (1U << 20) | KVM_MEM_PRIVATE;
	ASSERT_FAILS_WITH(set_ext(s.vm, &r), EINVAL);
	r.region.flags = 1U << 20;
	ASSERT_FAILS_WITH(set_ext(s.vm, &r), EINVAL);
	r.region.flags = KVM_MEM_PRIVATE | KVM_MEM_LOG_DIRTY_PAGES;
	ASSERT_FAILS_WITH(set_ext(s.vm, &r), EINVAL);
	r.region.flags = KVM_MEM_PRIVATE | KVM_MEM_READONLY;
	ASSERT_FAILS_WITH(set_ext(s.vm, &r), EINVAL);
	teardown_vm(&s);
}

TEST(padding_must_be_zero)
{
	struct kvm_userspace_memory_region_ext r;
	struct setup s;

	setup_vm(&s, SIZE);
	r = region(&s, SLOT, GPA, 0);
	r.pad1 = 1;
	ASSERT_FAILS_WITH(set_ext(s.vm, &r), EINVAL);
	r.pad1 = 0;
	r.pad2[13] = 1;
	ASSERT_FAILS_WITH(set_ext(s.vm, &r), EINVAL);
	teardown_vm(&s);
}

TEST(bad_fd)
{
	struct kvm_userspace_memory_region_ext r;
	struct setup s;
	int fd;

	setup_vm(&s, SIZE);
	r = region(&s, SLOT, GPA, 0);
	r.private_fd = -1;
	ASSERT_FAILS_WITH(set_ext(s.vm, &r), EBADF);
	fd = dup(s.memfd);
	close(fd);
	r.private_fd = fd;
	ASSERT_FAILS_WITH(set_ext(s.vm, &r), EBADF);
	teardown_vm(&s);
}

/*
 * The guest writes its private pages, so a descriptor that cannot write
 * the file cannot give them: a read-only reopen of the memfd is refused.
 */
TEST(read_only_fd)
{
	struct kvm_userspace_memory_region_ext r;
	struct setup s;
	char path[64];
	int fd;

	setup_vm(&s, SIZE);
	snprintf(path, sizeof(path), "/proc/self/fd/%d", s.memfd);
	fd = open(path, O_RDONLY);
	ASSERT_GE(fd, 0);
	r = region(&s, SLOT, GPA, 0);
	r.private_fd = fd;
	ASSERT_FAILS_WITH(set_ext(s.vm, &r), EBADF);
	close(fd);
	/* A read-write reopen is as good as the memfd itself. */
	fd = open(path, O_RDWR);
	ASSERT_GE(fd, 0);
	r.private_fd = fd;
	ASSERT_EQ(set_ext(s.vm, &r), 0);
	close(fd);
	teardown_vm(&s);
}

/* Only an inaccessible memfd can give private memory. */
TEST(wrong_fd_types)
{
	struct kvm_userspace_memory_region_ext r;
	int ordinary, efd, devnull;
	struct setup s;

	setup_vm(&s, SIZE);
	r = region(&s, SLOT, GPA, 0);

	ordinary = memfd_create("ordinary", 0);
	ASSERT_GE(ordinary, 0);
	ASSERT_EQ(ftruncate(ordinary, SIZE), 0);
	r.private_fd = ordinary;
	ASSERT_FAILS_WITH(set_ext(s.vm, &r), EOPNOTSUPP);

	efd = eventfd(0, 0);
	ASSERT_GE(efd, 0);
	r.private_fd = efd;
	ASSERT_FAILS_WITH(set_ext(s.vm, &r), EOPNOTSUPP);

	devnull = open("/dev/null", O_RDWR);
	ASSERT_GE(devnull, 0);
	r.private_fd = devnull;
	ASSERT_FAILS_WITH(set_ext(s.vm, &r), EOPNOTSUPP);

	/* The VM's own fd is no memfile either. */
	r.private_fd = s.vm->fd;
	ASSERT_FAILS_WITH(set_ext(s.vm, &r), EOPNOTSUPP);

	close(ordinary);
	close(efd);
	close(devnull);
	teardown_vm(&s);
}

TEST(bad_offsets)
{
	struct kvm_userspace_memory_region_ext r;
	struct setup s;
	int unsized;

	setup_vm(&s, SIZE);
	r = region(&s, SLOT, GPA, 1);
	ASSERT_FAILS_WITH(set_ext(s.vm, &r), EINVAL);
	r.private_offset = 2048;
	ASSERT_FAILS_WITH(set_ext(s.vm, &r), EINVAL);
	/* Past the end of the file, partly or wholly. */
	r.private_offset = 4096;
	ASSERT_FAILS_WITH(set_ext(s.vm, &r), EINVAL);
	r.private_offset = SIZE;
	ASSERT_FAILS_WITH(set_ext(s.vm, &r), EINVAL);
	/* Wrapping around. */
	r.private_offset = -4096ULL;
	ASSERT_FAILS_WITH(set_ext(s.vm, &r), EINVAL);
	r.private_offset = BIT_ULL(63);
	ASSERT_FAILS_WITH(set_ext(s.vm, &r), EINVAL);

	/* A file whose size was never set has no range at all. */
	unsized = memfd_create("unsized", MFD_INACCESSIBLE);
	ASSERT_GE(unsized, 0);
	r.private_fd = unsized;
	r.private_offset = 0;
	ASSERT_FAILS_WITH(set_ext(s.vm, &r), EINVAL);
	close(unsized);
	teardown_vm(&s);
}

/* A page of the file backs at most one gfn, in any VM. */
TEST(file_range_backs_one_slot)
{
	struct kvm_userspace_memory_region_ext r;
	struct setup s;
	struct kvm_vm *vm2;

	setup_vm(&s, 2 * SIZE);
	r = region(&s, SLOT, GPA, 0);
	ASSERT_EQ(set_ext(s.vm, &r), 0);

	r = region(&s, SLOT + 1, GPA + SIZE, 0);
	ASSERT_FAILS_WITH(set_ext(s.vm, &r), EBUSY);
	r.private_offset = SIZE / 2;
	ASSERT_FAILS_WITH(set_ext(s.vm, &r), EBUSY);

	vm2 = private_vm_barebones();
	r = region(&s, SLOT, GPA, SIZE - 4096);
	ASSERT_FAILS_WITH(set_ext(vm2, &r), EBUSY);
	r.private_offset = SIZE;
	ASSERT_EQ(set_ext(vm2, &r), 0);
	kvm_vm_free(vm2);

	/* Deleting the slot frees its range for others. */
	r = region(&s, SLOT, GPA, 0);
	r.region.memory_size = 0;
	ASSERT_EQ(set_ext(s.vm, &r), 0);
	r = region(&s, SLOT + 1, GPA + SIZE, 0);
	ASSERT_EQ(set_ext(s.vm, &r), 0);
	teardown_vm(&s);
}

/* A private slot can be deleted, nothing else; no slot can become one. */
TEST(private_slots_are_immutable)
{
	struct kvm_userspace_memory_region_ext r;
	struct setup s;

	setup_vm(&s, SIZE);
	r = region(&s, SLOT, GPA, 0);
	ASSERT_EQ(set_ext(s.vm, &r), 0);

	ASSERT_FAILS_WITH(set_ext(s.vm, &r), EINVAL);
	r.region.guest_phys_addr = 2 * GPA;
	ASSERT_FAILS_WITH(set_ext(s.vm, &r), EINVAL);
	r = region(&s, SLOT, GPA, 0);
	r.region.flags = 0;
	ASSERT_FAILS_WITH(set_ext(s.vm, &r), EINVAL);

	/* Deleting works through either ioctl. */
	r.region.memory_size = 0;
	ASSERT_EQ(__vm_ioctl(s.vm, KVM_SET_USER_MEMORY_REGION, &r.region), 0);

	/* A shared slot cannot turn private. */
	r = region(&s, SLOT, GPA, 0);
	r.region.flags = 0;
	ASSERT_EQ(set_ext(s.vm, &r), 0);
	r.region.flags = KVM_MEM_PRIVATE;
	ASSERT_FAILS_WITH(set_ext(s.vm, &r), EINVAL);
	teardown_vm(&s);
}

/* No memslot of a private VM may reach the private GPA bit. */
TEST(slots_stay_below_the_private_bit)
{
	struct kvm_userspace_memory_region_ext r;
	uint64_t bit_gpa;
	struct setup s;

	setup_vm(&s, SIZE);
	bit_gpa = vm_private_gpa_mask(s.vm);
	r = region(&s, SLOT, bit_gpa - SIZE / 2, 0);
	ASSERT_FAILS_WITH(set_ext(s.vm, &r), EINVAL);
	r = region(&s, SLOT, bit_gpa, 0);
	ASSERT_FAILS_WITH(set_ext(s.vm, &r), EINVAL);
	/* Shared slots too: the alias space belongs to private memory. */
	r.region.flags = 0;
	ASSERT_FAILS_WITH(set_ext(s.vm, &r), EINVAL);
	r = region(&s, SLOT, bit_gpa - SIZE, 0);
	ASSERT_EQ(set_ext(s.vm, &r), 0);
	teardown_vm(&s);
}

TEST_HARNESS_MAIN
