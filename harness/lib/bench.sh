# SPDX-License-Identifier: GPL-2.0
# harness/privmem bench: one conversion workload on privmem and on the
# anchor, upstream's guest_memfd in Debian's linux-source-6.12, booted side
# by side in the same invocation, with instruction-driven guest time
# (QEMU -icount, Bochs clock sync=none).  Results in build/bench/.

ANCHOR_PKG=linux-source-6.12
ANCHOR_TARBALL=/usr/src/linux-source-6.12.tar.xz
ANCHOR=$B/anchor
ANCHOR_SRC=$ANCHOR/linux
ANCHOR_OBJ=$ANCHOR/obj
ANCHOR_KST=$ANCHOR/selftests
ANCHOR_FRAGMENTS="$ROOT/harness/config/base.config $ROOT/harness/config/anchor.config"
BENCH=$B/bench
BENCH_SRC=$ROOT/harness/bench/private_mem_bench.c

anchor_version() {
	dpkg-query -W -f='${Version}' "$ANCHOR_PKG" 2>/dev/null
}

# import_anchor: the 6.12 tree, extracted (once per Debian version).
import_anchor() {
	local ver

	ver=$(anchor_version)
	[ -n "$ver" ] && [ -f "$ANCHOR_TARBALL" ] ||
		die "$ANCHOR_PKG is not installed ($ANCHOR_TARBALL missing)"
	rm -rf "$ANCHOR_SRC" && mkdir -p "$ANCHOR_SRC" &&
		tar -xf "$ANCHOR_TARBALL" -C "$ANCHOR_SRC" --strip-components=1 &&
		echo "$ver" >"$ANCHOR_SRC/.privmem-source"
}

# anchor_config: tinyconfig + base.config + anchor.config in the 6.12
# tree.  What anchor.config asks for must hold; the options of base.config
# that 6.12 lacks or sets otherwise go to anchor-fragment-differences.txt.
anchor_config() {
	local scratch=$ANCHOR/kconfig

	mkdir -p "$BENCH"
	# shellcheck disable=SC2086
	merge_tinyconfig "$ANCHOR_SRC" "$scratch" $ANCHOR_FRAGMENTS || return 1
	check_config "$scratch/.config" "$ROOT/harness/config/anchor.config" || return 1
	check_config "$scratch/.config" "$ROOT/harness/config/base.config" |
		sed 's/^privmem: \(.*\) did not survive olddefconfig (got \(.*\)); a dependency is missing$/\1: the anchor has \2/' \
		>"$BENCH/anchor-fragment-differences.txt"
	install_config "$scratch" "$ANCHOR_OBJ"
}

# The anchor kernel, its headers and its KVM selftests library (built as
# the dependency of one of its tests).
anchor_build() {
	echo "anchor: Debian $ANCHOR_PKG $(anchor_version)"
	(
		SRC=$ANCHOR_SRC OBJ=$ANCHOR_OBJ
		kmake bzImage modules && kmake headers
	) || return 1
	make -C "$ANCHOR_SRC/tools/testing/selftests/kvm" -j"$JOBS" \
		OUTPUT="$ANCHOR_KST/kvm" INSTALL_HDR_PATH="$ANCHOR_OBJ/usr" \
		KHDR_INCLUDES="-isystem $ANCHOR_OBJ/usr/include" \
		CC="ccache gcc" EXTRA_CFLAGS=-static LDFLAGS="-static -pthread" \
		"$ANCHOR_KST/kvm/x86_64/private_mem_conversions_test"
}

build_anchor() {
	[ "$(cat "$ANCHOR_SRC/.privmem-source" 2>/dev/null)" = "$(anchor_version)" ] ||
		step "$LOGS/anchor-import.log" "extracting the anchor, Debian $ANCHOR_PKG $(anchor_version), into ${ANCHOR_SRC#"$ROOT"/}" \
			import_anchor
	step "$LOGS/anchor-kconfig.log" "configuring the anchor: tinyconfig + ${ANCHOR_FRAGMENTS//$ROOT\//}" anchor_config
	step "$LOGS/anchor-build.log" "building the anchor kernel and its selftests library in ${ANCHOR_OBJ#"$ROOT"/}" \
		anchor_build
}

