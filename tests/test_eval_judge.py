"""The LLM judge against a small OpenAI-compatible server on 127.0.0.1 (http.server in a thread)."""

from __future__ import annotations

import json
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from roma.data.schema import make_prompt
from roma.eval.judge import JudgeUnavailableError, OpenAIJudge, judge_messages, parse_verdict


class FakeServer:
    """Replies from a script: each item is (status, body dict or raw str); the last item repeats."""

    def __init__(self, script):
        self.script, self.requests = list(script), []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802 (http.server's naming)
                length = int(self.headers["Content-Length"])
                outer.requests.append({"path": self.path, "auth": self.headers.get("Authorization"),
                                       "body": json.loads(self.rfile.read(length))})
                status, body = outer.script.pop(0) if len(outer.script) > 1 else outer.script[0]
                payload = (body if isinstance(body, str) else json.dumps(body)).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def log_message(self, *args):
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"
        self.thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.httpd.shutdown()
        self.httpd.server_close()


def reply(content):
    return 200, {"id": "x", "object": "chat.completion", "choices": [{"index": 0, "message": {"role": "assistant", "content": content}}]}


EXAMPLE = {"id": "e1", "prompt": make_prompt("Which bar is taller?", ["left", "right"]), "answer": "B",
           "choices": ["left", "right"], "answer_type": "choice", "tolerance": 0.0}


def test_verdict_request_and_parsing():
    with FakeServer([reply('Sure.\n```json\n{"extracted": "B", "correct": true}\n```')]) as server:
        judge = OpenAIJudge(server.url, "Qwen2.5-72B-Instruct", api_key="k3y")
        verdict = judge("<think>right is taller</think>\\boxed{B}", EXAMPLE)
    assert (verdict.extracted, verdict.correct, verdict.judge, verdict.error) == ("B", True, "openai:Qwen2.5-72B-Instruct", None)
    (request,) = server.requests
    assert request["path"] == "/v1/chat/completions" and request["auth"] == "Bearer k3y"
    body = request["body"]
    assert body["model"] == "Qwen2.5-72B-Instruct" and body["temperature"] == 0.0
    user = body["messages"][1]["content"]
    assert "Gold answer: B (right)" in user and "\\boxed{B}" in user and "Options:\nA. left\nB. right" in user
    assert body["messages"] == judge_messages("<think>right is taller</think>\\boxed{B}", EXAMPLE)


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        ('{"extracted": "12", "correct": false}', ("12", False)),
        ('I think {"extracted": null, "correct": "yes"} overall', (None, True)),
        ('{"a": 1} then {"extracted": "C", "correct": 0}', ("C", False)),
        ('"correct": true', (None, True)),
        ("no idea", None),
        ('{"extracted": "C", "correct": "maybe"}', None),
    ],
)
def test_parse_verdict(content, expected):
    assert parse_verdict(content) == expected


def test_unreadable_verdict_scores_wrong_and_keeps_the_reply():
    with FakeServer([reply("I cannot decide.")]) as server:
        verdict = OpenAIJudge(server.url, "m")("\\boxed{B}", EXAMPLE)
    assert verdict.correct is False and verdict.extracted is None
    assert verdict.error == "no verdict in judge reply: 'I cannot decide.'"


def test_failures_are_retried_with_backoff_then_succeed():
    waits = []
    script = [(503, {"error": "busy"}), (429, {"error": "slow down"}), (200, "not json"),
              reply('{"extracted": "A", "correct": false}')]
    with FakeServer(script) as server:
        judge = OpenAIJudge(server.url + "/chat/completions", "m", backoff=0.5, max_retries=5, sleep=waits.append)
        verdict = judge("\\boxed{A}", EXAMPLE)
    assert (verdict.extracted, verdict.correct) == ("A", False)
    assert len(server.requests) == 4 and waits == [0.5, 1.0, 2.0]  # doubled after each failure


def test_permanent_failure_is_a_clear_error():
    waits = []
    with FakeServer([(500, {"error": "down"})]) as server:
        judge = OpenAIJudge(server.url, "m", backoff=1.0, max_retries=3, max_backoff=3.0, sleep=waits.append)
        with pytest.raises(JudgeUnavailableError, match=r"failed 4 time\(s\); last error: HTTP 500 .*rerun the same command to resume"):
            judge("\\boxed{A}", EXAMPLE)
    assert waits == [1.0, 2.0, 3.0] and len(server.requests) == 4  # capped at max_backoff

    with FakeServer([(401, {"error": "bad key"})]) as server:  # refused: no retry
        with pytest.raises(JudgeUnavailableError, match=r"refused the request: HTTP 401"):
            OpenAIJudge(server.url, "m", sleep=waits.append)("\\boxed{A}", EXAMPLE)
    assert len(server.requests) == 1

    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    waits.clear()
    judge = OpenAIJudge(f"http://127.0.0.1:{port}/v1", "m", max_retries=2, backoff=0.1, sleep=waits.append, timeout=5)
    with pytest.raises(JudgeUnavailableError, match=r"failed 3 time\(s\); last error: URLError"):
        judge("\\boxed{A}", EXAMPLE)
    assert waits == [0.1, 0.2]


def test_bad_configuration():
    with pytest.raises(ValueError, match="judge url must start with http:// or https://"):
        OpenAIJudge("localhost:8000", "m")


def test_extract_then_compare_protocol_never_shows_the_gold_answer():
    script = [reply('{"extracted": "B"}'), reply('```json\n{"extracted": "A"}\n```'), reply('{"extracted": null}'),
              reply("The answer is B.")]
    with FakeServer(script) as server:
        judge = OpenAIJudge(server.url, "Qwen2.5-72B-Instruct", protocol="extract")
        verdicts = [judge(f"<think>…</think>\\boxed{{{i}}}", EXAMPLE) for i in range(4)]
    assert judge.name == "openai-extract:Qwen2.5-72B-Instruct+rule"
    # The LLM only extracts; roma.rewards.is_correct decides, as the rule judge does.
    assert [(v.extracted, v.correct, v.error) for v in verdicts[:3]] == [("B", True, None), ("A", False, None),
                                                                         (None, False, None)]
    assert verdicts[3].correct is False and verdicts[3].error.startswith("no extraction in judge reply")
    user = server.requests[0]["body"]["messages"][1]["content"]
    assert "Gold answer" not in user and "Options:\nA. left\nB. right" in user and "\\boxed{0}" in user
    assert server.requests[0]["body"]["messages"][0]["content"].startswith("You read answers")
    with pytest.raises(ValueError, match=r"protocol must be one of \['judge', 'extract'\], got 'vote'"):
        OpenAIJudge("http://localhost:1/v1", "m", protocol="vote")
