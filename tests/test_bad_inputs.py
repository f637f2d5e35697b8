"""Bad input, table-driven: every case must end with exit status 2 and exactly one ``error:``
line on stderr that contains the expected words (never a traceback, a hang or exit 0).

The cases run the CLI's ``main(argv)`` in-process (equivalent to the command, minus the 5 s
interpreter start-up); a few at the end run real subprocesses where the process boundary is what
is being tested (raw invalid UTF-8 bytes in argv, lm-eval's logging, the Dream config warning).
Corrupt checkpoints are built in ``tmp_path`` from the shipped ``tiny-nae-sat`` model.

Placeholders in a case's argv: ``{ck:NAME}`` a checkpoint folder mutated by ``CHECKPOINTS[NAME]``,
``{f:NAME}`` a file with the bytes ``FILES[NAME]``, ``{tmp}`` the test's temporary folder,
``{dir}`` an existing folder, ``{file}`` an existing regular file.
"""

from __future__ import annotations

import io
import json
import math
import os
import re
import shutil
import subprocess
import sys
import warnings
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from unmask.cli import main
from unmask.errors import UnmaskError
from unmask.models.registry import assets_dir

BASE = "tiny-nae-sat"  # the smallest shipped model (0.9 MB): cheap to copy and corrupt
NAE = ["--model_name_or_path", BASE]


# ------------------------------------------------------------------ corrupt checkpoints
def _edit_config(**changes):
    def mutate(folder: Path) -> None:
        cfg = json.loads((folder / "config.json").read_text())
        for k, v in changes.items():
            if v is _DELETE:
                cfg.pop(k, None)
            else:
                cfg[k] = v
        (folder / "config.json").write_text(json.dumps(cfg))
    return mutate


_DELETE = object()


def _write(name: str, data: bytes):
    def mutate(folder: Path) -> None:
        (folder / name).write_bytes(data)
    return mutate


def _weights(fn):
    def mutate(folder: Path) -> None:
        f = folder / "model.safetensors"
        tensors = load_file(str(f))
        fn(tensors)
        save_file(tensors, str(f))
    return mutate


def _first_weight(tensors):
    return sorted(k for k, v in tensors.items() if v.dim() == 2)[0]


def _to_int32(tensors):
    k = _first_weight(tensors)
    tensors[k] = tensors[k].float().round().to(torch.int32)


def _poison(value: float):
    def fn(tensors):
        for k in tensors:
            tensors[k] = tensors[k].float()
            if tensors[k].dim() == 2:
                tensors[k][0, 0] = value
    return fn


