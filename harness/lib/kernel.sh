# SPDX-License-Identifier: GPL-2.0
# Kernel configuration and build of the composed tree, out of tree in
# build/obj (build/obj-nodebug without the debug options, build/obj-kasan
# with KASAN as well), through ccache.

CONFIG_FRAGMENTS="$ROOT/harness/config/base.config"
[ "$PRIVMEM_DEBUG" = 1 ] && CONFIG_FRAGMENTS="$CONFIG_FRAGMENTS $ROOT/harness/config/debug.config"
[ "$PRIVMEM_KASAN" = 1 ] && CONFIG_FRAGMENTS="$CONFIG_FRAGMENTS $ROOT/harness/config/kasan.config"

# Reproducible build identity, so ccache hits and unchanged trees stay
# unchanged.
export KBUILD_BUILD_TIMESTAMP="2000-01-01" KBUILD_BUILD_USER=privmem KBUILD_BUILD_HOST=privmem
export CCACHE_DIR=${CCACHE_DIR:-$CACHE/ccache} CCACHE_BASEDIR=$B CCACHE_NOHASHDIR=1
export CCACHE_MAXSIZE=${CCACHE_MAXSIZE:-5G}

kmake() {
	make -C "$SRC" O="$OBJ" -j"$JOBS" CC="ccache gcc" HOSTCC="ccache gcc" "$@"
}

# check_config CONFIG FRAGMENTS...: every option a fragment asks for must
# have survived olddefconfig.
check_config() {
	local cfg=$1 bad=0 line sym want got
	shift

	while IFS= read -r line; do
		case $line in
		CONFIG_*=*) sym=${line%%=*} want=${line#*=} ;;
		"# CONFIG_"*" is not set") sym=${line#\# } sym=${sym%% *} want=n ;;
		*) continue ;;
		esac
		got=$(sed -n "s/^$sym=//p" "$cfg")
		[ -n "$got" ] || got=n
		if [ "$got" != "$want" ]; then
			echo "privmem: $sym=$want did not survive olddefconfig (got $got); a dependency is missing"
			bad=1
		fi
	done < <(cat "$@")
	return $bad
}

# merge_tinyconfig TREE SCRATCH FRAGMENTS...: tinyconfig of TREE with the
# fragments merged on top, after olddefconfig, in SCRATCH/.config.
merge_tinyconfig() {
	local tree=$1 scratch=$2
	shift 2

	mkdir -p "$scratch"
	make -C "$tree" O="$scratch" HOSTCC="ccache gcc" tinyconfig &&
		"$tree/scripts/kconfig/merge_config.sh" -m -O "$scratch" "$scratch/.config" "$@" &&
		make -C "$tree" O="$scratch" HOSTCC="ccache gcc" olddefconfig
}

# install_config SCRATCH OBJ: SCRATCH/.config over OBJ/.config, only when
# it differs, so that an unchanged configuration rebuilds nothing.
install_config() {
	mkdir -p "$2"
	if ! cmp -s "$1/.config" "$2/.config"; then
		cp "$1/.config" "$2/.config"
		echo "config changed"
	fi
}

# kernel_config: tinyconfig + fragments, generated in a scratch directory
# and copied over build/obj/.config only when it differs.
kernel_config() {
	local scratch=$B/kconfig

	# shellcheck disable=SC2086
	merge_tinyconfig "$SRC" "$scratch" $CONFIG_FRAGMENTS || return 1
	# shellcheck disable=SC2086
	check_config "$scratch/.config" $CONFIG_FRAGMENTS || return 1
	install_config "$scratch" "$OBJ"
}

# The part of the composed tree vmlinux is built from: everything but the
# KVM module directories.
vmlinux_inputs() {
	{
		git -C "$SRC" ls-tree -r HEAD | grep -v -E $'\t(arch/x86/kvm|virt/kvm)/'
		cat "$OBJ/.config"
	} | sha1sum | cut -d' ' -f1
}

kernel_build() {
	echo "base: Debian $BASE_PKG $(base_version); composed tree $(git -C "$SRC" rev-parse HEAD)"
	kmake bzImage modules
}

