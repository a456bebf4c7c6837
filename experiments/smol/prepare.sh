#!/usr/bin/env bash
# The data of the scaled smol experiment (experiments/smol/scale.py): the smol preset's fetch, sample,
# execute and split stages, run once (data/splits, data/candidates/lcb3.jsonl, data/verdicts/lcb3.jsonl).
# params.yaml gets the preset's values for the run and is restored afterwards.
#   experiments/smol/prepare.sh            # EXECUTE_BACKEND=local to force the bubblewrap sandbox
set -euo pipefail
cd "$(dirname "$0")/../.."
PY=${PY:-.venv/bin/python}
BACKUP=$(mktemp)
cp params.yaml "$BACKUP"
trap 'cp "$BACKUP" params.yaml; rm -f "$BACKUP"' EXIT
"$PY" -m daj.presets presets/smol.yaml --apply
if [ -n "${EXECUTE_BACKEND:-}" ]; then
  "$PY" - "$EXECUTE_BACKEND" <<'PYEOF'
import sys, yaml
p = yaml.safe_load(open("params.yaml"))
p["execute"]["backend"] = sys.argv[1]
open("params.yaml", "w").write(yaml.safe_dump(p, sort_keys=False))
PYEOF
fi
"$PY" -m stages.fetch
"$PY" -m stages.sample --policy lcb3
"$PY" -m stages.execute
"$PY" -m stages.split
