"""Loading models by name: the bundled MiniLM, a local folder, and names that do not exist."""

from __future__ import annotations

import pytest
from core_tiny import tiny_bert, tokenizer

from tunesmith.errors import AssetError
from tunesmith.models import load_model


def test_builtin_minilm_gets_a_labelled_head():
    loaded = load_model("minilm", task="classification", labels=["fresh", "rotten"])
    assert loaded.kind == "encoder" and loaded.name == "minilm"
    assert loaded.model.config.id2label == {0: "fresh", 1: "rotten"}
    assert loaded.model.config.label2id == {"fresh": 0, "rotten": 1}
    assert loaded.tokenizer.is_fast and loaded.tokenizer.pad_token_id is not None


def test_local_folder_loads_like_a_hub_id(tmp_path):
    tiny_bert().save_pretrained(tmp_path)
    tokenizer().save_pretrained(tmp_path)
    loaded = load_model(str(tmp_path), task="classification", labels=["a", "b", "c"])
    assert loaded.kind == "encoder" and loaded.model.config.num_labels == 3


def test_unknown_name_lists_the_builtins(tmp_path):
    with pytest.raises(AssetError) as info:
        load_model(str(tmp_path / "missing"), task="classification", labels=["a", "b"])
    assert "minilm" in info.value.message and "smollm2-135m-instruct" in info.value.message


def test_classification_needs_labels():
    with pytest.raises(AssetError, match="labels"):
        load_model("minilm", task="classification")


# Run in a child process whose environment is the user's: HF_HUB_OFFLINE unset. HF_ENDPOINT
# points at a closed port of this machine, so any hub request is refused here at once and
# nothing leaves the machine; HF_HUB_CACHE is a cache the test fills.
_RESOLVE = """
import json, sys, time
import transformers  # imported before the clock starts
from tunesmith.errors import AssetError
from tunesmith.models import load_model
out = {}
for name in sys.argv[1:]:
    start = time.perf_counter()
    try:
        loaded = load_model(name, task="classification", labels=["neg", "pos"])
        result = "loaded " + type(loaded.model).__name__
    except AssetError as exc:
        result = "error: " + exc.message
    out[name] = [result, time.perf_counter() - start]
print(json.dumps(out))
"""


def _fake_hub_cache(root, repo_id):
    """A Hugging Face cache holding ``repo_id`` (the tiny BERT), laid out as the hub writes it."""
    snapshot = root / f"models--{repo_id.replace('/', '--')}" / "snapshots" / ("0" * 40)
    tiny_bert().save_pretrained(snapshot)
    tokenizer().save_pretrained(snapshot)
    (snapshot.parent.parent / "refs").mkdir()
    (snapshot.parent.parent / "refs" / "main").write_text("0" * 40)


def test_names_resolve_locally_first_without_hf_hub_offline(tmp_path):
    import json
    import os
    import subprocess
    import sys

    _fake_hub_cache(tmp_path / "hub", "tinyorg/cached-bert")
    env = {k: v for k, v in os.environ.items() if k not in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")}
    env.update(HF_ENDPOINT="http://127.0.0.1:9", HF_HUB_CACHE=str(tmp_path / "hub"),
               PYTHONPATH=os.pathsep.join(sys.path))
    names = ["tinyorg/cached-bert", "not a model!", "someorg/not-cached", "./models/missing"]
    done = subprocess.run([sys.executable, "-c", _RESOLVE, *names], env=env, capture_output=True,
                          text=True, timeout=300, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    out = json.loads(done.stdout.strip().splitlines()[-1])
    # A hub id in the local cache loads from there: no request at all.
    assert out["tinyorg/cached-bert"][0] == "loaded BertForSequenceClassification"
    # Not a folder and not hub-id-shaped: fails before any request.
    assert "not a hub id" in out["not a model!"][0] and out["not a model!"][1] < 2
    assert "no such folder" in out["./models/missing"][0] and out["./models/missing"][1] < 2
    # A hub id neither built in nor cached: one request, refused, and the message says so,
    # instead of the download's retries with back-off (about 30 s).
    result, seconds = out["someorg/not-cached"]
    assert "hub could not be reached" in result and "someorg/not-cached" in result
    assert seconds < 5


@pytest.mark.parametrize("model_type", ["bert", "evil"])
def test_a_model_folder_with_custom_code_never_runs_it(tmp_path, model_type):
    """tunesmith never passes trust_remote_code: a config whose auto_map asks for its own
    Python code loads transformers' own class when the architecture is known ("bert"), fails
    with the unknown-model message when it is not ("evil"), and never imports that code."""
    import json

    folder = tmp_path / "custom"
    tiny_bert().save_pretrained(folder)
    tokenizer().save_pretrained(folder)
    marker = tmp_path / "custom-code-ran"
    (folder / "evil.py").write_text(
        f"import pathlib\npathlib.Path({str(marker)!r}).touch()\n"
        "from transformers import BertConfig, BertForSequenceClassification\n"
        "class EvilConfig(BertConfig):\n    model_type = 'evil'\n"
        "class EvilModel(BertForSequenceClassification):\n    config_class = EvilConfig\n"
    )
    config = json.loads((folder / "config.json").read_text())
    config["model_type"] = model_type
    config["auto_map"] = {"AutoConfig": "evil.EvilConfig",
                          "AutoModelForSequenceClassification": "evil.EvilModel"}
    (folder / "config.json").write_text(json.dumps(config))
    if model_type == "bert":
        loaded = load_model(str(folder), task="classification", labels=["neg", "pos"])
        assert type(loaded.model).__name__ == "BertForSequenceClassification"
    else:
        with pytest.raises(AssetError, match="unknown model"):
            load_model(str(folder), task="classification", labels=["neg", "pos"])
    assert not marker.exists()
