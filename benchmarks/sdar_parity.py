"""Parity of the native SDAR/TraDo model and block-diffusion decoding with the reference code.

Not part of CI: it needs the two public repositories on disk (read with ``git show``) and a second
virtual environment with the transformers version the reference modeling file was written for::

    python3 -m venv /tmp/sdar/venv && /tmp/sdar/venv/bin/pip install torch==2.13.0 transformers==4.52.4 safetensors
    PYTHONPATH=src OMP_NUM_THREADS=1 python3 benchmarks/sdar_parity.py \\
        --sdar_git /work/.mirror/JetAstra+SDAR/repo --dllmrl_git /work/.mirror/Gen-Verse+dLLM-RL/repo \\
        --venv_python /tmp/sdar/venv/bin/python --work /tmp/sdar/parity

What it does: extracts ``models/sdar/{configuration,modeling}_sdar.py`` (Gen-Verse/dLLM-RL) and
``generate.py`` (JetAstra/SDAR) into the scratch folder (never into this repository), writes tiny
random-weight checkpoints in the official layout, runs the reference in the other environment
(benchmarks/sdar_parity_ref.py) and compares:

1. logits (fp32), full block-causal forward and cached block forward: max |ours - reference|;
2. generations of ``block_diffusion_generate`` at temperature 0 for the four remasking
   strategies over (prompt length, block length, steps) combinations: k of N token-identical,
   with every difference classified.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from collections import defaultdict
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from make_tiny_sdar import write_tiny_sdar  # noqa: E402

from unmask.decoding.engine import generate  # noqa: E402
from unmask.models.loading import load_model  # noqa: E402

OURS = {
    "sequential": ("sequential", {}),
    "low_confidence_static": ("low_confidence_static", {}),
    "low_confidence_dynamic": ("low_confidence_dynamic", {"threshold": 0.85}),
    "entropy_bounded": ("entropy_bounded", {"eb_threshold": 0.35}),
}


def git_show(git_dir: str, path: str) -> str:
    return subprocess.run(["git", "--git-dir", git_dir, "show", f"HEAD:{path}"], check=True,
                          capture_output=True, text=True).stdout


def extract_reference(sdar_git: str, dllmrl_git: str, ref: Path) -> None:
    pkg = ref / "sdar_ref"
    pkg.mkdir(parents=True, exist_ok=True)
    (pkg / "__init__.py").write_text("")
    for name in ("configuration_sdar.py", "modeling_sdar.py"):
        (pkg / name).write_text(git_show(dllmrl_git, f"models/sdar/{name}"))
    gen = git_show(sdar_git, "generate.py")
    (ref / "sdar_generate.py").write_text(gen)
    # entropy_bounded never initialises transfer_index (UnboundLocalError on the first step):
    # the smallest fix, and the fix plus per-position entropies (what the rule intends)
    anchor = "                cumsum = torch.cumsum(ent_sorted, dim=1)\n"
    if anchor not in gen:
        raise SystemExit("generate.py changed: the entropy_bounded anchor line is gone; update the parity script")
    fix = gen.replace(anchor, anchor + "                transfer_index = torch.zeros_like(x0, dtype=torch.bool)\n")
    (ref / "sdar_generate_ebfix.py").write_text(fix)
    old = "                entropies = -(x0_p.clamp_min(eps) * (x0_p.clamp_min(eps)).log()).sum(dim=-1)\n"
    new = ("                _p = F.softmax(logits.float(), dim=-1)\n"
           "                entropies = -(_p * torch.where(_p > 0, _p.log(), torch.zeros_like(_p))).sum(dim=-1)\n")
    if old not in fix:
        raise SystemExit("generate.py changed: the entropy line is gone; update the parity script")
    (ref / "sdar_generate_ebintended.py").write_text(fix.replace(old, new))
    # the loop's top-k may pick non-mask positions once a quota exceeds the masks left and then
    # overwrites them; restricting the transfer to masked positions isolates that quirk
    commit = "            cur_x[transfer_index] = x0[transfer_index]\n"
    if commit not in gen:
        raise SystemExit("generate.py changed: the commit line is gone; update the parity script")
    (ref / "sdar_generate_norewrite.py").write_text(
        gen.replace(commit, "            transfer_index &= mask_index\n" + commit))


def main() -> None:
    ap = argparse.ArgumentParser(description="SDAR parity against the reference code")
    ap.add_argument("--sdar_git", default="/work/.mirror/JetAstra+SDAR/repo")
    ap.add_argument("--dllmrl_git", default="/work/.mirror/Gen-Verse+dLLM-RL/repo")
    ap.add_argument("--venv_python", default="/tmp/sdar/venv/bin/python")
    ap.add_argument("--work", default="/tmp/sdar/parity")
    ap.add_argument("--prompts", type=int, default=3, help="random prompts per (strategy, setting)")
    ap.add_argument("--gen_length", type=int, default=16)
    a = ap.parse_args()
    torch.set_num_threads(1)
    work = Path(a.work)
    ref = work / "ref"
    extract_reference(a.sdar_git, a.dllmrl_git, ref)

    models = {
        "untied": write_tiny_sdar(work / "tiny_untied", hidden=64, layers=2, heads=4, kv_heads=2, head_dim=16, seed=1),
        "tied": write_tiny_sdar(work / "tiny_tied", hidden=64, layers=2, heads=4, kv_heads=1, head_dim=32, tie=True,
                                seed=2),
    }
    settings = [(4, 4), (4, 2), (8, 8), (8, 4), (2, 2), (4, 1)]
    plens = [3, 4, 6, 9]
    g = torch.Generator().manual_seed(0)
    for label, folder in models.items():
        ours = load_model(folder, dtype="float32")
        mask_id = int(ours.config.mask_token_id)
        vocab = int(ours.config.vocab_size)

        def rand_ids(n: int, with_masks: bool = False, vocab: int = vocab, mask_id: int = mask_id) -> list[int]:
            ids = torch.randint(4, vocab, (n,), generator=g)
            if with_masks:
                ids[torch.rand(n, generator=g) < 0.4] = mask_id
            return ids.tolist()

        logit_cases = [(rand_ids(t, with_masks=True), blk) for t in (5, 8, 13, 21) for blk in (2, 4, 8)]
        gen_cases = []
        for strategy in OURS:
            for blk, steps in settings:
                if strategy == "entropy_bounded" and steps < blk:
                    # the reference loop stops after steps + 1 forwards per block; a rule that may
                    # commit one token per step can then leave masks behind (not comparable)
                    continue
                for plen in plens:
                    for _ in range(a.prompts):
                        base = {"prompt": rand_ids(plen), "gen_length": a.gen_length, "block": blk, "steps": steps,
                                "temperature": 0.0, "strategy": strategy, "threshold": 0.85, "eb_threshold": 0.35}
                        variants = [("main", {})]
                        if strategy == "entropy_bounded":
                            variants = [("asis", {"module": "asis"}), ("main", {"module": "ebfix"}),
                                        ("intended", {"module": "ebintended"})]
                        else:
                            variants.append(("with_mask_token", {"exclude_mask": False}))
                            variants.append(("masked_only", {"module": "norewrite"}))
                        for vname, extra in variants:
                            gen_cases.append({**base, **extra, "variant": vname})
        cases_path, out_path = work / f"cases_{label}.pt", work / f"ref_{label}.pt"
        torch.save({"mask_id": mask_id, "logit_cases": logit_cases, "gen_cases": gen_cases}, cases_path)
        subprocess.run([a.venv_python, str(Path(__file__).resolve().parent / "sdar_parity_ref.py"), str(ref),
                        str(folder), str(cases_path), str(out_path)], check=True)
        res = torch.load(out_path)

        # ---- logits
        full_d, cached_d = 0.0, 0.0
        for (ids, blk), rl, rc in zip(logit_cases, res["logits"], res["cached_logits"]):
            x = torch.tensor([ids])
            with torch.no_grad():
                mine = ours(x, block_length=blk).logits[0]
                t = x.shape[1]
                s = ((t - 1) // blk) * blk
                if t - s < 2:  # as the reference side
                    s -= blk
                cache = ours.prefill(x, torch.ones_like(x), s, block_length=blk)
                part = ours.predict(x, torch.ones_like(x), cache=cache, start=s, end=t, block_length=blk).logits[0]
            full_d = max(full_d, float((mine - rl).abs().max()))
            cached_d = max(cached_d, float((part - rc).abs().max()))
        print(f"\n## model {label}: logits fp32 over {len(logit_cases)} canvases (lengths 5-21, block 2/4/8, 40% masks)")
        print(f"max |ours - ref| full block-causal forward: {full_d:.2e}; cached block forward: {cached_d:.2e}")

        # ---- folding the K/V append into the last denoising step (ours only)
        diffs, flips, n_pos = [], 0, 0
        for _ in range(20):
            x = torch.tensor([rand_ids(12)])
            am = torch.ones_like(x)
            seen = x.clone()
            seen[0, 7] = mask_id  # the block [4, 8) as its last denoising step saw it
            with torch.no_grad():
                cache = ours.prefill(x, am, 4)
                exact = ours.extend_cache(x, am, cache, 4, 8)
                folded = ours.extend_cache(seen, am, cache, 4, 8)
                y = x.clone()
                y[0, 8:12] = mask_id
                la = ours.predict(y, am, cache=exact, start=8, end=12).logits
                lb = ours.predict(y, am, cache=folded, start=8, end=12).logits
            diffs.append(float((la - lb).abs().max()))
            flips += int((la.argmax(-1) != lb.argmax(-1)).sum())
            n_pos += 4
        print(f"folding the append into the last step (block 4, 20 canvases): next-block logits differ by up to "
              f"{max(diffs):.3f} (median {sorted(diffs)[len(diffs) // 2]:.3f}); argmax changes at {flips}/{n_pos}")

        # ---- generations
        table: dict[tuple, list[int]] = defaultdict(lambda: [0, 0])
        causes: dict[tuple, dict[str, int]] = defaultdict(lambda: defaultdict(int))
        for case, r in zip(gen_cases, res["generations"]):
            sampler, opts = OURS[case["strategy"]]
            key = (case["strategy"], case["variant"], case["block"], case["steps"])
            table[key][1] += 1
            if "error" in r:
                err = r["error"].split(":")[0]
                if err == "IndexError" and r.get("mask_argmax", 0):
                    err = "IndexError after an argmax of <|MASK|> (the block never fills; step index past the quotas)"
                elif err == "UnboundLocalError":
                    err = "UnboundLocalError (transfer_index never initialised in entropy_bounded)"
                causes[key]["reference error: " + err] += 1
                continue
            out = {}
            for uc in ("dual", "none"):
                o = generate(ours, [case["prompt"]], sampler, max_new_tokens=case["gen_length"],
                             block_size=case["block"], steps=case["steps"], temperature=0.0, stop_at_eos=False,
                             use_cache=uc, **opts)
                out[uc] = o.sequences[0]
            if out["dual"] != out["none"]:
                causes[key]["ours cached != uncached"] += 1
            if out["dual"] == r["tokens"]:
                table[key][0] += 1
                continue
            ref_tokens = r["tokens"]
            plen = len(case["prompt"])
            if r.get("rewrites", 0) and ref_tokens[:plen] != case["prompt"]:
                causes[key]["reference rewrote a prompt token (quota > masks left)"] += 1
            elif r.get("rewrites", 0):
                causes[key]["reference rewrote a decoded token (quota > masks left)"] += 1
            elif r.get("mask_argmax", 0):
                causes[key]["reference argmax was <|MASK|> (the position stays or becomes masked)"] += 1
            elif case.get("variant") == "with_mask_token":
                causes[key]["confidence normalised with <|MASK|> in the vocabulary reorders positions"] += 1
            elif case.get("module") == "ebfix":
                causes[key]["reference entropy is one number per row (sum of -p log p of the sampled tokens)"] += 1
            else:
                causes[key]["unexplained"] += 1
        print("\n| strategy | reference variant | block | steps | identical (k/N) | differences |")
        print("|---|---|---|---|---|---|")
        for key in sorted(table):
            k, n = table[key]
            why = "; ".join(f"{c}: {v}" for c, v in sorted(causes[key].items())) or "-"
            print(f"| {key[0]} | {key[1]} | {key[2]} | {key[3]} | {k}/{n} | {why} |")


if __name__ == "__main__":
    main()
