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
    embd=$(echo "$j" | grep -A6 '"token_embd.weight"' | json_num bytes)
    echo $((total - embd))
}
