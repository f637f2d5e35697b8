"""Trainer: the objective learns, resume is bit-exact, and the exported folder is self-describing."""

from __future__ import annotations

import json
import random
from pathlib import Path

import torch

from unmask.models.loading import load_model
from unmask.tasks.synthetic import get_task, task_from_json
from unmask.tokenizer import load_tokenizer
from unmask.train.trainer import (
    apply_noise,
    apply_noise_discrete,
    diffusion_loss,
    lr_at,
    main,
    make_batch,
    make_model,
    step_generators,
)

TINY = ["--n_layers", "2", "--d_model", "32", "--n_heads", "2", "--batch_size", "16", "--threads", "1",
        "--lr", "3e-3", "--warmup_steps", "2", "--log_every", "5", "--eval_every", "10", "--eval_size", "32",
        "--decode_eval", "16", "--ckpt_minutes", "100"]


def _heldout_loss(task, state: dict[str, torch.Tensor] | None) -> float:
    model = make_model(task, 2, 32, 2, None, seed=0)
    if state is not None:
        model.load_state_dict(state)
    rng, gen = step_generators(12345, 0)
    ids, target = make_batch(task, rng, 64)
    with torch.no_grad():
        return float(diffusion_loss(model, ids, target, task.mask_id, gen))


def test_noise_masks_only_targets_and_at_least_one() -> None:
    task = get_task("sudoku")
    ids, target = make_batch(task, random.Random(0), 32)
    gen = torch.Generator().manual_seed(0)
    noisy, masked = apply_noise(ids, target, torch.full((32,), 1e-6), task.mask_id, gen)
    assert not bool((masked & ~target).any())
    assert masked.sum(dim=1).tolist() == [1] * 32  # tiny t: exactly the forced one
    assert bool((noisy[masked] == task.mask_id).all()) and bool((noisy[~masked] == ids[~masked]).all())
    _, masked = apply_noise(ids, target, torch.ones(32), task.mask_id, gen)
    assert bool((masked == target).all())


def test_discrete_noise_counts_and_weights() -> None:
    task = get_task("sudoku")
    ids, target = make_batch(task, random.Random(1), 64)
    gen = torch.Generator().manual_seed(1)
    noisy, masked, t = apply_noise_discrete(ids, target, task.mask_id, gen)
    n, k = target.sum(dim=1), masked.sum(dim=1)
    assert not bool((masked & ~target).any())
    assert bool((k >= 1).all()) and bool((k <= n).all())
    assert torch.allclose(t, k.float() / n.float())
    assert bool((noisy[masked] == task.mask_id).all()) and bool((noisy[~masked] == ids[~masked]).all())
    # k is spread over 1..n: across many rows both small and large mask ratios occur
    _, _, t_many = apply_noise_discrete(*make_batch(task, random.Random(2), 512), task.mask_id, gen)
    assert float(t_many.min()) < 0.1 and float(t_many.max()) > 0.9


def test_continuous_objective_runs() -> None:
    task = get_task("multiply")
    model = make_model(task, 1, 16, 2, None, seed=0)
    rng, gen = step_generators(0, 0)
    ids, target = make_batch(task, rng, 8)
    loss = diffusion_loss(model, ids, target, task.mask_id, gen, objective="continuous")
    assert torch.isfinite(loss) and float(loss.detach()) > 0


def test_schedule() -> None:
    assert lr_at(0, 1.0, 10, 100) == 0.1
    assert lr_at(9, 1.0, 10, 100) == 1.0
    assert abs(lr_at(100, 1.0, 10, 100) - 0.1) < 1e-12
    assert abs(lr_at(500, 1.0, 10, 100) - 0.1) < 1e-12  # held at the floor past max_steps
    assert lr_at(50, 1.0, 10, 100) > lr_at(60, 1.0, 10, 100)


