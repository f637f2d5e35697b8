"""``POST /v1/images/generations`` for ``unmask serve`` with an MMaDA model (``--vq_model_path``).

The body follows OpenAI's images API (``prompt``, ``n``, ``size``, ``response_format:
"b64_json"``) plus unmask's settings as top-level keys (``sampler``, ``guidance_scale``,
``steps``, ``seed``, ...). As in the text endpoints, unknown keys are refused (400) so that a typo
never silently changes what is generated. Requests run one at a time in a worker thread (the
event loop stays free for the text endpoints and for health checks).
"""

from __future__ import annotations

import asyncio
import base64
import io
import json
import math
import time
from typing import Any

from ..errors import UnmaskError

#: body key -> (JSON type, check); the t2i settings mirror ``unmask t2i``'s flags
FIELDS: dict[str, tuple[type | tuple[type, ...], Any]] = {
    "prompt": (str, None), "model": (str, None), "n": (int, (1, 16)), "size": (str, None),
    "response_format": (str, None), "user": (str, None),
    "sampler": (str, None), "guidance_scale": ((int, float), (0, 1e6)), "steps": (int, (1, 10_000)),
    "seed": (int, None), "position_temperature": ((int, float), (0, 1e6)), "candidate_number": (int, (1, 256)),
    "threshold": ((int, float), (0, 1)), "max_lookahead_rows": (int, (1, 1 << 20)), "max_text_len": (int, (1, 8192)),
    "compat": (str, None),
}


class ImageRequestError(Exception):
    def __init__(self, message: str, param: str | None = None) -> None:
        super().__init__(message)
        self.param = param


def parse_body(body: Any) -> dict[str, Any]:
    if not isinstance(body, dict):
        raise ImageRequestError("the request body must be a JSON object")
    unknown = sorted(set(body) - set(FIELDS))
    if unknown:
        raise ImageRequestError(f"unknown field(s) {', '.join(unknown)}", unknown[0])
    if not isinstance(body.get("prompt"), str) or not body["prompt"].strip():
        raise ImageRequestError("prompt must be a non-empty string", "prompt")
    out: dict[str, Any] = {}
    for key, value in body.items():
        if value is None:
            continue
        kind, bounds = FIELDS[key]
        if isinstance(value, bool) or not isinstance(value, kind):
            raise ImageRequestError(f"{key} has the wrong type ({type(value).__name__})", key)
        if bounds is not None and (not math.isfinite(value) or not bounds[0] <= value <= bounds[1]):
            raise ImageRequestError(f"{key} must be in [{bounds[0]}, {bounds[1]}], got {value}", key)
        out[key] = value
    if out.get("response_format", "b64_json") != "b64_json":
        raise ImageRequestError("only response_format 'b64_json' is supported (no image hosting)", "response_format")
    return out


def png_b64(image) -> str:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(image.numpy()).save(buf, format="PNG")
    return base64.b64encode(buf.getvalue()).decode("ascii")


def generate_images(session, vq, req: dict[str, Any], max_text_len: int | None = None) -> dict[str, Any]:
    """Run one parsed request (blocking); UnmaskError for values the decoder refuses.
    ``max_text_len``: the served model's text width, used when the request names none."""
    from .images import parse_size
    from .prompting import DEFAULT_MAX_TEXT_LEN
    from .t2i import DEFAULT_GUIDANCE, DEFAULT_STEPS, t2i

    n_img = None
    if "size" in req:
        side = parse_size(req["size"], vq.config.downsample) // vq.config.downsample
        n_img = side * side
    opts = {k: req[k] for k in ("position_temperature", "candidate_number", "threshold") if k in req}
    t0 = time.perf_counter()
    n = req.get("n", 1)
    res = t2i(session.model, vq, [req["prompt"]] * n, req.get("sampler", "maskgit"), tokenizer=session.tokenizer,
              guidance_scale=float(req.get("guidance_scale", DEFAULT_GUIDANCE)), steps=req.get("steps", DEFAULT_STEPS),
              seed=req.get("seed", 0), num_image_tokens=n_img, max_text_len=req.get("max_text_len", max_text_len or DEFAULT_MAX_TEXT_LEN),
              max_lookahead_rows=req.get("max_lookahead_rows"), sampler_options=opts, compat=req.get("compat"))
    return {"created": int(time.time()), "data": [{"b64_json": png_b64(img), "revised_prompt": None} for img in res.images],
            "unmask": {"forwards": res.forwards, "model_rows": res.model_rows,
                       "image_tokens": int(res.codes.shape[1]), "seconds": round(time.perf_counter() - t0, 3)}}


def image_prompt_for(model, vq):
    """The chat-message hook of :class:`~unmask.serve.backend.Backend`: one ``image_url`` (a
    ``data:image/...;base64,`` URL; the server never fetches) goes in front of the templated
    conversation in the reference's understanding layout."""
    from .mmu import mmu_ids

    def image_prompt(urls: list[str], ids: list[int]) -> list[int]:
        if len(urls) != 1:
            raise UnmaskError(f"one image per conversation is supported, got {len(urls)}")
        return mmu_ids(model, vq, decode_data_url(urls[0]), ids)

    return image_prompt


def decode_data_url(url: str):
    """``data:image/png;base64,...`` -> a PIL RGB image (the caller resizes it)."""
    from PIL import Image, UnidentifiedImageError

    if not url.startswith("data:"):
        raise UnmaskError("image_url must be a data: URL (data:image/png;base64,...); the server fetches nothing")
    head, _, payload = url.partition(",")
    if not head.endswith(";base64"):
        raise UnmaskError("image_url data URLs must be base64-encoded")
    try:
        raw = base64.b64decode(payload, validate=True)
        with Image.open(io.BytesIO(raw)) as im:
            return im.convert("RGB")
    except (ValueError, UnidentifiedImageError, OSError) as e:
        raise UnmaskError(f"image_url is not a readable image ({type(e).__name__})") from None


def image_routes(session, vq, name: str, max_text_len: int | None = None) -> list:
    """The Starlette routes to add to the app (empty list when there is no tokenizer).
    ``max_text_len``: the default text width of image prompts (None: MMaDA's 512)."""
    from starlette.requests import Request
    from starlette.responses import JSONResponse
    from starlette.routing import Route

    from .t2i import check_pair

    check_pair(session.model, vq)
    lock = asyncio.Lock()

    def error(status: int, message: str, param: str | None = None) -> JSONResponse:
        return JSONResponse({"error": {"message": message, "type": "invalid_request_error", "param": param,
                                       "code": None}}, status_code=status)

    async def generations(request: Request) -> JSONResponse:
        try:
            body = json.loads(await request.body())
        except (json.JSONDecodeError, UnicodeDecodeError):
            return error(400, "the request body is not valid JSON")
        try:
            req = parse_body(body)
        except ImageRequestError as e:
            return error(400, str(e), e.param)
        if req.get("model") not in (None, name):
            return error(404, f"model {req['model']!r} is not served here; this server serves {name!r}", "model")
        async with lock:
            try:
                out = await asyncio.get_running_loop().run_in_executor(None, generate_images, session, vq, req, max_text_len)
            except UnmaskError as e:
                return error(400, str(e))
        return JSONResponse(out)

    return [Route("/v1/images/generations", generations, methods=["POST"])]