def _truncate(folder: Path) -> None:
    f = folder / "model.safetensors"
    f.write_bytes(f.read_bytes()[: f.stat().st_size // 2])


def _header_too_long(folder: Path) -> None:
    f = folder / "model.safetensors"
    f.write_bytes((10**12).to_bytes(8, "little") + f.read_bytes()[8:])


def _remove(name: str):
    def mutate(folder: Path) -> None:
        (folder / name).unlink()
    return mutate


def _bad_shape(tensors):
    k = _first_weight(tensors)
    tensors[k] = tensors[k][:, :-1].contiguous()


CHECKPOINTS = {
    "config_list": _write("config.json", b"[1, 2, 3]"),
    "config_not_json": _write("config.json", b"{d_model: 128,"),
    "config_binary": _write("config.json", b"\x00\x01\x02\xff" * 64),
    "config_latin1": _write("config.json", '{"model_type": "llada", "n": "\xe9"}'.encode("latin-1")),
    "no_config": _remove("config.json"),
    "d_model_str": _edit_config(d_model="128"),
    "n_layers_bool": _edit_config(n_layers=True),
    "n_heads_float": _edit_config(n_heads=4.5),
    "n_heads_3": _edit_config(n_heads=3),
    "vocab_zero": _edit_config(vocab_size=0, embedding_size=0),
    "eps_nan": _edit_config(rms_norm_eps=float("nan")),
    "theta_str": _edit_config(rope_theta="ten thousand"),
    "rope_str": _edit_config(rope="yes"),
    "mask_missing": _edit_config(mask_token_id=_DELETE),
    "mask_negative": _edit_config(mask_token_id=-1),
    "mask_out_of_vocab": _edit_config(mask_token_id=20),
    "mask_str": _edit_config(mask_token_id="1"),
    "eos_out_of_vocab": _edit_config(eos_token_id=999),
    "pad_out_of_vocab": _edit_config(pad_token_id=50000),
    "model_type_unknown": _edit_config(model_type="gpt2", architectures=["GPT2LMHeadModel"], d_model=_DELETE),
    "architectures_int": _edit_config(architectures=5),
    "alibi": _edit_config(alibi=True),
    "int32_weights": _weights(_to_int32),
    "nan_weights": _weights(_poison(float("nan"))),
    "inf_weights": _weights(_poison(float("inf"))),
    "bad_shape": _weights(_bad_shape),
    "truncated": _truncate,
    "empty_weights": _write("model.safetensors", b""),
    "garbage_weights": _write("model.safetensors", os.urandom(4096)),
    "header_too_long": _header_too_long,
    "no_weights": _remove("model.safetensors"),
    "bad_index": _write("model.safetensors.index.json", b'{"weight_map": 5}'),
    "task_json_garbage": _write("task.json", b"\xff\xfe garbage"),
    "task_json_list": _write("task.json", b"[]"),
}

SUDOKU = "0" * 81
FILES = {
    "empty": b"",
    "binary": bytes(range(256)) * 8,
    "latin1": "caf\xe9 au lait\n".encode("latin-1"),
    "not_json": b"{not json\n",
    "json_list": b"[1, 2, 3]\n",
    "freq_no_key": b'{"num_tokens": 3}',
    "freq_bad_id": b'{"token_frequency": {"abc": 0.5}}',
    "freq_nan": b'{"token_frequency": {"3": NaN}}',
    "freq_list": b'{"token_frequency": [1, 2]}',
    "gsm8k_int_question": b'{"question": 5, "answer": "#### 5"}\n',
    "gsm8k_list_answer": b'{"question": "2+2?", "answer": [4]}\n',
    "gsm8k_missing": b'{"question": "2+2?"}\n',
    "sudoku_int_puzzle": b'{"puzzle": 12345}\n',
    "judge_short_question": b'{"question": "47165342=6"}\n{"question": "4716534=6"}\n',
    "judge_no_question": b'{"question": "47165342=6"}\n{"answer": "Y"}\n',
    "sudoku_short": b'{"puzzle": "123"}\n',
    "sudoku_bad_char": json.dumps({"puzzle": "x" * 81}).encode() + b"\n",
    "sudoku_short_solution": json.dumps({"puzzle": SUDOKU, "solution": "12"}).encode() + b"\n",
    "sudoku_list_solution": json.dumps({"puzzle": SUDOKU, "solution": [1] * 81}).encode() + b"\n",
    "nae_short": b'{"puzzle": "0101"}\n',
    "nae_number": b'{"reference": 101}\n',
    "trace_no_trace": b'{"text": "hi"}',
    "trace_bad_types": json.dumps({"trace": {"prompt_length": 1, "max_new_tokens": 2, "initial_tokens": [1, 1, 1],
                                             "tokens": [{"step": "a", "position": "b", "token": 1,
                                                         "confidence": 1.0, "entropy": 0.0}],
                                             "steps": []}}).encode(),
    "trace_bad_position": json.dumps({"trace": {"prompt_length": 1, "max_new_tokens": 2, "initial_tokens": [1, 1, 1],
                                                "tokens": [{"step": 0, "position": 99, "token": 1,
                                                            "confidence": 1.0, "entropy": 0.0}],
                                                "steps": []}}).encode(),
    "trace_bad_record": json.dumps({"trace": {"tokens": [{"nope": 1}]}}).encode(),
    "ckpt_garbage": b"this is not a torch checkpoint",
}

YAML_OK = "models: [tiny-nae-sat]\ntasks: [auto]\nsamplers: [confidence]\nlimit: 1\n"
SWEEPS = {
    "ok": YAML_OK,
    "limt": YAML_OK + "limt: 10\n",
    "temprature_common": YAML_OK + "common: {temprature: 0.7}\n",
    "temprature_grid": YAML_OK + "settings: {temprature: [0.0, 0.5]}\n",
    "unknown_sampler": "models: [tiny-nae-sat]\ntasks: [auto]\nsamplers: [confidence, nope]\n",
    "limit_ten": "models: [tiny-nae-sat]\ntasks: [auto]\nsamplers: [confidence]\nlimit: ten\n",
    "temperature_nan": YAML_OK + "common: {temperature: .nan}\n",
    "temperature_inf_grid": YAML_OK + "settings: {temperature: [0.0, .inf]}\n",
    "option_typo": "models: [tiny-nae-sat]\ntasks: [auto]\nsamplers: [{name: info_gain, options: {candidate_numbr: 4}}]\n",
    "sampler_entry_key": "models: [tiny-nae-sat]\ntasks: [auto]\nsamplers: [{name: confidence, opts: {}}]\n",
    "no_models": "models: []\ntasks: [auto]\nsamplers: [confidence]\n",
    "top_list": "- a\n- b\n",
    "not_yaml": "models: [a\n  b: : :\n",
    "model_entry_typo": "models: [{name: tiny-nae-sat, temprature: 0.5}]\ntasks: [auto]\nsamplers: [confidence]\n",
    "task_entry_typo": "models: [tiny-nae-sat]\ntasks: [{name: auto, limt: 3}]\nsamplers: [confidence]\n",
    "exec_timeout_neg": YAML_OK + "exec_timeout: -1\n",
    "batch_zero": YAML_OK + "batch_size: 0\n",
    "empty_grid": YAML_OK + "settings: {temperature: []}\n",
    "threshold_nan_option": "models: [tiny-nae-sat]\ntasks: [auto]\nsamplers: [{name: threshold, options: {threshold: .nan}}]\n",
}

# (id, argv, expected substring of the error line, stdin bytes or None)
CASES: list[tuple[str, list[str], str, bytes | None]] = [
    # ---- the hang and silent NaN/inf options (issue 22) ----
    ("judge_prompt_partial_question", ["sample", "--model_name_or_path", "tiny-judge", "--prompt",
                                       "4123567?=6|????????????????????????|?"], "starts with the whole question", None),
    ("judge_prompt_wrong_length", ["sample", "--model_name_or_path", "tiny-judge", "--prompt", "41235670=6|" + "?" * 27],
     "a judge prompt has at most 37 characters", None),
    ("temperature_inf", ["sample", "--temperature", "inf"], "--temperature must be a finite number", None),
    ("temperature_nan", ["sample", "--temperature", "nan"], "--temperature must be a finite number", None),
    ("temperature_neg", ["sample", "--temperature", "-1"], "--temperature must be >= 0", None),
    ("eos_penalty_nan", ["sample", "--eos_penalty", "nan"], "--eos_penalty must be a finite number", None),
    ("eos_penalty_inf", ["sample", "--eos_penalty=-inf"], "--eos_penalty must be a finite number", None),
    ("factor_nan", ["sample", "--sampler", "factor", "--factor", "nan"], "--factor must be a finite number", None),
    ("factor_zero", ["sample", "--sampler", "factor", "--factor", "0"], "--factor must be > 0", None),
    ("gamma_nan", ["sample", "--sampler", "eb", "--gamma", "nan"], "--gamma must be a finite number", None),
    ("gamma_neg", ["sample", "--sampler", "eb", "--gamma", "-0.5"], "--gamma must be >= 0", None),
    ("position_temperature_nan", ["sample", "--sampler", "info_gain", "--position_temperature", "nan"],
     "--position_temperature must be a finite number", None),
    ("pc_lambda_nan", ["sample", "--sampler", "pc", "--pc_lambda", "nan"], "--pc_lambda must be a finite number", None),
    ("kl_threshold_zero", ["sample", "--sampler", "klass", "--kl_threshold", "0"], "--kl_threshold must be > 0", None),
    ("kl_threshold_nan", ["sample", "--sampler", "klass", "--kl_threshold", "nan"],
     "--kl_threshold must be a finite number", None),
    ("judge_not_a_run", ["judge", "{dir}"], "not an eval run folder", None),
    ("judge_compare_without_url", ["judge", "{dir}", "--compare_to", "{dir}"], "need --judge_base_url", None),
    ("judge_concurrency_zero", ["judge", "{dir}", "--judge_base_url", "http://127.0.0.1:9/v1", "--judge_concurrency", "0"],
     "--judge_concurrency must be in [1, 256]", None),
    ("judge_timeout_nan", ["judge", "{dir}", "--judge_base_url", "http://127.0.0.1:9/v1", "--judge_timeout", "nan"],
     "--judge_timeout must be a finite number", None),
    ("eval_judge_other_task", ["eval", *NAE, "--limit", "1", "--output_dir", "{tmp}/ev", "--judge_base_url",
                               "http://127.0.0.1:9/v1"], "scores the writing task only", None),
    ("kl_history_zero", ["sample", "--sampler", "klass", "--kl_history", "0"], "--kl_history must be >= 1", None),
    ("pc_alpha_zero", ["sample", "--sampler", "pc", "--pc_alpha", "0"], "--pc_alpha must be > 0", None),
    ("threshold_nan", ["sample", "--sampler", "threshold", "--threshold", "nan"], "--threshold must be a finite", None),
    ("threshold_big", ["sample", "--sampler", "threshold", "--threshold", "1.5"], "--threshold must be in (0, 1]", None),
    ("top_p_nan", ["sample", "--top_p", "nan"], "--top_p must be a finite number", None),
    ("top_p_zero", ["sample", "--top_p", "0"], "--top_p must be in (0, 1]", None),
    ("top_k_zero", ["sample", "--top_k", "0"], "--top_k must be > 0", None),
    ("steps_zero", ["sample", "--steps", "0"], "--steps must be > 0", None),
    ("block_size_neg", ["sample", "--block_size", "-4"], "--block_size must be > 0", None),
    ("tokens_per_step_zero", ["sample", "--tokens_per_step", "0"], "--tokens_per_step must be > 0", None),
    ("candidate_number_zero", ["sample", "--sampler", "info_gain", "--candidate_number", "0"],
     "--candidate_number must be >= 1", None),
    ("beam_size_zero", ["sample", "--beam_size", "0"], "--beam_size must be >= 1", None),
    ("best_of_zero", ["sample", "--best_of", "0"], "--best_of must be >= 1", None),
    ("max_lookahead_rows_zero", ["sample", "--max_lookahead_rows", "0"], "--max_lookahead_rows must be >= 1", None),
    ("beam_without_lookahead", ["sample", "--beam_size", "2"], "needs a lookahead sampler", None),
    ("beam_and_best_of", ["sample", "--sampler", "info_gain", "--beam_size", "2", "--best_of", "2"],
     "either beam_size or best_of", None),
    ("steps_and_tokens_per_step", ["sample", "--steps", "4", "--tokens_per_step", "2"], "either steps or tokens_per_step", None),
    ("seed_huge", ["sample", "--seed", str(2**70)], "--seed must be in [0, 9223372036854775807]", None),
    ("seed_negative", ["sample", "--seed=-1"], "--seed must be in [0,", None),
    ("seed_not_int", ["sample", "--seed", "1.5"], "invalid int value", None),
    ("device_tpu", ["sample", "--device", "tpu"], "unknown device 'tpu'", None),
    ("device_garbage", ["sample", "--device", "cpu:x:y"], "unknown device", None),
    ("dtype_bad", ["sample", "--dtype", "float8"], "unknown dtype", None),
    ("sampler_unknown", ["sample", "--sampler", "nope"], "unknown sampler 'nope'", None),
    ("schedule_unknown", ["sample", "--schedule", "cosine"], "unknown schedule", None),
    ("use_cache_bad", ["sample", "--use_cache", "full"], "use_cache must be one of", None),
    ("variant_bad", ["sample", "--sampler", "info_gain", "--variant", "best"], "unknown variant", None),
    ("bypass_bad", ["sample", "--sampler", "info_gain", "--bypass", "some"], "bypass must be", None),
    ("unknown_flag", ["sample", "--treshold", "0.9"], "unrecognized arguments: --treshold", None),
    ("max_new_tokens_task", ["sample", "--max_new_tokens", "5"], "fill a fixed canvas", None),
    ("max_new_tokens_neg", ["sample", "--max_new_tokens", "-1"], "--max_new_tokens must be >= 0", None),
    # a shorter prompt is padded with blanks (the server's rule); a longer one is refused
    ("sudoku_prompt_long", ["sample", "--prompt", "1" * 82], "a sudoku prompt has at most 81 characters", None),
    ("sudoku_prompt_bad_char", ["sample", "--prompt", "12x"], "not a Sudoku puzzle", None),
    ("nae_prompt_wrong_len", ["sample", *NAE, "--prompt", "0" * 61], "at most 60 characters", None),
    ("nae_prompt_bad_char", ["sample", *NAE, "--prompt", "x" * 60], "not in the nae_sat alphabet", None),
    ("prompt_invalid_utf8", ["sample", *NAE, "--prompt", "caf\udce9"], "--prompt is not valid UTF-8", None),
    ("prompt_nul", ["sample", *NAE, "--prompt", "a\x00b"], "--prompt contains a NUL byte", None),
    ("pc_freq_missing", ["sample", "--sampler", "pc", "--pc_freq_file", "{tmp}/nope.json"], "does not exist", None),
    ("pc_freq_not_json", ["sample", "--sampler", "pc", "--pc_freq_file", "{f:not_json}"], "not a token frequency file", None),
    ("pc_freq_no_key", ["sample", "--sampler", "pc", "--pc_freq_file", "{f:freq_no_key}"], "not a token frequency file", None),
    ("pc_freq_bad_id", ["sample", "--sampler", "pc", "--pc_freq_file", "{f:freq_bad_id}"], "not a token frequency file", None),
    ("pc_freq_nan", ["sample", "--sampler", "pc", "--pc_freq_file", "{f:freq_nan}"], "frequencies finite", None),
    ("pc_freq_list", ["sample", "--sampler", "pc", "--pc_freq_file", "{f:freq_list}"], "not a token frequency file", None),
    ("pc_freq_binary", ["sample", "--sampler", "pc", "--pc_freq_file", "{f:binary}"], "is a binary file", None),
    ("save_trace_folder", ["sample", "--save_trace", "{dir}"], "is a folder", None),
    ("save_trace_missing_dir", ["sample", "--save_trace", "{tmp}/no/such/dir/t.json"], "does not exist", None),
    ("save_trace_under_file", ["sample", "--save_trace", "{file}/t.json"], "is not a folder", None),
    ("save_trace_proc", ["sample", "--save_trace", "/proc/nope/t.json"], "cannot write", None),
    ("model_missing_folder", ["sample", "--model_name_or_path", "{tmp}/no_model"], "does not exist", None),
    ("model_is_file", ["sample", "--model_name_or_path", "{file}"], "is a file", None),
    ("model_unknown_alias", ["sample", "--model_name_or_path", "nonsense-model"], "unknown model", None),
    ("model_folder_no_config", ["sample", "--model_name_or_path", "{dir}"], "has no config.json", None),
    # ---- checkpoint folders ----
    ("ck_config_list", ["sample", "--model_name_or_path", "{ck:config_list}"], "must hold a JSON object", None),
    ("ck_config_not_json", ["sample", "--model_name_or_path", "{ck:config_not_json}"], "is not valid JSON", None),
    ("ck_config_binary", ["sample", "--model_name_or_path", "{ck:config_binary}"], "is a binary file", None),
    ("ck_config_latin1", ["sample", "--model_name_or_path", "{ck:config_latin1}"], "not valid UTF-8", None),
    ("ck_d_model_str", ["sample", "--model_name_or_path", "{ck:d_model_str}"], "d_model must be an integer", None),
    ("ck_n_layers_bool", ["sample", "--model_name_or_path", "{ck:n_layers_bool}"], "n_layers must be an integer", None),
    ("ck_n_heads_float", ["sample", "--model_name_or_path", "{ck:n_heads_float}"], "n_heads must be an integer", None),
    ("ck_n_heads_3", ["sample", "--model_name_or_path", "{ck:n_heads_3}"], "must be divisible by n_heads", None),
    ("ck_vocab_zero", ["sample", "--model_name_or_path", "{ck:vocab_zero}"], "vocab_size must be > 0", None),
    ("ck_eps_nan", ["sample", "--model_name_or_path", "{ck:eps_nan}"], "rms_norm_eps must be a finite number", None),
    ("ck_theta_str", ["sample", "--model_name_or_path", "{ck:theta_str}"], "rope_theta must be a finite number", None),
    ("ck_rope_str", ["sample", "--model_name_or_path", "{ck:rope_str}"], "rope must be true or false", None),
    ("ck_mask_missing", ["sample", "--model_name_or_path", "{ck:mask_missing}"], "mask_token_id 126336 (the default", None),
    ("ck_mask_negative", ["sample", "--model_name_or_path", "{ck:mask_negative}"], "mask_token_id must be >= 0", None),
    ("ck_mask_out_of_vocab", ["sample", "--model_name_or_path", "{ck:mask_out_of_vocab}"],
     "mask_token_id 20 is outside the vocabulary", None),
    ("ck_mask_str", ["sample", "--model_name_or_path", "{ck:mask_str}"], "mask_token_id must be an integer", None),
    ("ck_eos_out_of_vocab", ["sample", "--model_name_or_path", "{ck:eos_out_of_vocab}"], "eos_token_id 999", None),
    ("ck_pad_out_of_vocab", ["sample", "--model_name_or_path", "{ck:pad_out_of_vocab}"], "pad_token_id 50000", None),
    ("ck_model_type_unknown", ["sample", "--model_name_or_path", "{ck:model_type_unknown}"], "unmask knows LLaDA", None),
    ("ck_architectures_int", ["sample", "--model_name_or_path", "{ck:architectures_int}"], "architectures must be a list", None),
    ("ck_alibi", ["sample", "--model_name_or_path", "{ck:alibi}"], "ALiBi", None),
    ("ck_int32_weights", ["sample", "--model_name_or_path", "{ck:int32_weights}"], "is stored as I32", None),
    ("ck_nan_weights", ["sample", "--model_name_or_path", "{ck:nan_weights}"], "non-finite logits", None),
    ("ck_inf_weights", ["sample", "--model_name_or_path", "{ck:inf_weights}"], "non-finite logits", None),
    ("ck_nan_weights_sampled", ["sample", "--model_name_or_path", "{ck:nan_weights}", "--temperature", "1"],
     "non-finite logits", None),
    ("eval_limit_zero", ["eval", *NAE, "--limit", "0"], "--limit must be >= 1", None),
    ("ck_nan_weights_eval", ["eval", "--model_name_or_path", "{ck:nan_weights}", "--limit", "1",
                             "--output_dir", "{tmp}/out"], "non-finite logits", None),
    ("ck_bad_shape", ["sample", "--model_name_or_path", "{ck:bad_shape}"], "shape mismatches", None),
    ("ck_truncated", ["sample", "--model_name_or_path", "{ck:truncated}"], "truncated", None),
    ("ck_empty_weights", ["sample", "--model_name_or_path", "{ck:empty_weights}"], "not a complete safetensors file", None),
    ("ck_garbage_weights", ["sample", "--model_name_or_path", "{ck:garbage_weights}"], "safetensors", None),
    ("ck_header_too_long", ["sample", "--model_name_or_path", "{ck:header_too_long}"], "not a complete safetensors", None),
    ("ck_no_weights", ["sample", "--model_name_or_path", "{ck:no_weights}"], "no model.safetensors", None),
    ("ck_bad_index", ["sample", "--model_name_or_path", "{ck:bad_index}"], "not a valid safetensors index", None),
    ("ck_task_json_garbage", ["sample", "--model_name_or_path", "{ck:task_json_garbage}"], "task file", None),
    ("ck_task_json_list", ["sample", "--model_name_or_path", "{ck:task_json_list}"], "does not describe a known task", None),
    # ---- chat ----
    ("chat_no_model", ["chat"], "chat needs --model_name_or_path", b"hi\n"),
    ("chat_nul_stdin", ["chat", "--model_name_or_path", "{chatmodel}", "--chat_template", "False"], "contains a NUL byte", b"a\x00b\n"),
    ("chat_invalid_utf8_stdin", ["chat", "--model_name_or_path", "{chatmodel}", "--chat_template", "False"], "not valid UTF-8", b"caf\xe9\n"),
    ("chat_temperature_inf", ["chat", "--model_name_or_path", "{chatmodel}", "--temperature", "inf"], "--temperature must be a finite number", b"hi\n"),
    # ---- compare ----
    ("compare_batch_zero", ["compare", "--task", "nae_sat", "--batch_size", "0"], "--batch_size must be >= 1", None),
    ("compare_n_zero", ["compare", "--task", "nae_sat", "--n", "0"], "--n must be >= 1", None),
    ("compare_task_unknown", ["compare", "--task", "chess"], "unknown task 'chess'", None),
    ("compare_model_for_another_task", ["compare", "--task", "judge", "--model_name_or_path", "tiny-nae-sat"],
     "trained for nae_sat, not judge", None),
    ("compare_sampler_unknown", ["compare", "--task", "nae_sat", "--samplers", "confidence,nope"], "unknown sampler", None),
    ("compare_givens_bad", ["compare", "--task", "sudoku", "--givens", "90"], "givens range", None),
    ("compare_givens_text", ["compare", "--task", "sudoku", "--givens", "many"], "expected a number or a range", None),
    ("compare_data_missing", ["compare", "--task", "nae_sat", "--data", "{tmp}/nope.jsonl"], "does not exist", None),
    ("compare_data_empty", ["compare", "--task", "nae_sat", "--data", "{f:empty}"], "is empty", None),
    ("compare_data_binary", ["compare", "--task", "nae_sat", "--data", "{f:binary}"], "is a binary file", None),
    ("compare_data_latin1", ["compare", "--task", "nae_sat", "--data", "{f:latin1}"], "not valid UTF-8", None),
    ("compare_judge_short_question", ["compare", "--task", "judge", "--data", "{f:judge_short_question}"],
     "item 1: 'question' must be eight digits 0-7", None),
    ("compare_judge_no_question", ["compare", "--task", "judge", "--data", "{f:judge_no_question}"],
     "item 1 has no 'question'", None),
    ("compare_sudoku_int_puzzle", ["compare", "--task", "sudoku", "--data", "{f:sudoku_int_puzzle}"],
     "'puzzle' must be a string", None),
    ("compare_sudoku_short", ["compare", "--task", "sudoku", "--data", "{f:sudoku_short}"], "must have 81 characters", None),
    ("compare_sudoku_short_solution", ["compare", "--task", "sudoku", "--data", "{f:sudoku_short_solution}"],
     "'solution' must have 81 characters", None),
    ("compare_technique_wrong_task", ["compare", "--task", "nae_sat", "--technique", "naked_singles"],
     "only applies to --task sudoku", None),
    ("compare_temperature_nan", ["compare", "--task", "nae_sat", "--temperature", "nan"], "--temperature must be a finite", None),
    # ---- eval ----
    ("eval_exec_timeout_neg", ["eval", *NAE, "--exec_timeout", "-1"], "--exec_timeout must be in (0, 86400]", None),
    ("eval_exec_timeout_nan", ["eval", *NAE, "--exec_timeout", "nan"], "--exec_timeout must be a finite number", None),
    ("eval_limit_neg", ["eval", *NAE, "--limit", "-1"], "--limit must be >= 1", None),
    ("eval_batch_zero", ["eval", *NAE, "--batch_size", "0"], "--batch_size must be >= 1", None),
    ("eval_fewshot_neg", ["eval", *NAE, "--num_fewshot", "-1"], "--num_fewshot must be >= 0", None),
    ("eval_threads_zero", ["eval", *NAE, "--threads", "0"], "--threads must be >= 1", None),
    ("eval_task_unknown", ["eval", *NAE, "--task", "chess"], "chess", None),
    ("eval_no_model", ["eval", "--task", "gsm8k"], "--model_name_or_path is required", None),
    ("eval_data_empty", ["eval", *NAE, "--data", "{f:empty}", "--output_dir", "{tmp}/o"], "is empty", None),
    ("eval_data_binary", ["eval", *NAE, "--data", "{f:binary}", "--output_dir", "{tmp}/o"], "is a binary file", None),
    ("eval_data_not_json", ["eval", *NAE, "--data", "{f:not_json}", "--output_dir", "{tmp}/o"], "not valid JSON", None),
    ("eval_data_list", ["eval", *NAE, "--data", "{f:json_list}", "--output_dir", "{tmp}/o"], "expected a JSON array of objects", None),
    ("eval_gsm8k_int_question", ["eval", *NAE, "--task", "gsm8k", "--data", "{f:gsm8k_int_question}",
                                 "--output_dir", "{tmp}/o"], "field 'question' must be a string", None),
    ("eval_gsm8k_list_answer", ["eval", *NAE, "--task", "gsm8k", "--data", "{f:gsm8k_list_answer}",
                                "--output_dir", "{tmp}/o"], "field 'answer' must be a string", None),
    ("eval_gsm8k_missing", ["eval", *NAE, "--task", "gsm8k", "--data", "{f:gsm8k_missing}", "--output_dir", "{tmp}/o"],
     "lacks field(s) answer", None),
    ("eval_sudoku_int_puzzle", ["eval", "--model_name_or_path", "tiny-sudoku", "--data", "{f:sudoku_int_puzzle}",
                                "--output_dir", "{tmp}/o"], "'puzzle' must be a string", None),
    ("eval_sudoku_bad_char", ["eval", "--model_name_or_path", "tiny-sudoku", "--data", "{f:sudoku_bad_char}",
                              "--output_dir", "{tmp}/o"], "is not a sudoku item", None),
    ("eval_sudoku_list_solution", ["eval", "--model_name_or_path", "tiny-sudoku", "--data", "{f:sudoku_list_solution}",
                                   "--output_dir", "{tmp}/o"], "'solution' must be a string", None),
    ("eval_nae_short", ["eval", *NAE, "--data", "{f:nae_short}", "--output_dir", "{tmp}/o"], "must have 60 characters", None),
    ("eval_nae_number", ["eval", *NAE, "--data", "{f:nae_number}", "--output_dir", "{tmp}/o"], "'reference' must be a string", None),
    ("eval_output_dir_file", ["eval", *NAE, "--limit", "1", "--output_dir", "{file}"], "exists and is not a folder", None),
    ("eval_output_dir_under_file", ["eval", *NAE, "--limit", "1", "--output_dir", "{file}/sub"], "not a folder", None),
    ("eval_sampler_option_nan", ["eval", *NAE, "--sampler", "threshold", "--threshold", "nan"], "--threshold must be a finite", None),
    ("eval_max_new_tokens_infill", ["eval", *NAE, "--max_new_tokens", "4", "--output_dir", "{tmp}/o"],
     "infilling task", None),
    # ---- sweep ----
    *[(f"sweep_{name}", ["sweep", f"{{y:{name}}}", "--output_dir", "{tmp}/sw"], sub, None) for name, sub in [
        ("limt", "unknown key 'limt'; did you mean 'limit'"),
        ("temprature_common", "unknown key 'temprature'; did you mean 'temperature'"),
        ("temprature_grid", "unknown key 'temprature'; did you mean 'temperature'"),
        ("unknown_sampler", "unknown sampler 'nope'"),
        ("limit_ten", "limit must be >= 1 (an integer), got 'ten'"),
        ("temperature_nan", "temperature must be a finite number"),
        ("temperature_inf_grid", "temperature must be a finite number"),
        ("option_typo", "unknown sampler option(s) candidate_numbr"),
        ("sampler_entry_key", "unknown key 'opts'"),
        ("no_models", "'models' must be a non-empty list"),
        ("top_list", "expected a mapping at the top level"),
        ("not_yaml", "not valid YAML"),
        ("model_entry_typo", "models[0]: unknown key 'temprature'"),
        ("task_entry_typo", "tasks[0]: unknown key 'limt'"),
        ("exec_timeout_neg", "exec_timeout must be in (0, 86400]"),
        ("batch_zero", "batch_size must be >= 1"),
        ("empty_grid", "empty list of values"),
        ("threshold_nan_option", "threshold must be a finite number"),
    ]],
    ("sweep_override_temperature_nan", ["sweep", "{y:ok}", "--output_dir", "{tmp}/sw", "generation.temperature=nan"],
     "temperature must be a finite number", None),
    ("sweep_missing", ["sweep", "{tmp}/nope.yaml"], "does not exist", None),
    ("sweep_binary", ["sweep", "{f:binary}"], "is a binary file", None),
    ("sweep_output_dir_file", ["sweep", "{y:ok}", "--output_dir", "{file}"], "exists and is not a folder", None),
    # ---- train ----
    ("train_max_steps_neg", ["train", "--task", "nae_sat", "--out", "{tmp}/t", "--max_steps", "-1"],
     "--max_steps must be >= 0", None),
    ("train_d_model_zero", ["train", "--task", "nae_sat", "--out", "{tmp}/t", "--d_model", "0"], "--d_model must be > 0", None),
    ("train_out_file", ["train", "--task", "nae_sat", "--out", "{file}"], "exists and is not a folder", None),
    ("train_task_unknown", ["train", "--task", "chess", "--out", "{tmp}/t"], "unknown synthetic task 'chess'", None),
    ("train_lr_nan", ["train", "--task", "nae_sat", "--out", "{tmp}/t", "--lr", "nan"], "--lr must be a finite number", None),
    ("train_batch_zero", ["train", "--task", "nae_sat", "--out", "{tmp}/t", "--batch_size", "0"], "--batch_size must be >= 1", None),
    ("train_heads_not_dividing", ["train", "--task", "nae_sat", "--out", "{tmp}/t", "--d_model", "128", "--n_heads", "3"],
     "--n_heads (3) must divide --d_model (128)", None),
    ("train_odd_head_size", ["train", "--task", "nae_sat", "--out", "{tmp}/t", "--d_model", "12", "--n_heads", "4"],
     "must be even", None),
    ("train_derived_frac", ["train", "--task", "nae_sat", "--out", "{tmp}/t", "--derived_frac", "2"],
     "--derived_frac must be in [0, 1]", None),
    ("train_warmup_neg", ["train", "--task", "nae_sat", "--out", "{tmp}/t", "--warmup_steps", "-1"],
     "--warmup_steps must be >= 0", None),
    ("train_task_param_bad", ["train", "--task", "nae_sat", "--out", "{tmp}/t", "--task_param", "n=abc"], "nae_sat", None),
    ("train_no_task", ["train", "--out", "{tmp}/t"], "--task is required", None),
    ("train_resume_missing", ["train", "--out", "{tmp}/t", "--resume"], "--resume: no checkpoint", None),
    ("train_resume_garbage", ["train", "--out", "{ckpt_garbage}", "--resume"], "not a readable unmask training checkpoint", None),
    ("train_init_from_missing", ["train", "--task", "nae_sat", "--out", "{tmp}/t", "--init_from", "{tmp}/nope"],
     "--init_from", None),
    ("train_init_from_corrupt", ["train", "--task", "nae_sat", "--out", "{tmp}/t", "--init_from", "{ck:truncated}"],
     "--init_from", None),
    ("train_init_from_shape", ["train", "--task", "nae_sat", "--out", "{tmp}/t", "--init_from", "tiny-sudoku"],
     "--init_from tiny-sudoku", None),
    ("train_init_and_resume", ["train", "--task", "nae_sat", "--out", "{tmp}/t", "--init_from", BASE, "--resume"],
     "cannot be combined with --resume", None),
    # ---- viz ----
    ("viz_dpi_huge", ["viz", "{trace}", "--out", "{tmp}/a.png", "--dpi", "100000"], "--dpi must be in [1, 1200]", None),
    ("viz_dpi_zero", ["viz", "{trace}", "--out", "{tmp}/a.png", "--dpi", "0"], "--dpi must be in [1, 1200]", None),
    ("viz_columns_zero", ["viz", "{trace}", "--out", "{tmp}/a.gif", "--columns", "0"], "--columns must be in", None),
    ("viz_max_frames_zero", ["viz", "{trace}", "--out", "{tmp}/a.gif", "--max_frames", "0"], "--max_frames must be in", None),
    ("viz_out_folder", ["viz", "{trace}", "--out", "{dirpng}"], "is a folder", None),
    ("viz_out_missing_dir", ["viz", "{trace}", "--out", "{tmp}/no/dir/a.gif"], "does not exist", None),
    ("viz_out_under_file", ["viz", "{trace}", "--out", "{file}/a.gif"], "is not a folder", None),
    ("viz_out_suffix", ["viz", "{trace}", "--out", "{tmp}/a.txt"], "--out must end in .gif", None),
    ("viz_trace_missing", ["viz", "{tmp}/nope.json", "--out", "{tmp}/a.gif"], "does not exist", None),
    ("viz_trace_binary", ["viz", "{f:binary}", "--out", "{tmp}/a.gif"], "is a binary file", None),
    ("viz_trace_not_json", ["viz", "{f:not_json}", "--out", "{tmp}/a.gif"], "is not JSON", None),
    ("viz_trace_no_trace", ["viz", "{f:trace_no_trace}", "--out", "{tmp}/a.gif"], "has no trace", None),
    ("viz_trace_bad_types", ["viz", "{f:trace_bad_types}", "--out", "{tmp}/a.gif"], "unreadable trace", None),
    ("viz_trace_bad_position", ["viz", "{f:trace_bad_position}", "--out", "{tmp}/a.gif"], "unreadable trace", None),
    ("viz_trace_bad_record", ["viz", "{f:trace_bad_record}", "--out", "{tmp}/a.gif"], "unreadable trace", None),
    ("viz_labels_count", ["viz", "{trace}", "--out", "{tmp}/a.gif", "--labels", "a", "b"], "got 2 labels for 1 traces", None),
    # ---- pc-freq ----
    ("pcfreq_out_folder", ["pc-freq", *NAE, "--corpus", "{f:latin1}", "--out", "{dir}"], "is a folder", None),
    ("pcfreq_out_missing_dir", ["pc-freq", *NAE, "--corpus", "{file}", "--out", "{tmp}/no/dir/f.json"], "does not exist", None),
    ("pcfreq_corpus_binary", ["pc-freq", *NAE, "--corpus", "{f:binary}", "--out", "{tmp}/f.json"], "is a binary file", None),
    ("pcfreq_corpus_latin1", ["pc-freq", *NAE, "--corpus", "{f:latin1}", "--out", "{tmp}/f.json"], "not valid UTF-8", None),
    ("pcfreq_corpus_missing", ["pc-freq", *NAE, "--corpus", "{tmp}/nope.txt", "--out", "{tmp}/f.json"], "does not exist", None),
    ("pcfreq_corpus_empty", ["pc-freq", *NAE, "--corpus", "{f:empty}", "--out", "{tmp}/f.json"], "corpus is empty", None),
    # ---- lm-eval (the model_args are a request body) ----
    ("lmeval_temperature_nan", ["lm-eval", "--model", "unmask", "--model_args", f"pretrained={BASE},temperature=nan",
                                "--tasks", "gsm8k"], "temperature must be a finite number", None),
    ("lmeval_option_typo", ["lm-eval", "--model", "unmask", "--model_args", f"pretrained={BASE},treshold=0.9",
                            "--tasks", "gsm8k"], "unknown sampler option(s) treshold", None),
    ("lmeval_model_missing", ["lm-eval", "--model", "unmask", "--model_args", "pretrained=/no/such/model",
                              "--tasks", "gsm8k"], "does not exist", None),
    ("lmeval_device_tpu", ["lm-eval", "--model", "unmask", "--model_args", f"pretrained={BASE}", "--device", "tpu",
                           "--tasks", "gsm8k"], "unknown device 'tpu'", None),
    ("lmeval_corrupt_model", ["lm-eval", "--model", "unmask", "--model_args", "pretrained={ck:mask_str}",
                              "--tasks", "gsm8k"], "mask_token_id must be an integer", None),
]


# ------------------------------------------------------------------ running a case
@pytest.fixture(scope="module")
def trace_file(tmp_path_factory):
    """A real trace (from a short decode of the shipped NAE-SAT model) for the viz cases."""
    path = tmp_path_factory.mktemp("trace") / "t.json"
    assert main(["sample", *NAE, "--save_trace", str(path)]) == 0
    return path


def _materialize(argv: list[str], tmp: Path, trace: Path | None) -> list[str]:
    (tmp / "dir").mkdir(exist_ok=True)
    (tmp / "file").write_text("just a file\n")

    def sub(m: re.Match) -> str:
        kind, _, name = m.group(1).partition(":")
        if kind == "tmp":
            return str(tmp)
        if kind == "dir":
            return str(tmp / "dir")
        if kind == "file":
            return str(tmp / "file")
        if kind == "dirpng":
            (tmp / "pic.png").mkdir(exist_ok=True)
            return str(tmp / "pic.png")
        if kind == "chatmodel":
            from tiny import write_tiny

            folder = tmp / "chat_model"
            if not folder.exists():
                write_tiny(folder, "llada")
            return str(folder)
        if kind == "trace":
            assert trace is not None
            return str(trace)
        if kind == "ckpt_garbage":
            out = tmp / "train_run"
            out.mkdir(exist_ok=True)
            (out / "ckpt.pt").write_bytes(FILES["ckpt_garbage"])
            return str(out)
        if kind == "f":
            p = tmp / f"f_{name}"
            p.write_bytes(FILES[name])
            return str(p)
        if kind == "y":
            p = tmp / f"{name}.yaml"
            p.write_text(SWEEPS[name])
            return str(p)
        if kind == "ck":
            folder = tmp / f"ck_{name}"
            if not folder.exists():
                shutil.copytree(assets_dir() / BASE, folder)
                CHECKPOINTS[name](folder)
            return str(folder)
        raise AssertionError(f"unknown placeholder {m.group(0)}")

    return [re.sub(r"\{([a-z_]+(?::[a-z0-9_]+)?)\}", sub, a) for a in argv]


def run_case(argv, stdin, tmp_path, monkeypatch, capsys, trace=None):
    args = _materialize(argv, tmp_path, trace)
    if stdin is not None:
        monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(stdin), encoding="utf-8"))
    monkeypatch.chdir(tmp_path)  # nothing a case writes by default lands in the checkout
    try:
        rc = main(args)
    except SystemExit as e:  # argparse usage errors exit from inside parse_args
        rc = e.code
    return rc, capsys.readouterr()


