#!/usr/bin/env bash
# Runs CRIU's own zdtm/static tests, unmodified, through ferry (and, with
# --criu-bin, through CRIU for the side-by-side figure). Run by hand, as
# root: CI cannot download CRIU, and no CRIU code lives in this repository.
#
#   scripts/zdtm.sh --criu-src DIR [--criu-bin PATH] [--agent PATH]
#                   [--mode cr|leave-running|both] [--leave-running]
#                   [--only NAME...] [--timeout SEC] [--out FILE] [--keep]
#
# --criu-src  a CRIU source tree (tag v4.2: github.com/checkpoint-restore/criu);
#             its test/zdtm/static, test/zdtm/lib and test/zdtm/Makefile.inc
#             are copied into a temporary directory and built there with
#             CRIU's own Makefiles (needs gcc, make, libcap-dev, libaio-dev).
# --criu-bin  a criu binary: every test also goes through
#             `criu dump -t PID -D DIR --shell-job` / `criu restore
#             --restore-detached`, with the CRIU options the test's .desc asks for.
# --agent     ferry's binary (default: migrate-agent in $CARGO_TARGET_DIR or
#             target/, release before debug).
# --mode      cr (default): start -> checkpoint (which kills) -> restore ->
#             SIGTERM -> PASS in the .out; leave-running: checkpoint
#             --leave-running -> SIGTERM -> PASS (as zdtm's --norst);
#             both. --leave-running is --mode leave-running.
# --only      run only these tests (names as in zdtm/static); the selection
#             rules below still apply, a skipped name says why.
# --timeout   seconds for each step (start, checkpoint, restore, stop);
#             default 30, or the .desc's 'timeout' when larger (as zdtm.py).
# --out FILE  also write the result lines (tab-separated) to FILE.
# --keep      keep the build and image directory (its path is printed).
#
# Which tests (the rules of CRIU's test/zdtm.py for `zdtm.py run -a -f h`):
# every program of static/Makefile's TST list (the TST_STATE ones are not
# processes), minus those whose .desc sets an arch other than x86_64, has
# flag 'noauto' (manual run only), flag 'crfail' (the dump is expected to
# fail), a 'flavor' without 'h' (namespace flavours only), or whose
# .checkskip exits non-zero on this host; in leave-running mode also those
# with flag 'reqrst' (need the restore stage). 'feature's are CRIU's own
# (`criu check --feature`): with --criu-bin a missing one skips the CRIU
# run only; ferry runs the test regardless.
#
# Each test is started as zdtm.py starts it: `make T.pid` in the build's
# static dir (so with exactly the arguments its Makefile gives:
# --pidfile, --outfile, --filename, --dirname, ...), with TMPDIR and
# ZDTM_THREAD_BOMB=5, and unless the .desc has flag 'suid' with ZDTM_UID,
# ZDTM_GID and ZDTM_GROUPS (the test drops to that user). make returns when
# the test wrote its pidfile (it is ready). One test at a time.
#
# Output: one line per test and tool/mode: NAME TOOL/MODE RESULT REASON, the
# reason being the step that failed and the first line of the error
# (ferry's message, CRIU's first "Error" log line, or the test's FAIL line),
# then a tally per tool/mode and, with --criu-bin, the side-by-side counts.
# A test's .hook runs at the stages zdtm.py runs it (--post-start, --pre-dump,
# --pre-restore, --post-restore, --clean).
# A .desc's ropts --join-ns net:PATH (netns_lock's) become ferry's checkpoint
# --external-netns and restore --join-netns PATH (see run_one).
# Everything a test starts is killed by PID when it ends or on exit
# (its descendants, any process running a binary of the build dir, and
# whatever runs in a network namespace a test's hook created).
# The host's iptables and ip6tables rules (iptables-save) are saved
# before each test and put back (iptables-restore) after it, so that rules
# a test (socket-tcp-reseted's REJECT) or CRIU's iptables network lock
# left behind never reach the next test or outlive the run.
set -uo pipefail

criu_src=""
criu_bin=""
agent=""
mode="cr"
only=()
timeout_default=30
out_file=""
keep=0

