# SPDX-License-Identifier: GPL-2.0
# Selftests, the initramfs and the test VM: QEMU TCG with emulated AMD SVM
# and nested paging, running the composed kernel (or Bochs with Intel VMX
# and EPT, harness/lib/bochs.sh).

KST=$B/selftests
PLAN=$ROOT/harness/tests.list

# plan_tests: "name timeout args..." for each test the lane VM runs.
plan_tests() {
	local out

	out=$(plan_lane_skips | cut -d' ' -f1)
	sed -e 's/#.*//' -e '/^[[:space:]]*$/d' -e '/^skip/d' "$PLAN" |
		awk -v out="$out" 'BEGIN { n = split(out, o, "\n"); for (i = 1; i <= n; i++) skip[o[i]] = 1 }
			!($1 in skip)'
}

# plan_skips: "name reason..." for each test left out of the lane VM.
plan_skips() {
	sed -n 's/^skip //p' "$PLAN"
	plan_lane_skips
}

plan_lane_skips() {
	sed -n "s/^skip@$VM //p" "$PLAN"
}

# build_selftests_in TREE OBJ OUT [--existing]: the plan's programs, static,
# against the headers of OBJ; with --existing only those whose source TREE
# has (a commit in the middle of the series lacks the later tests).
build_selftests_in() {
	local tree=$1 obj=$2 out=$3 existing=${4:-} names suite targets t

	names=$(for VM in qemu bochs; do plan_tests; done | cut -d' ' -f1 | sort -u)
	for suite in $(echo "$names" | cut -d/ -f1 | sort -u | grep -vxE "kunit|qemu"); do
		targets=
		for t in $(echo "$names" | sed -n "s|^$suite/||p"); do
			if [ -z "$existing" ] || [ -f "$tree/tools/testing/selftests/$suite/$t.c" ]; then
				targets="$targets $out/$suite/$t"
			fi
		done
		[ -n "$targets" ] || continue
		mkdir -p "$out/$suite"
		# shellcheck disable=SC2086
		make -C "$tree/tools/testing/selftests/$suite" -j"$JOBS" \
			OUTPUT="$out/$suite" INSTALL_HDR_PATH="$obj/usr" \
			KHDR_INCLUDES="-isystem $obj/usr/include" \
			CC="ccache gcc" EXTRA_CFLAGS=-static LDFLAGS="-static -pthread" \
			$targets || return 1
	done
}

build_selftests() {
	step "$LOGS/headers.log" "installing uapi headers into ${OBJ#"$ROOT"/}/usr" kmake headers
	step "$LOGS/selftests-build.log" "building the plan's selftests statically into ${KST#"$ROOT"/}" \
		build_selftests_in "$SRC" "$OBJ" "$KST"
}

