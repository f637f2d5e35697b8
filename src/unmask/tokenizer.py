"""Tokenizers: the real ones load through transformers; the built-in tiny models use a
character-level tokenizer saved as a standard ``tokenizer.json``.

The char tokenizer is a plain Hugging Face ``PreTrainedTokenizerFast`` (WordLevel model, one token
per character), so every tool that loads LLaDA's tokenizer loads ours the same way.
"""

from __future__ import annotations

import warnings
from pathlib import Path

from .errors import UnmaskError

PAD, MASK, EOS, BOS = "[PAD]", "[MASK]", "[EOS]", "[BOS]"
USER, ASSISTANT, SYSTEM, EOT = "<|user|>", "<|assistant|>", "<|system|>", "<|eot|>"
SPECIAL_TOKENS = [PAD, MASK, EOS, BOS, USER, ASSISTANT, SYSTEM, EOT]

# A deliberately tiny chat template: role marker, content, end-of-turn marker.
CHAR_CHAT_TEMPLATE = (
    "{% for m in messages %}<|{{ m['role'] }}|>{{ m['content'] }}<|eot|>{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>{% endif %}"
)


def build_char_tokenizer(alphabet: str):
    """A character-level tokenizer over ``alphabet`` plus the special tokens above.

    Ids: the specials first (``[PAD]`` = 0, ``[MASK]`` = 1, ``[EOS]`` = 2, ...), then one id per
    distinct character in the order given. Unknown characters raise at encode time via ``[PAD]``-free
    strictness in :func:`encode_strict` (the fast tokenizer itself maps them to no token)."""
    return _char_tokenizer(
        alphabet, SPECIAL_TOKENS, CHAR_CHAT_TEMPLATE,
        pad_token=PAD, mask_token=MASK, eos_token=EOS, bos_token=BOS,
        additional_special_tokens=[USER, ASSISTANT, SYSTEM, EOT],
    )


def _char_tokenizer(alphabet: str, specials: list[str], chat_template: str, **special_tokens):
    """The WordLevel one-token-per-character tokenizer both builders share: ``specials`` take the
    first ids (the first one, the pad token, also stands for unknown characters), then one id per
    distinct character of ``alphabet`` in order."""
    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {tok: i for i, tok in enumerate(specials)}
    for c in alphabet:
        vocab.setdefault(c, len(vocab))
    tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token=specials[0]))
    tok.pre_tokenizer = pre_tokenizers.Split(Regex("."), behavior="isolated")
    tok.decoder = decoders.Fuse()
    tok.add_special_tokens(specials)
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, **special_tokens, padding_side="left")
    fast.chat_template = chat_template
    return fast


#: Qwen's ChatML template (what SDAR/TraDo/Dream ship, without the tool-calling branches)
CHATML_TEMPLATE = (
    "{% for m in messages %}{{ '<|im_start|>' + m['role'] + '\\n' + m['content'] + '<|im_end|>' + '\\n' }}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)
CHATML_SPECIAL_TOKENS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|MASK|>"]


def build_chatml_char_tokenizer(alphabet: str):
    """A character-level tokenizer with the special tokens and chat template of the Qwen family
    (``<|endoftext|>`` = 0 as EOS/pad, ``<|im_start|>``, ``<|im_end|>``, ``<|MASK|>`` = 3): the
    tiny stand-in for SDAR/TraDo's tokenizer in tests and benchmarks. ``alphabet`` should contain
    ``\\n`` for the template's line breaks."""
    return _char_tokenizer(
        alphabet, CHATML_SPECIAL_TOKENS, CHATML_TEMPLATE,
        pad_token="<|endoftext|>", eos_token="<|endoftext|>", mask_token="<|MASK|>",
        additional_special_tokens=["<|im_start|>", "<|im_end|>"],
    )


def load_tokenizer(folder: str | Path):
    """Load the tokenizer stored beside a checkpoint, offline.

    Dream ships a slow custom tokenizer (vocab.json + merges.txt) that needs remote code; the same
    files load into the standard Qwen2 fast tokenizer, which is what we use then."""
    from transformers import AutoTokenizer

    folder = Path(folder)
    errors = []
    from transformers.utils import logging as hf_logging

    verbosity = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()  # AutoTokenizer warns about our config.json's unknown model_type
    try:
        with warnings.catch_warnings():
            # transformers reads config.json here too, and warns about Dream's `rope_scaling: null`
            # (a field the official Dream config carries and we do not use)
            warnings.filterwarnings("ignore", message=".*rope_scaling.*", category=FutureWarning)
            tok = AutoTokenizer.from_pretrained(str(folder), local_files_only=True, trust_remote_code=False)
    except Exception as e:  # noqa: BLE001 - we try a second loader below and report both
        errors.append(str(e).splitlines()[0] if str(e) else type(e).__name__)
        tok = None
    finally:
        hf_logging.set_verbosity(verbosity)
    if tok is None and (folder / "vocab.json").exists() and (folder / "merges.txt").exists():
        from transformers import Qwen2TokenizerFast

        tok = Qwen2TokenizerFast(vocab_file=str(folder / "vocab.json"), merges_file=str(folder / "merges.txt"))
    if tok is None:
        raise UnmaskError(f"could not load a tokenizer from {folder}: {'; '.join(errors)}")
    tok.padding_side = "left"
    return tok
