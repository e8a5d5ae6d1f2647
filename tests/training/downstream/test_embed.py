"""``embed_folder`` and ``python -m training embed``: one row per image equal to encoding it alone, resumption
that recomputes nothing already saved, one-line errors, and every output format read back."""

import io
import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import zoo
from tests.helpers.zoo_exports import make_export
from training.cli import main
from training.downstream.embed import embed_folder, work_folder
from training.downstream.embed_formats import read_embeddings
from training.pretrain import hardware
from zoo.errors import ZooError

PRECISE = dict(precision="32-true", batch_size=8, chunk_size=16)


def make_image(kind: str, pixels: np.ndarray, sixteen: np.ndarray) -> Image.Image:
    """An image of ``kind`` from random (H, W, 4) uint8 ``pixels`` (or the (H, W) uint16 ``sixteen``)."""
    if kind in ("grey", "grey_jpeg"):
        return Image.fromarray(pixels[..., 0])
    if kind == "rgba":
        return Image.fromarray(pixels, "RGBA")
    if kind == "palette":
        return Image.fromarray(pixels[..., :3]).convert("P", palette=Image.ADAPTIVE, colors=16)
    if kind == "sixteen":
        return Image.fromarray(sixteen)  # mode I;16
    return Image.fromarray(pixels[..., :3])  # rgb, jpeg, odd


def mixed_images(root: Path) -> list:
    """40 small images of every kind under nested folders (plus a text file that is no image); their relative
    paths, sorted."""
    rng = np.random.default_rng(0)
    kinds = ["grey", "rgb", "rgba", "palette", "sixteen", "jpeg", "grey_jpeg", "odd"]
    names = []
    for i in range(40):
        kind = kinds[i % len(kinds)]
        h, w = (int(rng.integers(1, 9)), int(rng.integers(40, 70))) if kind == "odd" else rng.integers(9, 48, 2)
        image = make_image(kind, rng.integers(0, 256, (h, w, 4), dtype=np.uint8),
                           rng.integers(0, 65536, (h, w), dtype=np.uint16))
        folder = ["", "cats", "cats/young", "deep/a/b/c"][i % 4]
        suffix = ".jpg" if "jpeg" in kind else ".PNG" if i % 10 == 3 else ".png"
        name = f"{folder}/{i:02d}_{kind}{suffix}".lstrip("/")
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        image.save(root / name)
        names.append(name)
    (root / "cats" / "notes.txt").write_text("not an image, not a row")
    return sorted(names)


@pytest.fixture(scope="module")
def export(tmp_path_factory):
    return make_export(tmp_path_factory.mktemp("embed") / "tiny", seed=0)


@pytest.fixture
def images(tmp_path):
    root = tmp_path / "images"
    return root, mixed_images(root)


class Counting(torch.nn.Module):
    """The encoder, counting the images it encodes; raises on call ``fail_at`` (1-based) to stand in for a kill."""

    def __init__(self, export, fail_at=None):
        super().__init__()
        self.inner = zoo.load_encoder(export)
        self.zoo_config = self.inner.zoo_config
        self.images = self.calls = 0
        self.fail_at = fail_at

    def forward(self, x):
        self.calls += 1
        if self.calls == self.fail_at:
            raise KeyboardInterrupt("killed half-way")
        self.images += len(x)
        return self.inner(x)


def test_every_image_is_one_row_equal_to_encoding_it_alone(export, images, tmp_path):
    root, names = images
    out = tmp_path / "emb.npy"
    summary = embed_folder(root, str(export), out, **PRECISE)
    paths, features, metadata = read_embeddings(out)
    assert paths == names and features.shape == (40, 32) and summary["rows"] == 40
    alone = zoo.load_encoder(export)
    preprocess = zoo.eval_transform(alone)
    with torch.no_grad():
        for path, row in zip(paths, features, strict=True):
            with Image.open(root / path) as image:
                expected = alone(preprocess(image)[None])[0].numpy()
            np.testing.assert_allclose(row, expected, rtol=0, atol=1e-5, err_msg=path)
    assert metadata["precision"] == "32-true" and metadata["channels_last"] is True
    assert metadata["rows"] == 40 and metadata["skipped_unreadable"] == {} and metadata["encoder"] == str(export)
    assert not work_folder(out).exists()


def test_a_run_killed_half_way_resumes_without_recomputing_saved_chunks(export, images, tmp_path):
    root, _ = images
    whole = tmp_path / "whole.npy"
    embed_folder(root, Counting(export), whole, **PRECISE)
    out = tmp_path / "resumed.npy"
    killed = Counting(export, fail_at=3)  # batches of 8, chunks of 16: chunk 0 is saved, the 3rd batch dies
    with pytest.raises(KeyboardInterrupt):
        embed_folder(root, killed, out, **PRECISE)
    assert killed.images == 16 and not out.exists()
    assert sorted(p.name for p in work_folder(out).iterdir()) == ["chunk-000000.npz", "manifest.json"]
    rerun = Counting(export)
    summary = embed_folder(root, rerun, out, **PRECISE)
    assert rerun.images == 24 and summary["resumed"] == 16 and summary["encoded"] == 24
    assert read_embeddings(out)[0] == read_embeddings(whole)[0]
    assert np.array_equal(read_embeddings(out)[1], read_embeddings(whole)[1])
    assert not work_folder(out).exists()


def test_chunks_of_other_settings_are_thrown_away(export, images, tmp_path):
    root, _ = images
    out = tmp_path / "emb.npy"
    with pytest.raises(KeyboardInterrupt):
        embed_folder(root, Counting(export, fail_at=3), out, **PRECISE)
    rerun, said = Counting(export), io.StringIO()
    embed_folder(root, rerun, out, **{**PRECISE, "batch_size": 4}, stream=said)
    assert rerun.images == 40 and "holds chunks of another run" in said.getvalue()