# build_demo: the main-job program, linked against the KVM selftests
# library built above.
build_demo() {
	local kvm=$SRC/tools/testing/selftests/kvm

	step "$LOGS/demo-build.log" "building the demonstration program" \
		gcc -O2 -g -std=gnu99 -Wall -static -pthread -fno-stack-protector -fno-PIE -no-pie \
		-I"$SRC/tools/include" -I"$SRC/tools/arch/x86/include" -isystem "$OBJ/usr/include" \
		-I"$kvm/include" -I"$kvm/include/x86_64" -I"$kvm/.." \
		-o "$KST/privmem-demo" "$ROOT/harness/demo/privmem-demo.c" \
		$(ls "$KST"/kvm/lib/*.o "$KST"/kvm/lib/x86_64/*.o) -luring -ldl
}

# build_initramfs MODE MODDIR: busybox, /init, the KVM modules from MODDIR
# and the programs MODE needs, as a gzip cpio.
build_initramfs() {
	local mode=$1 moddir=$2 stage name prog

	stage=$B/initramfs.$mode

	rm -rf "$stage"
	mkdir -p "$stage"/{bin,etc/privmem,lib/modules,tests,proc,sys,dev,tmp}
	cp /bin/busybox "$stage/bin/busybox"
	cp "$ROOT/harness/initramfs/init" "$stage/init"
	install_modules "$stage" "$moddir"
	echo "$mode" >"$stage/etc/privmem/mode"
	if [ "$mode" = demo ]; then
		cp "$KST/privmem-demo" "$stage/tests/"
		install_qemu "$stage" || die "cannot install QEMU into the demo initramfs"
		cp "$QEMU_TESTS/privmem_qemu_test" "$stage/tests/qemu/"
		: >"$stage/etc/privmem/plan"
		: >"$stage/etc/privmem/skips"
	elif [ "${mode#bench-}" != "$mode" ]; then
		cp "$BENCH_PROG" "$stage/tests/private_mem_bench"
		echo "$BENCH_SCRIPT" >"$stage/etc/privmem/bench.sh"
		: >"$stage/etc/privmem/plan"
		: >"$stage/etc/privmem/skips"
	else
		plan_tests | grep -E "${PRIVMEM_TESTS:-.}" >"$stage/etc/privmem/plan"
		if [ -z "${PRIVMEM_TESTS:-}" ]; then plan_skips >"$stage/etc/privmem/skips"; else : >"$stage/etc/privmem/skips"; fi
		[ -s "$stage/etc/privmem/plan" ] || die "PRIVMEM_TESTS='${PRIVMEM_TESTS:-}' matches no test in harness/tests.list"
		while read -r name _ _; do
			case $name in
			kunit/*) prog=$ROOT/harness/initramfs/kunit ;;
			qemu/*) prog=$QEMU_TESTS/${name#qemu/} ;;
			*) prog=$KST/$name ;;
			esac
			[ -x "$prog" ] || die "test program $name was not built"
			mkdir -p "$stage/tests/$(dirname "$name")"
			cp "$prog" "$stage/tests/$name"
		done <"$stage/etc/privmem/plan"
		if grep -q '^qemu/' "$stage/etc/privmem/plan"; then
			install_qemu "$stage" || die "cannot install QEMU into the test initramfs"
		fi
		# The plan's program column is the path under /tests.
		awk '{ $3 = $1 " " $3; print }' "$stage/etc/privmem/plan" >"$stage/etc/privmem/plan.tmp"
		mv "$stage/etc/privmem/plan.tmp" "$stage/etc/privmem/plan"
	fi
	(cd "$stage" && find . | sort | cpio -o -H newc -R 0:0 --quiet) | gzip -1 >"$B/initramfs-$mode.cpio.gz"
}

# install_modules STAGE MODDIR: the kernel's modules into STAGE, with the
# KVM modules taken from MODDIR (the kernel build or the out-of-tree one).
install_modules() {
	local stage=$1 moddir=$2 rel

	rel=$(kernel_release)
	kmake -s INSTALL_MOD_PATH="$stage" INSTALL_MOD_STRIP=1 DEPMOD=true modules_install >/dev/null || return 1
	if [ "$moddir" = "$OBJ" ]; then
		echo "in-tree (${OBJ#"$ROOT"/})" >"$stage/etc/privmem/modules-from"
	else
		rm -f "$stage/lib/modules/$rel/kernel/arch/x86/kvm/"*.ko
		make -s -C "$OBJ" M="$moddir/arch/x86/kvm" INSTALL_MOD_PATH="$stage" INSTALL_MOD_STRIP=1 \
			DEPMOD=true modules_install >/dev/null || return 1
		echo "out-of-tree (M=${moddir#"$ROOT"/}/arch/x86/kvm)" >"$stage/etc/privmem/modules-from"
	fi
	depmod -b "$stage" "$rel" || return 1
}

# run_vm MODE TIMEOUT FILTER: boot the lane's test VM, serial output to
# build/logs/MODE-VM-serial.log; FILTER (an awk program) shows live
# progress.
run_vm() {
	local mode=$1 limit=$2 filter=$3 log rc

	log=$(serial_log "$mode")

	# A file left by an interrupted run would be replayed by tail below.
	rm -f "$log.qemu"
	: >"$log"
	echo "${VM_BANNER:-privmem: base Debian $BASE_PKG $(base_version), composed tree $(git -C "$SRC" rev-parse --short HEAD), kernel $(kernel_release)}" >>"$log"
	if [ "$VM" = bochs ]; then
		run_bochs "$mode" "$limit" "$filter" "$log"
		return
	fi
	# VM_ICOUNT: guest time follows instructions, one vCPU (the benchmark).
	local accel=tcg,thread=${PRIVMEM_TCG_THREAD:-single} smp=2 what
	what="thread=${PRIVMEM_TCG_THREAD:-single}, -cpu EPYC,+svm,+npt, 2 vCPUs"
	if [ -n "${VM_ICOUNT:-}" ]; then
		accel="tcg -icount shift=0,sleep=off" smp=1
		what="-icount shift=0,sleep=off, -cpu EPYC,+svm,+npt, 1 vCPU"
	fi
	note "==> booting the test VM (QEMU TCG, $what, 2 GiB; limit ${limit}s)"
	note "    serial log: ${log#"$ROOT"/}"
	# One TCG thread for both vCPUs unless PRIVMEM_TCG_THREAD=multi: with
	# multi-threaded TCG, QEMU 7.2's nested SVM now and then triple-faults
	# or wedges nested guests whose vCPUs run while the host zaps their
	# nested page tables; see README.md.
	# shellcheck disable=SC2086
	timeout -k 10 "$limit" qemu-system-x86_64 -accel $accel -cpu EPYC,+svm,+npt \
		-m 2G -smp $smp -display none -monitor none -no-reboot \
		-serial file:"$log.qemu" \
		-kernel "$OBJ/arch/x86/boot/bzImage" -initrd "$B/initramfs-$mode.cpio.gz" \
		-append "console=ttyS0 panic=-1 ${PRIVMEM_CMDLINE:-}" </dev/null >"$LOGS/$mode-qemu.log" 2>&1 &
	local qpid=$!
	# Follow the serial output as it grows, showing what FILTER selects.
	tail -n +1 -F "$log.qemu" 2>/dev/null --pid=$qpid | tee -a "$log" | live "$filter"
	wait $qpid
	rc=$?
	rm -f "$log.qemu"
	if [ $rc -eq 124 ] || [ $rc -eq 137 ]; then
		note "privmem: the test VM did not finish within ${limit}s and was stopped"
	elif [ $rc -ne 0 ]; then
		note "privmem: QEMU exited with status $rc: $(tail -n 3 "$LOGS/$mode-qemu.log")"
	fi
	return 0
}

# Kernel reports that fail a run even when every test passed.
KERNEL_PROBLEMS='BUG:|WARNING:|Oops|general protection|KASAN|UBSAN|circular locking|recursive locking|inconsistent lock state|Invalid wait context|bad unlock balance|held lock freed|lock held when returning|lockdep is turned off|DEBUG_LOCKS_WARN_ON|suspicious RCU usage|INFO: task .* blocked|Kernel panic|kernel BUG at|list_(add|del) corruption'

# scan_kernel_log LOG: print offending lines with the test that was
# running; succeed when there are none.
scan_kernel_log() {
	awk -v pat="$KERNEL_PROBLEMS" '
		/^# selftests: / { cur = $3 }
		/^(ok|not ok) [0-9]+ / { cur = "" }
		$0 ~ pat && $0 !~ /^# / {
			printf "    %s:%d: %s%s\n", FILENAME, FNR, $0, (cur != "" ? "   [during " cur "]" : "")
			bad = 1
		}
		END { exit bad }
	' "$1"
}

serial_log() {
	echo "$LOGS/$1-$VM-serial.log"
}

# The counts of every lane reported so far, for the final summary line.
TOTAL_PASS=0
TOTAL_FAIL=0
TOTAL_SKIP=0

# report_tests LOG PLANNED: TAP summary, kernel log verdict and the lane's
# "<lane>: N passed, N failed, N skipped" line, added to the totals.
# Returns non-zero on any failure.
report_tests() {
	local log=$1 planned=$2 tap=${1%-serial.log}.tap pass fail skip ran problems skipped

	grep -E '^(TAP version|1\.\.|ok |not ok |# selftests: )' "$log" >"$tap"
	pass=$(grep -E '^ok ' "$tap" | grep -vc '# SKIP')
	skip=$(grep -E '^ok ' "$tap" | grep -c '# SKIP')
	fail=$(grep -c '^not ok ' "$tap")
	ran=$((pass + skip + fail))
	if [ "$ran" -lt "$planned" ]; then
		note "privmem: only $ran of $planned tests reported a result; the rest count as failed."
		note "    The last lines of the serial log:"
		tail -n 15 "$log" | sed 's/^/    | /'
		fail=$((fail + planned - ran))
	fi
	grep -q '^privmem: run complete' "$log" || {
		note "privmem: the VM did not reach the end of the run."
		[ "$ran" -lt "$planned" ] || fail=$((fail + 1))
	}
	note "==> scanning the serial log for kernel problems (BUG, WARNING, lockdep, KASAN, KFENCE, Oops, GPF)"
	if problems=$(scan_kernel_log "$log"); then
		note "    none: the kernel log is clean"
		note "ok $((planned + 1)) kernel log is clean" >>"$tap"
		pass=$((pass + 1))
	else
		note "FAILED: the kernel reported problems during the run:"
		note "$problems"
		note "not ok $((planned + 1)) kernel log is clean" >>"$tap"
		fail=$((fail + 1))
	fi
	note "    TAP results: ${tap#"$ROOT"/}; serial log: ${log#"$ROOT"/}"
	if [ "$fail" -ne 0 ]; then
		note "Failed:"
		grep '^not ok ' "$tap" | sed 's/^/    /'
	fi
	# Cases that skipped inside a test that passed, with their reasons.
	skipped=$(grep '^#.*\(ok\|OK\) .*# SKIP' "$log" | sed 's/^#[[:space:]]*/    /')
	if [ -n "$skipped" ]; then
		note "Skipped inside passing tests:"
		note "$skipped"
	fi
	note "==> $(lane_label "$VM"): $pass passed, $fail failed, $skip skipped"
	TOTAL_PASS=$((TOTAL_PASS + pass))
	TOTAL_FAIL=$((TOTAL_FAIL + fail))
	TOTAL_SKIP=$((TOTAL_SKIP + skip))
	[ "$fail" -eq 0 ]
}
