// SPDX-License-Identifier: GPL-2.0-only
/*
 * Every path by which KVM reads or writes guest memory through a host
 * mapping, or caches a translation, pointed at private memory.  Each one
 * must fail or see only the shared page; none may reach the private page.
 * See the table in Documentation/virt/kvm/private-memory.rst.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "apic.h"
#include "kvm_util.h"
#include "private_mem.h"
#include "processor.h"

/* test_util.h's ASSERT_EQ() predates the harness's; use the harness's. */
#undef ASSERT_EQ
#include "../kselftest_harness.h"

#define SLOT		10
#define GPA		BIT_ULL(30)
#define NPAGES		16
#define PAGE		4096ULL
#define SHARED_GVA	0x40000000ULL
#define PRIVATE_GVA	0x80000000ULL
#define MARKER		0x5ec7e75ec7e75ec7ULL
#define KVM_FEP		"ud2; .byte 'k', 'v', 'm';"

/*
 * KVM_ASM_SAFE() for a forced-emulation instruction: the fault is at the
 * instruction after the prefix, so that is where the fixup label goes.
 */
#define FEP_SAFE(insn)						\
	"mov $" __stringify(KVM_EXCEPTION_MAGIC) ", %%r9\n\t"	\
	"lea 1f(%%rip), %%r10\n\t"				\
	"lea 2f(%%rip), %%r11\n\t"				\
	KVM_FEP "1: " insn "\n\t"				\
	"movb $0, %[vector]\n\t"				\
	"jmp 3f\n\t"						\
	"2:\n\t"						\
	"mov  %%r9b, %[vector]\n\t"				\
	"3:\n\t"

enum guest_op {
	OP_MARK,	/* write MARKER all over page arg0, privately */
	OP_PRIVATE_WORDS, /* the number of words of page arg0 not MARKER */
	OP_WRMSR,	/* wrmsr(arg0, arg1): the exception vector, or 0 */
	OP_FEP_READ,	/* emulated read of gva arg0: the vector, or 0 */
	OP_FEP_WRITE,	/* emulated write of arg1 to gva arg0: the same */
	OP_CALL,	/* copy foreign_call to private page arg0, call it */
	OP_PRIVATE_WORD, /* the first word of private page arg0 */
	OP_VMLOAD,	/* vmload with gpa arg0: the #UD vector, or 0 */
	OP_VMXON,	/* vmxon with gpa arg0: the exception vector, or 0 */
	OP_CR4,		/* set CR4 to arg0: the exception vector, or 0 */
	OP_CPUID_ECX,	/* ECX of CPUID leaf arg0 */
	OP_HYPERCALL,	/* hypercall arg0 with arg1: its result */
};

struct guest_cmd {
	uint64_t op;
	uint64_t arg0;
	uint64_t arg1;
};

static struct guest_cmd cmd;

/* What the guest saw: its emulated read, its last exception. */
static uint64_t fep_val;
static uint64_t fault_vector, fault_error_code;

static uint64_t *private_page(uint64_t page)
{
	return (uint64_t *)(PRIVATE_GVA + page * PAGE);
}

/*
 * The other vendor's hypercall, then ret: vmcall on AMD, vmmcall on Intel.
 * It traps with #UD, and KVM patches it to the native one.
 */
static uint8_t foreign_call[4] = { 0x0f, 0x01, 0xc1, 0xc3 };
#define VMCALL_LEN	3

/* A #PF in FEP_SAFE(): note its error code and take the fixup. */
static void guest_pf_handler(struct ex_regs *regs)
{
	GUEST_ASSERT(regs->r9 == KVM_EXCEPTION_MAGIC && regs->rip == regs->r10);
	fault_error_code = regs->error_code;
	regs->rip = regs->r11;
	regs->r9 = regs->vector;
}

/*
 * A #UD in kvm_asm_safe(): take its fixup.  Any other #UD is for the
 * hypercall that KVM could not patch, or for a vmload: step over it (both
 * are 3 bytes long).
 */
static void guest_ud_handler(struct ex_regs *regs)
{
	fault_vector = regs->vector;
	if (regs->r9 == KVM_EXCEPTION_MAGIC && regs->rip == regs->r10) {
		regs->rip = regs->r11;
		regs->r9 = regs->vector;
		return;
	}
	regs->rip += VMCALL_LEN;
}

