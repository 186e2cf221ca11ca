# SPDX-License-Identifier: GPL-2.0
# Shared state and helpers for the privmem harness: paths, logging, steps,
# and the one place that knows which Debian packages the pipeline needs.

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
B=${PRIVMEM_BUILD:-$ROOT/build}
CACHE=${PRIVMEM_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/privmem}
LOGS=$B/logs
SRC=$B/linux
SERIES=$ROOT/patches/series
BASE_TARBALL=/usr/src/linux-source-6.1.tar.xz
BASE_PKG=linux-source-6.1

# The test kernel carries the cheap debug options; PRIVMEM_DEBUG=0 builds
# the same kernel without them (used to measure what they cost), and
# PRIVMEM_KASAN=1 adds generic KASAN to them, in a tree of its own.
PRIVMEM_DEBUG=${PRIVMEM_DEBUG:-1}
PRIVMEM_KASAN=${PRIVMEM_KASAN:-0}
if [ "$PRIVMEM_KASAN" = 1 ]; then
	PRIVMEM_DEBUG=1
	OBJ=$B/obj-kasan
elif [ "$PRIVMEM_DEBUG" = 1 ]; then
	OBJ=$B/obj
else
	OBJ=$B/obj-nodebug
fi

# The test VMs, one lane per vendor: qemu (AMD SVM with nested paging,
# under TCG) and bochs (Intel VMX with EPT).  'test' runs both lanes unless
# PRIVMEM_VM names one; the other commands boot qemu unless it does.  VM
# is the lane being run.
PRIVMEM_VM=${PRIVMEM_VM:-}
case $PRIVMEM_VM in
"" | qemu | bochs) ;;
*) printf 'privmem: error: PRIVMEM_VM=%s: use qemu or bochs\n' "$PRIVMEM_VM" >&2; exit 2 ;;
esac
VM=${PRIVMEM_VM:-qemu}

lane_label() {
	case $1 in
	qemu) echo "AMD lane (QEMU TCG: SVM, NPT)" ;;
	bochs) echo "Intel lane (Bochs: VMX, EPT)" ;;
	esac
}

JOBS=${PRIVMEM_JOBS:-$(nproc)}

mkdir -p "$LOGS"

die() {
	printf 'privmem: error: %s\n' "$*" >&2
	exit 1
}

note() {
	printf '%s\n' "$*"
}

# live AWKPROG: run AWKPROG over a stream that is still growing, line by
# line.  Debian's awk is mawk, which otherwise reads its input in blocks
# and shows nothing until 4 KiB of it have piled up.
live() {
	if awk -W version 2>&1 | grep -q mawk; then
		awk -W interactive "$1"
	else
		awk "$1"
	fi
}

# step LOG TITLE CMD...: run a long step with its output in LOG, print
# what it does and how long it took; on failure show the lines of LOG
# that matter and where the whole log is.
step() {
	local log=$1 title=$2 start rc
	shift 2
	start=$(date +%s)
	printf '==> %s (log: %s)\n' "$title" "${log#"$ROOT"/}"
	("$@") >"$log" 2>&1
	rc=$?
	if [ $rc -ne 0 ]; then
		printf 'FAILED: %s (exit %d). The lines that matter:\n' "$title" $rc
		show_errors "$log"
		printf 'Whole log: %s\n' "$log"
		exit 1
	fi
	printf '    done in %ss\n' $(($(date +%s) - start))
}

# show_errors LOG: the first compiler/make/script errors of LOG with a
# little context, or its tail when nothing looks like an error.
show_errors() {
	local hits

	hits=$(grep -n -m 12 -E '(error:|Error [0-9]|ERROR:|FAILED|fatal:|No rule to make|undefined reference|does not apply|privmem: )' "$1")
	if [ -n "$hits" ]; then
		printf '%s\n' "$hits" | sed 's/^/    /'
	else
		tail -n 15 "$1" | sed 's/^/    /'
	fi
}

# Debian packages the pipeline needs, with a command that proves each.
REQUIRED_PKGS="linux-source-6.1 qemu-system-x86 busybox-static ccache gcc make
flex bison bc libelf-dev libssl-dev cpio xz-utils gzip git perl python3
liburing-dev kmod python3-ply python3-git
dpkg-dev meson ninja-build libglib2.0-dev libpixman-1-dev libfdt-dev zlib1g-dev
pkg-config linux-source-6.12 gnuplot-nox"

missing_pkgs() {
	local p out=

	for p in $REQUIRED_PKGS ${PRIVMEM_VM_PKGS:-}; do
		dpkg-query -W -f='${Status}' "$p" 2>/dev/null |
			grep -q 'install ok installed' || out="$out $p"
	done
	printf '%s' "${out# }"
}

# ensure_deps: install what is missing when we are root, otherwise say
# exactly what to run.
ensure_deps() {
	local missing

	command -v dpkg-query >/dev/null || die "this pipeline needs Debian 12 (dpkg-query not found)"
	missing=$(missing_pkgs)
	[ -z "$missing" ] && return 0
	if [ "$(id -u)" != 0 ]; then
		die "missing Debian packages: $missing
Install them with:
    sudo apt-get update && sudo apt-get install -y --no-install-recommends $missing"
	fi
	step "$LOGS/apt.log" "installing Debian packages: $missing" \
		sh -c "apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends $missing"
}

# format_series REPO COVER OUT: REPO's base..privmem as git format-patch
# files in OUT, with COVER's text as the cover letter; says how many.
format_series() {
	local repo=$1 cover=$2 out=$3

	[ -f "$cover" ] || die "${cover#"$ROOT"/} is missing"
	rm -rf "$out"
	git -C "$repo" config branch.privmem.description "$(cat "$cover")"
	git -C "$repo" format-patch -q --cover-letter --cover-from-description=subject \
		--base=base -o "$out" base..privmem || die "format-patch failed in ${repo#"$ROOT"/}"
	note "==> exported $(find "$out" -name '*.patch' | wc -l) files to ${out#"$ROOT"/}"
}

base_version() {
	dpkg-query -W -f='${Version}' "$BASE_PKG"
}

kernel_release() {
	cat "$OBJ/include/config/kernel.release"
}
