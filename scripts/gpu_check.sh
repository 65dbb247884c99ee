#!/usr/bin/env bash
# The GPU check: one command on a machine with one CUDA GPU and tokenprune installed (about 5-8 minutes
# on one H100/H200):
#   1. the CUDA-marked tests (pytest -m cuda; a CUDA test that skips there fails the check), and the
#      official-processor tests (inputs built by tokenprune equal the official processors', which need
#      torchvision: GPU machines usually have it),
#   2. `tokenprune bench select` on CUDA (LLaVA-1.5-7B and Qwen2-VL-7B shapes, bfloat16),
#   3. `tokenprune bench e2e` on the LLaVA-1.5-7B and Qwen2-VL-7B architectures (random weights,
#      bfloat16, sdpa),
# writing everything, labelled with the GPU, torch and transformers versions, to
# reports/bench/gpu_<gpu name>/ (summary.md lists the steps, their times and outcomes).
#
#   bash scripts/gpu_check.sh [--out DIR] [--dry-run]
#
# --dry-run needs no GPU: the same steps on CPU at toy sizes (the test suite runs it), writing to a
# temporary folder unless --out is given. PYTHON picks the interpreter (default: .venv/bin/python
# when there is one, else python3).
set -euo pipefail
cd "$(dirname "$0")/.."

usage() { sed -n '2,17p' "$0" | sed 's/^# \{0,1\}//'; }
DRY=0
OUT=""
while [ $# -gt 0 ]; do
    case "$1" in
        --dry-run) DRY=1 ;;
        --out) [ $# -ge 2 ] || { echo "gpu_check.sh: --out needs a folder" >&2; exit 2; }; OUT=$2; shift ;;
        -h|--help) usage; exit 0 ;;
        *) echo "gpu_check.sh: unknown argument '$1'" >&2; usage >&2; exit 2 ;;
    esac
    shift
done
if [ -z "${PYTHON:-}" ]; then
    if [ -x .venv/bin/python ]; then PYTHON=.venv/bin/python; else PYTHON=python3; fi
fi

# what this machine has: torch, transformers, CUDA and the GPU's name
FACTS=$("$PYTHON" - <<'EOF'
import torch, transformers
ok = torch.cuda.is_available()
name = torch.cuda.get_device_name(0) if ok else "none"
print(torch.__version__, transformers.__version__, int(ok), name.replace(" ", "_"))
EOF
) || { echo "gpu_check.sh: $PYTHON cannot import torch and transformers; install the project first" >&2; exit 2; }
read -r TORCH TRANSFORMERS CUDA_OK GPU <<< "$FACTS"
if [ "$DRY" = 0 ] && [ "$CUDA_OK" != 1 ]; then
    echo "gpu_check.sh: torch $TORCH sees no CUDA device, so there is nothing to check here." >&2
    echo "  Run it on a machine with one CUDA GPU and a CUDA build of torch, or use --dry-run to exercise" >&2
    echo "  the steps on CPU at toy sizes." >&2
    exit 2
fi
SLUG=$(echo "$GPU" | tr '[:upper:]' '[:lower:]' | tr -c 'a-z0-9\n' '-')
if [ -z "$OUT" ]; then
    if [ "$DRY" = 1 ]; then OUT=$(mktemp -d "${TMPDIR:-/tmp}/tokenprune-gpu-check-dry-run.XXXXXX")
    else OUT="reports/bench/gpu_$SLUG"; fi
fi
mkdir -p "$OUT"

if [ "$DRY" = 1 ]; then  # the same commands, on CPU and small enough for the test suite
    DEVICE=cpu
    TESTS=(-m cuda --collect-only -q tests/test_cuda.py)
    OFFICIAL=(--collect-only -q tests/test_models_official_path.py)
    SELECT=(--strategies random --shapes llava-1.5-7b --batches 1 --repeats 1 --warmup 0)
    E2E_ARCHS=(zoo:shapes-llava-144)
    E2E=(--strategies random --budgets 16 --repeats 1 --warmup 0)
else
    DEVICE=cuda
    TESTS=(-m cuda -q -rs)
    OFFICIAL=(-q -rs tests/test_models_official_path.py)
    SELECT=(--batches 1,8 --repeats 10 --warmup 3)
    E2E_ARCHS=(llava-1.5-7b qwen2-vl-7b)
    E2E=(--repeats 5 --warmup 2)
fi

SUMMARY="$OUT/summary.md"
{
    echo "# GPU check"
    echo
    echo "device: $GPU; torch $TORCH; transformers $TRANSFORMERS; $(date -u +%Y-%m-%dT%H:%MZ)"
    [ "$DRY" = 1 ] && echo "dry run: CPU, toy sizes (plumbing only, no GPU numbers)"
    echo
    echo "| step | result | seconds |"
    echo "|---|---|---|"
} > "$SUMMARY"
FAILED=0
START=$SECONDS

step() {  # step NAME COMMAND...: run it, log its output, record the outcome
    local name=$1 began=$SECONDS code=0
    shift
    echo "== $name"
    if "$@" 2>&1 | tee "$OUT/$name.log"; then code=0; else code=${PIPESTATUS[0]}; fi
    local result="ok"
    [ "$code" = 0 ] || { result="FAILED (exit $code)"; FAILED=1; }
    echo "| $name | $result | $((SECONDS - began)) |" >> "$SUMMARY"
    echo "== $name: $result, $((SECONDS - began)) s"
}

TOKENPRUNE_REQUIRE_CUDA=$((1 - DRY)) step cuda_tests "$PYTHON" -m pytest -p no:cacheprovider "${TESTS[@]}"
step official_processor_tests "$PYTHON" -m pytest -p no:cacheprovider "${OFFICIAL[@]}"
step bench_select "$PYTHON" -m tokenprune.cli bench select --devices "$DEVICE" --dtype bfloat16 "${SELECT[@]}" \
    --out "$OUT"
for arch in "${E2E_ARCHS[@]}"; do
    step "bench_e2e_${arch//[:\/]/_}" "$PYTHON" -m tokenprune.cli bench e2e --arch "$arch" --devices "$DEVICE" \
        --dtype bfloat16 "${E2E[@]}" --out "$OUT"
done

TOTAL=$((SECONDS - START))
echo >> "$SUMMARY"
echo "total: $TOTAL s" >> "$SUMMARY"
echo "gpu_check.sh: $([ "$FAILED" = 0 ] && echo "all steps passed" || echo "some steps FAILED"), $TOTAL s; results in $OUT"
exit "$FAILED"
