"""``tinyvgg experiment augment``: the gallery draws every augmentation as training does."""
import numpy as np
import pytest

from tinyvgg.cli import main
from tinyvgg.data import transforms as T
from tinyvgg.experiments import augment, run


@pytest.fixture(scope="module")
def photos(tmp_path_factory):
    """An image folder of random RGB pictures, 2 classes, at sizes other than the input's."""
    from PIL import Image
    root = tmp_path_factory.mktemp("photos")
    rng = np.random.default_rng(0)
    for name in ("cats", "dogs"):
        folder = root / "train" / name
        folder.mkdir(parents=True)
        for i in range(3):
            pixels = rng.integers(0, 256, (int(rng.integers(64, 90)), 72, 3), dtype=np.uint8)
            Image.fromarray(pixels).save(folder / f"{i}.png")
    return root


def test_the_mnist_gallery_shows_the_grey_augmentations_and_the_default(tmp_path):
    # flip and erase each change half the images: seed 6 has each change one of the four
    result = run("augment", tmp_path, seed=6, log=lambda line: None)
    assert result["columns"] == ["stored", "crop", "flip", "jitter", "rotate", "erase",
                                 "auto: crop"]
    assert all(change > 0 for change in result["changes"].values())
    figure = tmp_path / "augment-mnist.png"
    assert result["figures"] == [str(figure)]
    assert figure.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_each_column_is_the_training_transform_with_its_own_seeded_draws():
    shown = augment.gallery("mnist", seed=5, images=3)
    titles = [title for title, _, _ in shown["columns"]]
    stored = shown["columns"][0][2]
    assert stored.shape == (3, 1, 32, 32) and len(shown["classes"]) == 3
    column = titles.index("rotate")
    angles = np.random.default_rng([5, column]).uniform(-20, 20, 3)  # training's +-20 degrees
    np.testing.assert_array_equal(shown["columns"][column][2], T.rotate(stored, angles, 0.0))
    assert [type(t) for t in shown["columns"][column][1]] == [T.Pad, T.RandomRotation]
    other = augment.gallery("mnist", seed=6, images=3)
    assert shown["classes"] != other["classes"] or not np.array_equal(
        shown["columns"][column][2], other["columns"][column][2])


def test_an_image_folder_shows_all_eight_augmentations(photos, tmp_path, capsys):
    assert main(["experiment", "augment", "--dataset", "folder", "--data-dir", str(photos),
                 "--out", str(tmp_path), "--json"]) == 0
    printed = capsys.readouterr().out
    assert f"wrote {tmp_path / 'augment-folder.png'}" in printed
    shown = augment.gallery("folder", photos, images=2)
    titles = [title for title, _, _ in shown["columns"]]
    assert titles == ["stored", "scale", "crop", "flip", "jitter", "hue-sat", "rgb", "rotate",
                      "erase", "auto: scale,flip,rgb"]
    assert all(batch.shape == (2, 3, 32, 32) for _, _, batch in shown["columns"])
    hue = shown["columns"][titles.index("hue-sat")][1]
    assert isinstance(hue[-1], T.HueSaturationJitter) and hue[-1].hue == 0.05
    assert set(shown["classes"]) <= {"cats", "dogs"}


def test_data_options_are_refused_by_experiments_that_read_no_data(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["experiment", "init", "--dataset", "mnist", "--out", str(tmp_path)])
    assert exit_info.value.code == 2
    assert ("experiment init reads no data set: --dataset is not for it"
            in capsys.readouterr().err)
    with pytest.raises(SystemExit):
        main(["experiment", "augment", "--dataset", "folder", "--out", str(tmp_path)])
    assert "needs data_dir" in capsys.readouterr().err
    with pytest.raises(TypeError, match="run: unknown option size; the experiments take "
                                        "dataset, data_dir"):
        run("augment", tmp_path, size=3)
