"""``unmask serve``: an OpenAI-compatible HTTP server for masked diffusion models.

Modules, one job each:

* :mod:`~unmask.serve.schema`: request bodies -> typed, checked fields (400s name the field);
* :mod:`~unmask.serve.backend`: a loaded model seen by the server (prompts -> rows, settings
  validated like the CLI flags, canvases -> text);
* :mod:`~unmask.serve.batcher`: the bounded queue and the worker thread that decodes compatible
  requests together in one engine batch;
* :mod:`~unmask.serve.streaming`: which part of an answer may be streamed yet, SSE framing;
* :mod:`~unmask.serve.formats`: OpenAI response and chunk shapes;
* :mod:`~unmask.serve.app`: the Starlette routes; :mod:`~unmask.serve.commands`: the CLI.

Only ``app`` and ``commands`` (when run) need the ``serve`` extra (starlette, uvicorn).
"""
