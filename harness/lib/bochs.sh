# SPDX-License-Identifier: GPL-2.0
# The Intel lane (PRIVMEM_VM=bochs): the same kernel, initramfs and /init
# under Bochs, which emulates VMX with EPT, booted from an ISO that
# isolinux starts (Bochs cannot load a kernel itself).

BOCHS_PKGS="bochs bochsbios vgabios bochs-term isolinux syslinux-common genisoimage"
BOCHS_CPU=corei7_haswell_4770
BOCHS_MEGS=2048
# The guest's clock counts instructions, BOCHS_IPS to the second.  Bochs
# runs about 50 million a second here, so guest time passes at half the
# wall's pace: the tests' timeouts, which the guest keeps, stay near wall
# time, and tests that run for a fixed time do not take much longer.
BOCHS_IPS=100000000
# What the guest kernel prints when it restarts or powers off.
BOCHS_END='reboot: (Restarting system|Power down)'

# build_iso MODE: build/bochs/MODE.iso with the bzImage, the initramfs of
# MODE and an isolinux that boots them with the test VM's command line.
build_iso() {
	local mode=$1 dir=$B/bochs/iso-$1

	rm -rf "$dir"
	mkdir -p "$dir/isolinux"
	cp /usr/lib/ISOLINUX/isolinux.bin /usr/lib/syslinux/modules/bios/ldlinux.c32 "$dir/isolinux/"
	cp "$OBJ/arch/x86/boot/bzImage" "$dir/bzImage"
	cp "$B/initramfs-$mode.cpio.gz" "$dir/initrd.gz"
	cat >"$dir/isolinux/isolinux.cfg" <<-EOF
	DEFAULT privmem
	LABEL privmem
	  KERNEL /bzImage
	  APPEND initrd=/initrd.gz console=ttyS0,115200 panic=-1 ${PRIVMEM_CMDLINE:-}
	EOF
	genisoimage -quiet -o "$B/bochs/$mode.iso" -b isolinux/isolinux.bin \
		-c isolinux/boot.cat -no-emul-boot -boot-load-size 4 -boot-info-table \
		-R "$dir"
}

# drain_bochs_screen BOCHSLOG PID: read away what Bochs draws.  With its
# debugger built in, Debian's Bochs draws the term display into a pty of
# its own, named in its output, that nobody reads; once that pty's input
# buffer is full, Bochs blocks in the write and the guest stops, as if it
# hung.
drain_bochs_screen() {
	local pts= _

	for _ in $(seq 60); do
		pts=$(sed -n 's/.*Bochs connected to screen "\(.*\)".*/\1/p' "$1")
		[ -n "$pts" ] && break
		kill -0 "$2" 2>/dev/null || return 0
		sleep 1
	done
	[ -n "$pts" ] || return 0
	stty -F "$pts" raw -echo
	exec cat "$pts" >/dev/null 2>&1
}

# run_bochs MODE LIMIT FILTER LOG: like run_vm, under Bochs.
run_bochs() {
	local mode=$1 limit=$2 filter=$3 log=$4 rc=$B/bochs/$mode.bochsrc bpid

	step "$LOGS/iso.log" "building the boot ISO for Bochs" build_iso "$mode"
	cat >"$rc" <<-EOF
	cpu: model=$BOCHS_CPU, count=1, ips=$BOCHS_IPS
	memory: guest=$BOCHS_MEGS, host=$BOCHS_MEGS
	romimage: file=/usr/share/bochs/BIOS-bochs-latest
	vgaromimage: file=/usr/share/bochs/VGABIOS-lgpl-latest
	ata0-master: type=cdrom, path=$B/bochs/$mode.iso, status=inserted
	boot: cdrom
	com1: enabled=1, mode=file, dev=$log.qemu
	clock: sync=none
	display_library: term
	log: $LOGS/$mode-bochs-internal.log
	EOF
	# Debian's Bochs has its debugger built in: "c" starts the machine.
	echo c >"$B/bochs/continue"
	note "==> booting the test VM (Bochs, -cpu $BOCHS_CPU: VMX with EPT, 1 vCPU, $BOCHS_MEGS MiB; limit ${limit}s)"
	note "    serial log: ${log#"$ROOT"/}"
	: >"$log.qemu"
	# The term display needs a terminal: script gives Bochs one.
	timeout -k 10 "$limit" script -qfc "bochs -q -f $rc -rc $B/bochs/continue" /dev/null \
		</dev/null >"$LOGS/$mode-bochs.log" 2>&1 &
	bpid=$!
	drain_bochs_screen "$LOGS/$mode-bochs.log" $bpid &
	# Bochs does not stop when the guest reboots: stop it when the kernel
	# says it restarts or powers off (the end of a run, or a panic).
	(
		while kill -0 $bpid 2>/dev/null; do
			if grep -qE "$BOCHS_END" "$log.qemu"; then
				sleep 1
				kill $bpid 2>/dev/null
				pkill -f "bochs -q -f $rc" 2>/dev/null
				break
			fi
			sleep 2
		done
	) &
	tail -n +1 -F "$log.qemu" 2>/dev/null --pid=$bpid | tee -a "$log" | live "$filter"
	wait $bpid
	if ! grep -qE "$BOCHS_END" "$log.qemu"; then
		note "privmem: the test VM did not finish within ${limit}s and was stopped; its last lines:"
		tail -n 5 "$log.qemu" | sed 's/^/    /'
	fi
	rm -f "$log.qemu"
	return 0
}
