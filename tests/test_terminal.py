"""What a user sees: without a terminal one log line per epoch, a rounded final line with the next
command; --quiet prints nothing."""
import re
import subprocess
import sys

from tests.conftest import ROOT


def run(*args):
    return subprocess.run([sys.executable, *args], cwd=ROOT, capture_output=True, text=True, timeout=300)


def test_one_line_per_epoch_and_a_next_command_without_a_tty(tmp_path):
    out = str(tmp_path / "results")
    p = run("search.py", "--seed", "0-1", "--epochs", "3", "--batches-per-epoch", "2", "--out", out, "--no-plot")
    assert p.returncode == 0, p.stderr
    epochs = [line for line in p.stderr.splitlines() if re.search(r"epoch \d/3: train loss", line)]
    assert len(epochs) == 3 and all("ETA" in line and "PSNR" in line for line in epochs)  # one per epoch, both seeds
    finals = [line for line in p.stderr.splitlines() if "next: python retrain.py --genotype" in line]
    assert len(finals) == 2 and all(re.search(r"one-shot PSNR -?\d+\.\d\d dB;", f) for f in finals)
    p = run("retrain.py", "--method", "random", "--epochs", "2", "--batches-per-epoch", "2", "--out", out)
    assert p.returncode == 0, p.stderr
    assert re.search(r"architecture PSNR -?\d+\.\d\d dB; next: python analyze.py ", p.stderr.splitlines()[-1])


def test_quiet_is_quiet(tmp_path):
    p = run("search.py", "--epochs", "1", "--batches-per-epoch", "1", "--out", str(tmp_path), "--quiet", "--no-plot")
    assert p.returncode == 0 and p.stderr == "" and p.stdout == ""
