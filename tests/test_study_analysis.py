"""Tests of a study's analysis: the sheet, NCA on curves with known integrals, group
comparisons (Fieller, Welch, Holm), the analysis on quantify's tables, the study command."""

from __future__ import annotations

import html
import math
import shutil

import numpy as np
import pytest
from scipy import stats

from unetlib.app.cli import main
from unetlib.core.config import StudyConfig
from unetlib.core.errors import InputError, ParameterError
from unetlib.core.io import read_csv, read_image, read_json, write_csv
from unetlib.data.synthetic_study import write_synthetic_study
from unetlib.study.analysis import analyse_study
from unetlib.study.compare import compare_groups, fieller_ratio, holm
from unetlib.study.nca import area_under_curve, baseline_corrected, curve_nca, terminal_phase
from unetlib.study.quantify import CYCLE_FIELDS, INTENSITY_FIELDS
from unetlib.study.sheet import read_study_sheet

LN2 = math.log(2.0)


# --- NCA on curves whose integrals are known ----------------------------------------------

def test_linear_auc_of_a_piecewise_linear_curve_is_its_exact_area():
    times = np.array([0.0, 10.0, 30.0, 60.0])
    values = np.array([0.0, 10.0, 4.0, 1.0])
    exact = 10 * 10 / 2 + 20 * (10 + 4) / 2 + 30 * (4 + 1) / 2
    assert area_under_curve(times, values, "linear") == pytest.approx(exact)


def test_log_down_auc_of_an_exponential_decay_is_its_integral_and_linear_overestimates():
    amplitude, rate = 100.0, LN2 / 40.0
    times = np.arange(0.0, 241.0, 30.0)
    values = amplitude * np.exp(-rate * times)
    exact = amplitude / rate * (1 - math.exp(-rate * times[-1]))
    assert area_under_curve(times, values, "linear-up-log-down") == pytest.approx(exact, rel=1e-12)
    linear = area_under_curve(times, values, "linear")
    assert linear == pytest.approx(np.trapezoid(values, times)) and linear > 1.02 * exact


def test_terminal_phase_of_a_mono_exponential_is_its_half_life_with_every_point_after_the_peak():
    times = np.arange(0.0, 300.0, 20.0)
    values = np.r_[0.0, 5.0, 50.0 * np.exp(-LN2 / 70.0 * (times[2:] - times[2]))]
    phase = terminal_phase(times, values)
    assert phase.half_life_s == pytest.approx(70.0, rel=1e-9)
    assert phase.points == values.size - 3  # after the peak, the peak itself excluded
    assert phase.r2_adj == pytest.approx(1.0)


def test_terminal_phase_of_a_bi_exponential_is_the_slow_phase_fitted_on_its_last_points():
    times = np.arange(0.0, 601.0, 15.0)
    values = 80.0 * np.exp(-LN2 / 20.0 * times) + 20.0 * np.exp(-LN2 / 200.0 * times)
    phase = terminal_phase(times, values)
    assert phase.half_life_s == pytest.approx(200.0, rel=0.02)
    # the fast phase bends the early points: the fit does not reach back to them
    assert phase.first_s >= 60.0 and phase.last_s == times[-1]


def test_among_equally_good_fits_the_one_with_most_points_is_chosen_and_a_bent_start_is_not():
    # Exact decay on the last 6 points; the 3 points before lie off it: the best adjusted R²
    # (1.0) is reached by fits of 3..6 points, of which PKNCA takes the longest.
    times = np.arange(10.0) * 10.0
    tail = 40.0 * np.exp(-LN2 / 30.0 * (times[4:] - times[4]))
    values = np.r_[0.0, 100.0, 30.0, 70.0, tail]
    phase = terminal_phase(times, values)
    assert phase.points == 6 and phase.first_s == 40.0
    assert phase.half_life_s == pytest.approx(30.0)


def test_points_below_the_limit_of_quantification_are_left_out_of_the_terminal_phase():
    times = np.arange(10.0) * 10.0
    values = np.r_[0.0, 100.0 * np.exp(-LN2 / 20.0 * (times[1:] - 10.0))]
    # after the peak: 70.7 50 35.4 25 17.7 12.5 8.8 6.25 4.4; a limit of 10 keeps 6 of them
    phase = terminal_phase(times, values, loq=10.0)
    assert phase.points == 6 and phase.last_s == 70.0
    assert phase.half_life_s == pytest.approx(20.0)
    assert "above the limit of quantification 60" in terminal_phase(times, values, loq=60.0).reason