build_kernel() {
	step "$LOGS/kconfig.log" "configuring: tinyconfig + ${CONFIG_FRAGMENTS//$ROOT\//}" kernel_config
	step "$LOGS/kernel-build.log" "building bzImage and modules in ${OBJ#"$ROOT"/} (ccache: ${CCACHE_DIR})" \
		kernel_build
	vmlinux_inputs >"$OBJ/.privmem-vmlinux-inputs"
	note "    kernel $(kernel_release), $(du -h "$OBJ/arch/x86/boot/bzImage" | cut -f1) bzImage"
}

# build_kvm_modules_external: rebuild only the KVM modules with
# make -C <tree> M=<dir>, from a copy of arch/x86/kvm and virt/kvm laid out
# as in the tree (the KVM makefiles reach virt/kvm by relative path).
EXT=$B/kvm-ext

build_kvm_modules_external() {
	[ -f "$OBJ/vmlinux" ] && [ -f "$OBJ/Module.symvers" ] ||
		die "no built kernel in ${OBJ#"$ROOT"/}; run 'harness/privmem build' first"
	if [ "$(cat "$OBJ/.privmem-vmlinux-inputs" 2>/dev/null)" != "$(vmlinux_inputs)" ]; then
		die "vmlinux in ${OBJ#"$ROOT"/} is not current: the tree outside arch/x86/kvm and virt/kvm (or the config) changed since it was built.
Modules built now would not match the kernel they load into. Run 'harness/privmem build' first."
	fi
	# cp -a keeps the tree's timestamps: git moved only changed files, so
	# make rebuilds only what changed since the last external build.
	mkdir -p "$EXT/arch/x86/kvm" "$EXT/virt/kvm"
	cp -a "$SRC/arch/x86/kvm/." "$EXT/arch/x86/kvm/"
	cp -a "$SRC/virt/kvm/." "$EXT/virt/kvm/"
	step "$LOGS/kvm-ext-build.log" "building the KVM modules out of tree: make -C ${OBJ#"$ROOT"/} M=${EXT#"$ROOT"/}/arch/x86/kvm" \
		make -C "$OBJ" M="$EXT/arch/x86/kvm" -j"$JOBS" CC="ccache gcc" modules
}

# ensure_worktree REPO WT REV: a detached work tree of REPO in WT, added at
# REV unless WT already is one.  A re-imported REPO leaves an old WT
# without its repository: that one is pruned and added again.
ensure_worktree() {
	local repo=$1 wt=$2 rev=$3

	git -C "$wt" rev-parse -q --verify HEAD >/dev/null 2>&1 && return 0
	rm -rf "$wt"
	git -C "$repo" worktree prune &&
		git -C "$repo" worktree add -q --detach "$wt" "$rev"
}

# bisect_series: build every patch of the series in turn, in a separate
# work tree so build/linux is left alone; from patch PRIVMEM_BISECT_FROM
# on, if set, when the ones before it are known to build.
bisect_series() {
	local wt=$B/bisect/linux obj=$B/bisect/obj c n=0 total
	local from=${PRIVMEM_BISECT_FROM:-1}

	compose
	total=$(git -C "$SRC" rev-list --count base..privmem)
	ensure_worktree "$SRC" "$wt" base || die "cannot create the bisect work tree"
	mkdir -p "$obj"
	case $from in
	'' | *[!0-9]* | 0) die "PRIVMEM_BISECT_FROM=$from: give a patch number, at least 1" ;;
	esac
	for c in $(git -C "$SRC" rev-list --reverse base..privmem); do
		n=$((n + 1))
		[ "$n" -lt "$from" ] && continue
		git -C "$wt" checkout -q --detach "$c" || die "cannot check out $c"
		step "$LOGS/bisect-$n.log" "[$n/$total] building $(git -C "$SRC" log -1 --format='%h %s' "$c")" \
			bisect_build_one "$wt" "$obj"
	done
	if [ "$from" -gt 1 ]; then
		note "patches $from-$total build in turn (1-$((from - 1)) not built this time)"
	else
		note "all $total patches build in turn: the series is bisectable"
	fi
}

bisect_build_one() {
	local wt=$1 obj=$2

	(
		SRC=$wt OBJ=$obj
		# Early patches do not know later Kconfig symbols: the fragments
		# apply as far as the tree understands them, unchecked.
		# shellcheck disable=SC2086
		merge_tinyconfig "$wt" "$obj" $CONFIG_FRAGMENTS &&
			kmake bzImage modules &&
			kmake headers &&
			build_selftests_in "$wt" "$obj" "$B/bisect/selftests" --existing
	)
}
