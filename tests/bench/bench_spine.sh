#!/bin/sh
# Benchmark of the spine on this machine, printed as a table:
#  1. clean clone to per-test results: empty cache (no extracted source,
#     no build, no ccache), `runner run` for x86_64-default;
#  2. `pytest -n auto` again with nothing changed;
#  3. `pytest -n auto` after editing one KUnit file;
#  4. upstream kunit.py with our .kunitconfig, from clean and rerun, in a
#     copy of the same prepared tree, so the ratio is measured in one run.
# Usage: tests/bench/bench_spine.sh [SCRATCH_DIR]   (needs ~8 GB)
set -eu
here=$(cd "$(dirname "$0")/../.." && pwd)
scratch=${1:-/tmp/allocprof-bench}
rm -rf "$scratch"
mkdir -p "$scratch"
export ALLOCPROF_CACHE="$scratch/cache"
py="$here/.venv/bin/python"
[ -x "$py" ] || py=python3
pytest="$py -m pytest"

secs() { date +%s.%N; }
elapsed() { echo "$2 - $1" | bc; }

cd "$here"
t0=$(secs)
$py -m runner run --results-dir "$scratch/results" -q > "$scratch/run1.txt" 2>&1 || true
t1=$(secs)
clean=$(elapsed "$t0" "$t1")

t0=$(secs)
$pytest -n auto -q -p no:cacheprovider --results-dir="$scratch/results" > "$scratch/run2.txt" 2>&1 || true
t1=$(secs)
rerun=$(elapsed "$t0" "$t1")

edit="$here/kunit/alloc_tag_page_split_kunit.c"
cp "$edit" "$scratch/saved.c"
printf '\n/* bench: %s */\n' "$(date +%s)" >> "$edit"
t0=$(secs)
$pytest -n auto -q -p no:cacheprovider --results-dir="$scratch/results" > "$scratch/run3.txt" 2>&1 || true
t1=$(secs)
cp "$scratch/saved.c" "$edit"
edited=$(elapsed "$t0" "$t1")
boot=$(grep -ho "guest ran [0-9.]*s" "$scratch/run1.txt" | head -1)

tree=$(ls -d "$ALLOCPROF_CACHE"/src/debian-*/linux-source-6.12)
cp -a "$tree" "$scratch/kunit-tree"
cd "$scratch/kunit-tree"
t0=$(secs)
./tools/testing/kunit/kunit.py run --arch=x86_64 --build_dir="$scratch/kunit-build" \
	--kunitconfig=lib/alloc_tag_kunit/.kunitconfig --jobs=2 > "$scratch/kunit1.txt" 2>&1 || true
t1=$(secs)
kclean=$(elapsed "$t0" "$t1")
t0=$(secs)
./tools/testing/kunit/kunit.py run --arch=x86_64 --build_dir="$scratch/kunit-build" \
	--kunitconfig=lib/alloc_tag_kunit/.kunitconfig --jobs=2 > "$scratch/kunit2.txt" 2>&1 || true
t1=$(secs)
krerun=$(elapsed "$t0" "$t1")

echo "| measurement | seconds |"
echo "|---|---|"
echo "| runner run, clean (extract + config + build + boot + parse) | $clean |"
echo "| pytest -n auto, nothing changed | $rerun |"
echo "| pytest -n auto, one KUnit file edited | $edited |"
echo "| boot to results under TCG (runner run) | ${boot#guest ran } |"
echo "| kunit.py run --arch=x86_64, clean | $kclean |"
echo "| kunit.py run --arch=x86_64, nothing changed | $krerun |"
tail -3 "$scratch/kunit1.txt" | sed 's/^/kunit.py: /'
tail -1 "$scratch/run2.txt" | sed 's/^/pytest: /'