def test_training_lowers_loss_and_resume_is_exact(tmp_path: Path) -> None:
    task = get_task("multiply")
    a, b = tmp_path / "straight", tmp_path / "resumed"
    common = ["--task", "multiply", *TINY, "--max_steps", "20"]
    assert main([*common, "--out", str(a)]) == 0
    assert main([*common, "--out", str(b), "--stop_at_step", "10"]) == 0
    mid = torch.load(b / "ckpt.pt", weights_only=False)
    assert mid["step"] == 10
    assert main(["--out", str(b), "--resume", "--threads", "1"]) == 0

    ca = torch.load(a / "ckpt.pt", weights_only=False)
    cb = torch.load(b / "ckpt.pt", weights_only=False)
    assert ca["step"] == cb["step"] == 20
    for k, v in ca["model"].items():
        assert torch.equal(v, cb["model"][k]), k
    # the optimizer moments match too, so a further resume would also agree
    sa, sb = ca["optimizer"]["state"], cb["optimizer"]["state"]
    assert all(torch.equal(sa[i]["exp_avg_sq"], sb[i]["exp_avg_sq"]) for i in sa)

    # the loss went down on data neither run saw
    before, after = _heldout_loss(task, None), _heldout_loss(task, ca["model"])
    assert after < before - 0.3, (before, after)

    # logs: the resumed run's log has the same steps as the straight one, no duplicates
    rows_a = [json.loads(x) for x in (a / "log.jsonl").read_text().splitlines()]
    rows_b = [json.loads(x) for x in (b / "log.jsonl").read_text().splitlines()]
    key = [(r["kind"], r["step"]) for r in rows_a]
    assert key == [(r["kind"], r["step"]) for r in rows_b]
    train_a = [r["loss"] for r in rows_a if r["kind"] == "train"]
    assert train_a == [r["loss"] for r in rows_b if r["kind"] == "train"]
    assert any("decode_correct" in r for r in rows_a if r["kind"] == "eval")
    assert (a / "loss.png").stat().st_size > 1000


def test_export_folder_loads(tmp_path: Path) -> None:
    out = tmp_path / "sat"
    argv = ["--task", "nae_sat", "--task_param", "n=6", "--task_param", "p=10", "--task_param", "seed=4",
            *TINY, "--max_steps", "3", "--decode_eval", "4", "--out", str(out)]
    assert main(argv) == 0
    folder = out / "model"
    names = {p.name for p in folder.iterdir()}
    assert {"config.json", "model.safetensors", "tokenizer.json", "task.json", "MODEL_CARD.md"} <= names
    info = json.loads((folder / "task.json").read_text())
    task = task_from_json(info)
    assert (task.n, task.p, task.triple_seed) == (6, 10, 4)
    model = load_model(folder, dtype="auto", device="cpu")
    assert model.dtype == torch.float32  # stored bf16 (small), upcast on a CPU
    from safetensors import safe_open

    with safe_open(str(folder / "model.safetensors"), framework="pt") as fh:
        assert all(fh.get_tensor(k).dtype == torch.bfloat16 for k in fh.keys())
    assert model.config.max_sequence_length == task.canvas_len == 17
    tok = load_tokenizer(folder)
    assert tok.mask_token_id == model.config.mask_token_id == task.mask_id
    assert tok.encode("0110", add_special_tokens=False) == task.encode_text("0110")
    x = torch.tensor([task.prompt_ids({})])
    assert model(x).logits.shape == (1, 17, len(tok))
    card = (folder / "MODEL_CARD.md").read_text()
    assert "nae_sat" in card and "steps done: 3" in card
    # the checkpoint's saved weights match the exported ones up to bf16 rounding
    ckpt = torch.load(out / "ckpt.pt", weights_only=False)
    for k, v in model.state_dict().items():
        assert torch.equal(v, ckpt["model"][k].to(torch.bfloat16)), k


