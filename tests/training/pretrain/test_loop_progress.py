"""Progress of the loops a user waits on (extraction, kNN, linear probe, fine-tuning, the evaluate command): a line
at least every 10 s of (fake) time with done/total and ETA, and nothing or one final line when quiet or logged.

Time is a fake clock the loop body advances; nothing sleeps and nothing is timed."""

from __future__ import annotations

import io
import json
import re

import pytest
import torch

import zoo
from tests.helpers.zoo_exports import make_export
from training.cli import main
from training.downstream.finetune import finetune
from training.downstream.frozen import extract_features, fit_linear_probe
from training.pretrain.loop_progress import FINAL, LIVE, OFF, LoopProgress, Reporting, reporting, tracked


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


class Stamped(io.StringIO):
    """A stream that notes the fake time at which each line was written."""

    def __init__(self, clock: FakeClock, tty: bool = False) -> None:
        super().__init__()
        self.clock, self.tty, self.lines = clock, tty, []

    def write(self, text: str) -> int:
        self.lines += [(self.clock.now, line) for line in text.splitlines() if line]
        return len(text)

    def isatty(self) -> bool:
        return self.tty


def live(clock: FakeClock):
    stream = Stamped(clock)
    return stream, reporting(mode=LIVE, stream=stream, clock=clock)


def assert_every_ten_seconds(lines, end: float) -> None:
    times = [t for t, _ in lines]
    assert times[0] == 0.0 and times[-1] == end
    gaps = [b - a for a, b in zip(times, times[1:], strict=False)]
    assert max(gaps) <= 10.0, lines


def test_a_steady_loop_prints_done_total_and_eta_at_least_every_ten_seconds():
    clock = FakeClock()
    stream, context = live(clock)
    with context:
        for _ in tracked(range(50), "counting", 50, "steps"):
            clock.now += 3.0
    assert_every_ten_seconds(stream.lines, 150.0)
    assert stream.lines[0] == (0.0, "counting: 0/50 (0%) steps")
    # 3 s a step: a line is due once the next step would pass 10 s since the last one, i.e. every 3 steps
    assert stream.lines[1] == (9.0, "counting: 3/50 (6%) steps, 3.0 s each, ETA 2m21s")
    assert stream.lines[-1] == (150.0, "counting: 50 steps in 2m30s, 3.0 s each")
    assert all("ETA" in text and re.search(r" \d+/50 ", text) for _, text in stream.lines[1:-1])


def test_steps_longer_than_the_interval_each_print_a_line():
    clock = FakeClock()
    stream, context = live(clock)
    with context:
        for _ in tracked(range(4), "slow", 4):
            clock.now += 25.0
    assert [t for t, _ in stream.lines] == [0.0, 25.0, 50.0, 75.0, 100.0, 100.0]
    assert stream.lines[2][1] == "slow: 2/4 (50%) batches, 25.0 s each, ETA 0m50s"


def test_feature_extraction_reports_images_done_of_the_dataset():
    clock = FakeClock()
    stream, context = live(clock)
    data = torch.utils.data.TensorDataset(torch.zeros(2048, 1, 4, 4), torch.zeros(2048, dtype=torch.long))
    loader = torch.utils.data.DataLoader(data, batch_size=128)

    def encode(images):
        clock.now += 4.0  # each batch of 128 images takes 4 s of fake time
        return images.flatten(1)

    with context:
        feats, labels = extract_features(encode, loader, what="features")
    assert feats.shape == (2048, 16) and len(labels) == 2048
    assert_every_ten_seconds(stream.lines, 64.0)
    assert (8.0, "features: 256/2048 (12%) images, 32.0 images/s, ETA 0m56s") in stream.lines
    assert stream.lines[-1] == (64.0, "features: 2048 images in 1m04s, 32.0 images/s")


def test_the_linear_probe_reports_its_weight_decay_candidates_and_evaluations():
    clock = FakeClock()
    stream, context = live(clock)
    g = torch.Generator().manual_seed(0)
    x = torch.randn(200, 5, generator=g)
    y = (x[:, 0] > 0).long()

    def tick(_):
        clock.now += 2.0  # each forward pass of the probe: 2 s of fake time

    with context:
        hook = torch.nn.modules.module.register_module_forward_hook(lambda m, i, o: tick(m))
        try:
            probe = fit_linear_probe((x[:150], y[:150]), (x[150:], y[150:]), 2, weight_decays=(0.0, 1e-2),
                                     max_iter=20)
        finally:
            hook.remove()
    texts = [text for _, text in stream.lines]
    assert texts[0] == "linear probe, L-BFGS loss evaluations (at most): 0/50 (0%) evals"
    assert any("weight decay 0 (1/2)" in t for t in texts) and any("weight decay 0.01 (2/2)" in t for t in texts)
    assert all("ETA" in t for t in texts[1:-1])
    assert texts[-1].endswith(f"weight decay {probe['weight_decay']:g} chosen (val top-1 {probe['val_acc']:.4f})")
    assert_every_ten_seconds(stream.lines, clock.now)


