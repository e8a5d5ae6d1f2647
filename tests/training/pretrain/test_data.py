import gzip

import numpy as np
import pytest
import torch

from tests.helpers.data import write_idx
from training.downstream.frozen import fit_linear_probe, knn_predict
from training.pretrain.data import FashionMNISTDataModule, ImageFolderDataModule, read_idx
from zoo.errors import ZooError


def test_idx_round_trip(tmp_path):
    array = np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4)
    write_idx(tmp_path / "a.gz", array)
    assert np.array_equal(read_idx(tmp_path / "a.gz"), array)


def test_truncated_idx_is_rejected(tmp_path):
    write_idx(tmp_path / "a.gz", np.zeros((4, 5), dtype=np.uint8))
    raw = gzip.decompress((tmp_path / "a.gz").read_bytes())
    (tmp_path / "b").write_bytes(raw[:-3])
    with pytest.raises(ZooError, match="is truncated"):
        read_idx(tmp_path / "b")
    (tmp_path / "c").write_bytes(b"hello world")
    with pytest.raises(ZooError, match="not an unsigned-byte IDX file"):
        read_idx(tmp_path / "c")


def test_fashion_mnist_datamodule_batches(fmnist_dir):
    dm = FashionMNISTDataModule(root=str(fmnist_dir), batch_size=32, train_subset=64)
    dm.setup()
    images, labels = next(iter(dm.train_dataloader()))
    assert images.shape == (32, 1, 28, 28) and images.dtype == torch.uint8 and labels.dtype == torch.int64
    assert len(dm.train_dataloader()) == 2  # 64 images, drop_last
    test_images, _ = next(iter(dm.test_dataloader()))
    assert test_images.shape == (40, 1, 28, 28)


def test_missing_dataset_and_bad_batch(tmp_path):
    with pytest.raises(ZooError, match="Fashion-MNIST not found"):
        FashionMNISTDataModule(root=str(tmp_path / "nope")).setup()
    with pytest.raises(ZooError, match=r"^batch_size is 1; it must be an integer >= 2$"):
        FashionMNISTDataModule(batch_size=1)
    with pytest.raises(ZooError, match="image folder .* does not exist"):
        ImageFolderDataModule(root=str(tmp_path)).setup()


def test_training_split_smaller_than_a_batch(fmnist_dir):
    dm = FashionMNISTDataModule(root=str(fmnist_dir), batch_size=512)
    dm.setup()
    with pytest.raises(ZooError, match="fewer than one batch"):
        dm.train_dataloader()


def test_image_folder_of_pngs(tmp_path):
    from PIL import Image

    for cls in ("cat", "dog"):
        for split in ("train", "val"):
            (tmp_path / split / cls).mkdir(parents=True)
            for i in range(3):
                Image.new("L", (40 + i, 30), color=50 * i).save(tmp_path / split / cls / f"{i}.png")
    dm = ImageFolderDataModule(root=str(tmp_path), load_size=24, batch_size=4)
    dm.setup()
    images, labels = next(iter(dm.train_dataloader()))
    assert images.shape == (4, 3, 24, 24) and images.dtype == torch.uint8
    assert dm.num_classes == 2


def test_knn_votes_by_hand():
    bank = torch.tensor([[1.0, 0.0], [0.9, 0.1], [0.0, 1.0], [-1.0, 0.0]])
    labels = torch.tensor([0, 1, 1, 2])
    # query along +x: nearest are bank 0 (sim 1.0, class 0) and bank 1 (sim 0.994, class 1)
    # with k=2 and t=0.1, class 0 gets e^10 and class 1 gets e^9.94: class 0 wins
    assert knn_predict(torch.tensor([[1.0, 0.0]]), bank, labels, 3, k=2).tolist() == [0]
    # with k=3 the third neighbour (class 1, sim 0) adds e^0: 1 + e^9.94 < e^10, class 0 still wins
    assert knn_predict(torch.tensor([[1.0, 0.0]]), bank, labels, 3, k=3).tolist() == [0]
    # a query between bank 1 and bank 2 is closer to both class-1 vectors
    assert knn_predict(torch.tensor([[0.5, 0.6]]), bank, labels, 3, k=2).tolist() == [1]


def test_linear_probe_separates_a_linear_problem():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(600, 5, generator=g)
    y = (x[:, 0] + 0.5 * x[:, 1] > 0).long()
    probe = fit_linear_probe((x[:300], y[:300]), (x[300:400], y[300:400]), num_classes=2)
    assert (probe["predict"](x[400:]).argmax(1) == y[400:]).float().mean().item() > 0.97
    assert probe["val_acc"] > 0.97 and probe["weight_decay"] in (0.0, 1e-4, 1e-3)
    with pytest.raises(ZooError, match="at least two classes"):
        fit_linear_probe((x, torch.zeros(600, dtype=torch.long)), (x, y), num_classes=2)


def test_evaluate_frozen_on_the_tiny_dataset(fmnist_dir):
    import zoo
    from training.downstream.frozen import frozen_evaluation, frozen_features

    dm = FashionMNISTDataModule(root=str(fmnist_dir), batch_size=8)
    dm.setup()
    encoder = zoo.REGISTRIES["encoder"].build("amdim", dict(in_channels=1, image_size=32, ndf=4, n_rkhs=8, depth=1))
    pipe = zoo.REGISTRIES["augment"].build("yadim", dict(size=32, mean=[0.5], std=[0.25]))
    encode = frozen_features(encoder, pipe.eval_transform)
    images = torch.randint(0, 256, (2, 1, 28, 28), dtype=torch.uint8)
    with torch.no_grad():
        assert torch.allclose(encode(images), encoder.float()(pipe.eval_transform(images)), atol=1e-5)
    scores = frozen_evaluation(encode, dm)
    assert scores["dims"] == 8 and all(0.0 <= scores[p]["top1"] <= 1.0 for p in ("knn", "linear"))
