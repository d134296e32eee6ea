#!/bin/sh
# llama.cpp's llama-bench for the same-run comparisons of bench_engine.sh
# (LLAMA_BENCH=...) and moe.sh (llama-bench on PATH), on a Debian machine
# whose release has no llama.cpp package (bookworm): unpacks Debian sid's
# llama.cpp-tools, its libraries and sid's C library into DIR (default
# /opt/llama-sid) and writes DIR/bin/llama-bench, which runs it with sid's
# own loader. Nothing is installed into the system's package database;
# ggml looks for its CPU back ends (one per x86 level, picked at run time)
# in /usr/lib/x86_64-linux-gnu/ggml/backends0 only, so that path becomes a
# link into DIR when it does not exist (root only). Then:
#   LLAMA_BENCH=DIR/bin/llama-bench sh bench/bench_engine.sh
#   PATH=DIR/bin:$PATH LLAMA_BENCH_ARGS="--repack 0 -lm mmap" make bench-moe
# Needs curl, xz and dpkg-deb, and deb.debian.org reachable.
set -eu
DIR=${1:-/opt/llama-sid}
MIRROR=${MIRROR:-http://deb.debian.org/debian}
PKGS="libc6 libstdc++6 libgcc-s1 libgomp1 libssl3t64 libggml0 libllama0 llama.cpp-tools libblas3 zlib1g libzstd1 libcurl4t64"
LIB=$DIR/root/usr/lib/x86_64-linux-gnu
mkdir -p "$DIR/debs" "$DIR/bin" "$DIR/root"
index=$DIR/debs/Packages.xz
curl -fsS "$MIRROR/dists/sid/main/binary-amd64/Packages.xz" -o "$index"
for p in $PKGS; do
    file=$(xz -dc "$index" | awk -v p="$p" '$0 == "Package: " p { f = 1 } f && /^Filename:/ { print $2; exit }')
    [ -n "$file" ] || { echo "llama_sid.sh: $p: not in sid's index" >&2; exit 1; }
    curl -fsS "$MIRROR/$file" -o "$DIR/debs/$(basename "$file")"
    dpkg-deb -x "$DIR/debs/$(basename "$file")" "$DIR/root"
done
cat > "$DIR/bin/llama-bench" <<EOF
#!/bin/sh
exec "$LIB/ld-linux-x86-64.so.2" --library-path "$LIB:$LIB/llama:$DIR/root/lib/x86_64-linux-gnu:$LIB/blas" \\
    "$DIR/root/usr/bin/llama-bench" "\$@"
EOF
chmod +x "$DIR/bin/llama-bench"
backends=/usr/lib/x86_64-linux-gnu/ggml
if [ ! -e "$backends" ]; then
    if [ "$(id -u)" = 0 ]; then ln -s "$LIB/ggml" "$backends"
    else echo "llama_sid.sh: as root, link $backends to $LIB/ggml (ggml finds its CPU back ends only there)" >&2; fi
fi
echo "$DIR/bin/llama-bench ($(xz -dc "$index" | awk '$0 == "Package: llama.cpp-tools" { f = 1 } f && /^Version:/ { print $2; exit }'))"
