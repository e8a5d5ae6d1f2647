"""The demo's training preset follows the device the recipe trains on, not merely whether a CUDA card is present:
every (CUDA present, CPU native bf16) x (recipe accelerator cpu / gpu / auto), with a fake hardware probe."""

from __future__ import annotations

import pytest

from training import demo
from training.pretrain import hardware
from training.pretrain.fit_cli import Interrupted
from zoo.errors import ZooError


def machine(cuda: bool, cpu_bf16: bool) -> hardware.Hardware:
    return hardware.Hardware(cpu="Test CPU", cpu_bf16=cpu_bf16, cuda=cuda, cuda_bf16=cuda, gpu="Test GPU" if cuda
                             else None)


FEWER_STEPS = ["--trainer.max_epochs", "1", "--trainer.limit_train_batches", str(demo.FP32_CPU_STEPS)]
# (cuda, cpu_bf16, accelerator) -> the extra fit arguments, the reason's start ("error" where it must refuse)
GRID = [
    (False, False, "cpu", FEWER_STEPS, "100 steps"),
    (False, True, "cpu", [], "the recipe as it is (3 epochs) on the CPU"),
    (True, False, "cpu", FEWER_STEPS, "100 steps"),  # the card does not help a recipe pinned to the CPU
    (True, True, "cpu", [], "the recipe as it is (3 epochs) on the CPU"),
    (False, False, "gpu", None, "error"),
    (False, True, "gpu", None, "error"),
    (True, False, "gpu", [], "the recipe as it is (3 epochs) on Test GPU (bf16-mixed)"),
    (True, True, "gpu", [], "the recipe as it is (3 epochs) on Test GPU (bf16-mixed)"),
    (False, False, "auto", FEWER_STEPS, "100 steps"),
    (False, True, "auto", [], "the recipe as it is (3 epochs) on the CPU"),
    (True, False, "auto", [], "the recipe as it is (3 epochs) on Test GPU (bf16-mixed)"),
    (True, True, "auto", [], "the recipe as it is (3 epochs) on Test GPU (bf16-mixed)"),
]


@pytest.mark.parametrize("cuda, cpu_bf16, accelerator, extra, why", GRID)
def test_preset_for_each_machine_and_recipe_accelerator(cuda, cpu_bf16, accelerator, extra, why):
    hw = machine(cuda, cpu_bf16)
    if why == "error":
        with pytest.raises(ZooError, match="trains on accelerator 'gpu' but torch sees no CUDA device"):
            demo.preset(hw, accelerator)
        return
    got, reason = demo.preset(hw, accelerator)
    assert got == extra and reason.startswith(why), reason
    if extra:
        assert reason.endswith("Test CPU has no native bf16, so it trains in fp32")


def test_the_recipes_accelerator_and_the_demos_overrides_are_read(tmp_path):
    assert demo.trainer_setting(["fit", "--config", str(demo.RECIPE)], "accelerator") == "cpu"
    other = tmp_path / "other.yaml"
    other.write_text("trainer: {accelerator: gpu}\n")
    assert demo.trainer_setting(["fit", "--config", str(demo.RECIPE), "--config", str(other)], "accelerator") == "gpu"
    args = ["fit", "--config", str(other), "--trainer.accelerator", "auto"]
    assert demo.trainer_setting(args, "accelerator") == "auto"
    assert demo.trainer_setting(["fit", "--config", str(other), "--trainer.accelerator=cpu"], "accelerator") == "cpu"
    assert demo.trainer_setting(["fit", "--config", str(demo.RECIPE)], "strategy") is None


def test_the_demo_trains_a_cpu_pinned_recipe_with_the_cpu_preset_on_a_cuda_machine(monkeypatch, tmp_path, fmnist_dir,
                                                                                    capsys):
    """The reported case: a CUDA card and a CPU without native bf16; the recipe pins the CPU, so fewer steps."""
    seen = []

    def stop(args):
        seen.append(args)
        raise Interrupted("stopped by the test", 3)

    monkeypatch.setattr(hardware, "probe", lambda: machine(cuda=True, cpu_bf16=False))
    monkeypatch.setattr(demo, "lightning_cli", stop)
    assert demo.demo(out=str(tmp_path / "out"), data_root=str(fmnist_dir)) == 3
    assert seen[0][-6:-2] == FEWER_STEPS, seen  # then --data.init_args.root DIR
    assert "[1/5] training, 100 steps of 256 images" in capsys.readouterr().out
