"""GRPO for masked diffusion models (unmask.rl): the arithmetic by hand, a few real steps on
tiny-judge, two processes against one, resume after a kill, and bad configurations."""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from safetensors.torch import load_file

from unmask.rl.grpo import group_advantages, grpo_loss
from unmask.rl.logprob import Rollout, one_step_logp, trajectory_logp

ROOT = Path(__file__).resolve().parents[1]
PAD, MASK, A, B = 0, 1, 2, 3
BANNED = torch.tensor([PAD, MASK])


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT / "src"), str(ROOT / "tests"), env.get("PYTHONPATH", "")])
    env["OMP_NUM_THREADS"] = "1"
    return env


# ------------------------------------------------------------------ arithmetic
def test_group_advantage_is_zero_when_a_group_agrees() -> None:
    rewards = torch.tensor([1.0, 1.0, 1.0, 1.0, 0.0, 1.0, 0.0, 1.0])
    adv = group_advantages(rewards, group_size=4)
    assert torch.equal(adv[:4], torch.zeros(4))
    assert torch.allclose(adv[4:], torch.tensor([-1.0, 1.0, -1.0, 1.0]), atol=1e-3)
    centred = group_advantages(rewards, group_size=4, scale=False)
    assert torch.allclose(centred[4:], torch.tensor([-0.5, 0.5, -0.5, 0.5]))


def test_grpo_loss_clips_and_penalises_by_hand() -> None:
    lp = torch.tensor([[math.log(1.5)], [math.log(1.5)]])
    old = torch.zeros(2, 1)
    ref = torch.zeros(2, 1)
    adv = torch.tensor([1.0, -1.0])
    loss, st = grpo_loss(lp, old, ref, adv, torch.ones(2, 1, dtype=torch.bool), clip_eps=0.2, beta=0.0)
    # ratio 1.5: a positive advantage is capped at 1.2, a negative one is not (pessimistic bound)
    assert torch.allclose(loss, torch.tensor([-1.2, 1.5]))
    assert torch.allclose(st["clip_frac"], torch.ones(2))
    loss_kl, st = grpo_loss(lp, old, ref, adv, torch.ones(2, 1, dtype=torch.bool), clip_eps=0.2, beta=0.5)
    kl = 2 / 3 + math.log(1.5) - 1  # k3: exp(ref - lp) - (ref - lp) - 1
    assert torch.allclose(st["kl"], torch.full((2,), kl))
    assert torch.allclose(loss_kl - loss, torch.full((2,), 0.5 * kl))


class _CountingModel(torch.nn.Module):
    """Logits a hand can follow: at a masked cell ``logit(b) - logit(a) = log m`` with ``m`` the
    number of masks in the row, so ``p(b) = m / (m + 1)``."""

    def __init__(self, tilt: float = 0.0) -> None:
        super().__init__()
        self.w = torch.nn.Parameter(torch.zeros(()))
        self.tilt = tilt  # adds tilt * position to logit(b): cells differ in certainty

    def forward(self, ids, attention_mask=None):
        m = (ids == MASK).sum(-1, keepdim=True).float()  # [N, 1]
        logits = torch.zeros(*ids.shape, 4) + self.w
        pos = torch.arange(ids.shape[1]).float()
        logits[..., B] = torch.log(m.clamp_min(1)).expand(ids.shape) + self.tilt * pos
        return SimpleNamespace(logits=logits)


