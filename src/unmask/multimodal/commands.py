"""``unmask t2i``: text-to-image with an MMaDA model and its MAGVIT-v2 tokenizer.

    unmask t2i --model_name_or_path MMADA --vq_model_path VQ --prompt "a red apple" --out apple.png
    unmask t2i ... --n 4 --sampler info_gain --out grid.png      # a 2 x 2 grid
    unmask t2i --model_name_or_path tiny-shapes --prompt "two green squares" --out sq.png

A model folder may bring its own tokenizer and settings (``tiny-shapes`` does): a ``vq/``
subfolder is the default ``--vq_model_path``, and ``t2i.json``'s ``max_text_len`` the default
text width (MMaDA-8B's folders have neither: 512, and the tokenizer must be given).

Every sampler of ``unmask sample`` works (``maskgit``, the reference's rule, is the default);
``--save_trace`` writes each image's decoding order.

This module also gives ``unmask sample`` its ``--image`` / ``--vq_model_path`` flags (image
understanding): it adds them to the existing ``sample`` parser and routes runs that pass
``--image`` through :func:`cmd_sample_image`, so ``cli.py`` needs no image code.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path


def register(sub: argparse._SubParsersAction) -> None:
    from ..cli import add_flag, add_model_flags
    from ..options import BY_NAME

    p = sub.add_parser("t2i", help="text-to-image with MMaDA (every sampler; grid for --n > 1)")
    add_model_flags(p)
    for name in ("device", "dtype"):  # the run commands' rows, as flags of this command
        add_flag(p, name, default=BY_NAME[name].default, help=BY_NAME[name].help)
    add_flag(p, "vq_model_path", default=None,
             help="MAGVIT-v2 folder (e.g. showlab/magvitv2; default: the model folder's vq/, as tiny-shapes)")
    add_flag(p, "prompt", required=True, help="what to draw")
    add_flag(p, "out", required=True, help="image file (.png, .jpg, ...); a grid when --n > 1")
    add_flag(p, "n", type=int, default=1, help="images for the prompt (seeds seed, seed+1, ...)")
    add_flag(p, "sampler", default="maskgit",
             help="maskgit (the reference's Gumbel top-k, default) or any unmask sampler: confidence, margin, "
                  "entropy, random, threshold, info_gain, lookum, ...")
    add_flag(p, "guidance_scale", type=float, default=None, help="classifier-free guidance w (default 3.5)")
    add_flag(p, "steps", type=int, default=None, help="decoding steps (default 15)")
    add_flag(p, "seed", type=int, default=0)
    add_flag(p, "size", default=None, help="image side in pixels, N or NxN (default: the model's num_vq_tokens)")
    add_flag(p, "max_text_len", type=int, default=None,
             help="text part of the prompt layout (default: the model's t2i.json, else 512)")
    add_flag(p, "temperature", type=float, default=None, help="token temperature (default 1.0, the reference; 0 = argmax)")
    add_flag(p, "position_temperature", type=float, default=None,
             help="maskgit: initial Gumbel temperature (1.0); info_gain: position temperature (0.1)")
    add_flag(p, "candidate_number", type=int, default=None, help="info_gain/lookum candidates per step")
    add_flag(p, "threshold", type=float, default=None, help="threshold sampler / info_gain bypass")
    add_flag(p, "max_lookahead_rows", type=int, default=None, help="most candidates per lookahead forward")
    add_flag(p, "compat", default=None, help="shared_stream: the reference's one random stream per batch")
    add_flag(p, "save_trace", default=None, help="write the decoding order of every image (JSON) here")
    add_flag(p, "gif", default=None, help="animated GIF of the first image filling in (masked tokens grey)")
    add_flag(p, "json", action="store_true", help="print a JSON summary")
    p.set_defaults(func=cmd_t2i)

    sample = sub.choices.get("sample")
    if sample is not None:
        add_flag(sample, "image", default=None, help="an image to ask about (MMaDA models; needs --vq_model_path)")
        add_flag(sample, "vq_model_path", default=None, help="MAGVIT-v2 folder for --image")
        text_only = sample.get_default("func")
        sample.set_defaults(func=lambda args: (cmd_sample_image if args.image else text_only)(args))
    chat = sub.choices.get("chat")
    if chat is not None:
        add_flag(chat, "vq_model_path", default=None, help="MAGVIT-v2 folder: enables /image PATH (MMaDA models)")
        text_chat = chat.get_default("func")
        chat.set_defaults(func=lambda args: _chat(args, text_chat))
    viz = sub.choices.get("viz")
    if viz is not None:
        add_flag(viz, "vq_model_path", default=None, help="MAGVIT-v2 folder: draws `unmask t2i --save_trace` traces")
        text_viz = viz.get_default("func")
        viz.set_defaults(func=lambda args: (cmd_viz_t2i if _is_t2i_trace(args.traces) else text_viz)(args))
    serve = sub.choices.get("serve")
    if serve is not None:
        add_flag(serve, "vq_model_path", default=None,
                 help="MAGVIT-v2 folder: with an MMaDA model, also serve POST /v1/images/generations")


def _chat(args: argparse.Namespace, text_chat):
    if not getattr(args, "vq_model_path", None):
        return text_chat(args)
    from .chat_image import cmd_chat_image

    return cmd_chat_image(args)


def serve_routes(args: argparse.Namespace, backend) -> list:
    """``unmask serve`` of an MMaDA model with a VQ tokenizer (``--vq_model_path``, else the model
    folder's own ``vq/``): the images endpoint, and images in chat messages. The text width of
    image prompts defaults to the folder's ``t2i.json``, as in ``unmask t2i``: a model trained with
    another width than MMaDA's 512 would otherwise be served a layout it has never seen."""
    model_path = getattr(args, "model_name_or_path", None) or ""
    vq_path = getattr(args, "vq_model_path", None) or (default_vq_path(model_path) if model_path else None)
    if not vq_path:
        return []
    from ..cli import resolve_device
    from ..models.magvitv2 import load_magvitv2
    from .mmu import require_mmada
    from .serve_images import image_prompt_for, image_routes

    require_mmada(backend.session.model)
    vq = load_magvitv2(vq_path, device=resolve_device(args.device))
    backend.image_prompt = image_prompt_for(backend.session.model, vq)
    return image_routes(backend.session, vq, backend.name, max_text_len=model_text_len(model_path) if model_path else None)


def t2i_settings(model_path: str) -> dict:
    """The model folder's ``t2i.json`` (empty when it has none), e.g. ``max_text_len``."""
    from ..errors import UnmaskError
    from ..models.registry import resolve_model_path

    meta = resolve_model_path(model_path) / "t2i.json"
    if not meta.exists():
        return {}
    try:
        d = json.loads(meta.read_text())
        if "max_text_len" in d:
            d["max_text_len"] = int(d["max_text_len"])
        return d
    except (ValueError, TypeError) as e:
        raise UnmaskError(f"{meta} is not a valid t2i.json ({e})") from None


def model_text_len(model_path: str) -> int:
    """The text width a model was trained with: ``t2i.json``'s, else MMaDA's 512."""
    from .prompting import DEFAULT_MAX_TEXT_LEN

    return int(t2i_settings(model_path).get("max_text_len", DEFAULT_MAX_TEXT_LEN))


def default_vq_path(model_path: str) -> str | None:
    """The ``vq/`` subfolder a model folder ships its MAGVIT-v2 tokenizer in, if any (None also
    for a model that does not resolve: loading it reports that)."""
    from ..errors import UnmaskError
    from ..models.registry import resolve_model_path

    try:
        vq = resolve_model_path(model_path) / "vq"
    except UnmaskError:
        return None
    return str(vq) if (vq / "config.json").exists() else None


def load_pair(model_path: str, vq_path: str | None, dtype: str, device: str):
    """Model, tokenizer and VQ tokenizer, checked to belong together. ``vq_path`` None: the
    model folder's own ``vq/``."""
    from ..errors import UnmaskError
    from ..models.magvitv2 import load_magvitv2
    from ..models.registry import from_pretrained
    from .t2i import check_pair

    if not model_path:
        raise UnmaskError("--model_name_or_path is required (an MMaDA folder)")
    model, tok = from_pretrained(model_path, dtype=dtype, device=device)
    check_pair(model, None)
    vq_path = vq_path or default_vq_path(model_path)
    if not vq_path:
        raise UnmaskError(f"{model_path} ships no VQ tokenizer (no vq/ folder): pass --vq_model_path")
    vq = load_magvitv2(vq_path, device=device)
    check_pair(model, vq)
    return model, tok, vq


def cmd_t2i(args: argparse.Namespace) -> int:
    from ..cli import resolve_device
    from ..errors import UnmaskError
    from .images import check_image_path, grid, parse_size, save_image
    from .t2i import DEFAULT_GUIDANCE, DEFAULT_STEPS, t2i

    out = check_image_path(args.out)
    if args.gif is not None and not str(args.gif).lower().endswith(".gif"):
        raise UnmaskError(f"--gif {args.gif}: the file name must end in .gif")
    if args.n < 1:
        raise UnmaskError(f"--n must be >= 1, got {args.n}")
    if args.max_text_len is not None and args.max_text_len < 1:
        raise UnmaskError(f"--max_text_len must be >= 1, got {args.max_text_len}")
    device = resolve_device(args.device)
    model, tok, vq = load_pair(args.model_name_or_path, args.vq_model_path, args.dtype, device)
    n_img = None
    if args.size is not None:
        side = parse_size(args.size, vq.config.downsample) // vq.config.downsample
        n_img = side * side
    opts = {k: getattr(args, k) for k in ("position_temperature", "candidate_number", "threshold")
            if getattr(args, k) is not None}
    t0 = time.perf_counter()
    res = t2i(model, vq, [args.prompt] * args.n, args.sampler, tokenizer=tok,
              guidance_scale=DEFAULT_GUIDANCE if args.guidance_scale is None else args.guidance_scale,
              steps=DEFAULT_STEPS if args.steps is None else args.steps, seed=args.seed, num_image_tokens=n_img,
              max_text_len=args.max_text_len or model_text_len(args.model_name_or_path),
              temperature=1.0 if args.temperature is None else args.temperature,
              max_lookahead_rows=args.max_lookahead_rows, sampler_options=opts, compat=args.compat)
    seconds = time.perf_counter() - t0
    save_image(res.images[0] if args.n == 1 else grid(res.images), out)
    summary = {"out": str(out), "images": args.n, "image_size": list(res.images.shape[1:3]),
               "image_tokens": int(res.codes.shape[1]), "sampler": args.sampler, "forwards": res.forwards,
               "model_rows": res.model_rows, "seconds": round(seconds, 3)}
    if args.save_trace:
        trace = {"kind": "t2i", "prompt": args.prompt, "sampler": args.sampler, "seed": args.seed,
                 "grid": [int(res.codes.shape[1] ** 0.5)] * 2, "codes": res.codes.tolist(), "steps": res.traces}
        Path(args.save_trace).write_text(json.dumps(trace) + "\n")
        summary["trace"] = args.save_trace
    if args.gif:
        from .fill import fill_frames, save_gif

        side = int(round(res.codes.shape[1] ** 0.5))
        frames = fill_frames(vq, res.traces[0], side)
        summary["gif"] = str(save_gif(frames, args.gif, scale=max(1, 256 // frames[0].shape[0])))
    if args.json:
        print(json.dumps(summary))
    else:
        print(f"wrote {out} ({args.n} image(s), {summary['image_size'][0]}x{summary['image_size'][1]} px, "
              f"{summary['image_tokens']} tokens, {res.forwards} forwards, {seconds:.2f} s)")
    return 0


def cmd_sample_image(args: argparse.Namespace) -> int:
    """``unmask sample --image PATH --prompt QUESTION``: the answer about the picture."""
    from ..cli import config_overrides, resolve_device, sampler_options
    from ..errors import UnmaskError
    from ..models.magvitv2 import load_magvitv2
    from ..session import SampleResult, Session
    from .mmu import mmu_ids, require_mmada

    if args.prompt is None:
        raise UnmaskError("--image needs a question: pass --prompt")
    device = resolve_device(args.device)
    session = Session.load(args.model_name_or_path, device=device, dtype=args.dtype)
    require_mmada(session.model)
    if not args.vq_model_path:
        raise UnmaskError("--image needs --vq_model_path (the model's MAGVIT-v2 tokenizer folder)")
    vq = load_magvitv2(args.vq_model_path, device=device)
    ids = mmu_ids(session.model, vq, args.image, session.encode_prompt(args.prompt, args.chat_template))
    out = session.generate_ids([ids], args.sampler, sampler_options(args), config_overrides(args))
    gen = out.generated[0]
    text_ids = [t for t in gen if t < session.model.config.image_offset]  # image codes have no text
    result = SampleResult(text=session.decode(text_ids), token_ids=gen, output=out, prompt_text=args.prompt,
                          extra={"sampler": args.sampler, "image": str(args.image)})
    if args.save_trace:
        session.save_trace(result, args.save_trace)
    if args.json:
        print(json.dumps(result.to_json()))
    else:
        print(result.render())
    return 0


def _is_t2i_trace(paths) -> bool:
    try:
        return any(json.loads(Path(p).read_text()).get("kind") == "t2i" for p in paths)
    except (OSError, ValueError, AttributeError):
        return False  # the text viewer reports unreadable files


def cmd_viz_t2i(args: argparse.Namespace) -> int:
    """``unmask viz T.json --vq_model_path VQ --out fill.gif``: an image trace of ``unmask t2i``.
    ``.gif``: the first image filling in; other picture suffixes: every step side by side."""
    from ..errors import UnmaskError
    from ..models.magvitv2 import load_magvitv2
    from .fill import fill_frames, save_gif
    from .images import check_image_path, grid, save_image

    if len(args.traces) != 1:
        raise UnmaskError("draw one t2i trace at a time")
    if not args.vq_model_path:
        raise UnmaskError("a t2i trace is drawn by decoding its codes: pass --vq_model_path")
    rec = json.loads(Path(args.traces[0]).read_text())
    try:
        side, steps = int(rec["grid"][0]), rec["steps"][0]
    except (KeyError, IndexError, TypeError, ValueError):
        raise UnmaskError(f"{args.traces[0]} is not a complete t2i trace") from None
    vq = load_magvitv2(args.vq_model_path)
    frames = fill_frames(vq, steps, side)
    if str(args.out).lower().endswith(".gif"):
        save_gif(frames, args.out, frame_ms=args.frame_ms, scale=max(1, 256 // frames[0].shape[0]))
    else:
        import torch

        save_image(grid(torch.stack(frames), columns=len(frames)), check_image_path(args.out))
    print(f"wrote {args.out} ({len(frames)} steps)")
    return 0
