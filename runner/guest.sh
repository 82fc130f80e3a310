#!/bin/sh
# Runs inside the test guest (vng --exec):
#   guest.sh OUTDIR [SELFTEST_DIR [NAME=VALUE ...]]
# runs the selftests (if SELFTEST_DIR is not empty) with NAME=VALUE in
# their environment, or the allocation benchmark if ALLOCPROF_BENCH_MODULE
# is set; writes into OUTDIR only what runner/guest.py's Outputs names (the
# host reads all of it), then reboots, which ends QEMU (-no-reboot) even
# on a kernel without ACPI.
# mark TEXT: a line in the kernel log, so the console has the guest's time
# of each step (runner/timings.py reads them).
mark() {
	echo "runner-guest: $*" > /dev/kmsg 2>/dev/null || echo "runner-guest: $*"
}
mark start
out="$1"
selftests="${2:-}"
[ $# -ge 2 ] && shift 2 || shift $#
for kv in "$@"; do
	export "$kv"
done
mountpoint -q /sys/kernel/debug || mount -t debugfs debugfs /sys/kernel/debug 2>/dev/null
if [ -n "${ALLOCPROF_BENCH_MODULE:-}" ]; then
	# The code tags' own memory, before the benchmark allocates.
	[ -r /proc/allocinfo ] && cat /proc/allocinfo > "$out/allocinfo"
	# Configuration (4) of the cover letter: switched on after boot.
	[ "${ALLOCPROF_BENCH_ENABLE:-0}" = 1 ] && echo 1 > /proc/sys/vm/mem_profiling
	insmod "$ALLOCPROF_BENCH_MODULE" "iterations=${ALLOCPROF_BENCH_ITERATIONS:-100000}" &&
		rmmod alloc_tag_bench
fi
if [ -n "$selftests" ] && [ -d "$selftests" ]; then
	# Quiet memory for exact counts: kcompactd compacts on its own only
	# when proactive compaction is on.
	[ -w /proc/sys/vm/compaction_proactiveness ] &&
		echo 0 > /proc/sys/vm/compaction_proactiveness
	for t in "$selftests"/*_test; do
		[ -x "$t" ] || continue
		name=$(basename "$t")
		mark "running selftest $name"
		state=$(cat /proc/sys/vm/mem_profiling 2>/dev/null)
		(cd "$selftests" && timeout 120 "$t") > "$out/selftest-$name.ktap" 2>&1
		echo "exit=$?" >> "$out/selftest-$name.exit"
		# A program leaves vm.mem_profiling as it found it: say so if
		# not (a console check fails on it), and restore it for the next.
		now=$(cat /proc/sys/vm/mem_profiling 2>/dev/null)
		if [ "$state" != "$now" ]; then
			mark "$name left vm.mem_profiling at $now (was $state)"
			echo "$state" > /proc/sys/vm/mem_profiling
		fi
	done
fi
echo ok > "$out/guest-done"
sync
mark done
echo b > /proc/sysrq-trigger