def test_one_step_estimate_by_hand() -> None:
    model = _CountingModel()
    roll = Rollout(initial=[A, MASK, MASK], final=[A, B, A], steps=[([2], [A]), ([1], [B])])
    lp, mask = one_step_logp(model, [roll], MASK, BANNED, p_mask_prompt=0.0, seeds=[0])
    # both completion cells scored from the all-masked canvas (m = 2): p(b) = 2/3, p(a) = 1/3
    assert mask.tolist() == [[True, True]]
    assert torch.allclose(lp, torch.tensor([[math.log(2 / 3), math.log(1 / 3)]]))
    # prompt masking: the given 'a' at index 1 is hidden too (m = 2 instead of 1)
    roll2 = Rollout(initial=[A, A, MASK], final=[A, A, B], steps=[([2], [B])])
    assert float(torch.rand(3, generator=torch.Generator().manual_seed(5))[1]) < 0.99  # precondition
    lp0, _ = one_step_logp(model, [roll2], MASK, BANNED, p_mask_prompt=0.0, seeds=[5])
    lp1, _ = one_step_logp(model, [roll2], MASK, BANNED, p_mask_prompt=0.99, seeds=[5])
    assert torch.allclose(lp0, torch.tensor([[math.log(1 / 2)]]))
    assert torch.allclose(lp1, torch.tensor([[math.log(2 / 3)]]))


def test_trajectory_estimate_by_hand() -> None:
    model = _CountingModel()
    # step 0 writes b at cell 2 (m = 2: p = 2/3); step 1 writes a at cell 1 (m = 1: p = 1/2)
    roll = Rollout(initial=[A, MASK, MASK], final=[A, A, B], steps=[([2], [B]), ([1], [A])])
    lp, _, _ = trajectory_logp(model, [roll], MASK, BANNED, temperature=1.0, select=False)
    assert torch.allclose(lp, torch.tensor([[math.log(2 / 3), math.log(1 / 2)]]))
    # order term at step 0: cell 1's own draw must be less confident than 2/3: only 'a' (1/3) is
    lp_sel, _, _ = trajectory_logp(model, [roll], MASK, BANNED, temperature=1.0, select=True)
    assert torch.allclose(lp_sel, torch.tensor([[math.log(2 / 3) + math.log(1 / 3), math.log(1 / 2)]]))
    # a subset of steps keeps the per-step values
    lp_one, m_one, _ = trajectory_logp(model, [roll], MASK, BANNED, steps_per_completion=1, seeds=[3])
    value = float(lp_one[0, 0].detach())
    assert int(m_one.sum()) == 1
    assert min(abs(value - math.log(2 / 3)), abs(value - math.log(1 / 2))) < 1e-6


def test_soft_order_estimate_by_hand() -> None:
    """Exploring confidence rollouts: the chosen cell's chance is a softmax of max prob / tau."""
    model = _CountingModel(tilt=math.log(2))
    # m = 2: cell 1 has p(b) = 4/5, cell 2 has p(b) = 8/9; the rollout writes cell 2 first, then cell 1
    roll = Rollout(initial=[A, MASK, MASK], final=[A, B, B], steps=[([2], [B]), ([1], [B])])
    tau = 0.5
    lp, _, _ = trajectory_logp(model, [roll], MASK, BANNED, position_temperature=tau)
    s1, s2 = (4 / 5) / tau, (8 / 9) / tau
    pick2 = s2 - math.log(math.exp(s1) + math.exp(s2))
    # step 1: m = 1, cell 1 alone: p(b) = 2/3 (logit log 1 + log 2), certain choice
    expected = torch.tensor([[math.log(8 / 9) + pick2, math.log(2 / 3)]])
    assert torch.allclose(lp, expected, atol=1e-6)
    # the token part alone (what --kl_order false anchors): the same steps without the order term
    _, _, tokens = trajectory_logp(model, [roll], MASK, BANNED, position_temperature=tau, with_tokens=True)
    assert torch.allclose(tokens, torch.tensor([[math.log(8 / 9), math.log(2 / 3)]]), atol=1e-6)
    # and the gradient reaches the model (the order term is differentiable)
    lp.sum().backward()
    assert model.w.grad is not None


