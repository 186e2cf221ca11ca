/* SPDX-License-Identifier: GPL-2.0 */
/*
 * Declarations shared by the privmem test guest's C files.
 */
#ifndef PRIVMEM_GUEST_H
#define PRIVMEM_GUEST_H

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define __noreturn		__attribute__((__noreturn__))
#define __packed		__attribute__((__packed__))
#define __aligned(x)		__attribute__((__aligned__(x)))
#define __printf(a, b)		__attribute__((__format__(printf, a, b)))

#define PAGE_SIZE		4096u
#define SZ_1M			0x100000u
#define SZ_2M			0x200000u
#define SZ_1G			0x40000000u

/* Virtual layout (see setup_paging()). */
#define PRIV_BASE		0x40000000u	/* private alias of PA 0..1 GiB */
#define MMIO_PRIV_BASE		0x80000000u	/* private alias of PA 3..4 GiB */
#define MMIO_BASE		0xc0000000u

#define SHARED(pa)		((volatile void *)(uintptr_t)(pa))
#define PRIV(pa)		((volatile void *)(uintptr_t)(PRIV_BASE + (pa)))

#define KVM_HC_MAP_GPA_RANGE		12
#define KVM_HC_MAP_GPA_BATCH		0x1000
#define KVM_MAP_GPA_RANGE_ENCRYPTED	(1u << 4)
#define KVM_MAP_GPA_RANGE_DECRYPTED	0u
#define KVM_EPERM			1
#define KVM_EINVAL			22
#define KVM_E2BIG			7

/* The list of KVM_HC_MAP_GPA_BATCH, in a page of shared memory. */
#define KVM_MAP_GPA_BATCH_OP_PRIVATE	1
#define KVM_MAP_GPA_BATCH_OP_SHARED	2
#define KVM_MAP_GPA_BATCH_PAGE_4K	0
#define KVM_MAP_GPA_BATCH_PAGE_2M	1

struct kvm_map_gpa_batch_entry {
	uint64_t gfn;
	uint8_t op;
	uint8_t page_size;
	uint16_t status;
	uint32_t reserved;
};

struct kvm_map_gpa_batch {
	uint16_t cur_entry;
	uint16_t end_entry;
	uint32_t reserved;
	struct kvm_map_gpa_batch_entry entries[];
};

struct multiboot_info {
	uint32_t flags;
	uint32_t mem_lower;
	uint32_t mem_upper;
	uint32_t boot_device;
	uint32_t cmdline;
};

#define MULTIBOOT_BOOTLOADER_MAGIC	0x2badb002
#define MULTIBOOT_INFO_MEMORY		(1u << 0)
#define MULTIBOOT_INFO_CMDLINE		(1u << 2)

enum vendor { VENDOR_UNKNOWN, VENDOR_AMD, VENDOR_INTEL };

/* What the CPU and the loader told us, filled in by guest_main(). */
extern unsigned int private_bit;	/* 0 if CPUID has no usable bit */
extern unsigned int phys_bits;		/* CPUID 0x80000008 EAX[7:0] */
extern uint32_t max_ext_leaf;
extern enum vendor vendor;
extern uint64_t ram_end;		/* end of RAM above 1 MiB, bytes */

static inline void outb(uint16_t port, uint8_t v)
{
	asm volatile("outb %0, %1" : : "a"(v), "Nd"(port) : "memory");
}

static inline void outl(uint16_t port, uint32_t v)
{
	asm volatile("outl %0, %1" : : "a"(v), "Nd"(port) : "memory");
}

static inline uint8_t inb(uint16_t port)
{
	uint8_t v;

	asm volatile("inb %1, %0" : "=a"(v) : "Nd"(port) : "memory");
	return v;
}

static inline void cpuid(uint32_t leaf, uint32_t *a, uint32_t *b,
			 uint32_t *c, uint32_t *d)
{
	asm volatile("cpuid"
		     : "=a"(*a), "=b"(*b), "=c"(*c), "=d"(*d)
		     : "a"(leaf), "c"(0));
}

static inline uint64_t rdtsc(void)
{
	uint32_t lo, hi;

	asm volatile("rdtsc" : "=a"(lo), "=d"(hi));
	return ((uint64_t)hi << 32) | lo;
}

static inline void cpu_relax(void)
{
	asm volatile("pause" ::: "memory");
}

/* lib.c */
void serial_init(void);
void serial_putc(char c);
bool serial_getc(char *c);
void serial_drain_input(void);
void serial_flush(void);
__printf(1, 2) void pr(const char *fmt, ...);
__printf(3, 4) void snfmt(char *buf, size_t size, const char *fmt, ...);
void vsnfmt(char *buf, size_t size, const char *fmt, va_list ap);
void *memset(void *s, int c, size_t n);
void *memcpy(void *d, const void *s, size_t n);
int strcmp(const char *a, const char *b);
size_t strlen(const char *s);

void idt_init(void);
void setup_paging(unsigned int bit);
long kvm_hypercall3(uint32_t nr, uint32_t a0, uint32_t a1, uint32_t a2);
__noreturn void guest_exit(bool pass);

/*
 * Runs fn; an exception inside it is recorded as the test's failure
 * (through fail()) and ends fn early.  Returns false if fn took one.
 */
bool run_guarded(void (*fn)(void));
__printf(1, 2) void fail(const char *fmt, ...);
bool failed(void);
const char *fail_reason(void);
void fail_reset(void);

/* main.c and lib.c, called from entry.S */
struct exc_frame;
void guest_main(uint32_t magic, const struct multiboot_info *mbi);
__noreturn void exception_handler(struct exc_frame *f);

/* entry.S */
void paging_enable(uint32_t pdpt);
int guarded_call(void (*fn)(void));
__noreturn void guard_abort(void);
extern uint32_t guard_esp;
extern const uint32_t exc_stubs[32];

#endif /* PRIVMEM_GUEST_H */
