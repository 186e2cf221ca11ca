// SPDX-License-Identifier: GPL-2.0
/*
 * privmem-guest: a freestanding 32-bit x86 guest that tests private memory
 * in a KVM_X86_PRIVATE_MEM_VM run by QEMU (-accel kvm, machine pc).
 *
 * The guest picks the private or the shared page of a frame per access with
 * the private bit, bit MAXPHYADDR (CPUID 0x80000008 EAX[7:0]) of the
 * physical address: set is private, clear is shared.  A frame touched in
 * the wrong state is converted by the VMM (implicit conversion), and the
 * guest asks for conversions with KVM_HC_MAP_GPA_RANGE (explicit).  A
 * conversion is destructive: the page that a frame gets reads as zeros.
 *
 * Boot: multiboot v1, "-kernel privmem-guest.elf -append <mode>"; the image
 * sits at 4 MiB, clear of the low memory the tests convert.  It runs with
 * PAE paging, 2 MiB pages:
 *
 *	VA 0..1 GiB	PA 0..1 GiB			shared view of RAM
 *	VA 1..2 GiB	PA bit | 0..1 GiB		private view of RAM
 *	VA 2..3 GiB	PA bit | 3..4 GiB		private alias of MMIO
 *	VA 3..4 GiB	PA 3..4 GiB			MMIO
 *
 * so RAM beyond 1 GiB is not reached.  Test pages start at 8 MiB.
 *
 * Output: TAP 13 on COM1, diagnostics as "# " lines, then
 * "privmem-guest: done, N passed, M failed".  Exit through isa-debug-exit
 * (-device isa-debug-exit,iobase=0xf4,iosize=0x04): QEMU's status is 1 if
 * every test passed, 3 if any failed.
 *
 * Modes, the first word of -append:
 *
 * convert	the conversion suite, 11 tests.  Test 11 stores the secret
 *		"privmem-secret-<tag>" (16 hex digits from the TSC) only in
 *		a private page (0x803000) and, as a positive control for
 *		the host's scan, "privmem-shared-<tag>" in a shared page
 *		(0x805000), prints
 *		    "# privmem-guest: secret held, tag <tag>"
 *		(or "# privmem-guest: secret not stored"), writes each page
 *		past the test pages, up to the end of RAM, through its
 *		shared view, then each even one through its private view
 *		(which converts it: the VMM discards its shared copy),
 *		prints
 *		    "# privmem-guest: touched N pages private, M shared"
 *		(the pages left private and left shared), then
 *		    "# privmem-guest: holding, send a byte to go on"
 *		and waits for one byte on COM1.  Meanwhile the host looks for
 *		the secret in QEMU's memory.  Then the guest checks that the
 *		secret is intact.
 * mmio		reads the private alias of 0xfed00000, where there is no RAM:
 *		the VMM must stop the VM.  If the read returns, test 1 fails.
 * reset	boot 1 writes a private page (test 1), leaves a marker at
 *		0x900000 in shared RAM and resets through port 0xcf9 (then
 *		the keyboard controller).  Boot 2 sees the marker, clears it
 *		and checks that the private page reads zeros (test 2).  The
 *		two boots print one TAP stream: boot 2 prints no header.
 *
 * An unknown mode is a failed test.
 */
#include "guest.h"

#define T(n)		(0x800000u + (n) * PAGE_SIZE)	/* test pages */
#define NR_TEST_PAGES	10
#define PAGE_WORDS	(PAGE_SIZE / 4)

unsigned int phys_bits;
unsigned int private_bit;
uint32_t max_ext_leaf;
enum vendor vendor;
uint64_t ram_end;

static char vendor_str[13];
static char mode[32];

static unsigned int test_nr, n_passed, n_failed;

/* ---- TAP ---------------------------------------------------------------- */

static void tap_header(unsigned int plan)
{
	/* SeaBIOS's serial console may leave its last line unfinished. */
	pr("\nTAP version 13\n1..%u\n", plan);
	pr("# privmem-guest: mode=%s ", mode);
	if (max_ext_leaf >= 0x80000008)
		pr("private bit %u", phys_bits);
	else
		pr("private bit none");
	pr(", RAM %u MiB (end 0x%llx), vendor %s",
	   (uint32_t)((ram_end + SZ_1M / 2) >> 20), (unsigned long long)ram_end,
	   vendor == VENDOR_AMD ? "AMD" :
	   vendor == VENDOR_INTEL ? "Intel" : "unknown");
	if (vendor == VENDOR_UNKNOWN)
		pr(" (\"%s\", using vmcall)", vendor_str);
	pr("\n");
}

