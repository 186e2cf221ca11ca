/* SPDX-License-Identifier: GPL-2.0 */
/*
 * Multiboot v1 header, entry, GDT, exception stubs, paging enable and the
 * guarded call that turns an exception into a failed test.
 */

#define MB_MAGIC	0x1badb002
#define MB_FLAGS	0x00000003	/* page-aligned modules, memory info */

#define KERNEL_CS	0x08
#define KERNEL_DS	0x10

#define STACK_SIZE	16384

	.section .multiboot, "a"
	.balign 4
	.long MB_MAGIC
	.long MB_FLAGS
	.long -(MB_MAGIC + MB_FLAGS)

	.text
	.code32
	.globl _start
_start:
	cli
	cld
	movl $stack_top, %esp
	movl %eax, %ebp			/* multiboot magic */
					/* %ebx: multiboot info */
	lgdt gdt_desc
	ljmp $KERNEL_CS, $1f
1:	movw $KERNEL_DS, %ax
	movw %ax, %ds
	movw %ax, %es
	movw %ax, %fs
	movw %ax, %gs
	movw %ax, %ss

	/* Clear .bss, the stack included: nothing is on it yet. */
	movl $__bss_start, %edi
	movl $__bss_end, %ecx
	subl %edi, %ecx
	xorl %eax, %eax
	rep stosb

	pushl %ebx
	pushl %ebp
	call guest_main
2:	cli
	hlt
	jmp 2b

/* void paging_enable(uint32_t pdpt): CR3 -> PDPT, CR4.PAE, CR0.PG */
	.globl paging_enable
paging_enable:
	movl 4(%esp), %eax
	movl %eax, %cr3
	movl %cr4, %eax
	orl $0x20, %eax
	movl %eax, %cr4
	movl %cr0, %eax
	orl $0x80000000, %eax
	movl %eax, %cr0
	jmp 1f
1:	ret

/*
 * int guarded_call(void (*fn)(void))
 *
 * Calls fn and returns 0.  If fn takes an exception, the exception handler
 * calls guard_abort(), which unwinds to here and returns 1.  Calls nest.
 */
	.globl guarded_call
guarded_call:
	pushl %ebp
	pushl %ebx
	pushl %esi
	pushl %edi
	pushl guard_esp
	movl %esp, guard_esp
	call *24(%esp)
	xorl %eax, %eax
guard_out:
	popl guard_esp
	popl %edi
	popl %esi
	popl %ebx
	popl %ebp
	ret

/* void guard_abort(void): only while guard_esp != 0 */
	.globl guard_abort
guard_abort:
	movl guard_esp, %esp
	movl $1, %eax
	jmp guard_out

/* Exception stubs: push a zero error code where the CPU pushes none. */
.macro exc_stub vec
exc_stub_\vec:
	.if (\vec != 8) && (\vec != 10) && (\vec != 11) && (\vec != 12) && \
	    (\vec != 13) && (\vec != 14) && (\vec != 17) && (\vec != 21) && \
	    (\vec != 29) && (\vec != 30)
	pushl $0
	.endif
	pushl $\vec
	jmp exc_common
.endm

.irp vec, 0,1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16,17,18,19,20,21,22,23,24,25,26,27,28,29,30,31
	exc_stub \vec
.endr

exc_common:
	pushal
	pushl %esp			/* struct exc_frame * */
	call exception_handler		/* never returns */
1:	cli
	hlt
	jmp 1b

	.section .rodata
	.balign 4
	.globl exc_stubs
exc_stubs:
.irp vec, 0,1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16,17,18,19,20,21,22,23,24,25,26,27,28,29,30,31
	.long exc_stub_\vec
.endr

	.balign 8
gdt:
	.quad 0
	.quad 0x00cf9a000000ffff	/* KERNEL_CS: flat 32-bit code */
	.quad 0x00cf92000000ffff	/* KERNEL_DS: flat 32-bit data */
gdt_end:
gdt_desc:
	.word gdt_end - gdt - 1
	.long gdt

	.data
	.balign 4
	.globl guard_esp
guard_esp:
	.long 0

	.section .bss
	.balign 16
stack:
	.skip STACK_SIZE
stack_top:

	.section .note.GNU-stack, "", @progbits
