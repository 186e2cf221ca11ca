# SPDX-License-Identifier: GPL-2.0
# The composed tree: Debian's linux-source-6.1 as a base commit, then one
# commit per patch of patches/series.  New files live at their kernel paths
# in this repository; the series says which patch introduces each one.
#
# Commits are built in a temporary index (git apply --cached, commit-tree)
# and the work tree is then moved to the result, so files whose content did
# not change keep their timestamps and make rebuilds only what changed.
# Identical inputs give identical commits.

COMPOSED_REF=refs/privmem/composed

sgit() {
	git -C "$SRC" "$@"
}

# import_base: extract the base tarball into $SRC as a git repository
# whose first commit is tagged "base".  Done once per Debian version.
import_base() {
	local ver want have

	ver=$(base_version)
	[ -n "$ver" ] && [ -f "$BASE_TARBALL" ] ||
		die "$BASE_PKG is not installed ($BASE_TARBALL missing)"
	want="Debian $BASE_PKG $ver"
	have=$(sgit log -1 --format=%b base 2>/dev/null | sed -n 's/^Source: //p')
	if [ "$have" = "$want" ]; then
		return 0
	fi
	[ -z "$have" ] || note "base changed: tree has '$have', system has '$want'; re-importing"
	step "$LOGS/import-base.log" "importing $want into build/linux (once per base version)" \
		_import_base "$ver"
}

_import_base() {
	local ver=$1 kver

	rm -rf "$SRC"
	mkdir -p "$SRC"
	echo "extracting $BASE_TARBALL"
	tar -xf "$BASE_TARBALL" -C "$SRC" --strip-components=1 || return 1
	kver=$(make -s -C "$SRC" kernelversion)
	cd "$SRC" || return 1
	git init -q -b base-import .
	git config core.autocrlf false
	git config gc.auto 0
	echo "committing the base tree"
	git add -A -f . || return 1
	GIT_AUTHOR_DATE="2000-01-01T00:00:00Z" GIT_COMMITTER_DATE="2000-01-01T00:00:00Z" \
		git commit -q -m "Linux $kver" -m "Source: Debian $BASE_PKG $ver" || return 1
	git tag -f base
	git update-ref $COMPOSED_REF base
	# Debian's top-level .gitignore ignores everything ("/*"), which would
	# hide new files from git add and git status.  Keep the committed file
	# pristine and use a work-tree copy without those lines.
	git update-index --skip-worktree .gitignore
	sed -i '/^# Debian packaging/,$d' .gitignore
	echo "base: Linux $kver from Debian $BASE_PKG $ver"
}

