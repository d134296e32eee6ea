# bench/gpu.sh's plan picker: from `strata plan --json` on stdin (jansson's
# indent of 2: the chosen "plan" at depth 1, the "alternatives" at depth
# 2), the first plan object, the chosen one then the alternatives in
# order, that matches `want`: "chosen" (the planner's choice), "phase"
# (every group decoded on the CPU, some streamed to the GPU for prompts) or
# a label. Prints {"schema", "plan", "machine"} as `run --plan` reads it;
# exits 1 when no plan matches.
function matches(o) {
    if (want == "chosen") return 1
    if (want == "phase") return o ~ /"prefill_site": "link"/ && o !~ /"site": "(gpu|link)"/
    return index(o, "\"label\": \"" want "\",") > 0
}
function done_obj() {
    inobj = 0
    if (!found && matches(obj)) found = obj "}"
}
/^  "plan": \{$/ { obj = "{\n"; inobj = 1; end = "^  },?$"; next }
/^  "alternatives": \[$/ { alts = 1; next }
/^  "machine": \{$/ { mach = "{\n"; inmach = 1; next }
alts && /^  \],?$/ { alts = 0; next }
alts && /^    \{$/ { obj = "{\n"; inobj = 1; end = "^    },?$"; next }
inmach && /^  \},?$/ { inmach = 0; mach = mach "}"; next }
inmach { mach = mach $0 "\n"; next }
inobj && $0 ~ end { done_obj(); next }
inobj { obj = obj $0 "\n" }
END {
    if (!found || mach == "") exit 1
    printf "{\"schema\": \"strata-plan\", \"plan\": %s, \"machine\": %s}\n", found, mach
}
