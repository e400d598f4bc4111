#!/usr/bin/env bash
# Runs inference-perf (config.yml next to this script) against the switchyard gateway.
#
#   bench/inference-perf/run.sh            # uses a gateway on $GATEWAY_URL, else starts `switchyard up` for the run
#   INFERENCE_PERF=/path/to/inference-perf bench/inference-perf/run.sh
#
# Needs Python >= 3.12 (inference-perf's Requires-Python). Install once, e.g.:
#   python3.12 -m venv .venv-inference-perf && .venv-inference-perf/bin/pip install inference-perf
# Reports land in bench/inference-perf/reports/<timestamp>/ (summary_lifecycle_metrics.json, stage_N_…).
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"
gateway="${GATEWAY_URL:-http://127.0.0.1:8080}"
stamp="$(date -u +%Y-%m-%dT%H-%M-%SZ)"
out="$here/reports/$stamp"

ip="${INFERENCE_PERF:-}"
if [[ -z "$ip" ]]; then
  for candidate in "$root/.venv-inference-perf/bin/inference-perf" "$(command -v inference-perf || true)"; do
    if [[ -n "$candidate" && -x "$candidate" ]]; then ip="$candidate"; break; fi
  done
fi
if [[ -z "$ip" ]]; then
  py="$(command -v python3 || true)"
  ver="$([[ -n "$py" ]] && "$py" -c 'import sys; print("%d.%d" % sys.version_info[:2])' || echo none)"
  echo "inference-perf is not installed (python3 here is $ver; inference-perf needs Python >= 3.12)." >&2
  echo "Install it: python3.12 -m venv $root/.venv-inference-perf && $root/.venv-inference-perf/bin/pip install inference-perf" >&2
  exit 2
fi

stack_pid=""
cleanup() {
  if [[ -n "$stack_pid" ]]; then
    kill -TERM "$stack_pid" 2>/dev/null || true
    wait "$stack_pid" 2>/dev/null || true
  fi
}
trap cleanup EXIT INT TERM

if ! curl -s -o /dev/null --max-time 2 "$gateway/v1/models"; then
  [[ -f "$root/dist/cli.js" ]] || (cd "$root" && npm run build --silent)
  stack_dir="$(mktemp -d)"
  echo "starting switchyard up (logs in $stack_dir)"
  node "$root/dist/cli.js" up --dir "$stack_dir" >"$stack_dir/up.log" 2>&1 &
  stack_pid=$!
  for _ in $(seq 1 120); do
    if grep -q "ready in" "$stack_dir/up.log" 2>/dev/null; then break; fi
    if ! kill -0 "$stack_pid" 2>/dev/null; then cat "$stack_dir/up.log" >&2; exit 1; fi
    sleep 0.5
  done
  grep -q "ready in" "$stack_dir/up.log" || { echo "switchyard up did not become ready" >&2; cat "$stack_dir/up.log" >&2; exit 1; }
fi

mkdir -p "$out/tokenizer"
# inference-perf's vLLM client always loads a Hugging Face tokenizer (even for mock data), and this box is offline:
# build a word-level one (one token per whitespace-separated word, the simulator's own unit) with the
# `tokenizers` package inference-perf already depends on.
py="$(dirname "$ip")/python"
[[ -x "$py" ]] || py="python3"
"$py" - "$out/tokenizer" <<'PY'
import json, os, sys
from tokenizers import Tokenizer, models, pre_tokenizers
d = sys.argv[1]
tok = Tokenizer(models.WordLevel(vocab={"[UNK]": 0}, unk_token="[UNK]"))
tok.pre_tokenizer = pre_tokenizers.Whitespace()
tok.save(os.path.join(d, "tokenizer.json"))
with open(os.path.join(d, "tokenizer_config.json"), "w") as f:
    json.dump({"tokenizer_class": "PreTrainedTokenizerFast", "unk_token": "[UNK]", "model_max_length": 1000000}, f)
PY
# The config's relative storage path resolves against the working directory.
(cd "$out" && sed "s#base_url: .*#base_url: $gateway#; s#path: reports#path: .#; s#pretrained_model_name_or_path: .*#pretrained_model_name_or_path: $out/tokenizer#" \
  "$here/config.yml" >config.yml && "$ip" --config_file config.yml)
echo "inference-perf reports in $out"