usage() {
	sed -n '2,26p' "$0" | sed 's/^# \{0,1\}//'
	exit "${1:-2}"
}

while [ $# -gt 0 ]; do
	case "$1" in
	--criu-src) criu_src="$2"; shift 2 ;;
	--criu-bin) criu_bin="$2"; shift 2 ;;
	--agent) agent="$2"; shift 2 ;;
	--mode) mode="$2"; shift 2 ;;
	--leave-running) mode="leave-running"; shift ;;
	--timeout) timeout_default="$2"; shift 2 ;;
	--out) out_file="$2"; shift 2 ;;
	--keep) keep=1; shift ;;
	--only)
		shift
		while [ $# -gt 0 ] && [ "${1#--}" = "$1" ]; do only+=("$1"); shift; done
		;;
	-h|--help) usage 0 ;;
	*) echo "zdtm.sh: unknown argument $1" >&2; usage ;;
	esac
done

die() { echo "zdtm.sh: $*" >&2; exit 2; }

[ -n "$criu_src" ] || die "--criu-src DIR is required"
zdtm_src="$criu_src/test/zdtm"
[ -d "$zdtm_src/static" ] && [ -d "$zdtm_src/lib" ] && [ -f "$zdtm_src/Makefile.inc" ] \
	|| die "$criu_src has no test/zdtm/{static,lib,Makefile.inc}: not a CRIU source tree"
case "$mode" in
cr) modes=(cr) ;;
leave-running) modes=(leave-running) ;;
both) modes=(cr leave-running) ;;
*) die "--mode must be cr, leave-running or both" ;;
esac
[ "$(id -u)" = 0 ] || die "run as root (checkpoint needs ptrace of any process)"
for tool in make gcc python3 timeout; do
	command -v "$tool" > /dev/null || die "$tool is missing"
done

repo="$(cd "$(dirname "$0")/.." && pwd)"
if [ -z "$agent" ]; then
	for dir in "${CARGO_TARGET_DIR:-}" "$repo/target"; do
		[ -n "$dir" ] || continue
		for profile in release debug; do
			if [ -x "$dir/$profile/migrate-agent" ]; then
				agent="$dir/$profile/migrate-agent"
				break 2
			fi
		done
	done
fi
[ -n "$agent" ] && [ -x "$agent" ] \
	|| die "no migrate-agent binary (cargo build --release -p migrate-agent, or --agent PATH)"
agent="$(realpath "$agent")"
tools=(ferry)
if [ -n "$criu_bin" ]; then
	criu_bin="$(realpath "$criu_bin")"
	[ -x "$criu_bin" ] || die "--criu-bin $criu_bin is not executable"
	tools+=(criu)
fi

# ---- the temporary build dir, and killing what it started ----------------

work="$(mktemp -d /tmp/criu-zdtm-build.XXXXXX)"
# The tests drop to ZDTM_UID: the path to their dir must be traversable.
chmod 755 "$work"
mkdir -p "$work/zdtm" "$work/img"
static="$work/zdtm/static"
known_pids=()

# Every process running a binary of the build dir, and the descendants of
# the PIDs this script learnt (tests, restored trees).
our_pids() {
	local proc pid exe
	for proc in /proc/[0-9]*; do
		pid="${proc#/proc/}"
		exe="$(readlink "$proc/exe" 2> /dev/null)" || continue
		case "$exe" in "$work"/*) echo "$pid" ;; esac
	done
	local queue=("${known_pids[@]}") children
	while [ ${#queue[@]} -gt 0 ]; do
		pid="${queue[0]}"
		queue=("${queue[@]:1}")
		[ -d "/proc/$pid" ] || continue
		echo "$pid"
		children="$(cat /proc/"$pid"/task/*/children 2> /dev/null)"
		for child in $children; do queue+=("$child"); done
	done
}