@pytest.mark.parametrize("values, reason", [
    (np.array([1.0, 2.0, 3.0, 4.0, 5.0]), "fewer than 3"),
    (np.array([5.0, 1.0, 2.0, 3.0, 4.0]), "does not fall"),
    (np.array([np.nan] * 5), "no measured points"),
])
def test_a_curve_without_a_terminal_phase_says_why(values, reason):
    phase = terminal_phase(np.arange(5.0), values)
    assert math.isnan(phase.half_life_s) and phase.points == 0 and reason in phase.reason


def test_baseline_is_the_mean_of_the_clean_cycles_before_the_injection():
    times = np.arange(8) * 10.0
    values = np.array([10.0, 12.0, 500.0, 11.0, 40.0, 30.0, 20.0, 15.0])
    flagged = np.array([False, False, True, False, False, False, True, False])
    t, delta, f0, used = baseline_corrected(times, values, flagged, injection_s=35.0)
    assert f0 == pytest.approx(11.0) and used == 3  # the flagged 500 is left out
    assert t.tolist() == [5.0, 15.0, 25.0, 35.0]
    assert delta[0] == pytest.approx(29.0) and math.isnan(delta[2])


def test_curve_nca_of_an_injected_exponential_gives_peak_auc_and_auc_to_infinity():
    interval, injection, f0 = 10.0, 45.0, 200.0
    times = np.arange(40) * interval
    after = times - injection
    amplitude, rate = 60.0, LN2 / 90.0
    values = np.where(after < 0, f0, f0 + amplitude * np.exp(-rate * np.clip(after, 0, None)))
    result = curve_nca(times, values, np.zeros(times.size, bool), injection,
                       auc_method="linear-up-log-down")
    first = after[after >= 0][0]  # 5 s: the first cycle after the injection
    assert result.f0 == pytest.approx(f0) and result.baseline_points == 5
    assert result.peak == pytest.approx(amplitude * math.exp(-rate * first))
    assert result.time_of_peak_s == pytest.approx(first)
    last = after[-1]
    exact = amplitude / rate * (math.exp(-rate * first) - math.exp(-rate * last))
    assert result.auc == pytest.approx(exact, rel=1e-9)
    assert result.terminal.half_life_s == pytest.approx(90.0, rel=1e-9)
    assert result.auc_inf == pytest.approx(amplitude / rate * math.exp(-rate * first), rel=1e-9)


def test_curve_nca_without_a_clean_cycle_before_the_injection_says_so():
    result = curve_nca(np.arange(5.0), np.arange(5.0), np.zeros(5, bool), injection_s=0.0)
    assert math.isnan(result.f0) and "before the injection" in result.terminal.reason


# --- group comparisons ----------------------------------------------------------------------

def test_fieller_interval_holds_exactly_the_ratios_a_t_test_of_the_difference_accepts():
    rng = np.random.default_rng(3)
    reference, group = rng.normal(10, 2, 6), rng.normal(15, 3, 5)
    ratio, low, high, note = fieller_ratio(reference, group, 0.95)
    assert note == "" and low < ratio < high
    var_a, var_b = reference.var(ddof=1) / 6, group.var(ddof=1) / 5
    df = (var_a + var_b) ** 2 / (var_a ** 2 / 5 + var_b ** 2 / 4)
    t = stats.t.ppf(0.975, df)

    def statistic(r):
        return abs(group.mean() - r * reference.mean()) / math.sqrt(var_b + r * r * var_a)

    assert statistic(low) == pytest.approx(t) and statistic(high) == pytest.approx(t)
    assert statistic(ratio) < t and statistic(low * 0.99) > t and statistic(high * 1.01) > t


def test_a_reference_mean_near_zero_gives_no_interval_with_the_reason():
    _, low, high, note = fieller_ratio(np.array([-1.0, 0.5, 1.0]), np.array([5.0, 6.0, 7.0]))
    assert math.isnan(low) and math.isnan(high) and "unbounded" in note


