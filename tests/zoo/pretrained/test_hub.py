"""export -> publish to the Hub -> download through a mirror -> load_encoder, all offline on 127.0.0.1.

Publishing goes through ``HubStub``, a loopback STUB of the Hub's commit endpoints (no local server accepts
uploads; see tests/helpers/hub_servers.py), driven by ``python -m training publish`` with the usual ``HF_ENDPOINT`` and
``HF_TOKEN`` variables. The stub writes each commit into a local directory hub; the real olah mirror serves that
folder, and ``zoo.load_encoder`` downloads from it with ``hf_hub_download`` in fresh processes (huggingface_hub
reads ``HF_ENDPOINT`` and ``HF_HUB_OFFLINE`` when it is imported).
"""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import zoo
from tests.helpers.hub_servers import HubStub, OlahServer, SilentServer
from tests.helpers.zoo_exports import make_export, outputs

REPO = "zoo/yadim-tiny"
ROOT_DIR = str(Path(__file__).resolve().parents[3])
pytestmark = [pytest.mark.skipif(not OlahServer.available(), reason="olah (dev extra) is not installed"),
              pytest.mark.slow]  # a hub stub and an olah mirror in other processes: not in `make test-quick`

LOAD_SCRIPT = """
import json, sys, time, torch, zoo
from tests.helpers.zoo_exports import outputs
results, errors = {}, {}
for key, spec, registry in json.loads(sys.argv[1]):
    start = time.perf_counter()
    try:
        results[key] = outputs(zoo.load_encoder(spec, registry=registry))
    except zoo.ZooError as err:
        errors[key] = [str(err), time.perf_counter() - start]
torch.save(results, sys.argv[2])
print(json.dumps(errors))
"""