static void report(const char *name)
{
	test_nr++;
	if (failed()) {
		n_failed++;
		pr("not ok %u %s # %s\n", test_nr, name, fail_reason());
	} else {
		n_passed++;
		pr("ok %u %s\n", test_nr, name);
	}
}

static void run_test(const char *name, void (*fn)(void))
{
	fail_reset();
	run_guarded(fn);
	report(name);
}

static __noreturn void done(void)
{
	pr("privmem-guest: done, %u passed, %u failed\n", n_passed, n_failed);
	guest_exit(!n_failed);
}

/* ---- helpers ------------------------------------------------------------ */

static void fill_page(volatile void *page, uint32_t v)
{
	volatile uint32_t *p = page;
	unsigned int i;

	for (i = 0; i < PAGE_WORDS; i++)
		p[i] = v;
}

/* Fails the test at the first word that differs, naming the view. */
static bool check_page(volatile void *page, uint32_t want, const char *what)
{
	volatile uint32_t *p = page;
	unsigned int i;

	for (i = 0; i < PAGE_WORDS; i++) {
		uint32_t got = p[i];

		if (got != want) {
			fail("%s: got 0x%x want 0x%x at +0x%x", what, got,
			     want, i * 4);
			return false;
		}
	}
	return true;
}

static long map_gpa(uint32_t gpa, uint32_t npages, bool to_private)
{
	return kvm_hypercall3(KVM_HC_MAP_GPA_RANGE, gpa, npages,
			      to_private ? KVM_MAP_GPA_RANGE_ENCRYPTED :
					   KVM_MAP_GPA_RANGE_DECRYPTED);
}

static void expect_ret(long got, long want, const char *what)
{
	if (got != want)
		fail("%s returned %ld want %ld", what, got, want);
}

/* ---- convert ------------------------------------------------------------ */

static void test_cpuid(void)
{
	if (max_ext_leaf < 0x80000008)
		fail("no CPUID leaf 0x80000008 (highest 0x%x)", max_ext_leaf);
	else if (!private_bit)
		fail("MAXPHYADDR %u is not between 32 and 51", phys_bits);
}

static void test_implicit_private(void)
{
	fill_page(PRIV(T(0)), 0xa5a5a5a5);
	check_page(PRIV(T(0)), 0xa5a5a5a5, "private view");
}

static void test_implicit_shared(void)
{
	check_page(SHARED(T(0)), 0, "shared view, first read");
	fill_page(SHARED(T(0)), 0x3c3c3c3c);
	check_page(SHARED(T(0)), 0x3c3c3c3c, "shared view");
}

static void test_private_again(void)
{
	check_page(PRIV(T(0)), 0, "private view");
}

static void test_explicit_private(void)
{
	fill_page(SHARED(T(1)), 0x69696969);
	expect_ret(map_gpa(T(1), 1, true), 0, "to private");
	check_page(PRIV(T(1)), 0, "private view, first read");
	fill_page(PRIV(T(1)), 0x96969696);
	check_page(PRIV(T(1)), 0x96969696, "private view");
}

static void test_explicit_shared(void)
{
	expect_ret(map_gpa(T(1), 1, false), 0, "to shared");
	check_page(SHARED(T(1)), 0, "shared view");
}

#define SECTIONS_START	0xc8000u
#define SECTIONS_PAGES	16u		/* to 0xd8000: four 16 KiB PAM sections */

static void test_sections(void)
{
	uint32_t pa, end = SECTIONS_START + SECTIONS_PAGES * PAGE_SIZE;

	expect_ret(map_gpa(SECTIONS_START, SECTIONS_PAGES, true), 0,
		   "to private");
	for (pa = SECTIONS_START; pa < end; pa += PAGE_SIZE)
		fill_page(PRIV(pa), 0xc3c3c3c3 ^ (pa >> 12));
	for (pa = SECTIONS_START; pa < end; pa += PAGE_SIZE)
		if (!check_page(PRIV(pa), 0xc3c3c3c3 ^ (pa >> 12),
				"private view"))
			break;
	expect_ret(map_gpa(SECTIONS_START, SECTIONS_PAGES, false), 0,
		   "to shared");
}