def test_welch_and_mann_whitney_are_scipy_s_two_sided_tests():
    a, b = np.array([1.0, 2.0, 3.0, 4.0]), np.array([3.0, 5.0, 6.0, 9.0, 7.0])
    assert compare_groups(a, b).p == pytest.approx(stats.ttest_ind(b, a, equal_var=False).pvalue)
    assert compare_groups(a, b, test="mannwhitney").p == pytest.approx(
        stats.mannwhitneyu(b, a, alternative="two-sided").pvalue)


def test_holm_adjustment_by_hand():
    # sorted: 0.005 x4 = 0.02; 0.01 x3 = 0.03; 0.03 x2 = 0.06; 0.04 x1 = 0.04 -> max so far 0.06
    assert holm([0.04, 0.005, 0.03, 0.01]) == pytest.approx([0.06, 0.02, 0.06, 0.03])
    assert holm([0.9, 0.8]) == pytest.approx([1.0, 1.0])


# --- the sheet ------------------------------------------------------------------------------

@pytest.fixture
def stacks(tmp_path):
    for name in ("a.tif", "b.tif", "c.tif"):
        (tmp_path / name).write_bytes(b"")
    return tmp_path


def write_sheet(folder, text):
    path = folder / "study.csv"
    path.write_text(text, encoding="utf-8")
    return path


@pytest.mark.parametrize("text, message", [
    ("stack,mouse\na.tif,m1\n", "has no group column"),
    ("stack,mouse,group\n", "lists no stacks"),
    ("stack,mouse,group\na.tif,,control\n", "row 2 has no mouse"),
    ("stack,mouse,group\nmissing.tif,m1,control\n", "row 2: the stack missing.tif does not exist"),
    ("stack,mouse,group\na.tif,m1,control\na.tif,m2,control\n", "rows 2 and 3 both list a.tif"),
    ("stack,mouse,group\na.tif,m1,control\nb.tif,m1,treated\n",
     "put mouse m1 in the groups control and treated"),
    ("stack,mouse,group\na.tif,m1,control\nb.tif,m1,control\n", "both are mouse m1"),
    ("stack,mouse,group,injection_s\na.tif,m1,control,-3\n", "injection_s='-3' is not a number"),
    ("stack,mouse,group,injection_s\na.tif,m1,control,soon\n", "injection_s='soon'"),
    ("stack,mouse,group,injection_s\na.tif,m1,control,3\nb.tif,m2,control,\n",
     "row 3 has no injection_s while others have one"),
])
def test_a_bad_sheet_is_one_line_naming_the_sheet_the_row_and_the_fix(stacks, text, message):
    sheet = write_sheet(stacks, text)
    with pytest.raises(InputError, match=message) as caught:
        read_study_sheet(sheet)
    assert str(caught.value).startswith(str(sheet)) and "\n" not in str(caught.value)


def test_the_sheet_keeps_its_own_columns_and_resolves_stacks_beside_it(stacks):
    sheet = read_study_sheet(write_sheet(stacks, "\ufeffstack,mouse,group,injection_s,dose\n"
                                                 "a.tif,m1,treated,30,5\nb.tif,m2,control,12.5,0\n"))
    assert sheet.groups == ["treated", "control"] and sheet.extra_columns == ("dose",)
    assert [mouse.stack for mouse in sheet.mice] == [stacks / "a.tif", stacks / "b.tif"]
    assert [mouse.injection_s for mouse in sheet.mice] == [30.0, 12.5] and sheet.has_injection


# --- the analysis on quantify's tables ---------------------------------------------------------

INTERVAL = 10.0
ORGANS = ("liver", "kidney")


def write_quantified_mouse(folder, stem, *, injection_cycle, kidney_amplitude, rng, cycles=40,
                           entropy=0.05, flagged_cycles=()):
    """intensities.csv and cycles.csv as quantify writes them, for one mouse whose curves are
    known: a flat baseline, then per organ an exponential clearance (liver the same in every
    mouse); the model's uncertainty ``entropy`` in every cycle, QC flags in some."""
    write_csv(folder / stem / "cycles.csv",
              [{"cycle": cycle, "time_s": cycle * INTERVAL, "body_px": 4000,
                "entropy": entropy * (1.0 + 0.02 * math.sin(cycle))} for cycle in range(cycles)],
              CYCLE_FIELDS)
    rows = []
    for cycle in range(cycles):
        after = (cycle - injection_cycle) * INTERVAL
        for laser in (1, 2):
            for organ, amplitude, half_life in (("liver", 50.0, 150.0),
                                                ("kidney", kidney_amplitude, 80.0)):
                signal = amplitude * math.exp(-LN2 / half_life * after) if after >= 0 else 0.0
                mean = 100.0 * laser + signal + rng.normal(0, 0.5)
                rows.append({"cycle": cycle, "time_s": cycle * INTERVAL, "laser": laser,
                             "organ": organ, "area_px": 500, "mean": mean, "median": mean,
                             "p95": mean, "integrated": mean * 500, "background_mean": 50.0,
                             "sbr": mean / 50.0,
                             "qc": "area_jump" if cycle in flagged_cycles else "ok"})
    write_csv(folder / stem / "intensities.csv", rows, INTENSITY_FIELDS)


