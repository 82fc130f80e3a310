#!/bin/sh
# CC for kernel and module builds: "ccache-cc.sh COMPILER ARGS...".
# Compiles through ccache, except a source that embeds another file
# (.incbin: the compressed kernel in piggy.S, config_data, certificates).
# ccache's depend mode hashes the source and the compiler's dependency
# list, and .incbin'd bytes are in neither: an image whose sizes did not
# change would come back from the cache with the previous kernel inside.
src=
for arg in "$@"; do
	case $arg in
	*.c|*.S|*.s) src=$arg ;;
	esac
done
if [ -n "$src" ] && [ -f "$src" ] && grep -q 'incbin' "$src"; then
	exec "$@"
fi
exec ccache "$@"