# bench_prog KIND TREE HDRS LIBDIR: the benchmark for one kernel, against
# that kernel's uAPI headers and KVM selftests library, with the same
# compiler flags for both, so the guest code is the same.
bench_prog() {
	local kind=$1 tree=$2 hdrs=$3 lib=$4 kvm=$2/tools/testing/selftests/kvm

	gcc -O2 -g -std=gnu99 -Wall -U_FORTIFY_SOURCE -DCONFIG_64BIT \
		-fno-builtin-memcmp -fno-builtin-memcpy -fno-builtin-memset -fno-builtin-strnlen \
		-fno-stack-protector -fno-PIE -fno-strict-aliasing -no-pie -static -pthread \
		-I"$tree/tools/include" -I"$tree/tools/arch/x86/include" -isystem "$hdrs" \
		-I"$kvm/include" -I"$kvm/include/x86_64" -I"$kvm/.." \
		-o "$BENCH/private_mem_bench-$kind" "$BENCH_SRC" "$lib"/lib/*.o "$lib"/lib/x86_64/*.o \
		-luring
}

# guest_code_of BIN: the benchmark's guest functions (those the compiler
# kept out of line) as instructions, with the addresses and displacements
# that the two libraries place differently left out.
BENCH_GUEST_FUNCS="guest_code guest_phases guest_batch_code guest_map_batch
guest_convert guest_touch guest_map_range guest_hypercall batch_unit scatter
scatter_in"

guest_code_of() {
	local sym syms

	syms=$(nm "$1") || return 1
	for sym in $BENCH_GUEST_FUNCS; do
		grep -E " [tT] $sym\$" <<<"$syms" >/dev/null || continue
		objdump -d --no-show-raw-insn --no-addresses --disassemble="$sym" "$1" |
			sed -n "/^<$sym>:\$/,/^\$/p" | sed -E 's/0x[0-9a-f]+|\b[0-9a-f]{4,}\b/N/g'
	done
}

bench_progs() {
	mkdir -p "$BENCH" &&
		bench_prog privmem "$SRC" "$OBJ/usr/include" "$KST/kvm" &&
		bench_prog guest_memfd "$ANCHOR_SRC" "$ANCHOR_OBJ/usr/include" "$ANCHOR_KST/kvm" || return 1
	guest_code_of "$BENCH/private_mem_bench-privmem" >"$BENCH/guest-code-privmem.txt"
	guest_code_of "$BENCH/private_mem_bench-guest_memfd" >"$BENCH/guest-code-guest_memfd.txt"
	if ! grep -q '^<guest_code>:$' "$BENCH/guest-code-privmem.txt"; then
		echo "privmem: no guest_code in the disassembly of the privmem build"
		return 1
	fi
	if ! diff -u "$BENCH/guest-code-guest_memfd.txt" "$BENCH/guest-code-privmem.txt"; then
		echo "privmem: the two builds' guest code differs (above)"
		return 1
	fi
	echo "the benchmark's own guest functions are the same instructions in both builds: $(grep -c . "$BENCH/guest-code-privmem.txt") lines in $(grep -c '^<' "$BENCH/guest-code-privmem.txt") functions"
}

build_bench_progs() {
	step "$LOGS/bench-build.log" "building the benchmark twice from ${BENCH_SRC#"$ROOT"/}: for privmem and for the anchor" \
		bench_progs
}

# The benchmark's workload: the full run by hand, the short one in 'test';
# then, where the kind has it, the batch workload (-B) in the same boot.
BENCH_FULL_ARGS="-n 4096 -t 512 -s 512"
BENCH_SHORT_ARGS="-n 256 -t 32 -s 32"
BENCH_FULL_BATCH_ARGS="-B -s 512 -r 16"
BENCH_SHORT_BATCH_ARGS="-B -s 32 -r 2"
# Before it measures, a benchmark boot waits (in guest time, which -icount
# lets pass at once when idle) for the kernel to settle on the TSC, which
# it refines about a second after boot, and says which clock it uses.
BENCH_CLOCK='cs=/sys/devices/system/clocksource/clocksource0/current_clocksource
for i in $(seq 20); do [ "$(cat $cs)" = tsc ] && break; sleep 1; done
echo "privmem: bench clocksource $(cat $cs)"'
# What a benchmark boot shows as it runs.
BENCH_FILTER='/bench: [a-z_]+ (workload|[A-H] |batch (workload|[abc]-))|^privmem: (loaded|cannot|bench)/ { print "    " $0; fflush() }'

# The four kinds of boot: privmem, privmem with its private memory in 2 MiB
# folios (the benchmark's -H), the anchor with the same VMM policy, and the
# anchor with upstream QEMU's policy (no fallocate() on a conversion to
# private: the benchmark's -l).
BENCH_KINDS="guest_memfd guest_memfd_lazy privmem privmem_huge"

bench_kernel_label() {
	case $1 in
	privmem) echo "privmem (6.1 + this series, $(kernel_release))" ;;
	privmem_huge) echo "privmem (6.1 + this series, $(kernel_release)) with MFD_INACCESSIBLE_HUGE" ;;
	guest_memfd) echo "guest_memfd ($ANCHOR_PKG $(anchor_version))" ;;
	guest_memfd_lazy) echo "guest_memfd ($ANCHOR_PKG $(anchor_version)) with upstream QEMU's policy" ;;
	esac
}

# bench_use KIND: the kernel tree and program of KIND's boots, and whether
# they run the batch workload too (privmem's three ways, the anchor's one).
bench_use() {
	BENCH_BATCH=
	case $1 in
	privmem) BENCH_PROG=$BENCH/private_mem_bench-privmem BENCH_OPTS= BENCH_BATCH=1 ;;
	privmem_huge) BENCH_PROG=$BENCH/private_mem_bench-privmem BENCH_OPTS=-H ;;
	guest_memfd) SRC=$ANCHOR_SRC OBJ=$ANCHOR_OBJ BENCH_PROG=$BENCH/private_mem_bench-guest_memfd BENCH_OPTS= BENCH_BATCH=1 ;;
	guest_memfd_lazy) SRC=$ANCHOR_SRC OBJ=$ANCHOR_OBJ BENCH_PROG=$BENCH/private_mem_bench-guest_memfd BENCH_OPTS=-l ;;
	esac
}

# bench_script ARGS BATCH_ARGS: what a benchmark boot of the kind that
# bench_use chose runs.
bench_script() {
	local prog=/tests/private_mem_bench

	if [ -n "$BENCH_BATCH" ]; then
		echo "$prog $1 $BENCH_OPTS && exec $prog $2 $BENCH_OPTS"
	else
		echo "exec $prog $1 $BENCH_OPTS"
	fi
}

# bench_pack KIND ARGS [SCRIPT]: the initramfs of KIND's benchmark boots,
# which run SCRIPT, by default the benchmark with ARGS and then with
# $BENCH_BATCH_ARGS.
bench_pack() {
	local kind=$1 args=$2

	(
		bench_use "$kind"
		BENCH_SCRIPT="$BENCH_CLOCK
${3:-"$(bench_script "$args" "$BENCH_BATCH_ARGS")"}"
		step "$LOGS/initramfs.log" "packing the initramfs of the $kind benchmark ($args)" \
			build_initramfs "bench-$kind" "$OBJ"
	)
}

# bench_boot KIND RUN: boot KIND's kernel in lane $VM with its benchmark;
# keep the serial log in build/bench/runs/.  Fails if the benchmark did
# not finish.
bench_boot() {
	local kind=$1 run=$2 log problems out=$BENCH_RESULTS/runs/$VM-$1-$2.log

	(
		bench_use "$kind"
		note "==> run $run of $(bench_kernel_label "$kind"), $(lane_label "$VM")"
		[ "$kind" = privmem ] ||
			VM_BANNER="privmem: anchor Debian $ANCHOR_PKG $(anchor_version), kernel $(kernel_release)"
		VM_ICOUNT=1 run_vm "bench-$kind" "$BENCH_LIMIT" "$BENCH_FILTER"
		log=$(serial_log "bench-$kind")
		mkdir -p "$BENCH_RESULTS/runs"
		cp "$log" "$out"
		grep -q '^privmem: bench exit status 0' "$out" && grep -q "bench: $kind done" "$out" &&
			{ [ -z "$BENCH_BATCH" ] || grep -q "bench: $kind batch done" "$out"; }
	) || {
		note "FAILED: the $kind benchmark did not finish; see ${out#"$ROOT"/}:"
		show_bench_failure "$out"
		return 1
	}
	problems=$(scan_kernel_log "$out") && return 0
	if [ "$kind" != privmem ]; then
		# The anchor is upstream's kernel, not this series: its reports
		# (6.12 warns about Bochs's CPU topology at boot) are shown and
		# kept with the results, not failed.
		note "    the anchor's kernel reported (6.12's own, kept in ${BENCH_RESULTS#"$ROOT"/}/anchor-problems.txt):"
		note "$problems"
		printf '%s\n' "$problems" | sed "s|$ROOT/||" >>"$BENCH_RESULTS/anchor-problems.txt"
		return 0
	fi
	note "FAILED: the privmem kernel reported problems during the benchmark:"
	note "$problems"
	return 1
}

# The lines of a failed benchmark boot that say why.
show_bench_failure() {
	local hits

	hits=$(grep -n -m 8 -A 4 -E 'Test Assertion Failure|SKIP|privmem: (bench exit|cannot)|did not finish|Kernel panic|BUG:' "$1")
	if [ -n "$hits" ]; then
		printf '%s\n' "$hits" | sed 's/^/    | /'
	else
		tail -n 10 "$1" | sed 's/^/    | /'
	fi
}

# run_bench RUNS ARGS: RUNS boots of each kind in lane $VM, alternating,
# then the report over every lane run so far.  Fails if privmem's runs
# (either kind) fail, or the anchor's in the AMD lane; in the Intel lane
# the anchor's table is shown wherever 6.12 completes under Bochs.
run_bench() {
	local runs=$1 args=$2 run kind rc=0

	rm -f "$BENCH_RESULTS/runs/$VM-"*.log
	for kind in $BENCH_KINDS; do
		bench_pack "$kind" "$args" || return 1
	done
	for run in $(seq "$runs"); do
		for kind in $BENCH_KINDS; do
			bench_boot "$kind" "$run" && continue
			case $kind in
			privmem*) ;;
			*) [ "$VM" = bochs ] && continue ;;
			esac
			rc=1
		done
	done
	return $rc
}

# Every difference between the two kernels' configurations.
bench_config_diff() {
	echo "Options of harness/config/base.config that the anchor does not have as asked:"
	if [ -s "$BENCH/anchor-fragment-differences.txt" ]; then
		sed 's/^/    /' "$BENCH/anchor-fragment-differences.txt"
	else
		echo "    none"
	fi
	echo "Added for the anchor (harness/config/anchor.config):"
	grep '^CONFIG_' "$ROOT/harness/config/anchor.config" | sed 's/^/    /'
	echo "scripts/diffconfig of the two .config files (-: privmem only, +: anchor only, a -> b: set differently):"
	"$ANCHOR_SRC/scripts/diffconfig" "$OBJ/.config" "$ANCHOR_OBJ/.config" | sed 's/^/    /'
}

# What the terminal shows of the configuration differences: all but the
# symbols that only one of the two kernel versions has.
bench_config_summary() {
	local only

	only=$(grep -cE '^    [-+][A-Z0-9_]+ (n|[0-9"].*)$' "$1")
	note "==> how the two kernels' configurations differ (every line: ${1#"$ROOT"/})"
	grep -v -E '^    [-+][A-Z0-9_]+ ' "$1" | sed 's/^/    /'
	note "        on in one kernel only (-: privmem, +: anchor):"
	grep -E '^    [-+][A-Z0-9_]+ (y|m)$' "$1" | awk '{ printf "%s%s", (NR > 1 ? ", " : ""), $1 } END { print "" }' |
		fold -s -w 90 | sed -e 's/ *$//' -e 's/^/            /'
	note "        ... and $only symbols of one kernel only that are off or have a value"
}

bench_about() {
	local mode=$1 args=$2 runs=$3 debug

	debug="without the debug options (build/obj-nodebug)"
	[ "$PRIVMEM_DEBUG" = 1 ] && debug="WITH the debug options of the test kernel (figures not comparable)"
	cat <<-EOF2
	Made by \`harness/privmem bench${mode:+ --$mode}\` on $(date -u +%Y-%m-%d) (${runs} boot(s) of each kernel per lane, alternating).

	- **privmem**: Debian $BASE_PKG $(base_version) with this series (composed tree $(git -C "$SRC" rev-parse --short HEAD)), kernel $(kernel_release), built $debug.
	- **privmem, 2 MiB folios**: the same kernel, with the private memfd made with \`MFD_INACCESSIBLE_HUGE\` and the shared memory backed by transparent huge pages (the benchmark's \`-H\`; KVM maps a memslot huge only where the shared memory's address is 2 MiB-congruent to the gfn, so the shared side needs the alignment THP gives it). Whole 2 MiB conversions get 2 MiB folios and 2 MiB mappings, private or shared; single-page conversions split them. Its ratio is against the same anchor, which maps private memory 4 KiB at a time; the anchor's shared memory has no THP. Only phases whose conversions cover whole 2 MiB blocks can use them, and the workload needs at least 512 pages for one.
	- **anchor**: upstream guest_memfd in Debian $ANCHOR_PKG $(anchor_version), \`KVM_X86_SW_PROTECTED_VM\`, built without debug options.
	- **Program**: \`harness/bench/private_mem_bench.c\`, built once against each kernel's headers and KVM selftests library, with the same flags; the guest code is the same, the host differs only in the uAPI it drives. Arguments: \`$args\`.
	- **VMM policy, the same on both**: to private, \`fallocate()\` the range in the private fd, then \`MADV_DONTNEED\` the shared range (as this repository's QEMU does for privmem); to shared, punch the range out of the private fd. The anchor sets the memory attributes first (\`KVM_SET_MEMORY_ATTRIBUTES\`), as its design requires, and gets its requests as \`KVM_EXIT_HYPERCALL\`; privmem gets them as \`KVM_EXIT_MEMORY_ERROR\`. Upstream QEMU does not \`fallocate()\` guest_memfd on a conversion to private: its first private fault allocates the page. The column "guest_memfd, upstream policy" is the anchor run that way (the benchmark's \`-l\`); the ratio is against the same policy.
	- **Phases**: A touches every page once through the shared view; B converts all N to private with one hypercall; C touches every page through the private view; D does, page by page, a hypercall to shared, a shared touch, a hypercall back to private and a private touch; E converts all N to shared with one hypercall; F converts scattered pages to private, one hypercall each; G (privmem only: the anchor has no implicit conversions) makes private accesses to scattered shared pages, each converted by the VMM on its exit; H converts all to private, touches every page and counts the pages the host holds for the guest's data: shared pages present in the VMM's page tables (\`/proc/self/pagemap\`) plus private pages (the rise of \`Unevictable\` in \`/proc/meminfo\`, read after \`compact_memory\` drains the LRU batches and \`stat_refresh\` folds the per-CPU counters). Page tables, SPTEs and the anchor's attribute xarray are not counted.
	- **Batch workload** (the second run in the privmem and anchor boots, the benchmark's \`-B\`): over 2 × ranges × 512 pages, the guest converts scattered 4 KiB pages to private, then scattered 2 MiB ranges, each time after an untimed phase that makes all of it shared and touches the pages to convert. It does so in three ways: (a) one \`KVM_HC_MAP_GPA_RANGE\` per page or range, as upstream works; (b) \`KVM_HC_MAP_GPA_BATCH\` lists of up to 255 entries, which the VMM applies one entry at a time (\`fallocate()\`, then \`MADV_DONTNEED\`); (c) the same lists, each applied with one io_uring submission (\`IORING_OP_FALLOCATE\` and \`IORING_OP_MADVISE\`, linked). Both use \`private_region_apply_batch()\` of the selftests library. The anchor has no batches and runs (a) only. Syscalls count every \`KVM_RUN\` that returned a conversion exit and every call the VMM made for it (the anchor's \`KVM_SET_MEMORY_ATTRIBUTES\` included; one \`io_uring_enter\` per submission in (c)); VMM ns is the time from the \`KVM_RUN\` that returned a conversion exit to the next \`KVM_RUN\`, the VMM's work on it; TLB shootdowns are the \`TLB\` line of \`/proc/interrupts\` (IPIs: none with the benchmark's one CPU), and \`tlb_flush\` is KVM's count of the TLB flushes it made for the vCPU (its statistic of that name).
	- **What the figures model**: the instructions executed on each path, in the VMM, the test VM's kernel and the KVM guest, with one vCPU. They do not model caches, TLBs, memory bandwidth or parallel speedup. The ratio is privmem / anchor: below 1, privmem executes fewer. Spread is (max - min) / mean over the runs.
	EOF2
}

# bench_main [short]: build, boot and report, in every lane of $LANES.
bench_main() {
	local mode=${1:-} runs=${PRIVMEM_BENCH_RUNS:-2} args=$BENCH_FULL_ARGS rc=0

	# The short mode's results do not replace those of a full run.
	BENCH_RESULTS=$BENCH BENCH_BATCH_ARGS=$BENCH_FULL_BATCH_ARGS
	if [ "$mode" = short ]; then
		runs=1 args=$BENCH_SHORT_ARGS BENCH_RESULTS=$BENCH/short
		BENCH_BATCH_ARGS=$BENCH_SHORT_BATCH_ARGS
	fi
	case $runs in
	'' | *[!0-9]* | 0) die "PRIVMEM_BENCH_RUNS=$runs: give a number of boots, at least 1" ;;
	esac
	mkdir -p "$BENCH_RESULTS"
	rm -rf "$BENCH_RESULTS/runs" "$BENCH_RESULTS/anchor-problems.txt"
	for VM in $LANES; do
		case $VM in
		qemu) BENCH_LIMIT=900 ;;
		bochs) BENCH_LIMIT=2400 ;;
		esac
		run_bench "$runs" "$args" || rc=1
	done
	rm -f "$BENCH_RESULTS/breakdown.log"
	if [ -z "$mode" ] && [[ " $LANES " = *" qemu "* ]]; then
		run_breakdown || rc=1
	fi
	bench_config_diff >"$BENCH_RESULTS/config-diff.txt"
	bench_config_summary "$BENCH_RESULTS/config-diff.txt"
	bench_about "$mode" "$args $BENCH_BATCH_ARGS" "$runs" >"$BENCH_RESULTS/about.md"
	note "==> the benchmark's tables"
	note "    VMM policy on both kernels: to private, fallocate() in the private fd, then MADV_DONTNEED of the shared range;"
	note "    to shared, punch the range out of the private fd (the anchor sets its memory attributes first). Ratio: privmem / anchor."
	[ "$PRIVMEM_DEBUG" = 1 ] &&
		note "    (privmem runs with the debug options of the test kernel here: a check that the benchmark works, not figures to compare)"
	python3 "$ROOT/harness/bench/report.py" "$BENCH_RESULTS" --title "privmem vs upstream guest_memfd: conversion benchmark" \
		--bochs-ips "$BOCHS_IPS" \
		--about "$BENCH_RESULTS/about.md" --config-diff "$BENCH_RESULTS/config-diff.txt" || rc=1
	note "    results: ${BENCH_RESULTS#"$ROOT"/}/results.md, results.csv, ratios.png; boots: ${BENCH_RESULTS#"$ROOT"/}/runs/"
	return $rc
}

# bench_short_test: once the background build is done, the short
# benchmark in every lane, as one more test of 'test': it passes when the
# build did and every table could be made.
bench_short_test() {
	local n=$((TOTAL_PASS + TOTAL_FAIL + TOTAL_SKIP + 1))

	if ! bench_build_wait; then
		note "not ok $n bench --short: the anchor or the benchmark did not build; see above"
		TOTAL_FAIL=$((TOTAL_FAIL + 1))
		return 1
	fi
	if bench_main short; then
		note "ok $n bench --short: the benchmark made its tables in: $LANES"
		TOTAL_PASS=$((TOTAL_PASS + 1))
	else
		note "not ok $n bench --short: the benchmark could not make its tables; see above"
		TOTAL_FAIL=$((TOTAL_FAIL + 1))
		return 1
	fi
}

# Phase B of privmem step by step: a throwaway build of the composed tree
# with harness/bench/breakdown.patch, whose knobs skip one step of
# fallocate() on an inaccessible file, and one boot that runs the
# benchmark with each step skipped in turn.  AMD lane, full mode only.
BREAKDOWN=$BENCH/breakdown
BREAKDOWN_STEPS="none memlock clear invalidate"

breakdown_build() {
	local wt=$BREAKDOWN/linux obj=$BREAKDOWN/obj

	ensure_worktree "$SRC" "$wt" HEAD || return 1
	git -C "$wt" checkout -q -f --detach "$(git -C "$SRC" rev-parse HEAD)" &&
		git -C "$wt" apply "$ROOT/harness/bench/breakdown.patch" || return 1
	mkdir -p "$obj"
	cp "$OBJ/.config" "$obj/.config"
	(
		SRC=$wt OBJ=$obj
		kmake olddefconfig && kmake bzImage modules
	)
}

# The boot's script: one run to warm up, whose figures are left out, then
# every step skipped in turn, twice over.
breakdown_script() {
	local p=/sys/module/inaccessible/parameters s k

	echo "/tests/private_mem_bench $BENCH_FULL_ARGS >/dev/null || exit 1"
	for s in $BREAKDOWN_STEPS $BREAKDOWN_STEPS; do
		for k in memlock clear invalidate; do
			echo "echo $([ "$k" = "$s" ] && echo Y || echo N) >$p/bench_skip_$k || exit 1"
		done
		echo "echo 'bench: breakdown skip=$s'"
		echo "/tests/private_mem_bench $BENCH_FULL_ARGS || exit 1"
	done
}

run_breakdown() {
	(step "$LOGS/breakdown-build.log" "building privmem with the throwaway knobs of harness/bench/breakdown.patch in ${BREAKDOWN#"$ROOT"/}/obj" \
		breakdown_build) || return 1
	(
		SRC=$BREAKDOWN/linux OBJ=$BREAKDOWN/obj VM=qemu
		bench_pack privmem "" "$(breakdown_script)" || exit 1
		note "==> phase B step by step: privmem with each step of fallocate() skipped in turn, $(lane_label qemu)"
		VM_ICOUNT=1 run_vm bench-privmem 1800 '/bench: (breakdown|privmem B )/ { print "    " $0; fflush() }'
		cp "$(serial_log bench-privmem)" "$BENCH_RESULTS/breakdown.log"
	)
	grep -q '^privmem: bench exit status 0' "$BENCH_RESULTS/breakdown.log" || {
		note "FAILED: the breakdown boot did not finish; see ${BENCH_RESULTS#"$ROOT"/}/breakdown.log:"
		show_bench_failure "$BENCH_RESULTS/breakdown.log"
		return 1
	}
}

# 'test' builds the anchor and the benchmark while the lanes' VMs run:
# each VM keeps one core busy, the build takes the others.
bench_build_start() {
	local jobs=$(($(nproc) - 1))

	[ "$jobs" -ge 1 ] || jobs=1
	note "==> building the anchor and the benchmark in the background with -j$jobs while the lanes run (log: ${LOGS#"$ROOT"/}/bench-background.log)"
	(JOBS=$jobs build_anchor && build_bench_progs) >"$LOGS/bench-background.log" 2>&1 &
	BENCH_BUILD_PID=$!
}

bench_build_wait() {
	local rc=0

	wait "$BENCH_BUILD_PID" || rc=$?
	BENCH_BUILD_PID=
	note "==> the background build of the anchor and the benchmark:"
	sed 's/^/    /' "$LOGS/bench-background.log"
	return $rc
}

# bench_build_stop: when 'test' stops early, the background build and
# everything it started stop with it.
bench_build_stop() {
	[ -n "${BENCH_BUILD_PID:-}" ] && kill_tree "$BENCH_BUILD_PID"
	return 0
}

kill_tree() {
	local child

	for child in $(ps -o pid= --ppid "$1" 2>/dev/null); do
		kill_tree "$child"
	done
	kill "$1" 2>/dev/null
}
