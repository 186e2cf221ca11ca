// SPDX-License-Identifier: GPL-2.0
/*
 * The privmem test guest's support code: COM1, formatted output, the
 * exception handler, paging, the hypercall and the exit.
 */
#include "guest.h"

/* ---- COM1, polled ------------------------------------------------------ */

#define COM1		0x3f8
#define UART_RBR	0
#define UART_THR	0
#define UART_DLL	0
#define UART_IER	1
#define UART_DLM	1
#define UART_FCR	2
#define UART_LCR	3
#define UART_MCR	4
#define UART_LSR	5
#define UART_LSR_DR	0x01
#define UART_LSR_THRE	0x20
#define UART_LSR_TEMT	0x40

void serial_init(void)
{
	outb(COM1 + UART_IER, 0x00);
	outb(COM1 + UART_LCR, 0x80);	/* DLAB */
	outb(COM1 + UART_DLL, 0x01);	/* 115200 baud */
	outb(COM1 + UART_DLM, 0x00);
	outb(COM1 + UART_LCR, 0x03);	/* 8N1 */
	outb(COM1 + UART_FCR, 0xc7);	/* FIFOs on and cleared */
	outb(COM1 + UART_MCR, 0x03);	/* DTR, RTS */
}

void serial_putc(char c)
{
	while (!(inb(COM1 + UART_LSR) & UART_LSR_THRE))
		cpu_relax();
	outb(COM1 + UART_THR, c);
}

bool serial_getc(char *c)
{
	if (!(inb(COM1 + UART_LSR) & UART_LSR_DR))
		return false;
	*c = inb(COM1 + UART_RBR);
	return true;
}

void serial_drain_input(void)
{
	char c;

	while (serial_getc(&c))
		;
}

void serial_flush(void)
{
	while (!(inb(COM1 + UART_LSR) & UART_LSR_TEMT))
		cpu_relax();
}

/* ---- string helpers (gcc may emit calls to memset and memcpy) ---------- */

void *memset(void *s, int c, size_t n)
{
	volatile unsigned char *p = s;

	while (n--)
		*p++ = c;
	return s;
}

void *memcpy(void *d, const void *s, size_t n)
{
	volatile unsigned char *dp = d;
	const unsigned char *sp = s;

	while (n--)
		*dp++ = *sp++;
	return d;
}

int strcmp(const char *a, const char *b)
{
	while (*a && *a == *b) {
		a++;
		b++;
	}
	return (unsigned char)*a - (unsigned char)*b;
}

size_t strlen(const char *s)
{
	size_t n = 0;

	while (s[n])
		n++;
	return n;
}

/* ---- formatting: %s %c %d %u %x %p, flag 0, width, l and ll (x only) -- */

struct sink {
	char *buf;		/* NULL: COM1 */
	size_t size;
	size_t len;
};

static void sink_put(struct sink *s, char c)
{
	if (!s->buf) {
		serial_putc(c);
		return;
	}
	if (s->len + 1 < s->size)
		s->buf[s->len++] = c;
}

static void sink_num(struct sink *s, uint64_t v, unsigned int base,
		     bool neg, unsigned int width, char pad)
{
	char tmp[24];
	unsigned int n = 0;

	/* Only hex takes 64 bits: 32-bit code has no 64-bit division. */
	if (base == 16) {
		do {
			tmp[n++] = "0123456789abcdef"[v & 0xf];
			v >>= 4;
		} while (v);
	} else {
		uint32_t w = v;

		do {
			tmp[n++] = '0' + w % 10;
			w /= 10;
		} while (w);
	}
	if (neg)
		tmp[n++] = '-';
	while (width > n) {
		sink_put(s, pad);
		width--;
	}
	while (n)
		sink_put(s, tmp[--n]);
}

