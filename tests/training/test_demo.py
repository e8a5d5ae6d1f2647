"""The demo's whole path (train -> export -> publish to a local hub -> load_encoder -> evaluate) on tiny data."""

import json
import subprocess

from training.demo import NAME, main


def test_demo_runs_end_to_end_and_publishes_two_revisions(fmnist_dir, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("ZOO_PROGRESS", "1")  # captured stderr is not a terminal: ask for the progress lines
    out = tmp_path / "demo"
    assert main(["--out", str(out), "--epochs", "1", "--batch-size", "32", "--data-root", str(fmnist_dir)]) == 0
    printed, err = capsys.readouterr()
    assert "| YADIM-trained encoder (zoo.load_encoder) | 256 |" in printed
    # [5/5] reports each evaluation stage as it goes
    stages = {line.split(":")[1].strip() for line in err.splitlines() if line.startswith("[5/5] YADIM-trained")}
    assert stages >= {"features of the training split", "features of the test split", "kNN votes (val)",
                      "kNN votes (test)", "linear probe, L-BFGS loss evaluations (at most)"}, err
    results = json.loads((out / "results.json").read_text())
    assert [r["representation"] for r in results["rows"]][1:] == [
        "random-init encoder (same architecture)", "YADIM-trained encoder (zoo.load_encoder)"]
    entry = json.loads((out / "registry.json").read_text())["entries"][NAME]
    assert entry["source"]["kind"] == "local-hub" and entry["source"]["root"] == "hub"
    assert entry["metrics"]["fashion_mnist/knn"] == round(results["rows"][-1]["knn"], 4)
    log = subprocess.run(["git", "--git-dir", str(out / "hub" / "models" / "demo" / "yadim-fashion-mnist"), "log",
                          "--format=%H %s"], capture_output=True, text=True, check=True).stdout.splitlines()
    assert len(log) == 2 and log[0].startswith(entry["source"]["revision"])
    assert "measured accuracies" in log[0]
