# SPDX-License-Identifier: GPL-2.0
# The patched QEMU: Debian's QEMU 7.2 source (apt-get source qemu) as a base
# commit in build/qemu/src, the series of qemu/patches on top (git am), and
# a minimal x86_64 build in build/qemu/build, through ccache.  Its tests
# run inside the test VM: the QEMU runtime goes into the test initramfs.

QEMU_PATCHES=$ROOT/qemu/patches
QEMU_SERIES=$QEMU_PATCHES/series
QEMU_SRC=$B/qemu/src
QEMU_OBJ=$B/qemu/build
QEMU_BIN=$QEMU_OBJ/qemu-system-x86_64
QEMU_DL=$CACHE/qemu-source
QEMU_TESTS=$B/qemu/tests
# Everything but KVM, io_uring and the system libfdt is off.
QEMU_CONFIGURE="--target-list=x86_64-softmmu --without-default-features
--enable-kvm --disable-tcg --enable-linux-io-uring --enable-fdt=system"
# The firmware the tests' machines need: SeaBIOS and the option ROMs that
# -kernel and KVM's TPR patching load.
QEMU_FIRMWARE="/usr/share/seabios/bios-256k.bin /usr/share/qemu/kvmvapic.bin
/usr/share/qemu/linuxboot_dma.bin /usr/share/qemu/multiboot_dma.bin"

qgit() {
	git -C "$QEMU_SRC" "$@"
}