def test_kl_on_the_tokens_alone_leaves_the_surrogate_on_the_whole_estimate() -> None:
    """--kl_order false: the ratio (and so the advantage term) uses tokens + order, the k3 KL
    compares only the tokens' log-probs with the reference's."""
    logp = torch.tensor([[-1.0, -2.0]], requires_grad=True)
    tokens = torch.tensor([[-0.5, -0.25]], requires_grad=True)
    ref = torch.tensor([[-0.25, -0.25]])
    adv, mask = torch.tensor([1.0]), torch.ones(1, 2, dtype=torch.bool)
    loss, st = grpo_loss(logp, logp.detach(), ref, adv, mask, 0.2, 0.5, kl_logp=tokens)
    d = torch.tensor([0.25, 0.0])  # ref - tokens
    kl = (torch.exp(d) - d - 1).mean()
    assert torch.allclose(loss, -1.0 + 0.5 * kl) and torch.allclose(st["kl"], kl)
    loss.sum().backward()
    assert torch.allclose(logp.grad, torch.tensor([[-0.5, -0.5]]))  # d(-rho A)/d logp / units
    assert torch.allclose(tokens.grad, 0.5 * (1 - torch.exp(d)) / 2)


def test_position_temperature_schedule_is_linear_and_a_function_of_the_step(tmp_path: Path) -> None:
    from unmask.errors import UnmaskError

    cfg = _cfg(tmp_path, estimator="trajectory", position_temperature=0.4, position_temperature_final=0.1,
               max_steps=4)
    assert [round(cfg.tau_at(s), 6) for s in range(4)] == [0.4, 0.3, 0.2, 0.1]
    assert _cfg(tmp_path, estimator="trajectory", position_temperature=0.4).tau_at(3) == 0.4  # constant
    with pytest.raises(UnmaskError, match="position_temperature_final"):
        _cfg(tmp_path, estimator="trajectory", position_temperature_final=0.1).check()
    with pytest.raises(UnmaskError, match="--device for rl"):
        _cfg(tmp_path, device="cuda:1").check()


def test_lr_schedule_is_linear_and_a_function_of_the_step(tmp_path: Path) -> None:
    cfg = _cfg(tmp_path, lr=4e-4, lr_final=1e-4, max_steps=4)
    assert [round(cfg.lr_at(s), 10) for s in range(4)] == [4e-4, 3e-4, 2e-4, 1e-4]
    assert _cfg(tmp_path, lr=4e-4, max_steps=4).lr_at(3) == 4e-4  # constant by default


def test_leftright_rows_keep_the_groups_and_each_rows_seed(tmp_path: Path) -> None:
    """--leftright_rows K: the last K rows of each group are decoded left to right with the seed
    that row has anyway; the other rows are exactly the rollouts of a run without the option."""
    from unmask.decoding import generate
    from unmask.rl.trainer import GRPOTrainer

    plain = GRPOTrainer(_cfg(tmp_path / "a", estimator="trajectory", position_temperature=0.3, temperature=0.7))
    mixed = GRPOTrainer(_cfg(tmp_path / "b", estimator="trajectory", position_temperature=0.3, temperature=0.7,
                             leftright_rows=2))
    items = plain.step_items(0)
    assert mixed.step_items(0) == items
    own_p, seeds_p, rolls_p, comp_p = plain.rollouts(0, items)
    own_m, seeds_m, rolls_m, comp_m = mixed.rollouts(0, items)
    assert own_m == own_p == [0, 0, 0, 0, 1, 1, 1, 1] and seeds_m == seeds_p
    task = mixed.task
    for j, (rp, rm) in enumerate(zip(rolls_p, rolls_m)):
        if j % 4 < 2:  # the policy's rows: unchanged
            assert rm.steps == rp.steps and comp_m[j] == comp_p[j]
            continue
        written = [p for pos, _ in rm.steps for p in pos]
        assert written == sorted(written) and rm.steps != rp.steps  # left to right, in canvas order
        alone = generate(mixed.model, [task.prompt_ids(items[own_m[j]])], "leftright", temperature=0.7,
                         seed=seeds_m[j], max_new_tokens=0, stop_at_eos=False,
                         suppress_token_ids=tuple(task.suppressed_ids()))
        assert task.answer_text(list(alone.sequences[0])) == comp_m[j]  # the row's own seed, as if decoded alone
    # the estimator: with the order term (default) a left-to-right row is scored like any other;
    # with --leftright_order false by its written tokens alone
    full, _, tokens = mixed.unit_logp(mixed.model, rolls_m[2:4], seeds_m[2:4], 0, 0)
    assert not torch.allclose(full, tokens)
    mixed.cfg.leftright_order = False
    mix, _, _ = mixed.unit_logp(mixed.model, rolls_m[2:4], seeds_m[2:4], 0, 0, lr_rows=[False, True])
    assert torch.allclose(mix[0], full[0]) and torch.allclose(mix[1], tokens[1])
    mixed.train()
    rows = [json.loads(ln) for ln in (tmp_path / "b" / "metrics.jsonl").read_text().splitlines()]
    assert all(0 <= r["reward_lr"] <= 1 and math.isfinite(r["loss"]) for r in rows)