@pytest.fixture
def quantified_study(tmp_path):
    """8 mice: 4 control, 4 treated with 1.6x the kidney's uptake; the liver alike in all."""
    rng = np.random.default_rng(11)
    lines = ["stack,mouse,group,injection_s,dose"]
    for index in range(8):
        group = "control" if index < 4 else "treated"
        injection_cycle = 5 + index % 3  # each mouse injected at its own time
        amplitude = (60.0 if group == "control" else 96.0) * rng.normal(1.0, 0.06)
        (tmp_path / f"m{index}.tif").write_bytes(b"")
        write_quantified_mouse(tmp_path / "stacks", f"m{index}", injection_cycle=injection_cycle,
                               kidney_amplitude=amplitude, rng=rng)
        lines.append(f"m{index}.tif,mouse{index},{group},{injection_cycle * INTERVAL - 3},"
                     f"{0 if group == 'control' else 10}")
    sheet = write_sheet(tmp_path, "\n".join(lines) + "\n")
    return read_study_sheet(sheet), tmp_path


def test_the_analysis_recovers_a_known_group_effect_and_finds_none_where_there_is_none(
        quantified_study):
    sheet, root = quantified_study
    result = analyse_study(sheet, root / "stacks", root / "out")
    rows = {(row["organ"], row["laser"], row["parameter"]): row for row in result.comparisons}
    for laser in (1, 2):
        kidney = rows[("kidney", laser, "auc_window")]
        assert kidney["ratio"] == pytest.approx(1.6, rel=0.10)
        assert kidney["ratio_low"] < kidney["ratio"] < kidney["ratio_high"]
        assert kidney["p_holm"] < 0.05
        liver = rows[("liver", laser, "auc_window")]
        assert liver["ratio"] == pytest.approx(1.0, rel=0.10) and liver["p_holm"] > 0.05
        assert rows[("kidney", laser, "half_life_s")]["p_holm"] > 0.05
    # Holm over the whole table: 2 organs x 2 lasers x 5 parameters x 1 comparison
    assert len(result.comparisons) == 20
    assert all(row["p_holm"] >= row["p"] for row in result.comparisons if row["p"] == row["p"])
    on_disk = read_csv(root / "out" / "nca.csv")
    assert len(on_disk) == 8 * 2 * 2 and on_disk[0]["dose"] == "0" and on_disk[0]["signal"] == "dF"
    assert float(on_disk[0]["f0"]) == pytest.approx(100.0, abs=0.5)
    half_lives = [float(row["half_life_s"]) for row in on_disk if row["organ"] == "kidney"]
    # PKNCA's rule may settle on 3 noisy tail points: single mice stray (over 30 draws of
    # this study 5-95 % of the estimates lay within 78-83 s, a few at 30 or 300 s).
    assert np.median(half_lives) == pytest.approx(80.0, rel=0.03), half_lives
    assert np.mean(np.abs(np.array(half_lives) / 80.0 - 1.0) < 0.1) >= 0.8, half_lives
    record = read_json(root / "out" / "study.json")
    assert record["reference"] == "control" and record["time_step_s"] == INTERVAL