static void guest_code(void)
{
	for (;;) {
		struct guest_cmd c = READ_ONCE(cmd);
		uint64_t i, r = 0;

		switch (c.op) {
		case OP_MARK:
			for (i = 0; i < PAGE / 8; i++)
				private_page(c.arg0)[i] = MARKER;
			break;
		case OP_PRIVATE_WORDS:
			for (i = 0; i < PAGE / 8; i++)
				r += READ_ONCE(private_page(c.arg0)[i]) != MARKER;
			break;
		case OP_WRMSR:
			r = wrmsr_safe(c.arg0, c.arg1);
			break;
		case OP_FEP_READ: {
			uint64_t val = 0;
			uint8_t vector;

			asm volatile(FEP_SAFE("mov (%[addr]), %[val]")
				     : KVM_ASM_SAFE_OUTPUTS(vector), [val] "+r"(val)
				     : [addr] "r"(c.arg0)
				     : KVM_ASM_SAFE_CLOBBERS, "memory");
			fep_val = val;
			r = vector;
			break;
		}
		case OP_FEP_WRITE: {
			uint8_t vector;

			asm volatile(FEP_SAFE("mov %[val], (%[addr])")
				     : KVM_ASM_SAFE_OUTPUTS(vector)
				     : [val] "r"(c.arg1), [addr] "r"(c.arg0)
				     : KVM_ASM_SAFE_CLOBBERS, "memory");
			r = vector;
			break;
		}
		case OP_CALL:
			for (i = 0; i < sizeof(foreign_call); i++)
				WRITE_ONCE(((uint8_t *)private_page(c.arg0))[i],
					   foreign_call[i]);
			fault_vector = 0;
			r = KVM_HC_SCHED_YIELD;
			asm volatile("call *%1"
				     : "+a"(r) : "r"(private_page(c.arg0)), "b"(0)
				     : "memory");
			r = fault_vector;
			break;
		case OP_PRIVATE_WORD:
			r = READ_ONCE(private_page(c.arg0)[0]);
			break;
		case OP_VMLOAD:
			fault_vector = 0;
			asm volatile("vmload %%rax" : : "a"(c.arg0) : "memory");
			r = fault_vector;
			break;
		case OP_VMXON:
			r = kvm_asm_safe("vmxon %[pa]", [pa] "m"(c.arg0));
			break;
		case OP_CR4:
			r = kvm_asm_safe("mov %%rax, %%cr4", "a"(c.arg0));
			break;
		case OP_CPUID_ECX: {
			uint32_t eax, ebx, ecx, edx;

			cpuid(c.arg0, &eax, &ebx, &ecx, &edx);
			r = ecx;
			break;
		}
		case OP_HYPERCALL:
			r = kvm_hypercall(c.arg0, c.arg1, 0, 0, 0);
			break;
		}
		GUEST_SYNC(r);
	}
}

struct test {
	struct kvm_vm *vm;
	struct kvm_vcpu *vcpu;
	struct private_region r;
	uint64_t bit;
};

/* Run the guest through @c; the vCPU's exit is left for the caller. */
static void guest_start(struct test *t, struct guest_cmd c)
{
	cmd = c;
	sync_global_to_guest(t->vm, cmd);
	vcpu_run(t->vcpu);
}

static uint64_t guest_do(struct test *t, struct guest_cmd c)
{
	struct ucall uc;

	guest_start(t, c);
	switch (get_ucall(t->vcpu, &uc)) {
	case UCALL_SYNC:
		return uc.args[1];
	case UCALL_ABORT:
		REPORT_GUEST_ASSERT(uc);
	default:
		TEST_FAIL("unexpected exit %s",
			  exit_reason_str(t->vcpu->run->exit_reason));
	}
	return 0;
}

static struct guest_cmd op(uint64_t o, uint64_t a0, uint64_t a1)
{
	return (struct guest_cmd){ o, a0, a1 };
}