def run(args, env, cwd=ROOT_DIR):
    base = {k: v for k, v in os.environ.items() if not k.startswith("HF_")}
    proc = subprocess.run([sys.executable, *args], env={**base, "HF_HUB_DISABLE_TELEMETRY": "1", **env}, cwd=cwd,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc.stdout


@pytest.fixture(scope="module")
def hub(tmp_path_factory):
    """Two publishes of yadim.tiny through the stub (seed 0, then seed 1), then olah over the same folder."""
    base = tmp_path_factory.mktemp("zoo-hub")
    root, reg = base / "hub", base / "registry.json"
    folders = [make_export(base / f"exp{seed}", seed=seed) for seed in (0, 1)]
    revisions = []
    with HubStub(root) as stub:
        env = {"HF_ENDPOINT": stub.url, "HF_TOKEN": "hf_stub_token", "HF_HOME": str(base / "hf-publisher")}
        for seed, folder in enumerate(folders):
            out = run(["-m", "training", "publish", str(folder), "--repo-id", REPO, "--registry", str(reg)], env)
            revisions.append(json.loads(reg.read_text())["entries"]["yadim.tiny"]["source"]["revision"])
            assert revisions[-1] in out
            if seed == 0:
                shutil.copy(reg, base / "registry-old.json")
        assert stub.unknown == []
    with OlahServer(root, base / "olah") as olah:
        yield dict(base=base, reg=str(reg), old_reg=str(base / "registry-old.json"), folders=folders,
                   revisions=revisions, endpoint=olah.endpoint, cache=str(base / "hf-cache"))


def load_in_subprocess(hub, specs, offline=False):
    out_file = hub["base"] / f"outputs-{len(list(hub['base'].glob('outputs-*')))}.pt"
    env = {"HF_ENDPOINT": hub["endpoint"], "HF_HOME": hub["cache"], **({"HF_HUB_OFFLINE": "1"} if offline else {})}
    errors = json.loads(run(["-c", LOAD_SCRIPT, json.dumps(specs), str(out_file)], env).strip().splitlines()[-1])
    return torch.load(out_file, weights_only=True), errors


def test_publish_download_and_load_give_identical_outputs_and_pin_revisions(hub):
    old, new = hub["revisions"]
    results, errors = load_in_subprocess(hub, [
        ["by_name", "yadim.tiny", hub["reg"]],
        ["default_alias", "yadim", hub["reg"]],
        ["old_pinned_id", f"hf-hub:{REPO}@{old}", hub["old_reg"]],
        ["main", f"hf-hub:{REPO}", None],
        ["missing_revision", f"hf-hub:{REPO}@no-such-branch", None],
        ["missing_repo", "hf-hub:zoo/never-published@main", None],
    ])
    first, second = (outputs(zoo.load_encoder(folder)) for folder in hub["folders"])
    assert torch.equal(results["by_name"], second) and torch.equal(results["default_alias"], second)
    assert torch.equal(results["main"], second)
    assert torch.equal(results["old_pinned_id"], first) and not torch.equal(first, second)
    assert "not found" in errors["missing_revision"][0] and "no-such-branch" in errors["missing_revision"][0]
    assert "zoo/never-published" in errors["missing_repo"][0] and "not found" in errors["missing_repo"][0]
    assert old != new


def test_offline_cache_serves_loaded_entries_and_a_tampered_blob_fails_sha256(hub):
    load_in_subprocess(hub, [["warm", "yadim.tiny", hub["reg"]]])
    results, errors = load_in_subprocess(hub, [
        ["cached", "yadim.tiny", hub["reg"]],
        ["not_cached", "hf-hub:zoo/other@main", None],
    ], offline=True)
    assert torch.equal(results["cached"], outputs(zoo.load_encoder(hub["folders"][1])))
    message, seconds = errors["not_cached"]
    assert "HF_HUB_OFFLINE" in message and seconds < 2.0
    snapshot = Path(hub["cache"]) / "hub" / "models--zoo--yadim-tiny" / "snapshots" / hub["revisions"][1]
    blob = (snapshot / "model.safetensors").resolve()
    data = bytearray(blob.read_bytes())
    data[len(data) // 2] ^= 0x01
    blob.write_bytes(bytes(data))
    _, errors = load_in_subprocess(hub, [["tampered", "yadim.tiny", hub["reg"]]], offline=True)
    assert "model.safetensors has sha256" in errors["tampered"][0]
    assert "weights registry expects" in errors["tampered"][0]


RACE_SCRIPT = """
import os, sys, time, torch, zoo
from tests.helpers.zoo_exports import outputs
print("ready", flush=True)
while not os.path.exists(sys.argv[2]):
    time.sleep(0.001)
torch.save(outputs(zoo.load_encoder("yadim.tiny", registry=sys.argv[1])), sys.argv[3])
"""


def test_two_processes_loading_the_same_uncached_entry_at_once_both_succeed_with_one_cached_copy(hub):
    cache, go = hub["base"] / "hf-cache-race", hub["base"] / "race-go"
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("HF_")}, "HF_ENDPOINT": hub["endpoint"],
           "HF_HOME": str(cache), "HF_HUB_DISABLE_TELEMETRY": "1"}
    procs = [subprocess.Popen([sys.executable, "-c", RACE_SCRIPT, hub["reg"], str(go),
                               str(hub["base"] / f"race-{i}.pt")], env=env, cwd=ROOT_DIR, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for i in range(2)]
    for proc in procs:  # both have imported zoo and wait on the same starting line
        assert proc.stdout.readline().strip() == "ready", proc.stderr.read()[-3000:]
    go.touch()
    for proc in procs:
        _, err = proc.communicate(timeout=300)
        assert proc.returncode == 0, err[-3000:]
    expected = outputs(zoo.load_encoder(hub["folders"][1]))
    for i in range(2):
        assert torch.equal(torch.load(hub["base"] / f"race-{i}.pt", weights_only=True), expected)
    repo = cache / "hub" / "models--zoo--yadim-tiny"
    blobs = sorted(p.name for p in (repo / "blobs").iterdir())
    snapshot = repo / "snapshots" / hub["revisions"][1]
    files = {p.name: p.resolve().name for p in snapshot.iterdir()}
    assert {"config.json", "model.safetensors"} <= files.keys()
    assert sorted(set(files.values())) == blobs  # one blob per file, each linked from the snapshot
    assert not [p for p in repo.rglob("*") if p.name.endswith(".incomplete")]


TIMED_SCRIPT = """
import json, sys, time, zoo
seconds = {}
for key, spec, registry in json.loads(sys.argv[1]):
    start = time.perf_counter()
    zoo.load_encoder(spec, registry=registry)
    seconds[key] = time.perf_counter() - start
print(json.dumps(seconds))
"""


def test_an_unreachable_endpoint_is_not_waited_for_when_the_files_are_cached(hub):
    cache = str(hub["base"] / "hf-cache-unreachable")
    specs = [["pinned", "yadim.tiny", hub["reg"]], ["main", f"hf-hub:{REPO}", None]]
    load_in_subprocess({**hub, "cache": cache}, specs)
    with SilentServer() as silent:  # accepts and never answers, as a black-holed Hub does
        out = run(["-c", TIMED_SCRIPT, json.dumps(specs)], {"HF_ENDPOINT": silent.url, "HF_HOME": cache})
    seconds = json.loads(out.strip().splitlines()[-1])
    assert seconds["pinned"] < 2  # a commit sha in the cache: no request at all
    assert seconds["main"] < 5  # a branch: one short try of the Hub, then the cache (huggingface_hub alone: 10 s)