# ensure_deb_src: apt-get source needs deb-src entries; add them for the
# suites already configured, once, if there are none.
ensure_deb_src() {
	local list=/etc/apt/sources.list.d/privmem-deb-src.sources

	grep -rqsE --include=sources.list --include='*.list' --include='*.sources' \
		'^(Types:.*deb-src|deb-src )' /etc/apt/sources.list /etc/apt/sources.list.d/ && return 0
	[ "$(id -u)" = 0 ] || die "apt-get source qemu needs deb-src entries in /etc/apt; add them for your suites, or run as root"
	{
		for f in /etc/apt/sources.list.d/*.sources; do
			[ -e "$f" ] || continue
			awk '/^Types:/ { $0 = "Types: deb-src" } { print }' "$f"
			echo
		done
		if [ -f /etc/apt/sources.list ]; then
			sed -n 's/^deb /deb-src /p' /etc/apt/sources.list
		fi
	} >"$list.tmp" || return 1
	mv "$list.tmp" "$list"
	note "    added deb-src entries for the configured suites: $list"
	apt-get update -q
}

# The Debian source package, downloaded once into the cache.
qemu_dsc() {
	local f last=

	for f in "$QEMU_DL"/qemu_*.dsc; do
		[ -e "$f" ] && last=$f
	done
	printf '%s' "$last"
}

qemu_version() {
	sed -n 's/^Version: //p' "$(qemu_dsc)"
}

fetch_qemu_source() {
	[ -n "$(qemu_dsc)" ] && return 0
	ensure_deb_src || return 1
	mkdir -p "$QEMU_DL"
	(cd "$QEMU_DL" && apt-get source --download-only qemu) || return 1
	[ -n "$(qemu_dsc)" ] || { echo "privmem: apt-get source qemu left no .dsc in $QEMU_DL"; return 1; }
}

# import_qemu_base: extract the source package into build/qemu/src as a git
# repository whose first commit is tagged "base".  Once per version.
_import_qemu_base() {
	local ver=$1

	rm -rf "$QEMU_SRC"
	mkdir -p "$(dirname "$QEMU_SRC")"
	dpkg-source --no-check -x "$(qemu_dsc)" "$QEMU_SRC" || return 1
	cd "$QEMU_SRC" || return 1
	git init -q -b privmem .
	git config gc.auto 0
	git add -A -f . || return 1
	GIT_AUTHOR_DATE="2000-01-01T00:00:00Z" GIT_COMMITTER_DATE="2000-01-01T00:00:00Z" \
		git -c user.name=privmem -c user.email=privmem@localhost \
		commit -q -m "QEMU $ver" -m "Source: Debian qemu $ver" || return 1
	git tag -f base
}

# _apply_qemu_series: the base, then each patch of qemu/patches/series with
# git am; a patch that does not apply is named with the hunks that failed.
_apply_qemu_series() {
	local p

	qgit am --abort >/dev/null 2>&1
	qgit checkout -q -f privmem && qgit reset -q --hard base && qgit clean -q -fdx || return 1
	while read -r p; do
		case $p in '' | '#'*) continue ;; esac
		[ -f "$QEMU_PATCHES/$p" ] || { echo "privmem: qemu/patches/series names $p, which does not exist"; return 1; }
		echo "applying $p"
		if ! qgit -c user.name=privmem -c user.email=privmem@localhost am -q --committer-date-is-author-date \
			"$QEMU_PATCHES/$p"; then
			echo "privmem: qemu/patches/$p does not apply to QEMU $(qemu_version):"
			qgit am --show-current-patch=diff | git -C "$QEMU_SRC" apply --check - 2>&1 | sed 's/^/    /'
			qgit am --abort
			return 1
		fi
	done <"$QEMU_SERIES"
}

# The state of the source tree: Debian version plus the series' patches.
qemu_series_stamp() {
	{ qemu_version; cat "$QEMU_SERIES" "$QEMU_PATCHES"/*.patch; } | sha256sum | cut -d' ' -f1
}

prepare_qemu_source() {
	local ver stamp applied

	step "$LOGS/qemu-source.log" "getting the QEMU source (apt-get source qemu, once)" fetch_qemu_source
	ver=$(qemu_version)
	if [ "$(qgit log -1 --format=%b base 2>/dev/null | sed -n 's/^Source: //p')" != "Debian qemu $ver" ]; then
		step "$LOGS/qemu-source.log" "importing Debian's QEMU $ver into build/qemu/src (once per version)" \
			_import_qemu_base "$ver"
	fi
	# .git/privmem-applied: the series stamp and the commit it gave.
	stamp=$(qemu_series_stamp)
	applied=$(cat "$QEMU_SRC/.git/privmem-applied" 2>/dev/null)
	if [ -n "$applied" ] && { [ "${applied#* }" != "$(qgit rev-parse HEAD)" ] ||
		[ -n "$(qgit status --porcelain --untracked-files=no)" ]; }; then
		die "build/qemu/src has commits or changes that qemu/patches lacks; commit them and run 'harness/privmem refresh', or drop them with 'rm $QEMU_SRC/.git/privmem-applied'"
	fi
	if [ "${applied% *}" != "$stamp" ]; then
		step "$LOGS/qemu-series.log" "applying qemu/patches ($(grep -c '^[^#]' "$QEMU_SERIES") patches) to QEMU $ver" \
			_apply_qemu_series
		echo "$stamp $(qgit rev-parse HEAD)" >"$QEMU_SRC/.git/privmem-applied"
	fi
	note "    QEMU $ver (Debian source package) with qemu/patches"
}

# qemu_refresh: turn the commits of build/qemu/src (base..HEAD) back into
# qemu/patches and its series file.  The inverse of prepare_qemu_source.
qemu_refresh() {
	local out n

	[ -d "$QEMU_SRC/.git" ] || return 0
	[ -z "$(qgit status --porcelain --untracked-files=no)" ] ||
		die "build/qemu/src has uncommitted changes; commit them first"
	out=$(mktemp -d) || exit 1
	qgit format-patch -q --no-signature --zero-commit -o "$out" base..HEAD || die "format-patch failed in build/qemu/src"
	rm -f "$QEMU_PATCHES"/[0-9][0-9][0-9][0-9]-*.patch
	mv "$out"/*.patch "$QEMU_PATCHES/"
	rmdir "$out"
	{
		echo "# The privmem QEMU series against Debian's QEMU 7.2 source, in order."
		echo "# Generated by 'harness/privmem refresh' from the commits in build/qemu/src."
		(cd "$QEMU_PATCHES" && ls [0-9][0-9][0-9][0-9]-*.patch)
	} >"$QEMU_SERIES"
	n=$(grep -c '^[^#]' "$QEMU_SERIES")
	echo "$(qemu_series_stamp) $(qgit rev-parse HEAD)" >"$QEMU_SRC/.git/privmem-applied"
	note "==> refreshed qemu/patches from build/qemu/src: $n patches"
}

_configure_qemu() {
	mkdir -p "$QEMU_OBJ" && cd "$QEMU_OBJ" || return 1
	# shellcheck disable=SC2086
	"$QEMU_SRC/configure" --cc="ccache gcc" --host-cc="ccache gcc" $QEMU_CONFIGURE &&
		echo "$QEMU_CONFIGURE" >"$QEMU_OBJ/.privmem-configure"
}

build_qemu() {
	prepare_qemu_source
	if [ "$(cat "$QEMU_OBJ/.privmem-configure" 2>/dev/null)" != "$QEMU_CONFIGURE" ]; then
		rm -rf "$QEMU_OBJ"
		step "$LOGS/qemu-configure.log" "configuring QEMU: ${QEMU_CONFIGURE//$'\n'/ }" _configure_qemu
	fi
	step "$LOGS/qemu-build.log" "building QEMU in ${QEMU_OBJ#"$ROOT"/} (ccache: ${CCACHE_DIR})" \
		ninja -C "$QEMU_OBJ" -j"$JOBS" qemu-system-x86_64
	step "$LOGS/qemu-checkpatch.log" "checking qemu/patches with QEMU's checkpatch" qemu_checkpatch
	step "$LOGS/qemu-tests-build.log" "building the QEMU tests and their guest" build_qemu_tests
}

# qemu_checkpatch: QEMU's scripts/checkpatch.pl over every patch of the
# series; a patch with errors fails the step.
qemu_checkpatch() {
	local p out bad=0

	while read -r p; do
		case $p in '' | '#'*) continue ;; esac
		out=$("$QEMU_SRC/scripts/checkpatch.pl" --no-color "$QEMU_PATCHES/$p" 2>&1)
		case $out in
		*"has no obvious style problems"*) printf '%-70s clean\n' "$p" ;;
		*) printf '%s:\n%s\n' "$p" "$(printf '%s\n' "$out" | grep -E '^(ERROR|WARNING|total)' | sed 's/^/    /')" ;;
		esac
		if printf '%s\n' "$out" | grep -q '^ERROR'; then
			printf '%s\n' "$out" | grep -A4 '^ERROR' | sed 's/^/    /'
			bad=1
		fi
	done <"$QEMU_SERIES"
	[ $bad = 0 ] || echo "privmem: QEMU's checkpatch reports errors in qemu/patches"
	return $bad
}

# build_qemu_tests: the test guest (freestanding) and the driver that runs
# inside the test VM (static, kselftest harness from the composed tree).
build_qemu_tests() {
	mkdir -p "$QEMU_TESTS"
	make -C "$ROOT/qemu/tests/guest" O="$QEMU_TESTS" || return 1
	gcc -static -O2 -Wall -Wextra -Werror -I"$SRC/tools/testing/selftests" \
		-o "$QEMU_TESTS/privmem_qemu_test" "$ROOT/qemu/tests/privmem_qemu_test.c"
}

# install_qemu STAGE: the patched QEMU, the libraries ldd names for it, its
# firmware, the test guest, and for the stock-guest test the test VM's
# own kernel with a one-command initrd.
install_qemu() {
	local stage=$1 lib fw s

	mkdir -p "$stage/usr/libexec/privmem" "$stage/usr/share/privmem-qemu" "$stage/tests/qemu"
	cp "$QEMU_BIN" "$stage/usr/libexec/privmem/" || return 1
	strip "$stage/usr/libexec/privmem/qemu-system-x86_64" || return 1
	for lib in $(ldd "$QEMU_BIN" | awk '/=> \// { print $3 } /^\t\/lib/ { print $1 }'); do
		mkdir -p "$stage$(dirname "$lib")"
		cp -L "$lib" "$stage$lib" || return 1
	done
	# The dynamic loader at the path the binary names.
	mkdir -p "$stage/lib64"
	cp -L /lib64/ld-linux-x86-64.so.2 "$stage/lib64/" || return 1
	for fw in $QEMU_FIRMWARE; do
		cp -L "$fw" "$stage/usr/share/privmem-qemu/" || return 1
	done
	cp "$QEMU_TESTS/privmem-guest.elf" "$stage/tests/qemu/" || return 1
	cp "$OBJ/arch/x86/boot/bzImage" "$stage/tests/qemu/bzImage" || return 1
	s=$(mktemp -d) || return 1
	mkdir -p "$s/bin" "$s/proc" "$s/sys" "$s/dev"
	cp /bin/busybox "$s/bin/busybox"
	cp "$ROOT/qemu/tests/stock-init" "$s/init"
	(cd "$s" && find . | sort | cpio -o -H newc -R 0:0 --quiet) | gzip -1 >"$stage/tests/qemu/stock-initrd.cpio.gz"
	rm -rf "$s"
}

# export_qemu_series: the QEMU series as git format-patch files with its
# cover letter in build/export-qemu, checked with QEMU's checkpatch.
export_qemu_series() {
	local out=$B/export-qemu cover=$QEMU_PATCHES/cover-letter.txt

	prepare_qemu_source
	format_series "$QEMU_SRC" "$cover" "$out"
	step "$LOGS/qemu-checkpatch.log" "checking qemu/patches with QEMU's checkpatch" qemu_checkpatch
	sed 's/^/    /' "$LOGS/qemu-checkpatch.log"
}

# bisect_qemu_series: build every patch of the QEMU series in turn, in a
# separate work tree and build directory, so build/qemu is left alone.
bisect_qemu_series() {
	local wt=$B/bisect/qemu-src obj=$B/bisect/qemu-build c n=0 total

	prepare_qemu_source
	total=$(qgit rev-list --count base..privmem)
	ensure_worktree "$QEMU_SRC" "$wt" base || die "cannot create the QEMU bisect work tree"
	for c in $(qgit rev-list --reverse base..privmem); do
		n=$((n + 1))
		git -C "$wt" checkout -q --detach "$c" || die "cannot check out $c in $wt"
		step "$LOGS/bisect-qemu-$n.log" "[QEMU $n/$total] building $(qgit log -1 --format='%h %s' "$c")" \
			bisect_qemu_one "$wt" "$obj"
	done
	note "all $total QEMU patches build in turn: the QEMU series is bisectable"
}

bisect_qemu_one() {
	local wt=$1 obj=$2

	if [ ! -f "$obj/build.ninja" ]; then
		mkdir -p "$obj" && cd "$obj" || return 1
		# shellcheck disable=SC2086
		"$wt/configure" --cc="ccache gcc" --host-cc="ccache gcc" $QEMU_CONFIGURE || return 1
	fi
	ninja -C "$obj" -j"$JOBS" qemu-system-x86_64
}
