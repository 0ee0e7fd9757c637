"""The README's Python example runs as written after the README's first command
(pip install -e .: no pandas, no test extras)."""

import re
import subprocess
import sys

from conftest import ROOT


NO_PANDAS = """
import sys, importlib.abc
class NoPandas(importlib.abc.MetaPathFinder):    # as after `pip install -e .`: pandas is not installed
    def find_spec(self, name, path, target=None):
        if name.split(".")[0] == "pandas":
            raise ModuleNotFoundError("No module named 'pandas'")
sys.meta_path.insert(0, NoPandas())
"""


def test_readme_python_example_runs_without_pandas(tmp_path):
    readme = (ROOT / "README.md").read_text()
    section = readme.split("## Python API", 1)[1]
    code = re.search(r"```python\n(.*?)```", section, re.S).group(1)
    code = code.replace('"scenarios/', f'"{ROOT}/scenarios/')
    guard = NO_PANDAS
    proc = subprocess.run([sys.executable, "-c", guard + code], cwd=tmp_path, capture_output=True, text=True,
                          timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert (tmp_path / "runs" / "gpipe" / "summary.json").is_file()


def test_readme_opens_with_the_two_commands():
    lines = (ROOT / "README.md").read_text().splitlines()
    assert lines[2] == "```bash" and lines[3].endswith("accsim run scenarios/quickstart.yaml --out runs/quickstart")