@pytest.mark.parametrize("case_id,argv,expected,stdin", CASES, ids=[c[0] for c in CASES])
def test_bad_input(case_id, argv, expected, stdin, tmp_path, monkeypatch, capsys, request):
    trace = request.getfixturevalue("trace_file") if any("{trace}" in a for a in argv) else None
    rc, cap = run_case(argv, stdin, tmp_path, monkeypatch, capsys, trace)
    lines = [ln for ln in cap.err.splitlines() if ln.strip()]
    assert rc == 2, f"exit {rc}, stderr: {cap.err[-2000:]}"
    assert len(lines) == 1 and lines[0].startswith("error:"), f"stderr is not one error line: {cap.err[-2000:]}"
    assert expected in lines[0], lines[0]


def test_table_is_large_and_unique():
    ids = [c[0] for c in CASES]
    assert len(ids) == len(set(ids))
    assert len(ids) + len(API_CASES) >= 100


# ------------------------------------------------------------------ the Python API door
def _tiny():
    from unmask import from_pretrained

    model, _ = from_pretrained(BASE)
    return model


API_CASES = [
    ("generate_typos", lambda m: _gen(m, treshold=0.9, candidate_numbr=3), "unknown option(s) candidate_numbr, treshold"),
    ("generate_option_with_object", lambda m: _gen(m, sampler=_sampler("threshold"), threshold=0.5),
     "given with a Sampler object"),
    ("generate_temperature_nan", lambda m: _gen(m, temperature=float("nan")), "temperature must be a finite number"),
    ("generate_temperature_inf", lambda m: _gen(m, temperature=math.inf), "temperature must be a finite number"),
    ("generate_seed_list_bad", lambda m: _gen(m, seed=[1, -2]), "seed must be in [0,"),
    ("generate_stop_ids_out_of_vocab", lambda m: _gen(m, stop_token_ids=[500]), "stop_token_ids [500] outside"),
    ("generate_stop_ids_float", lambda m: _gen(m, stop_token_ids=[2.5]), "stop_token_ids must be integer token ids"),
    ("generate_suppress_negative", lambda m: _gen(m, suppress_token_ids=[-1]), "suppress_token_ids must be token ids >= 0"),
    ("generate_prompt_out_of_vocab", lambda m: _gen(m, prompt=[3, 10_000]), "prompt token ids [10000] outside"),
    ("generate_hook_nan", lambda m: _gen(m, logits_hook=lambda s, x, lg: lg * float("nan")), "logits hook returned NaN"),
    ("generate_hook_all_inf", lambda m: _gen(m, logits_hook=lambda s, x, lg: lg.fill_(-math.inf)), "no token left"),
    ("generate_bool_steps", lambda m: _gen(m, steps=True), "steps must be > 0 (an integer), got True"),
    ("make_sampler_typo", lambda m: _sampler("confidence", treshold=0.9), "unknown sampler option(s) treshold"),
    ("make_sampler_nan_factor", lambda m: _sampler("factor", factor=math.nan), "factor must be a finite number"),
    ("make_sampler_nan_gamma", lambda m: _sampler("eb", gamma=math.nan), "gamma must be a finite number"),
    ("make_sampler_nan_pc", lambda m: _sampler("pc", pc_lambda=math.nan), "pc_lambda must be a finite number"),
    ("make_sampler_klass_history_float", lambda m: _sampler("klass", kl_history=1.5), "kl_history must be >= 1"),
    ("make_sampler_klass_kl_negative", lambda m: _sampler("klass", kl_threshold=-0.1), "kl_threshold must be > 0"),
    ("make_sampler_nan_ig", lambda m: _sampler("info_gain", position_temperature=math.nan),
     "position_temperature must be a finite number"),
    ("config_top_k_text", lambda m: _cfg(top_k="five"), "top_k must be > 0 (an integer), got 'five'"),
    ("config_max_new_tokens_none", lambda m: _cfg(max_new_tokens=None), "max_new_tokens must be given"),
    ("eval_spec_unknown_override", lambda m: _spec(overrides={"temprature": 0.5}), "unknown generation setting(s) temprature"),
    ("eval_spec_unknown_option", lambda m: _spec(sampler_options={"treshold": 0.5}), "unknown sampler option(s) treshold"),
    ("eval_spec_exec_timeout", lambda m: _spec(exec_timeout=-1), "--exec_timeout must be in (0, 86400]"),
    ("lm_eval_model_args_typo", lambda m: _lm_args({"pretrained": BASE, "candidate_numbr": 3}), "candidate_numbr"),
]


