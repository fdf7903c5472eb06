#!/usr/bin/env bash
# Record text-only episodes through an OpenAI-compatible endpoint, as one would from an API model:
# serve a model with vLLM's OpenAI server on loopback, play record.yaml's games through it
# (`turngym eval -m openai:NAME@URL`: the endpoint returns text, no token ids or logprobs), stop it.
#   bash examples/offpolicy/record_endpoint.sh MODEL_DIR OUT_DIR [PORT]
#   bash examples/offpolicy/record_endpoint.sh runs/demo/checkpoints/step-000006 evals/offpolicy-text
# Then train on OUT_DIR/episodes.jsonl with gvpo.yaml (the objectives that need logprobs refuse it).
set -euo pipefail
model=${1:?usage: record_endpoint.sh MODEL_DIR OUT_DIR [PORT]}
out=${2:?usage: record_endpoint.sh MODEL_DIR OUT_DIR [PORT]}
port=${3:-8011}
venv=$(dirname "$0")/../../.venv/bin
url=http://127.0.0.1:$port/v1

VLLM_LOGGING_LEVEL=WARNING "$venv/python" -m vllm.entrypoints.openai.api_server --model "$model" \
    --served-model-name policy --host 127.0.0.1 --port "$port" --max-model-len 256 \
    --kv-cache-memory-bytes $((2**30)) --enforce-eager > "$out.server.log" 2>&1 &
server=$!
trap 'kill $server 2>/dev/null; wait $server 2>/dev/null || true' EXIT
for _ in $(seq 180); do
    curl -sf "$url/models" > /dev/null && break
    kill -0 $server 2>/dev/null || { echo "the vLLM server exited; see $out.server.log" >&2; exit 1; }
    sleep 1
done
curl -sf "$url/models" > /dev/null || { echo "the vLLM server did not come up in 180 s" >&2; exit 1; }
"$venv/turngym" eval "$(dirname "$0")/record.yaml" -m "openai:policy@$url" --no-api-key --out "$out"
