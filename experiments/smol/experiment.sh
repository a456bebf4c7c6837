#!/usr/bin/env bash
# The smol experiment (issue 8): does bi-level training help a real judge on real candidates?
#
#   experiments/smol/experiment.sh            # or: make smol
#
# Runs `dvc exp run` with the overrides of presets/smol.yaml once per reweighting (none, domain,
# instance_net; override with REWEIGHTS="none domain"), keeps each run's metrics and log under
# experiments/smol/results/cpu_dvc/<reweight>/, and writes experiments/smol/results/cpu_dvc/report.md (pairwise accuracy before and after
# training, Best-of-3 pass@1, wall time per stage). Stages whose inputs did not change between runs
# (fetch ... pairs) are restored from DVC's run cache, so only train, pairwise and bon rerun.
# params.yaml is restored when the script ends. See docs/smol.md.
set -euo pipefail
cd "$(dirname "$0")/../.."

PY=${PY:-.venv/bin/python}
DVC=${DVC:-.venv/bin/dvc}
PRESET=${PRESET:-presets/smol.yaml}
REWEIGHTS=${REWEIGHTS:-none domain instance_net}
OUT=${OUT:-experiments/smol/results/cpu_dvc}
STAMP=$(date -u +%Y%m%d-%H%M%S)

mapfile -t ARGS < <("$PY" -m daj.presets "$PRESET")
mkdir -p "$OUT"
BACKUP=$(mktemp)
cp params.yaml "$BACKUP"
trap 'cp "$BACKUP" params.yaml; rm -f "$BACKUP"' EXIT

for rw in $REWEIGHTS; do
  # `dvc exp run` leaves the previous run's values in params.yaml; a `+key` override of the preset
  # would then fail ("An item is already at ..."), so every run starts from the original file
  cp "$BACKUP" params.yaml
  dir="$OUT/$rw"
  rm -rf "$dir" && mkdir -p "$dir"
  echo "== smol: reweight=$rw ($(date -u +%H:%M:%S) UTC)"
  start=$(date +%s)
  "$DVC" exp run -n "smol-$rw-$STAMP" "${ARGS[@]}" -S "reweight=$rw" 2>&1 | tee "$dir/run.log"
  echo $(( $(date +%s) - start )) > "$dir/seconds"
  for f in split execute pairs train pairwise bon; do
    if [ -f "metrics/$f.json" ]; then cp "metrics/$f.json" "$dir/"; fi
    # timings and cache counts of the run (logs/, kept apart from the results)
    if [ -f "logs/$f.json" ]; then cp "logs/$f.json" "$dir/$f.run.json"; fi
  done
done

"$PY" -m experiments.smol.report "$OUT" --out "$OUT/report.md"
cat "$OUT/report.md"