def _gen(model, sampler="confidence", prompt=(3, 4, 1, 1), **kw):
    from unmask import generate

    return generate(model, [list(prompt)], sampler, max_new_tokens=2, **kw)


def _sampler(name, **kw):
    from unmask.samplers import make_sampler

    return make_sampler(name, **kw)


def _cfg(**kw):
    from unmask.decoding.engine import GenerationConfig

    GenerationConfig(**kw).validate()


def _spec(**kw):
    from unmask.eval.runner import EvalSpec, check_spec

    check_spec(EvalSpec(model=BASE, task=None, **kw))


def _lm_args(args):
    pytest.importorskip("lm_eval")
    from unmask.eval.lm_eval_adapter import check_model_args

    check_model_args(args)


@pytest.fixture(scope="module")
def api_model():
    return _tiny()


@pytest.mark.parametrize("case_id,call,expected", API_CASES, ids=[c[0] for c in API_CASES])
def test_bad_api_input(case_id, call, expected, api_model):
    with pytest.raises(UnmaskError) as info:
        call(api_model)
    msg = str(info.value)
    assert expected in msg and "\n" not in msg


def test_options_of_another_sampler_are_still_accepted(api_model):
    """The CLI passes every flag to every sampler: a real option of *some* sampler is fine."""
    out = _gen(api_model, threshold=0.9, candidate_number=3)
    assert len(out.sequences[0]) == 6