static void test_holes(void)
{
	uint32_t beyond = ((ram_end + SZ_2M - 1) & ~(uint64_t)(SZ_2M - 1)) +
			  16 * SZ_1M;

	/* RAM is a whole number of MiB: its last page, and the one after. */
	uint32_t last = ((ram_end + SZ_1M - 1) & ~(uint64_t)(SZ_1M - 1)) -
			PAGE_SIZE;
	long ret;

	ret = map_gpa(last, 2, true);
	pr("# privmem-guest: to private 0x%x, 2 pages (past the end of RAM): %ld\n",
	   last, ret);
	expect_ret(ret, -KVM_EPERM, "the last page of RAM and the next");

	ret = map_gpa(beyond, 4, true);
	pr("# privmem-guest: to private 0x%x, 4 pages (beyond RAM): %ld\n",
	   beyond, ret);
	expect_ret(ret, -KVM_EPERM, "beyond RAM");
}

static void test_malformed(void)
{
	long ret = map_gpa(T(2) + 1, 1, true);

	pr("# privmem-guest: to private 0x%x, 1 page (unaligned): %ld\n",
	   T(2) + 1, ret);
	expect_ret(ret, -KVM_EINVAL, "unaligned");
}

/*
 * The secret is built byte by byte in its private page and exists nowhere
 * else: the tag is kept as a number, and the check compares digit by digit.
 * The shared control, the same tag behind another prefix, sits in a shared
 * page, where the host must find it.
 */
#define SECRET_PA	T(3)
#define CONTROL_PA	T(5)

static const char secret_prefix[] = "privmem-secret-";
static const char control_prefix[] = "privmem-shared-";
static uint64_t secret_tag;
static bool secret_stored;
static unsigned int touched_private, touched_shared;

static char tag_digit(unsigned int i)
{
	return "0123456789abcdef"[(secret_tag >> (60 - 4 * i)) & 0xf];
}

static uint64_t mix64(uint64_t z)
{
	z += 0x9e3779b97f4a7c15ull;
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
	return z ^ (z >> 31);
}

/* Writes "<prefix><tag>" and its NUL at p, byte by byte. */
static void store_tagged(volatile char *p, const char *prefix)
{
	unsigned int i, n = strlen(prefix);

	for (i = 0; i < n; i++)
		p[i] = prefix[i];
	for (i = 0; i < 16; i++)
		p[n + i] = tag_digit(i);
	p[n + 16] = '\0';
}

static void store_secret(void)
{
	store_tagged(SHARED(CONTROL_PA), control_prefix);
	store_tagged(PRIV(SECRET_PA), secret_prefix);
	secret_stored = true;
}

static void check_secret(void)
{
	volatile char *p = PRIV(SECRET_PA);
	unsigned int i, n = sizeof(secret_prefix) - 1;

	for (i = 0; i < n + 17; i++) {
		char want = i < n ? secret_prefix[i] :
			    i < n + 16 ? tag_digit(i - n) : '\0';

		if (p[i] != want) {
			fail("secret changed at byte %u: got 0x%x", i,
			     (uint8_t)p[i]);
			return;
		}
	}
}

/*
 * The pages from past the test pages to the end of RAM (at most 1 GiB):
 * first every one through its shared view, then every even one through its
 * private view, which converts it to private.  The counts are those of the
 * pages left private and left shared, even if a fault ends this early.
 */
static void touch_pages(void)
{
	uint32_t pa, end = ram_end < SZ_1G ? ram_end : SZ_1G;

	for (pa = T(NR_TEST_PAGES); pa + PAGE_SIZE <= end; pa += PAGE_SIZE) {
		*(volatile uint32_t *)SHARED(pa) = pa;
		touched_shared++;
	}
	for (pa = T(NR_TEST_PAGES); pa + PAGE_SIZE <= end; pa += PAGE_SIZE) {
		if ((pa >> 12) & 1)
			continue;
		*(volatile uint32_t *)PRIV(pa) = pa;
		touched_private++;
		touched_shared--;
	}
}

static void test_secret(void)
{
	char c;

	secret_tag = mix64(rdtsc());
	if (run_guarded(store_secret))
		pr("# privmem-guest: secret held, tag %016llx\n",
		   (unsigned long long)secret_tag);
	else
		pr("# privmem-guest: secret not stored\n");

	run_guarded(touch_pages);
	pr("# privmem-guest: touched %u pages private, %u shared\n",
	   touched_private, touched_shared);

	serial_drain_input();
	pr("# privmem-guest: holding, send a byte to go on\n");
	while (!serial_getc(&c))
		cpu_relax();

	if (secret_stored)
		run_guarded(check_secret);
}