# descendants PID: PID and every process below it (the tree a checkpoint
# of PID takes).
descendants() {
	local queue=("$1") pid child
	while [ ${#queue[@]} -gt 0 ]; do
		pid="${queue[0]}"
		queue=("${queue[@]:1}")
		[ -d "/proc/$pid" ] || continue
		echo "$pid"
		for child in $(cat /proc/"$pid"/task/*/children 2> /dev/null); do queue+=("$child"); done
	done
}

kill_ours() {
	local pid pids ns inode
	pids="$(our_pids | sort -u)"
	for pid in $pids; do kill -KILL "$pid" 2> /dev/null; done
	known_pids=()
	# Whatever runs in a network namespace a hook of ours created (by the
	# inode it had then: the test's --clean hook may have unnamed it), then
	# the namespace itself.
	[ -s "$work/hook-netns" ] || return 0
	while read -r ns inode; do
		for pid in /proc/[0-9]*; do
			[ "$(readlink "$pid/ns/net" 2> /dev/null)" = "net:[$inode]" ] \
				&& kill -KILL "${pid#/proc/}" 2> /dev/null
		done
		ip netns del "$ns" 2> /dev/null
	done < "$work/hook-netns"
	: > "$work/hook-netns"
}

# Some tests (cgroup*) mount in their dir and leave it mounted when they
# end early; unmount everything below the build dir, deepest first.
unmount_ours() {
	local mnt
	for mnt in $(awk -v w="$work/" 'index($5, w) == 1 {print $5}' /proc/self/mountinfo | sort -r); do
		umount -l "$mnt" 2> /dev/null
	done
}

# The cgroup tests create cgroups in the named v1 hierarchies zdtmtst and
# zdtmtst.defaultroot (zdtm's own) and leave them when the checkpoint
# fails (cgroup_stray's foo and bar); a later run would find them
# ("File exists"). Remove them, deepest first, as zdtm_umount_cgroups would.
clean_cgroups() {
	local name dir="$work/cgroup"
	mkdir -p "$dir"
	for name in zdtmtst zdtmtst.defaultroot; do
		mount -t cgroup -o "none,name=$name" zdtm "$dir" 2> /dev/null || continue
		find "$dir" -mindepth 1 -depth -type d -exec rmdir {} \; 2> /dev/null
		umount -l "$dir"
	done
	# cgroup_ignore's cgroup zdtmtst of the v2 hierarchy, left when the
	# test ends inside it (with --leave-running, which it fails), and the
	# newroot and prefix trees CRIU's restore of cgroup02 makes there
	# (its hook cleans the v1 hierarchies only).
	if mount -t cgroup2 zdtm "$dir" 2> /dev/null; then
		for name in zdtmtst newroot prefix; do
			[ ! -d "$dir/$name" ] || find "$dir/$name" -depth -type d -exec rmdir {} \; 2> /dev/null
		done
		umount -l "$dir"
	fi
	rmdir "$dir"
}

# The --cgroup-root options among CRIU options $1 (words), as ferry's
# (one word a line): checkpoint and restore take the same form.
cgroup_roots() {
	local prev='' w
	for w in $1; do
		case "$w" in
		--cgroup-root=*) printf -- '--cgroup-root\n%s\n' "${w#--cgroup-root=}" ;;
		*) [ "$prev" != --cgroup-root ] || printf -- '--cgroup-root\n%s\n' "$w" ;;
		esac
		prev="$w"
	done
}

# A checkpoint that kills a tree with TCP connections leaves its network
# lock (an nftables table named in the image) engaged for the restore, as
# CRIU's --tcp-established does; when the restore failed, this run
# removes the table itself (only that one: the image names it), in the
# network namespace the restore was to join (path $2) when there is one.
release_lock() {
	local table enter=()
	table="$("$agent" image show "$1" 2> /dev/null |
		sed -n 's/^  network lock \(ferry_[0-9a-z_]*\) engaged until restore$/\1/p')"
	[ -z "${2:-}" ] || enter=(nsenter "--net=$2")
	[ -z "$table" ] || "${enter[@]}" nft delete table inet "$table" 2> /dev/null || true
}

# save_firewall / restore_firewall: the host's iptables and ip6tables
# rules around one test (see the header); a tool missing is skipped.
save_firewall() {
	local t
	for t in iptables ip6tables; do
		command -v "$t-save" > /dev/null || continue
		"$t-save" > "$work/$t.saved" 2> /dev/null || rm -f "$work/$t.saved"
	done
}

restore_firewall() {
	local t
	for t in iptables ip6tables; do
		[ -s "$work/$t.saved" ] || continue
		# The dump's "# Generated ... on DATE" lines differ every time.
		cmp -s <("$t-save" 2> /dev/null | grep -v '^#') <(grep -v '^#' "$work/$t.saved") \
			|| "$t-restore" < "$work/$t.saved" \
			|| echo "zdtm.sh: $t-restore failed: the rules may differ from before the test" >&2
		rm -f "$work/$t.saved"
	done
}

cleanup() {
	restore_firewall
	kill_ours
	unmount_ours
	clean_cgroups
	if [ "$keep" = 1 ]; then
		echo "# kept $work" >&2
	else
		rm -rf "$work"
	fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

emit() {
	echo "$*"
	[ -z "$out_file" ] || echo "$*" >> "$out_file"
}
[ -z "$out_file" ] || : > "$out_file"

# ---- build ------------------------------------------------------------------

cp -r "$zdtm_src/static" "$zdtm_src/lib" "$zdtm_src/Makefile.inc" "$work/zdtm/"
# The tests write their .pid/.out there after dropping to ZDTM_UID (zdtm.py
# does the same chmod).
chmod a+w "$static"
printf 'print-%%:\n\t@echo $($*)\n' > "$work/print.mk"
all_tests="$(make -s -C "$static" -f Makefile -f "$work/print.mk" print-TST)" \
	|| die "cannot list the tests of $zdtm_src/static/Makefile"

# ---- selection (zdtm.py's rules, see the header) --------------------------

# One line per test, fields separated by \x1f (not a blank, so that empty
# fields survive `read`): NAME SKIP-REASON FLAGS OPTS DOPTS ROPTS FEATURES TIMEOUT
# .desc files are Python literals that zdtm.py eval()s; so does this.
describe() {
	python3 - "$static" "$@" << 'EOF'
import os, sys
static, names = sys.argv[1], sys.argv[2:]
for name in names:
    path = os.path.join(static, name + '.desc')
    desc = {}
    if os.access(path, os.F_OK) and os.path.getsize(path) > 0:
        with open(path) as f:
            desc = eval(f.read())
    flags = desc.get('flags', '').split()
    skip = ''
    if desc.get('arch', 'x86_64') != 'x86_64':
        skip = 'arch %s' % desc['arch']
    elif 'noauto' in flags:
        skip = 'noauto (manual run only)'
    elif 'crfail' in flags:
        skip = 'crfail (dump expected to fail)'
    elif 'h' not in desc.get('flavor', 'h ns uns').split():
        skip = 'flavor %s (no host flavour)' % desc.get('flavor')
    print('\x1f'.join([name, skip, ' '.join(flags), desc.get('opts', ''),
                     desc.get('dopts', ''), desc.get('ropts', ''),
                     desc.get('feature', ''), str(desc.get('timeout', ''))]))
EOF
}

if [ ${#only[@]} -gt 0 ]; then
	for name in "${only[@]}"; do
		grep -qxF "$name" <<< "$(tr ' ' '\n' <<< "$all_tests")" \
			|| die "$name is not a test of static/Makefile"
	done
	candidates=("${only[@]}")
else
	read -r -a candidates <<< "$all_tests"
fi

declare -A t_flags t_opts t_dopts t_ropts t_feature t_timeout
selected=()
nskip=0
while IFS=$'\x1f' read -r name skip flags opts dopts ropts feature tmo; do
	if [ -z "$skip" ] && [ -x "$static/$name.checkskip" ]; then
		(cd "$static" && timeout 30 "./$name.checkskip") > /dev/null 2>&1 \
			|| skip="checkskip failed on this host"
	fi
	if [ -n "$skip" ]; then
		emit "# skip $name: $skip"
		nskip=$((nskip + 1))
		continue
	fi
	selected+=("$name")
	t_flags[$name]="$flags"
	t_opts[$name]="$opts"
	t_dopts[$name]="$dopts"
	t_ropts[$name]="$ropts"
	t_feature[$name]="$feature"
	t_timeout[$name]="$tmo"
done < <(describe "${candidates[@]}")
emit "# selected ${#selected[@]} host-flavour tests of ${#candidates[@]} (skipped $nskip): ${selected[*]}"
[ ${#selected[@]} -gt 0 ] || exit 1

echo "# building in $work (log: build.log)" >&2
make -s -C "$work/zdtm/lib" libzdtmtst.a > "$work/build.log" 2>&1 \
	|| die "libzdtmtst.a does not build: $(grep -m1 -i error "$work/build.log")"
make -k -s -j2 -C "$static" "${selected[@]}" >> "$work/build.log" 2>&1
built=()
for name in "${selected[@]}"; do
	if [ -x "$static/$name" ]; then built+=("$name"); fi
done

# ---- one run ----------------------------------------------------------------

declare -A tally
declare -A result_of

# first_line FILE RC: the first non-blank line of FILE, else the exit status.
first_line() {
	local line
	line="$(grep -m1 -v '^[[:space:]]*$' "$1" 2> /dev/null | cut -c1-300)"
	echo "${line:-exit status $2, no message}"
}

# criu_error LOG OUTPUT: the first error line of a CRIU log that is not
# from util.c (the exit status of a helper it ran, or its own RLIMIT_NOFILE
# not raised without CAP_SYS_RESOURCE: neither is the failure), else its
# first error line, else its last line, else what criu printed (it fails
# before its log on an unknown option); without the timestamp.
criu_error() {
	local line
	if [ ! -s "$1" ]; then
		first_line "$2" "?"
		return
	fi
	line="$(grep -E 'Error|ERROR' "$1" 2> /dev/null | grep -v 'criu/util\.c' | head -n1)"
	[ -n "$line" ] || line="$(grep -m1 -E 'Error|ERROR' "$1" 2> /dev/null)"
	[ -n "$line" ] || line="$(tail -n1 "$1" 2> /dev/null)"
	echo "${line:-no log}" | sed 's/^([0-9. ]*) //' | cut -c1-300
}

# gone PID SECONDS: true once PID is gone (or a zombie).
gone() {
	local pid="$1" deadline=$((SECONDS + $2)) state
	while [ $SECONDS -lt "$deadline" ]; do
		state="$(awk '{print $3}' "/proc/$pid/stat" 2> /dev/null)" || return 0
		[ -n "$state" ] && [ "$state" != Z ] || return 0
		sleep 0.1
	done
	return 1
}

# freed SECONDS PID...: true once no PID exists any more, not even as a
# zombie (zdtm.py waits the same way: a restore needs every PID of the tree
# free, and the test's reaper, init here, may take a moment).
freed() {
	local deadline=$((SECONDS + $1)) pid
	shift
	for pid in "$@"; do
		while [ -e "/proc/$pid" ]; do
			[ $SECONDS -lt "$deadline" ] || return 1
			sleep 0.1
		done
	done
}

criu_has_features() {
	local feature
	for feature in $1; do
		"$criu_bin" check --feature "$feature" > /dev/null 2>&1 || return 1
	done
}

# hook NAME IMG STAGE: runs the test's .hook, if any, as zdtm.py does (from
# the dir holding zdtm/, with ZDTM_TEST_PID); its output goes to IMG/hook.log.
# The hooks that read CRIU's images import pycriu, which needs CRIU built:
# where it is missing, the hook counts as passed.
# A network namespace that a hook creates (netns_lock's) is remembered in
# $work/hook-netns (name and inode: tests run in a subshell), so that the
# daemon the hook leaves in it (setsid, reparented to init) is killed with
# it.
hook() {
	[ -x "$static/$1.hook" ] || return 0
	local before status=0 ns
	before="$(ip netns list 2> /dev/null | awk '{print $1}')"
	(cd "$work" && timeout -k 5 "$timeout_default" "zdtm/static/$1.hook" "$3") > "$2/hook.log" 2>&1 \
		|| grep -q "No module named 'pycriu'" "$2/hook.log" || status=1
	for ns in $(ip netns list 2> /dev/null | awk '{print $1}'); do
		grep -qxF "$ns" <<< "$before" && continue
		echo "$ns $(stat -L -c %i "/var/run/netns/$ns" 2> /dev/null)" >> "$work/hook-netns"
	done
	return "$status"
}

# last_line FILE: the last non-blank line of FILE (a Python traceback's error).
last_line() { grep -v '^[[:space:]]*$' "$1" 2> /dev/null | tail -n1 | cut -c1-300; }

# run_one NAME TOOL MODE: prints "RESULT<TAB>REASON".
run_one() {
	local name="$1" tool="$2" mode="$3"
	local tmo="${t_timeout[$name]}" img="$work/img/$name.$tool.$mode" pid rc
	[ -n "$tmo" ] && [ "$tmo" -gt "$timeout_default" ] || tmo="$timeout_default"
	rm -rf "$img"
	mkdir -p "$img/dir"
	chmod 777 "$img/dir"
	make -s -C "$static" "$name.cleanout" > /dev/null 2>&1

	local env=(TMPDIR="${TMPDIR:-/tmp}" ZDTM_THREAD_BOMB=5)
	case " ${t_flags[$name]} " in
	*" suid "*) ;;
	*) env+=(ZDTM_UID=18943 ZDTM_GID=58467 "ZDTM_GROUPS=27495 48244") ;;
	esac
	# As zdtm.py: the --post-start hook runs while make starts the test.
	env "${env[@]}" timeout -k 5 "$tmo" make --no-print-directory -C "$static" "$name.pid" \
		> "$img/start.log" 2>&1 &
	local make_pid=$!
	if ! hook "$name" "$img" --post-start; then
		wait "$make_pid"
		printf 'FAIL\thook --post-start: %s' "$(last_line "$img/hook.log")"
		return
	fi
	if ! wait "$make_pid"; then
		# The test's own ERR/FAIL line, else make's last (its first is the command).
		local why
		why="$(cat "$static/$name.out" "$img/start.log" 2> /dev/null | grep -m1 -E 'ERR|FAIL|rror|not found')"
		[ -n "$why" ] || why="$(grep -v '^[[:space:]]*$' "$img/start.log" | tail -n1)"
		printf 'FAIL\tstart: %s' "$(echo "${why:-timed out after ${tmo}s}" | cut -c1-300)"
		return
	fi
	pid="$(cat "$static/$name.pid" 2> /dev/null)"
	if [ -z "$pid" ] || ! kill -0 "$pid" 2> /dev/null; then
		printf 'FAIL\tstart: no running test after its pidfile was written'
		return
	fi
	known_pids+=("$pid")

	export ZDTM_TEST_PID="$pid"
	local tree
	# The checkpointed tree; a test's peer outside it (socket-tcp's client,
	# forked before the test daemonized) is left alone until the test ends.
	tree="$(descendants "$pid" | sort -u)"
	if ! hook "$name" "$img" --pre-dump; then
		printf 'FAIL\thook --pre-dump: %s' "$(last_line "$img/hook.log")"
		return
	fi
	local leave=()
	[ "$mode" = cr ] || leave=(--leave-running)
	# CRIU's --join-ns net:PATH on restore (netns_lock's) is ferry's
	# restore --join-netns PATH; the checkpoint then leaves that namespace
	# outside (--external-netns: locked whole until the restore). CRIU's
	# --network-lock iptables|nftables has no equivalent: ferry's lock is
	# always nftables.
	local join_netns=""
	join_netns="$(sed -n 's/.*--join-ns net:\([^ ]*\).*/\1/p' <<< "${t_ropts[$name]}")"
	local ferry_dump=()
	[ -z "$join_netns" ] || ferry_dump=(--external-netns)
	if [ "$tool" = ferry ]; then
		local roots=()
		mapfile -t roots < <(cgroup_roots "${t_opts[$name]} ${t_dopts[$name]}")
		timeout -k 5 "$tmo" "$agent" checkpoint "$pid" --dir "$img/dir" "${leave[@]}" "${roots[@]}" "${ferry_dump[@]}" \
			> "$img/checkpoint.out" 2> "$img/checkpoint.err"
		rc=$?
		if [ $rc != 0 ]; then
			[ $rc != 124 ] || { printf 'FAIL\tcheckpoint: timed out after %ss' "$tmo"; return; }
			printf 'FAIL\tcheckpoint: %s' "$(first_line "$img/checkpoint.err" $rc)"
			return
		fi
	else
		# shellcheck disable=SC2086 # the .desc's options are words
		(cd "$work" && timeout -k 5 "$tmo" "$criu_bin" dump -t "$pid" -D "$img/dir" -o dump.log -v4 \
			--shell-job "${leave[@]}" ${t_opts[$name]} ${t_dopts[$name]} > "$img/criu.out" 2>&1)
		rc=$?
		if [ $rc != 0 ]; then
			[ $rc != 124 ] || { printf 'FAIL\tdump: timed out after %ss' "$tmo"; return; }
			printf 'FAIL\tdump: %s' "$(criu_error "$img/dir/dump.log" "$img/criu.out")"
			return
		fi
	fi

	if [ "$mode" = cr ]; then
		# The checkpoint killed the tree; kill whatever of it is left.
		if ! gone "$pid" 5; then
			kill_ours
			printf 'FAIL\tcheckpoint: the test still ran after the checkpoint'
			return
		fi
		# shellcheck disable=SC2086 # one PID a word
		for p in $tree; do kill -KILL "$p" 2> /dev/null; done
		# shellcheck disable=SC2086 # one PID a word
		if ! freed "$tmo" $tree; then
			printf 'FAIL\tcheckpoint: a PID of the test is still taken %ss after it was killed' "$tmo"
			return
		fi
		rm -f "$static/$name.pid"
		if ! hook "$name" "$img" --pre-restore; then
			printf 'FAIL\thook --pre-restore: %s' "$(last_line "$img/hook.log")"
			return
		fi
		if [ "$tool" = ferry ]; then
			# CRIU's --manage-cgroups=ignore is ferry's --cgroups ignore (the
			# other modes restore membership as ferry's default does).
			# --cgroup-root is ferry's too.
			local ferry_opts=()
			[[ " ${t_opts[$name]} ${t_ropts[$name]} " != *" --manage-cgroups=ignore "* ]] \
				|| ferry_opts=(--cgroups ignore)
			mapfile -t -O "${#ferry_opts[@]}" ferry_opts < <(cgroup_roots "${t_opts[$name]} ${t_ropts[$name]}")
			[ -z "$join_netns" ] || ferry_opts+=(--join-netns "$join_netns")
			timeout -k 5 "$tmo" "$agent" restore --dir "$img/dir" --pidfile "$static/$name.pid" \
				"${ferry_opts[@]}" > "$img/restore.out" 2> "$img/restore.err"
			rc=$?
			if [ $rc != 0 ]; then
				release_lock "$img/dir" "$join_netns"
				[ $rc != 124 ] || { printf 'FAIL\trestore: timed out after %ss' "$tmo"; return; }
				printf 'FAIL\trestore: %s' "$(first_line "$img/restore.err" $rc)"
				return
			fi
		else
			# shellcheck disable=SC2086
			(cd "$work" && timeout -k 5 "$tmo" "$criu_bin" restore -D "$img/dir" -o restore.log -v4 \
				--shell-job --restore-detached --pidfile "$static/$name.pid" \
				${t_opts[$name]} ${t_ropts[$name]} > "$img/criu.out" 2>&1)
			rc=$?
			if [ $rc != 0 ]; then
				[ $rc != 124 ] || { printf 'FAIL\trestore: timed out after %ss' "$tmo"; return; }
				printf 'FAIL\trestore: %s' "$(criu_error "$img/dir/restore.log" "$img/criu.out")"
				return
			fi
		fi
		pid="$(cat "$static/$name.pid" 2> /dev/null)"
		if [ -z "$pid" ] || ! kill -0 "$pid" 2> /dev/null; then
			printf 'FAIL\trestore: the restored test is not running'
			return
		fi
		known_pids+=("$pid")
		export ZDTM_TEST_PID="$pid"
		if ! hook "$name" "$img" --post-restore; then
			printf 'FAIL\thook --post-restore: %s' "$(last_line "$img/hook.log")"
			return
		fi
	fi

	kill -TERM "$pid" 2> /dev/null
	if ! gone "$pid" "$tmo"; then
		printf 'FAIL\tstop: still running %ss after SIGTERM' "$tmo"
		return
	fi
	local out="$static/$name.out"
	if tail -n 5 "$out" 2> /dev/null | tr -s '[:space:]' '\n' | grep -qx PASS; then
		printf 'PASS\t'
	else
		local why
		why="$(grep -m1 -E 'FAIL|ERR|rror' "$out" 2> /dev/null | cut -c1-300)"
		[ -n "$why" ] || why="$(tail -n1 "$out" 2> /dev/null | cut -c1-300)"
		[ -n "$why" ] || why="no $name.out"
		printf 'FAIL\tresult: %s' "$why"
	fi
}

# ---- the run ----------------------------------------------------------------

emit "# ferry: $agent"
[ -z "$criu_bin" ] || emit "# criu: $criu_bin ($("$criu_bin" --version 2>&1 | head -n1))"
for name in "${selected[@]}"; do
	if [ ! -x "$static/$name" ]; then
		why="$(grep -m1 -E "(^|/)$name\.c:.*error|-l[a-z]+: No such|cannot find -l" "$work/build.log" | cut -c1-300)"
		for tool in "${tools[@]}"; do
			for m in "${modes[@]}"; do
				emit "$(printf '%-32s\t%s/%s\tBUILD\t%s' "$name" "$tool" "$m" "${why:-does not build (see build.log)}")"
				tally[$tool/$m/BUILD]=$((${tally[$tool/$m/BUILD]:-0} + 1))
			done
		done
		continue
	fi
	for tool in "${tools[@]}"; do
		for m in "${modes[@]}"; do
			if [ "$m" = leave-running ] && [[ " ${t_flags[$name]} " == *" reqrst "* ]]; then
				line=$'SKIP\treqrst: needs the restore stage'
			elif [ "$tool" = criu ] && [ -n "${t_feature[$name]}" ] \
				&& ! criu_has_features "${t_feature[$name]}"; then
				line="$(printf 'SKIP\tcriu check: no feature %s' "${t_feature[$name]}")"
			elif [ "$(df --output=avail -k "$work" | tail -n1)" -lt $((5 * 1024 * 1024)) ]; then
				emit "# stopped: less than 5 GiB free in $work"
				exit 1
			else
				save_firewall
				line="$(run_one "$name" "$tool" "$m")"
				# Images are big (a ghost file is copied whole): one at a time.
				[ "$keep" = 1 ] || rm -rf "$work/img/$name.$tool.$m"
				kill_ours
				if [ -x "$static/$name.hook" ]; then
					mkdir -p "$work/img/clean"
					hook "$name" "$work/img/clean" --clean
				fi
				unmount_ours
				restore_firewall
				case "$name" in cgroup*) clean_cgroups ;; esac
			fi
			result="${line%%$'\t'*}"
			tally[$tool/$m/$result]=$((${tally[$tool/$m/$result]:-0} + 1))
			result_of[$name/$tool/$m]="$result"
			emit "$(printf '%-32s\t%s/%s\t%s' "$name" "$tool" "$m" "$line")"
		done
	done
	make -s -C "$static" "$name.cleanout" > /dev/null 2>&1
done

# ---- tally ------------------------------------------------------------------

for tool in "${tools[@]}"; do
	for m in "${modes[@]}"; do
		emit "# tally $tool/$m: PASS ${tally[$tool/$m/PASS]:-0} FAIL ${tally[$tool/$m/FAIL]:-0} SKIP ${tally[$tool/$m/SKIP]:-0} BUILD ${tally[$tool/$m/BUILD]:-0} of ${#selected[@]}"
	done
done
if [ -n "$criu_bin" ]; then
	for m in "${modes[@]}"; do
		both=0 ferry_only=0 criu_only=0 neither=0
		for name in "${built[@]}"; do
			f="${result_of[$name/ferry/$m]:-}" c="${result_of[$name/criu/$m]:-}"
			if [ "$f" = PASS ] && [ "$c" = PASS ]; then both=$((both + 1))
			elif [ "$f" = PASS ]; then ferry_only=$((ferry_only + 1))
			elif [ "$c" = PASS ]; then criu_only=$((criu_only + 1))
			else neither=$((neither + 1)); fi
		done
		emit "# side by side $m: both pass $both, only ferry $ferry_only, only criu $criu_only, neither $neither"
	done
fi