# series_entries: print "patch<TAB>newfile newfile..." for each patch.
series_entries() {
	[ -f "$SERIES" ] || die "patches/series is missing"
	awk '
		/^[ \t]*(#|$)/ { next }
		/^[ \t]/ { files[n] = files[n] " " $1; next }
		{ n++; names[n] = $1 }
		END { for (i = 1; i <= n; i++) printf "%s\t%s\n", names[i], substr(files[i], 2) }
	' "$SERIES"
}

# hunk_report PATCHFILE DIFF ERRLOG: name the file and the hunk that
# git apply refused, from its "patch failed: FILE:LINE" message.
hunk_report() {
	local name=$1 diff=$2 err=$3 where file line

	cat "$err" >&2
	where=$(sed -n 's/^error: patch failed: //p' "$err" | head -n 1)
	if [ -n "$where" ]; then
		file=${where%:*}
		line=${where##*:}
		awk -v f="$file" -v l="$line" -v p="$name" '
			/^diff --git / { infile = ($3 == "a/" f); n = 0; next }
			infile && /^@@ / {
				n++
				split($2, a, ",")
				if (substr(a[1], 2) == l) {
					printf "privmem: %s: hunk #%d (%s %s %s %s) of %s does not apply\n",
						p, n, $1, $2, $3, $4, f
					exit
				}
			}' "$diff" >&2
	fi
	printf 'privmem: %s does not apply; the composed tree was left unchanged\n' "$name" >&2
}

# intro_blob FILE INDEX: the blob of FILE as patch INDEX introduces it:
# the repository's (final) version with the hunks of every later patch
# that touches it reverse-applied.
intro_blob() {
	local file=$1 idx=$2 j dir

	dir=$WORK/intro.$idx
	rm -rf "$dir"
	mkdir -p "$dir/$(dirname "$file")"
	cp "$ROOT/$file" "$dir/$file"
	for ((j = NPATCH; j > idx; j--)); do
		grep -q "^diff --git a/$file b/$file\$" "$WORK/diff.$j" || continue
		(cd "$dir" && env -u GIT_INDEX_FILE git apply -R --include="$file" "$WORK/diff.$j") 2>"$WORK/err" || {
			cat "$WORK/err" >&2
			die "cannot rebuild $file as ${PATCH[idx]} introduces it: ${PATCH[j]} does not reverse-apply to it"
		}
	done
	git -C "$SRC" hash-object -w "$dir/$file"
}

file_mode() {
	if [ -x "$1" ]; then echo 100755; else echo 100644; fi
}

# compose_commits: build the series on top of "base" in the object store
# and print the tip.  Touches neither the work tree nor HEAD.
compose_commits() {
	local i name files f blob msg tip tree subject
	local -a NEW

	WORK=$(mktemp -d)
	trap 'rm -rf "$WORK"' RETURN
	NPATCH=0
	PATCH=()
	while IFS=$'\t' read -r name files; do
		NPATCH=$((NPATCH + 1))
		PATCH[NPATCH]=$name
		NEW[NPATCH]=$files
		[ -f "$ROOT/patches/$name" ] || die "patches/series names $name, which does not exist"
		git mailinfo -k "$WORK/msg.$NPATCH" "$WORK/diff.$NPATCH" \
			<"$ROOT/patches/$name" >"$WORK/info.$NPATCH" ||
			die "patches/$name is not a mail-format patch"
	done < <(series_entries)

	export GIT_INDEX_FILE=$WORK/index
	sgit read-tree base || die "cannot read the base tree"
	tip=$(sgit rev-parse base^{commit})
	for ((i = 1; i <= NPATCH; i++)); do
		name=${PATCH[i]}
		for f in ${NEW[i]}; do
			[ -f "$ROOT/$f" ] || die "patches/series: $name introduces $f, which is not in the repository"
			if [ -n "$(sgit ls-files --cached -- "$f")" ]; then
				die "patches/series: $name introduces $f, but the tree already has it"
			fi
			blob=$(intro_blob "$f" "$i") || exit 1
			sgit update-index --add --cacheinfo "$(file_mode "$ROOT/$f"),$blob,$f" ||
				die "cannot add $f"
		done
		if [ -s "$WORK/diff.$i" ]; then
			sgit apply --cached --whitespace=nowarn "$WORK/diff.$i" 2>"$WORK/err" || {
				hunk_report "$name" "$WORK/diff.$i" "$WORK/err"
				exit 1
			}
		fi
		tree=$(sgit write-tree) || die "write-tree failed at $name"
		subject=$(sed -n 's/^Subject: //p' "$WORK/info.$i")
		msg=$(printf '%s\n\n%s' "$subject" "$(cat "$WORK/msg.$i")")
		tip=$(
			GIT_AUTHOR_NAME=$(sed -n 's/^Author: //p' "$WORK/info.$i") \
			GIT_AUTHOR_EMAIL=$(sed -n 's/^Email: //p' "$WORK/info.$i") \
			GIT_AUTHOR_DATE=$(sed -n 's/^Date: //p' "$WORK/info.$i") \
			GIT_COMMITTER_NAME=privmem GIT_COMMITTER_EMAIL=privmem@localhost \
			GIT_COMMITTER_DATE=$(sed -n 's/^Date: //p' "$WORK/info.$i") \
			sgit commit-tree "$tree" -p "$tip" -m "$msg"
		) || die "commit-tree failed at $name"
	done

	# The series must end exactly at the repository's new files.
	for ((i = 1; i <= NPATCH; i++)); do
		for f in ${NEW[i]}; do
			[ "$(sgit rev-parse "$tip:$f")" = "$(git hash-object "$ROOT/$f")" ] ||
				die "$f: the series does not reproduce the repository's version"
		done
	done
	unset GIT_INDEX_FILE
	echo "$tip"
}

# tree_guard: refuse to overwrite work done inside build/linux.
tree_guard() {
	local head composed

	head=$(sgit rev-parse HEAD)
	composed=$(sgit rev-parse -q --verify $COMPOSED_REF) || return 0
	if [ "$head" != "$composed" ]; then
		die "build/linux has commits that are not in the repository (HEAD $(sgit rev-parse --short HEAD)).
Take them in with 'harness/privmem refresh', or drop them with 'harness/privmem compose --discard'."
	fi
	if [ -n "$(sgit status --porcelain --untracked-files=normal | head -n 1)" ]; then
		die "build/linux has uncommitted changes:
$(sgit status --short | head -n 10)
Commit them there and run 'harness/privmem refresh', or drop them with 'harness/privmem compose --discard'."
	fi
}

# compose [--discard]: bring build/linux to the repository's series.
compose() {
	local tip

	import_base
	[ "${1:-}" = --discard ] || tree_guard
	tip=$(compose_commits) || exit 1
	if [ "$(sgit rev-parse HEAD)" != "$tip" ] || [ "${1:-}" = --discard ]; then
		sgit checkout -q -f -B privmem "$tip" || die "cannot check out the composed tree"
		sgit clean -q -fd
	fi
	sgit update-ref $COMPOSED_REF "$tip"
	note "==> composed tree: Linux $(make -s -C "$SRC" kernelversion) (Debian $BASE_PKG $(base_version)) + $(sgit rev-list --count base..HEAD) patches, at $(sgit rev-parse --short HEAD)"
}

slug() {
	printf '%s' "$1" | tr -c 'A-Za-z0-9._\n' '-' | tr -s '-' | sed 's/^-//; s/-$//' | cut -c1-52 | sed 's/[-.]*$//'
}

# refresh: turn the commits of build/linux (base..HEAD) into patches/ and
# the repository's new files.  The inverse of compose.
refresh() {
	local c n=0 name subject added f old_new new_series
	local -a exclude

	[ -d "$SRC/.git" ] || die "no composed tree; run 'harness/privmem compose' first"
	[ -z "$(sgit status --porcelain --untracked-files=normal | head -n 1)" ] ||
		die "build/linux has uncommitted changes; commit them first"
	[ -z "$(sgit rev-list --merges base..HEAD)" ] || die "the series must be linear (no merges)"
	old_new=$(series_entries | cut -f2 | tr ' ' '\n' | sed '/^$/d' | sort)
	new_series=$(mktemp)
	cat >"$new_series" <<-'EOF'
	# The privmem series against Debian's linux-source-6.1, in order.
	# Each unindented line names a patch in this directory.  The indented
	# lines under it are the new files (at their kernel paths in this
	# repository) that the patch introduces; later patches may modify them.
	# Generated by 'harness/privmem refresh' from the commits in build/linux.
	EOF
	rm -f "$ROOT"/patches/[0-9][0-9][0-9][0-9]-*.patch
	for c in $(sgit rev-list --reverse base..HEAD); do
		n=$((n + 1))
		subject=$(sgit log -1 --format=%s "$c")
		name=$(printf '%04d-%s.patch' $n "$(slug "$subject")")
		added=$(sgit diff --name-only --no-renames --diff-filter=A "$c^" "$c")
		exclude=()
		for f in $added; do exclude+=(":(exclude)$f"); done
		{
			printf 'From 0000000000000000000000000000000000000000 Mon Sep 17 00:00:00 2001\n'
			sgit log -1 --format='From: %an <%ae>%nDate: %aD%nSubject: %s%n' "$c"
			sgit log -1 --format=%b "$c" | sed -e :a -e '/^\n*$/{$d;N;ba' -e '}'
			printf -- '---\n'
			sgit diff --no-renames --stat=72 "$c^" "$c" -- . "${exclude[@]}"
			printf '\n'
			sgit diff --no-renames "$c^" "$c" -- . "${exclude[@]}"
		} >"$ROOT/patches/$name"
		printf '%s\n' "$name" >>"$new_series"
		for f in $added; do
			printf '\t%s\n' "$f" >>"$new_series"
			mkdir -p "$ROOT/$(dirname "$f")"
			sgit show "$c:$f" >"$ROOT/$f"
			if [ "$(sgit ls-tree HEAD -- "$f" | cut -c1-6)" = 100755 ]; then
				chmod 755 "$ROOT/$f"
			else
				chmod 644 "$ROOT/$f"
			fi
		done
	done
	mv "$new_series" "$SERIES"
	# Final versions of new files modified by later patches.
	for f in $(series_entries | cut -f2); do
		sgit show "HEAD:$f" >"$ROOT/$f"
	done
	# New files that left the series leave the repository.
	for f in $(comm -23 <(echo "$old_new") <(series_entries | cut -f2 | tr ' ' '\n' | sed '/^$/d' | sort)); do
		rm -f "$ROOT/$f"
		note "removed $f (no longer in the series)"
	done
	# Round trip: composing the repository must give the same tree.
	local tip
	tip=$(compose_commits) || exit 1
	[ "$(sgit rev-parse "$tip^{tree}")" = "$(sgit rev-parse 'HEAD^{tree}')" ] ||
		die "refresh did not round-trip: composing patches/ gives a different tree"
	sgit checkout -q -B privmem "$tip"
	sgit update-ref $COMPOSED_REF "$tip"
	note "==> refreshed patches/ from build/linux: $n patches"
}

# filter_covered_new_files PATCH CHECKPATCH-OUTPUT: checkpatch warns about
# every patch that adds a file without touching MAINTAINERS.  Drop that
# warning when the MAINTAINERS entry of this series covers every file the
# patch adds; keep it, with the uncovered files, otherwise.
filter_covered_new_files() {
	local patch=$1 res=$2 f uncovered=

	case $res in *:FILE_PATH_CHANGES:*) ;; *) printf '%s' "$res"; return ;; esac
	for f in $(awk '/^diff --git /{f=$4} /^new file mode/{sub("^b/","",f); print f}' "$patch"); do
		(cd "$SRC" && PATH=/usr/bin:$PATH ./scripts/get_maintainer.pl --no-git --no-git-fallback --sections -f "$f" 2>/dev/null) |
			grep -q '^KVM PRIVATE MEMORY' || uncovered="$uncovered $f"
	done
	if [ -z "$uncovered" ]; then
		printf '%s' "$res" | grep -v ':FILE_PATH_CHANGES:'
	else
		printf '%s\nnot covered by the KVM PRIVATE MEMORY entry:%s' "$res" "$uncovered"
	fi
}