static void vformat(struct sink *s, const char *fmt, va_list ap)
{
	for (; *fmt; fmt++) {
		unsigned int width = 0, lng = 0;
		char pad = ' ';
		const char *str;
		uint64_t v;
		int32_t sv;

		if (*fmt != '%') {
			sink_put(s, *fmt);
			continue;
		}
		fmt++;
		if (*fmt == '0') {
			pad = '0';
			fmt++;
		}
		while (*fmt >= '0' && *fmt <= '9')
			width = width * 10 + *fmt++ - '0';
		while (*fmt == 'l') {
			lng++;
			fmt++;
		}
		switch (*fmt) {
		case 's':
			str = va_arg(ap, const char *);
			if (!str)
				str = "(null)";
			while (*str)
				sink_put(s, *str++);
			break;
		case 'c':
			sink_put(s, va_arg(ap, int));
			break;
		case 'd':
			sv = va_arg(ap, int32_t);
			sink_num(s, sv < 0 ? -(uint32_t)sv : (uint32_t)sv, 10,
				 sv < 0, width, pad);
			break;
		case 'u':
			sink_num(s, va_arg(ap, uint32_t), 10, false, width, pad);
			break;
		case 'x':
			v = lng > 1 ? va_arg(ap, uint64_t) : va_arg(ap, uint32_t);
			sink_num(s, v, 16, false, width, pad);
			break;
		case 'p':
			sink_put(s, '0');
			sink_put(s, 'x');
			sink_num(s, (uintptr_t)va_arg(ap, void *), 16, false,
				 8, '0');
			break;
		case '%':
			sink_put(s, '%');
			break;
		default:
			sink_put(s, '%');
			if (!*fmt)
				return;
			sink_put(s, *fmt);
			break;
		}
	}
}

void pr(const char *fmt, ...)
{
	struct sink s = { NULL, 0, 0 };
	va_list ap;

	va_start(ap, fmt);
	vformat(&s, fmt, ap);
	va_end(ap);
}

void vsnfmt(char *buf, size_t size, const char *fmt, va_list ap)
{
	struct sink s = { buf, size, 0 };

	vformat(&s, fmt, ap);
	if (size)
		buf[s.len] = '\0';
}

void snfmt(char *buf, size_t size, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnfmt(buf, size, fmt, ap);
	va_end(ap);
}

/* ---- failures and the guard ------------------------------------------- */

static char reason[192];
static bool test_failed;

/* Records why the current test fails; several reasons are joined by "; ". */
void fail(const char *fmt, ...)
{
	size_t len = strlen(reason);
	va_list ap;

	test_failed = true;
	if (len && len + 3 < sizeof(reason)) {
		reason[len++] = ';';
		reason[len++] = ' ';
		reason[len] = '\0';
	}
	va_start(ap, fmt);
	vsnfmt(reason + len, sizeof(reason) - len, fmt, ap);
	va_end(ap);
}

bool failed(void)
{
	return test_failed;
}

const char *fail_reason(void)
{
	return reason;
}

void fail_reset(void)
{
	test_failed = false;
	reason[0] = '\0';
}

bool run_guarded(void (*fn)(void))
{
	return !guarded_call(fn);
}

/* ---- exceptions -------------------------------------------------------- */

struct exc_frame {
	uint32_t edi, esi, ebp, esp, ebx, edx, ecx, eax;	/* pushal */
	uint32_t vector, error;
	uint32_t eip, cs, eflags;
};

struct idt_entry {
	uint16_t offset_lo;
	uint16_t selector;
	uint8_t zero;
	uint8_t type;
	uint16_t offset_hi;
} __packed;

static struct idt_entry idt[32] __aligned(8);

static const char *const exc_names[32] = {
	"#DE", "#DB", "NMI", "#BP", "#OF", "#BR", "#UD", "#NM",
	"#DF", "vector 9", "#TS", "#NP", "#SS", "#GP", "#PF", "vector 15",
	"#MF", "#AC", "#MC", "#XM", "#VE", "#CP", "vector 22", "vector 23",
	"vector 24", "vector 25", "vector 26", "vector 27", "#HV", "#VC",
	"#SX", "vector 31",
};