def test_the_report_is_one_self_contained_file_naming_every_choice(quantified_study):
    sheet, root = quantified_study
    analyse_study(sheet, root / "stacks", root / "out",
                  StudyConfig(auc="linear-up-log-down", test="mannwhitney"))
    report = (root / "out" / "report.html").read_text(encoding="utf-8")
    # curves + one dot plot per parameter and laser, all embedded; nothing fetched
    assert report.count('src="data:image/png;base64,') == 1 + 5 * 2
    assert "http://" not in report and "https://" not in report
    for choice in ("mean of the organ's mean intensity over the cycles before the injection",
                   "linear-up/log-down", "within 0.0001 of the best adjusted R²",
                   "common time grid of 10 s", "Fieller", "Mann-Whitney",
                   "Holm's method over the family of all 20 comparisons", "'control'",
                   "SciPy", "mice per group: control 4, treated 4"):
        assert choice in html.unescape(report), choice
    assert read_image(root / "out" / "group_curves.png").ndim == 3


def test_group_curves_match_the_mice_by_time_since_their_injection(quantified_study):
    sheet, root = quantified_study
    result = analyse_study(sheet, root / "stacks", root / "out")
    kidney = [row for row in result.groups
              if row["organ"] == "kidney" and row["laser"] == 1 and row["group"] == "control"]
    # every mouse's first cycle after its injection is 3 s after it: one grid point, 4 mice
    first = kidney[0]
    assert first["time_s"] == 0.0 and first["n"] == 4
    assert first["sd"] > 0 and first["sem"] == pytest.approx(first["sd"] / 2)


def test_a_stack_that_failed_is_named_and_left_out(quantified_study):
    sheet, root = quantified_study
    shutil.rmtree(root / "stacks" / "m7")
    result = analyse_study(sheet, root / "stacks", root / "out",
                           failed={root / "m6.tif": "m6.tif: is damaged"})
    assert set(result.left_out) == {"mouse6", "mouse7"}
    assert result.left_out["mouse6"] == "m6.tif: is damaged"
    assert {row["mouse"] for row in result.trust} == {f"mouse{index}" for index in range(6)}
    assert {row["mouse"] for row in result.nca} == {f"mouse{index}" for index in range(6)}
    assert read_json(root / "out" / "study.json")["left_out"] == result.left_out


def test_a_group_of_one_mouse_gets_curves_but_no_test(quantified_study):
    sheet, root = quantified_study
    text = (root / "study.csv").read_text().replace("mouse7,treated", "mouse7,single")
    result = analyse_study(read_study_sheet(write_sheet(root, text)), root / "stacks", root / "out")
    single = [row for row in result.comparisons if row["group"] == "single"]
    assert single and all(row["note"] == "a group of 1 mouse: no test" for row in single)
    assert all(math.isnan(row["p"]) for row in single)
    assert any(row["group"] == "single" for row in result.groups)


def test_a_reference_that_is_no_group_and_an_injection_after_the_last_cycle_are_refused(
        quantified_study):
    sheet, root = quantified_study
    with pytest.raises(ParameterError, match="has no group 'placebo'"):
        analyse_study(sheet, root / "stacks", root / "out", StudyConfig(reference="placebo"))
    text = (root / "study.csv").read_text().replace("m0.tif,mouse0,control,47.0",
                                                    "m0.tif,mouse0,control,4000")
    with pytest.raises(InputError, match="mouse mouse0: injection_s=4000 lies after"):
        analyse_study(read_study_sheet(write_sheet(root, text)), root / "stacks", root / "out")
    assert not (root / "out").exists()


# --- the study command ------------------------------------------------------------------------

@pytest.mark.slow
def test_study_command_finds_the_known_effect_of_a_synthetic_study_and_reuses_on_a_rerun(
        organ_run, tmp_path, capsys):
    """12 synthetic mice (6 control, 6 treated with 1.6x the kidney's uptake), each lying and
    injected differently, segmented by the session's small organ model: the comparison of
    the model's masks finds the effect put in, and none in the other organs."""
    sheet = write_synthetic_study(tmp_path / "study")
    out = tmp_path / "out"
    code = main(["--quiet", "study", str(sheet), "--run", str(organ_run["run"]), "--out",
                 str(out), "--workers", "2"])
    printed = capsys.readouterr()
    assert code == 0, printed.err
    nca = read_csv(out / "nca.csv")
    assert len(nca) == 12 * 3 * 4 and {row["signal"] for row in nca} == {"dF"}
    truth = {group: np.mean([float(row["true_uptake"]) for row in nca
                             if row["group"] == group and row["organ"] == "kidney"])
             for group in ("control", "treated")}
    compare = {(row["organ"], row["laser"], row["parameter"]): row
               for row in read_csv(out / "compare.csv")}
    for laser in ("1", "2"):  # the lasers where the kidney is brightest
        kidney = compare[("kidney", laser, "auc_window")]
        assert float(kidney["ratio"]) == pytest.approx(truth["treated"] / truth["control"],
                                                       rel=0.10), kidney
        assert float(kidney["p_holm"]) < 0.05, kidney
    for organ in ("liver", "bladder"):
        assert all(float(compare[(organ, laser, "auc_window")]["p_holm"]) > 0.05
                   for laser in ("1", "2", "3", "4")), organ
    assert (out / "report.html").is_file() and len(read_csv(out / "trust.csv")) == 12
    stamp = (out / "stacks" / "mouse1" / "intensities.csv").stat().st_mtime_ns
    assert main(["--quiet", "study", str(sheet), "--run", str(organ_run["run"]), "--out",
                 str(out), "--reference", "treated", "--test", "mannwhitney"]) == 0
    assert (out / "stacks" / "mouse1" / "intensities.csv").stat().st_mtime_ns == stamp
    assert {row["reference"] for row in read_csv(out / "compare.csv")} == {"treated"}