# ------------------------------------------------------------------ specials
def test_second_eval_on_the_same_folder_is_refused(tmp_path, capsys, monkeypatch):
    """Two evals of one run: while the first holds the run folder's lock, the second stops at
    once with one line (it used to decode every item again)."""
    from unmask.eval.lock import RunLock
    from unmask.eval.runner import EvalRun, EvalSpec

    monkeypatch.chdir(tmp_path)
    spec = EvalSpec(model=BASE, task=None, limit=1, output_dir=str(tmp_path / "out"), device="cpu", progress=False)
    run = EvalRun(spec)
    run.run_dir.mkdir(parents=True)
    with RunLock(run.run_dir):
        rc = main(["eval", *NAE, "--limit", "1", "--output_dir", str(tmp_path / "out"), "--device", "cpu"])
        err = capsys.readouterr().err.strip().splitlines()
        assert rc == 2 and len(err) == 1 and "already running this run" in err[0] and "pid" in err[0]
        assert not list(run.run_dir.glob("samples*.jsonl"))  # nothing was decoded
    # the lock dies with its holder: the same command now runs and finishes
    assert main(["eval", *NAE, "--limit", "1", "--output_dir", str(tmp_path / "out"), "--device", "cpu", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["n"] == 1


def test_dream_config_reads_without_rope_scaling_warning(tmp_path):
    """The official Dream config has ``rope_scaling: null``; reading it must not print
    transformers' FutureWarning."""
    from tiny import write_tiny

    from unmask.session import Session

    folder = write_tiny(tmp_path / "dream", "dream")
    cfg = json.loads((folder / "config.json").read_text())
    cfg.update(rope_scaling=None, model_type="Dream")
    (folder / "config.json").write_text(json.dumps(cfg))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        Session.load(str(folder), device="cpu")
    assert not [w for w in caught if "rope_scaling" in str(w.message)]


def _subprocess(args, **kw):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, "-m", "unmask", *args], capture_output=True, timeout=300, env=env, **kw)