/*
 * One KVM_HC_MAP_GPA_BATCH for three pages, two made private and one of
 * them shared again, with its list in a shared test page: the entries
 * come back done, in order, and the pages read as conversions leave them.
 */
#define BATCH_LIST_PA	T(6)

static void test_batch(void)
{
	volatile struct kvm_map_gpa_batch *b = SHARED(BATCH_LIST_PA);
	static const struct { uint32_t pa; uint8_t op; } e[] = {
		{ T(7), KVM_MAP_GPA_BATCH_OP_PRIVATE },
		{ T(8), KVM_MAP_GPA_BATCH_OP_PRIVATE },
		{ T(7), KVM_MAP_GPA_BATCH_OP_SHARED },
	};
	unsigned int i, n = sizeof(e) / sizeof(e[0]);

	fill_page(SHARED(T(7)), 0x17171717);
	fill_page(SHARED(T(8)), 0x18181818);
	b->cur_entry = 0;
	b->end_entry = n - 1;
	b->reserved = 0;
	for (i = 0; i < n; i++) {
		b->entries[i].gfn = e[i].pa >> 12;
		b->entries[i].op = e[i].op;
		b->entries[i].page_size = KVM_MAP_GPA_BATCH_PAGE_4K;
		b->entries[i].status = 0xffff;
		b->entries[i].reserved = 0;
	}
	expect_ret(kvm_hypercall3(KVM_HC_MAP_GPA_BATCH, BATCH_LIST_PA, 0, 0),
		   0, "the batch");
	pr("# privmem-guest: batch of %u: cur_entry %u, statuses %u %u %u\n",
	   n, b->cur_entry, b->entries[0].status, b->entries[1].status,
	   b->entries[2].status);
	if (b->cur_entry != n)
		fail("cur_entry %u, want %u", b->cur_entry, n);
	for (i = 0; i < n; i++)
		if (b->entries[i].status)
			fail("entry %u: status %u", i, b->entries[i].status);
	check_page(PRIV(T(8)), 0, "private view of the second page");
	check_page(SHARED(T(7)), 0, "shared view of the first page");

	/* Nothing left to do: no exit, and 0. */
	expect_ret(kvm_hypercall3(KVM_HC_MAP_GPA_BATCH, BATCH_LIST_PA, 0, 0),
		   0, "the batch again");
	b->end_entry = 255;
	expect_ret(kvm_hypercall3(KVM_HC_MAP_GPA_BATCH, BATCH_LIST_PA, 0, 0),
		   -KVM_E2BIG, "a list of 256");
	expect_ret(map_gpa(T(8), 1, false), 0, "to shared");
}

static __noreturn void mode_convert(void)
{
	tap_header(11);
	run_test("cpuid reports the private bit", test_cpuid);
	run_test("implicit conversion to private", test_implicit_private);
	run_test("implicit conversion to shared discards the private page",
		 test_implicit_shared);
	run_test("a page made private again reads zeros", test_private_again);
	run_test("explicit conversion to private", test_explicit_private);
	run_test("explicit conversion to shared", test_explicit_shared);
	run_test("explicit conversion across RAM sections", test_sections);
	run_test("a range that leaves RAM is refused", test_holes);
	run_test("a malformed range is refused", test_malformed);
	run_test("a batch of conversions", test_batch);
	run_test("a secret held in private memory", test_secret);
	done();
}

/* ---- mmio --------------------------------------------------------------- */

#define HPET_PA		0xfed00000u

static void touch_private_mmio(void)
{
	volatile uint32_t *p = (volatile uint32_t *)(uintptr_t)
			       (MMIO_PRIV_BASE + (HPET_PA - MMIO_BASE));
	uint32_t v = *p;

	fail("the read returned 0x%x", v);
}

static __noreturn void mode_mmio(void)
{
	tap_header(1);
	pr("# privmem-guest: touching the private alias of 0x%x\n", HPET_PA);
	run_test("a private MMIO access stops the VM", touch_private_mmio);
	done();
}

/* ---- reset -------------------------------------------------------------- */

#define RESET_MARKER_PA	0x900000u
#define RESET_PAGE	T(4)

struct reset_marker {
	char magic[16];
	uint32_t passed;	/* boot 1's results */
	uint32_t failed;
};

