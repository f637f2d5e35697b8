"""``unmask viz``: pictures of saved traces (animated GIF, decoding-order heatmap or board,
side-by-side comparison). The picture kind follows the ``--out`` suffix."""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:
    from ..cli import add_flag

    p = sub.add_parser(
        "viz",
        help="draw saved traces: .gif animation of the canvas filling, .png decoding order, or a comparison",
        description="TRACE files come from `unmask sample --save_trace T.json`. One trace + .gif: the canvas "
                    "filling step by step. One trace + .png: the decoding order (position vs step, or the "
                    "board for Sudoku). Several traces: side by side (same prompt, different samplers).",
    )
    p.add_argument("traces", nargs="+", metavar="TRACE", help="trace JSON file(s)")
    add_flag(p, "out", required=True, help="output picture: .gif, or .png/.svg/.pdf/.jpg")
    add_flag(p, "labels", nargs="+", default=None, help="one title per trace (default: sampler field or file name)")
    add_flag(p, "model_name_or_path", default=None,
             help="tokenizer used to write token text in the cells (default: task characters or token ids)")
    add_flag(p, "grid", default="auto", help="auto (Sudoku boards drawn as 9x9), 0 (always text) or a board side")
    add_flag(p, "columns", type=int, default=16, help="text cells per row in the GIF")
    add_flag(p, "max_frames", type=int, default=200, help="GIF frames after the first; longer decodings group steps")
    add_flag(p, "frame_ms", type=int, default=150, help="GIF milliseconds per frame (the last frame is held 2 s)")
    add_flag(p, "dpi", type=int, default=100, help="static pictures: pixels per inch")
    p.set_defaults(func=cmd_viz)


def cmd_viz(args: argparse.Namespace) -> int:
    from ..errors import UnmaskError
    from .pictures import render

    if args.columns < 1 or args.dpi < 1 or args.frame_ms < 1:
        raise UnmaskError("--columns, --dpi and --frame_ms must be >= 1")
    info = render(args.traces, args.out, labels=args.labels, model_name_or_path=args.model_name_or_path,
                  grid=args.grid, columns=args.columns, max_frames=args.max_frames, frame_ms=args.frame_ms,
                  dpi=args.dpi)
    w, h = info["size"]
    frames = f", {info['frames']} frames" if info["frames"] > 1 else ""
    print(f"wrote {args.out} ({w}x{h}{frames})")
    return 0
