#!/bin/sh
# Issue 14 (fast load): how fast the resident weights of the 1B- and
# 7B-shaped Q4_K_M models load, cold (page cache dropped; needs root, else
# skipped) and warm (the file in the page cache), against the O_DIRECT
# bandwidth of the disk measured on the same file just before each cold run;
# as copies (the default: O_DIRECT reads into strata's own memory) and as
# views of the page cache (--mmap: no copy).
# GB/s = resident weight bytes / the `load` time of `strata run` (which also
# parses the file, plans and makes the context: ~0.05 s, so small models
# read a little under their store's rate). Target: cold >= 0.8 of the disk.
# Runs alternate (disk, cold, warm) and every figure is a median; a busy
# machine or a virtual disk backed by the host's cache makes single runs
# erratic.
set -eu
cd "$(dirname "$0")/.."
. bench/lib.sh
RUNS=${RUNS:-5}
MODELS=${MODELS:-"1b 7b"}

can_drop=0
if [ "$(id -u)" = 0 ] && [ -w /proc/sys/vm/drop_caches ]; then can_drop=1; fi
drop() { sync; echo 3 > /proc/sys/vm/drop_caches; }

# load_s MODEL MODE: seconds `strata run` took to load it (all resident,
# CPU), MODE --no-mmap or --mmap
load_s() {
    "$STRATA" run -m "$1" -p Hi -n 1 -c 256 --gpu none "$2" 2>&1 >/dev/null | sed -n 's/.*load \([0-9.]*\) s |.*/\1/p'
}

# weight_bytes MODEL: the bytes loaded resident: every tensor but the token
# embedding (its rows are gathered from the file)
weight_bytes() {
    j=$("$STRATA" inspect --json --tensors "$1")
    total=$(echo "$j" | json_num tensor_bytes)
    embd=$(echo "$j" | grep -A12 '"token_embd.weight"' | json_num bytes)
    echo $((total - ${embd:-0}))
}

gbps() { awk -v b="$1" -v s="$2" 'BEGIN { if (s > 0) printf "%.2f", b / s / 1e9; else print "0" }'; }

for name in $MODELS; do
    model=$(synth "$name-q4_k_m" --preset "$name" --type q4_k_m --seed 1)
    bytes=$(weight_bytes "$model")
    disk=""; cold_copy=""; cold_view=""; warm_copy=""; warm_view=""
    for r in $(seq "$RUNS"); do
        if [ "$can_drop" = 1 ]; then
            drop
            measure "$model"
            disk="$disk $DISK_BW"
            drop
            cold_copy="$cold_copy $(gbps "$bytes" "$(load_s "$model" --no-mmap)")"
            drop
            cold_view="$cold_view $(gbps "$bytes" "$(load_s "$model" --mmap)")"
        fi
        cat "$model" > /dev/null
        warm_copy="$warm_copy $(gbps "$bytes" "$(load_s "$model" --no-mmap)")"
        warm_view="$warm_view $(gbps "$bytes" "$(load_s "$model" --mmap)")"
    done
    med() { echo "$1" | tr ' ' '\n' | grep . | median; }
    printf '%s Q4_K_M, %.2f GB resident: warm %.2f GB/s copies, %.2f GB/s --mmap' "$name" \
        "$(awk -v b="$bytes" 'BEGIN{print b/1e9}')" "$(med "$warm_copy")" "$(med "$warm_view")"
    if [ "$can_drop" = 1 ]; then
        d=$(med "$disk")
        ratio() { awk -v c="$1" -v d="$d" 'BEGIN{ if (d > 0) printf "%.2f", c*1e9/d; else print 0 }'; }
        printf ' | cold %.2f GB/s copies (%s of the disk), %.2f GB/s --mmap (%s) | disk (O_DIRECT, this file) %.2f GB/s\n' \
            "$(med "$cold_copy")" "$(ratio "$(med "$cold_copy")")" "$(med "$cold_view")" "$(ratio "$(med "$cold_view")")" \
            "$(awk -v d="$d" 'BEGIN{print d/1e9}')"
    else
        printf ' | cold: skipped (dropping the page cache needs root)\n'
    fi
done
echo "(medians of $RUNS alternated runs; target cold / disk >= 0.80)"
