"""Tests of unetlib.core.runtime: the CPU is read, the start-up choice is made and recorded."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from unetlib.core.config import ModelConfig, PipelineConfig, TrainConfig
from unetlib.core.io import read_json
from unetlib.core.runtime import choose_onednn, cpu_info, describe_cpu, prepare_environment

AVX2_EPYC = """processor	: 0
vendor_id	: AuthenticAMD
model name	: AMD EPYC 7B12
flags		: fpu vme sse sse2 avx f16c fma avx2 bmi2 sha_ni
processor	: 1
model name	: AMD EPYC 7B12
flags		: fpu vme sse sse2 avx f16c fma avx2 bmi2 sha_ni
"""
AVX512_XEON = AVX2_EPYC.replace("AMD EPYC 7B12", "Intel Xeon").replace(
    "avx2", "avx2 avx512f avx512_vnni")


def test_the_cpu_model_and_the_flags_that_matter_are_read():
    cpu = cpu_info(AVX2_EPYC)
    assert cpu.model == "AMD EPYC 7B12"
    assert cpu.flags == ("avx", "avx2", "fma", "f16c")
    assert "avx2 fma" in describe_cpu(cpu) and cpu.model in describe_cpu(cpu)


def test_onednn_goes_on_for_avx2_cpus_that_tensorflow_leaves_off(monkeypatch):
    monkeypatch.setattr("platform.machine", lambda: "x86_64")
    avx2, avx512 = cpu_info(AVX2_EPYC), cpu_info(AVX512_XEON)
    on, reason = choose_onednn(avx2, {})
    assert on is True and "AVX2 CPU without AVX-512" in reason
    assert choose_onednn(avx512, {})[0] is True
    environ = {}
    assert prepare_environment(environ, avx2)["onednn"] == "1"
    assert environ == {"TF_ENABLE_ONEDNN_OPTS": "1"}


def test_the_users_choice_is_kept_and_other_cpus_keep_tensorflows_default(monkeypatch):
    environ = {"TF_ENABLE_ONEDNN_OPTS": "0"}
    choice = prepare_environment(environ, cpu_info(AVX2_EPYC))
    assert environ == {"TF_ENABLE_ONEDNN_OPTS": "0"} and "set by the user" in choice["onednn_reason"]
    monkeypatch.setattr("platform.machine", lambda: "aarch64")
    arm = cpu_info("model name : Neoverse-N1\nFeatures : fp asimd\n")
    environ = {}
    assert prepare_environment(environ, arm)["onednn"] == "TensorFlow default" and environ == {}


@pytest.mark.parametrize("user", [None, "0"])
@pytest.mark.slow
def test_the_choice_is_made_before_tensorflow_loads(user):
    """In a fresh process: unetlib sets oneDNN on this CPU as chosen, or keeps the user's."""
    environ = {key: value for key, value in os.environ.items() if key != "TF_ENABLE_ONEDNN_OPTS"}
    if user is not None:
        environ["TF_ENABLE_ONEDNN_OPTS"] = user
    script = ("import os, json, sys\nfrom unetlib.core._tensorflow import tf\n"
              "from unetlib.core.runtime_report import runtime_record\n"
              "print(json.dumps({'env': os.environ.get('TF_ENABLE_ONEDNN_OPTS'), "
              "'record': runtime_record(), 'imported': 'tensorflow' in sys.modules}))")
    child = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                           env=environ, timeout=300)
    assert child.returncode == 0, child.stderr[-2000:]
    seen = json.loads(child.stdout.strip().splitlines()[-1])
    if user is not None:
        assert seen["env"] == user and "set by the user" in seen["record"]["onednn_reason"]
    else:
        # The documented rule: oneDNN on for any x86-64 CPU with AVX2 (with or without
        # AVX-512), TensorFlow's own default elsewhere.
        cpu = cpu_info()
        x86_avx2 = cpu.machine.lower() in ("x86_64", "amd64") and "avx2" in cpu.flags
        assert seen["env"] == ("1" if x86_avx2 else None)
    assert seen["record"]["cpu_model"] == cpu_info().model and seen["imported"]


@pytest.mark.slow
def test_a_run_folder_records_the_cpu_and_the_choice(tmp_path):
    from helpers import write_data_folder

    from unetlib.runs.train import train

    data = write_data_folder(tmp_path / "data", count=3)
    config = TrainConfig(model=ModelConfig(depth=2, base_filters=4), epochs=1, steps_per_epoch=1,
                         pipeline=PipelineConfig(patch_size=32, batch_size=2,
                                                            val_fraction=0.34))
    train(data, tmp_path / "run", config, verbose=0)
    runtime = read_json(tmp_path / "run" / "config.json")["runtime"]
    assert runtime["cpu_model"] == cpu_info().model and runtime["cores"] == cpu_info().cores
    # What this process's environment held when TensorFlow loaded (set by unetlib unless
    # the user had set it).
    assert runtime["onednn"] == os.environ.get("TF_ENABLE_ONEDNN_OPTS", "TensorFlow default")
    assert runtime["onednn_reason"] and runtime["tensorflow"]


@pytest.mark.slow
def test_a_cap_on_onednn_s_instructions_is_named_in_every_report():
    """Benchmarks emulating an AVX2 CPU (ONEDNN_MAX_CPU_ISA) must say so beside their figures."""
    script = "from unetlib.core.runtime_report import runtime_line, runtime_record\n" \
             "print(runtime_record()['onednn_max_isa']); print(runtime_line())"
    lines = {}
    for cap in (None, "AVX2"):
        environ = {key: value for key, value in os.environ.items() if key != "ONEDNN_MAX_CPU_ISA"}
        if cap:
            environ["ONEDNN_MAX_CPU_ISA"] = cap
        child = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                               env=environ, timeout=300)
        assert child.returncode == 0, child.stderr[-2000:]
        lines[cap] = child.stdout.strip().splitlines()[-2:]
    assert lines["AVX2"][0] == "AVX2" and "kernels capped at AVX2" in lines["AVX2"][1]
    assert lines[None][0] == "all the CPU has" and "capped" not in lines[None][1]
