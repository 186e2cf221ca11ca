// SPDX-License-Identifier: GPL-2.0
/*
 * privmem-demo: the main job's demonstration, told in plain words.
 *
 * Runs inside the test VM against the freshly built KVM.  Each line it
 * prints starts with "privmem-demo:" so the harness can show just these.
 */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "kvm_util.h"
#include "processor.h"

#define DEMO_GPA	0x10000000ul	/* 256 MiB, away from the test image */
#define DEMO_SLOT	10
#define DEMO_PAGES	16

static const char guest_msg[] = "hello from the guest";

static void say(const char *fmt, ...)
{
	va_list ap;

	printf("privmem-demo: ");
	va_start(ap, fmt);
	vprintf(fmt, ap);
	va_end(ap);
	printf("\n");
	fflush(stdout);
}

static void guest_code(void)
{
	char *p = (char *)DEMO_GPA;
	int i;

	for (i = 0; i < (int)sizeof(guest_msg); i++)
		p[i] = guest_msg[i];
	GUEST_SYNC(1);
	GUEST_DONE();
}

static void run_until(struct kvm_vcpu *vcpu, uint64_t cmd)
{
	struct ucall uc;

	vcpu_run(vcpu);
	TEST_ASSERT(get_ucall(vcpu, &uc) == cmd,
		    "guest stopped with ucall %lu, expected %lu",
		    uc.cmd, cmd);
}

int main(void)
{
	struct kvm_vcpu *vcpu;
	struct kvm_vm *vm;
	char *hva;

	say("a plain KVM guest: its memory is shared, so the host can read it");
	vm = vm_create_with_one_vcpu(&vcpu, guest_code);
	vm_userspace_mem_region_add(vm, VM_MEM_SRC_ANONYMOUS, DEMO_GPA,
				    DEMO_SLOT, DEMO_PAGES, 0);
	virt_map(vm, DEMO_GPA, DEMO_GPA, DEMO_PAGES);
	hva = addr_gpa2hva(vm, DEMO_GPA);
	say("[host ] created a VM with one vCPU and a %d KiB memory slot at guest physical 0x%lx",
	    DEMO_PAGES * 4, DEMO_GPA);

	run_until(vcpu, UCALL_SYNC);
	say("[guest] wrote \"%s\" at guest physical 0x%lx", guest_msg, DEMO_GPA);
	say("[host ] reads it through its own mapping: \"%s\"", hva);
	TEST_ASSERT(!strcmp(hva, guest_msg), "host did not see the guest's write");

	run_until(vcpu, UCALL_DONE);
	say("[guest] finished; private memory arrives with the next parts of the series");
	kvm_vm_free(vm);
	return 0;
}
