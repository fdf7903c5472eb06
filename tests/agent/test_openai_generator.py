"""OpenAIGenerator against vLLM's real OpenAI-compatible server on loopback, and retry behaviour."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from turngym.agent import EndpointAuthError, EndpointError, OpenAIGenerator, SamplingParams, collect_groups

KEY = "test-key-that-must-not-leak"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def vllm_server(tiny_model_dir: Path):
    """`python -m vllm.entrypoints.openai.api_server` serving the tiny model, with an API key."""
    port = _free_port()
    command = [
        sys.executable, "-m", "vllm.entrypoints.openai.api_server", "--model", str(tiny_model_dir),
        "--served-model-name", "tiny", "--host", "127.0.0.1", "--port", str(port), "--api-key", KEY,
        "--max-model-len", "1024", "--kv-cache-memory-bytes", str(2**27), "--enforce-eager",
    ]  # fmt: skip
    env = {**os.environ, "VLLM_LOGGING_LEVEL": "WARNING"}
    env.pop("VLLM_ENABLE_V1_MULTIPROCESSING", None)  # the server runs its engine in its own process
    server = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    url = f"http://127.0.0.1:{port}/v1"
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise RuntimeError(f"vLLM server exited: {server.stderr.read().decode()[-2000:]}")
        try:
            urllib.request.urlopen(urllib.request.Request(f"{url}/models", headers={"Authorization": f"Bearer {KEY}"}))
            break
        except OSError:
            time.sleep(1)
    else:
        server.kill()
        raise RuntimeError("vLLM server did not come up within 180 s")
    yield url
    server.terminate()
    try:
        server.wait(timeout=30)
    except subprocess.TimeoutExpired:
        server.kill()


def test_chat_through_a_real_vllm_server(vllm_server, monkeypatch) -> None:
    monkeypatch.setenv("TURNGYM_TEST_KEY", KEY)
    generator = OpenAIGenerator("tiny", base_url=vllm_server, api_key_env="TURNGYM_TEST_KEY", max_concurrency=4)
    conversations = [[{"role": "user", "content": f"Say a number, {i}"}] for i in range(6)]
    completions = generator.chat(conversations, SamplingParams(temperature=0.0, max_tokens=8))
    assert len(completions) == 6 and all(c.finish_reason in ("stop", "length") for c in completions)
    assert all(isinstance(c.text, str) and c.token_ids == [] for c in completions)
    again = generator.chat(conversations, SamplingParams(temperature=0.0, max_tokens=8))
    assert [c.text for c in again] == [c.text for c in completions]  # greedy: the same replies
    assert KEY not in repr(generator)


def test_collect_groups_evaluates_through_an_endpoint(vllm_server, monkeypatch) -> None:
    monkeypatch.setenv("TURNGYM_TEST_KEY", KEY)
    generator = OpenAIGenerator("tiny", base_url=vllm_server, api_key_env="TURNGYM_TEST_KEY")
    greedy = SamplingParams(temperature=0.0, max_tokens=16)
    groups = collect_groups("turngym/GuessNumber-v0", [0, 1], 2, generator, sampling=greedy, progress=False)
    for group in groups:
        for trajectory in group.trajectories:
            assert trajectory.num_turns == 7 and trajectory.stop_reason == "truncated"  # garbage guesses: all 7 turns
            assert trajectory.token_ids == [] and trajectory.turns[0].feedback
            assert trajectory.reward == pytest.approx(sum(t.reward for t in trajectory.turns))


def test_turngym_eval_through_the_endpoint_writes_a_full_report(vllm_server, tmp_path) -> None:
    """`turngym eval` (CLI, a subprocess) with `openai:MODEL@URL`: every section filled, the key nowhere."""
    suite = tmp_path / "suite.yaml"
    suite.write_text(
        "name: endpoint\nnum_seeds: 2\nepisodes_per_seed: 2\nsampling: {temperature: 1.0, max_tokens: 8}\n"
        "envs: [{id: turngym/GuessNumber-v0, kwargs: {high: 4}, max_turns: 2}, {id: turngym/MathVerify-v0}]\n"
    )
    out = tmp_path / "out"
    env = {**os.environ, "TURNGYM_TEST_KEY": KEY, "COLUMNS": "200"}
    command = [sys.executable, "-m", "turngym", "eval", str(suite), "-m", f"openai:tiny@{vllm_server}",
               "--api-key-env", "TURNGYM_TEST_KEY", "--out", str(out)]  # fmt: skip
    done = subprocess.run(command, capture_output=True, text=True, env=env, cwd=Path(__file__).resolve().parents[2])
    assert done.returncode == 0, done.stderr[-3000:]
    assert "tiny@127.0.0.1" in done.stdout and "turngym/MathVerify-v0" in done.stdout
    report = (out / "report.md").read_text()
    for section in ("## Results", "## Reward components", "## Plots", "## Transcripts", "pass@2"):
        assert section in report
    results = json.loads((out / "report.json").read_text())["results"]
    assert {r["env"] for r in results} == {"turngym/GuessNumber-v0", "turngym/MathVerify-v0"}
    assert all(r["episodes"] == 4 and r["sampled_tokens"] is None for r in results)  # endpoints return no token ids
    for path in out.iterdir():
        assert KEY not in path.read_text(errors="ignore"), path  # the key is never saved


def test_a_wrong_key_is_a_clear_error_without_the_key(vllm_server, monkeypatch) -> None:
    monkeypatch.setenv("TURNGYM_TEST_KEY", "wrong-key")
    generator = OpenAIGenerator("tiny", base_url=vllm_server, api_key_env="TURNGYM_TEST_KEY")
    expected = r"rejected the request \(HTTP 401\): check the key in \$TURNGYM_TEST_KEY"
    with pytest.raises(EndpointAuthError, match=expected) as err:
        generator.chat([[{"role": "user", "content": "hi"}]], SamplingParams(max_tokens=4))
    assert "wrong-key" not in str(err.value)


def test_a_missing_key_is_a_clear_error(monkeypatch) -> None:
    monkeypatch.delenv("TURNGYM_TEST_KEY", raising=False)
    with pytest.raises(EndpointAuthError, match="set the environment variable TURNGYM_TEST_KEY"):
        OpenAIGenerator("tiny", base_url="http://127.0.0.1:9/v1", api_key_env="TURNGYM_TEST_KEY")


class _FlakyHandler(BaseHTTPRequestHandler):
    """Answers 429 then 503 for each conversation, then a valid completion; tracks concurrency."""

    state = {"requests": 0, "in_flight": 0, "max_in_flight": 0, "failures": {}}
    lock = threading.Lock()

    def do_POST(self) -> None:  # noqa: N802 (http.server's naming)
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        key = body["messages"][-1]["content"]
        with self.lock:
            self.state["requests"] += 1
            self.state["in_flight"] += 1
            self.state["max_in_flight"] = max(self.state["max_in_flight"], self.state["in_flight"])
            failures = self.state["failures"].get(key, 0)
            self.state["failures"][key] = failures + 1
        time.sleep(0.05)
        status = [429, 503][failures] if failures < 2 else 200
        message = {"role": "assistant", "content": f"echo {key}"}
        payload = {
            "id": "x", "object": "chat.completion", "created": 0, "model": body["model"],
            "choices": [{"index": 0, "message": message, "finish_reason": "stop"}],
        } if status == 200 else {"error": {"message": "try later"}}  # fmt: skip
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        if status == 429:
            self.send_header("Retry-After", "0.1")
        self.end_headers()
        self.wfile.write(data)
        with self.lock:
            self.state["in_flight"] -= 1

    def log_message(self, *args) -> None:
        pass


def test_retries_on_429_and_5xx_with_bounded_concurrency() -> None:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _FlakyHandler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/v1"
        generator = OpenAIGenerator("m", base_url=url, api_key_env=None, max_concurrency=3, max_retries=3)
        conversations = [[{"role": "user", "content": f"c{i}"}] for i in range(8)]
        completions = generator.chat(conversations, SamplingParams(max_tokens=4))
        assert [c.text for c in completions] == [f"echo c{i}" for i in range(8)]  # order kept
        state = _FlakyHandler.state
        assert state["requests"] == 24  # each conversation: 429, 503, then 200
        assert state["max_in_flight"] <= 3
    finally:
        server.shutdown()


class _AlwaysFailing(BaseHTTPRequestHandler):
    """Answers every request with HTTP 500 and a JSON error."""

    def do_POST(self) -> None:  # noqa: N802 (http.server's naming)
        data = json.dumps({"error": {"message": "the model crashed"}}).encode()
        self.send_response(500)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args) -> None:
        pass


def test_an_unreachable_or_failing_endpoint_is_one_line_naming_the_url() -> None:
    refused = f"http://127.0.0.1:{_free_port()}/v1"  # nothing listens there
    generator = OpenAIGenerator("m", base_url=refused, api_key_env=None, max_retries=1)
    with pytest.raises(EndpointError) as caught:
        generator.chat([[{"role": "user", "content": "hi"}]], SamplingParams(max_tokens=4))
    message = str(caught.value)
    assert f"cannot reach {refused}" in message and "after 2 attempts" in message and "\n" not in message
    assert caught.value.__cause__ is None and caught.value.__suppress_context__  # no chained 400-line traceback

    server = ThreadingHTTPServer(("127.0.0.1", 0), _AlwaysFailing)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/v1"
        generator = OpenAIGenerator("m", base_url=url, api_key_env=None, max_retries=1)
        with pytest.raises(EndpointError, match=rf"{url} answered HTTP 500 for model 'm', after 2 attempts: .*crashed"):
            generator.chat([[{"role": "user", "content": "hi"}]], SamplingParams(max_tokens=4))
    finally:
        server.shutdown()


def test_the_cli_says_which_endpoint_failed_and_how_to_skip_the_key(monkeypatch) -> None:
    from tests.envs.test_cli_envs import turngym

    refused = f"http://127.0.0.1:{_free_port()}/v1"
    args = ("play", "turngym/GuessNumber-v0", "--model", "m", "--base-url", refused, "--max-retries", "0")
    proc = turngym(*args, "--no-api-key")
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    [line] = [line for line in proc.stderr.splitlines() if line.strip()]
    assert line.startswith(f"EndpointError: cannot reach {refused}")
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    proc = turngym(*args, "--api-key-env", "TURNGYM_NO_SUCH_KEY")
    assert proc.returncode == 2 and "set the environment variable TURNGYM_NO_SUCH_KEY" in proc.stderr
    assert "(CLI: --no-api-key)" in proc.stderr