def test_finetuning_reports_batches_and_epochs(tmp_path):
    clock = FakeClock()
    stream, context = live(clock)
    encoder = zoo.load_encoder(make_export(tmp_path / "exp", seed=0))
    labels = torch.arange(64) % 2
    images = (torch.randint(0, 100, (64, 1, 28, 28), generator=torch.Generator().manual_seed(0))
              + labels.view(-1, 1, 1, 1) * 120).to(torch.uint8)
    hook = encoder.register_forward_hook(lambda m, i, o: setattr(clock, "now", clock.now + 3.0) if m.training
                                         else None)
    with context:
        finetune(encoder, zoo.eval_transform(encoder), 2, (images[:48], labels[:48]), (images[48:], labels[48:]),
                 epochs=2, batch_size=16)
    hook.remove()
    texts = [text for _, text in stream.lines]
    assert texts[0] == "fine-tuning: 0/6 (0%) batches"
    assert texts[1] == "fine-tuning: 3/6 (50%) batches, epoch 1/2, 3.0 s each, ETA 0m09s"
    assert texts[-1].startswith("fine-tuning: 6 batches in 18.0 s, 3.0 s each; best val top-1 0.")
    assert_every_ten_seconds(stream.lines, 18.0)


def test_quiet_zoo_quiet_and_a_log_print_nothing(monkeypatch):
    clock = FakeClock()

    def run(**settings):
        stream = Stamped(clock, tty=settings.pop("tty", False))
        with reporting(stream=stream, clock=clock, **settings):
            for _ in tracked(range(30), "stage", 30):
                clock.now += 5.0
        return [text for _, text in stream.lines]

    monkeypatch.setenv("ZOO_PROGRESS", "1")  # even a forced live mode gives way to quiet
    assert run(quiet=True) == []
    with reporting(quiet=True):  # an inner context cannot undo an outer --quiet
        assert run(quiet=False) == []
    monkeypatch.delenv("ZOO_PROGRESS")
    monkeypatch.setenv("ZOO_QUIET", "1")
    assert run(tty=True) == []
    monkeypatch.delenv("ZOO_QUIET")
    assert run() == []  # not a terminal: quiet, as the issue asks
    assert run(mode=FINAL) == ["stage: 30 batches in 2m30s, 5.0 s each"]  # asked for: the final line only
    assert len(run(tty=True)) > 10  # a terminal: live lines


@pytest.mark.parametrize("env, tty, expected", [({}, True, LIVE), ({}, False, OFF), ({"ZOO_PROGRESS": "1"}, False, LIVE),
                                                ({"ZOO_QUIET": "1"}, True, OFF), ({"ZOO_QUIET": "0"}, True, LIVE)])
def test_the_mode_rule(monkeypatch, env, tty, expected):
    for name in ("ZOO_PROGRESS", "ZOO_QUIET"):
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    assert Reporting(stream=Stamped(FakeClock(), tty=tty)).resolved_mode() == expected


def test_a_loop_that_fails_prints_no_final_line():
    clock = FakeClock()
    stream = Stamped(clock)
    with reporting(mode=FINAL, stream=stream, clock=clock), pytest.raises(RuntimeError):
        for i in tracked(range(5), "failing", 5):
            if i == 2:
                raise RuntimeError("boom")
    assert stream.lines == []
    with reporting(mode=FINAL, stream=stream, clock=clock):
        LoopProgress("unknown length", None).over(iter([1, 2]))  # a generator not consumed prints nothing
        list(LoopProgress("unknown length", None).over(iter([1, 2])))
    assert [text for _, text in stream.lines] == ["unknown length: 2 batches in 0.0 s"]


def test_the_evaluate_command_is_quiet_when_asked(fmnist_dir, tmp_path, capsys, monkeypatch):
    folder = make_export(tmp_path / "exp", seed=0)
    args = ["evaluate", "--encoder", str(folder), "--data", "fashion_mnist", "--root", str(fmnist_dir),
            "--protocol", "linear"]
    assert main(args) == 0
    out, err = capsys.readouterr()
    assert err == ""  # captured, not a terminal: no progress
    monkeypatch.setenv("ZOO_PROGRESS", "1")  # a log that asks for it gets the live lines
    assert main(args) == 0
    out, err = capsys.readouterr()
    stages = {line.split(":")[0] for line in err.splitlines()}
    assert {"features of the training split", "features of the test split"} <= stages, err
    assert main([*args, "--quiet", "true"]) == 0  # --quiet wins over ZOO_PROGRESS=1
    quiet_out, quiet_err = capsys.readouterr()
    assert quiet_err == "" and json.loads(quiet_out)["top1"] == json.loads(out)["top1"]
