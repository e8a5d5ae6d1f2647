"""Settings chosen from the hardware, through the real CLI, with the hardware probe faked at its one place
(``training.pretrain.hardware.probe``); and what a user sees when training is stopped by a signal."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from training.cli import main
from training.pretrain import hardware

ROOT = Path(__file__).resolve().parents[3]
RECIPE = ROOT / "training" / "recipes" / "yadim" / "fashion_mnist.yaml"
TINY_ENCODER = json.dumps({"in_channels": 1, "image_size": 32, "ndf": 8, "n_rkhs": 32, "depth": 1})

ZEN = hardware.Hardware(cpu="AMD EPYC 7B13", cpu_bf16=False, cuda=False, cuda_bf16=False)
SAPPHIRE = hardware.Hardware(cpu="Intel Xeon Platinum 8480+", cpu_bf16=True, cuda=False, cuda_bf16=False)
H100 = hardware.Hardware(cpu="AMD EPYC", cpu_bf16=False, cuda=True, cuda_bf16=True, gpu="NVIDIA H100")
V100 = hardware.Hardware(cpu="Intel Xeon", cpu_bf16=False, cuda=True, cuda_bf16=False, gpu="Tesla V100")


def fit_args(root: Path, fmnist: Path, *extra: str) -> list:
    return ["fit", "--config", str(RECIPE), "--model.encoder", TINY_ENCODER, "--data.init_args.root", str(fmnist),
            "--data.init_args.batch_size", "16", "--trainer.max_steps", "2", "--trainer.default_root_dir",
            str(root), *extra]


def run_fit(monkeypatch, capfd, hw, tmp_path, fmnist_dir, *extra):
    monkeypatch.setattr(hardware, "probe", lambda: hw)
    code = main(fit_args(tmp_path / "run", fmnist_dir, *extra))
    out, err = capfd.readouterr()
    assert code == 0, out + err
    # what a user cannot act on stays out of the output: Lightning's tips and notices, deprecation warnings
    for noise in ("Tip:", "litlogger", "tensorboardX", "DeprecationWarning", "LightningCLI's args"):
        assert noise not in out + err, noise
    assert "training: 2 optimizer steps" in out and "epoch 1 done at step 2" in out
    ckpt = torch.load(next((tmp_path / "run").rglob("last.ckpt")), weights_only=True)
    return out, ckpt


@pytest.mark.slow
def test_cpu_without_native_bf16_trains_in_fp32(monkeypatch, capfd, tmp_path, fmnist_dir):
    out, ckpt = run_fit(monkeypatch, capfd, ZEN, tmp_path, fmnist_dir)
    line = next(x for x in out.splitlines() if x.startswith("precision "))
    assert line.startswith("precision 32-true (auto: AMD EPYC 7B13 has no native bf16")
    assert ckpt["zoo_settings"]["precision"] == "32-true"
    assert ckpt["zoo_settings"]["hardware"]["cpu"] == "AMD EPYC 7B13"
    assert ckpt["zoo_settings"]["channels_last"] is True
    saved = next((tmp_path / "run").rglob("config.yaml")).read_text()
    assert "precision: 32-true" in saved  # the resolved value, not 'auto', is what the run's config records


def test_cpu_with_native_bf16_uses_bf16_autocast(monkeypatch, capfd, tmp_path, fmnist_dir):
    out, ckpt = run_fit(monkeypatch, capfd, SAPPHIRE, tmp_path, fmnist_dir)
    assert "precision bf16-mixed (auto: Intel Xeon Platinum 8480+ runs bf16 natively" in out
    assert ckpt["zoo_settings"]["precision"] == "bf16-mixed"


def test_explicit_precision_and_memory_format_win(monkeypatch, capfd, tmp_path, fmnist_dir):
    out, ckpt = run_fit(monkeypatch, capfd, SAPPHIRE, tmp_path, fmnist_dir, "--trainer.precision", "32-true",
                        "--model.channels_last", "false")
    assert "precision 32-true (set explicitly" in out
    assert ckpt["zoo_settings"]["precision"] == "32-true"
    assert ckpt["zoo_settings"]["channels_last"] is False
    assert ckpt["hyper_parameters"]["channels_last"] is False


@pytest.mark.parametrize("hw, expected", [(H100, "bf16-mixed"), (V100, "16-mixed")])
def test_cuda_precision_follows_the_card(monkeypatch, capfd, tmp_path, fmnist_dir, hw, expected):
    # the CLI resolves the precision before it builds the Trainer; with no GPU here the Trainer then refuses
    # the 'gpu' accelerator, which is the only part of the run this test cannot reach
    monkeypatch.setattr(hardware, "probe", lambda: hw)
    with pytest.raises(Exception, match="(?i)gpu|cuda"):
        main(fit_args(tmp_path / "run", fmnist_dir, "--trainer.accelerator", "gpu"))
    out = capfd.readouterr().out
    assert f"precision {expected} (auto: {hw.gpu}" in out


def test_resolution_rules_directly():
    assert hardware.resolve_precision("auto", "cpu", ZEN)[0] == "32-true"
    assert hardware.resolve_precision(None, "cpu", SAPPHIRE)[0] == "bf16-mixed"
    assert hardware.resolve_precision("auto", "cpu", H100)[0] == "32-true"  # a GPU is there, but not asked for
    assert hardware.resolve_precision("auto", "auto", H100)[0] == "bf16-mixed"
    assert hardware.resolve_precision("16-mixed", "cpu", ZEN) == ("16-mixed", "set explicitly in the recipe or on "
                                                                              "the command line")
    with pytest.raises(ValueError, match="channels_last must be true, false or auto"):
        hardware.resolve_channels_last("sometimes")


def test_the_probe_asks_torch():
    hw = hardware.probe()
    assert hw.cpu and isinstance(hw.cpu_bf16, bool)
    caps = torch.cpu.get_capabilities()
    assert hw.cpu_bf16 == bool(caps.get("avx512_bf16") or caps.get("amx_bf16") or caps.get("amx_tile"))


def wait_for(predicate, proc, seconds=240):
    deadline = time.time() + seconds
    while time.time() < deadline:
        if predicate():
            return
        assert proc.poll() is None, proc.communicate()
        time.sleep(0.2)
    raise AssertionError("timed out")


def default_sigint() -> None:
    signal.signal(signal.SIGINT, signal.SIG_DFL)


@pytest.mark.slow
@pytest.mark.parametrize("sig, code", [(signal.SIGTERM, 143), (signal.SIGINT, 130)])
def test_a_signal_during_fit_exits_non_zero_naming_the_checkpoint(tmp_path, fmnist_dir, sig, code):
    args = fit_args(tmp_path / "run", fmnist_dir, "--trainer.max_steps", "100000", "--trainer.max_epochs", "1000")
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    # a shell without job control starts background commands (`make test &`, nohup) with SIGINT ignored, and the
    # child would inherit that; a terminal's Ctrl-C reaches a process whose SIGINT is at its default
    proc = subprocess.Popen([sys.executable, "-m", "training", *args], cwd=ROOT, env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, preexec_fn=default_sigint)
    wait_for(lambda: any((tmp_path / "run").rglob("last.ckpt")), proc)
    proc.send_signal(sig)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == code, (out[-2000:], err[-2000:])
    last = err.strip().splitlines()[-1]
    name = "SIGTERM" if sig == signal.SIGTERM else "Ctrl-C"
    assert last.startswith(f"error: stopped by {name}; last checkpoint "), err[-2000:]
    assert "resume with: python -m training fit --config" in last and "--ckpt_path" in last
    assert Path(last.split("--ckpt_path ")[-1]).is_file()


@pytest.mark.slow
def test_sigterm_during_the_demo_exits_non_zero(tmp_path, fmnist_dir):
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    proc = subprocess.Popen([sys.executable, "-m", "training.demo", "--data-root", str(fmnist_dir), "--out",
                             str(tmp_path / "demo"), "--epochs", "1000", "--batch-size", "16"],
                            cwd=ROOT, env=env, text=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    wait_for(lambda: any((tmp_path / "demo").rglob("last.ckpt")), proc)
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 143, (out[-2000:], err[-2000:])
    assert "error: stopped by SIGTERM; last checkpoint" in out


def test_progress_line_reports_rate_and_eta():
    from types import SimpleNamespace

    from training.pretrain.progress import ProgressLine, duration

    trainer = SimpleNamespace(global_step=50, estimated_stepping_batches=200, world_size=1, max_epochs=3,
                              current_epoch=0, callback_metrics={"loss": torch.tensor(2.5)})
    line = ProgressLine()
    line._start, line._first_step = 100.0, 0
    text = line.line(trainer, (torch.zeros(256, 1, 28, 28), None), now=200.0)  # 50 steps in 100 s
    assert text == ("step 50/200 (25%), epoch 1/3: 2.00 s/step, 128 images/s, loss 2.5000, ETA 5m00s")
    assert duration(3725) == "1h02m05s"


def test_the_training_line_prints_in_a_log_and_not_under_quiet(monkeypatch):
    """The step line is for logs as well as terminals (a cluster's job log is a file); only --quiet / ZOO_QUIET
    silence it, unlike the evaluation loops' progress, which a log does not get."""
    import io
    from types import SimpleNamespace

    from training.pretrain.loop_progress import reporting
    from training.pretrain.progress import ProgressLine

    trainer = SimpleNamespace(global_step=5, estimated_stepping_batches=10, world_size=1, max_epochs=1,
                              current_epoch=0, callback_metrics={}, is_global_zero=True)
    batch = (torch.zeros(4, 1, 8, 8), None)

    def printed(**settings) -> str:
        stream = io.StringIO()  # not a terminal
        line = ProgressLine(every_seconds=0.0, stream=stream)
        line._start = line._last = 0.0
        with reporting(**settings):
            line.on_train_batch_end(trainer, None, None, batch, 0)
        return stream.getvalue()

    monkeypatch.delenv("ZOO_QUIET", raising=False)
    assert printed().startswith("step 5/10 (50%)")
    assert printed(quiet=True) == ""
    monkeypatch.setenv("ZOO_QUIET", "1")
    assert printed() == ""