# export_series: git format-patch with a cover letter into build/export,
# then checkpatch --strict over every patch.
export_series() {
	local out=$B/export cover=$ROOT/patches/cover-letter.txt p bad=0 res

	compose
	format_series "$SRC" "$cover" "$out"
	note "==> scripts/checkpatch.pl --strict over the series (log: build/logs/checkpatch.log)"
	: >"$LOGS/checkpatch.log"
	for p in "$out"/*.patch; do
		case $p in */0000-cover-letter.patch) continue ;; esac
		# Debian's python3 has the ply and git modules spdxcheck.py needs.
		res=$(cd "$SRC" && PATH=/usr/bin:$PATH ./scripts/checkpatch.pl --strict --no-summary --terse --show-types "$p" 2>&1)
		res=$(filter_covered_new_files "$p" "$res")
		if [ -n "$res" ]; then
			bad=$((bad + 1))
			printf '    %s:\n%s\n' "$(basename "$p")" "$(printf '%s\n' "$res" | sed 's/^/        /')"
		else
			printf '    %-70s clean\n' "$(basename "$p")"
		fi
		printf '%s\n%s\n' "$(basename "$p")" "$res" >>"$LOGS/checkpatch.log"
	done
	[ $bad -eq 0 ] || die "checkpatch --strict reported problems in $bad patches"
	note "checkpatch --strict: all patches clean"
}
