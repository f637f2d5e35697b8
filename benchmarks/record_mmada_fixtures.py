"""Record Gen-Verse/MMaDA's own outputs on tiny random weights as fixtures (tests/fixtures/mmada/).

Runs *outside* unmask's test environment, in a virtual environment with what the reference code
imports (its pinned ``transformers==4.46.0`` and ``diffusers==0.32.2``, plus ``einops``,
``jaxtyping``, ``typeguard``, ``omegaconf``; torch from the system), against an exported copy of
the reference repository. Nothing of the reference is copied into this repository: the fixtures
hold settings, ids, output ids/tensors, the weight recipe and the reference commit. How they were
recorded (see docs/multimodal.md, "Reference fixtures")::

    python3 -m venv --system-site-packages /work/refenv_mmada
    /work/refenv_mmada/bin/pip install transformers==4.46.0 diffusers==0.32.2 einops jaxtyping \
        typeguard omegaconf "huggingface_hub<0.27"
    cd /path/to/MMaDA && for f in $(git ls-tree -r --name-only HEAD models training); do
        mkdir -p /tmp/mmada_ref/$(dirname $f); git show HEAD:$f > /tmp/mmada_ref/$f; done
    PYTHONPATH=src:tests /work/refenv_mmada/bin/python benchmarks/record_mmada_fixtures.py \
        --ref /tmp/mmada_ref --commit $(git --git-dir=/path/to/MMaDA/.git rev-parse HEAD)

The weights come from unmask's own recipe (``tests/tiny_mmada.py``), are saved in the official
layout and loaded by the reference's ``MMadaModelLM.from_pretrained``; the MAGVIT-v2 weights are
loaded into the reference's ``VQGANEncoder`` / ``VQGANDecoder`` / ``LFQuantizer`` built at the tiny
sizes (the reference's ``MAGVITv2`` hard-codes the 8192-code sizes). fp32, CPU, one thread.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

import torch

FIXTURE_DIR = Path(__file__).resolve().parent.parent / "tests" / "fixtures" / "mmada"
MAX_TEXT_LEN = 16
SEED = 0
#: (name, text ids, guidance_scale, timesteps, temperature, generator seed)
T2I_CASES = [
    ("cfg3.5-15", [3001, 77, 4120, 999], 3.5, 15, 1.0, 1),
    ("cfg1.5-12", [3001, 77, 4120, 999], 1.5, 12, 1.0, 2),
    ("nocfg-8", [15, 16, 17], 0.0, 8, 1.0, 3),
    ("cfg3.5-6-t0.5", [42] * 20, 3.5, 6, 0.5, 4),  # longer than max_text_len: truncated
    ("cfg2-10-empty", [], 2.0, 10, 1.0, 5),
]
T2I_BATCH_CASE = ("batch2-cfg3.5-8", [[3001, 77], [15, 16, 17, 18]], 3.5, 8, 1.0, 6)
#: (name, text ids after the image, max_new_tokens, steps, block_length)
MMU_CASES = [("mmu-16-8-8", [126080, 500, 501, 502, 126081], 16, 8, 8),
             ("mmu-16-16-4", [126080, 900, 4, 126081], 16, 16, 4)]
LOGIT_COLUMNS_SEED = 123


class StubTokenizer:
    """What ``UniversalPrompting(use_reserved_token=True)`` and ``t2i_generate`` read from the
    LLaDA tokenizer: bos/eos ids and ``len()`` (the image-code offset)."""

    bos_token_id = 126080
    eos_token_id = 126081

    def __len__(self) -> int:
        return 126464

    def convert_tokens_to_ids(self, tokens):
        return [1 for _ in tokens]


def logit_columns(vocab: int, offset: int, codes: int) -> list[int]:
    g = torch.Generator().manual_seed(LOGIT_COLUMNS_SEED)
    text = torch.randperm(offset, generator=g)[:48].tolist()
    return sorted({*text, 126336, 126081, 126084, offset, offset + codes - 1, *range(offset, offset + codes, 7)})


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--ref", required=True, help="exported Gen-Verse/MMaDA tree (models/, training/)")
    ap.add_argument("--commit", required=True, help="the reference commit the tree was exported from")
    ap.add_argument("--out", default=str(FIXTURE_DIR))
    args = ap.parse_args()
    torch.set_num_threads(1)
    from safetensors.torch import save_file
    from tiny_mmada import MAGVIT_TINY, MAGVIT_TINY_REFERENCE_ARGS, tiny_magvit, write_tiny_mmada

    sys.path.insert(0, args.ref)
    from models import LFQuantizer, MAGVITv2, MMadaModelLM, VQGANDecoder, VQGANEncoder  # reference code
    from models.sampling import cosine_schedule
    from training.prompting_utils import UniversalPrompting

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp())
    write_tiny_mmada(tmp, seed=SEED, with_vq=False)
    ref = MMadaModelLM.from_pretrained(str(tmp / "model"), torch_dtype=torch.float32).eval()
    cfg = json.loads((tmp / "model" / "config.json").read_text())
    offset, codes_n, n_img = cfg["llm_vocab_size"], cfg["codebook_size"], cfg["num_vq_tokens"]
    up = UniversalPrompting(StubTokenizer(), max_text_len=MAX_TEXT_LEN, use_reserved_token=True,
                            special_tokens=("<|soi|>", "<|eoi|>", "<|sov|>", "<|eov|>", "<|t2i|>", "<|mmu|>",
                                            "<|t2v|>", "<|v2v|>", "<|lvg|>"), ignore_id=-100, cond_dropout_prob=0.1)
    tensors: dict[str, torch.Tensor] = {}
    record: dict = {
        "reference": {"repository": "Gen-Verse/MMaDA", "commit": args.commit,
                      "functions": ["MMadaModelLM.forward", "MMadaModelLM.t2i_generate", "MMadaModelLM.mmu_generate",
                                    "UniversalPrompting.t2i_gen_prompt", "MAGVITv2.get_code / decode_code"]},
        "torch": torch.__version__,
        "recipe": {"mmada": "tests/tiny_mmada.py:tiny_mmada(seed=0, std=0.6)",
                   "magvit": "tests/tiny_mmada.py:tiny_magvit(seed=0)", "magvit_config": MAGVIT_TINY,
                   "seed": SEED},
        "max_text_len": MAX_TEXT_LEN, "num_vq_tokens": n_img, "codebook_size": codes_n, "image_offset": offset,
    }

    # ---- tokenizer: codes and reconstructions ----
    vq_ours = tiny_magvit(SEED)
    vq = MAGVITv2()
    a = MAGVIT_TINY_REFERENCE_ARGS
    vq.encoder, vq.decoder = VQGANEncoder(**a["encoder"]), VQGANDecoder(**a["decoder"])
    vq.quantize = LFQuantizer(codebook_dim=a["codebook_dim"])
    vq.load_state_dict(vq_ours.state_dict(), strict=True)
    vq.eval()
    g = torch.Generator().manual_seed(11)
    pixels = torch.rand(3, 3, 32, 32, generator=g) * 2 - 1
    with torch.no_grad():
        z = vq.encoder(pixels)
        vq_codes = vq.get_code(pixels)
        recon = vq.decode_code(vq_codes)
        q = vq.quantize(z)  # the training losses of the reference's LFQ
    tensors["vq_pixels"], tensors["vq_codes"], tensors["vq_decoded"] = pixels, vq_codes, recon
    record["vq"] = {"pixels": "torch.rand(3, 3, 32, 32, generator=Generator().manual_seed(11)) * 2 - 1",
                    "min_abs_latent": float(z.abs().min()),
                    "lfq_quantizer_loss": float(q["quantizer_loss"]), "lfq_entropy_loss": float(q["entropy_loss"])}

    # ---- prompts and logits ----
    def t2i_rows(texts, image_tokens):
        return up.t2i_gen_prompt([list(t) for t in texts], image_tokens)

    img_codes = vq_codes[0][:n_img] if vq_codes.shape[1] >= n_img else vq_codes[0].repeat(n_img)[:n_img]
    masked = torch.full((1, n_img), 126336, dtype=torch.long)
    cols = logit_columns(cfg["vocab_size"], offset, codes_n)
    record["logit_columns"] = cols
    ids_a, mask_a = t2i_rows([[3001, 77, 4120]], masked)
    half = torch.where(torch.arange(n_img) % 3 == 0, img_codes + offset, torch.tensor(126336))[None]
    ids_b, mask_b = t2i_rows([[9] * 40], half)  # truncated text, half-known image
    ids_c = torch.tensor([[126089, 126084, *(img_codes + offset).tolist(), 126085, 126080, 500, 501, 126081]])
    record["logits"] = []
    for name, ids, mask in (("t2i-masked", ids_a, mask_a), ("t2i-partial-truncated", ids_b, mask_b),
                            ("mmu", ids_c, None)):
        with torch.no_grad():
            if mask is None:
                logits = ref(ids).logits
            else:
                bias = (mask[:, :, None] & mask[:, None, :]).bool().unsqueeze(1)
                logits = ref(ids, attention_bias=bias).logits
        tensors[f"logits/{name}"] = logits[0][:, cols].contiguous()
        tensors[f"ids/{name}"] = ids
        if mask is not None:
            tensors[f"mask/{name}"] = mask
        record["logits"].append(name)
    tensors["image_codes_for_prompts"] = img_codes

    # ---- t2i_generate ----
    def run_t2i(texts, guidance, steps, temperature, gen_seed):
        masked = torch.full((len(texts), n_img), 126336, dtype=torch.long)
        ids, mask = t2i_rows(texts, masked)
        un_ids, un_mask = t2i_rows([[] for _ in texts], masked)
        with torch.no_grad():
            res = ref.t2i_generate(
                input_ids=ids, uncond_input_ids=un_ids, attention_mask=mask, uncond_attention_mask=un_mask,
                guidance_scale=guidance, temperature=temperature, timesteps=steps, noise_schedule=cosine_schedule,
                generator=torch.Generator().manual_seed(gen_seed), seq_len=n_img, uni_prompting=up,
                resolution=MAX_TEXT_LEN, codebook_size=codes_n, mask_token_id=126336)
        return res.tolist()

    record["t2i"] = []
    for name, text, guidance, steps, temperature, gen_seed in T2I_CASES:
        record["t2i"].append({"name": name, "texts": [text], "guidance_scale": guidance, "steps": steps,
                              "temperature": temperature, "seed": gen_seed,
                              "codes": run_t2i([text], guidance, steps, temperature, gen_seed)})
    name, texts, guidance, steps, temperature, gen_seed = T2I_BATCH_CASE
    record["t2i"].append({"name": name, "texts": texts, "guidance_scale": guidance, "steps": steps,
                          "temperature": temperature, "seed": gen_seed, "shared_stream": True,
                          "codes": run_t2i(texts, guidance, steps, temperature, gen_seed)})

    # ---- mmu_generate (temperature 0: deterministic) ----
    record["mmu"] = []
    for name, text, new, steps, block in MMU_CASES:
        ids = torch.tensor([[126089, 126084, *(img_codes + offset).tolist(), 126085, *text]])
        with torch.no_grad():
            res = ref.mmu_generate(ids, max_new_tokens=new, steps=steps, block_length=block, temperature=0.0)
        record["mmu"].append({"name": name, "prompt": ids[0].tolist(), "max_new_tokens": new, "steps": steps,
                              "block_length": block, "generated": res[0, ids.shape[1]:].tolist()})

    save_file({k: v.clone().contiguous() for k, v in tensors.items()}, str(out / "reference_tensors.safetensors"))
    (out / "reference.json").write_text(json.dumps(record, indent=1) + "\n")
    print(f"wrote {out}: {len(record['t2i'])} t2i cases, {len(record['mmu'])} mmu cases, "
          f"{len(record['logits'])} logit cases, {vq_codes.numel()} VQ codes")


if __name__ == "__main__":
    main()
