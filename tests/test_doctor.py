"""`cl-sweeps doctor` on CPU: the checks that apply run and pass, the GPU-only ones are skipped
with the reason, the exit code counts the failures, and bad options are refused."""

from __future__ import annotations

import pytest
import torch

from cl_sweeps.cli import main
from cl_sweeps.doctor import FAIL, PASS, SKIP, Check, Doctor

pytestmark = pytest.mark.skipif(torch.cuda.is_available(), reason="the CPU report")


def test_doctor_on_cpu_passes_what_applies_and_skips_the_gpu_checks(capsys):
    code = main(["doctor", "--device", "cpu", "--strategies", "naive,si,generative_distillation"])
    out = capsys.readouterr().out
    lines = {line.split(":")[0]: line for line in out.splitlines() if line[:4] in (PASS, FAIL,
                                                                                  SKIP)}
    assert code == 0, out
    for name in ("strategies [fp32]", "fp16 forced overflow", "memory after a trial",
                 "checkpoint resume [cpu]"):
        assert lines[f"{PASS}  {name}"], out
    assert "3 strategies x 2 tasks" in lines[f"{PASS}  strategies [fp32]"]
    assert "freed without a collector pass: 2/2" in lines[f"{PASS}  memory after a trial"]
    assert "final metrics identical" in lines[f"{PASS}  checkpoint resume [cpu]"]
    for name in ("GPU checkpoint resumed on CPU", "host syncs per training iteration",
                 "inductor compile", "FID features without TF32", "trials per GPU"):
        assert "needs a CUDA device; none is visible" in lines[f"{SKIP}  {name}"], out
    assert out.rstrip().endswith("4 passed, 0 failed, 6 skipped"), out


def test_the_exit_code_counts_failures(tmp_path, monkeypatch):
    doctor = Doctor("cpu", tmp_path, ["naive"])
    monkeypatch.setattr(Doctor, "checks", lambda self: iter([
        lambda: [Check("a", PASS, "1"), Check("b", FAIL, "2")],
        lambda: 1 / 0,  # a check that raises is a FAIL, and the others still run
        lambda: [Check("c", SKIP, "3")],
    ]))
    results = doctor.run(lambda check: None)
    assert [r.status for r in results] == [PASS, FAIL, FAIL, SKIP]
    assert "ZeroDivisionError" in results[2].detail


def test_doctor_refuses_bad_options(capsys):
    assert main(["doctor", "--device", "gpu0"]) == 2
    assert "--device: 'gpu0' is not allowed; allowed: auto, cpu, cuda or cuda:N" in (
        capsys.readouterr().err)
    assert main(["doctor", "--strategies", "naive,nope"]) == 2
    assert "--strategies: unknown nope; allowed:" in capsys.readouterr().err