def test_an_unreadable_image_stops_the_run_naming_it_or_is_skipped(export, images, tmp_path, capsys):
    root, names = images
    good = (root / names[5]).read_bytes()
    (root / "cats" / "broken.png").write_bytes(good[: len(good) // 2])  # truncated
    out = tmp_path / "emb.csv"
    args = ["embed", str(root), "--encoder", str(export), "--out", str(out), "--precision", "32-true"]
    assert main(args) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"error: cannot decode image {root / 'cats' / 'broken.png'}: ") and "\n" not in err
    assert "--skip-unreadable true" in err and not out.exists() and not work_folder(out).exists()
    assert main(args + ["--skip-unreadable", "true"]) == 0
    captured = capsys.readouterr()
    assert json.loads(captured.out)["rows"] == 40 and json.loads(captured.out)["skipped_unreadable"] == 1
    assert "skipped 1 unreadable" in captured.err
    paths, _, metadata = read_embeddings(out)
    assert paths == names and list(metadata["skipped_unreadable"]) == ["cats/broken.png"]


@pytest.mark.parametrize("suffix", [".csv", ".parquet"])
def test_each_format_reads_back_the_same_rows(export, images, tmp_path, suffix):
    root, names = images
    embed_folder(root, str(export), tmp_path / "ref.npy", **PRECISE)
    reference = read_embeddings(tmp_path / "ref.npy")
    out = tmp_path / f"emb{suffix}"
    embed_folder(root, str(export), out, **PRECISE)
    paths, features, metadata = read_embeddings(out)
    assert paths == names == reference[0] and features.dtype == np.float32
    assert np.array_equal(features, reference[1])  # bit for bit, csv's 9 digits included
    assert metadata["precision"] == "32-true" and metadata["rows"] == 40
    if suffix == ".parquet":
        import pyarrow.parquet as pq

        (tmp_path / "emb.parquet.json").unlink()  # the metadata is in the file itself too
        assert read_embeddings(out)[2]["weights_sha256"] == metadata["weights_sha256"]
        assert pq.read_table(out).column_names == ["path", "embedding"]


def test_bad_outputs_and_a_missing_pyarrow_give_one_line_errors(export, images, tmp_path, capsys, monkeypatch):
    root, _ = images
    (tmp_path / "there.npy").write_bytes(b"")
    cases = {str(tmp_path / "emb.txt"): "cannot tell the format of", str(tmp_path / "there.npy"): "already exists; "
             "pass --overwrite true"}
    for out, message in cases.items():
        assert main(["embed", str(root), "--encoder", str(export), "--out", out]) == 2
        err = capsys.readouterr().err
        assert err.startswith("error: ") and message in err and err.count("\n") == 1
    monkeypatch.setitem(sys.modules, "pyarrow", None)
    with pytest.raises(ZooError, match=r"needs pyarrow: pip install 'contrastive-zoo\[parquet\]'"):
        embed_folder(root, str(export), tmp_path / "emb.parquet")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ZooError, match="holds no image files"):
        embed_folder(tmp_path / "empty", str(export), tmp_path / "a.npy")
    with pytest.raises(ZooError, match="is not a folder of images"):
        embed_folder(tmp_path / "nowhere", str(export), tmp_path / "a.npy")


class Terminal(io.StringIO):
    def isatty(self):
        return True


def test_progress_lines_on_a_terminal_and_only_the_final_line_otherwise(export, images, tmp_path):
    root, _ = images
    streams = {"tty": Terminal(), "quiet": Terminal(), "pipe": io.StringIO()}
    for name, stream in streams.items():
        embed_folder(root, str(export), tmp_path / f"{name}.npy", **PRECISE, stream=stream, progress_every=0,
                     quiet=name == "quiet")
    lines = streams["tty"].getvalue().splitlines()
    assert [line.split(" images,")[0] for line in lines[:-1]] == [f"embed: {n}/40" for n in range(8, 41, 8)]
    assert all("images/s, ETA " in line for line in lines[:-1])
    assert lines[-1].startswith(f"embed: 40 rows x 32 dims written to {tmp_path / 'tty.npy'} in ")
    for name in ("quiet", "pipe"):
        (line,) = streams[name].getvalue().splitlines()
        assert line.startswith(f"embed: 40 rows x 32 dims written to {tmp_path / name}.npy in ")


@pytest.mark.parametrize("native", [True, False])
def test_auto_precision_follows_the_hardware_and_is_stated(export, images, tmp_path, monkeypatch, native):
    root, _ = images
    machine = hardware.Hardware(cpu="test CPU", cpu_bf16=native, cuda=False, cuda_bf16=False)
    monkeypatch.setattr(hardware, "probe", lambda: machine)
    out = tmp_path / "auto.npy"
    embed_folder(root, str(export), out, batch_size=8, device="cpu")
    _, features, metadata = read_embeddings(out)
    assert metadata["precision"] == ("bf16-mixed" if native else "32-true")
    assert metadata["precision_reason"].startswith("auto: test CPU") and metadata["cpu"] == "test CPU"
    embed_folder(root, str(export), tmp_path / "fp32.npy", **PRECISE)
    fp32 = read_embeddings(tmp_path / "fp32.npy")[1]
    if native:  # bf16 autocast: close to fp32, not equal
        assert not np.array_equal(features, fp32)
        cosine = (features * fp32).sum(1) / np.linalg.norm(features, axis=1) / np.linalg.norm(fp32, axis=1)
        assert cosine.min() > 0.99
    else:
        np.testing.assert_allclose(features, fp32, rtol=0, atol=1e-6)
