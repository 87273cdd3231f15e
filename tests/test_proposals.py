"""Tests of unetlib.inference.proposals: a model's masks for the annotator to correct.

The session's organ run proposes masks for frames of a synthetic data folder whose masks
were taken away; the annotator's part is played by code that edits the proposal and saves
it into ``train/masks/`` as a person would after correcting it in GIMP.
"""

from __future__ import annotations

import shutil

import numpy as np
import pytest
from helpers import organ_data, run_main
from PIL import Image

from unetlib.core.errors import InputError, OutputError
from unetlib.core.io import read_csv, read_image, write_image
from unetlib.data.annotations import mask_origins, proposals_folder, record_mask_origins, save_mask
from unetlib.data.dataset import check_pairs
from unetlib.data.masks import read_labels
from unetlib.data.organs import Organ, OrganTable, read_organ_table, write_organ_table
from unetlib.inference.proposals import propose_masks

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


@pytest.fixture()
def unannotated(tmp_path):
    """A data folder of 8 picked frames whose last 3 masks are not drawn yet."""
    data = organ_data(tmp_path)
    for stem in ("5", "6", "7"):
        (data / "train" / "masks" / f"{stem}.png").unlink()
    return data


def test_proposals_are_palette_pngs_of_the_frames_without_a_mask(organ_run, unannotated):
    result = propose_masks(organ_run["run"], unannotated)
    folder = proposals_folder(unannotated)
    assert [path.name for path in result.written] == ["5.png", "6.png", "7.png"]
    assert result.skipped == ["0", "1", "2", "3", "4"] and not result.kept
    organs = read_organ_table(unannotated / "organs.csv")
    truth_pixels = []
    for path in result.written:
        with Image.open(path) as image:  # what GIMP opens as an Indexed image
            assert image.mode == "P"
            assert image.getpalette()[:3 * 4] == [0, 0, 0, *sum((list(o.rgb) for o in
                                                                   organs.organs), [])]
            values = np.array(image)
        assert set(np.unique(values)) <= {0, *organs.values}
        frame = read_image(unannotated / "train" / "frames" / path.name)
        assert values.shape == frame.shape[:2]
        truth_pixels.append(values)
    assert all(len(np.unique(values)) == 4 for values in truth_pixels)  # every organ found
    rows = read_csv(folder / "proposals.csv")
    assert [row["stem"] for row in rows] == ["5", "6", "7"]
    assert {row["proposed_by"] for row in rows} == {"run"}


def test_proposals_are_never_read_as_masks_until_saved_into_masks(organ_run, unannotated):
    propose_masks(organ_run["run"], unannotated)
    report = check_pairs(unannotated, binary=False)
    assert {row.stem for row in report.rows if row.status == "error"} == {"5", "6", "7"}
    folder = proposals_folder(unannotated)
    assert not any(folder in (finding.path, *finding.path.parents) for finding in report.findings
                   if finding.path is not None)
    shutil.copy(proposals_folder(unannotated) / "5.png", unannotated / "train" / "masks" / "5.png")
    report = check_pairs(unannotated, binary=False)
    assert {row.stem for row in report.rows if row.status == "error"} == {"6", "7"}


@pytest.mark.slow  # make test-fast keeps the proposals' format and refusals
def test_frames_csv_says_which_masks_were_corrected_and_how_much(organ_run, unannotated):
    propose_masks(organ_run["run"], unannotated)
    proposal = proposals_folder(unannotated) / "6.png"
    with Image.open(proposal) as image:
        values, palette = np.array(image), image.getpalette()
    corrected = values.copy()
    corrected[:10, :10] = np.where(corrected[:10, :10] == 1, 0, 1)  # 100 pixels repainted
    write_image(unannotated / "train" / "masks" / "6.png", corrected, palette=palette)
    shutil.copy(proposal.parent / "7.png", unannotated / "train" / "masks" / "7.png")  # as is

    origins = record_mask_origins(unannotated)
    rows = {row["stem"]: row for row in read_csv(unannotated / "train" / "frames.csv")}
    assert rows["6"]["mask_origin"] == "corrected" and rows["6"]["changed_px"] == "100"
    assert rows["7"]["mask_origin"] == "corrected" and rows["7"]["changed_px"] == "0"
    assert rows["6"]["proposed_by"] == "run"
    assert rows["0"]["mask_origin"] == "drawn" and rows["0"]["proposed_by"] == ""
    assert rows["5"]["mask_origin"] == ""  # no mask yet: a proposal is not an annotation
    assert rows["0"]["cycle"] and rows["0"]["sha256"]  # the other columns are kept
    assert origins == mask_origins(unannotated)


@pytest.mark.slow  # make test-fast keeps the proposals' format and refusals
def test_an_unedited_proposal_is_kept_and_an_edited_one_is_never_overwritten(organ_run,
                                                                              unannotated):
    propose_masks(organ_run["run"], unannotated)
    proposal = proposals_folder(unannotated) / "5.png"
    before = proposal.stat().st_mtime_ns
    again = propose_masks(organ_run["run"], unannotated)
    assert not again.written and len(again.kept) == 3
    assert proposal.stat().st_mtime_ns == before

    with Image.open(proposal) as image:
        values, palette = np.array(image), image.getpalette()
    values[:5, :5] = 2  # the annotator started correcting it where it lies
    write_image(proposal, values, overwrite=True, palette=palette)
    edited = proposal.read_bytes()
    (proposals_folder(unannotated) / "6.png").unlink()  # and threw another one away
    with pytest.raises(OutputError, match="5.png: was edited since it was proposed"):
        propose_masks(organ_run["run"], unannotated)
    assert proposal.read_bytes() == edited
    assert not (proposals_folder(unannotated) / "6.png").exists()  # nothing done at all
    forced = propose_masks(organ_run["run"], unannotated, force=True)
    assert sorted(path.name for path in forced.written) == ["5.png", "6.png"]


