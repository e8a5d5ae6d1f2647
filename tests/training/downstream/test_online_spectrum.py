"""``OnlineSpectrum``: RankMe and alpha-ReQ logged during pre-training, without changing the run."""

import csv

import pytest
import torch

from tests.training.downstream.test_online_and_plots import fit
from training.downstream.frozen import extract_features
from training.downstream.online_spectrum import OnlineSpectrum
from training.downstream.plots import read_metrics
from training.downstream.spectrum import alpha_req, rankme
from training.pretrain.data import FashionMNISTDataModule
from zoo.errors import ZooError


def test_online_spectrum_logs_both_figures_of_the_test_features_without_touching_the_method(fmnist_dir, tmp_path):
    spectrum = OnlineSpectrum()
    watched = fit(fmnist_dir, [spectrum], tmp_path / "a")
    without = fit(fmnist_dir, [], tmp_path / "b")
    for (name, a), (_, b) in zip(watched.state_dict().items(), without.state_dict().items(), strict=True):
        assert torch.equal(a, b), f"{name} differs: the online figures changed pre-training"
    watched.eval()
    with torch.no_grad():
        features, _ = extract_features(watched.encode_for_eval,
                                       FashionMNISTDataModule(root=str(fmnist_dir)).test_dataloader())
    assert len(features) == 40 and len(spectrum.history) == 1
    epoch, logged_rankme, logged_areq = spectrum.history[0]
    assert epoch == 1 and logged_rankme == pytest.approx(rankme(features), rel=1e-6)
    assert logged_areq == pytest.approx(alpha_req(features), rel=1e-6)
    rows = list(csv.DictReader(next((tmp_path / "a").rglob("metrics.csv")).open()))
    logged = [row for row in rows if row.get("rankme")]
    assert len(logged) == 1 and float(logged[0]["rankme"]) == pytest.approx(logged_rankme, rel=1e-6)
    assert float(logged[0]["areq"]) == pytest.approx(logged_areq, rel=1e-6)
    series = read_metrics(next((tmp_path / "a").rglob("metrics.csv")))  # what `python -m training plot` draws
    assert [v for _, v in series["rankme"]] == [float(logged[0]["rankme"])] and len(series["areq"]) == 1
    restored = OnlineSpectrum()
    restored.load_state_dict(spectrum.state_dict())
    assert restored.history == spectrum.history


def test_online_spectrum_refuses_a_period_that_logs_nothing():
    with pytest.raises(ZooError, match="OnlineSpectrum needs every_n_epochs >= 1, got 0"):
        OnlineSpectrum(every_n_epochs=0)


def test_beside_online_knn_the_test_split_is_encoded_once_and_the_figures_are_the_same(fmnist_dir, tmp_path,
                                                                                     monkeypatch):
    import training.downstream.callback_inputs as inputs
    from training.downstream.online import OnlineKNN

    passes = []

    def counted(encode, batches, device="cpu", what=""):
        passes.append(what)
        return extract_features(encode, batches, device, what=what)

    alone = OnlineSpectrum()
    fit(fmnist_dir, [alone], tmp_path / "alone")
    monkeypatch.setattr(inputs, "extract_features", counted)
    knn, beside = OnlineKNN(k=3), OnlineSpectrum()
    fit(fmnist_dir, [knn, beside], tmp_path / "beside")
    assert passes == ["bank features for OnlineKNN", "test features for OnlineKNN"]  # the test pass is shared
    assert beside.history == alone.history and len(knn.history) == 1