def test_study_command_refuses_a_bad_sheet_in_one_line_and_writes_nothing(tmp_path, capsys):
    sheet = write_sheet(tmp_path, "stack,mouse\nx.tif,m1\n")
    code = main(["study", str(sheet), "--run", str(tmp_path / "run"), "--out",
                 str(tmp_path / "out")])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and err[0].startswith(f"error: {sheet}: has no group")
    assert not (tmp_path / "out").exists()


def test_the_trust_table_puts_the_mouse_the_model_is_unsure_of_first_and_names_it(tmp_path):
    rng = np.random.default_rng(5)
    lines = ["stack,mouse,group"]
    for index in range(6):
        (tmp_path / f"m{index}.tif").write_bytes(b"")
        write_quantified_mouse(tmp_path / "stacks", f"m{index}", injection_cycle=5,
                               kidney_amplitude=60.0, rng=rng,
                               entropy=0.30 if index == 4 else 0.05 + 0.005 * index,
                               flagged_cycles=range(10, 20) if index == 1 else ())
        lines.append(f"m{index}.tif,mouse{index},{'a' if index < 3 else 'b'}")
    sheet = read_study_sheet(write_sheet(tmp_path, "\n".join(lines) + "\n"))
    result = analyse_study(sheet, tmp_path / "stacks", tmp_path / "out")
    messages = result.warnings
    assert len(messages) == 2
    assert messages[0].startswith("mouse1: QC flagged 25% of its organ-cycles")
    assert messages[1].startswith("mouse4: the model is much less sure of it than of the others")
    assert "annotate 2-3 frames of mouse4 (pick-frames m4.tif --method uncertain" in messages[1]
    trust = read_csv(tmp_path / "out" / "trust.csv")
    assert [row["mouse"] for row in trust][:1] == ["mouse4"]  # worst first
    assert float(trust[0]["mean_entropy"]) == pytest.approx(0.30, rel=0.05)
    assert [row["mouse"] for row in trust if row["note"]] == ["mouse4", "mouse1"]
    assert read_json(tmp_path / "out" / "study.json")["warnings"] == messages
    report = html.unescape((tmp_path / "out" / "report.html").read_text(encoding="utf-8"))
    assert "Where to trust the model" in report and messages[1] in report


def test_a_stack_quantified_before_uncertainty_was_recorded_says_how_to_get_it(quantified_study):
    sheet, root = quantified_study
    (root / "stacks" / "m0" / "cycles.csv").unlink()
    result = analyse_study(sheet, root / "stacks", root / "out")
    row = next(row for row in result.trust if row["mouse"] == "mouse0")
    assert math.isnan(row["mean_entropy"]) and "quantify again with --force" in row["note"]


def test_study_command_refuses_a_reference_that_is_no_group_before_quantifying(stacks, capsys):
    sheet = write_sheet(stacks, "stack,mouse,group\na.tif,m1,control\nb.tif,m2,treated\n")
    code = main(["study", str(sheet), "--run", str(stacks / "run"), "--out",
                 str(stacks / "out"), "--reference", "placebo"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1, err
    assert err[0] == (f"error: {sheet}: has no group 'placebo' (its groups: control, treated). "
                      "Give --reference one of them.")
    assert not (stacks / "out").exists()
