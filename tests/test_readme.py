"""The README's Python example runs as written and produces a space the CLI can show."""

import re
import subprocess
import sys
from pathlib import Path

README = Path(__file__).resolve().parent.parent / "README.md"


def test_readme_custom_space_example(tmp_path, monkeypatch):
    code = re.findall(r"```python\n(.*?)```", README.read_text(), re.S)[0]
    monkeypatch.chdir(tmp_path)
    namespace: dict = {}
    exec(compile(code, "README.md", "exec"), namespace)
    space, arch = namespace["space"], namespace["arch"]
    assert space.decode(arch.encode()) == arch
    r = subprocess.run([sys.executable, "-m", "donna_nas", "space", "show", "my_space.yaml"],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert f"{space.size():,}" in r.stdout


def test_readme_test_command_matches_ci():
    ci = (README.parent / ".ci" / "run").read_text()
    cmd = 'python -m pytest -m "not slow" -n 2 --dist loadfile'
    assert cmd in README.read_text()
    assert cmd.replace("python ", "python3 ") in ci