void idt_init(void)
{
	struct {
		uint16_t limit;
		uint32_t base;
	} __packed desc = { sizeof(idt) - 1, (uintptr_t)idt };
	unsigned int i;

	for (i = 0; i < 32; i++) {
		idt[i].offset_lo = exc_stubs[i] & 0xffff;
		idt[i].selector = 0x08;
		idt[i].zero = 0;
		idt[i].type = 0x8e;	/* present, ring 0, 32-bit interrupt gate */
		idt[i].offset_hi = exc_stubs[i] >> 16;
	}
	asm volatile("lidt %0" : : "m"(desc));
}

void exception_handler(struct exc_frame *f)
{
	const char *name = exc_names[f->vector & 31];
	uint32_t cr2 = 0;

	if (f->vector == 14)
		asm volatile("mov %%cr2, %0" : "=r"(cr2));

	if (guard_esp) {
		if (f->vector == 14)
			fail("%s at eip 0x%x, error 0x%x, cr2 0x%x", name,
			     f->eip, f->error, cr2);
		else
			fail("%s at eip 0x%x, error 0x%x", name, f->eip,
			     f->error);
		guard_abort();
	}
	pr("Bail out! %s at eip 0x%x, error 0x%x, cr2 0x%x outside a test\n",
	   name, f->eip, f->error, cr2);
	guest_exit(false);
}

/* ---- paging: PAE, 2 MiB pages ----------------------------------------- */

#define PDE_P		(1ull << 0)
#define PDE_RW		(1ull << 1)
#define PDE_PS		(1ull << 7)
#define PDE_FLAGS	(PDE_P | PDE_RW | PDE_PS)
#define PDPTE_P		(1ull << 0)

static uint64_t pdpt[4] __aligned(32);
static uint64_t pd[4][512] __aligned(4096);

/*
 * VA 0..1 GiB: PA 0..1 GiB, shared.  VA 1..2 GiB: its private alias.
 * VA 2..3 GiB: private alias of PA 3..4 GiB.  VA 3..4 GiB: PA 3..4 GiB.
 * Without a private bit the two aliases stay unmapped, so touching them
 * faults and fails the test instead of hitting shared memory.
 */
void setup_paging(unsigned int bit)
{
	uint64_t priv = bit ? 1ull << bit : 0;
	unsigned int i;

	for (i = 0; i < 512; i++) {
		uint64_t low = (uint64_t)i * SZ_2M;
		uint64_t high = MMIO_BASE + low;

		pd[0][i] = low | PDE_FLAGS;
		pd[3][i] = high | PDE_FLAGS;
		if (priv) {
			pd[1][i] = priv | low | PDE_FLAGS;
			pd[2][i] = priv | high | PDE_FLAGS;
		}
	}
	for (i = 0; i < 4; i++)
		pdpt[i] = (uintptr_t)pd[i] | PDPTE_P;
	paging_enable((uintptr_t)pdpt);
}

/* ---- hypercall and exit ----------------------------------------------- */

/* A 32-bit guest: KVM takes eax, ebx, ecx, edx and answers in eax. */
long kvm_hypercall3(uint32_t nr, uint32_t a0, uint32_t a1, uint32_t a2)
{
	uint32_t ret;

	/* The fourth argument is 0: KVM_HC_MAP_GPA_BATCH requires it. */
	if (vendor == VENDOR_AMD)
		asm volatile("vmmcall"
			     : "=a"(ret)
			     : "a"(nr), "b"(a0), "c"(a1), "d"(a2), "S"(0)
			     : "memory");
	else
		asm volatile("vmcall"
			     : "=a"(ret)
			     : "a"(nr), "b"(a0), "c"(a1), "d"(a2), "S"(0)
			     : "memory");
	return (int32_t)ret;
}

/* isa-debug-exit at 0xf4: QEMU exits with status (value << 1) | 1. */
void guest_exit(bool pass)
{
	serial_flush();
	outl(0xf4, pass ? 0 : 1);
	for (;;)
		asm volatile("cli; hlt");
}
