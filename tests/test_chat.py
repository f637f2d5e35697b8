"""``unmask chat``: history through the chat template, slash commands, piped (scripted) use,
replies cut at the end-of-turn token."""

from __future__ import annotations

import io
import json
import subprocess
import sys

import pytest

from unmask.chat.repl import ChatRepl, Conversation
from unmask.cli import main
from unmask.session import Session


@pytest.fixture(scope="module")
def llada_session(tiny_llada_dir):
    return Session.load(str(tiny_llada_dir))


def _run(conv: Conversation, text: str, **kw) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    rc = ChatRepl(conv, stdin=io.StringIO(text), stdout=out, stderr=err, **kw).run()
    return rc, out.getvalue(), err.getvalue()


@pytest.mark.slow
def test_pipe_two_turns_second_prompt_holds_first_turn(tiny_llada_dir):
    """The issue's test: drive the real CLI through a pipe; the second prompt must contain the
    first exchange, rendered by the tokenizer's chat template."""
    proc = subprocess.run(
        [sys.executable, "-m", "unmask.cli", "chat", "--model_name_or_path", str(tiny_llada_dir),
         "--max_new_tokens", "6", "--json"],
        input="hello\nhow are you\n", capture_output=True, text=True, timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    turns = [json.loads(line) for line in proc.stdout.splitlines()]
    assert len(turns) == 2
    first, second = turns
    assert first["prompt"] == "<|user|>hello<|eot|><|assistant|>"
    assert second["prompt"] == (first["prompt"] + first["reply"] + "<|eot|>"
                                + "<|user|>how are you<|eot|><|assistant|>")
    assert second["prompt_tokens"] > first["prompt_tokens"]


def test_reply_stops_at_end_of_turn_and_masks_never_show(llada_session):
    tok = llada_session.tokenizer
    eot = tok.convert_tokens_to_ids("<|eot|>")

    def force_eot(step, x, logits):
        logits[:, 3, :] = -1e4
        logits[:, 3, eot] = 1e4  # position 3 of the answer is certain to be the end of turn
        return logits

    conv = Conversation(llada_session, overrides={"max_new_tokens": 10, "logits_hook": force_eot})
    turn = conv.respond("hi")
    assert len(turn.output.generated[0]) == 3
    assert len(turn.reply) <= 3 and "[" not in turn.reply and "<|" not in turn.reply
    assert "░" not in turn.reply
    nxt = tok.decode(conv.prompt_ids("more"), skip_special_tokens=False)
    assert nxt == f"<|user|>hi<|eot|><|assistant|>{turn.reply}<|eot|><|user|>more<|eot|><|assistant|>"


def test_commands_reset_settings_exit_through_main(tiny_llada_dir, monkeypatch, capsys):
    script = "hello\n/settings\n/reset\nagain\n/bogus\n/exit\nnever answered\n"
    monkeypatch.setattr(sys, "stdin", io.StringIO(script))
    rc = main(["chat", "--model-name-or-path", str(tiny_llada_dir), "--max_new_tokens", "5", "--json",
               "--sampler", "margin"])
    captured = capsys.readouterr()
    assert rc == 0
    rows = [json.loads(line) for line in captured.out.splitlines()]
    kinds = [r.get("command", "turn") for r in rows]
    assert kinds == ["turn", "settings", "reset", "turn"]  # nothing after /exit
    settings = rows[1]["settings"]
    assert settings["sampler"] == "margin" and settings["max_new_tokens"] == 5
    assert settings["chat_template"] is True and settings["turns_in_history"] == 1
    assert rows[3]["prompt"] == "<|user|>again<|eot|><|assistant|>"  # history gone after /reset
    assert "unknown command /bogus" in captured.err


def test_plain_output_is_one_reply_per_message_and_visualize_degrades(llada_session):
    conv = Conversation(llada_session, overrides={"max_new_tokens": 4})
    rc, out, err = _run(conv, "one\n\ntwo\n", visualize=False)
    conv2 = Conversation(llada_session, overrides={"max_new_tokens": 4})
    rc2, out2, _ = _run(conv2, "one\n\ntwo\n", visualize=True)  # stdout is a StringIO: no live view
    assert rc == rc2 == 0 and err == ""
    assert out == out2 and "\x1b[" not in out2
    assert len(out.splitlines()) == 2


def test_single_turn_raw_prompts_keep_no_history(llada_session):
    conv = Conversation(llada_session, chat_template=False, overrides={"max_new_tokens": 4})
    rc, out, _ = _run(conv, "abc\ndef\n", json_output=True)
    first, second = (json.loads(line) for line in out.splitlines())
    assert rc == 0
    assert "<|user|>" not in first["prompt"] and "abc" not in second["prompt"]
    assert second["prompt"].endswith("def")


def test_context_overflow_is_one_error_line_and_the_chat_goes_on(llada_session):
    # 256-token context: the first turn fits, the second (a 130-token reply in the history + 130
    # masks) does not; stop tokens are suppressed so the reply cannot end early
    stops = tuple(llada_session.stop_token_ids())
    conv = Conversation(llada_session, overrides={"max_new_tokens": 130, "steps": 2, "suppress_token_ids": stops})
    rc, out, err = _run(conv, "a\nb\n/reset\nc\n", json_output=True)
    assert rc == 2
    assert len(out.splitlines()) == 3  # turn, reset, turn
    assert err.count("\n") == 1 and "exceeds the model's context" in err and "/reset" in err


def test_bad_settings_fail_before_reading_input(tiny_llada_dir, monkeypatch, capsys):
    monkeypatch.setattr(sys, "stdin", io.StringIO("hello\n"))
    assert main(["chat", "--model_name_or_path", str(tiny_llada_dir), "--sampler", "nope"]) == 2
    assert "unknown sampler" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["chat", "--prompt", "x"])  # argparse: chat has no --prompt
    capsys.readouterr()
    assert main(["chat"]) == 2
    assert "needs --model_name_or_path" in capsys.readouterr().err
