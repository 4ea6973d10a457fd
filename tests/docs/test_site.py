"""The documentation site builds with ``mkdocs build --strict``: a missing page, a broken
link or anchor, or an API page whose object no longer exists fails with mkdocs' message,
which names the page."""

from __future__ import annotations

import re
import subprocess
import sys

import pytest

from tests.docs.run_docs import ROOT


def test_mkdocs_build_strict(tmp_path):
    pytest.importorskip("mkdocs", reason="the docs extra: pip install -e '.[docs]'")
    command = ["mkdocs", "build", "--strict", "-f", str(ROOT / "mkdocs.yml"), "-d", str(tmp_path / "site")]
    result = subprocess.run([sys.executable, "-m", *command], cwd=ROOT, capture_output=True, text=True, timeout=600)
    problems = [line for line in result.stderr.splitlines() if line.startswith(("WARNING", "ERROR"))]
    assert result.returncode == 0, "mkdocs build --strict failed:\n" + "\n".join(problems or [result.stderr[-4000:]])
    assert (tmp_path / "site" / "tutorials" / "core_gp" / "index.html").is_file()


def test_the_readme_links_to_files_that_exist():
    readme = (ROOT / "README.md").read_text()
    targets = {link.split("#")[0] for link in re.findall(r"\]\(([^)\s]+)\)", readme) if "://" not in link}
    missing = sorted(target for target in targets if target and not (ROOT / target).exists())
    assert not missing, f"README.md links to missing files: {missing}"


def test_ci_runs_the_readme_test_command():
    ci = [line for line in (ROOT / ".ci" / "run").read_text().splitlines() if line and not line.startswith("#")]
    assert ci[-1] in (ROOT / "README.md").read_text(), f"README.md lacks .ci/run's command: {ci[-1]}"