/* A private VM whose page 0 is private and full of MARKER. */
static void test_init(struct test *t)
{
	memset(t, 0, sizeof(*t));
	t->vm = vm_create_private(1, guest_code, &t->vcpu);
	vm_init_descriptor_tables(t->vm);
	vcpu_init_descriptor_tables(t->vcpu);
	vm_install_exception_handler(t->vm, PF_VECTOR, guest_pf_handler);
	vm_install_exception_handler(t->vm, UD_VECTOR, guest_ud_handler);
	private_region_add(&t->r, t->vm, SLOT, GPA, NPAGES);
	private_region_map(&t->r, SHARED_GVA, PRIVATE_GVA);
	t->bit = vm_private_gpa_mask(t->vm);
	private_region_convert(&t->r, GPA, PAGE, true);
	guest_do(t, op(OP_MARK, 0, 0));
}

static void test_fini(struct test *t)
{
	kvm_vm_free(t->vm);
	close(t->r.memfd);
}

/* The private page still holds MARKER and nothing else. */
static void expect_private_intact(struct __test_metadata *_metadata,
				  struct test *t)
{
	ASSERT_EQ(guest_do(t, op(OP_PRIVATE_WORDS, 0, 0)), 0);
}

static bool shared_page_is_zero(struct test *t)
{
	uint64_t i;

	for (i = 0; i < PAGE / 8; i++)
		if (((uint64_t *)t->r.hva)[i])
			return false;
	return true;
}

/*
 * The emulator, with kvm.force_emulation_prefix.  KVM translates the
 * guest's address with its own page table walker, to which the private
 * bit is reserved: the guest gets a reserved-bit #PF, and nothing is read
 * or written, privately or shared.
 */
FIXTURE(emulator) {
	struct test t;
	int fep;
};

/*
 * A skip here still runs the test body under the 6.1 harness, so the
 * body checks _metadata->skip first.
 */
FIXTURE_SETUP(emulator)
{
	self->fep = kvm_param_get("force_emulation_prefix");
	if (self->fep < 0 || !kvm_param_set("force_emulation_prefix", "1")) {
		self->fep = -1;
		SKIP(return, "cannot set kvm.force_emulation_prefix");
	}
	test_init(&self->t);
}

FIXTURE_TEARDOWN(emulator)
{
	if (self->fep >= 0) {
		char val[16];

		snprintf(val, sizeof(val), "%d", self->fep);
		kvm_param_set("force_emulation_prefix", val);
		test_fini(&self->t);
	}
}

static void expect_rsvd_pf(struct __test_metadata *_metadata, struct test *t,
			   uint64_t vector)
{
	ASSERT_EQ(vector, PF_VECTOR);
	sync_global_from_guest(t->vm, fault_error_code);
	ASSERT_TRUE(fault_error_code & PF_ERROR_RSVD);
}

TEST_F(emulator, read_of_private_memory)
{
	if (_metadata->skip)
		return;
	expect_rsvd_pf(_metadata, &self->t,
		       guest_do(&self->t, op(OP_FEP_READ, PRIVATE_GVA, 0)));
	sync_global_from_guest(self->t.vm, fep_val);
	ASSERT_EQ(fep_val, 0);
}

TEST_F(emulator, write_to_private_memory)
{
	if (_metadata->skip)
		return;
	expect_rsvd_pf(_metadata, &self->t,
		       guest_do(&self->t, op(OP_FEP_WRITE, PRIVATE_GVA, 7)));
	expect_private_intact(_metadata, &self->t);
	ASSERT_TRUE(shared_page_is_zero(&self->t));
}

/* The same accesses to shared memory are emulated as usual. */
TEST_F(emulator, shared_memory_still_emulated)
{
	if (_metadata->skip)
		return;
	((uint64_t *)self->t.r.hva)[PAGE / 8] = 42;
	ASSERT_EQ(guest_do(&self->t, op(OP_FEP_READ, SHARED_GVA + PAGE, 0)), 0);
	sync_global_from_guest(self->t.vm, fep_val);
	ASSERT_EQ(fep_val, 42);
	ASSERT_EQ(guest_do(&self->t, op(OP_FEP_WRITE, SHARED_GVA + PAGE, 7)), 0);
	ASSERT_EQ(((uint64_t *)self->t.r.hva)[PAGE / 8], 7);
}

/*
 * kvm_fix_hypercall: the other vendor's hypercall traps, and KVM rewrites
 * it to the native one through the emulator (vmcall to vmmcall on AMD,
 * vmmcall to vmcall on Intel).  In private code, the emulator cannot even
 * fetch the instruction: the guest gets #UD, and the code stays as it was.
 */
