#!/bin/sh
# The README's main job: strata end to end on a built-in default.
# Synthesizes a model about twice the memory budget the demo gives itself,
# shows what the model needs and the plan, then runs it with the weights
# that do not fit streamed from disk, and compares the speed it reached with
# the plan's prediction and the disk's measured bandwidth; the last line says
# it in one sentence.
set -eu
build=${BUILD:-build}
dir=$build/demo
model=$dir/demo-q4_k_m.gguf
budget=${DEMO_MEM:-64M}
mkdir -p "$dir"

# The closing sentence, from the run's own statistics (file LOG): the model's
# size, the peak RSS, the decode speed, and the share of the disk bound the
# streaming reached (bytes streamed per second / the disk's measured bandwidth,
# which is tok/s over the tok/s the disk allows).
headline() {
    awk -v bytes="$(wc -c <"$model")" '
        /peak RSS/ { for (i = 1; i < NF; i++) if ($i == "RSS") rss = $(i + 1) }
        /generated [0-9]+ tokens,/ { for (i = 1; i < NF; i++) if ($i == "generated") tps = $(i + 3) }
        /^strata: decode .* predicted/ { tps = $3 }
        /^strata: streamed .* of the disk bound/ { for (i = 2; i < NF; i++) if ($(i + 1) == "%") share = $i }
        END {
            printf "a %.0f MiB model ran in %.0f MiB of memory at %.1f tok/s", bytes / 1048576, rss, tps
            if (share != "") printf ", %s %% of what the disk allows\n", share
            else printf " (disk bound unknown)\n"
        }' "$1"
}

if [ ! -f "$model" ]; then
    echo "== 0. synthesize a 16-layer Q4_K_M model (random weights, 111 MiB) =="
    "$build/strata-synth" -q --n-embd 1024 --n-ff 2816 --n-layers 16 --n-heads 8 --n-kv-heads 4 \
        --vocab 2000 --ctx 1024 --type q4_k_m --seed 7 -o "$model"
fi
echo
echo "== 1. what the model needs (strata inspect, header only) =="
"$build/strata" inspect "$model" | sed -n '1,5p;/^KV cache/,$p'
echo
echo "== 2. measure this machine: RAM, CPU kernels, and the disk reading this model (strata detect) =="
"$build/strata" detect --measure --path "$model" | sed -n '/^Measured/,$p'
echo
echo "== 3. the plan for a $budget budget (strata plan) =="
"$build/strata" plan "$model" --mem "$budget" --compare
echo
echo "== 4. run it within $budget: weights that do not fit stream from disk (strata run) =="
echo "   (random weights: the text is gibberish by design; the statistics are the point)"
log=$dir/run.log
if ! "$build/strata" run -m "$model" --mem "$budget" -p "Once upon a time" -n 24 --temp 0 --seed 1 >"$log" 2>&1; then
    cat "$log"
    exit 1
fi
cat "$log"
echo
headline "$log"