def test_subprocess_invalid_utf8_argv(tmp_path):
    """A real process: raw invalid bytes in argv (Python keeps them as lone surrogates)."""
    p = _subprocess([b"sample", b"--model_name_or_path", BASE.encode(), b"--prompt", b"caf\xe9"],
                    cwd=tmp_path)
    err = p.stderr.decode().strip().splitlines()
    assert p.returncode == 2 and len(err) == 1 and "--prompt is not valid UTF-8" in err[0], p.stderr


def test_subprocess_lm_eval_error_is_the_only_line(tmp_path):
    pytest.importorskip("lm_eval")
    p = _subprocess(["lm-eval", "--model", "unmask", "--model_args", f"pretrained={BASE},temperature=nan",
                     "--tasks", "gsm8k", "--limit", "1"], cwd=tmp_path)
    err = p.stderr.decode().strip().splitlines()
    assert p.returncode == 2 and len(err) == 1 and err[0].startswith("error: temperature must be"), p.stderr


def test_train_module_errors_have_the_prefix(tmp_path, capsys):
    """``python -m unmask.train`` (the trainer's own ``main``) prints the same one-line errors."""
    from unmask.train.trainer import main as train_main

    assert train_main(["--out", str(tmp_path / "t"), "--resume"]) == 2
    assert capsys.readouterr().err.splitlines() == [f"error: --resume: no checkpoint at {tmp_path / 't' / 'ckpt.pt'}"]
    assert train_main(["--task", "nae_sat", "--out", str(tmp_path / "t"), "--init_from", str(tmp_path / "nope")]) == 2
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 1 and err[0].startswith("error: --init_from ") and "does not exist" in err[0]
