"""``python -m training plan``: FLOPs counted on every recipe's real step, the ResNet-50 cross-check against
torchvision's published figure, activation memory measured on the CPU, and the plan's arithmetic."""

import json
from pathlib import Path

import pytest
import torch
import yaml

from training.cli import main
from training.plan.command import all_recipes, plan, table
from training.plan.flops import count_step
from training.plan.gpus import GPUS
from training.plan.markdown import README_BEGIN, README_END, cost_table, replace_readme_block
from training.plan.recipe import load_recipe

ROOT = Path(__file__).resolve().parents[3]
SIMCLR_IMAGENET = "training/recipes/simclr/imagenet.yaml"
SMALL = "training/recipes/yadim/fashion_mnist.yaml"


@pytest.fixture(autouse=True)
def _root(monkeypatch):
    monkeypatch.chdir(ROOT)


def test_resnet50_view_matches_torchvision_published_flops():
    """torchvision's ResNet-50 meta says 4.089 G "FLOPS" per 224x224 image, counted as multiply-adds; the plan counts
    2 FLOPs per multiply-add, so its per-view encoder figure must be twice that, within 5%."""
    from torchvision.models import ResNet50_Weights

    published_macs = ResNet50_Weights.IMAGENET1K_V2.meta["_ops"] * 1e9
    built = load_recipe(SIMCLR_IMAGENET)
    counted = count_step(built.module, built.image_shape, 4)
    (view,) = counted["views"]
    assert view["shape"] == [3, 224, 224] and view["count"] == 2
    assert view["encoder_forward_flops"] / 2 == pytest.approx(published_macs, rel=0.05)
    # the step: two views forward, and a backward the counter measured (about 2x, not assumed)
    assert counted["forward_flops_per_image"] > 2 * view["encoder_forward_flops"]
    assert 1.8 < counted["backward_flops_per_image"] / counted["forward_flops_per_image"] < 2.0


def test_imagenet_recipes_are_counted():
    """The ImageNet recipes (the largest models; ``python -m training plan --all`` counts all 29 for docs/costs.md),
    and SwAV CIFAR-10, whose queue the count switches on."""
    recipes = [r for r in all_recipes() if r.endswith("imagenet.yaml")] + ["training/recipes/swav/cifar10.yaml"]
    assert len(all_recipes()) >= 29 and len(recipes) == 8
    for recipe in recipes:
        built = load_recipe(recipe)
        counted = count_step(built.module, built.image_shape, 2)
        augment = yaml.safe_load(Path(recipe).read_text())["model"].get("augment", {})
        assert counted["forward_flops_per_image"] > 0, recipe
        assert counted["training_flops_per_image"] > counted["forward_flops_per_image"], recipe
        assert sum(v["count"] for v in counted["views"]) == counted["views_per_image"], recipe
        if "n_small" in augment:  # SwAV's multi-crop: two large crops and n_small small ones
            assert counted["views_per_image"] == 2 + augment["n_small"], recipe
        encoder_forward = sum(v["count"] * v["encoder_forward_flops"] for v in counted["views"])
        assert counted["forward_flops_per_image"] >= encoder_forward, recipe  # plus heads (and teachers)


def test_momentum_teacher_has_no_backward():
    """MoCo's key encoder runs forward only: its backward is about the student's alone, so the counted backward is
    about as large as the (student + teacher) forward, not twice it."""
    built = load_recipe("training/recipes/moco_v2/cifar10.yaml")
    counted = count_step(built.module, built.image_shape, 2)
    assert 0.9 < counted["backward_flops_per_image"] / counted["forward_flops_per_image"] < 1.1


