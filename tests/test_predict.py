"""Tests of unetlib.inference.predict: tiled inference, folders, stacks, run loading and errors."""

from __future__ import annotations

import keras
import numpy as np
import pytest
import tifffile

from unetlib.core.config import ModelConfig, NormalizeConfig, PredictConfig
from unetlib.core.errors import InputError, OutputError, ParameterError
from unetlib.core.io import read_image, write_image, write_json
from unetlib.data.normalize import normalize_image
from unetlib.inference.predict import predict_folder, validate_threshold
from unetlib.nn.model import build_unet
from unetlib.nn.sliding_window import predict_probabilities
from unetlib.runs.run import load_run, load_run_model
from unetlib.viz.overlays import overlay_image


@pytest.fixture(autouse=True)
def _seeded_fresh_keras_session(fresh_keras_session):
    keras.utils.set_random_seed(0)


def tiny_model(channels: int = 1, depth: int = 1, batch_norm: bool = False) -> keras.Model:
    return build_unet(ModelConfig(input_channels=channels, depth=depth, base_filters=4,
                                  batch_norm=batch_norm))


def noise(shape, seed=0):
    return np.random.default_rng(seed).random(shape, dtype=np.float32)


@pytest.mark.parametrize("size", [(100, 90), (32, 32), (17, 5), (1, 40)])
@pytest.mark.parametrize("channels", [1, 3])
def test_any_frame_size_keeps_resolution(size, channels):
    model = tiny_model(channels, depth=2)
    frame = noise((*size, channels))
    probability = predict_probabilities(model, frame, tile=32, overlap=16)
    assert probability.shape == size and probability.dtype == np.float32
    if max(size) <= 32:
        # One tile: the network's own output on the frame reflect-padded to a multiple of
        # 4 (depth 2), cropped back to the frame.
        padded = np.pad(frame, ((0, -size[0] % 4), (0, -size[1] % 4), (0, 0)),
                        mode="reflect" if min(size) > 1 else "edge")
        whole = keras.ops.convert_to_numpy(model(padded[np.newaxis]))[0, :size[0], :size[1], 0]
        np.testing.assert_allclose(probability, whole, atol=1e-5)


@pytest.mark.parametrize("batch_norm", [False, True])
@pytest.mark.slow
def test_tiling_equals_whole_frame_pass(batch_norm):
    # Depth 1 with 3x3 convolutions: receptive-field radius 9 px <= overlap/4 = 12 px, so
    # tiles agree with one pass to float precision, hence no seams.
    model = tiny_model(depth=1, batch_norm=batch_norm)
    image = noise((100, 90, 1))
    # batch_size=1: a forward pass holds one tile, so the frame (4 tiles' pixels) is tiled.
    whole = predict_probabilities(model, image, tile=512)
    tiled = predict_probabilities(model, image, tile=48, overlap=48 - 2, batch_size=1)
    assert np.abs(tiled - whole).max() < 1e-5
    tiled_batches = predict_probabilities(model, image, tile=48, overlap=46, batch_size=2)
    np.testing.assert_allclose(tiled_batches, tiled, atol=1e-6)


def test_deeper_model_tiles_are_close_to_whole_frame():
    model = tiny_model(depth=2, batch_norm=True)
    image = noise((100, 90, 1))
    whole = predict_probabilities(model, image, tile=512)
    tiled = predict_probabilities(model, image, tile=64, overlap=32, batch_size=1)
    assert 0 < np.abs(tiled - whole).mean() < 1e-3


