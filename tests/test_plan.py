"""mdm-plan --target: accelerator table, slice names, the predicted step time and memory fit."""
import json
import os
import subprocess
import sys

import pytest

from experiments.base import get_config
from mdm.hardware import CHIPS, GB, GiB, TargetError, chip_for_device_kind, parse_target


def test_target_names_count_chips_as_the_vendors_name_them():
    v5p = parse_target("v5p-64")        # Cloud TPU: v5p-N counts TensorCores, 2 per chip
    assert (v5p.chip.name, v5p.num_chips, v5p.chip.backend) == ("v5p", 32, "tpu")
    assert v5p.chip.peak_bf16_flops == 459e12 and v5p.chip.hbm_bytes == 95 * GiB
    assert parse_target("v4-8").num_chips == 4
    assert parse_target("v5litepod-16").num_chips == 16 and parse_target("v5e-16").chip.name == "v5e"
    h = parse_target("8xH100")
    assert (h.chip.name, h.num_chips, h.chip.backend) == ("h100", 8, "gpu")
    assert h.chip.peak_bf16_flops == 989e12 and h.chip.hbm_bytes == 80 * GB
    assert h.peak_flops == 8 * 989e12
    assert CHIPS["h200"].hbm_bytes == 141 * GB and CHIPS["a100"].peak_bf16_flops == 312e12
    assert CHIPS["v5e"].peak_bf16_flops == 197e12 and CHIPS["v4"].hbm_bytes == 32 * GiB
    for bad in ("v5p-63", "8xV100", "v5p", "tpu-8", "0xH100"):
        with pytest.raises(TargetError) as e:
            parse_target(bad)
        assert "\n" not in str(e.value) and bad in str(e.value)
    # mdm.throughput reads the same table by device kind (longest prefix wins)
    assert chip_for_device_kind("TPU v5 lite").name == "v5e"
    assert chip_for_device_kind("TPU v5").name == "v5p"
    assert chip_for_device_kind("NVIDIA H100 80GB HBM3").name == "h100"


def test_mdm_plan_target_8xh100_reports_fit_step_time_and_attention(repo_root):
    """The console-script path (main() imported, not `python -m`): --target alone sets 8 fake
    devices; the printed table has every field, and the JSON's numbers are consistent."""
    env = {k: v for k, v in os.environ.items() if k not in ("XLA_FLAGS", "JAX_PLATFORMS")}
    p = subprocess.run(
        [sys.executable, "-c", "from mdm.plan import main; main()", "--config",
         "experiments/base.py:tiny", "--target", "8xH100", "--config.model.dtype=bfloat16",
         "--config.model.scan_layers=true",
         "--config.mesh.data=1", "--config.mesh.fsdp=8"],
        cwd=repo_root, env={**env, "PYTHONPATH": repo_root}, capture_output=True, text=True,
        timeout=120)
    assert p.returncode == 0, p.stderr[-3000:]
    text = p.stdout
    for field in ("target 8xH100 = 8 x NVIDIA H100 SXM (989 TFLOP/s dense bf16, 80 GB HBM",
                  "| per-device memory", "of 74.5 GiB (= 80 GB) HBM", ": fits",
                  "| FLOPs per step per device", "analytic, mdm.flops / 8 devices; XLA counts",
                  "| step time at MFU 0.40 (assumed)", "| step time at MFU 1.00 (roofline)",
                  "| tokens/s at MFU 0.40", "| tokens/s at MFU 1.00", "| train.total_tokens",
                  "compiled with einsum on fake CPU devices; on 8xH100 auto resolves to cudnn"):
        assert field in text, (field, text)
    out = json.loads(text.strip().splitlines()[-1])
    t = out["target"]
    assert out["num_devices"] == 8 and out["mesh"]["fsdp"] == 8
    assert t["num_chips"] == 8 and t["fits"] and t["flops_basis"] == "analytic"
    assert t["flops_per_device"] == pytest.approx(out["flops_per_step"] / 8)
    assert t["step_time_s"] == pytest.approx(t["flops_per_device"] / (989e12 * 0.4))
    assert t["step_time_roofline_s"] == pytest.approx(0.4 * t["step_time_s"])
    assert t["tokens_per_s"] == pytest.approx(16 * 64 / t["step_time_s"])
    assert (t["attention_compiled"], t["attention_on_target"]) == ("einsum", "cudnn")


def test_target_report_uses_xla_flops_when_nothing_is_scanned():
    """Unscanned layers and no micro-batches: XLA's count covers the whole step and is the
    basis (it includes the optimizer and the elementwise work, so it is a little above the
    analytic model FLOPs). In-process on the test session's 8 fake devices; a TPU target
    with float32 compute resolves auto to splash, and a config asking for splash compiles
    with einsum here."""
    from mdm.plan import format_target_report, plan
    c = get_config("tiny")
    c.mesh.update(data=2, fsdp=4)
    c.model.update(scan_layers=False, attention="splash")
    out = plan(c, target=parse_target("v4-16"), assumed_mfu=0.5)
    t = out["target"]
    assert t["num_chips"] == 8 and t["flops_basis"] == "xla"
    assert 1.0 < t["flops_per_device"] / out["flops_per_step_per_device"] < 1.2
    assert t["step_time_s"] == pytest.approx(t["flops_per_device"] / (275e12 * 0.5))
    assert (t["attention_compiled"], t["attention_on_target"]) == ("einsum", "splash")
    text = format_target_report(out)
    assert "(XLA cost analysis; analytic" in text
    assert "on v4-16 attention=splash as configured" in text


def test_target_and_fake_devices_must_agree(repo_root):
    p = subprocess.run([sys.executable, "-m", "mdm.plan", "--config", "experiments/base.py:tiny",
                        "--target", "v5p-64", "--fake_devices", "8"], cwd=repo_root,
                       capture_output=True, text=True, timeout=120,
                       env={**os.environ, "PYTHONPATH": repo_root})
    assert p.returncode == 2 and p.stderr.count("\n") == 1, p.stderr[-2000:]
    assert "32 chips" in p.stderr