TEST(hypercall_patching_in_private_code)
{
	uint32_t word;
	struct test t;

	test_init(&t);
	if (!is_amd_cpu())
		foreign_call[2] = 0xd9;
	sync_global_to_guest(t.vm, foreign_call);
	ASSERT_EQ(guest_do(&t, op(OP_CALL, 0, 0)), UD_VECTOR);
	word = guest_do(&t, op(OP_PRIVATE_WORD, 0, 0));
	ASSERT_EQ(memcmp(&word, foreign_call, sizeof(word)), 0);
	test_fini(&t);
}

/*
 * Nested virtualization, which private VMs do not have: an L2 guest's
 * accesses and hypercalls would convert L1's memory, and nested paging
 * would put L1's memory under the shadow MMU.  The guest's CPUID has no
 * SVM or VMX, so enabling either gets #GP, and the host cannot set
 * EFER.SVME for it.  Before, VMLOAD and VMRUN of a private VMCB reached
 * kvm_vcpu_map() at the private alias; now they cannot even start.
 */
TEST(nested_virtualization_is_refused)
{
	struct kvm_sregs sregs;
	struct test t;

	test_init(&t);
	ASSERT_FALSE(guest_do(&t, op(OP_CPUID_ECX, 0x80000001, 0)) & BIT(2));
	ASSERT_FALSE(guest_do(&t, op(OP_CPUID_ECX, 1, 0)) & BIT(5));
	ASSERT_EQ(guest_do(&t, op(OP_WRMSR, MSR_EFER,
				  vcpu_get_msr(t.vcpu, MSR_EFER) | EFER_SVME)),
		  GP_VECTOR);
	vcpu_sregs_get(t.vcpu, &sregs);
	ASSERT_EQ(guest_do(&t, op(OP_CR4, sregs.cr4 | X86_CR4_VMXE, 0)),
		  GP_VECTOR);
	/*
	 * Without EFER.SVME (or on Intel), SVM's instructions are undefined;
	 * without CR4.VMXE (or on AMD), so is VMXON.
	 */
	ASSERT_EQ(guest_do(&t, op(OP_VMLOAD, GPA | t.bit, 0)), UD_VECTOR);
	ASSERT_EQ(guest_do(&t, op(OP_VMXON, GPA | t.bit, 0)), UD_VECTOR);
	ASSERT_EQ(_vcpu_set_msr(t.vcpu, MSR_EFER,
				vcpu_get_msr(t.vcpu, MSR_EFER) | EFER_SVME), 0);
	expect_private_intact(_metadata, &t);
	test_fini(&t);
}

/*
 * Nor can the host give the vCPU a nested state, which would make KVM map
 * a VMCB or a VMCS12's pages from guest memory.  On Intel, even a VMXON
 * region at a plain, valid gpa is refused, as the guest has no VMX; on
 * AMD, any state in guest mode, as EFER.SVME stays clear.
 */
TEST(nested_state_is_refused)
{
	struct kvm_nested_state *state;
	size_t size = sizeof(*state) + KVM_STATE_NESTED_SVM_VMCB_SIZE;
	struct test t;

	test_init(&t);
	state = calloc(1, size);
	ASSERT_NE(state, NULL);
	if (is_amd_cpu()) {
		state->format = KVM_STATE_NESTED_FORMAT_SVM;
		state->flags = KVM_STATE_NESTED_GUEST_MODE |
			       KVM_STATE_NESTED_GIF_SET;
		state->size = size;
		state->hdr.svm.vmcb_pa = GPA;
	} else {
		state->format = KVM_STATE_NESTED_FORMAT_VMX;
		state->size = sizeof(*state);
		state->hdr.vmx.vmxon_pa = GPA;
		state->hdr.vmx.vmcs12_pa = -1ULL;
	}
	ASSERT_EQ(__vcpu_ioctl(t.vcpu, KVM_SET_NESTED_STATE, state), -1);
	ASSERT_EQ(errno, EINVAL);
	free(state);
	expect_private_intact(_metadata, &t);
	test_fini(&t);
}

/*
 * MSRs that give KVM a guest physical address to write to.  With the
 * private bit, the write goes nowhere or the MSR is refused; at the plain
 * address of a private page, KVM writes the shared page and the private
 * page stays as it was.
 */
