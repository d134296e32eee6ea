#!/bin/sh
# Issue 5: streaming a 7B-shaped Q4_K_M model (~3.8 GiB) with --mem at 25 %
# of its size, the page cache bypassed (O_DIRECT). Reports decode tok/s, the
# bytes streamed per token, the O_DIRECT bandwidth of the disk measured on
# the model file in this run, and tok/s / (bandwidth / bytes per token):
# the fraction of the disk bound reached (target >= 0.90). Then the same run
# inside a memory cgroup limited to the budget (when root): it must finish.
set -eu
cd "$(dirname "$0")/.."
. bench/lib.sh
RUNS=${RUNS:-3}
TOKENS=${TOKENS:-6}
model=$(synth 7b-q4_k_m --preset 7b --type q4_k_m --seed 1)
size=$(stat -c %s "$model")
mem=$((size / 4))
measure "$model"
d=""; s=""
for r in $(seq "$RUNS"); do
    out=$("$STRATA" run -m "$model" --mem "$mem" -p "Once upon a time" -n "$TOKENS" --temp 0 -c 512 2>&1 >/dev/null)
    d="$d $(echo "$out" | gen_tps)"
    s="$s $(echo "$out" | streamed_gb)"
done
tps=$(echo "$d" | tr ' ' '\n' | grep . | median)
gb=$(echo "$s" | tr ' ' '\n' | grep . | median)
ratio=$(awk -v t="$tps" -v g="$gb" -v bw="$DISK_BW" 'BEGIN { printf "%.2f", t / (bw / (g * 1e9)) }')
printf 'model %.2f GiB, --mem %.2f GiB (25 %%)\n' "$(awk -v s="$size" 'BEGIN{print s/2^30}')" \
    "$(awk -v s="$mem" 'BEGIN{print s/2^30}')"
printf 'decode %.3f tok/s | streamed %.3f GB/token | disk (O_DIRECT, this model) %.2f GB/s | bound %.3f tok/s | ratio %s\n' \
    "$tps" "$gb" "$(awk -v b="$DISK_BW" 'BEGIN{print b/1e9}')" \
    "$(awk -v g="$gb" -v bw="$DISK_BW" 'BEGIN{print bw/(g*1e9)}')" "$ratio"
echo "(medians of $RUNS runs of $TOKENS tokens; target ratio >= 0.90)"

# The same run in a memory cgroup whose limit is the budget.
cg_line=$(grep -E '^[0-9]+:([^:]*,)?memory(,[^:]*)?:' /proc/self/cgroup || true)
cg_root=$(awk '{ for (i = 1; i <= NF; i++) if ($i == "-") break; if ($(i + 1) == "cgroup" && $(i + 3) ~ /memory/) { print $5; exit } }' /proc/self/mountinfo)
if [ "$(id -u)" != 0 ] || [ -z "$cg_line" ] || [ -z "$cg_root" ]; then
    echo "cgroup run: skipped (needs root and a cgroup v1 memory hierarchy)"
    exit 0
fi
cg="$cg_root$(echo "$cg_line" | cut -d: -f3)/strata-bench-$$"
mkdir "$cg"
echo "$mem" > "$cg/memory.limit_in_bytes"
echo "$mem" > "$cg/memory.memsw.limit_in_bytes" 2>/dev/null || true
rc=0
sh -c "echo \$\$ > $cg/cgroup.procs && exec $STRATA run -m $model --mem $mem -p 'Once upon a time' -n $TOKENS --temp 0 -c 512" \
    >/dev/null 2>"$BENCH_DIR/cgroup.log" || rc=$?
oom=$(awk '$1 == "oom_kill" { print $2 }' "$cg/memory.oom_control" 2>/dev/null || echo "?")
peak=$(cat "$cg/memory.max_usage_in_bytes" 2>/dev/null || echo 0)
rmdir "$cg" 2>/dev/null || true
printf 'cgroup run (limit = budget %.2f GiB): exit %d, OOM kills %s, cgroup peak %.2f GiB (incl. page cache)\n' \
    "$(awk -v s="$mem" 'BEGIN{print s/2^30}')" "$rc" "$oom" "$(awk -v s="$peak" 'BEGIN{print s/2^30}')"
tail -n 2 "$BENCH_DIR/cgroup.log"
