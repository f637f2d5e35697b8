"""The lm-evaluation-harness adapter on a tiny model with local task definitions, offline.
Skipped only when lm-eval is not installed (``pip install 'unmask[lm-eval]'``)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

lm_eval = pytest.importorskip("lm_eval")

from test_eval_fixtures import one_thread, text_model_dir  # noqa: E402,F401 - fixture

TASK_YAML = """
task: unmask_tiny_gen
dataset_path: json
dataset_kwargs:
  data_files:
    test: {data}
test_split: test
output_type: generate_until
doc_to_text: "q: {{{{question}}}} a:"
doc_to_target: "{{{{answer}}}}"
generation_kwargs:
  until: ["."]
  max_gen_toks: 6
  do_sample: false
metric_list:
  - metric: exact_match
    aggregation: mean
    higher_is_better: true
"""

MC_YAML = """
task: unmask_tiny_mc
dataset_path: json
dataset_kwargs:
  data_files:
    test: {data}
test_split: test
output_type: multiple_choice
doc_to_text: "q: {{{{question}}}} a:"
doc_to_choice: "{{{{choices}}}}"
doc_to_target: "{{{{label}}}}"
metric_list:
  - metric: acc
"""


@pytest.fixture()
def task_dir(tmp_path):
    data = tmp_path / "data.jsonl"
    rows = [{"question": "one plus one", "answer": "two", "choices": [" two", " three"], "label": 0},
            {"question": "two plus two", "answer": "four", "choices": [" four", " five"], "label": 0},
            {"question": "three plus one", "answer": "four", "choices": [" six", " four"], "label": 1}]
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    d = tmp_path / "tasks"
    d.mkdir()
    (d / "gen.yaml").write_text(TASK_YAML.format(data=data))
    (d / "mc.yaml").write_text(MC_YAML.format(data=data))
    return d


@pytest.mark.slow
def test_generate_until_and_mc_loglikelihood_through_simple_evaluate(text_model_dir, task_dir, tmp_path,  # noqa: F811
                                                                      monkeypatch):
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_CACHE", str(tmp_path / "hf_cache"))
    from lm_eval import simple_evaluate
    from lm_eval.tasks import TaskManager

    import unmask.eval.lm_eval_adapter  # noqa: F401 - registers "unmask"

    with one_thread():
        res = simple_evaluate(
            model="unmask",
            model_args=f"pretrained={text_model_dir},sampler=margin,max_new_tokens=6,mc_num=4,mc_batch_size=4,device=cpu",
            tasks=["unmask_tiny_gen", "unmask_tiny_mc"],
            task_manager=TaskManager(include_path=str(task_dir)),
            batch_size=2,
            log_samples=True,
            use_cache=str(tmp_path / "cache" / "lm"),
        )
    assert res["results"]["unmask_tiny_gen"]["exact_match,none"] >= 0.0
    assert 0.0 <= res["results"]["unmask_tiny_mc"]["acc,none"] <= 1.0
    for s in res["samples"]["unmask_tiny_gen"]:
        out = s["resps"][0][0]
        assert "." not in out  # the stop sequence was honoured
    ll = [s["resps"][0][0] for s in res["samples"]["unmask_tiny_mc"]]
    assert all(v[0] < 0 for v in ll)
    # the cache hook stored every generation: the sqlite cache file exists
    assert any(Path(tmp_path / "cache").iterdir())


def test_adapter_directly_stops_cache_hook_and_rolling(text_model_dir):  # noqa: F811
    from lm_eval.api.instance import Instance

    from unmask.eval.lm_eval_adapter import UnmaskLM

    seen = []

    class Hook:
        def add_partial(self, attr, req, res):
            seen.append((attr, req, res))

    with one_thread():
        lm = UnmaskLM(pretrained=str(text_model_dir), sampler="confidence", device="cpu", batch_size=2,
                      mc_num=2, mc_batch_size=2)
        lm.set_cache_hook(Hook())
        reqs = [Instance("generate_until", {}, (f"q: {w} a:", {"until": ["e"], "max_gen_toks": 5}), i)
                for i, w in enumerate(["one", "two", "three"])]
        outs = lm.generate_until(reqs)
        assert len(outs) == 3 and all("e" not in o for o in outs)
        assert [s[0] for s in seen] == ["generate_until"] * 3 and lm.stats["nfe"] > 0
        lls = lm.loglikelihood([Instance("loglikelihood", {}, ("q: one a:", " two"), 0)])
        assert lls[0][0] < 0 and isinstance(lls[0][1], bool)
        with pytest.raises(NotImplementedError):
            lm.loglikelihood_rolling([Instance("loglikelihood_rolling", {}, ("some text",), 0)])