static void msr_to_private_page(struct __test_metadata *_metadata,
				uint32_t msr, uint64_t flags, bool refused,
				bool writes)
{
	struct test t;
	uint64_t v;
	int i;

	test_init(&t);

	v = guest_do(&t, op(OP_WRMSR, msr, GPA | t.bit | flags));
	ASSERT_EQ(v, refused ? GP_VECTOR : 0);
	/* KVM updates some of them on every entry: enter a few times. */
	for (i = 0; i < 3; i++)
		expect_private_intact(_metadata, &t);
	ASSERT_TRUE(shared_page_is_zero(&t));

	v = guest_do(&t, op(OP_WRMSR, msr, GPA | flags));
	if (v == GP_VECTOR) {
		test_fini(&t);
		SKIP(return, "MSR 0x%x is not supported here", msr);
	}
	ASSERT_EQ(v, 0);
	for (i = 0; i < 3; i++)
		expect_private_intact(_metadata, &t);
	ASSERT_EQ(shared_page_is_zero(&t), !writes);
	/* Turn it off before the VM goes. */
	guest_do(&t, op(OP_WRMSR, msr, 0));
	test_fini(&t);
}

/* kvm_write_guest(), by the wall clock. */
TEST(wall_clock)
{
	msr_to_private_page(_metadata, MSR_KVM_WALL_CLOCK_NEW, 0, false, true);
}

/* The gfn_to_pfn_cache of the pvclock. */
TEST(pvclock)
{
	msr_to_private_page(_metadata, MSR_KVM_SYSTEM_TIME_NEW, 1, false, true);
}

/* The gfn_to_hva_cache of steal time, set up when KVM first writes it. */
TEST(steal_time)
{
	msr_to_private_page(_metadata, MSR_KVM_STEAL_TIME, KVM_MSR_ENABLED,
			    false, true);
}

/*
 * The gfn_to_hva_cache of PV EOI, refused when it is set up.  KVM writes
 * it only when it injects interrupts, which these guests do not take.
 */
TEST(pv_eoi)
{
	msr_to_private_page(_metadata, MSR_KVM_PV_EOI_EN, KVM_MSR_ENABLED,
			    true, false);
}

/* The gfn_to_hva_cache of async page faults, refused when set up. */
TEST(async_pf)
{
	struct test t;

	test_init(&t);
	ASSERT_EQ(guest_do(&t, op(OP_WRMSR, MSR_KVM_ASYNC_PF_INT, 0xf0)), 0);
	ASSERT_EQ(guest_do(&t, op(OP_WRMSR, MSR_KVM_ASYNC_PF_EN,
				  GPA | t.bit | KVM_ASYNC_PF_ENABLED |
				  KVM_ASYNC_PF_DELIVERY_AS_INT)), GP_VECTOR);
	ASSERT_EQ(guest_do(&t, op(OP_WRMSR, MSR_KVM_ASYNC_PF_EN,
				  GPA | KVM_ASYNC_PF_ENABLED |
				  KVM_ASYNC_PF_DELIVERY_AS_INT)), 0);
	guest_do(&t, op(OP_WRMSR, MSR_KVM_ASYNC_PF_EN, 0));
	test_fini(&t);
}

/* The APIC base: a private address is beyond MAXPHYADDR, and refused. */
TEST(apic_base)
{
	struct test t;

	test_init(&t);
	ASSERT_EQ(guest_do(&t, op(OP_WRMSR, MSR_IA32_APICBASE,
				  t.bit | APIC_DEFAULT_GPA | MSR_IA32_APICBASE_ENABLE |
				  MSR_IA32_APICBASE_BSP)), GP_VECTOR);
	test_fini(&t);
}

/* kvm_write_guest() by a hypercall: KVM_HC_CLOCK_PAIRING fails. */
TEST(clock_pairing)
{
	struct test t;
	uint64_t r;

	test_init(&t);
	r = guest_do(&t, op(OP_HYPERCALL, KVM_HC_CLOCK_PAIRING,
			    GPA | t.bit));
	if (r == (uint64_t)-KVM_EOPNOTSUPP) {
		test_fini(&t);
		SKIP(return, "clock pairing needs a TSC clocksource in the host");
	}
	ASSERT_EQ(r, (uint64_t)-KVM_EFAULT);
	expect_private_intact(_metadata, &t);
	test_fini(&t);
}

TEST_HARNESS_MAIN
