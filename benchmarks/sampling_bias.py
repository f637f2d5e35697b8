"""Does a token-sampling scheme bias the draw? (issue 26: measure before changing precision)

One categorical distribution over LLaDA's vocabulary (126,464 logits drawn from N(0, s^2), at
temperature T), sampled N times by each scheme. For each scheme the script prints, next to the
exact value, the empirical mean log-probability of the drawn token (a scheme that lowers the
effective temperature, the known failure of low-precision Gumbel noise, raises it), the share of
draws from the top-10 tokens and the share from outside the top-1000 (the tail that truncated noise
cuts), each with its z-score against the exact value.

Schemes: ``gumbel64`` (the engine's draw before issue 26: float64 uniforms, Gumbel-max),
``gumbel32`` (the same in float32), ``icdf32`` (one float64 uniform per position, inverse CDF over
a float32 softmax accumulated in float64: the engine's draw since issue 26) and ``icdf64``.

    PYTHONPATH=src python benchmarks/sampling_bias.py --draws 4000
"""

from __future__ import annotations

import argparse
import math

import torch


def gumbel(logits: torch.Tensor, t: float, n: int, dtype: torch.dtype, g: torch.Generator) -> torch.Tensor:
    out = []
    for _ in range(0, n, 50):
        m = min(50, n - len(out) * 50)
        u = torch.rand((m, logits.shape[0]), generator=g, dtype=dtype)
        noise = -torch.log(-torch.log(u.clamp_min(torch.finfo(dtype).tiny)))
        out.append((logits.to(dtype) / t + noise).argmax(-1))
    return torch.cat(out)


def icdf(logits: torch.Tensor, t: float, n: int, dtype: torch.dtype, g: torch.Generator) -> torch.Tensor:
    from unmask.decoding.processors import inverse_cdf_draw

    u = torch.rand(n, generator=g, dtype=torch.float64)
    lg = logits.expand(n, -1)
    if dtype == torch.float64:
        lg = lg.double()
    return inverse_cdf_draw(lg, t, u)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--draws", type=int, default=4000)
    ap.add_argument("--vocab", type=int, default=126_464)
    ap.add_argument("--scale", type=float, default=3.0, help="std of the logits")
    ap.add_argument("--temperature", type=float, default=0.7)
    args = ap.parse_args()
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(args.vocab, generator=g) * args.scale
    logp = torch.log_softmax(logits.double() / args.temperature, -1)
    p = logp.exp()
    order = torch.argsort(p, descending=True)
    top10 = torch.zeros(args.vocab, dtype=torch.bool)
    top10[order[:10]] = True
    tail = torch.ones(args.vocab, dtype=torch.bool)
    tail[order[:1000]] = False
    exact = {"mean log p": float((p * logp).sum()), "P(top-10)": float(p[top10].sum()),
             "P(outside top-1000)": float(p[tail].sum())}
    var = {"mean log p": float((p * logp**2).sum()) - exact["mean log p"] ** 2,
           "P(top-10)": exact["P(top-10)"] * (1 - exact["P(top-10)"]),
           "P(outside top-1000)": exact["P(outside top-1000)"] * (1 - exact["P(outside top-1000)"])}
    print(f"V={args.vocab}, logits ~ N(0, {args.scale}^2), T={args.temperature}, {args.draws} draws per scheme")
    print("| scheme | " + " | ".join(f"{k} (exact {v:.4f})" for k, v in exact.items()) + " |")
    print("|---|---|---|---|")
    schemes = {"gumbel64": (gumbel, torch.float64), "gumbel32": (gumbel, torch.float32),
               "icdf32": (icdf, torch.float32), "icdf64": (icdf, torch.float64)}
    for name, (fn, dtype) in schemes.items():
        tok = fn(logits, args.temperature, args.draws, dtype, torch.Generator().manual_seed(1))
        got = {"mean log p": float(logp[tok].mean()), "P(top-10)": float(top10[tok].double().mean()),
               "P(outside top-1000)": float(tail[tok].double().mean())}
        cells = []
        for k, v in got.items():
            z = (v - exact[k]) / math.sqrt(var[k] / args.draws) if var[k] > 0 else float("nan")
            cells.append(f"{v:.4f} (z {z:+.1f})")
        print(f"| {name} | " + " | ".join(cells) + " |", flush=True)


if __name__ == "__main__":
    main()
