"""The README's workflow block, run top to bottom as written (real processes, from another folder),
with small settings appended to every stage so it takes seconds: each line must succeed, in order."""
import re
import shlex
import subprocess
import sys
from pathlib import Path

from tests.conftest import ROOT

TINY = ["--epochs", "1", "--batches-per-epoch", "1", "--batch-size", "8", "--device", "cpu", "--quiet"]
SUFFIX = "-e1-b1-bs8"  # the folder token of TINY's settings (das/spec.py)


def workflow_lines():
    text = (Path(ROOT) / "README.md").read_text()
    block = text.split("## Workflow", 1)[1].split("\n\n", 2)[1]
    return [line.split("#", 1)[0].strip() for line in block.splitlines() if line.strip()]


def test_readme_workflow_runs_in_order(tmp_path):
    lines = workflow_lines()
    assert [shlex.split(line)[1] for line in lines] == ["search.py", "search.py", "retrain.py", "retrain.py",
                                                        "retrain.py", "analyze.py"]
    for line in lines:
        argv = shlex.split(line)
        assert argv[0] == "python"
        script, args = str(Path(ROOT) / argv[1]), argv[2:]
        # the small settings name the trial folders (seed3 -> seed3-e1-b1-bs8)
        args = [re.sub(r"/seed(\d+)/", rf"/seed\1{SUFFIX}/", a) for a in args]
        extra = ["--no-plots", "--resamples", "100"] if argv[1] == "analyze.py" else TINY
        if argv[1] == "retrain.py" and "--genotype" in args:
            extra = ["--quiet", "--device", "cpu"]  # a retrain of a search takes the search's settings
        p = subprocess.run([sys.executable, script, *args, *extra], cwd=tmp_path, capture_output=True, text=True,
                           timeout=900)
        assert p.returncode == 0, (line, p.stderr[-2000:])
    searched = list((tmp_path / "results" / "seq" / "blur" / "all" / "das" / "H1").glob("seed*"))
    assert len(searched) == 75
    retrains = list((tmp_path / "results").rglob(f"seed3{SUFFIX}/retrain-seed*/result.json"))
    assert len(retrains) == 5  # seed 3's own retrain, then 0-4 (3 kept, four new)
    assert (tmp_path / "results" / "analysis" / "table1_seq_H1_e1-b1-bs8.md").is_file()
