#!/bin/sh
# Runs inside the test guest (vng --exec): copies out what the host cannot
# read from the console, then reboots, which ends QEMU (-no-reboot) even
# on a kernel built without ACPI power-off.
out="$1"
shift
mountpoint -q /sys/kernel/debug || mount -t debugfs debugfs /sys/kernel/debug 2>/dev/null
uname -r > "$out/uname-r"
for dir in /sys/kernel/debug/kunit/*/; do
	[ -r "$dir/results" ] && cp "$dir/results" "$out/kunit-$(basename "$dir").ktap"
done
[ -r /proc/allocinfo ] && cat /proc/allocinfo > "$out/allocinfo"
if [ -r /proc/sys/vm/mem_profiling ]; then
	cat /proc/sys/vm/mem_profiling > "$out/mem_profiling"
fi
cat /proc/cmdline > "$out/cmdline"
echo ok > "$out/guest-done"
sync
echo "runner-guest: done"
echo b > /proc/sysrq-trigger