def test_a_frame_that_fits_in_one_forward_pass_of_tiles_is_predicted_whole():
    """A 100 x 92 frame holds fewer pixels than 4 tiles of 64: with 4 tiles per forward pass
    it is predicted in one pass, the network's own output on the whole frame (the tiled
    result differs near the tile edges of this depth-2 network); with 1 tile per pass it
    is tiled."""
    model = tiny_model(depth=2, batch_norm=True)
    image = noise((100, 92, 1))
    whole = keras.ops.convert_to_numpy(model(image[np.newaxis]))[0, ..., 0]
    one_pass = predict_probabilities(model, image, tile=64, overlap=32, batch_size=4)
    np.testing.assert_allclose(one_pass, whole, atol=1e-6)
    tiled = predict_probabilities(model, image, tile=64, overlap=32, batch_size=1)
    assert np.abs(tiled - whole).max() > 1e-4


def test_tta_of_a_symmetric_image_is_symmetric():
    model = tiny_model()
    image = noise((32, 32, 1))
    image = (image + image[:, ::-1] + image[::-1] + image[::-1, ::-1]) / 4
    probability = predict_probabilities(model, image, tta=True)
    # The frame and its 3 flips are averaged: symmetric about both axes, as the image is.
    np.testing.assert_allclose(probability, probability[:, ::-1], atol=1e-5)
    np.testing.assert_allclose(probability, probability[::-1], atol=1e-5)
    # Without TTA the untrained network's output is not symmetric: the check above can fail.
    plain = predict_probabilities(model, image)
    assert np.abs(plain - plain[:, ::-1]).max() > 1e-3


def test_channel_mismatch():
    with pytest.raises(InputError, match="1 channel.*expects 3"):
        predict_probabilities(tiny_model(3), noise((32, 32, 1)))


@pytest.mark.parametrize("value", [0, 1, 1.5, -0.1, "half"])
def test_threshold_must_be_inside_unit_interval(value, tmp_path):
    with pytest.raises(ParameterError, match="threshold"):
        validate_threshold(value)
    write_image(tmp_path / "in" / "0.png", np.zeros((16, 16), np.uint8))
    with pytest.raises(ParameterError, match="threshold"):
        predict_folder(tiny_model(), tmp_path / "in", tmp_path / "out", threshold=value)
    assert not (tmp_path / "out").exists()


def test_not_a_model(tmp_path):
    fake = tmp_path / "model.keras"
    fake.write_text("not a model")
    with pytest.raises(InputError, match="not a readable Keras model"):
        load_run_model(fake)
    with pytest.raises(InputError, match="not a readable Keras model"):
        load_run_model(tmp_path)  # run folder: uses its model.keras
    other = tmp_path / "weights.txt"
    other.write_text("x")
    with pytest.raises(InputError, match="not a Keras model file"):
        load_run_model(other)
    with pytest.raises(InputError, match="holds no model.keras"):
        load_run_model(tmp_path / "..")
    with pytest.raises(InputError, match="not found"):
        load_run_model(tmp_path / "missing.keras")