def test_a_run_of_other_organs_or_an_unknown_frame_is_refused(organ_run, unannotated):
    organs = read_organ_table(unannotated / "organs.csv")
    write_organ_table(unannotated / "organs.csv", OrganTable(
        (*organs.organs, Organ(9, "spleen", "#00ffff"))), overwrite=True)
    with pytest.raises(InputError, match="lists liver, kidney, bladder, spleen, the run "
                                         "segments liver, kidney, bladder"):
        propose_masks(organ_run["run"], unannotated)
    write_organ_table(unannotated / "organs.csv", organs, overwrite=True)
    with pytest.raises(InputError, match="has no frame 12"):
        propose_masks(organ_run["run"], unannotated, stems=["12"])
    assert not proposals_folder(unannotated).exists()


@pytest.mark.slow  # make test-fast keeps the proposals' format and refusals
def test_organs_listed_in_another_order_get_the_folders_values(organ_run, unannotated):
    organs = read_organ_table(unannotated / "organs.csv")
    renumbered = OrganTable(tuple(Organ(10 * organ.value, organ.name, organ.color)
                                  for organ in organs.organs), explicit_colors=True)
    write_organ_table(unannotated / "organs.csv", renumbered, overwrite=True)
    result = propose_masks(organ_run["run"], unannotated, stems=["5"])
    with Image.open(result.written[0]) as image:
        assert set(np.unique(np.array(image))) == {0, 10, 20, 30}


@pytest.mark.slow
def test_cli_pick_frames_propose_then_check_masks_records_origins(organ_run, tmp_path, capsys):
    def cli(*args):
        return run_main(capsys, "-q", *args)

    data = tmp_path / "data"
    picked = cli("pick-frames", str(organ_run["stack"]), "--out", str(data), "--count", "3",
                 "--propose", str(organ_run["run"]))
    assert picked.returncode == 0, picked.stderr
    assert "proposals: " in picked.stdout and "3 written" in picked.stdout
    assert read_organ_table(data / "organs.csv").names == ["liver", "kidney", "bladder"]
    masks = data / "train" / "masks"
    masks.mkdir()
    shutil.copy(proposals_folder(data) / "0.png", masks / "0.png")
    checked = cli("check-masks", str(data), "--allow-labels")
    assert checked.returncode == 2  # frames 1 and 2 have no mask yet
    assert "masks: 0 drawn, 1 corrected from proposals (0 px changed)" in checked.stdout
    rows = read_csv(data / "train" / "frames.csv")
    assert [row["mask_origin"] for row in rows] == ["corrected", "", ""]
    refused = cli("propose", str(organ_run["run"]), str(tmp_path / "nowhere"))
    assert refused.returncode == 2 and refused.stderr.count("\n") == 1, refused.stderr
    assert refused.stderr.startswith("error: ") and "pick-frames" in refused.stderr


def test_save_mask_writes_what_check_masks_reads_and_refuses_what_it_should(unannotated):
    # What the napari plugin's Save calls; no model involved.
    organs = read_organ_table(unannotated / "organs.csv")
    frame = read_image(unannotated / "train" / "frames" / "5.png")
    values = np.zeros(frame.shape[:2], dtype=np.uint8)
    values[10:30, 20:50] = organs.values[2]
    target = unannotated / "train" / "masks" / "5.png"
    with pytest.raises(InputError, match=r"5\.png: would be all background"):
        save_mask(unannotated, "5", np.zeros_like(values))
    strange = values.copy()
    strange[0, 0] = 7
    with pytest.raises(InputError, match=r"value\(s\) 7 that organs\.csv does not list"):
        save_mask(unannotated, "5", strange)
    with pytest.raises(InputError, match=r"5\.png: is \d+ x \d+, the mask 3 x 4"):
        save_mask(unannotated, "5", values[:3, :4])
    with pytest.raises(InputError, match="has no frame 99"):
        save_mask(unannotated, "99", values)
    assert not target.exists()  # nothing written by a refusal

    assert save_mask(unannotated, "5", values) == target
    classes, _ = read_labels(target, organs)
    assert np.array_equal(organs.class_values()[classes], values)
    with Image.open(target) as image:  # what GIMP saves: Indexed, the organs' colours
        assert image.mode == "P"
    row = {r["stem"]: r for r in read_csv(unannotated / "train" / "frames.csv")}["5"]
    assert row["mask_origin"] == "drawn"  # no proposal of frame 5 was made
    with pytest.raises(OutputError, match=r"5\.png: exists"):
        save_mask(unannotated, "5", values)
    values[10:30, 20:50] = organs.values[0]
    save_mask(unannotated, "5", values, overwrite=True)
    classes, _ = read_labels(target, organs)
    assert set(np.unique(classes)) == {0, 1}