static const char reset_magic[16] = "privmem-reset-1";

static void write_before_reset(void)
{
	fill_page(PRIV(RESET_PAGE), 0x5a5a5a5a);
	check_page(PRIV(RESET_PAGE), 0x5a5a5a5a, "private view");
}

static void check_after_reset(void)
{
	check_page(PRIV(RESET_PAGE), 0, "private view");
}

static void wait_tsc(uint64_t cycles)
{
	uint64_t start = rdtsc();

	while (rdtsc() - start < cycles)
		cpu_relax();
}

static __noreturn void mode_reset(void)
{
	struct reset_marker *m = (struct reset_marker *)SHARED(RESET_MARKER_PA);
	volatile struct reset_marker *vm = m;
	unsigned int i;
	bool second = true;

	for (i = 0; i < sizeof(reset_magic); i++)
		if (vm->magic[i] != reset_magic[i])
			second = false;

	if (second) {
		pr("\n");		/* after SeaBIOS's unfinished line */
		test_nr = 1;
		n_passed = vm->passed;
		n_failed = vm->failed;
		memset(m, 0, sizeof(*m));
		run_test("a reset empties private memory", check_after_reset);
		done();
	}

	tap_header(2);
	run_test("private page written before reset", write_before_reset);
	memcpy(m->magic, reset_magic, sizeof(reset_magic));
	vm->passed = n_passed;
	vm->failed = n_failed;
	pr("# privmem-guest: resetting\n");
	serial_flush();

	outb(0xcf9, 0x02);
	outb(0xcf9, 0x06);
	wait_tsc(1ull << 31);
	outb(0x64, 0xfe);
	wait_tsc(1ull << 31);

	/* Still here: report it rather than hang. */
	memset(m, 0, sizeof(*m));
	fail_reset();
	fail("neither port 0xcf9 nor the keyboard controller reset the VM");
	report("a reset empties private memory");
	done();
}

/* ---- entry -------------------------------------------------------------- */

static void detect_cpu(void)
{
	uint32_t a, b, c, d;

	cpuid(0, &a, &b, &c, &d);
	memcpy(vendor_str, &b, 4);
	memcpy(vendor_str + 4, &d, 4);
	memcpy(vendor_str + 8, &c, 4);
	vendor_str[12] = '\0';
	if (!strcmp(vendor_str, "AuthenticAMD"))
		vendor = VENDOR_AMD;
	else if (!strcmp(vendor_str, "GenuineIntel"))
		vendor = VENDOR_INTEL;

	cpuid(0x80000000, &max_ext_leaf, &b, &c, &d);
	if (max_ext_leaf < 0x80000008)
		return;
	cpuid(0x80000008, &a, &b, &c, &d);
	phys_bits = a & 0xff;
	if (phys_bits >= 32 && phys_bits <= 51)
		private_bit = phys_bits;
}

/* Multiboot loaders put the image's name first: QEMU passes "<file> <append>". */
static void parse_cmdline(const char *s)
{
	unsigned int n = 0;

	while (*s == ' ')
		s++;
	while (*s && *s != ' ')
		s++;
	while (*s == ' ')
		s++;
	while (*s && *s != ' ' && n < sizeof(mode) - 1)
		mode[n++] = *s++;
	mode[n] = '\0';
}

void guest_main(uint32_t magic, const struct multiboot_info *mbi)
{
	serial_init();
	idt_init();
	detect_cpu();

	if (magic == MULTIBOOT_BOOTLOADER_MAGIC) {
		if (mbi->flags & MULTIBOOT_INFO_MEMORY)
			ram_end = SZ_1M + (uint64_t)mbi->mem_upper * 1024;
		if (mbi->flags & MULTIBOOT_INFO_CMDLINE)
			parse_cmdline((const char *)(uintptr_t)mbi->cmdline);
	}

	setup_paging(private_bit);

	if (!strcmp(mode, "convert"))
		mode_convert();
	if (!strcmp(mode, "mmio"))
		mode_mmio();
	if (!strcmp(mode, "reset"))
		mode_reset();

	tap_header(1);
	if (magic != MULTIBOOT_BOOTLOADER_MAGIC)
		pr("# privmem-guest: not started by multiboot (eax 0x%x)\n",
		   magic);
	fail_reset();
	fail("unknown mode \"%s\"; the modes are convert, mmio and reset",
	     mode);
	report("the mode is known");
	done();
}