class _Spy(torch.nn.Module):
    """Records the noisy canvases the loss feeds the model."""

    def __init__(self, inner: torch.nn.Module) -> None:
        super().__init__()
        self.inner = inner
        self.seen: list[torch.Tensor] = []

    def forward(self, x: torch.Tensor):
        self.seen.append(x.clone())
        return self.inner(x)


def test_derived_frac_masks_only_derived_tokens_in_picked_rows() -> None:
    task = get_task("multiply")
    derived = torch.zeros(task.canvas_len, dtype=torch.bool)
    derived[task.derived_positions()] = True
    assert task.derived_positions() == [7, 8, 9, 10]
    spy = _Spy(make_model(task, 1, 16, 2, None, seed=0))
    rng, gen = step_generators(0, 0)
    ids, target = make_batch(task, rng, 256)
    loss = diffusion_loss(spy, ids, target, task.mask_id, gen, derived=derived, derived_frac=0.5)
    assert torch.isfinite(loss)
    masked = spy.seen[0] == task.mask_id
    only_derived = ~(masked & ~derived).any(dim=1)
    factors_hidden = (masked & ~derived).any(dim=1)
    # roughly half the rows keep every factor digit visible; the others mask factor digits freely
    assert 90 < int(only_derived.sum()) < 200
    assert int(factors_hidden.sum()) > 50
    assert bool(masked.any(dim=1).all())  # every row still trains on something


def test_derived_frac_zero_draws_nothing_extra() -> None:
    task = get_task("nae_sat")
    derived = torch.zeros(task.canvas_len, dtype=torch.bool)
    derived[task.derived_positions()] = True
    assert task.derived_positions()[0] == 1 + task.n and len(task.derived_positions()) == task.p
    model = make_model(task, 1, 16, 2, None, seed=0)
    rng, gen_a = step_generators(3, 7)
    ids, target = make_batch(task, rng, 8)
    _, gen_b = step_generators(3, 7)
    with torch.no_grad():
        a = diffusion_loss(model, ids, target, task.mask_id, gen_a)
        b = diffusion_loss(model, ids, target, task.mask_id, gen_b, derived=derived, derived_frac=0.0)
    assert float(a) == float(b)
    assert get_task("sudoku").derived_positions() == []


def test_init_from_a_model_folder(tmp_path: Path, capsys) -> None:
    first = tmp_path / "first"
    assert main(["--task", "multiply", *TINY, "--max_steps", "5", "--out", str(first)]) == 0
    second = tmp_path / "second"
    assert main(["--task", "multiply", *TINY, "--max_steps", "0", "--out", str(second),
                 "--init_from", str(first / "model")]) == 0
    started = torch.load(second / "ckpt.pt", weights_only=False)
    assert started["step"] == 0
    shipped = load_model(first / "model", dtype=torch.float32).state_dict()
    for k, v in shipped.items():
        assert torch.equal(started["model"][k], v), k
    # a different shape is refused with one error line naming the mismatch (exit status 2)
    assert main(["--task", "multiply", *TINY, "--n_layers", "3", "--max_steps", "0",
                 "--out", str(tmp_path / "third"), "--init_from", str(first / "model")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: --init_from") and "shape differs" in err[0]


def test_card_records_the_command_as_typed(tmp_path: Path, monkeypatch) -> None:
    """Through ``unmask train`` the card must say ``unmask train ...`` (not ``... unmask.train train``)."""
    from unmask.cli import main as cli_main

    out = tmp_path / "sat"
    argv = ["train", "--task", "nae_sat", "--task_param", "n=6", "--task_param", "p=10", *TINY,
            "--max_steps", "2", "--decode_eval", "2", "--out", str(out)]
    monkeypatch.setattr("sys.argv", ["/usr/bin/unmask", *argv])
    assert cli_main(argv) == 0
    card = (out / "model" / "MODEL_CARD.md").read_text()
    assert "`unmask train --task nae_sat --task_param n=6" in card
    assert "unmask.train train" not in card