@pytest.fixture
def run_dir(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    tiny_model().save(run / "model.keras")
    write_json(run / "config.json", {"normalize": {"method": "dtype", "low": 1.0, "high": 99.8},
                                     "threshold": 0.3})
    return run


def test_load_run_reads_normalisation_and_threshold(run_dir):
    run = load_run(run_dir)
    assert run.normalize == NormalizeConfig(method="dtype")
    assert run.threshold == 0.3
    assert run.model.input_shape == (None, None, None, 1)


def test_predict_folder_writes_masks_probabilities_overlays(run_dir, tmp_path):
    frames = tmp_path / "frames"
    write_image(frames / "0.png", (noise((40, 30)) * 65535).astype(np.uint16))
    write_image(frames / "10.tif", (noise((33, 50), 1) * 65535).astype(np.uint16))
    out = tmp_path / "results"
    written = predict_folder(run_dir, frames, out, write_probabilities=True, write_overlay=True,
                             progress=False)
    assert [path.name for path in written] == [
        "0_predict.png", "0_prob.tif", "0_overlay.png",
        "10_predict.png", "10_prob.tif", "10_overlay.png"]
    mask = read_image(out / "10_predict.png")
    probability = read_image(out / "10_prob.tif")
    assert mask.shape == (33, 50) and mask.dtype == np.uint8
    assert set(np.unique(mask)) <= {0, 255}
    assert probability.dtype == np.float32 and probability.shape == (33, 50)
    # The run's calibrated threshold (0.3) was used.
    np.testing.assert_array_equal(mask == 255, probability >= 0.3)
    assert read_image(out / "0_overlay.png").shape == (40, 30, 3)
    # Outputs are never overwritten silently, and nothing is written before that check
    # (repeating a prediction that gives the same files is a no-op; this mask was edited).
    edited = np.zeros_like(read_image(out / "0_predict.png"))
    write_image(out / "0_predict.png", edited, overwrite=True)
    with pytest.raises(OutputError, match="already exists"):
        predict_folder(run_dir, frames, out, progress=False)
    np.testing.assert_array_equal(read_image(out / "0_predict.png"), edited)
    again = predict_folder(run_dir, frames, out, threshold=0.9, overwrite=True, progress=False)
    assert [path.name for path in again] == ["0_predict.png", "10_predict.png"]
    # The given threshold replaced the run's: the mask is redrawn from the same probabilities.
    redrawn = read_image(out / "10_predict.png")
    np.testing.assert_array_equal(redrawn == 255, probability >= 0.9)
    assert not np.array_equal(redrawn, mask)


def test_predict_stack(tmp_path):
    stack = (noise((3, 24, 40)) * 4000).astype(np.uint16)
    tifffile.imwrite(tmp_path / "mouse.tif", stack)
    written = predict_folder(tiny_model(), tmp_path / "mouse.tif", tmp_path / "out",
                             progress=False)
    assert [path.name for path in written] == ["mouse_0000_predict.png", "mouse_0001_predict.png",
                                               "mouse_0002_predict.png", "mouse_predict.tif"]
    masks = tifffile.imread(tmp_path / "out" / "mouse_predict.tif")
    assert masks.shape == (3, 24, 40) and masks.dtype == np.uint8
    np.testing.assert_array_equal(masks[1], read_image(tmp_path / "out" / "mouse_0001_predict.png"))


def test_predict_folder_channel_mismatch_names_file(tmp_path):
    write_image(tmp_path / "in" / "0.png", np.zeros((16, 16), np.uint8))
    with pytest.raises(InputError, match=r"0\.png: has 1 channel\(s\) but the model expects 3"):
        predict_folder(tiny_model(3), tmp_path / "in", tmp_path / "out", progress=False)
    rgb = tmp_path / "rgb.tif"
    tifffile.imwrite(rgb, np.zeros((2, 16, 16, 3), np.uint8), photometric="rgb")
    with pytest.raises(InputError, match=r"rgb\.tif \(page 0\): has 3 channel\(s\) but the "
                                         r"model expects 1"):
        predict_folder(tiny_model(1), rgb, tmp_path / "out2", progress=False)


def test_predict_folder_input_errors(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match="holds no image files"):
        predict_folder(tiny_model(), tmp_path / "empty", tmp_path / "out", progress=False)
    with pytest.raises(InputError, match="not found"):
        predict_folder(tiny_model(), tmp_path / "missing", tmp_path / "out", progress=False)


def test_a_bare_model_gets_the_default_normalisation_and_threshold(tmp_path):
    model = tiny_model()
    frame = (noise((20, 20)) * 255).astype(np.uint8)
    write_image(tmp_path / "in" / "a.png", frame)
    first = predict_folder(model, tmp_path / "in", tmp_path / "o1", progress=False)
    # A bare model gets the default normalisation and threshold 0.5.
    probability = predict_probabilities(model, normalize_image(frame, NormalizeConfig()))
    np.testing.assert_array_equal(read_image(first[0]),
                                  np.where(probability >= 0.5, 255, 0).astype(np.uint8))


def test_overlay_image():
    overlay = overlay_image(np.arange(16, dtype=np.uint16).reshape(4, 4),
                            np.eye(4, dtype=np.uint8))
    assert overlay.shape == (4, 4, 3) and overlay.dtype == np.uint8
    # On the mask, 40 % red over the stretched frame: black (the darkest pixel, 0) becomes
    # 0.4 * (255, 0, 0) and white (the brightest, 15) 0.6 * 255 + 0.4 * (255, 0, 0).
    np.testing.assert_array_equal(overlay[0, 0], [102, 0, 0])
    np.testing.assert_array_equal(overlay[3, 3], [255, 153, 153])
    # Elsewhere gray, brighter where the frame is brighter.
    off = ~np.eye(4, dtype=bool)
    assert (overlay[off][:, 0] == overlay[off][:, 1]).all()
    assert (overlay[off][:, 1] == overlay[off][:, 2]).all()
    grey = overlay[..., 0][off]
    assert (np.diff(grey.astype(int)) > 0).all() and grey[0] < 30 and grey[-1] > 225


# --- organ runs, and binary runs from before organs existed ------------------------------

def organ_run(tmp_path, values=(1, 5)):
    """A run folder (untrained softmax model) recording an organ table."""
    from unetlib.core.io import write_json
    from unetlib.data.organs import Organ

    model = build_unet(ModelConfig(input_channels=1, depth=1, base_filters=4,
                                   classes=len(values) + 1))
    run = tmp_path / "run"
    run.mkdir()
    model.save(run / "model.keras")
    organs = [Organ(value, f"organ{value}", color).__dict__
              for value, color in zip(values, ("#ff0000", "#00ff00"))]
    write_json(run / "config.json", {"organs": [{**row, "value": str(row["value"])}
                                                for row in organs], "threshold": None})
    write_json(run / "metrics.json", {"threshold": None})
    return run


def test_organ_run_writes_palette_masks_of_organ_values_and_its_table(tmp_path):
    from PIL import Image

    run = organ_run(tmp_path)
    write_image(tmp_path / "frames" / "f.png", (noise((40, 48)) * 4000).astype(np.uint16))
    # The untrained network's noise has organ-enclosed background; kept, each pixel's value
    # is its most probable class's (filling is tested on its own below).
    written = predict_folder(run, tmp_path / "frames", tmp_path / "out", progress=False,
                             write_overlay=True, write_probabilities=True,
                             predict=PredictConfig(fill_holes=False))
    assert sorted(path.name for path in written) == ["f_overlay.png", "f_predict.png",
                                                      "f_prob.tif", "organs.csv"]
    with Image.open(tmp_path / "out" / "f_predict.png") as image:
        assert image.mode == "P"
        values = np.array(image)
        assert image.getpalette()[15:18] == [0, 255, 0]  # value 5 shows in organ5's colour
    probability = read_image(tmp_path / "out" / "f_prob.tif")
    assert probability.shape == (40, 48, 3)
    expected = np.array([0, 1, 5], np.uint8)[np.argmax(probability, axis=-1)]
    np.testing.assert_array_equal(values, expected)
    assert (tmp_path / "out" / "organs.csv").read_text().splitlines()[1] == "1,organ1,#ff0000"
    assert read_image(tmp_path / "out" / "f_overlay.png").shape == (40, 48, 3)


def test_organ_run_refuses_a_threshold(tmp_path):
    run = organ_run(tmp_path)
    write_image(tmp_path / "frames" / "f.png", np.zeros((32, 32), np.uint16))
    with pytest.raises(ParameterError, match="a threshold applies to binary runs only"):
        predict_folder(run, tmp_path / "frames", tmp_path / "out", threshold=0.3, progress=False)


def test_a_multi_class_model_without_its_table_is_refused(tmp_path):
    model = build_unet(ModelConfig(input_channels=1, depth=1, base_filters=4, classes=3))
    model.save(tmp_path / "bare.keras")
    write_image(tmp_path / "frames" / "f.png", np.zeros((32, 32), np.uint16))
    with pytest.raises(InputError, match="segments 2 organs but comes without its organ table"):
        predict_folder(tmp_path / "bare.keras", tmp_path / "frames", tmp_path / "out",
                       progress=False)


def test_a_binary_run_folder_from_before_organs_still_predicts_identically(tmp_path):
    """config.json written before organs existed: no "organs", no model "classes"."""
    model = tiny_model()
    run = tmp_path / "old_run"
    run.mkdir()
    model.save(run / "model.keras")
    write_json(run / "config.json", {"normalize": {"method": "percentile", "low": 1.0,
                                                   "high": 99.8},
                                     "model": {"input_channels": 1, "depth": 1},
                                     "threshold": 0.4})
    write_json(run / "metrics.json", {"threshold": 0.4})
    frame = (noise((40, 48)) * 4000).astype(np.uint16)
    write_image(tmp_path / "frames" / "f.png", frame)
    predict_folder(run, tmp_path / "frames", tmp_path / "out", progress=False)
    mask = read_image(tmp_path / "out" / "f_predict.png")
    from unetlib.data.normalize import normalize_image

    loaded = load_run(run)
    assert loaded.organs is None and loaded.threshold == 0.4
    probability = predict_probabilities(loaded.model, normalize_image(frame, loaded.normalize))
    np.testing.assert_array_equal(mask, np.where(probability >= 0.4, 255, 0))
    assert not (tmp_path / "out" / "organs.csv").exists()


def test_organ_masks_fill_background_enclosed_by_one_organ_and_nothing_else():
    from unetlib.data.organs import Organ, OrganTable
    from unetlib.nn.sliding_window import segment

    organs = OrganTable(organs=(Organ(10, "liver", "#e6194b"), Organ(20, "kidney", "#3cb44b")))
    classes = np.zeros((9, 12), int)
    classes[1:6, 1:6] = 1
    classes[3, 3] = 0            # a hole in the liver
    classes[1:6, 7:11] = 2       # the kidney, a column apart
    classes[3, 6] = 1            # a background pocket closed by liver and kidney together
    probability = np.eye(3)[classes]
    filled = segment(probability, organs=organs)
    assert filled[3, 3] == 10                     # the hole is liver
    assert filled[2, 6] == filled[4, 6] == 0      # between two organs: background
    assert (filled[[0, 6, 7, 8]] == 0).all()      # the open background too
    kept = segment(probability, organs=organs, fill_holes=False)
    assert kept[3, 3] == 0 and (kept != filled).sum() == 1
    # A binary mask is never filled: a ring stays a ring.
    ring = np.zeros((5, 5))
    ring[1:4, 1:4] = 0.9
    ring[2, 2] = 0.1
    assert segment(ring, threshold=0.5)[2, 2] == 0


def test_predict_fills_organ_holes_by_default_and_keeps_them_when_asked(tmp_path):
    from PIL import Image

    run = organ_run(tmp_path)
    write_image(tmp_path / "frames" / "f.png", (noise((40, 48)) * 4000).astype(np.uint16))
    masks = {}
    for fill in (True, False):
        out = tmp_path / f"out-{fill}"
        predict_folder(run, tmp_path / "frames", out, progress=False, write_probabilities=True,
                       predict=PredictConfig(fill_holes=fill))
        with Image.open(out / "f_predict.png") as image:
            masks[fill] = np.array(image)
    probability = read_image(tmp_path / "out-False" / "f_prob.tif")
    kept = np.array([0, 1, 5], np.uint8)[np.argmax(probability, axis=-1)]
    np.testing.assert_array_equal(masks[False], kept)
    changed = masks[True] != kept
    assert changed.any(), "the untrained network's noise should leave organ-enclosed background"
    assert (kept[changed] == 0).all() and (masks[True][changed] > 0).all()
