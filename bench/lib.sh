# Shared by the shell benchmarks: models are synthesized once into
# $BENCH_DIR (default build/bench-models), numbers come from strata's own
# statistics lines, and every figure is the median of several runs.
BUILD=${BUILD:-build}
BENCH_DIR=${BENCH_DIR:-$BUILD/bench-models}
STRATA=$BUILD/strata
SYNTH=$BUILD/strata-synth
mkdir -p "$BENCH_DIR"

# synth NAME ARGS...: synthesize $BENCH_DIR/NAME.gguf once.
synth() {
    name=$1; shift
    if [ ! -f "$BENCH_DIR/$name.gguf" ]; then
        echo "   synthesizing $name ..." >&2
        "$SYNTH" -q "$@" -o "$BENCH_DIR/$name.gguf"
    fi
    echo "$BENCH_DIR/$name.gguf"
}

# median of the numbers on stdin
median() { sort -g | awk '{ v[NR] = $1 } END { if (NR == 0) print 0; else if (NR % 2) print v[(NR + 1) / 2]; else print (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }

# field NAME: a number from strata's statistics lines on stdin, e.g.
#   field "generated [0-9]* tokens," -> the tok/s after it
gen_tps() { sed -n 's/.*generated [0-9]* tokens, \([0-9.]*\) tok\/s.*/\1/p'; }
prompt_tps() { sed -n 's/.*prompt [0-9]* tokens, \([0-9.]*\) tok\/s.*/\1/p'; }
peak_rss() { sed -n 's/.*peak RSS \([0-9.]*\) MiB.*/\1/p'; }
accounted() { sed -n 's/.*(accounted \([0-9.]*\) MiB).*/\1/p'; }
streamed_gb() { sed -n 's/.*streamed \([0-9.]*\) GB\/token.*/\1/p'; }
predicted_tps() { sed -n 's/.*vs \([0-9.]*\) predicted.*/\1/p'; }
# the closing line's decode tok/s, to two decimals ("strata: decode 0.93 tok/s vs 0.97 predicted ...")
decode_tps() { sed -n 's/.*strata: decode \([0-9.]*\) tok\/s vs.*/\1/p'; }

# json_num KEY: the first numeric value of "KEY": in JSON on stdin
json_num() { grep -o "\"$1\": [0-9.e+-]*" | head -n 1 | sed 's/.*: //'; }

# A prompt of about N tokens (words of the made-up vocabulary).
prompt_words() { awk -v n="$1" 'BEGIN { for (i = 0; i < n; i++) printf "%s ", substr("the cat sat on a mat and ran far", 1 + (i * 4) % 28, 3); }'; }

# measure MODEL: RAM, CPU and disk (reading MODEL) bandwidths; sets RAM_BW,
# DISK_BW (bytes/s) and CPU_RATE (weights/s).
measure() {
    j=$("$STRATA" detect --measure --path "$1" --json)
    RAM_BW=$(echo "$j" | json_num ram_read_all_bytes_per_s)
    DISK_BW=$(echo "$j" | json_num disk_read_bytes_per_s)
    CPU_RATE=$(echo "$j" | json_num cpu_q4_k_weights_per_s)
}

# per_token_bytes MODEL: weight bytes read per decoded token: all tensors but
# the embedding (one row of it is gathered)
per_token_bytes() {
    j=$("$STRATA" inspect --json --tensors "$1")
    total=$(echo "$j" | json_num tensor_bytes)
    embd=$(echo "$j" | grep -A12 '"token_embd.weight"' | json_num bytes)
    echo $((total - embd))
}

# Mixture of experts: fields of `strata run`'s end lines, empty when absent:
#   strata: experts: hit 63.2 % in decode (1234 of 1536 uses), cache 412 of
#     1536 experts (1.21 GiB, LRU), prefetch router: 71 % of 300 used
#   strata: streamed 0.312 GB/token at 1.40 GB/s, 93 % of the disk bound (...)
expert_hit() { sed -n 's/.*experts: hit \([0-9.]*\) %.*/\1/p' | head -n 1; }
expert_cache() { sed -n 's/.*experts: .*cache \([0-9]*\) of \([0-9]*\) experts.*/\1\/\2/p' | head -n 1; }
prefetch_used() { sed -n 's/.*experts: .*prefetch [a-z]*: \([0-9.]*\) % .*/\1/p' | head -n 1; }
bound_pct() { sed -n 's/.*GB\/token at [0-9.]* GB\/s, \([0-9.]*\) % of the disk bound.*/\1/p' | head -n 1; }
# the share of decode time with a read in progress (the end line's "reads in progress 96 %")
disk_busy() { sed -n 's/.*reads in progress \([0-9.]*\) % of the decode time.*/\1/p' | head -n 1; }

# active_bytes MODEL: weight bytes one decoded token reads when every weight
# is used as a mixture of experts uses it: all tensors but the embedding,
# stacked experts (*_exps) at expert_used_count / expert_count of their size.
active_bytes() {
    "$STRATA" inspect --json --tensors "$1" | awk '
        /"n_expert":/ { gsub(/[^0-9]/, ""); ne = $0 }
        /"n_expert_used":/ { gsub(/[^0-9]/, ""); nu = $0 }
        /"name":/ { name = $2 }
        /"bytes":/ && name != "" {
            b = $2; gsub(/[^0-9]/, "", b)
            if (name ~ /token_embd/) { name = ""; next }
            total += (name ~ /_exps/ && ne > 0) ? b * nu / ne : b
            name = "" }
        END { printf "%.0f\n", total }'
}

# cgroup_run LIMIT LOG CMD...: runs CMD in a fresh cgroup v1 memory group of
# LIMIT bytes (its output to LOG) and prints "exit OOM_KILLS PEAK_BYTES"; returns
# 1 without running when that needs root or a memory hierarchy it lacks.
cgroup_run() {
    limit=$1; log=$2; shift 2
    cg_line=$(grep -E '^[0-9]+:([^:]*,)?memory(,[^:]*)?:' /proc/self/cgroup || true)
    cg_root=$(awk '{ for (i = 1; i <= NF; i++) if ($i == "-") break; if ($(i + 1) == "cgroup" && $(i + 3) ~ /memory/) { print $5; exit } }' /proc/self/mountinfo)
    if [ "$(id -u)" != 0 ] || [ -z "$cg_line" ] || [ -z "$cg_root" ]; then return 1; fi
    cg="$cg_root$(echo "$cg_line" | cut -d: -f3)/strata-bench-$$"
    mkdir "$cg" || return 1
    echo "$limit" > "$cg/memory.limit_in_bytes"
    echo "$limit" > "$cg/memory.memsw.limit_in_bytes" 2>/dev/null || true
    rc=0
    sh -c 'echo $$ > "$0/cgroup.procs" && exec "$@"' "$cg" "$@" >"$log" 2>&1 || rc=$?
    oom=$(awk '$1 == "oom_kill" { print $2 }' "$cg/memory.oom_control" 2>/dev/null || echo "?")
    peak=$(cat "$cg/memory.max_usage_in_bytes" 2>/dev/null || echo 0)
    rmdir "$cg" 2>/dev/null || true
    echo "$rc ${oom:-?} $peak"
}

# llama_ts FILE pp|tg: tok/s from llama-bench's CSV (-o csv) in FILE: its
# prompt test (n_gen 0) or its generation test (n_prompt 0); empty if none
llama_ts() {
    awk -F, -v kind="$2" '/avg_ts/ { for (i = 1; i <= NF; i++) { h = $i; gsub(/"/, "", h); c[h] = i }; next }
        c["avg_ts"] { for (i = 1; i <= NF; i++) gsub(/"/, "", $i)
            if ((kind == "pp" && $c["n_gen"] == 0) || (kind == "tg" && $c["n_prompt"] == 0)) v = $c["avg_ts"] }
        END { print v }' "$1"
}