def test_soft_confidence_sampler_is_greedy_confidence_at_small_tau() -> None:
    from unmask.rl.sampler import SoftConfidenceSampler

    probs = torch.tensor([[0.5, 0.5], [0.9, 0.1], [0.6, 0.4]])
    view = SimpleNamespace(probs=probs, n=3, k=1, generator=torch.Generator().manual_seed(0))
    assert SoftConfidenceSampler(1e-3).select(view).index.tolist() == [1]
    picks = {int(SoftConfidenceSampler(10.0).select(SimpleNamespace(
        probs=probs, n=3, k=1, generator=torch.Generator().manual_seed(s))).index[0]) for s in range(40)}
    assert picks == {0, 1, 2}  # a warm draw explores every cell


# ------------------------------------------------------------------ real steps
def _cfg(out: Path, **kw):
    from unmask.rl.trainer import RLConfig

    base = dict(model_name_or_path="tiny-judge", out=str(out), group_size=4, prompts_per_step=2, max_steps=2,
                lr=1e-3, reward="rl_reward_helper:filler_first_share", reward_workers=0, save_every=1)
    base.update(kw)
    return RLConfig(**base)


@pytest.mark.parametrize("estimator, tau, extra", [
    ("one_step", 0.0, {}), ("trajectory", 0.0, {}), ("trajectory", 0.1, {}),
    # a tau schedule and a KL on the written tokens only (the judge run's settings)
    ("trajectory", 0.2, {"position_temperature_final": 0.1, "beta": 0.05, "kl_order": False}),
])
def test_a_few_steps_give_finite_losses_and_move_the_weights(tmp_path: Path, estimator: str, tau: float,
                                                             extra: dict) -> None:
    from unmask.models.loading import load_model
    from unmask.models.registry import resolve_model_path
    from unmask.rl.trainer import GRPOTrainer

    before = load_model(resolve_model_path("tiny-judge"), dtype=torch.float32).state_dict()
    trainer = GRPOTrainer(_cfg(tmp_path, estimator=estimator, trajectory_steps=6, position_temperature=tau, **extra))
    out = trainer.train()
    rows = [json.loads(ln) for ln in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [1, 2]
    assert all(math.isfinite(r["loss"]) and math.isfinite(r["grad_norm"]) for r in rows)
    assert rows[0]["zero_adv_groups"] < 2 and rows[0]["grad_norm"] > 0
    after = load_model(out, dtype=torch.float32).state_dict()
    assert max(float((after[k] - before[k]).abs().max()) for k in before) > 1e-3
    assert (out / "task.json").exists() and (out / "tokenizer.json").exists()
    if "position_temperature_final" in extra:
        assert [r["tau"] for r in rows] == [tau, extra["position_temperature_final"]]
        assert rows[1]["kl"] > 0  # the second step's policy differs from the reference


def test_lora_trains_adapters_only_and_exports_merged_weights(tmp_path: Path) -> None:
    from unmask.models.loading import load_model
    from unmask.models.registry import resolve_model_path
    from unmask.rl.trainer import GRPOTrainer

    before = load_model(resolve_model_path("tiny-judge"), dtype=torch.float32).state_dict()
    trainer = GRPOTrainer(_cfg(tmp_path, max_steps=1, lora_rank=4, lr=1e-2))
    trainable = [n for n, p in trainer.model.named_parameters() if p.requires_grad]
    assert trainable and all("lora_" in n for n in trainable)
    out = trainer.train()
    after = load_model(out, dtype=torch.float32).state_dict()
    assert set(after) == set(before)
    moved = [k for k in before if not torch.allclose(after[k], before[k], atol=1e-2)]
    assert moved and all(k.endswith(("q_proj.weight", "k_proj.weight", "v_proj.weight", "attn_out.weight",
                                     "ff_proj.weight", "up_proj.weight", "ff_out.weight")) for k in moved), moved


def _run(args: list[str], out: Path, **kw) -> subprocess.CompletedProcess:
    return subprocess.run(args + ["--out", str(out)], env=_env(), capture_output=True, text=True, timeout=600, **kw)


BASE = ["--model_name_or_path", "tiny-judge", "--group_size", "4", "--prompts_per_step", "2", "--lr", "1e-3",
        "--reward", "rl_reward_helper:filler_first_share", "--reward_workers", "0", "--micro_batch", "3"]


def test_two_processes_agree_with_one(tmp_path: Path) -> None:
    """The same global batch (2 prompts x 4) on one process and on two (one prompt each)."""
    # beta 0 also exercises skipping zero-advantage rows, which must not desynchronise the processes
    args = BASE + ["--max_steps", "2", "--estimator", "trajectory", "--beta", "0"]
    one = _run([sys.executable, "-m", "unmask.rl", *args], tmp_path / "one")
    assert one.returncode == 0, one.stderr
    two = _run([sys.executable, "-m", "accelerate.commands.launch", "--num_processes", "2", "--num_machines", "1",
                "--mixed_precision", "no", "--dynamo_backend", "no", "--cpu", "-m", "unmask.rl", *args], tmp_path / "two")
    assert two.returncode == 0, two.stderr
    m1 = [json.loads(ln) for ln in (tmp_path / "one" / "metrics.jsonl").read_text().splitlines()]
    m2 = [json.loads(ln) for ln in (tmp_path / "two" / "metrics.jsonl").read_text().splitlines()]
    assert [r["reward"] for r in m1] == [r["reward"] for r in m2]
    for a, b in zip(m1, m2):
        assert a["loss"] == pytest.approx(b["loss"], abs=1e-5)
        assert a["grad_norm"] == pytest.approx(b["grad_norm"], rel=1e-4)
    w1 = torch.load(tmp_path / "one" / "checkpoint.pt", weights_only=False)["model"]
    w2 = torch.load(tmp_path / "two" / "checkpoint.pt", weights_only=False)["model"]
    for k in w1:
        assert torch.allclose(w1[k], w2[k], atol=1e-5), k


def test_resume_after_kill_matches_an_uninterrupted_run(tmp_path: Path) -> None:
    args = [sys.executable, "-m", "unmask.rl", *BASE, "--max_steps", "4"]
    full = _run(args, tmp_path / "full")
    assert full.returncode == 0, full.stderr
    out = tmp_path / "killed"
    proc = subprocess.Popen(args + ["--out", str(out)], env=_env(), stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.time() + 300
    while time.time() < deadline:
        ck = out / "checkpoint.pt"
        if ck.exists() and torch.load(ck, weights_only=False)["step"] >= 2:
            break
        time.sleep(0.2)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    step_at_kill = torch.load(out / "checkpoint.pt", weights_only=False)["step"]
    assert 2 <= step_at_kill <= 4
    resumed = _run(args, out)
    assert resumed.returncode == 0, resumed.stderr
    if step_at_kill < 4:
        assert f"resuming from {out / 'checkpoint.pt'} at step {step_at_kill}" in resumed.stderr
    rows = [json.loads(ln)["step"] for ln in (out / "metrics.jsonl").read_text().splitlines()]
    assert rows == [1, 2, 3, 4]
    a = load_file(str(tmp_path / "full" / "model" / "model.safetensors"))
    b = load_file(str(out / "model" / "model.safetensors"))
    assert all(torch.equal(a[k], b[k]) for k in a)


@pytest.mark.parametrize("entry, extra, needle", [
    (["unmask", "rl"], ["--group_size", "1"], "--group_size must be at least 2"),
    (["unmask", "rl"], ["--reward", "no_such_module_xyz:fn"], "cannot import no_such_module_xyz"),
    (["unmask", "rl"], ["--sampler", "confidense"], "unknown sampler 'confidense'"),
    (["unmask.rl"], ["--use_cache", "prefx"], "prefx"),  # a rollout option, through the module entry
    (["unmask.rl"], ["--tau_r", "0.5"], "--lockstep"),  # lockstep region flags need the mode
    (["unmask", "rl"], ["--group_size", "4", "--leftright_rows", "4"], "--leftright_rows must be in [0, group_size - 1] = [0, 3]"),
    (["unmask", "rl"], ["--leftright_rows", "2", "--lockstep", "jacobi"], "--leftright_rows"),
    (["unmask", "rl"], ["--lr_final", "0"], "lr_final"),
])
def test_bad_configs_give_one_error_line(tmp_path: Path, entry: list[str], extra: list[str], needle: str) -> None:
    res = _run([sys.executable, "-m", *entry, "--model_name_or_path", "tiny-judge", *extra], tmp_path / "x")
    assert res.returncode == 2
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and needle in lines[0], res.stderr


def test_help_documents_every_flag() -> None:
    res = subprocess.run([sys.executable, "-m", "unmask", "rl", "--help"], env=_env(), capture_output=True, text=True)
    assert res.returncode == 0
    from unmask.rl.trainer import RLConfig

    for name in set(RLConfig.__dataclass_fields__) - {"sampler_options", "decoding"}:
        assert f"--{name}" in res.stdout, name
    from unmask.options import options_for

    for o in options_for("rl"):  # the option table's rows (sampler options, generation fields)
        assert f"--{o.name}" in res.stdout, o.name
    assert "--preset" in res.stdout and "--config" in res.stdout


def test_rollout_settings_come_through_the_option_table(tmp_path: Path) -> None:
    """The decoding rows resolve as in `unmask sample`: flag > key=value > --config > --preset >
    default; sampler rows become sampler options, other generation rows the rollouts' overrides."""
    from unmask.cli import parse_args
    from unmask.rl.commands import ROLLOUT_TEMPERATURE, config_from_args

    base = ["rl", "--model_name_or_path", "tiny-judge", "--out", str(tmp_path)]
    cfg = config_from_args(parse_args(base))
    assert cfg.temperature == ROLLOUT_TEMPERATURE and cfg.sampler == "confidence" and cfg.use_cache == "none"
    assert cfg.decoding == {"schedule": "linear", "eos_penalty": 0.0, "eos_fill": False, "compile": False}  # the rows' defaults
    conf = tmp_path / "c.yaml"
    conf.write_text("sampler: {name: threshold, threshold: 0.8}\ngeneration: {steps: 12, block_size: 5, "
                    "temperature: 0.7}\n")
    cfg = config_from_args(parse_args(base + ["--config", str(conf), "generation.steps=6", "--threshold", "0.9"]))
    assert cfg.sampler == "threshold" and cfg.sampler_options == {"threshold": 0.9}
    assert cfg.decoding["steps"] == 6 and cfg.decoding["block_size"] == 5 and cfg.temperature == 0.7
    # tokens_per_step from a flag replaces the config's step budget (the rows exclude each other)
    cfg = config_from_args(parse_args(base + ["--config", str(conf), "--tokens_per_step", "2"]))
    assert cfg.tokens_per_step == 2 and "steps" not in cfg.decoding
    # --position_temperature is the exploring-confidence draw under confidence, a sampler option otherwise
    cfg = config_from_args(parse_args(base + ["--position_temperature", "0.3", "--estimator", "trajectory"]))
    assert cfg.position_temperature == 0.3 and cfg.sampler_options == {}
    cfg = config_from_args(parse_args(base + ["--sampler", "info_gain", "--position_temperature", "0.3"]))
    assert cfg.position_temperature == 0.0 and cfg.sampler_options == {"position_temperature": 0.3}


class _FakeWandbRun:
    def __init__(self, calls: list, **kw) -> None:
        self.calls = calls
        calls.append(("init", kw))

    def log(self, row, step=None) -> None:
        self.calls.append(("log", step, dict(row)))

    def finish(self) -> None:
        self.calls.append(("finish",))


def test_wandb_logs_every_step_beside_metrics_jsonl_and_resumes_the_same_run(tmp_path: Path, monkeypatch) -> None:
    """--wandb goes through unmask.tracking (as eval does): one logged step per metrics row, and a
    resumed training continues the W&B run it started."""
    import types

    from unmask.rl.trainer import GRPOTrainer

    calls: list = []
    fake = types.ModuleType("wandb")
    fake.init = lambda **kw: _FakeWandbRun(calls, **kw)
    for max_steps in (1, 2):
        trainer = GRPOTrainer(_cfg(tmp_path, max_steps=max_steps, beta=0, wandb=True, wandb_project="proj"))
        with monkeypatch.context() as m:  # only the run sees it (accelerate probes for a real wandb)
            m.setitem(sys.modules, "wandb", fake)
            trainer.train()
    rows = [json.loads(ln) for ln in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    inits = [c[1] for c in calls if c[0] == "init"]
    logs = [c for c in calls if c[0] == "log"]
    assert len(inits) == 2 and inits[0]["id"] == inits[1]["id"] and inits[1]["resume"] == "allow"
    assert inits[0]["project"] == "proj" and inits[0]["config"]["group_size"] == 4
    assert [c[1] for c in logs] == [r["step"] for r in rows] == [1, 2]
    assert logs[1][2]["reward"] == rows[1]["reward"] and "rollout_s" in logs[1][2]
    assert [c[0] for c in calls].count("finish") == 2


def test_lockstep_rollouts_keep_the_answer_until_the_reasoning_is_written(tmp_path: Path) -> None:
    """--lockstep (the option table's rows, read as `unmask sample --lockstep` reads them) decodes
    the rollouts in lockstep over the task's R/A regions: with answer_after 1.0 no answer cell is
    committed before the step that writes the last reasoning cell, and the step still trains."""
    from unmask.cli import parse_args
    from unmask.rl.commands import config_from_args
    from unmask.rl.trainer import GRPOTrainer

    args = parse_args(["rl", "--model_name_or_path", "tiny-judge", "--out", str(tmp_path), "--group_size", "2",
                       "--prompts_per_step", "2", "--max_steps", "1", "--reward_workers", "0", "--beta", "0",
                       "--reward", "rl_reward_helper:filler_first_share", "--estimator", "trajectory",
                       "--trajectory_steps", "3", "--lockstep", "gauss_seidel", "decode.answer_after=1.0"])
    cfg = config_from_args(args)
    assert cfg.lockstep["mode"] == "gauss_seidel" and cfg.lockstep["answer_after"] == 1.0
    assert not cfg.use_order_term()
    trainer = GRPOTrainer(cfg)
    items = trainer.step_items(0)
    _, _, rolls, _ = trainer.rollouts(0, items)
    regions = trainer.task.regions(items[0])
    r_lo, r_hi = regions["R"]
    a_lo, a_hi = regions["A"]
    for roll in rolls[:2]:  # the first prompt's group
        step_of = {p: s for s, (pos, _) in enumerate(roll.steps) for p in pos}
        last_r = max(step_of[p] for p in range(r_lo, r_hi))
        first_a = min(step_of[p] for p in range(a_lo, a_hi))
        # gauss_seidel commits R, re-runs the model and commits A within one trace step
        assert first_a >= last_r and first_a > 0, (first_a, last_r)
    trainer.train()
    row = json.loads((tmp_path / "metrics.jsonl").read_text().splitlines()[0])
    assert row["premature"] == 0.0 and math.isfinite(row["loss"])