def test_activation_memory_slope_matches_saved_tensors():
    """The plan's measured slope (peak memory of forked CPU steps) against what autograd saves for backward per
    image at the same batches: the slope holds the saved tensors plus transient buffers, so it is at least most of
    them and not many times more; the batch limit follows from it."""
    junk = [torch.ones(256, 1024) for _ in range(1000)]  # a long-lived process: 1 GB freed, still resident
    del junk
    p = plan(SMALL, gpu="h100")  # measured 0 bytes per image in such a process before the heap was trimmed
    act, e = p["activation_memory"], p["estimate"]
    small, large = act["batches"]
    assert small == 2 and large > small
    built = load_recipe(SMALL, device="cpu")
    module = built.module.train()

    def saved_bytes(batch):
        storages = {}

        def keep(t):
            storages[t.untyped_storage().data_ptr()] = t.untyped_storage().nbytes()
            return t

        images = torch.randint(0, 256, (batch, *built.image_shape), dtype=torch.uint8)
        with torch.autograd.graph.saved_tensors_hooks(keep, lambda t: t):
            module.loss_of_views(module._views(images))
        return sum(storages.values())

    saved = (saved_bytes(large) - saved_bytes(small)) / (large - small)
    assert 0.7 * saved < act["bytes_per_image"] < 4 * saved
    usable = (80 - 3.0) * 2**30 - sum(p["static_memory_bytes"].values())
    assert e["max_batch_per_gpu"] == int(usable // act["bytes_per_image"])
    assert e["loader"]["decodes_jpeg"] is False and e["loader"]["cores_per_gpu"] == 0


def test_plan_arithmetic_and_command_line(tmp_path, capsys):
    out = tmp_path / "plan.json"
    assert main(["plan", SIMCLR_IMAGENET, "--memory", "skip", "--gpu", "a100", "--mfu", "0.5",
                 "--price-per-hour", "2", "--json", str(out)]) == 0
    p = json.loads(out.read_text())
    e, a = p["estimate"], p["assumptions"]
    assert a["gpu"]["peak_tflops"] == GPUS["a100"].peak_tflops == 312.0 and a["mfu"] == 0.5
    assert p["batch_per_gpu"] == 128 and p["gpus"] == 32 and e["global_batch"] == 4096
    assert e["steps_per_epoch"] == 1_281_167 // 4096 == 312 and e["epochs"] == 100
    total = p["flops"]["training_flops_per_image"] * 312 * 4096 * 100
    assert e["total_pflops"] == pytest.approx(total / 1e15)
    assert e["gpu_hours"] == pytest.approx(total / (312e12 * 0.5) / 3600)
    assert e["cost"] == pytest.approx(2 * e["gpu_hours"])
    assert e["loader"]["decodes_jpeg"] is True and e["loader"]["decode"] == "cpu"
    jpeg = json.loads((ROOT / "bench" / "results" / "jpeg_decode.json").read_text())["results"]
    per_core = {k: v["images_per_s_per_core"] for k, v in jpeg.items() if "images_per_s_per_core" in v}
    assert e["loader"]["cores_per_gpu"] == pytest.approx(e["images_per_s_per_gpu"] / per_core["pil_resize_center_crop"])
    assert e["loader"]["cores_per_gpu_device_decode"] == pytest.approx(
        e["images_per_s_per_gpu"] / per_core["read_file_only"])
    assert p["published"][0]["figure"].startswith("100 epochs in about 6 h on 32 TPU v3")
    printed = capsys.readouterr().out
    assert "assumed MFU                0.5" in printed and "312.0 bf16 dense TFLOPS" in printed
    assert table(p).splitlines()[0].split() == ["recipe", SIMCLR_IMAGENET]
    markdown = cost_table([p], "python -m training plan X")
    assert "| simclr/imagenet.yaml | 28.0 | 2 | 224px: 8.17 |" in markdown
    assert "| simclr/imagenet | 100 epochs in about 6 h on 32 TPU v3 cores (bf16) |" in markdown


def test_readme_table_is_rewritten_between_its_markers_only(tmp_path, capsys):
    readme = tmp_path / "README.md"
    readme.write_text(f"# Title\n\nbefore\n{README_BEGIN}\nstale table\n{README_END}\nafter\n")
    assert main(["plan", SIMCLR_IMAGENET, "--memory", "skip", "--readme", str(readme)]) == 0
    text = readme.read_text()
    assert text.startswith("# Title\n\nbefore\n" + README_BEGIN) and text.endswith(README_END + "\nafter\n")
    assert "stale table" not in text
    assert f"`python -m training plan {SIMCLR_IMAGENET} --memory skip --readme {readme}`" in text
    row = [ln for ln in text.splitlines() if ln.startswith("| simclr/imagenet | 28.0 |")]
    assert len(row) == 1 and row[0].split(" | ")[2:7] == ["48.63", "-", "- (128)", "32", "100"]
    assert "| simclr/imagenet | 100 epochs in about 6 h on 32 TPU v3 cores (bf16) |" in text
    # on its own output the generated block is found and replaced whole, not appended to
    assert replace_readme_block(text, "NEW", "x") == "# Title\n\nbefore\nNEW\nafter\n"
    capsys.readouterr()
    bare = tmp_path / "BARE.md"
    bare.write_text("no markers\n")
    assert main(["plan", SIMCLR_IMAGENET, "--memory", "skip", "--readme", str(bare)]) == 2
    assert capsys.readouterr().err.startswith(f"error: {bare} needs exactly one pair of lines")
    assert bare.read_text() == "no markers\n"
    missing = tmp_path / "nowhere" / "README.md"
    assert main(["plan", SIMCLR_IMAGENET, "--memory", "skip", "--readme", str(missing)]) == 2
    assert capsys.readouterr().err.strip() == f"error: --readme {missing}: cannot read it (No such file or directory)"
    assert not missing.parent.exists()


def test_bad_inputs_give_one_line(capsys):
    assert main(["plan", SMALL, "--mfu", "0", "--memory", "skip"]) == 2
    assert capsys.readouterr().err.strip() == "error: --mfu must be in (0, 1], got 0.0"
    assert main(["plan", "training/recipes/none.yaml", "--memory", "skip"]) == 2
    assert capsys.readouterr().err.strip() == "error: recipe training/recipes/none.yaml does not exist"
